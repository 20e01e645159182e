"""Faraday rotation measures of a catalogue's sources from Stokes Q and U cubes.

A linearly polarised source seen through a magnetised plasma has its polarisation angle
turned by ``RM lambda^2``. At each source, the Q and U fluxes of every channel of the two
cubes are measured by forced photometry (:mod:`.forced`: the beam, or a resolved source's
deconvolved shape seen through it), and RM
synthesis (Brentjens & de Bruyn 2005) gives the Faraday dispersion function

    F(phi) = sum_k w_k P_k exp(-2i phi (lambda_k^2 - lambda_0^2)) / sum_k w_k,

``P = Q + iU``, ``w = 1 / sigma^2`` (the channel's Q and U errors' quadratic mean),
``lambda_0^2`` the weighted mean of the channels' ``lambda^2``; on a grid of Faraday depths
(``phi_max``: by default sqrt(3) over the smallest channel step in ``lambda^2``, at a tenth
of the RMSF's FWHM, 2 sqrt(3) / (lambda_max^2 - lambda_min^2)). Per source: ``rm`` the peak
of |F| (parabola through the three highest samples), ``pol_flux`` |F| there debiased as
sqrt(|F|^2 - 2.3 sigma_F^2) (George et al. 2012), ``pol_snr`` |F| / sigma_F, ``rm_err`` =
FWHM / (2 pol_snr), ``chi0`` the angle at ``lambda^2 = 0`` (degrees, north through east),
``rm_detected`` when pol_snr >= ``detect_sigma`` (8, the usual threshold of RM surveys).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .catalogue import column_values, make_table, require_columns
from .fits_image import ImageError
from .forced import catalogue_shapes, forced_spectra
from .primary_beam import FORCED_NOTE, catalogue_response
from .rm_clean import COMPONENT_SIGMA, GAIN, faraday_components, rm_clean, rmsf

__all__ = ["rm_synthesis", "rm_table", "RM_DETECT_SIGMA", "format_rm_summary"]

C_M_S = 299_792_458.0
#: |F| over its noise at which a rotation measure is reported as detected
RM_DETECT_SIGMA = 8.0


def rm_synthesis(q: np.ndarray, u: np.ndarray, q_err: np.ndarray, u_err: np.ndarray,
                 freqs_hz: np.ndarray, *, phi_max: float | None = None, clean: bool = False,
                 clean_cutoff: float = 3.0) -> dict[str, Any]:
    """RM synthesis of ``(n, K)`` Q and U spectra (and errors) at ``freqs_hz (K,)``: a dict
    of ``(n,)`` arrays ``rm``, ``rm_err``, ``pol_flux``, ``pol_flux_err``, ``pol_snr``,
    ``chi0`` (degrees), and ``rmsf_fwhm``, ``phi`` (the grid) and ``fdf`` (``(n, M)`` |F|).
    ``clean``: the FDFs deconvolved by RM-CLEAN down to ``clean_cutoff`` times their noise
    first (:mod:`.rm_clean`; the peak and ``fdf`` are the clean FDF's), and ``n_faraday``,
    ``rm_second``, ``pol_flux_second`` (the second brightest component) besides."""
    q, u = np.asarray(q, np.float64), np.asarray(u, np.float64)
    sig = np.sqrt(0.5 * (np.asarray(q_err, np.float64) ** 2 + np.asarray(u_err, np.float64) ** 2))
    lam2 = (C_M_S / np.asarray(freqs_hz, np.float64)) ** 2
    ok = np.isfinite(q) & np.isfinite(u) & np.isfinite(sig) & (sig > 0)
    w = np.where(ok, 1.0 / np.where(ok, sig, 1.0) ** 2, 0.0)
    sw = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lam0 = (w * lam2).sum(1) / sw
    span = float(lam2.max() - lam2.min())
    if span <= 0:
        raise ValueError("freqs_hz: RM synthesis needs channels at different frequencies")
    fwhm = 2.0 * math.sqrt(3.0) / span
    step = float(np.min(np.abs(np.diff(np.sort(lam2))))) if lam2.size > 1 else span
    limit = phi_max if phi_max is not None else math.sqrt(3.0) / max(step, 1e-12)
    limit = as_bounded_float(limit, "phi_max")
    dphi = fwhm / 10.0
    phi = np.arange(-limit, limit + dphi / 2, dphi)
    p = np.where(ok, q + 1j * u, 0.0)
    shift = lam2[None, :] - np.nan_to_num(lam0)[:, None]            # (n, K)
    # |F| (n, M) as one product: lambda_0 only turns F's phase, not its amplitude
    with np.errstate(invalid="ignore", divide="ignore"):
        fdf = ((w * p) @ np.exp(-2j * lam2[:, None] * phi[None, :])) / sw[:, None]
        sigma_f = np.sqrt((w * w * sig ** 2).sum(1)) / sw
    amp = np.abs(fdf)
    n = len(q)
    extra: dict[str, Any] = {}
    if clean:
        cut = as_bounded_float(clean_cutoff, "clean_cutoff")
        lam0z = np.nan_to_num(lam0)
        f0 = np.nan_to_num(fdf * np.exp(2j * lam0z[:, None] * phi[None, :]))
        restored, comps = rm_clean(f0, rmsf(w, lam2, lam0z, dphi, len(phi)),
                                   np.nan_to_num(sigma_f), fwhm, dphi, cutoff=cut)
        amp = np.abs(restored)
        count, phi2, amp2 = faraday_components(comps, phi, fwhm, sigma_f)
        extra = dict(n_faraday=count, rm_second=phi2, pol_flux_second=amp2)
    rm = np.full(n, np.nan)
    peak = np.full(n, np.nan)
    chi0 = np.full(n, np.nan)
    good = np.isfinite(sw) & (sw > 0) & (ok.sum(1) >= 2)
    for i in np.flatnonzero(good):
        j = int(np.argmax(amp[i]))
        r, a = phi[j], amp[i, j]
        if 0 < j < len(phi) - 1:  # a parabola through the three highest samples
            y0, y1, y2 = amp[i, j - 1], amp[i, j], amp[i, j + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                off = 0.5 * (y0 - y2) / den
                r, a = phi[j] + off * dphi, y1 - 0.25 * (y0 - y2) * off
        # the FDF's phase at the peak, lambda_0 taken out: 2 chi0 + 2 rm lambda_0^2 (the
        # clean FDF's sample next to it has the phase of its component there)
        f = (restored[i, j] if clean else
             np.sum(w[i] * p[i] * np.exp(-2j * r * shift[i])) / sw[i])
        rm[i], peak[i] = r, max(a, abs(f))
        chi0[i] = math.degrees(0.5 * math.atan2(f.imag, f.real) - r * lam0[i]) % 180.0
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = peak / sigma_f
        debiased = np.sqrt(np.maximum(peak ** 2 - 2.3 * sigma_f ** 2, 0.0))
        rm_err = fwhm / (2.0 * snr)
    return dict(rm=rm, rm_err=rm_err, pol_flux=debiased, pol_flux_err=sigma_f, pol_snr=snr,
                chi0=chi0, rmsf_fwhm=fwhm, phi=phi, fdf=amp, **extra)


def _named(cube: str | Sequence[str]) -> str:
    return cube if isinstance(cube, str) else ", ".join(map(str, cube))


def rm_table(table: Any, q_cube: str | Sequence[str], u_cube: str | Sequence[str], *,
             detect_sigma: float = RM_DETECT_SIGMA,
             phi_max: float | None = None, clean: bool = False, clean_cutoff: float = 3.0,
             what: str = "catalogue", as_points: bool = False) -> Any:
    """The catalogue's sources with their rotation measures (see the module docstring),
    in its order: ``id`` (when it has one), ``ra``, ``dec``, ``flux`` and ``rm``,
    ``rm_err``, ``pol_flux``, ``pol_flux_err``, ``pol_snr``, ``pol_frac``, ``chi0``,
    ``rm_detected``; with ``clean`` (RM-CLEAN, :mod:`.rm_clean`) also ``n_faraday``,
    ``faraday_complex`` (two components or more), ``rm_second`` and ``pol_flux_second``;
    the Q and U cubes (or each one's channel images, at their headers' frequencies) must
    share their channels. Each channel's Q and U forced with the
    resolved sources' shapes (:func:`.catalogue.catalogue_shapes`; ``as_points``: every source
    as unresolved)."""
    d = as_bounded_float(detect_sigma, "detect_sigma")
    require_columns(table, ("ra", "dec", "flux"), what)
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    shapes = None if as_points else catalogue_shapes(table, what)
    q, q_err, fq = forced_spectra(q_cube, ra, dec, stokes="Q", shapes=shapes,
                                  purpose="RM synthesis")
    u, u_err, fu = forced_spectra(u_cube, ra, dec, stokes="U", shapes=shapes,
                                  purpose="RM synthesis")
    if fq.shape != fu.shape or not np.allclose(fq, fu, rtol=1e-9):
        raise ImageError(f"{_named(q_cube)} and {_named(u_cube)}: the Q and U cubes must "
                         "share their channels "
                         f"({len(fq)} and {len(fu)} channels)")
    gain = catalogue_response(table)  # a primary-beam corrected catalogue: every channel
    if gain is not None:
        q, q_err, u, u_err = (v / gain[:, None] for v in (q, q_err, u, u_err))
    r = rm_synthesis(q, u, q_err, u_err, fq, phi_max=phi_max, clean=clean,
                     clean_cutoff=clean_cutoff)
    cols: dict[str, np.ndarray] = {}
    if "id" in table.colnames:
        cols["id"] = np.asarray(table["id"])
    flux = column_values(table, "flux", what)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = r["pol_flux"] / flux
    cols.update(ra=ra, dec=dec, flux=flux, rm=r["rm"], rm_err=r["rm_err"],
                pol_flux=r["pol_flux"], pol_flux_err=r["pol_flux_err"], pol_snr=r["pol_snr"],
                pol_frac=frac, chi0=r["chi0"], rm_detected=np.nan_to_num(r["pol_snr"]) >= d)
    if clean:
        cols.update(n_faraday=r["n_faraday"], faraday_complex=r["n_faraday"] >= 2,
                    rm_second=r["rm_second"], pol_flux_second=r["pol_flux_second"])
    units = {"rm": "rad/m2", "rm_err": "rad/m2", "pol_flux": "Jy", "pol_flux_err": "Jy",
             "chi0": "deg", "rm_second": "rad/m2", "pol_flux_second": "Jy"}
    units = {k: v for k, v in units.items() if k in cols}
    meta = {"rm_synthesis": "Brentjens & de Bruyn (2005); pol_flux debiased as George et al. "
                            "(2012); rm_err = FWHM / (2 pol_snr)",
            "rmsf_fwhm_rad_m2": float(r["rmsf_fwhm"]), "phi_max_rad_m2": float(r["phi"][-1]),
            "frequencies_hz": [float(f) for f in fq], "detect_sigma": d,
            "n_detected": int(np.count_nonzero(cols["rm_detected"])),
            **({"primary_beam": FORCED_NOTE} if gain is not None else {}),
            **({"rm_clean": f"Heald et al. (2009), gain {GAIN:g}, down to {clean_cutoff:g} "
                            f"sigma; components of >= {COMPONENT_SIGMA:g} sigma counted "
                            "(n_faraday)", "n_faraday_complex":
                int(np.count_nonzero(cols["faraday_complex"]))} if clean else {})}
    t = make_table(cols, meta=meta, units=units)
    t["rm"].description = "rotation measure: the peak of the Faraday dispersion function"
    t["chi0"].description = "polarisation angle at lambda^2 = 0, north through east"
    t["rm_detected"].description = "pol_snr >= detect_sigma"
    if clean:
        t["n_faraday"].description = "Faraday components of the clean FDF (>= 5 sigma)"
        t["rm_second"].description = "Faraday depth of the second brightest component"
    return t


def format_rm_summary(table: Any) -> str:
    """A report line: how many rotation measures, their median, the RMSF's resolution."""
    det = np.asarray(table["rm_detected"], bool)
    rm = np.asarray(table["rm"], np.float64)[det]
    m = table.meta
    med = f", median RM {np.median(rm):.1f} rad/m^2" if rm.size else ""
    cx = (f"; {m['n_faraday_complex']} Faraday complex (RM-CLEAN)" if "n_faraday_complex" in m
          else "")
    return (f"{int(det.sum())} of {len(table)} sources with a rotation measure (|F| >= "
            f"{m.get('detect_sigma', RM_DETECT_SIGMA):g} sigma){med}; RMSF FWHM "
            f"{m.get('rmsf_fwhm_rad_m2', float('nan')):.3g} rad/m^2 over {len(m.get('frequencies_hz', []))} "
            f"channels{cx}")
