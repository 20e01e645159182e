"""Box geometry: IoU-family similarities and non-maximum suppression.

Pure numpy.  Boxes are corners ``(xmin, ymin, zmin, xmax, ymax, zmax)`` (``[..., 6]``);
``[..., 4]`` boxes ``(xmin, ymin, xmax, ymax)`` are accepted wherever boxes are inputs
(z extent taken as [0, 1]).  Similarities (spec ``cianna_yolo.md`` §4.3, §7.3):
``"IoU"``, ``"GIoU"``, ``"DIoU"`` (CIANNA's: *unsquared* centre-distance ratio) and
``"DIoU2"`` (the paper's squared ratio), over the first ``ndim`` spatial dims, with float
volumes (CIANNA's GPU semantics).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IOU_TYPES", "ArrayLike", "as_box6", "checked_boxes", "per_box", "class_ids",
           "box_similarity", "pairwise_similarity", "nms", "batched_nms"]

IOU_TYPES = ("IoU", "GIoU", "DIoU", "DIoU2")

ArrayLike = np.ndarray | Sequence[float] | Sequence[Sequence[float]]


def as_box6(boxes: ArrayLike) -> np.ndarray:
    """``[..., 6]`` float boxes; ``[..., 4]`` (xmin, ymin, xmax, ymax) get z extent [0, 1]."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape[-1] == 6:
        return b
    if b.shape[-1] == 4:
        zeros = np.zeros(b.shape[:-1] + (1,))
        return np.concatenate([b[..., :2], zeros, b[..., 2:], zeros + 1.0], axis=-1)
    raise ValueError(f"boxes must have 6 (or 4) coordinates on the last axis, got shape {b.shape}")


