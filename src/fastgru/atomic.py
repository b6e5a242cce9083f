"""Atomic file writes: write a temporary file beside the target, then `os.replace` it into place.

A reader (or a run killed half-way) never sees a half-written file: the target is either the old complete
file or the new complete file. Used for checkpoints, metrics JSON, forecast CSVs and plots.
"""

from __future__ import annotations

import contextlib
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
    `suffix` says otherwise. On an exception the temporary file is removed and the target is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix
    )
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
