"""Ahead-of-time compile check of the Triton kernels for real GPUs, on a machine without one.

    python -m fastgru.backends.triton.aot [--quick | --grid | --full] [--arch sm_80 sm_90] [--jobs 2] [--json out.json]
                                          [--write-table BENCHMARKS.md]

Triton's interpreter (how the tests run the kernels on a CPU) never runs the real compiler, so it cannot
see compile errors, `tl.dot` shape / dtype rules, failed layout conversions, shared-memory overflow or
register spills. This module compiles the kernels with Triton's real CUDA pipeline (TTIR, TTGIR, LLVM IR,
PTX, then the bundled ptxas to a cubin) for sm_80 (A100) and sm_90 (H100 / H200) with no GPU present:
a stand-in driver reports the target architecture, and every kernel launch of `launch.forward` /
`launch.backward` (and the MinGRU scan) is turned into a compile-only warm-up with CPU tensors standing
in for device tensors, so exactly the kernels, constexprs and launch grids a GPU run would use are
compiled, from the plan `heuristics.make_plan` returns for that architecture.

Per compiled kernel it records registers, spill stores / loads, stack frame (ptxas -v), shared memory
(Triton's allocation plus any static), warps and grid, and checks them against the architecture
(`ARCHS`): shared memory per block, 65,536 registers per SM, 1,024 threads per block, at least one block
per SM, and for the persistent kernels that the grid is co-resident on the SM count the plan assumed
and that the step loop does not spill (unless `SPILL_EXCEPTIONS` documents why a spill is acceptable).
Any compile error or exceeded limit makes the exit status 1.

What is compiled (`cases`):
- default (CI): every kernel variant at least once at the largest tiles of the shape grid: each mode
  (persistent with W_hh resident and streamed, tl.dot and the broadcast product; step; gemm), both
  reset variants, fp32 with and without TF32, bf16 and fp16, with and without lengths, inference
  (no saved gates) and training, no bias, each cell option (recurrent dropout, zoneout keep-mask and
  eval probability, every activation), the recurrent layer norm, and the MinGRU scan in each dtype;
- --grid: additionally the plan make_plan returns at every point B in {1, 4, 16, 64, 256} x H in {64, ...,
  2048} x the four precisions x both reset variants (with lengths), and the layer norm's for H <= 512;
- --full: --grid, then every other mode each point allows (forced, as FASTGRU_TRITON_MODE does);
- --quick: each mode and product path once, a cell-option case, the layer norm and the scan (the tests').
Compiled artefacts go to Triton's own cache (TRITON_CACHE_DIR, ~/.triton/cache by default), so a second
run only re-reads them; the ptxas figures are cached beside them.

The kernels must not have been built for the interpreter: run this in a process without
TRITON_INTERPRET (under TRITON_INTERPRET=1, `main` re-runs itself in a clean subprocess).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from fastgru.backends.triton import heuristics

B_GRID = (1, 4, 16, 64, 256)
H_GRID = (64, 128, 256, 512, 1024, 2048)
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # fp32 = TF32 off (exact), tf32 = cuDNN's default switch on
SCAN_DTYPES = ("fp32", "bf16", "fp16", "fp64")
MODES = heuristics.MODES
T_AOT = 2  # sequence length of the stand-in launches (T is a runtime argument, never specialised)


@dataclass(frozen=True)
class Arch:
    """Hardware limits of one GPU generation (CUDA's published per-architecture figures)."""

    name: str  # sm_80
    capability: int  # 80
    gpus: str
    n_sm: int  # SM count the plans are made for
    smem_per_block: int  # largest dynamic shared memory one block may opt in to (bytes)
    smem_per_sm: int  # shared memory of one SM (each resident block also reserves 1 KB)
    regs_per_sm: int = 65536
    max_threads_per_block: int = 1024
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    max_regs_per_thread: int = 255


# A100: 164 KB of shared memory per SM, of which one block may use 163 KB (166,912 B); H100 / H200:
# 228 KB per SM, 227 KB (232,448 B) per block.
ARCHS = {
    "sm_80": Arch("sm_80", 80, "A100", 108, 166_912, 167_936),
    "sm_90": Arch("sm_90", 90, "H100/H200", 132, 232_448, 233_472),
}



@dataclass(frozen=True)
class SpillAllowance:
    """Spills accepted in the persistent step loops of one kind of case, up to a bound, and why."""

    max_bytes: int  # largest spill store or load per thread accepted (a larger one is still a failure)
    reason: str


# Spills accepted in a persistent kernel, by the case's options (Case.options; "any": every case). A spill
# over the bound that applies is a failure.
SPILL_EXCEPTIONS: dict[str, SpillAllowance] = {
    "any": SpillAllowance(
        64,
        "up to 16 values per thread (of 255 registers) spilled: ptxas keeps a few values that live across the "
        "grid barrier in L1-backed local memory; over the grid (--grid) 12-32 B at fp32 plans streaming 16-wide "
        "chunks and 20 B at a bf16 broadcast plan (B=1, H=128). That is at most 16 extra L1 accesses per thread "
        "and step beside the step's global loads of the state (BLOCK_B x H values), so not worth a smaller tile "
        "(whose cost is more programs at the barrier). Unmeasured (no GPU).",
    ),
    "ln": SpillAllowance(
        2048,
        "the recurrent layer norm reduces over whole rows, so one program holds all H units of its rows "
        "(BLOCK_H = H, BLOCK_B >= 16 for tl.dot): the three recurrent products, their normalised values, "
        "the input gates and the state of whole rows are live across two row reductions each step. ptxas "
        "spills up to 1,856 B per thread in the layer-norm plans of the grid (the most at H = 512) on both "
        "architectures; smaller tiles are not possible (a program must own whole rows, tl.dot needs 16 "
        "rows). The spills go to L1-backed local memory; the alternative at these sizes is the per-step "
        "torch loop. Whether the fused kernel is still the faster one is unmeasured (no GPU).",
    ),
}

PERSISTENT_KERNELS = ("fwd_persistent_kernel", "bwd_persistent_kernel")


@dataclass(frozen=True)
class Case:
    """One problem whose kernels are compiled: a GRU forward + backward (kind 'gru') or a scan."""

    arch: str
    kind: str = "gru"  # gru | scan
    B: int = 1
    H: int = 64
    precision: str = "fp32"  # PRECISIONS (scan: SCAN_DTYPES)
    reset_after: bool = True
    lengths: bool = True
    bias: bool = True
    save: bool = True  # training (gates saved, backward compiled) vs inference (forward only)
    options: str = "plain"  # plain | cell | cell-eval | cell-act | cell-act2 | ln
    mode: str | None = None  # forced mode (None: make_plan's choice)
    overrides: tuple[tuple[str, object], ...] = ()  # Plan fields forced (the limit test's over-limit plan)

    def label(self) -> str:
        if self.kind == "scan":
            return f"scan {self.precision}"
        bits = [f"B={self.B}", f"H={self.H}", self.precision, "ra" if self.reset_after else "rb"]
        bits += [] if self.lengths else ["nolen"]
        bits += [] if self.bias else ["nobias"]
        bits += [] if self.save else ["infer"]
        bits += [] if self.options == "plain" else [self.options]
        bits += [f"mode={self.mode}"] if self.mode else []
        bits += [f"{k}={v}" for k, v in self.overrides]
        return " ".join(bits)


@dataclass
class KernelRecord:
    """Resources of one compiled kernel and the limits it breaks (empty: fits)."""

    kernel: str
    arch: str
    case: str
    plan: str
    grid: tuple[int, ...]
    num_warps: int
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    shared: int
    occupancy: int  # blocks per SM the resources allow
    hash: str = ""
    options: str = "plain"  # Case.options of the case that built it
    smem_estimate: int = 0  # heuristics.smem_estimate of the plan (0: no plan, the scan)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # accepted exceptions

    @property
    def threads(self) -> int:
        return 32 * self.num_warps


# ------------------------------------------------------------------------------------------------ checks


def occupancy(arch: Arch, registers: int, num_warps: int, shared: int) -> int:
    """Blocks of this kernel one SM can hold: registers (allocated per warp in units of 256), shared
    memory (plus 1 KB reserved per block), threads and the block-count limit."""
    threads = 32 * num_warps
    regs_per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_regs = (arch.regs_per_sm // regs_per_warp) // num_warps
    by_smem = arch.smem_per_sm // (shared + 1024) if shared else arch.max_blocks_per_sm
    by_threads = arch.max_threads_per_sm // threads
    return max(0, min(by_regs, by_smem, by_threads, arch.max_blocks_per_sm))


def check(rec: KernelRecord, arch: Arch, n_sm: int | None = None) -> list[str]:
    """The limits `rec` breaks on `arch` (n_sm: SMs the plan assumed; default the arch's); accepted spills
    are noted in rec.notes."""
    n_sm = arch.n_sm if n_sm is None else n_sm
    problems = []
    if rec.shared > arch.smem_per_block:
        problems.append(f"shared memory {rec.shared} B > {arch.smem_per_block} B per block on {arch.name}")
    if rec.threads > arch.max_threads_per_block:
        problems.append(f"{rec.threads} threads > {arch.max_threads_per_block} per block")
    if rec.registers > arch.max_regs_per_thread:
        problems.append(f"{rec.registers} registers per thread > {arch.max_regs_per_thread}")
    if rec.registers * rec.threads > arch.regs_per_sm:
        problems.append(f"{rec.registers} registers x {rec.threads} threads > {arch.regs_per_sm} per SM")
    if rec.occupancy < 1:
        problems.append("not even one block fits on an SM")
    if rec.kernel in PERSISTENT_KERNELS:
        programs = 1
        for g in rec.grid:
            programs *= g
        if programs > n_sm * max(rec.occupancy, 0):
            problems.append(f"persistent grid of {programs} programs is not co-resident on {n_sm} SMs "
                            f"({rec.occupancy} block(s) per SM)")
        if rec.spill_stores or rec.spill_loads:
            key = max((k for k in (rec.options, "any") if k in SPILL_EXCEPTIONS),
                      key=lambda k: SPILL_EXCEPTIONS[k].max_bytes, default=None)
            spilled = f"{rec.spill_stores} B stored, {rec.spill_loads} B loaded"
            if key is not None and max(rec.spill_stores, rec.spill_loads) <= SPILL_EXCEPTIONS[key].max_bytes:
                rec.notes.append(f"spill accepted ({spilled}; SPILL_EXCEPTIONS[{key!r}])")
            else:
                bound = f", over the {SPILL_EXCEPTIONS[key].max_bytes} B accepted for {key!r}" if key else ""
                problems.append(f"the persistent step loop spills ({spilled}{bound})")
    if rec.smem_estimate and rec.shared > rec.smem_estimate:
        problems.append(f"shared memory {rec.shared} B > the heuristics' estimate {rec.smem_estimate} B "
                        "(the plan's fit is decided from the estimate)")
    return problems


_PTXAS_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas(log: str) -> dict[str, int]:
    """registers, spill_stores, spill_loads, stack, static_smem of the (single) entry in a ptxas -v log."""
    props = _PTXAS_PROPS.search(log)
    regs = _PTXAS_REGS.search(log)
    if props is None or regs is None:
        raise ValueError(f"unexpected ptxas -v output:\n{log}")
    return dict(stack=int(props.group(1)), spill_stores=int(props.group(2)), spill_loads=int(props.group(3)),
                registers=int(regs.group(1)), static_smem=int(regs.group(2) or 0))


# --------------------------------------------------------------------------------------------- compiling


class _TargetDriver:
    """Stand-in for Triton's CUDA driver: reports a target architecture and never touches a GPU.

    JITFunction keeps one binder per 'device', so each architecture gets its own device id."""

    def __init__(self, capability: int) -> None:
        self.capability = capability

    def get_current_device(self) -> int:
        return self.capability

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", self.capability, 32)

    def get_active_torch_device(self):
        import torch

        return torch.device("cpu")

    def get_device_interface(self):
        import torch

        return torch.cuda


def _ptxas_cache_path() -> Path:
    import triton

    return Path(triton.knobs.cache.dir) / "fastgru-aot-ptxas.json"


class _Compiler:
    """Compiles recorded launches for one architecture and measures them with ptxas -v."""

    def __init__(self, arch: Arch) -> None:
        import triton

        self.arch = arch
        self.triton = triton
        self.fresh = 0  # kernels compiled now (the rest came from Triton's cache)
        self.cache_path = _ptxas_cache_path()
        try:
            self.ptxas_cache = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            self.ptxas_cache = {}
        self.dirty = False

    def warmup(self, fn, grid, args, kwargs):
        """Compile `fn` for this architecture as a launch with these arguments would; (kernel, ptxas log)."""
        knobs = self.triton.knobs
        old = knobs.nvidia.dump_ptxas_log
        knobs.nvidia.dump_ptxas_log = True
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                kernel = fn.warmup(*args, grid=grid, **kwargs)
        finally:
            knobs.nvidia.dump_ptxas_log = old
        return kernel, out.getvalue()

    def resources(self, kernel, log: str) -> dict[str, int]:
        key = f"{self.arch.name}:{kernel.metadata.hash}"
        if "Used " in log:  # compiled just now: Triton's own ptxas run printed its -v log
            self.fresh += 1
            res = parse_ptxas(log)
        elif key in self.ptxas_cache:
            res = self.ptxas_cache[key]
        else:  # from Triton's cache, without our figures: run ptxas -v on its PTX
            res = parse_ptxas(self._run_ptxas(kernel.asm["ptx"]))
        if self.ptxas_cache.get(key) != res:
            self.ptxas_cache[key] = res
            self.dirty = True
        return res

    def _run_ptxas(self, ptx: str) -> str:
        import tempfile

        from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

        ptxas = get_ptxas(self.arch.capability).path
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "k.ptx"
            src.write_text(ptx)
            run = subprocess.run([ptxas, "-v", "--regAllocOptLevel=2",
                                  f"--gpu-name={sm_arch_from_capability(self.arch.capability)}", str(src),
                                  "-o", str(Path(tmp) / "k.o")], capture_output=True, text=True, check=True)
        return run.stderr + run.stdout

    def save(self) -> None:
        if self.dirty:
            from fastgru.io.atomic import write_text

            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.cache_path, json.dumps(self.ptxas_cache, sort_keys=True))
            self.dirty = False


def _plan_key(plan) -> str:
    return (f"{plan.mode} bb={plan.block_b} bh={plan.block_h} hp={plan.h_pad} bk={plan.block_k} "
            f"{'res' if plan.resident else 'str'} {'dot' if plan.use_dot else 'bc'} w={plan.num_warps} "
            f"s={plan.num_stages} "
            f"grid={plan.n_h}x{plan.n_b}")


class _Recorder:
    """Stands in for a JITFunction in `kernels` / `triton_scan`: `[grid](...)` compiles instead of launching."""

    def __init__(self, fn, compiler: _Compiler, sink: list) -> None:
        self.fn = fn
        self.compiler = compiler
        self.sink = sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            kernel, log = self.compiler.warmup(self.fn, grid, args, kwargs)
            self.sink.append((self.fn.__name__, tuple(grid), kernel, log))

        return launch


@contextlib.contextmanager
def _recording(compiler: _Compiler, sink: list) -> Iterator[None]:
    """Install the target driver and the recorders; launch's device check accepts the CPU stand-ins."""
    from triton.runtime import driver

    from fastgru.backends.triton import kernels as K
    from fastgru.backends.triton import launch
    from fastgru.mingru import triton_scan

    if K.INTERPRETED or triton_scan.INTERPRETED:
        raise RuntimeError("the kernels were built for Triton's interpreter (TRITON_INTERPRET is set): "
                           "run the AOT check in a process without it")
    saved = {(K, n): getattr(K, n) for n in ("fwd_persistent_kernel", "fwd_step_kernel", "bwd_persistent_kernel",
                                              "bwd_step_kernel")}
    saved[(triton_scan, "_scan_kernel")] = triton_scan._scan_kernel
    saved[(launch, "_check_device")] = launch._check_device
    saved[(launch, "allow_tf32")] = launch.allow_tf32
    previous = driver._active  # None on a machine without a GPU: reset_active() would then raise
    driver.set_active(_TargetDriver(compiler.arch.capability))
    try:
        for (mod, name), fn in saved.items():
            if name not in ("_check_device", "allow_tf32"):
                setattr(mod, name, _Recorder(fn, compiler, sink))
        launch._check_device = lambda device: None
        yield
    finally:
        for (mod, name), fn in saved.items():
            setattr(mod, name, fn)
        driver._active = previous


def _torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
            "fp64": torch.float64}[precision]


