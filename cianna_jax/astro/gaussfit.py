"""Batched least-squares fits of one elliptical Gaussian per image stamp, or of several
summed (a blend of close sources), numpy only.

All stamps of a batch have the same size; each is fitted by Levenberg-Marquardt with
its own damping, vectorised over the batch.  The model is
``A exp(-(a dx^2 + 2 b dx dy + c dy^2) / 2)`` with ``dx = x - x0``, ``dy = y - y0``
(an inverse covariance ``[[a, b], [b, c]]`` kept positive definite); results are
returned as amplitude, centre, major/minor sigma and the major-axis angle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["GaussFit", "fit_gaussians", "fit_gaussian_blends", "gaussian_jacobian"]


class GaussFit(NamedTuple):
    """Per stamp: ``amplitude``; centre ``x0, y0`` (stamp pixels, pixel centres); ``sigma_major``,
    ``sigma_minor`` (pixels); ``theta`` angle of the major axis from +x towards +y (radians, in
    [0, pi)); ``ok`` converged to a valid Gaussian; ``params [n, 6]`` the fitted parameters
    as the fit holds them (amplitude, x0, y0 and the inverse covariance a, b, c), for
    :mod:`.fit_errors`."""

    amplitude: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    sigma_major: np.ndarray
    sigma_minor: np.ndarray
    theta: np.ndarray
    ok: np.ndarray
    params: np.ndarray


def _model(p: np.ndarray, gx: np.ndarray, gy: np.ndarray):
    A, x0, y0, a, b, c = (p[:, i, None] for i in range(6))
    dx, dy = gx[None] - x0, gy[None] - y0
    E = np.exp(-0.5 * np.minimum(a * dx * dx + 2 * b * dx * dy + c * dy * dy, 700.0))
    return A * E, E, dx, dy


def _jacobian(p, E, dx, dy) -> np.ndarray:
    A, a, b, c = p[:, 0, None], p[:, 3, None], p[:, 4, None], p[:, 5, None]
    AE = A * E
    return np.stack([E, AE * (a * dx + b * dy), AE * (b * dx + c * dy), -0.5 * AE * dx * dx,
                     -AE * dx * dy, -0.5 * AE * dy * dy], axis=-1)


def gaussian_jacobian(params: np.ndarray, size: int) -> np.ndarray:
    """Derivatives ``[n, size * size, 6]`` of the model on a ``size x size`` stamp (pixels in
    row-major order) with respect to ``params [n, 6]`` (amplitude, x0, y0, a, b, c)."""
    gy, gx = (g.reshape(-1).astype(np.float64) for g in np.mgrid[0:size, 0:size])
    _, E, dx, dy = _model(np.asarray(params, np.float64), gx, gy)
    return _jacobian(np.asarray(params, np.float64), E, dx, dy)


def _valid(p: np.ndarray, size: int) -> np.ndarray:
    A, x0, y0, a, b, c = p.T
    return ((A > 0) & (a > 0) & (c > 0) & (a * c - b * b > 0) & (x0 > -1) & (x0 < size)
            & (y0 > -1) & (y0 < size) & np.all(np.isfinite(p), axis=1))


def _solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(H, g[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a singular system: least squares one by one
        return np.stack([np.linalg.lstsq(h, v, rcond=None)[0] for h, v in zip(H, g)])


def _components(p: np.ndarray, gx: np.ndarray, gy: np.ndarray):
    """The summed model of the ``p.shape[1] // 6`` Gaussians of each stamp and, per
    Gaussian, what its Jacobian needs (its unit profile and offsets)."""
    m, parts = 0.0, []
    for k in range(p.shape[1] // 6):
        mk, E, dx, dy = _model(p[:, 6 * k:6 * k + 6], gx, gy)
        m = m + mk
        parts.append([E, dx, dy])
    return m, parts


def _all_valid(p: np.ndarray, size: int) -> np.ndarray:
    return np.all([_valid(p[:, 6 * k:6 * k + 6], size) for k in range(p.shape[1] // 6)], axis=0)


def _levenberg_marquardt(p: np.ndarray, d: np.ndarray, w: np.ndarray, gx: np.ndarray,
                         gy: np.ndarray, S: int, iters: int) -> np.ndarray:
    """Minimise sum(w^2 (d - model)^2) per stamp from ``p`` (``[n, 6 K]``: K Gaussians
    summed); each stamp has its own damping and stops on its own (the work of an iteration
    covers the stamps still moving)."""
    n, P = p.shape
    lam = np.full(n, 1e-2)
    m, parts = _components(p, gx, gy)
    r = (d - m) * w
    cost = np.sum(r * r, axis=1)
    active = np.ones(n, bool)
    for _ in range(iters):
        i = np.flatnonzero(active)
        if not i.size:
            break
        wi = w[i]
        J = np.concatenate([_jacobian(p[i, 6 * k:6 * k + 6], E[i], dx[i], dy[i])
                            for k, (E, dx, dy) in enumerate(parts)], axis=-1) * wi[..., None]
        JT = np.swapaxes(J, 1, 2)
        JTJ = JT @ J                       # batched BLAS: much faster than einsum here
        g = (JT @ r[i][..., None])[..., 0]
        diag = np.einsum("nii->ni", JTJ)
        H = JTJ + (lam[i, None] * np.maximum(diag, 1e-12))[:, :, None] * np.eye(P)[None]
        cand = p[i] + _solve(H, g)
        mc, cparts = _components(cand, gx, gy)
        rc = (d[i] - mc) * wi
        cc = np.sum(rc * rc, axis=1)
        cc = np.where(np.isfinite(cc), cc, np.inf)
        better = _all_valid(cand, S) & (cc < cost[i])
        rel = np.where(better, (cost[i] - cc) / np.maximum(cost[i], 1e-300), 0.0)
        b = i[better]
        p[b], cost[b], r[b] = cand[better], cc[better], rc[better]
        for old, new in zip(parts, cparts):
            for a, v in zip(old, new):
                a[b] = v[better]
        lam[i] = np.where(better, lam[i] / 3.0, lam[i] * 4.0)
        active[i] = ~((better & (rel < 1e-7)) | (lam[i] > 1e8))
    return p


def _start(init: np.ndarray) -> np.ndarray:
    """Fit parameters ``[n, 6]`` from ``init [n, 5]`` = (amplitude, x0, y0, sigma_x, sigma_y)."""
    ini = np.asarray(init, np.float64)
    n = ini.shape[0]
    return np.stack([ini[:, 0], ini[:, 1], ini[:, 2], 1.0 / ini[:, 3] ** 2, np.zeros(n),
                     1.0 / ini[:, 4] ** 2], axis=1)


def _result(p: np.ndarray, S: int, sigma_range: tuple[float, float]) -> GaussFit:
    """The :class:`GaussFit` of fitted parameters ``p [n, 6]`` on ``S x S`` stamps."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        A, x0, y0, a, b, c = p.T
        det = a * c - b * b
        good = det > 0
        safe = np.where(good, det, 1.0)
        cov = np.stack([np.stack([c / safe, -b / safe], -1), np.stack([-b / safe, a / safe], -1)], -2)
        ev, vec = np.linalg.eigh(np.where(good[:, None, None], cov, np.eye(2)))  # ascending
    smaj, smin = np.sqrt(np.maximum(ev[:, 1], 0)), np.sqrt(np.maximum(ev[:, 0], 0))
    theta = np.mod(np.arctan2(vec[:, 1, 1], vec[:, 0, 1]), np.pi)
    ok = _valid(p, S) & (smin >= sigma_range[0]) & (smaj <= sigma_range[1])
    return GaussFit(A, x0, y0, smaj, smin, theta, ok, p)


