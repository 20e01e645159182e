"""Sums over a map's positions in one pass that XLA's CPU code keeps fused.

XLA's CPU pipeline rewrites a reduction over more than 32 values along an axis into a
``reduce-window`` of 32-value windows followed by a small reduction (its
``TreeReductionRewriter``, for precision).  The window op is a fusion of its own, so the
elementwise expression being summed is written out in full first and read back: the
sums of a group norm's gradient over a ``(8, 224, 224, 32)`` map wrote five such
intermediates (fused passes: layer forward + gradient 56-67 -> 30 ms, benchmarks/README.md,
thirtieth session).  A *variadic* reduction (several operands summed together) is left
alone by that rewrite and fuses its producers, so :func:`position_sums` sums two or more
expressions in one read of their inputs: over each row's last axis (at most
:data:`ROW_CHUNK` values summed in sequence; the rewrite's windows sum up to 32x32 values
per channel), then the small partial sums as usual."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["position_sums", "ROW_CHUNK", "MIN_CHUNK"]

#: the longest run of values summed in sequence; a longer last axis is summed in chunks
#: of its largest divisor up to this (a prime length stays whole)
ROW_CHUNK = 512
#: a chunk shorter than this (a length with only small divisors) keeps the axis whole
MIN_CHUNK = 32


def _add(a, b):
    return tuple(u + v for u, v in zip(a, b))


def _chunk(n: int) -> int:
    """The chunk length a last spatial axis of ``n`` values is summed in."""
    if n <= ROW_CHUNK:
        return n
    best = max((k for k in range(2, ROW_CHUNK + 1) if n % k == 0), default=n)
    return best if best >= MIN_CHUNK else n


def position_sums(*maps: jax.Array) -> tuple[jax.Array, ...]:
    """The sums over the positions of two or more maps ``(B, *sp, C)`` of one shape: one
    ``(B, C)`` array per map (its dtype), the sum over every spatial axis per example and
    channel.  The maps are usually expressions of the same arrays (e.g. ``g`` and
    ``g * x``): their elementwise work fuses into the one pass.  (A single sum is not
    variadic: XLA rewrites it, and the expression is written out first.)"""
    shape = maps[0].shape if maps else ()
    if len(maps) < 2 or len(shape) < 3 or any(m.shape != shape for m in maps):
        raise ValueError(f"position_sums: expected two or more maps (B, *spatial, C) of "
                         f"one shape, received {' and '.join(str(m.shape) for m in maps)}")
    w = shape[-2]
    k = _chunk(w)
    if k != w:  # (..., W, C) -> (..., W / k, k, C): sums of k values, then the rest
        maps = tuple(m.reshape(shape[:-2] + (w // k, k, shape[-1])) for m in maps)
    zeros = tuple(jnp.zeros((), m.dtype) for m in maps)
    parts = lax.reduce(tuple(maps), zeros, _add, (maps[0].ndim - 2,))
    rest = tuple(range(1, parts[0].ndim - 1))
    return tuple(jnp.sum(p, axis=rest) for p in parts)
