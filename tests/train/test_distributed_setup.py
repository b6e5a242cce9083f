"""fastgru.train.distributed: the process-group backend follows the device the Trainer chose first (nccl on
CUDA, gloo on the CPU), and a group joined here is left again. torch.distributed's own calls are replaced by
recorders, so these run on one CPU process; tests/train/test_train.py runs a real 2-process gloo job."""

from __future__ import annotations

import pytest
import torch

from fastgru.train import TrainConfig, Trainer
from fastgru.train import distributed as dist_utils
from fastgru.train.models import build_model


@pytest.fixture
def fake_group(monkeypatch):
    """Pretend to be rank 1 of 2 under torchrun; record what would be called on torch.distributed."""
    calls: list[tuple] = []
    state = {"initialized": False}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    d = dist_utils.dist

    def init_process_group(backend):
        calls.append(("init", backend))
        state["initialized"] = True

    def destroy_process_group():
        calls.append(("destroy",))
        state["initialized"] = False

    monkeypatch.setattr(d, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(d, "init_process_group", init_process_group)
    monkeypatch.setattr(d, "destroy_process_group", destroy_process_group)
    monkeypatch.setattr(d, "get_rank", lambda: 1)
    monkeypatch.setattr(d, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(("set_device", str(dev))))
    monkeypatch.setattr(dist_utils.atexit, "register", lambda fn, *a: calls.append(("atexit", fn.__name__)))
    return calls


def test_cuda_device_selects_nccl_and_becomes_current(fake_group):
    info = dist_utils.setup("auto", torch.device("cuda", 1))
    assert fake_group[:2] == [("set_device", "cuda:1"), ("init", "nccl")]
    assert ("atexit", "teardown") in fake_group
    assert (info.rank, info.world_size, info.local_rank, info.initialized_here) == (1, 2, 1, True)


def test_cpu_device_selects_gloo(fake_group):
    dist_utils.setup("auto", torch.device("cpu"))
    assert ("init", "gloo") in fake_group
    assert not any(c[0] == "set_device" for c in fake_group)


def test_teardown_leaves_the_group_once(fake_group):
    info = dist_utils.setup("auto", torch.device("cpu"))
    dist_utils.teardown(info)
    dist_utils.teardown(info)
    assert fake_group.count(("destroy",)) == 1


def test_off_and_single_process_never_touch_torch_distributed(fake_group, monkeypatch):
    assert not dist_utils.setup("off", torch.device("cpu")).enabled
    assert dist_utils.launched_local_rank("off") is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not dist_utils.setup("auto", torch.device("cpu")).enabled
    assert dist_utils.launched_local_rank("auto") is None
    assert fake_group == []


def test_launched_local_rank_under_torchrun(fake_group):
    assert dist_utils.launched_local_rank("auto") == 1


def test_trainer_chooses_the_device_before_joining_and_closes(fake_group, monkeypatch):
    seen: list[torch.device] = []
    real_setup = dist_utils.setup

    def recording_setup(mode, device=None):
        seen.append(device)
        return real_setup(mode, device)

    monkeypatch.setattr(dist_utils, "setup", recording_setup)
    model = build_model(cell="gru", input_size=2, hidden_size=3, output_size=2, head="classification")
    with Trainer(model, TrainConfig(epochs=1, device="cpu", progress=False)) as trainer:
        assert seen == [torch.device("cpu")] and trainer.device == torch.device("cpu")
        assert ("init", "gloo") in fake_group
    assert fake_group[-1] == ("destroy",)
