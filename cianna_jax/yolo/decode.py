"""YOLO decoding: network outputs -> pixel boxes (the only place that does it).

Pure numpy.  Conventions follow CIANNA (spec ``cianna_yolo.md`` §2):

* Per box the ``K = 8 + C + P`` channels are 0-2 position in the cell, 3-5 log size
  ratio to the prior, 6 probability, 7 objectness, ``8..8+C-1`` classes, then ``P``
  parameters.
* Two layouts, chosen by the explicit ``layout`` keyword (never guessed from shapes):
  ``"cianna"`` (default) ``[N, F, G2, G1, G0]`` / ``[N, F, G1, G0]`` / flat rows
  ``[N, F*G]`` with ``F = B*K`` box-major, and ``"channels_last"``, the core's
  ``(N, [G2,] G1, G0, B, K)`` (see :mod:`cianna_jax.yolo.layout`).
* Boxes are corners ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in input pixels; ``in_dim``,
  ``grid`` and cells are x-first ``(x, y, z)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import layout as _layout
from .boxes import ArrayLike

__all__ = ["LAYOUTS", "DecodedBoxes", "decode", "raw_to_decoded", "decode_kwargs"]

LAYOUTS = ("cianna", "channels_last")


@dataclass(frozen=True)
class DecodedBoxes:
    """Detections as parallel numpy arrays (one row per box).

    ``boxes`` [M, 6] corners (xmin, ymin, zmin, xmax, ymax, zmax) in pixels; ``image`` [M]
    image (or tile) index; ``prior`` [M] box/prior index ``b``; ``cell`` [M, 3] grid cell
    (x, y, z); ``probability`` [M]; ``objectness`` [M]; ``class_scores`` [M, C];
    ``params`` [M, P].
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
        """Number of class scores ``C`` per box."""
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
        """Ranking score: ``"obj*class"`` (objectness x max class, the examples' NMS/mAP
        score), ``"objectness"`` or ``"probability"``."""
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
# Layout handling: everything is decoded channel-last, (N, G2, G1, G0, B, K)
# --------------------------------------------------------------------------------------------------


def _triple(v: int | Sequence[int], fill: int = 1) -> tuple[int, int, int]:
    """An int or 1..3 sequence as an x-first triple padded with ``fill``."""
    if np.isscalar(v):
        return (int(v), int(v), fill)  # type: ignore[arg-type]
    t = [int(x) for x in v]  # type: ignore[union-attr]
    if not 1 <= len(t) <= 3:
        raise ValueError(f"expected 1 to 3 values, got {v!r}")
    return tuple(t + [fill] * (3 - len(t)))  # type: ignore[return-value]


def _cianna_view(pred: np.ndarray, F: int, grid: int | Sequence[int] | None) -> np.ndarray:
    """CIANNA predictions (4-D, 5-D, flat rows or one flat image) as ``[N, F, G2, G1, G0]``."""
    a = np.asarray(pred)
    if a.ndim in (4, 5):
        if a.ndim == 4:
            a = a[:, :, None]
        inferred = (a.shape[4], a.shape[3], a.shape[2])
        if grid is not None and tuple(_triple(grid)) != inferred:
            raise ValueError(f"grid {grid!r} does not match prediction shape {np.shape(pred)}")
    elif a.ndim in (1, 2):
        if grid is None:
            raise ValueError("grid is required for flat prediction rows")
        g = _triple(grid)
        a = a.reshape(-1, F, g[2], g[1], g[0]) if a.size else np.zeros((0, F, g[2], g[1], g[0]), a.dtype)
    else:
        raise ValueError(f"predictions must be 1-D, 2-D, 4-D or 5-D, got shape {a.shape}")
    if a.shape[1] != F:
        raise ValueError(f"prediction has {a.shape[1]} filters, expected B*(8+C+P) = {F}")
    return a


def _channels_last_view(pred: np.ndarray, nb_box: int, K: int, grid: int | Sequence[int] | None) -> np.ndarray:
    """Channel-last predictions ``(N, [G2,] G1, G0, B, K)`` as ``(N, G2, G1, G0, B, K)``."""
    a = np.asarray(pred)
    if a.ndim == 5:
        a = a[:, None]
    if a.ndim != 6:
        raise ValueError(f"channels_last predictions must be (N, [G2,] G1, G0, B, K), got shape {a.shape}")
    if a.shape[4:] != (nb_box, K):
        raise ValueError(f"prediction ends with (B, K) = {a.shape[4:]}, expected ({nb_box}, {K}) = (B, 8+C+P)")
    if grid is not None and tuple(_triple(grid)) != (a.shape[3], a.shape[2], a.shape[1]):
        raise ValueError(f"grid {grid!r} does not match prediction shape {np.shape(pred)}")
    return a


