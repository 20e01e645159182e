"""Errors of the Gaussian fits: Monte Carlo against the predicted 1-sigma errors in
beam-correlated and white noise, closed forms, and the catalogue's error columns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cianna_jax.astro.fit_errors import correlation_kernel, fit_covariance, fit_errors
from cianna_jax.astro.gaussfit import fit_gaussians
from cianna_jax.astro.measure import FIT_TAPER, FWHM, Measurements, _taper, measure_sources
from cianna_jax.astro.noise import NoiseMap
from cianna_jax.datasets.radio_sky import correlated_noise

S = 25


def _gauss(x0, y0, amp, smaj, smin, theta, size=S):
    gy, gx = np.mgrid[0:size, 0:size].astype(float)
    dx, dy = gx - x0, gy - y0
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return amp * np.exp(-0.5 * (u**2 / smaj**2 + v**2 / smin**2))


def _monte_carlo(noise, smaj, smin, theta, amp, kernel, weights=None):
    """Fit one source in each noise realisation: (empirical std, median predicted error)
    of amplitude, x0, y0, sigma_major, sigma_minor, theta and relative flux."""
    n = noise.shape[0]
    x0, y0 = S // 2 + 0.2, S // 2 - 0.3
    st = _gauss(x0, y0, amp, smaj, smin, theta)[None] + noise
    w = np.ones_like(st) if weights is None else np.broadcast_to(weights, st.shape).copy()
    g = fit_gaussians(st, w, np.tile([amp, x0, y0, smaj, smin], (n, 1)))
    assert g.ok.all()
    e = fit_errors(g.params, fit_covariance(g.params, w, kernel), np.full(n, noise.std()))
    flux = g.amplitude * g.sigma_major * g.sigma_minor
    dth = np.mod(g.theta - theta + np.pi / 2, np.pi) - np.pi / 2
    emp = [g.amplitude.std(), g.x0.std(), g.y0.std(), g.sigma_major.std(), g.sigma_minor.std(),
           dth.std(), flux.std() / flux.mean()]
    pred = [np.median(v) for v in (e.amplitude, e.x0, e.y0, e.sigma_major, e.sigma_minor,
                                   e.theta, e.flux_rel)]
    return np.array(emp), np.array(pred)


@pytest.mark.parametrize("case", ["beam", "white", "masked", "tapered"])
def test_predicted_errors_match_the_scatter_of_fits(case):
    """300 noise realisations around an elongated source of SNR 30: each parameter's scatter
    is its predicted 1-sigma error (to 15%, the Monte Carlo's own scatter is ~4%); also for
    pixel weights that are not 0 or 1 (measure_sources' taper: the sandwich covariance)."""
    rng = np.random.default_rng(7)
    beam = 3.0 / FWHM                     # a 3-pixel FWHM beam
    if case == "white":
        noise, kernel = rng.standard_normal((300, S, S)), None
    else:  # the simulator's noise: correlated as the beam
        noise = correlated_noise((300, 48, 48), 1.0, 3.0, rng)[:, :S, :S]
        kernel = correlation_kernel(S, beam, beam, 0.0)
    weights = None
    if case == "masked":  # a neighbour's pixels left out of the fit
        weights = np.ones((S, S))
        weights[:, S - 7:] = 0.0
    if case == "tapered":
        gy, gx = np.mgrid[0:S, 0:S].astype(float)
        weights = _taper(gx - S // 2, gy - S // 2, 3.0 * beam, 3.0 * beam)
    emp, pred = _monte_carlo(noise, 2.0 * beam, 1.2 * beam, 0.5, 30.0, kernel, weights)
    np.testing.assert_allclose(emp / pred, 1.0, atol=0.15)


def test_white_and_beam_correlated_noise_closed_forms():
    """A round Gaussian of sigma s and amplitude A: in white noise its centre's error is
    sqrt(2 / pi) / A (Condon 1997); in noise correlated as the source itself, an unweighted
    fit's is (4 / 3) s / A."""
    s, A = 2.0, 50.0
    p = np.array([[A, 30.0, 30.0, 1 / s**2, 0.0, 1 / s**2]])
    w = np.ones((1, 61, 61))
    white = fit_errors(p, fit_covariance(p, w), np.ones(1))
    assert white.x0[0] == pytest.approx(math.sqrt(2 / math.pi) / A, rel=1e-3)
    assert white.y0[0] == pytest.approx(math.sqrt(2 / math.pi) / A, rel=1e-3)
    corr = fit_errors(p, fit_covariance(p, w, correlation_kernel(61, s, s, 0.0)), np.ones(1))
    assert corr.x0[0] == pytest.approx(4 / 3 * s / A, rel=0.01)
    assert corr.xy_cov[0, 0, 1] == pytest.approx(0.0, abs=1e-12)
    # errors scale with the noise; a round fit has no angle
    twice = fit_errors(p, fit_covariance(p, w), np.full(1, 2.0))
    assert twice.amplitude[0] == pytest.approx(2 * white.amplitude[0])
    assert white.theta[0] == pytest.approx(np.pi / 2)


def test_unfittable_stamps_give_nan_and_bad_arguments_are_named():
    p = np.array([[5.0, 10.0, 10.0, 0.25, 0.0, 0.25]] * 2)
    w = np.ones((2, 21, 21))
    w[1] = 0.0                                   # nothing fitted: no error
    e = fit_errors(p, fit_covariance(p, w), np.ones(2))
    assert np.isfinite(e.x0[0]) and np.isnan(e.x0[1]) and np.isnan(e.flux_rel[1])
    with pytest.raises(ValueError, match="kernel of shape"):
        fit_covariance(p, w, correlation_kernel(5, 1.0, 1.0, 0.0))
    with pytest.raises(ValueError, match=r"params \[n, 6\]"):
        fit_covariance(p[:1], w)
    with pytest.raises(ValueError, match="sigmas must be > 0"):
        correlation_kernel(5, 0.0, 1.0, 0.0)


def test_measured_sources_carry_errors_box_fallbacks_the_rms():
    """measure_sources: fitted sources get their fit errors (the beam-correlated kernel
    from noise_beam), box-measured ones the rms as peak error and NaN elsewhere."""
    beam = 3.0 / FWHM
    img = _gauss(20.3, 30.6, 5.0, beam, beam, 0.0, 64) + _gauss(44.0, 20.0, 2.0, 3.0, 1.5, 0.6, 64)
    img = img + 0.01 * np.random.default_rng(1).standard_normal(img.shape)
    noise = NoiseMap(rms=np.full((2, 2), 0.01), background=np.zeros((2, 2)),
                     cy=np.array([16.0, 48.0]), cx=np.array([16.0, 48.0]), shape=(64, 64), box=32)
    boxes = np.array([[18.0, 28.0, 0, 25.0, 35.0, 1], [36.0, 13.0, 0, 54.0, 29.0, 1]])
    kw = dict(beam_area=2 * np.pi * beam**2, unit_scale=1.0, beam_sigma=beam)
    read = lambda w: img[w].astype(np.float32)  # noqa: E731
    flat = measure_sources(read, img.shape, boxes, noise, noise_beam=(beam, beam, 0.0),
                           taper=None, **kw)
    m = measure_sources(read, img.shape, boxes, noise, noise_beam=(beam, beam, 0.0), **kw)
    white = measure_sources(read, img.shape, boxes, noise, **kw)
    assert m.fit_ok.all() and flat.fit_ok.all()
    # the point source, correlated noise, flat weights: position error (4/3) sigma / SNR;
    # the taper's is smaller (its Monte Carlo below); peak error ~ rms
    np.testing.assert_allclose(np.sqrt(flat.xy_cov[0, 0, 0]), 4 / 3 * beam / 500, rtol=0.05)
    assert 0.7 < np.sqrt(m.xy_cov[0, 0, 0] / flat.xy_cov[0, 0, 0]) < 0.95
    assert 0.8 * 0.01 < m.peak_err[0] < 1.2 * 0.01
    assert np.all(np.sqrt(white.xy_cov[:, 0, 0]) < np.sqrt(m.xy_cov[:, 0, 0]))
    assert m.flux_err[1] > m.flux_err[0] and np.all(m.theta_err[1] < np.radians(5))
    box = measure_sources(read, img.shape, boxes, noise, fit=False, **kw)
    np.testing.assert_allclose(box.peak_err, 0.01)
    assert np.isnan(box.xy_cov).all() and np.isnan(box.sigma_major_err).all()


def test_sky_errors_follow_the_wcs_rotation():
    """Pixel errors carried onto the sky through the local WCS Jacobian: an image rotated by
    90 degrees swaps the RA and Dec errors."""
    wcs_mod = pytest.importorskip("astropy.wcs")
    from cianna_jax.astro.sky import sky_offsets_per_pixel

    def make(rot):
        w = wcs_mod.WCS(naxis=2)
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [50.0, 50.0]
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        w.wcs.cd = np.array([[-c, -s], [-s, c]]) * (0.5 / 3600)  # x east-ward at rot 0
        return w

    x, y = np.array([49.0, 10.0]), np.array([49.0, 80.0])
    J0 = sky_offsets_per_pixel(make(0.0), x, y)
    np.testing.assert_allclose(J0, np.array([[-0.5, 0.0], [0.0, 0.5]])[None].repeat(2, 0),
                               atol=1e-4)
    cov = np.array([[4.0, 0.0], [0.0, 1.0]])          # x error 2 px, y error 1 px
    sky0 = J0[0] @ cov @ J0[0].T
    J90 = sky_offsets_per_pixel(make(90.0), x, y)
    sky90 = J90[0] @ cov @ J90[0].T
    np.testing.assert_allclose(np.sqrt(np.diag(sky0)), [1.0, 0.5], rtol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(sky90)), [0.5, 1.0], rtol=1e-3)


def test_scores_report_the_pulls_of_the_errors():
    """Detections offset from the truth by exactly the normal quantiles times their errors
    have pull scatter 1; errors half as large give 2.  The report prints them, and the
    side-by-side table too."""
    from statistics import NormalDist

    from cianna_jax.astro.crossmatch import crossmatch_pixels
    from cianna_jax.astro.scores import score_catalogue
    from cianna_jax.astro.validate import format_scores, format_side_by_side

    n = 201
    q = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])
    rng = np.random.default_rng(0)
    tx, ty = np.arange(n) * 20.0, np.zeros(n)
    err = rng.uniform(0.05, 0.2, n)
    dx, dy = tx + q * err, ty + rng.permutation(q) * err
    flux_err = rng.uniform(0.1, 0.3, n)
    flux = 10.0 + rng.permutation(q) * flux_err
    m = crossmatch_pixels(dx, dy, tx, ty, 3.0)
    kw = dict(truth_snr=np.full(n, 20.0), det_snr=np.full(n, 20.0), truth_flux=np.full(n, 10.0),
              det_flux=flux, det_pos=(dx, dy), truth_pos=(tx, ty), sky=False)
    s = score_catalogue(m, det_pos_err=(err, err), det_flux_err=flux_err, **kw)
    p = s.extra["error_pulls"]
    assert p["n"] == n and set(p) == {"x", "y", "flux", "n"}
    np.testing.assert_allclose([p["x"], p["y"], p["flux"]], 1.0, atol=0.02)
    half = score_catalogue(m, det_pos_err=(err / 2, err / 2), det_flux_err=flux_err / 2, **kw)
    np.testing.assert_allclose([half.extra["error_pulls"][k] for k in ("x", "y", "flux")], 2.0,
                               atol=0.04)
    assert "true) / error x 0.99, y 0.99, flux 0.99 (over 201 matched" in format_scores(s)
    none = score_catalogue(m, **kw)
    assert "error_pulls" not in none.extra and "errors:" not in format_scores(none)
    table = format_side_by_side({"ours": s, "other": none})
    assert "0.99/0.99/0.99" in table and table.rstrip().endswith("-")


