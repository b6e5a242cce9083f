"""fastgru.nn.GRU against torch.nn.GRU: outputs and every gradient, fp32, fresh weights every run."""

import pytest
import torch
from conftest import CORE_BACKENDS
from helpers import grads, rel_err, twin_grus
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastgru

TOL = 1e-5

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2),
    dict(num_layers=3),
    dict(num_layers=1, bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=3, bidirectional=True),
    dict(num_layers=2, batch_first=True),
    dict(num_layers=2, bias=False),
]


def _run_both(t, f, x, h0=None, **kw):
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    hs = [None, None] if h0 is None else [h0.clone().requires_grad_(), h0.clone().requires_grad_()]
    results = []
    for m, xi, hi in zip((t, f), xs, hs):
        y, h_n = m(xi, hi, **kw)
        # a loss that weighs every output and every final state differently
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward(retain_graph=True)
        (h_n * torch.linspace(0.5, 2, h_n.numel()).view_as(h_n)).sum().backward()
        extra = (hi,) if hi is not None else ()
        results.append((y.detach(), h_n.detach(), grads(m, xi, *extra)))
    return results


def _assert_same_gradients(t, f, xt, xf, outs_t, outs_f):
    """Backward of one loss weighing outputs and final states through both models; every gradient equal."""
    w = torch.randn_like(outs_t[0])
    for (y, h) in (outs_t, outs_f):
        ((y * w).sum() + (h * 1.5).sum()).backward()
    gt, gf = grads(t, xt), grads(f, xf)
    for name in gt:
        assert rel_err(gf[name], gt[name]) < TOL, name


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_torch(backend, config, with_h0):
    T, B, I, H = 7, 4, 5, 6
    t, f = twin_grus(I, H, backend=backend, **config)
    x = torch.randn(B, T, I) if config.get("batch_first") else torch.randn(T, B, I)
    dirs = 2 if config.get("bidirectional") else 1
    h0 = torch.randn(config["num_layers"] * dirs, B, H) if with_h0 else None
    (yt, ht, gt), (yf, hf, gf) = _run_both(t, f, x, h0)
    assert rel_err(yf, yt) < TOL
    assert rel_err(hf, ht) < TOL
    assert gt.keys() == gf.keys()
    for name in gt:
        assert rel_err(gf[name], gt[name]) < TOL, name