def plan_of(case: Case):
    """The plan make_plan returns for `case` on its architecture (as `launch.plan_for` would there)."""
    import torch

    arch = ARCHS[case.arch]
    elem = torch.empty((), dtype=_torch_dtype(case.precision)).element_size()
    return heuristics.make_plan(case.B, case.H, elem, arch.n_sm, False, tf32=case.precision == "tf32",
                                layer_norm=case.options == "ln", capability=arch.capability,
                                smem_per_block=arch.smem_per_block, cell_options=case.options.startswith("cell"),
                                **({"mode": case.mode} if case.mode else {}),
                                **dict(case.overrides))


def _cell_options(case: Case, T: int, dtype) -> dict:
    import torch

    from fastgru.backends import CellSpec

    B, H = case.B, case.H
    if case.options in ("plain", "ln"):
        opts = {}
    elif case.options == "cell":  # recurrent dropout, zoneout keep-mask, hard_sigmoid gates, relu candidate
        opts = dict(rec_mask=torch.rand(B, H).to(dtype), zone_mask=torch.rand(T, B, H) < 0.3,
                    spec=CellSpec("hard_sigmoid", "relu"))
    elif case.options == "cell-eval":  # eval-mode zoneout probability, softsign candidate
        opts = dict(spec=CellSpec("sigmoid", "softsign", zoneout=0.3))
    elif case.options == "cell-act":
        opts = dict(spec=CellSpec("sigmoid", "hard_sigmoid"))
    elif case.options == "cell-act2":
        opts = dict(spec=CellSpec("hard_sigmoid", "sigmoid"))
    else:
        raise ValueError(f"unknown options {case.options!r}")
    if case.options == "ln":
        opts["ln_gain"] = torch.rand(3 * H).to(dtype) + 0.5
    return opts


