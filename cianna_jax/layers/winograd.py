"""Winograd F(2x2, 3x3): 3x3 stride-1 convolutions in 16 products instead of 36.

A direct 3x3 convolution spends 9 multiply-adds per input channel, filter and output
pixel.  Winograd's minimal filtering algorithm (Lavin & Gray 2016, "Fast Algorithms for
Convolutional Neural Networks") computes each 2x2 block of outputs from a 4x4 tile of
the input: the tile and the filter are transformed (``V = B^T d B``, ``U = G g G^T``:
additions only, and halves), the 16 transformed positions are each one matrix product
over the channels (``M[t] = V[t] @ U[t]``, ``(tiles, C) @ (C, F)``), and the output
transform adds them back (``Y = A^T M A``).  The products, the whole cost for wide
layers, shrink 2.25x; the transforms add O(C + F) work per tile.  Numerically it is the
same sums regrouped, with float32 errors of the order of a direct convolution's
(relative 1e-6 measured, see the tests); F(4x4, 3x3) would save more but loses about
two more digits, so it is not used.

On the 2-core CPU this project measures on, XLA's convolution reaches the machine's
matrix-product rate for wide layers, and this form beats it there (3x3, 768 -> 1024 on
8x8 maps, batch 8: 46-52 -> 25-28 ms, see benchmarks/README.md), but only if the transformed
tiles of one pass stay in the cache: the work runs in chunks of at most
:data:`CHUNK_TILES` tiles (whole images, or bands of tile rows of one image).
Narrow layers (a few dozen channels) are faster as XLA's convolution: see
:func:`pays`.  Gradients are autodiff of these sums, which are the exact gradients
regrouped the same way (the weight gradient is ``V^T dM`` in the transformed space).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..precision import FP32, Policy

_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])

__all__ = ["winograd_conv", "filter_transform", "pays", "MIN_CHANNEL_PRODUCT",
           "FILTER_VALUES_PER_TILE", "CHUNK_TILES"]

#: a layer runs as Winograd when input channels x filters is at least this (and both
#: are at least 64).  3x3 forward / layer training step against XLA's convolution,
#: batch 8 (README): 128 -> 128 on 32x32 maps 1.38x / 1.21x; 64 -> 128 1.21x / 1.08x;
#: 64 -> 64 0.7x forward; 24 -> 32 on 64x64 0.44x
MIN_CHANNEL_PRODUCT = 128 * 128
#: with filters transformed in the program: at least one output tile per this many
#: filter weights (channels x filters)
FILTER_VALUES_PER_TILE = 1024
#: 2x2 output tiles transformed in one pass: the transformed tiles of a pass stay in
#: the cache (128 to 512 measured best for 128 to 1024 channels, see the README)
CHUNK_TILES = 256


def pays(channels: int, filters: int, tiles: int | None = None) -> bool:
    """Whether a 3x3 stride-1 convolution ``channels -> filters`` is faster as Winograd
    F(2x2, 3x3) than as XLA's CPU convolution (measured in benchmarks/README.md).
    ``tiles`` (2x2 output tiles of the whole batch) is given when the filters are
    transformed in the same program: that costs a pass over 16 x channels x filters
    values, so it takes at least one tile per :data:`FILTER_VALUES_PER_TILE` filter
    weights (3x3, 768 -> 1024 on 8x8 maps, batch 8, 128 tiles: 75 ms against XLA's 48;
    256 -> 384, 128 tiles: 4.3 against 5.4)."""
    if min(channels, filters) < 64 or channels * filters < MIN_CHANNEL_PRODUCT:
        return False
    return tiles is None or tiles * FILTER_VALUES_PER_TILE >= channels * filters


@jax.jit
def filter_transform(k: jax.Array) -> jax.Array:
    """``k (3, 3, C, F)`` -> ``U (16, C, F)``, ``U[4a + b] = (G k G^T)[a, b]`` with
    ``G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]``: each of the 16
    as a sum over the 9 taps, one fused pass over the weights (stacking 16 separate
    expressions measured 2x slower for 3x3x768x1024).  Jitted: called eagerly (to lay
    out inference weights) it is one program, not 17 passes over the weights."""
    if k.ndim != 4 or k.shape[:2] != (3, 3):
        raise ValueError(f"filter_transform: expected a (3, 3, C, F) kernel, received {k.shape}")
    coef = np.einsum("ai,bj->abij", _G, _G).reshape(16, 9).astype(np.float32)
    taps = k.reshape((9, 1) + k.shape[2:])
    u = None
    for t in range(9):
        term = jnp.asarray(coef[:, t], k.dtype).reshape(16, 1, 1) * taps[t]
        u = term if u is None else u + term
    return u


def _b_transform(d0, d1, d2, d3):
    """One axis of ``B^T d B``, ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
    [0, 1, 0, -1]]``."""
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _a_transform(m0, m1, m2, m3):
    """One axis of ``A^T m A``, ``A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]``."""
    return [m0 + m1 + m2, m1 - m2 - m3]


def _input_tiles(xp: jax.Array, rows: int, cols: int) -> jax.Array:
    """``xp (b, 2 rows + 2, 2 cols + 2, C)`` -> ``V (16, b * rows * cols, C)``: the
    transformed 4x4 tiles at stride 2, one axis at a time (a stack of 4, then 4: one
    stack of 16 expressions compiled 3x and ran 6x slower, measured)."""
    b, c = xp.shape[0], xp.shape[-1]
    along_h = jnp.stack(_b_transform(*[xp[:, a:a + 2 * rows:2] for a in range(4)]), axis=0)
    v = jnp.stack(_b_transform(*[along_h[:, :, :, q:q + 2 * cols:2] for q in range(4)]),
                  axis=1)  # (4, 4, b, rows, cols, C)
    return v.reshape(16, b * rows * cols, c)


def _output_tiles(m: jax.Array, b: int, rows: int, cols: int) -> jax.Array:
    """``M (16, b * rows * cols, F)`` -> the outputs ``(b, 2 rows, 2 cols, F)``."""
    f = m.shape[-1]
    m = m.reshape(4, 4, b, rows, cols, f)
    along_h = jnp.stack(_a_transform(m[0], m[1], m[2], m[3]), axis=0)  # (2, 4, b, ...)
    y = jnp.stack(_a_transform(*[along_h[:, q] for q in range(4)]), axis=1)  # (2, 2, b, ...)
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * rows, 2 * cols, f)


def winograd_conv(x: jax.Array, u: jax.Array, padding, policy: Policy = FP32,
                  chunk_tiles: int | None = None) -> jax.Array:
    """3x3 stride-1 cross-correlation of ``x (B, H, W, C)`` zero-padded by ``padding``
    (``((lo_h, hi_h), (lo_w, hi_w))``, each >= 0) with the filters ``u (16, C, F)``
    transformed by :func:`filter_transform`: output ``(B, H + lo_h + hi_h - 2,
    W + lo_w + hi_w - 2, F)`` in ``policy.accum_dtype``.

    ``chunk_tiles`` (default :data:`CHUNK_TILES`) bounds the tiles of one pass."""
    if x.ndim != 4 or u.ndim != 3 or u.shape[0] != 16 or u.shape[1] != x.shape[3]:
        raise ValueError(f"winograd_conv: expected x (B, H, W, C) and u (16, C, F), "
                         f"received {x.shape} and {u.shape}")
    (lo_h, hi_h), (lo_w, hi_w) = padding
    n_b, h, w, c = x.shape
    f = u.shape[-1]
    oh, ow = h + lo_h + hi_h - 2, w + lo_w + hi_w - 2
    if oh < 1 or ow < 1:
        raise ValueError(f"winograd_conv: no output for input {x.shape} and padding {padding}")
    budget = chunk_tiles or CHUNK_TILES
    tw = -(-ow // 2)
    th = -(-oh // 2)
    # bands of `rows` tile rows, as even as the budget allows (a whole image when it fits)
    n_bands = -(-(th * tw) // budget)
    rows = -(-th // n_bands)
    n_bands = -(-th // rows)
    xp = lax.pad(x.astype(policy.accum_dtype), jnp.zeros((), policy.accum_dtype),
                 [(0, 0, 0), (lo_h, 2 * n_bands * rows + 2 - h - lo_h, 0),
                  (lo_w, 2 * tw + 2 - w - lo_w, 0), (0, 0, 0)])
    if n_bands > 1:  # overlapping bands (2 rows shared) as images of their own
        xp = jnp.stack([xp[:, 2 * rows * i:2 * rows * (i + 1) + 2] for i in range(n_bands)],
                       axis=1).reshape(n_b * n_bands, 2 * rows + 2, 2 * tw + 2, c)
    u = u.astype(policy.accum_dtype)
    n_img = xp.shape[0]
    n_chunks = -(-n_img // max(1, budget // (rows * tw)))
    per = -(-n_img // n_chunks)  # band images per chunk, as even as possible

    def chunk(xc):
        v = _input_tiles(xc, rows, tw)
        m = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=policy.precision,
                            preferred_element_type=policy.accum_dtype)
        return _output_tiles(m, xc.shape[0], rows, tw)

    if n_chunks == 1:
        y = chunk(xp)
    else:
        pad = n_chunks * per - n_img
        if pad:
            xp = jnp.concatenate([xp, jnp.zeros((pad,) + xp.shape[1:], xp.dtype)], axis=0)
        y = lax.map(chunk, xp.reshape((n_chunks, per) + xp.shape[1:]))
        y = y.reshape((n_chunks * per,) + y.shape[2:])[:n_img]
    y = y.reshape(n_b, n_bands * 2 * rows, 2 * tw, f)
    return y[:, :oh, :ow]

