"""The angular cross-correlation of two populations (radio sources and galaxies, quasars,
clusters, or two flux bins of one catalogue).

``w_12(theta)``, the excess over random of pairs of one source of each population
``theta`` apart, with the first population's randoms (R1, :mod:`.randoms`: its selection)
and, when the second has its own (R2), Landy & Szalay's cross estimator (Szapudi & Szalay
1998)

    w = (D1D2 - D1R2 - R1D2 + R1R2) / R1R2,

else the estimator that needs the first population's randoms only (Davis & Peebles 1983),
``w = D1D2 / R1D2 - 1``: right whatever the second's selection, as the randoms carry the
first's, at a somewhat larger variance. Each count normalised by its number of pairs;
jackknife errors over regions of the first population's randoms (:mod:`.clustering`).
"""

from __future__ import annotations

import numpy as np

from ..checks import as_int
from .clustering import (
    Correlation,
    block_counts,
    checked_edges,
    chord,
    jackknife_covariance,
    jackknife_regions,
    left_out,
    pair_distribution,
)
from .crossmatch import unit_vectors

__all__ = ["angular_cross_correlation"]


def _cross_w(d1d2, d1r2, r1r2, r1d2, pairs, with_r2: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        a, r = d1d2 / pairs[0], r1d2 / pairs[3]
        if not with_r2:
            return a / r - 1.0
        b, c = d1r2 / pairs[1], r1r2 / pairs[2]
        return (a - b - r + c) / c


def angular_cross_correlation(ra1: np.ndarray, dec1: np.ndarray, ra_r1: np.ndarray,
                              dec_r1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray,
                              edges: np.ndarray, *, ra_r2: np.ndarray | None = None,
                              dec_r2: np.ndarray | None = None, jackknife: int = 16,
                              rr_split: int | None = None, ic_bins: int = 60,
                              ic_pairs: int = 2_000_000) -> Correlation:
    """``w_12(theta)`` of population 1 (``ra1``/``dec1``, its randoms ``ra_r1``/``dec_r1``)
    with population 2 (``ra2``/``dec2``; its randoms ``ra_r2``/``dec_r2`` when it has them)
    in separation bins ``edges`` (degrees). R1R2 is counted between matched subsets of the
    two randoms (``rr_split``, default as many as the first's randoms per source); the
    integral constraint's separations from the first's randoms."""
    ra1, dec1, ra_r1, dec_r1, ra2, dec2 = (np.asarray(a, np.float64) for a in
                                           (ra1, dec1, ra_r1, dec_r1, ra2, dec2))
    edges = checked_edges(edges)
    with_r2 = ra_r2 is not None
    if with_r2 != (dec_r2 is not None):
        raise ValueError("ra_r2, dec_r2: both or neither")
    if min(ra1.size, ra2.size) < 1 or ra_r1.size < 2 or (with_r2 and np.size(ra_r2) < 2):
        raise ValueError(f"sources of both populations and randoms are needed; received "
                         f"{ra1.size}, {ra2.size} sources and {ra_r1.size} randoms")
    lab1, lab_r1, k = jackknife_regions(ra1, dec1, ra_r1, dec_r1, jackknife)
    lab2 = jackknife_regions(ra2, dec2, ra_r1, dec_r1, jackknife)[0]
    v1, vr1, v2 = unit_vectors(ra1, dec1), unit_vectors(ra_r1, dec_r1), unit_vectors(ra2, dec2)
    radii = chord(edges)
    d1d2 = block_counts(v1, lab1, v2, lab2, radii, k)
    r1d2 = block_counts(vr1, lab_r1, v2, lab2, radii, k)
    n1 = np.bincount(lab1, minlength=k).astype(np.float64)
    n2 = np.bincount(lab2, minlength=k).astype(np.float64)
    nr1 = np.bincount(lab_r1, minlength=k).astype(np.float64)
    nan = np.full((k, k, radii.size - 1), np.nan)
    d1r2, r1r2, splits = nan, nan, 0
    if with_r2:
        ra_r2, dec_r2 = np.asarray(ra_r2, np.float64), np.asarray(dec_r2, np.float64)
        lab_r2 = jackknife_regions(ra_r2, dec_r2, ra_r1, dec_r1, jackknife)[0]
        vr2 = unit_vectors(ra_r2, dec_r2)
        d1r2 = block_counts(v1, lab1, vr2, lab_r2, radii, k)
        splits = (max(1, int(ra_r1.size // ra1.size)) if rr_split is None
                  else as_int(rr_split, "rr_split", minimum=1))
        p1, p2 = np.arange(ra_r1.size) % splits, np.arange(ra_r2.size) % splits
        r1r2 = sum(block_counts(vr1[p1 == s], lab_r1[p1 == s], vr2[p2 == s], lab_r2[p2 == s],
                                radii, k) for s in range(splits))
        nr2 = np.bincount(lab_r2, minlength=k).astype(np.float64)
        m1 = np.array([np.bincount(lab_r1[p1 == s], minlength=k) for s in range(splits)],
                      np.float64)
        m2 = np.array([np.bincount(lab_r2[p2 == s], minlength=k) for s in range(splits)],
                      np.float64)

    def pairs(i: int | None) -> tuple[float, float, float, float]:
        def less(n):
            return n.sum(-1) - (0.0 if i is None else n[..., i])

        a1, a2, ar1 = less(n1), less(n2), less(nr1)
        if not with_r2:
            return a1 * a2, np.nan, np.nan, ar1 * a2
        return a1 * a2, a1 * less(nr2), float(np.sum(less(m1) * less(m2))), ar1 * a2

    blocks = (d1d2, d1r2, r1r2, r1d2)
    totals = [b.sum((0, 1)) for b in blocks]
    w = _cross_w(*totals, pairs(None), with_r2)
    jk = np.array([_cross_w(*(left_out(b, i) for b in blocks), pairs(i), with_r2)
                   for i in range(k)])
    cov = jackknife_covariance(jk)
    with np.errstate(invalid="ignore", divide="ignore"):
        poisson = (1.0 + w) / np.sqrt(totals[0])
    ic_edges, ic_rr = pair_distribution(vr1, edges, ic_bins, ic_pairs)
    return Correlation(edges=edges, dd=totals[0], dr=totals[1], rr=totals[2], rd=totals[3],
                       pairs=pairs(None), n_data=ra1.size, n_random=ra_r1.size, w=w,
                       w_err=np.sqrt(np.diag(cov)), w_poisson=poisson, covariance=cov,
                       jackknife_w=jk,
                       estimator="cross landy-szalay" if with_r2 else "cross davis-peebles",
                       ic_edges=ic_edges, ic_rr=ic_rr,
                       meta={"jackknife_regions": k, "rr_split": splits,
                             "n_second": int(ra2.size),
                             "n_second_randoms": int(np.size(ra_r2)) if with_r2 else 0})
