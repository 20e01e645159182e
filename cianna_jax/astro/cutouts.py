"""Cutouts of a catalogue's sources: a gallery to look at, FITS stamps to keep.

Checking a catalogue means looking at its sources: the brightest (artefacts around them),
the flagged ones (edges, blends, split boxes, multi-Gaussian sources), the resolved ones,
a random few. :func:`select_rows` picks them, :func:`cut_stamps` reads a square window of
the image around each (read from the memory map, a window at a time), :func:`write_stamps`
writes each as a FITS file with its own WCS and the image's beam and unit, and
:func:`.plots.gallery_plot` draws them side by side with every catalogue Gaussian's FWHM
ellipse.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from .catalogue import CatalogueError, column_values
from .fits_image import FitsImage, ImageError
from .measure import FWHM
from .sky import beam_in_pixels, pa_to_pixel_angle, sky_to_pixel

__all__ = ["SELECTIONS", "Stamp", "select_rows", "catalogue_pixels", "cut_stamps",
           "write_stamps", "beam_ellipse", "STAMP_BEAMS", "MAX_STAMP"]

#: which sources a gallery shows
SELECTIONS = ("brightest", "faintest", "flagged", "resolved", "multiple", "near_bright",
              "random")
#: a stamp's side, in beam FWHMs (at least 2.5 times the source's major axis)
STAMP_BEAMS = 10.0
#: the largest stamp side, pixels
MAX_STAMP = 512
_FLAGS = ("edge", "blended", "deblended")


@dataclass(frozen=True)
class Stamp:
    """One source's window: ``row`` (of the catalogue), ``data`` [h, w] (the image's unit,
    NaN where blank or off the image), its first pixel ``(y0, x0)`` in the image (negative
    at its edge), and the source's pixel position ``(x, y)``."""

    row: int
    data: np.ndarray
    y0: int
    x0: int
    x: float
    y: float


def select_rows(table: Any, how: str = "brightest", n: int = 25, *,
                ids: list[int] | None = None, seed: int = 0, what: str = "catalogue"
                ) -> np.ndarray:
    """Row indices of the sources to show: the ``n`` brightest or faintest (by ``flux``),
    the flagged ones (``edge``, ``blended``, ``deblended``, or ``s_code`` M: several
    Gaussians), the ``resolved`` ones, those of ``s_code`` M (``multiple``), ``n`` at random
    (``seed``), brightest first; those flagged ``near_bright`` (where artefacts are), least
    reliable first when the catalogue has a ``reliability`` column; or the rows of the
    catalogue ``ids`` in their order."""
    if ids is not None:
        if "id" not in table.colnames:
            raise CatalogueError(f"{what}: no id column to pick ids from")
        where = {int(v): k for k, v in enumerate(np.asarray(table["id"]))}
        missing = [i for i in ids if int(i) not in where]
        if missing:
            raise ValueError(f"ids: not in {what}: {missing}")
        return np.array([where[int(i)] for i in ids], np.int64)
    if how not in SELECTIONS:
        raise ValueError(f"select: one of {', '.join(SELECTIONS)}; received {how!r}")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n: the number of sources, an integer >= 1; received {n!r}")
    flux = column_values(table, "flux", what)
    flux = np.zeros(len(table)) if flux is None else np.nan_to_num(flux, nan=-np.inf)
    order = np.argsort(-flux, kind="stable")
    codes = (np.asarray(table["s_code"]).astype(str) if "s_code" in table.colnames
             else np.full(len(table), ""))
    if how == "brightest":
        return order[:n]
    if how == "faintest":
        return order[::-1][:n]
    if how == "random":
        pick = np.random.default_rng(seed).choice(len(table), min(n, len(table)), replace=False)
        return pick[np.argsort(-flux[pick], kind="stable")]
    if how == "resolved":
        if "resolved" not in table.colnames:
            raise CatalogueError(f"{what}: no resolved column (a catalogue of this package's "
                                 "with a beam has one)")
        keep = np.asarray(table["resolved"], bool)
    elif how == "multiple":
        keep = codes == "M"
    elif how == "near_bright":
        if "near_bright" not in table.colnames:
            raise CatalogueError(f"{what}: no near_bright column (a 2D image's catalogue of "
                                 "this package's has one)")
        keep = np.asarray(table["near_bright"], bool)
        if "reliability" in table.colnames:  # the likeliest artefacts first
            rel = np.nan_to_num(np.asarray(table["reliability"], np.float64), nan=2.0)
            order = np.lexsort((-flux, rel))
    else:
        keep = codes == "M"
        for name in _FLAGS:
            if name in table.colnames:
                keep |= np.asarray(table[name], bool)
    return order[keep[order]][:n]


