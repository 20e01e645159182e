"""Record model of CIANNA model files: errors, frozen records and their shape rules.

Pure numpy, no JAX.  A file is a header (the input W, H, D, C) followed by
records; the number of learned values of a dense, conv or norm record depends
on the shape of its input, which :func:`propagate_shapes` carries from the
header through every previous record.  :func:`validate_records` checks a
record list against those rules before it is written; the readers apply the
same field rules (:func:`check_fields`, :func:`check_yolo_counts`,
:func:`check_dims`, :func:`check_last_record`) while reading, so that what one
writes the other reads.

Bounds (sane limits, far above any real network): every size field (W, H, D,
C, neurons, filters, filter/pool sizes, strides, paddings, group size, LRN
range, YOLO counts) is at most :data:`MAX_DIM`; every layer output and the
input hold at most :data:`MAX_VALUES` values (CIANNA counts them with C ints);
every other integer field fits an int32 (the binary layout); a file holds at
most :data:`MAX_RECORDS` records.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ..geometry import (
    conv_output_size,
    conv_span,
    conv_weight_shape,
    dense_weight_shape,
    nb_groups,
    pool_output_size,
)

__all__ = [
    "STRING_FIELD_SIZE", "RECORD_CHARS", "RECORD_KIND", "MAX_DIM", "MAX_VALUES", "MAX_RECORDS",
    "INT32_MIN", "INT32_MAX", "OUTPUT_KINDS",
    "CiannaFormatError", "ShapeError",
    "YoloRecord", "DenseRecord", "ConvRecord", "PoolRecord", "NormRecord", "LRNRecord", "Record",
    "CiannaFile",
    "as_int_tuple", "record_kind", "format_shape",
    "output_shape", "param_shapes", "shape_step", "attach_input_shape", "propagate_shapes",
    "check_fields", "check_yolo_counts", "check_dims", "check_last_record", "check_word",
    "validate_records",
]

#: Size in bytes of every string field (activation, pool type, norm type) in binary files.
STRING_FIELD_SIZE = 40

RECORD_CHARS = "CPNLD"
RECORD_KIND = {"C": "conv", "P": "pool", "N": "norm", "L": "lrn", "D": "dense"}

#: Largest value of any size field and of any axis of a layer input or output.
MAX_DIM = 1 << 20
#: Largest number of values of the network input and of any layer output (C int).
MAX_VALUES = (1 << 31) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Most records a file may hold (CIANNA is built with at most 100 layers, MAX_LAYERS_NB).
MAX_RECORDS = 256
#: Record kinds that can end a file: CIANNA takes the last layer as the network output
#: and only knows conv, pool and dense outputs (a norm or LRN output is misread).
OUTPUT_KINDS = ("conv", "pool", "dense")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class CiannaFormatError(ValueError):
    """A CIANNA model file is corrupt, truncated or inconsistent.

    Attributes: ``path`` (the file), ``record`` (1-based index of the record
    being parsed, ``None`` for the header or the file as a whole), ``detail``
    (what was expected and what was found).
    """

    def __init__(self, path, record: int | None, detail: str, *, kind: str | None = None,
                 where: str | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.record = record
        self.detail = detail
        if record is None:
            loc = "header" if kind is None else kind
        else:
            loc = f"record {record}" + (f" ({kind})" if kind else "")
        if where:
            loc += f", {where}"
        super().__init__(f"{self.path}: {loc}: {detail}" if self.path is not None
                         else f"{loc}: {detail}")


class ShapeError(ValueError):
    """A shape inconsistency (:func:`shape_step`, :func:`attach_input_shape`); the readers
    turn it into :class:`CiannaFormatError`, the other callers into ``ValueError``."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _as_f32(value) -> float:
    """Round a number to float32 (the precision every float field has in the files)."""
    return float(np.float32(value))


def as_int_tuple(value, n: int, name: str) -> tuple:
    """``value`` as a tuple of ``n`` ints (``ValueError`` naming ``name`` otherwise)."""
    t = tuple(int(v) for v in value)
    if len(t) != n:
        raise ValueError(f"{name} must have {n} values, got {len(t)}")
    return t


def _as_array(value):
    if value is None:
        return None
    return np.asarray(value, dtype=np.float32)


