"""The wheel runs anywhere: built from the sources, installed into a fresh venv, and the
main job run from a folder outside the checkout finds its config, profiles and data.

Offline: the wheel is built without build isolation (setuptools of this venv) and installed
with --no-deps; the fresh venv reaches the dependencies already installed here through a
.pth line, added only after the install, so pip never sees (or touches) this venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "flashsim")
MAX_WHEEL_BYTES = 25 << 20


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the venv's bin folder, its environment, the wheel): wheel built from a copy of the
    sources (the checkout gets no build/ folder), installed into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        from_, to = ROOT / name, src / name
        if from_.is_dir():
            shutil.copytree(from_, to, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(from_, to)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    wheel = next((tmp / "dist").glob("flashsim-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], cwd=tmp)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], cwd=tmp).stdout.strip())
    here = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (site / "zz-flashsim-test-deps.pth").write_text("".join(f"{p}\n" for p in sorted(here)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv / "bin", env, wheel


def test_the_wheel_ships_the_data_and_stays_small(installed):
    _, _, wheel = installed
    assert wheel.stat().st_size < MAX_WHEEL_BYTES
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("flashsim/data/default.yaml", "flashsim/data/devices/m1max-paper.yaml",
                   "flashsim/data/devices/local-virtio.yaml",
                   "flashsim/data/traces/opt-mini-ref.trace",
                   "flashsim/data/opt-mini/model.safetensors",
                   "flashsim/data/opt-mini/predictors.safetensors",
                   "flashsim/data/text/heldout-eval.txt"):
        assert needed in names, needed


def test_the_installed_flashsim_is_the_wheel_not_the_checkout(installed, tmp_path):
    bin_, env, _ = installed
    where = _run([str(bin_ / "python"), "-c", "import flashsim; print(flashsim.__file__)"],
                 cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(bin_.parent) and not Path(where).is_relative_to(ROOT)
    version = _run([str(bin_ / "flashsim"), "--version"], cwd=tmp_path, env=env).stdout
    assert version.startswith("flashsim ")


def test_simulate_finds_a_bundled_device_and_trace_by_name(installed, tmp_path):
    bin_, env, _ = installed
    out = _run([str(bin_ / "flashsim"), "simulate", "--device", "local-virtio", "--trace",
                "opt-mini-ref", "--layout", "sparse", "--memcpy-gb-s", "10", "--json"],
               cwd=tmp_path, env=env).stdout
    summary = json.loads(out)
    assert summary["device"] == "local-virtio" and summary["n_tokens"] > 0


def test_the_main_job_runs_outside_the_checkout(installed, tmp_path):
    bin_, env, _ = installed
    _run([str(bin_ / "flashsim"), "run", "--json"], cwd=tmp_path, env=env)
    out = tmp_path / "results" / "default"
    for name in ("results.parquet", "results.csv", "tokens.parquet", "tables.txt",
                 "compare.png"):
        assert (out / name).is_file(), name
    assert "windowed+bundled" in (out / "tables.txt").read_text()
