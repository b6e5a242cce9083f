"""fastgru.train.models: the Embedding -> RNN -> Dense builder, checked against independent torch oracles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fastgru.train.models import (
    ModelConfig,
    build_model,
    count_parameters,
    hidden_size_for_budget,
    model_parameter_count,
)


def _rand_lengths(B: int, T: int, g: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T  # at least one full-length sequence so the padded width is T
    return lengths


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_gru_model_equals_torch_gru_model_with_same_weights(bidirectional, num_layers):
    """cell='gru' (fastgru.nn.GRU) and cell='torch_gru' (torch.nn.GRU) give the same outputs and grads."""
    g = torch.Generator().manual_seed(1234 + num_layers)
    cfg = dict(input_size=5, hidden_size=7, output_size=3, head="classification", num_layers=num_layers,
               bidirectional=bidirectional)
    ours = build_model(cell="gru", **cfg)
    oracle = build_model(cell="torch_gru", **cfg)
    oracle.load_state_dict(ours.state_dict())
    x = torch.randn(6, 9, 5, generator=g)
    lengths = _rand_lengths(6, 9, g)
    for L in (None, lengths):
        y1, y2 = ours(x, L), oracle(x, L)
        torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
        y1.square().sum().backward()
        y2.square().sum().backward()
        for (n1, p1), (_, p2) in zip(ours.named_parameters(), oracle.named_parameters()):
            torch.testing.assert_close(p1.grad, p2.grad, atol=1e-4, rtol=1e-4, msg=n1)
        ours.zero_grad()
        oracle.zero_grad()


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_lengths_give_each_sequence_its_own_result(cell):
    """A padded variable-length batch gives, per sequence, what that sequence alone (unpadded) gives."""
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    for per_step, bidirectional in [(False, False), (False, True), (True, False)]:
        m = build_model(cell=cell, input_size=4, hidden_size=6, output_size=2, head="regression",
                        num_layers=2, bidirectional=bidirectional, per_step=per_step)
        B, T = 5, 8
        x = torch.randn(B, T, 4, generator=g)
        lengths = _rand_lengths(B, T, g)
        y = m(x, lengths)
        for b in range(B):
            n = int(lengths[b])
            alone = m(x[b : b + 1, :n])
            if per_step:
                torch.testing.assert_close(y[b, :n], alone[0], atol=1e-5, rtol=1e-5)
            else:
                torch.testing.assert_close(y[b], alone[0], atol=1e-5, rtol=1e-5)


def test_summary_is_last_output_forward_and_first_output_reverse():
    """Bidirectional per-sequence features = [forward output at last step, reverse output at step 0]."""
    torch.manual_seed(3)
    m = build_model(cell="gru", input_size=3, hidden_size=4, output_size=2, bidirectional=True)
    x = torch.randn(2, 6, 3)
    out, _ = m.rnn(x)
    feats = torch.cat([out[:, -1, :4], out[:, 0, 4:]], dim=1)
    torch.testing.assert_close(m(x), m.head(feats))


def test_embedding_next_token_and_state_carry():
    """Token ids -> embedding; running two halves with the carried state equals one full run."""
    torch.manual_seed(5)
    m = build_model(cell="gru", vocab_size=11, embedding_dim=6, hidden_size=8, head="next_token")
    assert m.config.output_size == 11 and m.config.per_step
    ids = torch.randint(0, 11, (3, 10))
    full = m(ids)
    a, s = m(ids[:, :4], return_state=True)
    b, _ = m(ids[:, 4:], state=s, return_state=True)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-6, rtol=1e-5)
    assert full.shape == (3, 10, 11)
    probs = m.predict(ids)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 10))


def test_lstm_state_carry():
    torch.manual_seed(6)
    m = build_model(cell="lstm", input_size=2, hidden_size=5, per_step=True, output_size=1)
    x = torch.randn(2, 9, 2)
    a, s = m(x[:, :5], return_state=True)
    b = m(x[:, 5:], state=s)
    torch.testing.assert_close(torch.cat([a, b], 1), m(x), atol=1e-6, rtol=1e-5)


def test_multilabel_predict_is_sigmoid():
    torch.manual_seed(8)
    m = build_model(cell="rnn", input_size=4, hidden_size=5, output_size=4, head="multilabel", per_step=True)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(m.predict(x), torch.sigmoid(m(x)))


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn", "torch_gru"])
def test_parameter_count_formula_matches_built_model(cell):
    rng = torch.Generator().manual_seed(11)
    for _ in range(4):
        I, H, O, L = (int(v) for v in torch.randint(1, 20, (4,), generator=rng))
        L = 1 + L % 3
        bi = bool(torch.randint(0, 2, (1,), generator=rng))
        cfg = ModelConfig(cell=cell, input_size=I, hidden_size=H, output_size=O, num_layers=L, bidirectional=bi)
        assert model_parameter_count(cfg) == count_parameters(build_model(cfg))
    cfg = ModelConfig(cell=cell, vocab_size=30, embedding_dim=7, hidden_size=9, head="next_token")
    assert model_parameter_count(cfg) == count_parameters(build_model(cfg))


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_hidden_size_for_budget_is_closest(cell):
    kw = dict(input_size=88, output_size=88, head="multilabel", per_step=True)
    for budget in (5_000, 20_000, 50_000):
        h = hidden_size_for_budget(budget, cell, **kw)
        n = lambda k: count_parameters(build_model(cell=cell, hidden_size=k, **kw))  # noqa: E731
        assert abs(n(h) - budget) <= abs(n(h - 1) - budget) and abs(n(h) - budget) <= abs(n(h + 1) - budget)
        h2 = hidden_size_for_budget(budget, cell, rule="at_most", **kw)
        assert n(h2) <= budget < n(h2 + 1)


def test_config_round_trip_and_errors():
    cfg = ModelConfig(input_size=3, hidden_size=4, output_size=5, head="classification", cell="lstm")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    m = build_model(cfg.to_dict())
    assert isinstance(m.rnn, nn.LSTM)
    with pytest.raises(ValueError, match="cell must be one of"):
        ModelConfig(input_size=3, cell="transformer")
    with pytest.raises(ValueError, match="cannot be bidirectional"):
        ModelConfig(vocab_size=5, head="next_token", bidirectional=True)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"input_size": 3, "hiden_size": 4})
    with pytest.raises(ValueError, match=r"x must be \(batch, time, 3\)"):
        build_model(input_size=3)(torch.randn(2, 4, 5))
