"""Training patches: determinism per (seed, epoch), the background prefetcher, flips and
rotations applied alike to pixels and boxes, source-free negatives, edge clipping, target
rows, the validation tiling."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cianna_jax.astro.labels import SourceLabels
from cianna_jax.astro.sampler import (
    NEGATIVE,
    POSITIVE,
    Cancelled,
    FieldsSampler,
    PatchSampler,
    Prefetcher,
    grid_patches,
)
from cianna_jax.datasets import radio_sky as rs


def _labels(x, y, flux=None, bmaj=5.0, bmin=3.0, shape=(64, 96)):
    """Sources at pixel centres (x, y), major axis along y: boxes 6 wide, 10 high."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    flux = np.arange(1.0, x.size + 1) if flux is None else np.asarray(flux, float)
    cat = rs.Catalogue.create(x, y, flux, bmaj, bmin)
    return SourceLabels(x=x, y=y, flux=flux, bmaj=cat.bmaj, bmin=cat.bmin, theta=cat.pa, snr=None,
                        boxes=rs.boxes_from_catalogue(cat), image_shape=shape, source="test")


def _scene(seed=0, n=12, shape=(64, 96), lo=4):
    """An image of zeros with one bright pixel per source, each of its own value."""
    rng = np.random.default_rng(seed)
    H, W = shape
    cells = rng.choice((H - 2 * lo) * (W - 2 * lo), n, replace=False)
    y, x = cells // (W - 2 * lo) + lo, cells % (W - 2 * lo) + lo
    img = np.zeros(shape, np.float32)
    values = 1.0 + np.arange(n) / 100.0
    img[y, x] = values
    return img, _labels(x, y, flux=values, shape=shape), values


def _prefetch_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("cianna-jax-prefetch"))


def _boxes_of(row, max_obj):
    n = int(row[0])
    return row[1:1 + 7 * max_obj].reshape(max_obj, 7)[:n]


def test_epochs_are_pure_functions_of_seed_and_epoch():
    img, lab, _ = _scene()
    s = PatchSampler(img, (0, 0), lab, (0, 64, 0, 96), 16, 8)
    a1 = s.epoch(3, 1, 10)
    s.epoch(3, 0, 7)
    a1b = s.epoch(3, 1, 10)
    s2 = PatchSampler(img, (0, 0), lab, (0, 64, 0, 96), 16, 8)
    a1c = s2.epoch(3, 1, 10)  # a fresh sampler, no earlier call
    for x in (a1b, a1c):
        np.testing.assert_array_equal(x[0], a1[0])
        np.testing.assert_array_equal(x[1], a1[1])
    assert a1[0].shape == (10, 16, 16, 1) and a1[0].dtype == np.float32
    assert a1[1].shape == (10, 1 + 8 * 7) and a1[1].dtype == np.float32
    assert not np.array_equal(s.epoch(3, 2, 10)[0], a1[0])
    assert not np.array_equal(s.epoch(4, 1, 10)[0], a1[0])


def test_prefetcher_returns_the_synchronous_arrays():
    img, lab, _ = _scene()
    s = PatchSampler(img, (0, 0), lab, (0, 64, 0, 96), 16, 8)
    with Prefetcher(s, seed=5, n=6, start_epoch=2) as pf:
        for e in (2, 3, 4, 9, 10):  # 9: out of order, drawn in the caller's thread
            got = pf.get(e)
            want = s.epoch(5, e, 6)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    assert _prefetch_threads() == []
    with pytest.raises(RuntimeError, match="after close"):
        pf.get(11)


