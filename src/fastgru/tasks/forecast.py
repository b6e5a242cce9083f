"""`forecast`: multi-step forecasting of a real series with a GRU, scored against naive baselines.

Steps: load the series (a built-in one or the user's CSV/Parquet, columns chosen by name) and check it;
split it in time order into train / validation / held-out test tail; standardise with the training
statistics; cut windows of `window` past steps -> `horizon` future steps; train a GRU (Trainer: Adam,
clipping, early stopping on the validation loss, best weights restored); then forecast from every origin
in the test tail and compare with

- naive: the last observed value, repeated over the horizon;
- seasonal naive: the value one season earlier (when the series has a season, e.g. 11 years of sunspots).

Metrics per target column in the series' own units: MAE, RMSE and MASE (Hyndman & Koehler 2006: MAE
divided by the in-sample MAE of the one-step (seasonal) naive forecast on the training part).

The network reads each window relative to its last value and predicts each future value as a change from
that last value (in standardised units), so a trending series (CO2) never shows it a level outside the
range it was trained on; ``inputs="level"`` feeds the standardised values themselves instead.

Outputs in `out_dir`: forecast.csv (the test tail forecast segment by segment, and the forecast past the
end of the data), forecast.png (history, truth, forecast), metrics.json, history.json, model/ (weights,
config and scaler, to reuse the model).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .. import atomic
from ..data.series import Series, load_series
from ..data.tabular import DataFileError, check_enough_rows
from ..data.windows import Scaler, make_windows, origins, time_split
from ..models import build_model
from ..train import SequenceData, TrainConfig, Trainer, seed_everything
from ..train.checkpoints import save_model
from ..viz.heatmap import save_figure
from ._common import check_outputs, default_out, format_table, write_csv

OUTPUTS = ("forecast.csv", "forecast.png", "metrics.json", "history.json")


def _seasonal_naive(y: np.ndarray, t: int, horizon: int, m: int) -> np.ndarray:
    """y[t+k - m*ceil((k+1)/m)] for k = 0..horizon-1: the last value seen one season before each target."""
    k = np.arange(horizon)
    idx = t + k - m * ((k // m) + 1)
    return y[idx]


def mase_scale(train: np.ndarray, m: int = 1) -> np.ndarray:
    """In-sample MAE of the one-step (seasonal, lag m) naive forecast on the training part, per column."""
    if len(train) <= m:
        raise DataFileError(f"the training part ({len(train)} steps) is too short for a season of {m}")
    scale = np.abs(train[m:] - train[:-m]).mean(axis=0)
    return np.where(scale > 0, scale, np.nan)


def _metrics(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """pred, truth: (N, horizon, K) -> per-column MAE, RMSE, MASE."""
    err = pred - truth
    mae = np.abs(err).mean(axis=(0, 1))
    rmse = np.sqrt((err**2).mean(axis=(0, 1)))
    return {"mae": mae, "rmse": rmse, "mase": mae / scale}


INPUT_MODES = ("relative", "level")


def model_inputs(scaled: np.ndarray, starts: np.ndarray, window: int, inputs: str) -> np.ndarray:
    """The network's input windows (N, window, F): standardised values, minus each window's last value
    when `inputs` is "relative" (so a level never seen in training, as in a trending series, looks
    familiar), as they are when "level"."""
    idx = np.asarray(starts)[:, None] + np.arange(-window, 0)[None, :]
    x = scaled[idx]
    if inputs == "relative":
        x = x - x[:, -1:, :]
    return x.astype(np.float32)


class Forecaster:
    """A trained forecaster: model + scaler + window settings; `predict(values, t)` forecasts from origin t."""

    def __init__(self, model: torch.nn.Module, scaler: Scaler, window: int, horizon: int, target_cols: list[int],
                 inputs: str = "relative"):
        self.model, self.scaler, self.window, self.horizon = model, scaler, window, horizon
        self.target_cols, self.inputs = target_cols, inputs

    def predict(self, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Forecasts (N, horizon, K) in the series' units for origins `starts` (inputs values[t-window:t])."""
        scaled = self.scaler.transform(values)
        out = []
        for chunk in np.array_split(np.asarray(starts), max(1, math.ceil(len(starts) / 512))):
            if len(chunk) == 0:
                continue
            x = torch.from_numpy(model_inputs(scaled, chunk, self.window, self.inputs))
            delta = self.model.predict(x).view(len(chunk), self.horizon, len(self.target_cols)).double().numpy()
            last = scaled[chunk - 1][:, self.target_cols]
            out.append(self.scaler.inverse(last[:, None, :] + delta, self.target_cols))
        return np.concatenate(out) if out else np.zeros((0, self.horizon, len(self.target_cols)))


