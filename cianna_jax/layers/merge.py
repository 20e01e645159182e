"""Merge of two earlier layers (CIANNA V-1.1 ``merge``): "ADD" or "CONCAT".

ADD sums two maps of the same shape; CONCAT stacks the channels of A then those of B
(same spatial size).  The activation is applied after the merge; there are no
parameters.  The backward pass hands the gradient to both sources (CONCAT: each its
channel block), where the network sums it with their other readers' (CIANNA V-1.1
accumulates into ``delta_o`` the same way).

Which layers a merge reads is the network's wiring (:attr:`Network.inputs`); the
V-1.1 API's ids (negative: relative to the merge, -1 = the layer just before it;
otherwise absolute) become absolute indices through :func:`merge_sources`, and the
save-file record stores them relative again.  Merges read maps: dense (flat) outputs
are refused (CIANNA's CONCAT of flat buffers is not a feature concatenation, and its
ADD would also add the bias-propagation slots).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import jax
import jax.numpy as jnp

from ..activations import Activation, activate, parse_activation
from ..geometry import MERGE_TYPES, merge_index, merge_output_shape
from ..io.records import MergeRecord
from .base import LayerBase, register_layer
from .common import Ctx, Shape

__all__ = ["Merge", "merge_sources", "MERGE_TYPES"]


def merge_sources(prev_layer_a: int, prev_layer_b: int, index: int) -> tuple[int, int]:
    """Absolute indices ``(a, b)`` read by a merge that will be layer ``index`` (0-based,
    = the number of layers before it), from CIANNA V-1.1 ids: a negative id counts back
    from the merge (-1 = the layer just before it, -k = k layers before), an id >= 0 is
    an absolute index.  Valid ids are exactly ``-index..-1`` and ``0..index-1`` (the
    original accepts ``-(index + 1)``, defect 8); ValueError naming the layer otherwise,
    TypeError for a non-integer id."""
    if isinstance(index, bool) or not isinstance(index, Integral) or index < 0:
        raise ValueError(f"index: expected the merge's layer index (int >= 0), received "
                         f"{index!r}")
    index = int(index)
    if index == 0:
        raise ValueError("merge: a merge layer cannot be the first layer (it reads two "
                         "earlier layers)")
    out = []
    for name, rel in (("prev_layer_a", prev_layer_a), ("prev_layer_b", prev_layer_b)):
        if isinstance(rel, bool) or not isinstance(rel, Integral):
            raise TypeError(f"{name}: expected an int, received {type(rel).__name__}")
        j = merge_index(int(rel), index)
        if not 0 <= j < index:
            raise ValueError(
                f"{name}: the merge (layer {index}) reads an earlier layer: ids -1..-{index} "
                f"(relative to the merge) or 0..{index - 1} (absolute), received {int(rel)}")
        out.append(j)
    return out[0], out[1]


@register_layer
@dataclass(frozen=True)
class Merge(LayerBase):
    """``merge(merge_type, activation)``; reads two maps ``(a, b)``, returns one map."""

    merge_type: str
    activation: Activation

    kind = "merge"
    checked_in_loops = True  # elementwise operations: no convolution
    nb_inputs = 2

    def output_shape(self, in_shape: tuple[Shape, Shape]) -> Shape:
        a, b = self._inputs(in_shape)
        w, h, d, c = merge_output_shape(self.merge_type, a[:4], b[:4])
        return Shape(w, h, d, c)

    def _inputs(self, in_shape) -> tuple[Shape, Shape]:
        if self.merge_type not in MERGE_TYPES:
            raise ValueError(f"merge_type: expected one of {MERGE_TYPES}, received "
                             f"{self.merge_type!r}")
        if isinstance(in_shape, Shape) or len(in_shape) != 2:
            raise ValueError("merge: a merge layer reads two inputs")
        a, b = in_shape
        if a.flat or b.flat:
            raise ValueError("merge: a merge reads two maps (conv, pool, norm, GRN, merge "
                             "outputs), not dense outputs")
        return a, b

    def param_shapes(self, in_shape) -> dict[str, tuple[int, ...]]:
        return {}

    def init(self, key: jax.Array, in_shape):
        return {}, self.output_shape(in_shape)

    def apply(self, params, x: tuple[jax.Array, jax.Array], ctx: Ctx,
              key: jax.Array | None = None, *, activate_output: bool = True) -> jax.Array:
        a, b = x
        if self.merge_type == "ADD":
            z = a + b
        else:
            z = jnp.concatenate([a, b.astype(a.dtype)], axis=-1)
        if not activate_output:
            return z
        return activate(self.activation, z, exact=ctx.exact)

    def check(self, where: str, sources: tuple, *, last: bool) -> None:
        if self.activation.kind in ("SMAX", "YOLO"):
            raise ValueError(f"{where}: activation {self.activation.kind} is not allowed on "
                             "merge")
        super().check(where, sources, last=last)
        if len(sources) != 2:
            raise ValueError(f"{where}: a merge reads two earlier layers, received "
                             f"{len(sources)} source(s) (wire it with inputs=)")
        if any(s is None for s in sources):
            raise ValueError(f"{where}: a merge reads two earlier layers, not the network "
                             "input")

    @property
    def title(self) -> str:
        return "MERGE"

    def summary_lines(self, in_shape, out_shape: Shape, b_size: int) -> list[str]:
        a, b = in_shape
        return [f"Inputs: {a} and {b}, Type: {self.merge_type}",
                f"Output: {out_shape}, Activation: {self.activation.name}",
                f"Approx layer RAM/VRAM requirement: "
                f"{int(4 * b_size * 2 * out_shape.size / 1e6)} MB"]

    def tex_cells(self, in_shape, out_shape: Shape, params: dict) -> dict[str, str]:
        sp = "x".join(str(int(v)) for v in out_shape.spatial)
        return {"activation": self.activation.kind, "in_size": sp, "size": self.merge_type,
                "out_size": sp, "param_count": "0"}

    def to_record(self, params: dict, in_shape, yolo=None, *,
                  sources: tuple[int, int] = (-1, -1)) -> MergeRecord:
        """The ``M`` record; ``sources`` are the two ids relative to the merge (-1 = the
        layer just before it), as the network file writer gives them."""
        out = self.output_shape(in_shape)
        return MergeRecord(sources[0], sources[1], (out.w, out.h, out.d, out.c),
                           self.merge_type, self.activation.name)

    @classmethod
    def from_record(cls, rec: MergeRecord, *, after_dense: bool = False):
        return cls(rec.merge_type, parse_activation(rec.activation)), {}
