"""Reading audio: one WAV file at the model's sample rate, and a labelled folder of them.

Sample rates (the choice `fastgru listen` makes, and says so in its outputs):

- a file at the model's rate is used as is;
- a file at a *higher* rate is resampled down to the model's rate with librosa.resample
  (``res_type="soxr_hq"``, the SoX resampler), unless the caller passes ``resample=False``, which refuses it;
- a file at a *lower* rate is refused: upsampling cannot bring back the band above its Nyquist frequency,
  so the upper mel bands would be empty and the model would hear something unlike its training data.
  Train a model at that rate instead (``--sample-rate``), or record at the model's rate.

Several channels are mixed to mono (their mean), and the result counts the files that were.

A labelled folder holds one sub-folder per word (class) with that word's ``.wav`` files (upper- or
lower-case suffix; not searched recursively). Sub-folders whose names start with ``_`` or ``.`` are
skipped (Speech Commands keeps its background noise in ``_background_noise_``). The speaker (voice) of a
file is its name up to the first underscore (``<speaker>_<anything>.wav``, as in Speech Commands and in
the built-in espeak-ng set); a file name without an underscore is a speaker of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Audio:
    """Mono samples at `sample_rate`, and what was done to get them."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int

    @property
    def resampled(self) -> bool:
        return self.source_rate != self.sample_rate

    @property
    def mixed(self) -> bool:
        return self.source_channels > 1


@dataclass(frozen=True)
class Clip:
    """One labelled recording in a folder."""

    path: Path
    word: str
    speaker: str


def load_wav(path: str | Path, sample_rate: int, *, resample: bool = True) -> Audio:
    """Read `path` as mono float32 samples at `sample_rate` (see the module notes on rates and channels)."""
    import librosa
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:  # LibsndfileError is a RuntimeError in new versions
        raise ValueError(f"{path}: cannot read it as audio ({exc})") from None
    channels = data.shape[1]
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no samples")
    samples = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if rate != sample_rate:
        if rate < sample_rate:
            raise ValueError(f"{path}: sample rate {rate} Hz is below the model's {sample_rate} Hz; upsampling "
                             f"cannot restore the missing high frequencies. Record or export at {sample_rate} Hz "
                             f"or more, or train a model at {rate} Hz (--sample-rate {rate})")
        if not resample:
            raise ValueError(f"{path}: sample rate {rate} Hz, the model expects {sample_rate} Hz; resample it "
                             f"(e.g. `sox in.wav -r {sample_rate} out.wav`) or allow resampling")
        samples = librosa.resample(samples, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    if not np.isfinite(samples).all():
        raise ValueError(f"{path}: the audio holds NaN or infinite samples")
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), sample_rate, int(rate), int(channels))


def speaker_of(path: str | Path) -> str:
    """The speaker named by a file name: the stem up to its first underscore (the whole stem if none)."""
    stem = Path(path).stem
    return stem.split("_", 1)[0] if "_" in stem else stem


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav"
                  and not p.name.startswith("."))


def scan_folder(folder: str | Path, *, min_classes: int = 2) -> list[Clip]:
    """The labelled clips of `folder` (one sub-folder per word), sorted by word then file name.

    Refuses a missing folder, a folder with no WAV files in sub-folders, and (by default) a folder with
    only one word: a classifier needs at least two classes.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder; give a folder with one sub-folder of WAV files per word")
    clips: list[Clip] = []
    words: list[str] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        files = _wavs(sub)
        if files:
            words.append(sub.name)
            clips += [Clip(f, sub.name, speaker_of(f)) for f in files]
    if not clips:
        loose = _wavs(folder)
        hint = f" ({len(loose)} WAV files lie directly in it)" if loose else ""
        raise ValueError(f"{folder}: no WAV files in sub-folders{hint}; put each word's recordings in a "
                         "sub-folder named after the word (yes/a_1.wav, no/a_2.wav, ...)")
    if len(words) < min_classes:
        raise ValueError(f"{folder}: only one class (sub-folder {words[0]!r}); a word classifier needs at least "
                         "two words, one sub-folder of WAV files each")
    return clips
