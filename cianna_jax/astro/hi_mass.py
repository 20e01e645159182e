"""HI masses and sizes of 21 cm lines.

* :func:`hi_mass`: the HI mass of a line from its integrated flux and redshift,
  ``M = 49.7 D_L^2 S`` (Meyer et al. 2017, PASA 34, e052, eq. 50; optically thin HI).
* :func:`hi_diameter_kpc`, :func:`hi_diameter_arcsec`: the HI diameter at a face-on surface
  density of 1 Msun/pc^2 (SDC2's ``hi_size``) predicted from the mass by the HI size-mass
  relation, ``log D = 0.506 log M - 3.293`` (D in kpc; Wang et al. 2016, MNRAS 460, 2143),
  tight to 0.06 dex (14%) over five decades of mass. It gives the size of a line the beam
  does not resolve, and of one it resolves without knowing the galaxy's surface-density
  profile (a Gaussian disc's FWHM is 0.56-0.59 of it for 10^7-10^11 Msun).
* :func:`gaussian_disc_diameter` and :func:`gaussian_disc_fwhm`: the same diameter for a
  disc whose face-on surface density is a Gaussian, and the Gaussian that has a given one
  (the simulator's discs).

Distances come from astropy's Planck18 cosmology.
"""

from __future__ import annotations

import math

import numpy as np

from ._deps import require
from .distances import distance

__all__ = ["hi_mass", "hi_diameter_kpc", "hi_diameter_arcsec", "hi_diameter_error",
           "angular_diameter_distance",
           "gaussian_disc_diameter", "gaussian_disc_fwhm", "gaussian_disc_max_diameter",
           "ARCSEC_PER_RAD", "SIZE_MASS_SLOPE",
           "SIZE_MASS_INTERCEPT", "SIZE_MASS_SCATTER_DEX", "SIZE_MASS_NOTE"]

#: Wang et al. (2016): log10(D_HI / kpc) = SLOPE log10(M_HI / Msun) + INTERCEPT
SIZE_MASS_SLOPE = 0.506
SIZE_MASS_INTERCEPT = -3.293
#: the relation's observed scatter (dex)
SIZE_MASS_SCATTER_DEX = 0.06
SIZE_MASS_NOTE = ("d_hi: the HI diameter at 1 Msun/pc^2 from log_mhi by the HI size-mass "
                  "relation log10(D/kpc) = 0.506 log_mhi - 3.293 (Wang et al. 2016, MNRAS "
                  "460, 2143; 0.06 dex scatter), as an angle at the line's redshift (astropy's "
                  "Planck18 angular diameter distance)")

#: arcseconds per radian
ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _valid_redshift(redshift) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(redshift, np.float64)
    return z, np.isfinite(z) & (z > 0)


def hi_mass(line_flux: np.ndarray, redshift: np.ndarray) -> np.ndarray:
    """log10 of the HI mass (solar masses) of lines of integrated flux ``line_flux`` (Jy Hz)
    at ``redshift``: M = 49.7 D_L^2 S (D_L in Mpc, Planck 2018 cosmology). NaN where the
    flux or the redshift is not positive (no Hubble-flow distance)."""
    cosmo = require("astropy.cosmology").Planck18
    zr, ok = _valid_redshift(redshift)
    s = np.asarray(line_flux, np.float64)
    ok &= np.isfinite(s) & (s > 0)
    out = np.full(np.broadcast(zr, s).shape, np.nan)
    if ok.any():
        zr, s = np.broadcast_to(zr, out.shape), np.broadcast_to(s, out.shape)
        d = distance(cosmo, zr[ok])
        out[ok] = np.log10(49.7 * d ** 2 * s[ok])
    return out


def angular_diameter_distance(redshift: np.ndarray) -> np.ndarray:
    """Angular diameter distance (kpc) at ``redshift`` (Planck 2018); NaN where the
    redshift is not positive."""
    cosmo = require("astropy.cosmology").Planck18
    zr, ok = _valid_redshift(redshift)
    out = np.full(zr.shape, np.nan)
    if ok.any():
        out[ok] = distance(cosmo, zr[ok], "angular_diameter_distance", "kpc")
    return out


