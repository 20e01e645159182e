"""Confusion noise (astro.confusion, ``cianna-jax confusion``): the simulated map's variance
against Campbell's theorem, Condon's closed form against its integral, counts read from a
counts table, the thermal noise recovered under the confusion, the command line and its
errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import make_table, write_catalogue  # noqa: E402
from cianna_jax.astro.confusion import (  # noqa: E402
    CountsModel,
    condon_sigma,
    confusion_map,
    estimate_confusion,
    thermal_noise,
)

K, GAMMA = 1.5e4, 1.7  # n(S) = K S^-1.7 per sr per Jy: ~1e5 sources per deg^2 above 1 uJy


def test_the_map_variance_is_campbells():
    # every source's beam adds its flux squared times the beam's squared integral
    model = CountsModel.power_law(K, GAMMA)
    px, fwhm = 1.0, 5.0
    s_min, s_max = 1e-7, 3e-6
    v = []
    for seed in range(3):
        m = confusion_map(model, (fwhm, fwhm, 0.0), px, np.random.default_rng(seed), size=512,
                          s_min=s_min, s_max=s_max)
        v.append(np.var(m))
    s2 = K / (3 - GAMMA) * (s_max ** (3 - GAMMA) - s_min ** (3 - GAMMA))  # int S^2 n dS
    sigma_px = fwhm / (2 * math.sqrt(2 * math.log(2)))
    want = s2 * (px / 206264.806) ** 2 * math.pi * sigma_px ** 2
    assert np.mean(v) == pytest.approx(want, rel=0.05)


def test_condons_closed_form_is_its_integral():
    # sigma^2 = int_0^{q sigma} D^2 R(D) dD, R(D) = n(D/f)/f over the beam f: solved by
    # iteration with the beam integral done numerically
    beam_sr = 1e-9
    s = condon_sigma(K, GAMMA, beam_sr, 5.0)
    fw = math.sqrt(beam_sr * 4 * math.log(2) / math.pi)  # a round beam of that solid angle
    sig = fw / (2 * math.sqrt(2 * math.log(2)))
    r = np.linspace(0, 12 * sig, 200001)
    omega_e = np.trapezoid(np.exp(-r * r / (2 * sig * sig)) ** (GAMMA - 1) * 2 * math.pi * r, r)
    x = 1e-6
    for _ in range(200):
        x = math.sqrt(K * omega_e * (5 * x) ** (3 - GAMMA) / (3 - GAMMA))
    assert s == pytest.approx(x, rel=1e-4)
    with pytest.raises(ValueError, match="1 < gamma < 3"):
        condon_sigma(K, 3.2, beam_sr)


def test_counts_from_a_counts_table(tmp_path):
    s = np.geomspace(1e-5, 1e-2, 10)
    t = make_table({"flux_mid": s, "counts": K * s ** (2.5 - GAMMA),
                    "complete": np.arange(10) > 0})
    t["flux_mid"].unit = "Jy"
    write_catalogue(t, tmp_path / "counts.ecsv")
    m = CountsModel.from_counts(tmp_path / "counts.ecsv")
    assert m.gamma_below == pytest.approx(GAMMA, rel=1e-9) and m.s.size == 9
    np.testing.assert_allclose(m.dnds(np.array([1e-7, 3e-4])), K * np.array([1e-7, 3e-4])
                               ** -GAMMA, rtol=1e-9)
    assert m.dnds(np.array([1.0]))[0] == pytest.approx(m.n[-1] * (1.0 / m.s[-1]) ** -2.5)
    assert CountsModel.from_counts(t, gamma_below=1.5).gamma_below == 1.5
    with pytest.raises(ValueError, match="infinite confusion"):
        CountsModel.from_counts(t, gamma_below=3.5)
    turnover = make_table({"flux_mid": s, "counts": K * s ** (2.5 - GAMMA) * (s / 1e-2) ** 3})
    with pytest.raises(ValueError, match="no physical extension below them"):
        CountsModel.from_counts(turnover)
    assert CountsModel.from_counts(turnover, gamma_below=1.7).gamma_below == 1.7
    with pytest.raises(Exception, match="not a source counts table"):
        CountsModel.from_counts(make_table({"flux": s}))


def test_the_thermal_noise_under_the_confusion():
    model = CountsModel.power_law(K, GAMMA)
    rng = np.random.default_rng(1)
    cmap = confusion_map(model, (5.0, 5.0, 0.0), 1.0, rng, size=512, s_min=1e-8, s_max=1e-4)
    from cianna_jax.astro.noise import clipped_stats

    conf = clipped_stats(cmap)[1]
    measured = clipped_stats(cmap + 2 * conf * np.random.default_rng(9).standard_normal(
        cmap.shape))[1]
    assert thermal_noise(cmap, measured, rng) == pytest.approx(2 * conf, rel=0.03)
    assert thermal_noise(cmap, 0.5 * conf, rng) == 0.0


def test_estimate_and_command_line(tmp_path, capsys):
    est = estimate_confusion(CountsModel.power_law(K, GAMMA), (6.0, 6.0, 0.0), size=512)
    # pixels clipped at 3 sigma against responses cut at 5 sigma: the same order
    assert 0.3 < est.sigma / est.condon_sigma < 1.5 and est.sigma < est.sigma_raw
    assert est.beams_per_source > 1.0 and est.thermal_rms is None
    from cianna_jax.cli import main

    s = np.geomspace(1e-5, 1e-2, 10)
    t = make_table({"flux_mid": s, "counts": K * s ** (2.5 - GAMMA)})
    write_catalogue(t, tmp_path / "counts.ecsv")
    out = tmp_path / "pd.ecsv"
    argv = ["confusion", "--counts", str(tmp_path / "counts.ecsv"), "--out", str(out),
            "--size", "256"]
    assert main(argv + ["--beam", "6,6", "--figure", str(tmp_path / "pd.png")]) == 0
    text = capsys.readouterr().out
    assert "confusion noise" in text and "Condon" in text and "beams per source" in text
    from cianna_jax.astro.catalogue import read_catalogue

    r = read_catalogue(out)
    m = r.meta["confusion"]
    assert m["sigma_jy"] > 0 and r["n"].sum() > 0 and (tmp_path / "pd.png").stat().st_size > 5000
    from .test_clustering import _field

    img_p, _, _ = _field(tmp_path, 13, hole=False)  # 10-60 uJy noise, 9" beam
    assert main(argv + ["--image", str(img_p)]) == 0
    text = capsys.readouterr().out
    assert "thermal" in text
    m = read_catalogue(out).meta["confusion"]
    assert 0 < m["thermal_rms_jy"] <= m["measured_rms_jy"]
    assert m["confusion_at_measured_jy"] == pytest.approx(
        math.sqrt(m["measured_rms_jy"] ** 2 - m["thermal_rms_jy"] ** 2))
    assert "adds" in text and "in quadrature at this noise" in text
    for extra, msg in ((["--beam", "6"], "--beam"), ([], "--beam BMAJ,BMIN or --image"),
                       (["--beam", "6,6", "--q", "0"], "q")):
        assert main(argv + extra) == 2
        assert msg in capsys.readouterr().err


def test_the_thermal_noise_of_an_image_with_confusion(tmp_path, capsys):
    # an image of 20 uJy thermal noise and the counts' sources (another draw): the thermal
    # noise recovered from its noise map's rms
    from astropy.io import fits
    from astropy.wcs import WCS

    from cianna_jax.cli import main

    model = CountsModel.power_law(K, GAMMA)
    cmap = confusion_map(model, (5.0, 5.0, 0.0), 1.2, np.random.default_rng(21), size=512,
                         s_min=1e-10, s_max=1e-3)
    img = cmap + 20e-6 * np.random.default_rng(22).standard_normal(cmap.shape)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [257, 257]
    w.wcs.cdelt = [-1.2 / 3600, 1.2 / 3600]
    hdr = w.to_header()
    hdr.update(BMAJ=6 / 3600, BMIN=6 / 3600, BPA=0.0, BUNIT="Jy/beam")
    fits.PrimaryHDU(img.astype(np.float32), hdr).writeto(tmp_path / "deep.fits")
    s = np.geomspace(1e-5, 1e-2, 10)
    write_catalogue(make_table({"flux_mid": s, "counts": K * s ** (2.5 - GAMMA)}),
                    tmp_path / "counts.ecsv")
    assert main(["confusion", "--counts", str(tmp_path / "counts.ecsv"), "--image",
                 str(tmp_path / "deep.fits"), "--out", str(tmp_path / "pd.ecsv"),
                 "--size", "512"]) == 0
    capsys.readouterr()
    from cianna_jax.astro.catalogue import read_catalogue

    m = read_catalogue(tmp_path / "pd.ecsv").meta["confusion"]
    assert m["measured_rms_jy"] > 21e-6  # the confusion shows in the noise map
    assert m["thermal_rms_jy"] == pytest.approx(20e-6, rel=0.05)
