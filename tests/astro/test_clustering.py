"""Angular clustering (astro.clustering, astro.randoms, astro.catalogue_clustering,
``cianna-jax clustering``): pair counts against a brute-force count, the jackknife against a
recount, a clustered (Thomas) process against its analytic w(theta), the power-law fit,
randoms that share a catalogue's selection on an image whose noise varies (Poisson sources:
w consistent with 0, where uniform randoms see clustering), the command line and its
errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError, make_table, write_catalogue  # noqa: E402
from cianna_jax.astro.catalogue_clustering import (  # noqa: E402
    format_clustering,
    measure_clustering,
)
from cianna_jax.astro.clustering import (  # noqa: E402
    angular_correlation,
    estimate_w,
    fit_power_law,
    log_edges,
)
from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.footprint import Footprint, MosaicFootprint  # noqa: E402
from cianna_jax.astro.randoms import Detection  # noqa: E402
from cianna_jax.astro.sky import angular_separation  # noqa: E402

N_PIX, PIX_ARCSEC = 400, 3.0


def _patch(n, rng, half=0.5):
    """Uniform positions on a square patch of side 2 ``half`` deg around (150, 2)."""
    dec = 2.0 + rng.uniform(-half, half, n)
    return 150.0 + rng.uniform(-half, half, n) / math.cos(math.radians(2.0)), dec


def _thomas(rng, parents, children, sigma_deg, half):
    """A Thomas process on the patch (parents also outside it, children outside cut)."""
    grow = half + 6 * sigma_deg
    n = rng.poisson(parents * (grow / half) ** 2)
    px, py = rng.uniform(-grow, grow, n), rng.uniform(-grow, grow, n)
    k = rng.poisson(children, n)
    x = np.repeat(px, k) + rng.normal(0, sigma_deg, k.sum())
    y = np.repeat(py, k) + rng.normal(0, sigma_deg, k.sum())
    ok = (np.abs(x) < half) & (np.abs(y) < half)
    return 150.0 + x[ok] / math.cos(math.radians(2.0)), 2.0 + y[ok]


def test_pair_counts_and_jackknife_against_brute_force():
    rng = np.random.default_rng(0)
    ra, dec = _patch(150, rng)
    ra_r, dec_r = _patch(400, rng)
    edges = log_edges(0.02, 0.6, 5)
    c = angular_correlation(ra, dec, ra_r, dec_r, edges, jackknife=4, rr_split=1)

    def ordered(a, b, same):
        s = angular_separation(a[0][:, None], a[1][:, None], b[0][None], b[1][None])
        if same:
            s[np.diag_indices_from(s)] = np.inf
        return np.histogram(s.ravel(), edges)[0].astype(float)

    d, r = (ra, dec), (ra_r, dec_r)
    np.testing.assert_allclose(c.dd, ordered(d, d, True))
    np.testing.assert_allclose(c.dr, ordered(d, r, False))
    np.testing.assert_allclose(c.rr, ordered(r, r, True))
    nd, nr = ra.size, ra_r.size
    dd, dr, rr = c.dd / (nd * (nd - 1)), c.dr / (nd * nr), c.rr / (nr * (nr - 1))
    np.testing.assert_allclose(c.w, (dd - 2 * dr + rr) / rr)
    for est, want in (("hamilton", dd * rr / dr ** 2 - 1), ("natural", dd / rr - 1)):
        np.testing.assert_allclose(estimate_w(c.dd, c.dr, c.rr, c.pairs, est), want)
    # RR within subsets of the randoms (every other one here: 2 per source by default)
    split = angular_correlation(ra, dec, ra_r, dec_r, edges, jackknife=4)
    halves = [(ra_r[s::2], dec_r[s::2]) for s in (0, 1)]
    np.testing.assert_allclose(split.rr, sum(ordered(h, h, True) for h in halves))
    assert split.pairs[2] == 2 * 200 * 199 and split.meta["rr_split"] == 2
    np.testing.assert_allclose(split.dr, c.dr)
    np.testing.assert_allclose(split.w, c.w, atol=3 * np.max(c.w_err))
    # each jackknife estimate is the measurement without one region's sources and randoms
    from cianna_jax.astro.clustering import jackknife_regions

    lab_d, lab_r, k = jackknife_regions(ra, dec, ra_r, dec_r, 4)
    assert k == 4 and np.bincount(lab_r).min() == 100  # equal random counts
    for i in (0, 3):
        again = angular_correlation(ra[lab_d != i], dec[lab_d != i], ra_r[lab_r != i],
                                    dec_r[lab_r != i], edges, jackknife=2, rr_split=1)
        np.testing.assert_allclose(c.jackknife_w[i], again.w, rtol=1e-12)
    # the pairs of regions counted on one thread or several: the same counts
    from cianna_jax.astro.clustering import block_counts, chord
    from cianna_jax.astro.crossmatch import unit_vectors

    v = unit_vectors(ra_r, dec_r)
    np.testing.assert_array_equal(block_counts(v, lab_r, None, None, chord(edges), 4),
                                  block_counts(v, lab_r, None, None, chord(edges), 4, workers=1))
    with pytest.raises(ValueError, match="workers"):
        block_counts(v, lab_r, None, None, chord(edges), 4, workers=0)
    dev = c.jackknife_w - c.jackknife_w.mean(0)
    np.testing.assert_allclose(c.w_err ** 2, 0.75 * (dev ** 2).sum(0))


def test_thomas_process_against_its_analytic_w():
    # children Gaussian (sigma 0.02 deg) about Poisson parents: w = exp(-t^2 / 4 s^2) /
    # (4 pi s^2 n_parents) in the flat-sky limit
    rng = np.random.default_rng(1)
    half, sigma, parents = 0.5, 0.02, 375  # 375 parents per deg^2: w(0) = 0.53
    ra, dec = _thomas(rng, parents, 4, sigma, half)
    ra_r, dec_r = _patch(10 * ra.size, rng, half)
    edges = log_edges(0.004, 0.3, 8)
    c = angular_correlation(ra, dec, ra_r, dec_r, edges)
    t = c.theta
    want = np.exp(-t ** 2 / (4 * sigma ** 2)) / (4 * math.pi * sigma ** 2 * parents)
    pull = (c.w - want) / c.w_err
    assert np.all(np.abs(pull) < 3.5), pull
    assert c.w[0] > 0.4 and abs(c.w[-1]) < 0.02
    # uniform sources: w within the errors of 0
    ra_u, dec_u = _patch(ra.size, rng, half)
    u = angular_correlation(ra_u, dec_u, ra_r, dec_r, edges)
    assert np.all(np.abs(u.w / u.w_err) < 3.5)
    # the integral constraint's separations reach the patch's diagonal
    assert c.ic_edges[-1] >= math.sqrt(2) * 2 * half * 0.98


def test_power_law_fit_recovers_its_parameters():
    rng = np.random.default_rng(2)
    ra, dec = _patch(300, rng)
    ra_r, dec_r = _patch(3000, rng)
    c = angular_correlation(ra, dec, ra_r, dec_r, log_edges(0.01, 0.5, 8))
    from dataclasses import replace

    from cianna_jax.astro.clustering import integral_constraint_factor

    truth = 2e-3 * c.theta ** -0.8 - 2e-3 * integral_constraint_factor(c, 0.8)
    err = 0.05 * np.abs(truth) + 1e-5
    fake = replace(c, w=truth, w_err=err)
    fixed = fit_power_law(fake, 1.8)
    assert fixed.amplitude == pytest.approx(2e-3, rel=1e-9) and fixed.chi2 < 1e-12
    assert fixed.integral_constraint == pytest.approx(2e-3 * integral_constraint_factor(c, 0.8))
    free = fit_power_law(fake, None)
    assert free.gamma == pytest.approx(1.8, abs=0.006) and not free.gamma_fixed
    assert free.amplitude == pytest.approx(2e-3, rel=0.05) and free.gamma_err > 0
    assert free.as_dict()["dof"] == 6 and fixed.as_dict()["dof"] == 7
    np.testing.assert_allclose(fixed(c.theta), truth, rtol=1e-9)
    with pytest.raises(ValueError, match="bins with pairs"):
        fit_power_law(replace(c, w=np.full(8, np.nan)), 1.8)


def test_detection_rules(tmp_path):
    hard = Detection.threshold(5.0)
    np.testing.assert_array_equal(hard.probability([4.99, 5.0, np.nan, 50]), [0, 1, 0, 1])
    t = make_table({"snr_min": [2.0, 4.0, 6.0], "snr_max": [4.0, 6.0, 8.0],
                    "completeness": [0.2, 0.6, 1.0]})
    (tmp_path / "inj").mkdir()
    write_catalogue(t, tmp_path / "inj" / "completeness_by_snr.ecsv")
    inj = Detection.from_injection(tmp_path / "inj")
    np.testing.assert_allclose(inj.probability([1.0, 2.0, 3.0, 4.0, 6.0, 9.0, np.nan]),
                               [0, 0.2, 0.2, 0.4, 0.8, 1.0, 0])
    assert "injection" in inj.describe() and "5" in hard.describe()
    with pytest.raises(FileNotFoundError, match="completeness_by_snr"):
        Detection.from_injection(tmp_path)
    write_catalogue(make_table({"snr_min": [2.0], "other": [1.0]}), tmp_path / "bad.ecsv")
    with pytest.raises(CatalogueError, match="completeness table by SNR"):
        Detection.from_injection(tmp_path / "bad.ecsv")
    with pytest.raises(ValueError, match="snr"):
        Detection.threshold(-1.0)


def _field(tmp_path, seed, *, hole=True):
    """A noise image whose rms rises 1 -> 6 (x10 uJy) from left to right, with a blank
    corner; its rms map; Poisson sources (a -1.5 power law of integral counts from 20
    uJy) found at 5 sigma; returns (image, rms map, catalogue) paths."""
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [N_PIX / 2 + 1, N_PIX / 2 + 1]
    w.wcs.cdelt = [-PIX_ARCSEC / 3600, PIX_ARCSEC / 3600]
    hdr = w.to_header()
    hdr.update(BMAJ=9 / 3600, BMIN=9 / 3600, BPA=0.0, BUNIT="Jy/beam")
    xx = np.arange(N_PIX)[None, :] * np.ones((N_PIX, 1))
    rms = (10e-6 * (1 + 5 * xx / N_PIX)).astype(np.float32)
    img = (rng.normal(size=rms.shape) * rms).astype(np.float32)
    if hole:
        img[:120, :120] = np.nan
    fits.PrimaryHDU(img, hdr).writeto(tmp_path / f"img{seed}.fits", overwrite=True)
    fits.PrimaryHDU(rms, hdr).writeto(tmp_path / f"rms{seed}.fits", overwrite=True)
    n = 30000
    x, y = rng.uniform(0, N_PIX - 1, n), rng.uniform(0, N_PIX - 1, n)
    s = 20e-6 * rng.uniform(size=n) ** (-1 / 1.5)
    r = 10e-6 * (1 + 5 * x / N_PIX)
    meas = s + rng.normal(size=n) * r
    keep = (meas >= 5 * r) & ~(hole & (x < 119.5) & (y < 119.5))
    ra, dec = w.wcs_pix2world(x[keep], y[keep], 0)
    t = make_table({"ra": ra, "dec": dec, "flux": meas[keep], "peak": meas[keep]},
                   meta={"noise_box": 50})
    write_catalogue(t, tmp_path / f"cat{seed}.ecsv")
    return tmp_path / f"img{seed}.fits", tmp_path / f"rms{seed}.fits", tmp_path / f"cat{seed}.ecsv"


def test_footprint_follows_the_data_and_the_noise(tmp_path):
    img_p, rms_p, _ = _field(tmp_path, 3)
    with open_image(img_p) as img, open_image(rms_p) as rms:
        fp = Footprint(img, rms_map=rms)
        rng = np.random.default_rng(0)
        x, y = fp.to_pixels(*fp.sample(20000, rng))
        assert not np.any((x < 119.5) & (y < 119.5))  # the blank corner
        # uniform elsewhere: the blank corner's share of the image is 9%
        assert np.mean(x < 200) == pytest.approx((200 * 400 - 120 * 120) / (400 * 400 - 14400),
                                                 abs=0.015)
        np.testing.assert_allclose(fp.sigma_pixels(np.array([0.0, 399.0]),
                                                   np.array([300.0, 300.0])),
                                   [10e-6, 10e-6 * (1 + 5 * 399 / 400)], rtol=1e-3)
        assert fp.area_deg2(rng) == pytest.approx((160000 - 14400) * (PIX_ARCSEC / 3600) ** 2,
                                                  rel=0.01)
        est = Footprint(img, noise_box=50)  # the noise map estimated from the image
        two = (np.array([50.0, 350.0]), np.array([300.0, 300.0]))
        np.testing.assert_allclose(est.sigma_pixels(*two), fp.sigma_pixels(*two), rtol=0.12)
        from cianna_jax.astro.sky import pixel_to_sky

        sky = pixel_to_sky(img.wcs, *two)  # the same on the sky
        np.testing.assert_allclose(fp.sigma(*sky), fp.sigma_pixels(*two), rtol=1e-9)
        from cianna_jax.astro.primary_beam import primary_beam

        pb = Footprint(img, rms_map=rms, primary_beam=primary_beam("gaussian:20"), pb_min=0.5)
        mid = (np.array([200.0]), np.array([200.0]))
        assert pb.sigma_pixels(*mid)[0] == pytest.approx(fp.sigma_pixels(*mid)[0], rel=1e-3)
        corner = (np.array([399.0]), np.array([399.0]))
        assert fp.contains_pixels(*corner)[0] and not pb.contains_pixels(*corner)[0]
        # the noisiest part masked: rms <= 35 uJy is x < 200
        masked = Footprint(img, rms_map=rms, max_rms=35e-6)
        x, _ = masked.to_pixels(*masked.sample(5000, rng))
        assert x.max() < 200.5 and x.max() > 190
        assert masked.area_deg2(rng) == pytest.approx((80000 - 14400) * (PIX_ARCSEC / 3600) ** 2,
                                                      rel=0.02)


def test_randoms_take_out_the_noise_pattern(tmp_path):
    img_p, rms_p, cat_p = _field(tmp_path, 4)
    res = measure_clustering(cat_p, img_p, rms_map=rms_p, flux_min=60e-6, bins=6,
                             theta_min=0.5 / 60, theta_max=8 / 60, jackknife=9, naive=True,
                             randoms_per_source=8)
    c, flat = res.correlation, res.naive
    assert c.meta["n_selected"] > 500 and c.meta["jackknife_regions"] == 9
    chi2 = float(np.sum((c.w / c.w_err) ** 2))
    assert chi2 < 4.0 * c.w.size and np.all(np.abs(c.w) < 0.05), c.w  # no clustering
    # against uniform randoms the noise pattern shows as clustering (w 0.4-0.7 here)
    assert np.all(flat.w[:4] > 0.3) and np.mean(flat.w / flat.w_err) > 2.0, flat.w
    assert np.all(flat.w > c.w)
    # the randoms share the sources' selection: the sources crowd to the low-noise side,
    # and so do the randoms
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.sky import sky_to_pixel

    cat = read_catalogue(cat_p)
    with open_image(img_p) as img:
        xd, _ = sky_to_pixel(img.wcs, np.asarray(cat["ra"])[res.selected],
                             np.asarray(cat["dec"])[res.selected])
        xr, _ = sky_to_pixel(img.wcs, res.randoms.ra, res.randoms.dec)
    err = 1.25 * 115.0 / math.sqrt(xd.size)  # the median's error (x's spread ~115 px)
    assert abs(np.median(xr) - np.median(xd)) < 3 * err
    assert np.median(xd) < 170.0  # (uniform: 215)
    t = res.table()
    assert t["theta"].unit == "deg" and "w_uniform" in t.colnames
    assert t.meta["clustering"]["power_law"]["gamma"] == 1.8
    text = format_clustering(res)
    assert "randoms with their selection" in text and "w uniform" in text


def test_a_subpopulations_clustering(tmp_path, capsys):
    # --select: the rows of one kind only, their randoms drawn from their own fluxes
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.cli import main

    img_p, rms_p, cat_p = _field(tmp_path, 6, hole=False)
    t = read_catalogue(cat_p)
    t["kind"] = np.where(np.arange(len(t)) % 2 == 0, "a", "b")
    write_catalogue(t, tmp_path / "kinds.ecsv")
    counts = {}
    for sel in (None, "kind=a"):
        out = tmp_path / f"w_{sel}.ecsv"
        argv = ["clustering", "--catalogue", str(tmp_path / "kinds.ecsv"), "--image",
                str(img_p), "--rms-map", str(rms_p), "--out", str(out), "--bins", "3",
                "--jackknife", "4", "--no-fit"] + (["--select", sel] if sel else [])
        assert main(argv) == 0
        counts[sel] = read_catalogue(out).meta["clustering"]["n_data"]
    capsys.readouterr()
    assert abs(counts["kind=a"] - counts[None] / 2) <= 0.1 * counts[None]


def test_command_line_and_errors(tmp_path, capsys):
    from cianna_jax.cli import main

    img_p, rms_p, cat_p = _field(tmp_path, 5, hole=False)
    out, rnd = tmp_path / "w.ecsv", tmp_path / "r.fits"
    write_catalogue(make_table({"z": [0.5, 1.0, 1.5], "n": [1.0, 2.0, 1.0]}),
                    tmp_path / "nz.ecsv")
    assert main(["clustering", "--catalogue", str(cat_p), "--image", str(img_p),
                 "--rms-map", str(rms_p), "--out", str(out), "--randoms-out", str(rnd),
                 "--bins", "4", "--jackknife", "4", "--gamma", "free",
                 "--nz", str(tmp_path / "nz.ecsv"), "--figure", str(tmp_path / "w.png")]) == 0
    text = capsys.readouterr().out
    assert "w(theta) ->" in text and "randoms ->" in text and "gamma =" in text
    assert "clustering length (Limber, N(z) median z 1.00" in text
    from cianna_jax.astro.catalogue import read_catalogue

    t, r = read_catalogue(out), read_catalogue(rnd)
    assert len(t) == 4 and len(r) >= 10 * t.meta["clustering"]["n_data"]
    fit, r0 = t.meta["clustering"]["power_law"], t.meta["clustering"]["clustering_length"]
    from cianna_jax.astro.limber import limber_kernel, r0_from_amplitude

    k = limber_kernel(np.array([0.5, 1.0, 1.5]), np.array([1.0, 2.0, 1.0]), fit["gamma"])
    if fit["amplitude"] > 0:
        assert r0["r0_mpc"] == pytest.approx(r0_from_amplitude(fit["amplitude"], fit["gamma"],
                                                               k))
    else:  # (a field without clustering: the amplitude's sign is the noise's)
        assert math.isnan(r0["r0_mpc"]) and "no r0 (the amplitude is not positive)" in text
    assert str(r["flux"].unit) == "Jy" and (tmp_path / "w.png").stat().st_size > 10000
    # the default flux cut: a peak found over half the area (5 x 35 uJy at mid-image)
    assert t.meta["clustering"]["flux_min_jy"] == pytest.approx(5 * 35e-6, rel=0.05)
    # an injection's completeness by SNR that steps at 5 keeps the same randoms' share
    inj = tmp_path / "inj"
    inj.mkdir()
    write_catalogue(make_table({"snr_min": [0.0, 4.99, 5.01], "snr_max": [4.99, 5.01, 1e3],
                                "completeness": [0.0, 0.5, 1.0]}),
                    inj / "completeness_by_snr.ecsv")
    assert main(["clustering", "--catalogue", str(cat_p), "--image", str(img_p),
                 "--rms-map", str(rms_p), "--out", str(out), "--bins", "4", "--jackknife",
                 "4", "--injection", str(inj), "--no-fit"]) == 0
    assert "completeness by SNR of injection" in capsys.readouterr().out
    by_inj = read_catalogue(out)
    assert "power_law" not in by_inj.meta["clustering"]
    np.testing.assert_allclose(by_inj["w"], t["w"], atol=3 * float(np.max(t["w_err"])))
    for argv, msg in ((["--gamma", "steep"], "--gamma: a number or 'free'"),
                      (["--flux-min", "1.0"], "too few to count"),
                      (["--theta-min", "10", "--theta-max", "5"], "theta_max"),
                      (["--out", str(tmp_path / "w.xyz")], "w.xyz"),
                      (["--redshifts", str(cat_p)], "--z-column NAME: one of them"),
                      (["--nz", str(tmp_path / "nz.ecsv"), "--no-fit"], "power-law fit")):
        base = ["clustering", "--catalogue", str(cat_p), "--image", str(img_p),
                "--out", str(out)]
        if "--out" in argv:
            base = base[:-2]
        assert main(base + argv) == 2
        assert msg in capsys.readouterr().err
    write_catalogue(make_table({"ra": [150.0], "dec": [2.0]}), tmp_path / "noflux.ecsv")
    assert main(["clustering", "--catalogue", str(tmp_path / "noflux.ecsv"), "--image",
                 str(img_p), "--out", str(out)]) == 2
    assert "ra, dec and flux are needed" in capsys.readouterr().err


def _mosaic(tmp_path, seed=7, n_pix=300, shift=200):
    """Two overlapping images (centres ``shift`` pixels apart in RA), each with noise rising
    4x from its own centre to its corners; Poisson sources over their union, found at 5 times
    the rms of the image whose centre is nearest (the merged catalogue of a mosaic)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    paths, wcss, cen = [], [], []
    yy, xx = np.mgrid[0:n_pix, 0:n_pix]
    c = (n_pix - 1) / 2
    rel = 1 + 3 * ((xx - c) ** 2 + (yy - c) ** 2) / (2 * c * c)  # 1 -> 4 at the corners
    for k in range(2):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.crval = [150.0 + k * shift * PIX_ARCSEC / 3600 / math.cos(math.radians(2.0)), 2.0]
        w.wcs.crpix = [n_pix / 2 + 0.5, n_pix / 2 + 0.5]
        w.wcs.cdelt = [-PIX_ARCSEC / 3600, PIX_ARCSEC / 3600]
        hdr = w.to_header()
        hdr.update(BMAJ=9 / 3600, BMIN=9 / 3600, BPA=0.0, BUNIT="Jy/beam")
        rms = (10e-6 * rel).astype(np.float32)
        fits.PrimaryHDU((rng.normal(size=rms.shape) * rms).astype(np.float32), hdr).writeto(
            tmp_path / f"m{k}.fits", overwrite=True)
        fits.PrimaryHDU(rms, hdr).writeto(tmp_path / f"m{k}_rms.fits", overwrite=True)
        paths.append((tmp_path / f"m{k}.fits", tmp_path / f"m{k}_rms.fits"))
        wcss.append(w)
        cen.append(w.wcs.crval.copy())
    n = 40000
    ra = rng.uniform(149.85, 150.35, n)  # (the images span 149.875-150.29)
    dec = rng.uniform(1.85, 2.15, n)
    best, rms_at = np.full(n, -1), np.full(n, np.nan)
    dist = np.full(n, np.inf)
    for k, w in enumerate(wcss):
        x, y = w.wcs_world2pix(ra, dec, 0)
        on = (x > -0.5) & (x < n_pix - 0.5) & (y > -0.5) & (y < n_pix - 0.5)
        d = angular_separation(ra, dec, *cen[k])
        take = on & (d < dist)
        best[take], dist[take] = k, d[take]
        rms_at[take] = 10e-6 * (1 + 3 * ((x[take] - c) ** 2 + (y[take] - c) ** 2) / (2 * c * c))
    s = 20e-6 * rng.uniform(size=n) ** (-1 / 1.5)
    meas = s + rng.normal(size=n) * np.nan_to_num(rms_at)
    keep = (best >= 0) & (meas >= 5 * rms_at)
    write_catalogue(make_table({"ra": ra[keep], "dec": dec[keep], "flux": meas[keep],
                                "peak": meas[keep]}), tmp_path / "mosaic.ecsv")
    return paths, tmp_path / "mosaic.ecsv", best


