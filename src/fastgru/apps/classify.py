"""`classify`: time-series classification with a convolutional GRU, scored beside 1-NN DTW and MiniRocket.

The model (fastgru.apps.classify_model) is a GRU-FCN-style hybrid: a learned strided convolution shortens
the series so the GRU reads at most ``gru_steps`` steps, a small fully convolutional branch pools shapes
over the whole series, and both summaries feed a linear head. Training (fastgru.apps.classify_training)
standardises each channel with the training series' statistics, augments batches by window slicing,
follows a cosine schedule and picks the epoch by validation accuracy, then refits on all training
series, and predicts with the average of two networks (the validated run and the refit) over five
windows of each test series; when the training part is too small to spare a validation part, it trains
on everything for the whole schedule instead (and says so), the second network with another seed. The
test part is never seen in training.

Where the test part comes from is printed and written to metrics.json (``split``): ``--test-data``, the
``NAME_TEST`` file beside a ``NAME_TRAIN`` file, a table's split column, or a stratified random share.

Reported on the test set, for the model and the peers on the same split: accuracy and macro-F1 (the
mean of the per-class F1 scores); with up to 10 classes the confusion matrix (rows: true class, columns:
predicted), with more the largest confusions (the full matrix is in confusion.csv/png). The peers
(fastgru.apps.classify_peers, sktime) are optional: without them the report says how to install them.

Outputs in `out_dir`: metrics.json, predictions.csv (true, predicted, probability of each class),
confusion.csv, confusion.png, learning_curve.png, history.json, model/ (weights + config + classes; the
other members' weights in model/member_2, ...).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from fastgru.apps.classify_model import BRANCHES, ConvGRUClassifier, ConvGRUConfig
from fastgru.apps.classify_peers import score_peers
from fastgru.apps.classify_training import (
    NORMALISATIONS,
    FitSettings,
    fit_classifier,
    normalisation_statistics,
    predict_proba,
)
from fastgru.apps.classify_training import normalise as normalise_series
from fastgru.apps.classify_training import pad as pad_series
from fastgru.apps.common import (
    DefaultsHelpFormatter,
    check_outputs,
    comma_list,
    confusion_matrix,
    default_out,
    format_table,
    macro_f1,
    write_csv,
)
from fastgru.apps.data.sequences import LabelledSequences, load_sequences, stratified_split
from fastgru.apps.data.tabular import DataFileError
from fastgru.apps.plots.confusion import plot_confusion
from fastgru.apps.plots.heatmap import save_figure
from fastgru.io import atomic
from fastgru.train.resume import save_model

OUTPUTS = ("metrics.json", "predictions.csv", "confusion.csv", "confusion.png", "learning_curve.png",
           "history.json")
MIN_VAL_SERIES = 20  # a smaller validation part moves in steps of 5+ points: too coarse to pick an epoch
MIN_TRAIN_PER_CLASS = 3
MAX_CLASSES_PRINTED = 10  # more classes: the console shows the top confusions, the files hold the matrix


def classify(
    data: str | Path = "japanese_vowels",
    *,
    test_data: str | Path | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    split_column: str | None = None,
    nan: str = "error",
    test_fraction: float = 0.3,
    val_fraction: float = 0.2,
    refit: bool = True,
    normalise: str = "global",
    filters: tuple[int, int] = (64, 128),
    hidden_size: int = 64,
    gru_steps: int = 128,
    branches: str = "both",
    dropout: float = 0.0,
    gru_dropout: float = 0.8,
    slice_ratio: float = 0.9,
    jitter: float = 0.0,
    members: int = 2,
    test_views: int = 5,
    epochs: int = 200,
    batch_size: int = 16,
    lr: float = 3e-3,
    peers: bool = True,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    sequences: LabelledSequences | None = None,
) -> dict[str, Any]:
    """Train the convolutional GRU classifier on `data`, score it and the peers on the test part.

    Returns the metrics dict (also written to metrics.json). See the module docstring for the outputs,
    fastgru.apps.classify_model for the network and fastgru.apps.classify_training for the recipe.
    """
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("classify")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    if not 0 < slice_ratio <= 1 or jitter < 0 or epochs < 1 or batch_size < 2:
        raise ValueError("need 0 < --slice-ratio <= 1, --jitter >= 0, --epochs >= 1 and --batch-size >= 2")
    if members < 1 or test_views < 1:
        raise ValueError(f"need --members >= 1 and --test-views >= 1, got {members} and {test_views}")
    ds = sequences if sequences is not None else load_sequences(
        data, test_data=test_data, id_column=id_column, label_column=label_column,
        feature_columns=feature_columns, time_column=time_column, split_column=split_column,
        test_fraction=test_fraction, seed=seed, nan=nan)
    for part, xs in (("training", ds.train_x), ("test", ds.test_x)):
        bad = sum(int(np.isnan(x).any()) for x in xs)
        if bad:
            raise DataFileError(f"{ds.name}: {bad} {part} sequence(s) hold missing values inside them; "
                                "fill or drop them first (nan='ffill' / 'drop' for tables)")
    classes = ds.classes
    if len(classes) < 2:
        raise DataFileError(f"{ds.name}: need at least two classes, found {classes}")
    unseen = sorted(set(ds.test_y) - set(ds.train_y))
    if unseen:
        raise DataFileError(f"{ds.name}: test class(es) {unseen[:5]} never occur in the training part")
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([index[c] for c in ds.train_y])
    y_test = np.array([index[c] for c in ds.test_y])
    tr, va, val_note = choose_validation(ds.train_y, val_fraction, seed)
    out = check_outputs(out, OUTPUTS, overwrite)

    train_n = normalise_series(ds.train_x, normalise)
    test_n = normalise_series(ds.test_x, normalise, reference=ds.train_x)
    x_all, l_all = pad_series(train_n)
    x_te, l_te = pad_series(test_n)
    y_all_t = torch.from_numpy(y_all)
    train = (x_all[tr], l_all[tr], y_all_t[tr])
    val = (x_all[va], l_all[va], y_all_t[va]) if va else None
    config = ConvGRUConfig(input_size=x_all.shape[2], num_classes=len(classes), max_length=int(l_all.max()),
                           filters=tuple(filters), hidden_size=hidden_size, gru_steps=gru_steps, dropout=dropout,
                           gru_dropout=gru_dropout, branches=branches)
    settings = FitSettings(epochs=epochs, batch_size=batch_size, lr=lr, slice_ratio=slice_ratio, jitter=jitter,
                           refit=refit, members=members, seed=seed, progress=progress)
    fit = fit_classifier(lambda: ConvGRUClassifier(config), train, val, settings,
                         everything=(x_all, l_all, y_all_t))
    model = fit.model
    probs = predict_proba(fit.members, x_te, l_te, slice_ratio, test_views).numpy()
    pred = probs.argmax(1)
    model_name = "ConvGRU (fastgru)"
    predictions = {model_name: pred}
    majority = int(np.bincount(y_all, minlength=len(classes)).argmax())
    peer_seconds: dict[str, float] = {}
    peer_note = None
    if peers:
        peer = score_peers(ds.train_x, y_all, ds.test_x, seed=seed)
        predictions.update(peer["predictions"])
        peer_seconds, peer_note = peer["seconds"], peer["note"]
    predictions[f"majority class ({classes[majority]!r})"] = np.full_like(y_test, majority)
    seconds = {model_name: fit.history["seconds"], **peer_seconds}
    scores = {}
    for name, p in predictions.items():
        cm_p = confusion_matrix(y_test, p, len(classes))
        scores[name] = {"accuracy": float((p == y_test).mean()), "macro_f1": macro_f1(cm_p),
                        "seconds": seconds.get(name)}
    cm = confusion_matrix(y_test, pred, len(classes))

    lengths = np.array([len(x) for x in ds.train_x + ds.test_x])
    frame = pd.DataFrame({"true": [classes[i] for i in y_test], "predicted": [classes[i] for i in pred],
                          "length": l_te.numpy()})
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, j]
    write_csv(frame, out / "predictions.csv")
    cm_frame = pd.DataFrame(cm, columns=[f"pred_{c}" for c in classes])
    cm_frame.insert(0, "true", classes)
    write_csv(cm_frame, out / "confusion.csv")
    plot_confusion(cm, classes, out / "confusion.png", f"{ds.name}: {model_name}, test accuracy "
                    f"{scores[model_name]['accuracy']:.3f}")
    plot_learning_curve(fit.history, out / "learning_curve.png", f"{ds.name}: {model_name}")
    atomic.write_json(out / "history.json", fit.history)
    save_model(model, out / "model")
    for k, member in enumerate(fit.members[1:], start=2):
        save_model(member, out / "model" / f"member_{k}")
    atomic.write_json(out / "model" / "classifier.json", {"classes": classes, "normalise": normalise,
                                                          "normalise_statistics": normalisation_statistics(
                                                              ds.train_x, normalise),
                                                          "config": config.to_dict(), "channels": ds.channels,
                                                          "members": ["."] + [f"member_{k}" for k in
                                                                              range(2, len(fit.members) + 1)],
                                                          "slice_ratio": slice_ratio, "test_views": test_views})
    notes = list(ds.split.get("notes", [])) + [n for n in (val_note, peer_note) if n]
    result = {
        "task": "classify", "data": ds.name, "description": ds.description, "classes": classes,
        "split": {**{k: v for k, v in ds.split.items() if k != "notes"}, "train_sequences": len(ds.train_x),
                  "test_sequences": len(ds.test_x)},
        "notes": notes,
        "channels": len(ds.channels), "train_sequences": len(tr), "val_sequences": len(va),
        "test_sequences": len(ds.test_x), "length_min": int(lengths.min()), "length_max": int(lengths.max()),
        "metrics": scores, "model": model_name, "confusion": cm.tolist(),
        "top_confusions": top_confusions(cm, classes),
        "best_epoch": fit.history["best_epoch"], "refit": fit.history["refit"],
        "epochs_run": len(fit.history["epochs"]) + len(fit.history["refit_epochs"])
        + sum(len(r) for r in fit.history["member_epochs"]),
        "members": len(fit.members),
        "num_parameters": model.num_parameters(), "gru_steps_read": math.ceil(int(l_all.max()) / config.stride),
        "settings": {"normalise": normalise, "filters": list(filters), "hidden_size": hidden_size,
                     "gru_steps": gru_steps, "stride": config.stride, "branches": branches, "dropout": dropout,
                     "gru_dropout": gru_dropout,
                     "slice_ratio": slice_ratio, "jitter": jitter, "members": members, "test_views": test_views,
                     "epochs": epochs, "batch_size": batch_size,
                     "lr": lr, "val_fraction": val_fraction, "refit": refit, "peers": peers, "seed": seed},
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in OUTPUTS},
    }
    atomic.write_json(out / "metrics.json", result)
    return result


def choose_validation(labels: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int], str | None]:
    """(training indices, validation indices, note): a stratified `fraction` for validation, or none.

    Validation is skipped (all series train, for the full schedule) when `fraction` is 0, when it would
    hold fewer than MIN_VAL_SERIES series (its accuracy would be too coarse to choose an epoch), or when a
    class would keep fewer than MIN_TRAIN_PER_CLASS training series; the note says which.
    """
    n = len(labels)
    if fraction == 0:
        return list(range(n)), [], ("no validation part (--val-fraction 0): trained on all training series for "
                                    "all epochs")
    tr, va = stratified_split(labels, fraction, seed)
    left = min(Counter(labels[i] for i in tr).values())
    if len(va) < MIN_VAL_SERIES or left < MIN_TRAIN_PER_CLASS:
        why = (f"it would hold {len(va)} series (< {MIN_VAL_SERIES})" if len(va) < MIN_VAL_SERIES else
               f"a class would keep {left} training series (< {MIN_TRAIN_PER_CLASS})")
        return list(range(n)), [], (f"validation skipped because {why}: trained on all {n} training series for "
                                    "all epochs")
    return tr, va, None


def top_confusions(cm: np.ndarray, classes: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The `k` largest off-diagonal cells: true class, predicted class, count, share of that true class."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:k]
    rows = []
    for flat in order:
        i, j = np.unravel_index(flat, cm.shape)
        if off[i, j] == 0:
            break
        rows.append({"true": classes[i], "predicted": classes[j], "count": int(off[i, j]),
                     "share_of_true": float(off[i, j] / max(cm[i].sum(), 1))})
    return rows


def plot_learning_curve(history: dict[str, Any], path: Path, title: str) -> Path:
    """Training loss per epoch (left axis) and training/validation accuracy (right axis); the refit too."""
    fig = Figure(figsize=(7.5, 4.0), constrained_layout=True)
    ax = fig.subplots()
    runs = [("", history["epochs"]), ("refit ", history.get("refit_epochs") or [])]
    ax2 = ax.twinx()
    for prefix, rows in runs:
        if not rows:
            continue
        ep = [r["epoch"] for r in rows]
        ax.plot(ep, [r["train_loss"] for r in rows], color="tab:blue", ls="--" if prefix else "-",
                label=f"{prefix}training loss")
        ax2.plot(ep, [r["train_accuracy"] for r in rows], color="tab:green", ls="--" if prefix else "-", alpha=0.7,
                 label=f"{prefix}training accuracy (augmented batches)")
        if "val_accuracy" in rows[0]:
            ax2.plot(ep, [r["val_accuracy"] for r in rows], color="tab:orange", label="validation accuracy")
    if history.get("epochs") and "val_accuracy" in history["epochs"][0]:
        ax2.axvline(history["best_epoch"], color="grey", ls=":", label=f"chosen epoch {history['best_epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center right")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru classify`."""
    p = subparsers.add_parser("classify", help="time-series classification (convolutional GRU) vs 1-NN DTW and "
                              "MiniRocket", description=__doc__.split("\n\n")[0],
                              formatter_class=DefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default="japanese_vowels",
                   help="built-in set (japanese_vowels, gunpoint, basic_motions, arrowhead, italy_power_demand, "
                        "osuleaf, acsf1; read from an installed sktime), a .ts file, a UCR text file "
                        "(.txt/.tsv/.csv, label first then values, no header) or a long-format CSV/TSV/Parquet")
    d.add_argument("--test-data", help="the test file (same format as --data). Without it: NAME_TEST beside a "
                   "NAME_TRAIN file is used (and reported), else a table's split column, else --test-fraction")
    d.add_argument("--id-column", help="table: column naming the sequence each row (time step) belongs to")
    d.add_argument("--label-column", help="table: column with the class (constant within a sequence)")
    d.add_argument("--feature-columns", help="table: comma-separated feature columns (default: all numeric "
                   "columns except a time-like one)")
    d.add_argument("--time-column", help="table: column that orders the steps within a sequence (default: a "
                   "numeric column named like time/step/frame or increasing in every sequence, reported)")
    d.add_argument("--split-column", help="table: column with train/test per sequence (default: a column named "
                   "'split' if there is one)")
    d.add_argument("--nan", choices=("error", "drop", "ffill", "interpolate", "zero"), default="error",
                   help="table: what to do with missing feature values")
    d.add_argument("--test-fraction", type=float, default=0.3,
                   help="share of series held out for testing (stratified) when no test part is given")
    m = p.add_argument_group("model")
    m.add_argument("--filters", default="64,128", help="convolution widths F1,F2 (stem/last block, middle block)")
    m.add_argument("--hidden-size", type=int, default=64, help="GRU units")
    m.add_argument("--gru-steps", type=int, default=128,
                   help="the most steps the GRU reads: the stem's stride is ceil(longest series / this)")
    m.add_argument("--branches", choices=BRANCHES, default="both", help="convolutional and GRU branch, or one")
    m.add_argument("--dropout", type=float, default=0.0, help="before the linear head")
    m.add_argument("--gru-dropout", type=float, default=0.8, help="on the GRU branch's summary (as in GRU-FCN)")
    t = p.add_argument_group("training")
    t.add_argument("--normalise", choices=NORMALISATIONS, default="global",
                   help="global: each channel to mean 0 / sd 1 with the training series' statistics (keeps "
                        "levels that tell classes apart); series: each series and channel on its own (for data "
                        "whose offsets and scales are nuisance); none")
    t.add_argument("--slice-ratio", type=float, default=0.9,
                   help="window slicing: training batches keep a random window of this share of each series")
    t.add_argument("--jitter", type=float, default=0.0, help="sd of Gaussian noise added to training batches")
    t.add_argument("--members", type=int, default=2,
                   help="networks whose probabilities are averaged: with validation and refit the validated run "
                        "and the refit (no extra training), else extra runs with other seeds")
    t.add_argument("--test-views", type=int, default=5,
                   help="with window slicing, each test series is also classified from this many windows of "
                        "--slice-ratio of its length (start to end) and the probabilities averaged")
    t.add_argument("--epochs", type=int, default=200, help="length of the cosine schedule")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of training series used to pick the epoch by accuracy (0: none; skipped when the "
                        f"part would hold < {MIN_VAL_SERIES} series)")
    t.add_argument("--refit", action=argparse.BooleanOptionalAction, default=True,
                   help="after validation, train again on all training series up to the chosen epoch")
    t.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                   help="score 1-NN DTW and MiniRocket (sktime) on the same split")
    t.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_from_args, task="classify")
    return p


