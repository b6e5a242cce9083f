"""The ahead-of-time compile check of the Triton kernels (fastgru.backends.triton.aot), on a CPU-only machine.

The compiles run in subprocesses: this test process has TRITON_INTERPRET set (conftest.py), under which the
kernels are built for the interpreter and cannot be compiled for a GPU. The pure parts (limits, occupancy,
ptxas parsing, the heuristics' fit over the shape grid, the table) run in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastgru
from fastgru.backends.triton import aot, heuristics

pytest.importorskip("triton", reason="the AOT check needs Triton (pip install 'fastgru[gpu]')")

SRC = Path(fastgru.__file__).resolve().parents[1]
SM80, SM90 = aot.ARCHS["sm_80"], aot.ARCHS["sm_90"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _python(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def _compile(cases: str) -> dict:
    """Compile `cases` (Python source of a {arch: [Case, ...]} dict) with aot.run in a clean process."""
    run = _python(f"""
        import json
        from dataclasses import asdict
        from fastgru.backends.triton import aot
        C = aot.Case
        cases = {cases}
        report = aot.run(list(cases), cases=cases)
        print("REPORT" + json.dumps(dict(records=[asdict(r) for r in report.records], errors=report.errors,
                                         problems=report.problems)))
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    line = [x for x in run.stdout.splitlines() if x.startswith("REPORT")][-1]
    return json.loads(line[len("REPORT"):])


# ------------------------------------------------------------------------------------- the CI subset