class _RecordBase:
    """Field-wise equality that understands numpy arrays (exact, NaN == NaN)."""

    __hash__ = None  # records hold mutable arrays

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None:
                    return False
                a, b = np.asarray(a), np.asarray(b)
                if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
                continue
            elif a != b:
                return False
        return True


@dataclass(frozen=True, eq=False)
class YoloRecord(_RecordBase):
    """YOLO extras stored in a conv record whose activation starts with ``YOLO``."""

    nb_box: int
    nb_class: int
    nb_param: int
    fit_dim: int
    class_softmax: int
    priors: np.ndarray  # float32 (3, nb_box): rows = W, H, D prior sizes
    slopes: np.ndarray  # float32 (6, 3): per output part [slope, max, min]

    def __post_init__(self):
        for name in ("nb_box", "nb_class", "nb_param", "fit_dim", "class_softmax"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "priors", _as_array(self.priors))
        object.__setattr__(self, "slopes", _as_array(self.slopes))


@dataclass(frozen=True, eq=False)
class DenseRecord(_RecordBase):
    nb_neurons: int
    dropout: float
    bias: float
    activation: str
    weights: np.ndarray | None  # float32 (in_size, nb_neurons + 1), row-major as stored

    def __post_init__(self):
        object.__setattr__(self, "nb_neurons", int(self.nb_neurons))
        object.__setattr__(self, "dropout", _as_f32(self.dropout))
        object.__setattr__(self, "bias", _as_f32(self.bias))
        object.__setattr__(self, "activation", str(self.activation))
        object.__setattr__(self, "weights", _as_array(self.weights))


@dataclass(frozen=True, eq=False)
class ConvRecord(_RecordBase):
    nb_filters: int
    f_size: tuple  # (W, H, D)
    stride: tuple
    padding: tuple
    int_padding: tuple
    in_dims: tuple  # (W, H, D, C) of the input at save time ("idim")
    dropout: float
    bias: float
    activation: str
    yolo: YoloRecord | None
    weights: np.ndarray | None  # float32 (nb_filters, fW*fH*fD*C_in + 1)

    def __post_init__(self):
        object.__setattr__(self, "nb_filters", int(self.nb_filters))
        for name in ("f_size", "stride", "padding", "int_padding"):
            object.__setattr__(self, name, as_int_tuple(getattr(self, name), 3, name))
        object.__setattr__(self, "in_dims", as_int_tuple(self.in_dims, 4, "in_dims"))
        object.__setattr__(self, "dropout", _as_f32(self.dropout))
        object.__setattr__(self, "bias", _as_f32(self.bias))
        object.__setattr__(self, "activation", str(self.activation))
        object.__setattr__(self, "weights", _as_array(self.weights))


@dataclass(frozen=True, eq=False)
class PoolRecord(_RecordBase):
    p_size: tuple  # (W, H, D); for a global pool: the spatial size at save time
    stride: tuple
    padding: tuple
    p_global: int
    dropout: float
    p_type: str  # "MAX" or "AVG"
    activation: str

    def __post_init__(self):
        for name in ("p_size", "stride", "padding"):
            object.__setattr__(self, name, as_int_tuple(getattr(self, name), 3, name))
        object.__setattr__(self, "p_global", int(self.p_global))
        object.__setattr__(self, "dropout", _as_f32(self.dropout))
        object.__setattr__(self, "p_type", str(self.p_type))
        object.__setattr__(self, "activation", str(self.activation))


@dataclass(frozen=True, eq=False)
class NormRecord(_RecordBase):
    normalization: str  # "GN"
    group_size: int
    set_off: int
    activation: str
    gamma: np.ndarray | None  # float32 (nb_groups,)
    beta: np.ndarray | None  # float32 (nb_groups,)

    def __post_init__(self):
        object.__setattr__(self, "normalization", str(self.normalization))
        object.__setattr__(self, "group_size", int(self.group_size))
        object.__setattr__(self, "set_off", int(self.set_off))
        object.__setattr__(self, "activation", str(self.activation))
        object.__setattr__(self, "gamma", _as_array(self.gamma))
        object.__setattr__(self, "beta", _as_array(self.beta))


@dataclass(frozen=True, eq=False)
class LRNRecord(_RecordBase):
    range: int
    k: float
    alpha: float
    beta: float
    activation: str

    def __post_init__(self):
        object.__setattr__(self, "range", int(self.range))
        for name in ("k", "alpha", "beta"):
            object.__setattr__(self, name, _as_f32(getattr(self, name)))
        object.__setattr__(self, "activation", str(self.activation))


