"""Shapes, apply context, geometry checks and dropout shared by all layer types.

Layouts.  At the network boundary data are CIANNA's flat rows ``(N, C*D*H*W)``.
Inside, a *map* activation is channel-last ``(B, *spatial, C)`` with spatial axes
``(D, H, W)`` trimmed to the network's ``nd`` (2 or 3) trailing ones, which is the
fast layout for XLA on CPU and GPU.  A *flat* activation is ``(B, n + 1)``: ``n``
values followed by CIANNA's bias-propagation slot.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pallas_kernels import threefry

from ..precision import FP32, Policy

__all__ = [
    "Shape",
    "Ctx",
    "internal",
    "dropout",
    "draws_mask",
    "uniform",
    "widened_draws",
    "DROP_MODES",
    "map_to_flat_cmajor",
    "flat_to_map",
]

DROP_MODES = ("AVG_MODEL", "MC_MODEL")


class Shape(NamedTuple):
    """A layer input/output shape in CIANNA order: width, height, depth, channels.

    ``flat=True`` marks a dense (vector) activation of ``w`` values (h = d = c = 1).
    """

    w: int
    h: int
    d: int
    c: int
    flat: bool = False

    @property
    def size(self) -> int:
        return self.w * self.h * self.d * self.c

    @property
    def spatial(self) -> tuple[int, int, int]:
        return (self.w, self.h, self.d)

    def __str__(self) -> str:
        return f"{self.size}" if self.flat else f"{self.w}x{self.h}x{self.d}x{self.c}"


class Ctx(NamedTuple):
    """Static apply context: training flag, inference dropout mode, spatial rank, the
    mixed-precision policy and the gradient rule.

    ``exact=False`` gives CIANNA's gradients (its surrogate activation derivatives and
    backward passes, see :mod:`cianna_jax.gradients`); ``exact=True`` plain autodiff.
    """

    train: bool = False
    drop_mode: str = "AVG_MODEL"
    nd: int = 2
    policy: Policy = FP32
    exact: bool = False


def internal(triple: tuple[int, int, int], nd: int) -> tuple[int, ...]:
    """(W, H, D) -> the internal spatial order (D, H, W) trimmed to ``nd`` axes."""
    return tuple(reversed(triple))[3 - nd:]


#: bias gradients as a product of their own (:func:`add_bias`); a module flag for A/B runs
BIAS_GRAD_DOT = True


def add_bias(z: jax.Array, b: jax.Array) -> jax.Array:
    """``z + b`` for ``z (B, *sp, F)`` and one bias term per filter ``b (F,)``, with
    CIANNA's gradients (``ctx.exact=False``): the gradient of ``b``, the sum of the
    output gradient over the batch and the map, is taken as a matrix-vector product
    ``ones @ g``.  As a plain sum, XLA's CPU fusion placed that reduction inside the
    optimizer's update loop over the weight rows, which evaluated it as one strided
    pass per filter: 6-8 ms per 3x3 layer of an SDC1 training step (benchmarks/README.md).
    Same sum (float32 rounding aside), no forward-mode rule (like :func:`.conv.conv_nd`,
    on the same path)."""
    return _add_bias(z, b) if BIAS_GRAD_DOT else z + b.astype(z.dtype)


@jax.custom_vjp
def _add_bias(z, b):
    return z + b.astype(z.dtype)


def _add_bias_fwd(z, b):
    return _add_bias(z, b), jnp.zeros((0,), b.dtype)


def _add_bias_bwd(res, g):
    gg = g.reshape(-1, g.shape[-1])
    db = jax.lax.dot_general(jnp.ones((gg.shape[0],), gg.dtype), gg, (((0,), (0,)), ((), ())),
                             precision=jax.lax.Precision.HIGHEST,
                             preferred_element_type=jnp.float32)
    return g, db.astype(res.dtype)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def dropout(z: jax.Array, rate: float, ctx: Ctx, key: jax.Array | None,
            keep_last_column: bool = False, width: int | None = None) -> jax.Array:
    """CIANNA dropout on a pre-activation (not inverted, cianna_layers.md section 8).

    Training and MC_MODEL: multiply by a fresh {0, 1} mask (keep when ``u >= rate``).
    AVG_MODEL inference: multiply by ``1 - rate``.  Rates <= 0.01 are inactive.
    ``keep_last_column`` leaves the dense bias slot untouched.  ``width``: the last axis
    of ``z`` is a widened layer's (:mod:`.widths`), whose first ``width`` entries are the
    real ones: they get the mask of the ``width``-wide array (see :func:`uniform`).
    """
    if rate <= 0.01:
        return z
    if draws_mask(rate, ctx):
        if key is None:
            raise ValueError("a PRNG key is required for dropout in training or MC_MODEL mode")
        keep = uniform(key, z.shape, z.dtype, width) >= rate
        if keep_last_column:
            keep = keep.at[:, -1].set(True)
        return z * keep.astype(z.dtype)
    scale = jnp.full((z.shape[-1],), 1.0 - rate, z.dtype)
    if keep_last_column:
        scale = scale.at[-1].set(1.0)
    return z * scale


def draws_mask(rate: float, ctx: Ctx) -> bool:
    """Whether :func:`dropout` at ``rate`` draws a random mask under ``ctx`` (training
    and MC_MODEL inference, rates above 0.01), rather than scaling or doing nothing."""
    return rate > 0.01 and (ctx.train or ctx.drop_mode == "MC_MODEL")


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32,
            width: int | None = None) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype)``, the same numbers.  For float32 and
    jax's (default, partitionable) threefry keys, the hash runs as one elementwise
    expression of each element's index (:mod:`pallas_kernels.threefry`) that XLA fuses
    with its reader: XLA's CPU lowering of ``jax.random`` runs the hash in a rolled loop
    that copies its whole state every round (the dropout mask of CIANNA's SDC1 network,
    8x8x8x2048 values: 11.5 ms against 2.0 ms this way, measured in
    benchmarks/README.md).  Other dtypes and keys go through ``jax.random.uniform``.

    ``width`` (at most ``shape[-1]``): the draws of a widened array, whose first ``width``
    places on the last axis get the values ``uniform(key, shape[:-1] + (width,))`` has
    there (the places after them, values of no use); float32 and threefry keys only
    (:func:`widened_draws`, ValueError otherwise)."""
    shape = tuple(shape)
    n = int(np.prod(shape))
    if width is not None and width != shape[-1]:
        rows = n // shape[-1]
        if not (widened_draws(key, dtype) and 0 < width <= shape[-1] and rows * width < 2**32):
            raise ValueError(f"uniform: width {width} for draws of shape {shape} needs "
                             f"0 < width <= {shape[-1]}, float32 (received {np.dtype(dtype)}) "
                             f"and jax's threefry keys")
        # each element's index in the width-wide array: row * width + column
        counter = (jax.lax.iota(jnp.uint32, rows).reshape(shape[:-1] + (1,)) * np.uint32(width)
                   + jax.lax.broadcasted_iota(jnp.uint32, shape, len(shape) - 1))
    elif widened_draws(key, dtype) and 0 < n < 2**32:
        counter = jax.lax.iota(jnp.uint32, n).reshape(shape)
    else:
        return jax.random.uniform(key, shape, dtype)
    k = threefry.key_words(key)
    return threefry.uniform(k[0], k[1], counter)


