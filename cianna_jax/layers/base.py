"""The layer protocol: what a network needs from a layer type, and the registry of types.

A layer is a frozen, hashable spec (static under ``jax.jit``) with stax-like pure
functions.  The network calls only the methods below, so a new layer type is one
module: a class meeting :class:`Layer` (usually by subclassing :class:`LayerBase`,
which supplies defaults for the optional hooks) plus its tests.  Types that CIANNA
files can hold are registered with :func:`register_layer` under their record kind.

Required (:class:`Layer`)::

    kind: str                                  # short name, e.g. "conv"
    activation: Activation
    output_shape(in_shape) -> Shape            # raises ValueError on bad geometry
    param_shapes(in_shape) -> {name: shape}
    init(key, in_shape) -> (params, out_shape)
    apply(params, x, ctx, key=None, *, activate_output=True) -> y

``in_shape`` and ``x`` are one :class:`Shape`/array, or a tuple of them for layers
with ``nb_inputs > 1`` (e.g. a merge).  Optional hooks (:class:`LayerBase`): ``resolve``
(defaults and biases once the network is known), ``check`` (stacking rules),
``update_masks`` (which parameters the optimizer may touch and decay), ``uses_depth``,
``trains_in_loops`` (several training steps per compiled call on CPU),
``summary_lines``/``tex_cells`` (console and LaTeX summaries) and ``to_record``/
``from_record`` (CIANNA save files).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax
import numpy as np

from .. import host_arrays
from ..activations import Activation
from .common import Ctx, Shape

__all__ = ["Layer", "LayerBase", "Source", "register_layer", "layer_type", "layer_types", "f32"]


class Source(NamedTuple):
    """What a layer reads, as its ``check`` sees it: the source layer spec and that
    layer's own sources (``None`` entries stand for the network input)."""

    layer: Any
    sources: tuple


@runtime_checkable
class Layer(Protocol):
    """The methods and attributes every layer type provides (see the module docstring)."""

    kind: ClassVar[str]
    activation: Activation

    def output_shape(self, in_shape: Any) -> Shape: ...

    def param_shapes(self, in_shape: Any) -> dict[str, tuple[int, ...]]: ...

    def init(self, key: jax.Array, in_shape: Any) -> tuple[dict[str, jax.Array], Shape]: ...

    def apply(self, params, x, ctx: Ctx, key: jax.Array | None = None, *,
              activate_output: bool = True) -> jax.Array: ...


def f32(value: float) -> float:
    """CIANNA keeps biases and rates as C floats: round to float32 once."""
    return float(np.float32(value))


