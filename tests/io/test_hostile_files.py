"""Hostile and corrupt CIANNA model files: regression tests of the reader's defences.

Every failure must be a CiannaFormatError (a ValueError) naming the file and the record,
raised before anything large is allocated and in time linear in the file size.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from cianna_jax.io import (
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    LRNRecord,
    NormRecord,
    read_network,
    write_network,
)
from cianna_jax.io.binary_format import binary_chunks
from cianna_jax.io.records import MAX_DIM

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
YOLO_BIN = GOLDEN / "yolo_a1_2d_c0_p0_giou" / "net_bin.dat"

# byte offsets of fields after a record's type byte (cianna_api.md 11.4)
CONV = {"nb_filters": 1, "f_size": 5, "stride": 17, "padding": 29, "int_padding": 41,
        "in_dims": 53, "dropout": 69, "activation": 77, "yolo": 117}
DENSE = {"nb_neurons": 1, "dropout": 5, "bias": 9, "activation": 13}
POOL = {"p_size": 1, "stride": 13, "padding": 25, "p_global": 37, "dropout": 41, "p_type": 45}
NORM = {"normalization": 1, "group_size": 41, "set_off": 45}


def record_offsets(path: Path) -> list[int]:
    """Offset of each record's type byte in a binary file written without separators."""
    cf = read_network(path, True)
    out, pos = [], 16
    for rec in cf.records:
        out.append(pos)
        pos += sum(len(c) for c in binary_chunks(cf.in_dims, [rec])) - 16
    assert pos == path.stat().st_size
    return out


def patched(tmp_path, src: Path, edits, name="bad.dat") -> Path:
    """A copy of ``src`` with ``edits`` [(offset, struct format, value)] applied."""
    data = bytearray(src.read_bytes())
    for off, fmt, value in edits:
        if isinstance(value, bytes):
            data[off:off + len(value)] = value
        else:
            struct.pack_into("<" + fmt, data, off, value)
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def ascii_with(tmp_path, case: str, old: str, new: str, name="bad.dat", count=1) -> Path:
    text = (GOLDEN / case / "net_ascii.dat").read_text()
    assert old in text
    p = tmp_path / name
    p.write_text(text.replace(old, new, count))
    return p


def refused(path, binary, match=None, **kw) -> CiannaFormatError:
    """The CiannaFormatError of reading ``path``; checks that it names the file."""
    with pytest.raises(CiannaFormatError, match=match) as e:
        read_network(path, binary, **kw)
    assert type(e.value) is CiannaFormatError and e.value.path == str(path)
    assert str(path) in str(e.value)
    return e.value


def load_refused(path, binary, match=None, **kw) -> CiannaFormatError:
    from cianna_jax.io.network_file import load_network

    with pytest.raises(CiannaFormatError, match=match) as e:
        load_network(path, binary=binary, **kw)
    assert type(e.value) is CiannaFormatError and str(path) in str(e.value)
    return e.value


# --------------------------------------------------------------------------------------------
# 1. declared counts are checked before anything is allocated
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("nb_param", 1 << 30), ("nb_class", (1 << 31) - 1), ("nb_box", 1 << 30), ("nb_box", 0),
    ("nb_param", -1), ("nb_param", 1),  # in range, but 2*(8+0+1) != the 16 filters
])
def test_yolo_counts_are_checked_before_allocating(tmp_path, field, value):
    """Defect 1: nb_param = 2**30 in a 3.7 KB file made load() allocate tens of GB."""
    yolo = record_offsets(YOLO_BIN)[-1] + CONV["yolo"]
    i = ("nb_box", "nb_class", "nb_param").index(field)
    p = patched(tmp_path, YOLO_BIN, [(yolo + 4 * i, "i", value)])
    err = refused(p, True, match=field if value != 1 else "16")
    assert err.record == 5
    load_refused(p, True)


@pytest.mark.parametrize("value", ["1073741824", "-1", "3"])
def test_yolo_counts_ascii(tmp_path, value):
    p = ascii_with(tmp_path, "yolo_a1_2d_c0_p0_giou", "YOLO \n2 0 0 2 0\n",
                   f"YOLO \n2 0 {value} 2 0\n")
    refused(p, False, match="record 5 \\(conv\\).*nb_param")


