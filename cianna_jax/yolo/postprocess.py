"""YOLO post-processing namespace: decoding, NMS, PASCAL/COCO-style mAP, tiled inference.

Pure numpy (no JAX, no GPU needed).  The code lives in one module per concept; this
module re-exports their public names so that ``yolo.postprocess.decode``,
``...nms``, ``...predict_tiled`` etc. keep working:

* :mod:`cianna_jax.yolo.decode` -- network outputs (CIANNA or channel-last layout) ->
  pixel boxes: :class:`DecodedBoxes`, :func:`decode`, :func:`raw_to_decoded`.
* :mod:`cianna_jax.yolo.boxes` -- IoU family and NMS: :func:`box_similarity`,
  :func:`pairwise_similarity`, :func:`nms`, :func:`batched_nms`.
* :mod:`cianna_jax.yolo.metrics` -- matching, AP, mAP, precision-recall.
* :mod:`cianna_jax.yolo.tiling` -- :func:`tile_origins`, :func:`predict_tiled`.
"""

from __future__ import annotations

from .boxes import IOU_TYPES, ArrayLike, batched_nms, box_similarity, nms, pairwise_similarity
from .decode import LAYOUTS, DecodedBoxes, decode, decode_kwargs, raw_to_decoded
from .metrics import (
    APResult,
    CocoMAPResult,
    MatchResult,
    PRResult,
    average_precision,
    coco_map,
    match_detections,
    precision_recall,
)
from .tiling import predict_tiled, tile_origins

__all__ = [
    "IOU_TYPES",
    "LAYOUTS",
    "ArrayLike",
    "DecodedBoxes",
    "APResult",
    "CocoMAPResult",
    "PRResult",
    "MatchResult",
    "decode",
    "decode_kwargs",
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
