"""Sentence normalisation, word tokenisation and the word vocabulary of a translation model.

Normalisation follows PyTorch's seq2seq tutorial in spirit (lower case, punctuation split off as its own
token) but keeps accents, digits and in-word apostrophes, which French needs ("j'ai", "l'été"):

- Unicode NFKC (this also turns the narrow no-break space Tatoeba's French puts before "!" and "?" into
  a plain space), curly apostrophes to ``'``, lower case;
- tokens are runs of letters/digits with in-word apostrophes (``don't``, ``aujourd'hui``), or single
  punctuation characters.

The vocabulary maps tokens to ids with four specials first: ``<pad>`` 0, ``<sos>`` 1, ``<eos>`` 2,
``<unk>`` 3. It is built from training sentences only (most frequent first, ties alphabetical, so the
same data always gives the same ids) and is saved with the model as JSON (:meth:`Vocab.to_dict`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def normalize(sentence: str) -> str:
    """NFKC, plain apostrophes, lower case, single spaces: the form every sentence is compared in."""
    text = unicodedata.normalize("NFKC", sentence).translate(_APOSTROPHES).lower()
    return " ".join(text.split())


def tokenize(sentence: str) -> list[str]:
    """Word and punctuation tokens of the normalised sentence: "I'm here!" -> ["i'm", "here", "!"]."""
    return _TOKEN.findall(normalize(sentence))


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens back to one space-separated string (the tokenised form BLEU is computed on)."""
    return " ".join(tokens)


@dataclass
class Vocab:
    """Token <-> id; ids 0-3 are the specials (PAD, SOS, EOS, UNK), then the words."""

    tokens: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the specials {SPECIALS}, got {self.tokens[:4]}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = sorted(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"the vocabulary lists tokens more than once: {dup[:10]}")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """The tokens of `sentences` (already tokenised) seen at least `min_freq` times, most frequent first."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter(t for s in sentences for t in s if t not in SPECIALS)
        words = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], eos: bool = True) -> list[int]:
        """Ids of `tokens` (unknown words -> UNK), with EOS appended unless eos=False."""
        ids = [self.index.get(t, UNK_ID) for t in tokens]
        return ids + [EOS_ID] if eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids` up to the first EOS; PAD and SOS are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, SOS_ID):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out

    def to_dict(self) -> dict:
        return {"specials": list(SPECIALS), "tokens": self.tokens[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        if not isinstance(d, dict) or list(d.get("specials", [])) != list(SPECIALS) or "tokens" not in d:
            raise ValueError(f"not a fastgru vocabulary (need 'specials' {list(SPECIALS)} and 'tokens')")
        return cls(list(SPECIALS) + list(d["tokens"]))
