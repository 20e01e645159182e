"""Islands of emission around a catalogue's Gaussians, as PyBDSF finds them.

PyBDSF's island: the pixels whose brightness above the local background is at least
``thresh_isl`` (3) times the local rms, connected through their 8 neighbours. Each Gaussian
of a catalogue is given the island holding its centre pixel (:func:`pixel_islands`); the
grouping into sources (:mod:`.sources`) then compares only Gaussians of one island, and
``S_Code`` C marks a single-Gaussian source sharing its island. The image is read in one
window per cluster of Gaussians (those within ``reach`` of each other, with that margin),
so a memory-mapped image is never loaded whole; an island larger than its window is cut at
the window's edge.
"""

from __future__ import annotations

import numpy as np

from .fits_image import FitsImage
from .noise import NoiseMap

__all__ = ["pixel_islands", "ISLAND_REACH_BEAMS", "MAX_WINDOW"]

#: a window reaches this many beam FWHMs (or Gaussian FWHMs, the larger) around its Gaussians
ISLAND_REACH_BEAMS = 4.0
#: a cluster of Gaussians wider than this (pixels) is read in tiles of this size (with the
#: margin), so a window stays small; an island across two tiles is cut there
MAX_WINDOW = 2048


def pixel_islands(image: FitsImage, noise: NoiseMap, x: np.ndarray, y: np.ndarray,
                  fwhm: np.ndarray, thresh_isl: float = 3.0) -> np.ndarray:
    """The island number of each Gaussian centred at pixel ``(x, y)`` with major-axis FWHM
    ``fwhm`` (pixels) on the 2D ``image`` with its ``noise`` map: 1, 2, ... in the order of
    each island's first Gaussian; a Gaussian whose centre pixel is below the threshold, off
    the image or without data is an island of its own."""
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    from .flags import renumbered

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.size
    H, W = image.shape[-2:]
    ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
    ok = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (iy >= 0) & (ix < W) & (iy < H)
    out = np.zeros(n, np.int64)
    nxt = 1
    if ok.any():
        idx = np.flatnonzero(ok)
        reach = ISLAND_REACH_BEAMS * np.where(np.isfinite(fwhm[idx]), fwhm[idx], 0.0)
        reach = np.maximum(reach, 2.0)
        pts = np.stack([x[idx], y[idx]], 1)
        pairs = cKDTree(pts).query_pairs(float(2.0 * reach.max()), output_type="ndarray")
        if len(pairs):
            a, b = pairs[:, 0], pairs[:, 1]
            near = np.hypot(*(pts[a] - pts[b]).T) <= reach[a] + reach[b]
            a, b = a[near], b[near]
        else:
            a = b = np.zeros(0, np.int64)
        graph = coo_matrix((np.ones(a.size), (a, b)), shape=(idx.size, idx.size))
        _, cluster = connected_components(graph, directed=False)
        eight = ndimage.generate_binary_structure(2, 2)
        groups = []
        for c in np.unique(cluster):  # a cluster wider than MAX_WINDOW: in tiles of it
            members, r = idx[cluster == c], reach[cluster == c]
            tile = (np.floor(ix[members] / MAX_WINDOW) * (W // MAX_WINDOW + 1)
                    + np.floor(iy[members] / MAX_WINDOW))
            if np.ptp(ix[members]) < MAX_WINDOW and np.ptp(iy[members]) < MAX_WINDOW:
                tile = np.zeros(members.size)
            groups += [(members[tile == t], r[tile == t]) for t in np.unique(tile)]
        for members, rr in groups:
            r = int(np.ceil(rr.max()))
            y0, y1 = max(0, int(iy[members].min()) - r), min(H, int(iy[members].max()) + r + 1)
            x0, x1 = max(0, int(ix[members].min()) - r), min(W, int(ix[members].max()) + r + 1)
            ys, xs = slice(y0, y1), slice(x0, x1)
            pix = image.read((ys, xs)).astype(np.float64)
            above = (pix - noise.window(ys, xs, "background")) >= \
                thresh_isl * noise.window(ys, xs, "rms")  # (NaN pixels: below)
            label, _ = ndimage.label(above, eight)
            at = label[iy[members].astype(np.int64) - y0, ix[members].astype(np.int64) - x0]
            for lab in np.unique(at[at > 0]):
                out[members[at == lab]] = nxt
                nxt += 1
    alone = np.flatnonzero(out == 0)
    out[alone] = np.arange(nxt, nxt + alone.size)
    return renumbered(out)
