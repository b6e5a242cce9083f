"""Backends run the sequential part of one GRU layer-direction; `fastgru.core.functional` picks one.

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

Cell options (keyword arguments of both functions). Backends that set SUPPORTS_CELL_OPTIONS = True honour
them (`select(..., plain=False)` skips the others), ln_gain included unless they set
SUPPORTS_LAYER_NORM = False or their `supports_layer_norm(H)` says no for the hidden size (the Triton
backend: H <= 512; `select(..., layer_norm=True, hidden_size=H)` skips those):
    rec_mask:  (B, H) recurrent-dropout mask, one per sequence: the cell sees h_{t-1} * rec_mask
               (Keras' recurrent_dropout semantics).
    zone_mask: (T, B, H) bool zoneout keep-mask (True = keep the previous value), training mode.
    ln_gain:   (3H,) gain of the recurrent layer norm (LayerNormGRU), or absent. Forward then also saves
               the normalised recurrent pre-activations (3H) and 2 rstd values per (t, b) after the
               gates, and backward returns a 4th tensor: dgh_pre (T, B, 3H), the gradient of the
               recurrent products before the norm (what pairs with h_{t-1} / r*h_{t-1} for dW_hh),
               and may return a 5th: the gain's gradient (3H,) summed in its loop (else the caller
               sums it from the saved values).
    gi_gain, gi_bias: (3H,) only where SUPPORTS_INPUT_NORM = True (LayerNormGRU's input side): forward
               layer-normalises each row of gi (the raw projections) inside its loop and the cell reads
               xhat * gi_gain + gi_bias. Saving, gi's rows become xhat in place and forward returns a
               third output, rstd (T*B,). Backward then takes gi_norm = (xhat, rstd, gi_gain): its dgi is
               the gradient of the raw projections, and it returns (dgi, dgh_n, dh0, dgh_pre, d ln_gain,
               d gi_gain, bias sums), bias sums being the sums over rows of d(xhat * gi_gain + gi_bias)
               (3H) and, for reset_after, of d(W_hn h + b_hn) (H); with both norms dgh_n may be empty.
    spec:      a CellSpec: activations, hard-sigmoid slope/offset, zoneout probability for eval mode
               (h_t = p h_{t-1} + (1 - p) cell(h_{t-1}) when zone_mask is None).

Optional: ``project(x, w_ih, b_ih, reuse) -> gi`` computes the input projections of all steps (one GEMM)
when a backend wants to place gi itself (reuse=True: inference, a workspace may be reused); otherwise the
caller does it with torch.addmm.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch

from fastgru.core.validation import check_choice, check_fraction, check_hard_sigmoid

BACKENDS = ("auto", "cpu", "torch", "triton")
ACTIVATIONS = {"sigmoid": 0, "hard_sigmoid": 1, "tanh": 2, "relu": 3, "softsign": 4}
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
LN_EPS = 1e-5  # epsilon of the layer norms (LayerNormGRU); the CPU kernel uses the same value


def layer_norm_offset(reset_after: bool, H: int) -> int:
    """Where the layer-norm values start in a saved-gates row: after r, z, n (and W_hn h + b_hn)."""
    return (4 if reset_after else 3) * H


def saved_width(reset_after: bool, layer_norm: bool, H: int) -> int:
    """Values saved per (t, b) by forward: the gates, then 3H normalised values and 2 rstd with a norm."""
    return layer_norm_offset(reset_after, H) + (3 * H + 2 if layer_norm else 0)


@dataclass(frozen=True)
class CellSpec:
    """What the cell computes beyond the plain GRU equations; the defaults are the plain GRU."""

    gate_activation: str = "sigmoid"
    candidate_activation: str = "tanh"
    hard_sigmoid_alpha: float = 0.2  # hard_sigmoid(x) = clamp(alpha * x + beta, 0, 1) (ONNX default;
    hard_sigmoid_beta: float = 0.5  # Keras 3 uses alpha = 1/6)
    zoneout: float = 0.0  # eval-mode zoneout probability

    def __post_init__(self) -> None:
        # the one place every backend's cell options are checked: a CellSpec that exists is valid, so the
        # CPU kernel, Triton and the torch loop are never handed options one of them would read differently
        check_choice("gate_activation", self.gate_activation, GATE_ACTIVATIONS)
        check_choice("candidate_activation", self.candidate_activation, tuple(ACTIVATIONS))
        check_hard_sigmoid((self.hard_sigmoid_alpha, self.hard_sigmoid_beta))
        check_fraction("zoneout", self.zoneout)

    @property
    def plain(self) -> bool:
        return self == PLAIN

    @property
    def gate_activation_id(self) -> int:
        return ACTIVATIONS[self.gate_activation]

    @property
    def candidate_activation_id(self) -> int:
        return ACTIVATIONS[self.candidate_activation]


PLAIN = CellSpec()


def _unsupported(module: ModuleType, plain: bool, layer_norm: bool, hidden_size: int | None) -> str:
    """What the call asks for that backend `module` does not honour ('' when nothing)."""
    if not plain and not getattr(module, "SUPPORTS_CELL_OPTIONS", False):
        return "cell options (recurrent dropout, zoneout, activations, layer norm)"
    if layer_norm and not getattr(module, "SUPPORTS_LAYER_NORM", True):
        return "the recurrent layer norm (LayerNormGRU)"
    sizes = getattr(module, "supports_layer_norm", None)  # backends whose norm kernels bound the hidden size
    if layer_norm and sizes is not None:
        if hidden_size is None:
            return "the recurrent layer norm (LayerNormGRU) without the hidden size (pass hidden_size=)"
        if not sizes(hidden_size):
            return f"the recurrent layer norm (LayerNormGRU) at hidden size {hidden_size}"
    return ""


def select(
    device: torch.device,
    name: str = "auto",
    plain: bool = True,
    dtype: torch.dtype | None = None,
    layer_norm: bool = False,
    hidden_size: int | None = None,
) -> ModuleType:
    """Return the backend module for `device`; `name` forces one ('cpu', 'torch', 'triton').

    plain=False asks for a backend that supports the cell options (masks, activations, zoneout);
    layer_norm=True (implies plain=False) also for the recurrent layer norm of `hidden_size` units. On
    CUDA the Triton backend serves the cell options, and the layer norm for hidden sizes its kernels take
    (triton.supports_layer_norm: H <= 512); for larger (or unknown) hidden sizes 'auto' runs the torch
    loop and 'triton' refuses, before anything is launched.
    The fused CPU kernel is float32/float64: other dtypes on a CPU (bf16, fp16) run the torch loop.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    plain = plain and not layer_norm
    if device.type == "cpu" and dtype is not None and dtype not in (torch.float32, torch.float64):
        if name == "cpu":
            raise RuntimeError(f"backend='cpu' (fused C++ kernel) supports float32 and float64, not {dtype}")
        name = "torch" if name == "auto" else name
    if name == "torch":
        from fastgru.backends import torch_loop

        return torch_loop
    if name == "triton" or (name == "auto" and device.type == "cuda"):
        try:
            from fastgru.backends import triton as triton_backend
        except ImportError as exc:  # triton missing or the GPU backend not built yet
            if name == "triton":
                raise RuntimeError(
                    "backend='triton' was asked for but Triton is not importable "
                    f"({exc}); install fastgru[gpu] or use backend='auto'"
                ) from exc
        else:
            available = getattr(triton_backend, "is_available", None)  # absent while the package is partial
            if available is None or not available(device):
                if name == "triton":
                    raise RuntimeError(f"backend='triton' needs a CUDA device with Triton; got device {device}")
            elif not (missing := _unsupported(triton_backend, plain, layer_norm, hidden_size)):
                return triton_backend
            elif name == "triton":
                raise RuntimeError(
                    f"backend='triton' does not support {missing}; use backend='auto', which runs such "
                    "calls in the torch loop on CUDA"
                )
    if device.type == "cpu" and name in ("auto", "cpu"):
        from fastgru.backends import cpu

        if cpu.is_available():
            return cpu
        if name == "cpu":
            raise RuntimeError(f"backend='cpu' (fused C++ kernel) is unavailable: {cpu.load_error()}")
    from fastgru.backends import torch_loop

    return torch_loop
