"""One series or many (a long table with an id column) as the forecaster reads them, every role checked.

A table gives each column a role:

- the time column (``time_column``): parsed as dates when it can be; the series must be in time order;
  a regular grid with missing stamps (an hour absent from an hourly series) is filled out to the grid
  under a ``nan`` policy that fills (interpolate, ffill, zero), else refused with the first gap named;
- the id column (``id_column``): one series per distinct value, in order of first appearance;
- value columns (``columns``, default: every numeric column), among them the targets (default: all value
  columns that are not known-future covariates) and the known-future covariates (``known_future``),
  whose values at the forecast steps are known in advance (a temperature forecast, a holiday flag);
- true/false columns (a holiday flag) are never dropped silently: by default they become known-future
  covariates (0/1); every other column left out is listed in ``ignored`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fastgru.apps.data.series import BUILTIN_SERIES, load_series
from fastgru.apps.data.tabular import (
    DataFileError,
    handle_nans,
    numeric_columns,
    read_table,
    require_columns,
    to_numeric,
)

TRUE_WORDS = {"true", "yes", "y", "t"}
FALSE_WORDS = {"false", "no", "n", "f"}


@dataclass
class SeriesPart:
    """One series: values (n, F) in the panel's column order, its time stamps (or None), its name."""

    name: str
    values: np.ndarray
    time: np.ndarray | None

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Panel:
    """Series sharing columns: `columns` (all value columns), `targets` and `known_future` (names)."""

    name: str
    source: str
    description: str
    series: list[SeriesPart]
    columns: list[str]
    targets: list[str]
    known_future: list[str]
    time_is_datetime: bool
    ignored: dict[str, str] = field(default_factory=dict)
    filled: int = 0  # grid steps that were missing and filled under the nan policy

    @property
    def target_cols(self) -> list[int]:
        return [self.columns.index(c) for c in self.targets]

    @property
    def known_cols(self) -> list[int]:
        return [self.columns.index(c) for c in self.known_future]


