"""Small pieces every task uses: output folders that never clobber users' files, tables, CSV writing.

- :func:`check_outputs` runs before any work: it refuses to replace existing files unless the caller
  passes ``overwrite=True`` (``--force``), naming each file it would replace.
- :func:`format_table` renders rows as an aligned plain-text table (for the terminal) or Markdown.
- :func:`write_csv` writes a DataFrame atomically.
- :func:`comma_list` reads a comma-separated option; :func:`add_model_args` adds the model and training
  options that forecast, detect, classify and listen share.
- :func:`confusion_matrix` and :func:`macro_f1` score the classifiers (classify, classify-text, listen).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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


def comma_list(text: str | None, kind: type = str, what: str = "option") -> list | None:
    """'a,b,c' -> ['a', 'b', 'c'] (each converted by `kind`); None or '' gives None."""
    if not text:
        return None
    try:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}: cannot read {text!r} as a comma-separated list of {kind.__name__} values") from None


def add_model_args(p: argparse.ArgumentParser, *, hidden: int, epochs: int, patience: int, lr: float,
                   batch_size: int = 32) -> None:
    """Model and training options shared by forecast, detect and classify."""
    p.add_argument("--cell", choices=("gru", "lstm", "rnn", "torch_gru"), default="gru",
                   help="recurrent cell: gru (fastgru), lstm / rnn / torch_gru (torch)")
    p.add_argument("--hidden-size", type=int, default=hidden)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0, help="between stacked layers")
    p.add_argument("--epochs", type=int, default=epochs, help="most epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=patience, help="early stopping patience in epochs")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def macro_f1(cm: np.ndarray) -> float:
    """Mean over classes of F1 = 2 tp / (2 tp + fp + fn); a class absent from both truth and predictions
    is skipped."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present])) if present.any() else 0.0


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in --help, except where the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default" in text else super()._get_help_string(action)
