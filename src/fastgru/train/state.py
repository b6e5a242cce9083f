"""Training state (optimizer, scheduler, RNG, counters) as safetensors + JSON — no pickle anywhere.

A state is any tree of dicts, lists, tuples, numbers, strings, None, tensors and numpy arrays (what
`optimizer.state_dict()`, `scheduler.state_dict()` and the RNG getters return). :func:`flatten` splits it
into a JSON-able skeleton and a flat ``{key: tensor}`` dict; :func:`unflatten` puts it back exactly,
including tuples, integer dict keys (optimizer state is keyed by parameter index) and dtypes.

:func:`save_state` / :func:`load_state` write and read the pair ``<name>.json`` + ``<name>.safetensors``,
each atomically. This is the optimizer-side half of a checkpoint; the model weights + model config half
lives with the model (fastgru.io.checkpoint or fastgru.train.resume).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from fastgru.io import atomic

_TENSOR, _NDARRAY, _TUPLE, _DICT, _FLOAT = "__tensor__", "__ndarray__", "__tuple__", "__dict__", "__float__"


def flatten(tree: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split `tree` into (JSON-able skeleton, {key: tensor}); tensors become {"__tensor__": key}."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = obj.detach().cpu().contiguous().clone()
            return {_TENSOR: key}
        if isinstance(obj, np.ndarray):
            key = f"t{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {_NDARRAY: key}
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
                return {k: walk(v) for k, v in obj.items()}
            for k in obj:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(f"cannot store a dict key of type {type(k).__name__} ({k!r}) in JSON")
            return {_DICT: [[k, walk(v)] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {_TUPLE: [walk(v) for v in obj]}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, float) and not math.isfinite(obj):
            return {_FLOAT: repr(obj)}  # 'inf', '-inf', 'nan': strict JSON has no such numbers
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return walk(obj.item())
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(
            f"cannot store a {type(obj).__name__} in a checkpoint without pickle; keep training state to "
            "tensors, numbers, strings, lists and dicts"
        )

    return walk(tree), tensors


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""

    def walk(obj: Any) -> Any:
        if isinstance(obj, dict):
            if _TENSOR in obj:
                return tensors[obj[_TENSOR]]
            if _NDARRAY in obj:
                return tensors[obj[_NDARRAY]].numpy()
            if _TUPLE in obj:
                return tuple(walk(v) for v in obj[_TUPLE])
            if _DICT in obj:
                return {k: walk(v) for k, v in obj[_DICT]}
            if _FLOAT in obj:
                return float(obj[_FLOAT])
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return walk(skeleton)


def save_state(tree: Any, folder: str | Path, name: str) -> None:
    """Write `tree` as ``folder/name.json`` + ``folder/name.safetensors`` (each atomically)."""
    folder = Path(folder)
    skeleton, tensors = flatten(tree)
    atomic.write_bytes(folder / f"{name}.safetensors", save(tensors, metadata={"format": "fastgru-state"}))
    atomic.write_json(folder / f"{name}.json", skeleton)


def load_state(folder: str | Path, name: str) -> Any:
    """Read what :func:`save_state` wrote."""
    folder = Path(folder)
    skeleton = json.loads((folder / f"{name}.json").read_text())
    tensors = load_file(str(folder / f"{name}.safetensors"))
    return unflatten(skeleton, tensors)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random-number generator a training run touches: torch (CPU and CUDA), numpy, Python, and
    the Trainer's own shuffling generator."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": list(np.random.get_state()),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and Python; return a fresh CPU generator (seeded too) for data shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)
