"""fastgru.config: every FASTGRU_* variable the package reads is registered there, read at call time, and
listed in the docs."""

from __future__ import annotations

import re
from pathlib import Path

import fastgru
from fastgru import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(fastgru.__file__).parent


def test_every_variable_in_the_package_is_registered_and_documented():
    used = set()
    for path in list(PACKAGE.rglob("*.py")) + list(PACKAGE.rglob("*.cpp")) + list(PACKAGE.rglob("*.h")):
        used |= set(re.findall(r"FASTGRU_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    registered = {s.name for s in config.SWITCHES}
    assert used == registered, f"unregistered: {used - registered}; registered but unused: {registered - used}"
    docs = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in docs for name in registered), [n for n in registered if f"`{n}`" not in docs]


def test_python_switches_are_read_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTGRU_BUILD_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("FASTGRU_TRITON_MODE", "step")
    monkeypatch.setenv("FASTGRU_TRITON_GATES", "FP32")
    monkeypatch.setenv("FASTGRU_SPEECH_CACHE", str(tmp_path / "s"))
    monkeypatch.setenv("FASTGRU_DISABLE_CPU_EXT", "1")
    assert config.build_dir() == tmp_path / "b" and config.speech_cache_dir() == tmp_path / "s"
    assert config.triton_mode() == "step" and config.triton_gates_fp32() and config.cpu_extension_disabled()
    for name in ("FASTGRU_BUILD_DIR", "FASTGRU_TRITON_MODE", "FASTGRU_TRITON_GATES", "FASTGRU_SPEECH_CACHE",
                 "FASTGRU_DISABLE_CPU_EXT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert config.build_dir() == tmp_path / "cache" / "fastgru"
    assert config.speech_cache_dir() == tmp_path / "cache" / "fastgru" / "speech"
    assert config.triton_mode() is None and not config.triton_gates_fp32() and not config.cpu_extension_disabled()
    assert config.markdown_table().count("\n| `FASTGRU_") == len(config.SWITCHES)
