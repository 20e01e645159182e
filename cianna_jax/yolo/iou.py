"""CIANNA's IoU family on 3D corner boxes (cianna_yolo.md section 4.3, GPU semantics).

Boxes are ``(..., 6)`` corners ``(xmin, ymin, zmin, xmax, ymax, zmax)``.  Volumes use a
float absolute value (the CPU build's integer truncation is not reproduced).  "DIoU"
subtracts the *unsquared* ratio centre distance / enclosing diagonal, "DIoU2" the
squared one.  A zero-volume union gives NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["iou", "iou_corners", "IOU_KINDS"]

IOU_KINDS = ("IoU", "GIoU", "DIoU", "DIoU2")


def iou(a: jax.Array, b: jax.Array, kind: str = "GIoU") -> jax.Array:
    """IoU of kind ``"IoU"``, ``"GIoU"``, ``"DIoU"`` or ``"DIoU2"`` of ``a`` against ``b``.

    Broadcasts over leading dims; returns ``a.shape[:-1]`` broadcast with ``b.shape[:-1]``.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, received {kind!r}")
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if a.shape[-1] != 6 or b.shape[-1] != 6:
        raise ValueError(f"boxes must have 6 corners in the last dim, received "
                         f"{a.shape} and {b.shape}")
    return iou_corners([a[..., i] for i in range(6)], [b[..., i] for i in range(6)], kind)


def iou_corners(a, b, kind: str = "GIoU") -> jax.Array:
    """:func:`iou` on boxes given as 6 separate (broadcastable) corner arrays each.

    Faster than the ``(..., 6)`` form on large broadcast tables.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, received {kind!r}")
    inter = vol_a = vol_b = diag2 = dist2 = None
    enc_vol = None
    for d in range(3):
        lo_a, hi_a, lo_b, hi_b = a[d], a[d + 3], b[d], b[d + 3]
        side = jnp.maximum(0.0, jnp.minimum(hi_a, hi_b) - jnp.maximum(lo_a, lo_b))
        ext_a = jnp.abs(hi_a - lo_a)
        ext_b = jnp.abs(hi_b - lo_b)
        enc = jnp.maximum(hi_a, hi_b) - jnp.minimum(lo_a, lo_b)
        gap = 0.5 * (lo_a + hi_a) - 0.5 * (lo_b + hi_b)
        if d == 0:
            inter, vol_a, vol_b, enc_vol = side, ext_a, ext_b, enc
            diag2, dist2 = enc * enc, gap * gap
        else:
            inter, vol_a, vol_b, enc_vol = inter * side, vol_a * ext_a, vol_b * ext_b, enc_vol * enc
            diag2, dist2 = diag2 + enc * enc, dist2 + gap * gap
    union = vol_a + vol_b - inter
    ratio = inter / union
    if kind == "IoU":
        return ratio
    if kind == "GIoU":
        return ratio - (enc_vol - union) / enc_vol
    if kind == "DIoU":
        return ratio - _sqrt0(dist2) / jnp.sqrt(diag2)
    return ratio - dist2 / diag2


def _sqrt0(x):
    """``sqrt(x)`` for ``x >= 0`` whose derivative is finite (0) at 0, not inf.

    Same values as ``jnp.sqrt``; keeps autodiff gradients finite when a predicted box
    and a target share their centre (``inf * 0`` would be NaN).
    """
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)
