"""Training checkpoints on disk: one folder per saved epoch, swapped in atomically, plus a pointer.

Layout under a checkpoint root::

    latest.json              {"epoch": 7, "folder": "epoch-0007"}   (written last, atomically)
    epoch-0007/
        model.safetensors    model weights (state_dict), the model config in the header
        model.json           {"format": ..., "model_class": ..., "config": ModelConfig as a dict}
        trainer.safetensors  optimizer / scheduler / RNG tensors and the best weights so far
        trainer.json         the rest of that state (see fastgru.train.state) and the history

A checkpoint folder is filled under a temporary name and renamed into place, then ``latest.json`` is
replaced: a run killed at any instant leaves the previous checkpoint intact and pointed to. Older epoch
folders are removed after the pointer moves.

The weights + config half is written with ``fastgru.io.checkpoint.write`` (checksummed safetensors, the model
config in its header; ``read`` tells truncated/corrupted files apart) when that module is present, else as
plain safetensors; model.json repeats the config for people and for the resume check.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from fastgru.io import atomic
from fastgru.train import state as state_io

FORMAT = "fastgru-model-v1"


def _shared():
    """fastgru.io.checkpoint (checksummed safetensors with a JSON config in the header), if present."""
    try:
        from fastgru.io import checkpoint
    except ImportError:
        return None
    return checkpoint if hasattr(checkpoint, "write") and hasattr(checkpoint, "read") else None


def _model_meta(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {
        "format": FORMAT,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": config.to_dict() if hasattr(config, "to_dict") else None,
    }


def save_model(model: nn.Module, folder: str | Path) -> None:
    """Write ``model.safetensors`` (weights, config in its header) and ``model.json`` (the config, readable)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = _model_meta(model)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    shared = _shared()
    if shared is not None:
        shared.write(folder / "model.safetensors", weights, {"sequence_model": meta}, overwrite=True)
    else:
        atomic.write_bytes(folder / "model.safetensors", save(weights, metadata={"format": FORMAT}))
    atomic.write_json(folder / "model.json", meta)


def load_model(folder: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load weights from `folder` into `model`, or build the model from its saved config first."""
    folder = Path(folder)
    shared = _shared()
    path = folder / "model.safetensors"
    if shared is not None:
        weights, header = shared.read(path)
        meta = header.get("sequence_model") if isinstance(header, dict) else None
    else:
        weights = load_file(str(path))
        meta = None
    if meta is None:
        meta = json.loads((folder / "model.json").read_text())
    if model is None:
        if meta.get("config") is None:
            raise ValueError(f"{path} holds no model config; pass the model to load the weights into")
        from fastgru.train.models import build_model

        model = build_model(meta["config"])
    model.load_state_dict(weights)
    return model


def latest(root: str | Path) -> Path | None:
    """The folder of the newest complete checkpoint under `root`, or None."""
    root = Path(root)
    pointer = root / "latest.json"
    if not pointer.exists():
        return None
    folder = root / json.loads(pointer.read_text())["folder"]
    return folder if folder.is_dir() else None


def write(root: str | Path, epoch: int, model: nn.Module, trainer_state: dict[str, Any], keep_last: int = 1) -> Path:
    """Write the checkpoint of `epoch` under `root` atomically and point ``latest.json`` at it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        save_model(model, tmp)
        state_io.save_state(trainer_state, tmp, "trainer")
        final = root / name
        if final.exists():  # left by a run killed between the rename and the pointer update
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    atomic.write_json(root / "latest.json", {"epoch": epoch, "folder": name})
    kept = sorted(p for p in root.glob("epoch-*") if p.is_dir())
    for old in kept[: max(0, len(kept) - keep_last)]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read(folder: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load the weights of checkpoint `folder` into `model`; return its trainer state tree."""
    load_model(folder, model)
    return state_io.load_state(folder, "trainer")


def saved_model_config(folder: str | Path) -> dict[str, Any] | None:
    meta_path = Path(folder) / "model.json"
    if not meta_path.exists():
        return None
    return json.loads(meta_path.read_text()).get("config")


def state_dict_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights (what 'best weights' keeps)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
