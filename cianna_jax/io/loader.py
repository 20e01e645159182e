"""Running state shared by the ASCII and binary readers.

A :class:`RecordLoader` counts records, applies ``nb_skip_layers`` /
``nb_layers`` / ``input_shape``, checks every record's fields and shapes
(:mod:`.records` bounds) before its learned values are read, propagates shapes
from record to record and builds the resulting
:class:`~cianna_jax.io.records.CiannaFile`, refusing a file that ends too early
(:meth:`RecordLoader.result`).
"""

from __future__ import annotations

import dataclasses

from .record_shapes import attach_input_shape, shape_step
from .records import (
    MAX_RECORDS,
    STEP_EXTRA,
    CiannaFile,
    CiannaFormatError,
    check_dialect,
    check_dims,
    check_fields,
    check_last_record,
    check_version,
    record_chars,
    record_kind,
)
from .records import (
    check_yolo_counts as _check_yolo_counts,
)

__all__ = ["RecordLoader", "check_header", "check_yolo_counts", "read_state_blocks"]


class RecordLoader:
    """Counts records, handles skipping / nb_layers / input_shape, builds the result;
    ``version`` is the file dialect ("1.0" or "1.1")."""

    def __init__(self, path, in_dims, input_shape, nb_layers, nb_skip, version: str = "1.0",
                 extras=None):
        self.version = check_version(version)
        # optimizer-state files: names of the state blocks after each record's learned
        # values (see ``CiannaFile.extras``); None for model files
        self.extra_names = None if extras is None else tuple(extras)
        self.extras: list = []
        self.chars = record_chars(version)
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
        self.last = None  # last record read (skipped or kept)
        self.history: list = []  # (output shape, flat) of every record read, for merges
        self._pending = None

    def done(self) -> bool:
        return self.nb_layers > 0 and self.index >= self.nb_skip + self.nb_layers

    def error(self, detail, kind=None, where=None) -> CiannaFormatError:
        return CiannaFormatError(self.path, self.index, detail, kind=kind, where=where)

    def prepare(self, record, kind, where=None):
        """Called once the hyper-parameters are known (before any learned value is read):
        checks the fields and the shapes; returns the record's input shape."""
        skipping = self.index <= self.nb_skip
        if self.index > MAX_RECORDS:
            raise self.error(f"more than {MAX_RECORDS} records in the file (CIANNA networks "
                             f"have at most 100 layers)", kind, where)
        try:
            check_dialect(record, self.version)
            check_fields(record)
            if not skipping and not self.records and self.input_shape is not None:
                self.shape, self.flat = attach_input_shape(record, self.shape, self.flat,
                                                           self.input_shape)
            rin, out, flat = shape_step(record, self.shape, self.flat, self.history)
        except ValueError as e:
            raise self.error(str(e), kind, where) from None
        self._pending = (out, flat, rin, skipping)
        return rin

    def finish(self, record, extra=None):
        """Record ``record`` (and, for optimizer-state files, its state blocks ``extra``)."""
        out, flat, rin, skipping = self._pending
        self.shape, self.flat = out, flat
        self.history.append((out, flat))
        self.last = record
        if skipping:
            self.nb_skipped += 1
        else:
            self.records.append(record)
            self.in_shapes.append(rin)
            if self.extra_names is not None:
                self.extras.append(dict(extra or {}))

    def result(self, at_end: bool) -> CiannaFile:
        """The file read so far.  ``at_end``: the reader reached the end of the file, which
        must then hold the records asked for and end with an output record."""
        if at_end:
            n = self.index
            if n == 0:
                raise CiannaFormatError(self.path, None, "the file holds a header but no "
                                        "record (truncated?)", kind="file")
            try:
                check_last_record(self.last)
            except ValueError as e:
                raise CiannaFormatError(self.path, n, str(e), kind=record_kind(self.last),
                                        where="end of file") from None
            if self.nb_skip > n:
                raise CiannaFormatError(self.path, None, f"nb_skip_layers={self.nb_skip} but "
                                        f"the file holds only {n} records", kind="file")
            if self.nb_layers > 0 and len(self.records) < self.nb_layers:
                raise CiannaFormatError(
                    self.path, None, f"nb_layers={self.nb_layers} records asked for after "
                    f"skipping {self.nb_skip}, but the file holds only {n} records", kind="file")
        return CiannaFile(in_dims=self.in_dims, records=tuple(self.records),
                          in_shapes=tuple(self.in_shapes), nb_skipped=self.nb_skipped,
                          version=self.version, extras=tuple(self.extras))


def check_header(path, dims, where=None):
    """Reject a header with a dimension outside 1..MAX_DIM or too many values."""
    try:
        check_dims(dims, "input dimensions")
    except ValueError as e:
        raise CiannaFormatError(path, None, str(e), where=where) from None


def check_yolo_counts(ld, kind, where, nb_filters, counts):
    """Reject YOLO settings ``counts`` (nb_box, nb_class, nb_param, ...) that do not fit
    the conv's ``nb_filters`` (``ld``: the loader), before anything is allocated."""
    try:
        _check_yolo_counts(nb_filters, *counts[:3])
    except ValueError as e:
        raise ld.error(str(e), kind, where) from None


def read_state_blocks(names, rec, kind, read_floats, read_step) -> dict:
    """The state blocks of an optimizer-state file after ``rec``'s learned values, for
    both formats: per name a copy of ``rec`` holding that block, or the step count.
    ``read_floats(count, what, kind)`` and ``read_step(kind, name)`` are the format's
    readers (with their bounds and bytes-left checks)."""
    out = {}
    for name in names:
        if name == STEP_EXTRA:
            out[name] = read_step(kind, name)
        elif kind in ("norm", "grn"):
            n = rec.gamma.size
            gamma = read_floats(n, f"{kind} {name} gamma ({n} values)", kind)
            beta = read_floats(n, f"{kind} {name} beta ({n} values)", kind)
            out[name] = dataclasses.replace(rec, gamma=gamma, beta=beta)
        else:
            rows, cols = rec.weights.shape
            w = read_floats(rows * cols, f"{kind} {name} ({rows} rows x {cols} values)",
                            kind)
            out[name] = dataclasses.replace(rec, weights=w.reshape(rows, cols))
    return out
