"""Triton kernels of the GRU recurrence: shared per-step bodies, persistent and per-step kernels.

Layout of the work: a program owns BLOCK_B batch rows x BLOCK_H hidden units (grid = (n_h, n_b)).
Each step it needs the whole previous state of its rows (all H units) for the recurrent product, and
produces only its own units; the programs of one batch block exchange data through global memory:
- the fp32 state: the contract's buf (T+1, B, H) itself for fp32 inputs (a fresh slot every step), or
  for half inputs a 2-slot fp32 ring (RING; buf then receives rounded copies in the input dtype). A
  2-slot ring is safe: a program overwrites slot s two steps later, after the barrier that all
  readers of slot s passed once done with it;
- reset_after=False: the (B, H) `rh` scratch, r * h_prev (times the recurrent-dropout mask, if any)
  of every unit, which feeds W_hn;
- backward: the gate gradients dgi[t] / dgh_n[t] themselves (dh_prev = dG @ W_hh needs every unit's
  dG); dh itself stays with its program (fp32, in registers / a per-step carry buffer).
In the persistent kernel a grid-wide barrier separates writing and reading; in the per-step kernels
the kernel boundary does.

Every step body is one `@triton.jit` function used by both kernels (`_fwd_ra_step`, `_fwd_rz_step` +
`_fwd_n_step`, `_bwd_ra_gates`, `_bwd_rb_gates1` + `_bwd_rb_gates2` (both variants' gate gradients
start with `_bwd_cell`), `_bwd_dh`). The cell options (recurrent dropout, zoneout, activations) and the
recurrent layer norm live in these same bodies behind constexprs (see "cell options" and "layer norm"
below). The recurrent product comes from
`_product`, in one of three ways (constexpr MM):
  0  W_hh tile held in registers: loaded once per kernel (persistent: once per sequence),
  1  W_hh streamed from global memory (L2) in BLOCK_K chunks every step (W too big to hold),
  2  read from memory: a cuBLAS GEMM computed it before the launch (large-batch "gemm" mode).
Products use tl.dot (USE_DOT; tiles >= 16 on a GPU) or a broadcast multiply + sum (tiny batch).
Activations, state and accumulation are fp32; values stored in a half dtype are rounded to nearest.

Interpreter notes (TRITON_INTERPRET=1, how CI runs these; EMU=True there): tl.dot on bfloat16
operands is wrong in the interpreter (it multiplies the raw uint16 bit patterns) and its fp32 -> bf16
cast truncates (its "rtne" mode drops the carry), so the bf16 dot is emulated exactly: the fp32
operand is rounded to bf16 (round to nearest even, by bit arithmetic), both operands are widened to
fp32 and multiplied in fp32 - the same products a bf16 tensor-core dot with fp32 accumulation forms;
bf16 stores are rounded the same way first. The grid barrier cannot run with more than one
program in the interpreter (programs run one after another); a one-program persistent grid can.
"""

from __future__ import annotations

import triton
import triton.language as tl

from fastgru.backends import LN_EPS as _LN_EPS

LN_EPS = tl.constexpr(_LN_EPS)  # the layer norms' epsilon (fastgru.backends.LN_EPS)

try:  # Triton >= 3.2
    INTERPRETED: bool = bool(triton.knobs.runtime.interpret)
except AttributeError:  # older Triton reads the environment
    import os

    INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# ----------------------------------------------------------------------------------------- helpers


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # tanh(|x|) = (1 - e) / (1 + e), e = exp(-2|x|): no overflow, absolute error ~1e-7 near 0
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _act(x, ACT: tl.constexpr, hs_a, hs_b):
    """Activation ACT of fp32 x; ids as fastgru.backends.ACTIVATIONS (0 sigmoid, 1 hard_sigmoid
    clamp(hs_a x + hs_b, 0, 1), 2 tanh, 3 relu, 4 softsign)."""
    if ACT == 0:
        y = _sigmoid(x)
    elif ACT == 1:
        y = tl.minimum(tl.maximum(hs_a * x + hs_b, 0.0), 1.0)
    elif ACT == 2:
        y = _tanh(x)
    elif ACT == 3:
        y = tl.maximum(x, 0.0)
    else:
        y = x / (1.0 + tl.abs(x))
    return y


@triton.jit
def _act_grad(y, ACT: tl.constexpr, hs_a):
    """d act / dx of activation ACT expressed through its output y (as torch_loop.activation_grad)."""
    if ACT == 0:
        d = y * (1.0 - y)
    elif ACT == 1:
        d = tl.where((y > 0.0) & (y < 1.0), hs_a, 0.0)
    elif ACT == 2:
        d = 1.0 - y * y
    elif ACT == 3:
        d = tl.where(y > 0.0, 1.0, 0.0)
    else:
        a = 1.0 - tl.abs(y)
        d = a * a
    return d


@triton.jit
def _round_bf16(x):
    """fp32 -> nearest bfloat16 value (ties to even), kept in fp32 (interpreter emulation of a cast)."""
    b = x.to(tl.uint32, bitcast=True)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.to(tl.float32, bitcast=True)


@triton.jit
def _store(ptr, val, mask, EMU: tl.constexpr):
    """tl.store, narrowing fp32 to the pointer's dtype with round-to-nearest-even everywhere.

    On a GPU the implicit cast rounds to nearest even; the interpreter truncates, so under EMU a value
    bound for bfloat16 is rounded first (then the truncating cast is exact).
    """
    if EMU:
        if ptr.dtype.element_ty == tl.bfloat16:
            val = _round_bf16(val)
    tl.store(ptr, val, mask=mask)


@triton.jit
def _state_slots(i, T, buf_ptr, st_ptr, RING: tl.constexpr, REVERSE: tl.constexpr):
    """Where the fp32 state of processing step i is read / written: buf's slots (fp32 inputs), or the
    2-slot fp32 ring (half inputs, whose buf holds rounded copies). Returns (base, slot in, slot out)."""
    t, s_in, s_out = _slots(i, T, REVERSE)
    if RING:
        base = st_ptr
        r_in = i % 2
        r_out = (i + 1) % 2
    else:
        base = buf_ptr
        r_in = s_in
        r_out = s_out
    return base, r_in, r_out


@triton.jit
def _slots(i, T, REVERSE: tl.constexpr):
    """Processing index i -> (time t, slot read, slot written) of the contract's buf."""
    if REVERSE:
        t = T - 1 - i
        s_in = t + 1
        s_out = t
    else:
        t = i
        s_in = i
        s_out = i + 1
    return t, s_in, s_out


@triton.jit
def _first_slot(T, REVERSE: tl.constexpr):
    """Slot of buf the first processed step reads (h0's slot): 0, or T in reverse."""
    if REVERSE:
        s = T
    else:
        s = T - T  # a runtime zero of T's type
    return s


@triton.jit
def _tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    u = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    return rows, rows < B, u, u < H


@triton.jit
def _load_src(ptr, stride, rows, rmask, c, cmask):
    """(BLOCK_B, len(c)) fp32 tile ptr[rows, c]; data other programs wrote this launch: bypass L1."""
    p = ptr + rows[:, None].to(tl.int64) * stride + c[None, :]
    return tl.load(p, mask=rmask[:, None] & cmask[None, :], other=0.0, cache_modifier=".cg").to(tl.float32)


