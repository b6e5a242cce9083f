"""JSB Chorales loader and the `compare` task, end to end on a few chorales / a short text."""

from __future__ import annotations

import gzip
import json
import math
from importlib import resources

import pandas as pd
import pytest
import torch
from PIL import Image

from fastgru.apps import cli, compare
from fastgru.apps.data import jsb_chorales
from fastgru.train import Trainer
from fastgru.train.models import build_model


def _raw_json() -> dict:
    with (resources.files("fastgru.apps.data") / "files" / "jsb_chorales.json.gz").open("rb") as fh:
        return json.load(gzip.open(fh, "rt"))


def test_jsb_rolls_hold_exactly_the_notes_of_the_file():
    raw = _raw_json()
    for split, chorales, steps in (("train", 229, 13807), ("valid", 76, 4602), ("test", 77, 4725)):
        rolls = jsb_chorales.load_jsb_chorales(split)
        assert len(rolls) == chorales and rolls.n_steps == steps and rolls.n_notes == 88
    rolls = jsb_chorales.load_jsb_chorales("valid", limit=5)
    for roll, chorale in zip(rolls.rolls, raw["valid"][:5]):
        for t, notes in enumerate(chorale):
            assert torch.nonzero(roll[t]).flatten().tolist() == [n - 21 for n in notes]
    data_range = jsb_chorales.load_jsb_chorales("test", note_range="data", limit=1)
    assert data_range.n_notes == 96 - 43 + 1 and data_range.low_note == 43


def _nll_per_step(logits: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> float:
    """Oracle: -sum(y log p + (1 - y) log(1 - p)) over notes and real steps, divided by the real steps."""
    p = 1 / (1 + torch.exp(-logits.double()))
    y = y.double()
    total = sum(
        -(y[b, t] * torch.log(p[b, t]) + (1 - y[b, t]) * torch.log(1 - p[b, t])).sum()
        for b in range(len(lengths)) for t in range(int(lengths[b]))
    )
    return float(total / lengths.sum())


def test_batch_shifts_targets_by_one_step():
    rolls = jsb_chorales.load_jsb_chorales("train", limit=3).rolls
    x, y, lengths = jsb_chorales.batch_rolls(rolls)
    assert lengths.tolist() == [r.shape[0] for r in rolls]
    for b, roll in enumerate(rolls):
        n = roll.shape[0]
        assert torch.equal(y[b, :n], roll) and not y[b, n:].any()
        assert not x[b, 0].any() and torch.equal(x[b, 1:n], roll[:-1])


def test_bad_loader_arguments_are_named():
    with pytest.raises(ValueError, match="split must be one of"):
        jsb_chorales.load_jsb_chorales("dev")
    with pytest.raises(ValueError, match="note_range must be one of"):
        jsb_chorales.load_jsb_chorales("train", note_range="all")
    with pytest.raises(ValueError, match="limit must be a positive"):
        jsb_chorales.load_jsb_chorales("train", limit=0)


def test_trainer_loss_is_the_per_step_nll_and_padding_does_not_change_it():
    """The metric compare reports (the Trainer's loss) is the per-step Bernoulli NLL of the papers, with
    lengths (packed / fastgru lengths=) and with the padded batch (IgnoreLengths) alike."""
    data = compare.jsb_data(limit=5)
    for cell in ("gru", "lstm"):
        model = build_model(cell=cell, hidden_size=7, **data.model)
        with torch.no_grad():
            logits = model(data.test.x)  # no lengths: a causal model's real steps ignore the padding after them
        expected = _nll_per_step(logits, data.test.y, data.test.lengths)
        with_lengths = Trainer(model, epochs=1, progress=False, device="cpu").evaluate(data.test)["loss"]
        padded = Trainer(compare.IgnoreLengths(model), epochs=1, progress=False, device="cpu").evaluate(data.test)
        assert with_lengths == pytest.approx(expected, rel=1e-5)
        assert padded["loss"] == pytest.approx(expected, rel=1e-5)


def test_compare_jsb_end_to_end(tmp_path):
    """The Chung et al. setting on four chorales for one epoch: every output exists, parses and is finite."""
    data = compare.jsb_data(limit=4)
    results = compare.run_compare(data, tmp_path, seeds=(0, 1), epochs=1, timing_rounds=2)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["cell"].tolist() == ["gru", "lstm", "rnn"]
    # parameter counts against torch's own modules: recurrent core + Linear head, 88 notes in and out
    for cell, rnn in (("gru", torch.nn.GRU(88, 46)), ("lstm", torch.nn.LSTM(88, 36)), ("rnn", torch.nn.RNN(88, 100))):
        expected = sum(p.numel() for p in rnn.parameters()) + rnn.hidden_size * 88 + 88
        assert int(summary.loc[summary.cell == cell, "parameters"].iloc[0]) == expected
    assert summary["paper_test"].tolist() == [8.54, 8.67, 9.10]
    for cell in ("gru", "lstm", "rnn"):  # the selected seed is the one with the best validation value
        mine = [r for r in results["runs"] if r["cell"] == cell]
        chosen = min(mine, key=lambda r: r["best_valid"])
        row = summary[summary.cell == cell].iloc[0]
        assert row["selected_seed"] == chosen["seed"] and row["selected_test"] == pytest.approx(chosen["test"])
    for col in ("test_mean", "best_valid_mean", "train_seconds_per_epoch_mean"):
        assert summary[col].map(math.isfinite).all() and (summary[col] > 0).all()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["runs"]) == 6 and saved["settings"]["optimizer"] == "rmsprop"
    assert saved == json.loads(json.dumps(results))
    for run in saved["runs"]:
        assert (tmp_path / f"{run['cell']}-seed{run['seed']}" / "history.json").is_file()
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG"
    for cell, seconds in saved["interleaved_epoch_seconds"].items():  # two epochs each, taking turns
        assert len(seconds) == 2 and all(s > 0 for s in seconds)
        row = summary[summary.cell == cell].iloc[0]
        assert row["interleaved_seconds_median"] == pytest.approx(sorted(seconds)[0] / 2 + sorted(seconds)[1] / 2)
    table = (tmp_path / "table.md").read_text()
    assert table.count("\n") == 5 and "| GRU (fastgru) | 46 | 22,904 |" in table
    assert "cells taking turns" in table.splitlines()[0]


