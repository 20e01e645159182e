"""Dense layer with CIANNA's bias slot and pivot (cianna_layers.md sections 1.3 and 3).

Parameters: ``{"w": (I, N + 1)}``; row ``I - 1`` multiplies the bias slot of the
input, column ``N`` is the bias-propagation neuron whose only non-zero weight at
creation is the pivot ``w[I-1, N] = bias_next / bias_this`` (set by the network).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from .. import initializers
from ..activations import Activation, activate, softmax_rows
from .common import Ctx, Shape, dropout, map_to_flat_cmajor

__all__ = ["Dense"]


@dataclass(frozen=True)
class Dense:
    """``dense(nb_neurons, activation, bias, drop_rate, init_fct, init_scaling)``.

    ``bias`` is this layer's constant bias input (resolved by the network builder).
    Input: a flat ``(B, n + 1)`` activation (slot included) or a map ``(B, *sp, C)``,
    flattened channel-major and extended with ``bias``.  Output: ``(B, N + 1)``.
    """

    nb_neurons: int
    activation: Activation
    bias: float
    drop_rate: float = 0.0
    # creation-only settings: not saved by CIANNA, not part of the network identity
    init_fct: str = field(default="xavier", compare=False)
    init_scaling: float = field(default=1.0, compare=False)
    strict_size: int = field(default=0, compare=False)

    kind = "dense"

    def output_shape(self, in_shape: Shape) -> Shape:
        return Shape(self.nb_neurons, 1, 1, 1, True)

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {"w": (in_shape.size + 1, self.nb_neurons + 1)}

    def init(self, key: jax.Array, in_shape: Shape):
        """Draw ``w`` (I, N + 1); the bias-propagation column starts at zero."""
        n_in = in_shape.size + 1
        w = initializers.draw(key, self.init_fct, (n_in, self.nb_neurons), self.nb_neurons,
                              n_in, self.init_scaling)
        w = jnp.concatenate([w, jnp.zeros((n_in, 1), jnp.float32)], axis=1)
        return {"w": w}, self.output_shape(in_shape)

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        """``x`` flat (B, I) with slot, or a map; returns (B, N + 1)."""
        if x.ndim != 2:
            flat = map_to_flat_cmajor(x)
            x = jnp.concatenate([flat, jnp.full((flat.shape[0], 1), self.bias, flat.dtype)], axis=1)
        w = params["w"]
        if x.shape[1] != w.shape[0]:
            raise ValueError(f"dense: expected input width {w.shape[0]} (incl. bias slot), "
                             f"received {x.shape[1]}")
        pol = ctx.policy
        z = jnp.dot(x, w.astype(x.dtype), precision=pol.precision,
                    preferred_element_type=pol.accum_dtype).astype(x.dtype)
        z = dropout(z, self.drop_rate, ctx, key, keep_last_column=True)
        if not activate_output:
            return z
        return dense_activation(self.activation, z)


def dense_activation(act: Activation, z: jax.Array) -> jax.Array:
    """Activation of a dense output, with CIANNA's zeroed bias slot for non-LIN."""
    if act.kind == "LIN":
        return z
    body = z[:, :-1]
    y = softmax_rows(body) if act.kind == "SMAX" else activate(act, body)
    return jnp.concatenate([y, jnp.zeros_like(z[:, -1:])], axis=1)
