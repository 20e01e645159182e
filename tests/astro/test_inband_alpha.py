"""In-band spectral indices from a sub-band cube: the power-law fit's pulls and curvature,
a cube seen through a primary beam that narrows with frequency, the command line and the
refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import read_catalogue, write_catalogue  # noqa: E402
from cianna_jax.astro.fits_image import ImageError  # noqa: E402
from cianna_jax.astro.inband_alpha import (  # noqa: E402
    fit_power_law,
    inband_spectral_indices,
    turnovers,
)
from cianna_jax.astro.synthetic import truth_table, write_stokes_cube  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

FREQS = np.linspace(0.9e9, 1.6e9, 8)


@pytest.fixture(scope="module")
def subbands(tmp_path_factory):
    """An I cube of 8 sub-bands (128x128, bright sources of alpha N(-0.7, 0.3), 30%
    extended) seen through a Gaussian primary beam of FWHM 1.6' at 900 MHz narrowing as
    1 / frequency; its path and the truth (true fluxes at 900 MHz, alpha, pb there)."""
    d = tmp_path_factory.mktemp("inband")
    truth = write_stokes_cube(d / "i.fits", 128, FREQS, stokes="I", seed=3, density=0.003,
                              snr_range=(3000.0, 30000.0), spectral_index=(-0.7, 0.3),
                              pb_fwhm=1.6, ref_freq_hz=1.2e9)
    write_catalogue(truth, d / "truth.ecsv")
    return str(d / "i.fits"), truth, d


def test_the_fit_pulls_and_curvature():
    rng = np.random.default_rng(0)
    n, ref = 2000, float(np.exp(np.mean(np.log(FREQS))))
    alpha, s0 = rng.normal(-0.7, 0.3, n), 10 ** rng.uniform(-4, -2, n)
    sig = np.full((n, FREQS.size), 6e-5)
    x = np.log(FREQS / ref)
    for beta in (0.0, -0.8):
        true = s0[:, None] * np.exp(alpha[:, None] * x + beta * x * x)
        obs = true + rng.normal(size=true.shape) * sig
        r = fit_power_law(obs, sig, FREQS, ref, curvature=beta != 0)
        pull = (r["alpha"] - alpha) / r["alpha_err"]
        assert abs(np.median(pull)) < 0.1 and 0.9 < np.std(pull[s0 > 1e-3]) < 1.1
        assert np.median(r["chi2_red"]) == pytest.approx(1.0, abs=0.15)
        if beta:
            bright = s0 > 3e-3
            bp = (r["beta"][bright] - beta) / r["beta_err"][bright]
            assert abs(np.median(bp)) < 0.15 and 0.85 < np.std(bp) < 1.15
    # a power law fitted to a curved spectrum: chi2_red tells it
    curved = fit_power_law(obs, sig, FREQS, ref)
    bright = s0 > 3e-3
    assert np.median(curved["chi2_red"][bright]) > 3
    # the curved fits' turnovers: ref exp(-alpha / (2 beta)) where in the band and significant
    nu, peaked = turnovers(r, ref, FREQS[0], FREQS[-1])
    true_nu = ref * np.exp(-alpha / (2 * -0.8))
    inside = (true_nu > FREQS[0] * 1.1) & (true_nu < FREQS[-1] / 1.1) & bright
    assert inside.sum() > 50 and np.mean(peaked[inside]) > 0.9
    np.testing.assert_allclose(nu[inside & peaked], true_nu[inside & peaked], rtol=0.1)
    assert not peaked[(true_nu < FREQS[0] / 1.5) | (true_nu > FREQS[-1] * 1.5)].any()
    # too few planes, no positive flux: NaN
    few = fit_power_law(np.array([[1.0, np.nan, np.nan], [-1.0, -1.0, -1.0]]),
                        np.ones((2, 3)), FREQS[:3], 1e9)
    assert np.isnan(few["alpha"]).all() and list(few["n"]) == [1, 3]
    with pytest.raises(ValueError, match="planes"):
        fit_power_law(np.ones((2, 3)), np.ones((2, 3)), FREQS, 1e9)


def test_a_cube_through_a_beam_that_narrows(subbands):
    """Without the beam, the sources where the response is low look far steeper; with it,
    alpha comes back within its errors."""
    path, truth, _ = subbands
    plain = inband_spectral_indices(truth, path)
    fixed = inband_spectral_indices(truth, path, primary_beam="gaussian:1.6")
    a, true = np.asarray(truth["pb"]), np.asarray(truth["alpha"])
    assert len(fixed) == len(truth) >= 20 and fixed.meta["n_fitted"] == len(truth)
    pull = (np.asarray(fixed["alpha"]) - true) / np.asarray(fixed["alpha_err"])
    assert abs(np.median(pull)) < 0.6 and np.percentile(np.abs(pull), 90) < 3.5
    low = a < 0.6
    assert low.sum() >= 3
    assert np.all(np.asarray(plain["alpha"])[low] < true[low] - 1.0)
    np.testing.assert_allclose(np.asarray(fixed["alpha"])[low], true[low], atol=0.1)
    assert fixed.meta["frequencies_hz"] == pytest.approx(list(FREQS))
    assert fixed["plane_flux_8"].unit == "Jy" and "gaussian" in fixed.meta["primary_beam"]
    # the same planes as separate sub-band images (each its frequency in its header, as
    # WSClean writes them): the same spectra, the beam model's width at the first image's
    from astropy.io import fits

    images = []
    with fits.open(path) as h:
        for k, f in enumerate(FREQS):
            hk = h[0].header.copy()
            hk["CRVAL3"] = float(f)
            images.append(str(path).replace(".fits", f"_{k}.fits"))
            fits.PrimaryHDU(h[0].data[k:k + 1], hk).writeto(images[-1], overwrite=True)
    split = inband_spectral_indices(truth, images, primary_beam="gaussian:1.6")
    np.testing.assert_allclose(split["alpha"], fixed["alpha"], rtol=1e-6)
    np.testing.assert_allclose(split["plane_flux_3"], fixed["plane_flux_3"], rtol=1e-6)


def test_the_command_line_and_refusals(subbands, capsys):
    path, truth, d = subbands
    out = d / "alpha.ecsv"
    assert main(["spectral-index", "--catalogue", str(d / "truth.ecsv"), "--cube", path,
                 "--pb", "gaussian:1.6", "--curvature", "--out", str(out), "--figure",
                 str(d / "alpha.png")]) == 0
    text = capsys.readouterr().out
    assert "in-band spectral index (8 planes, 900-1600 MHz" in text
    t = read_catalogue(out)
    assert {"alpha", "alpha_err", "beta", "beta_err", "flux_ref", "chi2_red", "peaked",
            "peak_freq"} <= set(t.colnames)
    assert t.meta["n_peaked"] == np.count_nonzero(t["peaked"]) < 3  # (power laws simulated)
    assert (d / "alpha.png").stat().st_size > 10_000
    assert main(["spectral-index", "--catalogue", str(d / "truth.ecsv"), "--catalogue",
                 str(d / "truth.ecsv"), "--cube", path, "--out", str(out)]) != 0
    assert "one --catalogue" in capsys.readouterr().err
    assert main(["spectral-index", "--catalogue", str(d / "truth.ecsv"), "--catalogue",
                 str(d / "truth.ecsv"), "--curvature", "--out", str(out)]) != 0
    assert "--curvature: an option of --cube" in capsys.readouterr().err
    from astropy.io import fits

    with fits.open(path) as h:
        fits.PrimaryHDU(h[0].data[0], h[0].header).writeto(d / "plane.fits")
    with fits.open(path) as h:  # a flagged sub-band: blank, left out with a warning
        data = h[0].data.copy()
        data[2] = np.nan
        fits.PrimaryHDU(data, h[0].header).writeto(d / "flagged.fits")
    with pytest.warns(UserWarning, match=r"planes \[2\] \(0-based\) have no data"):
        t = inband_spectral_indices(truth, str(d / "flagged.fits"))
    assert np.all(np.isnan(t["plane_flux_3"])) and np.all(t["n_planes"] <= 7)
    assert np.isfinite(t["alpha"]).all()
    with pytest.raises(ImageError, match="in-band spectral index needs a cube"):
        inband_spectral_indices(truth, str(d / "plane.fits"))


def test_sub_bands_with_their_own_beams(tmp_path):
    """Sub-band planes whose restoring beam narrows as 1 / frequency (the header giving the
    first plane's): with CASA's BEAMS table each plane is measured with its own beam and
    alpha comes back; with the header's beam for all, it does not."""
    from astropy.io import fits

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.synthetic import synthetic_field

    freqs = np.linspace(0.9e9, 1.6e9, 4)
    kw = dict(seed=3, density=0.003, snr_range=(3000.0, 30000.0), extended_fraction=0.0,
              spectral_index=(-0.7, 0.3), ref_freq_hz=1.2e9)
    planes = [synthetic_field(128, freq_hz=float(f), psf_fwhm=4.0 * freqs[0] / f, **kw)
              for f in freqs]
    truth = truth_table(planes[0])
    h = planes[0].header.copy()
    h.pop("RESTFREQ", None)
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = (
        "FREQ", float(freqs[0]), float(freqs[1] - freqs[0]), 1.0, "Hz")
    cube = np.stack([p.image for p in planes]).astype(np.float32)
    beams = fits.BinTableHDU.from_columns(
        [fits.Column("BMAJ", "E", "arcsec", array=[p.beam.bmaj for p in planes]),
         fits.Column("BMIN", "E", "arcsec", array=[p.beam.bmin for p in planes]),
         fits.Column("BPA", "E", "deg", array=np.zeros(4)),
         fits.Column("CHAN", "J", array=np.arange(4)), fits.Column("POL", "J",
                                                                  array=np.zeros(4))],
        name="BEAMS")
    fits.HDUList([fits.PrimaryHDU(cube, h), beams]).writeto(tmp_path / "own.fits")
    fits.PrimaryHDU(cube, h).writeto(tmp_path / "one.fits")
    with open_image(tmp_path / "own.fits", plane=3) as p3:
        assert p3.beam.bmaj == pytest.approx(planes[3].beam.bmaj, rel=1e-5)
    with pytest.warns(UserWarning, match="beams .BEAMS table. vary"), \
            open_image(tmp_path / "own.fits") as whole:
        assert whole.beam.bmaj == pytest.approx(planes[0].beam.bmaj, rel=1e-5)  # the header's
    own = inband_spectral_indices(truth, str(tmp_path / "own.fits"))
    one = inband_spectral_indices(truth, str(tmp_path / "one.fits"))
    # the true spectra: the simulator's fluxes in each plane's Jy (its noise is per beam)
    f0, f3 = (np.asarray(truth_table(planes[k])["flux"]) for k in (0, 3))
    true = np.log(f3 / f0) / np.log(freqs[3] / freqs[0])
    d_own = np.asarray(own["alpha"]) - true
    d_one = np.asarray(one["alpha"]) - true
    assert abs(np.median(d_own)) < 0.03 and np.median(d_one) < -0.2