def test_compare_on_text_with_a_budget_and_cli(tmp_path, capsys):
    """Second data set (characters), matched budget; run through the `compare` subcommand's parser."""
    text = tmp_path / "words.txt"
    words = "the quick brown fox jumps over a lazy dog while seven wizards box "
    text.write_text("".join(words[int(i)] for i in torch.randint(len(words), (3000,))), encoding="utf-8")
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nkept text\n")
    argv = ["compare", "--data", "text", "--text-file", str(text), "--seq-len", "30", "--budget", "3000",
            "--cells", "gru,lstm", "--seeds", "3", "--epochs", "1", "--out", str(tmp_path / "out"),
            "--results-md", str(md), "--timing-rounds", "0"]
    results = cli.run(argv)
    rows = results["summary"]
    assert [r["cell"] for r in rows] == ["gru", "lstm"]
    for r in rows:
        assert abs(r["parameters"] - 3000) < 0.1 * 3000
        assert math.isfinite(r["test_mean"]) and 0 < r["test_mean"] < 8
    report = md.read_text()
    assert report.startswith("# Results\n\nkept text\n")
    assert "<!-- compare-text:start -->" in report and "<!-- compare-text:end -->" in report
    assert "bits per character" in capsys.readouterr().out
    # a second run into the same folder is refused (exit status 2, one clear line) unless --force
    assert cli.main(argv) == 2
    assert "already holds results.json, summary.csv, table.md, curves.png" in capsys.readouterr().err


def test_compare_bad_input_messages(tmp_path):
    data = compare.jsb_data(limit=2)
    with pytest.raises(ValueError, match=r"cells: unknown \['gruu'\]"):
        compare.run_compare(data, tmp_path, cells=("gruu",), epochs=1)
    with pytest.raises(ValueError, match="seeds: give at least one"):
        compare.run_compare(data, tmp_path, seeds=(), epochs=1)
    with pytest.raises(ValueError, match="timing_rounds must be >= 0"):
        compare.run_compare(data, tmp_path, timing_rounds=-1, epochs=1)
    with pytest.raises(ValueError, match="threads must be a positive number"):
        compare.run_compare(data, tmp_path, threads=0, epochs=1)
    with pytest.raises(ValueError, match="text too short for seq_len=100: the training part has"):
        compare.text_data("short text " * 5, seq_len=100)
    assert not any(tmp_path.iterdir())  # nothing written before the checks
