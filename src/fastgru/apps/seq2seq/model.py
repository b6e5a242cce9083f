"""The GRU encoder-decoder (Cho et al. 2014) with optional additive attention (Bahdanau et al. 2015).

Encoder: embedding -> fastgru.nn.GRU (optionally bidirectional) run on the padded batch with the core's
``lengths=``, so every sentence ends at its own last word: its annotations h_j (the per-word outputs,
both directions concatenated) and a summary c (the final state of each direction, concatenated).

Decoder, one step i (previous word y_{i-1}, previous state s_{i-1}):

    with attention     e_ij = v^T tanh(W s_{i-1} + U h_j)      (padded j: -inf, so a_ij = 0 there)
                       a_i  = softmax_j(e_i),  c_i = sum_j a_ij h_j
    without attention  c_i  = c (the encoder's summary, the same at every step, as in Cho et al. 2014)
    both               s_i  = GRU([emb(y_{i-1}); c_i], s_{i-1})
                       p(y_i) = softmax(W_o tanh(W_d [s_i; c_i; emb(y_{i-1})]))

with s_0 = tanh(W_s c). The two variants differ only in where c_i comes from, so comparing them at the
same sizes and training budget isolates what attention adds. The decoder's GRU is a one-layer
fastgru.nn.GRU advanced with ``step`` (one fused C++ call per step at inference on a CPU).

Training (``forward`` with a target) feeds the decoder the true previous word with probability
``teacher_forcing`` (per sentence and step) and its own greedy choice otherwise (scheduled sampling,
Bengio et al. 2015); in eval mode it always teacher-forces (the validation loss is the usual one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fastgru.apps.seq2seq.vocab import PAD_ID, SOS_ID
from fastgru.io.settings import JsonSettings
from fastgru.nn import GRU


@dataclass
class Seq2SeqConfig(JsonSettings):
    """Sizes of a translation model (saved with it).

    hidden_size: the decoder state and the encoder's annotations (a bidirectional encoder gives each
    direction hidden_size // 2 units, so the annotations have the same size either way);
    attention_size: the inner size of the additive attention (default hidden_size); output_size: the
    deep-output layer before the softmax (default embedding_size).
    """

    settings_label = "translation-model config keys"

    src_vocab_size: int
    tgt_vocab_size: int
    embedding_size: int = 128
    hidden_size: int = 256
    bidirectional: bool = True
    attention: bool = True
    attention_size: int | None = None
    output_size: int | None = None
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "embedding_size", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.bidirectional and self.hidden_size < 2:
            raise ValueError("a bidirectional encoder needs hidden_size >= 2 (hidden_size // 2 per direction)")
        if self.attention_size is None:
            self.attention_size = self.hidden_size
        if self.output_size is None:
            self.output_size = self.embedding_size
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @property
    def encoder_size(self) -> int:
        """Units of each encoder direction."""
        return self.hidden_size // 2 if self.bidirectional else self.hidden_size

    @property
    def annotation_size(self) -> int:
        return self.encoder_size * (2 if self.bidirectional else 1)



@dataclass
class Encoded:
    """What the decoder needs from the encoder for a batch of source sentences."""

    annotations: Tensor  # (B, S, A): per-word outputs, zero past each length
    summary: Tensor  # (B, A): final state of each direction, concatenated
    mask: Tensor  # (B, S) bool: True at real words
    keys: Tensor | None  # (B, S, attention_size): U h_j, precomputed once (attention only)

    def repeat(self, n: int) -> Encoded:
        """The same single sentence n times (for the hypotheses of a beam)."""
        keys = None if self.keys is None else self.keys.expand(n, -1, -1)
        return Encoded(self.annotations.expand(n, -1, -1), self.summary.expand(n, -1), self.mask.expand(n, -1), keys)


class Encoder(nn.Module):
    """Source ids (B, S) + lengths -> annotations (B, S, A) and summary (B, A)."""

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.src_vocab_size, cfg.embedding_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = GRU(cfg.embedding_size, cfg.encoder_size, batch_first=True, bidirectional=cfg.bidirectional)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(annotations (B, S, A), summary (B, A)); positions past each length are zero in the annotations."""
        out, h_n = self.rnn(self.dropout(self.embedding(src)), lengths=lengths)
        summary = torch.cat(list(h_n), dim=-1)  # (dirs, B, H) -> (B, dirs * H)
        return out, summary


