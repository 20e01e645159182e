"""Shape rules of CIANNA records, and the check of a record list before it is written.

Pure numpy, no JAX.  The number of learned values of a dense, conv or norm record is
not written in a file: it depends on the shape of the record's input, which
:func:`propagate_shapes` carries from the header through every previous record
(:func:`shape_step` one record at a time, as the readers do; :func:`output_shape`
and :func:`param_shapes` for one record).  :func:`validate_records` checks a record
list against these rules and the field rules of :mod:`cianna_jax.io.records` before
it is written.  Kept apart from the record model (:mod:`cianna_jax.io.records`), which
this module imports and which does not import it.
"""

from __future__ import annotations

from typing import Sequence

from ..geometry import (
    check_conv_groups,
    conv_output_size,
    conv_span,
    conv_weight_shape,
    dense_weight_shape,
    merge_index,
    merge_output_shape,
    nb_groups,
    pool_output_size,
)
from .records import (
    MAX_RECORDS,
    ConvRecord,
    DenseRecord,
    GRNRecord,
    LRNRecord,
    MergeRecord,
    NormRecord,
    PoolRecord,
    _prod,
    as_int_tuple,
    check_dialect,
    check_dims,
    check_fields,
    check_last_record,
    check_version,
    format_shape,
    record_kind,
)

__all__ = ["ShapeError", "output_shape", "param_shapes", "shape_step", "attach_input_shape",
           "propagate_shapes", "validate_records"]


