"""Catalogue quality flags: ``edge`` (the source's extent reaches the image's edge or blank
pixels), ``blended`` (half-maximum extents overlap) and ``near_bright`` (around bright
sources, with the reliability of its zone), on hand-placed sources and in ``predict``'s
catalogue."""

from __future__ import annotations

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.flags import blend_flags, edge_flags, quality_flags  # noqa: E402
from cianna_jax.astro.measure import FWHM, Measurements  # noqa: E402
from cianna_jax.astro.pipeline import find_sources  # noqa: E402


def _sources(x, y, sigma):
    n = len(x)
    f = np.asarray
    return Measurements(x=f(x, float), y=f(y, float), peak=np.ones(n), flux=np.ones(n),
                        flux_err=np.ones(n), rms=np.ones(n), snr=np.ones(n),
                        sigma_major=f(sigma, float), sigma_minor=f(sigma, float),
                        theta=np.zeros(n), fit_ok=np.ones(n, bool))


def test_edge_is_the_extent_reaching_the_border_or_blank_pixels(tmp_path):
    """A 60x60 image blank in rows 40-59 of columns 40-59; sources of FWHM 4 px (extent:
    4 px each side): clear of everything, 3 px from the left border, 3 px from the blank
    corner, 5 px from it (clear), and one without a position."""
    data = np.zeros((60, 60), np.float32)
    data[40:, 40:] = np.nan
    fits.writeto(tmp_path / "im.fits", data)
    s = 4.0 / FWHM
    m = _sources([20.0, 3.0, 37.0, 35.0, np.nan], [20.0, 30.0, 45.0, 45.0, 10.0], [s] * 5)
    with pytest.warns(UserWarning), open_image(str(tmp_path / "im.fits")) as im:
        np.testing.assert_array_equal(edge_flags(im, m), [False, True, True, False, True])
        # the beam as the smallest extent: 6 px reaches the blank corner from 35 too
        np.testing.assert_array_equal(edge_flags(im, m, beam_sigma=6.0 / FWHM),
                                      [False, True, True, True, True])
        assert set(quality_flags(im, m)) == {"edge", "blended", "blend_group", "near_bright"}


def test_blended_is_overlapping_half_maximum_extents():
    """FWHM 4 and 6 px: apart by 4.9 px (< (4 + 6) / 2) blended, by 5.1 px not; a third
    source far away is not; no position is never blended; the beam widens small ones."""
    s4, s6 = 4.0 / FWHM, 6.0 / FWHM
    m = _sources([10.0, 14.9, 50.0, np.nan], [10.0, 10.0, 50.0, 10.0], [s4, s6, s4, s4])
    np.testing.assert_array_equal(blend_flags(m), [True, True, False, False])
    m2 = _sources([10.0, 15.1, 50.0], [10.0, 10.0, 50.0], [s4, s6, s4])
    np.testing.assert_array_equal(blend_flags(m2), [False, False, False])
    np.testing.assert_array_equal(blend_flags(m2, beam_sigma=s6), [True, True, False])
    assert not blend_flags(_sources([1.0], [1.0], [s4])).any()



def test_blend_groups_link_overlaps_through_each_other():
    """A chain a-b-c (a and c too far apart to overlap, linked through b) is one group; a
    separate pair is another; groups are numbered in the order of their first source, and
    renumbered after the rows are sorted."""
    from cianna_jax.astro.flags import blend_groups, renumbered

    s = 4.0 / FWHM
    m = _sources([50.0, 10.0, 13.5, 17.0, 53.0, 90.0], [50.0, 10.0, 10.0, 10.0, 50.0, 90.0],
                 [s] * 6)
    np.testing.assert_array_equal(blend_groups(m), [1, 2, 2, 2, 1, 0])
    np.testing.assert_array_equal(renumbered(np.array([0, 7, 3, 7, 3])), [0, 1, 2, 1, 2])


def test_predict_catalogue_flags_the_sources_at_the_blank_border(field, tiny_model):
    """The synthetic field is blank 6 px deep on every side: a source is flagged ``edge``
    exactly when its extent (one major-axis FWHM, at least the beam's) crosses into that
    border; the columns and their note are in the catalogue."""
    path = field[0]
    res = find_sources(path, tiny_model, progress=False)
    t = res.table
    with open_image(path) as im:
        img = im.read()
        beam_fwhm = im.beam.bmaj / im.pixel_scale
    H, W = img.shape
    assert np.isnan(img[:6]).all() and np.isfinite(img[6:H - 6, 6:W - 6]).all()
    fwhm = np.fmax(np.asarray(t["bmaj"]) / (abs(fits.getheader(path)["CDELT2"]) * 3600),
                   beam_fwhm)
    half = np.ceil(fwhm - 1e-6)
    xc, yc = np.floor(np.asarray(t["x"]) + 0.5), np.floor(np.asarray(t["y"]) + 0.5)
    crosses = (np.minimum(xc, yc) - half < 6) | (np.maximum(xc + half, yc + half) > H - 7)
    assert t["edge"].dtype == bool and len(t) > 5
    np.testing.assert_array_equal(np.asarray(t["edge"]), crosses)
    assert t["blended"].dtype == bool and "blend_group:" in t.meta["flags"]
    groups = np.asarray(t["blend_group"])
    np.testing.assert_array_equal(groups > 0, np.asarray(t["blended"]))
    numbers = groups[groups > 0]  # 1, 2, ... in catalogue (flux) order, each one twice or more
    assert list(dict.fromkeys(numbers)) == list(range(1, len(set(numbers)) + 1))
    assert all(np.count_nonzero(numbers == g) >= 2 for g in set(numbers))


