"""torch.onnx.export of whole models holding fastgru GRUs: standard ONNX GRU nodes, checked in onnxruntime.

Both exporters (dynamo=True, torch's default, and the TorchScript one), both reset variants, with and
without lengths, on Embedding -> 2-layer bidirectional fastgru GRU -> Linear; fresh random weights and
inputs, and the exported graph is run on other shapes than it was traced with.
"""

import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from interop_util import TOL, max_err, ragged_lengths, randomize_

import fastgru
from fastgru.interop import InteropError
from fastgru.interop.onnx_export import node_plan

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install fastgru[interop])")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fastgru[interop])")

VOCAB, E, H, CLASSES = 23, 6, 5, 4


class Tagger(torch.nn.Module):
    """Embedding -> 2-layer bidirectional fastgru GRU -> Linear (per-step outputs) and the final states."""

    def __init__(self, **gru_options) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, E)
        self.gru = fastgru.GRU(E, H, num_layers=2, bidirectional=True, batch_first=True, **gru_options)
        self.head = torch.nn.Linear(2 * H, CLASSES)

    def forward(self, tokens, lengths=None):
        y, h_n = self.gru(self.embed(tokens), lengths=lengths)
        return self.head(y), h_n


class Wrapped(torch.nn.Module):
    """Any fastgru module inside a model (the TorchScript exporter cannot take a bare fastgru.GRU, whose
    forward has keyword-only arguments it passes positionally)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out[0] if isinstance(out, tuple) else out


def export(model, args, path, dynamo: bool, names, dynamic: dict, **options):
    if dynamo:
        pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (fastgru[interop])")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            if dynamo:
                shapes = tuple(dynamic.get(n) for n in names)
                torch.onnx.export(model, args, path, dynamo=True, input_names=names, dynamic_shapes=shapes,
                                  verbose=False)
            else:
                torch.onnx.export(model, args, path, dynamo=False, input_names=names, dynamic_axes=dynamic,
                                  **options)
        finally:
            logging.disable(logging.NOTSET)
    return path


def gru_nodes(path):
    graph = onnx.load(str(path)).graph
    assert not [n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")]  # standard ops only
    return [n for n in graph.node if n.op_type == "GRU"], graph


def attr(node, name):
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("with_lengths", [True, False], ids=["lengths", "no_lengths"])
def test_whole_model_exports_to_onnx_gru_nodes(tmp_path, dynamo, reset_after, with_lengths):
    model = randomize_(Tagger(reset_after=reset_after)).eval()
    names = ["tokens", "lengths"] if with_lengths else ["tokens"]
    dynamic = {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}
    tokens = torch.randint(0, VOCAB, (3, 6))
    args = (tokens, torch.tensor([6, 2, 4])) if with_lengths else (tokens,)
    path = export(model, args, tmp_path / "tagger.onnx", dynamo, names, dynamic)

    nodes, graph = gru_nodes(path)
    assert len(nodes) == 4  # 2 layers x 2 directions, each one standard GRU node
    assert sorted(attr(n, "direction") for n in nodes) == [b"forward", b"forward", b"reverse", b"reverse"]
    assert all(attr(n, "linear_before_reset") == int(reset_after) for n in nodes)
    for n in nodes:
        has_seq_lens = len(n.input) > 4 and n.input[4] != ""
        assert has_seq_lens == with_lengths
    assert [i.name for i in graph.input] == names

    # other batch size and length than traced with; ragged lengths (the reverse direction starts at each end)
    batch, steps = 5, 9
    tokens = torch.randint(0, VOCAB, (batch, steps))
    feeds = {"tokens": tokens.numpy()}
    lengths = None
    if with_lengths:
        lengths = ragged_lengths(batch, steps)
        feeds["lengths"] = lengths.numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.no_grad():
        want = model(tokens, lengths)
    assert max_err(got[0], want[0]) < TOL
    assert max_err(got[1], want[1]) < TOL


def test_activations_and_initial_state_export(tmp_path):
    """hard_sigmoid gates and relu candidates map to the node's activations; h0 becomes initial_h."""
    class WithState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = fastgru.GRU(3, 4, gate_activation="hard_sigmoid", candidate_activation="relu",
                                   hard_sigmoid=(1 / 6, 0.5), reset_after=False)

        def forward(self, x, h0):
            return self.gru(x, h0)

    model = randomize_(WithState()).eval()
    x, h0 = torch.randn(6, 2, 3), torch.randn(1, 2, 4)
    path = export(model, (x, h0), tmp_path / "acts.onnx", False, ["x", "h0"], {"x": {0: "t", 1: "b"}, "h0": {1: "b"}})
    (node,), _ = gru_nodes(path)
    assert attr(node, "activations") == [b"HardSigmoid", b"Relu"]
    x, h0 = torch.randn(8, 3, 3), torch.randn(1, 3, 4)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy(),
                                                                                        "h0": h0.numpy()})
    with torch.no_grad():
        want = model(x, h0)
    scale = max(1.0, float(want[0].abs().max()))
    assert max_err(got[0], want[0]) / scale < TOL and max_err(got[1], want[1]) / scale < TOL


