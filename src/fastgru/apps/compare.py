"""`compare`: GRU vs LSTM vs tanh RNN on the same data, matched parameter budget, several seeds.

The reference experiment is Chung et al. 2014 ("Empirical Evaluation of Gated Recurrent Neural Networks
on Sequence Modeling"), Table 2, JSB Chorales: models of about 20k parameters (GRU 46 units, LSTM 36,
tanh RNN 100), RMSProp, gradient-norm clipping at 1, early stopping on validation; the score is the
negative log-likelihood per time step (nats) on the test set at the best validation epoch.

Every model goes through the same code: `fastgru.train.models.build_model` (cell "gru" is fastgru's own GRU,
"lstm"/"rnn" torch's, "torch_gru" torch.nn.GRU for speed comparisons) and `fastgru.train.Trainer`.
Outputs in `out_dir` (the command refuses to replace them without --force): one folder per run with its
history.json, results.json (everything), summary.csv (one row per cell), table.md (the Markdown table) and
curves.png (validation metric against epoch and against training time).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from fastgru.apps.common import check_outputs, comma_list, format_table, write_csv
from fastgru.apps.data import char_text, jsb_chorales
from fastgru.apps.plots.heatmap import save_figure
from fastgru.io import atomic
from fastgru.train import SequenceData, TrainConfig, Trainer
from fastgru.train.models import build_model, hidden_size_for_budget

CELL_NAMES = {"gru": "GRU (fastgru)", "lstm": "LSTM (torch)", "rnn": "tanh RNN (torch)", "torch_gru": "GRU (torch)"}
# Chung et al. 2014, Table 2 (test NLL per step) and their model sizes, for JSB Chorales.
CHUNG_JSB_TEST_NLL = {"gru": 8.54, "torch_gru": 8.54, "lstm": 8.67, "rnn": 9.10}
CHUNG_JSB_UNITS = {"gru": 46, "torch_gru": 46, "lstm": 36, "rnn": 100}
DATASETS = ("jsb", "text")
OUTPUTS = ("results.json", "summary.csv", "table.md", "curves.png")


@dataclass
class CompareData:
    """One data set made ready for the comparison.

    model: the ModelConfig fields shared by every cell (sizes, head). metric: the key of the Trainer's
    evaluation dict that is reported (lower is better), metric_label how the table names it.
    paper: the published test value per cell, when there is one.
    """

    name: str
    train: SequenceData
    valid: SequenceData
    test: SequenceData
    model: dict[str, Any]
    metric: str
    metric_label: str
    default_hidden: dict[str, int] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)


def _rolls_data(rolls: list[torch.Tensor]) -> SequenceData:
    x, y, lengths = jsb_chorales.batch_rolls(rolls)
    return SequenceData(x, y, lengths)


def jsb_data(limit: int | None = None, note_range: str = "piano") -> CompareData:
    """JSB Chorales as next-step piano-roll prediction; the metric is the NLL per time step (nats)."""
    splits = [jsb_chorales.load_jsb_chorales(s, note_range=note_range, limit=limit) for s in jsb_chorales.SPLITS]
    n = splits[0].n_notes
    return CompareData(
        name="JSB Chorales",
        train=_rolls_data(splits[0].rolls),
        valid=_rolls_data(splits[1].rolls),
        test=_rolls_data(splits[2].rolls),
        model={"input_size": n, "output_size": n, "head": "multilabel", "per_step": True},
        metric="loss",
        metric_label="NLL per step (nats)",
        default_hidden=dict(CHUNG_JSB_UNITS),
        paper=dict(CHUNG_JSB_TEST_NLL),
    )


def text_data(
    text: str | None = None,
    *,
    seq_len: int = 100,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    max_chars: int | None = None,
    name: str = "Shakespeare's Sonnets (characters)",
) -> CompareData:
    """Character-level language modelling (built-in Sonnets when `text` is None); metric bits per character."""
    if text is None:
        text = char_text.load_builtin_text("shakespeare_sonnets")
    if max_chars is not None:
        text = text[:max_chars]
    vocab = char_text.CharVocab.from_text(text)
    splits = char_text.split_ids(vocab.encode(text), valid_frac, test_frac)
    parts = dict(zip(("training", "validation", "test"), splits))
    char_text.check_length(parts, seq_len)
    train, valid, test = (SequenceData(*char_text.chunks(ids, seq_len)) for ids in parts.values())
    return CompareData(
        name=name,
        train=train,
        valid=valid,
        test=test,
        model={"vocab_size": len(vocab), "head": "next_token"},
        metric="bits_per_token",
        metric_label="bits per character",
    )


def hidden_sizes_for(data: CompareData, cells: Sequence[str], budget: int | None) -> dict[str, int]:
    """Hidden size per cell: the data set's published sizes, else the size that meets `budget`."""
    sizes = {}
    for cell in cells:
        if budget is None and cell in data.default_hidden:
            sizes[cell] = data.default_hidden[cell]
        else:
            sizes[cell] = hidden_size_for_budget(budget or 20_000, cell, **data.model)
    return sizes


