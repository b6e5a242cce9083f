"""The GRU as textbooks write it <-> fastgru: the "z lets the new in" convention and W . [h, x] matrices.

Convention. fastgru (like PyTorch, Keras, ONNX, Cho et al.) writes h' = z * h + (1 - z) * n: z keeps
the past. Many tutorials write h' = (1 - z) * h + z * n: z lets the new in. Since
sigmoid(-a) = 1 - sigmoid(a), the two are the same GRU with the z rows of W_ih, W_hh, b_ih and b_hh
negated; negation is exact, so converting back and forth is bit-exact.

Concatenated form (e.g. Olah's "Understanding LSTMs"): one matrix per gate over the concatenation,
    r = sigmoid(W_r . [h, x] + b_r),  z = sigmoid(W_z . [h, x] + b_z),
    h~ = tanh(W_h . [r * h, x] + b_h),
W_g of shape (H, H + I) with the h columns first. That is the reset-before (Cho, reset_after=False)
GRU: W_g = [W_hg | W_ig] exactly, and b_g = b_ig + b_hg (exactly b_ig when b_hg is zero, so
textbook -> fastgru -> textbook is bit-exact; fastgru -> textbook folds the two biases, same math).
A reset_after=True GRU cannot be written this way (r multiplies W_hn h + b_hn, not h) and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fastgru.interop.layout import (
    MATH_OPTIONS,
    GRUSpec,
    InteropError,
    Weights,
    build,
    from_state_dict,
    infer_spec,
    to_state_dict,
    weights_of,
)

CONVENTIONS = ("z_keeps_past", "z_lets_new_in")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise InteropError(
            f"convention must be one of {CONVENTIONS} (h' = z*h + (1-z)*n, or h' = (1-z)*h + z*n), got {convention!r}"
        )


def _negate_z(t: Tensor | None, H: int) -> Tensor | None:
    if t is None:
        return None
    r, z, n = t.split(H, dim=0)
    return torch.cat((r, -z, n), dim=0)


def flip_update_gate(weights: Sequence[Weights]) -> list[Weights]:
    """Switch hub weights between the two z conventions (negate the z rows; its own inverse)."""
    out = []
    for w_ih, w_hh, b_ih, b_hh in weights:
        H = w_hh.shape[1]
        out.append((_negate_z(w_ih, H), _negate_z(w_hh, H), _negate_z(b_ih, H), _negate_z(b_hh, H)))
    return out


def to_z_lets_new_in(module: nn.Module) -> dict[str, Tensor]:
    """torch-named weights of `module` rewritten for h' = (1 - z) * h + z * n (z rows negated).

    Works for fastgru and torch GRU / GRUCell modules, both reset_after variants; non-default
    activations and zoneout are refused (the textbook GRU is sigmoid / tanh).
    """
    spec, weights = weights_of(module)
    spec.refuse_options("the textbook GRU", MATH_OPTIONS)
    return to_state_dict(spec, flip_update_gate(weights))


def from_z_lets_new_in(
    state_dict: Mapping[str, Tensor], *, reset_after: bool, batch_first: bool = False
) -> nn.Module:
    """A fastgru GRU (GRUCell) from torch-named weights written for h' = (1 - z) * h + z * n.

    The keys say the sizes, layers and directions; the variant must be given (reset_after=False is
    the textbook n = tanh(W_in x + W_hn (r * h) + b)).
    """
    spec = infer_spec(state_dict, reset_after=reset_after, batch_first=batch_first)
    weights = from_state_dict(spec, {k: v.detach() for k, v in state_dict.items()})
    return build(spec, flip_update_gate(weights))


@dataclass
class ConcatenatedGRU:
    """One layer-direction in the concatenated form: W_g (H, H + I) acts on [h, x] ([r * h, x] for W_h)."""

    W_r: Tensor
    W_z: Tensor
    W_h: Tensor
    b_r: Tensor | None = None
    b_z: Tensor | None = None
    b_h: Tensor | None = None
    convention: str = "z_lets_new_in"

    @property
    def hidden_size(self) -> int:
        return self.W_r.shape[0]

    @property
    def input_size(self) -> int:
        return self.W_r.shape[1] - self.W_r.shape[0]


def to_concatenated(module: nn.Module, *, convention: str) -> list[ConcatenatedGRU]:
    """The concatenated textbook form of a reset_after=False GRU, one entry per layer-direction.

    Order: layer 0 forward, layer 0 reverse (if bidirectional), layer 1 forward, ...
    convention: 'z_lets_new_in' (h' = (1-z)*h + z*h~, as Olah and most tutorials) or 'z_keeps_past'.
    """
    _check_convention(convention)
    spec, weights = weights_of(module)
    spec.refuse_options("the textbook GRU", MATH_OPTIONS)
    if spec.reset_after:
        raise InteropError(
            "the concatenated form W_h . [r * h, x] describes reset_after=False (Cho et al. 2014); this GRU has "
            "reset_after=True (r multiplies W_hn h + b_hn), which one matrix over [h, x] cannot express"
        )
    if convention == "z_lets_new_in":
        weights = flip_update_gate(weights)
    out = []
    for w_ih, w_hh, b_ih, b_hh in weights:
        H = w_hh.shape[1]
        Wi, Wh = w_ih.split(H), w_hh.split(H)
        mats = [torch.cat((Wh[g], Wi[g]), dim=1) for g in range(3)]
        if b_ih is None:
            biases = [None, None, None]
        else:
            folded = b_ih if not bool(b_hh.any()) else b_ih + b_hh
            biases = list(folded.split(H))
        out.append(ConcatenatedGRU(*mats, *biases, convention=convention))
    return out


def from_concatenated(
    layers: Sequence[ConcatenatedGRU] | ConcatenatedGRU,
    *,
    bidirectional: bool = False,
    batch_first: bool = False,
) -> nn.Module:
    """A fastgru GRU (reset_after=False) from concatenated textbook weights, one entry per layer-direction.

    Each entry's `convention` says how its z is meant. Biases go to b_ih (b_hh is zero); exact copies.
    """
    if isinstance(layers, ConcatenatedGRU):
        layers = [layers]
    layers = list(layers)
    dirs = 2 if bidirectional else 1
    if not layers or len(layers) % dirs:
        raise InteropError(f"expected a non-empty list of layer-directions, a multiple of {dirs}; got {len(layers)}")
    first = layers[0]
    H = first.hidden_size
    has_bias = first.b_r is not None
    weights: list[Weights] = []
    for i, c in enumerate(layers):
        _check_convention(c.convention)
        where = f"layer-direction {i}"
        for name in ("W_r", "W_z", "W_h"):
            W = getattr(c, name)
            if W.dim() != 2 or W.shape[0] != H or W.shape[1] <= H:
                raise InteropError(
                    f"{where}: {name} must be (hidden_size={H}, hidden_size + input_size), got {tuple(W.shape)}"
                )
        if len({tuple(c.W_r.shape), tuple(c.W_z.shape), tuple(c.W_h.shape)}) != 1:
            raise InteropError(f"{where}: W_r, W_z, W_h must have the same shape")
        biases = (c.b_r, c.b_z, c.b_h)
        if any((b is not None) != has_bias for b in biases):
            raise InteropError(f"{where}: give all of b_r, b_z, b_h or none (as in layer-direction 0)")
        w_hh = torch.cat([W[:, :H] for W in (c.W_r, c.W_z, c.W_h)]).detach()
        w_ih = torch.cat([W[:, H:] for W in (c.W_r, c.W_z, c.W_h)]).detach()
        if has_bias:
            for name, b in zip(("b_r", "b_z", "b_h"), biases):
                if tuple(b.shape) != (H,):
                    raise InteropError(f"{where}: {name} must have shape ({H},), got {tuple(b.shape)}")
            b_ih = torch.cat(biases).detach()
            group: Weights = (w_ih, w_hh, b_ih, torch.zeros_like(b_ih))
        else:
            group = (w_ih, w_hh, None, None)
        if c.convention == "z_lets_new_in":
            group = flip_update_gate([group])[0]
        weights.append(group)
    spec = GRUSpec(
        input_size=first.input_size, hidden_size=H, num_layers=len(layers) // dirs, bias=has_bias,
        bidirectional=bidirectional, reset_after=False, batch_first=batch_first,
    )
    return build(spec, weights)
