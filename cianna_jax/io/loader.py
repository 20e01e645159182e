"""Running state shared by the ASCII and binary readers.

A :class:`RecordLoader` counts records, applies ``nb_skip_layers`` /
``nb_layers`` / ``input_shape``, propagates shapes from record to record and
builds the resulting :class:`~cianna_jax.io.records.CiannaFile`.
"""

from __future__ import annotations

from .records import (
    CiannaFile,
    CiannaFormatError,
    ShapeError,
    attach_input_shape,
    format_shape,
    shape_step,
)

__all__ = ["RecordLoader", "check_header", "check_yolo_counts"]


class RecordLoader:
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
                self.shape, self.flat = attach_input_shape(record, self.shape, self.flat,
                                                           self.input_shape)
            rin, out, flat = shape_step(record, self.shape, self.flat)
        except ShapeError as e:
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


def check_header(path, dims):
    """Reject a header with a non-positive input dimension."""
    if any(d <= 0 for d in dims):
        raise CiannaFormatError(path, None,
                                f"input dimensions must be positive, found {format_shape(dims)}")


def check_yolo_counts(ld, kind, where, nb_box):
    """Reject a YOLO conv record whose ``nb_box`` is not positive (``ld``: the loader)."""
    if nb_box <= 0:
        raise ld.error(f"YOLO nb_box must be positive, found {nb_box}", kind, where)
