"""Double backward: gradients taken with create_graph=True can be differentiated again (float64).

gradgradcheck compares the second derivatives with finite differences of the first; the gradient-penalty
check compares a whole penalty's gradients with torch.nn.GRU's on the same weights.
"""

import pytest
import torch
from conftest import CORE_BACKENDS

import fastgru
from fastgru import functional


def _flat_weights(I, H, layers, dirs):
    ws = []
    for layer in range(layers):
        fan_in = I if layer == 0 else H * dirs
        for _ in range(dirs):
            shapes = [(3 * H, fan_in), (3 * H, H), (3 * H,), (3 * H,)]
            ws += [(torch.randn(s, dtype=torch.float64) * 0.5).requires_grad_() for s in shapes]
    return ws


@pytest.mark.parametrize(
    ("layers", "bidirectional", "lengths", "backend"),
    [
        (1, False, None, "cpu"),
        (1, False, None, "torch"),
        (2, True, None, "cpu"),
        (1, False, [3, 1], "cpu"),
        (2, True, [3, 2], "cpu"),
    ],
)
@pytest.mark.parametrize("reset_after", [True, False])
def test_gradgradcheck(layers, bidirectional, lengths, backend, reset_after):
    T, B, I, H = 3, 2, 2, 2
    dirs = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(layers * dirs, B, H, dtype=torch.float64, requires_grad=True)
    flat = _flat_weights(I, H, layers, dirs)
    lengths = None if lengths is None else torch.tensor(lengths)

    def f(x, h0, *flat):
        groups = [tuple(flat[4 * k : 4 * k + 4]) for k in range(layers * dirs)]
        return functional.gru(x, h0, groups, num_layers=layers, bidirectional=bidirectional,
                              reset_after=reset_after, lengths=lengths, backend=backend)

    assert torch.autograd.gradgradcheck(f, (x, h0, *flat), fast_mode=True)


def test_gradgradcheck_layer_norm_gru():
    model = fastgru.nn.LayerNormGRU(2, 2, dtype=torch.float64)
    with torch.no_grad():
        for name, p in model.named_parameters():  # gains near 1, weights and shifts random
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.startswith("ln_") else 0.0))
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    names, params = zip(*model.named_parameters())

    def f(x, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x,))[0]

    assert torch.autograd.gradgradcheck(f, (x, *params), fast_mode=True)


def _penalty_grads(model, x):
    """Gradients of a gradient penalty: || d loss / d (x, parameters) ||^2 differentiated once more."""
    y, h = model(x)
    loss = (y * y).sum() + (h * torch.linspace(-1, 1, h.shape[-1], dtype=h.dtype)).sum()
    first = torch.autograd.grad(loss, [x, *model.parameters()], create_graph=True)
    penalty = sum((g * g).sum() for g in first)
    return torch.autograd.grad(penalty, [x, *model.parameters()])


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_gradient_penalty_matches_torch(layers, bidirectional, backend):
    ours = fastgru.nn.GRU(3, 4, num_layers=layers, bidirectional=bidirectional, dtype=torch.float64,
                          backend=backend)
    theirs = torch.nn.GRU(3, 4, num_layers=layers, bidirectional=bidirectional, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    got, want = _penalty_grads(ours, x), _penalty_grads(theirs, x)
    err = max((a - b).abs().max().item() for a, b in zip(got, want))
    assert err < 1e-6, err
    assert all(g.abs().max() > 0 for g in got)  # every gradient is really there


def test_first_order_backward_keeps_the_hand_written_path():
    """Without create_graph the gradient comes from the BPTT op, not the recomputation (same numbers)."""
    model = fastgru.nn.GRU(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    y, _ = model(x)
    plain = torch.autograd.grad(y.sum(), x)[0]
    y, _ = model(x)
    graphed = torch.autograd.grad(y.sum(), x, create_graph=True)[0]
    assert plain.grad_fn is None and graphed.grad_fn is not None
    assert (plain - graphed).abs().max().item() < 1e-12