@pytest.mark.parametrize("edit", [
    ("dense", "nb_neurons", (1 << 31) - 1), ("dense", "nb_neurons", MAX_DIM),
    ("conv", "nb_filters", 1 << 30), ("conv", "f_size", 1_000_000), ("conv", "in_dims", -7),
])
def test_declared_sizes_are_checked_against_bounds_and_bytes_left(tmp_path, edit):
    kind, field, value = edit
    case = "dense_only" if kind == "dense" else "conv_pad_stride"
    src = GOLDEN / case / "net_bin.dat"
    off = record_offsets(src)[0] + (DENSE if kind == "dense" else CONV)[field]
    err = refused(patched(tmp_path, src, [(off, "i", value)]), True)
    assert err.record == 1


@pytest.mark.parametrize("dims", [(1 << 20, 1 << 20, 1 << 20, 1), (0, 8, 1, 1), (8, 8, 1, -1),
                                  ((1 << 31) - 1, 1, 1, 1), (65536, 65536, 1, 1)])
def test_header_dimensions_are_bounded(tmp_path, dims):
    src = GOLDEN / "dense_only" / "net_bin.dat"
    p = patched(tmp_path, src, [(4 * i, "i", d) for i, d in enumerate(dims)])
    err = refused(p, True, match="input dimensions")
    assert err.record is None
    text = (GOLDEN / "dense_only" / "net_ascii.dat").read_text()
    p.write_text("x".join(map(str, dims)) + "\n" + text.split("\n", 1)[1])
    refused(p, False, match="header")


# --------------------------------------------------------------------------------------------
# 2 and 6. linear-time parsing of long lines and digit runs; int fields beyond int32
# --------------------------------------------------------------------------------------------

DIGITS = "7" * 50_000  # quadratic backtracking took minutes on this, int() raised ValueError


@pytest.mark.parametrize("case,old,new", [
    ("dense_only", "8x8x1x1\n", DIGITS + "x8x1x1\n"),
    ("dense_only", "8x8x1x1\n", "8x8x1x1" + DIGITS + "\n"),
    ("dense_only", "D32n", "D" + DIGITS + "n"),
    ("dense_only", "D32n0.000000d", "D32n0." + DIGITS + "d"),
    ("dense_only", "D32n0.000000d", "D32n" + DIGITS + "d"),
    ("dense_only", "D32n0.000000d0.100000bRELU_S800.00_L0.05 \n", "D32n" + DIGITS + "\n"),
    ("dense_only", "D32n0.000000d0.100000bRELU_S800.00_L0.05 \n", "D32n0." + DIGITS + "\n"),
    ("dense_only", "d0.100000bRELU", "d0.1" + DIGITS + "bRELU"),
    ("dense_only", "bRELU_S800.00_L0.05 ", "bRELU_S" + DIGITS + " "),
    ("conv_pad_stride", "C6f3x3x1.1x1x1s1x1x0p", "C6f3x3x1.1x1x1s" + DIGITS + "x1x0p"),
    ("conv_pad_stride", "C6f3x3x1", "C6f" + DIGITS + "x3x1"),
    ("conv_pad_stride", "0.000000d0.100000bRELU_S800.00_L0.05 \n", "0.0" + DIGITS + "\n"),
    ("pool_avg", "P2x2x1.2x2x1s0x0x0p0g_", "P2x2x1.2x2x1s0x0x0p" + DIGITS + "g_"),
    ("pool_avg", "p0g_0.000000dAVG", "p0g_" + DIGITS + "dAVG"),
    ("norm_gn", "N GN S2_O0LIN", "N GN S" + DIGITS + "_O0LIN"),
    ("norm_gn", "N GN S2_O0LIN", "N GN S2_O" + DIGITS + "LIN"),
    ("norm_gn", "N GN S2_O0LIN", "N GN S2_O0" + DIGITS + "LIN"),
], ids=lambda v: v if len(v) < 30 else f"<{len(v)} chars>")
def test_long_digit_runs_in_lines_are_refused(tmp_path, case, old, new):
    """Defects 2 and 6: 10,000 digits took 4 s (quadratic regex backtracking); more than
    4300 digits raised a bare ValueError naming no file."""
    refused(ascii_with(tmp_path, case, old, new), False)


