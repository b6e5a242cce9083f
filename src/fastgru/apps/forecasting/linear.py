"""The linear base: ridge regression from the model's inputs to its targets, solved in closed form.

Why: on short series (a few hundred training windows) the GRU stops early after a few dozen optimiser
steps, and its residual barely moves the base. A linear autoregression (the window and the decoder
features -> the next H values) is the classical answer on such data (sunspots: an AR model), and
least squares finds it exactly from little data. Offered as one more base candidate: when it has the
lowest validation MAE the GRU starts from it and learns only what it misses (the linear component of
LSTNet, Lai et al. 2018, fitted up front instead of by gradient descent).

Inputs: every feature of a row of :func:`fastgru.apps.forecasting.features.pack` but the base: the
patched window (targets relative to their last value, other columns, calendar) and the decoder
features of every step (known-future columns, calendar, the seasonal-naive and smoothed forecasts).
Targets: the standardised future values relative to the last observed one, all H*K of them.

Fit: columns centred with the training windows' means (unpenalised intercept), then for each strength
lambda = c * trace(X'X) / D with c in STRENGTHS the ridge solution
``coef = (X'X + lambda I)^-1 X'Y`` (one eigendecomposition serves all c). Per target column, the c with
the lowest MAE on the validation windows is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRENGTHS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class LinearBase:
    """A fitted ridge map: ``predict(x) = (x - x_mean) @ coef + y_mean`` from D features to H*K targets."""

    x_mean: np.ndarray  # (D,)
    y_mean: np.ndarray  # (H*K,)
    coef: np.ndarray  # (D, H*K)
    strengths: list[float]  # per target column: the chosen c

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, H*K) targets (relative, standardised)."""
        return (np.asarray(x, dtype=np.float64) - self.x_mean) @ self.coef + self.y_mean


def fit_linear(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
               targets: int) -> LinearBase:
    """Ridge from (N, D) features to (N, H*K) targets (step-major: column k*K + j is step k of target j);
    the strength of each target's columns chosen by validation MAE (see the module doc)."""
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("the linear base needs at least 2 training windows")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    s, v = np.linalg.eigh(gram)
    s = np.clip(s, 0.0, None)
    proj = v.T @ (xc.T @ yc)  # (D, H*K)
    scale = max(float(np.trace(gram)) / max(1, x.shape[1]), 1e-12)
    xv = np.asarray(x_val, dtype=np.float64) - x_mean
    yv = np.asarray(y_val, dtype=np.float64)
    coef = np.zeros_like(proj)
    chosen = [STRENGTHS[0]] * targets
    cols = np.arange(y.shape[1]).reshape(-1, targets)  # (H, K)
    best_err = np.full(targets, np.inf)
    for c in STRENGTHS:
        w = v @ (proj / (s + c * scale)[:, None])
        err = np.abs(xv @ w + y_mean - yv)
        for j in range(targets):
            e = float(np.nanmean(err[:, cols[:, j]]))
            if e < best_err[j]:
                best_err[j] = e
                coef[:, cols[:, j]] = w[:, cols[:, j]]
                chosen[j] = c
    return LinearBase(x_mean, y_mean, coef, chosen)
