"""Forced photometry: the flux of a source of known position (and shape) in an image.

Where a catalogue has no source (an epoch at which a variable source was faint, or the
image of another survey), the flux at a known position is measured anyway: the source's
shape seen through the image's restoring beam, centred at the position, is fitted to the
background-subtracted pixels of a stamp of half-size 1.5 FWHM of that shape by its
amplitude alone (least squares). For an unresolved source the shape is the beam and the
amplitude in Jy/beam is the flux in Jy; for a resolved one (its intrinsic Gaussian, the
catalogue's deconvolved size: :func:`.catalogue.catalogue_shapes`), the shape is that Gaussian
convolved with this image's beam and the flux the amplitude times its area over the
beam's, so that a source resolved in the catalogue is measured whole, in an image of
another resolution too. Its error is that fit's in noise of the local rms correlated as the
beam (:func:`.fit_errors.correlation_kernel`), so it can be negative and its pulls scatter
as 1 where there is no source.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalogue import catalogue_shapes
from .fit_errors import correlation_kernel
from .fits_image import FitsImage, ImageError, continuum_frequency, open_image
from .measure import FWHM
from .noise import NoiseMap, estimate_noise_map
from .sky import beam_in_pixels, convolve, pa_to_pixel_angle, sky_to_pixel

__all__ = ["forced_fluxes", "forced_spectra", "catalogue_shapes", "first_shapes",
           "area_ratios", "Shapes", "STAMP_FWHM", "SHAPES_NOTE"]

#: intrinsic FWHM major, minor (arcsec) and position angle (deg east of north) per source;
#: 0 major: an unresolved source (:func:`.catalogue.catalogue_shapes`)
Shapes = tuple[np.ndarray, np.ndarray, np.ndarray]
SHAPES_NOTE = ("resolved sources (the catalogue's resolved column, else a deconvolved size "
               "above 0) measured with their deconvolved Gaussian seen through each image's "
               "beam, the others as points (the beam)")

#: the stamp reaches this many beam FWHMs each side of the position
STAMP_FWHM = 1.5


def first_shapes(tables: Any, index: np.ndarray, first: np.ndarray) -> Shapes:
    """Shapes of sources matched across catalogues (``index (M, K)``: each one's row in
    catalogue k, -1 where none; ``first (M,)``: the catalogue it was first found in), each
    from its first catalogue's row (:func:`.catalogue.catalogue_shapes`; unresolved where that
    catalogue gives no sizes)."""
    out = tuple(np.zeros(len(first)) for _ in range(3))
    for k, t in enumerate(tables):
        sh = catalogue_shapes(t, f"catalogue {k + 1}")
        mine = np.flatnonzero(np.asarray(first) == k)
        if sh is None or not mine.size:
            continue
        for o, v in zip(out, sh):
            o[mine] = v[np.asarray(index)[mine, k]]
    return out


def forced_fluxes(image: str | FitsImage, ra: np.ndarray, dec: np.ndarray,
                  noise: NoiseMap | None = None, stokes: str = "I",
                  shapes: Shapes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flux, 1-sigma error) in Jy of a source at each sky position of a 2D ``image`` (a
    path, whose ``stokes`` plane is read from a STOKES axis of several, or an opened image;
    its noise map estimated unless given): unresolved, or of the intrinsic ``shapes``
    (:data:`Shapes`, e.g. :func:`.catalogue.catalogue_shapes`; a major axis of 0: unresolved); NaN off
    the image or where the stamp has no data."""
    if not isinstance(image, FitsImage):
        with open_image(image, stokes=stokes) as img:
            return forced_fluxes(img, ra, dec, noise, shapes=shapes)
    from scipy.signal import fftconvolve

    img = image
    if img.ndim != 2:
        raise ImageError(f"{img.path}: forced photometry is for 2D images")
    beam = beam_in_pixels(img)
    if beam is None or img.wcs is None:
        raise ImageError(f"{img.path}: forced photometry needs the beam (BMAJ, BMIN) and a "
                         "celestial WCS")
    smaj, smin, theta = beam
    noise = noise if noise is not None else estimate_noise_map(img.read, img.shape)
    x, y = sky_to_pixel(img.wcs, np.asarray(ra, np.float64), np.asarray(dec, np.float64))
    gmaj, gmin, gth = _templates(img, x, y, beam, shapes)
    H, W = img.shape
    norms: dict[int, Any] = {}  # per stamp size: g -> g^T C g
    flux, err = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    todo = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    rms_at = np.full(x.shape, np.nan)
    if todo.size:
        rms_at[todo] = noise.at(y[todo], x[todo])
    for k in todo:
        cx, cy = int(math.floor(x[k] + 0.5)), int(math.floor(y[k] + 0.5))
        if not (0 <= cx < W and 0 <= cy < H):
            continue
        half = int(math.ceil(STAMP_FWHM * gmaj[k] * FWHM))
        S = 2 * half + 1
        if S not in norms:
            norms[S] = _correlated_norm(correlation_kernel(S, smaj, smin, theta), S,
                                        fftconvolve)
        c, s = math.cos(gth[k]), math.sin(gth[k])
        x0, y0 = cx - half, cy - half
        win = (slice(max(0, y0), min(H, y0 + S)), slice(max(0, x0), min(W, x0 + S)))
        stamp = np.full((S, S), np.nan)
        part = img.read(win).astype(np.float64) - noise.window(*win, "background")
        stamp[win[0].start - y0:win[0].stop - y0, win[1].start - x0:win[1].stop - x0] = part
        off = np.arange(S, dtype=np.float64) - half
        dx, dy = (off + (cx - x[k]))[None, :], (off + (cy - y[k]))[:, None]
        u, v = dx * c + dy * s, -dx * s + dy * c
        g = np.exp(-0.5 * ((u / gmaj[k]) ** 2 + (v / gmin[k]) ** 2))
        g[~np.isfinite(stamp)] = 0.0
        gg = float(np.sum(g * g))
        if gg < 0.5 * math.pi * gmaj[k] * gmin[k]:  # half of the shape (its integral of
            continue  # g^2) blank
        area = gmaj[k] * gmin[k] / (smaj * smin)  # the shape's integral over the beam's
        flux[k] = area * float(np.sum(g * np.nan_to_num(stamp))) / gg
        err[k] = area * rms_at[k] * math.sqrt(max(norms[S](g), 0.0)) / gg
    scale = img.unit_scale * (img.beam_area_pixels() if img.per == "pixel" else 1.0)
    return flux * scale, err * scale