class AdditiveAttention(nn.Module):
    """Bahdanau attention: a = softmax_j(v^T tanh(W s + U h_j)) over the real (unpadded) words."""

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def keys(self, annotations: Tensor) -> Tensor:
        return self.key(annotations)

    def forward(self, state: Tensor, keys: Tensor, annotations: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(context (B, A), weights (B, S)); weights are exactly 0 at padded positions and sum to 1."""
        energy = self.score(torch.tanh(keys + self.query(state).unsqueeze(1))).squeeze(-1)
        weights = torch.softmax(energy.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(weights.unsqueeze(1), annotations).squeeze(1), weights


class Decoder(nn.Module):
    """One decoding step at a time: (previous ids, state, encoder output) -> (logits, state, attention)."""

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        A = cfg.annotation_size
        self.embedding = nn.Embedding(cfg.tgt_vocab_size, cfg.embedding_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(cfg.dropout)
        self.bridge = nn.Linear(A, cfg.hidden_size)
        self.attention = AdditiveAttention(cfg.hidden_size, A, cfg.attention_size) if cfg.attention else None
        self.rnn = GRU(cfg.embedding_size + A, cfg.hidden_size)
        self.deep_output = nn.Linear(cfg.hidden_size + A + cfg.embedding_size, cfg.output_size)
        self.out = nn.Linear(cfg.output_size, cfg.tgt_vocab_size)

    def initial_state(self, enc: Encoded) -> Tensor:
        return torch.tanh(self.bridge(enc.summary))

    def step(self, prev: Tensor, state: Tensor, enc: Encoded) -> tuple[Tensor, Tensor, Tensor | None]:
        emb = self.dropout(self.embedding(prev))
        if self.attention is not None:
            context, weights = self.attention(state, enc.keys, enc.annotations, enc.mask)
        else:
            context, weights = enc.summary, None
        _, new = self.rnn.step(torch.cat([emb, context], dim=-1), state.unsqueeze(0))
        state = new[0]
        hidden = torch.tanh(self.deep_output(self.dropout(torch.cat([state, context, emb], dim=-1))))
        return self.out(self.dropout(hidden)), state, weights


class Seq2Seq(nn.Module):
    """Encoder + decoder. ``forward(src, lengths, target)`` -> logits (B, T, V) for training;
    decoding lives in fastgru.apps.seq2seq.decode."""

    def __init__(self, config: Seq2SeqConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = Seq2SeqConfig(**kwargs)
        elif isinstance(config, dict):
            config = Seq2SeqConfig.from_dict(config)
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.teacher_forcing = 1.0

    def encode(self, src: Tensor, lengths: Tensor) -> Encoded:
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        annotations, summary = self.encoder(src, lengths)
        mask = torch.arange(annotations.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        keys = self.decoder.attention.keys(annotations) if self.decoder.attention is not None else None
        return Encoded(annotations, summary, mask, keys)

    def forward(self, src: Tensor, lengths: Tensor | None = None, target: Tensor | None = None) -> Tensor:
        """Logits (B, T, V) for target (B, T') ids (EOS-terminated, PAD-padded; T = its longest real length).

        The decoder starts from SOS; at step i it reads target[:, i-1] with probability
        ``self.teacher_forcing`` when training (always in eval mode), else its own argmax at step i-1.
        """
        if target is None:
            raise ValueError("Seq2Seq.forward needs the target ids (use fastgru.apps.seq2seq.decode to translate)")
        if lengths is None:
            lengths = torch.full((src.shape[0],), src.shape[1], dtype=torch.int64)
        steps = int((target != PAD_ID).sum(1).max())
        target = target[:, :steps]
        enc = self.encode(src, lengths)
        state = self.decoder.initial_state(enc)
        prev = torch.full((src.shape[0],), SOS_ID, dtype=torch.int64, device=src.device)
        ratio = self.teacher_forcing if self.training else 1.0
        logits = []
        for i in range(steps):
            out, state, _ = self.decoder.step(prev, state, enc)
            logits.append(out)
            prev = target[:, i]
            if ratio < 1.0:
                own = out.detach().argmax(-1)
                keep = torch.rand(prev.shape, device=prev.device) < ratio
                prev = torch.where(keep, prev, own)
        return torch.stack(logits, dim=1)
