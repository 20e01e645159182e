"""The ``cianna-jax`` command: ``info`` and the quick radio-source demo."""

import csv
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import cianna_jax
from cianna_jax import cli, xla_cpu

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_xla_flags(monkeypatch):
    """In this process JAX already runs: cli.main's xla_cpu.tune() must neither warn nor
    leave XLA_FLAGS changed for the tests after these."""
    monkeypatch.setenv(xla_cpu.OPT_OUT_ENV, "1")


def test_console_script_is_declared():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("cianna-jax") == "cianna_jax.cli:main"


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cianna_jax" in out and "default backend:" in out and "device 0" in out
    assert f"cianna_jax {cianna_jax.__version__}" in out


@pytest.mark.parametrize("opt_out", ["", "1"])
def test_command_tunes_xla_before_starting_jax(opt_out):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update({xla_cpu.OPT_OUT_ENV: opt_out, "JAX_PLATFORMS": "cpu"})
    done = subprocess.run([sys.executable, "-m", "cianna_jax.cli", "info"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    expected = "''" if opt_out else repr(xla_cpu.FLAG)
    assert f"XLA_FLAGS: {expected}" in done.stdout


def test_demo_command_passes_its_options(monkeypatch, tmp_path):
    seen = {}

    def fake_run_demo(out, quick, seed):
        seen.update(out=out, quick=quick, seed=seed)
        return {"recall": 0.5}

    monkeypatch.setattr("cianna_jax.demo.run_demo", fake_run_demo)
    assert cli.main(["demo", "--quick", "--seed", "3", "--out", str(tmp_path)]) == 0
    assert seen == {"out": str(tmp_path), "quick": True, "seed": 3}


@pytest.mark.slow
def test_quick_demo_writes_files_and_detects_sources(tmp_path, capsys):
    from cianna_jax.demo import run_demo

    out = tmp_path / "demo"
    m = run_demo(out=str(out), quick=True, seed=0)
    text = capsys.readouterr().out
    assert "precision" in text and "recall" in text
    for name in ("field.png", "training.png", "detections.csv", "yolo_net.dat"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "detections.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == m["n_detected"] > 20
    assert set(rows[0]) == {"x", "y", "width", "height", "objectness", "box_flux"}
    # measured when written (seed 0, CPU): precision 0.89, recall 0.74, F1 0.81, AP 0.74,
    # median position error 1.0 px, median flux error 12%.  The thresholds leave room for
    # numerical noise across machines but fail for a detector that does not work.
    assert m["precision"] >= 0.75
    assert m["recall"] >= 0.6
    assert m["f1"] >= 0.68
    assert m["ap"] >= 0.55
    assert m["median_position_error_px"] <= 2.0
    assert m["median_flux_error"] <= 0.3
