"""Live Keras 3 layers and models <-> fastgru modules (Keras imported only when these are called).

`from_keras` takes a built keras.layers.GRU, Bidirectional(GRU), GRUCell, a list of such layers, or a
Sequential/Functional model made of them (optionally with Dropout between the GRUs); `to_keras` builds
the equivalent keras.Sequential (or GRUCell) and sets its weights. Every Keras option is checked by
`keras_layout.check_gru_config`: the ones fastgru cannot compute are refused by name.
Keras models are batch-major, so `from_keras` returns batch_first=True modules unless told otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fastgru.interop.keras_layout import (
    KERAS_HARD_SIGMOID,
    RECURRENT_CLASSES,
    KerasLayerPlan,
    apply_trainable,
    assemble,
    check_plans,
    group_to_keras,
    plan_layer,
    plan_stack,
)
from fastgru.interop.layout import InteropError, build, weights_of


def _keras():
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Keras conversion needs keras>=3: pip install 'fastgru[interop]'") from exc
    if not str(keras.__version__).startswith("3"):
        raise ImportError(f"fastgru converts Keras 3 layers; found keras {keras.__version__}")
    return keras


def _exact_class(layer, keras) -> str:
    """The class name of a stock Keras GRU/Bidirectional/GRUCell; subclasses may compute differently."""
    stock = {keras.layers.GRU: "GRU", keras.layers.Bidirectional: "Bidirectional", keras.layers.GRUCell: "GRUCell"}
    name = stock.get(type(layer))
    if name is None:
        raise InteropError(
            f"{type(layer).__module__}.{type(layer).__name__} ({getattr(layer, 'name', '?')!r}) is not a stock "
            "keras.layers.GRU, Bidirectional(GRU) or GRUCell (a subclass may change the math)"
        )
    return name


def _value(variable):
    """A Keras variable's value: the torch tensor itself under KERAS_BACKEND=torch, else a numpy copy."""
    value = variable.value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    return np.array(_keras().ops.convert_to_numpy(value), copy=True)


def _cell_arrays(cell, where: str) -> tuple:
    if not cell.built:
        raise InteropError(f"{where} is not built yet (no weights): call it on an input or build() it first")
    bias = _value(cell.bias) if cell.use_bias else None
    return _value(cell.kernel), _value(cell.recurrent_kernel), bias


def _layer_arrays(layer, plan: KerasLayerPlan) -> list[tuple]:
    where = f"Keras layer {plan.name!r}"
    if plan.class_name == "Bidirectional":
        for part in (layer.forward_layer, layer.backward_layer):
            if type(part) is not _keras().layers.GRU:
                raise InteropError(f"{where}: wraps a {type(part).__name__}, not a stock GRU")
        return [_cell_arrays(layer.forward_layer.cell, where), _cell_arrays(layer.backward_layer.cell, where)]
    if plan.class_name == "GRUCell":
        return [_cell_arrays(layer, where)]
    return [_cell_arrays(layer.cell, where)]


def from_keras(
    obj,
    *,
    layers: Sequence[str] | None = None,
    batch_first: bool = True,
    ignore_training_options: bool = False,
) -> nn.Module:
    """A fastgru.nn.GRU (GRUCell) computing the same outputs as a built Keras GRU stack, weights copied exactly.

    obj: keras.layers.GRU, Bidirectional(GRU), GRUCell, a list of GRU / Bidirectional layers forming a
    stack, or a keras Model whose layers are such a stack (`layers=` names the GRU layers to take from
    a model with other layers). activation / recurrent_activation other than tanh / sigmoid,
    go_backwards, stateful, merge_mode other than 'concat', layers that differ from each other, and
    subclassed layers are refused; training-only options (dropout, recurrent_dropout, regularizers,
    constraints) are refused unless ignore_training_options=True (then a warning lists them).
    trainable=False layers give parameters with requires_grad=False; Dropout layers between the GRUs
    become fastgru's `dropout`.
    """
    keras = _keras()
    kw = {"ignore_training_options": ignore_training_options}
    if isinstance(obj, keras.Model):
        if layers is None and not hasattr(obj, "get_config"):
            raise InteropError("from_keras: the model has no config to read its layers from")
        config = obj.get_config()
        if "layers" not in config:
            raise InteropError(
                f"from_keras: {type(obj).__name__} is a subclassed model without a layer list; pass its GRU "
                "layers instead: from_keras([model.gru1, model.gru2])"
            )
        if layers is None and _has_other_layers(config["layers"]):
            if not batch_first:
                raise InteropError("from_keras: a whole Keras model is batch-major; batch_first=False does not apply")
            from fastgru.interop.keras_model import convert_model

            return convert_model(obj, ignore_training_options=ignore_training_options)
        functional = not isinstance(obj, keras.Sequential)
        plans = plan_stack(config["layers"], select=layers, functional=functional, **kw)
        objects = [obj.get_layer(p.name) for p in plans]
        for o in objects:
            _exact_class(o, keras)
    else:
        if layers is not None:
            raise InteropError("from_keras: layers= only applies to a keras Model")
        objects = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        if not objects:
            raise InteropError("from_keras: empty list of layers")
        plans = []
        for o in objects:
            cls = _exact_class(o, keras)
            plans.append(plan_layer({"class_name": cls, "config": o.get_config()}, o.name, **kw))
    check_plans(plans)  # refuse before reading weights
    arrays = [_layer_arrays(o, p) for o, p in zip(objects, plans)]
    spec, weights = assemble(plans, arrays, batch_first=batch_first)
    module = build(spec, weights)
    apply_trainable(module, spec, plans)
    return module


