"""Modules: GRU and GRUCell (drop-ins for torch.nn), and variants."""

from .gru import GRU, GRUCell
from .streaming import Stream

__all__ = ["GRU", "GRUCell", "Stream"]
