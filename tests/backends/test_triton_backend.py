"""The Triton GRU backend (fastgru.backends.triton) under TRITON_INTERPRET=1 on CPU tensors.

Oracles: fastgru.backends.torch_loop (same contract, pure torch) and fastgru.core.reference (float64 step by
step; its autograd gives the backward). Covered: the jit product helper and bf16 rounding, one step of
each per-step body (T=1), whole sequences in the per-step launch mode with multi-program grids (so the
state / r*h / gate-gradient exchange between programs is exercised), the cuBLAS-assisted 'gemm' mode,
the persistent kernel on a one-program grid with the grid-barrier code switched on, both variants,
lengths, reverse, fp32 / bf16 / fp16, NaN-poisoned outputs, the launch heuristic and backend selection.
Not covered here (needs a GPU): the barrier with several programs, TF32, speed.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton builds any kernel: they run on the CPU

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="Triton is not installed (optional dependency fastgru[gpu])")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from fastgru import backends, reference  # noqa: E402
from fastgru.backends import torch_loop  # noqa: E402
from fastgru.backends import triton as tb  # noqa: E402
from fastgru.backends.triton import heuristics, kernels, launch  # noqa: E402

if not kernels.INTERPRETED and os.environ.get("TRITON_INTERPRET") == "1":
    # imported earlier in this process without the interpreter: rebuild the kernels for it
    kernels = importlib.reload(sys.modules["fastgru.backends.triton.kernels"])

pytestmark = pytest.mark.skipif(
    not kernels.INTERPRETED,
    reason="the kernels were built for a GPU (TRITON_INTERPRET is set to something else than 1)",
)

CPU = torch.device("cpu")
F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    """Every output and scratch buffer starts as NaN, so an element a kernel forgot to write shows;
    gates saved in the input dtype (the default, whatever FASTGRU_TRITON_GATES says)."""
    monkeypatch.setattr(launch, "POISON", True)
    monkeypatch.setattr(launch, "GATES_DTYPE", None)


# ---------------------------------------------------------------------------------------- helpers


def _problem(T, B, H, dtype=F32, lengths=False, bias=True):
    gi = torch.randn(T, B, 3 * H).to(dtype)
    h0 = torch.randn(B, H).to(dtype)
    w = (torch.randn(3 * H, H) / H**0.5).to(dtype)
    b = torch.randn(3 * H).to(dtype) if bias else None
    L = None
    if lengths:
        L = torch.randint(0, T + 1, (B,))
        L[0] = T  # at least one full-length row; others may be 0 (never live)
    return gi, h0, w, b, L


def _f32(t):
    return None if t is None else t.float()


def _run(gi, h0, w, b, L, reset_after, reverse, **plan_overrides):
    """Forward (save=True) and backward with the Triton backend and with torch_loop (fp32 on the same
    rounded values); returns (triton outputs, torch_loop outputs) as lists of tensors."""
    T, B, H = gi.shape[0], gi.shape[1], w.shape[1]
    plan = tb.plan_for(B, H, w.dtype, CPU, **plan_overrides)
    buf, gates = launch.forward(gi, h0, w, b, L, reset_after, reverse, True, plan=plan)
    rbuf, rgates = torch_loop.recurrence_forward(gi.float(), h0.float(), w.float(), _f32(b), L, reset_after,
                                                 reverse, True)
    dbuf = torch.randn(T + 1, B, H)
    grads = launch.backward(dbuf.to(gi.dtype), buf, gates, w, L, reset_after, reverse, plan=plan)
    rgrads = torch_loop.recurrence_backward(dbuf.to(gi.dtype).float(), rbuf, rgates, w.float(), L, reset_after,
                                            reverse)
    got = [buf, gates, *grads]
    want = [rbuf, rgates, *rgrads]
    return [g for g in got if g.numel()], [x for x in want if x.numel()]


def _assert_fp32(got, want):
    for k, (g, x) in enumerate(zip(got, want)):
        assert g.dtype == F32
        torch.testing.assert_close(g, x, rtol=1e-5, atol=1e-5, msg=lambda m, k=k: f"output {k}: {m}")


def _assert_rel(got, want, dtype, tol):
    """Half precision: outputs in the input dtype, relative (Frobenius) error below tol."""
    for k, (g, x) in enumerate(zip(got, want)):
        assert g.dtype == dtype, f"output {k} has dtype {g.dtype}, expected the input dtype {dtype}"
        assert torch.isfinite(g).all(), f"output {k} has non-finite values"
        err = (g.float() - x).norm() / x.norm().clamp_min(1e-6)
        assert err < tol, f"output {k}: relative error {err:.2e} >= {tol}"


# ---------------------------------------------------------------------------- environment, selection


def test_interpreter_runs_cpu_tensors_but_select_never_routes_them():
    assert tb.interpreting() and launch.device_ok(CPU)
    assert not tb.is_available(CPU)
    assert not tb.is_available(torch.device("cuda"))  # kernels built for the interpreter, not a GPU
    assert backends.select(CPU, "auto") is not tb
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        backends.select(CPU, "triton")


def test_select_without_triton(monkeypatch):
    """Triton missing: 'auto' falls back silently, 'triton' explains itself."""
    monkeypatch.setitem(sys.modules, "fastgru.backends.triton", None)
    monkeypatch.delattr(backends, "triton", raising=False)
    assert backends.select(CPU, "auto") is not None
    assert backends.select(torch.device("cuda"), "auto").__name__ == "fastgru.backends.torch_loop"
    with pytest.raises(RuntimeError, match="Triton is not importable"):
        backends.select(CPU, "triton")


def test_plan_heuristic():
    mk = heuristics.make_plan
    assert mk(256, 1024, 2, 132, False).mode == "gemm"  # bf16 / fp16: cuBLAS for the recurrent GEMM
    assert mk(256, 1024, 4, 132, False, tf32=False).mode == "gemm"
    big = mk(256, 1024, 4, 132, False, tf32=True)  # fp32 + TF32: Triton's tl.dot does the TF32
    assert big.mode == "step" and not big.resident and big.n_h * big.n_b <= 132
    for B, H in ((64, 256), (64, 512), (16, 512), (4, 512), (1, 256), (1, 1024), (1, 128)):
        p = mk(B, H, 4, 132, False)
        assert p.mode == "persistent" and p.n_h * p.n_b <= 132, (B, H, p)
        assert p.n_h * p.block_h >= H and p.n_b * p.block_b >= B
        if p.use_dot:
            assert min(p.block_b, p.block_h, p.block_k, p.h_pad) >= 16
    assert mk(1, 128, 4, 132, False).n_h == 1  # small H: one program, no grid barrier
    assert not mk(1, 128, 4, 132, False).sync
    with pytest.raises(ValueError, match="resident at once"):
        mk(3, 20, 4, None, True, mode="persistent", block_h=8)  # interpreter: programs run one by one
    with pytest.raises(ValueError, match="tiles >= 16"):
        mk(3, 20, 4, 132, False, block_b=2)
    with pytest.raises(ValueError, match="FASTGRU_TRITON_MODE"):
        mk(3, 20, 4, 132, False, mode="fast")


def test_input_validation_names_the_argument():
    gi, h0, w, b, _ = _problem(3, 2, 8)
    with pytest.raises(ValueError, match="gi's last dimension"):
        tb.recurrence_forward(gi[..., :-1], h0, w, b, None, True, False, False)
    with pytest.raises(ValueError, match="h0 must be"):
        tb.recurrence_forward(gi, h0[:1], w, b, None, True, False, False)
    with pytest.raises(ValueError, match="b_hh must be"):
        tb.recurrence_forward(gi, h0, w, b[:-1], None, True, False, False)
    with pytest.raises(ValueError, match="lengths must have shape"):
        tb.recurrence_forward(gi, h0, w, b, torch.tensor([3]), True, False, False)
    with pytest.raises(TypeError, match="gi must be float32"):
        tb.recurrence_forward(gi.double(), h0, w, b, None, True, False, False)
    buf, gates = tb.recurrence_forward(gi, h0, w, b, None, True, False, False)
    with pytest.raises(ValueError, match="did the forward run with save=True"):
        tb.recurrence_backward(torch.zeros_like(buf), buf, gates, w, None, True, False)


# ------------------------------------------------------------------------------- jit helper bodies


@triton.jit
def _mm_kernel(x_ptr, w_ptr, o_ptr, M: tl.constexpr, K: tl.constexpr, N: tl.constexpr,
               USE_DOT: tl.constexpr, EMU: tl.constexpr):
    m = tl.arange(0, M)
    k = tl.arange(0, K)
    n = tl.arange(0, N)
    x = tl.load(x_ptr + m[:, None] * K + k[None, :])
    wt = tl.load(w_ptr + k[:, None] * N + n[None, :])
    tl.store(o_ptr + m[:, None] * N + n[None, :], kernels._mm(x, wt, USE_DOT, "ieee", EMU))


@triton.jit
def _round_kernel(x_ptr, o_ptr, N: tl.constexpr):
    n = tl.arange(0, N)
    kernels._store(o_ptr + n, tl.load(x_ptr + n), n < N, True)


@pytest.mark.parametrize("dtype", [F32, BF16, F16])
@pytest.mark.parametrize("use_dot", [True, False])
def test_product_helper(dtype, use_dot):
    """x (fp32) @ w (weight dtype): fp32 exact; half rounds x to the weight dtype (dot) like cuDNN."""
    M, K, N = 4, 16, 8
    x = torch.randn(M, K)
    w = torch.randn(K, N).to(dtype)
    out = torch.empty(M, N)
    _mm_kernel[(1,)](x, w, out, M, K, N, use_dot, True)
    xr = x.to(dtype).float() if (use_dot and dtype != F32) else x
    torch.testing.assert_close(out, xr.double().mm(w.double()).float(), rtol=1e-5, atol=1e-5)


def test_bf16_store_rounds_to_nearest_even():
    """The interpreter's own fp32 -> bf16 cast truncates; the kernels' stores must match torch's RNE.

    Ties and carries into the exponent included; subnormals left out (the interpreter's conversion
    mishandles those whatever the kernel does; a GPU converts them in hardware)."""
    x = torch.cat([torch.randn(4000) * 3, torch.tensor([1.00390625, 1.01171875, 2.01171875, -255.5])])
    N = triton.next_power_of_2(x.numel())
    x = torch.cat([x, torch.zeros(N - x.numel())])
    out = torch.empty(N, dtype=BF16)
    _round_kernel[(1,)](x, out, N)
    assert torch.equal(out, x.to(BF16))


# ---------------------------------------------------------------------------------- one step bodies


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("product", ["resident", "streamed", "broadcast"])
def test_single_step_body(reset_after, product):
    """T=1: each per-step jit body exactly once (two programs along H, two along the batch)."""
    overrides = {"resident": dict(resident=True), "streamed": dict(resident=False, block_k=8),
                 "broadcast": dict(use_dot=False)}[product]
    gi, h0, w, b, L = _problem(1, 3, 12, lengths=True)
    got, want = _run(gi, h0, w, b, L, reset_after, False, mode="step", block_b=2, block_h=8, **overrides)
    _assert_fp32(got, want)


def test_through_functional_matches_torch_gru(monkeypatch):
    """End to end: fastgru.core.functional.gru_layer(backend='triton') with autograd vs torch.nn.GRU
    (is_available patched: selection only hands real CUDA devices to this backend)."""
    from fastgru import functional

    monkeypatch.setattr(tb, "is_available", lambda device=None: True)

    T, B, I, H = 4, 2, 5, 12
    gru = torch.nn.GRU(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    h0 = torch.randn(B, H, requires_grad=True)
    y_ref, _ = gru(x, h0[None])
    g = torch.randn_like(y_ref)
    want = torch.autograd.grad((y_ref * g).sum(), [x, h0, *gru.parameters()])
    params = [p.detach().requires_grad_(True) for p in gru.parameters()]
    y, h_n = functional.gru_layer(x, h0, *params, reset_after=True, backend="triton")
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_n, y_ref[-1], rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad((y * g).sum(), [x, h0, *params])
    for k, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, k=k: f"gradient {k}: {m}")


def test_zero_steps():
    gi, h0, w, b, _ = _problem(0, 2, 8)
    buf, gates = tb.recurrence_forward(gi, h0, w, b, None, True, False, True)
    assert buf.shape == (1, 2, 8) and torch.equal(buf[0], h0) and gates.shape == (0, 2, 32)
    dbuf = torch.randn(1, 2, 8)
    dgi, dgh_n, dh0 = tb.recurrence_backward(dbuf, buf, gates, w, None, True, False)
    assert dgi.shape == (0, 2, 24) and torch.equal(dh0, dbuf[0])


# ----------------------------------------------------------------------------------- whole sequences

# (reset_after, reverse, lengths, product): every pairing of variant with direction and lengths, the
# three product paths spread over them.
SEQ_CASES = [
    (True, False, True, dict(resident=True)),
    (True, True, False, dict(resident=False, block_k=8)),
    (True, True, True, dict(use_dot=False)),
    (False, False, False, dict(resident=True)),
    (False, True, True, dict(resident=False, block_k=8)),
    (False, False, True, dict(use_dot=False)),
]


@pytest.mark.parametrize("reset_after, reverse, lengths, product", SEQ_CASES)
def test_step_mode_sequence_fp32(reset_after, reverse, lengths, product):
    overrides = dict(block_b=2, block_h=8) | product
    gi, h0, w, b, L = _problem(5, 3, 20, lengths=lengths, bias=not (reverse and lengths))
    got, want = _run(gi, h0, w, b, L, reset_after, reverse, mode="step", **overrides)
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after, reverse, lengths", [(True, False, True), (False, True, True)])
def test_gemm_mode_sequence_fp32(reset_after, reverse, lengths):
    gi, h0, w, b, L = _problem(4, 3, 16, lengths=lengths)
    got, want = _run(gi, h0, w, b, L, reset_after, reverse, mode="gemm", block_b=2, block_h=8)
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after, reverse, resident", [(True, False, True), (False, True, False)])
def test_persistent_one_program(reset_after, reverse, resident):
    """The persistent kernels (W loaded once, time loop in the kernel) on a one-program grid, with the
    atomic grid-barrier code switched on (one participant)."""
    gi, h0, w, b, L = _problem(6, 3, 24, lengths=True)
    got, want = _run(gi, h0, w, b, L, reset_after, reverse, mode="persistent", sync=True, resident=resident,
                     block_k=16)
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after", [True, False])
def test_against_float64_reference(reset_after):
    """fastgru.core.reference (float64, autograd) as the oracle of buf, dgi and dh0, with lengths and reverse."""
    T, B, H = 5, 3, 12
    gi, h0, w, b, L = _problem(T, B, H, lengths=True)
    reverse = not reset_after
    buf, gates = tb.recurrence_forward(gi, h0, w, b, L, reset_after, reverse, True)
    gi64 = gi.double().requires_grad_(True)
    h064 = h0.double().requires_grad_(True)
    eye = torch.eye(3 * H, dtype=torch.float64)  # x = gi itself: W_ih = I, no input bias
    y, _ = reference.gru_layer(gi64, h064, (eye, w.double(), None, b.double()), reset_after=reset_after,
                               reverse=reverse, lengths=L)
    # rebuild the contract's buf from the reference: rows past their length carry their state
    states = [None] * (T + 1)
    first = T if reverse else 0
    states[first] = h064
    h = h064
    for i in range(T):
        t = T - 1 - i if reverse else i
        h = torch.where((L > t).unsqueeze(1), y[t], h)
        states[t if reverse else t + 1] = h
    ref_buf = torch.stack(states)
    torch.testing.assert_close(buf.double(), ref_buf, rtol=1e-5, atol=1e-5)
    dbuf = torch.randn(T + 1, B, H)
    dgi, _, dh0 = tb.recurrence_backward(dbuf, buf, gates, w, L, reset_after, reverse)
    ref_dgi, ref_dh0 = torch.autograd.grad((ref_buf * dbuf.double()).sum(), (gi64, h064))
    torch.testing.assert_close(dgi.double(), ref_dgi, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dh0.double(), ref_dh0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, reset_after, mode", [
    (BF16, True, "step"), (BF16, False, "step"), (BF16, False, "gemm"), (F16, True, "step"),
])
def test_half_precision(dtype, reset_after, mode):
    """Half inputs/weights, fp32 state: outputs in the input dtype within ~1e-2 of fp32 on the same values."""
    gi, h0, w, b, L = _problem(5, 3, 16, dtype=dtype, lengths=True)
    got, want = _run(gi, h0, w, b, L, reset_after, reset_after, mode=mode, block_b=2, block_h=8)
    _assert_rel(got, want, dtype, 1e-2)


def test_fp32_gates_option(monkeypatch):
    """FASTGRU_TRITON_GATES=fp32: gates saved in float32 (the rest stays bf16); the backward then works
    from unrounded gates, so its outputs carry little more than their own bf16 rounding (~2e-3)."""
    monkeypatch.setattr(launch, "GATES_DTYPE", F32)
    gi, h0, w, b, L = _problem(5, 3, 16, dtype=BF16, lengths=True)
    got, want = _run(gi, h0, w, b, L, True, False, mode="step", block_b=2, block_h=8)
    assert got[1].dtype == F32 and all(g.dtype == BF16 for k, g in enumerate(got) if k != 1)
    err = [((g.float() - x).norm() / x.norm()).item() for g, x in zip(got, want)]
    assert max(err) < 5e-3, err


def test_default_plan_end_to_end_bf16():
    """What a user gets on CPU tensors under the interpreter: the heuristic's own plan (one program,
    persistent, barrier off), through the public contract functions."""
    gi, h0, w, b, L = _problem(4, 2, 16, dtype=BF16, lengths=True)
    buf, gates = tb.recurrence_forward(gi, h0, w, b, L, True, False, True)
    rbuf, rgates = torch_loop.recurrence_forward(gi.float(), h0.float(), w.float(), b.float(), L, True, False,
                                                 True)
    dbuf = torch.randn_like(rbuf)
    grads = tb.recurrence_backward(dbuf.to(BF16), buf, gates, w, L, True, False)
    rgrads = torch_loop.recurrence_backward(dbuf.to(BF16).float(), rbuf, rgates, w.float(), L, True, False)
    _assert_rel([buf, gates, *grads], [rbuf, rgates, *rgrads], BF16, 1e-2)
