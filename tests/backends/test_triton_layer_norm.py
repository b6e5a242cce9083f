"""The Triton backend's recurrent layer norm (ln_gain, LayerNormGRU) under TRITON_INTERPRET=1 on CPU tensors.

Oracle: fastgru.backends.torch_loop, the pure-torch loop of the same contract, run in float64 on the same
(rounded) inputs; fresh random inputs, weights, gains (away from 1) and masks in every test. Compared:
forward buf and the saved row (gates, then xhat and the 2 rstd), backward dgi, dgh_n, dh0 and dgh_pre,
both variants, reverse, lengths, recurrent dropout, zoneout (mask and eval probability), activations, in
the per-step (grid of several batch blocks), persistent (one-program grid, barrier code on) and 'gemm'
(torch.mm here) modes, resident / streamed / broadcast products, and bf16. Also: the plan's and
select()'s limits (H <= LN_MAX_H, one program per row block) with a mocked CUDA device, and
fastgru.nn.LayerNormGRU(backend='triton') against backend='torch', outputs and every gradient.
Not covered here (needs a GPU): compilation for a real device, register pressure at H near LN_MAX_H, speed.
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
from test_triton_cell_options import _problem as cell_problem  # noqa: E402

from fastgru import backends  # noqa: E402
from fastgru.backends import CellSpec, saved_width, torch_loop  # noqa: E402
from fastgru.backends import triton as tb  # noqa: E402
from fastgru.backends.triton import heuristics, launch  # noqa: E402

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
NAMES = ("buf", "gates", "dgi", "dgh_n", "dh0", "dgh_pre")


def _gain(H, dtype=F32):
    """A layer-norm gain away from 1 (and from 0), with both signs of deviation."""
    return (1 + 0.6 * (2 * torch.rand(3 * H) - 1)).to(dtype)


def _problem(T, B, H, dtype, lengths, rec, zone):
    """test_triton_cell_options' random problem plus a layer-norm gain."""
    return (*cell_problem(T, B, H, dtype, lengths, rec, zone), _gain(H, dtype))


def _run(T, B, H, reset_after, reverse, lengths, rec=False, zone=False, spec=backends.PLAIN, dtype=F32, **plan):
    """Triton's and torch_loop's (float64, same rounded values) outputs: [buf, gates, dgi, dgh_n?, dh0, dpre]."""
    gi, h0, w, b, L, rec_mask, zone_mask, gain = _problem(T, B, H, dtype, lengths, rec, zone)
    opts = dict(rec_mask=rec_mask, zone_mask=zone_mask, spec=spec, ln_gain=gain)
    p = tb.plan_for(B, H, w.dtype, CPU, layer_norm=True, **plan)
    assert p.mode == plan["mode"] and p.n_h == 1
    buf, gates = launch.forward(gi, h0, w, b, L, reset_after, reverse, True, plan=p, **opts)
    assert gates.shape == (T, B, saved_width(reset_after, True, H))
    dbuf = torch.randn(T + 1, B, H).to(dtype)
    grads = launch.backward(dbuf, buf, gates, w, L, reset_after, reverse, plan=p, **opts)
    assert len(grads) == 4  # dgi, dgh_n, dh0, dgh_pre (the gain's gradient is the caller's)
    o64 = dict(opts, rec_mask=None if rec_mask is None else rec_mask.to(F64), ln_gain=gain.to(F64))
    rbuf, rgates = torch_loop.recurrence_forward(gi.to(F64), h0.to(F64), w.to(F64), b.to(F64), L, reset_after,
                                                 reverse, True, **o64)
    rgrads = torch_loop.recurrence_backward(dbuf.to(F64), rbuf, rgates, w.to(F64), L, reset_after, reverse, **o64)
    got = [t for t in (buf, gates, *grads) if t.numel()]
    want = [t for t in (rbuf, rgates, *rgrads) if t.numel()]
    assert len(got) == len(want) == (6 if reset_after else 5)
    return got, want


def _names(got):
    return NAMES if len(got) == 6 else NAMES[:3] + NAMES[4:]


def _assert_fp32(got, want, tol=2e-5):
    """fp32 vs float64: the norms divide by the spread of 3H (or H) values, amplifying fp32 rounding a little
    over a plain GRU (as tests/nn/test_layer_norm_gru.py notes), hence 2e-5 instead of 1e-5."""
    for name, g, x in zip(_names(got), got, want):
        assert g.dtype == F32, name
        torch.testing.assert_close(g.double(), x, rtol=tol, atol=tol, msg=lambda m, name=name: f"{name}: {m}")


