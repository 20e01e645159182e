"""Truth catalogues for ``val``: read, placed on an image, and merged over several images.

:func:`load_truth` reads a truth catalogue (any format of :mod:`.catalogue`, SDC1 text
included) and computes what it lacks: pixel or sky positions through the image WCS and,
without an ``snr`` column, the true peak SNR from the flux, size and local noise.
:func:`merge_truths` joins the parts of one catalogue placed on several images (each row on
one image, :func:`.mosaic.split_catalogue`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .catalogue import (
    SDC1_COLUMNS,
    CatalogueError,
    column_values,
    find_column,
    read_catalogue,
    sdc1_classes,
    warn_unitless_sizes,
)
from .fits_image import FitsImage
from .line_truth import place_lines
from .mosaic import with_image_column
from .noise import NoiseMap
from .placement import place_catalogue

__all__ = ["Truth", "load_truth", "merge_truths", "sdc1_columns", "truth_ids",
           "seen_through_beam"]


@dataclass(frozen=True)
class Truth:
    """A truth catalogue in the image frame: ``x, y`` pixels, ``ra, dec`` (None without a
    WCS), ``flux`` (Jy), ``snr``, sizes ``bmaj, bmin`` (arcsec, beam-convolved; None if
    absent), ``pa`` (deg or None), ``table`` (the rows kept: inside the image, on finite
    pixels), ``sdc1`` (SDC1 columns when the catalogue could give them), ``snr_from``
    (where ``snr`` comes from, for the report) and, over several images, ``image`` (each
    row's image index: ``x, y`` are that image's pixels). In a cube (:mod:`.line_truth`):
    ``z`` the line's channel, ``w20`` its width in channels (NaN where unknown) and
    ``flux`` its line flux (Jy Hz)."""

    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray | None
    dec: np.ndarray | None
    flux: np.ndarray
    snr: np.ndarray
    bmaj: np.ndarray | None
    bmin: np.ndarray | None
    pa: np.ndarray | None
    table: Any
    sdc1: dict[str, np.ndarray] | None
    snr_from: str = "the catalogue's snr column"
    image: np.ndarray | None = None
    z: np.ndarray | None = None
    w20: np.ndarray | None = None


def load_truth(path: str | os.PathLike | Any, image: FitsImage, noise: NoiseMap, *,
               name: str | None = None) -> Truth:
    """Read a truth catalogue (a file, or a table already read, called ``name`` in
    messages) and put it in the frame of ``image``: positions on both grids, the rows on
    the image's finite pixels, beam-convolved sizes, SNR from the local ``noise`` when the
    catalogue has none.  CatalogueError names any missing column."""
    table_given = hasattr(path, "colnames")
    t = path if table_given else read_catalogue(path)
    what = f"truth catalogue {name or ('(a table)' if table_given else os.fspath(path))}"
    cube = image.ndim == 3
    x, y, ra, dec, flux = place_catalogue(t, image, what, need_flux=not cube)
    H, W = image.shape[-2:]
    sdc1_like = "b_maj" in [c.lower() for c in t.colnames]
    bmaj, bmin, pa = (column_values(t, c, what) for c in ("bmaj", "bmin", "pa"))
    if bmaj is not None:  # the major axis tells (one warning, not one per axis)
        warn_unitless_sizes(t[find_column(t, "bmaj")], bmaj, what)
    beam = image.beam.bmaj if image.beam is not None else None
    if bmaj is not None and bmin is not None and beam is not None:
        if sdc1_like:  # SDC1 sizes are intrinsic: add the restoring beam
            bmaj, bmin = np.hypot(bmaj, beam), np.hypot(bmin, image.beam.bmin)
        else:
            bmaj, bmin = np.maximum(bmaj, beam), np.maximum(bmin, image.beam.bmin)
    z = w20 = None
    placed = np.isfinite(x) & np.isfinite(y)  # a row without a position cannot be matched
    if cube:
        lines = place_lines(t, image, noise, x, y, what, bmaj, bmin)
        z, w20, flux = lines.z, lines.w20, lines.line_flux
        placed &= np.isfinite(z)
    ix, iy = (np.floor(np.where(placed, v, -1.0) + 0.5).astype(np.int64) for v in (x, y))
    inside = placed & (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    if cube:
        iz = np.floor(np.where(placed, z, -1.0) + 0.5).astype(np.int64)
        inside &= (iz >= 0) & (iz < image.shape[0])
    ok = inside.copy()
    if inside.any():
        at = (iy[inside], ix[inside]) if not cube else (iz[inside], iy[inside], ix[inside])
        ok[inside] = np.isfinite(image.read(at))
    snr = lines.snr if cube else column_values(t, "snr", what)
    snr_from = lines.snr_from if cube else "the catalogue's snr column"
    if snr is None and cube:
        raise CatalogueError(f"{what}: the true lines' SNR cannot be known: give an snr "
                             "column, or line_flux (Jy Hz) with w50 or w20")
    if snr is None:
        rms = noise.at(y, x) * image.unit_scale
        if bmaj is not None and bmin is not None and beam is not None:
            peak = flux * (image.beam.bmaj * image.beam.bmin) / (bmaj * bmin)
            snr_from = "flux, sizes and the local noise"
        else:
            peak = flux  # point sources: peak (Jy/beam) = flux (Jy)
            snr_from = ("flux and the local noise, as point sources (no sizes"
                        f"{'' if beam is not None else ' and no beam'}: extended ones too high)")
        snr = peak / rms
    sdc1 = None
    names = {c.lower(): c for c in t.colnames}
    if not cube and all(c in names for c in SDC1_COLUMNS):  # SDC1 scores continuum images
        sdc1 = {c: np.asarray(t[names[c]], np.float64)[ok] for c in SDC1_COLUMNS}
    elif not cube and ra is not None:
        zero = np.zeros(len(t))

        def first(*cols):
            return next((c for c in cols if c is not None), zero)[ok]

        sdc1 = sdc1_columns(np.arange(1, ok.sum() + 1), ra[ok], dec[ok], flux[ok],
                            first(column_values(t, "bmaj_deconv", what), bmaj),
                            first(column_values(t, "bmin_deconv", what), bmin),
                            first(pa), cls=sdc1_classes(t)[ok])

    def sel(v):
        return None if v is None else v[ok]

    return Truth(x=x[ok], y=y[ok], ra=sel(ra), dec=sel(dec), flux=flux[ok], snr=snr[ok],
                 bmaj=sel(bmaj), bmin=sel(bmin), pa=sel(pa), table=t[ok], sdc1=sdc1,
                 snr_from=snr_from, z=sel(z), w20=sel(w20))


def seen_through_beam(tr: Truth, response: np.ndarray, pb_min: float | None = None) -> Truth:
    """A truth of true fluxes on an image that is not primary-beam corrected, with the
    beam's ``response`` at each row: SNRs computed from the fluxes scaled by it (a
    catalogue's own ``snr`` column is taken as the image's), the rows below ``pb_min`` (or
    where it is not known) left out, as the catalogue's (:mod:`.primary_beam`)."""
    response = np.asarray(response, np.float64)
    snr = tr.snr if tr.snr_from == "the catalogue's snr column" else tr.snr * response
    with np.errstate(invalid="ignore"):
        ok = response >= (pb_min or np.finfo(np.float64).tiny)
    sdc1 = None if tr.sdc1 is None else {k: np.asarray(v)[ok] for k, v in tr.sdc1.items()}
    arrays = {f: (None if getattr(tr, f) is None else np.asarray(getattr(tr, f))[ok])
              for f in ("x", "y", "ra", "dec", "flux", "bmaj", "bmin", "pa", "image", "z",
                        "w20")}
    return replace(tr, **arrays, snr=snr[ok], table=tr.table[ok], sdc1=sdc1)


