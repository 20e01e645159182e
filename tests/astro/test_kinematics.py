"""A line's velocity gradient along its major axis: the receding half of a rotating source,
found through the catalogue; its significance calibrated on noise."""

import math
from dataclasses import replace

import numpy as np
import pytest

from cianna_jax.astro.kinematics import velocity_gradient
from cianna_jax.astro.measure import FWHM, fit_moment0, measure_boxes_3d
from cianna_jax.astro.noise import estimate_noise_map
from cianna_jax.datasets import radio_sky as rs

BEAM = (3.0 / FWHM, 3.0 / FWHM, 0.0)


def _rotating(direction: float, shape=(48, 64, 64), noise=0.02, seed=0):
    """A source whose emission moves along ``direction`` (radians from +x towards +y) by
    0.25 pixel per channel: its line sits at higher channels towards ``direction``; the
    true box, and its noise-free cube for the noise map."""
    D, H, W = shape
    z = np.arange(D, dtype=np.float64)[:, None, None]
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float64)
    zc, xc, yc = 23.4, 31.2, 32.7
    off = 0.25 * (z - zc)
    x0, y0 = xc + off * math.cos(direction), yc + off * math.sin(direction)
    s = 2.0
    sky = np.exp(-0.5 * ((gx - x0) ** 2 + (gy - y0) ** 2) / s**2)
    cube = sky * np.exp(-0.5 * (z - zc) ** 2 / 4.0**2)
    rng = np.random.default_rng(seed)
    cube = cube + noise * rng.standard_normal(cube.shape)
    box = np.array([[xc - 9, yc - 9, zc - 9, xc + 9, yc + 9, zc + 9]]) + 0.5
    return cube.astype(np.float32), box


@pytest.mark.parametrize("direction", [0.3, 2.0, 4.0])
def test_the_half_where_the_line_sits_higher(direction):
    cube, box = _rotating(direction)
    read = lambda w: cube[w]  # noqa: E731
    noise = estimate_noise_map(read, cube.shape, box=32)
    m = measure_boxes_3d(read, cube.shape, box, noise, beam_area=1.0)
    m = fit_moment0(read, cube.shape, box, noise, m, beam_area=1.0, noise_beam=BEAM)
    assert m.fit_ok[0]
    # the moving emission elongates the moment-0 map along the motion
    assert abs(math.remainder(m.theta[0] - direction, math.pi)) < math.radians(5)
    high, snr = velocity_gradient(read, cube.shape, box, noise, m, noise_beam=BEAM)
    assert snr[0] > 10
    assert abs(math.remainder(high[0] - direction, 2 * math.pi)) < math.radians(5)


def _still_sources(n_side=6, spacing=30, depth=64, seed=0):
    """Sources that do not rotate (sky shape the same in every channel), isolated on a grid,
    peak SNR 5 to 500, in noise correlated as a 3-pixel beam; their true boxes."""
    rng = np.random.default_rng(seed)
    size = n_side * spacing
    cube = rs.make_cube((depth, size, size), n_sources=0, seed=seed, noise_rms=1.0,
                        psf_fwhm=3.0)[0].astype(np.float64)
    z = np.arange(depth, dtype=np.float64)[:, None, None]
    boxes = []
    for j in range(n_side * n_side):
        xc = (j % n_side + 0.5) * spacing + rng.uniform(-0.5, 0.5)
        yc = (j // n_side + 0.5) * spacing + rng.uniform(-0.5, 0.5)
        zc, sz = rng.uniform(16, depth - 16), rng.uniform(2.0, 4.0)
        sa, sb, th = rng.uniform(1.8, 3.0), 1.3, rng.uniform(0, np.pi)
        r = slice(int(yc) - 12, int(yc) + 13), slice(int(xc) - 12, int(xc) + 13)
        gy, gx = np.mgrid[r].astype(np.float64)
        u = (gx - xc) * np.cos(th) + (gy - yc) * np.sin(th)
        v = -(gx - xc) * np.sin(th) + (gy - yc) * np.cos(th)
        sky = np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))
        peak = 10 ** rng.uniform(np.log10(5), np.log10(500))
        cube[(slice(None),) + r] += peak * sky * np.exp(-0.5 * (z - zc) ** 2 / sz**2)
        h = (FWHM * sa, FWHM * sa, FWHM * sz)
        boxes.append([xc - h[0] + 0.5, yc - h[1] + 0.5, zc - h[2] + 0.5,
                      xc + h[0] + 0.5, yc + h[1] + 0.5, zc + h[2] + 0.5])
    return cube.astype(np.float32), np.array(boxes)