def test_augmented_boxes_still_enclose_their_source_pixel():
    img, lab, values = _scene(seed=1, n=14)
    P, max_obj = 24, 16
    s = PatchSampler(img, (0, 0), lab, (0, 64, 0, 96), P, max_obj, negative_fraction=0.0,
                     min_visible=0.3)
    plan = s.plan(7, 0, 60)
    assert len({(int(r), bool(fx), bool(fy)) for r, fx, fy in
                zip(plan.rot, plan.flip_x, plan.flip_y)}) >= 12
    inputs, targets = s.epoch(7, 0, 60)
    checked = clipped = 0
    for i in range(60):
        patch = inputs[i, :, :, 0]
        boxes = _boxes_of(targets[i], max_obj)
        assert len(boxes) == len(s.patch_boxes(int(plan.y0[i]), int(plan.x0[i]))[0])
        for b in boxes:  # class 1, z from 0 to 1, inside the patch
            assert b[0] == 1.0 and b[3] == 0.0 and b[6] == 1.0
            assert 0 <= b[1] < b[4] <= P and 0 <= b[2] < b[5] <= P
        for v in values:  # every source pixel in the patch lies in a box
            yy, xx = np.nonzero(patch == np.float32(v))
            if yy.size:
                cy, cx = yy[0] + 0.5, xx[0] + 0.5
                hit = [(b[1] <= cx <= b[4]) and (b[2] <= cy <= b[5]) for b in boxes]
                assert any(hit), (i, v, plan.rot[i], plan.flip_x[i], plan.flip_y[i])
                checked += 1
        for b in boxes:  # whole boxes: centred on their source pixel, turned with the patch
            w, h = round(float(b[4] - b[1]), 4), round(float(b[5] - b[2]), 4)
            if {w, h} != {6.0, 10.0}:
                clipped += 1
                continue
            cx, cy = (b[1] + b[4]) / 2, (b[2] + b[5]) / 2
            assert patch[int(cy), int(cx)] > 0
            assert (w == 10.0) == (plan.rot[i] % 2 == 1)
    assert checked > 60 and clipped > 0


def test_negatives_hold_no_source_and_positives_one():
    img, lab, _ = _scene(seed=2, n=10, shape=(64, 128))
    keep = lab.x < 60  # sources on the left half only: source-free windows on the right
    lab = lab.select(keep)
    P = 16
    s = PatchSampler(img, (0, 0), lab, (0, 64, 0, 128), P, 8, negative_fraction=0.4,
                     positive_fraction=0.5)
    assert s.n_free > 0
    plan = s.plan(1, 3, 200)
    inputs, targets = s.epoch(1, 3, 200)
    neg, pos = plan.kind == NEGATIVE, plan.kind == POSITIVE
    assert 50 < neg.sum() < 110 and pos.sum() > 30
    cy, cx = np.floor(lab.y + 0.5), np.floor(lab.x + 0.5)
    for i in np.flatnonzero(neg):
        y0, x0 = plan.y0[i], plan.x0[i]
        assert not np.any((cy >= y0 - 1) & (cy <= y0 + P) & (cx >= x0 - 1) & (cx <= x0 + P))
        assert targets[i, 0] == 0 and not targets[i, 1:].any()
    assert (targets[pos, 0] >= 1).all()  # a source within a quarter patch of the centre
    # an area full of sources has no source-free window: negatives fall back to uniform
    gx, gy = np.meshgrid(np.arange(2, 96, 8), np.arange(2, 64, 8))
    with pytest.warns(UserWarning, match="no 16x16 window of area .* is free of sources"):
        s2 = PatchSampler(np.zeros((64, 96), np.float32), (0, 0),
                          _labels(gx.ravel(), gy.ravel()), (0, 64, 0, 96), 16, 8,
                          negative_fraction=0.5)
    assert s2.n_free == 0 and not (s2.plan(0, 0, 50).kind == NEGATIVE).any()


