"""Every option is validated once, in one place, and every backend path goes through it."""

from __future__ import annotations

import math

import pytest
import torch

import fastgru
from fastgru import functional
from fastgru.backends import CellSpec

NAN, INF = math.nan, math.inf

BAD_OPTIONS = [
    (dict(hard_sigmoid=(NAN, 0.5)), "hard_sigmoid alpha must be a finite number"),
    (dict(hard_sigmoid=(0.2, NAN)), "hard_sigmoid beta must be a finite number"),
    (dict(hard_sigmoid=(INF, 0.5)), "hard_sigmoid alpha must be a finite number"),
    (dict(hard_sigmoid=(0.0, 0.5)), "alpha must be > 0"),
    (dict(hard_sigmoid=(-0.2, 0.5)), "alpha must be > 0"),
    (dict(hard_sigmoid=(0.2,)), "hard_sigmoid must be a pair"),
    (dict(hard_sigmoid=("0.2", 0.5)), "hard_sigmoid alpha must be a finite number"),
    (dict(zoneout=NAN), "zoneout must be a number in"),
    (dict(zoneout=1.0), "zoneout must be a number in"),
    (dict(zoneout=-0.1), "zoneout must be a number in"),
    (dict(input_dropout=NAN), "input_dropout must be a number in"),
    (dict(recurrent_dropout=1.0), "recurrent_dropout must be a number in"),
    (dict(dropout=NAN), "dropout must be a number in"),
    (dict(dropout=1.5), "dropout must be a number in"),
    (dict(gate_activation="tanh"), "gate_activation must be one of"),
    (dict(candidate_activation="swish"), "candidate_activation must be one of"),
    (dict(backend="gpu"), "backend must be one of"),
    (dict(init="glorot"), "init must be one of"),
    (dict(reset_after="false"), "reset_after must be True or False"),
    (dict(bidirectional="no"), "bidirectional must be True or False"),
    (dict(batch_first=2), "batch_first must be True or False"),
    (dict(bias=None), "bias must be True or False"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS, ids=[str(o) for o, _ in BAD_OPTIONS])
def test_bad_gru_options_are_refused_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        fastgru.nn.GRU(3, 4, **options)


@pytest.mark.parametrize("alpha,beta", [(NAN, 0.5), (0.2, INF), (-1.0, 0.5)])
def test_cell_spec_refuses_bad_hard_sigmoid_for_every_backend(alpha, beta):
    """CellSpec is what every backend reads; it cannot exist with options a backend would read differently."""
    with pytest.raises(ValueError, match="hard_sigmoid"):
        CellSpec("hard_sigmoid", "tanh", alpha, beta)


@pytest.mark.parametrize("name", ["dropout", "input_dropout", "recurrent_dropout", "zoneout"])
@pytest.mark.parametrize("value", [NAN, -0.5, 1.5])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_functional_refuses_bad_probabilities_on_every_backend(name, value, backend):
    m = fastgru.nn.GRU(3, 4)
    with pytest.raises(ValueError, match=f"{name} must be a number in"):
        functional.gru(torch.randn(5, 2, 3), None, m._groups(), training=True, backend=backend, **{name: value})


def test_cell_spec_key_round_trip_validates():
    """The string key that carries a CellSpec through the custom op is parsed back into a checked spec."""
    with pytest.raises(ValueError, match="hard_sigmoid alpha"):
        functional._spec_from_key("hard_sigmoid,tanh,nan,0.5,0.0")


@pytest.mark.parametrize("options", [dict(hard_sigmoid=(1 / 6, 0.5), gate_activation="hard_sigmoid"),
                                     dict(bias=0, batch_first=1), dict(dropout=1.0, num_layers=2)])
def test_valid_edge_options_still_build(options):
    m = fastgru.nn.GRU(3, 4, **options)
    assert m(torch.randn(2, 5, 3) if m.batch_first else torch.randn(5, 2, 3))[0].shape[-1] == 4


@pytest.mark.parametrize("options,message", [(dict(backend="gpu"), "backend"), (dict(init="x"), "init"),
                                             (dict(reset_after="yes"), "reset_after")])
def test_gru_cell_options(options, message):
    with pytest.raises(ValueError, match=message):
        fastgru.nn.GRUCell(3, 4, **options)


def test_backends_agree_on_an_accepted_hard_sigmoid():
    """What is accepted runs the same on the fused CPU kernel and the torch loop (NaN never gets here)."""
    x = torch.randn(6, 2, 3)
    outs = []
    for backend in ("cpu", "torch"):
        torch.manual_seed(0)
        m = fastgru.nn.GRU(3, 4, gate_activation="hard_sigmoid", hard_sigmoid=(0.7, 0.3), backend=backend)
        with torch.no_grad():
            outs.append(m(x)[0])
    assert torch.isfinite(outs[0]).all() and (outs[0] - outs[1]).abs().max() < 1e-5


def test_jit_script_fails_with_a_message_that_points_elsewhere():
    model = torch.nn.Sequential(fastgru.nn.GRU(3, 4))
    with pytest.raises(RuntimeError, match=r"torch.jit.script does not support fastgru.nn.GRU: use torch.compile"):
        torch.jit.script(model)
