"""Saved Keras 3 files -> fastgru modules, read with h5py and zipfile (no Keras or TensorFlow needed).

A `.keras` file is a zip of config.json (the model's layers and every option) and model.weights.h5;
its options are checked exactly as for a live model. A `.weights.h5` file holds weights only: layers
are found by structure (GRU groups hold cell/vars/{0: kernel, 1: recurrent_kernel, 2: bias}), taken
in the order Keras numbered them (gru, gru_1, ...), reset_after is read from the bias shape, and
since no options are stored, Keras' defaults (tanh, sigmoid, forwards) are assumed — save a
`.keras` file to have them checked.

Keras 3 names a layer's group by its class and a per-class counter in model order, not by the
layer's name: `keras_layout.h5_keys` reproduces that; each group's vars/@name holds the real name.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .keras_layout import KerasLayerPlan, apply_trainable, assemble, plan_stack
from .layout import InteropError, build


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading Keras files needs h5py: pip install 'fastgru[interop]'") from exc
    return h5py


def from_keras_file(
    path: str | Path,
    *,
    layers: Sequence[str] | None = None,
    reset_after: bool | None = None,
    batch_first: bool = True,
    ignore_training_options: bool = False,
) -> nn.Module:
    """A fastgru.nn.GRU holding the GRU stack saved in a Keras 3 `.keras` or `.weights.h5` file.

    layers: names of the GRU layers to take (needed when the model has other layers, or for a
    weights file with several GRU stacks). reset_after: only for a `.weights.h5` file whose GRUs have
    no bias (the bias shape is how a weights file tells the variant). The same options are refused
    as in `fastgru.interop.from_keras`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras file not found: {path}")
    name = path.name.lower()
    if name.endswith(".keras"):
        if reset_after is not None:
            raise InteropError("reset_after= is only for .weights.h5 files; a .keras file records it per layer")
        return _from_keras_archive(path, layers, batch_first, ignore_training_options)
    if name.endswith(".weights.h5"):
        return _from_weights_file(path, layers, reset_after, batch_first)
    if name.endswith((".h5", ".hdf5")):
        raise InteropError(
            f"{path}: legacy Keras 2 HDF5 model files are not supported; load it in Keras and save it as "
            "'.keras' (model.save('model.keras')) or '.weights.h5'"
        )
    raise InteropError(f"{path}: expected a '.keras' or '.weights.h5' file (got suffix {path.suffix!r})")


