"""MinGRU: parallel (log-space) scan == sequential loop == float64 step-by-step reference; gradients,
lengths, streaming, the residual blocks, and input checks. Fresh random inputs every run (conftest seed)."""

import math

import pytest
import torch
import torch.nn.functional as F

import fastgru
from fastgru import reference
from fastgru.core.errors import GRUInputError
from fastgru.mingru import ops as mingru_ops
from fastgru.mingru import scan
from fastgru.nn import MinGRU, MinGRUBlock, MinGRUStack, Stream


def _coeffs(T, *rest, scale=1.0, dtype=torch.float32):
    """Random gate pre-activations -> (a, b, log a, log b) as MinGRU forms them, and (a, b) in float64
    by the paper's formulas (the oracle's inputs)."""
    k = torch.randn(T, *rest, dtype=dtype) * scale
    v = torch.randn(T, *rest, dtype=dtype) * scale
    a, b = mingru_ops.coefficients(k, v)
    la, lb = mingru_ops.log_coefficients(k, v)
    k64, v64 = k.double(), v.double()  # 1 - z as sigmoid(-k): float64's 1 - z is inexact once z > 1 - 1e-12
    exact = (torch.sigmoid(-k64), torch.sigmoid(k64) * torch.where(v64 >= 0, v64 + 0.5, torch.sigmoid(v64)))
    return a, b, la, lb, exact


def _loop64(a, b, h0):
    """The recurrence in float64, one Python step at a time (independent of fastgru.mingru.scan)."""
    h = h0.double()
    out = []
    for t in range(a.shape[0]):
        h = a[t].double() * h + b[t].double()
        out.append(h)
    return torch.stack(out)


# ----------------------------------------------------------------------------- the math pieces


def test_g_is_the_papers_function_and_log_g_its_log():
    v = torch.cat([torch.randn(1000, dtype=torch.float64) * 5, torch.tensor([0.0, -0.5, 1e-9, -1e-9])])
    expected = torch.tensor([x + 0.5 if x >= 0 else 1 / (1 + math.exp(-x)) for x in v.tolist()], dtype=torch.float64)
    torch.testing.assert_close(mingru_ops.g(v), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(mingru_ops.log_g(v), torch.log(expected), rtol=1e-13, atol=1e-15)
    assert bool((mingru_ops.g(v) > 0).all())


def test_reference_matches_scalar_arithmetic():
    """reference.mingru against the paper's equations written with Python floats (B = 1)."""
    T, I, H = 6, 2, 3
    x = torch.randn(T, 1, I, dtype=torch.float64)
    w = torch.randn(2 * H, I, dtype=torch.float64)
    bias = torch.randn(2 * H, dtype=torch.float64)
    h0 = torch.randn(1, 1, H, dtype=torch.float64)
    out, h_n = reference.mingru(x, h0, [(w, bias)])
    h = h0[0, 0].tolist()
    for t in range(T):
        xs = x[t, 0].tolist()
        for j in range(H):
            kz = sum(w[j, i].item() * xs[i] for i in range(I)) + bias[j].item()
            kh = sum(w[H + j, i].item() * xs[i] for i in range(I)) + bias[H + j].item()
            z = 1 / (1 + math.exp(-kz))
            cand = kh + 0.5 if kh >= 0 else 1 / (1 + math.exp(-kh))
            h[j] = (1 - z) * h[j] + z * cand
        assert out[t, 0].tolist() == pytest.approx(h, rel=1e-12)
    assert h_n[0, 0].tolist() == pytest.approx(h, rel=1e-12)


# ----------------------------------------------------------------------------- scans


@pytest.mark.parametrize("T", [1, 2, 7, 64, 100, 4096])
def test_log_scan_and_sequential_scan_match_float64_loop(T):
    D = (2, 5)
    a, b, la, lb, exact = _coeffs(T, *D)
    h0 = torch.randn(*D)  # any sign: the log-space part never sees it
    expected = _loop64(*exact, h0)
    torch.testing.assert_close(scan.sequential_scan(a, b, h0).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scan.log_scan(la, lb, h0).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scan.log_scan(la, lb).double(), _loop64(*exact, torch.zeros(D)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 16, 64])
def test_log_scan_any_chunk_size(chunk):
    T = 37  # not a multiple of most chunks: padding and tails
    a, b, la, lb, _ = _coeffs(T, 4, dtype=torch.float64)
    h0 = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(scan.log_scan(la, lb, h0, chunk=chunk), _loop64(a, b, h0), rtol=1e-12, atol=1e-13)


def test_log_scan_stays_accurate_with_saturated_gates_and_long_sequences():
    """Heinsen's single logcumsumexp loses |cumsum(log a)| ulps (here ~1e4 -> ~1e-3 relative in fp32);
    the chunked log-space scan must keep fp32 accuracy."""
    T = 4096
    _, _, la, lb, exact = _coeffs(T, 32, scale=12.0)
    expected = _loop64(*exact, torch.zeros(32))
    got = scan.log_scan(la, lb).double()
    assert ((got - expected).abs() / expected.abs()).max().item() < 1e-5  # relative, even for tiny states


def test_sequential_scan_gradients_match_autograd_of_the_loop():
    T = 23
    a, b, _, _, _ = _coeffs(T, 3, 2, dtype=torch.float64)
    h0 = torch.randn(3, 2, dtype=torch.float64)
    w = torch.randn(T, 3, 2, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (a, b, h0)]
    (scan.sequential_scan(*leaves) * w).sum().backward()
    leaves2 = [t.clone().requires_grad_(True) for t in (a, b, h0)]
    (_loop64(*leaves2) * w).sum().backward()
    for x, y in zip(leaves, leaves2):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-12)


