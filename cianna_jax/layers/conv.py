"""Convolution layer, 1D/2D/3D, with CIANNA's bias weight and backward pass.

Parameters: ``{"kernel": (f_d, f_h, f_w, C/G, F), "bias_weight": (F,)}``: the filters
channel-last, as XLA's convolution reads them, and CIANNA's bias weight per filter (the
bias input is the constant ``bias`` of the layer).  CIANNA's own layout, one row
``[C/G][f_d][f_h][f_w]`` per filter with the bias weight last (``(F, K*C/G + 1)``),
exists only at the edges: files (:meth:`Conv.to_record` / :meth:`Conv.from_record`)
and :meth:`Conv.to_rows` / :meth:`Conv.from_rows`.  ``G`` is ``nb_groups`` (CIANNA
V-1.1 grouped / depth-wise convolution; 1 in V-1.0): group ``j`` reads input channels
``[j*C/G, (j+1)*C/G)`` with filters ``[j*F/G, (j+1)*F/G)``.

The forward is a cross-correlation of the input dilated by ``int_padding`` and
zero-padded by ``padding``.  The input gradient follows CIANNA's closed form
(cianna_layers.md section 4.3), which equals the exact gradient except for the
two documented deviations (padding >= filter size, and non-divisible strided
geometry), so training matches CIANNA there too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import initializers
from ..activations import Activation, activate, parse_activation
from ..geometry import check_conv_groups, conv_output_size, conv_span, conv_weight_shape
from ..io.records import ConvRecord
from ..precision import FP32, Policy
from . import widths
from .base import LayerBase, register_layer
from .common import (
    Ctx,
    Shape,
    add_bias,
    depth_to_space,
    draws_mask,
    dropout,
    flat_to_map,
    internal,
    padded_input,
    rotated_kernel,
    space_to_depth,
    tap_slice,
    widened_draws,
)
from .conv_forms import (
    matmul_form,
    product_gradients,
    small_map,
    trains_as_product,
    whole_map,
    winograd_form,
)
from .grouped import grouped_conv, tap_conv
from .products import product, times_transposed
from .winograd import (
    batch_tiles,
    filter_transform,
    tile_size,
    weight_gradient_chunk,
    weight_gradient_pays,
    winograd_conv,
)
from .xla_conv import xla_conv

__all__ = ["Conv", "conv_nd", "small_map", "whole_map", "product_gradients", "matmul_form"]




def _im2col_conv(x, k, strides, padding, policy=FP32):
    """Valid correlation of ``x`` zero-padded by ``padding`` (pairs), stride
    ``strides``, with ``k (*f, C, F)``: the windows gathered by strided slices into
    ``(B, *out, taps*C)`` and one matrix product.  Filter taps that only ever see the
    zero padding (a 3x3 filter on a 1x1 map: all but the centre) are left out."""
    nd = x.ndim - 2
    f = k.shape[:nd]
    xp, out = padded_input(x, padding, f, strides)

    def sees_data(offs):
        return all(any(padding[a][0] <= o + i * strides[a] < padding[a][0] + x.shape[1 + a]
                       for i in range(out[a])) for a, o in enumerate(offs))

    taps = [o for o in itertools.product(*[range(v) for v in f]) if sees_data(o)]
    if not taps:  # only padding under the filter: zeros
        return jnp.zeros((x.shape[0], *out, k.shape[-1]), policy.accum_dtype)
    cols = [tap_slice(xp, offs, out, strides) for offs in taps]
    cols = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    if len(taps) == int(np.prod(f)):
        kk = k.reshape(-1, k.shape[-1])  # every tap: a free reshape, no copy
    elif len(taps) == 1:
        kk = k[taps[0]]
    else:
        kk = jnp.concatenate([k[offs] for offs in taps], axis=0)
    return product(cols, kk, policy.precision, policy.accum_dtype)


def _dilated_conv(x, k, strides, padding, dil, policy=FP32, groups=1, winograd=True,
                  training=False, rotated_from=None, weight_pass=False):
    """``lax.conv_general_dilated`` with input dilation ``dil``.

    On CPU the dilation is an explicit interior pad: XLA's CPU convolutions with
    ``lhs_dilation`` are slow (forward up to 1.7x, weight gradient 3-4x, measured), the
    same conv on the zero-filled input is not.  Other backends keep ``lhs_dilation``
    (a transposed convolution for cuDNN).  Small maps (:func:`small_map`) run on CPU as
    im2col + one matrix product, 3x3(x3) stride-1 layers where it pays
    (:func:`winograd_form`, unless ``winograd=False``) as Winograd F(2x2, 3x3) or
    F(2x2x2, 3x3x3), grouped ones as :func:`.grouped.grouped_conv`: the same sums,
    float32 rounding aside; ``training``: a training
    step's forward or input gradient (Winograd's rule for that).  ``rotated_from``: the
    layer kernel whose rotation ``k`` is (an input gradient): the Winograd form then
    uses that kernel's transformed filters, rotated in the products
    (:func:`.winograd.winograd_conv`), and ``k`` is never made.  ``weight_pass``: the
    call is only differentiated for the weight gradient (its Winograd passes then sized
    by :func:`.winograd.weight_gradient_chunk`)."""
    nd = x.ndim - 2
    strides, dil = tuple(strides), tuple(dil)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)  # hashable pairs

    def lax_conv(x, pairs, dil):
        return xla_conv(x, k, strides, pairs, dil, policy, groups).astype(x.dtype)

    def conv(x, pairs, dil):
        cpu = None
        if all(d == 1 for d in dil):
            if winograd and winograd_form(x.shape[1:-1], k.shape, strides, policy, groups,
                                          batch=x.shape[0], training=training):
                m = tile_size(x.shape[1:-1], policy)

                def cpu(x):  # filters transformed in float32 (16-bit weights: exactly)
                    src = k if rotated_from is None else rotated_from
                    u = filter_transform(src.astype(policy.accum_dtype), m)
                    chunk = weight_gradient_chunk(
                        u.shape[0], k.shape[nd], k.shape[nd + 1],
                        batch_tiles(x.shape[0], x.shape[1:-1], m), nd) if weight_pass else None
                    return winograd_conv(x, u, pairs, policy, chunk_tiles=chunk,
                                         rotated=rotated_from is not None)
            elif groups == 1:
                form = matmul_form(x.shape[1:-1], k.shape[:nd], strides, pairs, x.shape[-1],
                                   policy, x.shape[0])
                if form is not None:
                    def cpu(x):
                        if form == "one_channel":
                            return tap_conv(x, k, strides, pairs, 1, policy)
                        return _im2col_conv(x, k, strides, pairs, policy)
            else:  # grouped: per-group convolutions or depth-wise products (.grouped)

                def cpu(x):
                    return grouped_conv(x, k, strides, pairs, groups, policy)
        if cpu is not None:
            return lax.platform_dependent(
                x, cpu=lambda x: cpu(x).astype(x.dtype),
                default=lambda x: lax_conv(x, pairs, dil))
        return lax_conv(x, pairs, dil)

    if all(d == 1 for d in dil):
        return conv(x, padding, dil)

    def padded(x):
        x = lax.pad(x, jnp.zeros((), x.dtype),
                    [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(padding, dil)]
                    + [(0, 0, 0)])
        return conv(x, ((0, 0),) * nd, (1,) * nd)

    return lax.platform_dependent(x, cpu=padded, default=lambda x: lax_conv(x, padding, dil))


def _forward(x, k, strides, pads, dil, policy=FP32, groups=1, winograd=True, training=False,
             weight_pass=False):
    return _dilated_conv(x, k, strides, [(p, p) for p in pads], dil, policy, groups, winograd,
                         training, weight_pass=weight_pass)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def conv_nd(x, k, strides, pads, dil, policy=FP32, groups=1):
    """Channel-last convolution: ``x (B, *sp, C)``, ``k (*f, C/groups, F)``, static
    geometry; ``groups`` > 1 is a grouped convolution."""
    return _forward(x, k, strides, pads, dil, policy, groups)


def _conv_fwd(x, k, strides, pads, dil, policy, groups):  # differentiated: training
    return _forward(x, k, strides, pads, dil, policy, groups, training=True), (x, k)


def _input_grad(g, k, in_spatial, strides, pads, dil, policy=FP32, groups=1, training=False):
    """CIANNA's input gradient: full correlation of the stride-dilated delta with the
    rotated filters, padding ``f - 1 - p_eff``, stride ``1 + ip``, cut at ``lim``
    (per group for a grouped convolution)."""
    nd = g.ndim - 2
    f = k.shape[:nd]
    out_sp = g.shape[1:1 + nd]
    lo, hi = [], []
    for ax in range(nd):
        p_eff = min(pads[ax], f[ax] - 1)
        s, st, n = strides[ax], dil[ax], out_sp[ax]
        dil_len = (n - 1) * s + 1
        low = f[ax] - 1 - p_eff
        need = (in_spatial[ax] - 1) * st + f[ax]
        lo.append(low)
        hi.append(max(0, need - dil_len - low))
    k_rot = rotated_kernel(k, groups)
    gi = _dilated_conv(g, k_rot.astype(g.dtype), dil, list(zip(lo, hi)), strides, policy, groups,
                       training=training, rotated_from=k.astype(g.dtype))
    gi = gi[(slice(None),) + tuple(slice(0, s) for s in in_spatial)]
    return _cianna_cut(gi, out_sp, f, strides, pads, dil)


def _cianna_cut(gi, out_sp, f, strides, pads, dil):
    """CIANNA's input gradient ``gi (B, *in, C)`` zeroed past its limit on each axis,
    ``((n_out - 1) s + f - 1 - 2 p) / ip`` truncated as C does: with a stride above 1 and
    padding, the last input positions the forward read get no gradient (e.g. 8 inputs,
    3x3 filter, stride 2, padding 1: the 8th)."""
    nd = gi.ndim - 2
    in_spatial = gi.shape[1:1 + nd]
    mask = None
    for ax in range(nd):
        p_eff = min(pads[ax], f[ax] - 1)
        lim = int(((out_sp[ax] - 1) * strides[ax] + f[ax] - 1 - 2 * p_eff) / dil[ax])
        if lim < in_spatial[ax] - 1:
            shape = [1] * (nd + 2)
            shape[1 + ax] = in_spatial[ax]
            m = (np.arange(in_spatial[ax]) <= lim).reshape(shape)
            mask = m if mask is None else mask & m
    return gi if mask is None else gi * jnp.asarray(mask, gi.dtype)


#: weight gradients of convolutions whose windows tile the input as one matrix product
#: on CPU (:func:`_tiled_weight_grad`)
TILED_WEIGHT_GRAD = True


def tiles_input(f, strides, pads, dil, groups: int = 1) -> bool:
    """Whether the windows of a convolution tile its input: filter = stride on every
    axis, no padding, no input dilation, no groups (the 2x2 stride-2 convs of CIANNA's
    detectors)."""
    return (groups == 1 and tuple(f) == tuple(strides) and not any(pads)
            and all(d == 1 for d in dil))


def _tiled_weight_grad(x, g, f, policy=FP32):
    """Weight gradient ``(*f, C, F)`` of a convolution whose windows tile the input
    (:func:`tiles_input`): the input as non-overlapping windows ``(N, prod(f) C)``
    (space to depth: runs of ``C`` values move, a copy at memory speed) and one product
    ``windows^T @ g`` over the ``N`` output pixels, which comes out in the kernel's
    layout (for few or odd filters ``g^T @ windows``, transposed: faster there; layer
    step + update, b8: 1x1 1024 -> 2048 on 8x8 41.3 -> 32.7 ms, 2x2 32 -> 16 on
    128x128 9.1 against 13.1, 1x1 2048 -> 117 4.5 against 5.6).  XLA's CPU weight-gradient
    convolution instead transposes the whole input to put the batch innermost, a
    strided copy: 12-15 ms of an SDC1 training step for the 128x128x32 map alone
    (benchmarks/README.md)."""
    nd = x.ndim - 2
    out = g.shape[1:1 + nd]
    c, n_f = x.shape[-1], g.shape[-1]
    xs = x[(slice(None),) + tuple(slice(0, o * s) for o, s in zip(out, f))]
    windows = space_to_depth(xs, f).reshape(-1, int(np.prod(f)) * c)
    g2 = g.reshape(-1, n_f).astype(windows.dtype)
    if n_f >= 64 and n_f % 16 == 0:  # (taps*C, F): the kernel's layout, no transpose
        gk = lax.dot_general(windows, g2, (((0,), (0,)), ((), ())), precision=policy.precision,
                             preferred_element_type=policy.accum_dtype)
        return gk.reshape(tuple(f) + (c, n_f))
    # few or odd filters: XLA's product is faster as (F, taps*C), transposed after
    gk = lax.dot_general(g2, windows, (((0,), (0,)), ((), ())), precision=policy.precision,
                         preferred_element_type=policy.accum_dtype)
    return jnp.moveaxis(gk.reshape((n_f,) + tuple(f) + (c,)), 0, -1)


def _tiled_input_grad(g, k, in_spatial, policy=FP32):
    """Input gradient ``(B, *in_spatial, C)`` of a convolution whose windows tile the
    input (:func:`tiles_input`): each output pixel's gradient spread over its own window,
    ``g @ k^T`` per pixel, ``(N, F) @ (F, prod(f) C)``, put back in place (depth to
    space); input rows and columns no window covers get zero.  The general rule
    (:func:`_input_grad`) convolves the stride-dilated gradient, mostly zeros, at the
    input's resolution: ``prod(f)`` times the products."""
    nd = g.ndim - 2
    f = k.shape[:nd]
    b, out = g.shape[0], g.shape[1:1 + nd]
    cols = times_transposed(g.reshape(-1, g.shape[-1]), k.reshape(-1, k.shape[-1]).astype(g.dtype),
                            policy.precision, policy.accum_dtype)  # (N, taps*C)
    gx = depth_to_space(cols.reshape((b,) + tuple(out) + (-1,)), f).astype(g.dtype)
    if tuple(gx.shape[1:-1]) != tuple(in_spatial):
        gx = jnp.pad(gx, [(0, 0)] + [(0, n - o * v) for n, o, v in zip(in_spatial, out, f)]
                     + [(0, 0)])
    return gx


