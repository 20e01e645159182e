"""Detection scores of a matched catalogue: precision (reliability), recall
(completeness), F1, by SNR and flux bins, and the accuracy of the measured properties.

Binning: a true source falls in the bin of its true SNR (or flux); a detection in the bin
of its matched true source, or of its own measured value when unmatched (a false
detection).  Bin recall = matched true sources / true sources in the bin; bin precision
= matched detections / detections in the bin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .crossmatch import Match

__all__ = ["SNR_BINS", "BinnedScores", "Scores", "binned_scores", "score_catalogue", "pr_curve",
           "f1_score", "robust_scatter"]

SNR_BINS: tuple[float, ...] = (0.0, 3.0, 5.0, 10.0, 20.0, 50.0, np.inf)


def f1_score(precision: np.ndarray | float, recall: np.ndarray | float) -> np.ndarray:
    """Harmonic mean of precision and recall (0 where both are 0; NaN propagates)."""
    p, r = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p + r > 0, 2 * p * r / (p + r), np.where(np.isnan(p + r), np.nan, 0.0))


@dataclass(frozen=True)
class BinnedScores:
    """Scores per bin of ``quantity`` (``edges``, len = bins + 1)."""

    quantity: str
    edges: np.ndarray
    n_truth: np.ndarray
    n_truth_matched: np.ndarray
    n_det: np.ndarray
    n_det_matched: np.ndarray

    @property
    def recall(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_truth > 0, self.n_truth_matched / self.n_truth, np.nan)

    @property
    def precision(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_det > 0, self.n_det_matched / self.n_det, np.nan)

    @property
    def f1(self) -> np.ndarray:
        return f1_score(self.precision, self.recall)

    def labels(self, fmt: str = "{:g}") -> list[str]:
        e = self.edges
        return [f"[{fmt.format(e[i])}, {fmt.format(e[i + 1])})" if np.isfinite(e[i + 1])
                else f">= {fmt.format(e[i])}" for i in range(e.size - 1)]


def binned_scores(quantity: str, edges: Sequence[float], truth_value: np.ndarray,
                  det_value: np.ndarray, match: Match) -> BinnedScores:
    """Per-bin counts with the binning rule of the module docstring."""
    e = np.asarray(edges, np.float64)
    tv = np.asarray(truth_value, np.float64)
    dv = np.asarray(det_value, np.float64).copy()
    matched = match.det_to_truth >= 0
    dv[matched] = tv[match.det_to_truth[matched]]
    tb = np.digitize(tv, e) - 1
    db = np.digitize(dv, e) - 1
    nb = e.size - 1
    tm = match.truth_to_det >= 0

    def count(b, mask):
        ok = (b >= 0) & (b < nb) & mask
        return np.bincount(b[ok], minlength=nb)[:nb]

    return BinnedScores(quantity, e, count(tb, np.ones_like(tm)), count(tb, tm),
                        count(db, np.ones_like(matched)), count(db, matched))


@dataclass(frozen=True)
class Scores:
    """Overall and binned scores, and property errors of matched sources.

    ``unit`` of positions: "arcsec" (sky) or "pix".  Offsets: median separation and the
    median (detected - true) along RA*cos(Dec)/Dec (or x/y).  ``flux_ratio``: median of
    detected/true flux and its robust scatter (1.4826 MAD).  ``bmaj_ratio``/``bmin_ratio``:
    medians of detected/true sizes.  ``pa_error``: median |difference| (deg, folded to
    [0, 90]) for elongated true sources (axis ratio > 1.3).  ``extra["error_pulls"]``
    (when the detections have errors): robust scatter of (detected - true) / error of the
    positions and fluxes, 1 for honest errors and an exact truth.
    """

    n_det: int
    n_truth: int
    n_tp: int
    n_fp: int
    n_fn: int
    precision: float
    recall: float
    f1: float
    by_snr: BinnedScores
    by_flux: BinnedScores | None
    unit: str
    median_separation: float
    median_offset: tuple[float, float]
    flux_ratio: float
    flux_ratio_scatter: float
    bmaj_ratio: float
    bmin_ratio: float
    pa_error: float
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The scalar scores as a flat dict."""
        return {"n_det": self.n_det, "n_truth": self.n_truth, "n_tp": self.n_tp,
                "n_fp": self.n_fp, "n_fn": self.n_fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1,
                f"median_separation_{self.unit}": self.median_separation,
                f"median_offset_{self.unit}": list(self.median_offset),
                "flux_ratio": self.flux_ratio, "flux_ratio_scatter": self.flux_ratio_scatter,
                "bmaj_ratio": self.bmaj_ratio, "bmin_ratio": self.bmin_ratio,
                "pa_error_deg": self.pa_error, **self.extra}