def _run_case(case: Case, compiler: _Compiler, sink: list):
    """Run the case's launches (compiling each kernel); returns the plan (None for the scan)."""
    import torch

    from fastgru.backends.triton import launch
    from fastgru.mingru import triton_scan

    dtype = _torch_dtype(case.precision)
    T = T_AOT
    if case.kind == "scan":
        D = 4096
        a, b, h0 = torch.rand(T, D).to(dtype), torch.randn(T, D).to(dtype), torch.zeros(D, dtype=dtype)
        for reverse in (False, True):
            triton_scan._launch(a, b, h0, reverse, triton_scan.BLOCK_T, triton_scan.BLOCK_D)
        return None
    plan = plan_of(case)
    B, H = case.B, case.H
    gi, h0 = torch.randn(T, B, 3 * H).to(dtype), torch.randn(B, H).to(dtype)
    w, bias = (torch.randn(3 * H, H) / H**0.5).to(dtype), torch.randn(3 * H).to(dtype) if case.bias else None
    L = torch.full((B,), T, dtype=torch.int64) if case.lengths else None
    opts = _cell_options(case, T, dtype)
    launch.allow_tf32 = lambda: case.precision == "tf32"
    buf, gates = launch.forward(gi, h0, w, bias, L, case.reset_after, False, case.save, plan, **opts)
    if case.save:
        launch.backward(torch.randn_like(buf), buf, gates, w, L, case.reset_after, False, plan, **opts)
    return plan


