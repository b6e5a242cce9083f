"""LayerNormGRU against the float64 reference and gradcheck, both reset variants."""

import pytest
import torch
from conftest import CORE_BACKENDS
from helpers import rel_err

import fastgru
from fastgru import functional, reference


def _reference(m, x, h0, lengths, params):
    dirs = 2 if m.bidirectional else 1
    layer_in, finals = x, []
    groups = [tuple(params[n] for n in names.split(",")) for names in functional.weight_names(m.num_layers,
                                                                                              m.bidirectional)]
    for layer in range(m.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            ln = tuple(params[n] for n in m._ln_names[k])
            y, h = reference.gru_layer(layer_in, h0[k], groups[k], m.reset_after, d == 1, lengths, layer_norm=ln)
            outs.append(y)
            finals.append(h)
        layer_in = torch.cat(outs, 2)
    return layer_in, torch.stack(finals)


# fp32 tolerance: the norms divide by the spread of only 3H (or H) values, which amplifies fp32 rounding
# over a plain GRU (H=8: worst 1.3e-5 over 120 seeds; H=5 reached 7.5e-5); float64 is exact to 1e-10.
TOL = {torch.float32: 5e-5, torch.float64: 1e-10}


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_with_gradients(backend, reset_after, dtype):
    T, B, I, H = 6, 3, 4, 8
    tol = TOL[dtype]
    m = fastgru.nn.LayerNormGRU(I, H, num_layers=2, bidirectional=True, reset_after=reset_after, backend=backend,
                                dtype=dtype)
    with torch.no_grad():  # gains away from 1 so they matter
        for a, b in m._ln_names:
            getattr(m, a).uniform_(0.5, 1.5)
            getattr(m, b).uniform_(0.5, 1.5)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(4, B, H, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    y, h = m(x, h0, lengths=lengths)
    x64, h064 = (t.detach().double().requires_grad_() for t in (x, h0))
    params64 = {n: p.detach().double().requires_grad_() for n, p in m.named_parameters()}
    y64, hn64 = _reference(m, x64, h064, lengths, params64)
    assert rel_err(y, y64) < tol and rel_err(h, hn64) < tol
    w_y, w_h = torch.randn_like(y), torch.randn_like(h)
    ((y * w_y).sum() + (h * w_h).sum()).backward()
    ((y64 * w_y.double()).sum() + (hn64 * w_h.double()).sum()).backward()
    assert rel_err(x.grad, x64.grad) < tol and rel_err(h0.grad, h064.grad) < tol
    for n, p in m.named_parameters():
        assert rel_err(p.grad, params64[n].grad) < tol, n


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
def test_large_batch_split_over_threads_matches_torch_loop(reset_after, bias):
    """At B * 3H large enough the fused kernel splits rows over threads and sums the gains' and biases'
    gradients per thread (the input norm runs inside its loops); the independent pure-torch loop must
    agree (float64), with and without biases."""
    T, B, I, H = 3, 64, 16, 256
    kw = dict(reset_after=reset_after, dtype=torch.float64, bias=bias)
    fused = fastgru.nn.LayerNormGRU(I, H, backend="cpu", **kw)
    loop = fastgru.nn.LayerNormGRU(I, H, backend="torch", **kw)
    with torch.no_grad():
        for p in fused.parameters():
            p.uniform_(0.5, 1.5) if p.dim() == 1 else p.normal_(0, H ** -0.5)
    loop.load_state_dict(fused.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    w = torch.randn(T, B, H, dtype=torch.float64)
    for m in (fused, loop):
        y, _ = m(x)
        (y * w).sum().backward()
    for (n, p), q in zip(fused.named_parameters(), loop.parameters()):
        assert rel_err(p.grad, q.grad) < 1e-10, n
    with torch.no_grad():  # inference: the kernel normalises without keeping anything
        assert rel_err(fused(x)[0], loop(x)[0]) < 1e-12


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_gradcheck(backend, reset_after):
    T, B, I, H = 4, 2, 3, 4
    d = dict(dtype=torch.float64, requires_grad=True)
    x, h0 = torch.randn(T, B, I, **d), torch.randn(B, H, **d)
    ws = [torch.randn(3 * H, I, **d), torch.randn(3 * H, H, **d), torch.randn(3 * H, **d), torch.randn(3 * H, **d)]
    gains = [torch.rand(3 * H, dtype=torch.float64).add(0.5).requires_grad_() for _ in range(2)]
    rec = torch.bernoulli(torch.full((B, H), 0.6, dtype=torch.float64)) / 0.6

    def f(x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh):
        return functional.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=reset_after, backend=backend,
                                    lengths=torch.tensor([4, 2]), rec_mask=rec, layer_norm=(g_ih, g_hh))

    assert torch.autograd.gradcheck(f, (x, h0, *ws, *gains))

    def g(x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh):  # no lengths or masks: the kernel's single-pass path
        return functional.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=reset_after, backend=backend,
                                    layer_norm=(g_ih, g_hh))

    assert torch.autograd.gradcheck(g, (x, h0, *ws, *gains))


def test_parameters_streaming_and_differs_from_plain():
    m = fastgru.nn.LayerNormGRU(3, 4, num_layers=2).eval()
    names = [n for n, _ in m.named_parameters()]
    assert "ln_weight_ih_l0" in names and "ln_weight_hh_l1" in names
    x = torch.randn(7, 2, 3)
    with torch.no_grad():
        y, h = m(x)
        stream = fastgru.nn.Stream(m)
        ys = torch.stack([stream(x[t]) for t in range(7)])
    assert rel_err(ys, y) < 1e-5 and rel_err(stream.state, h) < 1e-5
    plain = fastgru.nn.GRU(3, 4, num_layers=2).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("ln_")})
    assert rel_err(plain(x)[0], y) > 1e-3
