"""The ``--sep`` / ``--decimal`` command-line options as a context that the table reader consults.

Kept apart from :mod:`fastgru.apps.data.tabular` (which needs pandas, an optional extra) so the command line
can set the context without importing pandas; a task that reads a table imports the reader itself.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_READING: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar("fastgru_reading",
                                                                                       default=None)


def separator(text: str | None) -> str | None:
    """A --sep value as the character: 'tab' (or a backslash-t) is a tab; None stays None (detect)."""
    if text is None:
        return None
    return SEPARATOR_NAMES.get(text.lower(), text)


@contextlib.contextmanager
def reading_options(sep: str | None = None, decimal: str | None = None) -> Iterator[None]:
    """Within the block, ``read_table`` uses this separator / decimal mark where its caller gives none.

    The command line wraps each run in it with ``--sep`` and ``--decimal``, so every task that reads a
    user's table obeys them without passing them down; a Python caller passes them to the reader.
    """
    token = _READING.set({"sep": separator(sep), "decimal": decimal})
    try:
        yield
    finally:
        _READING.reset(token)


def current() -> dict[str, str | None]:
    """The separator and decimal mark set by the innermost :func:`reading_options` block ({} outside)."""
    return _READING.get() or {}
