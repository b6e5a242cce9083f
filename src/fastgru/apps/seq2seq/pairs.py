"""Sentence pairs for translation: the shipped Tatoeba English-French file or a user's TSV, checked, split
by source sentence, and turned into padded id tensors.

File format (no header): one pair per line, ``source<TAB>target``; further columns are kept as the
pair's attribution (the shipped Tatoeba file has one: CC-BY 2.0 France asks that it stay with the data)
and are not used for training. ``.gz`` files are read transparently. Blank lines are skipped.

The split is by *distinct source sentence*: Tatoeba often gives several translations of one sentence
("Go." -> "Va !", "Marche.", "Bouge !"), and all of them go to the same part, so a test sentence is
never seen in training and the test set can be scored against all its reference translations at once.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from fastgru.apps.data.tabular import DataFileError
from fastgru.apps.data.words import WordVocab
from fastgru.apps.seq2seq.vocab import PAD_ID, normalize, tokenize

BUILTIN = "tatoeba_eng_fra_5k"
BUILTIN_FILE = "tatoeba_eng_fra_5k.tsv.gz"
BUILTIN_LANGUAGES = ("eng", "fra")


@dataclass
class SentencePairs:
    """Parallel sentences: source[i] translates to target[i]; attribution[i] is the rest of its line."""

    source: list[str]
    target: list[str]
    attribution: list[str]
    name: str
    languages: tuple[str, str] = ("source", "target")

    def __len__(self) -> int:
        return len(self.source)

    def reversed(self) -> SentencePairs:
        """The same pairs translated the other way (target -> source)."""
        return SentencePairs(self.target, self.source, self.attribution, self.name, self.languages[::-1])

    def subset(self, idx: list[int] | np.ndarray) -> SentencePairs:
        pick = [int(i) for i in idx]
        return SentencePairs([self.source[i] for i in pick], [self.target[i] for i in pick],
                             [self.attribution[i] for i in pick], self.name, self.languages)


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); convert it to UTF-8") from exc
    except (OSError, EOFError) as exc:  # e.g. a .gz that is not gzip
        raise DataFileError(f"{path}: cannot be read: {exc}") from exc


def parse_pairs(lines: list[str], name: str, languages: tuple[str, str] = ("source", "target")) -> SentencePairs:
    """Check and split TSV lines into pairs; every problem names the file, the line and the column."""
    src, tgt, attr = [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 2:
            raise DataFileError(
                f"{name}: line {number} has only one column ({line[:60]!r}); each line needs "
                f"'{languages[0]}<TAB>{languages[1]}' (column 2, the {languages[1]} sentence, is missing)"
            )
        for col in (0, 1):
            if not tokenize(cells[col]):
                raise DataFileError(f"{name}: line {number}, column {col + 1} ({languages[col]} sentence) is empty")
        src.append(cells[0].strip())
        tgt.append(cells[1].strip())
        attr.append("\t".join(cells[2:]).strip())
    if not src:
        raise DataFileError(f"{name}: the file is empty: no sentence pairs (need one "
                            f"'{languages[0]}<TAB>{languages[1]}' pair per line)")
    return SentencePairs(src, tgt, attr, name, languages)


def read_pairs(path: str | Path) -> SentencePairs:
    """A user's TSV (or .tsv.gz) of sentence pairs; FileNotFoundError / DataFileError with clear messages."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sentence-pair file not found: {path}")
    if path.is_dir():
        raise DataFileError(f"{path} is a folder; give a TSV file of 'source<TAB>target' lines")
    return parse_pairs(_read_lines(path), str(path))


def load_builtin_pairs() -> SentencePairs:
    """The shipped 5,000 Tatoeba English-French pairs (CC-BY 2.0 France; attribution in column 3)."""
    ref = resources.files("fastgru.apps.data") / "files" / BUILTIN_FILE
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    return parse_pairs(lines, BUILTIN, BUILTIN_LANGUAGES)


def load_pairs(data: str | Path = BUILTIN) -> SentencePairs:
    """`data` is the built-in name or a path to a TSV of pairs."""
    return load_builtin_pairs() if str(data) == BUILTIN else read_pairs(data)


def split_by_source(pairs: SentencePairs, test_fraction: float, val_fraction: float,
                    seed: int) -> tuple[list[int], list[int], list[int]]:
    """Indices of (train, validation, test) pairs; all pairs sharing a normalised source sentence stay
    together. The distinct sources are shuffled with `seed`; each held-out part gets at least one source
    when its fraction is > 0."""
    for label, f in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{label} must lie in [0, 1), got {f}")
    keys = [normalize(s) for s in pairs.source]
    distinct = sorted(set(keys))
    n = len(distinct)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise DataFileError(f"{pairs.name}: {n} distinct source sentence(s) are too few to hold out "
                            f"{n_test} for testing and {n_val} for validation and still train on some")
    order = np.random.default_rng(seed).permutation(n)
    part = {}
    for rank, i in enumerate(order):
        part[distinct[i]] = 2 if rank < n_test else 1 if rank < n_test + n_val else 0
    groups: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, k in enumerate(keys):
        groups[part[k]].append(i)
    return groups


def pad_ids(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, max_len) int64 ids padded with PAD, and the lengths (N,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    out = torch.full((len(seqs), int(lengths.max())), PAD_ID, dtype=torch.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
    return out, lengths


def encode_sources(sentences: list[str], vocab: WordVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded source ids (each sentence's tokens + EOS) and their lengths."""
    return pad_ids([vocab.ids(tokenize(s), eos=True) for s in sentences])
