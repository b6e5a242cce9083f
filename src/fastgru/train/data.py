"""The two shapes of training data the Trainer knows, and how they are cut into (sharded) batches.

- :class:`SequenceData`: N independent sequences (windows of a series, labelled recordings, sentences),
  padded to a common length with optional per-sequence ``lengths``; shuffled into mini-batches.
- :class:`StreamData`: S long parallel streams (a long series or a text cut into S rows) trained with
  truncated BPTT: consecutive chunks of ``bptt`` steps, the hidden state carried from chunk to chunk.

Under DistributedDataParallel every process holds the full data and draws the same global batches (the
shuffling generator has the same seed everywhere); each process takes its contiguous share of a global
batch (`torch.tensor_split`), so the union over processes is exactly what one process would see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """One (local) batch: inputs, targets, optional lengths; `first` marks a stream's first chunk."""

    x: Tensor
    y: Tensor
    lengths: Tensor | None = None
    first: bool = True

    def to(self, device: torch.device) -> Batch:
        lengths = self.lengths.to(device) if self.lengths is not None else None
        return Batch(self.x.to(device), self.y.to(device), lengths, self.first)


@dataclass
class SequenceData:
    """N sequences: x (N, T, F) floats or (N, T) token ids; y (N, ...) or per-step (N, T, ...);
    lengths (N,) int64 in 1..T or None (all full length)."""

    x: Tensor
    y: Tensor
    lengths: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() < 2:
            raise ValueError(f"x must be (N, T, features) or (N, T) token ids, got shape {tuple(self.x.shape)}")
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} sequences but y has {self.y.shape[0]}")
        if self.lengths is not None:
            self.lengths = torch.as_tensor(self.lengths, dtype=torch.int64)
            if self.lengths.shape != (self.x.shape[0],):
                raise ValueError(f"lengths must be ({self.x.shape[0]},), got {tuple(self.lengths.shape)}")
            if len(self.lengths) and (self.lengths.min() < 1 or self.lengths.max() > self.x.shape[1]):
                raise ValueError(f"lengths must lie in 1..{self.x.shape[1]} (the padded length)")

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx: Tensor, per_step: bool = False) -> Batch:
        """The sequences at `idx`, padding trimmed to the longest of them (targets too when per step)."""
        x, y = self.x[idx], self.y[idx]
        lengths = None
        if self.lengths is not None:
            lengths = self.lengths[idx]
            T = int(lengths.max())
            x = x[:, :T]
            if per_step:
                y = y[:, :T]
        return Batch(x, y, lengths)


@dataclass
class StreamData:
    """S parallel streams: x (S, T, F) floats or (S, T) ids; y per step, (S, T, ...)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.dim() < 2 or self.y.shape[:2] != self.x.shape[:2]:
            raise ValueError(
                f"stream data needs x (streams, time, ...) and per-step y with the same first two sizes, "
                f"got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )

    @classmethod
    def from_series(cls, x: Tensor, y: Tensor, num_streams: int) -> StreamData:
        """Cut one long (T, ...) series and its per-step targets into `num_streams` consecutive rows
        (the tail that does not fill a row is dropped), as char-RNN training does."""
        if num_streams < 1 or x.shape[0] < num_streams:
            raise ValueError(f"cannot cut {x.shape[0]} steps into {num_streams} streams")
        n = x.shape[0] // num_streams
        cut = n * num_streams
        return cls(x[:cut].reshape(num_streams, n, *x.shape[1:]), y[:cut].reshape(num_streams, n, *y.shape[1:]))

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def steps(self) -> int:
        return self.x.shape[1]


def sequence_batches(
    data: SequenceData,
    batch_size: int,
    generator: torch.Generator | None,
    rank: int = 0,
    world_size: int = 1,
    per_step: bool = False,
) -> Iterator[Batch]:
    """Global mini-batches of `batch_size` (shuffled when a generator is given), this rank's share.

    Under DDP a last global batch smaller than the number of processes is dropped (some process would
    get no sequence); with one process nothing is dropped.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < world_size:
            break
        yield data.take(torch.tensor_split(idx, world_size)[rank], per_step)


def num_sequence_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= max(1, world_size) else 0)


def stream_batches(data: StreamData, bptt: int | None, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """Consecutive chunks of `bptt` steps of this rank's streams; `first` is set on the first chunk."""
    if len(data) < world_size:
        raise ValueError(f"{len(data)} streams cannot be shared by {world_size} processes")
    rows = torch.tensor_split(torch.arange(len(data)), world_size)[rank]
    x, y = data.x[rows], data.y[rows]
    chunk = bptt or data.steps
    for t in range(0, data.steps, chunk):
        yield Batch(x[:, t : t + chunk], y[:, t : t + chunk], None, first=t == 0)


def num_stream_batches(data: StreamData, bptt: int | None) -> int:
    chunk = bptt or data.steps
    return -(-data.steps // chunk)