@triton.jit
def _masked_src(ptr, stride, rows, rmask, c, cmask, mk_ptr, H, MASKED: tl.constexpr):
    """_load_src, times the recurrent-dropout mask mk[rows, c] ((B, H), read-only) when MASKED."""
    x = _load_src(ptr, stride, rows, rmask, c, cmask)
    if MASKED:
        p = mk_ptr + rows[:, None].to(tl.int64) * H + c[None, :]
        x = x * tl.load(p, mask=rmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    return x


@triton.jit
def _load_wt(w_ptr, gate, H, u, umask, c, cmask, TRANS: tl.constexpr):
    """(len(c), len(u)) tile of gate `gate`'s block of W_hh (3H, H), contraction index c first.

    Forward (TRANS=False): [c, u] = W[gate*H + u, c]  (gh[:, u] = h @ W[u, :]^T).
    Backward (TRANS=True): [c, u] = W[gate*H + c, u]  (dh[:, u] = dG @ W[:, u]).
    """
    if TRANS:
        p = w_ptr + (gate * H + c)[:, None].to(tl.int64) * H + u[None, :]
    else:
        p = w_ptr + (gate * H + u)[None, :].to(tl.int64) * H + c[:, None]
    return tl.load(p, mask=cmask[:, None] & umask[None, :], other=0.0)


@triton.jit
def _mm(x, wt, USE_DOT: tl.constexpr, PREC: tl.constexpr, EMU: tl.constexpr):
    """x (M, K) fp32 @ wt (K, N) in the weight dtype -> (M, N) fp32.

    fp32 weights: tl.dot in PREC ("tf32" or "ieee"). Half weights: x rounded to the weight dtype, fp32
    accumulation (like cuDNN). Without USE_DOT: fp32 multiply + sum (no tile-size constraints).
    """
    if USE_DOT:
        if wt.dtype == tl.float32:
            acc = tl.dot(x, wt, input_precision=PREC)
        elif wt.dtype == tl.bfloat16:
            if EMU:  # interpreter: exact emulation of the bf16 dot (see the module docstring)
                acc = tl.dot(_round_bf16(x), wt.to(tl.float32), input_precision="ieee")
            else:
                acc = tl.dot(x.to(tl.bfloat16, fp_downcast_rounding="rtne"), wt)
        else:
            acc = tl.dot(x.to(wt.dtype, fp_downcast_rounding="rtne"), wt)
    else:
        acc = tl.sum(x[:, :, None] * wt.to(tl.float32)[None, :, :], axis=1)
    return acc


@triton.jit
def _product(s0, ss0, s1, ss1, s2, ss2, mk_ptr, w_ptr, H, rows, rmask, u, umask, wt0, wt1, wt2,
             NG: tl.constexpr, G0: tl.constexpr, G1: tl.constexpr, G2: tl.constexpr,
             SAME_SRC: tl.constexpr, MASKED: tl.constexpr, TRANS: tl.constexpr, MM: tl.constexpr,
             H_PAD: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
             USE_DOT: tl.constexpr, PREC: tl.constexpr, EMU: tl.constexpr):
    """a_k = src_k[rows, :H] @ (gate G_k's W_hh tile) for k < NG; unused outputs are zero.

    src_k is a row-major matrix at s_k with row stride ss_k; MASKED: src_0 times the (B, H) mask at
    mk_ptr (the forward's h_{t-1} * rec_mask; SAME_SRC then shares it). MM=0: the tiles wt_k are given
    (held in registers); MM=1: W_hh is read in BLOCK_K chunks here.
    """
    a0 = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
    a1 = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
    a2 = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
    if MM == 0:
        c = tl.arange(0, H_PAD)
        cmask = c < H
        x0 = _masked_src(s0, ss0, rows, rmask, c, cmask, mk_ptr, H, MASKED)
        a0 = _mm(x0, wt0, USE_DOT, PREC, EMU)
        if NG > 1:
            if SAME_SRC:
                x1 = x0
            else:
                x1 = _load_src(s1, ss1, rows, rmask, c, cmask)
            a1 = _mm(x1, wt1, USE_DOT, PREC, EMU)
        if NG > 2:
            if SAME_SRC:
                x2 = x0
            else:
                x2 = _load_src(s2, ss2, rows, rmask, c, cmask)
            a2 = _mm(x2, wt2, USE_DOT, PREC, EMU)
    else:
        for k0 in range(0, H, BLOCK_K):
            c = k0 + tl.arange(0, BLOCK_K)
            cmask = c < H
            x0 = _masked_src(s0, ss0, rows, rmask, c, cmask, mk_ptr, H, MASKED)
            a0 += _mm(x0, _load_wt(w_ptr, G0, H, u, umask, c, cmask, TRANS), USE_DOT, PREC, EMU)
            if NG > 1:
                if SAME_SRC:
                    x1 = x0
                else:
                    x1 = _load_src(s1, ss1, rows, rmask, c, cmask)
                a1 += _mm(x1, _load_wt(w_ptr, G1, H, u, umask, c, cmask, TRANS), USE_DOT, PREC, EMU)
            if NG > 2:
                if SAME_SRC:
                    x2 = x0
                else:
                    x2 = _load_src(s2, ss2, rows, rmask, c, cmask)
                a2 += _mm(x2, _load_wt(w_ptr, G2, H, u, umask, c, cmask, TRANS), USE_DOT, PREC, EMU)
    return a0, a1, a2


@triton.jit
def _load_wtiles(w_ptr, H, u, umask, TRANS: tl.constexpr, H_PAD: tl.constexpr):
    c = tl.arange(0, H_PAD)
    cmask = c < H
    return (_load_wt(w_ptr, 0, H, u, umask, c, cmask, TRANS),
            _load_wt(w_ptr, 1, H, u, umask, c, cmask, TRANS),
            _load_wt(w_ptr, 2, H, u, umask, c, cmask, TRANS))


@triton.jit
def _bias(b_ptr, k, H, u, umask, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        b = tl.load(b_ptr + k * H + u, mask=umask, other=0.0).to(tl.float32)[None, :]
    else:
        b = 0.0
    return b


@triton.jit
def _gi(gi_ptr, t, s_gt, s_gb, k, H, rows, u, m2):
    p = gi_ptr + t.to(tl.int64) * s_gt + rows[:, None].to(tl.int64) * s_gb + k * H + u[None, :]
    return tl.load(p, mask=m2, other=0.0).to(tl.float32)


@triton.jit
def _own(ptr, slot, B, H, rows, u, m2):
    """ptr[slot, rows, u] of a (slots, B, H) fp32 tensor (fresh data: bypass L1)."""
    p = ptr + slot.to(tl.int64) * B * H + rows[:, None] * H + u[None, :]
    return tl.load(p, mask=m2, other=0.0, cache_modifier=".cg").to(tl.float32)


@triton.jit
def _put_state(new, buf_ptr, st, s_out, r_out, B, H, rows, u, m2, RING: tl.constexpr, EMU: tl.constexpr):
    """Write the new fp32 state: to buf (the contract's output, in the input dtype) and, with RING, to
    the fp32 ring the next step reads."""
    own = rows[:, None] * H + u[None, :]
    _store(buf_ptr + s_out.to(tl.int64) * B * H + own, new, m2, EMU)
    if RING:
        tl.store(st + r_out.to(tl.int64) * B * H + own, new, mask=m2)


@triton.jit
def _live(len_ptr, rows, rmask, t):
    return (tl.load(len_ptr + rows, mask=rmask, other=0) > t)[:, None]


@triton.jit
def _sync(cnt_ptr, target, SYNC: tl.constexpr):
    """Grid-wide barrier among the programs sharing the counter (release / acquire), else CTA barrier."""
    tl.debug_barrier()  # every thread of this program has issued its stores
    if SYNC:
        tl.atomic_add(cnt_ptr, 1, sem="release", scope="gpu")
        c = tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu")
        while c < target:
            c = tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()


# ---------------------------------------------------------------------------------------- cell options
# The contract's cell options (fastgru.backends), all selected by constexprs so that a plain GRU compiles
# to the same code as without them: RMASK, recurrent dropout (the cell sees hm = h_{t-1} * rec_mask in
# the recurrent products and in the interpolation n + z (hm - n)); ZONE, zoneout (1: a bool keep-mask
# per step, 2: eval mode's probability zone_p; h_t = k h_{t-1} + (1 - k) cell); GACT / CACT, the gate and
# candidate activations (ids of fastgru.backends.ACTIVATIONS; hard_sigmoid's slope hs_a, offset hs_b).


@triton.jit
def _masked(x, rm_ptr, H, rows, u, m2, RMASK: tl.constexpr):
    """x * rec_mask on this tile ((B, H) mask, read-only); x itself without recurrent dropout."""
    if RMASK:
        x = x * tl.load(rm_ptr + rows[:, None] * H + u[None, :], mask=m2, other=0.0).to(tl.float32)
    return x


@triton.jit
def _zone_keep(zm_ptr, zone_p, t, B, H, rows, u, m2, ZONE: tl.constexpr):
    """Zoneout's share k of the previous state at step t: the keep-mask (ZONE=1; True = keep) as 1 / 0,
    or the eval-mode probability zone_p (ZONE=2)."""
    if ZONE == 1:
        p = zm_ptr + t.to(tl.int64) * B * H + rows[:, None] * H + u[None, :]
        k = (tl.load(p, mask=m2, other=0) != 0).to(tl.float32)
    else:
        k = zone_p
    return k


@triton.jit
def _gate(gi_ptr, t, s_gt, s_gb, k, H, rows, u, m2, a, b_ptr, umask, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
          hs_a, hs_b):
    """act(gi[t, :, block k] + a + b_hh[block k]) for this tile (a: the recurrent product)."""
    return _act(_gi(gi_ptr, t, s_gt, s_gb, k, H, rows, u, m2) + a + _bias(b_ptr, k, H, u, umask, HAS_BIAS), ACT,
                hs_a, hs_b)


# ------------------------------------------------------------------------------------ layer norm
# LayerNormGRU's recurrent layer norm (LN constexpr; lg_ptr: its gain (3H,)), as torch_loop computes it:
# reset_after=True normalises the 3H recurrent products of a row together, reset_after=False the r, z
# block (2H) and the n block (H, the product with r * hm) separately; the gain multiplies the normalised
# values before b_hh is added. A norm reduces over whole rows, so LN runs only with plans whose one program
# covers all H units of its rows (n_h == 1, checked by heuristics.make_plan). Saved after the gates
# (fastgru.backends.saved_width): xhat of the 3H products, then 2 rstd per row (the r,z block's / the whole
# row's first, the n block's second; 0 there for reset_after=True). Backward writes dpre (T, B, 3H), the
# gradient of the products before the norm, and the recurrent products of dh_prev read it instead of the
# gate gradients.


@triton.jit
def _ln_at(H, RESET_AFTER: tl.constexpr):
    """Offset of the saved xhat values in a saved row (fastgru.backends.layer_norm_offset)."""
    if RESET_AFTER:
        at = 4 * H
    else:
        at = 3 * H
    return at


@triton.jit
def _width(H, RESET_AFTER: tl.constexpr, LN: tl.constexpr):
    """Saved values per (t, b) (fastgru.backends.saved_width)."""
    w = _ln_at(H, RESET_AFTER)
    if LN:
        w = w + 3 * H + 2
    return w


@triton.jit
def _ln_rows(a0, a1, a2, NG: tl.constexpr, H, umask):
    """Layer norm (no shift) of each row over the NG blocks a_k (BLOCK_B, BLOCK_H) (units past H left
    out): returns the normalised blocks xhat_k (0 past H; blocks k >= NG meaningless) and rstd (BLOCK_B,)."""
    keep = umask[None, :]
    n = NG * H
    s = tl.sum(tl.where(keep, a0, 0.0), axis=1)
    if NG > 1:
        s += tl.sum(tl.where(keep, a1, 0.0), axis=1)
    if NG > 2:
        s += tl.sum(tl.where(keep, a2, 0.0), axis=1)
    mean = (s / n)[:, None]
    d0 = tl.where(keep, a0 - mean, 0.0)
    d1 = tl.where(keep, a1 - mean, 0.0)
    d2 = tl.where(keep, a2 - mean, 0.0)
    v = tl.sum(d0 * d0, axis=1)
    if NG > 1:
        v += tl.sum(d1 * d1, axis=1)
    if NG > 2:
        v += tl.sum(d2 * d2, axis=1)
    rstd = 1.0 / tl.sqrt(v / n + LN_EPS)
    return d0 * rstd[:, None], d1 * rstd[:, None], d2 * rstd[:, None], rstd


@triton.jit
def _ln_back(d0, d1, d2, x0, x1, x2, lg_ptr, G0: tl.constexpr, rstd, NG: tl.constexpr, H, u, umask):
    """Backward of xhat * gain over the NG blocks (gain blocks G0, G0+1, ..): d_k, the gradients of the
    gained values, become those of the products before the norm (x_k = xhat_k, 0 past H)."""
    keep = umask[None, :]
    n = NG * H
    e0 = tl.where(keep, d0 * _bias(lg_ptr, G0, H, u, umask, True), 0.0)
    m1 = tl.sum(e0, axis=1)
    m2 = tl.sum(e0 * x0, axis=1)
    e1 = e0
    e2 = e0
    if NG > 1:
        e1 = tl.where(keep, d1 * _bias(lg_ptr, G0 + 1, H, u, umask, True), 0.0)
        m1 += tl.sum(e1, axis=1)
        m2 += tl.sum(e1 * x1, axis=1)
    if NG > 2:
        e2 = tl.where(keep, d2 * _bias(lg_ptr, G0 + 2, H, u, umask, True), 0.0)
        m1 += tl.sum(e2, axis=1)
        m2 += tl.sum(e2 * x2, axis=1)
    m1 = (m1 / n)[:, None]
    m2 = (m2 / n)[:, None]
    r = rstd[:, None]
    return r * (e0 - m1 - x0 * m2), r * (e1 - m1 - x1 * m2), r * (e2 - m1 - x2 * m2)


@triton.jit
def _gained(x, lg_ptr, k, H, u, umask):
    """xhat * gain (block k of the gain) of this tile."""
    return x * _bias(lg_ptr, k, H, u, umask, True)


@triton.jit
def _row_ptr(gates_ptr, width, t, B, rows):
    """Start of each of this tile's saved rows of step t (BLOCK_B,)."""
    return gates_ptr + t.to(tl.int64) * B * width + rows.to(tl.int64) * width


@triton.jit
def _saved(gp, off, m2):
    """Saved values at gp + off (a tile of a saved row), as fp32."""
    return tl.load(gp + off, mask=m2, other=0.0).to(tl.float32)


@triton.jit
def _dpre_tile(dpre_ptr, t, B, H, rows, u):
    """Pointers of this tile's first block of dpre[t] (T, B, 3H)."""
    return dpre_ptr + t.to(tl.int64) * B * (3 * H) + rows[:, None] * (3 * H) + u[None, :]


# ------------------------------------------------------------------------------ forward step bodies


@triton.jit
def _mix_and_put(n, z, t, st, r_in, s_out, r_out, buf_ptr, len_ptr, rm_ptr, zm_ptr, zone_p, B, H, rows, rmask, u,
                 m2, HAS_LEN: tl.constexpr, RMASK: tl.constexpr, ZONE: tl.constexpr, RING: tl.constexpr,
                 EMU: tl.constexpr):
    """The step's new state, written out: h' = n + z (hm - n); with zoneout k h + (1 - k) h'; h itself
    past a sequence's length."""
    h = _own(st, r_in, B, H, rows, u, m2)
    new = n + z * (_masked(h, rm_ptr, H, rows, u, m2, RMASK) - n)
    if ZONE != 0:
        k = _zone_keep(zm_ptr, zone_p, t, B, H, rows, u, m2, ZONE)
        new = k * h + (1.0 - k) * new
    if HAS_LEN:
        new = tl.where(_live(len_ptr, rows, rmask, t), new, h)
    _put_state(new, buf_ptr, st, s_out, r_out, B, H, rows, u, m2, RING, EMU)


@triton.jit
def _save_rzn(gates_ptr, width, t, B, H, rows, u, m2, r, z, n, EMU: tl.constexpr):
    """Saves r, z, n of step t in rows of `width` saved values; returns the tile's pointers."""
    gp = gates_ptr + t.to(tl.int64) * B * width + rows[:, None] * width + u[None, :]
    _store(gp, r, m2, EMU)
    _store(gp + H, z, m2, EMU)
    _store(gp + 2 * H, n, m2, EMU)
    return gp


@triton.jit
def _fwd_ra_step(i, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                 rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, wt_r, wt_z, wt_n, gh_ptr,
                 REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LEN: tl.constexpr, RMASK: tl.constexpr,
                 ZONE: tl.constexpr, GACT: tl.constexpr, CACT: tl.constexpr, LN: tl.constexpr, SAVE: tl.constexpr,
                 MM: tl.constexpr, RING: tl.constexpr, H_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr, PREC: tl.constexpr,
                 EMU: tl.constexpr):
    """One reset_after=True step for this program's tile: buf[s_out] and gates[t] (r, z, n, W_hn hm + b_hn;
    with LN, the products are normalised over the row's 3H values first and xhat, rstd saved too)."""
    t, s_in, s_out = _slots(i, T, REVERSE)
    st, r_in, r_out = _state_slots(i, T, buf_ptr, st_ptr, RING, REVERSE)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    h_in = st + r_in.to(tl.int64) * B * H
    if MM == 2:
        gp = gh_ptr + rows[:, None] * (3 * H) + u[None, :]
        ar = tl.load(gp, mask=m2, other=0.0).to(tl.float32)
        az = tl.load(gp + H, mask=m2, other=0.0).to(tl.float32)
        an = tl.load(gp + 2 * H, mask=m2, other=0.0).to(tl.float32)
    else:
        ar, az, an = _product(h_in, H, h_in, H, h_in, H, rm_ptr, w_ptr, H, rows, rmask, u, umask, wt_r, wt_z, wt_n,
                              3, 0, 1, 2, True, RMASK, False, MM, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT, PREC,
                              EMU)
    if LN:
        xr, xz, xn, rstd = _ln_rows(ar, az, an, 3, H, umask)
        ar = _gained(xr, lg_ptr, 0, H, u, umask)
        az = _gained(xz, lg_ptr, 1, H, u, umask)
        an = _gained(xn, lg_ptr, 2, H, u, umask)
    r = _gate(gi_ptr, t, s_gt, s_gb, 0, H, rows, u, m2, ar, b_ptr, umask, HAS_BIAS, GACT, hs_a, hs_b)
    z = _gate(gi_ptr, t, s_gt, s_gb, 1, H, rows, u, m2, az, b_ptr, umask, HAS_BIAS, GACT, hs_a, hs_b)
    hn = an + _bias(b_ptr, 2, H, u, umask, HAS_BIAS)
    n = _act(_gi(gi_ptr, t, s_gt, s_gb, 2, H, rows, u, m2) + r * hn, CACT, hs_a, hs_b)
    _mix_and_put(n, z, t, st, r_in, s_out, r_out, buf_ptr, len_ptr, rm_ptr, zm_ptr, zone_p, B, H, rows, rmask, u,
                 m2, HAS_LEN, RMASK, ZONE, RING, EMU)
    if SAVE:
        width = _width(H, True, LN)
        gp = _save_rzn(gates_ptr, width, t, B, H, rows, u, m2, r, z, n, EMU)
        _store(gp + 3 * H, hn, m2, EMU)
        if LN:
            _store(gp + 4 * H, xr, m2, EMU)
            _store(gp + 5 * H, xz, m2, EMU)
            _store(gp + 6 * H, xn, m2, EMU)
            rp = _row_ptr(gates_ptr, width, t, B, rows) + 7 * H
            _store(rp, rstd, rmask, EMU)
            _store(rp + 1, rstd * 0.0, rmask, EMU)


@triton.jit
def _fwd_rz_step(i, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, rh_ptr, rm_ptr, lg_ptr,
                 hs_a, hs_b, wt_r, wt_z, gh_ptr,
                 REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr, RMASK: tl.constexpr, GACT: tl.constexpr,
                 LN: tl.constexpr, SAVE: tl.constexpr, MM: tl.constexpr, RING: tl.constexpr, H_PAD: tl.constexpr,
                 BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr,
                 PREC: tl.constexpr, EMU: tl.constexpr):
    """First half of a reset_after=False step: r, z of this tile; publishes r * hm to rh (B, H). With LN the
    r, z products are normalised together (2H values per row) and their xhat, rstd saved here."""
    t, s_in, s_out = _slots(i, T, REVERSE)
    st, r_in, r_out = _state_slots(i, T, buf_ptr, st_ptr, RING, REVERSE)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    h_in = st + r_in.to(tl.int64) * B * H
    if MM == 2:
        gp = gh_ptr + rows[:, None] * (2 * H) + u[None, :]
        ar = tl.load(gp, mask=m2, other=0.0).to(tl.float32)
        az = tl.load(gp + H, mask=m2, other=0.0).to(tl.float32)
    else:
        ar, az, _unused = _product(h_in, H, h_in, H, h_in, H, rm_ptr, w_ptr, H, rows, rmask, u, umask, wt_r, wt_z,
                                   wt_z, 2, 0, 1, 1, True, RMASK, False, MM, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H,
                                   USE_DOT, PREC, EMU)
    if LN:
        xr, xz, _x, rstd = _ln_rows(ar, az, az, 2, H, umask)
        ar = _gained(xr, lg_ptr, 0, H, u, umask)
        az = _gained(xz, lg_ptr, 1, H, u, umask)
        if SAVE:
            width = _width(H, False, True)
            gp = gates_ptr + t.to(tl.int64) * B * width + rows[:, None] * width + u[None, :]
            _store(gp + 3 * H, xr, m2, EMU)
            _store(gp + 4 * H, xz, m2, EMU)
            _store(_row_ptr(gates_ptr, width, t, B, rows) + 6 * H, rstd, rmask, EMU)
    r = _gate(gi_ptr, t, s_gt, s_gb, 0, H, rows, u, m2, ar, b_ptr, umask, HAS_BIAS, GACT, hs_a, hs_b)
    z = _gate(gi_ptr, t, s_gt, s_gb, 1, H, rows, u, m2, az, b_ptr, umask, HAS_BIAS, GACT, hs_a, hs_b)
    hm = _masked(_own(st, r_in, B, H, rows, u, m2), rm_ptr, H, rows, u, m2, RMASK)
    _store(rh_ptr + rows[:, None] * H + u[None, :], r * hm, m2, EMU)
    return r, z


@triton.jit
def _fwd_n_step(i, r, z, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, rh_ptr, wt_n, gh_ptr,
                REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LEN: tl.constexpr, RMASK: tl.constexpr,
                ZONE: tl.constexpr, CACT: tl.constexpr, LN: tl.constexpr, SAVE: tl.constexpr,
                MM: tl.constexpr, RING: tl.constexpr, H_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr, PREC: tl.constexpr,
                EMU: tl.constexpr):
    """Second half of a reset_after=False step: n = act(gi_n + W_hn (r*hm) + b_hn), then the new state (LN:
    W_hn (r*hm) normalised over its H values per row, times the gain's n block)."""
    t, s_in, s_out = _slots(i, T, REVERSE)
    st, r_in, r_out = _state_slots(i, T, buf_ptr, st_ptr, RING, REVERSE)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    if MM == 2:
        an = tl.load(gh_ptr + rows[:, None] * H + u[None, :], mask=m2, other=0.0).to(tl.float32)
    else:
        an, _u1, _u2 = _product(rh_ptr, H, rh_ptr, H, rh_ptr, H, rh_ptr, w_ptr, H, rows, rmask, u, umask, wt_n, wt_n,
                                wt_n, 1, 2, 2, 2, True, False, False, MM, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H,
                                USE_DOT, PREC, EMU)
    if LN:
        xn, _x1, _x2, rstd = _ln_rows(an, an, an, 1, H, umask)
        an = _gained(xn, lg_ptr, 2, H, u, umask)
    n = _gate(gi_ptr, t, s_gt, s_gb, 2, H, rows, u, m2, an, b_ptr, umask, HAS_BIAS, CACT, hs_a, hs_b)
    _mix_and_put(n, z, t, st, r_in, s_out, r_out, buf_ptr, len_ptr, rm_ptr, zm_ptr, zone_p, B, H, rows, rmask, u,
                 m2, HAS_LEN, RMASK, ZONE, RING, EMU)
    if SAVE:
        width = _width(H, False, LN)
        gp = _save_rzn(gates_ptr, width, t, B, H, rows, u, m2, r, z, n, EMU)
        if LN:
            _store(gp + 5 * H, xn, m2, EMU)
            _store(_row_ptr(gates_ptr, width, t, B, rows) + 6 * H + 1, rstd, rmask, EMU)


# ----------------------------------------------------------------------------- backward step bodies


@triton.jit
def _bwd_cell(i, dh, T, B, H, width, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr, zm_ptr, zone_p,
              hs_a, REVERSE: tl.constexpr, HAS_LEN: tl.constexpr, RMASK: tl.constexpr, ZONE: tl.constexpr,
              GACT: tl.constexpr, CACT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """What both variants' gate gradients of step t share, for this tile (`width` saved values per row).

    g = dh + dbuf[s_out] is the gradient of h_t. Past a sequence's length all of it, and with zoneout the
    kept share k g, passes straight back to h_{t-1}; the rest enters the cell. Returns (t, rows, u, m2,
    the tile's saved-gate pointers, hm = h_{t-1} * rec_mask, dn, dz, carry): carry is the local part of
    dh_{t-1}, the passed-back gradient + rec_mask * g z.
    """
    t, s_in, s_out = _slots(i, T, REVERSE)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    dp = dbuf_ptr + s_out.to(tl.int64) * s_dt + rows[:, None].to(tl.int64) * s_db + u[None, :]
    g = dh + tl.load(dp, mask=m2, other=0.0).to(tl.float32)
    hm = _masked(_own(buf_ptr, s_in, B, H, rows, u, m2), rm_ptr, H, rows, u, m2, RMASK)
    gp = gates_ptr + t.to(tl.int64) * B * width + rows[:, None] * width + u[None, :]
    z = tl.load(gp + H, mask=m2, other=0.0).to(tl.float32)
    n = tl.load(gp + 2 * H, mask=m2, other=0.0).to(tl.float32)
    back = 0.0
    if HAS_LEN:
        live = _live(len_ptr, rows, rmask, t)
        back = tl.where(live, 0.0, g)
        g = tl.where(live, g, 0.0)
    if ZONE != 0:
        k = _zone_keep(zm_ptr, zone_p, t, B, H, rows, u, m2, ZONE)
        back = back + g * k
        g = g * (1.0 - k)
    dn = g * (1.0 - z) * _act_grad(n, CACT, hs_a)
    dz = g * (hm - n) * _act_grad(z, GACT, hs_a)
    return t, rows, u, m2, gp, hm, dn, dz, back + _masked(g * z, rm_ptr, H, rows, u, m2, RMASK)


@triton.jit
def _bwd_ra_gates(i, dh, T, B, H, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr, zm_ptr, lg_ptr, zone_p,
                  hs_a, dgi_ptr, dghn_ptr, dpre_ptr, rec_ptr, REVERSE: tl.constexpr, HAS_LEN: tl.constexpr,
                  RMASK: tl.constexpr, ZONE: tl.constexpr, GACT: tl.constexpr, CACT: tl.constexpr, LN: tl.constexpr,
                  STORE_REC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, EMU: tl.constexpr):
    """reset_after=True: gate gradients of step t for this tile; returns the local part of dh_prev. With LN
    also dpre[t], the gradient of the 3H products before the norm (what dh_prev's product reads)."""
    width = _width(H, True, LN)
    t, rows, u, m2, gp, hm, dn, dz, carry = _bwd_cell(i, dh, T, B, H, width, dbuf_ptr, s_dt, s_db, buf_ptr,
                                                      gates_ptr, len_ptr, rm_ptr, zm_ptr, zone_p, hs_a, REVERSE,
                                                      HAS_LEN, RMASK, ZONE, GACT, CACT, BLOCK_B, BLOCK_H)
    r = _saved(gp, 0, m2)
    hn = _saved(gp, 3 * H, m2)
    dr = dn * hn * _act_grad(r, GACT, hs_a)
    dghn = dn * r
    op = dgi_ptr + t.to(tl.int64) * B * (3 * H) + rows[:, None] * (3 * H) + u[None, :]
    _store(op, dr, m2, EMU)
    _store(op + H, dz, m2, EMU)
    _store(op + 2 * H, dn, m2, EMU)
    _store(dghn_ptr + t.to(tl.int64) * B * H + rows[:, None] * H + u[None, :], dghn, m2, EMU)
    a0 = dr  # the gradients the recurrent products pair with: [dr, dz, dn*r], before the norm with LN
    a1 = dz
    a2 = dghn
    if LN:
        _r, rmask, _u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
        rstd = tl.load(_row_ptr(gates_ptr, width, t, B, rows) + 7 * H, mask=rmask, other=0.0).to(tl.float32)
        a0, a1, a2 = _ln_back(dr, dz, dghn, _saved(gp, 4 * H, m2), _saved(gp, 5 * H, m2), _saved(gp, 6 * H, m2),
                              lg_ptr, 0, rstd, 3, H, u, umask)
        pp = _dpre_tile(dpre_ptr, t, B, H, rows, u)
        _store(pp, a0, m2, EMU)
        _store(pp + H, a1, m2, EMU)
        _store(pp + 2 * H, a2, m2, EMU)
    if STORE_REC:  # operand of the cuBLAS GEMM dh_prev += [a0, a1, a2] @ W_hh
        rp = rec_ptr + rows[:, None] * (3 * H) + u[None, :]
        _store(rp, a0, m2, EMU)
        _store(rp + H, a1, m2, EMU)
        _store(rp + 2 * H, a2, m2, EMU)
    return carry


@triton.jit
def _bwd_rb_gates1(i, dh, T, B, H, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr, zm_ptr, lg_ptr, zone_p,
                   hs_a, dgi_ptr, dpre_ptr, rec_ptr, REVERSE: tl.constexpr, HAS_LEN: tl.constexpr,
                   RMASK: tl.constexpr, ZONE: tl.constexpr, GACT: tl.constexpr, CACT: tl.constexpr, LN: tl.constexpr,
                   STORE_REC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, EMU: tl.constexpr):
    """reset_after=False, part 1: dz, dn of step t for this tile (LN: and dpre[t]'s n block, dn through the
    n block's norm); returns the local part of dh_prev."""
    width = _width(H, False, LN)
    t, rows, u, m2, gp, hm, dn, dz, carry = _bwd_cell(i, dh, T, B, H, width, dbuf_ptr, s_dt, s_db, buf_ptr,
                                                      gates_ptr, len_ptr, rm_ptr, zm_ptr, zone_p, hs_a, REVERSE,
                                                      HAS_LEN, RMASK, ZONE, GACT, CACT, BLOCK_B, BLOCK_H)
    op = dgi_ptr + t.to(tl.int64) * B * (3 * H) + rows[:, None] * (3 * H) + u[None, :]
    _store(op + H, dz, m2, EMU)
    _store(op + 2 * H, dn, m2, EMU)
    a_n = dn  # what W_hn's product pairs with
    if LN:
        _r, rmask, _u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
        rstd = tl.load(_row_ptr(gates_ptr, width, t, B, rows) + 6 * H + 1, mask=rmask, other=0.0).to(tl.float32)
        xn = _saved(gp, 5 * H, m2)
        a_n, _a1, _a2 = _ln_back(dn, dn, dn, xn, xn, xn, lg_ptr, 2, rstd, 1, H, u, umask)
        _store(_dpre_tile(dpre_ptr, t, B, H, rows, u) + 2 * H, a_n, m2, EMU)
    if STORE_REC:
        rp = rec_ptr + rows[:, None] * (3 * H) + u[None, :]
        _store(rp + H, dz, m2, EMU)
        _store(rp + 2 * H, a_n, m2, EMU)
    return carry


@triton.jit
def _bwd_rb_gates2(i, carry, T, B, H, buf_ptr, gates_ptr, rm_ptr, lg_ptr, hs_a, dgi_ptr, dpre_ptr, w_ptr, wc_n, p_ptr,
                   rec_ptr, REVERSE: tl.constexpr, RMASK: tl.constexpr, GACT: tl.constexpr, LN: tl.constexpr,
                   STORE_REC: tl.constexpr, MM: tl.constexpr, H_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr, PREC: tl.constexpr,
                   EMU: tl.constexpr):
    """reset_after=False, part 2: d(r*hm) = dn @ W_hn (all units' dn; LN: dpre's n block), then dr; adds
    d(r*hm) * r * rec_mask to carry. LN: dr, dz through the r, z block's norm into dpre[t]'s first 2H."""
    t, s_in, s_out = _slots(i, T, REVERSE)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    d = dgi_ptr + t.to(tl.int64) * B * (3 * H)
    if LN:
        dn_src = dpre_ptr + t.to(tl.int64) * B * (3 * H)
    else:
        dn_src = d
    if MM == 2:
        drh = tl.load(p_ptr + rows[:, None] * H + u[None, :], mask=m2, other=0.0).to(tl.float32)
    else:
        drh, _u1, _u2 = _product(dn_src + 2 * H, 3 * H, d, 3 * H, d, 3 * H, d, w_ptr, H, rows, rmask, u, umask,
                                 wc_n, wc_n, wc_n, 1, 2, 2, 2, False, False, True, MM, H_PAD, BLOCK_K, BLOCK_B,
                                 BLOCK_H, USE_DOT, PREC, EMU)
    hm = _masked(_own(buf_ptr, s_in, B, H, rows, u, m2), rm_ptr, H, rows, u, m2, RMASK)
    width = _width(H, False, LN)
    gp = gates_ptr + t.to(tl.int64) * B * width + rows[:, None] * width + u[None, :]
    r = _saved(gp, 0, m2)
    dr = drh * hm * _act_grad(r, GACT, hs_a)
    _store(d + rows[:, None] * (3 * H) + u[None, :], dr, m2, EMU)
    a_r = dr  # what W_hr's product pairs with (W_hz's: dz, or with LN its pre-norm gradient)
    if LN:
        dz = tl.load(d + rows[:, None] * (3 * H) + H + u[None, :], mask=m2, other=0.0).to(tl.float32)
        rstd = tl.load(_row_ptr(gates_ptr, width, t, B, rows) + 6 * H, mask=rmask, other=0.0).to(tl.float32)
        a_r, a_z, _a2 = _ln_back(dr, dz, dz, _saved(gp, 3 * H, m2), _saved(gp, 4 * H, m2), _saved(gp, 4 * H, m2),
                                 lg_ptr, 0, rstd, 2, H, u, umask)
        pp = _dpre_tile(dpre_ptr, t, B, H, rows, u)
        _store(pp, a_r, m2, EMU)
        _store(pp + H, a_z, m2, EMU)
        if STORE_REC:
            _store(rec_ptr + rows[:, None] * (3 * H) + H + u[None, :], a_z, m2, EMU)
    if STORE_REC:
        _store(rec_ptr + rows[:, None] * (3 * H) + u[None, :], a_r, m2, EMU)
    return carry + _masked(drh * r, rm_ptr, H, rows, u, m2, RMASK)


@triton.jit
def _bwd_dh(i, carry, T, B, H, dgi_ptr, dghn_ptr, dpre_ptr, rm_ptr, w_ptr, wc_r, wc_z, wc_n, p_ptr,
            RESET_AFTER: tl.constexpr, REVERSE: tl.constexpr, RMASK: tl.constexpr, LN: tl.constexpr, MM: tl.constexpr,
            H_PAD: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
            USE_DOT: tl.constexpr, PREC: tl.constexpr, EMU: tl.constexpr):
    """dh_prev of this tile = carry + rec_mask * (dG_t @ W_hh[:, own units]) (dG of all units, written by
    all programs: the gate gradients, or with LN dpre, their values before the norm)."""
    t, s_in, s_out = _slots(i, T, REVERSE)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    if MM == 2:
        prod = tl.load(p_ptr + rows[:, None] * H + u[None, :], mask=m2, other=0.0).to(tl.float32)
    else:
        if LN:
            d = dpre_ptr + t.to(tl.int64) * B * (3 * H)
            dn_src = d + 2 * H
            dn_stride = 3 * H
        else:
            d = dgi_ptr + t.to(tl.int64) * B * (3 * H)
            dn_src = dghn_ptr + t.to(tl.int64) * B * H
            dn_stride = H
        if RESET_AFTER:
            a0, a1, a2 = _product(d, 3 * H, d + H, 3 * H, dn_src, dn_stride, d, w_ptr, H, rows, rmask, u, umask,
                                  wc_r, wc_z, wc_n, 3, 0, 1, 2, False, False, True, MM, H_PAD, BLOCK_K, BLOCK_B,
                                  BLOCK_H, USE_DOT, PREC, EMU)
        else:
            a0, a1, a2 = _product(d, 3 * H, d + H, 3 * H, d, 3 * H, d, w_ptr, H, rows, rmask, u, umask,
                                  wc_r, wc_z, wc_z, 2, 0, 1, 1, False, False, True, MM, H_PAD, BLOCK_K, BLOCK_B,
                                  BLOCK_H, USE_DOT, PREC, EMU)
        prod = a0 + a1 + a2
    return carry + _masked(prod, rm_ptr, H, rows, u, m2, RMASK)


# ---------------------------------------------------------------------------------------- kernels
# Step indices and T are never specialised: Triton would turn a value of 1 into a compile-time constant
# (and recompile), and the bodies call .to(tl.int64) on values derived from them. The cell-option
# arguments (rm_ptr, zm_ptr, zone_p, hs_a, hs_b; RMASK, ZONE, GACT, CACT) and the layer norm's (lg_ptr, LN;
# backward: dpre_ptr) are described above.


@triton.jit(do_not_specialize=["T"])
def fwd_persistent_kernel(gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                          rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, rh_ptr, cnt_ptr, T, B, H,
                          RESET_AFTER: tl.constexpr, REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr,
                          HAS_LEN: tl.constexpr, RMASK: tl.constexpr, ZONE: tl.constexpr, GACT: tl.constexpr,
                          CACT: tl.constexpr, LN: tl.constexpr, SAVE: tl.constexpr, SYNC: tl.constexpr,
                          MM: tl.constexpr, RING: tl.constexpr, H_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr, PREC: tl.constexpr,
                          EMU: tl.constexpr):
    """Whole sequence in one launch; W_hh slice loaded once (MM=0); grid barrier after each exchange."""
    n_h = tl.num_programs(0)
    cnt = cnt_ptr + tl.program_id(1)  # one counter per batch block: only its programs exchange data
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    if MM == 0:
        wt_r, wt_z, wt_n = _load_wtiles(w_ptr, H, u, umask, False, H_PAD)
    else:
        wt_r = 0.0
        wt_z = 0.0
        wt_n = 0.0
    for i in range(T):
        if RESET_AFTER:
            _fwd_ra_step(i, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                         rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, wt_r, wt_z, wt_n, gi_ptr, REVERSE, HAS_BIAS,
                         HAS_LEN, RMASK, ZONE, GACT, CACT, LN, SAVE, MM, RING, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H,
                         USE_DOT, PREC, EMU)
            _sync(cnt, (i + 1) * n_h, SYNC)
        else:
            r, z = _fwd_rz_step(i, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, rh_ptr,
                                rm_ptr, lg_ptr, hs_a, hs_b, wt_r, wt_z, gi_ptr, REVERSE, HAS_BIAS, RMASK, GACT, LN,
                                SAVE, MM, RING, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT, PREC, EMU)
            _sync(cnt, (2 * i + 1) * n_h, SYNC)
            _fwd_n_step(i, r, z, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                        rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, rh_ptr, wt_n, gi_ptr, REVERSE, HAS_BIAS,
                        HAS_LEN, RMASK, ZONE, CACT, LN, SAVE, MM, RING, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT,
                        PREC, EMU)
            _sync(cnt, (2 * i + 2) * n_h, SYNC)


@triton.jit(do_not_specialize=["i", "T"])
def fwd_step_kernel(i, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                    rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, rh_ptr, rz_ptr, gh_ptr, T, B, H,
                    PHASE: tl.constexpr, REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LEN: tl.constexpr,
                    RMASK: tl.constexpr, ZONE: tl.constexpr, GACT: tl.constexpr, CACT: tl.constexpr,
                    LN: tl.constexpr, SAVE: tl.constexpr, MM: tl.constexpr, RING: tl.constexpr, H_PAD: tl.constexpr,
                    BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                    USE_DOT: tl.constexpr, PREC: tl.constexpr, EMU: tl.constexpr):
    """One step (PHASE 0: reset_after=True) or one half step (PHASE 1 / 2: reset_after=False) per launch.

    MM=2 ('gemm' mode): gh_ptr holds this step's recurrent products, computed by cuBLAS.
    """
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    if MM == 0:
        wt_r, wt_z, wt_n = _load_wtiles(w_ptr, H, u, umask, False, H_PAD)
    else:
        wt_r = 0.0
        wt_z = 0.0
        wt_n = 0.0
    if PHASE == 0:
        _fwd_ra_step(i, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                     rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, wt_r, wt_z, wt_n, gh_ptr, REVERSE, HAS_BIAS,
                     HAS_LEN, RMASK, ZONE, GACT, CACT, LN, SAVE, MM, RING, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT,
                     PREC, EMU)
    elif PHASE == 1:
        r, z = _fwd_rz_step(i, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, rh_ptr,
                            rm_ptr, lg_ptr, hs_a, hs_b, wt_r, wt_z, gh_ptr, REVERSE, HAS_BIAS, RMASK, GACT, LN, SAVE,
                            MM, RING, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT, PREC, EMU)
        zp = rz_ptr + rows[:, None] * (2 * H) + u[None, :]
        tl.store(zp, r, mask=m2)
        tl.store(zp + H, z, mask=m2)
    else:
        zp = rz_ptr + rows[:, None] * (2 * H) + u[None, :]
        r = tl.load(zp, mask=m2, other=0.0)
        z = tl.load(zp + H, mask=m2, other=0.0)
        _fwd_n_step(i, r, z, T, B, H, gi_ptr, s_gt, s_gb, buf_ptr, st_ptr, gates_ptr, w_ptr, b_ptr, len_ptr,
                    rm_ptr, zm_ptr, lg_ptr, zone_p, hs_a, hs_b, rh_ptr, wt_n, gh_ptr, REVERSE, HAS_BIAS,
                    HAS_LEN, RMASK, ZONE, CACT, LN, SAVE, MM, RING, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT, PREC,
                    EMU)


@triton.jit
def _dh0(dh, dbuf_ptr, s_dt, s_db, dh0_ptr, T, H, rows, u, m2, REVERSE: tl.constexpr, EMU: tl.constexpr):
    """dh0 = dh + dbuf[h0's slot]."""
    first = _first_slot(T, REVERSE)
    dp = dbuf_ptr + first.to(tl.int64) * s_dt + rows[:, None].to(tl.int64) * s_db + u[None, :]
    _store(dh0_ptr + rows[:, None] * H + u[None, :], dh + tl.load(dp, mask=m2, other=0.0).to(tl.float32), m2, EMU)


@triton.jit(do_not_specialize=["T"])
def bwd_persistent_kernel(dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, w_ptr, len_ptr, rm_ptr, zm_ptr, lg_ptr, zone_p,
                          hs_a, dgi_ptr, dghn_ptr, dh0_ptr, dpre_ptr, cnt_ptr, T, B, H,
                          RESET_AFTER: tl.constexpr, REVERSE: tl.constexpr, HAS_LEN: tl.constexpr,
                          RMASK: tl.constexpr, ZONE: tl.constexpr, GACT: tl.constexpr, CACT: tl.constexpr,
                          LN: tl.constexpr,
                          SYNC: tl.constexpr, MM: tl.constexpr, H_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr,
                          PREC: tl.constexpr, EMU: tl.constexpr):
    """BPTT over the whole sequence in one launch; dh of the own units stays in registers (fp32)."""
    n_h = tl.num_programs(0)
    cnt = cnt_ptr + tl.program_id(1)
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    if MM == 0:
        wc_r, wc_z, wc_n = _load_wtiles(w_ptr, H, u, umask, True, H_PAD)
    else:
        wc_r = 0.0
        wc_z = 0.0
        wc_n = 0.0
    dh = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
    for j in range(T):
        i = T - 1 - j
        if RESET_AFTER:
            carry = _bwd_ra_gates(i, dh, T, B, H, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr, zm_ptr,
                                  lg_ptr, zone_p, hs_a, dgi_ptr, dghn_ptr, dpre_ptr, dgi_ptr, REVERSE, HAS_LEN, RMASK,
                                  ZONE, GACT, CACT, LN, False, BLOCK_B, BLOCK_H, EMU)
            _sync(cnt, (j + 1) * n_h, SYNC)
        else:
            carry = _bwd_rb_gates1(i, dh, T, B, H, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr, zm_ptr,
                                   lg_ptr, zone_p, hs_a, dgi_ptr, dpre_ptr, dgi_ptr, REVERSE, HAS_LEN, RMASK, ZONE,
                                   GACT, CACT, LN, False, BLOCK_B, BLOCK_H, EMU)
            _sync(cnt, (2 * j + 1) * n_h, SYNC)
            carry = _bwd_rb_gates2(i, carry, T, B, H, buf_ptr, gates_ptr, rm_ptr, lg_ptr, hs_a, dgi_ptr, dpre_ptr,
                                   w_ptr, wc_n, dgi_ptr, dgi_ptr, REVERSE, RMASK, GACT, LN, False, MM, H_PAD, BLOCK_K,
                                   BLOCK_B, BLOCK_H, USE_DOT, PREC, EMU)
            _sync(cnt, (2 * j + 2) * n_h, SYNC)
        dh = _bwd_dh(i, carry, T, B, H, dgi_ptr, dghn_ptr, dpre_ptr, rm_ptr, w_ptr, wc_r, wc_z, wc_n, dgi_ptr,
                     RESET_AFTER, REVERSE, RMASK, LN, MM, H_PAD, BLOCK_K, BLOCK_B, BLOCK_H, USE_DOT, PREC, EMU)
    _dh0(dh, dbuf_ptr, s_dt, s_db, dh0_ptr, T, H, rows, u, m2, REVERSE, EMU)


@triton.jit(do_not_specialize=["i_dh", "i_g", "T"])
def bwd_step_kernel(i_dh, i_g, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, w_ptr, len_ptr, rm_ptr, zm_ptr, lg_ptr,
                    zone_p, hs_a, dgi_ptr, dghn_ptr, dh0_ptr, dpre_ptr, c_in_ptr, c_out_ptr, p_ptr, rec_ptr, T, B, H,
                    PHASE: tl.constexpr, HAS_DH: tl.constexpr, HAS_G: tl.constexpr,
                    RESET_AFTER: tl.constexpr, REVERSE: tl.constexpr, HAS_LEN: tl.constexpr,
                    RMASK: tl.constexpr, ZONE: tl.constexpr, GACT: tl.constexpr, CACT: tl.constexpr, LN: tl.constexpr,
                    MM: tl.constexpr, STORE_REC: tl.constexpr, H_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, USE_DOT: tl.constexpr, PREC: tl.constexpr,
                    EMU: tl.constexpr):
    """One backward launch. PHASE 0: [finish dh of step i_dh] then the gate gradients of step i_g
    (reset_after=False: its part 1), or dh0 when not HAS_G. PHASE 1: reset_after=False part 2 of i_g.
    The fp32 local carry travels between launches through c_in -> c_out (two different (B, H) buffers).
    MM=2 ('gemm' mode): p_ptr holds the product cuBLAS formed from rec_ptr after the previous launch.
    """
    rows, rmask, u, umask = _tile(B, H, BLOCK_B, BLOCK_H)
    m2 = rmask[:, None] & umask[None, :]
    own = rows[:, None] * H + u[None, :]
    if MM == 0:
        wc_r, wc_z, wc_n = _load_wtiles(w_ptr, H, u, umask, True, H_PAD)
    else:
        wc_r = 0.0
        wc_z = 0.0
        wc_n = 0.0
    if PHASE == 1:
        carry = tl.load(c_in_ptr + own, mask=m2, other=0.0)
        carry = _bwd_rb_gates2(i_g, carry, T, B, H, buf_ptr, gates_ptr, rm_ptr, lg_ptr, hs_a, dgi_ptr, dpre_ptr, w_ptr,
                               wc_n, p_ptr, rec_ptr, REVERSE, RMASK, GACT, LN, STORE_REC, MM, H_PAD, BLOCK_K, BLOCK_B,
                               BLOCK_H, USE_DOT, PREC, EMU)
        tl.store(c_out_ptr + own, carry, mask=m2)
    else:
        dh = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
        if HAS_DH:
            dh = _bwd_dh(i_dh, tl.load(c_in_ptr + own, mask=m2, other=0.0), T, B, H, dgi_ptr, dghn_ptr, dpre_ptr,
                         rm_ptr, w_ptr, wc_r, wc_z, wc_n, p_ptr, RESET_AFTER, REVERSE, RMASK, LN, MM, H_PAD, BLOCK_K,
                         BLOCK_B, BLOCK_H, USE_DOT, PREC, EMU)
        if HAS_G:
            if RESET_AFTER:
                carry = _bwd_ra_gates(i_g, dh, T, B, H, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr,
                                      zm_ptr, lg_ptr, zone_p, hs_a, dgi_ptr, dghn_ptr, dpre_ptr, rec_ptr, REVERSE,
                                      HAS_LEN, RMASK, ZONE, GACT, CACT, LN, STORE_REC, BLOCK_B, BLOCK_H, EMU)
            else:
                carry = _bwd_rb_gates1(i_g, dh, T, B, H, dbuf_ptr, s_dt, s_db, buf_ptr, gates_ptr, len_ptr, rm_ptr,
                                       zm_ptr, lg_ptr, zone_p, hs_a, dgi_ptr, dpre_ptr, rec_ptr, REVERSE, HAS_LEN,
                                       RMASK, ZONE, GACT, CACT, LN, STORE_REC, BLOCK_B, BLOCK_H, EMU)
            tl.store(c_out_ptr + own, carry, mask=m2)
        else:
            _dh0(dh, dbuf_ptr, s_dt, s_db, dh0_ptr, T, H, rows, u, m2, REVERSE, EMU)
