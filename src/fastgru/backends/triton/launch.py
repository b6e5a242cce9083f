"""Host side of the Triton backend: validate, allocate, pick a plan, launch the kernels.

`forward` / `backward` implement the backend contract (see fastgru.backends), cell options included
(rec_mask, zone_mask, spec, and the recurrent layer norm ln_gain up to heuristics.LN_MAX_H units), and take
an optional `plan` (tests force every mode and tile shape with it; users get `heuristics.make_plan`'s
choice; with ln_gain the plan must have one program per row block, n_h == 1).
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import Tensor

from fastgru import config
from fastgru.backends import PLAIN, CellSpec, saved_width
from fastgru.backends.triton import kernels as K
from fastgru.backends.triton.heuristics import Plan, make_plan

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Saved gates of half inputs: the input dtype (default, cuDNN-like memory) or float32
# (FASTGRU_TRITON_GATES=fp32: about half the gradient error, about 1.8x the saved bytes).
GATES_DTYPE = torch.float32 if config.triton_gates_fp32() else None
POISON = config.triton_poison()  # fill outputs/scratch with NaN: unwritten shows


def _new(*shape: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """torch.empty, or NaN-filled when POISON is set (tests, GPU validation runs)."""
    if POISON:
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    return torch.empty(shape, device=device, dtype=dtype)


# ------------------------------------------------------------------------------------ environment


def interpreting() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return K.INTERPRETED


def device_ok(device: torch.device) -> bool:
    """Whether the kernels can be launched on tensors of `device`: CUDA, or CPU under the interpreter."""
    if device.type == "cuda":
        return torch.cuda.is_available() and not interpreting()
    return device.type == "cpu" and interpreting()


def allow_tf32() -> bool:
    """Whether fp32 recurrent products may use TF32: the switch cuDNN's RNNs follow.

    torch >= 2.9: torch.backends.cudnn.rnn.fp32_precision, then torch.backends.cudnn.fp32_precision
    ("tf32" / "ieee"; "none" inherits); older torch: torch.backends.cudnn.allow_tf32 (on by default).
    Only read, never set: torch refuses reads of the legacy flag once the new API was used.
    """
    cudnn = torch.backends.cudnn
    for scope in (getattr(cudnn, "rnn", None), cudnn):
        precision = getattr(scope, "fp32_precision", None) if scope is not None else None
        if precision in ("tf32", "ieee"):
            return precision == "tf32"
    try:
        return bool(cudnn.allow_tf32)
    except RuntimeError:  # legacy and new TF32 APIs mixed by the user: torch's default
        return True


@functools.cache
def _device_limits(index: int) -> tuple[int, int, int | None]:
    """(SM count, compute capability as 80 / 90 / ..., shared memory one block may opt in to, if torch says)."""
    props = torch.cuda.get_device_properties(index)
    smem = getattr(props, "shared_memory_per_block_optin", None)
    return props.multi_processor_count, 10 * props.major + props.minor, smem


def plan_for(B: int, H: int, w_dtype: torch.dtype, device: torch.device, layer_norm: bool = False,
             cell_options: bool = False, **overrides) -> Plan:
    """The launch plan `forward`/`backward` use for this problem (overrides: any Plan field; cell_options:
    recurrent dropout, zoneout or non-default activations are on, see `heuristics.make_plan`)."""
    n_sm = capability = smem = None
    if device.type == "cuda" and not interpreting():
        n_sm, capability, smem = _device_limits(device.index if device.index is not None
                                                else torch.cuda.current_device())
    elem = torch.empty((), dtype=w_dtype).element_size()
    tf32 = w_dtype == torch.float32 and allow_tf32()
    return make_plan(B, H, elem, n_sm, interpreting(), tf32=tf32, layer_norm=layer_norm, capability=capability,
                     smem_per_block=smem, cell_options=cell_options, **overrides)


@contextlib.contextmanager
def _on_device(device: torch.device):
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


# ------------------------------------------------------------------------------------- validation


def _check_device(device: torch.device) -> None:
    if not device_ok(device):
        if device.type == "cpu":
            raise RuntimeError(
                "the Triton backend runs CPU tensors only under Triton's interpreter "
                "(set TRITON_INTERPRET=1 before fastgru.backends.triton is imported); use the cpu backend"
            )
        raise RuntimeError(f"the Triton backend needs a CUDA device, got tensors on {device}")


def _check_float(name: str, t: Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")


def _check_lengths(lengths: Tensor | None, B: int, T: int, device: torch.device) -> Tensor | None:
    if lengths is None:
        return None
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got {lengths.dtype}")
    return lengths.to(device=device, dtype=torch.int64).contiguous()


def _check_forward(gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[int, int, int]:
    if gi.dim() != 3:
        raise ValueError(f"gi must be (T, B, 3H), got shape {tuple(gi.shape)}")
    T, B, G = gi.shape
    if w_hh.dim() != 2 or w_hh.shape[0] != 3 * w_hh.shape[1]:
        raise ValueError(f"w_hh must be (3H, H), got shape {tuple(w_hh.shape)}")
    H = w_hh.shape[1]
    if G != 3 * H:
        raise ValueError(f"gi's last dimension must be 3H = {3 * H} (w_hh is {tuple(w_hh.shape)}), got {G}")
    if tuple(h0.shape) != (B, H):
        raise ValueError(f"h0 must be (B, H) = ({B}, {H}), got {tuple(h0.shape)}")
    if b_hh is not None and tuple(b_hh.shape) != (3 * H,):
        raise ValueError(f"b_hh must be (3H,) = ({3 * H},), got {tuple(b_hh.shape)}")
    for name, t in (("gi", gi), ("h0", h0), ("w_hh", w_hh)) + ((("b_hh", b_hh),) if b_hh is not None else ()):
        _check_float(name, t)
        if t.device != gi.device:
            raise ValueError(f"{name} is on {t.device} but gi is on {gi.device}")
    return T, B, H


def _check_cell_options(rec_mask: Tensor | None, zone_mask: Tensor | None, spec: CellSpec, T: int, B: int, H: int,
                        device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """Validated (rec_mask, zone_mask): contiguous; the bool keep-mask viewed as uint8 for the kernels."""
    if not isinstance(spec, CellSpec):
        raise TypeError(f"spec must be a fastgru.backends.CellSpec, got {type(spec).__name__}")
    if rec_mask is not None:
        if tuple(rec_mask.shape) != (B, H):
            raise ValueError(f"rec_mask must be (B, H) = ({B}, {H}), got {tuple(rec_mask.shape)}")
        if not rec_mask.dtype.is_floating_point:
            raise TypeError(f"rec_mask must be a floating-point tensor, got {rec_mask.dtype}")
    if zone_mask is not None:
        if tuple(zone_mask.shape) != (T, B, H):
            raise ValueError(f"zone_mask must be (T, B, H) = ({T}, {B}, {H}), got {tuple(zone_mask.shape)}")
        if zone_mask.dtype != torch.bool:
            raise TypeError(f"zone_mask must be a bool tensor (True = keep the previous value), got {zone_mask.dtype}")
    for name, t in (("rec_mask", rec_mask), ("zone_mask", zone_mask)):
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device} but the recurrence runs on {device}")
    return (None if rec_mask is None else rec_mask.contiguous(),
            None if zone_mask is None else zone_mask.contiguous().view(torch.uint8))


def _check_ln(ln_gain: Tensor | None, H: int, plan: Plan, device: torch.device) -> Tensor | None:
    """Validated, contiguous layer-norm gain; the plan must give one program all H units of its rows."""
    if ln_gain is None:
        return None
    if tuple(ln_gain.shape) != (3 * H,):
        raise ValueError(f"ln_gain must be (3H,) = ({3 * H},), got {tuple(ln_gain.shape)}")
    _check_float("ln_gain", ln_gain)
    if ln_gain.device != device:
        raise ValueError(f"ln_gain is on {ln_gain.device} but the recurrence runs on {device}")
    if plan.n_h != 1:
        raise ValueError(
            f"the recurrent layer norm needs a plan whose programs cover all H = {H} units of their rows "
            f"(block_h >= H, n_h == 1), got block_h={plan.block_h}, n_h={plan.n_h}"
        )
    return ln_gain.contiguous()


def _cell_args(rec_mask: Tensor | None, zone_mask: Tensor | None, spec: CellSpec, ln_gain: Tensor | None,
               dummy: Tensor) -> tuple[tuple, dict]:
    """The kernels' cell-option arguments (rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b) and constexprs (RMASK,
    ZONE: 0 none / 1 keep-mask / 2 eval probability, GACT, CACT, LN); see kernels.py."""
    zone = 1 if zone_mask is not None else (2 if spec.zoneout > 0 else 0)
    args = (dummy if rec_mask is None else rec_mask, dummy if zone_mask is None else zone_mask,
            dummy if ln_gain is None else ln_gain,
            float(spec.zoneout), float(spec.hard_sigmoid_alpha), float(spec.hard_sigmoid_beta))
    consts = dict(RMASK=rec_mask is not None, ZONE=zone, GACT=spec.gate_activation_id,
                  CACT=spec.candidate_activation_id, LN=ln_gain is not None)
    return args, consts


def _has_cell_options(rec_mask: Tensor | None, zone_mask: Tensor | None, spec: CellSpec) -> bool:
    """Whether any cell option is on (the plan then budgets registers for them)."""
    return rec_mask is not None or zone_mask is not None or spec != PLAIN


def _slots(i: int, T: int, reverse: bool) -> tuple[int, int, int]:
    t = T - 1 - i if reverse else i
    return t, (t + 1 if reverse else t), (t if reverse else t + 1)


# ---------------------------------------------------------------------------------------- forward


def forward(
    gi: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    save: bool,
    plan: Plan | None = None,
    *,
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    ln_gain: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Contract `recurrence_forward`. buf and gates have gi's dtype (the recurrence itself runs in fp32)."""
    T, B, H = _check_forward(gi, h0, w_hh, b_hh)
    dev = gi.device
    _check_device(dev)
    lengths = _check_lengths(lengths, B, T, dev)
    rec_mask, zone_mask = _check_cell_options(rec_mask, zone_mask, spec, T, B, H, dev)
    if gi.stride(2) != 1:
        gi = gi.contiguous()
    w = w_hh.contiguous()
    b = b_hh.contiguous() if b_hh is not None else None
    f32 = torch.float32
    dt = gi.dtype
    buf = _new(T + 1, B, H, device=dev, dtype=dt)
    buf[T if reverse else 0] = h0
    ln = ln_gain is not None
    gates = torch.empty(0, device=dev, dtype=dt)
    if save:
        gates = _new(T, B, saved_width(reset_after, ln, H), device=dev, dtype=GATES_DTYPE or dt)
    if T == 0:
        return buf, gates
    cell_options = _has_cell_options(rec_mask, zone_mask, spec)
    plan = plan or plan_for(B, H, w.dtype, dev, layer_norm=ln, cell_options=cell_options)
    ln_gain = _check_ln(ln_gain, H, plan, dev)
    ring = dt != f32  # half outputs: the fp32 state travels through a 2-slot ring beside buf
    st = _new(2, B, H, device=dev, dtype=f32) if ring else buf
    if ring:
        st[0] = h0
    dummy = st
    cell, cell_consts = _cell_args(rec_mask, zone_mask, spec, ln_gain, dummy)
    common = dict(
        REVERSE=reverse, HAS_BIAS=b is not None, HAS_LEN=lengths is not None, SAVE=save, RING=ring,
        BLOCK_K=plan.block_k, BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, H_PAD=plan.h_pad,
        USE_DOT=plan.use_dot, PREC="tf32" if allow_tf32() else "ieee", EMU=interpreting(),
        num_warps=plan.num_warps, num_stages=plan.num_stages, **cell_consts,
    )
    ptrs = (gi, gi.stride(0), gi.stride(1), buf, st, gates if save else dummy, w,
            b if b is not None else dummy, lengths if lengths is not None else dummy, *cell)
    grid = plan.grid
    with _on_device(dev):
        if plan.mode == "persistent":
            rh = _new(B, H, device=dev, dtype=f32) if not reset_after else dummy
            cnt = torch.zeros(plan.n_b, device=dev, dtype=torch.int32)
            K.fwd_persistent_kernel[grid](
                *ptrs, rh, cnt, T, B, H, RESET_AFTER=reset_after, SYNC=plan.sync,
                MM=0 if plan.resident else 1, **common,
            )
        elif plan.mode == "step":
            _forward_steps(ptrs, grid, common, T, B, H, reset_after, 0 if plan.resident else 1, dev, dummy)
        else:
            _forward_gemm(ptrs, grid, common, T, B, H, reset_after, reverse, buf, w, rec_mask, dev, dummy)
    return buf, gates


