"""Labelled sequences for `classify`: UCR/UEA archive sets, ``.ts`` files, and long-format CSV/Parquet.

Built-in sets are the UCR/UEA archive problems that the ``sktime`` package ships as ``.ts`` files (read
straight from its data folder, sktime itself is never imported; ``pip install --no-deps sktime``).
fastgru does not copy them: the archive asks for citation but states no licence for redistribution.

name              cases (train/test)  channels  length   classes   what
japanese_vowels   270 / 370           12        7-29     9         speakers from LPC cepstra of /ae/
gunpoint          50 / 150            1         150      2         gun-draw vs pointing hand motion
basic_motions     40 / 40             6         100      4         smartwatch accelerometer+gyroscope
arrowhead         36 / 175            1         251      3         arrowhead outlines
italy_power_demand 67 / 1029          1         24       2         daily electricity demand, winter vs summer

User data in long format: one row per time step, an id column naming the sequence, a label column
(constant within a sequence), feature columns, optionally a time column to order the steps; every
sequence may have its own length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .series import package_data_dir
from .tabular import DataFileError, handle_nans, read_table, require_columns, to_numeric

UCR_BUILTINS = {
    "japanese_vowels": "JapaneseVowels",
    "gunpoint": "GunPoint",
    "basic_motions": "BasicMotions",
    "arrowhead": "ArrowHead",
    "italy_power_demand": "ItalyPowerDemand",
}
PACKAGES = ("sktime", "aeon")


@dataclass
class LabelledSequences:
    """Sequences (list of (T_i, C) float arrays) with string labels, split into train and test."""

    name: str
    train_x: list[np.ndarray]
    train_y: list[str]
    test_x: list[np.ndarray]
    test_y: list[str]
    channels: list[str]
    description: str = ""

    @property
    def classes(self) -> list[str]:
        labels = sorted(set(self.train_y) | set(self.test_y))
        try:  # numeric labels in numeric order ("1", "2", ..., "10")
            return sorted(labels, key=float)
        except ValueError:
            return labels


def read_ts(path: str | Path) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
    """Read a UEA/UCR ``.ts`` file: (sequences as (T, C) float64 arrays, labels, header fields).

    Values within a channel are comma-separated, channels are separated by ':', the last field is the
    class label; '?' marks a missing value (kept as NaN). Timestamped files are not supported.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"data file not found: {path}")
    header: dict[str, str] = {}
    xs: list[np.ndarray] = []
    ys: list[str] = []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower().startswith("@data"):
                    in_data = True
                elif line.startswith("@"):
                    key, _, value = line[1:].partition(" ")
                    header[key.lower()] = value.strip()
                continue
            if header.get("timestamps", "false").lower() == "true":
                raise DataFileError(f"{path}: timestamped .ts files are not supported")
            *dims, label = line.split(":")
            if not dims:
                raise DataFileError(f"{path}, line {lineno}: no values before the class label")
            try:
                chans = [np.array([np.nan if v.strip() == "?" else float(v) for v in d.split(",")]) for d in dims]
            except ValueError as exc:
                raise DataFileError(f"{path}, line {lineno}: a value is not a number ({exc})") from exc
            T = max(len(c) for c in chans)
            arr = np.full((T, len(chans)), np.nan)
            for j, c in enumerate(chans):
                arr[: len(c), j] = c
            xs.append(arr)
            ys.append(label.strip())
    if not in_data or not xs:
        raise DataFileError(f"{path}: no @data section with cases found; is this a .ts file?")
    return xs, ys, header


def _trim_trailing_nan(x: np.ndarray) -> np.ndarray:
    """Unequal-length .ts cases pad shorter channels; drop trailing all-NaN steps."""
    ok = ~np.isnan(x).all(axis=1)
    last = int(np.flatnonzero(ok)[-1]) + 1 if ok.any() else 0
    return x[:last]


def load_ucr(name: str) -> LabelledSequences:
    """A built-in UCR/UEA set (see the module table) from the installed sktime or aeon package."""
    key = name.lower()
    if key not in UCR_BUILTINS:
        raise DataFileError(f"unknown built-in classification set {name!r}; built-in: {', '.join(UCR_BUILTINS)}")
    problem = UCR_BUILTINS[key]
    for package in PACKAGES:
        folder = package_data_dir(package)
        if folder is not None and (folder / problem / f"{problem}_TRAIN.ts").exists():
            break
    else:
        raise DataFileError(
            f"the built-in set {name!r} is read from the sktime package's data files, and sktime is not installed; "
            "install it with `pip install --no-deps sktime` (only its data files are used), or pass your own "
            "file (.ts, or CSV/Parquet in long format with --id-column and --label-column)"
        )
    tx, ty, header = read_ts(folder / problem / f"{problem}_TRAIN.ts")
    vx, vy, _ = read_ts(folder / problem / f"{problem}_TEST.ts")
    tx, vx = [_trim_trailing_nan(x) for x in tx], [_trim_trailing_nan(x) for x in vx]
    C = tx[0].shape[1]
    return LabelledSequences(key, tx, ty, vx, vy, [f"channel {j}" for j in range(C)],
                             f"{problem} (UCR/UEA archive, from the installed {package} package)")


