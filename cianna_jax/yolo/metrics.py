"""Detection metrics: PASCAL-style matching, AP, mAP (PASCAL / COCO) and precision-recall.

Pure numpy.  Boxes as in :mod:`cianna_jax.yolo.boxes` (corners ``[M, 6]`` or ``[M, 4]``);
``*_classes`` and ``*_image`` are integer ids per box (``None``: all the same).  Spec
``cianna_yolo.md`` §7.3 (the examples' ``pred_compute_map``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .boxes import ArrayLike, as_box6, checked_boxes, pairwise_similarity, per_box, threshold

__all__ = ["MatchResult", "APResult", "CocoMAPResult", "PRResult", "match_detections",
           "average_precision", "coco_map", "precision_recall"]


class MatchResult(NamedTuple):
    """Per-prediction outcome: ``status`` 1 TP, 0 FP, -1 ignored (matched a difficult target);
    ``gt_index`` matched target (-1 if none); ``iou`` IoU with it (NaN if none)."""

    status: np.ndarray
    gt_index: np.ndarray
    iou: np.ndarray


class APResult(NamedTuple):
    """``classes`` evaluated, per-class ``ap`` (NaN for a class with no non-difficult target), ``n_gt``
    non-difficult targets per class, ``map`` = mean of the non-NaN APs."""

    classes: np.ndarray
    ap: np.ndarray
    n_gt: np.ndarray
    map: float


class CocoMAPResult(NamedTuple):
    """``map`` averaged over ``thresholds``; ``per_threshold`` mAP at each IoU threshold."""

    map: float
    per_threshold: np.ndarray
    thresholds: np.ndarray


class PRResult(NamedTuple):
    """Counts and ratios at one score threshold (0 where the denominator is 0)."""

    precision: float
    recall: float
    tp: int
    fp: int
    fn: int


def _ids(v: ArrayLike | None, m: int) -> np.ndarray:
    return np.zeros(m, dtype=np.int64) if v is None else np.asarray(v).reshape(-1)


def _difficult(gt_difficult: ArrayLike | None, mg: int) -> np.ndarray:
    """Boolean "difficult" flag of each of the ``mg`` targets (none when not given)."""
    return np.zeros(mg, bool) if gt_difficult is None else np.asarray(gt_difficult).reshape(-1) > 0


def match_detections(
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    pred_classes: ArrayLike | None,
    pred_image: ArrayLike | None,
    gt_boxes: ArrayLike,
    gt_classes: ArrayLike | None,
    gt_image: ArrayLike | None,
    *,
    iou_threshold: float = 0.5,
    gt_difficult: ArrayLike | None = None,
    ndim: int = 2,
    plus_one: bool = False,
) -> MatchResult:
    """PASCAL-style greedy matching (spec §7.3, ``pred_compute_map``).

    Per image and class, predictions in decreasing score order are matched to the *unmatched* target of the
    same class and image with the largest IoU; a match needs IoU ``>= iou_threshold``. A match to a difficult
    target (``gt_difficult > 0``) is ignored (status -1) and leaves that target available. ``None`` classes
    or images mean "all the same".
    """
    P, G = checked_boxes(pred_boxes, "pred_boxes"), checked_boxes(gt_boxes, "gt_boxes")
    mp, mg = P.shape[0], G.shape[0]
    s = per_box(pred_scores, mp, "pred_scores", finite=True).astype(np.float64)
    threshold(iou_threshold, "iou_threshold", 0.0, 1.0)
    if (pred_image is None) != (gt_image is None):
        raise ValueError("pred_image, gt_image: give the image ids of both or of neither "
                         "(None means one image)")
    for v, m, name in ((pred_classes, mp, "pred_classes"), (pred_image, mp, "pred_image"),
                       (gt_classes, mg, "gt_classes"), (gt_image, mg, "gt_image"),
                       (gt_difficult, mg, "gt_difficult")):
        per_box(v, m, name)
    pc, pi = _ids(pred_classes, mp), _ids(pred_image, mp)
    gc, gi = _ids(gt_classes, mg), _ids(gt_image, mg)
    diff = _difficult(gt_difficult, mg)
    status = np.zeros(mp, dtype=np.int8)
    gt_index = np.full(mp, -1, dtype=np.int64)
    ious = np.full(mp, np.nan)
    if mp == 0 or mg == 0:
        return MatchResult(status, gt_index, ious)
    # group predictions by (image, class)
    keys = np.stack([pi, pc], axis=1)
    ukeys, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    for k, (im, cl) in enumerate(ukeys):
        p_idx = np.nonzero(inv == k)[0]
        g_idx = np.nonzero((gi == im) & (gc == cl))[0]
        if not g_idx.size:
            continue
        p_idx = p_idx[np.argsort(-s[p_idx], kind="stable")]
        iou = pairwise_similarity(P[p_idx], G[g_idx], "IoU", ndim=ndim, plus_one=plus_one)
        iou = np.where(np.isnan(iou), -np.inf, iou)
        taken = np.zeros(g_idx.size, dtype=bool)
        gdiff = diff[g_idx]
        for r, p in enumerate(p_idx):
            cand = np.where(taken, -np.inf, iou[r])
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                gt_index[p], ious[p] = g_idx[j], cand[j]
                if gdiff[j]:
                    status[p] = -1
                else:
                    status[p] = 1
                    taken[j] = True
    return MatchResult(status, gt_index, ious)


def _ap_from_curve(tp: np.ndarray, n_gt: int, interpolation: str) -> float:
    """AP of one class from TP flags (1/0) sorted by decreasing score."""
    if n_gt <= 0:
        return float("nan")
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    precision = ctp / (ctp + cfp)
    recall = ctp / n_gt
    env = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    if interpolation == "all_points":
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * env))
    if interpolation == "trapezoid":  # the examples: np.trapz over the prediction points
        return float(np.sum(np.diff(recall) * 0.5 * (env[1:] + env[:-1])))
    if interpolation == "coco101":
        r = np.linspace(0.0, 1.0, 101)
        i = np.searchsorted(recall, r, side="left")
        return float(np.mean(np.where(i < env.size, env[np.minimum(i, env.size - 1)], 0.0)))
    raise ValueError("interpolation must be 'all_points', 'trapezoid' or 'coco101'")


def average_precision(
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    pred_classes: ArrayLike | None,
    pred_image: ArrayLike | None,
    gt_boxes: ArrayLike,
    gt_classes: ArrayLike | None,
    gt_image: ArrayLike | None,
    *,
    iou_threshold: float = 0.5,
    gt_difficult: ArrayLike | None = None,
    ndim: int = 2,
    plus_one: bool = False,
    classes: Sequence[int] | np.ndarray | None = None,
    interpolation: str = "all_points",
) -> APResult:
    """Per-class AP and mAP with PASCAL matching (:func:`match_detections`).

    Per class: predictions (ignored ones removed) by decreasing score, precision made monotone (running max
    from the end), area under precision-recall. ``interpolation``: ``"all_points"`` (VOC 2010+, default),
    ``"trapezoid"`` (the CIANNA example's ``np.trapz`` over the points) or ``"coco101"`` (101 recall points).
    ``classes``: classes to report (default: every class seen in targets or predictions); a class with no
    non-difficult target gets NaN and is left out of ``map``; one with targets but no prediction gets 0.
    """
    m = match_detections(
        pred_boxes, pred_scores, pred_classes, pred_image, gt_boxes, gt_classes, gt_image,
        iou_threshold=iou_threshold, gt_difficult=gt_difficult, ndim=ndim, plus_one=plus_one,
    )
    s = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    pc = _ids(pred_classes, s.shape[0])
    mg = as_box6(gt_boxes).reshape(-1, 6).shape[0]
    gc = _ids(gt_classes, mg)
    diff = _difficult(gt_difficult, mg)
    cls = np.unique(np.concatenate([gc, pc])) if classes is None else np.asarray(classes).reshape(-1)
    aps = np.zeros(cls.shape[0])
    n_gt = np.zeros(cls.shape[0], dtype=np.int64)
    for k, c in enumerate(cls):
        sel = np.nonzero((pc == c) & (m.status >= 0))[0]
        sel = sel[np.argsort(-s[sel], kind="stable")]
        n_gt[k] = int(np.sum((gc == c) & ~diff))
        aps[k] = _ap_from_curve(m.status[sel].astype(np.float64), int(n_gt[k]), interpolation)
    valid = ~np.isnan(aps)
    mean = float(np.mean(aps[valid])) if valid.any() else float("nan")
    return APResult(classes=cls, ap=aps, n_gt=n_gt, map=mean)


def coco_map(
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    pred_classes: ArrayLike | None,
    pred_image: ArrayLike | None,
    gt_boxes: ArrayLike,
    gt_classes: ArrayLike | None,
    gt_image: ArrayLike | None,
    *,
    iou_thresholds: Sequence[float] | np.ndarray | None = None,
    **ap_kwargs: object,
) -> CocoMAPResult:
    """mAP averaged over IoU thresholds (default 0.50:0.05:0.95), each from :func:`average_precision`
    (``ap_kwargs`` forwarded, e.g. ``interpolation="coco101"``, ``gt_difficult``, ``ndim``)."""
    th = np.round(np.linspace(0.5, 0.95, 10), 10) if iou_thresholds is None else np.asarray(iou_thresholds, float)
    if th.ndim != 1 or not th.size:
        raise ValueError(f"iou_thresholds: expected a non-empty list of IoU thresholds, received "
                         f"{iou_thresholds!r}")
    per = np.array([
        average_precision(
            pred_boxes, pred_scores, pred_classes, pred_image, gt_boxes, gt_classes, gt_image,
            iou_threshold=float(t), **ap_kwargs,  # type: ignore[arg-type]
        ).map
        for t in th
    ])
    return CocoMAPResult(map=float(np.mean(per)), per_threshold=per, thresholds=th)


def precision_recall(
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    pred_classes: ArrayLike | None,
    pred_image: ArrayLike | None,
    gt_boxes: ArrayLike,
    gt_classes: ArrayLike | None,
    gt_image: ArrayLike | None,
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
    gt_difficult: ArrayLike | None = None,
    ndim: int = 2,
    plus_one: bool = False,
) -> PRResult:
    """Precision, recall, TP, FP, FN over all classes for the predictions with ``score >= score_threshold``
    (same matching as :func:`average_precision`; ignored matches and difficult targets are not counted)."""
    P = checked_boxes(pred_boxes, "pred_boxes")
    s = per_box(pred_scores, P.shape[0], "pred_scores", finite=True).astype(np.float64)
    keep = s >= threshold(score_threshold, "score_threshold")
    pc = per_box(pred_classes, P.shape[0], "pred_classes")
    pi = per_box(pred_image, P.shape[0], "pred_image")
    mg = as_box6(gt_boxes).reshape(-1, 6).shape[0]
    m = match_detections(
        P[keep], s[keep], None if pc is None else pc[keep], None if pi is None else pi[keep],
        gt_boxes, gt_classes, gt_image,
        iou_threshold=iou_threshold, gt_difficult=gt_difficult, ndim=ndim, plus_one=plus_one,
    )
    diff = _difficult(gt_difficult, mg)
    tp, fp = int(np.sum(m.status == 1)), int(np.sum(m.status == 0))
    fn = int(np.sum(~diff)) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return PRResult(precision=precision, recall=recall, tp=tp, fp=fp, fn=fn)
