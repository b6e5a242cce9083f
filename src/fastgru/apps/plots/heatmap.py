"""Heatmaps of a GRU's update gate z, reset gate r and state h over time for one sequence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fastgru.apps.plots.gates import GateTrace
from fastgru.io.atomic import atomic_path


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure atomically (the format follows the path's suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path


def plot_gate_heatmaps(
    trace: GateTrace,
    path: str | Path,
    *,
    inputs: np.ndarray | None = None,
    step_labels: Sequence[str] | None = None,
    title: str = "GRU gates over time",
    input_label: str = "input",
) -> Path:
    """Save a PNG with one row per quantity (units on y, time steps on x).

    Rows: the input (optional, (T, I) e.g. a piano roll), update gate z (z near 1 keeps the old state),
    reset gate r (r near 0 ignores the old state in the candidate), and the state h.
    step_labels: one short label per step for the x axis (e.g. the characters read), shown when T <= 80.
    """
    T = trace.steps
    rows: list[tuple[str, np.ndarray, str, float, float]] = []
    if inputs is not None:
        inputs = np.asarray(inputs, dtype=float)
        if inputs.shape[0] != T:
            raise ValueError(f"inputs has {inputs.shape[0]} steps, the trace {T}")
        rows.append((input_label, inputs.T, "Greys", float(inputs.min()), float(max(inputs.max(), 1e-9))))
    rows += [
        ("update gate z  (1 = keep old state)", trace.z.numpy().T, "viridis", 0.0, 1.0),
        ("reset gate r  (0 = forget old state in candidate)", trace.r.numpy().T, "viridis", 0.0, 1.0),
        ("state h", trace.h.numpy().T, "RdBu_r", -1.0, 1.0),
    ]
    fig = Figure(figsize=(min(4 + 0.12 * T, 18), 2.2 * len(rows)))
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, data, cmap, lo, hi) in zip(axes, rows):
        im = ax.imshow(data, aspect="auto", origin="lower", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(label, fontsize=10, loc="left")
        ax.set_ylabel("unit" if label != input_label else "feature")
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    if step_labels is not None and T <= 80:
        axes[-1].set_xticks(range(T), [repr(s)[1:-1] for s in step_labels], fontsize=7)
    axes[-1].set_xlabel("time step")
    fig.suptitle(title)
    return save_figure(fig, path)
