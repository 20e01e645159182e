"""Float32 arithmetic that reproduces CIANNA's CPU optimizer kernels bit for bit.

Two things separate a plain ``jnp`` expression from the C kernels:

* XLA (CPU and GPU) contracts ``a * b + c`` into one fused multiply-add, rounding once
  where C (``-std=c99``, no FMA contraction) rounds twice, and it simplifies some float
  expressions (``(a + b) - a`` to ``b``).  :func:`rounded` is a barrier: ``x + z`` with
  ``z`` a *traced* float zero, which the compiler can neither fold nor see through
  (if it fuses ``a * b + z`` the result is still ``a * b`` rounded once).
* Some kernel terms are evaluated in double precision (``(1.0 - beta) * g`` and
  ``m / (1.0 - pow(beta, t))``).  Without float64 they are computed exactly with
  error-free transformations (Dekker) and rounded once to float32; this equals C's
  ``(float)(double expression)`` except within 2^-29 relative of a rounding tie.

Every function takes ``z``, a float32 zero the compiler cannot know (:func:`zero_like`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["zero_like", "rounded", "two_sum", "two_prod", "one_minus", "mix", "mix_square",
           "one_minus_pow", "divide"]

_HIGH_BITS = -4096  # 0xFFFFF000: sign, exponent and the 11 leading significand bits


def zero_like(x: jax.Array) -> jax.Array:
    """``float32(x < 0)``: a zero the compiler cannot fold when ``x`` is a traced value
    that is never negative where the result is used (an update count, a rate)."""
    return (x < 0).astype(jnp.float32)


def rounded(x: jax.Array, z: jax.Array) -> jax.Array:
    """``x`` (a -0 becomes +0) materialised as a float32: no contraction through it."""
    return x + z


def two_sum(a: jax.Array, b: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(s, t) with ``s = fl(a + b)`` and ``s + t == a + b`` exactly (Knuth; the barriers
    keep XLA from simplifying ``(a + b) - a`` to ``b``)."""
    s = rounded(a + b, z)
    bb = rounded(s - a, z)
    return s, (a - rounded(s - bb, z)) + (b - bb)


def _fast_two_sum(a, b, z):
    """(s, t) with ``s + t == a + b`` exactly, for ``|a| >= |b|`` (Dekker)."""
    s = rounded(a + b, z)
    return s, b - rounded(s - a, z)


def _split(a):
    """(hi, lo) with ``hi + lo == a``, both with at most 12 significant bits."""
    hi = lax.bitcast_convert_type(lax.bitcast_convert_type(a, jnp.int32) & _HIGH_BITS,
                                  jnp.float32)
    return hi, a - hi


def two_prod(a: jax.Array, b: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(p, e) with ``p = fl(a * b)`` and ``p + e == a * b`` exactly (Dekker; every
    partial product is exact, so an FMA contraction of them changes nothing)."""
    p = rounded(a * b, z)
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def one_minus(x: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``1 - x`` as a (hi, lo) pair, exact (C's double ``1.0 - x`` of a float ``x``)."""
    return two_sum(jnp.ones_like(x), -x, z)


def mix(x: jax.Array, c: tuple[jax.Array, jax.Array], g: jax.Array,
        z: jax.Array) -> jax.Array:
    """``(float)(x + c * g)`` for float32 ``x``, ``g`` and ``c = (hi, lo)``: C's
    ``beta*m + (1.0 - beta)*g`` with ``x = beta*m`` already rounded."""
    p, e = two_prod(c[0], g, z)
    e = e + c[1] * g
    s, t = two_sum(x, p, z)
    return s + (t + e)


def mix_square(x: jax.Array, c: tuple[jax.Array, jax.Array], g: jax.Array,
               z: jax.Array) -> jax.Array:
    """``(float)(x + c * g * g)``: C's ``beta*v + (1.0 - beta)*g*g``."""
    p1, e1 = two_prod(c[0], g, z)
    e1 = e1 + c[1] * g
    p2, e2 = two_prod(p1, g, z)
    e2 = e2 + e1 * g
    s, t = two_sum(x, p2, z)
    return s + (t + e2)


def _df_mul(a, b, z):
    p, e = two_prod(a[0], b[0], z)
    return _fast_two_sum(p, e + (a[0] * b[1] + a[1] * b[0]), z)


def one_minus_pow(beta: jax.Array, t: jax.Array,
                  z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``1 - beta**t`` as a (hi, lo) pair to about 2^-46 relative (C's double
    ``1.0 - pow(beta, t)``); ``beta`` a float32 scalar, ``t`` an int32 array >= 0."""
    t = jnp.asarray(t, jnp.int32)
    one = jnp.ones(t.shape, jnp.float32)
    zero = jnp.zeros(t.shape, jnp.float32)

    def body(i, carry):
        r, base = carry[:2], carry[2:]
        on = ((t >> i) & 1) == 1
        m = _df_mul(r, base, z)
        r = (jnp.where(on, m[0], r[0]), jnp.where(on, m[1], r[1]))
        return r + _df_mul(base, base, z)

    b = jnp.broadcast_to(jnp.asarray(beta, jnp.float32), t.shape)
    rh, rl, _, _ = lax.fori_loop(0, 31, body, (one, zero, b, zero))
    s, e = two_sum(one, -rh, z)
    return _fast_two_sum(s, e - rl, z)


def divide(m: jax.Array, c: tuple[jax.Array, jax.Array], z: jax.Array) -> jax.Array:
    """``(float)(m / (hi + lo))`` for ``c = (hi, lo)``: C's float / double division."""
    q = m / c[0]
    p, e = two_prod(q, c[0], z)
    r = ((m - p) - e) - rounded(q * c[1], z)
    return q + r / c[0]
