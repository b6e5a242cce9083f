"""Delimited text tables (CSV, TSV) read column-wise with pyarrow, separator and decimal mark detected.

Why this exists: a European Excel export such as ``time;load`` / ``01.01.2020 00:00;1,5`` read as a
plain comma-separated file splits ``1,5`` into two fields and pandas then quietly makes the first one
the index; the series becomes the digits after the comma and nothing complains. Here a file is never
read on a guess that the sample contradicts:

- **Separator**: ``sep`` if given, else the one of ``, ; TAB |`` that splits the header and every row of
  the first 64 KiB into the same number (>= 2) of fields (an Excel ``sep=;`` first line is obeyed). A
  single-column file is read as one column. When no separator fits, the error names the first row whose
  field count differs from the header's.
- **Decimal mark**: ``decimal`` if given, else ``,`` when sample cells look like ``1,5`` or ``1.234,5`` and
  none like ``2.5``; ``.`` otherwise. Both kinds in one file, or only ``1,234``-shaped cells in a
  comma-separated file (thousands or decimals?), stop with a message asking for ``--decimal``.
  With ``,`` a dot is only accepted as a thousands separator (``1.234,5``); ``1.5`` is then an error.
- **Missing values**: empty cells and ``-``, ``--``, ``?``, ``n/a``, ``NA``, ``nan``, ``null``, ``None``,
  ``#N/A`` (any case for the words) are missing; the caller's NaN policy decides what happens to them.
- **Numbers**: a column becomes numeric only when every non-missing cell is a number in the file's
  decimal style (``inf`` included: callers refuse it or treat it as missing); otherwise it stays text and
  the caller's check names the rows that are not numbers.
- **Memory**: only the columns asked for are parsed (``include_columns``), as text, then converted one
  column at a time, so the peak stays near the text size of those columns plus one converted column,
  not the pandas cost of the whole file. The peak of pyarrow's allocations and the process peak RSS are
  returned in the read summary.
- **Encoding**: UTF-8 (a byte-order mark is skipped), else Windows-1252, which Excel uses in Europe.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEPARATORS = (",", ";", "\t", "|")
SNIFF_BYTES = 1 << 16
_POOLS: list[Any] = []  # the per-read memory pools (tiny objects), alive as long as the process
MISSING_MARKERS = ("", "-", "--", "?", "n/a", "N/A", "NA", "na", "nan", "NaN", "NAN", "null", "NULL", "Null",
                   "None", "none", "#N/A", "#NA", "NaT")
_INF = r"[+-]?(?:inf|infinity)"
NUMBER_PATTERNS = {
    ".": rf"(?i)^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|{_INF})$",
    ",": rf"(?i)^(?:[+-]?(?:(?:\d{{1,3}}(?:\.\d{{3}})+|\d+)(?:,\d*)?|,\d+)(?:e[+-]?\d+)?|{_INF})$",
}
_INTEGER = r"^[+-]?\d+$"
_COMMA_DECIMAL = re.compile(r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+$")
_COMMA_THOUSANDS_SHAPE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+$")
_DOT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")
_DOT_THOUSANDS_SHAPE = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})+$")


class TableReadError(ValueError):
    """The file cannot be read as asked; the message names the row, column or option to change."""


@dataclass(frozen=True)
class Dialect:
    """How a delimited file is written: separator, decimal mark, encoding, lines to skip before the header."""

    sep: str
    decimal: str
    encoding: str = "utf8"
    skip_rows: int = 0


def _sample_text(path: Path) -> tuple[str, str, bool]:
    """The first SNIFF_BYTES of `path` decoded, cut at the last full line; (text, encoding, whole file)."""
    with open(path, "rb") as fh:
        raw = fh.read(SNIFF_BYTES + 1)
    whole = len(raw) <= SNIFF_BYTES
    if not whole:
        raw = raw[: raw.rfind(b"\n") + 1] or raw[:SNIFF_BYTES]
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), "utf8", whole
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "cp1252", whole


def _rows(text: str, sep: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text), delimiter=sep) if row]


def _field_counts_fit(rows: list[list[str]]) -> int | None:
    """The data-row number of the first row whose field count differs from the header's, or None."""
    n = len(rows[0])
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != n:
            return i
    return None


def sniff(path: str | Path, sep: str | None = None, decimal: str | None = None,
          default_sep: str = ",") -> Dialect:
    """Find the separator and decimal mark of a delimited file from its first 64 KiB (see the module doc)."""
    path = Path(path)
    text, encoding, _ = _sample_text(path)
    skip = 0
    first = text.split("\n", 1)[0].strip()
    if sep is None and re.fullmatch(r"sep=.", first):  # Excel's hint line
        sep, skip = first[4], 1
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if not text.strip():
        raise TableReadError(f"{path} is empty (no header line)")
    if sep is None:
        sep = _find_separator(path, text, default_sep)
    elif len(sep) != 1:
        raise TableReadError(f"--sep must be one character (use 'tab' for a tab), got {sep!r}")
    if decimal is None:
        decimal = _find_decimal(path, _rows(text, sep), sep)
    elif decimal not in NUMBER_PATTERNS:
        raise TableReadError(f"--decimal must be '.' or ',', got {decimal!r}")
    return Dialect(sep, decimal, encoding, skip)


