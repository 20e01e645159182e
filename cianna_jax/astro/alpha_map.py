"""Spectral-index maps: the spectral index pixel by pixel across extended emission (a radio
galaxy's lobes steepening away from its hotspots, as their electrons age).

Images of one pixel grid at two or more frequencies are brought to their common beam
(:mod:`.beam_matching`), each with its local noise map there; where every image is above
``min_snr`` times its noise, a power law ``S ~ nu^alpha`` is fitted to the pixel's values by
weighted least squares in ``ln S`` against ``ln nu`` (weights ``(S / sigma)^2``; with two
images ``alpha = ln(S2 / S1) / ln(nu2 / nu1)``), its error from the fit's weights. Pixels
elsewhere are blank. The maps: alpha and its error, FITS at the first image's header with
the common beam.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..checks import as_bounded_float
from .beam_matching import at_beam, check_same_grid, common_beam, regridded
from .fits_image import Beam, ImageError, continuum_frequency, open_image
from .noise import estimate_noise_map

__all__ = ["AlphaMap", "spectral_index_map", "write_alpha_map"]


@dataclass(frozen=True)
class AlphaMap:
    """``alpha`` and ``alpha_err`` ``[H, W]`` (NaN where not measured), the ``freqs_hz`` of
    the images, their common ``beam``, ``min_snr`` and ``n_pixels`` measured."""

    alpha: np.ndarray
    alpha_err: np.ndarray
    freqs_hz: tuple[float, ...]
    beam: Beam
    min_snr: float
    n_pixels: int

    @property
    def median(self) -> float:
        """The median spectral index of the measured pixels (NaN without one)."""
        v = self.alpha[np.isfinite(self.alpha)]
        return float(np.median(v)) if v.size else math.nan


def spectral_index_map(images: Sequence[str | os.PathLike], *, min_snr: float = 5.0,
                       freqs_hz: Sequence[float] | None = None, noise_box: int = 128,
                       hdu: int | str | None = None, plane: int | None = None,
                       regrid: bool = False) -> AlphaMap:
    """The spectral-index map of two or more ``images`` (FITS paths, one pixel grid, each
    with a beam; their frequencies from the headers unless ``freqs_hz``); see the module's
    note.  ``regrid``: images on other pixel grids resampled onto the first's
    (:func:`.beam_matching.regridded`), else refused.  The images are read whole."""
    min_snr = as_bounded_float(min_snr, "min_snr")
    paths = [os.fspath(p) for p in images]
    if len(paths) < 2:
        raise ValueError(f"images: two or more, at different frequencies; received {len(paths)}")
    imgs = [open_image(p, hdu, plane=plane) for p in paths]
    try:
        same = [True] + [check_same_grid(imgs[0], im, regrid=regrid) for im in imgs[1:]]
        if any(im.beam is None for im in imgs):
            raise ImageError("images: each needs a beam (BMAJ, BMIN) to be matched")
        nu = (np.asarray(freqs_hz, np.float64) if freqs_hz is not None
              else np.array([continuum_frequency(im.header) or np.nan for im in imgs]))
        if nu.size != len(imgs) or not np.all(np.isfinite(nu) & (nu > 0)):
            raise ValueError(f"freqs_hz: one positive frequency per image (from the headers, "
                             f"or given); have {nu.tolist()}")
        if np.unique(nu).size < 2:
            raise ValueError(f"freqs_hz: at least two different frequencies; have {nu.tolist()}")
        beam = common_beam(*(im.beam for im in imgs))
        s, sig = [], []
        for im, on_grid in zip(imgs, same, strict=True):
            a = at_beam(im, beam)
            if not on_grid:
                a = regridded(a, im, imgs[0])
            noise = estimate_noise_map(lambda w, a=a: a[w], a.shape, box=noise_box)
            H, W = a.shape
            s.append(a - noise.window(slice(0, H), slice(0, W), "background"))
            sig.append(noise.window(slice(0, H), slice(0, W), "rms"))
    finally:
        for im in imgs:
            im.close()
    S, E = np.stack(s), np.stack(sig)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.all(np.isfinite(S) & (S >= min_snr * E), axis=0)
        x = np.log(nu)[:, None, None]
        y = np.log(np.where(good, S, 1.0))
        w = np.where(good, (S / E) ** 2, 0.0)  # 1 / var(ln S)
        sw, sx, sy = w.sum(0), (w * x).sum(0), (w * y).sum(0)
        sxx, sxy = (w * x * x).sum(0), (w * x * y).sum(0)
        det = sw * sxx - sx * sx
        alpha = np.where(good, (sw * sxy - sx * sy) / det, np.nan)
        err = np.where(good, np.sqrt(sw / det), np.nan)
    return AlphaMap(alpha, err, tuple(float(v) for v in nu), beam, float(min_snr),
                    int(good.sum()))


def write_alpha_map(m: AlphaMap, reference: str | os.PathLike, path: str | os.PathLike,
                    err_path: str | os.PathLike | None = None) -> None:
    """The map (and its error) as FITS with ``reference``'s sky axes and the common beam."""
    from ..io.atomic import atomic_write
    from ._deps import require
    from .residual import image_header

    fits = require("astropy.io.fits")
    with open_image(reference) as img:
        hdr = image_header(img, "alpha")
    hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = (m.beam.bmaj / 3600.0, m.beam.bmin / 3600.0,
                                            m.beam.bpa)
    hdr["BUNIT"] = ""
    hdr["MINSNR"] = (m.min_snr, "every image above this many local rms")
    for i, f in enumerate(m.freqs_hz):
        hdr[f"FREQ{i + 1}"] = (f, "[Hz] an image's frequency")
    for data, p, what in ((m.alpha, path, "spectral index"), (m.alpha_err, err_path, "error")):
        if p is None:
            continue
        h = hdr.copy()
        h["BTYPE"] = what
        with atomic_write(p) as fh:
            fits.PrimaryHDU(data.astype(np.float32), header=h).writeto(fh)

