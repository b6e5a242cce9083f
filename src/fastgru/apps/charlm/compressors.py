"""General-purpose compressors as baselines for a character language model.

A compressor that has read the training text predicts the test text too: the bits it spends on the
test part once the training part is its prefix,

    bits(test | train) = 8 * (len(compress(train + test)) - len(compress(train))),

divided by the number of test characters, is a bits-per-character figure on the same footing as a
language model's cross-entropy (both are code lengths of the test text given the training text).
Texts are encoded as UTF-8; bz2 at level 9 (900 kB blocks), lzma at preset 9 + extreme (``xz -9e``).
"""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Callable

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "bz2": lambda data: bz2.compress(data, compresslevel=9),
    "lzma": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
}


def conditional_bits_per_char(prefix: str, text: str, compressor: str) -> float:
    """Bits per character that `compressor` ("bz2" or "lzma") spends on `text` after reading `prefix`."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor must be one of {sorted(COMPRESSORS)}, got {compressor!r}")
    if not text:
        raise ValueError("text must hold at least one character")
    compress = COMPRESSORS[compressor]
    head = prefix.encode("utf-8")
    extra = len(compress(head + text.encode("utf-8"))) - len(compress(head))
    return 8.0 * extra / len(text)


def baselines(prefix: str, text: str) -> dict[str, float]:
    """{compressor: bits per character of `text` given `prefix`} for every compressor in COMPRESSORS."""
    return {name: conditional_bits_per_char(prefix, text, name) for name in COMPRESSORS}
