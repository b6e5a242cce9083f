"""Every ``FASTGRU_*`` environment variable, read in one place and documented here.

fastgru needs no configuration; these switches exist for builds, debugging and measurements. Python code
reads them through the functions below (at call time, so a test or a notebook can change them); the two
read by the C++ kernel (``FASTGRU_BUFFER_CACHE``, ``FASTGRU_HUGE_PAGES``) are read once when the kernel
first needs them and are listed here so that :data:`SWITCHES` is the complete list.

``python -c "import fastgru.config as c; print(c.markdown_table())"`` prints the table the docs show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Switch:
    """One environment variable: its name, what it does, its default, and who reads it."""

    name: str
    effect: str
    default: str
    read_by: str


SWITCHES: tuple[Switch, ...] = (
    Switch("FASTGRU_BUILD_DIR", "folder for the C++ kernel's build (one sub-folder per torch version)",
           "$XDG_CACHE_HOME/fastgru, else ~/.cache/fastgru", "fastgru.backends.cpu"),
    Switch("FASTGRU_BUILD_VERBOSE", "set (any value): show the compiler's output during the first build",
           "unset", "fastgru.backends.cpu"),
    Switch("FASTGRU_DISABLE_CPU_EXT", "set (any value): never build or load the C++ kernel; the plain "
           "torch loop computes everything (the same numbers, slower)", "unset", "fastgru.backends.cpu"),
    Switch("FASTGRU_BUFFER_CACHE", "0: the C++ kernel allocates its work buffers on every call instead of "
           "reusing them", "1 (reuse)", "the C++ kernel"),
    Switch("FASTGRU_HUGE_PAGES", "1: ask for transparent huge pages for the C++ kernel's large buffers",
           "off", "the C++ kernel"),
    Switch("FASTGRU_TRITON_MODE", "force the Triton kernels' mode: persistent, step or gemm (for "
           "measurements; the heuristics choose otherwise)", "unset (heuristics)",
           "fastgru.backends.triton.heuristics"),
    Switch("FASTGRU_TRITON_GATES", "fp32: keep the Triton backward's saved gates in float32 under bf16/fp16 "
           "inputs", "unset (the input's dtype)", "fastgru.backends.triton.launch"),
    Switch("FASTGRU_TRITON_POISON", "set (any value): fill the Triton kernels' outputs and scratch with NaN "
           "first, so a value a kernel forgot to write shows up (debugging)", "unset",
           "fastgru.backends.triton.launch"),
    Switch("FASTGRU_SPEECH_CACHE", "folder for the synthesized speech clips of `fastgru listen`",
           "$XDG_CACHE_HOME/fastgru/speech, else ~/.cache/fastgru/speech", "fastgru.apps.speech.synth"),
)


def _flag(name: str) -> bool:
    return bool(os.environ.get(name))


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "fastgru"


def build_dir() -> Path:
    """Where the C++ kernel is built: $FASTGRU_BUILD_DIR, else the user's cache folder."""
    return Path(os.environ.get("FASTGRU_BUILD_DIR") or _cache_root())


def build_verbose() -> bool:
    """$FASTGRU_BUILD_VERBOSE is set: show the compiler's output."""
    return _flag("FASTGRU_BUILD_VERBOSE")


def cpu_extension_disabled() -> bool:
    """$FASTGRU_DISABLE_CPU_EXT is set: use the plain torch loop only."""
    return _flag("FASTGRU_DISABLE_CPU_EXT")


def triton_mode() -> str | None:
    """$FASTGRU_TRITON_MODE, or None when unset or empty."""
    return os.environ.get("FASTGRU_TRITON_MODE") or None


def triton_gates_fp32() -> bool:
    """$FASTGRU_TRITON_GATES is fp32 / float32."""
    return os.environ.get("FASTGRU_TRITON_GATES", "").lower() in ("fp32", "float32")


def triton_poison() -> bool:
    """$FASTGRU_TRITON_POISON is set: NaN-fill Triton outputs before the kernels run."""
    return _flag("FASTGRU_TRITON_POISON")


def speech_cache_dir() -> Path:
    """Where `fastgru listen` keeps synthesized clips: $FASTGRU_SPEECH_CACHE, else the user's cache."""
    return Path(os.environ.get("FASTGRU_SPEECH_CACHE") or _cache_root() / "speech")


def markdown_table() -> str:
    """The switches as a Markdown table (the one in docs/architecture.md)."""
    rows = ["| variable | effect | default | read by |", "|---|---|---|---|"]
    rows += [f"| `{s.name}` | {s.effect} | {s.default} | {s.read_by} |" for s in SWITCHES]
    return "\n".join(rows)
