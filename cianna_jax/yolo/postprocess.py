"""YOLO post-processing: decoding, NMS, PASCAL/COCO-style mAP and tiled inference.

Pure numpy (no JAX, no GPU needed). Conventions follow CIANNA (spec ``cianna_yolo.md`` §2, §4.3, §7.3):

* Predictions are ``[N, F, G2, G1, G0]`` (x fastest) or flat rows ``[N, F*G2*G1*G0]`` with
  ``F = B*(8+C+P)``; per box the channels are 0-2 position in the cell, 3-5 log size ratio to the prior,
  6 probability, 7 objectness, ``8..8+C-1`` classes, then ``P`` parameters.
* Boxes are corners ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in input pixels; spatial quantities given as
  triples (``in_dim``, ``grid``, cells) are x-first ``(x, y, z)``. ``[M, 4]`` boxes
  ``(xmin, ymin, xmax, ymax)`` are accepted wherever boxes are inputs (z extent taken as [0, 1]).
* Similarities: ``"IoU"``, ``"GIoU"``, ``"DIoU"`` (CIANNA's: *unsquared* centre-distance ratio) and
  ``"DIoU2"`` (the paper's squared ratio), over the first ``ndim`` spatial dims, with float volumes
  (CIANNA's GPU semantics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

__all__ = [
    "IOU_TYPES",
    "DecodedBoxes",
    "APResult",
    "CocoMAPResult",
    "PRResult",
    "MatchResult",
    "decode",
    "raw_to_decoded",
    "box_similarity",
    "pairwise_similarity",
    "nms",
    "batched_nms",
    "match_detections",
    "average_precision",
    "coco_map",
    "precision_recall",
    "tile_origins",
    "predict_tiled",
]

IOU_TYPES = ("IoU", "GIoU", "DIoU", "DIoU2")

ArrayLike = np.ndarray | Sequence[float] | Sequence[Sequence[float]]


# --------------------------------------------------------------------------------------------------
# Decoded detections container
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedBoxes:
    """Detections as parallel numpy arrays (one row per box).

    ``boxes`` [M, 6] corners (xmin, ymin, zmin, xmax, ymax, zmax) in pixels; ``image`` [M] image (or tile)
    index; ``prior`` [M] box/prior index ``b``; ``cell`` [M, 3] grid cell (x, y, z); ``probability`` [M];
    ``objectness`` [M]; ``class_scores`` [M, C]; ``params`` [M, P].
    """

    boxes: np.ndarray
    image: np.ndarray
    prior: np.ndarray
    cell: np.ndarray
    probability: np.ndarray
    objectness: np.ndarray
    class_scores: np.ndarray
    params: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def nb_class(self) -> int:
        return int(self.class_scores.shape[1])

    @property
    def max_class_score(self) -> np.ndarray:
        """Largest class score per box (1 when there are no classes, as in the examples)."""
        if self.nb_class == 0:
            return np.ones(len(self), dtype=self.objectness.dtype)
        return self.class_scores.max(axis=1)

    @property
    def class_id(self) -> np.ndarray:
        """Arg-max class per box, 0-based (all 0 when there are no classes)."""
        if self.nb_class == 0:
            return np.zeros(len(self), dtype=np.int64)
        return self.class_scores.argmax(axis=1)

    @property
    def centers(self) -> np.ndarray:
        """Box centres [M, 3] (x, y, z)."""
        return 0.5 * (self.boxes[:, :3] + self.boxes[:, 3:])

    def score(self, kind: str = "obj*class") -> np.ndarray:
        """Ranking score: ``"obj*class"`` (objectness x max class, the examples' NMS/mAP score),
        ``"objectness"`` or ``"probability"``."""
        if kind == "obj*class":
            return self.objectness * self.max_class_score
        if kind == "objectness":
            return self.objectness
        if kind == "probability":
            return self.probability
        raise ValueError(f"unknown score kind {kind!r} (use 'obj*class', 'objectness' or 'probability')")

    def take(self, index: np.ndarray | Sequence[int] | slice) -> DecodedBoxes:
        """Subset by integer indices, boolean mask or slice (order of ``index`` kept)."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype != bool:
                index = index.astype(np.int64, copy=False)
        return DecodedBoxes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(parts: Sequence[DecodedBoxes]) -> DecodedBoxes:
        """Row-wise concatenation of several results (same C and P)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return DecodedBoxes(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(DecodedBoxes)}
        )

    @staticmethod
    def empty(nb_class: int = 0, nb_param: int = 0, dtype: np.dtype | type = np.float64) -> DecodedBoxes:
        """A result with no box."""
        return DecodedBoxes(
            boxes=np.zeros((0, 6), dtype),
            image=np.zeros(0, np.int64),
            prior=np.zeros(0, np.int64),
            cell=np.zeros((0, 3), np.int64),
            probability=np.zeros(0, dtype),
            objectness=np.zeros(0, dtype),
            class_scores=np.zeros((0, nb_class), dtype),
            params=np.zeros((0, nb_param), dtype),
        )


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def _triple(v: int | Sequence[int], fill: int = 1) -> tuple[int, int, int]:
    """An int or 1..3 sequence as an x-first triple padded with ``fill``."""
    if np.isscalar(v):
        return (int(v), int(v), fill)
    t = [int(x) for x in v]
    if not 1 <= len(t) <= 3:
        raise ValueError(f"expected 1 to 3 values, got {v!r}")
    return tuple(t + [fill] * (3 - len(t)))  # type: ignore[return-value]


def _grid_view(
    pred: np.ndarray, F: int, grid: int | Sequence[int] | None
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Reshape predictions to ``[N, F, G2, G1, G0]``; returns it and the grid (G0, G1, G2)."""
    a = np.asarray(pred)
    if a.ndim in (4, 5):
        if a.ndim == 4:
            a = a[:, :, None]
        inferred = (a.shape[4], a.shape[3], a.shape[2])
        if grid is not None and tuple(_triple(grid)) != inferred:
            raise ValueError(f"grid {grid!r} does not match prediction shape {np.shape(pred)}")
        g = inferred
    elif a.ndim in (1, 2):
        if grid is None:
            raise ValueError("grid is required for flat prediction rows")
        g = _triple(grid)
        a = a.reshape(-1, F, g[2], g[1], g[0]) if a.size else np.zeros((0, F, g[2], g[1], g[0]), a.dtype)
    else:
        raise ValueError(f"predictions must be 1-D, 2-D, 4-D or 5-D, got shape {a.shape}")
    if a.shape[1] != F:
        raise ValueError(f"prediction has {a.shape[1]} filters, expected B*(8+C+P) = {F}")
    return a, g


def _prior_table(priors: ArrayLike | None, nb_box: int, fit_dim: int | None, floor: bool) -> np.ndarray:
    """Priors as a ``[B, 3]`` (w, h, d) table from CIANNA's ``prior_size`` layout ``(n_dim, B)``."""
    if priors is None:
        p = np.zeros((0, nb_box))
    else:
        p = np.asarray(priors, dtype=np.float64)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] != nb_box or p.shape[0] > 3:
            raise ValueError(f"priors must have CIANNA's prior_size shape (n_dim <= 3, nb_box={nb_box}), got {p.shape}")
    n_dim = p.shape[0]
    table = np.zeros((3, nb_box))
    table[:n_dim] = p
    fd = n_dim if fit_dim is None or fit_dim <= 0 else int(fit_dim)
    table[fd:] = 0.0  # dims >= fit_dim carry prior 0 (set_yolo_params)
    if floor:
        table = np.maximum(table, 1.0)  # layer-level priors used by the loss (set_yolo_activ)
    return table.T