def _smem_bound(plan, case: Case) -> int:
    """heuristics.smem_estimate of the plan: it must bound what the compiler allocates (the plan's fit
    in shared memory is decided from it)."""
    elem = 2 if case.precision in ("bf16", "fp16") else 4
    return heuristics.smem_estimate(plan.block_b, plan.block_h, plan.h_pad, plan.block_k, plan.resident,
                                    plan.use_dot, elem, plan.num_stages)


def compile_case(case: Case, compiler: _Compiler) -> tuple[list[KernelRecord], str | None]:
    """Compile every kernel `case` launches; (records, error message or None)."""
    arch = ARCHS[case.arch]
    sink: list = []
    try:
        with _recording(compiler, sink):
            plan = _run_case(case, compiler, sink)
    except Exception as exc:  # a compile error (or a plan the heuristics refuse): reported, not raised
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        # a CompilationError reads "at L:C:", the source, then the compiler's message: keep both ends
        msg = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
        return [], f"{case.arch} {case.label()}: {type(exc).__name__}: {msg}"[:600]
    records, seen = [], set()
    for name, grid, kernel, log in sink:
        if kernel.metadata.hash in seen:
            continue
        seen.add(kernel.metadata.hash)
        res = compiler.resources(kernel, log)
        shared = int(kernel.metadata.shared) + res["static_smem"]
        warps = int(kernel.metadata.num_warps)
        rec = KernelRecord(name, arch.name, case.label(), _plan_key(plan) if plan else "scan", grid, warps,
                           res["registers"], res["spill_stores"], res["spill_loads"], res["stack"], shared,
                           occupancy(arch, res["registers"], warps, shared), kernel.metadata.hash,
                           case.options, _smem_bound(plan, case) if plan is not None else 0)
        rec.problems = check(rec, arch)
        records.append(rec)
    return records, None


