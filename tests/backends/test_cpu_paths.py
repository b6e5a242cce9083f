"""The CPU kernel's product paths and its one-call inference, against float64 references and torch.nn.GRU.

RecurrentGemm picks its code by size (csrc/recurrent_gemm.h): on AVX-512 builds our register-blocked panel GEMM
for up to 256 rows from 64 rows x steps on (from 8 steps where the small loops would serve); own small GEMMs for
batch <= 4 with W_hh <= 3*128*128 values (batch <= 2: any W_hh); MKL's packed format from 8 steps on for what is
left; a plain BLAS call otherwise. Inference without
autograd runs the whole stack in one C++ call (ext.infer). Each size below selects one of them; every path must
give torch.nn.GRU's / the float64 reference's numbers, forward and backward.
"""

import pytest
import torch

from fastgru import reference
from fastgru.backends import cpu
from fastgru.nn import GRU

pytestmark = pytest.mark.skipif(not cpu.is_available(), reason="the fused CPU kernel could not be built here")

# (T, B, I, H): small path (B <= 4, W_hh small, T < 8); panel path for 3 rows (T = 9); BLAS path (B > 4,
# B * T < 64); panel path (AVX-512, else MKL's packed format): B = 6, and B = 13 with a tail of 5 rows after a
# block of 8, 3H = 111 columns (a partial last panel) and K = 37 (partial transposed blocks); small path for 1-2
# rows with a large W_hh (B = 2, H = 160, T < 8), BLAS for 3 rows with it (B = 3, H = 160, B * T < 64); beyond
# the panel path's 256 rows: MKL's packed format; B = 16, H = 128: a step's product of 1.6 MFLOP, whose panels
# are shared by two threads.
SIZES = [(1, 1, 5, 16), (9, 3, 7, 32), (2, 6, 5, 24), (12, 6, 4, 20), (9, 13, 6, 37), (5, 2, 6, 160),
         (5, 3, 6, 160), (8, 260, 3, 8), (5, 16, 9, 128)]


def _weights(model: GRU):
    return [tuple(w.detach() for w in group) if group[2] is not None else (group[0].detach(), group[1].detach(),
                                                                            None, None) for group in model._groups()]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize(("bidirectional", "bias"), [(False, True), (True, False)])