@pytest.mark.slow
def test_quick_set_compiles_within_the_limits(tmp_path):
    """Each mode and product path, at the largest tiles the heuristics pick over the shape grid, compiles for sm_80
    and sm_90 and fits each architecture: exit status 0, no compile error, nothing over a limit. (--quick: the
    whole CI subset, `python -m fastgru.backends.triton.aot`, takes about 4 CPU-minutes cold, too long here.)"""
    out = tmp_path / "records.json"
    run = subprocess.run([sys.executable, "-m", "fastgru.backends.triton.aot", "--quick", "--jobs", "2", "--json",
                          str(out)], capture_output=True, text=True, env=_env(), timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "PROBLEM" not in run.stdout
    for arch in ("sm_80", "sm_90"):
        n = len(aot.quick_cases(arch))
        assert f"{arch}: {n} cases" in run.stdout and "0 over a limit, 0 compile errors" in run.stdout
    records = json.loads(out.read_text())
    for arch_name, arch in aot.ARCHS.items():
        recs = [r for r in records if r["arch"] == arch_name]
        # every kernel of the backend and the MinGRU scan was compiled for this architecture
        assert {r["kernel"] for r in recs} == {"fwd_persistent_kernel", "bwd_persistent_kernel", "fwd_step_kernel",
                                               "bwd_step_kernel", "_scan_kernel"}
        for r in recs:
            assert 0 < r["registers"] <= arch.max_regs_per_thread
            assert r["shared"] <= arch.smem_per_block
            assert r["occupancy"] >= 1 and not r["problems"]
            if r["smem_estimate"]:
                assert r["shared"] <= r["smem_estimate"]  # the heuristics' estimate bounds what was compiled
            if r["kernel"] in aot.PERSISTENT_KERNELS and (r["spill_stores"] or r["spill_loads"]):
                assert "spill accepted" in r["notes"][0], r  # within a documented allowance
        modes = {r["plan"].split(" ")[0] for r in recs}
        assert modes == {"persistent", "step", "gemm", "scan"}
        plans = " ".join(r["plan"] for r in recs)
        assert " res dot" in plans and " str dot" in plans and " bc " in plans


# ------------------------------------------------------------------------- failures are reported


def test_over_limit_plan_and_compile_error_are_failures():
    """A plan forced over A100's shared memory (W_hh resident, 64 x 512 fp32 state tile: 229,376 B) is a
    failure on sm_80 and within H100's 232,448 B; a plan whose tl.dot has K = 8 (< 16) is a compile error."""
    over = "C('{a}', B=64, H=512, precision='bf16', save=False, overrides=(('resident', True), ('block_h', 32)))"
    bad_dot = "C('sm_80', B=16, H=64, precision='bf16', save=False, overrides=(('h_pad', 8),))"
    report = _compile(f"{{'sm_80': [{over.format(a='sm_80')}, {bad_dot}], 'sm_90': [{over.format(a='sm_90')}]}}")
    (error,) = report["errors"]
    assert error.startswith("sm_80 B=16 H=64 bf16 ra infer h_pad=8: CompilationError")
    by_arch = {r["arch"]: r for r in report["records"]}
    a100, h100 = by_arch["sm_80"], by_arch["sm_90"]
    assert a100["kernel"] == h100["kernel"] == "fwd_persistent_kernel"
    assert a100["shared"] == h100["shared"] > SM80.smem_per_block
    assert any(p.startswith(f"shared memory {a100['shared']} B > {SM80.smem_per_block} B") for p in a100["problems"])
    assert not any(p.startswith("shared memory") for p in h100["problems"])
    assert any(error in p for p in report["problems"])
    # the heuristics never pick that plan: without the forced fields it fits
    plan = aot.plan_of(aot.Case("sm_80", B=64, H=512, precision="bf16"))
    assert aot._smem_bound(plan, aot.Case("sm_80", B=64, H=512, precision="bf16")) <= SM80.smem_per_block


def test_cli_refuses_conflicting_sets(capsys):
    for argv in (["--full", "--quick"], ["--grid", "--full"], ["--jobs", "0"]):
        with pytest.raises(SystemExit):
            aot.main(argv)
        assert "error:" in capsys.readouterr().err


def test_cli_exit_status_is_one_on_a_failure(tmp_path, monkeypatch):
    """main() returns 1 when the report has a problem, 0 when not, and writes the table it was asked for."""
    rec = _record(shared=SM80.smem_per_block + 1)
    rec.problems = aot.check(rec, SM80)
    bad = aot.Report([rec], [], {"sm_80": 1}, {"sm_80": 1}, 1.0)
    good = aot.Report([_record()], [], {"sm_80": 1}, {"sm_80": 1}, 1.0)
    monkeypatch.setattr("fastgru.backends.triton.kernels.INTERPRETED", False)
    for report, status in ((bad, 1), (good, 0)):
        monkeypatch.setattr(aot, "run", lambda *a, report=report, **k: report)
        md = tmp_path / f"t{status}.md"
        assert aot.main(["--arch", "sm_80", "--write-table", str(md)]) == status
        assert "<!-- gpu-aot:start -->" in md.read_text()


# --------------------------------------------------------------------------- limits and occupancy


def _record(kernel="fwd_step_kernel", registers=128, warps=8, shared=0, grid=(1, 1), spills=(0, 0), options="plain",
            estimate=0, arch=SM80):
    return aot.KernelRecord(kernel, arch.name, "case", "plan", grid, warps, registers, spills[0], spills[1], 0, shared,
                            aot.occupancy(arch, registers, warps, shared), options=options, smem_estimate=estimate)


@pytest.mark.parametrize("registers, warps, shared, blocks", [
    (255, 8, 0, 1),          # 255 regs -> 8,192 per warp (256-register units) -> 8 warps per SM -> 1 block
    (128, 8, 0, 2),          # 4,096 per warp -> 16 warps -> 2 blocks
    (32, 4, 0, 16),          # threads: 2,048 per SM / 128 -> 16 blocks (registers would allow 16 too)
    (32, 1, 0, 32),          # the 32-blocks-per-SM limit
    (64, 4, 100_000, 1),     # shared memory: 167,936 // (100,000 + 1,024 reserved) = 1
    (64, 4, 40_000, 4),      # 167,936 // 41,024 = 4
    (64, 4, 166_912, 1),     # A100's largest block + the reserved 1 KB = its 164 KB per SM
    (64, 4, 166_913, 0),     # one byte more does not fit
])
def test_occupancy_arithmetic(registers, warps, shared, blocks):
    assert aot.occupancy(SM80, registers, warps, shared) == blocks


def test_limits_are_each_checked():
    assert aot.check(_record(), SM80) == []
    over_smem = aot.check(_record(shared=SM80.smem_per_block + 1), SM80)
    assert any("per block on sm_80" in p for p in over_smem)
    assert not any("per block" in p for p in aot.check(_record(shared=SM80.smem_per_block + 1, arch=SM90), SM90))
    assert any("threads > 1024" in p for p in aot.check(_record(warps=64, registers=16), SM80))
    assert any("registers x 512 threads > 65536" in p for p in aot.check(_record(warps=16, registers=255), SM80))
    # a persistent grid must be co-resident on the SMs the plan assumed
    assert any("not co-resident on 108 SMs" in p
               for p in aot.check(_record("fwd_persistent_kernel", grid=(109, 1), registers=255), SM80))
    assert aot.check(_record("fwd_persistent_kernel", grid=(108, 1), registers=255), SM80) == []
    assert aot.check(_record("fwd_persistent_kernel", grid=(109, 1), registers=255), SM80, n_sm=132) == []
    # the shared memory the plan was fitted with must bound the compiled figure
    assert any("the heuristics' estimate" in p for p in aot.check(_record(shared=5000, estimate=4096), SM80))
    assert aot.check(_record(shared=4096, estimate=4096), SM80) == []


def test_spills_fail_in_persistent_kernels_unless_a_bounded_exception_applies():
    # the per-step kernels may spill (reported in the table, not a failure)
    assert aot.check(_record("fwd_step_kernel", spills=(64, 64)), SM80) == []
    small, ln = aot.SPILL_EXCEPTIONS["any"], aot.SPILL_EXCEPTIONS["ln"]
    assert small.reason and ln.reason and 0 < small.max_bytes < ln.max_bytes
    rec = _record("bwd_persistent_kernel", spills=(small.max_bytes, 4))
    assert aot.check(rec, SM80) == [] and "SPILL_EXCEPTIONS['any']" in rec.notes[0]
    over = aot.check(_record("bwd_persistent_kernel", spills=(4, small.max_bytes + 4)), SM80)
    assert over == [f"the persistent step loop spills (4 B stored, {small.max_bytes + 4} B loaded, over the "
                    f"{small.max_bytes} B accepted for 'any')"]
    # the layer norm's larger allowance applies to layer-norm cases only
    assert aot.check(_record("fwd_persistent_kernel", spills=(ln.max_bytes, 16), options="plain"), SM80)
    rec = _record("fwd_persistent_kernel", spills=(ln.max_bytes, 16), options="ln")
    assert aot.check(rec, SM80) == [] and "SPILL_EXCEPTIONS['ln']" in rec.notes[0]
    over = aot.check(_record("fwd_persistent_kernel", spills=(ln.max_bytes + 4, 16), options="ln"), SM80)
    assert any(f"over the {ln.max_bytes} B accepted for 'ln'" in p for p in over)


def test_parse_ptxas():
    log = ("ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'k' for 'sm_90a'\n"
           "ptxas info    : Function properties for k\n    16 bytes stack frame, 12 bytes spill stores, 20 bytes "
           "spill loads\nptxas info    : Used 255 registers, used 1 barriers, 16 bytes cumulative stack size, "
           "1024 bytes smem, 544 bytes cmem[0]\n")
    assert aot.parse_ptxas(log) == dict(stack=16, spill_stores=12, spill_loads=20, registers=255, static_smem=1024)
    assert aot.parse_ptxas(log.replace(", 1024 bytes smem", ""))["static_smem"] == 0
    with pytest.raises(ValueError, match="unexpected ptxas"):
        aot.parse_ptxas("ptxas fatal: nothing")


# ---------------------------------------------------------------- the heuristics over the shape grid


@pytest.mark.parametrize("arch", sorted(aot.ARCHS))
def test_every_grid_plan_fits_its_architecture(arch):
    """make_plan's plan for every (B, H, precision, options) of the grid keeps its shared-memory estimate within
    the architecture's per-block limit, and a persistent grid within its SM count."""
    limits = aot.ARCHS[arch]
    n = 0
    for options in ("plain", "cell", "ln"):
        for B in aot.B_GRID:
            for H in aot.H_GRID:
                if options == "ln" and not heuristics.supports_layer_norm(H):
                    continue
                for precision in aot.PRECISIONS:
                    case = aot.Case(arch, B=B, H=H, precision=precision, options=options)
                    plan = aot.plan_of(case)
                    assert aot._smem_bound(plan, case) <= limits.smem_per_block, (case, plan)
                    if plan.mode == "persistent":
                        assert plan.n_h * plan.n_b <= limits.n_sm, (case, plan)
                    if plan.use_dot:
                        assert min(plan.block_b, plan.block_h, plan.block_k, plan.h_pad) >= 16
                    n += 1
    assert n == 3 * 5 * 6 * 4 - 5 * 2 * 4  # layer norm: H <= 512


def test_compiler_findings_are_in_the_heuristics():
    """The plans the compile check found spilling are no longer chosen: fp32 without TF32 never keeps W_hh
    resident for the FMA dot and streams it in chunks of 16; cell options stream the B=64, H=256 slice."""
    plain = heuristics.make_plan(4, 256, 4, 108, False, tf32=False, capability=80)
    assert not plain.resident and plain.block_k == heuristics.FP32_BLOCK_K == 16
    assert heuristics.make_plan(4, 256, 4, 108, False, tf32=True, capability=80).resident
    assert heuristics.make_plan(64, 2048, 4, 108, False, tf32=True, capability=80).block_k == 16
    assert heuristics.make_plan(64, 256, 2, 108, False, capability=80).resident
    assert not heuristics.make_plan(64, 256, 2, 108, False, capability=80, cell_options=True).resident
    assert heuristics.make_plan(1, 2048, 4, 108, False, capability=80).block_k == 64  # broadcast chunk 1 x 64 x 32
    # a tl.dot plan holds at most RESIDENT_DOT_ELEMS weights: 3 x 16 x 512 (B=16, H=512, bf16) spilled
    assert not heuristics.make_plan(16, 512, 2, 108, False, capability=80).resident
    assert heuristics.make_plan(16, 256, 2, 108, False, capability=80).resident
    # the 3 fp32 accumulators count towards the warps (16 x 128 tiles spilled with 4 warps)
    assert heuristics.make_plan(4, 128, 4, 132, False, tf32=True, capability=90).num_warps == 8
    # the layer norm takes 16 rows per program (64 x 64 spilled 8.7 KB per thread)
    assert heuristics.make_plan(64, 64, 2, 108, False, capability=80, layer_norm=True).block_b == 16


# ------------------------------------------------------------------------------------ the subset and table


@pytest.mark.parametrize("arch", sorted(aot.ARCHS))
def test_subset_covers_every_kernel_variant(arch):
    cases = aot.subset_cases(arch)
    plans = [aot.plan_of(c) for c in cases if c.kind == "gru"]
    assert {p.mode for p in plans} == {"persistent", "step", "gemm"}
    assert {(p.resident, p.use_dot) for p in plans if p.mode == "persistent"} >= {(True, True), (False, True)}
    assert any(not p.use_dot for p in plans)
    gru = [c for c in cases if c.kind == "gru"]
    assert {c.precision for c in gru} == set(aot.PRECISIONS)
    assert {c.options for c in gru} == {"plain", "cell", "cell-eval", "cell-act", "cell-act2", "ln"}
    assert {c.reset_after for c in gru} == {True, False}
    assert {c.lengths for c in gru} == {True, False} and {c.save for c in gru} == {True, False}
    assert {c.bias for c in gru} == {True, False}
    assert {c.precision for c in cases if c.kind == "scan"} == set(aot.SCAN_DTYPES)
    assert len(cases) == len(set(cases))
    assert set(cases) <= set(aot.full_cases(arch))
    quick = aot.quick_cases(arch)
    assert set(quick) <= set(cases) | {aot.Case(arch, kind="scan", precision="bf16")}
    assert {aot.plan_of(c).mode for c in quick if c.kind == "gru"} == {"persistent", "step", "gemm"}
    assert {c.options for c in quick} == {"plain", "cell", "ln"}
    grid, full = aot.grid_cases(arch), aot.full_cases(arch)
    assert set(cases) <= set(grid) < set(full) and len(full) == len(set(full))
    own = [c for c in grid if c.mode is None and c.kind == "gru" and c.options in ("plain", "ln") and c.lengths
           and c.bias and c.save]
    assert len({(c.B, c.H, c.precision, c.reset_after, c.options) for c in own}) == 5 * 6 * 4 * 2 + 5 * 4 * 4 * 2
    assert all(c.mode is None for c in grid if c not in set(cases))  # forced modes only in --full


def test_table_replaces_its_own_section(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n<!-- cpu:start -->\n## CPU\n\nkept\n<!-- cpu:end -->\n")
    recs = [_record("fwd_persistent_kernel", registers=200, shared=90_112, grid=(16, 1)),
            _record("_scan_kernel", registers=150, shared=8_192, arch=SM90)]
    report = aot.Report(recs, [], {"sm_80": 1, "sm_90": 1}, {"sm_80": 1, "sm_90": 1}, 2.0)
    for _ in range(2):  # a rerun replaces the section, never duplicates it
        aot.write_table(report, md, "python -m fastgru.backends.triton.aot")
    text = md.read_text()
    assert text.count("<!-- gpu-aot:start -->") == 1 and "kept" in text and text.startswith("# Benchmarks")
    assert "`python -m fastgru.backends.triton.aot`" in text
    assert "### sm_80" in text and "### sm_90" in text
    assert "| fwd_persistent_kernel | plan | case | 8 | 200 | 0/0 | 90,112 | - | 1 | ok |" in text
