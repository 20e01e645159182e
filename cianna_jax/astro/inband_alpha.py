"""In-band spectral indices: each catalogued source's spectrum across a sub-band cube.

Wide-band continuum surveys (MeerKAT's L band, 856-1712 MHz; ASKAP; the VLA) image their
band as a few sub-band planes beside the full-band (MFS) image. Each source of a catalogue
made on the MFS image is measured at every plane by forced photometry (:mod:`.forced`: at
its position; a resolved source with its deconvolved shape; each plane with its own beam
and noise map), and a power law ``S = S_ref (nu / nu_ref)^alpha`` is fitted to those
fluxes by weighted least squares in flux, not in log flux, so that a faint source's low or
negative sub-band fluxes count with their errors instead of being dropped (``nu_ref``: the
planes' geometric mean frequency). With ``curvature``, ``S = S_ref (nu / nu_ref)^(alpha +
beta ln(nu / nu_ref))``, whose peak ``nu_ref exp(-alpha / (2 beta))``, where ``beta`` is
negative by 3 sigma and the peak lies in the band, marks a peaked spectrum (``peaked``,
``peak_freq``: young radio galaxies, gigahertz-peaked and compact steep-spectrum sources,
or self-absorbed cores). The errors are the fit's (its Fisher matrix); ``chi2_red`` shows a
spectrum the model does not follow.

A cube that is not primary-beam corrected: the beam narrows as frequency rises, so every
source away from the pointing centre looks steeper than it is (for a Gaussian beam whose
width scales as 1 / frequency, ``d ln A / d ln nu = 2 ln A``: -1.39 at the half-power
radius, -0.45 where the response is 0.8). ``primary_beam`` (a model, which scales with
frequency, ``meerkat``, or a beam cube: :mod:`.primary_beam`) divides each plane's fluxes
by the response at its frequency.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalogue import column_values, make_table, require_columns
from .fits_image import open_image
from .forced import SHAPES_NOTE, catalogue_shapes, forced_spectra
from .primary_beam import finding_beam, pb_response
from .sky import sky_to_pixel

__all__ = ["fit_power_law", "turnovers", "inband_spectral_indices", "format_inband_summary",
           "INBAND_NOTE", "PEAKED_SIGMAS"]

INBAND_NOTE = ("alpha: S = flux_ref (nu / ref_freq_hz)^alpha fitted to the sources' forced "
               "fluxes at the cube's planes (weighted least squares in flux; with beta, "
               "curvature: the exponent alpha + beta ln(nu / ref_freq_hz)); errors from the "
               "fit's covariance")
#: beta below -this many errors (and a turnover within the band): a peaked spectrum
PEAKED_SIGMAS = 3.0
#: the spectral indices searched first (a grid), before the fit's Gauss-Newton steps
ALPHA_GRID = np.linspace(-6.0, 6.0, 601)
_ROWS = 4096  # sources per grid search


def fit_power_law(flux: np.ndarray, err: np.ndarray, freqs_hz: np.ndarray,
                  ref_hz: float, *, curvature: bool = False, steps: int = 30
                  ) -> dict[str, np.ndarray]:
    """Power laws fitted to spectra ``flux``, ``err`` ``(n, K)`` (Jy; NaN: no measure) at
    ``freqs_hz`` ``(K,)``: ``S = s_ref (nu / ref_hz)^(alpha + beta ln(nu / ref_hz))`` (beta
    0 unless ``curvature``) by weighted least squares (the best ``alpha`` of a grid, then
    damped Gauss-Newton steps). Returns ``s_ref``, ``alpha``, ``beta`` and their errors
    (``*_err``), ``chi2_red`` (NaN without spare points) and ``n`` (planes used); NaN where
    fewer planes than parameters (two for a power law, three with curvature) or the fitted
    ``s_ref`` is not positive."""
    flux, err = np.asarray(flux, np.float64), np.asarray(err, np.float64)
    x = np.log(np.asarray(freqs_hz, np.float64) / float(ref_hz))
    if flux.ndim != 2 or flux.shape != err.shape or flux.shape[1] != x.size:
        raise ValueError(f"flux, err: (sources, {x.size} planes) arrays, received shapes "
                         f"{flux.shape} and {err.shape}")
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    w = np.where(ok, 1.0 / np.where(ok, err, 1.0) ** 2, 0.0)
    s = np.where(ok, flux, 0.0)
    n, p = ok.sum(1), 3 if curvature else 2
    # the grid: for each alpha, the best s_ref is linear (num / den)
    a0, s0 = np.zeros(len(s)), np.zeros(len(s))
    P = np.exp(ALPHA_GRID[:, None] * x[None, :])  # (G, K)
    for r0 in range(0, len(s), _ROWS):
        ws, ww = (w * s)[r0:r0 + _ROWS], w[r0:r0 + _ROWS]
        num, den = ws @ P.T, ww @ (P * P).T
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where((num > 0) & (den > 0), num * num / den, -np.inf)
        g = gain.argmax(1)
        a0[r0:r0 + _ROWS] = ALPHA_GRID[g]
        pick = np.arange(len(g))
        with np.errstate(invalid="ignore", divide="ignore"):
            s0[r0:r0 + _ROWS] = num[pick, g] / den[pick, g]
    theta = np.stack([s0, a0] + ([np.zeros(len(s))] if curvature else []), 1)  # (n, p)
    cols = [np.ones_like(x), x, x * x][:p]

    def model(th):
        with np.errstate(over="ignore"):
            e = np.exp(th[:, 1:2] * x + (th[:, 2:3] * x * x if curvature else 0.0))
        m = th[:, :1] * e
        J = np.stack([e] + [m * c for c in cols[1:]], 2)  # (n, K, p)
        return m, J

    def chi2(th, ws, ss):
        with np.errstate(over="ignore", invalid="ignore"):  # (a trial step too far: inf)
            return np.sum(ws * (ss - model(th)[0]) ** 2, 1)

    fit = (n >= p) & (s0 > 0) & np.isfinite(s0)
    theta[~fit] = np.nan
    rows = np.flatnonzero(fit)
    th = theta[rows]
    ws, ss = w[rows], s[rows]
    for _ in range(steps):  # damped Gauss-Newton: halve a step that does not lower chi2
        m, J = model(th)
        JW = J * ws[:, :, None]
        A = np.einsum("nkp,nkq->npq", JW, J) + 1e-12 * np.eye(p)
        b = np.einsum("nkp,nk->np", JW, ss - m)
        try:
            step = np.linalg.solve(A, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        base = chi2(th, ws, ss)
        scale = np.ones(len(th))
        for _ in range(8):
            trial = th + scale[:, None] * step
            worse = ~(chi2(trial, ws, ss) <= base)
            if not worse.any():
                break
            scale[worse] *= 0.5
        scale[worse] = 0.0
        th = th + scale[:, None] * step
        if np.all(np.abs(scale[:, None] * step) <= 1e-10 * (1.0 + np.abs(th))):
            break
    theta[rows] = th
    cov = np.full((len(s), p, p), np.nan)
    if rows.size:
        _, J = model(th)
        A = np.einsum("nkp,nkq->npq", J * ws[:, :, None], J)
        with np.errstate(invalid="ignore"):
            good = np.linalg.det(A) > 0
        cov[rows[good]] = np.linalg.inv(A[good])
    c2 = np.full(len(s), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        c2[rows] = np.where(n[rows] > p, chi2(th, ws, ss) / (n[rows] - p), np.nan)
    bad = ~(theta[:, 0] > 0)
    theta[bad], cov[bad] = np.nan, np.nan
    err_ = np.sqrt(np.einsum("npp->np", cov))
    out = {"s_ref": theta[:, 0], "s_ref_err": err_[:, 0], "alpha": theta[:, 1],
           "alpha_err": err_[:, 1], "chi2_red": c2, "n": n}
    out["beta"] = theta[:, 2] if curvature else np.full(len(s), np.nan)
    out["beta_err"] = err_[:, 2] if curvature else np.full(len(s), np.nan)
    return out


def turnovers(fit: dict[str, np.ndarray], ref_hz: float, lo_hz: float, hi_hz: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """(peak frequency in Hz, peaked) of curved fits (:func:`fit_power_law`'s with
    ``curvature``): ``ref_hz exp(-alpha / (2 beta))`` where ``beta`` is below -
    :data:`PEAKED_SIGMAS` errors and that peak lies in ``[lo_hz, hi_hz]`` (NaN, False
    elsewhere)."""
    a, b, e = (np.asarray(fit[k], np.float64) for k in ("alpha", "beta", "beta_err"))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        nu = ref_hz * np.exp(-a / (2.0 * b))
        peaked = (b < -PEAKED_SIGMAS * e) & (nu >= lo_hz) & (nu <= hi_hz)
    return np.where(peaked, nu, np.nan), peaked


def inband_spectral_indices(table: Any, cube: str | Sequence[str], *,
                            primary_beam: Any = None,
                            pb_min: float | None = None, curvature: bool = False,
                            as_points: bool = False, stokes: str = "I",
                            what: str = "catalogue") -> Any:
    """The catalogue's sources with their in-band spectra (see the module docstring), in
    its order: ``id`` (when it has one), ``ra``, ``dec``, ``flux`` (the catalogue's),
    ``flux_ref`` at ``meta["ref_freq_hz"]``, ``alpha`` (and ``beta`` with ``curvature``)
    with errors, ``chi2_red``, ``n_planes`` and each plane's ``plane_flux_<k>``,
    ``plane_flux_err_<k>`` (k = 1..K, ``meta["frequencies_hz"]``). ``cube``: a cube with a
    frequency axis, or several 2D images of the field at their own frequencies (sub-band
    images, as WSClean writes them). ``primary_beam``: the planes are not corrected for it
    (each divided by its response there at its frequency; planes where it is below
    ``pb_min``, or not known, left out of the fit; a model's width given at the cube's
    reference frequency, or at the first image's). ``as_points``: every source forced as
    unresolved."""
    require_columns(table, ("ra", "dec"), what)
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    beam = finding_beam(primary_beam, pb_min)
    if not beam and "pb" in table.colnames:
        warnings.warn(f"{what}: its fluxes were corrected for a primary beam (its pb column); "
                      "if the cube is not, give that beam (primary_beam, --pb): a beam that "
                      "narrows with frequency steepens every spectrum away from the centre",
                      UserWarning, stacklevel=2)
    shapes = None if as_points else catalogue_shapes(table, what)
    paths = [cube] if isinstance(cube, (str, os.PathLike)) else list(cube)
    if not paths:
        raise ValueError("cube: a cube, or two images or more")
    flux, err, freqs = forced_spectra(paths[0] if len(paths) == 1 else paths, ra, dec,
                                      stokes=stokes, shapes=shapes,
                                      purpose="an in-band spectral index")
    if beam:
        pbeam = beam["primary_beam"]
        with warnings.catch_warnings():  # (its grid and axis only)
            warnings.filterwarnings("ignore", message=".*BEAMS table")
            img = open_image(paths[0], stokes=stokes)
        with img:  # (images: on the first's grid)
            x, y = sky_to_pixel(img.wcs, ra, dec)
            for k in range(len(freqs)):
                n = len(ra)
                a = (pb_response(pbeam, img, x, y, np.full(n, float(k))) if len(paths) == 1
                     else np.asarray(pbeam.response(img, x, y, np.full(n, freqs[k]))))
                with np.errstate(invalid="ignore"):
                    a = np.where(a >= (beam["pb_min"] or np.finfo(np.float64).tiny), a, np.nan)
                flux[:, k], err[:, k] = flux[:, k] / a, err[:, k] / a
    ref = float(math.exp(np.mean(np.log(freqs))))
    r = fit_power_law(flux, err, freqs, ref, curvature=curvature)
    out: dict[str, np.ndarray] = {}
    if "id" in table.colnames:
        out["id"] = np.asarray(table["id"])
    out["ra"], out["dec"] = ra, dec
    cat_flux = column_values(table, "flux", what)
    if cat_flux is not None:
        out["flux"] = cat_flux
    out.update(flux_ref=r["s_ref"], flux_ref_err=r["s_ref_err"], alpha=r["alpha"],
               alpha_err=r["alpha_err"])
    if curvature:  # a spectrum that turns over in the band: its peak's frequency
        out.update(beta=r["beta"], beta_err=r["beta_err"])
        nu_peak, peaked = turnovers(r, ref, float(freqs.min()), float(freqs.max()))
        out.update(peak_freq=nu_peak, peaked=peaked)
    out.update(chi2_red=r["chi2_red"], n_planes=r["n"])
    units = {"flux": "Jy", "flux_ref": "Jy", "flux_ref_err": "Jy", "peak_freq": "Hz"}
    for k in range(len(freqs)):
        out[f"plane_flux_{k + 1}"], out[f"plane_flux_err_{k + 1}"] = flux[:, k], err[:, k]
        units[f"plane_flux_{k + 1}"] = units[f"plane_flux_err_{k + 1}"] = "Jy"
    fitted = np.isfinite(r["alpha"])
    meta = {"spectral_index": INBAND_NOTE, "cube": ", ".join(map(os.fspath, paths)),
            "frequencies_hz": [float(f) for f in freqs], "ref_freq_hz": ref,
            "n_sources": int(len(ra)), "n_fitted": int(fitted.sum()),
            "forced_shapes": "unresolved (the beam) for all" if as_points else SHAPES_NOTE,
            **({"primary_beam": beam["primary_beam"].description,
                "pb_min": beam["pb_min"]} if beam else {})}
    t = make_table(out, meta=meta, units={k: v for k, v in units.items() if k in out})
    t["alpha"].description = "in-band spectral index, S ~ nu^alpha"
    t["alpha_err"].description = "1-sigma error of alpha (the fit's covariance)"
    t["flux_ref"].description = "the fitted flux at ref_freq_hz (meta)"
    t["chi2_red"].description = "the fit's reduced chi-square (NaN without spare planes)"
    t["n_planes"].description = "planes with a flux in the fit"
    if curvature:
        t["beta"].description = "spectral curvature: the exponent alpha + beta ln(nu / nu_ref)"
        t["peaked"].description = (f"the spectrum turns over in the band: beta < 0 by "
                                   f"{PEAKED_SIGMAS:g} sigma, its peak within the planes")
        t["peak_freq"].description = "the fitted spectrum's peak, where peaked"
        t.meta["n_peaked"] = int(np.count_nonzero(out["peaked"]))
    return t


def format_inband_summary(table: Any) -> str:
    """A report line: how many fitted, the median alpha and its spread, of the sources
    whose alpha is known to 0.2 or better."""
    m = table.meta
    freqs = m.get("frequencies_hz", [])
    band = (f"{len(freqs)} planes, {freqs[0] / 1e6:g}-{freqs[-1] / 1e6:g} MHz" if freqs
            else "no planes")
    head = (f"{m.get('n_fitted', '?')} of {m.get('n_sources', len(table))} sources with an "
            f"in-band spectral index ({band}; reference {m.get('ref_freq_hz', 0) / 1e6:.1f} "
            "MHz)")
    a, e = (np.asarray(table[c], np.float64) for c in ("alpha", "alpha_err"))
    good = np.isfinite(a) & (e <= 0.2)
    if not good.any():
        return head
    lo, med, hi = np.percentile(a[good], [16, 50, 84])
    peaked = (f"; {m['n_peaked']} peaked in the band" if m.get("n_peaked") is not None
              else "")
    return (f"{head}: {good.sum()} with alpha_err <= 0.2, median alpha {med:.2f} "
            f"(16-84%: {lo:.2f} to {hi:.2f}){peaked}")
