"""MinGRU as functions (Feng et al. 2024, "Were RNNs All We Needed?"): the layer between scans and modules.

The gates read only x_t, so all of them come from one GEMM before the recurrence:

    z_t  = sigmoid(W_z x_t + b_z)
    h~_t = g(W_h x_t + b_h),   g(v) = v + 0.5 if v >= 0 else sigmoid(v)   (positive, continuous)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

and what is left is the linear recurrence h_t = a_t h_{t-1} + b_t with a_t = 1 - z_t, b_t = z_t h~_t
(fastgru.mingru.scan). Weight layout per layer: weight (2H, I) with the z rows first, then the h~ rows; bias (2H,).

Modes (all give the same outputs, to rounding):
  "sequential": one fused multiply-add per step (the streaming form, also what `step` computes), in
                an autograd Function with a hand-written backward (the same loop backwards);
  "parallel":   the log-space scan (log a_t = -softplus(k), log b_t = -softplus(-k) + log g(v): no
                1 - sigmoid cancellation), or on a CUDA device with Triton the Triton scan kernel;
  "auto":       parallel on CUDA, sequential on the CPU (faster there: see BENCHMARKS.md, section mingru).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgru.core.errors import GRUInputError
from fastgru.core.validation import check_hidden, check_input, check_lengths, check_same
from fastgru.mingru import scan

MODES = ("auto", "parallel", "sequential")


def g(v: Tensor) -> Tensor:
    """The paper's candidate activation: v + 0.5 for v >= 0, sigmoid(v) below (always > 0).

    Written as sigmoid(min(v, 0)) + max(v, 0): the same values bit for bit (sigmoid(0) = 0.5), with
    fewer temporaries than a where() of both branches.
    """
    return torch.sigmoid(v.clamp(max=0)) + v.clamp(min=0)


def log_g(v: Tensor) -> Tensor:
    """log g(v) without evaluating a log of a non-positive number in either branch (safe gradients)."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def coefficients(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) of h_t = a h_{t-1} + b from the gate pre-activations: a = 1 - z, b = z g(v), z = sigmoid(k).

    a is computed as sigmoid(-k): accurate to an ulp even where z rounds to 1 (1 - z would be 0).
    """
    return torch.sigmoid(-k), torch.sigmoid(k) * g(v)


def _gates(proj: Tensor) -> tuple[Tensor, Tensor]:
    """(z, g(v)) from proj = [k, v] (..., 2H) with two fresh tensors (no autograd: in-place inside)."""
    H = proj.shape[-1] // 2
    k, v = proj[..., :H], proj[..., H:]
    cand = v.clamp(max=0).sigmoid_()
    cand += v.clamp(min=0)
    return torch.sigmoid(k), cand


class _SequentialMinGRU(torch.autograd.Function):
    """proj (T, B, 2H), h0 (B, H) -> h (T, B, H) by the step loop, with a hand-written backward.

    Forward keeps only proj, h0 and the states; backward recomputes z and g(v) (cheap, elementwise),
    runs G_t = dy_t + (1 - z_{t+1}) G_{t+1} backwards, and forms
        dk = G (g - h_{t-1}) z (1 - z),   dv = G z g'(v),   dh0 = (1 - z_0) G_0,
    with g'(v) = 1 for v >= 0 and g (1 - g) below. The weight gradients follow from dproj by the
    autograd of the one input GEMM.
    """

    @staticmethod
    def forward(ctx, proj: Tensor, h0: Tensor) -> Tensor:
        z, b = _gates(proj)
        b *= z
        a = torch.neg(proj[..., : h0.shape[-1]], out=z).sigmoid_()  # 1 - z as sigmoid(-k), in z's memory
        out = scan.loop_forward(a, b, h0)
        ctx.save_for_backward(proj, h0, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: Tensor):
        proj, h0, out = ctx.saved_tensors
        H = h0.shape[-1]
        z, cand = _gates(proj)
        a = torch.neg(proj[..., :H]).sigmoid_()
        G = scan.loop_reverse(a, dout.contiguous())
        dh0 = a[0] * G[0]
        dproj = torch.empty_like(proj)
        dk, dv = dproj[..., :H], dproj[..., H:]
        torch.sub(cand, torch.cat([h0.unsqueeze(0), out[:-1]]), out=dk)
        dk *= G
        dk *= z
        dk *= a
        torch.mul(G, z, out=dv)
        dv *= torch.where(proj[..., H:] >= 0, 1.0, cand - cand * cand)
        return dproj, dh0


def log_coefficients(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(log a, log b): log(1 - z) = -softplus(k), log z = -softplus(-k), plus log g(v)."""
    return -F.softplus(k), -F.softplus(-k) + log_g(v)


