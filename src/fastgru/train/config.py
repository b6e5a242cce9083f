"""TrainConfig: every knob of a training run, JSON-able so checkpoints record what made them."""

from __future__ import annotations

from dataclasses import dataclass

from fastgru.io.settings import JsonSettings

OPTIMIZERS = ("adam", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "plateau")


@dataclass
class TrainConfig(JsonSettings):
    """Settings of :class:`fastgru.train.Trainer`.

    epochs, batch_size: batch_size is the *global* batch (split across processes under DDP); for
        stream data (truncated BPTT) it is unused: the number of parallel streams is the batch.
    optimizer: "adam" or "rmsprop" (torch.optim); lr, weight_decay as there.
    schedule: "none", "step" (x gamma every step_size epochs), "cosine" (to lr * min_lr_ratio over
        `epochs`), "plateau" (x gamma after lr_patience epochs without improvement of `monitor`).
    clip_norm: gradient-norm clipping (torch.nn.utils.clip_grad_norm_); None or 0 turns it off.
    bptt: chunk length of truncated BPTT for stream data (the state is carried across chunks and
        detached); None runs each stream as one chunk.
    patience: early stopping after this many epochs without an improvement of `monitor` larger than
        min_delta; None never stops early. restore_best: load the best epoch's weights at the end.
    monitor: "val_loss" (default; "train_loss" when there is no validation data) or "val_<metric>";
        mode "min"/"max" (None: max for accuracy-like metrics, min otherwise).
    out_dir: where history.json goes (and checkpoints, unless checkpoint_dir says otherwise); None
        writes nothing. checkpoint_every: epochs between checkpoints (0: never).
    progress: tqdm bar with the running loss and the validation metric (rank 0 only).
    distributed: "auto" uses DistributedDataParallel when launched by torchrun (WORLD_SIZE > 1),
        "off" never does.
    """

    settings_label = "training config keys"

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    schedule: str = "none"
    step_size: int = 10
    gamma: float = 0.5
    min_lr_ratio: float = 0.0
    lr_patience: int = 2
    clip_norm: float | None = 1.0
    bptt: int | None = None
    shuffle: bool = True
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    monitor: str = "val_loss"
    mode: str | None = None
    seed: int = 0
    device: str = "auto"
    out_dir: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    progress: bool = True
    distributed: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.bptt is not None and self.bptt < 1:
            raise ValueError(f"bptt must be None or a positive chunk length, got {self.bptt}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be None or >= 1, got {self.patience}")
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or None, got {self.mode!r}")
        if self.distributed not in ("auto", "off"):
            raise ValueError(f"distributed must be 'auto' or 'off', got {self.distributed!r}")
        if self.clip_norm is not None and self.clip_norm < 0:
            raise ValueError(f"clip_norm must be None or >= 0, got {self.clip_norm}")



# Settings that must agree between a checkpoint and the run resuming it: they change the numbers.
RESUME_MUST_MATCH = ("batch_size", "optimizer", "lr", "weight_decay", "momentum", "schedule", "step_size",
                     "gamma", "min_lr_ratio", "lr_patience", "clip_norm", "bptt", "shuffle", "seed",
                     "monitor", "mode")
