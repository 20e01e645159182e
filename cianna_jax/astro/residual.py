"""Images written beside a catalogue: residual, model, rms and background.

A residual image shows what the catalogue leaves out: emission the detector missed, the
structure of extended sources beyond one Gaussian, fits gone wrong (PyBDSF users look at
its ``gaus_resid`` image for the same).  Each fitted source (``fit_ok``) is drawn out to
``nsigma`` sigmas of its major axis; box-measured sources (no fit) are left in the residual
and out of the model.  The rms and background maps are the noise map the detections were
normalised and measured with (:mod:`.noise`), at every pixel (PyBDSF's ``rms`` and ``mean``
images).  Every image is written a strip of rows at a time (memory stays bounded on
survey-sized images) as 2D float32 FITS in the image's unit, with its celestial WCS, beam
and unit.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from ._deps import require
from .fits_image import FitsImage, ImageError
from .measure import Measurements
from .noise import NoiseMap

__all__ = ["draw_gaussians", "write_residual", "write_noise_map", "write_injected",
           "residual_view", "image_frequency", "image_header"]

_KINDS = ("residual", "model")
_WHAT = {"residual": "image minus the fitted Gaussians", "model": "the fitted Gaussians",
         "rms": "local noise rms", "background": "local background",
         "injected": "image with injected sources",
         "difference": "the epoch minus the reference, at their common beam",
         "alpha": "spectral-index map"}


def _prepared(m: Measurements, nsigma: float):
    """Fitted sources only: centres, inverse covariances, amplitudes and stamp half-sizes,
    the first row their stamp covers."""
    ok = np.asarray(m.fit_ok, bool) & np.isfinite(m.peak) & np.isfinite(m.sigma_major)
    x, y, amp = m.x[ok], m.y[ok], m.peak[ok]
    smaj, smin, th = m.sigma_major[ok], m.sigma_minor[ok], m.theta[ok]
    c, s = np.cos(th), np.sin(th)
    ia, ib = 1.0 / smaj**2, 1.0 / smin**2
    A, B, C = c * c * ia + s * s * ib, c * s * (ia - ib), s * s * ia + c * c * ib
    h = np.ceil(nsigma * smaj).astype(np.int64)
    top = np.floor(y + 0.5).astype(np.int64) - h
    return x, y, amp, A, B, C, h, top


def draw_gaussians(shape: tuple[int, int], m: Measurements, *, rows: slice | None = None,
                   nsigma: float = 5.0) -> np.ndarray:
    """The fitted Gaussians of ``m`` (image unit, 0-based pixel centres) drawn on the rows
    ``rows`` (default: all) of an image of ``shape`` (H, W); float64."""
    H, W = shape
    r0, r1 = (0, H) if rows is None else (rows.start or 0, H if rows.stop is None else rows.stop)
    out = np.zeros((r1 - r0, W))
    x, y, amp, A, B, C, h, top = _prepared(m, nsigma)
    for k in np.flatnonzero((top < r1) & (top + 2 * h + 1 > r0)):   # stamps on these rows
        yc, xc = int(np.floor(y[k] + 0.5)), int(np.floor(x[k] + 0.5))
        ya, yb = max(yc - h[k], r0), min(yc + h[k] + 1, r1)
        xa, xb = max(xc - h[k], 0), min(xc + h[k] + 1, W)
        if ya >= yb or xa >= xb:
            continue
        dy = np.arange(ya, yb)[:, None] - y[k]
        dx = np.arange(xa, xb)[None, :] - x[k]
        q = A[k] * dx * dx + 2.0 * B[k] * dx * dy + C[k] * dy * dy
        out[ya - r0:yb - r0, xa:xb] += amp[k] * np.exp(-0.5 * q)
    return out


_HZ = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}


def image_frequency(image: FitsImage) -> float | None:
    """The frequency (Hz) of a 2D image or of the cube plane taken as one, from a FREQ
    axis of its header (degenerate, as in SDC1's 4D images, or the plane's), else a FREQ
    keyword; None when the header gives none."""
    h = image.header
    for i in range(1, int(h.get("NAXIS", 0)) + 1):
        if str(h.get(f"CTYPE{i}", "")).upper().startswith("FREQ"):
            try:
                scale = _HZ.get(str(h.get(f"CUNIT{i}", "Hz")).strip().upper(), 1.0)
                pix = (image.plane or 0) + 1.0 - float(h.get(f"CRPIX{i}", 1.0))
                f = (float(h[f"CRVAL{i}"]) + pix * float(h.get(f"CDELT{i}", 0.0))) * scale
            except (KeyError, TypeError, ValueError):
                return None
            return f if np.isfinite(f) and f > 0 else None
    try:
        f = float(h["FREQ"]) if "FREQ" in h else None
    except (TypeError, ValueError):
        return None
    return f if f is not None and np.isfinite(f) and f > 0 else None


def image_header(image: FitsImage, kind: str) -> Any:
    """The header of a 2D image of ``kind`` (a key of the images this module writes, or
    "difference") made from ``image``: its sky axes, beam, unit, frequency and a HISTORY
    line."""
    return _header(image, kind)


def _header(image: FitsImage, kind: str):
    fits = require("astropy.io.fits")
    H, W = image.shape[-2:]
    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -32
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = W
    hdr["NAXIS2"] = H
    if image.wcs is not None:
        hdr.update(image.wcs.to_header())
    if image.beam is not None:
        hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = (image.beam.bmaj / 3600.0,
                                                image.beam.bmin / 3600.0, image.beam.bpa)
    if image.bunit:
        hdr["BUNIT"] = image.bunit
    freq = image_frequency(image)
    if freq is not None:  # PyBDSF, among others, refuses an image without one
        hdr["FREQ"] = (freq, "[Hz] frequency of the source image")
    for key in ("RESTFRQ", "RESTFREQ"):
        if key in image.header:
            hdr[key] = image.header[key]
    from .. import __version__

    hdr["HISTORY"] = f"cianna_jax {__version__}: {_WHAT[kind]} of {os.path.basename(image.path)}"
    return hdr


def _write_strips(image: FitsImage, path: str | os.PathLike, kind: str, band_fn,
                  rows: int) -> str:
    """Write the 2D float32 FITS image ``kind`` of ``image``'s shape to ``path``
    atomically, ``band_fn(band)`` giving the rows of each strip of ``rows`` rows."""
    if image.ndim != 2:
        raise ImageError(f"{image.path}: {kind} images are written for 2D images; this one has "
                         f"shape {image.shape}")
    H, W = image.shape
    p = os.fspath(path)
    step = max(1, int(rows))
    with atomic_write(p) as fh:
        fh.write(_header(image, kind).tostring().encode("ascii"))  # padded to 2880 bytes
        for r0 in range(0, H, step):
            fh.write(np.asarray(band_fn(slice(r0, min(r0 + step, H))), ">f4").tobytes())
        fh.write(b"\0" * (-(H * W * 4) % 2880))   # the data unit ends on a FITS block
    return p


def write_residual(image: FitsImage, m: Measurements, path: str | os.PathLike, *,
                   kind: str = "residual", nsigma: float = 5.0, rows: int = 1024) -> str:
    """Write the ``kind`` image ("residual": the image minus the fitted Gaussians of ``m``;
    "model": the Gaussians alone) of the 2D ``image`` to the FITS file ``path``, ``rows``
    rows at a time, atomically.  Returns the path."""
    if kind not in _KINDS:
        raise ValueError(f"kind: one of {_KINDS}; received {kind!r}")
    H, W = image.shape[-2:]

    def band(rows_: slice) -> np.ndarray:
        model = draw_gaussians((H, W), m, rows=rows_, nsigma=nsigma)
        if kind == "model":
            return model
        return image.read((rows_, slice(0, W))).astype(np.float64) - model

    return _write_strips(image, path, kind, band, rows)


def write_noise_map(image: FitsImage, noise: NoiseMap, path: str | os.PathLike, *,
                    which: str = "rms", rows: int = 1024) -> str:
    """Write the noise map ``which`` ("rms" or "background") of the 2D ``image`` at every
    pixel (NaN where the image has no data) to the FITS file ``path``, in the image's unit,
    ``rows`` rows at a time, atomically.  Returns the path."""
    if which not in ("rms", "background"):
        raise ValueError(f"which: 'rms' or 'background'; received {which!r}")
    W = image.shape[-1]

    def band(rows_: slice) -> np.ndarray:
        data = np.isfinite(image.read((rows_, slice(0, W))))  # blanks read as NaN
        return np.where(data, noise.window(rows_, slice(0, W), which), np.nan)

    return _write_strips(image, path, which, band, rows)


def write_injected(image: FitsImage, path: str | os.PathLike, *, rows: int = 1024) -> str:
    """Write an ``image`` with its injected sources (:meth:`.FitsImage.with_sources`) as
    read, to the FITS file ``path``, ``rows`` rows (a cube: one channel) at a time,
    atomically: what the detector saw in a round of source injection, for the eye or for
    another finder (a cube keeps its spectral axis, for a line finder such as SoFiA).
    Returns the path."""
    if image.added is None:
        raise ValueError(f"image: {image.path} has no injected sources (FitsImage.with_sources)")
    if image.ndim == 3:
        return _write_cube(image, path, "injected")
    W = image.shape[-1]
    return _write_strips(image, path, "injected", lambda r: image.read((r, slice(0, W))), rows)


_AXIS_KEY = re.compile(r"^(CTYPE|CRPIX|CDELT|CUNIT|CRVAL|CNAME)1$")


def _write_cube(image: FitsImage, path: str | os.PathLike, kind: str) -> str:
    """Write the cube ``image`` as read (float32, its celestial and spectral WCS, beam and
    unit) to ``path`` atomically, a channel at a time."""
    D, H, W = image.shape
    hdr = _header(image, kind)  # the sky's axes, beam, unit, frequency
    hdr["NAXIS"] = 3
    hdr.insert("NAXIS2", ("NAXIS3", D), after=True)
    hdr.remove("FREQ", ignore_missing=True)  # the channels carry their own
    if "WCSAXES" in hdr:
        hdr["WCSAXES"] = 3
    if image.spectral_wcs is not None:  # its one axis becomes the third
        for card in image.spectral_wcs.to_header().cards:
            key = _AXIS_KEY.sub(lambda m: m.group(1) + "3", card.keyword)
            if key.endswith("3") or key in ("SPECSYS", "RESTFRQ", "RESTWAV"):
                hdr[key] = (card.value, card.comment)
    p = os.fspath(path)
    with atomic_write(p) as fh:
        fh.write(hdr.tostring().encode("ascii"))
        for k in range(D):
            fh.write(np.asarray(image.read((slice(k, k + 1), slice(0, H), slice(0, W))),
                                ">f4").tobytes())
        fh.write(b"\0" * (-(D * H * W * 4) % 2880))
    return p


def residual_view(image: FitsImage, m: Measurements, step: int = 1, *, rows: int = 1024,
                  nsigma: float = 5.0) -> np.ndarray:
    """The residual of the 2D ``image`` (image minus the fitted Gaussians of ``m``) keeping
    every ``step``-th pixel of each axis, as a plot shows a large image; computed in strips
    of about ``rows`` rows (float32)."""
    if image.ndim != 2:
        raise ImageError(f"{image.path}: residual images are drawn for 2D images; this one "
                         f"has shape {image.shape}")
    H, W = image.shape
    step = max(1, int(step))
    band_rows = max(step, (max(1, int(rows)) // step) * step)   # strips start on kept rows
    out = []
    for r0 in range(0, H, band_rows):
        band = slice(r0, min(r0 + band_rows, H))
        model = draw_gaussians((H, W), m, rows=band, nsigma=nsigma)
        res = image.read((band, slice(0, W))).astype(np.float64) - model
        out.append(res[::step, ::step].astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, (W + step - 1) // step), np.float32)
