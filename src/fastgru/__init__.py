"""fastgru: exact, fast Gated Recurrent Units for PyTorch.

`fastgru.nn.GRU` is a drop-in for torch.nn.GRU (same parameters, same numbers) with a hand-written
BPTT and fused kernels; `fastgru.functional` holds the functional form; `fastgru.reference` the
float64 oracle.

The package is layered (each layer imports only the ones above it):

- ``fastgru.core`` (functional, reference, validation, errors) and ``fastgru.backends`` (the fused C++
  CPU kernel, the Triton GPU kernels, the plain-torch loop);
- ``fastgru.nn`` (the modules) and ``fastgru.mingru`` (minGRU);
- ``fastgru.io`` (checkpoints, exports, atomic files) and ``fastgru.interop`` (torch, Keras, ONNX);
- ``fastgru.train`` (the Trainer and the sequence models it trains);
- ``fastgru.apps`` (the ``fastgru`` command and its tasks).
"""

from fastgru import _moved, interop, nn
from fastgru.core import functional, reference
from fastgru.core.errors import GRUInputError
from fastgru.io import checkpoint, export
from fastgru.io.checkpoint import load, save
from fastgru.nn import GRU, GRUCell, LayerNormGRU, MinGRU, Stream

_moved.install()

__version__ = "0.1.0"
__all__ = [
    "GRU", "GRUCell", "GRUInputError", "LayerNormGRU", "MinGRU", "Stream", "checkpoint", "export", "functional",
    "interop", "load", "nn", "reference", "save", "__version__",
]
