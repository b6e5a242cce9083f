"""Bad lengths raise in compiled and exported graphs too, not only in eager mode."""

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
