"""Residual and model images: the drawn Gaussians, the written FITS files (strips, header),
the fitted sources removed to the noise, and the CLI's checks."""

from __future__ import annotations

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.astro.measure import FWHM, Measurements, measure_sources  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402
from cianna_jax.astro.pipeline import find_sources, predict_file  # noqa: E402
from cianna_jax.astro.residual import draw_gaussians, residual_view, write_residual  # noqa: E402
from cianna_jax.cli import main  # noqa: E402
from cianna_jax.datasets.radio_sky import boxes_from_catalogue  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")


def _measurements(x, y, peak, smaj, smin, theta, fit_ok):
    n = len(x)
    f = np.asarray
    return Measurements(x=f(x, float), y=f(y, float), peak=f(peak, float), flux=np.ones(n),
                        flux_err=np.ones(n), rms=np.ones(n), snr=np.ones(n),
                        sigma_major=f(smaj, float), sigma_minor=f(smin, float),
                        theta=f(theta, float), fit_ok=f(fit_ok, bool))


def test_drawn_gaussians_are_the_fitted_model():
    """Each fitted Gaussian drawn at its pixels (to 5 sigmas), rows drawn in any strips;
    box-measured sources are not drawn."""
    m = _measurements([10.3, 30.0, 20.0], [12.6, 25.0, 5.0], [2.0, 1.0, 9.0],
                      [3.0, 1.5, 2.0], [1.5, 1.5, 2.0], [0.6, 0.0, 0.0], [True, True, False])
    img = draw_gaussians((40, 48), m)
    gy, gx = np.mgrid[0:40, 0:48].astype(float)
    want = np.zeros((40, 48))
    for k in (0, 1):
        dx, dy = gx - m.x[k], gy - m.y[k]
        c, s = np.cos(m.theta[k]), np.sin(m.theta[k])
        u, v = dx * c + dy * s, -dx * s + dy * c
        g = m.peak[k] * np.exp(-0.5 * (u**2 / m.sigma_major[k] ** 2 + v**2 / m.sigma_minor[k] ** 2))
        inside = (np.abs(gx - np.floor(m.x[k] + 0.5)) <= np.ceil(5 * m.sigma_major[k])) & \
                 (np.abs(gy - np.floor(m.y[k] + 0.5)) <= np.ceil(5 * m.sigma_major[k]))
        want += np.where(inside, g, 0.0)
    np.testing.assert_allclose(img, want, atol=1e-12)
    strips = np.concatenate([draw_gaussians((40, 48), m, rows=slice(r, min(r + 7, 40)))
                             for r in range(0, 40, 7)])
    np.testing.assert_array_equal(strips, img)


def test_residual_of_a_field_is_its_noise(tmp_path, field):
    """Measured at its true sources, a synthetic field's residual has the noise's rms and no
    source left (every fitted source's residual peak within 5 rms); model + residual is the
    image; the file keeps the WCS, beam and unit; strips of 7 rows write the same bytes."""
    path, _, f = field
    with open_image(path) as im:
        noise = estimate_noise_map(im.read, im.shape, box=32)
        c = f.catalogue
        boxes = boxes_from_catalogue(c)
        bs = 3.0 / FWHM
        m = measure_sources(im.read, im.shape, boxes, noise, beam_area=2 * np.pi * bs**2,
                            beam_sigma=bs)
        write_residual(im, m, tmp_path / "r.fits")
        write_residual(im, m, tmp_path / "r7.fits", rows=7)
        write_residual(im, m, tmp_path / "m.fits", kind="model")
        img = im.read()
        header = im.header
        view = residual_view(im, m, 3, rows=10)
    r, mo = fits.getdata(tmp_path / "r.fits"), fits.getdata(tmp_path / "m.fits")
    np.testing.assert_array_equal(view, r[::3, ::3])      # the report's decimated residual
    assert (tmp_path / "r.fits").read_bytes() == (tmp_path / "r7.fits").read_bytes()
    np.testing.assert_allclose(mo + r, img, atol=1e-6 * np.nanmax(np.abs(img)))
    rms = noise.median_rms
    assert np.nanstd(r) < 1.1 * rms < np.nanstd(img)
    ok = np.flatnonzero(m.fit_ok & (m.snr > 20))
    assert ok.size >= 3
    for k in ok:
        yc, xc = int(round(m.y[k])), int(round(m.x[k]))
        assert np.nanmax(np.abs(r[yc - 2:yc + 3, xc - 2:xc + 3])) < 5 * rms
    h = fits.getheader(tmp_path / "r.fits")
    assert h["NAXIS1"] == img.shape[1] and h["BUNIT"] == header["BUNIT"]
    assert h["BMAJ"] == pytest.approx(header["BMAJ"]) and h["CTYPE1"].startswith("RA---")
    assert "minus the fitted Gaussians" in str(h["HISTORY"])