@pytest.mark.parametrize("backend", CORE_BACKENDS)
def test_unbatched_input(backend):
    t, f = twin_grus(3, 5, backend=backend, num_layers=2, bidirectional=True)
    x = torch.randn(6, 3)
    h0 = torch.randn(4, 5)
    (yt, ht, gt), (yf, hf, gf) = _run_both(t, f, x, h0)
    assert yf.shape == yt.shape == (6, 10) and hf.shape == (4, 5)
    assert rel_err(yf, yt) < TOL and rel_err(hf, ht) < TOL
    for name in gt:
        assert rel_err(gf[name], gt[name]) < TOL, name


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence(backend, enforce_sorted, bidirectional):
    T, B, I, H = 8, 5, 3, 4
    t, f = twin_grus(I, H, backend=backend, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([8, 6, 6, 3, 1]) if enforce_sorted else torch.tensor([3, 8, 1, 6, 5])
    x = torch.randn(T, B, I)
    h0 = torch.randn(4 if bidirectional else 2, B, H)
    w_out = torch.randn(T, B, H * (2 if bidirectional else 1))
    w_h = torch.randn_like(h0)
    outs = []
    for m in (t, f):
        xi = x.clone().requires_grad_()
        hi = h0.clone().requires_grad_()
        packed = pack_padded_sequence(xi, lengths, enforce_sorted=enforce_sorted)
        y, h_n = m(packed, hi)
        padded, out_len = pad_packed_sequence(y, total_length=T)
        assert torch.equal(out_len, lengths)
        ((padded * w_out).sum() + (h_n * w_h).sum()).backward()
        outs.append((y, padded.detach(), h_n.detach(), grads(m, xi, hi)))
    (pt, yt, ht, gt), (pf, yf, hf, gf) = outs
    assert torch.equal(pt.batch_sizes, pf.batch_sizes)
    assert rel_err(yf, yt) < TOL and rel_err(hf, ht) < TOL
    for name in gt:
        assert rel_err(gf[name], gt[name]) < TOL, name


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("config", [dict(num_layers=1), dict(num_layers=2, bidirectional=True, batch_first=True)])
def test_lengths_match_packed_torch(backend, config):
    """lengths= on a padded batch equals torch.nn.GRU on the PackedSequence of the same batch."""
    T, B, I, H = 9, 6, 4, 5
    t, f = twin_grus(I, H, backend=backend, **config)
    bf = config.get("batch_first", False)
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    x = torch.randn(B, T, I) if bf else torch.randn(T, B, I)
    xt, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_packed, ht = t(pack_padded_sequence(xt, lengths, batch_first=bf, enforce_sorted=False))
    yt, _ = pad_packed_sequence(y_packed, batch_first=bf, total_length=T)
    yf, hf = f(xf, lengths=lengths)
    assert rel_err(yf, yt) < TOL and rel_err(hf, ht) < TOL
    # padding positions are exactly zero
    for b, n in enumerate(lengths.tolist()):
        pad = yf[b, n:] if bf else yf[n:, b]
        assert torch.all(pad == 0)
    _assert_same_gradients(t, f, xt, xf, (yt, ht), (yf, hf))


def test_state_dict_round_trip_both_ways():
    t, f = twin_grus(4, 3, num_layers=2, bidirectional=True)
    assert list(t.state_dict()) == list(f.state_dict())
    t2 = torch.nn.GRU(4, 3, num_layers=2, bidirectional=True)
    t2.load_state_dict(f.state_dict())
    for k, v in t.state_dict().items():
        assert torch.equal(t2.state_dict()[k], v)


def test_grucell_matches_torch():
    for bias in (True, False):
        tc = torch.nn.GRUCell(5, 7, bias=bias)
        import fastgru

        fc = fastgru.nn.GRUCell(5, 7, bias=bias)
        fc.load_state_dict(tc.state_dict())
        x, h = torch.randn(3, 5), torch.randn(3, 7)
        xt, ht_in = x.clone().requires_grad_(), h.clone().requires_grad_()
        xf, hf_in = x.clone().requires_grad_(), h.clone().requires_grad_()
        yt, yf = tc(xt, ht_in), fc(xf, hf_in)
        assert rel_err(yf, yt) < TOL
        w = torch.randn_like(yt)
        (yt * w).sum().backward()
        (yf * w).sum().backward()
        gt, gf = grads(tc, xt, ht_in), grads(fc, xf, hf_in)
        for name in gt:
            assert rel_err(gf[name], gt[name]) < TOL, name
        # unbatched and no hx
        assert rel_err(fc(x[0]), tc(x[0])) < TOL


def test_default_init_matches_torch_distribution_and_keras_init():
    import fastgru

    m = fastgru.nn.GRU(16, 32, num_layers=2)
    k = 1 / 32**0.5
    for p in m.parameters():
        assert p.abs().max() <= k and p.abs().max() > 0.8 * k
    mk = fastgru.nn.GRU(16, 32, init="keras")
    w_hh = mk.weight_hh_l0.detach()
    assert torch.allclose(w_hh.T @ w_hh, torch.eye(32), atol=1e-5)  # orthogonal columns
    assert torch.all(mk.bias_ih_l0 == 0) and torch.all(mk.bias_hh_l0 == 0)
    limit = (6 / (16 + 96)) ** 0.5
    assert mk.weight_ih_l0.abs().max() <= limit


@pytest.mark.parametrize("backend", CORE_BACKENDS)
def test_saturated_gates_stay_finite_and_exact(backend):
    """Huge pre-activations (exp overflow inside sigmoid) must saturate like torch, not give NaN."""
    t, f = twin_grus(3, 5, backend=backend, num_layers=2)
    x = torch.randn(6, 2, 3) * 1000
    with torch.no_grad():
        yt, ht = t(x)
        yf, hf = f(x)
    assert torch.isfinite(yf).all()
    assert rel_err(yf, yt) < TOL and rel_err(hf, ht) < TOL
    relu = fastgru.nn.GRU(3, 5, candidate_activation="relu", backend=backend)
    with torch.no_grad():
        for p in relu.parameters():
            p.normal_()
        ref = fastgru.nn.GRU(3, 5, candidate_activation="relu", backend="torch")
        ref.load_state_dict(relu.state_dict())
        x = torch.randn(7, 2, 3) * 100
        assert rel_err(relu(x)[0], ref(x)[0]) < TOL


def test_fused_kernel_leaves_thread_count_alone():
    before = torch.get_num_threads()
    m = fastgru.nn.GRU(2, 3)
    m(torch.randn(3, 1, 2))[0].sum().backward()
    with torch.no_grad():
        m.eval().step(torch.randn(2))
    assert torch.get_num_threads() == before


def test_bfloat16_on_cpu_runs_the_torch_loop():
    t, f = twin_grus(4, 5, num_layers=2)
    t, f = t.to(torch.bfloat16), f.to(torch.bfloat16)
    x = torch.randn(6, 2, 4, dtype=torch.bfloat16)
    assert rel_err(f(x)[0], t(x)[0]) < 2e-2


@pytest.mark.parametrize("lengths", [False, True], ids=["single-pass", "lengths"])
def test_rows_split_over_threads_match_torch(lengths):
    """At B * H >= 16384 the fused kernel splits each step's rows over threads (the single-pass and the
    general backward alike); outputs and every gradient still equal torch.nn.GRU's (lengths: packed)."""
    T, B, I, H = 3, 64, 8, 256
    t, f = twin_grus(I, H, backend="cpu")
    x = torch.randn(T, B, I)
    xt, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    if lengths:
        n = torch.randint(1, T + 1, (B,))
        yt, ht = t(pack_padded_sequence(xt, n, enforce_sorted=False))
        yt, _ = pad_packed_sequence(yt, total_length=T)
        yf, hf = f(xf, lengths=n)
    else:
        (yt, ht), (yf, hf) = t(xt), f(xf)
    assert rel_err(yf, yt) < TOL and rel_err(hf, ht) < TOL
    _assert_same_gradients(t, f, xt, xf, (yt, ht), (yf, hf))
