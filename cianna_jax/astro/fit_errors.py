"""1-sigma errors of the Gaussian fits of :mod:`.gaussfit`, in correlated image noise.

A fit is unweighted least squares on a stamp.  In noise of rms ``sigma`` whose pixels are
correlated as a kernel ``K`` (value 1 at zero lag), its parameters' linearised covariance is

    Cov = sigma^2 (J^T J)^-1 J^T C J (J^T J)^-1,   C_pq = K(r_p - r_q),

with ``J`` the model's Jacobian on the stamp's fitted pixels (masked pixels carry no
weight).  In white noise (``C = 1``) it is the usual ``sigma^2 (J^T J)^-1``, Condon
(1997, PASP 109, 166)'s result for Gaussian fits.  The noise of a radio image is correlated
as its dirty beam, whose main lobe the restoring beam describes, so ``K`` is the beam;
Condon's correlated-noise formulae assume an optimally weighted fit and come out up to 1.3x
too small for this unweighted one (a point source's position), which this form follows.
Sizes, angle and integrated flux get their errors by the delta method.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .gaussfit import gaussian_jacobian

__all__ = ["FitErrors", "correlation_kernel", "fit_covariance", "fit_errors"]

_ANGLE_LIMIT = 0.5  # radians: a larger linearised angle error is reported as pi / 2
_DENSE_MAX = 24  # stamp side up to which C is a dense matrix
_MAX_ELEMENTS = 400_000  # stamps x padded pixels per FFT batch (bounds the memory)


class FitErrors(NamedTuple):
    """Per fit, 1-sigma errors in the units of :class:`.gaussfit.GaussFit`: ``amplitude``
    (stamp unit), ``x0, y0`` and ``sigma_major, sigma_minor`` (pixels), ``theta`` (radians;
    pi/2 for an unconstrained angle: a nearly round fit, whose linearised error passes
    0.5 rad), ``flux_rel`` (relative error of the integrated
    flux ``2 pi A sigma_major sigma_minor``), ``xy_cov`` (covariance of x0 and y0,
    pixels^2, for errors along other axes) and ``area_rel`` (relative error of the area
    ``sigma_major sigma_minor``, the two axes' covariance included)."""

    amplitude: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    sigma_major: np.ndarray
    sigma_minor: np.ndarray
    theta: np.ndarray
    flux_rel: np.ndarray
    xy_cov: np.ndarray
    area_rel: np.ndarray


def correlation_kernel(size: int, sigma_major: float, sigma_minor: float,
                       theta: float) -> np.ndarray:
    """The noise correlation ``K`` of a ``size x size`` stamp at every lag, ``[2 size - 1,
    2 size - 1]`` (zero lag at the centre): a Gaussian of the beam's sigmas (pixels) with
    its major axis at ``theta`` (radians from +x towards +y), 1 at zero lag."""
    if not (sigma_major > 0 and sigma_minor > 0 and np.isfinite(theta)):
        raise ValueError("correlation_kernel: sigmas must be > 0 and theta finite; received "
                         f"{sigma_major!r}, {sigma_minor!r}, {theta!r}")
    r = np.arange(-(size - 1), size, dtype=np.float64)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    c, s = np.cos(theta), np.sin(theta)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))


