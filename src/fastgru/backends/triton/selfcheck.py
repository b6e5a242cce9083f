"""GPU acceptance check of the Triton backend: `python -m fastgru.backends.triton.selfcheck`.

For random shapes, every mode the device allows (persistent with several programs and the grid
barrier, per-step, gemm), both variants, lengths and reverse, fp32 (TF32 off), bf16 and fp16, half of
the cases with random cell options (recurrent dropout, zoneout mask or eval probability, activations), a
third with the recurrent layer norm (a random gain; H <= LN_MAX_H, one program per row block): the
contract outputs are compared with fastgru.backends.torch_loop run in float64 on the same (rounded)
values, with NaN-poisoned outputs (an unwritten element fails the check) and a second identical run
that must match bit for bit (a race would show). Exits 1 on any failure, 0 otherwise; prints one
line per case. Under TRITON_INTERPRET=1 it runs on the CPU with small sizes (a dry run of the check).
"""

from __future__ import annotations

import argparse
import random
import sys

import torch

from fastgru.backends import ACTIVATIONS, CellSpec, torch_loop
from fastgru.backends.triton import launch

TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-12)).item()


def random_cell_options(gen: torch.Generator, T: int, B: int, H: int, dtype: torch.dtype,
                        device: torch.device) -> dict:
    """rec_mask (0 or 1/(1-p)), a zoneout keep-mask or eval probability, random activations. Half
    precision leaves hard_sigmoid out: a rounded saved output of 1.0 sits on its kink (derivative 0)."""
    smooth = [a for a in ACTIVATIONS if a != "hard_sigmoid"]
    gates = ("sigmoid", "hard_sigmoid") if dtype == torch.float32 else ("sigmoid",)
    candidates = list(ACTIVATIONS) if dtype == torch.float32 else smooth
    train = random.random() < 0.5
    spec = CellSpec(random.choice(gates), random.choice(candidates), zoneout=0.0 if train else 0.3)
    rec_mask = ((torch.rand(B, H, generator=gen) < 0.7).double() / 0.7).to(device, dtype)
    zone_mask = (torch.rand(T, B, H, generator=gen) < 0.3).to(device) if train else None
    return dict(rec_mask=rec_mask, zone_mask=zone_mask, spec=spec)


def check_case(T: int, B: int, H: int, dtype: torch.dtype, reset_after: bool, reverse: bool, lengths: bool,
               device: torch.device, cell: bool = False, layer_norm: bool = False,
               **plan_overrides) -> tuple[bool, str]:
    gen = torch.Generator(device="cpu").manual_seed(random.randrange(2**31))
    gi = torch.randn(T, B, 3 * H, generator=gen).to(device, dtype)
    h0 = torch.randn(B, H, generator=gen).to(device, dtype)
    w = (torch.randn(3 * H, H, generator=gen) / H**0.5).to(device, dtype)
    b = torch.randn(3 * H, generator=gen).to(device, dtype)
    L = torch.randint(0, T + 1, (B,), generator=gen).to(device) if lengths else None
    dbuf = torch.randn(T + 1, B, H, generator=gen).to(device, dtype)
    opts = random_cell_options(gen, T, B, H, dtype, device) if cell else {}
    if layer_norm:
        opts["ln_gain"] = (0.5 + torch.rand(3 * H, generator=gen)).to(device, dtype)
    plan = launch.plan_for(B, H, dtype, device, layer_norm=layer_norm, **plan_overrides)
    runs = []
    for _ in range(2):
        buf, gates = launch.forward(gi, h0, w, b, L, reset_after, reverse, True, plan=plan, **opts)
        runs.append([buf, gates, *launch.backward(dbuf, buf, gates, w, L, reset_after, reverse, plan=plan, **opts)])
    d = torch.float64
    ref_opts = {k: v.to(d) if k in ("rec_mask", "ln_gain") else v for k, v in opts.items()}
    rbuf, rgates = torch_loop.recurrence_forward(gi.to(d), h0.to(d), w.to(d), b.to(d), L, reset_after, reverse, True,
                                                 **ref_opts)
    want = [rbuf, rgates, *torch_loop.recurrence_backward(dbuf.to(d), rbuf, rgates, w.to(d), L, reset_after,
                                                          reverse, **ref_opts)]
    errs, ok = [], True
    for got, again, ref in zip(runs[0], runs[1], want):
        if got.numel() == 0:
            continue
        e = _rel(got, ref)
        errs.append(e)
        finite = bool(torch.isfinite(got).all())
        same = torch.equal(got, again)
        ok &= finite and same and e < TOL[dtype] and got.dtype in (dtype, launch.GATES_DTYPE)
    desc = (f"T={T} B={B} H={H} {str(dtype)[6:]} reset_after={reset_after} reverse={reverse} lengths={lengths} "
            f"{plan.mode} grid={plan.grid} bh={plan.block_h} bb={plan.block_b} "
            f"{'resident' if plan.resident else 'streamed'} {'dot' if plan.use_dot else 'bcast'}"
            f"{_describe(opts) if cell else ''}{' layer_norm' if layer_norm else ''}: "
            f"max rel err {max(errs):.1e}")
    return ok, desc


