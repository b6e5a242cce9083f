"""The GRU as functions: one layer-direction as a torch.library custom op with a hand-written BPTT.

`gru_layer` runs one direction of one layer. Its forward does the input projection for all steps as
one GEMM, then the backend's recurrence (fastgru.backends), keeping only what backward needs (nothing
at all for an inference call). Its backward walks t = T-1..0 in the backend and then forms each weight
gradient as one large matrix product over T*B rows. `gru` stacks layers and directions like
torch.nn.GRU. This is the only module that knows backends exist.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgru import backends
from fastgru.backends import PLAIN, CellSpec, layer_norm_offset, row_norm, saved_width
from fastgru.backends import cpu as cpu_backend
from fastgru.core import masking
from fastgru.core.errors import GRUInputError
from fastgru.core.validation import (
    check_finite,
    check_hidden,
    check_input,
    check_lengths,
    check_mask,
    check_regularization,
    check_weights,
)

Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


def _project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> Tensor:
    """Input projections of all T steps as one GEMM: (T, B, I) -> (T, B, 3H)."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)
    gi = torch.addmm(b_ih, x2, w_ih.t()) if b_ih is not None else x2 @ w_ih.t()
    return gi.view(T, B, -1)


def _spec_key(spec: CellSpec) -> str:
    """CellSpec as a string, so it can pass through the custom op's schema (traceable by dynamo)."""
    return (
        f"{spec.gate_activation},{spec.candidate_activation},{spec.hard_sigmoid_alpha!r},"
        f"{spec.hard_sigmoid_beta!r},{spec.zoneout!r}"
    )


@functools.lru_cache(maxsize=64)
def _spec_from_key(key: str) -> CellSpec:
    gate, cand, alpha, beta, zoneout = key.split(",")
    return CellSpec(gate, cand, float(alpha), float(beta), float(zoneout))


