"""Modules: GRU and GRUCell (drop-ins for torch.nn), and variants."""

from .gru import GRU, GRUCell, LayerNormGRU
from .streaming import Stream

__all__ = ["GRU", "GRUCell", "LayerNormGRU", "Stream"]
