"""Textbook GRU forms <-> fastgru, checked against the textbook equations written out here in float64.

Oracle (Olah, "Understanding LSTM Networks"; most tutorials): z lets the new in,
    r = s(W_r . [h, x] + b_r), z = s(W_z . [h, x] + b_z), h~ = tanh(W_h . [r * h, x] + b_h),
    h' = (1 - z) * h + z * h~,
and the same with torch-layout matrices for the 'z lets the new in' state dict.
"""

import pytest
import torch
from interop_util import TOL, max_err, randomize_, same_state

import fastgru
from fastgru.interop import (
    ConcatenatedGRU,
    InteropError,
    from_concatenated,
    from_z_lets_new_in,
    to_concatenated,
    to_z_lets_new_in,
)

T, B, I, H = 6, 3, 4, 5


def run_stack(x, per_direction, step, num_layers, bidirectional):
    """Stack and direction plumbing shared by both oracles: step(x_t, h, params) -> h'."""
    dirs = 2 if bidirectional else 1
    layer_in = x.double()
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            params = per_direction[layer * dirs + d]
            h = torch.zeros(x.shape[1], H, dtype=torch.float64)
            ys = [None] * x.shape[0]
            for t in reversed(range(x.shape[0])) if d else range(x.shape[0]):
                h = step(layer_in[t], h, params)
                ys[t] = h
            outs.append(torch.stack(ys))
        layer_in = torch.cat(outs, dim=2)
    return layer_in


def concat_step(convention):
    def step(x, h, c):
        W_r, W_z, W_h = (W.double() for W in (c.W_r, c.W_z, c.W_h))
        zero = torch.zeros(H, dtype=torch.float64)
        b_r, b_z, b_h = (zero if b is None else b.double() for b in (c.b_r, c.b_z, c.b_h))
        hx = torch.cat((h, x), dim=1)
        r = torch.sigmoid(hx @ W_r.T + b_r)
        z = torch.sigmoid(hx @ W_z.T + b_z)
        cand = torch.tanh(torch.cat((r * h, x), dim=1) @ W_h.T + b_h)
        return (1 - z) * h + z * cand if convention == "z_lets_new_in" else z * h + (1 - z) * cand

    return step


def lets_new_in_step(reset_after):
    def step(x, h, g):
        w_ih, w_hh, b_ih, b_hh = (t.double() for t in g)
        xi, hh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = torch.sigmoid(xi[:, :H] + hh[:, :H])
        z = torch.sigmoid(xi[:, H:2 * H] + hh[:, H:2 * H])
        if reset_after:
            n = torch.tanh(xi[:, 2 * H:] + r * hh[:, 2 * H:])
        else:
            n = torch.tanh(xi[:, 2 * H:] + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
        return (1 - z) * h + z * n

    return step


def groups(state, num_layers, bidirectional):
    sfx = ("", "_reverse")[: 2 if bidirectional else 1]
    return [tuple(state[f"{k}_l{layer}{s}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for layer in range(num_layers) for s in sfx]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_z_lets_new_in_state_dict(reset_after, num_layers, bidirectional):
    ours = randomize_(fastgru.nn.GRU(I, H, num_layers, bidirectional=bidirectional, reset_after=reset_after))
    textbook = to_z_lets_new_in(ours)
    x = torch.randn(T, B, I)
    want = run_stack(x, groups(textbook, num_layers, bidirectional), lets_new_in_step(reset_after), num_layers,
                     bidirectional)
    with torch.no_grad():
        assert max_err(ours(x)[0], want) < TOL
    back = from_z_lets_new_in(textbook, reset_after=reset_after)
    assert same_state(back, ours)  # negating twice is exact
    assert same_state(to_z_lets_new_in(back), textbook)


@pytest.mark.parametrize("convention", ["z_lets_new_in", "z_keeps_past"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_concatenated_form_both_ways(convention, num_layers, bidirectional):
    # textbook weights -> fastgru: outputs equal the textbook equations
    dirs = 2 if bidirectional else 1
    cells = []
    for k in range(num_layers * dirs):
        width = H + (I if k < dirs else dirs * H)
        mats = [torch.randn(H, width) * 0.5 for _ in range(3)]
        cells.append(ConcatenatedGRU(*mats, *(torch.randn(H) * 0.5 for _ in range(3)), convention=convention))
    ours = from_concatenated(cells, bidirectional=bidirectional)
    assert not ours.reset_after and ours.num_layers == num_layers
    x = torch.randn(T, B, I)
    want = run_stack(x, cells, concat_step(convention), num_layers, bidirectional)
    with torch.no_grad():
        assert max_err(ours(x)[0], want) < TOL
    # and back: bit-exact
    again = to_concatenated(ours, convention=convention)
    for a, b in zip(again, cells):
        for name in ("W_r", "W_z", "W_h", "b_r", "b_z", "b_h"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("convention", ["z_lets_new_in", "z_keeps_past"])
def test_fastgru_to_concatenated_folds_biases(convention):
    ours = randomize_(fastgru.nn.GRU(I, H, reset_after=False, bias=True))
    cells = to_concatenated(ours, convention=convention)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        assert max_err(ours(x)[0], run_stack(x, cells, concat_step(convention), 1, False)) < TOL
    # b_g = b_ig + b_hg (same math, one rounding); a second trip is then exact
    back = from_concatenated(cells)
    assert same_state(from_concatenated(to_concatenated(back, convention=convention)), back)


def test_refusals():
    with pytest.raises(InteropError, match="reset_after=True"):
        to_concatenated(fastgru.nn.GRU(I, H), convention="z_lets_new_in")
    with pytest.raises(InteropError, match="convention"):
        to_concatenated(fastgru.nn.GRU(I, H, reset_after=False), convention="z_new")
    with pytest.raises(InteropError, match="candidate_activation='relu'"):
        to_z_lets_new_in(fastgru.nn.GRU(I, H, candidate_activation="relu"))
    with pytest.raises(InteropError, match="b_r, b_z, b_h"):
        from_concatenated(ConcatenatedGRU(torch.randn(H, H + I), torch.randn(H, H + I), torch.randn(H, H + I),
                                          b_r=torch.randn(H)))
    with pytest.raises(InteropError, match="not a GRU parameter name"):
        from_z_lets_new_in({"weight": torch.randn(3)}, reset_after=True)
