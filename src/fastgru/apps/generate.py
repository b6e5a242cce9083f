"""`generate`: a character-level GRU language model — train on a text within a time budget, score held-out
text in bits per character beside bz2 and lzma, and sample new text from a prompt.

The text is split in reading order into training, validation and test parts (or the test part is a file
of its own, ``--test-data``); ``--max-chars`` then cuts the training part only, so the test set never
changes. The vocabulary is built from the training part alone, plus an <unk> symbol for characters it
lacks; how many held-out characters were unknown is reported. Training is truncated BPTT over long
streams with the state carried across batches (fastgru.apps.charlm.training); the test part is scored as one
continuous stream. A saved model scores any file with ``--load DIR --eval FILE``.

Outputs in ``--out``: model/ (weights + config), vocab.json, history.json (every validation),
metrics.json, learning_curve.png and sample.txt. Sampling from a saved model (``--load``) writes a new
sample file next to the earlier ones and never replaces one unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from fastgru.apps.charlm import compressors, sizing
from fastgru.apps.charlm.training import MAX_VALID_CHARS, CharTrainSettings, stream_bits_per_char, train_char_lm
from fastgru.apps.common import check_outputs, format_table
from fastgru.apps.data import char_text
from fastgru.apps.plots.heatmap import save_figure
from fastgru.io import atomic
from fastgru.train.models import SequenceModel, build_model
from fastgru.train.resume import load_model, save_model

OUTPUTS = ("model", "vocab.json", "history.json", "metrics.json", "learning_curve.png", "sample.txt")
DEFAULT_TIME_LIMIT = 600.0
PROMPT_CHARS = 20  # the default prompt is the start of the test part, this long


def _machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15_min": [round(v, 2) for v in load]}


def train_char_model(
    text: str | char_text.TextSplit,
    out_dir: str | Path,
    *,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    embedding_dim: int | None = None,
    dropout: float | None = None,
    seq_len: int = 64,
    batch_size: int = 16,
    lr: float = 5e-3,
    epochs: int = 100,
    time_limit: float | None = None,
    patience: int | None = 12,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    baselines: bool = True,
    progress: bool = False,
) -> tuple[SequenceModel, char_text.CharVocab, dict[str, Any]]:
    """Train a GRU character model; write model/, vocab.json, history.json, metrics.json, learning_curve.png.

    Args:
        text: the whole text (split here by `valid_frac` and `test_frac`) or a ready
            :class:`~fastgru.apps.data.char_text.TextSplit`.
        hidden_size, num_layers, embedding_dim, dropout: the model; None takes
            :func:`fastgru.apps.charlm.sizing.default_model_size` for the training text and `time_limit`.
        seq_len, batch_size, lr, epochs, time_limit, patience: see
            :class:`fastgru.apps.charlm.training.CharTrainSettings`.
        baselines: also compute bz2's and lzma's bits per character on the test part.

    Returns (model with its best-validation weights, vocabulary, metrics). Raises ValueError before any
    training when a part is too short.
    """
    split = text if isinstance(text, char_text.TextSplit) else char_text.split_text(text, valid_frac, test_frac)
    for name, part in (("training", split.train), ("validation", split.valid), ("test", split.test)):
        if len(part) < seq_len + 2:
            raise ValueError(
                f"text too short for seq_len={seq_len}: the {name} part has {len(part)} characters, "
                f"and one chunk needs seq_len + 2 = {seq_len + 2}; give a longer text or a smaller --seq-len"
            )
    settings = CharTrainSettings(seq_len=seq_len, batch_size=batch_size, lr=lr, epochs=epochs,
                                 time_limit=time_limit, patience=patience, seed=seed)
    vocab = char_text.CharVocab.from_text(split.train, unknown=True)
    train_ids, valid_ids, test_ids = (vocab.encode(t, allow_unknown=True) for t in (split.train, split.valid,
                                                                                     split.test))
    auto = sizing.default_model_size(len(split.train), time_limit)
    shape = {
        "hidden_size": hidden_size or auto.hidden_size,
        "num_layers": num_layers or auto.num_layers,
        "embedding_dim": min(embedding_dim or auto.embedding_dim, len(vocab)),
        "dropout": auto.dropout if dropout is None else dropout,
    }
    if not 0 <= shape["dropout"] < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {shape['dropout']}")
    out_dir = Path(out_dir)
    base: dict[str, float] = {}
    if baselines:
        base = compressors.baselines(split.train + split.valid, split.test)
    torch.manual_seed(seed)
    model = build_model(cell="gru", vocab_size=len(vocab), embedding_dim=shape["embedding_dim"],
                        hidden_size=shape["hidden_size"], num_layers=shape["num_layers"], head="next_token",
                        dropout=shape["dropout"], head_dropout=shape["dropout"])
    machine_before = _machine()
    run = train_char_lm(model, train_ids, valid_ids, settings, progress=progress)
    test_bpc = stream_bits_per_char(model, test_ids)
    train_sample = train_ids[:MAX_VALID_CHARS]
    scores = {
        "train": stream_bits_per_char(model, train_sample, streams=8),
        "valid": run["best"]["valid_bits_per_char"],
        "test": test_bpc,
    }
    unknown = {name: sum(vocab.unknown_chars(part).values()) for name, part in (("valid", split.valid),
                                                                                 ("test", split.test))}
    metrics = {
        "bits_per_char": scores,
        "baselines_bits_per_char": base,
        "uniform_bits_per_char": math.log2(len(vocab)),  # a model that knows nothing
        "characters": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        "split": split.source,
        "scoring": {
            "test": "one continuous stream from a zero state; every character after the first predicted",
            "valid": f"the best validation during training ({run['valid_streams']} contiguous streams of at most "
                     f"the first {MAX_VALID_CHARS:,} characters)",
            "train": f"the first {min(len(split.train), MAX_VALID_CHARS):,} training characters, 8 streams, eval mode",
            "baselines": "8 * (len(compress(train + valid + test)) - len(compress(train + valid))) / len(test)",
        },
        "vocabulary_size": len(vocab),
        "unknown_characters": {**unknown, "test_chars": "".join(sorted(vocab.unknown_chars(split.test)))},
        "model": {**shape, "parameters": model.num_parameters(), "default_size": auto.to_dict(),
                  "sized_by_default": hidden_size is None},
        "training": {k: run[k] for k in ("stop_reason", "steps", "chars", "seconds", "train_seconds",
                                         "chars_per_second", "batch_size", "eval_every", "settings")},
        "best_evaluation": run["best"],
        "machine": {"before": machine_before, "after": _machine()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model").mkdir(exist_ok=True)
    save_model(model, out_dir / "model")
    atomic.write_json(out_dir / "vocab.json", {**vocab.to_dict(), "prompt": split.test[:PROMPT_CHARS]})
    atomic.write_json(out_dir / "history.json", run)
    atomic.write_json(out_dir / "metrics.json", metrics)
    plot_learning_curve(run, metrics, out_dir / "learning_curve.png")
    return model, vocab, metrics


def plot_learning_curve(run: dict[str, Any], metrics: dict[str, Any], path: str | Path) -> Path:
    """Bits per character (training window, validation) against seconds and epochs, with the compressors."""
    evals = run["evaluations"]
    fig = Figure(figsize=(11, 4), constrained_layout=True)
    for ax, key, label in ((fig.add_subplot(1, 2, 1), "seconds", "training time (s)"),
                           (fig.add_subplot(1, 2, 2), "epoch", "epochs (passes over the training text)")):
        xs = [e[key] for e in evals]
        ax.plot(xs, [e["train_bits_per_char"] for e in evals], label="training (recent batches, dropout on)")
        ax.plot(xs, [e["valid_bits_per_char"] for e in evals], label="validation")
        if evals:
            ax.plot([run["best"][key]], [metrics["bits_per_char"]["test"]], "k*", markersize=10,
                    label=f"test, best model ({metrics['bits_per_char']['test']:.3f})")
        for (name, value), style in zip(metrics["baselines_bits_per_char"].items(), (":", "-.")):
            ax.axhline(value, color="gray", linestyle=style, label=f"{name} on test ({value:.3f})")
        ax.set_xlabel(label)
        ax.set_ylabel("bits per character")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.suptitle(f"GRU character model, {metrics['model']['parameters']:,} parameters")
    return save_figure(fig, path)


def load_char_model(folder: str | Path) -> tuple[SequenceModel, char_text.CharVocab]:
    """Load a model written by :func:`train_char_model` (its out_dir)."""
    folder = Path(folder)
    if not (folder / "model" / "model.json").is_file() or not (folder / "vocab.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no trained character model (model/ and vocab.json)")
    model = load_model(folder / "model")
    model.eval()
    vocab = char_text.CharVocab.from_dict(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    return model, vocab


def evaluate_text(model: SequenceModel, vocab: char_text.CharVocab, text: str) -> dict[str, Any]:
    """Bits per character of `text` as one continuous stream, and how many of its characters were unknown."""
    if len(text) < 2:
        raise ValueError("the text to score needs at least 2 characters")
    unknown = vocab.unknown_chars(text)
    bpc = stream_bits_per_char(model, vocab.encode(text, allow_unknown=True))
    return {"bits_per_char": bpc, "characters": len(text), "unknown": sum(unknown.values()),
            "unknown_chars": "".join(sorted(unknown))}


@torch.no_grad()
def sample(
    model: SequenceModel,
    vocab: char_text.CharVocab,
    prompt: str,
    length: int = 400,
    *,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """Continue `prompt` by `length` characters drawn from the model (temperature 0 = always the likeliest).

    Lower temperatures give safer, more repetitive text; higher ones more varied and more misspelt text.
    <unk> is never drawn.
    """
    if not prompt:
        raise ValueError("prompt must hold at least one character")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    ids = vocab.encode(prompt)  # names characters the model never saw
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        logits, state = model(ids[None], return_state=True)
        out = []
        for _ in range(length):
            last = logits[0, -1].double()
            if vocab.unknown_id is not None:
                last[vocab.unknown_id] = -math.inf
            if temperature == 0:
                nxt = int(last.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen))
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state=state, return_state=True)
    finally:
        model.train(was_training)
    return prompt + vocab.decode(out)


def free_name(folder: Path, name: str) -> Path:
    """`folder/name` if free, else the first free `stem-2.suffix`, `stem-3.suffix`, ... beside it."""
    path = folder / name
    stem, suffix = path.stem, path.suffix
    k = 2
    while path.exists():
        path = folder / f"{stem}-{k}{suffix}"
        k += 1
    return path


# -- command line -------------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru generate`."""
    p = subparsers.add_parser("generate", help="character-level GRU language model: train, score, sample",
                              description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text-file", help="a UTF-8 text file to train on")
    src.add_argument("--builtin", default="shakespeare_sonnets", choices=sorted(char_text.BUILTIN_TEXTS),
                     help="a built-in text (default; see fastgru/apps/data/files/README.md)")
    src.add_argument("--load", metavar="DIR", help="use the model an earlier run wrote to DIR (no training)")
    p.add_argument("--test-data", metavar="FILE",
                   help="score on this UTF-8 file instead of holding out the end of the text")
    p.add_argument("--eval", metavar="FILE", help="also score this UTF-8 file (with --load: score it, no training)")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                   help=f"most seconds of training, validation included (default {DEFAULT_TIME_LIMIT:g}); "
                        "the best model by validation is kept")
    p.add_argument("--epochs", type=int, default=100, help="most passes over the training text")
    p.add_argument("--hidden-size", type=int, default=None, help="GRU units (default: sized to the text and time)")
    p.add_argument("--num-layers", type=int, default=None, help="GRU layers (default: sized to the text)")
    p.add_argument("--embedding-dim", type=int, default=None, help="character embedding size (default 32)")
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout before the output layer and between layers (default: sized to the text)")
    p.add_argument("--seq-len", type=int, default=64, help="characters per truncated-BPTT chunk")
    p.add_argument("--batch-size", type=int, default=16, help="parallel training streams")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam's initial learning rate")
    p.add_argument("--patience", type=int, default=12, help="stop after this many validations without gain")
    p.add_argument("--valid-frac", type=float, default=0.1, help="share of the text for validation")
    p.add_argument("--test-frac", type=float, default=0.1, help="share held out for the test (without --test-data)")
    p.add_argument("--max-chars", type=int, default=None,
                   help="train on the first N characters of the training part only (test set unchanged)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip the bz2 and lzma baselines")
    p.add_argument("--prompt", default=None, help="text the sample continues (default: the start of the test part)")
    p.add_argument("--length", type=int, default=400, help="characters to sample")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0 = greedy)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_from_args)
    return p


