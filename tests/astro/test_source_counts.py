"""Differential source counts (astro.source_counts, ``cianna-jax counts``): a power law
counted back, the weights, the completeness read off an injection, the area of an image's
data, the files and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cianna_jax.astro.catalogue import CatalogueError, make_table, read_catalogue, write_catalogue
from cianna_jax.astro.fits_image import open_image
from cianna_jax.astro.source_counts import (
    ARCSEC_PER_RAD,
    completeness_at,
    count_catalogue,
    count_edges,
    image_area_sr,
    read_completeness,
    source_counts,
)
from cianna_jax.astro.synthetic import synthetic_field, write_fits


def test_a_power_law_is_counted_back():
    """dN/dS = K S^-1.8 drawn over a known area: every bin's Euclidean counts within 3 sigma
    of the law's (at the bin's geometric middle, integrated over the bin)."""
    rng = np.random.default_rng(0)
    a, lo, hi, n, area = 1.8, 1e-5, 1e-2, 40000, 1e-3
    u = rng.random(n)
    s = (lo ** (1 - a) + u * (hi ** (1 - a) - lo ** (1 - a))) ** (1 / (1 - a))
    k = n * (a - 1) / (lo ** (1 - a) - hi ** (1 - a)) / area  # dN/dS = k S^-a per sr
    edges = np.geomspace(lo, hi, 13)
    c = source_counts(s, area, edges=edges)
    assert c.n.sum() == n and np.allclose(c.n_corrected, c.n) and c.complete.all()
    per_bin = k * (edges[1:] ** (1 - a) - edges[:-1] ** (1 - a)) / (1 - a)  # exact counts
    eu, err = c.euclidean
    want = per_bin / np.diff(edges) * c.middle ** 2.5
    assert np.all(np.abs(eu - want) <= 3 * err)
    np.testing.assert_allclose(c.dnds * c.middle ** 2.5, eu)
    assert c.table()["counts"].unit == "Jy(3/2) / sr"


def test_weights_are_reliability_over_completeness():
    flux = np.array([1e-4, 1.2e-4, 1.1e-4, 5e-3, np.nan, -1.0])
    rel = np.array([0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    comp = (np.array([1e-5, 1e-3, 1e-1]), np.array([0.5, 1.0]))
    c = source_counts(flux, 1.0, edges=np.array([5e-5, 5e-4, 5e-2]), reliability=rel,
                      completeness=comp)
    w0 = np.array([0.5, 1.0, 1.0]) / completeness_at(flux[:3], *comp)
    assert c.n.tolist() == [3, 1]  # NaN and negative fluxes left out
    assert c.n_corrected[0] == pytest.approx(w0.sum())
    assert c.n_corrected_err[0] == pytest.approx(math.sqrt(np.sum(w0 ** 2)))
    assert c.n_corrected[1] == pytest.approx(1.0 / completeness_at(np.array([5e-3]), *comp)[0])
    assert 1.0 < c.n_corrected[1] < 2.0  # between the bins' middles: interpolated
    assert c.complete.tolist() == [True, True]
    strict = source_counts(flux, 1.0, edges=np.array([5e-5, 5e-4, 5e-2]), completeness=comp,
                           min_completeness=0.9)
    assert strict.complete.tolist() == [False, True]


def test_completeness_at_interpolates_in_log_flux():
    edges = np.array([1.0, 10.0, 100.0, 1000.0])
    values = np.array([0.2, np.nan, 1.0])
    got = completeness_at(np.array([0.5, math.sqrt(10), math.sqrt(1e5), 100.0, 1e4, 0.0]),
                          edges, values)
    assert got[0] == 0.2 and got[2] == 1.0 and got[4] == 1.0  # the ends held
    assert got[1] == pytest.approx(0.2)  # the first bin's middle
    assert got[3] == pytest.approx(0.2 + 0.8 * (math.log(100) - math.log(math.sqrt(10)))
                                   / (math.log(math.sqrt(1e5)) - math.log(math.sqrt(10))))
    assert math.isnan(got[5])
    with pytest.raises(ValueError, match="edges"):
        completeness_at([1.0], np.array([1.0, 10.0]), values)
    with pytest.raises(ValueError, match="no bin"):
        completeness_at([1.0], edges, np.full(3, np.nan))


def test_count_edges_and_errors():
    e = count_edges(np.array([3e-5, 2e-3]))
    assert e[0] <= 3e-5 < 2e-3 < e[-1]
    np.testing.assert_allclose(np.diff(np.log10(e)), 0.2)
    with pytest.raises(ValueError, match="no positive"):
        count_edges(np.array([-1.0, np.nan]))
    with pytest.raises(ValueError, match="area_sr"):
        source_counts(np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="reliability"):
        source_counts(np.array([1.0, 2.0]), 1.0, reliability=np.ones(3))
    with pytest.raises(ValueError, match="edges"):
        source_counts(np.array([1.0]), 1.0, edges=np.array([2.0, 1.0]))


def test_image_area_counts_the_data(tmp_path):
    f = synthetic_field(96, seed=1, density=0.0005, nan_border=5)
    write_fits(tmp_path / "f.fits", f)
    with open_image(tmp_path / "f.fits") as img:
        area = image_area_sr(img, rows=7)
        finite = np.count_nonzero(np.isfinite(img.read()))
        assert finite == (96 - 10) ** 2
        assert area == pytest.approx(finite * (img.pixel_scale / ARCSEC_PER_RAD) ** 2)


def test_count_catalogue_and_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from cianna_jax.cli import main

    f = synthetic_field(96, seed=2, density=0.0005)
    write_fits(tmp_path / "f.fits", f)
    rng = np.random.default_rng(3)
    flux = 10 ** rng.uniform(-4.5, -2.5, 300)
    write_catalogue(make_table({"flux": flux, "reliability": np.full(300, 0.8)}),
                    tmp_path / "cat.ecsv")
    comp_edges = np.array([1e-5, 1e-4, 1e-3, 1e-2])
    write_catalogue(make_table({"flux_min": comp_edges[:-1], "flux_max": comp_edges[1:],
                                "completeness": np.array([0.25, 0.5, 1.0])},
                               units={"flux_min": "Jy", "flux_max": "Jy"}),
                    tmp_path / "completeness_by_flux.ecsv")
    e, v = read_completeness(tmp_path)  # the folder, as inject writes it
    np.testing.assert_allclose(e, comp_edges)
    c = count_catalogue(tmp_path / "cat.ecsv", area_deg2=2.0, completeness=tmp_path)
    assert c.area_sr == pytest.approx(2.0 * (math.pi / 180) ** 2)
    w = 0.8 / completeness_at(flux, e, v)
    assert c.n_corrected.sum() == pytest.approx(w.sum())
    assert main(["counts", "--catalogue", str(tmp_path / "cat.ecsv"), "--image",
                 str(tmp_path / "f.fits"), "--completeness", str(tmp_path), "--out",
                 str(tmp_path / "counts.ecsv"), "--figure", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "300 sources over" in out and "corrected by the injection" in out
    t = read_catalogue(tmp_path / "counts.ecsv")
    assert t["n"].sum() == 300 and t.meta["area_deg2"] > 0 and (tmp_path / "c.png").exists()
    with open_image(tmp_path / "f.fits") as img:
        assert t.meta["area_sr"] == pytest.approx(image_area_sr(img))
    # errors: both areas, none, a table that is no completeness table
    for bad in (["--image", str(tmp_path / "f.fits"), "--area-deg2", "1"], []):
        assert main(["counts", "--catalogue", str(tmp_path / "cat.ecsv"), "--out",
                     str(tmp_path / "x.ecsv"), *bad]) == 2
        assert "area" in capsys.readouterr().err
    with pytest.raises(CatalogueError, match="not a completeness table"):
        read_completeness(tmp_path / "cat.ecsv")
    # another finder's catalogue: PyBDSF's Total_flux, here in mJy
    write_catalogue(make_table({"Total_flux": flux * 1e3}, units={"Total_flux": "mJy"}),
                    tmp_path / "bdsf.ecsv")
    other = count_catalogue(tmp_path / "bdsf.ecsv", area_deg2=2.0)
    np.testing.assert_array_equal(other.n, count_catalogue(tmp_path / "cat.ecsv",
                                                           area_deg2=2.0).n)
    write_catalogue(make_table({"x": flux}), tmp_path / "noflux.ecsv")
    with pytest.raises(CatalogueError, match="no flux column"):
        count_catalogue(tmp_path / "noflux.ecsv", area_deg2=2.0)


def test_a_subpopulation_counted_over_the_same_area(tmp_path, capsys):
    # --select: the rows of one class only (a classifier's morph_class, a truth's class)
    from cianna_jax.astro.catalogue import selected_rows
    from cianna_jax.cli import main

    rng = np.random.default_rng(2)
    flux = 10 ** rng.uniform(-4, -2, 300)
    kind = np.where(rng.uniform(size=300) < 0.3, "fr2", "sfg")
    t = make_table({"flux": flux, "morph_class": kind, "code": np.where(kind == "fr2", 1, 3)})
    write_catalogue(t, tmp_path / "all.ecsv")
    write_catalogue(t[kind == "fr2"], tmp_path / "fr2.ecsv")
    sub = count_catalogue(tmp_path / "all.ecsv", area_deg2=1.0, select="morph_class=fr2")
    alone = count_catalogue(tmp_path / "fr2.ecsv", area_deg2=1.0)
    assert int(sub.n.sum()) == int(np.sum(kind == "fr2"))
    np.testing.assert_array_equal(sub.n[np.isin(sub.edges[:-1], alone.edges[:-1])],
                                  alone.n[np.isin(alone.edges[:-1], sub.edges[:-1])])
    assert len(selected_rows(t, "code=1, 3")) == 300 and len(selected_rows(t, None)) == 300
    for bad, msg in (("morph_class", "COLUMN=VALUE"), ("kind=x", "no column 'kind'"),
                     ("morph_class=fr1", "no row")):
        with pytest.raises(ValueError, match=msg):
            selected_rows(t, bad)
    assert main(["counts", "--catalogue", str(tmp_path / "all.ecsv"), "--area-deg2", "1",
                 "--select", "morph_class=sfg", "--out", str(tmp_path / "c.ecsv")]) == 0
    assert f"{int(np.sum(kind == 'sfg'))} sources over" in capsys.readouterr().out
