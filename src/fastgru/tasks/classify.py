"""`classify`: variable-length sequence classification with a GRU, against a majority-class baseline.

Sequences of different lengths are padded into one tensor and passed with ``lengths=`` (fastgru's GRU
runs each sequence to its own end; the class is read from the state at the sequence's last step). The
features are standardised with statistics of the training sequences' real steps. A stratified part of
the training set (`val_fraction`) is held out for early stopping; the test set is never seen in training.

Reported on the test set: accuracy, macro-F1 (the mean of the per-class F1 scores) and the confusion
matrix (rows: true class, columns: predicted), next to the baseline that always answers the most
frequent training class.

Outputs in `out_dir`: metrics.json, predictions.csv (true, predicted, probability of each class),
confusion.csv, confusion.png, history.json, model/ (weights + config + class names + scaler).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .. import atomic
from ..data.sequences import LabelledSequences, load_sequences, stratified_split
from ..data.tabular import DataFileError
from ..data.windows import Scaler
from ..models import build_model
from ..train import SequenceData, TrainConfig, Trainer, seed_everything
from ..train.checkpoints import save_model
from ..viz.heatmap import save_figure
from ._common import check_outputs, default_out, format_table, write_csv
from .forecast import _list, add_model_args

OUTPUTS = ("metrics.json", "predictions.csv", "confusion.csv", "confusion.png", "history.json")


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def macro_f1(cm: np.ndarray) -> float:
    """Mean over classes of F1 = 2 tp / (2 tp + fp + fn); a class absent from both truth and predictions
    is skipped."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present])) if present.any() else 0.0


def pad(seqs: Sequence[np.ndarray], scaler: Scaler) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised sequences padded with zeros into (N, T_max, C), and their lengths."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if (lengths < 1).any():
        raise DataFileError(f"{int((lengths < 1).sum())} sequence(s) have no steps")
    x = np.zeros((len(seqs), int(lengths.max()), seqs[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = scaler.transform(s)
    return torch.from_numpy(x), torch.from_numpy(lengths)


def classify(
    data: str | Path = "japanese_vowels",
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    nan: str = "error",
    test_fraction: float = 0.3,
    val_fraction: float = 0.2,
    cell: str = "gru",
    hidden_size: int = 64,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    epochs: int = 200,
    patience: int = 30,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    sequences: LabelledSequences | None = None,
) -> dict[str, Any]:
    """Train a sequence classifier on `data` and score it on its test split; returns the metrics dict."""
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("classify")
    ds = sequences if sequences is not None else load_sequences(
        data, id_column=id_column, label_column=label_column, feature_columns=feature_columns,
        time_column=time_column, test_fraction=test_fraction, seed=seed, nan=nan)
    for part, xs in (("training", ds.train_x), ("test", ds.test_x)):
        bad = sum(int(np.isnan(x).any()) for x in xs)
        if bad:
            raise DataFileError(f"{ds.name}: {bad} {part} sequence(s) hold missing values inside them; "
                                "fill or drop them first (nan='ffill' / 'drop' for tables)")
    classes = ds.classes
    if len(classes) < 2:
        raise DataFileError(f"{ds.name}: need at least two classes, found {classes}")
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([index[c] for c in ds.train_y])
    y_test = np.array([index[c] for c in ds.test_y])
    tr, va = stratified_split(ds.train_y, val_fraction, seed)
    if not va:
        raise DataFileError(f"{ds.name}: too few training sequences ({len(ds.train_x)}) to hold out a validation part")
    out = check_outputs(out, OUTPUTS, overwrite)

    scaler = Scaler.fit(np.concatenate([ds.train_x[i] for i in tr]))
    x_tr, l_tr = pad([ds.train_x[i] for i in tr], scaler)
    x_va, l_va = pad([ds.train_x[i] for i in va], scaler)
    x_te, l_te = pad(ds.test_x, scaler)
    train = SequenceData(x_tr, torch.from_numpy(y_all[tr]), l_tr)
    val = SequenceData(x_va, torch.from_numpy(y_all[va]), l_va)
    seed_everything(seed)
    model = build_model(cell=cell, input_size=x_tr.shape[2], hidden_size=hidden_size, num_layers=num_layers,
                        bidirectional=bidirectional, dropout=dropout, output_size=len(classes), head="classification")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed, out_dir=str(out),
                      checkpoint_every=0, progress=progress)
    trainer = Trainer(model, cfg)
    history = trainer.fit(train, val)
    logits = trainer.predict(SequenceData(x_te, torch.from_numpy(y_test), l_te))
    probs = logits.softmax(-1).numpy()
    pred = probs.argmax(1)

    cm = confusion_matrix(y_test, pred, len(classes))
    majority = int(np.bincount(y_all, minlength=len(classes)).argmax())
    cm_base = confusion_matrix(y_test, np.full_like(y_test, majority), len(classes))
    model_name = f"{cell.upper()} ({'fastgru' if cell == 'gru' else 'torch'})"
    if bidirectional:
        model_name += ", bidirectional"
    scores = {
        model_name: {"accuracy": float((pred == y_test).mean()), "macro_f1": macro_f1(cm)},
        f"majority class ({classes[majority]!r})": {"accuracy": float((y_test == majority).mean()),
                                                    "macro_f1": macro_f1(cm_base)},
    }
    lengths = np.array([len(x) for x in ds.train_x + ds.test_x])
    frame = pd.DataFrame({"true": [classes[i] for i in y_test], "predicted": [classes[i] for i in pred],
                          "length": l_te.numpy()})
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, j]
    write_csv(frame, out / "predictions.csv")
    cm_frame = pd.DataFrame(cm, columns=[f"pred_{c}" for c in classes])
    cm_frame.insert(0, "true", classes)
    write_csv(cm_frame, out / "confusion.csv")
    _plot_confusion(cm, classes, out / "confusion.png", f"{ds.name}: {model_name}, test accuracy "
                    f"{scores[model_name]['accuracy']:.3f}")
    save_model(model, out / "model")
    atomic.write_json(out / "model" / "classifier.json", {"classes": classes, "scaler": scaler.to_dict(),
                                                          "channels": ds.channels})
    result = {
        "task": "classify", "data": ds.name, "description": ds.description, "classes": classes,
        "channels": len(ds.channels), "train_sequences": len(tr), "val_sequences": len(va),
        "test_sequences": len(ds.test_x), "length_min": int(lengths.min()), "length_max": int(lengths.max()),
        "metrics": scores, "model": model_name, "confusion": cm.tolist(),
        "best_epoch": history["best_epoch"], "epochs_run": len(history["epochs"]),
        "num_parameters": history["num_parameters"],
        "settings": {"cell": cell, "hidden_size": hidden_size, "num_layers": num_layers,
                     "bidirectional": bidirectional, "epochs": epochs, "patience": patience,
                     "batch_size": batch_size, "lr": lr, "seed": seed},
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in OUTPUTS},
    }
    atomic.write_json(out / "metrics.json", result)
    return result


