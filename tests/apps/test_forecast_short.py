"""`forecast` on short series: the smoothed baselines, the linear (ridge) base and the ensemble rule.

Expected numbers are recomputed independently: the smoothing recursions by a plain Python loop, the ridge
map by scikit-learn, on fresh random series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fastgru.apps.data.tabular import DataFileError
from fastgru.apps.forecast import ENSEMBLE_WINDOWS, MAX_MEMBERS, ensemble_size, forecast
from fastgru.apps.forecasting.features import default_layout, feature_sizes, pack, prepare, unscale
from fastgru.apps.forecasting.linear import STRENGTHS, fit_linear
from fastgru.apps.forecasting.model import ResidualEnsemble, SeasonalResidualGRU
from fastgru.apps.forecasting.smoothing import Smoother, fit_smoother


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))


def _holt_by_hand(y: list[float], alpha: float, beta: float, phi: float, t: int, horizon: int) -> list[float]:
    """Damped-trend forecasts of y[t..t+H-1] from y[:t], one observation at a time (l0 = y0, b0 = 0)."""
    level, trend = y[0], 0.0
    for obs in y[1:t]:
        new_level = alpha * obs + (1 - alpha) * (level + phi * trend)
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = new_level
    out, damp = [], 0.0
    for k in range(horizon):
        damp += phi ** (k + 1)
        out.append(level + damp * trend)
    return out


# -- smoothed baselines ---------------------------------------------------------------------------------------
def test_smoothers_match_a_hand_computation():
    rng = _rng()
    y = np.cumsum(rng.normal(size=80)) + rng.normal(size=80) + 20
    H = int(rng.integers(2, 9))
    starts = np.sort(rng.choice(np.arange(1, 81), size=6, replace=False))
    alpha, beta, phi = rng.uniform(0.05, 1), rng.uniform(0.01, 0.5), rng.uniform(0.8, 1)
    holt = Smoother("holt", alpha, beta, phi).forecast(y, starts, H)
    ses = Smoother("ses", alpha).forecast(y, starts, H)
    for i, t in enumerate(starts):
        np.testing.assert_allclose(holt[i], _holt_by_hand(list(y), alpha, beta, phi, int(t), H), rtol=1e-12)
        np.testing.assert_allclose(ses[i], _holt_by_hand(list(y), alpha, 0.0, 1.0, int(t), H), rtol=1e-12)
    np.testing.assert_allclose(Smoother("ses", 1.0).forecast(y, starts, H), np.repeat(y[starts - 1, None], H, 1))


def test_fitted_smoothing_follows_the_noise_level():
    """A local level plus noise (the model SES is optimal for): the fitted alpha is well below 1 and the
    forecasts beat naive out of sample; on a pure random walk the fitted alpha is near 1."""
    rng = _rng()
    n = 600
    level = np.cumsum(0.3 * rng.normal(size=n))
    y = level + 2.0 * rng.normal(size=n)
    ses = fit_smoother(y[:400], "ses")
    assert ses.alpha < 0.3
    starts = np.arange(400, n - 5)
    truth = y[starts[:, None] + np.arange(5)]
    assert np.abs(ses.forecast(y, starts, 5) - truth).mean() < 0.9 * np.abs(y[starts - 1, None] - truth).mean()
    assert fit_smoother(np.cumsum(rng.normal(size=400)), "ses").alpha > 0.7
    holt = fit_smoother(y[:400], "holt")
    assert 0 < holt.beta <= holt.alpha and 0.8 <= holt.phi < 1
    with pytest.raises(ValueError, match="kind"):
        fit_smoother(y, "arima")


# -- the linear base ----------------------------------------------------------------------------------------
def test_linear_base_is_the_ridge_solution():
    from sklearn.linear_model import Ridge

    rng = _rng()
    n, d, H, K = 300, 12, 4, 2
    x = rng.normal(size=(n, d))
    true = rng.normal(size=(d, H * K))
    y = x @ true + 0.5 + 0.1 * rng.normal(size=(n, H * K))
    lin = fit_linear(x[:200], y[:200], x[200:], y[200:], K)
    assert len(lin.strengths) == K and set(lin.strengths) <= set(STRENGTHS)
    xc = x[:200] - x[:200].mean(axis=0)
    scale = np.trace(xc.T @ xc) / d
    for j, c in enumerate(lin.strengths):
        cols = np.arange(H * K).reshape(H, K)[:, j]
        oracle = Ridge(alpha=c * scale).fit(x[:200], y[:200, cols])
        np.testing.assert_allclose(lin.predict(x[200:])[:, cols], oracle.predict(x[200:]), rtol=1e-7, atol=1e-8)
    assert np.abs(lin.predict(x[200:]) - y[200:]).mean() < 0.2  # a clean linear map is recovered


def test_untrained_model_equals_the_linear_base():
    rng = _rng()
    n, H, F = 500, int(rng.integers(3, 9)), 2
    values = rng.normal(size=(n, F)).cumsum(axis=0) + 10
    cal = np.zeros((n + H, 0))
    layout = default_layout((7,), H)
    arr = prepare(values, cal, 350, [0, 1])
    starts = np.arange(layout.window, n - H)
    x0, last, y = pack(arr, starts, layout, [0, 1], [], [1, 1])
    nb = H * 2
    lin = fit_linear(x0[:250, :-nb], y[:250], x0[250:300, :-nb], y[250:300], 2)
    x, last, _ = pack(arr, starts, layout, [0, 1], [], ["linear", 7], lin)
    pf, sf = feature_sizes(F, 0, 0, 2, layout)
    model = SeasonalResidualGRU(layout.n_patches, pf, H, sf, 2, hidden_size=8)
    pred = unscale(arr, model.predict(torch.from_numpy(x)).double().numpy(), last, [0, 1], H)
    lin_pred = unscale(arr, lin.predict(x0[:, :-nb]), last, [0, 1], H)
    np.testing.assert_allclose(pred[:, :, 0], lin_pred[:, :, 0], rtol=1e-4, atol=1e-3)
    k = np.arange(H)
    np.testing.assert_allclose(pred[:, :, 1], values[starts[:, None] + k - 7 * (k // 7 + 1), 1], rtol=1e-4, atol=1e-3)


# -- the ensemble -------------------------------------------------------------------------------------------
def test_ensemble_rule_and_mean(tmp_path):
    with pytest.raises(DataFileError, match="ensemble must be >= 1"):
        forecast("nile", ensemble=0, out_dir=tmp_path / "bad")
    assert ensemble_size(1) == MAX_MEMBERS
    assert ensemble_size(ENSEMBLE_WINDOWS // MAX_MEMBERS) == MAX_MEMBERS
    assert ensemble_size(ENSEMBLE_WINDOWS // 2) == 2
    assert ensemble_size(ENSEMBLE_WINDOWS // 2 + 1) == 1
    assert ensemble_size(100_000) == 1
    members = [SeasonalResidualGRU(3, 4, 5, 2, 2, hidden_size=8) for _ in range(3)]
    for m in members:
        torch.nn.init.normal_(m.out.weight)
        torch.nn.init.normal_(m.out.bias)
    ens = ResidualEnsemble(members)
    x = torch.randn(7, 3 * 4 + 5 * 2 + 5 * 2)
    mean = torch.stack([m.predict(x) for m in members]).mean(0)
    np.testing.assert_allclose(ens.predict(x), mean, rtol=1e-6)
    base = x[:, -10:].reshape(7, 5, 2)
    ens.zero_residual([1])  # target 1 becomes its base exactly, target 0 keeps the residual
    out = ens.predict(x).reshape(7, 5, 2)
    np.testing.assert_allclose(out[:, :, 1], base[:, :, 1], rtol=1e-6)
    np.testing.assert_allclose(out[:, :, 0], mean.reshape(7, 5, 2)[:, :, 0], rtol=1e-6)
    assert not torch.allclose(out[:, :, 0], base[:, :, 0])
    ens.zero_residual()
    np.testing.assert_allclose(ens.predict(x), x[:, -10:], rtol=1e-6)


def test_short_autoregressive_series_end_to_end(tmp_path):
    """A short AR(2) series with a 10-step cycle: the linear base wins the validation, several models are
    averaged, every baseline is reported and the GRU beats naive on the held-out tail."""
    rng = _rng()
    n = 260
    y = np.zeros(n)
    phi1, phi2 = 2 * 0.9 * np.cos(2 * np.pi / 10), -0.81
    for t in range(2, n):
        y[t] = phi1 * y[t - 1] + phi2 * y[t - 2] + rng.normal()
    path = tmp_path / "ar.csv"
    pd.DataFrame({"y": y + 50}).to_csv(path, index=False)
    r = forecast(path, season="10", horizon=6, epochs=3, hidden_size=8, out_dir=tmp_path / "out", peer=False,
                 seed=int(torch.randint(0, 1000, (1,))))
    assert r["ensemble"] == MAX_MEMBERS  # about 160 training windows
    assert r["base"] == ["linear (ridge)"]
    for name in ("exponential smoothing", "damped trend (Holt)", "linear (ridge)", "seasonal naive (m=10)"):
        assert name in r["metrics"]
    m = r["metrics"]
    assert m[r["model"]]["mae"][0] < 0.8 * m["naive"]["mae"][0]
    fc = pd.read_csv(tmp_path / "out" / "forecast.csv")
    test = fc[fc.part == "test"]
    for col, name in (("exp_smoothing", "exponential smoothing"), ("linear", "linear (ridge)")):
        assert m[name]["mae"][0] == pytest.approx((test[col] - test.truth).abs().mean(), rel=1e-9)
    assert (tmp_path / "out" / "members" / "1" / "history.json").exists()
    saved = np.load(tmp_path / "out" / "model" / "linear.npz")
    assert saved["coef"].shape == (len(saved["x_mean"]), 6)