def widened_draws(key: jax.Array, dtype) -> bool:
    """Whether :func:`uniform` can draw a widened array's values (its ``width``):
    float32 and jax's threefry keys."""
    return np.dtype(dtype) == np.float32 and threefry.supported(key)


def map_to_flat_cmajor(x: jax.Array) -> jax.Array:
    """Internal map ``(B, *spatial, C)`` -> CIANNA flat order ``(B, C*D*H*W)``."""
    b = x.shape[0]
    perm = (0, x.ndim - 1) + tuple(range(1, x.ndim - 1))
    return jnp.transpose(x, perm).reshape(b, -1)


def flat_to_map(x: jax.Array, shape: Shape, nd: int) -> jax.Array:
    """CIANNA flat rows ``(B, C*D*H*W [+ extra])`` -> internal map ``(B, *spatial, C)``."""
    b = x.shape[0]
    sp = internal(shape.spatial, nd)
    if np.prod(internal(shape.spatial, 3)[: 3 - nd], dtype=int) != 1:
        raise ValueError(f"shape {shape} needs a 3D network (nd=3), got nd={nd}")
    x = x[:, : shape.size].reshape((b, shape.c) + sp)
    return jnp.moveaxis(x, 1, -1)


def conv_dimension_numbers(nd: int) -> tuple[str, str, str]:
    """``lax.conv_general_dilated``'s dimension numbers for ``nd`` spatial axes in the
    core's layouts: channel-last maps ``(B, *sp, C)``, kernels ``(*sp, C, F)``."""
    sp = "DHW"[3 - nd:]
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C")


