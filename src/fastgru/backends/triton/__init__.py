"""Triton GPU backend: fused GRU recurrence kernels (persistent, per-step, cuBLAS-assisted large batch).

Implements the backend contract of `fastgru.backends` (`recurrence_forward`, `recurrence_backward`)
plus `is_available(device)`. Importing this package raises ImportError when Triton is missing, which
`fastgru.backends.select` turns into the CPU fallback (or a clear message for backend='triton').

Cell options (SUPPORTS_CELL_OPTIONS): recurrent dropout (rec_mask), zoneout (the training keep-mask
zone_mask, or eval mode's spec.zoneout) and the activations of `spec` (gate sigmoid / hard_sigmoid,
candidate tanh / relu / softsign / sigmoid / hard_sigmoid) are fused into the same kernels, forward and
backward, in every mode below; they are compile-time switches, so a plain GRU runs the same code as
without them.

Recurrent layer norm (ln_gain, LayerNormGRU; SUPPORTS_LAYER_NORM): fused in the same step bodies behind
the LN constexpr, with torch_loop's semantics: reset_after=True normalises the 3H recurrent products of a
row together, reset_after=False the r, z products (2H) and W_hn (r * h) (H) separately; gain, then b_hh.
Forward saves xhat (3H) and 2 rstd per (t, b) after the gates; backward returns dgh_pre as its 4th output
(the gain's gradient is left to the caller, which sums it from the saved xhat). Limits: a norm reduces
over whole rows, so one program owns all H units of its rows (block_h >= H): H <= heuristics.LN_MAX_H
(512) only, `supports_layer_norm(H)`; `select(..., layer_norm=True, hidden_size=H)` sends larger H (or
an unknown H) to the torch loop under backend='auto' and refuses it under 'triton'. All three modes take
it (persistent: one program per batch block, no grid barrier). The input-side norm (gi_gain,
SUPPORTS_INPUT_NORM) is not fused: fastgru.core.functional normalises the projections in torch first.

Precision. Inputs and weights may be float32, bfloat16 or float16. The recurrence runs in float32
(state, gate activations, accumulation, the carried gradient dh); what the contract returns has the
input dtype, like the other backends and cuDNN: buf and gates take gi's dtype, dgi, dgh_n and dh0
take buf's dtype (values rounded to nearest). For half inputs the float32 state travels between
programs through a 2-slot float32 ring beside buf, so rounding buf never feeds back into the
recurrence. The saved gates and buf are half, so the backward sees rounded r, z, n, h as cuDNN's does
(relative gradient error ~5e-3 in bf16); FASTGRU_TRITON_GATES=fp32 saves the gates in float32 instead
(~2.5e-3, the rounding of the outputs themselves; ~1.8x the saved bytes, and gates then is float32).
For half weights the recurrent product rounds its float32 operand (state / gate gradient) to the weight
dtype and accumulates in float32 (tensor cores), as cuDNN does. For fp32 weights the product uses TF32
when cuDNN's RNNs would (`torch.backends.cudnn.rnn.fp32_precision`, else
`torch.backends.cudnn.allow_tf32`, on by default), so comparisons with torch.nn.GRU are like for like;
with TF32 off it is exact fp32.

Modes (`heuristics.py` chooses; FASTGRU_TRITON_MODE forces one):
- persistent: one launch per sequence; each program owns BLOCK_H hidden units of BLOCK_B rows, keeps
  its W_hh slice (all three gates) in registers when it fits, and the programs exchange the state
  through the contract's buf with a grid-wide atomic barrier (release / acquire) once per step (twice
  for reset_after=False, which also exchanges r * h). The backward is built the same way and exchanges
  the gate gradients (dgi[t], dgh_n[t]); dh stays in registers.
- step: the same @triton.jit step bodies, one launch per step (per phase), no barrier. Whole
  sequences run this way under TRITON_INTERPRET=1 on the CPU (tests/backends/test_triton_backend.py).
- gemm: B >= 128 and H >= 1024 (half weights, or fp32 with TF32 off): cuBLAS does each step's recurrent
  GEMM on tensor cores and a fused Triton kernel the gate arithmetic. fp32 with TF32 allowed uses the
  step kernels there (their tl.dot honours cuDNN's TF32 switch; this library never sets global flags).

The contract functions accept CPU tensors only when Triton's interpreter is on (TRITON_INTERPRET=1
before this package is imported); `is_available` stays False for CPU devices regardless, so
backend='auto' / 'triton' never route CPU tensors here. FASTGRU_TRITON_POISON=1 fills outputs
and scratch with NaN before the kernels run (validation). Speed has not been measured yet.
"""

from __future__ import annotations

import torch
import triton  # noqa: F401  (ImportError here means: no Triton, use another backend)
from torch import Tensor

from fastgru.backends import PLAIN, CellSpec
from fastgru.backends.triton.heuristics import LN_MAX_H, Plan, make_plan, supports_layer_norm
from fastgru.backends.triton.launch import allow_tf32, backward, device_ok, forward, interpreting, plan_for

__all__ = [
    "LN_MAX_H", "SUPPORTS_CELL_OPTIONS", "SUPPORTS_LAYER_NORM", "Plan", "allow_tf32", "interpreting",
    "is_available", "make_plan", "plan_for", "recurrence_backward", "recurrence_forward", "supports_layer_norm",
]

SUPPORTS_CELL_OPTIONS = True  # rec_mask, zone_mask, spec (activations, eval zoneout)
SUPPORTS_LAYER_NORM = True  # ln_gain, for hidden sizes where supports_layer_norm(H) (select() asks it)


def is_available(device: torch.device | str | None = None) -> bool:
    """True if `fastgru.backends.select` may hand `device`'s tensors to this backend: a CUDA device
    with kernels compiled for it (None: the default CUDA device). Never for CPU tensors, even under
    the interpreter: that is a test harness, reached by calling the contract functions directly."""
    dev = torch.device("cuda") if device is None else torch.device(device)
    try:
        return dev.type == "cuda" and device_ok(dev)
    except Exception:  # a broken CUDA install should mean "not available", never a crash in select()
        return False


def recurrence_forward(
    gi: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    save: bool,
    *,
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    ln_gain: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The contract's forward (fastgru.backends); buf and gates in gi's dtype, computed in float32."""
    return forward(gi, h0, w_hh, b_hh, lengths, reset_after, reverse, save, rec_mask=rec_mask,
                   zone_mask=zone_mask, spec=spec, ln_gain=ln_gain)


def recurrence_backward(
    dbuf: Tensor,
    buf: Tensor,
    gates: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    *,
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    ln_gain: Tensor | None = None,
) -> tuple[Tensor, ...]:
    """The contract's backward (fastgru.backends); outputs in buf's dtype, computed in float32 (with ln_gain a
    4th, dgh_pre)."""
    return backward(dbuf, buf, gates, w_hh, lengths, reset_after, reverse, rec_mask=rec_mask, zone_mask=zone_mask,
                    spec=spec, ln_gain=ln_gain)
