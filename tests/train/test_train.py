"""fastgru.train: Trainer behaviour checked against hand-written loops, a killed-and-resumed run against an
uninterrupted one, and a 2-process DDP run against a 1-process run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fastgru.train import SequenceData, StreamData, TrainConfig, Trainer, load_state, save_state
from fastgru.train.losses import loss_terms
from fastgru.train.models import build_model
from fastgru.train.state import flatten, unflatten

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "tests" / "train" / "_train_job.py"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "final.safetensors"))


def _classification_data(g: torch.Generator, N: int = 80, T: int = 10, F: int = 3):
    x = torch.randn(N, T, F, generator=g)
    lengths = torch.randint(2, T + 1, (N,), generator=g)
    y = (torch.stack([x[i, : lengths[i], 0].sum() for i in range(N)]) > 0).long()
    return SequenceData(x, y, lengths)


# -- state files: no pickle, exact round trip -------------------------------------------------------------
def test_state_flatten_round_trip_is_exact(tmp_path):
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    model = build_model(cell="lstm", input_size=3, hidden_size=5, output_size=2, head="classification")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(4, 6, 3, generator=g), torch.randint(0, 2, (4,), generator=g)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    tree = {"opt": opt.state_dict(), "sched": sched.state_dict(), "np": np.arange(5, dtype=np.uint32),
            "tuple": (1, (2.5, "a")), "inf": float("inf"), "ints": {3: "x", 7: [None, True]}}
    save_state(tree, tmp_path, "s")
    json.loads((tmp_path / "s.json").read_text())  # strict JSON parses it (no pickle, no bare Infinity)
    back = load_state(tmp_path, "s")
    assert back["tuple"] == (1, (2.5, "a")) and back["inf"] == math.inf and back["ints"] == {3: "x", 7: [None, True]}
    np.testing.assert_array_equal(back["np"], np.arange(5, dtype=np.uint32))
    assert back["np"].dtype == np.uint32
    assert back["sched"] == sched.state_dict()
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt2.load_state_dict(back["opt"])
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(opt2.state_dict()["state"][k][name], t)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    with pytest.raises(TypeError, match="without pickle"):
        flatten({"f": lambda: 0})
    assert unflatten(*flatten([1, {"a": (2,)}])) == [1, {"a": (2,)}]


# -- loss with lengths against a per-sequence computation -------------------------------------------------
@pytest.mark.parametrize("head", ["regression", "classification", "multilabel", "next_token"])
def test_per_step_loss_counts_only_valid_steps(head):
    g = torch.Generator().manual_seed(5)
    B, T, O = 4, 7, 5
    out = torch.randn(B, T, O, generator=g)
    lengths = torch.tensor([7, 3, 5, 1])
    if head == "regression":
        y = torch.randn(B, T, O, generator=g)
    elif head == "multilabel":
        y = (torch.rand(B, T, O, generator=g) > 0.5).float()
    else:
        y = torch.randint(0, O, (B, T), generator=g)
    s, n = loss_terms(head, out, y, lengths, per_step=True)
    total, count = 0.0, 0
    for b in range(B):
        L = int(lengths[b])
        o, t = out[b, :L], y[b, :L]
        if head == "regression":
            total += float(((o - t) ** 2).sum())
            count += L * O
        elif head == "multilabel":
            total += float(torch.nn.functional.binary_cross_entropy_with_logits(o, t, reduction="sum"))
            count += L
        else:
            total += float(torch.nn.functional.cross_entropy(o, t, reduction="sum"))
            count += L
    assert math.isclose(float(s), total, rel_tol=1e-5) and float(n) == count


# -- the training loop against a hand-written one ---------------------------------------------------------
def test_truncated_bptt_equals_hand_written_loop():
    """Stream training = chunks of bptt steps, state carried and detached, clipping, one step per chunk."""
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    S, T, bptt = 3, 40, 9
    x = torch.randn(S, T, 2, generator=g)
    y = torch.randn(S, T, 1, generator=g)
    torch.manual_seed(1)
    ours = build_model(cell="gru", input_size=2, hidden_size=6, output_size=1, per_step=True)
    oracle = build_model(cell="gru", input_size=2, hidden_size=6, output_size=1, per_step=True)
    oracle.load_state_dict(ours.state_dict())
    Trainer(ours, TrainConfig(epochs=2, optimizer="rmsprop", lr=1e-2, bptt=bptt, clip_norm=0.5, progress=False,
                              restore_best=False)).fit(StreamData(x, y))
    opt = torch.optim.RMSprop(oracle.parameters(), lr=1e-2)
    for _ in range(2):
        state = None
        for t in range(0, T, bptt):
            out, state = oracle(x[:, t : t + bptt], state=state, return_state=True)
            state = state.detach()
            loss = torch.nn.functional.mse_loss(out, y[:, t : t + bptt])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(oracle.parameters(), 0.5)
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), oracle.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_minibatch_epoch_equals_hand_written_loop_and_clips():
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    data = _classification_data(g, N=50)
    torch.manual_seed(2)
    ours = build_model(cell="gru", input_size=3, hidden_size=8, output_size=2, head="classification")
    oracle = build_model(cell="gru", input_size=3, hidden_size=8, output_size=2, head="classification")
    oracle.load_state_dict(ours.state_dict())
    trainer = Trainer(ours, TrainConfig(epochs=1, batch_size=16, lr=5e-2, clip_norm=0.1, seed=9, progress=False))
    norms = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, *_: norms.append(float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in ours.parameters()]))))
    )
    trainer.fit(data)
    assert norms and max(norms) <= 0.1 + 1e-5
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(9))
    opt = torch.optim.Adam(oracle.parameters(), lr=5e-2)
    for start in range(0, len(data), 16):
        idx = order[start : start + 16]
        L = data.lengths[idx]
        out = oracle(data.x[idx][:, : int(L.max())], L)
        loss = torch.nn.functional.cross_entropy(out, data.y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(oracle.parameters(), 0.1)
        opt.step()
    for (name, a), b in zip(ours.state_dict().items(), oracle.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_early_stopping_restores_best_weights_and_writes_history(tmp_path):
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    train, val = _classification_data(g, N=64), _classification_data(g, N=32)
    torch.manual_seed(4)
    model = build_model(cell="gru", input_size=3, hidden_size=8, output_size=2, head="classification")
    # mode="max" on val_loss: a falling validation loss counts as "no improvement", so the run must stop
    # after `patience` epochs past its best one, whichever epoch that is.
    trainer = Trainer(model, TrainConfig(epochs=30, batch_size=16, lr=1e-2, patience=2, monitor="val_loss",
                                         mode="max", out_dir=str(tmp_path), progress=False))
    hist = trainer.fit(train, val)
    assert hist["stopped_early"]
    assert len(hist["epochs"]) == hist["best_epoch"] + 2 < 30
    best = hist["epochs"][hist["best_epoch"] - 1]
    assert hist["best_value"] == best["val_loss"]
    assert math.isclose(trainer.evaluate(val)["loss"], best["val_loss"], rel_tol=1e-6)
    on_disk = json.loads((tmp_path / "history.json").read_text())
    assert on_disk["epochs"] == json.loads(json.dumps(hist["epochs"]))
    assert all(math.isfinite(e["train_loss"]) and 0 <= e["val_accuracy"] <= 1 for e in on_disk["epochs"])
    ckpt = tmp_path / "checkpoints"
    folder = ckpt / json.loads((ckpt / "latest.json").read_text())["folder"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.json", "model.safetensors", "trainer.json", "trainer.safetensors"]
    assert json.loads((folder / "model.json").read_text())["config"] == model.config.to_dict()


def test_progress_bar_shows_loss_and_metric(capsys):
    g = torch.Generator().manual_seed(3)
    data = _classification_data(g, N=32)
    model = build_model(cell="gru", input_size=3, hidden_size=4, output_size=2, head="classification")
    Trainer(model, TrainConfig(epochs=2, batch_size=16, progress=True)).fit(data, data)
    err = capsys.readouterr().err
    assert "training" in err and "val_loss=" in err and "val_accuracy=" in err


def test_without_progress_bars_epochs_are_logged_at_most_every_interval(caplog, monkeypatch):
    import fastgru.train.trainer as trainer_module

    g = torch.Generator().manual_seed(3)
    data = _classification_data(g, N=32)
    model = build_model(cell="gru", input_size=3, hidden_size=4, output_size=2, head="classification")
    monkeypatch.setattr(trainer_module, "LOG_INTERVAL_SECONDS", 0.0)  # every epoch
    with caplog.at_level("INFO", logger="fastgru.train"):
        Trainer(model, TrainConfig(epochs=3, batch_size=16, progress=False)).fit(data, data)
    lines = [r.getMessage() for r in caplog.records if r.name == "fastgru.train.trainer"]
    assert len(lines) == 3 and lines[2].startswith("epoch 3/3: train_loss ")
    assert "val_loss" in lines[0] and "val_accuracy" in lines[0]
    caplog.clear()
    monkeypatch.setattr(trainer_module, "LOG_INTERVAL_SECONDS", 1e9)  # only the first and the last epoch
    with caplog.at_level("INFO", logger="fastgru.train"):
        Trainer(model, TrainConfig(epochs=4, batch_size=16, progress=False)).fit(data)
    lines = [r.getMessage() for r in caplog.records if r.name == "fastgru.train.trainer"]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/4", "epoch 4/4"]


def test_resume_refuses_changed_settings(tmp_path):
    g = torch.Generator().manual_seed(3)
    data = _classification_data(g, N=32)
    model = build_model(cell="gru", input_size=3, hidden_size=4, output_size=2, head="classification")
    Trainer(model, TrainConfig(epochs=1, batch_size=16, out_dir=str(tmp_path), progress=False)).fit(data)
    with pytest.raises(ValueError, match="training settings differ.*batch_size"):
        Trainer(model, TrainConfig(epochs=2, batch_size=8, out_dir=str(tmp_path), progress=False)).fit(
            data, resume=True)
    other = build_model(cell="gru", input_size=3, hidden_size=5, output_size=2, head="classification")
    with pytest.raises(ValueError, match="the model differs.*hidden_size"):
        Trainer(other, TrainConfig(epochs=2, batch_size=16, out_dir=str(tmp_path), progress=False)).fit(
            data, resume=True)


# -- killed and resumed = uninterrupted ---------------------------------------------------------------------
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    seed = str(int(torch.randint(0, 1000, (1,))))
    common = [sys.executable, str(JOB), "--kinds", "seq,stream", "--epochs", "4", "--dropout", "0.2",
              "--data-seed", seed]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(common + ["--out", str(full)], env=_env(), check=True, capture_output=True, timeout=600)
    # The job pauses after epoch 2's checkpoint; the test kills it from outside with SIGKILL.
    proc = subprocess.Popen(common + ["--out", str(killed), "--pause-after-epoch", "2"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker, deadline = killed / "paused", time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate(timeout=30)
    assert marker.exists(), err.decode()[-2000:]
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert json.loads((killed / "seq" / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    assert not (killed / "seq" / "final.safetensors").exists()
    subprocess.run(common + ["--out", str(killed), "--resume"], env=_env(), check=True, capture_output=True,
                   timeout=600)
    for kind in ("seq", "stream"):  # the kill hit "seq"; "stream" then ran from scratch in the resumed process
        a, b = _weights(full / kind), _weights(killed / kind)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
        ha = json.loads((full / kind / "history.json").read_text())["epochs"]
        hb = json.loads((killed / kind / "history.json").read_text())["epochs"]
        assert [e["val_loss"] for e in ha] == [e["val_loss"] for e in hb]


# -- DistributedDataParallel: 2 processes = 1 process ------------------------------------------------------
def test_ddp_two_processes_equal_one_process(tmp_path):
    seed = str(int(torch.randint(0, 1000, (1,))))
    args = [str(JOB), "--kinds", "seq,stream", "--epochs", "3", "--data-seed", seed]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, *args, "--out", str(one)], env=_env(), check=True, capture_output=True,
                   timeout=600)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args,
         "--out", str(two)], env=_env(), capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    for kind in ("seq", "stream"):
        a, b = _weights(one / kind), _weights(two / kind)
        h1 = json.loads((one / kind / "history.json").read_text())
        h2 = json.loads((two / kind / "history.json").read_text())
        assert h1["world_size"] == 1 and h2["world_size"] == 2
        for k in a:
            torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0, msg=f"{kind} {k}")
        # the weights moved: the equality is not the trivial one of two untrained models
        init = load_file(str(one / kind / "init.safetensors"))
        assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-2