def _correlated(jw: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``C @ jw`` for each stamp and parameter: ``jw [n, S, S, P]`` convolved with the
    kernel over the stamp (zero outside it): a dense product for small stamps, else by FFT
    of size >= 2S - 1."""
    n, S = jw.shape[0], jw.shape[1]
    if S <= _DENSE_MAX:  # small stamps: the dense correlation matrix is cheaper than FFTs
        lag = np.arange(S)[:, None] - np.arange(S)[None, :] + S - 1
        C = kernel[lag[:, None, :, None], lag[None, :, None, :]].reshape(S * S, S * S)
        return (C @ jw.reshape(n, S * S, jw.shape[-1])).reshape(jw.shape)
    L = 2 * S
    kp = np.zeros((L, L))
    kp[:S, :S] = kernel[S - 1:, S - 1:]             # lags >= 0 in both axes
    kp[:S, L - S + 1:] = kernel[S - 1:, :S - 1]     # x lags < 0
    kp[L - S + 1:, :S] = kernel[:S - 1, S - 1:]     # y lags < 0
    kp[L - S + 1:, L - S + 1:] = kernel[:S - 1, :S - 1]
    kf = np.fft.rfft2(kp)[None, :, :, None]
    out = np.empty_like(jw)
    step = max(1, _MAX_ELEMENTS // (L * L * jw.shape[-1]))
    for i in range(0, n, step):
        f = np.fft.rfft2(jw[i:i + step], s=(L, L), axes=(1, 2))
        out[i:i + step] = np.fft.irfft2(f * kf, s=(L, L), axes=(1, 2))[:, :S, :S]
    return out


def fit_covariance(params: np.ndarray, weights: np.ndarray,
                   kernel: np.ndarray | None = None) -> np.ndarray:
    """Covariance ``[n, 6 K, 6 K]`` of the fitted parameters ``params [n, 6 K]`` (per
    Gaussian amplitude, x0, y0 and the inverse covariance entries a, b, c, as
    :class:`.gaussfit.GaussFit` keeps them; K > 1 Gaussians fitted together, summed, as
    :func:`.gaussfit.fit_gaussian_blends` does) for noise of unit rms, on stamps whose
    pixels have ``weights [n, S, S]`` as the fit had them (it minimised the sum of
    weight^2 x residual^2; 0: not fitted; the sandwich H^-1 J^T W C W J H^-1 with
    W = weight^2 and H = J^T W J); ``kernel`` from :func:`correlation_kernel`, or None
    for white noise.  NaN where the fit's normal matrix is singular."""
    p = np.asarray(params, np.float64)
    w = np.asarray(weights, np.float64)
    n, S = w.shape[0], w.shape[1]
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] % 6 or not p.shape[1] \
            or w.shape != (n, S, S):
        raise ValueError(f"fit_covariance: params [n, 6] (or [n, 6 K]) and weights [n, S, S] "
                         f"expected; received {p.shape} and {w.shape}")
    P, K = p.shape[1], p.shape[1] // 6
    if kernel is not None and np.shape(kernel) != (2 * S - 1, 2 * S - 1):
        raise ValueError(f"fit_covariance: kernel of shape {(2 * S - 1, 2 * S - 1)} expected "
                         f"for {S}x{S} stamps; received {np.shape(kernel)}")
    amp = p[:, 0::6].copy()  # [n, K]
    unit = p.copy()
    unit[:, 0::6] = 1.0  # the Jacobian of unit amplitudes: better conditioned in any unit
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        wf = w.reshape(n, S * S)[..., None]
        jac = np.concatenate([gaussian_jacobian(unit[:, 6 * k:6 * k + 6], S)
                              for k in range(K)], axis=-1)
        jw = jac * wf  # [n, S*S, 6 K]: the fit's weighted Jacobian
        H = np.swapaxes(jw, 1, 2) @ jw
        finite = np.all(np.isfinite(H), axis=(1, 2))
        H = np.where(finite[:, None, None], H, np.eye(P))
        inv, cond = _pinv_cond(H)
        binary = bool(np.all((w == 0) | (w == 1)))
        if kernel is None and binary:
            cov = inv  # W = W^2: the sandwich reduces to H^-1
        else:
            wj = jw * wf  # W J
            cj = wj if kernel is None else _correlated(wj.reshape(n, S, S, P),
                                                        np.asarray(kernel, np.float64))
            middle = np.swapaxes(wj, 1, 2) @ cj.reshape(n, S * S, P)
            cov = inv @ middle @ inv
        scale = np.ones((n, K, 6))
        scale[:, :, 1:] = 1.0 / amp[:, :, None]  # back to the fitted amplitudes' parameters
        scale = scale.reshape(n, P)
        cov = cov * scale[:, :, None] * scale[:, None, :]
    cov[~finite | ~(cond < 1e12) | ~np.all(amp > 0, axis=1)] = np.nan
    return cov


