"""Gaussians grouped into sources by PyBDSF's rule, their S_Code, and the source list:
hand-placed Gaussians with known answers, the moments of the summed model, a real
catalogue's single-Gaussian sources kept exactly, the command lines and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")
from astropy.table import Table  # noqa: E402

from cianna_jax.astro import sources as S  # noqa: E402
from cianna_jax.astro.catalogue import CatalogueError, read_catalogue  # noqa: E402
from cianna_jax.astro.source_list import source_list  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

F = S.FWHM


def _table(rows, rms=1.0):
    """Gaussians in pixels (no WCS: east is -x): x, y, peak, FWHM axes, pa, flux."""
    t = Table(rows=rows, names=("x", "y", "peak", "bmaj", "bmin", "pa", "flux"))
    t["rms"] = rms
    t["flux_err"] = 0.1 * np.asarray(t["flux"])
    t["id"] = np.arange(1, len(t) + 1)
    return t


#: the cases of the rule, each far from the others (sigma 1 px)
CASES = _table([
    (0, 0, 20, F, F, 0, 20), (0, 0.6 * F, 20, F, F, 0, 20),       # no dip between: one, M
    (100, 0, 50, F, F, 0, 50), (100, 1.5 * F, 50, F, F, 0, 50),   # a deep dip: C and C
    (200, 0, 6, F, F, 0, 6), (200, 0.95 * F, 6, F, F, 0, 6),      # shallow and close: M
    (300, 0, 100, F, F, 0, 100), (300, 2.5, 5, F, F, 0, 5),       # on the bright's shoulder
    (400, 0, 20, F, F, 0, 20),                                    # alone: S
    (500, 0, 2, F, F, 0, 2), (500, 0.6 * F, 2, F, F, 0, 2),       # below 3 rms: two islands
])


def test_the_rule_on_hand_placed_gaussians():
    t = S.with_sources(CASES.copy())
    assert list(t["source_id"]) == [1, 1, 2, 3, 4, 4, 5, 5, 6, 7, 8]
    assert "".join(t["s_code"]) == "MMCCMMMMSSS"
    assert t.meta["sources"]["group_tol"] == 1.0 and t.meta["sources"]["thresh_isl"] == 3.0
    # the deep dip's pair (1.5 FWHM apart, the sum 29 rms under the peaks between them):
    # still two sources at group_tol 2 (a dip of at most 6 rms allowed), one at 20 (60 rms)
    t2 = S.with_sources(CASES.copy(), group_tol=2.0)
    assert t2["source_id"][2] != t2["source_id"][3]
    t20 = S.with_sources(CASES.copy(), group_tol=20.0)
    assert t20["source_id"][2] == t20["source_id"][3]


def test_grouping_does_not_depend_on_the_row_order():
    perm = np.random.default_rng(3).permutation(len(CASES))
    g, _ = S.table_gaussians(CASES[perm])
    src, isl = S.group_components(g)
    want, _ = S.group_components(S.table_gaussians(CASES)[0])
    # the same partition: the i-th row of the permuted table with the perm[i]-th of the first
    same = src[:, None] == src[None, :]
    assert np.array_equal(same, want[perm][:, None] == want[perm][None, :])


def test_a_gaussian_without_a_size_stays_alone():
    t = CASES[:2].copy()
    t["bmaj"][1] = np.nan
    t = S.with_sources(t)
    assert list(t["source_id"]) == [1, 2] and list(t["s_code"]) == ["S", "S"]


def test_the_source_list_of_two_gaussians_is_their_summed_model():
    """Two round Gaussians (sigma 2 arcsec, peaks 10 mJy/beam) 3 arcsec apart east-west
    at dec 30: flux summed, centroid between them, moments sigma^2 + d^2/4 along the line
    joining them (pa 90) over the whole model (``sizes="model"``), a little less over its
    island (PyBDSF's, the default), peak of the sum at the middle."""
    sig, d, dec = 2.0, 3.0, 30.0
    dra = d / 3600.0 / math.cos(math.radians(dec))
    t = Table({"ra": [150.0, 150.0 + dra], "dec": [dec, dec], "peak": [0.01, 0.01],
               "rms": [1e-4, 1e-4], "bmaj": [sig * F] * 2, "bmin": [sig * F] * 2,
               "pa": [0.0, 0.0], "flux": [0.02, 0.02], "flux_err": [3e-4, 4e-4],
               "ra_err": [0.1, 0.2], "dec_err": [0.1, 0.2], "id": [1, 2]})
    t.meta.update(beam_bmaj_arcsec=1.5 * F, beam_bmin_arcsec=1.5 * F, beam_bpa_deg=0.0)
    sl = source_list(S.with_sources(t), sizes="model")
    assert len(sl) == 1 and sl["s_code"][0] == "M" and sl["n_components"][0] == 2
    r = sl[0]
    assert r["flux"] == pytest.approx(0.04) and r["flux_err"] == pytest.approx(5e-4)
    assert r["ra"] == pytest.approx(150.0 + dra / 2, abs=1e-9)
    assert r["dec"] == pytest.approx(dec, abs=1e-9)
    assert r["ra_err"] == pytest.approx(math.hypot(0.05, 0.1))
    assert r["bmaj"] == pytest.approx(F * math.sqrt(sig**2 + d**2 / 4), rel=1e-6)
    assert r["bmin"] == pytest.approx(F * sig, rel=1e-6)
    assert r["pa"] == pytest.approx(90.0, abs=1e-6)
    assert r["peak"] == pytest.approx(0.02 * math.exp(-(d / 2) ** 2 / (2 * sig**2)), rel=1e-6)
    assert r["snr"] == pytest.approx(r["peak"] / 1e-4)
    assert r["bmaj_deconv"] == pytest.approx(F * math.sqrt(sig**2 + d**2 / 4 - 1.5**2), rel=1e-6)
    assert r["bmin_deconv"] == pytest.approx(F * math.sqrt(sig**2 - 1.5**2), rel=1e-6)
    assert r["pa_deconv"] == pytest.approx(90.0, abs=1e-6)
    assert r["component_ids"] == "1,2"
    assert sl["bmaj"].unit == "arcsec" and sl.meta["sources"]["group_tol"] == 1.0
    # over the island (the sum above 3 rms = 3% of a peak): the faint wings left out
    isl = source_list(S.with_sources(t))[0]
    assert 0.95 * r["bmaj"] < isl["bmaj"] < r["bmaj"] and 0.95 * r["bmin"] < isl["bmin"] < r["bmin"]
    assert isl["pa"] == pytest.approx(90.0, abs=1e-3) and isl["flux"] == r["flux"]
    with pytest.raises(ValueError, match="sizes"):
        source_list(S.with_sources(t), sizes="moments")


def test_a_catalogue_keeps_its_single_gaussians_exactly(field, tiny_model):
    from cianna_jax.astro.pipeline import find_sources

    res = find_sources(field[0], tiny_model, progress=False)
    t = res.table
    assert {"island_id", "source_id", "s_code"} <= set(t.colnames) and "sources" in t.meta
    # one island per source at least: a source's Gaussians share their island
    for sid in np.unique(t["source_id"]):
        assert len(np.unique(t["island_id"][t["source_id"] == sid])) == 1
    assert t["source_id"][0] == 1 and set(t["s_code"]) <= {"S", "C", "M"}
    sl = source_list(t)
    assert len(sl) == len(np.unique(t["source_id"]))
    assert sl["flux"].sum() == pytest.approx(t["flux"].sum())
    one = sl[sl["n_components"] == 1]
    rows = t[np.array([int(i) for i in one["component_ids"]]) - 1]
    for name in ("flux", "ra", "dec", "bmaj", "bmin", "bmaj_deconv", "bmin_deconv", "peak"):
        np.testing.assert_allclose(one[name], rows[name], rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(one["resolved"], rows["resolved"])
    shaped = np.asarray(rows["bmin_deconv"]) > 0.05  # (the angle of a line, or a point, is
    d_pa = (np.asarray(one["pa_deconv"]) - np.asarray(rows["pa_deconv"]) + 90) % 180 - 90
    assert shaped.any() and np.all(np.abs(d_pa[shaped]) < 1e-3)  # not defined)
    assert np.all(sl["resolved"][sl["n_components"] > 1])


def test_refusals():
    with pytest.raises(CatalogueError, match="'rms'"):
        S.with_sources(Table({"x": [1.0], "y": [1.0], "peak": [1.0], "bmaj": [1.0],
                              "bmin": [1.0], "pa": [0.0]}))
    for bad in (0, -1, math.nan, "x", True):
        with pytest.raises(ValueError, match="group_tol"):
            S.with_sources(CASES.copy(), group_tol=bad)


def test_pybdsf_gaussian_list_columns():
    """PyBDSF's gaul names and units (sizes in degrees) are read through the aliases."""
    t = Table({"RA": [10.0, 10.0], "DEC": [0.0, 0.6 * 2 / 3600], "Peak_flux": [0.02, 0.02],
               "Isl_rms": [1e-3, 1e-3], "Maj": [2 / 3600, 2 / 3600],
               "Min": [2 / 3600, 2 / 3600], "PA": [0.0, 0.0], "Total_flux": [0.02, 0.02]})
    for c in ("Maj", "Min", "RA", "DEC"):
        t[c].unit = "deg"
    sl = source_list(t, sizes="model")
    assert len(sl) == 1 and sl["flux"][0] == pytest.approx(0.04)
    assert sl["bmin"][0] == pytest.approx(2.0, rel=1e-6)
    # over the island, above 3 rms = 15% of a peak: narrower (PyBDSF's faint sources too)
    assert 0.8 * 2.0 < source_list(t)["bmin"][0] < 2.0


def test_command_lines(tmp_path, field, tiny_model, capsys):
    image = field[0]
    out, srl = tmp_path / "cat.ecsv", tmp_path / "srl.ecsv"
    assert main(["predict", "--model", tiny_model, "--image", image, "--out", str(out),
                 "--source-list", str(srl), "--group-tol", "1.5", "--quiet"]) == 0
    assert "sources from" in capsys.readouterr().out
    cat, sl = read_catalogue(str(out)), read_catalogue(str(srl))
    assert cat.meta["sources"]["group_tol"] == 1.5 and sl.meta["sources"]["group_tol"] == 1.5
    assert len(sl) == len(np.unique(cat["source_id"]))
    again = tmp_path / "again.ecsv"
    assert main(["sources", "--catalogue", str(out), "--out", str(again)]) == 0
    assert len(read_catalogue(str(again))) == len(sl)  # its own grouping, group_tol 1.5
    assert "group_tol 1.5" in capsys.readouterr().out
    fits_list = tmp_path / "srl.fits"  # any catalogue format
    assert main(["sources", "--catalogue", str(out), "--out", str(fits_list)]) == 0
    assert len(read_catalogue(str(fits_list))) == len(sl)
    assert main(["sources", "--catalogue", str(out), "--out", str(again),
                 "--group-tol", "0"]) == 2
    assert "group_tol" in capsys.readouterr().err
    for bad in (["--source-list", str(tmp_path / "s.sdc2")], ["--group-tol", "-2"]):
        assert main(["predict", "--model", tiny_model, "--image", image,
                     "--out", str(tmp_path / "x.ecsv"), "--quiet", *bad]) == 2
        assert not (tmp_path / "x.ecsv").exists()
    capsys.readouterr()


def test_a_mosaic_groups_gaussians_across_its_images():
    """Two images' catalogues, one Gaussian each, 0.6 FWHM apart: alone in each (S), one
    source of two (M) once merged."""
    from cianna_jax.astro.mosaic import merge_tables

    def one(dec):
        t = Table({"id": [1], "ra": [10.0], "dec": [dec], "peak": [0.02], "rms": [1e-3],
                   "bmaj": [2.0], "bmin": [2.0], "pa": [0.0], "flux": [0.02]})
        return S.with_sources(t)

    a, b = one(0.0), one(0.6 * 2.0 / 3600)
    assert a["s_code"][0] == b["s_code"][0] == "S"
    merged = merge_tables([a, b], [np.ones(1, bool)] * 2, ["a.fits", "b.fits"])
    assert list(merged["source_id"]) == [1, 1] and list(merged["s_code"]) == ["M", "M"]


def test_pybdsf_own_gaussians_give_pybdsf_own_sources():
    """PyBDSF 1.14.1's Gaussian list of whole islands of a field with close pairs
    (tests/data/pybdsf/pairs.gaul.fits: 51 Gaussians, 9 sources of several) grouped here
    in its islands (Isl_id): the same sources (members and summed fluxes) and the same
    S_Code for every Gaussian; without its islands, read from the Gaussians' sum instead,
    one island's two Gaussians come apart (their pixels connect them where the sum along the
    segment falls below 3 rms: C for PyBDSF, S here)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data"
    g = read_catalogue(str(data / "pybdsf" / "pairs.gaul.fits"))
    srl = read_catalogue(str(data / "pybdsf" / "pairs.srl.fits"))
    t = S.with_sources(g.copy())
    pb, us = np.asarray(g["Source_id"]), np.asarray(t["source_id"])
    assert np.array_equal(pb[:, None] == pb[None, :], us[:, None] == us[None, :])
    ours_code, theirs = np.asarray(t["s_code"]).astype(str), np.asarray(g["S_Code"]).astype(str)
    assert np.array_equal(ours_code, theirs)
    g2 = g.copy()
    g2.remove_column("Isl_id")
    loose = np.asarray(S.with_sources(g2)["s_code"]).astype(str)
    differ = np.flatnonzero(loose != theirs)
    assert list(differ) == [10, 11] and set(theirs[differ]) == {"C"}
    assert len(set(np.asarray(g["Isl_id"])[differ])) == 1
    ours = source_list(t)
    assert len(ours) == len(srl) and np.count_nonzero(ours["s_code"] == "M") == 9
    want = dict(zip(np.asarray(srl["Source_id"]), np.asarray(srl["Total_flux"])))
    for r in ours:
        rows = np.array([int(i) for i in r["component_ids"].split(",")]) - 1  # no id: rows
        (sid,) = set(pb[rows])
        assert r["flux"] == pytest.approx(want[sid], rel=1e-6)
    # the sizes of the 9 sources of several Gaussians: PyBDSF's moments over their islands
    # (bmaj 0.94-1.02 of PyBDSF's; over the whole model they came out 1.11-1.88 of them)
    maj = dict(zip(np.asarray(srl["Source_id"]), np.asarray(srl["Maj"]) * 3600.0))
    mn = dict(zip(np.asarray(srl["Source_id"]), np.asarray(srl["Min"]) * 3600.0))
    whole = source_list(t, sizes="model")
    for r, w in zip(ours, whole):
        if r["s_code"] != "M":
            continue
        (sid,) = set(pb[np.array([int(i) for i in r["component_ids"].split(",")]) - 1])
        assert r["bmaj"] / maj[sid] == pytest.approx(1.0, abs=0.07)
        assert r["bmin"] / mn[sid] == pytest.approx(1.0, abs=0.2)
        assert w["bmaj"] / maj[sid] > 1.1


def test_pixel_islands_are_pybdsf_islands(tmp_path):
    """Islands of pixels 3 rms above the background, 8-connected: two Gaussians joined by
    their emission share one, a distant one has its own, a faint one (centre below 3 rms)
    and one on blank pixels are alone; a diagonal step still connects."""
    from astropy.io import fits

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.islands import pixel_islands
    from cianna_jax.astro.noise import estimate_noise_map

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :128]
    img = rng.normal(0.0, 1.0, (128, 128))

    def gauss(x, y, a, s=1.5):
        return a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))

    img += gauss(30, 30, 40) + gauss(35, 30, 40) + gauss(90, 90, 40) + gauss(60, 100, 2.0)
    img[100:110, 10:20] = np.nan
    img[5, 100:110] = 20.0  # a thin line of emission with a diagonal step
    img[6, 110:120] = 20.0
    fits.writeto(tmp_path / "i.fits", img.astype(np.float32))
    xs = np.array([30.0, 35.0, 90.0, 60.0, 15.0, 100.0, 119.0])
    ys = np.array([30.0, 30.0, 90.0, 100.0, 105.0, 5.0, 6.0])
    with pytest.warns(UserWarning), open_image(str(tmp_path / "i.fits")) as im:
        noise = estimate_noise_map(im.read, im.shape)
        isl = pixel_islands(im, noise, xs, ys, np.full(7, 3.5))
        assert list(isl) == [1, 1, 2, 3, 4, 5, 5]
        # a cluster wider than the largest window is read in tiles: the line is cut there
        import cianna_jax.astro.islands as islands

        with pytest.MonkeyPatch.context() as m:
            m.setattr(islands, "MAX_WINDOW", 8)
            assert list(pixel_islands(im, noise, xs, ys, np.full(7, 3.5))) == [1, 1, 2, 3, 4,
                                                                                5, 6]


def test_a_mosaic_numbers_each_image_islands_apart():
    from cianna_jax.astro.mosaic import merge_tables

    def one(dec, flux):
        t = Table({"id": [1, 2], "ra": [10.0, 10.0], "dec": [dec, dec + 0.001],
                   "peak": [flux, flux], "rms": [1e-3, 1e-3], "bmaj": [2.0, 2.0],
                   "bmin": [2.0, 2.0], "pa": [0.0, 0.0], "flux": [flux, flux / 2],
                   "island_id": [1, 1]})
        return S.with_sources(t)

    merged = merge_tables([one(0.0, 0.02), one(0.01, 0.03)], [np.ones(2, bool)] * 2,
                          ["a.fits", "b.fits"])
    assert list(merged["island_id"]) == [1, 2, 1, 2] and list(merged["image"]) == [
        "b.fits", "a.fits", "b.fits", "a.fits"]
    assert list(merged["s_code"]) == ["C", "C", "C", "C"]
