"""A cube's duplicate detections merged: which detection each merges into, the kept one's
box widened to the envelope of its parts and measured again (a galaxy boxed in parts is
measured whole)."""

from dataclasses import replace

import numpy as np
import pytest

from cianna_jax.astro.duplicates import (
    best_of_duplicates,
    duplicate_owners,
    merge_parts,
    union_boxes,
)
from cianna_jax.astro.measure import Measurements


def _measurements(n: int, flux) -> Measurements:
    nan = np.full(n, np.nan)
    return Measurements(x=np.arange(n, dtype=np.float64), y=np.zeros(n), peak=np.ones(n),
                        flux=np.asarray(flux, np.float64), flux_err=nan, rms=np.ones(n),
                        snr=np.ones(n), sigma_major=np.ones(n), sigma_minor=np.ones(n),
                        theta=np.zeros(n), fit_ok=np.ones(n, bool), z=np.zeros(n),
                        line=np.zeros((n, 4)), deblended=np.zeros(n, bool))


def test_owners_name_the_detection_kept_in_each_place():
    """Best score first, each kept detection takes the others within reach; a tie that was
    itself taken after taking others hands them on (no chains left)."""
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0], [30.0, 0.0]])
    score = np.array([0.9, 0.5, 0.7, 0.7, 0.1])
    owner = duplicate_owners(pts, score, np.full(5, 2.0), lambda i, j: True)
    assert owner.tolist() == [0, 0, 2, 2, 4]
    assert best_of_duplicates(pts, score, np.full(5, 2.0), lambda i, j: True).tolist() == [
        True, False, True, False, True]
    # 1 and 2 tie; 1 (first in the order) takes 0 but not 2, then 2 takes 1: 0 ends
    # with 2
    pts = np.array([[0.0, 0.0], [1.5, 0.0], [3.0, 0.0]])
    owner = duplicate_owners(pts, np.array([0.2, 0.6, 0.6]), np.full(3, 1.6),
                             lambda i, j: (i, j) != (1, 2))
    assert owner.tolist() == [2, 2, 2]
    assert duplicate_owners(np.zeros((0, 2)), np.zeros(0), np.zeros(0),
                            lambda i, j: True).size == 0


def test_union_boxes_widen_the_kept_ones_only():
    boxes = np.array([[10, 10, 5, 20, 20, 15], [12, 14, 12, 24, 22, 30],
                      [50, 50, 0, 60, 60, 9], [0, 0, 0, 4, 4, 4]], np.float64)
    wide = union_boxes(boxes, np.array([0, 0, 2, 3]))
    np.testing.assert_array_equal(wide[0], [10, 10, 5, 24, 22, 30])
    np.testing.assert_array_equal(wide[1:], boxes[1:])
    np.testing.assert_array_equal(union_boxes(boxes, np.arange(4)), boxes)


def test_merge_parts_measures_the_widened_boxes_again():
    """Only the kept detections whose box grew are measured again; the others keep their
    measurements, and a field the new measurement lacks becomes NaN there."""
    boxes = np.array([[10, 10, 5, 20, 20, 15], [12, 14, 12, 24, 22, 30],
                      [50, 50, 0, 60, 60, 9]], np.float64)
    m = _measurements(3, [4.0, 3.0, 1.0])
    seen = []

    def measure(b):
        seen.append(b.copy())
        return replace(_measurements(len(b), [7.0] * len(b)), x=np.full(len(b), 15.0),
                       deblended=None)

    keep, wide, out = merge_parts(boxes, m, np.array([0, 0, 2]), measure)
    assert keep.tolist() == [True, False, True]
    assert len(seen) == 1 and seen[0].tolist() == [[10, 10, 5, 24, 22, 30]]
    assert out.flux.tolist() == [7.0, 3.0, 1.0] and out.x.tolist() == [15.0, 1.0, 2.0]
    assert out.deblended.tolist() == [False, False, False]
    assert m.flux.tolist() == [4.0, 3.0, 1.0]  # the input is not changed
    np.testing.assert_array_equal(wide[1:], boxes[1:])
    # nothing merged: nothing measured again
    keep, _, same = merge_parts(boxes, m, np.arange(3), measure)
    assert keep.all() and len(seen) == 1 and same is m


