"""Sums over a map's positions in one pass that XLA's CPU code keeps fused.

XLA's CPU pipeline rewrites a reduction over more than 32 values along an axis into a
``reduce-window`` of 32-value windows followed by a small reduction (its
``TreeReductionRewriter``, for precision).  The window op is a fusion of its own, so the
elementwise expression being summed is written out in full first and read back: the
sums of a group norm's gradient over a ``(8, 224, 224, 32)`` map wrote five such
intermediates (fused passes: layer forward + gradient 56-67 -> 30 ms, benchmarks/README.md,
thirtieth session).  A *variadic* reduction (several operands summed together) is left
alone by that rewrite and fuses its producers, so :func:`pair_sums` sums two expressions
in one read of their inputs: over each row's last axis (at most :data:`ROW_CHUNK` values
summed in sequence, the rewrite's windows summing up to 32x32 per group channel), then the
small partial sums as usual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["pair_sums", "ROW_CHUNK"]

#: the longest run of values summed in sequence; a longer last axis is summed in chunks
#: of its largest divisor up to this (a prime length stays whole)
ROW_CHUNK = 512
#: a chunk shorter than this (a length with only small divisors) keeps the axis whole
MIN_CHUNK = 32


def _add_pairs(a, b):
    return a[0] + b[0], a[1] + b[1]


def _chunk(n: int) -> int:
    """The chunk length a last spatial axis of ``n`` values is summed in."""
    if n <= ROW_CHUNK:
        return n
    best = max((k for k in range(2, ROW_CHUNK + 1) if n % k == 0), default=n)
    return best if best >= MIN_CHUNK else n


def pair_sums(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sum a, sum b)`` over the positions of two maps ``(B, *sp, C)`` of the same shape:
    two ``(B, C)`` arrays in ``a``'s dtype, each the sum over every spatial axis per
    example and channel.  ``a`` and ``b`` are usually expressions of the same arrays
    (e.g. ``g`` and ``g * x``): their elementwise work fuses into the one pass."""
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"pair_sums: expected two maps (B, *spatial, C) of one shape, "
                         f"received {a.shape} and {b.shape}")
    w = a.shape[-2]
    k = _chunk(w)
    if k != w:  # (..., W, C) -> (..., W / k, k, C): sums of k values, then the rest
        shape = a.shape[:-2] + (w // k, k, a.shape[-1])
        a, b = a.reshape(shape), b.reshape(shape)
    zero = jnp.zeros((), a.dtype)
    sa, sb = lax.reduce((a, b), (zero, zero), _add_pairs, (a.ndim - 2,))
    rest = tuple(range(1, sa.ndim - 1))
    return jnp.sum(sa, axis=rest), jnp.sum(sb, axis=rest)
