"""Images brought to one resolution: the common beam of several, the Gaussian kernel that
turns an image's beam into it, and the check that images share one pixel grid (image
subtraction, spectral-index maps)."""

from __future__ import annotations

import math

import numpy as np

from .fits_image import Beam, FitsImage, ImageError
from .sky import deconvolve, pixel_to_sky, sky_to_pixel

__all__ = ["common_beam", "match_kernel", "check_same_grid", "at_beam"]

_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _cov(b: Beam) -> np.ndarray:
    """A beam's covariance (arcsec^2) in (east, north)."""
    t = math.radians(b.bpa)
    smaj, smin = b.bmaj / _SIGMA, b.bmin / _SIGMA
    u, v = np.array([math.sin(t), math.cos(t)]), np.array([math.cos(t), -math.sin(t)])
    return smaj ** 2 * np.outer(u, u) + smin ** 2 * np.outer(v, v)


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
    smaj, smin, theta = deconvolve(target.bmaj / _SIGMA / scale, target.bmin / _SIGMA / scale,
                                   math.radians(90.0 - target.bpa),
                                   own.bmaj / _SIGMA / scale, own.bmin / _SIGMA / scale,
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


def check_same_grid(a: FitsImage, b: FitsImage) -> None:
    """ImageError unless ``a`` and ``b`` are 2D images of one pixel grid (shape and WCS, to a
    hundredth of a pixel at the corners and centre)."""
    if a.ndim != 2 or b.ndim != 2:
        raise ImageError("images: 2D images (plane= takes one plane of a cube)")
    if a.shape != b.shape or a.wcs is None or b.wcs is None:
        raise ImageError(f"images: one pixel grid with a celestial WCS is needed (shapes "
                         f"{a.shape}, {b.shape}); regrid one onto the other first")
    H, W = a.shape
    x = np.array([0.0, W - 1.0, 0.0, W - 1.0, W / 2.0])
    y = np.array([0.0, 0.0, H - 1.0, H - 1.0, H / 2.0])
    bx, by = sky_to_pixel(b.wcs, *pixel_to_sky(a.wcs, x, y))
    if not np.all(np.hypot(bx - x, by - y) < 0.01):
        raise ImageError(f"{a.path}, {b.path}: their pixel grids differ (by up to "
                         f"{float(np.max(np.hypot(bx - x, by - y))):.3g} pixels); regrid one "
                         "onto the other first")


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
