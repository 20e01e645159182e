"""Diffuse emission: what the compact-source pass leaves, found again at coarser resolution.

A detector trained on compact sources finds an extended, faint structure (a radio halo or
relic, an old lobe) in pieces or not at all: each beam holds too little of it. Smoothed to
``k`` times the beam, a structure of many beams gathers its flux into a few beams while the
noise per beam stays that of the image's (the surface brightness sensitivity grows as the
beam's area). Here the image minus the compact pass's fitted Gaussians (the residual, as
PyBDSF's wavelet module works on its residual) is convolved to ``k`` times the beam and
averaged over ``k`` x ``k`` pixels, so that the beam keeps its size in pixels and the same
detector applies; the sources found there are the diffuse components, with their fluxes,
sizes and positions measured at that resolution. Components of several scales within each
other's half-power ellipses are one structure, kept at the scale where its SNR is highest
(the scale that matches its size, as a matched filter).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .beam_matching import gaussian_fft_kernel
from .fits_image import FitsImage, ImageError, continuum_frequency, open_image
from .residual import draw_gaussians

__all__ = ["coarse_image", "DiffuseFinding", "find_diffuse"]

def _check_coarsenable(image: FitsImage) -> None:
    if image.ndim != 2 or image.wcs is None or image.beam is None or not image.pixel_scale:
        raise ImageError(f"{image.path}: coarser scales need a 2D image with a celestial WCS "
                         "and a beam")


def coarse_image(image: FitsImage, factor: int, path: str | os.PathLike, *,
                 subtract: Any = None) -> str:
    """Write to ``path`` the 2D ``image`` (minus the Gaussians of the measurements
    ``subtract``) convolved to ``factor`` times its beam (Jy per that beam) and sampled at
    the centre of each ``factor`` x ``factor`` block of pixels: the beam's size in pixels
    kept, its solid angle ``factor^2`` times larger (the convolved image holds no finer
    detail than that sampling); blank where under half the convolved data is finite."""
    from ._deps import require

    fits = require("astropy.io.fits")
    k = as_int(factor, "factor", minimum=2)
    _check_coarsenable(image)
    data = image.read().astype(np.float64)
    if subtract is not None:
        data -= draw_gaussians(data.shape, subtract)
    finite = np.isfinite(data)
    data[~finite] = 0.0
    H, W = data.shape
    grow = math.sqrt(k * k - 1.0)
    px = image.pixel_scale
    kern = np.fft.rfft2(gaussian_fft_kernel((H, W), (grow * image.beam.bmaj / px,
                                                     grow * image.beam.bmin / px),
                                            image.beam.bpa, shift=(k - 1) / 2.0))
    smooth = np.fft.irfft2(np.fft.rfft2(data) * kern, s=(H, W)) * (k * k)
    cover = np.fft.irfft2(np.fft.rfft2(finite.astype(np.float64)) * kern, s=(H, W))
    h, w = H // k, W // k

    def blocks(a: np.ndarray) -> np.ndarray:  # each block's centre (shifted onto k i)
        return a[:h * k:k, :w * k:k]

    # the image's unit per its beam -> per the coarse beam: the convolved flux per beam
    # (data with a unit-sum kernel) times the beams' area ratio, where data cover the block
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(blocks(cover) >= 0.5, blocks(smooth) / np.maximum(blocks(cover), 1e-9),
                       np.nan)
    wcs = image.wcs.slice((slice(None, None, k), slice(None, None, k)))
    header = wcs.to_header()
    header["BMAJ"] = k * image.beam.bmaj / 3600.0
    header["BMIN"] = k * image.beam.bmin / 3600.0
    header["BPA"] = image.beam.bpa
    header["BUNIT"] = image.bunit or "JY/BEAM"
    for key in ("RESTFRQ", "RESTFREQ", "FREQ", "OBSFREQ"):
        if key in image.header:
            header[key] = image.header[key]
    freq = continuum_frequency(image.header)
    if freq is not None and "RESTFRQ" not in header:
        header["RESTFRQ"] = freq
    header["HISTORY"] = (f"cianna-jax: {k}x the beam and the pixels of "
                         f"{os.path.basename(image.path)}")
    fits.PrimaryHDU(out.astype(np.float32), header).writeto(path, overwrite=True)
    return os.fspath(path)


@dataclass(frozen=True)
class DiffuseFinding:
    """The compact pass (``compact``: :func:`.pipeline.find_sources`' result), the diffuse
    components found at the coarser scales (``table``: with a ``scale`` column, the factor
    of the beam) and the merged catalogue of both (``merged``, ``scale`` 1 for the compact
    sources)."""

    compact: Any
    table: Any
    merged: Any
    scales: tuple[int, ...]


def find_diffuse(image: str | os.PathLike, model: Any, *, scales: Sequence[int] = (4,),
                 min_snr: float = 5.0, hdu: int | str | None = None, progress: bool = False,
                 **find_kw: Any) -> DiffuseFinding:
    """The compact sources of ``image`` with ``model``, then the diffuse components of its
    residual at each factor of ``scales`` (from 2): those of peak SNR >= ``min_snr`` at their
    scale, a structure seen at several scales kept once, at the scale of its highest SNR
    (the one that matches its size).
    ``near_compact``: a compact source lies within the component's half-power ellipse (the
    component may hold flux the compact pass measured short around it, or a large structure
    around a compact one). Keywords as :func:`.pipeline.find_sources`."""
    from ._deps import require
    from .model_card import LoadedModel, load_model
    from .pipeline import find_sources

    table_mod = require("astropy.table")
    ks = sorted({as_int(s, "scales", minimum=2) for s in scales})
    if not ks:
        raise ValueError("scales: at least one factor of 2 or more")
    cut = as_bounded_float(min_snr, "min_snr")
    with open_image(image, hdu) as img:  # refused before the work
        _check_coarsenable(img)
    mdl = model if isinstance(model, LoadedModel) else load_model(model)
    compact = find_sources(image, mdl, hdu=hdu, progress=progress, **find_kw)
    parts = []
    with open_image(image, hdu) as img, tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            path = coarse_image(img, k, os.path.join(tmp, f"scale{k}.fits"),
                                subtract=compact.measurements)
            found = find_sources(path, mdl, progress=progress, **find_kw).table
            found["scale"] = np.full(len(found), k, np.int16)
            for c, shift in (("x", 1), ("y", 1), ("x_err", 0), ("y_err", 0)):
                if c in found.colnames:  # on the image's pixel grid (a block's centre)
                    found[c][:] = k * np.asarray(found[c], np.float64) + shift * (k - 1) / 2
            parts.append(found[np.asarray(found["snr"], np.float64) >= cut])
    diffuse = table_mod.vstack(parts, metadata_conflicts="silent")
    diffuse = diffuse[_best_scale(diffuse)]
    diffuse["near_compact"] = _contains_any(diffuse, compact.table)
    compact_t = compact.table.copy()
    compact_t["scale"] = np.ones(len(compact_t), np.int16)
    compact_t["near_compact"] = np.zeros(len(compact_t), bool)
    merged = table_mod.vstack([compact_t, diffuse], metadata_conflicts="silent")
    merged.meta = dict(compact.table.meta)
    merged.meta["scales"] = [1] + ks
    if "id" in merged.colnames:
        merged["id"] = np.arange(1, len(merged) + 1)
    if "id" in diffuse.colnames:
        diffuse["id"] = np.arange(1, len(diffuse) + 1)
    diffuse.meta = dict(compact.table.meta, scales=ks, min_snr=float(min_snr))
    return DiffuseFinding(compact=compact, table=diffuse, merged=merged, scales=tuple(ks))


def _best_scale(t: Any) -> np.ndarray:
    """Rows to keep of components found at several scales: by SNR, highest first (the
    scale that matches a structure's size sees it best), each kept unless its centre lies
    within the half-power ellipse of one kept before, or that one's within its own."""
    if not len(t):
        return np.zeros(0, np.int64)
    overlap = _in_ellipses(t, t)
    overlap |= overlap.T
    kept: list[int] = []
    for i in np.argsort(-np.asarray(t["snr"], np.float64), kind="stable"):
        if not any(overlap[i, j] for j in kept):
            kept.append(int(i))
    return np.sort(np.asarray(kept, np.int64))


def _contains_any(t: Any, ref: Any) -> np.ndarray:
    """Rows of ``t`` whose half-power ellipse holds the centre of a row of ``ref``."""
    if not len(t) or not len(ref):
        return np.zeros(len(t), bool)
    return np.any(_in_ellipses(ref, t), axis=0)


def _in_ellipses(t: Any, ref: Any) -> np.ndarray:
    """``[len(t), len(ref)]``: whether each row of ``t`` has its centre within the
    half-power ellipse (FWHM / 2 along its axes) of each row of ``ref`` (RA, Dec, bmaj,
    bmin, pa in arcsec and degrees)."""
    from .crossmatch import tangent_plane

    ra, dec = np.asarray(t["ra"], np.float64), np.asarray(t["dec"], np.float64)
    rra, rdec = np.asarray(ref["ra"], np.float64), np.asarray(ref["dec"], np.float64)
    x, y, _, c = tangent_plane(np.concatenate([ra, rra]), np.concatenate([dec, rdec]))
    tx, ty, rx, ry = x[:ra.size], y[:ra.size], x[ra.size:], y[ra.size:]
    a = np.asarray(ref["bmaj"], np.float64) / 2.0
    b = np.asarray(ref["bmin"], np.float64) / 2.0
    pa = np.radians(np.asarray(ref["pa"], np.float64))
    dx, dy = tx[:, None] - rx[None], ty[:, None] - ry[None]  # east, north (arcsec)
    along = dx * np.sin(pa)[None] + dy * np.cos(pa)[None]
    across = dx * np.cos(pa)[None] - dy * np.sin(pa)[None]
    return (along / a[None]) ** 2 + (across / b[None]) ** 2 <= 1.0
