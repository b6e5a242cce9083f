"""Users' tables (CSV, TSV, Parquet) read through pandas and checked before any training starts.

Each problem a file can have gets its own message naming the file and the column, so a user can fix it
without reading a traceback:

- a missing column: the message lists the columns the file has;
- non-numeric values in a value column: how many, the first few with their data-row numbers;
- missing values (NaN / empty cells): how many per column, and the options that deal with them
  (``nan="drop"`` drops those rows, ``"ffill"`` carries the last value forward, ``"interpolate"`` fills
  linearly in time, ``"zero"`` writes 0) — the default ``"error"`` never changes data silently;
- too few rows for a window and a horizon (see :func:`check_enough_rows`).

Row numbers in messages count data rows from 1 (the header is not counted), in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

NAN_POLICIES = ("error", "drop", "ffill", "interpolate", "zero")
READERS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


class DataFileError(ValueError):
    """A data file (or a built-in data set) that cannot be used as asked; the message says why."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (.csv/.txt), TSV (.tsv) or Parquet (.parquet/.pq) file into a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"data file not found: {path}")
    if path.is_dir():
        raise DataFileError(f"{path} is a folder; give a CSV or Parquet file")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataFileError(
            f"{path}: unknown file type {path.suffix!r}; use one of {sorted(READERS)} (CSV, TSV or Parquet)"
        )
    try:
        if kind == "parquet":
            try:
                return pd.read_parquet(path)
            except ImportError as exc:
                raise DataFileError(f"{path}: reading Parquet needs pyarrow (pip install 'fastgru[parquet]')") from exc
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except DataFileError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataFileError(f"{path}: cannot be read as {kind.upper()}: {exc}") from exc


def _name(source: str | Path | None) -> str:
    return str(source) if source is not None else "the data"


def require_columns(df: pd.DataFrame, columns: Sequence[str], source: str | Path | None = None,
                    what: str = "column") -> None:
    """Raise naming every missing column and listing the columns there are."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in df.columns)
        plural = "s" if len(missing) > 1 else ""
        raise DataFileError(
            f"{_name(source)} has no {what}{plural} {', '.join(repr(c) for c in missing)}; "
            f"its columns are: {have}"
        )


def numeric_columns(df: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Columns pandas read as numbers, in file order, without `exclude`."""
    return [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c])]


def to_numeric(df: pd.DataFrame, columns: Sequence[str], source: str | Path | None = None) -> pd.DataFrame:
    """The `columns` as float64; raise on text that is not a number (empty cells become NaN, checked later)."""
    out = {}
    for c in columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype(np.float64)
        values = pd.to_numeric(col, errors="coerce")
        bad = values.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            examples = ", ".join(f"row {r + 1}: {col.iloc[r]!r}" for r in rows[:3])
            raise DataFileError(
                f"{_name(source)}: column {c!r} has {len(rows)} non-numeric value{'s' if len(rows) > 1 else ''} "
                f"({examples}{', ...' if len(rows) > 3 else ''}); every value of a series column must be a number"
            )
        out[c] = values.astype(np.float64)
    return pd.DataFrame(out, index=df.index)


def handle_nans(df: pd.DataFrame, policy: str = "error", source: str | Path | None = None) -> pd.DataFrame:
    """Apply the NaN policy to every column of `df` (already numeric); 'error' raises with the counts."""
    if policy not in NAN_POLICIES:
        raise DataFileError(f"nan policy must be one of {NAN_POLICIES}, got {policy!r}")
    counts = df.isna().sum()
    counts = counts[counts > 0]
    if counts.empty:
        return df
    if policy == "error":
        total = int(df.isna().any(axis=1).sum())
        first = int(np.flatnonzero(df.isna().any(axis=1).to_numpy())[0]) + 1
        per_col = ", ".join(f"{c!r}: {int(n)}" for c, n in counts.items())
        raise DataFileError(
            f"{_name(source)} has {int(counts.sum())} missing value{'s' if counts.sum() > 1 else ''} (NaN or empty) "
            f"in {total} row{'s' if total > 1 else ''} (per column: {per_col}; first at row {first}). Choose what to "
            "do with them: nan='drop' (--nan drop) removes those rows, nan='ffill' (--nan ffill) repeats the last "
            "value, nan='interpolate' (--nan interpolate) fills linearly, nan='zero' (--nan zero) writes 0"
        )
    if policy == "drop":
        out = df.dropna()
    elif policy == "zero":
        out = df.fillna(0.0)
    elif policy == "ffill":
        out = df.ffill().bfill()  # a NaN at the very start takes the first real value
    else:
        out = df.interpolate(method="linear", limit_direction="both")
    empty = [c for c in df.columns if df[c].isna().all()]
    if empty:
        raise DataFileError(f"{_name(source)}: column{'s' if len(empty) > 1 else ''} "
                            f"{', '.join(repr(c) for c in empty)} hold no values at all")
    return out


def check_enough_rows(n_rows: int, window: int, horizon: int, n_windows: int = 1,
                      source: str | Path | None = None, what: str = "") -> None:
    """Raise unless `n_rows` rows give at least `n_windows` windows of `window` inputs + `horizon` targets."""
    need = window + horizon + n_windows - 1
    if n_rows < need:
        raise DataFileError(
            f"{_name(source)} has too few rows{what}: {n_rows}, but a window of {window} steps plus a horizon of "
            f"{horizon} step{'s' if horizon > 1 else ''} needs at least {need} rows"
            f"{f' for {n_windows} windows' if n_windows > 1 else ''}; use a shorter --window/--horizon or more data"
        )


def load_columns(
    df: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    time_column: str | None = None,
    nan: str = "error",
    source: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Select value `columns` (default: every numeric column but the time column) and check them.

    Returns (numeric frame of the value columns, time column or None), rows in file order, after the NaN
    policy (dropped rows vanish from both).
    """
    wanted = list(columns) if columns else []
    require_columns(df, wanted + ([time_column] if time_column else []), source)
    if not wanted:
        wanted = numeric_columns(df, exclude=[time_column] if time_column else [])
        if not wanted:
            have = ", ".join(repr(str(c)) for c in df.columns)
            raise DataFileError(f"{_name(source)} has no numeric column to use; its columns are: {have}")
    if len(df) == 0:
        raise DataFileError(f"{_name(source)} has no data rows")
    values = to_numeric(df, wanted, source)
    values = handle_nans(values, nan, source)
    time = df[time_column].loc[values.index] if time_column else None
    return values.reset_index(drop=True), (time.reset_index(drop=True) if time is not None else None)