def _forward_steps(ptrs, grid, common, T, B, H, reset_after, mm, dev, dummy) -> None:
    """One launch per step (two for reset_after=False); W tiles re-read by every launch."""
    f32 = torch.float32
    rh = _new(B, H, device=dev, dtype=f32) if not reset_after else dummy
    rz = _new(B, 2 * H, device=dev, dtype=f32) if not reset_after else dummy
    for i in range(T):
        for phase in ((0,) if reset_after else (1, 2)):
            K.fwd_step_kernel[grid](i, *ptrs, rh, rz, dummy, T, B, H, PHASE=phase, MM=mm, **common)


def _forward_gemm(ptrs, grid, common, T, B, H, reset_after, reverse, buf, w, rec_mask, dev, dummy) -> None:
    """Large batch: the recurrent product of each step by cuBLAS, the gate arithmetic by a Triton kernel.

    cuBLAS follows torch's own matmul precision setting (torch.backends.cuda.matmul), which is why the
    heuristic sends fp32 with TF32 allowed to the per-step Triton kernels instead (their tl.dot follows
    cuDNN's switch without touching any global flag).

    The GEMM reads the previous state from buf (already in the input dtype; cast if the weights have
    another dtype), times rec_mask with recurrent dropout (what the cell multiplies by W_hh), and
    returns its product in the weight dtype, as cuDNN's half GEMMs do.
    """
    f32 = torch.float32
    wt = w.t()
    gh = _new(B, (3 if reset_after else 2) * H, device=dev, dtype=w.dtype)
    hm = _new(B, H, device=dev, dtype=w.dtype) if rec_mask is not None else None
    rh = rz = gh_n = dummy
    if not reset_after:
        gh_n = _new(B, H, device=dev, dtype=w.dtype)
        rh = _new(B, H, device=dev, dtype=w.dtype)
        rz = _new(B, 2 * H, device=dev, dtype=f32)
    for i in range(T):
        _, s_in, _ = _slots(i, T, reverse)
        if hm is not None:
            src = torch.mul(buf[s_in], rec_mask, out=hm)
        else:
            src = buf[s_in] if buf.dtype == w.dtype else buf[s_in].to(w.dtype)
        if reset_after:
            torch.mm(src, wt, out=gh)
            K.fwd_step_kernel[grid](i, *ptrs, rh, rz, gh, T, B, H, PHASE=0, MM=2, **common)
        else:
            torch.mm(src, wt[:, : 2 * H], out=gh)
            K.fwd_step_kernel[grid](i, *ptrs, rh, rz, gh, T, B, H, PHASE=1, MM=2, **common)
            torch.mm(rh, wt[:, 2 * H :], out=gh_n)
            K.fwd_step_kernel[grid](i, *ptrs, rh, rz, gh_n, T, B, H, PHASE=2, MM=2, **common)


