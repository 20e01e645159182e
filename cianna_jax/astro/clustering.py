"""The angular two-point correlation function of a catalogue's sources.

``w(theta)``, the excess probability over random of finding two sources ``theta`` apart,
from pair counts of the data (D) and of randoms with the same selection (R,
:mod:`.randoms`), normalised by the numbers of pairs: Landy & Szalay's (1993)
``(DD - 2 DR + RR) / RR`` by default, Hamilton's ``DD RR / DR^2 - 1`` or the natural
``DD / RR - 1``. Errors by jackknife: the footprint cut into regions of equal random counts,
each left out in turn (the pair counts are kept per pair of regions, so each leave-one-out
estimate costs nothing). A power law ``A theta^(1 - gamma)`` is fitted with the integral
constraint (the mean of ``w`` over the footprint's own pairs, which the estimators force to
zero; Roche & Eales 1999), ``gamma`` fixed (1.8 by default, as radio surveys usually do) or
free.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_choice, as_int
from .crossmatch import tangent_plane, unit_vectors

__all__ = ["ESTIMATORS", "Correlation", "PowerLaw", "angular_correlation", "fit_power_law",
           "estimate_w", "integral_constraint_factor", "block_counts", "checked_edges",
           "left_out", "jackknife_covariance", "pair_distribution", "chord",
           "log_edges", "footprint_radius", "jackknife_regions", "correlation_figure"]

ESTIMATORS = ("landy-szalay", "hamilton", "natural")


def chord(theta_deg: np.ndarray) -> np.ndarray:
    """The straight-line distances between unit vectors ``theta_deg`` degrees apart."""
    return 2.0 * np.sin(np.radians(np.asarray(theta_deg, np.float64)) / 2.0)


def footprint_radius(ra: np.ndarray, dec: np.ndarray) -> float:
    """The largest distance (degrees) of positions from their mean direction."""
    v = unit_vectors(ra, dec)
    c = v.mean(axis=0)
    c = c / max(np.linalg.norm(c), 1e-300)
    return float(np.degrees(np.arccos(np.clip((v @ c).min(), -1.0, 1.0))))


def log_edges(theta_min: float, theta_max: float, bins: int) -> np.ndarray:
    """``bins`` logarithmic separation bins (degrees) from ``theta_min`` to ``theta_max``."""
    lo, hi = as_bounded_float(theta_min, "theta_min"), as_bounded_float(theta_max, "theta_max")
    if hi <= lo or hi > 180.0:
        raise ValueError(f"theta_max: expected between theta_min ({lo:g}) and 180 degrees, "
                         f"received {hi:g}")
    return np.geomspace(lo, hi, as_int(bins, "bins", minimum=1) + 1)


def jackknife_regions(ra: np.ndarray, dec: np.ndarray, ra_r: np.ndarray, dec_r: np.ndarray,
                      n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels of data and randoms in about ``n`` regions of equal random counts (strips in
    Dec cut in RA, on the plane tangent at the randoms' centre) and the number made."""
    n = as_int(n, "jackknife", minimum=2)
    rows = max(1, int(round(math.sqrt(n))))
    cols = max(1, n // rows)
    xr, yr, _, centre = tangent_plane(ra_r, dec_r)
    xd, yd, _, _ = tangent_plane(ra, dec, centre)
    y_edges = np.quantile(yr, np.linspace(0, 1, rows + 1)[1:-1])
    row_r, row_d = np.searchsorted(y_edges, yr), np.searchsorted(y_edges, yd)
    lab_r, lab_d = np.zeros(xr.size, np.int64), np.zeros(xd.size, np.int64)
    for i in range(rows):
        x_edges = np.quantile(xr[row_r == i], np.linspace(0, 1, cols + 1)[1:-1])
        lab_r[row_r == i] = i * cols + np.searchsorted(x_edges, xr[row_r == i])
        lab_d[row_d == i] = i * cols + np.searchsorted(x_edges, xd[row_d == i])
    return lab_d, lab_r, rows * cols


def block_counts(va: np.ndarray, la: np.ndarray, vb: np.ndarray | None, lb: np.ndarray | None,
                 radii: np.ndarray, k: int, workers: int | None = None) -> np.ndarray:
    """Ordered pair counts within each separation bin, per pair of regions: ``[k, k, bins]``
    (``vb`` None: the pairs of ``va`` with itself, self-pairs left out); the pairs of
    regions counted on ``workers`` threads (default: the CPUs; the KD-tree's count releases
    the GIL, so two cores count about twice as fast)."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy.spatial import cKDTree

    same = vb is None
    vb, lb = (va, la) if same else (vb, lb)
    ta = [cKDTree(va[la == i]) if np.any(la == i) else None for i in range(k)]
    tb = ta if same else [cKDTree(vb[lb == j]) if np.any(lb == j) else None for j in range(k)]
    pairs = [(i, j) for i in range(k) for j in range(i if same else 0, k)
             if ta[i] is not None and tb[j] is not None]
    n = (os.cpu_count() or 1) if workers is None else as_int(workers, "workers", minimum=1)
    with ThreadPoolExecutor(max_workers=max(1, min(n, len(pairs) or 1))) as ex:
        counts = list(ex.map(lambda p: ta[p[0]].count_neighbors(tb[p[1]], radii), pairs))
    out = np.zeros((k, k, radii.size - 1))
    for (i, j), cum in zip(pairs, counts):
        out[i, j] = np.diff(np.asarray(cum, np.float64))
        if same and j != i:
            out[j, i] = out[i, j]
    return out


@dataclass(frozen=True)
class PowerLaw:
    """``w(theta) = amplitude x (theta / 1 deg)^(1 - gamma) - integral_constraint``, fitted
    to ``n_bins`` bins by weighted least squares on the jackknife errors; errors from
    ``chi2`` + 1 (the amplitude's at the best ``gamma``; ``gamma_err`` 0 when fixed)."""

    amplitude: float
    amplitude_err: float
    gamma: float
    gamma_err: float
    gamma_fixed: bool
    integral_constraint: float
    chi2: float
    n_bins: int

    def __call__(self, theta_deg: np.ndarray) -> np.ndarray:
        """The fitted model (integral constraint taken off) at separations (degrees)."""
        t = np.asarray(theta_deg, np.float64)
        return self.amplitude * t ** (1.0 - self.gamma) - self.integral_constraint

    def as_dict(self) -> dict[str, Any]:
        return {"amplitude": self.amplitude, "amplitude_err": self.amplitude_err,
                "gamma": self.gamma, "gamma_err": self.gamma_err,
                "gamma_fixed": self.gamma_fixed,
                "integral_constraint": self.integral_constraint, "chi2": self.chi2,
                "dof": self.n_bins - (1 if self.gamma_fixed else 2)}


@dataclass(frozen=True)
class Correlation:
    """An angular correlation function: separation bins ``edges`` (degrees), ordered pair
    counts ``dd``, ``dr``, ``rr`` per bin and the numbers of ordered pairs they count
    among (``pairs``; RR's within the randoms' subsets); a cross-correlation's (two
    populations, :mod:`.cross_clustering`) are D1D2, D1R2, R1R2 and ``rd`` R1D2 (NaN where
    not counted); ``w`` and its jackknife error ``w_err`` (with
    ``covariance``) and Poisson error ``w_poisson``; ``jackknife_w`` the leave-one-out
    estimates ``[regions, bins]``; ``ic_edges``/``ic_rr``: the randoms' separations
    (sampled pairs) out to the footprint's largest, for the integral constraint."""

    edges: np.ndarray
    dd: np.ndarray
    dr: np.ndarray
    rr: np.ndarray
    pairs: tuple[float, ...]
    n_data: int
    n_random: int
    w: np.ndarray
    w_err: np.ndarray
    w_poisson: np.ndarray
    covariance: np.ndarray
    jackknife_w: np.ndarray
    estimator: str
    ic_edges: np.ndarray = field(repr=False)
    ic_rr: np.ndarray = field(repr=False)
    fit: PowerLaw | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    rd: np.ndarray | None = None

    @property
    def theta(self) -> np.ndarray:
        """The bins' geometric middles (degrees)."""
        return np.sqrt(self.edges[:-1] * self.edges[1:])

    def table(self) -> Any:
        """The bins as an astropy Table (separations in deg; the counts normalised by the
        numbers of ordered pairs in ``dd_norm`` etc.), the fit and settings in its meta."""
        from .catalogue import make_table

        nd, nr = self.n_data, self.n_random
        meta = dict(self.meta, estimator=self.estimator, n_data=nd, n_random=nr)
        if self.fit is not None:
            meta["power_law"] = self.fit.as_dict()
        names = (("dd", "dr", "rr") if self.rd is None else ("d1d2", "d1r2", "r1r2", "r1d2"))
        counts = (self.dd, self.dr, self.rr) + (() if self.rd is None else (self.rd,))
        cols = {"theta_min": self.edges[:-1], "theta_max": self.edges[1:], "theta": self.theta}
        cols.update(zip(names, counts))
        with np.errstate(invalid="ignore", divide="ignore"):
            cols.update({f"{n}_norm": c / p for n, c, p in zip(names, counts, self.pairs)})
        cols.update(w=self.w, w_err=self.w_err, w_poisson=self.w_poisson)
        t = make_table(cols, meta={"clustering": meta})
        for c in ("theta_min", "theta_max", "theta"):
            t[c].unit = "deg"
        return t


def estimate_w(dd: np.ndarray, dr: np.ndarray, rr: np.ndarray,
               pairs: tuple[float, float, float], estimator: str) -> np.ndarray:
    """``w`` from ordered pair counts (the last axis the bins) and the numbers of ordered
    pairs they are drawn from, ``(DD's, DR's, RR's)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        d, x, r = dd / pairs[0], dr / pairs[1], rr / pairs[2]
        if estimator == "landy-szalay":
            return (d - 2.0 * x + r) / r
        if estimator == "hamilton":
            return d * r / (x * x) - 1.0
        return d / r - 1.0


def checked_edges(edges: Any) -> np.ndarray:
    """Separation bins (degrees) as an array, checked: increasing, the first above 0."""
    e = np.asarray(edges, np.float64)
    if e.ndim != 1 or e.size < 2 or e[0] <= 0 or np.any(np.diff(e) <= 0):
        raise ValueError("edges: expected increasing separations (degrees) above 0, at least "
                         f"two; received {edges!r}")
    return e


def left_out(blocks: np.ndarray, i: int) -> np.ndarray:
    """Per-bin pair counts without region ``i`` from counts per pair of regions
    ``[k, k, bins]``."""
    return blocks.sum((0, 1)) - blocks[i].sum(0) - blocks[:, i].sum(0) + blocks[i, i]


def jackknife_covariance(jk: np.ndarray) -> np.ndarray:
    """The jackknife covariance ``(k-1)/k sum (w_i - mean)(w_i - mean)^T`` of leave-one-out
    estimates ``[k, bins]``."""
    k = jk.shape[0]
    dev = np.nan_to_num(jk - np.nanmean(jk, axis=0))
    return (k - 1.0) / k * np.einsum("ib,ic->bc", dev, dev)


def pair_distribution(v: np.ndarray, edges: np.ndarray, bins: int, pairs: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, counts)``: the separations (degrees) of ``pairs`` random pairs of unit
    vectors ``v`` on ``bins`` logarithmic bins out to the farthest (a dual-tree count that
    far costs seconds), for the integral constraint."""
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, v.shape[0], (2, pairs))
    keep = i != j
    sep = np.degrees(2.0 * np.arcsin(np.clip(np.linalg.norm(v[i[keep]] - v[j[keep]], axis=1)
                                             / 2.0, 0.0, 1.0)))
    out = np.geomspace(min(edges[0], 1e-3), min(max(sep.max(), edges[-1]) * 1.01, 180.0),
                       bins + 1)
    return out, np.histogram(sep, out)[0].astype(np.float64)


def angular_correlation(ra: np.ndarray, dec: np.ndarray, ra_r: np.ndarray, dec_r: np.ndarray,
                        edges: np.ndarray, *, estimator: str = "landy-szalay",
                        jackknife: int = 16, rr_split: int | None = None,
                        ic_bins: int = 60, ic_pairs: int = 2_000_000) -> Correlation:
    """``w(theta)`` of sources at ``ra``/``dec`` (degrees) against randoms ``ra_r``/``dec_r``
    in separation bins ``edges`` (degrees, increasing, the first above 0), with jackknife
    errors over ``jackknife`` regions (and the distribution of the separations of
    ``ic_pairs`` random pairs of randoms on ``ic_bins`` bins, for the integral
    constraint). RR is counted within ``rr_split`` subsets of the randoms (default: as
    many as there are randoms per source, each about the size of the data): the split
    random catalogue of Keihanen et al. (2019), whose variance stays that of the full
    count while its cost falls by the number of subsets."""
    estimator = as_choice(estimator, "estimator", ESTIMATORS)
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    ra_r, dec_r = np.asarray(ra_r, np.float64), np.asarray(dec_r, np.float64)
    edges = checked_edges(edges)
    if ra.size < 2 or ra_r.size < 2:
        raise ValueError(f"at least two sources and two randoms are needed; received "
                         f"{ra.size} and {ra_r.size}")
    lab_d, lab_r, k = jackknife_regions(ra, dec, ra_r, dec_r, jackknife)
    vd, vr = unit_vectors(ra, dec), unit_vectors(ra_r, dec_r)
    radii = chord(edges)
    nd, nr = float(ra.size), float(ra_r.size)
    splits = (max(1, int(nr // nd)) if rr_split is None
              else as_int(rr_split, "rr_split", minimum=1))
    part = np.arange(ra_r.size) % splits  # (the randoms are in random order)
    dd_b = block_counts(vd, lab_d, None, None, radii, k)
    dr_b = block_counts(vd, lab_d, vr, lab_r, radii, k)
    rr_b = sum(block_counts(vr[part == s], lab_r[part == s], None, None, radii, k)
               for s in range(splits))
    n_d = np.bincount(lab_d, minlength=k).astype(np.float64)
    n_rs = np.array([np.bincount(lab_r[part == s], minlength=k) for s in range(splits)],
                    np.float64)  # [splits, regions]

    def pairs(i: int | None) -> tuple[float, float, float]:
        a = nd - (0.0 if i is None else n_d[i])
        m = n_rs.sum(1) - (0.0 if i is None else n_rs[:, i])
        return a * (a - 1.0), a * m.sum(), float(np.sum(m * (m - 1.0)))

    dd, dr, rr = dd_b.sum((0, 1)), dr_b.sum((0, 1)), rr_b.sum((0, 1))
    w = estimate_w(dd, dr, rr, pairs(None), estimator)
    jk = np.array([estimate_w(left_out(dd_b, i), left_out(dr_b, i), left_out(rr_b, i),
                              pairs(i), estimator) for i in range(k)])
    cov = jackknife_covariance(jk)
    with np.errstate(invalid="ignore", divide="ignore"):
        poisson = (1.0 + w) / np.sqrt(dd / 2.0)
    ic_edges, ic_rr = pair_distribution(vr, edges, ic_bins, ic_pairs)
    return Correlation(edges=edges, dd=dd, dr=dr, rr=rr, pairs=pairs(None), n_data=ra.size,
                       n_random=ra_r.size,
                       w=w, w_err=np.sqrt(np.diag(cov)), w_poisson=poisson, covariance=cov,
                       jackknife_w=jk, estimator=estimator, ic_edges=ic_edges, ic_rr=ic_rr,
                       meta={"jackknife_regions": k, "rr_split": splits})


def integral_constraint_factor(corr: Correlation, delta: float) -> float:
    """``sum RR(theta) theta^-delta / sum RR``: the integral constraint per unit amplitude."""
    mid = np.sqrt(corr.ic_edges[:-1] * corr.ic_edges[1:])
    return float(np.sum(corr.ic_rr * mid ** -delta) / max(np.sum(corr.ic_rr), 1e-300))


def fit_power_law(corr: Correlation, gamma: float | None = 1.8, *,
                  theta_range: tuple[float, float] | None = None) -> PowerLaw:
    """A power law fitted to ``corr``'s bins with a jackknife error (within
    ``theta_range`` degrees when given): ``gamma`` fixed, or free (``None``, scanned over
    1.1-2.6)."""
    theta, w, err = corr.theta, corr.w, corr.w_err
    use = np.isfinite(w) & np.isfinite(err) & (err > 0) & (corr.dd > 0)
    if theta_range is not None:
        use &= (theta >= theta_range[0]) & (theta <= theta_range[1])
    need = 1 if gamma is not None else 2
    if use.sum() <= need:
        raise ValueError(f"fit: {int(use.sum())} bins with pairs and errors; a power law "
                         f"needs more than {need}")
    t, y, s = theta[use], w[use], err[use]

    def solve(delta: float) -> tuple[float, float, float, float]:
        ic = integral_constraint_factor(corr, delta)
        g = t ** -delta - ic
        a = float(np.sum(y * g / s ** 2) / np.sum(g * g / s ** 2))
        chi2 = float(np.sum(((y - a * g) / s) ** 2))
        return a, float(1.0 / math.sqrt(np.sum(g * g / s ** 2))), chi2, a * ic

    if gamma is not None:
        g0 = as_bounded_float(gamma, "gamma")
        a, a_err, chi2, ic = solve(g0 - 1.0)
        return PowerLaw(a, a_err, g0, 0.0, True, ic, chi2, int(use.sum()))
    grid = np.arange(0.1, 1.6 + 1e-9, 0.005)
    chis = np.array([solve(d)[2] for d in grid])
    b = int(np.argmin(chis))
    inside = grid[chis <= chis[b] + 1.0]
    a, a_err, chi2, ic = solve(grid[b])
    return PowerLaw(a, a_err, 1.0 + grid[b], float(0.5 * (inside.max() - inside.min())), False,
                    ic, chi2, int(use.sum()))


def correlation_figure(corr: Correlation, *, title: str = "Angular correlation function",
                       naive: Correlation | None = None) -> Any:
    """``w(theta)`` with jackknife errors, separations on a log axis, ``w`` on a symmetric
    log axis (linear within its typical error of 0, so that negative values show), the
    fitted power law; ``naive``: another measurement drawn beside it (e.g. against randoms
    without the catalogue's selection)."""
    from ._deps import require

    plt = require("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for c, label, colour, shift in ((corr, f"{corr.estimator} ({corr.n_data} sources, "
                                     f"{corr.n_random} randoms)", "C0", 1.0),
                                    (naive, "uniform randoms (no selection)", "C3", 1.04)):
        if c is not None:
            ax.errorbar(c.theta * 60.0 * shift, c.w, yerr=c.w_err, fmt="o", color=colour,
                        label=label, capsize=2)
    fine = np.geomspace(corr.edges[0], corr.edges[-1], 100)
    if corr.fit is not None:
        f = corr.fit
        ax.plot(fine * 60.0, f.amplitude * fine ** (1.0 - f.gamma), "k-",
                label=f"A = {f.amplitude:.2e} +- {f.amplitude_err:.1e}, gamma = {f.gamma:.2f}"
                + ("" if f.gamma_fixed else f" +- {f.gamma_err:.2f}"))
        ax.plot(fine * 60.0, f(fine), "k:",
                label=f"minus the integral constraint {f.integral_constraint:.1e}")
    ax.axhline(0.0, color="0.6", lw=0.8)
    err = corr.w_err[np.isfinite(corr.w_err) & (corr.w_err > 0)]
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=float(np.median(err)) if err.size else 1e-3)
    ax.set_xlim(corr.edges[0] * 60.0 / 1.1, corr.edges[-1] * 60.0 * 1.1)
    ax.set_xlabel("separation theta (arcmin)")
    ax.set_ylabel("w(theta)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
