"""Pooling layer, MAX and AVG, with CIANNA's window rules (cianna_layers.md section 5).

Only real cells take part in a window (padding is ignored, not zero).  MAX keeps
the first maximum in depth, height, width scan order and routes the gradient
there; a window of padding only gives 0.  AVG divides by the number of real
cells in the forward pass but, as CIANNA does, by the full window volume in the
backward pass.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..activations import Activation, activate, parse_activation
from ..geometry import pool_output_size
from ..io.records import PoolRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape, dropout, internal

__all__ = ["Pool"]

POOL_TYPES = ("MAX", "AVG")


def _patches(x, size, stride, pad, out, fill):
    """Stack the window cells of ``x (B, *sp, C)`` on a last axis: (B, *out, C, K).

    Window offsets are enumerated depth-major, then height, then width, which is
    CIANNA's scan order (so argmax ties resolve as in CIANNA).  Windows that tile
    the input exactly are gathered by a reshape, which XLA runs much faster.
    """
    nd = x.ndim - 2
    if all(p == 0 for p in pad) and tuple(stride) == tuple(size) and \
            all(n == o * k for n, o, k in zip(x.shape[1:-1], out, size)):
        split = (x.shape[0],) + tuple(v for o, k in zip(out, size) for v in (o, k)) + (x.shape[-1],)
        perm = (0,) + tuple(1 + 2 * a for a in range(nd)) + (2 * nd + 1,) + \
            tuple(2 + 2 * a for a in range(nd))
        win = jnp.transpose(x.reshape(split), perm)
        return win.reshape(win.shape[:nd + 2] + (-1,))
    cfg = [(0, 0)] + [(p, max(0, (o - 1) * s + k - n - p)) for p, s, k, n, o in
                      zip(pad, stride, size, x.shape[1:-1], out)] + [(0, 0)]
    xp = jnp.pad(x, cfg, constant_values=fill)
    cells = []
    for offs in itertools.product(*[range(k) for k in size]):
        idx = (slice(None),) + tuple(
            slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offs, out, stride)) + (slice(None),)
        cells.append(xp[idx])
    return jnp.stack(cells, axis=-1)


def _valid_counts(in_sp, size, stride, pad, out):
    """Number of real cells of each window, as a static numpy array (*out, 1)."""
    per_axis = []
    for n_in, k, s, p, n_out in zip(in_sp, size, stride, pad, out):
        start = np.arange(n_out) * s - p
        lo = np.maximum(start, 0)
        hi = np.minimum(start + k, n_in)
        per_axis.append(np.maximum(hi - lo, 0))
    counts = per_axis[0]
    for c in per_axis[1:]:
        counts = np.multiply.outer(counts, c)
    return counts.astype(np.float32)[..., None]


#: the max cell picked by a mask, not a gather (:func:`_max_pool`); a flag for A/B runs
MASKED_MAX = True


def _max_pool(x, size, stride, pad, out):
    """The first maximum of each window (CIANNA's scan order), its gradient routed to
    that cell only.  The cell is picked by a one-hot mask of the argmax, so the
    gradient is an elementwise select: as a gather (``take_along_axis``) its gradient
    was a scatter into a zero-filled array of all the window cells, which XLA's CPU
    backend ran far slower (benchmarks/README.md)."""
    cells = _patches(x, size, stride, pad, out, -jnp.inf)
    arg = jnp.argmax(cells, axis=-1)
    if MASKED_MAX:
        first = lax.broadcasted_iota(arg.dtype, cells.shape, cells.ndim - 1) == arg[..., None]
        y = jnp.max(jnp.where(first, cells, -jnp.inf), axis=-1)
    else:
        y = jnp.take_along_axis(cells, arg[..., None], axis=-1)[..., 0]
    return jnp.where(jnp.isneginf(y), jnp.zeros_like(y), y)


def _window_sum(x, size, stride, pad, out):
    return jnp.sum(_patches(x, size, stride, pad, out, 0.0), axis=-1)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _avg_pool(x, size, stride, pad, out):
    counts = _valid_counts(x.shape[1:-1], size, stride, pad, out)
    return _window_sum(x, size, stride, pad, out) / jnp.asarray(counts, x.dtype)


def _avg_fwd(x, size, stride, pad, out):
    return _avg_pool(x, size, stride, pad, out), x


def _avg_bwd(size, stride, pad, out, x, g):
    _, vjp = jax.vjp(lambda v: _window_sum(v, size, stride, pad, out), x)
    return vjp(g / float(np.prod(size)))


_avg_pool.defvjp(_avg_fwd, _avg_bwd)


def _avg_pool_exact(x, size, stride, pad, out):
    """The same forward as :func:`_avg_pool`, differentiated by autodiff."""
    counts = _valid_counts(x.shape[1:-1], size, stride, pad, out)
    return _window_sum(x, size, stride, pad, out) / jnp.asarray(counts, x.dtype)


def _global_pool(x, p_type):
    b, c = x.shape[0], x.shape[-1]
    flat = x.reshape(b, -1, c)
    if p_type == "AVG":
        y = jnp.mean(flat, axis=1)
    else:
        arg = jnp.argmax(flat, axis=1)
        y = jnp.take_along_axis(flat, arg[:, None, :], axis=1)[:, 0]
    return y.reshape((b,) + (1,) * (x.ndim - 2) + (c,))


@register_layer
@dataclass(frozen=True)
class Pool(LayerBase):
    """``pool(p_size, stride, padding, p_type, activation, p_global, drop_rate)``.

    Geometry tuples are in (W, H, D) order.  Input and output are maps
    ``(B, *sp, C)``; ``p_global`` pools each whole map to a single value.
    """

    p_size: tuple[int, int, int]
    activation: Activation
    stride: tuple[int, int, int] | None = None
    padding: tuple[int, int, int] = (0, 0, 0)
    p_type: str = "MAX"
    p_global: int = 0
    drop_rate: float = 0.0

    kind = "pool"
    checked_in_loops = True  # window reductions: no convolution

    def geometry(self, in_shape: Shape):
        """Effective (p_size, stride, padding) in (W, H, D) order for ``in_shape``."""
        if self.p_global:
            return in_shape.spatial, in_shape.spatial, (0, 0, 0)
        stride = self.stride if self.stride is not None else self.p_size
        return self.p_size, stride, self.padding

    def output_shape(self, in_shape: Shape) -> Shape:
        if in_shape.flat:
            raise ValueError("pool: a pool layer cannot follow a dense layer")
        size, stride, pad = self.geometry(in_shape)
        out = []
        for ax, name in enumerate("WHD"):
            n = pool_output_size(in_shape.spatial[ax], size[ax], stride[ax], pad[ax])
            if in_shape.spatial[ax] + 2 * pad[ax] < size[ax]:
                raise ValueError(
                    f"p_size: the window ({size[ax]}) is larger than the padded input along "
                    f"{name} (input {in_shape.spatial[ax]}, "
                    f"p_size {size[ax]}, stride {stride[ax]}, padding {pad[ax]})")
            out.append(n)
        return Shape(out[0], out[1], out[2], in_shape.c)

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {}

    def init(self, key: jax.Array, in_shape: Shape):
        return {}, self.output_shape(in_shape)

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        nd = ctx.nd
        in_shape_int = x.shape[1:-1]
        if self.p_global:
            z = _global_pool(x, self.p_type)
        else:
            size = internal(self.p_size, nd)
            stride = internal(self.stride if self.stride is not None else self.p_size, nd)
            pad = internal(self.padding, nd)
            out = tuple(pool_output_size(s, k, st, p)
                        for s, k, st, p in zip(in_shape_int, size, stride, pad))
            if self.p_type == "AVG":
                avg = _avg_pool_exact if ctx.exact else _avg_pool
                z = avg(x, size, stride, pad, out)
            else:
                z = _max_pool(x, size, stride, pad, out)
        return self.finish(z, ctx, key, activate_output=activate_output)

    def finish(self, z: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
               activate_output: bool = True) -> jax.Array:
        """Dropout and activation of the pooled map ``z`` (shared with the fused path)."""
        z = dropout(z, self.drop_rate, ctx, key)
        if not activate_output:
            return z
        return activate(self.activation, z, exact=ctx.exact)

    def resolve(self, *, first: bool, in_dims, input_bias: float) -> Pool:
        """Canonical geometry: a global window is the whole map; ``p_size=None`` is 2
        along each axis where the network input is > 1; ``stride=None`` is ``p_size``."""
        layer = self
        if layer.p_global:
            layer = dataclasses.replace(layer, p_size=(1, 1, 1), stride=(1, 1, 1),
                                        padding=(0, 0, 0))
        elif layer.p_size is None:
            layer = dataclasses.replace(
                layer, p_size=tuple(2 if n > 1 else 1 for n in in_dims[:3]))
        if layer.stride is None:
            layer = dataclasses.replace(layer, stride=layer.p_size)
        return LayerBase.resolve(layer, first=first, in_dims=in_dims, input_bias=input_bias)

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        super().check(where, sources, last=last)
        src = sources[0] if sources else None
        if src is not None:
            prev = src.layer
            if prev.kind == "pool":
                raise ValueError(f"{where}: two successive pooling layers are not allowed")
            if getattr(prev, "drop_rate", 0.0) > 0.01:
                raise ValueError(f"{where}: a pool layer cannot follow a layer with dropout")
            if prev.kind in ("norm", "lrn"):
                before = src.sources[0] if src.sources else None
                if before is not None and before.layer.kind != "conv":
                    raise ValueError(f"{where}: a pool after a norm/lrn layer needs a conv "
                                     "before it")
        if not self.p_global:
            stride = self.stride if self.stride is not None else self.p_size
            for ax in range(3):
                if stride[ax] > self.p_size[ax]:
                    raise ValueError(f"{where}: stride {stride} larger than p_size "
                                     f"{self.p_size} along axis {'WHD'[ax]}")
                if self.padding[ax] > self.p_size[ax]:
                    raise ValueError(f"{where}: padding {self.padding} larger than p_size "
                                     f"{self.p_size} along axis {'WHD'[ax]}")

    def uses_depth(self) -> bool:
        return not self.p_global and (self.p_size[2] != 1 or self.padding[2] != 0)

    def summary_lines(self, in_shape: Shape, out_shape: Shape, b_size: int) -> list[str]:
        size, stride, pad = self.geometry(in_shape)
        mem = 4 * b_size * (in_shape.size + 2 * out_shape.size)
        return [f"Input: {in_shape}, Output: {out_shape}",
                f"P. size: {_x(size)}, Stride: {_x(stride)}, padding: {_x(pad)} ",
                f"Pool type: {self.p_type}, Global: {self.p_global}, Activation: "
                f"{self.activation.name}, dropout rate: {self.drop_rate:.2f}",
                f"Approx layer RAM/VRAM requirement: {int(mem / 1e6)} MB"]

    def tex_cells(self, in_shape: Shape, out_shape: Shape, params: dict) -> dict[str, str]:
        size, stride, pad = self.geometry(in_shape)
        return {"activation": self.activation.kind, "in_size": _x(in_shape.spatial),
                "f_size": _x(size), "stride": ":".join(map(str, stride)),
                "padding": ":".join(map(str, pad)), "out_size": _x(out_shape.spatial),
                "dropout": f"{int(self.drop_rate * 100)}\\%"}

    def to_record(self, params: dict, in_shape: Shape, yolo=None) -> PoolRecord:
        size, stride, pad = self.geometry(in_shape)
        return PoolRecord(size, stride, pad, self.p_global, self.drop_rate, self.p_type,
                          self.activation.name)

    @classmethod
    def from_record(cls, rec: PoolRecord, *, after_dense: bool = False):
        return (cls(tuple(rec.p_size), parse_activation(rec.activation), tuple(rec.stride),
                    tuple(rec.padding), "AVG" if rec.p_type.startswith("AVG") else "MAX",
                    int(rec.p_global), float(rec.dropout)), {})


def _x(v) -> str:
    return "x".join(str(int(a)) for a in v[:3])
