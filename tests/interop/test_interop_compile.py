"""torch.export and torch.compile of models containing fastgru layers match eager mode.

(tests/core/test_compile.py covers torch.compile forward + backward of the plain GRU with aot_eager; here:
export with static and dynamic shapes, variable lengths, both variants, save/load of the exported
program, and one real inductor compile.)
"""

import io

import pytest
import torch
from interop_util import randomize_

import fastgru


class Tagger(torch.nn.Module):
    """A model as users write one: a fastgru GRU stack and a linear head, variable lengths."""

    def __init__(self, reset_after: bool, **gru_options):
        super().__init__()
        self.gru = fastgru.nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True,
                                  reset_after=reset_after, **gru_options)
        self.head = torch.nn.Linear(12, 3)

    def forward(self, x, lengths):
        y, h = self.gru(x, lengths=lengths)
        return self.head(y), h


def batch(B, T):
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    return torch.randn(B, T, 4), lengths


def assert_same(got, want):
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w), (g - w).abs().max()


@pytest.mark.parametrize("reset_after", [True, False])
def test_torch_export_matches_eager(reset_after):
    model = randomize_(Tagger(reset_after)).eval()
    x, lengths = batch(3, 7)
    with torch.no_grad():
        program = torch.export.export(model, (x, lengths))
        x2, lengths2 = batch(3, 7)  # fresh inputs of the traced shape
        assert_same(program.module()(x2, lengths2), model(x2, lengths2))
        b, t = torch.export.Dim("batch", min=2), torch.export.Dim("time", min=2)
        dynamic = torch.export.export(model, (x, lengths),
                                      dynamic_shapes={"x": {0: b, 1: t}, "lengths": {0: b}})
        x3, lengths3 = batch(5, 11)  # other batch and time sizes
        assert_same(dynamic.module()(x3, lengths3), model(x3, lengths3))
        buffer = io.BytesIO()
        torch.export.save(dynamic, buffer)
        buffer.seek(0)
        assert_same(torch.export.load(buffer).module()(x3, lengths3), model(x3, lengths3))


def test_compile_aot_eager_with_lengths_and_cell_options():
    model = randomize_(Tagger(False, candidate_activation="softsign", gate_activation="hard_sigmoid"))
    x, lengths = batch(4, 6)
    eager_out, eager_h = model(x, lengths)
    (eager_out.square().sum() + eager_h.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out, h = compiled(x, lengths)
    assert torch.allclose(out, eager_out, rtol=0, atol=1e-6) and torch.allclose(h, eager_h, rtol=0, atol=1e-6)
    (out.square().sum() + h.sum()).backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], rtol=1e-5, atol=1e-6), n


@pytest.mark.slow
def test_compile_inductor_inference():
    """The default backend (inductor, C++ codegen on a CPU: 8-25 s here) around the fastgru custom op."""
    model = randomize_(Tagger(True)).eval()
    compiled = torch.compile(model, fullgraph=True)
    x, lengths = batch(3, 7)
    with torch.no_grad():
        got, want = compiled(x, lengths), model(x, lengths)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=0, atol=1e-6)
