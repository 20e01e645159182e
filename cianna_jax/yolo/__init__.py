"""CIANNA's YOLO detector in JAX: configuration, IoU family, activation and loss.

Typical use (``cfg`` is a hashable, jit-static :class:`YoloConfig`)::

    from cianna_jax import yolo
    cfg = yolo.make_config([416, 416], [13, 13], nb_box=5, nb_class=20,
                           max_nb_obj_per_image=56, prior_size=priors, IoU_type="DIoU")
    # raw: (N, [G2,] G1, G0, boxes, values), the core's channel-last layout
    per_image = yolo.yolo_loss(raw, targets, cfg, nb_im_iter=epoch * train_size, key=key)
    grads = jax.grad(lambda r: yolo.yolo_loss(r, targets, cfg, ...).sum())(raw)
    raw = yolo.layout.from_cianna(cianna_raw, cfg.nb_box)   # from CIANNA's [N, F, G2, G1, G0]

Modules: ``config`` (settings), ``rules`` (the one YOLO rule set, shared with the Pallas
kernel), ``loss`` (reference loss and kernel dispatch), ``activation``, ``layout``,
``decode``, ``boxes``, ``metrics``, ``tiling`` (``postprocess`` re-exports the last four).

See ``cianna_yolo.md`` for the behaviour reproduced (GPU semantics of CIANNA V-1.0).
"""

from . import boxes, decode, layout, metrics, postprocess, rules, tiling
from .activation import activation
from .config import (
    YoloConfig,
    check_targets,
    make_config,
    set_error_scales,
    set_fit_parts,
    set_IoU_limits,
    set_slopes_and_maxes,
    set_sm_single,
    summary,
)
from .iou import iou, iou_corners
from .loss import (
    DisplayStats,
    YoloTerms,
    delta_and_display,
    display_stats,
    random_can_fire,
    resolve_kernel,
    stats_from_display,
    yolo_loss,
    yolo_terms,
)

__all__ = [
    "boxes",
    "decode",
    "layout",
    "metrics",
    "postprocess",
    "rules",
    "tiling",
    "YoloConfig",
    "make_config",
    "set_fit_parts",
    "set_error_scales",
    "set_IoU_limits",
    "set_sm_single",
    "set_slopes_and_maxes",
    "summary",
    "check_targets",
    "iou",
    "iou_corners",
    "activation",
    "YoloTerms",
    "DisplayStats",
    "yolo_terms",
    "delta_and_display",
    "display_stats",
    "stats_from_display",
    "yolo_loss",
    "random_can_fire",
    "resolve_kernel",
]