REFUSED = {  # what the error names: (module, export in training mode)
    "layer normalisation": (lambda: fastgru.LayerNormGRU(3, 4), False),
    "zoneout=0.25": (lambda: fastgru.GRU(3, 4, zoneout=0.25), False),
    "recurrent-dropout mask": (lambda: fastgru.GRU(3, 4, recurrent_dropout=0.3), True),
    "zoneout mask": (lambda: fastgru.GRU(3, 4, zoneout=0.3), True),
}


@pytest.mark.parametrize("what", list(REFUSED))
def test_options_onnx_cannot_express_are_refused_torchscript(tmp_path, what):
    make, training = REFUSED[what]
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    with pytest.raises(InteropError, match=what):
        export(Wrapped(make()), (torch.randn(5, 2, 3),), tmp_path / "x.onnx", False, ["x"], {}, training=mode)
    assert not (tmp_path / "x.onnx").exists()


def test_options_onnx_cannot_express_are_refused_dynamo(tmp_path):
    """The dynamo exporter wraps the error; its message still names the option."""
    with pytest.raises(Exception, match="layer normalisation"):
        model = Wrapped(REFUSED["layer normalisation"][0]().eval())
        export(model, (torch.randn(5, 2, 3),), tmp_path / "x.onnx", True, ["x"], {})


def test_unknown_op_arguments_are_refused():
    """An argument the translation does not know (a newer op) is refused, not dropped."""
    base = dict(x=1, h0=1, w_ih=1, w_hh=1, b_ih=None, b_hh=None, ln_gain=None, ln_gain_ih=None, lengths=None,
                rec_mask=None, zone_mask=None, reset_after=True, reverse=False, save=False, backend="auto",
                spec="sigmoid,tanh,0.2,0.5,0.0")
    assert node_plan(base, is_none=lambda v: v is None) == {"linear_before_reset": 1, "direction": "forward"}
    with pytest.raises(InteropError, match="mask"):
        node_plan({**base, "mask": np.ones(2)}, is_none=lambda v: v is None)
    assert node_plan({**base, "mask": None}, is_none=lambda v: v is None)["direction"] == "forward"


def test_dynamo_translation_registered_whatever_the_import_order():
    """fastgru imported after torch's dynamo exporter registers at once (before: on the exporter's load)."""
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (fastgru[interop])")
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from torch.onnx._internal.exporter import _compat\n"
        "from torch.onnx._internal.exporter._torchlib import _torchlib_registry as r\n"
        "import torch, fastgru\n"
        "op = torch.ops.fastgru.recurrence.default\n"
        "print(sum(m.fx_target == op for m in r._registry))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"


class MaskedTagger(Tagger):
    """Tagger over token ids where 0 is padding (anywhere: left, right, holes), given to the GRU as a mask."""

    def __init__(self, mask_output: str) -> None:
        super().__init__()
        self.mask_output = mask_output

    def forward(self, tokens):
        y, h_n = self.gru(self.embed(tokens), mask=tokens != 0, mask_output=self.mask_output)
        return self.head(y), h_n


@pytest.mark.parametrize(("dynamo", "mask_output"), [(True, "carry"), (False, "carry"), (False, "zero")],
                         ids=["dynamo-carry", "torchscript-carry", "torchscript-zero"])
def test_masked_model_exports(tmp_path, dynamo, mask_output):
    """mask= becomes gathers around GRU nodes with sequence_lens; the graph takes any mask pattern."""
    model = randomize_(MaskedTagger(mask_output)).eval()
    traced_with = torch.randint(1, VOCAB, (3, 6)) * (torch.rand(3, 6) < 0.7)
    path = export(model, (traced_with,), tmp_path / "masked.onnx", dynamo, ["tokens"],
                  {"tokens": {0: "batch", 1: "time"}})
    nodes, _ = gru_nodes(path)
    assert len(nodes) == 4 and all(len(n.input) > 4 and n.input[4] != "" for n in nodes)
    tokens = torch.randint(1, VOCAB, (5, 9))
    tokens[1, :4] = 0  # left padding
    tokens[2, 6:] = 0  # right padding
    tokens[3, [2, 5]] = 0  # holes
    tokens[4] = 0  # no real step
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"tokens": tokens.numpy()})
    with torch.no_grad():
        want = model(tokens)
    assert max_err(got[0], want[0]) < TOL and max_err(got[1], want[1]) < TOL
