"""`detect` end to end: known spikes in the real CO2 series, the labelled sets from sktime, and the
scoring functions against independent implementations (scipy, scikit-learn, brute force)."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import median_abs_deviation
from sklearn.metrics import precision_recall_fscore_support

from fastgru.apps.data.series import load_series, package_data_dir
from fastgru.apps.data.tabular import DataFileError
from fastgru.apps.detect import best_f1, detect, point_metrics, robust_z, segments


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**31, (1,))))


def test_spikes_added_to_real_co2_are_found(tmp_path):
    """Spikes of 6-10 ppm put into the real weekly CO2 record (labelled 1) are all flagged."""
    rng = _rng()
    co2 = load_series("co2").values["co2"].to_numpy().copy()[:1200]
    idx = np.sort(rng.choice(np.arange(700, 1200, 12), size=8, replace=False))
    co2[idx] += rng.choice([-1, 1], size=8) * rng.uniform(6, 10, size=8)
    label = np.zeros(len(co2), dtype=int)
    label[idx] = 1
    path = tmp_path / "co2_spikes.csv"
    pd.DataFrame({"week": np.arange(len(co2)), "co2": co2, "is_anomaly": label}).to_csv(path, index=False)
    r = detect(path, label_column="is_anomaly", time_column="week", window=24, epochs=6, hidden_size=16,
               out_dir=tmp_path / "out", seed=int(rng.integers(1000)), score="residual", threshold=4.0)
    ev = r["evaluation"]["all scored points"]
    assert ev["recall"] == 1.0 and ev["events_found"] == 8 and ev["events"] == 8
    assert 0 < ev["precision"] <= 1 and np.isfinite(ev["f1"])

    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert len(scores) == len(co2) and scores["flag"].isin([0, 1]).all()
    assert scores["score"].iloc[:24].isna().all() and np.isfinite(scores["score"].iloc[24:]).all()
    # the score is the robust z-score of the residual, recomputed here with scipy
    resid = scores["co2_residual"].to_numpy()[24:]
    ref = resid[: r["train_steps"] - 24]
    z = (resid - np.median(ref)) / median_abs_deviation(ref, scale="normal")
    np.testing.assert_allclose(scores["score"].to_numpy()[24:], np.abs(z), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(scores["flag"].to_numpy()[24:], (np.abs(z) > 4.0).astype(int))
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["flagged"] == int(scores["flag"].sum())
    assert matplotlib.image.imread(str(tmp_path / "out" / "detect.png")).ndim == 3


@pytest.mark.skipif(package_data_dir("sktime") is None,
                    reason="the labelled sets are read from sktime's data files: pip install --no-deps sktime")
def test_labelled_yahoo_series_end_to_end(tmp_path):
    r = detect("yahoo", epochs=4, out_dir=tmp_path, seed=int(torch.randint(0, 1000, (1,))))
    ev = r["evaluation"]["all scored points"]
    assert ev["events"] == 7 and all(np.isfinite(ev[k]) for k in ("precision", "recall", "f1", "best_f1"))
    assert r["labels"] == 7 and (tmp_path / "scores.csv").exists() and (tmp_path / "detect.png").exists()


def test_point_metrics_match_scikit_learn():
    rng = _rng()
    labels = (rng.random(300) < 0.1).astype(int)
    flags = (rng.random(300) < 0.15).astype(int)
    p, r, f, _ = precision_recall_fscore_support(labels, flags, average="binary", zero_division=0)
    m = point_metrics(flags, labels)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p, r, f))


def test_best_f1_equals_brute_force_over_thresholds():
    rng = _rng()
    labels = (rng.random(200) < 0.2).astype(int)
    scores = np.round(rng.random(200) + labels * rng.random(200), 2)  # ties on purpose
    best, thr = best_f1(scores, labels)
    brute = max(point_metrics((scores > t).astype(int), labels)["f1"] for t in np.r_[scores, -1.0])
    assert best == pytest.approx(brute)
    assert point_metrics((scores > thr).astype(int), labels)["f1"] == pytest.approx(best)


def test_segments_and_robust_z():
    assert segments(np.array([0, 1, 1, 0, 1, 0, 0, 1])) == [(1, 3), (4, 5), (7, 8)]
    rng = _rng()
    ref = rng.standard_t(3, size=(400, 2))
    r = rng.normal(size=(50, 2))
    expected = (r - np.median(ref, 0)) / median_abs_deviation(ref, axis=0, scale="normal")
    np.testing.assert_allclose(robust_z(r, ref), expected)


def test_detect_messages(tmp_path):
    from fastgru.apps.data.tabular import DataFileError

    with pytest.raises(DataFileError, match="train_fraction must lie in"):
        detect("nile", train_fraction=1.5, out_dir=tmp_path)
    with pytest.raises(DataFileError, match="too few rows in its training part"):
        detect("nile", window=46, out_dir=tmp_path)


def test_default_threshold_baseline_and_training_part_options(tmp_path):
    """Label-free threshold = 1.5 x q99 of the training scores; the baseline is the robust z of the first
    difference with its own threshold; --train-size and --train-until pick the same training part."""
    rng = _rng()
    n = 400
    x = np.sin(np.arange(n) / 6) + rng.normal(0, 0.05, n)
    idx = 250 + 5 * np.sort(rng.choice(28, size=4, replace=False))  # 4 spikes, never adjacent: 4 events
    x[idx] += rng.choice([-1, 1], size=4) * rng.uniform(1.5, 2.5, size=4)
    label = np.zeros(n, dtype=int)
    label[idx] = 1
    time = pd.date_range("2024-01-01", periods=n, freq="h")
    path = tmp_path / "s.csv"
    pd.DataFrame({"time": time.strftime("%Y-%m-%d %H:%M"), "x": x, "lab": label}).to_csv(path, index=False)
    kw = dict(label_column="lab", time_column="time", window=16, epochs=2, hidden_size=8, seed=int(rng.integers(99)))
    r = detect(path, train_size=200, out_dir=tmp_path / "a", **kw)
    assert r["train_steps"] == 200 and r["threshold_rule"].startswith("1.5 x the 99th percentile")
    sc = pd.read_csv(tmp_path / "a" / "scores.csv")
    train_scores = sc["score"].to_numpy()[16:200]
    assert r["threshold"] == pytest.approx(1.5 * np.quantile(train_scores, 0.99))
    np.testing.assert_array_equal(sc["flag"].to_numpy()[16:], (sc["score"].to_numpy()[16:] > r["threshold"]))
    d = np.diff(x)
    u = np.abs(d - np.median(d[:199])) / median_abs_deviation(d[:199], scale="normal")
    np.testing.assert_allclose(sc["baseline_score"].to_numpy()[16:], u[15:], rtol=1e-6)
    assert r["baseline"]["threshold"] == pytest.approx(1.5 * np.quantile(u[15:199], 0.99))
    # the combined score is the geometric mean of the residual's and the difference's robust |z|
    resid = sc["x_residual"].to_numpy()[16:]
    z = np.abs(resid - np.median(resid[:184])) / median_abs_deviation(resid[:184], scale="normal")
    np.testing.assert_allclose(sc["score"].to_numpy()[16:], np.sqrt(z * u[15:]), rtol=1e-5)
    assert r["baseline"]["evaluation"]["after the training part"]["events"] == 4
    r2 = detect(path, train_until=str(time[199]), out_dir=tmp_path / "b", **kw)
    assert r2["train_steps"] == 200 and r2["threshold"] == pytest.approx(r["threshold"])
    with pytest.raises(DataFileError, match="either --train-size or --train-until"):
        detect(path, train_size=10, train_until="2024-01-02", out_dir=tmp_path / "c", **kw)
    with pytest.raises(DataFileError, match="--train-size must lie between 1 and 399"):
        detect(path, train_size=400, out_dir=tmp_path / "c", **kw)
    with pytest.raises(DataFileError, match="leaves 0 of 400 steps"):
        detect(path, train_until="2023-01-01", out_dir=tmp_path / "c", **kw)
