"""Whole Keras 3 models -> torch modules with fastgru GRUs inside (and the wrappers they need).

`GoBackwards` is a Keras GRU with go_backwards=True: it reads the sequence from its end and returns
the outputs in that processing order (Keras' documented behaviour: "process the input sequence
backwards and return the reversed sequence").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastgru.interop.keras_layout import _activation_name, _inbound_name, apply_trainable, assemble, plan_layer
from fastgru.interop.keras_live import _keras, _layer_arrays, _value
from fastgru.interop.layout import InteropError, build


class GoBackwards(nn.Module):
    """A GRU run over the time-reversed input, outputs left in processing order (Keras' go_backwards=True).

    forward(input, hx=None) -> (output, h_n): `gru(input.flip(time))`. No `lengths`: after the flip a
    right-padded batch is left-padded, which lengths cannot express.
    """

    def __init__(self, gru: nn.Module) -> None:
        super().__init__()
        self.gru = gru

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        time = 1 if getattr(self.gru, "batch_first", False) else 0
        return self.gru(torch.flip(input, (time,)), hx)


# ------------------------------------------------------------------------------------- whole models

# Keras activation name -> torch function (Keras 3's definitions: hard_sigmoid = relu6(x + 3) / 6,
# leaky_relu's default slope 0.2, gelu exact unless approximate=True is configured).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "log_softmax": lambda x: torch.log_softmax(x, dim=-1),
    "softplus": F.softplus,
    "softsign": F.softsign,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "hard_sigmoid": F.hardsigmoid,
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "exponential": torch.exp,
}
SUPPORTED_LAYERS = ("InputLayer", "Embedding", "GRU", "Bidirectional", "Dense", "Dropout", "Activation")


class Activation(nn.Module):
    """A Keras activation by name (see ACTIVATIONS)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in ACTIVATIONS:
            raise InteropError(f"activation {name!r} is not supported (supported: {sorted(ACTIVATIONS)})")
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return ACTIVATIONS[self.name](x)

    def extra_repr(self) -> str:
        return repr(self.name)


class Step(nn.Module):
    """One converted Keras layer: forward(x, mask) -> (x, mask), mask a (B, T) bool tensor or None."""


class EmbeddingStep(Step):
    """keras.layers.Embedding: token ids (B, T) -> vectors; mask_zero=True makes the mask `tokens != 0`."""

    def __init__(self, embedding: nn.Embedding, mask_zero: bool) -> None:
        super().__init__()
        self.embedding, self.mask_zero = embedding, mask_zero

    def forward(self, x: Tensor, mask: Tensor | None):
        tokens = x.long()
        return self.embedding(tokens), (tokens != 0) if self.mask_zero else mask


class DenseStep(Step):
    """keras.layers.Dense (applied on the last axis) followed by its activation; the mask passes through."""

    def __init__(self, linear: nn.Linear, activation: Activation) -> None:
        super().__init__()
        self.linear, self.activation = linear, activation

    def forward(self, x: Tensor, mask: Tensor | None):
        return self.activation(self.linear(x)), mask


class ModuleStep(Step):
    """A mask-transparent layer (Dropout, Activation)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, mask: Tensor | None):
        return self.module(x), mask


class RecurrentStep(Step):
    """keras GRU / Bidirectional(GRU) as a batch-first fastgru GRU, with Keras' mask semantics.

    The mask goes to the GRU as `mask=` (fastgru.nn.GRU): masked steps carry the state, wherever they
    are (left padding, right padding, holes). Outputs at masked steps follow Keras: a GRU repeats its
    last output (zeros before the first real step, mask_output="carry"), a Bidirectional writes zeros
    (Keras forces zero_output_for_mask there, mask_output="zero"). Sequences with no real step give
    zeros. return_sequences=False returns the final state(s) and drops the mask.
    """

    def __init__(self, gru: nn.Module, return_sequences: bool, bidirectional: bool) -> None:
        super().__init__()
        self.gru, self.return_sequences, self.bidirectional = gru, return_sequences, bidirectional

    def forward(self, x: Tensor, mask: Tensor | None):
        if mask is None:
            out, h_n = self.gru(x)
        else:
            out, h_n = self.gru(x, mask=mask.to(device=x.device, dtype=torch.bool),
                                mask_output="zero" if self.bidirectional else "carry")
        if self.return_sequences:
            return out, mask
        last = torch.cat((h_n[-2], h_n[-1]), dim=-1) if self.bidirectional else h_n[-1]
        return last, None


class KerasModel(nn.Module):
    """A Keras Sequential / functional chain converted layer by layer (see `from_keras`).

    forward(inputs) -> outputs, as the Keras model's call: token ids (B, T) for a model that starts
    with an Embedding, else (B, T, features). Keras' masks (Embedding(mask_zero=True)) are carried
    from layer to layer as Keras does. `steps` holds the converted layers under their Keras names.
    """

    def __init__(self, steps: dict[str, Step]) -> None:
        super().__init__()
        self.steps = nn.ModuleDict(steps)

    def forward(self, inputs: Tensor) -> Tensor:
        x, mask = inputs, None
        for step in self.steps.values():
            x, mask = step(x, mask)
        return x


def _tensor(value) -> Tensor:
    return value.detach().clone() if isinstance(value, Tensor) else torch.as_tensor(np.array(value, copy=True))


def _refuse_config(config: dict, where: str, keys: tuple[str, ...]) -> None:
    used = {k: config[k] for k in keys if config.get(k) not in (None, False, 0)}
    if used:
        raise InteropError(f"{where}: {used} is not supported by from_keras")


def _convert_layer(layer, cls: str, where: str, *, ignore_training_options: bool) -> Step:
    config = layer.get_config()
    if cls == "Embedding":
        _refuse_config(config, where, ("lora_rank", "quantization_config"))
        weight = _tensor(_value(layer.embeddings))
        embedding = nn.Embedding(weight.shape[0], weight.shape[1], dtype=weight.dtype)
        with torch.no_grad():
            embedding.weight.copy_(weight)
        embedding.weight.requires_grad_(layer.trainable)
        return EmbeddingStep(embedding, bool(config.get("mask_zero", False)))
    if cls == "Dense":
        _refuse_config(config, where, ("lora_rank", "quantization_config"))
        kernel = _tensor(_value(layer.kernel))
        if kernel.dim() != 2:
            raise InteropError(f"{where}: kernel of shape {tuple(kernel.shape)} is not (in, out)")
        linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=layer.use_bias, dtype=kernel.dtype)
        with torch.no_grad():
            linear.weight.copy_(kernel.t())
            if layer.use_bias:
                linear.bias.copy_(_tensor(_value(layer.bias)))
        for p in linear.parameters():
            p.requires_grad_(layer.trainable)
        return DenseStep(linear, _activation(config.get("activation", "linear"), where, _activation_name))
    if cls == "Dropout":
        if config.get("noise_shape") is not None:
            raise InteropError(f"{where}: noise_shape is not supported")
        return ModuleStep(nn.Dropout(float(config.get("rate", 0.0))))
    if cls == "Activation":
        return ModuleStep(_activation(config.get("activation"), where, _activation_name))
    # GRU or Bidirectional(GRU): the stack converter's checks and exact weight copy, one layer at a time
    inner = config.get("layer", {}).get("config", {}) if cls == "Bidirectional" else config
    if inner.get("return_state"):
        raise InteropError(f"{where}: return_state=True (several outputs) is not supported by from_keras")
    plan = plan_layer({"class_name": cls, "config": config}, where, ignore_training_options=ignore_training_options)
    spec, weights = assemble([plan], [_layer_arrays(layer, plan)], batch_first=True)
    gru = build(spec, weights)
    apply_trainable(gru, spec, [plan])
    return RecurrentStep(gru, plan.return_sequences, plan.bidirectional)


def _activation(value, where: str, name_of) -> Activation:
    name = name_of(value)
    if name not in ACTIVATIONS:
        raise InteropError(f"{where}: activation {name!r} is not supported (supported: {sorted(ACTIVATIONS)})")
    if name == "gelu" and isinstance(value, dict) and value.get("config", {}).get("approximate"):
        raise InteropError(f"{where}: gelu(approximate=True) is not supported")
    return Activation(name)


def convert_model(model, *, ignore_training_options: bool = False) -> KerasModel:
    """A KerasModel computing a built Keras Sequential / functional chain (see `from_keras`)."""
    keras = _keras()
    config = model.get_config()
    functional = not isinstance(model, keras.Sequential)
    if functional:
        for key in ("input_layers", "output_layers"):
            if len(_flat_refs(config.get(key))) != 1:
                raise InteropError(f"from_keras: the model has several {key.replace('_', ' ')}; one of each is "
                                   "supported")
    steps: dict[str, Step] = {}
    previous = None
    for layer_config in config["layers"]:
        cls = layer_config.get("class_name")
        name = layer_config.get("config", {}).get("name")
        where = f"Keras layer {name!r} ({cls})"
        if functional and cls == "NotEqual" and _is_embedding_mask(layer_config, config["layers"]):
            continue  # Keras' functional record of Embedding(mask_zero=True)'s mask, which the steps carry
        if functional and previous is not None and _inbound_name(layer_config) != previous:
            raise InteropError(f"{where} is not fed by {previous!r} alone: from_keras converts a chain of layers only")
        previous = name
        if cls == "InputLayer":
            continue
        layer = model.get_layer(name)
        if cls not in SUPPORTED_LAYERS or type(layer) is not getattr(keras.layers, cls, None):
            raise InteropError(
                f"{where} is not supported by from_keras (whole models may hold {', '.join(SUPPORTED_LAYERS[1:])})"
            )
        steps[name] = _convert_layer(layer, cls, where, ignore_training_options=ignore_training_options)
    if functional and _flat_refs(config.get("output_layers"))[0] != previous:
        raise InteropError(f"from_keras: the model's output is not its last layer {previous!r}")
    if not steps:
        raise InteropError("from_keras: the model has no layers to convert")
    return KerasModel(steps).eval()


def _is_embedding_mask(layer_config: dict, layers: list) -> bool:
    """Whether a functional config's NotEqual layer is `tokens != 0` for an Embedding(mask_zero=True) on tokens."""
    nodes = layer_config.get("inbound_nodes") or []
    if len(nodes) != 1 or len(nodes[0].get("args", [])) != 2 or nodes[0]["args"][1] != 0:
        return False
    source = nodes[0]["args"][0]
    history = source.get("config", {}).get("keras_history") if isinstance(source, dict) else None
    if not history:
        return False
    return any(
        other.get("class_name") == "Embedding" and other.get("config", {}).get("mask_zero")
        and _inbound_name(other) == history[0]
        for other in layers
    )


def _flat_refs(refs) -> list[str]:
    """Layer names in a functional config's input_layers / output_layers (a [name, i, j] or a list of them)."""
    if not refs:
        return []
    if isinstance(refs[0], str):
        return [refs[0]]
    return [r[0] for r in refs]
