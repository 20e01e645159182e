"""Random catalogues with a catalogue's selection, for clustering measurements.

A catalogue's sources are not spread over its image as the sky spreads them: where the noise
is higher (a mosaic's edges, around bright sources, a primary beam's fall) fewer faint
sources reach the threshold. An angular correlation function measured against randoms
spread uniformly then sees that pattern as clustering. The randoms here share the
selection: uniform on the sky of the image's data, each with a true flux and peak drawn from
the catalogue's own sources (each weighted by 1 / the fraction of the area where it could be
found, which gives the sources' true distribution above the flux cut), and kept as the
detector would have kept it at its place: a hard threshold ``peak >= snr x rms`` (rms seen
through the primary beam when the catalogue was corrected for one), or the completeness by
SNR that source injection measured (``cianna-jax inject``). LoTSS's clustering papers
(Siewert et al. 2020, Hale et al. 2024) make their randoms so, from simulated fluxes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import CatalogueError, read_catalogue
from .footprint import Footprint, MosaicFootprint

__all__ = ["Detection", "Randoms", "visible_fraction", "intrinsic_weights",
           "draw_randoms"]

#: the visible-fraction table's peaks per decade
_PER_DECADE = 64


@dataclass(frozen=True)
class Detection:
    """The chance that a source of true peak SNR ``s`` (its peak / the local rms) is found:
    1 at or above ``snr`` and 0 below it (a hard threshold), or the completeness by SNR of
    source injection (``snr_edges``, ``completeness`` per bin: linear between the bins'
    middles, 0 below the first bin, the last bin's value above the last)."""

    snr: float | None = 5.0
    snr_edges: np.ndarray | None = field(default=None, repr=False)
    completeness: np.ndarray | None = field(default=None, repr=False)
    source: str = "threshold"

    @classmethod
    def threshold(cls, snr: float = 5.0) -> Detection:
        """Found at or above ``snr`` times the local rms, never below."""
        return cls(snr=as_bounded_float(snr, "snr"))

    @classmethod
    def from_injection(cls, report: str | os.PathLike) -> Detection:
        """Source injection's completeness by injected peak SNR: its report folder or its
        ``completeness_by_snr.ecsv``."""
        p = os.fspath(report)
        if os.path.isdir(p):
            p = os.path.join(p, "completeness_by_snr.ecsv")
        if not os.path.exists(p):
            raise FileNotFoundError(f"injection: {p} not found (cianna-jax inject writes "
                                    "completeness_by_snr.ecsv in its report folder)")
        t = read_catalogue(p)
        need = {"snr_min", "snr_max", "completeness"}
        if not need <= set(t.colnames):
            raise CatalogueError(f"{p}: not a completeness table by SNR (needs "
                                 f"{sorted(need)})")
        lo, hi = np.asarray(t["snr_min"], np.float64), np.asarray(t["snr_max"], np.float64)
        comp = np.asarray(t["completeness"], np.float64)
        if lo.size == 0 or np.any(lo[1:] != hi[:-1]) or not np.any(np.isfinite(comp)):
            raise CatalogueError(f"{p}: the SNR bins must be adjacent (snr_max of one the "
                                 "snr_min of the next) and hold completeness values")
        return cls(snr=None, snr_edges=np.append(lo, hi[-1]), completeness=comp,
                   source=f"injection {os.path.dirname(p) or p}")

    def probability(self, snr: np.ndarray) -> np.ndarray:
        """The chance of being found at each true peak SNR (0 for NaN)."""
        s = np.asarray(snr, np.float64)
        if self.completeness is None:
            return np.where(np.isfinite(s) & (s >= self.snr), 1.0, 0.0)
        e, c = self.snr_edges, self.completeness
        mid, ok = 0.5 * (e[:-1] + e[1:]), np.isfinite(c)
        p = np.interp(np.where(np.isfinite(s), s, 0.0), mid[ok], np.clip(c[ok], 0.0, 1.0))
        return np.where(np.isfinite(s) & (s >= e[0]), p, 0.0)

    def describe(self) -> str:
        """One line for reports."""
        if self.completeness is None:
            return f"peak >= {self.snr:g} x local rms"
        return f"completeness by SNR of {self.source}"


def visible_fraction(footprint: Footprint | MosaicFootprint, detection: Detection,
                     peaks: np.ndarray,
                     rng: np.random.Generator, n: int = 200_000) -> np.ndarray:
    """The fraction of the data's area where a source of each true ``peak`` (Jy/beam) would
    be found (the mean chance over ``n`` uniform positions; tabulated in log peak)."""
    p = np.asarray(peaks, np.float64)
    good = np.isfinite(p) & (p > 0)
    out = np.full(p.shape, np.nan)
    if not good.any():
        return out
    s = footprint.sigma(*footprint.sample(n, rng))
    lo, hi = np.log10(p[good].min()), np.log10(p[good].max())
    grid = np.linspace(lo, hi, max(2, int(math.ceil((hi - lo) * _PER_DECADE)) + 1))
    frac = np.array([detection.probability(10.0 ** g / s).mean() for g in grid])
    out[good] = np.interp(np.log10(p[good]), grid, frac)
    return out


def intrinsic_weights(visible: np.ndarray, min_visible: float = 0.02) -> np.ndarray:
    """Each source's weight in the true distribution of fluxes: 1 / its visible fraction,
    the fraction floored at ``min_visible`` (0 for sources with none)."""
    v = np.asarray(visible, np.float64)
    w = 1.0 / np.maximum(np.where(np.isfinite(v), v, 0.0), min_visible)
    return np.where(np.isfinite(v) & (v > 0), w, 0.0)


@dataclass(frozen=True)
class Randoms:
    """A random catalogue: positions (degrees), the true flux and peak each drew (Jy,
    Jy/beam) and the rms it was measured against there."""

    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    sigma: np.ndarray
    drawn: int

    def table(self, meta: dict[str, Any] | None = None) -> Any:
        """As an astropy Table with units."""
        from .catalogue import make_table

        t = make_table({"ra": self.ra, "dec": self.dec, "flux": self.flux, "peak": self.peak,
                        "local_rms": self.sigma},
                       meta=meta)
        for c, u in (("ra", "deg"), ("dec", "deg"), ("flux", "Jy"), ("peak", "Jy/beam"),
                     ("local_rms", "Jy/beam")):
            t[c].unit = u
        return t


def draw_randoms(footprint: Footprint | MosaicFootprint, detection: Detection,
                 flux: np.ndarray,
                 peak: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator,
                 max_rounds: int = 200) -> Randoms:
    """``n`` randoms kept as the detector would keep them: positions uniform on the data,
    each a (flux, peak) pair drawn from the sources' (``weights``: their weights in the true
    distribution, :func:`intrinsic_weights`), kept with the detection's chance at its
    SNR there."""
    n = as_int(n, "n", minimum=1)
    flux, peak = np.asarray(flux, np.float64), np.asarray(peak, np.float64)
    w = np.asarray(weights, np.float64)
    if w.sum() <= 0:
        raise ValueError("weights: no source to draw fluxes from")
    prob = w / w.sum()
    parts: list[tuple[np.ndarray, ...]] = []
    have = drawn = 0
    for _ in range(max_rounds):
        # enough for the rest at the acceptance so far, at most 4 million a round
        m = min(max(4096, int(1.5 * (n - have) * (drawn + 1) / (have + 1))), 4_000_000)
        ra, dec = footprint.sample(m, rng)
        k = rng.choice(prob.size, size=m, p=prob)
        s = footprint.sigma(ra, dec)
        keep = rng.uniform(size=m) < detection.probability(peak[k] / s)
        drawn += m
        parts.append((ra[keep], dec[keep], flux[k][keep], peak[k][keep], s[keep]))
        have += int(keep.sum())
        if have >= n:
            break
    else:
        raise ValueError(f"randoms: only {have} of {n} kept after {drawn} draws: the sources "
                         "are found almost nowhere on this footprint (check the rms map "
                         "and the detection threshold)")
    ra, dec, f, pk, s = (np.concatenate(c)[:n] for c in zip(*parts))
    return Randoms(ra=ra, dec=dec, flux=f, peak=pk, sigma=s, drawn=drawn)
