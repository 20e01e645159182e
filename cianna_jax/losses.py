"""Output losses with CIANNA's deltas (cianna_layers.md section 2.3).

``output_loss`` returns the per-example *displayed* loss (sum over output
elements of ``1/2 (y - t)**2``, or ``-t ln(max(y, 1e-6))`` for SMAX) and carries a
custom VJP whose gradient with respect to the last layer's pre-activation ``z``
is exactly CIANNA's output delta: ``S (y - t)`` times the activation multiplier
(RELU/LOGI), or ``S (y - t)`` for LIN and SMAX, zero on padding rows.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .activations import Activation, activate, derivative_multiplier, softmax_rows

__all__ = ["output_activation", "output_loss", "elementwise_loss", "CE_CLAMP"]

CE_CLAMP = 1e-6


def output_activation(act: Activation, z: jax.Array, *, exact: bool = False) -> jax.Array:
    """Activated output rows ``(B, out_dim)`` from pre-activation rows."""
    if act.kind == "SMAX":
        return softmax_rows(z)
    if act.kind == "YOLO":
        raise NotImplementedError(
            "YOLO outputs use the loss of cianna_jax.yolo, not the generic output loss")
    return activate(act, z, exact=exact)


def elementwise_loss(act: Activation, y: jax.Array, t: jax.Array) -> jax.Array:
    """CIANNA's displayed per-element loss for the output activation ``act``."""
    if act.kind == "SMAX":
        return -t * jnp.log(jnp.maximum(y, CE_CLAMP))
    return 0.5 * jnp.square(y - t)


def output_loss(act: Activation, z: jax.Array, t: jax.Array, row_mask: jax.Array,
                loss_scale: float = 1.0, *, exact: bool = False) -> jax.Array:
    """Per-row displayed loss ``(B,)`` of pre-activation rows ``z (B, out_dim)``.

    ``row_mask (B,)`` is 1 for real examples and 0 for the padding rows of a
    partial batch.  ``loss_scale`` is CIANNA's ``TC_scale_factor`` (it scales the
    delta only, not the displayed value).  The gradient is CIANNA's output delta, or
    with ``exact`` the autodiff gradient of the displayed loss (times ``loss_scale``).
    """
    if exact:
        y = output_activation(act, z, exact=True)
        per_row = jnp.sum(elementwise_loss(act, y, t), axis=1) * row_mask
        return per_row if loss_scale == 1.0 else _scaled(per_row, loss_scale)
    return _cianna_loss(act, z, t, row_mask, loss_scale)


def _scaled(v, scale: float):
    """``v`` whose gradient is multiplied by ``scale`` (the value is unchanged)."""
    return v * scale - jax.lax.stop_gradient(v * (scale - 1.0))


@partial(jax.custom_vjp, nondiff_argnums=(0, 4))
def _cianna_loss(act: Activation, z: jax.Array, t: jax.Array, row_mask: jax.Array,
                 loss_scale: float = 1.0) -> jax.Array:
    y = output_activation(act, z)
    return jnp.sum(elementwise_loss(act, y, t), axis=1) * row_mask


def _loss_fwd(act, z, t, row_mask, loss_scale):
    y = output_activation(act, z)
    per_row = jnp.sum(elementwise_loss(act, y, t), axis=1) * row_mask
    return per_row, (y, t, row_mask)


def _loss_bwd(act, loss_scale, res, g):
    y, t, row_mask = res
    delta = (y - t) * loss_scale
    if act.kind in ("RELU", "LOGI"):
        delta = delta * derivative_multiplier(act, y)
    delta = delta * (row_mask * g)[:, None]
    return delta, jnp.zeros_like(t), jnp.zeros_like(row_mask)


_cianna_loss.defvjp(_loss_fwd, _loss_bwd)