# ------------------------------------------------------------------------------------------------- cases


def _grid_plans(arch: str, layer_norm: bool = False) -> list[tuple[Case, object]]:
    out = []
    for B in B_GRID:
        for H in H_GRID:
            if layer_norm and not heuristics.supports_layer_norm(H):
                continue
            for p in PRECISIONS:
                case = Case(arch, B=B, H=H, precision=p, options="ln" if layer_norm else "plain")
                out.append((case, plan_of(case)))
    return out


def _largest(pairs, pred) -> Case | None:
    """The case whose plan satisfies pred with the largest on-chip tiles (W slice + state tile)."""
    def size(pair):
        case, p = pair
        elem = 4 if case.precision in ("fp32", "tf32") else 2
        w = 3 * p.block_h * (p.h_pad if p.resident else p.block_k) * elem
        return (w + 4 * p.block_b * p.h_pad, p.block_b * p.block_h)

    chosen = [pair for pair in pairs if pred(pair[1])]
    return max(chosen, key=size)[0] if chosen else None


def subset_cases(arch: str) -> list[Case]:
    """Every kernel variant at least once, at the largest tiles make_plan returns over the grid."""
    pairs = _grid_plans(arch)
    cases: list[Case] = []
    persistent_res = _largest(pairs, lambda p: p.mode == "persistent" and p.resident and p.use_dot)
    persistent_str = _largest(pairs, lambda p: p.mode == "persistent" and not p.resident)
    persistent_bc = _largest(pairs, lambda p: p.mode == "persistent" and not p.use_dot)
    step = _largest(pairs, lambda p: p.mode == "step")
    gemm = _largest(pairs, lambda p: p.mode == "gemm")
    for base in (persistent_res, persistent_str, persistent_bc, step, gemm):
        if base is None:
            continue
        for ra in (True, False):
            cases.append(replace(base, reset_after=ra))
    # every precision at the largest resident and streamed persistent plans (their plans differ per dtype)
    for p in PRECISIONS:
        for base, pred in ((persistent_res, lambda q: q.mode == "persistent" and q.resident and q.use_dot),
                           (persistent_str, lambda q: q.mode == "persistent" and not q.resident)):
            if base is None:
                continue
            big = _largest([pr for pr in pairs if pr[0].precision == p], pred)
            if big is not None:
                cases.append(big)
    if persistent_res is not None:
        base = persistent_res
        cases += [replace(base, lengths=False), replace(base, bias=False), replace(base, save=False),
                  replace(base, save=False, reset_after=False)]
        for opt in ("cell", "cell-eval", "cell-act", "cell-act2"):
            cases.append(replace(base, options=opt))
        cases.append(replace(base, options="cell", reset_after=False))
    if step is not None:
        cases.append(replace(step, options="cell", reset_after=False))
    if gemm is not None:
        cases.append(replace(gemm, options="cell"))
    ln_pairs = _grid_plans(arch, layer_norm=True)
    for pred in (lambda p: p.mode == "persistent", lambda p: p.mode == "step"):
        ln = _largest(ln_pairs, pred)
        if ln is not None:
            cases += [replace(ln, reset_after=True), replace(ln, reset_after=False)]
    for mode in ("step", "gemm"):  # the layer norm in the per-step modes, forced
        ln = _largest(ln_pairs, lambda p: p.mode == "persistent")
        if ln is not None:
            cases.append(replace(ln, mode=mode, reset_after=mode == "gemm"))
    cases += [Case(arch, kind="scan", precision=p) for p in SCAN_DTYPES]
    return list(dict.fromkeys(cases))


