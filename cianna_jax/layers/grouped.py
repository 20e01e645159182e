"""Grouped convolutions (CIANNA V-1.1's ``nb_groups``) in the forms XLA's CPU runs fast,
and their one-group case, a convolution over one input channel (a detector's first layer
on a radio image), as per-tap products (:func:`tap_conv`).

XLA's CPU grouped convolution runs on slow code: a 3x3 64 -> 64 convolution on 32x32
maps, batch 8, took 7.6 ms in 4 groups against 3.1 ms as one convolution per group,
18 ms depth-wise (64 groups) against 0.6 ms as per-tap products; autodiff's weight
gradient of the 4-group one 248 ms against 6.7 ms per group (benchmarks/README.md), and
inside a compiled loop of training steps the depth-wise one 50x slower again.  The forms
here are the same sums, and every convolution in them or in their gradients is in XLA's
own layouts (:func:`.xla_conv.xla_conv`, :func:`.common.weight_grad_conv`).
"""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.layout import Layout, with_layout_constraint

from ..precision import FP32, Policy
from .common import (
    input_grad_operand,
    padded_input,
    rotated_kernel,
    tap_slice,
    weight_grad_conv,
)
from .xla_conv import xla_conv

__all__ = ["grouped_conv", "tap_conv", "TAPS_MAX_CHANNELS"]

#: groups of at most this many input channels run as per-tap products (above: one XLA
#: convolution per group)
TAPS_MAX_CHANNELS = 4


def grouped_conv(x: jax.Array, k: jax.Array, strides, padding, groups: int,
                 policy: Policy = FP32, max_tap_channels: int = TAPS_MAX_CHANNELS) -> jax.Array:
    """Valid correlation of ``x (B, *sp, C)`` zero-padded by ``padding`` (pairs) at
    ``strides`` with the grouped kernel ``k (*f, C/G, F)``, ``G = groups``: group ``j``
    reads channels ``[j*C/G, (j+1)*C/G)`` with filters ``[j*F/G, (j+1)*F/G)``.  Returns
    ``(B, *out, F)`` in ``policy``'s accumulation dtype.

    Groups of at most ``max_tap_channels`` input channels (depth-wise layers first) run
    as per-tap products (:func:`tap_conv`), larger ones as one XLA convolution per
    group, concatenated."""
    nd = x.ndim - 2
    cg, n_f = k.shape[nd], k.shape[-1]
    if x.shape[-1] != cg * groups or n_f % groups:
        raise ValueError(f"grouped_conv: {groups} groups need C = {cg} x {groups} input "
                         f"channels and filters in multiples of {groups}; got x "
                         f"{x.shape}, k {k.shape}")
    strides, padding = tuple(strides), tuple(tuple(p) for p in padding)
    if cg <= max_tap_channels:
        return tap_conv(x, k, strides, padding, groups, policy)
    return _per_group(lambda xj, kj: xla_conv(xj, kj, strides, padding, (1,) * nd, policy),
                      x, k, groups)


def _per_group(fn, a: jax.Array, b: jax.Array, groups: int) -> jax.Array:
    """``fn`` on each group's slice of the last axis of ``a`` and of ``b`` (``groups``
    equal slices of each), the results concatenated on their last axis."""
    ca, cb = a.shape[-1] // groups, b.shape[-1] // groups
    return jnp.concatenate([fn(a[..., j * ca:(j + 1) * ca], b[..., j * cb:(j + 1) * cb])
                            for j in range(groups)], axis=-1)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def tap_conv(x: jax.Array, k: jax.Array, strides, padding, groups: int = 1,
             policy: Policy = FP32) -> jax.Array:
    """:func:`grouped_conv` as, for each filter tap and each channel of a group, the
    shifted input (``(B, *out, G)``, each value repeated ``F/G`` times) times that tap's
    ``F`` weights, summed in one fused loop: the form for groups of few channels, and
    for one input channel (``groups=1``, ``x (B, *sp, 1)``), where XLA's CPU convolution
    is slow too (5x5, 1 -> 32 filters, 128x128 maps, batch 8: 16-21 ms against 7-11 ms).
    Its gradients: the input gradient as the same form of the rotated kernel, the weight
    gradient one convolution per group in XLA's layouts (autodiff's, one reduction over
    the map per tap and channel, took a 32-group training step from 5.1 to 16.3 ms and a
    one-channel one 20x slower, benchmarks/README.md)."""
    nd = x.ndim - 2
    f, cg, n_f = k.shape[:nd], k.shape[nd], k.shape[-1]
    fg = n_f // groups
    xp, out = padded_input(x.astype(policy.accum_dtype), padding, f, strides)
    # materialized once: else XLA fuses the input's producer (in a training step, the
    # output gradient's) into every tap's slice and recomputes it (32 groups of 4
    # channels: training step 18.8 -> 5.4 ms)
    xp = lax.optimization_barrier(xp)
    # one row of F weights per tap and channel, filters contiguous: laid out so whatever
    # layout XLA gives the kernel inside a larger program (it may keep a strided view),
    # the fused loop reads each row as a vector (SDC1's first layer: 20.2 -> 8.2 ms)
    kk = with_layout_constraint(k.reshape(-1, cg, n_f).astype(policy.accum_dtype),
                                Layout((0, 1, 2)))
    acc = None
    for t, offs in enumerate(itertools.product(*[range(v) for v in f])):
        w = tap_slice(xp, offs, out, strides)
        for c in range(cg):  # channel c of every group: (B, *out, G)
            wc = w[..., c::cg] if cg > 1 else w
            term = (jnp.repeat(wc, fg, axis=-1) if fg > 1 else wc) * kk[t, c]
            acc = term if acc is None else acc + term
    return acc


def _tap_conv_fwd(x, k, strides, padding, groups, policy):
    return tap_conv(x, k, strides, padding, groups, policy), (x, k)


def _tap_conv_bwd(strides, padding, groups, policy, res, g):
    x, k = res
    nd = x.ndim - 2
    f = k.shape[:nd]
    gp = input_grad_operand(g, f, x.shape[1:-1], strides, padding)
    gx = grouped_conv(gp, rotated_kernel(k, groups).astype(gp.dtype), (1,) * nd,
                      ((0, 0),) * nd, groups, policy)
    gk = _per_group(lambda xj, gj: weight_grad_conv(xj, gj, f, strides, padding, policy),
                    x, g, groups)
    return gx.astype(x.dtype), gk.astype(k.dtype)


tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)