Record = Union[DenseRecord, ConvRecord, PoolRecord, NormRecord, LRNRecord]


@dataclass(frozen=True, eq=False)
class CiannaFile(_RecordBase):
    in_dims: tuple  # header W, H, D, C
    records: tuple  # loaded records (skipped ones are not included)
    in_shapes: tuple  # running input shape (W, H, D, C) each loaded record was parsed with
    nb_skipped: int

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return (self.in_dims == other.in_dims and self.in_shapes == other.in_shapes
                and self.nb_skipped == other.nb_skipped
                and len(self.records) == len(other.records)
                and all(a == b for a, b in zip(self.records, other.records)))


def record_kind(record) -> str:
    """``"dense"``, ``"conv"``, ``"pool"``, ``"norm"`` or ``"lrn"``; ``TypeError`` otherwise."""
    if isinstance(record, DenseRecord):
        return "dense"
    if isinstance(record, ConvRecord):
        return "conv"
    if isinstance(record, PoolRecord):
        return "pool"
    if isinstance(record, NormRecord):
        return "norm"
    if isinstance(record, LRNRecord):
        return "lrn"
    raise TypeError(f"not a CIANNA record: {type(record).__name__}")


# --------------------------------------------------------------------------------------------
# Shape propagation
# --------------------------------------------------------------------------------------------


def _prod(shape) -> int:
    p = 1
    for s in shape:
        p *= int(s)
    return p


def format_shape(shape) -> str:
    """``(4, 4, 1, 3)`` -> ``"4x4x1x3"`` (shapes in error messages)."""
    return "x".join(str(int(s)) for s in shape)


def check_dims(shape, what: str) -> None:
    """``ValueError`` unless every axis of ``shape`` is in 1..MAX_DIM and the product at
    most MAX_VALUES."""
    if any(not 1 <= int(d) <= MAX_DIM for d in shape):
        raise ValueError(f"{what} {format_shape(shape)}: every axis must be in 1..{MAX_DIM}")
    if _prod(shape) > MAX_VALUES:
        raise ValueError(f"{what} {format_shape(shape)} holds {_prod(shape)} values, more than "
                         f"the {MAX_VALUES} a layer can hold")


def output_shape(record, in_shape) -> tuple:
    """Output shape (W, H, D, C) of ``record`` given the shape of its input.

    ``in_shape`` is the input as the record sees it (for a conv that follows a
    dense layer, that is the conv's saved ``in_dims``; see
    :func:`propagate_shapes`).  Raises ``ValueError`` for impossible
    hyper-parameters (non-positive sizes or strides), an empty output or an
    output beyond the bounds of :func:`check_dims`.
    """
    in_shape = as_int_tuple(in_shape, 4, "in_shape")
    out = _output_shape(record, in_shape)
    try:
        check_dims(out, f"{record_kind(record)}: output")
    except ValueError as e:
        raise ValueError(f"{e} ({_geometry(record, in_shape)})") from None
    return out


def _geometry(record, in_shape) -> str:
    """The settings an output shape comes from, for error messages."""
    text = f"input {format_shape(in_shape)}"
    if isinstance(record, ConvRecord):
        return (f"{text}, {record.nb_filters} filters {format_shape(record.f_size)}, stride "
                f"{format_shape(record.stride)}, padding {format_shape(record.padding)}, "
                f"int_padding {format_shape(record.int_padding)}")
    if isinstance(record, PoolRecord):
        return (f"{text}, pool {format_shape(record.p_size)}, stride "
                f"{format_shape(record.stride)}, padding {format_shape(record.padding)}")
    return text


