"""Measured runs of the forecast / detect / classify tasks for RESULTS.md (section `tasks`).

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

from fastgru.report import replace_section
from fastgru.tasks._common import format_table
from fastgru.tasks.classify import classify
from fastgru.tasks.detect import detect
from fastgru.tasks.forecast import forecast

SEEDS = (0, 1, 2)


def _ms(values: list[float]) -> str:
    m = statistics.mean(values)
    return f"{m:.3f} +- {statistics.stdev(values):.3f}" if len(values) > 1 else f"{m:.3f}"


def _against_naive(r: dict) -> str:
    return ", ".join(f"{abs(100 * v):.1f}% {'lower' if v > 0 else 'higher'} ({t})"
                     for v, t in zip(r["improvement_over_naive_mae"], r["targets"]))


def forecast_section(out: Path) -> str:
    parts = []
    for data in ("sunspots", "co2"):
        runs = [forecast(data, out_dir=out / f"forecast-{data}-seed{s}", overwrite=True, seed=s) for s in SEEDS]
        r0 = runs[0]
        rows = []
        for method in r0["metrics"]:
            for k, target in enumerate(r0["targets"]):
                vals = {m: [r["metrics"][method][m][k] for r in runs] for m in ("mae", "rmse", "mase")}
                rows.append([method, target, _ms(vals["mae"]), _ms(vals["rmse"]), _ms(vals["mase"])])
        margins = [100 * r["improvement_over_naive_mae"][0] for r in runs]
        sp = r0["split"]
        parts.append(
            f"**{data}** ({r0['description']}): {r0['steps']} steps, train/validation/test "
            f"{sp['train']}/{sp['val']}/{sp['test']}, window {r0['window']}, horizon {r0['horizon']}, "
            f"{r0['test_origins']} test origins (every step of the tail), {r0['num_parameters']} parameters. "
            f"Seeds {', '.join(map(str, SEEDS))} (baselines do not depend on the seed). "
            f"Command: `fastgru forecast --data {data} --seed S`.\n\n"
            + format_table(rows, ["method", "target", "MAE", "RMSE", "MASE"], markdown=True)
            + f"\n\nGRU MAE below naive by {', '.join(f'{m:.1f}%' for m in margins)} (seeds {SEEDS}); "
            f"{statistics.mean(r['seconds'] for r in runs):.1f} s per run.\n"
        )
    r = forecast("macrodata", out_dir=out / "forecast-macrodata", overwrite=True, seed=0)
    rows = [[m, t, mae, rmse, mase] for m, t, mae, rmse, mase in r["table"]]
    parts.append(
        f"**macrodata** (multivariate: {', '.join(r['columns'])} in, all three forecast; {r['steps']} quarters, "
        f"test {r['split']['test']}), seed 0. Command: `fastgru forecast --data macrodata`.\n\n"
        + format_table(rows, ["method", "target", "MAE", "RMSE", "MASE"], markdown=True)
        + f"\n\nGRU MAE against naive: {_against_naive(r)}. On these short quarterly series (143 training quarters) "
        "the GRU does not reliably beat the naive forecast.\n"
    )
    return "### forecast vs naive and seasonal-naive baselines\n\n" + "\n".join(parts)


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
            f"window {r['window']}, threshold {r['threshold']:g}; seed 0. Command: `fastgru detect --data {data}`."
            "\n\n" + format_table(rows, ["points", "precision", "recall", "F1", "events found",
                                         "best F1 (any threshold)", "F1 of flagging everything"], markdown=True) + "\n"
        )
    note = ("Point anomalies (yahoo) are what a one-step forecast residual catches; the MIT-BIH excerpt's single "
            "labelled stretch is an abnormal beat whose samples are each predictable from the ones just before, "
            "so the per-point residual hardly separates it (every R peak scores high too).\n")
    return "### detect (forecast residual, robust z-score)\n\n" + "\n".join(parts) + "\n" + note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/tasks-results")
    ap.add_argument("--results-md", default="RESULTS.md")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    sections = [forecast_section(out), classify_section(out), detect_section(out)]
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
