"""The default character model for a text: sized by the amount of training text and the time budget.

Two limits decide the hidden size H of a one-layer GRU (embedding ``EMBEDDING_DIM``, dropout before
the output layer and between layers):

- *data*: a model much larger than its text memorises it. The recurrent core may hold about
  ``PARAMS_PER_CHAR`` parameters per training character (dropout makes up for the rest);
- *compute*: within the time budget the model must read the training text about ``MIN_EPOCHS`` times
  (or see ``MIN_CHARS_SEEN`` characters, whichever is less), at the throughput measured for that size on
  2 CPU cores (``CHARS_PER_SECOND``; a faster machine gets through more, never less).

The largest size in ``SIZES`` within both limits is chosen. Dropout shrinks as text grows (``dropout_for``).
The evidence behind the constants (runs on the built-in Sonnets and on larger Shakespeare texts at several
sizes within a fixed budget) is in docs/generate.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SIZES = (128, 192, 256, 384, 512)
# training characters per second of a 1-layer GRU of each size (embedding 32, batch 32 x 100 steps,
# ~65 symbols) on 2 CPU cores, measured with the fused CPU kernel (docs/generate.md)
CHARS_PER_SECOND = {128: 50_000, 192: 40_000, 256: 32_000, 384: 22_000, 512: 15_000}
PARAMS_PER_CHAR = 4.0
MIN_EPOCHS = 10
MIN_CHARS_SEEN = 10_000_000
EMBEDDING_DIM = 32


@dataclass(frozen=True)
class CharModelSize:
    """The default model's shape and why it was chosen (written to metrics.json)."""

    hidden_size: int
    num_layers: int
    embedding_dim: int
    dropout: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def gru_parameters(hidden_size: int, input_size: int = EMBEDDING_DIM) -> int:
    """Weights and biases of one GRU layer (torch's two bias vectors)."""
    return 3 * hidden_size * (input_size + hidden_size) + 6 * hidden_size


def dropout_for(train_chars: int) -> float:
    """Dropout for a training text of `train_chars` characters: 0.3 up to 100k, 0.1 from 10M, log-linear between."""
    if train_chars <= 100_000:
        return 0.3
    if train_chars >= 10_000_000:
        return 0.1
    frac = (math.log10(train_chars) - 5) / 2
    return round(0.3 - 0.2 * frac, 2)


def default_model_size(train_chars: int, time_limit: float | None) -> CharModelSize:
    """The default model for `train_chars` training characters and a budget of `time_limit` seconds."""
    if train_chars < 1:
        raise ValueError(f"train_chars must be positive, got {train_chars}")
    need_chars = min(MIN_EPOCHS * train_chars, MIN_CHARS_SEEN)
    chosen, why = SIZES[0], "the smallest size"
    for h in SIZES:
        data_ok = gru_parameters(h) <= PARAMS_PER_CHAR * train_chars
        compute_ok = time_limit is None or CHARS_PER_SECOND[h] * time_limit >= need_chars
        if data_ok and compute_ok:
            chosen = h
            why = (f"largest of {SIZES} with at most {PARAMS_PER_CHAR:g} GRU parameters per training character"
                   + ("" if time_limit is None else
                      f" and {need_chars:,} characters read in {time_limit:g} s at 2-core throughput"))
    return CharModelSize(chosen, 1, EMBEDDING_DIM, dropout_for(train_chars), why)
