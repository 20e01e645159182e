"""The non-linear matter power spectrum by halofit (Smith et al. 2003, revised by Takahashi
et al. 2012), for the galaxy bias on scales where the matter is no longer linear.

From the linear spectrum's dimensionless form ``Delta^2_L(k) = k^3 P_L(k) / (2 pi^2)``:
the non-linear scale ``k_sigma`` (``sigma^2(1/k_sigma) = 1`` with a Gaussian filter), the
effective index ``n`` and curvature ``C`` of ``sigma^2`` there, then the two-halo (quasi-
linear) and one-halo terms of Takahashi et al.'s eqs. A4-A13:

    Delta^2_NL = Delta^2_L (1 + Delta^2_L)^beta_n / (1 + alpha_n Delta^2_L) exp(-y/4 - y^2/8)
                 + a_n y^(3 f1) / (1 + b_n y^f2 + (c_n f3 y)^(3 - gamma_n)) / (1 + nu_n / y^2),

``y = k / k_sigma``, ``f1, f2, f3`` powers of ``Omega_m(z)``, the coefficients
polynomials in ``n`` and ``C`` (and ``Omega_de(z) (1 + w)``). Flat universes with a
cosmological constant or a constant ``w``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .galaxy_bias import linear_power
from .luminosity import cosmology_by_name

__all__ = ["halofit", "nonlinear_power", "spectral_parameters", "power_function"]


def spectral_parameters(k: np.ndarray, delta2: np.ndarray) -> tuple[float, float, float]:
    """``(k_sigma, n_eff, C)`` of a linear spectrum given as ``Delta^2_L`` at increasing
    ``k`` (Mpc^-1, log-spaced over the scales that matter): ``sigma^2(R) = int Delta^2
    exp(-k^2 R^2) dln k`` is 1 at ``R = 1 / k_sigma``; ``n_eff = -3 - dln sigma^2 / dln R``
    and ``C = -d^2 ln sigma^2 / dln R^2`` there. ValueError where ``sigma^2`` never
    reaches 1 in the range (a spectrum too low: the matter linear on every scale)."""
    lnk = np.log(k)

    def moments(ln_r: float) -> tuple[float, float, float]:
        y2 = (k * math.exp(ln_r)) ** 2
        g = delta2 * np.exp(-y2)
        s0 = float(np.trapezoid(g, lnk))
        s1 = float(np.trapezoid(g * (-2.0 * y2), lnk))
        s2 = float(np.trapezoid(g * (4.0 * y2 * y2 - 4.0 * y2), lnk))
        return s0, s1, s2

    lo, hi = -math.log(k[-1]) + 1.0, -math.log(k[0]) - 1.0  # ln R bracketing sigma^2 = 1
    if moments(lo)[0] < 1.0 or moments(hi)[0] > 1.0:
        raise ValueError("halofit: sigma^2 does not cross 1 within the spectrum's range of k")
    for _ in range(48):  # the bracket (< 20 in ln R) to 1e-13
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if moments(mid)[0] > 1.0 else (lo, mid)
    s0, s1, s2 = moments(0.5 * (lo + hi))
    d1 = s1 / s0
    d2 = s2 / s0 - d1 * d1
    return math.exp(-0.5 * (lo + hi)), -3.0 - d1, -d2


def halofit(k: np.ndarray, p_lin: np.ndarray, omega_m: float, omega_de: float,
            w: float = -1.0) -> np.ndarray:
    """The non-linear power spectrum (units of ``p_lin``) at ``k`` (Mpc^-1, log-spaced from
    well above to well below the non-linear scale) from the linear one ``p_lin`` at the
    same redshift, whose ``omega_m`` and ``omega_de`` (the density parameters at that
    redshift) and dark energy's ``w`` are given."""
    k = np.asarray(k, np.float64)
    d2l = k ** 3 * np.asarray(p_lin, np.float64) / (2.0 * math.pi ** 2)
    k_sigma, n, c = spectral_parameters(k, d2l)
    de = omega_de * (1.0 + w)
    a_n = 10 ** (1.5222 + 2.8553 * n + 2.3706 * n ** 2 + 0.9903 * n ** 3 + 0.2250 * n ** 4
                 - 0.6038 * c + 0.1749 * de)
    b_n = 10 ** (-0.5642 + 0.5864 * n + 0.5716 * n ** 2 - 1.5474 * c + 0.2279 * de)
    c_n = 10 ** (0.3698 + 2.0404 * n + 0.8161 * n ** 2 + 0.5869 * c)
    gamma_n = 0.1971 - 0.0843 * n + 0.8460 * c
    alpha_n = abs(6.0835 + 1.3373 * n - 0.1959 * n ** 2 - 5.5274 * c)
    beta_n = (2.0379 - 0.7354 * n + 0.3157 * n ** 2 + 1.2490 * n ** 3 + 0.3980 * n ** 4
              - 0.1682 * c)
    nu_n = 10 ** (5.2105 + 3.6902 * n)
    f1, f2, f3 = omega_m ** -0.0307, omega_m ** -0.0585, omega_m ** 0.0743
    y = k / k_sigma
    quasi = d2l * (1.0 + d2l) ** beta_n / (1.0 + alpha_n * d2l) * np.exp(-y / 4.0 - y * y / 8.0)
    halo = a_n * y ** (3.0 * f1) / (1.0 + b_n * y ** f2 + (c_n * f3 * y) ** (3.0 - gamma_n))
    halo = halo / (1.0 + nu_n / (y * y))
    return (quasi + halo) * 2.0 * math.pi ** 2 / k ** 3


