"""`fastgru classify` end to end on UCR-format text files a user brings: the model learns, the split is
printed and recorded, the peers score the same split (1-NN DTW checked against a DTW written here), the
learning curve is drawn, many classes print their top confusions, missing peers say how to install them."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from fastgru.apps import classify_peers
from fastgru.apps.classify import classify
from fastgru.apps.cli import run


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(np.random.SeedSequence().entropy % 2**32))


def _shapes(rng, per_class: int, length: int = 40, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bump of width 2 + 2k at a random place, on noise (so position does not give it away)."""
    t = np.arange(length)
    xs, ys = [], []
    for k in range(n_classes):
        for _ in range(per_class):
            centre = rng.uniform(8, length - 8)
            xs.append(np.exp(-0.5 * ((t - centre) / (1.0 + 1.5 * k)) ** 2) * 3 + 0.3 * rng.normal(size=length))
            ys.append(k + 1)
    return np.array(xs), np.array(ys)


def _write(path, xs, ys) -> None:
    path.write_text("".join("\t".join([str(y), *(f"{v:.5f}" for v in x)]) + "\n" for x, y in zip(xs, ys)))


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Full-window DTW with squared pointwise cost, the textbook recursion."""
    D = np.full((len(a) + 1, len(b) + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            D[i, j] = (a[i - 1] - b[j - 1]) ** 2 + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return D[-1, -1]


def test_ucr_text_files_end_to_end_with_peers(tmp_path, capsys):
    rng = _rng()
    xs, ys = _shapes(rng, 12)
    txs, tys = _shapes(rng, 8)
    _write(tmp_path / "Bumps_TRAIN.tsv", xs, ys)
    _write(tmp_path / "held_out.tsv", txs, tys)
    seed = int(rng.integers(1000))
    r = run(["classify", "--data", str(tmp_path / "Bumps_TRAIN.tsv"), "--test-data", str(tmp_path / "held_out.tsv"),
             "--epochs", "40", "--filters", "16,16", "--hidden-size", "8", "--seed", str(seed),
             "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "split: test file given with --test-data" in printed
    assert r["metrics"][r["model"]]["accuracy"] >= 0.9
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["split"]["test"].endswith("held_out.tsv") and on_disk["split"]["train_sequences"] == 36
    assert "validation skipped" in " ".join(on_disk["notes"])  # 36 series: a 20% part would be 7
    assert matplotlib.image.imread(str(tmp_path / "out" / "learning_curve.png")).ndim == 3
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(history["epochs"]) == 40
    # no validation part: the second member is a run with another seed, saved beside the first
    assert r["members"] == 2 and [len(m) for m in history["member_epochs"]] == [40]
    saved = json.loads((tmp_path / "out" / "model" / "classifier.json").read_text())
    assert saved["members"] == [".", "member_2"] and saved["test_views"] == 5 and saved["slice_ratio"] == 0.9
    assert (tmp_path / "out" / "model" / "member_2" / "model.safetensors").exists()
    if classify_peers.missing_reason() is not None:
        pytest.skip("sktime is not installed: the peers' scores cannot be checked (pip install 'fastgru[peers]')")
    assert {"1-NN DTW", "MiniRocket"} <= set(r["metrics"])
    nearest = [ys[int(np.argmin([_dtw(x, t) for t in xs]))] for x in txs]
    assert r["metrics"]["1-NN DTW"]["accuracy"] == pytest.approx(np.mean(np.array(nearest) == tys))
    assert 0 <= r["metrics"]["MiniRocket"]["accuracy"] <= 1


def test_many_classes_print_top_confusions_and_write_the_full_matrix(tmp_path, capsys):
    rng = _rng()
    xs, ys = _shapes(rng, 3, length=24, n_classes=12)
    txs, tys = _shapes(rng, 2, length=24, n_classes=12)
    _write(tmp_path / "Many_TRAIN.txt", xs, ys)
    _write(tmp_path / "Many_TEST.txt", txs, tys)
    r = run(["classify", "--data", str(tmp_path / "Many_TRAIN.txt"), "--epochs", "2", "--filters", "8,8",
             "--hidden-size", "4", "--no-peers", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "Many_TEST.txt" in printed and "beside" in printed  # the pairing is said, not silent
    assert "largest confusions" in printed and "confusion matrix (rows" not in printed
    cm = pd.read_csv(tmp_path / "out" / "confusion.csv")
    assert cm.shape == (12, 13) and cm.drop(columns="true").to_numpy().sum() == 24
    assert r["top_confusions"][0]["count"] == max(
        v for i, row in enumerate(r["confusion"]) for j, v in enumerate(row) if i != j)


def test_missing_peers_say_how_to_install_them(tmp_path, monkeypatch):
    rng = _rng()
    xs, ys = _shapes(rng, 4, length=20, n_classes=2)
    _write(tmp_path / "T_TRAIN.tsv", xs, ys)
    _write(tmp_path / "T_TEST.tsv", xs, ys)
    monkeypatch.setattr(classify_peers, "missing_reason", lambda: "peers not run: sktime is not importable; "
                        f"install with {classify_peers.INSTALL_HINT}")
    r = classify(tmp_path / "T_TRAIN.tsv", epochs=1, filters=(4, 4), hidden_size=4, out_dir=tmp_path / "o")
    assert not {"1-NN DTW", "MiniRocket"} & set(r["metrics"])
    assert any("pip install 'fastgru[peers]'" in n for n in r["notes"])
