"""Where a catalogue could hold sources: the sky of an image's data (or a mosaic's), with the
rms a source's true peak is measured against there.

Random catalogues (:mod:`.randoms`) go where the footprint is, and are kept by the detection
rule at its rms. Both kinds answer on the sky (RA, Dec in degrees): :meth:`contains`,
:meth:`sigma`, :meth:`sample` (positions uniform in solid angle) and :meth:`area_deg2`.
A mosaic's images share the sky by the rule ``predict`` merges their catalogues with: each
position belongs to the image whose centre is nearest among those with data there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..checks import as_bounded_float, as_int
from .fits_image import FitsImage, ImageError
from .mosaic import image_centre, nearest_centre
from .noise import NoiseMap, estimate_noise_map, fill_nan
from .primary_beam import PrimaryBeam, pb_response
from .sky import pixel_to_sky, sky_offsets_per_pixel, sky_to_pixel

__all__ = ["Footprint", "MosaicFootprint"]


class Footprint:
    """One 2D image's data on the sky and its rms (Jy/beam), divided by the primary beam's
    response for a catalogue corrected for it.

    ``noise``: the image's noise map (default: estimated in boxes of ``noise_box``, as
    ``predict`` does); ``rms_map``: an rms image of the same grid instead (``predict
    --rms-map``'s, e.g. with ``--adaptive-rms``), read on a grid of at most ``max_grid``
    points; ``primary_beam`` / ``pb_min``: the beam and its cut of a catalogue corrected for
    it (no data where the response is below the cut or unknown); ``max_rms``: the data
    where that rms is at most this (Jy/beam; a mask of the noisiest parts, as survey
    papers cut their edges)."""

    def __init__(self, image: FitsImage, *, noise: NoiseMap | None = None,
                 rms_map: FitsImage | None = None, noise_box: int = 128,
                 primary_beam: PrimaryBeam | None = None, pb_min: float | None = None,
                 max_rms: float | None = None, max_grid: int = 4_000_000, rows: int = 256):
        if image.ndim != 2:
            raise ImageError(f"{image.path}: randoms are drawn on 2D images; this one has "
                             f"{image.ndim} axes")
        if image.wcs is None or not image.pixel_scale:
            raise ImageError(f"{image.path}: no celestial WCS: randoms need sky positions")
        self.image, self.primary_beam, self.pb_min = image, primary_beam, pb_min
        self.max_rms = None if max_rms is None else as_bounded_float(max_rms, "max_rms")
        H, W = image.shape
        rows = max(1, int(rows))
        finite = np.zeros((H, (W + 7) // 8), np.uint8)
        for r0 in range(0, H, rows):
            finite[r0:r0 + rows] = np.packbits(np.isfinite(image.read(
                (slice(r0, min(r0 + rows, H)), slice(0, W)))), axis=1)
        self._finite = finite
        if rms_map is not None:
            if rms_map.shape != image.shape:
                raise ImageError(f"rms_map: {rms_map.path} is {rms_map.shape}, the image "
                                 f"{image.shape}: give the rms map made on this image's grid")
            self.noise, self.rms_scale = _grid_noise(rms_map, max_grid), rms_map.unit_scale
            self.rms_source = f"rms map {rms_map.path}"
        else:
            self.noise = noise if noise is not None else estimate_noise_map(
                image.read, image.shape, box=as_int(noise_box, "noise_box", minimum=8))
            self.rms_scale = image.unit_scale
            self.rms_source = (f"noise map in boxes of {self.noise.box} pixels"
                               + (" (adaptive)" if self.noise.adaptive else ""))
        ys, xs = np.linspace(0, H - 1, 33), np.linspace(0, W - 1, 33)
        gx, gy = np.meshgrid(xs, ys)
        self.max_pixel_area = float(np.nanmax(self.pixel_area(gx.ravel(), gy.ravel()))) * 1.001

    # pixel positions (0-based) of this image
    def pixel_area(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each pixel's solid angle (arcsec^2) from the WCS's local Jacobian."""
        j = sky_offsets_per_pixel(self.image.wcs, x, y)
        return np.abs(j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0])

    def has_data_pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether pixel positions fall on a finite pixel of the image."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        H, W = self.image.shape
        with np.errstate(invalid="ignore"):
            ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
            inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < W) & (iy >= 0) & (
                iy < H)
        ix = np.where(inside, ix, 0).astype(np.int64)
        iy = np.where(inside, iy, 0).astype(np.int64)
        return inside & ((self._finite[iy, ix >> 3] >> (7 - (ix & 7))) & 1).astype(bool)

    def sigma_pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The rms a true peak is measured against at pixel positions (Jy/beam): the noise
        map's, divided by the primary beam's response (NaN below the cut)."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        rms = self.noise.at(y, x) * self.rms_scale
        if self.primary_beam is None:
            return np.where(rms > 0, rms, np.nan)
        a = pb_response(self.primary_beam, self.image, x, y)
        cut = self.pb_min or np.finfo(np.float64).tiny
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((a >= cut) & (rms > 0), rms / a, np.nan)

    def contains_pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether pixel positions fall on the data, with a known rms (within the primary
        beam's cut) of at most ``max_rms``."""
        s = self.sigma_pixels(x, y)
        with np.errstate(invalid="ignore"):
            ok = self.has_data_pixels(x, y) & np.isfinite(s)
            return ok & (True if self.max_rms is None else s <= self.max_rms)

    def candidates(self, m: int, rng: np.random.Generator, max_area: float
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Of ``m`` positions uniform in the pixel grid, those kept in proportion to their
        pixel's solid angle (over ``max_area``) that fall on data: uniform on the sky."""
        H, W = self.image.shape
        x, y = rng.uniform(-0.5, W - 0.5, m), rng.uniform(-0.5, H - 0.5, m)
        keep = self.has_data_pixels(x, y)
        x, y = x[keep], y[keep]
        keep = rng.uniform(0.0, max_area, x.size) < self.pixel_area(x, y)
        return x[keep], y[keep]

    # sky positions (degrees)
    def to_pixels(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return sky_to_pixel(self.image.wcs, np.asarray(ra, np.float64),
                            np.asarray(dec, np.float64))

    def has_data(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Whether sky positions fall on a finite pixel of the image."""
        return self.has_data_pixels(*self.to_pixels(ra, dec))

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Whether sky positions fall on the footprint (:meth:`contains_pixels`)."""
        return self.contains_pixels(*self.to_pixels(ra, dec))

    def sigma(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """The rms (Jy/beam) at sky positions (:meth:`sigma_pixels`)."""
        return self.sigma_pixels(*self.to_pixels(ra, dec))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` sky positions uniform in solid angle on the footprint."""
        xs, ys, have = [], [], 0
        for _ in range(1000):
            x, y = self.candidates(max(1024, 2 * (n - have)), rng, self.max_pixel_area)
            keep = self.contains_pixels(x, y)
            xs.append(x[keep])
            ys.append(y[keep])
            have += int(keep.sum())
            if have >= n:
                break
        else:
            raise ImageError(f"{self.image.path}: almost no pixel holds data with a known rms")
        return pixel_to_sky(self.image.wcs, np.concatenate(xs)[:n], np.concatenate(ys)[:n])

    def area_deg2(self, rng: np.random.Generator, n: int = 200_000) -> float:
        """The footprint's solid angle (deg^2), from ``n`` uniform candidates."""
        H, W = self.image.shape
        x, y = rng.uniform(-0.5, W - 0.5, n), rng.uniform(-0.5, H - 0.5, n)
        a = np.where(self.contains_pixels(x, y), self.pixel_area(x, y), 0.0)
        return float(a.mean() * H * W / 3600.0 ** 2)


class MosaicFootprint:
    """Several images' footprints as one sky: each position belongs to the image whose centre
    is nearest among those with data there (``predict``'s rule for a mosaic's catalogue), and
    is on the footprint when on that image's."""

    def __init__(self, parts: Sequence[Footprint]):
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("a mosaic needs at least one image")
        self.centres = np.array([image_centre(p.image) for p in self.parts])
        self.rms_source = "; ".join(f"{p.image.path}: {p.rms_source}" for p in self.parts)

    def owner(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """The owning image's index at each sky position (-1 on no image's data)."""
        ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
        return nearest_centre(ra, dec, self.centres, [p.has_data(ra, dec) for p in self.parts])

    def _per_owner(self, ra: np.ndarray, dec: np.ndarray, what: str, fill) -> np.ndarray:
        ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
        own = self.owner(ra, dec)
        out = np.full(ra.shape, fill)
        for i, p in enumerate(self.parts):
            k = own == i
            if k.any():
                out[k] = getattr(p, what)(ra[k], dec[k])
        return out

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return self._per_owner(ra, dec, "contains", False).astype(bool)

    def sigma(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return self._per_owner(ra, dec, "sigma", np.nan).astype(np.float64)

    def _owned(self, rng: np.random.Generator, m: int):
        """Per image, of candidates uniform on the sky (``m`` in all, shared by the images'
        pixel counts) those on its footprint that it owns: ``(candidates, ra, dec)``."""
        top = max(p.max_pixel_area for p in self.parts)
        sizes = np.array([p.image.shape[0] * p.image.shape[1] for p in self.parts], float)
        for i, p in enumerate(self.parts):
            mi = max(1, math.ceil(m * sizes[i] / sizes.sum()))
            x, y = p.candidates(mi, rng, top)
            keep = p.contains_pixels(x, y)
            ra, dec = pixel_to_sky(p.image.wcs, x[keep], y[keep])
            mine = self.owner(ra, dec) == i
            yield mi, ra[mine], dec[mine]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ras, decs, have = [], [], 0
        for _ in range(1000):
            for _, ra, dec in self._owned(rng, max(4096, 2 * (n - have))):
                ras.append(ra)
                decs.append(dec)
                have += ra.size
            if have >= n:
                break
        else:
            raise ImageError("the mosaic: almost no pixel holds data with a known rms")
        order = rng.permutation(have)[:n]  # the images' shares mixed, then cut to n
        return np.concatenate(ras)[order], np.concatenate(decs)[order]

    def area_deg2(self, rng: np.random.Generator, n: int = 400_000) -> float:
        """The union's solid angle (deg^2), from ``n`` uniform candidates."""
        top = max(p.max_pixel_area for p in self.parts)
        return float(sum(ra.size / mi * p.image.shape[0] * p.image.shape[1] * top
                         for p, (mi, ra, _) in zip(self.parts, self._owned(rng, n)))
                     / 3600.0 ** 2)


def _grid_noise(rms_map: FitsImage, max_grid: int) -> NoiseMap:
    """An rms image read on a regular grid of at most ``max_grid`` points (blank points
    filled by their nearest), as a :class:`NoiseMap` that interpolates it."""
    if rms_map.ndim != 2:
        raise ImageError(f"{rms_map.path}: an rms map is a 2D image")
    H, W = rms_map.shape
    step = max(1, math.ceil(math.sqrt(H * W / max(int(max_grid), 1))))
    cy, cx = np.arange(0, H, step), np.arange(0, W, step)
    grid = np.empty((cy.size, cx.size))
    for k, yy in enumerate(cy):
        grid[k] = rms_map.read((slice(int(yy), int(yy) + 1), slice(0, W)))[0, cx]
    grid = np.where(grid > 0, grid, np.nan)
    if not np.any(np.isfinite(grid)):
        raise ImageError(f"{rms_map.path}: no positive rms value")
    return NoiseMap(rms=fill_nan(grid), background=np.zeros_like(grid),
                    cy=cy.astype(np.float64), cx=cx.astype(np.float64), shape=(H, W),
                    box=step)