def _boolean_column(col: pd.Series) -> pd.Series | None:
    """0/1 floats when `col` holds only true/false words or booleans (empty cells aside), else None."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype(np.float64)
    if pd.api.types.is_numeric_dtype(col):
        return None
    words = col.dropna().astype(str).str.strip().str.lower()
    if words.empty or not words.isin(TRUE_WORDS | FALSE_WORDS).all():
        return None
    return col.astype(str).str.strip().str.lower().map(lambda w: 1.0 if w in TRUE_WORDS else
                                                       (0.0 if w in FALSE_WORDS else np.nan))


def _parse_time(col: pd.Series) -> tuple[np.ndarray, bool]:
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(np.float64), False
    parsed = pd.to_datetime(col, errors="coerce", utc=True)
    if parsed.notna().all():
        return parsed.dt.tz_localize(None).to_numpy(), True
    return np.arange(len(col), dtype=np.float64), False


def _to_grid(name: str, values: pd.DataFrame, time: np.ndarray, nan: str, source: str) -> tuple[pd.DataFrame,
                                                                                                 np.ndarray, int]:
    """Reindex a datetime series onto its regular grid (its most common spacing); count the added steps."""
    t = pd.DatetimeIndex(time)
    if len(t) < 3:
        return values, time, 0
    step = pd.Series(t[1:] - t[:-1]).mode().iloc[0]
    if (t[1:] - t[:-1]).min() <= pd.Timedelta(0):
        bad = int(np.flatnonzero((t[1:] - t[:-1]) <= pd.Timedelta(0))[0]) + 2
        raise DataFileError(f"{source}: series {name!r} is not in time order (row {bad} of the series does not "
                            "come after the one before it); sort the file by time")
    if step >= pd.Timedelta(days=28):
        return values, time, 0
    grid = pd.date_range(t[0], t[-1], freq=step)
    if len(grid) == len(t):
        return values, time, 0
    off = ~t.isin(grid)
    if off.any():
        raise DataFileError(f"{source}: series {name!r} has time stamps off its {step} grid "
                            f"(first: {t[off][0]}); resample it to a regular spacing first")
    gap = t[np.flatnonzero(np.diff(t) > step)[0]]
    if nan in ("error", "drop"):
        raise DataFileError(f"{source}: series {name!r} misses {len(grid) - len(t)} steps of its {step} grid "
                            f"(first gap after {gap}); choose how to fill them with --nan interpolate, ffill "
                            "or zero")
    filled = values.set_axis(t).reindex(grid).reset_index(drop=True)
    return handle_nans(filled, nan, source), grid.to_numpy(), len(grid) - len(t)


def load_panel(data: str | Path, columns: Sequence[str] | None = None, *, targets: Sequence[str] | None = None,
               known_future: Sequence[str] | None = None, time_column: str | None = None,
               id_column: str | None = None, nan: str | None = None) -> Panel:
    """Read a built-in series or a CSV/TSV/Parquet table into a :class:`Panel` (checks every role)."""
    known = list(known_future or [])
    spec = BUILTIN_SERIES.get(str(data))
    ignored: dict[str, str] = {}
    if spec is not None and id_column is None:
        s = load_series(data, columns, time_column=time_column, nan=nan)
        taxis = s.time_axis()
        is_dt = np.issubdtype(np.asarray(taxis).dtype, np.datetime64)
        cols = s.columns
        require_columns(pd.DataFrame(columns=cols), known, s.source, "value column")
        parts = [SeriesPart(s.name, s.values.to_numpy(np.float64), np.asarray(taxis) if s.time is not None else None)]
        tg = list(targets) if targets else [c for c in cols if c not in known]
        return _finish(Panel(s.name, s.source, s.description, parts, cols, tg, known, is_dt), ignored)
    path = Path(data)
    if not path.exists() and path.suffix == "":
        raise DataFileError(f"{data!r} is neither a built-in series ({', '.join(BUILTIN_SERIES)}) nor an existing file")
    df = read_table(path)
    source = str(path)
    nan = nan or "error"
    require_columns(df, [c for c in (time_column, id_column) if c] + list(columns or []) + known, source)
    roles = {c for c in (time_column, id_column) if c}
    bools = {c: b for c in df.columns if c not in roles and (b := _boolean_column(df[c])) is not None}
    if columns:
        cols = list(columns)
    else:
        cols = [c for c in numeric_columns(df, exclude=sorted(roles)) if c not in bools]
        cols += [c for c in bools if c not in cols]
        for c in df.columns:
            if c not in cols and c not in roles:
                ignored[str(c)] = "not numeric"
    for c in known:
        if c not in cols:
            cols.append(c)
    for c in bools:
        if c in cols and c not in known and not (targets and c in targets):
            known.append(c)
    if not cols:
        have = ", ".join(repr(str(c)) for c in df.columns)
        raise DataFileError(f"{source} has no numeric column to forecast; its columns are: {have}")
    if len(df) == 0:
        raise DataFileError(f"{source} has no data rows")
    frame = pd.concat([bools[c].rename(c) if c in bools else to_numeric(df, [c], source)[c] for c in cols], axis=1)
    tg = list(targets) if targets else [c for c in cols if c not in known]
    groups = [("", df.index)] if id_column is None else [
        (str(k), idx) for k, idx in df.groupby(id_column, sort=False, dropna=False).groups.items()]
    parts, filled, is_dt = [], 0, False
    for name, idx in groups:
        vals = frame.loc[idx].reset_index(drop=True)
        where = f"{source}" + (f" (series {name!r})" if id_column else "")
        time = None
        if time_column:
            time, is_dt = _parse_time(df.loc[idx, time_column].reset_index(drop=True))
            if is_dt:
                vals, time, k = _to_grid(name or path.stem, vals, time, nan, where)
                filled += k
        vals = handle_nans(vals, nan, where)
        if time is not None and len(vals) != len(time):  # rows dropped under nan="drop"
            time = time[vals.index.to_numpy()]
        parts.append(SeriesPart(name or path.stem, vals.to_numpy(np.float64), time))
    panel = Panel(path.stem, source, path.name, parts, [str(c) for c in cols], tg, known, is_dt, filled=filled)
    return _finish(panel, ignored)


def _finish(panel: Panel, ignored: dict[str, str]) -> Panel:
    for t in panel.targets:
        if t not in panel.columns:
            raise DataFileError(f"target column {t!r} not among the value columns "
                                f"{', '.join(map(repr, panel.columns))}")
        if t in panel.known_future:
            raise DataFileError(f"column {t!r} cannot be both a target and a known-future covariate")
    if not panel.targets:
        raise DataFileError("no target column left: every value column is a known-future covariate")
    panel.ignored = ignored
    return panel