def test_megabyte_lines_and_tokens_are_refused(tmp_path):
    mb = "1" * (1 << 20)
    p = tmp_path / "long.dat"
    p.write_text(mb + "\n")
    refused(p, False, match="header.*at most 4096")
    p.write_text("8x8x1x1 " + " " * (1 << 20) + "\n")
    refused(p, False, match="header.*at most 4096")
    p.write_text("8x8x1x1\nD" + mb + "n0.0d0.1bLIN \n")
    refused(p, False, match="record 1 \\(dense\\).*at most 4096")
    # a megabyte number among the learned values
    text = (GOLDEN / "dense_only" / "net_ascii.dat").read_text()
    lines = text.split("\n")
    lines[3] = mb + lines[3]
    p.write_text("\n".join(lines))
    refused(p, False, match="record 1 \\(dense\\).*characters")
    lines[3] = "0" * 5000 + "1" + lines[3][len(mb):]
    p.write_text("\n".join(lines))
    refused(p, False, match="record 1 \\(dense\\).*characters")


def test_integers_beyond_int32_are_format_errors(tmp_path):
    """Defect 6 and 4: 2**64 + 1 loaded from ASCII, then failed on save (struct.error)."""
    big = str(2 ** 64 + 1)
    p = ascii_with(tmp_path, "conv_pad_stride", "C6f3x3x1.1x1x1s1x1x0p", f"C6f3x3x1.1x1x1s{big}x1x0p")
    err = refused(p, False, match="int32|integer")
    assert err.record == 1 and "line 2" in str(err)
    p = ascii_with(tmp_path, "conv_pad_stride", "20x12x1x3\n", "20x12x1x" + "9" * 5000 + "\n")
    refused(p, False, match="header")
    p = ascii_with(tmp_path, "yolo_a1_2d_c0_p0_giou", "YOLO \n2 0 0 2 0\n",
                   "YOLO \n2 0 0 2 " + "1" * 5000 + "\n")
    refused(p, False, match="record 5")


def test_long_string_fields_are_refused(tmp_path):
    p = ascii_with(tmp_path, "dense_only", "bSMAX \n", "bSMAX" + "X" * 100 + " \n")
    refused(p, False, match="record 3 \\(dense\\).*activation.*longer than 39")


# --------------------------------------------------------------------------------------------
# 4. absurd geometry and values the builders refuse
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [("padding", 1_000_000), ("padding", (1 << 31) - 1),
                                         ("int_padding", 1_000_000), ("padding", -1),
                                         ("stride", 0)])
def test_absurd_conv_geometry_is_refused_by_the_reader(tmp_path, field, value):
    """Defect 4: padding 10**6 loaded, then the forward pass tried to allocate 83 GB."""
    src = GOLDEN / "conv_pad_stride" / "net_bin.dat"
    off = record_offsets(src)[0] + CONV[field]
    err = refused(patched(tmp_path, src, [(off, "i", value)]), True, match=field.split("_")[-1])
    assert err.record == 1


@pytest.mark.parametrize("value", [1_000_000, 4])
def test_conv_stride_larger_than_filter_is_refused_at_load(tmp_path, value):
    src = GOLDEN / "global_pool_smax" / "net_bin.dat"  # conv, conv, global pool
    off = record_offsets(src)[1] + CONV["stride"]
    p = patched(tmp_path, src, [(off, "i", value), (off + 4, "i", value)])
    assert len(read_network(p, True).records) == 3  # a valid file ...
    err = load_refused(p, True, match="stride")  # ... but not a network conv() builds
    assert err.record == 2


@pytest.mark.parametrize("case,index,field,fmt,value,match", [
    ("dense_only", 0, "dropout", "f", 7.0, "drop_rate"),
    ("dense_only", 1, "dropout", "f", float("nan"), "drop_rate"),
    ("conv_pad_stride", 0, "dropout", "f", -0.5, "drop_rate"),
    ("pool_avg", 1, "dropout", "f", 1.0, "drop_rate"),
    ("pool_avg", 1, "p_type", "", b"XYZ\x00", "p_type"),
    ("norm_gn", 1, "normalization", "", b"BN\x00", "normalization"),
    ("dense_only", 0, "activation", "", b"YOLO\x00", "YOLO"),
    ("dense_only", 0, "activation", "", b"RELUX\x00", "activation"),
])
def test_values_the_builders_refuse_are_refused_at_load(tmp_path, case, index, field, fmt, value,
                                                        match):
    """Defect 4: dropout 7.0 and other values nn.dense/conv/pool/norm refuse loaded fine."""
    src = GOLDEN / case / "net_bin.dat"
    kind = type(read_network(src, True).records[index]).__name__
    table = {"DenseRecord": DENSE, "ConvRecord": CONV, "PoolRecord": POOL, "NormRecord": NORM}
    p = patched(tmp_path, src, [(record_offsets(src)[index] + table[kind][field], fmt, value)])
    err = load_refused(p, True, match=match)
    assert err.record == index + 1


