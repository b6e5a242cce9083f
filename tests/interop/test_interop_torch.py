"""torch.nn.GRU / GRUCell <-> fastgru: outputs equal torch's own, round trips bit-exact, refusals named."""

import pytest
import torch
from interop_util import TOL, max_err, ragged_lengths, randomize_, same_state
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastgru
from fastgru.interop import InteropError, from_torch, to_torch

SHAPES = [  # num_layers, bidirectional, bias, batch_first
    (1, False, True, False),
    (2, False, True, True),
    (1, True, False, False),
    (2, True, True, False),
]


def torch_ragged(module: torch.nn.GRU, x, h0, lengths):
    """torch.nn.GRU's own answer for a padded batch: pack, run, pad back."""
    packed = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=False)
    out, h_n = module(packed, h0)
    seq_len = x.shape[1 if module.batch_first else 0]
    out, _ = pad_packed_sequence(out, batch_first=module.batch_first, total_length=seq_len)
    return out, h_n


@pytest.mark.parametrize("num_layers,bidirectional,bias,batch_first", SHAPES)
def test_from_torch_matches_torch(num_layers, bidirectional, bias, batch_first):
    T, B, I, H = 7, 4, 3, 5
    src = randomize_(torch.nn.GRU(I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional))
    ours = from_torch(src)
    assert type(ours) is fastgru.nn.GRU and ours.batch_first == batch_first and ours.reset_after
    x = torch.randn((B, T, I) if batch_first else (T, B, I))
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), B, H)
    lengths = ragged_lengths(B, T)
    with torch.no_grad():
        for got, want in zip(ours(x, h0), src(x, h0)):
            assert max_err(got, want) < TOL
        for got, want in zip(ours(x, h0, lengths=lengths), torch_ragged(src, x, h0, lengths)):
            assert max_err(got, want) < TOL


@pytest.mark.parametrize("num_layers,bidirectional,bias,batch_first", SHAPES)
def test_to_torch_matches_fastgru_and_round_trips(num_layers, bidirectional, bias, batch_first):
    T, B, I, H = 6, 3, 4, 5
    ours = randomize_(fastgru.nn.GRU(I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional))
    theirs = to_torch(ours)
    assert type(theirs) is torch.nn.GRU
    x = torch.randn((B, T, I) if batch_first else (T, B, I))
    with torch.no_grad():
        for got, want in zip(theirs(x), ours(x)):
            assert max_err(got, want) < TOL
    assert same_state(from_torch(theirs), ours)  # fastgru -> torch -> fastgru
    assert same_state(to_torch(from_torch(theirs)), theirs)  # torch -> fastgru -> torch


def test_float64_and_train_mode_carry_over():
    src = randomize_(torch.nn.GRU(3, 4, dtype=torch.float64, dropout=0.0)).train()
    ours = from_torch(src)
    assert ours.weight_hh_l0.dtype == torch.float64 and ours.training
    assert same_state(ours, src)
    assert not to_torch(ours.eval()).training


@pytest.mark.parametrize("bias", [True, False])
def test_cell_both_directions(bias):
    B, I, H = 5, 3, 4
    src = randomize_(torch.nn.GRUCell(I, H, bias=bias))
    ours = from_torch(src)
    assert type(ours) is fastgru.nn.GRUCell
    x, h = torch.randn(B, I), torch.randn(B, H)
    with torch.no_grad():
        assert max_err(ours(x, h), src(x, h)) < TOL
    back = to_torch(ours)
    assert type(back) is torch.nn.GRUCell and same_state(back, src)


def test_to_torch_refuses_what_torch_cannot_compute():
    with pytest.raises(InteropError, match="reset_after=False"):
        to_torch(fastgru.nn.GRU(3, 4, reset_after=False))
    with pytest.raises(InteropError, match="candidate_activation='relu'"):
        to_torch(fastgru.nn.GRU(3, 4, candidate_activation="relu"))
    with pytest.raises(InteropError, match="zoneout=0.1"):
        to_torch(fastgru.nn.GRU(3, 4, zoneout=0.1))
    with pytest.raises(InteropError, match="recurrent_dropout=0.2.*ignore_training_options"):
        to_torch(fastgru.nn.GRU(3, 4, recurrent_dropout=0.2))
    with pytest.warns(UserWarning, match="recurrent_dropout"):
        out = to_torch(fastgru.nn.GRU(3, 4, recurrent_dropout=0.2), ignore_training_options=True)
    assert type(out) is torch.nn.GRU


def test_wrong_modules_are_refused_by_name():
    with pytest.raises(InteropError, match="torch.nn.GRU"):
        from_torch(torch.nn.LSTM(3, 4))
    with pytest.raises(InteropError, match="LayerNormGRU"):
        to_torch(fastgru.nn.LayerNormGRU(3, 4))
