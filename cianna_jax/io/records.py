"""Record model of CIANNA model files: errors, frozen records and their field rules.

Pure numpy, no JAX.  A file is a header (the input W, H, D, C) followed by
records.  This module holds what one record is and what its fields may hold
(:func:`check_fields`, :func:`check_yolo_counts`, :func:`check_dims`,
:func:`check_last_record`); the readers apply these rules while reading and
:func:`~cianna_jax.io.record_shapes.validate_records` before writing, so that what
one writes the other reads.  The shapes records give one another (how many values
a record holds) are in :mod:`cianna_jax.io.record_shapes`, which imports this module.

Dialects: ``version="1.0"`` (CIANNA V-1.0, the default) or ``"1.1"`` (the V-1.1
experimental line): V-1.1 files add GRN (``G``) and merge (``M``) records, a conv
``nb_groups`` field and per-channel norm gamma/beta (:func:`check_dialect`).

Bounds (sane limits, far above any real network): every size field (W, H, D,
C, neurons, filters, groups, filter/pool sizes, strides, paddings, group size, LRN
range, YOLO counts, merge output shape) is at most :data:`MAX_DIM`; every layer
output and the input hold at most :data:`MAX_VALUES` values (CIANNA counts them with C ints);
every other integer field fits an int32 (the binary layout); a file holds at
most :data:`MAX_RECORDS` records.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..geometry import MERGE_TYPES, merge_index

__all__ = [
    "STRING_FIELD_SIZE", "RECORD_CHARS", "RECORD_KIND", "MAX_DIM", "MAX_VALUES", "MAX_RECORDS",
    "INT32_MIN", "INT32_MAX", "OUTPUT_KINDS", "VERSIONS", "STEP_EXTRA", "WEIGHT_KINDS",
    "CiannaFormatError",
    "YoloRecord", "DenseRecord", "ConvRecord", "PoolRecord", "NormRecord", "LRNRecord",
    "GRNRecord", "MergeRecord", "Record", "CiannaFile",
    "check_version", "record_chars", "check_dialect",
    "as_int_tuple", "record_kind", "format_shape",
    "check_fields", "check_yolo_counts", "check_dims", "check_last_record", "check_word",
]

#: Size in bytes of every string field (activation, pool type, norm type) in binary files.
STRING_FIELD_SIZE = 40

#: Record type characters of V-1.0 files (:func:`record_chars` gives each dialect's).
RECORD_CHARS = "CPNLD"
RECORD_KIND = {"C": "conv", "P": "pool", "N": "norm", "L": "lrn", "D": "dense", "G": "grn",
               "M": "merge"}
#: File dialects: CIANNA V-1.0 and the V-1.1 experimental line.
VERSIONS = ("1.0", "1.1")

#: Largest value of any size field and of any axis of a layer input or output.
MAX_DIM = 1 << 20
#: Largest number of values of the network input and of any layer output (C int).
MAX_VALUES = (1 << 31) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Most records a file may hold (CIANNA is built with at most 100 layers, MAX_LAYERS_NB).
MAX_RECORDS = 256
#: Name of the per-record optimizer step in the ``extras`` of an optimizer-state file
#: (ADAM's ``opt_step``: binary uint64, ASCII ``OptStep %ld`` line); every other extra
#: name is a block of the record's learned-value shapes.
STEP_EXTRA = "opt_step"
#: Record kinds holding learned values (and, in optimizer-state files, state blocks).
WEIGHT_KINDS = ("dense", "conv", "norm", "grn")
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
    weights: np.ndarray | None  # float32 (nb_filters, fW*fH*fD*C_in/nb_groups + 1)
    nb_groups: int = 1  # V-1.1 files only (grouped / depth-wise convolution)

    def __post_init__(self):
        object.__setattr__(self, "nb_filters", int(self.nb_filters))
        object.__setattr__(self, "nb_groups", int(self.nb_groups))
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
    gamma: np.ndarray | None  # float32 (nb_groups,), or (C,) when per_channel
    beta: np.ndarray | None  # float32 (nb_groups,), or (C,) when per_channel
    per_channel: bool = False  # V-1.1 norm: one gamma/beta per channel (set_off 0)

    def __post_init__(self):
        object.__setattr__(self, "normalization", str(self.normalization))
        object.__setattr__(self, "group_size", int(self.group_size))
        object.__setattr__(self, "set_off", int(self.set_off))
        object.__setattr__(self, "activation", str(self.activation))
        object.__setattr__(self, "gamma", _as_array(self.gamma))
        object.__setattr__(self, "beta", _as_array(self.beta))
        object.__setattr__(self, "per_channel", bool(self.per_channel))


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


@dataclass(frozen=True, eq=False)
class GRNRecord(_RecordBase):
    """V-1.1 global response normalisation: ``residual`` flag, gamma[C] and beta[C]."""

    residual: int
    activation: str
    gamma: np.ndarray | None  # float32 (C,)
    beta: np.ndarray | None  # float32 (C,)

    def __post_init__(self):
        object.__setattr__(self, "residual", int(self.residual))
        object.__setattr__(self, "activation", str(self.activation))
        object.__setattr__(self, "gamma", _as_array(self.gamma))
        object.__setattr__(self, "beta", _as_array(self.beta))


@dataclass(frozen=True, eq=False)
class MergeRecord(_RecordBase):
    """V-1.1 merge of two earlier layers: ids as CIANNA stores them (negative: relative to
    the merge, -1 = the layer just before it; otherwise absolute), the output shape
    (W, H, D, C), "ADD" or "CONCAT" and the activation.  No learned values."""

    prev_a: int
    prev_b: int
    out_dims: tuple
    merge_type: str
    activation: str

    def __post_init__(self):
        object.__setattr__(self, "prev_a", int(self.prev_a))
        object.__setattr__(self, "prev_b", int(self.prev_b))
        object.__setattr__(self, "out_dims", as_int_tuple(self.out_dims, 4, "out_dims"))
        object.__setattr__(self, "merge_type", str(self.merge_type))
        object.__setattr__(self, "activation", str(self.activation))

    def sources(self, index: int) -> tuple[int, int]:
        """Absolute indices of the two layers read by this merge at layer ``index``."""
        return merge_index(self.prev_a, index), merge_index(self.prev_b, index)


Record = Union[DenseRecord, ConvRecord, PoolRecord, NormRecord, LRNRecord, GRNRecord,
               MergeRecord]


@dataclass(frozen=True, eq=False)
class CiannaFile(_RecordBase):
    in_dims: tuple  # header W, H, D, C
    records: tuple  # loaded records (skipped ones are not included)
    in_shapes: tuple  # running input shape (W, H, D, C) each loaded record was parsed with
    nb_skipped: int
    version: str = "1.0"  # the file dialect
    # Optimizer-state files (V-1.1 ``OptimSave``): per loaded record, the state blocks read
    # after its learned values, ``{name: record copy holding that block | int step}``
    # (``{}`` for records without learned values); empty for model files.
    extras: tuple = ()

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return (self.in_dims == other.in_dims and self.in_shapes == other.in_shapes
                and self.nb_skipped == other.nb_skipped and self.version == other.version
                and len(self.records) == len(other.records)
                and all(a == b for a, b in zip(self.records, other.records))
                and len(self.extras) == len(other.extras)
                and all(a == b for a, b in zip(self.extras, other.extras)))


def record_kind(record) -> str:
    """``"dense"``, ``"conv"``, ``"pool"``, ``"norm"``, ``"lrn"``, ``"grn"`` or ``"merge"``;
    ``TypeError`` otherwise."""
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
    if isinstance(record, GRNRecord):
        return "grn"
    if isinstance(record, MergeRecord):
        return "merge"
    raise TypeError(f"not a CIANNA record: {type(record).__name__}")


# --------------------------------------------------------------------------------------------
# Field and dialect rules
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
                  ("nb_groups", (record.nb_groups,), 1, MAX_DIM),
                  ("f_size", record.f_size, 1, MAX_DIM), ("stride", record.stride, 1, MAX_DIM),
                  ("padding", record.padding, 0, MAX_DIM),
                  ("int_padding", record.int_padding, 0, MAX_DIM)]
    elif kind == "pool":
        rules += [("p_size", record.p_size, 1, MAX_DIM), ("stride", record.stride, 1, MAX_DIM),
                  ("padding", record.padding, 0, MAX_DIM),
                  ("p_global", (record.p_global,), INT32_MIN, INT32_MAX)]
    elif kind == "norm":
        rules += [("group_size", (record.group_size,), 1, MAX_DIM),
                  ("set_off", (record.set_off,), 0, 0 if record.per_channel else MAX_DIM)]
        check_word(record.normalization, "normalization")
    elif kind == "grn":
        rules.append(("residual", (record.residual,), 0, 1))
    elif kind == "merge":
        rules.append(("merge ids", (record.prev_a, record.prev_b), INT32_MIN, INT32_MAX))
        check_word(record.merge_type, "merge_type")
        if record.merge_type not in MERGE_TYPES:
            raise ValueError(f"merge_type: expected one of {MERGE_TYPES}, found "
                             f"{record.merge_type!r}")
        check_dims(record.out_dims, "merge output shape (odim)")
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


def check_version(version) -> str:
    """``version`` ("1.0" or "1.1", the file dialect), ValueError otherwise."""
    if version not in VERSIONS:
        raise ValueError(f"version: expected one of {VERSIONS} (the CIANNA file dialect), "
                         f"received {version!r}")
    return version


def record_chars(version: str) -> str:
    """The record type characters a file of ``version`` may hold."""
    return RECORD_CHARS if check_version(version) == "1.0" else RECORD_CHARS + "GM"


def check_dialect(record, version: str) -> None:
    """ValueError when ``record`` has no form in a file of ``version``: GRN and merge
    records, grouped convs and per-channel norms exist in V-1.1 files only, and a V-1.1
    norm record is always per channel (V-1.0's per-group norm has no V-1.1 form)."""
    kind = record_kind(record)
    if check_version(version) == "1.0":
        if kind in ("grn", "merge"):
            raise ValueError(f"{kind} records exist in CIANNA V-1.1 files only: use "
                             "version='1.1'")
        if kind == "conv" and record.nb_groups != 1:
            raise ValueError(f"a grouped conv (nb_groups={record.nb_groups}) exists in CIANNA "
                             "V-1.1 files only: use version='1.1'")
        if kind == "norm" and record.per_channel:
            raise ValueError("a per-channel norm (V-1.1) exists in CIANNA V-1.1 files only: "
                             "use version='1.1'")
    elif kind == "norm" and not record.per_channel:
        raise ValueError("a V-1.0 norm (per-group gamma/beta, eps 1e-3) has no CIANNA V-1.1 "
                         "record (V-1.1 norms are per channel): use version='1.0'")