STEP = dict(mode="step", block_b=2, block_h=16)  # 2 batch blocks of one program each (H <= 16)
ALL = CellSpec("hard_sigmoid", "softsign", hard_sigmoid_alpha=0.25, hard_sigmoid_beta=0.5)

# (reset_after, reverse, lengths, rec, zone, spec, plan): variants, directions, options, modes and the three
# product paths (resident W tile, W streamed in chunks, broadcast product without tl.dot) spread over cases
CASES = [
    (True, False, True, True, True, backends.PLAIN, STEP | dict(resident=True)),
    (False, True, True, True, True, backends.PLAIN, STEP | dict(resident=False, block_k=4)),
    (True, True, False, False, False, ALL, STEP | dict(use_dot=False)),
    (False, False, True, False, False, CellSpec(zoneout=0.3), STEP | dict(resident=True)),
    (True, True, True, True, True, ALL, dict(mode="persistent", block_b=4, sync=True, resident=False, block_k=8)),
    (False, False, True, True, True, ALL, dict(mode="persistent", block_b=4, sync=True, resident=True)),
    (True, False, True, True, False, CellSpec(zoneout=0.2), dict(mode="gemm", block_b=2)),
    (False, True, False, True, True, backends.PLAIN, dict(mode="gemm", block_b=2)),
]


@pytest.mark.parametrize("reset_after, reverse, lengths, rec, zone, spec, plan", CASES)
def test_matches_torch_loop(reset_after, reverse, lengths, rec, zone, spec, plan):
    H = 12 if plan["mode"] != "gemm" else 8  # 12: padded lanes (h_pad 16) must stay out of the norms
    got, want = _run(5, 3, H, reset_after, reverse, lengths, rec=rec, zone=zone, spec=spec, **plan)
    _assert_fp32(got, want)


@pytest.mark.parametrize("reset_after", [True, False])
def test_bf16(reset_after):
    """bf16 inputs, weights, gain and masks (fp32 state and norm statistics): outputs in bf16, relative error
    against float64 on the same values below 2e-2 (rounded saved gates / xhat / rstd, as without the norm;
    a wrong term gives O(1))."""
    got, want = _run(5, 3, 16, reset_after, not reset_after, True, rec=True, zone=True,
                     spec=CellSpec("sigmoid", "softsign"), dtype=BF16, mode="step", block_b=2, block_h=16)
    for name, g, x in zip(_names(got), got, want):
        assert g.dtype == BF16, name
        assert torch.isfinite(g).all(), name
        err = ((g.double() - x).norm() / x.norm().clamp_min(1e-6)).item()
        assert err < 2e-2, f"{name}: relative error {err:.2e}"


def test_default_plan_through_contract_functions():
    """The public contract functions with the heuristic's own plan (block_h >= H, one persistent program)."""
    gi, h0, w, b, L, rec_mask, zone_mask, gain = _problem(4, 2, 16, F32, True, True, True)
    plan = tb.plan_for(2, 16, F32, CPU, layer_norm=True)
    assert plan.n_h == 1 and plan.mode == "persistent"
    opts = dict(rec_mask=rec_mask, zone_mask=zone_mask, ln_gain=gain)
    o64 = dict(opts, rec_mask=rec_mask.double(), ln_gain=gain.double())
    buf, gates = tb.recurrence_forward(gi, h0, w, b, L, True, False, True, **opts)
    rbuf, rgates = torch_loop.recurrence_forward(gi.double(), h0.double(), w.double(), b.double(), L, True, False,
                                                 True, **o64)
    dbuf = torch.randn_like(buf)
    got = tb.recurrence_backward(dbuf, buf, gates, w, L, True, False, **opts)
    want = torch_loop.recurrence_backward(dbuf.double(), rbuf, rgates, w.double(), L, True, False, **o64)
    _assert_fp32([buf, gates, *got], [rbuf, rgates, *want])


# ------------------------------------------------------------------------------- limits, selection