class LayerBase:
    """Defaults for the optional hooks of :class:`Layer`.

    Subclasses are frozen dataclasses; fields named ``bias`` and ``drop_rate`` get
    CIANNA's resolution rules (first layer takes the input bias, ``None`` takes the
    activation's default, values rounded to float32).
    """

    kind: ClassVar[str] = "layer"
    #: number of input tensors (layers reading several earlier outputs set it > 1)
    nb_inputs: ClassVar[int] = 1
    #: the layer's output can carry a dense bias slot (dense layers only)
    flat_output: ClassVar[bool] = False

    def resolve(self, *, first: bool, in_dims: tuple[int, int, int, int],
                input_bias: float) -> LayerBase:
        """This spec with defaults filled in for its place in a network."""
        changes = {}
        if hasattr(self, "drop_rate"):
            changes["drop_rate"] = f32(self.drop_rate)
        if hasattr(self, "bias"):
            if first:
                bias = input_bias
            elif self.bias is None:
                bias = self.activation.default_bias
            else:
                bias = self.bias
            changes["bias"] = f32(bias)
        return dataclasses.replace(self, **changes) if changes else self

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        """Raise ValueError when this layer cannot read from ``sources`` (the layer
        specs it reads, ``None`` for the network input) or be ``last``."""
        act = self.activation.kind
        if act == "SMAX" and not last:
            raise ValueError(f"{where}: SMAX is only valid on the last layer (CIANNA aborts at "
                             "the first backward pass otherwise)")
        if act == "YOLO" and not getattr(self, "allows_yolo", False):
            raise ValueError(f"{where}: the YOLO activation is only valid on a conv layer")
        if act == "YOLO" and not last:
            raise ValueError(f"{where}: the YOLO activation is only valid on the last layer")

    def update_masks(self, params: dict[str, jax.Array]) -> tuple[dict, dict]:
        """(update mask, decay mask) per parameter: arrays broadcastable to each one;
        1 where CIANNA's optimizer updates (resp. decays) the value, else 0."""
        ones = {k: host_arrays.full((), 1, v.dtype, like=v) for k, v in params.items()}
        return ones, dict(ones)

    @staticmethod
    def updated_never_decayed(params: dict[str, jax.Array]) -> tuple[dict, dict]:
        """(update, decay) masks of normalisation parameters (gamma, beta): updated,
        never decayed; for layers whose :meth:`update_masks` is that rule."""
        return ({k: host_arrays.full((), 1, v.dtype, like=v) for k, v in params.items()},
                {k: host_arrays.full((), 0, v.dtype, like=v) for k, v in params.items()})

    def v11_decay_mask(self, params: dict[str, jax.Array]) -> dict:
        """CIANNA V-1.1's weight-decay mask per parameter (its update kernels' offsets);
        by default the same as V-1.0's (:meth:`update_masks`)."""
        return self.update_masks(params)[1]

    def uses_depth(self) -> bool:
        """Whether the layer needs the 3D (depth) code path even on depth-1 maps."""
        return False

    #: set True by a layer type whose training step was checked inside compiled loops
    #: (:meth:`trains_in_loops`' answer unless the type overrides it)
    checked_in_loops: ClassVar[bool] = False

    def trains_in_loops(self, ctx: Ctx) -> bool:
        """Whether the layer's training step keeps its speed inside a compiled loop on
        CPU (:func:`cianna_jax.training.train_steps`).  Inside a loop XLA's CPU runs a
        convolution whose dimension numbers are not its own on generic code (autodiff's
        batch-as-feature weight gradients: SDC1 training steps 33x slower), so a layer
        type says True only once its loop has been checked (its compiled program's
        convolutions, benchmarks/README.md); False keeps one call per step."""
        return self.checked_in_loops

    def summary_lines(self, in_shape: Any, out_shape: Shape, b_size: int) -> list[str]:
        """CIANNA's console lines describing the layer (after ``CREATING ... LAYER``)."""
        return [f"Input: {in_shape}, Output: {out_shape}, Activation: {self.activation.name}"]

    @property
    def title(self) -> str:
        """The layer name in CIANNA's ``CREATING <title> LAYER`` line."""
        return self.kind.upper()

    def tex_cells(self, in_shape: Any, out_shape: Shape, params: dict) -> dict[str, str]:
        """Cells of :func:`cianna_jax.print_arch_tex`'s table row."""
        return {"activation": self.activation.kind}

    def to_record(self, params: dict, in_shape: Any, yolo=None):
        """The CIANNA save-file record of this layer (io.records)."""
        raise TypeError(f"layer type {type(self).__name__!r} ({self.kind}) has no CIANNA "
                        "save-file record; save its parameters with another format")


_TYPES: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Class decorator: make ``cls`` loadable from CIANNA records of kind ``cls.kind``."""
    if not isinstance(getattr(cls, "kind", None), str):
        raise TypeError(f"{cls.__name__}: a layer type needs a string class attribute 'kind'")
    if cls.kind in _TYPES and _TYPES[cls.kind] is not cls:
        raise ValueError(f"layer kind {cls.kind!r} is already registered by "
                         f"{_TYPES[cls.kind].__name__}")
    _TYPES[cls.kind] = cls
    return cls


def layer_type(kind: str) -> type:
    """The registered layer class of ``kind`` ("dense", "conv", ...)."""
    try:
        return _TYPES[kind]
    except KeyError:
        raise ValueError(f"unknown layer kind {kind!r}; known: {sorted(_TYPES)}") from None


def layer_types() -> dict[str, type]:
    """A copy of the registry ``{kind: class}``."""
    return dict(_TYPES)