def _median(v: np.ndarray) -> float:
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def score_catalogue(
    match: Match,
    *,
    truth_snr: np.ndarray,
    det_snr: np.ndarray,
    truth_flux: np.ndarray | None = None,
    det_flux: np.ndarray | None = None,
    det_pos: tuple[np.ndarray, np.ndarray],
    truth_pos: tuple[np.ndarray, np.ndarray],
    sky: bool,
    det_size: tuple[np.ndarray, np.ndarray] | None = None,
    truth_size: tuple[np.ndarray, np.ndarray] | None = None,
    det_pa: np.ndarray | None = None,
    truth_pa: np.ndarray | None = None,
    snr_bins: Sequence[float] = SNR_BINS,
    flux_bins: Sequence[float] | None = None,
    min_truth_snr: float = 0.0,
    det_pos_err: tuple[np.ndarray, np.ndarray] | None = None,
    det_flux_err: np.ndarray | None = None,
) -> Scores:
    """Scores of a cross-match.  Overall recall counts the true sources of SNR >=
    ``min_truth_snr``; overall precision counts every detection (a detection matched to a
    fainter true source is still a true one).  Positions are (ra, dec) degrees when ``sky``,
    else pixels; sizes (bmaj, bmin) in one unit for both; PAs in degrees; ``det_pos_err``
    the detections' 1-sigma position errors (arcsec along RA*cos(Dec) and Dec, or pixels),
    ``det_flux_err`` their flux errors, for the pulls."""
    tsnr = np.asarray(truth_snr, np.float64)
    n_det, n_truth_all = match.det_to_truth.size, tsnr.size
    counted = tsnr >= min_truth_snr
    n_truth = int(np.count_nonzero(counted))
    tm = match.truth_to_det >= 0
    n_fn = int(np.count_nonzero(counted & ~tm))
    n_tp = match.n
    n_fp = n_det - n_tp
    precision = n_tp / n_det if n_det else float("nan")
    recall = int(np.count_nonzero(counted & tm)) / n_truth if n_truth else float("nan")
    f1 = float(f1_score(precision, recall))
    by_snr = binned_scores("snr", snr_bins, tsnr, det_snr, match)
    by_flux = None
    if truth_flux is not None and det_flux is not None:
        tf = np.asarray(truth_flux, np.float64)
        if flux_bins is None:
            pos = tf[(tf > 0) & np.isfinite(tf)]
            flux_bins = (np.geomspace(pos.min(), pos.max() * (1 + 1e-9), 7) if pos.size > 1
                         else np.array([0.0, np.inf]))
        by_flux = binned_scores("flux", flux_bins, tf, det_flux, match)
    d, t = match.det, match.truth
    if sky:
        dec0 = np.radians(np.asarray(truth_pos[1], np.float64)[t])
        dra = (np.mod(np.asarray(det_pos[0])[d] - np.asarray(truth_pos[0])[t] + 180.0, 360.0)
               - 180.0) * np.cos(dec0) * 3600.0
        ddec = (np.asarray(det_pos[1])[d] - np.asarray(truth_pos[1])[t]) * 3600.0
    else:
        dra = np.asarray(det_pos[0])[d] - np.asarray(truth_pos[0])[t]
        ddec = np.asarray(det_pos[1])[d] - np.asarray(truth_pos[1])[t]
    with np.errstate(invalid="ignore", divide="ignore"):
        fr = (np.asarray(det_flux)[d] / np.asarray(truth_flux)[t]
              if truth_flux is not None and det_flux is not None else np.zeros(0))
        scatter = robust_scatter(fr)
        bmaj_r = bmin_r = pa_err = float("nan")
        n_elong = 0
        if det_size is not None and truth_size is not None:
            bmaj_r = _median(np.asarray(det_size[0])[d] / np.asarray(truth_size[0])[t])
            bmin_r = _median(np.asarray(det_size[1])[d] / np.asarray(truth_size[1])[t])
            if det_pa is not None and truth_pa is not None:
                elong = (np.asarray(truth_size[0])[t] / np.asarray(truth_size[1])[t]) > 1.3
                dp = np.abs(np.mod(np.asarray(det_pa)[d] - np.asarray(truth_pa)[t] + 90.0, 180.0)
                            - 90.0)
                pa_err, n_elong = _median(dp[elong]), int(np.count_nonzero(elong))
        pulls = _error_pulls(d, t, (dra, ddec), det_pos_err, det_flux, truth_flux,
                             det_flux_err, "radec" if sky else "xy")
    extra = {"n_truth_all": n_truth_all, "n_elongated": n_elong}
    if pulls:
        extra["error_pulls"] = pulls
    return Scores(n_det=n_det, n_truth=n_truth, n_tp=n_tp, n_fp=n_fp, n_fn=n_fn,
                  precision=precision, recall=recall, f1=f1, by_snr=by_snr, by_flux=by_flux,
                  unit="arcsec" if sky else "pix", median_separation=_median(match.separation),
                  median_offset=(_median(dra), _median(ddec)), flux_ratio=_median(fr),
                  flux_ratio_scatter=scatter, bmaj_ratio=bmaj_r, bmin_ratio=bmin_r,
                  pa_error=pa_err, extra=extra)


