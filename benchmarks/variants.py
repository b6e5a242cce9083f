"""Variants benchmark (issue 6): LayerNormGRU and the regularised GRU against the plain fastgru GRU, and
the streaming step against torch.nn.GRUCell, on this machine's CPU. Written to BENCHMARKS.md.

Run on a quiet machine: python benchmarks/variants.py [--reps 7]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import fastgru  # noqa: E402
from fastgru.apps.bench import interleaved_medians, machine_description  # noqa: E402
from fastgru.io.markdown import replace_section  # noqa: E402

SIZES = [(100, 32, 64, 128), (200, 64, 128, 256)]


def train_step(m, x):
    m.zero_grad(set_to_none=True)
    y, h = m(x)
    (y.sum() + h.sum()).backward()


def variant_rows(reps):
    rows = []
    for T, B, I, H in SIZES:
        plain = fastgru.nn.GRU(I, H)
        variants = {
            "LayerNormGRU": fastgru.nn.LayerNormGRU(I, H),
            "GRU + recurrent_dropout 0.25 + zoneout 0.1": fastgru.nn.GRU(I, H, recurrent_dropout=0.25, zoneout=0.1),
            "GRU + input_dropout 0.2": fastgru.nn.GRU(I, H, input_dropout=0.2),
        }
        x = torch.randn(T, B, I)
        for name, m in variants.items():
            m.eval()
            with torch.no_grad():
                t_plain, t_var = interleaved_medians([lambda p=plain, x=x: p(x), lambda m=m, x=x: m(x)], reps)
            rows.append((f"{T}, {B}, {I}, {H}", name, "inference (eval)", t_plain, t_var))
            m.train()
            pair = [lambda p=plain, x=x: train_step(p, x), lambda m=m, x=x: train_step(m, x)]
            t_plain, t_var = interleaved_medians(pair, reps)
            rows.append((f"{T}, {B}, {I}, {H}", name, "training", t_plain, t_var))
    return rows


def streaming_rows(reps, steps=1000):
    m = fastgru.nn.GRU(64, 128).eval()
    cell = torch.nn.GRUCell(64, 128)
    xs = torch.randn(steps, 1, 64)

    def fastgru_stream():
        state = None
        for t in range(steps):
            _, state = m.step(xs[t], state)

    def stream_helper():
        stream = fastgru.nn.Stream(m)
        for t in range(steps):
            stream(xs[t])

    def cell_stream():
        h = torch.zeros(1, 128)
        for t in range(steps):
            h = cell(xs[t], h)

    with torch.no_grad():
        t_cell, t_fast, t_stream = interleaved_medians([cell_stream, fastgru_stream, stream_helper], reps)
    label = "1000 steps, B=1, I=64, H=128"
    return [(label + ", GRU.step", t_cell / steps * 1e3, t_fast / steps * 1e3),
            (label + ", Stream", t_cell / steps * 1e3, t_stream / steps * 1e3)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    header = machine_description()
    rows = variant_rows(args.reps)
    stream = streaming_rows(args.reps)
    lines = ["| T, B, I, H | variant | mode | plain fastgru GRU ms | variant ms | variant / plain |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s} | {n} | {mode} | {a:.1f} | {b:.1f} | {b / a:.2f}x |" for s, n, mode, a, b in rows]
    lines += ["", "| streaming | torch.nn.GRUCell us/step | fastgru us/step | speed-up |", "|---|---|---|---|"]
    lines += [f"| {s} | {a:.1f} | {b:.1f} | {a / b:.2f}x |" for s, a, b in stream]
    table = "\n".join(lines)
    print(header)
    print(table)
    body = (f"Machine: {header}.\n\nCommand: `python benchmarks/variants.py --reps {args.reps}` (medians of "
            f"interleaved runs, {time.time() - started:.0f} s). Target: variants within 1.3x of the plain GRU; "
            f"streaming step <= 10 us.\n\n{table}\n")
    replace_section(args.output, "variants", "## CPU: GRU variants and streaming", body)
