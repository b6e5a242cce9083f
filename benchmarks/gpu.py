"""GPU benchmark: fastgru.nn.GRU (Triton backend) vs torch.nn.GRU (cuDNN), written to BENCHMARKS.md.

Both sides run in one process on the same inputs and weights (I = H), alternating side by side for
--rounds rounds; each measurement is a `triton.testing.do_bench` median, the table reports the median
over rounds in microseconds per time step, the speed-up (cuDNN time / fastgru time, > 1 = fastgru
faster), TFLOP/s (the input and recurrent GEMMs; training counted as 3x the forward), peak GPU memory
of one call beyond what was allocated before it, and the largest relative difference from cuDNN
(outputs for inference, weight gradients for training). fp32 follows torch's TF32 switches on both
sides (cuDNN: on by default). The default sizes (`GRID`) are the GPU targets' shapes: batch 1-256,
hidden 128-1024. Writes section "gpu" of BENCHMARKS.md
(atomically; other sections untouched).

    python benchmarks/gpu.py [--dtypes fp32 bf16] [--modes inference training] [--rounds 2]
                             [--sizes 512,64,256 1000,1,128] [--output BENCHMARKS.md] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

GRID = [(512, 64, 256), (512, 64, 512), (512, 64, 1024), (512, 16, 512), (512, 4, 512), (1024, 1, 256),
        (1000, 1, 128), (512, 1, 1024), (256, 256, 1024)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("inference", "training")
ROOT = Path(__file__).resolve().parents[1]


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        T, B, H = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is T,B,H (three integers), got {text!r}") from None
    if min(T, B, H) < 1:
        raise argparse.ArgumentTypeError(f"T, B, H must be positive, got {text!r}")
    return T, B, H


def flops(T: int, B: int, H: int, training: bool) -> float:
    """Input + recurrent GEMMs of one layer with I = H; backward counted as twice the forward."""
    return 2.0 * T * B * H * 3 * H * 2 * (3 if training else 1)


def peak_mb(fn: Callable[[], object]) -> float:
    """GPU memory allocated by one call of fn beyond what was allocated before it, in MiB."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-12)).item()