def _backend_and_options(x: Tensor, backend: str, spec_key: str, rec_mask, zone_mask, ln_gain):
    """The backend for this call and the cell-option keywords to pass it (none for a plain GRU)."""
    spec = _spec_from_key(spec_key)
    if spec.plain and rec_mask is None and zone_mask is None and ln_gain is None:
        return backends.select(x.device, backend, dtype=x.dtype), {}
    options = dict(rec_mask=rec_mask, zone_mask=zone_mask, spec=spec)
    if ln_gain is not None:
        options["ln_gain"] = ln_gain
    layer_norm = ln_gain is not None
    return backends.select(x.device, backend, plain=False, dtype=x.dtype, layer_norm=layer_norm,
                           hidden_size=ln_gain.shape[0] // 3 if layer_norm else None), options


def _empty(like: Tensor) -> Tensor:
    return like.new_empty(0)


def _fuses_input_norm(impl) -> bool:
    """Whether the backend normalises the input projections inside its loops (LayerNormGRU's input side)."""
    return getattr(impl, "SUPPORTS_INPUT_NORM", False)


def _recurrence_impl(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor | None,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    ln_gain: Tensor | None,
    ln_gain_ih: Tensor | None,
    lengths: Tensor | None,
    rec_mask: Tensor | None,
    zone_mask: Tensor | None,
    reset_after: bool,
    reverse: bool,
    save: bool,
    backend: str,
    spec: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x (T, B, I) projected by w_ih/b_ih, or already the gate inputs gi (T, B, 3H) when w_ih is None.

    ln_gain_ih: layer-normalise the projections (b_ih is the norm's shift), in place in the projection
    buffer. Returns (buf, gates, xhat, rstd); the last two are the input norm's saved values when saving
    (xhat (T, B, 3H), rstd (T*B,)), else empty.
    """
    impl, options = _backend_and_options(x, backend, spec, rec_mask, zone_mask, ln_gain)
    xhat, rstd = _empty(x), _empty(x)
    if w_ih is None:
        gi = x
    else:
        shift = None if ln_gain_ih is not None else b_ih  # with a norm, b_ih is applied after it
        if hasattr(impl, "project"):  # the backend places gi itself (workspace reuse for inference)
            gi = impl.project(x, w_ih, shift, reuse=not save)
        else:
            gi = _project(x, w_ih, shift)
        if ln_gain_ih is not None and _fuses_input_norm(impl):
            # the kernel normalises each row in its loop; saving, gi's rows become xhat (rstd comes back)
            options = dict(options, gi_gain=ln_gain_ih, gi_bias=b_ih)
            if save:
                xhat = gi
        elif ln_gain_ih is not None and not save:
            row_norm.normalize_(gi, ln_gain_ih, b_ih, keep_xhat=False)
        elif ln_gain_ih is not None:
            rstd = row_norm.normalize_(gi, ln_gain_ih, None, keep_xhat=True)
            xhat = gi
            gi = xhat * ln_gain_ih if b_ih is None else torch.addcmul(b_ih, xhat, ln_gain_ih)
    buf, gates, *in_rstd = impl.recurrence_forward(gi, h0, w_hh, b_hh, lengths, reset_after, reverse, save, **options)
    if save and in_rstd:
        rstd = in_rstd[0]
    return buf, gates, xhat, rstd


_recurrence = torch.library.custom_op("fastgru::recurrence", _recurrence_impl, mutates_args=())


@_recurrence.register_fake
def _recurrence_fake(x, h0, w_ih, w_hh, b_ih, b_hh, ln_gain, ln_gain_ih, lengths, rec_mask, zone_mask, reset_after,
                     reverse, save, backend, spec):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    gates = x.new_empty(T, B, saved_width(reset_after, ln_gain is not None, H)) if save else _empty(x)
    normed = save and ln_gain_ih is not None
    xhat = x.new_empty(T, B, 3 * H) if normed else _empty(x)
    rstd = x.new_empty(T * B) if normed else _empty(x)
    return x.new_empty(T + 1, B, H), gates, xhat, rstd


def _recurrence_backward_impl(
    dbuf: Tensor,
    x: Tensor,
    w_ih: Tensor | None,
    w_hh: Tensor,
    buf: Tensor,
    gates: Tensor,
    ln_gain: Tensor | None,
    ln_gain_ih: Tensor | None,
    in_xhat: Tensor,
    in_rstd: Tensor,
    lengths: Tensor | None,
    rec_mask: Tensor | None,
    zone_mask: Tensor | None,
    reset_after: bool,
    reverse: bool,
    has_bias_ih: bool,
    has_bias_hh: bool,
    need_dx: bool,
    backend: str,
    spec: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT in the backend, then every weight gradient as large GEMMs / reductions over T*B rows.

    Returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, d ln_gain, d ln_gain_ih); empty tensors for absent ones.
    """
    impl, options = _backend_and_options(x, backend, spec, rec_mask, zone_mask, ln_gain)
    if impl is cpu_backend and not options and ln_gain_ih is None and w_ih is not None:
        # a plain cell on the fused CPU kernel: everything below in one call
        grads = cpu_backend.recurrence_grads(dbuf, x, w_ih, w_hh, buf, gates, lengths, reset_after, reverse,
                                             has_bias_ih, has_bias_hh, need_dx)
        return (*grads, _empty(x), _empty(x))
    T, B, I = x.shape
    H = w_hh.shape[1]
    # The backend takes the gradient through the input norm in its loop when it has the recurrent norm's
    # gradient too (dW_hh then pairs with dgh_pre, never with dgi) and sums the biases' gradients there.
    in_loop = ln_gain_ih is not None and ln_gain is not None and w_ih is not None and _fuses_input_norm(impl)
    if in_loop:
        options = dict(options, gi_norm=(in_xhat, in_rstd, ln_gain_ih))
    dgi, dgh_n, dh0, *rest = impl.recurrence_backward(dbuf, buf, gates, w_hh, lengths, reset_after, reverse, **options)
    # optional outputs: pre-norm recurrent gradient, gain gradients summed in the loop, bias sums
    dpre, dgain, dgain_ih, bias_sums = list(rest) + [None] * (4 - len(rest))
    dg = dgi.view(T * B, 3 * H)  # with in_loop: the gradient of the raw projections
    dpre = dpre.view(T * B, 3 * H) if dpre is not None else None

    def input_side() -> tuple[Tensor, Tensor]:
        dx = (dg @ w_ih).view(T, B, I) if need_dx else _empty(x)
        return dx, dg.t() @ x.reshape(T * B, I)

    # Without an input norm the input side goes first (as large temporaries die early, the peak stays
    # lower); with one done here, dg is changed in place by the norm's backward, so it goes last.
    input_first = w_ih is not None and (ln_gain_ih is None or in_loop)
    if input_first:
        dx, dw_ih = input_side()
        db_ih = _empty(x) if not has_bias_ih else bias_sums[: 3 * H].clone() if in_loop else dg.sum(0)
    h_prev = buf[1:] if reverse else buf[:T]
    if rec_mask is not None:  # the cell saw h_{t-1} * mask
        h_prev = h_prev * rec_mask
    h_prev = h_prev.reshape(T * B, H)
    # d of the recurrent pre-activations as the gates see them (after any layer norm): r, z parts equal
    # the input side's; the n part is dgh_n (reset_after) or the input side's (Cho 2014).
    dn_h = None if in_loop else dgh_n.view(T * B, H) if reset_after else dg[:, 2 * H :]
    # dW_hh as two GEMMs over all T*B rows: the r, z rows pair with h_{t-1}; the n rows pair with
    # h_{t-1} (reset_after) or r * h_{t-1} (Cho 2014).
    dw_hh = w_hh.new_empty(3 * H, H)
    torch.mm((dg[:, : 2 * H] if dpre is None else dpre[:, : 2 * H]).t(), h_prev, out=dw_hh[: 2 * H])
    n_rows = dn_h if dpre is None else dpre[:, 2 * H :]
    n_partner = h_prev if reset_after else gates.view(T * B, -1)[:, :H] * h_prev
    torch.mm(n_rows.t(), n_partner, out=dw_hh[2 * H :])
    if not has_bias_hh:
        db_hh = _empty(x)
    elif in_loop:  # sums of d gi (r, z, n), then of d(W_hn h + b_hn) for reset_after
        db_hh = torch.cat((bias_sums[: 2 * H], bias_sums[3 * H :])) if reset_after else bias_sums[: 3 * H]
    else:
        db_hh = torch.cat((dg[:, : 2 * H].sum(0), dn_h.sum(0)))
    if dgain is None and ln_gain is not None:  # not summed in the backend's loop: the norm's output is xhat * gain
        ln_at = layer_norm_offset(reset_after, H)
        xhat = gates.view(T * B, -1)[:, ln_at : ln_at + 3 * H]
        dgain = torch.cat(((dg[:, : 2 * H] * xhat[:, : 2 * H]).sum(0), (dn_h * xhat[:, 2 * H :]).sum(0)))
    elif dgain is None:
        dgain = _empty(x)
    dgain_ih = dgain_ih if in_loop else _empty(x)
    if w_ih is None:  # x was gi itself
        dx, dw_ih, db_ih = (dgi if need_dx else _empty(x)), _empty(x), _empty(x)
    elif not input_first:  # through the input norm, in place: dg becomes d(projection) (used above first)
        dgain_ih, db_ih = row_norm.normalize_backward_(dg, in_xhat.view(T * B, 3 * H), in_rstd, ln_gain_ih)
        db_ih = db_ih if has_bias_ih else _empty(x)
        dx, dw_ih = input_side()
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgain, dgain_ih


_recurrence_backward = torch.library.custom_op("fastgru::recurrence_backward", _recurrence_backward_impl,
                                               mutates_args=())


@_recurrence_backward.register_fake
def _recurrence_backward_fake(
    dbuf, x, w_ih, w_hh, buf, gates, ln_gain, ln_gain_ih, in_xhat, in_rstd, lengths, rec_mask, zone_mask, reset_after,
    reverse, has_bias_ih, has_bias_hh, need_dx, backend, spec,
):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dx = x.new_empty(T, B, I) if need_dx else _empty(x)
    dw_ih = _empty(x) if w_ih is None else w_ih.new_empty(3 * H, I)
    db_ih = x.new_empty(3 * H) if has_bias_ih and w_ih is not None else _empty(x)
    db_hh = x.new_empty(3 * H) if has_bias_hh else _empty(x)
    dgain = x.new_empty(3 * H) if ln_gain is not None else _empty(x)
    dgain_ih = x.new_empty(3 * H) if ln_gain_ih is not None and w_ih is not None else _empty(x)
    return dx, x.new_empty(B, H), dw_ih, w_hh.new_empty(3 * H, H), db_ih, db_hh, dgain, dgain_ih


def _setup_context(ctx, inputs, output):
    (x, h0, w_ih, w_hh, b_ih, b_hh, ln_gain, ln_gain_ih, lengths, rec_mask, zone_mask, reset_after, reverse, save,
     backend, spec) = inputs
    buf, gates, xhat, rstd = output
    ctx.unsaved = not save
    # internal outputs: never differentiated, and no zero gradient of their size is built for them
    ctx.mark_non_differentiable(gates, xhat, rstd)
    ctx.set_materialize_grads(False)
    if save:
        # h0, b_ih and b_hh are kept (references, no copies) only for a double backward's recomputation
        ctx.save_for_backward(x, w_ih, w_hh, buf, gates, ln_gain, ln_gain_ih, xhat, rstd, lengths, rec_mask,
                              zone_mask, h0, b_ih, b_hh)
        ctx.flags = (reset_after, reverse, b_ih is not None, b_hh is not None, backend, spec)


def _differentiable_recurrence(x, h0, w_ih, w_hh, b_ih, b_hh, ln_gain, ln_gain_ih, lengths, rec_mask, zone_mask,
                               reset_after: bool, reverse: bool, spec: str) -> Tensor:
    """The op's state buffer recomputed with autograd-tracked torch ops (the torch_loop backend's math):
    what a double backward differentiates."""
    from fastgru.backends import torch_loop

    cell = _spec_from_key(spec)
    if w_ih is None:
        gi = x
    else:
        gi = _project(x, w_ih, None if ln_gain_ih is not None else b_ih)
        if ln_gain_ih is not None:  # row_norm's input norm, out of place
            gi = torch_loop._ln(gi, ln_gain_ih)[0]
            gi = gi if b_ih is None else gi + b_ih
    buf, _ = torch_loop.recurrence_forward(gi, h0, w_hh, b_hh, lengths, reset_after, reverse, False,
                                           rec_mask=rec_mask, zone_mask=zone_mask, spec=cell, ln_gain=ln_gain)
    return buf


def _differentiable_backward(ctx, dbuf: Tensor) -> tuple:
    """The backward for create_graph=True: the gradient through a recomputation in torch ops, so that it
    can itself be differentiated (double backward, gradient penalties). The hand-written BPTT's gradient
    is the same up to rounding; it is used whenever no graph of the gradient is requested."""
    (x, w_ih, w_hh, _buf, _gates, ln_gain, ln_gain_ih, _xhat, _rstd, lengths, rec_mask, zone_mask, h0, b_ih,
     b_hh) = ctx.saved_tensors
    reset_after, reverse, _, _, _, spec = ctx.flags
    inputs = (x, h0, w_ih, w_hh, b_ih, b_hh, ln_gain, ln_gain_ih)
    wanted = [i for i, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[i]]
    grads: list[Tensor | None] = [None] * 16
    if not wanted:
        return tuple(grads)
    buf = _differentiable_recurrence(x, h0, w_ih, w_hh, b_ih, b_hh, ln_gain, ln_gain_ih, lengths, rec_mask,
                                     zone_mask, reset_after, reverse, spec)
    found = torch.autograd.grad(buf, [inputs[i] for i in wanted], dbuf, create_graph=True, allow_unused=True)
    for i, g in zip(wanted, found):
        grads[i] = g if g is not None else torch.zeros_like(inputs[i])
    return tuple(grads)


def _backward(ctx, dbuf, dgates, dxhat, drstd):
    if ctx.unsaved:
        raise RuntimeError("fastgru: backward through a recurrence run with save=False (an inference call)")
    x, w_ih, w_hh, buf, gates, ln_gain, ln_gain_ih, xhat, rstd, lengths, rec_mask, zone_mask, *_ = ctx.saved_tensors
    reset_after, reverse, has_b_ih, has_b_hh, backend, spec = ctx.flags
    if dbuf is None:
        dbuf = torch.zeros_like(buf)
    if torch.is_grad_enabled():  # backward(create_graph=True): a gradient that is itself differentiable
        return _differentiable_backward(ctx, dbuf)
    run_backward = _recurrence_backward_impl if getattr(ctx, "eager", False) else _recurrence_backward
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgain, dgain_ih = run_backward(
        dbuf.contiguous(), x, w_ih, w_hh, buf, gates, ln_gain, ln_gain_ih, xhat, rstd, lengths, rec_mask, zone_mask,
        reset_after, reverse, has_b_ih, has_b_hh, ctx.needs_input_grad[0], backend, spec,
    )
    need = ctx.needs_input_grad
    return (
        dx if need[0] else None,
        dh0,
        dw_ih if w_ih is not None else None,
        dw_hh,
        db_ih if has_b_ih and w_ih is not None else None,
        db_hh if has_b_hh else None,
        dgain if ln_gain is not None else None,
        dgain_ih if ln_gain_ih is not None and w_ih is not None else None,
        None, None, None, None, None, None, None, None,
    )


torch.library.register_autograd("fastgru::recurrence", _backward, setup_context=_setup_context)


class _EagerRecurrence(torch.autograd.Function):
    """fastgru::recurrence's forward and backward bodies for plain eager calls, without the custom op.

    The custom op is what torch.compile, torch.export and the ONNX exporters see; in eager mode its
    dispatch (argument-schema handling for 16 arguments, then the backward op's own dispatch) cost more
    than the arithmetic of a small call, so eager calls run the same bodies through an autograd Function.
    """

    @staticmethod
    def forward(ctx, *inputs):
        output = _recurrence_impl(*inputs)
        _setup_context(ctx, inputs, output)
        ctx.eager = True
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx, *grads)


def _plain_eager(*tensors: Tensor | None) -> bool:
    """No compiler, tracer, dispatch mode or functorch transform is watching and the inputs are plain
    tensors (parameters included): the custom op can be bypassed."""
    if (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._len_torch_dispatch_stack()
            or torch._C._are_functorch_transforms_active()):
        return False
    return all(t is None or type(t) in (Tensor, torch.nn.Parameter) for t in tensors)


def _as_bool(mask: Tensor) -> Tensor:
    """A 0/1 keep-mask as the bool tensor the kernels read (float masks from callers are accepted)."""
    return (mask if mask.dtype == torch.bool else mask != 0).contiguous()


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _time_mask(lengths: Tensor, T: int, like: Tensor) -> Tensor:
    """(T, B, 1) float mask: 1 where step t < lengths[b]."""
    steps = torch.arange(T, device=lengths.device).unsqueeze(1)
    return (steps < lengths.unsqueeze(0)).unsqueeze(2).to(device=like.device, dtype=like.dtype)


def gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    *,
    reset_after: bool = True,
    reverse: bool = False,
    lengths: Tensor | None = None,
    backend: str = "auto",
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    layer_norm: tuple[Tensor, Tensor] | None = None,
    _h_n_view: bool = False,
) -> tuple[Tensor, Tensor]:
    """One GRU layer, one direction: x (T, B, I), h0 (B, H) -> (output (T, B, H), h_n (B, H)).

    No argument checks (fastgru.nn.GRU and `gru` do them); lengths, if given, must be int64 (B,).
    rec_mask (B, H): recurrent-dropout mask (the cell sees h_{t-1} * rec_mask); zone_mask (T, B, H):
    zoneout keep-mask; spec: activations and eval-mode zoneout (see fastgru.backends.CellSpec).
    layer_norm: (gain_ih, gain_hh), each (3H,): layer-normalise the input and the recurrent
    pre-activations (Ba et al. 2016); b_ih / b_hh are the norms' shifts. The recurrent norm runs over
    all 3H values (reset_after=True, as haste) or over the r,z block and the n block (reset_after=False).
    h_n is a tensor of its own; `gru`, which stacks the layers' h_n into a new tensor anyway, takes a view
    of the state buffer instead (_h_n_view), one copy and one autograd node fewer per layer-direction.
    """
    T = x.shape[0]
    if lengths is not None:
        lengths = lengths.to(device=x.device, dtype=torch.int64)
    save = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh, *(layer_norm or ()))
    gain_ih, ln_gain = layer_norm if layer_norm is not None else (None, None)
    args = (x.contiguous(), h0.contiguous(), w_ih, w_hh, b_ih, b_hh, ln_gain, gain_ih, lengths,
            None if rec_mask is None else rec_mask.contiguous(), None if zone_mask is None else _as_bool(zone_mask),
            reset_after, reverse, save, backend, _spec_key(spec))
    run = _EagerRecurrence.apply if _plain_eager(*args[:11]) else _recurrence
    buf, *_ = run(*args)
    y = buf[:T] if reverse else buf[1:]
    h_n = buf[0] if reverse else buf[T]
    if lengths is not None:
        y = y * _time_mask(lengths, T, y)
    return y, h_n if _h_n_view else h_n.clone()


