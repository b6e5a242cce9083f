"""`viz`: see inside trained recurrent models.

Trains (briefly) a GRU, an LSTM and a tanh RNN with matched parameter counts on JSB Chorales or on a text,
plus a GRU with a small hidden size, and writes:

- gates.png: the GRU's update gate z, reset gate r and state h over time for one held-out sequence;
- gru_process.gif: the small GRU's computation step by step (reset gate, candidate, update gate, new state);
- gradient_flow.png: ||dh_T/dh_t|| against T - t for the three models, trained and at initialisation;
- viz.json: the numbers behind the pictures (validation loss of each model, the gradient norms).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import torch

from fastgru.apps.common import check_outputs
from fastgru.apps.compare import CELL_NAMES, CompareData, hidden_sizes_for, jsb_data, text_data
from fastgru.apps.data import char_text
from fastgru.apps.plots import animate_gru, gru_gate_trace, jacobian_norms, plot_gate_heatmaps, plot_gradient_flow
from fastgru.io import atomic
from fastgru.train import SequenceData, TrainConfig, Trainer
from fastgru.train.models import SequenceModel, build_model

FLOW_CELLS = ("gru", "lstm", "rnn")
OUTPUTS = ("gates.png", "gru_process.gif", "gradient_flow.png", "viz.json")
COLOURS = {"gru": "tab:blue", "lstm": "tab:orange", "rnn": "tab:green"}


def _features(model: SequenceModel, x: torch.Tensor) -> torch.Tensor:
    """What the recurrent layer reads: the embedded ids for a text model, the input itself otherwise."""
    with torch.no_grad():
        return model.embedding(x) if model.embedding is not None else x


def _train(model: SequenceModel, data: CompareData, epochs: int, seed: int, lr: float) -> float:
    """Train `model` on `data` for a few epochs (Adam, clipping 1); return its best validation loss."""
    if epochs == 0:
        return float("nan")
    config = TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", lr=lr, clip_norm=1.0, seed=seed,
                         device="cpu", checkpoint_every=0, progress=False)
    return float(Trainer(model, config).fit(data.train, data.valid)["best_value"])


def _pick(data: SequenceData, index: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence `index` of `data`: (inputs, per-step targets) trimmed to its length."""
    if not 0 <= index < len(data):
        raise ValueError(f"{what} must be in [0, {len(data) - 1}] for this data, got {index}")
    n = int(data.lengths[index]) if data.lengths is not None else data.x.shape[1]
    return data.x[index, :n], data.y[index, :n]


def _flow_inputs(data: SequenceData, steps: int, count: int) -> torch.Tensor:
    """Up to `count` held-out sequences that have at least `steps` steps, cut to `steps`: (S, steps, ...)."""
    lengths = data.lengths if data.lengths is not None else torch.full((len(data),), data.x.shape[1])
    keep = torch.nonzero(lengths >= steps).flatten()[:count]
    if len(keep) == 0:
        raise ValueError(f"flow_steps={steps}: no held-out sequence is that long (longest {int(lengths.max())})")
    return data.x[keep, :steps]


