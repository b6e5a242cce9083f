"""Sequence models built the way the GRU tutorials build them: [Embedding] -> stacked RNN -> Dense head.

One builder, four recurrent cells, four heads:

- cell ``"gru"`` is ``fastgru.nn.GRU`` (the library's own); ``"lstm"`` is ``torch.nn.LSTM``, ``"rnn"`` is
  ``torch.nn.RNN(nonlinearity="tanh")`` and ``"torch_gru"`` is ``torch.nn.GRU`` — the same model with the
  recurrent core swapped, which is what GRU-vs-LSTM comparisons and speed comparisons need.
- head ``"regression"`` (real outputs, MSE), ``"classification"`` (class logits, cross-entropy),
  ``"multilabel"`` (independent sigmoid logits, binary cross-entropy) and ``"next_token"`` (vocabulary
  logits at every step, cross-entropy) — the head decides the loss in ``fastgru.train.losses``.

Inputs are batch-first: ``(batch, time, features)`` floats, or ``(batch, time)`` token ids when the model
has an embedding. Variable-length batches pass ``lengths`` (int64, one per sequence): the GRU takes it
directly (``fastgru.nn.GRU(..., lengths=)``), LSTM/RNN get a packed sequence. Either way padded steps give
zero features and the sequence summary is the state at each sequence's own last step.

A model is described by a JSON-able :class:`ModelConfig`, so checkpoints store the config next to the
weights and rebuild the model with :func:`build_model`. :func:`hidden_size_for_budget` picks the hidden
size that gives a cell a parameter budget (e.g. Chung et al. 2014's ~20k parameters per model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fastgru.io.settings import JsonSettings

CELLS = ("gru", "lstm", "rnn", "torch_gru")
HEADS = ("regression", "classification", "multilabel", "next_token")
GATES_PER_CELL = {"gru": 3, "torch_gru": 3, "lstm": 4, "rnn": 1}

State = Tensor | tuple[Tensor, Tensor]  # h_n, or (h_n, c_n) for an LSTM


@dataclass
class ModelConfig(JsonSettings):
    """Everything needed to rebuild a :class:`SequenceModel` (stored as JSON next to checkpoints).

    input_size: features per step of a float input; leave None when the input is token ids
        (``vocab_size`` set), then the embedding output feeds the RNN.
    output_size: regression outputs / number of classes / number of labels; for ``next_token`` it
        defaults to ``vocab_size``.
    per_step: predict at every step (sequence labelling, language models, piano rolls) instead of once
        per sequence from its last state. None means True for ``next_token`` and False otherwise.
    dropout: between stacked recurrent layers (as torch.nn.GRU); head_dropout: before the Dense head.
    reset_after, init: passed to fastgru.nn.GRU (cell ``"gru"`` only).
    """

    settings_label = "model config keys"

    input_size: int | None = None
    hidden_size: int = 64
    output_size: int | None = 1
    head: str = "regression"
    cell: str = "gru"
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    head_dropout: float = 0.0
    vocab_size: int | None = None
    embedding_dim: int | None = None
    per_step: bool | None = None
    reset_after: bool = True
    init: str = "torch"

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.vocab_size is not None:
            if self.vocab_size < 1:
                raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
            if self.embedding_dim is None:
                self.embedding_dim = min(64, self.vocab_size)
            if self.input_size is not None and self.input_size != self.embedding_dim:
                raise ValueError(
                    f"input_size ({self.input_size}) must be None or equal embedding_dim "
                    f"({self.embedding_dim}) when vocab_size is set"
                )
            self.input_size = self.embedding_dim
        elif self.input_size is None or self.input_size < 1:
            raise ValueError(f"input_size must be a positive integer (features per step), got {self.input_size}")
        if self.head == "next_token":
            if self.output_size is None or self.output_size == 1:
                if self.vocab_size is None:
                    raise ValueError("head='next_token' needs vocab_size (or output_size = vocabulary size)")
                self.output_size = self.vocab_size
            if self.per_step is False:
                raise ValueError("head='next_token' predicts at every step; per_step=False makes no sense")
            if self.bidirectional:
                raise ValueError("head='next_token' cannot be bidirectional: the reverse pass sees the future")
        if self.per_step is None:
            self.per_step = self.head == "next_token"
        if self.output_size is None or self.output_size < 1:
            raise ValueError(f"output_size must be a positive integer, got {self.output_size}")
        if self.head == "classification" and self.output_size < 2:
            raise ValueError(f"head='classification' needs output_size >= 2 classes, got {self.output_size}")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(
                f"hidden_size and num_layers must be >= 1, got {self.hidden_size} and {self.num_layers}"
            )
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.head_dropout < 1.0):
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout} and {self.head_dropout}")



def _make_rnn(cfg: ModelConfig) -> nn.Module:
    kw = dict(
        input_size=cfg.input_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        batch_first=True,
        dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        bidirectional=cfg.bidirectional,
    )
    if cfg.cell == "gru":
        from fastgru.nn import GRU  # the library's GRU; imported late so LSTM/RNN models never need it

        return GRU(**kw, reset_after=cfg.reset_after, init=cfg.init)
    if cfg.cell == "torch_gru":
        return nn.GRU(**kw)
    if cfg.cell == "lstm":
        return nn.LSTM(**kw)
    return nn.RNN(**kw, nonlinearity="tanh")


class SequenceModel(nn.Module):
    """[Embedding] -> stacked GRU/LSTM/RNN -> [Dropout] -> Linear, built from a :class:`ModelConfig`.

    ``forward(x, lengths=None, state=None, return_state=False)``:
      x: (B, T, input_size) floats, or (B, T) int64 token ids with an embedding.
      lengths: optional int64 (B,), each in 1..T; steps past a sequence's length are padding.
      state: initial hidden state as returned by a previous call (truncated BPTT carries it over).
      Returns logits / predictions, (B, T, output_size) if ``per_step`` else (B, output_size), and the
      final state too when ``return_state`` is true.
    """

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a ModelConfig or keyword arguments, not both")
        self.config = config
        self.embedding = (
            nn.Embedding(config.vocab_size, config.embedding_dim) if config.vocab_size is not None else None
        )
        self.rnn = _make_rnn(config)
        self.num_directions = 2 if config.bidirectional else 1
        self.head_dropout = nn.Dropout(config.head_dropout) if config.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.num_directions * config.hidden_size, config.output_size)

    # -- the recurrent core -------------------------------------------------------------------------
    def _run_rnn(self, x: Tensor, lengths: Tensor | None, state: State | None) -> tuple[Tensor, State]:
        if lengths is None:
            return self.rnn(x, state)
        if self.config.cell == "gru":
            return self.rnn(x, state, lengths=lengths.to(device=x.device, dtype=torch.int64))
        T = x.shape[1]
        packed = pack_padded_sequence(x, lengths.to("cpu", torch.int64), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return out, state

    def _top_layer_summary(self, state: State) -> Tensor:
        """State at each sequence's own last step of the top layer, both directions concatenated: (B, D*H)."""
        h_n = state[0] if isinstance(state, tuple) else state
        top = h_n[-self.num_directions :]  # (D, B, H)
        return top.transpose(0, 1).reshape(h_n.shape[1], -1)

    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        state: State | None = None,
        return_state: bool = False,
    ) -> Tensor | tuple[Tensor, State]:
        if self.embedding is not None:
            if x.dim() != 2 or x.is_floating_point():
                raise ValueError(
                    f"this model embeds token ids: x must be (batch, time) integers, got {tuple(x.shape)} "
                    f"{x.dtype}"
                )
            x = self.embedding(x)
        elif x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(
                f"x must be (batch, time, {self.config.input_size}) floats, got shape {tuple(x.shape)}"
            )
        out, new_state = self._run_rnn(x, lengths, state)
        feats = out if self.config.per_step else self._top_layer_summary(new_state)
        y = self.head(self.head_dropout(feats))
        return (y, new_state) if return_state else y

    # -- conveniences -------------------------------------------------------------------------------
    def predict(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Outputs in the head's natural units: values, class probabilities or label probabilities."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                y = self(x, lengths)
        finally:
            self.train(was_training)
        if self.config.head in ("classification", "next_token"):
            return y.softmax(-1)
        if self.config.head == "multilabel":
            return y.sigmoid()
        return y

    def num_parameters(self) -> int:
        return count_parameters(self)

    @classmethod
    def from_config(cls, config: ModelConfig | dict[str, Any]) -> SequenceModel:
        return build_model(config)


def build_model(config: ModelConfig | dict[str, Any] | None = None, **kwargs: Any) -> SequenceModel:
    """Build a :class:`SequenceModel` from a config object, a config dict (as saved in JSON) or keywords."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict({**config, **kwargs})
    elif config is None:
        config = ModelConfig(**kwargs)
    elif kwargs:
        raise TypeError("pass either a ModelConfig or keyword arguments, not both")
    return SequenceModel(config)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def rnn_parameter_count(
    cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False
) -> int:
    """Parameters of the recurrent core alone, torch's convention: two bias vectors per layer-direction.

    A layer-direction with g gate blocks (GRU 3, LSTM 4, tanh RNN 1) has g*H*(I + H) weights and 2*g*H
    biases; layers above the first see I = D*H inputs.
    """
    if cell not in GATES_PER_CELL:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    g, d = GATES_PER_CELL[cell], 2 if bidirectional else 1
    total, I = 0, input_size
    for _ in range(num_layers):
        total += d * (g * hidden_size * (I + hidden_size) + 2 * g * hidden_size)
        I = d * hidden_size
    return total


def model_parameter_count(config: ModelConfig) -> int:
    """Parameters of the whole model of `config` (embedding + recurrent core + head), without building it."""
    emb = config.vocab_size * config.embedding_dim if config.vocab_size is not None else 0
    d = 2 if config.bidirectional else 1
    head = d * config.hidden_size * config.output_size + config.output_size
    rnn = rnn_parameter_count(config.cell, config.input_size, config.hidden_size, config.num_layers,
                              config.bidirectional)
    return emb + rnn + head


def hidden_size_for_budget(budget: int, cell: str, *, include_head: bool = True, rule: str = "closest",
                           **config: Any) -> int:
    """The hidden size that gives `cell` about `budget` parameters, other settings as in `config`.

    ``config`` holds the other :class:`ModelConfig` fields (input_size, output_size, head, num_layers,
    bidirectional, vocab_size, embedding_dim...). ``include_head=False`` counts the recurrent core only.
    ``rule="closest"`` picks the size whose count is nearest the budget, ``"at_most"`` the largest size
    that does not exceed it. Example: 88 inputs and outputs and a 20k budget give GRU 41, LSTM 34 and
    RNN 78 units with the head counted, 48 / 39 / 103 for the recurrent core alone (Chung et al. 2014
    used 46 / 36 / 100 units for "about 20k").
    """
    if rule not in ("closest", "at_most"):
        raise ValueError(f"rule must be 'closest' or 'at_most', got {rule!r}")
    if budget < 1:
        raise ValueError(f"budget must be a positive number of parameters, got {budget}")

    def count(h: int) -> int:
        cfg = ModelConfig(**{**config, "cell": cell, "hidden_size": h})
        if include_head:
            return model_parameter_count(cfg)
        return rnn_parameter_count(cell, cfg.input_size, h, cfg.num_layers, cfg.bidirectional)

    # the count grows strictly with h (quadratically), so bisect for the last h with count(h) <= budget
    lo, hi = 1, max(2, int(math.isqrt(budget)) + 2)
    while count(hi) <= budget:
        hi *= 2
    if count(lo) > budget:
        return 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    if rule == "at_most":
        return lo
    return lo if budget - count(lo) <= count(hi) - budget else hi
