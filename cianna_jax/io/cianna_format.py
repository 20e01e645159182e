"""Reader and writer for CIANNA model files (``save()`` / ``load()`` formats).

This module is a pure file-format layer: it only uses numpy and knows nothing
about JAX or about how layers compute.  It turns a CIANNA save file (ASCII or
binary) into a :class:`CiannaFile` made of frozen record objects, and writes
such records back in exactly the byte layout produced by the original
CIANNA, so that the original can reload our files.

File structure (see the project spec, ``cianna_api.md`` section 11)::

    header    W, H, D, C of the network input
    record 1  one type character (C conv, P pool, N norm, L LRN, D dense)
    record 2  followed by that layer's hyper-parameters and learned values
    ...       until the end of the file (no count, no end marker)

The number of learned values stored in a dense, conv or norm record is not
written in the file: it depends on the shape of the record's input, which has
to be propagated from the header through all previous records.  The rules are
in :func:`output_shape` and :func:`propagate_shapes`.

Differences from the original loader (deliberate fixes):

* ASCII YOLO conv records are read completely, including the 6 lines of
  activation limits (the original reader forgets them and fails).
* Skipping records in a binary file works (the original advances by a value
  count instead of a byte count).
* Any corruption (unknown record character, ``\\r`` line endings, missing or
  non-numeric values, truncated binary data) raises :class:`CiannaFormatError`
  instead of producing a partial network.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import re
import secrets
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence, Union

import numpy as np

__all__ = [
    "CiannaFormatError",
    "YoloRecord",
    "DenseRecord",
    "ConvRecord",
    "PoolRecord",
    "NormRecord",
    "LRNRecord",
    "Record",
    "CiannaFile",
    "read_network",
    "write_network",
    "output_shape",
    "param_shapes",
    "propagate_shapes",
    "STRING_FIELD_SIZE",
]

#: Size in bytes of every string field (activation, pool type, norm type) in binary files.
STRING_FIELD_SIZE = 40

_RECORD_CHARS = "CPNLD"
_RECORD_KIND = {"C": "conv", "P": "pool", "N": "norm", "L": "lrn", "D": "dense"}
_SEPARATORS = " \n"  # characters the original loader skips between records


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
        super().__init__(f"{self.path}: {loc}: {detail}")


class _ShapeError(ValueError):
    """Internal: a shape inconsistency; converted to CiannaFormatError or ValueError."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _as_f32(value) -> float:
    """Round a number to float32 (the precision every float field has in the files)."""
    return float(np.float32(value))


def _as_int_tuple(value, n: int, name: str) -> tuple:
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
            object.__setattr__(self, name, _as_int_tuple(getattr(self, name), 3, name))
        object.__setattr__(self, "in_dims", _as_int_tuple(self.in_dims, 4, "in_dims"))
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
            object.__setattr__(self, name, _as_int_tuple(getattr(self, name), 3, name))
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


def _kind(record) -> str:
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


def _fmt_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def output_shape(record, in_shape) -> tuple:
    """Output shape (W, H, D, C) of ``record`` given the shape of its input.

    ``in_shape`` is the input as the record sees it (for a conv that follows a
    dense layer, that is the conv's saved ``in_dims``; see
    :func:`propagate_shapes`).  Raises ``ValueError`` for impossible
    hyper-parameters (non-positive sizes or strides) or an empty output.
    """
    in_shape = _as_int_tuple(in_shape, 4, "in_shape")
    kind = _kind(record)
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
            o = (s + (s - 1) * ip + 2 * p - f) // st + 1
            if o <= 0:
                raise ValueError(
                    f"conv: empty output on axis {ax} (input {_fmt_shape(in_shape)}, filter "
                    f"{_fmt_shape(record.f_size)}, stride {_fmt_shape(record.stride)}, padding "
                    f"{_fmt_shape(record.padding)}, int_padding {_fmt_shape(record.int_padding)})")
            out.append(o)
        return (out[0], out[1], out[2], record.nb_filters)
    # pool
    if record.p_global:
        return (1, 1, 1, in_shape[3])
    out = []
    for ax in range(3):
        s, k, st, p = in_shape[ax], record.p_size[ax], record.stride[ax], record.padding[ax]
        if k <= 0 or st <= 0 or p < 0:
            raise ValueError(f"pool: invalid pool size/stride/padding on axis {ax}: {k}/{st}/{p}")
        o = (s + 2 * p - k) // st + 1
        if o <= 0:
            raise ValueError(
                f"pool: empty output on axis {ax} (input {_fmt_shape(in_shape)}, pool "
                f"{_fmt_shape(record.p_size)}, stride {_fmt_shape(record.stride)}, padding "
                f"{_fmt_shape(record.padding)})")
        out.append(o)
    return (out[0], out[1], out[2], in_shape[3])


