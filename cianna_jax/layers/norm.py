"""Group normalisation, CIANNA's only ``norm`` type (cianna_layers.md section 6).

Per sample and per group of ``group_size`` consecutive channels: biased variance,
``eps = 1e-3`` inside the square root, one learnable scale and shift per *group*,
no running statistics.  The last ``set_off`` groups pass through unchanged.
The layer activation is applied (CUDA behaviour).

``per_channel=True`` is CIANNA V-1.1's norm: the same group statistics with
``eps = 1e-6`` and one scale and shift per *channel* (``gamma_init`` at creation, no
``set_off``).  Its backward pass in the original is the exact gradient, so both
variants take the exact gradient: written out as one custom VJP whose sums run in fused
passes (:data:`FUSED_PASSES`), the same values as autodiff of the plain formulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import host_arrays
from ..activations import Activation, activate, parse_activation
from ..geometry import nb_groups
from ..io.records import NormRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape
from .sums import position_sums

__all__ = ["Norm", "GN_EPS", "GN_EPS_V11", "check_normalisation"]

GN_EPS = 1e-3
#: CIANNA V-1.1's epsilon (per-channel norm, naiv_norm_layer.c).
GN_EPS_V11 = 1e-6


#: the layer's normalisation as one custom VJP whose sums run as fused passes over the
#: map (:mod:`.sums`): forward + gradient on (8, 224, 224, 32), group size 4, 56-67 -> 30
#: ms, PyTorch's 33 (benchmarks/README.md, thirtieth session).  False: autodiff of the
#: same values written on (B, *sp, C) with the group statistics spread to per-channel
#: rows.  A module flag for A/B runs.
FUSED_PASSES = True


def _spread(v: jax.Array, ndim: int, gs: int) -> jax.Array:
    """Per-group values ``(B, G)`` as per-channel rows ``(B, 1.., G * gs)`` of a map of
    ``ndim`` axes."""
    b, g = v.shape
    return jnp.broadcast_to(v[:, :, None], (b, g, gs)).reshape((b,) + (1,) * (ndim - 2)
                                                                + (g * gs,))


def _group_stats(x: jax.Array, gs: int, eps: float) -> tuple[jax.Array, jax.Array]:
    """``(mean, 1 / sqrt(var + eps))`` per example and group ``(B, G)`` of the float32
    map ``x (B, *sp, C)``: the mean, then the sums of ``d = x - mean`` and ``d**2`` in one
    pass, the variance corrected by the first (``(S2 - S1**2 / n) / n``, which removes the
    mean's rounding)."""
    bsz, c = x.shape[0], x.shape[-1]
    n = float(np.prod(x.shape[1:-1])) * gs
    axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
    mean = jnp.mean(x.reshape(x.shape[:-1] + (c // gs, gs)), axis=axes)
    d = x - _spread(mean, x.ndim, gs)
    s1, s2 = (s.reshape(bsz, c // gs, gs).sum(-1) for s in position_sums(d, d * d))
    var = jnp.maximum((s2 - s1 * s1 / n) / n, 0.0)
    return mean + s1 / n, lax.rsqrt(var + eps)


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _normalised(x, gamma_c, beta_c, gs: int, eps: float):
    """``gamma_c * (x - mean) / sqrt(var + eps) + beta_c`` (float32) with the statistics
    of each group of ``gs`` channels of ``x (B, *sp, C)``; ``gamma_c``, ``beta_c`` per
    channel ``(C,)``.  Its gradient is the exact one, in two passes over ``x`` and the
    output gradient (one for both sums, one writing the input gradient)."""
    return _normalised_fwd(x, gamma_c, beta_c, gs, eps)[0]


def _normalised_fwd(x, gamma_c, beta_c, gs, eps):
    xf = x.astype(jnp.float32)
    mean, inv = _group_stats(xf, gs, eps)
    y = (xf - _spread(mean, x.ndim, gs)) * (_spread(inv, x.ndim, gs) * gamma_c) + beta_c
    return y, (x, gamma_c, mean, inv)


def _normalised_bwd(gs, eps, res, g):
    x, gamma_c, mean, inv = res
    xf, g = x.astype(jnp.float32), g.astype(jnp.float32)
    n = float(np.prod(x.shape[1:-1])) * gs
    iv = _spread(inv, x.ndim, gs)
    xhat = (xf - _spread(mean, x.ndim, gs)) * iv
    sg, sgx = position_sums(g, g * xhat)  # (B, C): the beta and gamma gradients' terms
    bsz = sg.shape[0]

    def group_mean(s):  # (B, C) -> (B, G): mean over a group of dL/dxhat (* xhat)
        return jnp.sum((s * gamma_c).reshape(bsz, -1, gs), axis=-1) / n

    gx = iv * (g * gamma_c - _spread(group_mean(sg), x.ndim, gs)
               - xhat * _spread(group_mean(sgx), x.ndim, gs))
    return gx.astype(x.dtype), jnp.sum(sgx, axis=0), jnp.sum(sg, axis=0)


_normalised.defvjp(_normalised_fwd, _normalised_bwd)


@register_layer
@dataclass(frozen=True)
class Norm(LayerBase):
    """``norm(normalization="GN", activation, group_size, set_off)``.

    Parameters ``{"gamma": (G,), "beta": (G,)}`` with ``G = C / group_size`` groups, or
    ``(C,)`` each when ``per_channel`` (CIANNA V-1.1, eps 1e-6, ``gamma_init``).
    Input and output: map ``(B, *sp, C)``.
    """

    activation: Activation
    group_size: int = 8
    set_off: int = 0
    normalization: str = "GN"
    per_channel: bool = False
    # creation-only setting: not saved by CIANNA, not part of the network identity
    gamma_init: float = field(default=1.0, compare=False)

    kind = "norm"
    checked_in_loops = True  # reductions and elementwise operations: no convolution

    def nb_groups(self, in_shape: Shape) -> int:
        return nb_groups(in_shape.c, self.group_size)

    @property
    def eps(self) -> float:
        """The epsilon added to the variance: 1e-3 (V-1.0) or 1e-6 (V-1.1 per channel)."""
        return GN_EPS_V11 if self.per_channel else GN_EPS

    def nb_affine(self, in_shape: Shape) -> int:
        """Number of gamma (and of beta) values: channels or groups."""
        return in_shape.c if self.per_channel else self.nb_groups(in_shape)

    def output_shape(self, in_shape: Shape) -> Shape:
        if in_shape.flat:
            raise ValueError("norm: a normalisation layer cannot follow a dense layer")
        if in_shape.c % self.group_size:
            raise ValueError(
                f"group_size: must divide the number of channels; received group_size="
                f"{self.group_size} for {in_shape.c} channels")
        top = 0 if self.per_channel else self.nb_groups(in_shape)
        if not 0 <= self.set_off <= top:
            raise ValueError(f"set_off: expected 0..{top} groups, received {self.set_off}"
                             + (" (V-1.1's per-channel norm has no set_off)"
                                if self.per_channel else ""))
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        g = self.nb_affine(in_shape)
        return {"gamma": (g,), "beta": (g,)}

    def init(self, key: jax.Array, in_shape: Shape):
        g = self.nb_affine(in_shape)
        return ({"gamma": host_arrays.full((g,), self.gamma_init, jnp.float32, like=key),
                 "beta": host_arrays.full((g,), 0.0, jnp.float32, like=key)}, self.output_shape(in_shape))

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        shape = x.shape
        c = shape[-1]
        gs = self.group_size
        ng = c // gs
        if self.per_channel:
            gamma, beta = params["gamma"].reshape(ng, gs), params["beta"].reshape(ng, gs)
        else:
            gamma, beta = params["gamma"][:, None], params["beta"][:, None]
        xf = x.astype(jnp.float32)
        beta_c = jnp.broadcast_to(beta, (ng, gs)).reshape(c)  # one shift per channel
        if FUSED_PASSES:
            y = _normalised(x, jnp.broadcast_to(gamma, (ng, gs)).reshape(c), beta_c, gs,
                            self.eps)
        else:
            xg = xf.reshape(shape[:-1] + (ng, gs))
            axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
            mean = jnp.mean(xg, axis=axes, keepdims=True)
            inv = lax.rsqrt(jnp.mean(jnp.square(xg - mean), axis=axes, keepdims=True)
                            + self.eps)
            # computed on (B, *sp, C), channels contiguous, with the group statistics
            # spread to per-channel rows (XLA's CPU loops on the grouped view ran at about
            # 3 ns per element: forward + gradient, batch 8, 64x64x64 89 -> 44 ms)
            rows = shape[:1] + (1,) * (x.ndim - 2) + (c,)

            def per_channel(a):  # (B, 1.., G, 1 or group_size) -> (B, 1.., C)
                return jnp.broadcast_to(a, a.shape[:-1] + (gs,)).reshape(rows)

            y = (xf - per_channel(mean)) * per_channel(gamma * inv) + beta_c
        if self.set_off:
            normed = jnp.repeat(jnp.arange(ng) < ng - self.set_off, self.group_size)
            y = jnp.where(normed, y, xf)
        z = y.astype(x.dtype)
        if not activate_output:
            return z
        return activate(self.activation, z, exact=ctx.exact)

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        check_normalisation(self, where, sources, last=last)

    def update_masks(self, params):
        """Group-norm parameters are updated but never decayed (CIANNA)."""
        return self.updated_never_decayed(params)

    @property
    def title(self) -> str:
        return "NORMALIZATION"

    def summary_lines(self, in_shape: Shape, out_shape: Shape, b_size: int) -> list[str]:
        ng = self.nb_groups(in_shape)
        head = (f"Group size: {self.group_size}, Nb. groups: {ng}, Per-channel gamma/beta"
                if self.per_channel else
                f"Group size: {self.group_size}, Nb. groups: {ng}, Set-off: {self.set_off}")
        return [head, f"Activation: {self.activation.name}",
                f"Nb. params: {2 * self.nb_affine(in_shape)}, Approx layer RAM/VRAM requirement: "
                f"{int(4 * b_size * 2 * out_shape.size / 1e6)} MB"]

    def tex_cells(self, in_shape: Shape, out_shape: Shape, params: dict) -> dict[str, str]:
        sp = "x".join(str(int(a)) for a in in_shape.spatial)
        return {"activation": self.activation.kind, "in_size": sp,
                "size": f"N.Gr. {self.nb_groups(in_shape)}", "f_size": f"Gr.Size {self.group_size}",
                "padding": f"Off {self.set_off}",
                "out_size": "x".join(str(int(a)) for a in out_shape.spatial),
                "param_count": str(sum(int(a.size) for a in params.values()))}

    def to_record(self, params: dict, in_shape: Shape, yolo=None) -> NormRecord:
        return NormRecord("GN", self.group_size, self.set_off, self.activation.name,
                          np.asarray(params["gamma"], np.float32),
                          np.asarray(params["beta"], np.float32), self.per_channel)

    @classmethod
    def from_record(cls, rec: NormRecord, *, after_dense: bool = False):
        return (cls(parse_activation(rec.activation), int(rec.group_size), int(rec.set_off),
                    "GN", bool(rec.per_channel)),
                {"gamma": jnp.asarray(rec.gamma, jnp.float32),
                 "beta": jnp.asarray(rec.beta, jnp.float32)})


def check_normalisation(layer, where: str, sources: tuple, *, last: bool) -> None:
    """CIANNA's stacking rules of the normalisation layers (norm, lrn)."""
    if layer.activation.kind in ("SMAX", "YOLO"):
        raise ValueError(f"{where}: activation {layer.activation.kind} is not allowed on "
                         "norm/lrn")
    LayerBase.check(layer, where, sources, last=last)
    src = sources[0] if sources else None
    if src is None:
        raise ValueError(f"{where}: a normalisation layer cannot be the first layer")
    if src.layer.kind in ("dense", "norm", "lrn"):
        raise ValueError(f"{where}: a normalisation layer cannot follow a {src.layer.kind} "
                         "layer")
