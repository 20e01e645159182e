"""Layer types, one module per type, all meeting :class:`~cianna_jax.layers.base.Layer`.

Each spec is a frozen, hashable dataclass with stax-like pure functions:
``init(key, in_shape) -> (params, out_shape)`` and
``apply(params, x, ctx, key) -> y``.  Importing this package registers CIANNA's
layer types for file loading (:func:`~cianna_jax.layers.base.layer_type`).
"""

from .base import Layer, LayerBase, Source, layer_type, layer_types, register_layer
from .common import Ctx, Shape
from .conv import Conv
from .dense import Dense
from .grn import GRN
from .lrn import LRN
from .merge import Merge, merge_sources
from .norm import Norm
from .pool import Pool

#: Any layer spec (CIANNA's types or a user type meeting the :class:`Layer` protocol).
LayerSpec = Layer

__all__ = ["Ctx", "Shape", "Dense", "Conv", "Pool", "Norm", "LRN", "GRN", "Merge",
           "merge_sources", "LayerSpec", "Layer", "LayerBase", "Source", "register_layer",
           "layer_type", "layer_types"]
