"""Per-epoch validation of ``cianna-jax train``: the detector runs over the validation
area exactly as ``predict`` does (tiles, normalisation, merging, NMS; in a cube also the
merge of a line's duplicate boxes, e.g. of each horn of a double-horned line), its
detections are cross-matched with the catalogue, and the objectness threshold is chosen:
the highest whose F1 is within one standard error of the best (:func:`tune_threshold`).

Counting rules are those of ``cianna-jax val``: a detection is correct when it matches
(one-to-one, within max(beam, source size) FWHM) any catalogue source, in a cube also
within its line's channel tolerance (:mod:`.line_scores`); recall counts the sources of
SNR >= ``min_snr``.  AP is the area under the precision-recall curve
(VOC-style upper envelope) over the threshold grid.  A detector that classifies (true
``classes`` given) is also scored by its class accuracy: the share of the detections
matched at the chosen threshold whose most probable class is the source's, and the
temperature that calibrates its class probabilities on them (:mod:`.probability_calibration`:
the lowest log-loss of the true classes; 1 below :data:`MIN_CALIBRATION` matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .crossmatch import crossmatch_pixels
from .duplicates import line_owners, merge_parts
from .measure import measure_boxes_3d
from .model_card import LoadedModel
from .noise import NoiseMap
from .predict import detect
from .probability_calibration import expected_calibration_error, fit_temperature, tempered
from .scores import f1_score, pr_curve

__all__ = ["THRESHOLDS", "ValidationArea", "ValidationScores", "average_precision",
           "tune_threshold", "f1_standard_error", "validate_area", "validate_areas"]

#: Objectness thresholds tried when tuning (detection runs once at the lowest).
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 3)


class _OffsetNoise:
    """A noise map seen through a window of the image (slices relative to its origin)."""

    def __init__(self, noise: NoiseMap, y0: int, x0: int) -> None:
        self.noise, self.y0, self.x0 = noise, y0, x0

    def window(self, ys: slice, xs: slice, which: str = "rms",
               zs: slice | None = None) -> np.ndarray:
        return self.noise.window(slice(ys.start + self.y0, ys.stop + self.y0),
                                 slice(xs.start + self.x0, xs.stop + self.x0), which, zs=zs)

    def at(self, y: np.ndarray, x: np.ndarray, z: np.ndarray | None = None,
           which: str = "rms") -> np.ndarray:
        return self.noise.at(np.asarray(y) + self.y0, np.asarray(x) + self.x0, z, which)


@dataclass(frozen=True)
class ValidationArea:
    """The raw pixels of the validation area (``pixels`` [h, w], or [d, h, w] with every
    channel of a cube; image unit, NaN kept), its ``origin`` (y0, x0) in the image, the
    true sources inside (image pixels), their match ``radius`` (pixels) and which of them
    recall counts (``counted``); in a cube their channels ``z`` and ``z_tolerance``, and
    the beam's ``beam_sigma`` (pixels) for the merge of duplicate lines; ``classes`` the
    true sources' 0-based classes for a detector that classifies (-1: none known)."""

    pixels: np.ndarray
    origin: tuple[int, int]
    noise: NoiseMap
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    counted: np.ndarray
    z: np.ndarray | None = None
    z_tolerance: np.ndarray | None = None
    beam_sigma: float = 1.0
    classes: np.ndarray | None = None

    @property
    def n_counted(self) -> int:
        return int(np.count_nonzero(self.counted))


@dataclass(frozen=True)
class ValidationScores:
    """Scores at the tuned ``threshold`` plus the whole curve (``curve``: threshold,
    precision, recall, n_det arrays); ``class_accuracy`` (NaN when not classifying or
    nothing matched) over ``n_classified`` matched detections of sources whose class is
    known; ``class_temperature`` the
    temperature that calibrates their class probabilities and ``class_ece`` their expected
    calibration error once tempered."""

    threshold: float
    precision: float
    recall: float
    f1: float
    ap: float
    n_detections: int
    n_true: int
    curve: dict[str, np.ndarray]
    class_accuracy: float = float("nan")
    n_classified: int = 0
    class_temperature: float = 1.0
    class_ece: float = float("nan")


