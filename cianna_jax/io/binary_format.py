"""Binary CIANNA model files: reader and writer (``save(..., binary=True)``).

Little-endian int32 / float32 fields and NUL-padded string fields of
:data:`~cianna_jax.io.records.STRING_FIELD_SIZE` bytes, in the original's
exact layout; corruption raises :class:`~cianna_jax.io.records.CiannaFormatError`
with the byte offset.  Every count is checked against its bounds and against the
bytes left in the file before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import re
import struct

import numpy as np

from .loader import RecordLoader, check_header, check_yolo_counts
from .records import (
    RECORD_CHARS,
    RECORD_KIND,
    STRING_FIELD_SIZE,
    CiannaFile,
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    LRNRecord,
    NormRecord,
    PoolRecord,
    YoloRecord,
    param_shapes,
)

__all__ = ["read_binary", "binary_chunks"]

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


def read_binary(path, data: bytes, input_shape, nb_layers, nb_skip) -> CiannaFile:
    """Parse the bytes of a binary file; see ``read_network``."""
    sc = _ByteScanner(data, path, None)
    in_dims = sc.unpack("4i", "the 4-int header (W, H, D, C)")
    try:
        check_header(path, in_dims, "offset 0")
    except CiannaFormatError as e:
        if not _looks_ascii(data):
            raise
        raise CiannaFormatError(path, None, e.detail + _ASCII_HINT, where="offset 0") from None
    ld = RecordLoader(path, in_dims, input_shape, nb_layers, nb_skip)
    sc.ld = ld
    while True:
        sc.skip_separators()
        if sc.pos >= sc.n or ld.done():
            break
        ch = chr(data[sc.pos])
        ld.index += 1
        if ch not in RECORD_CHARS:
            hint = _ASCII_HINT if _looks_ascii(data) else ""
            b = data[sc.pos]
            shown = f"0x{b:02x}" + (f" ({chr(b)!r})" if 0x20 < b < 0x7F else "")
            if not hint and ld.input_shape is not None:
                hint = (" (the previous record's input size may differ from the one it was saved "
                        "with: input resolution change before a dense layer?)")
            raise sc.error(f"expected a record type byte (C, P, N, L or D), found {shown}{hint}")
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
            v = sc.unpack("17iff", "conv header", kind)
            act = sc.string("conv activation", kind)
            yolo = None
            if act.startswith("YOLO"):
                y = sc.unpack("5i", "YOLO settings", kind)
                check_yolo_counts(ld, kind, f"offset {sc.pos - 20}", v[0], y)
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
    return ld.result(at_end=sc.pos >= sc.n)


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _str_field(s: str) -> bytes:
    return s.encode("ascii").ljust(STRING_FIELD_SIZE, b"\x00")


def _f32_bytes(arr) -> bytes:
    return np.ascontiguousarray(arr, dtype="<f4").tobytes()


def binary_chunks(in_dims, records):
    """The binary file of validated ``records`` as a sequence of ``bytes`` chunks."""
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
