"""Checks on GRU call arguments, run before any work so bad input fails fast with a clear message."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fastgru.core.errors import GRUInputError


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def check_input(input: Tensor, input_size: int, batch_first: bool) -> None:
    """input must be a 3-D floating tensor with a non-empty time axis and input_size features."""
    if not isinstance(input, Tensor):
        raise GRUInputError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 3:
        layout = "(batch, seq_len, input_size)" if batch_first else "(seq_len, batch, input_size)"
        raise GRUInputError(f"input must be 3-D {layout} (or 2-D unbatched), got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise GRUInputError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    T, B = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    if T == 0:
        raise GRUInputError(f"input is an empty sequence (seq_len = 0), shape {tuple(input.shape)}")
    if B == 0:
        raise GRUInputError(f"input has an empty batch (batch = 0), shape {tuple(input.shape)}")
    if input.shape[-1] != input_size:
        raise GRUInputError(
            f"input has {input.shape[-1]} features in its last dimension but input_size={input_size}"
        )


def check_hidden(hx: Tensor, expected: tuple[int, ...], input: Tensor, name: str = "hx") -> None:
    """hx must have the expected shape and the input's dtype and device."""
    if not isinstance(hx, Tensor):
        raise GRUInputError(f"{name} must be a torch.Tensor or None, got {type(hx).__name__}")
    if tuple(hx.shape) != tuple(expected):
        raise GRUInputError(f"{name} must have shape {tuple(expected)}, got {tuple(hx.shape)}")
    check_same(hx, input, name)


def check_same(t: Tensor, input: Tensor, name: str) -> None:
    """t must share the input's dtype and device."""
    if t.dtype != input.dtype:
        raise GRUInputError(f"{name} has dtype {t.dtype} but input has dtype {input.dtype}; convert one of them")
    if t.device != input.device:
        raise GRUInputError(f"{name} is on device {t.device} but input is on {input.device}; move one of them")


def check_weights(weights: Sequence[Sequence[Tensor | None]], input: Tensor, names: Sequence[str]) -> None:
    """Every weight must share the input's dtype and device (named like torch's parameters)."""
    for group, group_names in zip(weights, names):
        for w, name in zip(group, group_names.split(",")):
            if w is not None:
                check_same(w, input, name)


def check_lengths(lengths: Tensor | Sequence[int], batch: int, seq_len: int, enforce_sorted: bool) -> Tensor:
    """lengths: one integer per sequence, 1 <= lengths[b] <= seq_len; returns an int64 tensor."""
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise GRUInputError(f"lengths must be a 1-D tensor of integers: {exc}") from exc
    if lengths.dim() != 1:
        raise GRUInputError(f"lengths must be 1-D (one length per sequence), got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise GRUInputError(f"lengths must hold integers, got dtype {lengths.dtype}")
    if lengths.shape[0] != batch:
        raise GRUInputError(f"lengths has {lengths.shape[0]} entries but the batch has {batch} sequences")
    if _compiling():
        # while tracing the values are unknown: an assert node stays in the compiled / exported graph and
        # raises at run time, so bad lengths are refused there too (no silently wrong state)
        torch._assert_async((lengths >= 1).all() & (lengths <= seq_len).all(),
                            f"fastgru: lengths must be in [1, seq_len = {seq_len}] (GRUInputError in eager mode)")
    else:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1:
            raise GRUInputError(f"lengths must be >= 1 (empty sequences are not allowed), got min {lo}")
        if hi > seq_len:
            raise GRUInputError(f"lengths must be <= seq_len = {seq_len}, got max {hi}")
        if enforce_sorted and bool((lengths[1:] > lengths[:-1]).any()):
            raise GRUInputError(
                "lengths must be sorted in decreasing order when enforce_sorted=True; "
                "pass enforce_sorted=False (the default) for unsorted batches"
            )
    return lengths.to(torch.int64)


def check_mask(mask: Tensor, batch: int, seq_len: int, input: Tensor) -> None:
    """mask: a (batch, seq_len) bool tensor on the input's device, whatever the input's layout (as Keras).

    Its values need no check (any pattern is valid, a sequence with no True step included), so these
    checks are on shape, dtype and device only: static facts that torch.compile and torch.export
    check while tracing and guard on afterwards.
    """
    if not isinstance(mask, Tensor):
        raise GRUInputError(f"mask must be a torch.Tensor of bools (batch, seq_len), got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise GRUInputError(
            f"mask must have dtype torch.bool (True = a real step, False = a masked one), got {mask.dtype}; "
            "convert with mask.bool() or mask != 0"
        )
    if tuple(mask.shape) != (batch, seq_len):
        raise GRUInputError(
            f"mask must have shape (batch, seq_len) = {(batch, seq_len)} (batch first, whatever batch_first "
            f"is, as Keras), got {tuple(mask.shape)}"
        )
    if mask.device != input.device:
        raise GRUInputError(f"mask is on device {mask.device} but input is on {input.device}; move one of them")


def check_finite(t: Tensor, name: str) -> None:
    """Opt-in check (check_finite=True): refuse NaN/Inf instead of propagating them."""
    if not _compiling() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise GRUInputError(f"{name} has {bad} non-finite values (NaN or Inf)")


def check_positive_int(name: str, value: object) -> None:
    """A constructor size argument: a positive int (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_fraction(name: str, value: object, *, allow_one: bool = False) -> None:
    """A probability-like argument: a number in [0, 1) (or [0, 1] with allow_one)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0 <= value and (value <= 1 if allow_one else value < 1)):
        raise ValueError(f"{name} must be a number in [0, {'1]' if allow_one else '1)'}, got {value!r}")


def check_flag(name: str, value: object) -> None:
    """A boolean option: True/False (or 0/1, as torch.nn.GRU callers sometimes pass). A string such as
    "false" would be truthy and silently mean True, so it is refused."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """An option that names one of a fixed set of choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_hard_sigmoid(value: object) -> tuple[float, float]:
    """(alpha, beta) of hard_sigmoid(x) = clamp(alpha x + beta, 0, 1): two finite numbers, alpha > 0
    (a gate that rises with its input, as Keras' 0.2 or 1/6 and ONNX's default). Returns them as floats."""
    try:
        alpha, beta = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"hard_sigmoid must be a pair (alpha, beta), got {value!r}") from None
    for part, v in (("alpha", alpha), ("beta", beta)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ValueError(f"hard_sigmoid {part} must be a finite number, got {v!r}")
    if alpha <= 0:
        raise ValueError(f"hard_sigmoid alpha must be > 0 (the gate must rise with its input), got {alpha!r}")
    return float(alpha), float(beta)


def check_regularization(dropout: float, input_dropout: float, recurrent_dropout: float, zoneout: float) -> None:
    """The probabilities of a GRU call: dropout in [0, 1] (as torch.nn.GRU), the others in [0, 1)."""
    check_fraction("dropout", dropout, allow_one=True)
    for name, p in (("input_dropout", input_dropout), ("recurrent_dropout", recurrent_dropout),
                    ("zoneout", zoneout)):
        check_fraction(name, p)