def lrn_file(tmp_path, rng_value: int, binary: bool) -> Path:
    rng = np.random.default_rng(0)
    conv = ConvRecord(2, (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (3, 3, 1, 1), 0.0, 0.1,
                      "RELU", None, rng.standard_normal((2, 2)).astype(np.float32))
    recs = [conv, LRNRecord(3, 1.0, 1.0, 0.5, "LIN"),
            DenseRecord(2, 0.0, 0.1, "LIN", np.zeros((19, 3), np.float32))]
    p = tmp_path / ("lrn.bin" if binary else "lrn.dat")
    write_network(p, (3, 3, 1, 1), recs, binary)
    if binary:
        data = bytearray(p.read_bytes())
        struct.pack_into("<i", data, record_offsets(p)[1] + 1, rng_value)
        p.write_bytes(bytes(data))
    else:
        p.write_text(p.read_text().replace("L 3 ", f"L {rng_value} "))
    return p


@pytest.mark.parametrize("binary", [False, True])
def test_lrn_range_must_be_positive(tmp_path, binary):
    from cianna_jax.io.network_file import load_network

    assert load_network(lrn_file(tmp_path, 3, binary), binary=binary).net.layers[1].range == 3
    for bad in (0, -5):
        err = refused(lrn_file(tmp_path, bad, binary), binary, match="range")
        assert err.record == 2


def test_writer_refuses_what_the_reader_refuses(tmp_path):
    """Never struct.error on save; never write a file the reader would refuse."""
    w = np.zeros((1, 2), np.float32)
    conv = ConvRecord(1, (1, 1, 1), (1, 1, 1), (1 << 31, 0, 0), (0, 0, 0), (1, 1, 1, 1), 0.0,
                      0.1, "LIN", None, w)
    for binary in (False, True):
        with pytest.raises(ValueError, match="padding"):
            write_network(tmp_path / "x.dat", (1, 1, 1, 1), [conv], binary)
        with pytest.raises(ValueError, match="at least one record"):
            write_network(tmp_path / "x.dat", (1, 1, 1, 1), [], binary)
        norm = NormRecord("GN", 1, 0, "LIN", np.ones(1, np.float32), np.zeros(1, np.float32))
        ok = ConvRecord(1, (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1, 1), 0.0, 0.1,
                        "LIN", None, w)
        with pytest.raises(ValueError, match="record 2 \\(norm\\).*last record"):
            write_network(tmp_path / "x.dat", (1, 1, 1, 1), [ok, norm], binary)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# 5. truncation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["norm_gn", "yolo_a1_2d_c0_p0_giou", "pool_avg"])
def test_binary_cut_inside_a_record_or_after_a_non_output_record(tmp_path, case):
    src = GOLDEN / case / "net_bin.dat"
    data = src.read_bytes()
    cf = read_network(src, True)
    offs = record_offsets(src)
    p = tmp_path / "cut.bin"
    for cut in (0, 1, 15, 16):  # inside the header, or a header alone
        p.write_bytes(data[:cut])
        refused(p, True, match="truncated")
    for k, off in enumerate(offs):
        for cut in (off + 1, off + 2, off + 5):  # right after the type byte, in the header
            p.write_bytes(data[:cut])
            assert refused(p, True, match="truncated").record == k + 1
        p.write_bytes(data[:off])  # exactly at a record boundary
        if k and isinstance(cf.records[k - 1], (NormRecord, LRNRecord)):
            refused(p, True, match=f"record {k} \\(norm\\).*truncated")
        elif k:
            assert read_network(p, True).records == cf.records[:k]


def test_ascii_file_must_end_with_the_last_records_newlines(tmp_path):
    """Defect 5: a file cut inside the closing newlines of its last record loaded."""
    for case in ("dense_only", "norm_gn", "pool_avg", "global_pool_smax"):
        text = (GOLDEN / case / "net_ascii.dat").read_text()
        assert text.endswith("\n\n")
        p = tmp_path / "cut.dat"
        n = len(read_network(GOLDEN / case / "net_ascii.dat", False).records)
        for cut, ok in ((0, True), (1, False), (2, False), (3, False)):
            p.write_text(text[:len(text) - cut])
            if ok:
                assert len(read_network(p, False).records) == n
            else:
                refused(p, False, match=f"record {n} .*(truncated|ends)")
        # more spaces and newlines after the last record are fine
        p.write_text(text + " \n\n  \n")
        assert len(read_network(p, False).records) == n
    # header alone, record line cut before its end of line
    p.write_text("8x8x1x1\n")
    refused(p, False, match="no record")
    p.write_text("8x8x1x1\nD4n0.000000d0.100000bLIN ")
    refused(p, False, match="record 1 \\(dense\\).*truncated")
    p.write_text("8x8x1x1\nD")
    refused(p, False, match="record 1 \\(dense\\)")


@pytest.mark.parametrize("binary", [False, True])
def test_more_records_asked_for_than_the_file_holds(tmp_path, binary):
    src = GOLDEN / "conv_pad_stride" / ("net_bin.dat" if binary else "net_ascii.dat")
    assert len(read_network(src, binary, nb_layers=5).records) == 5
    refused(src, binary, match="nb_layers=6 .*only 5 records", nb_layers=6)
    refused(src, binary, match="nb_layers=3 .*skipping 3.*only 5", nb_layers=3,
            nb_skip_layers=3)
    refused(src, binary, match="nb_skip_layers=6", nb_skip_layers=6)
    assert read_network(src, binary, nb_skip_layers=5).records == ()


# --------------------------------------------------------------------------------------------
# 3. every failure of the layer bridge is a CiannaFormatError naming file and record
# --------------------------------------------------------------------------------------------


def test_network_file_errors_name_the_file_and_the_record(tmp_path):
    from cianna_jax.io.network_file import records_to_layers

    src = GOLDEN / "dense_only" / "net_bin.dat"
    p = patched(tmp_path, src, [(record_offsets(src)[1] + DENSE["dropout"], "f", 7.0)])
    err = load_refused(p, True)
    assert err.record == 2 and "(dense)" in str(err) and "7" in str(err)
    assert "0 <= drop_rate < 1" in err.detail  # expected vs found
    recs = read_network(p, True).records
    with pytest.raises(CiannaFormatError) as e:
        records_to_layers(recs, path=p)
    assert e.value.path == str(p) and e.value.record == 2
    # network-level failures (stacking rules) name the file too
    text = (GOLDEN / "dense_only" / "net_ascii.dat").read_text()
    q = tmp_path / "smax.dat"
    q.write_text(text.replace("bLOGI_S6.00_B1.00", "bSMAX"))
    err = load_refused(q, False, match="SMAX")
    assert err.path == str(q)


@pytest.mark.parametrize("binary", [False, True])
def test_number_of_records_is_bounded(tmp_path, binary):
    """A deep file of tiny records once built 500 layers, beyond make_network's recursion."""
    from cianna_jax.io.ascii_format import ascii_chunks
    from cianna_jax.io.network_file import load_network
    from cianna_jax.io.records import MAX_RECORDS

    conv = ConvRecord(1, (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (2, 2, 1, 1), 0.0, 0.1,
                      "LIN", None, np.ones((1, 2), np.float32))
    p = tmp_path / "deep.dat"
    write_network(p, (2, 2, 1, 1), [conv] * MAX_RECORDS, binary)
    assert len(load_network(p, binary=binary).net.layers) == MAX_RECORDS
    chunks = binary_chunks if binary else ascii_chunks
    p.write_bytes(b"".join(c if binary else c.encode() for c in
                           chunks((2, 2, 1, 1), [conv] * (MAX_RECORDS + 1))))
    refused(p, binary, match=f"record {MAX_RECORDS + 1} .*more than {MAX_RECORDS} records")
