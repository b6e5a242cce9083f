"""Checkpoints: one safetensors file holding the weights and, in its header, a JSON config. No pickle.

`save(model, path)` writes a fastgru.nn module (GRU, GRUCell, or any fastgru.nn class whose
constructor arguments are stored as same-named attributes) atomically: temp file, fsync, os.replace,
so an existing file is either fully replaced (only with overwrite=True) or left untouched.
`load(path)` rebuilds the module without executing anything from the file: the class is looked up by
name inside fastgru.nn only, the constructor arguments are plain JSON values.

Because safetensors checks structure but not content, the header also carries a SHA-256 over the
format marker, the config's exact JSON text and every tensor (name, dtype, shape, bytes), so a change to
any byte that matters is caught, the config included. `load` then checks every constructor argument
in the config (its JSON type against the constructor's default, the constructor's own range and enum
checks) before building anything. Any malformed file raises CheckpointError with a one-line message:
truncated, corrupted (checksum, framing, header), not a fastgru checkpoint, a config that is not valid,
or tensors that do not fit it. Files of format version 1 (checksum over the tensors only) still load,
with their config validated the same way.
`write` / `read` are the same format for any dict of tensors plus a JSON config (for trainers).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from fastgru.io.atomic import check_target, write_atomic

FORMAT = "fastgru.io.checkpoint"
FORMAT_VERSION = 2  # 2: the checksum covers the config; 1: tensors only (still read)
_READABLE_VERSIONS = ("1", "2")
_SKIP_ARGS = ("self", "device", "dtype")
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_RUNTIME_ARGS = ("backend", "check_finite", "init")  # may differ between a file and the module it loads into
_DTYPES = ("float16", "bfloat16", "float32", "float64")


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupted, not a fastgru checkpoint, or does not fit the model."""


def checksum(tensors: Mapping[str, Tensor], config_json: str | None = None) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order.

    With `config_json` (format version 2) the hash also covers the format marker and the config's
    exact JSON text, so an edited or bit-flipped config fails the check like a damaged tensor.
    """
    h = hashlib.sha256()
    if config_json is not None:
        h.update(f"{FORMAT}|{FORMAT_VERSION}|config|{len(config_json)}|".encode())
        h.update(config_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (JSON and safetensors messages may span several)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def write(path: str | Path, tensors: Mapping[str, Tensor], config: Mapping, *, overwrite: bool = False) -> Path:
    """Write tensors + a JSON-serialisable config as a checksummed safetensors file, atomically."""
    from safetensors.torch import save as st_save

    check_target(path, overwrite=overwrite)
    try:
        config_json = json.dumps(config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config must be plain JSON (numbers, strings, bools, lists, dicts): {exc}") from exc
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise CheckpointError(f"tensors[{name!r}] is a {type(t).__name__}, not a torch.Tensor")
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": config_json,
        "sha256": checksum(plain, config_json),
    }
    data = st_save(plain, metadata=metadata)
    return write_atomic(path, data, overwrite=overwrite)


def _parse_header(path: Path, data: bytes) -> dict:
    """Check the safetensors framing ourselves so truncation and corruption get precise messages."""
    size = len(data)
    if size < 8:
        raise CheckpointError(f"{path}: truncated: {size} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        raise CheckpointError(f"{path}: corrupted or not a safetensors file (header length field says {n} bytes)")
    if 8 + n > size:
        raise CheckpointError(f"{path}: truncated: the header needs {8 + n} bytes but the file has {size}")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupted header (not valid JSON: {_one_line(exc)})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupted header (not a JSON object)")
    ends = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{path}: corrupted header (__metadata__ is not a map of strings)")
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
            raise CheckpointError(f"{path}: corrupted header (tensor {key[:80]!r} has no valid data_offsets)")
        ends.append(offsets[1])
    needed = 8 + n + max(ends, default=0)
    if needed > size:
        raise CheckpointError(f"{path}: truncated: the tensors need {needed} bytes but the file has {size}")
    if needed < size:
        raise CheckpointError(f"{path}: corrupted: {size - needed} unexpected bytes after the tensor data")
    return header


def read(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """(tensors, config) from a file written by `write`; CheckpointError if it is damaged or foreign."""
    tensors, config, _ = _read(path, map_location)
    return tensors, config


def _read(path: str | Path, map_location: str | torch.device) -> tuple[dict[str, Tensor], dict, str]:
    """`read`, plus the file's format version."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    header = _parse_header(path, data)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a fastgru checkpoint (no '{FORMAT}' marker in the safetensors metadata); for a plain "
            "state dict use safetensors.torch.load_file and module.load_state_dict"
        )
    version = meta.get("format_version")
    if version not in _READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}; this fastgru reads "
                              f"{', '.join(_READABLE_VERSIONS)}")
    config_json = meta.get("config")
    if config_json is None:
        raise CheckpointError(f"{path}: corrupted header (no config)")
    try:
        config = json.loads(config_json)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupted config in the header ({_one_line(exc)})") from exc
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: corrupted tensor table ({_one_line(exc)})") from exc
    expected = checksum(tensors, config_json if version == "2" else None)
    if expected != meta.get("sha256"):
        covered = "tensors' and config's" if version == "2" else "tensors'"
        raise CheckpointError(f"{path}: corrupted: the {covered} SHA-256 does not match the one saved with them")
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors, config, version


