"""torch.compile runs a model containing fastgru.nn.GRU (custom op with registered backward)."""

import torch
from helpers import rel_err

import fastgru
from fastgru import functional
from fastgru.backends import PLAIN, CellSpec


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = fastgru.nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.head(y)


def test_compiled_model_matches_eager_forward_and_backward():
    model = Tagger()
    x = torch.randn(4, 7, 6)
    eager = model(x)
    eager.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    assert rel_err(out, eager) < 1e-6
    out.square().sum().backward()
    for n, p in model.named_parameters():
        assert rel_err(p.grad, grads[n]) < 1e-5, n


def test_opcheck_custom_op():
    """torch.library.opcheck validates the op's schema, fake tensor and autograd registration."""
    T, B, I, H = 3, 2, 4, 5
    args = (torch.randn(T, B, I, requires_grad=True), torch.randn(B, H, requires_grad=True),
            torch.randn(3 * H, I, requires_grad=True), torch.randn(3 * H, H, requires_grad=True),
            torch.randn(3 * H, requires_grad=True), torch.randn(3 * H, requires_grad=True),
            None, None, torch.tensor([3, 1]), None, None, True, False, True, "auto", functional._spec_key(PLAIN))
    torch.library.opcheck(torch.ops.fastgru.recurrence.default, args)
    rec_mask = (torch.rand(B, H) > 0.3).float() / 0.7
    zone_mask = torch.rand(T, B, H) > 0.5  # the op takes a bool keep-mask
    spec = functional._spec_key(CellSpec(gate_activation="hard_sigmoid", candidate_activation="softsign"))
    args = (*args[:6], None, None, None, rec_mask, zone_mask, False, True, True, "auto", spec)
    torch.library.opcheck(torch.ops.fastgru.recurrence.default, args)
    # layer norm, gi given directly (w_ih None), and with the input-side norm fused, both variants
    gain = torch.rand(3 * H, requires_grad=True) + 0.5
    gain_ih = torch.rand(3 * H, requires_grad=True) + 0.5
    for reset_after in (True, False):
        gi = torch.randn(T, B, 3 * H, requires_grad=True)
        ln_args = (gi, args[1], None, args[3], None, args[5], gain, None, None, None, None, reset_after, False, True,
                   "auto", functional._spec_key(PLAIN))
        torch.library.opcheck(torch.ops.fastgru.recurrence.default, ln_args)
        fused_args = (*args[:6], gain, gain_ih, torch.tensor([3, 2]), None, None, reset_after, False, True,
                      "auto", functional._spec_key(PLAIN))
        torch.library.opcheck(torch.ops.fastgru.recurrence.default, fused_args)
