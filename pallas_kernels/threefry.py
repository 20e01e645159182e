"""JAX's threefry-2x32 random numbers, computed element by element inside a kernel.

``uniform(key_words, counter)`` returns exactly the float that
``jax.random.uniform(key, shape)`` puts at flat index ``counter`` (jax's default
"partitionable" threefry: element ``c`` hashes the 64-bit counter ``c``), and
``fold_in(key_words, i)`` the words of ``jax.random.fold_in(key, i)``.  A kernel can
then draw the same numbers as the jax.numpy reference without reading a table of them.
Only uint32 additions, xors and shifts are used, which every Pallas lowering accepts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["threefry2x32", "fold_in", "uniform", "key_words", "supported"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x, r: int):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 block cipher (20 rounds) of counter words ``(x0, x1)``."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def fold_in(k0, k1, data):
    """Key words of ``jax.random.fold_in(key, data)`` (``data`` a 32-bit integer)."""
    return threefry2x32(k0, k1, jnp.zeros_like(k0), jnp.asarray(data).astype(jnp.uint32))


def uniform(k0, k1, counter):
    """Element ``counter`` (uint32, any shape) of ``jax.random.uniform(key)`` in [0, 1)."""
    b0, b1 = threefry2x32(k0, k1, jnp.zeros_like(counter), counter)
    bits = (b0 ^ b1) >> np.uint32(9) | np.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(bits, jnp.float32) - 1.0


def key_words(key) -> jax.Array:
    """The two uint32 words of a threefry key (typed or raw)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return jnp.asarray(key, jnp.uint32).reshape(2)


def supported(key) -> bool:
    """Whether :func:`uniform` reproduces ``jax.random.uniform`` for ``key``: a threefry
    key with jax's partitionable threefry (the default since jax 0.5)."""
    if not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return "threefry" in str(jax.random.key_impl(key))
    return key.shape == (2,) and key.dtype == jnp.uint32 and \
        "threefry" in str(jax.config.jax_default_prng_impl)
