"""CIANNA activations: string parsing, forward maths and CIANNA's derivatives.

CIANNA computes an activation's derivative from the stored *output* ``y`` and, for
LOGI, keeps using ``beta*y*(1-y)`` in the clamped region where the exact derivative
is 0.  Hidden-layer activations are therefore ``jax.custom_vjp`` functions whose
backward pass applies exactly CIANNA's multiplier (cianna_layers.md section 2.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

__all__ = [
    "Activation",
    "parse_activation",
    "DEFAULT_BIAS",
    "activate",
    "derivative_multiplier",
]

#: Default layer bias value per activation kind (cianna_layers.md section 1.3).
DEFAULT_BIAS = {"LIN": 0.5, "RELU": 0.1, "LOGI": -1.0, "SMAX": 0.1, "YOLO": 0.5}

_KINDS = ("SMAX", "LIN", "LOGI", "YOLO", "RELU")


@dataclass(frozen=True)
class Activation:
    """A parsed activation: ``kind`` in LIN/RELU/LOGI/SMAX/YOLO and its parameters.

    ``saturation`` and ``param`` hold (RELU) saturation and leak, or (LOGI) saturation
    and beta, already rounded to 2 decimals as CIANNA stores them.
    """

    kind: str
    saturation: float = 0.0
    param: float = 0.0

    @property
    def name(self) -> str:
        """CIANNA's full activation string, as printed and saved."""
        if self.kind == "RELU":
            return f"RELU_S{self.saturation:.2f}_L{self.param:.2f}"
        if self.kind == "LOGI":
            return f"LOGI_S{self.saturation:.2f}_B{self.param:.2f}"
        return self.kind

    @property
    def default_bias(self) -> float:
        return DEFAULT_BIAS[self.kind]


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def _tag_value(text: str, tag: str, default: float) -> float:
    m = re.search(re.escape(tag) + _NUM, text)
    return float(m.group(1)) if m else default


def _round2(v: float) -> float:
    # CIANNA keeps 2 decimals (``%.2f``) of every activation parameter.
    return float(f"{v:.2f}")


def parse_activation(text: str | Activation) -> Activation:
    """Parse a CIANNA activation string such as ``"RELU_S6_L0.1"`` or ``"LOGI"``.

    Matching is by prefix and case-sensitive, as in CIANNA; parameters ``_S``,
    ``_L`` (RELU) and ``_B`` (LOGI) are optional and rounded to 2 decimals.
    Unlike CIANNA, an unknown name is an error rather than a silent LIN.
    """
    if isinstance(text, Activation):
        return text
    if not isinstance(text, str):
        raise TypeError(f"activation must be a str, received {type(text).__name__}")
    for kind in _KINDS:
        if text.startswith(kind):
            break
    else:
        raise ValueError(
            f"activation: unknown activation {text!r}; expected a string starting with "
            "LIN, RELU, LOGI, SMAX or YOLO (e.g. 'RELU_S800_L0.05')"
        )
    if kind == "RELU":
        return Activation(
            "RELU", _round2(_tag_value(text, "_S", 800.0)), _round2(_tag_value(text, "_L", 0.05))
        )
    if kind == "LOGI":
        return Activation(
            "LOGI", _round2(_tag_value(text, "_S", 6.0)), _round2(_tag_value(text, "_B", 1.0))
        )
    return Activation(kind)


# --------------------------------------------------------------------------- forward


def _relu_fwd_math(z, sat, leak):
    return jnp.where(z <= 0, leak * z, jnp.where(z <= sat, z, sat + leak * (z - sat)))


def _logi_fwd_math(z, sat, beta):
    return 1.0 / (1.0 + jnp.exp(jnp.minimum(-beta * z, sat)))


def derivative_multiplier(act: Activation, y: jax.Array) -> jax.Array:
    """CIANNA's derivative multiplier, computed from the output ``y`` (CUDA rule)."""
    if act.kind == "RELU":
        sat, leak = act.saturation, act.param
        out_of_linear = (y <= 0) | (y > sat)
        return jnp.where(out_of_linear, jnp.asarray(leak, y.dtype), jnp.asarray(1.0, y.dtype))
    if act.kind == "LOGI":
        return act.param * y * (1.0 - y)
    if act.kind == "LIN":
        return jnp.ones_like(y)
    raise ValueError(f"activation {act.kind} has no hidden-layer derivative in CIANNA")


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _activate_cianna(act: Activation, z):
    return activation_forward(act, z)


def activation_forward(act: Activation, z):
    """The forward formula of a hidden-layer activation (no custom gradient)."""
    if act.kind == "RELU":
        return _relu_fwd_math(z, act.saturation, act.param)
    if act.kind == "LOGI":
        return _logi_fwd_math(z, act.saturation, act.param)
    return z


def _act_fwd(act, z):
    y = activation_forward(act, z)
    return y, y


def _act_bwd(act, y, g):
    return (g * derivative_multiplier(act, y),)


_activate_cianna.defvjp(_act_fwd, _act_bwd)


def softmax_rows(z: jax.Array) -> jax.Array:
    """Softmax over all values of each row (CIANNA's per-image softmax)."""
    zmax = jnp.max(z, axis=-1, keepdims=True)
    e = jnp.exp(z - zmax)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def activate(act: Activation, z: jax.Array, *, per_image_axes: tuple[int, ...] | None = None,
             exact: bool = False):
    """Apply ``act`` to pre-activations ``z``.

    RELU and LOGI carry CIANNA's backward rule (custom VJP) unless ``exact`` (plain
    autodiff of the same forward).  SMAX is the
    forward softmax over ``per_image_axes`` (all non-batch axes when None); its
    gradient is only defined through the output loss, as in CIANNA.  YOLO is
    handled by the YOLO subpackage and is the identity here.
    """
    if act.kind in ("RELU", "LOGI"):
        return activation_forward(act, z) if exact else _activate_cianna(act, z)
    if act.kind == "SMAX":
        shape = z.shape
        flat = z.reshape(shape[0], -1)
        return softmax_rows(flat).reshape(shape)
    return z