def _conv_bwd(strides, pads, dil, policy, groups, res, g):
    x, k = res
    # the weight gradient by autodiff of the Winograd sums (V^T dM per chunk, summed)
    # only where that pays (3D layers with many tiles, deep 2D layers on few tiles:
    # .winograd.weight_gradient_pays),
    # else through XLA's convolution even where the forward is Winograd (README), whose
    # weight gradient on CPU is written in XLA's layouts (xla_conv's backward)
    nd = x.ndim - 2
    tiles = batch_tiles(x.shape[0], x.shape[1:-1])
    wino_forward = all(d == 1 for d in dil) and winograd_form(
        x.shape[1:-1], k.shape, strides, policy, groups, x.shape[0], training=True)
    wino = wino_forward and weight_gradient_pays(k.shape[nd], k.shape[nd + 1], tiles, nd)

    def xla_grads(x, g):  # input gradient by CIANNA's rule, weight gradient by autodiff
        _, k_vjp = jax.vjp(lambda kk: _forward(x, kk, strides, pads, dil, policy, groups,
                                               winograd=wino, training=True, weight_pass=True),
                           k)
        gx = _input_grad(g, k, x.shape[1:-1], strides, pads, dil, policy, groups,
                         training=True)
        return gx, k_vjp(g)[0]

    if TILED_WEIGHT_GRAD and tiles_input(k.shape[:nd], strides, pads, dil, groups):
        return lax.platform_dependent(
            x, g, cpu=lambda x, g: (_tiled_input_grad(g, k, x.shape[1:-1], policy),
                                    _tiled_weight_grad(x, g, k.shape[:nd], policy)
                                    .astype(k.dtype)),
            default=xla_grads)
    if not wino_forward and trains_as_product(
            x.shape[1:-1], k.shape[:nd], strides, pads, dil, groups, x.shape[0], k.shape[-1],
            x.shape[-1], rounded=policy.compute_dtype != policy.accum_dtype):
        pairs = tuple((p, p) for p in pads)

        def both(x, g):  # autodiff of the windows' product, cut where CIANNA's rule cuts
            _, vjp = jax.vjp(lambda xx, kk: _im2col_conv(xx, kk, strides, pairs, policy)
                             .astype(xx.dtype), x, k)
            gx, gk = vjp(g)
            return _cianna_cut(gx, g.shape[1:1 + nd], k.shape[:nd], strides, pads, dil), gk
        return lax.platform_dependent(x, g, cpu=both, default=xla_grads)
    return xla_grads(x, g)




