"""Gradient flow through time: ||dh_T / dh_t|| against T - t for GRU, LSTM and tanh RNN.

The vanishing-gradient problem the GRU was made to fix: in a tanh RNN the Jacobian of the last state with
respect to an early state shrinks geometrically with the distance T - t; gated units keep a path
(z * h in the GRU, f * c in the LSTM) along which it can survive.

How it is computed: the first layer of each model is unrolled step by step from its own weights (plain
torch ops, so every h_t is a node of the graph); each sequence is repeated H times in the batch and
h_T is back-propagated with the identity as output gradient, so the gradient reaching h_t in batch row b
is row b of the Jacobian dh_T/dh_t, and its Frobenius norm needs a single backward pass.  For the LSTM,
h_t is the output state (c_t is held as a separate variable; paths through later cells are included).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from fastgru.apps.plots.gates import gru_step_gates, layer_weights
from fastgru.apps.plots.heatmap import save_figure


def cell_kind(module: nn.Module) -> str:
    """'gru', 'lstm', 'rnn_tanh' or 'rnn_relu' for a recurrent module with torch's parameter names."""
    mode = getattr(module, "mode", None)  # torch.nn.RNNBase subclasses say GRU / LSTM / RNN_TANH / RNN_RELU
    if mode is not None:
        return mode.lower()
    if hasattr(module, "reset_after"):  # fastgru.nn.GRU
        return "gru"
    raise ValueError(f"cannot tell the cell type of {type(module).__name__}")


def unroll_first_layer(module: nn.Module, x: Tensor) -> list[Tensor]:
    """Run layer 0 (forward direction) of `module` over x (T, B, I) step by step; return [h_1, ..., h_T].

    Each h_t is a graph node with retained gradient. Zero initial state, like the modules' default.
    """
    kind = cell_kind(module)
    w_ih, w_hh, b_ih, b_hh = weights = layer_weights(module, 0)
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    states = []
    for t in range(T):
        if kind == "gru":
            h = gru_step_gates(x[t], h, weights, getattr(module, "reset_after", True))[3]
        else:
            pre = x[t] @ w_ih.T + h @ w_hh.T + (b_ih if b_ih is not None else 0) + (b_hh if b_hh is not None else 0)
            if kind == "lstm":
                i, f, g, o = pre.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(pre) if kind == "rnn_tanh" else torch.relu(pre)
        h.retain_grad()
        states.append(h)
    return states


def jacobian_norms(module: nn.Module, x: Tensor) -> Tensor:
    """Mean over sequences of ||dh_T/dh_t||_F for t = T, T-1, ..., 1; returns (T,) indexed by T - t.

    x: (S, T, I) batch-first, S sequences (e.g. real ones from the data set).
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (sequences, steps, features), got shape {tuple(x.shape)}")
    S, T, _ = x.shape
    H = layer_weights(module, 0)[1].shape[1]
    dtype = layer_weights(module, 0)[0].dtype
    xs = x.to(dtype).repeat_interleave(H, dim=0).transpose(0, 1)  # (T, S*H, I): sequence s in rows s*H..
    states = unroll_first_layer(module, xs)
    eye = torch.eye(H, dtype=dtype).repeat(S, 1)  # row s*H + b selects output unit b
    states[-1].backward(eye)
    norms = torch.stack([h.grad.view(S, H, H).pow(2).sum((1, 2)).sqrt().mean() for h in states])
    module.zero_grad(set_to_none=True)
    return norms.flip(0).detach()  # index k = T - t


def plot_gradient_flow(
    norms: Mapping[str, Tensor],
    path: str | Path,
    *,
    title: str | None = None,
    dashed: Collection[str] = (),
    colors: Mapping[str, str] | None = None,
) -> Path:
    """Save a log-scale plot of ||dh_T/dh_t|| against T - t, one line per model (names in `dashed` dashed)."""
    fig = Figure(figsize=(6.5, 4.0))
    ax = fig.subplots()
    for name, values in norms.items():
        ax.semilogy(range(len(values)), values.clamp_min(1e-30).numpy(), label=name, linewidth=1.8,
                    linestyle="--" if name in dashed else "-", color=(colors or {}).get(name))
    ax.set_xlabel("distance T - t (steps back from the last state)")
    ax.set_ylabel("||dh_T / dh_t||  (Frobenius)")
    ax.set_title(title or "Gradient flow through time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
