"""Argument checks shared by the builders and the imperative API.

Each raises TypeError or ValueError whose message starts with the argument's name
and says what was expected and what was received.
"""

from __future__ import annotations

from numbers import Integral, Real

__all__ = ["as_int", "as_float", "as_str"]


def as_int(value, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an int (numpy integers accepted, bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an int, received {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, received {value}")
    return value


def as_float(value, name: str) -> float:
    """``value`` as a float (ints accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a float, received {type(value).__name__} {value!r}")
    return float(value)


def as_str(value, name: str) -> str:
    """``value`` unchanged if it is a str."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, received {type(value).__name__} {value!r}")
    return value