def nonlinear_power(k_mpc: np.ndarray, z: float = 0.0, cosmology: str | Any = "Planck18"
                    ) -> np.ndarray:
    """Halofit's non-linear matter power spectrum (Mpc^3) at ``k_mpc`` (Mpc^-1) and ``z``,
    from :func:`.galaxy_bias.linear_power` (Eisenstein-Hu without wiggles, sigma_8
    normalised) of ``cosmology`` (flat; its ``w0`` where it has one)."""
    cosmo = cosmology_by_name(cosmology) if isinstance(cosmology, str) else cosmology
    grid = np.geomspace(1e-4, 1e3, 4000)
    p = linear_power(grid, z, cosmo)
    e2 = float(cosmo.efunc(z)) ** 2
    om = float(cosmo.Om0) * (1 + z) ** 3 / e2
    ode = float(cosmo.Ode0) * float(cosmo.de_density_scale(z)) / e2
    w = float(getattr(cosmo, "w0", -1.0))
    nl = halofit(grid, p, om, ode, w)
    return np.exp(np.interp(np.log(np.asarray(k_mpc, np.float64)), np.log(grid), np.log(nl)))


def power_function(cosmology: str | Any = "Planck18"):
    """``power(k_mpc, z)``: :func:`nonlinear_power` with the linear spectrum's grid made
    once (for :func:`.galaxy_bias.matter_w`, which asks at a few hundred redshifts)."""
    from .galaxy_bias import growth_factor

    cosmo = cosmology_by_name(cosmology) if isinstance(cosmology, str) else cosmology
    grid = np.geomspace(1e-4, 1e3, 1400)
    p0 = linear_power(grid, 0.0, cosmo)
    w = float(getattr(cosmo, "w0", -1.0))

    def power(k_mpc: np.ndarray, z: float) -> np.ndarray:
        e2 = float(cosmo.efunc(z)) ** 2
        om = float(cosmo.Om0) * (1 + z) ** 3 / e2
        ode = float(cosmo.Ode0) * float(cosmo.de_density_scale(z)) / e2
        nl = halofit(grid, p0 * float(growth_factor(np.asarray(z), cosmo)) ** 2, om, ode, w)
        return np.exp(np.interp(np.log(np.asarray(k_mpc, np.float64)), np.log(grid),
                                np.log(nl)))

    return power
