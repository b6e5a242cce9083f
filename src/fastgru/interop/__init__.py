"""Exact conversions between fastgru GRUs and torch.nn, Keras 3, ONNX and the textbook forms.

Every conversion goes through one hub (`layout`: a GRUSpec + torch-layout weights) using index
operations only, so weights arrive bit-exact and outputs match the other framework's own outputs.
Options a target cannot compute are refused with an InteropError naming them, never dropped.

    from_torch / to_torch                torch.nn.GRU, GRUCell
    from_keras / to_keras                live Keras 3 layers and models (KERAS_BACKEND any)
    from_keras_file                      saved .keras / .weights.h5, read with h5py
    from_onnx (+ fastgru.io.export.onnx)    ONNX GRU nodes
    torch.onnx.export(any model)         fastgru GRUs become ONNX GRU nodes (see onnx_export)
    to_z_lets_new_in / from_z_lets_new_in, to_concatenated / from_concatenated   textbook forms

Keras, onnx and h5py are imported only when their functions are called (pip install fastgru[interop]).
"""

from fastgru.interop import onnx_export
from fastgru.interop.keras_file import from_keras_file
from fastgru.interop.keras_live import from_keras, to_keras
from fastgru.interop.layout import GRUSpec, InteropError, build, spec_of, weights_of
from fastgru.interop.onnx_export import onnx_translation_table
from fastgru.interop.onnx_graph import from_onnx, to_onnx_model
from fastgru.interop.textbook import (
    ConcatenatedGRU,
    from_concatenated,
    from_z_lets_new_in,
    to_concatenated,
    to_z_lets_new_in,
)
from fastgru.interop.torch_nn import from_torch, to_torch

__all__ = [
    "ConcatenatedGRU",
    "GRUSpec",
    "InteropError",
    "build",
    "from_concatenated",
    "from_keras",
    "from_keras_file",
    "from_onnx",
    "from_torch",
    "from_z_lets_new_in",
    "onnx_translation_table",
    "spec_of",
    "to_concatenated",
    "to_keras",
    "to_onnx_model",
    "to_torch",
    "to_z_lets_new_in",
    "weights_of",
]

onnx_export.register()
