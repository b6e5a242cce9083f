"""`listen`: spoken-word recognition (keyword spotting): audio -> log-mel frames -> GRU -> word.

Training (``fastgru listen [--data FOLDER]``): the built-in data are the Speech Commands words (yes no up
down left right on off stop go) spoken by Debian's espeak-ng with several English accents, voice
variants, speeds and pitches — synthetic speech, not recorded speech (see fastgru.apps.speech.synth). A user's
folder (one sub-folder of WAV files per word, ``<speaker>_<n>.wav``) goes through the same code. Clips are
split by *voice*: the test voices (and the validation voices used for early stopping) are never heard in
training (``--hold-out accent`` / ``variant`` holds out whole accents or voice variants of the built-in
set instead). Features: 40 log-mel bands every 10 ms (fastgru.apps.speech.features), standardised per band
with the training frames' statistics, which are stored with the model.

Reported on the held-out voices: accuracy, macro-F1 and the confusion matrix (rows: true word, columns:
predicted), next to the baseline that always answers the most frequent training word.

Outputs in `out_dir`: metrics.json, predictions.csv (file, speaker, true, predicted, probabilities),
confusion.csv, confusion.png, history.json, model/ (weights + config + class names + feature settings +
normalisation; fastgru.apps.speech.listener).

Prediction: ``fastgru listen --model DIR file.wav ...`` classifies WAV files (``--stream`` feeds each one
chunk by chunk with the GRU state carried across frames, and reports when the answer settled);
``fastgru listen --model DIR --data FOLDER`` scores a saved model on a labelled folder.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from fastgru.apps.common import (
    add_model_args,
    check_outputs,
    comma_list,
    confusion_matrix,
    default_out,
    format_table,
    macro_f1,
    write_csv,
)
from fastgru.apps.data.windows import Scaler, pad_scaled
from fastgru.apps.plots.confusion import plot_confusion
from fastgru.apps.speech.audio import Clip, load_wav, scan_folder
from fastgru.apps.speech.features import LogMelSettings, logmel
from fastgru.apps.speech.listener import Listener
from fastgru.apps.speech.split import GROUPINGS, split_by_speaker
from fastgru.apps.speech.synth import SynthSettings, read_manifest, synthesize_words
from fastgru.io import atomic
from fastgru.train import SequenceData, TrainConfig, Trainer, seed_everything
from fastgru.train.models import build_model

OUTPUTS = ("metrics.json", "predictions.csv", "confusion.csv", "confusion.png", "history.json", "model", "examples")
EVAL_OUTPUTS = ("metrics.json", "predictions.csv", "confusion.csv", "confusion.png")
SYNTHETIC_NOTE = ("synthetic speech: words spoken by espeak-ng (a formant synthesiser), not recorded speech; "
                  "accuracy on real recordings will be lower")


def feature_settings(sample_rate: int = 16000, n_mels: int = 40) -> LogMelSettings:
    """25 ms windows every 10 ms at `sample_rate`, `n_mels` bands: the front end `listen` trains with."""
    return LogMelSettings(sample_rate=sample_rate, n_fft=round(0.025 * sample_rate),
                          hop_length=round(0.010 * sample_rate), n_mels=n_mels)


def clip_features(clips: Sequence[Clip], settings: LogMelSettings, *, resample: bool = True,
                  progress: bool = False) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Log-mel frames of every clip, and what was done to the audio (resampled / mixed counts, source rates)."""
    frames, rates, resampled, mixed = [], Counter(), 0, 0
    for clip in tqdm(clips, desc="log-mel features", unit="clip", disable=not progress, dynamic_ncols=True):
        audio = load_wav(clip.path, settings.sample_rate, resample=resample)
        f = logmel(audio.samples, settings)
        if len(f) == 0:
            raise ValueError(f"{clip.path}: {len(audio.samples) / settings.sample_rate * 1000:.0f} ms of audio is "
                             f"shorter than one {settings.n_fft / settings.sample_rate * 1000:.0f} ms analysis window")
        frames.append(f)
        rates[audio.source_rate] += 1
        resampled += audio.resampled
        mixed += audio.mixed
    audio_notes = {"source_sample_rates": {str(k): v for k, v in sorted(rates.items())},
                   "resampled_files": resampled, "mixed_to_mono_files": mixed,
                   "resampling": f"librosa.resample soxr_hq to {settings.sample_rate} Hz" if resampled else "none"}
    return frames, audio_notes