def test_scan_gradcheck_float64():
    T = 11
    a = torch.rand(T, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(T, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(scan.sequential_scan, (a, b, h0))
    la = (-torch.rand(T, 4, dtype=torch.float64) * 3).requires_grad_(True)
    lb = torch.randn(T, 4, dtype=torch.float64, requires_grad=True)
    h1 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for chunk in (1, 4):
        assert torch.autograd.gradcheck(lambda x, y, z, c=chunk: scan.log_scan(x, y, z, chunk=c), (la, lb, h1))


def test_linear_scan_on_cpu_uses_torch_without_error():
    a, b, _, _, _ = _coeffs(9, 3)
    h0 = torch.randn(3)
    torch.testing.assert_close(scan.linear_scan(a, b, h0), scan.sequential_scan(a, b, h0))
    with pytest.raises(ValueError, match="backend"):
        scan.linear_scan(a, b, h0, backend="cuda")


def test_linear_scan_without_triton_falls_back(monkeypatch):
    from fastgru.mingru import triton_scan

    monkeypatch.setattr(triton_scan, "triton", None)
    a, b, _, _, _ = _coeffs(5, 2)
    assert "not installed" in triton_scan.why_unusable(b)
    torch.testing.assert_close(scan.linear_scan(a, b), scan.sequential_scan(a, b))
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        scan.linear_scan(a, b, backend="triton")


# ----------------------------------------------------------------------------- the module


def _random_shapes(n):
    shapes = [(1, 3, 5, 7), (4096, 2, 3, 8)]  # T = 1 and T = 4096 always
    for _ in range(n):
        shapes.append((int(torch.randint(2, 300, ())), int(torch.randint(1, 5, ())),
                       int(torch.randint(1, 9, ())), int(torch.randint(1, 17, ()))))
    return shapes


def test_parallel_equals_sequential_fp32_random_shapes():
    for T, B, I, H in _random_shapes(6):
        layers = int(torch.randint(1, 3, ()))
        m = MinGRU(I, H, num_layers=layers, mode="parallel")
        x = torch.randn(T, B, I)
        h0 = torch.randn(layers, B, H)
        y_par, h_par = m(x, h0)
        m.mode = "sequential"
        y_seq, h_seq = m(x, h0)
        torch.testing.assert_close(y_par, y_seq, rtol=1e-5, atol=1e-5, msg=f"T,B,I,H={T, B, I, H}")
        torch.testing.assert_close(h_par, h_seq, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(h_par[-1], y_seq[-1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_float64_reference(mode, bias):
    T, B, I, H, L = 29, 3, 4, 6, 2
    m = MinGRU(I, H, num_layers=L, bias=bias, batch_first=True, mode=mode, dtype=torch.float64)
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(L, B, H, dtype=torch.float64)
    y, h_n = m(x, h0)
    y_ref, h_ref = reference.mingru(x, h0, m.layer_weights(), batch_first=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, h_ref, rtol=1e-12, atol=1e-12)
    m32 = m.float()
    y32, _ = m32(x.float(), h0.float())
    torch.testing.assert_close(y32.double(), y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_gradcheck_float64(mode):
    T, B, I, H = 9, 2, 3, 4  # T = 9: chunks of 4 with padding, so all three scan levels run
    m = MinGRU(I, H, num_layers=2, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([T, 4])
    params = [p for wb in m.layer_weights() for p in wb]

    def f(x, h0, *ps):
        weights = [(ps[0], ps[1]), (ps[2], ps[3])]
        y, h_n = mingru_ops.mingru(x, h0, weights, mode=mode, lengths=lengths)
        return y, h_n

    assert torch.autograd.gradcheck(f, (x, h0, *params))


def test_parallel_and_sequential_gradients_agree_fp32():
    T, B, I, H = 300, 2, 5, 8
    m = MinGRU(I, H, num_layers=2)
    x = torch.randn(T, B, I)
    h0 = torch.randn(2, B, H)
    w = torch.randn(T, B, H)
    grads = {}
    for mode in ("parallel", "sequential"):
        m.zero_grad()
        m.mode = mode
        xi, hi = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
        y, h_n = m(xi, hi)
        ((y * w).sum() + h_n.sum()).backward()
        grads[mode] = [xi.grad, hi.grad] + [p.grad.clone() for p in m.parameters()]
    for gp, gs in zip(grads["parallel"], grads["sequential"]):
        torch.testing.assert_close(gp, gs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_lengths_match_separate_runs(mode):
    T, B, I, H = 17, 4, 3, 5
    m = MinGRU(I, H, num_layers=2, batch_first=True, mode=mode)
    x = torch.randn(B, T, I)
    h0 = torch.randn(2, B, H)
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    y, h_n = m(x, h0, lengths=lengths)
    for b in range(B):
        n = int(lengths[b])
        y_b, h_b = m(x[b : b + 1, :n], h0[:, b : b + 1].contiguous())
        torch.testing.assert_close(y[b, :n], y_b[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(h_n[:, b], h_b[:, 0], rtol=1e-6, atol=1e-6)
        assert bool((y[b, n:] == 0).all())
    y_ref, h_ref = reference.mingru(x, h0, m.layer_weights(), batch_first=True, lengths=lengths)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_n.double(), h_ref, rtol=1e-5, atol=1e-5)


def test_step_equals_full_sequence_and_streams():
    T, B, I, H = 40, 3, 4, 6
    m = MinGRU(I, H, num_layers=3)
    x = torch.randn(T, B, I)
    y, h_n = m(x)
    state, outs = None, []
    for t in range(T):
        out, state = m.step(x[t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs), y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(state, h_n, rtol=1e-6, atol=1e-6)
    stream = Stream(m.eval())  # unbatched frames through the Stream helper
    streamed = torch.stack([stream(x[t, 1]) for t in range(T)])
    torch.testing.assert_close(streamed, y[:, 1], rtol=1e-6, atol=1e-6)


def test_unbatched_input():
    m = MinGRU(3, 4, num_layers=2)
    x = torch.randn(10, 3)
    h0 = torch.randn(2, 4)
    y, h_n = m(x, h0)
    y_b, h_b = m(x.unsqueeze(1), h0.unsqueeze(1))
    assert y.shape == (10, 4) and h_n.shape == (2, 4)
    torch.testing.assert_close(y, y_b[:, 0])
    torch.testing.assert_close(h_n, h_b[:, 0])


def test_dropout_between_layers_only_in_training():
    m = MinGRU(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(8, 2, 3)
    m.eval()
    y_eval, _ = m(x)
    y_ref, _ = reference.mingru(x, None, m.layer_weights())
    torch.testing.assert_close(y_eval.double(), y_ref, rtol=1e-5, atol=1e-5)
    m.train()
    y_a, _ = m(x)
    y_b, _ = m(x)
    assert not torch.equal(y_a, y_b)  # two dropout masks (P(equal) = 2^-16 per element)


# ----------------------------------------------------------------------------- blocks


def _rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@pytest.mark.parametrize("norm", ["rms", "layer", None])
def test_block_is_its_formula(norm):
    T, B, dim = 12, 2, 6
    blk = MinGRUBlock(dim, expansion=2.0, norm=norm, ff_mult=2.0, dtype=torch.float64)
    with torch.no_grad():  # non-trivial norm weights
        for p in blk.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(T, B, dim, dtype=torch.float64)
    y, h_n = blk(x)
    assert h_n.shape == (1, B, 2 * dim)

    def normed(v, mod):
        if norm == "rms":
            return _rms(v, mod.weight, mod.eps if mod.eps is not None else torch.finfo(v.dtype).eps)
        if norm == "layer":
            return F.layer_norm(v, (dim,), mod.weight, mod.bias, mod.eps)
        return v

    m, h_ref = reference.mingru(normed(x, blk.norm), None, blk.mingru.layer_weights())
    u = x + m @ blk.proj.weight.T
    lin1, lin2 = blk.ff[0], blk.ff[2]
    expected = u + F.linear(F.gelu(F.linear(normed(u, blk.ff_norm), lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, h_ref, rtol=1e-12, atol=1e-12)


def test_block_without_residual_or_expansion():
    blk = MinGRUBlock(5, norm=None, residual=False, dtype=torch.float64)
    assert isinstance(blk.proj, torch.nn.Identity)
    x = torch.randn(7, 2, 5, dtype=torch.float64)
    y, _ = blk(x)
    torch.testing.assert_close(y, reference.mingru(x, None, blk.mingru.layer_weights())[0], rtol=1e-12, atol=1e-12)


def test_stack_lengths_step_and_parallel():
    T, B, dim, L = 15, 3, 8, 3
    stack = MinGRUStack(dim, L, expansion=1.5, ff_mult=2.0, batch_first=True, mode="sequential")
    x = torch.randn(B, T, dim)
    lengths = torch.tensor([T, 5, 1])
    y, h_n = stack(x, lengths=lengths)
    assert h_n.shape == (L, B, 12)
    for b in range(B):
        n = int(lengths[b])
        y_b, h_b = stack(x[b : b + 1, :n])
        torch.testing.assert_close(y[b, :n], y_b[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(h_n[:, b], h_b[:, 0], rtol=1e-5, atol=1e-5)
        assert bool((y[b, n:] == 0).all())
    y_full, h_full = stack(x)
    state, outs = None, []
    for t in range(T):
        out, state = stack.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), y_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, h_full, rtol=1e-5, atol=1e-5)
    for blk in stack.blocks:
        blk.mingru.mode = "parallel"
    y_par, _ = stack(x)
    torch.testing.assert_close(y_par, y_full, rtol=1e-5, atol=1e-5)
    y_par.sum().backward()  # trains end to end
    assert all(p.grad is not None for p in stack.parameters())


# ----------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    m = MinGRU(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    cases = [
        (lambda: m(torch.randn(5, 2, 4)), "input_size=3"),
        (lambda: m(torch.randn(5, 2, 3, 1)), "input must be 3-D"),
        (lambda: m(torch.zeros(0, 2, 3)), "empty sequence"),
        (lambda: m(torch.randint(0, 3, (5, 2, 3))), "floating-point"),
        (lambda: m(x, torch.randn(1, 2, 4)), r"hx must have shape \(2, 2, 4\)"),
        (lambda: m(x, torch.randn(2, 2, 4, dtype=torch.float64)), "hx has dtype"),
        (lambda: m(x, lengths=torch.tensor([6, 1])), "lengths must be <= seq_len"),
        (lambda: m(x, lengths=torch.tensor([0, 1])), "lengths must be >= 1"),
        (lambda: m(x, lengths=torch.tensor([1.0, 2.0])), "lengths must hold integers"),
        (lambda: m(x.double()), "weight_l0 has dtype"),
        (lambda: m.step(torch.randn(2, 5)), "step: input must be"),
        (lambda: m.step(torch.randn(2, 3), torch.randn(2, 1, 4)), "step: state must have shape"),
        (lambda: mingru_ops.mingru(x, None, m.layer_weights(), mode="fast"), "mode must be one of"),
        (lambda: MinGRUStack(3, 2)(x, torch.randn(3, 2, 3)), "hx must have num_layers = 2"),
    ]
    for call, message in cases:
        with pytest.raises(GRUInputError, match=message):
            call()
    for kwargs, message in [
        ({"mode": "fast"}, "mode must be one of"),
        ({"num_layers": 0}, "num_layers must be a positive integer"),
        ({"dropout": 1.0}, "dropout must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            MinGRU(3, 4, **kwargs)
    with pytest.raises(ValueError, match="norm must be one of"):
        MinGRUBlock(4, norm="batch")
    with pytest.raises(ValueError, match="expansion must be a positive number"):
        MinGRUBlock(4, expansion=0)


def test_exported():
    assert fastgru.nn.MinGRU is MinGRU and fastgru.nn.MinGRUBlock is MinGRUBlock
