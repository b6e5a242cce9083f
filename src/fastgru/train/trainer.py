"""The Trainer: mini-batch or truncated-BPTT training of a sequence model, with everything around it.

What one ``Trainer(model, TrainConfig(...)).fit(train, val)`` does, epoch by epoch:

1. trains on shuffled mini-batches of :class:`SequenceData` (variable lengths via ``lengths=``), or on
   consecutive ``bptt``-step chunks of :class:`StreamData` with the hidden state carried from chunk to
   chunk and detached (truncated BPTT); Adam or RMSprop, gradient-norm clipping (default 1.0);
2. evaluates the validation data (loss and the head's metric), steps the learning-rate schedule;
3. keeps the best weights by the monitored value, stops early after `patience` epochs without gain;
4. writes history.json and a checkpoint (weights + config + optimizer/scheduler/RNG state) atomically.

At the end the best weights are restored and the history returned (the same dict as history.json).
``fit(..., resume=True)`` picks up the newest checkpoint and ends at exactly the weights an uninterrupted
run with the same seed reaches: the model, optimizer, schedule, early-stopping counters and every RNG
state are restored as they were at the end of the checkpointed epoch.

Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel; each process takes
its share of every global batch and scales its loss by world_size / global count, so DDP's gradient
average equals the single-process gradient of the same global batch (same result within rounding).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from fastgru.io import atomic
from fastgru.train import distributed as dist_utils
from fastgru.train import resume as checkpoints
from fastgru.train.config import RESUME_MUST_MATCH, TrainConfig
from fastgru.train.data import (
    Batch,
    SequenceData,
    StreamData,
    num_sequence_batches,
    num_stream_batches,
    sequence_batches,
    stream_batches,
)
from fastgru.train.losses import HIGHER_IS_BETTER, PRIMARY_METRIC, derived_metrics, loss_terms, metric_terms
from fastgru.train.state import rng_state, seed_everything, set_rng_state

Data = SequenceData | StreamData

log = logging.getLogger(__name__)
LOG_INTERVAL_SECONDS = 10.0  # without a progress bar: at most one epoch line per interval (and the last)


def _detach(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class Trainer:
    """Train a :class:`fastgru.train.models.SequenceModel` (or any module with its forward signature).

    model: forward(x, lengths=None, state=None, return_state=False) as SequenceModel.
    config: a TrainConfig, or keyword overrides of its fields.
    head, per_step: taken from ``model.config``; pass them for other modules.
    loss_fn: optional replacement loss, ``(out, y, lengths) -> (sum, count)`` tensors.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        head: str | None = None,
        per_step: bool | None = None,
        loss_fn: Any = None,
        **overrides: Any,
    ) -> None:
        if config is None:
            config = TrainConfig(**overrides)
        elif overrides:
            config = TrainConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        mcfg = getattr(model, "config", None)
        self.head = head or getattr(mcfg, "head", None)
        self.per_step = per_step if per_step is not None else bool(getattr(mcfg, "per_step", False))
        if self.head is None:
            raise ValueError("cannot tell the model's head: pass head='regression'|'classification'|...")
        self.loss_fn = loss_fn
        self.metric_name = PRIMARY_METRIC.get(self.head, "loss")
        # The device comes first: it decides the process group's backend (nccl on CUDA, gloo on CPU).
        self.device = self._pick_device(config.device)
        self.dist = dist_utils.setup(config.distributed, self.device)
        self.model = model.to(self.device)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.history: list[dict[str, Any]] = []
        self.generator = torch.Generator().manual_seed(config.seed)
        self._best: dict[str, Any] = {"value": None, "epoch": None, "bad_epochs": 0, "weights": None}
        self._stopped_early = False
        self._ddp: nn.Module | None = None
        self._monitor_name = config.monitor

    # -- set-up --------------------------------------------------------------------------------------
    def _pick_device(self, name: str) -> torch.device:
        """'auto': this process's GPU (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
        if name == "auto":
            if torch.cuda.is_available():
                local = dist_utils.launched_local_rank(self.config.distributed)
                return torch.device("cuda", local if local is not None else torch.cuda.current_device())
            return torch.device("cpu")
        return torch.device(name)

    def close(self) -> None:
        """Leave the process group if this Trainer joined it (also done at interpreter exit)."""
        dist_utils.teardown(self.dist)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.RMSprop(params, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)

    def _make_scheduler(self) -> Any:
        c, opt = self.config, self.optimizer
        if c.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma)
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs, eta_min=c.lr * c.min_lr_ratio)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self._mode(), factor=c.gamma, patience=c.lr_patience
            )
        return None

    def _monitor(self, has_val: bool) -> str:
        m = self.config.monitor
        if not has_val and m.startswith("val_"):
            return "train_" + m[4:]
        return m

    def _mode(self) -> str:
        if self.config.mode is not None:
            return self.config.mode
        base = self.config.monitor.split("_", 1)[-1]
        return "max" if base in HIGHER_IS_BETTER else "min"

    @property
    def checkpoint_dir(self) -> Path | None:
        c = self.config
        if c.checkpoint_dir is not None:
            return Path(c.checkpoint_dir)
        if c.out_dir is not None and c.checkpoint_every > 0:
            return Path(c.out_dir) / "checkpoints"
        return None

    # -- one batch -----------------------------------------------------------------------------------
    def _terms(self, out: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        if self.loss_fn is not None:
            return self.loss_fn(out, batch.y, batch.lengths)
        return loss_terms(self.head, out, batch.y, batch.lengths, self.per_step)

    def _forward(self, module: nn.Module, batch: Batch, state: Any, stream: bool) -> tuple[Tensor, Any]:
        if stream:
            return module(batch.x, state=state, return_state=True)
        return module(batch.x, lengths=batch.lengths), None

    def _batches(self, data: Data, train: bool) -> tuple[Any, int]:
        c, d = self.config, self.dist
        if isinstance(data, StreamData):
            if not self.per_step:
                raise ValueError("stream data (truncated BPTT) needs a model with per-step outputs (per_step=True)")
            rank, world = (d.rank, d.world_size) if train else (0, 1)
            return stream_batches(data, c.bptt, rank, world), num_stream_batches(data, c.bptt)
        if not isinstance(data, SequenceData):
            raise TypeError(f"training data must be SequenceData or StreamData, got {type(data).__name__}")
        if train:
            gen = self.generator if c.shuffle else None
            it = sequence_batches(data, c.batch_size, gen, d.rank, d.world_size, self.per_step)
            return it, num_sequence_batches(len(data), c.batch_size, d.world_size)
        it = sequence_batches(data, c.batch_size, None, 0, 1, self.per_step)
        return it, num_sequence_batches(len(data), c.batch_size)

    # -- epochs --------------------------------------------------------------------------------------
    def _train_epoch(self, data: Data, epoch: int) -> dict[str, float]:
        c, d = self.config, self.dist
        module = self._ddp or self.model
        module.train()
        stream = isinstance(data, StreamData)
        batches, n_batches = self._batches(data, train=True)
        show = c.progress and d.is_main
        bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}/{c.epochs}", leave=False, disable=not show,
                   dynamic_ncols=True)
        loss_sum = torch.zeros((), dtype=torch.float64)
        loss_count = torch.zeros((), dtype=torch.float64)
        msums: dict[str, list[float]] = {}
        state = None
        for batch in bar:
            batch = batch.to(self.device)
            if batch.first:
                state = None
            out, state = self._forward(module, batch, state, stream)
            state = _detach(state)
            s, n = self._terms(out, batch)
            n_global = dist_utils.all_reduce_sum(n.detach().to(torch.float64), d)
            loss = s / n_global.to(s.dtype) * d.world_size
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.clip_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_norm)
            self.optimizer.step()
            loss_sum += s.detach().double().cpu()
            loss_count += n.detach().double().cpu()
            if self.loss_fn is None:
                for k, (ms, mn) in metric_terms(self.head, out.detach(), batch.y, batch.lengths, self.per_step).items():
                    acc = msums.setdefault(k, [0.0, 0.0])
                    acc[0] += ms
                    acc[1] += mn
            if show:
                bar.set_postfix(loss=f"{float(loss_sum / loss_count):.4g}", refresh=False)
        bar.close()
        totals = torch.tensor([float(loss_sum), float(loss_count)] + [v for p in msums.values() for v in p],
                              dtype=torch.float64)
        totals = dist_utils.all_reduce_sum(totals, d)
        result = {"loss": float(totals[0] / totals[1])}
        for i, k in enumerate(msums):
            result[k] = float(totals[2 + 2 * i] / totals[3 + 2 * i])
        if self.loss_fn is None:
            result.update(derived_metrics(self.head, result["loss"]))
        return result

    @torch.no_grad()
    def evaluate(self, data: Data) -> dict[str, float]:
        """Mean loss and the head's metrics over `data` (eval mode, no gradients, the whole set)."""
        model = self.model
        was_training = model.training
        model.eval()
        stream = isinstance(data, StreamData)
        batches, _ = self._batches(data, train=False)
        loss_sum = loss_count = 0.0
        msums: dict[str, list[float]] = {}
        state = None
        try:
            for batch in batches:
                batch = batch.to(self.device)
                if batch.first:
                    state = None
                out, state = self._forward(model, batch, state, stream)
                s, n = self._terms(out, batch)
                loss_sum += float(s)
                loss_count += float(n)
                if self.loss_fn is None:
                    for k, (ms, mn) in metric_terms(self.head, out, batch.y, batch.lengths, self.per_step).items():
                        acc = msums.setdefault(k, [0.0, 0.0])
                        acc[0] += ms
                        acc[1] += mn
        finally:
            model.train(was_training)
        result = {"loss": loss_sum / max(loss_count, 1e-300)}
        result.update({k: v[0] / max(v[1], 1e-300) for k, v in msums.items()})
        if self.loss_fn is None:
            result.update(derived_metrics(self.head, result["loss"]))
        return result

    @torch.no_grad()
    def predict(self, data: Data) -> Tensor:
        """Raw model outputs (logits for classifiers) for every sequence/stream of `data`, in order."""
        model = self.model
        was_training = model.training
        model.eval()
        outs, state = [], None
        stream = isinstance(data, StreamData)
        try:
            batches, _ = self._batches(data, train=False)
            for batch in batches:
                batch = batch.to(self.device)
                if batch.first:
                    state = None
                out, state = self._forward(model, batch, state, stream)
                if self.per_step and not stream and batch.lengths is not None and isinstance(data, SequenceData):
                    pad = data.x.shape[1] - out.shape[1]
                    out = nn.functional.pad(out, (0, 0, 0, pad))
                outs.append(out.cpu())
        finally:
            model.train(was_training)
        return torch.cat(outs, dim=1 if stream else 0)

    # -- the run -------------------------------------------------------------------------------------
    def fit(self, train: Data, val: Data | None = None, *, resume: bool = False) -> dict[str, Any]:
        """Train for `config.epochs` epochs (or until early stopping); return the history dict."""
        c, d = self.config, self.dist
        monitor = self._monitor_name = self._monitor(val is not None)
        mode = self._mode()
        start_epoch = 1
        self.generator = seed_everything(c.seed)
        if resume:
            start_epoch = self._resume()
        if d.enabled and self._ddp is None:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DDP(self.model, device_ids=ids)
        show = c.progress and d.is_main
        last_line = time.perf_counter() - LOG_INTERVAL_SECONDS
        epochs_bar = tqdm(total=c.epochs, initial=start_epoch - 1, desc="training", unit="epoch",
                          disable=not show, dynamic_ncols=True)
        try:
            for epoch in range(start_epoch, c.epochs + 1):
                if self._stopped_early:
                    break
                t0 = time.perf_counter()
                train_metrics = self._train_epoch(train, epoch)
                t1 = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch}
                record.update({f"train_{k}": v for k, v in train_metrics.items()})
                if val is not None:
                    record.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
                record["lr"] = self.optimizer.param_groups[0]["lr"]
                record["train_seconds"] = t1 - t0
                record["eval_seconds"] = time.perf_counter() - t1
                if monitor not in record:
                    raise ValueError(
                        f"monitor={c.monitor!r} is not among the recorded values {sorted(record)}"
                    )
                value = float(record[monitor])
                self._update_best(epoch, value, mode)
                if self.scheduler is not None:
                    if c.schedule == "plateau":
                        self.scheduler.step(value)
                    else:
                        self.scheduler.step()
                record["best_epoch"] = self._best["epoch"]
                self.history.append(record)
                if c.patience is not None and self._best["bad_epochs"] >= c.patience:
                    self._stopped_early = True
                if show:
                    epochs_bar.update(1)
                    post = {"loss": f"{record['train_loss']:.4g}"}
                    if val is not None:
                        post["val_loss"] = f"{record['val_loss']:.4g}"
                        key = f"val_{self.metric_name}"
                        if key in record:
                            post[key] = f"{record[key]:.4g}"
                    epochs_bar.set_postfix(post)
                elif d.is_main and (time.perf_counter() - last_line >= LOG_INTERVAL_SECONDS
                                    or epoch == c.epochs or self._stopped_early):
                    last_line = time.perf_counter()
                    log.info(_epoch_line(record, c.epochs, self.metric_name))
                self._after_epoch(epoch)
        finally:
            epochs_bar.close()
        if c.restore_best and self._best["weights"] is not None:
            self.model.load_state_dict(self._best["weights"])
        summary = self.summary(monitor, mode)
        self._write_history(summary)
        dist_utils.barrier(d)
        return summary

    def _update_best(self, epoch: int, value: float, mode: str) -> None:
        b, delta = self._best, self.config.min_delta
        better = b["value"] is None or (
            math.isfinite(value) and (value < b["value"] - delta if mode == "min" else value > b["value"] + delta)
        )
        if better:
            b.update(value=value, epoch=epoch, bad_epochs=0, weights=checkpoints.state_dict_copy(self.model))
        else:
            b["bad_epochs"] += 1

    def summary(self, monitor: str | None = None, mode: str | None = None) -> dict[str, Any]:
        """The history and the run's outcome as one JSON-able dict (what history.json holds)."""
        mcfg = getattr(self.model, "config", None)
        return {
            "monitor": monitor or self.config.monitor,
            "mode": mode or self._mode(),
            "best_epoch": self._best["epoch"],
            "best_value": self._best["value"],
            "stopped_early": self._stopped_early,
            "epochs": self.history,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "train_config": self.config.to_dict(),
            "model_config": mcfg.to_dict() if hasattr(mcfg, "to_dict") else None,
            "world_size": self.dist.world_size,
        }

    def _write_history(self, summary: dict[str, Any]) -> None:
        if self.config.out_dir is not None and self.dist.is_main:
            atomic.write_json(Path(self.config.out_dir) / "history.json", summary)

    def _after_epoch(self, epoch: int) -> None:
        c, d = self.config, self.dist
        self._write_history(self.summary(self._monitor_name, self._mode()))
        root = self.checkpoint_dir
        last = epoch == c.epochs or self._stopped_early
        if root is not None and c.checkpoint_every > 0 and (epoch % c.checkpoint_every == 0 or last):
            if d.is_main:
                checkpoints.write(root, epoch, self.model, self._trainer_state(epoch))
            dist_utils.barrier(d)

    def _trainer_state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng_state(self.generator),
            "best": dict(self._best),
            "stopped_early": self._stopped_early,
            "history": self.history,
            "train_config": self.config.to_dict(),
            "world_size": self.dist.world_size,
        }

    def _resume(self) -> int:
        """Restore the newest checkpoint (if any); return the first epoch still to run."""
        root = self.checkpoint_dir
        if root is None:
            raise ValueError("resume=True needs config.checkpoint_dir or config.out_dir to find checkpoints in")
        folder = checkpoints.latest(root)
        if folder is None:
            return 1
        saved_cfg = checkpoints.saved_model_config(folder)
        mcfg = getattr(self.model, "config", None)
        if saved_cfg is not None and hasattr(mcfg, "to_dict") and saved_cfg != mcfg.to_dict():
            diff = {k: (saved_cfg.get(k), v) for k, v in mcfg.to_dict().items() if saved_cfg.get(k) != v}
            raise ValueError(f"cannot resume from {folder}: the model differs (saved, now): {diff}")
        st = checkpoints.read(folder, self.model)
        saved_train = st["train_config"]
        keys = RESUME_MUST_MATCH + (("epochs",) if self.config.schedule == "cosine" else ())
        now = self.config.to_dict()
        diff = {k: (saved_train.get(k), now[k]) for k in keys if saved_train.get(k) != now[k]}
        if diff:
            raise ValueError(f"cannot resume from {folder}: training settings differ (saved, now): {diff}")
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st["scheduler"] is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        set_rng_state(st["rng"], self.generator)
        self._best = dict(st["best"])
        self._stopped_early = bool(st["stopped_early"])
        self.history = list(st["history"])
        return int(st["epoch"]) + 1


def _epoch_line(record: dict[str, Any], epochs: int, metric: str) -> str:
    """One log line for an epoch: 'epoch 3/50: train_loss 0.412, val_loss 0.398, val_accuracy 0.91 (1.2 s)'."""
    keys = ["train_loss", "val_loss", f"val_{metric}"]
    parts = [f"{k} {record[k]:.4g}" for k in dict.fromkeys(keys) if isinstance(record.get(k), (int, float))]
    seconds = record.get("train_seconds", 0.0) + record.get("eval_seconds", 0.0)
    return f"epoch {record['epoch']}/{epochs}: {', '.join(parts)} ({seconds:.1f} s)"
