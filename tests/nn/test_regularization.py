"""Recurrent dropout, input dropout, zoneout and activations inside the fused recurrence."""

import pytest
import torch
from conftest import CORE_BACKENDS
from helpers import rel_err

import fastgru
from fastgru import functional, reference
from fastgru.backends import CellSpec

ACTIVATION_PAIRS = [("sigmoid", "tanh"), ("hard_sigmoid", "tanh"), ("sigmoid", "relu"), ("hard_sigmoid", "softsign"),
                    ("sigmoid", "sigmoid"), ("sigmoid", "hard_sigmoid")]


def _groups(m, params=None):
    params = params or dict(m.named_parameters())
    return [tuple(params[n] for n in names.split(","))
            for names in functional.weight_names(m.num_layers, m.bidirectional)]


def _reference_with_masks(m, x, masks, lengths=None, training=True, params=None):
    """Stacked reference run with the given per-layer-direction masks (or eval zoneout)."""
    groups = _groups(m, params)
    dirs = 2 if m.bidirectional else 1
    layer_in = x.double()
    finals = []
    cell = dict(gate_activation=m.cell.gate_activation, candidate_activation=m.cell.candidate_activation,
                hard_sigmoid=(m.cell.hard_sigmoid_alpha, m.cell.hard_sigmoid_beta))
    for layer in range(m.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            mk = masks[k] if masks else functional.LayerMasks()
            xin = layer_in if mk.input is None else layer_in * mk.input.double()
            zone = mk.zoneout if training else m.zoneout
            zone = 0.0 if zone is None else zone
            h0 = torch.zeros(x.shape[1], m.hidden_size, dtype=torch.float64)
            y, h = reference.gru_layer(xin, h0, groups[k], m.reset_after, d == 1, lengths, mk.recurrent, zone, **cell)
            outs.append(y)
            finals.append(h)
        layer_in = torch.cat(outs, 2)
    return layer_in, torch.stack(finals)


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_training_masks_match_reference_with_same_masks(backend, reset_after, fresh_seed):
    T, B, I, H = 6, 4, 3, 5
    m = fastgru.nn.GRU(I, H, num_layers=2, bidirectional=True, reset_after=reset_after, backend=backend,
                       input_dropout=0.3, recurrent_dropout=0.4, zoneout=0.25)
    x = torch.randn(T, B, I, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1])
    torch.manual_seed(fresh_seed + 1)
    y, h = m(x, lengths=lengths)
    torch.manual_seed(fresh_seed + 1)  # the same masks, drawn the documented way
    masks = functional.draw_masks(x, [I, 2 * H], H, True, input_dropout=0.3, recurrent_dropout=0.4, zoneout=0.25)
    assert all(mk.zoneout is not None and mk.recurrent is not None for mk in masks)
    x64 = x.detach().double().requires_grad_()
    params64 = {n: p.detach().double().requires_grad_() for n, p in m.named_parameters()}
    y64, h64 = _reference_with_masks(m, x64, masks, lengths, params=params64)
    assert rel_err(y, y64) < 1e-5 and rel_err(h, h64) < 1e-5
    w_y, w_h = torch.randn_like(y), torch.randn_like(h)
    ((y * w_y).sum() + (h * w_h).sum()).backward()
    ((y64 * w_y.double()).sum() + (h64 * w_h.double()).sum()).backward()
    assert rel_err(x.grad, x64.grad) < 1e-5
    for n, p in m.named_parameters():
        assert rel_err(p.grad, params64[n].grad) < 1e-5, n


@pytest.mark.parametrize("backend", CORE_BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("gate, cand", ACTIVATION_PAIRS)
def test_gradcheck_with_masks_and_activations(backend, reset_after, gate, cand):
    T, B, I, H = 4, 3, 3, 4
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(3 * H, I, dtype=torch.float64, requires_grad=True),
          torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True),
          torch.randn(3 * H, dtype=torch.float64, requires_grad=True),
          torch.randn(3 * H, dtype=torch.float64, requires_grad=True)]
    rec = torch.bernoulli(torch.full((B, H), 0.7, dtype=torch.float64)) / 0.7
    zone = torch.bernoulli(torch.full((T, B, H), 0.3, dtype=torch.float64))
    spec = CellSpec(gate, cand, 1 / 6, 0.5)
    lengths = torch.tensor([4, 1, 3])

    def f(*args):
        return functional.gru_layer(*args, reset_after=reset_after, lengths=lengths, backend=backend,
                                    rec_mask=rec, zone_mask=zone, spec=spec)

    # hard_sigmoid / relu have kinks: keep the check away from them by small random weights
    assert torch.autograd.gradcheck(f, (x, h0, *ws), atol=1e-6)
    y, h = f(x, h0, *ws)
    y_ref, h_ref = reference.gru_layer(x, h0, tuple(ws), reset_after, False, lengths, rec, zone,
                                       gate_activation=gate, candidate_activation=cand, hard_sigmoid=(1 / 6, 0.5))
    assert rel_err(y, y_ref) < 1e-12 and rel_err(h, h_ref) < 1e-12