# --------------------------------------------------------------------------------------- backward


def backward(
    dbuf: Tensor,
    buf: Tensor,
    gates: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    plan: Plan | None = None,
    *,
    rec_mask: Tensor | None = None,
    zone_mask: Tensor | None = None,
    spec: CellSpec = PLAIN,
    ln_gain: Tensor | None = None,
) -> tuple[Tensor, ...]:
    """Contract `recurrence_backward`. dgi, dgh_n and dh0 (with ln_gain also dgh_pre) have buf's dtype; dh is
    carried in fp32. The gain's gradient is left to the caller (summed from the saved xhat)."""
    if buf.dim() != 3:
        raise ValueError(f"buf must be (T+1, B, H), got shape {tuple(buf.shape)}")
    T, B, H = buf.shape[0] - 1, buf.shape[1], buf.shape[2]
    if tuple(dbuf.shape) != tuple(buf.shape):
        raise ValueError(f"dbuf must have buf's shape {tuple(buf.shape)}, got {tuple(dbuf.shape)}")
    if tuple(w_hh.shape) != (3 * H, H):
        raise ValueError(f"w_hh must be (3H, H) = ({3 * H}, {H}), got {tuple(w_hh.shape)}")
    ln = ln_gain is not None
    width = saved_width(reset_after, ln, H)
    if T > 0 and tuple(gates.shape) != (T, B, width):
        raise ValueError(
            f"gates must be (T, B, {width}) for reset_after={reset_after}, H={H}"
            f"{' with the layer norm' if ln else ''} (did the forward run with save=True"
            f"{', the same ln_gain' if ln else ''}?), got {tuple(gates.shape)}"
        )
    for name, t in (("dbuf", dbuf), ("buf", buf), ("gates", gates), ("w_hh", w_hh)):
        _check_float(name, t)
        if t.device != buf.device:
            raise ValueError(f"{name} is on {t.device} but buf is on {buf.device}")
    dev = buf.device
    _check_device(dev)
    lengths = _check_lengths(lengths, B, T, dev)
    rec_mask, zone_mask = _check_cell_options(rec_mask, zone_mask, spec, T, B, H, dev)
    dt = buf.dtype
    buf = buf.contiguous()
    gates = gates.contiguous()
    if dbuf.stride(2) != 1:
        dbuf = dbuf.contiguous()
    w = w_hh.contiguous()
    dgi = _new(T, B, 3 * H, device=dev, dtype=dt)
    dgh_n = _new(T, B, H, device=dev, dtype=dt) if reset_after else torch.empty(0, device=dev, dtype=dt)
    dh0 = _new(B, H, device=dev, dtype=dt)
    dpre = _new(T, B, 3 * H, device=dev, dtype=dt) if ln else None
    outs = (dgi, dgh_n, dh0) + ((dpre,) if ln else ())
    if T == 0:
        dh0.copy_(dbuf[0])
        return outs
    cell_options = _has_cell_options(rec_mask, zone_mask, spec)
    plan = plan or plan_for(B, H, w.dtype, dev, layer_norm=ln, cell_options=cell_options)
    ln_gain = _check_ln(ln_gain, H, plan, dev)
    dummy = buf
    cell, cell_consts = _cell_args(rec_mask, zone_mask, spec, ln_gain, dummy)
    common = dict(
        RESET_AFTER=reset_after, REVERSE=reverse, HAS_LEN=lengths is not None,
        BLOCK_K=plan.block_k, BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, H_PAD=plan.h_pad,
        USE_DOT=plan.use_dot, PREC="tf32" if allow_tf32() else "ieee", EMU=interpreting(),
        num_warps=plan.num_warps, num_stages=plan.num_stages, **cell_consts,
    )
    ptrs = (dbuf, dbuf.stride(0), dbuf.stride(1), buf, gates, w, lengths if lengths is not None else dummy,
            *cell[:5], dgi, dgh_n if reset_after else dummy, dh0,  # (the backward needs no hard-sigmoid offset)
            dpre if ln else dummy)
    grid = plan.grid
    with _on_device(dev):
        if plan.mode == "persistent":
            cnt = torch.zeros(plan.n_b, device=dev, dtype=torch.int32)
            K.bwd_persistent_kernel[grid](*ptrs, cnt, T, B, H, SYNC=plan.sync, MM=0 if plan.resident else 1,
                                          **common)
        else:
            mm = 2 if plan.mode == "gemm" else (0 if plan.resident else 1)
            _backward_steps(ptrs, grid, common, T, B, H, reset_after, mm, w, dev, dummy)
    return outs


