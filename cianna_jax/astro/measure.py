"""Source properties from the image at each detection: position, peak, integrated flux,
size and orientation, local noise and SNR.

Each 2D detection gets one elliptical Gaussian fitted on a stamp around its box
(:mod:`cianna_jax.astro.gaussfit`), with pixels closer (relative to box size) to a
neighbouring detection masked out and, in beam-correlated noise, the others weighted by a
Gaussian taper around the box (:data:`FIT_TAPER`: the wings' noise moves the fit less).
From a Jy/beam map the integrated flux is ``2 pi A sigma_maj sigma_min / beam area`` (both
in pixels).  The fits' 1-sigma errors
(position, peak, sizes, angle, flux) follow :mod:`.fit_errors`, in the local noise at the
source correlated as the beam. A fit that fails (or wanders off its box, or spreads to a
FWHM over twice its side) falls back to the box: centre, the peak pixel and the box-
derived size, flagged ``fit_ok = False``, with the peak's error the local rms and the
flux's ``rms * sqrt(source area / beam area)`` (other errors NaN). Cube detections are
first measured by box sums (:func:`measure_boxes_3d`: the position, centroid of the
moment-0 map; the flux, its error from the local rms; the line's spectrum, :mod:`.spectral`:
its centre channel and widths), then by fits on moment-0 maps (:func:`fit_moment0`: the
position and shape on the box's channels, the flux on the whole line's).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from ..progress import Progress
from .fit_errors import correlation_kernel, fit_covariance, fit_errors
from .gaussfit import fit_gaussian_blends, fit_gaussians
from .noise import NoiseMap
from .spectral import line_errors, line_widths

__all__ = ["LINE_FLUX_MARGIN", "Measurements", "measure_sources", "measure_boxes_3d",
           "fit_moment0", "line_window", "box_channels"]

FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: a line's flux window: its 20% crossings widened by this times the width between them
LINE_FLUX_MARGIN = 0.25
#: times a line's spectrum is extended past a box that cuts it (:func:`measure_boxes_3d`)
LINE_EXTENSIONS = 3
_BUCKETS = (4, 6, 8, 12, 16, 24, 32, 48, 64)
#: in beam-correlated noise the fit's pixel weights taper as a Gaussian of this many times
#: the starting sigmas (the box's size) around the box's centre; None: flat weights
FIT_TAPER: float | None = 1.5


@dataclass(frozen=True)
class Measurements:
    """Per-source arrays: ``x, y`` (0-based pixel centres), ``peak`` (image unit), ``flux``,
    ``flux_err`` (Jy; NaN without a beam), ``rms`` (image unit), ``snr`` (peak / rms),
    ``sigma_major, sigma_minor`` (pixels), ``theta`` (major axis, radians from +x towards +y),
    ``fit_ok``; ``z`` (channel) for cubes.  1-sigma errors: ``peak_err`` (image unit),
    ``xy_cov [M, 2, 2]`` (covariance of x and y, pixels^2), ``sigma_major_err``,
    ``sigma_minor_err`` (pixels), ``theta_err`` (radians, pi/2: unconstrained),
    ``area_err_rel`` (relative error of ``sigma_major * sigma_minor``); NaN where unknown.
    Cubes: ``line [M, 4]``, the spectrum's crossings at 20% (low, high) and 50% (low, high)
    of its peak, fractional channels (:func:`.spectral.line_widths`); ``line_err [M, 3]``
    the 1-sigma errors (channels) of its centre, w20 and w50 (:func:`.spectral.line_errors`);
    ``theta_high``
    (radians) and ``gradient_snr``, the half of the major axis where the line sits at
    higher channels and its significance (:func:`.kinematics.velocity_gradient`).
    ``deblended``: True where the detector's box held several separate peaks and the
    source is one of them, fitted with the others (:mod:`.deblend`)."""

    x: np.ndarray
    y: np.ndarray
    peak: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    rms: np.ndarray
    snr: np.ndarray
    sigma_major: np.ndarray
    sigma_minor: np.ndarray
    theta: np.ndarray
    fit_ok: np.ndarray
    z: np.ndarray | None = None
    peak_err: np.ndarray | None = None
    xy_cov: np.ndarray | None = None
    sigma_major_err: np.ndarray | None = None
    sigma_minor_err: np.ndarray | None = None
    theta_err: np.ndarray | None = None
    area_err_rel: np.ndarray | None = None
    line: np.ndarray | None = None
    line_err: np.ndarray | None = None
    theta_high: np.ndarray | None = None
    gradient_snr: np.ndarray | None = None
    deblended: np.ndarray | None = None

    def take(self, index: np.ndarray) -> Measurements:
        """The sources ``index`` (integer indices or a boolean mask), in that order."""
        return Measurements(**{f.name: (None if getattr(self, f.name) is None else
                                        getattr(self, f.name)[index]) for f in fields(self)})

    def put(self, index: np.ndarray, rows: Measurements) -> Measurements:
        """A copy with the sources ``index`` (integer indices) replaced by ``rows`` (as
        many, in that order); a field ``rows`` lacks becomes NaN there (False for flags)."""
        out = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(rows, f.name)
            if mine is None:
                out[f.name] = None
                continue
            mine = np.array(mine, copy=True)
            mine[index] = (theirs if theirs is not None else
                           False if mine.dtype == bool else np.nan)
            out[f.name] = mine
        return Measurements(**out)


def _stamp(read, shape, yc: int, xc: int, h: int) -> np.ndarray:
    H, W = shape
    y0, y1, x0, x1 = yc - h, yc + h + 1, xc - h, xc + h + 1
    out = np.full((2 * h + 1, 2 * h + 1), np.nan, np.float32)
    sy0, sy1, sx0, sx1 = max(y0, 0), min(y1, H), max(x0, 0), min(x1, W)
    if sy0 < sy1 and sx0 < sx1:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = read((slice(sy0, sy1), slice(sx0, sx1)))
    return out


def _taper(dx: np.ndarray, dy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel weights of the fit (it minimises the sum of weight^2 x residual^2) around a
    box: a Gaussian of sigmas ``sx``, ``sy`` in the weights.  The noise of a radio image is
    correlated over the beam, and a flat fit over the whole stamp lets the wings' noise,
    where the source adds little, move the centre and the flux.  On the held-out field of
    ``benchmarks/pybdsf_compare.py`` (beam 1.8"), true SNR 5-10, sigmas 1.5x the box's:
    median position error 0.202" -> 0.155", flux error 18% -> 17%; SNR 3-5: median flux
    ratio 1.37 -> 1.25 (less flux boosting); the errors' pulls 1.15 / 1.13 / 1.11 (RA, Dec,
    flux) -> 1.08 / 1.08 / 0.99 (benchmarks/README.md, forty-fifth session)."""
    return np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2))


