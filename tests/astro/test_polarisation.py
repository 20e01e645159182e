"""Polarisation from Stokes Q, U images: the simulator's polarised sky, the fractions and
angles recovered within their errors, the command lines and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError, read_catalogue  # noqa: E402
from cianna_jax.astro.polarisation import polarisation  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

KW = dict(seed=8, density=0.002, snr_range=(300.0, 3000.0), extended_fraction=0.0,
          pol_fraction=(0.1, 0.03))


@pytest.fixture(scope="module")
def stokes(tmp_path_factory):
    """I, Q, U images of one polarised sky (256x256, bright point sources), their paths
    and the truths."""
    d = tmp_path_factory.mktemp("pol")
    out = {}
    for s in ("I", "Q", "U", "V"):
        f = synthetic_field(256, stokes=s, **KW)
        write_fits(d / f"{s}.fits", f)
        out[s] = (str(d / f"{s}.fits"), truth_table(f))
    return out


def test_the_simulator_polarises_each_source(stokes):
    ti, tq, tu = stokes["I"][1], stokes["Q"][1], stokes["U"][1]
    np.testing.assert_array_equal(tq["x"], ti["x"])
    np.testing.assert_array_equal(tq["pol_frac"], tu["pol_frac"])
    chi = np.radians(np.asarray(tq["evpa"]))
    np.testing.assert_allclose(tq["flux"], ti["flux"] * tq["pol_frac"] * np.cos(2 * chi),
                               rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(tu["flux"], ti["flux"] * tq["pol_frac"] * np.sin(2 * chi),
                               rtol=1e-6, atol=1e-12)
    assert "pol_frac" not in ti.colnames
    with pytest.raises(ValueError, match="stokes"):
        synthetic_field(64, stokes="X")


def test_fractions_and_angles_within_their_errors(stokes):
    truth = stokes["I"][1]
    t = polarisation(truth, stokes["Q"][0], stokes["U"][0], stokes["V"][0])
    pol = np.asarray(t["polarised"])
    assert pol.sum() >= 5 and t.meta["n_polarised"] == pol.sum()
    tq = stokes["Q"][1]
    d_ang = (np.asarray(t["evpa"]) - np.asarray(tq["evpa"]) + 90.0) % 180.0 - 90.0
    assert np.all(np.abs(d_ang[pol]) < 5 * np.asarray(t["evpa_err"])[pol] + 0.5)
    d_frac = np.asarray(t["pol_frac"]) - np.asarray(tq["pol_frac"])
    assert np.all(np.abs(d_frac[pol]) < 5 * np.asarray(t["pol_frac_err"])[pol] + 0.005)
    assert np.all(np.abs(np.asarray(t["v_flux"]) / np.asarray(t["v_flux_err"])) < 5)
    assert t["evpa"].unit == "deg" and t["pol_flux"].unit == "Jy"
    assert np.all(np.asarray(t["pol_frac_limit"]) > 0)


def test_refusals(stokes):
    truth = stokes["I"][1]
    with pytest.raises(ValueError, match="detect_sigma"):
        polarisation(truth, stokes["Q"][0], stokes["U"][0], detect_sigma=0)
    truth2 = truth.copy()
    truth2.remove_column("flux")
    with pytest.raises(CatalogueError, match="flux"):
        polarisation(truth2, stokes["Q"][0], stokes["U"][0])


def test_the_command_lines(stokes, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.catalogue import write_catalogue

    cat = tmp_path / "cat.ecsv"
    write_catalogue(stokes["I"][1], cat)
    out, fig = tmp_path / "pol.ecsv", tmp_path / "pol.png"
    assert main(["polarisation", "--catalogue", str(cat), "--q", stokes["Q"][0], "--u",
                 stokes["U"][0], "--out", str(out), "--figure", str(fig)]) == 0
    assert "sources polarised" in capsys.readouterr().out and fig.stat().st_size > 10_000
    assert len(read_catalogue(str(out))) == len(stokes["I"][1])
    assert main(["polarisation", "--catalogue", str(cat), "--q", str(tmp_path / "none.fits"),
                 "--u", stokes["U"][0], "--out", str(out)]) == 2
    assert "no such image file" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "q.fits"), "--size", "64", "--stokes", "Q",
                 "--truth", str(tmp_path / "q.ecsv")]) == 0
    assert "pol_frac" in read_catalogue(str(tmp_path / "q.ecsv")).colnames


def test_one_stokes_cube_gives_the_same(stokes, tmp_path):
    """CASA's layout: one file with a STOKES axis of four planes (I, Q, U, V); each is read
    as the Stokes parameter asked for, the same numbers as the separate images."""
    from astropy.io import fits

    from cianna_jax.astro.fits_image import ImageError, open_image

    planes = [fits.getdata(stokes[s][0]) for s in ("I", "Q", "U", "V")]
    header = fits.getheader(stokes["I"][0])
    header["CTYPE3"], header["CRVAL3"], header["CDELT3"], header["CRPIX3"] = \
        "STOKES", 1.0, 1.0, 1.0
    fits.writeto(tmp_path / "iquv.fits", np.stack(planes).astype(np.float32), header)
    cube = str(tmp_path / "iquv.fits")
    truth = stokes["I"][1]
    a = polarisation(truth, cube, cube, cube)
    b = polarisation(truth, stokes["Q"][0], stokes["U"][0], stokes["V"][0])
    for name in ("q_flux", "u_flux", "pol_flux", "evpa", "v_flux"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-12)
    iv = header.copy()
    iv["CDELT3"] = 3.0  # I and V only
    fits.writeto(tmp_path / "iv.fits", np.stack([planes[0], planes[3]]).astype(np.float32), iv)
    with pytest.raises(ImageError, match="no Stokes Q plane"):
        open_image(str(tmp_path / "iv.fits"), stokes="Q")
    with pytest.raises(ValueError, match="stokes"):
        open_image(cube, stokes="P")


def test_resolved_sources_polarised_whole(tmp_path):
    """Extended polarised sources: forced with their deconvolved shapes (the catalogue's
    resolved rows) Q and U are whole, so the fractions come back; as points they fall
    short."""
    kw = dict(KW, density=0.0008, snr_range=(3000.0, 30000.0), extended_fraction=1.0,
              extended_size_range=(4.0, 8.0), pol_fraction=(0.3, 0.05))
    paths = {}
    for s in ("I", "Q", "U"):
        f = synthetic_field(192, stokes=s, psf_fwhm=5.0, **kw)
        paths[s] = str(tmp_path / f"{s}.fits")
        write_fits(paths[s], f)
        if s == "I":
            truth = truth_table(f)
        elif s == "Q":
            frac = np.asarray(truth_table(f)["pol_frac"])
    truth["resolved"] = np.asarray(truth["bmaj_deconv"]) > 0
    assert truth["resolved"].sum() >= 10
    whole = polarisation(truth, paths["Q"], paths["U"])
    points = polarisation(truth, paths["Q"], paths["U"], as_points=True)
    bright = np.asarray(whole["pol_snr"]) > 10
    assert bright.sum() >= 5
    ratio = np.asarray(whole["pol_frac"])[bright] / frac[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert np.median(np.asarray(points["pol_frac"])[bright] / frac[bright]) < 0.85
