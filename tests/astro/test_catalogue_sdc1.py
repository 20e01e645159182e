"""Catalogue files by extension, SDC1 text round trip, SDC1 score rules."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import (  # noqa: E402
    SDC1_COLUMNS,
    CatalogueError,
    make_table,
    read_catalogue,
    read_sdc1,
    require_columns,
    to_sdc1,
    write_catalogue,
    write_sdc1,
)
from cianna_jax.astro.sdc1 import sdc1_score  # noqa: E402


def _table(n=4):
    rng = np.random.default_rng(0)
    return make_table({"id": np.arange(1, n + 1), "ra": rng.uniform(0, 1, n),
                       "dec": rng.uniform(-31, -30, n), "flux": rng.uniform(1e-5, 1e-3, n),
                       "bmaj": rng.uniform(2, 4, n), "bmin": rng.uniform(1, 2, n),
                       "pa": rng.uniform(0, 180, n), "fit_ok": np.ones(n, bool)},
                      meta={"image": "x.fits"})


@pytest.mark.parametrize("ext", [".ecsv", ".csv", ".fits", ".xml"])
def test_round_trip_by_extension_keeps_units(tmp_path, ext):
    t = _table()
    path = tmp_path / f"cat{ext}"
    write_catalogue(t, path)
    back = read_catalogue(path)
    for c in ("ra", "dec", "flux", "bmaj", "pa"):
        np.testing.assert_allclose(np.asarray(back[c]), np.asarray(t[c]), rtol=1e-12)
        assert str(back[c].unit) == str(t[c].unit)
    assert str(back["flux"].unit) == "Jy" and str(back["bmaj"].unit) == "arcsec"


def test_unknown_extension_and_failed_write_leave_no_file(tmp_path):
    t = _table()
    with pytest.raises(CatalogueError, match="unknown catalogue extension '.parquet'"):
        write_catalogue(t, tmp_path / "cat.parquet")
    assert os.listdir(tmp_path) == []
    write_sdc1(t, tmp_path / "ok.sdc1")
    before = (tmp_path / "ok.sdc1").read_bytes()
    t["flux"][1] = np.nan
    with pytest.raises(CatalogueError, match="non-finite values"):
        write_sdc1(t, tmp_path / "ok.sdc1")
    assert (tmp_path / "ok.sdc1").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ok.sdc1"]  # no temporary file left


def test_sdc1_text_round_trip(tmp_path):
    t = _table(5)
    t["bmaj_deconv"] = np.asarray(t["bmaj"]) * 0.5
    t["bmin_deconv"] = np.asarray(t["bmin"]) * 0.5
    write_catalogue(t, tmp_path / "sub.sdc1")
    text = (tmp_path / "sub.sdc1").read_text().splitlines()
    assert text[0].split() == list(SDC1_COLUMNS) and len(text) == 6
    s = read_sdc1(tmp_path / "sub.sdc1")
    assert s.colnames == list(SDC1_COLUMNS)
    np.testing.assert_allclose(s["ra_core"], t["ra"], atol=1e-9)
    np.testing.assert_allclose(s["dec_cent"], t["dec"], atol=1e-9)
    np.testing.assert_allclose(s["flux"], t["flux"], rtol=1e-8)
    np.testing.assert_allclose(s["b_maj"], t["bmaj_deconv"], rtol=1e-5)
    assert set(s["size"]) == {2} and set(s["class"]) == {3}
    # a headerless (truth-style) file reads the same; and writing it again gives the same text
    (tmp_path / "truth.txt").write_text(to_sdc1(s, header=False))
    s2 = read_sdc1(tmp_path / "truth.txt")
    for c in SDC1_COLUMNS:
        np.testing.assert_allclose(s2[c], s[c], rtol=1e-8)
    (tmp_path / "short.txt").write_text("1 2 3\n")
    with pytest.raises(CatalogueError, match="3 columns, an SDC1 catalogue has 12"):
        read_sdc1(tmp_path / "short.txt")
    # classes from a classifier trained on SDC1's truth class (codes 1-3); others: 3 (SFG)
    t["morph_class"] = ["1", "2", "", "fr2", "1"]
    write_catalogue(t, tmp_path / "classes.sdc1")
    assert list(read_sdc1(tmp_path / "classes.sdc1")["class"]) == [1, 2, 3, 3, 1]


def test_missing_columns_are_named():
    t = make_table({"ra": np.zeros(2), "Total_flux": np.ones(2)})
    assert require_columns(t, ["ra", "flux"], "cat") == {"ra": "ra", "flux": "Total_flux"}
    with pytest.raises(CatalogueError, match="missing column\\(s\\) 'dec'.*'pa'"):
        require_columns(t, ["ra", "dec", "pa"], "cat")


AEGEAN_CSV = """island,source,background,local_rms,ra_str,dec_str,ra,err_ra,dec,err_dec,\
peak_flux,err_peak_flux,int_flux,err_int_flux,a,err_a,b,err_b,pa,err_pa,flags,residual_mean,\
residual_std,uuid,psf_a,psf_b,psf_pa
1,0,1e-06,1.1e-05,00:02:00.00,-30:00:00.0,0.5,1e-05,-30.0,1e-05,0.0012,1.1e-05,0.0013,2e-05,\
7.9,0.1,6.2,0.1,35.0,3.0,0,0.0,1e-06,a1,6.0,6.0,0.0
"""


def test_aegean_component_lists_read_their_fwhm_axes(tmp_path):
    """Aegean's a and b (FWHM in arcsec) are the sizes of its component list; elsewhere a
    column named a is not taken for a size."""
    from cianna_jax.astro.catalogue import column_values, find_column

    path = tmp_path / "image_comp.csv"
    path.write_text(AEGEAN_CSV)
    t = read_catalogue(path)
    assert find_column(t, "bmaj") == "a" and find_column(t, "bmin") == "b"
    np.testing.assert_allclose(column_values(t, "bmaj"), [7.9])
    np.testing.assert_allclose(column_values(t, "flux"), [0.0013])   # int_flux
    np.testing.assert_allclose(column_values(t, "rms"), [1.1e-5])    # local_rms
    other = make_table({"ra": np.zeros(1), "dec": np.zeros(1), "a": np.ones(1),
                        "b": np.ones(1)})
    assert find_column(other, "bmaj") is None and find_column(other, "bmin") is None


SUB = """id ra_core dec_core ra_cent dec_cent flux core_frac b_maj b_min pa size class
1 0.5000833 -30.5000556 0.5000833 -30.5000556 1.1e-4 0.0 2.2 0.9 35 2 3
2 0.6001 -30.6001 0.6001 -30.6 4e-5 0.0 4.0 2.5 95 3 3
3 0.7000556 -30.4 0.7000556 -30.4 2.5e-5 0.0 1.5 1.2 20 2 3
4 359.5000278 -30.5000278 359.5000278 -30.5000278 2.9e-4 0.0 3.1 1.4 -8 2 2
5 0.9 -30.9 0.9 -30.9 1e-4 0.0 1.0 1.0 0 2 3
6 0.5003 -30.5002 0.5003 -30.5002 3e-4 0.0 6.0 3.0 90 2 3
7 0.55 -30.55 0.55 -30.55 -1e-5 0.0 0.8 0.5 45 2 3
"""
TRUTH = """1 0.5 -30.5 0.5001 -30.5001 1e-4 0.0 2.0 1.0 30 2 3
2 0.6 -30.6 0.6 -30.6 5e-5 0.2 5.0 2.0 100 3 3
3 0.7 -30.4 0.7 -30.4 2e-5 0.5 1.0 1.0 10 1 1
4 359.5 -30.5 359.5 -30.5 3e-4 0.0 3.0 1.5 170 2 2
5 0.55 -30.55 0.55 -30.55 1e-3 0.0 0.8 0.5 45 2 3
"""


@pytest.mark.parametrize("freq, mode", [(560, "core"), (1400, "centroid")])
def test_sdc1_score_matches_official_scorer(tmp_path, freq, mode):
    """Value computed by ska-sdc 2.0.0 (Sdc1Scorer.from_txt(...).run(mode, train=False)) on
    these files: 1.2189108462559197, n_det 6 (row 7 dropped: negative flux), 4 matches
    (row 6 loses source 1 to row 1, row 5 is false)."""
    (tmp_path / "sub.txt").write_text(SUB)
    (tmp_path / "truth.txt").write_text(TRUTH)
    s = sdc1_score(read_sdc1(tmp_path / "sub.txt"), read_sdc1(tmp_path / "truth.txt"), freq,
                   mode=mode)
    assert s.value == pytest.approx(1.2189108462559197, rel=1e-12)
    assert (s.n_det, s.n_match, s.n_bad, s.n_false) == (6, 4, 0, 2)
    np.testing.assert_allclose(s.per_source["pa"], [1.0, 1.0, 1.0, 0.232558], atol=1e-6)


def test_sdc1_score_rules():
    truth = read_sdc1_str(TRUTH)
    perfect = sdc1_score(truth, truth, 1400)
    assert perfect.value == pytest.approx(5.0) and perfect.n_match == 5
    inside = sdc1_score(truth, truth, 560, area="train")  # (-0.67 < ra < 0, dec > -29.94): none
    assert inside.n_det == 0 and inside.value == 0.0
    with pytest.raises(ValueError, match="missing SDC1 column"):
        sdc1_score({"id": [1]}, truth)
    with pytest.raises(ValueError, match="freq"):
        sdc1_score(truth, truth, 1000)


def read_sdc1_str(text):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text)
    try:
        return read_sdc1(fh.name)
    finally:
        os.unlink(fh.name)


@pytest.mark.parametrize("name", ["g_bdsf.srl.ascii", "g_bdsf.srl.csv", "as_sdc1_ext.txt",
                                  "g_bdsf.gaul.csv"])
def test_pybdsf_text_catalogues_read_as_its_fits_one(tmp_path, name):
    """PyBDSF's text source lists (real files, tests/data/pybdsf): names on a comment line,
    no units.  Its ASCII one read with names col1..col45, its CSV one did not read, and one
    named .txt was read as SDC1 columns (ra_core from Isl_id...)."""
    from pathlib import Path

    data = Path(__file__).parent.parent / "data" / "pybdsf"
    path = data / name
    if name.endswith(".txt"):
        path = tmp_path / name
        path.write_bytes((data / "g_bdsf.srl.ascii").read_bytes())
    ref = read_catalogue(data / ("g_bdsf.gaul.fits" if "gaul" in name else "g_bdsf.srl.fits"))
    got = read_catalogue(path)
    assert got.colnames == ref.colnames and len(got) == len(ref) == 13
    for c in ref.colnames:
        assert (got[c].unit is None) == (ref[c].unit is None), c
        if ref[c].unit is not None:
            assert got[c].unit == ref[c].unit, c
        if ref[c].dtype.kind in "fi":
            np.testing.assert_allclose(np.asarray(got[c], float), np.asarray(ref[c], float),
                                       rtol=1e-9, atol=1e-12, err_msg=c)
        else:
            assert [str(v).strip() for v in got[c]] == [str(v).strip() for v in ref[c]], c


def test_ds9_regions_for_viewing_the_catalogue(tmp_path):
    """.reg: one ellipse per source (FWHM axes, semi-axes of half of them, DS9's angle =
    PA east of north + 90), points where the size is missing, labelled with the ids; the
    catalogue's RA/Dec frame; pixels (1-based) without sky positions."""
    t = _table(3)
    t.meta["radec_frame"] = "FK5 (the image's WCS, equatorial J2000)"
    t["bmaj"][2] = np.nan
    write_catalogue(t, tmp_path / "cat.reg")
    lines = (tmp_path / "cat.reg").read_text().splitlines()
    assert lines[0] == "# Region file format: DS9 version 4.1" and lines[3] == "fk5"
    body = lines[4:]
    assert len(body) == 3 and body[2].startswith("point(") and body[2].endswith("text={3}")
    inner = body[0][len("ellipse("):body[0].index(")")].split(",")
    ra, dec, a, b, angle = (float(v.rstrip('"')) for v in inner)
    assert inner[2].endswith('"') and body[0].endswith("# text={1}")
    np.testing.assert_allclose([ra, dec], [t["ra"][0], t["dec"][0]], atol=1e-8)
    np.testing.assert_allclose([a, b], [t["bmaj"][0] / 2, t["bmin"][0] / 2], rtol=1e-3)
    np.testing.assert_allclose(angle, t["pa"][0] + 90.0, atol=1e-3)
    pix = make_table({"x": np.array([0.0, 9.5]), "y": np.array([4.0, 2.0]),
                      "bmaj": np.array([3.0, 2.0]), "bmin": np.array([1.0, 2.0]),
                      "pa": np.array([0.0, 45.0])}, units={"bmaj": "pix", "bmin": "pix"})
    write_catalogue(pix, tmp_path / "pix.reg")
    lines = (tmp_path / "pix.reg").read_text().splitlines()
    assert lines[3] == "image" and lines[4] == "ellipse(1.000,5.000,1.5,0.5,90.000) # text={1}"
    with pytest.raises(CatalogueError, match="DS9 region files are written for viewing"):
        read_catalogue(tmp_path / "cat.reg")
    with pytest.raises(CatalogueError, match="DS9 regions need positions"):
        write_catalogue(t["flux", "bmaj"], tmp_path / "none.reg")
    assert not (tmp_path / "none.reg").exists()
