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

from ..precision import FP32, Policy
from .common import padded_input, tap_slice
from .xla_conv import xla_conv


def grouped_conv(x: jax.Array, k: jax.Array, strides, padding, groups: int,
                 policy: Policy = FP32) -> jax.Array:
    """Valid correlation of ``x (B, *sp, C)`` zero-padded by ``padding`` (pairs) at
    ``strides`` with the grouped kernel ``k (*f, C/G, F)``, ``G = groups``: group ``j``
    reads channels ``[j*C/G, (j+1)*C/G)`` with filters ``[j*F/G, (j+1)*F/G)``.  Returns
    ``(B, *out, F)`` in ``policy``'s accumulation dtype.

    Depth-wise (``C/G == 1``, ``F/G`` filters per channel): for each filter tap the
    shifted input, each channel repeated ``F/G`` times, times that tap's ``F`` weights,
    summed (XLA fuses the sum into one loop).  Otherwise one XLA convolution per group,
    concatenated."""
    nd = x.ndim - 2
    f, cg, n_f = k.shape[:nd], k.shape[nd], k.shape[-1]
    if x.shape[-1] != cg * groups or n_f % groups:
        raise ValueError(f"grouped_conv: {groups} groups need C = {cg} x {groups} input "
                         f"channels and filters in multiples of {groups}; got x "
                         f"{x.shape}, k {k.shape}")
    fg = n_f // groups
    if cg == 1:
        xp, out = padded_input(x.astype(policy.accum_dtype), padding, f, strides)
        kk = k.reshape(-1, n_f).astype(policy.accum_dtype)
        acc = None
        for t, offs in enumerate(itertools.product(*[range(v) for v in f])):
            w = tap_slice(xp, offs, out, strides)
            term = (jnp.repeat(w, fg, axis=-1) if fg > 1 else w) * kk[t]
            acc = term if acc is None else acc + term
        return acc
    ones = (1,) * nd
    return jnp.concatenate(
        [xla_conv(x[..., j * cg:(j + 1) * cg], k[..., j * fg:(j + 1) * fg], tuple(strides),
                  tuple(padding), ones, policy) for j in range(groups)], axis=-1)
