"""A network: a static, hashable description plus pure ``init_params``/``apply``.

``Network`` holds the input dimensions, the input bias and a tuple of layer specs
whose ``bias`` values are already resolved with CIANNA's rules, so it can be a
static argument of ``jax.jit``.  Parameters are a tuple (one dict per layer) of
float32 arrays in CIANNA's own layouts, so save files map onto them directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .layers import LRN, Conv, Dense, LayerSpec, Norm, Pool
from .layers.common import DROP_MODES, Ctx, Shape, flat_to_map, map_to_flat_cmajor
from .layers.fused import conv_max_pool, fusible
from .precision import Policy, get_policy

__all__ = ["Network", "make_network", "init_params", "apply", "forward_internal", "to_rows",
           "Params"]

Params = tuple[dict[str, jax.Array], ...]


@dataclass(frozen=True)
class Network:
    """Static description of a CIANNA network.

    ``in_dims`` is (W, H, D, C); ``layers`` a tuple of layer specs in call order;
    ``input_bias`` CIANNA's ``init(bias=...)``, which is also the first layer's bias.
    Build it with :func:`make_network`, which validates and resolves biases.
    """

    in_dims: tuple[int, int, int, int]
    layers: tuple[LayerSpec, ...]
    input_bias: float = 0.1
    yolo: Any = None  # cianna_jax.yolo.YoloConfig of a YOLO output layer

    @cached_property
    def shapes(self) -> tuple[tuple[Shape, Shape], ...]:
        """(input shape, output shape) of every layer."""
        cur = Shape(*self.in_dims)
        out = []
        for layer in self.layers:
            nxt = layer.output_shape(cur)
            out.append((cur, nxt))
            cur = nxt
        return tuple(out)

    @property
    def input_dim(self) -> int:
        """Flat size of one input example, C*D*H*W."""
        w, h, d, c = self.in_dims
        return w * h * d * c

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1][1] if self.layers else Shape(*self.in_dims)

    @property
    def out_dim(self) -> int:
        """Width of a target row: neurons of a dense output, else C*D*H*W."""
        return self.output_shape.size

    @cached_property
    def nd(self) -> int:
        """Spatial rank used internally: 3 when anything involves depth, else 2."""
        if self.in_dims[2] > 1:
            return 3
        for layer, (sin, sout) in zip(self.layers, self.shapes):
            if sout.d > 1 or (not sin.flat and sin.d > 1):
                return 3
            for attr in ("f_size", "p_size", "padding", "int_padding", "input_shape"):
                val = getattr(layer, attr, None)
                if val is None:
                    continue
                if attr == "input_shape":
                    if val[2] > 1:
                        return 3
                elif val[2] != (1 if attr in ("f_size", "p_size") else 0):
                    return 3
        return 2

    def fused_pairs(self, ctx: Ctx) -> frozenset[int]:
        """Indices ``i`` where conv ``i`` and max pool ``i + 1`` run fused under ``ctx``."""
        return frozenset(
            i for i in range(len(self.layers) - 1)
            if fusible(self.layers[i], self.layers[i + 1], self.shapes[i][0], ctx))

    def with_input_bias(self, bias: float) -> "Network":
        """The same network with another ``init(bias=...)`` (first layer bias too)."""
        return make_network(self.in_dims, self.layers, bias, self.yolo)


def _validate(in_dims, layers):
    prev: LayerSpec | None = None
    for i, layer in enumerate(layers):
        where = f"layer {i + 1} ({layer.kind})"
        act = layer.activation
        last = i == len(layers) - 1
        if act.kind == "SMAX" and not last:
            raise ValueError(f"{where}: SMAX is only valid on the last layer (CIANNA aborts at "
                             "the first backward pass otherwise)")
        if act.kind == "YOLO" and not isinstance(layer, Conv):
            raise ValueError(f"{where}: the YOLO activation is only valid on a conv layer")
        if act.kind == "YOLO" and not last:
            raise ValueError(f"{where}: the YOLO activation is only valid on the last layer")
        if isinstance(layer, (Norm, LRN)):
            if act.kind in ("SMAX", "YOLO"):
                raise ValueError(f"{where}: activation {act.kind} is not allowed on norm/lrn")
            if prev is None:
                raise ValueError(f"{where}: a normalisation layer cannot be the first layer")
            if isinstance(prev, (Dense, Norm, LRN)):
                raise ValueError(f"{where}: a normalisation layer cannot follow a {prev.kind} "
                                 "layer")
        if isinstance(layer, Pool) and prev is not None:
            if isinstance(prev, Pool):
                raise ValueError(f"{where}: two successive pooling layers are not allowed")
            if getattr(prev, "drop_rate", 0.0) > 0.01:
                raise ValueError(f"{where}: a pool layer cannot follow a layer with dropout")
            if isinstance(prev, (Norm, LRN)) and i >= 2 and not isinstance(layers[i - 2], Conv):
                raise ValueError(f"{where}: a pool after a norm/lrn layer needs a conv before it")
        if isinstance(layer, Conv) and isinstance(prev, Dense) and prev.drop_rate > 0.01:
            raise ValueError(f"{where}: a conv layer cannot follow a dense layer with dropout")
        if isinstance(layer, Conv):
            for ax in range(3):
                if layer.stride[ax] > layer.f_size[ax]:
                    raise ValueError(f"{where}: stride {layer.stride} larger than f_size "
                                     f"{layer.f_size} along axis {'WHD'[ax]}")
        if isinstance(layer, Pool) and not layer.p_global:
            stride = layer.stride if layer.stride is not None else layer.p_size
            for ax in range(3):
                if stride[ax] > layer.p_size[ax]:
                    raise ValueError(f"{where}: stride {stride} larger than p_size "
                                     f"{layer.p_size} along axis {'WHD'[ax]}")
                if layer.padding[ax] > layer.p_size[ax]:
                    raise ValueError(f"{where}: padding {layer.padding} larger than p_size "
                                     f"{layer.p_size} along axis {'WHD'[ax]}")
        prev = layer


def _f32(value: float) -> float:
    """CIANNA keeps biases and rates as C floats: round to float32 once, here."""
    return float(np.float32(value))


def _resolve(layer, first: bool, in_dims, input_bias: float):
    if isinstance(layer, Pool):
        if layer.p_global:  # the window is the whole map: keep one canonical spec
            layer = dataclasses.replace(layer, p_size=(1, 1, 1), stride=(1, 1, 1),
                                        padding=(0, 0, 0))
        elif layer.p_size is None:
            layer = dataclasses.replace(
                layer, p_size=tuple(2 if n > 1 else 1 for n in in_dims[:3]))
        if layer.stride is None:
            layer = dataclasses.replace(layer, stride=layer.p_size)
    if hasattr(layer, "drop_rate"):
        layer = dataclasses.replace(layer, drop_rate=_f32(layer.drop_rate))
    if not hasattr(layer, "bias"):
        return layer
    if first:
        bias = input_bias
    elif layer.bias is None:
        bias = layer.activation.default_bias
    else:
        bias = layer.bias
    return dataclasses.replace(layer, bias=_f32(bias))


def make_network(in_dims, layers, input_bias: float = 0.1, yolo=None) -> Network:
    """Validate ``layers`` for input ``in_dims`` (W, H, D, C) and resolve their biases.

    A layer's ``bias`` of None takes its activation's default (LIN 0.5, RELU 0.1,
    LOGI -1.0, SMAX 0.1, YOLO 0.5); the first layer always takes ``input_bias``.
    ``yolo`` is the YOLO configuration of a last conv layer with activation YOLO; its
    filter count and grid must match that layer.  Raises ValueError on invalid
    stacking or geometry.
    """
    in_dims = tuple(int(v) for v in in_dims)
    if len(in_dims) != 4 or min(in_dims) < 1:
        raise ValueError(f"in_dims: expected 4 positive ints (W, H, D, C), received {in_dims}")
    resolved = tuple(_resolve(layer, i == 0, in_dims, input_bias) for i, layer in enumerate(layers))
    _validate(in_dims, resolved)
    net = Network(in_dims, resolved, _f32(input_bias), yolo)
    net.shapes  # noqa: B018  (computes and checks every output shape now)
    if yolo is not None:
        last = net.layers[-1] if net.layers else None
        if last is None or last.activation.kind != "YOLO":
            raise ValueError("yolo: a YOLO configuration needs a last conv layer with "
                             "activation 'YOLO'")
        out = net.output_shape
        if out.c != yolo.nb_filters:
            raise ValueError(f"nb_filters: the YOLO layer needs {yolo.nb_filters} filters "
                             f"(nb_box*(8+nb_class+nb_param)), received {out.c}")
        if tuple(yolo.grid) != out.spatial:
            raise ValueError(f"yolo: configuration grid {tuple(yolo.grid)} differs from the "
                             f"YOLO layer output {out.spatial}")
    return net


def init_params(key: jax.Array, net: Network) -> Params:
    """Draw fresh parameters for ``net`` and set the dense pivots.

    The pivot of a dense layer followed by a dense layer is
    ``w[-1, -1] = bias_next / bias_this`` (cianna_layers.md section 1.3).
    """
    keys = jax.random.split(key, max(1, len(net.layers)))
    params = []
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        p, _ = layer.init(keys[i], sin)
        params.append(p)
    for i in range(len(net.layers) - 1):
        cur, nxt = net.layers[i], net.layers[i + 1]
        if isinstance(cur, Dense) and isinstance(nxt, Dense):
            if cur.bias == 0:
                raise ValueError(f"bias: layer {i + 1} has bias 0, so the pivot towards layer "
                                 f"{i + 2} (bias_next / bias_this) would be infinite")
            pivot = np.float32(nxt.bias) / np.float32(cur.bias)
            params[i] = {"w": params[i]["w"].at[-1, -1].set(pivot)}
    return tuple(params)


def check_params(net: Network, params: Params) -> None:
    """Raise ValueError when ``params`` do not have the shapes ``net`` needs."""
    if len(params) != len(net.layers):
        raise ValueError(f"params: expected {len(net.layers)} layer entries, received {len(params)}")
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        want = layer.param_shapes(sin)
        got = {k: tuple(np.shape(v)) for k, v in params[i].items()}
        if got != want:
            raise ValueError(f"params[{i}] ({layer.kind}): expected shapes {want}, received {got}")


def _input_internal(net: Network, x: jax.Array) -> jax.Array:
    if isinstance(net.layers[0], Dense):
        return jnp.concatenate([x, jnp.full((x.shape[0], 1), net.input_bias, x.dtype)], axis=1)
    return flat_to_map(x, Shape(*net.in_dims), net.nd)


def forward_internal(net: Network, params: Params, x: jax.Array, ctx: Ctx,
                     key: jax.Array | None, *, activate_last: bool = True,
                     fuse: bool = True) -> jax.Array:
    """Run every layer on flat input rows ``x (B, C*D*H*W)``; internal-layout result.

    With ``activate_last=False`` the last layer returns its pre-activation (after
    dropout), which is what the output loss differentiates.  A conv followed by a
    max pool that tiles it runs fused (:mod:`cianna_jax.layers.fused`), with the same
    numbers; ``fuse=False`` forces the layer-by-layer path.
    """
    h = _input_internal(net, x.astype(ctx.policy.compute_dtype))
    n = len(net.layers)
    fused = net.fused_pairs(ctx) if fuse else frozenset()
    i = 0
    while i < n:
        layer = net.layers[i]
        if i in fused:
            sub = None if key is None else jax.random.fold_in(key, i + 1)
            h = conv_max_pool(layer, net.layers[i + 1], params[i], h, ctx, sub,
                              activate_output=activate_last or i + 1 < n - 1)
            i += 2
            continue
        sub = None if key is None else jax.random.fold_in(key, i)
        h = layer.apply(params[i], h, ctx, sub, activate_output=activate_last or i < n - 1)
        i += 1
    return h


def to_rows(h: jax.Array, *, bias_slot: bool = False) -> jax.Array:
    """Internal output -> CIANNA rows: dense (B, N [+1]); maps (B, C*D*H*W) channel-major."""
    if h.ndim == 2:
        return h if bias_slot else h[:, :-1]
    return map_to_flat_cmajor(h)


def apply(net: Network, params: Params, x, *, train: bool = False, key: jax.Array | None = None,
          drop_mode: str = "AVG_MODEL", bias_slot: bool = False,
          mixed_precision: str | Policy = "off") -> jax.Array:
    """Forward pass of ``net`` on CIANNA flat rows.

    ``x``: (N, C*D*H*W) float array, channel-major with width fastest (a single
    example (C*D*H*W,) also works, e.g. under ``jax.vmap``).  Returns (N, out_dim):
    dense outputs have ``nb_neurons`` columns (plus CIANNA's bias-slot column when
    ``bias_slot=True``, as in CIANNA's prediction files); conv/pool outputs are
    flattened channel-major.  ``train=True`` draws dropout masks from ``key``;
    otherwise ``drop_mode`` is "AVG_MODEL" (scale by 1 - rate) or "MC_MODEL"
    (random masks, needs ``key``).  ``mixed_precision`` is a CIANNA mode name
    (see :mod:`cianna_jax.precision`); the result is in its compute dtype.
    """
    if drop_mode not in DROP_MODES:
        raise ValueError(f"drop_mode: expected one of {DROP_MODES}, received {drop_mode!r}")
    if not net.layers:
        raise ValueError("net: the network has no layer")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != net.input_dim:
        raise ValueError(f"x: expected shape (N, {net.input_dim}) (C*D*H*W = "
                         f"{'x'.join(map(str, net.in_dims))}), received {tuple(x.shape)}")
    ctx = Ctx(train=train, drop_mode=drop_mode, nd=net.nd, policy=get_policy(mixed_precision))
    y = to_rows(forward_internal(net, params, x, ctx, key), bias_slot=bias_slot)
    if net.yolo is not None:
        y = yolo_rows(net, y)
    return y[0] if single else y


def yolo_grid_shape(net: Network) -> tuple[int, int, int, int]:
    """(F, G2, G1, G0) of a YOLO output, the layout of CIANNA's YOLO arrays."""
    out = net.output_shape
    return (out.c, out.d, out.h, out.w)


def yolo_rows(net: Network, rows: jax.Array) -> jax.Array:
    """Apply the YOLO activation of ``net.yolo`` to raw output rows (N, F*G2*G1*G0)."""
    from .yolo.activation import activation

    n = rows.shape[0]
    raw = rows.astype(jnp.float32).reshape((n,) + yolo_grid_shape(net))
    return activation(raw, net.yolo).reshape(n, -1)