def _training_windows(scaled: np.ndarray, starts: np.ndarray, window: int, horizon: int,
                      target_cols: list[int], inputs: str = "relative") -> SequenceData:
    """(inputs, targets) of the network: targets are the future values minus the last observed one."""
    _, y = make_windows(scaled, starts, window, horizon, target_cols)
    last = scaled[starts - 1][:, target_cols]
    delta = y - last[:, None, :]
    return SequenceData(torch.from_numpy(model_inputs(scaled, starts, window, inputs)),
                        torch.from_numpy(delta.reshape(len(starts), -1).astype(np.float32)))


def forecast(
    data: str | Path = "sunspots",
    columns: Sequence[str] | None = None,
    *,
    targets: Sequence[str] | None = None,
    time_column: str | None = None,
    nan: str | None = None,
    season: int | None = None,
    window: int = 48,
    horizon: int = 12,
    inputs: str = "relative",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    cell: str = "gru",
    hidden_size: int = 64,
    num_layers: int = 1,
    dropout: float = 0.0,
    epochs: int = 150,
    patience: int = 20,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    series: Series | None = None,
) -> dict[str, Any]:
    """Train a forecaster on `data` and score it on the held-out tail; returns the metrics dict.

    data: a built-in series name (sunspots, co2, nile, macrodata) or a CSV/TSV/Parquet path; columns:
    input columns by name (default: the built-in's / all numeric); targets: the columns to forecast
    (default: all input columns). Every check on the data runs before training starts.
    """
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("forecast")
    outputs = [n for n in OUTPUTS if not (resume and n == "history.json")]
    # -- data: load and check everything before any training ------------------------------------------------
    s = series if series is not None else load_series(data, columns, time_column=time_column, nan=nan, season=season)
    cols = s.columns
    targets = list(targets) if targets else cols
    missing = [t for t in targets if t not in cols]
    if missing:
        raise DataFileError(f"target column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                            f"not among the input columns {', '.join(map(repr, cols))}")
    target_cols = [cols.index(t) for t in targets]
    if window < 1 or horizon < 1:
        raise DataFileError(f"window and horizon must be >= 1, got {window} and {horizon}")
    if inputs not in INPUT_MODES:
        raise DataFileError(f"inputs must be one of {INPUT_MODES}, got {inputs!r}")
    n = len(s)
    check_enough_rows(n, window, horizon, 3, s.source)
    split = time_split(n, val_fraction, test_fraction)
    check_enough_rows(split.train_end, window, horizon, 1, s.source, what=" in its training part")
    if split.test_size < horizon:
        raise DataFileError(f"{s.source}: the test tail ({split.test_size} steps) is shorter than the horizon "
                            f"({horizon}); raise --test-fraction or lower --horizon")
    m = s.season or 1
    values = s.values.to_numpy(np.float64)
    train_o = origins(0, split.train_end, window, horizon)
    val_o = origins(split.train_end, split.val_end, window, horizon)
    test_o = origins(split.val_end, n, window, horizon)
    if len(val_o) == 0:
        raise DataFileError(f"{s.source}: the validation part ({split.val_end - split.train_end} steps) has no room "
                            f"for a horizon of {horizon}; raise --val-fraction or lower --horizon")
    if s.season and test_o.min() - m < 0:
        raise DataFileError(f"season {m} reaches before the start of the series for the first test origin")
    out = check_outputs(out, outputs, overwrite or resume)

    # -- model and training ---------------------------------------------------------------------------------
    scaler = Scaler.fit(values[: split.train_end])
    scaled = scaler.transform(values)
    train = _training_windows(scaled, train_o, window, horizon, target_cols, inputs)
    val = _training_windows(scaled, val_o, window, horizon, target_cols, inputs)
    seed_everything(seed)
    model = build_model(cell=cell, input_size=len(cols), hidden_size=hidden_size, num_layers=num_layers,
                        dropout=dropout, output_size=horizon * len(targets), head="regression")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                      out_dir=str(out), progress=progress)
    trainer = Trainer(model, cfg)
    history = trainer.fit(train, val, resume=resume)
    fc = Forecaster(model, scaler, window, horizon, target_cols, inputs)

    # -- evaluation on the held-out tail --------------------------------------------------------------------
    y = values[:, target_cols]
    truth = np.stack([y[t : t + horizon] for t in test_o])
    pred = fc.predict(values, test_o)
    naive = np.repeat(y[test_o - 1][:, None, :], horizon, axis=1)
    scale = mase_scale(y[: split.train_end], m)
    methods = {f"{cell.upper()} ({'fastgru' if cell == 'gru' else 'torch'})": pred, "naive": naive}
    if s.season:
        methods[f"seasonal naive (m={m})"] = np.stack([_seasonal_naive(y, t, horizon, m) for t in test_o])
    scores = {name: _metrics(p, truth, scale) for name, p in methods.items()}
    model_name = next(iter(methods))
    per_step_mae = np.abs(pred - truth).mean(axis=(0, 2))

    # -- outputs --------------------------------------------------------------------------------------------
    seg_o = np.arange(split.val_end, n, horizon)  # non-overlapping segments covering the tail (the last cut short)
    seg_pred = fc.predict(values, seg_o)
    future = fc.predict(values, np.array([n]))[0]  # origin n: the steps past the data's end
    frame = _forecast_frame(s, y, targets, seg_o, seg_pred, future, horizon, m)
    write_csv(frame, out / "forecast.csv")
    _plot(s, y, targets, split.val_end, seg_o, seg_pred, future, horizon, out / "forecast.png", model_name)
    save_model(model, out / "model")
    atomic.write_json(out / "model" / "forecaster.json", {
        "window": window, "horizon": horizon, "columns": cols, "targets": targets, "scaler": scaler.to_dict(),
        "inputs": inputs, "predicts": "change from the last observed value, in standardised units"})
    naive_mae = scores["naive"]["mae"]
    result = {
        "task": "forecast",
        "data": s.name,
        "source": s.source,
        "description": s.description,
        "columns": cols,
        "targets": targets,
        "steps": n,
        "split": {"train": split.train_end, "val": split.val_end - split.train_end, "test": split.test_size},
        "window": window,
        "horizon": horizon,
        "inputs": inputs,
        "season": s.season,
        "test_origins": int(len(test_o)),
        "metrics": {name: {k: v.tolist() for k, v in sc.items()} for name, sc in scores.items()},
        "model": model_name,
        "mae_per_step_ahead": per_step_mae.tolist(),
        "improvement_over_naive_mae": (1 - scores[model_name]["mae"] / naive_mae).tolist(),
        "beats_naive": bool(np.all(scores[model_name]["mae"] < naive_mae)),
        "best_epoch": history["best_epoch"],
        "epochs_run": len(history["epochs"]),
        "num_parameters": history["num_parameters"],
        "settings": {"cell": cell, "hidden_size": hidden_size, "num_layers": num_layers, "epochs": epochs,
                     "patience": patience, "batch_size": batch_size, "lr": lr, "seed": seed},
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in ("forecast.csv", "forecast.png", "metrics.json", "history.json")},
    }
    result["table"] = metrics_rows(result)
    atomic.write_json(out / "metrics.json", result)
    return result