def padded_input(x: jax.Array, padding, f, strides) -> tuple[jax.Array, list[int]]:
    """``x (B, *sp, C)`` zero-padded by ``padding`` (pairs) and the output size of a
    valid correlation with filters ``f`` at ``strides`` over it."""
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in padding]
                 + [(0, 0, 0)])
    return xp, [(xp.shape[1 + a] - f[a]) // strides[a] + 1 for a in range(len(f))]


def tap_slice(xp: jax.Array, offs, out, strides) -> jax.Array:
    """The strided slice ``(B, *out, C)`` of the padded input ``xp`` seen by filter tap
    ``offs``."""
    return lax.slice(xp, (0,) + tuple(offs) + (0,),
                     (xp.shape[0],) + tuple(o + (n - 1) * st + 1
                                            for o, n, st in zip(offs, out, strides))
                     + (xp.shape[-1],), (1,) + tuple(strides) + (1,))


def weight_grad_conv(x: jax.Array, g: jax.Array, f, strides=None, padding=None,
                     policy: Policy = FP32) -> jax.Array:
    """Weight gradient ``(*f, C, F)`` of the channel-last correlation of ``x (B, *sp, C)``,
    zero-padded by ``padding`` (pairs, default none) at ``strides`` (default 1), whose
    output gradient is ``g (B, *out, F)``: ``sum_b,p x[b, p*s + o] g[b, p]`` per tap ``o``.

    A convolution of the channel-major input ``(C, *sp, B)`` with the gradient as its
    kernel ``(*out, B, F)`` (dilated by the strides), both transposed here into the
    layouts XLA's CPU convolution takes.  Autodiff writes it with batch-as-feature
    dimension numbers instead: XLA inserts the same transposes in a plain program but,
    inside a loop (``lax.scan`` over training steps), runs that convolution on its
    generic code (MNIST's fused layer: 20-40 ms per step instead of < 1; SDC1 at
    128x128: 33x slower, benchmarks/README.md)."""
    nd = x.ndim - 2
    strides = (1,) * nd if strides is None else tuple(strides)
    padding = [(0, 0)] * nd if padding is None else [tuple(p) for p in padding]
    lhs = jnp.transpose(x, (nd + 1,) + tuple(range(1, nd + 1)) + (0,))
    rhs = jnp.transpose(g.astype(x.dtype), tuple(range(1, nd + 1)) + (0, nd + 1))
    out = lax.conv_general_dilated(lhs, rhs, (1,) * nd, padding, rhs_dilation=strides,
                                   dimension_numbers=conv_dimension_numbers(nd),
                                   precision=policy.precision,
                                   preferred_element_type=policy.accum_dtype)
    out = out[(slice(None),) + tuple(slice(0, v) for v in f)]
    return jnp.transpose(out, tuple(range(1, nd + 1)) + (0, nd + 1))


def rotated_kernel(k: jax.Array, groups: int = 1) -> jax.Array:
    """``k (*f, C/G, F)`` -> the kernel of its input gradient ``(*f, F/G, C)``: the taps
    flipped, each group's input and output channels swapped (``G = groups``)."""
    nd = k.ndim - 2
    k_rot = jnp.flip(k, axis=tuple(range(nd)))
    if groups == 1:
        return jnp.swapaxes(k_rot, nd, nd + 1)
    f, cg, n_f = k.shape[:nd], k.shape[nd], k.shape[nd + 1]
    k_rot = k_rot.reshape(f + (cg, groups, n_f // groups))
    k_rot = jnp.transpose(k_rot, tuple(range(nd)) + (nd + 2, nd + 1, nd))
    return k_rot.reshape(f + (n_f // groups, groups * cg))


def input_grad_operand(g: jax.Array, f, in_spatial, strides, padding) -> jax.Array:
    """The output gradient ``g (B, *out, F)`` of a correlation (filters ``f``, ``strides``,
    ``padding`` pairs, input ``in_spatial``) dilated by the strides and padded (negative
    pads crop) to ``in_spatial + f - 1``: its valid correlation with
    :func:`rotated_kernel` is the input gradient.  XLA's CPU convolution given a negative
    low and a positive high padding on one axis returns garbage (jax 0.10.2, e.g.
    (-3, 3) on 7 columns); ``lax.pad`` does not."""
    out = g.shape[1:-1]
    return lax.pad(g, jnp.zeros((), g.dtype), [(0, 0, 0)] + [
        (v - 1 - lo, n + lo - (o - 1) * s - 1, s - 1)
        for v, (lo, _), s, n, o in zip(f, padding, strides, in_spatial, out)] + [(0, 0, 0)])


def input_grad_conv(g: jax.Array, k: jax.Array, in_spatial, strides=None, padding=None,
                    policy: Policy = FP32) -> jax.Array:
    """Input gradient ``(B, *in_spatial, C)`` of the channel-last correlation, zero-padded
    by ``padding`` (pairs, default none) at ``strides`` (default 1), of an input with the
    kernel ``k (*f, C, F)``, whose output gradient is ``g (B, *out, F)``: the valid
    correlation of :func:`input_grad_operand` with :func:`rotated_kernel`, in the
    dimension numbers XLA's CPU convolution takes; in ``g``'s dtype, accumulated in
    ``policy``'s.  Autodiff's (the same sums) swaps the kernel's feature axes in its
    dimension numbers instead, a form XLA's CPU runs on generic code: a 3x3 64 -> 64
    input gradient on 64x64 maps, batch 8, 32 against 24 ms a call, and 3.3x slower
    again inside a loop (benchmarks/README.md)."""
    nd = g.ndim - 2
    strides = (1,) * nd if strides is None else tuple(strides)
    padding = [(0, 0)] * nd if padding is None else [tuple(p) for p in padding]
    gp = input_grad_operand(g, k.shape[:nd], in_spatial, strides, padding)
    return lax.conv_general_dilated(gp, rotated_kernel(k).astype(g.dtype), (1,) * nd,
                                    [(0, 0)] * nd,
                                    dimension_numbers=conv_dimension_numbers(nd),
                                    precision=policy.precision,
                                    preferred_element_type=policy.accum_dtype)


def space_to_depth(x: jax.Array, s) -> jax.Array:
    """``(B, *(M*s), C) -> (B, *M, prod(s)*C)``: each ``s``-block of the map on the
    channels, ordered (offsets within the block..., C)."""
    nd = len(s)
    b, c = x.shape[0], x.shape[-1]
    m = tuple(n // k for n, k in zip(x.shape[1:-1], s))
    split = (b,) + tuple(v for mm, k in zip(m, s) for v in (mm, k)) + (c,)
    perm = (0,) + tuple(1 + 2 * a for a in range(nd)) + tuple(2 + 2 * a for a in range(nd)) + \
        (2 * nd + 1,)
    return jnp.transpose(x.reshape(split), perm).reshape((b,) + m + (-1,))


def space_to_depth_by_slices(x: jax.Array, s) -> jax.Array:
    """:func:`space_to_depth` as ``prod(s)`` strided slices concatenated on the channels
    (same values, same order).  XLA's CPU loop emitter writes the transpose form slowly
    when it is fused into a producer such as a max over pool phases; this form runs ~5x
    faster there (MNIST's second fused layer reading the first one's pooled output:
    0.57 -> 0.11 ms per batch of 64, inference x1.38; benchmarks/README.md), but not in
    the large weight-gradient layouts of :mod:`.conv`, which keep the transpose."""
    parts = [x[(slice(None),) + tuple(slice(o, None, k) for o, k in zip(d, s)) + (slice(None),)]
             for d in itertools.product(*[range(k) for k in s])]
    return jnp.concatenate(parts, axis=-1)


def depth_to_space(xs: jax.Array, s) -> jax.Array:
    """Inverse of :func:`space_to_depth`: ``(B, *M, prod(s)*C) -> (B, *(M*s), C)``."""
    nd = len(s)
    b, m = xs.shape[0], xs.shape[1:-1]
    c = xs.shape[-1] // int(np.prod(s))
    y = xs.reshape((b,) + m + tuple(s) + (c,))
    perm = (0,) + tuple(v for a in range(nd) for v in (1 + a, 1 + nd + a)) + (2 * nd + 1,)
    return jnp.transpose(y, perm).reshape((b,) + tuple(mm * k for mm, k in zip(m, s)) + (c,))
