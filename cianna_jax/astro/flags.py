"""Catalogue quality flags: sources whose measurement the image's edge or a neighbour affects.

Survey catalogues flag what a user should treat with care before using a flux or a size:

* ``edge``: the source's extent reaches a pixel off the image or without data (a blanked
  mosaic border, a masked area). Its fit saw part of the source only, so its flux and size
  may be short. The extent is the box of half-size one FWHM of the major axis (fitted, or
  the beam's when larger) around the centre: where the Gaussian has fallen to 1/16 of its
  peak.
* ``blended``: another source of the catalogue lies closer than half the sum of the two
  major-axis FWHMs, so their half-maximum extents overlap and each fit shares flux with its
  neighbour (PyBDSF puts such sources in one island).  ``blend_group`` numbers each set of
  sources so linked (directly or through each other; 0: none), whose fluxes add up to the
  blend's, as an island's.
* ``near_bright``: the source lies within ``radius`` (:data:`BRIGHT_RADIUS`) beam FWHMs of
  a source of SNR >= ``snr`` (:data:`BRIGHT_SNR`) whose peak is at least ``ratio``
  (:data:`BRIGHT_RATIO`) times its own (a :class:`BrightRule`, in the metadata): where
  the residual sidelobes of calibration errors around bright sources (spokes, rings) make
  false sources in real images. The reliability test (:mod:`.reliability`) is then made
  for these sources apart (the inverted image's detections in the same places).

:func:`quality_flags` computes them for 2D images, reading one small window per source (a
memory-mapped image is never loaded whole).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import as_bounded_float
from .fits_image import FitsImage
from .measure import FWHM, Measurements

__all__ = ["quality_flags", "edge_flags", "blend_flags", "blend_groups", "renumbered",
           "near_bright", "flag_counts", "FLAG_NOTE", "BrightRule", "DEFAULT_BRIGHT",
           "BRIGHT_SNR", "BRIGHT_RADIUS", "BRIGHT_RATIO"]

#: a source this bright (peak SNR) may have artefacts around it
BRIGHT_SNR = 100.0
#: ... within this many beam FWHMs
BRIGHT_RADIUS = 30.0
#: ... for sources at least this many times fainter (peak)
BRIGHT_RATIO = 10.0


@dataclass(frozen=True)
class BrightRule:
    """Which sources are ``near_bright``: within ``radius`` beam FWHMs of a source of peak
    SNR >= ``snr`` at least ``ratio`` times brighter (peak)."""

    snr: float = BRIGHT_SNR
    radius: float = BRIGHT_RADIUS
    ratio: float = BRIGHT_RATIO

    def __post_init__(self) -> None:
        for name in ("snr", "radius", "ratio"):
            as_bounded_float(getattr(self, name), f"bright_{name}")

    def summary(self) -> dict[str, float]:
        return {"snr": float(self.snr), "radius_beams": float(self.radius),
                "ratio": float(self.ratio)}

    @classmethod
    def of(cls, meta: dict) -> BrightRule:
        """The rule a catalogue's metadata records (``near_bright_rule``), else the default."""
        r = meta.get("near_bright_rule") if hasattr(meta, "get") else None
        try:
            return cls(float(r["snr"]), float(r["radius_beams"]), float(r["ratio"]))
        except (TypeError, KeyError, ValueError):
            return cls()


DEFAULT_BRIGHT = BrightRule()

#: what the flag columns mean, for a catalogue's metadata
FLAG_NOTE = ("edge: the source's extent (one FWHM of the major axis each side of the centre) "
             "reaches a pixel off the image or without data, so flux and size may be short; "
             "blended: another source lies closer than half the sum of the two major-axis "
             "FWHMs, so the fits share flux; blend_group: the sources so linked share a "
             "number (1, 2, ... from the brightest; 0: not blended); deblended: the detector "
             "boxed the source with close neighbours once, and the box was split at its "
             "separate peaks, the sources fitted together; near_bright: within a radius of a "
             "source much brighter than itself (near_bright_rule: the radius in beam FWHMs, "
             "that source's SNR and the peaks' ratio), where calibration artefacts make "
             "false sources")


def _fwhm_pixels(m: Measurements, beam_sigma: float | None) -> np.ndarray:
    """Each source's major-axis FWHM in pixels, at least the beam's."""
    sigma = np.asarray(m.sigma_major, np.float64)
    if beam_sigma is not None:
        sigma = np.fmax(sigma, beam_sigma)
    return np.where(np.isfinite(sigma), sigma, 0.0) * FWHM


def edge_flags(image: FitsImage, m: Measurements, beam_sigma: float | None = None) -> np.ndarray:
    """``edge`` (see the module docstring) for each source of ``m`` on the 2D ``image``."""
    H, W = image.shape[-2:]
    # whole pixels; a width of 3 computed as 3.0000000000000004 is 3, not 4
    half = np.ceil(_fwhm_pixels(m, beam_sigma) - 1e-6).astype(np.int64)
    xc = np.floor(np.asarray(m.x, np.float64) + 0.5)
    yc = np.floor(np.asarray(m.y, np.float64) + 0.5)
    out = np.zeros(xc.shape, bool)
    for k in range(xc.size):
        if not (np.isfinite(xc[k]) and np.isfinite(yc[k])):
            out[k] = True
            continue
        x0, x1 = int(xc[k]) - half[k], int(xc[k]) + half[k] + 1
        y0, y1 = int(yc[k]) - half[k], int(yc[k]) + half[k] + 1
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
            out[k] = True
            continue
        out[k] = not np.isfinite(image.read((slice(y0, y1), slice(x0, x1)))).all()
    return out


