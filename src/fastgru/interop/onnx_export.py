"""`torch.onnx.export` of any model holding fastgru GRUs: the custom op becomes a standard ONNX GRU node.

fastgru runs each layer-direction through one custom op, ``fastgru::recurrence`` (fastgru.core.functional).
This module teaches both of torch's ONNX exporters to write that op as one ONNX GRU node (opset 14's
GRU, gate order z, r, h; ``linear_before_reset`` = reset_after; direction 'forward' or 'reverse';
``lengths`` as ``sequence_lens``), so ``torch.onnx.export(model, ...)`` works on a whole model
(Embedding -> fastgru.nn.GRU -> Linear, ...) with no extra argument:

- the TorchScript exporter (``dynamo=False``): a symbolic registered with
  ``torch.onnx.register_custom_op_symbolic`` (opsets 13 and later);
- the dynamo exporter (``dynamo=True``, torch's default): an onnxscript translation added to the
  exporter's table of translations when that exporter is first imported (it imports onnxscript, which
  takes seconds, so fastgru does not import it itself). If a torch release moves that table, the export
  fails naming ``fastgru::recurrence``; pass ``custom_translation_table=onnx_translation_table()``.

The node's output rebuilds the op's state buffer: (h0, Y[0..T-2], Y_h) forward and (Y_h, Y[1..T-1], h0)
reverse, so the final state is Y_h even when ``sequence_lens`` stops a sequence early. What a GRU node
cannot compute is refused with an InteropError naming it, never exported as something else: layer
normalisation (LayerNormGRU), zoneout (its eval-mode expectation too), input / recurrent dropout or
zoneout masks of training mode, activations outside ONNX's list, and any argument of the op this
module does not know.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

import torch

from fastgru.backends import CellSpec
from fastgru.interop.layout import InteropError, swap_rz
from fastgru.interop.onnx_graph import activation_attrs

_OP_NAME = "fastgru::recurrence"
# What the translation knows of the op's arguments; any other argument that is set is refused.
_TENSORS = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths")
_REFUSED = {
    "ln_gain": "layer normalisation (LayerNormGRU)",
    "ln_gain_ih": "layer normalisation (LayerNormGRU)",
    "rec_mask": "a recurrent-dropout mask (training mode: call model.eval() before exporting)",
    "zone_mask": "a zoneout mask (training mode: call model.eval() before exporting)",
}
_FLAGS = ("reset_after", "reverse", "save", "backend", "spec")
MIN_OPSET = 13


def _op():
    from fastgru.core import functional  # noqa: F401  (defines the op; fastgru's package init may not have reached it yet)

    return torch.ops.fastgru.recurrence.default


def _argument_names() -> list[str]:
    return [a.name for a in _op()._schema.arguments]


def _cell_spec(key: str) -> CellSpec:
    from fastgru.core.functional import _spec_from_key  # the op's own decoding of its spec string

    return _spec_from_key(key)


def node_plan(args: dict, *, is_none) -> dict:
    """The GRU node's attributes for one call of the op (arguments by name), or InteropError.

    is_none(value) tells whether an optional tensor argument is absent in the exporter's graph.
    """
    unknown = [n for n in args if n not in (*_TENSORS, *_REFUSED, *_FLAGS) and not is_none(args[n])]
    if unknown:
        raise InteropError(f"ONNX export: {_OP_NAME} argument(s) {unknown} have no ONNX GRU translation")
    for name, what in _REFUSED.items():
        if name in args and not is_none(args[name]):
            raise InteropError(f"an ONNX GRU cannot express {what}; this model cannot be exported to ONNX")
    if is_none(args["w_ih"]):
        raise InteropError("ONNX export: a recurrence fed precomputed gate inputs (w_ih=None) is not supported")
    spec = _cell_spec(args["spec"])
    if spec.zoneout:
        raise InteropError(
            f"an ONNX GRU cannot express zoneout={spec.zoneout} (its eval-mode outputs mix in the previous state)"
        )
    attrs = {"linear_before_reset": int(bool(args["reset_after"])),
             "direction": "reverse" if args["reverse"] else "forward"}
    attrs.update(activation_attrs(spec.gate_activation, spec.candidate_activation,
                                  (spec.hard_sigmoid_alpha, spec.hard_sigmoid_beta)))
    return attrs


def _gate_order(hidden_size: int) -> list[int]:
    """Row indices that take torch's r, z, n blocks to ONNX's z, r, h (layout.swap_rz as a gather)."""
    return swap_rz(torch.arange(3 * hidden_size), hidden_size).tolist()


# ------------------------------------------------------------------------------------------ dynamo


def translate_recurrence(
    x, h0, w_ih, w_hh, b_ih, b_hh, ln_gain, ln_gain_ih, lengths, rec_mask, zone_mask,
    reset_after: bool, reverse: bool, save: bool, backend: str, spec: str,
):
    """onnxscript translation of ``fastgru::recurrence`` for ``torch.onnx.export(..., dynamo=True)``."""
    from onnxscript import opset18 as op

    args = dict(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, ln_gain=ln_gain, ln_gain_ih=ln_gain_ih,
                lengths=lengths, rec_mask=rec_mask, zone_mask=zone_mask, reset_after=reset_after, reverse=reverse,
                save=save, backend=backend, spec=spec)
    attrs = node_plan(args, is_none=lambda v: v is None)
    H = w_hh.shape[1]
    if not isinstance(H, int):
        raise InteropError("ONNX export: the GRU's hidden size must be static")
    order = op.Constant(value_ints=_gate_order(H))
    axis0 = op.Constant(value_ints=[0])

    def onnx_rows(t):
        return op.Gather(t, order, axis=0)

    W = op.Unsqueeze(onnx_rows(w_ih), axis0)
    R = op.Unsqueeze(onnx_rows(w_hh), axis0)
    B = None
    if b_ih is not None or b_hh is not None:
        present = b_ih if b_ih is not None else b_hh
        zeros = op.Sub(present, present) if (b_ih is None or b_hh is None) else None
        B = op.Unsqueeze(op.Concat(onnx_rows(b_ih if b_ih is not None else zeros),
                                   onnx_rows(b_hh if b_hh is not None else zeros), axis=0), axis0)
    seq_lens = op.Cast(lengths, to=6) if lengths is not None else None  # int32
    h = op.Unsqueeze(h0, axis0)
    Y, Y_h = op.GRU(x, W, R, B, seq_lens, h, hidden_size=H, **attrs)
    Y = op.Squeeze(Y, op.Constant(value_ints=[1]))
    if reverse:
        middle = op.Slice(Y, op.Constant(value_ints=[1]), op.Constant(value_ints=[2**62]), axis0)
        buf = op.Concat(Y_h, middle, h, axis=0)
    else:
        middle = op.Slice(Y, axis0, op.Constant(value_ints=[-1]), axis0)
        buf = op.Concat(h, middle, Y_h, axis=0)
    unused = op.Constant(value_floats=[0.0])  # the op's saved-for-backward outputs; nothing reads them
    return buf, unused, unused, unused


def onnx_translation_table() -> dict:
    """``{fastgru's op: its translation}`` for ``torch.onnx.export(..., custom_translation_table=)``.

    Only needed where the automatic registration (see the module text) cannot reach torch's table.
    """
    return {_op(): translate_recurrence}


def _add_to_dynamo_exporter(compat_module) -> None:
    """Put the translation into the dynamo exporter's default table (private to torch: guarded)."""
    try:
        from torch.onnx._internal.exporter import _registration
        from torch.onnx._internal.exporter._torchlib import _torchlib_registry

        if any(getattr(m, "fx_target", None) == _op() for m in _torchlib_registry._registry):
            return
        _torchlib_registry._registry.append(_registration.OnnxDecompMeta(
            onnx_function=translate_recurrence, fx_target=_op(), signature=None, is_custom=True,
        ))
    except Exception as exc:  # a torch release without these internals: the explicit table still works
        warnings.warn(
            f"fastgru could not register its ONNX translation with torch.onnx ({type(exc).__name__}: {exc}); "
            "pass custom_translation_table=fastgru.interop.onnx_translation_table() to torch.onnx.export",
            stacklevel=2,
        )


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `callback(module)` once, right after the module `name` has been imported."""

    def __init__(self, name: str, callback) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_then_call(module):
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_then_call
        return spec


# The dynamo exporter's entry module: once it is loaded, so are the registry modules it imports.
_DYNAMO_ENTRY = "torch.onnx._internal.exporter._compat"


def _register_dynamo() -> None:
    if _DYNAMO_ENTRY in sys.modules:
        _add_to_dynamo_exporter(sys.modules[_DYNAMO_ENTRY])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(_DYNAMO_ENTRY, _add_to_dynamo_exporter))


# ------------------------------------------------------------------------------------- TorchScript


def _symbolic(g, *values):
    """TorchScript-exporter symbolic of ``fastgru::recurrence`` (same node as translate_recurrence)."""
    from torch.onnx import symbolic_helper as sh

    args = dict(zip(_argument_names(), values))
    for name, kind in (("reset_after", "b"), ("reverse", "b"), ("save", "b"), ("backend", "s"), ("spec", "s")):
        args[name] = sh._maybe_get_const(args[name], kind)
    attrs = node_plan(args, is_none=sh._is_none)
    sizes = sh._get_tensor_sizes(args["w_hh"])
    H = sizes[1] if sizes else None
    if not isinstance(H, int):
        raise InteropError("ONNX export: the GRU's hidden size must be static")

    def const(values):
        return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    def absent():
        n = g.op("prim::Constant")
        n.setType(torch._C.OptionalType.ofTensor())
        return n

    order, axis0 = const(_gate_order(H)), const([0])

    def onnx_rows(t):
        return g.op("Gather", t, order, axis_i=0)

    W = g.op("Unsqueeze", onnx_rows(args["w_ih"]), axis0)
    R = g.op("Unsqueeze", onnx_rows(args["w_hh"]), axis0)
    b_ih, b_hh = (None if sh._is_none(args[n]) else args[n] for n in ("b_ih", "b_hh"))
    if b_ih is None and b_hh is None:
        B = absent()
    else:
        present = b_ih if b_ih is not None else b_hh
        zeros = g.op("Sub", present, present)
        B = g.op("Unsqueeze", g.op("Concat", onnx_rows(b_ih if b_ih is not None else zeros),
                                   onnx_rows(b_hh if b_hh is not None else zeros), axis_i=0), axis0)
    lengths = args["lengths"]
    seq_lens = absent() if sh._is_none(lengths) else g.op("Cast", lengths, to_i=6)  # int32
    h = g.op("Unsqueeze", args["h0"], axis0)
    typed = {"linear_before_reset_i": attrs["linear_before_reset"], "direction_s": attrs["direction"]}
    if "activations" in attrs:
        typed["activations_s"] = attrs["activations"]
    for key in ("activation_alpha", "activation_beta"):
        if key in attrs:
            typed[f"{key}_f"] = attrs[key]
    Y, Y_h = g.op("GRU", args["x"], W, R, B, seq_lens, h, hidden_size_i=H, outputs=2, **typed)
    Y = g.op("Squeeze", Y, const([1]))
    if args["reverse"]:
        buf = g.op("Concat", Y_h, g.op("Slice", Y, const([1]), const([2**62]), axis0), h, axis_i=0)
    else:
        buf = g.op("Concat", h, g.op("Slice", Y, axis0, const([-1]), axis0), Y_h, axis_i=0)
    unused = g.op("Constant", value_t=torch.zeros(1))
    return buf, unused, unused, unused


def register() -> None:
    """Teach both torch.onnx exporters fastgru's op (done when fastgru is imported; safe to repeat)."""
    torch.onnx.register_custom_op_symbolic(_OP_NAME, _symbolic, MIN_OPSET)
    _register_dynamo()