def test_cli_writes_residual_and_model_and_refuses_bad_paths(tmp_path, field, tiny_model):
    path = field[0]
    r, mo = tmp_path / "r.fits", tmp_path / "m.fits"
    assert main(["predict", "--model", tiny_model, "--image", path, "--out",
                 str(tmp_path / "c.ecsv"), "--residual", str(r), "--model-image", str(mo),
                 "--quiet"]) == 0
    with open_image(path) as im:
        np.testing.assert_allclose(fits.getdata(r) + fits.getdata(mo), im.read(), atol=1e-6)
        res = find_sources(im, tiny_model, progress=False)
        empty = find_sources(im, tiny_model, progress=False, obj_threshold=0.99999)
    assert len(empty.table) == 0 and empty.table.colnames == res.table.colnames  # one schema
    # the measurements and detections are in the catalogue's row order
    np.testing.assert_array_equal(res.table["x"], res.measurements.x)
    np.testing.assert_array_equal(res.table["objectness"], res.detections.boxes.objectness)
    out = tmp_path / "x.ecsv"
    with pytest.raises(ValueError, match="is the input image"):
        predict_file(path, tiny_model, out, residual=path)
    with pytest.raises(ValueError, match="one image at a time"):
        predict_file([path, path], tiny_model, out, residual=tmp_path / "a.fits")
    with pytest.raises(ValueError, match="a FITS file name"):
        predict_file(path, tiny_model, out, model_image=tmp_path / "a.png")
    with pytest.raises(ValueError, match="the same file given for both"):
        predict_file(path, tiny_model, out, residual=r, model_image=r)
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        predict_file(path, tiny_model, out, residual=tmp_path / "no" / "a.fits")
    cube = tmp_path / "cube.fits"
    fits.writeto(cube, np.zeros((3, 16, 16), np.float32))
    with pytest.warns(UserWarning), pytest.raises(ImageError, match="drawn for 2D images"):
        predict_file(cube, tiny_model, out, residual=tmp_path / "a.fits")
    assert not out.exists() and not (tmp_path / "a.fits").exists()


def test_rms_and_background_maps_are_the_noise_map_at_every_pixel(tmp_path, field, tiny_model,
                                                                   capsys):
    """--rms-map/--background-map: the noise map the sources were found with, at every
    pixel, NaN where the image has no data, near the field's true noise; strips write the
    same bytes; the file keeps the WCS and unit; bad paths refused as for the residual."""
    from cianna_jax.astro.residual import write_noise_map

    path, _, f = field
    rms, bkg = tmp_path / "rms.fits", tmp_path / "bkg.fits"
    assert main(["predict", "--model", tiny_model, "--image", path, "--out",
                 str(tmp_path / "c.ecsv"), "--rms-map", str(rms), "--background-map", str(bkg),
                 "--quiet"]) == 0
    assert f"rms map -> {rms}" in capsys.readouterr().out
    with open_image(path) as im:
        img = im.read()
        noise = find_sources(im, tiny_model, progress=False, fit=False).noise
        write_noise_map(im, noise, tmp_path / "rms7.fits", rows=7)
        header = im.header
    r, b = fits.getdata(rms), fits.getdata(bkg)
    ok = np.isfinite(img)
    assert r.shape == img.shape and (~ok).any()          # the field's blank border
    np.testing.assert_array_equal(np.isnan(r), ~ok)
    np.testing.assert_array_equal(np.isnan(b), ~ok)
    everywhere = (slice(None), slice(None))
    np.testing.assert_allclose(r[ok], noise.window(*everywhere)[ok], rtol=1e-6)
    np.testing.assert_allclose(b[ok], noise.window(*everywhere, "background")[ok], rtol=1e-5,
                               atol=1e-6 * noise.median_rms)
    yy, xx = np.nonzero(ok)
    assert np.median(r[ok] / f.noise_at(xx, yy)) == pytest.approx(1.0, abs=0.2)
    assert abs(np.median(b[ok])) < 0.2 * noise.median_rms
    assert rms.read_bytes() == (tmp_path / "rms7.fits").read_bytes()
    h = fits.getheader(rms)
    assert h["BUNIT"] == header["BUNIT"] and h["CTYPE1"].startswith("RA---")
    assert "local noise rms" in str(h["HISTORY"])
    out = tmp_path / "x.ecsv"
    with pytest.raises(ValueError, match="rms_map: .* is the input image"):
        predict_file(path, tiny_model, out, rms_map=path)
    with pytest.raises(ValueError, match="residual and rms_map: the same file given for both"):
        predict_file(path, tiny_model, out, residual=rms, rms_map=rms)
    with pytest.raises(ValueError, match="written for one image at a time"):
        predict_file([path, path], tiny_model, out, background_map=tmp_path / "b.fits")
    assert not out.exists()


def test_written_images_carry_the_frequency(tmp_path):
    """Images written beside a catalogue keep the frequency of the image (a FREQ axis, the
    plane's of a cube, or a FREQ keyword) and its rest frequency: PyBDSF refuses an image
    without one."""
    from cianna_jax.astro.residual import image_frequency

    data = np.zeros((3, 8, 8), np.float32)
    h = fits.Header({"CTYPE3": "FREQ", "CRVAL3": 950.0, "CDELT3": 0.03, "CRPIX3": 1.0,
                     "CUNIT3": "MHz", "RESTFRQ": 1.420405752e9})
    fits.PrimaryHDU(data, header=h).writeto(tmp_path / "c.fits")
    with pytest.warns(UserWarning), open_image(tmp_path / "c.fits", plane=2) as img:
        assert image_frequency(img) == pytest.approx(950.06e6)
        path = write_residual(img, _measurements([], [], [], [], [], [], []),
                              tmp_path / "r.fits")
    written = fits.getheader(path)
    assert written["FREQ"] == pytest.approx(950.06e6) and written["RESTFRQ"] == 1.420405752e9
    fits.PrimaryHDU(data[0], header=fits.Header({"FREQ": 1.4e9})).writeto(tmp_path / "k.fits")
    fits.PrimaryHDU(data[0]).writeto(tmp_path / "none.fits")
    with pytest.warns(UserWarning), open_image(tmp_path / "k.fits") as a, \
            open_image(tmp_path / "none.fits") as b:
        assert image_frequency(a) == 1.4e9 and image_frequency(b) is None