def _scores(true: np.ndarray, pred: np.ndarray, classes: list[str]) -> tuple[dict[str, float], np.ndarray]:
    cm = confusion_matrix(true, pred, len(classes))
    return {"accuracy": float((pred == true).mean()) if len(true) else float("nan"), "macro_f1": macro_f1(cm)}, cm


def _write_evaluation(out: Path, clips: Sequence[Clip], root: Path, true: np.ndarray, probs: np.ndarray,
                      classes: list[str], cm: np.ndarray, title: str) -> None:
    pred = probs.argmax(1)
    frame = pd.DataFrame({"file": [str(c.path.relative_to(root)) for c in clips],
                          "speaker": [c.speaker for c in clips],
                          "true": [classes[i] for i in true], "predicted": [classes[i] for i in pred]})
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, j]
    write_csv(frame, out / "predictions.csv")
    cm_frame = pd.DataFrame(cm, columns=[f"pred_{c}" for c in classes])
    cm_frame.insert(0, "true", classes)
    write_csv(cm_frame, out / "confusion.csv")
    plot_confusion(cm, classes, out / "confusion.png", title)


def listen(
    data: str | Path | None = None,
    *,
    words: Sequence[str] | None = None,
    accents: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    speeds: Sequence[int] | None = None,
    pitches: Sequence[int] | None = None,
    cache_dir: str | Path | None = None,
    hold_out: str = "voice",
    test_fraction: float = 0.25,
    val_fraction: float = 0.2,
    sample_rate: int = 16000,
    n_mels: int = 40,
    resample: bool = True,
    cell: str = "gru",
    hidden_size: int = 64,
    num_layers: int = 1,
    dropout: float = 0.0,
    epochs: int = 40,
    patience: int = 8,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a keyword spotter and score it on held-out voices; returns the metrics dict (see module notes).

    data: a folder of WAV files, one sub-folder per word; None synthesises the built-in words (words,
    accents, variants, speeds, pitches choose them; cache_dir is where they are kept).
    """
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("listen")
    settings = feature_settings(sample_rate, n_mels)
    if hold_out not in GROUPINGS:
        raise ValueError(f"hold_out must be one of {sorted(GROUPINGS)}, got {hold_out!r}")
    synth = None
    if data is None:
        synth = SynthSettings(**{k: tuple(v) for k, v in (("words", words), ("accents", accents),
                                 ("variants", variants), ("speeds", speeds), ("pitches", pitches)) if v is not None})
        out = check_outputs(out, OUTPUTS, overwrite)
        folder = synthesize_words(synth, cache_dir, progress=progress)
    else:
        if any(v is not None for v in (words, accents, variants, speeds, pitches)):
            raise ValueError("--words / --accents / --variants / --speeds / --pitches choose the built-in synthetic "
                             "words; they do not apply to --data FOLDER")
        folder = Path(data)
    clips = scan_folder(folder)
    manifest = read_manifest(folder)
    synthetic = manifest is not None
    speakers = [c.speaker for c in clips]
    if hold_out != "voice" and not (synthetic and all("+" in s for s in speakers)):
        raise ValueError(f"--hold-out {hold_out} needs espeak-ng voices named accent+variant (the built-in set); "
                         "hold out by voice (speaker) for other data")
    split = split_by_speaker(speakers, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed,
                             group=hold_out)
    classes = sorted({c.word for c in clips})
    untrained = sorted(set(classes) - {clips[i].word for i in split.train})
    if untrained:
        raise ValueError(f"{folder}: word(s) {untrained} are spoken only by held-out speakers; record them with "
                         "more speakers or lower --test-fraction")
    if synth is None:
        out = check_outputs(out, OUTPUTS, overwrite)

    frames, audio_notes = clip_features(clips, settings, resample=resample, progress=progress)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c.word] for c in clips])
    scaler = Scaler.fit(np.concatenate([frames[i] for i in split.train]))

    def part(idx: list[int]) -> SequenceData:
        x, lengths = pad_scaled([frames[i] for i in idx], scaler)
        return SequenceData(x, torch.from_numpy(y[idx]), lengths)

    train, val = part(split.train), part(split.val)
    seed_everything(seed)
    model = build_model(cell=cell, input_size=settings.n_mels, hidden_size=hidden_size, num_layers=num_layers,
                        dropout=dropout, output_size=len(classes), head="classification")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed, out_dir=str(out),
                      checkpoint_every=0, progress=progress)
    history = Trainer(model, cfg).fit(train, val)
    model = model.cpu()  # the Trainer may have used a GPU; the saved listener works on the CPU

    source = "built-in synthetic words (espeak-ng)" if synth is not None else str(folder)
    listener = Listener(model, classes, settings, scaler, info={
        "data": source, "synthetic": synthetic, "hold_out": hold_out, "train_groups": split.train_groups})
    probs = listener.predict_proba([frames[i] for i in split.test])
    y_test = y[split.test]
    model_name = f"{cell.upper()} ({'fastgru' if cell == 'gru' else 'torch'})"
    scores, cm = _scores(y_test, probs.argmax(1), classes)
    majority = int(np.bincount(y[split.train], minlength=len(classes)).argmax())
    base, _ = _scores(y_test, np.full_like(y_test, majority), classes)
    metrics = {model_name: scores, f"majority class ({classes[majority]!r})": base}
    _write_evaluation(out, [clips[i] for i in split.test], folder, y_test, probs, classes, cm,
                      f"{'synthetic (espeak-ng)' if synthetic else folder.name}: {model_name}, held-out "
                      f"{hold_out}s, accuracy {scores['accuracy']:.3f}")
    listener.save(out / "model")
    examples = _write_examples(out / "examples", [clips[i] for i in split.test])
    lengths = np.array([len(f) for f in frames])
    result = {
        "task": "listen", "data": source, "folder": str(folder), "synthetic": synthetic,
        "note": SYNTHETIC_NOTE if synthetic else "the user's recordings",
        "espeak_ng": manifest.get("espeak_ng") if manifest else None,
        "synth_settings": manifest.get("settings") if manifest else None,
        "classes": classes, "clips": len(clips), "hold_out": hold_out,
        "groups": {"train": split.train_groups, "val": split.val_groups, "test": split.test_groups},
        "train_clips": len(split.train), "val_clips": len(split.val), "test_clips": len(split.test),
        "frames_min": int(lengths.min()), "frames_max": int(lengths.max()),
        "metrics": metrics, "model": model_name, "confusion": cm.tolist(),
        "best_epoch": history["best_epoch"], "epochs_run": len(history["epochs"]),
        "num_parameters": history["num_parameters"], "features": settings.to_dict(), "audio": audio_notes,
        "settings": {"cell": cell, "hidden_size": hidden_size, "num_layers": num_layers, "dropout": dropout,
                     "epochs": epochs, "patience": patience, "batch_size": batch_size, "lr": lr, "seed": seed,
                     "test_fraction": test_fraction, "val_fraction": val_fraction, "resample": resample},
        "torch_threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in OUTPUTS},
        "examples": examples,
    }
    atomic.write_json(out / "metrics.json", result)
    return result


def _write_examples(folder: Path, held_out: Sequence[Clip]) -> dict[str, str]:
    """Copy one held-out clip per word to folder/<word>.wav: audio the model never trained on, ready for
    `fastgru listen --model <out>/model [--stream] <out>/examples/<word>.wav`. Returns word -> source file."""
    chosen: dict[str, Clip] = {}
    for clip in sorted(held_out, key=lambda c: (c.word, str(c.path))):
        chosen.setdefault(clip.word, clip)
    folder.mkdir(parents=True, exist_ok=True)
    for word, clip in chosen.items():
        atomic.write_bytes(folder / f"{_safe_name(word)}.wav", Path(clip.path).read_bytes())
    return {word: str(clip.path) for word, clip in chosen.items()}


def _safe_name(word: str) -> str:
    """A file name for a word (a user's folder names may hold characters a file name should not)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in word) or "word"


def evaluate(model_dir: str | Path, data: str | Path, *, out_dir: str | Path | None = None,
             overwrite: bool = False, resample: bool = True, progress: bool = False) -> dict[str, Any]:
    """Score a saved model on a labelled folder (every sub-folder must be a word the model knows)."""
    t_start = time.perf_counter()
    listener = Listener.load(model_dir)
    folder = Path(data)
    clips = scan_folder(folder, min_classes=1)
    classes = listener.classes
    unknown = sorted({c.word for c in clips} - set(classes))
    if unknown:
        raise ValueError(f"{folder}: word(s) {unknown} (sub-folders) are not among the model's classes {classes}; "
                         "the model cannot name them: remove those sub-folders or train a model that knows them")
    out = check_outputs(Path(out_dir) if out_dir is not None else default_out("listen-evaluate"),
                        EVAL_OUTPUTS, overwrite)
    frames, audio_notes = clip_features(clips, listener.features, resample=resample, progress=progress)
    index = {c: i for i, c in enumerate(classes)}
    true = np.array([index[c.word] for c in clips])
    probs = listener.predict_proba(frames)
    scores, cm = _scores(true, probs.argmax(1), classes)
    _write_evaluation(out, clips, folder, true, probs, classes, cm,
                      f"{folder.name}: saved model, accuracy {scores['accuracy']:.3f}")
    manifest = read_manifest(folder)
    result = {"task": "listen-evaluate", "model": str(model_dir), "data": str(folder),
              "synthetic": manifest is not None, "note": SYNTHETIC_NOTE if manifest else "the user's recordings",
              "classes": classes, "clips": len(clips), "speakers": len({c.speaker for c in clips}),
              "metrics": {"saved model": scores}, "confusion": cm.tolist(), "audio": audio_notes,
              "seconds": time.perf_counter() - t_start, "outputs": {k: str(out / k) for k in EVAL_OUTPUTS}}
    atomic.write_json(out / "metrics.json", result)
    return result


def predict_files(model_dir: str | Path, files: Sequence[str | Path], *, stream: bool = False,
                  chunk_ms: float = 20.0, resample: bool = True) -> list[dict[str, Any]]:
    """Classify WAV files with a saved model; with `stream`, chunk by chunk (GRU state carried across frames).

    Each answer: file, predicted word, its probability, all probabilities, frames, the source sample rate;
    streamed answers also give ``settled_s``: the audio time from which the leading word stayed the final one.
    """
    listener = Listener.load(model_dir)
    if not chunk_ms > 0:
        raise ValueError(f"--chunk-ms must be > 0, got {chunk_ms}")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                                   else ""))
    sr = listener.features.sample_rate
    answers = []
    for f in files:
        audio = load_wav(f, sr, resample=resample)
        frames = listener.featurize(audio.samples)
        if len(frames) == 0:
            raise ValueError(f"{f}: {len(audio.samples) / sr * 1000:.0f} ms of audio is shorter than one analysis "
                             "window")
        answer: dict[str, Any] = {"file": str(f), "source_sample_rate": audio.source_rate,
                                  "resampled": audio.resampled, "mixed_to_mono": audio.mixed, "frames": len(frames)}
        if stream:
            session = listener.stream()
            step = max(1, round(chunk_ms / 1000 * sr))
            leaders = []
            for start in range(0, len(audio.samples), step):
                before = session.frames
                p = session.push(audio.samples[start:start + step])
                leaders += [int(p.argmax())] * (session.frames - before) if p is not None else []
            probs = p
            last = leaders[-1]
            first = len(leaders) - next((i for i, v in enumerate(reversed(leaders)) if v != last), len(leaders))
            hop = listener.features.hop_length
            answer["settled_s"] = (first * hop + listener.features.n_fft) / sr
            answer["chunk_ms"] = chunk_ms
        else:
            probs = listener.predict_proba([frames])[0]
        k = int(np.argmax(probs))
        answer.update(predicted=listener.classes[k], probability=float(probs[k]),
                      probabilities={c: float(v) for c, v in zip(listener.classes, probs)})
        answers.append(answer)
    return answers


