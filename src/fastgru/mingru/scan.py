"""First-order linear recurrences h_t = a_t * h_{t-1} + b_t over the time axis, three ways.

MinGRU's recurrence is this scan (a_t = 1 - z_t, b_t = z_t * h~_t), so it can run in parallel over T.

* `sequential_scan(a, b, h0)`: one fused multiply-add per step in a Python loop, with a hand-written
  backward (the same recurrence run backwards: G_t = dy_t + a_{t+1} G_{t+1}, da_t = G_t h_{t-1},
  db_t = G_t, dh0 = a_0 G_0). Exact in the sense of the sequential definition; the streaming form.
* `log_scan(la, lb, h0)`: the parallel scan in log space (Heinsen 2023, "Efficient Parallelization
  of a Ubiquitous Sequential Computation"; Feng et al. 2024) for positive increments b_t = exp(lb_t),
  a_t = exp(la_t): log h_t = log(sum_{s<=t} exp(A_t - A_s + lb_s)), A = cumsum(la). Evaluated as a
  chunked two-level scan whose every combine is a logaddexp (see `_log_scan_zero`: stable in fp32 at
  any T, unlike one global logcumsumexp), exact for an initial state of any sign (its contribution
  exp(A_t) * h0 is added in linear space). Differentiable by autograd through torch ops.
* `linear_scan(a, b, h0)`: dispatches to the Triton kernel (fastgru.mingru.triton_scan) for CUDA
  tensors when Triton works, else to `sequential_scan`.

Layout: a, b, la, lb are (T, *rest); h0 is (*rest) or None (zeros); every function returns h (T, *rest).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MAX_CHUNK = 64  # chunks of the log-space scan: at most this many sequential (vectorised) steps


# ------------------------------------------------------------------------------ sequential scan


def loop_forward(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 0..T-1, one fused multiply-add per step into the output (no autograd).

    a, b (T, ...) (any strides), h0 (...). The per-step views come from one unbind each: a Python
    loop over T pays about one small op of overhead per step.
    """
    out = torch.empty(b.shape, dtype=b.dtype, device=b.device)
    h = h0
    for a_t, b_t, o_t in zip(a.unbind(0), b.unbind(0), out.unbind(0)):
        torch.addcmul(b_t, a_t, h, out=o_t)
        h = o_t
    return out


def loop_reverse(a: Tensor, dout: Tensor) -> Tensor:
    """The backward recurrence G_t = dout_t + a_{t+1} G_{t+1}, G_{T-1} = dout_{T-1}: dL/dh_t in total."""
    G = torch.empty(dout.shape, dtype=dout.dtype, device=dout.device)
    T = dout.shape[0]
    a_s, d_s, G_s = a.unbind(0), dout.unbind(0), G.unbind(0)
    G_s[T - 1].copy_(d_s[T - 1])
    for t in range(T - 2, -1, -1):
        torch.addcmul(d_s[t], a_s[t + 1], G_s[t + 1], out=G_s[t])
    return G


