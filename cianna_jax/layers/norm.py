"""Group normalisation, CIANNA's only ``norm`` type (cianna_layers.md section 6).

Per sample and per group of ``group_size`` consecutive channels: biased variance,
``eps = 1e-3`` inside the square root, one learnable scale and shift per *group*,
no running statistics.  The last ``set_off`` groups pass through unchanged.
The layer activation is applied (CUDA behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..activations import Activation, activate
from .common import Ctx, Shape

__all__ = ["Norm", "GN_EPS"]

GN_EPS = 1e-3


@dataclass(frozen=True)
class Norm:
    """``norm(normalization="GN", activation, group_size, set_off)``.

    Parameters ``{"gamma": (G,), "beta": (G,)}`` with ``G = C / group_size`` groups.
    Input and output: map ``(B, *sp, C)``.
    """

    activation: Activation
    group_size: int = 8
    set_off: int = 0
    normalization: str = "GN"

    kind = "norm"

    def nb_groups(self, in_shape: Shape) -> int:
        return -(-in_shape.c // self.group_size)

    def output_shape(self, in_shape: Shape) -> Shape:
        if in_shape.flat:
            raise ValueError("norm: a normalisation layer cannot follow a dense layer")
        if in_shape.c % self.group_size:
            raise ValueError(
                f"group_size: must divide the number of channels; received group_size="
                f"{self.group_size} for {in_shape.c} channels")
        if not 0 <= self.set_off <= self.nb_groups(in_shape):
            raise ValueError(f"set_off: expected 0..{self.nb_groups(in_shape)} groups, "
                             f"received {self.set_off}")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        g = self.nb_groups(in_shape)
        return {"gamma": (g,), "beta": (g,)}

    def init(self, key: jax.Array, in_shape: Shape):
        g = self.nb_groups(in_shape)
        return ({"gamma": jnp.ones((g,), jnp.float32), "beta": jnp.zeros((g,), jnp.float32)},
                self.output_shape(in_shape))

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        shape = x.shape
        c = shape[-1]
        ng = c // self.group_size
        xg = x.reshape(shape[:-1] + (ng, self.group_size)).astype(jnp.float32)
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
        mean = jnp.mean(xg, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(xg - mean), axis=axes, keepdims=True)
        xhat = (xg - mean) * jax.lax.rsqrt(var + GN_EPS)
        gamma = params["gamma"][:, None]
        beta = params["beta"][:, None]
        y = gamma * xhat + beta
        if self.set_off:
            normed = (jnp.arange(ng) < ng - self.set_off)[:, None]
            y = jnp.where(normed, y, xg)
        z = y.reshape(shape).astype(x.dtype)
        if not activate_output:
            return z
        return activate(self.activation, z)
