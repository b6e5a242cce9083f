"""Atomic file writes: write a temporary file beside the target, then `os.replace` it into place.

A reader (or a run killed half-way) never sees a half-written file: the target is either the old complete
file or the new complete file. Used for checkpoints, metrics JSON, forecast CSVs and plots.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success move it onto `target` atomically.

    The temporary name keeps the target's suffix (matplotlib and pandas choose the format by it) unless
    `suffix` says otherwise. On an exception the temporary file is removed and the target is untouched;
    one left by a killed process is removed by the next write of the same target (remove_orphans).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else target.suffix
    remove_orphans(target, suffix)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{_temp_prefix(target)}{os.getpid()}-", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)  # mkstemp creates 0600; give the file the mode a plain open() would
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # flush the data to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process) or cannot tell: keep its file
    return True


def remove_orphans(target: str | os.PathLike, suffix: str = "") -> list[Path]:
    """Delete temporary files that earlier writes of `target` left behind when they were killed.

    Temporary names carry the writing process's id (`.NAME.tmp-pid<PID>-<random><suffix>`); a file
    whose process no longer runs can never be completed, so each new write of the same target removes
    it. Interrupted writes therefore never accumulate (a killed 60 MB checkpoint save is reclaimed by the
    next save). Files of live processes, and any other file, are left alone. Returns what was removed.
    """
    target = Path(target)
    prefix = _temp_prefix(target)
    removed = []
    try:
        candidates = list(target.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"))
    except OSError:
        return removed
    for path in candidates:
        pid_text = path.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
            removed.append(path)
    return removed


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `target` atomically (NaN/inf are written as NaN/Infinity)."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_target(path: str | os.PathLike, *, overwrite: bool, what: str = "path") -> Path:
    """Validate a destination before any work: its folder exists and it is not an existing file unless overwrite."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what}={str(path)!r} is a directory; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{what}={str(path)!r}: folder {str(path.parent)!r} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what}={str(path)!r} already exists; pass overwrite=True to replace it")
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None] | bytes, *, overwrite: bool) -> Path:
    """Write `path` atomically after check_target; `write` is the bytes or a function that writes a temp path."""
    path = check_target(path, overwrite=overwrite)
    with atomic_path(path, suffix=".tmp") as tmp:
        if isinstance(write, (bytes, bytearray, memoryview)):
            tmp.write_bytes(bytes(write))
        else:
            write(tmp)
        if path.exists() and not overwrite:  # created by someone else while we wrote
            raise FileExistsError(f"path={str(path)!r} appeared while writing; pass overwrite=True to replace it")
    return path
