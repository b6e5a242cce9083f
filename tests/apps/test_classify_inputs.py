"""`classify` inputs: UCR text files, explicit and paired test files, split and time columns in long tables,
and the record of every pairing/split in LabelledSequences.split (which classify writes to metrics.json)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastgru.apps.data.sequences import load_sequences, looks_like_ucr_wide, read_ucr_wide
from fastgru.apps.data.tabular import DataFileError


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(np.random.SeedSequence().entropy % 2**32))


def _wide_lines(rng, n: int, length: int, sep: str) -> tuple[str, list[np.ndarray], list[str]]:
    xs, ys, lines = [], [], []
    for _ in range(n):
        k = length - int(rng.integers(0, 3))  # some shorter series, padded with NaN as the archive does
        x = rng.normal(size=k).round(4)
        label = str(int(rng.integers(1, 4)))
        xs.append(x)
        ys.append(label)
        vals = [f"{v}" for v in x] + ["NaN"] * (length - k)
        lines.append(sep.join([f"{float(label)}", *vals]))
    return "\n".join(lines) + "\n", xs, ys


@pytest.mark.parametrize("sep", ["\t", " ", ",", "  "])
def test_ucr_wide_text_any_separator_and_nan_padding(tmp_path, sep):
    rng = _rng()
    text, xs, ys = _wide_lines(rng, 9, 12, sep)
    p = tmp_path / "Toy_TRAIN.tsv"
    p.write_text(text)
    assert looks_like_ucr_wide(p)
    got_x, got_y = read_ucr_wide(p)
    assert got_y == ys  # "2.0" is read as class "2"
    for g, x in zip(got_x, xs):
        assert g.shape == (len(x), 1)
        np.testing.assert_allclose(g[:, 0], x)


def test_train_file_pairs_with_the_test_file_beside_it_and_says_so(tmp_path):
    rng = _rng()
    (tmp_path / "Toy_TRAIN.txt").write_text(_wide_lines(rng, 8, 10, " ")[0])
    (tmp_path / "Toy_TEST.txt").write_text(_wide_lines(rng, 5, 10, " ")[0])
    d = load_sequences(tmp_path / "Toy_TRAIN.txt")
    assert d.name == "Toy" and len(d.train_x) == 8 and len(d.test_x) == 5
    assert "Toy_TEST.txt" in d.split["how"] and "beside" in d.split["how"]
    assert d.split["test"].endswith("Toy_TEST.txt")


def test_explicit_test_data_wins_and_a_lone_file_is_split_at_random_with_a_record(tmp_path):
    rng = _rng()
    (tmp_path / "Toy_TRAIN.tsv").write_text(_wide_lines(rng, 20, 10, "\t")[0])
    (tmp_path / "Toy_TEST.tsv").write_text(_wide_lines(rng, 5, 10, "\t")[0])
    (tmp_path / "other.tsv").write_text(_wide_lines(rng, 7, 10, "\t")[0])
    d = load_sequences(tmp_path / "Toy_TRAIN.tsv", test_data=tmp_path / "other.tsv")
    assert len(d.test_x) == 7 and d.split["how"] == "test file given with --test-data"
    lone = tmp_path / "lone.txt"
    lone.write_text(_wide_lines(rng, 20, 10, ",")[0])
    d = load_sequences(lone, test_fraction=0.25, seed=3)
    assert len(d.train_x) + len(d.test_x) == 20 and "random" in d.split["how"]
    with pytest.raises(DataFileError, match="--test-data file not found"):
        load_sequences(lone, test_data=tmp_path / "missing.txt")


def _long(rng, n_seq: int, time_name: str, with_split: bool) -> pd.DataFrame:
    rows = []
    for i in range(n_seq):
        T = int(rng.integers(4, 9))
        for t in range(T):
            row = {"seq": f"s{i}", time_name: 10 * t + 3, "f1": float(rng.normal()), "f2": float(rng.normal()),
                   "cls": "ab"[i % 2]}
            if with_split:
                row["split"] = "test" if i >= n_seq - 4 else "train"
            rows.append(row)
    return pd.DataFrame(rows).sample(frac=1, random_state=int(rng.integers(1000)))


def test_split_column_is_honoured_and_time_column_never_silently_a_feature(tmp_path):
    rng = _rng()
    df = _long(rng, 12, "frame", with_split=True)
    p = tmp_path / "long.csv"
    df.to_csv(p, index=False)
    d = load_sequences(p, id_column="seq", label_column="cls")
    assert len(d.test_x) == 4 and len(d.train_x) == 8 and d.split["how"] == "the table's split column"
    assert d.channels == ["f1", "f2"]  # 'frame' orders the steps, it is no feature
    assert any("'frame' orders the steps" in n for n in d.split["notes"])
    # steps come out in time order: compare with the table sorted by the time column
    first = df[df["seq"] == "s0"].sort_values("frame")[["f1", "f2"]].to_numpy()
    assert sum(x.shape == first.shape and np.allclose(x, first) for x in d.train_x + d.test_x) == 1


def test_an_unnamed_increasing_column_is_taken_as_time_and_bad_split_values_are_refused(tmp_path):
    rng = _rng()
    p = tmp_path / "long.csv"
    _long(rng, 10, "when", with_split=False).to_csv(p, index=False)
    d = load_sequences(p, id_column="seq", label_column="cls")
    assert d.channels == ["f1", "f2"] and any("evenly spaced" in n for n in d.split["notes"])
    d = load_sequences(p, id_column="seq", label_column="cls", feature_columns=["f1", "when"])
    assert d.channels == ["f1", "when"]  # asked for explicitly: kept
    df = _long(rng, 10, "frame", with_split=True)
    df.loc[df.index[0], "split"] = "holdout"
    df.to_csv(p, index=False)
    with pytest.raises(DataFileError, match="must hold one of 'train' or 'test'"):
        load_sequences(p, id_column="seq", label_column="cls")
