"""Replay a trained GRU layer step by step and keep what the module itself does not return: r, z, n.

`fastgru.nn.GRU` (and `torch.nn.GRU`) return only the states h_t.  To draw the gates we re-run one
layer-direction from the module's own weights with the GRU equations (docs/architecture.md), in
float64.  Lower layers are run with `fastgru.core.reference.gru` (the project's oracle) to get the chosen
layer's input, so the replay equals the module's output up to float32 rounding (the tests check this).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fastgru.core import reference

Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


def layer_weights(module: nn.Module, layer: int = 0, reverse: bool = False) -> Weights:
    """(w_ih, w_hh, b_ih, b_hh) of one layer-direction of a torch-layout recurrent module (GRU/LSTM/RNN).

    Works for fastgru.nn.GRU and torch.nn.GRU/LSTM/RNN; biases are None for bias=False.
    """
    num_layers = getattr(module, "num_layers", 1)
    if not 0 <= layer < num_layers:
        raise ValueError(f"layer must be in [0, {num_layers - 1}] for this model, got {layer}")
    if reverse and not getattr(module, "bidirectional", False):
        raise ValueError("reverse=True needs a bidirectional model")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    w_ih = getattr(module, "weight_ih" + suffix)
    w_hh = getattr(module, "weight_hh" + suffix)
    b_ih = getattr(module, "bias_ih" + suffix, None)
    b_hh = getattr(module, "bias_hh" + suffix, None)
    return w_ih, w_hh, b_ih, b_hh


def gru_step_gates(
    x: Tensor, h: Tensor, weights: Weights, reset_after: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One GRU step returning (r, z, n, h_new), all (B, H); differentiable, in the inputs' dtype.

    Same equations as `fastgru.core.reference.gru_cell` (h_new = (1 - z) * n + z * h, PyTorch convention).
    """
    w_ih, w_hh, b_ih, b_hh = weights
    gi = x @ w_ih.T + (b_ih if b_ih is not None else 0)
    gh = h @ w_hh.T + (b_hh if b_hh is not None else 0)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    if reset_after:
        n = torch.tanh(i_n + r * h_n)
    else:
        H = h.shape[-1]
        b_hn = b_hh[2 * H :] if b_hh is not None else 0
        n = torch.tanh(i_n + (r * h) @ w_hh[2 * H :].T + b_hn)
    return r, z, n, (1 - z) * n + z * h


@dataclass
class GateTrace:
    """Per-step values of one layer-direction for one sequence, float64, each (T, H) in time order.

    h_prev[t] is the state the step t read, h[t] the state it wrote.
    """

    r: Tensor
    z: Tensor
    n: Tensor
    h_prev: Tensor
    h: Tensor
    reset_after: bool = True

    @property
    def steps(self) -> int:
        return self.r.shape[0]


def _all_weights(module: nn.Module) -> list[Weights]:
    dirs = 2 if getattr(module, "bidirectional", False) else 1
    return [layer_weights(module, k, d == 1) for k in range(module.num_layers) for d in range(dirs)]


@torch.no_grad()
def gru_gate_trace(
    gru: nn.Module, x: Tensor, *, layer: int = 0, reverse: bool = False, h0: Tensor | None = None
) -> GateTrace:
    """Replay one sequence through a GRU module and return its gates at every step.

    gru: fastgru.nn.GRU or torch.nn.GRU (its `reset_after`, default True). x: one sequence (T, I),
    the module's input features. h0: (H,) initial state of that layer-direction (zeros if None; the
    layers below always start from zeros). For reverse=True the trace is still in time order t = 0..T-1.
    """
    if x.dim() != 2 or x.shape[1] != gru.input_size:
        raise ValueError(f"x must be one sequence of shape (T, {gru.input_size}), got {tuple(x.shape)}")
    layer_weights(gru, layer, reverse)  # validates layer and direction before any work
    reset_after = getattr(gru, "reset_after", True)
    weights = [tuple(None if w is None else w.detach().double() for w in g) for g in _all_weights(gru)]
    dirs = 2 if getattr(gru, "bidirectional", False) else 1
    seq = x.double().unsqueeze(1)  # (T, 1, I)
    if layer > 0:  # the layer's input is the stacked output of the layers below (the oracle computes it)
        seq, _ = reference.gru(
            seq, None, weights[: layer * dirs], num_layers=layer, bidirectional=dirs == 2, reset_after=reset_after
        )
    w = weights[layer * dirs + int(reverse)]
    H = w[1].shape[1]
    h = torch.zeros(1, H, dtype=torch.float64) if h0 is None else h0.detach().double().reshape(1, H)
    rows: list[tuple[Tensor, ...]] = [()] * seq.shape[0]
    order = range(seq.shape[0] - 1, -1, -1) if reverse else range(seq.shape[0])
    for t in order:
        r, z, n, h_new = gru_step_gates(seq[t], h, w, reset_after)
        rows[t] = (r[0], z[0], n[0], h[0], h_new[0])
        h = h_new
    r, z, n, h_prev, h_out = (torch.stack(col) for col in zip(*rows))
    return GateTrace(r=r, z=z, n=n, h_prev=h_prev, h=h_out, reset_after=reset_after)
