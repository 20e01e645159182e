"""The ``cianna-jax`` command: ``info`` and the quick radio-source demo."""

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

import cianna_jax
from cianna_jax import cli, cli_train, host_memory, xla_cpu

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
    from cianna_jax.host_cpu import cpu_info

    cpu = cpu_info()  # the processor, its vector unit and its bfloat16 units
    assert (f"vector unit {cpu['vector_isa'] or '?'}, bfloat16 units: "
            f"{', '.join(cpu['bf16']) or 'none'}") in out


@pytest.mark.parametrize("opt_out", ["", "1"])
def test_command_tunes_xla_before_starting_jax(opt_out):
    """The command sets its XLA flags, and restarts itself once with glibc's huge-page
    tunable (where glibc has it); each has its opt-out."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
    env.update({xla_cpu.OPT_OUT_ENV: opt_out, host_memory.OPT_OUT_ENV: opt_out,
                "JAX_PLATFORMS": "cpu"})
    done = subprocess.run([sys.executable, "-m", "cianna_jax.cli", "info"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    expected = "''" if opt_out else repr(xla_cpu.FLAG)
    assert f"XLA_FLAGS: {expected}" in done.stdout
    huge = not opt_out and host_memory.applies(env)
    assert ("host memory: huge pages asked for" if huge else "host memory: glibc defaults") \
        in done.stdout
    assert done.stdout.count("cianna_jax ") == 1  # one process printed, once


def test_demo_command_passes_its_options(monkeypatch, tmp_path):
    seen = {}

    def fake_run_demo(out, quick, seed):
        seen.update(out=out, quick=quick, seed=seed)
        return {"recall": 0.5}

    monkeypatch.setattr("cianna_jax.demo.run_demo", fake_run_demo)
    assert cli.main(["demo", "--quick", "--seed", "3", "--out", str(tmp_path)]) == 0
    assert seen == {"out": str(tmp_path), "quick": True, "seed": 3}


def test_demo_errors_are_one_line(tmp_path, capsys):
    """A file where the demo's folder should go: one line naming it, exit status 2 (it
    ended in a traceback)."""
    (tmp_path / "taken").write_text("")
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    taken = tmp_path / "taken"
    assert err.strip() == f"cianna-jax demo: error: {taken}: exists and is not a folder"


@pytest.mark.slow
@pytest.mark.usefixtures("optimized_compilation")
def test_quick_demo_runs_train_predict_val_on_fits_files(tmp_path, capsys):
    pytest.importorskip("astropy")
    from astropy.io import fits

    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.demo import run_demo

    out = tmp_path / "demo"
    m = run_demo(out=str(out), quick=True, seed=0)
    text = capsys.readouterr().out
    assert "detection by true class (the truth's kind" in text
    for cmd in ("$ cianna-jax train --image", "$ cianna-jax predict --model",
                "$ cianna-jax val --model", "$ cianna-jax inject --model",
                "$ cianna-jax counts --catalogue", "$ cianna-jax qa --catalogue",
                "$ cianna-jax cutouts --catalogue"):
        assert cmd in text, cmd
    for name in ("train.fits", "train.ecsv", "test.fits", "test.ecsv", "run/best.dat",
                 "run/best.json", "run/last.dat", "run/results.csv", "run/training.png",
                 "test_sources.ecsv", "report/report.txt", "report/scores.json",
                 "injection/injected.ecsv", "injection/catalogue.ecsv", "counts.ecsv",
                 "qa.png", "gallery.png", "report/detected_by_class.png"):
        assert (out / name).stat().st_size > 0, name
    # without the truth: the injection's completeness limit and expected false detections
    # (measured when written: 50% at SNR 7.5, 12 expected false of the 103 detections)
    assert 3.0 <= m["completeness_snr50"] <= 12.0
    assert 0.0 <= m["expected_false"] <= 0.5 * m["n_detected"]
    with fits.open(out / "test.fits") as hdul:  # a real field: WCS, Jy/beam, beam, NaN border
        h, data = hdul[0].header, hdul[0].data
        assert h["BUNIT"].upper() == "JY/BEAM" and h["CTYPE1"].startswith("RA") and h["BMAJ"] > 0
        assert data.ndim == 4 and np.isnan(data[0, 0, 0, 0])
    cat = read_catalogue(out / "test_sources.ecsv")
    assert {"ra", "dec", "flux"} <= set(cat.colnames) and str(cat["flux"].unit) == "Jy"
    # measured when written (seed 0, CPU): precision 0.93, recall 0.72, F1 0.81.  The
    # thresholds leave room for numerical noise across machines but fail for a detector
    # that does not work.
    assert m["precision"] >= 0.8
    assert m["recall"] >= 0.6
    assert m["f1"] >= 0.7
    assert m["ap"] >= 0.55
    assert m["median_separation_arcsec"] <= 0.5
    assert 0.8 <= m["flux_ratio"] <= 1.25


def test_resume_knows_every_train_option():
    """``--resume`` refuses the run's settings by name (``cli_train.RUN_SETTINGS_OPTIONS``): an
    option added to ``train`` must be listed there or among those --resume takes."""
    import argparse

    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = {o for a in sub.choices["train"]._actions for o in a.option_strings
             if o.startswith("--")}
    assert train == set(cli_train.TRAIN_OPTIONS)