def _pinv_cond(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-inverses and condition numbers of symmetric matrices ``H [n, k, k]`` from
    one eigendecomposition (``np.linalg.pinv(H, hermitian=True)`` and ``np.linalg.cond(H)``
    would take two)."""
    if len(H) == 0:
        return np.zeros_like(H), np.zeros(0)
    vals, vecs = np.linalg.eigh(H)
    size = np.abs(vals)
    top = size.max(axis=1)
    keep = size > 1e-15 * top[:, None]  # pinv's default cut
    inv_vals = np.where(keep, 1.0 / np.where(keep, vals, 1.0), 0.0)
    inv = (vecs * inv_vals[:, None, :]) @ np.swapaxes(vecs, 1, 2)
    low = size.min(axis=1)
    cond = np.where(low > 0, top / np.where(low > 0, low, 1.0), np.inf)
    return inv, cond


def fit_errors(params: np.ndarray, cov: np.ndarray, rms: np.ndarray) -> FitErrors:
    """1-sigma errors of each fit (``params [n, 6]``, ``cov [n, 6, 6]`` from
    :func:`fit_covariance`) in noise of rms ``rms [n]`` (the stamp's unit)."""
    p = np.asarray(params, np.float64)
    s2 = np.asarray(rms, np.float64) ** 2
    c = np.asarray(cov, np.float64) * s2[:, None, None]
    A, a, b, cc = p[:, 0], p[:, 3], p[:, 4], p[:, 5]
    n = p.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        half = 0.5 * (a - cc)
        D = np.sqrt(half * half + b * b)                  # eigenvalues of [[a, b], [b, c]]:
        mu_small, mu_big = 0.5 * (a + cc) - D, 0.5 * (a + cc) + D   # 1/smaj^2, 1/smin^2
        g = np.zeros((5, n, 6))                            # gradients of derived quantities
        t = half / np.where(D > 0, D, np.inf)
        bd = b / np.where(D > 0, D, np.inf)
        # sigma_major = mu_small^-1/2, sigma_minor = mu_big^-1/2
        for k, (mu, sgn) in enumerate(((mu_small, -1.0), (mu_big, 1.0))):
            f = -0.5 * mu ** -1.5
            g[k, :, 3] = f * (0.5 + sgn * 0.5 * t)
            g[k, :, 4] = f * sgn * bd
            g[k, :, 5] = f * (0.5 - sgn * 0.5 * t)
        # theta = 0.5 atan2(-2b, c - a)
        d4 = 4.0 * D * D
        g[2, :, 3], g[2, :, 4], g[2, :, 5] = -b / d4, (a - cc) / d4, b / d4
        # relative flux: A / sqrt(ac - b^2)
        det = a * cc - b * b
        g[3, :, 0] = 1.0 / A
        g[3, :, 3], g[3, :, 4], g[3, :, 5] = -cc / (2 * det), b / det, -a / (2 * det)
        g[4, :, 3:] = g[3, :, 3:]                          # relative area: det^-1/2
        var = np.einsum("kni,nij,knj->kn", g, c, g)
        sd = np.sqrt(np.maximum(var, 0.0))
        diag = np.sqrt(np.maximum(np.einsum("nii->ni", c), 0.0))
    # past ~30 degrees the linear estimate means nothing (a nearly round fit): unconstrained
    theta = np.where(D > 0, sd[2], np.inf)
    theta = np.where(theta > _ANGLE_LIMIT, 0.5 * np.pi, theta)
    theta = np.where(np.isfinite(c[:, 3:, 3:]).all(axis=(1, 2)), theta, np.nan)
    xy = c[:, 1:3, 1:3]
    return FitErrors(amplitude=diag[:, 0], x0=diag[:, 1], y0=diag[:, 2], sigma_major=sd[0],
                     sigma_minor=sd[1], theta=theta, flux_rel=sd[3], xy_cov=xy,
                     area_rel=sd[4])
