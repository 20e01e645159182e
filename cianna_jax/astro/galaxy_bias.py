"""The linear bias of radio sources: their angular correlation against the dark matter's.

The matter's angular correlation function for the sources' redshift distribution ``N(z)``
(normalised to unit integral), by Limber's equation in Fourier space (e.g. Hale et al. 2024,
for LoTSS-DR2):

    w_m(theta) = int dz N(z)^2 H(z)/c  int dk k/(2 pi) P(k, z) J0(k chi(z) theta),

with the linear matter power spectrum ``P(k, z) = A k^n_s T(k)^2 D(z)^2``: Eisenstein &
Hu's (1998) transfer function without the baryon wiggles, normalised to the cosmology's
sigma_8, and ``D`` the linear growth of a flat Lambda-CDM universe. On scales where the
sources trace the matter linearly, ``w = b^2 w_m``: the bias ``b`` is fitted to the bins
beyond a comoving scale (5 Mpc/h at the median redshift by default; smaller scales are
non-linear), with the integral constraint as for the power law (:mod:`.clustering`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .limber import median_redshift
from .luminosity import cosmology_by_name
from .spectral import C_KMS

__all__ = ["linear_power", "growth_factor", "matter_w", "BiasFit", "fit_bias"]

def _cosmo(cosmology: str | Any) -> Any:
    return cosmology_by_name(cosmology) if isinstance(cosmology, str) else cosmology


def growth_factor(z: np.ndarray, cosmology: str | Any = "Planck18") -> np.ndarray:
    """The linear growth ``D(z) / D(0)`` of a flat Lambda-CDM universe:
    ``D(a) ~ E(a) int_0^a da' / (a' E(a'))^3``."""
    cosmo = _cosmo(cosmology)
    a_grid = np.linspace(1e-5, 1.0, 20001)
    e = np.asarray(cosmo.efunc(1.0 / a_grid - 1.0))
    cum = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(a_grid)
                                           * ((a_grid[1:] * e[1:]) ** -3.0
                                              + (a_grid[:-1] * e[:-1]) ** -3.0))])
    a = 1.0 / (1.0 + np.asarray(z, np.float64))
    d = np.asarray(cosmo.efunc(1.0 / a - 1.0)) * np.interp(a, a_grid, cum)
    return d / (cosmo.efunc(0.0) * cum[-1])


def _transfer_no_wiggle(k_mpc: np.ndarray, cosmo: Any) -> np.ndarray:
    """Eisenstein & Hu (1998) eqs. 26-31, ``k`` in Mpc^-1."""
    h, om = cosmo.h, cosmo.Om0
    ob = cosmo.Ob0 or 0.0
    wm, wb, fb = om * h * h, ob * h * h, ob / om
    theta = cosmo.Tcmb0.to_value("K") / 2.7
    s = 44.5 * math.log(9.83 / wm) / math.sqrt(1.0 + 10.0 * wb ** 0.75)  # Mpc
    alpha = 1.0 - 0.328 * math.log(431.0 * wm) * fb + 0.38 * math.log(22.3 * wm) * fb * fb
    gamma = om * h * (alpha + (1.0 - alpha) / (1.0 + (0.43 * k_mpc * s) ** 4))
    q = k_mpc / h * theta * theta / gamma
    lo = np.log(2.0 * math.e + 1.8 * q)
    return lo / (lo + (14.2 + 731.0 / (1.0 + 62.5 * q)) * q * q)


def linear_power(k_mpc: np.ndarray, z: float = 0.0, cosmology: str | Any = "Planck18", *,
                 sigma8: float | None = None, n_s: float | None = None) -> np.ndarray:
    """The linear matter power spectrum (Mpc^3) at wavenumbers ``k_mpc`` (Mpc^-1) and
    redshift ``z``, normalised to ``sigma8`` at z = 0 (default: the cosmology's, as astropy
    records Planck's; 0.81 otherwise), spectral index ``n_s`` (default the cosmology's
    ``n``, else 0.965)."""
    cosmo = _cosmo(cosmology)
    meta = getattr(cosmo, "meta", {}) or {}
    s8 = as_bounded_float(sigma8 if sigma8 is not None else meta.get("sigma8", 0.81), "sigma8")
    ns = float(n_s if n_s is not None else meta.get("n", 0.965))
    kk = np.geomspace(1e-5, 1e2, 4000)
    r8 = 8.0 / cosmo.h
    x = kk * r8
    win = 3.0 * (np.sin(x) - x * np.cos(x)) / x ** 3
    shape = kk ** ns * _transfer_no_wiggle(kk, cosmo) ** 2
    var = np.trapezoid(kk ** 3 * shape * win ** 2, np.log(kk)) / (2.0 * math.pi ** 2)
    k = np.asarray(k_mpc, np.float64)
    p = s8 * s8 / var * k ** ns * _transfer_no_wiggle(k, cosmo) ** 2
    return p * float(growth_factor(np.asarray(z), cosmo)) ** 2


