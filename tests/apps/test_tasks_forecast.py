"""`forecast` end to end on real series; its baselines recomputed here from the raw data."""

from __future__ import annotations

import json
from importlib import resources

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from fastgru.apps.forecast import forecast


def _png_ok(path) -> None:
    img = matplotlib.image.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_sunspots_default_settings_beat_the_naive_forecast(tmp_path):
    """At the default settings (seed 0) the GRU's MAE on the held-out tail is below the naive forecast's."""
    r = forecast("sunspots", out_dir=tmp_path, seed=0)
    y = pd.read_csv(str(resources.files("fastgru.apps.data") / "files" / "sunspots.csv"))["SUNACTIVITY"].to_numpy(float)
    n, h, m = len(y), r["horizon"], 11
    val_end = n - round(0.15 * n)
    train_end = val_end - round(0.15 * n)
    assert r["seasons"] == [m] and h == 12
    # the baselines, recomputed independently of the task's code
    origins = range(val_end, n - h + 1)
    naive_mae = np.mean([abs(y[t + k] - y[t - 1]) for t in origins for k in range(h)])
    snaive_mae = np.mean([abs(y[t + k] - y[t + k - m * (k // m + 1)]) for t in origins for k in range(h)])
    scale = np.mean(np.abs(np.diff(y[:train_end])))  # MASE: one-step naive MAE of the training part
    metrics = r["metrics"]
    assert metrics["naive"]["mae"][0] == pytest.approx(naive_mae)
    assert metrics["seasonal naive (m=11)"]["mae"][0] == pytest.approx(snaive_mae)
    assert metrics["naive"]["mase"][0] == pytest.approx(naive_mae / scale)
    gru = metrics[r["model"]]
    assert all(np.isfinite(gru[k][0]) for k in ("mae", "rmse", "mase"))
    margin = 1 - gru["mae"][0] / naive_mae
    print(f"sunspots: GRU MAE {gru['mae'][0]:.2f} vs naive {naive_mae:.2f}: {100 * margin:.1f}% lower")
    assert margin > 0.1
    # never worse than the best baseline by more than noise: it starts from it and keeps it on validation
    assert gru["mae"][0] < 1.05 * min(naive_mae, snaive_mae)

    # outputs exist and parse
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(metrics))
    fc = pd.read_csv(tmp_path / "forecast.csv")
    test, future = fc[fc.part == "test"], fc[fc.part == "future"]
    assert len(future) == h and future["forecast"].notna().all()
    assert len(test) == len(origins) * h and np.isfinite(test["forecast"]).all()
    first = test[test.steps_ahead == 1]
    np.testing.assert_allclose(first["truth"].to_numpy(), y[val_end : n - h + 1])
    assert first["origin_time"].tolist() == first["time"].tolist()  # origin_time: the first forecast step
    assert future["time"].tolist() == list(range(2009, 2009 + h))
    _png_ok(tmp_path / "forecast.png")
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["best_epoch"] == r["best_epoch"] and len(hist["epochs"]) == r["epochs_run"]
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_user_csv_multivariate_by_column_names(tmp_path):
    """A user's CSV, columns picked by name (a text column in the file is ignored), two of three forecast."""
    src = pd.read_csv(str(resources.files("fastgru.apps.data") / "files" / "macrodata.csv"))
    df = src[["year", "quarter", "unemp", "infl", "realint"]].copy()
    df.insert(2, "note", "text")
    path = tmp_path / "macro.csv"
    df.to_csv(path, index=False)
    r = forecast(path, ["unemp", "infl", "realint"], targets=["unemp", "infl"], season=4, window=16, horizon=4,
                 epochs=3, hidden_size=16, out_dir=tmp_path / "out", seed=int(torch.randint(0, 1000, (1,))))
    assert r["columns"] == ["unemp", "infl", "realint"] and r["targets"] == ["unemp", "infl"]
    for name, sc in r["metrics"].items():
        assert len(sc["mae"]) == 2 and np.isfinite(sc["mae"]).all() and np.isfinite(sc["mase"]).all(), name
    fc = pd.read_csv(tmp_path / "out" / "forecast.csv")
    assert {"forecast", "naive", "seasonal_naive_4"} <= set(fc.columns)
    assert set(fc.target) == {"unemp", "infl"}
    _png_ok(tmp_path / "out" / "forecast.png")


def test_refuses_to_overwrite_an_earlier_run(tmp_path):
    kw = dict(window=12, horizon=3, epochs=1, hidden_size=8, out_dir=tmp_path)
    forecast("nile", **kw)
    before = (tmp_path / "forecast.csv").read_bytes()
    with pytest.raises(FileExistsError, match="forecast.csv.*pass --force"):
        forecast("nile", **kw)
    assert (tmp_path / "forecast.csv").read_bytes() == before
    forecast("nile", overwrite=True, seed=1, **kw)


def test_bad_settings_are_refused_before_training(tmp_path):
    from fastgru.apps.data.tabular import DataFileError

    with pytest.raises(DataFileError, match=r"target column 'volumes' not among the value columns 'volume'"):
        forecast("nile", targets=["volumes"], out_dir=tmp_path)
    with pytest.raises(DataFileError, match="test tail .* is shorter than the horizon"):
        forecast("nile", window=10, horizon=20, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())