def param_shapes(record, in_shape) -> dict:
    """Shapes of the learned arrays of ``record`` for an input of shape ``in_shape``.

    Returns ``{"weights": (rows, cols)}`` for dense and conv records,
    ``{"gamma": (g,), "beta": (g,)}`` for norm records and ``{}`` otherwise.
    """
    in_shape = _as_int_tuple(in_shape, 4, "in_shape")
    kind = _kind(record)
    if kind == "dense":
        return {"weights": (_prod(in_shape) + 1, record.nb_neurons + 1)}
    if kind == "conv":
        f = record.f_size
        return {"weights": (record.nb_filters, f[0] * f[1] * f[2] * in_shape[3] + 1)}
    if kind == "norm":
        if record.group_size <= 0:
            raise ValueError(f"norm: group_size must be > 0, got {record.group_size}")
        g = -(-in_shape[3] // record.group_size)
        return {"gamma": (g,), "beta": (g,)}
    return {}


def _record_input(record, shape, flat) -> tuple:
    """Input shape a record sees given the running shape (``flat``: previous layer is dense)."""
    if isinstance(record, ConvRecord):
        if flat:
            if _prod(record.in_dims) != _prod(shape):
                raise _ShapeError(
                    f"conv after a dense layer reads its input as its saved in_dims "
                    f"{_fmt_shape(record.in_dims)} ({_prod(record.in_dims)} values) but the "
                    f"previous layer has {_prod(shape)} values")
            return record.in_dims
        if record.in_dims[3] != shape[3]:
            raise _ShapeError(
                f"incompatible input depth: the record was saved with input "
                f"{_fmt_shape(record.in_dims)} ({record.in_dims[3]} channels) but its input "
                f"is {_fmt_shape(shape)} ({shape[3]} channels)")
    return tuple(shape)


def _step(record, shape, flat):
    """Return (record input shape, next running shape, next flat flag)."""
    rin = _record_input(record, shape, flat)
    try:
        out = output_shape(record, rin)
    except ValueError as e:
        raise _ShapeError(str(e)) from None
    if isinstance(record, DenseRecord):
        return rin, out, True
    if isinstance(record, (NormRecord, LRNRecord)):
        return rin, out, flat
    return rin, out, False


def _attach(record, shape, flat, target) -> tuple:
    """Replace the running state by ``target`` for the first loaded record (v1.0.1 load check)."""
    target = tuple(int(v) for v in target)
    if isinstance(record, DenseRecord):
        if _prod(target) != _prod(shape):
            raise _ShapeError(
                f"incompatible input dimension for a dense record: the file's records expect "
                f"{_fmt_shape(shape)} ({_prod(shape)} values) but input_shape is "
                f"{_fmt_shape(target)} ({_prod(target)} values)")
        return target, flat
    if isinstance(record, ConvRecord) and flat:
        # A conv that follows a dense layer reinterprets a flat vector as its in_dims.
        if target[1:] == (1, 1, 1) and target[0] == _prod(record.in_dims):
            return target, True
        file_shape = record.in_dims
    else:
        file_shape = shape
    if target[3] != file_shape[3]:
        raise _ShapeError(
            f"incompatible input dimension (depth): the file's records expect "
            f"{_fmt_shape(file_shape)} ({file_shape[3]} channels) but input_shape is "
            f"{_fmt_shape(target)} ({target[3]} channels)")
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
    shape = _as_int_tuple(in_dims, 4, "in_dims")
    flat = False
    in_shapes = []
    for i, rec in enumerate(records, 1):
        try:
            rin, shape, flat = _step(rec, shape, flat)
        except _ShapeError as e:
            raise ValueError(f"record {i} ({_kind(rec)}): {e}") from None
        in_shapes.append(rin)
    return tuple(in_shapes), shape


# --------------------------------------------------------------------------------------------
# Number conversion shared by the ASCII reader
# --------------------------------------------------------------------------------------------


def _strings_to_f32(tokens: list, d64: np.ndarray) -> np.ndarray:
    """Correctly rounded decimal -> float32 (like C's strtof), from the float64 parse.

    Rounding through float64 is wrong only when the float64 value lands exactly
    on a midpoint between two float32 numbers while the decimal does not; those
    rare entries are settled exactly with ``Fraction``.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        c = d64.astype(np.float32)
        c64 = c.astype(np.float64)
        diff = d64 - c64
        cand = np.isfinite(d64) & np.isfinite(c64) & (diff != 0)
    if not cand.any():
        return c
    idx = np.nonzero(cand)[0]
    toward = np.where(diff[idx] > 0, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    other = np.nextafter(c[idx], toward)
    mid = (c64[idx] + other.astype(np.float64)) / 2.0
    amb = d64[idx] == mid
    for j in np.nonzero(amb)[0]:
        i = idx[j]
        exact = Fraction(tokens[i])
        m = Fraction(float(mid[j]))
        if exact == m:
            continue  # true tie: numpy already rounded half to even
        lo, hi = sorted((c[i], other[j]))
        c[i] = hi if exact > m else lo
    return c


_INT_RE = re.compile(r"[-+]?\d+\Z")
_WEIGHT_BAD_CHAR = re.compile(r"[^0-9eE.+\-nNaAiIfFtTyY \n]")
_WS_RE = re.compile(r"[ \n]*")
_TOKEN_RE = re.compile(r"[^ \n]+")

_I = r"([-+]?\d+)"
_F = r"([-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]))"
_S = r"([!-~]+)"  # printable ASCII word (activation and type strings)
_HEADER_RE = re.compile(rf"{_I}x{_I}x{_I}x{_I} *\Z")
_DENSE_RE = re.compile(rf"{_I}n{_F}d{_F}b{_S} *\Z")
_CONV_RE = re.compile(
    rf"{_I}f{_I}x{_I}x{_I}\.{_I}x{_I}x{_I}s{_I}x{_I}x{_I}p{_I}x{_I}x{_I}ip"
    rf"{_I}x{_I}x{_I}x{_I}idim{_F}d{_F}b{_S} *\Z")
_POOL_RE = re.compile(rf"{_I}x{_I}x{_I}\.{_I}x{_I}x{_I}s{_I}x{_I}x{_I}p{_I}g_{_F}d{_S} {_S} *\Z")
_NORM_RE = re.compile(rf" {_S} S{_I}_O{_I}{_S} *\Z")
_LRN_RE = re.compile(rf" {_I} {_F} {_F} {_F} {_S} *\Z")

_PATTERNS = {
    "header": "<W>x<H>x<D>x<C>",
    "dense": "D<nb_neurons>n<dropout>d<bias>b<activation>",
    "conv": "C<nf>f<fW>x<fH>x<fD>.<sW>x<sH>x<sD>s<pW>x<pH>x<pD>p<iW>x<iH>x<iD>ip<W>x<H>x<D>x<C>idim"
            "<dropout>d<bias>b<activation>",
    "pool": "P<kW>x<kH>x<kD>.<sW>x<sH>x<sD>s<pW>x<pH>x<pD>p<global>g_<dropout>d<type> <activation>",
    "norm": "N <type> S<group_size>_O<set_off><activation>",
    "lrn": "L <range> <k> <alpha> <beta> <activation>",
}


def _float_token(tok: str) -> float:
    return float(_strings_to_f32([tok], np.array([float(tok)], dtype=np.float64))[0])


# --------------------------------------------------------------------------------------------
# Parsed record -> running state handling (common to both formats)
# --------------------------------------------------------------------------------------------


class _Loader:
    """Counts records, handles skipping / nb_layers / input_shape, builds the result."""

    def __init__(self, path, in_dims, input_shape, nb_layers, nb_skip):
        self.path = path
        self.in_dims = in_dims
        self.shape = in_dims
        self.flat = False
        self.input_shape = input_shape
        self.nb_layers = nb_layers
        self.nb_skip = nb_skip
        self.index = 0
        self.records = []
        self.in_shapes = []
        self.nb_skipped = 0

    def done(self) -> bool:
        return self.nb_layers > 0 and self.index >= self.nb_skip + self.nb_layers

    def error(self, detail, kind=None, where=None):
        return CiannaFormatError(self.path, self.index, detail, kind=kind, where=where)

    def prepare(self, record, kind, where=None):
        """Called once the hyper-parameters are known; returns the record's input shape."""
        skipping = self.index <= self.nb_skip
        try:
            if not skipping and not self.records and self.input_shape is not None:
                self.shape, self.flat = _attach(record, self.shape, self.flat, self.input_shape)
            rin, out, flat = _step(record, self.shape, self.flat)
        except _ShapeError as e:
            raise self.error(str(e), kind, where) from None
        self._pending = (out, flat, rin, skipping)
        return rin

    def finish(self, record):
        out, flat, rin, skipping = self._pending
        self.shape, self.flat = out, flat
        if skipping:
            self.nb_skipped += 1
        else:
            self.records.append(record)
            self.in_shapes.append(rin)

    def result(self) -> CiannaFile:
        return CiannaFile(in_dims=self.in_dims, records=tuple(self.records),
                          in_shapes=tuple(self.in_shapes), nb_skipped=self.nb_skipped)


def _check_header(path, dims):
    if any(d <= 0 for d in dims):
        raise CiannaFormatError(path, None,
                                f"input dimensions must be positive, found {_fmt_shape(dims)}")


def _check_yolo_counts(ld, kind, where, nb_box):
    if nb_box <= 0:
        raise ld.error(f"YOLO nb_box must be positive, found {nb_box}", kind, where)


# --------------------------------------------------------------------------------------------
# ASCII reader
# --------------------------------------------------------------------------------------------


class _TextScanner:
    def __init__(self, text: str, path, loader_ref):
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.path = path
        self.ld = loader_ref

    def line_no(self, pos=None) -> int:
        return self.text.count("\n", 0, self.pos if pos is None else pos) + 1

    def where(self, pos=None) -> str:
        return f"line {self.line_no(pos)}"

    def error(self, detail, kind=None, pos=None):
        if self.ld is None:
            return CiannaFormatError(self.path, None, detail, where=self.where(pos))
        return self.ld.error(detail, kind, self.where(pos))

    def read_line(self) -> str:
        end = self.text.find("\n", self.pos)
        if end < 0:
            end = self.n
        line = self.text[self.pos:end]
        self.pos = min(end + 1, self.n)
        return line

    def match_line(self, regex, kind, first_char=""):
        start = self.pos
        line = self.read_line()
        m = regex.match(line)
        if m is None:
            shown = (first_char + line)
            if len(shown) > 120:
                shown = shown[:117] + "..."
            hint = ""
            if "\x00" in line:
                hint = " (NUL byte found: is this a binary file? use binary=True)"
            elif "\r" in line:
                hint = " (carriage return found: Windows CRLF line endings are not supported)"
            raise self.error(f"expected a {kind} line '{_PATTERNS[kind]}', found {shown!r}{hint}",
                             kind if kind != "header" else None, start)
        return m

    def skip_separators(self):
        self.pos = _WS_RE.match(self.text, self.pos).end()

    def check_chars(self, start: int, stop: int, count: int, what: str, kind: str):
        """Reject anything that cannot be part of a number (``\\r`` in particular)."""
        bad = _WEIGHT_BAD_CHAR.search(self.text, start, stop)
        if bad is None:
            return
        ch = bad.group()
        b = bad.start()
        lo = b
        while lo > 0 and self.text[lo - 1] not in _SEPARATORS:
            lo -= 1
        hi = b
        while hi < self.n and self.text[hi] not in _SEPARATORS:
            hi += 1
        tok = self.text[lo:hi]
        if ch == "\r":
            detail = "carriage return (\\r) found: Windows CRLF line endings are not supported"
        elif tok[:1] in _RECORD_CHARS:
            detail = (f"{tok!r} is not a number: it looks like the start of the next record, so "
                      f"this record holds fewer values than expected (is its input size the one "
                      f"it was saved with? input resolution change before a dense layer?)")
        else:
            detail = f"{tok!r} is not a number (unexpected character {ch!r})"
        raise self.error(f"while reading {count} {what}: {detail}", kind, b)

    def read_tokens(self, count: int, what: str, kind: str, whole_lines: bool = False) -> list:
        """Next ``count`` tokens separated by spaces/newlines (C fscanf-like).

        With ``whole_lines`` the last value must end its line: learned values
        are always written as complete lines, so leftover values mean that the
        record's input size differs from the one it was saved with.
        """
        text, n = self.text, self.n
        out: list = []
        need = count
        pos = self.pos
        start = pos
        hint = (" (or the record's input size is not the one it was saved with: input resolution "
                "change before a dense layer?)") if whole_lines else ""
        while need > 0:
            pos = _WS_RE.match(text, pos).end()
            if pos >= n:
                self.check_chars(start, pos, count, what, kind)
                raise self.error(f"expected {count} {what}, the file ends after {count - need}"
                                 f"{hint}", kind, pos)
            end = text.find("\n", pos)
            if end < 0:
                end = n
            toks = [t for t in text[pos:end].split(" ") if t]
            if len(toks) <= need:
                out.extend(toks)
                need -= len(toks)
                pos = end
            else:
                if whole_lines:
                    self.check_chars(start, end, count, what, kind)
                    raise self.error(
                        f"while reading {count} {what}: {len(toks) - need} more value(s) on the "
                        f"last line than expected; the record's input size is probably not the "
                        f"one it was saved with (input resolution change before a dense layer?)",
                        kind, pos)
                it = _TOKEN_RE.finditer(text, pos, end)
                m = None
                for _ in range(need):
                    m = next(it)
                    out.append(m.group())
                pos = m.end()
                need = 0
        self.check_chars(start, pos, count, what, kind)
        self.pos = pos
        return out

    def read_floats(self, count: int, what: str, kind: str) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        start = self.pos
        toks = self.read_tokens(count, what, kind, whole_lines=True)
        try:
            d64 = np.array(toks, dtype=np.float64)
        except ValueError:
            for t in toks:
                try:
                    float(t)
                except ValueError:
                    break
            else:  # pragma: no cover - numpy and float disagree
                t = "?"
            raise self.error(f"while reading {count} {what}: {t!r} is not a number", kind,
                             start) from None
        return _strings_to_f32(toks, d64)

    def read_ints(self, count: int, what: str, kind: str) -> list:
        start = self.pos
        toks = self.read_tokens(count, what, kind)
        for t in toks:
            if not _INT_RE.match(t):
                raise self.error(f"while reading {what}: {t!r} is not an integer", kind, start)
        return [int(t) for t in toks]


def _read_ascii(path, text: str, input_shape, nb_layers, nb_skip) -> CiannaFile:
    sc = _TextScanner(text, path, None)
    if not text:
        raise CiannaFormatError(path, None, "empty file, expected a '<W>x<H>x<D>x<C>' header")
    m = sc.match_line(_HEADER_RE, "header")
    in_dims = tuple(int(v) for v in m.groups())
    _check_header(path, in_dims)
    ld = _Loader(path, in_dims, input_shape, nb_layers, nb_skip)
    sc.ld = ld
    while not ld.done():
        sc.skip_separators()
        if sc.pos >= sc.n:
            break
        ch = text[sc.pos]
        ld.index += 1
        if ch not in _RECORD_CHARS:
            hint = (" (carriage return: Windows CRLF line endings are not supported)"
                    if ch == "\r" else "")
            if ch in "0123456789+-.":
                hint = (" (a number: the previous record holds more values than expected; its input "
                        "size is probably not the one it was saved with)")
            raise sc.error(f"expected a record type character (C, P, N, L or D), found {ch!r}{hint}",
                           None, sc.pos)
        kind = _RECORD_KIND[ch]
        rec_start = sc.pos
        sc.pos += 1
        if kind == "dense":
            g = sc.match_line(_DENSE_RE, kind, ch).groups()
            rec = DenseRecord(int(g[0]), _float_token(g[1]), _float_token(g[2]), g[3], None)
            rin = ld.prepare(rec, kind, sc.where(rec_start))
            rows, cols = param_shapes(rec, rin)["weights"]
            w = sc.read_floats(rows * cols, f"dense weights ({rows} rows x {cols})", kind)
            rec = dataclasses.replace(rec, weights=w.reshape(rows, cols))
        elif kind == "conv":
            g = sc.match_line(_CONV_RE, kind, ch).groups()
            ints = [int(v) for v in g[:17]]
            act = g[19]
            yolo = None
            if act.startswith("YOLO"):
                y = sc.read_ints(5, "YOLO settings (nb_box nb_class nb_param fit_dim class_softmax)",
                                 kind)
                _check_yolo_counts(ld, kind, sc.where(), y[0])
                pri = sc.read_floats(3 * y[0], f"YOLO priors (3 rows of {y[0]})", kind)
                slo = sc.read_floats(18, "YOLO activation limits (6 rows of 3)", kind)
                yolo = YoloRecord(*y, priors=pri.reshape(3, y[0]), slopes=slo.reshape(6, 3))
            rec = ConvRecord(ints[0], ints[1:4], ints[4:7], ints[7:10], ints[10:13], ints[13:17],
                             _float_token(g[17]), _float_token(g[18]), act, yolo, None)
            rin = ld.prepare(rec, kind, sc.where(rec_start))
            rows, cols = param_shapes(rec, rin)["weights"]
            w = sc.read_floats(rows * cols, f"conv weights ({rows} filters x {cols})", kind)
            rec = dataclasses.replace(rec, weights=w.reshape(rows, cols))
        elif kind == "pool":
            g = sc.match_line(_POOL_RE, kind, ch).groups()
            ints = [int(v) for v in g[:10]]
            rec = PoolRecord(ints[0:3], ints[3:6], ints[6:9], ints[9], _float_token(g[10]),
                             g[11], g[12])
            ld.prepare(rec, kind, sc.where(rec_start))
        elif kind == "norm":
            g = sc.match_line(_NORM_RE, kind, ch).groups()
            rec = NormRecord(g[0], int(g[1]), int(g[2]), g[3], None, None)
            rin = ld.prepare(rec, kind, sc.where(rec_start))
            (ng,) = param_shapes(rec, rin)["gamma"]
            gamma = sc.read_floats(ng, f"norm gamma values ({ng})", kind)
            beta = sc.read_floats(ng, f"norm beta values ({ng})", kind)
            rec = dataclasses.replace(rec, gamma=gamma, beta=beta)
        else:  # lrn
            g = sc.match_line(_LRN_RE, kind, ch).groups()
            rec = LRNRecord(int(g[0]), _float_token(g[1]), _float_token(g[2]), _float_token(g[3]),
                            g[4])
            ld.prepare(rec, kind, sc.where(rec_start))
        ld.finish(rec)
    return ld.result()


# --------------------------------------------------------------------------------------------
# Binary reader
# --------------------------------------------------------------------------------------------


class _ByteScanner:
    def __init__(self, data: bytes, path, ld):
        self.data = data
        self.n = len(data)
        self.pos = 0
        self.path = path
        self.ld = ld

    def error(self, detail, kind=None, pos=None):
        where = f"offset {self.pos if pos is None else pos}"
        if self.ld is None:
            return CiannaFormatError(self.path, None, detail, where=where)
        return self.ld.error(detail, kind, where)

    def take(self, size: int, what: str, kind=None) -> int:
        if self.pos + size > self.n:
            raise self.error(f"truncated file: {what} needs {size} bytes, only {self.n - self.pos} "
                             f"left", kind)
        p = self.pos
        self.pos += size
        return p

    def unpack(self, fmt: str, what: str, kind=None) -> tuple:
        st = struct.Struct("<" + fmt)
        p = self.take(st.size, what, kind)
        return st.unpack_from(self.data, p)

    def string(self, what: str, kind) -> str:
        p = self.take(STRING_FIELD_SIZE, what, kind)
        raw = self.data[p:p + STRING_FIELD_SIZE]
        nul = raw.find(b"\x00")
        if nul < 0:
            raise self.error(f"{what}: {STRING_FIELD_SIZE}-byte string field has no NUL terminator",
                             kind, p)
        s = raw[:nul]
        if not s:
            raise self.error(f"{what}: empty string", kind, p)
        if any(b < 0x21 or b > 0x7E for b in s):
            raise self.error(f"{what}: not a printable ASCII word: {bytes(s)!r}", kind, p)
        return s.decode("ascii")

    def floats(self, count: int, what: str, kind) -> np.ndarray:
        if self.pos + 4 * count > self.n and self.ld is not None and self.ld.input_shape is not None:
            what += (" (with input_shape given, the record's input size may also differ from the "
                     "one it was saved with)")
        p = self.take(4 * count, what, kind)
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=p).astype(np.float32)