#: matched detections a class temperature is fitted on, at least (else 1)
MIN_CALIBRATION = 20


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision-recall points (any order; NaN points skipped), using the
    upper envelope of precision as recall grows, from recall 0."""
    p, r = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    if not ok.any():
        return 0.0
    order = np.argsort(r[ok], kind="stable")
    r, p = np.concatenate([[0.0], r[ok][order]]), np.concatenate([[p[ok][order][0]], p[ok][order]])
    env = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum(np.diff(r) * env[1:]))


def f1_standard_error(f1: float, n_det: int, n_true: int) -> float:
    """Standard error of an F1 score measured on ``n_true`` true sources and ``n_det``
    detections: F1 = 2 TP / (n_det + n_true) is read as a proportion of ``n_det + n_true``
    trials (binomial), sqrt(F1 (1 - F1) / (n_det + n_true)); 0 without trials."""
    n = int(n_det) + int(n_true)
    f1 = float(f1)
    if n <= 0 or not np.isfinite(f1):
        return 0.0
    return float(np.sqrt(max(f1 * (1.0 - f1), 0.0) / n))


def tune_threshold(curve: dict[str, np.ndarray], n_true: int | None = None) -> int:
    """Index of the operating threshold on a precision-recall ``curve`` (ascending
    thresholds).

    Without ``n_true``: the threshold of highest F1 (the highest such threshold on ties,
    which keeps fewer false detections for the same F1).  With ``n_true`` (the true
    sources the recall counts) and the curve's ``n_det``: the one-standard-error rule
    towards precision, the highest threshold whose F1 is within one standard error
    (:func:`f1_standard_error` at the best F1) of the best.  F1 is flat near its maximum
    and a validation area's F1 differs from the sky's by about that error, so thresholds
    inside it are equally good by F1; the highest gives the catalogue with the fewest
    false detections (on the held-out field of ``benchmarks/pybdsf_compare.py``: F1 0.828
    at 0.3 and 0.826 at 0.4, 53 and 30 false detections)."""
    f1 = np.nan_to_num(f1_score(curve["precision"], curve["recall"]), nan=-1.0)
    k = int(np.flatnonzero(f1 == f1.max())[-1])
    if n_true is None or "n_det" not in curve:
        return k
    se = f1_standard_error(f1[k], int(np.asarray(curve["n_det"])[k]), n_true)
    return int(np.flatnonzero(f1 >= f1[k] - se)[-1])


def validate_area(model: LoadedModel, area: ValidationArea, predict_fn: Any,
                  thresholds: np.ndarray = THRESHOLDS) -> ValidationScores:
    """Detect over ``area`` with ``model`` (``predict_fn``: the jitted network on a batch
    of tiles), sweep ``thresholds`` and return the scores at the threshold
    :func:`tune_threshold` chooses."""
    return validate_areas(model, (area,), predict_fn, thresholds)


def _area_curve(model: LoadedModel, area: ValidationArea, predict_fn: Any,
                thresholds: np.ndarray) -> tuple[dict[str, np.ndarray], Any, np.ndarray,
                                                 np.ndarray]:
    """The area's precision-recall curve, its matcher (of detection indices), the
    detections' objectness and class probabilities ([n, C], C = 0 without classes)."""
    y0, x0 = area.origin
    pix = area.pixels
    noise = _OffsetNoise(area.noise, y0, x0)
    det = detect(lambda w: pix[w], pix.shape, model, noise=noise,
                 obj_threshold=float(thresholds[0]), progress=False, predict_fn=predict_fn)
    b = det.boxes.boxes
    x = 0.5 * (b[:, 0] + b[:, 3]) - 0.5
    y = 0.5 * (b[:, 1] + b[:, 4]) - 0.5
    z = 0.5 * (b[:, 2] + b[:, 5]) - 0.5
    obj = det.boxes.objectness
    cls = np.asarray(det.boxes.class_scores, np.float64).reshape(len(b), det.boxes.nb_class)
    if area.z is not None and len(b):  # as predict: a line's centroid and spectrum's
        # centre, a galaxy boxed in parts kept once (the larger box sum: flux per pixel),
        # measured over the parts' envelope
        def measure(boxes):
            return measure_boxes_3d(lambda w: pix[w], pix.shape, boxes, noise, beam_area=1.0,
                                    box_scale=model.card.box_scale, errors=False)

        m = measure(b)
        owner = line_owners(m, det.boxes.score(model.card.score), area.beam_sigma)
        keep, _, m = merge_parts(b, m, owner, measure)
        x, y, z, obj, cls = m.x[keep], m.y[keep], m.z[keep], obj[keep], cls[keep]
    x, y = x + x0, y + y0

    def matcher(sel: np.ndarray):
        same_line = None
        if area.z is not None:
            zs = z[sel]

            def same_line(di, ti):
                return np.abs(zs[di] - area.z[ti]) <= area.z_tolerance[ti]

        return crossmatch_pixels(x[sel], y[sel], area.x, area.y, area.radius,
                                 pair_ok=same_line)

    return pr_curve(obj, thresholds, matcher, area.n_counted, area.counted), matcher, obj, cls


