"""A network: a static, hashable graph of layer specs plus pure ``init_params``/``apply``.

``Network`` holds the input dimensions, the input bias, a tuple of layer specs (any
object meeting :class:`~cianna_jax.layers.base.Layer`) with CIANNA's defaults resolved,
and for each layer the indices of the layers it reads (``-1``: the network input), so it
can be a static argument of ``jax.jit``.  The last layer is the network's output.
Parameters are a tuple (one dict per layer) of float32 arrays in CIANNA's own weight
layouts, so save files map onto them directly.

Layouts: the core takes images channel-last, ``(N, [D,] H, W, C)`` (depth only for 3D
networks, see :attr:`Network.nd`), and returns dense outputs ``(N, nb_neurons)``, maps
``(N, [D,] H, W, C)`` and YOLO outputs ``(N, [G2,] G1, G0, boxes, values)``.  CIANNA's
flat channel-major rows are converted at the edges only (:func:`rows_to_images`,
:func:`output_rows`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import initializers
from .layers import LayerSpec, Source
from .layers.base import f32
from .layers.common import DROP_MODES, Ctx, Shape, internal, map_to_flat_cmajor
from .layers.fused import conv_max_pool, fusible
from .layers.fused_tiles import conv_tiling_conv, tiles_fusible
from .precision import Policy, get_policy
from .yolo import layout as yolo_layout
from .yolo.activation import activation as yolo_activation

__all__ = ["Network", "make_network", "sequential_inputs", "init_params", "set_pivots",
           "check_params", "layer_scope", "LAYER_SCOPE",
           "apply", "apply_layers", "forward_internal", "inference_params", "rows_to_images",
           "rows_to_params", "params_to_rows",
           "images_to_rows", "output_rows", "targets_to_internal", "drop_bias_slot", "exact_grads",
           "Params", "INPUT"]


#: the named scopes :func:`forward_internal` runs layers in, as they appear in compiled
#: programs' op names (``benchmarks/profile_step.py`` sums a profile per layer with it)
LAYER_SCOPE = re.compile(r"\bL\d+_[a-z]+(?:_pool|_tiles)?")


def layer_scope(i: int, kind: str, fused: str = "") -> str:
    """The named scope of layer ``i`` (``"L3_conv"``; ``"L0_conv_pool"`` for a conv run
    fused with the max pool after it, ``"L0_conv_tiles"`` with the tiling conv after it,
    ``fused`` "pool" or "tiles"): it names the layer's operations, gradient included, in
    compiled programs and profiles."""
    return f"L{i}_{kind}" + (f"_{fused}" if fused else "")

Params = tuple[dict[str, jax.Array], ...]

#: Source index standing for the network input in :attr:`Network.inputs`.
INPUT = -1


@dataclass(frozen=True)
class Network:
    """Static description of a network (a DAG of layers).

    ``in_dims`` is (W, H, D, C); ``layers`` the layer specs in call order;
    ``inputs[i]`` the indices of the layers layer ``i`` reads (each ``< i``; ``-1`` is
    the network input); ``input_bias`` CIANNA's ``init(bias=...)``, which is also the
    first layer's bias; ``yolo`` the YOLO configuration of a YOLO output layer.
    Build it with :func:`make_network`, which validates and resolves defaults.
    """

    in_dims: tuple[int, int, int, int]
    layers: tuple[LayerSpec, ...]
    input_bias: float = 0.1
    yolo: Any = None  # cianna_jax.yolo.YoloConfig of a YOLO output layer
    inputs: tuple[tuple[int, ...], ...] = ()

    def sources(self, i: int) -> tuple[int, ...]:
        """Indices read by layer ``i`` (``-1``: the network input)."""
        return self.inputs[i] if self.inputs else ((i - 1,) if i else (INPUT,))

    @cached_property
    def consumers(self) -> tuple[tuple[int, ...], ...]:
        """For each layer, the layers that read its output."""
        out: list[list[int]] = [[] for _ in self.layers]
        for i in range(len(self.layers)):
            for s in self.sources(i):
                if s != INPUT:
                    out[s].append(i)
        return tuple(tuple(c) for c in out)

    @cached_property
    def shapes(self) -> tuple[tuple[Any, Shape], ...]:
        """(input shape, output shape) of every layer; the input shape is a tuple for
        layers with several inputs."""
        outs: list[Shape] = []
        res = []
        for i, layer in enumerate(self.layers):
            ins = tuple(Shape(*self.in_dims) if s == INPUT else outs[s]
                        for s in self.sources(i))
            sin = ins[0] if getattr(layer, "nb_inputs", 1) == 1 else ins
            nxt = layer.output_shape(sin)
            outs.append(nxt)
            res.append((sin, nxt))
        return tuple(res)

    @property
    def input_dim(self) -> int:
        """Flat size of one input example, C*D*H*W."""
        w, h, d, c = self.in_dims
        return w * h * d * c

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input image in the core's layout: ([D,] H, W, C)."""
        return internal(self.in_dims[:3], self.nd) + (self.in_dims[3],)

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1][1] if self.layers else Shape(*self.in_dims)

    @property
    def out_dim(self) -> int:
        """Width of a CIANNA target row: neurons of a dense output, else C*D*H*W."""
        return self.output_shape.size

    @cached_property
    def nd(self) -> int:
        """Spatial rank used internally: 3 when anything involves depth, else 2."""
        if self.in_dims[2] > 1:
            return 3
        for layer, (sin, sout) in zip(self.layers, self.shapes):
            ins = sin if isinstance(sin, tuple) and not isinstance(sin, Shape) else (sin,)
            if sout.d > 1 or any(not s.flat and s.d > 1 for s in ins):
                return 3
            if getattr(layer, "uses_depth", lambda: False)():
                return 3
        return 2

    def fused_pairs(self, ctx: Ctx) -> frozenset[int]:
        """Indices ``i`` where conv ``i`` and max pool ``i + 1`` run fused under ``ctx``
        (the pool is the conv's only reader; never with exact gradients)."""
        if ctx.exact:
            return frozenset()
        return frozenset(
            i for i in range(len(self.layers) - 1)
            if self.sources(i + 1) == (i,) and self.consumers[i] == (i + 1,)
            and fusible(self.layers[i], self.layers[i + 1], self.shapes[i][0], ctx))

    def tiled_pairs(self, ctx: Ctx) -> frozenset[int]:
        """Indices ``i`` where conv ``i`` and the conv ``i + 1`` whose filters tile its
        output run fused on CPU under ``ctx`` (conv ``i + 1`` its only reader;
        :mod:`cianna_jax.layers.fused_tiles`), none of them a conv fused with its pool."""
        pooled = self.fused_pairs(ctx)
        return frozenset(
            i for i in range(len(self.layers) - 1)
            if i not in pooled and i + 1 not in pooled
            and self.sources(i + 1) == (i,) and self.consumers[i] == (i + 1,)
            and tiles_fusible(self.layers[i], self.layers[i + 1], self.shapes[i][0], ctx))

    def with_input_bias(self, bias: float) -> Network:
        """The same network with another ``init(bias=...)`` (first layer bias too)."""
        return make_network(self.in_dims, self.layers, bias, self.yolo, self.inputs or None)


