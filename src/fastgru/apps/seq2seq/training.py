"""Training a translation model with fastgru's Trainer: the per-token loss and the teacher-forcing schedule.

The Trainer (Adam, clipping, early stopping on the validation loss, best-weights restore, history.json,
checkpoints, tqdm) is used as it is; :class:`Seq2SeqTrainer` changes only what one batch means here:

- the batch's ``x`` is the padded source ids with ``lengths``, ``y`` the EOS-terminated target ids, and
  the model is called as ``model(x, lengths=lengths, target=y)`` (it needs the target to teacher-force);
- the loss is cross-entropy per real target token (PAD is not counted), in nats;
- before each training epoch the model's teacher-forcing ratio is set from a linear schedule, and the
  ratio used is recorded in the history (``train_teacher_forcing``).

:func:`train_translator` does the whole job for sentence pairs: vocabularies, tensors, model, training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgru.apps.data.words import WordVocab
from fastgru.apps.seq2seq.model import Seq2Seq, Seq2SeqConfig
from fastgru.apps.seq2seq.pairs import SentencePairs, pad_ids
from fastgru.apps.seq2seq.translator import Translator
from fastgru.apps.seq2seq.vocab import PAD_ID, build_vocab, tokenize
from fastgru.train import Batch, SequenceData, TrainConfig, Trainer, seed_everything


def teacher_forcing_ratio(epoch: int, epochs: int, start: float = 1.0, end: float = 0.5) -> float:
    """Linear decay from `start` at epoch 1 to `end` at epoch `epochs` (both in [0, 1])."""
    for name, v in (("start", start), ("end", end)):
        if not 0 <= v <= 1:
            raise ValueError(f"teacher-forcing {name} ratio must lie in [0, 1], got {v}")
    if epochs <= 1:
        return float(start)
    return float(start + (end - start) * (epoch - 1) / (epochs - 1))


def sequence_loss(out: Tensor, y: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(sum of cross-entropy over real target tokens, their count); `out` (B, T, V), `y` (B, >= T)."""
    y = y[:, : out.shape[1]]
    total = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), ignore_index=PAD_ID, reduction="sum")
    return total, (y != PAD_ID).sum().to(total.dtype)


class Seq2SeqTrainer(Trainer):
    """fastgru's Trainer for :class:`~fastgru.apps.seq2seq.model.Seq2Seq` with scheduled teacher forcing."""

    def __init__(self, model: Seq2Seq, config: TrainConfig, *, teacher_forcing: tuple[float, float] = (1.0, 0.5)):
        teacher_forcing_ratio(1, 2, *teacher_forcing)  # validate before any work
        super().__init__(model, config, head="seq2seq", loss_fn=sequence_loss)
        self.teacher_forcing = teacher_forcing

    def _forward(self, module: torch.nn.Module, batch: Batch, state: Any, stream: bool) -> tuple[Tensor, Any]:
        return module(batch.x, lengths=batch.lengths, target=batch.y), None

    def _train_epoch(self, data: SequenceData, epoch: int) -> dict[str, float]:  # type: ignore[override]
        ratio = teacher_forcing_ratio(epoch, self.config.epochs, *self.teacher_forcing)
        self.model.teacher_forcing = ratio
        metrics = super()._train_epoch(data, epoch)
        metrics["teacher_forcing"] = ratio
        return metrics


def pair_data(sources: list[str], targets: list[str], source_vocab: WordVocab, target_vocab: WordVocab) -> SequenceData:
    """SequenceData of padded source ids (+ lengths) and EOS-terminated target ids."""
    x, lengths = pad_ids([source_vocab.ids(tokenize(s), eos=True) for s in sources])
    y, _ = pad_ids([target_vocab.ids(tokenize(t), eos=True) for t in targets])
    return SequenceData(x, y, lengths)


def train_translator(
    train: SentencePairs,
    val: SentencePairs | None = None,
    *,
    config: dict[str, Any] | None = None,
    source_vocab: WordVocab | None = None,
    target_vocab: WordVocab | None = None,
    min_freq: int = 1,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 3e-3,
    teacher_forcing: tuple[float, float] = (1.0, 0.5),
    patience: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[Translator, dict[str, Any]]:
    """Train a :class:`Translator` on `train` (vocabularies built from it unless given); returns it and the
    Trainer's history. `config`: Seq2SeqConfig fields other than the vocabulary sizes. With `val` the best
    epoch by validation loss is kept; `out_dir` receives history.json."""
    src_tok = [tokenize(s) for s in train.source]
    tgt_tok = [tokenize(t) for t in train.target]
    source_vocab = source_vocab or build_vocab(src_tok, min_freq)
    target_vocab = target_vocab or build_vocab(tgt_tok, min_freq)
    train_data = pair_data(train.source, train.target, source_vocab, target_vocab)
    val_data = pair_data(val.source, val.target, source_vocab, target_vocab) if val is not None and len(val) else None
    cfg = Seq2SeqConfig(len(source_vocab), len(target_vocab), **(config or {}))
    seed_everything(seed)
    model = Seq2Seq(cfg)
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                     out_dir=None if out_dir is None else str(out_dir), checkpoint_every=0, progress=progress,
                     device="cpu", distributed="off")
    history = Seq2SeqTrainer(model, tc, teacher_forcing=teacher_forcing).fit(train_data, val_data)
    model.eval()
    info = {"languages": list(train.languages), "data": train.name, "teacher_forcing": list(teacher_forcing)}
    return Translator(model, source_vocab, target_vocab, info), history
