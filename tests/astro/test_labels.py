"""Training catalogues on an image: every reader format, units, missing columns, boxes against
hand-computed values, the SDC1 training-set text, training and validation areas."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

pytest.importorskip("astropy")

from astropy.table import Table  # noqa: E402

from cianna_jax.astro.catalogue import CatalogueError, make_table, write_catalogue  # noqa: E402
from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.labels import (  # noqa: E402
    FALLBACK_BEAM_PIXELS,
    SourceLabels,
    read_training_catalogue,
    split_area,
    training_area,
)
from cianna_jax.astro.sky import pixel_to_sky  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, write_fits  # noqa: E402
from cianna_jax.datasets import radio_sky as rs  # noqa: E402

# the ``field`` fixture: 96x96, 0.6"/px, circular 1.8" (3 px) beam, NaN border of 6 px
BEAM_PX, SCALE = 3.0, 0.6

HEADER_18 = [f"COLUMN{i}:    {name}" for i, name in enumerate(
    ["ID", "RA (core)", "DEC (core)", "RA (centroid)", "DEC (centroid)", "FLUX", "Core frac",
     "BMAJ", "BMIN", "PA", "SIZE", "CLASS", "SELECTION", "x", "y"], 1)]
HEADER_18 = ["Source list files format"] + HEADER_18 + [
    "PA (measured clockwise from the longitude-wise direction)",
    "ID RA (core) DEC (core) RA (centroid) DEC (centroid) FLUX Core frac BMAJ BMIN PA SIZE "
    "CLASS SELECTION x y"]


def _sdc1_text(path, ra, dec, flux, bmaj, bmin, pa, x, y, *, header=False, selection=None,
               classes=None):
    n = len(ra)
    sel = np.ones(n) if selection is None else selection
    cls = np.full(n, 3) if classes is None else classes
    rows = np.column_stack([np.arange(1, n + 1), ra, dec, ra, dec, flux, np.zeros(n), bmaj, bmin,
                            pa, np.full(n, 2), cls, sel, x, y])
    lines = HEADER_18 if header else []
    lines = lines + [" ".join(f"{v:.15g}" for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _same(a: SourceLabels, b: SourceLabels, atol=1e-6):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.x, b.x, atol=atol)
    np.testing.assert_allclose(a.y, b.y, atol=atol)
    np.testing.assert_allclose(a.flux, b.flux, rtol=1e-6)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


def test_every_format_gives_the_same_labels(field, tmp_path):
    fits_path, truth_path, f = field
    t = Table.read(truth_path)
    with open_image(fits_path) as img:
        ref = read_training_catalogue(truth_path, img)
        assert len(ref) == len(t) > 10 and ref.image_shape == (96, 96)
        assert ref.boxes.dtype == np.float32 and ref.boxes.shape == (len(ref), 6)
        for ext in (".fits", ".csv", ".xml"):
            write_catalogue(t, tmp_path / f"cat{ext}")
            _same(read_training_catalogue(tmp_path / f"cat{ext}", img), ref)
        t.write(tmp_path / "plain.csv", format="ascii.csv")  # no units: arcsec, Jy, deg
        _same(read_training_catalogue(tmp_path / "plain.csv", img), ref)
        # the SDC1 training-set text: intrinsic sizes, PA clockwise from the RA axis
        cols = (np.asarray(t["ra"]), np.asarray(t["dec"]), np.asarray(t["flux"]),
                np.asarray(t["bmaj_deconv"]), np.asarray(t["bmin_deconv"]),
                np.mod(90.0 - np.asarray(t["pa"]), 180.0), np.asarray(t["x"]), np.asarray(t["y"]))
        for header in (False, True):
            p = _sdc1_text(tmp_path / f"train_{header}.txt", *cols, header=header)
            _same(read_training_catalogue(p, img), ref, atol=1e-5)
        # the labels agree with the true catalogue of the field
        c = f.catalogue
        idx = np.array([np.argmin(np.hypot(c.x - x, c.y - y)) for x, y in zip(ref.x, ref.y)])
        np.testing.assert_allclose(ref.x, c.x[idx], atol=1e-6)
        np.testing.assert_allclose(ref.bmaj, c.bmaj[idx], rtol=1e-6)
        true_boxes = rs.boxes_from_catalogue(c[idx], min_size=2 * BEAM_PX, max_size=64.0)
        np.testing.assert_allclose(ref.boxes, true_boxes, atol=1e-3)
        np.testing.assert_allclose(ref.snr, np.asarray(t["snr"]))


def test_sdc1_training_text_selection_pa_and_header(field, tmp_path):
    fits_path, _, _ = field
    with open_image(fits_path) as img:
        ra, dec = pixel_to_sky(img.wcs, np.array([40.0, 60.0, 50.0]), np.array([50.0, 30.0, 70.0]))
        # intrinsic 4 px x 0 px (2.4" x 0"): with the 3 px beam, 5 px x 3 px apparent
        p = _sdc1_text(tmp_path / "TrainingSet_B1.txt", ra, dec, [1e-3, 2e-3, 5e-3],
                       [2.4, 2.4, 2.4], [0.0, 0.0, 0.0], [0.0, 90.0, 0.0], [0, 0, 0], [0, 0, 0],
                       header=True, selection=np.array([1, 1, 0]), classes=[1, 3, 2])
        lab = read_training_catalogue(p, img)
        classed = read_training_catalogue(p, img, class_column="class")
    assert len(lab) == 2  # SELECTION 0: not injected in the image
    assert classed.classes.tolist() == ["1", "3"]  # SDC1's CLASS: 1 SS-AGN, 3 SFG
    np.testing.assert_allclose(lab.x, [40.0, 60.0], atol=1e-6)
    np.testing.assert_allclose(lab.bmaj, [5.0, 5.0])
    np.testing.assert_allclose(lab.bmin, [3.0, 3.0])
    w, h = lab.boxes[:, 3] - lab.boxes[:, 0], lab.boxes[:, 4] - lab.boxes[:, 1]
    # SDC1 PA 0: the major axis along RA (x); PA 90: along Dec (y)
    np.testing.assert_allclose(w, [10.0, 6.0], atol=1e-3)
    np.testing.assert_allclose(h, [6.0, 10.0], atol=1e-3)
    np.testing.assert_allclose(lab.boxes[0], [35.5, 47.5, 0, 45.5, 53.5, 1], atol=1e-3)


def test_boxes_against_hand_computed_values(field, tmp_path):
    fits_path, _, _ = field
    x = np.array([20.0, 40.0, 60.0, 30.0, 70.0])
    y = np.array([20.0, 30.0, 40.0, 70.0, 70.0])
    bmaj = np.array([6.0, 6.0, 1.0, 50.0, 6.0]) * SCALE  # arcsec
    bmin = np.array([3.0, 3.0, 1.0, 50.0, 3.0]) * SCALE
    pa = np.array([0.0, 30.0, 0.0, 0.0, 90.0])  # deg east of north
    t = make_table({"x": x, "y": y, "flux": np.ones(5), "bmaj": bmaj, "bmin": bmin, "pa": pa})
    write_catalogue(t, tmp_path / "hand.ecsv")
    with open_image(fits_path) as img:
        lab = read_training_catalogue(tmp_path / "hand.ecsv", img)
        big = read_training_catalogue(tmp_path / "hand.ecsv", img, min_box=8.0)
        t.remove_columns(["bmaj", "bmin", "pa"])
        write_catalogue(t, tmp_path / "points.ecsv")
        points = read_training_catalogue(tmp_path / "points.ecsv", img)
    c30, s30 = math.cos(math.radians(30)), math.sin(math.radians(30))
    want_w = [6.0, 2 * math.hypot(6 * s30, 3 * c30), 6.0, 64.0, 12.0]
    want_h = [12.0, 2 * math.hypot(6 * c30, 3 * s30), 6.0, 64.0, 6.0]
    b = lab.boxes
    np.testing.assert_allclose(b[:, 3] - b[:, 0], want_w, atol=2e-3)
    np.testing.assert_allclose(b[:, 4] - b[:, 1], want_h, atol=2e-3)
    np.testing.assert_allclose((b[:, 0] + b[:, 3]) / 2, x + 0.5, atol=1e-4)  # pixel-edge frame
    np.testing.assert_allclose((b[:, 1] + b[:, 4]) / 2, y + 0.5, atol=1e-4)
    np.testing.assert_allclose(b[:, [2, 5]], np.tile([0.0, 1.0], (5, 1)))
    np.testing.assert_allclose(lab.theta[[0, 1]], [0.0, math.radians(30)], atol=1e-4)
    np.testing.assert_allclose(lab.bmin[2], BEAM_PX)  # apparent sizes: at least the beam
    bw = big.boxes[:, 3] - big.boxes[:, 0]
    np.testing.assert_allclose(bw[[0, 2]], [8.0, 8.0], atol=1e-4)  # min_box given
    pw, ph = points.boxes[:, 3] - points.boxes[:, 0], points.boxes[:, 4] - points.boxes[:, 1]
    np.testing.assert_allclose(pw, 2 * BEAM_PX, atol=1e-4)  # no sizes: beam-sized points
    np.testing.assert_allclose(ph, 2 * BEAM_PX, atol=1e-4)
    with pytest.raises(ValueError, match="min_box"):
        with open_image(fits_path) as img:
            read_training_catalogue(tmp_path / "hand.ecsv", img, min_box=80.0)


def test_beam_tied_minimum_with_an_elliptical_beam(tmp_path):
    f = synthetic_field(48, seed=3)
    f.header["BMAJ"], f.header["BMIN"], f.header["BPA"] = 2.4 / 3600, 1.2 / 3600, 90.0
    write_fits(tmp_path / "ell.fits", f)  # beam 4 px x 2 px, major axis east-west (x)
    write_catalogue(make_table({"x": [20.0], "y": [24.0], "flux": [1.0]}), tmp_path / "p.ecsv")
    write_catalogue(make_table({"x": [20.0], "y": [24.0], "flux": [1.0], "bmaj": [2.4],
                                "bmin": [1.2], "pa": [0.0]}), tmp_path / "s.ecsv")
    with open_image(tmp_path / "ell.fits") as img:
        point = read_training_catalogue(tmp_path / "p.ecsv", img)
        north = read_training_catalogue(tmp_path / "s.ecsv", img)
    # a point source is the beam (along BPA 90: x): 8 px wide, 2 x 2 px high, lifted to the
    # minimum 2 x sqrt(4 x 2) px
    b = point.boxes[0]
    np.testing.assert_allclose([b[3] - b[0], b[4] - b[1]], [8.0, 2 * math.sqrt(8.0)], atol=2e-3)
    b = north.boxes[0]  # the same ellipse along y
    np.testing.assert_allclose([b[3] - b[0], b[4] - b[1]], [2 * math.sqrt(8.0), 8.0], atol=2e-3)


def test_names_case_insensitive_and_units_converted(field, tmp_path):
    fits_path, truth_path, _ = field
    t = Table.read(truth_path)
    with open_image(fits_path) as img:
        ref = read_training_catalogue(truth_path, img)
        u = Table()
        u["RA"], u["DEC"] = t["ra"], t["dec"]
        u["Total_Flux"] = t["flux"].to("mJy")
        u["MAJ"], u["Min"] = t["bmaj"].to("deg"), t["bmin"].to("deg")
        u["PA"] = t["pa"].to("rad")
        u.write(tmp_path / "pybdsf_like.fits")
        _same(read_training_catalogue(tmp_path / "pybdsf_like.fits", img), ref)
        u["Total_Flux"].unit = "m"
        u.write(tmp_path / "bad_unit.ecsv", overwrite=True)
        with pytest.raises(CatalogueError, match="'Total_Flux' has unit m"):
            read_training_catalogue(tmp_path / "bad_unit.ecsv", img)


def test_missing_columns_are_named(field, tmp_path):
    fits_path, truth_path, _ = field
    t = Table.read(truth_path)
    with open_image(fits_path) as img:
        nf = t.copy()
        nf.remove_column("flux")
        write_catalogue(nf, tmp_path / "noflux.ecsv")
        with pytest.raises(CatalogueError, match=r"noflux\.ecsv.*missing column\(s\) 'flux' "
                                                 r"\(accepted: flux, total_flux.*it has \['id'"):
            read_training_catalogue(tmp_path / "noflux.ecsv", img)
        npos = t.copy()
        npos.remove_columns(["ra", "dec", "x", "y"])
        write_catalogue(npos, tmp_path / "nopos.ecsv")
        with pytest.raises(CatalogueError, match=r"'ra' \(accepted: ra, .*'x' \(accepted: x"):
            read_training_catalogue(tmp_path / "nopos.ecsv", img)


def test_sky_positions_need_a_wcs_pixels_do_not(tmp_path, field):
    _, truth_path, _ = field
    f = synthetic_field(48, seed=2, wcs=False)
    write_fits(tmp_path / "nowcs.fits", f)
    t = Table.read(truth_path)
    sky = t.copy()
    sky.remove_columns(["x", "y"])
    write_catalogue(sky, tmp_path / "sky.ecsv")
    pix = make_table({"x": [10.0, 30.0], "y": [12.0, 20.0], "flux": [1.0, 2.0],
                      "bmaj": [6.0, 1.5], "bmin": [3.0, 1.0], "pa": [0.0, 0.0]})
    write_catalogue(pix, tmp_path / "pix.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = open_image(tmp_path / "nowcs.fits")
    with img:
        with pytest.raises(CatalogueError, match="sky.ecsv: sky positions .*no celestial WCS"):
            read_training_catalogue(tmp_path / "sky.ecsv", img)
        with pytest.raises(CatalogueError, match="no WCS pixel scale"):
            read_training_catalogue(tmp_path / "pix.csv", img)  # sizes in arcsec
        pix["bmaj"].unit = pix["bmin"].unit = None  # sizes in pixels without a WCS
        write_catalogue(pix, tmp_path / "pix.ecsv")
        lab = read_training_catalogue(tmp_path / "pix.ecsv", img)
    # no usable beam: the smallest minor axis (1 px) stands for it, min box max(2, 2 x 1)
    w, h = lab.boxes[:, 3] - lab.boxes[:, 0], lab.boxes[:, 4] - lab.boxes[:, 1]
    np.testing.assert_allclose(w, [6.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(h, [12.0, 3.0], atol=1e-5)
    assert FALLBACK_BEAM_PIXELS == 3.0


def test_sources_outside_or_on_blank_pixels_dropped(field, tmp_path):
    fits_path, _, _ = field
    t = make_table({"x": [-5.0, 2.0, 50.0, 100.0, 50.0, np.nan], "y": [50.0, 50.0, 50.0, 50.0,
                                                                       93.0, 50.0],
                    "flux": [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]})
    write_catalogue(t, tmp_path / "edge.ecsv")
    with open_image(fits_path) as img:
        lab = read_training_catalogue(tmp_path / "edge.ecsv", img)
    assert len(lab) == 1 and lab.flux[0] == 2.0 and lab.snr is None
    sub = lab.select(np.array([False]))
    assert len(sub) == 0 and sub.boxes.shape == (0, 6)


def _labels(x, y, shape=(100, 200)):
    x, y = np.asarray(x, float), np.asarray(y, float)
    cat = rs.Catalogue.create(x, y, np.ones_like(x), 3.0, 3.0)
    return SourceLabels(x=x, y=y, flux=np.ones_like(x), bmaj=np.full_like(x, 3.0),
                        bmin=np.full_like(x, 3.0), theta=np.zeros_like(x), snr=None,
                        boxes=rs.boxes_from_catalogue(cat), image_shape=shape, source="hand")


def test_training_area_is_the_footprint():
    lab = _labels([10.2, 30.6, 20.0], [20.7, 15.4, 18.0])
    assert training_area(lab) == (15, 22, 10, 32)
    assert training_area(lab, margin=2) == (13, 24, 8, 34)
    assert training_area(lab, margin=500) == (0, 100, 0, 200)
    assert training_area(lab, margin=-2) == (17, 20, 12, 30)
    with pytest.raises(ValueError, match="empty with margin -4"):
        training_area(lab, margin=-4)
    with pytest.raises(ValueError, match="no source"):
        training_area(lab.select(np.zeros(3, bool)))
    assert len(lab.select(np.array([2, 0]))) == 2


def test_split_area_strips_never_overlap():
    assert split_area((0, 100, 0, 200), 0.2, 32) == ((0, 100, 0, 160), (0, 100, 160, 200))
    assert split_area((10, 310, 5, 105), 0.25, 50) == ((10, 235, 5, 105), (235, 310, 5, 105))
    assert split_area((0, 100, 0, 200), 0.05, 32) == ((0, 100, 0, 168), (0, 100, 168, 200))
    with pytest.raises(ValueError, match="too small for patch 32 and valid_fraction 0.5"):
        split_area((0, 50, 0, 60), 0.5, 32)
    with pytest.raises(ValueError, match="too small for patch 64"):
        split_area((0, 50, 0, 400), 0.2, 64)
    for bad in (0.0, 0.6):
        with pytest.raises(ValueError, match="valid_fraction"):
            split_area((0, 100, 0, 200), bad, 16)
