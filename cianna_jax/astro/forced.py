"""Forced photometry: the flux of an unresolved source at given sky positions of an image.

Where a catalogue has no source (an epoch at which a variable source was faint, or the
image of another survey), the flux at a known position is measured anyway: the restoring
beam, centred at the position, is fitted to the background-subtracted pixels of a stamp of
half-size 1.5 beam FWHM by its amplitude alone (least squares; for a point source the
amplitude in Jy/beam is the flux in Jy). Its error is that fit's in noise of the local rms
correlated as the beam (:func:`.fit_errors.correlation_kernel`), so it can be negative and
its pulls scatter as 1 where there is no source.
"""

from __future__ import annotations

import math

import numpy as np

from .fit_errors import correlation_kernel
from .fits_image import FitsImage, ImageError, open_image
from .measure import FWHM
from .noise import NoiseMap, estimate_noise_map
from .sky import beam_in_pixels, sky_to_pixel

__all__ = ["forced_fluxes", "STAMP_FWHM"]

#: the stamp reaches this many beam FWHMs each side of the position
STAMP_FWHM = 1.5


def forced_fluxes(image: str | FitsImage, ra: np.ndarray, dec: np.ndarray,
                  noise: NoiseMap | None = None, stokes: str = "I"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(flux, 1-sigma error) in Jy of an unresolved source at each sky position of a 2D
    ``image`` (a path, whose ``stokes`` plane is read from a STOKES axis of several, or an
    opened image; its noise map estimated unless given); NaN off the image or where the
    stamp has no data."""
    if not isinstance(image, FitsImage):
        with open_image(image, stokes=stokes) as img:
            return forced_fluxes(img, ra, dec, noise)
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
    half = int(math.ceil(STAMP_FWHM * smaj * FWHM))
    S = 2 * half + 1
    H, W = img.shape
    kernel = correlation_kernel(S, smaj, smin, theta)  # [2S - 1, 2S - 1], zero lag central
    flux, err = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    c, s = math.cos(theta), math.sin(theta)
    for k in np.flatnonzero(np.isfinite(x) & np.isfinite(y)):
        cx, cy = int(math.floor(x[k] + 0.5)), int(math.floor(y[k] + 0.5))
        if not (0 <= cx < W and 0 <= cy < H):
            continue
        x0, y0 = cx - half, cy - half
        win = (slice(max(0, y0), min(H, y0 + S)), slice(max(0, x0), min(W, x0 + S)))
        stamp = np.full((S, S), np.nan)
        part = img.read(win).astype(np.float64) - noise.window(*win, "background")
        stamp[win[0].start - y0:win[0].stop - y0, win[1].start - x0:win[1].stop - x0] = part
        yy, xx = np.mgrid[y0:y0 + S, x0:x0 + S]
        dx, dy = xx - x[k], yy - y[k]
        u, v = dx * c + dy * s, -dx * s + dy * c
        g = np.exp(-0.5 * ((u / smaj) ** 2 + (v / smin) ** 2))
        g[~np.isfinite(stamp)] = 0.0
        gg = float(np.sum(g * g))
        if gg < 0.5 * math.pi * smaj * smin:  # half of the beam (its integral of g^2) blank
            continue
        rms = float(noise.at(np.array([y[k]]), np.array([x[k]]))[0])
        flux[k] = float(np.sum(g * np.nan_to_num(stamp))) / gg
        # g^T C g, C_pq = K(r_p - r_q): g against its correlation with the kernel
        cg = fftconvolve(kernel, g, mode="valid")
        err[k] = rms * math.sqrt(max(float(np.sum(g * cg)), 0.0)) / gg
    scale = img.unit_scale * (img.beam_area_pixels() if img.per == "pixel" else 1.0)
    return flux * scale, err * scale