def quick_cases(arch: str) -> list[Case]:
    """A smaller representative set (what the test suite compiles): each mode and product path of the subset
    once at its largest tiles, both reset variants of the resident plan, the cell options, the layer norm and
    the scan; about a quarter of the subset's kernels."""
    sub = [c for c in subset_cases(arch) if c.kind == "gru" and c.options == "plain" and c.lengths and c.bias
           and c.save and c.mode is None]
    chosen: dict[tuple, Case] = {}
    for case in sub:  # the subset lists each path's largest plan first
        plan = plan_of(case)
        chosen.setdefault((plan.mode, plan.resident, plan.use_dot, case.reset_after if plan.resident else True), case)
    cases = list(chosen.values())
    resident = next(c for c in cases if plan_of(c).resident and plan_of(c).use_dot)
    cases.append(replace(resident, options="cell", reset_after=False))
    cases += [c for c in subset_cases(arch) if c.options == "ln" and c.mode is None and c.reset_after][:1]
    cases.append(Case(arch, kind="scan", precision="bf16"))
    return list(dict.fromkeys(cases))


def grid_cases(arch: str) -> list[Case]:
    """The subset, then make_plan's own plan at every point of the grid (the plans users get)."""
    return full_cases(arch, forced_modes=False)


def full_cases(arch: str, forced_modes: bool = True) -> list[Case]:
    """The subset, then make_plan's own plan at every point of the grid (the layer norm for H <= 512), then
    every other mode each point allows (forced, as FASTGRU_TRITON_MODE does); both reset variants each."""
    cases = subset_cases(arch)
    forced = []
    for layer_norm in (False, True):
        for case, plan in _grid_plans(arch, layer_norm):
            for ra in (True, False):
                cases.append(replace(case, reset_after=ra))
            for mode in MODES if forced_modes else ():
                if mode == plan.mode:
                    continue
                try:
                    plan_of(replace(case, mode=mode))
                except ValueError:  # e.g. persistent with a grid larger than the SMs
                    continue
                forced += [replace(case, mode=mode, reset_after=ra) for ra in (True, False)]
    return list(dict.fromkeys(cases + forced))


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Report:
    records: list[KernelRecord]
    errors: list[str]
    cases: dict[str, int]  # per arch
    fresh: dict[str, int]  # kernels compiled (not read from the cache) per arch
    seconds: float

    @property
    def problems(self) -> list[str]:
        return self.errors + [f"{r.arch} {r.kernel} [{r.plan}] ({r.case}): {p}" for r in self.records
                              for p in r.problems]

    def summary(self) -> str:
        lines = []
        for arch in self.cases:
            recs = [r for r in self.records if r.arch == arch]
            lines.append(f"{arch}: {self.cases[arch]} cases, {len(recs)} distinct kernels "
                         f"({self.fresh.get(arch, 0)} compiled now, the rest from the cache), "
                         f"{sum(bool(r.problems) for r in recs)} over a limit, "
                         f"{sum(e.startswith(arch + ' ') for e in self.errors)} compile errors")
        lines.append(f"time: {self.seconds:.1f} s")
        return "\n".join(lines)


