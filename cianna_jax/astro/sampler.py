"""Training patches with CIANNA YOLO targets, drawn afresh each epoch, and their prefetcher.

:class:`PatchSampler` cuts square patches from the normalised network input of a region of
the image (NaN-free, already normalised) inside a training area, with the boxes of
:class:`.labels.SourceLabels` as CIANNA target rows (:func:`radio_sky.cianna_targets`, in the
patch's pixel-edge frame).  Each epoch is a pure function of ``(seed, epoch, n)``: its
random generator is ``np.random.default_rng([seed, epoch])``, so a resumed run draws the
same patches and the order of calls does not matter.

Patch kinds (as in CIANNA's SDC1 generator, which draws uniform positions in the training
area plus a share of noise-only cutouts): *negatives* (``negative_fraction``: windows with no
box centre inside, nor within one pixel of the edge), *positives* (``positive_fraction`` of
the rest: a random source of the area near the centre, at a random offset of up to a
quarter patch) and *uniform* positions.  With ``augment`` each patch gets a random
90-degree rotation and horizontal/vertical flips, applied to pixels and boxes alike.

:class:`Prefetcher` draws epoch ``e + 1`` in a background thread while epoch ``e`` trains
(CIANNA's ``TRAIN_buf`` pattern); :func:`grid_patches` gives the deterministic tiling of an
area (validation losses).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..datasets.radio_sky import cianna_targets
from .labels import SourceLabels

__all__ = ["PatchPlan", "PatchSampler", "Prefetcher", "Cancelled", "grid_patches",
           "balanced_weights", "UNIFORM", "POSITIVE", "NEGATIVE", "transform_boxes"]

UNIFORM, POSITIVE, NEGATIVE = 0, 1, 2
"""Patch kinds of :class:`PatchPlan`."""


class Cancelled(Exception):
    """An epoch draw stopped early because its ``cancel`` event was set."""


class PatchPlan(NamedTuple):
    """Where and how the ``n`` patches of an epoch are cut: top-left ``y0, x0`` [n] int64
    (full-image pixels), ``kind`` [n] (:data:`UNIFORM`, :data:`POSITIVE`, :data:`NEGATIVE`),
    ``rot`` [n] (counter-clockwise quarter turns of ``np.rot90``, applied first), ``flip_x``,
    ``flip_y`` [n] bool (applied after the rotation); ``source`` [n] the index (in the
    labels) of the source a positive was placed around, -1 for the others."""

    y0: np.ndarray
    x0: np.ndarray
    kind: np.ndarray
    rot: np.ndarray
    flip_x: np.ndarray
    flip_y: np.ndarray
    source: np.ndarray


def _fraction(v: float, name: str, lo_open: bool = False) -> float:
    v = float(v)
    if not (0.0 < v <= 1.0 if lo_open else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in {'(0, 1]' if lo_open else '[0, 1]'}, got {v}")
    return v


def balanced_weights(codes: np.ndarray) -> np.ndarray:
    """Chances (summing to 1) for the sources of 0-based class ``codes`` [n] (-1: none
    known) that give each class present the same share of the classified sources' total,
    while the sources without a class keep their own share (one per source)."""
    codes = np.asarray(codes, np.int64)
    w = np.ones(codes.size)
    known = codes >= 0
    if known.any():
        counts = np.bincount(codes[known])
        w[known] = known.sum() / (np.count_nonzero(counts) * counts[codes[known]])
    return w / w.sum()


def transform_boxes(b: np.ndarray, P: int, rot: int, flip_x: bool, flip_y: bool) -> np.ndarray:
    """Boxes [m, 6] of a P x P patch after ``np.rot90(patch, rot)`` then the flips (pixel-edge
    frame: a quarter turn maps (x, y) to (y, P - x))."""
    b = b.copy()
    for _ in range(int(rot) % 4):
        x0, y0, x1, y1 = b[:, 0].copy(), b[:, 1].copy(), b[:, 3].copy(), b[:, 4].copy()
        b[:, 0], b[:, 3] = y0, y1
        b[:, 1], b[:, 4] = P - x1, P - x0
    if flip_x:
        b[:, 0], b[:, 3] = P - b[:, 3], P - b[:, 0]
    if flip_y:
        b[:, 1], b[:, 4] = P - b[:, 4], P - b[:, 1]
    return b


class PatchSampler:
    """Random training patches of ``image`` with CIANNA YOLO targets (see the module doc).

    ``image`` [h, w]: the normalised network input of a region (float32, NaN-free) whose
    top-left pixel is ``origin`` (y, x) of the full image; ``labels`` in the full-image frame;
    ``area`` (y0, y1, x0, x1) full-image pixels, inside the region: every patch lies fully in
    it; ``patch`` side (pixels); ``max_obj`` boxes per target row (brightest kept first).
    A box cut by the patch edge is kept, clipped to the patch, when at least ``min_visible``
    of its area is inside (CIANNA's SDC1 example keeps only whole boxes: ``min_visible=1``).
    ``negative_fraction``, ``positive_fraction`` and ``augment``: see the module doc; a
    warning says when the area has no source-free window (negatives then drawn uniformly).
    ``classes`` [n] (0-based class of each source of ``labels``, a detector that
    classifies; -1: none known): written into the targets (CIANNA's 1-based class, 0 for
    none); None: every box class 1.  ``balance_classes``: the positives placed around
    sources drawn with equal chances for every class of the area (:func:`balanced_weights`),
    so that a rare class is seen as often as a common one.
    The arrays are used as given (not copied): do not change them while drawing.
    """

    def __init__(self, image: np.ndarray, origin: tuple[int, int], labels: SourceLabels,
                 area: tuple[int, int, int, int], patch: int, max_obj: int, *,
                 negative_fraction: float = 0.1, augment: bool = True,
                 positive_fraction: float = 0.5, min_visible: float = 0.5,
                 classes: np.ndarray | None = None, balance_classes: bool = False) -> None:
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"image must be 2D [h, w], got shape {img.shape}")
        if not np.isfinite(img).all():
            raise ValueError("image has NaN or infinite pixels: give the normalised input with "
                             "blank pixels filled")
        self.image = img
        self.origin = (int(origin[0]), int(origin[1]))
        self.labels = labels
        self.patch = int(patch)
        self.max_obj = int(max_obj)
        if self.patch < 1 or self.max_obj < 1:
            raise ValueError(f"patch and max_obj must be >= 1, got {patch}, {max_obj}")
        self.negative_fraction = _fraction(negative_fraction, "negative_fraction")
        self.positive_fraction = _fraction(positive_fraction, "positive_fraction")
        self.min_visible = _fraction(min_visible, "min_visible", lo_open=True)
        self.augment = bool(augment)
        ay0, ay1, ax0, ax1 = (int(v) for v in area)
        self.area = (ay0, ay1, ax0, ax1)
        oy, ox = self.origin
        h, w = img.shape
        if not (oy <= ay0 and ay1 <= oy + h and ox <= ax0 and ax1 <= ox + w):
            raise ValueError(f"area {self.area} is not inside the image region: rows {oy}..{oy + h}, "
                             f"columns {ox}..{ox + w}")
        if ay1 - ay0 < self.patch or ax1 - ax0 < self.patch:
            raise ValueError(f"area {self.area} ({ay1 - ay0}x{ax1 - ax0}) is smaller than the "
                             f"patch {self.patch}")
        boxes = np.asarray(labels.boxes, np.float64).reshape(-1, 6)
        order = np.argsort(boxes[:, 1], kind="stable")  # by ymin, for the window look-up
        self._boxes = boxes[order]
        self._flux = np.asarray(labels.flux, np.float64)[order]
        if classes is not None and np.shape(classes) != (len(boxes),):
            raise ValueError(f"classes: one per source ({len(boxes)}), got shape "
                             f"{np.shape(classes)}")
        self._classes = (np.ones(len(boxes)) if classes is None
                         else np.asarray(classes, np.float64)[order] + 1.0)
        if balance_classes and classes is None:
            raise ValueError("balance_classes: needs the sources' classes")
        self._ymin = self._boxes[:, 1]
        self._max_h = float((boxes[:, 4] - boxes[:, 1]).max()) if len(boxes) else 0.0
        cx = np.floor(labels.x + 0.5).astype(np.int64)  # pixel holding the box centre
        cy = np.floor(labels.y + 0.5).astype(np.int64)
        self._centres = (cy, cx)
        self._in_area = np.flatnonzero((cy >= ay0) & (cy < ay1) & (cx >= ax0) & (cx < ax1))
        self._source_weights = None  # the positives' chances per source of the area
        if balance_classes and self._in_area.size:
            self._source_weights = balanced_weights(np.asarray(classes, np.int64)[self._in_area])
        self._free = self._free_positions() if self.negative_fraction > 0 else (
            np.zeros(0, np.int64), np.zeros(0, np.int64))
        if self.negative_fraction > 0 and not self.n_free:
            warnings.warn(f"no {self.patch}x{self.patch} window of area {self.area} is free of "
                          f"sources: the negatives (negative_fraction {self.negative_fraction:g}) "
                          "are drawn as uniform patches", stacklevel=2)

    # ----------------------------------------------------------------- set-up

    def _free_positions(self, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-left corners (on a grid of ``step`` pixels, plus the far edge) of the windows
        with no source centre inside or within one pixel of their edge."""
        ay0, ay1, ax0, ax1 = self.area
        P = self.patch
        g = max(1, P // 16) if step is None else int(step)
        ys = np.unique(np.append(np.arange(ay0, ay1 - P + 1, g), ay1 - P))
        xs = np.unique(np.append(np.arange(ax0, ax1 - P + 1, g), ax1 - P))
        cy, cx = self._centres
        # a window at y0 (grown by a pixel) holds cy when cy - P <= y0 <= cy + 1
        ly, hy = np.searchsorted(ys, cy - P, "left"), np.searchsorted(ys, cy + 1, "right")
        lx, hx = np.searchsorted(xs, cx - P, "left"), np.searchsorted(xs, cx + 1, "right")
        d = np.zeros((ys.size + 1, xs.size + 1), np.int64)
        np.add.at(d, (ly, lx), 1)
        np.add.at(d, (hy, lx), -1)
        np.add.at(d, (ly, hx), -1)
        np.add.at(d, (hy, hx), 1)
        blocked = np.cumsum(np.cumsum(d, 0), 1)[:-1, :-1]
        fy, fx = np.nonzero(blocked == 0)
        return ys[fy], xs[fx]

    @property
    def n_free(self) -> int:
        """Number of source-free window positions negatives are drawn from (0: none are)."""
        return int(self._free[0].size)

    # ----------------------------------------------------------------- plan and cut

    def plan(self, seed: int, epoch: int, n: int) -> PatchPlan:
        """The patch positions, kinds and augmentations of ``epoch`` (pure in its arguments).
        Negatives fall back to uniform positions when the area has no source-free window,
        positives when it holds no source."""
        if int(seed) < 0 or int(epoch) < 0 or int(n) < 0:
            raise ValueError(f"seed, epoch and n must be >= 0, got {seed}, {epoch}, {n}")
        n = int(n)
        rng = np.random.default_rng([int(seed), int(epoch)])
        ay0, ay1, ax0, ax1 = self.area
        P = self.patch
        u_neg, u_pos = rng.random(n), rng.random(n)
        y0 = rng.integers(ay0, ay1 - P + 1, n)
        x0 = rng.integers(ax0, ax1 - P + 1, n)
        kind = np.full(n, UNIFORM, np.int64)
        source = np.full(n, -1, np.int64)
        if self._in_area.size:
            src = self._in_area[rng.integers(0, self._in_area.size, n)
                                if self._source_weights is None
                                else rng.choice(self._in_area.size, n, p=self._source_weights)]
            off = rng.integers(-(P // 4), P // 4 + 1, (2, n))
            cy, cx = self._centres
            py = np.clip(cy[src] - P // 2 + off[0], ay0, ay1 - P)
            px = np.clip(cx[src] - P // 2 + off[1], ax0, ax1 - P)
            pos = u_pos < self.positive_fraction
            y0, x0 = np.where(pos, py, y0), np.where(pos, px, x0)
            kind[pos] = POSITIVE
            source[pos] = src[pos]
        if self.n_free:
            k = rng.integers(0, self.n_free, n)
            neg = u_neg < self.negative_fraction
            y0, x0 = np.where(neg, self._free[0][k], y0), np.where(neg, self._free[1][k], x0)
            kind[neg] = NEGATIVE
            source[neg] = -1
        rot = rng.integers(0, 4, n)
        fx, fy = rng.random(n) < 0.5, rng.random(n) < 0.5
        if not self.augment:
            rot, fx, fy = np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool)
        return PatchPlan(y0.astype(np.int64), x0.astype(np.int64), kind, rot.astype(np.int64),
                         fx, fy, source)

    def patch_boxes(self, y0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes [m, 6] in the patch's pixel-edge frame, clipped to it; their fluxes [m]) of
        the window with top-left ``(y0, x0)`` (full-image pixels), before augmentation."""
        boxes, rows = self._window(y0, x0)
        return boxes, self._flux[rows]

    def _window(self, y0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`patch_boxes`' boxes and their rows in the sorted source arrays."""
        P = self.patch
        lo = np.searchsorted(self._ymin, y0 - self._max_h, "right")
        hi = np.searchsorted(self._ymin, y0 + P, "left")
        b = self._boxes[lo:hi]
        ix0, ix1 = np.maximum(b[:, 0], x0), np.minimum(b[:, 3], x0 + P)
        iy0, iy1 = np.maximum(b[:, 1], y0), np.minimum(b[:, 4], y0 + P)
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        full = (b[:, 3] - b[:, 0]) * (b[:, 4] - b[:, 1])
        keep = (inter > 0) & (inter >= self.min_visible * full)
        out = b[keep].copy()
        out[:, 0], out[:, 3] = ix0[keep] - x0, ix1[keep] - x0
        out[:, 1], out[:, 4] = iy0[keep] - y0, iy1[keep] - y0
        return out, lo + np.flatnonzero(keep)

    def cut(self, y0: int, x0: int, rot: int = 0, flip_x: bool = False,
            flip_y: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One patch [P, P] float32 and its target row [1 + max_obj * 7] float32, the window at
        top-left ``(y0, x0)`` turned by ``rot`` quarter turns then flipped."""
        P = self.patch
        oy, ox = self.origin
        pix = self.image[y0 - oy:y0 - oy + P, x0 - ox:x0 - ox + P]
        if pix.shape != (P, P):
            raise ValueError(f"window ({y0}, {x0}) of size {P} leaves the image region")
        pix = np.rot90(pix, int(rot) % 4)
        if flip_x:
            pix = pix[:, ::-1]
        if flip_y:
            pix = pix[::-1]
        boxes, rows = self._window(y0, x0)
        boxes = transform_boxes(boxes, P, rot, flip_x, flip_y)
        return pix, cianna_targets(boxes, self.max_obj, priority=self._flux[rows],
                                   classes=self._classes[rows])

    def epoch(self, seed: int, epoch: int, n: int, *,
              cancel: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` patches of ``epoch``: inputs [n, P, P, 1] float32 (channel-last, index
        [y, x]) and targets [n, 1 + max_obj * 7] float32.  The same arguments give the same
        arrays whatever was drawn before.  Raises :class:`Cancelled` when ``cancel`` is set."""
        plan = self.plan(seed, epoch, n)
        P = self.patch
        inputs = np.empty((plan.y0.size, P, P, 1), np.float32)
        targets = np.empty((plan.y0.size, 1 + self.max_obj * 7), np.float32)
        for i in range(plan.y0.size):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"epoch {epoch} cancelled at patch {i}")
            inputs[i, :, :, 0], targets[i] = self.cut(
                int(plan.y0[i]), int(plan.x0[i]), int(plan.rot[i]), bool(plan.flip_x[i]),
                bool(plan.flip_y[i]))
        return inputs, targets

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-left corners (y0 [m], x0 [m]) of the non-overlapping tiling of the area, from
        its top-left corner (the remainder at the far edges is left out)."""
        ay0, ay1, ax0, ax1 = self.area
        P = self.patch
        gy, gx = np.meshgrid(np.arange(ay0, ay1 - P + 1, P), np.arange(ax0, ax1 - P + 1, P),
                             indexing="ij")
        return gy.reshape(-1), gx.reshape(-1)


class FieldsSampler:
    """The patches of several fields (one :class:`PatchSampler` each, same patch size and
    ``max_obj``): epoch ``e`` takes from each a share of the ``n`` patches proportional to
    its training area (largest remainders), draws them with a seed of its own and returns
    them shuffled together; the same arguments give the same arrays."""

    def __init__(self, samplers: Sequence[PatchSampler]) -> None:
        self.samplers = tuple(samplers)
        if not self.samplers:
            raise ValueError("samplers: expected at least one field")
        if len({(p.patch, p.max_obj) for p in self.samplers}) != 1:
            raise ValueError("samplers: every field needs the same patch size and max_obj")
        areas = np.array([(a[1] - a[0]) * (a[3] - a[2]) for a in
                          (p.area for p in self.samplers)], np.float64)
        self.weights = areas / areas.sum()

    def shares(self, n: int) -> np.ndarray:
        """How many of ``n`` patches each field gives (they sum to ``n``)."""
        raw = self.weights * int(n)
        k = np.floor(raw).astype(np.int64)
        order = np.argsort(-(raw - k), kind="stable")
        k[order[:int(n) - int(k.sum())]] += 1
        return k

    def epoch(self, seed: int, epoch: int, n: int, *,
              cancel: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`PatchSampler.epoch`, over every field."""
        parts = [p.epoch(int(seed) + 1_000_003 * i, epoch, int(k), cancel=cancel)
                 for i, (p, k) in enumerate(zip(self.samplers, self.shares(n))) if k]
        x = np.concatenate([a for a, _ in parts])
        t = np.concatenate([b for _, b in parts])
        order = np.random.default_rng([int(seed), int(epoch), 7]).permutation(len(x))
        return x[order], t[order]


def grid_patches(image: np.ndarray, origin: tuple[int, int], labels: SourceLabels,
                 area: tuple[int, int, int, int], patch: int, max_obj: int, *,
                 min_visible: float = 0.5,
                 classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic non-overlapping tiling of ``area`` (no augmentation): inputs
    [m, P, P, 1] and targets [m, 1 + max_obj * 7], float32, in row-major tile order
    (arguments as :class:`PatchSampler`); for validation losses."""
    s = PatchSampler(image, origin, labels, area, patch, max_obj, negative_fraction=0.0,
                     augment=False, min_visible=min_visible, classes=classes)
    ys, xs = s.grid()
    inputs = np.empty((ys.size, s.patch, s.patch, 1), np.float32)
    targets = np.empty((ys.size, 1 + s.max_obj * 7), np.float32)
    for i in range(ys.size):
        inputs[i, :, :, 0], targets[i] = s.cut(int(ys[i]), int(xs[i]))
    return inputs, targets


class Prefetcher:
    """Draws ``sampler.epoch(seed, e + 1, n)`` in a daemon thread while epoch ``e`` is used.

    ``get(epoch)`` returns exactly ``sampler.epoch(seed, epoch, n)`` (waiting for the thread
    when it is drawing that epoch, drawing in the caller's thread otherwise) and starts the
    next epoch; an exception raised in the thread is raised again by ``get``.  ``close()``
    (or leaving a ``with`` block) cancels the draw under way and waits for the thread.
    ``sampler`` needs ``epoch(seed, epoch, n, cancel=event)``.
    """

    def __init__(self, sampler: Any, seed: int, n: int, start_epoch: int = 0) -> None:
        self._sampler = sampler
        self._seed, self._n = int(seed), int(n)
        self._job: tuple[int, threading.Thread, dict, threading.Event] | None = None
        self._closed = False
        self._start(int(start_epoch))

    def _start(self, epoch: int) -> None:
        box: dict[str, Any] = {}
        cancel = threading.Event()

        def work() -> None:
            try:
                box["value"] = self._sampler.epoch(self._seed, epoch, self._n, cancel=cancel)
            except Cancelled:
                pass
            except BaseException as err:  # handed to get()
                box["error"] = err

        t = threading.Thread(target=work, name=f"cianna-jax-prefetch-{epoch}", daemon=True)
        self._job = (epoch, t, box, cancel)
        t.start()

    def _stop(self) -> None:
        if self._job is not None:
            _, t, _, cancel = self._job
            cancel.set()
            t.join()
            self._job = None

    def get(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of ``epoch`` (see the class doc); starts drawing ``epoch + 1``."""
        if self._closed:
            raise RuntimeError("Prefetcher.get after close()")
        epoch = int(epoch)
        job = self._job
        if job is not None and job[0] == epoch:
            job[1].join()
            self._job = None
            if "error" in job[2]:
                raise job[2]["error"]
            value = job[2]["value"]
        else:  # another epoch was asked for: drop the draw under way
            self._stop()
            value = self._sampler.epoch(self._seed, epoch, self._n)
        self._start(epoch + 1)
        return value

    def close(self) -> None:
        """Cancel the draw under way and wait for its thread (idempotent)."""
        self._stop()
        self._closed = True

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
