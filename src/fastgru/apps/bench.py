"""CPU benchmark: fastgru.nn.GRU vs torch.nn.GRU on the same inputs, in one process.

Both sides run interleaved (A, B, A, B, ...) on the same inputs and weights; the table reports medians,
the ratio (torch time / fastgru time, > 1 means fastgru is faster) and the peak extra memory of one
training step, measured in a fresh subprocess per side. Used by `benchmarks/cpu.py` and `fastgru bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastgru.apps.common import check_outputs, default_out
from fastgru.io import atomic
from fastgru.io.markdown import replace_section

SIZES = [(100, 32, 64, 128), (200, 64, 128, 256), (1000, 1, 64, 128), (50, 128, 256, 512)]


@dataclass
class Row:
    T: int
    B: int
    I: int
    H: int
    mode: str
    torch_ms: float
    fastgru_ms: float
    speedup: float
    max_rel_err: float


def interleaved_medians(fns: list[Callable[[], object]], reps: int) -> list[float]:
    """Median milliseconds of each function over `reps` rounds, one call of each per round (after a warm-up)."""
    for fn in fns:  # warm-up (builds the extension, fills caches)
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) * 1e3 for t in times]


def _pair(T: int, B: int, I: int, H: int, reset_after: bool = True):
    from fastgru.nn import GRU

    ref = torch.nn.GRU(I, H)
    fast = GRU(I, H, reset_after=reset_after)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    h0 = torch.randn(1, B, H)
    return ref, fast, x, h0


def _train_step(module: torch.nn.Module, x: torch.Tensor, h0: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    xi = x.requires_grad_(True)
    y, h = module(xi, h0)
    (y.sum() + h.sum()).backward()
    xi.grad = None


def measure(T: int, B: int, I: int, H: int, reps: int = 7) -> list[Row]:
    """Inference and training rows for one size."""
    ref, fast, x, h0 = _pair(T, B, I, H)
    with torch.no_grad():
        y_ref, _ = ref(x, h0)
        y_fast, _ = fast(x, h0)
        err = ((y_fast - y_ref).abs().max() / y_ref.abs().max()).item()
        t_ref, t_fast = interleaved_medians([lambda: ref(x, h0), lambda: fast(x, h0)], reps)
    rows = [Row(T, B, I, H, "inference", t_ref, t_fast, t_ref / t_fast, err)]
    xt = x.clone()
    _train_step(ref, xt, h0)
    g_ref = [p.grad.clone() for p in ref.parameters()]
    _train_step(fast, xt, h0)
    g_err = max(((p.grad - g).abs().max() / g.abs().max()).item() for p, g in zip(fast.parameters(), g_ref))
    t_ref, t_fast = interleaved_medians([lambda: _train_step(ref, xt, h0), lambda: _train_step(fast, xt, h0)], reps)
    rows.append(Row(T, B, I, H, "training", t_ref, t_fast, t_ref / t_fast, g_err))
    return rows


_MEMORY_PROBE = """
import json, sys, torch
sys.path[:0] = {path!r}
from fastgru.apps.bench import _pair, _train_step
torch.manual_seed(0)
ref, fast, x, h0 = _pair({T}, {B}, {I}, {H})
m = ref if {side!r} == "torch" else fast
_train_step(m, x[:2], h0)  # loads kernels, the extension and autograd's engine before measuring
from fastgru.backends import cpu
cpu.release_workspace()  # fastgru's cached buffers from the warm-up: the measured step starts without them
def status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak-RSS mark (VmHWM) to the current RSS
base = status_kb("VmRSS:")
_train_step(m, x, h0)
print(json.dumps(status_kb("VmHWM:") - base))
"""


def peak_training_memory_mb(T: int, B: int, I: int, H: int, side: str) -> float | None:
    """Peak resident memory added by one training step (fresh process, after a warm-up step), in MB.

    None where /proc's peak-RSS reset is unavailable (not Linux).
    """
    if not Path("/proc/self/clear_refs").exists():
        return None
    code = _MEMORY_PROBE.format(path=sys.path, T=T, B=B, I=I, H=H, side=side)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, load average before the run {os.getloadavg()[0]:.2f}"
    )


def format_table(rows: list[Row], memory: dict[tuple, tuple]) -> str:
    lines = [
        "| T, B, I, H | mode | torch.nn.GRU ms | fastgru ms | speed-up | peak train MB torch / fastgru | max rel err |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = ""
        if r.mode == "training" and (r.T, r.B, r.I, r.H) in memory:
            mt, mf = memory[(r.T, r.B, r.I, r.H)]
            mem = "n/a" if mt is None else f"{mt:.1f} / {mf:.1f}"
        lines.append(
            f"| {r.T}, {r.B}, {r.I}, {r.H} | {r.mode} | {r.torch_ms:.1f} | {r.fastgru_ms:.1f} | "
            f"{r.speedup:.2f}x | {mem} | {r.max_rel_err:.1e} |"
        )
    return "\n".join(lines)


def run(
    sizes: list[tuple[int, int, int, int]] = SIZES,
    reps: int = 7,
    output: str | Path | None = None,
    command: str = "python benchmarks/cpu.py",
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] = print,
) -> list[Row]:
    """Measure every size, print the table, and (if `output`) write it into that Markdown file's "cpu"
    section; with `out_dir`, also write table.md and bench.json (machine, command, rows) there."""
    from fastgru.backends import cpu as cpu_backend

    if not cpu_backend.is_available():
        progress(f"note: fused CPU extension unavailable ({cpu_backend.load_error()}); timing the torch loop")
    torch.manual_seed(0)
    header = machine_description()
    rows: list[Row] = []
    memory: dict[tuple, tuple] = {}
    for size in sizes:
        progress(f"measuring T={size[0]} B={size[1]} I={size[2]} H={size[3]} ...")
        rows += measure(*size, reps=reps)
        memory[size] = (peak_training_memory_mb(*size, "torch"), peak_training_memory_mb(*size, "fastgru"))
    table = format_table(rows, memory)
    progress(header)
    progress(table)
    if output is not None:
        body = (
            f"Machine: {header}.\n\nCommand: `{command}` (medians of {reps} interleaved runs; speed-up = "
            "torch time / fastgru time; memory = peak RSS added by one training step, measured in a fresh "
            "process after a warm-up step).\n\n"
            f"{table}\n\nRaw rows: `{json.dumps([asdict(r) for r in rows])}`\n"
        )
        replace_section(Path(output), "cpu", "## CPU: fastgru.nn.GRU vs torch.nn.GRU", body)
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic.write_text(out_dir / "table.md", f"Machine: {header}.\n\nCommand: `{command}`\n\n{table}\n")
        atomic.write_text(out_dir / "bench.json", json.dumps(
            {"machine": header, "command": command, "reps": reps, "rows": [asdict(r) for r in rows],
             "peak_training_memory_mb": [{"size": list(k), "torch": v[0], "fastgru": v[1]} for k, v in memory.items()]},
            indent=1))
    return rows


def add_parser(subparsers) -> argparse.ArgumentParser:
    """`fastgru bench`: the parity check and the CPU speed table against torch.nn.GRU."""
    p = subparsers.add_parser("bench", help="time fastgru.nn.GRU against torch.nn.GRU on this CPU")
    p.add_argument("--reps", type=int, default=5, help="timed runs per side (median reported; default 5)")
    p.add_argument("--quick", action="store_true", help="only the two smallest sizes")
    p.add_argument("--out", default=None, help="folder for table.md and bench.json (default fastgru-out/bench)")
    p.add_argument("--force", action="store_true", help="replace table.md / bench.json already in --out")
    p.add_argument("--output", default=None, help="also write the table into this Markdown file (a section)")
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> dict:
    if args.reps < 1:
        raise ValueError(f"--reps must be >= 1, got {args.reps}")
    out = check_outputs(args.out or default_out("bench"), ["table.md", "bench.json"], args.force)  # before any work
    sizes = [SIZES[0], SIZES[2]] if args.quick else SIZES
    command = "fastgru bench" + (" --quick" if args.quick else "") + f" --reps {args.reps}"
    rows = run(sizes, reps=args.reps, output=args.output, command=command, out_dir=out)
    print(f"wrote {out / 'table.md'} and {out / 'bench.json'}")
    return {"rows": [asdict(r) for r in rows], "out": str(out)}
