"""torch.autograd.gradcheck (float64) of the hand-written BPTT, both variants, h0 and lengths."""

import pytest
import torch
from conftest import CORE_BACKENDS
from helpers import rel_err

from fastgru import functional, reference


def _weights(I, H, layers, dirs, bias=True):
    ws = []
    for layer in range(layers):
        fan_in = I if layer == 0 else H * dirs
        for _ in range(dirs):
            group = [torch.randn(3 * H, fan_in, dtype=torch.float64) * 0.5,
                     torch.randn(3 * H, H, dtype=torch.float64) * 0.5]
            group += [torch.randn(3 * H, dtype=torch.float64) * 0.5 for _ in range(2)] if bias else [None, None]
            ws.append(tuple(None if w is None else w.requires_grad_() for w in group))
    return ws


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_layer_gradcheck(backend, reset_after, reverse, use_lengths):
    T, B, I, H = 5, 3, 4, 3
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    w = _weights(I, H, 1, 1)[0]
    lengths = torch.tensor([5, 2, 4]) if use_lengths else None

    def f(*args):
        return functional.gru_layer(*args, reset_after=reset_after, reverse=reverse, lengths=lengths, backend=backend)

    assert torch.autograd.gradcheck(f, (x, h0, *w))


@pytest.mark.parametrize("reset_after", [True, False])
def test_stacked_bidirectional_gradcheck_no_bias(reset_after):
    T, B, I, H = 4, 2, 3, 2
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, B, H, dtype=torch.float64, requires_grad=True)
    ws = _weights(I, H, 2, 2, bias=False)
    flat = [w for g in ws for w in g if w is not None]
    lengths = torch.tensor([4, 1])

    def f(x, h0, *flat):
        groups = [(flat[2 * k], flat[2 * k + 1], None, None) for k in range(4)]
        return functional.gru(x, h0, groups, num_layers=2, bidirectional=True, reset_after=reset_after,
                              lengths=lengths)

    assert torch.autograd.gradcheck(f, (x, h0, *flat))


@pytest.mark.parametrize("backend", CORE_BACKENDS)
def test_reset_before_matches_reference_fp32_with_grads(backend):
    """reset_after=False has no torch.nn.GRU twin: compare with the float64 reference's autograd."""
    import fastgru

    T, B, I, H = 6, 3, 4, 5
    m = fastgru.nn.GRU(I, H, num_layers=2, bidirectional=True, reset_after=False, backend=backend)
    x = torch.randn(T, B, I, requires_grad=True)
    lengths = torch.tensor([6, 3, 1])
    y, h = m(x, lengths=lengths)
    w_y, w_h = torch.randn_like(y), torch.randn_like(h)
    ((y * w_y).sum() + (h * w_h).sum()).backward()

    x64 = x.detach().double().requires_grad_()
    params64 = {n: p.detach().double().requires_grad_() for n, p in m.named_parameters()}
    groups = [tuple(params64[n] for n in names.split(",")) for names in functional.weight_names(2, True)]
    y64, h64 = reference.gru(x64, None, groups, num_layers=2, bidirectional=True, reset_after=False, lengths=lengths)
    ((y64 * w_y.double()).sum() + (h64 * w_h.double()).sum()).backward()
    assert rel_err(y, y64) < 1e-5 and rel_err(h, h64) < 1e-5
    assert rel_err(x.grad, x64.grad) < 1e-5
    for n, p in m.named_parameters():
        assert rel_err(p.grad, params64[n].grad) < 1e-5, n
