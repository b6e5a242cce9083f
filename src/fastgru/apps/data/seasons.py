"""Seasonal periods of a series: from its time stamps' spacing, or from its autocorrelation.

A forecaster's first question is "what repeats, and how often?". `infer_seasons` answers it in steps:

- time stamps with a regular spacing give the calendar's periods that fit in whole steps:
  every few minutes / half-hourly / hourly: one day and one week (half-hourly: 48 and 336; hourly: 24 and
  168); daily: one week and one year (7 and 365.25, rounded to 365 for the seasonal-naive forecast);
  weekly: one year (52.18 -> 52); monthly: 12; quarterly: 4;
- without usable time stamps (none, plain numbers, yearly data), the autocorrelation of the linearly
  detrended training part: the lag of its highest local peak above max(0.3, 3/sqrt(n)) between 2 and a third of the
  training length (sunspots: 10-11 years); no such peak means no season.

Only periods with at least two whole cycles in the training part are kept (a seasonal-naive forecast and
a seasonal decomposition need them). An explicit list (``--season 48,336``) replaces the inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)
ACF_MIN_PEAK = 0.3


@dataclass(frozen=True)
class Seasons:
    """Seasonal periods in steps (shortest first) and how they were found ("time", "acf", "given", "none")."""

    periods: tuple[int, ...]
    source: str
    step: str | None = None  # the time spacing in words, when known

    @property
    def primary(self) -> int | None:
        return self.periods[0] if self.periods else None

    @property
    def longest(self) -> int:
        return max(self.periods) if self.periods else 1


def time_step(time: pd.Series | np.ndarray) -> pd.Timedelta | pd.DateOffset | None:
    """The regular spacing of datetime stamps (the most common difference), or None if not datetimes.

    Monthly and quarterly stamps (28-31 / 90-92 days apart) give a month / quarter offset.
    """
    t = pd.DatetimeIndex(pd.to_datetime(pd.Series(time), errors="coerce"))
    if len(t) < 3 or t.isna().any():
        return None
    diffs = pd.Series(t[1:] - t[:-1])
    mode = diffs.mode()
    if mode.empty or mode.iloc[0] <= pd.Timedelta(0):
        return None
    step = mode.iloc[0]
    if pd.Timedelta(days=28) <= step <= pd.Timedelta(days=31):
        return pd.DateOffset(months=1)
    if pd.Timedelta(days=89) <= step <= pd.Timedelta(days=92):
        return pd.DateOffset(months=3)
    return step


def describe_step(step: pd.Timedelta | pd.DateOffset) -> str:
    if isinstance(step, pd.DateOffset):
        return "quarterly" if step.months == 3 else "monthly"
    names = {pd.Timedelta(minutes=30): "half-hourly", pd.Timedelta(hours=1): "hourly", DAY: "daily", WEEK: "weekly"}
    return names.get(step, f"every {step}")


def calendar_periods(step: pd.Timedelta | pd.DateOffset) -> list[float]:
    """The calendar's seasonal periods in steps for a spacing (see the module docstring)."""
    if isinstance(step, pd.DateOffset):
        return [4.0] if step.months == 3 else [12.0]
    if step < DAY:
        out = []
        for span in (DAY, WEEK):
            ratio = span / step
            if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 2:
                out.append(float(round(ratio)))
        return out
    if step == DAY:
        return [7.0, 365.25]
    if step == WEEK:
        return [365.25 / 7]
    return []


def acf_period(y: np.ndarray, max_lag: int | None = None) -> int | None:
    """Lag of the highest local maximum (> max(0.3, 3/sqrt(n))) of the detrended series' autocorrelation, or None."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 8:
        return None
    t = np.arange(n)
    y = y - np.polyval(np.polyfit(t, y, 1), t)
    if not np.any(y):
        return None
    max_lag = min(max_lag or n // 3, n // 3)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(y, size)
    acf = np.fft.irfft(f * np.conj(f), size)[: max_lag + 2]
    acf = acf / acf[0]
    best, best_val = None, max(ACF_MIN_PEAK, 3 / np.sqrt(n))  # white noise: sd 1/sqrt(n) per lag
    for lag in range(2, max_lag + 1):
        if acf[lag] > acf[lag - 1] and acf[lag] >= acf[lag + 1] and acf[lag] > best_val:
            best, best_val = lag, acf[lag]
    return best


def infer_seasons(time: pd.Series | np.ndarray | None, train_values: np.ndarray,
                  given: Sequence[int] | None = None) -> Seasons:
    """The seasonal periods (in whole steps, shortest first) of a series whose training part is `train_values`.

    given: periods that replace the inference (still checked for two whole cycles in the training part).
    """
    n_train = len(train_values)
    step = time_step(time) if time is not None and not pd.api.types.is_numeric_dtype(pd.Series(time)) else None
    words = describe_step(step) if step is not None else None
    if given:
        periods, source = [float(p) for p in given], "given"
    elif step is not None and calendar_periods(step):
        periods, source = calendar_periods(step), "time"
    else:
        y = np.asarray(train_values, dtype=np.float64)
        y = y[:, 0] if y.ndim == 2 else y
        lag = acf_period(y)
        periods, source = ([float(lag)] if lag else []), ("acf" if lag else "none")
    if given:
        bad = [int(p) for p in given if p < 2 or 2 * p > n_train]
        if bad:
            raise ValueError(f"season {bad[0]} needs 2 <= season <= half the training part ({n_train // 2} steps)")
    whole = sorted({int(round(p)) for p in periods if p >= 2 and 2 * round(p) <= n_train})
    return Seasons(tuple(whole), source if whole or source == "given" else "none", words)
