"""Fused CPU backend: the time loop in C++ (csrc/: sources and headers), built once on first use.

Why C++ through torch.utils.cpp_extension: per-step work must avoid PyTorch's per-op dispatch
(5-10 us per op, which is what makes torch.nn.GRU slow on a CPU). The extension calls MKL's sgemm
directly for the recurrent product and runs one vectorised elementwise pass per step. It is compiled
with the machine's g++ and ninja into a cache folder the first time it is needed (1-2 minutes on 2
cores, announced on stderr); if that fails, `fastgru.backends.select` falls back to the pure-torch loop.
The build folder's name holds a hash of every file in csrc/, so a change to any of them, headers
included, builds afresh (torch's loader looks at the listed sources only).
Set FASTGRU_DISABLE_CPU_EXT=1 to skip it, FASTGRU_BUILD_VERBOSE=1 to see the compiler.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from fastgru import config
from fastgru.backends import ACTIVATIONS, PLAIN, CellSpec

SUPPORTS_CELL_OPTIONS = True
SUPPORTS_INPUT_NORM = True  # the kernels normalise the input projections themselves (gi_gain / gi_norm)

_CSRC = Path(__file__).parent / "csrc"
# the kernel's sources: gru_cpu.cpp (the bindings), forward.cpp and backward.cpp, compiled side by side
_SOURCES = sorted(_CSRC.glob("*.cpp"))
_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None


def _sources_digest(folder: Path | None = None) -> str:
    """A short hash of the names and contents of every file under csrc/ (or `folder`).

    torch.utils.cpp_extension.load() decides whether to rebuild from the files in `sources` alone, so a
    changed header with unchanged sources would load the old build; keyed by this hash, any
    change gets a build folder of its own.
    """
    folder = _CSRC if folder is None else folder
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


_CPUINFO = Path("/proc/cpuinfo")
SMALL_ROWS = 4  # kSmallRows in recurrent_gemm.h: up to this many rows the kernel's own small GEMMs serve


def _cpu_digest() -> str:
    """A short hash of this CPU's model and instruction-set flags.

    The kernel is compiled with -march=native, so a build made on one CPU can use instructions another
    lacks (a cache folder shared between machines, a home directory on a cluster); keyed by this hash,
    each kind of CPU gets a build of its own instead of a crash with an illegal instruction.
    """
    identity = f"{platform.machine()} {platform.processor()}"
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as cpuinfo:
            wanted = {"model name", "flags", "Features", "CPU implementer", "CPU part"}
            seen: dict[str, str] = {}
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in wanted and key not in seen:
                    seen[key] = value.strip()
                if not line.strip() and seen:  # the first processor's block is enough
                    break
        identity += " " + " ".join(f"{k}={seen[k]}" for k in sorted(seen))
    except OSError:  # not Linux: the platform strings above
        pass
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


def _build_dir() -> Path:
    tag = f"torch{torch.__version__.replace('+', '_')}-{_sources_digest()}-cpu{_cpu_digest()}"
    path = config.build_dir() / tag
    path.mkdir(parents=True, exist_ok=True)
    return path


_STALE_LOCK_SECONDS = 600  # a build takes well under a minute; an older lock was left by a killed build


def _remove_stale_lock(build_dir: Path) -> None:
    """torch's build lock outlives a build that was killed; without this every later process would wait."""
    lock = build_dir / "lock"
    try:
        if time.time() - lock.stat().st_mtime > _STALE_LOCK_SECONDS:
            warnings.warn(f"fastgru: removing a stale build lock left by an interrupted build: {lock}", stacklevel=3)
            lock.unlink()
    except FileNotFoundError:
        pass


