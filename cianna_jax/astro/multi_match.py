"""Catalogues of one sky (several frequencies or epochs) matched into one list of sources.

The first catalogue's sources are the references; each next catalogue is matched to them
one-to-one, nearest first, within a radius (:func:`.crossmatch.crossmatch_sky`), and with
``keep_new`` its unmatched sources become references too (a source that appears later: a
transient, or one below the first image's limit), at their own position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .catalogue import column_values, require_columns
from .crossmatch import crossmatch_sky

__all__ = ["Matched", "match_catalogues", "matching_radius", "catalogue_columns"]


@dataclass(frozen=True)
class Matched:
    """``ra``, ``dec`` ``(M,)`` of the reference sources; ``index (M, K)`` each one's row in
    catalogue k (-1: not in it); ``sep (M, K)`` its separation there (arcsec, NaN: none);
    ``first (M,)`` the catalogue it was first found in."""

    ra: np.ndarray
    dec: np.ndarray
    index: np.ndarray
    sep: np.ndarray
    first: np.ndarray

    def take(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """``(M, K)``: catalogue k's ``values[k]`` at each source's row (NaN where none)."""
        out = np.full(self.index.shape, np.nan)
        for k, v in enumerate(values):
            have = self.index[:, k] >= 0
            out[have, k] = np.asarray(v, np.float64)[self.index[have, k]]
        return out


def matching_radius(tables: Sequence[Any], radius_arcsec: float | None) -> float:
    """``radius_arcsec``, or half the largest beam FWHM the catalogues' metadata record
    (``beam_bmaj_arcsec``); ValueError when neither is there."""
    if radius_arcsec is not None:
        return as_bounded_float(radius_arcsec, "radius_arcsec")
    beams = []
    for t in tables:
        try:
            b = float(getattr(t, "meta", {}).get("beam_bmaj_arcsec"))
        except (TypeError, ValueError):
            continue
        if math.isfinite(b) and b > 0:
            beams.append(b)
    if not beams:
        raise ValueError("radius_arcsec: the catalogues record no beam (beam_bmaj_arcsec): "
                         "give the matching radius")
    return 0.5 * max(beams)


def catalogue_columns(table: Any, what: str, names: Sequence[str] = ("flux", "flux_err")
                      ) -> dict[str, np.ndarray]:
    """ra, dec, flux (required) and ``names``' other columns (NaN when missing) of a
    catalogue, as float64."""
    require_columns(table, ("ra", "dec", "flux"), what)
    out = {"ra": column_values(table, "ra", what), "dec": column_values(table, "dec", what)}
    for n in names:
        v = column_values(table, n, what)
        out[n] = np.full(len(table), np.nan) if v is None else v
    return out


def match_catalogues(positions: Sequence[tuple[np.ndarray, np.ndarray]], radius_arcsec: float,
                     *, keep_new: bool = False) -> Matched:
    """Match the catalogues' ``(ra, dec)`` positions (degrees) as the module docstring says."""
    ra = np.asarray(positions[0][0], np.float64)
    dec = np.asarray(positions[0][1], np.float64)
    k_all = len(positions)
    rows = [np.arange(ra.size)]  # per catalogue: the reference index of each matched row
    index = [np.full(ra.size, -1, np.int64) for _ in range(k_all)]
    sep = [np.full(ra.size, np.nan) for _ in range(k_all)]
    index[0][:] = rows[0]
    sep[0][:] = 0.0
    first = np.zeros(ra.size, np.int64)
    for k in range(1, k_all):
        r, d = (np.asarray(v, np.float64) for v in positions[k])
        m = crossmatch_sky(r, d, ra, dec, radius_arcsec)
        index[k][m.truth], sep[k][m.truth] = m.det, m.separation
        if keep_new:
            new = np.flatnonzero(m.det_to_truth < 0)
            if new.size:
                ra, dec = np.concatenate([ra, r[new]]), np.concatenate([dec, d[new]])
                for j in range(k_all):
                    index[j] = np.concatenate([index[j], np.full(new.size, -1, np.int64)])
                    sep[j] = np.concatenate([sep[j], np.full(new.size, np.nan)])
                index[k][-new.size:], sep[k][-new.size:] = new, 0.0
                first = np.concatenate([first, np.full(new.size, k, np.int64)])
    return Matched(ra, dec, np.stack(index, 1), np.stack(sep, 1), first)
