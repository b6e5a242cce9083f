"""fastgru.apps.plots: gate replay, gradient flow, and the pictures, checked against independent oracles."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import fastgru.nn
from fastgru import reference
from fastgru.apps import cli, compare
from fastgru.apps import viz as viz_task
from fastgru.apps.data.char_text import load_builtin_text
from fastgru.apps.plots import (
    animate_gru,
    gru_gate_trace,
    gru_step_gates,
    jacobian_norms,
    layer_weights,
    plot_gate_heatmaps,
    plot_gradient_flow,
)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gate_step_matches_reference_cell(reset_after):
    """The replayed step's new state equals fastgru.core.reference.gru_cell; r, z are in (0, 1), n in (-1, 1)."""
    gru = fastgru.nn.GRU(4, 6, reset_after=reset_after)
    x, h = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    w = tuple(t.detach().double() for t in layer_weights(gru, 0))
    r, z, n, h_new = gru_step_gates(x, h, w, reset_after)
    torch.testing.assert_close(h_new, reference.gru_cell(x, h, *w, reset_after=reset_after))
    assert ((r > 0) & (r < 1)).all() and ((z > 0) & (z < 1)).all() and (n.abs() < 1).all()
    # h' = (1 - z) * n + z * h, recomputed from the returned gates
    torch.testing.assert_close(h_new, (1 - z) * n + z * h)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("layer,reverse", [(0, False), (1, False), (1, True)])
def test_trace_equals_module_output(reset_after, layer, reverse):
    """The trace of any layer-direction of a stacked bidirectional fastgru GRU equals what the module computes."""
    H = 5
    gru = fastgru.nn.GRU(3, H, num_layers=2, bidirectional=True, reset_after=reset_after)
    x = torch.randn(9, 3)
    trace = gru_gate_trace(gru, x, layer=layer, reverse=reverse)
    if layer == 1:  # the top layer's states are the module's output
        out, _ = gru(x.unsqueeze(1))
        expected = out[:, 0, H * reverse : H * (reverse + 1)]
    else:  # the bottom layer: a 1-layer GRU with the same weights
        one = fastgru.nn.GRU(3, H, bidirectional=True, reset_after=reset_after)
        one.load_state_dict({k: v for k, v in gru.state_dict().items() if "_l0" in k})
        expected = one(x.unsqueeze(1))[0][:, 0, H * reverse : H * (reverse + 1)]
    torch.testing.assert_close(trace.h.float(), expected, atol=1e-5, rtol=1e-5)
    # the state a step reads is the one its neighbour wrote
    if reverse:
        torch.testing.assert_close(trace.h_prev[:-1], trace.h[1:])
    else:
        torch.testing.assert_close(trace.h_prev[1:], trace.h[:-1])


