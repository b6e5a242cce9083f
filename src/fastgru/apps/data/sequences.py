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
osuleaf           200 / 242           1         427      6         leaf outlines of six tree species
acsf1             100 / 100           1         1460     10        power consumption of ten appliance types

User data comes in three forms (every pairing of files and every split is recorded in
:attr:`LabelledSequences.split`, which `classify` prints and writes to metrics.json):

- ``.ts`` files (UEA/UCR "sktime" format).
- UCR wide text files (``.txt``/``.tsv``/``.csv`` with no header): one series per line, the class label
  first, then the values, separated by tabs, spaces or commas; ``NaN`` at the end of a line pads a
  shorter series.
- Long tables (CSV/TSV/Parquet): one row per time step, an id column naming the sequence, a label column
  (constant within a sequence), feature columns, optionally a time column to order the steps, and
  optionally a ``split`` column (``train``/``test``, constant within a sequence) that fixes the split.
  A numeric column that orders the steps (named time/t/step/frame/timestamp/index, or increasing strictly
  within every sequence) is never taken as a feature silently: it becomes the time column, and the
  choice is reported.

The test part is, in this order: ``test_data`` when given; for ``NAME_TRAIN.ts/.tsv/.txt`` the
``NAME_TEST`` file beside it (the archive's own split; reported as such); the rows marked ``test`` in a
split column; else a stratified random ``test_fraction`` of the series.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fastgru.apps.data.series import package_data_dir
from fastgru.apps.data.tabular import DataFileError, handle_nans, read_table, require_columns, to_numeric

UCR_BUILTINS = {
    "japanese_vowels": "JapaneseVowels",
    "gunpoint": "GunPoint",
    "basic_motions": "BasicMotions",
    "arrowhead": "ArrowHead",
    "italy_power_demand": "ItalyPowerDemand",
    "osuleaf": "OSULeaf",
    "acsf1": "ACSF1",
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
    split: dict = field(default_factory=dict)

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
                             f"{problem} (UCR/UEA archive, from the installed {package} package)",
                             {"how": f"the archive's own split ({problem}_TRAIN.ts / {problem}_TEST.ts)",
                              "train": f"{problem}_TRAIN.ts", "test": f"{problem}_TEST.ts"})


TIME_NAMES = {"time", "t", "timestamp", "step", "steps", "frame", "index", "idx", "tick", "date", "datetime"}
SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test"}
WIDE_SUFFIXES = {".txt", ".tsv", ".csv", ".data", ""}


def _numbers(tokens: Sequence[str]) -> bool:
    try:
        for tok in tokens:
            float(tok)
    except ValueError:
        return False
    return True


def _tokens(line: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", line.strip()) if t]


def looks_like_ucr_wide(path: str | Path) -> bool:
    """True when the first non-empty line of `path` is a label followed by at least two numbers (no header)."""
    path = Path(path)
    if path.suffix.lower() not in WIDE_SUFFIXES:
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                tok = _tokens(line)
                return len(tok) >= 3 and _numbers(tok[1:])
    return False


def read_ucr_wide(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """Read a UCR archive text file: one series per line, label first, then the values.

    Values are separated by tabs, spaces or commas; ``NaN`` (or ``?``) at the end of a line pads a
    shorter series and is dropped; a missing value inside a series is kept as NaN. Returns ((T, 1)
    float64 arrays, labels). Labels like ``1.0`` are written as ``1``.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"data file not found: {path}")
    xs: list[np.ndarray] = []
    ys: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            tok = _tokens(line)
            if not tok:
                continue
            if len(tok) < 2:
                raise DataFileError(f"{path}, line {lineno}: a label and at least one value are needed")
            try:
                values = np.array([np.nan if v == "?" else float(v) for v in tok[1:]])
            except ValueError as exc:
                raise DataFileError(f"{path}, line {lineno}: a value is not a number ({exc}); UCR text files "
                                    "hold the label first and numbers after it, without a header") from exc
            x = _trim_trailing_nan(values[:, None])
            if len(x) == 0:
                raise DataFileError(f"{path}, line {lineno}: the series has no values")
            label = tok[0]
            try:
                f_label = float(label)
                label = str(int(f_label)) if f_label.is_integer() else label
            except ValueError:
                pass
            xs.append(x)
            ys.append(label)
    if not xs:
        raise DataFileError(f"{path}: no series found")
    return xs, ys


def _evenly_spaced(v: pd.Series) -> bool:
    d = np.diff(np.sort(v.to_numpy(np.float64)))
    return bool(len(d) > 0 and d[0] > 0 and np.allclose(d, d[0], rtol=1e-9, atol=0))


def _guess_time_column(df: pd.DataFrame, id_column: str, candidates: Sequence[str]) -> tuple[str | None, str]:
    """A numeric candidate column that orders the steps: by name, or strictly increasing in every sequence."""
    for c in candidates:
        if str(c).strip().lower() in TIME_NAMES:
            return c, "its name says it is a time index"
    groups = df.groupby(id_column, sort=False)
    if groups.size().min() < 3:
        return None, ""
    for c in candidates:
        if groups[c].apply(lambda v: bool(np.all(np.diff(v.to_numpy(np.float64)) > 0))).all():
            return c, "it increases strictly within every sequence"
    for c in candidates:
        if groups[c].apply(_evenly_spaced).all():
            return c, "its values are distinct and evenly spaced within every sequence, like time stamps"
    return None, ""


def load_long_table(
    path: str | Path,
    *,
    id_column: str,
    label_column: str,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    split_column: str | None = None,
    nan: str = "error",
    notes: list[str] | None = None,
) -> tuple[list[np.ndarray], list[str], list[str], list[str], list[str] | None]:
    """Sequences from a long-format table: (sequences, labels, sequence ids, feature names, splits).

    splits holds "train"/"test" per sequence from `split_column` (None without one). With no
    `time_column` and no `feature_columns`, a numeric column that looks like a time index is used to
    order the steps instead of as a feature; what was decided is appended to `notes`.
    """
    notes = notes if notes is not None else []
    df = read_table(path)
    if split_column is None:
        split_column = next((c for c in df.columns if str(c).strip().lower() == "split"), None)
        if split_column is not None:
            notes.append(f"column {split_column!r} sets the split (train/test)")
    require_columns(df, [id_column, label_column] + [c for c in (time_column, split_column) if c], path)
    skip = {id_column, label_column, time_column, split_column}
    if feature_columns:
        features = list(feature_columns)
        require_columns(df, features, path)
    else:
        features = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
        if time_column is None and features:
            guess, why = _guess_time_column(df, id_column, features)
            if guess is not None:
                time_column = guess
                features.remove(guess)
                notes.append(f"column {guess!r} orders the steps and is not used as a feature ({why}); pass "
                             "--time-column / --feature-columns to choose otherwise")
        if not features:
            have = ", ".join(repr(str(c)) for c in df.columns)
            raise DataFileError(f"{path} has no numeric feature column; its columns are: {have}")
    for col in (id_column, label_column) + ((split_column,) if split_column else ()):
        if df[col].isna().any():
            n = int(df[col].isna().sum())
            raise DataFileError(f"{path}: column {col!r} has {n} empty cell{'s' if n > 1 else ''}; every row needs "
                                "a sequence id, a label" + (" and a split" if split_column else ""))
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
    xs, ys, ids, splits = [], [], [], []
    for seq_id, rows in df.groupby(id_column, sort=False).groups.items():
        labels = df.loc[rows, label_column].astype(str).unique()
        if len(labels) > 1:
            raise DataFileError(f"{path}: sequence {seq_id!r} has more than one label ({', '.join(labels[:4])}); "
                                f"column {label_column!r} must be constant within a sequence")
        if split_column:
            parts = {SPLIT_NAMES.get(str(v).strip().lower(), f"?{v}") for v in df.loc[rows, split_column]}
            if len(parts) > 1 or next(iter(parts)).startswith("?"):
                raise DataFileError(f"{path}: sequence {seq_id!r} has split value(s) "
                                    f"{sorted(str(v) for v in df.loc[rows, split_column].unique())}; column "
                                    f"{split_column!r} must hold one of 'train' or 'test' per sequence")
            splits.append(next(iter(parts)))
        xs.append(values.loc[rows].to_numpy(np.float64))
        ys.append(str(labels[0]))
        ids.append(str(seq_id))
    return xs, ys, ids, [str(f) for f in features], (splits if split_column else None)


def _beside(path: Path) -> Path | None:
    """NAME_TEST.ext for NAME_TRAIN.ext (any case), if that file exists."""
    m = re.match(r"^(.*)_TRAIN(\.[^.]*)$", path.name, flags=re.IGNORECASE)
    if not m:
        return None
    for cand in (path.with_name(f"{m.group(1)}_TEST{m.group(2)}"), path.with_name(f"{m.group(1)}_test{m.group(2)}")):
        if cand.exists():
            return cand
    return None


def _set_name(path: Path) -> str:
    return re.sub(r"_TRAIN$", "", path.stem, flags=re.IGNORECASE)


def _read_series_file(path: Path, kind: str) -> tuple[list[np.ndarray], list[str]]:
    if kind == "ts":
        xs, ys, _ = read_ts(path)
        return [_trim_trailing_nan(x) for x in xs], ys
    return read_ucr_wide(path)


def _random_split(name: str, xs: list[np.ndarray], ys: list[str], channels: list[str], description: str,
                  test_fraction: float, seed: int, split: dict) -> LabelledSequences:
    tr, te = stratified_split(ys, test_fraction, seed)
    split = {**split, "how": f"no test file given: a stratified random {test_fraction:.0%} of the series "
                             f"(seed {seed}) is the test part", "test_fraction": test_fraction}
    return LabelledSequences(name, [xs[i] for i in tr], [ys[i] for i in tr], [xs[i] for i in te],
                             [ys[i] for i in te], channels, description, split)


def load_sequences(
    data: str | Path,
    *,
    test_data: str | Path | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    split_column: str | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    nan: str = "error",
) -> LabelledSequences:
    """Labelled train/test sequences from a built-in set, a ``.ts`` file, a UCR text file or a long table.

    The test part comes from `test_data`, else from the ``NAME_TEST`` file beside a ``NAME_TRAIN`` file,
    else from a split column of a table, else from a stratified random `test_fraction`; the result's
    ``split`` dict says which (with the file names) and ``split["notes"]`` lists the decisions taken
    about columns.
    """
    if str(data).lower() in UCR_BUILTINS:
        if test_data is not None:
            raise DataFileError(f"--test-data cannot be combined with the built-in set {data!r} (it has its own "
                                "test part)")
        return load_ucr(str(data))
    path = Path(data)
    if not path.exists():
        raise DataFileError(f"{str(data)!r} is neither a built-in set ({', '.join(UCR_BUILTINS)}) nor an existing file")
    test_path = Path(test_data) if test_data is not None else None
    if test_path is not None and not test_path.exists():
        raise DataFileError(f"--test-data file not found: {test_path}")
    kind = "ts" if path.suffix.lower() == ".ts" else "wide" if not id_column and looks_like_ucr_wide(path) else "long"
    if kind != "long":
        xs, ys = _read_series_file(path, kind)
        C = xs[0].shape[1]
        channels = [f"channel {j}" for j in range(C)]
        fmt = ".ts file" if kind == "ts" else "UCR text file (label first, then the values)"
        split = {"format": fmt, "train": str(path)}
        if test_path is None:
            beside = _beside(path)
            if beside is not None:
                test_path = beside
                split["how"] = f"test file found beside the training file: {beside.name} (pass --test-data to choose)"
        else:
            split["how"] = "test file given with --test-data"
        if test_path is None:
            return _random_split(_set_name(path), xs, ys, channels, path.name, test_fraction, seed, split)
        tkind = "ts" if test_path.suffix.lower() == ".ts" else "wide"
        vx, vy = _read_series_file(test_path, tkind)
        if vx[0].shape[1] != C:
            raise DataFileError(f"{test_path}: {vx[0].shape[1]} channel(s), but the training file {path.name} has {C}")
        split["test"] = str(test_path)
        return LabelledSequences(_set_name(path), xs, ys, vx, vy, channels, f"{path.name} / {test_path.name}", split)
    if not id_column or not label_column:
        raise DataFileError(f"{path}: a table of sequences needs --id-column and --label-column (one row per step); "
                            "a UCR text file has the label first and numbers after it on every line, no header")
    notes: list[str] = []
    kw = dict(id_column=id_column, label_column=label_column, feature_columns=feature_columns,
              time_column=time_column, nan=nan)
    xs, ys, _, features, splits = load_long_table(path, split_column=split_column, notes=notes, **kw)
    if len(set(ys)) < 2:
        raise DataFileError(f"{path}: column {label_column!r} holds a single class ({ys[0]!r}); need at least two")
    split = {"format": "long table (one row per step)", "train": str(path), "notes": notes}
    if test_path is not None:
        if splits is not None:
            raise DataFileError(f"{path} has a split column and --test-data was given; use one of the two")
        vx, vy, _, vfeatures, _ = load_long_table(test_path, split_column=None, notes=[], **{
            **kw, "feature_columns": features, "time_column": _chosen_time(notes, time_column)})
        split.update({"how": "test table given with --test-data", "test": str(test_path)})
        return LabelledSequences(path.stem, xs, ys, vx, vy, features, f"{path.name} / {test_path.name}", split)
    if splits is not None:
        tr = [i for i, s in enumerate(splits) if s == "train"]
        te = [i for i, s in enumerate(splits) if s == "test"]
        if not tr or not te:
            raise DataFileError(f"{path}: the split column marks {len(tr)} training and {len(te)} test sequences; "
                                "both parts need at least one")
        split["how"] = "the table's split column"
        return LabelledSequences(path.stem, [xs[i] for i in tr], [ys[i] for i in tr], [xs[i] for i in te],
                                 [ys[i] for i in te], features, path.name, split)
    return _random_split(path.stem, xs, ys, features, path.name, test_fraction, seed, split)


def _chosen_time(notes: list[str], time_column: str | None) -> str | None:
    """The time column given, or the one the training table's loader guessed (named in its note)."""
    if time_column is not None:
        return time_column
    for note in notes:
        m = re.match(r"column '(.*)' orders the steps", note)
        if m:
            return m.group(1)
    return None


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
