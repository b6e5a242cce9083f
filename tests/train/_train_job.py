"""A small training run the Trainer tests start as a subprocess (killed / resumed / under torchrun).

    python tests/train/_train_job.py --out DIR --kinds seq,stream [--resume] [--data-seed S] [--pause-after-epoch N]

For each kind: builds random data from --data-seed (the same in every process), seeds the model with
--seed, trains, and writes the final weights to DIR/<kind>/final.safetensors (history.json beside it).
"seq" is variable-length classification with Adam and a plateau schedule; "stream" is truncated BPTT
regression on parallel streams with RMSprop and a cosine schedule.
With --pause-after-epoch N the first kind stops after epoch N's checkpoint, writes DIR/paused and waits
there, so that a test can kill the process from outside at a known point.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from fastgru.train import SequenceData, StreamData, TrainConfig, Trainer, seed_everything
from fastgru.train.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", default="seq")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--pause-after-epoch", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for kind in args.kinds.split(","):
        run(kind, args)


class PausingTrainer(Trainer):
    """A Trainer that, after epoch `pause_after`'s checkpoint, announces itself in `marker` and waits."""

    def __init__(self, *args, pause_after: int | None, marker: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.pause_after, self.marker = pause_after, marker

    def _after_epoch(self, epoch: int) -> None:
        super()._after_epoch(epoch)
        if epoch == self.pause_after:
            self.marker.write_text(str(epoch))
            while True:
                time.sleep(1)


def run(kind: str, args: argparse.Namespace) -> None:
    out = str(Path(args.out) / kind)
    g = torch.Generator().manual_seed(args.data_seed)
    seed_everything(args.seed)
    if kind == "seq":
        # variable-length sequences, 3 classes decided by the sign pattern of the mean of the inputs
        N, T, F = 96, 12, 3
        x = torch.randn(N, T, F, generator=g)
        lengths = torch.randint(3, T + 1, (N,), generator=g)
        mean = torch.stack([x[i, : lengths[i]].mean(0) for i in range(N)])
        y = (mean[:, 0] > 0).long() + (mean[:, 1] > 0).long()
        train, val = SequenceData(x[:64], y[:64], lengths[:64]), SequenceData(x[64:], y[64:], lengths[64:])
        model = build_model(cell="gru", input_size=F, hidden_size=12, output_size=3, head="classification",
                            num_layers=2, dropout=args.dropout, head_dropout=args.dropout)
        cfg = TrainConfig(epochs=args.epochs, batch_size=16, optimizer="adam", lr=1e-2, schedule="plateau",
                          lr_patience=1, gamma=0.5, patience=10, seed=args.seed, out_dir=out, progress=False)
    else:
        # a noisy multi-frequency series as 4 parallel streams, per-step next-value regression by TBPTT
        t = torch.arange(801, dtype=torch.float32)
        s = torch.sin(0.21 * t) + 0.5 * torch.sin(0.057 * t) + 0.1 * torch.randn(801, generator=g)
        train = StreamData.from_series(s[:-1, None][:600], s[1:, None][:600], num_streams=4)
        val = StreamData.from_series(s[:-1, None][600:], s[1:, None][600:], num_streams=2)
        model = build_model(cell="gru", input_size=1, hidden_size=10, output_size=1, per_step=True,
                            dropout=args.dropout, num_layers=2)
        cfg = TrainConfig(epochs=args.epochs, optimizer="rmsprop", lr=5e-3, schedule="cosine", bptt=25,
                          seed=args.seed, out_dir=out, progress=False)
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    trainer = PausingTrainer(model, cfg, pause_after=args.pause_after_epoch, marker=Path(args.out) / "paused")
    history = trainer.fit(train, val, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(Path(out) / "final.safetensors"))
        save_file(init, str(Path(out) / "init.safetensors"))
        print(kind, "best_epoch", history["best_epoch"], "epochs", len(history["epochs"]))


if __name__ == "__main__":
    main()
