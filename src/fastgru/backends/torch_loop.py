"""Pure-PyTorch backend: the recurrence as a Python loop of torch ops (any device, any dtype).

Always available; the fused backends are tested against it. Same contract as `fastgru.backends`,
including the cell options (masks, zoneout, activations). `recurrence_forward` with save=False is
also differentiable by autograd (the states are stacked, never written in place): fastgru's double
backward recomputes the recurrence through it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastgru.backends import LN_EPS, PLAIN, CellSpec, layer_norm_offset, saved_width

SUPPORTS_CELL_OPTIONS = True


def is_available(device: torch.device | None = None) -> bool:
    return True


def activation(name: str, spec: CellSpec):
    """The activation function `name` (hard_sigmoid uses the spec's slope and offset)."""
    if name == "hard_sigmoid":
        return lambda v: torch.clamp(spec.hard_sigmoid_alpha * v + spec.hard_sigmoid_beta, 0, 1)
    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
            "softsign": lambda v: v / (1 + v.abs())}[name]


def activation_grad(name: str, y: Tensor, spec: CellSpec) -> Tensor:
    """d act / dx expressed through the output y = act(x)."""
    if name == "sigmoid":
        return y * (1 - y)
    if name == "hard_sigmoid":
        return ((y > 0) & (y < 1)).to(y.dtype) * spec.hard_sigmoid_alpha
    if name == "tanh":
        return 1 - y * y
    if name == "relu":
        return (y > 0).to(y.dtype)
    return (1 - y.abs()) ** 2  # softsign