def _output_shape(record, in_shape) -> tuple:
    kind = record_kind(record)
    if kind == "dense":
        if record.nb_neurons <= 0:
            raise ValueError(f"dense: nb_neurons must be > 0, got {record.nb_neurons}")
        return (record.nb_neurons, 1, 1, 1)
    if kind in ("norm", "lrn"):
        if kind == "norm" and record.group_size <= 0:
            raise ValueError(f"norm: group_size must be > 0, got {record.group_size}")
        return in_shape
    if kind == "conv":
        if record.nb_filters <= 0:
            raise ValueError(f"conv: nb_filters must be > 0, got {record.nb_filters}")
        out = []
        for ax in range(3):
            s, f = in_shape[ax], record.f_size[ax]
            st, p, ip = record.stride[ax], record.padding[ax], record.int_padding[ax]
            if f <= 0 or st <= 0 or p < 0 or ip < 0:
                raise ValueError(
                    f"conv: invalid filter size/stride/padding/int_padding on axis {ax}: "
                    f"{f}/{st}/{p}/{ip}")
            if conv_span(s, p, ip) < f:
                raise ValueError(
                    f"conv: empty output on axis {ax} (input {format_shape(in_shape)}, filter "
                    f"{format_shape(record.f_size)}, stride {format_shape(record.stride)}, padding "
                    f"{format_shape(record.padding)}, int_padding "
                    f"{format_shape(record.int_padding)})")
            out.append(conv_output_size(s, f, st, p, ip))
        return (out[0], out[1], out[2], record.nb_filters)
    # pool
    if record.p_global:
        return (1, 1, 1, in_shape[3])
    out = []
    for ax in range(3):
        s, k, st, p = in_shape[ax], record.p_size[ax], record.stride[ax], record.padding[ax]
        if k <= 0 or st <= 0 or p < 0:
            raise ValueError(f"pool: invalid pool size/stride/padding on axis {ax}: {k}/{st}/{p}")
        if s + 2 * p < k:
            raise ValueError(
                f"pool: empty output on axis {ax} (input {format_shape(in_shape)}, pool "
                f"{format_shape(record.p_size)}, stride {format_shape(record.stride)}, padding "
                f"{format_shape(record.padding)})")
        out.append(pool_output_size(s, k, st, p))
    return (out[0], out[1], out[2], in_shape[3])


def param_shapes(record, in_shape) -> dict:
    """Shapes of the learned arrays of ``record`` for an input of shape ``in_shape``.

    Returns ``{"weights": (rows, cols)}`` for dense and conv records,
    ``{"gamma": (g,), "beta": (g,)}`` for norm records and ``{}`` otherwise.
    """
    in_shape = as_int_tuple(in_shape, 4, "in_shape")
    kind = record_kind(record)
    if kind == "dense":
        return {"weights": dense_weight_shape(_prod(in_shape), record.nb_neurons)}
    if kind == "conv":
        return {"weights": conv_weight_shape(record.nb_filters, record.f_size, in_shape[3])}
    if kind == "norm":
        if record.group_size <= 0:
            raise ValueError(f"norm: group_size must be > 0, got {record.group_size}")
        g = nb_groups(in_shape[3], record.group_size)
        return {"gamma": (g,), "beta": (g,)}
    return {}


def _record_input(record, shape, flat) -> tuple:
    """Input shape a record sees given the running shape (``flat``: previous layer is dense)."""
    if isinstance(record, ConvRecord):
        if flat:
            if _prod(record.in_dims) != _prod(shape):
                raise ShapeError(
                    f"conv after a dense layer reads its input as its saved in_dims "
                    f"{format_shape(record.in_dims)} ({_prod(record.in_dims)} values) but the "
                    f"previous layer has {_prod(shape)} values")
            return record.in_dims
        if record.in_dims[3] != shape[3]:
            raise ShapeError(
                f"incompatible input depth: the record was saved with input "
                f"{format_shape(record.in_dims)} ({record.in_dims[3]} channels) but its input "
                f"is {format_shape(shape)} ({shape[3]} channels)")
    return tuple(shape)


def shape_step(record, shape, flat):
    """Return (record input shape, next running shape, next flat flag).

    ``flat``: the previous layer is dense (possibly through norm/LRN records).  Raises
    :class:`ShapeError`.
    """
    rin = _record_input(record, shape, flat)
    try:
        out = output_shape(record, rin)
    except ValueError as e:
        raise ShapeError(str(e)) from None
    if isinstance(record, DenseRecord):
        return rin, out, True
    if isinstance(record, (NormRecord, LRNRecord)):
        return rin, out, flat
    return rin, out, False