def sequential_inputs(n: int) -> tuple[tuple[int, ...], ...]:
    """The wiring of a plain stack of ``n`` layers: each reads the one before."""
    return tuple((i - 1,) if i else (INPUT,) for i in range(n))


def _check_inputs(layers, inputs) -> tuple[tuple[int, ...], ...]:
    if inputs is None:
        return sequential_inputs(len(layers))
    inputs = tuple(tuple(int(s) for s in (src if np.ndim(src) else (src,))) for src in inputs)
    if len(inputs) != len(layers):
        raise ValueError(f"inputs: expected one entry per layer ({len(layers)}), received "
                         f"{len(inputs)}")
    for i, (layer, src) in enumerate(zip(layers, inputs)):
        need = getattr(layer, "nb_inputs", 1)
        if len(src) != need:
            raise ValueError(f"inputs: layer {i + 1} ({layer.kind}) reads {need} input(s), "
                             f"received {src}")
        for s in src:
            if not INPUT <= s < i:
                raise ValueError(f"inputs: layer {i + 1} ({layer.kind}) can only read the "
                                 f"network input (-1) or an earlier layer (0..{i - 1}), "
                                 f"received {s}")
    return inputs


def _source_trees(layers, inputs) -> list[tuple]:
    """For each layer, what it reads as :class:`Source` nodes (``None``: the input).

    Built once in layer order with shared nodes: linear in the number of layers,
    without recursion, and without the exponential blow-up a tree copy of a residual
    graph would have (inputs always point to earlier layers)."""
    nodes: list[Source] = []
    trees = []
    for i, layer in enumerate(layers):
        tree = tuple(None if s == INPUT else nodes[s] for s in inputs[i])
        trees.append(tree)
        nodes.append(Source(layer, tree))
    return trees


