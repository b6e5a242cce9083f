"""The fused CPU kernel's build helpers."""

import os
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