@pytest.mark.parametrize("backend", CORE_BACKENDS)
def test_eval_mode_dropouts_are_inactive_and_zoneout_uses_expectation(backend):
    kw = dict(num_layers=2, bidirectional=True, backend=backend)
    plain = fastgru.nn.GRU(3, 4, **kw)
    dropped = fastgru.nn.GRU(3, 4, input_dropout=0.5, recurrent_dropout=0.5, **kw)
    dropped.load_state_dict(plain.state_dict())
    plain.eval()
    dropped.eval()
    x = torch.randn(7, 2, 3)
    assert torch.equal(plain(x)[0], dropped(x)[0])
    zoned = fastgru.nn.GRU(3, 4, zoneout=0.3, **kw).eval()
    zoned.load_state_dict(plain.state_dict())
    y, h = zoned(x)
    y_ref, h_ref = _reference_with_masks(zoned, x, None, training=False)
    assert rel_err(y, y_ref) < 1e-5 and rel_err(h, h_ref) < 1e-5
    assert rel_err(y, plain(x)[0]) > 1e-3  # zoneout really changes the eval output


def test_mask_statistics():
    x = torch.randn(50, 64, 8)
    masks = functional.draw_masks(x, [8], 32, False, input_dropout=0.2, recurrent_dropout=0.3, zoneout=0.15)
    mk = masks[0]
    kept_in = (mk.input > 0).float().mean().item()
    kept_rec = (mk.recurrent > 0).float().mean().item()
    zoned = mk.zoneout.float().mean().item()
    assert abs(kept_in - 0.8) < 0.06 and abs(kept_rec - 0.7) < 0.06 and abs(zoned - 0.15) < 0.01
    assert torch.allclose(mk.input[mk.input > 0], torch.tensor(1 / 0.8))  # inverted-dropout scaling
    assert torch.allclose(mk.recurrent[mk.recurrent > 0], torch.tensor(1 / 0.7))


@pytest.mark.parametrize("p", [0.03, 0.15, 0.5, 0.9])
def test_zoneout_mask_generator_statistics_and_seeding(p):
    """The CPU extension's parallel keep-mask generator: right rate, adjacent units (and steps)
    independent, reproduced by torch.manual_seed, fresh between draws."""
    x = torch.randn(2, 2, 2)
    shape = (200, 64, 32)  # 409,600 draws: the rate's standard error is below 0.001
    torch.manual_seed(7)
    a = functional._keep_mask(shape, p, x)
    torch.manual_seed(7)
    b = functional._keep_mask(shape, p, x)
    c = functional._keep_mask(shape, p, x)
    assert a.dtype == torch.bool and a.shape == shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    af = a.float()
    assert abs(af.mean().item() - p) < 0.005
    assert abs((af[..., 1:] * af[..., :-1]).mean().item() - p * p) < 0.005  # neighbouring units
    assert abs((af[1:] * af[:-1]).mean().item() - p * p) < 0.005  # the same unit at consecutive steps
    assert abs((a ^ c).float().mean().item() - 2 * p * (1 - p)) < 0.005  # two draws independent


def test_masks_drawn_once_per_call_and_fresh_between_calls():
    m = fastgru.nn.GRU(3, 4, recurrent_dropout=0.5)
    x = torch.randn(5, 2, 3)
    assert not torch.equal(m(x)[0], m(x)[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(recurrent_dropout=1.0), "recurrent_dropout"),
    (dict(zoneout=-0.1), "zoneout"),
    (dict(gate_activation="tanh"), "gate_activation"),
    (dict(candidate_activation="gelu"), "candidate_activation"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastgru.nn.GRU(3, 4, **kwargs)
