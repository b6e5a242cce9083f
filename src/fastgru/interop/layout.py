"""The hub every conversion goes through: a GRU's shape (`GRUSpec`) plus its weights in PyTorch layout.

Every format converts to and from one thing: a `GRUSpec` and a list of (w_ih, w_hh, b_ih, b_hh) per
layer and direction (layer 0 forward, layer 0 reverse, layer 1 forward, ...), in torch.nn.GRU's layout
((3H, I), (3H, H), (3H,), (3H,)) and gate order r, z, n; biases are None when the GRU has none. That is
also `fastgru.core.reference.gru`'s weight format. Keeping one hub means each format needs two functions,
and all the re-ordering lives in the format's own module (see `swap_rz`).

Only index operations (slicing, cat, transpose, negation) are used on weights here, never arithmetic,
so conversions through the hub are exact to the bit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


class InteropError(ValueError):
    """A model or file cannot be converted exactly; the message names the option or tensor at fault."""


@dataclass(frozen=True)
class GRUSpec:
    """The sizes and variant flags that, with the weights, fully describe a GRU (torch's names).

    cell=True describes a single-step GRUCell (num_layers=1, bidirectional=False). batch_first and
    dropout do not touch the weights; they are carried so a converted module behaves like its source.
    The cell options (activations, hard_sigmoid's (alpha, beta), input/recurrent dropout, zoneout) are
    fastgru.nn.GRU's; each format maps those it has and refuses the others by name.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    reset_after: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    cell: bool = False
    gate_activation: str = "sigmoid"
    candidate_activation: str = "tanh"
    hard_sigmoid: tuple[float, float] = (0.2, 0.5)
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InteropError(f"{name} must be a positive integer, got {value!r}")
        if self.cell and (self.num_layers != 1 or self.bidirectional):
            raise InteropError("a GRUCell spec must have num_layers=1 and bidirectional=False")
        object.__setattr__(self, "hard_sigmoid", tuple(float(v) for v in self.hard_sigmoid))
        if self.cell and self.cell_options():
            raise InteropError(f"fastgru.nn.GRUCell has no cell options; got {self.cell_options()}")

    def cell_options(self) -> dict:
        """The cell options that differ from the plain GRU (empty for a plain GRU)."""
        out = {k: getattr(self, k) for k, v in _PLAIN_OPTIONS.items() if getattr(self, k) != v}
        if "hard_sigmoid" in out and "hard_sigmoid" not in (self.gate_activation, self.candidate_activation):
            del out["hard_sigmoid"]  # unused
        return out

    def refuse_options(self, target: str, names: tuple[str, ...], hint: str = "") -> None:
        """Raise InteropError naming every non-default option among `names` that `target` cannot hold."""
        bad = {k: v for k, v in self.cell_options().items() if k in names}
        if bad:
            listed = ", ".join(f"{k}={v!r}" for k, v in bad.items())
            raise InteropError(f"{target} cannot express {listed}{hint}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size * self.num_directions

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> GRUSpec:
        return replace(self, **changes)


_PLAIN_OPTIONS = {
    "gate_activation": "sigmoid",
    "candidate_activation": "tanh",
    "hard_sigmoid": (0.2, 0.5),
    "input_dropout": 0.0,
    "recurrent_dropout": 0.0,
    "zoneout": 0.0,
}
TRAINING_OPTIONS = ("input_dropout", "recurrent_dropout")  # inactive in eval mode
MATH_OPTIONS = ("gate_activation", "candidate_activation", "hard_sigmoid", "zoneout")  # change eval outputs


def swap_rz(t: Tensor, hidden_size: int, dim: int = 0) -> Tensor:
    """Swap the first two H-blocks along `dim`: torch's r, z, n <-> Keras/ONNX's z, r, h (an involution)."""
    H = hidden_size
    if t.shape[dim] != 3 * H:
        raise InteropError(f"expected {3 * H} (= 3 x hidden_size) entries along dim {dim}, got shape {tuple(t.shape)}")
    r, z, n = t.split(H, dim=dim)
    return torch.cat((z, r, n), dim=dim)


def param_names(spec: GRUSpec) -> list[tuple[str, str, str | None, str | None]]:
    """torch parameter names (w_ih, w_hh, b_ih, b_hh) per layer-direction, in hub order."""
    if spec.cell:
        names = [("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    else:
        names = [
            (f"weight_ih_l{k}{s}", f"weight_hh_l{k}{s}", f"bias_ih_l{k}{s}", f"bias_hh_l{k}{s}")
            for k in range(spec.num_layers)
            for s in ("", "_reverse")[: spec.num_directions]
        ]
    if not spec.bias:
        names = [(a, b, None, None) for a, b, _, _ in names]
    return names


def check_weights(spec: GRUSpec, weights: Sequence[Weights], source: str = "weights") -> None:
    """Raise InteropError unless `weights` has exactly the shapes `spec` implies."""
    groups = param_names(spec)
    if len(weights) != len(groups):
        raise InteropError(
            f"{source}: expected {len(groups)} layer-directions for num_layers={spec.num_layers}, "
            f"bidirectional={spec.bidirectional}, got {len(weights)}"
        )
    H = spec.hidden_size
    for i, (group, names) in enumerate(zip(weights, groups)):
        layer = i // spec.num_directions
        shapes = ((3 * H, spec.layer_input_size(layer)), (3 * H, H), (3 * H,), (3 * H,))
        for t, name, shape in zip(group, names, shapes):
            if name is None:
                if t is not None:
                    raise InteropError(f"{source}: spec has bias=False but a bias tensor was given")
                continue
            if t is None:
                raise InteropError(f"{source}: {name} is missing (spec has bias=True)")
            if tuple(t.shape) != shape:
                raise InteropError(f"{source}: {name} must have shape {shape}, got {tuple(t.shape)}")


def to_state_dict(spec: GRUSpec, weights: Sequence[Weights]) -> dict[str, Tensor]:
    """The torch-named state dict (weight_ih_l0, ...) of hub weights."""
    check_weights(spec, weights)
    out: dict[str, Tensor] = {}
    for group, names in zip(weights, param_names(spec)):
        for t, name in zip(group, names):
            if name is not None:
                out[name] = t
    return out


def from_state_dict(spec: GRUSpec, state_dict: Mapping[str, Tensor], source: str = "state_dict") -> list[Weights]:
    """Hub weights from a torch-named state dict; every expected key must be there and no other."""
    groups = param_names(spec)
    expected = {n for g in groups for n in g if n is not None}
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise InteropError(
            f"{source} does not match the layout {spec}: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}"
        )
    weights = [tuple(None if n is None else state_dict[n] for n in g) for g in groups]
    check_weights(spec, weights, source)
    return weights  # type: ignore[return-value]


_NAME = re.compile(r"^(weight|bias)_(ih|hh)(?:_l(\d+)(_reverse)?)?$")


def infer_spec(state_dict: Mapping[str, Tensor], *, reset_after: bool, batch_first: bool = False) -> GRUSpec:
    """A GRUSpec from a torch-named GRU/GRUCell state dict's keys and shapes (reset_after is not in it)."""
    layers, reverse, cell, bias = set(), False, False, False
    for key in state_dict:
        m = _NAME.match(key)
        if m is None:
            raise InteropError(f"state dict key {key!r} is not a GRU parameter name (weight_ih_l0, bias_hh, ...)")
        kind, _, layer, rev = m.groups()
        bias |= kind == "bias"
        if layer is None:
            cell = True
        else:
            layers.add(int(layer))
            reverse |= rev is not None
    if cell and layers:
        raise InteropError("state dict mixes GRUCell names (weight_ih) with GRU names (weight_ih_l0)")
    first = "weight_ih" if cell else "weight_ih_l0"
    if first not in state_dict or ("weight_hh" if cell else "weight_hh_l0") not in state_dict:
        raise InteropError(f"state dict has no {first!r} / weight_hh: not a GRU state dict")
    num_layers = 1 if cell else max(layers) + 1
    if not cell and layers != set(range(num_layers)):
        raise InteropError(f"state dict has layers {sorted(layers)}; expected 0..{num_layers - 1}")
    w_hh = state_dict["weight_hh" if cell else "weight_hh_l0"]
    spec = GRUSpec(
        input_size=int(state_dict[first].shape[1]),
        hidden_size=int(w_hh.shape[1]),
        num_layers=num_layers,
        bias=bias,
        bidirectional=reverse,
        reset_after=reset_after,
        batch_first=batch_first,
        cell=cell,
    )
    from_state_dict(spec, state_dict)  # full key and shape check
    return spec


def spec_of(module: nn.Module) -> GRUSpec:
    """The GRUSpec of a fastgru or torch GRU / GRUCell (exact classes: a subclass may compute differently)."""
    from torch.nn import GRU as TorchGRU
    from torch.nn import GRUCell as TorchGRUCell

    from fastgru.nn import GRU, GRUCell

    kind = type(module)
    if kind in (GRUCell, TorchGRUCell):
        return GRUSpec(
            input_size=module.input_size,
            hidden_size=module.hidden_size,
            bias=bool(module.bias),
            reset_after=bool(getattr(module, "reset_after", True)),
            cell=True,
        )
    if kind in (GRU, TorchGRU):
        options = {}
        cell = getattr(module, "cell", None)
        if cell is not None:  # fastgru's CellSpec
            options = {
                "gate_activation": cell.gate_activation,
                "candidate_activation": cell.candidate_activation,
                "hard_sigmoid": (cell.hard_sigmoid_alpha, cell.hard_sigmoid_beta),
                "input_dropout": float(getattr(module, "input_dropout", 0.0)),
                "recurrent_dropout": float(getattr(module, "recurrent_dropout", 0.0)),
                "zoneout": float(getattr(module, "zoneout", 0.0)),
            }
        return GRUSpec(
            input_size=module.input_size,
            hidden_size=module.hidden_size,
            num_layers=module.num_layers,
            bias=bool(module.bias),
            bidirectional=bool(module.bidirectional),
            reset_after=bool(getattr(module, "reset_after", True)),
            batch_first=bool(module.batch_first),
            dropout=float(module.dropout),
            **options,
        )
    raise InteropError(
        f"expected a fastgru.nn.GRU/GRUCell or torch.nn.GRU/GRUCell, got {kind.__module__}.{kind.__name__}"
        + (" (variants such as LayerNormGRU have no equivalent in the other formats)" if issubclass(kind, GRU) else "")
    )


def weights_of(module: nn.Module) -> tuple[GRUSpec, list[Weights]]:
    """(spec, hub weights) of a fastgru or torch GRU / GRUCell, as detached tensors sharing storage."""
    spec = spec_of(module)
    state = {k: v.detach() for k, v in module.state_dict().items()}
    return spec, from_state_dict(spec, state, f"{type(module).__name__}.state_dict()")


def build(
    spec: GRUSpec,
    weights: Sequence[Weights],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """A fastgru.nn.GRU (or GRUCell) holding exact copies of `weights` (dtype: the weights' unless given)."""
    from fastgru.nn import GRU, GRUCell

    check_weights(spec, weights)
    dtype = dtype or weights[0][0].dtype
    device = device or weights[0][0].device
    if spec.cell:
        module = GRUCell(spec.input_size, spec.hidden_size, bias=spec.bias, device=device, dtype=dtype,
                         reset_after=spec.reset_after)
    else:
        module = GRU(spec.input_size, spec.hidden_size, num_layers=spec.num_layers, bias=spec.bias,
                     batch_first=spec.batch_first, dropout=spec.dropout, bidirectional=spec.bidirectional,
                     device=device, dtype=dtype, reset_after=spec.reset_after,
                     gate_activation=spec.gate_activation, candidate_activation=spec.candidate_activation,
                     hard_sigmoid=spec.hard_sigmoid, input_dropout=spec.input_dropout,
                     recurrent_dropout=spec.recurrent_dropout, zoneout=spec.zoneout)
    load_weights(module, spec, weights)
    return module


def load_weights(module: nn.Module, spec: GRUSpec, weights: Sequence[Weights]) -> None:
    """Copy hub weights into a module's parameters (exact copy; dtype cast only if they differ)."""
    state = to_state_dict(spec, weights)
    with torch.no_grad():
        module.load_state_dict(state, strict=True)
