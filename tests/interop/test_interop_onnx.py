"""ONNX GRU <-> fastgru, checked in onnxruntime: export, import, both variants, ragged lengths, h0."""

import numpy as np
import pytest
import torch
from interop_util import TOL, max_err, ragged_lengths, randomize_, same_state, scaled_err

import fastgru
from fastgru import export
from fastgru.interop import InteropError, from_onnx, to_onnx_model

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install fastgru[interop])")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fastgru[interop])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

T, B, I, H = 7, 4, 3, 5


def session(model_or_path):
    data = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first", [(1, False, False), (2, False, True), (1, True, True),
                                                                  (2, True, False)])
def test_exported_graph_matches_fastgru_in_onnxruntime(tmp_path, reset_after, num_layers, bidirectional, batch_first):
    ours = randomize_(fastgru.nn.GRU(I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional,
                                     reset_after=reset_after)).eval()
    path = export.onnx(ours, tmp_path / "gru.onnx", lengths=True, initial_state=True)
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "GRU"]
    assert len(nodes) == num_layers  # one standard GRU node per layer, not an unrolled graph
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["linear_before_reset"] == int(reset_after)
    assert attrs["direction"] == (b"bidirectional" if bidirectional else b"forward")
    x = torch.randn((B, T, I) if batch_first else (T, B, I))
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), B, H)
    lengths = ragged_lengths(B, T)
    out, h_n = session(path).run(None, {"input": x.numpy(), "lengths": lengths.numpy(), "h0": h0.numpy()})
    with torch.no_grad():
        want_out, want_h = ours(x, h0, lengths=lengths)
    assert max_err(out, want_out) < TOL and max_err(h_n, want_h) < TOL
    # full-length batch, no h0 input
    plain = session(to_onnx_model(ours))
    with torch.no_grad():
        want_out, want_h = ours(x)
    out, h_n = plain.run(None, {"input": x.numpy()})
    assert max_err(out, want_out) < TOL and max_err(h_n, want_h) < TOL
    # and back, bit for bit, still fastgru's plain GRU
    back = from_onnx(path)
    assert same_state(back, ours) and back.cell.plain and back.batch_first == batch_first


@pytest.mark.parametrize("gate,candidate,hard", [("hard_sigmoid", "tanh", (0.3, 0.45)), ("sigmoid", "relu", (0.2, 0.5)),
                                                 ("hard_sigmoid", "hard_sigmoid", (0.25, 0.5)),
                                                 ("sigmoid", "softsign", (0.2, 0.5))])
def test_activations_export_and_import(gate, candidate, hard):
    ours = randomize_(fastgru.nn.GRU(I, H, 2, bidirectional=True, gate_activation=gate, candidate_activation=candidate,
                                     hard_sigmoid=hard)).eval()
    model = to_onnx_model(ours)
    x = torch.randn(T, B, I)
    out, _ = session(model).run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert scaled_err(out, ours(x)[0]) < TOL  # relu outputs are unbounded: relative to their size
    back = from_onnx(model)
    assert same_state(back, ours) and back.cell == ours.cell


@pytest.mark.parametrize("reset_after", [True, False])
def test_cell_export(reset_after):
    cell = randomize_(fastgru.nn.GRUCell(I, H, reset_after=reset_after))
    x, h = torch.randn(B, I), torch.randn(B, H)
    (got,) = session(to_onnx_model(cell, initial_state=True)).run(None, {"input": x.numpy(), "h0": h.numpy()})
    assert max_err(got, cell(x, h).detach()) < TOL