def validate_areas(model: LoadedModel, areas: Sequence[ValidationArea], predict_fn: Any,
                   thresholds: np.ndarray = THRESHOLDS) -> ValidationScores:
    """:func:`validate_area` over several areas (of several images) counted together:
    detections, matches and true sources summed at each threshold before the precision,
    recall and the threshold (:func:`tune_threshold`) are computed."""
    n_det = np.zeros(len(thresholds))
    n_tp = np.zeros(len(thresholds))
    n_hit = np.zeros(len(thresholds))
    n_true = 0
    classified = []
    for area in areas:
        c, matcher, obj, cls = _area_curve(model, area, predict_fn, thresholds)
        classified.append((area, matcher, obj, cls))
        n_det += c["n_det"]
        n_tp += np.rint(np.nan_to_num(c["precision"]) * c["n_det"])
        n_hit += np.rint(np.nan_to_num(c["recall"]) * area.n_counted)
        n_true += area.n_counted
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = {"threshold": np.asarray(thresholds, np.float64),
                 "precision": np.where(n_det > 0, n_tp / n_det, np.nan),
                 "recall": np.where(n_true > 0, n_hit / max(n_true, 1), np.nan),
                 "n_det": n_det.astype(np.int64)}
    k = tune_threshold(curve, n_true)
    p, r = float(np.nan_to_num(curve["precision"][k])), float(np.nan_to_num(curve["recall"][k]))
    probs, labels = [], []  # the matched detections' class probabilities, true classes
    for area, matcher, obj, cls in classified:
        if area.classes is None or not cls.shape[1]:
            continue
        sel = np.flatnonzero(obj >= thresholds[k])
        m = matcher(sel)
        di = np.flatnonzero(m.det_to_truth >= 0)
        truth = area.classes[m.det_to_truth[di]]
        known = truth >= 0   # sources without a class (-1) are not scored
        probs.append(cls[sel][di][known])
        labels.append(truth[known])
    prob = np.concatenate(probs) if probs else np.zeros((0, 0))
    lab = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
    matched = int(lab.size)
    right = int(np.count_nonzero(prob.argmax(axis=1) == lab)) if matched else 0
    temperature = fit_temperature(prob, lab) if matched >= MIN_CALIBRATION else 1.0
    ece = (expected_calibration_error(tempered(prob, temperature), lab) if matched
           else float("nan"))
    return ValidationScores(threshold=float(thresholds[k]), precision=p, recall=r,
                            f1=float(f1_score(p, r)),
                            ap=average_precision(curve["precision"], curve["recall"]),
                            n_detections=int(curve["n_det"][k]), n_true=n_true,
                            curve=curve,
                            class_accuracy=right / matched if matched else float("nan"),
                            n_classified=matched, class_temperature=temperature,
                            class_ece=ece)
