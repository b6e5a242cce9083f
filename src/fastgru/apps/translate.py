"""`translate`: a GRU encoder-decoder with and without attention, trained on sentence pairs and scored by
BLEU on held-out sentences against copying the source; or translate sentences with a saved model.

Training mode (no --model): the pairs (the shipped 5,000 Tatoeba English-French pairs, or --data TSV) are
split by distinct source sentence into train / validation / test (seeded). Each model variant asked for
(--attention both|on|off) is trained with the same sizes, epochs and seed: Adam, scheduled teacher
forcing (linear from --teacher-forcing START to END), the epoch with the best validation loss kept.
Test BLEU (sacrebleu, all references of each source) is reported for greedy and beam-search decoding,
next to the baseline that copies the source sentence unchanged.

Translation mode: ``fastgru translate --model DIR "sentence" ...`` (or ``-`` to read one sentence per
line from stdin) prints one translation per line. DIR is a model folder written by training mode
(``<out>/model-attention`` or ``<out>/model-no-attention``).

Outputs of training mode in --out: metrics.json, samples.csv (each test sentence, its references and
every model's translation), model-attention/ and/or model-no-attention/ (weights, config, vocabularies,
history.json), and attention.png (the attention heat-map of --heatmap-sentence, default: the longest
test sentence).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from fastgru.apps.common import check_outputs, default_out, format_table, write_csv
from fastgru.apps.seq2seq.bleu import corpus_bleu, group_references
from fastgru.apps.seq2seq.heatmap import plot_attention
from fastgru.apps.seq2seq.pairs import BUILTIN, SentencePairs, load_pairs, split_by_source
from fastgru.apps.seq2seq.training import train_translator
from fastgru.apps.seq2seq.translator import Translator
from fastgru.apps.seq2seq.vocab import EOS, join_tokens, tokenize
from fastgru.io import atomic

VARIANTS = {"on": ("attention",), "off": ("no-attention",), "both": ("attention", "no-attention")}
LABELS = {"attention": "GRU encoder-decoder + attention", "no-attention": "GRU encoder-decoder, no attention",
          "copy": "copy the source (baseline)"}


def _outputs(attention: str) -> tuple[str, ...]:
    names = ["metrics.json", "samples.csv"] + [f"model-{v}" for v in VARIANTS[attention]]
    return tuple(names + (["attention.png"] if "attention" in VARIANTS[attention] else []))


def _translate_all(translator: Translator, sentences: list[str], beam: int, progress: bool, desc: str) -> list[str]:
    """Translations of `sentences`: greedy in batches of 256, beam search one sentence at a time."""
    step = 256 if beam == 1 else 1
    out: list[str] = []
    for i in tqdm(range(0, len(sentences), step), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        out += translator.translate(sentences[i : i + step], beam=beam)
    return out


def translate(
    data: str | Path = BUILTIN,
    *,
    reverse: bool = False,
    attention: str = "both",
    limit: int | None = None,
    test_fraction: float = 0.1,
    val_fraction: float = 0.1,
    hidden_size: int = 256,
    embedding_size: int = 128,
    bidirectional: bool = True,
    dropout: float = 0.1,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    teacher_forcing: tuple[float, float] = (1.0, 0.5),
    beam: int = 5,
    min_freq: int = 1,
    seed: int = 0,
    heatmap_sentence: str | None = None,
    threads: int | None = 1,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the asked variants on `data`, score them and the copy baseline on the test split; returns
    the metrics dict (also written to metrics.json)."""
    t_start = time.perf_counter()
    if attention not in VARIANTS:
        raise ValueError(f"attention must be one of {sorted(VARIANTS)}, got {attention!r}")
    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must lie in (0, 1): BLEU needs held-out sentences, got {test_fraction}")
    if limit is not None and limit < 2:
        raise ValueError(f"--limit must be >= 2 pairs, got {limit}")
    if heatmap_sentence is not None:
        if attention == "off":
            raise ValueError("--heatmap-sentence needs the attention model (--attention on or both)")
        if not tokenize(heatmap_sentence):
            raise ValueError(f"--heatmap-sentence has no words: {heatmap_sentence!r}")
    pairs = load_pairs(data)
    if reverse:
        pairs = pairs.reversed()
    if limit is not None:
        pairs = pairs.subset(range(min(limit, len(pairs))))
    tr, va, te = split_by_source(pairs, test_fraction, val_fraction, seed)
    out = check_outputs(out_dir if out_dir is not None else default_out("translate"), _outputs(attention), overwrite)
    if threads is not None and threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(pairs, tr, va, te, out, data=data, reverse=reverse, attention=attention, limit=limit,
                    test_fraction=test_fraction, val_fraction=val_fraction, hidden_size=hidden_size,
                    embedding_size=embedding_size, bidirectional=bidirectional, dropout=dropout, epochs=epochs,
                    batch_size=batch_size, lr=lr, teacher_forcing=teacher_forcing, beam=beam, min_freq=min_freq,
                    seed=seed, heatmap_sentence=heatmap_sentence, progress=progress, t_start=t_start)
    finally:
        torch.set_num_threads(threads_before)


