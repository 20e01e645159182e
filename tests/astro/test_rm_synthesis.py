"""RM synthesis: rotation measures, angles and polarised fluxes recovered from simulated
spectra within their errors, from Stokes Q and U cubes end to end, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.fits_image import ImageError  # noqa: E402
from cianna_jax.astro.rm_synthesis import C_M_S, rm_synthesis, rm_table  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, write_fits, write_stokes_cube  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

FREQS = np.linspace(800e6, 1088e6, 48)


def test_spectra_give_their_rotation_measures():
    rng = np.random.default_rng(0)
    n = 200
    rm, chi, p = rng.normal(20, 60, n), rng.uniform(0, np.pi, n), 0.01
    lam2 = (C_M_S / FREQS) ** 2
    turn = 2 * (chi[:, None] + rm[:, None] * lam2[None, :])
    noise = 1e-3
    q = p * np.cos(turn) + rng.normal(0, noise, turn.shape)
    u = p * np.sin(turn) + rng.normal(0, noise, turn.shape)
    err = np.full(q.shape, noise)
    r = rm_synthesis(q, u, err, err, FREQS)
    assert r["rmsf_fwhm"] == pytest.approx(2 * np.sqrt(3) / (lam2.max() - lam2.min()))
    pull = (r["rm"] - rm) / r["rm_err"]
    assert abs(np.median(pull)) < 0.2 and 0.7 < np.std(pull) < 1.3
    assert np.median(r["pol_flux"]) == pytest.approx(p, rel=0.03)
    assert np.median(r["pol_flux_err"]) == pytest.approx(noise / np.sqrt(len(FREQS)), rel=0.05)
    dchi = (r["chi0"] - np.degrees(chi) + 90) % 180 - 90
    assert abs(np.median(dchi)) < 1.0 and np.std(dchi) < 5.0
    with pytest.raises(ValueError, match="different frequencies"):
        rm_synthesis(q[:, :2], u[:, :2], err[:, :2], err[:, :2], np.array([1e9, 1e9]))


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    d = tmp_path_factory.mktemp("rm")
    kw = dict(seed=9, density=0.002, snr_range=(300.0, 3000.0), extended_fraction=0.0,
              pol_fraction=(0.1, 0.02), rm=(10.0, 50.0))
    freqs = np.linspace(800e6, 1088e6, 12)
    truth = write_stokes_cube(d / "q.fits", 128, freqs, stokes="Q", **kw)
    write_stokes_cube(d / "u.fits", 128, freqs, stokes="U", **kw)
    write_stokes_cube(d / "u_other.fits", 128, freqs[:8], stokes="U", **kw)
    write_fits(d / "i.fits", synthetic_field(128, seed=9, density=0.002))
    return d, truth


def test_cubes_give_the_truth_within_the_errors(cubes):
    d, truth = cubes
    t = rm_table(truth, str(d / "q.fits"), str(d / "u.fits"))
    det = np.asarray(t["rm_detected"])
    assert det.sum() >= 3 and t.meta["n_detected"] == det.sum()
    # (a source within 1.5 beams of the edge has its stamp cut: left out here)
    inside = np.all([(np.asarray(truth[c]) > 8) & (np.asarray(truth[c]) < 120)
                     for c in ("x", "y")], axis=0)
    sel = det & inside
    assert sel.sum() >= 3
    pull = np.asarray((t["rm"] - truth["rm"]) / t["rm_err"])[sel]
    assert np.all(np.abs(pull) < 5) and np.median(np.abs(pull)) < 1.5
    assert t["rm"].unit == "rad / m2" and len(t.meta["frequencies_hz"]) == 12
    # the same channels as separate images (each at its header's frequency): the same
    from astropy.io import fits

    split = {}
    for s in ("q", "u"):
        with fits.open(d / f"{s}.fits") as h:
            split[s] = []
            for k in range(h[0].data.shape[0]):
                hk = h[0].header.copy()
                hk["CRVAL3"] = h[0].header["CRVAL3"] + k * h[0].header["CDELT3"]
                split[s].append(str(d / f"{s}_{k}.fits"))
                fits.PrimaryHDU(h[0].data[k:k + 1], hk).writeto(split[s][-1], overwrite=True)
    ts = rm_table(truth, split["q"], split["u"])
    np.testing.assert_allclose(ts["rm"], t["rm"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ImageError, match="share their channels"):
        rm_table(truth, str(d / "q.fits"), str(d / "u_other.fits"))
    with pytest.raises(ImageError, match="frequency axis"):
        rm_table(truth, str(d / "i.fits"), str(d / "u.fits"))
    with pytest.raises(ValueError, match="detect_sigma"):
        rm_table(truth, str(d / "q.fits"), str(d / "u.fits"), detect_sigma=-1)


def test_the_command_line(cubes, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue

    d, truth = cubes
    write_catalogue(truth, tmp_path / "cat.ecsv")
    out, fig = tmp_path / "rm.ecsv", tmp_path / "rm.png"
    assert main(["rm-synthesis", "--catalogue", str(tmp_path / "cat.ecsv"), "--q",
                 str(d / "q.fits"), "--u", str(d / "u.fits"), "--out", str(out),
                 "--figure", str(fig)]) == 0
    assert "with a rotation measure" in capsys.readouterr().out
    assert fig.stat().st_size > 10_000 and len(read_catalogue(str(out))) == len(truth)
    with pytest.raises(ValueError, match="freqs_hz"):
        write_stokes_cube(tmp_path / "x.fits", 32, [1e9, 1.1e9, 1.3e9])


def test_the_clean_table_and_command_line(cubes, tmp_path, capsys):
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue

    d, truth = cubes
    write_catalogue(truth, tmp_path / "cat.ecsv")
    out = tmp_path / "rm.ecsv"
    assert main(["rm-synthesis", "--catalogue", str(tmp_path / "cat.ecsv"), "--q",
                 str(d / "q.fits"), "--u", str(d / "u.fits"), "--out", str(out),
                 "--clean"]) == 0
    assert "Faraday complex (RM-CLEAN)" in capsys.readouterr().out
    t = read_catalogue(out)
    for c in ("n_faraday", "faraday_complex", "rm_second", "pol_flux_second"):
        assert c in t.colnames
    bright = np.asarray(t["pol_snr"]) > 20  # one component each, as simulated
    assert bright.sum() >= 2 and not np.any(np.asarray(t["faraday_complex"])[bright])
    assert "rm_clean" in t.meta
