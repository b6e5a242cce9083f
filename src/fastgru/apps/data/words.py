"""Word-level text: a tokenizer and a vocabulary that is saved with a model as JSON.

Tokens are runs of word characters (letters, digits, underscore; apostrophes inside a word are kept, so
"don't" and "it's" stay whole) and single punctuation marks; text is lower-cased first by default. With
``normalize=True`` the text is first put in the form translation compares sentences in: Unicode NFKC
(which also turns the narrow no-break space French puts before "!" and "?" into a plain space) and
curly / modifier apostrophes and backticks as ``'`` (so "aujourd’hui" and "aujourd'hui" are one token).

The vocabulary keeps the words seen at least `min_freq` times in the training texts (optionally only the
`max_size` most frequent), ordered by frequency then alphabetically, so the same texts always give the
same ids. Special tokens come first; which ones is the caller's choice (``specials``), as long as
``<pad>`` is id 0 (fills a padded batch; embeddings' padding_idx) and ``<unk>`` is among them (every word
the vocabulary does not hold). Text classification uses the default ``<pad> <unk>``; translation
(fastgru.apps.seq2seq.vocab) uses ``<pad> <sos> <eos> <unk>``, and its decoder reads ids up to ``<eos>``.

    vocab = WordVocab.build([tokenize(t) for t in train_texts], min_freq=2)
    ids, lengths = vocab.encode_batch(texts, max_tokens=200)   # (N, T) int64 padded with <pad>, (N,)
    vocab.save(folder / "vocab.json"); WordVocab.load(folder / "vocab.json")
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastgru.io import atomic

FORMAT = "fastgru-word-vocab-v1"
PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
DEFAULT_SPECIALS = (PAD, UNK)
TOKEN_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalize_text(text: str) -> str:
    """Unicode NFKC with every apostrophe-like mark (’ ‘ ʼ `) as a plain ``'``; case is kept."""
    return unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)


def tokenize(text: str, lowercase: bool = True, normalize: bool = False) -> list[str]:
    """Words and punctuation marks of `text`, in order (lower-cased unless `lowercase=False`; put through
    :func:`normalize_text` first when `normalize=True`)."""
    if normalize:
        text = normalize_text(text)
    return _TOKEN_RE.findall(text.lower() if lowercase else text)


@dataclass
class WordVocab:
    """Token <-> id mapping; ``tokens[i]`` is the token of id i and ``tokens[:len(specials)] == specials``.
    ``lowercase`` and ``normalize`` are the tokenizer settings the vocabulary was built with (encoding
    text uses them too)."""

    tokens: list[str]
    lowercase: bool = True
    min_freq: int = 1
    specials: tuple[str, ...] = DEFAULT_SPECIALS
    normalize: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.specials = tuple(self.specials)
        if not self.specials or self.specials[0] != PAD or UNK not in self.specials:
            raise ValueError(f"a word vocabulary's special tokens start with {PAD!r} and include {UNK!r}, "
                             f"got {list(self.specials)}")
        if tuple(self.tokens[: len(self.specials)]) != self.specials:
            raise ValueError(f"a word vocabulary starts with its special tokens {list(self.specials)}, "
                             f"got {self.tokens[: len(self.specials)]}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = sorted(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"a word vocabulary cannot hold the same token twice: {dup[:10]}")
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], *, min_freq: int = 2, max_size: int | None = None,
              lowercase: bool = True, specials: Sequence[str] = DEFAULT_SPECIALS,
              normalize: bool = False) -> WordVocab:
        """The vocabulary of tokenized training texts: tokens seen >= min_freq times, at most max_size
        of them (the most frequent; the special tokens are not counted)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be None or >= 1, got {max_size}")
        counts = Counter(tok for tokens in token_lists for tok in tokens)
        for special in specials:
            counts.pop(special, None)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([*specials, *kept], lowercase=lowercase, min_freq=min_freq, specials=tuple(specials),
                   normalize=normalize)

    def __len__(self) -> int:
        return len(self.tokens)

    def special_id(self, token: str) -> int:
        """The id of special token `token` (ValueError naming the specials if this vocabulary lacks it)."""
        if token not in self.specials:
            raise ValueError(f"this vocabulary has no {token!r} token (its specials are {list(self.specials)})")
        return self._index[token]

    @property
    def pad_id(self) -> int:
        return self._index[PAD]

    @property
    def unk_id(self) -> int:
        return self._index[UNK]

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.lowercase, self.normalize)

    def ids(self, tokens: Sequence[str], eos: bool = False) -> list[int]:
        """Ids of `tokens`; unknown tokens become <unk>. ``eos=True`` appends the id of <eos> (the
        vocabulary must have one)."""
        unk = self.unk_id
        out = [self._index.get(t, unk) for t in tokens]
        return out + [self.special_id(EOS)] if eos else out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids` up to the first <eos> (if the vocabulary has one); the other special tokens but
        <unk> are dropped, and an id outside the vocabulary reads as <unk>."""
        stop = self._index[EOS] if EOS in self.specials else None
        skip = {self._index[s] for s in self.specials if s not in (UNK, EOS)}
        out = []
        for i in ids:
            i = int(i)
            if i == stop:
                break
            if i not in skip:
                out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out

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
                "normalize": self.normalize, "min_freq": self.min_freq, "specials": list(self.specials),
                "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "vocabulary",
                  specials: Sequence[str] | None = None) -> WordVocab:
        """The vocabulary `d` describes (:meth:`to_dict`); `source` names it in errors. With `specials`,
        the vocabulary must have exactly these special tokens (a model that hard-codes their ids)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("tokens"), list):
            raise ValueError(f"{source}: not a fastgru word vocabulary (expected format {FORMAT!r})")
        if d.get("token_pattern", TOKEN_PATTERN) != TOKEN_PATTERN:
            raise ValueError(f"{source}: made with another tokenizer ({d['token_pattern']!r}); this fastgru "
                             f"tokenizes with {TOKEN_PATTERN!r}")
        saved = d.get("specials", list(DEFAULT_SPECIALS))
        if not isinstance(saved, list) or not all(isinstance(s, str) for s in saved):
            raise ValueError(f"{source}: 'specials' must be a list of strings, got {saved!r}")
        if specials is not None and tuple(saved) != tuple(specials):
            raise ValueError(f"{source}: special tokens {saved}, expected {list(specials)}")
        try:
            return cls(list(d["tokens"]), lowercase=bool(d.get("lowercase", True)),
                       min_freq=int(d.get("min_freq", 1)), specials=tuple(saved),
                       normalize=bool(d.get("normalize", False)))
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, atomically."""
        atomic.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, specials: Sequence[str] | None = None) -> WordVocab:
        """The vocabulary saved at `path` (see :meth:`from_dict` for `specials`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(d, str(path), specials)