def _filters(text: str) -> tuple[int, int]:
    try:
        f1, f2 = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--filters takes two widths like 64,128, got {text!r}") from None
    return f1, f2


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    result = classify(
        args.data, test_data=args.test_data, id_column=args.id_column, label_column=args.label_column,
        feature_columns=comma_list(args.feature_columns), time_column=args.time_column, split_column=args.split_column,
        nan=args.nan, test_fraction=args.test_fraction, val_fraction=args.val_fraction, refit=args.refit,
        normalise=args.normalise, filters=_filters(args.filters), hidden_size=args.hidden_size,
        gru_steps=args.gru_steps, branches=args.branches, dropout=args.dropout,
        gru_dropout=args.gru_dropout, slice_ratio=args.slice_ratio,
        jitter=args.jitter, members=args.members, test_views=args.test_views, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, peers=args.peers,
        seed=args.seed, out_dir=args.out, overwrite=args.force, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    split = result["split"]
    print(f"\nclassify: {result['data']} ({result['description']})")
    print(f"split: {split.get('how', '')}; train {split['train_sequences']}, test {split['test_sequences']} series")
    for note in result["notes"]:
        print(f"note: {note}")
    chosen = (f"epoch {result['best_epoch']} chosen on validation accuracy" + (", refit on all training series"
              if result["refit"] else "")) if result["val_sequences"] else f"{result['settings']['epochs']} epochs"
    print(f"{len(result['classes'])} classes, {result['channels']} channel(s), lengths {result['length_min']}-"
          f"{result['length_max']} (the GRU reads {result['gru_steps_read']} steps); "
          f"train {result['train_sequences']}, "
          f"validation {result['val_sequences']}, test {result['test_sequences']}; {result['num_parameters']} "
          f"parameters; {chosen}\n")
    rows = [[name, m["accuracy"], m["macro_f1"], m["seconds"] if m["seconds"] is not None else float("nan")]
            for name, m in result["metrics"].items()]
    print(format_table(rows, ["method", "test accuracy", "macro-F1", "seconds"], digits=3))
    classes = result["classes"]
    if len(classes) <= MAX_CLASSES_PRINTED:
        print("\nconfusion matrix (rows: true class, columns: predicted)")
        print(format_table([[c, *row] for c, row in zip(classes, result["confusion"])], ["true", *classes]))
    elif result["top_confusions"]:
        print(f"\nlargest confusions of {result['model']} (the full {len(classes)}x{len(classes)} matrix is in "
              f"{Path(result['outputs']['confusion.csv']).name} and {Path(result['outputs']['confusion.png']).name})")
        print(format_table([[r["true"], r["predicted"], r["count"], r["share_of_true"]]
                            for r in result["top_confusions"]], ["true", "predicted as", "count", "share of true"]))
    print(f"\nwrote {result['outputs']['metrics.json']}, {result['outputs']['predictions.csv']}, "
          f"{result['outputs']['confusion.png']}, {result['outputs']['learning_curve.png']} "
          f"({result['seconds']:.1f} s)")
