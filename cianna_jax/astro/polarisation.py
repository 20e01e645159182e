"""Linear (and circular) polarisation of a catalogue's sources from Stokes Q, U (and V)
images: separate files, or one cube with a STOKES axis (CASA's IQUV) given for each.

At each source's position the Stokes Q and U fluxes are measured by forced photometry
(:mod:`.forced`: the beam, or a resolved source's deconvolved shape seen through it, so
that its polarised flux is whole as its total flux is), and from them:

* ``pol_flux``: the polarised flux P = sqrt(Q^2 + U^2) debiased as Wardle & Kronberg
  (1974), sqrt(P^2 - sigma^2) (0 when P < sigma), ``pol_flux_err`` = sigma, the Q and U
  errors' quadratic mean; ``pol_snr`` = P / sigma;
* ``pol_frac``: pol_flux over the catalogue's (Stokes I) flux, with its error, and
  ``pol_frac_limit``: ``detect_sigma`` x sigma over the flux, an upper limit for the sources
  not detected in polarisation (``polarised``: P >= ``detect_sigma`` sigma, 5 by default);
* ``evpa``: the electric vector position angle 0.5 atan2(U, Q) in degrees, [0, 180), from
  north through east (the IAU convention; the image's north), ``evpa_err`` = 0.5 sigma / P
  (radians, as degrees);
* with a V image, ``v_flux``, ``v_flux_err`` and ``v_frac``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .catalogue import column_values, make_table, require_columns
from .forced import catalogue_shapes, forced_fluxes
from .primary_beam import FORCED_NOTE, catalogue_response

__all__ = ["polarisation", "DETECT_SIGMA", "POLARISATION_NOTE", "format_polarisation_summary"]

#: polarised flux over its error at which a source is called polarised
DETECT_SIGMA = 5.0

POLARISATION_NOTE = ("Q, U (V) by forced photometry at each source (the beam's amplitude; "
                     "a resolved source's deconvolved shape seen through the beam, unless "
                     "as_points); pol_flux debiased (Wardle & Kronberg 1974); evpa "
                     "0.5 atan2(U, Q) from north through east; polarised: pol_snr >= "
                     "detect_sigma; pol_frac_limit: detect_sigma x error / flux")


def polarisation(table: Any, q_image: str, u_image: str, v_image: str | None = None, *,
                 detect_sigma: float = DETECT_SIGMA, what: str = "catalogue",
                 as_points: bool = False) -> Any:
    """The catalogue's sources with their polarisation (see the module docstring): ``id``
    (when it has one), ``ra``, ``dec``, ``flux``, ``flux_err`` and the polarisation
    columns, in the catalogue's order. Q, U and V are forced with each resolved source's
    shape (:func:`.catalogue.catalogue_shapes`), so that a resolved source's polarised flux
    is whole, as its total flux; ``as_points``: every source as unresolved."""
    d = as_bounded_float(detect_sigma, "detect_sigma")
    require_columns(table, ("ra", "dec", "flux"), what)
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    flux = column_values(table, "flux", what)
    ferr = column_values(table, "flux_err", what)
    ferr = np.full(len(table), np.nan) if ferr is None else ferr
    shapes = None if as_points else catalogue_shapes(table, what)
    q, q_err = forced_fluxes(q_image, ra, dec, stokes="Q", shapes=shapes)
    u, u_err = forced_fluxes(u_image, ra, dec, stokes="U", shapes=shapes)
    gain = catalogue_response(table)  # a primary-beam corrected catalogue: Q, U alike
    gain = 1.0 if gain is None else 1.0 / gain
    q, q_err, u, u_err = q * gain, q_err * gain, u * gain, u_err * gain
    sigma = np.sqrt(0.5 * (q_err ** 2 + u_err ** 2))
    p = np.hypot(q, u)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0 = np.where(p > sigma, np.sqrt(np.maximum(p * p - sigma * sigma, 0.0)), 0.0)
        p0 = np.where(np.isfinite(p), p0, np.nan)
        snr = p / sigma
        frac = p0 / flux
        # (the Stokes I flux's error where the catalogue has one)
        frac_err = np.where(p0 > 0, frac * np.hypot(sigma / p0, np.nan_to_num(ferr / flux)),
                            np.nan)
        evpa = np.mod(np.degrees(0.5 * np.arctan2(u, q)), 180.0)
        evpa_err = np.degrees(0.5 * sigma / p)
    cols: dict[str, np.ndarray] = {}
    if "id" in table.colnames:
        cols["id"] = np.asarray(table["id"])
    cols.update(ra=ra, dec=dec, flux=flux, flux_err=ferr, q_flux=q, q_flux_err=q_err,
                u_flux=u, u_flux_err=u_err, pol_flux=p0, pol_flux_err=sigma, pol_snr=snr,
                pol_frac=frac, pol_frac_err=frac_err,
                pol_frac_limit=d * sigma / flux, evpa=evpa, evpa_err=evpa_err,
                polarised=np.nan_to_num(snr) >= d)
    units = {k: "Jy" for k in ("q_flux", "q_flux_err", "u_flux", "u_flux_err", "pol_flux",
                               "pol_flux_err")}
    units.update(evpa="deg", evpa_err="deg")
    if v_image is not None:
        v, v_err = forced_fluxes(v_image, ra, dec, stokes="V", shapes=shapes)
        v, v_err = v * gain, v_err * gain
        with np.errstate(invalid="ignore", divide="ignore"):
            cols.update(v_flux=v, v_flux_err=v_err, v_frac=v / flux)
        units.update(v_flux="Jy", v_flux_err="Jy")
    meta = {"polarisation": POLARISATION_NOTE, "detect_sigma": d,
            "n_polarised": int(np.count_nonzero(cols["polarised"])),
            **({"primary_beam": FORCED_NOTE} if "pb" in table.colnames else {}),
            "images": {"Q": str(q_image), "U": str(u_image),
                       **({"V": str(v_image)} if v_image is not None else {})}}
    for k in ("image", "frequency_hz", "beam_bmaj_arcsec", "radec_frame"):
        if k in getattr(table, "meta", {}):
            meta[k] = table.meta[k]
    t = make_table(cols, meta=meta, units=units)
    for name, desc in (("pol_flux", "polarised flux, debiased"), ("pol_snr", "P / sigma"),
                       ("pol_frac", "pol_flux / flux"),
                       ("pol_frac_limit", "detect_sigma x pol_flux_err / flux"),
                       ("evpa", "electric vector position angle, north through east"),
                       ("polarised", "pol_snr >= detect_sigma")):
        t[name].description = desc
    return t


def format_polarisation_summary(table: Any) -> str:
    """A report line: how many sources are polarised, their median fraction."""
    pol = np.asarray(table["polarised"], bool)
    frac = np.asarray(table["pol_frac"], np.float64)[pol]
    med = f", median fraction {np.median(frac):.3g}" if frac.size else ""
    return (f"{int(pol.sum())} of {len(table)} sources polarised (P >= "
            f"{table.meta.get('detect_sigma', DETECT_SIGMA):g} sigma){med}")