def _run(pairs: SentencePairs, tr: list[int], va: list[int], te: list[int], out: Path, *, data: str | Path,
         reverse: bool, attention: str, limit: int | None, test_fraction: float, val_fraction: float,
         hidden_size: int, embedding_size: int, bidirectional: bool, dropout: float, epochs: int, batch_size: int,
         lr: float, teacher_forcing: tuple[float, float], beam: int, min_freq: int, seed: int,
         heatmap_sentence: str | None, progress: bool, t_start: float) -> dict[str, Any]:
    """The work of :func:`translate` after its checks."""
    train, val, test = pairs.subset(tr), pairs.subset(va), pairs.subset(te)
    sources, references = group_references(test.source, test.target)
    config = {"embedding_size": embedding_size, "hidden_size": hidden_size, "bidirectional": bidirectional,
              "dropout": dropout}
    copy_hyps = [join_tokens(tokenize(s)) for s in sources]
    scores: dict[str, dict[str, Any]] = {}
    translations: dict[str, list[str]] = {}
    models: dict[str, Translator] = {}
    histories: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS[attention]:
        t0 = time.perf_counter()
        folder = out / f"model-{variant}"
        translator, history = train_translator(
            train, val, config={**config, "attention": variant == "attention"}, min_freq=min_freq, epochs=epochs,
            batch_size=batch_size, lr=lr, teacher_forcing=teacher_forcing, seed=seed, out_dir=folder,
            progress=progress)
        train_seconds = time.perf_counter() - t0
        greedy_hyps = _translate_all(translator, sources, 1, progress, f"{variant}: greedy")
        beam_hyps = _translate_all(translator, sources, beam, progress, f"{variant}: beam {beam}") if beam > 1 \
            else greedy_hyps
        translator.info.update(direction=f"{pairs.languages[0]}->{pairs.languages[1]}", split_seed=seed)
        translator.save(folder, overwrite=True)
        models[variant], histories[variant], translations[variant] = translator, history, beam_hyps
        scores[variant] = {
            "bleu": corpus_bleu(beam_hyps, references)["bleu"],
            "bleu_greedy": corpus_bleu(greedy_hyps, references)["bleu"],
            "exact_match": sum(h in r for h, r in zip(beam_hyps, references)) / len(sources),
            "best_epoch": history["best_epoch"],
            "best_val_loss": history["best_value"],
            "num_parameters": history["num_parameters"],
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / max(1, len(history["epochs"])),
        }
    copy = corpus_bleu(copy_hyps, references)
    scores["copy"] = {"bleu": copy["bleu"], "bleu_greedy": copy["bleu"],
                      "exact_match": sum(h in r for h, r in zip(copy_hyps, references)) / len(sources)}

    frame = pd.DataFrame({"source": sources, "references": [" | ".join(r) for r in references]})
    for variant, hyps in translations.items():
        frame[variant] = hyps
    write_csv(frame, out / "samples.csv")

    heatmap = None
    if "attention" in models:
        sentence = heatmap_sentence or max(sources, key=lambda s: len(tokenize(s)))  # the first of the longest
        heatmap = _heatmap(models["attention"], sentence, beam, out / "attention.png")

    result = {
        "task": "translate",
        "data": pairs.name,
        "direction": f"{pairs.languages[0]}->{pairs.languages[1]}",
        "licence": "CC-BY 2.0 (France), Tatoeba; attribution per pair in the data file's third column"
        if str(data) == BUILTIN else None,
        "pairs": {"train": len(tr), "val": len(va), "test": len(te)},
        "test_sources": len(sources),
        "vocab": {"source": len(next(iter(models.values())).source_vocab),
                  "target": len(next(iter(models.values())).target_vocab)},
        "metrics": scores,
        "labels": {k: LABELS[k] for k in scores},
        "bleu": {"signature": copy["signature"], "decoding": f"beam {beam}" if beam > 1 else "greedy",
                 "text": "lower-cased, tokenised (fastgru.apps.seq2seq.vocab.tokenize), all references per source"},
        "heatmap": heatmap,
        "settings": {**config, "attention": attention, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                     "teacher_forcing": list(teacher_forcing), "beam": beam, "min_freq": min_freq, "seed": seed,
                     "test_fraction": test_fraction, "val_fraction": val_fraction, "reverse": reverse,
                     "limit": limit, "threads": torch.get_num_threads()},
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in _outputs(attention)},
    }
    atomic.write_json(out / "metrics.json", result)
    return result