def _resolve(layer, first: bool, in_dims, input_bias: float):
    resolve = getattr(layer, "resolve", None)
    return layer if resolve is None else resolve(first=first, in_dims=in_dims,
                                                 input_bias=input_bias)


def make_network(in_dims, layers, input_bias: float = 0.1, yolo=None,
                 inputs=None) -> Network:
    """Validate ``layers`` for input ``in_dims`` (W, H, D, C) and resolve their defaults.

    ``inputs`` (optional) gives for each layer the indices of the layers it reads
    (``-1``: the network input; default: each layer reads the previous one).  A
    layer's ``bias`` of None takes its activation's default (LIN 0.5, RELU 0.1,
    LOGI -1.0, SMAX 0.1, YOLO 0.5); the first layer always takes ``input_bias``.
    ``yolo`` is the YOLO configuration of a last conv layer with activation YOLO; its
    filter count and grid must match that layer.  Raises ValueError on invalid
    stacking, wiring or geometry, naming the layer.
    """
    in_dims = tuple(int(v) for v in in_dims)
    if len(in_dims) != 4 or min(in_dims) < 1:
        raise ValueError(f"in_dims: expected 4 positive ints (W, H, D, C), received {in_dims}")
    if not math.isfinite(input_bias):  # a NaN or inf input makes every output NaN
        raise ValueError(f"bias: expected a finite input bias, received {input_bias!r}")
    layers = tuple(layers)
    wiring = _check_inputs(layers, inputs)
    resolved = tuple(_resolve(layer, i == 0, in_dims, input_bias)
                     for i, layer in enumerate(layers))
    trees = _source_trees(resolved, wiring)
    for i, layer in enumerate(resolved):
        check = getattr(layer, "check", None)
        if check is not None:
            check(f"layer {i + 1} ({layer.kind})", trees[i], last=i == len(resolved) - 1)
    sequential = wiring == sequential_inputs(len(resolved))
    net = Network(in_dims, resolved, f32(input_bias), yolo, () if sequential else wiring)
    _checked_shapes(net)
    _check_pivots(net)
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


def _checked_shapes(net: Network):
    """``net.shapes``, with the failing layer named in the error."""
    try:
        return net.shapes
    except ValueError as err:
        for i in range(len(net.layers)):
            sub = Network(net.in_dims, net.layers[:i + 1], net.input_bias, None,
                          tuple(net.sources(j) for j in range(i + 1)))
            try:
                sub.shapes  # noqa: B018
            except ValueError:
                raise ValueError(f"layer {i + 1} ({net.layers[i].kind}): {err}") from None
        raise


def _check_pivots(net: Network) -> None:
    """A dense layer read by dense layers carries one pivot ``bias_next / bias_this``:
    its dense readers must share one bias, and its own bias cannot be 0."""
    for i, layer in enumerate(net.layers):
        if layer.kind != "dense":
            continue
        readers = [j for j in net.consumers[i] if net.layers[j].kind == "dense"]
        biases = {net.layers[j].bias for j in readers}
        if len(biases) > 1:
            raise ValueError(f"layer {i + 1} (dense): its dense readers (layers "
                             f"{[j + 1 for j in readers]}) need one bias, received {biases}")


