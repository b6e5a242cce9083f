"""Checkpoints are never read silently wrong: config covered by the checksum and validated, every
malformed file a one-line CheckpointError, temp files of killed saves reclaimed, and a fuzz test."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import textwrap

import pytest
from interop_util import randomize_, same_state
from safetensors.torch import save as st_save

import fastgru
from fastgru import checkpoint
from fastgru.io import atomic
from fastgru.io.checkpoint import CheckpointError


def _model():
    """Small, with options away from their defaults, so a flipped config value would change the model."""
    return randomize_(fastgru.nn.GRU(3, 4, num_layers=2, zoneout=0.25, gate_activation="hard_sigmoid",
                                     hard_sigmoid=(0.3, 0.4), batch_first=True, reset_after=False)).eval()


def _header(data: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8 : 8 + n])


def _write_with_meta(path, tensors, meta: dict) -> None:
    path.write_bytes(st_save(tensors, metadata=meta))


def _edited_config(path, tmp_path, edit) -> os.PathLike:
    """The file at `path` with its config JSON edited by `edit(config_dict)`, checksum NOT updated."""
    tensors, _ = checkpoint.read(path)
    meta = _header(path.read_bytes())[1]["__metadata__"]
    config = json.loads(meta["config"])
    edit(config)
    meta = {**meta, "config": json.dumps(config, sort_keys=True)}
    out = tmp_path / "edited.safetensors"
    _write_with_meta(out, tensors, meta)
    return out


@pytest.mark.parametrize("edit", [
    lambda c: c["module"]["kwargs"].update(zoneout=0.5),
    lambda c: c["module"]["kwargs"].update(reset_after=True),
    lambda c: c["module"]["kwargs"].update(batch_first=False),
    lambda c: c["module"]["kwargs"].update(gate_activation="sigmoid"),
    lambda c: c["module"]["kwargs"].update(hard_sigmoid=[0.2, 0.5]),
], ids=["zoneout", "reset_after", "batch_first", "gate_activation", "hard_sigmoid"])
def test_an_edited_config_fails_the_checksum(tmp_path, edit):
    path = checkpoint.save(_model(), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="config's SHA-256 does not match"):
        checkpoint.load(_edited_config(path, tmp_path, edit))


def _v1_file(tmp_path, model, edit=None, name="v1.safetensors"):
    """A format-1 file (checksum over the tensors only), as earlier fastgru versions wrote them."""
    config = {"module": checkpoint.module_config(model)}
    if edit:
        edit(config["module"]["kwargs"])
    plain = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": checkpoint.FORMAT, "format_version": "1",
            "config": json.dumps(config, sort_keys=True), "sha256": checkpoint.checksum(plain)}
    path = tmp_path / name
    _write_with_meta(path, plain, meta)
    return path


def test_format_1_files_still_load_exactly(tmp_path):
    model = _model()
    loaded = checkpoint.load(_v1_file(tmp_path, model))
    assert same_state(loaded, model) and repr(loaded) == repr(model)


@pytest.mark.parametrize("key,value,message", [
    ("zoneout", 1.5, "zoneout must be a number in"),
    ("zoneout", -0.1, "zoneout must be a number in"),
    ("zoneout", "0.1", "zoneout must be of type float, got string"),
    ("reset_after", "false", "reset_after must be of type bool, got string"),
    ("reset_after", 0, "reset_after must be of type bool, got number"),
    ("batch_first", None, "batch_first must be of type bool, got null"),
    ("hidden_size", 4.0, "hidden_size must be of type int"),
    ("hidden_size", -4, "hidden_size must be a positive integer"),
    ("num_layers", True, "num_layers must be of type int, got bool"),
    ("gate_activation", "swish", "gate_activation"),
    ("candidate_activation", 3, "candidate_activation must be of type str"),
    ("hard_sigmoid", [0.2], "hard_sigmoid must be a list of 2 values"),
    ("hard_sigmoid", [0.2, "x"], r"hard_sigmoid\[1\] must be of type float"),
    ("init", "glorot", "init must be one of"),
    ("backend", "cuda-magic", "backend"),
    ("dropout", 2.0, "dropout must be a number in"),
    ("recurrent_dropout", 1.0, "recurrent_dropout must be a number in"),
    ("no_such_option", 1, "does not take: \\['no_such_option'\\]"),
])
def test_config_values_are_validated_on_load(tmp_path, key, value, message):
    """Even where the checksum cannot help (a format-1 file, or one written by hand), each value is checked."""
    path = _v1_file(tmp_path, _model(), edit=lambda kw: kw.__setitem__(key, value))
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value)


def test_format_2_requires_every_argument(tmp_path):
    model = _model()
    config = {"module": checkpoint.module_config(model)}
    del config["module"]["kwargs"]["zoneout"]
    path = checkpoint.write(tmp_path / "m.safetensors", model.state_dict(), config)
    with pytest.raises(CheckpointError, match=r"lacks the arguments \['zoneout'\]"):
        checkpoint.load(path)


def _framed(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


MALFORMED = {
    "deep_json": _framed(b"[" * 100_000 + b"]" * 100_000),
    "header_is_list": _framed(b"[1, 2]"),
    "metadata_is_list": _framed(b'{"__metadata__": [1]}'),
    "metadata_number": _framed(b'{"__metadata__": {"format": 3}}'),
    "offsets_strings": _framed(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}', b"\0" * 4),
    "offsets_short": _framed(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}}', b"\0" * 4),
    "entry_is_string": _framed(b'{"w": "x"}'),
    "no_config": _framed(json.dumps({"__metadata__": {"format": checkpoint.FORMAT,
                                                      "format_version": "2"}}).encode()),
    "deep_config": _framed(json.dumps({"__metadata__": {"format": checkpoint.FORMAT, "format_version": "2",
                                                        "config": "[" * 50_000 + "]" * 50_000}}).encode()),
    "bad_dtype_code": _framed(json.dumps({"w": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]},
                                          "__metadata__": {"format": checkpoint.FORMAT, "format_version": "2",
                                                           "config": "{}"}}).encode(), b"\0" * 4),
    "shape_mismatch": _framed(json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]},
                                          "__metadata__": {"format": checkpoint.FORMAT, "format_version": "2",
                                                           "config": "{}"}}).encode(), b"\0" * 4),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_files_raise_one_line_checkpoint_errors(tmp_path, name):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(MALFORMED[name])
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def _bad_config_file(tmp_path, config) -> os.PathLike:
    return checkpoint.write(tmp_path / "c.safetensors", {}, config, overwrite=True)


@pytest.mark.parametrize("config", [
    [], {"module": []}, {"module": {"class": ["GRU"], "kwargs": {}, "dtype": "float32"}},
    {"module": {"class": "GRU", "kwargs": [], "dtype": "float32"}},
    {"module": {"class": "GRU", "kwargs": {"input_size": 2, "hidden_size": 2}, "dtype": ["float32"]}},
    {"module": {"class": "GRU", "kwargs": {"input_size": 2, "hidden_size": 2}, "dtype": "int64"}},
    {"module": {"class": "GRU", "kwargs": {"input_size": 2, "hidden_size": 10**12}, "dtype": "float32"}},
], ids=range(7))
def test_configs_that_describe_no_module(tmp_path, config):
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(_bad_config_file(tmp_path, config))
    assert "\n" not in str(info.value)


def test_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    """A real kill -9 in the middle of a save; the next save of the same file reclaims its temp file."""
    target = tmp_path / "m.safetensors"
    script = textwrap.dedent(f"""
        import os, signal
        from fastgru.io import atomic
        with atomic.atomic_path({str(target)!r}, suffix=".tmp") as tmp:
            tmp.write_bytes(b"x" * 1_000_000)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, timeout=600)
    assert result.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".m.safetensors.tmp-pid") and not target.exists()
    # a live process's temp file is never touched (a concurrent writer)
    live = tmp_path / f".m.safetensors.tmp-pid{os.getppid()}-abc.tmp"
    live.write_bytes(b"in progress")
    model = _model()
    checkpoint.save(model, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "m.safetensors"])
    assert same_state(checkpoint.load(target), model)
    assert atomic.remove_orphans(target, ".tmp") == []


