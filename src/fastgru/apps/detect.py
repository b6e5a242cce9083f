"""`detect`: anomaly detection on a series — model the normal behaviour, score every point, flag outliers.

A GRU learns to forecast the next step from the `window` steps before it on the training part: the
first `train_size` steps, the steps up to `train_until` (a time stamp), or the first `train_fraction`
(its last fifth is held out for early stopping). Every later point gets a forecast residual
r_t = x_t - forecast_t, turned into a robust z-score with the median and the MAD of the residuals on
the training part (so a few anomalies there do not inflate the scale); the first difference
d_t = x_t - x_{t-1} gets the same treatment:

    z_t = (r_t - median(r_train)) / (1.4826 * MAD(r_train)),   u_t = the same for d_t
    score_t = sqrt(|z_t| * |u_t|)   (score="combined", default; max over columns)
    score_t = |z_t|                  (score="residual")

The combined score is high only where the GRU's forecast misses *and* the step is unusual, which
removes the GRU's false alarms at steps it finds hard but that move normally (see RESULTS.md).
It is optionally averaged over `smooth` neighbouring points; a point is flagged when score_t > threshold.

Label-free default threshold: 1.5 times the 99th percentile of the training part's scores. A quantile,
not the maximum, so that a few anomalies inside the training part do not raise it; the margin 1.5
because in-sample scores run lower than scores on new data. Chosen on mitdb, yahoo and
UCR InternalBleeding16 over three seeds (RESULTS.md), where it matched or beat the maximum, other
quantiles and other margins for both the GRU and the baseline.

Beside the GRU, a baseline with no model is scored the same way: score |u_t| (robust z-score of the
first difference), with its own threshold by the same rule from its own training-part scores.
With labels (a 0/1 column), precision, recall and F1 of the flags are reported per point, together with
the share of labelled anomalous segments that got at least one flag ("events found"), and the best F1
any threshold would have given (an upper bound, to judge the threshold).

Outputs in `out_dir`: scores.csv (time, values, forecast, residual, score, flag[, label]), detect.png
(the series with flags, the score with the threshold), metrics.json, history.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fastgru.apps.common import add_model_args, check_outputs, comma_list, default_out, format_table, write_csv
from fastgru.apps.data.series import Series, load_series
from fastgru.apps.data.tabular import DataFileError, check_enough_rows
from fastgru.apps.data.windows import Scaler, origins
from fastgru.apps.forecasting.window_forecaster import Forecaster, training_windows
from fastgru.apps.plots.heatmap import save_figure
from fastgru.io import atomic
from fastgru.train import TrainConfig, Trainer, seed_everything
from fastgru.train.models import build_model

OUTPUTS = ("scores.csv", "detect.png", "metrics.json", "history.json")
MAD_TO_SD = 1.4826022185056018  # 1 / Phi^-1(3/4): MAD of a normal distribution times this = its sd


def robust_z(residuals: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(r - median(ref)) / (1.4826 MAD(ref)) per column; a zero MAD falls back to the standard deviation."""
    med = np.median(reference, axis=0)
    mad = MAD_TO_SD * np.median(np.abs(reference - med), axis=0)
    sd = reference.std(axis=0)
    scale = np.where(mad > 0, mad, np.where(sd > 0, sd, 1.0))
    return (residuals - med) / scale


