"""Log-mel features: what the keyword spotter hears, for a whole signal or chunk by chunk.

Frame k covers samples [k * hop, k * hop + n_fft) (no centring padding, so a frame never needs audio from
the future and the chunk-by-chunk extractor gives exactly the whole-signal frames). Each frame: a Hann
window (librosa.filters.get_window), the power spectrum (librosa.stft), a mel filter bank
(librosa.filters.mel, Slaney scale and normalisation, librosa's defaults) and decibels
(librosa.power_to_db with ref 1 and floor `amin`, no per-utterance top_db clipping — that would need the
whole utterance). Everything is computed in float64 and returned as float32; nothing is random.

Defaults (16 kHz audio): 25 ms windows (n_fft 400) every 10 ms (hop 160), 40 mel bands from 20 Hz to
the Nyquist frequency: the usual keyword-spotting front end. Normalisation is not done here: the task
standardises each mel band with mean / std of the training frames (a global scaler stored with the
model), which works frame by frame, unlike per-utterance normalisation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import librosa
import numpy as np

from fastgru.io.settings import JsonSettings


@dataclass(frozen=True)
class LogMelSettings(JsonSettings):
    """Feature settings; stored with a trained model so prediction computes the same features."""

    settings_label = "feature settings"

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None  # None: sample_rate / 2
    amin: float = 1e-10

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft}): "
                             "samples between frames would be skipped")
        top = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin {self.fmin}, fmax {top}, "
                             f"sample rate {self.sample_rate}")
        if not self.amin > 0:
            raise ValueError(f"amin must be > 0, got {self.amin}")

    def num_frames(self, num_samples: int) -> int:
        """Frames in a signal of `num_samples` samples (0 when shorter than one window)."""
        return 0 if num_samples < self.n_fft else 1 + (num_samples - self.n_fft) // self.hop_length



@functools.lru_cache(maxsize=8)
def _mel_basis(settings: LogMelSettings) -> np.ndarray:
    return librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels,
                               fmin=settings.fmin, fmax=settings.fmax, dtype=np.float64)


def logmel(samples: np.ndarray, settings: LogMelSettings | None = None) -> np.ndarray:
    """(num_frames, n_mels) float32 log-mel features (dB) of mono `samples` at ``settings.sample_rate``."""
    settings = settings or LogMelSettings()
    y = np.asarray(samples, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"logmel needs mono samples (one dimension), got shape {y.shape}")
    n = settings.num_frames(len(y))
    if n == 0:
        return np.zeros((0, settings.n_mels), dtype=np.float32)
    y = y[: settings.n_fft + (n - 1) * settings.hop_length]
    spec = librosa.stft(y, n_fft=settings.n_fft, hop_length=settings.hop_length, win_length=settings.n_fft,
                        window="hann", center=False, dtype=np.complex128)
    power = spec.real**2 + spec.imag**2
    mel = _mel_basis(settings) @ power
    db = librosa.power_to_db(mel, ref=1.0, amin=settings.amin, top_db=None)
    return np.ascontiguousarray(db.T, dtype=np.float32)


class LogMelStream:
    """Chunk-by-chunk log-mel features: ``push(chunk)`` returns the frames that chunk completes.

    The frames pushed out over a whole signal, whatever the chunk sizes, are the frames of
    ``logmel(signal)``: the extractor keeps the samples a future frame still needs (at most n_fft - 1
    plus what has not reached the next hop) and computes each frame once.
    """

    def __init__(self, settings: LogMelSettings | None = None) -> None:
        self.settings = settings or LogMelSettings()
        self._buffer = np.zeros(0, dtype=np.float64)
        self.frames_out = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Append mono samples; return the (k, n_mels) frames now complete (k may be 0)."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 1:
            raise ValueError(f"push needs mono samples (one dimension), got shape {chunk.shape}")
        buf = np.concatenate([self._buffer, chunk])
        k = self.settings.num_frames(len(buf))
        if k == 0:
            self._buffer = buf
            return np.zeros((0, self.settings.n_mels), dtype=np.float32)
        frames = logmel(buf, self.settings)
        self._buffer = buf[k * self.settings.hop_length:]
        self.frames_out += k
        return frames

    def reset(self) -> None:
        """Forget buffered samples: the next push starts a new signal."""
        self._buffer = np.zeros(0, dtype=np.float64)
        self.frames_out = 0
