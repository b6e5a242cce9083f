"""Accuracy of `fastgru classify` on UCR/UEA sets beside 1-NN DTW and MiniRocket (sktime), same split.

Every set is used with the archive's own train/test split and `classify`'s default settings; each
(set, seed) run trains the convolutional GRU with that seed. The peers run on the same series: 1-NN
DTW once per set (it has no randomness), MiniRocket once per seed (its kernels' biases are drawn from
the training data). Results are appended to a JSON-lines file as they come, so an interrupted run
resumes where it stopped; ``--markdown`` prints the table for RESULTS.md.

``--set KEY=VALUE`` overrides a default of `classify` (e.g. ``--set slice_ratio=1.0``) and ``--label``
names the variant, which is how the ablations in RESULTS.md were run.

    python benchmarks/classify_results.py --seeds 0,1,2 --out classify_runs.jsonl
    python benchmarks/classify_results.py --out classify_runs.jsonl --markdown
    python benchmarks/classify_results.py --sets gunpoint,arrowhead --seeds 0 --no-peers \\
        --label no-slicing --set slice_ratio=1.0 --out ablation.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from fastgru.apps.classify import classify
from fastgru.apps.classify_peers import score_peers
from fastgru.apps.data.sequences import load_ucr

SETS = ("arrowhead", "gunpoint", "italy_power_demand", "osuleaf", "basic_motions", "japanese_vowels")


def _runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def run(sets: list[str], seeds: list[int], overrides: dict, label: str, peers: bool, out: Path) -> None:
    done = {(r["set"], r["seed"], r["method"], r["label"]) for r in _runs(out)}
    for name in sets:
        ds = load_ucr(name)
        classes = ds.classes
        y_train = np.array([classes.index(c) for c in ds.train_y])
        y_test = np.array([classes.index(c) for c in ds.test_y])
        for seed in seeds:
            if (name, seed, "ConvGRU", label) not in done:
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.process_time()
                    r = classify(name, seed=seed, out_dir=tmp, peers=False, **overrides)
                    m = r["metrics"][r["model"]]
                    _append(out, {"set": name, "seed": seed, "method": "ConvGRU", "label": label,
                                  "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "wall_s": r["seconds"],
                                  "cpu_s": time.process_time() - t0, "best_epoch": r["best_epoch"],
                                  "val_sequences": r["val_sequences"], "refit": r["refit"], "overrides": overrides})
                    print(name, seed, label, f"{m['accuracy']:.3f}", f"{r['seconds']:.0f}s", flush=True)
            if not peers:
                continue
            which = [p for p in ("1-NN DTW", "MiniRocket")
                     if (name, seed if p == "MiniRocket" else 0, p, "peer") not in done
                     and (p == "MiniRocket" or seed == 0)]
            if which:
                res = score_peers(ds.train_x, y_train, ds.test_x, seed=seed, which=which)
                if res["note"] and not res["predictions"]:
                    sys.exit(res["note"])
                for p, pred in res["predictions"].items():
                    _append(out, {"set": name, "seed": seed if p == "MiniRocket" else 0, "method": p, "label": "peer",
                                  "accuracy": float((pred == y_test).mean()), "wall_s": res["seconds"][p]})
                    done.add((name, seed if p == "MiniRocket" else 0, p, "peer"))
                    print(name, seed, p, f"{(pred == y_test).mean():.3f}", flush=True)


def markdown(out: Path) -> str:
    rows = _runs(out)
    acc: dict = defaultdict(list)
    for r in rows:
        key = r["method"] if r["label"] == "peer" else f"{r['method']} [{r['label']}]"
        acc[(r["set"], key)].append(r["accuracy"])
    methods = sorted({k for _, k in acc}, key=lambda k: (k in ("1-NN DTW", "MiniRocket"), k))
    sets = [s for s in SETS if any((s, m) in acc for m in methods)] + sorted(
        {s for s, _ in acc} - set(SETS))
    lines = ["| set | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    means = defaultdict(list)
    for s in sets:
        cells = []
        for m in methods:
            a = acc.get((s, m))
            if not a:
                cells.append("")
                continue
            means[m].append(np.mean(a))
            sd = f" ± {np.std(a, ddof=1):.3f}" if len(a) > 1 else ""
            cells.append(f"{np.mean(a):.3f}{sd} (n={len(a)})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{np.mean(means[m]):.3f}**" if len(means[m]) == len(sets) else ""
                                             for m in methods) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a classify default")
    ap.add_argument("--label", default="default")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--out", default="classify_runs.jsonl")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per run (1: runs stay comparable on a shared machine)")
    ap.add_argument("--markdown", action="store_true", help="print the table of what --out holds and stop")
    args = ap.parse_args()
    out = Path(args.out)
    if args.markdown:
        print(markdown(out))
        return
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, python {platform.python_version()}", flush=True)
    run(args.sets.split(","), [int(s) for s in args.seeds.split(",")], overrides, args.label, not args.no_peers, out)


if __name__ == "__main__":
    main()
