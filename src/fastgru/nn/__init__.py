"""Modules: GRU and GRUCell (drop-ins for torch.nn), and variants."""

from .gru import GRU, GRUCell, LayerNormGRU
from .mingru import MinGRU, MinGRUBlock, MinGRUStack
from .streaming import Stream

__all__ = ["GRU", "GRUCell", "LayerNormGRU", "Stream"]
__all__ += ["MinGRU", "MinGRUBlock", "MinGRUStack"]
