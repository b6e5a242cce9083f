"""`detect`: anomaly detection on a series — model the normal behaviour, score every point, flag outliers.

A GRU learns to forecast the next step from the `window` steps before it on the first part of the
series (`train_fraction`; its last fifth is held out for early stopping). Every later point gets a
forecast residual r_t = x_t - forecast_t, turned into a robust z-score with the median and the MAD of
the residuals on the training part (so a few anomalies there do not inflate the scale):

    z_t = (r_t - median(r_train)) / (1.4826 * MAD(r_train)),   score_t = max over columns |z_t|

optionally averaged over `smooth` neighbouring points; a point is flagged when score_t > threshold.
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

from .. import atomic
from ..data.series import Series, load_series
from ..data.tabular import DataFileError, check_enough_rows
from ..data.windows import Scaler, origins
from ..models import build_model
from ..train import TrainConfig, Trainer, seed_everything
from ..viz.heatmap import save_figure
from ._common import check_outputs, default_out, format_table, write_csv
from .forecast import Forecaster, _list, _training_windows, add_model_args

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


def detect(
    data: str | Path = "mitdb",
    columns: Sequence[str] | None = None,
    *,
    label_column: str | None = None,
    time_column: str | None = None,
    nan: str | None = None,
    window: int = 32,
    train_fraction: float = 0.5,
    threshold: float = 4.0,
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
    if threshold <= 0 or smooth < 1 or window < 1:
        raise DataFileError(f"threshold must be > 0, smooth and window >= 1; got {threshold}, {smooth}, {window}")
    n = len(s)
    train_end = int(n * train_fraction)
    fit_end = train_end - max(1, (train_end - window) // 5)
    check_enough_rows(n, window, 1, 10, s.source)
    check_enough_rows(fit_end, window, 1, 5, s.source, what=" in its training part (--train-fraction)")
    out = check_outputs(out, OUTPUTS, overwrite)

    values = s.values.to_numpy(np.float64)
    cols = list(range(values.shape[1]))
    scaler = Scaler.fit(values[:train_end])
    scaled = scaler.transform(values)
    train = _training_windows(scaled, origins(0, fit_end, window, 1), window, 1, cols)
    val = _training_windows(scaled, origins(fit_end, train_end, window, 1), window, 1, cols)
    seed_everything(seed)
    model = build_model(cell=cell, input_size=len(cols), hidden_size=hidden_size, num_layers=num_layers,
                        dropout=dropout, output_size=len(cols), head="regression")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed, out_dir=str(out),
                      checkpoint_every=0, progress=progress)
    history = Trainer(model, cfg).fit(train, val)

    starts = np.arange(window, n)
    pred = Forecaster(model, scaler, window, 1, cols).predict(values, starts)[:, 0, :]
    resid = values[window:] - pred
    z = robust_z(resid / scaler.std, resid[: train_end - window] / scaler.std)
    score = np.abs(z).max(axis=1)
    if smooth > 1:
        score = pd.Series(score).rolling(smooth, center=True, min_periods=1).mean().to_numpy()
    full_score = np.r_[np.full(window, np.nan), score]
    flags = np.r_[np.zeros(window, np.int64), (score > threshold).astype(np.int64)]

    frame = pd.DataFrame({"time": s.time_axis()})
    for j, c in enumerate(s.columns):
        frame[c] = values[:, j]
        frame[f"{c}_forecast"] = np.r_[np.full(window, np.nan), pred[:, j]]
        frame[f"{c}_residual"] = np.r_[np.full(window, np.nan), resid[:, j]]
    frame["score"] = full_score
    frame["flag"] = flags
    frame["part"] = np.where(np.arange(n) < train_end, "train", "score")
    result: dict[str, Any] = {
        "task": "detect", "data": s.name, "source": s.source, "description": s.description, "columns": s.columns,
        "steps": n, "window": window, "train_steps": train_end, "threshold": threshold, "smooth": smooth,
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
        for part, sl in (("all scored points", slice(window, n)), ("after the training part", slice(train_end, n))):
            lab, fl, sc = s.labels[sl], flags[sl], full_score[sl]
            m = point_metrics(fl, lab)
            segs = segments(lab)
            m["events"] = len(segs)
            m["events_found"] = sum(1 for a, b in segs if fl[a:b].any())
            m["best_f1"], m["best_threshold"] = best_f1(sc, lab)
            rate = lab.mean()
            m["random_flag_f1"] = float(2 * rate / (1 + rate)) if rate > 0 else 0.0  # flag everything
            result["evaluation"][part] = m
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
    if s.labels is not None:
        for a, b in segments(s.labels):
            ax1.axvspan(t[a], t[min(b, len(t) - 1)], color="tab:orange", alpha=0.25, lw=0,
                        label="labelled anomaly" if a == segments(s.labels)[0][0] else None)
    f = np.flatnonzero(flags)
    if len(f):
        ax1.scatter(t[f], values[f, 0], color="tab:red", s=10, zorder=3, label=f"flagged ({len(f)})")
    ax1.axvline(t[train_end], color="0.3", ls=":", lw=1)
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"{s.name}: forecast-residual anomaly scores (left of the dotted line: training part)")
    ax2.plot(t, score, lw=0.7, color="tab:purple", label="robust z-score of the residual")
    ax2.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax2.set_yscale("symlog", linthresh=max(threshold, 1.0))
    ax2.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru detect`."""
    p = subparsers.add_parser("detect", help="anomaly detection: forecast residuals, robust z-scores, flags",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mitdb",
                   help="built-in series (mitdb: labelled ECG, needs sktime installed; sunspots, co2, nile, "
                        "macrodata) or a CSV/TSV/Parquet file")
    p.add_argument("--columns", help="comma-separated value columns (default: the built-in's / all numeric)")
    p.add_argument("--label-column", help="column of 0/1 anomaly labels, for precision/recall/F1")
    p.add_argument("--time-column", help="column with the time stamps")
    p.add_argument("--nan", choices=("error", "drop", "ffill", "interpolate", "zero"), default=None,
                   help="what to do with missing values (default: stop with a message)")
    p.add_argument("--window", type=int, default=32, help="past steps the forecaster reads (default 32)")
    p.add_argument("--train-fraction", type=float, default=0.5,
                   help="first part of the series that models normal behaviour (default 0.5)")
    p.add_argument("--threshold", type=float, default=4.0, help="flag points whose robust z-score exceeds this")
    p.add_argument("--smooth", type=int, default=1, help="average the score over this many points (default 1)")
    add_model_args(p, hidden=32, epochs=30, patience=5, lr=3e-3, batch_size=64)
    p.set_defaults(func=run_from_args, task="detect")
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    result = detect(
        args.data, _list(args.columns), label_column=args.label_column, time_column=args.time_column, nan=args.nan,
        window=args.window, train_fraction=args.train_fraction, threshold=args.threshold, smooth=args.smooth,
        cell=args.cell, hidden_size=args.hidden_size, num_layers=args.num_layers, dropout=args.dropout,
        epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        out_dir=args.out, overwrite=args.force, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"\ndetect: {result['data']} ({result['description']})")
    print(f"{result['steps']} steps, window {result['window']}, trained on the first {result['train_steps']}; "
          f"threshold {result['threshold']:g}: {result['flagged']} points flagged\n")
    if "evaluation" in result:
        rows = [[part, m["precision"], m["recall"], m["f1"], f"{m['events_found']}/{m['events']}", m["best_f1"],
                 m["random_flag_f1"]] for part, m in result["evaluation"].items()]
        print(format_table(rows, ["points", "precision", "recall", "F1", "events found", "best F1 (any thr.)",
                                  "F1 flag-all"]))
    print(f"\nwrote {result['outputs']['scores.csv']}, {result['outputs']['detect.png']}, "
          f"{result['outputs']['metrics.json']} ({result['seconds']:.1f} s)")