def init_params(key: jax.Array, net: Network) -> Params:
    """Draw fresh parameters for ``net`` and set the dense pivots.

    The pivot of a dense layer read by a dense layer is
    ``w[-1, -1] = bias_next / bias_this`` (cianna_layers.md section 1.3).
    """
    keys = initializers.split(key, max(1, len(net.layers)))
    params = []
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        p, _ = layer.init(keys[i], sin)
        params.append(p)
    return set_pivots(net, tuple(params))


def set_pivots(net: Network, params: Params, layers=None) -> Params:
    """``params`` with CIANNA's dense pivots set: a dense layer read by a dense layer gets
    ``w[-1, -1] = bias_next / bias_this`` (cianna_layers.md section 1.3).  ``layers``
    limits this to those layer indices (default: all).  Raises ValueError for a zero bias.
    """
    params = list(params)
    for i, layer in enumerate(net.layers):
        if layers is not None and i not in layers:
            continue
        readers = [j for j in net.consumers[i] if net.layers[j].kind == "dense"]
        if layer.kind != "dense" or not readers:
            continue
        nxt = net.layers[readers[0]]
        if layer.bias == 0:
            raise ValueError(f"bias: layer {i + 1} has bias 0, so the pivot towards layer "
                             f"{readers[0] + 1} (bias_next / bias_this) would be infinite")
        pivot = np.float32(nxt.bias) / np.float32(layer.bias)
        w = params[i]["w"]
        if initializers.is_concrete(w):  # on the host: no program compiled per shape
            w = np.array(w, np.float32)
            w[-1, -1] = pivot
            w = jnp.asarray(w, jnp.float32)
        else:
            w = w.at[-1, -1].set(pivot)
        params[i] = {**params[i], "w": w}
    return tuple(params)


def check_params(net: Network, params: Params, *, laid_out: bool = False) -> None:
    """Raise ValueError when ``params`` do not have the shapes ``net`` needs.

    ``laid_out``: entries may also be in a layer's :func:`inference_params` form (other
    names, left to that layer); entries under the trained names must have their shapes.
    """
    if not isinstance(params, (tuple, list)):
        raise TypeError(f"params: expected a tuple of {len(net.layers)} per-layer dicts, "
                        f"received {type(params).__name__}")
    if len(params) != len(net.layers):
        raise ValueError(f"params: expected {len(net.layers)} layer entries, received {len(params)}")
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        want = layer.param_shapes(sin)
        if not isinstance(params[i], dict):
            raise TypeError(f"params[{i}] ({layer.kind}): expected a dict of arrays, received "
                            f"{type(params[i]).__name__}")
        got = {k: tuple(np.shape(v)) for k, v in params[i].items()}
        if got != want and not (laid_out and set(got) != set(want)):
            hint = (" (CIANNA's weight rows: convert them with rows_to_params)"
                    if layer.kind == "conv" and set(got) == {"w"} else "")
            raise ValueError(f"params[{i}] ({layer.kind}): expected shapes {want}, received "
                             f"{got}{hint}")