def test_sources_that_do_not_rotate_show_no_gradient():
    """Its significance is calibrated: |D| / sigma_D is half-normal (median 0.674) for
    sources whose sky shape does not change with the channel, bright ones included
    (misjudged centres do not make a gradient)."""
    cube, boxes = _still_sources()
    read = lambda w: cube[w]  # noqa: E731
    noise = estimate_noise_map(read, cube.shape, box=60)
    m = measure_boxes_3d(read, cube.shape, boxes, noise, beam_area=1.0)
    m = fit_moment0(read, cube.shape, boxes, noise, m, beam_area=1.0, beam_sigma=3.0 / FWHM,
                    noise_beam=BEAM)
    _, snr = velocity_gradient(read, cube.shape, boxes, noise, m, noise_beam=BEAM)
    assert np.isfinite(snr).all()
    assert np.median(snr) == pytest.approx(0.674, rel=0.25)
    assert snr.max() < 4.0
    # white noise assumed where it is correlated: the significance comes out too high
    _, white = velocity_gradient(read, cube.shape, boxes, noise, m)
    assert np.median(white) > 1.5 * np.median(snr)


@pytest.mark.parametrize("rising", [True, False])
def test_the_catalogue_gives_the_receding_half_as_a_position_angle(tmp_path, rising):
    """Frequency rising with the channel: the half where the line sits higher approaches;
    falling: it recedes. RA grows to the left (east), Dec upwards (north)."""
    fits = pytest.importorskip("astropy.io.fits")
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.pipeline import build_table
    from cianna_jax.astro.predict import Detections
    from cianna_jax.yolo.decode import DecodedBoxes

    direction = 0.3
    cube, box = _rotating(direction)
    h = fits.Header()
    df = 30e3 if rising else -30e3
    for k, (t, v, d, unit) in enumerate([("RA---SIN", 150.0, -2.0 / 3600, "deg"),
                                         ("DEC--SIN", 2.0, 2.0 / 3600, "deg"),
                                         ("FREQ", 1.2e9, df, "Hz")], 1):
        h[f"CTYPE{k}"], h[f"CRVAL{k}"], h[f"CDELT{k}"], h[f"CRPIX{k}"], h[f"CUNIT{k}"] = (
            t, v, d, 32.0, unit)
    h["BUNIT"], h["BMAJ"], h["BMIN"], h["BPA"] = "JY/BEAM", 6.0 / 3600, 6.0 / 3600, 0.0
    fits.PrimaryHDU(cube, h).writeto(tmp_path / "rot.fits")
    with open_image(tmp_path / "rot.fits") as img:
        read, area = img.read, img.beam_area_pixels()
        noise = estimate_noise_map(read, img.shape, box=32)
        m = measure_boxes_3d(read, img.shape, box, noise, beam_area=area)
        m = fit_moment0(read, img.shape, box, noise, m, beam_area=area, noise_beam=BEAM)
        high, snr = velocity_gradient(read, img.shape, box, noise, m, noise_beam=BEAM)
        m = replace(m, theta_high=high, gradient_snr=snr)
        one = np.zeros(1)
        det = Detections(DecodedBoxes(boxes=box, image=one.astype(int), prior=one.astype(int),
                                      cell=np.zeros((1, 3), int), probability=one + 1,
                                      objectness=one + 1, class_scores=np.zeros((1, 0)),
                                      params=np.zeros((1, 0))), 1, 1.0, 0.5)
        t = build_table(img, det, m, {})
    receding = direction + (math.pi if rising else 0.0)  # pixel frame
    # north is +y, east is -x
    want = math.degrees(math.atan2(-math.cos(receding), math.sin(receding))) % 360.0
    assert float(t["pa_kin"][0]) == pytest.approx(want, abs=5.0)
    assert float(t["pa_kin_snr"][0]) > 10
    assert str(t["pa_kin"].unit) == "deg"
    assert abs(math.remainder(float(t["pa"][0]) - want, 180.0)) < 5.0  # the same axis