def _read_binary(path, data: bytes, input_shape, nb_layers, nb_skip) -> CiannaFile:
    sc = _ByteScanner(data, path, None)
    in_dims = sc.unpack("4i", "the 4-int header (W, H, D, C)")
    _check_header(path, in_dims)
    ld = _Loader(path, in_dims, input_shape, nb_layers, nb_skip)
    sc.ld = ld
    while not ld.done():
        while sc.pos < sc.n and data[sc.pos] in (0x20, 0x0A):
            sc.pos += 1
        if sc.pos >= sc.n:
            break
        ch = chr(data[sc.pos])
        ld.index += 1
        if ch not in _RECORD_CHARS:
            hint = ""
            if data[:16].replace(b"x", b"").replace(b"\n", b"").isascii() and b"x" in data[:16]:
                hint = " (the file looks like an ASCII save: use binary=False)"
            b = data[sc.pos]
            shown = f"0x{b:02x}" + (f" ({chr(b)!r})" if 0x20 < b < 0x7F else "")
            if not hint and ld.input_shape is not None:
                hint = (" (the previous record's input size may differ from the one it was saved "
                        "with: input resolution change before a dense layer?)")
            raise sc.error(f"expected a record type byte (C, P, N, L or D), found {shown}{hint}")
        kind = _RECORD_KIND[ch]
        rec_start = sc.pos
        where = f"offset {rec_start}"
        sc.pos += 1
        if kind == "dense":
            n, drop, bias = sc.unpack("iff", "dense header", kind)
            act = sc.string("dense activation", kind)
            rec = DenseRecord(n, drop, bias, act, None)
            rin = ld.prepare(rec, kind, where)
            rows, cols = param_shapes(rec, rin)["weights"]
            w = sc.floats(rows * cols, f"dense weights ({rows} x {cols} floats)", kind)
            rec = dataclasses.replace(rec, weights=w.reshape(rows, cols))
        elif kind == "conv":
            v = sc.unpack("17iff", "conv header", kind)
            act = sc.string("conv activation", kind)
            yolo = None
            if act.startswith("YOLO"):
                y = sc.unpack("5i", "YOLO settings", kind)
                _check_yolo_counts(ld, kind, f"offset {sc.pos - 20}", y[0])
                pri = sc.floats(3 * y[0], f"YOLO priors ({3 * y[0]} floats)", kind)
                slo = sc.floats(18, "YOLO activation limits (18 floats)", kind)
                yolo = YoloRecord(*y, priors=pri.reshape(3, y[0]), slopes=slo.reshape(6, 3))
            rec = ConvRecord(v[0], v[1:4], v[4:7], v[7:10], v[10:13], v[13:17], v[17], v[18], act,
                             yolo, None)
            rin = ld.prepare(rec, kind, where)
            rows, cols = param_shapes(rec, rin)["weights"]
            w = sc.floats(rows * cols, f"conv weights ({rows} x {cols} floats)", kind)
            rec = dataclasses.replace(rec, weights=w.reshape(rows, cols))
        elif kind == "pool":
            v = sc.unpack("10if", "pool header", kind)
            ptype = sc.string("pool type", kind)
            act = sc.string("pool activation", kind)
            rec = PoolRecord(v[0:3], v[3:6], v[6:9], v[9], v[10], ptype, act)
            ld.prepare(rec, kind, where)
        elif kind == "norm":
            ntype = sc.string("normalization type", kind)
            gs, so = sc.unpack("2i", "norm header", kind)
            act = sc.string("norm activation", kind)
            rec = NormRecord(ntype, gs, so, act, None, None)
            rin = ld.prepare(rec, kind, where)
            (ng,) = param_shapes(rec, rin)["gamma"]
            gamma = sc.floats(ng, f"norm gamma ({ng} floats)", kind)
            beta = sc.floats(ng, f"norm beta ({ng} floats)", kind)
            rec = dataclasses.replace(rec, gamma=gamma, beta=beta)
        else:  # lrn
            r, k, a, b = sc.unpack("ifff", "LRN header", kind)
            act = sc.string("LRN activation", kind)
            rec = LRNRecord(r, k, a, b, act)
            ld.prepare(rec, kind, where)
        ld.finish(rec)
    return ld.result()