def forward_internal(net: Network, params: Params, x: jax.Array, ctx: Ctx,
                     key: jax.Array | None, *, activate_last: bool = True,
                     fuse: bool = True, keep: tuple[int, ...] = ()) -> Any:
    """Run the graph on images ``x (B, [D,] H, W, C)`` (or ``(B, D, H, W, C)`` with
    ``D = 1`` for a 2D network); the last layer's raw result.

    Dense layers return ``(B, n + 1)`` (CIANNA's bias slot last), maps ``(B, *sp, C)``.
    With ``activate_last=False`` the last layer returns its pre-activation (after
    dropout), which is what the output loss differentiates.  A conv whose only reader
    is a max pool that tiles it runs fused with it (:mod:`cianna_jax.layers.fused`,
    same numbers; not when its params are in a Winograd layout, laid out under a policy
    that does not fuse), and on CPU one whose only reader is a conv whose filters tile
    it (:mod:`cianna_jax.layers.fused_tiles`, the same numbers to float rounding);
    ``fuse=False`` forces the layer-by-layer path.  ``keep``: return instead the tuple
    of those layers' outputs.
    """
    check_params(net, params, laid_out=True)  # at trace time: early errors, no run-time cost
    x = x.reshape((x.shape[0],) + net.input_shape)  # (B, D=1, H, W, C) -> 2D: free
    h = {INPUT: x.astype(ctx.policy.compute_dtype)}
    n = len(net.layers)
    fused = net.fused_pairs(ctx) if fuse and not keep else frozenset()
    tiled = net.tiled_pairs(ctx) if fuse and not keep else frozenset()
    i = 0
    while i < n:
        layer = net.layers[i]
        if i in fused and "kernel" in params[i]:  # not laid out for another policy
            sub = None if key is None else jax.random.fold_in(key, i + 1)
            with jax.named_scope(layer_scope(i, layer.kind, fused="pool")):
                h[i + 1] = conv_max_pool(layer, net.layers[i + 1], params[i],
                                         h[net.sources(i)[0]], ctx, sub,
                                         activate_output=activate_last or i + 1 < n - 1)
            i += 2
            continue
        if i in tiled and "kernel" in params[i] and "kernel" in params[i + 1]:
            with jax.named_scope(layer_scope(i, layer.kind, fused="tiles")):
                h[i + 1] = conv_tiling_conv(layer, net.layers[i + 1], params[i], params[i + 1],
                                            h[net.sources(i)[0]], ctx,
                                            activate_output=activate_last or i + 1 < n - 1)
            i += 2
            continue
        sub = None if key is None else jax.random.fold_in(key, i)
        src = tuple(h[s] for s in net.sources(i))
        with jax.named_scope(layer_scope(i, layer.kind)):
            h[i] = layer.apply(params[i],
                               src[0] if getattr(layer, "nb_inputs", 1) == 1 else src,
                               ctx, sub, activate_output=activate_last or i < n - 1)
        i += 1
    if keep:
        return tuple(h[k] for k in keep)
    return h[n - 1]


def rows_to_params(net: Network, params) -> Params:
    """Per-layer params holding CIANNA's weight layouts -> the core's params: a
    convolution's ``{"w": (F, K*C/G + 1)}`` (one row ``[C/G][f_d][f_h][f_w]`` per filter,
    bias weight last, as in CIANNA's files and its C code) becomes ``{"kernel",
    "bias_weight"}`` (:meth:`cianna_jax.layers.conv.Conv.from_rows`); the other layers'
    params are the same in both (a dense layer keeps CIANNA's rows).  Works on traced
    arrays: gradients with respect to CIANNA's rows go through it."""
    if len(params) != len(net.layers):
        raise ValueError(f"params: expected {len(net.layers)} per-layer dicts, received "
                         f"{len(params)}")
    return tuple(layer.from_rows(p["w"]) if hasattr(layer, "from_rows") and "w" in p else p
                 for layer, p in zip(net.layers, params))


def params_to_rows(net: Network, params: Params) -> tuple:
    """The inverse of :func:`rows_to_params`: convolutions' weights as CIANNA's rows
    ``{"w": (F, K*C/G + 1)}``, host arrays as numpy."""
    return tuple({"w": layer.to_rows(p)} if hasattr(layer, "to_rows") and "kernel" in p else p
                 for layer, p in zip(net.layers, params))