def attach_input_shape(record, shape, flat, target) -> tuple:
    """Replace the running state by ``target`` for the first loaded record (v1.0.1 load check).

    Returns the new ``(shape, flat)`` running state; raises :class:`ShapeError`.
    """
    target = tuple(int(v) for v in target)
    try:
        check_dims(target, "input_shape")
    except ValueError as e:
        raise ShapeError(str(e)) from None
    if isinstance(record, DenseRecord):
        if _prod(target) != _prod(shape):
            raise ShapeError(
                f"incompatible input dimension for a dense record: the file's records expect "
                f"{format_shape(shape)} ({_prod(shape)} values) but input_shape is "
                f"{format_shape(target)} ({_prod(target)} values)")
        return target, flat
    if isinstance(record, ConvRecord) and flat:
        # A conv that follows a dense layer reinterprets a flat vector as its in_dims.
        if target[1:] == (1, 1, 1) and target[0] == _prod(record.in_dims):
            return target, True
        file_shape = record.in_dims
    else:
        file_shape = shape
    if target[3] != file_shape[3]:
        raise ShapeError(
            f"incompatible input dimension (depth): the file's records expect "
            f"{format_shape(file_shape)} ({file_shape[3]} channels) but input_shape is "
            f"{format_shape(target)} ({target[3]} channels)")
    return target, False


def propagate_shapes(in_dims, records: Sequence) -> tuple:
    """Propagate shapes through ``records`` starting from the input ``in_dims``.

    Returns ``(in_shapes, out_shape)``: the input shape each record sees and
    the output shape of the last one.  Rules: dense -> ``(n,1,1,1)``; a conv
    that directly follows a dense layer (possibly through norm/LRN records)
    reads its saved ``in_dims`` (same number of values required); otherwise a
    conv needs its saved channel count to match and may change resolution.
    Raises ``ValueError`` on inconsistencies.
    """
    shape = as_int_tuple(in_dims, 4, "in_dims")
    flat = False
    in_shapes = []
    for i, rec in enumerate(records, 1):
        try:
            rin, shape, flat = shape_step(rec, shape, flat)
        except ShapeError as e:
            raise ValueError(f"record {i} ({record_kind(rec)}): {e}") from None
        in_shapes.append(rin)
    return tuple(in_shapes), shape


# --------------------------------------------------------------------------------------------
# Validation before writing
# --------------------------------------------------------------------------------------------


