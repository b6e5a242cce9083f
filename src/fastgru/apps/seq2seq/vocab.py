"""The text side of translation: sentence normalisation, tokenisation, and the vocabulary settings.

Normalisation follows PyTorch's seq2seq tutorial in spirit (lower case, punctuation split off as its own
token) but keeps accents, digits and in-word apostrophes, which French needs ("j'ai", "l'été"):

- Unicode NFKC (this also turns the narrow no-break space Tatoeba's French puts before "!" and "?" into
  a plain space), curly apostrophes to ``'``, lower case;
- tokens are runs of letters/digits with in-word apostrophes (``don't``, ``aujourd'hui``), or single
  punctuation characters.

This is fastgru.apps.data.words' tokenizer with ``normalize=True``. The vocabulary is the shared
:class:`fastgru.apps.data.words.WordVocab` with four specials first: ``<pad>`` 0, ``<sos>`` 1, ``<eos>`` 2,
``<unk>`` 3 (:func:`build_vocab`; the model and the decoders rely on these ids). It is built from
training sentences only (most frequent first, ties alphabetical, so the same data always gives the same
ids) and is saved with the model as JSON (``WordVocab.to_dict``; read back with :func:`vocab_from_dict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastgru.apps.data.words import EOS, PAD, SOS, UNK, WordVocab, normalize_text
from fastgru.apps.data.words import tokenize as _tokenize

SPECIALS = (PAD, SOS, EOS, UNK)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = (SPECIALS.index(t) for t in (PAD, SOS, EOS, UNK))

__all__ = ["EOS", "EOS_ID", "PAD", "PAD_ID", "SOS", "SOS_ID", "SPECIALS", "UNK", "UNK_ID",
           "build_vocab", "join_tokens", "normalize", "tokenize", "vocab_from_dict"]


def normalize(sentence: str) -> str:
    """NFKC, plain apostrophes, lower case, single spaces: the form every sentence is compared in."""
    return " ".join(normalize_text(sentence).lower().split())


def tokenize(sentence: str) -> list[str]:
    """Word and punctuation tokens of the normalised sentence: "I'm here!" -> ["i'm", "here", "!"]."""
    return _tokenize(sentence, lowercase=True, normalize=True)


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens back to one space-separated string (the tokenised form BLEU is computed on)."""
    return " ".join(tokens)


def build_vocab(sentences: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> WordVocab:
    """The translation vocabulary of `sentences` (already tokenised): the specials, then the tokens seen at
    least `min_freq` times (at most `max_size` of them), most frequent first."""
    return WordVocab.build(sentences, min_freq=min_freq, max_size=max_size, specials=SPECIALS, normalize=True)


def vocab_from_dict(d: dict[str, Any], source: str = "vocabulary") -> WordVocab:
    """A saved translation vocabulary; ValueError unless it has exactly the translation specials."""
    return WordVocab.from_dict(d, source, specials=SPECIALS)