def metrics_rows(result: dict[str, Any]) -> list[list[Any]]:
    """[method, target, MAE, RMSE, MASE] rows of a forecast result."""
    rows = []
    for name, sc in result["metrics"].items():
        for j, tgt in enumerate(result["targets"]):
            rows.append([name, tgt, float(sc["mae"][j]), float(sc["rmse"][j]), float(sc["mase"][j])])
    return rows


def _forecast_frame(s: Series, y: np.ndarray, targets: list[str], seg_o: np.ndarray, seg_pred: np.ndarray,
                    future: np.ndarray, horizon: int, m: int) -> pd.DataFrame:
    taxis = s.time_axis()
    rows = []
    for o, p in zip(seg_o, seg_pred):
        for k in range(horizon):
            t = o + k
            if t >= len(y):
                break
            row = {"part": "test", "time": taxis[t], "origin_time": taxis[o - 1], "steps_ahead": k + 1}
            for j, name in enumerate(targets):
                row[name] = y[t, j]
                row[f"{name}_forecast"] = p[k, j]
                row[f"{name}_naive"] = y[o - 1, j]
                if s.season:
                    row[f"{name}_seasonal_naive"] = _seasonal_naive(y[:, j], o, horizon, m)[k]
            rows.append(row)
    for k in range(horizon):
        row = {"part": "future", "time": _future_time(taxis, k + 1), "origin_time": taxis[-1], "steps_ahead": k + 1}
        for j, name in enumerate(targets):
            row[name] = np.nan
            row[f"{name}_forecast"] = future[k, j]
        rows.append(row)
    return pd.DataFrame(rows)


def _future_time(taxis: np.ndarray, k: int) -> Any:
    """The time stamp k steps past the end (continuing the last step's spacing)."""
    if len(taxis) < 2:
        return len(taxis) - 1 + k
    return taxis[-1] + (taxis[-1] - taxis[-2]) * k


