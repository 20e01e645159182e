"""CIANNA's weight initialisers (cianna_layers.md section 9), drawn from jax.random keys.

``fan_a`` and ``fan_b`` are the two numbers CIANNA passes to its initialisers:
conv ``a = K*C + 1`` (fan-in incl. bias), ``b = F``; dense ``a = N`` (neurons),
``b = I`` (inputs incl. bias).  ``init_scaling`` multiplies the sample.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["INIT_FUNCTIONS", "check_init", "draw"]

INIT_FUNCTIONS = ("xavier", "xavier_U", "lecun", "lecun_U", "normal", "uniform")


def check_init(init_fct: str, init_scaling: float | None) -> float:
    """Validate an ``init_fct``/``init_scaling`` pair and return the effective scaling."""
    if not isinstance(init_fct, str):
        raise TypeError(f"init_fct must be a str, received {type(init_fct).__name__}")
    if init_fct not in INIT_FUNCTIONS:
        raise ValueError(f"init_fct: unknown initialiser {init_fct!r}; expected one of {INIT_FUNCTIONS}")
    given = init_scaling is not None and not math.isnan(init_scaling) and init_scaling >= 0
    if init_fct in ("normal", "uniform") and not given:
        raise ValueError(
            f"init_scaling is mandatory (>= 0) with init_fct={init_fct!r}; received {init_scaling!r}"
        )
    return float(init_scaling) if given else 1.0


def draw(key: jax.Array, init_fct: str, shape: tuple[int, ...], fan_a: int, fan_b: int,
         scaling: float) -> jax.Array:
    """Draw a float32 array of ``shape`` with CIANNA's ``init_fct`` distribution."""
    if init_fct in ("xavier", "lecun", "normal"):
        sample = jax.random.normal(key, shape, jnp.float32)
        std = {"xavier": math.sqrt(2.0 / (fan_a + fan_b)), "lecun": math.sqrt(1.0 / fan_a),
               "normal": 1.0}[init_fct]
        return sample * (std * scaling)
    sample = jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    limit = {"xavier_U": math.sqrt(12.0 / (fan_a + fan_b)), "lecun_U": math.sqrt(3.0 / fan_a),
             "uniform": 1.0}[init_fct]
    return sample * (limit * scaling)
