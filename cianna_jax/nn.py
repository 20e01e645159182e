"""Layer-spec builders with CIANNA's keywords, defaults and argument checks.

These build the static specs of the functional core; the imperative API calls
them too.  Example::

    from cianna_jax import nn
    net = nn.network([28, 28], 1, [
        nn.conv([5, 5], 8, padding=[2, 2]), nn.pool([2, 2]),
        nn.dense(10, activation="SMAX", strict_size=1)], bias=0.1)
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from . import initializers
from .activations import parse_activation
from .checks import as_int, as_triple
from .layers import LRN, Conv, Dense, Norm, Pool
from .network import Network, make_network

__all__ = ["dense", "conv", "pool", "norm", "lrn", "network", "in_dims_from"]


def _rate(drop_rate) -> float:
    if not isinstance(drop_rate, Real):
        raise TypeError(f"drop_rate: expected a float, received {type(drop_rate).__name__}")
    if not 0.0 <= float(drop_rate) < 1.0:
        raise ValueError(f"drop_rate: expected 0 <= drop_rate < 1, received {drop_rate}")
    return float(drop_rate)


def _bias(bias) -> float | None:
    if bias is None:
        return None
    if not isinstance(bias, Real):
        raise TypeError(f"bias: expected a float, received {type(bias).__name__}")
    return None if math.isnan(bias) else float(bias)


def _positive_int(value, name: str) -> int:
    return as_int(value, name, minimum=1)


def dense(nb_neurons: int, activation: str = "RELU", bias: float | None = None,
          drop_rate: float = 0.0, strict_size: int = 0, init_fct: str = "xavier",
          init_scaling: float | None = None) -> Dense:
    """A dense layer of ``nb_neurons`` (CIANNA ``dense`` keywords and defaults)."""
    act = parse_activation(activation)
    if act.kind == "YOLO":
        raise ValueError("activation: YOLO activation is not compatible with a dense layer")
    scaling = initializers.check_init(init_fct, init_scaling)
    return Dense(_positive_int(nb_neurons, "nb_neurons"), act, _bias(bias), _rate(drop_rate),
                 init_fct, scaling, int(strict_size))


def conv(f_size, nb_filters: int, stride=None, padding=None, int_padding=None,
         activation: str = "RELU", bias: float | None = None, input_shape=None,
         drop_rate: float = 0.0, init_fct: str = "xavier",
         init_scaling: float | None = None) -> Conv:
    """A conv layer; sizes are 1 to 3 ints in (W, H, D) order (lists, tuples or arrays)."""
    f = as_triple(f_size, "f_size", 1, minimum=1)
    s = as_triple(stride, "stride", 1, minimum=1)
    p = as_triple(padding, "padding", 0, minimum=0)
    ip = as_triple(int_padding, "int_padding", 0, minimum=0)
    for ax in range(3):
        if s[ax] > f[ax]:
            raise ValueError(f"stride: cannot be larger than f_size along {'WHD'[ax]}; "
                             f"f_size={f}, stride={s}")
    shape = None
    if input_shape is not None:
        arr = np.asarray(input_shape)
        if arr.shape != (4,) or arr.dtype.kind not in "iu" or (arr < 1).any():
            raise ValueError(f"input_shape: expected 4 positive ints [W, H, D, C], "
                             f"received {input_shape!r}")
        shape = tuple(int(v) for v in arr)
    scaling = initializers.check_init(init_fct, init_scaling)
    return Conv(f, _positive_int(nb_filters, "nb_filters"), parse_activation(activation),
                _bias(bias), s, p, ip, shape, _rate(drop_rate), init_fct, scaling)


def pool(p_size=None, stride=None, padding=None, drop_rate: float = 0.0, p_type: str = "MAX",
         activation: str = "LIN", p_global: int = 0) -> Pool:
    """A pool layer; ``p_size=None`` means 2 along each axis where the network input is > 1."""
    if p_type not in ("MAX", "AVG"):
        raise ValueError(f"p_type: expected 'MAX' or 'AVG', received {p_type!r}")
    size = None if p_size is None else as_triple(p_size, "p_size", 1, minimum=1)
    st = None if stride is None else as_triple(stride, "stride", 1, minimum=1)
    pad = as_triple(padding, "padding", 0, minimum=0)
    act = parse_activation(activation)
    if act.kind == "YOLO":
        raise ValueError("activation: YOLO is not valid on a pool layer")
    return Pool(size, act, st, pad, p_type, int(bool(p_global)), _rate(drop_rate))


def norm(normalization: str = "GN", activation: str = "LIN", group_size: int = 8,
         set_off: int = 0) -> Norm:
    """A group-normalisation layer (the only type CIANNA has)."""
    if not isinstance(normalization, str) or not normalization.startswith("GN"):
        raise ValueError(f"normalization: only 'GN' (group normalisation) exists, "
                         f"received {normalization!r}")
    if int(set_off) < 0:
        raise ValueError(f"set_off: expected >= 0, received {set_off}")
    return Norm(parse_activation(activation), _positive_int(group_size, "group_size"),
                int(set_off), "GN")


def lrn(activation: str = "LIN", range: int = 5, k: float = 1.0, alpha: float = 1.0,
        beta: float = 0.5) -> LRN:
    """A local response normalisation layer (CIANNA's experimental LRN)."""
    return LRN(parse_activation(activation), _positive_int(range, "range"), float(k),
               float(alpha), float(beta))


def in_dims_from(in_dim, in_nb_ch: int) -> tuple[int, int, int, int]:
    """CIANNA ``init(in_dim, in_nb_ch)`` -> (W, H, D, C)."""
    w, h, d = as_triple(in_dim, "in_dim", 1, minimum=1)
    return (w, h, d, _positive_int(in_nb_ch, "in_nb_ch"))


def network(in_dim, in_nb_ch: int, layers, bias: float = 0.1, inputs=None) -> Network:
    """Build a validated :class:`~cianna_jax.network.Network` from layer specs.

    ``inputs`` (optional): for each layer the indices of the layers it reads (``-1``
    the network input); by default each layer reads the previous one.
    """
    return make_network(in_dims_from(in_dim, in_nb_ch), layers, bias, inputs=inputs)
