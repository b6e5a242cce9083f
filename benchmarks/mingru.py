"""CPU benchmark: MinGRU parallel (log-space scan) vs sequential mode, and vs fastgru.nn.GRU of the same size.

All sides run interleaved (A, B, C, A, B, C, ...) in one process on the same inputs; the table reports
medians. Inference = forward under no_grad; training = forward + backward of sum(output) + sum(h_n)
(parameter gradients). Also one streaming step (B = 1) of MinGRU.step and GRU.step. Writes its table
to BENCHMARKS.md, section "mingru". Run on a quiet machine (check `uptime`):

    python benchmarks/mingru.py [--seq-lens 512 4096] [--batch 8] [--input 64] [--hidden 128] [--reps 5]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import fastgru  # noqa: E402
from fastgru.apps.bench import interleaved_medians, machine_description  # noqa: E402
from fastgru.io.markdown import replace_section  # noqa: E402


def train_step(module: torch.nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    y, h = module(x)
    (y.sum() + h.sum()).backward()


def measure(T: int, B: int, I: int, H: int, reps: int) -> dict:
    """Inference and training medians (ms) for MinGRU parallel, MinGRU sequential and fastgru GRU."""
    par = fastgru.nn.MinGRU(I, H, mode="parallel")
    seq = fastgru.nn.MinGRU(I, H, mode="sequential")
    seq.load_state_dict(par.state_dict())
    gru = fastgru.nn.GRU(I, H)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        y_par, _ = par(x)
        y_seq, _ = seq(x)
        diff = (y_par - y_seq).abs().max().item()
        infer = interleaved_medians([lambda: par(x), lambda: seq(x), lambda: gru(x)], reps)
    train = interleaved_medians([lambda: train_step(par, x), lambda: train_step(seq, x), lambda: train_step(gru, x)],
                                reps)
    return {"T": T, "infer": infer, "train": train, "max_abs_diff": diff}


def step_us(I: int, H: int, steps: int = 2000) -> tuple[float, float]:
    """Microseconds per streaming step at B = 1 (no_grad): MinGRU.step, fastgru GRU.step; interleaved blocks."""
    mg, gru = fastgru.nn.MinGRU(I, H).eval(), fastgru.nn.GRU(I, H).eval()
    x = torch.randn(I)

    def run(model):
        def go():
            state = None
            for _ in range(steps):
                _, state = model.step(x, state)
        return go

    with torch.no_grad():
        t_mg, t_gru = interleaved_medians([run(mg), run(gru)], 5)
    return t_mg * 1e3 / steps, t_gru * 1e3 / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--note", default="", help="a sentence about the conditions, put into the report")
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    machine = machine_description()
    B, I, H = args.batch, args.input, args.hidden
    lines = [
        "| T | B, I, H | mode | MinGRU parallel ms | MinGRU sequential ms | fastgru GRU ms | "
        "parallel speed-up (seq / par) | GRU ms / best MinGRU ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    diffs = []
    for T in args.seq_lens:
        print(f"measuring T={T} B={B} I={I} H={H} ...", flush=True)
        r = measure(T, B, I, H, args.reps)
        diffs.append(f"T={T}: {r['max_abs_diff']:.1e}")
        for mode in ("infer", "train"):
            p, s, g = r[mode]
            name = "inference" if mode == "infer" else "training (fwd+bwd)"
            lines.append(f"| {T} | {B}, {I}, {H} | {name} | {p:.1f} | {s:.1f} | {g:.1f} | {s / p:.2f}x | "
                         f"{g / min(p, s):.1f}x |")
    mg_us, gru_us = step_us(I, H)
    table = "\n".join(lines)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/mingru.py", *sys.argv[1:]])
    body = (
        f"Machine: {machine}. {args.note}\n\n"
        f"Command: `{command}`; medians of {args.reps} interleaved rounds (one call of each side per round), "
        "fp32, CPU. GPU figures (Triton scan): unmeasured: no GPU was available.\n\n"
        f"{table}\n\n"
        f"Parallel vs sequential outputs, max abs difference: {', '.join(diffs)}.\n\n"
        f"Streaming, one step at B = 1, I = {I}, H = {H} (no_grad): MinGRU.step {mg_us:.1f} us/step, "
        f"fastgru GRU.step {gru_us:.1f} us/step.\n"
    )
    print(body)
    replace_section(Path(args.output), "mingru", "## MinGRU (CPU): parallel scan vs sequential, vs GRU", body)


if __name__ == "__main__":
    main()
