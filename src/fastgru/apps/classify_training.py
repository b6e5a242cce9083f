"""Training for `classify`: per-series normalisation, augmentation, selection by validation accuracy, refit.

The recipe (defaults chosen by the ablations recorded in RESULTS.md, section "classify"):

1. **Normalisation** (``normalise``): ``"series"`` z-normalises each channel of each series over its own
   steps (shapes matter, offsets and scales of single recordings do not); ``"global"`` uses the mean and
   standard deviation of all training steps per channel; ``"none"`` leaves the values alone.
2. **Augmentation** (training batches only): window slicing (each series is cut to a random window of
   ``slice_ratio`` of its length; the network's average pool and the GRU's ``lengths`` take the shorter
   series as it is) and jitter (Gaussian noise of standard deviation ``jitter`` added to every real step).
3. **Schedule**: AdamW with a cosine learning-rate decay from ``lr`` to 0 over ``epochs`` epochs.
4. **Selection**: with a validation part, the epoch with the highest validation accuracy wins (ties go to
   the lower validation loss); then, with ``refit``, a fresh model is trained on *all* training series with
   the same schedule and stopped at that epoch, so validation does not cost the final model any data.
   Without a validation part the model after the last epoch is kept.
5. **Members** (``members``): the prediction averages the class probabilities of several networks. With a
   validation part and a refit, the validated run and the refit are the first two (no extra training);
   further members are more runs like the last one with seeds ``seed + 1000``, ``seed + 2000``, ...
6. **Test views** (``test_views``, with window slicing): each series is also classified from ``test_views``
   windows of ``slice_ratio`` of its length, evenly spaced from its start to its end, which is what the
   networks saw in training; the probabilities of all views and members are averaged.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

NORMALISATIONS = ("series", "global", "none")


def normalise(xs: Sequence[np.ndarray], mode: str, reference: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Normalised copies of the (T_i, C) series in `xs`.

    mode "series": each channel of each series to mean 0, standard deviation 1 over its own steps (a
    constant channel becomes 0). "global": per channel, with the mean and deviation of all steps of
    `reference` (the training series). "none": unchanged float32 copies.
    """
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
    if mode == "none":
        return [np.asarray(x, np.float32) for x in xs]
    if mode == "series":
        out = []
        for x in xs:
            mu, sd = x.mean(0, keepdims=True), x.std(0, keepdims=True)
            out.append(((x - mu) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32))
        return out
    mu, sd = _channel_statistics(reference if reference is not None else xs)
    return [((x - mu) / sd).astype(np.float32) for x in xs]