def inference_params(net: Network, params: Params, policy: Policy | str = "off") -> Params:
    """``params`` laid out once for repeated inference with the same weights, under the
    mixed-precision ``policy`` of the passes that will use them (a Policy or a CIANNA
    ``mixed_precision`` string: it picks the Winograd tile of the wide 3x3 layers).

    Layers that define ``inference_params`` get that form: convolutions run as
    Winograd on CPU (the filters already transformed and the bias term, see
    :meth:`cianna_jax.layers.conv.Conv.inference_params`) and with 16 zero filters more
    where they have 2048 or 4096 (:mod:`cianna_jax.layers.widths`), except convs that run fused
    with their max pool under ``policy``, and dense layers that read a map (their
    weight rows in the map's channel-last order,
    :meth:`cianna_jax.layers.dense.Dense.inference_params`); the others keep theirs
    (the same arrays, no copy).  :func:`apply`, :func:`apply_layers` and
    :func:`cianna_jax.training.eval_step` take either form and give the same numbers
    (to float rounding: the summation order may differ); the laid-out form skips the
    filter transforms every call would otherwise do.  Save, train and
    differentiate the original ``params``, not these.  Laid-out params come back as
    they are (laying out twice changes nothing).
    """
    policy = get_policy(policy)
    # a conv that runs fused with its max pool or a tiling conv needs its kernel (a
    # Winograd or widened layout would reach conv_max_pool, which cannot use it, or make
    # the pair run apart)
    ctx = Ctx(nd=net.nd, policy=policy)
    fused = net.fused_pairs(ctx) | {j for i in net.tiled_pairs(ctx) for j in (i, i + 1)}
    todo = tuple(i for i, layer in enumerate(net.layers)
                 if hasattr(layer, "inference_params") and i not in fused)
    sub = tuple(params[i] for i in todo)
    # one compiled program (eagerly, each transform, reorder and bias term of a new shape
    # compiles a small program: CIANNA's SDC1 detector, 24 of them) where the layers'
    # device test inside it (JAX's default backend) agrees with where the weights are
    placed = {d.platform for a in jax.tree_util.tree_leaves(sub)
              if isinstance(a, jax.Array) and initializers.is_concrete(a) for d in a.devices()}
    laid = (_laid_out(net, policy, todo, sub) if placed <= {jax.default_backend()}
            else _lay_out(net, policy, todo, sub))
    out = list(params)
    for i, r in zip(todo, laid):
        if r is not None:
            out[i] = r
    return tuple(out)


def _lay_out(net: Network, policy: Policy, todo: tuple[int, ...], sub: tuple) -> tuple:
    """The laid-out params of layers ``todo`` (None where a layer keeps its own)."""
    out = []
    for i, p in zip(todo, sub):
        r = net.layers[i].inference_params(p, net.shapes[i][0], net.nd, policy)
        out.append(None if r is p else r)
    return tuple(out)


_laid_out = jax.jit(_lay_out, static_argnums=(0, 1, 2))


def _check_images(net: Network, x) -> tuple[jax.Array, bool]:
    """``x`` as an array (no computation: that runs in the program) and whether it is a
    single image without the batch axis; ValueError for a wrong shape."""
    if not isinstance(x, (np.ndarray, jax.Array)):
        x = np.asarray(x)
    want = net.input_shape
    single = tuple(x.shape) == want
    if tuple(x.shape[1:]) != want and not single:
        raise ValueError(f"x: expected images of shape (N, {', '.join(map(str, want))}) "
                         f"(channel-last {'D, ' if net.nd == 3 else ''}H, W, C; CIANNA rows go "
                         f"through rows_to_images), received {tuple(x.shape)}")
    return x, single


def _finish(net: Network, h: jax.Array, bias_slot: bool) -> jax.Array:
    """Internal output -> the core's output layout (dense slot dropped, YOLO boxes)."""
    if net.yolo is not None:
        cfg = net.yolo
        y = h.astype(jnp.float32).reshape(h.shape[:-1] + (cfg.nb_box, cfg.channels_per_box))
        return yolo_activation(y, cfg)
    return drop_bias_slot(net, h, bias_slot)


def drop_bias_slot(net: Network, out: jax.Array, bias_slot: bool = False) -> jax.Array:
    """``net``'s outputs ``out`` (core layout, CIANNA's bias-slot column kept on a dense
    output, as :func:`cianna_jax.training.eval_step` gives them) without that column,
    unless ``bias_slot``: the layout :func:`apply` returns."""
    if out.ndim == 2 and net.output_shape.flat and not bias_slot:
        return out[:, :-1]
    return out


