"""Modules: GRU and GRUCell (drop-ins for torch.nn), and variants."""

from fastgru.mingru.module import MinGRU, MinGRUBlock, MinGRUStack
from fastgru.nn.gru import GRU, GRUCell, LayerNormGRU
from fastgru.nn.streaming import Stream

__all__ = ["GRU", "GRUCell", "LayerNormGRU", "Stream"]
__all__ += ["MinGRU", "MinGRUBlock", "MinGRUStack"]
