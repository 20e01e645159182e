"""Cross-match and scores on hand-made catalogues; source measurement and sky angles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cianna_jax.astro.crossmatch import crossmatch_pixels, crossmatch_sky, match_radius
from cianna_jax.astro.gaussfit import fit_gaussians
from cianna_jax.astro.measure import FWHM, measure_sources
from cianna_jax.astro.noise import NoiseMap
from cianna_jax.astro.scores import pr_curve, score_catalogue


def test_crossmatch_one_to_one_known_answer():
    tx, ty = np.array([10.0, 50.0, 90.0]), np.array([10.0, 50.0, 90.0])
    # det 0 and 1 both near true 0 (1 closer); det 2 on true 1; det 3 too far from true 2
    dx, dy = np.array([11.0, 10.2, 50.0, 95.0]), np.array([10.0, 10.0, 51.0, 90.0])
    m = crossmatch_pixels(dx, dy, tx, ty, 3.0)
    np.testing.assert_array_equal(m.det_to_truth, [-1, 0, 1, -1])
    np.testing.assert_array_equal(m.truth_to_det, [1, 2, -1])
    np.testing.assert_allclose(m.separation, [0.2, 1.0])
    # radius per true source, scaled by its size: a big source 2 catches det 3
    m2 = crossmatch_pixels(dx, dy, tx, ty, match_radius(3.0, np.array([1.0, 1.0, 8.0])))
    assert m2.det_to_truth[3] == 2
    s = score_catalogue(m, truth_snr=np.array([20.0, 4.0, 8.0]), det_snr=np.array([3.5, 20, 4, 8]),
                        truth_flux=np.array([1.0, 2.0, 3.0]), det_flux=np.array([1, 1.1, 2.2, 3]),
                        det_pos=(dx, dy), truth_pos=(tx, ty), sky=False, snr_bins=(0, 5, 10, 50))
    assert (s.n_tp, s.n_fp, s.n_fn) == (2, 2, 1)
    assert s.precision == 0.5 and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # bins: true SNRs 4 | 8 | 20; detections binned by their match (20, 4) or own SNR (3.5, 8)
    np.testing.assert_array_equal(s.by_snr.n_truth, [1, 1, 1])
    np.testing.assert_array_equal(s.by_snr.n_truth_matched, [1, 0, 1])
    np.testing.assert_array_equal(s.by_snr.n_det, [2, 1, 1])
    np.testing.assert_allclose(s.by_snr.precision, [0.5, 0.0, 1.0])
    assert s.flux_ratio == pytest.approx(1.1)


def test_crossmatch_sky_agrees_with_pixels_near_the_pole_and_ra_wrap():
    ra_t, dec_t = np.array([359.9999, 10.0]), np.array([-30.0, 89.99])
    ra, dec = np.array([0.0001, 190.0]), np.array([-30.0, 89.9905])
    m = crossmatch_sky(ra, dec, ra_t, dec_t, 2.0)
    np.testing.assert_array_equal(m.det_to_truth, [0, -1])  # second pair: 70.2" across the pole
    assert m.separation[0] == pytest.approx(0.0002 * 3600 * math.cos(math.radians(30)), rel=1e-6)
    m = crossmatch_sky(ra, dec, ra_t, dec_t, 80.0)
    np.testing.assert_array_equal(m.det_to_truth, [0, 1])
    assert m.separation[1] == pytest.approx(70.2, rel=1e-6)
    assert crossmatch_sky([], [], ra_t, dec_t, 1.0).n == 0


@pytest.mark.parametrize("call, match", [
    (lambda: crossmatch_sky([1, 2], [1], [1], [1], 5), "ra, dec: detections need as many"),
    (lambda: crossmatch_sky([1], [1], [np.nan], [1], 5),
     r"ra_t, dec_t: true sources row 0 is not a finite position"),
    (lambda: crossmatch_sky([1], [95], [1], [1], 5), r"dec: declinations must be within"),
    (lambda: crossmatch_sky([1], [1], [1, 2], [1, 2], [5, 5, 5]),
     r"radius_arcsec: expected one radius or one per true source \(2\)"),
    (lambda: crossmatch_pixels([1, np.inf], [1, 1], [1], [1], 3),
     "x, y: detections row 1 is not a finite position"),
    (lambda: crossmatch_pixels([1], [1], [1], [1], np.nan), "radius: radii must be finite"),
    (lambda: crossmatch_pixels([1], [1], [1], [1], -2.0), "radius: radii must be finite"),
    (lambda: match_radius(float("nan"), [2.0]), "beam: expected a finite number > 0"),
    (lambda: match_radius(1.0, [2.0], factor=0), "factor: expected a finite number > 0"),
])
def test_crossmatch_names_bad_positions_and_radii(call, match):
    """Were scipy's "data must be finite" or broadcasting errors, or silently no match for a
    NaN or negative radius."""
    with pytest.raises(ValueError, match=match):
        call()
    assert crossmatch_pixels([], [], [1.0], [1.0], 3).det.size == 0  # empty sides still work


def test_pr_curve_counts():
    obj = np.array([0.9, 0.8, 0.4, 0.2])

    def matcher(sel):
        return crossmatch_pixels(np.arange(4.0)[sel] * 10, np.zeros(sel.size), [0.0, 10.0, 100.0],
                                 [0.0, 0.0, 0.0], 1.0)

    c = pr_curve(obj, [0.1, 0.5, 0.85], matcher, 3)
    np.testing.assert_allclose(c["precision"], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(c["recall"], [2 / 3, 2 / 3, 1 / 3])


def _gauss(shape, x0, y0, amp, smaj, smin, theta):
    gy, gx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    dx, dy = gx - x0, gy - y0
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return amp * np.exp(-0.5 * (u**2 / smaj**2 + v**2 / smin**2))


def test_measure_sources_flux_size_angle_snr():
    beam_sigma = 3.0 / FWHM
    img = _gauss((64, 64), 20.3, 30.6, 5.0, beam_sigma, beam_sigma, 0.0)
    img += _gauss((64, 64), 44.0, 20.0, 2.0, 3.0, 1.5, 0.6)
    img = img + np.random.default_rng(1).normal(0, 0.01, img.shape)
    noise = NoiseMap(rms=np.full((2, 2), 0.01), background=np.zeros((2, 2)),
                     cy=np.array([16.0, 48.0]), cx=np.array([16.0, 48.0]), shape=(64, 64), box=32)
    boxes = np.array([[18.0, 28.0, 0, 25.0, 35.0, 1], [36.0, 13.0, 0, 54.0, 29.0, 1]])
    beam_area = 2 * np.pi * beam_sigma**2
    m = measure_sources(lambda w: img[w].astype(np.float32), img.shape, boxes, noise,
                        beam_area=beam_area, unit_scale=1.0, beam_sigma=beam_sigma)
    assert m.fit_ok.all()
    np.testing.assert_allclose(m.x, [20.3, 44.0], atol=0.05)
    np.testing.assert_allclose(m.y, [30.6, 20.0], atol=0.05)
    np.testing.assert_allclose(m.flux, [5.0, 2.0 * 2 * np.pi * 4.5 / beam_area], rtol=0.02)
    np.testing.assert_allclose(m.sigma_major[1], 3.0, rtol=0.03)
    np.testing.assert_allclose(m.sigma_minor[1], 1.5, rtol=0.03)
    assert m.theta[1] == pytest.approx(0.6, abs=0.03)
    np.testing.assert_allclose(m.snr, m.peak / 0.01)
    # the point source in white noise: Condon (1997)'s sqrt(2 / pi) rms / sigma (sigma in px)
    np.testing.assert_allclose(m.flux_err[0], math.sqrt(2 / math.pi) * 0.01 / beam_sigma,
                               rtol=0.03)


def test_gaussfit_masked_pixels_and_nan():
    st = _gauss((21, 21), 10.2, 9.7, 3.0, 2.0, 2.0, 0.0)[None].repeat(2, 0)
    w = np.ones_like(st)
    st[1, :, 15:] = np.nan  # a blanked strip, weight 0
    w[1, :, 15:] = 0
    g = fit_gaussians(st, w, np.array([[2.5, 10, 10, 1.5, 1.5]] * 2))
    assert g.ok.all()
    np.testing.assert_allclose(g.amplitude, 3.0, rtol=1e-4)
    np.testing.assert_allclose(g.x0, 10.2, atol=1e-4)


@pytest.mark.parametrize("ctype, radesys, equinox", [
    (("GLON-SIN", "GLAT-SIN"), "", None),   # Galactic-plane surveys
    (("RA---SIN", "DEC--SIN"), "FK4", 1950.0),
    (("RA---SIN", "DEC--SIN"), "FK5", 1950.0),
])
def test_sky_positions_are_icrs_ra_dec_whatever_the_image_frame(ctype, radesys, equinox):
    """A galactic image's catalogue had l and b in its ra and dec columns, and position
    angles from galactic north; an FK4 B1950 image's positions were 40' off."""
    wcs_mod = pytest.importorskip("astropy.wcs")
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import wcs_to_celestial_frame

    from cianna_jax.astro.sky import (
        frame_note,
        pa_to_pixel_angle,
        pixel_angle_to_pa,
        pixel_to_sky,
        sky_to_pixel,
    )

    w = wcs_mod.WCS(naxis=2)
    w.wcs.ctype = list(ctype)
    w.wcs.crval = [30.0, 0.5]
    w.wcs.crpix = [50.0, 50.0]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    if radesys:
        w.wcs.radesys, w.wcs.equinox = radesys, equinox
    x, y = np.array([49.0, 10.0, 90.0]), np.array([49.0, 80.0, 3.0])
    ra, dec = pixel_to_sky(w, x, y)
    lon, lat = w.pixel_to_world_values(x, y)
    want = SkyCoord(lon * u.deg, lat * u.deg, frame=wcs_to_celestial_frame(w)).icrs
    np.testing.assert_allclose(ra, want.ra.deg, atol=1e-9)
    np.testing.assert_allclose(dec, want.dec.deg, atol=1e-9)
    bx, by = sky_to_pixel(w, ra, dec)
    np.testing.assert_allclose(np.c_[bx, by], np.c_[x, y], atol=1e-6)
    # the image's +y direction, seen from ICRS north
    step = SkyCoord(lon * u.deg, (lat + 1e-4) * u.deg, frame=wcs_to_celestial_frame(w)).icrs
    pa = pixel_angle_to_pa(w, x, y, np.full(3, np.pi / 2))
    diff = np.mod(pa - want.position_angle(step).deg + 90.0, 180.0) - 90.0  # axes: mod 180
    np.testing.assert_allclose(diff, 0.0, atol=0.01)
    np.testing.assert_allclose(pa_to_pixel_angle(w, x, y, pa), np.pi / 2, atol=1e-3)
    # a header's BPA is measured from the north of the image's own frame: +y here
    np.testing.assert_allclose(pa_to_pixel_angle(w, x, y, np.zeros(3), image_frame=True),
                               np.pi / 2, atol=1e-3)
    assert frame_note(w).startswith("ICRS, converted from the image's")


def test_equatorial_j2000_images_keep_their_own_values():
    wcs_mod = pytest.importorskip("astropy.wcs")
    from cianna_jax.astro.sky import frame_note, pixel_to_sky

    for radesys in ("ICRS", "FK5"):
        w = wcs_mod.WCS(naxis=2)
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [30.0, -30.0], [50.0, 50.0], [-1e-4, 1e-4]
        w.wcs.radesys = radesys
        x, y = np.array([3.0, 60.0]), np.array([7.0, 20.0])
        ra, dec = pixel_to_sky(w, x, y)
        lon, lat = w.pixel_to_world_values(x, y)
        np.testing.assert_array_equal(np.c_[ra, dec], np.c_[lon, lat])
        assert frame_note(w) == f"{radesys} (the image's WCS, equatorial J2000)"


def test_sky_position_angles():
    wcs_mod = pytest.importorskip("astropy.wcs")
    from cianna_jax.astro.sky import deconvolve, pa_to_pixel_angle, pixel_angle_to_pa

    w = wcs_mod.WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [0.0, -30.0]
    w.wcs.crpix = [50.0, 50.0]
    w.wcs.cdelt = [-0.5 / 3600, 0.5 / 3600]
    x, y = np.array([49.0, 10.0]), np.array([49.0, 80.0])
    # +y is north (PA 0), -x is east (PA 90), a 30 deg PA points between them
    north = pixel_angle_to_pa(w, x, y, np.full(2, np.pi / 2))
    np.testing.assert_allclose(np.abs(np.mod(north + 90, 180) - 90), 0.0, atol=0.01)
    np.testing.assert_allclose(pixel_angle_to_pa(w, x, y, np.full(2, np.pi)), 90.0, atol=0.01)
    th = pa_to_pixel_angle(w, x, y, np.array([30.0, 30.0]))
    np.testing.assert_allclose(th, np.radians(120.0), atol=1e-3)
    np.testing.assert_allclose(pixel_angle_to_pa(w, x, y, th), 30.0, atol=1e-3)
    a, b, _ = deconvolve(np.array([5.0, 2.0]), np.array([3.0, 2.0]), np.zeros(2), 2.0, 2.0, 0.0)
    np.testing.assert_allclose(a, [np.sqrt(21), 0.0], atol=1e-9)
    np.testing.assert_allclose(b, [np.sqrt(5), 0.0], atol=1e-9)


def test_a_fit_spreading_far_beyond_its_box_falls_back_to_the_box():
    """A small box on a broad plateau: the fit follows the plateau (FWHM 35 px for an 8-pixel
    box) and is refused, so the source keeps its box measurements, and its size cannot make
    the duplicate merge remove the detections around it."""
    img = _gauss((128, 128), 64.0, 64.0, 1.0, 15.0, 15.0, 0.0)
    img = img + np.random.default_rng(2).normal(0, 1e-3, img.shape)
    noise = NoiseMap(rms=np.full((2, 2), 1e-3), background=np.zeros((2, 2)),
                     cy=np.array([32.0, 96.0]), cx=np.array([32.0, 96.0]), shape=(128, 128),
                     box=64)
    m = measure_sources(lambda w: img[w].astype(np.float32), img.shape,
                        np.array([[60.0, 60.0, 0, 68.0, 68.0, 1]]), noise, beam_area=1.0,
                        beam_sigma=3.0 / FWHM)
    assert not m.fit_ok[0]
    assert m.sigma_major[0] * FWHM <= 8.0
