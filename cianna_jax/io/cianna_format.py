"""Reader and writer for CIANNA model files (``save()`` / ``load()`` formats).

This file-format layer only uses numpy and knows nothing about JAX or about
how layers compute.  It turns a CIANNA save file (ASCII or binary) into a
:class:`CiannaFile` made of frozen record objects, and writes such records
back in exactly the byte layout produced by the original CIANNA, so that the
original can reload our files.

File structure (see the project spec, ``cianna_api.md`` section 11)::

    header    W, H, D, C of the network input
    record 1  one type character (C conv, P pool, N norm, L LRN, D dense; V-1.1 files
              also G GRN, M merge)
    record 2  followed by that layer's hyper-parameters and learned values
    ...       until the end of the file (no count, no end marker)

The number of learned values stored in a dense, conv or norm record is not
written in the file: it depends on the shape of the record's input, which has
to be propagated from the header through all previous records.  The rules are
in :func:`output_shape` and :func:`propagate_shapes` (:mod:`cianna_jax.io.record_shapes`).

Differences from the original loader (deliberate fixes):

* ASCII YOLO conv records are read completely, including the 6 lines of
  activation limits (the original reader forgets them and fails).
* Skipping records in a binary file works (the original advances by a value
  count instead of a byte count).
* Any corruption (unknown record character, ``\\r`` line endings, missing or
  non-numeric values, truncated binary data) raises :class:`CiannaFormatError`
  instead of producing a partial network.

Hostile files (see :mod:`.records` for the bounds): every count and size is
checked against sane bounds and against the bytes (binary) or characters
(ASCII) left in the file before anything is allocated, ASCII parsing is linear
in the file size, integer fields must fit an int32.  A file has no end marker,
so a cut exactly between two records cannot always be seen; the rules are:

* a file ending inside its header or inside a record (even right after the
  record type byte) is refused, and so is an ASCII file whose last record lacks
  the newline(s) CIANNA writes after it (the blank line after a conv, dense,
  norm or pool record, the end of line of an LRN record);
* a file must hold at least one record and end with a conv, pool or dense
  record: CIANNA takes the last layer as the network output and handles no
  other kind, so a file ending with a norm or LRN record was cut;
* ``nb_skip_layers`` and ``nb_layers`` must not ask for more records than the
  file holds.

A cut right after a conv, pool or dense record still reads as a shorter network.

Dialects (``version=``): "1.0" (CIANNA V-1.0, the default, byte for byte as before)
and "1.1" (the V-1.1 experimental line: conv records carry ``nb_groups``, norm records
per-channel gamma/beta, new ``G`` GRN and ``M`` merge records; see
:func:`~cianna_jax.io.records.check_dialect`).  There is no detection: the caller says
which dialect a file is in, as CIANNA's ``bin=`` says its format.

This module is the public entry point (:func:`read_network`,
:func:`write_network`) and re-exports the record model.  The work is split by
concept: :mod:`.records` (errors, records, shape rules, validation),
:mod:`.ascii_format` and :mod:`.binary_format` (readers and writers),
:mod:`.loader` (reader state shared by both formats) and :mod:`.text_numbers`
(C-compatible decimal conversions).
"""

from __future__ import annotations

import errno
import os

import numpy as np

from . import ascii_format, binary_format
from .atomic import atomic_write, remove_stale_temps
from .record_shapes import output_shape, param_shapes, propagate_shapes, validate_records
from .records import (
    STRING_FIELD_SIZE,
    CiannaFile,
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    GRNRecord,
    LRNRecord,
    MergeRecord,
    NormRecord,
    PoolRecord,
    Record,
    YoloRecord,
    as_int_tuple,
    check_version,
    record_kind,
)

__all__ = [
    "CiannaFormatError",
    "YoloRecord",
    "DenseRecord",
    "ConvRecord",
    "PoolRecord",
    "NormRecord",
    "LRNRecord",
    "GRNRecord",
    "MergeRecord",
    "Record",
    "CiannaFile",
    "read_network",
    "write_network",
    "output_shape",
    "param_shapes",
    "propagate_shapes",
    "STRING_FIELD_SIZE",
]