def _prepared(stamps: np.ndarray, weights: np.ndarray):
    st = np.asarray(stamps, np.float64)
    n, S, _ = st.shape
    w = np.asarray(weights, np.float64).reshape(n, S * S)
    d = np.nan_to_num(st.reshape(n, S * S)) * (w > 0)
    gy, gx = (g.reshape(-1).astype(np.float64) for g in np.mgrid[0:S, 0:S])
    return d, w, gx, gy, S


def fit_gaussians(
    stamps: np.ndarray,
    weights: np.ndarray,
    init: np.ndarray,
    *,
    iters: int = 30,
    sigma_range: tuple[float, float] = (0.3, 1e3),
) -> GaussFit:
    """Fit ``stamps [n, S, S]`` (NaN allowed where ``weights`` is 0) with per-pixel
    ``weights [n, S, S]``, starting from ``init [n, 5]`` = (amplitude, x0, y0, sigma_x,
    sigma_y).  A fit is ``ok`` when it ends valid (positive amplitude, centre inside the
    stamp) with sigmas in ``sigma_range``."""
    d, w, gx, gy, S = _prepared(stamps, weights)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = _levenberg_marquardt(_start(init), d, w, gx, gy, S, iters)
    return _result(p, S, sigma_range)


def fit_gaussian_blends(
    stamps: np.ndarray,
    weights: np.ndarray,
    init: Sequence[np.ndarray],
    *,
    iters: int = 50,
    sigma_range: tuple[float, float] = (0.3, 1e3),
) -> tuple[GaussFit, ...]:
    """Fit K elliptical Gaussians together to each of ``stamps [n, S, S]`` (a blend of K
    close sources: their sum is the model), from ``init`` = K ``[n, 5]`` starts as
    :func:`fit_gaussians` takes them; returns each component's fit (``ok`` only where
    every component ends valid)."""
    if len(init) < 1:
        raise ValueError("init: one [n, 5] start per component, got none")
    d, w, gx, gy, S = _prepared(stamps, weights)
    p = np.concatenate([_start(i) for i in init], axis=1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = _levenberg_marquardt(p, d, w, gx, gy, S, iters)
    fits = [_result(p[:, 6 * k:6 * k + 6], S, sigma_range) for k in range(len(init))]
    every = np.all([f.ok for f in fits], axis=0)
    return tuple(f._replace(ok=every) for f in fits)
