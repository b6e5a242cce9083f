"""The float64 oracle itself, checked against independent arithmetic."""

import math

import torch

from fastgru import reference


def _random_gru(I, H, layers=1, bidirectional=False):
    return torch.nn.GRU(I, H, num_layers=layers, bidirectional=bidirectional, dtype=torch.float64)


def _weights(m):
    return [tuple(g) for g in m.all_weights]


def test_reference_matches_torch_gru_float64():
    for layers, bidir in [(1, False), (2, True), (3, False)]:
        m = _random_gru(4, 5, layers, bidir)
        x = torch.randn(6, 3, 4, dtype=torch.float64)
        h0 = torch.randn(layers * (2 if bidir else 1), 3, 5, dtype=torch.float64)
        y_t, h_t = m(x, h0)
        y_r, h_r = reference.gru(x, h0, _weights(m), num_layers=layers, bidirectional=bidir)
        assert torch.allclose(y_r, y_t, rtol=0, atol=1e-12)
        assert torch.allclose(h_r, h_t, rtol=0, atol=1e-12)


def test_reference_lengths_match_per_sequence_runs():
    m = _random_gru(3, 4, 1, True)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4])
    y, h = reference.gru(x, None, _weights(m), bidirectional=True, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        y_b, h_b = m(x[:n, b : b + 1])
        assert torch.allclose(y[:n, b], y_b[:, 0], atol=1e-12)
        assert torch.all(y[n:, b] == 0)
        assert torch.allclose(h[:, b], h_b[:, 0], atol=1e-12)


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_reset_before_two_steps_by_hand():
    """Cho et al. 2014 variant, I = H = 1, two steps, computed with scalar math."""
    w_ih = torch.randn(3, 1, dtype=torch.float64)
    w_hh = torch.randn(3, 1, dtype=torch.float64)
    b_ih = torch.randn(3, dtype=torch.float64)
    b_hh = torch.randn(3, dtype=torch.float64)
    xs = torch.randn(2, 1, 1, dtype=torch.float64)
    h0 = torch.randn(1, 1, dtype=torch.float64)
    h = h0.item()
    expected = []
    W, U, b, c = w_ih[:, 0].tolist(), w_hh[:, 0].tolist(), b_ih.tolist(), b_hh.tolist()
    for t in range(2):
        x = xs[t].item()
        r = _sig(W[0] * x + b[0] + U[0] * h + c[0])
        z = _sig(W[1] * x + b[1] + U[1] * h + c[1])
        n = math.tanh(W[2] * x + b[2] + U[2] * (r * h) + c[2])
        h = (1 - z) * n + z * h
        expected.append(h)
    y, h_n = reference.gru_layer(xs, h0, (w_ih, w_hh, b_ih, b_hh), reset_after=False)
    assert torch.allclose(y[:, 0, 0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)
    assert abs(h_n.item() - expected[-1]) < 1e-14
    # and the two variants really differ
    y_after, _ = reference.gru_layer(xs, h0, (w_ih, w_hh, b_ih, b_hh), reset_after=True)
    assert not torch.allclose(y_after, y)
