"""The built-in spoken words: synthesised with Debian's espeak-ng, reproducibly, into a cache folder.

This is synthetic speech (a formant synthesiser), not recorded speech: good for showing the pipeline and
testing it, easier than real microphones, rooms and people. Every clip is one word spoken by one *voice*
(an English accent such as ``en-gb-scotland`` combined with a voice variant such as ``f3``, written
``en-gb-scotland+f3``) at one speed (``-s``, words per minute) and one pitch (``-p``, 0-99).

The folder is laid out exactly as a user's recordings are (see :mod:`fastgru.apps.speech.audio`):
``<cache>/<key>/<word>/<voice>_s<speed>_p<pitch>.wav``, so the file name up to its first underscore is
the speaker. ``<key>`` is a hash of the settings and the espeak-ng version; ``manifest.json`` (written
last) lists every file with its settings and SHA-256. espeak-ng is deterministic: the same settings and
version give the same bytes, which the manifest lets anyone check. A second call with the same settings
finds the manifest, checks the files against it and reuses them; a missing or damaged file is made again.
Each WAV is written to a temporary name and renamed into place, so a killed run leaves no half file.

The cache root is ``$FASTGRU_SPEECH_CACHE`` if set, else ``$XDG_CACHE_HOME/fastgru/speech`` (default
``~/.cache/fastgru/speech``), or whatever the caller passes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fastgru import config
from fastgru.io import atomic

FORMAT = "fastgru-espeak-words-v1"
DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # Speech Commands' ten
DEFAULT_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                   "en-029", "en-us-nyc")
DEFAULT_VARIANTS = ("m1", "m3", "m7", "f1", "f3", "f5")
DEFAULT_SPEEDS = (130, 175, 220)
DEFAULT_PITCHES = (35, 50, 65)

INSTALL_HINT = ("espeak-ng is not installed; `fastgru listen` needs it to synthesise its built-in words. "
                "Install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng` "
                "(macOS) or from https://github.com/espeak-ng/espeak-ng, or pass --data FOLDER with your own "
                "recordings (one sub-folder per word)")
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9' -]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


@dataclass(frozen=True)
class SynthSettings:
    """What to synthesise: every word by every accent+variant voice at every speed and pitch."""

    words: tuple[str, ...] = DEFAULT_WORDS
    accents: tuple[str, ...] = DEFAULT_ACCENTS
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    speeds: tuple[int, ...] = DEFAULT_SPEEDS
    pitches: tuple[int, ...] = DEFAULT_PITCHES

    def __post_init__(self) -> None:
        for name in ("words", "accents", "variants", "speeds", "pitches"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values:
                raise ValueError(f"{name}: give at least one")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: repeated entries in {list(values)}")
        bad = [w for w in self.words if not _WORD.match(w)]
        if bad:
            raise ValueError(f"words: {bad} are not plain words (letters, digits, apostrophes, spaces, hyphens; "
                             "no leading hyphen)")
        bad = [v for v in self.accents + self.variants if not _NAME.match(v)]
        if bad:
            raise ValueError(f"accents/variants: {bad} are not espeak-ng voice or variant names")
        if any(not 80 <= s <= 450 for s in self.speeds):
            raise ValueError(f"speeds: espeak-ng speaks at 80-450 words per minute, got {list(self.speeds)}")
        if any(not 0 <= p <= 99 for p in self.pitches):
            raise ValueError(f"pitches: espeak-ng pitch is 0-99, got {list(self.pitches)}")

    @property
    def voices(self) -> list[str]:
        """Every voice as ``accent+variant``."""
        return [f"{a}+{v}" for a in self.accents for v in self.variants]

    def clips(self) -> list[dict[str, Any]]:
        """One record per clip: word, voice, accent, variant, speed, pitch and its relative path."""
        out = []
        for word in self.words:
            for accent in self.accents:
                for variant in self.variants:
                    for speed in self.speeds:
                        for pitch in self.pitches:
                            voice = f"{accent}+{variant}"
                            out.append({"path": f"{word}/{voice}_s{speed}_p{pitch}.wav", "word": word,
                                        "voice": voice, "accent": accent, "variant": variant, "speed": speed,
                                        "pitch": pitch})
        return out

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in asdict(self).items()}


def default_cache_dir() -> Path:
    """$FASTGRU_SPEECH_CACHE, else $XDG_CACHE_HOME/fastgru/speech (~/.cache/fastgru/speech)."""
    return config.speech_cache_dir()


def find_espeak(executable: str | None = None) -> str:
    """The espeak-ng program's path; FileNotFoundError saying how to install it when there is none."""
    found = shutil.which(executable or "espeak-ng")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT if executable is None else f"{executable!r}: not found. {INSTALL_HINT}")
    return found