def _work(arch_name: str, cases: list[Case], progress: bool = False) -> tuple[list[KernelRecord], list[str], int]:
    compiler = _Compiler(ARCHS[arch_name])
    records: dict[str, KernelRecord] = {}
    errors = []
    start = time.perf_counter()
    try:
        for i, case in enumerate(cases):
            recs, err = compile_case(case, compiler)
            if i % 25 == 24:
                compiler.save()  # an interrupted run keeps its ptxas figures too
            if progress:  # one line per case (a long --full run shows how far it got)
                print(f"[{time.perf_counter() - start:7.1f} s] {arch_name} case {i + 1}/{len(cases)} {case.label()}: "
                      f"{len(recs)} kernels{', ERROR ' + err if err else ''}"
                      + "".join(f"; {r.kernel}: {'; '.join(r.problems)}" for r in recs if r.problems),
                      file=sys.stderr, flush=True)
            if err:
                errors.append(err)
            for r in recs:
                # one record per distinct compiled kernel; keep the first case that built it
                records.setdefault(r.hash, r)
    finally:
        compiler.save()
    return list(records.values()), errors, compiler.fresh


def run(archs: list[str], full: bool = False, jobs: int = 1, cases: dict[str, list[Case]] | None = None,
        progress: bool = False) -> Report:
    """Compile the subset (or the full grid, or the given cases) for each architecture (progress: a line per
    case on stderr)."""
    start = time.perf_counter()
    if cases is None:
        cases = {a: (full_cases(a) if full else subset_cases(a)) for a in archs}
    chunks = [(a, cs[i::jobs]) for a, cs in cases.items() for i in range(max(1, jobs))]
    chunks = [c for c in chunks if c[1]]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(_work, *zip(*chunks), [progress] * len(chunks)))
    else:
        results = [_work(a, cs, progress) for a, cs in chunks]
    records: dict[tuple[str, str], KernelRecord] = {}
    errors, fresh = [], {}
    for (a, _), (recs, errs, n) in zip(chunks, results):
        for r in recs:
            records.setdefault((r.arch, r.hash), r)
        errors += errs
        fresh[a] = fresh.get(a, 0) + n
    return Report(list(records.values()), errors, {a: len(cs) for a, cs in cases.items()}, fresh,
                  time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ tables


def _row(r: KernelRecord) -> str:
    spills = f"{r.spill_stores}/{r.spill_loads}"
    estimate = f"{r.smem_estimate:,}" if r.smem_estimate else "-"
    verdict = "; ".join(r.problems) or ("ok, " + "; ".join(r.notes) if r.notes else "ok")
    return (f"| {r.kernel} | {r.plan} | {r.case} | {r.num_warps} | {r.registers} | {spills} | {r.shared:,} | "
            f"{estimate} | {r.occupancy} | {verdict} |")


def _kind(r: KernelRecord) -> tuple[str, ...]:
    """Kernel, mode, W_hh held / streamed, product, options class: one table row each."""
    bits = r.plan.split(" ")
    path = (bits[0], bits[5], bits[6]) if len(bits) > 6 else (bits[0],)
    return (r.kernel, *path, "cell" if r.options.startswith("cell") else r.options)


def table(report: Report, command: str) -> str:
    """Markdown: per architecture, a summary per kernel, then per kind of plan (`_kind`) the compiled kernel with
    the most spilled bytes, then registers, then shared memory."""
    import triton

    out = [f"Command: `{command}`. Compiled with Triton {triton.__version__} and its bundled ptxas for each target "
           "architecture on a machine without a GPU: these are the compiler's figures, nothing was run. Registers "
           "per thread; spill stores/loads in bytes per thread; shared memory per block in bytes (Triton's dynamic "
           "allocation plus any static), beside the heuristics' estimate `smem_estimate` that the plan was fitted "
           "with; occupancy = blocks per SM the registers, shared memory and threads allow (a persistent grid must "
           "fit n_SM x occupancy). Limits checked: shared memory per block, 255 registers per thread, 65,536 per "
           "SM, 1,024 threads per block, co-residency of persistent grids, spills in persistent kernels (accepted "
           "only within a documented allowance, `SPILL_EXCEPTIONS`). The GPU speed and correctness of the Triton "
           "backend are unmeasured: no GPU was available.", "",
           report.summary().replace("\n", "; ") + ".", ""]
    for arch_name, arch in ARCHS.items():
        recs = [r for r in report.records if r.arch == arch_name]
        if not recs:
            continue
        out += [f"### {arch_name} ({arch.gpus}; plans for {arch.n_sm} SMs, {arch.smem_per_block:,} B shared memory "
                "per block)", "", "| kernel | compiled | registers (max) | spill st/ld (max, B) | shared (max, B) | "
                "shared / estimate (max) | occupancy (min) | over a limit |", "|---|---|---|---|---|---|---|---|"]
        for name in sorted({r.kernel for r in recs}):
            ks = [r for r in recs if r.kernel == name]
            ratio = max((r.shared / r.smem_estimate for r in ks if r.smem_estimate), default=None)
            out.append(f"| {name} | {len(ks)} | {max(r.registers for r in ks)} | "
                       f"{max(r.spill_stores for r in ks)}/{max(r.spill_loads for r in ks)} | "
                       f"{max(r.shared for r in ks):,} | {'-' if ratio is None else f'{ratio:.2f}'} | "
                       f"{min(r.occupancy for r in ks)} | {sum(bool(r.problems) for r in ks)} |")
        out += ["", "| kernel | plan | case (the worst of its kind) | warps | registers | spill st/ld (B) | shared (B) "
                "| estimate (B) | occupancy | result |", "|---|---|---|---|---|---|---|---|---|---|"]
        groups: dict[tuple, KernelRecord] = {}
        for r in recs:
            worst = (max(r.spill_stores, r.spill_loads), r.registers, r.shared)
            g = groups.get(_kind(r))
            if g is None or worst > (max(g.spill_stores, g.spill_loads), g.registers, g.shared):
                groups[_kind(r)] = r
        out += [_row(groups[k]) for k in sorted(groups)]
        out.append("")
    return "\n".join(out)


def write_table(report: Report, path: Path, command: str) -> None:
    from fastgru.io.markdown import replace_section

    replace_section(path, "gpu-aot", "## GPU: compiled resources of the Triton kernels (sm_80, sm_90)",
                    table(report, command))


# -------------------------------------------------------------------------------------------------- main


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole shape grid (default: the CI subset)")
    parser.add_argument("--grid", action="store_true",
                        help="the subset plus make_plan's own plan at every grid point (--full without forced modes)")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller representative set (each mode and product path once; the test suite's)")
    parser.add_argument("--arch", nargs="+", choices=sorted(ARCHS), default=sorted(ARCHS))
    parser.add_argument("--jobs", type=int, default=1, help="compiler processes (default 1)")
    parser.add_argument("--json", default=None, help="write every kernel record to this JSON file")
    parser.add_argument("--write-table", default=None, metavar="MARKDOWN",
                        help="write the resource table to this file's 'gpu-aot' section (e.g. BENCHMARKS.md)")
    parser.add_argument("--verbose", action="store_true", help="print one line per compiled kernel")
    parser.add_argument("--progress", action="store_true", help="print one line per compiled case (stderr)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.full + args.grid + args.quick > 1:
        parser.error("--full, --grid and --quick exclude each other")
    from fastgru.backends.triton import kernels as K

    if K.INTERPRETED:  # kernels built for the interpreter: compile in a clean process instead
        cmd = [sys.executable, "-m", "fastgru.backends.triton.aot", *argv]
        return subprocess.call(cmd, env=_clean_env())
    pick = quick_cases if args.quick else full_cases if args.full else grid_cases if args.grid else subset_cases
    report = run(args.arch, jobs=args.jobs, cases={a: pick(a) for a in args.arch}, progress=args.progress)
    if args.verbose:
        for r in sorted(report.records, key=lambda r: (r.arch, r.kernel, r.plan)):
            print(f"{r.arch} {_row(r)}")
    for p in report.problems:
        print(f"PROBLEM {p}")
    print(report.summary())
    if args.json:
        from fastgru.io.atomic import write_text

        write_text(Path(args.json), json.dumps([asdict(r) for r in report.records], indent=1))
    if args.write_table:
        flag = " --full" if args.full else " --grid" if args.grid else " --quick" if args.quick else ""
        command = "python -m fastgru.backends.triton.aot" + flag
        write_table(report, Path(args.write_table), command)
        print(f"wrote section 'gpu-aot' of {args.write_table}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