# -- the command line ----------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru listen`."""
    p = subparsers.add_parser(
        "listen", help="spoken-word recognition: train on synthetic espeak-ng words (or your WAVs), classify WAVs",
        description=__doc__.split("\n\n")[0] + " Built-in words are synthetic (espeak-ng), not recorded speech.")
    p.add_argument("files", nargs="*", metavar="FILE.wav", help="with --model: WAV files to classify")
    p.add_argument("--model", help="a model folder written by an earlier run (<out>/model): classify FILE.wav ..., "
                                   "or score it on a labelled --data FOLDER")
    p.add_argument("--stream", action="store_true",
                   help="with --model: feed each file chunk by chunk, the GRU state carried across frames")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="chunk length for --stream (default 20 ms)")
    p.add_argument("--data", help="folder of WAV files, one sub-folder per word, files named <speaker>_<n>.wav "
                                  "(default: the built-in synthetic espeak-ng words)")
    p.add_argument("--words", help="built-in set: comma-separated words (default: yes,no,up,down,left,right,on,off,"
                                   "stop,go)")
    p.add_argument("--accents", help="built-in set: espeak-ng English voices (default: 8, see docs/listen.md)")
    p.add_argument("--variants", help="built-in set: espeak-ng voice variants (default: m1,m3,m7,f1,f3,f5)")
    p.add_argument("--speeds", help="built-in set: words per minute (default: 130,175,220)")
    p.add_argument("--pitches", help="built-in set: pitches 0-99 (default: 35,50,65)")
    p.add_argument("--cache-dir", help="where the built-in set is synthesised (default: ~/.cache/fastgru/speech, "
                                       "or $FASTGRU_SPEECH_CACHE)")
    p.add_argument("--hold-out", choices=sorted(GROUPINGS), default="voice",
                   help="what the test and validation parts hold out: voices (default), or whole accents / "
                        "voice variants of the built-in set")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of voices held out for testing")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the remaining voices held out for early stopping")
    p.add_argument("--sample-rate", type=int, default=16000, help="the model's sample rate (default 16000 Hz)")
    p.add_argument("--n-mels", type=int, default=40, help="mel bands per frame (default 40)")
    p.add_argument("--no-resample", action="store_true",
                   help="refuse WAV files at a sample rate other than the model's instead of resampling them down")
    p.add_argument("--out", help=f"output folder (default: {default_out('listen')} for training, "
                                 f"{default_out('listen-evaluate')} for --model with --data)")
    add_model_args(p, hidden=64, epochs=40, patience=8, lr=3e-3)
    p.set_defaults(func=run_from_args, task="listen")
    return p


