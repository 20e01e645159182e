"""One-to-one positional cross-match of a source catalogue with a truth catalogue.

A detection and a true source may match when their distance is at most the true
source's match radius, by default its beam-convolved FWHM size:
``radius = factor * sqrt(beam^2 + size^2)`` for intrinsic sizes, or
``factor * max(beam, size)`` when the sizes already include the beam.  Candidate pairs
are taken in increasing distance / radius and each source is used once (greedy
one-to-one).  Works on the sky (degrees in, arcsec radii, exact great-circle
distances) or on pixels. ``pair_ok`` (detection indices, true source indices -> mask)
restricts the candidate pairs further, e.g. to lines close in frequency in a cube.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import as_bounded_float
from .sky import angular_separation

__all__ = ["Match", "match_radius", "crossmatch_sky", "crossmatch_pixels", "unit_vectors",
           "sky_chord", "sky_neighbours", "tangent_plane"]


@dataclass(frozen=True)
class Match:
    """Result of a cross-match: ``det``/``truth`` indices of the matched pairs (sorted by
    detection), their ``separation`` (arcsec on the sky, pixels otherwise), and for every
    detection/true source the index of its partner (-1: none)."""

    det: np.ndarray
    truth: np.ndarray
    separation: np.ndarray
    det_to_truth: np.ndarray
    truth_to_det: np.ndarray

    @property
    def n(self) -> int:
        return int(self.det.size)


def match_radius(beam: float, size: np.ndarray | float | None = None, *, factor: float = 1.0,
                 sizes_include_beam: bool = True) -> np.ndarray:
    """Per true source match radius from the beam FWHM and the source FWHM size (same unit)."""
    as_bounded_float(beam, "beam")
    as_bounded_float(factor, "factor")
    s = np.zeros(1) if size is None else np.nan_to_num(np.asarray(size, np.float64))
    r = np.maximum(beam, s) if sizes_include_beam else np.sqrt(beam**2 + s**2)
    return factor * np.atleast_1d(r)


def _greedy(n_det: int, n_truth: int, di: np.ndarray, ti: np.ndarray, dist: np.ndarray,
            radius: np.ndarray, pair_ok=None) -> Match:
    ok = dist <= radius[ti]
    if pair_ok is not None and ok.any():
        ok[ok] = np.asarray(pair_ok(di[ok], ti[ok]), bool)
    di, ti, dist = di[ok], ti[ok], dist[ok]
    order = np.lexsort((ti, di, dist / radius[ti]))
    d2t = np.full(n_det, -1, np.int64)
    t2d = np.full(n_truth, -1, np.int64)
    sep = np.full(n_det, np.nan)
    for k in order:
        a, b = di[k], ti[k]
        if d2t[a] < 0 and t2d[b] < 0:
            d2t[a], t2d[b], sep[a] = b, a, dist[k]
    det = np.flatnonzero(d2t >= 0)
    return Match(det=det, truth=d2t[det], separation=sep[det], det_to_truth=d2t,
                 truth_to_det=t2d)


def _positions(a, b, names: tuple[str, str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Two coordinate columns as float64 vectors of one length, finite (a NaN or inf
    position can match nothing: it is named with its row instead)."""
    a, b = (np.asarray(v, np.float64).reshape(-1) for v in (a, b))
    if a.size != b.size:
        raise ValueError(f"{names[0]}, {names[1]}: {what} need as many values in each, "
                         f"received {a.size} and {b.size}")
    bad = ~(np.isfinite(a) & np.isfinite(b))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{names[0]}, {names[1]}: {what} row {i} is not a finite position "
                         f"({a[i]}, {b[i]}); drop it before matching")
    return a, b


def _radii(radius, n: int, name: str) -> np.ndarray:
    """``radius`` (scalar or one per true source) as ``n`` finite radii > 0."""
    r = np.asarray(radius, np.float64)
    if r.ndim > 1 or (r.ndim == 1 and r.size != n):
        raise ValueError(f"{name}: expected one radius or one per true source ({n}), received "
                         f"shape {r.shape}")
    r = np.broadcast_to(r, (n,)).copy()
    if not np.all(np.isfinite(r) & (r > 0)):
        raise ValueError(f"{name}: radii must be finite and > 0, received "
                         f"{r[~(np.isfinite(r) & (r > 0))][0]}")
    return r


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``(n, 3)``: the unit vectors of sky positions (degrees), for KD-trees on the sphere."""
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], 1)


def tangent_plane(ra: np.ndarray, dec: np.ndarray, centre: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, cos, centre)``: gnomonic offsets east and north (arcsec) of sky positions
    (degrees) on the plane tangent at ``centre`` (a unit vector; default their mean
    direction), the cosine of each one's distance from it (near 0 or below: too far for
    the plane), and that centre."""
    v = unit_vectors(ra, dec)
    if centre is None:
        centre = v.mean(axis=0)
        centre = centre / np.linalg.norm(centre)
    east = np.cross([0.0, 0.0, 1.0], centre)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-9 else np.array([0, 1.0, 0])
    north = np.cross(centre, east)
    cz = v @ centre
    k = 180.0 * 3600.0 / np.pi / np.maximum(cz, 1e-9)
    return k * (v @ east), k * (v @ north), cz, centre


