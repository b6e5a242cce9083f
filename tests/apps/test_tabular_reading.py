"""Reading users' CSV files: separators, decimal commas, missing markers, inf, bad rows, memory.

Every file is generated fresh in tmp_path from random values; the values read back are compared with
the values written, and every refusal is checked to be one line naming the row or column.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fastgru.apps.cli import main
from fastgru.apps.data.series import load_series
from fastgru.apps.data.tabular import DataFileError, read_table, reading_options


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**31, (1,))))


def _write(tmp_path, text: str, name: str = "d.csv", encoding: str = "utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _european(x: float) -> str:
    """1234.5 -> '1.234,5' as a German Excel writes it (thousands dots, decimal comma)."""
    whole, frac = f"{abs(x):,.4f}".split(".")
    return ("-" if x < 0 else "") + whole.replace(",", ".") + "," + frac


def _one_line_error(p, **kw) -> str:
    with pytest.raises(DataFileError) as err:
        load_series(p, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_european_excel_file_reads_the_right_values(tmp_path):
    """';' separators, decimal commas, thousands dots, a BOM: every value read back exactly (to 4 places)."""
    rng = _rng()
    x = np.round(rng.normal(0, 3000, size=200), 4)
    times = pd.date_range("2024-03-01", periods=200, freq="30min").strftime("%Y-%m-%d %H:%M")
    temp = np.round(x / 100, 2)
    text = "Zeit;Last;Temp\n" + "".join(f"{t};{_european(v)};{_european(w)}\n" for t, v, w in zip(times, x, temp))
    p = _write(tmp_path, "\ufeff" + text)
    s = load_series(p, ["Last"], time_column="Zeit")
    np.testing.assert_allclose(s.values["Last"].to_numpy(), x, rtol=0, atol=1e-9)
    assert s.extra["read"]["sep"] == ";" and s.extra["read"]["decimal"] == ","
    assert s.extra["read"]["columns_read"] == ["Last", "Zeit"]  # only the needed columns
    both = load_series(p, time_column="Zeit")  # default: every numeric column
    assert both.columns == ["Last", "Temp"]
    np.testing.assert_allclose(both.values["Temp"].to_numpy(), temp, atol=1e-9)


def test_european_file_trains_detect_on_the_right_values(tmp_path):
    """End to end through the CLI: the series detect models is the file's values, not the digits after commas."""
    rng = _rng()
    x = np.round(np.sin(np.arange(160) / 5) * 10 + rng.normal(0, 0.3, 160), 3)
    p = _write(tmp_path, "value;flag\n" + "".join(f"{_european(v)};0\n" for v in x), "eu.csv")
    assert main(["detect", "--data", str(p), "--label-column", "flag", "--window", "8", "--epochs", "1",
                 "--out", str(tmp_path / "out")]) == 0
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    np.testing.assert_allclose(scores["value"].to_numpy(), x, atol=1e-9)
    read = json.loads((tmp_path / "out" / "metrics.json").read_text())["data_read"]
    assert read["sep"] == ";" and read["decimal"] == ","
    # the same file with the options given explicitly reads the same
    with reading_options(sep=";", decimal=","):
        np.testing.assert_allclose(read_table(p)["value"].to_numpy(), x, atol=1e-9)