# --------------------------------------------------------------------------------------------
# Public reader
# --------------------------------------------------------------------------------------------


def read_network(path, binary: bool, *, input_shape=None, nb_layers: int = 0,
                 nb_skip_layers: int = 0) -> CiannaFile:
    """Read a CIANNA model file.

    ``binary`` must match the file format (there is no detection, like the
    original).  The first ``nb_skip_layers`` records (negative -> 0) are parsed
    fully and dropped; then up to ``nb_layers`` records are returned (0 = all
    until the end of the file).  ``input_shape`` (W, H, D, C) is what the first
    returned record connects to; it must be compatible with the file (same
    channels for conv/pool/norm/LRN, same number of values for dense).  Without
    it the header propagated through the skipped records is used.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for bad
    arguments, :class:`CiannaFormatError` for a corrupt or inconsistent file.
    """
    nb_layers = int(nb_layers)
    nb_skip = max(0, int(nb_skip_layers))
    if nb_layers < 0:
        raise ValueError(f"nb_layers must be >= 0 (0 = all records), got {nb_layers}")
    if input_shape is not None:
        input_shape = _as_int_tuple(input_shape, 4, "input_shape")
        if any(d <= 0 for d in input_shape):
            raise ValueError(f"input_shape must be positive, got {input_shape}")
    fspath = os.fspath(path)
    try:
        with open(fspath, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "CIANNA network file not found", fspath) from None
    if binary:
        return _read_binary(fspath, data, input_shape, nb_layers, nb_skip)
    return _read_ascii(fspath, data.decode("latin-1"), input_shape, nb_layers, nb_skip)


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _check_word(value, what: str, idx: int, kind: str):
    if not isinstance(value, str) or not value:
        raise ValueError(f"record {idx} ({kind}): {what} must be a non-empty string, got {value!r}")
    if not value.isascii() or any(not (0x21 <= ord(c) <= 0x7E) for c in value):
        raise ValueError(f"record {idx} ({kind}): {what} {value!r} must be printable ASCII without "
                         f"spaces")
    if len(value) > STRING_FIELD_SIZE - 1:
        raise ValueError(f"record {idx} ({kind}): {what} {value!r} is longer than "
                         f"{STRING_FIELD_SIZE - 1} characters")