class IgnoreLengths(torch.nn.Module):
    """Runs a causal per-step model on the padded batch without `lengths` (the loss still masks padding).

    For a unidirectional per-step model the outputs at real steps do not depend on the padding after
    them, so the numbers are the same; what changes is the work: every cell then runs the full padded
    batch (torch's LSTM/RNN are not handed a PackedSequence, fastgru's GRU gets no `lengths`), which is
    the like-for-like setting for timing.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        if not model.config.per_step or model.config.bidirectional:
            raise ValueError("padded=True needs a unidirectional model with per-step outputs")
        self.model = model
        self.config = model.config

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: Any = None,
                return_state: bool = False) -> Any:
        return self.model(x, state=state, return_state=return_state)

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def _warm_up(model: torch.nn.Module, data: SequenceData) -> None:
    """One forward and backward pass on a few sequences, so one-time costs (loading the fused CPU kernel,
    allocator growth) do not land in the first epoch's time. Leaves the weights as they are."""
    batch = data.take(torch.arange(min(4, len(data))), per_step=bool(model.config.per_step))
    model(batch.x, lengths=batch.lengths).sum().backward()
    model.zero_grad(set_to_none=True)


def interleaved_epoch_seconds(
    data: CompareData,
    sizes: dict[str, int],
    *,
    rounds: int,
    padded: bool = False,
    threads: int | None = None,
    **train: Any,
) -> dict[str, list[float]]:
    """Seconds of one training epoch per cell, the cells taking turns epoch by epoch for `rounds` rounds.

    On a shared machine the speed drifts over minutes; runs made one after the other see different
    conditions, cells taking turns see the same. `train`: TrainConfig fields (batch_size, optimizer, ...).
    """
    models = {}
    for cell in sizes:
        torch.manual_seed(0)
        model = build_model(cell=cell, hidden_size=sizes[cell], **data.model)
        models[cell] = IgnoreLengths(model) if padded else model
        _warm_up(models[cell], data.train)
    seconds: dict[str, list[float]] = {cell: [] for cell in sizes}
    for _ in range(rounds):
        for cell, model in models.items():
            if threads is not None:
                torch.set_num_threads(threads)
            config = TrainConfig(epochs=1, device="cpu", checkpoint_every=0, progress=False, **train)
            seconds[cell].append(Trainer(model, config).fit(data.train)["epochs"][0]["train_seconds"])
    return seconds


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def run_compare(
    data: CompareData,
    out_dir: str | Path,
    *,
    cells: Sequence[str] = ("gru", "lstm", "rnn"),
    seeds: Sequence[int] = (0, 1, 2),
    hidden_sizes: dict[str, int] | None = None,
    budget: int | None = None,
    epochs: int = 300,
    patience: int = 15,
    optimizer: str = "rmsprop",
    lr: float = 1e-3,
    batch_size: int = 16,
    clip_norm: float = 1.0,
    padded: bool = False,
    threads: int | None = None,
    timing_rounds: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Train every cell with every seed on `data`; write the outputs to `out_dir`; return results.json's dict.

    Each run keeps the weights of its best validation epoch (early stopping after `patience` epochs
    without improvement) and is scored on the test set with them. Times per epoch are each run's median
    (robust to a busy machine), after a warm-up pass. padded=True: see :class:`IgnoreLengths`.
    threads: torch's CPU thread count, set before every run so all cells get the same (None: leave it).
    timing_rounds: after the runs, also time this many training epochs per cell with the cells taking
    turns (:func:`interleaved_epoch_seconds`), the fair speed comparison on a busy machine.
    """
    if not cells:
        raise ValueError("cells: give at least one of gru, lstm, rnn, torch_gru")
    unknown = [c for c in cells if c not in CELL_NAMES]
    if unknown:
        raise ValueError(f"cells: unknown {unknown}; choose from {sorted(CELL_NAMES)}")
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be a positive number of CPU threads, got {threads}")
    if timing_rounds < 0:
        raise ValueError(f"timing_rounds must be >= 0, got {timing_rounds}")
    out_dir = Path(out_dir)
    sizes = hidden_sizes or hidden_sizes_for(data, cells, budget)
    runs = []
    for cell in cells:
        for seed in seeds:
            if threads is not None:
                torch.set_num_threads(threads)
            torch.manual_seed(seed)  # the initial weights depend on the seed too
            model = build_model(cell=cell, hidden_size=sizes[cell], **data.model)
            if padded:
                model = IgnoreLengths(model)
            _warm_up(model, data.train)
            run_dir = out_dir / f"{cell}-seed{seed}"
            config = TrainConfig(
                epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, clip_norm=clip_norm,
                patience=patience, seed=seed, device="cpu", out_dir=str(run_dir), checkpoint_every=0,
                progress=progress,
            )
            trainer = Trainer(model, config)
            history = trainer.fit(data.train, data.valid)
            test = trainer.evaluate(data.test)
            epochs_run = history["epochs"]
            best = next(e for e in epochs_run if e["epoch"] == history["best_epoch"])
            runs.append({
                "cell": cell,
                "seed": seed,
                "hidden_size": sizes[cell],
                "parameters": model.num_parameters(),
                "epochs": len(epochs_run),
                "best_epoch": history["best_epoch"],
                "train_seconds_per_epoch": statistics.median(e["train_seconds"] for e in epochs_run),
                "epoch_seconds": statistics.median(e["train_seconds"] + e["eval_seconds"] for e in epochs_run),
                "best_valid": best[f"val_{data.metric}"],
                "test": test[data.metric],
                "curve_valid": [e[f"val_{data.metric}"] for e in epochs_run],
                "curve_seconds": [e["train_seconds"] for e in epochs_run],
            })
            if not math.isfinite(runs[-1]["test"]):
                raise RuntimeError(f"{cell} seed {seed}: the test metric is not finite ({runs[-1]['test']})")
    interleaved = {}
    if timing_rounds:
        interleaved = interleaved_epoch_seconds(
            data, {c: sizes[c] for c in cells}, rounds=timing_rounds, padded=padded, threads=threads,
            batch_size=batch_size, optimizer=optimizer, lr=lr, clip_norm=clip_norm,
        )
    summary = summarize(runs, data, interleaved)
    results = {
        "data": data.name,
        "metric": data.metric_label,
        "settings": {"cells": list(cells), "seeds": list(seeds), "hidden_sizes": sizes, "epochs": epochs,
                     "patience": patience, "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
                     "clip_norm": clip_norm, "padded": padded, "timing_rounds": timing_rounds,
                     "torch_threads": threads if threads is not None else torch.get_num_threads()},
        "summary": summary,
        "runs": runs,
        "interleaved_epoch_seconds": interleaved,
    }
    atomic.write_json(out_dir / "results.json", results)
    write_csv(pd.DataFrame(summary), out_dir / "summary.csv")
    atomic.write_text(out_dir / "table.md", markdown_table(summary, data) + "\n")
    plot_curves(runs, data, out_dir / "curves.png")
    return results


def summarize(
    runs: list[dict[str, Any]], data: CompareData, interleaved: dict[str, list[float]] | None = None
) -> list[dict[str, Any]]:
    """One row per cell: sizes, time per epoch, best validation and test metric as mean and sd over seeds;
    with `interleaved` timings, their median per cell too."""
    rows = []
    for cell in dict.fromkeys(r["cell"] for r in runs):
        mine = [r for r in runs if r["cell"] == cell]
        row: dict[str, Any] = {"cell": cell, "model": CELL_NAMES[cell], "hidden_size": mine[0]["hidden_size"],
                               "parameters": mine[0]["parameters"], "seeds": len(mine)}
        for key in ("train_seconds_per_epoch", "epoch_seconds", "best_valid", "test"):
            row[f"{key}_mean"], row[f"{key}_sd"] = _mean_sd([r[key] for r in mine])
        row["epochs_mean"] = statistics.fmean(r["epochs"] for r in mine)
        chosen = min(mine, key=lambda r: r["best_valid"])  # model selection on validation, as Chung et al. did
        row["selected_seed"], row["selected_test"] = chosen["seed"], chosen["test"]
        row["paper_test"] = data.paper.get(cell)
        row["interleaved_seconds_median"] = statistics.median(interleaved[cell]) if interleaved else None
        rows.append(row)
    return rows


def markdown_table(summary: list[dict[str, Any]], data: CompareData) -> str:
    """The comparison as a Markdown table (mean +- sd over seeds)."""
    timed = any(r.get("interleaved_seconds_median") is not None for r in summary)
    paper = any(r["paper_test"] is not None for r in summary)
    metric = data.metric_label
    headers = ["model", "units", "parameters", "train s/epoch"]
    headers += ["train s/epoch, cells taking turns"] if timed else []
    headers += ["epochs run", f"best valid {metric}", f"test {metric}", "test of the best-validation seed"]
    headers += ["paper's test"] if paper else []
    rows = []
    for r in summary:
        row = [r["model"], r["hidden_size"], f"{r['parameters']:,}",
               f"{r['train_seconds_per_epoch_mean']:.3f} +- {r['train_seconds_per_epoch_sd']:.3f}"]
        row += [f"{r['interleaved_seconds_median']:.3f}"] if timed else []
        row += [f"{r['epochs_mean']:.0f}", f"{r['best_valid_mean']:.3f} +- {r['best_valid_sd']:.3f}",
                f"{r['test_mean']:.3f} +- {r['test_sd']:.3f}", f"{r['selected_test']:.3f} (seed {r['selected_seed']})"]
        row += [f"{r['paper_test']:.2f}" if r["paper_test"] is not None else ""] if paper else []
        rows.append(row)
    return format_table(rows, headers, markdown=True)


def plot_curves(runs: list[dict[str, Any]], data: CompareData, path: str | Path) -> Path:
    """Validation metric against epoch and against cumulative training time, one colour per cell."""
    fig = Figure(figsize=(11, 4))
    by_epoch, by_time = fig.subplots(1, 2, sharey=True)
    colours = dict(zip(CELL_NAMES, ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
    for cell in dict.fromkeys(r["cell"] for r in runs):
        for i, r in enumerate(x for x in runs if x["cell"] == cell):
            label = f"{CELL_NAMES[cell]} ({r['parameters']:,} params)" if i == 0 else None
            epochs = range(1, len(r["curve_valid"]) + 1)
            seconds = [sum(r["curve_seconds"][: k + 1]) for k in range(len(r["curve_seconds"]))]
            style = "--" if cell == "torch_gru" else "-"  # torch's GRU retraces fastgru's: same numbers
            by_epoch.plot(epochs, r["curve_valid"], style, color=colours[cell], alpha=0.8, label=label)
            by_time.plot(seconds, r["curve_valid"], style, color=colours[cell], alpha=0.8)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training time (s)")
    by_epoch.set_ylabel(f"validation {data.metric_label}")
    for ax in (by_epoch, by_time):
        ax.grid(True, alpha=0.3)
    values = [v for r in runs for v in r["curve_valid"]]
    low = min(values)
    by_epoch.set_ylim(low - 0.05 * abs(low), min(max(values), low + 3 * max(abs(low) * 0.1, 0.5)))
    by_epoch.legend()
    fig.suptitle(f"{data.name}: learning curves (one line per seed)")
    return save_figure(fig, path)


# -- command line -------------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru compare`."""
    p = subparsers.add_parser(
        "compare",
        help="GRU vs LSTM vs tanh RNN on the same data (matched parameters, several seeds)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--data", choices=DATASETS, default="jsb",
                   help="jsb: JSB Chorales, Chung et al. 2014's setting; text: char-level language model")
    p.add_argument("--text-file", help="with --data text: a UTF-8 text file (default: built-in Sonnets)")
    p.add_argument("--seq-len", type=int, default=100, help="with --data text: characters per training chunk")
    p.add_argument("--cells", default="gru,lstm,rnn", help="comma-separated: gru, lstm, rnn, torch_gru")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--budget", type=int, default=None,
                   help="parameter budget per model (default: JSB uses the paper's units, text 20000)")
    p.add_argument("--epochs", type=int, default=300, help="most epochs per run")
    p.add_argument("--patience", type=int, default=15, help="early stopping: epochs without improvement")
    p.add_argument("--optimizer", choices=("rmsprop", "adam"), default="rmsprop")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None,
                   help="use only this many sequences per split (JSB chorales) or characters (text), for a quick run")
    p.add_argument("--results-md", default=None, help="also write the table into this Markdown file (e.g. RESULTS.md)")
    p.add_argument("--section", default=None, help="section name in --results-md (default compare / compare-text)")
    p.add_argument("--padded", action="store_true",
                   help="JSB: run every cell on the padded batch without lengths (identical work, for timing)")
    p.add_argument("--timing-rounds", type=int, default=10,
                   help="then time this many epochs per cell with the cells taking turns (0: skip)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for every run (default: unchanged)")
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run `fastgru compare` from parsed arguments; prints the table and where the outputs are."""
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    seeds = comma_list(args.seeds, int, "--seeds")
    check_outputs(args.out, OUTPUTS, getattr(args, "force", False))
    if args.data == "jsb":
        if args.text_file:
            raise ValueError("--text-file goes with --data text")
        data = jsb_data(limit=args.limit)
    else:
        text = char_text.read_text(args.text_file) if args.text_file else None
        name = f"{Path(args.text_file).name} (characters)" if args.text_file else "Shakespeare's Sonnets (characters)"
        data = text_data(text, seq_len=args.seq_len, max_chars=args.limit, name=name)
    results = run_compare(
        data, args.out, cells=cells, seeds=seeds, budget=args.budget, epochs=args.epochs, patience=args.patience,
        optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, padded=args.padded,
        threads=args.threads, timing_rounds=args.timing_rounds, progress=bool(getattr(args, "progress", False)),
    )
    table = markdown_table(results["summary"], data)
    print(f"{data.name}: {len(seeds)} seed(s), {args.optimizer} lr {args.lr}, batch {args.batch_size}, "
          f"clipping 1.0, early stopping patience {args.patience}{', padded batches' if args.padded else ''}\n")
    print(table)
    out = Path(args.out)
    print(f"\nwrote {out / 'results.json'}, {out / 'summary.csv'}, {out / 'table.md'}, {out / 'curves.png'}")
    if args.results_md:
        from fastgru.io.markdown import replace_section

        section = args.section or ("compare" if args.data == "jsb" else f"compare-{args.data}")
        command = "fastgru " + " ".join(sys.argv[1:])
        threads = results["settings"]["torch_threads"]
        body = (f"Command: `{command}`\n\n{data.name}; seeds {args.seeds}, mean +- sd over seeds; {threads} torch "
                "thread(s); train s/epoch: median training-pass seconds per epoch of each run (evaluation not "
                f"included), mean +- sd over seeds; cells taking turns: median of {args.timing_rounds} training "
                "epochs per cell timed round-robin after the runs (the fair speed comparison on a shared machine)."
                "\n\n"
                f"{table}")
        padded = ", padded batches (the same work for every cell)" if args.padded else ""
        heading = f"### compare: {data.name}{padded}"
        replace_section(args.results_md, section, heading, body)
        print(f"updated section {section!r} of {args.results_md}")
    return results
