"""Stacking (astro.stacking, ``cianna-jax stack``): a population of point sources each at
half the noise found in the stack at its flux, noise positions giving nothing, the
bootstrap errors against the noise's, the positions left out and why, the FITS written,
the command line and the errors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.astro.sky import pixel_to_sky  # noqa: E402
from cianna_jax.astro.stacking import stack_positions, write_stack  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, write_fits  # noqa: E402

RMS = 1e-5
AMP = 0.5 * RMS  # each source at half the noise


@pytest.fixture(scope="module")
def faint(tmp_path_factory):
    """A 512x512 field of beam-correlated noise (rms 10 uJy/beam, beam 3 pixels) with 600
    point sources of peak 5 uJy at known pixel positions, a blank corner; their (ra, dec)
    and noise positions' (ra, dec)."""
    f = synthetic_field(512, seed=3, density=1e-9)
    img = f.image.astype(np.float64)
    rng = np.random.default_rng(4)
    x, y = rng.uniform(25, 486, 600), rng.uniform(25, 486, 600)
    s = 3.0 / (2 * math.sqrt(2 * math.log(2)))
    yy, xx = np.mgrid[0:512, 0:512]
    for xi, yi in zip(x, y):
        win = (slice(int(yi) - 8, int(yi) + 9), slice(int(xi) - 8, int(xi) + 9))
        img[win] += AMP * np.exp(-((xx[win] - xi) ** 2 + (yy[win] - yi) ** 2) / (2 * s * s))
    img[:60, :60] = np.nan
    path = tmp_path_factory.mktemp("stack") / "faint.fits"
    write_fits(path, replace(f, image=img.astype(np.float32)))
    with open_image(path) as im:
        pos = pixel_to_sky(im.wcs, x, y)
        noise = pixel_to_sky(im.wcs, rng.uniform(25, 486, 600), rng.uniform(25, 486, 600))
    return path, pos, noise


def test_sources_at_half_the_noise_show_in_the_stack(faint):
    path, (ra, dec), _ = faint
    st = stack_positions(path, ra, dec, seed=1)
    assert st.n + st.skipped["blank pixels"] + st.skipped["off the image"] == 600
    assert st.n > 500
    # the centre (nearest-pixel cutouts: about 0.95 of the peak), with its bootstrap error
    assert abs(st.peak_mean - 0.95 * AMP) < 3 * st.peak_mean_err
    assert abs(st.peak_median - 0.95 * AMP) < 3 * st.peak_median_err
    assert st.peak_mean / st.peak_mean_err > 5
    # the error is the noise over the square root of the positions' number (the sources
    # add a little scatter of their own)
    assert 0.7 < st.peak_mean_err / (RMS / math.sqrt(st.n)) < 1.4
    assert abs(st.flux - AMP) < 3 * st.flux_err  # the fitted Gaussian: the flux density
    assert st.fwhm[0] == pytest.approx(1.8, rel=0.35)  # (the beam: 3 pixels of 0.6")
    assert st.rms_mean < 0.5 * st.peak_mean


def test_noise_positions_give_nothing(faint):
    path, _, (ra, dec) = faint
    st = stack_positions(path, ra, dec, seed=1)
    assert abs(st.peak_mean) < 3 * st.peak_mean_err
    assert abs(st.peak_median) < 3 * st.peak_median_err
    assert np.isnan(st.flux)  # (no fit to noise)


def test_positions_left_out_and_why(faint):
    path, (ra, dec), _ = faint
    ra = np.concatenate([ra[:100], [np.nan, float(ra[0]) + 1.0]])
    dec = np.concatenate([dec[:100], [0.0, float(dec[0])]])
    st = stack_positions(path, ra, dec, exclude=(ra[:10], dec[:10]))
    assert st.skipped["not finite"] == 1 and st.skipped["off the image"] >= 1
    assert st.skipped["near a detection"] >= 10
    assert st.n + sum(st.skipped.values()) == st.n_given == 102
    with pytest.warns(UserWarning, match="a random 50 of them"):
        few = stack_positions(path, ra, dec, max_positions=50)
    assert few.n <= 50 and few.skipped["beyond max_positions"] > 0
    from cianna_jax.astro.stacking import format_stack

    one = stack_positions(path, ra[50:51], dec[50:51])  # (no spread to bootstrap)
    assert one.n == 1 and one.peak_mean_err == 0 and "1 of 1 positions" in format_stack(one)


def test_the_fits_written_and_the_command_line(faint, tmp_path, capsys):
    from astropy.table import Table

    from cianna_jax.cli import main

    path, (ra, dec), _ = faint
    st = stack_positions(path, ra, dec)
    write_stack(st, tmp_path / "s.fits")
    with fits.open(tmp_path / "s.fits") as h:
        assert h[0].header["N_STACK"] == st.n and h[0].header["PEAK"] == pytest.approx(
            st.peak_mean, rel=1e-6)
        np.testing.assert_allclose(h["MEDIAN"].data, st.median, rtol=1e-6, atol=1e-12)
    Table({"ra": ra, "dec": dec}).write(tmp_path / "pos.ecsv")
    pytest.importorskip("matplotlib")
    assert main(["stack", "--image", str(path), "--positions", str(tmp_path / "pos.ecsv"),
                 "--out", str(tmp_path / "c.fits"), "--figure", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "positions stacked" in out and "mean stack: centre" in out
    assert (tmp_path / "c.png").stat().st_size > 10_000
    assert main(["stack", "--image", str(path), "--positions", str(tmp_path / "pos.ecsv"),
                 "--out", str(tmp_path / "c.ecsv")]) == 2
    assert "a FITS file" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")  # (headers without WCS, unit, beam)
def test_bad_inputs_are_refused(faint, tmp_path):
    path, (ra, dec), _ = faint
    fits.PrimaryHDU(np.zeros((2, 64, 64), np.float32)).writeto(tmp_path / "cube.fits")
    fits.PrimaryHDU(np.zeros((64, 64), np.float32)).writeto(tmp_path / "nowcs.fits")
    with pytest.raises(ImageError, match="a cube"):
        stack_positions(tmp_path / "cube.fits", ra, dec)
    with pytest.raises(ImageError, match="no celestial WCS"):
        stack_positions(tmp_path / "nowcs.fits", ra, dec)
    with pytest.raises(ValueError, match="no position to stack"):
        stack_positions(path, ra[:3] + 5.0, dec[:3])
    with pytest.raises(ValueError, match="half"):
        stack_positions(path, ra, dec, half=1)
    with pytest.raises(ValueError, match="one of each"):
        stack_positions(path, ra, dec[:3])