def test_a_line_boxed_twice_is_one_line():
    """Cube duplicates (each horn of a double-horned line boxed, the parts of a large
    rotating disc): centres closer than the sum of the FWHMs and lines that overlap in
    channel; the larger line flux is kept, the higher score where fluxes tie, an unknown
    flux last. Lines at other frequencies on the same sky, or beyond on the sky, stay."""
    from cianna_jax.astro.duplicates import unique_lines
    from cianna_jax.astro.measure import FWHM, Measurements

    def lines(x, y, z, flux, sigma):
        n = len(x)
        z = np.asarray(z, np.float64)
        nan = np.full(n, np.nan)
        return Measurements(x=np.asarray(x, np.float64), y=np.asarray(y, np.float64),
                            peak=np.ones(n), flux=np.asarray(flux, np.float64), flux_err=nan,
                            rms=np.ones(n), snr=np.ones(n),
                            sigma_major=np.asarray(sigma, np.float64),
                            sigma_minor=np.full(n, 1.0), theta=np.zeros(n),
                            fit_ok=np.ones(n, bool), z=z,
                            line=np.stack([z - 6, z + 6, z - 4, z + 4], 1))

    # 0 a galaxy 4 px sigma (FWHM 9.4 px); 1 a part of it (lower flux, higher score) 8 px
    # away, 4 channels off; 2 another galaxy behind it (other channels); 3 elsewhere
    m = lines([10.0, 18.0, 10.2, 60.0], [10.0, 10.0, 9.8, 60.0], [20.0, 24.0, 60.0, 20.0],
              [5.0, 2.0, 1.0, 1.0], [4.0, 1.5, 2.0, 2.0])
    score = np.array([0.4, 0.9, 0.5, 0.5])
    assert unique_lines(m, score, 1.0).tolist() == [True, False, True, True]
    # a neighbour just beyond the sum of the FWHMs stays, just within it goes
    reach = FWHM * (4.0 + 1.5)
    for dx, kept in ((reach + 0.1, True), (reach - 0.1, False)):
        m2 = lines([10.0, 10.0 + dx], [10.0, 10.0], [20.0, 20.0], [5.0, 2.0], [4.0, 1.5])
        assert unique_lines(m2, score[:2], 1.0).tolist() == [True, kept]
    # the beam is the least size: two point-like lines 3 px apart (reach 2.4 px at a beam
    # of sigma 0.5 px, 4.7 px at 1 px)
    m3 = lines([10.0, 13.0], [10.0, 10.0], [20.0, 20.0], [5.0, 2.0], [0.5, 0.5])
    assert unique_lines(m3, score[:2], 0.5).tolist() == [True, True]
    assert unique_lines(m3, score[:2], 1.0).tolist() == [True, False]
    # equal fluxes: the higher score; an unknown flux goes first
    m4 = lines([10.0, 12.0], [10.0, 10.0], [20.0, 20.0], [2.0, 2.0], [2.0, 2.0])
    assert unique_lines(m4, score[:2], 1.0).tolist() == [False, True]
    m5 = lines([10.0, 12.0], [10.0, 10.0], [20.0, 20.0], [np.nan, 0.1], [2.0, 2.0])
    assert unique_lines(m5, np.array([0.9, 0.1]), 1.0).tolist() == [False, True]


def test_the_noise_sum_is_the_dense_one():
    """sum_pq w_p w_q K(p - q) by FFT equals the dense double sum (an elongated, turned
    beam, a non-square window)."""
    from cianna_jax.astro.fit_errors import correlation_kernel
    from cianna_jax.astro.kinematics import _correlated_sum

    w = np.random.default_rng(0).normal(size=(7, 11))
    beam = (1.3, 0.9, 0.4)
    k = correlation_kernel(11, *beam)
    iy, ix = np.divmod(np.arange(w.size), 11)
    dense = k[10 + iy[:, None] - iy[None], 10 + ix[:, None] - ix[None]]
    assert _correlated_sum(w, beam) == pytest.approx(w.ravel() @ dense @ w.ravel(), rel=1e-12)
    assert _correlated_sum(w, None) == pytest.approx(np.sum(w * w))