def _heatmap(translator: Translator, sentence: str, beam: int, path: Path) -> dict[str, Any]:
    decoded = translator.decode([sentence], beam=beam)[0]
    src_tokens = [*tokenize(sentence), EOS]
    words = [translator.target_vocab.tokens[i] for i in decoded.ids]
    weights = decoded.attention.numpy()
    out_tokens = words + [EOS] if weights.shape[0] == len(words) + 1 else words  # no EOS row: stopped at the limit
    translation = join_tokens(words)
    plot_attention(weights, src_tokens, out_tokens, path, title=f"{sentence!r} -> {translation!r}")
    return {"sentence": sentence, "translation": translation, "path": str(path)}


def _pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected START,END (two numbers in [0, 1]), got {text!r}")
    return values  # type: ignore[return-value]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru translate`."""
    p = subparsers.add_parser(
        "translate", help="GRU encoder-decoder translation with/without attention, BLEU vs copying the source",
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sentences", nargs="*", metavar="SENTENCE",
                   help="with --model: sentences to translate ('-' reads one per line from stdin)")
    p.add_argument("--model", metavar="DIR", help="translate SENTENCE(s) with this saved model folder; no training")
    p.add_argument("--data", default=BUILTIN,
                   help=f"'{BUILTIN}' (shipped, English<TAB>French<TAB>attribution) or a TSV of "
                        "source<TAB>target lines (.tsv or .tsv.gz)")
    p.add_argument("--reverse", action="store_true",
                   help="translate the second column into the first (built-in data: French -> English)")
    p.add_argument("--attention", choices=sorted(VARIANTS), default="both",
                   help="train the model with attention, without, or both (default: both)")
    p.add_argument("--limit", type=int, help="use only the first N pairs (a quick run)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of distinct source sentences for test")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of distinct source sentences for validation")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--unidirectional", action="store_true", help="a forward-only encoder (default: bidirectional)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--teacher-forcing", type=_pair, default=(1.0, 0.5), metavar="START,END",
                   help="teacher-forcing ratio, linear from START (first epoch) to END (last); default 1.0,0.5")
    p.add_argument("--beam", type=int, default=5, help="beam width for decoding (1: greedy); default 5")
    p.add_argument("--min-freq", type=int, default=1, help="words seen fewer times in training become <unk>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heatmap-sentence", help="sentence for attention.png (default: the longest test sentence)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads while training and decoding (default 1: the decoder runs many small "
                        "ops one step at a time, which more threads barely speed up and a busy machine slows "
                        "badly; 0: torch's default)")
    p.set_defaults(func=run_from_args, task="translate")
    return p


def _read_sentences(args: argparse.Namespace) -> list[str]:
    if args.sentences == ["-"]:
        lines = [line.strip() for line in sys.stdin.read().splitlines()]
        sentences = [s for s in lines if s]
        if not sentences:
            raise ValueError("no sentences on stdin (give one per line)")
        return sentences
    if not args.sentences:
        raise ValueError("--model needs sentences to translate: fastgru translate --model DIR \"sentence\" ... "
                         "(or '-' to read them from stdin)")
    return list(args.sentences)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.model is not None:
        translator = Translator.load(args.model)
        sentences = _read_sentences(args)
        outputs = translator.translate(sentences, beam=args.beam)
        for line in outputs:
            print(line)
        return {"task": "translate", "model": args.model, "sentences": sentences, "translations": outputs}
    if args.sentences:
        raise ValueError(f"sentences to translate ({args.sentences[0]!r} ...) need --model DIR, a saved model; "
                         "without --model the command trains")
    result = translate(
        args.data, reverse=args.reverse, attention=args.attention, limit=args.limit,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction, hidden_size=args.hidden_size,
        embedding_size=args.embedding_size, bidirectional=not args.unidirectional, dropout=args.dropout,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, teacher_forcing=args.teacher_forcing,
        beam=args.beam, min_freq=args.min_freq, seed=args.seed, heatmap_sentence=args.heatmap_sentence,
        threads=args.threads, out_dir=args.out, overwrite=args.force, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    p = result["pairs"]
    print(f"\ntranslate: {result['data']}, {result['direction']}; pairs train {p['train']}, validation {p['val']}, "
          f"test {p['test']} ({result['test_sources']} distinct test sentences); vocabularies "
          f"{result['vocab']['source']} / {result['vocab']['target']}\n")
    dec = result["bleu"]["decoding"]
    rows = [[result["labels"][k], m["bleu"], m["bleu_greedy"], m["exact_match"], m.get("train_seconds", float("nan"))]
            for k, m in result["metrics"].items()]
    print(format_table(rows, ["method", f"test BLEU ({dec})", "BLEU (greedy)", "exact match", "train s"], digits=2))
    print(f"\nBLEU: {result['bleu']['signature']} on {result['bleu']['text']}")
    if result["heatmap"]:
        h = result["heatmap"]
        print(f"attention heat-map: {h['sentence']!r} -> {h['translation']!r}: {h['path']}")
    print(f"wrote {result['outputs']['metrics.json']}, {result['outputs']['samples.csv']} and the model folders "
          f"({result['seconds']:.1f} s)")
