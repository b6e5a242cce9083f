"""Small helpers shared by the core tests."""

import torch

import fastgru


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are zero)."""
    scale = b.abs().max().item()
    diff = (a.double() - b.double()).abs().max().item()
    return diff if scale == 0 else diff / scale


def twin_grus(I, H, *, backend="auto", **kw):
    """A torch.nn.GRU and a fastgru.nn.GRU with the same fresh random weights."""
    t = torch.nn.GRU(I, H, **kw)
    f = fastgru.nn.GRU(I, H, backend=backend, **kw)
    f.load_state_dict(t.state_dict())
    return t, f


def grads(module, *tensors):
    """Gradients of the module's parameters (by name) and of the given tensors."""
    out = {n: p.grad.clone() for n, p in module.named_parameters()}
    for i, t in enumerate(tensors):
        out[f"input{i}"] = t.grad.clone()
    return out
