"""ASCII CIANNA model files: reader and writer (``save(..., binary=False)``).

The reader scans the text like the original's ``fscanf`` calls, with exact
float32 rounding, and reports any corruption as
:class:`~cianna_jax.io.records.CiannaFormatError` with its line number.  The
writer reproduces the original's ``printf`` output byte for byte.

Hostile input: parsing is linear in the file size.  A header or record line
longer than :data:`MAX_LINE` characters is refused before any pattern runs,
the patterns are possessive (no backtracking), an integer field must fit an
int32 and a number token hold at most :data:`MAX_TOKEN` characters, and a value
count is compared with the text left before values are collected.  The last
record of the file must end with the newline(s) the original writes after it
(a blank line after conv, dense, norm, GRN, merge and pool records).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

from .loader import RecordLoader, check_header, check_yolo_counts, read_state_blocks
from .record_shapes import param_shapes
from .records import (
    INT32_MAX,
    INT32_MIN,
    RECORD_KIND,
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
from .text_numbers import format_f, format_g, parse_f32, strings_to_f32

__all__ = ["read_ascii", "ascii_chunks", "ascii_weight_chunks", "ascii_step_chunk", "MAX_LINE",
           "MAX_TOKEN"]

#: Longest header or record line accepted (the original writes lines of < 200 characters).
MAX_LINE = 4096
#: Longest number token accepted (``%g`` writes at most 13 characters, ``%f`` 47).
MAX_TOKEN = 128

_SEPARATORS = " \n"  # characters the original loader skips between records


# --------------------------------------------------------------------------------------------
# Line patterns (possessive quantifiers: linear time whatever the line holds)
# --------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[-+]?+\d++\Z")
_WEIGHT_BAD_CHAR = re.compile(r"[^0-9eE.+\-nNaAiIfFtTyY \n]")
_WS_RE = re.compile(r"[ \n]*+")
_TOKEN_RE = re.compile(r"[^ \n]+")
_TOKEN_TAIL_RE = re.compile(r"[^ \n]*+")

_I = r"([-+]?+\d++)"
_F = (r"([-+]?+(?:(?:\d++\.?+\d*+|\.\d++)(?:[eE][-+]?+\d++)?+"
      r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?+|[nN][aA][nN]))")
_S = r"([!-~]++)"  # printable ASCII word (activation and type strings)
_HEADER_RE = re.compile(rf"{_I}x{_I}x{_I}x{_I} *+\Z")
_DENSE_RE = re.compile(rf"{_I}n{_F}d{_F}b{_S} *+\Z")
_CONV_TAIL = (rf"{_I}x{_I}x{_I}\.{_I}x{_I}x{_I}s{_I}x{_I}x{_I}p{_I}x{_I}x{_I}ip"
              rf"{_I}x{_I}x{_I}x{_I}idim{_F}d{_F}b{_S} *+\Z")
_CONV_RE = re.compile(rf"{_I}f{_CONV_TAIL}")
_CONV11_RE = re.compile(rf"{_I}f{_I}g{_CONV_TAIL}")  # V-1.1: nb_groups after nb_filters
_POOL_RE = re.compile(rf"{_I}x{_I}x{_I}\.{_I}x{_I}x{_I}s{_I}x{_I}x{_I}p{_I}g_{_F}d{_S} {_S} *+\Z")
_NORM_RE = re.compile(rf" {_S} S{_I}_O{_I}{_S} *+\Z")
_LRN_RE = re.compile(rf" {_I} {_F} {_F} {_F} {_S} *+\Z")
_GRN_RE = re.compile(rf" res_{_I} {_S} *+\Z")
_MERGE_RE = re.compile(rf"{_I}pa{_I}pb odim{_I}x{_I}x{_I}x{_I} {_S} {_S} *+\Z")
_STEP_RE = re.compile(rf"OptStep {_I} *+\Z")  # optimizer-state files: ADAM's opt_step

_PATTERNS = {
    "header": "<W>x<H>x<D>x<C>",
    "dense": "D<nb_neurons>n<dropout>d<bias>b<activation>",
    "conv": "C<nf>f<fW>x<fH>x<fD>.<sW>x<sH>x<sD>s<pW>x<pH>x<pD>p<iW>x<iH>x<iD>ip<W>x<H>x<D>x<C>idim"
            "<dropout>d<bias>b<activation>",
    "pool": "P<kW>x<kH>x<kD>.<sW>x<sH>x<sD>s<pW>x<pH>x<pD>p<global>g_<dropout>d<type> <activation>",
    "norm": "N <type> S<group_size>_O<set_off><activation>",
    "lrn": "L <range> <k> <alpha> <beta> <activation>",
    "conv11": "C<nf>f<groups>g<fW>x<fH>x<fD>.<sW>x<sH>x<sD>s<pW>x<pH>x<pD>p<iW>x<iH>x<iD>ip"
              "<W>x<H>x<D>x<C>idim<dropout>d<bias>b<activation>",
    "grn": "G res_<residual> <activation>",
    "merge": "M<id_a>pa<id_b>pb odim<W>x<H>x<D>x<C> <ADD|CONCAT> <activation>",
}
#: Newlines that close each record kind after its last value (its line for pool and LRN).
_CLOSING_NEWLINES = {"dense": 2, "conv": 2, "norm": 2, "pool": 1, "lrn": 0, "grn": 2,
                     "merge": 1}


def _shown(s: str, limit: int = 40) -> str:
    """``repr`` of a token or line, cut for error messages."""
    return repr(s if len(s) <= limit else s[:limit - 3] + "...")


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


class _TextScanner:
    def __init__(self, text: str, path, loader_ref):
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.path = path
        self.ld = loader_ref
        self._line_at = (0, 1)  # (position, its line number): line numbers in linear time

    def line_no(self, pos=None) -> int:
        pos = self.pos if pos is None else pos
        at, line = self._line_at
        if pos < at:
            at, line = 0, 1
        line += self.text.count("\n", at, pos)
        self._line_at = (pos, line)
        return line

    def where(self, pos=None) -> str:
        return f"line {self.line_no(pos)}"

    def error(self, detail, kind=None, pos=None):
        if self.ld is None:
            return CiannaFormatError(self.path, None, detail, where=self.where(pos))
        return self.ld.error(detail, kind, self.where(pos))

    def match_line(self, regex, kind, first_char="", pattern=None):
        """Match the rest of the current line (at most MAX_LINE characters, ended by a
        newline) against ``regex`` (``pattern``: the key of its form in error messages)."""
        form = _PATTERNS[pattern or kind]
        start = self.pos
        label = kind if kind != "header" else None
        end = self.text.find("\n", start, start + MAX_LINE + 1)
        if end < 0:
            if self.n - start > MAX_LINE:
                raise self.error(f"expected a {kind} line '{form}' of at most "
                                 f"{MAX_LINE} characters, found a longer line starting with "
                                 f"{_shown(first_char + self.text[start:start + 60], 60)}",
                                 label, start)
            end = self.n
        line = self.text[start:end]
        self.pos = min(end + 1, self.n)
        m = regex.match(line)
        if m is None:
            hint = ""
            if "\x00" in line:
                hint = " (NUL byte found: is this a binary file? use binary=True)"
            elif "\r" in line:
                hint = " (carriage return found: Windows CRLF line endings are not supported)"
            raise self.error(f"expected a {kind} line '{form}', found "
                             f"{_shown(first_char + line, 120)}{hint}", label, start)
        if end == self.n:
            raise self.error(f"the file ends inside this {kind} line (no end of line): "
                             f"truncated file?", label, start)
        return m

    def to_int(self, tok: str, what: str, kind, pos) -> int:
        """An integer token (``[-+]digits``) as an int32, refused otherwise."""
        if (len(tok) > MAX_TOKEN or len(tok.lstrip("+-").lstrip("0")) > 10
                or not INT32_MIN <= int(tok) <= INT32_MAX):
            raise self.error(f"{what}: expected an integer in {INT32_MIN}..{INT32_MAX}, found "
                             f"{_shown(tok)} ({len(tok)} characters)", kind, pos)
        return int(tok)

    def ints(self, toks, what: str, kind, pos) -> list:
        return [self.to_int(t, what, kind, pos) for t in toks]

    def to_f32(self, tok: str, what: str, kind, pos) -> float:
        if len(tok) > MAX_TOKEN:
            raise self.error(f"{what}: a number of {len(tok)} characters (at most {MAX_TOKEN}) "
                             f"found: {_shown(tok)}", kind, pos)
        try:
            return parse_f32(tok)
        except (ValueError, OverflowError):
            raise self.error(f"{what}: {_shown(tok)} is not a number", kind, pos) from None

    def skip_separators(self):
        self.pos = _WS_RE.match(self.text, self.pos).end()

    def close_record(self, kind: str):
        """At the end of the file, the record must end with the newline(s) CIANNA writes."""
        rest = _WS_RE.match(self.text, self.pos).end()
        need = _CLOSING_NEWLINES[kind]
        if rest == self.n and self.text.count("\n", self.pos, rest) < need:
            what = "blank line" if need == 2 else "end of line"
            raise self.error(f"the file ends without the {what} that closes a {kind} record "
                             f"(truncated file?)", kind, self.n)

    def check_chars(self, start: int, stop: int, count: int, what: str, kind: str):
        """Reject anything that cannot be part of a number (``\\r`` in particular)."""
        bad = _WEIGHT_BAD_CHAR.search(self.text, start, stop)
        if bad is None:
            return
        ch = bad.group()
        b = bad.start()
        lo = max(self.text.rfind(" ", 0, b), self.text.rfind("\n", 0, b)) + 1
        tok = self.text[lo:_TOKEN_TAIL_RE.match(self.text, b).end()]
        if ch == "\r":
            detail = "carriage return (\\r) found: Windows CRLF line endings are not supported"
        elif tok[:1] and tok[:1] in RECORD_KIND:
            detail = (f"{_shown(tok)} is not a number: it looks like the start of the next "
                      f"record, so this record holds fewer values than expected (is its input "
                      f"size the one it was saved with? input resolution change before a dense "
                      f"layer?)")
        else:
            detail = f"{_shown(tok)} is not a number (unexpected character {ch!r})"
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
        if count > (n - pos + 1) // 2:  # each value takes a character and a separator
            raise self.error(f"expected {count} {what}, only {n - pos} characters are left in "
                             f"the file{hint}", kind, pos)
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
        longest = max(out, key=len)
        if len(longest) > MAX_TOKEN:
            raise self.error(f"while reading {count} {what}: a number of {len(longest)} "
                             f"characters (at most {MAX_TOKEN}) found: {_shown(longest)}",
                             kind, start)
        self.pos = pos
        return out

    def read_floats(self, count: int, what: str, kind: str) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        start = self.pos
        toks = self.read_tokens(count, what, kind, whole_lines=True)
        try:
            return strings_to_f32(toks, np.array(toks, dtype=np.float64))
        except (ValueError, OverflowError):
            for t in toks:
                try:
                    float(t)
                except ValueError:
                    break
            else:  # numpy accepted a token the exact rounding does not
                t = "?"
            raise self.error(f"while reading {count} {what}: {_shown(t)} is not a number", kind,
                             start) from None

    def read_ints(self, count: int, what: str, kind: str) -> list:
        start = self.pos
        toks = self.read_tokens(count, what, kind)
        for t in toks:
            if not _INT_RE.match(t):
                raise self.error(f"while reading {what}: {_shown(t)} is not an integer", kind,
                                 start)
        return self.ints(toks, what, kind, start)


def read_ascii(path, text: str, input_shape, nb_layers, nb_skip,
               version: str = "1.0", *, start: int = 0, in_dims=None,
               extras=None) -> CiannaFile:
    """Parse the decoded (latin-1) ``text`` of an ASCII file of dialect ``version``; see
    ``read_network``.

    For optimizer-state files: ``start`` is the position of the ``<W>x<H>x<D>x<C>``
    header line (line numbers in errors stay file line numbers); ``in_dims`` (W, H, D,
    C), if given, is the header already parsed by the caller and ``start`` the position
    of the first record; ``extras`` the names of the state blocks that follow the
    learned values of every dense, conv, norm and GRN record
    (:data:`~cianna_jax.io.records.STEP_EXTRA`: an ``OptStep <n>`` line, any other
    name: a block of the learned values' shapes), kept in ``CiannaFile.extras``.
    """
    check_version(version)
    sc = _TextScanner(text, path, None)
    sc.pos = start
    if in_dims is None:
        if start >= len(text):
            raise CiannaFormatError(path, None, "empty file, expected a '<W>x<H>x<D>x<C>' "
                                    "header" if not text else "the file ends before the "
                                    "'<W>x<H>x<D>x<C>' header", where=sc.where(start))
        m = sc.match_line(_HEADER_RE, "header")
        in_dims = tuple(sc.ints(m.groups(), "header", None, start))
    else:
        in_dims = tuple(int(v) for v in in_dims)
    check_header(path, in_dims, sc.where(start))
    ld = RecordLoader(path, in_dims, input_shape, nb_layers, nb_skip, version, extras)
    sc.ld = ld
    while True:
        sc.skip_separators()
        if sc.pos >= sc.n or ld.done():
            break
        ch = text[sc.pos]
        ld.index += 1
        if ch not in ld.chars:
            hint = (" (carriage return: Windows CRLF line endings are not supported)"
                    if ch == "\r" else "")
            if ch in "0123456789+-.":
                hint = (" (a number: the previous record holds more values than expected; its input "
                        "size is probably not the one it was saved with)")
            elif ch in RECORD_KIND:
                hint = f" (a {RECORD_KIND[ch]} record: read CIANNA V-1.1 files with version='1.1')"
            raise sc.error(f"expected a record type character ({', '.join(ld.chars)}), found "
                           f"{ch!r}{hint}", None, sc.pos)
        kind = RECORD_KIND[ch]
        rec_start = sc.pos
        sc.pos += 1
        rec = _READERS[kind](sc, ld, kind, rec_start, sc.where(rec_start))
        extra = None
        if ld.extra_names is not None and kind in WEIGHT_KINDS:
            extra = read_state_blocks(ld.extra_names, rec, kind, sc.read_floats,
                                      functools.partial(_read_step, sc))
        sc.close_record(kind)
        ld.finish(rec, extra)
    return ld.result(at_end=sc.pos >= sc.n)


def _read_step(sc, kind, name) -> int:
    """An ``OptStep <n>`` line (``n`` in 0..INT32_MAX)."""
    sc.skip_separators()
    start = sc.pos
    want = f"expected the {name} line 'OptStep <count>'"
    if start >= sc.n:
        raise sc.error(f"{want}, the file ends (truncated file?)", kind, start)
    end = sc.text.find("\n", start, start + MAX_LINE + 1)
    if end < 0:
        if sc.n - start > MAX_LINE:
            raise sc.error(f"{want}, found a line longer than {MAX_LINE} characters", kind,
                           start)
        raise sc.error(f"{want}, the file ends inside it (no end of line: truncated file?)",
                       kind, start)
    line = sc.text[start:end]
    m = _STEP_RE.match(line)
    if m is None:
        hint = (" (carriage return: Windows CRLF line endings are not supported)"
                if "\r" in line else "")
        raise sc.error(f"{want}, found {_shown(line, 120)}{hint}", kind, start)
    step = sc.to_int(m.group(1), name, kind, start)
    if step < 0:
        raise sc.error(f"{name} {step}: expected a count of updates >= 0", kind, start)
    sc.pos = end + 1
    return step


def _read_dense(sc, ld, kind, start, where):
    g = sc.match_line(_DENSE_RE, kind, "D").groups()
    rec = DenseRecord(sc.to_int(g[0], "nb_neurons", kind, start),
                      sc.to_f32(g[1], "dropout", kind, start),
                      sc.to_f32(g[2], "bias", kind, start), g[3], None)
    rin = ld.prepare(rec, kind, where)
    rows, cols = param_shapes(rec, rin)["weights"]
    w = sc.read_floats(rows * cols, f"dense weights ({rows} rows x {cols})", kind)
    return dataclasses.replace(rec, weights=w.reshape(rows, cols))


def _read_conv(sc, ld, kind, start, where):
    v11 = ld.version == "1.1"
    g = sc.match_line(_CONV11_RE if v11 else _CONV_RE, kind, "C",
                      "conv11" if v11 else kind).groups()
    groups = 1
    if v11:  # V-1.1: nb_groups follows nb_filters
        groups = sc.to_int(g[1], "nb_groups", kind, start)
        g = g[:1] + g[2:]
    ints = sc.ints(g[:17], "conv hyper-parameters", kind, start)
    act = g[19]
    yolo = None
    if act.startswith("YOLO"):
        y = sc.read_ints(5, "YOLO settings (nb_box nb_class nb_param fit_dim class_softmax)", kind)
        check_yolo_counts(ld, kind, sc.where(), ints[0], y)
        pri = sc.read_floats(3 * y[0], f"YOLO priors (3 rows of {y[0]})", kind)
        slo = sc.read_floats(18, "YOLO activation limits (6 rows of 3)", kind)
        yolo = YoloRecord(*y, priors=pri.reshape(3, y[0]), slopes=slo.reshape(6, 3))
    rec = ConvRecord(ints[0], ints[1:4], ints[4:7], ints[7:10], ints[10:13], ints[13:17],
                     sc.to_f32(g[17], "dropout", kind, start),
                     sc.to_f32(g[18], "bias", kind, start), act, yolo, None, groups)
    rin = ld.prepare(rec, kind, where)
    rows, cols = param_shapes(rec, rin)["weights"]
    w = sc.read_floats(rows * cols, f"conv weights ({rows} filters x {cols})", kind)
    return dataclasses.replace(rec, weights=w.reshape(rows, cols))


def _read_pool(sc, ld, kind, start, where):
    g = sc.match_line(_POOL_RE, kind, "P").groups()
    ints = sc.ints(g[:10], "pool hyper-parameters", kind, start)
    rec = PoolRecord(ints[0:3], ints[3:6], ints[6:9], ints[9],
                     sc.to_f32(g[10], "dropout", kind, start), g[11], g[12])
    ld.prepare(rec, kind, where)
    return rec


def _gamma_beta(sc, ld, rec, kind, where):
    """``rec`` (norm or GRN) with its gamma and beta lines read."""
    rin = ld.prepare(rec, kind, where)
    (n,) = param_shapes(rec, rin)["gamma"]
    gamma = sc.read_floats(n, f"{kind} gamma values ({n})", kind)
    beta = sc.read_floats(n, f"{kind} beta values ({n})", kind)
    return dataclasses.replace(rec, gamma=gamma, beta=beta)


def _read_norm(sc, ld, kind, start, where):
    g = sc.match_line(_NORM_RE, kind, "N").groups()
    gs, so = sc.ints(g[1:3], "norm hyper-parameters", kind, start)
    rec = NormRecord(g[0], gs, so, g[3], None, None, ld.version == "1.1")
    return _gamma_beta(sc, ld, rec, kind, where)


def _read_lrn(sc, ld, kind, start, where):
    g = sc.match_line(_LRN_RE, kind, "L").groups()
    rec = LRNRecord(sc.to_int(g[0], "range", kind, start),
                    *(sc.to_f32(v, "LRN k, alpha, beta", kind, start) for v in g[1:4]), g[4])
    ld.prepare(rec, kind, where)
    return rec


def _read_grn(sc, ld, kind, start, where):
    g = sc.match_line(_GRN_RE, kind, "G").groups()
    rec = GRNRecord(sc.to_int(g[0], "residual", kind, start), g[1], None, None)
    return _gamma_beta(sc, ld, rec, kind, where)


def _read_merge(sc, ld, kind, start, where):
    g = sc.match_line(_MERGE_RE, kind, "M").groups()
    ints = sc.ints(g[:6], "merge ids and output shape", kind, start)
    rec = MergeRecord(ints[0], ints[1], ints[2:6], g[6], g[7])
    ld.prepare(rec, kind, where)
    return rec


_READERS = {"dense": _read_dense, "conv": _read_conv, "pool": _read_pool, "norm": _read_norm,
            "lrn": _read_lrn, "grn": _read_grn, "merge": _read_merge}


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def ascii_weight_chunks(rec):
    """The learned values of a dense, conv, norm or GRN record as CIANNA writes them:
    one ``%g `` line per row (gamma, beta lines for norm and GRN), then a blank line."""
    if isinstance(rec, (NormRecord, GRNRecord)):
        yield format_g(rec.gamma) + "\n"
        yield format_g(rec.beta) + "\n"
    else:
        for row in rec.weights:
            yield format_g(row) + "\n"
    yield "\n"


def ascii_step_chunk(step: int) -> str:
    """An optimizer-state file's step count line (ADAM ``opt_step``, ``"OptStep %ld\\n"``)."""
    return "OptStep %d\n" % step


def ascii_chunks(in_dims, records, version: str = "1.0", body=None):
    """The ASCII file of validated ``records`` (dialect ``version``) as ``str`` chunks.

    ``body(index, record)``, if given, returns the chunks written in place of the
    learned values (and the blank line after them) of the dense, conv, norm and GRN
    records (``index``: 0-based position in ``records``); default
    :func:`ascii_weight_chunks`."""
    v11 = check_version(version) == "1.1"
    if body is None:
        def body(_index, rec):
            return ascii_weight_chunks(rec)
    yield "%dx%dx%dx%d\n" % tuple(in_dims)
    for index, rec in enumerate(records):
        if isinstance(rec, DenseRecord):
            yield "D%dn%sd%sb%s \n" % (rec.nb_neurons, format_f(rec.dropout),
                                        format_f(rec.bias), rec.activation)
            yield from body(index, rec)
        elif isinstance(rec, ConvRecord):
            head = "C%df%dg" % (rec.nb_filters, rec.nb_groups) if v11 else "C%df" % rec.nb_filters
            yield head + ("%dx%dx%d.%dx%dx%ds%dx%dx%dp%dx%dx%dip%dx%dx%dx%didim%sd%sb%s \n"
                          % (*rec.f_size, *rec.stride, *rec.padding, *rec.int_padding,
                             *rec.in_dims, format_f(rec.dropout), format_f(rec.bias),
                             rec.activation))
            if rec.activation.startswith("YOLO"):
                y = rec.yolo
                yield "%d %d %d %d %d\n" % (y.nb_box, y.nb_class, y.nb_param, y.fit_dim,
                                            y.class_softmax)
                for row in y.priors:
                    yield format_g(row) + "\n"
                for row in y.slopes:
                    yield format_g(row) + "\n"
            yield from body(index, rec)
        elif isinstance(rec, PoolRecord):
            yield ("P%dx%dx%d.%dx%dx%ds%dx%dx%dp%dg_%sd%s %s \n\n"
                   % (*rec.p_size, *rec.stride, *rec.padding, rec.p_global, format_f(rec.dropout),
                      rec.p_type, rec.activation))
        elif isinstance(rec, NormRecord):
            yield "N %s S%d_O%d%s \n" % (rec.normalization, rec.group_size, rec.set_off,
                                         rec.activation)
            yield from body(index, rec)
        elif isinstance(rec, GRNRecord):
            yield "G res_%d %s \n" % (rec.residual, rec.activation)
            yield from body(index, rec)
        elif isinstance(rec, MergeRecord):
            yield "M%dpa%dpb odim%dx%dx%dx%d %s %s \n\n" % (
                rec.prev_a, rec.prev_b, *rec.out_dims, rec.merge_type, rec.activation)
        else:
            yield "L %d %s %s %s %s \n" % (rec.range, format_f(rec.k), format_f(rec.alpha),
                                            format_f(rec.beta), rec.activation)
