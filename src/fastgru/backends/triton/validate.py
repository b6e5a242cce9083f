"""One-call validation of the Triton backend on a GPU: correctness against cuDNN, speed, BENCHMARKS.md.

    python src/fastgru/backends/triton/validate.py    # on a fresh machine: installs what is missing first
    python -m fastgru.backends.triton.validate         # once fastgru[gpu] is installed (or PYTHONPATH=src)
        [--budget-min 8] [--output BENCHMARKS.md] [--cases 6] [--no-install]

Steps, in this order, within --budget-min minutes (the benchmark skips the sizes it has no time left for
and says so):
1. `selfcheck`: the backend contract in every mode (persistent with the grid barrier, step, gemm) against
   the float64 torch loop, with NaN-poisoned outputs and a bit-identical second run (see selfcheck.py).
2. fastgru.nn.GRU (Triton) against torch.nn.GRU (cuDNN) on the same weights and inputs, forward output,
   final state and every gradient, in fp32 with TF32 off, fp32 with TF32 on (cuDNN's default) and bf16.
   Both are compared with torch.nn.GRU in float64 on the CPU fed the same (rounded) values; fastgru
   passes when its error is within `TOLERANCE` or, for TF32 / bf16, no more than `WORSE_THAN_CUDNN` times
   cuDNN's own error.
3. `benchmarks/gpu.py` at the sizes of the GPU issue (fp32 and bf16, inference and training), which
   writes the 'gpu' section of the Markdown file.
4. The 'gpu-validate' section of the same file: device, versions, the command, every comparison.

Exit status: 0 if every check passed, 1 if one failed, 2 if it could not run (no CUDA device, ...).

The module imports only the standard library at the top so that, run by path on a machine that lacks
torch, Triton or fastgru itself, it can install them first (`pip install -e <repo>[gpu]`) and then run
itself again with the interpreter it was started with.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]  # the repository (src/fastgru/backends/triton/validate.py)
BENCHMARK = ROOT / "benchmarks" / "gpu.py"
NEEDED = ("torch", "triton", "fastgru")
PRECISIONS = ("fp32", "tf32", "bf16")
TOLERANCE = {"fp32": 1e-5, "tf32": 5e-3, "bf16": 2e-2}  # relative error vs float64 that always passes
WORSE_THAN_CUDNN = 3.0  # TF32 / bf16: fastgru may be at most this many times further from float64 than cuDNN
# (T, B, H) per comparison: small, medium and the large-batch path
SHAPES = ((37, 3, 40), (64, 16, 256), (24, 130, 1024))


# ---------------------------------------------------------------------------------------- bootstrapping


def missing_packages() -> list[str]:
    """Which of the modules the validation needs are not importable here."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def install_command(missing: list[str], root: Path = ROOT, python: str = sys.executable) -> list[str] | None:
    """The pip command that installs what is missing: the repository itself with its 'gpu' extra (which
    brings torch and Triton), or only Triton when fastgru and torch are already there."""
    if not missing:
        return None
    if "fastgru" in missing or "torch" in missing:
        if not (root / "pyproject.toml").is_file():
            raise RuntimeError(f"fastgru is not installed and {root} is not its repository: pip install 'fastgru[gpu]'")
        return [python, "-m", "pip", "install", "-e", f"{root}[gpu]"]
    return [python, "-m", "pip", "install", "triton>=3.0"]


def bootstrap(argv: list[str], install: bool) -> int | None:
    """Install what is missing and re-run as `python -m fastgru.backends.triton.validate` when the
    current process cannot import it (or TRITON_INTERPRET is set); None: carry on in this process."""
    missing = missing_packages()
    cmd = install_command(missing) if install else None
    if missing and not install:
        print(f"missing: {', '.join(missing)} (run without --no-install to install them)", file=sys.stderr)
        return 2
    if cmd:
        print("installing: " + shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    interp = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if cmd or interp or __package__ in (None, ""):
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        if "fastgru" in missing_packages():  # not installed (e.g. --no-install): use the repository's sources
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
        return subprocess.call([sys.executable, "-m", "fastgru.backends.triton.validate", *argv], env=env)
    return None


# -------------------------------------------------------------------------------------------- checks


@dataclass
class Comparison:
    """fastgru vs cuDNN at one shape and precision: each side's largest relative error against float64."""

    precision: str
    T: int
    B: int
    H: int
    reset_after: bool
    fastgru_err: float
    cudnn_err: float
    worst: str  # which output / gradient had fastgru's largest error
    passed: bool


def rel_err(got, want) -> float:
    """||got - want|| / ||want|| in float64 (norm-relative, so isolated rounding does not dominate)."""
    want = want.double().cpu()
    return ((got.double().cpu() - want).norm() / want.norm().clamp_min(1e-30)).item()


def passes(precision: str, fastgru_err: float, cudnn_err: float) -> bool:
    """fp32 (TF32 off): within TOLERANCE. TF32 / bf16: within TOLERANCE, or within WORSE_THAN_CUDNN times
    cuDNN's own error (both are rounded computations; the bound says fastgru is not markedly worse)."""
    if fastgru_err != fastgru_err:  # NaN
        return False
    if fastgru_err <= TOLERANCE[precision]:
        return True
    return precision != "fp32" and fastgru_err <= WORSE_THAN_CUDNN * cudnn_err


def _results(module, x, h0, g_out, g_h):
    """Output, final state and every gradient (input, h0, parameters) of one forward + backward."""
    x = x.detach().clone().requires_grad_(True)
    h0 = h0.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)  # a module compared before must not add its earlier gradients
    out, hn = module(x, h0)
    (out * g_out).sum().add_((hn * g_h).sum()).backward()
    names = ["output", "h_n", "grad input", "grad h0"] + [f"grad {n}" for n, _ in module.named_parameters()]
    values = [out, hn, x.grad, h0.grad] + [p.grad for _, p in module.named_parameters()]
    return dict(zip(names, [v.detach() for v in values]))


