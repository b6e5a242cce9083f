"""The GRU equations step by step in float64: the oracle every test compares against. Never fast.

Implements the equations of docs/architecture.md literally, one time step at a time, with plain
torch float64 ops (autograd works through it, so it is also a gradient oracle). Both variants:
    reset_after=True  (PyTorch, cuDNN, Keras default):  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    reset_after=False (Cho et al. 2014):                 n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
and h' = (1 - z) * n + z * h. Weights use PyTorch's layout: (3H, I) / (3H, H), gate order r, z, n.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.to(torch.float64)


def activation(name: str, alpha: float = 0.2, beta: float = 0.5):
    """Activation by name, as Keras/ONNX define them (hard_sigmoid = clamp(alpha x + beta, 0, 1))."""
    table = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "softsign": lambda v: v / (1 + v.abs()),
        "hard_sigmoid": lambda v: torch.clamp(alpha * v + beta, 0.0, 1.0),
    }
    return table[name]


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    reset_after: bool = True,
    gate_activation: str = "sigmoid",
    candidate_activation: str = "tanh",
    hard_sigmoid: tuple[float, float] = (0.2, 0.5),
    layer_norm: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """One GRU step for a batch: x (B, I), h (B, H) -> h' (B, H), in float64.

    gate_activation replaces the sigmoid of r and z, candidate_activation the tanh of n.
    layer_norm = (gain_ih, gain_hh): LayerNormGRU (see layer_norm_gru_cell).
    """
    if layer_norm is not None:
        return layer_norm_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, layer_norm, reset_after,
                                   activation(gate_activation, *hard_sigmoid),
                                   activation(candidate_activation, *hard_sigmoid))
    sigmoid = activation(gate_activation, *hard_sigmoid)
    tanh = activation(candidate_activation, *hard_sigmoid)
    x, h, w_ih, w_hh = (t.to(torch.float64) for t in (x, h, w_ih, w_hh))
    b_ih, b_hh = _f64(b_ih), _f64(b_hh)
    H = h.shape[-1]
    w_ir, w_iz, w_in = w_ih[:H], w_ih[H : 2 * H], w_ih[2 * H :]
    w_hr, w_hz, w_hn = w_hh[:H], w_hh[H : 2 * H], w_hh[2 * H :]
    zero = torch.zeros(3 * H, dtype=torch.float64, device=h.device)
    b_ih = zero if b_ih is None else b_ih
    b_hh = zero if b_hh is None else b_hh
    b_ir, b_iz, b_in = b_ih[:H], b_ih[H : 2 * H], b_ih[2 * H :]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]

    r = sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    if reset_after:
        n = tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    else:
        n = tanh(x @ w_in.T + b_in + (r * h) @ w_hn.T + b_hn)
    return (1 - z) * n + z * h


def _norm(v: Tensor, gain: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension without shift: (v - mean) / sqrt(var + eps) * gain."""
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * gain.to(torch.float64)


def layer_norm_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, layer_norm, reset_after=True, sigmoid=torch.sigmoid,
                        tanh=torch.tanh) -> Tensor:
    """LayerNormGRU step (Ba et al. 2016, as haste): the input projections (all 3H) and the recurrent
    products are layer-normalised with gains, and b_ih / b_hh act as the norms' shifts. The recurrent
    norm covers all 3H values (reset_after=True) or the r,z block and the n block (reset_after=False)."""
    x, h, w_ih, w_hh = (t.to(torch.float64) for t in (x, h, w_ih, w_hh))
    H = h.shape[-1]
    zero = torch.zeros(3 * H, dtype=torch.float64, device=h.device)
    b_ih = zero if b_ih is None else b_ih.to(torch.float64)
    b_hh = zero if b_hh is None else b_hh.to(torch.float64)
    gain_ih, gain_hh = layer_norm
    gi = _norm(x @ w_ih.T, gain_ih) + b_ih
    if reset_after:
        gh = _norm(h @ w_hh.T, gain_hh) + b_hh
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    else:
        gh = _norm(h @ w_hh[: 2 * H].T, gain_hh[: 2 * H]) + b_hh[: 2 * H]
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H : 2 * H] + gh[:, H:])
        n = tanh(gi[:, 2 * H :] + _norm((r * h) @ w_hh[2 * H :].T, gain_hh[2 * H :]) + b_hh[2 * H :])
    return (1 - z) * n + z * h


