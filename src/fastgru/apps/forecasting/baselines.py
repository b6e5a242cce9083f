"""Baseline forecasts and the metrics every method is scored with.

- naive: the last observed value repeated over the horizon;
- seasonal naive with period m: the value one season before each target step,
  ``y[t + k - m * (k // m + 1)]`` for step k = 0..H-1 from origin t (the first forecast step);
- the smoothed baselines (exponential smoothing, damped trend) live in fastgru.apps.forecasting.smoothing.

Metrics, per target column, over every scored (origin, step) pair alike: MAE, RMSE and MASE. MASE divides
the MAE by ONE scale per series and column: the in-sample MAE of the one-step naive forecast on the
training part (Hyndman & Koehler 2006 with m = 1). No option changes it, so MASE values of runs with
different ``--season`` settings are comparable. Over many series, the overall MAE and RMSE pool every
scored point; the overall MASE is the mean of the per-series MASEs.
"""

from __future__ import annotations

import numpy as np


def seasonal_naive(y: np.ndarray, starts: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """(N, horizon, ...) forecasts: y[t + k - m*(k//m + 1)] for each origin t in `starts` (m = 1: naive)."""
    k = np.arange(horizon)
    idx = np.asarray(starts)[:, None] + k[None, :] - m * (k // m + 1)[None, :]
    if len(idx) and idx.min() < 0:
        raise ValueError(f"a season of {m} reaches before the start of the series")
    return y[idx]


def mase_scale(train: np.ndarray) -> np.ndarray:
    """Per column: the in-sample MAE of the one-step naive forecast on the training part (nan when 0)."""
    train = np.asarray(train, dtype=np.float64)
    if len(train) < 2:
        raise ValueError("the training part needs at least 2 steps for the MASE scale")
    scale = np.abs(np.diff(train, axis=0)).mean(axis=0)
    return np.where(scale > 0, scale, np.nan)


def scores(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """pred, truth (N, H, K) -> per-column MAE, RMSE, MASE (MAE / scale)."""
    err = np.asarray(pred, np.float64) - truth
    mae = np.abs(err).mean(axis=(0, 1))
    rmse = np.sqrt((err**2).mean(axis=(0, 1)))
    return {"mae": mae, "rmse": rmse, "mase": mae / scale}


def baseline_name(key: int | str) -> str:
    """A row name: a season's length m (1: naive), a smoother's kind ("ses", "holt") or "linear"."""
    if key == "linear":
        return "linear (ridge)"
    if isinstance(key, str):
        from fastgru.apps.forecasting.smoothing import NAMES

        return NAMES[key]
    return "naive" if key == 1 else f"seasonal naive (m={key})"