def _fastgru_class(name: str) -> type[nn.Module]:
    from fastgru import nn as fastgru_nn

    cls = getattr(fastgru_nn, name, None) if name in getattr(fastgru_nn, "__all__", ()) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(f"checkpoint names class {name!r}, which is not a fastgru.nn module")
    return cls


def _constructor_params(cls: type) -> list[inspect.Parameter]:
    """The named constructor arguments of `cls`, from the first class in its MRO without *args/**kwargs."""
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())
        if not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            return [p for p in params if p.name not in _SKIP_ARGS]
    raise TypeError(f"cannot save {cls.__name__}: no constructor with named arguments only")


def _argument(model: nn.Module, name: str):
    """The value `model` was built with for constructor argument `name`."""
    if not hasattr(model, name):
        raise TypeError(f"cannot save {type(model).__name__}: constructor argument {name!r} is not kept on the module")
    value = getattr(model, name)
    return list(value) if isinstance(value, tuple) else value


def _plain(value) -> bool:
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def module_config(model: nn.Module) -> dict:
    """{'class', 'kwargs', 'dtype'}: what `load` needs to rebuild `model` (its constructor arguments)."""
    from fastgru import nn as fastgru_nn

    name = type(model).__name__
    if getattr(fastgru_nn, name, None) is not type(model):
        raise TypeError(
            f"save() takes a fastgru.nn module (GRU, GRUCell, ...), got {type(model).__module__}.{name}; convert "
            "a torch.nn.GRU with fastgru.interop.from_torch, or save a state_dict with safetensors directly"
        )
    kwargs = {}
    for param in _constructor_params(type(model)):
        value = _argument(model, param.name)
        if not _plain(value):
            raise TypeError(f"cannot save {name}: argument {param.name}={value!r} is not a plain JSON value")
        kwargs[param.name] = value
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) != 1:
        raise TypeError(f"cannot save {name}: its parameters have mixed dtypes {sorted(map(str, dtypes))}")
    return {"class": name, "kwargs": kwargs, "dtype": str(dtypes.pop()).removeprefix("torch.")}


