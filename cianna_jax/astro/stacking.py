"""Stacking: the mean radio emission of a population below the detection limit.

Cutouts of the image centred on the positions of a catalogue from another band (galaxies,
quasars, clusters), each at its nearest pixel, are averaged pixel by pixel: their noise falls
as the square root of their number while the population's common emission stays, so a
population whose members are each far below the noise shows in the stack. The mean stack
measures the mean flux density; the median stack (White et al. 2007), robust against the
few bright members, the median of the population's flux distribution when its members are
below the noise (the mean of their distribution, blurred by it, for a population spread
across it). For point sources the stack's value at its centre, in Jy/beam, is the flux
density in Jy; a Gaussian fitted to the mean stack gives the integrated flux of a population
resolved (or spread by position errors). Errors are bootstrap (the positions resampled);
the stack's own noise is the robust rms of its outer part.

Positions whose cutout leaves the image or holds blank pixels are left out, and, given a
catalogue of the image's own detections, those with a detected source within a radius
(stacking the undetected members only).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .fits_image import FitsImage, ImageError, open_image
from .measure import FWHM
from .scores import robust_scatter
from .sky import sky_to_pixel

__all__ = ["Stack", "stack_positions", "stack_figure", "write_stack", "format_stack"]


@dataclass(frozen=True)
class Stack:
    """A stack: ``mean`` and ``median`` images ``[2 half + 1, 2 half + 1]`` (Jy/beam),
    ``n`` positions stacked of ``n_given`` (``skipped``: why the others were left out);
    ``peak_mean``, ``peak_median`` (the centre pixel, Jy/beam: a point population's flux
    density in Jy) with bootstrap errors; ``rms_mean``, ``rms_median`` the stacks' noise
    (robust rms of their outer parts); ``flux``, ``flux_err`` (Jy) and ``fwhm`` (major,
    minor in arcsec) of a Gaussian fitted to the mean stack (NaN without a beam or when
    the fit fails, or the centre is below 3 times its error); ``beam_fwhm`` (arcsec),
    ``pixel_scale`` (arcsec).  (Each cutout sits at its nearest pixel: the half-pixel
    offsets lower the centre a little, 5% for a beam of 3 pixels; the fit takes them in.)"""

    mean: np.ndarray
    median: np.ndarray
    n: int
    n_given: int
    skipped: dict[str, int]
    peak_mean: float
    peak_mean_err: float
    peak_median: float
    peak_median_err: float
    rms_mean: float
    rms_median: float
    flux: float
    flux_err: float
    fwhm: tuple[float, float]
    beam_fwhm: tuple[float, float] | None
    pixel_scale: float | None

    def summary(self) -> dict[str, Any]:
        """The numbers (no images), for a table's or a file's metadata."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()
                if k not in ("mean", "median")}


def _gaussian_fit(img: np.ndarray, outer: np.ndarray) -> tuple[float, float, float, float] | None:
    """(amplitude, sigma major, sigma minor, centre offset) in pixels of an elliptical
    Gaussian fitted (:func:`.gaussfit.fit_gaussians`) to a stack less the median of its
    ``outer`` part; None when the fit fails."""
    from .gaussfit import fit_gaussians

    h = img.shape[0] // 2
    d = img - float(np.nanmedian(img[outer]))
    w = np.isfinite(d).astype(np.float64)
    a0 = float(d[h, h]) if np.isfinite(d[h, h]) else float(np.nanmax(d))
    g = fit_gaussians(d[None], w[None], np.array([[a0, h, h, 2.0, 2.0]]))
    if not bool(g.ok[0]):
        return None
    return (float(g.amplitude[0]), float(g.sigma_major[0]), float(g.sigma_minor[0]),
            float(math.hypot(g.x0[0] - h, g.y0[0] - h)))


