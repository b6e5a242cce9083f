"""The one-call GPU validation (fastgru.backends.triton.validate): everything that runs without a GPU.

Its GPU steps (selfcheck on a device, the cuDNN comparison on CUDA, the benchmark) need a CUDA device; here
the comparison runs on the CPU with the torch backend, the benchmark with a stand-in measurement, and the
command itself must refuse clearly and leave the report untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fastgru
from fastgru.backends.triton import validate

SRC = Path(fastgru.__file__).resolve().parents[1]
OTHER = "# Benchmarks\n\n<!-- cpu:start -->\n## CPU\n\nCPU figures, kept as they are.\n<!-- cpu:end -->\n"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


# ------------------------------------------------------------------------------------- no GPU here


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the command would really run")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(OTHER)
    before = report.stat().st_mtime_ns
    env = {k: v for k, v in _env().items() if k != "TRITON_INTERPRET"}  # (with it set, it re-runs itself first)
    run = subprocess.run([sys.executable, "-m", "fastgru.backends.triton.validate", "--no-install", "--output",
                          str(report)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "needs a CUDA device" in run.stderr and "nothing was run" in run.stderr
    assert report.read_text() == OTHER and report.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]  # no temporary file left either


# ------------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize("argv, message", [
    (["--budget-min", "0"], "--budget-min must be > 0"),
    (["--cases", "-1"], "--cases >= 0"),
    (["--budget-min", "soon"], "invalid float value"),
    (["--unknown"], "unrecognized arguments"),
])
def test_bad_arguments_are_refused_before_any_work(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(validate, "bootstrap", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_:
        validate.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(validate, "bootstrap", lambda *a, **k: pytest.fail("work started"))
    for out, message in ((tmp_path / "no" / "B.md", "does not exist"), (tmp_path, "not a regular file")):
        with pytest.raises(SystemExit):
            validate.main(["--output", str(out)])
        assert message in capsys.readouterr().err
    assert validate.output_problem(tmp_path / "B.md") is None
    # an installed copy without the repository's benchmark: refused up front unless --no-bench
    monkeypatch.setattr(validate, "BENCHMARK", tmp_path / "benchmarks" / "gpu.py")
    with pytest.raises(SystemExit):
        validate.main(["--output", str(tmp_path / "B.md")])
    assert "pass --no-bench" in capsys.readouterr().err
    monkeypatch.setattr(validate, "bootstrap", lambda *a, **k: 7)  # past the checks: the work would start
    assert validate.main(["--output", str(tmp_path / "B.md"), "--no-bench"]) == 7


def test_install_command(tmp_path):
    py = "python3"
    assert validate.install_command([], tmp_path, py) is None
    assert validate.install_command(["triton"], tmp_path, py) == [py, "-m", "pip", "install", "triton>=3.0"]
    with pytest.raises(RuntimeError, match="not its repository"):
        validate.install_command(["fastgru", "triton"], tmp_path, py)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'fastgru'\n")
    for missing in (["fastgru"], ["torch", "triton"]):
        assert validate.install_command(missing, tmp_path, py) == [py, "-m", "pip", "install", "-e", f"{tmp_path}[gpu]"]
    assert (validate.ROOT / "pyproject.toml").is_file() and (validate.ROOT / "benchmarks" / "gpu.py").is_file()


def test_bootstrap_without_install_names_what_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(validate, "missing_packages", lambda: ["triton"])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("nothing may be installed"))
    assert validate.bootstrap([], install=False) == 2
    assert "missing: triton" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- the comparison


def test_pass_rule():
    tol = validate.TOLERANCE
    assert validate.passes("fp32", tol["fp32"], 1.0)
    assert not validate.passes("fp32", 2 * tol["fp32"], 1.0)  # fp32 has no relative allowance
    assert validate.passes("tf32", 0.03, 0.011) and not validate.passes("tf32", 0.04, 0.011)
    assert validate.passes("bf16", tol["bf16"], 0.0) and not validate.passes("bf16", 0.1, 0.02)
    assert not validate.passes("tf32", float("nan"), 1.0)


class _Noisy(torch.nn.GRU):
    """A GRU whose output is off by `eps` relative: a wrong implementation the comparison must catch."""

    def __init__(self, H: int, eps: float) -> None:
        super().__init__(H, H)
        self.eps = eps

    def forward(self, x, h0):
        out, hn = super().forward(x, h0)
        return out * (1 + self.eps), hn


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_compare_passes_a_correct_gru_and_fails_a_wrong_one(backend):
    T, B, H = 7, 3, 10
    ref = torch.nn.GRU(H, H)
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    good = validate.compare(fastgru.nn.GRU(H, H, backend=backend), ref, "fp32", T, B, H, torch.device("cpu"), seed)
    assert good.passed and good.fastgru_err < validate.TOLERANCE["fp32"] and good.cudnn_err < 1e-5
    assert (good.T, good.B, good.H, good.precision) == (T, B, H, "fp32")
    bad = validate.compare(_Noisy(H, 1e-3), ref, "fp32", T, B, H, torch.device("cpu"), seed)
    # ref was compared before: its gradients must not accumulate (cuDNN's side stays exact)
    assert not bad.passed and 5e-4 < bad.fastgru_err < 2e-3 and bad.cudnn_err < 1e-5


# ------------------------------------------------------------------------------------ the report


def _comparisons():
    return [validate.Comparison("fp32", 37, 3, 40, True, 3e-7, 2e-7, "grad weight_hh_l0", True),
            validate.Comparison("bf16", 24, 130, 1024, True, 0.5, 0.01, "output", False)]


def test_report_is_written_into_its_own_section(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(OTHER)
    body = validate.format_report("TEST GPU (1 SM)", "python -m fastgru.backends.triton.validate", 0, _comparisons(),
                                  "2 of 9 sizes measured.", 125.0)
    for _ in range(2):
        validate.write_report(md, body)
    text = md.read_text()
    assert text.startswith(OTHER.rstrip()) and text.count("<!-- gpu-validate:start -->") == 1
    assert "Device: TEST GPU (1 SM)." in text and "(2.1 min in all)" in text
    assert "| fp32 | 37, 3, 40 | 3.0e-07 | 2.0e-07 | grad weight_hh_l0 | pass |" in text
    assert "| bf16 | 24, 130, 1024 | 5.0e-01 | 1.0e-02 | output | FAIL |" in text
    assert "self-check" in text and ": passed." in text
    assert ": FAILED." in validate.format_report("d", "c", 1, [], "n", 1.0)
    assert "| - | - | - | - | - | not run |" in validate.format_report("d", "c", None, [], "n", 1.0)


def _row(T, B, H, dname, mode):
    return dict(T=T, B=B, H=H, dtype=dname, mode=mode, cudnn_us_step=2.0, fastgru_us_step=1.0, speedup=2.0,
                cudnn_tflops=1.0, fastgru_tflops=2.0, cudnn_peak_mb=1.0, fastgru_peak_mb=1.0, max_rel_err=1e-6,
                path="persistent 1x1")


def test_benchmark_step_measures_while_time_is_left_and_writes_the_gpu_section(tmp_path, monkeypatch):
    bench = validate._load_benchmark()  # the real benchmarks/gpu.py, its GPU measurement stood in for
    calls = []

    def measure(T, B, H, dname, mode, rounds, warmup, rep):
        calls.append((T, B, H, dname, mode))
        time.sleep(0.1)
        return _row(T, B, H, dname, mode)

    monkeypatch.setattr(bench, "measure", measure)
    monkeypatch.setattr(bench, "header", lambda: "TEST GPU")
    monkeypatch.setattr(validate, "_load_benchmark", lambda: bench)
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(OTHER)
    # past the deadline from the start: nothing measured, nothing written
    note = validate.run_benchmark(md, time.monotonic() - 1)
    assert calls == [] and md.read_text() == OTHER
    assert note.startswith(f"0 of {len(bench.GRID)} sizes") and "not measured for lack of time" in note
    # time for the first size only (4 measurements of 0.1 s against a 0.2 s budget)
    note = validate.run_benchmark(md, time.monotonic() + 0.2)
    first = bench.GRID[0]
    assert {c[:3] for c in calls} == {first} and len(calls) == 2 * len(bench.MODES)
    assert note.startswith(f"1 of {len(bench.GRID)} sizes")
    text = md.read_text()
    assert text.startswith(OTHER.rstrip()) and text.count("<!-- gpu:start -->") == 1
    assert "Device: TEST GPU." in text and "python -m fastgru.backends.triton.validate" in text
    assert f"| {first[0]}, {first[1]}, {first[2]} | bf16 | training | 2.00 | 1.00 | 2.00x |" in text
