"""Keras-style step masks run on the fast `lengths` path: real steps gathered to the front, then put back.

A mask marks each step of each sequence real (True) or masked (False), anywhere in the sequence: left
padding, right padding, holes. Keras' semantics: a masked step leaves the state unchanged, so each
sequence's state is the GRU run over its real steps alone, in order (and in reverse order for the
backward direction of a bidirectional layer). That is exactly what the `lengths` path computes once
each sequence's real steps are moved to the front, keeping their order. So:

1. `plan(mask)`: for every sequence, where each step goes (a stable partition: real steps first);
2. `to_front(x, plan)`: the input with real steps first; the GRU runs it with lengths = real-step counts;
3. `to_time_steps(y, plan, ...)`: each output back at its time step; masked steps get zeros ("zero")
   or the last output in processing order ("carry": forward directions repeat the previous real step's
   output, backward directions the next real step's; zeros where there is none, as Keras' initial
   output);
4. a sequence with no real step keeps its initial state (h_n = hx) and outputs zeros, as in Keras.

Only gathers, scatters, cumulative sums and selections: differentiable, traceable by torch.compile and
torch.export, and exportable to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MASK_OUTPUTS = ("zero", "carry")


@dataclass
class MaskPlan:
    """Where each step of a masked batch goes (all (T, B) int64 or bool, time-major).

    real: the mask; count: real steps at or before t; order: the time step read at packed position j
    (real steps first, in order); lengths: real steps per sequence, at least 1 (the run's lengths;
    `empty` marks the sequences that have none).
    """

    real: Tensor
    count: Tensor
    order: Tensor
    lengths: Tensor
    empty: Tensor


def plan(mask_tb: Tensor) -> MaskPlan:
    """The gather plan of a time-major (T, B) bool mask."""
    T = mask_tb.shape[0]
    count = mask_tb.long().cumsum(0)
    real_steps = count[-1]
    masked_before = (~mask_tb).long().cumsum(0)
    # packed position of step t: real steps 0..n-1 in order, then the masked steps in order
    position = torch.where(mask_tb, count - 1, real_steps + masked_before - 1)
    steps = torch.arange(T, device=mask_tb.device).unsqueeze(1).expand_as(position)
    order = torch.zeros_like(position).scatter(0, position, steps)
    return MaskPlan(real=mask_tb, count=count, order=order, lengths=real_steps.clamp(min=1),
                    empty=real_steps == 0)


def _take(t: Tensor, index: Tensor) -> Tensor:
    """t (T, B, D) read at index (T, B) along time."""
    return t.gather(0, index.unsqueeze(2).expand(-1, -1, t.shape[2]))


def to_front(x: Tensor, p: MaskPlan) -> Tensor:
    """x (T, B, I) with each sequence's real steps first (in order), its masked steps after them."""
    return _take(x, p.order)


def to_time_steps(y: Tensor, p: MaskPlan, hidden_size: int, bidirectional: bool, mask_output: str) -> Tensor:
    """The packed run's output (T, B, dirs * H) back at the time steps, masked steps filled (see module)."""
    real = p.real.unsqueeze(2)
    zero = y.new_zeros(())
    own = (p.count - 1).clamp(min=0)  # the packed position of a real step; of the last real step before t
    if mask_output == "zero":
        return torch.where(real, _take(y, own), zero)
    forward = torch.where((p.count > 0).unsqueeze(2), _take(y[..., :hidden_size], own), zero)
    if not bidirectional:
        return forward
    # the backward direction's last output at a masked step is that of the next real step after it
    after = p.count - p.real.long()  # real steps before t = the packed position of the next real step
    has_next = (after < p.count[-1]).unsqueeze(2)
    backward = torch.where(has_next, _take(y[..., hidden_size:], after.clamp(max=y.shape[0] - 1)), zero)
    return torch.cat((forward, backward), dim=2)


def keep_initial_state(h_n: Tensor, hx: Tensor, p: MaskPlan) -> Tensor:
    """h_n with the initial state for sequences that have no real step (their run was a dummy step)."""
    return torch.where(p.empty.view(1, -1, 1), hx, h_n)
