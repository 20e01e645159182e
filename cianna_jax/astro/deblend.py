"""Close sources the detector boxed once: one box per peak before the measurement.

Two or more sources about one beam apart can come out of the detector as one box, and
one Gaussian fitted over them reports one elongated source at their centre.  Where the
pixels in a box show separate peaks, as PyBDSF splits an island at its local maxima,
:func:`split_blends` gives each peak its own box (up to ``max_peaks``); the measurement
then fits the blend's sources together (:func:`.measure.measure_sources`).  A further
peak counts when it is significant (``min_snr`` local rms above the background), far
enough from each peak already kept (``min_separation`` beam FWHM), separated from each
by a dip (the lower peak stands ``min_dip`` rms above the lowest pixel on the line
between them: one extended source with noise on its top does not split), and not
already another detection's.

Measured on the PyBDSF comparison's held-out field (benchmarks/README.md, forty-fifth
session).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .noise import NoiseMap

__all__ = ["MIN_PEAK_SNR", "MIN_DIP_SNR", "MIN_DIP_FRACTION", "MIN_SEPARATION", "MAX_PEAKS",
           "split_blends", "local_maxima"]

#: a peak counts when it stands this many local rms above the background
MIN_PEAK_SNR = 5.0
#: the lower peak must stand this many rms above the lowest pixel between the two
MIN_DIP_SNR = 2.0
#: ... and by this fraction of its height (noise on a bright extended source's top does not
#: split it)
MIN_DIP_FRACTION = 0.05
#: the peaks at least this many beam FWHM apart
MIN_SEPARATION = 0.75
#: a box splits into at most this many (the brightest peaks that qualify)
MAX_PEAKS = 4


def local_maxima(a: np.ndarray) -> np.ndarray:
    """Indices ``[k, 2]`` (row, column) of the pixels of ``a [H, W]`` that are at least as
    high as their eight neighbours and not on its border (NaN: never a maximum)."""
    v = np.where(np.isfinite(a), a, -np.inf)
    if v.shape[0] < 3 or v.shape[1] < 3:
        return np.zeros((0, 2), np.int64)
    core = v[1:-1, 1:-1]
    ok = np.isfinite(core)
    H, W = v.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                ok &= core >= v[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx]
    return np.argwhere(ok) + 1


def _dip(a: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """The lowest pixel on the segment from pixel ``p`` to pixel ``q`` (row, column)."""
    n = int(np.ceil(2 * np.hypot(*(q - p)))) + 1
    t = np.linspace(0.0, 1.0, n)
    rows = np.rint(p[0] + t * (q[0] - p[0])).astype(np.int64)
    cols = np.rint(p[1] + t * (q[1] - p[1])).astype(np.int64)
    return float(np.nanmin(a[rows, cols]))


def split_blends(read: Callable[[tuple[slice, ...]], np.ndarray], shape: tuple[int, int],
                 boxes: np.ndarray, noise: NoiseMap, beam_fwhm: float, *,
                 min_snr: float = MIN_PEAK_SNR, min_dip: float = MIN_DIP_SNR,
                 min_dip_fraction: float = MIN_DIP_FRACTION,
                 min_separation: float = MIN_SEPARATION,
                 min_side: float | None = None,
                 max_peaks: int = MAX_PEAKS) -> tuple[np.ndarray, np.ndarray]:
    """``(parent [M'], boxes [M', 6])``: the 2D detection ``boxes [M, 6]`` (pixel-edge
    corners) with each box that holds 2 to ``max_peaks`` separate peaks replaced by one
    box centred on each peak, the brightest first (rows in the input's order, a split
    box's rows side by side; ``parent`` is each row's input box).  A child keeps the
    parent's size less the peaks' extent along each axis, at least ``min_side`` pixels
    (default: twice ``beam_fwhm``, in pixels, as a point source's box).  ``read(window)``
    gives image pixels."""
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    M = b.shape[0]
    if not beam_fwhm > 0:
        raise ValueError(f"beam_fwhm must be > 0 pixels, got {beam_fwhm}")
    if int(max_peaks) != max_peaks or max_peaks < 1:
        raise ValueError(f"max_peaks must be an integer >= 1, got {max_peaks!r}")
    side = 2.0 * beam_fwhm if min_side is None else float(min_side)
    parent = np.arange(M)
    if M == 0:
        return parent, b.copy()
    from scipy.spatial import cKDTree

    centres = 0.5 * (b[:, :2] + b[:, 3:5])
    tree = cKDTree(centres)
    # the noise maps vary over many beams: their values at the box's centre serve the box
    rms = noise.at(centres[:, 1] - 0.5, centres[:, 0] - 0.5)
    background = noise.at(centres[:, 1] - 0.5, centres[:, 0] - 0.5, which="background")
    H, W = shape
    out_parent, out_boxes = [], []
    for i in range(M):
        x0, y0 = max(int(np.floor(b[i, 0])), 0), max(int(np.floor(b[i, 1])), 0)
        x1, y1 = min(int(np.ceil(b[i, 3])), W), min(int(np.ceil(b[i, 4])), H)
        found = []
        if x1 - x0 >= 3 and y1 - y0 >= 3 and max_peaks > 1:
            a = np.asarray(read((slice(y0, y1), slice(x0, x1))), np.float64) - background[i]
            found = _separate_peaks(a, float(rms[i]), beam_fwhm, min_snr, min_dip,
                                    min_dip_fraction, min_separation, int(max_peaks))
        peaks = [np.array([x0 + p[1] + 0.5, y0 + p[0] + 0.5]) for p in found]
        peaks = peaks[:1] + [c for c in peaks[1:] if not _elsewhere(tree, c, i, beam_fwhm)]
        if len(peaks) > 1:
            d = np.ptp(np.array(peaks), axis=0)
            w = max(b[i, 3] - b[i, 0] - d[0], side)
            h = max(b[i, 4] - b[i, 1] - d[1], side)
            for cx, cy in peaks:
                out_parent.append(i)
                out_boxes.append([cx - w / 2, cy - h / 2, b[i, 2], cx + w / 2, cy + h / 2,
                                  b[i, 5]])
            continue
        out_parent.append(i)
        out_boxes.append(b[i])
    return np.asarray(out_parent, np.int64), np.asarray(out_boxes, np.float64).reshape(-1, 6)


def _elsewhere(tree, centre: np.ndarray, own: int, beam_fwhm: float) -> bool:
    """Whether a peak at ``centre`` is another detection's than box ``own``'s (a box
    centred within half a beam FWHM of it)."""
    return any(j != own for j in tree.query_ball_point(centre, r=0.5 * beam_fwhm))


def _separate_peaks(a: np.ndarray, rms: float, beam_fwhm: float, min_snr: float,
                    min_dip: float, min_dip_fraction: float, min_separation: float,
                    max_peaks: int) -> list[np.ndarray]:
    """The separate peaks (row, column) of a box's pixels ``a`` (background subtracted,
    noise ``rms``), the brightest first, at most ``max_peaks``; fewer than two: none."""
    if not rms > 0:
        return []
    peaks = local_maxima(a)
    if len(peaks) < 2:
        return []
    snr = a[peaks[:, 0], peaks[:, 1]] / rms
    keep = np.flatnonzero(snr >= min_snr)
    if len(keep) < 2:
        return []
    order = keep[np.argsort(-snr[keep], kind="stable")]
    kept = [peaks[order[0]]]
    for k in order[1:]:
        q = peaks[k]
        if any(np.hypot(*(q - p)) < min_separation * beam_fwhm for p in kept):
            continue
        depths = [a[q[0], q[1]] - _dip(a, p, q) for p in kept]
        if all(dp >= min_dip * rms and dp >= min_dip_fraction * a[q[0], q[1]] for dp in depths):
            kept.append(q)
            if len(kept) == max_peaks:
                break
    return kept if len(kept) > 1 else []