def run_from_args(args: argparse.Namespace) -> Any:
    resample = not args.no_resample
    if args.model is None:
        if args.files:
            raise ValueError("classifying WAV files needs --model DIR (the model/ folder of an earlier "
                             "`fastgru listen` run)")
        if args.stream:
            raise ValueError("--stream needs --model DIR and WAV files to classify")
        result = listen(
            args.data, words=comma_list(args.words), accents=comma_list(args.accents),
            variants=comma_list(args.variants), speeds=comma_list(args.speeds, int, "--speeds"),
            pitches=comma_list(args.pitches, int, "--pitches"), cache_dir=args.cache_dir, hold_out=args.hold_out,
            test_fraction=args.test_fraction, val_fraction=args.val_fraction, sample_rate=args.sample_rate,
            n_mels=args.n_mels, resample=resample, cell=args.cell, hidden_size=args.hidden_size,
            num_layers=args.num_layers, dropout=args.dropout, epochs=args.epochs, patience=args.patience,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, out_dir=args.out, overwrite=args.force,
            progress=args.progress)
        print_result(result)
        return result
    if args.files:
        if args.data:
            raise ValueError("give either WAV files to classify or --data FOLDER to score, not both")
        answers = predict_files(args.model, args.files, stream=args.stream, chunk_ms=args.chunk_ms,
                                resample=resample)
        print_answers(answers, args.stream)
        return answers
    if args.data:
        if args.stream:
            raise ValueError("--stream classifies WAV files given on the command line, not a --data folder")
        result = evaluate(args.model, args.data, out_dir=args.out, overwrite=args.force, resample=resample,
                          progress=args.progress)
        print_evaluation(result)
        return result
    raise ValueError("--model needs WAV files to classify or a labelled --data FOLDER to score")