def espeak_info(executable: str) -> tuple[str, Path | None]:
    """(version line, data folder) from ``espeak-ng --version``."""
    res = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    text = (res.stdout + res.stderr).strip()
    if res.returncode != 0 or "speak" not in text.lower():
        raise FileNotFoundError(f"{executable} --version failed ({text or res.returncode}); is it espeak-ng?")
    m = re.search(r"Data at:\s*(\S+)", text)
    version = text.split("Data at:")[0].strip()
    return version, Path(m.group(1)) if m else None


def _check_voices(executable: str, data_dir: Path | None, settings: SynthSettings) -> None:
    """Refuse unknown accents or variants before synthesising thousands of clips."""
    if data_dir is not None and (data_dir / "voices" / "!v").is_dir():
        known = {p.name for p in (data_dir / "voices" / "!v").iterdir()}
        missing = [v for v in settings.variants if v not in known]
        if missing:  # espeak-ng silently ignores an unknown variant: check it here
            raise ValueError(f"espeak-ng has no voice variant(s) {missing}; known: {', '.join(sorted(known)[:40])}...")
    res = subprocess.run([executable, "--voices"], capture_output=True, text=True, check=False)
    known_voices = set()
    for line in res.stdout.splitlines()[1:]:  # Pty Language Age/Gender VoiceName File Other Languages
        cols = line.split()
        if len(cols) >= 5:
            known_voices.update({cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]})
    # espeak-ng falls back to a near language for an unknown name (no-such -> Norwegian), so check the list
    unknown = [a for a in settings.accents if known_voices and a not in known_voices]
    if unknown:
        raise ValueError(f"espeak-ng has no voice(s) {unknown}; list English voices with `espeak-ng --voices=en`")


def settings_key(settings: SynthSettings, version: str) -> str:
    """12 hex digits naming the cache folder of these settings and this espeak-ng version."""
    blob = json.dumps({"format": FORMAT, "espeak": version, **settings.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _speak(executable: str, folder: Path, clip: dict[str, Any]) -> str:
    """Synthesise one clip into its place (temporary file, then rename); return its SHA-256."""
    target = folder / clip["path"]
    with atomic.atomic_path(target) as tmp:
        cmd = [executable, "-v", clip["voice"], "-s", str(clip["speed"]), "-p", str(clip["pitch"]),
               "-w", str(tmp), clip["word"]]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0 or tmp.stat().st_size <= 44:
            raise ValueError(f"espeak-ng could not speak {clip['word']!r} as {clip['voice']!r}: "
                             f"{res.stderr.strip() or 'no audio'}")
        digest = _sha256(tmp)
    return digest


def _reusable(folder: Path, manifest: dict[str, Any], clips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clips that must be (re)made: absent, or not matching the manifest's SHA-256."""
    known = {f["path"]: f["sha256"] for f in manifest.get("files", [])}
    todo = []
    for clip in clips:
        path = folder / clip["path"]
        if clip["path"] not in known or not path.is_file() or _sha256(path) != known[clip["path"]]:
            todo.append(clip)
    return todo


def synthesize_words(
    settings: SynthSettings | None = None,
    cache_dir: str | Path | None = None,
    *,
    executable: str | None = None,
    workers: int = 2,
    progress: bool = False,
) -> Path:
    """Make (or reuse) the synthetic word set of `settings`; return its folder (one sub-folder per word).

    executable: the espeak-ng program (default: ``espeak-ng`` on PATH). workers: espeak-ng processes at
    once (each clip is one short process call; the output does not depend on this).
    """
    settings = settings or SynthSettings()
    exe = find_espeak(executable)
    version, data_dir = espeak_info(exe)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / settings_key(settings, version)
    clips = settings.clips()
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("espeak_ng") != version:
        manifest = None
    todo = _reusable(folder, manifest, clips) if manifest is not None else clips
    if not todo:
        return folder
    _check_voices(exe, data_dir, settings)
    folder.mkdir(parents=True, exist_ok=True)
    digests = {f["path"]: f["sha256"] for f in (manifest or {}).get("files", [])}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda c: (c["path"], _speak(exe, folder, c)), todo)
        for path, digest in tqdm(results, total=len(todo), desc="espeak-ng words", unit="clip",
                                 disable=not progress, dynamic_ncols=True):
            digests[path] = digest
    atomic.write_json(folder / "manifest.json", {
        "format": FORMAT,
        "synthetic": True,
        "note": "synthetic speech made by espeak-ng (a formant synthesiser), not recorded speech",
        "espeak_ng": version,
        "settings": settings.to_dict(),
        "voices": settings.voices,
        "files": [{**c, "sha256": digests[c["path"]]} for c in clips],
    })
    return folder


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a synthesised set, or None for a folder that is not one (a user's recordings)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return manifest if manifest.get("format") == FORMAT else None

