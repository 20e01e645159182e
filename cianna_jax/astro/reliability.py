"""A catalogue's reliability from its own image: the inverted-image test.

Real sources are positive, while noise (and the image's symmetric errors) is as often
negative as positive.  The detector run on the negated image (:meth:`.FitsImage.inverted`,
same model, threshold and noise map) finds only false sources, about as many as it finds
in the noise of the image itself.  So, per bin of measured SNR, the fraction of false
detections is estimated by ``n_inverted / n_image``: the test of radio survey catalogues
(e.g. Hopkins et al. 2002, AJ 123, 1086; LoTSS, Shimwell et al. 2019), which needs no truth.

The fractions are made non-increasing with SNR by pooling adjacent bins (weighted isotonic
regression, the pool-adjacent-violators rule on the counts), and each source's
``reliability`` is one minus the fraction of its (pooled) bin.  Counted at each objectness
threshold instead (:func:`threshold_scan`), the same test chooses the lowest threshold whose
catalogue reaches a target reliability.

Caveats: the test counts false detections made of noise, not a detector's errors around
real sources (a source boxed twice, a blend's fragment); negative artefacts of a real image
(sidelobes, calibration errors around bright sources) turn into false "sources" of the
inverted image, so the estimate is then pessimistic near them; and with few detections per
bin the counts' Poisson errors dominate (``false_fraction_err``).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import make_table

__all__ = ["SNR_EDGES", "THRESHOLDS", "ReliabilityEstimate", "ThresholdScan",
           "estimate_reliability", "summed_estimate", "measured_reliability", "threshold_scan",
           "scan_thresholds", "choose_threshold", "add_reliability_column", "with_fragments",
           "format_reliability", "format_scan"]

#: the objectness thresholds a target reliability is sought among (above the model's own)
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def scan_thresholds(floor: float) -> tuple[float, ...]:
    """The thresholds scanned for a target reliability: the model card's own (``floor``,
    chosen on its validation data with a truth) and those of :data:`THRESHOLDS` above it.
    Never lower: the test counts false detections made of noise only, and below the
    validated threshold a detector's own errors around real sources (a source boxed twice)
    can outnumber them unseen."""
    return (float(floor),) + tuple(t for t in THRESHOLDS if t > floor + 1e-9)

#: bins of measured SNR (fine near detection limits, where the false detections are; the
#: first holds every detection under 3, a fit that went negative included)
SNR_EDGES = (-np.inf, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0, 10.0, 20.0, np.inf)


@dataclass(frozen=True)
class ReliabilityEstimate:
    """Counts per SNR bin (``edges``, len = bins + 1) of the detections on the image
    (``n_image``) and on the inverted image (``n_inverted``), and the pooled estimate:
    ``false_fraction`` per bin (non-increasing with SNR; NaN for a bin without detections
    on the image and in its pool), its 1-sigma Poisson error, and ``reliability`` = 1 -
    ``false_fraction``.  ``n_fragments``: when known (:func:`with_fragments`), the
    detector's own false detections expected around real sources per bin, included in
    ``false_fraction``."""

    edges: np.ndarray
    n_image: np.ndarray
    n_inverted: np.ndarray
    false_fraction: np.ndarray
    false_fraction_err: np.ndarray
    n_fragments: np.ndarray | None = None
    n_fragments_err: np.ndarray | None = None

    @property
    def reliability(self) -> np.ndarray:
        return 1.0 - self.false_fraction

    @property
    def n_false(self) -> float:
        """The expected number of false detections in the catalogue."""
        return float(np.nansum(self.false_fraction * self.n_image))

    def at(self, snr: np.ndarray) -> np.ndarray:
        """Each source's reliability: that of the bin of its measured ``snr`` (NaN for a
        NaN SNR)."""
        s = np.asarray(snr, np.float64)
        b = np.clip(np.digitize(s, self.edges) - 1, 0, self.edges.size - 2)
        return np.where(np.isfinite(s), self.reliability[b], np.nan)

    def summary(self) -> dict[str, Any]:
        """The estimate as plain lists (for the catalogue's metadata and JSON reports)."""
        out = {"method": "inverted image: false fraction n_inverted / n_image per bin of "
                         "measured SNR, pooled to be non-increasing with SNR"
                         + ("" if self.n_fragments is None else
                            ", plus the detector's false detections around sources "
                            "expected from source injection"),
                "snr_edges": [float(e) for e in self.edges],
                "n_image": [int(n) for n in self.n_image],
                "n_inverted": [int(n) for n in self.n_inverted],
                "reliability": [None if np.isnan(r) else float(r) for r in self.reliability],
                "false_fraction_err": [None if np.isnan(e) else float(e)
                                       for e in self.false_fraction_err],
                "n_false_expected": self.n_false}
        if self.n_fragments is not None:
            out["n_fragments_expected"] = [float(v) for v in self.n_fragments]
        return out


def _pooled(n_inv: np.ndarray, n_img: np.ndarray) -> list[list[int]]:
    """Groups of adjacent bin indices whose pooled fractions sum(n_inv) / sum(n_img) are
    non-increasing from group to group (pool adjacent violators, weighted by the counts);
    bins without detections on either image join no group; a bin with inverted detections
    only has an infinite fraction, pooled with the bins below it (kept alone, without an
    estimate, when it is the first)."""
    groups: list[list[int]] = []
    inv: list[float] = []
    img: list[float] = []
    for b in range(n_img.size):
        if n_img[b] == 0 and n_inv[b] == 0:
            continue
        groups.append([b])
        inv.append(float(n_inv[b]))
        img.append(float(n_img[b]))
        # a group whose fraction exceeds its predecessor's violates the order: merge them
        while len(groups) > 1 and inv[-1] * img[-2] > inv[-2] * img[-1]:
            g, i, n = groups.pop(), inv.pop(), img.pop()
            groups[-1] += g
            inv[-1] += i
            img[-1] += n
    return groups


def estimate_reliability(snr_image: np.ndarray, snr_inverted: np.ndarray,
                         edges=SNR_EDGES) -> ReliabilityEstimate:
    """The estimate from the measured SNR of the detections on the image and on the
    inverted image (see the module docstring)."""
    e = np.asarray(edges, np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges: increasing bin edges, at least two; received {edges!r}")

    def counts(snr):
        s = np.asarray(snr, np.float64)
        b = np.digitize(s[np.isfinite(s)], e) - 1
        b = b[(b >= 0) & (b < e.size - 1)]
        return np.bincount(b, minlength=e.size - 1)

    return _from_counts(e, counts(snr_image), counts(snr_inverted))


def summed_estimate(estimates: list[ReliabilityEstimate]) -> ReliabilityEstimate:
    """One estimate from several images' (the same bins): their counts summed, pooled
    again (and their expected errors around sources summed, when they all have them)."""
    e = estimates[0].edges
    if any(not np.array_equal(x.edges, e) for x in estimates):
        raise ValueError("estimates: their SNR bins differ")
    out = _from_counts(e, sum(x.n_image for x in estimates),
                       sum(x.n_inverted for x in estimates))
    if all(x.n_fragments is not None for x in estimates):  # errors around sources, summed
        out = with_fragments(out, sum(x.n_fragments for x in estimates),
                             np.sqrt(sum(x.n_fragments_err ** 2 for x in estimates)))
    return out


def _from_counts(e: np.ndarray, n_img: np.ndarray, n_inv: np.ndarray) -> ReliabilityEstimate:
    frac = np.full(n_img.size, np.nan)
    err = np.full(n_img.size, np.nan)
    for g in _pooled(n_inv, n_img):
        i, n = int(n_inv[g].sum()), int(n_img[g].sum())
        if n == 0:  # negatives where the image has no detection: nothing to estimate
            continue
        frac[g] = min(i / n, 1.0)
        # Poisson: sqrt(n) counts, or Gehrels' 1-sigma upper limit (1.84) for none
        err[g] = (np.sqrt(i) if i else 1.84) / n
    return ReliabilityEstimate(e, n_img, n_inv, frac, err)


def with_fragments(estimate: ReliabilityEstimate, expected: np.ndarray,
                   expected_err: np.ndarray) -> ReliabilityEstimate:
    """``estimate`` with the detector's own false detections around real sources added:
    ``expected`` of them per bin (1-sigma ``expected_err``), e.g. from source injection
    (:meth:`.completeness.InjectionResult.fragments_by_snr`), which the inverted image
    cannot show.  Per bin the false fraction becomes (pooled inverted fraction x n_image +
    expected) / n_image, at most 1; the errors add in quadrature."""
    x = np.asarray(expected, np.float64)
    xe = np.asarray(expected_err, np.float64)
    if x.shape != estimate.n_image.shape or xe.shape != x.shape:
        raise ValueError(f"expected: one value per SNR bin, {estimate.n_image.size}; received "
                         f"shapes {x.shape} and {xe.shape}")
    n = estimate.n_image.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n > 0, np.minimum(np.nan_to_num(estimate.false_fraction) + x / n, 1.0),
                        estimate.false_fraction)
        err = np.where(n > 0, np.hypot(np.nan_to_num(estimate.false_fraction_err), xe / n),
                       estimate.false_fraction_err)
    return dataclasses.replace(estimate, false_fraction=frac, false_fraction_err=err,
                               n_fragments=x, n_fragments_err=xe)


def measured_reliability(snr: np.ndarray, real: np.ndarray, edges=SNR_EDGES) -> np.ndarray:
    """The fraction of ``real`` detections (e.g. matched to a truth) per bin of measured
    ``snr`` (NaN for an empty bin): what :func:`estimate_reliability` estimates."""
    e = np.asarray(edges, np.float64)
    s = np.asarray(snr, np.float64)
    b = np.digitize(s, e) - 1
    ok = np.isfinite(s) & (b >= 0) & (b < e.size - 1)
    n = np.bincount(b[ok], minlength=e.size - 1)
    k = np.bincount(b[ok], weights=np.asarray(real, bool)[ok].astype(np.float64),
                    minlength=e.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, k / n, np.nan)


@dataclass(frozen=True)
class ThresholdScan:
    """Detections at or above each objectness threshold on the image (``n_image``) and on
    the inverted image (``n_inverted``): the catalogue's estimated ``reliability`` at each
    threshold, 1 - n_inverted / n_image (NaN without detections)."""

    thresholds: np.ndarray
    n_image: np.ndarray
    n_inverted: np.ndarray

    @property
    def reliability(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(self.n_image > 0, 1.0 - self.n_inverted / self.n_image, np.nan)
        return np.maximum(r, 0.0)

    def choose(self, target: float) -> float:
        """The lowest threshold whose catalogue reaches the ``target`` reliability (the most
        sources at that purity); when none does, the most reliable one (the lowest when
        nothing is detected at all), with a warning."""
        r = self.reliability
        ok = np.flatnonzero(r >= target)
        if ok.size:
            return float(self.thresholds[ok[0]])
        if np.all(np.isnan(r)):
            warnings.warn(f"target_reliability {target:g}: no detection at any objectness "
                          f"threshold ({self.thresholds[0]:g}-{self.thresholds[-1]:g}): the "
                          "catalogue is empty", UserWarning, stacklevel=3)
            return float(self.thresholds[0])
        best = int(np.nanargmax(r))
        warnings.warn(f"target_reliability {target:g}: no objectness threshold reaches it (at "
                      f"most {r[best]:.3f}, at {self.thresholds[best]:g}, with "
                      f"{int(self.n_image[best])} detections); that threshold is taken",
                      UserWarning, stacklevel=3)
        return float(self.thresholds[best])

    def summary(self) -> dict[str, Any]:
        return {"thresholds": [float(t) for t in self.thresholds],
                "n_image": [int(n) for n in self.n_image],
                "n_inverted": [int(n) for n in self.n_inverted],
                "reliability": [None if np.isnan(r) else float(r) for r in self.reliability]}


def threshold_scan(objectness_image: np.ndarray, objectness_inverted: np.ndarray,
                   thresholds=THRESHOLDS) -> ThresholdScan:
    """Counts of the detections (their objectness) on the image and on the inverted image
    at or above each threshold."""
    t = np.asarray(thresholds, np.float64)
    oi = np.asarray(objectness_image, np.float64)
    on = np.asarray(objectness_inverted, np.float64)
    return ThresholdScan(t, (oi[None] >= t[:, None]).sum(1), (on[None] >= t[:, None]).sum(1))


def choose_threshold(objectness_image: np.ndarray, objectness_inverted: np.ndarray,
                     floor: float, target: float) -> tuple[ThresholdScan, float]:
    """The scan from the model card's threshold ``floor`` (:func:`scan_thresholds`) of the
    detections' objectness on the image and on the inverted image, and the threshold it
    chooses for the ``target`` reliability (:meth:`ThresholdScan.choose`)."""
    scan = threshold_scan(objectness_image, objectness_inverted, scan_thresholds(floor))
    return scan, scan.choose(target)


def add_reliability_column(table: Any, estimate: ReliabilityEstimate) -> Any:
    """``table`` (a catalogue with an ``snr`` column) with a ``reliability`` column after
    ``objectness`` (or last) and the estimate in its metadata (``reliability``)."""
    col = make_table({"reliability": estimate.at(np.asarray(table["snr"]))})["reliability"]
    names = table.colnames
    index = names.index("objectness") + 1 if "objectness" in names else len(names)
    table.add_column(col, index=index)
    table.meta["reliability"] = estimate.summary()
    return table


def format_scan(scan: ThresholdScan, chosen: float, target: float,
                measured: np.ndarray | None = None) -> str:
    """The threshold scan as text lines, the chosen threshold marked (``measured``: a
    truth's precision at each threshold beside it)."""
    lines = [f"objectness threshold {chosen:g} chosen for an estimated reliability >= "
             f"{target:g} (the inverted-image test at each threshold)",
             f"{'threshold':>10}{'n_det':>7}{'n_inv':>7}{'reliability':>13}"
             + (f"{'measured':>10}" if measured is not None else "")]
    for k, t in enumerate(scan.thresholds):
        r = scan.reliability[k]
        row = (f"{t:>10.2f}{scan.n_image[k]:>7d}{scan.n_inverted[k]:>7d}"
               f"{'-' if np.isnan(r) else f'{r:.3f}':>13}")
        if measured is not None:
            row += f"{'-' if np.isnan(measured[k]) else f'{measured[k]:.3f}':>10}"
        lines.append(row + ("  <- chosen" if t == chosen else ""))
    return "\n".join(lines) + "\n"


def format_reliability(estimate: ReliabilityEstimate, measured: np.ndarray | None = None) -> str:
    """The estimate per SNR bin as text lines (``measured``: a truth's reliability per bin
    beside it, as ``val`` has one)."""
    frag = estimate.n_fragments
    lines = ["reliability from the inverted image"
             + ("" if frag is None else " and source injection")
             + f": {estimate.n_false:.0f} of the {int(estimate.n_image.sum())} detections "
             f"expected false ({int(estimate.n_inverted.sum())} detections on the inverted "
             "image" + ("" if frag is None else
                        f", {frag.sum():.1f} errors around sources expected") + ")",
             f"{'SNR bin':<14}{'n_det':>7}{'n_inv':>7}"
             + ("" if frag is None else f"{'n_frag':>8}") + f"{'reliability':>13}"
             + (f"{'measured':>10}" if measured is not None else "")]
    e = estimate.edges
    for b in range(e.size - 1):
        if estimate.n_image[b] == 0 and estimate.n_inverted[b] == 0:
            continue
        label = (f"< {e[b + 1]:g}" if not np.isfinite(e[b]) else
                 f"[{e[b]:g}, {e[b + 1]:g})" if np.isfinite(e[b + 1]) else f">= {e[b]:g}")
        r, s = estimate.reliability[b], estimate.false_fraction_err[b]
        # none on the inverted image in its pool: a 1-sigma lower limit
        cell = ("-" if np.isnan(r) else f"> {max(1.0 - s, 0.0):.2f}" if r == 1.0
                else f"{r:.2f} +- {s:.2f}")
        row = (f"{label:<14}{estimate.n_image[b]:>7d}{estimate.n_inverted[b]:>7d}"
               + ("" if frag is None else f"{frag[b]:>8.1f}") + f"{cell:>13}")
        if measured is not None:
            row += f"{'-' if np.isnan(measured[b]) else f'{measured[b]:.2f}':>10}"
        lines.append(row)
    return "\n".join(lines) + "\n"