def print_result(result: dict[str, Any]) -> None:
    print(f"\nlisten: {result['data']}")
    if result["synthetic"]:
        print(f"NOTE: {result['note']}")
    g = result["groups"]
    print(f"{len(result['classes'])} words, {result['clips']} clips ({result['frames_min']}-{result['frames_max']} "
          f"frames of 10 ms); held out by {result['hold_out']}: train {len(g['train'])} "
          f"({result['train_clips']} clips), validation {len(g['val'])} ({result['val_clips']}), test "
          f"{len(g['test'])} ({result['test_clips']}): {', '.join(g['test'])}")
    print(f"{result['num_parameters']} parameters, best epoch {result['best_epoch']} of {result['epochs_run']}\n")
    rows = [[name, m["accuracy"], m["macro_f1"]] for name, m in result["metrics"].items()]
    print(format_table(rows, ["method", "held-out accuracy", "macro-F1"]))
    _print_confusion(result)
    print(f"\nwrote {result['outputs']['metrics.json']}, {result['outputs']['confusion.png']}, "
          f"{result['outputs']['model']} ({result['seconds']:.1f} s)")
    if result.get("examples"):
        word = sorted(result["examples"])[0]
        example = Path(result["outputs"]["examples"]) / f"{_safe_name(word)}.wav"
        print(f"held-out clips to try, one per word: {result['outputs']['examples']}/, e.g.\n"
              f"  fastgru listen --model {result['outputs']['model']} --stream {example}")


