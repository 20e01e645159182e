"""RM-CLEAN: Faraday dispersion functions deconvolved from their RMSF (Heald et al. 2009).

RM synthesis sees a source's Faraday spectrum through the RMSF, whose sidelobes (and the
overlap of components closer than a few FWHM) shift and hide components. RM-CLEAN, as
Hoegbom's CLEAN in one dimension: find the peak of the residual |F|, subtract ``gain``
times it shifted onto the RMSF there, keep that as a component, until the peak is below
``cutoff`` times the FDF's noise; the clean FDF is the components convolved with a
Gaussian of the RMSF's FWHM, plus the residual. Its components, gathered where they lie
within one FWHM of each other, are the source's Faraday components: those of at least
:data:`COMPONENT_SIGMA` times the noise are counted, and two or more make the source
*Faraday complex* (several emitting or rotating regions along the line of sight).

The functions use the convention that ``lambda_0^2`` (the channels' weighted mean) is
taken out of the phase, so that a component's phase is smooth in ``phi``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["rmsf", "rm_clean", "faraday_components", "COMPONENT_SIGMA", "GAIN"]

#: the summed amplitude, over the FDF's noise, of a counted Faraday component
COMPONENT_SIGMA = 5.0
#: the fraction of the peak a CLEAN iteration takes
GAIN = 0.1


def rmsf(w: np.ndarray, lam2: np.ndarray, lam0: np.ndarray, dphi: float, m: int) -> np.ndarray:
    """``(n, 2m - 1)`` complex: each source's RMSF (weights ``w (n, K)``, ``lam2 (K,)``,
    ``lam0 (n,)``) at lags ``(-(m - 1) .. m - 1) * dphi``, 1 at zero lag."""
    lags = dphi * np.arange(-(m - 1), m)
    shift = lam2[None, :] - lam0[:, None]  # (n, K)
    out = np.empty((len(w), lags.size), np.complex128)
    for i in range(len(w)):  # (n, K) x (K, 2m - 1) each: bounded memory per source
        out[i] = (w[i] @ np.exp(-2j * shift[i][:, None] * lags[None, :])) / w[i].sum()
    return out


def rm_clean(fdf: np.ndarray, r: np.ndarray, sigma: np.ndarray, fwhm: float, dphi: float, *,
             cutoff: float = 3.0, gain: float = GAIN, max_iter: int = 2000
             ) -> tuple[np.ndarray, np.ndarray]:
    """CLEAN each source's FDF ``fdf (n, m)`` (complex, ``lambda_0`` taken out) with its RMSF
    ``r (n, 2m - 1)`` down to ``cutoff`` times its noise ``sigma (n,)``; returns the clean
    FDF ``(n, m)`` (components restored with a Gaussian of ``fwhm`` on the grid of step
    ``dphi``, plus the residual) and the components ``(n, m)``."""
    n, m = fdf.shape
    comps = np.zeros_like(fdf)
    res = fdf.copy()
    for i in range(n):
        if not (np.isfinite(sigma[i]) and sigma[i] > 0 and np.all(np.isfinite(res[i]))):
            continue
        floor = cutoff * sigma[i]
        for _ in range(max_iter):
            j = int(np.argmax(np.abs(res[i])))
            if abs(res[i, j]) < floor:
                break
            c = gain * res[i, j]
            comps[i, j] += c
            res[i] -= c * r[i, m - 1 - j:2 * m - 1 - j]
    half = int(math.ceil(3 * fwhm / dphi))
    k = np.exp(-4 * math.log(2) * (dphi * np.arange(-half, half + 1)) ** 2 / fwhm**2)
    restored = np.stack([np.convolve(c, k, mode="same") if m >= k.size else
                         np.convolve(c, k, mode="full")[half:half + m] for c in comps]) \
        if n else comps
    return restored + res, comps


def faraday_components(comps: np.ndarray, phi: np.ndarray, fwhm: float, sigma: np.ndarray,
                       threshold: float = COMPONENT_SIGMA) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Each source's Faraday components: its CLEAN components gathered where they lie
    within ``fwhm`` of each other, their amplitude the modulus of their sum and their depth
    the amplitude-weighted mean; those of at least ``threshold`` times ``sigma`` counted.
    Returns (count (n,), the second brightest's depth and amplitude (n,), NaN for one)."""
    n = len(comps)
    count = np.zeros(n, np.int64)
    second_phi, second_amp = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        at = np.flatnonzero(comps[i] != 0)
        if not at.size:
            continue
        cuts = np.flatnonzero(np.diff(phi[at]) > fwhm) + 1
        groups = np.split(at, cuts)
        amp = np.array([abs(comps[i, g].sum()) for g in groups])
        depth = np.array([np.average(phi[g], weights=np.abs(comps[i, g])) for g in groups])
        keep = amp >= threshold * sigma[i]
        count[i] = int(keep.sum())
        if count[i] >= 2:
            order = np.argsort(-amp[keep])
            second_phi[i], second_amp[i] = depth[keep][order[1]], amp[keep][order[1]]
    return count, second_phi, second_amp
