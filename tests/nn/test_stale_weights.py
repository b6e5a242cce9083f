"""No path ever runs with stale weights.

After every way a user can change a GRU's weights (`param.data = ...`, an in-place change through
`.data`, `copy_` under no_grad, `load_state_dict`, an optimizer step, `.double()`), each later call of
`forward`, `step()` and `fastgru.nn.Stream` must compute with the new values. The oracle is a fresh
torch.nn.GRU loaded with the model's weights as they are at that moment, plus fastgru.core.reference in
float64. Every case first streams a few steps with the old weights, so any cache that could go stale
exists before the change.
"""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err

import fastgru
from fastgru import reference


def _torch_twin(m: fastgru.nn.GRU) -> torch.nn.GRU:
    twin = torch.nn.GRU(m.input_size, m.hidden_size, m.num_layers, bias=m.bias, dtype=m.weight_hh_l0.dtype)
    twin.load_state_dict(m.state_dict())
    return twin.eval()


def _warm_up(m: fastgru.nn.GRU, stream: fastgru.nn.Stream, x: torch.Tensor) -> None:
    """Use every path once with the current weights (builds whatever they cache)."""
    with torch.no_grad():
        m(x)
        state = torch.zeros(m.num_layers, x.shape[1], m.hidden_size, dtype=x.dtype)
        for t in range(3):
            _, state = m.step(x[t], state)
            stream(x[t])


def _assert_all_paths_see(m: fastgru.nn.GRU, x: torch.Tensor) -> None:
    """forward, step() (batched and unbatched) and Stream all equal torch.nn.GRU with m's weights now."""
    twin = _torch_twin(m)
    h0 = torch.randn(m.num_layers, x.shape[1], m.hidden_size, dtype=x.dtype)
    with torch.no_grad():
        y_ref, h_ref = twin(x, h0)
        y, h = m(x, h0)
        assert rel_err(y, y_ref) < 1e-5 and rel_err(h, h_ref) < 1e-5, "forward"
        state, outs = h0, []
        for t in range(x.shape[0]):
            out, state = m.step(x[t], state)
            outs.append(out)
        assert rel_err(torch.stack(outs), y_ref) < 1e-5 and rel_err(state, h_ref) < 1e-5, "step"
        stream = fastgru.nn.Stream(m, h0)
        ys = torch.stack([stream(x[t]) for t in range(x.shape[0])])
        assert rel_err(ys, y_ref) < 1e-5 and rel_err(stream.state, h_ref) < 1e-5, "Stream"
        out1, state1 = m.step(x[0, 0], h0[:, 0])  # unbatched step
        assert rel_err(out1, y_ref[0, 0]) < 1e-5 if x.shape[1] == 1 else out1.shape == (m.hidden_size,)
    # the float64 reference with the same weights, for the full sequence
    groups = [tuple(None if p is None else p.detach() for p in g) for g in m._groups()]
    y64, h64 = reference.gru(x, h0, groups, num_layers=m.num_layers)
    assert rel_err(y, y64) < 1e-5 and rel_err(h, h64) < 1e-5, "reference"


def _scale_in_place_via_data(m):
    for p in m.parameters():
        p.data.mul_(-1.5)


def _assign_data(m):
    for p in m.parameters():
        p.data = torch.randn_like(p)


def _copy_under_no_grad(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p))


def _load_state_dict(m):
    other = fastgru.nn.GRU(m.input_size, m.hidden_size, m.num_layers, bias=m.bias)
    m.load_state_dict(other.state_dict())


def _sgd_step(m):
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x = torch.randn(4, 2, m.input_size)
    m(x)[0].square().sum().backward()
    opt.step()


def _adam_step(m):
    opt = torch.optim.Adam(m.parameters(), lr=0.1, foreach=True)
    m(torch.randn(4, 2, m.input_size))[0].sum().backward()
    opt.step()


def _one_weight_in_place(m):
    """Only the last layer's recurrent weight changes, through .data, in a slice."""
    m.all_weights[-1][1].data[:, 0].add_(3.0)


def _bias_only_through_data(m):
    m.all_weights[0][2].data.fill_(0.7)


CHANGES = {
    "data.mul_": _scale_in_place_via_data,
    "data=": _assign_data,
    "copy_no_grad": _copy_under_no_grad,
    "load_state_dict": _load_state_dict,
    "sgd_step": _sgd_step,
    "adam_step": _adam_step,
    "data_slice_add_": _one_weight_in_place,
    "bias_data_fill_": _bias_only_through_data,
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
@pytest.mark.parametrize("layers,batch", [(1, 1), (2, 3)])
def test_every_path_sees_changed_weights(change, layers, batch):
    m = fastgru.nn.GRU(5, 8, num_layers=layers)
    x = torch.randn(6, batch, 5)
    stream = fastgru.nn.Stream(m.eval())
    _warm_up(m, stream, x)
    before = [p.detach().clone() for p in m.parameters()]
    CHANGES[change](m)  # in eval mode: a mode switch must not be what makes the change seen
    assert any(not torch.equal(a, p) for a, p in zip(before, m.parameters())), "the change changed nothing"
    _assert_all_paths_see(m, x)
    # a Stream made before the change keeps working, with the new weights
    twin = _torch_twin(m)
    stream.reset(torch.zeros(layers, batch, 8))
    with torch.no_grad():
        ys = torch.stack([stream(x[t]) for t in range(6)])
        assert rel_err(ys, twin(x)[0]) < 1e-5


def test_dtype_and_device_conversion_are_seen():
    """`.double()` replaces each parameter's data; the stepper made for float32 must not run it."""
    m = fastgru.nn.GRU(4, 6, num_layers=2).eval()
    x = torch.randn(5, 2, 4)
    stream = fastgru.nn.Stream(m)
    _warm_up(m, stream, x)
    m.double()
    _assert_all_paths_see(m, x.double())


def test_weight_replaced_by_a_non_contiguous_view():
    """`.data` set to a transposed view: the kernel must read it as the matrix it is."""
    m = fastgru.nn.GRU(6, 6).eval()
    x = torch.randn(5, 1, 6)
    stream = fastgru.nn.Stream(m)
    _warm_up(m, stream, x)
    w = torch.randn(18, 6)
    m.weight_hh_l0.data = w.t().contiguous().t()
    assert not m.weight_hh_l0.is_contiguous()
    _assert_all_paths_see(m, x)


def test_bias_free_model_after_change():
    m = fastgru.nn.GRU(3, 5, num_layers=2, bias=False).eval()
    x = torch.randn(4, 2, 3)
    stream = fastgru.nn.Stream(m)
    _warm_up(m, stream, x)
    _scale_in_place_via_data(m)
    _assert_all_paths_see(m, x)