def measure(T: int, B: int, H: int, dname: str, mode: str, rounds: int, warmup: int, rep: int) -> dict:
    """One row: both sides timed alternately, their memory and their difference."""
    from triton.testing import do_bench

    import fastgru

    dev = torch.device("cuda")
    dtype = DTYPES[dname]
    training = mode == "training"
    ref = torch.nn.GRU(H, H, device=dev, dtype=dtype)
    fast = fastgru.nn.GRU(H, H, device=dev, dtype=dtype)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, H, device=dev, dtype=dtype, requires_grad=training)
    h0 = torch.randn(1, B, H, device=dev, dtype=dtype)
    g = torch.randn(T, B, H, device=dev, dtype=dtype)

    def step(module: torch.nn.Module) -> Callable[[], object]:
        if training:
            def run():
                y, _ = module(x, h0)
                y.backward(g)
        else:
            def run():
                with torch.no_grad():
                    return module(x, h0)
        return run

    sides = {"cudnn": step(ref), "fastgru": step(fast)}
    for fn in sides.values():  # compile kernels, create .grad tensors
        fn()
    torch.cuda.synchronize()
    # difference from cuDNN: outputs (inference) or weight gradients of one fresh backward (training)
    if training:
        for m in (ref, fast):
            m.zero_grad(set_to_none=True)
            sides["cudnn" if m is ref else "fastgru"]()
        err = max(rel_err(pf.grad, pr.grad) for pf, pr in zip(fast.parameters(), ref.parameters()))
    else:
        err = rel_err(sides["fastgru"]()[0], sides["cudnn"]()[0])
    memory = {name: peak_mb(fn) for name, fn in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            times[name].append(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    ms = {name: statistics.median(v) for name, v in times.items()}
    work = flops(T, B, H, training)
    return dict(
        T=T, B=B, H=H, dtype=dname, mode=mode,
        cudnn_us_step=ms["cudnn"] * 1e3 / T, fastgru_us_step=ms["fastgru"] * 1e3 / T,
        speedup=ms["cudnn"] / ms["fastgru"],
        cudnn_tflops=work / ms["cudnn"] / 1e9, fastgru_tflops=work / ms["fastgru"] / 1e9,
        cudnn_peak_mb=memory["cudnn"], fastgru_peak_mb=memory["fastgru"], max_rel_err=err,
        path=triton_path(B, H, dtype),
    )


def triton_path(B: int, H: int, dtype: torch.dtype) -> str:
    """Which fastgru backend / Triton mode serves this size (for the table)."""
    from fastgru import backends

    impl = backends.select(torch.device("cuda"))
    name = impl.__name__.rsplit(".", 1)[-1]
    if name != "triton":
        return name
    p = impl.plan_for(B, H, dtype, torch.device("cuda"))
    return f"{p.mode} {p.n_h}x{p.n_b} bh{p.block_h} bb{p.block_b} {'resident' if p.resident else 'streamed'}"


def header() -> str:
    import triton

    props = torch.cuda.get_device_properties(0)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    from fastgru.backends.triton import allow_tf32

    return (
        f"{props.name} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB), "
        f"CUDA {torch.version.cuda}, cuDNN {cudnn}, torch {torch.__version__}, triton {triton.__version__}, "
        f"Python {platform.python_version()}; fp32 TF32 (cuDNN RNN switch) {'on' if allow_tf32() else 'off'}"
    )


def format_table(rows: list[dict]) -> str:
    lines = [
        "| T, B, H | dtype | mode | cuDNN us/step | fastgru us/step | speed-up | TFLOP/s cuDNN / fastgru "
        "| peak MB cuDNN / fastgru | max rel diff | fastgru path |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['T']}, {r['B']}, {r['H']} | {r['dtype']} | {r['mode']} | {r['cudnn_us_step']:.2f} | "
            f"{r['fastgru_us_step']:.2f} | {r['speedup']:.2f}x | {r['cudnn_tflops']:.2f} / {r['fastgru_tflops']:.2f} | "
            f"{r['cudnn_peak_mb']:.1f} / {r['fastgru_peak_mb']:.1f} | {r['max_rel_err']:.1e} | {r['path']} |"
        )
    return "\n".join(lines)


def write_section(output: Path, rows: list[dict], head: str, command: str, rounds: int) -> None:
    """Write the 'gpu' section of `output` (atomically; other sections untouched)."""
    from fastgru.io.markdown import replace_section

    body = (
        f"Device: {head}.\n\nCommand: `{command}` (triton.testing.do_bench medians, median of "
        f"{rounds} alternating rounds per side; us/step = time / T; speed-up = cuDNN time / fastgru "
        "time; peak MB = GPU memory one call allocates beyond what was allocated before it; max rel diff "
        "= largest |fastgru - cuDNN| / max |cuDNN| over outputs (inference) or weight gradients "
        "(training)).\n\n" + format_table(rows) + "\n"
    )
    replace_section(output, "gpu", "## GPU: fastgru.nn.GRU (Triton) vs torch.nn.GRU (cuDNN)", body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=GRID, metavar="T,B,H")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=2, help="alternating do_bench rounds per side (median)")
    parser.add_argument("--warmup", type=int, default=25, help="do_bench warm-up, ms")
    parser.add_argument("--rep", type=int, default=100, help="do_bench measuring time, ms")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--json", default=None, help="also write the raw rows to this JSON file")
    args = parser.parse_args(argv)
    for name in ("rounds", "warmup", "rep"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU and torch.cuda.is_available() is False here: nothing was "
              "measured and BENCHMARKS.md was not touched.", file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError:
        print("benchmarks/gpu.py needs Triton (pip install 'fastgru[gpu]'): nothing was measured.", file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("TRITON_INTERPRET is set: the kernels would run in the CPU interpreter; unset it.", file=sys.stderr)
        return 2
    command = "python benchmarks/gpu.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    head = header()
    print(head, flush=True)
    rows = []
    for T, B, H in args.sizes:
        for dname in args.dtypes:
            for mode in args.modes:
                row = measure(T, B, H, dname, mode, args.rounds, args.warmup, args.rep)
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = format_table(rows)
    print(table)
    if args.json:
        from fastgru.io.atomic import write_text

        write_text(Path(args.json), json.dumps(rows, indent=1))
    if not args.no_write:
        write_section(Path(args.output), rows, head, command.strip(), args.rounds)
        print(f"wrote section 'gpu' of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
