"""Several overlapping images -> one catalogue: the nearest-centre rule, blanked pixels, one
source seen on both sides of the boundary, the CLI, the images refused, and ``val`` scoring
the images as one field."""

from __future__ import annotations

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")
wcs_mod = pytest.importorskip("astropy.wcs")

from cianna_jax.astro.catalogue import read_catalogue  # noqa: E402
from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.astro.mosaic import keep_nearest_centre  # noqa: E402
from cianna_jax.astro.pipeline import predict_file  # noqa: E402
from cianna_jax.astro.sky import angular_separation, pixel_to_sky  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")
SCALE = 0.6 / 3600  # degrees per pixel


def _sky_wcs(x0: float):
    """A north-up SIN WCS whose pixel 0 is the virtual grid's column ``x0``."""
    w = wcs_mod.WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [80.0 - x0 + 1, 48.0 + 1]
    w.wcs.cdelt = [-SCALE, SCALE]
    return w


def _write(path, data, x0, beam=True):
    hdr = _sky_wcs(x0).to_header()
    if beam:
        hdr["BMAJ"] = hdr["BMIN"] = 3 * SCALE
        hdr["BPA"] = 0.0
    hdr["BUNIT"] = "JY/BEAM"
    fits.writeto(path, np.asarray(data, np.float32), hdr, overwrite=True)
    return str(path)


def _grid_sky(x):
    """(ra, dec) of virtual-grid columns ``x`` on row 48."""
    x = np.asarray(x, np.float64)
    return pixel_to_sky(_sky_wcs(0.0), x, np.full(x.shape, 48.0))


def test_nearest_centre_rule_blanked_pixels_and_boundary_pairs(tmp_path):
    """Left covers virtual columns 0-99 (centre 49.5), right 60-159 (centre 109.5), so the
    boundary is column 79.5.  Right is blank over columns 85-94: a source there comes from
    left although right's centre is nearer.  A source seen by both at 79.4 and 79.8 (either
    side of the boundary, 0.24 arcsec apart) is kept once, from the image whose centre is
    nearer to its detection (right: 29.7 px against left's 29.9)."""
    left = _write(tmp_path / "l.fits", np.zeros((96, 100)), 0.0)
    rdata = np.zeros((96, 100))
    rdata[:, 25:35] = np.nan                          # virtual columns 85-94
    right = _write(tmp_path / "r.fits", rdata, 60.0)
    lx = np.array([10.0, 70.0, 79.4, 82.0, 90.0, 99.0])
    rx = np.array([62.0, 79.8, 100.0, 150.0])
    with open_image(left) as a, open_image(right) as b:
        keep = keep_nearest_centre([_grid_sky(lx), _grid_sky(rx)], [a, b], beam_arcsec=1.8)
    np.testing.assert_array_equal(keep[0], [True, True, False, False, True, False])
    np.testing.assert_array_equal(keep[1], [False, True, True, True])


def test_each_catalogue_row_belongs_to_one_image(tmp_path):
    """The images as above (right blank over virtual columns 85-94): a row belongs to the
    nearest centre with data there; off every image's data it belongs to none, or with
    ``data_only=False`` to the nearest centre; a row without a position to none."""
    from cianna_jax.astro.mosaic import nearest_centre_image

    left = _write(tmp_path / "l.fits", np.zeros((96, 100)), 0.0)
    rdata = np.zeros((96, 100))
    rdata[:, 25:35] = np.nan
    right = _write(tmp_path / "r.fits", rdata, 60.0)
    ra, dec = _grid_sky([10.0, 70.0, 79.0, 81.0, 90.0, 150.0, 200.0, 20.0])
    ra[-1] = np.nan
    with open_image(left) as a, open_image(right) as b:
        np.testing.assert_array_equal(nearest_centre_image(ra, dec, [a, b]),
                                      [0, 0, 0, 1, 0, 1, -1, -1])
        np.testing.assert_array_equal(nearest_centre_image(ra, dec, [a, b], data_only=False),
                                      [0, 0, 0, 1, 0, 1, 1, -1])
        assert nearest_centre_image(ra[:0], dec[:0], [a, b]).shape == (0,)


