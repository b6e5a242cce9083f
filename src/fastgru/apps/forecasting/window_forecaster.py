"""A plain window -> horizon GRU forecaster (used by `detect` for its one-step-ahead residuals).

The network reads each window relative to its last value and predicts each future value as a change from
that last value (in standardised units), so a trending series never shows it a level outside the range
it was trained on; ``inputs="level"`` feeds the standardised values themselves instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fastgru.apps.data.windows import Scaler, make_windows
from fastgru.train import SequenceData

INPUT_MODES = ("relative", "level")


def model_inputs(scaled: np.ndarray, starts: np.ndarray, window: int, inputs: str) -> np.ndarray:
    """The network's input windows (N, window, F): standardised values, minus each window's last value
    when `inputs` is "relative" (so a level never seen in training, as in a trending series, looks
    familiar), as they are when "level"."""
    idx = np.asarray(starts)[:, None] + np.arange(-window, 0)[None, :]
    x = scaled[idx]
    if inputs == "relative":
        x = x - x[:, -1:, :]
    return x.astype(np.float32)


class Forecaster:
    """A trained forecaster: model + scaler + window settings; `predict(values, t)` forecasts from origin t."""

    def __init__(self, model: torch.nn.Module, scaler: Scaler, window: int, horizon: int, target_cols: list[int],
                 inputs: str = "relative"):
        self.model, self.scaler, self.window, self.horizon = model, scaler, window, horizon
        self.target_cols, self.inputs = target_cols, inputs

    def predict(self, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Forecasts (N, horizon, K) in the series' units for origins `starts` (inputs values[t-window:t])."""
        scaled = self.scaler.transform(values)
        out = []
        for chunk in np.array_split(np.asarray(starts), max(1, math.ceil(len(starts) / 512))):
            if len(chunk) == 0:
                continue
            x = torch.from_numpy(model_inputs(scaled, chunk, self.window, self.inputs))
            delta = self.model.predict(x).view(len(chunk), self.horizon, len(self.target_cols)).double().numpy()
            last = scaled[chunk - 1][:, self.target_cols]
            out.append(self.scaler.inverse(last[:, None, :] + delta, self.target_cols))
        return np.concatenate(out) if out else np.zeros((0, self.horizon, len(self.target_cols)))


def training_windows(scaled: np.ndarray, starts: np.ndarray, window: int, horizon: int,
                      target_cols: list[int], inputs: str = "relative") -> SequenceData:
    """(inputs, targets) of the network: targets are the future values minus the last observed one."""
    _, y = make_windows(scaled, starts, window, horizon, target_cols)
    last = scaled[starts - 1][:, target_cols]
    delta = y - last[:, None, :]
    return SequenceData(torch.from_numpy(model_inputs(scaled, starts, window, inputs)),
                        torch.from_numpy(delta.reshape(len(starts), -1).astype(np.float32)))