def _loop_backward(a: Tensor, h0: Tensor, out: Tensor, dout: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of sequential_scan: the recurrence backwards, then elementwise products."""
    G = loop_reverse(a, dout)
    h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
    return G * h_prev, G, a[0] * G[0]


class _SequentialScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        out = loop_forward(a, b, h0)
        ctx.save_for_backward(a, h0, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: Tensor):
        a, h0, out = ctx.saved_tensors
        da, db, dh0 = _loop_backward(a, h0, out, dout.contiguous())
        return da, db, dh0


def _prepare(a: Tensor, b: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    if a.shape != b.shape or a.dim() < 1 or a.shape[0] == 0:
        raise ValueError(f"scan: a and b must have the same non-empty (T, ...) shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if h0 is None:
        h0 = b.new_zeros(b.shape[1:])
    elif h0.shape != b.shape[1:]:
        raise ValueError(f"scan: h0 must have shape {tuple(b.shape[1:])}, got {tuple(h0.shape)}")
    return a, b, h0


def sequential_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t, one step at a time (torch ops; hand-written backward)."""
    a, b, h0 = _prepare(a, b, h0)
    return _SequentialScan.apply(a.contiguous(), b.contiguous(), h0.contiguous())


# ------------------------------------------------------------------------------ log-space scan


def _hillis_steele_log(la: Tensor, lb: Tensor) -> Tensor:
    """Inclusive log-space scan over dim 0 from a zero state, log2(n) vectorised passes, no cancellation.

    Combines (la1, lb1) then (la2, lb2) into (la1 + la2, logaddexp(la2 + lb1, lb2)): every logaddexp
    works on logs of actual partial states, so the rounding is a few ulps of log h whatever la is.
    """
    n = la.shape[0]
    d = 1
    while d < n:
        lb = torch.cat([lb[:d], torch.logaddexp(lb[d:], la[d:] + lb[:-d])])
        la = torch.cat([la[:d], la[d:] + la[:-d]])
        d *= 2
    return lb


def chunk_size(T: int) -> int:
    """Steps per chunk of the log-space scan: about sqrt(T) (a power of two, at most _MAX_CHUNK)."""
    return min(_MAX_CHUNK, 1 << max(0, math.ceil(math.log2(max(T, 1)) / 2)))


def _log_scan_zero(la: Tensor, lb: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """For h_t = exp(la_t) h_{t-1} + exp(lb_t) from h_{-1} = 0 (la, lb (T, D)): (log h, cumsum(la)).

    A two-level parallel scan, every combine in log space (logaddexp of logs of actual states, so the
    rounding stays a few ulps of log h: Heinsen's single logcumsumexp over all T, A_t +
    logcumsumexp(lb - A)_t, loses |A_t| ulps instead, and |A_t| grows linearly with T).
      1. all T / C chunks at once, from zero states: lh_j = logaddexp(la_j + lh_{j-1}, lb_j) for the
         C positions j of a chunk, and the chunk's own decay A_j = la_0 + ... + la_j;
      2. the chunk summaries (A_end, lh_end) by the log-depth Hillis-Steele scan: the log state at
         each chunk's end;
      3. every step adds its predecessor chunk's end state: logaddexp(lh_j, A_j + carry).
    """
    T, D = la.shape
    C = min(chunk or chunk_size(T), T)
    n = -(-T // C)
    pad = n * C - T
    if pad:  # padded steps come after every real one: they change nothing that is returned
        la = torch.cat([la, la.new_zeros(pad, D)])
        lb = torch.cat([lb, lb.new_zeros(pad, D)])
    la3, lb3 = la.view(n, C, D), lb.view(n, C, D)
    la_j, lb_j = la3.unbind(1), lb3.unbind(1)  # (unbind: one stacked gradient, not C full-size ones)
    lh, A = [lb_j[0]], [la_j[0]]
    for j in range(1, C):
        lh.append(torch.logaddexp(la_j[j] + lh[-1], lb_j[j]))
        A.append(A[-1] + la_j[j])
    local, decay = torch.stack(lh, 1), torch.stack(A, 1)  # (n, C, D)
    if n > 1:
        carry = _hillis_steele_log(decay[:, -1], local[:, -1])  # (n, D)
        before = torch.cumsum(decay[:, -1], dim=0)[:-1].unsqueeze(1)  # sum of la over earlier chunks
        local = torch.cat([local[:1], torch.logaddexp(local[1:], decay[1:] + carry[:-1].unsqueeze(1))])
        decay = torch.cat([decay[:1], decay[1:] + before])
    return local.reshape(n * C, D)[:T], decay.reshape(n * C, D)[:T]


def log_scan(la: Tensor, lb: Tensor, h0: Tensor | None = None, chunk: int | None = None) -> Tensor:
    """h_t = exp(la_t) * h_{t-1} + exp(lb_t) in parallel over T, in log space; h0 may have any sign.

    la = log a_t, lb = log b_t (so b_t > 0: MinGRU's z_t * g(.) is). Returns h (T, *rest) in linear
    space. The zero-start part is the log-space scan; h0 enters exactly, in linear space, as
    exp(la_0 + ... + la_t) * h0, so no log of a negative number is ever taken.
    chunk: steps per chunk (default `chunk_size(T)`; tests vary it).
    """
    la, lb, h0_full = _prepare(la, lb, h0)
    T = la.shape[0]
    rest = la.shape[1:]
    lh, decay = _log_scan_zero(la.reshape(T, -1), lb.reshape(T, -1), chunk)
    h = torch.exp(lh)
    if h0 is not None:
        h = h + torch.exp(decay) * h0_full.reshape(1, -1)
    return h.view(T, *rest)


# ------------------------------------------------------------------------------ dispatch


def triton_usable(t: Tensor) -> bool:
    """Whether the Triton scan can run on `t` (a CUDA tensor, Triton importable). The Triton module is
    imported only for CUDA tensors (or when asked for by name), since importing Triton is slow."""
    if t.device.type != "cuda":
        return False
    from fastgru.mingru import triton_scan

    return triton_scan.usable(t)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, backend: str = "auto") -> Tensor:
    """h_t = a_t * h_{t-1} + b_t: the Triton kernel for CUDA tensors (backend "auto"/"triton"), else the loop.

    backend: "auto" (Triton when the tensors are on a GPU and Triton works, else torch), "triton"
    (error if unusable), "torch" (the sequential loop).
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "triton" or (backend == "auto" and triton_usable(b)):
        from fastgru.mingru import triton_scan

        reason = triton_scan.why_unusable(b)  # also accepts CPU tensors under TRITON_INTERPRET=1
        if reason is not None:
            raise RuntimeError(f"backend='triton': {reason}")
        return triton_scan.scan(a, b, h0)
    return sequential_scan(a, b, h0)