def checked_boxes(boxes: ArrayLike, name: str) -> np.ndarray:
    """``boxes`` as ``[M, 6]`` corners; ValueError naming ``name`` and the first bad box when
    a coordinate is NaN or infinite (a diverged network's output) or a max corner is below
    its min (another box convention, e.g. centre and size, passed as corners)."""
    b = as_box6(boxes).reshape(-1, 6)
    finite = np.all(np.isfinite(b), axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{name}: box {i} has a NaN or infinite coordinate: {b[i].tolist()}")
    inverted = np.any(b[:, 3:] < b[:, :3], axis=1)
    if inverted.any():
        i = int(np.argmax(inverted))
        raise ValueError(f"{name}: box {i} has a max corner below its min corner: "
                         f"{b[i].tolist()} (expected corners xmin, ymin[, zmin], xmax, ymax"
                         f"[, zmax], not centres and sizes)")
    return b


def per_box(values: ArrayLike | None, m: int, name: str, *, finite: bool = False) -> np.ndarray | None:
    """``values`` (one per box, any shape that flattens to ``m``) as a flat array, or None;
    ValueError naming ``name`` for another count or, with ``finite``, a NaN or inf."""
    if values is None:
        return None
    v = np.asarray(values).reshape(-1)
    if v.shape[0] != m:
        raise ValueError(f"{name}: expected one value per box ({m}), received {v.shape[0]}")
    if finite and not np.all(np.isfinite(v.astype(np.float64))):
        raise ValueError(f"{name}: value {int(np.argmin(np.isfinite(v)))} is not finite")
    return v


def threshold(value: float, name: str, low: float = -np.inf, high: float = np.inf) -> float:
    """``value`` as a float in ``[low, high]`` (NaN refused), else a ValueError naming it."""
    v = float(value)
    if not low <= v <= high:
        where = "" if np.isinf(low) and np.isinf(high) else f" in [{low:g}, {high:g}]"
        raise ValueError(f"{name}: expected a number{where}, received {value!r}")
    return v


def box_similarity(
    a: ArrayLike, b: ArrayLike, iou_type: str = "IoU", *, ndim: int = 3, plus_one: bool = False
) -> np.ndarray:
    """Element-wise (broadcast) similarity of corner boxes ``a`` and ``b`` (spec §4.3).

    Uses the first ``ndim`` spatial dims (x; x, y; x, y, z). ``plus_one``: PASCAL inclusive-pixel convention
    (``+1`` on intersection and volume extents only; enclosure and centre distance unchanged, as in the
    examples). Zero-volume unions give NaN.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if not 1 <= ndim <= 3:
        raise ValueError("ndim must be 1, 2 or 3")
    A, T = as_box6(a), as_box6(b)
    amin, amax = A[..., :ndim], A[..., 3 : 3 + ndim]
    tmin, tmax = T[..., :ndim], T[..., 3 : 3 + ndim]
    p = 1.0 if plus_one else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        inter = np.prod(np.maximum(0.0, np.minimum(amax, tmax) - np.maximum(amin, tmin) + p), axis=-1)
        union = np.prod(np.abs(amax - amin + p), axis=-1) + np.prod(np.abs(tmax - tmin + p), axis=-1) - inter
        iou = inter / union
        if iou_type == "IoU":
            return iou
        enc = np.maximum(amax, tmax) - np.minimum(amin, tmin)
        if iou_type == "GIoU":
            e = np.prod(enc, axis=-1)
            return iou - (e - union) / e
        d2 = np.sum((0.5 * (amin + amax) - 0.5 * (tmin + tmax)) ** 2, axis=-1)
        c2 = np.sum(enc**2, axis=-1)
        if iou_type == "DIoU":
            return iou - np.sqrt(d2) / np.sqrt(c2)
        return iou - d2 / c2


def pairwise_similarity(
    a: ArrayLike, b: ArrayLike, iou_type: str = "IoU", *, ndim: int = 3, plus_one: bool = False
) -> np.ndarray:
    """Similarity matrix ``[Ma, Mb]`` between two box sets (see :func:`box_similarity`)."""
    A, T = as_box6(a).reshape(-1, 6), as_box6(b).reshape(-1, 6)
    return box_similarity(A[:, None, :], T[None, :, :], iou_type, ndim=ndim, plus_one=plus_one)


# --------------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------------


def class_ids(classes: np.ndarray | Sequence[int] | None, m: int) -> np.ndarray:
    """Class ids from ids ``[M]`` or scores ``[M, C]`` (arg-max); zeros if ``None`` or ``C = 0``."""
    if classes is None:
        return np.zeros(m, dtype=np.int64)
    c = np.asarray(classes)
    if c.ndim == 2:
        return np.zeros(m, dtype=np.int64) if c.shape[1] == 0 else c.argmax(axis=1)
    if c.shape != (m,):
        raise ValueError(f"classes must be [M] ids or [M, C] scores with M={m}, got {c.shape}")
    return c


def nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    classes: np.ndarray | Sequence[int] | None = None,
    *,
    same_class_threshold: float,
    diff_class_threshold: float = 1.0,
    iou_type: str = "DIoU",
    ndim: int = 2,
    plus_one: bool = False,
) -> np.ndarray:
    """Greedy NMS as in CIANNA's examples (spec §7.3).

    Repeatedly keeps the highest-scoring remaining box and drops every remaining box whose similarity with it
    is ``> same_class_threshold`` when both have the same class (``classes``: ids [M] or scores [M, C],
    arg-max taken; ``None``: one class), else ``> diff_class_threshold``. Returns the kept indices in
    decreasing score order (ties: lower index first).
    """
    B = checked_boxes(boxes, "boxes")
    s = per_box(scores, B.shape[0], "scores", finite=True).astype(np.float64)
    threshold(same_class_threshold, "same_class_threshold")
    threshold(diff_class_threshold, "diff_class_threshold")
    cls = class_ids(classes, B.shape[0])
    order = np.argsort(-s, kind="stable")
    Bs, cs = B[order], cls[order]
    keep: list[int] = []
    if min(same_class_threshold, diff_class_threshold) >= 0.0:
        # every member of the IoU family is <= 0 for boxes that do not overlap, so with non-negative
        # thresholds only boxes overlapping in x can be suppressed: sweep over boxes sorted by xmin
        p = 1.0 if plus_one else 0.0
        xo = np.argsort(Bs[:, 0], kind="stable")
        xs = Bs[xo, 0]
        wmax = float(np.max(np.abs(Bs[:, 3] - Bs[:, 0]))) if len(Bs) else 0.0
        alive = np.ones(len(Bs), dtype=bool)
        for i in range(len(Bs)):
            if not alive[i]:
                continue
            keep.append(i)
            alive[i] = False
            lo = np.searchsorted(xs, Bs[i, 0] - wmax - p, side="left")
            hi = np.searchsorted(xs, Bs[i, 3] + p, side="right")
            cand = xo[lo:hi]
            cand = cand[alive[cand]]
            if cand.size:
                sim = box_similarity(Bs[i], Bs[cand], iou_type, ndim=ndim, plus_one=plus_one)
                thr = np.where(cs[cand] == cs[i], same_class_threshold, diff_class_threshold)
                alive[cand[sim > thr]] = False
        return order[np.asarray(keep, dtype=np.int64)]
    remaining = np.arange(B.shape[0])
    while remaining.size:
        i, rest = remaining[0], remaining[1:]
        keep.append(int(i))
        if not rest.size:
            break
        sim = box_similarity(Bs[i], Bs[rest], iou_type, ndim=ndim, plus_one=plus_one)
        thr = np.where(cs[rest] == cs[i], same_class_threshold, diff_class_threshold)
        remaining = rest[~(sim > thr)]  # NaN never suppresses
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    image: ArrayLike,
    classes: np.ndarray | Sequence[int] | None = None,
    **nms_kwargs: object,
) -> np.ndarray:
    """:func:`nms` run independently per image id; indices grouped by increasing image id, score order
    within each image. ``nms_kwargs``: ``same_class_threshold``, ``diff_class_threshold``, ``iou_type``,
    ``ndim``, ``plus_one``."""
    B = as_box6(boxes).reshape(-1, 6)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    img = per_box(image, B.shape[0], "image")
    cls = class_ids(classes, B.shape[0])
    out = []
    for u in np.unique(img):
        idx = np.nonzero(img == u)[0]
        out.append(idx[nms(B[idx], s[idx], cls[idx], **nms_kwargs)])  # type: ignore[arg-type]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