def apply(net: Network, params: Params, x, *, train: bool = False, key: jax.Array | None = None,
          drop_mode: str = "AVG_MODEL", bias_slot: bool = False,
          mixed_precision: str | Policy = "off", grads: str = "cianna") -> jax.Array:
    """Forward pass of ``net`` on images ``x (N, [D,] H, W, C)`` (channel-last).

    A single image (no batch axis) also works, e.g. under ``jax.vmap``.  Returns dense
    outputs ``(N, nb_neurons)`` (plus CIANNA's bias-slot column when ``bias_slot``),
    maps ``(N, [D,] H, W, C)``, YOLO outputs ``(N, [G2,] G1, G0, boxes, values)``
    (activated).  ``train=True`` draws dropout masks from ``key``; otherwise
    ``drop_mode`` is "AVG_MODEL" (scale by 1 - rate) or "MC_MODEL" (random masks, needs
    ``key``).  ``mixed_precision`` is a CIANNA mode name (see :mod:`cianna_jax.precision`);
    the result is in its compute dtype.  ``grads`` picks what ``jax.grad`` through this
    function gives: "cianna" (CIANNA's backward rules, the default) or "exact"
    (plain autodiff); see :mod:`cianna_jax.gradients`.
    """
    if drop_mode not in DROP_MODES:
        raise ValueError(f"drop_mode: expected one of {DROP_MODES}, received {drop_mode!r}")
    if not net.layers:
        raise ValueError("net: the network has no layer")
    x, single = _check_images(net, x)
    ctx = Ctx(train=train, drop_mode=drop_mode, nd=net.nd, policy=get_policy(mixed_precision),
              exact=exact_grads(grads))
    return _apply_program(net, params, x, key, ctx, bias_slot, single)


# The forward runs as one jitted program (inlined when the caller is itself under
# ``jit``): called eagerly, or differentiated eagerly by ``jax.grad``, it would otherwise
# compile one small XLA program per operation and shape, several seconds for a small
# network on 2 CPU cores, against a fraction of that for the whole program.
@partial(jax.jit, static_argnames=("net", "ctx", "bias_slot", "single"))
def _apply_program(net: Network, params: Params, x, key, ctx: Ctx, bias_slot: bool,
                   single: bool):
    x = _as_batch(x, single)
    y = _finish(net, forward_internal(net, params, x, ctx, key), bias_slot)
    return y[0] if single else y


@partial(jax.jit, static_argnames=("net", "ctx", "keep", "single"))
def _layers_program(net: Network, params: Params, x, key, ctx: Ctx, keep: tuple[int, ...],
                    single: bool = False):
    outs = forward_internal(net, params, _as_batch(x, single), ctx, key, keep=keep)
    return tuple(o[:, :-1] if net.shapes[i][1].flat else o for i, o in zip(keep, outs))


def _as_batch(x, single: bool):
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x[None] if single else x


def apply_layers(net: Network, params: Params, x, layers, *, train: bool = False,
                 key: jax.Array | None = None, drop_mode: str = "AVG_MODEL",
                 mixed_precision: str | Policy = "off", grads: str = "cianna") -> tuple:
    """The outputs of the layers listed in ``layers`` (indices) for images ``x``.

    Maps come channel-last ``(N, *sp, C)``, dense outputs ``(N, nb_neurons)`` (no
    bias slot); the last layer's YOLO activation is not applied here.
    """
    x, single = _check_images(net, x)
    idx = _layer_indices(net, layers)
    ctx = Ctx(train=train, drop_mode=drop_mode, nd=net.nd, policy=get_policy(mixed_precision),
              exact=exact_grads(grads))
    return _layers_program(net, params, x, key, ctx, idx, single)


def _layer_indices(net: Network, layers) -> tuple[int, ...]:
    """``layers`` (an index or indices, negative from the end as in Python) as indices."""
    n = len(net.layers)
    out = []
    for i in np.atleast_1d(np.asarray(layers, dtype=object)):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"layers: expected layer indices (ints), received {i!r}")
        if not -n <= i < n:
            raise ValueError(f"layers: index {i} is out of range for a network of {n} layers "
                             f"(0 to {n - 1}, or -{n} to -1 from the end)")
        out.append(int(i) % n)
    if not out:
        raise ValueError("layers: expected at least one layer index, received none")
    return tuple(out)


def exact_grads(grads: str) -> bool:
    """``grads`` ("cianna" or "exact") as the ``Ctx.exact`` flag."""
    if grads not in ("cianna", "exact"):
        raise ValueError(f"grads: expected 'cianna' or 'exact', received {grads!r}")
    return grads == "exact"


# ----------------------------------------------------------------------------- edges