def catalogue_pixels(table: Any, image: FitsImage, what: str = "catalogue"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every row's pixel position on ``image`` (through its WCS from ``ra``/``dec``, else the
    catalogue's ``x``/``y``) and FWHM ellipse in pixels: (x, y, major, minor, angle from +x
    towards +y in degrees); NaN sizes where the catalogue has none."""
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    if image.wcs is not None and ra is not None and dec is not None:
        x, y = sky_to_pixel(image.wcs, ra, dec)
    else:
        x, y = column_values(table, "x", what), column_values(table, "y", what)
        if x is None or y is None:
            raise CatalogueError(f"{what}: no ra/dec on a WCS image, nor x/y: no positions")
    n = len(table)
    scale = image.pixel_scale or 1.0
    bmaj = column_values(table, "bmaj", what)
    bmin = column_values(table, "bmin", what)
    pa = column_values(table, "pa", what)
    major = np.full(n, np.nan) if bmaj is None else bmaj / scale
    minor = major if bmin is None else bmin / scale
    if pa is None:
        angle = np.zeros(n)
    elif image.wcs is not None:
        angle = np.degrees(pa_to_pixel_angle(image.wcs, x, y, pa))
    else:  # no WCS: pa from +y towards -x
        angle = np.asarray(pa, np.float64) + 90.0
    return np.asarray(x, np.float64), np.asarray(y, np.float64), major, minor, angle


def beam_ellipse(image: FitsImage) -> tuple[float, float, float] | None:
    """The restoring beam's FWHM (major, minor) in pixels and its angle from +x towards +y
    in degrees, or None without a beam or pixel scale."""
    b = beam_in_pixels(image)
    if b is None:
        return None
    return b[0] * FWHM, b[1] * FWHM, math.degrees(b[2])


def cut_stamps(image: FitsImage, table: Any, rows: np.ndarray, *,
               size_arcsec: float | None = None, what: str = "catalogue") -> list[Stamp]:
    """A square window of ``image`` around each of the catalogue's ``rows``: ``size_arcsec``
    wide, or :data:`STAMP_BEAMS` beam FWHMs and at least 2.5 times the source's major axis
    (at most :data:`MAX_STAMP` pixels), centred on the source's pixel, NaN beyond the
    image's edges. Sources off the image are refused by name."""
    if image.ndim != 2:
        raise ImageError(f"{image.path}: cutouts are cut from 2D images (a cube's lines: "
                         "predict --cubelets)")
    x, y, major, _, _ = catalogue_pixels(table, image, what)
    H, W = image.shape
    scale = image.pixel_scale
    fwhm = image.beam_fwhm_pixels()
    beam = float(fwhm[0]) if fwhm is not None else 3.0
    out = []
    for r in np.asarray(rows, np.int64):
        if not (np.isfinite(x[r]) and np.isfinite(y[r]) and -0.5 <= x[r] < W - 0.5
                and -0.5 <= y[r] < H - 0.5):
            ident = table["id"][r] if "id" in table.colnames else r + 1
            raise ValueError(f"{what}: source {ident} lies off {image.path}")
        if size_arcsec is not None:
            if not scale:
                raise ImageError(f"{image.path}: no pixel scale for size_arcsec")
            side = size_arcsec / scale
        else:
            side = max(STAMP_BEAMS * beam, 2.5 * np.nan_to_num(major[r]))
        half = int(min(math.ceil(side / 2), MAX_STAMP // 2))
        cx, cy = int(math.floor(x[r] + 0.5)), int(math.floor(y[r] + 0.5))
        y0, x0 = cy - half, cx - half  # the square window, centred on the source
        data = np.full((2 * half + 1, 2 * half + 1), np.nan, np.float32)
        ya, yb, xa, xb = max(y0, 0), min(cy + half + 1, H), max(x0, 0), min(cx + half + 1, W)
        data[ya - y0:yb - y0, xa - x0:xb - x0] = (image.read((slice(ya, yb), slice(xa, xb)))
                                                  * np.float32(image.unit_scale))
        out.append(Stamp(int(r), data, y0, x0, float(x[r]), float(y[r])))
    return out


def write_stamps(image: FitsImage, table: Any, stamps: list[Stamp],
                 folder: str | os.PathLike) -> list[str]:
    """Each stamp as ``source_<id>.fits`` in ``folder`` (created): its pixels in the
    image's unit (Jy/beam), the image's WCS moved to the window, its beam; the source's id,
    flux and position in the header. Returns the file names."""
    from astropy.io import fits

    os.makedirs(folder, exist_ok=True)
    flux = column_values(table, "flux")
    names = []
    for s in stamps:
        if image.wcs is not None:  # the image's WCS, its reference pixel moved to the window
            w = image.wcs.deepcopy()
            w.wcs.crpix = np.asarray(w.wcs.crpix) - np.array([s.x0, s.y0], np.float64)
            header = w.to_header()
        else:
            header = fits.Header()
        header["BUNIT"] = "Jy/beam" if image.per != "pixel" else "Jy/pixel"
        if image.beam is not None:
            header["BMAJ"], header["BMIN"] = image.beam.bmaj / 3600, image.beam.bmin / 3600
            header["BPA"] = image.beam.bpa
        ident = int(table["id"][s.row]) if "id" in table.colnames else s.row + 1
        header["SRC_ID"] = (ident, "the catalogue's id")
        header["SRC_X"] = (s.x - s.x0, "source x in this stamp (0-based pixels)")
        header["SRC_Y"] = (s.y - s.y0, "source y in this stamp (0-based pixels)")
        if flux is not None:
            header["SRC_FLUX"] = (float(flux[s.row]), "catalogue flux (Jy)")
        header["ORIGIN"] = f"cianna_jax cutout of {os.path.basename(image.path)}"
        name = f"source_{ident}.fits"
        with atomic_write(os.path.join(folder, name)) as fh:
            fits.PrimaryHDU(s.data, header).writeto(fh)
        names.append(name)
    return names
