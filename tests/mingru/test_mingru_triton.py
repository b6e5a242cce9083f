"""The Triton linear-recurrence scan (MinGRU's GPU path) against the torch implementation
(fastgru.mingru.scan.sequential_scan) and a float64 loop: forward, backward (the reversed scan), tile tails,
storage dtypes, and MinGRU's coefficients. By default (CI) the kernel runs under TRITON_INTERPRET=1 on
CPU tensors, as tests/backends/test_triton_backend.py does; with TRITON_INTERPRET=0 set on a GPU machine it runs
compiled on CUDA tensors."""

import importlib
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton builds any kernel: they run on the CPU

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="Triton is not installed (optional dependency fastgru[gpu])")

from fastgru.mingru import ops as mingru_ops  # noqa: E402
from fastgru.mingru import (
    scan,  # noqa: E402
    triton_scan,  # noqa: E402
)
from fastgru.nn import MinGRU  # noqa: E402

if os.environ.get("TRITON_INTERPRET") == "1" and not triton_scan.INTERPRETED:
    # imported earlier in this process without the interpreter: rebuild the kernel for it
    triton_scan = importlib.reload(sys.modules["fastgru.mingru.triton_scan"])

DEVICE = "cpu" if triton_scan.INTERPRETED else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is not 1 and there is no CUDA GPU: the kernel cannot run", allow_module_level=True)


def _inputs(T, *rest, dtype=torch.float32, h0=True):
    a = torch.rand(T, *rest, dtype=dtype) * 1.2 - 0.1  # mostly in (0, 1), some outside: the scan is general
    b = torch.randn(T, *rest, dtype=dtype)
    h = torch.randn(*rest, dtype=dtype) if h0 else None
    return a.to(DEVICE), b.to(DEVICE), (h.to(DEVICE) if h0 else None)


def _loop64(a, b, h0):
    h = torch.zeros(b.shape[1:], dtype=torch.float64, device=b.device) if h0 is None else h0.double()
    out = []
    for t in range(a.shape[0]):
        h = a[t].double() * h + b[t].double()
        out.append(h)
    return torch.stack(out)


def test_kernel_runs_here():
    assert triton_scan.why_unusable(torch.zeros(1, device=DEVICE)) is None
    assert not triton_scan.usable(torch.zeros(1))  # 'auto' keeps CPU tensors on the torch path


@pytest.mark.parametrize(
    "T, rest, block_t, block_d",
    [(1, (3, 5), 4, 8), (5, (2, 3), 4, 4), (33, (4, 7), 8, 16), (200, (3, 11), 64, 32), (64, (1, 1), 16, 4)],
)
@pytest.mark.parametrize("with_h0", [True, False])
def test_forward_matches_torch_scan(T, rest, block_t, block_d, with_h0):
    a, b, h0 = _inputs(T, *rest, h0=with_h0)
    got = triton_scan.scan(a, b, h0, block_t=block_t, block_d=block_d)
    torch.testing.assert_close(got, scan.sequential_scan(a, b, h0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.double(), _loop64(a, b, h0), rtol=1e-5, atol=1e-5)


def test_float64_exact_and_gradcheck():
    a, b, h0 = _inputs(13, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(triton_scan.scan(a, b, h0, block_t=4, block_d=4), _loop64(a, b, h0),
                               rtol=1e-13, atol=1e-13)
    leaves = [t[:6, :1].clone().requires_grad_(True) for t in (a, b)] + [h0[:1].clone().requires_grad_(True)]
    fn = lambda x, y, z: triton_scan.scan(x, y, z, block_t=4, block_d=2)  # noqa: E731  (2 tiles over T)
    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("T, block_t", [(1, 4), (29, 8), (70, 64)])
def test_backward_matches_torch_scan(T, block_t):
    a, b, h0 = _inputs(T, 3, 5)
    w = torch.randn(T, 3, 5, device=DEVICE)
    grads = []
    for fn in (lambda *x: triton_scan.scan(*x, block_t=block_t, block_d=8), scan.sequential_scan):
        leaves = [t.clone().requires_grad_(True) for t in (a, b, h0)]
        out = fn(*leaves)
        ((out * w).sum() + out[-1].sum()).backward()
        grads.append([t.grad for t in leaves])
    for g_triton, g_torch in zip(*grads):
        torch.testing.assert_close(g_triton, g_torch, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_storage_accumulates_in_fp32(dtype):
    a, b, h0 = _inputs(40, 2, 9, dtype=dtype)
    got = triton_scan.scan(a, b, h0, block_t=16, block_d=8)
    assert got.dtype == dtype
    expected = _loop64(a, b, h0)  # same (rounded) inputs, exact arithmetic
    tol = 8e-3 if dtype == torch.bfloat16 else 1e-3  # one rounding of each stored output
    scale = expected.abs().max().item()
    assert (got.double() - expected).abs().max().item() <= tol * max(1.0, scale)


def test_mingru_coefficients_through_the_kernel_equal_the_sequential_layer():
    T, B, I, H = 50, 2, 3, 6
    x = torch.randn(T, B, I, device=DEVICE)
    weight = torch.randn(2 * H, I, device=DEVICE) * 0.5
    bias = torch.randn(2 * H, device=DEVICE) * 0.1
    h0 = torch.randn(B, H, device=DEVICE)
    k, v = torch.nn.functional.linear(x, weight, bias).chunk(2, dim=-1)
    a, b = mingru_ops.coefficients(k, v)
    out = triton_scan.scan(a, b, h0, block_t=16, block_d=8)
    ref, _ = mingru_ops.mingru_layer(x, h0, weight, bias, mode="sequential")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_explicit_backend_and_bad_arguments():
    a, b, h0 = _inputs(6, 4)
    torch.testing.assert_close(scan.linear_scan(a, b, h0, backend="triton"), scan.sequential_scan(a, b, h0),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="same non-empty"):
        triton_scan.scan(a, b[:3], h0)
    with pytest.raises(ValueError, match="h0 must be"):
        triton_scan.scan(a, b, h0[:2])
    with pytest.raises(ValueError, match="block_t must be a power of two"):
        triton_scan.scan(a, b, h0, block_t=6)
    with pytest.raises(RuntimeError, match="dtype torch.int64 is not supported"):
        triton_scan.scan(a.long(), b.long())


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA GPU (on the CPU, parallel mode is the log-space scan)")
def test_module_parallel_mode_on_cuda_uses_the_kernel_and_matches_sequential():
    m = MinGRU(8, 16, num_layers=2, mode="parallel").to(DEVICE)
    x = torch.randn(300, 4, 8, device=DEVICE)
    assert triton_scan.usable(x)
    h0 = torch.randn(2, 4, 16, device=DEVICE)
    y_par, h_par = m(x, h0)
    m.mode = "sequential"
    y_seq, h_seq = m(x, h0)
    torch.testing.assert_close(y_par, y_seq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_par, h_seq, rtol=1e-5, atol=1e-5)