def _mask_neighbours(w: np.ndarray, px: np.ndarray, py: np.ndarray, own: np.ndarray,
                     centre: tuple[float, float], reach: float, tree, cx, cy, scale,
                     members: tuple[int, ...]) -> None:
    """Zero in the weights ``w`` the pixels (image coordinates ``px``, ``py``) closer,
    relative to box size, to a detection within ``reach`` of ``centre`` (not one of
    ``members``) than ``own``, the fitted sources' own relative distance."""
    for j in tree.query_ball_point(centre, r=reach):
        if j not in members:
            w[np.hypot(px - cx[j], py - cy[j]) / scale[j] < own] = 0.0


def _accepted(g, x: np.ndarray, y: np.ndarray, idx: np.ndarray, cx, cy, bw, bh) -> np.ndarray:
    """The fits ``g`` of the boxes ``idx`` to keep: converged, centred (``x``, ``y``:
    image pixels) inside their box and no wider than twice it: a fit that spread far beyond
    its box (FWHM over twice its side) fitted the noise or a neighbour's wings."""
    return (g.ok & (np.abs(x - cx[idx]) <= 0.5 * bw[idx]) & (np.abs(y - cy[idx]) <= 0.5 * bh[idx])
            & (g.sigma_major * FWHM <= 2.0 * np.maximum(bw[idx], bh[idx])))