def matter_w(theta_deg: np.ndarray, z: np.ndarray, nz: np.ndarray,
             cosmology: str | Any = "Planck18", *,
             power: Callable[[np.ndarray, float], np.ndarray] | None = None,
             z_samples: int = 200) -> np.ndarray:
    """The matter's angular correlation at separations ``theta_deg`` for the redshift
    distribution ``nz`` at ``z`` (any normalisation; interpolated linearly onto
    ``z_samples`` redshifts), by Limber's equation; ``power(k_mpc, z)`` (Mpc^3) replaces
    :func:`linear_power`."""
    from scipy.special import j0

    cosmo = _cosmo(cosmology)
    z, nz = np.asarray(z, np.float64), np.asarray(nz, np.float64)
    zz = np.linspace(max(z[0], 1e-3), z[-1], int(z_samples))
    n = np.interp(zz, z, nz)
    n = n / np.trapezoid(n, zz)
    chi = np.asarray(cosmo.comoving_transverse_distance(zz).to_value("Mpc"))
    h_c = np.asarray(cosmo.H(zz).to_value("km/(s Mpc)")) / C_KMS  # dz/dchi, Mpc^-1
    lnk = np.linspace(math.log(1e-4), math.log(50.0), 3000)
    k = np.exp(lnk)
    if power is None:
        p0 = linear_power(k, 0.0, cosmo)
        pk = p0[None] * growth_factor(zz, cosmo)[:, None] ** 2
    else:
        pk = np.stack([power(k, float(zi)) for zi in zz])
    out = []
    for t in np.radians(np.atleast_1d(np.asarray(theta_deg, np.float64))):
        inner = np.trapezoid(k[None] ** 2 * pk * j0(k[None] * chi[:, None] * t), lnk,
                             axis=1) / (2.0 * math.pi)
        out.append(np.trapezoid(n * n * h_c * inner, zz))
    return np.array(out)


@dataclass(frozen=True)
class BiasFit:
    """``w = bias^2 w_m`` fitted over ``n_bins`` bins from ``theta_min`` (degrees, the
    comoving ``scale_mpc_h`` at the median redshift ``z_median``); ``chi2`` of the fit;
    ``power_model`` the matter's spectrum ("linear", or "halofit")."""

    bias: float
    bias_err: float
    chi2: float
    n_bins: int
    theta_min: float
    scale_mpc_h: float
    z_median: float
    integral_constraint: float
    power_model: str = "linear"

    def as_dict(self) -> dict[str, Any]:
        return {"bias": self.bias, "bias_err": self.bias_err, "chi2": self.chi2,
                "dof": self.n_bins - 1, "theta_min_deg": self.theta_min,
                "scale_mpc_h": self.scale_mpc_h, "z_median": self.z_median,
                "integral_constraint": self.integral_constraint,
                "power_model": self.power_model}


def fit_bias(corr: Any, z: np.ndarray, nz: np.ndarray, *, cosmology: str | Any = "Planck18",
             scale_mpc_h: float = 5.0,
             power: Callable[[np.ndarray, float], np.ndarray] | None = None,
             power_model: str = "linear") -> BiasFit:
    """The linear bias of a measured correlation (:class:`.clustering.Correlation`, its
    jackknife errors) for the redshift distribution ``nz`` at ``z``: ``b^2`` by weighted
    least squares over the bins beyond ``scale_mpc_h`` comoving h^-1 Mpc at the median
    redshift, the model's integral constraint taken off as the estimator takes it.
    ``power(k_mpc, z)``: the matter's spectrum instead of the linear one (e.g.
    :func:`.halofit.power_function`, named ``power_model``)."""
    cosmo = _cosmo(cosmology)
    z, nz = np.asarray(z, np.float64), np.asarray(nz, np.float64)
    z_med = median_redshift(z, nz)
    scale = as_bounded_float(scale_mpc_h, "scale_mpc_h")
    chi_med = float(cosmo.comoving_transverse_distance(z_med).to_value("Mpc"))
    theta_min = math.degrees(scale / cosmo.h / chi_med)
    use = (corr.theta >= theta_min) & np.isfinite(corr.w) & np.isfinite(corr.w_err) & (
        corr.w_err > 0)
    if not use.any():
        raise ValueError(f"bias: no bin beyond {scale:g} Mpc/h ({theta_min * 60:.3g} arcmin at "
                         f"z {z_med:.2f}) with an error; measure to larger separations")
    ic_mid = np.sqrt(corr.ic_edges[:-1] * corr.ic_edges[1:])
    both = matter_w(np.concatenate([corr.theta[use], ic_mid]), z, nz, cosmo, power=power)
    model, ic_model = both[:int(use.sum())], both[int(use.sum()):]
    ic = float(np.sum(corr.ic_rr * ic_model) / max(np.sum(corr.ic_rr), 1e-300))
    g = model - ic
    y, s = corr.w[use], corr.w_err[use]
    b2 = float(np.sum(y * g / s ** 2) / np.sum(g * g / s ** 2))
    b2_err = float(1.0 / math.sqrt(np.sum(g * g / s ** 2)))
    chi2 = float(np.sum(((y - b2 * g) / s) ** 2))
    b = math.sqrt(b2) if b2 > 0 else float("nan")
    return BiasFit(b, b2_err / (2.0 * b) if b2 > 0 else float("nan"), chi2, int(use.sum()),
                   theta_min, scale, z_med, b2 * ic, power_model)
