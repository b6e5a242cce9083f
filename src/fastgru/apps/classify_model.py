"""A convolutional GRU classifier for time series: a GRU-FCN-style hybrid with a learned strided front end.

Why this shape
--------------
A plain GRU that reads a series of 1000+ steps sees each shape only through a long chain of state
updates, and with a few dozen training series it has nothing to learn them from. Fully convolutional
networks (FCN, Wang et al. 2017) and the GRU-FCN hybrid (Elsayed et al. 2018) fix both: convolutions
find local shapes wherever they occur, and the GRU reads a short summary sequence. This module builds

    x (B, T, C)
      -> stem: Conv1d(C, F1, k, stride s) + BatchNorm + ReLU      learned downsampling, T' = ceil(T / s)
      -> FCN branch: Conv(F1,F2,5) + BN + ReLU, Conv(F2,F1,3) + BN + ReLU, masked global average pool
      -> GRU branch: fastgru.nn.GRU(F1, H) over the T' stem outputs; the state at each series' own end,
         then Dropout(gru_dropout) (0.8, as LSTM-FCN/GRU-FCN do: it keeps the recurrent branch from
         memorising a few dozen training series)
      -> concat (F1 + H) -> Dropout(dropout) -> Linear -> class logits

The stride s is ``ceil(max_length / gru_steps)`` for the longest training series, so the GRU reads at
most ``gru_steps`` steps (a few hundred), not thousands. The stem kernel is ``max(8, 2 s + 1)`` wide so
neighbouring windows overlap. ``branches="fcn"`` or ``"gru"`` drops one branch (for ablations).

Variable lengths: ``lengths`` (int64, one per series) zeroes the convolution outputs past each series' end
(``ceil(L / s)`` stem steps for L input steps), masks the average pool and is passed to the GRU, so in
eval mode a padded series gets exactly the logits it gets alone.

Example::

    >>> cfg = ConvGRUConfig(input_size=1, num_classes=3, max_length=251)
    >>> model = ConvGRUClassifier(cfg)
    >>> model(torch.randn(4, 251, 1), torch.full((4,), 251)).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fastgru.io.settings import JsonSettings

BRANCHES = ("both", "fcn", "gru")


@dataclass
class ConvGRUConfig(JsonSettings):
    """Everything needed to rebuild a :class:`ConvGRUClassifier` (saved as JSON beside the weights).

    input_size: channels per step. num_classes: output logits. max_length: longest training series, which
    sets the stem stride. filters: (F1, F2) convolution widths. hidden_size: GRU units. gru_steps: the most
    steps the GRU reads. gru_dropout: on the GRU summary. dropout: before the linear head. branches:
    "both", "fcn" or "gru".
    """

    settings_label = "classifier config keys"

    input_size: int = 1
    num_classes: int = 2
    max_length: int = 1
    filters: tuple[int, int] = (64, 128)
    hidden_size: int = 64
    gru_steps: int = 128
    dropout: float = 0.0
    gru_dropout: float = 0.8
    branches: str = "both"

    def __post_init__(self) -> None:
        self.filters = tuple(int(f) for f in self.filters)  # JSON gives a list back
        if self.branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}, got {self.branches!r}")
        if self.input_size < 1 or self.num_classes < 2 or self.max_length < 1:
            raise ValueError("input_size and max_length must be >= 1 and num_classes >= 2, got "
                             f"{self.input_size}, {self.max_length}, {self.num_classes}")
        if len(self.filters) != 2 or min(self.filters) < 1 or self.hidden_size < 1 or self.gru_steps < 1:
            raise ValueError(f"filters must be two positive widths, hidden_size and gru_steps >= 1; got "
                             f"{self.filters}, {self.hidden_size}, {self.gru_steps}")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.gru_dropout < 1.0):
            raise ValueError(f"dropout and gru_dropout must lie in [0, 1), got {self.dropout}, {self.gru_dropout}")

    @property
    def stride(self) -> int:
        """Stem stride: the GRU then reads at most ``gru_steps`` steps of the longest training series."""
        return max(1, math.ceil(self.max_length / self.gru_steps))

    @property
    def stem_kernel(self) -> int:
        return max(8, 2 * self.stride + 1)


def _block(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
                         nn.BatchNorm1d(c_out), nn.ReLU())


class ConvGRUClassifier(nn.Module):
    """GRU-FCN-style classifier; see the module docstring for the architecture.

    ``forward(x, lengths=None)``: x (B, T, input_size) floats; lengths int64 (B,) in 1..T (None: all T).
    Returns class logits (B, num_classes).
    """

    def __init__(self, config: ConvGRUConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.config = config if config is not None else ConvGRUConfig(**kwargs)
        cfg = self.config
        f1, f2 = cfg.filters
        self.stem = _block(cfg.input_size, f1, cfg.stem_kernel, cfg.stride)
        width = 0
        if cfg.branches in ("both", "fcn"):
            self.fcn = nn.Sequential(_block(f1, f2, 5), _block(f2, f1, 3))
            width += f1
        else:
            self.fcn = None
        if cfg.branches in ("both", "gru"):
            from fastgru.nn import GRU  # the library's own GRU; imported late like fastgru.train.models does

            self.gru = GRU(f1, cfg.hidden_size, batch_first=True)
            self.gru_dropout = nn.Dropout(cfg.gru_dropout)
            width += cfg.hidden_size
        else:
            self.gru = None
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(width, cfg.num_classes)

    def stem_lengths(self, lengths: Tensor) -> Tensor:
        """Steps of the stem output that come from real (unpadded) input: ceil(L / stride), at least 1."""
        s = self.config.stride
        return torch.clamp((lengths + s - 1) // s, min=1)

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The concatenated branch summaries (B, F1 + H) that the linear head reads."""
        if x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(f"x must be (batch, time, {self.config.input_size}) floats, got {tuple(x.shape)}")
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64)
        lengths = lengths.to(torch.int64)
        keep = (torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None]).to(x.dtype)
        z = self.stem((x * keep[:, :, None]).transpose(1, 2))  # padding read as zeros whatever it holds; (B, F1, T')
        Ls = self.stem_lengths(lengths.cpu()).clamp(max=z.shape[-1]).to(z.device)
        # zero every step past a series' own end, so a padded series gives exactly what it gives alone
        mask = (torch.arange(z.shape[-1], device=z.device)[None, :] < Ls[:, None]).to(z.dtype)[:, None, :]
        z = z * mask
        parts = []
        if self.fcn is not None:
            h = z
            for block in self.fcn:
                h = block(h) * mask
            parts.append(h.sum(-1) / Ls[:, None].to(h.dtype))
        if self.gru is not None:
            _, h_n = self.gru(z.transpose(1, 2).contiguous(), lengths=Ls)
            parts.append(self.gru_dropout(h_n[-1]))
        return torch.cat(parts, dim=-1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.dropout(self.features(x, lengths)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