def test_fuzz_bit_flips_and_truncations_give_the_model_or_a_clean_error(tmp_path):
    """Single-bit flips (most in the header, where the config lives) and truncations of a real checkpoint:
    each load returns a model identical to the saved one (class, config, every tensor bit) or raises
    CheckpointError with a one-line message. Nothing else is allowed: no other exception, no other model."""
    model = _model()
    path = checkpoint.save(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    n, _ = _header(data)
    want_config = checkpoint.module_config(model)
    rng = random.Random(int(os.environ.get("FASTGRU_TEST_SEED", "0")) + 15)
    cases = [("flip", rng.randrange(0, (8 + n) * 8)) for _ in range(300)]  # length field + header
    cases += [("flip", rng.randrange((8 + n) * 8, len(data) * 8)) for _ in range(60)]  # tensor bytes
    cases += [("cut", rng.randrange(0, len(data))) for _ in range(60)]
    counts = {"exact": 0, "clean_error": 0}
    case_path = tmp_path / "case.safetensors"
    for kind, where in cases:
        damaged = bytearray(data)
        if kind == "flip":
            damaged[where // 8] ^= 1 << (where % 8)
        else:
            damaged = damaged[:where]
        case_path.write_bytes(bytes(damaged))
        try:
            loaded = checkpoint.load(case_path)
        except CheckpointError as exc:
            assert "\n" not in str(exc), (kind, where, str(exc))
            counts["clean_error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test: any other exception is a defect
            pytest.fail(f"{kind} at bit/byte {where}: {type(exc).__name__}: {exc}")
        assert checkpoint.module_config(loaded) == want_config, (kind, where)
        assert same_state(loaded, model), (kind, where)
        counts["exact"] += 1
    assert sum(counts.values()) == len(cases) == 420
    # nearly every flip matters; the few that load are flips the format ignores (e.g. JSON whitespace
    # cannot be flipped into other whitespace by one bit, so in practice almost none)
    assert counts["clean_error"] >= 400, counts
    print(f"fuzz: {len(cases)} cases, {counts['clean_error']} clean errors, {counts['exact']} exact")
