"""Backends run the sequential part of one GRU layer-direction; `fastgru.functional` picks one.

Every backend module exposes the same two functions (the contract below) and `is_available()`.

``recurrence_forward(gi, h0, w_hh, b_hh, lengths, reset_after, reverse, save) -> (buf, gates)``
    gi:      (T, B, 3H) input projections x_t @ W_ih^T + b_ih for all steps, gate order r, z, n.
    h0:      (B, H) initial state.  w_hh: (3H, H).  b_hh: (3H,) or None.
    lengths: None or int64 (B,) on the same device; steps t >= lengths[b] leave row b's state unchanged.
    reverse: process t = T-1 .. 0 instead of 0 .. T-1.
    buf:     (T+1, B, H) carried states. Forward direction: buf[0] = h0, step t writes buf[t+1].
             Reverse: buf[T] = h0, step t writes buf[t]. So h_n is buf[T] (forward) / buf[0] (reverse).
    gates:   if save: (T, B, 4H) = r, z, n, W_hn h + b_hn for reset_after=True, (T, B, 3H) = r, z, n
             for reset_after=False; else an empty tensor (inference keeps nothing).

``recurrence_backward(dbuf, buf, gates, w_hh, lengths, reset_after, reverse) -> (dgi, dgh_n, dh0)``
    dbuf:  (T+1, B, H) gradient of buf.  Returns
    dgi:   (T, B, 3H) gradient of the gate pre-activations coming from the input side (= d gi).
    dgh_n: (T, B, H) gradient of W_hn h + b_hn (reset_after=True only; empty otherwise, where the
           recurrent n-gradient equals dgi[..., 2H:] and pairs with r * h_prev instead of h_prev).
    dh0:   (B, H).
    Weight gradients are NOT computed here: the caller does one large GEMM per weight over T*B rows.

Optional: ``project(x, w_ih, b_ih) -> gi`` computes the input projections of all steps (one GEMM) when
a backend wants to place gi itself; otherwise the caller does it with torch.addmm.
"""

from __future__ import annotations

from types import ModuleType

import torch

BACKENDS = ("auto", "cpu", "torch", "triton")


def select(device: torch.device, name: str = "auto") -> ModuleType:
    """Return the backend module for `device`; `name` forces one ('cpu', 'torch', 'triton')."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "torch":
        from . import torch_loop

        return torch_loop
    if name == "triton" or (name == "auto" and device.type == "cuda"):
        try:
            from . import triton as triton_backend
        except ImportError as exc:  # triton missing or the GPU backend not built yet
            if name == "triton":
                raise RuntimeError(
                    "backend='triton' was asked for but Triton is not importable "
                    f"({exc}); install fastgru[gpu] or use backend='auto'"
                ) from exc
        else:
            if triton_backend.is_available(device):
                return triton_backend
            if name == "triton":
                raise RuntimeError(f"backend='triton' needs a CUDA device with Triton; got device {device}")
    if device.type == "cpu" and name in ("auto", "cpu"):
        from . import cpu

        if cpu.is_available():
            return cpu
        if name == "cpu":
            raise RuntimeError(f"backend='cpu' (fused C++ kernel) is unavailable: {cpu.load_error()}")
    from . import torch_loop

    return torch_loop