def _fit_blends(read, shape, groups, fits, hsize, tree, cx, cy, scale, sx0, sy0, bw, bh, s0,
                taper, noise_beam) -> None:
    """Fit the sources of each blend ``groups [k, K]`` (rows; K close sources boxed once)
    with K Gaussians together on one stamp around them (other detections' pixels masked,
    the tapers' union as weights), from the first fits; update ``fits`` in place where every
    component is accepted (each near its own box, no wider than twice it).  Errors: each
    component's block of the blend's joint covariance (their overlap makes them larger
    than any one's alone)."""
    K = groups.shape[1]
    gcx, gcy = cx[groups], cy[groups]
    xc = np.rint(gcx.mean(axis=1)).astype(np.int64)
    yc = np.rint(gcy.mean(axis=1)).astype(np.int64)
    reach = hsize[groups].max(axis=1) + np.ceil(0.5 * np.maximum(
        np.ptp(gcx, axis=1), np.ptp(gcy, axis=1))).astype(np.int64)
    hp = np.array([next((k for k in _BUCKETS if k >= r), _BUCKETS[-1]) for r in reach], int)
    for h in np.unique(hp):
        rows = np.flatnonzero(hp == h)
        S = 2 * h + 1
        gy, gx = np.mgrid[0:S, 0:S].astype(np.float64)
        st = np.empty((rows.size, S, S))
        wt = np.empty((rows.size, S, S))
        ini = np.empty((K, rows.size, 5))
        for k, r in enumerate(rows):
            members = tuple(int(q) for q in groups[r])
            st[k] = _stamp(read, shape, int(yc[r]), int(xc[r]), h)
            w = np.isfinite(st[k]).astype(np.float64)
            px, py = gx + xc[r] - h, gy + yc[r] - h
            own = np.min([np.hypot(px - cx[q], py - cy[q]) / scale[q] for q in members], axis=0)
            _mask_neighbours(w, px, py, own, (gcx[r].mean(), gcy[r].mean()),
                             1.5 * h * math.sqrt(2), tree, cx, cy, scale, members)
            if taper is not None and noise_beam is not None:
                w *= np.max([_taper(px - cx[q], py - cy[q], taper * sx0[q], taper * sy0[q])
                             for q in members], axis=0)
            wt[k] = w
            for c, q in enumerate(members):
                ini[c, k] = (fits["peak"][q], fits["x"][q] - xc[r] + h, fits["y"][q] - yc[r] + h,
                             fits["smaj"][q], fits["smin"][q])
        gk = fit_gaussian_blends(st, wt, list(ini), sigma_range=(0.5 * s0, 4.0 * h))
        kernel = None if noise_beam is None else correlation_kernel(S, *noise_beam)
        accepted = np.ones(rows.size, bool)
        for c, g in enumerate(gk):
            accepted &= _accepted(g, g.x0 + xc[rows] - h, g.y0 + yc[rows] - h, groups[rows, c],
                                  cx, cy, bw, bh)
        joint = fit_covariance(np.concatenate([g.params[accepted] for g in gk], axis=1),
                               wt[accepted], kernel)  # [m, 6K, 6K]: the blend's cross terms
        for c, g in enumerate(gk):
            t = groups[rows[accepted], c]
            fits["x"][t] = g.x0[accepted] + xc[rows[accepted]] - h
            fits["y"][t] = g.y0[accepted] + yc[rows[accepted]] - h
            fits["peak"][t], fits["smaj"][t] = g.amplitude[accepted], g.sigma_major[accepted]
            fits["smin"][t], fits["theta"][t] = g.sigma_minor[accepted], g.theta[accepted]
            fits["params"][t] = g.params[accepted]
            fits["cov"][t] = joint[:, 6 * c:6 * c + 6, 6 * c:6 * c + 6]


