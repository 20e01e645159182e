"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(2x2x2, 3x3x3): stride-1 3x3(x3) convolutions
with fewer products.

A direct 3x3 convolution spends 9 multiply-adds per input channel, filter and output
pixel.  Winograd's minimal filtering algorithm (Lavin & Gray 2016, "Fast Algorithms for
Convolutional Neural Networks") computes each 2x2 block of outputs from a 4x4 tile of
the input: the tile and the filter are transformed (``V = B^T d B``, ``U = G g G^T``:
additions only, and halves), the 16 transformed positions are each one matrix product
over the channels (``M[t] = V[t] @ U[t]``, ``(tiles, C) @ (C, F)``), and the output
transform adds them back (``Y = A^T M A``).  The products, the whole cost for wide
layers, shrink 2.25x (in 3D, 4x4x4 tiles for 2x2x2 outputs: 64 products instead of 216,
3.4x); the transforms add O(C + F) work per tile.  Numerically it is the same sums
regrouped, with float32 errors of the order of a direct convolution's (5-7e-7 of the
output scale against a float64 reference, XLA's convolution 4e-7; see the tests).

F(4x4, 3x3) (6x6 tiles, 36 products per 16 outputs: 4x fewer than direct) is another
1.3-1.6x faster on maps of 16x16 or more, but its larger transform coefficients give
errors of 1-1.6e-5 of the output scale (F(3x3, 3x3): 4-6e-6 for little gain): it runs
only under CIANNA's reduced-precision modes (TF32, FP16, BF16), whose products or
activations round at 1e-3 anyway; the default FP32 mode keeps F(2x2, 3x3)
(:func:`tile_size`).  Its points (0, 1, -1, 2, 1/2, infinity) are closed under
``p -> 1/p``, so the flipped filters of the input gradient are a permutation of the
transformed filters times powers of two, as for F(2x2, 3x3) (:class:`Tile`).

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

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..host_cpu import vector_unit
from ..precision import FP32, Policy

__all__ = ["winograd_conv", "filter_transform", "pays", "weight_gradient_pays", "batch_tiles",
           "tile_size", "tile_of", "Tile", "F2", "F4", "CHUNK_TILES_4X4", "MIN_4X4_MAP",
           "MIN_CHANNEL_PRODUCT", "MIN_3D_IMAGE_MACS", "FILTER_VALUES_PER_TILE",
           "TRAIN_FILTER_VALUES_PER_TILE",
           "WGRAD_FILTER_VALUES_PER_TILE", "WGRAD_2D_FILTER_VALUES_PER_TILE", "CHUNK_TILES",
           "weight_gradient_chunk", "WGRAD_TILE_VALUES_PER_FILTER_VALUE", "WGRAD_PASS_VALUES",
           "LARGE_MAP_PIXELS", "MIN_LARGE_MAP_CHANNELS", "AVX2_LARGE_MAP",
           "default_chunk_tiles"]