def rows_to_images(net: Network, rows) -> Any:
    """CIANNA input rows ``(N, C*D*H*W)`` (channel-major, width fastest) -> images
    ``(N, [D,] H, W, C)``.  numpy in, numpy out; JAX arrays stay JAX arrays."""
    xp = np if isinstance(rows, np.ndarray) else jnp
    rows = xp.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != net.input_dim:
        raise ValueError(f"rows: expected shape (N, {net.input_dim}) (C*D*H*W = "
                         f"{'x'.join(map(str, net.in_dims))}), received {tuple(rows.shape)}")
    return _channel_major_to_last(xp, rows, net.in_dims[3], net.input_shape[:-1])


def images_to_rows(net: Network, images) -> Any:
    """Images ``(N, [D,] H, W, C)`` -> CIANNA rows ``(N, C*D*H*W)``."""
    xp = np if isinstance(images, np.ndarray) else jnp
    images = xp.asarray(images)
    return xp.moveaxis(images, -1, 1).reshape(images.shape[0], -1)


def output_rows(net: Network, y) -> Any:
    """An output of :func:`apply` -> CIANNA's output rows (as in its prediction files):
    dense unchanged, maps channel-major, YOLO ``[F, G2, G1, G0]`` flattened."""
    _check_outputs(net, y)
    if net.yolo is not None:
        return yolo_layout.to_cianna_rows(y)
    if y.ndim == 2:
        return y
    if isinstance(y, np.ndarray):
        return images_to_rows(net, y)
    return map_to_flat_cmajor(y)


def _check_outputs(net: Network, y) -> None:
    """ValueError unless ``y`` has the shape :func:`apply` gives for ``net`` (a batch)."""
    out = net.output_shape
    if net.yolo is not None:
        cfg = net.yolo
        wants = [internal(out.spatial, net.nd) + (cfg.nb_box, cfg.channels_per_box)]
    elif out.flat:
        wants = [(out.size,), (out.size + 1,)]  # with or without the bias slot
    else:
        wants = [internal(out.spatial, net.nd) + (out.c,)]
    if np.ndim(y) < 1 or tuple(np.shape(y)[1:]) not in wants:
        raise ValueError(f"y: expected outputs of apply, shape (N, {', '.join(map(str, wants[0]))})"
                         f", received {tuple(np.shape(y))}")


def check_targets(net: Network, t, name: str = "t") -> None:
    """ValueError unless ``t`` is a batch of targets for ``net``'s output: YOLO target
    rows ``(N, target_len)``, dense ``(N, nb_neurons)``, maps in the core's layout or as
    CIANNA's channel-major rows ``(N, C*D*H*W)``.  Shapes only: it works on tracers."""
    out = net.output_shape
    if net.yolo is not None:
        wants, what = [(net.yolo.target_len,)], "YOLO target rows"
    elif out.flat:
        wants, what = [(out.size,)], "one value per output neuron"
    else:
        wants = [internal(out.spatial, net.nd) + (out.c,), (out.size,)]
        what = "the output map, channel-last or as CIANNA rows"
    if np.ndim(t) < 1 or tuple(np.shape(t)[1:]) not in wants:
        alts = " or ".join(f"(N, {', '.join(map(str, w))})" for w in wants)
        raise ValueError(f"{name}: expected targets of shape {alts} ({what}), received "
                         f"{tuple(np.shape(t))}")


def targets_to_internal(net: Network, targets) -> Any:
    """Targets -> the core's output layout: for a map output, CIANNA's channel-major
    rows ``(N, C*D*H*W)`` become ``(N, [D,] H, W, C)`` (targets already in that layout
    are returned as they are); dense and YOLO targets are unchanged."""
    out = net.output_shape
    xp = np if isinstance(targets, np.ndarray) else jnp
    t = xp.asarray(targets)
    if net.yolo is not None or out.flat or t.ndim != 2:
        return t
    return _channel_major_to_last(xp, t, out.c, internal(out.spatial, net.nd))


def _channel_major_to_last(xp, rows, c: int, spatial: tuple[int, ...]):
    """Flat channel-major rows ``(N, C*prod(spatial))`` -> ``(N, *spatial, C)``."""
    return xp.moveaxis(rows.reshape((rows.shape[0], c) + tuple(spatial)), 1, -1)
