"""The confusion matrix of a classifier as a picture (classify, classify-text, listen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fastgru.apps.plots.heatmap import save_figure


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Counts as a heat map (row = true class, column = predicted), with the counts written in."""
    k = len(classes)
    fig = Figure(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k), constrained_layout=True)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45 if max(len(c) for c in classes) > 3 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