def _channel_statistics(series: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    steps = np.concatenate(list(series))
    mu, sd = steps.mean(0, keepdims=True), steps.std(0, keepdims=True)
    return mu, np.where(sd > 1e-8, sd, 1.0)


def normalisation_statistics(train: Sequence[np.ndarray], mode: str) -> dict[str, list[float]] | None:
    """What a saved model needs to normalise new series as in training: the per-channel mean and
    deviation of the training series for mode "global" (None for "series" and "none", which need none)."""
    if mode != "global":
        return None
    mu, sd = _channel_statistics(train)
    return {"mean": mu[0].astype(float).tolist(), "std": sd[0].astype(float).tolist()}


def pad(xs: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Series padded with zeros into (N, T_max, C) float32, and their lengths (int64)."""
    lengths = np.array([len(x) for x in xs], dtype=np.int64)
    out = np.zeros((len(xs), int(lengths.max()), xs[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(xs):
        out[i, : len(x)] = x
    return torch.from_numpy(out), torch.from_numpy(lengths)


def window_lengths(lengths: Tensor, slice_ratio: float) -> Tensor:
    """``ceil(slice_ratio * L)`` steps (at least 1) for each series of length L: a slicing window's length."""
    return torch.clamp(torch.ceil(lengths.to(torch.float64) * slice_ratio).to(torch.int64), min=1)


def _to_front(x: Tensor, start: Tensor) -> Tensor:
    """Each row of x (B, T, C) read from its own step `start[b]` on, moved to the start of the row."""
    B, T, C = x.shape
    idx = (start[:, None] + torch.arange(T)[None, :]).clamp(max=T - 1)
    return torch.gather(x, 1, idx[:, :, None].expand(B, T, C))


def _step_mask(lengths: Tensor, T: int, dtype: torch.dtype) -> Tensor:
    """(B, T, 1): 1 at each series' first `lengths[b]` steps, 0 after."""
    return (torch.arange(T)[None, :] < lengths[:, None]).to(dtype)[:, :, None]


def augment(x: Tensor, lengths: Tensor, slice_ratio: float, jitter: float,
            gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Window slicing then jitter of a padded batch; returns the new batch and lengths.

    Each series keeps a random window of ``ceil(slice_ratio * L)`` of its L steps (1.0: no slicing),
    moved to the start of the row; ``jitter`` is the standard deviation of the Gaussian noise added to
    the kept steps (0: none). Padding stays zero.
    """
    if slice_ratio < 1.0:
        new_len = window_lengths(lengths, slice_ratio)
        start = (torch.rand(x.shape[0], generator=gen) * (lengths - new_len + 1).to(torch.float64)).floor()
        x = _to_front(x, start.to(torch.int64))
        lengths = new_len
    mask = _step_mask(lengths, x.shape[1], x.dtype)
    if jitter > 0:
        x = x + jitter * torch.randn(x.shape, generator=gen) * mask
    return x * mask, lengths


@dataclass
class FitSettings:
    """How `fit_classifier` trains; see the module docstring."""

    epochs: int = 200
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-2
    slice_ratio: float = 0.9
    jitter: float = 0.0
    refit: bool = True
    members: int = 2
    seed: int = 0
    progress: bool = False


@dataclass
class FitResult:
    """The trained networks (`model` is the first of `members`) and how they came about (JSON-able parts in
    `history`)."""

    model: nn.Module
    history: dict[str, Any] = field(default_factory=dict)
    members: list[nn.Module] = field(default_factory=list)


def _loader(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=gen)
    return list(order.split(batch_size))


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, lengths: Tensor, batch_size: int = 128) -> Tensor:
    """Logits for every series, in eval mode, in batches."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size], lengths[i : i + batch_size])
                          for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


def slice_views(x: Tensor, lengths: Tensor, slice_ratio: float, views: int) -> list[tuple[Tensor, Tensor]]:
    """`views` windows of ``ceil(slice_ratio * L)`` steps of each series, starts evenly spaced from the first
    step to the last possible one, each moved to the start of its row (padding zero); [(x, lengths)] when
    ``slice_ratio`` is 1 or ``views`` is 1 or less."""
    if slice_ratio >= 1.0 or views <= 1:
        return [(x, lengths)]
    new_len = window_lengths(lengths, slice_ratio)
    keep = _step_mask(new_len, x.shape[1], x.dtype)
    out = []
    for j in range(views):
        start = torch.floor((lengths - new_len).to(torch.float64) * (j / (views - 1))).to(torch.int64)
        out.append((_to_front(x, start) * keep, new_len))
    return out


@torch.no_grad()
def predict_proba(members: Sequence[nn.Module], x: Tensor, lengths: Tensor, slice_ratio: float = 1.0,
                  views: int = 1) -> Tensor:
    """Class probabilities (B, classes): the mean over `members` and over the `views` windows of
    `slice_views` (the whole series alone when there is no slicing)."""
    if not members:
        raise ValueError("predict_proba needs at least one network")
    windows = slice_views(x, lengths, slice_ratio, views)
    total = None
    for model in members:
        for xv, lv in windows:
            p = predict_logits(model, xv, lv).softmax(-1)
            total = p if total is None else total + p
    return total / (len(members) * len(windows))


def _train(make_model: Callable[[], nn.Module], x: Tensor, lengths: Tensor, y: Tensor, s: FitSettings,
           stop_after: int, val: tuple[Tensor, Tensor, Tensor] | None, label: str) -> tuple[nn.Module, list[dict]]:
    """One run of the schedule (cosine over s.epochs) stopped after `stop_after` epochs; per-epoch history."""
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(len(x) / s.batch_size)
    total = s.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict] = []
    best: tuple[float, float] = (-1.0, math.inf)
    best_state = None
    bar = tqdm(range(1, stop_after + 1), desc=label, disable=not s.progress, leave=False)
    for epoch in bar:
        model.train()
        t0, total_loss, seen, correct = time.perf_counter(), 0.0, 0, 0
        for idx in _loader(len(x), s.batch_size, gen):
            if len(idx) < 2 and len(x) > 1:  # BatchNorm needs two series; fold a lone last one into the next epoch
                continue
            xb, lb = augment(x[idx], lengths[idx], s.slice_ratio, s.jitter, gen)
            logits = model(xb, lb)
            loss = loss_fn(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        row = {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
               "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        if val is not None:
            logits = predict_logits(model, val[0], val[1])
            row["val_loss"] = float(loss_fn(logits, val[2]))
            row["val_accuracy"] = float((logits.argmax(1) == val[2]).float().mean())
            if (row["val_accuracy"], -row["val_loss"]) > (best[0], -best[1]):
                best = (row["val_accuracy"], row["val_loss"])
                best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix(val_acc=f"{row['val_accuracy']:.3f}")
        history.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, history


def fit_classifier(
    make_model: Callable[[], nn.Module],
    train: tuple[Tensor, Tensor, Tensor],
    val: tuple[Tensor, Tensor, Tensor] | None,
    settings: FitSettings,
    everything: tuple[Tensor, Tensor, Tensor] | None = None,
) -> FitResult:
    """Train a classifier on ``train = (x, lengths, y)``; choose the epoch on `val` by accuracy; refit.

    `everything` is train + val, used by the refit. Without `val` (or with ``settings.refit`` off) the
    returned model is the validated one or the one after the last epoch. The history holds every epoch of
    both runs, ``best_epoch``, ``refit`` and the seconds spent.
    """
    t0 = time.perf_counter()
    model, runs = _train(make_model, *train, settings, settings.epochs, val, "classify")
    best_epoch = settings.epochs
    if val is not None:
        best_epoch = max(runs, key=lambda r: (r["val_accuracy"], -r["val_loss"]))["epoch"]
    refit_runs: list[dict] = []
    refit = bool(val is not None and settings.refit and everything is not None)
    members = [model]
    if refit:
        validated = model
        model, refit_runs = _train(make_model, *everything, settings, best_epoch, None, "refit")
        members = [model, validated]
    # more members: runs like the last one (the refit, or the run on the training part) with other seeds
    data, stop, check = (everything, best_epoch, None) if refit else (train, settings.epochs, val)
    extra_runs: list[list[dict]] = []
    while len(members) < settings.members:
        other = replace(settings, seed=settings.seed + 1000 * (len(members) - (1 if refit else 0)))
        member, member_runs = _train(make_model, *data, other, stop, check, f"member {len(members) + 1}")
        members.append(member)
        extra_runs.append(member_runs)
    members = members[: max(1, settings.members)]
    return FitResult(model, {"epochs": runs, "refit_epochs": refit_runs, "member_epochs": extra_runs,
                             "best_epoch": best_epoch, "refit": refit, "members": len(members),
                             "seconds": time.perf_counter() - t0}, members)
