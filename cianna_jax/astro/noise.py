"""Local background and noise (rms) maps, NaN-aware, computed a box at a time.

The image is cut into boxes of ``box`` pixels; in each box a sigma-clipped median and
standard deviation of the finite pixels give the background and rms at the box
centre (boxes with too few finite pixels are filled from the nearest valid box).
Values anywhere are bilinear interpolations between box centres.  Only one box is
read at a time, so a memory-mapped image is never loaded whole.  For a cube, the
maps have one plane per channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..checks import as_bounded_float, as_int
from ..progress import Progress

__all__ = ["NoiseMap", "box_edges", "clipped_stats", "estimate_noise_map", "fill_nan"]

# std of a unit Gaussian truncated at +-3 sigma (clipping bias correction)
_CLIP3_STD = 0.98658


def clipped_stats(values: np.ndarray, *, clip: float = 3.0, iters: int = 3,
                  min_count: int = 16) -> tuple[float, float]:
    """(median, rms) of the finite ``values`` after ``iters`` rounds of ``clip``-sigma
    clipping around the median (rms from the MAD first, then the clipped std, corrected
    for the truncation at 3 sigma); ``(nan, nan)`` with fewer than ``min_count`` values."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size < min_count:
        return float("nan"), float("nan")
    med = float(np.median(v))
    rms = 1.4826 * float(np.median(np.abs(v - med)))
    for _ in range(iters):
        if rms <= 0:
            break
        kept = v[np.abs(v - med) < clip * rms]
        if kept.size < min_count:
            break
        med = float(np.median(kept))
        rms = float(np.std(kept)) / (_CLIP3_STD if clip == 3.0 else 1.0)
    return med, rms


def fill_nan(grid: np.ndarray) -> np.ndarray:
    """Replace NaN cells of a 2D grid by their nearest finite cell."""
    bad = ~np.isfinite(grid)
    if not bad.any() or bad.all():
        return grid
    from scipy.ndimage import distance_transform_edt

    _, (iy, ix) = distance_transform_edt(bad, return_indices=True)
    return grid[iy, ix]


def box_edges(n: int, box: int) -> np.ndarray:
    """The edges of about ``n / box`` equal boxes (integers, at least one box) along an axis
    of ``n`` pixels."""
    return np.linspace(0, n, max(1, round(n / box)) + 1).round().astype(int)


