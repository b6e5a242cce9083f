"""`fastgru generate` on held-out text: the GRU character model over several seeds beside bz2 and lzma.

Each (text, seed) is one `fastgru generate` run in its own process, with the default model and a time
budget (``--time-limit``); the test part (the last 10% of the text) is scored as one continuous stream,
and the compressors get the training and validation text as prefix. The table gives each seed's test
bits per character, training time, characters per second and the machine's load average, then the
mean. ``--write`` replaces the generate section of RESULTS.md (between its markers).

    python benchmarks/generate_results.py --time-limit 600 --seeds 0 1 2 --write
    python benchmarks/generate_results.py --text FILE --max-chars 1000000 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "RESULTS.md"
START, END = "<!-- generate:start -->", "<!-- generate:end -->"


def run_one(text: str | None, seed: int, out: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "fastgru", "generate", "--seed", str(seed), "--out", str(out), "--force",
           "--time-limit", str(args.time_limit), "--length", "300", "--no-progress"]
    if text:
        cmd += ["--text-file", text]
    if args.max_chars:
        cmd += ["--max-chars", str(args.max_chars)]
    cmd += args.extra
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.nice:
        cmd = ["nice", "-n", str(args.nice)] + cmd
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["wall_seconds_total"] = time.time() - started
    metrics["command"] = " ".join(cmd[cmd.index("-m") + 1 :] if "-m" in cmd else cmd)
    return metrics


def table(name: str, runs: dict[int, dict], args: argparse.Namespace) -> str:
    first = next(iter(runs.values()))
    base = first["baselines_bits_per_char"]
    m = first["model"]
    lines = [
        f"**{name}**: {first['characters']['train']:,} training, {first['characters']['valid']:,} validation, "
        f"{first['characters']['test']:,} test characters (test: {first['split']['test']}); vocabulary "
        f"{first['vocabulary_size']} incl. <unk>, {first['unknown_characters']['test']} test characters unknown. "
        f"Default model: GRU {m['hidden_size']} x {m['num_layers']}, embedding {m['embedding_dim']}, dropout "
        f"{m['dropout']:g}, {m['parameters']:,} parameters. Budget {args.time_limit:g} s of training per seed, "
        f"{args.threads} thread(s), {args.jobs} run(s) at a time.",
        "",
        "| seed | GRU test bpc | bz2 | lzma | valid bpc | trained (s) | chars/s | epochs | stopped "
        "| load avg before/after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, r in runs.items():
        t = r["training"]
        before = r["machine"]["before"]["load_average_1_5_15_min"][0]
        after = r["machine"]["after"]["load_average_1_5_15_min"][0]
        lines.append(
            f"| {seed} | **{r['bits_per_char']['test']:.3f}** | {base['bz2']:.3f} | {base['lzma']:.3f} | "
            f"{r['bits_per_char']['valid']:.3f} | {t['seconds']:.0f} | {t['chars_per_second']:,.0f} | "
            f"{t['chars'] / max(1, r['characters']['train']):.1f} | {t['stop_reason']} | {before:.1f} / {after:.1f} |"
        )
    tests = [r["bits_per_char"]["test"] for r in runs.values()]
    spread = f" ± {statistics.stdev(tests):.3f}" if len(tests) > 1 else ""
    lines.append(f"| mean | **{statistics.mean(tests):.3f}{spread}** | {base['bz2']:.3f} | {base['lzma']:.3f} | "
                 f"| {statistics.mean(r['training']['seconds'] for r in runs.values()):.0f} | "
                 f"{statistics.mean(r['training']['chars_per_second'] for r in runs.values()):,.0f} | | | |")
    lines += ["", f"Command of one run: `{first['command']}`"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", action="append", default=None,
                   help="a UTF-8 text file (repeatable); default: the built-in Sonnets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--time-limit", type=float, default=600.0)
    p.add_argument("--max-chars", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (OMP_NUM_THREADS)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--out-root", default="fastgru-out/generate-results")
    p.add_argument("--write", action="store_true", help="replace the generate section of RESULTS.md")
    p.add_argument("extra", nargs="*", help="more `fastgru generate` options, after --")
    args = p.parse_args()
    texts = args.text or [None]
    sections = []
    for text in texts:
        name = Path(text).name if text else "built-in Shakespeare's Sonnets"
        tag = Path(text).stem if text else "sonnets"
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {s: pool.submit(run_one, text, s, Path(args.out_root) / f"{tag}-seed{s}", args)
                       for s in args.seeds}
            runs = {s: f.result() for s, f in futures.items()}
        sections.append(table(name, runs, args))
        print(sections[-1], flush=True)
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
              f"torch {torch.__version__}; `python benchmarks/generate_results.py --time-limit {args.time_limit:g} "
              f"--seeds {' '.join(map(str, args.seeds))} --threads {args.threads} --jobs {args.jobs}`.")
    body = "\n\n".join([header] + sections)
    if args.write:
        write_section(body)


def write_section(body: str) -> None:
    """Put `body` between the generate markers of RESULTS.md (kept elsewhere: everything else)."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    block = f"{START}\n## Character language model (`fastgru generate`) vs bz2 and lzma\n\n{body}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
