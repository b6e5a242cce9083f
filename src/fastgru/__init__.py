"""fastgru: exact, fast Gated Recurrent Units for PyTorch.

`fastgru.nn.GRU` is a drop-in for torch.nn.GRU (same parameters, same numbers) with a hand-written
BPTT and fused kernels; `fastgru.functional` holds the functional form; `fastgru.reference` the
float64 oracle.
"""

from . import checkpoint, export, functional, interop, nn, reference
from .checkpoint import load, save
from .errors import GRUInputError
from .nn import GRU, GRUCell, LayerNormGRU, MinGRU, Stream

__version__ = "0.1.0"
__all__ = [
    "GRU", "GRUCell", "GRUInputError", "LayerNormGRU", "MinGRU", "Stream", "checkpoint", "export", "functional",
    "interop", "load", "nn", "reference", "save", "__version__",
]