def robust_scatter(v: np.ndarray) -> float:
    """1.4826 times the median absolute deviation of the finite ``v`` (the sigma of a
    Gaussian, little moved by outliers); NaN without one."""
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else float("nan")


def _error_pulls(d, t, offsets, pos_err, det_flux, truth_flux, flux_err, axes: str) -> dict:
    """Robust scatter of (detected - true) / error over the matched pairs ``d``, ``t`` and
    the number of pairs with position errors; empty without errors."""
    out: dict = {}
    if pos_err is not None:
        names = ("ra", "dec") if axes == "radec" else ("x", "y")
        for name, off, err in zip(names, offsets, pos_err):
            out[name] = robust_scatter(off / np.asarray(err, np.float64)[d])
        e = np.asarray(pos_err[0], np.float64)[d]
        out["n"] = int(np.count_nonzero(np.isfinite(e) & (e > 0)))
    if flux_err is not None and det_flux is not None and truth_flux is not None:
        out["flux"] = robust_scatter((np.asarray(det_flux, np.float64)[d]
                                       - np.asarray(truth_flux, np.float64)[t])
                                      / np.asarray(flux_err, np.float64)[d])
    return out


def pr_curve(objectness: np.ndarray, thresholds: Sequence[float],
             matcher: Callable[[np.ndarray], Match], n_truth: int,
             truth_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Precision and recall of the detections with objectness >= each threshold;
    ``matcher(selected detection indices)`` cross-matches that subset; recall counts the true
    sources in ``truth_mask`` (all by default, ``n_truth`` of them)."""
    obj = np.asarray(objectness, np.float64)
    prec, rec, ndet = [], [], []
    for t in thresholds:
        sel = np.flatnonzero(obj >= t)
        m = matcher(sel)
        hit = m.truth_to_det >= 0
        if truth_mask is not None:
            hit = hit & truth_mask
        prec.append(m.n / sel.size if sel.size else np.nan)
        rec.append(np.count_nonzero(hit) / n_truth if n_truth else np.nan)
        ndet.append(sel.size)
    return {"threshold": np.asarray(thresholds, np.float64), "precision": np.array(prec),
            "recall": np.array(rec), "n_det": np.array(ndet)}