def gru_layer(
    x: Tensor,
    h0: Tensor,
    weights: Weights,
    reset_after: bool = True,
    reverse: bool = False,
    lengths: Tensor | None = None,
    rec_mask: Tensor | None = None,
    zoneout: Tensor | float = 0.0,
    **cell_options,
) -> tuple[Tensor, Tensor]:
    """One layer, one direction, time-major x (T, B, I) -> (outputs (T, B, H), h_n (B, H)).

    With `lengths`, sequence b only has steps t < lengths[b]: its outputs after that are zero, its
    state is not updated there, and (reverse) it starts at its own last step.
    rec_mask (B, H): recurrent dropout as Keras does it: the cell sees h_{t-1} * rec_mask.
    zoneout: a (T, B, H) keep-mask or a probability p: h_t = k h_{t-1} + (1 - k) cell(...).
    cell_options go to gru_cell (activations).
    """
    T = x.shape[0]
    h = h0.to(torch.float64)
    outputs: list[Tensor] = [torch.zeros_like(h)] * T
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        seen = h if rec_mask is None else h * rec_mask.to(torch.float64)
        new = gru_cell(x[t], seen, *weights, reset_after=reset_after, **cell_options)
        keep = zoneout[t].to(torch.float64) if isinstance(zoneout, Tensor) else zoneout
        new = keep * h + (1 - keep) * new
        if lengths is None:
            h = new
            outputs[t] = new
        else:
            live = (lengths.to(h.device) > t).unsqueeze(1)
            h = torch.where(live, new, h)
            outputs[t] = torch.where(live, new, torch.zeros_like(new))
    return torch.stack(outputs), h


def gru(
    x: Tensor,
    h0: Tensor | None,
    weights: Sequence[Weights],
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    reset_after: bool = True,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """A stacked (optionally bidirectional) GRU with torch.nn.GRU's semantics, in float64.

    x: (T, B, I) or (B, T, I) if batch_first; h0: (layers * dirs, B, H) or None (zeros);
    weights: one (w_ih, w_hh, b_ih, b_hh) per layer and direction (forward, then reverse).
    Returns (output (T, B, dirs * H) or batch-first, h_n (layers * dirs, B, H)).
    """
    dirs = 2 if bidirectional else 1
    if len(weights) != num_layers * dirs:
        raise ValueError(f"weights: expected {num_layers * dirs} (w_ih, w_hh, b_ih, b_hh) tuples, got {len(weights)}")
    layer_in = x.to(torch.float64)
    if batch_first:
        layer_in = layer_in.transpose(0, 1)
    B = layer_in.shape[1]
    H = weights[0][1].shape[1]
    if h0 is None:
        h0 = torch.zeros(num_layers * dirs, B, H, dtype=torch.float64, device=x.device)
    finals = []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            y, h_n = gru_layer(layer_in, h0[k], weights[k], reset_after, reverse=d == 1, lengths=lengths)
            outs.append(y)
            finals.append(h_n)
        layer_in = torch.cat(outs, dim=2)
    output = layer_in.transpose(0, 1) if batch_first else layer_in
    return output, torch.stack(finals)


def mingru(
    x: Tensor,
    h0: Tensor | None,
    weights: Sequence[tuple[Tensor, Tensor | None]],
    batch_first: bool = False,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """MinGRU (Feng et al. 2024, "Were RNNs All We Needed?") step by step in float64, stacked layers.

        z   = sigmoid(W_z x_t + b_z)
        h~  = g(W_h x_t + b_h),   g(v) = v + 0.5 if v >= 0 else sigmoid(v)
        h_t = (1 - z) * h_{t-1} + z * h~

    x: (T, B, I) or (B, T, I) if batch_first; h0: (num_layers, B, H) or None (zeros); weights: one
    (weight (2H, I), bias (2H,) or None) per layer, the z rows first. With `lengths`, outputs at
    t >= lengths[b] are zero and h_n[b] is the state after step lengths[b] - 1.
    Returns (output (T, B, H) or batch-first, h_n (num_layers, B, H)).
    """
    layer_in = x.to(torch.float64)
    if batch_first:
        layer_in = layer_in.transpose(0, 1)
    T, B = layer_in.shape[0], layer_in.shape[1]
    H = weights[0][0].shape[0] // 2
    finals = []
    for layer, (weight, bias) in enumerate(weights):
        w = weight.to(torch.float64)
        b = torch.zeros(2 * H, dtype=torch.float64, device=x.device) if bias is None else bias.to(torch.float64)
        h = torch.zeros(B, H, dtype=torch.float64, device=x.device) if h0 is None else h0[layer].to(torch.float64)
        outputs = []
        for t in range(T):
            z = torch.sigmoid(layer_in[t] @ w[:H].T + b[:H])
            v = layer_in[t] @ w[H:].T + b[H:]
            cand = torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
            new = (1 - z) * h + z * cand
            if lengths is None:
                h = new
                outputs.append(new)
            else:
                live = (lengths.to(x.device) > t).unsqueeze(1)
                h = torch.where(live, new, h)
                outputs.append(torch.where(live, new, torch.zeros_like(new)))
        finals.append(h)
        layer_in = torch.stack(outputs)
    output = layer_in.transpose(0, 1) if batch_first else layer_in
    return output, torch.stack(finals)