def _bracket(centres: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each coordinate, the grid indices ``(i0, i1)`` around it and the weight ``t`` of
    ``i1`` (linear interpolation, clamped to the outer grid centres)."""
    n = centres.size
    if n == 1:
        z = np.zeros(coords.size, np.int64)
        return z, z, np.zeros(coords.size)
    c = np.clip(coords, centres[0], centres[-1])
    i0 = np.clip(np.searchsorted(centres, c, side="right") - 1, 0, n - 2)
    t = (c - centres[i0]) / (centres[i0 + 1] - centres[i0])
    return i0, i0 + 1, t


def _compact_weights(centres: np.ndarray, coords: np.ndarray) -> tuple[slice, np.ndarray]:
    """The grid rows used by ``coords`` (a slice) and the ``[len(coords), rows]`` weights."""
    i0, i1, t = _bracket(centres, coords)
    lo, hi = int(i0.min()), int(i1.max()) + 1
    w = np.zeros((coords.size, hi - lo))
    rows = np.arange(coords.size)
    w[rows, i0 - lo] = 1.0 - t
    w[rows, i1 - lo] += t
    return slice(lo, hi), w


@dataclass(frozen=True)
class NoiseMap:
    """Background and rms on a coarse grid of box centres.

    ``rms``/``background``: ``[gy, gx]`` (image) or ``[D, gy, gx]`` (cube), in the image
    unit; ``cy``/``cx`` the pixel coordinates of the grid rows/columns; ``shape`` the image
    shape; ``box`` the box size in pixels; ``adaptive``: the settings of a map raised
    around bright sources (:mod:`.adaptive_noise`), else None.
    """

    rms: np.ndarray
    background: np.ndarray
    cy: np.ndarray
    cx: np.ndarray
    shape: tuple[int, ...]
    box: int
    adaptive: dict | None = field(default=None, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def median_rms(self) -> float:
        """Median of the rms grid (one number for the image)."""
        return float(np.median(self.rms))

    def _axis(self, axis: int, sl: slice) -> tuple[slice, np.ndarray]:
        """Compact interpolation weights of the pixels of ``sl`` along y (0) or x (1), cached
        (tiles on a regular grid reuse a few windows per axis)."""
        idx = sl.indices(self.shape[-2 + axis])
        key = (axis,) + idx
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 8192:
                self._cache.clear()
            centres = self.cy if axis == 0 else self.cx
            hit = _compact_weights(centres, np.arange(*idx, dtype=np.float64))
            self._cache[key] = hit
        return hit

    def resampled(self, cy: np.ndarray, cx: np.ndarray) -> NoiseMap:
        """Both maps interpolated onto another grid of centres ``cy``/``cx`` (increasing
        pixel coordinates; a 2D map's values there, so that a finer grid changes
        nothing)."""
        if self.rms.ndim != 2:
            raise ValueError("resampled: 2D maps only")
        cy, cx = np.asarray(cy, np.float64), np.asarray(cx, np.float64)
        (ry, wy), (rx, wx) = _compact_weights(self.cy, cy), _compact_weights(self.cx, cx)
        return NoiseMap(rms=wy @ self.rms[ry, rx] @ wx.T,
                        background=wy @ self.background[ry, rx] @ wx.T,
                        cy=cy, cx=cx, shape=self.shape, box=self.box)

    def window(self, ys: slice, xs: slice, which: str = "rms",
               zs: slice | None = None) -> np.ndarray:
        """The map (``"rms"`` or ``"background"``) on the pixels of a window (slices of y and x;
        ``[ny, nx]``, or ``[D, ny, nx]`` for a cube: its channels ``zs``, every one by
        default)."""
        grid = self.rms if which == "rms" else self.background
        if zs is not None and grid.ndim == 3:
            grid = grid[zs]
        (ry, wy), (rx, wx) = self._axis(0, ys), self._axis(1, xs)
        return wy @ grid[..., ry, rx] @ wx.T

    def at(self, y: np.ndarray, x: np.ndarray, z: np.ndarray | None = None,
           which: str = "rms") -> np.ndarray:
        """The map at points ``(y, x)`` (and channel ``z`` for a cube), pixel coordinates."""
        grid = self.rms if which == "rms" else self.background
        y, x = np.atleast_1d(np.asarray(y, np.float64)), np.atleast_1d(np.asarray(x, np.float64))
        if y.size == 0:
            return np.zeros(0)
        y0, y1, ty = _bracket(self.cy, y)
        x0, x1, tx = _bracket(self.cx, x)
        if grid.ndim == 3:
            k = np.clip(np.rint(np.zeros_like(y) if z is None else z).astype(np.int64), 0,
                        grid.shape[0] - 1)
            g = grid[k]
        else:
            g = np.broadcast_to(grid, (y.size,) + grid.shape)
        n = np.arange(y.size)
        return ((1 - ty) * ((1 - tx) * g[n, y0, x0] + tx * g[n, y0, x1])
                + ty * ((1 - tx) * g[n, y1, x0] + tx * g[n, y1, x1]))


def estimate_noise_map(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, ...],
    *,
    box: int = 128,
    min_valid: float = 0.2,
    clip: float = 3.0,
    max_samples: int = 4096,
    progress: bool = False,
) -> NoiseMap:
    """Local background/rms of an image ``(H, W)`` or cube ``(D, H, W)``.

    ``read(window)`` returns the pixels of a window (NaN for blanks), e.g.
    :meth:`~cianna_jax.astro.fits_image.FitsImage.read`.  Boxes of ``box`` pixels (at most
    the image size) tile the image; a box is used when at least ``min_valid`` of its pixels
    are finite; at most ``max_samples`` pixels per box (and channel) enter the statistics
    (a regular subsample); ``progress`` reports on stderr.  Raises ValueError when no box has enough finite pixels (an
    all-NaN image) or the noise is zero everywhere.
    """
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape: expected an image (H, W) or a cube (D, H, W), received "
                         f"{tuple(shape)}")
    box = as_int(box, "box", minimum=1)
    max_samples = as_int(max_samples, "max_samples", minimum=1)
    as_bounded_float(clip, "clip")
    if not 0.0 <= as_bounded_float(min_valid, "min_valid", strict=False) <= 1.0:
        raise ValueError(f"min_valid: expected a fraction in [0, 1], received {min_valid!r}")
    H, W = int(shape[-2]), int(shape[-1])
    D = int(shape[0]) if len(shape) == 3 else None
    by, bx = max(1, min(int(box), H)), max(1, min(int(box), W))
    ey, ex = box_edges(H, by), box_edges(W, bx)
    nplanes = 1 if D is None else D
    rms = np.full((nplanes, ey.size - 1, ex.size - 1), np.nan)
    bkg = np.full_like(rms, np.nan)
    bar = Progress((ey.size - 1) * (ex.size - 1), "noise map", enabled=progress, unit="box")
    for i in range(ey.size - 1):
        for j in range(ex.size - 1):
            ys, xs = slice(ey[i], ey[i + 1]), slice(ex[j], ex[j + 1])
            npix = (ey[i + 1] - ey[i]) * (ex[j + 1] - ex[j])
            step = max(1, int(np.ceil(np.sqrt(npix / max_samples))))
            # the subsample read as such: a cube's box holds every channel
            sub = (slice(ys.start, ys.stop, step), slice(xs.start, xs.stop, step))
            a = read(sub if D is None else (slice(None),) + sub)
            a = a.reshape((nplanes,) + a.shape[-2:])
            for k in range(nplanes):
                plane = a[k]
                if np.count_nonzero(np.isfinite(plane)) < min_valid * plane.size:
                    continue
                bkg[k, i, j], rms[k, i, j] = clipped_stats(plane, clip=clip)
            bar.update(1)
    bar.close()
    valid = np.isfinite(rms) & (rms > 0)
    if not valid.any():
        raise ValueError("no finite, non-constant pixels: the image is blank (all NaN or "
                         "constant), there is nothing to detect")
    rms = np.where(valid, rms, np.nan)
    bkg = np.where(valid, bkg, np.nan)
    for k in range(nplanes):  # a blank channel takes the median of the others
        if not np.isfinite(rms[k]).any():
            rms[k], bkg[k] = np.nanmedian(rms), np.nanmedian(bkg)
        rms[k], bkg[k] = fill_nan(rms[k]), fill_nan(bkg[k])
    cy = 0.5 * (ey[:-1] + ey[1:]) - 0.5
    cx = 0.5 * (ex[:-1] + ex[1:]) - 0.5
    if D is None:
        rms, bkg = rms[0], bkg[0]
    return NoiseMap(rms=rms, background=bkg, cy=cy, cx=cx, shape=tuple(int(s) for s in shape),
                    box=int(box))
