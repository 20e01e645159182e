"""Grouped convolutions (CIANNA V-1.1's ``nb_groups``) in the forms XLA's CPU runs fast.

XLA's CPU grouped convolution runs on slow code: a 3x3 64 -> 64 convolution on 32x32
maps, batch 8, took 7.6 ms in 4 groups against 3.1 ms as one convolution per group,
18 ms depth-wise (64 groups) against 0.6 ms as per-tap products; autodiff's weight
gradient of the 4-group one 248 ms against 6.7 ms per group (benchmarks/README.md), and
inside a compiled loop of training steps the depth-wise one 50x slower again.  The forms
here are the same sums; their gradients are autodiff's of them, so every convolution in
them is :func:`.xla_conv.xla_conv`, whose gradients are in XLA's own layouts.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax

from ..precision import FP32, Policy
from .common import padded_input, tap_slice
from .xla_conv import xla_conv

#: groups of at most this many input channels run as per-tap products (above: one XLA
#: convolution per group)
TAPS_MAX_CHANNELS = 4


def grouped_conv(x: jax.Array, k: jax.Array, strides, padding, groups: int,
                 policy: Policy = FP32, max_tap_channels: int = TAPS_MAX_CHANNELS) -> jax.Array:
    """Valid correlation of ``x (B, *sp, C)`` zero-padded by ``padding`` (pairs) at
    ``strides`` with the grouped kernel ``k (*f, C/G, F)``, ``G = groups``: group ``j``
    reads channels ``[j*C/G, (j+1)*C/G)`` with filters ``[j*F/G, (j+1)*F/G)``.  Returns
    ``(B, *out, F)`` in ``policy``'s accumulation dtype.

    Groups of at most ``max_tap_channels`` input channels (depth-wise layers first): for
    each filter tap and each channel of a group, the shifted input (``(B, *out, G)``, each
    value repeated ``F/G`` times) times that tap's ``F`` weights, summed in one fused
    loop.  Larger groups: one XLA convolution per group, concatenated.  Autodiff's weight
    gradient of the per-tap form (one reduction over the map per tap and channel) costs
    more than one convolution per group: pass ``max_tap_channels=1`` where only that
    gradient is wanted, as the conv layer's weight pass does (32 groups of 4 channels:
    training step 16.3 against 5.1 ms, benchmarks/README.md)."""
    nd = x.ndim - 2
    f, cg, n_f = k.shape[:nd], k.shape[nd], k.shape[-1]
    if x.shape[-1] != cg * groups or n_f % groups:
        raise ValueError(f"grouped_conv: {groups} groups need C = {cg} x {groups} input "
                         f"channels and filters in multiples of {groups}; got x "
                         f"{x.shape}, k {k.shape}")
    fg = n_f // groups
    if cg <= max_tap_channels:
        xp, out = padded_input(x.astype(policy.accum_dtype), padding, f, strides)
        # materialized once: else XLA fuses the input's producer (in a training step, the
        # output gradient's) into every tap's slice and recomputes it (32 groups of 4
        # channels: training step 18.8 -> 5.4 ms)
        xp = lax.optimization_barrier(xp)
        kk = k.reshape(-1, cg, n_f).astype(policy.accum_dtype)
        acc = None
        for t, offs in enumerate(itertools.product(*[range(v) for v in f])):
            w = tap_slice(xp, offs, out, strides)
            for c in range(cg):  # channel c of every group: (B, *out, G)
                wc = w[..., c::cg] if cg > 1 else w
                term = (jnp.repeat(wc, fg, axis=-1) if fg > 1 else wc) * kk[t, c]
                acc = term if acc is None else acc + term
        return acc
    ones = (1,) * nd
    return jnp.concatenate(
        [xla_conv(x[..., j * cg:(j + 1) * cg], k[..., j * fg:(j + 1) * fg], tuple(strides),
                  tuple(padding), ones, policy) for j in range(groups)], axis=-1)