#: a layer runs as Winograd when input channels x filters is at least this (and both
#: are at least 64).  3x3 forward / layer training step against XLA's convolution,
#: batch 8 (README, fourth session, before channel-last kernels made XLA's faster):
#: 128 -> 128 on 32x32 maps 1.38x / 1.21x; 64 -> 128 1.21x / 1.08x; 64 -> 64 0.7x
#: forward; 24 -> 32 on 64x64 0.44x.  Sixteenth session: 128 -> 128 on 16x16 1.17x /
#: 1.07x, on 32x32 0.85x / 0.89x, hence :data:`LARGE_MAP_PIXELS`
MIN_CHANNEL_PRODUCT = 128 * 128
#: F(2x2, 3x3) on maps of more than this many pixels per image (larger than 16x16) also
#: needs ``C F / (C + F)`` of at least :data:`MIN_LARGE_MAP_CHANNELS` (see :func:`pays`)
LARGE_MAP_PIXELS = 256
#: see :data:`LARGE_MAP_PIXELS`
MIN_LARGE_MAP_CHANNELS = 100
#: the same two limits, (pixels, ``C F / (C + F)``), on processors whose widest vector
#: unit is AVX2 (``host_cpu.vector_unit``), where XLA's matrix product ran at about half
#: its AVX-512 rate and Winograd paid on larger maps (3x3 forward / layer training
#: step against XLA's convolution, batch 8, 2-core AVX2 EPYC, medians of 7 alternated
#: rounds: 128 -> 128 on 32x32 maps 1.27x / 1.20x, on 64x64 0.96x / 1.10x; 128 -> 192
#: on 32x32 1.32x / 1.18x, 64x64 1.16x / 1.06x, 128x128 1.02x / 1.08x; 128 -> 256 on
#: 64x64 1.21x / 1.16x; benchmarks/README.md, twenty-fifth session).  Other units
#: (AVX-512, unknown) keep the limits above
AVX2_LARGE_MAP = (1024, 70)
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
#: 2D weight gradient through the Winograd sums: at most one output tile per this many
#: filter weights (deep layers on small maps, where XLA's weight-gradient convolution is
#: slow; layer training step, batch 8, XLA against Winograd: 768 -> 1024 on 8x8 maps,
#: 6144 values per tile, 114 against 96 ms; 16x16 (1536) 352 against 296; 256 -> 384 on
#: 16x16 (192) 43 against 42; 192 -> 384 on 16x16 (144) 32 against 34; 128 -> 192 on
#: 32x32 (12) 46 against 49)
WGRAD_2D_FILTER_VALUES_PER_TILE = 1024
#: 2x2 output tiles transformed in one pass: the transformed tiles of a pass stay in
#: the cache (128 to 512 measured best for 128 to 1024 channels, see the README)
CHUNK_TILES = 256
#: the same for 4x4 output tiles (F(4x4, 3x3)): 3x3 forward, batch 8, against 113 tiles
#: per pass: 128 -> 192 on 64x64 maps 41.4 -> 34.1 ms, 256 -> 384 on 32x32 41.9 -> 29.1,
#: 768 -> 1024 on 16x16 69.2 -> 53.9 (448 to 512 alike)
CHUNK_TILES_4X4 = 448
#: F(4x4, 3x3) runs on maps of at least this size along both axes (and only under a
#: policy that allows reduced-precision products, see :func:`tile_size`): 3x3 forward,
#: batch 8, against F(2x2, 3x3): 128 -> 192 on 32x32 maps 12.3 -> 8.7 ms, 64x64 51.3 ->
#: 34.1; 192 -> 384 on 16x16 8.4 -> 5.3; 768 -> 1024 on 16x16 78.6 -> 53.5, on 8x8 19.2
#: against 20.5 (too few tiles)
MIN_4X4_MAP = 16

#: the rotated (input-gradient) product puts the filters first when they have at least
#: this many output channels per tile of the pass (see :func:`winograd_conv`)
SWAP_CHANNELS_PER_TILE = 2