def load_long_table(
    path: str | Path,
    *,
    id_column: str,
    label_column: str,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    nan: str = "error",
) -> tuple[list[np.ndarray], list[str], list[str], list[str]]:
    """Sequences from a long-format table: (sequences, labels, sequence ids, feature names)."""
    df = read_table(path)
    require_columns(df, [id_column, label_column] + ([time_column] if time_column else []), path)
    if feature_columns:
        features = list(feature_columns)
        require_columns(df, features, path)
    else:
        skip = {id_column, label_column, time_column}
        features = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
        if not features:
            have = ", ".join(repr(str(c)) for c in df.columns)
            raise DataFileError(f"{path} has no numeric feature column; its columns are: {have}")
    for col in (id_column, label_column):
        if df[col].isna().any():
            n = int(df[col].isna().sum())
            raise DataFileError(f"{path}: column {col!r} has {n} empty cell{'s' if n > 1 else ''}; every row needs "
                                "a sequence id and a label")
    values = handle_nans(to_numeric(df, features, path), nan, path)
    df = df.loc[values.index]
    values = values.reset_index(drop=True)
    df = df.reset_index(drop=True)
    if time_column:
        t = df[time_column]
        key = pd.to_numeric(t, errors="coerce") if pd.api.types.is_numeric_dtype(t) else pd.to_datetime(
            t, errors="coerce")
        if key.isna().any():
            raise DataFileError(f"{path}: time column {time_column!r} has {int(key.isna().sum())} values that are "
                                "neither numbers nor dates")
        order = np.argsort(key.to_numpy(), kind="stable")
        df, values = df.iloc[order].reset_index(drop=True), values.iloc[order].reset_index(drop=True)
    xs, ys, ids = [], [], []
    for seq_id, rows in df.groupby(id_column, sort=False).groups.items():
        labels = df.loc[rows, label_column].astype(str).unique()
        if len(labels) > 1:
            raise DataFileError(f"{path}: sequence {seq_id!r} has more than one label ({', '.join(labels[:4])}); "
                                f"column {label_column!r} must be constant within a sequence")
        xs.append(values.loc[rows].to_numpy(np.float64))
        ys.append(str(labels[0]))
        ids.append(str(seq_id))
    return xs, ys, ids, [str(f) for f in features]


def load_sequences(
    data: str | Path,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    nan: str = "error",
) -> LabelledSequences:
    """A built-in set by name, a .ts file (its own test split: give the *_TRAIN.ts file, the *_TEST.ts beside
    it is used when present), or a long-format CSV/Parquet split at random (stratified) into train/test."""
    if str(data).lower() in UCR_BUILTINS:
        return load_ucr(str(data))
    path = Path(data)
    if not path.exists():
        raise DataFileError(f"{str(data)!r} is neither a built-in set ({', '.join(UCR_BUILTINS)}) nor an existing file")
    if path.suffix.lower() == ".ts":
        xs, ys, _ = read_ts(path)
        xs = [_trim_trailing_nan(x) for x in xs]
        test_path = Path(re.sub(r"_TRAIN\.ts$", "_TEST.ts", str(path), flags=re.IGNORECASE))
        C = xs[0].shape[1]
        if test_path != path and test_path.exists():
            vx, vy, _ = read_ts(test_path)
            return LabelledSequences(path.stem, xs, ys, [_trim_trailing_nan(x) for x in vx], vy,
                                     [f"channel {j}" for j in range(C)], path.name)
        tr, te = stratified_split(ys, test_fraction, seed)
        return LabelledSequences(path.stem, [xs[i] for i in tr], [ys[i] for i in tr], [xs[i] for i in te],
                                 [ys[i] for i in te], [f"channel {j}" for j in range(C)], path.name)
    if not id_column or not label_column:
        raise DataFileError(f"{path}: a table of sequences needs --id-column and --label-column (one row per step)")
    xs, ys, _, features = load_long_table(path, id_column=id_column, label_column=label_column,
                                         feature_columns=feature_columns, time_column=time_column, nan=nan)
    if len(set(ys)) < 2:
        raise DataFileError(f"{path}: column {label_column!r} holds a single class ({ys[0]!r}); need at least two")
    tr, te = stratified_split(ys, test_fraction, seed)
    return LabelledSequences(path.stem, [xs[i] for i in tr], [ys[i] for i in tr], [xs[i] for i in te],
                             [ys[i] for i in te], features, path.name)


def stratified_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (first, second) with about `fraction` of each class in the second part (at least one per
    class that has two or more members)."""
    if not 0 < fraction < 1:
        raise DataFileError(f"split fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    first, second = [], []
    labels = list(labels)
    for cls in sorted(set(labels)):
        idx = np.flatnonzero(np.array(labels) == cls)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1) if len(idx) > 1 else 0
        second += idx[:k].tolist()
        first += idx[k:].tolist()
    return sorted(first), sorted(second)
