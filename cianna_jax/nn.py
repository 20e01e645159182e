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
from numbers import Integral, Real

import numpy as np

from . import initializers
from .activations import parse_activation
from .checks import as_int, as_triple
from .geometry import MERGE_TYPES
from .layers import GRN, LRN, Conv, Dense, Merge, Norm, Pool
from .network import Network, make_network

__all__ = ["dense", "conv", "pool", "norm", "lrn", "grn", "merge", "network", "in_dims_from",
           "own_bias"]


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
    if math.isinf(bias):
        raise ValueError(f"bias: expected a finite float (or None for the default), received "
                         f"{bias!r}")
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
         init_scaling: float | None = None, nb_groups: int = 1) -> Conv:
    """A conv layer; sizes are 1 to 3 ints in (W, H, D) order (lists, tuples or arrays).

    ``nb_groups`` (CIANNA V-1.1): grouped convolution, input channels and filters split
    into that many groups (both must be divisible by it; ``nb_groups`` = channels =
    filters is a depth-wise convolution)."""
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
    nf = _positive_int(nb_filters, "nb_filters")
    groups = _positive_int(nb_groups, "nb_groups")
    if nf % groups:
        raise ValueError(f"nb_groups: must divide nb_filters ({nf}); received {groups}")
    return Conv(f, nf, parse_activation(activation), _bias(bias), s, p, ip, shape,
                _rate(drop_rate), init_fct, scaling, groups)


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
         set_off: int = 0, gamma_init: float | None = None, per_channel: bool = False) -> Norm:
    """A group-normalisation layer (the only type CIANNA has).

    ``per_channel=True`` is CIANNA V-1.1's norm: one gamma and beta per channel, eps
    1e-6, no ``set_off``.  ``gamma_init`` is the initial gamma (default 1)."""
    if not isinstance(normalization, str) or not normalization.startswith("GN"):
        raise ValueError(f"normalization: only 'GN' (group normalisation) exists, "
                         f"received {normalization!r}")
    if int(set_off) < 0:
        raise ValueError(f"set_off: expected >= 0, received {set_off}")
    if per_channel and int(set_off):
        raise ValueError(f"set_off: the per-channel (V-1.1) norm has no set_off, received "
                         f"{set_off}")
    return Norm(parse_activation(activation), _positive_int(group_size, "group_size"),
                int(set_off), "GN", bool(per_channel), _gamma(gamma_init))


def _gamma(gamma_init) -> float:
    if gamma_init is None:
        return 1.0
    if isinstance(gamma_init, bool) or not isinstance(gamma_init, Real):
        raise TypeError(f"gamma_init: expected a float, received {type(gamma_init).__name__}")
    if not math.isfinite(gamma_init):
        raise ValueError(f"gamma_init: expected a finite float, received {gamma_init}")
    return float(np.float32(gamma_init))


def _map_activation(activation, layer: str):
    act = parse_activation(activation)
    if act.kind in ("SMAX", "YOLO"):
        raise ValueError(f"activation: {act.kind} is not allowed on a {layer} layer")
    return act


def grn(residual: int = 1, activation: str = "LIN", gamma_init: float = 1.0) -> GRN:
    """A global response normalisation layer (CIANNA V-1.1): ``residual`` 1 adds the input
    back, ``gamma_init`` is the initial gamma."""
    if isinstance(residual, bool):
        residual = int(residual)
    if not isinstance(residual, Integral) or int(residual) not in (0, 1):
        raise ValueError(f"residual: expected 0 or 1, received {residual!r}")
    return GRN(_map_activation(activation, "grn"), int(residual), _gamma(gamma_init))


def merge(merge_type: str = "ADD", activation: str = "LIN") -> Merge:
    """A merge layer (CIANNA V-1.1): "ADD" sums two maps of the same shape, "CONCAT" stacks
    the channels of A then B.  Which layers it reads is the network's wiring
    (``inputs=``; :func:`cianna_jax.layers.merge_sources` turns CIANNA's relative ids into
    indices)."""
    if merge_type not in MERGE_TYPES:
        raise ValueError(f"merge_type: expected one of {MERGE_TYPES}, received {merge_type!r}")
    return Merge(merge_type, _map_activation(activation, "merge"))


def lrn(activation: str = "LIN", range: int = 5, k: float = 1.0, alpha: float = 1.0,
        beta: float = 0.5) -> LRN:
    """A local response normalisation layer (CIANNA's experimental LRN)."""
    return LRN(parse_activation(activation), _positive_int(range, "range"), float(k),
               float(alpha), float(beta))


def own_bias(layer) -> float:
    """The bias a layer spec gives itself: its ``bias`` keyword, else its activation's
    default (0.1 for layers without a bias).  CIANNA V-1.1 has no input bias: pass this
    of the first layer as the network's ``bias`` to reproduce it."""
    bias = getattr(layer, "bias", None)
    if bias is None:
        return float(layer.activation.default_bias) if hasattr(layer, "bias") else 0.1
    return float(bias)


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
