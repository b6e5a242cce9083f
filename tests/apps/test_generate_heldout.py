"""`generate` on held-out text: the split, the training-only vocabulary with <unk>, stream scoring,
the time limit, `--eval` of a saved model, sampling without clobbering, and the compressor baselines."""

from __future__ import annotations

import bz2
import json
import lzma
import math
import random
import re

import pytest
import torch

from fastgru.apps import cli, generate
from fastgru.apps.charlm import compressors, sizing
from fastgru.apps.charlm.training import CharTrainSettings, _epoch_streams, stream_bits, train_char_lm
from fastgru.apps.data import char_text
from fastgru.train.models import build_model

SONNETS = char_text.load_builtin_text()


def tiny_model(vocab_size: int, hidden: int = 16) -> torch.nn.Module:
    return build_model(cell="gru", vocab_size=vocab_size, embedding_dim=8, hidden_size=hidden, head="next_token")


# -- split and vocabulary -----------------------------------------------------------------------------

def test_max_chars_cuts_the_training_part_after_the_split_and_keeps_valid_and_test():
    full = char_text.split_text(SONNETS[:20000], 0.1, 0.1)
    cut = char_text.split_text(SONNETS[:20000], 0.1, 0.1, max_chars=3000)
    assert cut.test == full.test == SONNETS[18000:20000] and cut.valid == full.valid == SONNETS[16000:18000]
    assert full.train == SONNETS[:16000] and cut.train == SONNETS[:3000]
    with_file = char_text.split_text(SONNETS[:20000], 0.1, test_text="held out", max_chars=5000)
    assert with_file.test == "held out" and with_file.valid == SONNETS[18000:20000]
    assert with_file.train == SONNETS[:5000]
    with pytest.raises(ValueError, match="max_chars must be a positive"):
        char_text.split_text(SONNETS, max_chars=0)


def test_vocabulary_is_built_from_the_training_part_only_and_unknown_characters_are_counted(tmp_path):
    rng = random.Random(3)
    body = "".join(rng.choice("abc de\n") for _ in range(4000))
    test = "".join(rng.choice("abcXY ") for _ in range(600))  # X and Y occur only in the test part
    split = char_text.split_text(body, 0.1, test_text=test)
    model, vocab, metrics = generate.train_char_model(split, tmp_path, seq_len=20, hidden_size=12, embedding_dim=4,
                                                      epochs=1, batch_size=4, baselines=False)
    assert vocab.chars == "".join(sorted(set(split.train))) and "X" not in vocab.chars and "Y" not in vocab.chars
    assert len(vocab) == len(vocab.chars) + 1  # + <unk>
    assert metrics["unknown_characters"]["test"] == test.count("X") + test.count("Y") > 0
    assert metrics["unknown_characters"]["test_chars"] == "XY"
    ids = vocab.encode(test, allow_unknown=True)
    assert int((ids == vocab.unknown_id).sum()) == test.count("X") + test.count("Y")
    assert vocab.decode(vocab.encode("aXb", allow_unknown=True)) == "a\ufffdb"
    assert math.isfinite(metrics["bits_per_char"]["test"])
    with pytest.raises(ValueError, match="characters not in the model's vocabulary: 'XY'"):
        vocab.encode("XY")  # without allow_unknown


def test_vocab_json_written_before_unk_existed_still_loads():
    old = char_text.CharVocab.from_dict({"chars": "abc"})
    assert old == char_text.CharVocab("abc") and len(old) == 3 and old.unknown_id is None
    new = char_text.CharVocab.from_dict(char_text.CharVocab("abc", True).to_dict())
    assert len(new) == 4 and new.unknown_id == 3


# -- stream scoring and stateful batches ---------------------------------------------------------------

def test_stream_scoring_in_chunks_equals_one_pass_over_the_whole_text():
    torch.manual_seed(0)
    model = tiny_model(7)
    ids = torch.randint(7, (301,))
    bits, count = stream_bits(model, ids, chunk=37)  # the state carried across 9 chunks
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[None, :-1]).double(), -1)[0]
    expected = -logp.gather(-1, ids[1:, None]).sum().item() / math.log(2)
    assert count == 300 and bits == pytest.approx(expected, rel=1e-6)


