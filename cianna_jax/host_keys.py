"""``jax.random.key``, ``fold_in`` and ``split`` computed on the host: the same keys,
no compiled program.

Eagerly, each of these jax.random calls compiles one small XLA program per process
(``_threefry_seed``, ``_threefry_fold_in``, ``_threefry_split``: 40-170 ms each on 2 CPU
cores, about 0.4 s of a CIANNA script's start).  With JAX's partitionable threefry (its
default) they are one threefry-2x32 hash of two words each:

* ``key(seed)`` holds the words ``(0, seed mod 2**32)`` (a seed of 32 bits or fewer;
  with 64-bit types on, a non-negative one);
* ``fold_in(key, d)`` is ``threefry2x32(key, (0, d))``;
* ``split(key, n)[i]`` is ``threefry2x32(key, (0, i))``.

Here numpy computes the hash (:func:`pallas_kernels.threefry.threefry2x32`, uint32
arithmetic) and ``jax.random.wrap_key_data`` makes the typed key, which compiles
nothing.  Anything else (a traced key or index, another PRNG implementation, the
non-partitionable threefry, a seed beyond 32 bits) goes to jax.random itself.
"""

from __future__ import annotations

import jax
import numpy as np

from pallas_kernels.threefry import threefry2x32

__all__ = ["key", "fold_in", "split", "split_list", "on_host"]

_IMPL = "threefry2x32"


def _threefry_default() -> bool:
    return (str(jax.config.jax_default_prng_impl) == _IMPL
            and bool(jax.config.jax_threefry_partitionable))


def on_host(k) -> bool:
    """Whether ``k``'s :func:`fold_in` and :func:`split` are computed on the host: a
    concrete, single typed threefry key under the partitionable threefry."""
    return (not isinstance(k, jax.core.Tracer) and jax.dtypes.issubdtype(k.dtype,
                                                                         jax.dtypes.prng_key)
            and k.shape == () and str(jax.random.key_impl(k)) == _IMPL
            and bool(jax.config.jax_threefry_partitionable))


def _int32_word(value, lowest: int) -> np.uint32 | None:
    """``value`` as the uint32 word jax uses (two's complement for a negative seed), or
    None when it is not a plain integer from ``lowest`` to ``2**32 - 1``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    v = int(value)
    return np.uint32(v % 2**32) if lowest <= v < 2**32 else None


def _hash(k, x1: np.ndarray) -> np.ndarray:
    """threefry2x32 of the counters ``(0, x1)`` under key ``k``: ``(len(x1), 2)`` words."""
    words = np.asarray(jax.random.key_data(k), np.uint32)
    x1 = np.asarray(x1, np.uint32)
    with np.errstate(over="ignore"):
        b0, b1 = threefry2x32(words[0], words[1], np.zeros_like(x1), x1)
    return np.stack([b0, b1], axis=-1).astype(np.uint32)


def _countable(k, num) -> bool:
    return on_host(k) and not isinstance(num, (bool, np.bool_)) \
        and isinstance(num, (int, np.integer)) and 0 <= num < 2**32


def _x64() -> bool:
    """Whether 64-bit types are on (``jax_enable_x64``, globally or in a context): a
    negative seed then fills the key's high word too."""
    return jax.dtypes.canonicalize_dtype(np.int64) == np.dtype(np.int64)


def key(seed) -> jax.Array:
    """``jax.random.key(seed)``."""
    word = _int32_word(seed, 0 if _x64() else -2**31)
    if word is None or not _threefry_default():
        return jax.random.key(seed)
    return jax.random.wrap_key_data(np.array([0, word], np.uint32), impl=_IMPL)


def fold_in(k, data) -> jax.Array:
    """``jax.random.fold_in(k, data)``."""
    word = _int32_word(data, 0)  # jax refuses a negative one
    if word is None or not on_host(k):
        return jax.random.fold_in(k, data)
    return jax.random.wrap_key_data(_hash(k, np.array([word]))[0], impl=_IMPL)


def split(k, num: int = 2) -> jax.Array:
    """``jax.random.split(k, num)``: ``(num,)`` keys."""
    if not _countable(k, num):
        return jax.random.split(k, num)
    return jax.random.wrap_key_data(_hash(k, np.arange(int(num), dtype=np.uint32)),
                                    impl=_IMPL)


def split_list(k, num: int = 2) -> list[jax.Array]:
    """``list(jax.random.split(k, num))``: single keys (unpacking a key array eagerly
    compiles a program of its own)."""
    if not _countable(k, num):
        return list(jax.random.split(k, num))
    words = _hash(k, np.arange(int(num), dtype=np.uint32))
    return [jax.random.wrap_key_data(w, impl=_IMPL) for w in words]
