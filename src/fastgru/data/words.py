"""Word-level text: a tokenizer and a vocabulary that is saved with a model as JSON.

Tokens are runs of word characters (letters, digits, underscore; apostrophes inside a word are kept, so
"don't" and "it's" stay whole) and single punctuation marks; text is lower-cased first by default.
The vocabulary keeps the words seen at least `min_freq` times in the training texts (optionally only the
`max_size` most frequent), ordered by frequency then alphabetically, so the same texts always give the
same ids. Special tokens come first: ``<pad>`` (id 0, fills a padded batch) and ``<unk>`` (id 1, every
word the vocabulary does not hold).

    vocab = WordVocab.build([tokenize(t) for t in train_texts], min_freq=2)
    ids, lengths = vocab.encode_batch(texts, max_tokens=200)   # (N, T) int64 padded with <pad>, (N,)
    vocab.save(folder / "vocab.json"); WordVocab.load(folder / "vocab.json")
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import atomic

FORMAT = "fastgru-word-vocab-v1"
PAD, UNK = "<pad>", "<unk>"
TOKEN_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks of `text`, in order (lower-cased unless `lowercase=False`)."""
    return _TOKEN_RE.findall(text.lower() if lowercase else text)


@dataclass
class WordVocab:
    """Token <-> id mapping; ``tokens[i]`` is the token of id i. ``lowercase`` is the tokenizer setting
    the vocabulary was built with (encoding uses it too)."""

    tokens: list[str]
    lowercase: bool = True
    min_freq: int = 1
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if PAD not in self.tokens[:2] or UNK not in self.tokens[:2]:
            raise ValueError(f"a word vocabulary starts with the special tokens {PAD!r} and {UNK!r}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a word vocabulary cannot hold the same token twice")
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], *, min_freq: int = 2, max_size: int | None = None,
              lowercase: bool = True) -> WordVocab:
        """The vocabulary of tokenized training texts: tokens seen >= min_freq times, at most max_size
        of them (the most frequent; the two special tokens are not counted)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be None or >= 1, got {max_size}")
        counts = Counter(tok for tokens in token_lists for tok in tokens)
        for special in (PAD, UNK):
            counts.pop(special, None)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([PAD, UNK, *kept], lowercase=lowercase, min_freq=min_freq)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self._index[PAD]

    @property
    def unk_id(self) -> int:
        return self._index[UNK]

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.lowercase)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of `tokens`; unknown tokens become <unk>."""
        unk = self.unk_id
        return [self._index.get(t, unk) for t in tokens]

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Ids of the first `max_tokens` tokens of `text`; a text without tokens encodes as [<unk>] (a GRU
        needs at least one step)."""
        out = self.ids(self.tokenize(text))[:max_tokens]
        return out or [self.unk_id]

    def encode_batch(self, texts: Sequence[str], max_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T_max) int64 ids padded with <pad>, and the (N,) int64 lengths."""
        encoded = [self.encode(t, max_tokens) for t in texts]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.int64)
        x = torch.full((len(encoded), int(lengths.max()) if len(encoded) else 1), self.pad_id, dtype=torch.int64)
        for i, e in enumerate(encoded):
            x[i, : len(e)] = torch.tensor(e, dtype=torch.int64)
        return x, lengths

    def unknown_rate(self, token_lists: Iterable[Sequence[str]]) -> float:
        """Share of tokens that map to <unk> (0 when there are no tokens)."""
        total = unknown = 0
        for tokens in token_lists:
            total += len(tokens)
            unknown += sum(t not in self._index for t in tokens)
        return unknown / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "token_pattern": TOKEN_PATTERN, "lowercase": self.lowercase,
                "min_freq": self.min_freq, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "vocabulary") -> WordVocab:
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("tokens"), list):
            raise ValueError(f"{source}: not a fastgru word vocabulary (expected format {FORMAT!r})")
        if d.get("token_pattern", TOKEN_PATTERN) != TOKEN_PATTERN:
            raise ValueError(f"{source}: made with another tokenizer ({d['token_pattern']!r}); this fastgru "
                             f"tokenizes with {TOKEN_PATTERN!r}")
        return cls(list(d["tokens"]), lowercase=bool(d.get("lowercase", True)), min_freq=int(d.get("min_freq", 1)))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, atomically."""
        atomic.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> WordVocab:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(d, str(path))