def _print_confusion(result: dict[str, Any]) -> None:
    classes = result["classes"]
    print("\nconfusion matrix (rows: true word, columns: predicted)")
    print(format_table([[c, *row] for c, row in zip(classes, result["confusion"])], ["true", *classes]))


def print_evaluation(result: dict[str, Any]) -> None:
    m = result["metrics"]["saved model"]
    print(f"\nlisten: model {result['model']} on {result['data']} ({result['clips']} clips, "
          f"{result['speakers']} speakers)")
    if result["synthetic"]:
        print(f"NOTE: {result['note']}")
    print(f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    _print_confusion(result)
    print(f"\nwrote {result['outputs']['metrics.json']} ({result['seconds']:.1f} s)")


def print_answers(answers: list[dict[str, Any]], stream: bool) -> None:
    headers = ["file", "predicted", "probability"] + (["settled at (s)"] if stream else [])
    rows = [[a["file"], a["predicted"], a["probability"]] + ([a["settled_s"]] if stream else []) for a in answers]
    print(format_table(rows, headers))
    for a in answers:
        if a["resampled"] or a["mixed_to_mono"]:
            what = [f"resampled from {a['source_sample_rate']} Hz"] if a["resampled"] else []
            what += ["mixed to mono"] if a["mixed_to_mono"] else []
            print(f"note: {a['file']}: {', '.join(what)}")