def stack_positions(image: str | os.PathLike | FitsImage, ra: np.ndarray, dec: np.ndarray,
                    *, half: int = 20, exclude: tuple[np.ndarray, np.ndarray] | None = None,
                    exclude_radius: float = 2.0, max_positions: int = 20_000,
                    bootstrap: int = 200, seed: int = 0, hdu: int | str | None = None,
                    plane: int | None = None) -> Stack:
    """Stack the 2D ``image`` (path or opened) at the sky positions ``ra``, ``dec``
    (degrees): cutouts of ``2 half + 1`` pixels at the nearest pixels, their pixel-wise
    mean and median.  ``exclude``: (ra, dec) of the image's detected sources; positions
    with one within ``exclude_radius`` beam FWHMs (or pixels, without a beam) are left
    out.  At most ``max_positions`` positions (a random choice of them, with a warning,
    beyond).  ``bootstrap``: resamplings of the positions for the errors; ``seed`` their
    draws and the choice.  Raises ValueError for a cube (``plane`` takes one of its
    planes), an image without a WCS, or no position to stack."""
    half = as_int(half, "half", minimum=2)
    max_positions = as_int(max_positions, "max_positions", minimum=1)
    bootstrap = as_int(bootstrap, "bootstrap", minimum=10)
    as_bounded_float(exclude_radius, "exclude_radius")
    ra, dec = np.atleast_1d(np.asarray(ra, np.float64)), np.atleast_1d(np.asarray(dec, np.float64))
    if ra.shape != dec.shape:
        raise ValueError(f"ra, dec: one of each per position; received {ra.shape}, {dec.shape}")
    own = not isinstance(image, FitsImage)
    img = open_image(image, hdu, plane=plane) if own else image
    try:
        if img.ndim != 2:
            raise ImageError(f"{img.path}: a cube; stack a 2D image (plane= takes one plane)")
        if img.wcs is None:
            raise ImageError(f"{img.path}: no celestial WCS: sky positions cannot be placed")
        rng = np.random.default_rng([int(seed), 53])
        H, W = img.shape
        skipped = {"not finite": 0, "off the image": 0, "blank pixels": 0, "near a detection": 0,
                   "beyond max_positions": 0}
        ok = np.isfinite(ra) & np.isfinite(dec)
        skipped["not finite"] = int(np.sum(~ok))
        x, y = sky_to_pixel(img.wcs, np.where(ok, ra, 0.0), np.where(ok, dec, 0.0))
        ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
        inside = ok & (ix >= half) & (iy >= half) & (ix < W - half) & (iy < H - half)
        skipped["off the image"] = int(np.sum(ok & ~inside))
        fwhm = img.beam_fwhm_pixels()
        if exclude is not None and inside.any():
            from scipy.spatial import cKDTree

            ex, ey = sky_to_pixel(img.wcs, *(np.asarray(v, np.float64) for v in exclude))
            good = np.isfinite(ex) & np.isfinite(ey)
            if good.any():
                r = exclude_radius * (fwhm[0] if fwhm is not None else 1.0)
                d, _ = cKDTree(np.stack([ex[good], ey[good]], 1)).query(
                    np.stack([x, y], 1)[inside])
                near = np.zeros_like(inside)
                near[np.flatnonzero(inside)[d <= r]] = True
                skipped["near a detection"] = int(near.sum())
                inside &= ~near
        rows = np.flatnonzero(inside)
        if rows.size > max_positions:
            warnings.warn(f"{rows.size} positions to stack: a random {max_positions} of them "
                          "(max_positions)", UserWarning, stacklevel=2)
            skipped["beyond max_positions"] = int(rows.size - max_positions)
            rows = np.sort(rng.choice(rows, max_positions, replace=False))
        cut = np.empty((rows.size, 2 * half + 1, 2 * half + 1), np.float32)
        keep = np.ones(rows.size, bool)
        for k, i in enumerate(rows):
            c = img.read((slice(iy[i] - half, iy[i] + half + 1),
                          slice(ix[i] - half, ix[i] + half + 1)))
            keep[k] = bool(np.isfinite(c).all())
            cut[k] = c
        skipped["blank pixels"] = int(np.sum(~keep))
        cut = cut[keep] * np.float32(img.unit_scale)
        if not cut.shape[0]:
            raise ValueError(f"no position to stack on {img.path} ({', '.join(f'{v} {k}' for k, v in skipped.items() if v)})")
        return _measure(cut, len(ra), skipped, fwhm, img, bootstrap, rng)
    finally:
        if own:
            img.close()