def _print_scores(metrics: dict[str, Any]) -> None:
    bpc, base = metrics["bits_per_char"], metrics["baselines_bits_per_char"]
    rows = [["GRU (this model)", bpc["test"]]] + [[f"{name} (training text as prefix)", v] for name, v in base.items()]
    rows.append(["uniform over the vocabulary", metrics["uniform_bits_per_char"]])
    print(format_table(rows, ["bits per character on the test part", "bpc"]))
    t, m = metrics["training"], metrics["model"]
    unk = metrics["unknown_characters"]
    print(f"{m['parameters']:,} parameters (GRU {m['hidden_size']} x {m['num_layers']}, embedding "
          f"{m['embedding_dim']}, dropout {m['dropout']:g}); trained {t['seconds']:.0f} s, {t['steps']} steps, "
          f"{t['chars_per_second']:,.0f} chars/s; stopped: {t['stop_reason']}; train {bpc['train']:.3f}, "
          f"validation {bpc['valid']:.3f} bpc")
    print(f"test: {metrics['split']['test']}; {unk['test']} test characters unknown to the vocabulary "
          f"({unk['test_chars']!r}), {unk['valid']} in validation")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run `fastgru generate` from parsed arguments; prints bits per character and the sample."""
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    force = bool(getattr(args, "force", False))
    out = Path(args.out)
    eval_text = char_text.read_text(args.eval) if args.eval else None
    result: dict[str, Any] = {}
    if args.load:
        if args.test_data or args.max_chars is not None:
            raise ValueError("--test-data and --max-chars go with training, not with --load (use --eval FILE)")
        check_outputs(out, (), True)  # only makes the folder; nothing there is replaced (see below)
        model, vocab = load_char_model(args.load)
        saved_prompt = json.loads((Path(args.load) / "vocab.json").read_text(encoding="utf-8")).get("prompt")
        prompt = args.prompt or saved_prompt or vocab.chars[:1]
    else:
        check_outputs(out, OUTPUTS, force)
        text = char_text.read_text(args.text_file) if args.text_file else char_text.load_builtin_text(args.builtin)
        test_text = char_text.read_text(args.test_data) if args.test_data else None
        split = char_text.split_text(text, args.valid_frac, args.test_frac, test_text=test_text,
                                     max_chars=args.max_chars)
        started = time.perf_counter()
        model, vocab, metrics = train_char_model(
            split, out, hidden_size=args.hidden_size, num_layers=args.num_layers, embedding_dim=args.embedding_dim,
            dropout=args.dropout, seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
            time_limit=args.time_limit, patience=args.patience, seed=args.seed, baselines=args.baselines,
            progress=bool(getattr(args, "progress", False)),
        )
        metrics["wall_seconds"] = time.perf_counter() - started
        _print_scores(metrics)
        result["metrics"] = metrics
        prompt = args.prompt or split.test[:PROMPT_CHARS]
    if eval_text is not None:
        scored = evaluate_text(model, vocab, eval_text)
        scored["file"] = str(args.eval)
        print(f"{args.eval}: {scored['bits_per_char']:.4f} bits per character over {scored['characters']:,} "
              f"characters ({scored['unknown']} unknown to the vocabulary)")
        atomic.write_json(out / "eval.json" if force else free_name(out, "eval.json"), scored)
        result["eval"] = scored
    unknown = "".join(sorted(vocab.unknown_chars(prompt)))
    if unknown:
        raise ValueError(f"--prompt has characters the model never saw: {unknown!r}")
    text_out = sample(model, vocab, prompt, args.length, temperature=args.temperature, seed=args.seed)
    sample_path = out / "sample.txt" if (force or not args.load) else free_name(out, "sample.txt")
    atomic.write_text(sample_path, text_out + "\n")
    print(f"--- sample (temperature {args.temperature}) ---\n{text_out}\n---\nwrote {sample_path} (outputs in {out})")
    result.update(sample=text_out, sample_path=str(sample_path))
    return result