def test_a_mosaic_shares_its_sky_by_the_nearest_centre(tmp_path, capsys):
    paths, cat_p, _ = _mosaic(tmp_path)
    with open_image(paths[0][0]) as a, open_image(paths[0][1]) as ar, \
            open_image(paths[1][0]) as b, open_image(paths[1][1]) as br:
        mos = MosaicFootprint([Footprint(a, rms_map=ar), Footprint(b, rms_map=br)])
        rng = np.random.default_rng(0)
        # the union: two 300x300 images overlapping by 100 columns
        assert mos.area_deg2(rng) == pytest.approx(500 * 300 * (PIX_ARCSEC / 3600) ** 2,
                                                   rel=0.01)
        ra, dec = mos.sample(30000, rng)
        own = mos.owner(ra, dec)
        assert set(np.unique(own)) == {0, 1} and np.mean(own == 1) == pytest.approx(0.5,
                                                                                    abs=0.02)
        # in the overlap (x 0-100 of the first, whose centre is at 149.5 and the second's at
        # -50.5: RA grows to the left) each position takes its nearest centre's image
        x0, _ = mos.parts[0].to_pixels(ra, dec)
        assert np.all(own[x0 > 50] == 0) and np.all(own[x0 < 49] == 1)
        assert np.sum((x0 > -0.5) & (x0 < 49)) > 2000
        k = own == 1
        np.testing.assert_allclose(mos.sigma(ra[k], dec[k]), mos.parts[1].sigma(ra[k], dec[k]))
        assert not mos.contains(np.array([149.0]), np.array([2.0]))[0]
    res = measure_clustering(cat_p, [p for p, _ in paths], rms_map=[r for _, r in paths],
                             flux_min=60e-6, bins=5, theta_min=0.5 / 60, theta_max=6 / 60,
                             jackknife=9, naive=True, randoms_per_source=5)
    c, flat = res.correlation, res.naive
    assert c.meta["n_selected"] > 2000 and "m1.fits" in c.meta["image"]
    assert c.meta["area_deg2"] == pytest.approx(500 * 300 * (PIX_ARCSEC / 3600) ** 2, rel=0.02)
    assert np.all(np.abs(c.w / c.w_err) < 3.5) and np.all(np.abs(c.w) < 0.06), c.w
    assert np.all(flat.w[:3] > c.w[:3] + 0.05), flat.w  # the two beams' pattern, unmodelled
    from cianna_jax.cli import main

    argv = ["clustering", "--catalogue", str(cat_p), "--out", str(tmp_path / "w.ecsv")]
    for p, _ in paths:
        argv += ["--image", str(p)]
    assert main(argv + ["--rms-map", str(paths[0][1])] * 3) == 2
    assert "rms_map: one, or one per image (2); received 3" in capsys.readouterr().err
