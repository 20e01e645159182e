"""Source counts unfolded from measured to true fluxes with source injection's response.

Near a survey's detection limit a source's measured flux scatters around its true one, and
the sources that scatter up are the ones found (flux boosting, Eddington bias): counts by
measured flux corrected by the completeness at that flux come out high there.  Source
injection measures the whole response: of the sources injected with a true flux in bin
``i``, the fraction found with a measured flux in bin ``j``, ``R[i, j]`` (its row sums the
completeness ``eps[i]``).  The true counts ``T`` that the observed counts ``N`` came from
follow by Bayesian unfolding (D'Agostini 1995): with the expected observed counts
``O = R^T T`` and ``M[i, j] = R[i, j] T[i] / O[j]``, the probability that a source counted
in bin ``j`` came from bin ``i``, ``T[i] <- sum_j M[i, j] N[j] / eps[i]``, from a power law
fitted to the completeness-corrected counts (the bins below the detection limit, whose
sources are boosted into the bins above it, must start above zero).  One step by default:
on two simulated primary-beam fields it came within 10% of the true counts at 50-500 uJy,
two or four steps within 14-17% (further steps fit the observed counts' noise).  The
errors propagate ``N``'s Poisson errors through the last step.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_int

__all__ = ["response_matrix", "unfold", "UNFOLD_NOTE"]

UNFOLD_NOTE = ("counts unfolded from measured to true flux (iterative Bayesian unfolding, "
               "D'Agostini 1995) with source injection's response: per true-flux bin, the "
               "fractions of injected sources found in each measured-flux bin")


def response_matrix(flux_in: np.ndarray, flux_out: np.ndarray, found: np.ndarray,
                    edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(R, n)``: ``R[i, j]`` the fraction of the injected sources of true flux in bin ``i``
    (``edges``, Jy) found with a measured flux in bin ``j`` (those found outside the bins
    count in no column), ``n[i]`` the injected sources in bin ``i``.  Bins brighter than
    every injected source get ``R[i, i] = 1`` (bright sources are found, their fluxes
    right); fainter ones a row of zeros (nothing known: never found)."""
    fi, fo = np.asarray(flux_in, np.float64), np.asarray(flux_out, np.float64)
    hit = np.asarray(found, bool) & np.isfinite(fo) & (fo > 0)
    e = np.asarray(edges, np.float64)
    nb = e.size - 1
    bi = np.digitize(fi, e) - 1
    bo = np.digitize(np.where(hit, fo, np.nan), e) - 1
    ok = np.isfinite(fi) & (bi >= 0) & (bi < nb)
    n = np.bincount(bi[ok], minlength=nb).astype(np.float64)
    R = np.zeros((nb, nb))
    k = ok & hit & (bo >= 0) & (bo < nb)
    np.add.at(R, (bi[k], bo[k]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.where(n[:, None] > 0, R / n[:, None], 0.0)
    top = float(np.nanmax(fi[ok])) if ok.any() else -np.inf
    bright = (n == 0) & (e[:-1] > top)
    R[bright, bright] = 1.0
    return R, n


def _prior(N: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """The unfolding's start: a power law in the bin index (counts per bin, log-linear)
    fitted to the completeness-corrected counts of the bins at least half complete (each
    weighted by its counts), in every bin of non-zero completeness; the corrected counts
    themselves where fewer than two bins qualify.  (A bin below the detection limit has no
    observed counts, but its sources are the ones boosted into the bins above it: it must
    start above zero, a multiplicative update leaving a zero where it is.)"""
    live = eps > 0
    corr = np.where(live, N / np.where(live, eps, 1.0), 0.0)
    fit = live & (eps >= 0.5) & (N > 0)
    if fit.sum() < 2:
        return np.where(live & (corr <= 0), 1e-12, corr)
    k = np.arange(N.size, dtype=np.float64)
    slope, icpt = np.polyfit(k[fit], np.log(corr[fit]), 1, w=np.sqrt(N[fit]))
    return np.where(live, np.exp(icpt + slope * k), 0.0)


def unfold(observed: np.ndarray, R: np.ndarray, *, variance: np.ndarray | None = None,
           iterations: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(T, err)``: true counts per bin unfolded from the ``observed`` counts per measured
    bin (weights allowed: a catalogue's reliabilities) through the response ``R`` (see
    :func:`response_matrix`), ``iterations`` times from a power law fitted to
    ``observed / eps`` (:func:`_prior`); ``variance``
    of the observed counts (default: Poisson, ``observed``).  Bins of zero completeness
    come out NaN."""
    N = np.asarray(observed, np.float64)
    R = np.asarray(R, np.float64)
    iterations = as_int(iterations, "iterations", minimum=1)
    if R.shape != (N.size, N.size):
        raise ValueError(f"R: a {N.size}x{N.size} response for {N.size} bins; received "
                         f"{R.shape}")
    var = N if variance is None else np.asarray(variance, np.float64)
    eps = R.sum(axis=1)
    live = eps > 0
    T = _prior(N, eps)
    M = np.zeros_like(R)
    for _ in range(iterations):
        seen = R.T @ T  # the observed counts these true ones would give
        with np.errstate(invalid="ignore", divide="ignore"):
            M = np.where(seen[None, :] > 0, R * T[:, None] / seen[None, :], 0.0)
        T = np.where(live, (M @ N) / np.where(live, eps, 1.0), 0.0)
    U = np.where(live[:, None], M / np.where(live, eps, 1.0)[:, None], 0.0)
    err = np.sqrt(U ** 2 @ var)
    return np.where(live, T, np.nan), np.where(live, err, np.nan)
