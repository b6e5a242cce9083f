"""What the seasonal-residual GRU reads for each origin, built from one series at a time.

Every series is standardised with its own training-part mean and standard deviation (per-series
scaling); targets are further taken relative to their last observed value, so levels never seen in
training (a trend) look familiar. For an origin t (the first forecast step) the row holds, flattened:

- encoder: the last W = P * n_patches steps of every column, cut into n_patches blocks of P steps, plus
  the calendar features of each block's last step;
- decoder, for each step t+k: the known-future columns and calendar features at t+k, and each season's
  seasonal-naive forecast of t+k;
- base: the chosen baseline's forecast of t..t+H-1: a season's length m for seasonal naive (1: naive),
  a smoother's kind ("ses", "holt": fitted on the training part, fastgru.apps.forecasting.smoothing), or
  "linear" (a ridge map of the row's other features, fastgru.apps.forecasting.linear).

The training targets are the standardised future values relative to the last observed value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastgru.apps.data.windows import Scaler
from fastgru.apps.forecasting.baselines import seasonal_naive
from fastgru.apps.forecasting.linear import LinearBase
from fastgru.apps.forecasting.smoothing import KINDS, Smoother, fit_smoothers

BaseKey = int | str  # a season's length (1: naive), a smoother's kind, or "linear"


@dataclass(frozen=True)
class Layout:
    """Window geometry: W = patch * n_patches past steps, `horizon` future steps, the seasons fed."""

    patch: int
    n_patches: int
    horizon: int
    periods: tuple[int, ...]

    @property
    def window(self) -> int:
        return self.patch * self.n_patches


def default_layout(periods: tuple[int, ...], horizon: int, max_patches: int = 24, window: int | None = None) -> Layout:
    """W covers the longest season plus the horizon (or `window`), in at most `max_patches` patches."""
    want = window if window is not None else max(periods, default=0) + horizon
    want = max(want, 2)
    patch = max(1, -(-want // max_patches))
    return Layout(patch, -(-want // patch), horizon, periods)


@dataclass
class SeriesArrays:
    """One series ready for windowing: standardised values, calendar features, its scaler, and per target
    column the smoothers fitted on its standardised training part."""

    scaled: np.ndarray  # (n, F)
    calendar: np.ndarray  # (n, C)
    scaler: Scaler
    smoothers: dict[int, tuple[Smoother, ...]]


def prepare(values: np.ndarray, calendar: np.ndarray, train_end: int, target_cols: list[int] | None = None
            ) -> SeriesArrays:
    """Standardise with the training part's statistics; fit the smoothers of `target_cols` (default: all)."""
    scaler = Scaler.fit(values[:train_end])
    z = scaler.transform(values)
    cols = range(z.shape[1]) if target_cols is None else target_cols
    return SeriesArrays(z, calendar, scaler, {c: fit_smoothers(z[:train_end, c]) for c in cols})


def base_forecast(arr: SeriesArrays, col: int, starts: np.ndarray, horizon: int, key: BaseKey) -> np.ndarray:
    """(N, horizon) standardised forecasts of column `col` by the baseline `key` (see the module doc)."""
    z = arr.scaled[:, col]
    if isinstance(key, str):
        return arr.smoothers[col][KINDS.index(key)].forecast(z, starts, horizon)
    return seasonal_naive(z, starts, horizon, key)


def feature_sizes(n_cols: int, n_known: int, n_cal: int, n_targets: int, layout: Layout) -> tuple[int, int]:
    """(patch_features, step_features)."""
    return layout.patch * n_cols + n_cal, n_known + n_cal + n_targets * len(layout.periods)


def pack(arr: SeriesArrays, starts: np.ndarray, layout: Layout, target_cols: list[int], known_cols: list[int],
         base_keys: list[BaseKey], linear: LinearBase | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows (N, D) float32, last (N, K) standardised last values, targets (N, H*K) float32 or empty).

    base_keys: per target column, its base: a season's length (1: naive), a smoother's kind, or "linear" (the
    ridge map `linear` of the row's other features, fastgru.apps.forecasting.linear). Targets need
    starts + horizon <= n; origins nearer the end get NaN targets (forecasts past the data).
    """
    starts = np.asarray(starts, dtype=np.int64)
    z, cal, L = arr.scaled, arr.calendar, layout
    n, n_cols = z.shape
    H, K = L.horizon, len(target_cols)
    last = z[starts - 1][:, target_cols]  # (N, K)
    rel = z.copy()
    idx = starts[:, None] + np.arange(-L.window, 0)[None, :]
    enc = z[idx]  # (N, W, F)
    enc[:, :, target_cols] -= last[:, None, :]
    enc = enc.reshape(len(starts), L.n_patches, L.patch * n_cols)
    if cal.shape[1]:
        ends = starts[:, None] - L.window + (np.arange(L.n_patches) + 1)[None, :] * L.patch - 1
        enc = np.concatenate([enc, cal[ends]], axis=2)
    fut = np.minimum(starts[:, None] + np.arange(H)[None, :], n - 1)  # clipped: covariates past the end repeat
    parts = [z[fut][:, :, known_cols]] if known_cols else []
    if cal.shape[1]:
        parts.append(_calendar_ahead(cal, starts, H))
    zt = rel[:, target_cols]
    for m in L.periods:
        parts.append(seasonal_naive(zt, starts, H, m) - last[:, None, :])
    dec = np.concatenate(parts, axis=2) if parts else np.zeros((len(starts), H, 0))
    feats = np.concatenate([enc.reshape(len(starts), -1), dec.reshape(len(starts), -1)], axis=1)
    if "linear" in base_keys:
        if linear is None:
            raise ValueError("a linear base needs the fitted map `linear`")
        lin = linear.predict(feats).reshape(len(starts), H, K)
    base = np.stack([lin[:, :, j] if key == "linear" else base_forecast(arr, c, starts, H, key) - last[:, j : j + 1]
                     for j, (c, key) in enumerate(zip(target_cols, base_keys))], axis=2)
    rows = np.concatenate([feats, base.reshape(len(starts), -1)], axis=1).astype(np.float32)
    tgt_idx = starts[:, None] + np.arange(H)[None, :]
    inside = tgt_idx < n
    y = np.full((len(starts), H, K), np.nan)
    y[inside] = zt[tgt_idx[inside]]
    y = (y - last[:, None, :]).reshape(len(starts), -1).astype(np.float32)
    return rows, last, y


def _calendar_ahead(cal: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """Calendar rows of the forecast steps; past the data's end they continue the last `horizon` rows'
    pattern shifted by whole periods of the step index (callers extend the calendar instead when they can)."""
    n = len(cal)
    idx = starts[:, None] + np.arange(horizon)[None, :]
    return cal[np.minimum(idx, n - 1)]


def unscale(arr: SeriesArrays, out: np.ndarray, last: np.ndarray, target_cols: list[int], horizon: int) -> np.ndarray:
    """Model outputs (N, H*K) relative standardised -> (N, H, K) in the series' units."""
    rel = out.reshape(len(out), horizon, len(target_cols)) + last[:, None, :]
    return arr.scaler.inverse(rel, target_cols)