def test_decimal_commas_in_a_comma_separated_file_are_refused_with_the_row(tmp_path, capsys):
    """The issue's silent misread: '1,5' unquoted in a ',' file split into two fields. Now: exit 2, one line."""
    p = _write(tmp_path, "time,value\n2024-01-01,1,5\n2024-01-02,2,25\n2024-01-03,3,75\n")
    msg = _one_line_error(p)
    assert "row 1 has 3 fields but the header has 2" in msg and "--sep" in msg and "--decimal" in msg
    assert main(["detect", "--data", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 1 has 3 fields" in err
    assert not (tmp_path / "o").exists()


def test_one_column_of_decimal_commas_and_the_excel_sep_line(tmp_path):
    rng = _rng()
    x = np.round(rng.normal(size=50), 3)
    single = _write(tmp_path, "load\n" + "".join(f"{_european(v)}\n" for v in x), "one.csv")
    np.testing.assert_allclose(load_series(single).values["load"].to_numpy(), x, atol=1e-9)
    excel = _write(tmp_path, "sep=;\na;b\n" + "".join(f"{i};{_european(v)}\n" for i, v in enumerate(x)), "x.csv")
    s = load_series(excel, ["b"])
    np.testing.assert_allclose(s.values["b"].to_numpy(), x, atol=1e-9)


def test_quoted_decimal_commas_and_ambiguous_thousands(tmp_path):
    quoted = _write(tmp_path, 'a,b\n1,"2,5"\n2,"3,25"\n', "q.csv")
    assert load_series(quoted, ["b"]).values["b"].tolist() == [2.5, 3.25]
    ambiguous = _write(tmp_path, 'a,b\n1,"1,234"\n2,"5,678"\n', "amb.csv")
    msg = _one_line_error(ambiguous, columns=["b"])
    assert "row 1 has '1,234'" in msg and "--decimal" in msg
    with reading_options(decimal=","):
        assert load_series(ambiguous, ["b"]).values["b"].tolist() == [1.234, 5.678]
    mixed = _write(tmp_path, "a;b\n1,5;2.5\n", "mixed.csv")
    msg = _one_line_error(mixed)
    assert "cannot tell the decimal mark" in msg and "'1,5'" in msg and "'2.5'" in msg


def test_a_dot_in_a_decimal_comma_column_is_named_not_misread(tmp_path):
    """With decimal ',' a dot is only a thousands mark: '1.5' is refused, never read as 15 or 1.5."""
    p = _write(tmp_path, "a;b\n1;2,5\n2;1.5\n3;1.500\n", "d.csv")
    msg = _one_line_error(p, columns=["b"])  # detection sees both styles and asks
    assert "cannot tell the decimal mark" in msg and "row 2 has '1.5'" in msg
    with reading_options(decimal=","):  # told ',', the dot cell is named by row
        msg = _one_line_error(p, columns=["b"])
    assert "column 'b'" in msg and "row 2: '1.5'" in msg and "--decimal ." in msg
    assert read_table(_write(tmp_path, "a;b\n1;2,5\n3;1.500\n", "t.csv"))["b"].tolist() == [2.5, 1500.0]


def test_commas_found_only_after_the_sample_are_refused_with_a_hint(tmp_path):
    """The sample (64 KiB) saw only integers, so '.' was chosen; the later '1,5' is refused, not split."""
    body = "".join(f"{i};{i % 7}\n" for i in range(12000)) + "12000;1,5\n"
    p = _write(tmp_path, "t;x\n" + body)
    msg = _one_line_error(p, columns=["x"])
    assert "row 12001: '1,5'" in msg and "--decimal ," in msg


def test_inf_is_refused_with_column_and_row_or_missing_under_nan(tmp_path):
    rng = _rng()
    x = rng.normal(size=20).round(3)
    cells = [str(v) for v in x]
    cells[4], cells[11] = "inf", "-Infinity"
    p = _write(tmp_path, "x\n" + "\n".join(cells) + "\n")
    msg = _one_line_error(p)
    assert "column 'x' has 2 infinite values (row 5: inf, row 12: -inf)" in msg and "--nan" in msg
    s = load_series(p, nan="interpolate")
    assert np.isfinite(s.values["x"]).all()
    assert s.values["x"][4] == pytest.approx((x[3] + x[5]) / 2)
    assert len(load_series(p, nan="drop")) == 18


def test_missing_markers_count_as_missing(tmp_path):
    """n/a, NA, '-', empty, '?' and null are missing (the NaN policy applies), not 'no numeric column'."""
    cells = ["1.5", "n/a", "2.5", "NA", "-", "", "3.5", "?", "null", "4.5"]
    p = _write(tmp_path, "t;x\n" + "".join(f"{i};{c}\n" for i, c in enumerate(cells)))
    msg = _one_line_error(p, columns=["x"])
    assert "6 missing values" in msg and "first at row 2" in msg and "--nan" in msg
    ffilled = [1.5, 1.5, 2.5, 2.5, 2.5, 2.5, 3.5, 3.5, 3.5, 4.5]
    assert load_series(p, ["x"], nan="ffill").values["x"].tolist() == ffilled
    assert load_series(p, ["x"], nan="drop").values["x"].tolist() == [1.5, 2.5, 3.5, 4.5]


def test_a_mostly_numeric_column_with_a_bad_cell_is_named_by_row(tmp_path):
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(40)) + "40,oops\n"
    msg = _one_line_error(_write(tmp_path, "t,x\n" + rows), time_column="t")
    assert "column 'x' has 1 non-numeric value (row 41: 'oops')" in msg


def test_bad_files_give_one_line_errors(tmp_path):
    cases = {
        "empty.csv": ("", "is empty"),
        "header_only.csv": ("a,b\n", "has no data rows"),
        "ragged.csv": ("a,b\n1,2\n3,4\n5,6,7\n8,9\n", "row 3 has 3 fields but the header has 2"),
        "short.csv": ("a;b\n1;2\n3\n", "row 2 has 1 fields but the header has 2"),
        "dupes.csv": ("a,a,b\n1,2,3\n", "repeats column name 'a'"),
        "text.csv": ("name,city\nann,rome\nbob,oslo\n", "no numeric column"),
    }
    for name, (text, expected) in cases.items():
        msg = _one_line_error(_write(tmp_path, text, name))
        assert expected in msg, (name, msg)
    with pytest.raises(DataFileError, match="must be one character"):
        read_table(_write(tmp_path, "a\n1\n", "ok.csv"), sep=";;")


def test_windows_1252_file_and_explicit_tab_separator(tmp_path):
    p = _write(tmp_path, "Maß;Wert\n1;2,5\n2;3,5\n", "w.csv", encoding="cp1252")
    s = load_series(p, ["Wert"])
    assert s.values["Wert"].tolist() == [2.5, 3.5] and s.extra["read"]["encoding"] == "cp1252"
    t = _write(tmp_path, "a\tb\n1\t2.5\n2\t3.5\n", "t.txt")
    with reading_options(sep="tab"):
        assert read_table(t)["b"].tolist() == [2.5, 3.5]


def test_only_the_needed_columns_are_read_and_memory_is_reported(tmp_path):
    """A ~25 MB file of 8 columns: reading 1 column keeps pyarrow's peak far below the file size."""
    rng = _rng()
    n = 300_000
    df = pd.DataFrame({f"c{j}": rng.normal(size=n) for j in range(8)})
    df.insert(0, "time", pd.date_range("2020-01-01", periods=n, freq="min").strftime("%Y-%m-%d %H:%M:%S"))
    p = tmp_path / "big.csv"
    df.to_csv(p, index=False, float_format="%.10f")
    s = load_series(p, ["c3"], time_column="time")
    np.testing.assert_allclose(s.values["c3"].to_numpy(), df["c3"].to_numpy(), atol=1e-9)
    read = s.extra["read"]
    assert read["columns_read"] == ["c3", "time"] and read["rows"] == n and read["file_mb"] > 20
    assert read["arrow_peak_mb"] < 0.5 * read["file_mb"], read
    assert read["process_peak_rss_mb"] is None or read["process_peak_rss_mb"] > 0
