"""Keras 3 GRU layouts and options, without importing Keras: shared by live-layer and file conversion.

Keras stores per GRU layer: kernel (I, 3H), recurrent_kernel (H, 3H), and bias (2, 3H) = [input bias,
recurrent bias] if reset_after else (3H,) (input bias only), gate order z, r, h. Its math is fastgru's
(h' = z * h + (1 - z) * n) once the gates are re-ordered and the matrices transposed.

A Keras model is described here by its serialized config (`model.get_config()["layers"]` or a
`.keras` file's config.json): `plan_stack` walks it, checks every option that changes the numbers
and picks the run of GRU layers to convert, so live models and saved files share one code path.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fastgru.interop.layout import GRUSpec, InteropError, Weights, swap_rz

# Options that only act through training and that fastgru has no counterpart for: they do not change a
# trained layer's outputs. Refused unless the caller accepts dropping them.
TRAINING_ONLY = (
    "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
    "kernel_constraint", "recurrent_constraint", "bias_constraint",
)
RECURRENT_CLASSES = ("GRU", "Bidirectional")
# Keras activation name -> fastgru's; Keras 3's hard_sigmoid is relu6(x + 3) / 6 = clamp(x / 6 + 0.5, 0, 1).
CANDIDATE_ACTIVATIONS = ("tanh", "sigmoid", "hard_sigmoid", "relu", "softsign")
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
KERAS_HARD_SIGMOID = (1.0 / 6.0, 0.5)
# the options two stacked Keras layers must share to be one fastgru GRU
SHARED = ("units", "use_bias", "reset_after", "bidirectional", "gate_activation", "candidate_activation",
          "input_dropout", "recurrent_dropout")


@dataclass
class KerasLayerPlan:
    """One Keras layer of the stack to convert: its name, its kind and the checked options."""

    name: str
    class_name: str  # "GRU", "Bidirectional" or "GRUCell"
    units: int
    use_bias: bool
    reset_after: bool
    trainable: bool = True
    return_sequences: bool = True
    gate_activation: str = "sigmoid"
    candidate_activation: str = "tanh"
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    dropout_before: float = 0.0  # rate of a keras Dropout layer between the previous GRU and this one
    h5_key: str | None = None  # where a saved file keeps its weights (under "layers/")

    @property
    def bidirectional(self) -> bool:
        return self.class_name == "Bidirectional"

    def options(self) -> dict:
        return {k: getattr(self, k) for k in ("units", "use_bias", "reset_after", "gate_activation",
                                              "candidate_activation", "input_dropout", "recurrent_dropout")}


def _activation_name(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):  # {"class_name": ..., "config": ...} for a serialized object
        return str(value.get("config", {}).get("name", value.get("class_name")))
    return getattr(value, "__name__", repr(value))


def check_gru_config(
    config: Mapping,
    where: str,
    *,
    go_backwards: bool = False,
    ignore_training_options: bool = False,
    cell: bool = False,
) -> dict:
    """The fastgru options of a Keras GRU (or GRUCell) config; refuse what fastgru cannot compute.

    Returns units, use_bias, reset_after, gate_activation, candidate_activation, input_dropout,
    recurrent_dropout. Keras' dropout maps to fastgru's input_dropout (one mask per sequence, as Keras
    draws it); recurrent_dropout maps with a warning: with it Keras draws one mask per gate (its
    implementation 1), fastgru one shared mask, so training noise differs in structure (not in rate).
    """
    act = _activation_name(config.get("activation", "tanh"))
    rec = _activation_name(config.get("recurrent_activation", "sigmoid"))
    if act not in CANDIDATE_ACTIVATIONS:
        raise InteropError(f"{where}: activation={act!r} is not supported (fastgru has {CANDIDATE_ACTIVATIONS})")
    if rec not in GATE_ACTIVATIONS:
        raise InteropError(f"{where}: recurrent_activation={rec!r} is not supported (fastgru has {GATE_ACTIVATIONS})")
    if not cell:
        if bool(config.get("go_backwards", False)) != go_backwards:
            what = "the backward layer of a Bidirectional must" if go_backwards else "a GRU must not"
            raise InteropError(
                f"{where}: go_backwards={config.get('go_backwards')!r}: {what} run backwards for fastgru "
                "(fastgru has no backwards-only GRU; use a Bidirectional GRU or flip the input yourself)"
            )
        if config.get("stateful", False):
            raise InteropError(
                f"{where}: stateful=True (state carried between batches) has no fastgru equivalent; pass hx "
                "to the fastgru module yourself and convert a stateful=False copy of the layer"
            )
    used = [k for k in TRAINING_ONLY if config.get(k) not in (None, 0, 0.0)]
    if used:
        if not ignore_training_options:
            raise InteropError(
                f"{where}: {', '.join(f'{k}={config.get(k)!r}' for k in used)} cannot be reproduced by fastgru "
                "(training-time only: the converted weights compute the same outputs). Pass "
                "ignore_training_options=True to convert without them"
            )
        warnings.warn(f"{where}: dropping training-only options {used}", UserWarning, stacklevel=3)
    units = config.get("units")
    if not isinstance(units, int) or units <= 0:
        raise InteropError(f"{where}: units must be a positive integer, got {units!r}")
    dropout = float(config.get("dropout", 0.0) or 0.0)
    recurrent_dropout = float(config.get("recurrent_dropout", 0.0) or 0.0)
    for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
        if not 0.0 <= rate < 1.0:
            raise InteropError(f"{where}: {name}={rate} must be in [0, 1) for fastgru")
    if recurrent_dropout > 0 and not cell:
        warnings.warn(
            f"{where}: recurrent_dropout={recurrent_dropout} maps to fastgru's recurrent_dropout at the same "
            "rate, but Keras draws a separate mask per gate there and fastgru one shared mask (training "
            "only; outputs in eval mode are identical)",
            UserWarning,
            stacklevel=3,
        )
    return {
        "units": units,
        "use_bias": bool(config.get("use_bias", True)),
        "reset_after": bool(config.get("reset_after", True)),
        "gate_activation": rec,
        "candidate_activation": act,
        "input_dropout": dropout,
        "recurrent_dropout": recurrent_dropout,
    }


def plan_layer(layer: Mapping, where: str, *, ignore_training_options: bool = False) -> KerasLayerPlan:
    """Check one serialized layer ({"class_name", "config"}) that must be a GRU or Bidirectional(GRU)."""
    cls, config = layer.get("class_name"), layer.get("config", {})
    name = config.get("name", where)
    where = f"Keras layer {name!r} ({cls})"
    kw = {"ignore_training_options": ignore_training_options}
    trainable = bool(config.get("trainable", True))
    if cls in ("GRU", "GRUCell"):
        options = check_gru_config(config, where, cell=cls == "GRUCell", **kw)
        if cls == "GRUCell" and (options["input_dropout"] or options["recurrent_dropout"]):
            raise InteropError(f"{where}: fastgru.nn.GRUCell has no dropout options")
        return KerasLayerPlan(name, cls, trainable=trainable,
                              return_sequences=bool(config.get("return_sequences", cls == "GRUCell")), **options)
    if cls == "Bidirectional":
        merge = config.get("merge_mode", "concat")
        if merge != "concat":
            raise InteropError(
                f"{where}: merge_mode={merge!r} is not supported: fastgru concatenates the two directions "
                "(merge_mode='concat'); apply the merge to fastgru's output yourself"
            )
        fwd, bwd = config.get("layer"), config.get("backward_layer")
        for part, sub in (("layer", fwd), ("backward_layer", bwd)):
            if sub is not None and sub.get("class_name") != "GRU":
                raise InteropError(f"{where}: its {part} is a {sub.get('class_name')}, not a GRU")
        if fwd is None:
            raise InteropError(f"{where}: the config has no wrapped 'layer'")
        f = check_gru_config(fwd["config"], f"{where}, forward layer", **kw)
        if bwd is None:  # Keras builds the backward layer from the forward one's config
            bwd = {"class_name": "GRU", "config": {**fwd["config"], "go_backwards": True}}
        b = check_gru_config(bwd["config"], f"{where}, backward layer", go_backwards=True, **kw)
        if f != b:
            diff = {k: (f[k], b[k]) for k in f if f[k] != b[k]}
            raise InteropError(
                f"{where}: forward and backward layers differ in {diff} (forward, backward); fastgru needs both "
                "directions alike"
            )
        return KerasLayerPlan(name, cls, trainable=trainable,
                              return_sequences=bool(fwd["config"].get("return_sequences", False)), **f)
    raise InteropError(f"{where}: expected a GRU or Bidirectional(GRU) layer, got {cls}")


def snake_case(name: str) -> str:
    """Keras' naming.to_snake_case: how saved files name a layer's group ('GRU' -> 'gru')."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def h5_keys(layers: Sequence[Mapping]) -> list[str]:
    """Group names Keras 3 gives a model's layers in a weights file: class name + per-class counter."""
    used: dict[str, int] = {}
    keys = []
    for layer in layers:
        base = snake_case(str(layer.get("class_name")))
        if base in used:
            used[base] += 1
            keys.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            keys.append(base)
    return keys


