"""Synthesise `fastgru listen`'s built-in spoken words with espeak-ng (synthetic speech, not recordings).

    PYTHONPATH=src .venv/bin/python scripts/make_speech_words.py [--cache-dir DIR] [--words yes,no,...]
        [--accents en-us,en-gb,...] [--variants m3,f3,...] [--speeds 130,175,220] [--pitches 35,50,65]

Writes <cache-dir>/<hash of the settings and espeak-ng version>/<word>/<accent+variant>_s<speed>_p<pitch>.wav
and manifest.json (settings, espeak-ng version, SHA-256 of every file), reusing what an earlier run made.
The defaults are the set `fastgru listen` trains on (10 words x 48 voices x 3 speeds x 3 pitches = 4320
clips, about 130 MB, under a minute). espeak-ng is deterministic: the same settings give the same bytes;
--check makes the set a second time in a temporary folder and compares every file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fastgru.apps.listen import parse_list
from fastgru.apps.speech.synth import SynthSettings, default_cache_dir, synthesize_words


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", help=f"root of the cache (default: {default_cache_dir()})")
    p.add_argument("--words")
    p.add_argument("--accents")
    p.add_argument("--variants")
    p.add_argument("--speeds")
    p.add_argument("--pitches")
    p.add_argument("--workers", type=int, default=2, help="espeak-ng processes at once (default 2)")
    p.add_argument("--check", action="store_true", help="synthesise again elsewhere and compare the bytes")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    args = p.parse_args(argv)
    chosen = {"words": parse_list(args.words), "accents": parse_list(args.accents),
              "variants": parse_list(args.variants), "speeds": parse_list(args.speeds, int),
              "pitches": parse_list(args.pitches, int)}
    try:
        settings = SynthSettings(**{k: v for k, v in chosen.items() if v is not None})
        folder = synthesize_words(settings, args.cache_dir, workers=args.workers, progress=args.progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"make_speech_words: error: {exc}", file=sys.stderr)
        return 2
    manifest = json.loads((folder / "manifest.json").read_text())
    print(f"{len(manifest['files'])} clips ({len(settings.words)} words x {len(settings.voices)} voices x "
          f"{len(settings.speeds)} speeds x {len(settings.pitches)} pitches) by {manifest['espeak_ng']} in {folder}")
    print("synthetic speech (espeak-ng), not recorded speech")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            again = synthesize_words(settings, tmp, workers=args.workers, progress=args.progress)
            differ = [f["path"] for f in manifest["files"]
                      if (Path(again) / f["path"]).read_bytes() != (folder / f["path"]).read_bytes()]
        print(f"determinism check: {len(manifest['files']) - len(differ)} of {len(manifest['files'])} files "
              "byte-identical when made again")
        if differ:
            print(f"differ: {differ[:5]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
