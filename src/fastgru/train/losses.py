"""Losses and metrics per model head, as (sum, count) pairs so any batch split reduces exactly.

Returning sums and counts (instead of means) lets the Trainer divide by the *global* count of a batch
split across processes (DDP) or accumulate an epoch's metric over uneven batches without bias.

head            loss (per counted item)                               metric
regression      squared error, per scalar output (MSE)                mae (per scalar output)
classification  cross-entropy, per sequence (or per valid step)       accuracy
multilabel      Bernoulli NLL summed over labels, per sequence/step   label_accuracy (per label bit)
next_token      cross-entropy in nats, per valid token                accuracy (bits_per_token derived)

For multilabel the loss is the "negative log-likelihood per time step" of the polyphonic-music papers.
Per-step outputs with ``lengths`` count only steps t < lengths[b].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

PRIMARY_METRIC = {
    "regression": "mae",
    "classification": "accuracy",
    "multilabel": "label_accuracy",
    "next_token": "accuracy",
}
HIGHER_IS_BETTER = ("accuracy", "label_accuracy", "f1", "macro_f1")


def step_mask(lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor | None:
    """(B, T) bool, True at steps t < lengths[b]; None when every step counts."""
    if lengths is None:
        return None
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


def _masked(per_item: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if mask is None:
        return per_item.sum(), torch.tensor(per_item.numel(), dtype=per_item.dtype, device=per_item.device)
    m = mask.to(per_item.dtype)
    return (per_item * m).sum(), m.sum()


def loss_terms(head: str, out: Tensor, y: Tensor, lengths: Tensor | None, per_step: bool) -> tuple[Tensor, Tensor]:
    """(sum of the loss over counted items, number of counted items) for one batch."""
    mask = step_mask(lengths, out.shape[0], out.shape[1], out.device) if per_step else None
    if head == "regression":
        se = (out - y.to(out.dtype)).square()
        if mask is None:
            return se.sum(), torch.tensor(se.numel(), dtype=se.dtype, device=se.device)
        s, n = _masked(se.sum(-1), mask)
        return s, n * se.shape[-1]
    if head in ("classification", "next_token"):
        C = out.shape[-1]
        ce = F.cross_entropy(out.reshape(-1, C), y.reshape(-1).long(), reduction="none").view(y.shape)
        return _masked(ce, mask)
    if head == "multilabel":
        nll = F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none").sum(-1)
        return _masked(nll, mask)
    raise ValueError(f"unknown head {head!r}")


def metric_terms(
    head: str, out: Tensor, y: Tensor, lengths: Tensor | None, per_step: bool
) -> dict[str, tuple[float, float]]:
    """{metric name: (sum, count)} for one batch, without gradients."""
    with torch.no_grad():
        mask = step_mask(lengths, out.shape[0], out.shape[1], out.device) if per_step else None
        if head == "regression":
            ae = (out - y.to(out.dtype)).abs()
            if mask is None:
                return {"mae": (float(ae.sum()), float(ae.numel()))}
            s, n = _masked(ae.sum(-1), mask)
            return {"mae": (float(s), float(n) * ae.shape[-1])}
        if head in ("classification", "next_token"):
            s, n = _masked((out.argmax(-1) == y.long()).to(out.dtype), mask)
            return {"accuracy": (float(s), float(n))}
        if head == "multilabel":
            bits = ((out > 0) == (y > 0.5)).to(out.dtype)
            s, n = _masked(bits.sum(-1), mask)
            return {"label_accuracy": (float(s), float(n) * out.shape[-1])}
    raise ValueError(f"unknown head {head!r}")


def derived_metrics(head: str, loss: float) -> dict[str, float]:
    """Metrics that follow from the mean loss: bits per token for language models, RMSE for regression."""
    if head == "next_token":
        return {"bits_per_token": loss / math.log(2)}
    if head == "regression":
        return {"rmse": math.sqrt(max(loss, 0.0))}
    return {}