def run_viz(
    out_dir: str | Path,
    data: CompareData,
    *,
    epochs: int = 15,
    sequence: int = 0,
    max_steps: int = 80,
    gif_hidden: int = 8,
    gif_steps: int = 12,
    flow_steps: int = 50,
    flow_sequences: int = 8,
    budget: int | None = None,
    lr: float = 3e-3,
    seed: int = 0,
    step_labels: Any = None,
) -> dict[str, Any]:
    """Train the models, draw the three pictures into `out_dir`, write viz.json; return its content.

    sequence: index of the held-out (test) sequence the heatmap and the animation show; max_steps: how many
    of its steps the heatmap shows. step_labels: function from a sequence's input ids to one label per step.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if gif_hidden < 1 or gif_steps < 1 or max_steps < 1:
        raise ValueError("gif_hidden, gif_steps and max_steps must be positive")
    out_dir = Path(out_dir)
    x_seq, y_seq = _pick(data.test, sequence, "sequence")
    flow_x = _flow_inputs(data.test, flow_steps, flow_sequences)

    sizes = hidden_sizes_for(data, FLOW_CELLS, budget)
    trained, initial, val = {}, {}, {}
    for cell in FLOW_CELLS:
        torch.manual_seed(seed)
        model = build_model(cell=cell, hidden_size=sizes[cell], **data.model)
        initial[cell] = build_model(model.config)
        initial[cell].load_state_dict(model.state_dict())
        val[cell] = _train(model, data, epochs, seed, lr)
        trained[cell] = model.eval()

    flow = {}
    for cell in FLOW_CELLS:  # in float64: the norms fall far below float32's smallest numbers
        for when, model in (("trained", trained[cell]), ("at init", initial[cell])):
            rnn = copy.deepcopy(model.rnn).double()
            flow[f"{CELL_NAMES[cell]}, {when}"] = jacobian_norms(rnn, _features(model, flow_x).double())
    colours = {name: COLOURS[cell] for cell in FLOW_CELLS for name in flow if name.startswith(CELL_NAMES[cell])}
    plot_gradient_flow(flow, out_dir / "gradient_flow.png", dashed=[n for n in flow if n.endswith("at init")],
                       colors=colours, title=f"Gradient flow through time, {data.name} ({epochs} epochs)")

    gru = trained["gru"]
    shown = x_seq[:max_steps]
    labels = step_labels(shown) if step_labels is not None else None
    trace = gru_gate_trace(gru.rnn, _features(gru, shown[None])[0])
    plot_gate_heatmaps(trace, out_dir / "gates.png", inputs=None if gru.embedding is not None else shown.numpy(),
                       step_labels=labels, input_label="input (piano roll)",
                       title=f"{CELL_NAMES['gru']}, {sizes['gru']} units: gates on held-out sequence {sequence}")

    torch.manual_seed(seed)
    small = build_model(cell="gru", hidden_size=gif_hidden, **data.model)
    val["gru_small"] = _train(small, data, epochs, seed, lr)
    small_trace = gru_gate_trace(small.rnn, _features(small, x_seq[:gif_steps][None])[0])
    animate_gru(small_trace, out_dir / "gru_process.gif", max_steps=gif_steps,
                step_labels=step_labels(x_seq[:gif_steps]) if step_labels is not None else None)

    result = {
        "data": data.name,
        "epochs": epochs,
        "hidden_sizes": {**sizes, "gru_small": gif_hidden},
        "best_valid_loss": val,
        "sequence": sequence,
        "gradient_norms": {name: v.tolist() for name, v in flow.items()},
        "files": ["gates.png", "gru_process.gif", "gradient_flow.png"],
    }
    atomic.write_json(out_dir / "viz.json", result)
    return result


# -- command line -------------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru viz`."""
    p = subparsers.add_parser("viz", help="gate heatmaps, the GRU process as a GIF, gradient flow through time",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("text", "jsb"), default="text",
                   help="a character text (default: built-in Sonnets) or JSB Chorales")
    p.add_argument("--text-file", help="with --data text: a UTF-8 text file (default: built-in Sonnets)")
    p.add_argument("--seq-len", type=int, default=100, help="with --data text: characters per sequence")
    p.add_argument("--epochs", type=int, default=15, help="training epochs per model (0: untrained)")
    p.add_argument("--sequence", type=int, default=0, help="which held-out (test) sequence to show")
    p.add_argument("--max-steps", type=int, default=80, help="steps of that sequence in the heatmap")
    p.add_argument("--gif-hidden", type=int, default=8, help="hidden size of the animated GRU")
    p.add_argument("--gif-steps", type=int, default=12, help="time steps in the animation")
    p.add_argument("--flow-steps", type=int, default=50, help="sequence length T of the gradient-flow plot")
    p.add_argument("--flow-sequences", type=int, default=8, help="held-out sequences averaged in that plot")
    p.add_argument("--budget", type=int, default=None, help="parameters per model (default as in compare)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run `fastgru viz` from parsed arguments; prints where the pictures are."""
    check_outputs(args.out, OUTPUTS, getattr(args, "force", False))
    labels = None
    if args.data == "jsb":
        if args.text_file:
            raise ValueError("--text-file goes with --data text")
        data = jsb_data()
    else:
        text = char_text.read_text(args.text_file) if args.text_file else char_text.load_builtin_text()
        data = text_data(text, seq_len=args.seq_len)
        vocab = char_text.CharVocab.from_text(text)

        def labels(ids: torch.Tensor) -> list[str]:
            return list(vocab.decode(ids))

    result = run_viz(args.out, data, epochs=args.epochs, sequence=args.sequence, max_steps=args.max_steps,
                     gif_hidden=args.gif_hidden, gif_steps=args.gif_steps, flow_steps=args.flow_steps,
                     flow_sequences=args.flow_sequences, budget=args.budget, seed=args.seed, step_labels=labels)
    out = Path(args.out)
    for name, value in result["best_valid_loss"].items():
        print(f"{name}: best validation loss {value:.4f} after {args.epochs} epochs")
    print("wrote " + ", ".join(str(out / f) for f in result["files"] + ["viz.json"]))
    return result
