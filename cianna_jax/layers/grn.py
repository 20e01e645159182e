"""Global response normalisation (CIANNA V-1.1 ``grn``, ConvNeXt-V2).

Per example ``b`` and channel ``c`` of a map ``x``::

    N_bc = sqrt(sum over positions of x**2 + 1e-6)
    r_bc = N_bc / (mean over channels of N_bc + 1e-6)
    y    = gamma_c * x * r_bc + beta_c  (+ x when residual)

then the layer activation.  Parameters ``{"gamma": (C,), "beta": (C,)}`` (gamma starts
at ``gamma_init``, beta at 0), never weight-decayed.

Backward.  The original's input gradient keeps only the channel's own term of the
derivative through ``r`` (defect 10 of the V-1.1 spec)::

    dx = gamma_c r_bc dy + gamma_c D_bc x (1 / (M_b N_bc) - 1 / (C M_b**2))  (+ dy)

with ``D_bc = sum dy * x`` and ``M_b = mean_c N_bc + 1e-6``; the exact derivative has
``sum_k gamma_k D_bk N_bk / N_bc`` in place of ``gamma_c D_bc`` in the last term.
CIANNA gradients (``Ctx.exact=False``) reproduce the original; ``Ctx.exact`` is plain
autodiff.  The gamma and beta gradients are exact in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import host_arrays
from ..activations import Activation, activate, parse_activation
from ..io.records import GRNRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape
from .sums import position_sums

__all__ = ["GRN", "GRN_EPS", "grn_forward"]

#: The epsilon under the square root of the norm and added to the mean norm.
GRN_EPS = 1e-6


def _stats(x):
    """(N, M) of maps ``x (B, *sp, C)``: per-channel norms ``(B, 1.., C)`` and the mean
    norm plus eps ``(B, 1.., 1)``."""
    axes = tuple(range(1, x.ndim - 1))
    n = jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True) + GRN_EPS)
    return n, jnp.mean(n, axis=-1, keepdims=True) + GRN_EPS


def grn_forward(x, gamma, beta, residual: bool):
    """GRN of maps ``x (B, *sp, C)`` (float32 maths), before the activation."""
    n, m = _stats(x)
    y = gamma * x * (n / m) + beta
    return y + x if residual else y


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _grn_cianna(x, gamma, beta, residual):
    return grn_forward(x, gamma, beta, residual)


def _grn_fwd(x, gamma, beta, residual):
    return grn_forward(x, gamma, beta, residual), (x, gamma)


def _grn_bwd(residual, res, g):
    x, gamma = res
    rows = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    # the three sums in one pass over x and g (layers/sums.py)
    sq, d, sg = (s.reshape(rows) for s in position_sums(x * x, g * x, g))
    n = jnp.sqrt(sq + GRN_EPS)
    m = jnp.mean(n, axis=-1, keepdims=True) + GRN_EPS
    r = n / m  # d: D_bc, before the r factor
    c = x.shape[-1]
    dx = gamma * r * g + gamma * d * x * (1.0 / (m * n) - 1.0 / (c * m * m))
    if residual:
        dx = dx + g
    sum_axes = tuple(range(x.ndim - 1))
    d_gamma = jnp.sum(d * r, axis=sum_axes)
    d_beta = jnp.sum(sg, axis=sum_axes)
    return dx, d_gamma.astype(gamma.dtype), d_beta.astype(gamma.dtype)


_grn_cianna.defvjp(_grn_fwd, _grn_bwd)


@register_layer
@dataclass(frozen=True)
class GRN(LayerBase):
    """``grn(residual, activation, gamma_init)``: map in, map out (CIANNA V-1.1)."""

    activation: Activation
    residual: int = 1
    # creation-only setting: not saved by CIANNA, not part of the network identity
    gamma_init: float = field(default=1.0, compare=False)

    kind = "grn"
    checked_in_loops = True  # reductions and elementwise operations: no convolution

    def output_shape(self, in_shape: Shape) -> Shape:
        if in_shape.flat:
            raise ValueError("grn: a GRN layer reads a map (conv, pool, norm, merge, ...), not "
                             "a dense output")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {"gamma": (in_shape.c,), "beta": (in_shape.c,)}

    def init(self, key: jax.Array, in_shape: Shape):
        c = self.output_shape(in_shape).c
        return ({"gamma": host_arrays.full((c,), self.gamma_init, jnp.float32, like=key),
                 "beta": host_arrays.full((c,), 0.0, jnp.float32, like=key)}, in_shape)

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        xf = x.astype(jnp.float32)
        gamma, beta = params["gamma"], params["beta"]
        fn = grn_forward if ctx.exact else _grn_cianna
        z = fn(xf, gamma, beta, bool(self.residual)).astype(x.dtype)
        if not activate_output:
            return z
        return activate(self.activation, z, exact=ctx.exact)

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        if self.activation.kind in ("SMAX", "YOLO"):
            raise ValueError(f"{where}: activation {self.activation.kind} is not allowed on grn")
        super().check(where, sources, last=last)
        if not sources or sources[0] is None:
            raise ValueError(f"{where}: a GRN layer cannot be the first layer (it reads a "
                             "layer's map, not the network input)")

    def update_masks(self, params):
        """Gamma and beta are updated, never decayed (CIANNA V-1.1)."""
        return self.updated_never_decayed(params)

    @property
    def title(self) -> str:
        return "GLOBAL RESPONSE NORMALIZATION"

    def summary_lines(self, in_shape: Shape, out_shape: Shape, b_size: int) -> list[str]:
        mem = 4 * (2 * in_shape.c * b_size + 2 * in_shape.c + 2 * b_size * out_shape.size)
        return [f"N. features {in_shape.c}, Residual: {self.residual}, Activation: "
                f"{self.activation.name}",
                f"Nb. params: {2 * in_shape.c}, Approx layer RAM/VRAM requirement: "
                f"{int(mem / 1e6)} MB"]

    def tex_cells(self, in_shape: Shape, out_shape: Shape, params: dict) -> dict[str, str]:
        sp = "x".join(str(int(a)) for a in in_shape.spatial)
        return {"activation": self.activation.kind, "in_size": sp, "size": "GRN",
                "f_size": f"Res. {self.residual}",
                "out_size": "x".join(str(int(a)) for a in out_shape.spatial),
                "param_count": str(sum(int(a.size) for a in params.values()))}

    def to_record(self, params: dict, in_shape: Shape, yolo=None) -> GRNRecord:
        return GRNRecord(self.residual, self.activation.name,
                         np.asarray(params["gamma"], np.float32),
                         np.asarray(params["beta"], np.float32))

    @classmethod
    def from_record(cls, rec: GRNRecord, *, after_dense: bool = False):
        return (cls(parse_activation(rec.activation), int(rec.residual)),
                {"gamma": jnp.asarray(rec.gamma, jnp.float32),
                 "beta": jnp.asarray(rec.beta, jnp.float32)})
