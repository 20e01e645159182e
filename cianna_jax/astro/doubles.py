"""Double radio sources: the two lobes of one radio galaxy, catalogued as two sources.

A finder lists a double-lobed radio galaxy's lobes apart, and its host (between them)
matches neither. Pairs are taken as the lobes of one source by the criterion of
Magliocchetti et al. (1998, FIRST): each the other's nearest neighbour, separated by at most
``theta_max = scale * (S_total / 100 mJy)^0.5`` arcsec (brighter doubles are larger; 100
arcsec at 100 mJy for FIRST's 5-arcsec beam) and of fluxes within a factor ``max_ratio``
(4) of each other. Chance pairs of unrelated sources meet the criterion too; their
expected number is the count found on the same catalogue with each source moved 3-6
``scale`` away in a random direction (the survey's density kept, its physical pairs broken:
``chance`` below), which says how many of the pairs to trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import CatalogueError, column_values, make_table
from .crossmatch import tangent_plane

__all__ = ["Doubles", "find_doubles", "DOUBLES_NOTE", "format_doubles"]

DOUBLES_NOTE = ("pairs of mutual nearest neighbours within scale * sqrt(S_total / 100 mJy) "
                "arcsec of fluxes within max_ratio of each other (Magliocchetti et al. "
                "1998): the lobes of one radio galaxy, or a chance pair")


@dataclass(frozen=True)
class Doubles:
    """The pairs found: ``pairs`` (a table: the two rows, ``ra``, ``dec`` of their
    flux-weighted centre, where the host is looked for, ``flux`` the sum, ``sep``
    (arcsec), ``pa`` of the axis (deg east of north), ``ratio`` the fainter's flux over the
    brighter's); ``table`` the catalogue with ``double`` (the pair's number from 1, 0 for
    none) and ``double_partner`` (the other's row, -1); ``chance`` the pairs expected by
    chance (the mean over scattered catalogues) and its spread."""

    pairs: Any
    table: Any
    chance: float
    chance_std: float


def _pairs(x: np.ndarray, y: np.ndarray, flux: np.ndarray, scale: float,
           max_ratio: float) -> np.ndarray:
    """``[n, 2]`` rows of the pairs meeting the criterion (brighter first)."""
    from scipy.spatial import cKDTree

    if x.size < 2:
        return np.zeros((0, 2), np.int64)
    d, j = cKDTree(np.stack([x, y], 1)).query(np.stack([x, y], 1), k=2)
    d, j = d[:, 1], j[:, 1]
    i = np.arange(x.size)
    mutual = (j[j] == i) & (i < j)
    a, b = i[mutual], j[mutual]
    total = flux[a] + flux[b]
    theta = scale * np.sqrt(np.clip(total, 0.0, None) / 0.1)
    hi, lo = np.maximum(flux[a], flux[b]), np.minimum(flux[a], flux[b])
    with np.errstate(invalid="ignore", divide="ignore"):  # (0 apart: a listed twice)
        ok = (d[a] <= theta) & (d[a] > 0) & (lo > 0) & (hi / lo <= max_ratio)
    a, b = a[ok], b[ok]
    swap = flux[b] > flux[a]
    return np.stack([np.where(swap, b, a), np.where(swap, a, b)], 1)


def find_doubles(table: Any, *, scale: float = 100.0, max_ratio: float = 4.0,
                 chance_draws: int = 20, seed: int = 0, what: str = "catalogue") -> Doubles:
    """The double sources of a catalogue (``ra``, ``dec`` in degrees and ``flux`` in Jy, or
    their aliases, such as PyBDSF's ``Total_flux``): see the module's note; ``scale``: the
    largest separation (arcsec) at a total flux of 100 mJy; ``chance_draws``: catalogues
    with the sources moved at random for the chance pairs' number; ``seed`` their
    draws."""
    as_bounded_float(scale, "scale")
    if not (as_bounded_float(max_ratio, "max_ratio") >= 1.0):
        raise ValueError(f"max_ratio: at least 1; received {max_ratio!r}")
    chance_draws = as_int(chance_draws, "chance_draws", minimum=0)
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    flux = column_values(table, "flux", what)
    if ra is None or dec is None or flux is None:
        raise CatalogueError(f"{what}: needs ra, dec and flux columns (or their aliases)")
    ok = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(flux) & (flux > 0)
    rows = np.flatnonzero(ok)
    if rows.size < 2:
        raise CatalogueError(f"{what}: {rows.size} sources with a position and a positive "
                             "flux; pairs need two")
    x, y, _, _ = tangent_plane(ra[rows], dec[rows])
    pr = _pairs(x, y, flux[rows], scale, max_ratio)
    rng = np.random.default_rng([int(seed), 61])
    chance = []
    for _ in range(chance_draws):  # each source moved 3-6 scales away, in any direction
        r = rng.uniform(3.0, 6.0, x.size) * scale
        t = rng.uniform(0.0, 2.0 * np.pi, x.size)
        chance.append(len(_pairs(x + r * np.cos(t), y + r * np.sin(t), flux[rows], scale,
                                 max_ratio)))
    a, b = rows[pr[:, 0]], rows[pr[:, 1]]
    fa, fb = flux[a], flux[b]
    w = fa / (fa + fb)
    dra = np.mod(ra[b] - ra[a] + 180.0, 360.0) - 180.0
    cosd = np.cos(np.radians(dec[a]))
    east, north = dra * cosd * 3600.0, (dec[b] - dec[a]) * 3600.0
    pairs = make_table({"number": np.arange(1, len(a) + 1), "row_1": a, "row_2": b,
                        "ra": np.mod(ra[a] + (1 - w) * dra, 360.0),
                        "dec": dec[a] + (1 - w) * (dec[b] - dec[a]),
                        "flux": fa + fb, "sep": np.hypot(east, north),
                        "pa": np.mod(np.degrees(np.arctan2(east, north)), 180.0),
                        "ratio": fb / fa},
                       meta={"doubles": DOUBLES_NOTE, "scale_arcsec": float(scale),
                             "max_ratio": float(max_ratio),
                             "chance_pairs": float(np.mean(chance)) if chance else None},
                       units={"sep": "arcsec", "pa": "deg"})
    out = table.copy(copy_data=True)
    number = np.zeros(len(table), np.int64)
    partner = np.full(len(table), -1, np.int64)
    number[a], number[b] = np.arange(1, len(a) + 1), np.arange(1, len(a) + 1)
    partner[a], partner[b] = b, a
    out["double"], out["double_partner"] = number, partner
    return Doubles(pairs, out, float(np.mean(chance)) if chance else float("nan"),
                   float(np.std(chance)) if chance else float("nan"))


def format_doubles(d: Doubles) -> str:
    """The pairs' count beside the chance pairs'."""
    n = len(d.pairs)
    line = f"{n} double sources (pairs of mutual nearest neighbours of similar fluxes)"
    if np.isfinite(d.chance):
        line += (f"; {d.chance:.1f} +- {d.chance_std:.1f} expected by chance (the sources "
                 f"moved at random)")
        if n:
            line += f": about {max(0.0, 1.0 - d.chance / n):.0%} of them real"
    return line
