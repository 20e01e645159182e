"""Spectral indices: the observing frequency read from headers, alpha and its error from
catalogues at two or three frequencies against the formulas, the simulator's sources at
two frequencies, and the pipeline end to end (simulate, predict, spectral-index)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402

from cianna_jax.astro.catalogue import CatalogueError, read_catalogue  # noqa: E402
from cianna_jax.astro.spectral_index import (  # noqa: E402
    continuum_frequency,
    format_spectral_summary,
    spectral_indices,
)
from cianna_jax.astro.synthetic import synthetic_field, truth_table  # noqa: E402
from cianna_jax.cli import main  # noqa: E402


def test_the_frequency_of_a_continuum_image_header():
    h = fits.Header()
    h["NAXIS"] = 4
    h["CTYPE3"], h["CRVAL3"], h["CUNIT3"] = "FREQ", 1284.0, "MHz"
    assert continuum_frequency(h) == pytest.approx(1.284e9)
    h2 = fits.Header()
    h2["RESTFREQ"] = 1.44e8
    assert continuum_frequency(h2) == 1.44e8
    assert continuum_frequency(fits.Header()) is None
    h2["RESTFREQ"] = -1.0
    assert continuum_frequency(h2) is None


def _cat(ra, flux, err, freq=None, beam=None):
    t = Table({"id": np.arange(1, len(ra) + 1), "ra": np.asarray(ra, float),
               "dec": np.zeros(len(ra)), "flux": np.asarray(flux, float),
               "flux_err": np.asarray(err, float)})
    if freq is not None:
        t.meta["frequency_hz"] = freq
    if beam is not None:
        t.meta["beam_bmaj_arcsec"] = beam
    return t


def test_two_frequencies_give_the_formula():
    a = _cat([10.0, 10.01, 10.02], [1.0, 2.0, 3.0], [0.1, 0.1, 0.1], 1e8, 6.0)
    b = _cat([10.01 + 1e-4 / 3600, 10.0], [2.0 * 10 ** -0.7, 10 ** -0.5], [0.05, 0.05], 1e9, 5.0)
    t = spectral_indices([a, b])
    assert t.meta["radius_arcsec"] == 3.0 and t.meta["frequencies_hz"] == [1e8, 1e9]
    assert list(t["id"]) == [1, 2] and list(t["n_freq"]) == [2, 2]  # the third: no partner
    np.testing.assert_allclose(t["alpha"], [-0.5, -0.7], atol=1e-12)
    want = math.sqrt(0.1**2 + (0.05 / 10 ** -0.5) ** 2) / math.log(10.0)
    assert t["alpha_err"][0] == pytest.approx(want)
    assert t["sep_2"][1] == pytest.approx(1e-4, rel=1e-3) and t["sep_2"].unit == "arcsec"
    assert "2 of 3 sources matched" in format_spectral_summary(t)


def test_three_frequencies_are_a_weighted_fit():
    f = np.array([1.4e8, 6e8, 1.4e9])
    s = np.array([1.0, 0.4, 0.25])
    e = np.array([0.05, 0.02, 0.03])
    tabs = [_cat([10.0], [s[k]], [e[k]]) for k in range(3)]
    t = spectral_indices(tabs, list(f), radius_arcsec=1.0)
    x, y, w = np.log(f), np.log(s), (s / e) ** 2
    slope = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
    assert t["alpha"][0] == pytest.approx(slope, rel=1e-10) and t["n_freq"][0] == 3
    xm = np.sum(w * x) / np.sum(w)
    assert t["alpha_err"][0] == pytest.approx(1 / math.sqrt(np.sum(w * (x - xm) ** 2)))


def test_a_missing_error_fits_the_row_unweighted():
    f = [1.4e8, 6e8, 1.4e9]
    s = [1.0, 0.4, 0.25]
    tabs = [_cat([10.0], [s[k]], [0.05 if k else np.nan]) for k in range(3)]
    t = spectral_indices(tabs, f, radius_arcsec=1.0)
    assert t["alpha"][0] == pytest.approx(np.polyfit(np.log(f), np.log(s), 1)[0], rel=1e-10)
    assert np.isnan(t["alpha_err"][0])


def test_refusals():
    a, b = _cat([10.0], [1.0], [0.1]), _cat([10.0], [0.5], [0.1])
    with pytest.raises(ValueError, match="two catalogues"):
        spectral_indices([a])
    with pytest.raises(CatalogueError, match="frequency_hz"):
        spectral_indices([a, b], radius_arcsec=1.0)
    with pytest.raises(ValueError, match="two frequencies"):
        spectral_indices([a, b], [1e8, 1e8], radius_arcsec=1.0)
    with pytest.raises(ValueError, match="one per catalogue"):
        spectral_indices([a, b], [1e8], radius_arcsec=1.0)
    with pytest.raises(ValueError, match="radius_arcsec"):
        spectral_indices([a, b], [1e8, 1e9])
    with pytest.raises(CatalogueError, match="flux"):
        spectral_indices([a, Table({"ra": [10.0], "dec": [0.0]})], [1e8, 1e9], radius_arcsec=1)


def test_the_simulator_draws_each_source_at_each_frequency():
    kw = dict(seed=3, spectral_index=(-0.7, 0.3), density=0.002)
    lo, hi = synthetic_field(64, freq_hz=1.44e8, **kw), synthetic_field(64, freq_hz=1.4e9, **kw)
    tl, th = truth_table(lo), truth_table(hi)
    np.testing.assert_array_equal(tl["x"], th["x"])
    np.testing.assert_array_equal(tl["alpha"], th["alpha"])
    np.testing.assert_allclose(th["flux"] / tl["flux"], (1.4e9 / 1.44e8) ** np.asarray(tl["alpha"]),
                               rtol=1e-6)
    assert lo.header["RESTFREQ"] == 1.44e8
    assert not np.allclose(lo.image, hi.image)  # other fluxes, other noise
    assert np.array_equal(synthetic_field(64, seed=3).image, synthetic_field(64, seed=3).image)
    for bad in ((-0.7,), (0.0, -1.0), "x"):
        with pytest.raises(ValueError, match="spectral_index"):
            synthetic_field(64, seed=3, spectral_index=bad)
    # spectra that turn over: log S a parabola in log nu, peaking where the truth says
    cur = {f: truth_table(synthetic_field(96, freq_hz=f, ref_freq_hz=1e9, peaked_fraction=0.5,
                                          **kw)) for f in (5e8, 1e9, 2e9)}
    b, a = np.asarray(cur[1e9]["beta"]), np.asarray(cur[1e9]["alpha"])
    assert (b < 0).sum() >= 3 and np.all((b == 0) | ((b >= -1.5) & (b <= -0.5)))
    x = np.log(2.0)
    np.testing.assert_allclose(np.asarray(cur[2e9]["flux"]) / np.asarray(cur[1e9]["flux"]),
                               np.exp(a * x + b * x * x), rtol=1e-6)
    with pytest.raises(ValueError, match="peaked_fraction"):
        synthetic_field(64, seed=3, peaked_fraction=0.5)  # (no spectral index)


def test_simulate_predict_and_spectral_index_end_to_end(tmp_path, tiny_model, capsys):
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import write_fits

    cats = []
    for mhz in (144, 1400):  # bright sources, as the tiny model finds them (conftest's field)
        img, cat = tmp_path / f"f{mhz}.fits", tmp_path / f"c{mhz}.ecsv"
        f = synthetic_field(96, seed=7, nan_border=6, density=0.004, snr_range=(20.0, 3000.0),
                            freq_hz=mhz * 1e6, spectral_index=(-0.5, 0.2))
        write_fits(img, f)
        write_catalogue(truth_table(f), tmp_path / f"t{mhz}.ecsv")
        assert main(["predict", "--model", tiny_model, "--image", str(img), "--out", str(cat),
                     "--quiet"]) == 0
        cats.append(str(cat))
    assert main(["simulate", "--out", str(tmp_path / "s.fits"), "--size", "64",
                 "--freq-mhz", "1400", "--spectral-index=-0.5,0.2"]) == 0
    assert "at 1400 MHz" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(tmp_path / "s.fits"), "--size", "64",
              "--spectral-index=-0.5"])
    assert "MEAN,STD" in capsys.readouterr().err
    assert read_catalogue(cats[0]).meta["frequency_hz"] == pytest.approx(1.44e8)
    out, fig = tmp_path / "alpha.ecsv", tmp_path / "alpha.png"
    assert main(["spectral-index", "--catalogue", cats[0], "--catalogue", cats[1],
                 "--out", str(out), "--figure", str(fig)]) == 0
    text = capsys.readouterr().out
    assert "sources matched" in text and fig.stat().st_size > 10_000
    t = read_catalogue(str(out))
    truth = read_catalogue(str(tmp_path / "t144.ecsv"))
    assert len(t) >= 3, len(t)
    for r in t:  # each matched source's alpha against its true one, within 5 sigma (+0.05)
        k = np.argmin(np.hypot(truth["ra"] - r["ra"], truth["dec"] - r["dec"]))
        assert abs(r["alpha"] - truth["alpha"][k]) < 5 * r["alpha_err"] + 0.05
    # limits from the 1400 MHz image for the 144 MHz sources it does not hold: 5 x its rms
    # (1e-5 Jy/beam, as estimated) over the 144 MHz flux, as an upper limit on alpha
    assert main(["spectral-index", "--catalogue", cats[0], "--catalogue", cats[1],
                 "--limits-from", str(tmp_path / "f1400.fits"), "--out", str(out),
                 "--as-points"]) == 0
    t = read_catalogue(str(out))
    lim = t[t["limit"] == "<"]
    assert len(lim) >= 1 and np.all(lim["n_freq"] == 1) and np.all(np.isnan(lim["alpha"]))
    implied = lim["flux_1"] * (1400 / 144) ** np.asarray(lim["alpha_limit"])
    np.testing.assert_allclose(implied, 5e-5, rtol=0.3)
    assert t.meta["n_limits"] == len(lim) and "limits" in capsys.readouterr().out
    from cianna_jax.astro.spectral_index import flux_limits

    off = flux_limits(str(tmp_path / "f1400.fits"), np.array([100.0, 0.0]), np.array([0.0, -30.0]))
    assert np.isnan(off[0]) and off[1] == pytest.approx(5e-5, rel=0.3)
    # a source as wide as the beam (1.8"): twice the beam's area, twice the flux to be seen
    wide = flux_limits(str(tmp_path / "f1400.fits"), np.array([0.0, 0.0]),
                       np.array([-30.0, -30.0]), shapes=(np.array([1.8, 0.0]),
                                                         np.array([1.8, 0.0]), np.zeros(2)))
    assert wide[0] == pytest.approx(2 * wide[1], rel=1e-3) and wide[1] == off[1]
    from astropy.io import fits

    with fits.open(tmp_path / "f1400.fits") as h:  # without a beam: the point's limit
        hd = h[0].header.copy()
        for key in ("BMAJ", "BMIN", "BPA"):
            hd.remove(key, ignore_missing=True)
        fits.PrimaryHDU(h[0].data, hd).writeto(tmp_path / "nobeam.fits")
    with pytest.warns(UserWarning, match="no beam in the header"):
        bare = flux_limits(str(tmp_path / "nobeam.fits"), np.array([0.0]), np.array([-30.0]),
                           shapes=(np.array([1.8]), np.array([1.8]), np.zeros(1)))
    assert bare[0] == pytest.approx(off[1], rel=1e-6)
    assert main(["spectral-index", "--catalogue", cats[0], "--catalogue", cats[1],
                 "--catalogue", cats[1], "--limits-from", str(tmp_path / "f1400.fits"),
                 "--out", str(out)]) == 2
    assert main(["spectral-index", "--catalogue", cats[0], "--out", str(out)]) == 2
    assert main(["spectral-index", "--catalogue", cats[0], "--catalogue", cats[1],
                 "--freq-mhz", "144", "--out", str(out)]) == 2
    assert "one per --catalogue" in capsys.readouterr().err