def test_plan_limits_and_validation():
    assert heuristics.supports_layer_norm(heuristics.LN_MAX_H)
    assert not heuristics.supports_layer_norm(heuristics.LN_MAX_H + 1)
    p = heuristics.make_plan(256, heuristics.LN_MAX_H, 2, 132, False, layer_norm=True)
    assert p.n_h == 1 and p.block_h >= heuristics.LN_MAX_H and p.mode == "persistent"
    assert p.block_b * p.h_pad <= heuristics.LN_TILE_ELEMS
    with pytest.raises(ValueError, match="H <= "):
        heuristics.make_plan(4, heuristics.LN_MAX_H + 1, 4, 132, False, layer_norm=True)
    with pytest.raises(ValueError, match="block_h >= H"):
        heuristics.make_plan(4, 32, 4, None, True, layer_norm=True, block_h=16)
    gi, h0, w, b, _, _, _, gain = _problem(3, 2, 8, F32, False, False, False)
    with pytest.raises(ValueError, match="ln_gain must be"):
        tb.recurrence_forward(gi, h0, w, b, None, True, False, False, ln_gain=gain[1:])
    small = tb.plan_for(2, 8, F32, CPU, mode="step", block_h=4)  # a plain plan: 2 programs per row
    with pytest.raises(ValueError, match="cover all H"):
        launch.forward(gi, h0, w, b, None, True, False, False, plan=small, ln_gain=gain)
    buf, gates = tb.recurrence_forward(gi, h0, w, b, None, False, False, True)  # saved without the norm
    with pytest.raises(ValueError, match="gates must be"):
        tb.recurrence_backward(torch.randn_like(buf), buf, gates, w, None, False, False, ln_gain=gain)


def test_select_layer_norm_on_cuda(monkeypatch):
    """Mocked usable CUDA device: the layer norm goes to Triton for hidden sizes it takes; larger (or unknown)
    ones run in the torch loop under 'auto' and are refused, before any launch, by 'triton'."""
    monkeypatch.setattr(tb, "is_available", lambda device=None: True)
    cuda = torch.device("cuda")
    big = heuristics.LN_MAX_H + 1
    for name in ("auto", "triton"):
        for dtype in (F32, BF16):
            assert backends.select(cuda, name, plain=False, dtype=dtype, layer_norm=True, hidden_size=64) is tb
    assert backends.select(cuda, "auto", layer_norm=True, hidden_size=big) is torch_loop
    assert backends.select(cuda, "auto", layer_norm=True) is torch_loop
    with pytest.raises(RuntimeError, match=f"layer norm.*hidden size {big}"):
        backends.select(cuda, "triton", layer_norm=True, hidden_size=big)
    with pytest.raises(RuntimeError, match="layer norm.*hidden_size="):
        backends.select(cuda, "triton", layer_norm=True)
    assert backends.select(cuda, "auto", plain=False, dtype=F32) is tb  # cell options unchanged
    assert backends.select(CPU, "auto", layer_norm=True, hidden_size=8) is not tb  # CPU never goes to Triton


@pytest.mark.parametrize("reset_after", [True, False])
def test_layer_norm_gru_module_end_to_end(monkeypatch, reset_after):
    """fastgru.nn.LayerNormGRU(backend='triton') (selection mocked to accept the interpreter's CPU tensors)
    equals backend='torch': outputs, h_n and the gradients of the input and of every parameter (the gains'
    summed by the caller from the saved xhat), with lengths and recurrent dropout (same seed, same mask)."""
    import fastgru

    monkeypatch.setattr(tb, "is_available", lambda device=None: True)
    T, B, I, H = 4, 3, 5, 8
    kw = dict(reset_after=reset_after, recurrent_dropout=0.3)
    ref = fastgru.nn.LayerNormGRU(I, H, backend="torch", **kw)
    m = fastgru.nn.LayerNormGRU(I, H, backend="triton", **kw)
    state = ref.state_dict()
    for k in state:
        if k.startswith("ln_weight"):
            state[k] = _gain(H)
    ref.load_state_dict(state)
    m.load_state_dict(state)
    x = torch.randn(T, B, I)
    lengths = torch.tensor([4, 2, 3])
    seed = int(torch.randint(0, 2**31, ()))
    results = []
    for model in (m, ref):
        xx = x.clone().requires_grad_(True)
        torch.manual_seed(seed)
        y, h = model(xx, lengths=lengths)
        names, params = zip(*model.named_parameters())
        g = torch.autograd.grad(y.square().sum() + h.sum(), [xx, *params])
        results.append(([y, h, *g], ("y", "h_n", "dx", *names)))
    (got, names), (want, _) = results
    assert any(n.startswith("ln_weight_hh") for n in names)
    for name, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5, msg=lambda msg, name=name: f"{name}: {msg}")