def _check_array(arr, expected, what, idx, kind):
    if arr is None:
        raise ValueError(f"record {idx} ({kind}): {what} is missing (expected shape {expected})")
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"record {idx} ({kind}): {what} has shape {tuple(arr.shape)}, expected "
                         f"{tuple(expected)}")


def _validate(in_dims, records) -> None:
    shape = in_dims
    flat = False
    for idx, rec in enumerate(records, 1):
        kind = _kind(rec)
        try:
            rin, out, nflat = _step(rec, shape, flat)
        except _ShapeError as e:
            raise ValueError(f"record {idx} ({kind}): {e}") from None
        if kind in ("dense", "conv"):
            _check_array(rec.weights, param_shapes(rec, rin)["weights"], "weights", idx, kind)
        if kind == "norm":
            ps = param_shapes(rec, rin)
            _check_array(rec.gamma, ps["gamma"], "gamma", idx, kind)
            _check_array(rec.beta, ps["beta"], "beta", idx, kind)
            _check_word(rec.normalization, "normalization", idx, kind)
        if kind == "pool":
            _check_word(rec.p_type, "p_type", idx, kind)
        _check_word(rec.activation, "activation", idx, kind)
        if kind == "conv" and rec.activation.startswith("YOLO"):
            y = rec.yolo
            if y is None:
                raise ValueError(f"record {idx} (conv): activation {rec.activation!r} needs YOLO "
                                 f"settings (yolo=YoloRecord(...))")
            if y.nb_box <= 0:
                raise ValueError(f"record {idx} (conv): YOLO nb_box must be positive, got {y.nb_box}")
            _check_array(y.priors, (3, y.nb_box), "YOLO priors", idx, kind)
            _check_array(y.slopes, (6, 3), "YOLO slopes", idx, kind)
        elif kind == "conv" and rec.yolo is not None:
            raise ValueError(f"record {idx} (conv): YOLO settings given but the activation "
                             f"{rec.activation!r} does not start with 'YOLO'")
        shape, flat = out, nflat