def point_metrics(flags: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of 0/1 flags against 0/1 labels (per point); 0 where undefined."""
    tp = int(np.sum((flags == 1) & (labels == 1)))
    fp = int(np.sum((flags == 1) & (labels == 0)))
    fn = int(np.sum((flags == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of 1s."""
    padded = np.r_[0, labels.astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The best per-point F1 any threshold gives (flag = score > threshold), and such a threshold."""
    ok = np.isfinite(scores)
    scores, labels = scores[ok], labels[ok]
    total = int(labels.sum())
    if total == 0:
        return 0.0, float("inf")
    order = np.argsort(-scores, kind="stable")
    s, lab = scores[order], labels[order]
    tp = np.cumsum(lab)
    k = np.arange(1, len(s) + 1)
    # a threshold between s[i] and s[i+1] flags exactly the first i+1 points; ties cannot be split
    valid = np.r_[s[:-1] > s[1:], True]
    f1 = np.where(valid, 2 * tp / (k + total), -1.0)
    i = int(np.argmax(f1))
    thr = (s[i] + s[i + 1]) / 2 if i + 1 < len(s) else s[i] - 1.0
    return float(f1[i]), float(thr)


SCORES = ("combined", "residual")
DEFAULT_RULE = "1.5 x the 99th percentile of the training part's scores"


def default_threshold(train_scores: np.ndarray) -> float:
    """The label-free threshold: 1.5 times the 99th percentile of the training part's (finite) scores."""
    finite = train_scores[np.isfinite(train_scores)]
    if len(finite) == 0:
        raise DataFileError("the training part has no scored points; give a longer training part")
    return float(1.5 * np.quantile(finite, 0.99)) or 1e-12


def difference_z(values: np.ndarray, train_end: int) -> np.ndarray:
    """Robust z-score of the first difference per column (NaN at step 0), scaled on the training part."""
    d = np.diff(values, axis=0)
    return np.r_[np.full((1, values.shape[1]), np.nan), robust_z(d, d[: train_end - 1])]


def training_end(s: Series, train_fraction: float, train_size: int | None, train_until: str | None) -> int:
    """Steps in the training part: `train_size`, else the steps stamped <= `train_until`, else a fraction."""
    n = len(s)
    if train_size is not None and train_until is not None:
        raise DataFileError("give either --train-size or --train-until, not both")
    if train_size is not None:
        if not 0 < train_size < n:
            raise DataFileError(f"--train-size must lie between 1 and {n - 1} (the series has {n} steps), "
                                f"got {train_size}")
        return int(train_size)
    if train_until is not None:
        if s.time is None:
            raise DataFileError("--train-until needs a time column (--time-column); use --train-size for a count")
        t = s.time_axis()
        try:
            limit = np.datetime64(pd.Timestamp(train_until)) if np.issubdtype(t.dtype, np.datetime64) \
                else float(train_until)
        except (ValueError, TypeError) as exc:
            raise DataFileError(f"--train-until {train_until!r} is not a time like the time column's "
                                f"({t[0]!s})") from exc
        end = int(np.sum(t <= limit))
        if not 0 < end < n:
            raise DataFileError(f"--train-until {train_until!r} leaves {end} of {n} steps for training; "
                                f"the time column runs from {t[0]!s} to {t[-1]!s}")
        return end
    return int(n * train_fraction)


def _evaluate(lab: np.ndarray, fl: np.ndarray, sc: np.ndarray) -> dict[str, Any]:
    m: dict[str, Any] = point_metrics(fl, lab)
    segs = segments(lab)
    m["events"] = len(segs)
    m["events_found"] = sum(1 for a, b in segs if fl[a:b].any())
    m["best_f1"], m["best_threshold"] = best_f1(sc, lab)
    rate = lab.mean()
    m["random_flag_f1"] = float(2 * rate / (1 + rate)) if rate > 0 else 0.0  # flag everything
    return m


def detect(
    data: str | Path = "mitdb",
    columns: Sequence[str] | None = None,
    *,
    label_column: str | None = None,
    time_column: str | None = None,
    nan: str | None = None,
    window: int = 32,
    train_fraction: float = 0.5,
    train_size: int | None = None,
    train_until: str | None = None,
    threshold: float | None = None,
    score: str = "combined",
    smooth: int = 1,
    cell: str = "gru",
    hidden_size: int = 32,
    num_layers: int = 1,
    dropout: float = 0.0,
    epochs: int = 30,
    patience: int = 5,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    series: Series | None = None,
) -> dict[str, Any]:
    """Score every point of `data` by its forecast residual; flag scores above `threshold`."""
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("detect")
    s = series if series is not None else load_series(data, columns, time_column=time_column,
                                                      label_column=label_column, nan=nan)
    if not 0 < train_fraction < 1:
        raise DataFileError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    if (threshold is not None and threshold <= 0) or smooth < 1 or window < 1:
        raise DataFileError(f"threshold must be > 0, smooth and window >= 1; got {threshold}, {smooth}, {window}")
    if score not in SCORES:
        raise DataFileError(f"score must be one of {SCORES}, got {score!r}")
    n = len(s)
    train_end = training_end(s, train_fraction, train_size, train_until)
    fit_end = train_end - max(1, (train_end - window) // 5)
    check_enough_rows(n, window, 1, 10, s.source)
    check_enough_rows(fit_end, window, 1, 5, s.source, what=" in its training part (--train-fraction)")
    out = check_outputs(out, OUTPUTS, overwrite)

    values = s.values.to_numpy(np.float64)
    cols = list(range(values.shape[1]))
    scaler = Scaler.fit(values[:train_end])
    scaled = scaler.transform(values)
    train = training_windows(scaled, origins(0, fit_end, window, 1), window, 1, cols)
    val = training_windows(scaled, origins(fit_end, train_end, window, 1), window, 1, cols)
    seed_everything(seed)
    model = build_model(cell=cell, input_size=len(cols), hidden_size=hidden_size, num_layers=num_layers,
                        dropout=dropout, output_size=len(cols), head="regression")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed, out_dir=str(out),
                      checkpoint_every=0, progress=progress)
    history = Trainer(model, cfg).fit(train, val)

    starts = np.arange(window, n)
    pred = Forecaster(model, scaler, window, 1, cols).predict(values, starts)[:, 0, :]
    resid = values[window:] - pred
    z = np.abs(robust_z(resid / scaler.std, resid[: train_end - window] / scaler.std))
    u = np.abs(difference_z(values, train_end))[window:]
    point = np.sqrt(z * u).max(axis=1) if score == "combined" else z.max(axis=1)
    base = u.max(axis=1)
    if smooth > 1:
        point = pd.Series(point).rolling(smooth, center=True, min_periods=1).mean().to_numpy()
        base = pd.Series(base).rolling(smooth, center=True, min_periods=1).mean().to_numpy()
    full_score = np.r_[np.full(window, np.nan), point]
    base_score = np.r_[np.full(window, np.nan), base]
    threshold_rule = "given" if threshold is not None else DEFAULT_RULE
    if threshold is None:
        threshold = default_threshold(full_score[window:train_end])
    base_threshold = default_threshold(base_score[window:train_end])
    flags = np.r_[np.zeros(window, np.int64), (point > threshold).astype(np.int64)]
    base_flags = np.r_[np.zeros(window, np.int64), (base > base_threshold).astype(np.int64)]

    frame = pd.DataFrame({"time": s.time_axis()})
    for j, c in enumerate(s.columns):
        frame[c] = values[:, j]
        frame[f"{c}_forecast"] = np.r_[np.full(window, np.nan), pred[:, j]]
        frame[f"{c}_residual"] = np.r_[np.full(window, np.nan), resid[:, j]]
    frame["score"] = full_score
    frame["flag"] = flags
    frame["baseline_score"] = base_score
    frame["baseline_flag"] = base_flags
    frame["part"] = np.where(np.arange(n) < train_end, "train", "score")
    result: dict[str, Any] = {
        "task": "detect", "data": s.name, "source": s.source, "description": s.description, "columns": s.columns,
        "steps": n, "window": window, "train_steps": train_end, "threshold": threshold,
        "threshold_rule": threshold_rule, "score": score, "smooth": smooth,
        "baseline": {"name": "robust z-score of the first difference", "threshold": base_threshold,
                     "threshold_rule": DEFAULT_RULE, "flagged": int(base_flags.sum())},
        "flagged": int(flags.sum()), "flagged_after_training_part": int(flags[train_end:].sum()),
        "best_epoch": history["best_epoch"], "epochs_run": len(history["epochs"]),
        "num_parameters": history["num_parameters"], "data_read": s.extra.get("read"),
        "settings": {"cell": cell, "hidden_size": hidden_size, "epochs": epochs, "patience": patience,
                     "batch_size": batch_size, "lr": lr, "seed": seed},
    }
    if s.labels is not None:
        frame["label"] = s.labels
        result["labels"] = int(s.labels.sum())
        result["evaluation"] = {}
        result["baseline"]["evaluation"] = {}
        for part, sl in (("all scored points", slice(window, n)), ("after the training part", slice(train_end, n))):
            result["evaluation"][part] = _evaluate(s.labels[sl], flags[sl], full_score[sl])
            result["baseline"]["evaluation"][part] = _evaluate(s.labels[sl], base_flags[sl], base_score[sl])
    write_csv(frame, out / "scores.csv")
    _plot(s, values, full_score, flags, threshold, train_end, out / "detect.png")
    result["seconds"] = time.perf_counter() - t_start
    result["outputs"] = {k: str(out / k) for k in OUTPUTS}
    atomic.write_json(out / "metrics.json", result)
    return result


def _plot(s: Series, values: np.ndarray, score: np.ndarray, flags: np.ndarray, threshold: float, train_end: int,
          path: Path) -> Path:
    t = s.time_axis()
    fig = Figure(figsize=(12, 5.5), constrained_layout=True)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    for j, c in enumerate(s.columns):
        ax1.plot(t, values[:, j], lw=0.7, label=c)
    pad = max(1, len(t) // 400)  # a one-point anomaly still shows as a band of a few pixels
    bands = [(t[max(a - pad, 0)], t[min(b + pad, len(t) - 1)]) for a, b in segments(s.labels)] \
        if s.labels is not None else []
    for i, (lo, hi) in enumerate(bands):
        ax1.axvspan(lo, hi, color="tab:orange", alpha=0.35, lw=0, label="labelled anomaly" if i == 0 else None)
    f = np.flatnonzero(flags)
    if len(f):
        ax1.scatter(t[f], values[f, 0], color="tab:red", s=10, zorder=3, label=f"flagged ({len(f)})")
    ax1.axvline(t[train_end], color="0.3", ls=":", lw=1)
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_ylabel("value")
    ax1.set_title(f"{s.name}: anomaly scores (left of the dotted line: training part)")
    for lo, hi in bands:
        ax2.axvspan(lo, hi, color="tab:orange", alpha=0.35, lw=0)
    floor = max(threshold / 100, 1e-3)
    ax2.plot(t, np.clip(score, floor, None), lw=0.7, color="tab:purple", label="score")
    ax2.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax2.axvline(t[train_end], color="0.3", ls=":", lw=1)
    ax2.set_yscale("log")
    ax2.set_ylabel("score (log)")
    ax2.set_xlabel("time" if s.time is not None else "step")
    ax2.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru detect`."""
    p = subparsers.add_parser("detect", help="anomaly detection: forecast residuals, robust z-scores, flags",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mitdb",
                   help="built-in series (mitdb: labelled ECG; yahoo: a Yahoo S5 series with 7 labelled point "
                        "anomalies; both need sktime installed; sunspots, co2, nile, macrodata) or a "
                        "CSV/TSV/Parquet file")
    p.add_argument("--columns", help="comma-separated value columns (default: the built-in's / all numeric)")
    p.add_argument("--label-column", help="column of 0/1 anomaly labels, for precision/recall/F1")
    p.add_argument("--time-column", help="column with the time stamps")
    p.add_argument("--nan", choices=("error", "drop", "ffill", "interpolate", "zero"), default=None,
                   help="what to do with missing values (default: stop with a message)")
    p.add_argument("--window", type=int, default=32, help="past steps the forecaster reads (default 32)")
    p.add_argument("--train-fraction", type=float, default=0.5,
                   help="first part of the series that models normal behaviour (default 0.5)")
    p.add_argument("--train-size", type=int, help="the first N steps are the (normal) training part")
    p.add_argument("--train-until", help="steps stamped up to this time are the training part (needs --time-column)")
    p.add_argument("--threshold", type=float, default=None,
                   help="flag points scoring above this (default: 1.5 x the 99th percentile of the training "
                        "part's scores, no labels needed)")
    p.add_argument("--score", choices=SCORES, default="combined",
                   help="combined (default): sqrt(|z residual| x |z first difference|); residual: |z residual|")
    p.add_argument("--smooth", type=int, default=1, help="average the score over this many points (default 1)")
    add_model_args(p, hidden=32, epochs=30, patience=5, lr=3e-3, batch_size=64)
    p.set_defaults(func=run_from_args, task="detect")
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    result = detect(
        args.data, comma_list(args.columns), label_column=args.label_column, time_column=args.time_column, nan=args.nan,
        window=args.window, train_fraction=args.train_fraction, train_size=args.train_size,
        train_until=args.train_until, threshold=args.threshold, score=args.score, smooth=args.smooth,
        cell=args.cell, hidden_size=args.hidden_size, num_layers=args.num_layers, dropout=args.dropout,
        epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        out_dir=args.out, overwrite=args.force, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"\ndetect: {result['data']} ({result['description']})")
    print(f"{result['steps']} steps, window {result['window']}, trained on the first {result['train_steps']}; "
          f"threshold {result['threshold']:.3g} ({result['threshold_rule']}): {result['flagged']} points flagged; "
          f"baseline: {result['baseline']['flagged']}\n")
    if "evaluation" in result:
        rows = []
        for part, m in result["evaluation"].items():
            b = result["baseline"]["evaluation"][part]
            for who, e in ((f"GRU ({result['score']})", m), ("first-difference baseline", b)):
                rows.append([part, who, e["precision"], e["recall"], e["f1"], f"{e['events_found']}/{e['events']}",
                             e["best_f1"], e["random_flag_f1"]])
        print(format_table(rows, ["points", "detector", "precision", "recall", "F1", "events found",
                                  "best F1 (any thr.)", "F1 flag-all"]))
    print(f"\nwrote {result['outputs']['scores.csv']}, {result['outputs']['detect.png']}, "
          f"{result['outputs']['metrics.json']} ({result['seconds']:.1f} s)")