def batch_tiles(batch: int, spatial, m: int = 2) -> int:
    """The ``m``-wide output tiles (2x2(x2) by default) of a batch of maps of size
    ``spatial`` (stride 1, padding that keeps the size: each axis ``ceil(n / m)``)."""
    return int(batch * np.prod([-(-int(n) // m) for n in spatial]))


def pays(channels: int, filters: int, tiles: int | None = None, nd: int = 2,
         pixels: int | None = None, training: bool = False, m: int = 2,
         unit: str | None = "host") -> bool:
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
    in a training step (``training``).

    F(2x2, 3x3) (``m`` = 2: the float32 mode) on maps larger than 16x16
    (:data:`LARGE_MAP_PIXELS`) also needs ``C F / (C + F)`` >= :data:`MIN_LARGE_MAP_CHANNELS`:
    its transforms cost per tile about ``C + F`` against a product saving ``C F``, and
    on such maps XLA's convolution keeps its rate while the transforms lose theirs (3x3
    layer forward / training step against XLA's, batch 8: 128 -> 128 on 16x16 maps
    1.17x / 1.07x, on 32x32 0.85x / 0.89x, on 64x64 0.77x / 0.84x; 128 -> 192 on 32x32
    1.01x / 0.98x, 64x64 0.82x / 0.88x; 128 -> 256 on 32x32 0.88x / 0.90x; 256 -> 256
    (128) 1.15x / 0.98x; 256 -> 384 (154) 1.32x / 1.05x; SDC1 at 256x256 with its 128 ->
    192 layer as XLA's convolution: training x1.03-1.10, inference x1.08-1.10;
    benchmarks/README.md, sixteenth session; these were AVX-512 machines: on AVX2 the
    limits are :data:`AVX2_LARGE_MAP`, for the processor's vector ``unit``, "host" for
    this machine's, see :mod:`cianna_jax.host_cpu`).  F(4x4, 3x3) (``m`` = 4, the
    reduced-precision modes) keeps paying there (128 -> 192 on 64x64: 1.16x / 1.14x)."""
    if nd == 3:
        if channels < 2 or (pixels or 0) * 27 * channels * filters < MIN_3D_IMAGE_MACS:
            return False
    elif min(channels, filters) < 64 or channels * filters < MIN_CHANNEL_PRODUCT:
        return False
    elif m == 2:
        unit = vector_unit() if unit == "host" else unit
        large, min_width = (AVX2_LARGE_MAP if unit == "AVX2"
                            else (LARGE_MAP_PIXELS, MIN_LARGE_MAP_CHANNELS))
        if (pixels or 0) > large and channels * filters < min_width * (channels + filters):
            return False
    per_tile = TRAIN_FILTER_VALUES_PER_TILE if training else FILTER_VALUES_PER_TILE
    return tiles is None or tiles * per_tile >= channels * filters


def tile_size(in_spatial, policy: Policy = FP32) -> int:
    """The output tile ``m`` of a 3x3 layer's Winograd form on maps ``in_spatial``: 4
    (F(4x4, 3x3), 36 products per 16 outputs instead of 64, 1.3-1.6x faster than
    F(2x2, 3x3) on maps of :data:`MIN_4X4_MAP` or more) when ``policy`` allows
    reduced-precision products (``precision`` not "highest": CIANNA's TF32, FP16 and
    BF16 modes), else 2.  F(4x4, 3x3)'s float32 errors are about 1e-5 of the output
    scale (F(2x2, 3x3) and a direct convolution: 1e-6), far below the TF32 products'
    or the 16-bit activations' rounding (1e-3) but not what CIANNA's default FP32
    mode (cuBLAS "pedantic" math) promises; 3D layers keep F(2x2x2, 3x3x3)."""
    if (len(in_spatial) == 2 and policy.precision != "highest"
            and min(in_spatial) >= MIN_4X4_MAP):
        return 4
    return 2


def weight_gradient_pays(channels: int, filters: int, tiles: int, nd: int) -> bool:
    """Whether the weight gradient of a Winograd layer is faster as autodiff of the
    Winograd sums (``V^T dM`` per chunk, transformed back) than as XLA's convolution:
    in 3D, from one output tile of the batch per :data:`WGRAD_FILTER_VALUES_PER_TILE`
    filter weights (3x3x3 layer training steps, README: 128 -> 128 on 16^3 maps,
    batch 2, 1024 tiles: 171 against 226 ms; 64 -> 128 on 8^3, batch 4, 256 tiles: 51
    against 30); in 2D the other way round, for deep layers on few tiles, at most one
    per :data:`WGRAD_2D_FILTER_VALUES_PER_TILE` filter weights (many tiles: XLA's
    convolution, 3x3 128 -> 192 on 32x32, batch 8: 76 against 60)."""
    if nd == 3:
        return tiles * WGRAD_FILTER_VALUES_PER_TILE >= channels * filters
    return tiles * WGRAD_2D_FILTER_VALUES_PER_TILE <= channels * filters


#: the weight gradient's transformed tiles of one pass (``V`` and ``dM``) may hold up to
#: this many values per value of the transformed weight gradient it accumulates into
#: (see :func:`weight_gradient_chunk`)
WGRAD_TILE_VALUES_PER_FILTER_VALUE = 4
#: ... and at most this many values in all (256 MB of float32)
WGRAD_PASS_VALUES = 2 ** 26


def default_chunk_tiles(m: int) -> int:
    """Output tiles of one pass of :func:`winograd_conv` for F(m, 3) by default:
    :data:`CHUNK_TILES_4X4` for 4x4 tiles, else :data:`CHUNK_TILES`."""
    return CHUNK_TILES_4X4 if m == 4 else CHUNK_TILES


def weight_gradient_chunk(positions: int, channels: int, filters: int, tiles: int,
                          nd: int = 2) -> int | None:
    """Output tiles (of the tile ``positions`` gives: 16, 64 for 2x2(x2), 36 for 4x4;
    ``tiles`` counts them; ``nd`` spatial axes) per pass for the weight gradient through
    the Winograd sums
    (autodiff of :func:`winograd_conv` with that ``chunk_tiles``), or None for the
    default passes.  Each pass adds its ``V^T dM`` (``(P, C, F)``) into the gradient
    summed so far: a read and a write of ``P C F`` values against ``2 P T C F`` flops
    of product, as costly as a quarter of a 256-tile pass's product when the sum
    leaves the cache.  Where the transformed tiles of all ``tiles`` hold at most
    :data:`WGRAD_TILE_VALUES_PER_FILTER_VALUE` values per gradient value (deep 2D
    layers on few tiles, the only 2D layers whose weight gradient runs this way, see
    :func:`weight_gradient_pays`), the passes grow up to :data:`WGRAD_PASS_VALUES`
    values of tiles: SDC1's 3x3 768 -> 1024 on 16x16 maps, batch 8 (512 tiles): 150 ->
    128 ms in one pass; 1024 -> 1024, batch 16 (1024 tiles): 345 -> 282 ms
    (benchmarks/README.md, sixteenth session).  3D layers with few channels on many
    tiles keep the default passes (64 -> 64 on 16^3, batch 2: alike; 32 -> 64 on 32^3:
    one pass 175 -> 231 ms)."""
    if tiles * (channels + filters) > WGRAD_TILE_VALUES_PER_FILTER_VALUE * channels * filters:
        return None
    return max(default_chunk_tiles(tile_of(positions, nd).m),
               min(tiles, WGRAD_PASS_VALUES // (positions * (channels + filters))))


class Tile(NamedTuple):
    """One axis of Winograd F(m, 3): ``m`` outputs from ``m + 2`` inputs through
    ``m + 2`` products, ``y = A^T [(G g) * (B^T d)]``.  ``flip`` and ``scale`` give the
    transform of the flipped filter (taps reversed): ``G J = diag(scale) P G``, ``P``
    the permutation of positions ``flip`` (an involution), scales powers of two."""

    m: int
    bt: tuple
    g: tuple
    at: tuple
    flip: tuple
    scale: tuple


#: F(2, 3) (Lavin & Gray's points 0, 1, -1, infinity)
F2 = Tile(2,
          bt=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
          g=((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
          at=((1, 1, 1, 0), (0, 1, -1, -1)),
          flip=(3, 1, 2, 0), scale=(1, 1, 1, 1))
#: F(4, 3) on the points 0, 1, -1, 2, 1/2, infinity: closed under ``p -> 1/p``, so the
#: flipped filter's transform is a permutation of the filter's (times powers of two),
#: which the input gradient uses (Toom-Cook: ``B^T = V^-T``, ``G`` and ``A^T`` the
#: evaluations at the points; rows scaled to small integers in ``B^T``)
F4 = Tile(4,
          bt=((2, -5, 0, 5, -2, 0), (0, -2, 3, 3, -2, 0), (0, -2, 7, -7, 2, 0),
              (0, 1, -2, -1, 2, 0), (0, 2, -1, -2, 1, 0), (0, -2, 5, 0, -5, 2)),
          g=((1 / 2, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 18, -1 / 18, 1 / 18),
             (1 / 18, 1 / 9, 2 / 9), (16 / 9, 8 / 9, 4 / 9), (0, 0, 1 / 2)),
          at=((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, 1 / 2, 0), (0, 1, 1, 4, 1 / 4, 0),
              (0, 1, -1, 8, 1 / 8, 1)),
          flip=(5, 1, 2, 4, 3, 0), scale=(1, 1, 1, 1 / 8, 8, 1))
#: the tiles of each dimensionality (3D: F(2x2x2, 3x3x3) only)
_TILES = {2: (F2, F4), 3: (F2,)}


def tile_of(u_positions: int, nd: int) -> Tile:
    """The tile of transformed filters with ``u_positions`` positions in ``nd`` dims
    (2D: 16 for F(2x2, 3x3), 36 for F(4x4, 3x3); 3D: 64 for F(2x2x2, 3x3x3))."""
    for t in _TILES.get(nd, ()):
        if (t.m + 2) ** nd == u_positions:
            return t
    raise ValueError(f"winograd: no tile has {u_positions} positions in {nd}D")


@partial(jax.jit, static_argnames=("m",))
def filter_transform(k: jax.Array, m: int = 2) -> jax.Array:
    """``k (3, 3, C, F)`` -> ``U ((m+2)^2, C, F)``, ``U[(m+2) a + b] = (G k G^T)[a, b]``
    for the tile F(m, 3) (``m`` = 2, :data:`F2`: 16 positions; 4, :data:`F4`: 36); a 3D
    kernel ``(3, 3, 3, C, F)`` gives ``(64, C, F)`` (F(2, 3), G along each of the three
    axes).  One matrix product ``((m+2)^n, 3^n) @ (3^n, C F)``: it reads the weights
    once (a fused sum over the taps re-read them for each of the 16 outputs: 18-30
    against 7.6 ms for 3x3x768x1024, see benchmarks/README.md), at full float32
    precision (no TF32 on GPUs).  Jitted: called eagerly (to lay out inference
    weights) it is one program."""
    nd = k.ndim - 2
    tile = next((t for t in _TILES.get(nd, ()) if t.m == m), None)
    if tile is None or k.shape[:nd] != (3,) * nd:
        raise ValueError(f"filter_transform: expected a (3, 3, C, F) kernel with m = 2 or 4, "
                         f"or (3, 3, 3, C, F) with m = 2, received {k.shape} and m = {m}")
    n = m + 2
    u = lax.dot(jnp.asarray(_filter_coefficients(nd, tile), k.dtype),
                k.reshape(3 ** nd, -1), precision=lax.Precision.HIGHEST,
                preferred_element_type=k.dtype)
    return u.reshape((n ** nd,) + k.shape[nd:])


def _filter_coefficients(nd: int, tile: Tile = F2) -> np.ndarray:
    """``((m+2)^nd, 3^nd)``: the rows of ``G`` along each axis (first axis outermost),
    the taps in the kernel's axis order."""
    g = np.asarray(tile.g, np.float64)
    coef = g
    for _ in range(1, nd):
        coef = np.einsum("AI,bj->AbIj", coef, g).reshape(coef.shape[0] * g.shape[0],
                                                         coef.shape[1] * 3)
    return coef.astype(np.float32)


def _combine(rows, cells):
    """``[sum_j rows[i][j] cells[j] for i]``: additions, and multiplications only by
    coefficients other than +-1 (zeros skipped)."""
    out = []
    for row in rows:
        acc = None
        for c, v in zip(row, cells):
            if c == 0:
                continue
            if acc is None:
                acc = v if c == 1 else -v if c == -1 else v * np.float32(c)
            else:
                acc = acc + v if c == 1 else acc - v if c == -1 else acc + v * np.float32(c)
        out.append(acc)
    return out


def _b_transform(cells, tile: Tile, flipped: bool = False):
    """One axis of ``B^T d B``; for the flipped filters (``flipped``) the positions in
    ``tile.flip`` order, each times its ``scale`` (``G J = D P G``)."""
    out = _combine(tile.bt, cells)
    if not flipped:
        return out
    return [out[p] if tile.scale[p] == 1 else out[p] * np.float32(tile.scale[p])
            for p in tile.flip]


def _input_tiles(xp: jax.Array, tiles: tuple[int, ...], tile: Tile,
                 flipped: bool = False) -> jax.Array:
    """``xp (b, m t_0 + 2, ..., C)`` -> ``V ((m+2)^nd, b * prod(t), C)``: the
    transformed ``(m+2)``-wide tiles at stride ``m``, one axis at a time (for 2D a stack
    of ``m+2``, then ``m+2``: one stack of 16 expressions compiled 3x and ran 6x slower,
    measured); positions in the flipped filters' order along every axis when
    ``flipped``."""
    b, c = xp.shape[0], xp.shape[-1]
    m, n = tile.m, tile.m + 2
    v = xp[None]
    for ax, t in enumerate(tiles):  # v: (n^ax, b, ...) -> (n^ax, n, b, ...)
        cells = [lax.slice_in_dim(v, q, q + m * (t - 1) + 1, stride=m, axis=2 + ax)
                 for q in range(n)]
        v = jnp.stack(_b_transform(cells, tile, flipped), axis=1).reshape(
            (-1,) + v.shape[1:2 + ax] + (t,) + v.shape[3 + ax:])
    return v.reshape(n ** len(tiles), b * int(np.prod(tiles)), c)


#: the output transform's gradient written by hand (:func:`_output_tiles_bwd`: each
#: position's cotangent one sum of the outputs' cotangents, stacked), not autodiff's
#: (each cell's cotangent padded back into its axis and the pads added); module constant
#: for A/B runs (benchmarks/ab_options.py --switch)
HAND_OUTPUT_VJP = True


def _output_layout(nd: int, m: int, b: int, f: int, tiles: tuple[int, ...],
                   channels_first: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The transformed outputs' shape ``(m,)*nd + (b, *t, F)`` (or ``(F, b, *t)``) and the
    permutation that brings it to ``(b, t_0, m, t_1, m, ..., F)``."""
    lead = (f, b) if channels_first else (b,)
    shape = (m,) * nd + lead + tuple(tiles) + ((f,) if not channels_first else ())
    first = nd + len(lead) - 1  # the axis of b
    perm = (first,) + tuple(i for ax in range(nd) for i in (first + 1 + ax, ax)) + \
        ((nd,) if channels_first else (2 * nd + 1,))
    return shape, perm


def _output_tiles_impl(mm: jax.Array, b: int, tiles: tuple[int, ...], tile: Tile,
                       flipped: bool, channels_first: bool) -> jax.Array:
    nd, m = len(tiles), tile.m
    f = mm.shape[1] if channels_first else mm.shape[-1]
    lead = (f, b) if channels_first else (b,)
    y = mm.reshape((m + 2,) * nd + lead + tuple(tiles) + ((f,) if not channels_first else ()))
    order = tile.flip if flipped else range(m + 2)
    for ax in range(nd):  # the transform along tile axis ax: m + 2 cells -> m outputs
        cells = [lax.index_in_dim(y, q, axis=ax, keepdims=False) for q in order]
        y = jnp.stack(_combine(tile.at, cells), axis=ax)
    # (m,)*nd + (b, *t, F) [or (F, b, *t)] -> (b, t_0, m, t_1, m, ..., F)
    _, perm = _output_layout(nd, m, b, f, tiles, channels_first)
    return y.transpose(perm).reshape((b,) + tuple(m * t for t in tiles) + (f,))


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _output_tiles_hand(mm, b, tiles, tile, flipped, channels_first):
    return _output_tiles_impl(mm, b, tiles, tile, flipped, channels_first)


def _output_tiles_fwd(mm, b, tiles, tile, flipped, channels_first):
    return _output_tiles_impl(mm, b, tiles, tile, flipped, channels_first), mm.shape


def _output_tiles_bwd(b, tiles, tile, flipped, channels_first, mm_shape, g):
    """``M``'s cotangent from the outputs' ``g``: along each axis, position ``q``'s is
    ``sum_i A^T[i, q] g_i`` over the ``m`` outputs (the transform's transpose), the
    ``m + 2`` positions stacked (in the flipped order's inverse when ``flipped``)."""
    nd, m, n = len(tiles), tile.m, tile.m + 2
    f = g.shape[-1]
    shape, perm = _output_layout(nd, m, b, f, tiles, channels_first)
    gy = g.reshape(tuple(shape[p] for p in perm)).transpose(tuple(np.argsort(perm)))
    at_t = tuple(zip(*tile.at))  # n rows of m coefficients
    where = np.argsort(tile.flip if flipped else np.arange(n))  # position -> cell
    for ax in range(nd):
        outs = [lax.index_in_dim(gy, i, axis=ax, keepdims=False) for i in range(m)]
        cells = _combine(at_t, outs)
        zero = jnp.zeros_like(outs[0])
        gy = jnp.stack([zero if cells[int(where[p])] is None else cells[int(where[p])]
                        for p in range(n)], axis=ax)
    return (gy.reshape(mm_shape),)


_output_tiles_hand.defvjp(_output_tiles_fwd, _output_tiles_bwd)


def _output_tiles(mm: jax.Array, b: int, tiles: tuple[int, ...], tile: Tile,
                  flipped: bool = False, channels_first: bool = False) -> jax.Array:
    """``M ((m+2)^nd, b * prod(t), F)`` -> the outputs ``(b, m t_0, ..., F)``; ``M``'s
    positions in the flipped order along every axis when ``flipped``; ``M`` as
    ``((m+2)^nd, F, b * prod(t))`` when ``channels_first``.  Its gradient (the weight
    gradient's ``dM``) by :func:`_output_tiles_bwd` (:data:`HAND_OUTPUT_VJP`)."""
    if HAND_OUTPUT_VJP:
        return _output_tiles_hand(mm, b, tuple(tiles), tile, bool(flipped),
                                  bool(channels_first))
    return _output_tiles_impl(mm, b, tuple(tiles), tile, flipped, channels_first)


def winograd_conv(x: jax.Array, u: jax.Array, padding, policy: Policy = FP32,
                  chunk_tiles: int | None = None, rotated: bool = False) -> jax.Array:
    """3x3 (3x3x3) stride-1 cross-correlation of ``x (B, *sp, C)`` (2 or 3 spatial
    axes) zero-padded by ``padding`` (one ``(lo, hi)`` pair per axis, each >= 0) with
    the filters ``u (P, C, F)`` transformed by :func:`filter_transform` (``P`` = 16 for
    F(2x2, 3x3), 36 for F(4x4, 3x3), 64 for F(2x2x2, 3x3x3)): output
    ``(B, *(n + lo + hi - 2), F)`` in ``policy.accum_dtype``.

    ``rotated``: correlate instead with the rotated filters of the input gradient
    (flipped taps, input and output channels swapped) of the layer whose transformed
    filters ``u (P, F, C)`` are: ``x (B, *sp, C)`` holds that layer's output gradient.
    No rotated kernel is made: the tiles are transformed in the flipped filters'
    position order (:class:`Tile`) and the products contract ``u``'s last axis, so a
    training step transforms each layer's filters once.  The products take ``u``
    transposed once to ``(P, C, F)`` (the forward's product form), or, when its ``F``
    outnumbers the pass's tiles (:data:`SWAP_CHANNELS_PER_TILE`), ``u`` as it is, first,
    with a channel-first result: the faster forms on XLA's CPU.

    ``chunk_tiles`` (default :data:`CHUNK_TILES`, :data:`CHUNK_TILES_4X4` for 4x4
    tiles) bounds the tiles of one pass."""
    nd = x.ndim - 2
    positions = [(t.m + 2) ** nd for t in _TILES.get(nd, ())]
    if (not positions or u.ndim != 3 or u.shape[0] not in positions
            or u.shape[2 if rotated else 1] != x.shape[-1]):
        want = "(P, F, C)" if rotated else "(P, C, F)"
        allowed = " or ".join(map(str, positions)) or "16 or 36 (2D), 64 (3D)"
        raise ValueError(f"winograd_conv: expected x (B, H, W, C) or x (B, D, H, W, C) with "
                         f"u {want}, P = {allowed} positions, received {x.shape} and "
                         f"{u.shape}")
    tile = tile_of(u.shape[0], nd)
    m = tile.m
    n_b, sp = x.shape[0], x.shape[1:-1]
    out = [n + lo + hi - 2 for n, (lo, hi) in zip(sp, padding)]
    if min(out) < 1:
        raise ValueError(f"winograd_conv: no output for input {x.shape} and padding {padding}")
    budget = chunk_tiles or default_chunk_tiles(m)
    tiles = [-(-o // m) for o in out]
    per_image = int(np.prod(tiles))
    # bands of `rows` tiles along the first axis, as even as the budget allows (a whole
    # image when it fits)
    n_bands = -(-per_image // budget)
    rows = -(-tiles[0] // n_bands)
    n_bands = -(-tiles[0] // rows)
    full = [m * n_bands * rows + 2] + [m * t + 2 for t in tiles[1:]]
    xp = lax.pad(x.astype(policy.accum_dtype), jnp.zeros((), policy.accum_dtype),
                 [(0, 0, 0)] + [(lo, f - n - lo, 0) for (lo, _), f, n in
                                zip(padding, full, sp)] + [(0, 0, 0)])
    if n_bands > 1:  # overlapping bands (2 planes shared) as images of their own
        xp = jnp.stack([xp[:, m * rows * i:m * rows * (i + 1) + 2] for i in range(n_bands)],
                       axis=1).reshape((n_b * n_bands, m * rows + 2) + xp.shape[2:])
    band = (rows,) + tuple(tiles[1:])
    u = u.astype(policy.accum_dtype)
    n_img = xp.shape[0]
    n_chunks = -(-n_img // max(1, budget // int(np.prod(band))))
    per = -(-n_img // n_chunks)  # band images per chunk, as even as possible

    # the rotated product contracts both operands' last axis; XLA's CPU product runs it
    # faster with the filters on the left when they have at least twice as many output
    # channels as the pass has tiles (SDC1's 8x8 768 <- 1024 input gradient: 57 -> 27 ms;
    # 256 channels on 256 tiles: 12.7 -> 14.6 ms, so not there), the result then
    # channel-first (benchmarks/README.md, fifteenth session)
    swap = rotated and u.shape[1] >= SWAP_CHANNELS_PER_TILE * per * int(np.prod(band))
    # otherwise the filters transposed once (the layer's (P, C_in, C_out) to
    # (P, C_out, C_in)) make the rotated product the forward's form, contracting their
    # middle axis: faster on XLA's CPU than contracting both last axes (SDC1's 256 <- 384
    # on 256 tiles: 5.8 -> 4.9 ms; layer training steps of SDC1's 192 / 256 -> 384 layers,
    # transpose included: x1.007-1.049; benchmarks/README.md, seventeenth session)
    if rotated and not swap:
        u = jnp.swapaxes(u, 1, 2)
    contract = 2 if swap else 1

    def chunk(xc):
        v = _input_tiles(xc, band, tile, rotated)
        dims = (((2,), (contract,)), ((0,), (0,)))
        mm = lax.dot_general(*((u, v) if swap else (v, u)), dims, precision=policy.precision,
                             preferred_element_type=policy.accum_dtype)
        return _output_tiles(mm, xc.shape[0], band, tile, rotated, channels_first=swap)

    if n_chunks == 1:
        y = chunk(xp)
    else:
        pad = n_chunks * per - n_img
        if pad:
            xp = jnp.concatenate([xp, jnp.zeros((pad,) + xp.shape[1:], xp.dtype)], axis=0)
        y = lax.map(chunk, xp.reshape((n_chunks, per) + xp.shape[1:]))
        y = y.reshape((n_chunks * per,) + y.shape[2:])[:n_img]
    y = y.reshape((n_b, n_bands * m * rows) + y.shape[2:])
    return y[(slice(None),) + tuple(slice(0, o) for o in out)]