def resolve_mode(mode: str, device: torch.device) -> str:
    """'auto' -> 'parallel' on CUDA, 'sequential' elsewhere; anything else is checked and returned."""
    if mode not in MODES:
        raise GRUInputError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "parallel" if device.type == "cuda" else "sequential"
    return mode


def mingru_step(x: Tensor, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One MinGRU step for a batch: x (B, I), h (B, H) -> h' (B, H) (the sequential mode's arithmetic)."""
    k, v = F.linear(x, weight, bias).chunk(2, dim=-1)
    a, b = coefficients(k, v)
    return torch.addcmul(b, a, h)


def mingru_layer(
    x: Tensor,
    h0: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    *,
    mode: str = "auto",
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One MinGRU layer, time-major: x (T, B, I), h0 (B, H) or None -> (output (T, B, H), h_n (B, H)).

    With `lengths` (int64 (B,), on any device) outputs at t >= lengths[b] are zero and h_n[b] is the
    state at step lengths[b] - 1. The recurrence is causal, so running every row over all T steps
    and masking afterwards is exact.
    """
    T, B, _ = x.shape
    H = weight.shape[0] // 2
    proj = F.linear(x, weight, bias)
    k, v = proj[..., :H], proj[..., H:]
    mode = resolve_mode(mode, x.device)
    if mode == "sequential":
        out = _SequentialMinGRU.apply(proj, x.new_zeros(B, H) if h0 is None else h0.contiguous())
    elif scan.triton_usable(x):
        a, b = coefficients(k, v)
        out = scan.linear_scan(a, b, h0, backend="triton")
    else:
        la, lb = log_coefficients(k, v)
        out = scan.log_scan(la, lb, h0)
    if lengths is None:
        return out, out[T - 1]
    lengths = lengths.to(x.device)
    h_n = out[lengths - 1, torch.arange(B, device=x.device)]
    live = torch.arange(T, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
    return out * live.unsqueeze(-1).to(out.dtype), h_n


def mingru(
    input: Tensor,
    hx: Tensor | None,
    weights: Sequence[tuple[Tensor, Tensor | None]],
    *,
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    mode: str = "auto",
    lengths: Tensor | Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """A stack of MinGRU layers with torch.nn.GRU's calling convention (validated first).

    input (T, B, I) or (B, T, I) if batch_first; hx (num_layers, B, H) or None (zeros); weights: one
    (weight (2H, I_k), bias (2H,) or None) per layer. dropout: on each layer's output except the
    last, in training only (as torch.nn.GRU). Returns (output, h_n (num_layers, B, H)).
    """
    if not weights:
        raise GRUInputError("weights must hold at least one (weight, bias) layer")
    I = weights[0][0].shape[1]
    H = weights[0][0].shape[0] // 2
    check_input(input, I, batch_first)
    x = input.transpose(0, 1) if batch_first else input
    T, B = x.shape[0], x.shape[1]
    for layer, (w, b) in enumerate(weights):
        check_same(w, input, f"weight_l{layer}")
        if b is not None:
            check_same(b, input, f"bias_l{layer}")
    if hx is not None:
        check_hidden(hx, (len(weights), B, H), input)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T, enforce_sorted=False)
    mode = resolve_mode(mode, input.device)
    finals = []
    for layer, (w, b) in enumerate(weights):
        if layer > 0 and dropout > 0.0 and training:
            x = F.dropout(x, dropout, training=True)
        x, h_n = mingru_layer(x, None if hx is None else hx[layer], w, b, mode=mode, lengths=lengths)
        finals.append(h_n)
    output = x.transpose(0, 1) if batch_first else x
    return output, torch.stack(finals)
