"""Layer widths XLA's CPU code runs slowly, and the wider layout that avoids them.

XLA's CPU products and convolutions (Eigen) slow down when the filters axis holds a
multiple of 2048 values, float32 rows of a multiple of 8 KiB (likely cache-set
conflicts: nearby widths do not show it). A layer with 2048 or 4096 filters then runs
1.35-1.9x slower than the same layer with 16 filters more (2-core AMD EPYC with AVX2,
batch 8, medians): a 1x1 1024 -> 2048 convolution on 16x16 maps 68.6 -> 48.8 ms, 3x3 512
-> 2048 on 8x8 76.3 -> 56.6 ms, 2x2 stride-2 256 -> 2048 18.4 -> 12.8 ms, 1x1 1024 ->
4096 on 8x8 48.6 -> 25.4 ms; the product ``(512, 1024) @ (1024, 2048)`` 17.0 -> 12.1 ms,
while 1536, 2560 or 3072 columns run at full speed (benchmarks/README.md, twenty-ninth
session).

So such a layer computes with :data:`EXTRA` zero filters more (:func:`widen`) and drops
their outputs: the same sums for the real filters. The weights laid out for inference on
CPU (``Conv.inference_params``) hold the wider kernel, and SDC1 backbone inference with
them ran x1.043-1.055 (in-process A/Bs, 128x128 and 256x256). In training and in passes
on the training-form weights, the layer is widened at every call (:func:`on_cpu`), its
dropout mask drawn for the real filters' places (``common.uniform``'s ``width``: the
same bits) before the extra outputs are dropped. Training steps of a 2048-filter layer
and a small head, batch 8, ran x1.25 (3x3, 512 -> 2048, 8x8 maps), x1.29 (1x1, 1024 ->
2048, 16x16), x1.35 (2x2 stride 2, 256 -> 2048) and x1.18-1.28 (the 1x1 one with dropout
0.25), the same numbers; the SDC1 backbone's training step x1.029-1.033 at 128x128 and
x1.041-1.065 at 256x256. Cut back before its dropout, the layer ran slower (x0.96): XLA
fused the mask's hash into the padding of the layer's gradient, which then ran 9x slower
than the mask alone. A mask those draws cannot give (16-bit maps, other PRNGs) keeps
such a layer at its width in training. Measured in float32; under the 16-bit policies,
whose products accumulate in float32 too, the inference layout and the layers without a
mask are widened the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["SLOW_MULTIPLE", "EXTRA", "slow", "widen", "on_cpu"]

#: filter counts that are multiples of this run slowly in XLA's CPU code
SLOW_MULTIPLE = 2048
#: zero filters appended to such a layer (64 bytes of float32 per row)
EXTRA = 16


def slow(n_filters: int) -> bool:
    """Whether a layer with ``n_filters`` filters runs slowly at its own width on CPU."""
    return n_filters > 0 and n_filters % SLOW_MULTIPLE == 0


def widen(k: jax.Array, b: jax.Array | None = None):
    """The kernel ``k (..., F)`` (and bias term ``b (F,)``) with :data:`EXTRA` zero
    filters appended on the last axis: ``(..., F + EXTRA)``."""
    wk = jnp.pad(k, [(0, 0)] * (k.ndim - 1) + [(0, EXTRA)])
    if b is None:
        return wk
    return wk, jnp.pad(b, (0, EXTRA))


def on_cpu(layer: Callable[[jax.Array, jax.Array], jax.Array], k: jax.Array,
           b: jax.Array) -> jax.Array:
    """``layer(k, b)``: a layer's output ``(..., F)`` from its kernel ``k (..., F)`` and
    bias term ``b (F,)``.  On CPU, where ``F`` is :func:`slow`, computed as
    ``layer(*widen(k, b))[..., :F]``, so that its training step runs the wider products
    (the gradient reaching the layer is padded with zeros, the kernel's is cut back to
    ``F`` columns)."""
    n = k.shape[-1]
    if not slow(n):
        return layer(k, b)
    return lax.platform_dependent(k, b, cpu=lambda k, b: layer(*widen(k, b))[..., :n],
                                  default=layer)
