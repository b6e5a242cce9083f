"""`forecast`: multi-step forecasts of one series or many with a GRU that starts from the best baseline.

Steps:

1. load the series (a built-in one or the user's CSV/Parquet; many series in one long table with
   ``id_column``), check every column's role (fastgru.apps.data.panel) before any training;
2. split each series in time order into train / validation / held-out test tail;
3. find the seasonal periods: from the time stamps' spacing (half-hourly: 48 and 336, hourly: 24 and
   168, daily: 7 and 365, monthly: 12, ...), else from the autocorrelation; ``season`` overrides them
   (fastgru.apps.data.seasons);
4. baselines: naive, one seasonal naive per season, and two smoothed baselines fitted on each series'
   training part (simple exponential smoothing, damped trend: fastgru.apps.forecasting.smoothing), and on
   short data (at most SHORT_WINDOWS training windows) a linear ridge map of the model's inputs
   (fastgru.apps.forecasting.linear); the base of the model is the candidate with the lowest validation
   MAE (per target column);
5. train the seasonal-residual GRU (fastgru.apps.forecasting.model): a GRU encoder over a window reaching back
   the longest season plus the horizon, cut into patches; a multi-step decoder fed the known-future
   covariates, calendar features and every seasonal-naive forecast; a zero-initialised output that adds a
   residual to the base. One global model over all series, each standardised with its own statistics.
   Short data trains an ensemble of up to MAX_MEMBERS models with different seeds, as many as keep
   members x training windows <= ENSEMBLE_WINDOWS, and averages them (``ensemble`` overrides the count).
   For each target the trained model does not beat the base for on the validation part, its residual is
   switched off;
6. score on the test tail at every ``origin_stride``-th origin (default: every origin, or a stride keeping
   at most 1,000 origins per series) against the baselines and the classical MSTL + ETS peer
   (fastgru.apps.forecasting.classical, needs statsmodels), per series and overall.

Metrics (fastgru.apps.forecasting.baselines): MAE, RMSE, MASE (scale: in-sample MAE of the one-step naive
forecast on each series' training part; no option changes it). The headline compares the GRU with the
best baseline on the test tail.

Outputs in `out_dir`: forecast.csv (one row per series, target, scored origin and step: truth, GRU,
every baseline and the peer; re-scoring it reproduces metrics.json; plus the forecast past the end of the
data, part "future"), forecast.png (each series' test tail, with a zoom on its last few seasons and the
baselines drawn), metrics.json, history.json (of the first model; members/<i>/history.json for the others
of an ensemble), model/ (weights and forecaster.json: layout, scalers, seasons, base choice, smoothers'
parameters; linear.npz: the linear base's map when it is a candidate).
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from fastgru.apps.common import add_model_args, check_outputs, comma_list, default_out, format_table, write_csv
from fastgru.apps.data.calendar import calendar_features
from fastgru.apps.data.panel import Panel, load_panel
from fastgru.apps.data.seasons import DAY, Seasons, infer_seasons, time_step
from fastgru.apps.data.tabular import DataFileError, check_enough_rows
from fastgru.apps.data.windows import Split, origins, time_split
from fastgru.apps.forecasting import classical
from fastgru.apps.forecasting.baselines import baseline_name, mase_scale, scores, seasonal_naive
from fastgru.apps.forecasting.features import (
    SeriesArrays,
    base_forecast,
    default_layout,
    feature_sizes,
    pack,
    prepare,
    unscale,
)
from fastgru.apps.forecasting.linear import LinearBase, fit_linear
from fastgru.apps.forecasting.model import ResidualEnsemble, SeasonalResidualGRU
from fastgru.apps.forecasting.smoothing import KINDS
from fastgru.apps.plots.heatmap import save_figure
from fastgru.io import atomic
from fastgru.train import SequenceData, TrainConfig, Trainer, seed_everything
from fastgru.train.resume import save_model

OUTPUTS = ("forecast.csv", "forecast.png", "metrics.json", "history.json")
MAX_TEST_ORIGINS = 1000
MAX_VAL_ORIGINS = 2048
DEFAULT_HORIZON = 12
ENSEMBLE_WINDOWS = 2048  # short data: members x training windows up to this many (see ensemble_size)
MAX_MEMBERS = 5
SHORT_WINDOWS = ENSEMBLE_WINDOWS // 2  # at most this many training windows: the linear base is a candidate
BASELINE_COLUMNS = {"ses": "exp_smoothing", "holt": "damped_trend", "linear": "linear"}  # forecast.csv columns


def ensemble_size(train_windows: int) -> int:
    """Models to average: as many as keep members x training windows <= ENSEMBLE_WINDOWS, 1 to MAX_MEMBERS.

    The cost of training stays at most that of one model on ENSEMBLE_WINDOWS windows (half the default
    --max-train-windows), so only short data sets get several members; long ones keep one model.
    """
    return int(min(MAX_MEMBERS, max(1, ENSEMBLE_WINDOWS // max(1, train_windows))))


def _l1_loss(out: torch.Tensor, y: torch.Tensor, lengths: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of absolute errors (the models are scored by MAE, so they are trained on it)."""
    err = (out - y.to(out.dtype)).abs()
    return err.sum(), torch.tensor(err.numel(), dtype=err.dtype)


