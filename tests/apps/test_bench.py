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
