"""`fastgru translate` and fastgru.apps.seq2seq: the encoder against torch.nn.GRU sentence by sentence, attention
over padding, beam 1 = greedy, save/load, overfitting 20 pairs, the CLI end to end, bad input files."""

from __future__ import annotations

import gzip
import io
import json
import random
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import sacrebleu
import torch

from fastgru.apps import cli
from fastgru.apps.data.words import WordVocab
from fastgru.apps.seq2seq import (
    Seq2Seq,
    Seq2SeqConfig,
    Translator,
    beam_search,
    build_vocab,
    corpus_bleu,
    greedy,
    group_references,
    load_pairs,
    normalize,
    split_by_source,
    teacher_forcing_ratio,
    tokenize,
    train_translator,
    vocab_from_dict,
)
from fastgru.apps.seq2seq.pairs import pad_ids, read_pairs
from fastgru.apps.seq2seq.vocab import EOS_ID, PAD_ID, SOS_ID, SPECIALS, UNK_ID


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the decoder runs many small ops, and on a shared 2-core machine two OpenMP
    threads waiting for each other make each of them 10-30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rng() -> random.Random:
    """A Python RNG drawn from torch's per-test seed (conftest prints it; FASTGRU_TEST_SEED replays)."""
    return random.Random(int(torch.randint(0, 2**31, (1,))))


