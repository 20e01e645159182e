"""Local response normalisation across channels (cianna_layers.md section 7).

``s_c = k + (alpha / R) * sum_{j in W(c)} x_j**2`` over the window
``W(c) = [c - R//2, c + R//2]`` clipped to the channels, and ``y_c = x_c / s_c**beta``,
then the layer activation.  The backward pass is CIANNA's CUDA formula, which uses
the stored output *after* the activation (exact for LIN only, defect B10).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from ..activations import Activation, activate, derivative_multiplier, parse_activation
from ..io.records import LRNRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape
from .norm import check_normalisation

__all__ = ["LRN"]


def _window_sum(v, half):
    """Sum over channel windows ``[c - half, c + half]`` (last axis), zero beyond the ends."""
    c = v.shape[-1]
    cfg = [(0, 0)] * (v.ndim - 1) + [(half, half)]
    vp = jnp.pad(v, cfg)
    return sum(vp[..., j:j + c] for j in range(2 * half + 1))


def _scale(x, rng, k, alpha):
    return k + (alpha / rng) * _window_sum(jnp.square(x), rng // 2)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _lrn_act(x, rng, k, alpha, beta, act):
    y = x * _scale(x, rng, k, alpha) ** (-beta)
    return activate(act, y) if act is not None else y


def _lrn_fwd(x, rng, k, alpha, beta, act):
    s = _scale(x, rng, k, alpha)
    y = x * s ** (-beta)
    if act is not None:
        y = activate(act, y)
    return y, (x, s, y)


def _lrn_bwd(rng, k, alpha, beta, act, res, g):
    x, s, y = res
    gz = g * derivative_multiplier(act, y) if act is not None else g
    cross = _window_sum(gz * y / s, rng // 2)
    return (gz * s ** (-beta) - (2.0 * alpha * beta / rng) * x * cross,)


_lrn_act.defvjp(_lrn_fwd, _lrn_bwd)


@register_layer
@dataclass(frozen=True)
class LRN(LayerBase):
    """``lrn(activation, range, k, alpha, beta)``; no parameters; map in, map out."""

    activation: Activation
    range: int = 5
    k: float = 1.0
    alpha: float = 1.0
    beta: float = 0.5

    kind = "lrn"
    checked_in_loops = True  # windowed sums over channels: no convolution

    def output_shape(self, in_shape: Shape) -> Shape:
        if in_shape.flat:
            raise ValueError("lrn: an LRN layer cannot follow a dense layer")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {}

    def init(self, key: jax.Array, in_shape: Shape):
        return {}, self.output_shape(in_shape)

    def apply(self, params, x: jax.Array, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array:
        act = self.activation if activate_output and self.activation.kind != "LIN" else None
        if ctx.exact:
            y = x * _scale(x, self.range, float(self.k), float(self.alpha)) ** (-float(self.beta))
            return activate(act, y, exact=True) if act is not None else y
        return _lrn_act(x, self.range, float(self.k), float(self.alpha), float(self.beta), act)

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        check_normalisation(self, where, sources, last=last)

    @property
    def title(self) -> str:
        return "LOCAL RESPONSE NORMALIZATION"

    def summary_lines(self, in_shape: Shape, out_shape: Shape, b_size: int) -> list[str]:
        return [f"Range: {self.range}, k: {self.k:f}, Alpha: {self.alpha:f}, "
                f"Beta: {self.beta:f}, Activation: {self.activation.name}",
                f"Approx layer RAM/VRAM requirement: "
                f"{int(4 * b_size * 3 * out_shape.size / 1e6)} MB"]

    def tex_cells(self, in_shape: Shape, out_shape: Shape, params: dict) -> dict[str, str]:
        return {"activation": self.activation.kind,
                "in_size": "x".join(str(int(a)) for a in in_shape.spatial),
                "size": f"ch\\_range: {self.range}",
                "out_size": "x".join(str(int(a)) for a in out_shape.spatial)}

    def to_record(self, params: dict, in_shape: Shape, yolo=None) -> LRNRecord:
        return LRNRecord(self.range, self.k, self.alpha, self.beta, self.activation.name)

    @classmethod
    def from_record(cls, rec: LRNRecord, *, after_dense: bool = False):
        return (cls(parse_activation(rec.activation), int(rec.range), float(rec.k),
                    float(rec.alpha), float(rec.beta)), {})