def check_word(value, what: str) -> None:
    """``ValueError`` unless ``value`` is a non-empty printable ASCII word that fits a
    binary string field."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    shown = value if len(value) <= 60 else value[:57] + "..."
    if len(value) > STRING_FIELD_SIZE - 1:
        raise ValueError(f"{what} {shown!r} is longer than {STRING_FIELD_SIZE - 1} characters "
                         f"({len(value)})")
    if not value.isascii() or any(not (0x21 <= ord(c) <= 0x7E) for c in value):
        raise ValueError(f"{what} {value!r} must be printable ASCII without spaces")


def _check_range(name: str, values, lo: int, hi: int) -> None:
    for v in values:
        if not lo <= v <= hi:
            found = v if len(values) == 1 else format_shape(values)
            raise ValueError(f"{name}: expected values in {lo}..{hi}, found {found}")


def check_yolo_counts(nb_filters: int, nb_box: int, nb_class: int, nb_param: int) -> None:
    """``ValueError`` unless the YOLO counts are in range and give the conv's filter count
    ``nb_box * (8 + nb_class + nb_param)`` (checked before anything is allocated)."""
    _check_range("YOLO nb_box", (nb_box,), 1, MAX_DIM)
    _check_range("YOLO nb_class", (nb_class,), 0, MAX_DIM)
    _check_range("YOLO nb_param", (nb_param,), 0, MAX_DIM)
    need = nb_box * (8 + nb_class + nb_param)
    if need != nb_filters:
        raise ValueError(f"YOLO settings nb_box={nb_box}, nb_class={nb_class}, nb_param="
                         f"{nb_param} need nb_box*(8+nb_class+nb_param) = {need} filters, the "
                         f"conv has {nb_filters}")


def check_fields(record) -> None:
    """``ValueError`` when a field of ``record`` is outside what a CIANNA file may hold:
    sizes in 1..MAX_DIM, paddings in 0..MAX_DIM, other ints in the int32 range, string
    fields printable words of at most 39 characters, YOLO settings on YOLO convs only."""
    kind = record_kind(record)
    rules = []
    if kind == "dense":
        rules.append(("nb_neurons", (record.nb_neurons,), 1, MAX_DIM))
    elif kind == "conv":
        rules += [("nb_filters", (record.nb_filters,), 1, MAX_DIM),
                  ("f_size", record.f_size, 1, MAX_DIM), ("stride", record.stride, 1, MAX_DIM),
                  ("padding", record.padding, 0, MAX_DIM),
                  ("int_padding", record.int_padding, 0, MAX_DIM)]
    elif kind == "pool":
        rules += [("p_size", record.p_size, 1, MAX_DIM), ("stride", record.stride, 1, MAX_DIM),
                  ("padding", record.padding, 0, MAX_DIM),
                  ("p_global", (record.p_global,), INT32_MIN, INT32_MAX)]
    elif kind == "norm":
        rules += [("group_size", (record.group_size,), 1, MAX_DIM),
                  ("set_off", (record.set_off,), 0, MAX_DIM)]
        check_word(record.normalization, "normalization")
    else:
        rules.append(("range", (record.range,), 1, MAX_DIM))
    for name, values, lo, hi in rules:
        _check_range(name, values, lo, hi)
    if kind == "pool":
        check_word(record.p_type, "p_type")
    check_word(record.activation, "activation")
    if kind != "conv":
        return
    check_dims(record.in_dims, "saved input shape (idim)")
    y = record.yolo
    if record.activation.startswith("YOLO"):
        if y is None:
            raise ValueError(f"activation {record.activation!r} needs YOLO settings "
                             f"(yolo=YoloRecord(...))")
        check_yolo_counts(record.nb_filters, y.nb_box, y.nb_class, y.nb_param)
        _check_range("YOLO fit_dim, class_softmax", (y.fit_dim, y.class_softmax), INT32_MIN,
                     INT32_MAX)
    elif y is not None:
        raise ValueError(f"YOLO settings given but the activation {record.activation!r} does "
                         f"not start with 'YOLO'")


def check_last_record(record) -> None:
    """``ValueError`` when ``record`` cannot end a file (see :data:`OUTPUT_KINDS`)."""
    kind = record_kind(record)
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"the last record is a {kind} record, but a CIANNA network ends with "
                         f"its output layer (conv, pool or dense): is the file truncated?")


def _check_array(arr, expected, what, idx, kind):
    if arr is None:
        raise ValueError(f"record {idx} ({kind}): {what} is missing (expected shape {expected})")
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"record {idx} ({kind}): {what} has shape {tuple(arr.shape)}, expected "
                         f"{tuple(expected)}")


def validate_records(in_dims, records) -> None:
    """Check ``records`` against shape propagation from ``in_dims`` and the file's
    field rules (:func:`check_fields`: bounds, printable string fields, YOLO settings;
    learned array shapes; a last record of :data:`OUTPUT_KINDS`); raises ``ValueError``
    naming the record."""
    try:
        check_dims(in_dims, "in_dims")
    except ValueError as e:
        raise ValueError(str(e)) from None
    if not records:
        raise ValueError("records: a CIANNA file holds at least one record")
    if len(records) > MAX_RECORDS:
        raise ValueError(f"records: a CIANNA file holds at most {MAX_RECORDS} records, got "
                         f"{len(records)}")
    shape = in_dims
    flat = False
    for idx, rec in enumerate(records, 1):
        kind = record_kind(rec)
        if kind == "conv" and rec.activation.startswith("YOLO") and rec.yolo is not None:
            _check_array(rec.yolo.priors, (3, rec.yolo.nb_box), "YOLO priors", idx, kind)
            _check_array(rec.yolo.slopes, (6, 3), "YOLO slopes", idx, kind)
        try:
            check_fields(rec)
            rin, out, nflat = shape_step(rec, shape, flat)
        except ValueError as e:
            raise ValueError(f"record {idx} ({kind}): {e}") from None
        if kind in ("dense", "conv"):
            _check_array(rec.weights, param_shapes(rec, rin)["weights"], "weights", idx, kind)
        if kind == "norm":
            ps = param_shapes(rec, rin)
            _check_array(rec.gamma, ps["gamma"], "gamma", idx, kind)
            _check_array(rec.beta, ps["beta"], "beta", idx, kind)
        shape, flat = out, nflat
    try:
        check_last_record(records[-1])
    except ValueError as e:
        raise ValueError(f"record {len(records)} ({record_kind(records[-1])}): {e}") from None
