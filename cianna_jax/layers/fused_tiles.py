"""A convolution and the tiling convolution after it, fused (a CPU path).

A stride-1 conv whose only reader is a convolution whose filters tile its output
(filter = stride, no padding: the 2x2 stride-2 convs after the first layer of CIANNA's
detectors) is computed one block of the second conv's windows at a time: the first
conv's outputs at the ``prod(s)`` cells of every block are one product of the input's
gathered windows with the phase kernel (:mod:`.phases`), then its bias and activation,
and the second conv is one product of those blocks with its filters.  Both products run
over chunks of :data:`CHUNK_BYTES` of the first conv's output, so that map (SDC1's first
layer at 256x256, batch 8: 67 MB) is never written to memory whole; each chunk's forward
is recomputed in the backward pass (``jax.checkpoint``) instead of kept.

Used where the first conv has few inputs per output (:data:`.phases.IM2COL_MAX_K`: a
one-channel first layer), both convs ungrouped and without dropout, float32
activations, on CPU (other platforms run the two layers as they are).  Same numbers as
the two layers (float rounding aside: the sums run in another order): bias, CIANNA's
activations and their derivatives (or autodiff with ``ctx.exact``), gradients of both
layers' weights by autodiff of the products; the first conv's input gradient is exact,
which is CIANNA's for these geometries (stride 1, padding below the filter size).
Measured in benchmarks/README.md (forty-seventh session).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..activations import activate
from ..geometry import conv_output_size
from .common import Ctx, Shape, add_bias, internal
from .conv import Conv
from .phases import IM2COL_MAX_K, phase_kernel, window_order, windows

__all__ = ["tiles_fusible", "conv_tiling_conv", "FUSE", "CHUNK_BYTES"]

#: the fused path is used where it applies (a switch for A/B runs)
FUSE = True
#: the first conv's output computed this many bytes at a time (float32: 4096 rows of
#: 128 values for SDC1's first layer; 2048-8192 rows ran alike, 16384 slower)
CHUNK_BYTES = 2 << 20
#: the first conv's bias added to its flat product (a switch for A/B runs)
FLAT_BIAS = True


def _geometry(first: Conv, second: Conv, sp: tuple[int, ...], nd: int):
    """``(s, q, padding pairs of the input, output blocks)`` of the fused pair reading
    a map of internal spatial shape ``sp``."""
    s = internal(second.stride, nd)
    f = internal(first.f_size, nd)
    pad = internal(first.padding, nd)
    out = tuple((n + 2 * p - ff + 1) // ss for n, p, ff, ss in zip(sp, pad, f, s))
    q = tuple((ss - 1 + ff - 1) // ss + 1 for ss, ff in zip(s, f))
    length = tuple(ss * (o + qq - 1) for ss, o, qq in zip(s, out, q))
    cfg = tuple((p, ln - n - p) for p, ln, n in zip(pad, length, sp))
    return s, q, cfg, out


def tiles_fusible(first: Conv, second: Conv, in_shape: Shape, ctx: Ctx) -> bool:
    """Whether conv ``first`` (reading ``in_shape``) and conv ``second``, its only
    reader, can run fused under ``ctx``: the geometry above, few inputs per output."""
    if not FUSE or not isinstance(first, Conv) or not isinstance(second, Conv) or in_shape.flat:
        return False
    if ctx.nd != 2 or ctx.policy.compute_dtype != jnp.float32:
        return False
    if first.nb_groups != 1 or second.nb_groups != 1:
        return False
    if first.drop_rate > 0.01 or second.drop_rate > 0.01:  # CIANNA's inactive rates
        return False
    if first.activation.kind not in ("LIN", "RELU", "LOGI"):
        return False
    for ax in range(3):
        if first.stride[ax] != 1 or first.int_padding[ax] != 0:
            return False
        if first.padding[ax] >= first.f_size[ax]:  # CIANNA's input gradient deviates (B5)
            return False
        if (second.f_size[ax] != second.stride[ax] or second.padding[ax] != 0
                or second.int_padding[ax] != 0):
            return False
        n = conv_output_size(in_shape.spatial[ax], first.f_size[ax], 1, first.padding[ax], 0)
        if n < second.f_size[ax]:
            return False
    if all(s == 1 for s in second.stride):
        return False
    s, q, _, _ = _geometry(first, second, internal(in_shape.spatial, ctx.nd), ctx.nd)
    return int(np.prod(q)) * int(np.prod(s)) * in_shape.c <= IM2COL_MAX_K


def _chunked(body, rows: jax.Array, chunk: int) -> jax.Array:
    """``body`` over ``rows (M, K)`` ``chunk`` rows at a time (the last chunks evened
    out; rows of zeros added where ``M`` does not divide): ``(M, F)``."""
    m = rows.shape[0]
    if m <= chunk:
        return body(rows)
    n = -(-m // chunk)
    size = -(-m // n)
    if n * size > m:
        rows = jnp.pad(rows, ((0, n * size - m), (0, 0)))
    out = lax.map(body, rows.reshape(n, size, rows.shape[1]))
    return out.reshape(n * size, -1)[:m]


def _fused(first: Conv, second: Conv, p0, p1, x: jax.Array, ctx: Ctx) -> jax.Array:
    """The pair's pre-activation (the second conv's bias added): ``(B, *out, F1)``."""
    nd = ctx.nd
    x, k0, b0 = first.prepare(p0, x, nd)
    k1, b1 = second.kernel_and_bias(p1, nd)
    s, q, cfg, out = _geometry(first, second, x.shape[1:-1], nd)
    n_phase, f0 = int(np.prod(s)), k0.shape[-1]
    kw = window_order(phase_kernel(k0, s, q), s).reshape(-1, n_phase * f0)
    k1m = k1.astype(x.dtype).reshape(n_phase * f0, -1)  # rows (phase..., C), as z's
    precision, acc = ctx.policy.precision, ctx.policy.accum_dtype
    # the bias repeated for each phase's columns, added to the flat product (added as
    # (rows, phases, F0) + b0, XLA's fusion ran the chunk's block 1.7x slower)
    b0 = jnp.tile(b0.astype(x.dtype), n_phase) if FLAT_BIAS else b0.astype(x.dtype)

    @jax.checkpoint
    def block(cols):  # (rows, K) -> (rows, F1), the first conv's output kept in the chunk
        z = jnp.dot(cols, kw, precision=precision, preferred_element_type=acc).astype(x.dtype)
        z = z + b0 if FLAT_BIAS else z.reshape(cols.shape[0], n_phase, f0) + b0
        a = activate(first.activation, z, exact=ctx.exact)
        return jnp.dot(a.reshape(cols.shape[0], -1), k1m, precision=precision,
                       preferred_element_type=acc).astype(x.dtype)

    # all the windows gathered before the loop: gathered per chunk inside it instead,
    # SDC1 256 inference and training ran the same (benchmarks/README.md)
    cols = windows(jnp.pad(x, ((0, 0),) + cfg + ((0, 0),)), q, s)
    cols = cols.reshape(-1, int(np.prod(cols.shape[1 + nd:])))
    chunk = max(256, CHUNK_BYTES // (n_phase * f0 * x.dtype.itemsize))
    z = _chunked(block, cols, chunk).reshape((x.shape[0],) + out + (-1,))
    return add_bias(z, b1) if not ctx.exact else z + b1.astype(z.dtype)


def conv_tiling_conv(first: Conv, second: Conv, p0, p1, x: jax.Array, ctx: Ctx, *,
                     activate_output: bool = True) -> jax.Array:
    """``second.apply(p1, first.apply(p0, x))`` through the fused path on CPU (check
    :func:`tiles_fusible` first); the two layers as they are elsewhere."""

    def cpu(x):
        z = _fused(first, second, p0, p1, x, ctx)
        return activate(second.activation, z, exact=ctx.exact) if activate_output else z

    def default(x):
        return second.apply(p1, first.apply(p0, x, ctx), ctx,
                            activate_output=activate_output)

    return lax.platform_dependent(x, cpu=cpu, default=default)