def _inbound_name(layer: Mapping) -> str | None:
    """The single layer feeding a Functional model's layer, from its inbound_nodes (None if not a chain)."""
    nodes = layer.get("inbound_nodes")
    if not nodes or len(nodes) != 1:
        return None
    args = nodes[0].get("args", []) if isinstance(nodes[0], Mapping) else []
    if len(args) != 1 or not isinstance(args[0], Mapping):
        return None
    history = args[0].get("config", {}).get("keras_history")
    kwargs = nodes[0].get("kwargs", {})
    if kwargs.get("initial_state") is not None:
        return None
    return history[0] if history else None


def plan_stack(
    layers: Sequence[Mapping],
    *,
    select: Sequence[str] | None = None,
    functional: bool = False,
    ignore_training_options: bool = False,
) -> list[KerasLayerPlan]:
    """The GRU stack in a model's serialized layer list, checked; `select` names the layers to take.

    Without `select`, the model must be nothing but (InputLayer,) GRU or Bidirectional(GRU) layers
    with optional Dropout layers between them, so that nothing which changes the numbers is skipped;
    a model with anything else must name its GRU layers in `select`.
    """
    keys = h5_keys(layers)
    names = [layer.get("config", {}).get("name") for layer in layers]
    if select is not None:
        select = list(select)
        unknown = [s for s in select if s not in names]
        if unknown:
            raise InteropError(f"layers={unknown} not found in the Keras model; its layers are {names}")
        chosen = [i for i, n in enumerate(names) if n in select]
        if [names[i] for i in chosen] != select:
            raise InteropError(f"layers={select} must be listed in the model's order: {[names[i] for i in chosen]}")
        first, last = chosen[0], chosen[-1]
        for i in range(first, last + 1):
            if i not in chosen and layers[i].get("class_name") != "Dropout":
                raise InteropError(
                    f"layers={select}: layer {names[i]!r} ({layers[i].get('class_name')}) lies between the chosen "
                    "layers; fastgru can only take a consecutive run of GRU layers (with Dropout between)"
                )
        span = range(first, last + 1)
    else:
        for i, layer in enumerate(layers):
            cls = layer.get("class_name")
            if cls not in (*RECURRENT_CLASSES, "InputLayer", "Dropout"):
                raise InteropError(
                    f"the Keras model has layer {names[i]!r} ({cls}), which is not a GRU; pass layers=[...] "
                    "naming the GRU layers to convert (fastgru converts the GRU stack only)"
                )
        span = [i for i, layer in enumerate(layers) if layer.get("class_name") != "InputLayer"]
    plans: list[KerasLayerPlan] = []
    pending_dropout: float | None = None
    previous: str | None = None
    for i in span:
        layer, cls = layers[i], layers[i].get("class_name")
        if functional and previous is not None and _inbound_name(layer) != previous:
            raise InteropError(
                f"Keras layer {names[i]!r} is not fed by {previous!r} alone: fastgru converts a plain chain "
                "of GRU layers only"
            )
        previous = names[i]
        if cls == "Dropout":
            config = layer.get("config", {})
            if not plans:
                raise InteropError(
                    f"Dropout layer {names[i]!r} comes before the first GRU; fastgru only has dropout between "
                    "GRU layers (apply it to the input yourself)"
                )
            if config.get("noise_shape") is not None:
                raise InteropError(f"Dropout layer {names[i]!r}: noise_shape is not supported")
            if pending_dropout is not None:
                raise InteropError(f"Dropout layer {names[i]!r} follows another Dropout; merge them into one")
            pending_dropout = float(config.get("rate", 0.0))
            continue
        plan = plan_layer(layer, names[i] or keys[i], ignore_training_options=ignore_training_options)
        plan.h5_key = keys[i]
        plan.dropout_before = pending_dropout or 0.0
        pending_dropout = None
        plans.append(plan)
    if pending_dropout is not None:
        raise InteropError("a Dropout layer follows the last GRU; fastgru only has dropout between GRU layers")
    if not plans:
        raise InteropError("no GRU layers to convert")
    return plans


