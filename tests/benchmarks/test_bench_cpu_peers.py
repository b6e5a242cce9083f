"""benchmarks/cpu.py --quick: the peers, floor and bf16 tables come out with their structure (not timing)."""

import importlib.util
import json
from pathlib import Path

import pytest

from fastgru.backends import cpu

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cpu.py"


@pytest.mark.skipif(not cpu.is_available(), reason="the fused CPU kernel could not be built here")
def test_quick_run_writes_every_table(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, raw = tmp_path / "B.md", tmp_path / "raw.json"
    out.write_text("# Benchmarks\n\nkept text\n")
    module.main(["--quick", "--output", str(out), "--json", str(raw)])
    text = out.read_text()
    assert "kept text" in text
    for section in ("cpu-peers", "cpu-floor", "cpu-bf16"):
        assert f"<!-- {section}:start -->" in text and f"<!-- {section}:end -->" in text
    result = json.loads(raw.read_text())
    assert len(result["rows"]) == 2 * len(module.QUICK_GRID)
    for row in result["rows"]:
        assert {"fastgru", "torch.nn.GRU", "torch.nn.LSTM"} <= set(row["ms"])
        assert all(ms > 0 for ms in row["ms"].values())
        if row["mode"] == "inference":
            assert row["max_abs_err"] < 1e-5
    assert "load average" in text and "python benchmarks/cpu.py --quick" in text
    assert len(result["bf16"]) == len(module.QUICK_BF16_SIZES)
    assert any("empty custom op" in name for name in result["floor_ms"])