def _has_other_layers(layers) -> bool:
    """Whether a model holds layers beyond a GRU stack (then it converts as a whole model)."""
    return any(layer.get("class_name") not in (*RECURRENT_CLASSES, "InputLayer", "Dropout") for layer in layers)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def to_keras(module: nn.Module, *, return_sequences: bool = True):
    """A Keras model computing the same outputs as a fastgru (or torch) GRU, weights set exactly.

    GRU -> keras.Sequential([Input((None, input_size)), GRU or Bidirectional(GRU) per layer, with
    Dropout(dropout) between layers when dropout > 0]); the last layer returns the whole sequence
    unless return_sequences=False. GRUCell -> a built keras.layers.GRUCell. Keras is batch-major:
    feed (batch, time, features) whatever the module's batch_first. A reset_after=False Keras layer
    has one bias per gate, so it receives b_ih + b_hh (the same math; exactly b_ih when b_hh is zero).
    Activations, input_dropout (-> dropout) and recurrent_dropout map across; zoneout and a
    hard_sigmoid other than Keras 3's (1/6, 0.5) are refused.
    """
    keras = _keras()
    spec, weights = weights_of(module)
    spec.refuse_options("Keras' GRU", ("zoneout",))
    uses_hard = "hard_sigmoid" in (spec.gate_activation, spec.candidate_activation)
    if uses_hard and spec.hard_sigmoid != KERAS_HARD_SIGMOID:
        raise InteropError(
            f"Keras' GRU cannot express hard_sigmoid={spec.hard_sigmoid}: Keras 3's hard_sigmoid is "
            "clamp(x / 6 + 0.5, 0, 1), i.e. hard_sigmoid=(1/6, 0.5)"
        )
    if spec.recurrent_dropout:
        warnings.warn(
            f"to_keras: recurrent_dropout={spec.recurrent_dropout} maps to Keras' recurrent_dropout at the same "
            "rate, but Keras then draws a separate mask per gate (training only)", UserWarning, stacklevel=2,
        )
    dtype = _dtype_name(weights[0][0].dtype)
    common = {"use_bias": spec.bias, "reset_after": spec.reset_after, "dtype": dtype,
              "activation": spec.candidate_activation, "recurrent_activation": spec.gate_activation,
              "dropout": spec.input_dropout, "recurrent_dropout": spec.recurrent_dropout}
    if spec.cell:
        cell = keras.layers.GRUCell(spec.hidden_size, **common)
        cell.build((None, spec.input_size))
        _assign(cell, weights[0], spec.reset_after)
        return cell
    stack: list = [keras.Input(shape=(None, spec.input_size), dtype=dtype)]
    grus = []
    for layer in range(spec.num_layers):
        if layer > 0 and spec.dropout > 0:
            stack.append(keras.layers.Dropout(spec.dropout))
        seq = return_sequences or layer < spec.num_layers - 1
        gru = keras.layers.GRU(spec.hidden_size, return_sequences=seq, **common)
        if spec.bidirectional:
            gru = keras.layers.Bidirectional(gru, merge_mode="concat")
        stack.append(gru)
        grus.append(gru)
    model = keras.Sequential(stack)
    dirs = spec.num_directions
    for layer, gru in enumerate(grus):
        cells = [gru.forward_layer.cell, gru.backward_layer.cell] if spec.bidirectional else [gru.cell]
        for d, cell in enumerate(cells):
            _assign(cell, weights[layer * dirs + d], spec.reset_after)
    return model


def _assign(cell, group, reset_after: bool) -> None:
    arrays = group_to_keras(group, reset_after=reset_after)
    variables = [cell.kernel, cell.recurrent_kernel] + ([cell.bias] if cell.use_bias else [])
    for var, value in zip(variables, arrays, strict=True):
        if tuple(var.shape) != value.shape:
            raise InteropError(f"Keras variable {var.path} has shape {tuple(var.shape)}, weights {value.shape}")
        var.assign(value)
