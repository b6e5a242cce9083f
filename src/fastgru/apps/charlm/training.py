"""Training a character language model within a budget of steps or seconds, and scoring text with it.

Training is truncated BPTT over long contiguous streams with *stateful batches*: the training text is
cut into ``batch_size`` consecutive rows, read ``seq_len`` characters at a time, and each row's GRU
state is carried from one batch to the next (detached), so the model learns from context longer than
a chunk. Every epoch starts the rows at a new random offset in ``[0, seq_len)`` so chunk boundaries move.

Adam with gradient-norm clipping. The learning rate is halved whenever validation has not improved for
``lr_patience`` evaluations (the best weights are reloaded first), and in the last 30% of the budget
(steps or seconds, whichever runs out first) it is annealed on a half cosine to a tenth. Validation runs
every ``eval_every`` steps (default: once per epoch, at least every million characters); the weights
with the lowest validation bits per character are kept. Training stops at the time limit, after
``epochs`` epochs, after ``patience`` evaluations without improvement, when the rate has been halved
``max_halvings`` times, or on Ctrl-C — each a clean stop that keeps the best model.

:func:`stream_bits_per_char` scores a text the way a compressor would read it: one continuous stream,
state carried from chunk to chunk, every character after the first predicted from all before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

LN2 = math.log(2.0)
ANNEAL_FROM = 0.7  # fraction of the budget after which the learning rate is annealed
ANNEAL_TO = 0.1  # ... to this fraction of its value
MAX_VALID_CHARS = 200_000  # validation during training reads at most this many characters


@dataclass
class CharTrainSettings:
    """Knobs of :func:`train_char_lm` (all JSON-able; metrics.json records them).

    seq_len: characters per truncated-BPTT chunk; batch_size: parallel streams.
    lr: Adam's initial rate; clip_norm: gradient-norm clipping (0 turns it off).
    epochs: most passes over the training text; time_limit: most seconds of training, validation
        included (None: no limit).
    eval_every: steps between validations (None: once per epoch, at least every 10^6 characters).
    patience: evaluations without improvement before stopping (None: never); lr_patience: evaluations
        without improvement before the rate is halved; max_halvings: stop after this many halvings.
    """

    seq_len: int = 64
    batch_size: int = 16
    lr: float = 5e-3
    clip_norm: float = 1.0
    epochs: int = 100
    time_limit: float | None = None
    eval_every: int | None = None
    patience: int | None = 12
    lr_patience: int = 3
    max_halvings: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("seq_len", "batch_size", "epochs", "lr_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds, got {self.time_limit}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be None or >= 1, got {self.patience}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be None or >= 1 step, got {self.eval_every}")


def _logits_and_state(model: nn.Module, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    return model(x, state=state, return_state=True)


@torch.no_grad()
def stream_bits(model: nn.Module, ids: Tensor, *, streams: int = 1, chunk: int = 2000) -> tuple[float, int]:
    """(total bits, characters scored) of ids[1:] given what precedes each, in eval mode.

    The text is read as `streams` contiguous rows (1: the whole text as one stream, every character
    after the first scored); with more rows each row starts from a zero state and the few characters
    that do not fill the last row are not scored. `chunk` steps are run per call, the state carried.
    """
    if ids.dim() != 1 or ids.numel() < 2:
        raise ValueError("scoring needs a 1-D tensor of at least 2 character ids")
    streams = max(1, min(streams, (ids.numel() - 1) // 2))
    n = (ids.numel() - 1) // streams
    x = ids[: streams * n].view(streams, n)
    y = ids[1 : streams * n + 1].view(streams, n)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    state = None
    try:
        for t in range(0, n, chunk):
            logits, state = _logits_and_state(model, x[:, t : t + chunk], state)
            logp = torch.log_softmax(logits.double(), dim=-1)
            total -= logp.gather(-1, y[:, t : t + chunk, None]).sum()
    finally:
        model.train(was_training)
    return float(total) / LN2, streams * n


def stream_bits_per_char(model: nn.Module, ids: Tensor, *, streams: int = 1) -> float:
    """Bits per character of ids[1:] read as one continuous stream (see :func:`stream_bits`)."""
    bits, count = stream_bits(model, ids, streams=streams)
    return bits / count


def _epoch_streams(ids: Tensor, batch_size: int, offset: int) -> tuple[Tensor, Tensor]:
    """Inputs and next-character targets from `offset` on, as `batch_size` contiguous rows."""
    n = (ids.numel() - 1 - offset) // batch_size
    x = ids[offset : offset + batch_size * n].view(batch_size, n)
    y = ids[offset + 1 : offset + 1 + batch_size * n].view(batch_size, n)
    return x, y


def effective_batch_size(num_chars: int, batch_size: int, seq_len: int) -> int:
    """The number of streams a training text of `num_chars` can fill with at least one chunk each."""
    return max(1, min(batch_size, (num_chars - 1 - seq_len) // seq_len))


def train_char_lm(
    model: nn.Module,
    train_ids: Tensor,
    valid_ids: Tensor,
    settings: CharTrainSettings,
    *,
    progress: bool = False,
    on_evaluation: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `model` (forward(x, state=, return_state=) -> (logits, state)) on character ids.

    Returns the run's record: ``evaluations`` (one dict per validation: step, epoch, chars, seconds,
    train/valid bits per character, lr, chars_per_second), ``best`` (that of the kept weights),
    ``stop_reason``, ``steps``, ``seconds``, ``train_seconds``, ``chars_per_second`` and the settings.
    The model ends with its best-validation weights. `on_evaluation` is called after each validation.
    """
    s = settings
    if train_ids.numel() < s.seq_len + 2:
        raise ValueError(
            f"the training part has {train_ids.numel()} characters; one chunk needs seq_len + 2 = {s.seq_len + 2}"
        )
    if valid_ids.numel() < 2:
        raise ValueError("the validation part needs at least 2 characters")
    valid_ids = valid_ids[:MAX_VALID_CHARS]
    valid_streams = max(1, min(8, valid_ids.numel() // (20 * s.seq_len)))
    batch_size = effective_batch_size(train_ids.numel(), s.batch_size, s.seq_len)
    steps_per_epoch = math.ceil(((train_ids.numel() - 1) // batch_size) / s.seq_len)
    eval_every = s.eval_every or max(1, min(steps_per_epoch, 1_000_000 // (batch_size * s.seq_len)))
    total_steps = s.epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=s.lr)
    base_lr, halvings = s.lr, 0
    best: dict[str, Any] = {"valid_bits_per_char": math.inf}
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    evaluations: list[dict[str, Any]] = []
    bad_evals = since_halving = 0
    step = chars = 0
    train_seconds = 0.0
    window_bits, window_chars = 0.0, 0
    stop_reason = f"{s.epochs} epochs"
    start = time.perf_counter()
    bar = tqdm(total=round(s.time_limit) if s.time_limit else total_steps, disable=not progress,
               unit="s" if s.time_limit else "step", desc="training", dynamic_ncols=True, leave=False)

    def budget_used() -> float:
        used = step / total_steps
        if s.time_limit:
            used = max(used, (time.perf_counter() - start) / s.time_limit)
        return used

    def set_lr() -> float:
        used = budget_used()
        anneal = 1.0
        if used > ANNEAL_FROM:
            phase = min(1.0, (used - ANNEAL_FROM) / (1 - ANNEAL_FROM))
            anneal = ANNEAL_TO + (1 - ANNEAL_TO) * 0.5 * (1 + math.cos(math.pi * phase))
        lr = base_lr * anneal
        for group in opt.param_groups:
            group["lr"] = lr
        return lr

    def evaluate() -> str | None:
        """Validate, keep the best weights, decide on halving; the reason to stop, if any."""
        nonlocal window_bits, window_chars, bad_evals, since_halving, base_lr, halvings, best_weights
        valid_bpc = stream_bits_per_char(model, valid_ids, streams=valid_streams)
        seconds = time.perf_counter() - start
        record = {
            "step": step, "epoch": chars / max(1, train_ids.numel() - 1), "chars": chars, "seconds": seconds,
            "train_bits_per_char": window_bits / window_chars if window_chars else math.nan,
            "valid_bits_per_char": valid_bpc, "lr": opt.param_groups[0]["lr"],
            "chars_per_second": chars / train_seconds if train_seconds else math.nan,
        }
        evaluations.append(record)
        window_bits, window_chars = 0.0, 0
        if valid_bpc < best["valid_bits_per_char"]:
            best.clear()
            best.update(record)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bad_evals = since_halving = 0
        else:
            bad_evals += 1
            since_halving += 1
        if on_evaluation is not None:
            on_evaluation(record)
        if s.patience is not None and bad_evals >= s.patience:
            return f"no improvement on validation in {s.patience} evaluations"
        if since_halving >= s.lr_patience:
            if halvings >= s.max_halvings:
                return f"no improvement after {s.max_halvings} halvings of the learning rate"
            halvings += 1
            since_halving = 0
            base_lr /= 2
            model.load_state_dict(best_weights)  # go on from the best point at the lower rate
        return None

    model.train()
    try:
        stopped = False
        for epoch in range(s.epochs):
            offset = 0 if epoch == 0 else int(torch.randint(s.seq_len, (1,), generator=gen))
            x, y = _epoch_streams(train_ids, batch_size, offset)
            state = None
            for t in range(0, x.shape[1], s.seq_len):
                if s.time_limit and time.perf_counter() - start >= s.time_limit:
                    stop_reason, stopped = f"time limit ({s.time_limit:g} s)", True
                    break
                set_lr()
                t0 = time.perf_counter()
                xb, yb = x[:, t : t + s.seq_len], y[:, t : t + s.seq_len]
                logits, state = _logits_and_state(model, xb, state)
                state = state.detach() if isinstance(state, Tensor) else tuple(h.detach() for h in state)
                loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if s.clip_norm:
                    nn.utils.clip_grad_norm_(params, s.clip_norm)
                opt.step()
                train_seconds += time.perf_counter() - t0
                step += 1
                chars += yb.numel()
                window_bits += float(loss.detach()) * yb.numel() / LN2
                window_chars += yb.numel()
                if progress:
                    bar.set_postfix_str(f"{chars / train_seconds:,.0f} chars/s, valid bpc "
                                        f"{evaluations[-1]['valid_bits_per_char'] if evaluations else math.nan:.3f}",
                                        refresh=False)
                    if s.time_limit:
                        bar.n = min(round(time.perf_counter() - start), bar.total)
                        bar.refresh()
                    else:
                        bar.update(1)
                if step % eval_every == 0:
                    reason = evaluate()
                    if reason is not None:
                        stop_reason, stopped = reason, True
                        break
            if stopped:
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    finally:
        bar.refresh()  # the last figures are drawn even when the run ended before the next timed refresh
        bar.close()
    if not evaluations or evaluations[-1]["step"] != step:
        if step > 0:
            evaluate()
    model.load_state_dict(best_weights)
    model.eval()
    seconds = time.perf_counter() - start
    return {
        "evaluations": evaluations,
        "best": dict(best),
        "stop_reason": stop_reason,
        "steps": step,
        "chars": chars,
        "seconds": seconds,
        "train_seconds": train_seconds,
        "chars_per_second": chars / train_seconds if train_seconds else math.nan,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "valid_streams": valid_streams,
        "settings": asdict(s),
    }
