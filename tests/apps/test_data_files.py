"""fastgru.apps.data: built-in sets, user tables, and the message for every kind of bad file."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest
import torch

from fastgru.apps.data.sequences import load_sequences, read_ts, stratified_split
from fastgru.apps.data.series import BUILTIN_SERIES, load_series, package_data_dir
from fastgru.apps.data.tabular import DataFileError
from fastgru.apps.data.windows import Scaler, make_windows, origins, time_split

needs_sktime = pytest.mark.skipif(package_data_dir("sktime") is None,
                                  reason="sktime (its data files) is not installed: pip install --no-deps sktime")


def _rng() -> np.random.Generator:
    """A numpy generator drawn from torch's per-test seed (conftest prints it; FASTGRU_TEST_SEED replays)."""
    return np.random.default_rng(int(torch.randint(0, 2**31, (1,))))


# -- built-in series ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, rows, first", [("sunspots", 309, 5.0), ("co2", 2284, 316.1), ("nile", 100, 1120.0)])
def test_shipped_series_load_with_their_known_values(name, rows, first):
    s = load_series(name)
    assert len(s) == rows and s.values.iloc[0, 0] == first
    assert np.isfinite(s.values.to_numpy()).all() and s.source == f"built-in {name}"


def test_co2_gaps_are_interpolated_between_their_neighbours():
    raw = pd.read_csv(str(resources.files("fastgru.apps.data") / "files" / "co2.csv"))
    gaps = np.flatnonzero(raw["co2"].isna().to_numpy())
    assert len(gaps) == 59
    filled = load_series("co2").values["co2"].to_numpy()
    i = int(gaps[_rng().integers(len(gaps))])
    lo = max(j for j in range(i) if j not in set(gaps))
    hi = min(j for j in range(i, len(raw)) if j not in set(gaps))
    expected = raw["co2"][lo] + (raw["co2"][hi] - raw["co2"][lo]) * (i - lo) / (hi - lo)
    assert filled[i] == pytest.approx(expected)


def test_macrodata_is_multivariate_with_quarterly_time():
    s = load_series("macrodata", ["realgdp", "unemp"])
    assert s.columns == ["realgdp", "unemp"] and len(s) == 203 and s.season == 4
    t = s.time_axis()
    assert str(t[0])[:10] == "1959-01-01" and str(t[-1])[:10] == "2009-07-01"


def test_every_builtin_is_documented_with_a_description():
    for spec in BUILTIN_SERIES.values():
        assert spec.description and spec.file


@needs_sktime
def test_mitdb_labels_and_japanese_vowels_shapes():
    s = load_series("mitdb")
    assert len(s) == 7500 and int(s.labels.sum()) == 352
    d = load_sequences("japanese_vowels")
    assert (len(d.train_x), len(d.test_x)) == (270, 370) and d.classes == [str(i) for i in range(1, 10)]
    lengths = [len(x) for x in d.train_x + d.test_x]
    assert min(lengths) == 7 and max(lengths) == 29 and all(x.shape[1] == 12 for x in d.train_x)
    assert not any(np.isnan(x).any() for x in d.train_x + d.test_x)


