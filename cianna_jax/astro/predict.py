"""Streamed tiled detection over an image of any size, with bounded memory.

Tiles are cut from the memory-mapped image a batch at a time, normalised with the
model card's settings (the local noise map for ``"snr"``), run through the network
(one compiled shape: the last batch is padded; an image of fewer tiles than the card's
batch runs in a batch of the next power of two, :func:`batch_for`) and decoded with the tile-merging
rules of :mod:`cianna_jax.yolo.tiling` (boxes kept by the tile that owns their centre,
then one NMS).  Only one batch of tiles is in memory at a time, plus the detections.
NaN pixels are replaced by the empty value (0 in the image unit) before normalising.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_int
from ..progress import Progress
from ..yolo.boxes import nms
from ..yolo.decode import DecodedBoxes, decode_kwargs
from ..yolo.tiling import decode_tile_batch, tile_keep_bounds, tile_origins
from .model_card import LoadedModel, ModelCard, Normalisation
from .noise import NoiseMap
from .probability_calibration import tempered

__all__ = ["Detections", "network_fn", "make_predict_fn", "normalise_window", "iter_tile_batches",
           "batch_for", "checked_threshold", "detect"]


@dataclass(frozen=True)
class Detections:
    """Detector output over a whole image: ``boxes`` in image pixels (pixel ``i`` spans
    ``[i, i + 1)``, x first), in decreasing score order; run statistics; ``raw``: with
    ``keep_raw``, every tile's boxes before the overlap merging (``image``: the tile's
    index), for a later run that recomputes a few tiles only."""

    boxes: DecodedBoxes
    n_tiles: int
    seconds: float
    obj_threshold: float | tuple[float, ...]
    raw: DecodedBoxes | None = None

    @property
    def tiles_per_second(self) -> float:
        return self.n_tiles / self.seconds if self.seconds > 0 else float("nan")


@functools.lru_cache(maxsize=8)
def network_fn(net: Any, nd: int = 2, mixed_precision: str = "off",
               mesh: Any = None) -> Callable[[Any, np.ndarray], object]:
    """A jitted ``(params, tiles [N, (D,) H, W]) -> activated YOLO output (N, [G2,] G1, G0,
    B, K)`` (float32) for ``net`` under CIANNA's ``mixed_precision`` mode; the parameters
    are an argument, so new weights (a training run's epochs, a resume in the same
    process) reuse the compiled program.  With a ``mesh`` (:mod:`cianna_jax.parallel`)
    each device runs its rows of the tiles as its own program (``jax.shard_map``; ``N`` a
    multiple of its devices, the parameters replicated)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    from ..network import apply
    from ..parallel import AXIS
    from ..yolo import layout as yolo_layout

    cfg = net.yolo

    def run(params, tiles):
        out = apply(net, params, tiles[..., None], mixed_precision=mixed_precision)
        if out.ndim == 2:  # CIANNA rows -> the core's channel-last YOLO layout
            out = yolo_layout.from_cianna_rows(out, cfg.grid, cfg.nb_box, nd=nd)
        return out.astype(jnp.float32)

    if mesh is None:
        return jax.jit(run)
    return jax.jit(jax.shard_map(run, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS),
                                 check_vma=False))


