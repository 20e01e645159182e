"""Cross-correlation of two populations (astro.cross_clustering, ``clustering --cross``):
pair counts and both estimators against brute force, the jackknife against a recount,
populations about shared clusters against the analytic cross-correlation, independent ones
against zero, and the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.clustering import log_edges  # noqa: E402
from cianna_jax.astro.cross_clustering import angular_cross_correlation  # noqa: E402
from cianna_jax.astro.sky import angular_separation  # noqa: E402

from .test_clustering import _field, _patch  # noqa: E402


def _counts(a, b, edges):
    s = angular_separation(a[0][:, None], a[1][:, None], b[0][None], b[1][None])
    return np.histogram(s.ravel(), edges)[0].astype(float)


def test_counts_and_estimators_against_brute_force():
    rng = np.random.default_rng(0)
    d1, r1, d2, r2 = _patch(120, rng), _patch(360, rng), _patch(90, rng), _patch(270, rng)
    edges = log_edges(0.02, 0.6, 5)
    ls = angular_cross_correlation(*d1, *r1, *d2, edges, ra_r2=r2[0], dec_r2=r2[1],
                                   jackknife=4, rr_split=1)
    dp = angular_cross_correlation(*d1, *r1, *d2, edges, jackknife=4)
    np.testing.assert_allclose(ls.dd, _counts(d1, d2, edges))
    np.testing.assert_allclose(ls.dr, _counts(d1, r2, edges))
    np.testing.assert_allclose(ls.rr, _counts(r1, r2, edges))
    np.testing.assert_allclose(ls.rd, _counts(r1, d2, edges))
    a, b = ls.dd / (120 * 90), ls.dr / (120 * 270)
    c, r = ls.rr / (360 * 270), ls.rd / (360 * 90)
    np.testing.assert_allclose(ls.w, (a - b - r + c) / c)
    np.testing.assert_allclose(dp.w, a / r - 1)
    assert np.all(np.isnan(dp.dr)) and ls.estimator == "cross landy-szalay"
    assert dp.estimator == "cross davis-peebles" and dp.meta["n_second"] == 90
    from cianna_jax.astro.clustering import jackknife_regions

    lab1, lab_r1, _ = jackknife_regions(*d1, *r1, 4)
    lab2 = jackknife_regions(*d2, *r1, 4)[0]
    lab_r2 = jackknife_regions(*r2, *r1, 4)[0]
    for i in (1, 2):
        again = angular_cross_correlation(
            d1[0][lab1 != i], d1[1][lab1 != i], r1[0][lab_r1 != i], r1[1][lab_r1 != i],
            d2[0][lab2 != i], d2[1][lab2 != i], edges, ra_r2=r2[0][lab_r2 != i],
            dec_r2=r2[1][lab_r2 != i], jackknife=2, rr_split=1)
        np.testing.assert_allclose(ls.jackknife_w[i], again.w, rtol=1e-12)
    t = ls.table()
    assert {"d1d2", "d1r2", "r1r2", "r1d2", "r1d2_norm"} <= set(t.colnames)
    with pytest.raises(ValueError, match="both or neither"):
        angular_cross_correlation(*d1, *r1, *d2, edges, ra_r2=r2[0])


def test_shared_clusters_and_independent_populations():
    # two populations about the same parents (sigma 0.02 deg each): w_12 = exp(-t^2 / 4 s^2)
    # / (4 pi s^2 n_parents), as the auto-correlation; about other parents: 0
    rng = np.random.default_rng(3)
    half, sigma, parents = 0.5, 0.02, 375
    grow = half + 6 * sigma
    n = rng.poisson(parents * (grow / half) ** 2)
    px, py = rng.uniform(-grow, grow, n), rng.uniform(-grow, grow, n)

    def children(mean):
        k = rng.poisson(mean, n)
        x = np.repeat(px, k) + rng.normal(0, sigma, k.sum())
        y = np.repeat(py, k) + rng.normal(0, sigma, k.sum())
        ok = (np.abs(x) < half) & (np.abs(y) < half)
        return 150.0 + x[ok] / math.cos(math.radians(2.0)), 2.0 + y[ok]

    a, b = children(3.0), children(2.0)
    r1 = _patch(10 * a[0].size, rng, half)
    edges = log_edges(0.004, 0.3, 8)
    c = angular_cross_correlation(*a, *r1, *b, edges, ra_r2=r1[0][::2], dec_r2=r1[1][::2])
    want = np.exp(-c.theta ** 2 / (4 * sigma ** 2)) / (4 * math.pi * sigma ** 2 * parents)
    assert np.all(np.abs((c.w - want) / c.w_err) < 3.5), (c.w, want)
    assert c.w[0] > 0.4
    u = _patch(b[0].size, rng, half)
    for kw in ({}, {"ra_r2": r1[0][::2], "dec_r2": r1[1][::2]}):
        z = angular_cross_correlation(*a, *r1, *u, edges, **kw)
        assert np.all(np.abs(z.w / z.w_err) < 3.5)


def test_command_line_cross(tmp_path, capsys):
    from cianna_jax.astro.catalogue import make_table, read_catalogue, write_catalogue
    from cianna_jax.cli import main

    img_p, rms_p, cat_p = _field(tmp_path, 6, hole=False)
    rng = np.random.default_rng(1)
    # galaxies uniform over a wider patch (half of them off the image), and their randoms
    for name, n in (("gal", 3000), ("gal_r", 15000)):
        ra, dec = _patch(n, rng, 0.4)
        write_catalogue(make_table({"RA": ra, "DEC": dec}), tmp_path / f"{name}.ecsv")
    out = tmp_path / "wx.ecsv"
    base = ["clustering", "--catalogue", str(cat_p), "--image", str(img_p), "--rms-map",
            str(rms_p), "--out", str(out), "--bins", "5", "--jackknife", "4",
            "--cross", str(tmp_path / "gal.ecsv"), "--uniform-too"]
    for extra, estimator in (([], "cross davis-peebles"),
                             (["--cross-randoms", str(tmp_path / "gal_r.ecsv")],
                              "cross landy-szalay")):
        assert main(base + extra) == 0
        text = capsys.readouterr().out
        t = read_catalogue(out)
        m = t.meta["clustering"]
        assert m["estimator"] == estimator and "cross-correlated with the" in text
        assert 0.14 * 3000 < m["n_cross"] < 0.21 * 3000  # those on the data (17%)
        assert np.all(np.abs(t["w"] / t["w_err"]) < 3.5)  # independent populations
        # the radio sources' noise pattern does not enter a cross-correlation with a
        # uniform population, whatever the randoms
        assert np.all(np.abs(t["w_uniform"] / t["w_uniform_err"]) < 3.5)
    for extra, msg in ((["--cross-randoms", str(tmp_path / "gal_r.ecsv")], "cross_randoms"),
                       (["--cross", str(cat_p), "--nz", str(tmp_path / "gal.ecsv")],
                        "clustering length")):
        argv = ["clustering", "--catalogue", str(cat_p), "--image", str(img_p), "--out",
                str(out)] + extra
        assert main(argv) == 2
        assert msg in capsys.readouterr().err
