"""Binary CIANNA model files: reader and writer (``save(..., binary=True)``).

Little-endian int32 / float32 fields and NUL-padded string fields of
:data:`~cianna_jax.io.records.STRING_FIELD_SIZE` bytes, in the original's
exact layout; corruption raises :class:`~cianna_jax.io.records.CiannaFormatError`
with the byte offset.  Every count is checked against its bounds and against the
bytes left in the file before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import struct

import numpy as np

from .loader import RecordLoader, check_header, check_yolo_counts, read_state_blocks
from .record_shapes import param_shapes
from .records import (
    INT32_MAX,
    RECORD_KIND,
    STRING_FIELD_SIZE,
    WEIGHT_KINDS,
    CiannaFile,
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    GRNRecord,
    LRNRecord,
    MergeRecord,
    NormRecord,
    PoolRecord,
    YoloRecord,
    check_version,
)

__all__ = ["read_binary", "binary_chunks", "binary_weight_chunks", "binary_step_chunk"]

_SEPARATORS = re.compile(rb"[ \n]*")  # bytes the original loader skips between records


# --------------------------------------------------------------------------------------------
# Reader
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
        if size < 0 or self.pos + size > self.n:
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

    def skip_separators(self) -> None:
        self.pos = _SEPARATORS.match(self.data, self.pos).end()

    def floats(self, count: int, what: str, kind) -> np.ndarray:
        if self.pos + 4 * count > self.n and self.ld is not None and self.ld.input_shape is not None:
            what += (" (with input_shape given, the record's input size may also differ from the "
                     "one it was saved with)")
        p = self.take(4 * count, what, kind)
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=p).astype(np.float32)


_ASCII_HINT = " (the file looks like an ASCII save: use binary=False)"


def _looks_ascii(data: bytes) -> bool:
    return data[:16].replace(b"x", b"").replace(b"\n", b"").isascii() and b"x" in data[:16]


def read_binary(path, data: bytes, input_shape, nb_layers, nb_skip,
                version: str = "1.0", *, start: int = 0, extras=None) -> CiannaFile:
    """Parse the bytes of a binary file of dialect ``version``; see ``read_network``.

    ``start``: offset of the 4-int header (after an optimizer-state file's own header;
    offsets in errors stay file offsets).  ``extras``: for optimizer-state files, the
    names of the state blocks that follow the learned values of every dense, conv, norm
    and GRN record (:data:`~cianna_jax.io.records.STEP_EXTRA`: a uint64 step count, any
    other name: a block of the learned values' shapes), kept in ``CiannaFile.extras``.
    """
    v11 = check_version(version) == "1.1"
    sc = _ByteScanner(data, path, None)
    sc.pos = start
    in_dims = sc.unpack("4i", "the 4-int header (W, H, D, C)")
    try:
        check_header(path, in_dims, f"offset {start}")
    except CiannaFormatError as e:
        if not _looks_ascii(data[start:start + 16]):
            raise
        raise CiannaFormatError(path, None, e.detail + _ASCII_HINT,
                                where=f"offset {start}") from None
    ld = RecordLoader(path, in_dims, input_shape, nb_layers, nb_skip, version, extras)
    sc.ld = ld
    while True:
        sc.skip_separators()
        if sc.pos >= sc.n or ld.done():
            break
        ch = chr(data[sc.pos])
        ld.index += 1
        if ch not in ld.chars:
            hint = _ASCII_HINT if _looks_ascii(data) else ""
            b = data[sc.pos]
            shown = f"0x{b:02x}" + (f" ({chr(b)!r})" if 0x20 < b < 0x7F else "")
            if not hint and ld.input_shape is not None:
                hint = (" (the previous record's input size may differ from the one it was saved "
                        "with: input resolution change before a dense layer?)")
            if not hint and ch in RECORD_KIND:
                hint = f" (a {RECORD_KIND[ch]} record: read CIANNA V-1.1 files with version='1.1')"
            raise sc.error(f"expected a record type byte ({', '.join(ld.chars)}), found "
                           f"{shown}{hint}")
        kind = RECORD_KIND[ch]
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
            v = sc.unpack("18iff" if v11 else "17iff", "conv header", kind)
            groups = 1
            if v11:  # V-1.1: nb_groups follows nb_filters
                groups, v = v[1], v[:1] + v[2:]
            act = _conv_activation(sc, kind, v11)
            yolo = None
            if act.startswith("YOLO"):
                y = sc.unpack("5i", "YOLO settings", kind)
                check_yolo_counts(ld, kind, f"offset {sc.pos - 20}", v[0], y)
                pri = sc.floats(3 * y[0], f"YOLO priors ({3 * y[0]} floats)", kind)
                slo = sc.floats(18, "YOLO activation limits (18 floats)", kind)
                yolo = YoloRecord(*y, priors=pri.reshape(3, y[0]), slopes=slo.reshape(6, 3))
            rec = ConvRecord(v[0], v[1:4], v[4:7], v[7:10], v[10:13], v[13:17], v[17], v[18], act,
                             yolo, None, groups)
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
            rec = NormRecord(ntype, gs, so, act, None, None, v11)
            rec = _gamma_beta(sc, ld, rec, kind, where)
        elif kind == "grn":
            (res,) = sc.unpack("i", "GRN header", kind)
            act = sc.string("GRN activation", kind)
            rec = _gamma_beta(sc, ld, GRNRecord(res, act, None, None), kind, where)
        elif kind == "merge":
            v = sc.unpack("6i", "merge header", kind)
            mtype = sc.string("merge type", kind)
            act = sc.string("merge activation", kind)
            rec = MergeRecord(v[0], v[1], v[2:6], mtype, act)
            ld.prepare(rec, kind, where)
        else:  # lrn
            r, k, a, b = sc.unpack("ifff", "LRN header", kind)
            act = sc.string("LRN activation", kind)
            rec = LRNRecord(r, k, a, b, act)
            ld.prepare(rec, kind, where)
        extra = None
        if ld.extra_names is not None and kind in WEIGHT_KINDS:
            extra = read_state_blocks(ld.extra_names, rec, kind, sc.floats,
                                      functools.partial(_read_step, sc))
        ld.finish(rec, extra)
    return ld.result(at_end=sc.pos >= sc.n)


def _read_step(sc, kind, name) -> int:
    """The uint64 update count of an optimizer-state block (int32 range)."""
    (step,) = sc.unpack("Q", f"{kind} {name} (uint64)", kind)
    if step > INT32_MAX:
        raise sc.error(f"{name} {step}: expected a count of updates in 0..{INT32_MAX}", kind,
                       sc.pos - 8)
    return int(step)


def _conv_activation(sc, kind, v11: bool) -> str:
    """The conv activation field; when a V-1.0 read fails where a V-1.1 conv header (one
    more int) would hold a valid string, the error says so."""
    try:
        return sc.string("conv activation", kind)
    except CiannaFormatError as e:
        probe = sc.data[sc.pos - STRING_FIELD_SIZE + 4:sc.pos + 4]
        nul = probe.find(b"\x00")
        if v11 or nul <= 0 or any(b < 0x21 or b > 0x7E for b in probe[:nul]):
            raise
        raise CiannaFormatError(e.path, e.record, e.detail + " (the header looks like a "
                                "CIANNA V-1.1 conv record: read the file with version='1.1')",
                                kind=kind, where=f"offset {sc.pos - STRING_FIELD_SIZE}") from None


def _gamma_beta(sc, ld, rec, kind, where):
    """``rec`` (norm or GRN) with its gamma and beta blocks read."""
    rin = ld.prepare(rec, kind, where)
    (n,) = param_shapes(rec, rin)["gamma"]
    gamma = sc.floats(n, f"{kind} gamma ({n} floats)", kind)
    beta = sc.floats(n, f"{kind} beta ({n} floats)", kind)
    return dataclasses.replace(rec, gamma=gamma, beta=beta)


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _str_field(s: str) -> bytes:
    return s.encode("ascii").ljust(STRING_FIELD_SIZE, b"\x00")


def _f32_bytes(arr) -> bytes:
    return np.ascontiguousarray(arr, dtype="<f4").tobytes()


def binary_weight_chunks(rec):
    """The learned values of a dense, conv, norm or GRN record as CIANNA writes them."""
    if isinstance(rec, (NormRecord, GRNRecord)):
        yield _f32_bytes(rec.gamma)
        yield _f32_bytes(rec.beta)
    else:
        yield _f32_bytes(rec.weights)


def binary_step_chunk(step: int) -> bytes:
    """An optimizer-state file's step count (ADAM ``opt_step``): a uint64."""
    return struct.pack("<Q", step)


def binary_chunks(in_dims, records, version: str = "1.0", body=None):
    """The binary file of validated ``records`` (dialect ``version``) as ``bytes`` chunks.

    ``body(index, record)``, if given, returns the chunks written in place of the
    learned values of the dense, conv, norm and GRN records (``index``: 0-based
    position in ``records``); default :func:`binary_weight_chunks`."""
    v11 = check_version(version) == "1.1"
    if body is None:
        def body(_index, rec):
            return binary_weight_chunks(rec)
    yield struct.pack("<4i", *in_dims)
    for index, rec in enumerate(records):
        if isinstance(rec, DenseRecord):
            yield b"D" + struct.pack("<iff", rec.nb_neurons, rec.dropout, rec.bias)
            yield _str_field(rec.activation)
            yield from body(index, rec)
        elif isinstance(rec, ConvRecord):
            head = (rec.nb_filters, rec.nb_groups) if v11 else (rec.nb_filters,)
            yield b"C" + struct.pack(f"<{len(head) + 16}iff", *head, *rec.f_size, *rec.stride,
                                     *rec.padding, *rec.int_padding, *rec.in_dims, rec.dropout,
                                     rec.bias)
            yield _str_field(rec.activation)
            if rec.activation.startswith("YOLO"):
                y = rec.yolo
                yield struct.pack("<5i", y.nb_box, y.nb_class, y.nb_param, y.fit_dim,
                                  y.class_softmax)
                yield _f32_bytes(y.priors)
                yield _f32_bytes(y.slopes)
            yield from body(index, rec)
        elif isinstance(rec, PoolRecord):
            yield b"P" + struct.pack("<10if", *rec.p_size, *rec.stride, *rec.padding, rec.p_global,
                                     rec.dropout)
            yield _str_field(rec.p_type)
            yield _str_field(rec.activation)
        elif isinstance(rec, NormRecord):
            yield b"N" + _str_field(rec.normalization)
            yield struct.pack("<2i", rec.group_size, rec.set_off)
            yield _str_field(rec.activation)
            yield from body(index, rec)
        elif isinstance(rec, GRNRecord):
            yield b"G" + struct.pack("<i", rec.residual)
            yield _str_field(rec.activation)
            yield from body(index, rec)
        elif isinstance(rec, MergeRecord):
            yield b"M" + struct.pack("<6i", rec.prev_a, rec.prev_b, *rec.out_dims)
            yield _str_field(rec.merge_type)
            yield _str_field(rec.activation)
        else:
            yield b"L" + struct.pack("<ifff", rec.range, rec.k, rec.alpha, rec.beta)
            yield _str_field(rec.activation)
