"""fastgru.io.checkpoint: safetensors + JSON config, no pickle, atomic, clear errors on damaged files."""

import json
import struct

import pytest
import torch
from interop_util import max_err, randomize_, same_state
from safetensors.torch import save_file

import fastgru
from fastgru import checkpoint
from fastgru.io import atomic
from fastgru.io.checkpoint import CheckpointError

MODELS = [
    lambda: fastgru.nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True),
    lambda: fastgru.nn.GRU(3, 4, bias=False, reset_after=False, dropout=0.1, dtype=torch.float64),
    lambda: fastgru.nn.GRU(3, 4, gate_activation="hard_sigmoid", hard_sigmoid=(1 / 6, 0.5), zoneout=0.2,
                           recurrent_dropout=0.1, candidate_activation="softsign"),
    lambda: fastgru.nn.GRUCell(3, 4, reset_after=False),
    lambda: fastgru.nn.LayerNormGRU(3, 4, num_layers=2),
]


@pytest.mark.parametrize("make", MODELS)
def test_round_trip_is_bit_exact(tmp_path, make):
    model = randomize_(make()).eval()
    path = checkpoint.save(model, tmp_path / "m.safetensors")
    loaded = checkpoint.load(path).eval()
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    assert same_state(loaded, model)
    x = torch.randn(2, 3, dtype=next(model.parameters()).dtype)
    if not isinstance(model, fastgru.nn.GRUCell):
        x = torch.randn(6, 2, 3, dtype=x.dtype)
    with torch.no_grad():
        got, want = loaded(x), model(x)
    if isinstance(got, tuple):  # GRU: (output, h_n); GRUCell: h'
        got, want = got[0], want[0]
    assert max_err(got, want) == 0
    # the file is plain safetensors with the config as JSON in its header: no pickle anywhere
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + n])
    assert json.loads(header["__metadata__"]["config"])["module"]["class"] == type(model).__name__


def test_load_into_existing_module_and_mismatch(tmp_path):
    model = randomize_(fastgru.nn.GRU(3, 5, num_layers=2))
    path = checkpoint.save(model, tmp_path / "m.safetensors")
    target = fastgru.nn.GRU(3, 5, num_layers=2)
    assert checkpoint.load(path, into=target) is target and same_state(target, model)
    other = fastgru.nn.GRU(3, 6, num_layers=2, reset_after=False)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match="hidden_size: file 5, module 6.*reset_after"):
        checkpoint.load(path, into=other)
    assert same_state(other, before)


def test_existing_file_is_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    first = randomize_(fastgru.nn.GRU(3, 4))
    checkpoint.save(first, path)
    original = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        checkpoint.save(fastgru.nn.GRU(3, 4), path)
    with pytest.raises(TypeError, match="fastgru.nn module"):
        checkpoint.save(torch.nn.GRU(3, 4), path, overwrite=True)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(fastgru.nn.GRU(3, 4), path, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # the temp file was removed
    second = randomize_(fastgru.nn.GRU(3, 4))
    checkpoint.save(second, path, overwrite=True)
    assert same_state(checkpoint.load(path), second)


def test_truncated_files_say_so(tmp_path):
    path = checkpoint.save(randomize_(fastgru.nn.GRU(3, 4)), tmp_path / "m.safetensors")
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    for cut in (0, 5, 8 + n // 2, 8 + n, len(data) - 1):
        short = tmp_path / f"cut{cut}.safetensors"
        short.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            checkpoint.load(short)


def test_corrupted_files_say_so(tmp_path):
    path = checkpoint.save(randomize_(fastgru.nn.GRU(3, 4)), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    flipped = bytearray(data)
    flipped[8 + n + 17] ^= 0x40  # one bit of one weight
    (tmp_path / "bit.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted.*SHA-256"):
        checkpoint.load(tmp_path / "bit.safetensors")
    broken = bytearray(data)
    broken[8 + n // 2] = ord("}")  # the JSON header
    (tmp_path / "hdr.safetensors").write_bytes(bytes(broken))
    with pytest.raises(CheckpointError, match="corrupted"):
        checkpoint.load(tmp_path / "hdr.safetensors")
    (tmp_path / "tail.safetensors").write_bytes(bytes(data) + b"junk")
    with pytest.raises(CheckpointError, match="unexpected bytes"):
        checkpoint.load(tmp_path / "tail.safetensors")
    (tmp_path / "len.safetensors").write_bytes(struct.pack("<Q", 2**40) + bytes(data[8:]))
    with pytest.raises(CheckpointError, match="header length"):
        checkpoint.load(tmp_path / "len.safetensors")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.safetensors")


def test_foreign_and_mismatched_layouts(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file(fastgru.nn.GRU(3, 4).state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a fastgru checkpoint"):
        checkpoint.load(plain)
    # a config that does not fit its tensors (e.g. hand-edited, or written by another layout)
    config = checkpoint.module_config(fastgru.nn.GRU(3, 4, num_layers=2))
    wrong = tmp_path / "wrong.safetensors"
    checkpoint.write(wrong, fastgru.nn.GRU(3, 5).state_dict(), {"module": config})
    with pytest.raises(CheckpointError, match="missing .*weight_ih_l1.*wrong shapes .*weight_hh_l0"):
        checkpoint.load(wrong)
    evil = tmp_path / "evil.safetensors"
    checkpoint.write(evil, {}, {"module": {"class": "system", "kwargs": {}, "dtype": "float32"}})
    with pytest.raises(CheckpointError, match="not a fastgru.nn module"):
        checkpoint.load(evil)
    with pytest.raises(CheckpointError, match="plain JSON"):
        checkpoint.write(tmp_path / "x.safetensors", {}, {"f": object()})
