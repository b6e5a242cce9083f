"""Whole Keras 3 models -> torch modules with fastgru GRUs inside (and the wrappers they need).

`GoBackwards` is a Keras GRU with go_backwards=True: it reads the sequence from its end and returns
the outputs in that processing order (Keras' documented behaviour: "process the input sequence
backwards and return the reversed sequence").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GoBackwards(nn.Module):
    """A GRU run over the time-reversed input, outputs left in processing order (Keras' go_backwards=True).

    forward(input, hx=None) -> (output, h_n): `gru(input.flip(time))`. No `lengths`: after the flip a
    right-padded batch is left-padded, which lengths cannot express.
    """

    def __init__(self, gru: nn.Module) -> None:
        super().__init__()
        self.gru = gru

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        time = 1 if getattr(self.gru, "batch_first", False) else 0
        return self.gru(torch.flip(input, (time,)), hx)
