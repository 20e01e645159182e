"""Several overlapping images (a survey's mosaics or pointings) -> one catalogue.

``cianna-jax predict --image a.fits --image b.fits --out all.ecsv`` detects and measures
each image with one loaded, compiled detector, then keeps every source once: from the image
whose centre is nearest to it on the sky, among the images with data (a finite pixel) at
its position, as survey catalogues are built from overlapping mosaics (e.g. LoTSS).  Two
detections of one source on either side of that boundary (from two images, closer than half
a beam) keep the one nearer its own image's centre.  The catalogue gains an ``image`` column
(``x``, ``y`` are that image's pixels) and lists the images in its metadata.  ``val`` scores
such images as one field: each row of the truth (and of another finder's catalogue) goes to
one image by the same rule (:func:`split_catalogue`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import CatalogueError, column_values
from .crossmatch import sky_chord, unit_vectors
from .fits_image import FitsImage, ImageError
from .sky import angular_separation, pixel_to_sky, sky_to_pixel
from .sources import GROUP_TOL, THRESH_ISL, with_sources

__all__ = ["MosaicFinding", "keep_nearest_centre", "merge_tables", "image_centre", "has_data",
           "nearest_centre_image", "nearest_centre", "split_catalogue", "with_image_column", "summed_timings",
           "image_names", "largest_beam"]

RULE = ("each source from the image whose centre is nearest to it, of the images with data at "
        "its position; of two detections closer than half a beam, the one nearer its centre")
#: per-image metadata of the catalogues, kept per image in the merged catalogue's ``images``
_PER_IMAGE = ("image", "hdu", "plane", "bunit", "beam_bmaj_arcsec", "beam_bmin_arcsec",
              "beam_bpa_deg", "pixel_scale_arcsec", "radec_frame", "median_rms", "reliability",
              "reliability_zones", "adaptive_rms")


@dataclass
class MosaicFinding:
    """Result of :func:`.pipeline.find_sources_in_images`: the merged catalogue ``table``,
    each image's :class:`.pipeline.SourceFinding` (``parts``) and which of its rows were kept
    (``kept``, boolean per row of the part's table)."""

    table: Any
    parts: list
    kept: list[np.ndarray]

    @property
    def timings(self) -> dict[str, float]:
        """The parts' timings summed (:func:`summed_timings`)."""
        return summed_timings([p.timings for p in self.parts])


def summed_timings(timings: Sequence[dict[str, float]]) -> dict[str, float]:
    """Several images' detection timings summed (tiles/s over all the detection time)."""
    keys = ("noise_s", "detect_s", "measure_s", "tiles")
    out: dict[str, float] = {k: sum(t[k] for t in timings) for k in keys}
    if all("reliability_s" in t for t in timings):  # the inverted images' runs
        out["reliability_s"] = sum(t["reliability_s"] for t in timings)
    out["tiles_per_s"] = out["tiles"] / out["detect_s"] if out["detect_s"] > 0 else 0.0
    return out


def image_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The images' names in a merged catalogue's ``image`` column: their file names, or
    their whole paths when two share a file name."""
    full = [os.fspath(p) for p in paths]
    base = [os.path.basename(p) for p in full]
    return base if len(set(base)) == len(base) else full


def largest_beam(images: Sequence[FitsImage]) -> float:
    """The largest beam FWHM of the images (arcsec), or, without beams, 3 pixels at the
    largest pixel scale (1 arcsec per pixel where unknown)."""
    beams = [im.beam.bmaj for im in images if im.beam is not None]
    return max(beams) if beams else 3.0 * max(im.pixel_scale or 1.0 for im in images)


def image_centre(image: FitsImage) -> tuple[float, float]:
    """(ra, dec) in degrees of the centre of the image's pixel grid."""
    H, W = image.shape[-2:]
    ra, dec = pixel_to_sky(image.wcs, np.array([(W - 1) / 2]), np.array([(H - 1) / 2]))
    return float(ra[0]), float(dec[0])


def has_data(image: FitsImage, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """True where the sky positions fall on a finite pixel of the 2D ``image``."""
    x, y = sky_to_pixel(image.wcs, ra, dec)
    H, W = image.shape[-2:]
    ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
    inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    out = np.zeros(np.shape(ra), bool)
    k = np.flatnonzero(inside)
    if k.size:
        raw = np.asarray(image.data[iy[k].astype(np.intp), ix[k].astype(np.intp)])
        ok = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
        if image.blank is not None and raw.dtype.kind in "iu":
            ok &= raw != image.blank
        out[k] = ok
    return out


def keep_nearest_centre(positions: Sequence[tuple[np.ndarray, np.ndarray]],
                        images: Sequence[FitsImage], beam_arcsec: float) -> list[np.ndarray]:
    """Which sources of each image to keep (see the module docstring): ``positions[i]`` the
    (ra, dec) of image ``i``'s sources, ``beam_arcsec`` the largest beam FWHM."""
    centres = [image_centre(im) for im in images]
    keep, dist = [], []
    for i, (ra, dec) in enumerate(positions):
        d = np.stack([angular_separation(ra, dec, *c) for c in centres]) if len(ra) else \
            np.zeros((len(images), 0))
        for j, im in enumerate(images):
            if j != i and len(ra):
                d[j] = np.where(has_data(im, ra, dec), d[j], np.inf)
        own = d[i]
        others = np.delete(d, i, axis=0)
        nearest = np.min(others, axis=0) if others.size else np.full(own.shape, np.inf)
        keep.append((own < nearest) | ((own == nearest) & (i < _first_min(others, i))))
        dist.append(own)
    _drop_boundary_pairs(positions, keep, dist, 0.5 * beam_arcsec)
    return keep


def nearest_centre_image(ra: np.ndarray, dec: np.ndarray, images: Sequence[FitsImage], *,
                         data_only: bool = True) -> np.ndarray:
    """For each sky position (degrees), the index of the image whose centre is nearest among
    the images with data there (ties: the first image, as :func:`keep_nearest_centre`); -1
    where no image has data or the position is not finite.  ``data_only=False``: a finite
    position on no image's data goes to the nearest centre instead (a catalogue's row off
    every image is still one row, of one image)."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    out = np.full(ra.shape, -1, np.int64)
    finite = np.isfinite(ra) & np.isfinite(dec)
    if not finite.any():
        return out
    r, d = ra[finite], dec[finite]
    centres = [image_centre(im) for im in images]
    best = nearest_centre(r, d, centres, [has_data(im, r, d) for im in images])
    if not data_only:
        none = best < 0
        plain = np.stack([angular_separation(r[none], d[none], *c) for c in centres])
        best[none] = np.argmin(plain, axis=0)
    out[finite] = best
    return out


def nearest_centre(ra: np.ndarray, dec: np.ndarray, centres: Sequence[tuple[float, float]],
                   has: Sequence[np.ndarray]) -> np.ndarray:
    """The mosaic's rule at each sky position (degrees): the index of the nearest of the
    images' ``centres`` among those whose ``has[i]`` (data at the position) is True (ties:
    the first), -1 where none has."""
    dist = np.stack([np.where(h, angular_separation(ra, dec, *c), np.inf)
                     for c, h in zip(centres, has)])
    best = np.argmin(dist, axis=0)
    return np.where(np.isfinite(np.min(dist, axis=0)), best, -1)


def split_catalogue(t: Any, images: Sequence[FitsImage], what: str, *,
                    data_only: bool = True) -> tuple[list[Any], int]:
    """The rows of catalogue ``t`` that belong to each of several images
    (:func:`nearest_centre_image`), and how many rows belong to none.  Several images
    share one sky, not one pixel grid: CatalogueError (naming ``what``) for a catalogue
    without ``ra`` and ``dec``."""
    ra, dec = column_values(t, "ra", what), column_values(t, "dec", what)
    if ra is None or dec is None:
        raise CatalogueError(f"{what}: several images are matched on the sky, so it needs "
                             f"'ra' and 'dec' columns (deg), not one image's pixels; it has "
                             f"{t.colnames}")
    owner = nearest_centre_image(ra, dec, images, data_only=data_only)
    return [t[owner == i] for i in range(len(images))], int(np.count_nonzero(owner < 0))


def with_image_column(t: Any, name: str, width: int, index: int | None = None) -> Any:
    """A copy of table ``t`` (no metadata) with an ``image`` column holding ``name``
    (strings of ``width`` characters), at column ``index`` (default: last)."""
    from astropy.table import Table

    p = Table(t, copy=True)
    p.meta = {}
    p.add_column(np.full(len(p), name, dtype=f"U{width}"), name="image", index=index)
    return p


def _first_min(others: np.ndarray, i: int) -> np.ndarray:
    """The image index of the nearest other centre (for ties with image ``i``)."""
    if not others.size:
        return np.full(others.shape[1:], np.iinfo(np.int64).max)
    j = np.argmin(others, axis=0)
    return np.where(j >= i, j + 1, j)


def _drop_boundary_pairs(positions, keep, dist, radius_arcsec: float) -> None:
    """Of two kept sources of different images closer than ``radius_arcsec``, drop the one
    farther from its own image's centre (one source seen on both sides of the boundary)."""
    from scipy.spatial import cKDTree

    rows = [(i, k) for i, m in enumerate(keep) for k in np.flatnonzero(m)]
    if len(rows) < 2 or radius_arcsec <= 0:
        return
    xyz = unit_vectors(np.array([positions[i][0][k] for i, k in rows]),
                       np.array([positions[i][1][k] for i, k in rows]))
    for a, b in sorted(cKDTree(xyz).query_pairs(sky_chord(radius_arcsec))):
        (ia, ka), (ib, kb) = rows[a], rows[b]
        if ia == ib or not (keep[ia][ka] and keep[ib][kb]):
            continue
        if dist[ia][ka] <= dist[ib][kb]:
            keep[ib][kb] = False
        else:
            keep[ia][ka] = False


def merge_tables(tables: Sequence[Any], keep: Sequence[np.ndarray], names: Sequence[str]) -> Any:
    """One catalogue of the kept rows of each image's ``tables`` (an ``image`` column after
    ``id``), sorted by decreasing flux with ids 1..N; the images' own metadata listed in
    ``meta["images"]``."""
    from astropy.table import vstack

    width = max(len(n) for n in names)
    parts = [with_image_column(t[np.asarray(k, bool)], name, width, index=1)
             for t, k, name in zip(tables, keep, names)]
    merged = vstack(parts, join_type="outer", metadata_conflicts="silent")
    flux = np.ma.filled(np.asarray(merged["flux"], np.float64), np.nan) if len(merged) else []
    order = np.argsort(-np.nan_to_num(np.asarray(flux, np.float64), nan=-np.inf), kind="stable")
    merged = merged[order]
    merged["id"] = np.arange(1, len(merged) + 1, dtype=np.int64)
    if "blend_group" in merged.colnames:  # each image's blends numbered apart
        groups = np.ma.filled(np.asarray(merged["blend_group"]), 0).astype(np.int64)
        images = np.asarray(merged["image"])
        pair: dict = {}   # (image, its group) -> 1, 2, ... from the brightest source
        merged["blend_group"] = np.array(
            [pair.setdefault((images[k], g), len(pair) + 1) if g else 0
             for k, g in enumerate(groups)], np.int64)
    if "island_id" in merged.colnames:  # each image's islands numbered apart
        isl = np.ma.filled(np.asarray(merged["island_id"]), 0).astype(np.int64)
        images = np.asarray(merged["image"])
        seen: dict = {}
        merged["island_id"] = np.array([seen.setdefault((images[k], g), len(seen) + 1)
                                        for k, g in enumerate(isl)], np.int64)
    if "source_id" in merged.colnames:  # grouped again over the images, as each was
        settings = tables[0].meta.get("sources", {})
        merged = with_sources(merged, settings.get("group_tol", GROUP_TOL),
                              settings.get("thresh_isl", THRESH_ISL))
    first = tables[0].meta
    meta = {k: v for k, v in first.items() if k not in _PER_IMAGE}
    frames = {str(t.meta.get("radec_frame")) for t in tables}
    meta["radec_frame"] = frames.pop() if len(frames) == 1 else (
        "per image (see images): ICRS or an image's equatorial J2000")
    meta["images"] = [{**{k: t.meta.get(k) for k in _PER_IMAGE if k in t.meta},
                       "n_detected": len(t), "n_kept": int(np.count_nonzero(k))}
                      for t, k in zip(tables, keep)]
    meta["mosaic"] = RULE
    merged.meta = meta
    return merged


def check_images(images: Sequence[FitsImage]) -> None:
    """Several images can be merged when each is 2D with a celestial WCS and no two are the
    same file; ImageError naming the first that is not."""
    seen: dict[str, str] = {}
    for im in images:
        if im.ndim != 2:
            raise ImageError(f"{im.path}: several images are merged as 2D images; this one has "
                             f"shape {im.shape} (--plane N takes one plane of a cube)")
        if im.wcs is None:
            raise ImageError(f"{im.path}: merging several images needs each image's celestial "
                             "WCS; this one has none")
        key = os.path.realpath(im.path)
        if key in seen:
            raise ImageError(f"{im.path}: given twice (also as {seen[key]})")
        seen[key] = im.path