def test_a_source_boxed_in_two_parts_is_measured_whole(tmp_path, loaded_tiny):
    """The pipeline: a faint rotating source four beams wide boxed as its two sides (sky
    and channels: as a detector boxes a large disc's receding and approaching halves) is
    one catalogue row measured over both: at the source's centre, with its line flux;
    each side measured alone (and so, before, the part kept) lies 5 pixels off."""
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.pipeline import measure_detections
    from cianna_jax.astro.predict import Detections
    from cianna_jax.astro.synthetic_cube import synthetic_cube, write_cube_fits
    from cianna_jax.yolo.decode import DecodedBoxes

    sc = synthetic_cube((40, 48, 48), seed=2, density=0.0, noise=1e-3)
    z, y, x = np.mgrid[0:40, 0:48, 0:48].astype(np.float64)
    s = sc.beam.fwhm_pixels(sc.pixel_scale) / 2.3548
    # rotating: the line's centre moves 0.6 channel per pixel along x
    line = 0.005 * np.exp(-0.5 * ((z - 20 - 0.6 * (x - 24)) / 2.0) ** 2
                         - 0.5 * ((x - 24) / (4 * s)) ** 2 - 0.5 * ((y - 24) / s) ** 2)
    write_cube_fits(tmp_path / "c.fits", replace(sc, cube=(sc.cube + line).astype(np.float32)))
    n = 2
    halves = replace(DecodedBoxes.empty(),
                     boxes=np.array([[8.0, 18.0, 6.0, 24.0, 30.0, 22.0],
                                     [24.0, 18.0, 18.0, 40.0, 30.0, 34.0]]),
                     image=np.zeros(n, np.int64), prior=np.zeros(n, np.int64),
                     cell=np.zeros((n, 3), np.int64), probability=np.ones(n),
                     objectness=np.array([0.9, 0.8]), class_scores=np.zeros((n, 0)),
                     params=np.zeros((n, 0)))
    det = Detections(boxes=halves, n_tiles=1, seconds=1.0, obj_threshold=0.5)
    with open_image(tmp_path / "c.fits") as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        area = img.beam_area_pixels()
        apart = measure_detections(img, loaded_tiny, det, noise, merge=False).table
        whole = measure_detections(img, loaded_tiny, det, noise).table
    truth = line.sum() / area * abs(sc.dfreq)  # Jy Hz
    assert len(apart) == 2 and len(whole) == 1
    # each side alone (and so, before, the part kept) lies 5 pixels off the centre
    assert np.all(np.abs(np.asarray(apart["x"]) - 24.0) > 4.0)
    assert float(whole["x"][0]) == pytest.approx(24.0, abs=1.5)
    assert float(whole["y"][0]) == pytest.approx(24.0, abs=1.0)
    assert 0.7 * truth < float(whole["line_flux"][0]) < 1.1 * truth  # (peak SNR ~6)


def test_union_boxes_keep_the_dtype_and_take_no_boxes():
    boxes = np.array([[0, 0, 0, 2, 2, 2], [1, 1, 1, 3, 3, 3]], np.float32)
    wide = union_boxes(boxes, np.array([0, 0]))
    assert wide.dtype == np.float32 and wide[0].tolist() == [0, 0, 0, 3, 3, 3]
    empty = np.zeros((0, 6), np.float32)
    assert union_boxes(empty, np.zeros(0, int)).shape == (0, 6)
    keep, wide, m = merge_parts(empty, _measurements(0, []), np.zeros(0, int),
                                lambda b: pytest.fail("nothing to measure"))
    assert keep.size == 0 and wide.shape == (0, 6) and len(m.x) == 0