def test_dense_and_fft_correlations_agree(monkeypatch):
    """Small stamps multiply by the dense correlation matrix, large ones use FFTs: the same
    numbers (an elliptical, rotated beam)."""
    import cianna_jax.astro.fit_errors as fe

    jw = np.random.default_rng(0).standard_normal((3, 17, 17, 6))
    kernel = correlation_kernel(17, 1.3, 0.9, 0.4)
    dense = fe._correlated(jw, kernel)
    monkeypatch.setattr(fe, "_DENSE_MAX", 0)
    np.testing.assert_allclose(fe._correlated(jw, kernel), dense, atol=1e-12)


def test_resolved_flags_sources_larger_than_the_beam():
    """In noise correlated as the beam, at SNR 20: under 2% of point sources (the beam's
    size) are flagged resolved (3 sigma: 0.13% expected), every source 1.5x the beam's width
    is; the area's error matches its scatter."""
    from cianna_jax.astro.catalogue_table import _resolved

    rng = np.random.default_rng(3)
    beam = 3.0 / FWHM
    noise = correlated_noise((400, 48, 48), 1.0, 3.0, rng)[:, :S, :S]
    kernel = correlation_kernel(S, beam, beam, 0.0)
    for factor, lo, hi in ((1.0, 0.0, 0.02), (1.5, 0.99, 1.0)):
        s = beam * factor
        st = _gauss(12.2, 11.7, 20.0, s, s, 0.0)[None] + noise
        w = np.ones_like(st)
        g = fit_gaussians(st, w, np.tile([20.0, 12.2, 11.7, s, s], (400, 1)),
                          sigma_range=(0.5 * beam, 100.0))
        e = fit_errors(g.params, fit_covariance(g.params, w, kernel), np.ones(400))
        area = g.sigma_major * g.sigma_minor
        assert np.std(np.log(area)) / np.median(e.area_rel) == pytest.approx(1.0, abs=0.12)
        m = Measurements(x=g.x0, y=g.y0, peak=g.amplitude, flux=area, flux_err=area,
                         rms=np.ones(400), snr=g.amplitude, sigma_major=g.sigma_major,
                         sigma_minor=g.sigma_minor, theta=g.theta, fit_ok=g.ok,
                         area_err_rel=e.area_rel)
        assert lo <= np.mean(_resolved(m, beam * beam)) <= hi


@pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")
def test_a_flux_scale_error_adds_in_quadrature(field, tiny_model, tmp_path):
    """--flux-scale-error F: flux_err and peak_err gain F times the flux and peak in
    quadrature (the calibration's share), recorded in the metadata; a fraction outside
    [0, 1) is refused before any work.  --astrometric-error A (arcsec): the position errors
    gain A in quadrature (x_err, y_err in pixels), refused when negative or without a WCS."""
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.pipeline import find_sources, predict_file
    from cianna_jax.cli import main

    path = field[0]
    plain = find_sources(path, tiny_model, progress=False).table
    assert len(plain) > 0
    out = str(tmp_path / "scaled.ecsv")
    assert main(["predict", "--model", tiny_model, "--image", path, "--out", out, "--quiet",
                 "--flux-scale-error", "0.1", "--astrometric-error", "0.2"]) == 0
    t = read_catalogue(out)
    scale = t.meta["pixel_scale_arcsec"]
    for col, add in (("ra_err", 0.2), ("dec_err", 0.2), ("x_err", 0.2 / scale),
                     ("y_err", 0.2 / scale)):
        np.testing.assert_allclose(t[col], np.hypot(plain[col], add), rtol=1e-3)
    assert t.meta["astrometric_error_arcsec"] == 0.2
    assert plain.meta["astrometric_error_arcsec"] == 0.0
    np.testing.assert_allclose(t["flux_err"], np.hypot(plain["flux_err"], 0.1 * plain["flux"]),
                               rtol=1e-12)
    np.testing.assert_allclose(t["peak_err"], np.hypot(plain["peak_err"], 0.1 * plain["peak"]),
                               rtol=1e-12)
    assert t.meta["flux_scale_error"] == 0.1 and plain.meta["flux_scale_error"] == 0.0
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="flux_scale_error"):
            predict_file(path, tiny_model, tmp_path / "x.ecsv", flux_scale_error=bad)
        if bad != 1.0:
            with pytest.raises(ValueError, match="astrometric_error"):
                predict_file(path, tiny_model, tmp_path / "x.ecsv", astrometric_error=bad)
    from cianna_jax.astro.synthetic import synthetic_field, write_fits

    write_fits(tmp_path / "nowcs.fits", synthetic_field(64, seed=1, wcs=False))
    with pytest.raises(ValueError, match="astrometric_error: .* no celestial WCS"):
        predict_file(tmp_path / "nowcs.fits", tiny_model, tmp_path / "x.ecsv",
                     astrometric_error=0.2)
    assert not (tmp_path / "x.ecsv").exists()


