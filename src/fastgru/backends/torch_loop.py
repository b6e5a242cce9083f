"""Pure-PyTorch backend: the recurrence as a Python loop of torch ops (any device, any dtype).

Always available; the fused backends are tested against it. Same contract as `fastgru.backends`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def is_available(device: torch.device | None = None) -> bool:
    return True


def _slots(T: int, reverse: bool):
    """(t, slot read, slot written) for each step in processing order."""
    for i in range(T):
        t = T - 1 - i if reverse else i
        yield t, (t + 1 if reverse else t), (t if reverse else t + 1)


def _live_mask(lengths: Tensor | None, t: int, dtype: torch.dtype) -> Tensor | None:
    return None if lengths is None else (lengths > t).to(dtype).unsqueeze(1)


def recurrence_forward(
    gi: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    save: bool,
) -> tuple[Tensor, Tensor]:
    T, B, _ = gi.shape
    H = w_hh.shape[1]
    buf = gi.new_empty(T + 1, B, H)
    buf[T if reverse else 0] = h0
    gates = gi.new_empty(T, B, (4 if reset_after else 3) * H) if save else gi.new_empty(0)
    bias = b_hh if b_hh is not None else gi.new_zeros(3 * H)
    for t, i, o in _slots(T, reverse):
        h = buf[i]
        g = gi[t]
        if reset_after:
            gh = torch.addmm(bias, h, w_hh.t())
            r = torch.sigmoid(g[:, :H] + gh[:, :H])
            z = torch.sigmoid(g[:, H : 2 * H] + gh[:, H : 2 * H])
            hn = gh[:, 2 * H :]
            n = torch.tanh(g[:, 2 * H :] + r * hn)
        else:
            gh = torch.addmm(bias[: 2 * H], h, w_hh[: 2 * H].t())
            r = torch.sigmoid(g[:, :H] + gh[:, :H])
            z = torch.sigmoid(g[:, H : 2 * H] + gh[:, H:])
            n = torch.tanh(g[:, 2 * H :] + torch.addmm(bias[2 * H :], r * h, w_hh[2 * H :].t()))
        new = n + z * (h - n)
        m = _live_mask(lengths, t, h.dtype)
        buf[o] = new if m is None else torch.lerp(h, new, m)
        if save:
            parts = (r, z, n, hn) if reset_after else (r, z, n)
            torch.cat(parts, dim=1, out=gates[t])
    return buf, gates


def recurrence_backward(
    dbuf: Tensor,
    buf: Tensor,
    gates: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    T, B, H = buf.shape[0] - 1, buf.shape[1], buf.shape[2]
    dgi = buf.new_empty(T, B, 3 * H)
    dgh_n = buf.new_empty(T, B, H) if reset_after else buf.new_empty(0)
    dh = torch.zeros_like(buf[0])
    steps = list(_slots(T, reverse))
    for t, i, o in reversed(steps):
        h = buf[i]
        g = dh + dbuf[o]
        r, z, n = gates[t, :, :H], gates[t, :, H : 2 * H], gates[t, :, 2 * H : 3 * H]
        m = _live_mask(lengths, t, h.dtype)
        if m is not None:
            keep = g * (1 - m)  # masked rows pass their gradient straight through
            g = g * m
        dn = g * (1 - z) * (1 - n * n)
        dz = g * (h - n) * z * (1 - z)
        if reset_after:
            hn = gates[t, :, 3 * H :]
            dr = dn * hn * r * (1 - r)
            dgh_n[t] = dn * r
            dh = g * z + torch.cat((dr, dz, dn * r), dim=1) @ w_hh
        else:
            drh = dn @ w_hh[2 * H :]
            dr = drh * h * r * (1 - r)
            dh = g * z + drh * r + torch.cat((dr, dz), dim=1) @ w_hh[: 2 * H]
        torch.cat((dr, dz, dn), dim=1, out=dgi[t])
        if m is not None:
            dh = dh + keep
    first_in = steps[0][1]
    return dgi, dgh_n, dh + dbuf[first_in]