def _find_separator(path: Path, text: str, default_sep: str) -> str:
    fits, misfits = [], []
    for cand in SEPARATORS:
        rows = _rows(text, cand)
        width = len(rows[0])
        bad = _field_counts_fit(rows)
        if width >= 2 and bad is None:
            fits.append((cand != default_sep, -width, SEPARATORS.index(cand), cand))
        elif width >= 2:
            misfits.append((cand != default_sep, -width, cand, bad, len(rows[bad])))
    if fits:
        return min(fits)[-1]
    if misfits:
        _, width, cand, bad, got = min(misfits)
        shown = "tab" if cand == "\t" else repr(cand)
        raise TableReadError(
            f"{path}: row {bad} has {got} fields but the header has {-width} (separator {shown}); if the file "
            "uses another separator or decimal commas, pass --sep and --decimal (e.g. --sep ';' --decimal ,)"
        )
    # one column: pick a separator that occurs nowhere in the sample, so commas stay inside the values
    for cand in (default_sep, ";", "\t", "|", ","):
        if cand not in text:
            return cand
    return "\x1f"


def _find_decimal(path: Path, rows: list[list[str]], sep: str) -> str:
    comma = dot = thousands_shaped = None
    for r, row in enumerate(rows[1:], start=1):
        for c, cell in enumerate(row):
            cell = cell.strip()
            where = (r, rows[0][c] if c < len(rows[0]) else c, cell)
            if _COMMA_DECIMAL.match(cell):
                if sep == "," and _COMMA_THOUSANDS_SHAPE.match(cell):
                    thousands_shaped = thousands_shaped or where
                else:
                    comma = comma or where
            elif _DOT_DECIMAL.match(cell) and not _DOT_THOUSANDS_SHAPE.match(cell):
                dot = dot or where
    if comma and dot:
        raise TableReadError(
            f"{path}: cannot tell the decimal mark: column {comma[1]!r} row {comma[0]} has {comma[2]!r} but column "
            f"{dot[1]!r} row {dot[0]} has {dot[2]!r}; pass --decimal , or --decimal ."
        )
    if comma:
        return ","
    if thousands_shaped and not dot:
        raise TableReadError(
            f"{path}: column {thousands_shaped[1]!r} row {thousands_shaped[0]} has {thousands_shaped[2]!r}, a "
            "thousands separator or a decimal comma; pass --decimal , (decimal comma) or --decimal . (then "
            "remove the thousands separators)"
        )
    return "."