def test_one_eigendecomposition_gives_numpys_pinv_and_cond():
    from cianna_jax.astro.fit_errors import _pinv_cond

    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 20, 6))
    h = np.swapaxes(a, 1, 2) @ a
    h[4] = 0.0  # singular: no inverse, infinite condition
    h[7, :, 0] = h[7, 0, :] = 0.0
    inv, cond = _pinv_cond(h)
    np.testing.assert_allclose(inv, np.linalg.pinv(h, hermitian=True), rtol=1e-9, atol=1e-12)
    ok = np.ones(50, bool)
    ok[[4, 7]] = False
    np.testing.assert_allclose(cond[ok], np.linalg.cond(h[ok]), rtol=1e-9)
    assert np.all(~(cond[~ok] < 1e12))  # refused as before
    assert _pinv_cond(np.zeros((0, 6, 6)))[1].shape == (0,)


def test_taper_moves_faint_fits_less_in_beam_correlated_noise():
    """400 realisations of a point source of SNR 8 in noise correlated as the beam: the
    tapered fit of measure_sources scatters less in position and flux than the flat fit,
    and its predicted errors match its scatter (to 15%)."""
    rng = np.random.default_rng(11)
    beam = 3.0 / FWHM
    noise = correlated_noise((400, 48, 48), 1.0, 3.0, rng)[:, :S, :S]
    kernel = correlation_kernel(S, beam, beam, 0.0)
    gy, gx = np.mgrid[0:S, 0:S].astype(float)
    taper = _taper(gx - S // 2, gy - S // 2, FIT_TAPER * beam, FIT_TAPER * beam)
    flat_emp, _ = _monte_carlo(noise, beam, beam, 0.0, 8.0, kernel)
    emp, pred = _monte_carlo(noise, beam, beam, 0.0, 8.0, kernel, taper)
    assert emp[1] < 0.9 * flat_emp[1] and emp[2] < 0.9 * flat_emp[2]   # x0, y0
    assert emp[6] < flat_emp[6]                                          # flux
    np.testing.assert_allclose(emp[[0, 1, 2, 6]] / pred[[0, 1, 2, 6]], 1.0, atol=0.15)
