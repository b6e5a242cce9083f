"""Text classification with a GRU: word embeddings -> (bi)GRU -> pooled features -> class logits.

:class:`TextGRU` is the network. Token ids (B, T), padded with id 0, and their lengths go in; the
embeddings pass through dropout (a strong regulariser for word models trained from scratch), then
``fastgru.nn.GRU`` runs each sentence to its own end (``lengths=``), so padding never changes a sentence's
result. The sentence is summarised by ``pooling``:

- ``"last"``: the state after each direction has read the whole sentence (forward: at the last word,
  reverse: at the first), as the GRU classifiers of the tutorials do;
- ``"max"``: the element-wise maximum of the outputs over the sentence's own words;
- ``"last+max"`` (default): both, concatenated — on Rotten Tomatoes this scored about a point higher
  than either alone (see docs/classify_text.md).

:class:`TextClassifier` bundles the network, its :class:`~fastgru.apps.data.words.WordVocab`, the class names
and the truncation length, and saves/loads them as one folder (model.safetensors + model.json through
fastgru.train.resume, vocab.json, text_classifier.json). ``predict_proba(texts)`` gives class
probabilities for raw strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from fastgru.apps.data.words import WordVocab
from fastgru.io import atomic
from fastgru.io.settings import JsonSettings
from fastgru.nn import GRU
from fastgru.train.resume import load_model, save_model

POOLINGS = ("last", "max", "last+max")
FORMAT = "fastgru-text-classifier-v1"
META_FILE = "text_classifier.json"  # classes, truncation length, format tag
LEGACY_META_FILE = "classifier.json"  # its name before 0.2; `fastgru classify` uses that name for its own file


@dataclass
class TextGRUConfig(JsonSettings):
    """Everything needed to rebuild a :class:`TextGRU` (stored as JSON next to the weights)."""

    settings_label = "text model config keys"

    vocab_size: int
    num_classes: int
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "last+max"
    embedding_dropout: float = 0.5
    dropout: float = 0.0
    head_dropout: float = 0.5
    head: str = "classification"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least two classes, got num_classes={self.num_classes}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("embedding_dropout", "dropout", "head_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value}")
        if self.head != "classification":
            raise ValueError(f"a TextGRU has a classification head, got head={self.head!r}")



class TextGRU(nn.Module):
    """Embedding -> dropout -> fastgru.nn.GRU (lengths=) -> pooling -> dropout -> Linear.

    ``forward(x, lengths=None)``: x (B, T) int64 token ids (0 = padding), lengths (B,) int64 in 1..T
    (None: every sentence fills all T steps). Returns (B, num_classes) logits.
    """

    def __init__(self, config: TextGRUConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=0)
        self.embedding_dropout = nn.Dropout(c.embedding_dropout)
        self.rnn = GRU(c.embedding_dim, c.hidden_size, num_layers=c.num_layers, batch_first=True,
                       bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.num_directions = 2 if c.bidirectional else 1
        width = self.num_directions * c.hidden_size * (2 if c.pooling == "last+max" else 1)
        self.head_dropout = nn.Dropout(c.head_dropout)
        self.head = nn.Linear(width, c.num_classes)

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The pooled sentence features (B, width) that the head reads."""
        if x.dim() != 2 or x.is_floating_point():
            raise ValueError(f"x must be (batch, time) token ids, got {tuple(x.shape)} {x.dtype}")
        B, T = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64, device=x.device)
        lengths = lengths.to(device=x.device, dtype=torch.int64)
        out, h_n = self.rnn(self.embedding_dropout(self.embedding(x)), lengths=lengths)
        parts = []
        if self.config.pooling in ("last", "last+max"):
            top = h_n[-self.num_directions:]  # (D, B, H): forward at the last word, reverse at the first
            parts.append(top.transpose(0, 1).reshape(B, -1))
        if self.config.pooling in ("max", "last+max"):
            real = torch.arange(T, device=x.device)[None, :] < lengths[:, None]
            parts.append(out.masked_fill(~real[..., None], float("-inf")).amax(dim=1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.head_dropout(self.features(x, lengths)))


class TextClassifier:
    """A trained :class:`TextGRU` with its vocabulary, class names and truncation length."""

    def __init__(self, model: TextGRU, vocab: WordVocab, classes: Sequence[str], max_tokens: int | None = None,
                 ) -> None:
        if model.config.vocab_size != len(vocab):
            raise ValueError(f"the model embeds {model.config.vocab_size} tokens but the vocabulary has {len(vocab)}")
        if model.config.num_classes != len(classes):
            raise ValueError(f"the model has {model.config.num_classes} outputs but {len(classes)} class names")
        self.model, self.vocab, self.classes, self.max_tokens = model, vocab, list(classes), max_tokens

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(N, T) padded token ids and (N,) lengths of raw texts."""
        return self.vocab.encode_batch(texts, self.max_tokens)

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """(N, classes) probabilities. Texts are batched by length (less padding); the order is kept."""
        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        encoded = [self.vocab.encode(t, self.max_tokens) for t in texts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        probs = np.zeros((len(encoded), len(self.classes)), dtype=np.float32)
        try:
            for start in tqdm(range(0, len(order), batch_size), desc="classifying", unit="batch",
                              disable=not progress, leave=False):
                idx = order[start:start + batch_size]
                lengths = torch.tensor([len(encoded[i]) for i in idx], dtype=torch.int64)
                x = torch.full((len(idx), int(lengths.max())), self.vocab.pad_id, dtype=torch.int64)
                for row, i in enumerate(idx):
                    x[row, : len(encoded[i])] = torch.tensor(encoded[i])
                logits = model(x.to(device), lengths.to(device))
                probs[idx] = logits.softmax(-1).float().cpu().numpy()
        finally:
            model.train(was_training)
        return probs

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """The most probable class name of each text."""
        return [self.classes[i] for i in self.predict_proba(texts, batch_size).argmax(1)]

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the folder: model.safetensors + model.json, vocab.json, text_classifier.json (atomic files)."""
        folder = Path(folder)
        save_model(self.model, folder)
        self.vocab.save(folder / "vocab.json")
        atomic.write_json(folder / META_FILE, {"format": FORMAT, "classes": self.classes,
                                                       "max_tokens": self.max_tokens, **(extra or {})})
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> TextClassifier:
        """Rebuild a classifier saved by :meth:`save`; one-line errors for a missing or foreign folder."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--model {str(folder)!r}: no such folder (give the model/ folder a "
                                    "`fastgru classify-text` run wrote)")
        meta_path = folder / META_FILE
        if not meta_path.is_file() and (folder / LEGACY_META_FILE).is_file():
            meta_path = folder / LEGACY_META_FILE  # written before the file was renamed; same contents
        missing = [n for n in ("model.safetensors", "model.json", "vocab.json") if not (folder / n).is_file()]
        if not meta_path.is_file():
            missing.append(META_FILE)
        if missing:
            raise FileNotFoundError(f"--model {str(folder)!r} is not a saved text classifier: it lacks "
                                    f"{', '.join(missing)}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: not a fastgru text classifier (format "
                             f"{meta.get('format')!r}, expected {FORMAT!r})")
        config = json.loads((folder / "model.json").read_text(encoding="utf-8")).get("config")
        if not isinstance(config, dict):
            raise ValueError(f"{folder / 'model.json'} holds no model config")
        model = TextGRU(TextGRUConfig.from_dict(config))
        load_model(folder, model)
        vocab = WordVocab.load(folder / "vocab.json")
        return cls(model.to(device), vocab, meta["classes"], meta.get("max_tokens"))