def test_training_rows_are_contiguous_streams():
    ids = torch.arange(1000)
    x, y = _epoch_streams(ids, 4, 7)
    assert x.shape == (4, 248) and torch.equal(y, x + 1)  # each target is the next character
    assert torch.equal(x[1:, 0], x[:-1, -1] + 1)  # each row goes on where the row before ended
    assert int(x[0, 0]) == 7


def test_time_limit_stops_cleanly_and_keeps_the_best_validated_weights():
    torch.manual_seed(1)
    vocab = char_text.CharVocab.from_text(SONNETS[:20000], unknown=True)
    train, valid = vocab.encode(SONNETS[:16000]), vocab.encode(SONNETS[16000:18000])
    model = tiny_model(len(vocab), hidden=32)
    settings = CharTrainSettings(seq_len=50, batch_size=8, epochs=10_000, time_limit=3.0, eval_every=2,
                                 patience=None)
    run = train_char_lm(model, train, valid, settings)
    assert run["stop_reason"] == "time limit (3 s)" and run["steps"] > 2  # a few steps even on a busy machine
    assert 3.0 <= run["seconds"] < 12  # one step and one validation past the limit at most
    best = min(e["valid_bits_per_char"] for e in run["evaluations"])
    assert run["best"]["valid_bits_per_char"] == best
    bits, count = stream_bits(model, valid, streams=run["valid_streams"])
    assert bits / count == pytest.approx(best, rel=1e-6)  # the model holds the best weights, not the last
    assert run["chars_per_second"] > 0 and all(e["chars_per_second"] > 0 for e in run["evaluations"])


# -- the command: --eval, --load, --max-chars ------------------------------------------------------------

def test_eval_of_the_saved_model_reproduces_the_test_bpc_printed_after_training(tmp_path, capsys):
    text = tmp_path / "poems.txt"
    text.write_text(SONNETS[:8000], encoding="utf-8")
    run = tmp_path / "run"
    trained = cli.run(["generate", "--text-file", str(text), "--seq-len", "25", "--hidden-size", "16",
                       "--epochs", "2", "--length", "20", "--out", str(run)])
    printed = capsys.readouterr().out
    test_bpc = trained["metrics"]["bits_per_char"]["test"]
    assert re.search(rf"GRU \(this model\)\s+{test_bpc:.3f}", printed)
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(SONNETS[7200:8000], encoding="utf-8")  # the test part: the last 10%
    first_sample = (run / "sample.txt").read_text()
    scored = cli.run(["generate", "--load", str(run), "--eval", str(held_out), "--length", "5", "--out", str(run)])
    assert scored["eval"]["bits_per_char"] == pytest.approx(test_bpc, rel=1e-6)
    assert f"{test_bpc:.4f} bits per character" in capsys.readouterr().out
    # --load into the earlier run's folder: no refusal, and the earlier sample stays as it was
    assert (run / "sample.txt").read_text() == first_sample
    assert scored["sample_path"] == str(run / "sample-2.txt") and (run / "eval.json").is_file()
    again = cli.run(["generate", "--load", str(run), "--eval", str(held_out), "--length", "5", "--out", str(run)])
    assert again["sample_path"] == str(run / "sample-3.txt") and (run / "eval-2.json").is_file()


def test_max_chars_on_the_command_line_keeps_the_test_set(tmp_path):
    text = tmp_path / "poems.txt"
    text.write_text(SONNETS[:8000], encoding="utf-8")
    common = ["generate", "--text-file", str(text), "--seq-len", "20", "--hidden-size", "8", "--epochs", "1",
              "--length", "1", "--no-baselines"]
    full = cli.run(common + ["--out", str(tmp_path / "a")])["metrics"]
    cut = cli.run(common + ["--max-chars", "2000", "--out", str(tmp_path / "b")])["metrics"]
    assert full["characters"] == {"train": 6400, "valid": 800, "test": 800}
    assert cut["characters"] == {"train": 2000, "valid": 800, "test": 800}
    assert json.loads((tmp_path / "b" / "vocab.json").read_text())["prompt"] == SONNETS[7200:7220]


