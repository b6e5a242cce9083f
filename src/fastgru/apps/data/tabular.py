"""Users' tables (CSV, TSV, Parquet) read column-wise and checked before any training starts.

Each problem a file can have gets its own message naming the file and the column, so a user can fix it
without reading a traceback:

- a separator or decimal mark that cannot be told from the file (see :mod:`fastgru.apps.data.delimited`,
  which detects ``;`` separators and decimal commas): the message asks for ``--sep`` / ``--decimal``;
- a row with more or fewer fields than the header: its row number;
- a missing column: the message lists the columns the file has;
- non-numeric values in a value column: how many, the first few with their data-row numbers (and a hint
  when they look like decimal commas);
- infinite values (``inf``, ``-inf``): refused with column and row under the default ``nan="error"``,
  treated as missing under any other NaN policy;
- missing values (empty cells, ``n/a``, ``NA``, ``-``, ``?``, ``null``, ...): how many per column, and the
  options that deal with them (``nan="drop"`` drops those rows, ``"ffill"`` carries the last value
  forward, ``"interpolate"`` fills linearly in time, ``"zero"`` writes 0) — the default ``"error"``
  never changes data silently;
- too few rows for a window and a horizon (see :func:`check_enough_rows`).

Only the columns a task needs are read (``columns=``); how the file was read (separator, decimal mark,
rows, memory peaks) is kept in ``DataFrame.attrs["read"]``.

Row numbers in messages count data rows from 1 (the header is not counted), in file order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fastgru.apps.data.delimited import MISSING_MARKERS, NUMBER_PATTERNS, TableReadError, peak_rss_mb, read_delimited
from fastgru.apps.data.reading_options import current as _current_reading_options
from fastgru.apps.data.reading_options import reading_options, separator

__all__ = ["DataFileError", "read_table", "reading_options", "separator", "load_columns", "handle_nans",
           "to_numeric", "require_columns", "numeric_columns", "check_enough_rows", "NAN_POLICIES"]

NAN_POLICIES = ("error", "drop", "ffill", "interpolate", "zero")
READERS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
class DataFileError(ValueError):
    """A data file (or a built-in data set) that cannot be used as asked; the message says why."""


def read_table(path: str | Path, columns: Sequence[str] | None = None, *, sep: str | None = None,
               decimal: str | None = None) -> pd.DataFrame:
    """Read `columns` (default: all) of a CSV (.csv/.txt), TSV (.tsv) or Parquet (.parquet/.pq) file.

    sep / decimal: the separator and decimal mark of a text file; None detects them (see
    :mod:`fastgru.apps.data.delimited`). The frame's ``attrs["read"]`` says how the file was read.
    """
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
    context = _current_reading_options()
    sep = separator(sep) or context.get("sep")
    decimal = decimal or context.get("decimal")
    try:
        if kind == "parquet":
            try:
                if columns is not None:
                    import pyarrow.parquet as pq

                    require_columns(pd.DataFrame(columns=pq.ParquetFile(path).schema_arrow.names), columns, path)
                df = pd.read_parquet(path, columns=list(columns) if columns is not None else None)
            except ImportError as exc:
                raise DataFileError(f"{path}: reading Parquet needs pyarrow (pip install 'fastgru[parquet]')") from exc
            df.attrs["read"] = {"rows": len(df), "columns_read": [str(c) for c in df.columns],
                                "file_mb": round(path.stat().st_size / 2**20, 2), "mostly_numeric": [],
                                "frame_mb": round(float(df.memory_usage(deep=False).sum()) / 2**20, 2),
                                "process_peak_rss_mb": peak_rss_mb()}
            return df
        df, summary = read_delimited(path, columns, sep=sep, decimal=decimal,
                                     default_sep="\t" if kind == "tsv" else ",")
        df.attrs["read"] = summary
        return df
    except DataFileError:
        raise
    except TableReadError as exc:
        raise DataFileError(str(exc)) from exc
    except (UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataFileError(f"{path}: cannot be read as {kind.upper()}: {' '.join(str(exc).split())}") from exc


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
    """Columns of numbers, in file order, without `exclude`.

    A text column whose cells are at least 90% numbers (``attrs["read"]["mostly_numeric"]``) counts too,
    so that its few bad cells are reported by row instead of the column vanishing from the selection.
    """
    mostly = set(df.attrs.get("read", {}).get("mostly_numeric", ()))
    return [c for c in df.columns if c not in exclude and (c in mostly or (
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])))]


def _text_to_numbers(col: pd.Series, decimal: str) -> pd.Series:
    """Text cells as floats in the file's decimal style; missing markers -> NaN, anything else -> NaN too."""
    text = col.astype("string").str.strip()
    text = text.mask(text.isin(MISSING_MARKERS))
    valid = text.str.fullmatch(re.sub(r"^\(\?i\)", "", NUMBER_PATTERNS[decimal]), flags=re.IGNORECASE)
    text = text.where(valid.fillna(False).astype(bool))
    if decimal == ",":
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(text, errors="coerce").astype(np.float64)


def to_numeric(df: pd.DataFrame, columns: Sequence[str], source: str | Path | None = None,
               inf: str = "error") -> pd.DataFrame:
    """The `columns` as float64; raise on text that is not a number (missing cells become NaN, checked later).

    inf: "error" refuses infinite values naming column and rows; "missing" turns them into NaN (for the
    NaN policies other than "error").
    """
    decimal = df.attrs.get("read", {}).get("decimal", ".")
    out = {}
    for c in columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype(np.float64)
        if pd.api.types.is_numeric_dtype(col):
            values = col.astype(np.float64)
        else:
            values = _text_to_numbers(col, decimal)
            present = col.notna() & ~col.astype(str).str.strip().isin(MISSING_MARKERS)
            bad = values.isna() & present
            if bad.any():
                rows = np.flatnonzero(bad.to_numpy())
                examples = ", ".join(f"row {r + 1}: {col.iloc[r]!r}" for r in rows[:3])
                hint = ""
                if decimal == "." and any(re.fullmatch(r"\s*[+-]?\d+,\d+\s*", str(col.iloc[r])) for r in rows[:3]):
                    hint = " (they look like decimal commas: pass --decimal , and, if needed, --sep)"
                elif decimal == "," and any(re.fullmatch(r"\s*[+-]?\d*\.\d+\s*", str(col.iloc[r])) for r in rows[:3]):
                    hint = " (a dot where the file's decimal mark is a comma: pass --decimal . if dots are decimals)"
                raise DataFileError(
                    f"{_name(source)}: column {c!r} has {len(rows)} non-numeric value{'s' if len(rows) > 1 else ''} "
                    f"({examples}{', ...' if len(rows) > 3 else ''}){hint}; every value of a series column must be "
                    "a number"
                )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            if inf == "error":
                rows = np.flatnonzero(infinite)
                examples = ", ".join(f"row {r + 1}: {values.iloc[r]:g}" for r in rows[:3])
                raise DataFileError(
                    f"{_name(source)}: column {c!r} has {len(rows)} infinite value{'s' if len(rows) > 1 else ''} "
                    f"({examples}{', ...' if len(rows) > 3 else ''}); pass --nan drop/ffill/interpolate/zero "
                    "to treat them as missing"
                )
            values = values.mask(pd.Series(infinite, index=values.index))
        out[c] = values
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
    values = to_numeric(df, wanted, source, inf="error" if nan == "error" else "missing")
    values = handle_nans(values, nan, source)
    time = df[time_column].loc[values.index] if time_column else None
    return values.reset_index(drop=True), (time.reset_index(drop=True) if time is not None else None)
