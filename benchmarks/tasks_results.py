"""Measured runs of the detect / classify tasks for RESULTS.md (section `tasks`; forecast has its own
section, written by benchmarks/forecast_results.py).

    PYTHONPATH=src .venv/bin/python benchmarks/tasks_results.py [--out runs/tasks-results] [--results-md RESULTS.md]

Runs each task at its default settings (the same as the `fastgru` command's) on built-in real data, for
seeds 0, 1, 2 where cheap, and writes the tables between `<!-- tasks:start -->` and `<!-- tasks:end -->`.
The UCR/UEA and labelled anomaly sets need sktime's data files (pip install --no-deps sktime).
A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from fastgru.apps.classify import classify
from fastgru.apps.common import format_table
from fastgru.apps.detect import detect
from fastgru.io.markdown import replace_section

SEEDS = (0, 1, 2)


def _ms(values: list[float]) -> str:
    m = statistics.mean(values)
    return f"{m:.3f} +- {statistics.stdev(values):.3f}" if len(values) > 1 else f"{m:.3f}"


def classify_section(out: Path) -> str:
    parts = []
    for data, seeds in (("japanese_vowels", SEEDS), ("gunpoint", (0,)), ("basic_motions", (0,))):
        runs = [classify(data, out_dir=out / f"classify-{data}-seed{s}", overwrite=True, seed=s) for s in seeds]
        r0 = runs[0]
        rows = []
        for method in r0["metrics"]:
            rows.append([method, _ms([r["metrics"][method]["accuracy"] for r in runs]),
                         _ms([r["metrics"][method]["macro_f1"] for r in runs])])
        parts.append(
            f"**{data}** ({r0['description']}): {len(r0['classes'])} classes, {r0['channels']} channel(s), "
            f"lengths {r0['length_min']}-{r0['length_max']}, train/validation/test {r0['train_sequences']}/"
            f"{r0['val_sequences']}/{r0['test_sequences']} (the archive's own test split), {r0['num_parameters']} "
            f"parameters; seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}. "
            f"Command: `fastgru classify --data {data} --seed S`.\n\n"
            + format_table(rows, ["method", "test accuracy", "test macro-F1"], markdown=True)
            + f"\n\n{statistics.mean(r['seconds'] for r in runs):.1f} s per run.\n"
        )
    return "### classify vs the majority-class baseline\n\n" + "\n".join(parts)


def detect_section(out: Path) -> str:
    parts = []
    for data in ("yahoo", "mitdb"):
        r = detect(data, out_dir=out / f"detect-{data}", overwrite=True, seed=0)
        rows = [[part, m["precision"], m["recall"], m["f1"], f"{m['events_found']}/{m['events']}", m["best_f1"],
                 m["random_flag_f1"]] for part, m in r["evaluation"].items()]
        parts.append(
            f"**{data}** ({r['description']}): {r['steps']} steps, trained on the first {r['train_steps']}, "
            f"window {r['window']}, score {r['score']}, threshold {r['threshold']:.3g} ({r['threshold_rule']}); "
            f"seed 0. Command: `fastgru detect --data {data}`."
            "\n\n" + format_table(rows, ["points", "precision", "recall", "F1", "events found",
                                         "best F1 (any threshold)", "F1 of flagging everything"], markdown=True) + "\n"
        )
    note = ("Point anomalies (yahoo) are what a one-step forecast residual catches; the MIT-BIH excerpt's single "
            "labelled stretch is an abnormal beat whose samples are each predictable from the ones just before, "
            "so the per-point residual hardly separates it (every R peak scores high too).\n")
    heading = "### detect (GRU residual x first difference, label-free default threshold)\n\n"
    return heading + "\n".join(parts) + "\n" + note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/tasks-results")
    ap.add_argument("--results-md", default="RESULTS.md")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    sections = [classify_section(out), detect_section(out)]  # forecast: benchmarks/forecast_results.py
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with "
               f"{torch.get_num_threads()} thread(s) at the end, "
               f"{time.perf_counter() - t0:.0f} s in all")
    body = (f"Made by `PYTHONPATH=src python benchmarks/tasks_results.py` ({machine}). Every run uses the task's "
            "default settings; MASE divides by the in-sample MAE of the one-step (seasonal) naive forecast on the "
            "training part, so below 1 beats it.\n\n" + "\n".join(sections))
    replace_section(args.results_md, "tasks", "## Tasks on real data: forecast, classify, detect", body)
    print(body)


if __name__ == "__main__":
    main()
