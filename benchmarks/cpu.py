"""CPU peers table: fastgru.nn.GRU vs torch.nn.GRU, torch.nn.LSTM and onnxruntime's GRU op, one process.

Grid: T in {1, 16, 64, 256}, B in {1, 8, 64}, H in {32, 128, 512}, I = H/2; inference (no_grad) and
training (forward + backward of sum(outputs)). Every round calls each side once on the same inputs and
weights (interleaved); tables give medians and ratio = peer time / fastgru time (above 1: fastgru is
faster). onnxruntime runs the graph fastgru.io.export.onnx writes, with intra-op threads = torch's.
Also the floor of one call (an empty custom op, an empty autograd Function, torch.nn.GRU at T=1) and
bf16 autocast (speed and max error against float32, beside torch.nn.GRU under the same autocast).

Run on a quiet machine (the output records the load):
    python benchmarks/cpu.py [--reps 9] [--output BENCHMARKS.md]
    python benchmarks/cpu.py --quick --output /path/x.md   (a smoke test: tiny grid, 2 rounds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from fastgru.apps import bench  # noqa: E402
from fastgru.apps.bench import machine_description  # noqa: E402
from fastgru.io.markdown import replace_section  # noqa: E402
from fastgru.nn import GRU  # noqa: E402

GRID = [(T, B, H // 2, H) for H in (32, 128, 512) for B in (1, 8, 64) for T in (1, 16, 64, 256)]
QUICK_GRID = [(T, B, H // 2, H) for H in (8, 16) for B in (1, 2) for T in (1, 3)]
FLOOR_SIZE = (1, 1, 16, 64)
BF16_SIZES = [(64, 8, 64, 128), (64, 64, 256, 512)]
QUICK_BF16_SIZES = [(3, 2, 8, 16)]
TARGET_SAMPLE_S = 2e-3  # each timed sample runs enough calls to last about this long


def timed_rounds(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median milliseconds per call of each function: `reps` rounds, each function once per round in turn,
    each sample `n` back-to-back calls (n from a warm-up, so a sample lasts about TARGET_SAMPLE_S)."""
    calls = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        calls[name] = max(1, int(TARGET_SAMPLE_S / max(time.perf_counter() - t0, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            n = calls[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def _train(module: torch.nn.Module, x: torch.Tensor):
    def step():
        module.zero_grad(set_to_none=True)
        out, state = module(x)
        loss = out.sum()
        loss.backward()
    return step


def _ort_session(model: GRU, workdir: Path):
    try:
        import onnxruntime as ort

        from fastgru import export
    except ImportError:
        return None
    path = export.onnx(model, workdir / f"gru_{id(model)}.onnx", overwrite=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # onnxruntime's pool spins after each run by default, holding a core the interleaved torch calls that
    # follow need (their OpenMP threads then wait for it): with spinning the other sides measured 2-6x slower
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def measure_point(T: int, B: int, I: int, H: int, reps: int, workdir: Path) -> list[dict]:
    torch.manual_seed(T * 1000 + B * 10 + H)
    ref = torch.nn.GRU(I, H)
    fast = GRU(I, H)
    fast.load_state_dict(ref.state_dict())
    lstm = torch.nn.LSTM(I, H)
    x = torch.randn(T, B, I)
    ort_run = _ort_session(fast, workdir)
    x_np = x.numpy()
    with torch.no_grad():
        err = (fast(x)[0] - ref(x)[0]).abs().max().item()
        sides = {"fastgru": lambda: fast(x), "torch.nn.GRU": lambda: ref(x), "torch.nn.LSTM": lambda: lstm(x)}
        if ort_run is not None:
            sides["onnxruntime GRU"] = lambda: ort_run(x_np)
        inference = timed_rounds(sides, reps)
    training = timed_rounds({"fastgru": _train(fast, x), "torch.nn.GRU": _train(ref, x),
                             "torch.nn.LSTM": _train(lstm, x)}, reps)
    return [{"T": T, "B": B, "I": I, "H": H, "mode": "inference", "ms": inference, "max_abs_err": err},
            {"T": T, "B": B, "I": I, "H": H, "mode": "training", "ms": training}]


PEERS = ("torch.nn.GRU", "torch.nn.LSTM", "onnxruntime GRU")


def peers_table(rows: list[dict]) -> str:
    lines = ["| T, B, I, H | mode | fastgru ms | " + " | ".join(f"{p} ms (ratio)" for p in PEERS) + " |",
             "|---|---|---|" + "---|" * len(PEERS)]
    for r in rows:
        ms = r["ms"]
        cells = [f"{ms[p]:.3f} ({ms[p] / ms['fastgru']:.2f}x)" if p in ms else "-" for p in PEERS]
        lines.append(f"| {r['T']}, {r['B']}, {r['I']}, {r['H']} | {r['mode']} | {ms['fastgru']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_summary(rows: list[dict]) -> str:
    """Lowest and median ratio per peer and mode (the targets: >= 1.2x LSTM, >= 1.0x GRU and onnxruntime)."""
    lines = ["| peer | mode | min ratio | median ratio | points below 1.0x |", "|---|---|---|---|---|"]
    for peer in PEERS:
        for mode in ("inference", "training"):
            ratios = [r["ms"][peer] / r["ms"]["fastgru"] for r in rows if r["mode"] == mode and peer in r["ms"]]
            if ratios:
                lines.append(f"| {peer} | {mode} | {min(ratios):.2f}x | {statistics.median(ratios):.2f}x | "
                             f"{sum(q < 1.0 for q in ratios)} of {len(ratios)} |")
    return "\n".join(lines)


def floor_table(reps: int) -> tuple[str, dict]:
    """Microseconds of the least a call can cost beside fastgru's and torch.nn.GRU's T=1 calls."""
    @torch.library.custom_op("fastgru_bench::noop", mutates_args=())
    def noop(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(0)

    noop.register_fake(lambda x: x.new_empty(0))
    noop.register_autograd(lambda ctx, g: None, setup_context=lambda ctx, inputs, output: None)

    class Empty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.new_empty(0)

        @staticmethod
        def backward(ctx, g):
            return None

    T, B, I, H = FLOOR_SIZE
    ref = torch.nn.GRU(I, H)
    fast = GRU(I, H)
    fast.load_state_dict(ref.state_dict())
    x, xg = torch.randn(T, B, I), torch.randn(4, requires_grad=True)
    with torch.no_grad():
        nograd = timed_rounds({"empty custom op (no grad)": lambda: noop(xg),
                               "empty autograd Function (no grad)": lambda: Empty.apply(xg),
                               f"torch.nn.GRU T={T} B={B} I={I} H={H} inference": lambda: ref(x),
                               f"fastgru T={T} B={B} I={I} H={H} inference": lambda: fast(x)}, reps)
    grad = timed_rounds({"empty custom op (grad)": lambda: noop(xg),
                         "empty autograd Function (grad)": lambda: Empty.apply(xg),
                         f"torch.nn.GRU T={T} B={B} I={I} H={H} training step": _train(ref, x),
                         f"fastgru T={T} B={B} I={I} H={H} training step": _train(fast, x)}, reps)
    times = {**nograd, **grad}
    lines = ["| call | us |", "|---|---|"] + [f"| {name} | {ms * 1e3:.1f} |" for name, ms in times.items()]
    return "\n".join(lines), times


def _bf16_point(T: int, B: int, I: int, H: int, reps: int) -> dict:
    torch.manual_seed(H)
    ref = torch.nn.GRU(I, H)
    fast = GRU(I, H)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)

    def under_autocast(m):
        def call():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return m(x)
        return call

    with torch.no_grad():
        y32 = ref(x)[0]
        err_fast = (under_autocast(fast)()[0].float() - y32).abs().max().item()
        err_ref = (under_autocast(ref)()[0].float() - y32).abs().max().item()
        ms = timed_rounds({"fastgru fp32": lambda: fast(x), "fastgru bf16": under_autocast(fast),
                           "torch.nn.GRU fp32": lambda: ref(x), "torch.nn.GRU bf16": under_autocast(ref)}, reps)
    return {"T": T, "B": B, "I": I, "H": H, "ms": ms, "err_fastgru": err_fast, "err_torch": err_ref}


def bf16_table(sizes, reps: int) -> tuple[str, list[dict]]:
    """Inference under torch.autocast('cpu', bfloat16) against float32, fastgru beside torch.nn.GRU."""
    rows = [_bf16_point(*size, reps=reps) for size in sizes]
    lines = ["| T, B, I, H | fastgru fp32 ms | fastgru bf16 ms (speed-up) | max abs err fastgru bf16 | "
             "torch.nn.GRU fp32 ms | torch.nn.GRU bf16 ms | max abs err torch bf16 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = r["ms"]
        lines.append(f"| {r['T']}, {r['B']}, {r['I']}, {r['H']} | {ms['fastgru fp32']:.3f} | "
                     f"{ms['fastgru bf16']:.3f} ({ms['fastgru fp32'] / ms['fastgru bf16']:.2f}x) | "
                     f"{r['err_fastgru']:.1e} | {ms['torch.nn.GRU fp32']:.3f} | {ms['torch.nn.GRU bf16']:.3f} | "
                     f"{r['err_torch']:.1e} |")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="interleaved rounds per point (median reported)")
    parser.add_argument("--quick", action="store_true", help="smoke test: a tiny grid, 2 rounds")
    parser.add_argument("--output", default=None,
                        help="Markdown file to write the tables into (default BENCHMARKS.md; none with --quick)")
    parser.add_argument("--json", default=None, help="also write the raw numbers to this JSON file")
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps
    grid = QUICK_GRID if args.quick else GRID
    output = args.output or (None if args.quick else str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    command = "python benchmarks/cpu.py" + (" --quick" if args.quick else f" --reps {reps}")
    header = machine_description()
    print(header, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for point in grid:
            print(f"T={point[0]} B={point[1]} I={point[2]} H={point[3]} ...", flush=True)
            rows += measure_point(*point, reps=reps, workdir=Path(workdir))
    floor, floor_times = floor_table(max(reps, 5))
    bf16, bf16_rows = bf16_table(QUICK_BF16_SIZES if args.quick else BF16_SIZES, reps)
    load_after = f"{os.getloadavg()[0]:.2f}"
    versions = _versions()
    intro = (f"Machine: {header}; load average after the run {load_after}. {versions}\n\n"
             f"Command: `{command}` (medians of {reps} interleaved rounds; ratio = peer time / fastgru time, "
             "above 1 means fastgru is faster).\n\n")
    peers = peers_table(rows)
    summary = ratio_summary(rows)
    print(peers, summary, floor, bf16, sep="\n\n")
    if output:
        replace_section(Path(output), "cpu-peers", "## CPU peers: fastgru vs torch.nn.GRU, torch.nn.LSTM, onnxruntime",
                        intro + summary + "\n\n" + peers)
        replace_section(Path(output), "cpu-floor", "## CPU: the floor of one call",
                        intro + "Microseconds per call.\n\n" + floor)
        replace_section(Path(output), "cpu-bf16", "## CPU: bf16 autocast (inference)",
                        intro + "Errors are against torch.nn.GRU in float32 on the same weights.\n\n" + bf16)
    result = {"machine": header, "load_after": load_after, "versions": versions, "command": command,
              "rows": rows, "floor_ms": floor_times, "bf16": bf16_rows}
    if output and not args.quick:  # the four sizes of the core issue against torch.nn.GRU, with memory
        bench.run(reps=reps, output=output, command=command)
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    return result


def _versions() -> str:
    parts = [f"torch {torch.__version__}"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        parts.append("onnxruntime not installed (its column is empty)")
    return ", ".join(parts) + f", {torch.get_num_threads()} threads."


if __name__ == "__main__":
    main()
