"""fastgru.nn.GRU's inference lane: a no-grad CPU call goes straight to the kernel's one-call stack.

`GRU._one_call` takes plain inference calls without building the general path's argument lists; it must give
torch.nn.GRU's numbers in every layout it takes, leave every other case (and every bad argument) to the
general path, and read the parameters at each call (never stale).
"""

import pytest
import torch
from torch.nn.utils import parametrize

from fastgru.backends import cpu
from fastgru.core import functional
from fastgru.core.errors import GRUInputError
from fastgru.nn import GRU

pytestmark = pytest.mark.skipif(not cpu.is_available(), reason="the fused CPU kernel could not be built here")


def _torch_twin(model: GRU) -> torch.nn.GRU:
    twin = torch.nn.GRU(model.input_size, model.hidden_size, model.num_layers, bias=model.bias,
                        batch_first=model.batch_first, bidirectional=model.bidirectional,
                        dtype=next(model.parameters()).dtype)
    twin.load_state_dict(model.state_dict())
    return twin


@pytest.fixture
def general_path_calls(monkeypatch):
    """Counts calls of the general path (functional.gru as the module calls it)."""
    calls = []
    real = functional.gru

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(functional, "gru", counting)
    return calls


@pytest.mark.parametrize(("layers", "bidirectional", "bias", "batch_first", "with_hx", "dtype"), [
    (1, False, True, False, False, torch.float32),
    (2, True, True, True, True, torch.float32),
    (2, False, False, False, True, torch.float64),
    (1, True, False, True, False, torch.float64),
])
def test_lane_equals_torch_gru_without_the_general_path(general_path_calls, layers, bidirectional, bias,
                                                        batch_first, with_hx, dtype):
    torch.manual_seed(hash((layers, bidirectional, bias, batch_first, with_hx, str(dtype))) % 2**31)
    T, B, I, H = 5, 3, 7, 11
    model = GRU(I, H, num_layers=layers, bidirectional=bidirectional, bias=bias, batch_first=batch_first,
                dtype=dtype)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    hx = torch.randn(layers * (2 if bidirectional else 1), B, H, dtype=dtype) if with_hx else None
    with torch.no_grad():
        out, h_n = model(x, hx)
        ref_out, ref_h = _torch_twin(model)(x, hx)
    assert not general_path_calls
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=tol)
    torch.testing.assert_close(h_n, ref_h, atol=tol, rtol=tol)


def test_other_calls_take_the_general_path(general_path_calls):
    torch.manual_seed(1)
    model = GRU(4, 6)
    x = torch.randn(3, 2, 4)
    model(x)  # autograd
    with torch.no_grad():
        model(x[:, 0])  # unbatched
        model(x, lengths=torch.tensor([3, 2]))
        GRU(4, 6, check_finite=True)(x)
        GRU(4, 6, dropout=0.0, input_dropout=0.3).train()(x)  # regularisation in effect
        GRU(4, 6, gate_activation="hard_sigmoid")(x)
    assert len(general_path_calls) == 6


def test_bad_arguments_get_the_general_paths_errors():
    model = GRU(4, 6)
    with torch.no_grad():
        with pytest.raises(GRUInputError, match="features"):
            model(torch.randn(3, 2, 5))
        with pytest.raises(GRUInputError, match="hx must have shape"):
            model(torch.randn(3, 2, 4), torch.randn(1, 3, 6))
        with pytest.raises(GRUInputError, match="dtype"):
            model(torch.randn(3, 2, 4, dtype=torch.float64))
        with pytest.raises(GRUInputError, match="empty"):
            model(torch.randn(0, 2, 4))


def test_lane_reads_the_parameters_at_each_call():
    torch.manual_seed(2)
    model = GRU(4, 6)
    x = torch.randn(3, 2, 4)
    with torch.no_grad():
        model(x)
        model.weight_hh_l0.data = torch.randn_like(model.weight_hh_l0)
        model.bias_ih_l0.mul_(3.0)
        model.weight_ih_l0.copy_(torch.randn_like(model.weight_ih_l0))
        out, _ = model(x)
        torch.testing.assert_close(out, _torch_twin(model)(x)[0], atol=1e-5, rtol=1e-5)


def test_a_parametrized_weight_is_applied(general_path_calls):
    """torch.nn.utils.parametrize moves the weight out of _parameters: the lane steps aside and the
    general path reads the parametrized value."""

    class Doubled(torch.nn.Module):
        def forward(self, w):
            return 2 * w

    torch.manual_seed(3)
    model = GRU(4, 6)
    x = torch.randn(3, 2, 4)
    with torch.no_grad():
        before, _ = model(x)
        parametrize.register_parametrization(model, "weight_hh_l0", Doubled())
        after, _ = model(x)
        twin = GRU(4, 6)
        twin.load_state_dict({k: v for k, v in model.state_dict().items() if "parametrizations" not in k}, strict=False)
        twin.weight_hh_l0.copy_(model.weight_hh_l0)  # the doubled value
        expected, _ = twin(x)
    assert general_path_calls  # the parametrized call went the general way
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, atol=1e-6, rtol=1e-6)
