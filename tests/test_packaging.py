"""Packaging: the wheel and sdist build; the wheel, installed alone (not editable) into a fresh virtual
environment with only its core dependencies, works from outside the repository, including the first
build of the C++ kernel from the installed files; the command names the extra a task needs; and the
documentation site builds with warnings as errors."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = r"""
import os, sys, torch
import fastgru
from fastgru.backends import cpu
assert "site-packages" in fastgru.__file__, fastgru.__file__
assert cpu.load() is not None, cpu.load_error()
torch.manual_seed(int(sys.argv[1]))
ref = torch.nn.GRU(5, 7, num_layers=2, bidirectional=True)
gru = fastgru.nn.GRU(5, 7, num_layers=2, bidirectional=True)
gru.load_state_dict(ref.state_dict())
x = torch.randn(11, 3, 5, requires_grad=True)
y_ref, h_ref = ref(x)
y, h = gru(x)
torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=0)
torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)
g_ref, = torch.autograd.grad(y_ref.sum(), x)
g, = torch.autograd.grad(y.sum(), x)
torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=0)
print("smoke ok", sorted(os.listdir(os.environ["FASTGRU_BUILD_DIR"])))
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], timeout=600)
    return out


def test_wheel_and_sdist_hold_the_package_and_its_kernel_source(dist):
    wheel = next(dist.glob("fastgru-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastgru/backends/csrc/gru_cpu.cpp" in names and "fastgru/nn/gru.py" in names
    kernel = {p.name for p in (ROOT / "src/fastgru/backends/csrc").iterdir()}  # the kernel: sources, headers
    assert len(kernel) > 5 and any(k.endswith(".h") for k in kernel)
    assert {f"fastgru/backends/csrc/{k}" for k in kernel} <= set(names)
    assert any(n.startswith("fastgru/apps/data/files/") and n.endswith(".csv") for n in names)
    assert not any(n.startswith("tests/") or "/tests/" in n for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    required = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Requires-Dist:")]
    core = sorted(r.split(">")[0].split("=")[0].strip() for r in required if "extra ==" not in r)
    assert core == ["ninja", "numpy", "safetensors", "torch", "tqdm"]
    assert any("pandas" in r and 'extra == "apps"' in r for r in required)
    sdist = next(dist.glob("fastgru-*.tar.gz"))
    members = tarfile.open(sdist).getnames()
    assert any(m.endswith("src/fastgru/backends/csrc/gru_cpu.cpp") for m in members)
    assert all(any(m.endswith(f"src/fastgru/backends/csrc/{k}") for m in members) for k in kernel)


@pytest.mark.slow
def test_installed_wheel_works_outside_the_repository(dist, tmp_path, fresh_seed):
    # nothing of the repository or of the test environment may leak into the fresh one
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["FASTGRU_BUILD_DIR"] = str(tmp_path / "build")
    work = tmp_path / "elsewhere"
    work.mkdir()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work, env=env, timeout=300)
    py = venv / "bin" / "python"
    wheel = next(dist.glob("fastgru-*.whl"))
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c",
          str(ROOT / "constraints.txt"), str(wheel)], cwd=work, env=env, timeout=900)
    proc = _run([str(py), "-c", SMOKE, str(fresh_seed)], cwd=work, env=env, timeout=900)
    assert "smoke ok" in proc.stdout
    assert "building the fused CPU kernel" in proc.stderr  # the first build says what it is doing
    # the command runs without the apps extra and names the extra a task needs
    fastgru = venv / "bin" / "fastgru"
    assert "forecast" in _run([str(fastgru), "--help"], cwd=work, env=env, timeout=300).stdout
    missing = subprocess.run([str(fastgru), "forecast", "--data", "sunspots"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert "pip install 'fastgru[apps]'" in missing.stderr and "Traceback" not in missing.stderr


WITHOUT_APPS = r"""
import sys
for name in ("pandas", "matplotlib", "sacrebleu", "sklearn"):
    sys.modules[name] = None  # as if the 'apps' extra were not installed: importing them fails
from fastgru.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_command_without_the_apps_extra_lists_tasks_and_names_the_extra():
    """The fast check of what the wheel test checks in a fresh venv: no extra is imported up front."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    helped = subprocess.run([sys.executable, "-c", WITHOUT_APPS, "--help"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "forecast" in helped.stdout and "pip install 'fastgru[apps]'" in helped.stdout
    missing = subprocess.run([sys.executable, "-c", WITHOUT_APPS, "forecast", "--data", "sunspots"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert "pip install 'fastgru[apps]'" in missing.stderr and "Traceback" not in missing.stderr


def test_documentation_site_builds_without_warnings(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "fastgru.nn.GRU" in api and "reset_after" in api