def _c_fmt(fmt: str, v: float) -> str:
    """C printf of one double; glibc writes a NaN with its sign bit set as ``-nan``."""
    if v != v and math.copysign(1.0, v) < 0:
        return "-nan"
    return fmt % v


def _g(values) -> str:
    """C's ``printf("%g ", v)`` for each float32 value (promoted to double)."""
    arr = np.asarray(values, dtype=np.float32).ravel()
    if np.isnan(arr).any():
        return "".join([_c_fmt("%g", v) + " " for v in arr.tolist()])
    return "".join(["%g " % v for v in arr.tolist()])


def _f(v: float) -> str:
    """C's ``%f`` of a float field."""
    return _c_fmt("%f", v)


def _ascii_chunks(in_dims, records):
    yield "%dx%dx%dx%d\n" % tuple(in_dims)
    for rec in records:
        if isinstance(rec, DenseRecord):
            yield "D%dn%sd%sb%s \n" % (rec.nb_neurons, _f(rec.dropout), _f(rec.bias),
                                        rec.activation)
            for row in rec.weights:
                yield _g(row) + "\n"
            yield "\n"
        elif isinstance(rec, ConvRecord):
            yield ("C%df%dx%dx%d.%dx%dx%ds%dx%dx%dp%dx%dx%dip%dx%dx%dx%didim%sd%sb%s \n"
                   % (rec.nb_filters, *rec.f_size, *rec.stride, *rec.padding, *rec.int_padding,
                      *rec.in_dims, _f(rec.dropout), _f(rec.bias), rec.activation))
            if rec.activation.startswith("YOLO"):
                y = rec.yolo
                yield "%d %d %d %d %d\n" % (y.nb_box, y.nb_class, y.nb_param, y.fit_dim,
                                            y.class_softmax)
                for row in y.priors:
                    yield _g(row) + "\n"
                for row in y.slopes:
                    yield _g(row) + "\n"
            for row in rec.weights:
                yield _g(row) + "\n"
            yield "\n"
        elif isinstance(rec, PoolRecord):
            yield ("P%dx%dx%d.%dx%dx%ds%dx%dx%dp%dg_%sd%s %s \n\n"
                   % (*rec.p_size, *rec.stride, *rec.padding, rec.p_global, _f(rec.dropout),
                      rec.p_type, rec.activation))
        elif isinstance(rec, NormRecord):
            yield "N %s S%d_O%d%s \n" % (rec.normalization, rec.group_size, rec.set_off,
                                         rec.activation)
            yield _g(rec.gamma) + "\n"
            yield _g(rec.beta) + "\n"
            yield "\n"
        else:
            yield "L %d %s %s %s %s \n" % (rec.range, _f(rec.k), _f(rec.alpha), _f(rec.beta),
                                            rec.activation)