def _describe(opts: dict) -> str:
    spec = opts["spec"]
    zone = "zone_mask" if opts["zone_mask"] is not None else f"zoneout={spec.zoneout}"
    return f" rec_mask {zone} {spec.gate_activation}/{spec.candidate_activation}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24, help="random cases per mode (default 24)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    random.seed(args.seed)
    interp = launch.interpreting()
    device = torch.device("cpu" if interp else "cuda")
    if not launch.device_ok(device):
        print("selfcheck needs a CUDA device (or TRITON_INTERPRET=1 for a CPU dry run)", file=sys.stderr)
        return 2
    old_tf32 = torch.backends.cudnn.rnn.fp32_precision if hasattr(torch.backends.cudnn, "rnn") else None
    if old_tf32 is not None:
        torch.backends.cudnn.rnn.fp32_precision = "ieee"  # exact fp32 for the 1e-5 bound
    else:
        torch.backends.cudnn.allow_tf32 = False
    launch.POISON = True
    failures = 0
    try:
        for mode in ("persistent", "step", "gemm"):
            for _ in range(args.cases):
                T = random.randint(1, 6 if interp else 40)
                B = random.choice([1, 2, 3, 5] if interp else [1, 2, 3, 4, 7, 16, 33, 64])
                dtype = random.choice(list(TOL))
                # half precision on a handful of elements: one rounded value's cancellation in (h - n)
                # can dominate a norm-relative error, so half cases use H >= 16 (B*H >= 16)
                small = [3, 8, 12, 20] if dtype == torch.float32 else [16, 20]
                H = random.choice(small if interp else [5, 16, 24, 64, 100, 128, 256, 384])
                if dtype != torch.float32:
                    H = max(H, 16)
                over: dict = {"mode": mode}
                if mode == "persistent" and interp:
                    over.update(block_h=max(16, 1 << (H - 1).bit_length()), block_b=max(1, 1 << (B - 1).bit_length()),
                                sync=True)
                elif mode != "persistent" or not interp:
                    if random.random() < 0.5:  # vary the product path too
                        over["resident"] = random.random() < 0.5
                try:
                    ok, desc = check_case(T, B, H, dtype, random.random() < 0.5, random.random() < 0.5,
                                          random.random() < 0.5, device, cell=random.random() < 0.5,
                                          layer_norm=random.random() < 1 / 3, **over)
                except ValueError as exc:  # a plan the device cannot run (e.g. grid larger than the SMs)
                    print(f"skip {mode} T={T} B={B} H={H}: {exc}")
                    continue
                failures += not ok
                print(("ok   " if ok else "FAIL ") + desc, flush=True)
    finally:
        launch.POISON = False
        if old_tf32 is not None:
            torch.backends.cudnn.rnn.fp32_precision = old_tf32
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
