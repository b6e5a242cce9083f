"""Smoothed baselines: simple exponential smoothing and Holt's damped trend, fitted on the training part.

Why: on noisy series without a strong season (inflation, river flow) the last observed value is a poor
estimate of the level, and the seasonal naive forecasts copy that noise into every step. Exponential
smoothing averages it away; the damped trend adds a slope that fades out. Both are offered to the model's
decoder next to the seasonal naive forecasts, and either may be the base the model starts from.

Recursions (additive errors, Hyndman & Athanasopoulos, *Forecasting: principles and practice*, ch. 8),
for the observations y_0 .. y_{n-1}, started at l = y_0, b = 0:

    l_t = alpha * y_t + (1 - alpha) * (l_{t-1} + phi * b_{t-1})
    b_t = beta * (l_t - l_{t-1}) + (1 - beta) * phi * b_{t-1}

The forecast of step k = 0..H-1 from origin t (the first forecast step, so the observations used are
y_0 .. y_{t-1}) is

    yhat_{t+k} = l_{t-1} + (phi + phi^2 + ... + phi^(k+1)) * b_{t-1}.

Simple exponential smoothing ("ses") is beta = 0 (b stays 0): a flat forecast at the smoothed level.

Fitting: the parameters minimise the mean squared one-step-ahead error over the training part (the least
squares estimate of additive-error ETS), searched on a fixed grid (alpha on a log scale from 0.01 to 1;
damped trend: beta in 0.01 .. 0.3 times alpha, phi in 0.8 .. 0.98), all combinations at once in numpy.
The recursions are affine-equivariant, so fitting on standardised values gives the same parameters and
forecasts in the same units as the raw series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("ses", "holt")
NAMES = {"ses": "exponential smoothing", "holt": "damped trend (Holt)"}
ALPHAS = np.geomspace(0.01, 1.0, 24)
BETA_FRACTIONS = (0.01, 0.05, 0.1, 0.3)  # beta as a fraction of alpha (beta <= alpha keeps the trend smoother)
PHIS = (0.8, 0.9, 0.95, 0.98)


@dataclass(frozen=True)
class Smoother:
    """A fitted smoothed baseline: its kind ("ses" or "holt") and parameters (see the module doc)."""

    kind: str
    alpha: float
    beta: float = 0.0
    phi: float = 1.0

    @property
    def name(self) -> str:
        return NAMES[self.kind]

    def states(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(level, trend), each (n,): the states after each observation of the 1-D series `y`."""
        level, trend = _run(np.asarray(y, dtype=np.float64), np.array([self.alpha]), np.array([self.beta]),
                            np.array([self.phi]))
        return level[:, 0], trend[:, 0]

    def forecast(self, y: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        """(N, horizon) forecasts of the 1-D series `y` from each origin t in `starts` (uses y[:t] only)."""
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) and starts.min() < 1:
            raise ValueError("an origin needs at least one observation before it")
        level, trend = self.states(np.asarray(y, dtype=np.float64)[: int(starts.max()) if len(starts) else 0])
        damp = np.cumsum(self.phi ** np.arange(1, horizon + 1)) if self.kind == "holt" else np.zeros(horizon)
        return level[starts - 1][:, None] + damp[None, :] * trend[starts - 1][:, None]


def _run(y: np.ndarray, alpha: np.ndarray, beta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The recursions for P parameter sets at once: (level, trend), each (n, P)."""
    n, p = len(y), len(alpha)
    level, trend = np.empty((n, p)), np.empty((n, p))
    if n == 0:
        return level, trend
    l, b = np.full(p, y[0]), np.zeros(p)
    level[0], trend[0] = l, b
    for t in range(1, n):
        pred = l + phi * b
        new_l = alpha * y[t] + (1 - alpha) * pred
        b = beta * (new_l - l) + (1 - beta) * phi * b
        l = new_l
        level[t], trend[t] = l, b
    return level, trend


def _grid(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind == "ses":
        return ALPHAS, np.zeros_like(ALPHAS), np.ones_like(ALPHAS)
    a, f, ph = np.meshgrid(ALPHAS, BETA_FRACTIONS, PHIS, indexing="ij")
    return a.ravel(), (a * f).ravel(), ph.ravel()


def fit_smoother(y_train: np.ndarray, kind: str) -> Smoother:
    """The `kind` smoother whose parameters give the least mean squared one-step error on `y_train`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    y = np.asarray(y_train, dtype=np.float64)
    if len(y) < 3:
        raise ValueError("smoothing needs at least 3 training steps")
    alpha, beta, phi = _grid(kind)
    level, trend = _run(y, alpha, beta, phi)
    one_step = level[:-1] + phi * trend[:-1]  # forecast of y[1:]
    sse = ((y[1:, None] - one_step) ** 2).mean(axis=0)
    i = int(np.argmin(sse))
    return Smoother(kind, float(alpha[i]), float(beta[i]), float(phi[i]))


def fit_smoothers(y_train: np.ndarray) -> tuple[Smoother, ...]:
    """One fitted smoother of every kind (KINDS order) for the 1-D training part `y_train`."""
    return tuple(fit_smoother(y_train, k) for k in KINDS)
