"""Held-out speakers: split clips into train / validation / test parts that share no speaker group.

A keyword spotter that has heard a voice in training and is tested on the same voice is graded too kindly;
the question that matters is how it does on voices it has never heard. So whole groups of clips go to one
part: the group is the speaker (voice) by default, or a coarser key (for the built-in espeak-ng set,
``accent`` or ``variant``: every voice sharing the accent, or the voice variant, goes to the same part).
The groups are shuffled with `seed`; a `test_fraction` of them is the test part, a `val_fraction` of the
rest the validation part (early stopping), the others train.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

GROUPINGS: dict[str, Callable[[str], str]] = {
    "voice": lambda speaker: speaker,
    "accent": lambda speaker: speaker.split("+", 1)[0],    # espeak-ng voices are accent+variant
    "variant": lambda speaker: speaker.split("+", 1)[-1],
}


@dataclass
class SpeakerSplit:
    """Indices of the clips in each part and the groups each part holds."""

    train: list[int]
    val: list[int]
    test: list[int]
    train_groups: list[str]
    val_groups: list[str]
    test_groups: list[str]


def split_by_speaker(speakers: Sequence[str], *, test_fraction: float = 0.25, val_fraction: float = 0.2,
                     seed: int = 0, group: str = "voice") -> SpeakerSplit:
    """Train / validation / test clip indices with disjoint speaker groups (see the module notes)."""
    if group not in GROUPINGS:
        raise ValueError(f"hold-out group must be one of {sorted(GROUPINGS)}, got {group!r}")
    for name, f in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 < f < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {f}")
    key = GROUPINGS[group]
    keys = [key(s) for s in speakers]
    groups = sorted(set(keys))
    if len(groups) < 3:
        raise ValueError(f"holding out by {group} needs at least 3 different {group}s (train, validation, test), "
                         f"found {len(groups)}: {groups}. Name files <speaker>_<n>.wav so the speaker can be told")
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    n_test = min(max(1, round(test_fraction * len(groups))), len(groups) - 2)
    n_val = min(max(1, round(val_fraction * (len(groups) - n_test))), len(groups) - n_test - 1)
    test_g, val_g, train_g = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    part = {g: 0 for g in train_g} | {g: 1 for g in val_g} | {g: 2 for g in test_g}
    idx: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, k in enumerate(keys):
        idx[part[k]].append(i)
    return SpeakerSplit(idx[0], idx[1], idx[2], sorted(train_g), sorted(val_g), sorted(test_g))
