"""Radio luminosities and physical sizes of sources with redshifts (e.g. their hosts'
photometric redshifts, ``crossid --keep``).

A source of flux density ``S`` (Jy) at the observed frequency, spectral index ``alpha``
(``S ~ nu^alpha``) and redshift ``z`` has, at that frequency in its rest frame, the spectral
luminosity ``L = 4 pi D_L^2 S (1 + z)^-(1 + alpha)`` (W/Hz; the K-correction for a power
law), and at another rest frequency ``L (nu_rest / nu_obs)^alpha``. An angular size becomes
a projected one through the angular-diameter distance. Distances from an astropy cosmology
(default Planck18). Errors: the flux's, and the redshift's where given (through ``D_L`` and
the K-correction, to first order).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._deps import require
from .catalogue import CatalogueError, column_values
from .distances import distance

__all__ = ["radio_luminosity", "luminosity_table", "cosmology_by_name", "LUMINOSITY_NOTE"]

LUMINOSITY_NOTE = ("luminosity: spectral luminosity (W/Hz) in the rest frame at "
                   "rest_freq_hz, 4 pi D_L^2 S (1+z)^-(1+alpha) (nu_rest/nu_obs)^alpha; "
                   "size_kpc: the angular size times the angular-diameter distance")
_MPC_M = 3.0856775814913673e22


def cosmology_by_name(name: str) -> Any:
    """One of astropy's cosmologies by name (ValueError naming the known ones)."""
    cosmo = require("astropy.cosmology")
    known = tuple(cosmo.realizations.available)
    if name not in known:
        raise ValueError(f"cosmology: {name!r} is not one of astropy's ({', '.join(known)})")
    return getattr(cosmo, name)


def radio_luminosity(flux: np.ndarray, z: np.ndarray, *, alpha: np.ndarray | float = -0.7,
                     freq_hz: float | None = None, rest_freq_hz: float | None = None,
                     cosmology: str = "Planck18") -> np.ndarray:
    """Spectral luminosities (W/Hz) of fluxes ``flux`` (Jy) at redshifts ``z`` (NaN where
    ``z`` is not finite or not above 0), in the rest frame at ``rest_freq_hz`` (default: the
    observed ``freq_hz``, which then need not be known); see the module's note."""
    f = np.asarray(flux, np.float64)
    zz = np.asarray(z, np.float64)
    a = np.broadcast_to(np.asarray(alpha, np.float64), f.shape)
    ok = np.isfinite(zz) & (zz > 0)
    cosmo = cosmology_by_name(cosmology)
    d_l = np.full(zz.shape, np.nan)
    if ok.any():
        d_l[ok] = distance(cosmo, zz[ok]) * _MPC_M
    lum = 4.0 * math.pi * d_l ** 2 * f * 1e-26 * (1.0 + np.where(ok, zz, 0.0)) ** (-(1.0 + a))
    if rest_freq_hz is not None:
        if freq_hz is None:
            raise ValueError("rest_freq_hz: give the observed freq_hz too")
        lum = lum * (float(rest_freq_hz) / float(freq_hz)) ** a
    return np.where(ok, lum, np.nan)


def luminosity_table(table: Any, *, z_column: str, alpha: float = -0.7,
                     alpha_column: str | None = None, z_err_column: str | None = None,
                     freq_hz: float | None = None, rest_freq_hz: float | None = None,
                     size_column: str | None = None, cosmology: str = "Planck18",
                     what: str = "catalogue") -> Any:
    """``table`` with ``luminosity`` and ``luminosity_err`` (W/Hz), ``log_luminosity``,
    ``d_l`` (Mpc) and, with ``size_column`` (arcsec: e.g. ``bmaj_deconv``, or a double's
    ``sep``), ``size_kpc``: its ``flux`` (Jy, or an alias) at ``z_column``'s redshifts,
    each source's ``alpha_column`` where finite, else ``alpha``.  ``freq_hz``: the
    catalogue's frequency (default its metadata's ``frequency_hz``, which ``predict``
    records; needed with ``rest_freq_hz``)."""
    flux = column_values(table, "flux", what)
    if flux is None:
        raise CatalogueError(f"{what}: no flux column (flux, or an alias such as Total_flux)")
    for name in (z_column, alpha_column, z_err_column, size_column):
        if name is not None and name not in table.colnames:
            raise CatalogueError(f"{what}: no column {name!r}")

    def col(name: str) -> np.ndarray:
        return column_values(table, name, what)  # (masked: NaN)

    z = col(z_column)
    a = np.full(len(table), float(alpha))
    if alpha_column is not None:
        own = col(alpha_column)
        a = np.where(np.isfinite(own), own, a)
    if freq_hz is None:
        freq_hz = table.meta.get("frequency_hz") if hasattr(table, "meta") else None
    if rest_freq_hz is not None and not freq_hz:
        raise ValueError(f"{what}: its frequency is not known (metadata frequency_hz): give "
                         "freq_hz (--freq-mhz) with rest_freq_hz")
    kw = dict(alpha=a, freq_hz=freq_hz, rest_freq_hz=rest_freq_hz, cosmology=cosmology)
    lum = radio_luminosity(flux, z, **kw)
    f_err = column_values(table, "flux_err", what)
    rel = np.abs(f_err / flux) if f_err is not None else np.zeros(len(table))
    if z_err_column is not None:  # d ln L / dz by a central difference
        dz = 1e-3 * np.maximum(z, 1e-3)
        up, down = radio_luminosity(flux, z + dz, **kw), radio_luminosity(flux, z - dz, **kw)
        dlnl = (np.log(up) - np.log(down)) / (2 * dz)
        rel = np.hypot(rel, dlnl * col(z_err_column))
    out = table.copy(copy_data=True)
    out["luminosity"] = lum
    out["luminosity"].unit = "W / Hz"
    out["luminosity_err"] = lum * rel
    out["luminosity_err"].unit = "W / Hz"
    with np.errstate(divide="ignore", invalid="ignore"):
        out["log_luminosity"] = np.log10(lum)
    cosmo = cosmology_by_name(cosmology)
    ok = np.isfinite(z) & (z > 0)
    d_l = np.full(len(table), np.nan)
    d_a = np.full(len(table), np.nan)
    if ok.any():
        d_l[ok] = distance(cosmo, z[ok])
        d_a[ok] = distance(cosmo, z[ok], "angular_diameter_distance")
    out["d_l"] = d_l
    out["d_l"].unit = "Mpc"
    if size_column is not None:
        out["size_kpc"] = col(size_column) * math.pi / (180 * 3600) * d_a * 1e3
        out["size_kpc"].unit = "kpc"
    out.meta["luminosity"] = {"note": LUMINOSITY_NOTE, "cosmology": str(cosmology),
                              "alpha": float(alpha), "alpha_column": alpha_column,
                              "freq_hz": freq_hz, "rest_freq_hz": rest_freq_hz or freq_hz,
                              "z_column": z_column, "n_with_z": int(ok.sum())}
    return out