def _backward_steps(ptrs, grid, common, T, B, H, reset_after, mm, w, dev, dummy) -> None:
    """Per-step backward launches; with mm == 2 ('gemm' mode), dG @ W_hh of each step is a cuBLAS GEMM.

    Launch j (processing step i = T-1-j) first finishes dh of step i+1 (its carry from the previous
    launch plus the contraction over every program's gate gradients), then writes step i's gate
    gradients. A last launch turns the final dh into dh0.
    """
    f32 = torch.float32
    gemm = mm == 2
    carry = _new(2, B, H, device=dev, dtype=f32)
    cur = 0
    rec = _new(B, 3 * H, device=dev, dtype=w.dtype) if gemm else dummy
    prod = _new(B, H, device=dev, dtype=w.dtype) if gemm else dummy
    drh = _new(B, H, device=dev, dtype=w.dtype) if gemm and not reset_after else dummy

    def launch(i_dh: int, i_g: int, phase: int, has_dh: bool, has_g: bool, p: Tensor) -> None:
        nonlocal cur
        K.bwd_step_kernel[grid](i_dh, i_g, *ptrs, carry[cur], carry[1 - cur], p, rec, T, B, H, PHASE=phase,
                                HAS_DH=has_dh, HAS_G=has_g, MM=mm, STORE_REC=gemm and has_g, **common)
        cur = 1 - cur

    for j in range(T):
        i = T - 1 - j
        launch(i + 1, i, 0, j > 0, True, prod)
        if not reset_after:
            if gemm:
                torch.mm(rec[:, 2 * H :], w[2 * H :], out=drh)
            launch(i, i, 1, False, True, drh)
        if gemm:
            if reset_after:
                torch.mm(rec, w, out=prod)
            else:
                torch.mm(rec[:, : 2 * H], w[: 2 * H], out=prod)
    launch(0, 0, 0, True, False, prod)
