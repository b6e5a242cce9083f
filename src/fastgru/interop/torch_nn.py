"""torch.nn.GRU / GRUCell <-> fastgru.nn.GRU / GRUCell.

The layouts are identical (fastgru uses torch's parameter names and gate order), so both directions
are exact copies; a state_dict also loads directly either way. The only thing torch cannot hold is
fastgru's reset_after=False variant, which `to_torch` refuses.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from fastgru.interop.layout import MATH_OPTIONS, TRAINING_OPTIONS, InteropError, load_weights, weights_of
from fastgru.interop.layout import build as build_fastgru


def from_torch(module: nn.GRU | nn.GRUCell) -> nn.Module:
    """A fastgru.nn.GRU (or GRUCell) with exact copies of a torch.nn.GRU's (GRUCell's) weights and options.

    Same device, dtype, batch_first and dropout; reset_after=True (torch's only variant). The returned
    module is in the source's training/eval mode.
    """
    if not isinstance(module, (nn.GRU, nn.GRUCell)):
        raise InteropError(f"from_torch expects a torch.nn.GRU or torch.nn.GRUCell, got {type(module).__name__}")
    spec, weights = weights_of(module)
    out = build_fastgru(spec, weights)
    return out.train(module.training)


def to_torch(module: nn.Module, *, ignore_training_options: bool = False) -> nn.GRU | nn.GRUCell:
    """A torch.nn.GRU (or GRUCell) with exact copies of a fastgru GRU's (GRUCell's) weights and options.

    Refuses what torch.nn.GRU cannot compute: reset_after=False, non-default activations, zoneout.
    input_dropout / recurrent_dropout (training only) are refused too unless
    ignore_training_options=True, which drops them with a warning. The returned module is in the
    source's training/eval mode.
    """
    spec, weights = weights_of(module)
    spec.refuse_options("torch.nn.GRU", MATH_OPTIONS)
    if not ignore_training_options:
        spec.refuse_options(
            "torch.nn.GRU", TRAINING_OPTIONS,
            " (training-time only; pass ignore_training_options=True to convert without them)",
        )
    elif any(k in spec.cell_options() for k in TRAINING_OPTIONS):
        dropped = {k: v for k, v in spec.cell_options().items() if k in TRAINING_OPTIONS}
        warnings.warn(f"to_torch: dropping training-only options {dropped}", UserWarning, stacklevel=2)
    if not spec.reset_after:
        raise InteropError(
            "reset_after=False (Cho et al. 2014: r applied before W_hn) cannot be expressed by torch.nn.GRU, "
            "which always applies r after W_hn h + b_hn; keep it as a fastgru module or export it to "
            "ONNX / Keras, which have this variant"
        )
    w0 = weights[0][0]
    factory = {"device": w0.device, "dtype": w0.dtype}
    if spec.cell:
        out: nn.Module = nn.GRUCell(spec.input_size, spec.hidden_size, bias=spec.bias, **factory)
    else:
        out = nn.GRU(
            spec.input_size, spec.hidden_size, num_layers=spec.num_layers, bias=spec.bias,
            batch_first=spec.batch_first, dropout=spec.dropout, bidirectional=spec.bidirectional, **factory,
        )
    load_weights(out, spec, weights)
    if isinstance(out, nn.GRU):
        with torch.no_grad():
            out.flatten_parameters()
    return out.train(module.training)
