"""CIANNA activations: string parsing, forward maths and CIANNA's derivatives.

CIANNA computes an activation's derivative from the stored *output* ``y`` and, for
LOGI, keeps using ``beta*y*(1-y)`` in the clamped region where the exact derivative
is 0.  Hidden-layer activations are therefore ``jax.custom_vjp`` functions whose
backward pass applies exactly CIANNA's multiplier (cianna_layers.md section 2.2).
"""

from __future__ import annotations

import math
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


#: C ``%f``-style number of an activation parameter (finite values only).
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PARAMS = {"RELU": (("S", 800.0), ("L", 0.05)), "LOGI": (("S", 6.0), ("B", 1.0))}
#: Names a string may start with (longest first); LINEAR and LOGISTIC are whole-word
#: spellings CIANNA's prefix match also accepts.
_NAMES = {"LOGISTIC": "LOGI", "LINEAR": "LIN", "SMAX": "SMAX", "LIN": "LIN", "LOGI": "LOGI",
          "YOLO": "YOLO", "RELU": "RELU"}
_FORMS = "LIN, RELU, RELU_S<x>_L<y>, LOGI, LOGI_S<x>_B<y>, SMAX or YOLO"


def _round2(v: float) -> float:
    # CIANNA keeps 2 decimals (``%.2f``) of every activation parameter.
    return float(f"{v:.2f}")


def _parse_params(text: str, kind: str, pos: int) -> dict[str, float]:
    """The ``_<tag><number>`` parts from ``pos`` on (each optional, at most once, any order)."""
    tags = dict(_PARAMS.get(kind, ()))
    values: dict[str, float] = {}
    while pos < len(text):
        rest = text[pos:]
        tag = rest[1:2]
        if not rest.startswith("_") or tag not in tags:
            allowed = " and ".join(f"'_{t}<number>'" for t in tags) or "nothing"
            raise ValueError(f"activation: {text!r}: unexpected {rest!r} after {text[:pos]!r}; "
                             f"{kind} takes {allowed} (forms: {_FORMS})")
        if tag in values:
            raise ValueError(f"activation: {text!r}: '_{tag}' given twice")
        m = _NUM.match(text, pos + 2)
        if m is None:
            raise ValueError(f"activation: {text!r}: '_{tag}' must be followed by a finite "
                             f"number, found {text[pos + 2:]!r}")
        value = float(m.group())
        if not math.isfinite(value):
            raise ValueError(f"activation: {text!r}: '_{tag}' value {m.group()} overflows a float")
        values[tag] = value
        pos = m.end()
    return {t: _round2(values.get(t, default)) for t, default in tags.items()}


def parse_activation(text: str | Activation) -> Activation:
    """Parse a CIANNA activation string such as ``"RELU_S6_L0.1"`` or ``"LOGI"``.

    The whole string must be one of CIANNA's documented forms (case-sensitive):
    LIN (or LINEAR), SMAX, YOLO, RELU with optional ``_S<saturation>`` and
    ``_L<leaking>``, LOGI (or LOGISTIC) with optional ``_S<saturation>`` and
    ``_B<beta>``; numbers are rounded to 2 decimals as CIANNA stores them.  Anything else ("RELUU", "SMAXX", "RELU_S") is a
    ValueError naming the bad part (CIANNA silently falls back on a prefix match).
    """
    if isinstance(text, Activation):
        return text
    if not isinstance(text, str):
        raise TypeError(f"activation must be a str, received {type(text).__name__}")
    head = next((k for k in _NAMES if text.startswith(k)), None)
    if head is None:
        hint = " (CIANNA's softmax is 'SMAX')" if text.startswith("SOFTMAX") else ""
        raise ValueError(f"activation: unknown activation {text!r}{hint}; expected {_FORMS} "
                         "(e.g. 'RELU_S800_L0.05')")
    kind = _NAMES[head]
    values = _parse_params(text, kind, len(head))
    if kind in _PARAMS:
        first, second = (values[t] for t, _ in _PARAMS[kind])
        return Activation(kind, first, second)
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
