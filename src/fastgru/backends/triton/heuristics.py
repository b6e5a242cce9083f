"""Launch plan for the Triton GRU recurrence: which mode, which tiles, how many warps.

Pure Python (no Triton import) so it can be unit-tested anywhere.

Modes
- ``persistent``: one launch for the whole sequence; programs own BLOCK_H hidden units of BLOCK_B batch
  rows, keep their W_hh slice on chip when it fits (``resident``) and meet at a grid-wide barrier each
  step (two per step for ``reset_after=False``). Needs every program resident at once, so the grid must
  not exceed the SM count; under the interpreter (programs run one after another) only a 1-program grid.
- ``step``: the same per-step body, one launch per step (per phase), no barrier. Always correct; the
  mode the interpreter runs whole sequences in, and the GPU fallback when the grid is too large.
- ``gemm``: large batch (B >= 128 and H >= 1024) with half weights, or fp32 with TF32 off: the
  recurrent product of every step is one cuBLAS GEMM (tensor cores) and a fused Triton kernel does the
  gate arithmetic. fp32 with TF32 allowed takes ``step`` there instead: cuBLAS follows torch's matmul
  flag, not cuDNN's, and the library never flips global flags; the step kernel's tl.dot does TF32 itself.

Recurrent layer norm (``layer_norm=True``, LayerNormGRU): a norm reduces over whole rows, so every program
owns all H units of its BLOCK_B rows (block_h >= H, n_h == 1: no grid barrier; persistent is then one
program per batch block), which bounds H (``LN_MAX_H``; `supports_layer_norm`) and, by the register
budget of the 3 (BLOCK_B, H) accumulators, BLOCK_B (``LN_TILE_ELEMS``).

Register and shared-memory fit: the compile-only check `fastgru.backends.triton.aot` compiles every plan
of a shape grid for sm_80 and sm_90 and fails on plans over a limit or whose persistent step loop spills;
the rules marked "(aot)" below come from what it found. The speed thresholds are untuned guesses (no GPU
has measured them). ``FASTGRU_TRITON_MODE=persistent|step|gemm`` forces a mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fastgru import config

MODES = ("persistent", "step", "gemm")
RESIDENT_BYTES = 64 * 1024  # W_hh slice (3 gates) kept in registers up to this size per program ...
REGISTER_BYTES = 112 * 1024  # ... and up to this together with the fp32 state tile it multiplies
BROADCAST_ELEMS = 4096  # largest BLOCK_B x BLOCK_K x BLOCK_H product per gate of the non-dot path
# (aot) tl.dot plans keep W_hh resident only up to this many values (3 x BLOCK_H x H_PAD; 48 per thread at 8
# warps): the forward spilled at twice that in bf16 / fp16 (B=4 and 16, H=512: 16 x 512 slices, sm_80)
RESIDENT_DOT_ELEMS = 12288
SINGLE_PROGRAM_MAX_H = 128  # small H: one program per batch block, no grid barrier at all
LARGE_B, LARGE_H = 128, 1024  # "gemm" path from here on
LN_MAX_H = 512  # largest hidden size the layer-norm kernels take (one program holds whole rows)
LN_TILE_ELEMS = 8192  # layer norm: BLOCK_B x h_pad up to this (x3 fp32 accumulators), BLOCK_B >= the dot's 16
# (aot) layer norm: at most this many rows per program: the whole-row body spilled 8.7 KB per thread at 64 rows
# x 64 units (bf16, sm_80) and 0.4 KB at 32 x 64; 16 x 64 compiles spill-free.
LN_MAX_ROWS = 16
# Shared memory per block (bytes) a plan may use when the device's own limit is not given: the smallest
# of the supported architectures, A100 (sm_80: 163 KB per block; H100 / H200, sm_90: 227 KB).
SMEM_PER_BLOCK_DEFAULT = 166_912
SMEM_PER_BLOCK = {80: 166_912, 86: 101_376, 87: 166_912, 89: 101_376, 90: 232_448}  # by compute capability
SMEM_SCRATCH = 16 * 1024  # room left for layout conversions and reductions beside the dot operands
MAX_STAGES = 3  # software-pipelining depth of the streamed W_hh loop (Triton's default on CUDA)
# (aot) contraction chunk of the streamed loop with fp32 operands: a tl.dot in TF32 (tensor cores) spilled in
# the backward at 64 and at 32 with 3 stages (64 x 32 tiles, sm_80); one without TF32 runs on the FMA units
# with its operand tiles replicated in registers, and spilled with W_hh resident (B=4, H=256) and streamed
# in chunks of 32 or more.
FP32_BLOCK_K = 16
# (aot) contraction chunk of the broadcast product (BLOCK_B x BLOCK_K x BLOCK_H values per gate): the backward
# spilled at 4096 (B=1, H=2048, sm_80).
BROADCAST_CHUNK_ELEMS = 2048


def supports_layer_norm(H: int) -> bool:
    """Whether the kernels fuse the recurrent layer norm at hidden size H (else: the torch loop)."""
    return 1 <= H <= LN_MAX_H


def smem_estimate(block_b: int, block_h: int, h_pad: int, block_k: int, resident: bool, use_dot: bool,
                  elem_bytes: int, num_stages: int) -> int:
    """Upper estimate of the shared memory (bytes) a plan's kernels allocate; the plan is fitted to the device
    with it. `fastgru.backends.triton.aot` checks it against the compiler over the whole shape grid for sm_80
    and sm_90 and fails on any kernel that allocates more.

    tl.dot stages its operands in shared memory: state tiles (BLOCK_B x K) and the 3 gates' W_hh tiles
    (K x BLOCK_H), K = H_PAD when W is resident, else BLOCK_K per pipeline stage of the streamed loop
    (num_stages buffers). Counted here: 3 state tiles and 3 W tiles per stage in the weight dtype, plus
    SMEM_SCRATCH for layout conversions and reductions. What the compiler allocates is less: the forward
    stages its one state tile in fp32 (a resident bf16 plan at 64 x 256: 65,536 B for the state and 24,576 B
    for W, 90,112 B against an estimate of 139,264 B), and the backward's sources are staged in the weight
    dtype; over the grid the compiled figure is at most 0.85 of the estimate for tl.dot plans. The broadcast
    product keeps its operands in registers and uses shared memory only for its reductions: up to 16,384 B
    (= SMEM_SCRATCH, its estimate) compiled.
    """
    if not use_dot:
        return SMEM_SCRATCH
    k, stages = (h_pad, 1) if resident else (block_k, num_stages)
    return stages * 3 * k * (block_b + block_h) * elem_bytes + SMEM_SCRATCH


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Plan:
    """Everything a launch needs besides the tensors."""

    mode: str  # one of MODES
    block_b: int  # batch rows per program
    block_h: int  # hidden units per program
    h_pad: int  # next power of two >= H: the contraction tile when W is resident
    block_k: int  # contraction chunk when W is streamed from L2
    resident: bool  # W_hh slice loaded once (persistent) / once per launch (step) vs streamed in chunks
    use_dot: bool  # tl.dot (tensor cores; tiles >= 16) vs broadcast-multiply-sum (tiny batch)
    num_warps: int
    n_b: int  # programs along the batch
    n_h: int  # programs along the hidden units (the barrier's participants)
    sync: bool  # persistent: grid barrier (n_h > 1) vs CTA barrier only
    num_stages: int = 1  # software-pipelining depth of the streamed W_hh loop (shared-memory buffers)

    @property
    def grid(self) -> tuple[int, int]:
        return (self.n_h, self.n_b)


def make_plan(
    B: int,
    H: int,
    elem_bytes: int,
    n_sm: int | None,
    interpret: bool,
    tf32: bool = False,
    layer_norm: bool = False,
    capability: int | None = None,
    smem_per_block: int | None = None,
    cell_options: bool = False,
    **overrides,
) -> Plan:
    """Pick a plan for batch B, hidden size H, weight element size `elem_bytes`.

    n_sm: streaming multiprocessors (None: unknown / interpreter). tf32: fp32 weights whose products
    may use TF32 (decides the large-batch path). Any Plan field may be overridden
    (tests use that to run every code path at small sizes; the interpreter accepts tiles < 16 for
    tl.dot, a GPU does not); derived fields (n_b, n_h, ...) follow the overridden ones. layer_norm: the
    recurrent layer norm is fused (needs H <= LN_MAX_H; one program per row block, see above).
    capability: the GPU's compute capability (80 for sm_80, ...; None: unknown), smem_per_block: the shared
    memory one block may use (None: SMEM_PER_BLOCK[capability], else SMEM_PER_BLOCK_DEFAULT, A100's). The plan's shared
    memory (`smem_estimate`) is kept within it: a W_hh slice that does not fit is streamed, and the streamed
    loop gets fewer pipeline stages, then smaller chunks, until it fits. cell_options: recurrent dropout,
    zoneout or non-default activations are on (their masks and branches need registers beside a resident
    W_hh slice, so the register budget for the state tile counts twice).
    """
    if B < 1 or H < 1:
        raise ValueError(f"batch and hidden size must be positive, got B={B}, H={H}")
    if layer_norm and not supports_layer_norm(H):
        raise ValueError(f"the Triton layer-norm kernels take H <= {LN_MAX_H}, got H={H} (use the torch loop)")
    mode = overrides.pop("mode", None) or config.triton_mode()
    if mode is not None and mode not in MODES:
        raise ValueError(f"Triton mode must be one of {MODES}, got {mode!r} (FASTGRU_TRITON_MODE?)")
    use_dot = overrides.pop("use_dot", B > 2)
    min_tile = 16 if use_dot else 1  # tl.dot needs every dimension >= 16 on the GPU
    block_b = overrides.pop("block_b", None)
    h_pad = max(min_tile, next_pow2(H))
    if block_b is None:
        block_b = min(64, max(min_tile, next_pow2(B))) if use_dot else next_pow2(B)
        if layer_norm:
            block_b = max(min_tile, min(block_b, LN_TILE_ELEMS // h_pad, LN_MAX_ROWS))
    n_b = cdiv(B, block_b)
    block_h = overrides.pop("block_h", None)
    if block_h is None:
        if layer_norm or (H <= SINGLE_PROGRAM_MAX_H and B <= 16):
            block_h = h_pad
        else:
            per_b = max(1, (n_sm or 132) // n_b)
            block_h = max(16 if use_dot else 8, next_pow2(cdiv(H, per_b)))
            block_h = min(block_h, h_pad)
    n_h = cdiv(H, block_h)
    if layer_norm and n_h != 1:
        raise ValueError(f"the layer norm needs block_h >= H (one program per row block), got block_h={block_h}, H={H}")
    resident = overrides.pop("resident", None)
    fixed_res = resident is not None
    fma_dot = use_dot and elem_bytes == 4 and not tf32  # fp32 tl.dot without TF32: FMA units, no tensor cores
    if resident is None:
        w_bytes = 3 * block_h * h_pad * elem_bytes
        # (aot) cell options: their masks and branches spilled a resident plan (B=64, H=256, bf16)
        x_bytes = 4 * block_b * h_pad * (2 if cell_options else 1)
        resident = w_bytes <= RESIDENT_BYTES and w_bytes + x_bytes <= REGISTER_BYTES and not fma_dot
        if use_dot:
            resident = resident and 3 * block_h * h_pad <= RESIDENT_DOT_ELEMS
        else:  # the broadcast product materialises block_b x h_pad x block_h values
            resident = resident and block_b * h_pad * block_h <= 2 * BROADCAST_ELEMS
    block_k = overrides.pop("block_k", None)
    fixed_k = block_k is not None
    if block_k is None:
        if use_dot:
            block_k = min(h_pad, FP32_BLOCK_K if elem_bytes == 4 else 64)
        else:
            block_k = min(h_pad, max(1, BROADCAST_CHUNK_ELEMS // (block_b * block_h)))
    smem_limit = smem_per_block or SMEM_PER_BLOCK.get(capability, SMEM_PER_BLOCK_DEFAULT)
    num_stages = overrides.pop("num_stages", None)

    def smem(res: bool, k: int, stages: int) -> int:
        return smem_estimate(block_b, block_h, h_pad, k, res, use_dot, elem_bytes, stages)

    if resident and not fixed_res and smem(True, block_k, 1) > smem_limit:
        resident = False  # the W_hh slice and the state tile do not fit in shared memory: stream W
    if num_stages is None:
        num_stages = 1
        if not resident:
            num_stages = next((s for s in range(MAX_STAGES, 0, -1) if smem(False, block_k, s) <= smem_limit), 1)
            while not fixed_k and block_k > (16 if use_dot else 1) and smem(False, block_k, num_stages) > smem_limit:
                block_k //= 2
    if use_dot and not interpret and min(block_b, block_h, block_k, h_pad) < 16:
        raise ValueError(
            f"tl.dot needs tiles >= 16 on a GPU, got block_b={block_b}, block_h={block_h}, "
            f"block_k={block_k}, h_pad={h_pad}"
        )
    for name, v in (("block_b", block_b), ("block_h", block_h), ("block_k", block_k)):
        if v < 1 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two, got {v}")
    # on-chip bytes per program: the W_hh slice or chunk, the fp32 state tile, and (aot) the 3 gates' fp32
    # accumulators: without them, 16 x 128 plans streaming 16-wide fp32 chunks got 4 warps and spilled 52-80 B
    # in the backward (B=4, H=128, sm_90); 8 warps compile them spill-free
    big = 3 * block_h * (h_pad if resident else block_k) * elem_bytes + 4 * block_b * h_pad + 12 * block_b * block_h
    num_warps = overrides.pop("num_warps", None) or (8 if big > 32 * 1024 else 4)
    fits = n_sm is not None and n_h * n_b <= n_sm
    if interpret:
        fits = n_h * n_b == 1
    if mode is None:
        if B >= LARGE_B and H >= LARGE_H:
            mode = "step" if tf32 else "gemm"
        elif fits:
            mode = "persistent"
        else:
            mode = "step"
    if mode == "persistent" and not fits:
        raise ValueError(
            f"persistent mode needs all {n_h * n_b} programs resident at once "
            f"({'the interpreter runs programs one by one: use a 1-program grid' if interpret else f'{n_sm} SMs'})"
        )
    sync = overrides.pop("sync", n_h > 1)
    plan = Plan(mode, block_b, block_h, h_pad, block_k, bool(resident), bool(use_dot), int(num_warps),
                n_b, n_h, bool(sync), int(num_stages))
    if overrides:
        plan = replace(plan, **overrides)  # raises TypeError on an unknown field name
    return plan
