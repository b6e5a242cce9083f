"""The Triton backend's fused cell options under TRITON_INTERPRET=1 on CPU tensors.

Cell options (the contract in fastgru.backends): recurrent dropout (rec_mask), zoneout (training
keep-mask zone_mask, eval-mode spec.zoneout) and the gate / candidate activations of a CellSpec.
Oracle: fastgru.backends.torch_loop, the pure-torch loop of the same contract, run in float64 on the
same (rounded) inputs; every test draws fresh random inputs, weights and masks. Forward (buf and the
saved gates) and backward (dgi, dgh_n, dh0) are compared in the per-step, 'gemm' (cuBLAS-assisted,
here torch.mm on the CPU) and persistent (one-program grid, barrier code on) modes, both variants,
with and without lengths, reverse, fp32 and bf16. Also: backend selection with cell options on a
(mocked) CUDA device, and the contract's input validation (the layer norm: tests/backends/test_triton_layer_norm.py).
Not covered here (needs a GPU): persistent grids of several programs, TF32, speed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton builds any kernel: they run on the CPU

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="Triton is not installed (optional dependency fastgru[gpu])")

# Shared with the plain backend's tests: kernels built for the interpreter (else this module is skipped)
# and the autouse fixture that NaN-poisons every output and scratch buffer.
from test_triton_backend import CPU, poison, pytestmark  # noqa: E402, F401

from fastgru import backends  # noqa: E402
from fastgru.backends import CellSpec, torch_loop  # noqa: E402
from fastgru.backends import triton as tb  # noqa: E402
from fastgru.backends.triton import launch  # noqa: E402

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16


def _problem(T, B, H, dtype, lengths, rec, zone):
    """Random gi, h0, W_hh, b_hh, lengths, recurrent-dropout mask (0 or 1/(1-p), as functional draws
    it) and zoneout keep-mask, in `dtype` (the masks as the op passes them)."""
    gi = torch.randn(T, B, 3 * H).to(dtype)
    h0 = torch.randn(B, H).to(dtype)
    w = (torch.randn(3 * H, H) / H**0.5).to(dtype)
    b = torch.randn(3 * H).to(dtype)
    L = None
    if lengths:
        L = torch.randint(0, T + 1, (B,))
        L[0] = T  # one full-length row; others may be 0 (never live)
    rec_mask = torch.empty(B, H).bernoulli_(0.7).div_(0.7).to(dtype) if rec else None
    zone_mask = torch.rand(T, B, H) < 0.3 if zone else None
    return gi, h0, w, b, L, rec_mask, zone_mask


def _run(T, B, H, reset_after, reverse, lengths, rec=False, zone=False, spec=backends.PLAIN, dtype=F32,
         **plan_overrides):
    """Triton's and torch_loop's (float64, same rounded values) forward + backward outputs: lists of
    [buf, gates, dgi, (dgh_n,) dh0]."""
    gi, h0, w, b, L, rec_mask, zone_mask = _problem(T, B, H, dtype, lengths, rec, zone)
    opts = dict(rec_mask=rec_mask, zone_mask=zone_mask, spec=spec)
    plan = tb.plan_for(B, H, w.dtype, CPU, **plan_overrides)
    assert plan.mode == plan_overrides["mode"]
    buf, gates = launch.forward(gi, h0, w, b, L, reset_after, reverse, True, plan=plan, **opts)
    dbuf = torch.randn(T + 1, B, H).to(dtype)
    grads = launch.backward(dbuf, buf, gates, w, L, reset_after, reverse, plan=plan, **opts)
    opts64 = dict(opts, rec_mask=None if rec_mask is None else rec_mask.to(F64))
    rbuf, rgates = torch_loop.recurrence_forward(gi.to(F64), h0.to(F64), w.to(F64), b.to(F64), L, reset_after,
                                                 reverse, True, **opts64)
    rgrads = torch_loop.recurrence_backward(dbuf.to(F64), rbuf, rgates, w.to(F64), L, reset_after, reverse,
                                            **opts64)
    got = [t for t in (buf, gates, *grads) if t.numel()]
    want = [t for t in (rbuf, rgates, *rgrads) if t.numel()]
    assert len(got) == len(want) == (5 if reset_after else 4)
    return got, want


NAMES = ("buf", "gates", "dgi", "dgh_n", "dh0")


def _names(got):
    return NAMES if len(got) == 5 else NAMES[:3] + NAMES[4:]


def _assert_fp32(got, want):
    for name, g, x in zip(_names(got), got, want):
        assert g.dtype == F32, name
        torch.testing.assert_close(g.double(), x, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def _assert_rel(got, want, dtype, tol):
    """Half precision: outputs in the input dtype, relative (Frobenius) error below tol."""
    for name, g, x in zip(_names(got), got, want):
        assert g.dtype == dtype, f"{name} has dtype {g.dtype}, expected the input dtype {dtype}"
        assert torch.isfinite(g).all(), f"{name} has non-finite values"
        err = ((g.double() - x).norm() / x.norm().clamp_min(1e-6)).item()
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol}"


STEP = dict(mode="step", block_b=2, block_h=8)  # multi-program grid: the exchanges between programs run
PRODUCTS = (dict(resident=True), dict(resident=False, block_k=8), dict(use_dot=False))  # the 3 product paths


# ------------------------------------------------------------------------------ masks and zoneout


# (reset_after, reverse, lengths, product): the variants, directions and product paths spread over the cases
SPREAD = [(True, False, True, 0), (False, True, True, 1), (True, True, False, 2), (False, False, False, 0)]


@pytest.mark.parametrize("reset_after, reverse, lengths, product", SPREAD)
def test_recurrent_dropout(reset_after, reverse, lengths, product):
    got, want = _run(5, 3, 12, reset_after, reverse, lengths, rec=True, **STEP, **PRODUCTS[product])
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after, reverse, lengths, product", SPREAD)
def test_zoneout_training_mask(reset_after, reverse, lengths, product):
    got, want = _run(5, 3, 12, reset_after, reverse, lengths, zone=True, **STEP, **PRODUCTS[product])
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after, reverse, lengths", [(True, False, True), (False, True, True)])
def test_zoneout_eval_probability(reset_after, reverse, lengths):
    spec = CellSpec(zoneout=0.35)
    got, want = _run(5, 3, 12, reset_after, reverse, lengths, spec=spec, **STEP)
    _assert_fp32(got, want)


def test_eval_zoneout_inference_matches_training_forward():
    """save=False (inference) gives the same states as save=True, with nothing saved."""
    gi, h0, w, b, L, _, _ = _problem(4, 3, 12, F32, True, False, False)
    spec = CellSpec("hard_sigmoid", "softsign", zoneout=0.4)
    plan = tb.plan_for(3, 12, F32, CPU, **STEP)
    buf, gates = launch.forward(gi, h0, w, b, L, True, False, True, plan=plan, spec=spec)
    buf2, nothing = launch.forward(gi, h0, w, b, L, True, False, False, plan=plan, spec=spec)
    assert nothing.numel() == 0 and torch.equal(buf, buf2)


# ------------------------------------------------------------------------------------ activations

ACTIVATION_CASES = [  # (gate, candidate, reset_after, reverse, lengths)
    ("hard_sigmoid", "tanh", True, False, True),
    ("sigmoid", "relu", False, True, True),
    ("sigmoid", "softsign", True, True, False),
    ("sigmoid", "sigmoid", False, False, True),
    ("hard_sigmoid", "hard_sigmoid", True, False, False),
    ("hard_sigmoid", "relu", False, False, True),
]


@pytest.mark.parametrize("gate, cand, reset_after, reverse, lengths", ACTIVATION_CASES)
def test_activations(gate, cand, reset_after, reverse, lengths):
    spec = CellSpec(gate, cand, hard_sigmoid_alpha=1 / 6, hard_sigmoid_beta=0.45)  # not the defaults
    got, want = _run(5, 3, 12, reset_after, reverse, lengths, rec=reset_after, spec=spec, **STEP)
    _assert_fp32(got, want)


# ------------------------------------------------------------------- every option, every mode

ALL = CellSpec("hard_sigmoid", "softsign", hard_sigmoid_alpha=0.25, hard_sigmoid_beta=0.5)


@pytest.mark.parametrize("reset_after, reverse, lengths", [(True, False, True), (False, True, True)])
def test_gemm_mode(reset_after, reverse, lengths):
    """cuBLAS (torch.mm here) multiplies the masked state h * rec_mask; the kernel does the rest."""
    got, want = _run(4, 3, 16, reset_after, reverse, lengths, rec=True, zone=True, spec=ALL, **STEP | {"mode": "gemm"})
    _assert_fp32(got, want)


def test_gemm_mode_eval_zoneout():
    spec = CellSpec("sigmoid", "relu", zoneout=0.2)
    got, want = _run(4, 3, 16, True, True, True, rec=True, spec=spec, mode="gemm", block_b=2, block_h=8)
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after, reverse, resident", [(True, False, False), (False, True, True)])
def test_persistent_one_program(reset_after, reverse, resident):
    """The persistent kernels (time loop inside, W loaded once when resident) on a one-program grid with
    the barrier code switched on, every option at once."""
    got, want = _run(6, 3, 24, reset_after, reverse, True, rec=True, zone=True, spec=ALL, mode="persistent",
                     sync=True, resident=resident, block_k=16)
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after, mode", [(True, "step"), (False, "gemm")])
def test_bf16(reset_after, mode):
    """bf16 inputs, weights and masks (fp32 state): outputs in bf16, close to float64 on the same values.
    The backward works from bf16-rounded saved gates and states (as cuDNN's): relative errors have a
    median of ~5e-3 and reach ~1e-2 in single draws of this small problem, hence 2e-2 (a wrong term
    gives O(1)). Smooth activations: a bf16-rounded hard-sigmoid output can land on its kink."""
    spec = CellSpec("sigmoid", "softsign")
    got, want = _run(5, 3, 16, reset_after, not reset_after, True, rec=True, zone=True, spec=spec, dtype=BF16,
                     mode=mode, block_b=2, block_h=8)
    _assert_rel(got, want, BF16, 2e-2)


def test_default_plan_through_contract_functions():
    """The public contract functions with the heuristic's own plan (one persistent program here)."""
    gi, h0, w, b, L, rec_mask, zone_mask = _problem(4, 2, 16, F32, True, True, True)
    spec = CellSpec("hard_sigmoid", "relu")
    opts = dict(rec_mask=rec_mask, zone_mask=zone_mask, spec=spec)
    buf, gates = tb.recurrence_forward(gi, h0, w, b, L, False, False, True, **opts)
    rbuf, rgates = torch_loop.recurrence_forward(gi.double(), h0.double(), w.double(), b.double(), L, False, False,
                                                 True, **dict(opts, rec_mask=rec_mask.double()))
    dbuf = torch.randn_like(buf)
    got = tb.recurrence_backward(dbuf, buf, gates, w, L, False, False, **opts)
    want = torch_loop.recurrence_backward(dbuf.double(), rbuf, rgates, w.double(), L, False, False,
                                          **dict(opts, rec_mask=rec_mask.double()))
    _assert_fp32([buf, gates, got[0], got[2]], [rbuf, rgates, want[0], want[2]])


# ------------------------------------------------------------------------------- validation, selection


def test_cell_option_validation_names_the_argument():
    gi, h0, w, b, _, rec_mask, zone_mask = _problem(3, 2, 8, F32, False, True, True)
    with pytest.raises(ValueError, match="rec_mask must be"):
        tb.recurrence_forward(gi, h0, w, b, None, True, False, False, rec_mask=rec_mask[:1])
    with pytest.raises(TypeError, match="rec_mask must be a floating-point"):
        tb.recurrence_forward(gi, h0, w, b, None, True, False, False, rec_mask=rec_mask > 0)
    with pytest.raises(ValueError, match="zone_mask must be"):
        tb.recurrence_forward(gi, h0, w, b, None, True, False, False, zone_mask=zone_mask[1:])
    with pytest.raises(TypeError, match="zone_mask must be a bool"):
        tb.recurrence_forward(gi, h0, w, b, None, True, False, False, zone_mask=zone_mask.float())
    with pytest.raises(ValueError, match="ln_gain must be"):  # the layer norm: tests/backends/test_triton_layer_norm.py
        tb.recurrence_forward(gi, h0, w, b, None, True, False, False, ln_gain=torch.ones(23))


def test_select_routes_cell_options_to_triton_on_cuda(monkeypatch):
    """With a usable CUDA device (mocked), 'auto' and 'triton' take Triton for the cell options; a layer
    norm of unknown hidden size runs in the torch loop under 'auto' and is refused by 'triton' (known sizes:
    tests/backends/test_triton_layer_norm.py)."""
    monkeypatch.setattr(tb, "is_available", lambda device=None: True)
    cuda = torch.device("cuda")
    assert tb.SUPPORTS_CELL_OPTIONS and tb.SUPPORTS_LAYER_NORM
    for name in ("auto", "triton"):
        assert backends.select(cuda, name, plain=False, dtype=F32) is tb
        assert backends.select(cuda, name, plain=False, dtype=BF16) is tb
    assert backends.select(cuda, "auto", plain=False, layer_norm=True) is torch_loop
    with pytest.raises(RuntimeError, match="layer norm"):
        backends.select(cuda, "triton", plain=False, layer_norm=True)
    assert backends.select(CPU, "auto", plain=False) is not tb  # CPU tensors never go to Triton


def test_through_the_module_with_regularisation(monkeypatch):
    """fastgru.nn.GRU with recurrent dropout, zoneout and other activations on backend='triton' (selection
    mocked to accept the interpreter's CPU tensors) equals backend='torch' with the same masks, outputs and
    every gradient (the caller pairs dW_hh with the masked state)."""
    import fastgru

    monkeypatch.setattr(tb, "is_available", lambda device=None: True)
    T, B, I, H = 4, 3, 5, 8
    kw = dict(recurrent_dropout=0.3, zoneout=0.25, gate_activation="hard_sigmoid", candidate_activation="softsign")
    ref = fastgru.nn.GRU(I, H, backend="torch", **kw)
    m = fastgru.nn.GRU(I, H, backend="triton", **kw)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    lengths = torch.tensor([4, 2, 3])
    seed = int(torch.randint(0, 2**31, ()))
    results = []
    for model in (m, ref):
        xx = x.clone().requires_grad_(True)
        torch.manual_seed(seed)  # the same masks for both
        y, h = model(xx, lengths=lengths)
        g = torch.autograd.grad(y.square().sum() + h.sum(), [xx, *model.parameters()])
        results.append([y, h, *g])
    for k, (a, b) in enumerate(zip(*results)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda msg, k=k: f"output {k}: {msg}")
