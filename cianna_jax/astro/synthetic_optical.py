"""A simulated optical catalogue around a radio catalogue, with known hosts: to check the
likelihood-ratio cross-identification (:mod:`.crossid`) where the truth is known.

Background objects lie uniformly over the field with magnitudes of rising counts
(``N(<m)`` growing as ``10^(slope m)``, down to the catalogue's limit); a fraction of the
radio sources have a host of Gaussian magnitude distribution, seen where it is brighter
than the limit.  Hosts and background objects have Gaussian colours, the hosts redder.  Radio and optical positions scatter around the true ones by their own
errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import make_table

__all__ = ["SimulatedIds", "simulate_counterparts"]


@dataclass(frozen=True)
class SimulatedIds:
    """``radio`` (ra, dec, ra_err, dec_err) and ``optical`` (ra, dec, mag) tables; ``host``:
    each radio source's host row in ``optical`` (-1: none in the catalogue); ``q0`` the
    fraction of radio sources whose host is in it."""

    radio: Any
    optical: Any
    host: np.ndarray
    q0: float


def simulate_counterparts(n_radio: int = 2000, *, field_deg: float = 1.0,
                          density_arcmin2: float = 20.0, host_fraction: float = 0.9,
                          host_mag: tuple[float, float] = (20.0, 1.5),
                          mag_range: tuple[float, float] = (14.0, 24.0), slope: float = 0.35,
                          radio_error: tuple[float, float] = (0.3, 1.5),
                          optical_error: float = 0.2, seed: int = 0,
                          positions: tuple[np.ndarray, np.ndarray] | None = None,
                          colours: tuple[tuple[float, float], tuple[float, float]] = (
                              (1.0, 0.5), (2.0, 0.5))) -> SimulatedIds:
    """``n_radio`` radio sources over a ``field_deg`` square field at (150, 2) deg, with
    position errors uniform in ``radio_error`` (arcsec, per axis); an optical catalogue of
    ``density_arcmin2`` background objects per square arcmin (magnitudes in
    ``mag_range``, counts rising by ``slope`` dex per magnitude) and the hosts of a
    ``host_fraction`` of the radio sources (magnitudes normal, mean and sd ``host_mag``;
    those fainter than ``mag_range[1]`` not in the catalogue), optical errors
    ``optical_error`` arcsec per axis.  ``positions``: the radio sources' true (RA, Dec) in
    degrees instead (e.g. a simulated field's truth; ``n_radio`` and ``field_deg`` then
    unused): the background covers their extent.  ``colours``: the background's and the
    hosts' colours (column ``colour``), normal with these means and sds (radio hosts are
    redder)."""
    rng = np.random.default_rng([int(seed), 41])
    if positions is not None:
        pra, pdec = (np.asarray(v, np.float64) for v in positions)
        ra0 = float(np.degrees(np.arctan2(np.mean(np.sin(np.radians(pra))),
                                          np.mean(np.cos(np.radians(pra))))) % 360.0)
        dra = np.mod(pra - ra0 + 180.0, 360.0) - 180.0
        dec0 = 0.5 * float(np.min(pdec) + np.max(pdec))
        cosd = math.cos(math.radians(dec0))
        width = (float(np.ptp(dra)) * cosd, float(np.ptp(pdec)))
        ra0 += 0.5 * float(np.min(dra) + np.max(dra))
        n_radio = pra.size
    else:
        ra0, dec0 = 150.0, 2.0
        cosd = math.cos(math.radians(dec0))
        width = (field_deg, field_deg)

    def place(n: int) -> tuple[np.ndarray, np.ndarray]:
        return (ra0 + rng.uniform(-0.5, 0.5, n) * width[0] / cosd,
                dec0 + rng.uniform(-0.5, 0.5, n) * width[1])

    def jitter(ra: np.ndarray, dec: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (ra + rng.normal(0.0, 1.0, ra.size) * s / 3600.0 / cosd,
                dec + rng.normal(0.0, 1.0, dec.size) * s / 3600.0)

    tra, tdec = place(n_radio) if positions is None else (pra, pdec)
    s_radio = rng.uniform(*radio_error, n_radio)
    rra, rdec = jitter(tra, tdec, s_radio)
    has = rng.random(n_radio) < host_fraction
    hmag = rng.normal(host_mag[0], host_mag[1], n_radio)
    seen = has & (hmag >= mag_range[0]) & (hmag <= mag_range[1])
    n_bg = rng.poisson(density_arcmin2 * width[0] * width[1] * 3600.0)
    bra, bdec = place(n_bg)
    a, b = 10.0 ** (slope * mag_range[0]), 10.0 ** (slope * mag_range[1])
    bmag = np.log10(a + rng.random(n_bg) * (b - a)) / slope
    hra, hdec = jitter(tra[seen], tdec[seen], np.full(int(seen.sum()), optical_error))
    bra, bdec = jitter(bra, bdec, np.full(n_bg, optical_error))
    ora, odec = np.concatenate([hra, bra]), np.concatenate([hdec, bdec])
    omag = np.concatenate([hmag[seen], bmag])
    shuffle = rng.permutation(ora.size)
    host = np.full(n_radio, -1, np.int64)
    host[seen] = np.argsort(shuffle)[: int(seen.sum())]
    colour = np.concatenate([rng.normal(*colours[1], int(seen.sum())),
                             rng.normal(*colours[0], n_bg)])
    radio = make_table({"ra": rra, "dec": rdec, "ra_err": s_radio, "dec_err": s_radio})
    optical = make_table({"ra": ora[shuffle], "dec": odec[shuffle], "mag": omag[shuffle],
                          "colour": colour[shuffle]}, units={"mag": "mag", "colour": "mag"})
    return SimulatedIds(radio, optical, host, float(seen.mean()))