def _str_field(s: str) -> bytes:
    return s.encode("ascii").ljust(STRING_FIELD_SIZE, b"\x00")


def _f32_bytes(arr) -> bytes:
    return np.ascontiguousarray(arr, dtype="<f4").tobytes()


def _binary_chunks(in_dims, records):
    yield struct.pack("<4i", *in_dims)
    for rec in records:
        if isinstance(rec, DenseRecord):
            yield b"D" + struct.pack("<iff", rec.nb_neurons, rec.dropout, rec.bias)
            yield _str_field(rec.activation)
            yield _f32_bytes(rec.weights)
        elif isinstance(rec, ConvRecord):
            yield b"C" + struct.pack("<17iff", rec.nb_filters, *rec.f_size, *rec.stride,
                                     *rec.padding, *rec.int_padding, *rec.in_dims, rec.dropout,
                                     rec.bias)
            yield _str_field(rec.activation)
            if rec.activation.startswith("YOLO"):
                y = rec.yolo
                yield struct.pack("<5i", y.nb_box, y.nb_class, y.nb_param, y.fit_dim,
                                  y.class_softmax)
                yield _f32_bytes(y.priors)
                yield _f32_bytes(y.slopes)
            yield _f32_bytes(rec.weights)
        elif isinstance(rec, PoolRecord):
            yield b"P" + struct.pack("<10if", *rec.p_size, *rec.stride, *rec.padding, rec.p_global,
                                     rec.dropout)
            yield _str_field(rec.p_type)
            yield _str_field(rec.activation)
        elif isinstance(rec, NormRecord):
            yield b"N" + _str_field(rec.normalization)
            yield struct.pack("<2i", rec.group_size, rec.set_off)
            yield _str_field(rec.activation)
            yield _f32_bytes(rec.gamma)
            yield _f32_bytes(rec.beta)
        else:
            yield b"L" + struct.pack("<ifff", rec.range, rec.k, rec.alpha, rec.beta)
            yield _str_field(rec.activation)


