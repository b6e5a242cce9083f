"""mkdocs hooks for fastgru's documentation site (named in mkdocs.yml).

The pages in docs/ are written to be read in the repository too, so they link to the measured results
at the repository's top (`../RESULTS.md`, `../BENCHMARKS.md`). The site publishes those two files as
pages of its own and points such links at them, so that `mkdocs build --strict` checks every link.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_PAGES = ("RESULTS.md", "BENCHMARKS.md")


def on_files(files, config):
    for name in TOP_LEVEL_PAGES:
        files.append(File.generated(config, name, content=(ROOT / name).read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri in TOP_LEVEL_PAGES:
        return markdown.replace("](docs/", "](")
    for name in TOP_LEVEL_PAGES:
        markdown = markdown.replace(f"](../{name}", f"]({name}")
    return markdown