def test_edge_boxes_clipped_or_dropped():
    # one box: x 10..20, y 30..40 (centre 15, 35; 10 x 10)
    lab = _labels([14.5], [34.5], bmaj=5.0, bmin=5.0, shape=(64, 64))
    np.testing.assert_allclose(lab.boxes[0], [10, 30, 0, 20, 40, 1])
    img = np.zeros((64, 64), np.float32)
    half = PatchSampler(img, (0, 0), lab, (0, 64, 0, 64), 16, 4, min_visible=0.5)
    b, f = half.patch_boxes(28, 15)  # half of the box inside along x
    np.testing.assert_allclose(b, [[0, 2, 0, 5, 12, 1]])
    assert f.tolist() == [1.0]
    strict = PatchSampler(img, (0, 0), lab, (0, 64, 0, 64), 16, 4, min_visible=0.6)
    assert strict.patch_boxes(28, 15)[0].shape == (0, 6)
    whole = PatchSampler(img, (0, 0), lab, (0, 64, 0, 64), 16, 4, min_visible=1.0)
    assert whole.patch_boxes(28, 4)[0].shape == (1, 6)  # x 4..20 holds 10..20
    assert whole.patch_boxes(28, 11)[0].shape == (0, 6)
    assert half.patch_boxes(28, 20)[0].shape == (0, 6)  # touching is not overlapping
    # the region's origin shifts pixels, not boxes (full-image frame)
    region = np.arange(40 * 48, dtype=np.float32).reshape(40, 48)
    sub = PatchSampler(region, (20, 8), lab, (20, 60, 8, 56), 16, 4)
    pix, row = sub.cut(28, 15)
    np.testing.assert_array_equal(pix, region[8:24, 7:23])
    np.testing.assert_allclose(row[:8], [1, 1, 0, 2, 0, 5, 12, 1])


def test_target_rows_keep_the_brightest_first():
    x = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    lab = _labels(x, np.full(5, 30.0), flux=[3.0, 9.0, 1.0, 7.0, 5.0], shape=(64, 64))
    s = PatchSampler(np.zeros((64, 64), np.float32), (0, 0), lab, (0, 64, 0, 64), 64, 3,
                     negative_fraction=0.0)
    _, row = s.cut(0, 0)
    assert row.shape == (1 + 3 * 7,) and row[0] == 3
    boxes = row[1:].reshape(3, 7)
    np.testing.assert_allclose((boxes[:, 1] + boxes[:, 4]) / 2, [20.5, 40.5, 50.5])
    np.testing.assert_allclose(boxes[:, [0, 3, 6]], np.tile([1.0, 0.0, 1.0], (3, 1)))


class _Failing:
    def __init__(self, bad_epoch):
        self.bad = bad_epoch

    def epoch(self, seed, epoch, n, *, cancel=None):
        if epoch == self.bad:
            raise ValueError(f"boom in epoch {epoch}")
        return np.full((n, 2, 2, 1), epoch, np.float32), np.zeros((n, 8), np.float32)


class _Slow:
    def epoch(self, seed, epoch, n, *, cancel=None):
        if epoch > 0:
            cancel.wait(30.0)
            raise Cancelled("stopped")
        return np.zeros((n, 2, 2, 1), np.float32), np.zeros((n, 8), np.float32)


class _Recording:
    def __init__(self):
        self.calls, self.seen = [], threading.Event()

    def epoch(self, seed, epoch, n, *, cancel=None):
        self.calls.append((epoch, threading.current_thread().name))
        if epoch == 4:
            self.seen.set()
        return np.full((n, 2, 2, 1), epoch, np.float32), np.zeros((n, 8), np.float32)


def test_prefetcher_draws_the_next_epoch_in_the_background():
    rec = _Recording()
    with Prefetcher(rec, seed=0, n=1, start_epoch=3) as pf:
        assert pf.get(3)[0][0, 0, 0, 0] == 3
        assert rec.seen.wait(10.0)  # epoch 4 drawn without being asked for
        assert rec.calls == [(3, "cianna-jax-prefetch-3"), (4, "cianna-jax-prefetch-4")]
        assert pf.get(4)[0][0, 0, 0, 0] == 4
        assert len(rec.calls) in (2, 3)  # epoch 4 was not drawn twice