def read_network(path, binary: bool, *, input_shape=None, nb_layers: int = 0,
                 nb_skip_layers: int = 0, version: str = "1.0") -> CiannaFile:
    """Read a CIANNA model file.

    ``binary`` must match the file format and ``version`` ("1.0" or "1.1") its
    dialect (there is no detection, like the original).  The first
    ``nb_skip_layers`` records (negative -> 0) are parsed fully and dropped; then
    ``nb_layers`` records are returned (0 = all until the end of the file; a file
    holding fewer records than asked for is refused).  ``input_shape`` (W, H, D, C)
    is what the first returned record connects to; it must be compatible with the
    file (same channels for conv/pool/norm/LRN, same number of values for dense).
    Without it the header propagated through the skipped records is used.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for bad
    arguments, :class:`CiannaFormatError` for a corrupt or inconsistent file.
    """
    check_version(version)
    nb_layers = int(nb_layers)
    nb_skip = max(0, int(nb_skip_layers))
    if nb_layers < 0:
        raise ValueError(f"nb_layers must be >= 0 (0 = all records), got {nb_layers}")
    if input_shape is not None:
        input_shape = as_int_tuple(input_shape, 4, "input_shape")
        if any(d <= 0 for d in input_shape):
            raise ValueError(f"input_shape must be positive, got {input_shape}")
    fspath = os.fspath(path)
    remove_stale_temps(fspath)  # what killed saves of this path left behind
    try:
        with open(fspath, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "CIANNA network file not found", fspath) from None
    if binary:
        return binary_format.read_binary(fspath, data, input_shape, nb_layers, nb_skip, version)
    return ascii_format.read_ascii(fspath, data.decode("latin-1"), input_shape, nb_layers,
                                   nb_skip, version)


def write_network(path, in_dims, records=None, binary=None, *,
                  version: str | None = None, prefix=None, body=None) -> None:
    """Write a CIANNA model file in the original's exact ASCII or binary layout.

    Call as ``write_network(path, in_dims, records, binary)`` or
    ``write_network(path, cianna_file, binary=...)`` (also
    ``write_network(path, cianna_file, binary)``).  For a :class:`CiannaFile`
    the header written is the input shape its first record was parsed with
    (``in_shapes[0]``), so that a file read with skipped records or a new
    ``input_shape`` is written consistently.  ``version`` is the dialect ("1.0" or
    "1.1"; default: the :class:`CiannaFile`'s, else "1.0"); a record with no form in
    it (e.g. a GRN record in a V-1.0 file) is a ``ValueError``.

    Records are validated first, against shape propagation and the rules the
    reader applies (bounds, at least one record, a conv, pool or dense record
    last): ``ValueError`` naming the record and the expected vs received value.  The file is
    written to a temporary file in the same directory, synced and renamed over
    ``path`` (:func:`~cianna_jax.io.atomic.atomic_write`), so a failed or killed write
    never destroys an existing file nor leaves a torn one.

    Optimizer-state files (:mod:`cianna_jax.io.optim_file`): ``prefix`` (``bytes`` or
    ``str``) is written before the header, ``body(index, record)`` gives the chunks that
    replace the learned values of the dense, conv, norm and GRN records (see
    :func:`~cianna_jax.io.binary_format.binary_chunks`,
    :func:`~cianna_jax.io.ascii_format.ascii_chunks`).
    """
    if isinstance(in_dims, CiannaFile):
        cf = in_dims
        if isinstance(records, (bool, int, np.bool_)) and binary is None:
            binary, records = records, None
        if records is not None:
            raise TypeError("write_network(path, cianna_file, binary): do not pass records too")
        records = cf.records
        in_dims = cf.in_shapes[0] if cf.records else cf.in_dims
        version = cf.version if version is None else version
    if binary is None:
        raise TypeError("write_network() needs binary=True or binary=False")
    if records is None:
        raise TypeError("write_network() needs the records to write")
    in_dims = as_int_tuple(in_dims, 4, "in_dims")
    if any(d <= 0 for d in in_dims):
        raise ValueError(f"in_dims must be positive, got {in_dims}")
    records = tuple(records)
    for idx, rec in enumerate(records, 1):
        try:
            record_kind(rec)
        except TypeError as e:
            raise TypeError(f"record {idx}: {e}") from None
    version = check_version("1.0" if version is None else version)
    validate_records(in_dims, records, version)

    make = binary_format.binary_chunks if binary else ascii_format.ascii_chunks
    if body is not None:
        chunks = make(in_dims, records, version, body)
    elif version == "1.0":
        chunks = make(in_dims, records)
    else:
        chunks = make(in_dims, records, version)
    with atomic_write(path) as fh:
        buf = [] if prefix is None else [prefix.encode("ascii") if isinstance(prefix, str)
                                         else bytes(prefix)]
        size = len(buf[0]) if buf else 0
        for chunk in chunks:
            b = chunk.encode("ascii") if isinstance(chunk, str) else chunk
            buf.append(b)
            size += len(b)
            if size > (1 << 20):
                fh.write(b"".join(buf))
                buf, size = [], 0
        fh.write(b"".join(buf))
