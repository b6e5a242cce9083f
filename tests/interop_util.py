"""Helpers shared by the interop and checkpoint tests: random weights, ragged lengths, comparisons."""

from __future__ import annotations

import numpy as np
import torch

TOL = 1e-5  # fp32 agreement required between fastgru and another framework on the same weights


def randomize_(module: torch.nn.Module, scale: float = 0.5) -> torch.nn.Module:
    """Fill every parameter with fresh N(0, scale^2) values (non-zero biases everywhere, unlike inits)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return module


def ragged_lengths(batch: int, seq_len: int) -> torch.Tensor:
    """Random int64 lengths in [1, seq_len], with the full length present at least once."""
    lengths = torch.randint(1, seq_len + 1, (batch,))
    lengths[torch.randint(0, batch, (1,))] = seq_len
    return lengths


def max_err(a, b) -> float:
    a = torch.as_tensor(a).double()
    b = torch.as_tensor(b).double()
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def same_state(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> bool:
    """Same keys and bit-identical tensors (dtype included)."""
    sa = a.state_dict() if isinstance(a, torch.nn.Module) else a
    sb = b.state_dict() if isinstance(b, torch.nn.Module) else b
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def scaled_err(a, b) -> float:
    """max |a - b| / max(1, max |b|): absolute for bounded (tanh) outputs, relative for unbounded (relu) ones."""
    b = torch.as_tensor(b).double()
    return max_err(a, b) / max(1.0, b.abs().max().item())


def fill_(model, scale: float = 0.5):
    """Fresh random values (from torch's seeded generator) in every variable of a Keras model, biases included."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31, ())))
    for v in model.weights:
        v.assign(rng.normal(0, scale, tuple(v.shape)).astype("float32"))
    return model
