"""The in-place row layer norm of LayerNormGRU's input side (fused C++ and torch fallback) against
torch.nn.functional.layer_norm and its autograd backward."""

import pytest
import torch
import torch.nn.functional as F

from fastgru.backends import LN_EPS, row_norm


@pytest.fixture(params=["ext", "torch"])
def impl(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setattr(row_norm, "_ext", lambda t: None)
    return request.param


@pytest.mark.parametrize("with_bias", [True, False])
def test_normalize_matches_layer_norm(impl, with_bias):
    rows, n = 37, 24
    v = torch.randn(rows, n, dtype=torch.float64) * 3 + 1
    gain = torch.rand(n, dtype=torch.float64) + 0.5
    bias = torch.randn(n, dtype=torch.float64) if with_bias else None
    expected = F.layer_norm(v, (n,), gain, bias, LN_EPS)
    out = v.clone()
    rstd = row_norm.normalize_(out, gain, bias, keep_xhat=False)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    xhat = v.clone()
    rstd2 = row_norm.normalize_(xhat, gain, bias, keep_xhat=True)
    torch.testing.assert_close(xhat, F.layer_norm(v, (n,), None, None, LN_EPS), rtol=1e-12, atol=1e-12)
    expected_rstd = torch.rsqrt(v.var(1, correction=0) + LN_EPS)
    torch.testing.assert_close(rstd, expected_rstd, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rstd2, expected_rstd, rtol=1e-12, atol=1e-12)


def test_backward_matches_autograd(impl):
    rows, n = 29, 18
    v = (torch.randn(rows, n, dtype=torch.float64) * 2).requires_grad_()
    gain = (torch.rand(n, dtype=torch.float64) + 0.5).requires_grad_()
    bias = torch.randn(n, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(rows, n, dtype=torch.float64)
    F.layer_norm(v, (n,), gain, bias, LN_EPS).backward(dy)
    xhat = v.detach().clone()
    rstd = row_norm.normalize_(xhat, gain.detach(), None, keep_xhat=True)
    d = dy.clone()
    dgain, dbias = row_norm.normalize_backward_(d, xhat, rstd, gain.detach())
    torch.testing.assert_close(d, v.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dgain, gain.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dbias, bias.grad, rtol=1e-10, atol=1e-12)