def _measure(cut: np.ndarray, n_given: int, skipped: dict[str, int],
             fwhm: tuple[float, float] | None, img: FitsImage, bootstrap: int,
             rng: np.random.Generator) -> Stack:
    """The stack's images and numbers from the cutouts ``cut`` ``[n, S, S]``."""
    n, s = cut.shape[0], cut.shape[1]
    h = s // 2
    mean = cut.mean(axis=0, dtype=np.float64)
    median = np.median(cut, axis=0).astype(np.float64)
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    outer = np.hypot(xx, yy) > 0.6 * h
    centre = cut[:, h, h].astype(np.float64)
    draws = rng.integers(0, n, (bootstrap, n))
    boot_mean = centre[draws].mean(axis=1)
    boot_median = np.median(centre[draws], axis=1)
    flux = flux_err = float("nan")
    size = (float("nan"), float("nan"))
    area = img.beam_area_pixels()
    scale = img.pixel_scale
    detected = float(mean[h, h]) >= 3.0 * float(np.std(boot_mean))  # (a fit to noise: none)
    fit = _gaussian_fit(mean, outer) if area is not None and detected else None
    if fit is not None and fit[3] < h / 2:
        a, sx, sy, _ = fit
        flux = 2.0 * math.pi * a * sx * sy / area
        size = (FWHM * sx * (scale or 1.0), FWHM * sy * (scale or 1.0))
        # the fitted flux's error: its relative error as the centre's (bootstrap)
        flux_err = abs(flux) * float(np.std(boot_mean)) / max(abs(a), 1e-300)
    beam = None if img.beam is None else (float(img.beam.bmaj), float(img.beam.bmin))
    return Stack(mean=mean, median=median, n=n, n_given=n_given, skipped=skipped,
                 peak_mean=float(mean[h, h]), peak_mean_err=float(np.std(boot_mean)),
                 peak_median=float(median[h, h]), peak_median_err=float(np.std(boot_median)),
                 rms_mean=robust_scatter(mean[outer]), rms_median=robust_scatter(median[outer]),
                 flux=flux, flux_err=flux_err, fwhm=size, beam_fwhm=beam, pixel_scale=scale)


def format_stack(st: Stack) -> str:
    """The stack's numbers in a few lines (uJy)."""
    why = ", ".join(f"{v} {k}" for k, v in st.skipped.items() if v)
    u = 1e6
    lines = [f"{st.n} of {st.n_given} positions stacked" + (f" ({why})" if why else ""),
             f"mean stack: centre {st.peak_mean * u:.3g} +- {st.peak_mean_err * u:.2g} uJy/beam "
             + (f"(SNR {st.peak_mean / st.peak_mean_err:.1f}; " if st.peak_mean_err > 0
                else "(") + f"the stack's rms {st.rms_mean * u:.2g})",
             f"median stack: centre {st.peak_median * u:.3g} +- {st.peak_median_err * u:.2g} "
             f"uJy/beam (the stack's rms {st.rms_median * u:.2g})"]
    if np.isfinite(st.flux):
        beam = (f" (beam {st.beam_fwhm[0]:.3g} x {st.beam_fwhm[1]:.3g})" if st.beam_fwhm
                else "")
        lines.append(f"Gaussian fitted to the mean stack: {st.flux * u:.3g} +- "
                     f"{st.flux_err * u:.2g} uJy, FWHM {st.fwhm[0]:.3g} x {st.fwhm[1]:.3g} "
                     f"arcsec{beam}")
    return "\n".join(lines)


