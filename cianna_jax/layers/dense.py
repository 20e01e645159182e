"""Dense layer with CIANNA's bias slot and pivot (cianna_layers.md sections 1.3 and 3).

Parameters: ``{"w": (I, N + 1)}``; row ``I - 1`` multiplies the bias slot of the
input, column ``N`` is the bias-propagation neuron whose only non-zero weight at
creation is the pivot ``w[I-1, N] = bias_next / bias_this`` (set by the network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import initializers
from ..activations import Activation, activate, parse_activation, softmax_rows
from ..geometry import dense_weight_shape
from ..io.records import DenseRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape, conv_dimension_numbers, dropout, internal
from .products import product, times_transposed

__all__ = ["Dense"]


@register_layer
@dataclass(frozen=True)
class Dense(LayerBase):
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
    checked_in_loops = True  # dots and elementwise operations: no convolution
    flat_output = True

    def output_shape(self, in_shape: Shape) -> Shape:
        return Shape(self.nb_neurons, 1, 1, 1, True)

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {"w": dense_weight_shape(in_shape.size, self.nb_neurons)}

    def init(self, key: jax.Array, in_shape: Shape):
        """Draw ``w`` (I, N + 1); the bias-propagation column starts at zero."""
        n_in = in_shape.size + 1
        w = initializers.draw(key, self.init_fct, (n_in, self.nb_neurons), self.nb_neurons,
                              n_in, self.init_scaling)
        if initializers.is_concrete(w):  # on the host: no program compiled per shape
            w = jnp.asarray(np.concatenate([np.asarray(w), np.zeros((n_in, 1), np.float32)], 1),
                            jnp.float32)
        else:
            w = jnp.concatenate([w, jnp.zeros((n_in, 1), jnp.float32)], axis=1)
        return {"w": w}, self.output_shape(in_shape)

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        """``x`` flat (B, I) with slot, or a map (B, *sp, C); returns (B, N + 1)."""
        if "map_kernel" in params:  # laid out by inference_params
            return self._from_laid_map(params, x, ctx, key, activate_output)
        w = params["w"]
        width = int(np.prod(x.shape[1:])) + (x.ndim != 2)
        if width != w.shape[0]:
            raise ValueError(f"dense: expected input width {w.shape[0]} (incl. bias slot), "
                             f"received {width}")
        if x.ndim != 2:
            return self._from_map(w, x, ctx, key, activate_output)
        pol = ctx.policy
        # its input gradient as times_transposed: XLA's CPU reads a large weight matrix
        # transposed on slow code (.products)
        z = product(x, w.astype(x.dtype), pol.precision, pol.accum_dtype).astype(x.dtype)
        return self._finish(z, ctx, key, activate_output)

    def _from_map(self, w, x, ctx: Ctx, key, activate_output: bool) -> jax.Array:
        """A map input ``(B, *sp, C)``: CIANNA flattens it channel-major and appends the
        bias slot; the same sum is taken here on the map as it lies (channel-last)
        against the weight rows reordered to match (:func:`map_product`), plus ``bias``
        times the slot row.  Reordering the (I, N + 1) weights costs less than
        transposing the activations, which XLA fuses into the product as a slow strided
        operand (MNIST network, 7x7x16 -> 256 at batch 64: 0.9 -> 0.35 ms forward, 1.7 ->
        1.4 ms with the gradient; benchmarks/README.md)."""
        k = _rows_in_map_order(w, x.shape[-1], x.shape[1:-1])
        bias_term = self.bias * w[-1].astype(ctx.policy.accum_dtype)
        return self._map_sum(k, bias_term, x, ctx, key, activate_output)

    def inference_params(self, params, in_shape: Shape, nd: int,
                         policy=None) -> dict[str, jax.Array]:
        """The weights laid out once for repeated inference.  A dense layer that reads a
        map gets ``{"map_kernel": (*sp, C, N + 1), "bias_row": (N + 1,)}``: its weight
        rows already in the map's channel-last order (what :meth:`_from_map` reorders
        on every call: a copy of the whole weight matrix, 100 MB for a 7x7x512 -> 1024
        layer, whose forward at batch 8 took 64.8 ms against 19.8 ms laid out on 2 CPU
        cores, benchmarks/bench_dense_map.py) and ``bias`` times the bias row.  A dense
        layer that reads a flat vector keeps its params.  Not for training or saving;
        laid-out params come back as they are."""
        if in_shape.flat or "w" not in params:
            return params
        w = params["w"]
        k = _rows_in_map_order(w, in_shape.c, internal(in_shape.spatial, nd))
        return {"map_kernel": k, "bias_row": self.bias * w[-1]}

    def _from_laid_map(self, params, x, ctx: Ctx, key, activate_output: bool) -> jax.Array:
        """:meth:`_from_map` with the weights laid out by :meth:`inference_params`."""
        k = params["map_kernel"]
        if x.shape[1:] != k.shape[:-1]:
            raise ValueError(f"dense: laid-out weights read a map of shape {k.shape[:-1]} "
                             f"(channel-last, no batch axis), received {x.shape[1:]}")
        bias_term = params["bias_row"].astype(ctx.policy.accum_dtype)
        return self._map_sum(k, bias_term, x, ctx, key, activate_output)

    def _map_sum(self, k, bias_term, x, ctx: Ctx, key, activate_output: bool) -> jax.Array:
        """The map ``x`` against weight rows ``k (*sp, C, N + 1)`` in its own order, plus
        ``bias_term`` (accumulation dtype), then dropout and activation."""
        pol = ctx.policy
        z = map_product(x, k.astype(x.dtype), pol.precision, pol.accum_dtype)
        return self._finish((z + bias_term).astype(x.dtype), ctx, key, activate_output)

    def _finish(self, z, ctx: Ctx, key, activate_output: bool) -> jax.Array:
        z = dropout(z, self.drop_rate, ctx, key, keep_last_column=True)
        if not activate_output:
            return z
        return dense_activation(self.activation, z, exact=ctx.exact)

    def update_masks(self, params):
        """The pivot ``w[-1, -1]`` is neither updated nor decayed (CIANNA)."""
        w = params["w"]
        if initializers.is_concrete(w):  # on the host: no program compiled per shape
            m = np.ones(w.shape, w.dtype)
            m[-1, -1] = 0
            m = jax.device_put(m)
        else:
            m = jnp.ones(w.shape, w.dtype).at[-1, -1].set(0.0)
        return {"w": m}, {"w": m}

    def v11_decay_mask(self, params):
        """V-1.1 decays index ``i`` of ``w`` unless ``(i + 1) % (I * (N + 1)) >=
        (I - 1) * (N + 1)``: the bias row is not decayed except its last entry (the
        pivot), and neither is the last entry of the row above it."""
        rows, cols = params["w"].shape
        i = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
        keep = ((i + 1) % (rows * cols)) < (rows - 1) * cols
        return {"w": jax.device_put(keep.astype(np.float32))}

    def summary_lines(self, in_shape: Shape, out_shape: Shape, b_size: int) -> list[str]:
        n_w = (in_shape.size + 1) * (self.nb_neurons + 1)
        mem = 4 * (n_w * 2 + b_size * (in_shape.size + 1 + 2 * (self.nb_neurons + 1)))
        return [f"Input: {in_shape.size + 1}, Nb. Neurons: {self.nb_neurons}",
                f"Activation: {self.activation.name}, Bias: {self.bias:.2f}, dropout rate: "
                f"{self.drop_rate:.2f}",
                f"Nb. weights: {n_w}, Approx layer RAM/VRAM requirement: {int(mem / 1e6)} MB"]

    def tex_cells(self, in_shape: Shape, out_shape: Shape, params: dict) -> dict[str, str]:
        return {"activation": self.activation.kind, "in_size": str(in_shape.size + 1),
                "size": str(self.nb_neurons), "out_size": str(self.nb_neurons),
                "bias": f"{self.bias:0.2f}", "dropout": f"{int(self.drop_rate * 100)}\\%",
                "param_count": str(sum(int(a.size) for a in params.values()))}

    def to_record(self, params: dict, in_shape: Shape, yolo=None) -> DenseRecord:
        return DenseRecord(self.nb_neurons, self.drop_rate, self.bias, self.activation.name,
                           np.asarray(params["w"], np.float32))

    @classmethod
    def from_record(cls, rec: DenseRecord, *, after_dense: bool = False):
        """(layer spec, params) of a dense record."""
        return (cls(rec.nb_neurons, parse_activation(rec.activation), float(rec.bias),
                    float(rec.dropout)), {"w": jnp.asarray(rec.weights, jnp.float32)})


def _rows_in_map_order(w: jax.Array, c: int, sp: tuple[int, ...]) -> jax.Array:
    """CIANNA's dense weights ``(C * prod(sp) + 1, N + 1)``, rows channel-major with the
    bias row last, as ``(*sp, C, N + 1)``: the rows in a channel-last map's order."""
    return jnp.moveaxis(w[:-1].reshape((c,) + tuple(sp) + (w.shape[1],)), 0, -2)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def map_product(x: jax.Array, k: jax.Array, precision=None, accum=jnp.float32) -> jax.Array:
    """``sum over (*sp, C) of x[b, *sp, C] * k[*sp, C, n]``: ``x (B, *sp, C)``,
    ``k (*sp, C, N)`` -> ``(B, N)`` in ``accum``.

    Without a gradient, a VALID convolution whose window is the whole map: XLA's CPU
    loop emitter writes the map-producing fusion (MNIST: the last pool's max over its
    phases) 3-5x slower when its result is reshaped into the product's ``(B, I)``
    operand (MNIST inference x1.13; benchmarks/README.md).  The training forward (the
    VJP's) and both gradients are plain products on the flattened map, which measured
    faster there (x1.05 against the convolution)."""
    nd = x.ndim - 2
    y = lax.conv_general_dilated(x, k, (1,) * nd, "VALID",
                                 dimension_numbers=conv_dimension_numbers(nd),
                                 precision=precision, preferred_element_type=accum)
    return y.reshape(x.shape[0], -1)


def _map_product_fwd(x, k, precision, accum):
    z = jnp.dot(x.reshape(x.shape[0], -1), k.reshape(-1, k.shape[-1]), precision=precision,
                preferred_element_type=accum)
    return z, (x, k)


def _map_product_bwd(precision, accum, res, g):
    x, k = res
    kf = k.reshape(-1, k.shape[-1])
    gx = times_transposed(g, kf, precision, accum)
    gk = jnp.dot(x.reshape(x.shape[0], -1).T, g, precision=precision,
                 preferred_element_type=accum)
    return gx.reshape(x.shape).astype(x.dtype), gk.reshape(k.shape).astype(k.dtype)


map_product.defvjp(_map_product_fwd, _map_product_bwd)


def dense_activation(act: Activation, z: jax.Array, *, exact: bool = False) -> jax.Array:
    """Activation of a dense output, with CIANNA's zeroed bias slot for non-LIN."""
    if act.kind == "LIN":
        return z
    body = z[:, :-1]
    y = softmax_rows(body) if act.kind == "SMAX" else activate(act, body, exact=exact)
    return jnp.concatenate([y, jnp.zeros_like(z[:, -1:])], axis=1)
