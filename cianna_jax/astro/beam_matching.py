"""Images brought to one resolution: the common beam of several, the Gaussian kernel that
turns an image's beam into it, and the check that images share one pixel grid (image
subtraction, spectral-index maps)."""

from __future__ import annotations

import math

import numpy as np

from .fits_image import Beam, FitsImage, ImageError
from .measure import FWHM
from .sky import deconvolve, pixel_to_sky, sky_to_pixel
from .sources import covariances

__all__ = ["common_beam", "match_kernel", "check_same_grid", "at_beam", "regridded",
           "gaussian_fft_kernel"]

#: the sky-to-pixel mapping is computed every this many pixels and interpolated between
_MAP_STEP = 16
#: rows regridded at a time
_STRIP = 512



def _cov(b: Beam) -> np.ndarray:
    """A beam's covariance (arcsec^2) in (east, north)."""
    return covariances([b.bmaj], [b.bmin], [b.bpa])[0]


def common_beam(*beams: Beam) -> Beam:
    """The beam all ``beams`` can be convolved to: the one of them that contains the others
    (its covariance minus each other's positive), else a round beam of the largest major
    axis (1% wider, so that every convolution is proper)."""
    for big in beams:
        if all(np.all(np.linalg.eigvalsh(_cov(big) - _cov(b)) >= -1e-12) for b in beams):
            return big
    top = 1.01 * max(b.bmaj for b in beams)
    return Beam(top, top, 0.0)


def match_kernel(img: FitsImage, target: Beam) -> np.ndarray | None:
    """The normalised Gaussian kernel that turns ``img``'s beam into ``target`` (pixels;
    None when they are the same)."""
    own = img.beam
    if own is None:
        raise ImageError(f"{img.path}: no beam (BMAJ, BMIN): the images' resolutions cannot be "
                         "matched")
    scale = img.pixel_scale
    smaj, smin, theta = deconvolve(target.bmaj / FWHM / scale, target.bmin / FWHM / scale,
                                   math.radians(90.0 - target.bpa),
                                   own.bmaj / FWHM / scale, own.bmin / FWHM / scale,
                                   math.radians(90.0 - own.bpa))
    smaj, smin, theta = float(smaj), float(smin), float(theta)
    if smaj < 0.05:
        return None
    half = int(math.ceil(4.0 * max(smaj, 0.3)))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    u, v = xx * c + yy * s, -xx * s + yy * c
    k = np.exp(-0.5 * ((u / max(smaj, 1e-3)) ** 2 + (v / max(smin, 1e-3)) ** 2))
    return k / k.sum()


def check_same_grid(a: FitsImage, b: FitsImage, *, regrid: bool = False) -> bool:
    """Whether ``a`` and ``b`` are 2D images of one pixel grid (shape and WCS, to a
    hundredth of a pixel at the corners and centre); ImageError when they are not, unless
    ``regrid`` (then False: ``b`` is to be regridded onto ``a``, :func:`regridded`)."""
    if a.ndim != 2 or b.ndim != 2:
        raise ImageError("images: 2D images (plane= takes one plane of a cube)")
    if a.wcs is None or b.wcs is None:
        raise ImageError(f"images: a celestial WCS is needed ({a.path}, {b.path})")
    if a.shape != b.shape:
        if regrid:
            return False
        raise ImageError(f"images: one pixel grid is needed (shapes {a.shape}, {b.shape}); "
                         "regrid one onto the other (--regrid)")
    H, W = a.shape
    x = np.array([0.0, W - 1.0, 0.0, W - 1.0, W / 2.0])
    y = np.array([0.0, 0.0, H - 1.0, H - 1.0, H / 2.0])
    bx, by = sky_to_pixel(b.wcs, *pixel_to_sky(a.wcs, x, y))
    off = np.hypot(bx - x, by - y)
    if np.all(off < 0.01):
        return True
    if regrid:
        return False
    raise ImageError(f"{a.path}, {b.path}: their pixel grids differ (by up to "
                     f"{float(np.nanmax(off)):.3g} pixels); regrid one onto the other "
                     "(--regrid)")