def _per_device(fn: Callable, params: Any, mesh: Any) -> Callable[[np.ndarray], object]:
    """``tiles -> fn(params, tiles)`` for :func:`network_fn`'s per-device program: the
    tiles padded with zero tiles to a multiple of the devices and split over them, the
    padding's rows cut off again."""
    from .. import parallel
    from ..training import pad_batch

    d = parallel.nb_devices(mesh)

    def call(tiles):
        n = tiles.shape[0]
        out = fn(params, parallel.shard_batch(pad_batch(tiles, -(-n // d) * d), mesh))
        return out if out.shape[0] == n else out[:n]

    return call


def make_predict_fn(model: LoadedModel,
                    mixed_precision: str = "off") -> Callable[[np.ndarray], object]:
    """A jitted ``tiles [N, (D,) H, W] -> activated YOLO output (N, [G2,] G1, G0, B, K)``
    (returned as a JAX array, asynchronously); one per model and ``mixed_precision`` mode
    (kept in ``model.cache``).  A reduced-precision mode ("TF32C_FP32A", "BF16C_FP32A",
    "FP16C_FP32A", as CIANNA's prediction scripts set) is faster on CPU (Winograd
    F(4x4, 3x3) for the wide 3x3 layers) for outputs that differ at 1e-3 or less
    (16-bit activations) or 1e-5 (TF32, on CPU only the tile).

    Where the process has several CPU devices (:func:`cianna_jax.parallel.cpu_mesh`,
    ``cianna-jax predict --cpu-devices``) each device runs its rows of every batch as its
    own program.  On the 2-core cloud machine of the benchmarks, `training.predict` so ran
    SDC1 inference x1.15-1.20 while the host kept the cores far apart and x0.88-0.98
    while they were close; the SDC1 detector here (`benchmarks/predict_scale.py
    throughput`, tile 256, batch 8) x0.94 close (medians), and even in the one far run
    measured (benchmarks/README.md, fifty-ninth session).  The same detections, to float
    rounding."""
    from .. import parallel
    from ..network import inference_params
    from ..precision import get_policy

    name = get_policy(mixed_precision).name  # an unknown mode: ValueError before any work
    mesh = parallel.cpu_mesh()
    key = f"predict_fn {name}" + ("" if mesh is None else f" {parallel.nb_devices(mesh)} cpus")
    if key in model.cache:
        return model.cache[key]
    fn = network_fn(model.net, 3 if model.card.ndim == 3 else 2, name, mesh)
    params = inference_params(model.net, model.params, name)  # laid out once for all tiles
    if mesh is None:
        model.cache[key] = lambda tiles: fn(params, tiles)
    else:
        model.cache[key] = _per_device(fn, parallel.replicate(params, mesh), mesh)
    return model.cache[key]


def normalise_window(raw: np.ndarray, win: tuple[slice, ...], norm: Normalisation,
                     noise: NoiseMap | None) -> np.ndarray:
    """Network input (float32) for the pixels ``raw`` of the window ``win`` (slices of the
    image, ``(y, x)`` or ``(z, y, x)``): NaN pixels take the normalised empty value (0 in
    the image unit); the ``"snr"`` normalisation divides by ``noise`` on the window.  The
    one rule shared by detection and training, so both see the same inputs."""
    bad = ~np.isfinite(raw)
    if bad.any():
        raw = np.where(bad, np.float32(0.0), raw)
    rms = None
    if norm.uses_local_noise:
        if noise is None:
            raise ValueError("this model normalises by the local noise: give a noise map")
        # a cube's map has one plane per channel: the window's only
        rms = noise.window(win[-2], win[-1], zs=win[0] if len(win) == 3 else None)
    val = norm.apply(raw, rms)
    if bad.any():
        val[bad] = norm.apply(np.zeros(1), 1.0)[0]
    return val


def iter_tile_batches(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, ...],
    origins: np.ndarray,
    tile: tuple[int, ...],
    card: ModelCard,
    noise: NoiseMap | None,
    batch_size: int,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(first tile index, number of real tiles, batch [batch_size, *tile] float32)``.

    ``read(window)`` gives image pixels (NaN for blanks).  Each batch is a new array (the
    previous one may still be in use by an asynchronous computation); padding tiles and
    pixels beyond the image hold the normalised empty value.
    """
    norm = card.normalisation
    empty = float(norm.apply(np.zeros(1), 1.0)[0])
    n = len(tile)
    for start in range(0, origins.shape[0], batch_size):
        orig = origins[start:start + batch_size]
        batch = np.full((batch_size,) + tuple(tile), empty, np.float32)
        for k, o in enumerate(orig):
            win = tuple(slice(int(a), min(int(a) + t, s)) for a, t, s in zip(o, tile, shape[-n:]))
            val = normalise_window(read(win), win, norm, noise)
            batch[(k,) + tuple(slice(0, w.stop - w.start) for w in win)] = val
        yield start, orig.shape[0], batch


def batch_for(n_tiles: int, batch_size: int) -> int:
    """The batch an image of ``n_tiles`` tiles runs in: ``batch_size``, or for fewer tiles
    the next power of two (at most ``batch_size``).  A training run's validation strip of
    6 SDC1 tiles padded to a batch of 64 spent 90% of its 4 s on padding; powers of two
    bound the compiled programs at one per size class (a handful) and the padding at
    half the batch."""
    if n_tiles >= batch_size:
        return batch_size
    return min(batch_size, 1 << max(0, int(n_tiles) - 1).bit_length())


def checked_threshold(thr, nb_box: int):
    """``thr`` if it is one objectness threshold in [0, 1] or one per prior (box), else a
    ValueError naming it, before any work."""
    try:
        a = np.asarray(thr, np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim > 1 or a.size == 0 or not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"obj_threshold: expected a number in [0, 1] (or one per prior), "
                         f"received {thr!r}")
    if a.ndim == 1 and a.size != nb_box:
        raise ValueError(f"obj_threshold: one value or one per prior ({nb_box}), received "
                         f"{a.size} values")
    return float(a) if a.ndim == 0 else tuple(float(v) for v in a)


def detect(
    image_read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, ...],
    model: LoadedModel,
    *,
    noise: NoiseMap | None = None,
    obj_threshold: float | tuple[float, ...] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    predict_fn: Callable[[np.ndarray], object] | None = None,
    tiles: np.ndarray | None = None,
    reuse: DecodedBoxes | None = None,
    keep_raw: bool = False,
) -> Detections:
    """Run the detector of ``model`` over an image ``(H, W)`` or cube ``(D, H, W)``.

    ``image_read(window)`` returns pixels (e.g. ``FitsImage.read``); ``noise`` is the local
    noise map (needed by the ``"snr"`` normalisation without a fixed rms).  Thresholds and
    tiling come from the model card (``obj_threshold``/``batch_size`` override them); an
    image of fewer tiles than the batch runs in a smaller one (:func:`batch_for`).
    Progress (tiles, rate, ETA) goes to stderr when ``progress``.  ``tiles`` (indices into
    the card's tiling) runs those tiles only and takes the others' boxes from ``reuse``
    (``raw`` of an earlier run of the same image with ``keep_raw``, where only pixels of
    ``tiles`` changed): the boxes of a whole run, for the work of a few tiles.
    """
    card = model.card
    n = card.ndim
    if len(shape) != n:
        raise ValueError(f"the model detects in {n}D tiles but the data is {len(shape)}D "
                         f"(shape {tuple(shape)})")
    tile = tuple(card.tile)
    thr = card.obj_threshold if obj_threshold is None else checked_threshold(
        obj_threshold, int(model.net.yolo.nb_box))
    bs = card.batch_size if batch_size is None else as_int(batch_size, "batch_size", minimum=1)
    origins = tile_origins(shape, tile, card.overlap)
    lo, hi = tile_keep_bounds(origins, shape, tile, "auto")
    if tiles is not None:  # a few tiles, the rest from an earlier run
        if reuse is None:
            raise ValueError("tiles: the other tiles' boxes come from reuse= (an earlier "
                             "run's raw boxes, keep_raw=True)")
        run = np.asarray(tiles, np.int64)
        if run.size and (run.min() < 0 or run.max() >= origins.shape[0]):
            raise ValueError(f"tiles: indices into the {origins.shape[0]} tiles of this image")
        origins, lo, hi = origins[run], lo[run], hi[run]
    else:
        run = None
    bs = batch_for(max(origins.shape[0], 1), bs)
    fn = predict_fn or make_predict_fn(model)
    kw = decode_kwargs(model.net.yolo)
    kw.pop("in_dim")
    fit_dim = int(model.net.yolo.fit_dim) or None
    parts: list[DecodedBoxes] = []
    t0 = time.perf_counter()
    pending = None

    def finish(item) -> None:
        start, count, out = item
        pred = np.asarray(out)[:count]
        parts.append(decode_tile_batch(
            pred, origins[start:start + count], lo[start:start + count], hi[start:start + count],
            tile, first_tile=start, layout="channels_last", fit_dim=fit_dim,
            obj_threshold=thr, **kw))
        bar.update(count)

    with Progress(origins.shape[0], "detecting", enabled=progress) as bar:
        for start, count, batch in iter_tile_batches(image_read, shape, origins, tile, card,
                                                     noise, bs):
            out = fn(batch)  # asynchronous: the next batch is read while this one runs
            if pending is not None:
                finish(pending)
            pending = (start, count, out)
            if hasattr(out, "copy_to_host_async"):
                out.copy_to_host_async()
        if pending is not None:
            finish(pending)
    nc, npar = model.net.yolo.nb_class, model.net.yolo.nb_param
    if run is not None:  # the tiles' own indices, and the other tiles' earlier boxes
        parts = [replace(p, image=run[p.image]) for p in parts]
        parts.append(reuse.take(~np.isin(reuse.image, run)))
    merged = DecodedBoxes.concatenate(parts) if parts else DecodedBoxes.empty(nc, npar)
    raw = merged if keep_raw else None
    if len(merged):
        # one source, one class: boxes of a classifying detector suppress each other
        # whatever classes they were given (CIANNA's examples keep boxes of different
        # classes apart, for objects that overlap in photographs)
        keep = nms(merged.boxes, merged.score(card.score), merged.class_id,
                   same_class_threshold=card.nms_threshold,
                   diff_class_threshold=card.nms_threshold, iou_type=card.iou_type, ndim=n)
        merged = merged.take(keep)
    if merged.nb_class and card.class_temperature != 1.0:  # calibrated class probabilities
        merged = replace(merged, class_scores=tempered(
            merged.class_scores, card.class_temperature).astype(merged.class_scores.dtype))
    return Detections(boxes=merged, n_tiles=int(origins.shape[0]),
                      seconds=time.perf_counter() - t0, obj_threshold=thr, raw=raw)
