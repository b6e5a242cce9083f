"""The attention heat-map of one translated sentence: which source word each output word looked at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fastgru.apps.plots.heatmap import save_figure


def plot_attention(weights: np.ndarray, source_tokens: Sequence[str], output_tokens: Sequence[str],
                   path: str | Path, title: str = "attention") -> Path:
    """PNG of `weights` (output steps x source positions; rows sum to 1): rows labelled with the output
    words, columns with the source words."""
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (len(output_tokens), len(source_tokens)):
        raise ValueError(f"weights are {weights.shape}, labels {len(output_tokens)} x {len(source_tokens)}")
    fig = Figure(figsize=(1.5 + 0.55 * len(source_tokens), 1.2 + 0.45 * len(output_tokens)), constrained_layout=True)
    ax = fig.subplots()
    im = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), list(source_tokens), rotation=45, ha="right")
    ax.set_yticks(range(len(output_tokens)), list(output_tokens))
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    for i in range(weights.shape[0]):
        for j in range(weights.shape[1]):
            if weights[i, j] >= 0.1:
                ax.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if weights[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