def test_prefetcher_raises_thread_errors_and_closes_promptly():
    pf = Prefetcher(_Failing(1), seed=0, n=2)
    assert pf.get(0)[0][0, 0, 0, 0] == 0
    with pytest.raises(ValueError, match="boom in epoch 1"):
        pf.get(1)
    pf.close()
    img, lab, _ = _scene()
    s = PatchSampler(img, (0, 0), lab, (0, 64, 0, 96), 16, 8)
    with Prefetcher(s, seed=-1, n=4) as bad, pytest.raises(ValueError, match="seed, epoch and n"):
        bad.get(0)
    slow = Prefetcher(_Slow(), seed=0, n=2)
    slow.get(0)  # epoch 1 now waits in the thread until cancelled
    assert _prefetch_threads() == ["cianna-jax-prefetch-1"]
    start = time.perf_counter()
    slow.close()
    assert time.perf_counter() - start < 5 and _prefetch_threads() == []


def test_grid_patches_tile_the_area():
    img, lab, _ = _scene(seed=3)
    inputs, targets = grid_patches(img, (0, 0), lab, (0, 64, 8, 96), 16, 8, min_visible=0.3)
    assert inputs.shape == (4 * 5, 16, 16, 1) and targets.shape == (20, 57)
    np.testing.assert_array_equal(inputs[6, :, :, 0], img[16:32, 24:40])
    s = PatchSampler(img, (0, 0), lab, (0, 64, 8, 96), 16, 8, augment=False, min_visible=0.3)
    np.testing.assert_array_equal(targets[6], s.cut(16, 24)[1])
    # each source pixel of the tiled part (x 8..88) lies in one tile, with its box there
    tiled = (lab.x >= 8) & (lab.x < 88)
    assert 0 < tiled.sum() <= targets[:, 0].sum() < len(lab) + 8


def test_bad_inputs_named():
    img, lab, _ = _scene()
    with pytest.raises(ValueError, match="NaN"):
        PatchSampler(np.full((64, 96), np.nan, np.float32), (0, 0), lab, (0, 64, 0, 96), 16, 8)
    with pytest.raises(ValueError, match="not inside the image region"):
        PatchSampler(img, (0, 0), lab, (0, 65, 0, 96), 16, 8)
    with pytest.raises(ValueError, match="smaller than the patch"):
        PatchSampler(img, (0, 0), lab, (0, 10, 0, 96), 16, 8)
    with pytest.raises(ValueError, match="negative_fraction"):
        PatchSampler(img, (0, 0), lab, (0, 64, 0, 96), 16, 8, negative_fraction=1.5)


def test_several_fields_share_an_epoch_by_training_area():
    """FieldsSampler: a field of twice the area gives twice the patches; the epoch is a
    pure function of (seed, epoch), its patches those of the fields' own draws, shuffled."""
    img_a, lab_a, _ = _scene(0)
    img_b, lab_b, _ = _scene(1)
    a = PatchSampler(img_a, (0, 0), lab_a, (0, 64, 0, 96), 16, 8)
    b = PatchSampler(img_b, (0, 0), lab_b, (0, 32, 0, 96), 16, 8)  # half the area
    both = FieldsSampler([a, b])
    assert both.shares(30).tolist() == [20, 10] and both.shares(7).sum() == 7
    x, t = both.epoch(3, 1, 30)
    x2, t2 = both.epoch(3, 1, 30)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(t, t2)
    own = np.concatenate([a.epoch(3, 1, 20)[0], b.epoch(3 + 1_000_003, 1, 10)[0]])
    key = lambda arr: sorted(map(bytes, arr.reshape(len(arr), -1)))  # noqa: E731
    assert key(x) == key(own)  # the same patches...
    assert not np.array_equal(x, own)  # ...shuffled together
    with pytest.raises(ValueError, match="same patch size and max_obj"):
        FieldsSampler([a, PatchSampler(img_b, (0, 0), lab_b, (0, 64, 0, 96), 32, 8)])