def write_network(path, in_dims, records=None, binary=None) -> None:
    """Write a CIANNA model file in the original's exact ASCII or binary layout.

    Call as ``write_network(path, in_dims, records, binary)`` or
    ``write_network(path, cianna_file, binary=...)`` (also
    ``write_network(path, cianna_file, binary)``).  For a :class:`CiannaFile`
    the header written is the input shape its first record was parsed with
    (``in_shapes[0]``), so that a file read with skipped records or a new
    ``input_shape`` is written consistently.

    Records are validated against shape propagation first (``ValueError``
    naming the record and the expected vs received shape).  The file is
    written to a temporary file in the same directory and then renamed over
    ``path``, so a failed write never destroys an existing file.
    """
    if isinstance(in_dims, CiannaFile):
        cf = in_dims
        if isinstance(records, (bool, int, np.bool_)) and binary is None:
            binary, records = records, None
        if records is not None:
            raise TypeError("write_network(path, cianna_file, binary): do not pass records too")
        records = cf.records
        in_dims = cf.in_shapes[0] if cf.records else cf.in_dims
    if binary is None:
        raise TypeError("write_network() needs binary=True or binary=False")
    if records is None:
        raise TypeError("write_network() needs the records to write")
    in_dims = _as_int_tuple(in_dims, 4, "in_dims")
    if any(d <= 0 for d in in_dims):
        raise ValueError(f"in_dims must be positive, got {in_dims}")
    records = tuple(records)
    for idx, rec in enumerate(records, 1):
        try:
            _kind(rec)
        except TypeError as e:
            raise TypeError(f"record {idx}: {e}") from None
    _validate(in_dims, records)

    fspath = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(fspath))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "directory does not exist, cannot save", fspath)
    tmp = os.path.join(directory, f".{os.path.basename(fspath)}.{secrets.token_hex(6)}.tmp")
    chunks = _binary_chunks(in_dims, records) if binary else _ascii_chunks(in_dims, records)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            buf = []
            size = 0
            for chunk in chunks:
                b = chunk.encode("ascii") if isinstance(chunk, str) else chunk
                buf.append(b)
                size += len(b)
                if size > (1 << 20):
                    fh.write(b"".join(buf))
                    buf, size = [], 0
            fh.write(b"".join(buf))
        os.replace(tmp, fspath)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
