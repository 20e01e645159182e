"""Argument checks shared by the builders, the imperative API and the YOLO configuration.

Each raises TypeError (wrong kind of value) or ValueError (right kind, wrong value)
whose message starts with the argument's name and says what was expected and what
was received.

One policy, CIANNA's (its Python module parses scalars with the C-API: "int parameters
reject floats, float parameters accept ints", and reads integer arrays as C ints):

* an int argument takes Python and numpy integers; floats are refused even when
  integral (``3.0``, ``np.float32(3)``), and so are bools, except for on/off switches
  (:func:`as_flag`);
* a float argument takes Python and numpy integers and floats, not bools nor strings;
* an integer array (:func:`as_triple`, :func:`as_int_array`) takes lists, tuples and
  numpy arrays of integers, not of floats;
* a float array (:func:`as_float_array`) takes lists, tuples and numpy arrays of any
  integer or float dtype, not of bools, strings or complex numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

import numpy as np

__all__ = [
    "as_int",
    "as_flag",
    "as_float",
    "as_bounded_float",
    "as_str",
    "as_choice",
    "as_triple",
    "as_int_array",
    "as_float_array",
]


def _kind(value) -> str:
    return f"{type(value).__name__} {value!r}"


def as_int(value, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an int (numpy integers accepted, bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an int, received {_kind(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, received {value}")
    return value


def as_flag(value, name: str) -> int:
    """An on/off switch as an int: bools and ints accepted (CIANNA tests ``!= 0``)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an int or a bool, received {_kind(value)}")
    return int(value)


def as_float(value, name: str, *, finite: bool = False) -> float:
    """``value`` as a float (ints accepted, bools refused); ``finite``: refuse NaN, inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a float, received {_kind(value)}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite float, received {value!r}")
    return value


def as_bounded_float(value, name: str, *, low: float = 0.0, strict: bool = True) -> float:
    """``value`` as a finite float ``> low`` (``strict``) or ``>= low``; anything else
    (NaN, inf, a bool, not a number) a ValueError naming ``name``."""
    number = isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
    v = float(value) if number else math.nan
    if not math.isfinite(v) or (v <= low if strict else v < low):
        raise ValueError(f"{name}: expected a finite number {'>' if strict else '>='} {low:g}, "
                         f"received {value!r}")
    return v


def as_str(value, name: str) -> str:
    """``value`` unchanged if it is a str."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, received {_kind(value)}")
    return value


def as_choice(value, name: str, choices: Collection[str]) -> str:
    """``value`` unchanged if it is one of the strings ``choices`` (case-sensitive)."""
    value = as_str(value, name)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, received {value!r}")
    return value


def _array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists, ...
        raise ValueError(f"{name}: expected a rectangular array, received {value!r}") from err


def as_int_array(value, name: str, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` (list, tuple, array of integers) as an int64 numpy array."""
    arr = _array(value, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, received dtype {arr.dtype} ({value!r})")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, received {arr.shape}")
    return arr.astype(np.int64)


def as_float_array(value, name: str, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` (list, tuple, array of integers or floats) as a float32 numpy array."""
    arr = _array(value, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected numbers, received dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, received {arr.shape}")
    return arr.astype(np.float32)


def as_triple(value, name: str, default: int = 1, *, minimum: int | None = None,
              required: bool = False) -> tuple[int, int, int]:
    """A CIANNA spatial keyword (an int or 1 to 3 ints, (W, H, D) order) as a 3-tuple.

    Missing trailing axes take ``default``; ``None`` gives ``(default,) * 3`` unless
    ``required``.
    """
    if value is None:
        if required:
            raise TypeError(f"{name}: expected 1 to 3 ints (W, H, D), received None")
        items = []
    elif isinstance(value, (Real, np.bool_)):  # a scalar (numbers.Integral is a Real)
        items = [as_int(value, name)]
    else:
        arr = _array(value, name)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected 1 to 3 ints (W, H, D), received {value!r}")
        if arr.ndim != 1 or not 1 <= arr.size <= 3:
            raise ValueError(f"{name}: expected 1 to 3 ints (W, H, D), received {value!r}")
        items = [int(v) for v in arr]
    items += [default] * (3 - len(items))
    if minimum is not None and any(v < minimum for v in items):
        raise ValueError(f"{name}: values must be >= {minimum}, received {tuple(items)}")
    return tuple(items)
