"""The peers `classify` reports beside its own model: 1-NN DTW and MiniRocket, from sktime.

Why sktime: it is a well-kept, widely used library that holds both standard baselines of the UCR/UEA
benchmarks — ``KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")`` (full-window DTW, the
archive's reference 1-NN DTW) and MiniRocket (Dempster et al. 2021; ``MiniRocket`` for one channel,
``MiniRocketMultivariate`` for several) followed by the ``RidgeClassifierCV`` the MiniRocket paper uses.
It installs next to fastgru's numpy and numba without changing them (``pip install fastgru[peers]``,
which pins sktime with the scikit-base it needs). aeon has the same baselines but its releases pin older
numpy/numba than fastgru runs with.

Both peers see exactly the series the GRU model is trained and scored on (the same train/test split),
as given in the file (no normalisation by fastgru, as the archive's published baselines). Series of
unequal lengths are resampled linearly to the longest length first, which both peers need here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

PEERS = ("1-NN DTW", "MiniRocket")
INSTALL_HINT = "pip install 'fastgru[peers]' (sktime and scikit-base)"


def missing_reason() -> str | None:
    """None when sktime can be imported, else a one-line note that says how to install the peers."""
    try:
        import sktime  # noqa: F401
        from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (e.g. scikit-base missing)
        return f"peers not run: sktime is not importable ({type(exc).__name__}: {exc}); install with {INSTALL_HINT}"
    return None


def to_panel(xs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """(N, C, length) float64 panel; series of another length are resampled linearly to `length`."""
    out = np.empty((len(xs), xs[0].shape[1], length))
    for i, x in enumerate(xs):
        if len(x) == length:
            out[i] = x.T
        else:
            src = np.linspace(0.0, 1.0, len(x)) if len(x) > 1 else np.zeros(1)
            dst = np.linspace(0.0, 1.0, length)
            out[i] = np.stack([np.interp(dst, src, x[:, c]) for c in range(x.shape[1])])
    return out


def _stretch(panel: np.ndarray, length: int) -> np.ndarray:
    return to_panel([p.T for p in panel], length)


def _dtw(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier

    return KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw").fit(train, y).predict(test)


def _minirocket(train: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sktime.transformations.panel.rocket import MiniRocket, MiniRocketMultivariate

    if train.shape[2] < 9:  # MiniRocket's kernels span 9 steps
        train, test = _stretch(train, 9), _stretch(test, 9)
    transform = MiniRocket(random_state=seed) if train.shape[1] == 1 else MiniRocketMultivariate(random_state=seed)
    features_train = transform.fit_transform(train)
    features_test = transform.transform(test)
    ridge = make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    return ridge.fit(features_train, y).predict(features_test)


def score_peers(train_x: Sequence[np.ndarray], train_y: np.ndarray, test_x: Sequence[np.ndarray],
                seed: int = 0, which: Sequence[str] = PEERS) -> dict[str, Any]:
    """Fit each peer on the training series and predict the test series.

    train_y: integer class indices. Returns ``{"predictions": {name: int array}, "seconds": {name: s},
    "note": str | None}``; when sktime is missing the predictions are empty and the note says how to
    install it.
    """
    reason = missing_reason()
    if reason is not None:
        return {"predictions": {}, "seconds": {}, "note": reason}
    length = max(len(x) for x in list(train_x) + list(test_x))
    equal = len({len(x) for x in list(train_x) + list(test_x)}) == 1
    train, test = to_panel(train_x, length), to_panel(test_x, length)
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in which:
            t0 = time.perf_counter()
            if name == "1-NN DTW":
                preds[name] = np.asarray(_dtw(train, train_y, test)).astype(np.int64)
            elif name == "MiniRocket":
                preds[name] = np.asarray(_minirocket(train, train_y, test, seed)).astype(np.int64)
            else:
                raise ValueError(f"unknown peer {name!r}; known: {PEERS}")
            seconds[name] = time.perf_counter() - t0
    note = None if equal else f"peers: series of unequal length resampled linearly to {length} steps"
    return {"predictions": preds, "seconds": seconds, "note": note}