def _random_batch(vocab_size: int, batch: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random word ids (>= 4: no specials) padded with PAD, lengths in 1..max_len with the maximum present."""
    lengths = torch.randint(1, max_len + 1, (batch,))
    lengths[int(torch.randint(0, batch, (1,)))] = max_len
    seqs = [torch.randint(4, vocab_size, (int(n),)).tolist() for n in lengths]
    return pad_ids(seqs)


def _model(attention: bool = True, bidirectional: bool = True, V: tuple[int, int] = (30, 40)) -> Seq2Seq:
    m = Seq2Seq(Seq2SeqConfig(V[0], V[1], embedding_size=12, hidden_size=16, attention=attention,
                              bidirectional=bidirectional, dropout=0.0))
    return m.eval()


# -- text ----------------------------------------------------------------------------------------------
def test_tokenize_splits_punctuation_keeps_accents_and_apostrophes():
    assert tokenize("Je suis si fatigué\u202f!") == ["je", "suis", "si", "fatigué", "!"]
    assert tokenize("  I'm HERE,  aujourd\u2019hui.") == ["i'm", "here", ",", "aujourd'hui", "."]
    assert normalize("Ça\u00a0va ?") == "ça va ?"


def test_vocab_round_trip_unknown_words_and_json():
    rng = _rng()
    words = [f"w{i}" for i in range(rng.randint(5, 20))]
    sents = [[rng.choice(words) for _ in range(rng.randint(1, 6))] for _ in range(30)]
    v = build_vocab(sents)
    assert tuple(v.tokens[:4]) == SPECIALS and set(v.tokens[4:]) == {w for s in sents for w in s}
    s = sents[0]
    assert v.decode(v.ids(s, eos=True)) == s and v.ids(s, eos=True)[-1] == EOS_ID
    assert v.ids(["never-seen"]) == [UNK_ID]
    assert vocab_from_dict(json.loads(json.dumps(v.to_dict()))).tokens == v.tokens
    with pytest.raises(ValueError, match="special tokens"):  # a classify-text vocabulary: other special ids
        vocab_from_dict(WordVocab.build(sents, min_freq=1).to_dict())
    counts = [sum(t == w for s in sents for t in s) for w in v.tokens[4:]]
    assert counts == sorted(counts, reverse=True)  # most frequent first


def test_teacher_forcing_schedule_is_linear():
    E = int(torch.randint(2, 20, (1,)))
    start, end = sorted(torch.rand(2).tolist(), reverse=True)
    ratios = [teacher_forcing_ratio(e, E, start, end) for e in range(1, E + 1)]
    assert ratios[0] == pytest.approx(start) and ratios[-1] == pytest.approx(end)
    np.testing.assert_allclose(np.diff(ratios), (end - start) / (E - 1), atol=1e-12)


# -- data ----------------------------------------------------------------------------------------------
def test_builtin_pairs_and_split_by_source():
    pairs = load_pairs()
    assert len(pairs) == 5000 and pairs.languages == ("eng", "fra")
    assert all(a.startswith("CC-BY 2.0 (France) Attribution: tatoeba.org") for a in pairs.attribution)
    seed = int(torch.randint(0, 1000, (1,)))
    tr, va, te = split_by_source(pairs, 0.1, 0.1, seed)
    assert sorted(tr + va + te) == list(range(5000))
    keys = [{normalize(pairs.source[i]) for i in part} for part in (tr, va, te)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert split_by_source(pairs, 0.1, 0.1, seed) == (tr, va, te)
    sources, refs = group_references(pairs.subset(te).source, pairs.subset(te).target)
    assert len(sources) == len(keys[2]) and sum(map(len, refs)) <= len(te)


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
    ("Go.\tVa !\nHello there\n", "line 2 has only one column"),
    ("Go.\t \n", "line 1, column 2 (target sentence) is empty"),
])
def test_bad_tsv_files_give_one_clear_message(tmp_path, capsys, content, message):
    path = tmp_path / "pairs.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_pairs(path)
    out = tmp_path / "out"
    assert cli.main(["translate", "--data", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err
    assert not out.exists()  # refused before any output


def test_missing_file_and_sentences_without_model(tmp_path, capsys):
    assert cli.main(["translate", "--data", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "o")]) == 2
    assert "sentence-pair file not found" in capsys.readouterr().err
    assert cli.main(["translate", "Hello.", "--out", str(tmp_path / "o")]) == 2
    assert "need --model DIR" in capsys.readouterr().err
    assert cli.main(["translate", "--model", str(tmp_path), "Hello."]) == 2
    assert "is not a saved translation model" in capsys.readouterr().err


def test_bleu_uses_every_reference():
    refs = [["le chat est là .", "un chat est là ."], ["il pleut ."]]
    assert corpus_bleu(["un chat est là .", "il pleut ."], refs)["bleu"] == pytest.approx(100.0)
    hyps = ["le chien est là .", "il neige ."]
    ours = corpus_bleu(hyps, refs)["bleu"]
    direct = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [refs[0][1], None]], tokenize="none").score
    assert ours == pytest.approx(direct)


# -- the model -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_with_lengths_equals_torch_gru_on_each_sentence_alone(bidirectional):
    m = _model(bidirectional=bidirectional)
    src, lengths = _random_batch(30, 6, 9)
    enc = m.encode(src, lengths)
    ref = torch.nn.GRU(12, m.config.encoder_size, batch_first=True, bidirectional=bidirectional)
    ref.load_state_dict(m.encoder.rnn.state_dict())
    for b in range(len(src)):
        n = int(lengths[b])
        out, h_n = ref(m.encoder.embedding(src[b : b + 1, :n]))
        torch.testing.assert_close(enc.annotations[b, :n], out[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(enc.summary[b], torch.cat(list(h_n[:, 0])), atol=1e-5, rtol=1e-5)
        assert (enc.annotations[b, n:] == 0).all()
        assert enc.mask[b].tolist() == [True] * n + [False] * (src.shape[1] - n)


def test_attention_weights_sum_to_one_and_ignore_padding():
    m = _model()
    src, lengths = _random_batch(30, 5, 8)
    enc = m.encode(src, lengths)
    state = torch.randn(len(src), 16)
    _, w = m.decoder.attention(state, enc.keys, enc.annotations, enc.mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(len(src)), atol=1e-6, rtol=0)
    assert (w[~enc.mask] == 0).all() and (w[enc.mask] > 0).all()
    # garbage ids in the padding and extra padding change nothing for the real positions
    noisy = torch.cat([src, torch.randint(4, 30, (len(src), 3))], dim=1)
    noisy[torch.arange(noisy.shape[1])[None, :] >= lengths[:, None]] = torch.randint(4, 30, (1,)).item()
    enc2 = m.encode(noisy, lengths)
    _, w2 = m.decoder.attention(state, enc2.keys, enc2.annotations, enc2.mask)
    torch.testing.assert_close(w2[:, : src.shape[1]], w, atol=1e-6, rtol=1e-5)
    assert (w2[:, src.shape[1]:] == 0).all()
    # and the whole decoding of a sentence does not depend on the batch it is padded in
    alone = greedy(m, src[:1, : int(lengths[0])], lengths[:1])[0]
    assert greedy(m, noisy, lengths)[0].ids == alone.ids


@pytest.mark.parametrize("attention", [True, False])
def test_beam_one_is_greedy(attention):
    m = _model(attention=attention)
    src, lengths = _random_batch(30, 8, 7)
    for b, g in enumerate(greedy(m, src, lengths)):
        beam = beam_search(m, src[b], int(lengths[b]), beam=1)
        assert beam.ids == g.ids
        assert PAD_ID not in g.ids and SOS_ID not in g.ids and EOS_ID not in g.ids
        assert beam.score == pytest.approx(g.score, abs=1e-4)
        if attention:
            torch.testing.assert_close(beam.attention, g.attention, atol=1e-5, rtol=1e-4)


def _distinct_pairs(n: int):
    pairs = load_pairs()
    rng = _rng()
    seen, idx = set(), []
    for i in rng.sample(range(len(pairs)), len(pairs)):
        key = normalize(pairs.source[i])
        if key not in seen:
            seen.add(key)
            idx.append(i)
        if len(idx) == n:
            break
    return pairs.subset(idx)


@pytest.mark.parametrize("attention", [True, False])
def test_overfits_twenty_pairs_to_exact_match(attention):
    pairs = _distinct_pairs(20)
    seed = int(torch.randint(0, 1000, (1,)))
    translator, history = train_translator(
        pairs, None, config={"embedding_size": 32, "hidden_size": 64, "attention": attention, "dropout": 0.0},
        epochs=120, batch_size=20, lr=1e-2, teacher_forcing=(1.0, 1.0), seed=seed)
    expected = [" ".join(tokenize(t)) for t in pairs.target]
    assert translator.translate(pairs.source) == expected, f"final training loss {history['epochs'][-1]}"


def test_saved_model_translates_identically(tmp_path):
    pairs = _distinct_pairs(40)
    translator, _ = train_translator(pairs, None, config={"embedding_size": 16, "hidden_size": 24}, epochs=3,
                                     seed=int(torch.randint(0, 1000, (1,))))
    translator.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        translator.save(tmp_path / "m")
    loaded = Translator.load(tmp_path / "m")
    for k, v in translator.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)
    assert loaded.source_vocab.tokens == translator.source_vocab.tokens
    assert loaded.target_vocab.tokens == translator.target_vocab.tokens
    sentences = pairs.source[:10] + ["Completely unseen words here."]
    for beam in (1, 3):
        assert loaded.translate(sentences, beam=beam) == translator.translate(sentences, beam=beam)
    (tmp_path / "m" / "model.safetensors").write_bytes((tmp_path / "m" / "model.safetensors").read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        Translator.load(tmp_path / "m")


# -- the command ---------------------------------------------------------------------------------------
def test_cli_end_to_end_on_a_slice(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    seed = str(int(torch.randint(0, 1000, (1,))))
    args = ["translate", "--limit", "400", "--epochs", "2", "--hidden-size", "32", "--embedding-size", "16",
            "--beam", "2", "--seed", seed, "--out", str(out), "--no-progress", "--heatmap-sentence", "I am cold."]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "copy the source (baseline)" in printed and "attention.png" in printed

    m = json.loads((out / "metrics.json").read_text())
    assert set(m["metrics"]) == {"attention", "no-attention", "copy"}
    assert m["direction"] == "eng->fra" and sum(m["pairs"].values()) == 400
    samples = pd.read_csv(out / "samples.csv", keep_default_na=False)
    assert len(samples) == m["test_sources"] and list(samples.columns) == ["source", "references", "attention",
                                                                            "no-attention"]
    refs = [r.split(" | ") for r in samples["references"]]
    width = max(map(len, refs))
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    for variant in ("attention", "no-attention"):  # BLEU recomputed from the written translations
        direct = sacrebleu.corpus_bleu(list(samples[variant]), streams, tokenize="none", force=True).score
        assert m["metrics"][variant]["bleu"] == pytest.approx(direct)
        history = json.loads((out / f"model-{variant}" / "history.json").read_text())
        assert [e["train_teacher_forcing"] for e in history["epochs"]] == [1.0, 0.5]
    copy = [" ".join(tokenize(s)) for s in samples["source"]]
    assert m["metrics"]["copy"]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(copy, streams, tokenize="none", force=True).score)
    assert m["heatmap"]["sentence"] == "I am cold."
    assert matplotlib.image.imread(str(out / "attention.png")).ndim == 3

    # translation mode, from the command line and from stdin, equals the Python API
    model_dir = out / "model-attention"
    expected = Translator.load(model_dir).translate(["I am cold.", "Go."], beam=2)
    assert cli.main(["translate", "--model", str(model_dir), "--beam", "2", "I am cold.", "Go."]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    monkeypatch.setattr("sys.stdin", io.StringIO("I am cold.\n\nGo.\n"))
    assert cli.main(["translate", "--model", str(model_dir), "--beam", "2", "-"]) == 0
    assert capsys.readouterr().out.splitlines() == expected

    # never overwrites without --force
    assert cli.main(args) == 2
    assert "--force" in capsys.readouterr().err


def test_user_tsv_gz_reverse_direction(tmp_path):
    pairs = _distinct_pairs(60)
    path = tmp_path / "mine.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(f"{s}\t{t}\n" for s, t in zip(pairs.source, pairs.target)))
    r = cli.run(["translate", "--data", str(path), "--reverse", "--attention", "on", "--epochs", "1",
                 "--hidden-size", "16", "--embedding-size", "8", "--beam", "1", "--out", str(tmp_path / "o")])
    assert r["direction"] == "target->source" and set(r["metrics"]) == {"attention", "copy"}
    assert not (tmp_path / "o" / "model-no-attention").exists()
    loaded = Translator.load(tmp_path / "o" / "model-attention")
    assert loaded.info["languages"] == ["target", "source"]
    assert PAD_ID not in loaded.source_vocab.ids(tokenize(pairs.target[0]), eos=True)