def test_inference_and_gradients_match_float64_reference(size, reset_after, bidirectional, bias):
    T, B, I, H = size
    torch.manual_seed(hash((size, reset_after, bidirectional, bias)) % 2**31)
    model = GRU(I, H, num_layers=2, bidirectional=bidirectional, bias=bias, reset_after=reset_after)
    x = torch.randn(T, B, I)
    h0 = torch.randn(2 * (2 if bidirectional else 1), B, H)
    ref_out, ref_h = reference.gru(x, h0.double(), [tuple(None if w is None else w.double() for w in g)
                                                    for g in _weights(model)], num_layers=2,
                                   bidirectional=bidirectional, reset_after=reset_after)
    with torch.no_grad():  # the one-call stack
        out, h_n = model(x, h0)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_n.double(), ref_h, atol=1e-5, rtol=1e-5)
    # training path: same values, and every gradient against the float64 reference's autograd
    xg = x.double().requires_grad_(True)
    ref_w = [tuple(None if w is None else w.double().requires_grad_(True) for w in g) for g in _weights(model)]
    ro, rh = reference.gru(xg, h0.double(), ref_w, num_layers=2, bidirectional=bidirectional,
                           reset_after=reset_after)
    gy, gh = torch.randn_like(ro), torch.randn_like(rh)
    ((ro * gy).sum() + (rh * gh).sum()).backward()
    xf = x.clone().requires_grad_(True)
    fo, fh = model(xf, h0)
    ((fo * gy.float()).sum() + (fh * gh.float()).sum()).backward()
    torch.testing.assert_close(fo.detach().double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xf.grad.double(), xg.grad, atol=1e-4, rtol=1e-4)
    for group, ref_group in zip(model._groups(), ref_w):
        for p, r in zip(group, ref_group):
            if p is not None:
                torch.testing.assert_close(p.grad.double(), r.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", SIZES)
def test_one_call_inference_equals_torch_gru(size):
    T, B, I, H = size
    torch.manual_seed(sum(size))
    ref = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    fast = GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    with torch.no_grad():
        for hx in (None, torch.randn(4, B, H)):
            (y_ref, h_ref), (y, h) = ref(x, hx), fast(x, hx)
            torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_one_call_inference_with_lengths_and_checks_still_applies_them():
    """The one-call path is skipped for lengths; bad arguments are refused before it with the usual errors."""
    torch.manual_seed(3)
    model = GRU(4, 8)
    x = torch.randn(6, 3, 4)
    with torch.no_grad():
        y, _ = model(x, lengths=torch.tensor([6, 2, 4]))
        assert y[2:, 1].abs().max() == 0 and y[:2, 1].abs().max() > 0
        with pytest.raises(Exception, match="weight_ih_l0|dtype"):
            model(x.double())
        with pytest.raises(Exception, match="hx"):
            model(x, torch.randn(1, 2, 8))


def test_bf16_autocast_runs_bf16_products_with_bounded_error():
    """Under CPU autocast (bf16) the products run in bf16: results differ from fp32 (so the path is taken)
    by about bf16's precision, like torch.nn.GRU's own autocast error, and stay float32."""
    torch.manual_seed(5)
    ref = torch.nn.GRU(256, 512)
    fast = GRU(256, 512)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(20, 8, 256)  # the projection: 160 x 1536 x 256 = 63M multiply-adds
    with torch.no_grad():
        y32, _ = fast(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16, h16 = fast(x)
    assert y16.dtype == torch.float32 and h16.dtype == torch.float32
    err = (y16 - y32).abs().max().item()
    assert 1e-5 < err < 3e-2, err


@pytest.mark.parametrize("rows", [(1, 1), (1, 4), (2, 2), (1, 5), (3, 2), (8, 8), (19, 7), (40, 13)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_input_projection_small_rows_and_blas_equal_float64(rows, dtype, bias):
    """project(): up to 4 rows the kernel's own dot products (bias as starting sums); from 64 rows (float32,
    AVX-512) the panel loops with the bias added per tile: 64 rows, 133 rows (a tail of 5 after whole tiles)
    and 520 rows (two threads' row ranges and more than one 256-row chunk), 72 columns (a partial panel), 37
    features (partial transposed blocks); otherwise ATen's GEMM."""
    T, B = rows
    I, G = 37, 3 * 24
    x, w = torch.randn(T, B, I, dtype=dtype), torch.randn(G, I, dtype=dtype)
    b = torch.randn(G, dtype=dtype) if bias else None
    expected = x.double() @ w.double().t() + (b.double() if bias else 0)
    for reuse in (False, True):
        got = cpu.project(x, w, b, reuse=reuse)
        assert got.shape == (T, B, G) and got.dtype == dtype
        torch.testing.assert_close(got.double(), expected, rtol=1e-5 if dtype == torch.float32 else 1e-12,
                                   atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_bf16_autocast_only_where_it_pays():
    """Products under 16M multiply-adds stay float32 under autocast (bit-exact with a float32 call); larger
    step products run in bf16 (shown with a zero input, so only the recurrent product can round)."""
    torch.manual_seed(torch.seed() % 2**31)
    small = GRU(8, 32)
    x, h0 = torch.randn(5, 2, 8), torch.randn(1, 2, 32)
    with torch.no_grad():
        y32, _ = small(x, h0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16, _ = small(x, h0)
    assert torch.equal(y16, y32)
    big = GRU(16, 512)  # a step's product: 32 x 1536 x 512 = 25M multiply-adds
    x, h0 = torch.zeros(6, 32, 16), torch.randn(1, 32, 512)
    with torch.no_grad():
        y32, _ = big(x, h0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16, _ = big(x, h0)
    err = (y16 - y32).abs().max().item()
    assert 1e-5 < err < 3e-2, err