def compare(fast_module, ref_module, precision: str, T: int, B: int, H: int, device, seed: int,
            reset_after: bool = True) -> Comparison:
    """Run fast_module (fastgru) and ref_module (torch.nn.GRU, same weights) on one random problem in
    `precision` on `device`, and both against ref_module's float64 copy on the CPU."""
    import copy

    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(seed)
    x, h0 = torch.randn(T, B, H, generator=gen), torch.randn(1, B, H, generator=gen)
    g_out, g_h = torch.randn(T, B, H, generator=gen), torch.randn(1, B, H, generator=gen)
    # the float64 oracle sees the same rounded values
    x, h0, g_out, g_h = (t.to(dtype).to(device) for t in (x, h0, g_out, g_h))
    fast_module.load_state_dict(ref_module.state_dict())
    oracle = copy.deepcopy(ref_module).to("cpu", torch.float64)
    want = _results(oracle, *(t.cpu().double() for t in (x, h0, g_out, g_h)))
    got_fast = _results(fast_module, x, h0, g_out, g_h)
    got_ref = _results(ref_module, x, h0, g_out, g_h)
    errs_fast = {k: rel_err(got_fast[k], want[k]) for k in want}
    errs_ref = {k: rel_err(got_ref[k], want[k]) for k in want}
    worst = max(errs_fast, key=lambda k: (errs_fast[k] != errs_fast[k], errs_fast[k]))
    ok = all(passes(precision, errs_fast[k], errs_ref[k]) for k in want)
    return Comparison(precision, T, B, H, reset_after, errs_fast[worst], errs_ref[worst], worst, ok)


@dataclass
class _TF32:
    """Sets cuDNN's RNN TF32 switch for a block and restores it (both sides follow it)."""

    on: bool

    def __enter__(self):
        import torch

        cudnn = torch.backends.cudnn
        self.scope = getattr(cudnn, "rnn", None)
        if self.scope is not None and hasattr(self.scope, "fp32_precision"):
            self.old = self.scope.fp32_precision
            self.scope.fp32_precision = "tf32" if self.on else "ieee"
        else:
            self.scope = None
            self.old = cudnn.allow_tf32
            cudnn.allow_tf32 = self.on
        return self

    def __exit__(self, *exc):
        import torch

        if self.scope is not None:
            self.scope.fp32_precision = self.old
        else:
            torch.backends.cudnn.allow_tf32 = self.old


def compare_with_cudnn(device, seed: int = 0, shapes=SHAPES, precisions=PRECISIONS) -> list[Comparison]:
    """fastgru.nn.GRU (Triton backend) vs torch.nn.GRU (cuDNN) at `shapes` x `precisions`."""
    import torch

    import fastgru

    out = []
    for i, (T, B, H) in enumerate(shapes):
        for precision in precisions:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            torch.manual_seed(seed + i)
            ref = torch.nn.GRU(H, H, device=device, dtype=dtype)
            fast = fastgru.nn.GRU(H, H, device=device, dtype=dtype, backend="triton")
            with _TF32(precision == "tf32"):
                c = compare(fast, ref, precision, T, B, H, device, seed + 1000 * i)
            print(f"{'ok  ' if c.passed else 'FAIL'} {precision} T={T} B={B} H={H}: fastgru {c.fastgru_err:.1e}, "
                  f"cuDNN {c.cudnn_err:.1e} (worst: {c.worst})", flush=True)
            out.append(c)
    return out


# ------------------------------------------------------------------------------------------- report


