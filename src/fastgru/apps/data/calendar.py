"""Calendar features derived from time stamps: known for every future step, so a forecaster may use them.

For a spacing below one day: time of day (sine and cosine of the phase in the day); below one week: day
of the week (sine and cosine, plus a weekend flag); below one year: day of the year (sine and cosine).
Monthly and quarterly data get the month of the year (sine and cosine). Each feature lies in [-1, 1].
Time stamps are used as given (a time zone is kept: UTC stamps give UTC hours).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fastgru.apps.data.seasons import DAY, WEEK


def calendar_features(time: pd.Series | np.ndarray | pd.DatetimeIndex,
                      step: pd.Timedelta | pd.DateOffset | None) -> tuple[np.ndarray, list[str]]:
    """(n, F) float64 features and their names; (n, 0) when `step` is None (no usable time stamps)."""
    t = pd.DatetimeIndex(pd.to_datetime(pd.Series(time))) if step is not None else None
    n = len(time)
    cols: dict[str, np.ndarray] = {}
    if t is None:
        return np.zeros((n, 0)), []

    def cyc(name: str, phase: np.ndarray) -> None:
        cols[f"{name}_sin"] = np.sin(2 * np.pi * phase)
        cols[f"{name}_cos"] = np.cos(2 * np.pi * phase)

    if isinstance(step, pd.DateOffset):
        cyc("month", (t.month.to_numpy() - 1) / 12.0)
    else:
        if step < DAY:
            seconds = t.hour.to_numpy() * 3600 + t.minute.to_numpy() * 60 + t.second.to_numpy()
            cyc("time_of_day", seconds / 86400.0)
        if step < WEEK:
            dow = t.day_of_week.to_numpy()
            cyc("day_of_week", dow / 7.0)
            cols["weekend"] = (dow >= 5).astype(np.float64) * 2 - 1
        if step < pd.Timedelta(days=365):
            cyc("day_of_year", (t.day_of_year.to_numpy() - 1) / 365.25)
    names = list(cols)
    return np.stack([cols[c] for c in names], axis=1).astype(np.float64), names