def hand_made_gru_model(*, D, linear_before_reset, bias=True, **attrs):
    """An ONNX model written by hand (not by fastgru): one GRU node with random W, R, B initializers."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31, ())))
    W = rng.normal(0, 0.5, (D, 3 * H, I)).astype(np.float32)
    R = rng.normal(0, 0.5, (D, 3 * H, H)).astype(np.float32)
    Bias = rng.normal(0, 0.5, (D, 6 * H)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    inputs = ["X", "W", "R"]
    if bias:
        inits.append(numpy_helper.from_array(Bias, "B"))
        inputs.append("B")
    node = helper.make_node("GRU", inputs + ["seq_lens"] if bias else inputs, ["Y", "Y_h"], name="the_gru",
                            hidden_size=H, linear_before_reset=linear_before_reset,
                            direction="bidirectional" if D == 2 else "forward", **attrs)
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])]
    if bias:
        graph_inputs.append(helper.make_tensor_value_info("seq_lens", TensorProto.INT32, ["B"]))
    graph = helper.make_graph([node], "hand", graph_inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (W, R, Bias)


@pytest.mark.parametrize("linear_before_reset", [1, 0])
@pytest.mark.parametrize("D", [1, 2])
def test_import_matches_onnxruntime_and_round_trips(D, linear_before_reset):
    model, (W, R, Bias) = hand_made_gru_model(D=D, linear_before_reset=linear_before_reset)
    ours = from_onnx(model)
    assert ours.reset_after == bool(linear_before_reset) and ours.bidirectional == (D == 2)
    x = torch.randn(T, B, I)
    lengths = ragged_lengths(B, T)
    y, y_h = session(model).run(None, {"X": x.numpy(), "seq_lens": lengths.numpy().astype(np.int32)})
    with torch.no_grad():
        out, h_n = ours(x, lengths=lengths)
    # ONNX Y is (T, D, B, H); fastgru concatenates the directions on the last axis
    assert max_err(out, torch.from_numpy(y).permute(0, 2, 1, 3).reshape(T, B, D * H)) < TOL
    assert max_err(h_n, y_h) < TOL
    again = {t.name: numpy_helper.to_array(t) for t in to_onnx_model(ours).graph.initializer}
    assert np.array_equal(again["W_l0"], W) and np.array_equal(again["R_l0"], R) and np.array_equal(again["B_l0"], Bias)


def test_import_without_bias():
    model, _ = hand_made_gru_model(D=1, linear_before_reset=0, bias=False)
    ours = from_onnx(model)
    assert not ours.bias
    x = torch.randn(T, B, I)
    _, y_h = session(model).run(None, {"X": x.numpy()})
    assert max_err(ours(x)[1].detach(), y_h) < TOL


def test_import_refusals_name_the_attribute():
    for attrs, pattern in [({"clip": 3.0}, "clip"), ({"activations": ["Sigmoid", "Elu"]}, "Elu"),
                           ({"activations": ["Tanh", "Tanh"]}, "gate activation")]:
        model, _ = hand_made_gru_model(D=1, linear_before_reset=1, **attrs)
        with pytest.raises(InteropError, match=pattern):
            from_onnx(model)
    model, _ = hand_made_gru_model(D=1, linear_before_reset=1)
    model.graph.node[0].attribute.append(helper.make_attribute("direction", "reverse"))
    del model.graph.node[0].attribute[[a.name for a in model.graph.node[0].attribute].index("direction")]
    with pytest.raises(InteropError, match="reverse"):
        from_onnx(model)
    with pytest.raises(InteropError, match="no GRU node"):
        from_onnx(helper.make_model(helper.make_graph([], "empty", [], [])))


def test_unchained_gru_nodes_need_node_argument():
    a = randomize_(fastgru.nn.GRU(I, H)).eval()
    m1 = to_onnx_model(a)
    m2 = onnx.compose.add_prefix(to_onnx_model(a), prefix="b_")
    merged = onnx.compose.merge_models(m1, m2, io_map=[])  # two independent GRUs side by side
    with pytest.raises(InteropError, match="node="):
        from_onnx(merged)
    assert same_state(from_onnx(merged, node="b_gru_l0"), a)
    assert same_state(from_onnx(merged, node=0), a)


def test_export_protects_existing_files(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"precious")
    ours = fastgru.nn.GRU(I, H)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.onnx(ours, path)
    with pytest.raises(InteropError, match="zoneout"):
        export.onnx(fastgru.nn.GRU(I, H, zoneout=0.2), path, overwrite=True)
    assert path.read_bytes() == b"precious"
    export.onnx(ours, path, overwrite=True)
    assert same_state(from_onnx(path), ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp files left behind