def sdc1_columns(ids, ra, dec, flux, bmaj, bmin, pa, size: int = 2,
                 cls: int | np.ndarray = 3) -> dict:
    """SDC1 columns (core = centroid = the position, core_frac 0) from plain arrays;
    ``cls`` one class code or one per source."""
    n = len(ra)
    return {"id": np.asarray(ids, np.float64), "ra_core": np.asarray(ra), "dec_core": np.asarray(dec),
            "ra_cent": np.asarray(ra), "dec_cent": np.asarray(dec), "flux": np.asarray(flux),
            "core_frac": np.zeros(n), "b_maj": np.asarray(bmaj), "b_min": np.asarray(bmin),
            "pa": np.asarray(pa), "size": np.full(n, float(size)),
            "class": np.broadcast_to(np.asarray(cls, np.float64), (n,)).copy()}


def truth_ids(tr: Truth) -> np.ndarray:
    """The truth rows' ids: the catalogue's ``id`` column, else 1..N."""
    c = find_column(tr.table, "id")
    return np.asarray(tr.table[c]) if c else np.arange(1, len(tr.x) + 1)


def merge_truths(parts: Sequence[Truth], names: Sequence[str]) -> Truth:
    """One :class:`Truth` of the parts of a catalogue placed on several images (part ``i``
    on image ``i``, called ``names[i]``): rows in part order, ``image`` their image's
    index, the table with an ``image`` column; a quantity missing from one part (no
    sky, no sizes) is missing from all."""
    from astropy.table import vstack

    def joined(field: str) -> np.ndarray | None:
        values = [getattr(p, field) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    width = max(map(len, names))
    table = vstack([with_image_column(p.table, n, width) for p, n in zip(parts, names)],
                   join_type="exact", metadata_conflicts="silent")
    sdc1 = None
    if all(p.sdc1 is not None for p in parts):
        sdc1 = {k: np.concatenate([p.sdc1[k] for p in parts]) for k in parts[0].sdc1}
        if not any(find_column(p.table, "id") for p in parts):  # 1..N per part: renumbered
            sdc1["id"] = np.arange(1, len(sdc1["id"]) + 1, dtype=np.float64)
    froms = list(dict.fromkeys(p.snr_from for p in parts))
    return Truth(x=joined("x"), y=joined("y"), ra=joined("ra"), dec=joined("dec"),
                 flux=joined("flux"), snr=joined("snr"), bmaj=joined("bmaj"),
                 bmin=joined("bmin"), pa=joined("pa"), table=table, sdc1=sdc1,
                 snr_from="; ".join(froms),
                 image=np.concatenate([np.full(len(p.x), i, np.int64)
                                       for i, p in enumerate(parts)]))
