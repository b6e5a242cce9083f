"""`demo`: what fastgru does, on built-in real data, with no arguments, in a few minutes on 2 CPU cores.

1. forecast: 12-year forecasts of the yearly sunspot number (1700-2008) with a GRU, scored on the
   held-out last 46 years against the naive and seasonal-naive forecasts (table + plot);
2. compare (when the compare task is installed): GRU vs LSTM vs tanh RNN with Chung et al. 2014's
   model sizes on JSB Chorales, one seed, at most 150 epochs with early stopping (a minute or two; the
   full reproduction with several seeds is `fastgru compare`), table + learning curves.

Everything goes under --out (default ./fastgru-out/demo): forecast/ and compare/.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any

from fastgru.apps.common import check_outputs, default_out, format_table
from fastgru.apps.forecast import forecast
from fastgru.apps.forecast import print_result as print_forecast

COMPARE_OUTPUTS = ("results.json", "summary.csv", "table.md", "curves.png")


def demo(out_dir: str | Path | None = None, *, overwrite: bool = False, progress: bool = False,
         compare_chorales: int | None = None, compare_epochs: int = 150, seed: int = 0) -> dict[str, Any]:
    """Run the forecast demo and (when available) a short compare; print tables; return both results."""
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("demo")
    try:
        compare = importlib.import_module("fastgru.apps.compare")
    except ImportError:
        compare = None
    if compare is not None:  # check both output sets before any training
        check_outputs(out / "compare", COMPARE_OUTPUTS, overwrite)
    results: dict[str, Any] = {}
    print("fastgru demo 1/2: forecast the yearly sunspot number with a GRU (built-in data, 1700-2008)")
    results["forecast"] = forecast("sunspots", out_dir=out / "forecast", overwrite=overwrite, progress=progress,
                                   seed=seed)
    print_forecast(results["forecast"])
    if compare is None:
        print("\n(the compare task is not installed here: skipped)")
    else:
        part = "all chorales" if compare_chorales is None else f"{compare_chorales} chorales per split"
        print(f"\nfastgru demo 2/2: GRU vs LSTM vs tanh RNN on JSB Chorales ({part}, one seed, at most "
              f"{compare_epochs} epochs; the paper's setting with several seeds is `fastgru compare`)")
        data = compare.jsb_data(limit=compare_chorales)
        res = compare.run_compare(data, out / "compare", seeds=(seed,), epochs=compare_epochs,
                                  patience=15, progress=progress)
        results["compare"] = res
        print()
        print(compare.markdown_table(res["summary"], data))
    seconds = time.perf_counter() - t0
    results["seconds"] = seconds
    rows = [["forecast plot", str(out / "forecast" / "forecast.png")],
            ["forecast table", str(out / "forecast" / "forecast.csv")]]
    if compare is not None:
        rows += [["compare curves", str(out / "compare" / "curves.png")],
                 ["compare table", str(out / "compare" / "table.md")]]
    print("\n" + format_table(rows, ["output", "path"]))
    print(f"\ndemo finished in {seconds:.0f} s")
    return results


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru demo`."""
    p = subparsers.add_parser("demo", help="forecast + short GRU/LSTM/RNN compare on built-in real data",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chorales", type=int, default=None, help="JSB chorales per split in the compare (default: all)")
    p.add_argument("--compare-epochs", type=int, default=150, help="most epochs of the compare (default 150)")
    p.set_defaults(func=run_from_args, task="demo")
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return demo(args.out, overwrite=args.force, progress=args.progress, compare_chorales=args.chorales,
                compare_epochs=args.compare_epochs, seed=args.seed)
