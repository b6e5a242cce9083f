"""The `fastgru` command: the subcommand registry, common options, overwrite refusal, error messages, demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastgru.apps.cli import SUBCOMMANDS, build_parser, interrupted_message, main

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_registered_task(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "forecast", "detect", "classify"):
        assert f"    {name}" in out


def test_common_options_added_to_each_subcommand():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]  # the subcommands action
    for name in ("forecast", "detect", "classify", "demo"):
        p = sub.choices[name]
        args = p.parse_args([])
        assert args.out == os.path.join("fastgru-out", name) and args.force is False and args.progress is None


def test_a_module_that_does_not_import_is_left_out_with_a_note():
    parser = build_parser(["fastgru.apps.forecast", "fastgru.apps.no_such_task"])
    assert "no_such_task" in parser.epilog
    assert parser.parse_args(["forecast"]).command == "forecast"


def _series_csv(tmp_path: Path, n: int = 120) -> Path:
    t = np.arange(n)
    rng = np.random.default_rng(n)
    df = pd.DataFrame({"day": t, "load": np.sin(t / 5) + 0.1 * rng.normal(size=n), "label": "x"})
    path = tmp_path / "load.csv"
    df.to_csv(path, index=False)
    return path


def test_forecast_command_writes_outputs_and_refuses_to_overwrite(tmp_path, capsys):
    data, out = _series_csv(tmp_path), tmp_path / "run"
    argv = ["forecast", "--data", str(data), "--columns", "load", "--time-column", "day", "--window", "10",
            "--horizon", "3", "--epochs", "2", "--hidden-size", "8", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MAE" in printed and "naive" in printed and str(out / "forecast.png") in printed
    assert json.loads((out / "metrics.json").read_text())["task"] == "forecast"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds forecast.csv" in err and "--force" in err
    assert main([*argv, "--force"]) == 0


def test_bad_column_is_one_clear_line_and_exit_status_2(tmp_path, capsys):
    data = _series_csv(tmp_path)
    assert main(["forecast", "--data", str(data), "--columns", "lod", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"fastgru forecast: error: {data} has no column 'lod'; its columns are: 'day', 'load', 'label'")
    assert not (tmp_path / "o").exists()


def test_demo_runs_forecast_and_short_compare(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--chorales", "3", "--compare-epochs", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert (out / "forecast" / "forecast.png").exists() and (out / "forecast" / "metrics.json").exists()
    assert "seasonal naive" in printed and str(out / "forecast" / "forecast.png") in printed
    if "fastgru.apps.compare" in SUBCOMMANDS and (out / "compare").exists():
        assert (out / "compare" / "curves.png").exists() and "LSTM" in printed


def test_python_dash_m_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-m", "fastgru", "detect", "--help"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and "--threshold" in proc.stdout and "--force" in proc.stdout


def test_without_a_terminal_the_run_prints_epoch_lines(tmp_path):
    """Output piped to a file: no progress bars, but periodic 'fastgru: epoch i/n: ...' lines on stderr."""
    data, out = _series_csv(tmp_path), tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-m", "fastgru", "forecast", "--data", str(data), "--columns", "load",
                           "--time-column", "day", "--window", "10", "--horizon", "3", "--epochs", "2",
                           "--hidden-size", "8", "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("fastgru: epoch ")]
    assert lines and lines[0].startswith("fastgru: epoch 1/2: train_loss ")
    assert "\r" not in proc.stderr  # no progress-bar redraws in a log


@pytest.mark.parametrize("task", ["detect", "classify"])
def test_missing_file_message(task, tmp_path, capsys):
    assert main([task, "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"fastgru {task}: error:" in err and "nope.csv" in err


# -- Ctrl-C ------------------------------------------------------------------------------------------------
def test_interrupt_tells_how_to_resume(monkeypatch, capsys):
    import fastgru.apps.forecast as forecast_task

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(forecast_task, "run_from_args", interrupted)
    rc = main(["forecast", "--data", "sunspots", "--epochs", "3", "--force"])
    err = capsys.readouterr().err
    assert rc == 130
    assert "fastgru forecast: interrupted" in err
    assert "fastgru forecast --data sunspots --epochs 3 --resume" in err
    assert "--force" not in err.split("with:")[1]


def test_interrupt_of_a_task_without_resume_says_so():
    import argparse

    msg = interrupted_message(argparse.Namespace(command="classify", out="runs/c"), ["classify"])
    assert "cannot resume" in msg and "runs/c" in msg


def test_help_never_states_a_default_twice(capsys):
    for name in ("classify", "forecast", "detect", "generate", "bench"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert text.count("(default: fastgru-out/") <= 1, name
        assert not re.search(r"\(default[^)]*\) \(default", text), name