def _channels_last(
    pred: np.ndarray, layout: str, grid: int | Sequence[int] | None, nb_box: int, K: int
) -> np.ndarray:
    """``pred`` in ``layout`` as a numpy ``(N, G2, G1, G0, B, K)`` array."""
    if layout == "cianna":
        return _layout.from_cianna(_cianna_view(pred, nb_box * K, grid), nb_box, nd=3)
    if layout == "channels_last":
        return _channels_last_view(pred, nb_box, K, grid)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _cell_size(in_dim: int | Sequence[int], y6: np.ndarray) -> np.ndarray:
    """Cell size in pixels (x, y, z): ``in_dim // grid`` (integer division, set_yolo_activ)."""
    g = (y6.shape[3], y6.shape[2], y6.shape[1])
    dims = list(_triple(in_dim))
    if np.isscalar(in_dim) and g[2] > 1:
        dims[2] = int(in_dim)  # type: ignore[arg-type]
    return np.array([dims[d] // g[d] for d in range(3)], dtype=np.float64)


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


def _corners(y6: np.ndarray, priors: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mins and maxes ``(N, G2, G1, G0, B, 3)`` from activated ``(N, G2, G1, G0, B, K)``.

    ``centre_d = (g_d + o_pos,d) * cell_d``, ``extent_d = prior_d * exp(o_size,d)``.
    """
    _, G2, G1, G0, _, _ = y6.shape
    gz, gy, gx = np.meshgrid(np.arange(G2), np.arange(G1), np.arange(G0), indexing="ij")
    g = np.stack([gx, gy, gz], axis=-1)[None, :, :, :, None, :].astype(np.float64)  # (1, G2, G1, G0, 1, 3)
    ctr = (g + y6[..., 0:3].astype(np.float64)) * cell
    half = 0.5 * priors * np.exp(y6[..., 3:6].astype(np.float64))
    return ctr - half, ctr + half


# --------------------------------------------------------------------------------------------------
# Public decoding
# --------------------------------------------------------------------------------------------------


def decode(
    pred: np.ndarray,
    in_dim: int | Sequence[int],
    grid: int | Sequence[int] | None,
    nb_box: int,
    nb_class: int,
    nb_param: int,
    priors: ArrayLike | None,
    *,
    layout: str = "cianna",
    raw: bool = True,
    fit_dim: int | None = None,
    floor_priors: bool = False,
    obj_threshold: float | Sequence[float] | None = None,
    min_score: float | None = None,
    class_limit: float | None = None,
) -> DecodedBoxes:
    """Decode YOLO predictions of one or many images into pixel boxes.

    ``pred``: with ``layout="cianna"`` (default) ``[N, F, G2, G1, G0]``, ``[N, F, G1, G0]``
    (2D), flat rows ``[N, F*G]`` or one flat image ``[F*G]``; with
    ``layout="channels_last"`` the core's ``(N, [G2,] G1, G0, B, K)``.  ``in_dim``: network
    input size (x, y[, z]) (an int means square 2D); ``grid``: (G0, G1[, G2]) (``None``:
    taken from a non-flat ``pred``, else checked against it).  ``priors``: CIANNA's
    ``prior_size`` layout ``(n_dim, B)`` (rows widths, heights, depths); dims
    ``>= fit_dim`` (default ``n_dim``) get prior 0.

    ``raw=True``: ``pred`` holds activated outputs (``raw_output=1`` files, or the
    network's output); ``centre_d = (g_d + o_pos,d) * (in_dim_d // G_d)``,
    ``extent_d = prior_d * exp(o_size,d)``, corners ``centre -/+ extent/2``.  The prior is
    *not* floored at 1 pixel unless ``floor_priors=True`` (the file writer uses the
    unfloored prior, the loss the floored one).  ``raw=False``: ``pred`` is a decoded
    (``raw_output=0``) file whose channels 0-2 / 3-5 already hold the mins / maxes.

    Optional filtering, as the examples' ``box_extraction``: keep
    ``objectness >= obj_threshold`` (scalar or one value per prior),
    ``objectness * max_class >= min_score`` and ``max_class > class_limit`` (max class is
    1 when C = 0).  Rows are ordered by image, then cell (z, y, x; x fastest), then prior,
    whatever the layout.
    """
    K = 8 + nb_class + nb_param
    y6 = _channels_last(pred, layout, grid, nb_box, K)
    N, G2, G1, G0, B, _ = y6.shape
    if raw:
        mins, maxs = _corners(y6, _prior_table(priors, nb_box, fit_dim, floor_priors), _cell_size(in_dim, y6))
    else:
        mins, maxs = y6[..., 0:3], y6[..., 3:6]
    corners = np.concatenate([mins, maxs], axis=-1).reshape(-1, 6)  # rows ordered (n, z, y, x, b)
    rest = y6[..., 6:].reshape(-1, K - 6)
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
    layout: str = "cianna",
    fit_dim: int | None = None,
) -> np.ndarray:
    """Activated outputs -> CIANNA's ``raw_output=0`` file content (spec §2.3).

    Same shape and ``layout`` as ``pred`` (see :func:`decode`), dtype at least float32:
    channels 0-2 become ``min_d`` and 3-5 ``max_d`` in pixels (unfloored priors); the
    other channels are copied.
    """
    src = np.asarray(pred)
    K = 8 + nb_class + nb_param
    y6 = _channels_last(src, layout, grid, nb_box, K)
    mins, maxs = _corners(y6, _prior_table(priors, nb_box, fit_dim, False), _cell_size(in_dim, y6))
    out = np.array(y6, dtype=np.result_type(src.dtype, np.float32), copy=True)
    out[..., 0:3] = mins
    out[..., 3:6] = maxs
    if layout == "cianna":
        out = _layout.to_cianna(out)
    return out.reshape(src.shape)


def decode_kwargs(cfg: Any) -> dict[str, Any]:
    """The geometry keywords of :func:`decode` / :func:`raw_to_decoded` for a
    :class:`~cianna_jax.yolo.config.YoloConfig`: ``in_dim``, ``grid``, ``nb_box``,
    ``nb_class``, ``nb_param`` and ``priors`` (``cfg.prior_size``, per box (w, h, d)
    with dims ``>= fit_dim`` already 0, turned into CIANNA's ``(3, B)`` layout)."""
    priors = np.asarray(cfg.prior_size, np.float64).reshape(cfg.nb_box, 3).T
    return dict(in_dim=tuple(cfg.in_dim), grid=tuple(cfg.grid), nb_box=int(cfg.nb_box),
                nb_class=int(cfg.nb_class), nb_param=int(cfg.nb_param), priors=priors)
