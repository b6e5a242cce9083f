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
    """Return a text shipped with fastgru (see fastgru/data/files/README.md for source and licence)."""
    if name not in BUILTIN_TEXTS:
        raise ValueError(f"unknown built-in text {name!r}; choose one of {sorted(BUILTIN_TEXTS)}")
    ref = resources.files("fastgru.data") / "files" / BUILTIN_TEXTS[name]
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


@dataclass(frozen=True)
class CharVocab:
    """The characters of a text, in sorted order; index i stands for ``chars[i]``."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """int64 ids of `text`; characters outside the vocabulary raise a ValueError naming them."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"characters not in the model's vocabulary: {''.join(unknown)!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


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