def peak_rss_mb() -> float | None:
    """The process's peak resident memory in MiB so far (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pa_csv
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise TableReadError("reading CSV files needs pyarrow (pip install pyarrow)") from exc
    return pa, pc, pa_csv


def _header(path: Path, dialect: Dialect) -> list[str]:
    text, _, _ = _sample_text(path)
    lines = text.split("\n")[dialect.skip_rows:]
    rows = _rows("\n".join(lines), dialect.sep)
    if not rows:
        raise TableReadError(f"{path} is empty (no header line)")
    names = [n.strip() for n in rows[0]]
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise TableReadError(f"{path}: the header repeats column name{'s' if len(seen) > 1 else ''} "
                             f"{', '.join(repr(n) for n in sorted(seen))}; column names must be unique")
    return names


def _ragged_row(path: Path, dialect: Dialect, width: int) -> tuple[int, int] | None:
    """(data-row number, field count) of the first row whose field count is not `width`, read as a stream."""
    with open(path, newline="", encoding="utf-8-sig" if dialect.encoding == "utf8" else dialect.encoding,
              errors="replace") as fh:
        for _ in range(dialect.skip_rows):
            fh.readline()
        reader = csv.reader(fh, delimiter=dialect.sep)
        next(reader, None)
        for i, row in enumerate((r for r in reader if r), start=1):
            if len(row) != width:
                return i, len(row)
    return None


def parse_numbers(arr: Any, decimal: str, pool: Any = None) -> tuple[Any, np.ndarray | None]:
    """Text cells (a pyarrow string array, missing as null) as float64, or (None, mask of non-numbers)."""
    pa, pc, _ = _pa()
    text = pc.utf8_trim_whitespace(arr, memory_pool=pool)
    ok = pc.match_substring_regex(text, NUMBER_PATTERNS[decimal], memory_pool=pool)
    ok = pc.fill_null(ok, True)
    if not pc.all(ok).as_py():
        return None, ~ok.to_numpy(zero_copy_only=False)
    if decimal == ",":
        text = pc.replace_substring(text, ".", "", memory_pool=pool)
        text = pc.replace_substring(text, ",", ".", memory_pool=pool)
    return pc.cast(text, pa.float64(), memory_pool=pool), None


def _is_integer(arr: Any, pool: Any) -> bool:
    _, pc, _ = _pa()
    text = pc.utf8_trim_whitespace(arr, memory_pool=pool)
    return arr.null_count == 0 and bool(pc.all(pc.match_substring_regex(text, _INTEGER)).as_py())


def _column_to_pandas(name: str, arr: Any, decimal: str, pool: Any) -> tuple[Any, bool]:
    """One text column as the pandas column it means: int64/float64, bool, datetime64, else text.

    Returns (values, mostly_numeric): the latter is True for a text column whose non-missing cells are
    at least 90% numbers (a value column with a few bad cells, which the caller reports by row). The
    values are numpy's own copies: arrow buffers from `pool` must not outlive it.
    """
    pa, pc, _ = _pa()
    if arr.null_count == len(arr):
        return np.full(len(arr), np.nan), False
    numbers, bad = parse_numbers(arr, decimal, pool)
    if numbers is not None:
        if _is_integer(arr, pool):
            return numbers.to_numpy(zero_copy_only=False).astype(np.int64), False
        return np.array(pc.fill_null(numbers, float("nan")).to_numpy(zero_copy_only=False), copy=True), False
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    if arr.null_count == 0 and pc.all(pc.is_in(lowered, value_set=pa.array(["true", "false"]))).as_py():
        return np.array(pc.equal(lowered, "true").to_numpy(zero_copy_only=False), dtype=bool, copy=True), False
    present = len(arr) - arr.null_count
    mostly_numeric = present > 0 and (present - int(bad.sum())) / present >= 0.9
    if not mostly_numeric:
        try:
            stamps = pc.cast(pc.utf8_trim_whitespace(arr), pa.timestamp("ns"), memory_pool=pool)
            return np.array(stamps.to_numpy(zero_copy_only=False), dtype="datetime64[ns]", copy=True), False
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return np.asarray(arr.to_pylist(), dtype=object), mostly_numeric


def read_delimited(path: str | Path, columns: Sequence[str] | None = None, *, sep: str | None = None,
                   decimal: str | None = None, default_sep: str = ",") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read `columns` (default: all) of a delimited file; returns (frame, summary of how it was read).

    The summary holds sep, decimal, encoding, rows, the columns read, the names of text columns that are
    mostly numbers (``mostly_numeric``), the file size and the memory peaks (``arrow_peak_mb``: pyarrow's
    allocations while reading; ``process_peak_rss_mb``: the process's peak resident memory so far).
    """
    pa, _, pa_csv = _pa()
    path = Path(path)
    dialect = sniff(path, sep, decimal, default_sep)
    names = _header(path, dialect)
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise TableReadError(f"{path} has no column{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(repr(c) for c in missing)}; its columns are: "
                                 f"{', '.join(repr(n) for n in names)}")
    wanted = list(dict.fromkeys(columns)) if columns is not None else names
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    _POOLS.append(pool)  # arrow buffers keep a raw pointer to their pool: it must never be freed before them
    read_opts = pa_csv.ReadOptions(skip_rows=dialect.skip_rows, encoding=dialect.encoding, block_size=1 << 20,
                                   use_threads=False)
    parse_opts = pa_csv.ParseOptions(delimiter=dialect.sep, newlines_in_values=True)
    convert_opts = pa_csv.ConvertOptions(
        include_columns=wanted, column_types={c: pa.string() for c in wanted}, null_values=list(MISSING_MARKERS),
        strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        # one 1 MiB block at a time: only the wanted columns' text of each block is kept
        reader = pa_csv.open_csv(path, read_options=read_opts, parse_options=parse_opts,
                                 convert_options=convert_opts, memory_pool=pool)
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
        del reader
    except pa.ArrowInvalid as exc:
        if "columns, got" in str(exc):
            found = _ragged_row(path, dialect, len(names))
            if found is not None:
                shown = "tab" if dialect.sep == "\t" else repr(dialect.sep)
                raise TableReadError(
                    f"{path}: row {found[0]} has {found[1]} fields but the header has {len(names)} (separator "
                    f"{shown}); fix that row, or pass --sep if the separator is another one") from exc
        raise TableReadError(f"{path}: cannot be read as a table: {' '.join(str(exc).split())}") from exc
    out: dict[str, Any] = {}
    mostly_numeric = []
    for name in wanted:
        col = table.column(name).combine_chunks(memory_pool=pool)
        table = table.drop_columns([name])  # free each text column once converted
        out[name], mostly = _column_to_pandas(name, col, dialect.decimal, pool)
        if mostly:
            mostly_numeric.append(name)
        del col
    del table
    frame = pd.DataFrame(out, columns=wanted)
    summary = {
        "sep": dialect.sep, "decimal": dialect.decimal, "encoding": dialect.encoding, "rows": len(frame),
        "columns_read": wanted, "columns_in_file": len(names), "mostly_numeric": mostly_numeric,
        "file_mb": round(path.stat().st_size / 2**20, 2), "arrow_peak_mb": round(pool.max_memory() / 2**20, 2),
        "frame_mb": round(float(frame.memory_usage(deep=False).sum()) / 2**20, 2),
        "process_peak_rss_mb": peak_rss_mb(),
    }
    return frame, summary
