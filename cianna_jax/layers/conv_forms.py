"""Which form a convolution runs as on CPU, and the switches that turn each form off.

XLA's CPU convolution is fast on wide 2D layers, and slow elsewhere: on maps smaller than
the filter, in 3D, for one input channel, and for the gradients of deep layers on few
output positions.  These rules pick, per layer geometry, XLA's convolution, the windows'
product (im2col + one matrix product: :func:`matmul_form`, :func:`product_gradients`), a
sum of shifted slices (one channel) or Winograd (:func:`winograd_form`); each threshold is
a measurement recorded in benchmarks/README.md.  The module constants are the switches of
in-process A/B runs (``benchmarks/ab_options.py --switch
cianna_jax.layers.conv_forms:WINOGRAD=false``); they are read when a program is traced.
:mod:`.conv` applies the rules.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..precision import FP32, Policy
from .winograd import batch_tiles, pays, tile_size

__all__ = ["small_map", "whole_map", "window_values", "product_gradients", "matmul_form",
           "winograd_form", "trains_as_product"]

#: the windows' product forms (im2col + one matmul: small maps, 3D layers Winograd leaves,
#: :func:`product_gradients`) are used on CPU when True
SMALL_MAP_IM2COL = True
#: a conv trains through the windows' product on CPU when its filters are at
#: least this many times the rows (batch x output positions): see :func:`product_gradients`
FILTERS_PER_ROW = 3
#: a layer takes the windows' product where XLA's convolution is slow (a 3D forward,
#: :func:`product_gradients` beyond small and whole maps) only while its gathered windows
#: hold at most this many values (128 MB in float32): beyond, XLA's convolution, which
#: gathers nothing
MAX_WINDOW_VALUES = 1 << 25
#: the other shapes that run as im2col + one matmul on CPU (see :func:`matmul_form`)
MATMUL_FORMS: frozenset = frozenset()
#: "few_inputs": at most this many input values per output (filter cells x channels)
FEW_INPUTS = 64
#: one input channel runs on CPU as a sum of shifted slices (see :func:`.grouped.tap_conv`)
ONE_CHANNEL_SUM = True
#: 3x3(x3) stride-1 convs run on CPU as Winograd where it pays (see :func:`winograd_form`)
WINOGRAD = True


def small_map(in_spatial, f_size) -> bool:
    """Whether a convolution over a map of spatial size ``in_spatial`` (before padding)
    with filters ``f_size`` is a *small-map* one, run on CPU as one matrix product over
    the gathered windows:

    - every spatial dimension smaller than the filter (a 3x3 filter on a 2x2 or 1x1
      map).  XLA's CPU convolution falls off a cliff there (batch 16, 512 -> 1024
      channels, 3x3 filter, padding 1: 620 ms forward on 2x2 maps, 14-22 ms on 3x3
      maps), where the product runs near the rate of the large layers (5.5-16 ms);
    - in 3D, also every dimension at most one more than a filter of 2 or more (3^3 or
      4^3 maps for a 3x3x3 filter): XLA's CPU runs 3D convolutions on slower code (batch
      8, training step on 3^3 maps: 16 -> 16 channels 3.7 ms against 1.0 as the product,
      128 -> 128 31.9 against 16.6; 4^3 maps, 8 -> 8: 3.4 against 1.4).

    In 2D XLA's forward convolution is as fast or faster from maps the filter's size
    (3x3 maps, padding 1: b16 512 -> 1024 4.5 ms against 4.7 as the product, b64 512 ->
    512 6.6 against 10.7); their gradients may be the product's (:func:`product_gradients`).
    Measured in benchmarks/README.md."""
    near_3d = len(f_size) == 3 and all(2 <= int(f) and int(n) <= int(f) + 1
                                       for n, f in zip(in_spatial, f_size))
    return near_3d or all(int(n) < int(f) for n, f in zip(in_spatial, f_size))


def whole_map(in_spatial, f_size, padding) -> bool:
    """Whether a filter covers the whole unpadded map (``in_spatial`` equal to ``f_size``,
    ``padding`` pairs all zero): one window per image, a dense layer over the map.  On CPU
    its gradients are the matrix product's (:func:`product_gradients`): XLA's convolution
    gradients compute the same sums 1.9-5.2x slower in a training step (batch 8, 3x3 256
    -> 512: 1.83 against 0.51 ms; b32, 3x3 512 -> 1024: 19.2 / 3.7; b128, 2x2 512 -> 512:
    5.1 / 2.6; b256, 3x3 64 -> 128: 2.1 / 0.6).  The forward stays XLA's: the product's
    ran from 0.72x to 2.4x its speed.  Measured in benchmarks/README.md."""
    return (all(int(lo) == 0 and int(hi) == 0 for lo, hi in padding)
            and all(int(n) == int(f) for n, f in zip(in_spatial, f_size)))


def _out_positions(in_spatial, f_size, padding, strides) -> int:
    return int(np.prod([(int(n) + int(lo) + int(hi) - int(f)) // int(st) + 1
                        for n, f, (lo, hi), st in zip(in_spatial, f_size, padding, strides)]))


def window_values(batch: int, in_spatial, f_size, padding, strides, channels: int) -> int:
    """How many values the windows' product gathers: ``batch`` x output positions x taps x
    ``channels``."""
    return (int(batch) * _out_positions(in_spatial, f_size, padding, strides)
            * int(np.prod(f_size)) * int(channels))


def product_gradients(in_spatial, f_size, padding, batch: int, filters: int,
                      strides=None, channels: int | None = None,
                      rounded: bool = False) -> bool:
    """Whether a convolution's two gradients run on CPU as the autodiff of the windows'
    product (``g @ k^T`` put back over the windows, ``windows^T @ g``; CIANNA's input
    gradient is that exact one, cut past its limit, where the padding is below the
    filter; ``strides`` default to 1) rather than XLA's convolution gradients.  Training
    steps, against XLA's, ms (measured in benchmarks/README.md, fifty-seventh session):

    - :func:`small_map` and :func:`whole_map` convolutions;
    - one input ``channel``, unless the activations are ``rounded`` to 16 bits before a
      float32 accumulation, as :func:`matmul_form`'s "one_channel" (a radio image's
      first layer: 3x3 1 -> 16 on 64x64 maps, b16, 2.5 against 1.4; 5x5 1 -> 32 on
      128x128, b8, 15.4 / 10.0; 3D, 3x3x3 1 -> 8 on 32^3, b16, 77 / 54; rounded to
      bfloat16 the product lost, 164 / 177 in 3D);
    - every 3D one: XLA's 3D convolution gradients are slow (stride 1, padding 1, the
      narrow layers Winograd leaves: b16 8 -> 8 on 8^3 5.7 / 2.9, b8 2 -> 4 on 16^3 35 /
      14, b8 8 -> 16 on 6^3 1.8 / 0.77; stride 2, where its input gradient convolves the
      stride-dilated delta: b8, 3x3x3 8 -> 16 on 32^3 177 / 34, 5x5x5 16 -> 32 on 16^3
      714 / 41);
    - strided ones in 2D of at most 9 taps on 16 channels or more (3x3
      stride 2, b16: 512 -> 1024 on 16x16 152 / 85, 256 -> 256 on 8x8 5.1 / 3.1, 64 ->
      64 on 16x16 1.6 / 1.4; b8 32 -> 64 on 128x128 26.2 / 24.4); larger filters or
      fewer channels lost (4x4 stride 2, 32 -> 64 on 64x64 7.0 / 15.2; 3 -> 16 2.3 / 2.7);
    - any other where the ``filters`` are at least :data:`FILTERS_PER_ROW` times the
      rows of the product (``batch`` x output positions): deep layers on small maps or
      small batches, whose XLA gradients run slowly for the weights they carry (padding
      1: 3x3 maps b16 512 -> 1024 20.4 / 11.3, b8 256 -> 256 1.5 / 1.1; 7x7 maps b1 1024
      -> 1024 38.1 / 10.5; 12x12 b1 512 -> 1024 21.1 / 11.2; 4x4 b1 512 -> 1024 11.0 /
      2.0), while with fewer filters per row XLA keeps up or wins (3x3 maps b128 256 ->
      512 19.5 / 21.7, b16 1024 -> 128 3.7 / 4.5; 12x12 b2 384 -> 768 9.5 / 10.1).  The
      windows are then at most a third of the kernel's size.

    Beyond small and whole maps, only while the windows (``channels`` given) hold at most
    :data:`MAX_WINDOW_VALUES` values: XLA's gradients gather nothing.  Where Winograd
    takes the layer (:func:`winograd_form`) it keeps its gradients."""
    nd = len(f_size)
    strides = tuple(strides or (1,) * nd)
    if small_map(in_spatial, f_size) or whole_map(in_spatial, f_size, padding):
        return True
    if channels and window_values(batch, in_spatial, f_size, padding, strides,
                                  channels) > MAX_WINDOW_VALUES:
        return False
    if channels == 1:
        return not rounded
    if nd == 3 and channels:
        return True
    if (nd == 2 and any(int(st) > 1 for st in strides) and int(np.prod(f_size)) <= 9
            and (channels or 0) >= 16):
        return True
    rows = int(batch) * _out_positions(in_spatial, f_size, padding, strides)
    return int(filters) >= FILTERS_PER_ROW * rows


def matmul_form(in_spatial, f_size, strides, padding, channels,
                policy: Policy = FP32, batch: int = 1) -> str | None:
    """Why a convolution (input ``in_spatial``, filters ``f_size``, ``strides``,
    ``padding`` pairs, ``channels`` inputs per group) runs as im2col + one matrix
    product on CPU, or None for XLA's convolution: "small_map" (:func:`small_map`),
    "1x1" (a 1x1 filter without padding: a plain matrix product), "tiles" (filter =
    stride, no padding: the windows tile the input, e.g. the 2x2 stride-2 convs of
    CIANNA's detectors), "few_inputs" (at most :data:`FEW_INPUTS` values per output,
    e.g. a 5x5 filter on one channel), "3d" (a 3D convolution Winograd leaves: narrow
    layers, small images, strides, while a ``batch``'s windows hold at most
    :data:`MAX_WINDOW_VALUES` values; XLA's 3D convolution runs far below the product there,
    forward / training step ms, b16 3x3x3 4 -> 8 on 8^3 3.0 / 3.9 against 0.31 / 0.71, b8
    2 -> 4 on 16^3 12.0 / 14.3 against 1.3 / 2.9, b8 8 -> 16 on 6^3 0.42 / 0.73 against 0.25
    / 0.39; benchmarks/README.md, fifty-seventh session).  "one_channel" (one input channel, e.g. the
    first layer of a detector on a radio image) runs instead as a sum of shifted slices
    (:func:`.grouped.tap_conv`), unless ``policy`` rounds activations to 16 bits: behind
    that rounding XLA fuses the whole sum into each consumer of the output (FP16C_FP32A
    SDC1 128 training step: four copies, one of them 74 ms), where its convolution is
    computed once.  Measured in benchmarks/README.md."""
    if SMALL_MAP_IM2COL and small_map(in_spatial, f_size):
        return "small_map"
    if (ONE_CHANNEL_SUM and int(channels) == 1
            and policy.compute_dtype == policy.accum_dtype):
        return "one_channel"
    unpadded = all(lo == 0 and hi == 0 for lo, hi in padding)
    if SMALL_MAP_IM2COL and len(f_size) == 3 and window_values(
            batch, in_spatial, f_size, padding, strides, channels) <= MAX_WINDOW_VALUES:
        return "3d"
    if "1x1" in MATMUL_FORMS and unpadded and all(int(f) == 1 for f in f_size):
        return "1x1"
    if "tiles" in MATMUL_FORMS and unpadded and all(
            int(f) == int(st) and int(n) % int(f) == 0
            for f, st, n in zip(f_size, strides, in_spatial)):
        return "tiles"
    if "few_inputs" in MATMUL_FORMS and int(np.prod(f_size)) * int(channels) <= FEW_INPUTS:
        return "few_inputs"
    return None


def winograd_form(in_spatial, k_shape, strides, policy=FP32, groups: int = 1,
                  batch: int | None = None, training: bool = False) -> bool:
    """Whether a convolution runs on CPU as Winograd F(2x2, 3x3) (F(4x4, 3x3) where
    :func:`.winograd.tile_size` says) or F(2x2x2, 3x3x3) (:mod:`.winograd`): a 3x3
    (3x3x3) filter at stride 1, no groups, float32 accumulation (16-bit activations are
    transformed and multiplied in float32),
    maps of at least 4 along every axis (on 3x3 maps the 2x2 tiles compute 16 outputs
    for 9: 10.0 ms as XLA's convolution against 12.2, b16 512 -> 1024; smaller maps are
    :func:`small_map`; on 4x4x4 maps it comes before the small-map product), channels wide
    enough to pay (:func:`.winograd.pays`; given ``batch``, the filters are transformed
    in the program, which must also pay, more easily in a ``training`` step) and, in 3D,
    at least
    :data:`.winograd.MIN_3D_IMAGE_MACS` multiply-adds per image."""
    nd = len(in_spatial)
    if not (WINOGRAD and nd in (2, 3) and tuple(k_shape[:nd]) == (3,) * nd
            and tuple(strides) == (1,) * nd and groups == 1
            and policy.accum_dtype == jnp.float32 and min(in_spatial) >= 4):
        return False
    tiles = None if batch is None else batch_tiles(batch, in_spatial)
    return pays(k_shape[nd], k_shape[nd + 1], tiles, nd, int(np.prod(in_spatial)), training,
                tile_size(in_spatial, policy))


def trains_as_product(in_spatial, f, strides, pads, dil, groups: int, batch: int,
                      filters: int, channels: int | None = None,
                      rounded: bool = False) -> bool:
    """Whether a convolution trains through the windows' product on CPU
    (:func:`product_gradients`) in a geometry where CIANNA's input gradient is the exact
    one, cut past its limit (as :mod:`.conv` cuts it; no input dilation, padding < filter):
    both gradients are then the autodiff of that product, ``g @ k^T`` put back over the
    windows and ``windows^T @ g``, with no rotated kernel (the rotation of a 3x3x512x1024
    kernel cost more than the products on 2x2 maps), whatever form the forward takes."""
    return (SMALL_MAP_IM2COL and groups == 1 and all(d == 1 for d in dil)
            and all(p < a for p, a in zip(pads, f))
            and product_gradients(in_spatial, f, [(p, p) for p in pads], batch, filters,
                                  strides, channels, rounded))