def save(model: nn.Module, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save a fastgru.nn module's weights and constructor arguments to `path` (safetensors + JSON config).

    Atomic; refuses to replace an existing file unless overwrite=True. Returns the path.
    """
    config = module_config(model)  # validate before touching the disk
    return write(path, model.state_dict(), {"module": config}, overwrite=overwrite)


def _json_kind(value) -> str:
    """The JSON type of a config value, as a word for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _check_value(name: str, value, like) -> str | None:
    """Why `value` (from JSON) cannot stand for a constructor argument whose default is `like`; None if fine."""
    if isinstance(like, bool):
        ok = isinstance(value, bool)
    elif isinstance(like, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(like, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(like, str):
        ok = isinstance(value, str)
    elif isinstance(like, tuple):
        if not isinstance(value, list) or len(value) != len(like):
            return f"{name} must be a list of {len(like)} values, got {_json_kind(value)} {value!r}"
        for k, (v, d) in enumerate(zip(value, like)):
            problem = _check_value(f"{name}[{k}]", v, d)
            if problem:
                return problem
        return None
    elif like is None:  # an optional argument without a typed default: any plain value, checked by the class
        return None
    else:
        return f"{name} has a default of a type a checkpoint cannot hold ({type(like).__name__})"
    if ok:
        return None
    return f"{name} must be of type {type(like).__name__}, got {_json_kind(value)} {value!r}"[:200]


def _checked_kwargs(path, cls: type, kwargs: dict, version: str) -> dict:
    """The constructor arguments from a config, each checked against the constructor's signature.

    Types come from each argument's default (required size arguments are ints); unknown names are
    refused; a version-2 file must name every argument (version 1 files predate some options, which
    then keep their defaults). Ranges and enums are the constructor's own checks, run by the caller.
    """
    params = {p.name: p for p in _constructor_params(cls)}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise CheckpointError(f"{path}: the config names arguments {cls.__name__} does not take: {unknown}")
    missing = sorted(set(params) - set(kwargs))
    if missing and version != "1":
        raise CheckpointError(f"{path}: the config lacks the arguments {missing} of {cls.__name__}")
    checked = {}
    for name, value in kwargs.items():
        default = params[name].default
        like = 1 if default is inspect.Parameter.empty else default
        problem = _check_value(name, value, like)
        if problem:
            raise CheckpointError(f"{path}: invalid config: {problem}")
        checked[name] = tuple(value) if isinstance(value, list) else value
    return checked


def load(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    into: nn.Module | None = None,
) -> nn.Module:
    """Rebuild the module saved by `save` (or load its weights into `into`, which must match its config).

    Raises FileNotFoundError, or CheckpointError naming what is wrong: truncated, corrupted (checksum),
    not a fastgru checkpoint, a config value of the wrong type or out of range, tensors that do not fit
    the config, or an `into` module that differs.
    """
    tensors, config, version = _read(path, map_location)
    saved = config.get("module") if isinstance(config, dict) else None
    if not isinstance(saved, dict) or not {"class", "kwargs", "dtype"} <= set(saved):
        raise CheckpointError(f"{path}: the config does not describe a fastgru module: {str(config)[:120]}")
    if not isinstance(saved["class"], str):
        raise CheckpointError(f"{path}: the config's class is not a name: {saved['class']!r}"[:200])
    cls = _fastgru_class(saved["class"])
    if not isinstance(saved["kwargs"], dict):
        raise CheckpointError(f"{path}: the config's kwargs are not a JSON object")
    kwargs = _checked_kwargs(path, cls, saved["kwargs"], version)
    if saved["dtype"] not in _DTYPES:
        raise CheckpointError(f"{path}: unknown dtype {str(saved['dtype'])[:40]!r} in the config; "
                              f"expected one of {_DTYPES}")
    dtype = getattr(torch, saved["dtype"])
    if into is not None:
        ours = module_config(into)
        theirs = saved["kwargs"]
        diffs = [
            f"{k}: file {theirs.get(k)!r}, module {ours['kwargs'].get(k)!r}"
            for k in sorted(set(theirs) | set(ours["kwargs"]))
            if theirs.get(k) != ours["kwargs"].get(k) and k not in _RUNTIME_ARGS
        ]
        if saved["class"] != ours["class"] or diffs:
            raise CheckpointError(
                f"{path} holds a {saved['class']} that does not match the given {ours['class']}: " + "; ".join(diffs)
            )
        module = into
    else:
        try:
            module = cls(**kwargs, dtype=dtype)
        except (TypeError, ValueError, OverflowError, RuntimeError, MemoryError) as exc:
            raise CheckpointError(f"{path}: invalid config for {saved['class']}: {_one_line(exc)}") from exc
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        shapes = [f"{k}: file {found[k]}, expected {expected[k]}" for k in sorted(set(expected) & set(found))
                  if expected[k] != found[k]]
        raise CheckpointError(
            f"{path}: tensors do not fit {saved['class']}({kwargs}): missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}, wrong shapes {shapes or 'none'}"
        )
    wrong_dtype = sorted(k for k, v in tensors.items() if v.dtype != dtype)
    if wrong_dtype:
        raise CheckpointError(f"{path}: tensors {wrong_dtype} are not {saved['dtype']} as the config says")
    with torch.no_grad():
        module.load_state_dict(tensors)
    return module if into is not None else module.to(map_location)

