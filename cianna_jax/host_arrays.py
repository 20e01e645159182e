"""Small arrays made outside a trace without compiling anything.

Eagerly, each jax.numpy constructor or copy (``jnp.ones``, ``.at[...].set``,
``jnp.copy``, even ``jnp.asarray`` of a numpy array) compiles and runs one small XLA
program per shape and dtype: 10-60 ms each on 2 CPU cores.  A CIANNA script's first
``cnn.train`` made about twenty of them (the optimizer's masks, the copies of the last good
state).  Built with numpy and sent with ``jax.device_put``, nothing is compiled.  Under a
trace (``jit``, ``grad``) the jax.numpy forms stay: a numpy array there would become a
constant of the compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .initializers import is_concrete

__all__ = ["full", "zeros_like", "copy", "copy_tree"]


def full(shape: tuple[int, ...], value: float, dtype, like=None) -> jax.Array:
    """``jnp.full(shape, value, dtype)``; from the host unless ``like`` is traced."""
    if not is_concrete(like):
        return jnp.full(shape, value, dtype)
    return jax.device_put(np.full(shape, value, dtype))


def zeros_like(x) -> jax.Array:
    """``jnp.zeros_like(x)``; from the host unless ``x`` is traced.  Placed as ``x`` is: a
    replicated or sharded parameter gets a buffer laid out the same way, an uncommitted
    one an uncommitted buffer (a compiled step then sees the same placements as before)."""
    if not is_concrete(x):
        return jnp.zeros_like(x)
    zeros = np.zeros(np.shape(x), getattr(x, "dtype", None) or np.result_type(x))
    return jax.device_put(zeros, x.sharding if getattr(x, "committed", False) else None)


def copy(x: jax.Array) -> jax.Array:
    """A copy of ``x`` in a buffer of its own (a step may donate the original)."""
    if not is_concrete(x):
        return jnp.copy(x)
    return jax.device_put(x, may_alias=False)


def copy_tree(tree):
    """:func:`copy` of every leaf of ``tree``."""
    return jax.tree_util.tree_map(copy, tree)