def check_plans(plans: Sequence[KerasLayerPlan]) -> None:
    """Refuse a run of Keras layers that no single fastgru GRU computes (before any weight is read)."""
    first = plans[0]
    if first.class_name == "GRUCell" and len(plans) != 1:
        raise InteropError("a GRUCell converts on its own, not as part of a stack")
    for p in plans[1:]:
        for attr in SHARED:
            if getattr(p, attr) != getattr(first, attr):
                raise InteropError(
                    f"Keras layers {first.name!r} and {p.name!r} differ in {attr} ({getattr(first, attr)} vs "
                    f"{getattr(p, attr)}): one fastgru GRU needs every layer alike; convert them separately"
                )
    for p in plans[:-1]:
        if not p.return_sequences:
            raise InteropError(f"Keras layer {p.name!r} has return_sequences=False but another GRU follows it")
    rates = {p.dropout_before for p in plans[1:]}
    if len(rates) > 1:
        raise InteropError(f"the Dropout layers between the GRUs have different rates {sorted(rates)}")


def stack_spec(plans: Sequence[KerasLayerPlan], input_size: int, *, batch_first: bool) -> GRUSpec:
    """The one fastgru GRU that computes a checked run of Keras layers."""
    check_plans(plans)
    first = plans[0]
    options = {
        "bias": first.use_bias,
        "reset_after": first.reset_after,
        "gate_activation": first.gate_activation,
        "candidate_activation": first.candidate_activation,
        # only when used: a spec that differs from the plain GRU would take fastgru's general (slower) path
        "hard_sigmoid": KERAS_HARD_SIGMOID if "hard_sigmoid" in (first.gate_activation, first.candidate_activation)
        else (0.2, 0.5),
    }
    if first.class_name == "GRUCell":
        return GRUSpec(input_size, first.units, cell=True, **options)
    return GRUSpec(
        input_size=input_size,
        hidden_size=first.units,
        num_layers=len(plans),
        bidirectional=first.bidirectional,
        batch_first=batch_first,
        dropout=plans[1].dropout_before if len(plans) > 1 else 0.0,
        input_dropout=first.input_dropout,
        recurrent_dropout=first.recurrent_dropout,
        **options,
    )


