"""Layer norm over the rows of the input projections, in place (LayerNormGRU's input side).

In place because the projections of all T steps are a large buffer: a fresh normalised copy costs a
page fault per page on first touch, which is most of what an unfused input norm costs. The fused CPU
kernel does it when it is loaded; other devices and dtypes use the same formulas in torch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastgru.backends import LN_EPS, cpu


def _ext(t: Tensor):
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and t.is_contiguous():
        return cpu.load()
    return None


def normalize_(v: Tensor, gain: Tensor, bias: Tensor | None, keep_xhat: bool) -> Tensor:
    """Rows of v (..., N) <- xhat (keep_xhat) or xhat * gain + bias; returns rstd per row (rows,)."""
    ext = _ext(v)
    if ext is not None:
        return ext.norm_rows(v, gain.contiguous(), None if bias is None else bias.contiguous(), keep_xhat)
    rows = v.view(-1, v.shape[-1])
    var, mean = torch.var_mean(rows, dim=1, correction=0, keepdim=True)
    rstd = torch.rsqrt(var + LN_EPS)
    rows.sub_(mean).mul_(rstd)
    if not keep_xhat:
        rows.mul_(gain)
        if bias is not None:
            rows.add_(bias)
    return rstd.view(-1)


def normalize_backward_(dy: Tensor, xhat: Tensor, rstd: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
    """dy (rows, N), the gradient of xhat * gain + bias, becomes in place the gradient of the rows before
    the norm. Returns (dgain, dbias)."""
    ext = _ext(dy)
    if ext is not None and xhat.is_contiguous():
        dgain, dbias = ext.norm_rows_backward(dy, xhat, rstd.contiguous(), gain.contiguous())
        return dgain, dbias
    dgain = (dy * xhat).sum(0)
    dbias = dy.sum(0)
    dx = dy * gain
    m1 = dx.mean(1, keepdim=True)
    m2 = (dx * xhat).mean(1, keepdim=True)
    dy.copy_(rstd.view(-1, 1) * (dx - m1 - xhat * m2))
    return dgain, dbias
