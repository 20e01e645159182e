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
from jax import lax
from jax.extend.random import threefry2x32_p

from . import host_keys

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
    n = math.prod(shape)
    if host_keys.on_host(key) and n < 2 ** 32:
        flat = _host_sample(key, normal, n)
        return jnp.asarray(flat.reshape(shape) * np.float32(std * scaling), jnp.float32)
    if normal:
        sample = jax.random.normal(key, shape, jnp.float32)
    else:
        sample = jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    return sample * (std * scaling)


def split(key: jax.Array, n: int) -> list[jax.Array]:
    """``list(jax.random.split(key, n))``, the same keys, computed on the host for a
    concrete threefry key (:mod:`cianna_jax.host_keys`: no program compiled)."""
    return host_keys.split_list(key, n)


def is_concrete(x) -> bool:
    """Whether ``x`` holds values now (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


# Initialisation draws many arrays of distinct shapes, once.  Eager ``jax.random``
# compiles one XLA program per shape (about a second each for the threefry sampler on 2
# CPU cores), which dominated the creation of a network.  With JAX's partitionable
# threefry (its default), value i of a flat draw is a function of the key and i alone:
# the 32 random bits are the two words of threefry2x32(key, (0, i)) xor-ed (i < 2**32),
# then turned into a float as jax.random does.  One program per distribution draws
# :data:`CHUNK` consecutive values from any offset, so every shape is a few calls of it
# and the values are jax.random's own, bit for bit (tested).  Drawing one power-of-two
# length per size instead compiled about a dozen programs for CIANNA's SDC1 detector
# (init 3.1 s, of which 2.8 s compilation, on 2 CPU cores; 0.8 s this way).

#: values per call of the host-side sampler (:func:`_chunk_sample`)
CHUNK = 1 << 16


def _host_sample(key, normal: bool, n: int) -> np.ndarray:
    """The ``n`` float32 values of ``jax.random.normal(key, (n,))`` (or ``uniform(key,
    (n,), minval=-1, maxval=1)``), drawn :data:`CHUNK` at a time on the host."""
    fn = _chunk_sample(normal)
    data = np.asarray(jax.random.key_data(key))  # to the host: a key on any device
    parts = [fn(data, np.uint32(o)) for o in range(0, n, CHUNK)]   # dispatched, then read
    return np.concatenate([np.asarray(p) for p in parts] or [np.zeros(0, np.float32)])[:n]


#: XLA's default optimisations for the sampler, whatever ``jax_disable_most_optimizations``
#: says (the test suite sets it): one small program runs over every parameter of a
#: network, 5x slower unoptimised (7.1 against 1.3 ms a chunk on 2 CPU cores)
SAMPLER_OPTIONS = {"xla_backend_optimization_level": 3,
                   "xla_llvm_disable_expensive_passes": False}


@functools.lru_cache(maxsize=None)
def _chunk_sample(normal: bool):
    """Compiled ``(key data (2,) uint32, offset uint32) -> (CHUNK,)`` float32: values
    ``offset .. offset + CHUNK - 1`` of a flat partitionable-threefry draw.  Compiled
    ahead of time, once per process: ``jax.clear_caches()`` does not drop it."""
    lo, hi = ((np.nextafter(np.float32(-1), np.float32(0)), np.float32(1)) if normal
              else (np.float32(-1), np.float32(1)))

    def sample(data, offset):
        count = offset + lax.iota(np.uint32, CHUNK)
        b1, b2 = threefry2x32_p.bind(data[0], data[1], jnp.zeros_like(count), count)
        mantissa = lax.shift_right_logical(b1 ^ b2, np.uint32(32 - 23))
        one_to_two = lax.bitcast_convert_type(mantissa | np.float32(1).view(np.uint32),
                                              jnp.float32)
        u = lax.max(lo, (one_to_two - np.float32(1)) * (hi - lo) + lo)
        return lax.mul(np.float32(np.sqrt(2)), lax.erf_inv(u)) if normal else u

    lowered = jax.jit(sample).lower(jax.ShapeDtypeStruct((2,), np.uint32),
                                    jax.ShapeDtypeStruct((), np.uint32))
    try:
        return lowered.compile(SAMPLER_OPTIONS)
    except RuntimeError as err:  # an XLA (backend) without these options: its defaults
        if "compile option" not in str(err):
            raise
        return lowered.compile()