def forced_spectra(cube: str | Sequence[str], ra: np.ndarray, dec: np.ndarray, *,
                   stokes: str = "I", shapes: Shapes | None = None,
                   purpose: str = "a spectrum") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forced fluxes and errors ``(n, K)`` (Jy) at every plane of a ``cube`` with a
    frequency axis (its ``stokes`` parameter where it has a STOKES axis), or at each of
    several 2D images of one field at their own frequencies (their headers', e.g. WSClean's
    sub-band images), and the planes' frequencies (Hz); sources of ``shapes``, or
    unresolved; each plane with its own beam and noise map. ImageError naming ``purpose``
    for one image without a frequency axis, or images without a frequency. A plane without
    data (blank, or zero everywhere: a flagged sub-band or channel) gives NaN, with a
    warning."""
    paths = [cube] if isinstance(cube, (str, os.PathLike)) else list(cube)
    if len(paths) == 1:
        with warnings.catch_warnings():  # (its axis only: each plane is read with its beam)
            warnings.filterwarnings("ignore", message=".*BEAMS table")
            img = open_image(paths[0], stokes=stokes)
        with img:
            axis = img.frequency_axis if img.ndim == 3 else None
            if axis is None:
                raise ImageError(f"{img.path}: {purpose} needs a cube with a frequency axis "
                                 f"(its shape {img.shape}), or several images")
            freqs = axis.frequency(np.arange(img.shape[0], dtype=np.float64))
        planes = [(paths[0], k) for k in range(len(freqs))]
    else:
        freqs = []
        for p in paths:
            with open_image(p, stokes=stokes) as img:
                f = continuum_frequency(img.header)
                if img.ndim != 2 or f is None:
                    raise ImageError(f"{img.path}: {purpose} from several images needs 2D "
                                     "images with their frequency in the header (a FREQ axis "
                                     "or RESTFRQ / FREQ / OBSFREQ)")
                freqs.append(f)
        freqs = np.asarray(freqs, np.float64)
        planes = [(p, None) for p in paths]
    flux, err = np.full((len(ra), len(planes)), np.nan), np.full((len(ra), len(planes)), np.nan)
    blank = []
    for k, (p, z) in enumerate(planes):
        with open_image(p, stokes=stokes, plane=z) as plane:
            try:
                noise = estimate_noise_map(plane.read, plane.shape)
            except ValueError:  # no finite pixels, or zero noise everywhere
                blank.append(k)
                continue
            flux[:, k], err[:, k] = forced_fluxes(plane, ra, dec, noise, shapes=shapes)
    if blank:
        warnings.warn(f"{', '.join(map(os.fspath, paths))}: planes {blank} (0-based) have no "
                      "data (blank or zero): no flux there", UserWarning, stacklevel=2)
    return flux, err, freqs


def area_ratios(img: FitsImage, x: np.ndarray, y: np.ndarray, shapes: Shapes | None
                ) -> np.ndarray:
    """Each source's area in ``img`` over its beam's (its intrinsic ``shapes`` seen
    through the beam; 1 for an unresolved one): the integrated flux of a source whose
    peak is 1 Jy/beam there, in Jy. ImageError for resolved sources in an image without a
    beam."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if shapes is None or not np.any(np.asarray(shapes[0]) > 0):
        return np.ones(x.shape)
    beam = beam_in_pixels(img)
    if beam is None or img.wcs is None:
        raise ImageError(f"{img.path}: the areas of resolved sources need the beam (BMAJ, "
                         "BMIN) and a celestial WCS")
    gmaj, gmin, _ = _templates(img, x, y, beam, shapes)
    return gmaj * gmin / (beam[0] * beam[1])


