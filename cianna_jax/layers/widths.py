"""Layer widths XLA's CPU code runs slowly, and the wider layout that avoids them.

XLA's CPU products and convolutions (Eigen) slow down when the filters axis holds a
multiple of 2048 values, float32 rows of a multiple of 8 KiB (likely cache-set
conflicts: nearby widths do not show it).  A layer with 2048 or 4096 filters then runs 1.35-1.9x slower than the same
layer with 16 filters more (2-core AMD EPYC with AVX2, batch 8, medians): a 1x1
1024 -> 2048 convolution on 16x16 maps 68.6 -> 48.8 ms, 3x3 512 -> 2048 on 8x8 76.3 ->
56.6 ms, 2x2 stride-2 256 -> 2048 18.4 -> 12.8 ms, 1x1 1024 -> 4096 on 8x8 48.6 -> 25.4
ms; the product ``(512, 1024) @ (1024, 2048)`` 17.0 -> 12.1 ms, while 1536, 2560 or 3072
columns run at full speed (benchmarks/README.md, twenty-ninth session).

So the weights laid out for inference on CPU (``Conv.inference_params``) give such a
layer :data:`EXTRA` zero filters more (:func:`widen`), whose outputs the layer drops:
the same sums for the real filters.  SDC1 backbone inference with laid-out weights,
in-process A/B: x1.052 at 128x128, x1.043 at 256x256.  Training keeps the layer's own
width: widening there copies the kernel and pads the output gradient every step, which
cost more than the faster products save (the SDC1 128 training step x0.973, and a pass
with the kernel widened per call x0.933).  Measured in float32; the 16-bit policies,
whose products accumulate in float32 too, take the same rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["SLOW_MULTIPLE", "EXTRA", "slow", "widen"]

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