@pytest.fixture(scope="module")
def two_images(tmp_path_factory, tiny_model):
    """A 96x160 synthetic field cut into two overlapping 96x100 images (columns 0-99 and
    60-159) with their WCS, beam and unit; the field's truth catalogue beside them
    (``truth.ecsv``)."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table

    d = tmp_path_factory.mktemp("mosaic")
    f = synthetic_field((96, 160), seed=5, density=0.004, snr_range=(20.0, 3000.0))
    hdr = dict(f.header)
    paths = []
    for name, x0 in (("left.fits", 0), ("right.fits", 60)):
        w = wcs_mod.WCS(naxis=2)
        w.wcs.ctype = [hdr["CTYPE1"], hdr["CTYPE2"]]
        w.wcs.crval = [hdr["CRVAL1"], hdr["CRVAL2"]]
        w.wcs.crpix = [hdr["CRPIX1"] - x0, hdr["CRPIX2"]]
        w.wcs.cdelt = [hdr["CDELT1"], hdr["CDELT2"]]
        h = w.to_header()
        for k in ("BMAJ", "BMIN", "BPA", "BUNIT"):
            h[k] = hdr[k]
        fits.writeto(d / name, f.image[:, x0:x0 + 100].astype(np.float32), h)
        paths.append(str(d / name))
    write_catalogue(truth_table(f), d / "truth.ecsv")  # the whole field's, for val
    return paths


def test_cli_merges_overlapping_images_into_one_catalogue(tmp_path, two_images, tiny_model,
                                                          capsys):
    out = tmp_path / "all.ecsv"
    assert main(["predict", "--model", tiny_model, "--image", two_images[0], "--image",
                 two_images[1], "--out", str(out), "--out", str(tmp_path / "all.reg"),
                 "--quiet"]) == 0
    assert "from 2 images" in capsys.readouterr().out
    t = read_catalogue(out)
    assert len(t) > 0 and set(t["image"]) <= {"left.fits", "right.fits"}
    np.testing.assert_array_equal(t["id"], np.arange(1, len(t) + 1))
    flux = np.asarray(t["flux"])
    assert np.all(np.diff(flux[np.isfinite(flux)]) <= 0)
    assert [m["image"] for m in t.meta["images"]] == ["left.fits", "right.fits"]
    assert sum(m["n_kept"] for m in t.meta["images"]) == len(t)
    assert sum(m["n_detected"] for m in t.meta["images"]) >= len(t)
    assert "nearest" in t.meta["mosaic"] and "image" not in t.meta
    assert t.meta["noise_box"] == 32  # the model card's, for counts' visibility areas
    # every source is nearer its own image's centre than the other's (both have data
    # everywhere), and no two from different images lie within half a beam
    centres = {}
    for p in two_images:
        with open_image(p) as im:
            ra, dec = pixel_to_sky(im.wcs, np.array([49.5]), np.array([47.5]))
            centres[p.rsplit("/", 1)[-1]] = (ra[0], dec[0])
    ra, dec = np.asarray(t["ra"]), np.asarray(t["dec"])
    for k, name in enumerate(t["image"]):
        other = "right.fits" if name == "left.fits" else "left.fits"
        assert (angular_separation(ra[k], dec[k], *centres[name])
                <= angular_separation(ra[k], dec[k], *centres[other]) + 1e-9)
    sep = angular_separation(ra[:, None], dec[:, None], ra[None], dec[None]) * 3600
    cross = np.asarray(t["image"])[:, None] != np.asarray(t["image"])[None]
    assert not np.any(cross & (sep < 0.9))
    assert (tmp_path / "all.reg").read_text().count("ellipse(") + \
        (tmp_path / "all.reg").read_text().count("point(") == len(t)


def test_reliability_of_overlapping_images(tmp_path, two_images, tiny_model, capsys):
    import os

    from cianna_jax.astro.validate import validate

    out = tmp_path / "all.ecsv"
    assert main(["predict", "--model", tiny_model, "--image", two_images[0], "--image",
                 two_images[1], "--out", str(out), "--quiet", "--target-reliability",
                 "0.5"]) == 0
    text = capsys.readouterr().out
    t = read_catalogue(out)
    # each image its own threshold and estimate, kept in its metadata, each scan printed
    # under its name; the printed estimate sums the images' counts
    per_image = [m["reliability"] for m in t.meta["images"]]
    assert "reliability" in t.colnames and "reliability" not in t.meta
    assert [r["target"] for r in per_image] == [0.5, 0.5]
    for p in two_images:
        assert f"{p}: objectness threshold " in text
    n_image = sum(sum(r["n_image"]) for r in per_image)
    n_inverted = sum(sum(r["n_inverted"]) for r in per_image)
    assert n_image == sum(m["n_detected"] for m in t.meta["images"])
    assert (f"detections expected false ({n_inverted} detections on the inverted image)"
            in text)
    # val: the same, each image's scan under its name
    truth = os.path.join(os.path.dirname(two_images[0]), "truth.ecsv")
    rep = validate(two_images, tiny_model, truth, tmp_path / "rep", progress=False,
                   plots=False, target_reliability=0.5)
    assert len(rep.table) == len(t)
    assert "left.fits: objectness threshold " in rep.text and "each image's" in rep.text


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_images_that_cannot_be_merged_are_refused(tmp_path, two_images, tiny_model):
    nowcs = tmp_path / "nowcs.fits"
    fits.writeto(nowcs, np.zeros((96, 100), np.float32))
    cube = tmp_path / "cube.fits"
    fits.writeto(cube, np.zeros((3, 96, 100), np.float32), _sky_wcs(0.0).to_header())
    out = tmp_path / "x.ecsv"
    with pytest.raises(ImageError, match="needs each image's celestial WCS"):
        predict_file([two_images[0], nowcs], tiny_model, out)
    with pytest.raises(ImageError, match="given twice"):
        predict_file([two_images[0], two_images[0]], tiny_model, out)
    with pytest.raises(ImageError, match="merged as 2D images"):
        predict_file([two_images[0], cube], tiny_model, out)
    assert not out.exists()


def test_val_scores_overlapping_images_as_one_field(tmp_path, two_images, tiny_model, capsys):
    """val on two overlapping images: the catalogue is predict's merged one; each true
    source is scored once, from the image whose centre is nearest (left of virtual column
    79.5: left); a perfect finder (the truth, sky columns only) scores 1/1; every match
    lies within the match radius; one field and residual overlay per image."""
    import json
    import os

    truth = os.path.join(os.path.dirname(two_images[0]), "truth.ecsv")
    t = read_catalogue(truth)
    t["ra", "dec", "flux", "bmaj", "bmin", "pa"].write(tmp_path / "perfect.ecsv")
    rep = tmp_path / "report"
    assert main(["val", "--model", tiny_model, "--image", two_images[0], "--image",
                 two_images[1], "--catalogue", truth, "--out", str(rep), "--quiet",
                 "--compare", f"best={tmp_path / 'perfect.ecsv'}"]) == 0
    text = capsys.readouterr().out
    assert "2 images" in text and "left.fits:" in text and "right.fits:" in text
    predict_file(two_images, tiny_model, tmp_path / "merged.ecsv", progress=False)
    merged, cat = read_catalogue(tmp_path / "merged.ecsv"), read_catalogue(rep / "catalogue.ecsv")
    assert len(cat) > 0
    for c in ("ra", "dec", "flux", "image", "id"):
        np.testing.assert_array_equal(cat[c], merged[c])
    tm = read_catalogue(rep / "truth_matched.ecsv")
    assert sorted(tm["id"]) == sorted(t["id"])          # every true source, once
    x_of = dict(zip(np.asarray(t["id"]).tolist(), np.asarray(t["x"]).tolist()))
    own = ["left.fits" if x_of[i] < 79.5 else "right.fits" for i in np.asarray(tm["id"])]
    assert list(tm["image"]) == own and len(set(own)) == 2
    np.testing.assert_allclose(tm["snr_used"], [dict(zip(t["id"], t["snr"]))[i]
                                                for i in tm["id"]])
    s = json.loads((rep / "scores.json").read_text())
    best = s["compare"]["best"]["scores"]
    assert best["precision"] == best["recall"] == 1.0 and best["n_det"] == len(t)
    assert [d["n_truth"] for d in s["images"]] == [own.count("left.fits"), own.count("right.fits")]
    assert sum(d["n_kept"] for d in s["images"]) == len(cat) == s["scores"]["n_det"]
    matched = np.asarray(cat["match_id"]) >= 0
    assert matched.sum() == s["scores"]["n_tp"]
    ra_of, dec_of = dict(zip(t["id"], t["ra"])), dict(zip(t["id"], t["dec"]))
    bmaj_of = dict(zip(t["id"], t["bmaj"]))
    beam = float(fits.getheader(two_images[0])["BMAJ"]) * 3600
    for k in np.flatnonzero(matched):
        i = int(cat["match_id"][k])
        sep = angular_separation(cat["ra"][k], cat["dec"][k], ra_of[i], dec_of[i]) * 3600
        assert sep <= max(bmaj_of[i], beam) + 1e-6
    assert {"field_overlay_left.png", "field_overlay_right.png", "residual_overlay_left.png",
            "residual_overlay_right.png", "completeness_reliability.png",
            "pr_curve.png"} <= set(os.listdir(rep))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_val_on_several_images_needs_sky_positions(tmp_path, two_images, tiny_model, capsys):
    """A truth in pixels only is one image's grid: refused before any detection, with no
    report folder; so is an image without a WCS."""
    import os

    t = read_catalogue(os.path.join(os.path.dirname(two_images[0]), "truth.ecsv"))
    t["x", "y", "flux"].write(tmp_path / "pixels.ecsv")
    rep = tmp_path / "report"
    assert main(["val", "--model", tiny_model, "--image", two_images[0], "--image",
                 two_images[1], "--catalogue", str(tmp_path / "pixels.ecsv"), "--out",
                 str(rep), "--quiet"]) == 2
    assert "needs 'ra' and 'dec' columns" in capsys.readouterr().err
    nowcs = tmp_path / "nowcs.fits"
    fits.writeto(nowcs, np.zeros((96, 100), np.float32))
    assert main(["val", "--model", tiny_model, "--image", two_images[0], "--image", str(nowcs),
                 "--catalogue", str(tmp_path / "pixels.ecsv"), "--out", str(rep),
                 "--quiet"]) == 2
    assert "needs each image's celestial WCS" in capsys.readouterr().err
    assert not rep.exists()


def test_merged_catalogue_numbers_each_image_s_blends_apart():
    """Both images have a blend numbered 1: in the merged catalogue they are two groups,
    numbered 1, 2, ... from the brightest row, and unblended rows stay 0."""
    from astropy.table import Table

    from cianna_jax.astro.mosaic import merge_tables

    a = Table({"id": [1, 2, 3], "flux": [5.0, 4.0, 1.0], "blend_group": [1, 1, 0]})
    b = Table({"id": [1, 2, 3], "flux": [9.0, 3.0, 2.0], "blend_group": [0, 1, 1]})
    keep = [np.ones(3, bool), np.ones(3, bool)]
    t = merge_tables([a, b], keep, ["a.fits", "b.fits"])
    assert list(t["flux"]) == [9.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert list(t["image"]) == ["b.fits", "a.fits", "a.fits", "b.fits", "b.fits", "a.fits"]
    assert list(t["blend_group"]) == [0, 1, 1, 2, 2, 0]


def _completeness_report(folder, value: float) -> str:
    from cianna_jax.astro.catalogue import make_table, write_catalogue

    folder.mkdir()
    e = np.array([1e-6, 1e-4, 1e-2, 1.0])
    write_catalogue(make_table({"flux_min": e[:-1], "flux_max": e[1:],
                                "completeness": np.full(3, value)},
                               units={"flux_min": "Jy", "flux_max": "Jy"}),
                    folder / "completeness_by_flux.ecsv")
    return str(folder)


def test_counts_over_a_mosaic_count_each_place_once(tmp_path, capsys):
    """The images as above: the union of their data is counted once, each image owning
    the part where its centre is the nearest with data (left: virtual columns 0-79 and
    85-94, right's blank; right: 80-84 and 95-159); with one injection report per image,
    each source is corrected by its own image's completeness."""
    from cianna_jax.astro.catalogue import CatalogueError, make_table, write_catalogue
    from cianna_jax.astro.hi_mass import ARCSEC_PER_RAD
    from cianna_jax.astro.source_counts import count_catalogue, owned_areas_sr

    left = _write(tmp_path / "l.fits", np.zeros((96, 100)), 0.0)
    rdata = np.zeros((96, 100))
    rdata[:, 25:35] = np.nan
    right = _write(tmp_path / "r.fits", rdata, 60.0)
    pix = (SCALE * 3600 / ARCSEC_PER_RAD) ** 2
    with open_image(left) as a, open_image(right) as b:
        np.testing.assert_allclose(owned_areas_sr([a, b]) / pix, [90 * 96, 70 * 96])
        sampled = owned_areas_sr([a, b], max_samples=1000)  # every 4th pixel each way
        assert sampled.sum() == pytest.approx(160 * 96 * pix, rel=0.05)
    ra, dec = _grid_sky([10.0, 90.0, 150.0])  # left, left (right blank there), right
    cat = tmp_path / "cat.ecsv"
    write_catalogue(make_table({"ra": ra, "dec": dec, "flux": [1e-3, 2e-3, 3e-3]}), cat)
    reports = [_completeness_report(tmp_path / "inj_l", 0.5),
               _completeness_report(tmp_path / "inj_r", 0.25)]
    c = count_catalogue(cat, image=[left, right], completeness=reports)
    assert c.area_sr == pytest.approx(160 * 96 * pix)
    assert c.n.sum() == 3 and c.n_corrected.sum() == pytest.approx(2 + 2 + 4)
    one = count_catalogue(cat, image=[left, right], completeness=reports[0])  # one for all
    assert one.n_corrected.sum() == pytest.approx(6)
    assert main(["counts", "--catalogue", str(cat), "--image", left, "--image", right,
                 "--completeness", reports[0], "--completeness", reports[1],
                 "--out", str(tmp_path / "counts.ecsv")]) == 0
    out = capsys.readouterr().out
    assert "3 sources over" in out and "(the union of 2 images' data)" in out
    t = read_catalogue(tmp_path / "counts.ecsv")
    assert t["n_corrected"].sum() == pytest.approx(8)
    deg2 = pix * (180 / np.pi) ** 2
    assert t.meta["image_areas_deg2"] == pytest.approx({"l.fits": 90 * 96 * deg2,
                                                        "r.fits": 70 * 96 * deg2})
    # two images, three reports; reports per image without positions
    assert main(["counts", "--catalogue", str(cat), "--image", left, "--image", right,
                 *sum((["--completeness", r] for r in reports + reports[:1]), []),
                 "--out", str(tmp_path / "x.ecsv")]) == 2
    assert "one injection report, or one per image (2 images); received 3" in \
        capsys.readouterr().err
    write_catalogue(make_table({"flux": [1e-3]}), tmp_path / "nopos.ecsv")
    with pytest.raises(CatalogueError, match="ra and dec are needed"):
        count_catalogue(tmp_path / "nopos.ecsv", image=[left, right], completeness=reports)


def test_visibility_areas_over_a_mosaic(tmp_path):
    """A mosaic's visibility area: each image over the part it owns (left 90 x 96 pixels,
    right 70 x 96, twice as noisy): a peak seen at 5 sigma on the left only counts over the
    left's share of the union, one seen everywhere over all of it."""
    from cianna_jax.astro.catalogue import make_table, write_catalogue
    from cianna_jax.astro.source_counts import count_catalogue

    rng = np.random.default_rng(0)
    left = _write(tmp_path / "l.fits", rng.normal(0, 1e-5, (96, 100)), 0.0)
    rdata = rng.normal(0, 2e-5, (96, 100))
    rdata[:, 25:35] = np.nan
    right = _write(tmp_path / "r.fits", rdata, 60.0)
    ra, dec = _grid_sky([10.0, 150.0])
    cat = tmp_path / "cat.ecsv"
    write_catalogue(make_table({"ra": ra, "dec": dec, "flux": [7e-5, 1.5e-4],
                                "peak": [7e-5, 1.5e-4], "snr": [7.0, 7.5]}), cat)
    c = count_catalogue(cat, image=[left, right], visibility_snr=5.0)
    assert c.n.sum() == 2
    assert c.n_corrected.sum() == pytest.approx(160 / 90 + 1, rel=0.03)
    assert main(["counts", "--catalogue", str(cat), "--image", left, "--image", right,
                 "--visibility-snr", "5", "--pb", "gaussian:60", "--pb", "gaussian:60",
                 "--out", str(tmp_path / "v.ecsv")]) == 0