def test_near_bright_marks_fainter_sources_around_bright_ones():
    from cianna_jax.astro.flags import BRIGHT_RADIUS, near_bright

    r = 10.0  # pixels
    got = near_bright([0.0, 9.0, 11.0, 5.0, 100.0], [0.0, 0.0, 0.0, 0.0, 100.0],
                      [100.0, 5.0, 5.0, 50.0, -5.0], [0.0, 100.0], [0.0, 100.0],
                      [100.0, 60.0], r)
    # itself, within r and 20x fainter, beyond r, within r but only 2x fainter, an inverted
    # (negative) detection 12x fainter at 0 of the second bright one
    np.testing.assert_array_equal(got, [False, True, False, False, True])
    assert BRIGHT_RADIUS > 10


def test_artefacts_around_bright_sources_get_their_own_reliability(tmp_path):
    """A field whose bright sources carry calibration artefacts (5% sidelobes): the fainter
    sources around them are flagged near_bright, and their reliability is their zone's,
    lower there (the inverted image's negative artefacts) than elsewhere at the same SNR."""
    from cianna_jax.astro.synthetic import (
        synthetic_field,
        truth_table,
        with_artefacts,
        write_fits,
    )

    from .conftest import make_peak_detector

    f0 = synthetic_field(256, seed=5, density=0.002, snr_range=(30.0, 1e5))
    f = with_artefacts(f0, level=0.05, min_snr=300, seed=1)
    t0 = truth_table(f0)
    assert len(f.artefacts) > 20 and len(truth_table(f)) == len(t0)
    np.testing.assert_array_equal(truth_table(f)["flux"], t0["flux"])  # (not sources)
    write_fits(tmp_path / "a.fits", f)
    model = make_peak_detector(tmp_path, 5.0)
    t = find_sources(str(tmp_path / "a.fits"), model, progress=False, reliability=True).table
    near = np.asarray(t["near_bright"])
    snr = np.asarray(t["snr"])
    assert near.sum() >= 5 and not near[np.argmax(snr)]
    zones = t.meta["reliability_zones"]
    assert {"near_bright", "elsewhere"} <= set(zones)
    rel = np.asarray(t["reliability"])
    faint = snr < 10
    assert np.mean(rel[near & faint]) < np.mean(rel[~near & faint])
    assert "near_bright" in t.meta["flags"] and t.meta["near_bright_rule"]["radius_beams"] == 30
    # a rule of its own: a smaller reach flags fewer
    from cianna_jax.astro.flags import BrightRule

    small = find_sources(str(tmp_path / "a.fits"), model, progress=False,
                         bright=BrightRule(radius=5.0)).table
    assert 0 < np.count_nonzero(small["near_bright"]) < near.sum()
    assert small.meta["near_bright_rule"] == {"snr": 100.0, "radius_beams": 5.0, "ratio": 10.0}
    with pytest.raises(ValueError, match="bright_radius"):
        BrightRule(radius=0.0)
    # a target reliability: the zone near bright sources gets its own, higher, threshold
    graded = make_peak_detector(tmp_path, 5.0, steep=35.0)  # (objectness over a
    tr = find_sources(str(tmp_path / "a.fits"), graded, progress=False,  # few sigma)
                      target_reliability=0.9).table
    meta = tr.meta["reliability"]
    assert meta["near_bright_threshold"] > tr.meta["obj_threshold"]
    near = np.asarray(tr["near_bright"])
    obj = np.asarray(tr["objectness"])
    assert near.any() and np.all(obj[near] >= meta["near_bright_threshold"] - 1e-9)
    assert np.all(obj[~near] >= tr.meta["obj_threshold"] - 1e-9) and (~near).any()
    from cianna_jax.astro.bright_zones import format_zones

    assert "near bright sources" in format_zones(tr) and "objectness threshold 0.6" in \
        format_zones(tr)
    assert format_zones(small) == ""  # (no reliability test there)