def test_trace_works_for_torch_gru_and_rejects_bad_input():
    gru = torch.nn.GRU(3, 4)
    x = torch.randn(6, 3)
    torch.testing.assert_close(gru_gate_trace(gru, x).h.float(), gru(x)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(T, 3\)"):
        gru_gate_trace(gru, torch.randn(6, 2))
    with pytest.raises(ValueError, match="layer must be in"):
        gru_gate_trace(gru, x, layer=1)
    with pytest.raises(ValueError, match="bidirectional"):
        gru_gate_trace(gru, x, reverse=True)


@pytest.mark.parametrize("make", [
    lambda: fastgru.nn.GRU(3, 4, reset_after=False),
    lambda: torch.nn.LSTM(3, 4),
    lambda: torch.nn.RNN(3, 4),
], ids=["gru", "lstm", "rnn"])
def test_jacobian_norms_match_autograd_jacobian(make):
    """||dh_T/dh_t||_F from one batched backward equals the norm of torch.autograd.functional.jacobian."""
    module = make().double()
    S, T = 2, 6
    x = torch.randn(S, T, 3, dtype=torch.float64)
    norms = jacobian_norms(module, x)
    assert norms.shape == (T,)
    # oracle: run the module itself from state h_t over the remaining inputs, differentiate h_T by h_t
    is_lstm = isinstance(module, torch.nn.LSTM)
    for k in (1, 3, T - 1):  # k = T - t
        t = T - k
        expected = []
        for s in range(S):
            seq = x[s].unsqueeze(1)
            rest = seq[t:]
            with torch.no_grad():
                _, state = module(seq[:t])
            if is_lstm:
                h_t, c_t = state

                def f(h, c_t=c_t, rest=rest):
                    return module(rest, (h, c_t))[1][0].reshape(-1)
            else:
                h_t = state

                def f(h, rest=rest):
                    return module(rest, h)[1].reshape(-1)
            expected.append(torch.autograd.functional.jacobian(f, h_t).norm())
        torch.testing.assert_close(norms[k], torch.stack(expected).mean())
    assert norms[0] == pytest.approx(4**0.5)  # dh_T/dh_T is the identity


def test_pictures_are_written_and_parse(tmp_path):
    gru = fastgru.nn.GRU(3, 4)
    x = torch.randn(7, 3)
    trace = gru_gate_trace(gru, x)
    png = plot_gate_heatmaps(trace, tmp_path / "gates.png", inputs=x.numpy(), step_labels=list("abcdefg"))
    gif = animate_gru(trace, tmp_path / "gru.gif", max_steps=2)
    norms = {"GRU": jacobian_norms(gru, x[None])}
    flow = plot_gradient_flow(norms, tmp_path / "flow.png")
    for path in (png, flow):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 100
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 2 * 4  # four stages per step
        first = np.asarray(im.convert("RGB"), dtype=float)
    # right of the plots, both colour scales: viridis' top (yellow) for the gates, RdBu's ends for h and n
    right = first[:, int(first.shape[1] * 0.85):].reshape(-1, 3)
    for rgb in ((253, 231, 37), (103, 0, 31), (5, 48, 97)):
        assert np.abs(right - rgb).max(1).min() < 30, rgb  # GIF's 256-colour palette moves colours a little
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.png", "gates.png", "gru.gif"]  # no temp files
    with pytest.raises(ValueError, match="small hidden sizes"):
        animate_gru(gru_gate_trace(fastgru.nn.GRU(3, 40), x), tmp_path / "big.gif")
    with pytest.raises(ValueError, match="inputs has 3 steps"):
        plot_gate_heatmaps(trace, tmp_path / "bad.png", inputs=x[:3].numpy())



def test_viz_task_end_to_end_on_text_and_jsb(tmp_path, capsys):
    """`fastgru viz` trains briefly and writes the three pictures and viz.json, on both data sets."""
    text = load_builtin_text()[:4000]
    vocab = "".join(sorted(set(text)))
    data = compare.text_data(text, seq_len=30)
    viz_task.run_viz(tmp_path / "text", data, epochs=1, gif_hidden=4, gif_steps=2, flow_steps=20,
                     flow_sequences=2, budget=3000, step_labels=lambda ids: [vocab[i] for i in ids])
    saved = json.loads((tmp_path / "text" / "viz.json").read_text())
    sizes = saved["hidden_sizes"]
    assert sizes["gru_small"] == 4 and len(saved["gradient_norms"]) == 6
    cells = {"GRU": "gru", "LSTM": "lstm", "tanh": "rnn"}
    for name, norms in saved["gradient_norms"].items():
        assert len(norms) == 20 and all(math.isfinite(v) and v >= 0 for v in norms)
        # dh_T/dh_T is the H x H identity, whose Frobenius norm is sqrt(H)
        assert norms[0] == pytest.approx(math.sqrt(sizes[cells[name.split()[0]]]), rel=1e-6)
    with Image.open(tmp_path / "text" / "gru_process.gif") as im:
        assert im.n_frames == 2 * 4
    cli.run(["viz", "--data", "jsb", "--epochs", "0", "--gif-hidden", "3", "--gif-steps", "1", "--flow-steps", "10",
             "--flow-sequences", "1", "--max-steps", "12", "--out", str(tmp_path / "jsb")])
    for name in ("gates.png", "gradient_flow.png"):
        with Image.open(tmp_path / "jsb" / name) as im:
            assert im.format == "PNG"
    assert "gates.png" in capsys.readouterr().out
    jsb = compare.jsb_data()
    with pytest.raises(ValueError, match=r"sequence must be in \[0, 76\]"):
        viz_task.run_viz(tmp_path / "bad", jsb, epochs=0, sequence=77)
    with pytest.raises(ValueError, match="flow_steps=500: no held-out sequence is that long"):
        viz_task.run_viz(tmp_path / "bad", jsb, epochs=0, flow_steps=500)
    assert not (tmp_path / "bad").exists()  # refused before any work
