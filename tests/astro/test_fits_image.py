"""Opening FITS images: 2D, SDC1 4D, memory mapping, WCS, beam, units, NaN, bad files."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.fits_image import ImageError, open_image, parse_bunit  # noqa: E402
from cianna_jax.astro.noise import clipped_stats, estimate_noise_map  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, write_fits  # noqa: E402


def test_open_2d_and_sdc1_layout_same_pixels(tmp_path):
    f2 = synthetic_field(64, seed=1, nan_border=4)
    f4 = synthetic_field(64, seed=1, nan_border=4, sdc1_layout=True)
    write_fits(tmp_path / "a.fits", f2)
    write_fits(tmp_path / "b.fits", f4)
    with open_image(tmp_path / "a.fits") as a, open_image(tmp_path / "b.fits") as b:
        assert a.shape == b.shape == (64, 64)
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.beam.bmaj == pytest.approx(1.8) and b.beam.bmin == pytest.approx(1.8)
        assert b.pixel_scale == pytest.approx(0.6)
        assert b.per == "beam" and b.unit_scale == 1.0
        assert b.beam_area_pixels() == pytest.approx(np.pi * 9 / (4 * np.log(2)))
        assert np.isnan(b.read((slice(0, 4), slice(None)))).all()
        ra, dec = b.wcs.pixel_to_world_values(31.5, 31.5)
        assert abs(dec + 30.0) < 1e-6 and min(ra % 360, 360 - ra % 360) < 1e-6
        # pixels stay in the file: the array is a view on the memory map, not a copy
        base = b.data
        while isinstance(getattr(base, "base", None), np.ndarray):
            base = base.base
        assert isinstance(base.base, mmap.mmap)


def test_no_wcs_warns_and_history_beam(tmp_path):
    h = fits.Header()
    h["BUNIT"] = "mJy/beam"
    h["HISTORY"] = "AIPS   CLEAN BMAJ=  5.0000E-04 BMIN=  4.0000E-04 BPA=  30.00"
    fits.PrimaryHDU(np.ones((8, 8), np.float32), h).writeto(tmp_path / "n.fits")
    with pytest.warns(UserWarning, match="no celestial WCS"):
        img = open_image(tmp_path / "n.fits")
    with img:
        assert img.wcs is None and img.pixel_scale is None
        assert img.unit_scale == pytest.approx(1e-3)
        assert img.beam.bmaj == pytest.approx(1.8) and img.beam.bpa == pytest.approx(30.0)


def test_scaled_integers_and_blank(tmp_path):
    data = np.array([[1, 2], [-32768, 4]], np.int16)
    hdu = fits.PrimaryHDU(data)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 0.5, 10.0, -32768
    hdu.header["BUNIT"] = "JY/BEAM"
    hdu.writeto(tmp_path / "i.fits")
    with pytest.warns(UserWarning), open_image(tmp_path / "i.fits") as img:
        v = img.read()
    np.testing.assert_allclose(v, [[10.5, 11.0], [np.nan, 12.0]])


@pytest.mark.parametrize("bunit, scale, per", [("JY/BEAM", 1.0, "beam"), ("uJy/beam", 1e-6, "beam"),
                                               ("Jy/pixel", 1.0, "pixel"), ("K", None, None)])
def test_parse_bunit(bunit, scale, per):
    assert parse_bunit(bunit) == (scale, per)


def test_bad_files_name_the_problem(tmp_path):
    (tmp_path / "x.fits").write_text("not a fits file at all")
    with pytest.raises(ImageError, match="not a readable FITS"):
        open_image(tmp_path / "x.fits")
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "t.fits")
    with pytest.raises(ImageError, match="no image HDU"):
        open_image(tmp_path / "t.fits")
    with pytest.raises(ImageError, match="HDU 1 is not an image"):
        open_image(tmp_path / "t.fits", hdu=1)
    with pytest.raises(ImageError, match="no HDU 5"):
        open_image(tmp_path / "t.fits", hdu=5)
    fits.PrimaryHDU(np.ones(10, np.float32)).writeto(tmp_path / "1d.fits")
    with pytest.raises(ImageError, match="need a 2D image or a 3D cube"):
        open_image(tmp_path / "1d.fits")
    fits.PrimaryHDU(np.ones((2, 3, 4, 5), np.float32)).writeto(tmp_path / "4d.fits")
    with pytest.raises(ImageError, match="4 non-degenerate axes"):
        open_image(tmp_path / "4d.fits")
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.fits")
    # cut short (an interrupted download): named, not numpy's "buffer is too small"
    f = synthetic_field(64, seed=1)
    write_fits(tmp_path / "whole.fits", f)
    raw = (tmp_path / "whole.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[:len(raw) // 2])
    with pytest.warns(UserWarning), pytest.raises(
            ImageError, match=r"cut.fits: HDU 0: its data cannot be read .* truncated or damaged"):
        open_image(tmp_path / "cut.fits")


def test_an_unusable_wcs_warns_once_and_leaves_pixel_positions(tmp_path):
    """A singular CD/PC matrix (CDELT1 = 0): wcslib refuses the WCS; the image still
    opens, positions in pixels, with one warning saying why."""
    f = synthetic_field(64, seed=1)
    f.header["CDELT1"] = 0.0
    write_fits(tmp_path / "w.fits", f)
    with pytest.warns(UserWarning) as record:
        img = open_image(tmp_path / "w.fits")
    with img:
        assert img.wcs is None and img.pixel_scale is None and img.beam is not None
        assert img.read().shape == (64, 64)
    wcs_warnings = [str(w.message) for w in record if "WCS" in str(w.message)]
    assert len(wcs_warnings) == 1
    assert "the header's WCS cannot be used (SingularMatrixError" in wcs_warnings[0]


def test_noise_map_local_nan_aware_and_all_nan():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1.0, (128, 128))
    img[:, 64:] *= 3.0
    img[:8] = np.nan
    img[40, 20] = 1e4  # a bright source does not bias the clipped rms
    nm = estimate_noise_map(lambda w: img[w], img.shape, box=32)
    assert nm.rms.shape == (4, 4) and np.isfinite(nm.rms).all()
    assert nm.at(np.array([60.0]), np.array([10.0]))[0] == pytest.approx(1.0, rel=0.15)
    assert nm.at(np.array([60.0]), np.array([120.0]))[0] == pytest.approx(3.0, rel=0.15)
    assert nm.window(slice(0, 10), slice(5, 9)).shape == (10, 4)
    assert clipped_stats(np.r_[rng.normal(0, 2, 4000), 1e6, 1e7])[1] == pytest.approx(2.0, rel=0.1)
    blank = np.full((64, 64), np.nan)
    with pytest.raises(ValueError, match="blank"):
        estimate_noise_map(lambda w: blank[w], blank.shape, box=32)
    # settings: named as settings, not blamed on the image as "blank"
    for kw, match in ((dict(box=0), "box: expected an int >= 1"),
                      (dict(min_valid=1.5), r"min_valid: expected a fraction in \[0, 1\]"),
                      (dict(clip=float("nan")), "clip: expected a finite number > 0"),
                      (dict(max_samples=0), "max_samples: expected an int >= 1")):
        with pytest.raises(ValueError, match=match):
            estimate_noise_map(lambda w: img[w], img.shape, **kw)
    with pytest.raises(ValueError, match=r"shape: expected an image \(H, W\) or a cube"):
        estimate_noise_map(lambda w: img[w], (128,))


def test_a_stokes_axis_gives_its_stokes_i_plane(tmp_path):
    """CASA-style (Stokes, Freq) axes with several Stokes planes: the Stokes I plane is
    the image (with a warning saying so); without one, an ImageError names what is there."""
    f = synthetic_field(32, seed=2)
    h = f.header.copy()
    h["NAXIS"] = 4
    for k, v in (("CTYPE3", "STOKES"), ("CRVAL3", 2.0), ("CDELT3", -1.0), ("CRPIX3", 1.0),
                 ("CTYPE4", "FREQ"), ("CRVAL4", 1.4e9), ("CDELT4", 1e6), ("CRPIX4", 1.0)):
        h[k] = v
    planes = np.stack([f.image * 0.1, f.image])[None]  # (Freq, Stokes Q then I, y, x)
    fits.PrimaryHDU(planes, h).writeto(tmp_path / "qi.fits")
    with pytest.warns(UserWarning, match="Stokes I, plane 2 of the 2 of its STOKES axis"):
        img = open_image(tmp_path / "qi.fits")
    with img:
        assert img.shape == (32, 32) and img.wcs is not None
        np.testing.assert_array_equal(img.read(), f.image)
    h["CRVAL3"] = 2.0
    h["CDELT3"] = 1.0  # Q, U
    fits.PrimaryHDU(planes, h).writeto(tmp_path / "qu.fits")
    with pytest.raises(ImageError, match=r"STOKES axis \(FITS axis 3\) holds Q, U, no Stokes I"):
        open_image(tmp_path / "qu.fits")


def test_plane_takes_one_plane_of_a_cube_as_a_2d_image(tmp_path):
    f = synthetic_field(32, seed=3)
    h = f.header.copy()
    h["NAXIS"] = 3
    for k, v in (("CTYPE3", "FREQ"), ("CRVAL3", 1.3e9), ("CDELT3", 1e8), ("CRPIX3", 1.0)):
        h[k] = v
    cube = np.stack([f.image * 2, f.image, f.image * 0.5])  # e.g. an MFS plane, then sub-bands
    fits.PrimaryHDU(cube, h).writeto(tmp_path / "c.fits")
    with open_image(tmp_path / "c.fits") as img:
        assert img.ndim == 3 and img.plane is None
    with open_image(tmp_path / "c.fits", plane=1) as img:
        assert img.shape == (32, 32) and img.plane == 1 and img.wcs is not None
        assert img.spectral_wcs is None
        np.testing.assert_array_equal(img.read(), f.image)
    for bad in (3, -1, True, 1.0):
        with pytest.raises(ImageError, match=r"plane: expected an int in \[0, 2\] \(the 3 planes"):
            open_image(tmp_path / "c.fits", plane=bad)
    write_fits(tmp_path / "flat.fits", f)
    with pytest.raises(ImageError, match="plane 0 given, but the image is 2D"):
        open_image(tmp_path / "flat.fits", plane=0)