conv_nd.defvjp(_conv_fwd, _conv_bwd)


@register_layer
@dataclass(frozen=True)
class Conv(LayerBase):
    """``conv(f_size, nb_filters, stride, padding, int_padding, activation, bias, ...)``.

    Geometry tuples are in CIANNA's (W, H, D) order; ``nb_groups`` (CIANNA V-1.1) splits
    the input channels and the filters into that many groups (1: a plain convolution).
    ``input_shape`` (W, H, D, C) is only used after a dense layer, whose output is read
    as one channel-major image.
    Input: map ``(B, *sp, C)`` or flat ``(B, n + 1)``; output: map ``(B, *sp_out, F)``.
    """

    f_size: tuple[int, int, int]
    nb_filters: int
    activation: Activation
    bias: float
    stride: tuple[int, int, int] = (1, 1, 1)
    padding: tuple[int, int, int] = (0, 0, 0)
    int_padding: tuple[int, int, int] = (0, 0, 0)
    input_shape: tuple[int, int, int, int] | None = None
    drop_rate: float = 0.0
    # creation-only settings: not saved by CIANNA, not part of the network identity
    init_fct: str = field(default="xavier", compare=False)
    init_scaling: float = field(default=1.0, compare=False)
    nb_groups: int = 1

    kind = "conv"
    allows_yolo = True
    # on CPU every convolution of its passes (CIANNA's or exact autodiff's, grouped or not)
    # is in XLA's layouts (.xla_conv, .grouped) or a product
    checked_in_loops = True

    def map_input(self, in_shape: Shape) -> Shape:
        """The image the conv reads: ``in_shape`` or, after a dense layer, ``input_shape``."""
        if not in_shape.flat:
            return in_shape
        if self.input_shape is None:
            raise ValueError("conv after a dense layer needs input_shape=[W, H, D, C]")
        w, h, d, c = self.input_shape
        if w * h * d * c != in_shape.size:
            raise ValueError(
                f"input_shape: {w}x{h}x{d}x{c} = {w * h * d * c} values expected from the "
                f"previous dense layer, which has {in_shape.size} neurons")
        return Shape(w, h, d, c)

    def output_shape(self, in_shape: Shape) -> Shape:
        src = self.map_input(in_shape)
        check_conv_groups(self.nb_groups, src.c, self.nb_filters)
        out = []
        for ax, name in enumerate("WHD"):
            size = src.spatial[ax]
            span = conv_span(size, self.padding[ax], self.int_padding[ax])
            n = conv_output_size(size, self.f_size[ax], self.stride[ax],
                                 self.padding[ax], self.int_padding[ax])
            if span < self.f_size[ax]:
                raise ValueError(
                    f"f_size: the filter ({self.f_size[ax]}) is larger than the dilated, "
                    f"padded input ({span}) along {name} (input {src.spatial[ax]}, "
                    f"f_size {self.f_size[ax]}, stride {self.stride[ax]}, padding "
                    f"{self.padding[ax]}, int_padding {self.int_padding[ax]})")
            out.append(n)
        return Shape(out[0], out[1], out[2], self.nb_filters)

    def flat_f_size(self, in_shape: Shape) -> int:
        """Length of one of CIANNA's filter rows, bias weight included: ``K*C/G + 1``."""
        return conv_weight_shape(self.nb_filters, self.f_size, self.map_input(in_shape).c,
                                 self.nb_groups)[1]

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        fw, fh, fd = self.f_size
        cg = self.map_input(in_shape).c // self.nb_groups
        return {"kernel": (fd, fh, fw, cg, self.nb_filters), "bias_weight": (self.nb_filters,)}

    def init(self, key: jax.Array, in_shape: Shape):
        """Draw every filter entry, bias weight included (fans K*C + 1 and F), in
        CIANNA's row order (the same numbers as CIANNA's layout would hold)."""
        flat = self.flat_f_size(in_shape)
        w = initializers.draw(key, self.init_fct, (self.nb_filters, flat), flat,
                              self.nb_filters, self.init_scaling)
        return self.from_rows(w), self.output_shape(in_shape)

    def from_rows(self, w) -> dict[str, jax.Array]:
        """CIANNA's weights ``w (F, K*C/G + 1)`` (rows ``[C/G][f_d][f_h][f_w]``, bias
        weight last) -> ``{"kernel": (f_d, f_h, f_w, C/G, F), "bias_weight": (F,)}``.
        Host arrays are rearranged on the host (no program compiled per shape)."""
        fw, fh, fd = self.f_size
        n_f = self.nb_filters
        if w.ndim != 2 or w.shape[0] != n_f or (w.shape[1] - 1) % (fw * fh * fd):
            raise ValueError(f"w: expected CIANNA's conv weights ({n_f}, f_w*f_h*f_d*C/G + 1) "
                             f"with f_size {self.f_size}, received {tuple(w.shape)}")
        xp = np if initializers.is_concrete(w) else jnp
        w = xp.asarray(w, np.float32) if xp is np else w
        k = w[:, :-1].reshape(n_f, -1, fd, fh, fw)
        k = xp.transpose(k, (2, 3, 4, 1, 0))
        k = np.ascontiguousarray(k) if xp is np else k
        # the dtype given: without it, a host array compiles a program per shape
        return {"kernel": jnp.asarray(k, k.dtype), "bias_weight": jnp.asarray(w[:, -1], w.dtype)}

    @staticmethod
    def to_rows(params) -> jax.Array | np.ndarray:
        """``{"kernel", "bias_weight"}`` -> CIANNA's weights ``(F, K*C/G + 1)`` (rows
        ``[C/G][f_d][f_h][f_w]``, bias weight last); numpy for host-readable arrays."""
        k, b = params["kernel"], params["bias_weight"]
        xp = np if initializers.is_concrete(k) else jnp
        k, b = (np.asarray(k, np.float32), np.asarray(b, np.float32)) if xp is np else (k, b)
        n_f = k.shape[-1]
        rows = xp.transpose(k, (4, 3, 0, 1, 2)).reshape(n_f, -1)
        return xp.concatenate([rows, b.reshape(n_f, 1).astype(rows.dtype)], axis=1)

    def prepare(self, params, x: jax.Array, nd: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(input map, kernel ``(*f, C/G, F)`` in the input's dtype, bias term per
        filter) for ``x``."""
        if x.ndim == 2:
            x = flat_to_map(x, Shape(*self.input_shape), nd)
        if "kernel" not in params:
            hint = (": CIANNA's weight rows, convert them with rows_to_params (per network) or "
                    "Conv.from_rows" if "w" in params else "")
            raise ValueError(f"params: a conv layer takes {{'kernel', 'bias_weight'}}, received "
                             f"{sorted(params)}{hint}")
        return x, self._kernel(params, nd).astype(x.dtype), self._bias_term(params)

    def kernel_and_bias(self, params, nd: int) -> tuple[jax.Array, jax.Array]:
        """(kernel ``(*f, C/G, F)``, bias term per filter) of an ``nd``-dimensional
        network's ``params``."""
        return self._kernel(params, nd), self._bias_term(params)

    @staticmethod
    def _kernel(params, nd: int) -> jax.Array:
        """The kernel ``(*f, C/G, F)`` of an ``nd``-dimensional network (2D: f_d = 1
        dropped, a free reshape)."""
        k = params["kernel"]
        return k.reshape(k.shape[1:]) if nd == 2 else k

    def _bias_term(self, params) -> jax.Array:
        """The bias term per filter: the layer's ``bias`` times its bias weights."""
        return self.bias * params["bias_weight"]

    def inference_params(self, params, in_shape: Shape, nd: int,
                         policy: Policy = FP32) -> dict[str, jax.Array]:
        """The weights laid out once for repeated inference under ``policy``.  A 3x3(x3)
        layer that runs as Winograd (:func:`winograd_form`), weights on the CPU, gets
        ``{"winograd": (P, C, F), "bias": (F,)}``: the filters already transformed for
        :func:`.winograd.winograd_conv` (``P`` = 16, 36 for F(4x4, 3x3) under a
        reduced-precision policy, see :func:`.winograd.tile_size`, 64 in 3D) and the
        bias term per filter (``bias`` times the bias weight); other layers keep their
        params (already channel-last).  A layer with a number of filters XLA's CPU code
        runs slowly (:func:`.widths.slow`: 2048, 4096), weights on the CPU, gets
        :data:`.widths.EXTRA` zero filters more, dropped from its output: in its
        Winograd filters, or as ``{"wide_kernel": (*f, C, F + EXTRA), "bias": (F +
        EXTRA,)}``.  :meth:`apply` takes any of these forms under any policy.  Not for
        training: gradients would be for this layout.  Params already laid out are
        returned as they are."""
        if "kernel" not in params:
            return params
        src = self.map_input(in_shape)
        sp = internal(src.spatial, nd)
        k = self._kernel(params, nd)
        if not _on_cpu(k):
            return params
        wino = not any(self.int_padding) and winograd_form(
            sp, k.shape, internal(self.stride, nd), policy, groups=self.nb_groups)
        wide = self.nb_groups == 1 and widths.slow(k.shape[-1])
        if not (wino or wide):
            return params
        bias = self._bias_term(params)
        if wide:
            k, bias = widths.widen(k, bias)
        if wino:
            return {"winograd": filter_transform(k, tile_size(sp, policy)), "bias": bias}
        return {"wide_kernel": k, "bias": bias}

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        nd = ctx.nd
        if x.ndim == 2:
            x = flat_to_map(x, Shape(*self.input_shape), nd)
        if "winograd" in params or "wide_kernel" in params:  # laid out by inference_params
            if "winograd" in params:
                pad = internal(self.padding, nd)
                z = winograd_conv(x, params["winograd"], tuple((p, p) for p in pad),
                                  ctx.policy)
            else:
                z = _forward(x, params["wide_kernel"].astype(x.dtype), *self._geometry(nd),
                             ctx.policy, self.nb_groups)
            z = (z + params["bias"].astype(z.dtype)).astype(x.dtype)
            z = z[..., :self.nb_filters]  # the zero filters of a widened layout dropped
            z = dropout(z, self.drop_rate, ctx, key)
        else:
            z = self._conv(params, x, ctx, key)
        if not activate_output:
            return z
        return activate(self.activation, z, exact=ctx.exact)

    def _conv(self, params, x, ctx: Ctx, key=None):
        """Convolution, bias and dropout through XLA's convolution (``conv_nd``'s
        backward); on CPU, a layer of 2048 or 4096 filters with 16 zero filters more
        (:func:`.widths.on_cpu`), its dropout mask drawn for the real filters' places
        (:func:`.common.uniform`'s ``width``: the same bits), the extra outputs dropped
        after it.  A mask those draws cannot give (16-bit maps, other PRNGs) keeps the
        layer at its width."""
        nd = ctx.nd
        x, k, b = self.prepare(params, x, nd)
        conv = _forward if ctx.exact else conv_nd
        geometry = self._geometry(nd) + (ctx.policy, self.nb_groups)

        def layer(k, b):
            z = conv(x, k, *geometry)
            z = z + b.astype(z.dtype) if ctx.exact else add_bias(z, b)
            return dropout(z, self.drop_rate, ctx, key, width=self.nb_filters)

        masked = draws_mask(self.drop_rate, ctx)
        if self.nb_groups != 1 or (masked and (key is None or not widened_draws(key, x.dtype))):
            return layer(k, b)
        return widths.on_cpu(layer, k, b)

    def _geometry(self, nd: int) -> tuple:
        """``(strides, paddings, input dilations)`` of :func:`conv_nd` / ``_forward``."""
        return (internal(self.stride, nd), internal(self.padding, nd),
                tuple(1 + i for i in internal(self.int_padding, nd)))

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        super().check(where, sources, last=last)
        prev = sources[0].layer if sources and sources[0] is not None else None
        if prev is not None and prev.kind == "dense" and prev.drop_rate > 0.01:
            raise ValueError(f"{where}: a conv layer cannot follow a dense layer with dropout")
        for ax in range(3):
            if self.stride[ax] > self.f_size[ax]:
                raise ValueError(f"{where}: stride {self.stride} larger than f_size "
                                 f"{self.f_size} along axis {'WHD'[ax]}")

    def uses_depth(self) -> bool:
        return (self.f_size[2] != 1 or self.padding[2] != 0 or self.int_padding[2] != 0
                or (self.input_shape is not None and self.input_shape[2] > 1))

    def summary_lines(self, in_shape: Shape, out_shape: Shape, b_size: int) -> list[str]:
        src = self.map_input(in_shape)
        n_w = self.nb_filters * self.flat_f_size(in_shape)
        mem = 4 * (2 * n_w + b_size * (out_shape.size * 3))
        groups = f" in {self.nb_groups} groups" if self.nb_groups != 1 else ""
        return [f"Input: {src}, Filters: {self.nb_filters}f {_x(self.f_size)}x"
                f"{src.c // self.nb_groups}{groups}, Output: {out_shape} ",
                f"Stride: {':'.join(map(str, self.stride))}, padding: "
                f"{':'.join(map(str, self.padding))}, int_padding: "
                f"{':'.join(map(str, self.int_padding))},  ",
                f"Activation: {self.activation.name}, Bias: {self.bias:.2f}, dropout rate: "
                f"{self.drop_rate:.2f}",
                f"Nb. weights: {n_w}, Approx layer RAM/VRAM requirement: {int(mem / 1e6)} MB"]

    @property
    def title(self) -> str:
        return "CONVOLUTIONAL"

    def tex_cells(self, in_shape: Shape, out_shape: Shape, params: dict) -> dict[str, str]:
        src = self.map_input(in_shape)
        return {"activation": self.activation.kind, "in_size": _x(src.spatial),
                "size": str(self.nb_filters), "f_size": _x(self.f_size),
                "stride": ":".join(map(str, self.stride)),
                "padding": ":".join(map(str, self.padding)),
                "in_padding": ":".join(map(str, self.int_padding)),
                "out_size": _x(out_shape.spatial), "bias": f"{self.bias:0.2f}",
                "dropout": f"{int(self.drop_rate * 100)}\\%",
                "param_count": str(sum(int(a.size) for a in params.values()))}

    def to_record(self, params: dict, in_shape: Shape, yolo=None) -> ConvRecord:
        src = self.map_input(in_shape)
        return ConvRecord(self.nb_filters, self.f_size, self.stride, self.padding,
                          self.int_padding, (src.w, src.h, src.d, src.c), self.drop_rate,
                          self.bias, self.activation.name, yolo,
                          np.asarray(self.to_rows(params), np.float32), self.nb_groups)

    @classmethod
    def from_record(cls, rec: ConvRecord, *, after_dense: bool = False):
        """(layer spec, params) of a conv record; after a dense layer the conv reads its
        saved input shape."""
        layer = cls(tuple(rec.f_size), rec.nb_filters, parse_activation(rec.activation),
                    float(rec.bias), tuple(rec.stride), tuple(rec.padding),
                    tuple(rec.int_padding), tuple(rec.in_dims) if after_dense else None,
                    float(rec.dropout), nb_groups=int(rec.nb_groups))
        return layer, layer.from_rows(np.asarray(rec.weights, np.float32))


def _on_cpu(a) -> bool:
    """Whether the array ``a`` lives on CPU devices (a traced value: whether JAX's
    default backend is the CPU)."""
    try:
        return all(d.platform == "cpu" for d in a.devices())
    except (AttributeError, jax.errors.ConcretizationTypeError):
        return jax.default_backend() == "cpu"


def _x(v) -> str:
    return "x".join(str(int(a)) for a in v[:3])
