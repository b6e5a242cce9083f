"""The fused CPU kernel's build helpers."""

import os
import re
import shutil
import time

import pytest

from fastgru.backends import cpu


def test_stale_build_lock_is_removed_fresh_one_kept(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    cpu._remove_stale_lock(tmp_path)
    assert lock.exists()  # a build may be running right now
    old = time.time() - cpu._STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match="stale build lock"):
        cpu._remove_stale_lock(tmp_path)
    assert not lock.exists()
    cpu._remove_stale_lock(tmp_path)  # no lock: nothing to do


def test_extension_loads_here():
    """CI machines have g++ and ninja: the fused kernel must build, not silently fall back."""
    assert cpu.is_available(), cpu.load_error()


def test_build_folder_changes_with_any_header(tmp_path, monkeypatch):
    """torch's loader rebuilds only when a listed source changes; the folder's hash covers the headers too."""
    monkeypatch.setenv("FASTGRU_BUILD_DIR", str(tmp_path / "build"))
    real = cpu._build_dir().name
    copy = tmp_path / "csrc"
    shutil.copytree(cpu._CSRC, copy)
    monkeypatch.setattr(cpu, "_CSRC", copy)
    assert cpu._build_dir().name == real  # same files, same folder: an unchanged kernel is not rebuilt
    header = copy / "cell_math.h"
    text = header.read_text()
    assert "T(80)" in text
    header.write_text(text.replace("T(80)", "T(81)"))  # one character of one header
    changed = cpu._build_dir().name
    assert changed != real and changed.split("-")[::2] == real.split("-")[::2]  # torch and CPU parts kept
    header.write_text(text)
    assert cpu._build_dir().name == real
    (copy / "extra.h").write_text("#pragma once\n")  # a new file counts too
    assert cpu._build_dir().name not in (real, changed)


def test_every_included_header_is_hashed():
    """Each local #include of the kernel names a file in csrc/, the folder whose hash keys the build."""
    files = {p.name for p in cpu._CSRC.iterdir()}
    included = set()
    for name in files:
        included |= set(re.findall(r'#include "([^"]+)"', (cpu._CSRC / name).read_text()))
    assert "time_loops.h" in included and "stepper.h" in included
    assert included <= files, included - files
    sources = {p.name for p in cpu._SOURCES}
    assert "gru_cpu.cpp" in sources and all(p.parent == cpu._CSRC for p in cpu._SOURCES)
    assert files - included == sources  # every file is a listed source or a header some source uses


def test_build_folder_is_per_cpu_kind(tmp_path, monkeypatch):
    """The kernel is built with -march=native: another kind of CPU must not load this CPU's build."""
    monkeypatch.setenv("FASTGRU_BUILD_DIR", str(tmp_path / "build"))
    info = tmp_path / "cpuinfo"
    block = "processor\t: {n}\nmodel name\t: Example CPU\nflags\t\t: fpu sse2 avx2 {extra}\n\n"
    monkeypatch.setattr(cpu, "_CPUINFO", info)
    info.write_text(block.format(n=0, extra="avx512f") + block.format(n=1, extra="avx512f"))
    with_avx512 = cpu._build_dir().name
    info.write_text(block.format(n=0, extra="avx512f") + block.format(n=1, extra="other"))
    assert cpu._build_dir().name == with_avx512  # the first processor's block decides
    info.write_text(block.format(n=0, extra="") + block.format(n=1, extra=""))
    without = cpu._build_dir().name
    assert without != with_avx512 and without.split("-")[:-1] == with_avx512.split("-")[:-1]
    monkeypatch.setattr(cpu, "_CPUINFO", tmp_path / "missing")
    assert cpu._build_dir().name.startswith(with_avx512.rsplit("-", 1)[0] + "-cpu")  # no cpuinfo: still builds
