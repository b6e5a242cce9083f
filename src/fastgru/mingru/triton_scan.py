"""Triton kernel: the first-order linear recurrence h_t = a_t * h_{t-1} + b_t as a parallel scan over T.

MinGRU's recurrence on the GPU (fastgru.mingru.scan.linear_scan sends CUDA tensors here). One program owns
BLOCK_D independent channels (a channel = one (batch, unit) pair; the (T, D) layout is contiguous in
D, so the loads are coalesced) and walks T in tiles of BLOCK_T steps: inside a tile,
`tl.associative_scan` with the combine (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2) gives every step's
(prod a, zero-start state); the tile's states are then prod_a * carry + state, and the carry moves to
the next tile. Arithmetic is fp32 (fp64 for fp64 tensors) whatever the storage type.

The backward is the same kernel run backwards over time (REVERSE): G_t = dy_t + a_{t+1} G_{t+1};
then da_t = G_t h_{t-1}, db_t = G_t, dh0 = a_0 G_0 (elementwise, in torch).

Runs under TRITON_INTERPRET=1 on CPU tensors (how CI tests it); the interpreter mode is fixed when
this module is imported, as for every Triton kernel. Without Triton, importing this module still works
and `usable()` is False.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton is optional (fastgru[gpu])
    triton = None
    tl = None

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
BLOCK_T = 64
BLOCK_D = 64


def _interpreting() -> bool:
    if triton is None:
        return False
    try:  # Triton >= 3.2
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:
        return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


INTERPRETED = _interpreting()

if triton is not None:

    # Only builtins and the two helpers below inside the kernel (no tl.sum / tl.cdiv, which are
    # jitted library functions): then re-importing this module under TRITON_INTERPRET=1 is enough
    # to get an interpreted kernel even if Triton itself was imported before the variable was set.

    @triton.jit
    def _combine(a1, b1, a2, b2):
        return a1 * a2, a2 * b1 + b2

    @triton.jit
    def _add(x, y):
        return x + y

    @triton.jit
    def _scan_kernel(A, Bx, H0, Out, T, D, REVERSE: tl.constexpr, F64: tl.constexpr,
                     BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
        pid = tl.program_id(0)
        d = pid * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = d < D
        carry = tl.load(H0 + d, mask=dmask, other=0.0)
        carry = carry.to(tl.float64) if F64 else carry.to(tl.float32)
        rows = tl.arange(0, BLOCK_T)
        last = (rows == BLOCK_T - 1)[:, None]
        for c in range(0, (T + BLOCK_T - 1) // BLOCK_T):
            i = c * BLOCK_T + rows
            if REVERSE:  # row i is time T-1-i; its coefficient is a_{t+1} (the backward recurrence)
                t = T - 1 - i
                ta = t + 1
            else:
                t = i
                ta = i
            live = (i < T)[:, None] & dmask[None, :]
            t64 = t.to(tl.int64)[:, None] * D + d[None, :]
            ta64 = ta.to(tl.int64)[:, None] * D + d[None, :]
            # rows past the end (and a_T in reverse) act as the identity (a = 1, b = 0): the carry
            # then passes through to the tile's last row unchanged
            a = tl.load(A + ta64, mask=live & (ta < T)[:, None], other=1.0)
            b = tl.load(Bx + t64, mask=live, other=0.0)
            if F64:
                a = a.to(tl.float64)
                b = b.to(tl.float64)
            else:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            prod_a, state = tl.associative_scan((a, b), 0, _combine)
            h = prod_a * carry[None, :] + state
            tl.store(Out + t64, h.to(Out.dtype.element_ty), mask=live)
            carry = tl.reduce(tl.where(last, h, 0.0), 0, _add)  # the tile's last row


def why_unusable(t: Tensor) -> str | None:
    """None if the kernel can run on tensors like `t` (CUDA, or CPU under the interpreter), else why not."""
    if triton is None:
        return "Triton is not installed (pip install fastgru[gpu])"
    if t.dtype not in DTYPES:
        return f"dtype {t.dtype} is not supported (use one of {DTYPES})"
    if t.device.type == "cuda":
        if INTERPRETED:
            return "TRITON_INTERPRET=1 is set: the kernel was built for the CPU interpreter"
        return None if torch.cuda.is_available() else "CUDA is not available"
    if t.device.type == "cpu" and INTERPRETED:
        return None
    return f"device {t.device} needs CUDA (or CPU tensors with TRITON_INTERPRET=1 set before import)"


def usable(t: Tensor) -> bool:
    """True for CUDA tensors when the compiled kernel can run (what `linear_scan` 'auto' uses)."""
    return t.device.type == "cuda" and why_unusable(t) is None


def _launch(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, block_t: int, block_d: int) -> Tensor:
    T = b.shape[0]
    D = b[0].numel()
    out = torch.empty_like(b)
    grid = (triton.cdiv(D, block_d),)
    _scan_kernel[grid](a, b, h0, out, T, D, REVERSE=reverse, F64=b.dtype == torch.float64,
                       BLOCK_T=block_t, BLOCK_D=block_d)
    return out


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, block_t: int, block_d: int) -> Tensor:
        out = _launch(a, b, h0, False, block_t, block_d)
        ctx.save_for_backward(a, h0, out)
        ctx.blocks = (block_t, block_d)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: Tensor):
        a, h0, out = ctx.saved_tensors
        G = _launch(a, dout.contiguous(), torch.zeros_like(h0), True, *ctx.blocks)
        h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
        return G * h_prev, G, a[0] * G[0], None, None


def scan(a: Tensor, b: Tensor, h0: Tensor | None = None, *, block_t: int = BLOCK_T,
         block_d: int = BLOCK_D) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t over dim 0 with the Triton kernel; a, b (T, ...), h0 (...) or None.

    Differentiable (hand-written backward: the reversed scan). block_t / block_d: tile sizes (powers
    of two; tests vary them to cover tile tails).
    """
    reason = why_unusable(b)
    if reason is not None:
        raise RuntimeError(f"triton_scan: {reason}")
    if a.shape != b.shape or b.dim() < 1 or b.shape[0] == 0:
        raise ValueError(f"triton_scan: a and b must have the same non-empty (T, ...) shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(f"triton_scan: a ({a.dtype}, {a.device}) and b ({b.dtype}, {b.device}) must match")
    if h0 is None:
        h0 = b.new_zeros(b.shape[1:])
    elif h0.shape != b.shape[1:] or h0.dtype != b.dtype or h0.device != b.device:
        raise ValueError(f"triton_scan: h0 must be {tuple(b.shape[1:])} {b.dtype} on {b.device}, got "
                         f"{tuple(h0.shape)} {h0.dtype} on {h0.device}")
    for name, v in (("block_t", block_t), ("block_d", block_d)):
        if v < 1 or v & (v - 1):
            raise ValueError(f"triton_scan: {name} must be a power of two, got {v}")
    return _TritonScan.apply(a.contiguous(), b.contiguous(), h0.contiguous(), block_t, block_d)
