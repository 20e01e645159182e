"""Random catalogues with a catalogue's selection, for clustering measurements.

A catalogue's sources are not spread over its image as the sky spreads them: where the noise
is higher (a mosaic's edges, around bright sources, a primary beam's fall) fewer faint
sources reach the threshold. An angular correlation function measured against randoms
spread uniformly then sees that pattern as clustering. The randoms here share the
selection: uniform on the sky of the image's data, each with a true flux and peak drawn from
the catalogue's own sources (each weighted by 1 / the fraction of the area where it could be
found, which gives the sources' true distribution above the flux cut), and kept as the
detector would have kept it at its place: a hard threshold ``peak >= snr x rms`` (rms seen
through the primary beam when the catalogue was corrected for one), or the completeness by
SNR that source injection measured (``cianna-jax inject``). LoTSS's clustering papers
(Siewert et al. 2020, Hale et al. 2024) make their randoms so, from simulated fluxes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import CatalogueError, read_catalogue
from .fits_image import FitsImage, ImageError
from .noise import NoiseMap, estimate_noise_map, fill_nan
from .primary_beam import PrimaryBeam, pb_response
from .sky import pixel_to_sky, sky_offsets_per_pixel

__all__ = ["Detection", "Footprint", "Randoms", "visible_fraction", "intrinsic_weights",
           "draw_randoms"]

#: the visible-fraction table's peaks per decade
_PER_DECADE = 64


@dataclass(frozen=True)
class Detection:
    """The chance that a source of true peak SNR ``s`` (its peak / the local rms) is found:
    1 at or above ``snr`` and 0 below it (a hard threshold), or the completeness by SNR of
    source injection (``snr_edges``, ``completeness`` per bin: linear between the bins'
    middles, 0 below the first bin, the last bin's value above the last)."""

    snr: float | None = 5.0
    snr_edges: np.ndarray | None = field(default=None, repr=False)
    completeness: np.ndarray | None = field(default=None, repr=False)
    source: str = "threshold"

    @classmethod
    def threshold(cls, snr: float = 5.0) -> Detection:
        """Found at or above ``snr`` times the local rms, never below."""
        return cls(snr=as_bounded_float(snr, "snr"))

    @classmethod
    def from_injection(cls, report: str | os.PathLike) -> Detection:
        """Source injection's completeness by injected peak SNR: its report folder or its
        ``completeness_by_snr.ecsv``."""
        p = os.fspath(report)
        if os.path.isdir(p):
            p = os.path.join(p, "completeness_by_snr.ecsv")
        if not os.path.exists(p):
            raise FileNotFoundError(f"injection: {p} not found (cianna-jax inject writes "
                                    "completeness_by_snr.ecsv in its report folder)")
        t = read_catalogue(p)
        need = {"snr_min", "snr_max", "completeness"}
        if not need <= set(t.colnames):
            raise CatalogueError(f"{p}: not a completeness table by SNR (needs "
                                 f"{sorted(need)})")
        lo, hi = np.asarray(t["snr_min"], np.float64), np.asarray(t["snr_max"], np.float64)
        comp = np.asarray(t["completeness"], np.float64)
        if lo.size == 0 or np.any(lo[1:] != hi[:-1]) or not np.any(np.isfinite(comp)):
            raise CatalogueError(f"{p}: the SNR bins must be adjacent (snr_max of one the "
                                 "snr_min of the next) and hold completeness values")
        return cls(snr=None, snr_edges=np.append(lo, hi[-1]), completeness=comp,
                   source=f"injection {os.path.dirname(p) or p}")

    def probability(self, snr: np.ndarray) -> np.ndarray:
        """The chance of being found at each true peak SNR (0 for NaN)."""
        s = np.asarray(snr, np.float64)
        if self.completeness is None:
            return np.where(np.isfinite(s) & (s >= self.snr), 1.0, 0.0)
        e, c = self.snr_edges, self.completeness
        mid, ok = 0.5 * (e[:-1] + e[1:]), np.isfinite(c)
        p = np.interp(np.where(np.isfinite(s), s, 0.0), mid[ok], np.clip(c[ok], 0.0, 1.0))
        return np.where(np.isfinite(s) & (s >= e[0]), p, 0.0)

    def describe(self) -> str:
        """One line for reports."""
        if self.completeness is None:
            return f"peak >= {self.snr:g} x local rms"
        return f"completeness by SNR of {self.source}"


class Footprint:
    """Where an image has data, on the sky, and the rms a source's true peak is measured
    against there (Jy/beam; divided by the primary beam's response for a catalogue
    corrected for it): where randoms go and what they must reach.

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
        self._max_area = float(np.nanmax(self._pixel_area(gx.ravel(), gy.ravel()))) * 1.001

    def _pixel_area(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each pixel's solid angle (arcsec^2) from the WCS's local Jacobian."""
        j = sky_offsets_per_pixel(self.image.wcs, x, y)
        return np.abs(j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0])

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether 0-based pixel positions fall on the image's data (and, with a primary
        beam, where its response is known and at least the cut)."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        H, W = self.image.shape
        ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
        inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
        ix, iy = np.where(inside, ix, 0), np.where(inside, iy, 0)
        ok = inside & ((self._finite[iy, ix >> 3] >> (7 - (ix & 7))) & 1).astype(bool)
        s = self.sigma(x, y)
        with np.errstate(invalid="ignore"):
            return ok & np.isfinite(s) & (True if self.max_rms is None else s <= self.max_rms)

    def sigma(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pixel positions uniform on the sky of the data (each candidate kept in
        proportion to its pixel's solid angle)."""
        H, W = self.image.shape
        xs, ys, have = [], [], 0
        for _ in range(1000):
            m = max(1024, 2 * (n - have))
            x, y = rng.uniform(-0.5, W - 0.5, m), rng.uniform(-0.5, H - 0.5, m)
            keep = self.contains(x, y)
            x, y = x[keep], y[keep]
            keep = rng.uniform(0.0, self._max_area, x.size) < self._pixel_area(x, y)
            xs.append(x[keep])
            ys.append(y[keep])
            have += int(keep.sum())
            if have >= n:
                break
        else:
            raise ImageError(f"{self.image.path}: almost no pixel holds data with a known rms")
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]

    def to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (degrees) of pixel positions."""
        return pixel_to_sky(self.image.wcs, x, y)

    def area_deg2(self, rng: np.random.Generator, n: int = 200_000) -> float:
        """The data's solid angle (deg^2), from ``n`` uniform candidates."""
        H, W = self.image.shape
        x, y = rng.uniform(-0.5, W - 0.5, n), rng.uniform(-0.5, H - 0.5, n)
        a = np.where(self.contains(x, y), self._pixel_area(x, y), 0.0)
        return float(a.mean() * H * W / 3600.0 ** 2)


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


def visible_fraction(footprint: Footprint, detection: Detection, peaks: np.ndarray,
                     rng: np.random.Generator, n: int = 200_000) -> np.ndarray:
    """The fraction of the data's area where a source of each true ``peak`` (Jy/beam) would
    be found (the mean chance over ``n`` uniform positions; tabulated in log peak)."""
    p = np.asarray(peaks, np.float64)
    good = np.isfinite(p) & (p > 0)
    out = np.full(p.shape, np.nan)
    if not good.any():
        return out
    x, y = footprint.sample(n, rng)
    s = footprint.sigma(x, y)
    lo, hi = np.log10(p[good].min()), np.log10(p[good].max())
    grid = np.linspace(lo, hi, max(2, int(math.ceil((hi - lo) * _PER_DECADE)) + 1))
    frac = np.array([detection.probability(10.0 ** g / s).mean() for g in grid])
    out[good] = np.interp(np.log10(p[good]), grid, frac)
    return out


def intrinsic_weights(visible: np.ndarray, min_visible: float = 0.02) -> np.ndarray:
    """Each source's weight in the true distribution of fluxes: 1 / its visible fraction,
    the fraction floored at ``min_visible`` (0 for sources with none)."""
    v = np.asarray(visible, np.float64)
    w = 1.0 / np.maximum(np.where(np.isfinite(v), v, 0.0), min_visible)
    return np.where(np.isfinite(v) & (v > 0), w, 0.0)


@dataclass(frozen=True)
class Randoms:
    """A random catalogue: positions (degrees, pixels), the true flux and peak each drew
    (Jy, Jy/beam) and the rms it was measured against there."""

    ra: np.ndarray
    dec: np.ndarray
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    sigma: np.ndarray
    drawn: int

    def table(self, meta: dict[str, Any] | None = None) -> Any:
        """As an astropy Table with units."""
        from .catalogue import make_table

        t = make_table({"ra": self.ra, "dec": self.dec, "x": self.x, "y": self.y,
                        "flux": self.flux, "peak": self.peak, "local_rms": self.sigma},
                       meta=meta)
        for c, u in (("ra", "deg"), ("dec", "deg"), ("flux", "Jy"), ("peak", "Jy/beam"),
                     ("local_rms", "Jy/beam")):
            t[c].unit = u
        return t


def draw_randoms(footprint: Footprint, detection: Detection, flux: np.ndarray,
                 peak: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator,
                 max_rounds: int = 200) -> Randoms:
    """``n`` randoms kept as the detector would keep them: positions uniform on the data,
    each a (flux, peak) pair drawn from the sources' (``weights``: their weights in the true
    distribution, :func:`intrinsic_weights`), kept with the detection's chance at its
    SNR there."""
    n = as_int(n, "n", minimum=1)
    flux, peak = np.asarray(flux, np.float64), np.asarray(peak, np.float64)
    w = np.asarray(weights, np.float64)
    if w.sum() <= 0:
        raise ValueError("weights: no source to draw fluxes from")
    prob = w / w.sum()
    parts: list[tuple[np.ndarray, ...]] = []
    have = drawn = 0
    for _ in range(max_rounds):
        m = max(4096, int(1.5 * (n - have) * (drawn + 1) / (have + 1)))
        x, y = footprint.sample(m, rng)
        k = rng.choice(prob.size, size=m, p=prob)
        s = footprint.sigma(x, y)
        keep = rng.uniform(size=m) < detection.probability(peak[k] / s)
        drawn += m
        parts.append((x[keep], y[keep], flux[k][keep], peak[k][keep], s[keep]))
        have += int(keep.sum())
        if have >= n:
            break
    else:
        raise ValueError(f"randoms: only {have} of {n} kept after {drawn} draws: the sources "
                         "are found almost nowhere on this footprint (check the rms map "
                         "and the detection threshold)")
    x, y, f, pk, s = (np.concatenate(c)[:n] for c in zip(*parts))
    ra, dec = footprint.to_sky(x, y)
    return Randoms(ra=ra, dec=dec, x=x, y=y, flux=f, peak=pk, sigma=s, drawn=drawn)
