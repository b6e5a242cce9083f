"""Keyword-spotting results for RESULTS.md (section `listen`): `fastgru listen` on the full built-in set.

    PYTHONPATH=src .venv/bin/python benchmarks/listen_results.py [--out runs/listen-results]
        [--results-md RESULTS.md] [--hold-outs voice,variant,accent] [--seed 0]

The built-in set is SYNTHETIC speech: the ten Speech Commands words spoken by espeak-ng (8 English
accents x 6 voice variants = 48 voices, 3 speeds, 3 pitches: 4320 clips), not recorded speech. Each
hold-out runs `fastgru listen --hold-out H --seed S` at its default settings: `voice` tests on voices
(accent+variant pairs) never heard in training; `variant` and `accent` are stricter, holding out every
voice of the test variants (timbres) or accents. Then the saved model of the first run classifies every
held-out clip again chunk by chunk (20 ms chunks, the GRU state carried across frames) and the answers
are compared with the whole-clip ones. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fastgru.apps.common import format_table
from fastgru.apps.listen import listen
from fastgru.apps.speech.audio import load_wav
from fastgru.apps.speech.listener import Listener
from fastgru.apps.speech.split import GROUPINGS
from fastgru.io import atomic
from fastgru.io.markdown import replace_section


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, Python {platform.python_version()}")


def stream_check(run: dict, chunk_ms: float = 20.0) -> dict:
    """Classify every held-out clip of `run` again chunk by chunk; compare with the saved whole-clip answers."""
    out = Path(run["outputs"]["model"])
    listener = Listener.load(out)
    pred = pd.read_csv(out.parent / "predictions.csv")
    sr = listener.features.sample_rate
    step = round(chunk_ms / 1000 * sr)
    same, max_diff, seconds_audio, seconds_cpu = 0, 0.0, 0.0, 0.0
    for _, row in pred.iterrows():
        samples = load_wav(Path(run["folder"]) / row["file"], sr).samples
        session = listener.stream()
        t0 = time.process_time()
        for start in range(0, len(samples), step):
            probs = session.push(samples[start:start + step])
        seconds_cpu += time.process_time() - t0
        seconds_audio += len(samples) / sr
        whole = row[[f"p_{c}" for c in listener.classes]].to_numpy(dtype=np.float64)
        max_diff = max(max_diff, float(np.abs(probs - whole).max()))
        same += listener.classes[int(np.argmax(probs))] == row["predicted"]
    return {"clips": len(pred), "same_answer": int(same), "max_abs_prob_diff": max_diff, "chunk_ms": chunk_ms,
            "cpu_ms_per_audio_second": 1000 * seconds_cpu / seconds_audio}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/listen-results")
    p.add_argument("--results-md", default="RESULTS.md")
    p.add_argument("--hold-outs", default="voice,variant,accent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where the synthetic words are kept (default ~/.cache/fastgru/speech)")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite the section from the runs already in --out (summary.json), training nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        summary = json.loads((out / "summary.json").read_text())
        runs = [json.loads((out / h / "metrics.json").read_text()) for h in summary["hold_outs"]]
    else:
        t0 = time.perf_counter()
        runs = []
        for h in [h.strip() for h in args.hold_outs.split(",") if h.strip()]:
            r = listen(hold_out=h, seed=args.seed, cache_dir=args.cache_dir, out_dir=out / h, overwrite=True,
                       progress=False)
            print(f"hold-out {h}: {r['metrics']} ({r['seconds']:.0f} s)", flush=True)
            runs.append(r)
        check = stream_check(runs[0])
        print(f"streaming check: {check}", flush=True)
        summary = {"hold_outs": [r["hold_out"] for r in runs], "seed": args.seed, "stream_check": check,
                   "total_seconds": time.perf_counter() - t0, "machine": machine(),
                   "finished": time.strftime("%Y-%m-%d %H:%M")}
        atomic.write_json(out / "summary.json", summary)
    write_section(args.results_md, runs, summary)
    print(f"wrote section 'listen' of {args.results_md}")


def _seen_parts(r: dict) -> str:
    """How many test voices have an accent / a variant that training heard in other voices."""
    s = r["synth_settings"]
    key, train_groups = GROUPINGS[r["hold_out"]], set(r["groups"]["train"])
    train = [f"{a}+{v}" for a in s["accents"] for v in s["variants"] if key(f"{a}+{v}") in train_groups]
    accents, variants = {v.split("+")[0] for v in train}, {v.split("+")[-1] for v in train}
    test = r["test_voices"]
    a = sum(v.split("+")[0] in accents for v in test)
    b = sum(v.split("+")[-1] in variants for v in test)
    return f"{a} of {len(test)} test voices have an accent and {b} a variant that training heard in other voices"


def write_section(results_md: str, runs: list[dict], summary: dict) -> None:
    """The RESULTS.md section from the runs' metrics and the summary of the whole measurement."""
    check, total = summary["stream_check"], summary["total_seconds"]
    for r in runs:
        pred = pd.read_csv(Path(r["outputs"]["predictions.csv"]))
        r["test_voices"] = sorted(set(pred["speaker"]))
    r0 = runs[0]
    rows = []
    for r in runs:
        gru = r["metrics"][r["model"]]
        _, base = next((k, v) for k, v in r["metrics"].items() if k.startswith("majority"))
        g = r["groups"]
        rows.append([r["hold_out"], f"{len(g['train'])} / {len(g['val'])} / {len(g['test'])}",
                     r["test_clips"], f"{gru['accuracy']:.3f}", f"{gru['macro_f1']:.3f}", f"{base['accuracy']:.3f}",
                     f"{base['macro_f1']:.3f}", f"{r['best_epoch']} of {r['epochs_run']}", f"{r['seconds']:.0f}"])
    table = format_table(rows, ["held out", "train / val / test groups", "test clips", "GRU accuracy",
                                "GRU macro-F1", "majority accuracy", "majority macro-F1", "best epoch",
                                "seconds"], markdown=True)
    s = r0["synth_settings"]
    tests = "; ".join(f"{r['hold_out']}: {', '.join(r['groups']['test'])}" for r in runs)
    holds = ",".join(summary["hold_outs"])
    seen = "; ".join(f"{r['hold_out']}: {_seen_parts(r)}" for r in runs)
    worst = ""
    cm = np.array(r0["confusion"])
    off = cm - np.diag(np.diag(cm))
    if off.any():
        i, j = np.unravel_index(off.argmax(), off.shape)
        worst = (f" The most frequent confusion (hold-out {r0['hold_out']}): {r0['classes'][i]!r} heard as "
                 f"{r0['classes'][j]!r}, {off[i, j]} of {cm[i].sum()} clips.")
    capped = [r["hold_out"] for r in runs if r["epochs_run"] == r["settings"]["epochs"] == r["best_epoch"]]
    capped_note = (f" The {', '.join(capped)} run(s) reached the epoch limit still improving on validation."
                   if capped else "")
    body = f"""**The audio is synthetic**: words spoken by espeak-ng (a formant synthesiser), not recorded
speech; accuracy on real recordings will be lower. Words: {', '.join(s['words'])}; {r0['espeak_ng']};
accents {', '.join(s['accents'])} x variants {', '.join(s['variants'])} ({len(s['accents']) * len(s['variants'])}
voices), speeds {', '.join(map(str, s['speeds']))} wpm, pitches {', '.join(map(str, s['pitches']))}: {r0['clips']}
clips, made reproducibly by `scripts/make_speech_words.py` (byte-identical when made again). Features: 40 log-mel
bands, 25 ms windows every 10 ms at 16 kHz (espeak-ng's 22050 Hz resampled with soxr), standardised per band
with the training frames' statistics. Model: {r0['model']}, hidden {r0['settings']['hidden_size']},
{r0['num_parameters']:,} parameters, Adam lr {r0['settings']['lr']}, batch {r0['settings']['batch_size']},
early stopping on held-out validation groups (patience {r0['settings']['patience']}, at most
{r0['settings']['epochs']} epochs); seed {summary['seed']}, one run each. The first run's seconds include
synthesising the words when they are not cached yet (about 45 s) and every run's include its features.

Test groups are never heard in training (nor used for early stopping). `voice`: accent+variant pairs are held
out, so a test voice's accent or variant may occur in training in other pairings; `variant`: every voice of the
held-out variants (timbres) is held out; `accent`: every voice of the held-out accents. Test groups: {tests}.
Overlap with training: {seen}.

{table}

Majority baseline: always the most frequent training word (the set is balanced, so 1 in 10).{worst}{capped_note}

Streaming: the saved model of the `{r0['hold_out']}` run classified all {check['clips']} held-out clips again
chunk by chunk ({check['chunk_ms']:.0f} ms chunks, features computed per chunk and the GRU state carried across
frames): {check['same_answer']} of {check['clips']} gave the whole-clip answer, largest probability difference
{check['max_abs_prob_diff']:.1e}; {check['cpu_ms_per_audio_second']:.0f} ms of CPU per second of audio.

Command: `PYTHONPATH=src .venv/bin/python benchmarks/listen_results.py --hold-outs {holds} --seed {summary['seed']}`
(each row is `fastgru listen --hold-out H --seed {summary['seed']}`). Machine: {summary['machine']}; shared with
other work, so the seconds are indicative. Total {total / 60:.1f} min, finished {summary['finished']}.
"""
    replace_section(results_md, "listen", "### listen: spoken-word recognition on held-out voices "
                    "(synthetic espeak-ng speech)", body)


if __name__ == "__main__":
    main()
