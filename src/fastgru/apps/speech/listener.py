"""A trained keyword spotter: GRU classifier + feature settings + normalisation + class names.

:class:`Listener` is what `fastgru listen` saves and loads (a model folder: ``model.safetensors`` and
``model.json`` from fastgru.train.resume, plus ``listener.json`` with the class names, the log-mel
settings and the per-band mean / std of the training frames). It classifies whole clips in batches, and
:meth:`Listener.stream` gives a :class:`ListenStream` that takes audio chunk by chunk: each completed
frame is normalised and fed to the GRU through ``fastgru.nn.Stream``, so the state is carried across
frames and chunks, and after the last chunk the state equals the full-sequence call's final state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastgru.apps.data.windows import Scaler, pad_scaled
from fastgru.apps.speech.features import LogMelSettings, LogMelStream, logmel
from fastgru.io import atomic
from fastgru.nn import Stream
from fastgru.train.models import SequenceModel
from fastgru.train.resume import load_model, save_model

LISTENER_FILE = "listener.json"
FORMAT = "fastgru-listener-v1"


@dataclass
class Listener:
    """model: a SequenceModel with a classification head over log-mel frames; scaler: per-band statistics."""

    model: SequenceModel
    classes: list[str]
    features: LogMelSettings
    scaler: Scaler
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.model.config
        if cfg.head != "classification" or cfg.output_size != len(self.classes):
            raise ValueError(f"the model must classify into the {len(self.classes)} classes, got head {cfg.head!r} "
                             f"with {cfg.output_size} outputs")
        if cfg.input_size != self.features.n_mels:
            raise ValueError(f"the model reads {cfg.input_size} features per frame but the settings make "
                             f"{self.features.n_mels} mel bands")
        self.model.eval()

    # -- features --------------------------------------------------------------------------------
    def featurize(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel frames (T, n_mels) of mono samples at the model's rate (not yet normalised)."""
        return logmel(samples, self.features)

    def normalize(self, frames: np.ndarray) -> np.ndarray:
        """Frames standardised with the training statistics, float32 (the GRU's input)."""
        return self.scaler.transform(frames).astype(np.float32)

    # -- whole clips -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, frames: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, classes) of N clips given as un-normalised log-mel frame arrays."""
        out = []
        for start in range(0, len(frames), batch_size):
            x, lengths = pad_scaled(frames[start:start + batch_size], self.scaler)
            out.append(self.model(x, lengths).softmax(-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def stream(self) -> ListenStream:
        """A chunk-by-chunk classifier that carries the GRU state across frames."""
        return ListenStream(self)

    # -- files -----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the model folder (weights + config + class names + feature settings + normalisation)."""
        folder = Path(folder)
        save_model(self.model, folder)
        atomic.write_json(folder / LISTENER_FILE, {
            "format": FORMAT, "classes": self.classes, "features": self.features.to_dict(),
            "normalization": {"kind": "global per-mel-band standardisation (training frames)",
                              **self.scaler.to_dict()},
            "info": self.info,
        })
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Listener:
        """Read a model folder written by :meth:`save` (FileNotFoundError / ValueError naming it otherwise)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--model {str(folder)!r}: no such folder")
        meta_path = folder / LISTENER_FILE
        if not meta_path.is_file():
            raise ValueError(f"--model {str(folder)!r} holds no {LISTENER_FILE}: not a model folder written by "
                             "`fastgru listen` (it is the model/ folder inside a run's --out)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        model = load_model(folder)
        if not isinstance(model, SequenceModel):
            raise ValueError(f"{folder}: the saved model is not a fastgru SequenceModel")
        return cls(model, list(meta["classes"]), LogMelSettings.from_dict(meta["features"]),
                   Scaler.from_dict(meta["normalization"]), meta.get("info", {}))


class ListenStream:
    """Feed audio (mono, at the model's rate) chunk by chunk; read the class probabilities at any time.

        stream = listener.stream()
        for chunk in chunks:
            probs = stream.push(chunk)      # None until the first frame is complete
        stream.reset()                      # the next push starts a new utterance
    """

    def __init__(self, listener: Listener) -> None:
        cfg = listener.model.config
        if cfg.cell != "gru" or cfg.bidirectional or cfg.per_step:
            raise ValueError(f"streaming needs a unidirectional fastgru GRU classifier; this model is cell "
                             f"{cfg.cell!r}{', bidirectional' if cfg.bidirectional else ''}")
        self.listener = listener
        self.features = LogMelStream(listener.features)
        self._gru = Stream(listener.model.rnn)
        self.frames = 0

    @property
    def state(self) -> torch.Tensor | None:
        """The GRU state (num_layers, 1, hidden) after the frames so far; None before the first."""
        return self._gru.state

    def push(self, chunk: np.ndarray) -> np.ndarray | None:
        """Append samples; feed the frames they complete to the GRU; return the current probabilities."""
        frames = self.features.push(chunk)
        if len(frames):
            x = torch.from_numpy(self.listener.normalize(frames))
            for t in range(x.shape[0]):
                self._gru(x[t:t + 1])
            self.frames += len(frames)
        return self.probabilities()

    @torch.no_grad()
    def probabilities(self) -> np.ndarray | None:
        """softmax(head(top-layer state)): the same read-out the full-sequence model uses."""
        if self._gru.state is None:
            return None
        model = self.listener.model
        return model.head(model.head_dropout(self._gru.state[-1])).softmax(-1)[0].numpy()

    def reset(self) -> None:
        self.features.reset()
        self._gru.reset()
        self.frames = 0