def regridded(values: np.ndarray, source: FitsImage, grid: FitsImage) -> np.ndarray:
    """``values`` (an array of ``source``'s pixels, e.g. :func:`at_beam`'s) resampled onto
    ``grid``'s pixels: each pixel's sky position found in ``source`` (the mapping computed
    every few pixels and interpolated), the value interpolated bicubically; NaN off
    ``source`` or next to its blank pixels.  For images in Jy/beam, sampled finely against
    their beam."""
    from scipy.ndimage import map_coordinates, spline_filter

    blank = ~np.isfinite(values)
    coeffs = spline_filter(np.where(blank, 0.0, values), order=3)  # (once, for every strip)
    H, W = grid.shape[-2:]
    gy = np.arange(0, H + _MAP_STEP, _MAP_STEP, dtype=np.float64)
    gx = np.arange(0, W + _MAP_STEP, _MAP_STEP, dtype=np.float64)
    my, mx = np.meshgrid(gy, gx, indexing="ij")
    sx, sy = sky_to_pixel(source.wcs, *pixel_to_sky(grid.wcs, mx.ravel(), my.ravel()))
    sx, sy = sx.reshape(my.shape), sy.reshape(my.shape)
    out = np.full((H, W), np.nan)
    for r0 in range(0, H, _STRIP):
        rows = np.arange(r0, min(r0 + _STRIP, H), dtype=np.float64)
        yy, xx = np.meshgrid(rows / _MAP_STEP, np.arange(W) / _MAP_STEP, indexing="ij")
        px = map_coordinates(sx, [yy, xx], order=1, mode="nearest")
        py = map_coordinates(sy, [yy, xx], order=1, mode="nearest")
        v = map_coordinates(coeffs, [py, px], order=3, prefilter=False, mode="constant",
                            cval=np.nan)
        near_blank = map_coordinates(blank.astype(np.float64), [py, px], order=1,
                                     mode="constant", cval=1.0) > 0
        v[near_blank] = np.nan
        out[r0:r0 + rows.size] = v
    return out


def at_beam(img: FitsImage, target: Beam) -> np.ndarray:
    """The whole 2D image in Jy per ``target`` beam: convolved with :func:`match_kernel`
    (blank pixels stay blank) and rescaled by the beams' areas."""
    from scipy.signal import oaconvolve

    a = img.read((slice(None), slice(None))).astype(np.float64) * img.unit_scale
    k = match_kernel(img, target)
    if k is None:
        return a
    blank = ~np.isfinite(a)
    a = oaconvolve(np.where(blank, 0.0, a), k, mode="same")
    a[blank] = np.nan
    return a * (target.bmaj * target.bmin) / (img.beam.bmaj * img.beam.bmin)


def gaussian_fft_kernel(shape: tuple[int, int], fwhm_px: tuple[float, float], pa_deg: float,
                        *, shift: float = 0.0, unit_sum: bool = True) -> np.ndarray:
    """An elliptical Gaussian (FWHM major, minor in pixels; the major axis ``pa_deg`` east of
    north, from +y towards -x) on a grid of ``shape`` in FFT order, centred at pixel
    (-shift, -shift): a convolution with it puts at each pixel the value ``shift`` pixels
    further along both axes. Unit sum (``unit_sum``), else a peak of 1."""
    sy, sx = fwhm_px[0] / FWHM, fwhm_px[1] / FWHM
    fy = np.fft.fftfreq(shape[0]) * shape[0] + shift
    fx = np.fft.fftfreq(shape[1]) * shape[1] + shift
    yy, xx = np.meshgrid(fy, fx, indexing="ij")
    t = math.radians(pa_deg)
    u = xx * math.cos(t) + yy * math.sin(t)
    v = -xx * math.sin(t) + yy * math.cos(t)
    k = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return k / k.sum() if unit_sum else k
