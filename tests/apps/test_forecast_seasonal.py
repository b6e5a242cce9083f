"""`forecast` with seasons, calendar and known-future inputs, panels, the classical peer and its outputs.

Every expected number here is recomputed from the raw data, independently of the task's code.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fastgru.apps.data.calendar import calendar_features
from fastgru.apps.data.panel import load_panel
from fastgru.apps.data.seasons import acf_period, infer_seasons, time_step
from fastgru.apps.data.tabular import DataFileError
from fastgru.apps.forecast import forecast, headline
from fastgru.apps.forecasting.features import default_layout, feature_sizes, pack, prepare, unscale
from fastgru.apps.forecasting.model import SeasonalResidualGRU


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))


def _hourly_frame(n_series: int = 1, weeks: int = 10, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Hourly series with a daily and a weekly pattern, a holiday flag (known ahead) that lowers the level,
    a temperature, noise; weekdays differ, so the weekly seasonal naive beats the daily one."""
    rng = rng or _rng()
    n = 24 * 7 * weeks
    t = pd.date_range("2024-01-01", periods=n, freq="h")
    frames = []
    for s in range(n_series):
        day = np.sin(2 * np.pi * (t.hour.to_numpy() + s) / 24)
        week = np.where(t.day_of_week.to_numpy() >= 5, -2.0, 0.3 * t.day_of_week.to_numpy())
        holiday = np.isin(t.day_of_year.to_numpy(), rng.choice(np.arange(1, weeks * 7), size=weeks, replace=False))
        y = 10 + 2 * day + week - 3 * holiday + 0.2 * rng.normal(size=n) * (1 + s)
        frames.append(pd.DataFrame({"sensor": f"s{s}", "when": t.strftime("%Y-%m-%d %H:%M"), "load": y.round(4),
                                    "temperature": (15 + 5 * day + rng.normal(size=n)).round(3),
                                    "holiday": np.where(holiday, "TRUE", "FALSE"), "note": "x"}))
    return pd.concat(frames, ignore_index=True)


# -- seasons and calendar ----------------------------------------------------------------------------------
@pytest.mark.parametrize("freq,expected", [("30min", (48, 336)), ("h", (24, 168)), ("D", (7, 365)),
                                           ("MS", (12,)), ("QS", (4,))])
def test_seasons_from_the_time_stamps_spacing(freq, expected):
    n = 2000 if freq not in ("MS", "QS") else 120
    t = pd.Series(pd.date_range("2001-01-01", periods=n, freq=freq))
    s = infer_seasons(t, _rng().normal(size=n))
    keep = tuple(p for p in expected if 2 * p <= n)
    assert s.periods == keep and s.source == "time"


def test_season_from_the_autocorrelation_and_the_override():
    rng = _rng()
    m = int(rng.integers(7, 30))
    n = 40 * m
    y = np.sin(2 * np.pi * np.arange(n) / m) + 0.3 * rng.normal(size=n) + 0.01 * np.arange(n)
    assert acf_period(y) == m
    assert infer_seasons(None, y).periods == (m,)
    assert infer_seasons(None, rng.normal(size=n)).periods == ()  # white noise: no season
    assert infer_seasons(None, y, given=[5, 3]).periods == (3, 5)
    with pytest.raises(ValueError, match="season 5000"):
        infer_seasons(None, y, given=[5000])


def test_calendar_features_hourly():
    t = pd.date_range("2024-03-04", periods=24 * 8, freq="h")  # starts on a Monday at midnight
    feats, names = calendar_features(t, time_step(pd.Series(t)))
    assert names[:2] == ["time_of_day_sin", "time_of_day_cos"] and "weekend" in names
    assert np.all(np.abs(feats) <= 1 + 1e-12)
    tod = dict(zip(names, feats.T))
    np.testing.assert_allclose(tod["time_of_day_sin"][:24], np.sin(2 * np.pi * np.arange(24) / 24), atol=1e-12)
    assert (tod["weekend"][24 * 5 : 24 * 7] == 1).all() and (tod["weekend"][: 24 * 5] == -1).all()


