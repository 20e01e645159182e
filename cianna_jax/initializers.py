"""CIANNA's weight initialisers (cianna_layers.md section 9), drawn from jax.random keys.

``fan_a`` and ``fan_b`` are the two numbers CIANNA passes to its initialisers:
conv ``a = K*C + 1`` (fan-in incl. bias), ``b = F``; dense ``a = N`` (neurons),
``b = I`` (inputs incl. bias).  ``init_scaling`` multiplies the sample.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["INIT_FUNCTIONS", "check_init", "draw", "split", "is_concrete"]

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
    normal = init_fct in ("xavier", "lecun", "normal")
    if normal:
        std = {"xavier": math.sqrt(2.0 / (fan_a + fan_b)), "lecun": math.sqrt(1.0 / fan_a),
               "normal": 1.0}[init_fct]
    else:
        std = {"xavier_U": math.sqrt(12.0 / (fan_a + fan_b)), "lecun_U": math.sqrt(3.0 / fan_a),
               "uniform": 1.0}[init_fct]
    if is_concrete(key) and _prefix_stable(key):
        n = math.prod(shape)
        flat = np.asarray(_flat_sample(normal, _bucket(n), jax.random.key_impl(key))(
            jax.random.key_data(key)))
        return jnp.asarray(flat[:n].reshape(shape) * np.float32(std * scaling))
    if normal:
        sample = jax.random.normal(key, shape, jnp.float32)
    else:
        sample = jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    return sample * (std * scaling)


def split(key: jax.Array, n: int) -> list[jax.Array]:
    """``list(jax.random.split(key, n))``, the same keys, without compiling a program per
    ``n`` and per index for a concrete threefry key (see :func:`draw`)."""
    if not (is_concrete(key) and _prefix_stable(key)):
        return list(jax.random.split(key, n))
    impl = jax.random.key_impl(key)
    data = np.asarray(_flat_split(_bucket(n), impl)(jax.random.key_data(key)))
    return [jax.random.wrap_key_data(data[i], impl=impl) for i in range(n)]


def is_concrete(x) -> bool:
    """Whether ``x`` holds values now (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


# Initialisation draws many arrays of distinct shapes, once.  Eager ``jax.random``
# compiles one XLA program per shape (about a second each for the threefry sampler on 2
# CPU cores), which dominated the creation of a network.  With JAX's partitionable
# threefry (its default), element i of a draw depends on the key and i only, so the
# first n values of a longer flat draw are the draw of n values (the random bits
# exactly; the float conversion to within one unit in the last place, as XLA
# vectorises it differently per length): one program per power-of-two size serves
# every shape.


def _prefix_stable(key) -> bool:
    return (str(jax.random.key_impl(key)) == "threefry2x32" and key.shape == ()
            and bool(jax.config.jax_threefry_partitionable))


def _bucket(n: int) -> int:
    return max(256, 1 << max(0, n - 1).bit_length())


@functools.lru_cache(maxsize=None)
def _flat_sample(normal: bool, size: int, impl):
    def sample(data):
        key = jax.random.wrap_key_data(data, impl=impl)
        if normal:
            return jax.random.normal(key, (size,), jnp.float32)
        return jax.random.uniform(key, (size,), jnp.float32, -1.0, 1.0)
    return jax.jit(sample)


@functools.lru_cache(maxsize=None)
def _flat_split(size: int, impl):
    return jax.jit(lambda data: jax.random.key_data(
        jax.random.split(jax.random.wrap_key_data(data, impl=impl), size)))
