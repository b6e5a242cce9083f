"""Detect at its label-free default threshold vs the first-difference baseline at its own, three seeds.

Series: mitdb and yahoo (sktime's data files) and UCR InternalBleeding16 (KDD-TSAD 135, aeon's data
files; its first 1,200 steps are normal by construction, so --train-size 1200). Scored on the points
after the training part. Writes the detect section of RESULTS.md between its markers.

    python benchmarks/detect_results.py [--seeds 0 1 2] [--no-write]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from fastgru.apps.common import format_table
from fastgru.apps.data.series import load_series, package_data_dir
from fastgru.apps.detect import DEFAULT_RULE, detect

BEGIN, END = "<!-- detect-results:begin -->", "<!-- detect-results:end -->"
KDD = "KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv"


def series() -> list[tuple[str, dict]]:
    out = [("mitdb", {"data": "mitdb"}), ("yahoo", {"data": "yahoo"})]
    aeon = package_data_dir("aeon")
    if aeon is not None and (aeon / KDD).exists():
        out.append(("UCR InternalBleeding16", {"data": aeon / KDD, "columns": ["value"],
                                               "label_column": "is_anomaly", "train_size": 1200}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, kw in series():
        kw = dict(kw)
        s = load_series(kw.pop("data"), kw.pop("columns", None), label_column=kw.pop("label_column", None))
        gru, base, best = [], [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = detect(series=s, seed=seed, out_dir=tmp, **kw)
            ev, bev = r["evaluation"]["after the training part"], r["baseline"]["evaluation"]["after the training part"]
            gru.append(ev["f1"]), base.append(bev["f1"]), best.append(ev["best_f1"])
            print(name, seed, round(ev["f1"], 3), round(bev["f1"], 3), flush=True)
        rows.append([name, len(s), r["train_steps"], int(s.labels[r["train_steps"]:].sum()),
                     f"{np.mean(gru):.3f} ({' / '.join(f'{v:.3f}' for v in gru)})", f"{base[0]:.3f}",
                     f"{np.mean(gru) - base[0]:+.3f}", f"{np.mean(best):.3f}"])
    table = format_table(rows, ["series", "steps", "training part", "anomalous points scored",
                                "GRU F1 at default threshold, mean (seeds)", "baseline F1", "GRU - baseline",
                                "GRU best F1 (any threshold)"], markdown=True)
    text = (f"{BEGIN}\n## detect: label-free default threshold vs the first-difference baseline\n\n"
            f"`python benchmarks/detect_results.py --seeds {' '.join(map(str, args.seeds))}` "
            f"(defaults: window 32, hidden 32, score combined; torch {torch.__version__}, "
            f"{platform.machine()}, CPU). Threshold rule for both detectors: {DEFAULT_RULE}. "
            "Per-point F1 on the points after the training part. The baseline has no model, so one value.\n\n"
            f"{table}\n{END}")
    print(text)
    if not args.no_write:
        path = Path(__file__).resolve().parents[1] / "RESULTS.md"
        old = path.read_text() if path.exists() else ""
        if BEGIN in old and END in old:
            new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END):]
        else:
            new = old.rstrip() + "\n\n" + text + "\n"
        path.write_text(new)


if __name__ == "__main__":
    main()
