"""The spatial clustering length from an angular correlation function (Limber's equation).

A power law ``xi(r) = (r / r0)^-gamma`` in comoving coordinates, its amplitude changing with
redshift as ``(1+z)^(gamma - 3 - epsilon)`` (``epsilon = gamma - 3``: constant in comoving
coordinates, the default; 0: stable clustering), projected through the sources' redshift
distribution ``N(z)`` gives ``w(theta) = A theta^(1-gamma)`` with (Peebles 1980; e.g.
Overzier et al. 2003, Hale et al. 2018)

    A = H_gamma r0^gamma  int N(z)^2 (1+z)^(gamma-3-epsilon) chi(z)^(1-gamma) dz/dchi dz
                          / (int N(z) dz)^2,
    H_gamma = Gamma(1/2) Gamma((gamma - 1)/2) / Gamma(gamma/2),

``chi`` the transverse comoving distance, ``dchi/dz = c / H(z)``, ``theta`` in radians.
Radio surveys take ``N(z)`` from simulations (SKADS, T-RECS) or from their hosts'
photometric redshifts (``cianna-jax crossid --keep z_phot``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .luminosity import cosmology_by_name
from .spectral import C_KMS

__all__ = ["H_gamma", "limber_kernel", "amplitude_from_r0", "r0_from_amplitude",
           "redshift_distribution", "read_nz", "median_redshift", "ClusteringLength"]

def H_gamma(gamma: float) -> float:  # noqa: N802 (the literature's name)
    """``Gamma(1/2) Gamma((gamma-1)/2) / Gamma(gamma/2)`` (gamma > 1)."""
    g = as_bounded_float(gamma, "gamma", low=1.0)
    return math.gamma(0.5) * math.gamma((g - 1.0) / 2.0) / math.gamma(g / 2.0)


def redshift_distribution(z: np.ndarray, *, step: float = 0.05
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``(z, N)`` on bins of ``step``: the histogram of a sample's redshifts (finite, >= 0),
    at the bins' middles, for :func:`limber_kernel`."""
    z = np.asarray(z, np.float64)
    z = z[np.isfinite(z) & (z >= 0)]
    if z.size < 2:
        raise ValueError(f"redshifts: at least two finite redshifts are needed; received "
                         f"{z.size}")
    s = as_bounded_float(step, "step")
    edges = np.arange(0.0, z.max() + 2 * s, s)
    n, _ = np.histogram(z, edges)
    return 0.5 * (edges[:-1] + edges[1:]), n.astype(np.float64)


def limber_kernel(z: np.ndarray, nz: np.ndarray, gamma: float, *, epsilon: float | None = None,
                  cosmology: str | Any = "Planck18", samples: int = 2000) -> float:
    """``A / r0^gamma`` (``r0`` in Mpc, ``theta`` in radians) for the redshift distribution
    ``nz`` at redshifts ``z`` (interpolated linearly onto ``samples`` points; any
    normalisation)."""
    z, nz = np.asarray(z, np.float64), np.asarray(nz, np.float64)
    if z.ndim != 1 or z.shape != nz.shape or z.size < 2 or np.any(np.diff(z) <= 0):
        raise ValueError("nz: a distribution on increasing redshifts, as many values as "
                         f"redshifts (received {z.shape} and {nz.shape})")
    if np.any(nz < 0) or not np.isfinite(nz).all() or nz.sum() <= 0 or z[0] < 0:
        raise ValueError("nz: finite, non-negative, not all zero, at redshifts >= 0")
    g = as_bounded_float(gamma, "gamma", low=1.0)
    eps = g - 3.0 if epsilon is None else float(epsilon)
    cosmo = cosmology_by_name(cosmology) if isinstance(cosmology, str) else cosmology
    zz = np.linspace(max(z[0], 1e-4), z[-1], int(samples))
    n = np.interp(zz, z, nz)
    chi = np.asarray(cosmo.comoving_transverse_distance(zz).to_value("Mpc"))
    dz_dchi = np.asarray(cosmo.H(zz).to_value("km/(s Mpc)")) / C_KMS
    top = np.trapezoid(n ** 2 * (1 + zz) ** (g - 3.0 - eps) * chi ** (1.0 - g) * dz_dchi, zz)
    return float(H_gamma(g) * top / np.trapezoid(n, zz) ** 2)


