"""Bad lengths and masks raise in compiled and exported graphs too, not only in eager mode."""

import pytest
import torch

import fastgru


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = fastgru.nn.GRU(3, 4)

    def forward(self, x, lengths):
        return self.gru(x, lengths=lengths)[0]


def _bad_lengths(T):
    return [torch.tensor([0, 2]), torch.tensor([-1, 2]), torch.tensor([T + 1, 2])]


def test_compiled_graph_refuses_bad_lengths():
    model, x = _Model(), torch.randn(5, 2, 3)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    good = compiled(x, torch.tensor([5, 2]))
    assert torch.allclose(good, model(x, torch.tensor([5, 2])), atol=1e-6)
    for lengths in _bad_lengths(5):
        with pytest.raises(RuntimeError, match="lengths must be in"):
            compiled(x, lengths)


def test_exported_program_refuses_bad_lengths():
    model, x = _Model(), torch.randn(5, 2, 3)
    program = torch.export.export(model, (x, torch.tensor([5, 2]))).module()
    assert torch.allclose(program(x, torch.tensor([3, 2])), model(x, torch.tensor([3, 2])), atol=1e-6)
    for lengths in _bad_lengths(5):
        with pytest.raises(RuntimeError, match="lengths must be in"):
            program(x, lengths)


class _Masked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = fastgru.nn.GRU(3, 4, bidirectional=True)

    def forward(self, x, mask):
        return self.gru(x, mask=mask, mask_output="carry")[0]


def _masks():
    """Holes, all real, one empty row: one traced graph must serve them all (nothing specialised on values)."""
    return [torch.rand(2, 5) < 0.5, torch.ones(2, 5, dtype=torch.bool), torch.tensor([[False] * 5, [True] * 5])]


def test_compiled_graph_takes_any_mask_and_refuses_bad_ones():
    model, x = _Masked(), torch.randn(5, 2, 3)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for mask in _masks():
        assert torch.allclose(compiled(x, mask), model(x, mask), atol=1e-6)
    eager_fallback = torch.compile(model, backend="aot_eager")
    for bad, message in ((_masks()[0].float(), "dtype torch.bool"), (_masks()[0].t(), r"shape \(batch, seq_len\)")):
        # fullgraph: dynamo's error quoting fastgru's message (or fastgru's own once dynamo gave up on the frame)
        with pytest.raises((RuntimeError, fastgru.GRUInputError), match=message):
            compiled(x, bad)
        with pytest.raises(fastgru.GRUInputError, match=message):
            eager_fallback(x, bad)


def test_exported_program_takes_any_mask_and_refuses_bad_ones():
    model, x = _Masked(), torch.randn(5, 2, 3)
    program = torch.export.export(model, (x, _masks()[0])).module()
    for mask in _masks():
        assert torch.allclose(program(x, mask), model(x, mask), atol=1e-6)
    for bad in (_masks()[0].float(), _masks()[0][:, :4]):
        with pytest.raises((RuntimeError, AssertionError), match="dtype mismatch|Guard failed"):
            program(x, bad)
