"""Group normalisation, CIANNA's only ``norm`` type (cianna_layers.md section 6).

Per sample and per group of ``group_size`` consecutive channels: biased variance,
``eps = 1e-3`` inside the square root, one learnable scale and shift per *group*,
no running statistics.  The last ``set_off`` groups pass through unchanged.
The layer activation is applied (CUDA behaviour).

``per_channel=True`` is CIANNA V-1.1's norm: the same group statistics with
``eps = 1e-6`` and one scale and shift per *channel* (``gamma_init`` at creation, no
``set_off``).  Its backward pass in the original is the exact gradient, so both
variants differentiate with plain autodiff.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..activations import Activation, activate, parse_activation
from ..geometry import nb_groups
from ..io.records import NormRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape

__all__ = ["Norm", "GN_EPS", "GN_EPS_V11", "check_normalisation"]

GN_EPS = 1e-3
#: CIANNA V-1.1's epsilon (per-channel norm, naiv_norm_layer.c).
GN_EPS_V11 = 1e-6


#: the normalised output computed on (B, *sp, C), the group statistics spread to one row
#: per channel: XLA's CPU loops over the grouped (B, *sp, G, group_size) view ran at about
#: 3 ns per element (group size 8); layer forward + gradient, batch 8: 64x64x64 89 -> 44
#: ms, 128x128x32 189 -> 91 (benchmarks/README.md).  A module flag for A/B runs.
CHANNEL_MINOR = True


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
        return ({"gamma": jnp.full((g,), self.gamma_init, jnp.float32),
                 "beta": jnp.zeros((g,), jnp.float32)}, self.output_shape(in_shape))

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        shape = x.shape
        c = shape[-1]
        ng = c // self.group_size
        xg = x.reshape(shape[:-1] + (ng, self.group_size)).astype(jnp.float32)
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
        mean = jnp.mean(xg, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(xg - mean), axis=axes, keepdims=True)
        inv = jax.lax.rsqrt(var + self.eps)
        if self.per_channel:
            gamma = params["gamma"].reshape(ng, self.group_size)
            beta = params["beta"].reshape(ng, self.group_size)
        else:
            gamma = params["gamma"][:, None]
            beta = params["beta"][:, None]
        if CHANNEL_MINOR:
            # the per-group statistics spread to per-channel rows (B, 1.., C): the
            # elementwise pass then runs on (B, *sp, C), channels contiguous
            rows = shape[:1] + (1,) * (x.ndim - 2) + (c,)

            def per_channel(a):  # (B, 1.., G, 1 or group_size) -> (B, 1.., C)
                return jnp.broadcast_to(a, a.shape[:-1] + (self.group_size,)).reshape(rows)

            xf = x.astype(jnp.float32)
            y = ((xf - per_channel(mean)) * per_channel(gamma * inv)
                 + jnp.broadcast_to(beta, (ng, self.group_size)).reshape(c))
            if self.set_off:
                normed = jnp.repeat(jnp.arange(ng) < ng - self.set_off, self.group_size)
                y = jnp.where(normed, y, xf)
            z = y.astype(x.dtype)
        else:
            y = gamma * ((xg - mean) * inv) + beta
            if self.set_off:
                normed = (jnp.arange(ng) < ng - self.set_off)[:, None]
                y = jnp.where(normed, y, xg)
            z = y.reshape(shape).astype(x.dtype)
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
