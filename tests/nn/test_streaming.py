"""Streaming: model.step / Stream fed one step at a time equals the full-sequence call."""

import pytest
import torch
from helpers import rel_err

import fastgru
from fastgru import GRUInputError

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=3),
    dict(num_layers=2, reset_after=False),
    dict(num_layers=2, bias=False),
    dict(num_layers=2, zoneout=0.3, gate_activation="hard_sigmoid", candidate_activation="softsign"),
    dict(num_layers=1, backend="torch"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("batch", [1, 3])
def test_step_equals_full_sequence(config, batch):
    m = fastgru.nn.GRU(5, 7, **config).eval()
    x = torch.randn(12, batch, 5)
    h0 = torch.randn(m.num_layers, batch, 7)
    with torch.no_grad():
        y, h = m(x, h0)
        stream = fastgru.nn.Stream(m, h0)
        ys = torch.stack([stream(x[t]) for t in range(12)])
    assert rel_err(ys, y) < 1e-5
    assert rel_err(stream.state, h) < 1e-5


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_step_split_over_threads_equals_full_sequence(reset_after, threads):
    """At streaming sizes large enough the kernel splits the hidden units over threads (odd sizes too)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = fastgru.nn.GRU(72, 136, num_layers=2, reset_after=reset_after).eval()
        x, h0 = torch.randn(20, 1, 72), torch.randn(2, 1, 136)
        with torch.no_grad():
            y, h = m(x, h0)
            stream = fastgru.nn.Stream(m, h0)
            ys = torch.stack([stream(x[t]) for t in range(20)])
    finally:
        torch.set_num_threads(old)
    assert rel_err(ys, y) < 1e-5
    assert rel_err(stream.state, h) < 1e-5


def test_step_unbatched_and_with_grad_falls_back_to_differentiable_path():
    m = fastgru.nn.GRU(4, 6, num_layers=2).eval()
    x = torch.randn(5, 4)
    y, h = m(x)
    state = None
    outs = []
    for t in range(5):
        out, state = m.step(x[t], state)
        outs.append(out)
    assert rel_err(torch.stack(outs), y) < 1e-5 and rel_err(state, h) < 1e-5
    assert state.requires_grad  # grad enabled and weights require grad: the autograd path ran
    state.sum().backward()
    assert m.weight_hh_l0.grad is not None


def test_stream_reset_starts_a_new_sequence():
    m = fastgru.nn.GRU(3, 4).eval()
    x = torch.randn(6, 3)
    stream = fastgru.nn.Stream(m)
    first = torch.stack([stream(x[t]) for t in range(6)])
    stream.reset()
    second = torch.stack([stream(x[t]) for t in range(6)])
    assert torch.equal(first, second)


def test_step_refusals():
    with pytest.raises(GRUInputError, match="unidirectional"):
        fastgru.nn.GRU(3, 4, bidirectional=True).step(torch.randn(3))
    with pytest.raises(GRUInputError, match="eval"):
        fastgru.nn.GRU(3, 4, recurrent_dropout=0.2).step(torch.randn(3))
    m = fastgru.nn.GRU(3, 4).eval()
    with pytest.raises(GRUInputError, match="input must be"):
        m.step(torch.randn(2, 5))
    with torch.no_grad(), pytest.raises(GRUInputError, match="state must have shape"):
        m.step(torch.randn(2, 3), torch.zeros(1, 3, 4))
    with pytest.raises(TypeError, match="cannot stream"):
        fastgru.nn.Stream(torch.nn.Linear(2, 2))


def test_step_sees_weight_updates():
    """The streaming kernel's cached transposed weights follow in-place updates and replacements."""
    m = fastgru.nn.GRU(3, 4, num_layers=2).eval()
    x = torch.randn(3)
    with torch.no_grad():
        before, _ = m.step(x)
        m.weight_ih_l1.add_(0.5)  # in place, as an optimizer does (W_hh would not show: the state is 0)
        after, _ = m.step(x)
        y, _ = m(x.unsqueeze(0))
        assert not torch.equal(before, after)
        assert rel_err(after, y[0]) < 1e-5
        m.load_state_dict({k: torch.randn_like(v) for k, v in m.state_dict().items()})
        y, _ = m(x.unsqueeze(0))
        assert rel_err(m.step(x)[0], y[0]) < 1e-5


def test_stream_fast_path_follows_every_kind_of_weight_change():
    """Stream's C++ stepper holds the parameters: in-place updates (optimizer), replaced Parameters,
    replaced .data and a dtype change must all show in the next step."""
    m = fastgru.nn.GRU(5, 6, num_layers=2).eval()
    h0 = torch.randn(2, 1, 6)
    x = torch.randn(1, 5)

    def check(model, x, h0):
        stream = fastgru.nn.Stream(model, h0)
        with torch.no_grad():
            y_stream = stream(x)
            y_full, _ = model(x.unsqueeze(0), h0)
        assert rel_err(y_stream, y_full[0]) < 1e-5
        return y_stream

    stream = fastgru.nn.Stream(m, h0)
    first = stream(x)
    with torch.no_grad():
        m.weight_hh_l0.mul_(1.5)  # in place
    second = stream.__class__(m, h0)(x)
    assert not torch.equal(first, second)
    check(m, x, h0)
    m.weight_ih_l1 = torch.nn.Parameter(torch.randn(18, 6))  # a new Parameter object
    check(m, x, h0)
    m.weight_hh_l1.data = torch.randn(18, 6)  # new storage, no version bump
    check(m, x, h0)
    m.double()
    check(m, x.double(), h0.double())
    # one stream across an in-place update sees it at its next step
    stream = fastgru.nn.Stream(m, h0.double())
    stream(x.double())
    with torch.no_grad():
        m.bias_hh_l1.add_(1.0)
        state = stream.state.clone()
        expected, _ = m(x.double().unsqueeze(0), state)
    assert rel_err(stream(x.double()), expected[0]) < 1e-12


def test_stream_fast_path_offered_only_where_the_kernel_serves_the_model():
    assert fastgru.nn.Stream(fastgru.nn.GRU(3, 4).eval())._stepper is not None
    assert fastgru.nn.Stream(fastgru.nn.GRU(3, 4, backend="torch").eval())._stepper is None
    assert fastgru.nn.Stream(fastgru.nn.LayerNormGRU(3, 4).eval())._stepper is None
    m = fastgru.nn.GRU(3, 4, recurrent_dropout=0.3)  # training mode: the fast path declines, step() refuses
    stream = fastgru.nn.Stream(m.eval())
    stream(torch.randn(2, 3))
    m.train()
    with pytest.raises(GRUInputError, match="eval"):
        stream(torch.randn(2, 3))


def test_a_model_that_streamed_still_copies_and_pickles():
    """The cached C++ stepper must not leak into deepcopy / torch.save; the copy streams on its own."""
    import copy
    import io

    m = fastgru.nn.GRU(3, 4, num_layers=2).eval()
    x, h0 = torch.randn(1, 3), torch.randn(2, 1, 4)
    with torch.no_grad():
        y, _ = m.step(x, h0)
    twin = copy.deepcopy(m)
    buffer = io.BytesIO()
    torch.save(m, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        twin.weight_hh_l0.add_(1.0)  # the copy's parameters are its own
        assert torch.equal(loaded.step(x, h0)[0], y)
        assert torch.equal(m.step(x, h0)[0], y)
        assert not torch.equal(twin.step(x, h0)[0], y)