def hi_diameter_kpc(log_mhi: np.ndarray) -> np.ndarray:
    """HI diameter at 1 Msun/pc^2 (kpc) of galaxies of HI mass ``10**log_mhi`` Msun, by the
    HI size-mass relation (Wang et al. 2016)."""
    return 10.0 ** (SIZE_MASS_SLOPE * np.asarray(log_mhi, np.float64) + SIZE_MASS_INTERCEPT)


def hi_diameter_arcsec(log_mhi: np.ndarray, redshift: np.ndarray) -> np.ndarray:
    """:func:`hi_diameter_kpc` as seen at ``redshift`` (arcsec); NaN where either is
    undefined."""
    with np.errstate(invalid="ignore"):
        return hi_diameter_kpc(log_mhi) / angular_diameter_distance(redshift) * ARCSEC_PER_RAD


def hi_diameter_error(d_hi: np.ndarray, log_mhi_err: np.ndarray) -> np.ndarray:
    """1-sigma error of one galaxy's :func:`hi_diameter_arcsec` ``d_hi``: the mass's error
    (``log_mhi_err``, dex) through the relation's slope and the relation's own scatter,
    ``d_hi ln(10) sqrt((0.506 log_mhi_err)^2 + 0.06^2)``."""
    dex = np.hypot(SIZE_MASS_SLOPE * np.asarray(log_mhi_err, np.float64), SIZE_MASS_SCATTER_DEX)
    return np.asarray(d_hi, np.float64) * np.log(10.0) * dex


def gaussian_disc_diameter(log_mhi: np.ndarray, fwhm_kpc: np.ndarray) -> np.ndarray:
    """Diameter (kpc) at which a disc of HI mass ``10**log_mhi`` Msun whose face-on surface
    density is a Gaussian of FWHM ``fwhm_kpc`` falls to 1 Msun/pc^2:
    ``2 sigma sqrt(2 ln(Sigma_0))``, ``Sigma_0 = M / (2 pi sigma^2)`` its centre's (0 where
    even the centre is below 1 Msun/pc^2)."""
    sigma_pc = 1e3 * np.asarray(fwhm_kpc, np.float64) / _FWHM
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_centre = np.log(10.0) * np.asarray(log_mhi, np.float64) \
            - np.log(2.0 * math.pi * sigma_pc**2)
        return 2e-3 * sigma_pc * np.sqrt(2.0 * np.maximum(ln_centre, 0.0))


def gaussian_disc_max_diameter(log_mhi: np.ndarray) -> np.ndarray:
    """The largest diameter (kpc) at which any Gaussian disc of HI mass ``10**log_mhi`` Msun
    reaches 1 Msun/pc^2, ``sqrt(4 M / (pi e))`` pc (its centre at ``e`` Msun/pc^2): 0.07 dex
    above the size-mass relation at 10^10 Msun, 0.06 at 10^11."""
    return 1e-3 * np.sqrt(4.0 * 10.0 ** np.asarray(log_mhi, np.float64) / (math.pi * math.e))


def gaussian_disc_fwhm(log_mhi: np.ndarray, diameter_kpc: np.ndarray) -> np.ndarray:
    """FWHM (kpc) of the Gaussian face-on surface density of a disc of HI mass
    ``10**log_mhi`` Msun that falls to 1 Msun/pc^2 at ``diameter_kpc``: of the two
    Gaussians that do, the compact one (centre above ``e`` Msun/pc^2, as galaxies' HI
    discs, 3-10 Msun/pc^2 in their inner parts). ``sigma^2 = a / t`` with ``a = D^2 / 8``
    and ``t = -W_-1(-2 pi a / M)`` (Lambert's W); NaN where no Gaussian reaches the
    diameter (``M < 2 pi e a``)."""
    from scipy.special import lambertw

    d_pc = 1e3 * np.asarray(diameter_kpc, np.float64)
    a = d_pc**2 / 8.0
    arg = -2.0 * math.pi * a / 10.0 ** np.asarray(log_mhi, np.float64)
    ok = np.isfinite(arg) & (arg >= -1.0 / math.e) & (arg < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = -np.real(lambertw(np.where(ok, arg, -0.1), k=-1))
        return np.where(ok, 1e-3 * _FWHM * np.sqrt(a / t), np.nan)
