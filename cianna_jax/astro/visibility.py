"""Visibility areas: how much of an image would show a source of a given brightness.

Where the noise changes across an image (a mosaic's edges, a primary-beam corrected image)
or the sources are seen through a primary beam, a faint source is detectable over part of
the image only. The classical correction of source counts for it (e.g. Hopkins et al.
2003) counts each source over the area where it would have been found: the image's data
where its peak, seen through the beam (``A``), reaches ``snr`` times the local rms,

    peak x A(p) >= snr x rms(p),  A(p) >= pb_min,

a fraction of the data's area that grows with the peak. It assumes the detector finds
every source above that threshold and none below (source injection, :mod:`.completeness`,
measures the real curve); its advantage is needing nothing but the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .fits_image import FitsImage, ImageError
from .hi_mass import ARCSEC_PER_RAD
from .mosaic import nearest_centre_image
from .noise import NoiseMap, estimate_noise_map
from .primary_beam import PrimaryBeam, pb_response
from .sky import pixel_to_sky

__all__ = ["Visibility", "visibility", "mosaic_visibility"]


class Visibility:
    """The detection thresholds (Jy/beam of true peak) at sampled pixels of one image's data
    or a mosaic's, each sample standing for its solid angle (``weights``; equal by default):
    :meth:`fraction` of the area a peak reaches."""

    def __init__(self, thresholds: np.ndarray, snr: float, weights: np.ndarray | None = None):
        t = np.asarray(thresholds, np.float64)
        w = np.ones(t.size) if weights is None else np.asarray(weights, np.float64)
        order = np.argsort(np.where(np.isfinite(t), t, np.inf), kind="stable")
        self.thresholds = np.where(np.isfinite(t), t, np.inf)[order]
        self.weights = w[order]
        self._cumulative = np.concatenate([[0.0], np.cumsum(self.weights)])
        self.snr = snr

    @classmethod
    def combine(cls, parts: list[Visibility]) -> Visibility:
        """One visibility over the parts' samples (a mosaic's images, each on the part of
        the sky it owns)."""
        return cls(np.concatenate([p.thresholds for p in parts]), parts[0].snr,
                   np.concatenate([p.weights for p in parts]))

    def fraction(self, peak: np.ndarray) -> np.ndarray:
        """The fraction of the data's area where each true ``peak`` (Jy/beam) would be seen
        (NaN for a non-positive or NaN peak)."""
        p = np.asarray(peak, np.float64)
        k = np.searchsorted(self.thresholds, np.where(np.isfinite(p), p, -np.inf),
                            side="right")
        out = self._cumulative[k] / max(self._cumulative[-1], 1e-300)
        return np.where(np.isfinite(p) & (p > 0), out, np.nan)


def visibility(image: FitsImage, *, snr: float = 5.0, noise: NoiseMap | None = None,
               primary_beam: PrimaryBeam | None = None, pb_min: float | None = None,
               noise_box: int = 128, max_samples: int = 1_000_000, rows: int = 256,
               owned: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
               ) -> Visibility:
    """The thresholds ``snr x rms / A`` at the finite pixels of a 2D ``image`` (``noise``:
    its noise map, estimated in boxes of ``noise_box`` pixels when not given: the box
    ``predict`` used, for the catalogue's SNRs; ``primary_beam``: the response ``A``, pixels
    below ``pb_min`` or where it is not known never detect; without a beam ``A`` = 1); an
    image of more than ``max_samples`` pixels is sampled on a regular grid, each sample
    weighted by its solid angle. ``owned``: a mask of the sampled pixels ``(x, y)`` this
    image owns in a mosaic (the others left out)."""
    s = as_bounded_float(snr, "snr")
    if image.ndim != 2:
        raise ImageError(f"{image.path}: visibility areas are for 2D images")
    noise = noise if noise is not None else estimate_noise_map(image.read, image.shape,
                                                               box=noise_box)
    H, W = image.shape
    step = max(1, math.ceil(math.sqrt(H * W / max(int(max_samples), 1))))
    ys, xs = np.arange(step // 2, H, step), np.arange(step // 2, W, step)
    out = []
    for r0 in range(0, ys.size, max(1, int(rows))):
        part = ys[r0:r0 + rows]
        finite = np.stack([np.isfinite(image.read((slice(int(y), int(y) + 1), slice(0, W)))[0, xs])
                           for y in part])
        gy, gx = np.meshgrid(part.astype(np.float64), xs.astype(np.float64), indexing="ij")
        gy, gx = gy[finite], gx[finite]
        if owned is not None:
            mine = np.asarray(owned(gx, gy), bool)
            gy, gx = gy[mine], gx[mine]
        rms = noise.at(gy, gx) * image.unit_scale
        a = np.ones(gy.size)
        if primary_beam is not None:
            a = pb_response(primary_beam, image, gx, gy)
            with np.errstate(invalid="ignore"):
                a = np.where(a >= (pb_min or np.finfo(np.float64).tiny), a, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(s * rms / a)
    t = np.concatenate(out) if out else np.zeros(0)
    sample = float(step * step) * ((image.pixel_scale / ARCSEC_PER_RAD) ** 2
                                   if image.pixel_scale else 1.0)
    return Visibility(t, s, np.full(t.size, sample))


def owner_mask(images: Sequence[FitsImage], i: int) -> Callable[[np.ndarray, np.ndarray],
                                                                 np.ndarray]:
    """``(x, y) -> bool``: the pixels of image ``i`` it owns in the mosaic of ``images``
    (its centre the nearest among those with data there, :func:`.mosaic.nearest_centre_image`)."""
    def mine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ra, dec = pixel_to_sky(images[i].wcs, x, y)
        return nearest_centre_image(ra, dec, images) == i
    return mine


def mosaic_visibility(images: Sequence[FitsImage], *, snr: float = 5.0,
                      beams: Sequence[dict[str, Any]] | None = None, noise_box: int = 128
                      ) -> Visibility:
    """The visibility of one image, or of a mosaic's: each image over the part of the sky it
    owns (:func:`owner_mask`), with its own primary beam (``beams``: :func:`visibility`'s
    ``primary_beam``/``pb_min`` keywords per image)."""
    beams = list(beams) if beams is not None else [{}] * len(images)
    return Visibility.combine([visibility(
        im, snr=snr, **beams[i], noise_box=noise_box,
        owned=None if len(images) == 1 else owner_mask(images, i))
        for i, im in enumerate(images)])