def test_test_data_file_is_the_test_set(tmp_path):
    text, test = tmp_path / "train.txt", tmp_path / "test.txt"
    text.write_text(SONNETS[:6000], encoding="utf-8")
    test.write_text(SONNETS[50000:51000], encoding="utf-8")
    m = cli.run(["generate", "--text-file", str(text), "--test-data", str(test), "--seq-len", "20",
                 "--hidden-size", "8", "--epochs", "1", "--length", "1", "--out", str(tmp_path / "o")])["metrics"]
    assert m["characters"] == {"train": 5400, "valid": 600, "test": 1000}
    assert m["split"]["test"].startswith("the test file")
    prefix = SONNETS[:6000]
    assert m["baselines_bits_per_char"]["bz2"] == pytest.approx(
        compressors.conditional_bits_per_char(prefix, SONNETS[50000:51000], "bz2"))


# -- compressor baselines and sizing ---------------------------------------------------------------------

def test_compressor_bits_per_char_on_known_strings():
    rng = random.Random(0)
    prefix = "".join(rng.choice("abcdefghijklmnop") for _ in range(20000))  # 4 bits of entropy per char
    repeat = prefix[5000:7000]  # seen before: cheap given the prefix
    fresh = "".join(rng.choice("abcdefghijklmnop") for _ in range(2000))
    for name, compress in (("bz2", lambda b: bz2.compress(b, 9)),
                           ("lzma", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME))):
        expected = 8 * (len(compress((prefix + fresh).encode())) - len(compress(prefix.encode()))) / 2000
        assert compressors.conditional_bits_per_char(prefix, fresh, name) == pytest.approx(expected)
        assert 3.9 < expected < 5.0  # close to the 4 bits of entropy, never below it
        seen = compressors.conditional_bits_per_char(prefix, repeat, name)
        assert seen < expected - 0.5 and (name == "bz2" or seen < 1.0)  # LZ finds the repeat whole
        assert compressors.conditional_bits_per_char("", "é" * 100, name) == pytest.approx(
            8 * (len(compress(("é" * 100).encode())) - len(compress(b""))) / 100)  # per character, not per byte
    with pytest.raises(ValueError, match="compressor must be one of"):
        compressors.conditional_bits_per_char("a", "b", "zip")


def test_default_size_grows_with_the_text_and_shrinks_with_the_time_budget():
    small = sizing.default_model_size(50_000, 600)
    sonnets = sizing.default_model_size(77_000, 600)
    large = sizing.default_model_size(4_000_000, 600)
    assert small.hidden_size <= sonnets.hidden_size <= large.hidden_size and small.hidden_size < large.hidden_size
    assert sizing.default_model_size(4_000_000, 30).hidden_size < large.hidden_size  # too little time for it
    assert small.dropout >= sonnets.dropout > large.dropout
    for size, chars in ((small, 50_000), (sonnets, 77_000), (large, 4_000_000)):
        assert sizing.gru_parameters(size.hidden_size) <= max(sizing.PARAMS_PER_CHAR * chars,
                                                              sizing.gru_parameters(sizing.SIZES[0]))
        assert size.reason


def test_progress_bar_shows_characters_per_second(capsys):
    torch.manual_seed(2)
    vocab = char_text.CharVocab.from_text(SONNETS[:6000], unknown=True)
    train, valid = vocab.encode(SONNETS[:5000]), vocab.encode(SONNETS[5000:6000])
    run = train_char_lm(tiny_model(len(vocab)), train, valid, CharTrainSettings(seq_len=20, batch_size=4, epochs=1),
                        progress=True)
    err = capsys.readouterr().err
    assert re.search(r"[\d,]+ chars/s", err) and run["stop_reason"] == "1 epochs"
