"""Decimal text <-> float32 exactly like the C library used by the original CIANNA.

Reading: :func:`strings_to_f32` rounds decimals to float32 like ``strtof``.
Writing: :func:`format_g` and :func:`format_f` reproduce ``printf`` (``%g``,
``%f``) including glibc's ``-nan``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["strings_to_f32", "parse_f32", "c_format", "format_g", "format_f"]


def strings_to_f32(tokens: list, d64: np.ndarray) -> np.ndarray:
    """Correctly rounded decimal -> float32 (like C's strtof), from the float64 parse.

    Rounding through float64 is wrong only when the float64 value lands exactly
    on a midpoint between two float32 numbers while the decimal does not; those
    rare entries are settled exactly with ``Fraction``.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        c = d64.astype(np.float32)
        c64 = c.astype(np.float64)
        diff = d64 - c64
        cand = np.isfinite(d64) & np.isfinite(c64) & (diff != 0)
    if not cand.any():
        return c
    idx = np.nonzero(cand)[0]
    toward = np.where(diff[idx] > 0, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    other = np.nextafter(c[idx], toward)
    mid = (c64[idx] + other.astype(np.float64)) / 2.0
    amb = d64[idx] == mid
    for j in np.nonzero(amb)[0]:
        i = idx[j]
        exact = Fraction(tokens[i])
        m = Fraction(float(mid[j]))
        if exact == m:
            continue  # true tie: numpy already rounded half to even
        lo, hi = sorted((c[i], other[j]))
        c[i] = hi if exact > m else lo
    return c


def parse_f32(tok: str) -> float:
    """One decimal token -> the float32 value C's ``strtof`` gives (as a Python float)."""
    return float(strings_to_f32([tok], np.array([float(tok)], dtype=np.float64))[0])


def c_format(fmt: str, v: float) -> str:
    """C printf of one double; glibc writes a NaN with its sign bit set as ``-nan``."""
    if v != v and math.copysign(1.0, v) < 0:
        return "-nan"
    return fmt % v


def format_g(values) -> str:
    """C's ``printf("%g ", v)`` for each float32 value (promoted to double)."""
    arr = np.asarray(values, dtype=np.float32).ravel()
    if np.isnan(arr).any():
        return "".join([c_format("%g", v) + " " for v in arr.tolist()])
    return "".join(["%g " % v for v in arr.tolist()])


def format_f(v: float) -> str:
    """C's ``%f`` of a float field."""
    return c_format("%f", v)