def blend_groups(m: Measurements, beam_sigma: float | None = None) -> np.ndarray:
    """For each source of ``m``, the number of its blend (sources linked by overlapping
    half-maximum extents, see the module docstring, and through each other), 1, 2, ... in
    the order of the group's first source; 0 for a source that overlaps none."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = np.size(m.x)
    out = np.zeros(n, np.int64)
    pts = np.stack([np.asarray(m.x, np.float64), np.asarray(m.y, np.float64)], 1)
    ok = np.all(np.isfinite(pts), axis=1)
    if np.count_nonzero(ok) < 2:
        return out
    idx = np.flatnonzero(ok)
    fwhm = _fwhm_pixels(m, beam_sigma)[idx]
    pairs = cKDTree(pts[idx]).query_pairs(float(np.max(fwhm)), output_type="ndarray")
    if not len(pairs):
        return out
    a, b = pairs[:, 0], pairs[:, 1]
    close = np.hypot(*(pts[idx[a]] - pts[idx[b]]).T) < 0.5 * (fwhm[a] + fwhm[b])
    a, b = idx[a[close]], idx[b[close]]
    if not a.size:
        return out
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    linked = np.zeros(n, bool)
    linked[a] = linked[b] = True
    out[linked] = label[linked] + 1
    return renumbered(out)


def renumbered(groups: np.ndarray) -> np.ndarray:
    """Group numbers 1, 2, ... in the order of each group's first member (0 stays 0): after
    the rows are sorted, the brightest source's blend is group 1."""
    groups = np.asarray(groups, np.int64)
    out = np.zeros_like(groups)
    first: dict[int, int] = {}
    for k in np.flatnonzero(groups):
        out[k] = first.setdefault(int(groups[k]), len(first) + 1)
    return out


def blend_flags(m: Measurements, beam_sigma: float | None = None) -> np.ndarray:
    """``blended`` (see the module docstring) for each source of ``m``."""
    return blend_groups(m, beam_sigma) > 0


def near_bright(x: np.ndarray, y: np.ndarray, peak: np.ndarray, bright_x: np.ndarray,
                bright_y: np.ndarray, bright_peak: np.ndarray, radius: float,
                ratio: float = BRIGHT_RATIO) -> np.ndarray:
    """``near_bright`` (see the module docstring) of points ``(x, y)`` of peak ``peak``
    (their absolute value: an inverted image's detections too) among the bright sources
    ``(bright_x, bright_y, bright_peak)`` (those of SNR >= the rule's), ``radius`` in
    pixels, ``ratio`` the least ratio of their peaks."""
    x, y, p = (np.asarray(v, np.float64) for v in (x, y, peak))
    bx, by, bp = (np.asarray(v, np.float64) for v in (bright_x, bright_y, bright_peak))
    out = np.zeros(x.shape, bool)
    for k0 in range(0, x.size, 4096):  # (bright sources are few)
        sl = slice(k0, k0 + 4096)
        d = np.hypot(x[sl, None] - bx, y[sl, None] - by)
        fainter = bp >= ratio * np.abs(p[sl, None])
        out[sl] = np.any((d <= radius) & fainter, axis=1)
    return out


def quality_flags(image: FitsImage, m: Measurements, beam_sigma: float | None = None,
                  bright: BrightRule = DEFAULT_BRIGHT) -> dict[str, np.ndarray]:
    """``{"edge": ..., "blended": ..., "blend_group": ..., "near_bright": ...}`` for the
    sources of ``m`` on the 2D ``image`` (``beam_sigma``: the beam's major-axis sigma in
    pixels, the smallest extent counted; without a beam, ``near_bright`` is False;
    ``bright``: its rule)."""
    groups = blend_groups(m, beam_sigma)
    flags = {"edge": edge_flags(image, m, beam_sigma), "blended": groups > 0,
             "blend_group": groups, "near_bright": np.zeros(len(m.x), bool)}
    if beam_sigma is not None:
        b = np.flatnonzero(np.asarray(m.snr, np.float64) >= bright.snr)
        flags["near_bright"] = near_bright(m.x, m.y, m.peak, m.x[b], m.y[b], m.peak[b],
                                           bright.radius * beam_sigma * FWHM, bright.ratio)
    return flags


def flag_counts(table) -> str:
    """A report line: how many rows of a catalogue carry each flag ('' without them)."""
    names = [c for c in ("edge", "blended", "deblended", "near_bright") if c in table.colnames]
    if not names:
        return ""
    counts = ", ".join(f"{int(np.count_nonzero(np.asarray(table[c])))} {c}" for c in names)
    return f"quality flags: {counts} (of {len(table)} detections)\n"
