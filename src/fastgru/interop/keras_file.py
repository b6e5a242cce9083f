"""Saved Keras 3 files -> fastgru modules, read with h5py and zipfile (no Keras or TensorFlow needed).

A `.keras` file is a zip of config.json (the model's layers and every option) and model.weights.h5;
its options are checked exactly as for a live model. A `.weights.h5` file holds weights only (each
layer's arrays and its name, nothing else): layers are found by structure (GRU groups hold
cell/vars/{0: kernel, 1: recurrent_kernel, 2: bias}), taken in the order Keras numbered them (gru,
gru_1, ...); units, input size, use_bias and bidirectionality follow from the arrays and reset_after
from the bias shape. What changes the numbers but is not stored — activation, recurrent_activation,
go_backwards, and a Bidirectional's merge_mode — must be passed as arguments (or
`assume_defaults=True` to take Keras' defaults on purpose); the import never guesses them.

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

from fastgru.interop.keras_layout import KerasLayerPlan, apply_trainable, assemble, check_gru_config, plan_stack
from fastgru.interop.layout import InteropError, build


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
    activation: str | None = None,
    recurrent_activation: str | None = None,
    go_backwards: bool | None = None,
    merge_mode: str | None = None,
    assume_defaults: bool = False,
) -> nn.Module:
    """A fastgru.nn.GRU holding the GRU stack saved in a Keras 3 `.keras` or `.weights.h5` file.

    layers: names of the GRU layers to take (needed when the model has other layers, or for a
    weights file with several GRU stacks). The same options are refused as in
    `fastgru.interop.from_keras`.

    Only for a `.weights.h5` file, which stores arrays and names but no options (a `.keras` file
    records them all, and giving them here is an error):

    - activation, recurrent_activation, go_backwards (and merge_mode when the file holds a
      Bidirectional layer): required, as the layers were built. Keras' defaults are 'tanh',
      'sigmoid', False, 'concat'; assume_defaults=True takes those for the ones not given.
    - reset_after: needed only when the GRUs have no bias (the bias shape tells the variant).

    A single GRU layer with go_backwards=True comes back as a `GoBackwards` module: it reads the input
    reversed in time and returns the outputs in that processing order, as Keras does.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras file not found: {path}")
    name = path.name.lower()
    stated = {"reset_after": reset_after, "activation": activation, "recurrent_activation": recurrent_activation,
              "go_backwards": go_backwards, "merge_mode": merge_mode}
    if name.endswith(".keras"):
        given = [k for k, v in stated.items() if v is not None] + (["assume_defaults"] if assume_defaults else [])
        if given:
            raise InteropError(f"{given} are only for .weights.h5 files; a .keras file records every option per layer")
        return _from_keras_archive(path, layers, batch_first, ignore_training_options)
    if name.endswith(".weights.h5"):
        del stated["reset_after"]
        return _from_weights_file(path, layers, reset_after, batch_first, stated, assume_defaults)
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


# What a .weights.h5 file does not record, with Keras' defaults (used only with assume_defaults=True).
UNRECORDED_DEFAULTS = {"activation": "tanh", "recurrent_activation": "sigmoid", "go_backwards": False,
                       "merge_mode": "concat"}


def _unrecorded_options(path: Path, kinds: set[str], stated: dict, assume_defaults: bool) -> dict:
    """The options the caller gave for a weights file; refuse if one that applies is missing."""
    needed = ["activation", "recurrent_activation", "go_backwards"] + (["merge_mode"] if "Bidirectional" in kinds
                                                                       else [])
    if stated.get("merge_mode") is not None and "Bidirectional" not in kinds:
        raise InteropError(f"merge_mode={stated['merge_mode']!r}: {path} holds no Bidirectional layer")
    missing = [k for k in needed if stated.get(k) is None]
    if missing and not assume_defaults:
        example = ", ".join(f"{k}={UNRECORDED_DEFAULTS[k]!r}" for k in missing)
        raise InteropError(
            f"{path}: a .weights.h5 file does not record {', '.join(missing)}; pass them as the layers were built "
            f"(Keras' defaults would be {example}), or assume_defaults=True to take Keras' defaults, or load a "
            ".keras file, which records them"
        )
    return {k: stated[k] if stated.get(k) is not None else UNRECORDED_DEFAULTS[k] for k in needed}


def _from_weights_file(path: Path, select, reset_after: bool | None, batch_first: bool, stated: dict,
                       assume_defaults: bool) -> nn.Module:
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
        options = _unrecorded_options(path, {e[0] for e in chosen}, stated, assume_defaults)
        plans, arrays = [], []
        for kind, _, key, name in chosen:
            where = f"{path}: layer {name!r} (group layers/{key})"
            group = f["layers"][key]
            if kind == "Bidirectional":
                dirs = [_vars(group[p], f"{where}/{p}", 0) for p in ("forward_layer", "backward_layer")
                        if _has(group, p, where)]
            else:
                dirs = [_vars(group, where, 0)]
            plans.append(_plan_from_arrays(name, kind, key, dirs, reset_after, where, options))
            arrays.append(dirs)
    backwards = options["go_backwards"]
    if backwards and (len(plans) != 1 or plans[0].bidirectional):
        raise InteropError(
            f"{path}: go_backwards=True is supported for one plain GRU layer only (here: {[p.name for p in plans]}); "
            "a stack of backwards layers reverses the sequence between layers, which one fastgru GRU does not"
        )
    for plan in plans:
        plan.return_sequences = True  # a weights file does not say; the module returns every step anyway
    spec, weights = assemble(plans, arrays, batch_first=batch_first)
    module = build(spec, weights)
    if backwards:
        from fastgru.interop.keras_model import GoBackwards

        return GoBackwards(module)
    return module


def _plan_from_arrays(name, kind, key, dirs, reset_after, where, options: dict) -> KerasLayerPlan:
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
    config = {"units": units, "activation": options["activation"],
              "recurrent_activation": options["recurrent_activation"], "go_backwards": False}
    checked = check_gru_config(config, where)  # refuses activations fastgru lacks, by name
    if kind == "Bidirectional" and options.get("merge_mode") != "concat":
        raise InteropError(
            f"{where}: merge_mode={options.get('merge_mode')!r} is not supported: fastgru concatenates the two "
            "directions (merge_mode='concat')"
        )
    if kind == "Bidirectional" and options["go_backwards"]:
        raise InteropError(f"{where}: go_backwards=True inside a Bidirectional layer is not supported")
    return KerasLayerPlan(name, kind, units=units, use_bias=bias is not None, reset_after=variant, h5_key=key,
                          gate_activation=checked["gate_activation"],
                          candidate_activation=checked["candidate_activation"])
