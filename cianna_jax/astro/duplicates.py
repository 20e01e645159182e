"""Duplicate detections merged: a detector may box one source twice (overlapping tiles the
NMS did not join; in a cube each horn of a double-horned HI line, or the parts of a large
rotating disc). ``predict`` and the per-epoch validation of ``cianna-jax train`` merge them
alike: in an image the best score is kept; in a cube the largest line flux, measured again
over the envelope of the merged boxes (:func:`union_boxes`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .measure import FWHM, Measurements

__all__ = ["unique_lines", "line_owners", "union_boxes", "merge_parts", "unique_sources",
           "best_of_duplicates", "duplicate_owners"]


def unique_lines(m: Measurements, score: np.ndarray, beam_sigma: float) -> np.ndarray:
    """Mask of the cube detections kept when duplicates are merged (:func:`line_owners`)."""
    owner = line_owners(m, score, beam_sigma)
    return owner == np.arange(owner.size)


def line_owners(m: Measurements, score: np.ndarray, beam_sigma: float) -> np.ndarray:
    """For each cube detection, the index of the one it merges into (its own where it is
    kept) when duplicates are merged: two detections are one
    galaxy when their sky centres are closer than the sum of their FWHMs (each at least the
    beam's) and their lines overlap in channel (between their 20% crossings, or within a
    channel of the centre where a line has none). Of such detections the one that measures
    the larger line flux (``m.flux``) is kept, the higher ``score`` where fluxes tie or are
    unknown. A detector boxes a wide line more than once: each horn of a double-horned line
    and, in a galaxy several beams wide, the parts of its disc that emit at different
    velocities (on the receding and approaching sides, offset along its major axis by up
    to its FWHM). Each part measures part of the galaxy's flux, so the whole is kept,
    whatever the detector's scores."""
    fw = FWHM * np.maximum(np.nan_to_num(m.sigma_major), beam_sigma)
    lo = np.where(np.isfinite(m.line[:, 0]), m.line[:, 0], m.z - 1.0)
    hi = np.where(np.isfinite(m.line[:, 1]), m.line[:, 1], m.z + 1.0)
    pts = np.stack([m.x, m.y], 1)
    flux = np.asarray(m.flux, np.float64)
    rank = np.empty(len(pts), np.float64)  # flux first, then score; unknown fluxes last
    rank[np.lexsort((np.asarray(score, np.float64),
                     np.where(np.isfinite(flux), flux, -np.inf)))] = np.arange(len(pts))

    def same(i: int, j: int) -> bool:
        return bool(np.hypot(*(pts[j] - pts[i])) < fw[i] + fw[j]
                    and lo[j] <= hi[i] and lo[i] <= hi[j])

    return duplicate_owners(pts, rank, fw + (fw.max() if fw.size else 0.0), same)


def union_boxes(boxes: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``boxes [n, 2d]`` (lower corners, then upper) with each kept detection's box widened
    to the envelope of the boxes merged into it (``owner``, :func:`line_owners`): a galaxy
    boxed in parts (its horns, its disc's receding and approaching sides) is measured
    whole, where the part kept alone measured 0.32-0.72 of four faint discs' line fluxes
    (benchmarks/README.md, fifty-sixth session).  The boxes' dtype is kept."""
    src = np.asarray(boxes)
    b = src.copy()
    owner = np.asarray(owner, np.intp)
    d = b.shape[1] // 2
    np.minimum.at(b[:, :d], owner, src[:, :d])
    np.maximum.at(b[:, d:], owner, src[:, d:])
    return b


def merge_parts(boxes: np.ndarray, m: Measurements, owner: np.ndarray,
                measure: Callable[[np.ndarray], Measurements]
                ) -> tuple[np.ndarray, np.ndarray, Measurements]:
    """The cube detections kept (mask) when the duplicates ``owner`` names
    (:func:`line_owners`) are merged, every detection's box (the kept ones' widened,
    :func:`union_boxes`) and the measurements ``m`` with the widened boxes measured again
    by ``measure`` (boxes ``[k, 6]`` -> their measurements)."""
    keep = owner == np.arange(len(owner))
    wide = union_boxes(boxes, owner)
    grown = np.flatnonzero(keep & np.any(wide != np.asarray(boxes), axis=1))
    if grown.size:
        m = m.put(grown, measure(wide[grown]))
    return keep, wide, m


def unique_sources(m: Measurements, score: np.ndarray, beam_sigma: float) -> np.ndarray:
    """Mask of the detections kept when duplicates (fitted centres within half the larger of
    the beam and the kept source FWHM) are merged, best score first."""
    radius = 0.5 * FWHM * np.maximum(m.sigma_major, beam_sigma)
    return best_of_duplicates(np.stack([m.x, m.y], 1), score, radius, lambda i, j: True)


def best_of_duplicates(pts: np.ndarray, score: np.ndarray, reach: np.ndarray,
                       same: Callable[[int, int], bool]) -> np.ndarray:
    """Mask of the detections kept, best ``score`` first (:func:`duplicate_owners`)."""
    owner = duplicate_owners(pts, score, reach, same)
    return owner == np.arange(owner.size)


def duplicate_owners(pts: np.ndarray, score: np.ndarray, reach: np.ndarray,
                     same: Callable[[int, int], bool]) -> np.ndarray:
    """For each detection, the index of the one kept in its place (its own where kept),
    best ``score`` first: each kept one drops the lower-scored others within its
    ``reach`` on the sky (``pts`` [n, 2]) that ``same`` says are the same source."""
    from scipy.spatial import cKDTree

    n = len(pts)
    owner = np.arange(n)
    if n < 2:
        return owner
    tree = cKDTree(np.nan_to_num(pts))
    for i in np.argsort(-np.asarray(score, np.float64), kind="stable"):
        if owner[i] != i or not np.isfinite(pts[i]).all():
            continue
        for j in tree.query_ball_point(pts[i], r=reach[i]):
            if j != i and owner[j] == j and score[j] <= score[i] and same(i, j):
                owner[j] = i
    # a tie dropped, after it dropped others, by one of equal score: theirs too
    while not np.array_equal(owner[owner], owner):
        owner = owner[owner]
    return owner