def sky_chord(radius_arcsec: float) -> float:
    """The straight-line distance between unit vectors ``radius_arcsec`` apart on the sky."""
    return float(2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0))


def sky_neighbours(ra: np.ndarray, dec: np.ndarray, ra_o: np.ndarray, dec_o: np.ndarray,
                   radius_arcsec: float) -> list:
    """For each position (``ra``, ``dec``, degrees), the indices of the positions
    (``ra_o``, ``dec_o``) within ``radius_arcsec`` of it (a KD-tree on the sphere)."""
    from scipy.spatial import cKDTree

    if not np.size(ra) or not np.size(ra_o):
        return [[] for _ in range(np.size(ra))]
    return list(cKDTree(unit_vectors(ra_o, dec_o)).query_ball_point(
        unit_vectors(ra, dec), r=sky_chord(radius_arcsec)))


def crossmatch_sky(ra: np.ndarray, dec: np.ndarray, ra_t: np.ndarray, dec_t: np.ndarray,
                   radius_arcsec: np.ndarray | float, *, pair_ok=None) -> Match:
    """Match detections (``ra``, ``dec``, deg) to true sources (``ra_t``, ``dec_t``) within
    ``radius_arcsec`` (scalar or one per true source) and ``pair_ok`` (module doc)."""
    ra, dec = _positions(ra, dec, ("ra", "dec"), "detections")
    ra_t, dec_t = _positions(ra_t, dec_t, ("ra_t", "dec_t"), "true sources")
    for name, d in (("dec", dec), ("dec_t", dec_t)):
        if d.size and np.max(np.abs(d)) > 90:
            raise ValueError(f"{name}: declinations must be within [-90, 90] deg, received "
                             f"{d[np.argmax(np.abs(d))]}")
    r = _radii(radius_arcsec, ra_t.size, "radius_arcsec")
    if ra.size == 0 or ra_t.size == 0:
        return _greedy(ra.size, ra_t.size, np.zeros(0, int), np.zeros(0, int), np.zeros(0), r)
    # (a hair wide: the exact distances below decide)
    pairs = sky_neighbours(ra, dec, ra_t, dec_t, float(np.max(r)) * (1 + 1e-9))
    di = np.repeat(np.arange(ra.size), [len(p) for p in pairs])
    ti = np.concatenate([np.asarray(p, np.int64) for p in pairs]).astype(np.int64)
    dist = angular_separation(ra[di], dec[di], ra_t[ti], dec_t[ti]) * 3600.0
    return _greedy(ra.size, ra_t.size, di, ti, dist, r, pair_ok)


def crossmatch_pixels(x: np.ndarray, y: np.ndarray, x_t: np.ndarray, y_t: np.ndarray,
                      radius: np.ndarray | float, *, pair_ok=None) -> Match:
    """As :func:`crossmatch_sky` with pixel positions and radii in pixels."""
    from scipy.spatial import cKDTree

    x, y = _positions(x, y, ("x", "y"), "detections")
    x_t, y_t = _positions(x_t, y_t, ("x_t", "y_t"), "true sources")
    r = _radii(radius, x_t.size, "radius")
    if x.size == 0 or x_t.size == 0:
        return _greedy(x.size, x_t.size, np.zeros(0, int), np.zeros(0, int), np.zeros(0), r)
    pairs = cKDTree(np.stack([x_t, y_t], 1)).query_ball_point(np.stack([x, y], 1),
                                                              r=float(np.max(r)))
    di = np.repeat(np.arange(x.size), [len(p) for p in pairs])
    ti = np.concatenate([np.asarray(p, np.int64) for p in pairs]).astype(np.int64)
    dist = np.hypot(x[di] - x_t[ti], y[di] - y_t[ti])
    return _greedy(x.size, x_t.size, di, ti, dist, r, pair_ok)