# -- the model starts as the base ---------------------------------------------------------------------------
def test_untrained_model_equals_the_chosen_seasonal_naive():
    rng = _rng()
    n, H, F = 900, int(rng.integers(3, 13)), 3
    values = rng.normal(size=(n, F)).cumsum(axis=0) + 50
    cal = rng.uniform(-1, 1, size=(n + H, 4))
    periods = (int(rng.integers(5, 20)), int(rng.integers(25, 60)))
    layout = default_layout(periods, H)
    arr = prepare(values, cal, 600)
    tc, kc = [0, 2], [1]
    base_periods = [periods[1], 1]
    starts = np.arange(max(layout.window, periods[1]), n - H, 7)
    x, last, _ = pack(arr, starts, layout, tc, kc, base_periods)
    pf, sf = feature_sizes(F, len(kc), cal.shape[1], len(tc), layout)
    model = SeasonalResidualGRU(layout.n_patches, pf, H, sf, len(tc), hidden_size=16)
    pred = unscale(arr, model.predict(torch.from_numpy(x)).double().numpy(), last, tc, H)
    k = np.arange(H)
    m = periods[1]
    expect0 = values[starts[:, None] + k[None, :] - m * (k // m + 1)[None, :], 0]
    expect2 = np.repeat(values[starts - 1, 2][:, None], H, axis=1)
    np.testing.assert_allclose(pred[:, :, 0], expect0, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pred[:, :, 1], expect2, rtol=1e-5, atol=1e-4)


# -- end to end: a panel with a holiday flag and known-future covariates -----------------------------------
@pytest.fixture(scope="module")
def panel_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("panel")
    df = _hourly_frame(n_series=3, weeks=6)
    path = tmp / "loads.csv"
    df.to_csv(path, index=False)
    r = forecast(path, targets=["load"], known_future=["temperature"], time_column="when", id_column="sensor",
                 epochs=2, hidden_size=16, max_train_windows=512, out_dir=tmp / "out",
                 seed=int(torch.randint(0, 1000, (1,))))
    return df, path, r, tmp / "out"


def test_panel_roles_seasons_and_defaults(panel_run):
    df, _, r, _ = panel_run
    assert r["series"] == 3 and r["targets"] == ["load"]
    assert set(r["known_future"]) == {"temperature", "holiday"}  # the holiday flag is used, not dropped
    assert r["ignored_columns"] == {"note": "not numeric"}
    assert r["seasons"] == [24, 168] and r["seasons_from"] == "time" and r["horizon"] == 24
    assert r["window"] >= 168 + 24 and "time_of_day_sin" in r["calendar_features"]
    assert {"naive", "seasonal naive (m=24)", "seasonal naive (m=168)"} <= set(r["metrics"])


def test_rescoring_the_written_forecasts_reproduces_the_metrics(panel_run):
    df, _, r, out = panel_run
    fc = pd.read_csv(out / "forecast.csv")
    test = fc[fc.part == "test"]
    assert (test.time[test.steps_ahead == 1] == test.origin_time[test.steps_ahead == 1]).all()  # origin = 1st step
    on_disk = json.loads((out / "metrics.json").read_text())
    columns = {r["model"]: "forecast", "naive": "naive", "seasonal naive (m=24)": "seasonal_naive_24",
               "seasonal naive (m=168)": "seasonal_naive_168", "exponential smoothing": "exp_smoothing",
               "damped trend (Holt)": "damped_trend", "linear (ridge)": "linear"}
    assert "linear (ridge)" not in r["metrics"]  # about 1,500 training windows: not short data
    columns = {k: v for k, v in columns.items() if k in r["metrics"]}
    if r["peer"]:
        columns[r["peer"]] = "mstl_ets"
    for method, col in columns.items():
        err = test[col] - test.truth
        assert on_disk["metrics"][method]["mae"][0] == pytest.approx(err.abs().mean(), rel=1e-9)
        assert on_disk["metrics"][method]["rmse"][0] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-9)
        for s in on_disk["per_series"]:
            part = test[test.series == s["series"]]
            assert s["metrics"][method]["mae"][0] == pytest.approx((part[col] - part.truth).abs().mean(), rel=1e-9)
    # truth and baselines against the raw file
    for name, g in df.groupby("sensor"):
        y = g.load.to_numpy()
        t = pd.to_datetime(g.when).to_numpy()
        part = test[test.series == name]
        pos = np.searchsorted(t, pd.to_datetime(part.time).to_numpy())
        np.testing.assert_allclose(part.truth, y[pos])
        org = np.searchsorted(t, pd.to_datetime(part.origin_time).to_numpy())
        k = part.steps_ahead.to_numpy() - 1
        np.testing.assert_allclose(part.naive, y[org - 1])
        np.testing.assert_allclose(part.seasonal_naive_168, y[org + k - 168 * (k // 168 + 1)])
        n = len(y)
        train_end = n - 2 * round(0.15 * n)
        scale = np.abs(np.diff(y[:train_end])).mean()  # MASE: one-step naive MAE of the training part
        s = next(s for s in on_disk["per_series"] if s["series"] == name)
        assert s["mase_scale"][0] == pytest.approx(scale)
        assert s["metrics"]["naive"]["mase"][0] == pytest.approx((part.naive - part.truth).abs().mean() / scale)
    future = fc[fc.part == "future"]
    assert len(future) == 3 * 24 and future.forecast.notna().all()
    assert (out / "forecast.png").stat().st_size > 10_000


def test_headline_names_the_best_baseline(panel_run):
    _, _, r, _ = panel_run
    names = ("naive", "seasonal naive (m=24)", "seasonal naive (m=168)", "exponential smoothing",
             "damped trend (Holt)")
    best = min(names, key=lambda b: r["metrics"][b]["mae"][0])
    assert r["best_baseline"] == [best]
    assert f"than the best baseline, {best}" in headline(r)
    w = r["wins"]["per_target"][0]
    assert w["series"] == 3 and 0 <= w["wins"] <= 3 and len(w["ratio_to_best_baseline"]) == 3


def test_mase_scale_does_not_change_with_season(tmp_path):
    df = _hourly_frame(weeks=6)[["when", "load"]]
    path = tmp_path / "one.csv"
    df.to_csv(path, index=False)
    kw = dict(time_column="when", epochs=1, hidden_size=8, peer=False, max_train_windows=256)
    a = forecast(path, season="24", out_dir=tmp_path / "a", **kw)
    b = forecast(path, season="24,168", out_dir=tmp_path / "b", **kw)
    assert a["seasons"] == [24] and b["seasons"] == [24, 168]
    assert a["per_series"][0]["mase_scale"] == b["per_series"][0]["mase_scale"]
    for r in (a, b):
        assert r["metrics"]["naive"]["mase"][0] == pytest.approx(
            r["metrics"]["naive"]["mae"][0] / r["per_series"][0]["mase_scale"][0])


def test_missing_hours_need_a_fill_policy(tmp_path):
    df = _hourly_frame(weeks=3)[["when", "load"]].drop(index=[100, 101])
    path = tmp_path / "gaps.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataFileError, match=r"misses 2 steps of its 0 days 01:00:00 grid .*--nan interpolate"):
        load_panel(path, time_column="when")
    p = load_panel(path, time_column="when", nan="interpolate")
    assert p.filled == 2 and len(p.series[0]) == len(df) + 2


def test_bad_roles_are_refused(tmp_path):
    path = tmp_path / "x.csv"
    _hourly_frame(weeks=3).query("sensor == 's0'").to_csv(path, index=False)
    with pytest.raises(DataFileError, match="both a target and a known-future"):
        load_panel(path, targets=["load"], known_future=["load"], time_column="when")
    with pytest.raises(DataFileError, match="no column 'temp'"):
        load_panel(path, known_future=["temp"], time_column="when")


def test_classical_peer_recovers_a_clean_seasonal_series():
    pytest.importorskip("statsmodels", reason="the MSTL+ETS peer is in the optional 'classical' extra")
    from fastgru.apps.forecasting.classical import mstl_ets_forecasts

    rng = _rng()
    m, n, H = 24, 24 * 40, 24
    t = np.arange(n)
    y = 5 + 0.01 * t + np.sin(2 * np.pi * t / m) + 0.01 * rng.normal(size=n)
    starts = np.arange(int(0.8 * n), n - H, 5)
    f = mstl_ets_forecasts(y, int(0.7 * n), starts, H, (m,))
    truth = y[starts[:, None] + np.arange(H)[None, :]]
    assert np.abs(f - truth).mean() < 0.1 * np.abs(np.diff(y)).mean() * H
