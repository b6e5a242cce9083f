"""Character-level text data: the built-in texts, a character vocabulary, splits and training chunks.

Used by the `generate` task (a character language model) and by `compare` on text.  A text is split in
reading order (train, then validation, then test) so held-out text is text the model never saw; the
model reads chunks of `seq_len` characters and predicts each next character.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

BUILTIN_TEXTS = {"shakespeare_sonnets": "shakespeare_sonnets.txt.gz"}


def load_builtin_text(name: str = "shakespeare_sonnets") -> str:
    """Return a text shipped with fastgru (see fastgru/apps/data/files/README.md for source and licence)."""
    if name not in BUILTIN_TEXTS:
        raise ValueError(f"unknown built-in text {name!r}; choose one of {sorted(BUILTIN_TEXTS)}")
    ref = resources.files("fastgru.apps.data") / "files" / BUILTIN_TEXTS[name]
    with ref.open("rb") as fh, gzip.open(fh, "rt", encoding="utf-8") as text:
        return text.read()


def read_text(path: str | Path) -> str:
    """Read a user's UTF-8 text file, with a clear message when it is missing, not text, or empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"text file {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "convert it to UTF-8 first"
        ) from exc
    if not text:
        raise ValueError(f"text file {str(path)!r} is empty")
    return text


UNKNOWN = "\ufffd"  # how the unknown-character symbol <unk> prints (the Unicode replacement character)


@dataclass(frozen=True)
class CharVocab:
    """The characters of a text, in sorted order; index i stands for ``chars[i]``.

    With ``unknown=True`` one more index, ``len(chars)``, stands for <unk>: any character the vocabulary
    lacks (a character that appears only in held-out text). A language model trained on text without
    <unk> gives it little probability, so an unknown character costs many bits, as it should.
    """

    chars: str
    unknown: bool = False

    @classmethod
    def from_text(cls, text: str, *, unknown: bool = False) -> CharVocab:
        return cls("".join(sorted(set(text))), unknown)

    def __len__(self) -> int:
        return len(self.chars) + int(self.unknown)

    @property
    def unknown_id(self) -> int | None:
        """The id of <unk>, or None when the vocabulary has none."""
        return len(self.chars) if self.unknown else None

    def unknown_chars(self, text: str) -> dict[str, int]:
        """How often each character of `text` outside the vocabulary occurs in it."""
        known = set(self.chars)
        counts: dict[str, int] = {}
        for c in text:
            if c not in known:
                counts[c] = counts.get(c, 0) + 1
        return counts

    def encode(self, text: str, *, allow_unknown: bool = False) -> torch.Tensor:
        """int64 ids of `text`.

        Characters outside the vocabulary become <unk> when ``allow_unknown`` and the vocabulary has
        it; otherwise they raise a ValueError naming them.
        """
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown and not (allow_unknown and self.unknown):
            raise ValueError(f"characters not in the model's vocabulary: {''.join(unknown)!r}")
        unk = self.unknown_id
        return torch.tensor([index.get(c, unk) for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Characters of `ids`; <unk> prints as the replacement character U+FFFD."""
        return "".join(UNKNOWN if int(i) == len(self.chars) else self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict[str, object]:
        return {"chars": self.chars, "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CharVocab:
        """Inverse of :meth:`to_dict`; vocab.json files written before <unk> existed have no "unknown"."""
        chars = data.get("chars")
        if not isinstance(chars, str):
            raise ValueError("vocab.json must hold a string under \"chars\"")
        return cls(chars, bool(data.get("unknown", False)))


@dataclass(frozen=True)
class TextSplit:
    """Training, validation and test text, and where each came from (printed and written to metrics.json)."""

    train: str
    valid: str
    test: str
    source: dict[str, str]


def split_text(
    text: str,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    *,
    test_text: str | None = None,
    max_chars: int | None = None,
) -> TextSplit:
    """Split `text` in reading order into training, validation and test parts, *then* cut the training part.

    Without `test_text` the last `test_frac` of `text` is the test part and the `valid_frac` before it
    the validation part. With `test_text` (a separate file), `text` gives only training and validation
    (its last `valid_frac`). `max_chars` keeps the first `max_chars` characters of the training part
    only, so the validation and test parts are the same whatever `max_chars` is.
    """
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be a positive number of characters, got {max_chars}")
    n = len(text)
    if test_text is None:
        if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
            raise ValueError(
                f"valid_frac must be in [0, 1) and test_frac in (0, 1) with a sum below 1, got {valid_frac}, "
                f"{test_frac}"
            )
        n_test = int(round(n * test_frac))
        test = text[n - n_test :]
        source = {"test": f"the last {test_frac:.0%} of the text ({n_test:,} characters)"}
    else:
        if not 0 <= valid_frac < 1:
            raise ValueError(f"valid_frac must be in [0, 1), got {valid_frac}")
        n_test, test = 0, test_text
        source = {"test": f"the test file ({len(test_text):,} characters)"}
    n_valid = int(round(n * valid_frac))
    n_train = n - n_test - n_valid
    train, valid = text[:n_train], text[n_train : n_train + n_valid]
    source["valid"] = f"the {valid_frac:.0%} of the text before the test part ({n_valid:,} characters)"
    if test_text is not None:
        source["valid"] = f"the last {valid_frac:.0%} of the text ({n_valid:,} characters)"
    source["train"] = f"the first {n_train:,} characters of the text"
    if max_chars is not None and max_chars < n_train:
        train = train[:max_chars]
        source["train"] = (f"the first {max_chars:,} characters of the text (max_chars; the training part had "
                           f"{n_train:,})")
    return TextSplit(train, valid, test, source)


def split_ids(ids: torch.Tensor, valid_frac: float, test_frac: float) -> tuple[torch.Tensor, ...]:
    """Split a 1-D id tensor in reading order into (train, valid, test)."""
    if not (0 <= valid_frac < 1 and 0 <= test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError(
            f"valid_frac and test_frac must be in [0, 1) with a sum below 1, got {valid_frac}, {test_frac}"
        )
    n = ids.numel()
    n_test = int(round(n * test_frac))
    n_valid = int(round(n * valid_frac))
    n_train = n - n_valid - n_test
    return ids[:n_train], ids[n_train : n_train + n_valid], ids[n_train + n_valid :]


def check_length(parts: dict[str, torch.Tensor], seq_len: int) -> None:
    """Raise a clear ValueError when any part holds fewer than seq_len + 1 characters (one chunk)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    for name, ids in parts.items():
        if ids.numel() < seq_len + 1:
            raise ValueError(
                f"text too short for seq_len={seq_len}: the {name} part has {ids.numel()} characters, "
                f"and one training chunk needs seq_len + 1 = {seq_len + 1}; give a longer text or a "
                "smaller --seq-len"
            )


def chunks(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ids into non-overlapping (inputs, targets) chunks of seq_len, targets one character ahead.

    Returns two int64 (n_chunks, seq_len) tensors; the leftover tail shorter than a chunk is dropped.
    """
    n = (ids.numel() - 1) // seq_len
    inputs = ids[: n * seq_len].view(n, seq_len)
    targets = ids[1 : n * seq_len + 1].view(n, seq_len)
    return inputs, targets
