"""JSB Chorales as binary piano rolls, and the per-step Bernoulli NLL the music-modelling papers report.

The data (shipped in ``fastgru/apps/data/files/jsb_chorales.json.gz``, see the README there) holds each chorale
as a list of time steps, each step the MIDI notes sounding.  A model reads the roll one step behind and
predicts every step from the ones before it (an all-zero frame stands before the first step), so every
step of a chorale is scored.  The score, as in Boulanger-Lewandowski et al. 2012 and Chung et al. 2014,
is the negative log-likelihood per time step: the sum over the note outputs of the Bernoulli NLL, summed
over all steps of a split and divided by its number of steps.  That is the loss of the "multilabel" head
with per-step outputs in `fastgru.train.losses`, which the Trainer reports as `loss`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources

import torch

SPLITS = ("train", "valid", "test")
PIANO_LOW, PIANO_HIGH = 21, 108  # MIDI numbers of the 88 piano keys A0 .. C8
NOTE_RANGES = ("piano", "data")


@dataclass
class PianoRolls:
    """One split as binary piano rolls: ``rolls[i]`` is a float32 (T_i, n_notes) tensor of 0/1."""

    rolls: list[torch.Tensor]
    low_note: int  # MIDI number of column 0

    @property
    def n_notes(self) -> int:
        return self.rolls[0].shape[1]

    @property
    def n_steps(self) -> int:
        return sum(r.shape[0] for r in self.rolls)

    def __len__(self) -> int:
        return len(self.rolls)


def _raw() -> dict:
    """The shipped JSON: {'source': str, 'train'|'valid'|'test': [chorale: [step: [midi notes]]]}."""
    ref = resources.files("fastgru.apps.data") / "files" / "jsb_chorales.json.gz"
    with ref.open("rb") as fh, gzip.open(fh, "rt") as text:
        return json.load(text)


def note_bounds(note_range: str, raw: dict | None = None) -> tuple[int, int]:
    """(lowest, highest) MIDI note of the output columns: 88 piano keys, or the range the data uses."""
    if note_range not in NOTE_RANGES:
        raise ValueError(f"note_range must be one of {NOTE_RANGES}, got {note_range!r}")
    if note_range == "piano":
        return PIANO_LOW, PIANO_HIGH
    raw = raw if raw is not None else _raw()
    notes = [n for split in SPLITS for chorale in raw[split] for step in chorale for n in step]
    return min(notes), max(notes)


def load_jsb_chorales(
    split: str = "train", *, note_range: str = "piano", limit: int | None = None
) -> PianoRolls:
    """Load one split of JSB Chorales as piano rolls.

    note_range: "piano" gives 88 columns (MIDI 21-108, the usual setting); "data" gives only the columns
    the data set uses (MIDI 43-96, 54 columns) — the same columns for every split.
    limit: keep only the first `limit` chorales (for quick tests).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of chorales, got {limit}")
    raw = _raw()
    low, high = note_bounds(note_range, raw)
    chorales = raw[split][:limit] if limit is not None else raw[split]
    rolls = []
    for chorale in chorales:
        roll = torch.zeros(len(chorale), high - low + 1)
        for t, step in enumerate(chorale):
            roll[t, [n - low for n in step]] = 1.0
        rolls.append(roll)
    return PianoRolls(rolls, low)


def batch_rolls(rolls: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad chorales into one batch for next-step prediction.

    Returns (inputs, targets, lengths): inputs and targets are (B, T_max, N) batch-first, inputs being the
    targets shifted one step later with a zero frame first; lengths is int64 (B,). Padded steps are zero.
    """
    lengths = torch.tensor([r.shape[0] for r in rolls], dtype=torch.int64)
    targets = torch.nn.utils.rnn.pad_sequence(rolls, batch_first=True)
    inputs = torch.zeros_like(targets)
    inputs[:, 1:] = targets[:, :-1]
    return inputs, targets, lengths

