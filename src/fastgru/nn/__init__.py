"""Modules: GRU and GRUCell (drop-ins for torch.nn), and variants."""

from .gru import GRU, GRUCell

__all__ = ["GRU", "GRUCell"]
