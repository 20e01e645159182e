"""A conv layer and the max-pool layer that tiles it, fused (the fast CPU path).

A stride-1 conv followed by a max pool whose windows tile its output exactly
(pool stride = pool size ``s``, no pool padding) equals one conv on the
space-to-depth input: the padded input is cut into ``s``-blocks, stacked on the
channels, and a smaller kernel produces the ``prod(s)`` window cells ("phases")
of every pool output at once; the pool is then a max over the phases.  XLA runs
these wider-channel convs much faster than the original conv plus pool.

The numbers are those of the general path (conv, bias, activation, pool):
the activation is applied to every phase before the max, the gradient goes to
the first maximum in CIANNA's scan order, times CIANNA's derivative multiplier
of the pooled output, and the input gradient is exact, which is CIANNA's closed
form for these geometries (stride 1, no int_padding, padding < filter size).
The backward pass uses standard convolutions only (see /work/shared/perf_notes.md),
except where the forward runs as gathered windows times one matrix (few inputs per
output, e.g. a one-channel first layer): there the weight gradient is those windows
against the output gradient.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..activations import Activation, activation_forward, derivative_multiplier
from ..geometry import conv_output_size
from ..precision import FP32, Policy
from .common import (
    Ctx,
    Shape,
    conv_dimension_numbers,
    depth_to_space,
    internal,
    rotated_kernel,
    space_to_depth_by_slices,
    weight_grad_conv,
)
from .conv import Conv
from .phases import phase_kernel, phase_order, uses_windows, window_order, windows
from .pool import Pool

__all__ = ["fusible", "conv_max_pool", "FUSE_MAX_CHANNEL_PRODUCT"]


#: the fused path is used when input channels x filters is at most this: beyond, the
#: space-to-depth convolution (prod(s) times wider on both sides) is slower than the
#: conv and the pool run apart on CPU (batch 16, 3x3 filter, forward / gradient: 16 -> 32
#: channels 1.5x / 1.8x slower, 64 -> 128 1.9x / 1.8x, 256 -> 512 4.9x / 4.0x; 1 -> 8
#: channels 4x / 1.9x faster, 8 -> 16 even; measured, see benchmarks/README.md)
FUSE_MAX_CHANNEL_PRODUCT = 128


def fusible(conv: Conv, pool: Pool, in_shape: Shape, ctx: Ctx) -> bool:
    """Whether ``conv`` (reading ``in_shape``) followed by ``pool`` can use the fused path:
    a geometry it covers, and few channels (:data:`FUSE_MAX_CHANNEL_PRODUCT`)."""
    if not isinstance(conv, Conv) or not isinstance(pool, Pool):
        return False
    if pool.p_type != "MAX" or pool.p_global or conv.drop_rate > 0.01 or conv.nb_groups != 1:
        return False
    if conv.activation.kind not in ("LIN", "RELU", "LOGI"):
        return False
    if ctx.policy.compute_dtype != jnp.float32:
        return False
    src = conv.map_input(in_shape)
    if src.c * conv.nb_filters > FUSE_MAX_CHANNEL_PRODUCT:
        return False
    stride = pool.stride if pool.stride is not None else pool.p_size
    for ax in range(3):
        if conv.stride[ax] != 1 or conv.int_padding[ax] != 0:
            return False
        if conv.padding[ax] >= conv.f_size[ax]:  # CIANNA's input gradient deviates (B5)
            return False
        if stride[ax] != pool.p_size[ax] or pool.padding[ax] != 0:
            return False
        n = conv_output_size(src.spatial[ax], conv.f_size[ax], 1, conv.padding[ax], 0)
        if n % pool.p_size[ax]:
            return False
    return any(s > 1 for s in pool.p_size)


def _conv_input(xp, k2, s):
    """What the fused conv reads from the padded input ``xp (B, *L, C)``: ``xp`` itself
    where it runs as gathered windows (:func:`.phases.uses_windows`), else its space-to-depth
    form ``(B, *(L/s), prod(s)*C)``; the backward keeps it as the residual."""
    return xp if uses_windows(k2) else space_to_depth_by_slices(xp, s)


def _valid_conv(xin, k2, s, policy):
    """Valid, stride-1 correlation of the space-to-depth form of the padded input with
    ``k2 (*q, prod(s)*C, F)``, read from ``xin`` (:func:`_conv_input`):
    ``(B, *out, F)``."""
    nd = xin.ndim - 2
    q = k2.shape[:nd]
    if uses_windows(k2):
        kw = window_order(k2, s).reshape(-1, k2.shape[-1])
        cols = windows(xin, q, s)
        return jnp.dot(cols.reshape(cols.shape[:nd + 1] + (-1,)), kw,
                       precision=policy.precision,
                       preferred_element_type=policy.accum_dtype).astype(xin.dtype)
    return lax.conv_general_dilated(
        xin, k2, (1,) * nd, [(0, 0)] * nd,
        dimension_numbers=conv_dimension_numbers(nd), precision=policy.precision,
        preferred_element_type=policy.accum_dtype).astype(xin.dtype)


def _phases(xin, k2, b, s, act, policy):
    z = _valid_conv(xin, k2, s, policy)
    z = z.reshape(z.shape[:-1] + (int(np.prod(s)), -1)) + b
    return activation_forward(act, z)


@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _fused(xp, k2, b, s: tuple[int, ...], act: Activation, policy: Policy = FP32,
           padding_blocks=None):
    """Conv + bias + activation + max over the phases of the padded input ``xp``
    (pool size ``s``).  ``padding_blocks``: per spatial axis, the numbers of leading
    and trailing ``s``-blocks of ``xp`` that hold only the conv's zero padding, whose
    input gradient nobody reads (None: none)."""
    return jnp.max(_phases(_conv_input(xp, k2, s), k2, b, s, act, policy), axis=-2)


def _fused_fwd(xp, k2, b, s, act, policy, padding_blocks):
    x_res = _conv_input(xp, k2, s)
    y = _phases(x_res, k2, b, s, act, policy)
    # the winning phase as a float: the backward compares it with a float iota (below)
    arg = jnp.argmax(y, axis=-2).astype(y.dtype)
    pooled = jnp.max(y, axis=-2)
    return pooled, (x_res, k2, arg, pooled)


def _fused_bwd(s, act, policy, padding_blocks, res, g):
    x_res, k2, arg, pooled = res
    nd = x_res.ndim - 2
    n_phase = int(np.prod(s))
    dn = conv_dimension_numbers(nd)
    gsel = g * derivative_multiplier(act, pooled)
    # the gradient routed to each phase's block of channels (..., phase * C): the
    # (..., phase, C) product of the gradient with the one-hot of the winning phase,
    # reshaped.  XLA's CPU fusion emitters write a concatenation of per-phase selects
    # 1.7-5.4x slower (MNIST's layers: 0.86 against 0.42 ms, 0.42 against 0.21 ms at
    # batch 64; the training step x1.066, benchmarks/README.md, thirty-third session)
    phase = jnp.arange(n_phase, dtype=arg.dtype)[:, None]
    gz = (gsel[..., None, :] * (arg[..., None, :] == phase).astype(g.dtype)).reshape(
        gsel.shape[:-1] + (-1,))
    gb = jnp.sum(gsel, axis=tuple(range(nd + 1)))
    if uses_windows(k2):
        # the forward's windows (XLA computes them once) against the output gradient
        cols = windows(x_res, k2.shape[:nd], s)
        wshape = cols.shape[nd + 1:]
        cols = cols.reshape(-1, int(np.prod(wshape)))
        gkw = lax.dot_general(cols, gz.reshape(cols.shape[0], -1), (((0,), (0,)), ((), ())),
                              precision=policy.precision,
                              preferred_element_type=policy.accum_dtype)
        gk2 = phase_order(gkw.reshape(wshape + (-1,)), s).astype(k2.dtype)
    else:
        gk2 = weight_grad_conv(x_res, gz, k2.shape[:nd], policy=policy).astype(k2.dtype)
    k_rot = rotated_kernel(k2)
    q = k2.shape[:nd]
    # the input gradient of the blocks that are all padding is dropped by the caller:
    # computed for the others only (MNIST's second layer: 7x7 of 9x9 blocks, 0.76-0.82
    # against 1.18-1.31 ms at batch 64, benchmarks/README.md), zeros for them
    crop = padding_blocks or ((0, 0),) * nd
    gxs = lax.conv_general_dilated(
        gz, k_rot, (1,) * nd, [(v - 1 - lo, v - 1 - hi) for v, (lo, hi) in zip(q, crop)],
        dimension_numbers=dn, precision=policy.precision,
        preferred_element_type=policy.accum_dtype).astype(g.dtype)
    if any(lo or hi for lo, hi in crop):
        gxs = jnp.pad(gxs, ((0, 0),) + tuple(crop) + ((0, 0),))
    return depth_to_space(gxs, s), gk2, gb


_fused.defvjp(_fused_fwd, _fused_bwd)


def conv_max_pool(conv: Conv, pool: Pool, params, x: jax.Array, ctx: Ctx,
                  key: jax.Array | None = None, *, activate_output: bool = True) -> jax.Array:
    """``pool.apply(conv.apply(x))`` through the fused path (check :func:`fusible` first).

    ``key`` is the pool layer's dropout key; the conv has no dropout when fusible.
    """
    nd = ctx.nd
    x, k, b = conv.prepare(params, x, nd)
    f = k.shape[:nd]
    s = internal(pool.p_size, nd)
    pad = internal(conv.padding, nd)
    out = tuple((n + 2 * p - ff + 1) // ss for n, p, ff, ss in zip(x.shape[1:-1], pad, f, s))
    q = tuple((ss - 1 + ff - 1) // ss + 1 for ss, ff in zip(s, f))
    length = tuple(ss * (o + qq - 1) for ss, o, qq in zip(s, out, q))
    cfg = [(0, 0)] + [(p, ln - n - p) for p, ln, n in zip(pad, length, x.shape[1:-1])] + [(0, 0)]
    k2 = phase_kernel(k, s, q)
    # s-blocks of the padded input made only of padding (their input gradient is not needed)
    padding_blocks = tuple((lo // ss, hi // ss) for (lo, hi), ss in zip(cfg[1:-1], s))
    z = _fused(jnp.pad(x, cfg), k2, b.astype(x.dtype), tuple(s), conv.activation, ctx.policy,
               padding_blocks)
    return pool.finish(z, ctx, key, activate_output=activate_output)
