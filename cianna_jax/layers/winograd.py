"""Winograd F(2x2, 3x3) and F(2x2x2, 3x3x3): stride-1 3x3(x3) convolutions, fewer products.

A direct 3x3 convolution spends 9 multiply-adds per input channel, filter and output
pixel.  Winograd's minimal filtering algorithm (Lavin & Gray 2016, "Fast Algorithms for
Convolutional Neural Networks") computes each 2x2 block of outputs from a 4x4 tile of
the input: the tile and the filter are transformed (``V = B^T d B``, ``U = G g G^T``:
additions only, and halves), the 16 transformed positions are each one matrix product
over the channels (``M[t] = V[t] @ U[t]``, ``(tiles, C) @ (C, F)``), and the output
transform adds them back (``Y = A^T M A``).  The products, the whole cost for wide
layers, shrink 2.25x (in 3D, 4x4x4 tiles for 2x2x2 outputs: 64 products instead of 216,
3.4x); the transforms add O(C + F) work per tile.  Numerically it is the same sums
regrouped, with float32 errors of the order of a direct convolution's (relative 1e-6
measured, see the tests); F(4x4, 3x3) would save more but loses about two more digits,
so it is not used.

On the 2-core CPU this project measures on, XLA's 2D convolution reaches the machine's
matrix-product rate for wide layers, and this form beats it there (3x3, 768 -> 1024 on
8x8 maps, batch 8: 46-52 -> 25-28 ms, see benchmarks/README.md), but only if the
transformed tiles of one pass stay in the cache: the work runs in chunks of at most
:data:`CHUNK_TILES` tiles (whole images, or bands of tile rows of one image).  Narrow
2D layers (a few dozen channels) are faster as XLA's convolution; XLA's 3D convolution
is slow at every width and loses to this form everywhere measured: see :func:`pays`.
Gradients are autodiff of these sums, which are the exact gradients regrouped the same
way (the weight gradient is ``V^T dM`` in the transformed space).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..precision import FP32, Policy

_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])

__all__ = ["winograd_conv", "filter_transform", "pays", "weight_gradient_pays", "batch_tiles",
           "MIN_CHANNEL_PRODUCT", "MIN_3D_IMAGE_MACS", "FILTER_VALUES_PER_TILE",
           "TRAIN_FILTER_VALUES_PER_TILE",
           "WGRAD_FILTER_VALUES_PER_TILE", "CHUNK_TILES"]

#: a layer runs as Winograd when input channels x filters is at least this (and both
#: are at least 64).  3x3 forward / layer training step against XLA's convolution,
#: batch 8 (README): 128 -> 128 on 32x32 maps 1.38x / 1.21x; 64 -> 128 1.21x / 1.08x;
#: 64 -> 64 0.7x forward; 24 -> 32 on 64x64 0.44x
MIN_CHANNEL_PRODUCT = 128 * 128
#: with filters transformed in the program: at least one output tile per this many
#: filter weights (channels x filters)
FILTER_VALUES_PER_TILE = 1024
#: the same in a training step, where the forward and the input gradient both take the
#: Winograd form (3x3 layer training steps against XLA's convolution on channel-last
#: kernels, batch 8: 768 -> 1024 on 8x8 maps, 128 tiles, 6144 values per tile: 109-129
#: against 130-143 ms; 6x6, 72 tiles (10923): 84 against 96; 4x4, 32 tiles: 62 against
#: 55; batch 16 4x4 (12288): 92 against 91; 512 -> 1024, b4 6x6 (14564): 53 against 46,
#: b16 4x4 (8192): 68-77 against 63-70)
TRAIN_FILTER_VALUES_PER_TILE = 6144
#: 3D layers run as Winograd from this many multiply-adds per image of the direct
#: convolution (below, XLA's takes under a millisecond and the Winograd program's
#: compilation, 0.3-0.5 s, would not pay back over a short run)
MIN_3D_IMAGE_MACS = 2 ** 20
#: 3D weight gradient through the Winograd sums: at least one output tile per this many
#: filter weights
WGRAD_FILTER_VALUES_PER_TILE = 16
#: 2x2 output tiles transformed in one pass: the transformed tiles of a pass stay in
#: the cache (128 to 512 measured best for 128 to 1024 channels, see the README)
CHUNK_TILES = 256


def batch_tiles(batch: int, spatial) -> int:
    """The 2x2(x2) output tiles of a batch of maps of size ``spatial`` (stride 1,
    padding that keeps the size: each axis ``ceil(n / 2)`` tiles)."""
    return int(batch * np.prod([-(-int(n) // 2) for n in spatial]))


def pays(channels: int, filters: int, tiles: int | None = None, nd: int = 2,
         pixels: int | None = None, training: bool = False) -> bool:
    """Whether a 3x3 (``nd`` = 2) or 3x3x3 (``nd`` = 3) stride-1 convolution
    ``channels -> filters`` is faster as Winograd than as XLA's CPU convolution
    (measured in benchmarks/README.md).  In 2D only wide layers pay (see
    :data:`MIN_CHANNEL_PRODUCT`); XLA's 3D convolution runs far below the machine's
    matrix rate, and Winograd beat it 2-5x from 4 -> 8 to 128 -> 128 channels, so every
    3D layer with more than one input channel pays (one channel has its own form) once
    an image of ``pixels`` voxels costs :data:`MIN_3D_IMAGE_MACS` multiply-adds.
    ``tiles`` (2x2(x2) output tiles of the whole batch) is given when the filters are
    transformed in the same program: that costs a pass over 4^nd x channels x filters
    values, so it takes at least one tile per :data:`FILTER_VALUES_PER_TILE` filter
    weights (3x3, 768 -> 1024 on 8x8 maps, batch 8, 128 tiles: 75 ms against XLA's 48;
    256 -> 384, 128 tiles: 4.3 against 5.4), or per :data:`TRAIN_FILTER_VALUES_PER_TILE`
    in a training step (``training``)."""
    if nd == 3:
        if channels < 2 or (pixels or 0) * 27 * channels * filters < MIN_3D_IMAGE_MACS:
            return False
    elif min(channels, filters) < 64 or channels * filters < MIN_CHANNEL_PRODUCT:
        return False
    per_tile = TRAIN_FILTER_VALUES_PER_TILE if training else FILTER_VALUES_PER_TILE
    return tiles is None or tiles * per_tile >= channels * filters


def weight_gradient_pays(channels: int, filters: int, tiles: int, nd: int) -> bool:
    """Whether the weight gradient of a Winograd layer is faster as autodiff of the
    Winograd sums (``V^T dM`` per chunk, transformed back) than as XLA's convolution:
    in 3D, from one output tile of the batch per :data:`WGRAD_FILTER_VALUES_PER_TILE`
    filter weights (3x3x3 layer training steps, README: 128 -> 128 on 16^3 maps,
    batch 2, 1024 tiles: 171 against 226 ms; 64 -> 128 on 8^3, batch 4, 256 tiles: 51
    against 30); never in 2D (3x3 128 -> 192 on 32x32, batch 8: 76 against 60)."""
    return nd == 3 and tiles * WGRAD_FILTER_VALUES_PER_TILE >= channels * filters


@jax.jit
def filter_transform(k: jax.Array) -> jax.Array:
    """``k (3, 3, C, F)`` -> ``U (16, C, F)``, ``U[4a + b] = (G k G^T)[a, b]`` with
    ``G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]``; a 3D kernel
    ``(3, 3, 3, C, F)`` gives ``(64, C, F)`` (G along each of the three axes).  One
    matrix product ``(4^n, 3^n) @ (3^n, C F)``: it reads the weights once (a fused sum
    over the taps re-read them for each of the 16 outputs: 18-30 against 7.6 ms for
    3x3x768x1024, see benchmarks/README.md), at full float32 precision (no TF32 on
    GPUs).  Jitted: called eagerly (to lay out inference weights) it is one program."""
    nd = k.ndim - 2
    if nd not in (2, 3) or k.shape[:nd] != (3,) * nd:
        raise ValueError(f"filter_transform: expected a (3, 3, C, F) or (3, 3, 3, C, F) "
                         f"kernel, received {k.shape}")
    u = lax.dot(jnp.asarray(_filter_coefficients(nd), k.dtype), k.reshape(3 ** nd, -1),
                precision=lax.Precision.HIGHEST, preferred_element_type=k.dtype)
    return u.reshape((4 ** nd,) + k.shape[nd:])


def _filter_coefficients(nd: int) -> np.ndarray:
    """``(4^nd, 3^nd)``: the rows of ``G`` along each axis (first axis outermost), the
    taps in the kernel's axis order."""
    coef = _G
    for n in range(1, nd):
        coef = np.einsum("AI,bj->AbIj", coef, _G).reshape(4 ** (n + 1), 3 ** (n + 1))
    return coef.astype(np.float32)