def load() -> ModuleType | None:
    """Build (first call) and import the extension; None if it cannot be built here."""
    global _module, _error
    if _module is not None or _error is not None:
        return _module
    with _lock:
        if _module is not None or _error is not None:
            return _module
        if config.cpu_extension_disabled():
            _error = "disabled by FASTGRU_DISABLE_CPU_EXT"
            return None
        try:
            from torch.utils.cpp_extension import load as load_extension

            build_dir = _build_dir()
            _remove_stale_lock(build_dir)
            first_build = not any(build_dir.glob("fastgru_cpu*.so"))
            if first_build:
                print("fastgru: building the fused CPU kernel with the machine's C++ compiler (first use only; "
                      "usually 1-2 minutes)...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()

            _module = load_extension(
                name="fastgru_cpu",
                sources=[str(path) for path in _SOURCES],
                build_directory=str(build_dir),
                extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp"],
                extra_ldflags=["-fopenmp"],
                verbose=config.build_verbose(),
            )
            if first_build:
                print(f"fastgru: fused CPU kernel built in {time.perf_counter() - t0:.0f} s (cached in {build_dir})",
                      file=sys.stderr, flush=True)
        except Exception as exc:  # no compiler, no ninja, headers missing...
            _error = f"{type(exc).__name__}: {exc}"
            _module = None
    return _module


def load_error() -> str | None:
    """Why the extension is unavailable (None if it loaded or was never tried)."""
    return _error


def is_available(device: torch.device | None = None) -> bool:
    return (device is None or device.type == "cpu") and load() is not None


def _contig(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _options(rec_mask: Tensor | None, zone_mask: Tensor | None, spec: CellSpec) -> tuple:
    """The kernel's trailing arguments for the cell options."""
    return (
        _contig(rec_mask), _contig(zone_mask), float(spec.zoneout),
        ACTIVATIONS[spec.gate_activation], ACTIVATIONS[spec.candidate_activation],
        float(spec.hard_sigmoid_alpha), float(spec.hard_sigmoid_beta),
    )


_workspace = threading.local()


def _gi_workspace(numel: int, dtype: torch.dtype) -> Tensor:
    """A per-thread buffer for the input projections, reused across calls.

    gi lives only inside one forward call (backward does not need it), and a fresh tens-of-MB buffer
    costs a page fault per page on first touch every call; one reused buffer (the largest seen, per
    thread) avoids that for inference. Call `release_workspace()` to give the memory back.
    """
    buf = getattr(_workspace, "gi", None)
    if buf is None or buf.numel() < numel or buf.dtype != dtype:
        buf = None  # free the old one before allocating the new
        _workspace.gi = buf = load().empty_cached([numel], dtype)
    return buf[:numel]


def release_workspace() -> None:
    """Free this thread's cached projection buffer and unmap the kernel's cached free buffers.

    The kernel keeps up to 512 MiB of freed large buffers for reuse (re-faulting fresh memory every
    training step costs ~20% of a step at small sizes); FASTGRU_BUFFER_CACHE=0 turns that cache off.
    """
    _workspace.gi = None
    if _module is not None:
        _module.release_buffers()


def project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, reuse: bool = False, bf16: bool = False) -> Tensor:
    """Input projections of all steps, (T, B, I) -> (T, B, 3H), in a buffer from the kernel's cache.

    Float32 projections come from the kernel (`ext.project`: its own loops, else addmm) in a buffer from its
    cache. For float64, reuse=True (inference calls) writes into the per-thread workspace; training calls take
    a fresh buffer that is freed before backward runs, so the workspace never adds to training's peak memory.
    """
    if bf16:  # the product in bf16 (oneDNN), the result in float32
        return load().project(x, w_ih, b_ih, True)
    T, B, I = x.shape
    G = w_ih.shape[0]
    if T * B <= SMALL_ROWS or x.dtype == torch.float32:
        # the kernel's own loops: dot products for a few rows (an ATen GEMM's fixed cost is most of the work
        # there), the panel loops for float32 from 64 rows on AVX-512 machines; otherwise it calls addmm itself
        return load().project(x, w_ih, b_ih, False)
    if reuse:
        gi = _gi_workspace(T * B * G, x.dtype).view(T * B, G)
    else:
        gi = load().empty_cached([T * B, G], x.dtype)
    x2 = x.reshape(T * B, I)
    if b_ih is None:
        torch.mm(x2, w_ih.t(), out=gi)
    else:
        torch.addmm(b_ih, x2, w_ih.t(), out=gi)
    return gi.view(T, B, G)


def recurrence_forward(
    gi: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    save: bool,
    *,
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    ln_gain: Tensor | None = None,
    gi_gain: Tensor | None = None,
    gi_bias: Tensor | None = None,
    bf16: bool = False,
) -> tuple[Tensor, ...]:
    """gi_gain / gi_bias: layer-normalise each row of gi (the raw projections) in the loop; the cell reads
    xhat * gi_gain + gi_bias. Saving, gi's rows become xhat in place and a third output holds rstd (T*B,).
    bf16: the step products in bf16 (torch.autocast on the CPU), state and sums in float32."""
    ext = load()
    if gi_gain is not None and not gi.is_contiguous():
        raise ValueError("gi must be contiguous when the kernel normalises it in place")
    buf, gates, gi_rstd = ext.forward(
        gi.contiguous(), h0.contiguous(), w_hh.contiguous(), _contig(b_hh), _contig(lengths),
        reset_after, reverse, save, *_options(rec_mask, zone_mask, spec), _contig(ln_gain),
        _contig(gi_gain), _contig(gi_bias), bf16,
    )
    return (buf, gates) if gi_gain is None else (buf, gates, gi_rstd)


def recurrence_backward(
    dbuf: Tensor,
    buf: Tensor,
    gates: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    *,
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    ln_gain: Tensor | None = None,
    gi_norm: tuple[Tensor, Tensor, Tensor] | None = None,
    bf16: bool = False,
) -> tuple[Tensor | None, ...]:
    """gi_norm: (xhat, rstd, gain) of the input norm that forward applied; dgi then is the gradient of the
    raw projections. Returns (dgi, dgh_n, dh0, dgh_pre, d ln_gain, d gain_ih, bias sums), None where absent
    (see fastgru.backends)."""
    ext = load()
    xhat, rstd, gain = gi_norm if gi_norm is not None else (None, None, None)
    return tuple(ext.backward(
        dbuf.contiguous(), buf, gates, w_hh.contiguous(), _contig(lengths), reset_after, reverse,
        *_options(rec_mask, zone_mask, spec), _contig(ln_gain), _contig(xhat), _contig(rstd), _contig(gain), bf16,
    ))


def recurrence_grads(
    dbuf: Tensor,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    buf: Tensor,
    gates: Tensor,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    has_bias_ih: bool,
    has_bias_hh: bool,
    need_dx: bool,
) -> tuple[Tensor, ...]:
    """The whole gradient of a plain layer-direction (no layer norm, masks, zoneout or other activations) in
    one kernel call: BPTT, then the input and weight gradients and the bias sums.

    Returns (dx, dh0, dW_ih, dW_hh, db_ih, db_hh), empty tensors for dx unless need_dx and for absent biases.
    """
    return tuple(load().backward_grads(
        dbuf.contiguous(), x.contiguous(), w_ih.contiguous(), w_hh.contiguous(), buf, gates, _contig(lengths),
        reset_after, reverse, has_bias_ih, has_bias_hh, need_dx,
    ))

