"""`generate`: the character language model, its sampling, saving, and its bad-input messages."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fastgru.apps import cli, generate
from fastgru.apps.data import char_text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained for two epochs on the first 6,000 characters of the built-in Sonnets."""
    out = tmp_path_factory.mktemp("gen")
    text = char_text.load_builtin_text()[:6000]
    model, vocab, metrics = generate.train_char_model(text, out, seq_len=25, hidden_size=24, embedding_dim=8,
                                                      epochs=2, batch_size=8, lr=1e-2)
    return out, text, model, vocab, metrics


def test_training_reports_finite_bits_per_char_below_a_uniform_guess(trained):
    out, text, model, vocab, metrics = trained
    assert vocab.chars == "".join(sorted(set(text[:4800]))) and vocab.unknown  # training part only, + <unk>
    bpc = metrics["bits_per_char"]
    assert set(bpc) == {"train", "valid", "test"}
    assert metrics["uniform_bits_per_char"] == pytest.approx(math.log2(len(vocab)))
    for value in bpc.values():  # two epochs learn at least which characters are common
        assert math.isfinite(value) and 0 < value < metrics["uniform_bits_per_char"]
    assert metrics["characters"] == {"train": 4800, "valid": 600, "test": 600}
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    history = json.loads((out / "history.json").read_text())
    assert history["stop_reason"] == "2 epochs" and history["evaluations"][-1]["epoch"] == pytest.approx(2, abs=0.1)
    assert metrics["training"]["chars_per_second"] > 0
    assert set(metrics["baselines_bits_per_char"]) == {"bz2", "lzma"}
    assert (out / "learning_curve.png").stat().st_size > 1000


def test_greedy_sample_equals_rereading_the_whole_text_each_step(trained):
    """The sampler carries the GRU state; an independent greedy loop re-reads everything from scratch."""
    _, _, model, vocab, _ = trained
    prompt = "Shall I"
    got = generate.sample(model, vocab, prompt, 15, temperature=0)
    ids = vocab.encode(prompt).tolist()
    with torch.no_grad():
        for _ in range(15):
            logits = model(torch.tensor([ids]))[0, -1]
            logits[vocab.unknown_id] = -math.inf
            ids.append(int(logits.argmax()))
    assert got == vocab.decode(ids)


def test_sampling_is_seeded_stays_in_the_vocabulary_and_never_draws_unk(trained):
    _, _, model, vocab, _ = trained
    a = generate.sample(model, vocab, "Love", 200, temperature=3.0, seed=5)
    b = generate.sample(model, vocab, "Love", 200, temperature=3.0, seed=5)
    assert a == b and a.startswith("Love") and len(a) == 204 and set(a) <= set(vocab.chars)
    assert generate.sample(model, vocab, "Love", 0) == "Love"


def test_saved_model_loads_and_gives_the_same_outputs(trained):
    out, _, model, vocab, _ = trained
    loaded, loaded_vocab = generate.load_char_model(out)
    assert loaded_vocab == vocab
    ids = torch.randint(len(vocab), (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))


def test_cli_trains_on_a_file_and_samples_from_a_saved_model(tmp_path, capsys):
    text = tmp_path / "poem.txt"
    text.write_text(char_text.load_builtin_text()[6000:9000], encoding="utf-8")
    run = tmp_path / "run"
    result = cli.run(["generate", "--text-file", str(text), "--seq-len", "20", "--hidden-size", "12",
                      "--epochs", "1", "--prompt", "The ", "--length", "30", "--out", str(run)])
    assert math.isfinite(result["metrics"]["bits_per_char"]["test"])
    assert (run / "sample.txt").read_text() == result["sample"] + "\n"
    printed = capsys.readouterr().out
    assert "bits per character" in printed and "bz2" in printed and "lzma" in printed
    again = cli.run(["generate", "--load", str(run), "--prompt", "O", "--length", "10", "--temperature", "0",
                     "--out", str(tmp_path / "again")])
    assert len(again["sample"]) == 11
    # the user's text is too short for the chunk length: one clear line, exit status 2
    assert cli.main(["generate", "--text-file", str(text), "--seq-len", "2000", "--out", str(tmp_path / "s")]) == 2
    assert "text too short for seq_len=2000" in capsys.readouterr().err


def test_bad_input_messages(tmp_path, trained):
    _, _, model, vocab, _ = trained
    with pytest.raises(ValueError, match=r"text too short for seq_len=100: the validation part has 20 characters"):
        generate.train_char_model("abcdefghij" * 20, tmp_path / "x", seq_len=100)
    assert not (tmp_path / "x").exists()  # refused before any work
    with pytest.raises(ValueError, match=r"characters not in the model's vocabulary: '€'"):
        generate.sample(model, vocab, "price €", 5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate.sample(model, vocab, "The", 5, temperature=-1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        char_text.read_text(tmp_path / "missing.txt")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        char_text.read_text(latin)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        char_text.read_text(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="holds no trained character model"):
        generate.load_char_model(tmp_path)