@dataclass
class LayerMasks:
    """Random masks of one layer-direction for one call (drawn once per call, reused every step).

    input: (B, I) input-dropout mask, one per sequence; recurrent: (B, H) recurrent-dropout mask;
    zoneout: (T, B, H) bool keep-mask (True = unit keeps its previous value). Dropout masks are scaled by
    1 / (1 - p) like torch/Keras dropout.
    """

    input: Tensor | None = None
    recurrent: Tensor | None = None
    zoneout: Tensor | None = None


def _dropout_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor | None:
    if p <= 0:
        return None
    # drawn in place: no tensor of probabilities is built first
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p).div_(1 - p)


def _keep_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Bool zoneout keep-mask, True with probability p: 1 byte per unit to draw, save and read. On a CPU
    the extension draws it in parallel (seeded from torch's generator, so manual_seed reproduces it)."""
    ext = cpu_backend.load() if like.device.type == "cpu" else None
    if ext is None:
        return torch.rand(shape, device=like.device) < p
    seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    return ext.bernoulli_mask(list(shape), p, seed)


def draw_masks(
    input: Tensor,
    input_sizes: Sequence[int],
    hidden_size: int,
    bidirectional: bool,
    *,
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
) -> list[LayerMasks]:
    """Masks for every layer-direction of a call on time-major `input` (T, B, I), in a fixed order
    (layer by layer, forward then reverse; input, recurrent, zoneout), from torch's global RNG."""
    T, B = input.shape[0], input.shape[1]
    masks = []
    for size in input_sizes:
        for _ in range(2 if bidirectional else 1):
            zone = _keep_mask((T, B, hidden_size), zoneout, input) if zoneout > 0 else None
            masks.append(LayerMasks(
                input=_dropout_mask((B, size), input_dropout, input),
                recurrent=_dropout_mask((B, hidden_size), recurrent_dropout, input),
                zoneout=zone,
            ))
    return masks


def _weights_match(weights: Sequence[Weights], input: Tensor) -> bool:
    """Every weight shares the input's dtype and device (the cheap test before check_weights words an error)."""
    dtype, device = input.dtype, input.device
    return all(w is None or (w.dtype == dtype and w.device == device) for group in weights for w in group)


def autocast_bf16(x: Tensor) -> bool:
    """Whether a float32 CPU call runs under torch.autocast("cpu", dtype=torch.bfloat16): the CPU kernel
    then does its products in bf16 and keeps the state and the sums in float32."""
    return (x.dtype == torch.float32 and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _infer_stack(x: Tensor, hx: Tensor | None, weights: Sequence[Weights], num_layers: int, bidirectional: bool,
                 reset_after: bool) -> tuple[Tensor, Tensor] | None:
    """Inference of the whole stack in one call of the CPU kernel (no autograd, plain cell, no lengths), or
    None where it does not apply (not a float CPU tensor, no kernel, torch.compile tracing: the custom op
    path is the traceable one). At T=1 a call is mostly per-layer Python work, which this skips."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or torch.compiler.is_compiling():
        return None
    ext = cpu_backend.load()
    if ext is None:
        return None
    params = [w for group in weights for w in group]
    output, h_n = ext.infer(x, hx, params, num_layers, bidirectional, reset_after, autocast_bf16(x))
    return output, h_n


def weight_names(num_layers: int, bidirectional: bool, bias: bool = True) -> list[str]:
    """torch.nn.GRU's parameter names per layer-direction, comma-joined (w_ih, w_hh, b_ih, b_hh)."""
    names = []
    for layer in range(num_layers):
        for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
            parts = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
            if bias:
                parts += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
            names.append(",".join(parts))
    return names


def gru(
    input: Tensor,
    hx: Tensor | None,
    weights: Sequence[Weights],
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    reset_after: bool = True,
    lengths: Tensor | None = None,
    enforce_sorted: bool = False,
    check_finite_values: bool = False,
    backend: str = "auto",
    cell: CellSpec = PLAIN,
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    masks: Sequence[LayerMasks] | None = None,
    layer_norms: Sequence[tuple[Tensor, Tensor]] | None = None,
    mask: Tensor | None = None,
    mask_output: str = "zero",
) -> tuple[Tensor, Tensor]:
    """A stacked, optionally bidirectional GRU with torch.nn.GRU's semantics and hand-written BPTT.

    input: (T, B, I), or (B, T, I) with batch_first. hx: (num_layers * dirs, B, H) or None.
    weights: (w_ih, w_hh, b_ih, b_hh) per layer and direction (forward, then reverse); biases may be
    None. lengths: optional (B,) integers for variable-length batches (need not be sorted).
    dropout: torch.nn.GRU's dropout between layers. Inside the recurrence (training only, masks drawn
    once per call, see `draw_masks`, or given as `masks`): input_dropout and recurrent_dropout
    (one mask per sequence, Keras' `dropout` / `recurrent_dropout`), zoneout (Krueger et al. 2016; in
    eval mode each unit keeps zoneout of its previous value, the expectation). cell: activations.
    layer_norms: (gain_ih, gain_hh) per layer-direction for a LayerNormGRU (see gru_layer).
    mask: optional (B, T) bool, True = a real step, Keras' semantics (masked steps carry the state;
    see fastgru.core.masking); mask_output: "zero" or "carry", the output at masked steps.
    Returns (output, h_n) like torch.nn.GRU. Raises fastgru.GRUInputError on bad arguments.
    """
    dirs = 2 if bidirectional else 1
    if len(weights) != num_layers * dirs:
        raise ValueError(f"weights: expected {num_layers * dirs} tuples (layers x directions), got {len(weights)}")
    if dropout or input_dropout or recurrent_dropout or zoneout:  # NaN is truthy: checked too; 0s cost nothing
        check_regularization(dropout, input_dropout, recurrent_dropout, zoneout)
    input_size = weights[0][0].shape[1]
    hidden_size = weights[0][1].shape[1]
    check_input(input, input_size, batch_first)
    has_bias = weights[0][2] is not None
    if not _weights_match(weights, input):  # names are built only to word the error
        check_weights(weights, input, weight_names(num_layers, bidirectional, has_bias))
    x = input.transpose(0, 1) if batch_first else input
    T, B = x.shape[0], x.shape[1]
    if hx is not None:
        check_hidden(hx, (num_layers * dirs, B, hidden_size), input)
    if mask is not None:
        if lengths is not None:
            raise GRUInputError("give lengths or mask, not both (lengths = a mask of leading True steps)")
        if mask_output not in masking.MASK_OUTPUTS:
            raise GRUInputError(f"mask_output must be one of {masking.MASK_OUTPUTS}, got {mask_output!r}")
        check_mask(mask, B, T, input)
        if not (torch.compiler.is_compiling() or torch.jit.is_tracing()) and bool(mask.all()):
            mask = None  # nothing masked: the unmasked call, bit for bit (traced graphs keep the general path)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T, enforce_sorted)
    if check_finite_values:
        check_finite(input, "input")
        if hx is not None:
            check_finite(hx, "hx")

    if training:
        if masks is None and (input_dropout > 0 or recurrent_dropout > 0 or zoneout > 0):
            sizes = [input_size] + [hidden_size * dirs] * (num_layers - 1)
            masks = draw_masks(x, sizes, hidden_size, bidirectional, input_dropout=input_dropout,
                               recurrent_dropout=recurrent_dropout, zoneout=zoneout)
    else:
        masks = None
        if zoneout > 0:
            cell = dataclasses.replace(cell, zoneout=zoneout)
    if masks is not None and len(masks) != num_layers * dirs:
        raise ValueError(f"masks: expected {num_layers * dirs} LayerMasks (layers x directions), got {len(masks)}")
    if mask is not None:  # real steps to the front, the lengths path, then every output back at its step
        hx = x.new_zeros(num_layers * dirs, B, hidden_size) if hx is None else hx
        plan = masking.plan(mask.t())
        output, h_n = gru(
            masking.to_front(x, plan), hx, weights, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout, training=training, reset_after=reset_after, lengths=plan.lengths, backend=backend,
            cell=cell, masks=masks, layer_norms=layer_norms,
        )
        output = masking.to_time_steps(output, plan, hidden_size, bidirectional, mask_output)
        output = output.transpose(0, 1) if batch_first else output
        h_n = masking.keep_initial_state(h_n, hx, plan)
        if check_finite_values:
            check_finite(output, "output (the input was finite: the weights or the recurrence overflowed)")
        return output, h_n
    if (masks is None and lengths is None and layer_norms is None and cell.plain and not (training and dropout > 0)
            and backend in ("auto", "cpu") and not _needs_grad(x, hx, *(w for group in weights for w in group))):
        stacked = _infer_stack(x, hx, weights, num_layers, bidirectional, reset_after)
        if stacked is not None:
            output, h_n = stacked
            output = output.transpose(0, 1) if batch_first else output
            if check_finite_values:
                check_finite(output, "output (the input was finite: the weights or the recurrence overflowed)")
            return output, h_n

    if hx is None:  # (the one-call inference above makes its own zeros)
        hx = x.new_zeros(num_layers * dirs, B, hidden_size)
    finals = []
    layer_in = x
    for layer in range(num_layers):
        if layer > 0 and dropout > 0 and training:
            layer_in = F.dropout(layer_in, dropout, training=True)
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            mk = masks[k] if masks is not None else LayerMasks()
            x_k = layer_in if mk.input is None else layer_in * mk.input
            y, h_n = gru_layer(
                x_k, hx[k], *weights[k], reset_after=reset_after, reverse=d == 1,
                lengths=lengths, backend=backend, rec_mask=mk.recurrent, zone_mask=mk.zoneout, spec=cell,
                layer_norm=None if layer_norms is None else layer_norms[k], _h_n_view=True,
            )
            outs.append(y)
            finals.append(h_n)
        layer_in = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
    output = layer_in.transpose(0, 1) if batch_first else layer_in
    h_n = torch.stack(finals)
    if check_finite_values:
        check_finite(output, "output (the input was finite: the weights or the recurrence overflowed)")
    return output, h_n