def _split_channels(
    pred: np.ndarray, in_dim: int | Sequence[int], grid: int | Sequence[int] | None, nb_box: int, nb_class: int, nb_param: int
) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """Reshape to ``[N, B, K, G2, G1, G0]``; returns it, the grid and the cell sizes (x, y, z)."""
    K = 8 + nb_class + nb_param
    a, g = _grid_view(pred, nb_box * K, grid)
    dims = list(_triple(in_dim))
    if np.isscalar(in_dim) and g[2] > 1:
        dims[2] = int(in_dim)
    cell = np.array([dims[d] // g[d] for d in range(3)], dtype=np.float64)  # integer division (set_yolo_activ)
    return a.reshape(a.shape[0], nb_box, K, g[2], g[1], g[0]), g, cell


def _corners_from_raw(a6: np.ndarray, priors: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mins and maxes ``[N, B, 3, G2, G1, G0]`` from activated channels ``[N, B, K, G2, G1, G0]``."""
    _, _, _, G2, G1, G0 = a6.shape
    gz, gy, gx = np.meshgrid(np.arange(G2), np.arange(G1), np.arange(G0), indexing="ij")
    g = np.stack([gx, gy, gz])[None, None].astype(np.float64)  # [1, 1, 3, G2, G1, G0]
    pos = a6[:, :, 0:3].astype(np.float64)
    size = a6[:, :, 3:6].astype(np.float64)
    ctr = (g + pos) * cell[None, None, :, None, None, None]
    half = 0.5 * priors[None, :, :, None, None, None] * np.exp(size)
    return ctr - half, ctr + half


def decode(
    pred: np.ndarray,
    in_dim: int | Sequence[int],
    grid: int | Sequence[int] | None,
    nb_box: int,
    nb_class: int,
    nb_param: int,
    priors: ArrayLike | None,
    *,
    raw: bool = True,
    fit_dim: int | None = None,
    floor_priors: bool = False,
    obj_threshold: float | Sequence[float] | None = None,
    min_score: float | None = None,
    class_limit: float | None = None,
) -> DecodedBoxes:
    """Decode YOLO predictions of one or many images into pixel boxes.

    ``pred``: ``[N, F, G2, G1, G0]``, ``[N, F, G1, G0]`` (2D), flat rows ``[N, F*G]`` or one flat image
    ``[F*G]``. ``in_dim``: network input size (x, y[, z]) (an int means square 2D); ``grid``: (G0, G1[, G2])
    (``None``: taken from a 4-D/5-D ``pred``). ``priors``: CIANNA's ``prior_size`` layout ``(n_dim, B)``
    (rows widths, heights, depths); dims ``>= fit_dim`` (default ``n_dim``) get prior 0.

    ``raw=True``: ``pred`` holds activated outputs (``raw_output=1`` files, or the network's output);
    ``centre_d = (g_d + o_pos,d) * (in_dim_d // G_d)``, ``extent_d = prior_d * exp(o_size,d)``, corners
    ``centre -/+ extent/2``. The prior is *not* floored at 1 pixel unless ``floor_priors=True`` (the file
    writer uses the unfloored prior, the loss the floored one). ``raw=False``: ``pred`` is a decoded
    (``raw_output=0``) file whose channels 0-2 / 3-5 already hold the mins / maxes.

    Optional filtering, as the examples' ``box_extraction``: keep ``objectness >= obj_threshold`` (scalar or
    one value per prior), ``objectness * max_class >= min_score`` and ``max_class > class_limit`` (max class
    is 1 when C = 0). Rows are ordered by image, then cell (z, y, x; x fastest), then prior.
    """
    a6, _g, cell = _split_channels(pred, in_dim, grid, nb_box, nb_class, nb_param)
    N, B, K, G2, G1, G0 = a6.shape
    if raw:
        mins, maxs = _corners_from_raw(a6, _prior_table(priors, nb_box, fit_dim, floor_priors), cell)
    else:
        mins, maxs = a6[:, :, 0:3], a6[:, :, 3:6]
    corners = np.concatenate([mins, maxs], axis=2)  # [N, B, 6, G2, G1, G0]
    # rows ordered (n, z, y, x, b): move the channel axis last
    corners = corners.transpose(0, 3, 4, 5, 1, 2).reshape(-1, 6)
    rest = a6[:, :, 6:].transpose(0, 3, 4, 5, 1, 2).reshape(-1, K - 6)
    dtype = np.result_type(rest.dtype, np.float32) if rest.size else np.float64
    rest = rest.astype(dtype, copy=False)

    n_idx, z_idx, y_idx, x_idx, b_idx = (
        i.reshape(-1) for i in np.meshgrid(
            np.arange(N), np.arange(G2), np.arange(G1), np.arange(G0), np.arange(B), indexing="ij"
        )
    )
    out = DecodedBoxes(
        boxes=corners.astype(np.float64, copy=False),
        image=n_idx.astype(np.int64),
        prior=b_idx.astype(np.int64),
        cell=np.stack([x_idx, y_idx, z_idx], axis=1).astype(np.int64),
        probability=rest[:, 0],
        objectness=rest[:, 1],
        class_scores=rest[:, 2 : 2 + nb_class],
        params=rest[:, 2 + nb_class : 2 + nb_class + nb_param],
    )
    if obj_threshold is None and min_score is None and class_limit is None:
        return out
    keep = np.ones(len(out), dtype=bool)
    if obj_threshold is not None:
        thr = np.asarray(obj_threshold, dtype=np.float64)
        if thr.ndim == 1:
            if thr.shape[0] != nb_box:
                raise ValueError(f"per-prior obj_threshold needs {nb_box} values, got {thr.shape[0]}")
            thr = thr[out.prior]
        keep &= out.objectness >= thr
    pc = out.max_class_score
    if min_score is not None:
        keep &= out.objectness * pc >= min_score
    if class_limit is not None:
        keep &= pc > class_limit
    return out.take(keep)


def raw_to_decoded(
    pred: np.ndarray,
    in_dim: int | Sequence[int],
    grid: int | Sequence[int] | None,
    nb_box: int,
    nb_class: int,
    nb_param: int,
    priors: ArrayLike | None,
    *,
    fit_dim: int | None = None,
) -> np.ndarray:
    """Activated outputs -> CIANNA's ``raw_output=0`` file content (spec §2.3), same shape as ``pred``.

    Channels 0-2 become ``min_d`` and 3-5 ``max_d`` (unfloored priors); other channels are copied.
    """
    src = np.asarray(pred)
    a6, _g, cell = _split_channels(src, in_dim, grid, nb_box, nb_class, nb_param)
    mins, maxs = _corners_from_raw(a6, _prior_table(priors, nb_box, fit_dim, False), cell)
    out = np.array(a6, dtype=np.result_type(src.dtype, np.float32), copy=True)
    out[:, :, 0:3] = mins
    out[:, :, 3:6] = maxs
    return out.reshape(src.shape)


# --------------------------------------------------------------------------------------------------
# IoU family
# --------------------------------------------------------------------------------------------------


def _as_box6(boxes: ArrayLike) -> np.ndarray:
    """``[..., 6]`` float boxes; ``[..., 4]`` (xmin, ymin, xmax, ymax) get z extent [0, 1]."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape[-1] == 6:
        return b
    if b.shape[-1] == 4:
        zeros = np.zeros(b.shape[:-1] + (1,))
        return np.concatenate([b[..., :2], zeros, b[..., 2:], zeros + 1.0], axis=-1)
    raise ValueError(f"boxes must have 6 (or 4) coordinates on the last axis, got shape {b.shape}")


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
    A, T = _as_box6(a), _as_box6(b)
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
    A, T = _as_box6(a).reshape(-1, 6), _as_box6(b).reshape(-1, 6)
    return box_similarity(A[:, None, :], T[None, :, :], iou_type, ndim=ndim, plus_one=plus_one)


# --------------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------------


def _class_ids(classes: np.ndarray | Sequence[int] | None, m: int) -> np.ndarray:
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
    B = _as_box6(boxes).reshape(-1, 6)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != B.shape[0]:
        raise ValueError("boxes and scores differ in length")
    cls = _class_ids(classes, B.shape[0])
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
    B = _as_box6(boxes).reshape(-1, 6)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    img = np.asarray(image).reshape(-1)
    cls = _class_ids(classes, B.shape[0])
    out = []
    for u in np.unique(img):
        idx = np.nonzero(img == u)[0]
        out.append(idx[nms(B[idx], s[idx], cls[idx], **nms_kwargs)])  # type: ignore[arg-type]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Matching, AP, mAP, precision/recall
# --------------------------------------------------------------------------------------------------


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
    P = _as_box6(pred_boxes).reshape(-1, 6)
    G = _as_box6(gt_boxes).reshape(-1, 6)
    mp, mg = P.shape[0], G.shape[0]
    s = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
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
    mg = _as_box6(gt_boxes).reshape(-1, 6).shape[0]
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
    s = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    keep = s >= score_threshold
    P = _as_box6(pred_boxes).reshape(-1, 6)[keep]
    pc = _ids(pred_classes, s.shape[0])[keep]
    pi = _ids(pred_image, s.shape[0])[keep]
    mg = _as_box6(gt_boxes).reshape(-1, 6).shape[0]
    m = match_detections(
        P, s[keep], pc, pi, gt_boxes, gt_classes, gt_image,
        iou_threshold=iou_threshold, gt_difficult=gt_difficult, ndim=ndim, plus_one=plus_one,
    )
    diff = _difficult(gt_difficult, mg)
    tp, fp = int(np.sum(m.status == 1)), int(np.sum(m.status == 0))
    fn = int(np.sum(~diff)) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return PRResult(precision=precision, recall=recall, tp=tp, fp=fp, fn=fn)


# --------------------------------------------------------------------------------------------------
# Tiled inference
# --------------------------------------------------------------------------------------------------


def _per_axis(v: int | float | Sequence[int | float], n: int, name: str) -> list:
    if np.isscalar(v):
        return [v] * n
    t = list(v)  # type: ignore[arg-type]
    if len(t) != n:
        raise ValueError(f"{name} needs {n} values, got {len(t)}")
    return t


def _axis_origins(size: int, tile: int, overlap: int) -> np.ndarray:
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile (tile={tile}, overlap={overlap})")
    if size <= tile:
        return np.zeros(1, dtype=np.int64)
    last = size - tile
    o = np.arange(0, last, tile - overlap, dtype=np.int64)
    return np.append(o, last)  # last tile flush with the border


def tile_origins(
    image_shape: Sequence[int], tile: int | Sequence[int], overlap: int | Sequence[int]
) -> np.ndarray:
    """Origins ``[T, n]`` (array-axis order, e.g. (y, x) or (z, y, x)) of tiles covering ``image_shape``.

    Stride ``tile - overlap`` along each axis; the last tile is flush with the border (its overlap may be
    larger); an axis no longer than the tile gets one origin 0. Tiles are listed in C order (last axis
    fastest).
    """
    n = len(image_shape)
    tiles, ovs = _per_axis(tile, n, "tile"), _per_axis(overlap, n, "overlap")
    axes = [_axis_origins(int(s), int(t), int(o)) for s, t, o in zip(image_shape, tiles, ovs)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def _keep_bounds(
    origins: np.ndarray, image_shape: Sequence[int], tiles: Sequence[int], margin: object
) -> tuple[np.ndarray, np.ndarray]:
    """Per tile and axis, the [lo, hi) global range a box centre must fall in to be kept."""
    T, n = origins.shape
    lo = np.full((T, n), -np.inf)
    hi = np.full((T, n), np.inf)
    if margin is None:
        return lo, hi
    if isinstance(margin, str):
        if margin != "auto":
            raise ValueError("margin must be a number, a sequence, 'auto' or None")
        for d in range(n):  # boundaries in the middle of each overlap: an exact partition
            u = np.unique(origins[:, d])
            mids = 0.5 * (u[:-1] + tiles[d] + u[1:])
            k = np.searchsorted(u, origins[:, d])
            lo[:, d] = np.where(k > 0, np.concatenate([[-np.inf], mids])[k], -np.inf)
            hi[:, d] = np.where(k < u.size - 1, np.concatenate([mids, [np.inf]])[k], np.inf)
        return lo, hi
    ms = np.asarray(_per_axis(margin, n, "margin"), dtype=np.float64)  # type: ignore[arg-type]
    for d in range(n):
        o = origins[:, d].astype(np.float64)
        lo[:, d] = np.where(o > 0, o + ms[d], -np.inf)
        hi[:, d] = np.where(o + tiles[d] < image_shape[d], o + tiles[d] - ms[d], np.inf)
    return lo, hi


def predict_tiled(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int | Sequence[int],
    overlap: int | Sequence[int],
    *,
    nb_box: int,
    nb_class: int = 0,
    nb_param: int = 0,
    priors: ArrayLike | None = None,
    grid: int | Sequence[int] | None = None,
    fit_dim: int | None = None,
    floor_priors: bool = False,
    raw: bool = True,
    obj_threshold: float | Sequence[float] | None = None,
    min_score: float | None = None,
    class_limit: float | None = None,
    margin: float | Sequence[float] | str | None = None,
    same_class_threshold: float | None = None,
    diff_class_threshold: float = 1.0,
    iou_type: str = "DIoU",
    plus_one: bool = False,
    score: str = "obj*class",
    batch_size: int | None = None,
    pad_value: float = 0.0,
) -> DecodedBoxes:
    """Detect on an image larger than the network input by overlapping tiles.

    ``image``: ``[C, H, W]`` / ``[C, D, H, W]`` (or without the channel axis). ``tile``/``overlap``: int or
    per-axis in array order; the number of spatial dims is ``len(tile)`` (or ``image.ndim - 1`` for an int).
    ``predict_fn(tiles [T, C, (D,) H, W]) -> [T, F, G2, G1, G0]`` (or ``[T, F, G1, G0]``, or flat rows with
    ``grid``) of activated outputs (``raw=False``: decoded-file content in tile pixels). Tiles go through
    ``predict_fn`` ``batch_size`` at a time (default all); an image smaller than the tile is padded with
    ``pad_value``.

    Each tile is decoded with ``in_dim`` = tile size (decode keywords as :func:`decode`), shifted by its
    origin into image pixels; ``margin`` drops boxes whose centre lies within ``margin`` pixels of a tile side
    that is not on the image border (``"auto"``: boundaries in the middle of each overlap, so each point of
    the image belongs to exactly one tile); finally, unless ``same_class_threshold`` is ``None``, all boxes go
    through one :func:`nms` (``diff_class_threshold``, ``iou_type``, ``plus_one``, ranking ``score``).
    Returns the merged detections in score order (NMS) or tile order; ``image`` holds the tile index (tile
    ``i`` has origin ``tile_origins(...)[i]``) and ``cell`` the cell inside that tile.
    """
    img = np.asarray(image)
    n = len(tile) if not np.isscalar(tile) else img.ndim - 1  # type: ignore[arg-type]
    if n not in (1, 2, 3):
        raise ValueError("tiles must have 1, 2 or 3 spatial dims")
    if img.ndim == n:
        img = img[None]
    if img.ndim != n + 1:
        raise ValueError(f"image must be [C, *spatial] with {n} spatial dims, got shape {img.shape}")
    tiles = [int(t) for t in _per_axis(tile, n, "tile")]
    spatial = list(img.shape[1:])
    origins = tile_origins(spatial, tiles, overlap)
    padded = [max(s, t) for s, t in zip(spatial, tiles)]
    if padded != spatial:
        buf = np.full([img.shape[0]] + padded, pad_value, dtype=img.dtype)
        buf[(slice(None),) + tuple(slice(0, s) for s in spatial)] = img
        img = buf
    in_dim = tiles[::-1]  # x-first
    lo, hi = _keep_bounds(origins, spatial, tiles, margin)

    T = origins.shape[0]
    bs = T if not batch_size else int(batch_size)
    parts: list[DecodedBoxes] = []
    for start in range(0, T, bs):
        orig = origins[start : start + bs]
        batch = np.stack([
            img[(slice(None),) + tuple(slice(int(o), int(o) + t) for o, t in zip(org, tiles))] for org in orig
        ])
        pred = np.asarray(predict_fn(batch))
        det = decode(
            pred, in_dim, grid, nb_box, nb_class, nb_param, priors, raw=raw, fit_dim=fit_dim,
            floor_priors=floor_priors, obj_threshold=obj_threshold, min_score=min_score, class_limit=class_limit,
        )
        shift = np.zeros((orig.shape[0], 3))
        shift[:, :n] = orig[:, ::-1]  # array order -> x-first
        boxes = det.boxes + np.tile(shift, 2)[det.image]
        tile_idx = det.image + start
        ctr = 0.5 * (boxes[:, :n] + boxes[:, 3 : 3 + n])[:, ::-1]  # array order
        ok = np.all((ctr >= lo[tile_idx]) & (ctr < hi[tile_idx]), axis=1)
        det = DecodedBoxes(
            boxes=boxes, image=tile_idx, prior=det.prior, cell=det.cell, probability=det.probability,
            objectness=det.objectness, class_scores=det.class_scores, params=det.params,
        )
        parts.append(det.take(ok))
    merged = DecodedBoxes.concatenate(parts) if parts else DecodedBoxes.empty(nb_class, nb_param)
    if same_class_threshold is None or len(merged) == 0:
        return merged
    keep = nms(
        merged.boxes, merged.score(score), merged.class_id, same_class_threshold=same_class_threshold,
        diff_class_threshold=diff_class_threshold, iou_type=iou_type, ndim=n, plus_one=plus_one,
    )
    return merged.take(keep)
