"""The classical peer: MSTL decomposition + damped-trend ETS (statsmodels), fitted on the training part.

Why MSTL + ETS: the series this tool is for have several seasons (a day and a week); MSTL (Bandara,
Hyndman & Bergmeir 2021) removes each with STL, and an exponential-smoothing model with a damped trend
forecasts what is left -- the combination statsforecast's MSTL uses by default. Seasonal ETS alone needs
one initial state per step of the season (336 for a half-hourly week), too slow to fit and unstable.

Fitting uses only the training part:

1. ``statsmodels.tsa.seasonal.MSTL`` on the training part with every season of at most half its length;
   each seasonal component continues past the training part as its last cycle, repeated;
2. ``ETSModel(error="add", trend="add", damped_trend=True)`` fitted on the seasonally adjusted training
   part; its smoothing parameters are then run (not refitted) over the whole adjusted series, so each
   origin's forecast uses the observations before it, as the GRU's does;
3. the forecast of step k from origin t: level_{t-1} + (phi + ... + phi^(k+1)) trend_{t-1} + seasonal(t+k).

Needs the optional extra ``pip install 'fastgru[classical]'`` (statsmodels).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

NAME = "MSTL+ETS (statsmodels)"


def available() -> bool:
    return importlib.util.find_spec("statsmodels") is not None


def seasonal_profile(y_train: np.ndarray, periods: tuple[int, ...], n: int) -> np.ndarray:
    """(n,) sum of the MSTL seasonal components: fitted in the training part, last cycle repeated after."""
    from statsmodels.tsa.seasonal import MSTL

    n_train = len(y_train)
    ps = [p for p in periods if 2 <= p and 2 * p <= n_train]
    if not ps:
        return np.zeros(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MSTL(y_train, periods=ps).fit() if len(ps) > 1 else MSTL(y_train, periods=ps[0]).fit()
    seas = np.asarray(res.seasonal, dtype=np.float64).reshape(n_train, -1)
    out = np.zeros(n)
    out[:n_train] = seas.sum(axis=1)
    for j, p in enumerate(ps):
        cycle = seas[n_train - p :, j]
        t = np.arange(n_train, n)
        out[n_train:] += cycle[(t - n_train) % p]
    return out


def mstl_ets_forecasts(y: np.ndarray, train_end: int, starts: np.ndarray, horizon: int,
                       periods: tuple[int, ...]) -> np.ndarray:
    """(N, horizon) forecasts of the 1-D series `y` from each origin in `starts` (see the module doc)."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    extra = int(np.max(starts)) + horizon - n if len(starts) else 0
    seasonal = seasonal_profile(y[:train_end], periods, n + max(extra, 0))
    adjusted = y - seasonal[:n]
    spec = dict(error="add", trend="add", damped_trend=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ETSModel(adjusted[:train_end], **spec).fit(disp=False)
        run = ETSModel(adjusted, **spec).smooth(fit.params)
    states = np.asarray(run.states, dtype=np.float64)  # (n, 2): level, trend after each observation
    phi = float(fit.params[list(fit.param_names).index("damping_trend")])
    damp = np.cumsum(phi ** np.arange(1, horizon + 1))
    starts = np.asarray(starts, dtype=np.int64)
    level, trend = states[starts - 1, 0], states[starts - 1, 1]
    idx = starts[:, None] + np.arange(horizon)[None, :]
    return level[:, None] + damp[None, :] * trend[:, None] + seasonal[idx]