def _tensor(a) -> Tensor:
    if isinstance(a, Tensor):
        return a.detach().cpu().clone()
    return torch.from_numpy(np.array(a, copy=True))


def group_from_keras(kernel, recurrent_kernel, bias, *, units: int, reset_after: bool, where: str) -> Weights:
    """Hub weights (torch layout, r z n) from one Keras direction's arrays (exact: transposes and slicing)."""
    k, rk = _tensor(kernel), _tensor(recurrent_kernel)
    H = units
    if k.dim() != 2 or k.shape[1] != 3 * H:
        raise InteropError(f"{where}: kernel must be (input_size, {3 * H}), got {tuple(k.shape)}")
    if tuple(rk.shape) != (H, 3 * H):
        raise InteropError(f"{where}: recurrent_kernel must be ({H}, {3 * H}), got {tuple(rk.shape)}")
    w_ih = swap_rz(k.t(), H).contiguous()
    w_hh = swap_rz(rk.t(), H).contiguous()
    if bias is None:
        return w_ih, w_hh, None, None
    b = _tensor(bias)
    if reset_after:
        if tuple(b.shape) != (2, 3 * H):
            raise InteropError(f"{where}: reset_after=True bias must be (2, {3 * H}), got {tuple(b.shape)}")
        return w_ih, w_hh, swap_rz(b[0], H), swap_rz(b[1], H)
    if tuple(b.shape) != (3 * H,):
        raise InteropError(f"{where}: reset_after=False bias must be ({3 * H},), got {tuple(b.shape)}")
    return w_ih, w_hh, swap_rz(b, H), torch.zeros_like(b)