def write_stack(st: Stack, path: str | os.PathLike) -> None:
    """The mean stack (primary HDU) and the median stack (``MEDIAN``) as FITS, Jy/beam, the
    numbers in the headers (``N_STACK``, ``PEAK``, ``PEAK_ERR``...), written atomically."""
    from ..io.atomic import atomic_write
    from ._deps import require

    fits = require("astropy.io.fits")
    hdus = []
    for name, img, peak, err, rms in (("MEAN", st.mean, st.peak_mean, st.peak_mean_err,
                                       st.rms_mean),
                                      ("MEDIAN", st.median, st.peak_median,
                                       st.peak_median_err, st.rms_median)):
        h = fits.Header()
        h["BUNIT"] = "Jy/beam"
        h["EXTNAME"] = name
        h["N_STACK"] = (st.n, "positions stacked")
        h["PEAK"] = (peak, "centre pixel (Jy/beam)")
        h["PEAK_ERR"] = (err, "bootstrap error of PEAK")
        h["RMS"] = (rms, "robust rms of the outer part")
        if st.pixel_scale:
            h["CDELT1"], h["CDELT2"] = -st.pixel_scale / 3600.0, st.pixel_scale / 3600.0
            h["CRPIX1"] = h["CRPIX2"] = img.shape[0] // 2 + 1
            h["CTYPE1"], h["CTYPE2"] = "OFFSET-X", "OFFSET-Y"
        if st.beam_fwhm:
            h["BMAJ"], h["BMIN"] = st.beam_fwhm[0] / 3600.0, st.beam_fwhm[1] / 3600.0
            h["BPA"] = 0.0
        cls = fits.PrimaryHDU if not hdus else fits.ImageHDU
        hdus.append(cls(img.astype(np.float32), header=h))
    with atomic_write(path) as fh:
        fits.HDUList(hdus).writeto(fh)


def stack_figure(st: Stack, *, title: str = "Stack") -> Any:
    """The mean and median stacks (uJy/beam, offsets in arcsec) and their radial profiles
    beside the beam's, scaled to the mean stack's centre."""
    from .plots import finish_panels, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    h = st.mean.shape[0] // 2
    sc = st.pixel_scale or 1.0
    unit = "arcsec" if st.pixel_scale else "pixels"
    ext = [(-h - 0.5) * sc, (h + 0.5) * sc, (-h - 0.5) * sc, (h + 0.5) * sc]
    for ax, img, name in ((axes[0], st.mean, "mean"), (axes[1], st.median, "median")):
        im = ax.imshow(img * 1e6, origin="lower", extent=ext, cmap="inferno")
        fig.colorbar(im, ax=ax, label="uJy/beam")
        ax.set_title(f"{name} of {st.n}")
        ax.set_xlabel(f"offset ({unit})")
        ax.set_ylabel(f"offset ({unit})")
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    r = np.hypot(xx, yy) * sc
    edges = np.arange(0, h * sc + sc, sc)
    mid = 0.5 * (edges[:-1] + edges[1:])
    k = np.digitize(r.ravel(), edges) - 1
    for img, name in ((st.mean, "mean"), (st.median, "median")):
        prof = np.array([img.ravel()[k == i].mean() if np.any(k == i) else np.nan
                         for i in range(mid.size)])
        axes[2].plot(mid, prof * 1e6, "o-", ms=3, label=f"{name} stack")
    if st.beam_fwhm and st.pixel_scale:
        s = st.beam_fwhm[0] / FWHM
        rr = np.linspace(0, mid[-1], 200)
        axes[2].plot(rr, st.peak_mean * 1e6 * np.exp(-0.5 * (rr / s) ** 2), "k--",
                     label="the beam, at the mean's centre")
    axes[2].axhline(0, color="grey", lw=0.8)
    axes[2].set_xlabel(f"radius ({unit})")
    axes[2].set_ylabel("uJy/beam")
    axes[2].legend(fontsize=8)
    return finish_panels(fig, axes, f"{title}: {st.n} positions, centre "
                         f"{st.peak_mean * 1e6:.3g} +- {st.peak_mean_err * 1e6:.2g} uJy/beam")