#: stamps of at most this many pixels take ``g^T C g`` through the matrix ``C`` itself
MATRIX_PIXELS = 1024


def _correlated_norm(kernel: np.ndarray, S: int, fftconvolve: Any) -> Any:
    """``g -> g^T C g`` for ``S x S`` stamps, ``C_pq = K(r_p - r_q)`` (``kernel``: ``K`` at
    every lag, zero lag central): through the ``S^2 x S^2`` matrix for small stamps, else
    ``g`` against its correlation with the kernel (FFT)."""
    if S * S > MATRIX_PIXELS:
        return lambda g: float(np.sum(g * fftconvolve(kernel, g, mode="valid")))
    idx = np.arange(S)
    dy = (idx[:, None, None, None] - idx[None, None, :, None]) + (S - 1)
    dx = (idx[None, :, None, None] - idx[None, None, None, :]) + (S - 1)
    C = kernel[dy, dx].reshape(S * S, S * S)

    def norm(g: np.ndarray) -> float:
        v = g.reshape(-1)
        return float(v @ (C @ v))
    return norm


def _templates(img: FitsImage, x: np.ndarray, y: np.ndarray,
               beam: tuple[float, float, float], shapes: Shapes | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each position's template in ``img``'s pixels: (sigma major, sigma minor, angle from
    +x towards +y): the beam's, or the intrinsic shape convolved with it."""
    n = x.shape[0]
    smaj, smin, theta = beam
    gmaj, gmin, gth = np.full(n, smaj), np.full(n, smin), np.full(n, theta)
    if shapes is None:
        return gmaj, gmin, gth
    dmaj, dmin, pa = (np.asarray(v, np.float64) for v in shapes)
    if not dmaj.shape == dmin.shape == pa.shape == (n,):
        raise ValueError(f"shapes: three arrays of one value per position ({n}); received "
                         f"shapes {dmaj.shape}, {dmin.shape}, {pa.shape}")
    k = np.flatnonzero((dmaj > 0) & np.isfinite(x) & np.isfinite(y))
    if k.size:
        to_sigma = 1.0 / (FWHM * img.pixel_scale)
        th = pa_to_pixel_angle(img.wcs, x[k], y[k], pa[k])
        gmaj[k], gmin[k], gth[k] = convolve(dmaj[k] * to_sigma, dmin[k] * to_sigma, th,
                                            smaj, smin, theta)
    return gmaj, gmin, gth