def _read_archive(path: Path) -> tuple[dict, bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for needed in ("config.json", "model.weights.h5"):
                if needed not in names:
                    raise InteropError(f"{path}: not a Keras 3 archive (no {needed}; it holds {sorted(names)})")
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except zipfile.BadZipFile as exc:
        raise InteropError(f"{path}: not a valid .keras file (not a zip archive: {exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InteropError(f"{path}: config.json is not valid JSON ({exc})") from exc
    return config, weights


def _from_keras_archive(path: Path, select, batch_first: bool, ignore_training_options: bool) -> nn.Module:
    config, weights_bytes = _read_archive(path)
    model_config = config.get("config", {})
    if "layers" not in model_config:
        raise InteropError(
            f"{path}: the saved model ({config.get('class_name')}) has no layer list in its config "
            "(a subclassed model); load it in Keras and convert its GRU layers with from_keras"
        )
    functional = config.get("class_name") != "Sequential"
    plans = plan_stack(
        model_config["layers"], select=select, functional=functional, ignore_training_options=ignore_training_options
    )
    h5py = _h5py()
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as f:
            arrays = [_group_arrays(f, plan, path) for plan in plans]
    except OSError as exc:
        raise InteropError(f"{path}: model.weights.h5 is not a readable HDF5 file ({exc})") from exc
    spec, weights = assemble(plans, arrays, batch_first=batch_first)
    module = build(spec, weights)
    apply_trainable(module, spec, plans)
    return module


def _vars(group, where: str, expected: int) -> tuple:
    """(kernel, recurrent_kernel, bias or None) from a cell's vars group, checking the count."""
    if "cell" not in group or "vars" not in group["cell"]:
        raise InteropError(f"{where}: no cell/vars group: not a Keras 3 GRU layer")
    variables = group["cell"]["vars"]
    keys = sorted(variables.keys(), key=int)
    if keys != [str(i) for i in range(len(keys))] or len(keys) not in (2, 3):
        raise InteropError(f"{where}: expected variables 0, 1(, 2) (kernel, recurrent_kernel, bias), got {keys}")
    if expected and len(keys) != expected:
        raise InteropError(f"{where}: the config says {expected} variables, the file has {len(keys)}")
    arrays = [variables[k][()] for k in keys]
    return arrays[0], arrays[1], arrays[2] if len(arrays) == 3 else None


def _group_arrays(f, plan: KerasLayerPlan, path: Path) -> list[tuple]:
    key = plan.h5_key
    where = f"{path}: layer {plan.name!r} (group layers/{key})"
    if "layers" not in f or key not in f["layers"]:
        raise InteropError(f"{where} is missing from the weights")
    group = f["layers"][key]
    expected = 3 if plan.use_bias else 2
    if plan.bidirectional:
        return [_vars(group[part], f"{where}/{part}", expected) for part in ("forward_layer", "backward_layer")
                if _has(group, part, where)]
    return [_vars(group, where, expected)]


def _has(group, part: str, where: str) -> bool:
    if part not in group:
        raise InteropError(f"{where}: no {part} group: not a Keras 3 Bidirectional layer")
    return True


_KINDS = {"gru": "GRU", "bidirectional": "Bidirectional"}


def _counter(key: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"([a-z_]+?)(?:_(\d+))?", key)
    if m is None:
        return None
    return m.group(1), int(m.group(2)) if m.group(2) else -1  # 'gru' is first, then gru_1, gru_2, ...


def _real_name(group, key: str) -> str:
    if "vars" in group and "name" in group["vars"].attrs:
        value = group["vars"].attrs["name"]
        return value.decode() if isinstance(value, bytes) else str(value)
    return key


def _has_datasets(group) -> bool:
    found = []
    group.visititems(lambda _, obj: found.append(1) if hasattr(obj, "shape") else None)
    return bool(found)


def _from_weights_file(path: Path, select, reset_after: bool | None, batch_first: bool) -> nn.Module:
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InteropError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        if "layers" not in f:
            raise InteropError(f"{path}: no 'layers' group: not a Keras 3 .weights.h5 file")
        entries = []  # (kind, counter, key, real name)
        others = []
        for key in f["layers"]:
            group = f["layers"][key]
            parsed = _counter(key)
            kind = _KINDS.get(parsed[0]) if parsed else None
            if kind is None:
                if _has_datasets(group):
                    others.append(_real_name(group, key))
                continue
            entries.append((kind, parsed[1], key, _real_name(group, key)))
        if select is not None:
            by_name = {e[3]: e for e in entries}
            unknown = [s for s in select if s not in by_name]
            if unknown:
                raise InteropError(f"layers={unknown}: no such GRU layer in {path}; it has {sorted(by_name)}")
            chosen = [by_name[s] for s in select]
        else:
            if others:
                raise InteropError(
                    f"{path} holds weights of non-GRU layers {others}; pass layers=[...] naming the GRU layers "
                    f"to convert (GRU layers here: {[e[3] for e in entries]})"
                )
            kinds = {e[0] for e in entries}
            if len(kinds) > 1:
                raise InteropError(
                    f"{path} has both GRU and Bidirectional layers, whose order a weights file does not record; "
                    "pass layers=[...] in model order"
                )
            chosen = sorted(entries, key=lambda e: e[1])
        if not chosen:
            raise InteropError(f"{path}: no GRU layers found")
        plans, arrays = [], []
        for kind, _, key, name in chosen:
            where = f"{path}: layer {name!r} (group layers/{key})"
            group = f["layers"][key]
            if kind == "Bidirectional":
                dirs = [_vars(group[p], f"{where}/{p}", 0) for p in ("forward_layer", "backward_layer")
                        if _has(group, p, where)]
            else:
                dirs = [_vars(group, where, 0)]
            plans.append(_plan_from_arrays(name, kind, key, dirs, reset_after, where))
            arrays.append(dirs)
    spec, weights = assemble(plans, arrays, batch_first=batch_first)
    return build(spec, weights)


def _plan_from_arrays(name, kind, key, dirs, reset_after, where) -> KerasLayerPlan:
    """What a weights-only file tells about a layer: units, bias, and reset_after from the bias shape."""
    kernel, recurrent, bias = dirs[0]
    units = int(recurrent.shape[0])
    if recurrent.ndim != 2 or recurrent.shape[1] != 3 * units:
        raise InteropError(f"{where}: recurrent kernel {recurrent.shape} is not (units, 3 * units): not a GRU")
    if bias is None:
        if reset_after is None:
            raise InteropError(
                f"{where}: the GRU has no bias, so the file does not say whether reset_after is True or False; "
                "pass reset_after="
            )
        variant = reset_after
    else:
        variant = bias.ndim == 2
        if reset_after is not None and reset_after != variant:
            raise InteropError(
                f"{where}: reset_after={reset_after} was given but the bias shape {bias.shape} means "
                f"reset_after={variant}"
            )
    return KerasLayerPlan(name, kind, units=units, use_bias=bias is not None, reset_after=variant, h5_key=key)
