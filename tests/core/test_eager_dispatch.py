"""Eager calls run the recurrence through an autograd Function; compilers and tracers see the custom op.

Both must give torch.nn.GRU's numbers and gradients (fresh weights and inputs each time).
"""

import pytest
import torch

from fastgru.core import functional
from fastgru.nn import GRU


def _graph_nodes(t: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [t.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("reset_after", [True, False])
def test_eager_training_uses_the_function_and_matches_torch(reset_after):
    torch.manual_seed(torch.seed() % 2**31)
    model = GRU(6, 10, num_layers=2, bidirectional=True, reset_after=reset_after)
    x = torch.randn(5, 3, 6, requires_grad=True)
    out, h = model(x)
    names = _graph_nodes(out)
    assert any("EagerRecurrence" in n for n in names), names
    assert not any("fastgru" in n.lower() and "recurrence" in n.lower() and "Eager" not in n for n in names), names
    if reset_after:
        ref = torch.nn.GRU(6, 10, num_layers=2, bidirectional=True)
        ref.load_state_dict(model.state_dict())
        x2 = x.detach().clone().requires_grad_(True)
        out2, h2 = ref(x2)
        g = torch.randn_like(out)
        (out * g).sum().backward()
        (out2 * g).sum().backward()
        torch.testing.assert_close(out, out2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-5)
        for (name, p), p2 in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, p2.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_under_a_dispatch_mode_or_transform_the_custom_op_runs():
    x = torch.randn(2, 3)
    assert functional._plain_eager(x, None, torch.nn.Parameter(torch.randn(2)))
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Watch():
        assert not functional._plain_eager(x)

    def inside(v):
        assert not functional._plain_eager(v)
        return v.sum()

    torch.func.grad(inside)(torch.randn(3))

    class Sub(torch.Tensor):
        pass

    assert not functional._plain_eager(x.as_subclass(Sub))


def test_custom_op_path_gives_the_eager_numbers():
    """The same layer through the custom op (as a compiler would run it) and through the Function."""
    T, B, I, H = 4, 2, 5, 7
    x, h0 = torch.randn(T, B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    w_ih, w_hh = torch.randn(3 * H, I, dtype=torch.float64), torch.randn(3 * H, H, dtype=torch.float64)
    b_ih, b_hh = torch.randn(3 * H, dtype=torch.float64), torch.randn(3 * H, dtype=torch.float64)
    params = [t.requires_grad_(True) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    args = (*params, None, None, None, None, None, True, False, True, "auto", functional._spec_key(functional.PLAIN))
    eager = functional._EagerRecurrence.apply(*args)[0]
    op = functional._recurrence(*args)[0]
    torch.testing.assert_close(eager, op, atol=0, rtol=0)
    g = torch.randn_like(eager)
    ge = torch.autograd.grad(eager, params, g)
    go = torch.autograd.grad(op, params, g)
    for a, b in zip(ge, go):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda *p: functional._EagerRecurrence.apply(*p, *args[6:])[0], params)
