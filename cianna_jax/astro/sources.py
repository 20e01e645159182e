"""Gaussian components grouped into sources, and a source list, as PyBDSF makes them.

A catalogue row is one fitted Gaussian. A radio galaxy's core and lobes, or a source
split at its peaks (:mod:`.deblend`), are several rows of one source. PyBDSF writes both
lists (``gaul``: Gaussians, ``srl``: sources with ``S_Code``) and groups Gaussians by a
rule this module applies to a catalogue's Gaussians, as that rule reads them (its
``group_tol``, default 1, and ``thresh_isl``, 3):

* two Gaussians are in one *island* when the catalogue's ``island_id`` says so (the image's
  pixels ``thresh_isl`` x rms above the background, 8-connected, :mod:`.islands`, as
  ``predict`` finds them; another finder's ``Isl_id``); a catalogue without one: when the
  sum of all its Gaussians stays at or above ``thresh_isl`` x rms along the segment between
  their centres (one path through such pixels);
* two Gaussians of one island are one *source* when that sum along the segment has no dip
  (its lowest and highest values at the two centres), or when it never falls more than
  ``group_tol`` x ``thresh_isl`` x rms below the fainter Gaussian's peak and the centres
  are closer than ``group_tol / 2`` x the sum of the two FWHMs along the segment;
* sources and islands are the groups so linked (directly or through others).

``s_code``: "S" one Gaussian alone in its island, "C" one Gaussian in an island with other
sources, "M" several Gaussians. A source's flux is the sum of its Gaussians' (errors in
quadrature), its position their flux-weighted mean (the centroid of the summed model), its
size the second moments of that model (FWHM axes and position angle), its peak the model's
maximum. Positions and sizes are computed in the plane tangent to the sky at the source
(east, north in arcsec) when the catalogue has ra and dec, else in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .catalogue import column_values, make_table, require_columns
from .flags import renumbered

__all__ = ["GROUP_TOL", "THRESH_ISL", "SOURCES_NOTE", "Gaussians", "table_gaussians",
           "group_components", "s_codes", "with_sources", "covariances", "FWHM",
           "checked_group_tol", "format_grouping"]

#: PyBDSF's defaults: the grouping tolerance and the island threshold (in rms)
GROUP_TOL = 1.0
THRESH_ISL = 3.0
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: what the source columns mean, for a catalogue's metadata
SOURCES_NOTE = ("source_id: the Gaussians of one source share it (1 for the brightest's); "
                "s_code: S one Gaussian alone in its island, C one Gaussian in an island "
                "with other sources, M several Gaussians; grouped by PyBDSF's rule on the "
                "sum of the catalogue's Gaussians (group_tol, thresh_isl in the metadata)")


@dataclass(frozen=True)
class Gaussians:
    """Components in a plane: centres ``pos (N, 2)`` (east, north), covariances
    ``cov (N, 2, 2)`` (sigma^2), peaks and local rms ``(N,)`` in one brightness unit;
    ``unit``: "arcsec" or "pix"; ``pixels``: the centres in image pixels ``(N, 2)`` when
    known (the segments are sampled once per pixel, as PyBDSF reads its model image);
    ``island``: each component's island of pixels (:mod:`.islands`, PyBDSF's ``Isl_id``)
    when known, else islands are read from the Gaussians' sum."""

    pos: np.ndarray
    cov: np.ndarray
    peak: np.ndarray
    rms: np.ndarray
    unit: str
    pixels: np.ndarray | None = None
    island: np.ndarray | None = None

    @cached_property
    def ok(self) -> np.ndarray:
        """Components whose Gaussian is fully known (others stay alone); computed once."""
        return (np.all(np.isfinite(self.pos), axis=1)
                & np.all(np.isfinite(self.cov.reshape(-1, 4)), axis=1)
                & np.isfinite(self.peak) & np.isfinite(self.rms) & (self.rms > 0)
                & (np.linalg.det(np.nan_to_num(self.cov)) > 0))

    def model(self, members: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The sum of the ``members``' Gaussians at ``points (M, 2)``."""
        d = points[None, :, :] - self.pos[members][:, None, :]
        inv = np.linalg.inv(self.cov[members])
        q = np.einsum("kmi,kij,kmj->km", d, inv, d)
        return np.sum(self.peak[members][:, None] * np.exp(-0.5 * q), axis=0)


def covariances(fwhm_major, fwhm_minor, pa_deg) -> np.ndarray:
    """``(N, 2, 2)`` covariances in (east, north) of Gaussians of FWHM axes ``fwhm_major``,
    ``fwhm_minor`` with the major axis at ``pa_deg`` east of north."""
    smaj = np.asarray(fwhm_major, np.float64) / FWHM
    smin = np.asarray(fwhm_minor, np.float64) / FWHM
    pa = np.radians(np.asarray(pa_deg, np.float64))
    u = np.stack([np.sin(pa), np.cos(pa)], -1)  # the major axis
    v = np.stack([np.cos(pa), -np.sin(pa)], -1)
    return (smaj[:, None, None] ** 2 * u[:, :, None] * u[:, None, :]
            + smin[:, None, None] ** 2 * v[:, :, None] * v[:, None, :])


def table_gaussians(table: Any, what: str = "catalogue") -> tuple[Gaussians, np.ndarray | None]:
    """The Gaussians of a catalogue's rows, and the reference (ra, dec) of its tangent plane
    (the first row's; None in pixels). Needs peak, rms, bmaj, bmin, pa and ra, dec (or x, y
    without them); CatalogueError naming what is missing."""
    require_columns(table, ("peak", "rms", "bmaj", "bmin", "pa"), what)
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    n = len(table)
    if ra is not None and dec is not None and n:
        ref = np.array([ra[0], dec[0]])
        dra = (ra - ref[0] + 180.0) % 360.0 - 180.0
        pos = np.stack([dra * np.cos(np.radians(dec)), dec - ref[1]], 1) * 3600.0
        unit = "arcsec"
    else:
        require_columns(table, ("x", "y"), what + " (no ra, dec)")
        ref, unit = None, "pix"
        # no WCS: north up, east left, as the catalogue's pa convention assumes
        pos = np.stack([-column_values(table, "x", what), column_values(table, "y", what)], 1)
    cov = covariances(column_values(table, "bmaj", what), column_values(table, "bmin", what),
                      column_values(table, "pa", what))
    x, y = column_values(table, "x", what), column_values(table, "y", what)
    pixels = None if x is None or y is None else np.stack([x, y], 1).reshape(n, 2)
    isl = column_values(table, "island_id", what)
    island = None if isl is None or not np.all(np.isfinite(isl)) else isl.astype(np.int64)
    return Gaussians(pos.reshape(n, 2), cov.reshape(n, 2, 2), column_values(table, "peak", what),
                     column_values(table, "rms", what), unit, pixels, island), ref


def _fwhm_along(cov: np.ndarray, u: np.ndarray) -> float:
    """A Gaussian's FWHM along the unit vector ``u``."""
    return FWHM / math.sqrt(float(u @ np.linalg.inv(cov) @ u))


def _pair_links(g: Gaussians, i: int, j: int, near: np.ndarray, group_tol: float,
                thresh_isl: float) -> tuple[bool, bool]:
    """(same island, same source) for components ``i``, ``j``; ``near``: the components
    whose Gaussians are summed along their segment."""
    a, b = g.pos[i], g.pos[j]
    d = float(np.hypot(*(b - a)))
    if g.island is not None and g.island[i] != g.island[j]:
        return False, False
    if d == 0.0:
        return True, True
    u = (b - a) / d
    rms = 0.5 * (g.rms[i] + g.rms[j])
    smallest = min(math.sqrt(float(np.linalg.eigvalsh(g.cov[k])[0])) for k in (i, j))
    # the island without one of pixels: the sum above the threshold all along, about four
    # samples per sigma of the narrower Gaussian
    if g.island is None and float(np.min(g.model(near, _segment(a, b, 4.0 * d / smallest)))) \
            < thresh_isl * rms:
        return False, False
    # the source rule on one sample per pixel along the longer axis where the pixels are
    # known, as PyBDSF reads the line through its model image
    if g.pixels is not None and np.all(np.isfinite(g.pixels[[i, j]])):
        steps = float(np.max(np.abs(g.pixels[j] - g.pixels[i])))
    else:
        steps = 2.0 * d / smallest
    p = g.model(near, _segment(a, b, steps))
    lo, hi, n = int(np.argmin(p)), int(np.argmax(p)), len(p)
    no_dip = lo in (0, n - 1) and hi in (0, n - 1)
    fainter = float(min(g.peak[i], g.peak[j]))
    shallow = float(p.min()) >= fainter - group_tol * thresh_isl * rms
    close = d <= 0.5 * group_tol * (_fwhm_along(g.cov[i], u) + _fwhm_along(g.cov[j], u))
    return True, bool(no_dip or (shallow and close))


def _segment(a: np.ndarray, b: np.ndarray, steps: float) -> np.ndarray:
    """``round(steps) + 1`` points from ``a`` to ``b`` (2 to 1001)."""
    n = min(max(int(round(steps)) + 1, 2), 1001)
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


def _labels(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """1, 2, ... per group of the components linked by ``pairs``, in the order of each
    group's first component; every component has one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.array([p[0] for p in pairs], np.int64)
    b = np.array([p[1] for p in pairs], np.int64)
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return renumbered(label + 1)


def group_components(g: Gaussians, group_tol: float = GROUP_TOL,
                     thresh_isl: float = THRESH_ISL) -> tuple[np.ndarray, np.ndarray]:
    """(source, island) numbers of each component of ``g`` (1, 2, ... in the order of each
    group's first component), by the rule of the module docstring."""
    from scipy.spatial import cKDTree

    group_tol = checked_group_tol(group_tol)
    thresh_isl = _positive(thresh_isl, "thresh_isl", THRESH_ISL)
    n = len(g.peak)
    ok = np.flatnonzero(g.ok)
    src_pairs: list[tuple[int, int]] = []
    isl_pairs: list[tuple[int, int]] = []
    if ok.size > 1:
        # beyond twice the sum of the two major FWHMs (x group_tol) no Gaussian's sum
        # stays above a threshold between them: PyBDSF's islands are that size
        major = np.array([FWHM * math.sqrt(float(np.linalg.eigvalsh(g.cov[k])[1])) for k in ok])
        reach = 2.0 * major * max(1.0, group_tol)
        tree = cKDTree(g.pos[ok])
        found = tree.query_ball_point(g.pos[ok], r=2.0 * reach)
        near = [ok[np.asarray(f, np.int64)] for f in found]
        for a, cands in enumerate(found):
            for b in cands:
                if b <= a:
                    continue
                if np.hypot(*(g.pos[ok[b]] - g.pos[ok[a]])) > reach[a] + reach[b]:
                    continue
                summed = np.union1d(near[a], near[b])
                island, source = _pair_links(g, ok[a], ok[b], summed, group_tol, thresh_isl)
                if island:
                    isl_pairs.append((ok[a], ok[b]))
                if source:
                    src_pairs.append((ok[a], ok[b]))
    island = _labels(n, isl_pairs) if g.island is None else _in_order(g.island)
    return _labels(n, src_pairs), island


def _in_order(ids: np.ndarray) -> np.ndarray:
    """Any group numbers (0 included) as 1, 2, ... in the order of each group's first."""
    if not len(ids):
        return np.zeros(0, np.int64)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.ravel()] + 1


def s_codes(source: np.ndarray, island: np.ndarray) -> np.ndarray:
    """PyBDSF's ``S_Code`` of each component: "M" in a source of several, "C" alone in its
    source but not in its island, "S" alone in both."""
    source, island = np.asarray(source), np.asarray(island)
    n_src = np.bincount(source)[source]
    n_isl = np.bincount(island)[island]
    return np.where(n_src > 1, "M", np.where(n_isl > 1, "C", "S"))


def _positive(value: Any, name: str, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: a positive number (PyBDSF's default {default:g}), received "
                         f"{value!r}")
    return v


def checked_group_tol(value: Any) -> float:
    """``value`` as a grouping tolerance (> 0); ValueError naming it."""
    return _positive(value, "group_tol", GROUP_TOL)


def with_sources(table: Any, group_tol: float = GROUP_TOL, thresh_isl: float = THRESH_ISL,
                 what: str = "catalogue") -> Any:
    """``table`` with the columns ``source_id`` and ``s_code`` (replaced when present) and
    the grouping's settings in its metadata."""
    g, _ = table_gaussians(table, what)
    source, island = group_components(g, group_tol, thresh_isl)
    cols = make_table({"source_id": source, "s_code": s_codes(source, island)})
    for name in cols.colnames:  # with their descriptions
        table[name] = cols[name]
    table.meta["sources"] = {"note": SOURCES_NOTE, "group_tol": float(group_tol),
                             "thresh_isl": float(thresh_isl)}
    return table


def format_grouping(table: Any) -> str:
    """A report line: the sources a catalogue's Gaussians make (its ``source_id`` and
    ``s_code``), by S_Code."""
    if "source_id" not in table.colnames:
        return "no sources grouped"
    codes = np.asarray(table["s_code"]).astype(str)
    ids = np.asarray(table["source_id"])
    n = {c: len(np.unique(ids[codes == c])) for c in ("S", "C", "M")}
    tol = table.meta.get("sources", {}).get("group_tol")  # (FITS files keep no such meta)
    return (f"{sum(n.values())} sources from {len(table)} Gaussians ({n['S']} S, {n['C']} C, "
            f"{n['M']} M" + ("" if tol is None else f"; group_tol {tol:g}") + ")")