def _ln(v: Tensor, gain: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Layer norm without shift over the last dim: (xhat * gain, xhat, rstd)."""
    mean = v.mean(-1, keepdim=True)
    rstd = (v.var(-1, unbiased=False, keepdim=True) + LN_EPS).rsqrt()
    xhat = (v - mean) * rstd
    return xhat * gain, xhat, rstd


def _ln_backward(dout: Tensor, gain: Tensor, xhat: Tensor, rstd: Tensor) -> Tensor:
    dx = dout * gain
    return rstd * (dx - dx.mean(-1, keepdim=True) - xhat * (dx * xhat).mean(-1, keepdim=True))


def _slots(T: int, reverse: bool):
    """(t, slot read, slot written) for each step in processing order."""
    for i in range(T):
        t = T - 1 - i if reverse else i
        yield t, (t + 1 if reverse else t), (t if reverse else t + 1)


def _live_mask(lengths: Tensor | None, t: int, dtype: torch.dtype) -> Tensor | None:
    return None if lengths is None else (lengths > t).to(dtype).unsqueeze(1)


def _keep(zone_mask: Tensor | None, spec: CellSpec, t: int, dtype: torch.dtype) -> Tensor | float:
    """Step t's zoneout keep-mask (a bool mask, as the op passes it) as numbers, or eval's probability."""
    return zone_mask[t].to(dtype) if zone_mask is not None else spec.zoneout


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
) -> tuple[Tensor, Tensor]:
    T, B, _ = gi.shape
    H = w_hh.shape[1]
    gate, cand = activation(spec.gate_activation, spec), activation(spec.candidate_activation, spec)
    states = [h0]  # in processing order; stacked into buf at the end (autograd-safe, no in-place writes)
    width = saved_width(reset_after, ln_gain is not None, H)
    gates = gi.new_empty(T, B, width) if save else gi.new_empty(0)
    bias = b_hh if b_hh is not None else gi.new_zeros(3 * H)
    for t, _, _ in _slots(T, reverse):
        h = states[-1]
        hm = h if rec_mask is None else h * rec_mask
        g = gi[t]
        norm = []  # (xhat, rstd) per normalised block
        if reset_after:
            gh = hm @ w_hh.t()
            if ln_gain is not None:
                gh, *stats = _ln(gh, ln_gain)
                norm.append(stats)
            gh = gh + bias
            r = gate(g[:, :H] + gh[:, :H])
            z = gate(g[:, H : 2 * H] + gh[:, H : 2 * H])
            hn = gh[:, 2 * H :]
            n = cand(g[:, 2 * H :] + r * hn)
        else:
            gh = hm @ w_hh[: 2 * H].t()
            if ln_gain is not None:
                gh, *stats = _ln(gh, ln_gain[: 2 * H])
                norm.append(stats)
            gh = gh + bias[: 2 * H]
            r = gate(g[:, :H] + gh[:, :H])
            z = gate(g[:, H : 2 * H] + gh[:, H:])
            ghn = (r * hm) @ w_hh[2 * H :].t()
            if ln_gain is not None:
                ghn, *stats = _ln(ghn, ln_gain[2 * H :])
                norm.append(stats)
            n = cand(g[:, 2 * H :] + ghn + bias[2 * H :])
        new = n + z * (hm - n)
        k = _keep(zone_mask, spec, t, h.dtype)
        new = k * h + (1 - k) * new
        m = _live_mask(lengths, t, h.dtype)
        states.append(new if m is None else torch.lerp(h, new, m))
        if save:
            parts = [r, z, n, hn] if reset_after else [r, z, n]
            if norm:
                rstds = [st[1] for st in norm] + [torch.zeros_like(norm[0][1])] * (2 - len(norm))
                parts += [st[0] for st in norm] + rstds
            torch.cat(parts, dim=1, out=gates[t])
    buf = torch.stack(states[::-1] if reverse else states)  # slot 0 = h0 forward, slot T = h0 reverse
    return buf, gates


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
) -> tuple[Tensor, ...]:
    T, B, H = buf.shape[0] - 1, buf.shape[1], buf.shape[2]
    ga, ca = spec.gate_activation, spec.candidate_activation
    dgi = buf.new_empty(T, B, 3 * H)
    dgh_n = buf.new_empty(T, B, H) if reset_after else buf.new_empty(0)
    dpre = buf.new_empty(T, B, 3 * H) if ln_gain is not None else None
    ln_at = layer_norm_offset(reset_after, H)
    dh = torch.zeros_like(buf[0])
    steps = list(_slots(T, reverse))
    for t, i, o in reversed(steps):
        h = buf[i]
        hm = h if rec_mask is None else h * rec_mask
        g = dh + dbuf[o]
        r, z, n = gates[t, :, :H], gates[t, :, H : 2 * H], gates[t, :, 2 * H : 3 * H]
        m = _live_mask(lengths, t, h.dtype)
        passthrough = 0 if m is None else g * (1 - m)  # skipped steps hand their gradient straight back
        if m is not None:
            g = g * m
        k = _keep(zone_mask, spec, t, h.dtype)
        direct = g * k
        g = g * (1 - k)
        dn = g * (1 - z) * activation_grad(ca, n, spec)
        dz = g * (hm - n) * activation_grad(ga, z, spec)
        if ln_gain is not None:
            xhat, rstd = gates[t, :, ln_at : ln_at + 3 * H], gates[t, :, ln_at + 3 * H :]
        if reset_after:
            hn = gates[t, :, 3 * H : 4 * H]
            dr = dn * hn * activation_grad(ga, r, spec)
            dgh_n[t] = dn * r
            da = torch.cat((dr, dz, dn * r), dim=1)
            if ln_gain is not None:
                da = dpre[t] = _ln_backward(da, ln_gain, xhat, rstd[:, :1])
            dhm = g * z + da @ w_hh
        else:
            da_n = dn
            if ln_gain is not None:
                da_n = dpre[t, :, 2 * H :] = _ln_backward(dn, ln_gain[2 * H :], xhat[:, 2 * H :], rstd[:, 1:2])
            drh = da_n @ w_hh[2 * H :]
            dr = drh * hm * activation_grad(ga, r, spec)
            da_rz = torch.cat((dr, dz), dim=1)
            if ln_gain is not None:
                da_rz = dpre[t, :, : 2 * H] = _ln_backward(da_rz, ln_gain[: 2 * H], xhat[:, : 2 * H], rstd[:, :1])
            dhm = g * z + drh * r + da_rz @ w_hh[: 2 * H]
        torch.cat((dr, dz, dn), dim=1, out=dgi[t])
        dh = passthrough + direct + (dhm if rec_mask is None else dhm * rec_mask)
    first_in = steps[0][1]
    if dpre is not None:
        return dgi, dgh_n, dh + dbuf[first_in], dpre
    return dgi, dgh_n, dh + dbuf[first_in]