def median_redshift(z: np.ndarray, nz: np.ndarray) -> float:
    """The median of the distribution ``nz`` at ``z``, read linearly between its points (as
    :func:`limber_kernel` reads it)."""
    z, nz = np.asarray(z, np.float64), np.asarray(nz, np.float64)
    zz = np.linspace(z[0], z[-1], 4001)
    n = np.interp(zz, z, nz)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (n[1:] + n[:-1]))])
    return float(np.interp(0.5, cdf / cdf[-1], zz))


def amplitude_from_r0(r0_mpc: float, gamma: float, kernel: float) -> float:
    """``A`` with ``theta`` in degrees, from ``r0`` (Mpc) and :func:`limber_kernel`."""
    return float(kernel * r0_mpc ** gamma * (180.0 / math.pi) ** (gamma - 1.0))


def r0_from_amplitude(amplitude_deg: float, gamma: float, kernel: float) -> float:
    """``r0`` (Mpc) from ``A`` (``theta`` in degrees); NaN for a non-positive ``A``."""
    if not amplitude_deg > 0:
        return float("nan")
    return float((amplitude_deg * (math.pi / 180.0) ** (gamma - 1.0) / kernel) ** (1.0 / gamma))


@dataclass(frozen=True)
class ClusteringLength:
    """``r0`` (Mpc and h^-1 Mpc) with its error from the amplitude's, the median redshift of
    ``N(z)`` and the model's settings."""

    r0_mpc: float
    r0_err_mpc: float
    h: float
    z_median: float
    gamma: float
    epsilon: float
    cosmology: str

    @classmethod
    def from_fit(cls, amplitude_deg: float, amplitude_err: float, gamma: float,
                 z: np.ndarray, nz: np.ndarray, *, epsilon: float | None = None,
                 cosmology: str = "Planck18") -> ClusteringLength:
        k = limber_kernel(z, nz, gamma, epsilon=epsilon, cosmology=cosmology)
        r0 = r0_from_amplitude(amplitude_deg, gamma, k)
        h = float(cosmology_by_name(cosmology).h)
        return cls(r0, r0 * amplitude_err / (gamma * amplitude_deg) if amplitude_deg > 0
                   else float("nan"), h, median_redshift(z, nz), float(gamma),
                   float(gamma - 3.0 if epsilon is None else epsilon), cosmology)

    def as_dict(self) -> dict[str, Any]:
        return {"r0_mpc": self.r0_mpc, "r0_err_mpc": self.r0_err_mpc,
                "r0_h_mpc": self.r0_mpc * self.h, "r0_err_h_mpc": self.r0_err_mpc * self.h,
                "z_median": self.z_median, "gamma": self.gamma, "epsilon": self.epsilon,
                "cosmology": self.cosmology}


def read_nz(path: Any, z_column: str | None = None, *, step: float = 0.05
            ) -> tuple[np.ndarray, np.ndarray]:
    """A redshift distribution from a file: a table of ``z`` and ``n`` (as simulations give
    it), or with ``z_column`` a catalogue's redshifts (e.g. crossid's ``lr_z_phot``),
    histogrammed in bins of ``step``."""
    import os

    from .catalogue import CatalogueError, read_catalogue

    t = read_catalogue(path)
    name = os.fspath(path)
    if z_column is not None:
        if z_column not in t.colnames:
            raise CatalogueError(f"{name}: no column {z_column!r} (columns: "
                                 f"{', '.join(t.colnames)})")
        return redshift_distribution(np.asarray(np.ma.filled(
            np.ma.asarray(t[z_column], np.float64), np.nan)), step=step)
    if not {"z", "n"} <= set(t.colnames):
        raise CatalogueError(f"{name}: an N(z) table has columns z and n; for a catalogue "
                             "of redshifts give its z column (z_column)")
    return np.asarray(t["z"], np.float64), np.asarray(t["n"], np.float64)
