"""`classify` end to end on JapaneseVowels (variable lengths 7-29, 9 speakers) and from a long-format
table; accuracy, macro-F1 and the confusion matrix checked against scikit-learn on the written files."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score

from fastgru.apps.classify import classify
from fastgru.apps.common import confusion_matrix, macro_f1
from fastgru.apps.data.sequences import load_sequences
from fastgru.apps.data.series import package_data_dir
from fastgru.apps.data.tabular import DataFileError

needs_sktime = pytest.mark.skipif(package_data_dir("sktime") is None,
                                  reason="the UCR/UEA sets are read from sktime's data files: "
                                         "pip install --no-deps sktime")


def _seed() -> int:
    return int(torch.randint(0, 1000, (1,)))


@needs_sktime
def test_japanese_vowels_beats_the_majority_baseline(tmp_path):
    r = classify("japanese_vowels", epochs=8, out_dir=tmp_path, seed=_seed(), peers=False)
    acc = r["metrics"][r["model"]]["accuracy"]
    base = next(v for k, v in r["metrics"].items() if k.startswith("majority"))
    assert base["accuracy"] == pytest.approx(31 / 370)  # class '1' (all classes tie at 30 training cases)
    assert acc > 0.6 > base["accuracy"] + 0.4
    assert (r["length_min"], r["length_max"]) == (7, 29) and r["test_sequences"] == 370

    pred = pd.read_csv(tmp_path / "predictions.csv", dtype={"true": str, "predicted": str})
    classes = r["classes"]
    assert len(pred) == 370 and (pred["predicted"] == pred["true"]).mean() == pytest.approx(acc)
    probs = pred[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (np.array(classes)[probs.argmax(1)] == pred["predicted"]).all()
    cm = sk_confusion(pred["true"], pred["predicted"], labels=classes)
    assert cm.tolist() == r["confusion"]
    assert r["metrics"][r["model"]]["macro_f1"] == pytest.approx(
        f1_score(pred["true"], pred["predicted"], labels=classes, average="macro"))
    on_disk = pd.read_csv(tmp_path / "confusion.csv", dtype={"true": str})
    assert on_disk.drop(columns="true").to_numpy().tolist() == r["confusion"]
    assert json.loads((tmp_path / "metrics.json").read_text())["confusion"] == r["confusion"]
    assert matplotlib.image.imread(str(tmp_path / "confusion.png")).ndim == 3
    saved = json.loads((tmp_path / "model" / "classifier.json").read_text())  # what new series need
    train_steps = np.concatenate(load_sequences("japanese_vowels").train_x)
    assert saved["normalise"] == "global"
    np.testing.assert_allclose(saved["normalise_statistics"]["mean"], train_steps.mean(0), rtol=1e-6)


@needs_sktime
def test_long_format_table_variable_lengths(tmp_path):
    """The same real data written as a user's long table (rows shuffled) trains through the table path."""
    d = load_sequences("japanese_vowels")
    rng = np.random.default_rng(_seed())
    keep = rng.choice(len(d.train_x), 120, replace=False)
    rows = []
    for i in keep:
        for t, step in enumerate(d.train_x[i]):
            rows.append({"utterance": f"u{i}", "frame": t, "speaker": f"spk{d.train_y[i]}",
                         **{f"c{j}": v for j, v in enumerate(step)}})
    df = pd.DataFrame(rows).sample(frac=1, random_state=int(rng.integers(1000)))
    path = tmp_path / "vowels_long.parquet"
    df.to_parquet(path)
    r = classify(path, id_column="utterance", label_column="speaker", time_column="frame", epochs=3,
                 hidden_size=16, peers=False, out_dir=tmp_path / "out", seed=_seed())
    assert r["train_sequences"] + r["val_sequences"] + r["test_sequences"] == 120
    assert r["channels"] == 12 and len(r["classes"]) == 9
    assert all(np.isfinite(m["accuracy"]) and 0 <= m["macro_f1"] <= 1 for m in r["metrics"].values())


def test_confusion_and_macro_f1_match_scikit_learn():
    rng = np.random.default_rng(_seed())
    true, pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    cm = confusion_matrix(true, pred, 5)
    assert cm.tolist() == sk_confusion(true, pred, labels=range(5)).tolist()
    assert macro_f1(cm) == pytest.approx(f1_score(true, pred, average="macro"))


def test_classify_messages(tmp_path):
    p = tmp_path / "one_class.csv"
    pd.DataFrame({"id": [1, 1, 2, 2], "x": [0.1, 0.2, 0.3, 0.4], "y": ["a"] * 4}).to_csv(p, index=False)
    with pytest.raises(DataFileError, match="holds a single class"):
        classify(p, id_column="id", label_column="y", out_dir=tmp_path / "o")
    with pytest.raises(DataFileError, match="neither a built-in set"):
        classify("japanese_vowel", out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