def measure_sources(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, int],
    boxes: np.ndarray,
    noise: NoiseMap,
    *,
    beam_area: float | None,
    unit_scale: float = 1.0,
    beam_sigma: float | None = None,
    box_scale: float = 2.0,
    noise_beam: tuple[float, float, float] | None = None,
    fit: bool = True,
    chunk: int = 256,
    progress: bool = False,
    source_read: Callable[[int, tuple[slice, ...]], np.ndarray] | None = None,
    rms: np.ndarray | None = None,
    taper: float | None = FIT_TAPER,
    blends: Sequence[Sequence[int]] | None = None,
) -> Measurements:
    """Measure the sources of 2D detection ``boxes [M, 6]`` (pixel-edge corners as decoded).

    ``beam_area``: pixels per beam (1 for a per-pixel image, ``None``: unknown, fluxes NaN);
    ``unit_scale``: image unit -> Jy; ``beam_sigma``: beam sigma in pixels (sets the smallest
    accepted size, half of it); ``box_scale``: box side / FWHM extent used in training (the
    starting size); ``noise_beam``: (sigma_major, sigma_minor, theta) in pixels and radians
    from +x towards +y of the noise's correlation, the restoring beam of a radio image (None:
    white noise), for the errors; ``fit=False`` measures from the boxes only; ``progress``
    reports on stderr.  ``source_read(i, window)`` gives source ``i`` its own image (e.g. a
    cube line's moment-0 map; each fitted alone, its neighbours not masked) and ``rms``
    [M] its noise, in place of ``read`` and ``noise``.  ``taper``: with ``noise_beam``
    (correlated noise), the fit's pixel weights fall as a Gaussian of ``taper`` times the
    box's starting sigmas around the box (:func:`_taper`; None: flat); in white noise the
    flat fit is the maximum-likelihood one and is kept.  ``blends``: groups of rows that
    are close sources boxed once (:func:`.deblend.split_blends`): after the first fits
    (each with the others' pixels masked) each group's sources are fitted together, their
    Gaussians summed on one stamp (:func:`.gaussfit.fit_gaussian_blends`).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    M = b.shape[0]
    cx, cy = 0.5 * (b[:, 0] + b[:, 3]) - 0.5, 0.5 * (b[:, 1] + b[:, 4]) - 0.5
    bw, bh = np.maximum(b[:, 3] - b[:, 0], 1.0), np.maximum(b[:, 4] - b[:, 1], 1.0)
    s0 = max(beam_sigma or 1.0, 0.5)
    sx0 = np.maximum(bw / (box_scale * FWHM), s0)
    sy0 = np.maximum(bh / (box_scale * FWHM), s0)
    x, y = cx.copy(), cy.copy()
    smaj, smin = np.maximum(sx0, sy0), np.minimum(sx0, sy0)
    theta = np.where(sx0 >= sy0, 0.0, 0.5 * np.pi)
    peak = np.full(M, np.nan)
    ok = np.zeros(M, bool)
    params = np.full((M, 6), np.nan)
    cov = np.full((M, 6, 6), np.nan)
    half = np.ceil(0.75 * np.maximum(bw, bh) + 2.0)
    hsize = np.array([next((k for k in _BUCKETS if k >= h), _BUCKETS[-1]) for h in half], int)
    tree = None
    if M > 1 and source_read is None:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.stack([cx, cy], 1))
    scale = 0.5 * np.maximum(bw, bh)
    bar = Progress(M, "measuring", enabled=progress and M > 0, unit="source")
    for h in np.unique(hsize) if M else []:
        members = np.flatnonzero(hsize == h)
        S = 2 * h + 1
        gy, gx = np.mgrid[0:S, 0:S].astype(np.float64)
        kernel = None if noise_beam is None else correlation_kernel(S, *noise_beam)
        step = max(4, min(chunk, 2_000_000 // (S * S)))  # bounds the fit's Jacobian memory
        for start in range(0, members.size, step):
            idx = members[start:start + step]
            st = np.empty((idx.size, S, S), np.float32)
            wt = np.empty((idx.size, S, S))
            ini = np.empty((idx.size, 5))
            for k, i in enumerate(idx):
                yc, xc = int(round(cy[i])), int(round(cx[i]))
                own_read = read if source_read is None else functools.partial(source_read, i)
                st[k] = _stamp(own_read, shape, yc, xc, h)
                w = np.isfinite(st[k]).astype(np.float64)
                px, py = gx + xc - h, gy + yc - h
                if tree is not None:
                    _mask_neighbours(w, px, py, np.hypot(px - cx[i], py - cy[i]) / scale[i],
                                     (cx[i], cy[i]), 1.5 * h * math.sqrt(2), tree, cx, cy,
                                     scale, (i,))
                ox, oy = cx[i] - (xc - h), cy[i] - (yc - h)
                if taper is not None and noise_beam is not None:
                    w *= _taper(gx - ox, gy - oy, taper * sx0[i], taper * sy0[i])
                wt[k] = w
                cen = st[k][max(int(round(oy)) - 1, 0):int(round(oy)) + 2,
                            max(int(round(ox)) - 1, 0):int(round(ox)) + 2]
                pk = float(np.nanmax(cen)) if np.isfinite(cen).any() else float("nan")
                ini[k] = (pk, ox, oy, sx0[i], sy0[i])
            peak[idx] = ini[:, 0]
            bar.update(idx.size)
            if not fit:
                continue
            good = np.isfinite(ini[:, 0]) & (ini[:, 0] > 0)
            if not good.any():
                continue
            g = fit_gaussians(st[good], wt[good], ini[good],
                              sigma_range=(0.5 * s0, 4.0 * h))
            sel = idx[good]
            acc = _accepted(g, g.x0 + np.rint(cx[sel]) - h, g.y0 + np.rint(cy[sel]) - h, sel,
                            cx, cy, bw, bh)
            t = sel[acc]
            x[t] = g.x0[acc] + np.rint(cx[t]) - h
            y[t] = g.y0[acc] + np.rint(cy[t]) - h
            peak[t], smaj[t], smin[t], theta[t] = (g.amplitude[acc], g.sigma_major[acc],
                                                   g.sigma_minor[acc], g.theta[acc])
            ok[t] = True
            params[t] = g.params[acc]
            cov[t] = fit_covariance(g.params[acc], wt[good][acc], kernel)
    bar.close()
    if fit and blends is not None and tree is not None:
        fits = dict(x=x, y=y, peak=peak, smaj=smaj, smin=smin, theta=theta, params=params,
                    cov=cov)
        for K in sorted({len(g) for g in blends} - {0, 1}):  # one batch per blend size
            gr = np.array([g for g in blends if len(g) == K], np.int64).reshape(-1, K)
            _fit_blends(read, shape, gr[ok[gr].all(axis=1)], fits, hsize, tree, cx, cy, scale,
                        sx0, sy0, bw, bh, s0, taper, noise_beam)
    if rms is None:
        rms = noise.at(y, x) if M else np.zeros(0)
    e = fit_errors(params, cov, rms)
    area = 2.0 * np.pi * smaj * smin
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = peak / rms
        if beam_area is None:
            flux = np.full(M, np.nan)
            flux_err = np.full(M, np.nan)
        else:
            flux = peak * area / beam_area * unit_scale
            flux_err = np.where(ok, np.abs(flux) * e.flux_rel,
                                rms * np.sqrt(np.maximum(area / beam_area, 1.0)) * unit_scale)
    return Measurements(x=x, y=y, peak=peak, flux=flux, flux_err=flux_err, rms=rms, snr=snr,
                        sigma_major=smaj, sigma_minor=smin, theta=theta, fit_ok=ok,
                        peak_err=np.where(ok, e.amplitude, rms), xy_cov=e.xy_cov,
                        sigma_major_err=e.sigma_major, sigma_minor_err=e.sigma_minor,
                        theta_err=e.theta, area_err_rel=e.area_rel)


def measure_boxes_3d(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, int, int],
    boxes: np.ndarray,
    noise: NoiseMap,
    *,
    beam_area: float | None,
    unit_scale: float = 1.0,
    box_scale: float = 2.0,
    errors: bool = True,
) -> Measurements:
    """Box measurements of cube detections: the position, centroid of the box's moment-0
    map (its channels summed, negative pixels left out; the box's centre without one); the
    peak voxel; the summed flux over the box (Jy x channels from a Jy/beam cube) and its
    error (the rms at the line's centre for noise correlated as the beam within a channel
    and independent between channels); the line's spectrum (the box summed per channel:
    ``line`` holds its 20% and 50% crossings, read past the box's channels where the box
    cuts the line above 20% of its peak, ``z`` the middle of the 50% ones, the box's
    centre when the spectrum has no positive peak, ``line_err`` their errors for the
    spectrum's noise, the rms times the square root of the box's pixels per channel times
    the beam area; ``errors`` False: NaN, not computed); the rms there and the SNR (peak
    voxel / rms); sizes from the box."""
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    M = b.shape[0]
    D, H, W = shape
    c = 0.5 * (b[:, :3] + b[:, 3:]) - 0.5
    peak, flux, zc = np.full(M, np.nan), np.full(M, np.nan), c[:, 2].copy()
    voxels = np.zeros(M)
    line, line_err = np.full((M, 4), np.nan), np.full((M, 3), np.nan)
    spectra: dict[int, tuple[np.ndarray, float]] = {}
    for i in range(M):
        lo = np.clip(np.floor(b[i, :3]).astype(int), 0, [W, H, D])
        hi = np.clip(np.ceil(b[i, 3:]).astype(int), 0, [W, H, D])
        if np.any(hi <= lo):
            continue
        a = read((slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])))
        if np.isfinite(a).any():
            peak[i] = float(np.nanmax(a))
            voxels[i] = float(np.isfinite(a).sum())
            if beam_area is not None:
                flux[i] = float(np.nansum(a)) / beam_area * unit_scale
            z0, spectrum = _whole_line(read, D, lo, hi, np.nansum(a, axis=(1, 2)))
            low, high = line_widths(spectrum, (0.2, 0.5))
            line[i] = z0 + np.array([low[0], high[0], low[1], high[1]])
            spectra[i] = spectrum, voxels[i] / a.shape[0]
            w = np.clip(np.nansum(a, axis=0), 0.0, None)  # the box's moment-0 map, > 0
            if w.sum() > 0:
                c[i, 0] = lo[0] + float((w.sum(0) * np.arange(w.shape[1])).sum() / w.sum())
                c[i, 1] = lo[1] + float((w.sum(1) * np.arange(w.shape[0])).sum() / w.sum())
    measured = np.isfinite(line[:, 0])
    zc[measured] = 0.5 * (line[measured, 2] + line[measured, 3])
    rms = noise.at(c[:, 1], c[:, 0], zc) if M else np.zeros(0)
    flux_err = (rms * np.sqrt(voxels / beam_area) * unit_scale if beam_area is not None
                else np.full(M, np.nan))
    if errors:
        rng = np.random.default_rng(0)
        for i, (spectrum, pixels) in spectra.items():  # a channel's sum: beam-correlated
            line_err[i] = line_errors(spectrum,
                                      rms[i] * math.sqrt(pixels * (beam_area or 1.0)), rng)
    sx = (b[:, 3] - b[:, 0]) / (box_scale * FWHM)
    sy = (b[:, 4] - b[:, 1]) / (box_scale * FWHM)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = peak / rms
    nan = np.full(M, np.nan)
    return Measurements(x=c[:, 0], y=c[:, 1], peak=peak, flux=flux,
                        flux_err=np.where(voxels > 0, flux_err, np.nan), rms=rms, snr=snr,
                        sigma_major=np.maximum(sx, sy), sigma_minor=np.minimum(sx, sy),
                        theta=np.where(sx >= sy, 0.0, 0.5 * np.pi), fit_ok=np.zeros(M, bool),
                        z=zc, peak_err=nan, xy_cov=np.full((M, 2, 2), np.nan),
                        sigma_major_err=nan, sigma_minor_err=nan, theta_err=nan,
                        area_err_rel=nan, line=line, line_err=line_err)


def _whole_line(read: Callable[[tuple[slice, ...]], np.ndarray], depth: int, lo: np.ndarray,
                hi: np.ndarray, spectrum: np.ndarray) -> tuple[int, np.ndarray]:
    """The first channel and the spectrum (the box's sky summed per channel) of a line
    whose box ``[lo, hi)`` (x, y, z) may cut it: while the line is still above 20% of its
    peak in an end channel of the window, that end is moved out by half the box's depth (at
    least 2 channels; up to :data:`LINE_EXTENSIONS` times, within the cube's ``depth``), so
    that a detector's tight box does not narrow its widths."""
    z0, z1 = int(lo[2]), int(hi[2])
    sky = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    step = max(2, (z1 - z0) // 2)
    for _ in range(LINE_EXTENSIONS):
        low, high = line_widths(spectrum, (0.2,))
        if not np.isfinite(low[0]):
            break
        grow_lo = z0 if low[0] < 0.5 and z0 > 0 else 0
        grow_hi = depth - z1 if high[0] > len(spectrum) - 1.5 and z1 < depth else 0
        if not (grow_lo or grow_hi):
            break
        n_lo, n_hi = min(step, grow_lo), min(step, grow_hi)
        parts = [np.nansum(read((slice(z0 - n_lo, z0),) + sky), axis=(1, 2)) if n_lo else None,
                 spectrum,
                 np.nansum(read((slice(z1, z1 + n_hi),) + sky), axis=(1, 2)) if n_hi else None]
        spectrum = np.concatenate([p for p in parts if p is not None])
        z0, z1 = z0 - n_lo, z1 + n_hi
    return z0, spectrum


def box_channels(lo: np.ndarray, hi: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole channels ``[z0, z1)`` that the pixel-edge channel spans ``[lo, hi)`` touch,
    within a cube of ``depth`` channels, at least one each."""
    z0 = np.clip(np.floor(lo), 0, depth).astype(int)
    return z0, np.maximum(np.clip(np.ceil(hi), 0, depth).astype(int), np.minimum(z0 + 1, depth))


def line_window(m: Measurements, boxes: np.ndarray, depth: int,
                margin: float = LINE_FLUX_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Per line, the channels ``[z0, z1)`` of its flux: the spectrum's 20% crossings widened
    by ``margin`` times the width between them on each side (the box's channels where the
    spectrum gave no crossing), within the cube."""
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    lo, hi = b[:, 2], b[:, 5]
    if m.line is not None and len(b):
        low, high = m.line[:, 0], m.line[:, 1]
        seen = np.isfinite(low) & np.isfinite(high)
        pad = margin * (high - low)
        # crossings are fractional channel centres: channel k spans [k - 0.5, k + 0.5)
        lo = np.where(seen, low - pad + 0.5, lo)
        hi = np.where(seen, high + pad + 0.5, hi)
    return box_channels(lo, hi, depth)


def fit_moment0(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, int, int],
    boxes: np.ndarray,
    noise: NoiseMap,
    m: Measurements,
    *,
    beam_area: float | None,
    unit_scale: float = 1.0,
    beam_sigma: float | None = None,
    box_scale: float = 2.0,
    noise_beam: tuple[float, float, float] | None = None,
    flux_margin: float = LINE_FLUX_MARGIN,
) -> Measurements:
    """``m`` (:func:`measure_boxes_3d`'s) with each line's position, sizes, orientation
    and their errors from an elliptical Gaussian fitted, as :func:`measure_sources` fits an
    image's sources, on the moment-0 map of its box's channels (its noise the rms of the
    line's centre channel times the square root of the channels summed: channels
    independent).

    The line's flux is the integral of a second Gaussian, fitted on the moment-0 map of
    the whole line: its spectrum's 20% crossings widened by ``flux_margin`` x the width
    between them on each side (:data:`LINE_FLUX_MARGIN`: 99.3% of a Gaussian line, all of a
    steep-sided one). The box's own sum misses the line's wings on the sky and along the
    channels, more so as a detector's boxes come out tight: a fitted integral does not
    depend on the box's size. Its error is the fit's, in that window's noise.

    Lines whose fit fails keep the box measurements (``fit_ok`` False; a failed flux fit
    keeps the box's sum); the peak and the line's crossings stay the box's."""
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    D, H, W = shape

    def fit(z0: np.ndarray, z1: np.ndarray) -> Measurements:
        def read_mom0(i: int, win: tuple[slice, ...]) -> np.ndarray:
            a = read((slice(z0[i], z1[i]),) + tuple(win))
            s = np.nansum(a, axis=0)
            s[~np.isfinite(a).any(axis=0)] = np.nan
            return s

        rms = noise.at(m.y, m.x, m.z) * np.sqrt(z1 - z0) if len(b) else np.zeros(0)
        return measure_sources(read, (H, W), b, noise, beam_area=beam_area,
                               unit_scale=unit_scale, beam_sigma=beam_sigma,
                               box_scale=box_scale, noise_beam=noise_beam,
                               source_read=read_mom0, rms=rms)

    r = fit(*box_channels(b[:, 2], b[:, 5], D))
    ok = r.fit_ok & np.isfinite(m.peak)
    out = {f.name: getattr(m, f.name) for f in fields(m)}
    for name in ("x", "y", "sigma_major", "sigma_minor", "theta", "fit_ok", "xy_cov",
                 "sigma_major_err", "sigma_minor_err", "theta_err", "area_err_rel"):
        mine, fitted = getattr(m, name), getattr(r, name)
        base = np.full_like(fitted, np.nan) if mine is None else np.array(mine)
        sel = ok.reshape((-1,) + (1,) * (fitted.ndim - 1))
        out[name] = np.where(sel, fitted, base)
    if beam_area is not None and len(b):
        whole = fit(*line_window(m, b, D, flux_margin))
        good = whole.fit_ok & np.isfinite(m.peak) & np.isfinite(whole.flux_err)
        out["flux"] = np.where(good, whole.flux, m.flux)
        out["flux_err"] = np.where(good, whole.flux_err, m.flux_err)
    return Measurements(**out)
