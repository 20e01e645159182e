"""Layer specs, one module per CIANNA layer type.

Each spec is a frozen, hashable dataclass with stax-like pure functions:
``init(key, in_shape) -> (params, out_shape)`` and
``apply(params, x, ctx, key) -> y``.
"""

from .common import Ctx, Shape
from .conv import Conv
from .dense import Dense
from .lrn import LRN
from .norm import Norm
from .pool import Pool

LayerSpec = Dense | Conv | Pool | Norm | LRN

__all__ = ["Ctx", "Shape", "Dense", "Conv", "Pool", "Norm", "LRN", "LayerSpec"]
