"""Tiled inference: detect on an image larger than the network input.

Pure numpy around a user ``predict_fn``; tiles are decoded with
:func:`cianna_jax.yolo.decode.decode`, shifted into image pixels, trimmed at the tile
margins and merged by one :func:`cianna_jax.yolo.boxes.nms`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .boxes import ArrayLike, nms
from .decode import DecodedBoxes, decode

__all__ = ["tile_origins", "tile_keep_bounds", "tiles_touching", "decode_tile_batch",
           "predict_tiled"]


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


def tiles_touching(origins: np.ndarray, tile: int | Sequence[int], lo: np.ndarray,
                   hi: np.ndarray) -> np.ndarray:
    """Indices (sorted) of the tiles of a grid of ``origins`` ``[T, n]`` (as
    :func:`tile_origins` gives them) of size ``tile`` that hold any pixel of the boxes from
    ``lo`` to ``hi`` ``[m, n]`` (inclusive pixel indices, array order): the tiles whose
    output a change of those pixels can change."""
    origins = np.asarray(origins)
    T, n = origins.shape
    ts = _per_axis(tile, n, "tile")
    axes = [np.unique(origins[:, d]) for d in range(n)]
    grid = np.zeros(tuple(a.size for a in axes), bool)
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    for a, b in zip(lo, hi):
        sl = tuple(slice(int(np.searchsorted(u, a[d] - int(ts[d]) + 1, "left")),
                         int(np.searchsorted(u, b[d], "right"))) for d, u in enumerate(axes))
        grid[sl] = True
    index = np.stack([np.searchsorted(u, origins[:, d]) for d, u in enumerate(axes)])
    return np.flatnonzero(grid[tuple(index)])


def tile_keep_bounds(
    origins: np.ndarray, image_shape: Sequence[int], tiles: Sequence[int], margin: object
) -> tuple[np.ndarray, np.ndarray]:
    """Per tile and axis (array order), the ``[lo, hi)`` image range a box centre must fall in
    to be kept (``margin`` as in :func:`predict_tiled`; ``None``: no limit)."""
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


def decode_tile_batch(
    pred: np.ndarray,
    origins: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    tiles: Sequence[int],
    *,
    first_tile: int = 0,
    **decode_kw: object,
) -> DecodedBoxes:
    """Decode the predictions of one batch of tiles into image pixels.

    ``origins`` ``[T, n]`` (array order) of the batch's tiles, ``lo``/``hi`` their keep ranges
    (:func:`tile_keep_bounds`), ``tiles`` the tile size per axis; ``decode_kw`` go to :func:`decode`
    (``in_dim`` is the tile size).  Boxes are shifted by their tile's origin, those whose centre lies
    outside the tile's keep range are dropped, and ``image`` holds ``first_tile`` + the index in the batch.
    """
    n = origins.shape[1]
    det = decode(pred, tuple(int(t) for t in tiles[::-1]), **decode_kw)  # type: ignore[arg-type]
    shift = np.zeros((origins.shape[0], 3))
    shift[:, :n] = origins[:, ::-1]  # array order -> x-first
    boxes = det.boxes + np.tile(shift, 2)[det.image]
    ctr = 0.5 * (boxes[:, :n] + boxes[:, 3 : 3 + n])[:, ::-1]  # array order
    ok = np.all((ctr >= lo[det.image]) & (ctr < hi[det.image]), axis=1)
    det = DecodedBoxes(
        boxes=boxes, image=det.image + int(first_tile), prior=det.prior, cell=det.cell,
        probability=det.probability, objectness=det.objectness, class_scores=det.class_scores,
        params=det.params,
    )
    return det.take(ok)


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
    layout: str = "cianna",
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
    ``grid``; with ``layout="channels_last"`` the core's ``(T, [G2,] G1, G0, B, K)``) of activated outputs
    (``raw=False``: decoded-file content in tile pixels). Tiles go through
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
    lo, hi = tile_keep_bounds(origins, spatial, tiles, margin)

    T = origins.shape[0]
    bs = T if not batch_size else int(batch_size)
    parts: list[DecodedBoxes] = []
    for start in range(0, T, bs):
        orig = origins[start : start + bs]
        batch = np.stack([
            img[(slice(None),) + tuple(slice(int(o), int(o) + t) for o, t in zip(org, tiles))] for org in orig
        ])
        parts.append(decode_tile_batch(
            np.asarray(predict_fn(batch)), orig, lo[start : start + bs], hi[start : start + bs], tiles,
            first_tile=start, nb_box=nb_box, nb_class=nb_class, nb_param=nb_param, priors=priors, grid=grid,
            layout=layout, fit_dim=fit_dim, floor_priors=floor_priors, raw=raw, obj_threshold=obj_threshold,
            min_score=min_score, class_limit=class_limit,
        ))
    merged = DecodedBoxes.concatenate(parts) if parts else DecodedBoxes.empty(nb_class, nb_param)
    if same_class_threshold is None or len(merged) == 0:
        return merged
    keep = nms(
        merged.boxes, merged.score(score), merged.class_id, same_class_threshold=same_class_threshold,
        diff_class_threshold=diff_class_threshold, iou_type=iou_type, ndim=n, plus_one=plus_one,
    )
    return merged.take(keep)
