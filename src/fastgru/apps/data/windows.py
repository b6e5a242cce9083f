"""Series -> supervised windows: time-ordered splits, scaling fitted on the training part, windowing.

A forecast "origin" t is the first step to predict: its input window is steps t-window .. t-1, its targets
t .. t+horizon-1. Splits are by time: train, then validation, then the held-out test tail; a window
belongs to the split its *targets* lie in (its inputs may reach back into the previous split, as they
would when forecasting for real), so no target is ever seen by an earlier split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fastgru.apps.data.tabular import DataFileError


@dataclass
class Scaler:
    """Per-column standardisation (x - mean) / std with the statistics of the training part only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        values = np.asarray(values, dtype=np.float64)
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)  # a constant column stays put
        return cls(mean, std)

    def transform(self, values: np.ndarray, cols: np.ndarray | list[int] | None = None) -> np.ndarray:
        m, s = (self.mean, self.std) if cols is None else (self.mean[cols], self.std[cols])
        return (np.asarray(values, dtype=np.float64) - m) / s

    def inverse(self, values: np.ndarray, cols: np.ndarray | list[int] | None = None) -> np.ndarray:
        m, s = (self.mean, self.std) if cols is None else (self.mean[cols], self.std[cols])
        return np.asarray(values, dtype=np.float64) * s + m

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


@dataclass
class Split:
    """Time-ordered split points: train = [0, train_end), val = [train_end, val_end), test = [val_end, n)."""

    n: int
    train_end: int
    val_end: int

    @property
    def test_size(self) -> int:
        return self.n - self.val_end


def time_split(n: int, val_fraction: float = 0.15, test_fraction: float = 0.15, *, test_size: int | None = None,
               val_size: int | None = None) -> Split:
    """Cut n steps into train / validation / test in time order (sizes by fraction unless given)."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise DataFileError(f"{name} must lie in [0, 1), got {f}")
    test = test_size if test_size is not None else int(round(n * test_fraction))
    val = val_size if val_size is not None else int(round(n * val_fraction))
    if test < 0 or val < 0 or test + val >= n:
        raise DataFileError(f"cannot split {n} steps into a validation part of {val} and a test part of {test} "
                            "and still train on something")
    return Split(n, n - test - val, n - test)


def origins(target_start: int, target_end: int, window: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Every origin t with targets t..t+horizon-1 inside [target_start, target_end) and t - window >= 0."""
    first = max(target_start, window)
    last = target_end - horizon  # inclusive
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, stride, dtype=np.int64)


def make_windows(values: np.ndarray, starts: np.ndarray, window: int, horizon: int,
                 target_cols: list[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, window, F) = values[t-window:t] and targets (N, horizon, K) = values[t:t+horizon, target_cols]."""
    values = np.asarray(values)
    cols = np.arange(values.shape[1]) if target_cols is None else np.asarray(target_cols)
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) == 0:
        return (np.zeros((0, window, values.shape[1]), values.dtype), np.zeros((0, horizon, len(cols)), values.dtype))
    idx_in = starts[:, None] + np.arange(-window, 0)[None, :]
    idx_out = starts[:, None] + np.arange(horizon)[None, :]
    if idx_in.min() < 0 or idx_out.max() >= len(values):
        raise ValueError("a window reaches outside the series")
    return values[idx_in], values[idx_out][:, :, cols]


def pad_scaled(seqs: Sequence[np.ndarray], scaler: Scaler) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised sequences padded with zeros into (N, T_max, C), and their lengths."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if (lengths < 1).any():
        raise DataFileError(f"{int((lengths < 1).sum())} sequence(s) have no steps")
    x = np.zeros((len(seqs), int(lengths.max()), seqs[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = scaler.transform(s)
    return torch.from_numpy(x), torch.from_numpy(lengths)