# -- user files: every bad case has its message -----------------------------------------------------------
def _csv(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_missing_column_lists_the_columns_there_are(tmp_path):
    p = _csv(tmp_path, "when,load,temp\n1,2,3\n2,3,4\n")
    with pytest.raises(DataFileError, match=r"has no column 'lod'; its columns are: 'when', 'load', 'temp'"):
        load_series(p, ["lod"])
    with pytest.raises(DataFileError, match=r"no columns 'a', 'b'"):
        load_series(p, ["a", "b", "load"])


def test_non_numeric_values_are_named_with_their_rows(tmp_path):
    p = _csv(tmp_path, "t,x\n1,2.5\n2,abc\n3,4\n4,n/a?\n")
    with pytest.raises(DataFileError, match=r"column 'x' has 2 non-numeric values \(row 2: 'abc', row 4: 'n/a\?'\)"):
        load_series(p, ["x"], time_column="t")


def test_nans_are_counted_and_the_options_offered(tmp_path):
    p = _csv(tmp_path, "x,y\n1,1\n,2\n3,\n4,4\n,5\n")
    with pytest.raises(DataFileError) as err:
        load_series(p)
    msg = str(err.value)
    assert "3 missing values" in msg and "in 3 rows" in msg and "'x': 2, 'y': 1" in msg and "first at row 2" in msg
    assert "nan='drop'" in msg and "--nan interpolate" in msg
    assert len(load_series(p, nan="drop")) == 2
    assert load_series(p, nan="interpolate").values["x"].tolist() == [1, 2, 3, 4, 4]
    assert load_series(p, nan="ffill").values["y"].tolist() == [1, 2, 2, 4, 5]
    assert load_series(p, nan="zero").values["x"].tolist() == [1, 0, 3, 4, 0]


def test_an_empty_column_is_refused_whatever_the_nan_policy(tmp_path):
    p = _csv(tmp_path, "x,y\n1,\n2,\n")
    with pytest.raises(DataFileError, match="column 'y' hold no values at all"):
        load_series(p, nan="zero")


def test_too_few_rows_for_window_and_horizon(tmp_path):
    from fastgru.apps.forecast import forecast

    n = int(_rng().integers(20, 40))
    p = _csv(tmp_path, "x\n" + "\n".join(str(v) for v in _rng().normal(size=n)) + "\n")
    with pytest.raises(DataFileError, match=rf"has too few rows: {n}, but a window of 48 steps plus a horizon of "
                                            r"12 steps needs at least 62 rows"):
        forecast(p, window=48, horizon=12, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before creating anything


def test_unknown_type_missing_file_and_unparseable_file(tmp_path):
    with pytest.raises(DataFileError, match="data file not found"):
        load_series(tmp_path / "nope.csv")
    with pytest.raises(DataFileError, match="unknown file type '.xlsx'"):
        load_series(_csv(tmp_path, "x\n1\n", "d.xlsx"))
    with pytest.raises(DataFileError, match="neither a built-in series"):
        load_series("sunspot")
    with pytest.raises(DataFileError, match="cannot be read as PARQUET"):
        load_series(_csv(tmp_path, "not parquet", "d.parquet"))


def test_parquet_and_tsv_read_like_csv(tmp_path):
    df = pd.DataFrame({"t": np.arange(30), "a": _rng().normal(size=30), "b": _rng().normal(size=30)})
    df.to_parquet(tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    for name in ("d.parquet", "d.tsv"):
        s = load_series(tmp_path / name, ["b"], time_column="t")
        np.testing.assert_array_equal(s.values["b"].to_numpy(), df["b"].to_numpy())


def test_label_column_must_be_zero_one(tmp_path):
    p = _csv(tmp_path, "x,lab\n1,0\n2,1\n3,2\n")
    with pytest.raises(DataFileError, match=r"label column 'lab' must hold 0 \(normal\) and 1 \(anomaly\)"):
        load_series(p, label_column="lab")
    ok = load_series(_csv(tmp_path, "x,lab\n1,0\n2,1\n", "ok.csv"), label_column="lab")
    assert ok.columns == ["x"] and ok.labels.tolist() == [0, 1]


# -- sequences -----------------------------------------------------------------------------------------------
def _long_table(tmp_path, rng, n_seq=12):
    rows = []
    for i in range(n_seq):
        for t in rng.permutation(int(rng.integers(3, 9))):  # steps in shuffled order, ordered by 'step'
            rows.append({"seq": f"s{i}", "step": int(t), "f1": float(t) + 0.1 * i, "f2": rng.normal(),
                         "cls": "ab"[i % 2]})
    df = pd.DataFrame(rows)
    p = tmp_path / "seqs.csv"
    df.to_csv(p, index=False)
    return p, df


def test_long_table_groups_orders_and_splits(tmp_path):
    rng = _rng()
    p, df = _long_table(tmp_path, rng)
    d = load_sequences(p, id_column="seq", label_column="cls", feature_columns=["f1"], time_column="step",
                       test_fraction=0.25, seed=1)
    assert len(d.train_x) + len(d.test_x) == 12 and d.classes == ["a", "b"]
    for x in d.train_x + d.test_x:  # f1 = step + 0.1 i: increasing in time after ordering by 'step'
        assert (np.diff(x[:, 0]) > 0).all()
    assert len(d.test_x) == 4 and sorted(d.test_y) == ["a", "a", "b", "b"]  # 25% of each class of 6


def test_long_table_messages(tmp_path):
    rng = _rng()
    p, df = _long_table(tmp_path, rng)
    with pytest.raises(DataFileError, match=r"needs --id-column and --label-column"):
        load_sequences(p)
    with pytest.raises(DataFileError, match=r"has no column 'label'; its columns are: 'seq', 'step'"):
        load_sequences(p, id_column="seq", label_column="label")
    df.loc[3, "cls"] = "zzz" if df.loc[3, "cls"] != "zzz" else "a"
    df.to_csv(p, index=False)
    with pytest.raises(DataFileError, match="has more than one label"):
        load_sequences(p, id_column="seq", label_column="cls")


def test_read_ts_parses_channels_labels_and_missing(tmp_path):
    p = _csv(tmp_path, "#comment\n@problemName X\n@dimensions 2\n@classLabel true a b\n@data\n"
                       "1,2,3:4,5,6:a\n7,8:9,?:b\n", "x_TRAIN.ts")
    xs, ys, header = read_ts(p)
    assert ys == ["a", "b"] and header["problemname"] == "X"
    np.testing.assert_array_equal(xs[0], [[1, 4], [2, 5], [3, 6]])
    assert xs[1].shape == (2, 2) and np.isnan(xs[1][1, 1])
    with pytest.raises(DataFileError, match="bad.ts, line 3: a value is not a number"):
        read_ts(_csv(tmp_path, "@data\n1,2:a\n1,x:b\n", "bad.ts"))


def test_stratified_split_keeps_class_shares():
    labels = [str(c) for c in _rng().integers(0, 3, 200)]
    a, b = stratified_split(labels, 0.25, seed=3)
    assert sorted(a + b) == list(range(200)) and not set(a) & set(b)
    for c in set(labels):
        n = labels.count(c)
        assert abs(sum(labels[i] == c for i in b) - 0.25 * n) <= 1


# -- windows, scaling, splits ---------------------------------------------------------------------------------
def test_windows_match_a_loop_and_never_leak_targets():
    rng = _rng()
    n, F, window, horizon = int(rng.integers(60, 120)), 3, int(rng.integers(2, 10)), int(rng.integers(1, 6))
    v = rng.normal(size=(n, F))
    sp = time_split(n, 0.2, 0.2)
    starts = origins(sp.train_end, sp.val_end, window, horizon)
    x, y = make_windows(v, starts, window, horizon, [0, 2])
    for i, t in enumerate(starts):
        np.testing.assert_array_equal(x[i], v[t - window : t])
        np.testing.assert_array_equal(y[i], v[t : t + horizon][:, [0, 2]])
        assert sp.train_end <= t and t + horizon <= sp.val_end
    assert len(starts) == sp.val_end - horizon - max(sp.train_end, window) + 1


def test_scaler_round_trip_and_constant_column():
    rng = _rng()
    v = np.c_[rng.normal(5, 3, 50), np.full(50, 7.0)]
    sc = Scaler.fit(v)
    z = sc.transform(v)
    assert abs(z[:, 0].mean()) < 1e-12 and abs(z[:, 0].std() - 1) < 1e-12 and (z[:, 1] == 0).all()
    np.testing.assert_allclose(sc.inverse(z), v)
    assert Scaler.from_dict(sc.to_dict()).transform(v[:3]).tolist() == z[:3].tolist()
    with pytest.raises(DataFileError, match="still train on something"):
        time_split(10, 0.5, 0.5)
