"""A parametric luminosity function fitted to the binned one: a double power law, with
pure luminosity or density evolution.

    Phi(L, z) = Phi* (1 + z)^k_D / ((L / L*(z))^alpha + (L / L*(z))^beta),
    L*(z) = L* (1 + z)^k_L,

per dex of luminosity (``alpha`` the faint slope, ``beta`` the bright one, in dex per
dex), the form radio surveys fit to their star-forming and AGN populations (e.g. Novak et
al. 2017, Smolcic et al. 2017: ``k_L`` for pure luminosity evolution, "ple"; ``k_D`` for
pure density evolution, "pde"; "both" frees the two; "none" keeps both 0). Two methods:

* ``"binned"``: fitted to the 1/Vmax estimate's complete bins
  (:class:`.luminosity_function.LuminosityFunction`) by least squares in ``log10 Phi``
  with the bins' Poisson errors, each bin's model the function averaged over its
  luminosity range at its sources' mean redshift; the errors from the fit's covariance.
* ``"ml"``: the maximum likelihood on the sources themselves (Marshall et al. 1983), with
  no bins: ``ln L = sum_i w_i ln Phi(L_i, z_i) - N``, ``N = int int Phi(L, z) Omega(S(L,
  z)) dV/dz dz dlog L`` the sources the survey expects over its coverage (``Omega`` the
  area where a source of that flux is seen: a flux limit, the visibility areas or an
  injection's completeness, with the sources' median peak-to-flux ratio), over the
  redshifts and luminosities the function counted; every source counts, complete bin or
  not, and the faint ones near the limit are not averaged over a bin.  Errors from the
  likelihood's curvature (its numerical Hessian), scaled by ``sum w^2 / sum w`` for the
  redshift weights; the chi^2 is the fitted function's against the complete bins, as a
  check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalogue import make_table

__all__ = ["EVOLUTIONS", "METHODS", "LumFuncFit", "double_power_law", "fit_luminosity_function",
           "compare_evolutions"]

#: the evolution models: which of (k_L, k_D) is free ("both": the two together, partly
#: degenerate: the maximum likelihood tells them apart on wide redshift ranges)
EVOLUTIONS = {"none": (), "ple": ("k_l",), "pde": ("k_d",), "both": ("k_l", "k_d")}
_SHAPE = ("log_phi_star", "log_l_star", "alpha", "beta")
#: the fitting methods (see the module)
METHODS = ("binned", "ml")


def double_power_law(logl: np.ndarray, z: np.ndarray | float, log_phi_star: float,
                     log_l_star: float, alpha: float, beta: float, k_l: float = 0.0,
                     k_d: float = 0.0) -> np.ndarray:
    """``Phi`` (Mpc^-3 dex^-1) at ``log10 L`` (W/Hz) and redshift ``z`` (see the module)."""
    logl, z = np.asarray(logl, np.float64), np.asarray(z, np.float64)
    x = logl - log_l_star - k_l * np.log10(1 + z)
    ln10 = math.log(10.0)  # in logs, so that a fit's wild trial values overflow nothing
    log_denom = np.logaddexp(alpha * x * ln10, beta * x * ln10) / ln10
    log_phi = log_phi_star + k_d * np.log10(1 + z) - log_denom
    return 10.0 ** np.clip(log_phi, -300.0, 300.0)


@dataclass(frozen=True)
class LumFuncFit:
    """The fitted ``params`` and their 1-sigma ``errors`` (names of
    :func:`double_power_law`), the ``evolution`` model, ``chi2`` over ``dof`` and the bins
    used (``n_bins``); the ``method`` ("binned", "ml": then ``n_sources`` and the
    ``log_likelihood`` too, the chi^2 the function's against the bins)."""

    params: dict[str, float]
    errors: dict[str, float]
    evolution: str
    chi2: float
    dof: int
    n_bins: int
    covariance: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    method: str = "binned"
    n_sources: int = 0
    log_likelihood: float = float("nan")

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

    @property
    def aic(self) -> float:
        """Akaike's information criterion: ``2 k - 2 ln L`` for the likelihood, ``chi2 + 2 k``
        for the bins (k the free parameters): the lower, the better the evolution model."""
        k = len(self.errors)
        return 2 * k - 2 * self.log_likelihood if self.method == "ml" else self.chi2 + 2 * k

    def summary(self) -> str:
        """The parameters with their errors and the fit's chi^2 in one line."""
        parts = [f"{k} {v:.3f}" + (f" +- {self.errors[k]:.3f}" if k in self.errors else "")
                 for k, v in self.params.items() if k in self.errors]
        if self.method == "ml":
            check = (f"; against the {self.n_bins} complete bins chi2 {self.chi2:.1f} for "
                     f"{self.dof} degrees of freedom" if self.n_bins else
                     "; too few complete bins to compare with")
            return (f"{self.evolution} evolution (maximum likelihood on {self.n_sources} "
                    "sources): " + ", ".join(parts) + check)
        return (f"{self.evolution} evolution: " + ", ".join(parts)
                + f"; chi2 {self.chi2:.1f} for {self.dof} degrees of freedom "
                  f"({self.n_bins} bins)")


def _binned(fit_params: dict[str, float], lo: np.ndarray, hi: np.ndarray,
            z: np.ndarray) -> np.ndarray:
    """The model averaged over each bin's luminosity range at its redshift."""
    t = np.linspace(0.0, 1.0, 9)
    grid = lo[:, None] + (hi - lo)[:, None] * t[None]
    return np.trapezoid(double_power_law(grid, z[:, None], **fit_params), t, axis=1)


def _fitted_bins(lf: Any, min_n: int, complete_only: bool, n_free: int):
    """(lo, hi, z, log10 phi, its sigma) of the bins a fit compares with."""
    iz, il = np.nonzero((lf.n >= min_n) & (lf.phi > 0) & (lf.phi_err > 0)
                        & (lf.complete if complete_only else True))
    if iz.size < n_free + 1:
        raise ValueError(f"fit: {iz.size} bins of {min_n} sources or more"
                         + (" that are complete" if complete_only else "")
                         + f", {n_free + 1} needed for {n_free} parameters "
                           "(wider bins, a larger survey, or fewer free parameters)")
    lo, hi = lf.logl_edges[il], lf.logl_edges[il + 1]
    z = (lf.z_mean[iz, il] if lf.z_mean is not None
         else 0.5 * (lf.z_edges[iz] + lf.z_edges[iz + 1]))
    obs = np.log10(lf.phi[iz, il])
    sig = lf.phi_err[iz, il] / (lf.phi[iz, il] * math.log(10.0))
    return lo, hi, z, obs, sig


def _all_params(free: tuple[str, ...], v: Any) -> dict[str, float]:
    p = dict(zip(free, v))
    return {k: float(p.get(k, 0.0)) for k in _SHAPE + ("k_l", "k_d")}


def _model_params(params: dict[str, float], evolution: str) -> dict[str, float]:
    """The parameters a model of ``evolution`` has (the fixed evolutions left out)."""
    return {k: params[k] for k in _SHAPE + EVOLUTIONS[evolution]}


def fit_luminosity_function(lf: Any, evolution: str = "none", *, min_n: int = 5,
                            complete_only: bool = True, method: str = "binned") -> LumFuncFit:
    """Fit :func:`double_power_law` with ``evolution`` ("none", "ple", "pde", "both") to
    ``lf``:
    ``method`` "binned", to its bins of ``min_n`` sources or more (and complete, with
    ``complete_only``), or "ml", the maximum likelihood on its sources (``lf.sample``;
    started from the bins' fit and its chi^2 against those bins where there are enough of
    them, else from the sources' median luminosity, chi^2 NaN).  ValueError when fewer bins
    than free parameters plus one remain for "binned", or for "ml" an ``lf`` without its
    sample."""
    from scipy.optimize import least_squares

    if evolution not in EVOLUTIONS:
        raise ValueError(f"evolution: expected one of {', '.join(EVOLUTIONS)}, received "
                         f"{evolution!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, received {method!r}")
    free = _SHAPE + EVOLUTIONS[evolution]
    try:
        lo, hi, z, obs, sig = _fitted_bins(lf, min_n, complete_only, len(free))
    except ValueError:
        if method != "ml":
            raise
        return _ml_fit(lf, evolution, free, None, None, 0, 0)  # few sources: no bins

    def residuals(v):
        model = _binned(_all_params(free, v), lo, hi, z)
        return (obs - np.log10(np.maximum(model, 1e-300))) / sig

    mid = 0.5 * (lo + hi)
    start = {"log_phi_star": float(np.max(obs)), "log_l_star": float(np.median(mid)),
             "alpha": 0.5, "beta": 1.5, "k_l": 0.0, "k_d": 0.0}
    res = least_squares(residuals, [start[k] for k in free], method="lm")
    dof = int(obs.size - len(free))
    if method == "ml":
        return _ml_fit(lf, evolution, free, res.x, residuals, obs.size, dof)
    chi2 = float(np.sum(res.fun ** 2))
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
        err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        cov = np.full((len(free), len(free)), np.nan)
        err = np.full(len(free), np.nan)
    params = _model_params(_all_params(free, res.x), evolution)
    return LumFuncFit(params, dict(zip(free, map(float, err))), evolution, chi2, dof,
                      int(obs.size), cov)


#: the maximum likelihood's integration grid: redshifts, and luminosity steps (dex)
ML_Z_SAMPLES, ML_DEX = 96, 0.02


def _ml_fit(lf: Any, evolution: str, free: tuple[str, ...], start: np.ndarray | None,
            residuals: Any, n_bins: int, dof: int) -> LumFuncFit:
    """The maximum likelihood of the module's note, from two starts: the binned fit (its
    ``residuals`` for the chi^2; ``start`` None: none) and the sources' median luminosity,
    slopes 0.5 and 1.5, no evolution and the Phi* that expects their number."""
    from scipy.optimize import minimize

    s = lf.sample
    if s is None or not len(s.logl):
        raise ValueError("fit: method 'ml' needs the sources the luminosity function counted "
                         "(a LuminosityFunction from luminosity_function)")
    from .luminosity import cosmology_by_name

    zg = np.linspace(max(s.z_range[0], 1e-4), s.z_range[1], ML_Z_SAMPLES)
    lg = np.arange(s.logl_range[0], s.logl_range[1] + ML_DEX / 2, ML_DEX)
    dvdz = cosmology_by_name(s.cosmology).differential_comoving_volume(zg).to_value("Mpc3/sr")
    peak = s.flux(lg[None], zg[:, None]) * s.peak_ratio
    selection = s.coverage.area(peak.ravel()).reshape(peak.shape) * dvdz[:, None]  # Mpc^3
    w = np.asarray(s.weights, np.float64)

    def expected(p: dict[str, float]) -> float:  # the sources the coverage expects
        return float(np.trapezoid(np.trapezoid(double_power_law(lg[None], zg[:, None], **p)
                                               * selection, lg, axis=1), zg))

    def minus_log_likelihood(v):
        p = _all_params(free, v)
        phi_i = double_power_law(s.logl, s.z, **p)
        with np.errstate(divide="ignore"):
            value = expected(p) - float(np.sum(w * np.log(phi_i)))
        return value if math.isfinite(value) else 1e300

    # from the bins' fit and from the sources' median luminosity (the bins' fit can wander
    # to slopes of tens on a few faint bins): the higher likelihood kept
    guess = {"log_phi_star": 0.0, "log_l_star": float(np.median(s.logl)), "alpha": 0.5,
             "beta": 1.5, "k_l": 0.0, "k_d": 0.0}
    unit = expected(_all_params(free, [guess[k] for k in free]))
    guess["log_phi_star"] = math.log10(max(float(np.sum(w)), 1.0) / max(unit, 1e-300))
    starts = [np.array([guess[k] for k in free])] + ([] if start is None else [start])
    res = min((minimize(minus_log_likelihood, x0, method="Nelder-Mead",
                        options={"xatol": 1e-5, "fatol": 1e-6, "maxiter": 20000,
                                 "maxfev": 20000}) for x0 in starts), key=lambda r: r.fun)
    x = res.x
    h = _hessian(minus_log_likelihood, x)
    try:
        cov = np.linalg.inv(h) * float(np.sum(w ** 2) / np.sum(w))
        err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        cov = np.full((len(free), len(free)), np.nan)
        err = np.full(len(free), np.nan)
    params = _model_params(_all_params(free, x), evolution)
    chi2 = float(np.sum(residuals(x) ** 2)) if residuals is not None else float("nan")
    return LumFuncFit(params, dict(zip(free, map(float, err))), evolution, chi2, dof,
                      n_bins, cov, method="ml",
                      n_sources=int(len(s.logl)), log_likelihood=float(-res.fun))


def _hessian(f: Any, x: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Central finite differences of ``f``'s second derivatives at ``x``."""
    n = x.size
    h = np.zeros((n, n))
    e = np.eye(n) * step
    f0 = f(x)
    for i in range(n):
        for j in range(i, n):
            if i == j:
                h[i, i] = (f(x + e[i]) - 2 * f0 + f(x - e[i])) / step ** 2
            else:
                h[i, j] = h[j, i] = (f(x + e[i] + e[j]) - f(x + e[i] - e[j])
                                     - f(x - e[i] + e[j]) + f(x - e[i] - e[j])) / (4 * step ** 2)
    return h


def compare_evolutions(lf: Any, *, method: str = "ml", min_n: int = 5) -> list[LumFuncFit]:
    """Every evolution model of :data:`EVOLUTIONS` fitted to ``lf`` by ``method``, ordered by
    :attr:`LumFuncFit.aic` (the preferred first; a difference of 10 or more is strong)."""
    fits = [fit_luminosity_function(lf, e, method=method, min_n=min_n) for e in EVOLUTIONS]
    return sorted(fits, key=lambda f: f.aic)

