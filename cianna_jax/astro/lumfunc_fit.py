"""A parametric luminosity function fitted to the binned one: a double power law, with
pure luminosity or density evolution.

    Phi(L, z) = Phi* (1 + z)^k_D / ((L / L*(z))^alpha + (L / L*(z))^beta),
    L*(z) = L* (1 + z)^k_L,

per dex of luminosity (``alpha`` the faint slope, ``beta`` the bright one, in dex per
dex), the form radio surveys fit to their star-forming and AGN populations (e.g. Novak et
al. 2017, Smolcic et al. 2017: ``k_L`` for pure luminosity evolution, "ple"; ``k_D`` for
pure density evolution, "pde"; "none" keeps both 0). Fitted to the 1/Vmax estimate's
complete bins (:class:`.luminosity_function.LuminosityFunction`) by least squares in
``log10 Phi`` with the bins' Poisson errors, each bin's model the function averaged over
its luminosity range at its sources' mean redshift; the parameters' errors from the fit's
covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalogue import make_table

__all__ = ["EVOLUTIONS", "LumFuncFit", "double_power_law", "fit_luminosity_function"]

#: the evolution models: which of (k_L, k_D) is free
EVOLUTIONS = {"none": (), "ple": ("k_l",), "pde": ("k_d",)}
_SHAPE = ("log_phi_star", "log_l_star", "alpha", "beta")


def double_power_law(logl: np.ndarray, z: np.ndarray | float, log_phi_star: float,
                     log_l_star: float, alpha: float, beta: float, k_l: float = 0.0,
                     k_d: float = 0.0) -> np.ndarray:
    """``Phi`` (Mpc^-3 dex^-1) at ``log10 L`` (W/Hz) and redshift ``z`` (see the module)."""
    logl, z = np.asarray(logl, np.float64), np.asarray(z, np.float64)
    x = logl - log_l_star - k_l * np.log10(1 + z)
    with np.errstate(over="ignore"):
        denom = 10.0 ** (alpha * x) + 10.0 ** (beta * x)
    return 10.0 ** log_phi_star * (1 + z) ** k_d / denom


@dataclass(frozen=True)
class LumFuncFit:
    """The fitted ``params`` and their 1-sigma ``errors`` (names of
    :func:`double_power_law`), the ``evolution`` model, ``chi2`` over ``dof`` and the bins
    used (``n_bins``)."""

    params: dict[str, float]
    errors: dict[str, float]
    evolution: str
    chi2: float
    dof: int
    n_bins: int
    covariance: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    def __call__(self, logl: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        return double_power_law(logl, z, **self.params)

    def table(self) -> Any:
        """One row per parameter: name, value, error (NaN for a fixed one)."""
        names = list(self.params)
        return make_table({"parameter": np.array(names),
                           "value": np.array([self.params[k] for k in names]),
                           "error": np.array([self.errors.get(k, np.nan) for k in names])},
                          meta={"evolution": self.evolution, "chi2": self.chi2,
                                "dof": self.dof})

    def summary(self) -> str:
        """The parameters with their errors and the fit's chi^2 in one line."""
        parts = [f"{k} {v:.3f}" + (f" +- {self.errors[k]:.3f}" if k in self.errors else "")
                 for k, v in self.params.items() if k in self.errors]
        return (f"{self.evolution} evolution: " + ", ".join(parts)
                + f"; chi2 {self.chi2:.1f} for {self.dof} degrees of freedom "
                  f"({self.n_bins} bins)")


def _binned(fit_params: dict[str, float], lo: np.ndarray, hi: np.ndarray,
            z: np.ndarray) -> np.ndarray:
    """The model averaged over each bin's luminosity range at its redshift."""
    t = np.linspace(0.0, 1.0, 9)
    grid = lo[:, None] + (hi - lo)[:, None] * t[None]
    return np.trapezoid(double_power_law(grid, z[:, None], **fit_params), t, axis=1)


def fit_luminosity_function(lf: Any, evolution: str = "none", *, min_n: int = 5,
                            complete_only: bool = True) -> LumFuncFit:
    """Fit :func:`double_power_law` with ``evolution`` ("none", "ple", "pde") to the bins
    of ``lf`` with ``min_n`` sources or more (and complete, with ``complete_only``).
    ValueError when fewer bins than free parameters plus one remain."""
    from scipy.optimize import least_squares

    if evolution not in EVOLUTIONS:
        raise ValueError(f"evolution: expected one of {', '.join(EVOLUTIONS)}, received "
                         f"{evolution!r}")
    free = _SHAPE + EVOLUTIONS[evolution]
    iz, il = np.nonzero((lf.n >= min_n) & (lf.phi > 0) & (lf.phi_err > 0)
                        & (lf.complete if complete_only else True))
    if iz.size < len(free) + 1:
        raise ValueError(f"fit: {iz.size} bins of {min_n} sources or more"
                         + (" that are complete" if complete_only else "")
                         + f", {len(free) + 1} needed for {len(free)} parameters "
                           "(wider bins, a larger survey, or fewer free parameters)")
    lo, hi = lf.logl_edges[il], lf.logl_edges[il + 1]
    z = (lf.z_mean[iz, il] if lf.z_mean is not None
         else 0.5 * (lf.z_edges[iz] + lf.z_edges[iz + 1]))
    obs = np.log10(lf.phi[iz, il])
    sig = lf.phi_err[iz, il] / (lf.phi[iz, il] * math.log(10.0))

    def params_of(v):
        p = dict(zip(free, v))
        return {k: float(p.get(k, 0.0)) for k in _SHAPE + ("k_l", "k_d")}

    def residuals(v):
        model = _binned(params_of(v), lo, hi, z)
        return (obs - np.log10(np.maximum(model, 1e-300))) / sig

    mid = 0.5 * (lo + hi)
    start = {"log_phi_star": float(np.max(obs)), "log_l_star": float(np.median(mid)),
             "alpha": 0.5, "beta": 1.5, "k_l": 0.0, "k_d": 0.0}
    res = least_squares(residuals, [start[k] for k in free], method="lm")
    chi2 = float(np.sum(res.fun ** 2))
    dof = int(iz.size - len(free))
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
        err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        cov = np.full((len(free), len(free)), np.nan)
        err = np.full(len(free), np.nan)
    params = params_of(res.x)
    if evolution == "none":
        params = {k: params[k] for k in _SHAPE}
    elif evolution == "ple":
        params = {k: params[k] for k in _SHAPE + ("k_l",)}
    else:
        params = {k: params[k] for k in _SHAPE + ("k_d",)}
    return LumFuncFit(params, dict(zip(free, map(float, err))), evolution, chi2, dof,
                      int(iz.size), cov)