def format_report(device_line: str, command: str, selfcheck_status: int | None, comparisons: list[Comparison],
                  bench_note: str, seconds: float) -> str:
    """Body of the 'gpu-validate' section of BENCHMARKS.md."""
    status = {None: "not run", 0: "passed", 1: "FAILED"}.get(selfcheck_status, f"could not run ({selfcheck_status})")
    lines = [
        f"Device: {device_line}.", "",
        f"Command: `{command}` ({seconds / 60:.1f} min in all). Relative errors are norm-relative against "
        "torch.nn.GRU in float64 on the CPU fed the same rounded inputs and weights, the largest over the "
        "output, the final state and every gradient; pass: fp32 (TF32 off) within "
        f"{TOLERANCE['fp32']:g}; TF32 / bf16 within {TOLERANCE['tf32']:g} / {TOLERANCE['bf16']:g} or within "
        f"{WORSE_THAN_CUDNN:g}x cuDNN's own error.", "",
        f"- Contract self-check (`python -m fastgru.backends.triton.selfcheck`; every mode, NaN-poisoned outputs, "
        f"repeat runs bit-identical): {status}.",
        f"- Benchmark: {bench_note}", "",
        "| precision | T, B, H | fastgru rel err | cuDNN rel err | worst | result |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(f"| {c.precision} | {c.T}, {c.B}, {c.H} | {c.fastgru_err:.1e} | {c.cudnn_err:.1e} | {c.worst} | "
                     f"{'pass' if c.passed else 'FAIL'} |")
    if not comparisons:
        lines.append("| - | - | - | - | - | not run |")
    return "\n".join(lines) + "\n"


def output_problem(path: Path) -> str | None:
    """Why the report could not be written to `path` (None: it can): its folder must exist and be writable,
    and an existing file must be a writable regular file."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return f"folder {folder} does not exist"
    if path.exists() and not path.is_file():
        return "not a regular file"
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def write_report(path: Path, body: str) -> None:
    from fastgru.io.markdown import replace_section

    replace_section(path, "gpu-validate", "## GPU: validation of the Triton backend against cuDNN", body)


def device_line() -> str:
    import torch
    import triton

    props = torch.cuda.get_device_properties(0)
    return (f"{props.name} ({props.multi_processor_count} SMs, sm_{props.major}{props.minor}), CUDA "
            f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, torch {torch.__version__}, "
            f"triton {triton.__version__}, Python {platform.python_version()}")


def _load_benchmark():
    path = BENCHMARK
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the validation from a copy of the repository")
    spec = importlib.util.spec_from_file_location("fastgru_bench_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_benchmark(output: Path, deadline: float, rounds: int = 2) -> str:
    """benchmarks/gpu.py at the GPU issue's sizes, one size at a time while time is left; returns a note."""
    bench = _load_benchmark()
    done, skipped = [], []
    rows: list[dict] = []
    for size in bench.GRID:
        if time.monotonic() > deadline:
            skipped.append(size)
            continue
        for dname in ("fp32", "bf16"):
            for mode in bench.MODES:
                rows.append(bench.measure(*size, dname, mode, rounds, 10, 50))
                print(json.dumps(rows[-1]), flush=True)
        done.append(size)
    if rows:
        bench.write_section(output, rows, bench.header(), f"python -m fastgru.backends.triton.validate "
                            f"(benchmarks/gpu.py's measure, rounds {rounds}, do_bench warm-up 10 ms, rep 50 ms)",
                            rounds)
    note = f"{len(done)} of {len(bench.GRID)} sizes of the GPU issue measured, written to the 'gpu' section"
    if skipped:
        note += f"; not measured for lack of time: {', '.join(','.join(map(str, s)) for s in skipped)}"
    return note + "."


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=8.0, help="time budget in minutes (default 8)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="Markdown file to update")
    parser.add_argument("--cases", type=int, default=6, help="selfcheck cases per mode (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-install", action="store_true", help="never pip-install missing packages")
    parser.add_argument("--no-bench", action="store_true", help="correctness only; BENCHMARKS.md's 'gpu' untouched")
    args = parser.parse_args(argv)
    if args.budget_min <= 0 or args.cases < 0:
        parser.error("--budget-min must be > 0 and --cases >= 0")
    problem = output_problem(Path(args.output))
    if problem:  # found now, not after minutes of GPU work
        parser.error(f"--output {args.output}: {problem}")
    if not args.no_bench and not BENCHMARK.is_file():
        parser.error(f"{BENCHMARK} not found: run from a copy of the repository, or pass --no-bench")
    rerun = bootstrap(argv, install=not args.no_install)
    if rerun is not None:
        return rerun
    return validate(args, argv)


def validate(args, argv: list[str]) -> int:
    """The steps of the module docstring (in a process where torch, Triton and fastgru import)."""
    import torch

    start = time.monotonic()
    deadline = start + 60 * args.budget_min
    if not torch.cuda.is_available():
        print("the GPU validation needs a CUDA device; torch.cuda.is_available() is False: nothing was run.",
              file=sys.stderr)
        return 2
    from fastgru.backends.triton import selfcheck

    status = selfcheck.main(["--cases", str(args.cases), "--seed", str(args.seed)]) if args.cases else None
    comparisons = compare_with_cudnn(torch.device("cuda"), args.seed)
    output = Path(args.output)
    bench_note = "not run (--no-bench)."
    if not args.no_bench:
        bench_note = run_benchmark(output, deadline - 60)  # keep a minute for the report
    seconds = time.monotonic() - start
    command = "python -m fastgru.backends.triton.validate " + shlex.join(argv)
    write_report(output, format_report(device_line(), command.strip(), status, comparisons, bench_note, seconds))
    ok = status in (None, 0) and all(c.passed for c in comparisons)
    print(json.dumps([asdict(c) for c in comparisons]))
    print(f"{'passed' if ok else 'FAILED'} in {seconds / 60:.1f} min; wrote {output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
