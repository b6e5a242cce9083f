"""The CPU benchmark machinery (tiny sizes): rows, memory probe and the report section it writes."""

from fastgru.apps import bench
from fastgru.io.markdown import replace_section


def test_benchmark_writes_its_section_and_keeps_others(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    replace_section(report, "other", "## Other", "kept as it is")
    rows = bench.run(sizes=[(6, 2, 3, 4)], reps=1, output=report, command="test", progress=lambda _: None)
    assert [r.mode for r in rows] == ["inference", "training"]
    assert all(r.torch_ms > 0 and r.fastgru_ms > 0 and r.max_rel_err < 1e-5 for r in rows)
    text = report.read_text()
    assert "kept as it is" in text and "<!-- cpu:start -->" in text and "| 6, 2, 3, 4 | training |" in text
    bench.run(sizes=[(5, 1, 2, 3)], reps=1, output=report, command="again", progress=lambda _: None)
    text = report.read_text()
    assert text.count("<!-- cpu:start -->") == 1 and "| 5, 1, 2, 3 |" in text and "| 6, 2, 3, 4 |" not in text
    assert "kept as it is" in text


def test_bench_command_writes_into_out_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    import json

    import pytest

    from fastgru.apps.cli import main

    monkeypatch.setattr(bench, "SIZES", [(4, 1, 2, 3), (5, 2, 3, 4), (3, 1, 2, 2)])  # tiny stand-ins for --quick
    # the memory probe (two fresh processes per size) is covered by the test above
    monkeypatch.setattr(bench, "peak_training_memory_mb", lambda *size: 1.5)
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--reps", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "bench.json").read_text())
    assert [r["T"] for r in saved["rows"]] == [4, 4, 3, 3] and saved["command"].startswith("fastgru bench --quick")
    assert "| 4, 1, 2, 3 | training |" in (out / "table.md").read_text()
    before = (out / "table.md").read_text()
    assert main(["bench", "--quick", "--reps", "1", "--out", str(out)]) == 2  # exists: refused before measuring
    assert "--force" in capsys.readouterr().err and (out / "table.md").read_text() == before
    assert main(["bench", "--quick", "--reps", "1", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "bench.json").read_text())["peak_training_memory_mb"][0]["torch"] == 1.5
    with pytest.raises(SystemExit):
        main(["bench", "--reps", "x"])
