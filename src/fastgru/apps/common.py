"""Small pieces every task uses: output folders that never clobber users' files, tables, CSV writing.

- :func:`check_outputs` runs before any work: it refuses to replace existing files unless the caller
  passes ``overwrite=True`` (``--force``), naming each file it would replace.
- :func:`format_table` renders rows as an aligned plain-text table (for the terminal) or Markdown.
- :func:`write_csv` writes a DataFrame atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastgru.io import atomic

if TYPE_CHECKING:  # pandas is an optional dependency (the `apps` extra); the command imports this module
    import pandas as pd

DEFAULT_OUT_ROOT = "fastgru-out"


def default_out(task: str) -> Path:
    """./fastgru-out/<task>: where a task writes when the user does not say."""
    return Path(DEFAULT_OUT_ROOT) / task


def check_outputs(out_dir: str | Path, names: Sequence[str], overwrite: bool) -> Path:
    """Make `out_dir` (if needed) and refuse to replace any of `names` in it unless `overwrite`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {str(out)!r} is a file, not a folder")
    if not overwrite:
        clash = [n for n in names if (out / n).exists()]
        if clash:
            raise FileExistsError(
                f"{out} already holds {', '.join(clash)} from an earlier run; pass --force (overwrite=True) "
                "to replace them, or choose another --out folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write `df` as CSV (no index) atomically."""
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v != 0 and (abs(v) >= 10 ** (digits + 2) or abs(v) < 10 ** -(digits)):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, digits: int = 3,
                 markdown: bool = False) -> str:
    """Rows as an aligned table: plain text (numbers right-aligned) or GitHub Markdown."""
    cells = [[_fmt(v, digits) for v in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows)
               for i in range(len(headers))]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)).rstrip()

    out = [line([str(h) for h in headers]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)
