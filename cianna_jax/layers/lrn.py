"""Local response normalisation across channels (cianna_layers.md section 7).

``s_c = k + (alpha / R) * sum_{j in W(c)} x_j**2`` over the window
``W(c) = [c - R//2, c + R//2]`` clipped to the channels, and ``y_c = x_c / s_c**beta``,
then the layer activation.  The backward pass is CIANNA's CUDA formula, which uses
the stored output *after* the activation (exact for LIN only, defect B10).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from ..activations import Activation, activate, derivative_multiplier
from .common import Ctx, Shape

__all__ = ["LRN"]


def _window_sum(v, half):
    """Sum over channel windows ``[c - half, c + half]`` (last axis), zero beyond the ends."""
    c = v.shape[-1]
    cfg = [(0, 0)] * (v.ndim - 1) + [(half, half)]
    vp = jnp.pad(v, cfg)
    return sum(vp[..., j:j + c] for j in range(2 * half + 1))


def _scale(x, rng, k, alpha):
    return k + (alpha / rng) * _window_sum(jnp.square(x), rng // 2)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _lrn_act(x, rng, k, alpha, beta, act):
    y = x * _scale(x, rng, k, alpha) ** (-beta)
    return activate(act, y) if act is not None else y


def _lrn_fwd(x, rng, k, alpha, beta, act):
    s = _scale(x, rng, k, alpha)
    y = x * s ** (-beta)
    if act is not None:
        y = activate(act, y)
    return y, (x, s, y)


def _lrn_bwd(rng, k, alpha, beta, act, res, g):
    x, s, y = res
    gz = g * derivative_multiplier(act, y) if act is not None else g
    cross = _window_sum(gz * y / s, rng // 2)
    return (gz * s ** (-beta) - (2.0 * alpha * beta / rng) * x * cross,)


_lrn_act.defvjp(_lrn_fwd, _lrn_bwd)


@dataclass(frozen=True)
class LRN:
    """``lrn(activation, range, k, alpha, beta)``; no parameters; map in, map out."""

    activation: Activation
    range: int = 5
    k: float = 1.0
    alpha: float = 1.0
    beta: float = 0.5

    kind = "lrn"

    def output_shape(self, in_shape: Shape) -> Shape:
        if in_shape.flat:
            raise ValueError("lrn: an LRN layer cannot follow a dense layer")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {}

    def init(self, key: jax.Array, in_shape: Shape):
        return {}, self.output_shape(in_shape)

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        act = self.activation if activate_output and self.activation.kind != "LIN" else None
        return _lrn_act(x, self.range, float(self.k), float(self.alpha), float(self.beta), act)