#: the Winograd positions of the flipped filters along one axis: ``G J = P G`` (``J``
#: reverses the 3 taps, ``P`` swaps rows 0 and 3 of ``G``), so the transform of a
#: flipped kernel is the transform of the kernel with positions 0 and 3 swapped
FLIP = (3, 1, 2, 0)


def _b_transform(d0, d1, d2, d3, flipped: bool = False):
    """One axis of ``B^T d B``, ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
    [0, 1, 0, -1]]`` (positions in :data:`FLIP` order when ``flipped``)."""
    out = [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    return [out[q] for q in FLIP] if flipped else out


def _a_transform(m0, m1, m2, m3):
    """One axis of ``A^T m A``, ``A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]``."""
    return [m0 + m1 + m2, m1 - m2 - m3]


def _input_tiles(xp: jax.Array, tiles: tuple[int, ...], flipped: bool = False) -> jax.Array:
    """``xp (b, 2 t_0 + 2, ..., C)`` -> ``V (4^nd, b * prod(t), C)``: the transformed
    4x4(x4) tiles at stride 2, one axis at a time (for 2D a stack of 4, then 4: one
    stack of 16 expressions compiled 3x and ran 6x slower, measured); positions in
    :data:`FLIP` order along every axis when ``flipped``."""
    b, c = xp.shape[0], xp.shape[-1]
    v = xp[None]
    for ax, t in enumerate(tiles):  # v: (4^ax, b, ...) -> (4^ax, 4, b, ...)
        cells = [lax.slice_in_dim(v, q, q + 2 * t - 1, stride=2, axis=2 + ax)
                 for q in range(4)]
        v = jnp.stack(_b_transform(*cells, flipped), axis=1).reshape((-1,) + v.shape[1:2 + ax]
                                                            + (t,) + v.shape[3 + ax:])
    return v.reshape(4 ** len(tiles), b * int(np.prod(tiles)), c)


def _output_tiles(m: jax.Array, b: int, tiles: tuple[int, ...],
                  flipped: bool = False) -> jax.Array:
    """``M (4^nd, b * prod(t), F)`` -> the outputs ``(b, 2 t_0, ..., F)``; ``M``'s
    positions in :data:`FLIP` order along every axis when ``flipped``."""
    nd, f = len(tiles), m.shape[-1]
    y = m.reshape((4,) * nd + (b,) + tuple(tiles) + (f,))
    order = FLIP if flipped else range(4)
    for ax in range(nd):  # the transform along tile axis ax: 4 cells -> 2 outputs
        cells = [lax.index_in_dim(y, q, axis=ax, keepdims=False) for q in order]
        y = jnp.stack(_a_transform(*cells), axis=ax)
    # (2,)*nd + (b, *t, F) -> (b, t_0, 2, t_1, 2, ..., F)
    perm = (nd,) + tuple(i for ax in range(nd) for i in (nd + 1 + ax, ax)) + (2 * nd + 1,)
    return y.transpose(perm).reshape((b,) + tuple(2 * t for t in tiles) + (f,))


def winograd_conv(x: jax.Array, u: jax.Array, padding, policy: Policy = FP32,
                  chunk_tiles: int | None = None, rotated: bool = False) -> jax.Array:
    """3x3 (3x3x3) stride-1 cross-correlation of ``x (B, *sp, C)`` (2 or 3 spatial
    axes) zero-padded by ``padding`` (one ``(lo, hi)`` pair per axis, each >= 0) with
    the filters ``u (4^nd, C, F)`` transformed by :func:`filter_transform`: output
    ``(B, *(n + lo + hi - 2), F)`` in ``policy.accum_dtype``.

    ``rotated``: correlate instead with the rotated filters of the input gradient
    (flipped taps, input and output channels swapped) of the layer whose transformed
    filters ``u (4^nd, F, C)`` are: ``x (B, *sp, C)`` holds that layer's output
    gradient.  No rotated kernel is made: the tiles are transformed in :data:`FLIP`
    order and the products contract ``u``'s last axis, so a training step transforms
    each layer's filters once and never transposes them.

    ``chunk_tiles`` (default :data:`CHUNK_TILES`) bounds the tiles of one pass."""
    nd = x.ndim - 2
    if (nd not in (2, 3) or u.ndim != 3 or u.shape[0] != 4 ** nd
            or u.shape[2 if rotated else 1] != x.shape[-1]):
        want = "(16, F, C)" if rotated else "(16, C, F)"
        raise ValueError(f"winograd_conv: expected x (B, H, W, C) with u {want} or "
                         f"x (B, D, H, W, C) with u (64, ...), received {x.shape} and "
                         f"{u.shape}")
    n_b, sp = x.shape[0], x.shape[1:-1]
    out = [n + lo + hi - 2 for n, (lo, hi) in zip(sp, padding)]
    if min(out) < 1:
        raise ValueError(f"winograd_conv: no output for input {x.shape} and padding {padding}")
    budget = chunk_tiles or CHUNK_TILES
    tiles = [-(-o // 2) for o in out]
    per_image = int(np.prod(tiles))
    # bands of `rows` tiles along the first axis, as even as the budget allows (a whole
    # image when it fits)
    n_bands = -(-per_image // budget)
    rows = -(-tiles[0] // n_bands)
    n_bands = -(-tiles[0] // rows)
    full = [2 * n_bands * rows + 2] + [2 * t + 2 for t in tiles[1:]]
    xp = lax.pad(x.astype(policy.accum_dtype), jnp.zeros((), policy.accum_dtype),
                 [(0, 0, 0)] + [(lo, m - n - lo, 0) for (lo, _), m, n in
                                zip(padding, full, sp)] + [(0, 0, 0)])
    if n_bands > 1:  # overlapping bands (2 planes shared) as images of their own
        xp = jnp.stack([xp[:, 2 * rows * i:2 * rows * (i + 1) + 2] for i in range(n_bands)],
                       axis=1).reshape((n_b * n_bands, 2 * rows + 2) + xp.shape[2:])
    band = (rows,) + tuple(tiles[1:])
    u = u.astype(policy.accum_dtype)
    n_img = xp.shape[0]
    n_chunks = -(-n_img // max(1, budget // int(np.prod(band))))
    per = -(-n_img // n_chunks)  # band images per chunk, as even as possible

    def chunk(xc):
        v = _input_tiles(xc, band, rotated)
        m = lax.dot_general(v, u, (((2,), (2 if rotated else 1,)), ((0,), (0,))),
                            precision=policy.precision, preferred_element_type=policy.accum_dtype)
        return _output_tiles(m, xc.shape[0], band, rotated)

    if n_chunks == 1:
        y = chunk(xp)
    else:
        pad = n_chunks * per - n_img
        if pad:
            xp = jnp.concatenate([xp, jnp.zeros((pad,) + xp.shape[1:], xp.dtype)], axis=0)
        y = lax.map(chunk, xp.reshape((n_chunks, per) + xp.shape[1:]))
        y = y.reshape((n_chunks * per,) + y.shape[2:])[:n_img]
    y = y.reshape((n_b, n_bands * 2 * rows) + y.shape[2:])
    return y[(slice(None),) + tuple(slice(0, o) for o in out)]