def _plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    k = len(classes)
    fig = Figure(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k), constrained_layout=True)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45 if max(len(c) for c in classes) > 3 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru classify`."""
    p = subparsers.add_parser("classify", help="variable-length sequence classification vs a majority baseline",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="japanese_vowels",
                   help="built-in set (japanese_vowels, gunpoint, basic_motions, arrowhead, italy_power_demand; "
                        "read from an installed sktime), a .ts file, or a long-format CSV/TSV/Parquet")
    p.add_argument("--id-column", help="table: column naming the sequence each row (time step) belongs to")
    p.add_argument("--label-column", help="table: column with the class (constant within a sequence)")
    p.add_argument("--feature-columns", help="table: comma-separated feature columns (default: all numeric)")
    p.add_argument("--time-column", help="table: column that orders the steps within a sequence")
    p.add_argument("--nan", choices=("error", "drop", "ffill", "interpolate", "zero"), default="error",
                   help="table: what to do with missing feature values (default: stop with a message)")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="table / single .ts file: share of sequences held out for testing (stratified)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of training sequences for early stopping")
    p.add_argument("--bidirectional", action="store_true")
    add_model_args(p, hidden=64, epochs=200, patience=30, lr=3e-3)
    p.set_defaults(func=run_from_args, task="classify")
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    result = classify(
        args.data, id_column=args.id_column, label_column=args.label_column,
        feature_columns=_list(args.feature_columns), time_column=args.time_column, nan=args.nan,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction, cell=args.cell,
        hidden_size=args.hidden_size, num_layers=args.num_layers, bidirectional=args.bidirectional,
        dropout=args.dropout, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, out_dir=args.out, overwrite=args.force, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"\nclassify: {result['data']} ({result['description']})")
    print(f"{len(result['classes'])} classes, {result['channels']} channel(s), lengths {result['length_min']}-"
          f"{result['length_max']}; train {result['train_sequences']}, validation {result['val_sequences']}, "
          f"test {result['test_sequences']}; {result['num_parameters']} parameters, best epoch "
          f"{result['best_epoch']} of {result['epochs_run']}\n")
    rows = [[name, m["accuracy"], m["macro_f1"]] for name, m in result["metrics"].items()]
    print(format_table(rows, ["method", "test accuracy", "macro-F1"]))
    classes = result["classes"]
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print(format_table([[c, *row] for c, row in zip(classes, result["confusion"])], ["true", *classes]))
    print(f"\nwrote {result['outputs']['metrics.json']}, {result['outputs']['predictions.csv']}, "
          f"{result['outputs']['confusion.png']} ({result['seconds']:.1f} s)")