def default_horizon(step: Any) -> int:
    """One day for data spaced below a day; else 12 steps."""
    if step is not None and not isinstance(step, pd.DateOffset) and step < DAY:
        return int(round(DAY / step))
    return DEFAULT_HORIZON


def _parse_seasons(season: int | Sequence[int] | str | None) -> list[int] | None:
    if season is None or season == "":
        return None
    if isinstance(season, str):
        try:
            return [int(s) for s in season.split(",") if s.strip()]
        except ValueError as exc:
            raise DataFileError(f"--season must be whole numbers of steps separated by commas, got {season!r}") from exc
    if isinstance(season, int):
        return [season]
    return [int(s) for s in season]


class _Prepared:
    """One series of the panel with everything the model and the scoring need."""

    def __init__(self, name: str, values: np.ndarray, time: np.ndarray | None, split: Split, arr: SeriesArrays,
                 future_time: np.ndarray | None):
        self.name, self.values, self.time, self.split, self.arr = name, values, time, split, arr
        self.future_time = future_time
        self.train_o = self.val_o = self.test_o = np.zeros(0, dtype=np.int64)


def forecast(
    data: str | Path = "sunspots",
    columns: Sequence[str] | None = None,
    *,
    targets: Sequence[str] | None = None,
    known_future: Sequence[str] | None = None,
    time_column: str | None = None,
    id_column: str | None = None,
    nan: str | None = None,
    season: int | Sequence[int] | str | None = None,
    window: int | None = None,
    horizon: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    origin_stride: int | None = None,
    cell: str = "gru",
    hidden_size: int = 64,
    num_layers: int = 1,
    dropout: float = 0.0,
    epochs: int = 40,
    patience: int = 6,
    batch_size: int = 64,
    lr: float = 2e-3,
    max_train_windows: int = 4096,
    peer: bool = True,
    ensemble: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the seasonal-residual GRU on `data` and score it on each series' held-out tail.

    data: a built-in series name (sunspots, co2, nile, macrodata) or a CSV/TSV/Parquet path. columns: value
    columns (default: every numeric / true-false column); targets: the columns to forecast (default: the
    value columns that are not known-future); known_future: columns known ahead (fed for the forecast steps
    too); id_column: one series per value (a long table); season: periods in steps, replacing the
    inferred ones; window: past steps read (default: longest season + horizon); horizon: default one day for
    data spaced below a day, else 12; ensemble: models averaged (default: :func:`ensemble_size` of the
    training windows). Returns the metrics dict (also written to metrics.json).
    """
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("forecast")
    outputs = [n for n in OUTPUTS if not (resume and n == "history.json")]
    if cell not in ("gru", "torch_gru", "lstm", "rnn"):
        raise DataFileError(f"cell must be gru, torch_gru, lstm or rnn, got {cell!r}")
    if ensemble is not None and ensemble < 1:
        raise DataFileError(f"ensemble must be >= 1, got {ensemble}")
    # -- data: load and check everything before any training ------------------------------------------------
    panel = load_panel(data, columns, targets=targets, known_future=known_future, time_column=time_column,
                       id_column=id_column, nan=nan)
    builtin_season = _builtin_season(data, id_column)
    first = panel.series[0]
    step = time_step(first.time) if panel.time_is_datetime else None
    H = horizon if horizon is not None else default_horizon(step)
    if H < 1 or (window is not None and window < 1):
        raise DataFileError(f"window and horizon must be >= 1, got {window} and {H}")
    split0 = time_split(len(first), val_fraction, test_fraction)
    given = _parse_seasons(season) or builtin_season
    try:
        seasons = infer_seasons(first.time if panel.time_is_datetime else None,
                                first.values[: split0.train_end, panel.target_cols[0]], given)
    except ValueError as exc:
        raise DataFileError(str(exc)) from exc
    layout = default_layout(seasons.periods, H, window=window)
    reach = max(layout.window, seasons.longest)
    tc, kc = panel.target_cols, panel.known_cols
    prepared = []
    for sp in panel.series:
        n = len(sp)
        where = panel.source + (f" (series {sp.name!r})" if id_column else "")
        check_enough_rows(n, reach, H, 3, where)
        split = time_split(n, val_fraction, test_fraction)
        if split.test_size < H:
            raise DataFileError(f"{where}: the test tail ({split.test_size} steps) is shorter than the horizon "
                                f"({H}); raise --test-fraction or lower --horizon")
        ftime = _extend_time(sp.time, H)
        cal, _ = calendar_features(ftime, step) if panel.time_is_datetime else (np.zeros((n + H, 0)), [])
        p = _Prepared(sp.name, sp.values, sp.time, split, prepare(sp.values, cal, split.train_end, tc), ftime)
        p.train_o = origins(0, split.train_end, reach, H)
        p.val_o = origins(split.train_end, split.val_end, reach, H)
        test_o = origins(split.val_end, n, reach, H)
        if len(p.val_o) == 0 or len(test_o) == 0 or len(p.train_o) == 0:
            raise DataFileError(f"{where}: {n} steps leave no room for training, validation and test windows of "
                                f"{reach} past steps + {H} ahead; give more data or lower --window/--horizon")
        stride = origin_stride or max(1, math.ceil(len(test_o) / MAX_TEST_ORIGINS))
        p.test_o = test_o[::stride]
        prepared.append(p)
    cal_names = calendar_features(_extend_time(first.time, 1), step)[1] if panel.time_is_datetime else []
    out = check_outputs(out, outputs, overwrite or resume)

    # -- base: the baseline with the lowest validation MAE, per target (pooled over series, standardised) ----
    # candidates: naive, each season's seasonal naive, the smoothed baselines, and on short data (at most
    # SHORT_WINDOWS training windows) the linear (ridge) map of the model's own inputs, fitted on the training
    # windows (its strength chosen on the validation ones). With more windows the GRU learns that map itself.
    nb = H * len(tc)
    linear: LinearBase | None = None
    base_keys: list[int | str] = [1] * len(tc)  # provisional: the linear map never reads the base columns

    def rows(p: _Prepared, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return pack(p.arr, starts, layout, tc, kc, base_keys, linear)

    train = _stack([rows(p, p.train_o) for p in prepared], max_train_windows)
    val = _stack([rows(p, p.val_o) for p in prepared], MAX_VAL_ORIGINS)
    n_windows = int(sum(len(p.train_o) for p in prepared))  # before the cap of max_train_windows
    short = n_windows <= SHORT_WINDOWS
    candidates: list[int | str] = [1, *seasons.periods, *KINDS, *(["linear"] if short else [])]
    if short:
        linear = fit_linear(train.x[:, :-nb].numpy(), train.y.numpy(), val.x[:, :-nb].numpy(), val.y.numpy(),
                            len(tc))
    err = np.zeros((len(tc), len(candidates)))
    for p in prepared:
        x, _, rel = rows(p, p.val_o)
        rel = rel.reshape(len(x), H, len(tc))
        lin = linear.predict(x[:, :-nb]).reshape(len(x), H, len(tc)) if linear is not None else None
        for j, col in enumerate(tc):
            z = p.arr.scaled[:, col]
            truth = z[p.val_o[:, None] + np.arange(H)[None, :]]
            for i, m in enumerate(candidates):
                err[j, i] += float(np.abs(lin[:, :, j] - rel[:, :, j]).sum() if m == "linear" else
                                   np.abs(base_forecast(p.arr, col, p.val_o, H, m) - truth).sum())
    base_keys = [candidates[int(np.argmin(e))] for e in err]

    # -- the model ------------------------------------------------------------------------------------------
    train = _stack([rows(p, p.train_o) for p in prepared], max_train_windows)
    val = _stack([rows(p, p.val_o) for p in prepared], MAX_VAL_ORIGINS)
    n_members = ensemble if ensemble is not None else ensemble_size(n_windows)
    pf, sf = feature_sizes(len(panel.columns), len(kc), len(cal_names), len(tc), layout)
    members, histories = [], []
    for i in range(n_members):  # member 0 trains with `seed` and writes to `out`, member i to out/members/i
        member_seed = seed + 1000 * i
        seed_everything(member_seed)
        member = SeasonalResidualGRU(layout.n_patches, pf, H, sf, len(tc), hidden_size=hidden_size,
                                     num_layers=num_layers, dropout=dropout, cell=cell)
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=member_seed,
                          out_dir=str(out if i == 0 else out / "members" / str(i)), progress=progress)
        histories.append(Trainer(member, cfg, head="regression", loss_fn=_l1_loss).fit(train, val, resume=resume))
        members.append(member)
    model = ResidualEnsemble(members)
    history = histories[0]
    per_target = (len(val.x), H, len(tc))
    val_model = np.abs(model.predict(val.x).numpy() - val.y.numpy()).reshape(per_target).mean(axis=(0, 1))
    base_only = np.abs(_base_of(model, val.x) - val.y.numpy()).reshape(per_target).mean(axis=(0, 1))
    residual_on = [bool(a < b) for a, b in zip(val_model, base_only)]
    # where training did not help a target on the validation part, that target falls back to its base exactly
    model.zero_residual([j for j, on in enumerate(residual_on) if not on])

    # -- scoring on the held-out tails ----------------------------------------------------------------------
    model_name = f"{cell.upper()} ({'fastgru' if cell == 'gru' else 'torch'})"
    use_peer = peer and classical.available()
    per_series, pooled, frames = [], {}, []
    for p in prepared:
        y = p.values[:, tc]
        truth = y[p.test_o[:, None] + np.arange(H)[None, :]]
        x, last, _ = rows(p, p.test_o)
        methods = {model_name: unscale(p.arr, model.predict(torch.from_numpy(x)).double().numpy(), last, tc, H)}
        for m in candidates:
            if m == "linear":
                methods[baseline_name(m)] = unscale(p.arr, linear.predict(x[:, :-nb]), last, tc, H)
            elif isinstance(m, str):
                methods[baseline_name(m)] = np.stack(
                    [p.arr.scaler.inverse(base_forecast(p.arr, c, p.test_o, H, m), [c]) for c in tc], axis=2)
            else:
                methods[baseline_name(m)] = seasonal_naive(y, p.test_o, H, m)
        if use_peer:
            methods[classical.NAME] = np.stack(
                [classical.mstl_ets_forecasts(y[:, j], p.split.train_end, p.test_o, H, seasons.periods)
                 for j in range(len(tc))], axis=2)
        scale = mase_scale(y[: p.split.train_end])
        sc = {k: scores(v, truth, scale) for k, v in methods.items()}
        per_series.append({"series": p.name, "steps": len(p.values), "test_origins": int(len(p.test_o)),
                           "split": {"train": p.split.train_end, "val": p.split.val_end - p.split.train_end,
                                     "test": p.split.test_size},
                           "mase_scale": scale.tolist(),
                           "metrics": {k: {q: v.tolist() for q, v in s.items()} for k, s in sc.items()}})
        for k, v in methods.items():
            pooled.setdefault(k, []).append((v, truth, scale))
        xf, lastf, _ = rows(p, np.array([len(p.values)]))
        future = unscale(p.arr, model.predict(torch.from_numpy(xf)).double().numpy(), lastf, tc, H)[0]
        frames.append(_forecast_frame(p, panel.targets, y, methods, future, H))
    overall = {}
    for k, parts in pooled.items():
        err = np.concatenate([(v - t).reshape(-1, len(tc)) for v, t, _ in parts])
        overall[k] = {"mae": np.abs(err).mean(axis=0).tolist(), "rmse": np.sqrt((err**2).mean(axis=0)).tolist(),
                      "mase": np.mean([scores(v, t, s)["mase"] for v, t, s in parts], axis=0).tolist()}
    baselines = [baseline_name(m) for m in candidates]
    best = [min(baselines, key=lambda b: overall[b]["mae"][j]) for j in range(len(tc))]
    wins = _wins(per_series, model_name, baselines, len(tc))

    # -- outputs --------------------------------------------------------------------------------------------
    write_csv(pd.concat(frames, ignore_index=True), out / "forecast.csv")
    _plot(prepared, panel, y_cols=tc, model_name=model_name, H=H, seasons=seasons, path=out / "forecast.png",
          frames=frames)
    save_model(model, out / "model")
    if linear is not None:  # the linear base's map: model/linear.npz (x_mean, y_mean, coef, strengths)
        buf = io.BytesIO()
        np.savez(buf, x_mean=linear.x_mean, y_mean=linear.y_mean, coef=linear.coef, strengths=linear.strengths)
        atomic.write_bytes(out / "model" / "linear.npz", buf.getvalue())
    atomic.write_json(out / "model" / "forecaster.json", {
        "layout": {"patch": layout.patch, "n_patches": layout.n_patches, "horizon": H, "periods": list(layout.periods)},
        "model": model.shape, "columns": panel.columns, "targets": panel.targets, "known_future": panel.known_future,
        "calendar": cal_names, "base": base_keys, "residual_on": residual_on,
        "scalers": {p.name: p.arr.scaler.to_dict() for p in prepared},
        "smoothers": {p.name: {panel.columns[c]: [vars(sm) for sm in sms] for c, sms in p.arr.smoothers.items()}
                      for p in prepared}})
    result = {
        "task": "forecast",
        "data": panel.name,
        "source": panel.source,
        "description": panel.description,
        "columns": panel.columns,
        "targets": panel.targets,
        "known_future": panel.known_future,
        "calendar_features": cal_names,
        "ignored_columns": panel.ignored,
        "filled_steps": panel.filled,
        "series": len(prepared),
        "steps": int(sum(len(p.values) for p in prepared)),
        "split": per_series[0]["split"],
        "time_step": seasons.step,
        "seasons": list(seasons.periods),
        "seasons_from": seasons.source,
        "window": layout.window,
        "patch": layout.patch,
        "horizon": H,
        "test_origins": int(sum(len(p.test_o) for p in prepared)),
        "base": [baseline_name(m) for m in base_keys],
        "residual_on": residual_on,
        "ensemble": n_members,
        "model": model_name,
        "metrics": overall,
        "per_series": per_series,
        "best_baseline": best,
        "improvement_over_best_baseline_mae": [1 - overall[model_name]["mae"][j] / overall[best[j]]["mae"][j]
                                               for j in range(len(tc))],
        "beats_best_baseline": all(overall[model_name]["mae"][j] < overall[best[j]]["mae"][j] for j in range(len(tc))),
        "peer": classical.NAME if use_peer else None,
        "wins": wins,
        "mase_scale": "in-sample MAE of the one-step naive forecast on each series' training part",
        "best_epoch": history["best_epoch"],
        "epochs_run": len(history["epochs"]),
        "num_parameters": history["num_parameters"] * n_members,
        "settings": {"cell": cell, "hidden_size": hidden_size, "num_layers": num_layers, "epochs": epochs,
                     "patience": patience, "batch_size": batch_size, "lr": lr, "seed": seed,
                     "max_train_windows": max_train_windows, "origin_stride": origin_stride,
                     "ensemble": ensemble},
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in OUTPUTS},
    }
    result["table"] = metrics_rows(result)
    atomic.write_json(out / "metrics.json", result)
    return result


def _builtin_season(data: Any, id_column: str | None) -> list[int] | None:
    from fastgru.apps.data.series import BUILTIN_SERIES

    spec = BUILTIN_SERIES.get(str(data))
    return [spec.season] if spec is not None and spec.season and id_column is None else None


def _extend_time(time: np.ndarray | None, k: int) -> np.ndarray | None:
    """The time stamps plus k more continuing the last spacing."""
    if time is None:
        return None
    t = np.asarray(time)
    stepv = t[-1] - t[-2] if len(t) > 1 else np.timedelta64(1, "D")
    return np.concatenate([t, t[-1] + stepv * np.arange(1, k + 1)])


def _stack(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cap: int) -> SequenceData:
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    if len(x) > cap:  # evenly spaced origins across the whole history, the same for every seed
        keep = np.linspace(0, len(x) - 1, cap).round().astype(np.int64)
        x, y = x[keep], y[keep]
    return SequenceData(torch.from_numpy(x), torch.from_numpy(y))


def _base_of(model: ResidualEnsemble, x: torch.Tensor) -> np.ndarray:
    _, _, base = model.unpack(x)
    return base.reshape(len(x), -1).numpy()


def _wins(per_series: list[dict], model_name: str, baselines: list[str], k: int) -> dict[str, Any]:
    """Per target: how many series the model beats their best baseline on, and the MAE ratios' spread."""
    out = []
    for j in range(k):
        ratios = []
        for s in per_series:
            best = min(s["metrics"][b]["mae"][j] for b in baselines)
            ratios.append(s["metrics"][model_name]["mae"][j] / best if best > 0 else float("nan"))
        r = np.asarray(ratios)
        out.append({"series": len(r), "wins": int(np.sum(r < 1)), "ratio_to_best_baseline": r.tolist(),
                    "quantiles": dict(zip(("min", "q25", "median", "q75", "max"),
                                          np.nanquantile(r, [0, 0.25, 0.5, 0.75, 1]).tolist()))})
    return {"per_target": out}


def metrics_rows(result: dict[str, Any]) -> list[list[Any]]:
    """[method, target, MAE, RMSE, MASE] rows over all series."""
    rows = []
    for name, sc in result["metrics"].items():
        for j, tgt in enumerate(result["targets"]):
            rows.append([name, tgt, float(sc["mae"][j]), float(sc["rmse"][j]), float(sc["mase"][j])])
    return rows


def _forecast_frame(p: _Prepared, targets: list[str], y: np.ndarray, methods: dict[str, np.ndarray],
                    future: np.ndarray, H: int) -> pd.DataFrame:
    """Long table: one row per (target, scored origin, step) with truth and every method's forecast."""
    taxis = p.future_time if p.future_time is not None else np.arange(len(p.values) + H)
    N = len(p.test_o)
    idx = p.test_o[:, None] + np.arange(H)[None, :]
    frames = []
    for j, name in enumerate(targets):
        cols = {"series": p.name, "part": "test", "target": name,
                "origin_time": np.repeat(taxis[p.test_o], H), "time": taxis[idx].ravel(),
                "steps_ahead": np.tile(np.arange(1, H + 1), N), "truth": y[idx, j].ravel()}
        for k, v in methods.items():
            cols[_column(k)] = v[:, :, j].ravel()
        frames.append(pd.DataFrame(cols))
        fut = {"series": p.name, "part": "future", "target": name, "origin_time": taxis[len(p.values)],
               "time": taxis[len(p.values) : len(p.values) + H], "steps_ahead": np.arange(1, H + 1),
               "truth": np.nan, "forecast": future[:, j]}
        frames.append(pd.DataFrame(fut))
    return pd.concat(frames, ignore_index=True)


def _column(method: str) -> str:
    """forecast.csv column of a method: 'forecast' for the model, else a short snake_case name."""
    if method.startswith(("GRU", "LSTM", "RNN", "TORCH_GRU")):
        return "forecast"
    if method == classical.NAME:
        return "mstl_ets"
    if method == "naive":
        return "naive"
    for kind in BASELINE_COLUMNS:
        if method == baseline_name(kind):
            return BASELINE_COLUMNS[kind]
    return "seasonal_naive_" + method.split("m=")[1].rstrip(")")


def _plot(prepared: list[_Prepared], panel: Panel, *, y_cols: list[int], model_name: str, H: int, seasons: Seasons,
          path: Path, frames: list[pd.DataFrame], max_series: int = 4) -> Path:
    """Per series (up to 4) and target: the whole test tail (model's day-ahead path from every H-th origin)
    and, beside it, a zoom on its last few seasons with the baselines drawn."""
    shown = [(i, j) for i in range(min(len(prepared), max_series)) for j in range(len(y_cols))]
    fig = Figure(figsize=(14, 3.3 * len(shown)), constrained_layout=True)
    axes = fig.subplots(len(shown), 2, squeeze=False, width_ratios=[1.3, 1])
    zoom = 3 * (seasons.longest if seasons.longest > 1 else H)
    for row, (i, j) in enumerate(shown):
        p, target = prepared[i], panel.targets[j]
        f = frames[i]
        f = f[(f.part == "test") & (f.target == target)]
        stride = int(p.test_o[1] - p.test_o[0]) if len(p.test_o) > 1 else 1
        taxis = p.future_time if p.future_time is not None else np.arange(len(p.values) + H)
        chosen = taxis[p.test_o[:: max(1, H // stride)]]  # consecutive H-step paths
        seg = f[np.isin(f.origin_time.to_numpy(), chosen)]
        for ax, frm in ((axes[row, 0], seg), (axes[row, 1], seg[seg.time >= seg.time.iloc[max(0, len(seg) - zoom)]])):
            ax.plot(frm.time, frm.truth, color="black", lw=1.0, label="truth")
            ax.plot(frm.time, frm.forecast, color="tab:red", lw=1.0, label=model_name)
            if ax is axes[row, 1]:
                for col, c in (("naive", "0.6"), *((f"seasonal_naive_{m}", cc) for m, cc in
                                                   zip(seasons.periods, ("tab:blue", "tab:green", "tab:purple")))):
                    if col in frm:
                        ax.plot(frm.time, frm[col], color=c, lw=0.8, ls="--", label=col.replace("_", " "))
                if "mstl_ets" in frm:
                    ax.plot(frm.time, frm["mstl_ets"], color="tab:orange", lw=0.8, ls=":", label="MSTL+ETS")
                ax.set_title(f"last {len(frm)} test steps, baselines drawn", fontsize=9)
            else:
                ax.set_title(f"{p.name} ({target}): held-out test, {H}-step forecasts from every {H}th origin",
                             fontsize=9)
            ax.set_xlabel("time" if panel.time_is_datetime else "step")
            ax.set_ylabel(target)
            ax.legend(loc="upper left", fontsize=7)
            for lab in ax.get_xticklabels():
                lab.set_rotation(20)
    return save_figure(fig, path)


# -- command line -----------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru forecast`."""
    p = subparsers.add_parser("forecast", help="multi-step forecast of one series or many vs seasonal baselines",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="sunspots",
                   help="built-in series (sunspots, co2, nile, macrodata) or a CSV/TSV/Parquet file")
    p.add_argument("--columns", help="comma-separated value columns (default: every numeric / true-false column)")
    p.add_argument("--targets", help="comma-separated columns to forecast (default: the value columns that are "
                                     "not --known-future)")
    p.add_argument("--known-future", help="comma-separated columns known ahead (temperature forecast, holiday); "
                                          "fed for the forecast steps too. True/false columns are known-future "
                                          "by default")
    p.add_argument("--time-column", help="column with the time stamps (seasons, calendar features, plot)")
    p.add_argument("--id-column", help="column naming the series of a long table: one global model over all")
    p.add_argument("--nan", choices=("error", "drop", "ffill", "interpolate", "zero"), default=None,
                   help="what to do with missing values and missing time steps (default: stop with a message)")
    p.add_argument("--season", help="seasonal periods in steps, comma-separated (default: from the time column's "
                                    "spacing, else the autocorrelation); baselines, model window and peer use them")
    p.add_argument("--window", type=int, help="past steps the model reads (default: longest season + horizon)")
    p.add_argument("--horizon", type=int, help="future steps (default: one day below daily data, else 12)")
    p.add_argument("--origin-stride", type=int, help="score every k-th test origin (default: 1, or a stride "
                                                     f"keeping at most {MAX_TEST_ORIGINS} per series)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15, help="held-out tail (default 0.15)")
    p.add_argument("--max-train-windows", type=int, default=4096,
                   help="training windows per epoch, evenly spaced over the history (default 4096)")
    p.add_argument("--no-peer", action="store_true", help="skip the MSTL+ETS peer (statsmodels)")
    p.add_argument("--ensemble", type=int, help=f"models averaged (default: as many as keep models x training "
                                                f"windows <= {ENSEMBLE_WINDOWS}, at most {MAX_MEMBERS})")
    add_model_args(p, hidden=64, epochs=40, patience=6, lr=2e-3, batch_size=64)
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.set_defaults(func=run_from_args, task="forecast")
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`fastgru forecast`: run, print the table, say where the outputs are."""
    result = forecast(
        args.data, comma_list(args.columns), targets=comma_list(args.targets),
        known_future=comma_list(args.known_future),
        time_column=args.time_column, id_column=args.id_column, nan=args.nan, season=args.season,
        window=args.window, horizon=args.horizon, origin_stride=args.origin_stride,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, cell=args.cell,
        hidden_size=args.hidden_size, num_layers=args.num_layers, dropout=args.dropout, epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, lr=args.lr, max_train_windows=args.max_train_windows,
        peer=not args.no_peer, ensemble=args.ensemble, seed=args.seed, out_dir=args.out, overwrite=args.force,
        resume=args.resume,
        progress=args.progress,
    )
    print_result(result)
    return result


def headline(result: dict[str, Any]) -> str:
    """One line per target: the model's MAE against the BEST baseline's on the test tail."""
    lines = []
    for j, tgt in enumerate(result["targets"]):
        v = result["improvement_over_best_baseline_mae"][j]
        best = result["best_baseline"][j]
        lines.append(f"{result['model']} MAE {result['metrics'][result['model']]['mae'][j]:.4g} on {tgt}: "
                     f"{abs(100 * v):.1f}% {'lower' if v > 0 else 'higher'} than the best baseline, {best} "
                     f"({result['metrics'][best]['mae'][j]:.4g})")
    return "\n".join(lines)


def print_result(result: dict[str, Any]) -> None:
    sp = result["split"]
    seas = ", ".join(map(str, result["seasons"])) or "none"
    print(f"\nforecast: {result['data']} ({result['description']})")
    print(f"{result['series']} series, {result['steps']} steps (first series: train {sp['train']}, validation "
          f"{sp['val']}, test {sp['test']}); seasons {seas} (from {result['seasons_from']}"
          f"{', ' + result['time_step'] if result['time_step'] else ''}); window {result['window']} in patches of "
          f"{result['patch']}, horizon {result['horizon']}, {result['test_origins']} test origins; "
          f"{result['num_parameters']} parameters"
          f"{' in ' + str(result['ensemble']) + ' averaged models' if result['ensemble'] > 1 else ''}, best epoch "
          f"{result['best_epoch']} of {result['epochs_run']}")
    if result["known_future"] or result["calendar_features"]:
        print(f"known-future inputs: {', '.join(result['known_future'] + result['calendar_features'])}")
    if result["ignored_columns"]:
        print("columns not used: " + "; ".join(f"{c} ({why})" for c, why in result["ignored_columns"].items()))
    if result["peer"] is None:
        print("classical peer skipped (pip install 'fastgru[classical]' for MSTL+ETS)")
    print()
    print(format_table(result["table"], ["method", "target", "MAE", "RMSE", "MASE"]))
    print("\nMASE scale: " + result["mase_scale"])
    print(headline(result))
    if result["series"] > 1:
        for j, w in enumerate(result["wins"]["per_target"]):
            q = w["quantiles"]
            print(f"{result['targets'][j]}: beats its best baseline on {w['wins']} of {w['series']} series; MAE "
                  f"ratio to it: median {q['median']:.3f} (min {q['min']:.3f}, max {q['max']:.3f})")
    print(f"wrote {result['outputs']['forecast.csv']}, {result['outputs']['forecast.png']}, "
          f"{result['outputs']['metrics.json']} ({result['seconds']:.1f} s)")
