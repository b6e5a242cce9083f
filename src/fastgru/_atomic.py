"""Atomic file writes: a temp file in the target's folder, flushed to disk, then os.replace.

So a crash or an error mid-write never leaves a half-written file at `path`, and an existing file is
either fully replaced or untouched. Existing files are only replaced when the caller says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


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
    """Write `path` atomically; `write` is the bytes or a function that writes a given temp path."""
    path = check_target(path, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if isinstance(write, (bytes, bytearray, memoryview)):
            with os.fdopen(fd, "wb") as f:
                f.write(write)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if path.exists() and not overwrite:  # created by someone else while we wrote
            raise FileExistsError(f"path={str(path)!r} appeared while writing; pass overwrite=True to replace it")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
