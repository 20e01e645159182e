"""The catalogue quality figure: its numbers per SNR bin, the figure, the command line and
the refusal."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError, make_table, write_catalogue  # noqa: E402
from cianna_jax.astro.catalogue_qa import qa_numbers  # noqa: E402
from cianna_jax.cli import main  # noqa: E402


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    snr = 10 ** rng.uniform(0.5, 2.5, n)
    rms = np.full(n, 1e-5)
    peak = snr * rms
    resolved = rng.random(n) < 0.2
    flux = peak * np.where(resolved, 2.0, 1.0) * (1 + rng.normal(0, 1 / snr))
    return make_table({"id": np.arange(1, n + 1), "ra": rng.uniform(0, 0.2, n),
                       "dec": rng.uniform(-30.1, -30, n), "flux": flux, "peak": peak,
                       "snr": snr, "rms": rms, "ra_err": 1.8 / (2 * snr),
                       "resolved": resolved, "edge": rng.random(n) < 0.05},
                      meta={"beam_bmaj_arcsec": 1.8})


def test_the_numbers():
    t = _table()
    q = qa_numbers(t)
    assert q["n"] == 400 and q["resolved_fraction"] == pytest.approx(
        np.mean(np.asarray(t["resolved"])))
    bright = [b for b in q["bins"] if b["snr"][0] >= 20 and b["n"] >= 3]
    assert bright and all(abs(b["ratio_median"] - 1) < 0.05 for b in bright)
    assert all(b["ratio_scatter"] < 0.06 for b in bright)  # unresolved only: tight
    for b in q["bins"]:
        if b["n"]:
            lo, hi = b["snr"]
            assert 1.8 / (2 * hi) <= b["pos_err_median"] <= 1.8 / (2 * lo)
    # LoTSS's envelope tells the simulated resolved sources (ratio 2) from the scattered
    # unresolved ones nearly as the flag does
    assert q["above_envelope_fraction"] == pytest.approx(q["resolved_fraction"], abs=0.05)
    assert q["agree_with_resolved"] > 0.9 and len(q["envelope"]["snr"]) >= 3
    env = np.asarray(q["envelope"]["ln_ratio"])
    assert np.all(np.diff(env) <= 0) and env[0] > env[-1]
    with pytest.raises(CatalogueError, match="flux, peak and snr"):
        qa_numbers(t[["ra", "dec", "flux"]])
    with pytest.raises(CatalogueError, match="no sources"):
        qa_numbers(t[:0])


def test_the_command_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_catalogue(_table(), tmp_path / "c.ecsv")
    assert main(["qa", "--catalogue", str(tmp_path / "c.ecsv"), "--out",
                 str(tmp_path / "qa.png")]) == 0
    said = capsys.readouterr().out
    assert "400 sources" in said and "S_int/S_peak" in said
    assert (tmp_path / "qa.png").stat().st_size > 20_000
