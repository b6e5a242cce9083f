"""Bad input fails before any work with fastgru.GRUInputError naming the argument."""

import pytest
import torch

import fastgru
from fastgru import GRUInputError


@pytest.fixture
def gru():
    return fastgru.nn.GRU(4, 3, num_layers=2)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: (torch.randn(2, 3, 4, 5),), "input must be 3-D"),
        (lambda: (torch.randn(5, 2, 7),), "input_size=4"),
        (lambda: (torch.randn(0, 2, 4),), "empty sequence"),
        (lambda: (torch.randn(5, 0, 4),), "empty batch"),
        (lambda: (torch.randint(0, 3, (5, 2, 4)),), "floating-point"),
        (lambda: (torch.randn(5, 2, 4, dtype=torch.float64),), "dtype"),
        (lambda: (torch.randn(5, 2, 4), torch.randn(1, 2, 3)), r"hx must have shape \(2, 2, 3\)"),
        (lambda: (torch.randn(5, 2, 4), torch.randn(2, 3, 3)), "hx must have shape"),
        (lambda: (torch.randn(5, 2, 4), torch.randn(2, 2, 3, dtype=torch.float64)), "hx has dtype"),
        (lambda: (torch.randn(5, 2, 4), None, torch.tensor([5, 0])), "lengths must be >= 1"),
        (lambda: (torch.randn(5, 2, 4), None, torch.tensor([6, 2])), "lengths must be <= seq_len"),
        (lambda: (torch.randn(5, 2, 4), None, torch.tensor([5, 2, 1])), "lengths has 3 entries"),
        (lambda: (torch.randn(5, 2, 4), None, torch.tensor([[5, 2]])), "lengths must be 1-D"),
        (lambda: (torch.randn(5, 2, 4), None, torch.tensor([5.0, 2.0])), "lengths must hold integers"),
        (lambda: (torch.randn(5, 4), torch.randn(2, 1, 3)), "unbatched"),
        (lambda: ([[1.0]],), "input must be a torch.Tensor"),
    ],
)
def test_bad_input_named(gru, make, match):
    with pytest.raises(GRUInputError, match=match):
        gru(*make())


def test_unsorted_lengths_refused_only_when_sorting_is_required(gru):
    x = torch.randn(5, 3, 4)
    with pytest.raises(GRUInputError, match="sorted in decreasing order"):
        gru(x, lengths=torch.tensor([2, 5, 3]), enforce_sorted=True)
    y, _ = gru(x, lengths=torch.tensor([2, 5, 3]))
    assert y.shape == (5, 3, 3)


def test_weight_dtype_mismatch_names_parameter():
    m = fastgru.nn.GRU(4, 3, num_layers=2)
    m.weight_hh_l1.data = m.weight_hh_l1.data.double()
    with pytest.raises(GRUInputError, match="weight_hh_l1"):
        m(torch.randn(5, 2, 4))


def test_non_finite_is_opt_in():
    m = fastgru.nn.GRU(4, 3)
    x = torch.randn(5, 2, 4)
    x[2, 1, 0] = float("nan")
    y, _ = m(x)  # default: propagated like torch.nn.GRU
    assert torch.isnan(y).any()
    checked = fastgru.nn.GRU(4, 3, check_finite=True)
    with pytest.raises(GRUInputError, match="input has 1 non-finite"):
        checked(x)
    h = torch.full((1, 2, 3), float("inf"))
    with pytest.raises(GRUInputError, match="hx has 6 non-finite"):
        checked(torch.randn(5, 2, 4), h)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=0, hidden_size=3), "input_size"),
        (dict(input_size=2, hidden_size=-1), "hidden_size"),
        (dict(input_size=2, hidden_size=3, num_layers=0), "num_layers"),
        (dict(input_size=2, hidden_size=3, dropout=1.5), "dropout"),
        (dict(input_size=2, hidden_size=3, init="xavier"), "init"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastgru.nn.GRU(**kwargs)


def test_grucell_bad_input():
    cell = fastgru.nn.GRUCell(4, 3)
    with pytest.raises(GRUInputError, match="GRUCell: input"):
        cell(torch.randn(2, 3, 4))
    with pytest.raises(GRUInputError, match="hx must have shape"):
        cell(torch.randn(2, 4), torch.randn(3, 3))


def test_unknown_backend_and_explicit_triton_without_gpu():
    with pytest.raises(ValueError, match="backend must be one of"):
        fastgru.nn.GRU(2, 3, backend="cuda-magic")(torch.randn(2, 1, 2))
    with pytest.raises(RuntimeError, match="triton"):
        fastgru.nn.GRU(2, 3, backend="triton")(torch.randn(2, 1, 2))
