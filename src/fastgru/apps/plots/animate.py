"""An animated GIF of the GRU process, step by step, for a small hidden size.

Each time step is shown in four stages, in the order the cell computes them:
reset gate r, candidate n, update gate z, new state h' = (1 - z) * n + z * h.
Each quantity is a strip of H coloured cells; the stage being computed is outlined and its equation shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from fastgru.apps.plots.gates import GateTrace
from fastgru.io.atomic import atomic_path

STAGES = (
    ("r", "reset gate   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)"),
    ("n", "candidate    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))"),  # reset_after=False: see below
    ("z", "update gate  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)"),
    ("h_new", "new state    h' = (1 - z) * n + z * h"),
)
CANDIDATE_RESET_BEFORE = "candidate    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)"
ROWS = (("h_prev", "h (previous)"), ("r", "reset gate r"), ("n", "candidate n"), ("z", "update gate z"),
        ("h_new", "new state h'"))
MAX_HIDDEN = 32


def animate_gru(
    trace: GateTrace,
    path: str | Path,
    *,
    step_labels: Sequence[str] | None = None,
    max_steps: int = 16,
    frame_ms: int = 450,
) -> Path:
    """Write a GIF of the first `max_steps` steps of `trace` (4 frames per step) and return its path."""
    H = trace.r.shape[1]
    if H > MAX_HIDDEN:
        raise ValueError(f"the animation is for small hidden sizes (<= {MAX_HIDDEN}); this trace has H={H}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    steps = min(max_steps, trace.steps)
    values = {"h_prev": trace.h_prev, "r": trace.r, "n": trace.n, "z": trace.z, "h_new": trace.h}
    blank = np.full((1, H), np.nan)

    fig = Figure(figsize=(7.0, 4.2), dpi=80)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(len(ROWS), 1)
    images = {}
    for ax, (key, label) in zip(axes, ROWS):
        cmap = "RdBu_r" if key in ("h_prev", "n", "h_new") else "viridis"
        lo = -1.0 if cmap == "RdBu_r" else 0.0
        images[key] = ax.imshow(blank, cmap=cmap, vmin=lo, vmax=1.0, aspect="auto")
        ax.set_yticks([])
        ax.set_xticks(range(H), [str(i) for i in range(H)] if H <= 16 else [""] * H, fontsize=7)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    header = fig.suptitle("", fontsize=10, family="monospace")
    axes[-1].set_xlabel("hidden unit")
    fig.subplots_adjust(left=0.22, right=0.84, top=0.86, bottom=0.12, hspace=0.6)
    # Colour scales: states and candidate lie in [-1, 1] (diverging), gates in [0, 1].
    scales = ((images["h_new"], (0.12, 0.34), "h, n"), (images["r"], (0.52, 0.34), "r, z"))
    for image, (bottom, height), label in scales:
        bar = fig.colorbar(image, cax=fig.add_axes((0.87, bottom, 0.025, height)))
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)

    frames = []
    for t in range(steps):
        label = f" reads {step_labels[t]!r}" if step_labels is not None else ""
        for s, (stage_key, equation) in enumerate(STAGES):
            done = {"h_prev"} | {key for key, _ in STAGES[: s + 1]}
            for ax, (key, _) in zip(axes, ROWS):
                images[key].set_data(values[key][t].numpy()[None, :] if key in done else blank)
                for spine in ax.spines.values():
                    spine.set_linewidth(3.0 if key == stage_key else 0.8)
                    spine.set_color("tab:red" if key == stage_key else "black")
            if stage_key == "n" and not trace.reset_after:
                equation = CANDIDATE_RESET_BEFORE
            header.set_text(f"step t={t}{label}\n{equation}")
            canvas.draw()
            frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))

    path = Path(path)
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path