def _plot(s: Series, y: np.ndarray, targets: list[str], test_start: int, seg_o: np.ndarray, seg_pred: np.ndarray,
          future: np.ndarray, horizon: int, path: Path, model_name: str) -> Path:
    taxis = s.time_axis()
    K = len(targets)
    fig = Figure(figsize=(10, 3.2 * K), constrained_layout=True)
    axes = fig.subplots(K, 1, squeeze=False)[:, 0]
    n = len(y)
    show_from = max(0, test_start - max(4 * horizon, (n - test_start) * 2))
    fut_t = np.array([_future_time(taxis, k + 1) for k in range(horizon)])
    for j, (ax, name) in enumerate(zip(axes, targets)):
        ax.plot(taxis[show_from : test_start + 1], y[show_from : test_start + 1, j], color="0.35", lw=1.2,
                label="history (train + validation)")
        ax.plot(taxis[test_start:], y[test_start:, j], color="black", lw=1.2, label="truth (held-out test)")
        for i, (o, p) in enumerate(zip(seg_o, seg_pred)):
            stop = min(horizon, n - o)
            ax.plot(taxis[o - 1 : o + stop], np.r_[y[o - 1, j], p[:stop, j]], color="tab:red", lw=1.6,
                    label=f"{model_name} forecast, {horizon} steps from each origin" if i == 0 else None)
        ax.plot(np.r_[taxis[-1:], fut_t], np.r_[y[-1, j], future[:, j]], color="tab:red", ls="--", lw=1.6,
                label="forecast past the end of the data")
        ax.axvline(taxis[test_start], color="tab:blue", ls=":", lw=1)
        ax.set_ylabel(name)
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_title(f"{s.name}: {model_name} forecast of the held-out tail")
    return save_figure(fig, path)


# -- command line -----------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru forecast`."""
    p = subparsers.add_parser("forecast", help="multi-step forecast of a series vs naive baselines",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="sunspots",
                   help="built-in series (sunspots, co2, nile, macrodata) or a CSV/TSV/Parquet file")
    p.add_argument("--columns", help="comma-separated input columns (default: the built-in's / all numeric)")
    p.add_argument("--targets", help="comma-separated columns to forecast (default: all input columns)")
    p.add_argument("--time-column", help="column with the time stamps (for the CSV and the plot)")
    p.add_argument("--nan", choices=("error", "drop", "ffill", "interpolate", "zero"), default=None,
                   help="what to do with missing values (default: stop with a message)")
    p.add_argument("--season", type=int, help="seasonal period in steps, for the seasonal-naive baseline")
    p.add_argument("--window", type=int, default=48, help="past steps the model reads (default 48)")
    p.add_argument("--horizon", type=int, default=12, help="future steps to forecast (default 12)")
    p.add_argument("--inputs", choices=INPUT_MODES, default="relative",
                   help="relative (default): each window minus its last value; level: the standardised values")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15, help="held-out tail (default 0.15)")
    add_model_args(p, hidden=64, epochs=150, patience=20, lr=3e-3)
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.set_defaults(func=run_from_args, task="forecast")
    return p


def add_model_args(p: argparse.ArgumentParser, *, hidden: int, epochs: int, patience: int, lr: float,
                   batch_size: int = 32) -> None:
    """Model and training options shared by forecast, detect and classify."""
    p.add_argument("--cell", choices=("gru", "lstm", "rnn", "torch_gru"), default="gru",
                   help="recurrent cell: gru (fastgru), lstm / rnn / torch_gru (torch)")
    p.add_argument("--hidden-size", type=int, default=hidden)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0, help="between stacked layers")
    p.add_argument("--epochs", type=int, default=epochs, help="most epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=patience, help="early stopping patience in epochs")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)


def _list(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`fastgru forecast`: run, print the table, say where the outputs are."""
    result = forecast(
        args.data, _list(args.columns), targets=_list(args.targets), time_column=args.time_column, nan=args.nan,
        season=args.season, window=args.window, horizon=args.horizon, inputs=args.inputs,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, cell=args.cell,
        hidden_size=args.hidden_size, num_layers=args.num_layers,
        dropout=args.dropout, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, out_dir=args.out, overwrite=args.force, resume=args.resume, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    sp = result["split"]
    print(f"\nforecast: {result['data']} ({result['description']})")
    print(f"{result['steps']} steps: train {sp['train']}, validation {sp['val']}, held-out test {sp['test']}; "
          f"window {result['window']}, horizon {result['horizon']}, {result['test_origins']} test origins; "
          f"{result['num_parameters']} parameters, best epoch {result['best_epoch']} of {result['epochs_run']}\n")
    print(format_table(result["table"], ["method", "target", "MAE", "RMSE", "MASE"]))
    imp = ", ".join(f"{abs(100 * v):.1f}% {'lower' if v > 0 else 'higher'} ({t})"
                    for v, t in zip(result["improvement_over_naive_mae"], result["targets"]))
    print(f"\n{result['model']} MAE against the naive forecast's: {imp}")
    print(f"wrote {result['outputs']['forecast.csv']}, {result['outputs']['forecast.png']}, "
          f"{result['outputs']['metrics.json']} ({result['seconds']:.1f} s)")
