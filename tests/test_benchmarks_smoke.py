"""Smoke runs of the benchmark suite (slow: about a minute each on 2 cores)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


def test_run_all_quick_prints_the_summary_table():
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick"],
                         env=_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for needle in ("== Summary ==", "SDC1 64 b8 training", "SDC1 64 b8 inference",
                   "MNIST b64 funct. training", "MNIST b64 imper. inference",
                   "first training step, mnist", "small-map check:", "== Small-map check =="):
        assert needle in text, needle
    row = next(line for line in text.splitlines() if line.startswith("SDC1 64 b8 training"))
    assert float(row.split()[-3]) > 0  # a ratio against PyTorch was computed


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_on_cpu(tmp_path):
    env = _env()
    env.pop("JAX_PLATFORMS")
    env["OUT"] = str(tmp_path)
    env["GPU_CHECK_QUICK"] = "1"
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = (tmp_path / "gpu_check.txt").read_text()
    assert "NO GPU" in text
    assert "golden" in text.lower() and "mnist" in text.lower()
