"""Markdown reports (BENCHMARKS.md, RESULTS.md) that several tools update, each its own section.

A section sits between `<!-- name:start -->` and `<!-- name:end -->`; rewriting one leaves the others
as they are. Files are written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastgru.io.atomic import write_text


def replace_section(path: str | Path, name: str, heading: str, body: str) -> None:
    """Put `heading` + `body` between the markers of section `name` in `path` (appended if absent)."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{heading}\n\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    write_text(path, text)