def group_to_keras(group: Weights, *, reset_after: bool) -> list[np.ndarray]:
    """[kernel, recurrent_kernel(, bias)] for one Keras direction from hub weights.

    reset_after=False Keras layers have a single bias: b_ih + b_hh (exactly b_ih when b_hh is zero, as
    for a layer that came from Keras); the sum is the same math since b_hn sits outside r there.
    """
    w_ih, w_hh, b_ih, b_hh = group
    H = w_hh.shape[1]

    def arr(t: Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy())

    out = [arr(swap_rz(w_ih, H).t()), arr(swap_rz(w_hh, H).t())]
    if b_ih is None:
        return out
    if reset_after:
        out.append(arr(torch.stack((swap_rz(b_ih, H), swap_rz(b_hh, H)))))
    else:
        folded = b_ih if not bool(b_hh.detach().any()) else b_ih + b_hh
        out.append(arr(swap_rz(folded, H)))
    return out


KerasArrays = tuple  # (kernel, recurrent_kernel, bias or None) of one direction


def assemble(
    plans: Sequence[KerasLayerPlan],
    arrays: Sequence[Sequence[KerasArrays]],
    *,
    batch_first: bool,
) -> tuple[GRUSpec, list[Weights]]:
    """(spec, hub weights) from checked plans and, per plan, its directions' Keras arrays."""
    input_size = int(arrays[0][0][0].shape[0])
    spec = stack_spec(plans, input_size, batch_first=batch_first)
    weights: list[Weights] = []
    for plan, dirs in zip(plans, arrays):
        for d, (kernel, recurrent, bias) in enumerate(dirs):
            where = f"Keras layer {plan.name!r}" + (", backward layer" if d == 1 else "")
            if (bias is not None) != plan.use_bias:
                has = "a" if bias is not None else "no"
                raise InteropError(f"{where}: use_bias={plan.use_bias} but the layer has {has} bias")
            weights.append(
                group_from_keras(kernel, recurrent, bias, units=plan.units, reset_after=plan.reset_after, where=where)
            )
    from fastgru.interop.layout import check_weights

    check_weights(spec, weights, "Keras weights")
    return spec, weights


def apply_trainable(module, spec: GRUSpec, plans: Sequence[KerasLayerPlan]) -> None:
    """Keras trainable=False layers become parameters with requires_grad=False."""
    from fastgru.interop.layout import param_names

    for i, names in enumerate(param_names(spec)):
        plan = plans[i // spec.num_directions]
        if not plan.trainable:
            for name in names:
                if name is not None:
                    getattr(module, name).requires_grad_(False)