class ShapeError(ValueError):
    """A shape inconsistency (:func:`shape_step`, :func:`attach_input_shape`); the readers
    turn it into :class:`~cianna_jax.io.records.CiannaFormatError`, the other callers into
    ``ValueError``."""


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
        groups = f" in {record.nb_groups} groups" if record.nb_groups != 1 else ""
        return (f"{text}, {record.nb_filters} filters{groups} {format_shape(record.f_size)}, "
                f"stride {format_shape(record.stride)}, padding {format_shape(record.padding)}, "
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
    if kind in ("norm", "lrn", "grn"):
        if kind == "norm" and record.group_size <= 0:
            raise ValueError(f"norm: group_size must be > 0, got {record.group_size}")
        return in_shape
    if kind == "merge":  # its inputs are earlier layers: see shape_step
        return record.out_dims
    if kind == "conv":
        if record.nb_filters <= 0:
            raise ValueError(f"conv: nb_filters must be > 0, got {record.nb_filters}")
        try:
            check_conv_groups(record.nb_groups, in_shape[3], record.nb_filters)
        except ValueError as e:
            raise ValueError(f"conv: {e}") from None
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
    ``{"gamma": (g,), "beta": (g,)}`` for norm records (``g`` groups, or the channels
    of a per-channel V-1.1 norm), ``{"gamma": (C,), "beta": (C,)}`` for GRN records and
    ``{}`` otherwise.
    """
    in_shape = as_int_tuple(in_shape, 4, "in_shape")
    kind = record_kind(record)
    if kind == "dense":
        return {"weights": dense_weight_shape(_prod(in_shape), record.nb_neurons)}
    if kind == "conv":
        check_conv_groups(record.nb_groups, in_shape[3], record.nb_filters)
        return {"weights": conv_weight_shape(record.nb_filters, record.f_size, in_shape[3],
                                             record.nb_groups)}
    if kind == "norm":
        if record.group_size <= 0:
            raise ValueError(f"norm: group_size must be > 0, got {record.group_size}")
        g = in_shape[3] if record.per_channel else nb_groups(in_shape[3], record.group_size)
        return {"gamma": (g,), "beta": (g,)}
    if kind == "grn":
        return {"gamma": (in_shape[3],), "beta": (in_shape[3],)}
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


def _merge_step(record, history):
    """(input shape A, output shape, False) of a merge record: it reads two earlier
    records of the file, whose (output shape, flat) ``history`` holds."""
    index = len(history)
    srcs = []
    for name, rel in (("previous A", record.prev_a), ("previous B", record.prev_b)):
        j = merge_index(rel, index)
        if not 0 <= j < index:
            raise ShapeError(
                f"merge: {name} id {rel} points to record {j + 1}, but the records before "
                f"this merge are 1..{index} (ids -1..-{index} relative to the merge, or "
                f"0..{index - 1} absolute)" if index else
                "merge: a merge record cannot be the first record (it reads earlier layers)")
        srcs.append(history[j])
    (sa, fa), (sb, fb) = srcs
    if fa or fb:
        raise ShapeError("merge: a merge reads map outputs (conv, pool, norm, GRN, merge), "
                         "not dense ones")
    try:
        out = merge_output_shape(record.merge_type, sa, sb)
    except ValueError as e:
        raise ShapeError(f"merge: {e}") from None
    if out != record.out_dims:
        raise ShapeError(f"merge: the saved output shape {format_shape(record.out_dims)} "
                         f"differs from the merged inputs' {format_shape(out)}")
    return tuple(sa), out, False


def shape_step(record, shape, flat, history=()):
    """Return (record input shape, next running shape, next flat flag).

    ``flat``: the previous layer is dense (possibly through norm/LRN records).
    ``history``: (output shape, flat) of every earlier record of the file, in file order
    (merge records read two of them).  Raises :class:`ShapeError`.
    """
    if isinstance(record, MergeRecord):
        return _merge_step(record, history)
    rin = _record_input(record, shape, flat)
    try:
        out = output_shape(record, rin)
    except ValueError as e:
        raise ShapeError(str(e)) from None
    if isinstance(record, DenseRecord):
        return rin, out, True
    if isinstance(record, GRNRecord) and flat:
        raise ShapeError("grn: a GRN layer reads a map, not a dense output")
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
    if isinstance(record, MergeRecord):  # reads earlier records, not the running shape
        return tuple(shape), flat
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
    in_shapes, history = [], []
    for i, rec in enumerate(records, 1):
        try:
            rin, shape, flat = shape_step(rec, shape, flat, history)
        except ShapeError as e:
            raise ValueError(f"record {i} ({record_kind(rec)}): {e}") from None
        in_shapes.append(rin)
        history.append((shape, flat))
    return tuple(in_shapes), shape


# --------------------------------------------------------------------------------------------
# Validation before writing
# --------------------------------------------------------------------------------------------


def _check_array(arr, expected, what, idx, kind):
    if arr is None:
        raise ValueError(f"record {idx} ({kind}): {what} is missing (expected shape {expected})")
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"record {idx} ({kind}): {what} has shape {tuple(arr.shape)}, expected "
                         f"{tuple(expected)}")


def validate_records(in_dims, records, version: str = "1.0") -> None:
    """Check ``records`` against shape propagation from ``in_dims`` and the file's
    field rules (:func:`check_fields`: bounds, printable string fields, YOLO settings;
    :func:`check_dialect` for ``version``; learned array shapes; a last record of
    :data:`~cianna_jax.io.records.OUTPUT_KINDS`); raises ``ValueError`` naming the record."""
    check_version(version)
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
    history: list = []
    for idx, rec in enumerate(records, 1):
        kind = record_kind(rec)
        if kind == "conv" and rec.activation.startswith("YOLO") and rec.yolo is not None:
            _check_array(rec.yolo.priors, (3, rec.yolo.nb_box), "YOLO priors", idx, kind)
            _check_array(rec.yolo.slopes, (6, 3), "YOLO slopes", idx, kind)
        try:
            check_dialect(rec, version)
            check_fields(rec)
            rin, out, nflat = shape_step(rec, shape, flat, history)
        except ValueError as e:
            raise ValueError(f"record {idx} ({kind}): {e}") from None
        if kind in ("dense", "conv"):
            _check_array(rec.weights, param_shapes(rec, rin)["weights"], "weights", idx, kind)
        if kind in ("norm", "grn"):
            ps = param_shapes(rec, rin)
            _check_array(rec.gamma, ps["gamma"], "gamma", idx, kind)
            _check_array(rec.beta, ps["beta"], "beta", idx, kind)
        shape, flat = out, nflat
        history.append((out, nflat))
    try:
        check_last_record(records[-1])
    except ValueError as e:
        raise ValueError(f"record {len(records)} ({record_kind(records[-1])}): {e}") from None
