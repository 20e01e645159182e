"""Tests of the CIANNA model-file reader/writer (cianna_jax.io.cianna_format).

The golden files were written by the original CIANNA (V-1.0, C_BLAS build).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from cianna_jax.io import (
    CiannaFile,
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    LRNRecord,
    NormRecord,
    PoolRecord,
    YoloRecord,
    ascii_format,
    binary_format,
    output_shape,
    param_shapes,
    propagate_shapes,
    read_network,
    write_network,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

CASES = sorted(
    p.name for p in GOLDEN.iterdir()
    if p.is_dir() and p.name != "yolo_loss" and (p / "net_ascii.dat").exists()
)
# (case, ascii file, binary file) pairs holding the same network
PAIRS = [(c, a, b) for c in CASES for a, b in
         (("net_ascii.dat", "net_bin.dat"), ("trained_net_ascii.dat", "trained_net_bin.dat"))
         if (GOLDEN / c / a).exists()]
BIN_FILES = sorted({(c, b) for c, _, b in PAIRS}
                   | {(c, p.name) for c in CASES for p in (GOLDEN / c).glob("*net*bin.dat")})


def test_golden_cases_found():
    assert {"dense_only", "conv_pad_stride", "global_pool_smax", "norm_gn", "pool_avg",
            "yolo_a1_2d_c0_p0_giou", "yolo_a3_2d_c3_p0_diou_sigmoid"} <= set(CASES)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def hyper(rec):
    """Everything but the learned arrays, for structural comparisons."""
    d = {"type": type(rec).__name__}
    for k, v in vars(rec).items():
        if k in ("weights", "gamma", "beta"):
            d[k + "_shape"] = None if v is None else v.shape
        elif k == "yolo" and v is not None:
            d[k] = (v.nb_box, v.nb_class, v.nb_param, v.fit_dim, v.class_softmax,
                    v.priors.tolist(), v.slopes.tolist())
        else:
            d[k] = v
    return d


def arrays(rec):
    return [getattr(rec, k) for k in ("weights", "gamma", "beta") if getattr(rec, k, None) is not None]


def string_field_spans(data: bytes, cf: CiannaFile):
    """Offsets of the 40-byte string fields of a binary file, from the documented layout
    (cianna_api.md 11.4), written independently of the reader."""
    pos, spans = 16, []
    for rec in cf.records:
        while data[pos] in b" \n":
            pos += 1
        t = chr(data[pos])
        pos += 1
        if t == "D":
            spans.append(pos + 12)
            pos += 12 + 40 + 4 * rec.weights.size
        elif t == "C":
            spans.append(pos + 76)
            pos += 76 + 40
            if rec.yolo is not None:
                pos += 20 + 4 * (3 * rec.yolo.nb_box + 18)
            pos += 4 * rec.weights.size
        elif t == "P":
            spans += [pos + 44, pos + 84]
            pos += 44 + 80
        elif t == "N":
            spans += [pos, pos + 48]
            pos += 88 + 8 * rec.gamma.size
        elif t == "L":
            spans.append(pos + 16)
            pos += 56
    assert pos == len(data)
    return spans


def masked_equal(ours: bytes, golden: bytes, cf: CiannaFile):
    """Equal except for the bytes after the NUL inside 40-byte string fields (uninitialised
    memory in the original). Our writer must put zeros there."""
    assert len(ours) == len(golden)
    a = np.frombuffer(ours, np.uint8).copy()
    b = np.frombuffer(golden, np.uint8).copy()
    for s in string_field_spans(golden, cf):
        nul = golden.index(b"\x00", s)
        assert nul < s + 40
        assert ours[s:nul + 1] == golden[s:nul + 1]
        assert not any(ours[nul + 1:s + 40]), "writer must zero-fill string fields"
        a[nul + 1:s + 40] = 0
        b[nul + 1:s + 40] = 0
    diff = np.nonzero(a != b)[0]
    assert diff.size == 0, f"binary differs at offsets {diff[:10].tolist()}"


def boundaries(tmp_path, in_dims, records, binary):
    """File sizes after the header and after each record (record boundaries)."""
    chunks = binary_format.binary_chunks if binary else ascii_format.ascii_chunks
    return [sum(len(c) for c in chunks(in_dims, records[:k])) for k in range(len(records) + 1)]


def loads_when_cut_after(records, k):
    """Whether a file cut after its k-th record is a valid shorter file: it holds a
    record and ends with an output record (conv, pool, dense)."""
    return k > 0 and not isinstance(records[k - 1], (NormRecord, LRNRecord))


# --------------------------------------------------------------------------------------------
# golden files: ASCII vs binary, re-save
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case,afile,bfile", PAIRS)
def test_golden_ascii_and_binary_agree(case, afile, bfile):
    a = read_network(GOLDEN / case / afile, binary=False)
    b = read_network(GOLDEN / case / bfile, binary=True)
    assert a.in_dims == b.in_dims
    assert a.in_shapes == b.in_shapes
    assert a.nb_skipped == b.nb_skipped == 0
    assert [hyper(r) for r in a.records] == [hyper(r) for r in b.records]
    for ra, rb in zip(a.records, b.records):
        for xa, xb in zip(arrays(ra), arrays(rb)):
            assert xa.dtype == np.float32 and xb.dtype == np.float32
            if afile == "net_ascii.dat":
                # the goldens were rounded to 6 significant digits: both files hold the same floats
                np.testing.assert_array_equal(xa, xb)
            else:
                # trained weights are full float32 in binary, %g (6 digits) in ASCII
                np.testing.assert_allclose(xa, xb, rtol=5.1e-6, atol=1e-30)
    if afile == "net_ascii.dat":
        assert a.records == b.records


@pytest.mark.parametrize("case", CASES)
def test_golden_structure_matches_meta(case):
    meta = json.loads((GOLDEN / case / "meta.json").read_text())
    cf = read_network(GOLDEN / case / "net_bin.dat", binary=True)
    init = meta["init"]
    dims = list(init["in_dim"]) + [1] * (3 - len(init["in_dim"]))
    assert cf.in_dims == (*dims, init["in_nb_ch"])
    layers = meta["layers"]
    assert len(cf.records) == len(layers)
    for rec, layer in zip(cf.records, layers):
        kind, kw = layer if isinstance(layer, list) else ("conv", layer)
        expected_type = {"dense": DenseRecord, "conv": ConvRecord, "pool": PoolRecord,
                         "norm": NormRecord}[kind]
        assert type(rec) is expected_type
        if kind == "dense":
            assert rec.nb_neurons == kw["nb_neurons"]
        elif kind == "conv":
            assert rec.nb_filters == kw["nb_filters"]
            assert list(rec.f_size[:len(kw["f_size"])]) == kw["f_size"]
            assert list(rec.stride[:2]) == kw.get("stride", [1, 1])
            assert list(rec.padding[:2]) == kw.get("padding", [0, 0])
            assert (rec.yolo is not None) == kw["activation"].startswith("YOLO")
        elif kind == "pool":
            assert rec.p_type == kw["p_type"]
            assert rec.p_global == kw.get("p_global", 0)
        elif kind == "norm":
            assert rec.normalization == "GN"
            assert rec.group_size == kw["group_size"]
            assert rec.set_off == kw.get("set_off", 0)
    # conv records store the input shape they were built with
    for rec, ins in zip(cf.records, cf.in_shapes):
        if isinstance(rec, ConvRecord):
            assert rec.in_dims == ins
    # the documented propagation reproduces the in_shapes
    assert propagate_shapes(cf.in_dims, cf.records)[0] == cf.in_shapes


def test_golden_specific_values():
    cf = read_network(GOLDEN / "conv_pad_stride" / "net_ascii.dat", binary=False)
    assert cf.in_shapes == ((20, 12, 1, 3), (20, 12, 1, 6), (10, 6, 1, 8), (4, 6, 1, 5),
                            (16, 1, 1, 1))
    c3 = cf.records[2]
    assert (c3.f_size, c3.stride, c3.padding, c3.activation) == (
        (4, 5, 1), (2, 1, 1), (0, 2, 0), "RELU_S6.00_L0.10")
    d1 = cf.records[3]
    assert d1.weights.shape == (4 * 6 * 5 + 1, 17)
    assert d1.bias == -1.0 and d1.activation == "LOGI_S6.00_B1.00"
    assert cf.records[0].bias == pytest.approx(0.1)

    g = read_network(GOLDEN / "global_pool_smax" / "net_bin.dat", binary=True)
    pool = g.records[2]
    assert (pool.p_size, pool.p_global, pool.p_type, pool.activation) == (
        (10, 10, 1), 1, "AVG", "SMAX")

    n = read_network(GOLDEN / "norm_gn" / "net_bin.dat", binary=True)
    assert n.records[1].gamma.shape == (4,) and n.records[4].gamma.shape == (2,)
    assert n.records[4].set_off == 1

    y = read_network(GOLDEN / "yolo_a3_2d_c3_p0_diou_sigmoid" / "net_bin.dat", binary=True)
    yr = y.records[-1]
    # the binary activation field holds "YOLO\0" followed by garbage: we stop at the NUL
    assert yr.activation == "YOLO"
    assert (yr.yolo.nb_box, yr.yolo.nb_class, yr.yolo.nb_param, yr.yolo.fit_dim,
            yr.yolo.class_softmax) == (2, 3, 0, 2, 0)
    np.testing.assert_array_equal(yr.yolo.priors, [[8, 20], [8, 10], [0, 0]])
    np.testing.assert_array_equal(
        yr.yolo.slopes,
        np.array([[1, 6, -6], [1, 1.6, -1.6], [1, 6, -6], [1, 6, -6], [1, 6, -6], [1, 1.2, -0.2]],
                 dtype=np.float32))
    assert yr.weights.shape == (22, 13)
    # the ASCII YOLO file, which the original cannot reload, is read completely here
    ya = read_network(GOLDEN / "yolo_a3_2d_c3_p0_diou_sigmoid" / "net_ascii.dat", binary=False)
    assert ya.records == y.records


@pytest.mark.parametrize("case,afile,bfile", PAIRS)
def test_ascii_resave_is_byte_identical(case, afile, bfile, tmp_path):
    src = GOLDEN / case / afile
    cf = read_network(src, binary=False)
    out = tmp_path / "resave.dat"
    write_network(out, cf.in_dims, cf.records, False)
    assert out.read_bytes() == src.read_bytes()
    # and through the CiannaFile form of the call
    write_network(out, cf, binary=False)
    assert out.read_bytes() == src.read_bytes()
    assert read_network(out, binary=False) == cf


@pytest.mark.parametrize("case,bfile", BIN_FILES)
def test_binary_resave_matches_golden(case, bfile, tmp_path):
    src = GOLDEN / case / bfile
    cf = read_network(src, binary=True)
    out = tmp_path / "resave.bin"
    write_network(out, cf, True)
    masked_equal(out.read_bytes(), src.read_bytes(), cf)
    assert read_network(out, binary=True) == cf


@pytest.mark.parametrize("case", CASES)
def test_cross_format_round_trip(case, tmp_path):
    """binary -> ASCII -> binary keeps the (6-digit) golden weights exactly."""
    b = read_network(GOLDEN / case / "net_bin.dat", binary=True)
    write_network(tmp_path / "a.dat", b, binary=False)
    assert (tmp_path / "a.dat").read_bytes() == (GOLDEN / case / "net_ascii.dat").read_bytes()
    a = read_network(tmp_path / "a.dat", binary=False)
    write_network(tmp_path / "b.bin", a, binary=True)
    assert read_network(tmp_path / "b.bin", binary=True) == b


# --------------------------------------------------------------------------------------------
# synthetic records: every record type, both formats
# --------------------------------------------------------------------------------------------


def rng_w(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def synthetic_network():
    rng = np.random.default_rng(1234)
    in_dims = (5, 6, 3, 2)
    recs = []
    # 3D conv with int_padding and anisotropic everything
    c1 = ConvRecord(4, (3, 2, 2), (1, 2, 1), (1, 0, 1), (1, 0, 2), in_dims, 0.0, 0.1,
                    "RELU_S800.00_L0.05", None, None)
    out = output_shape(c1, in_dims)
    assert out == ((5 + 4 * 1 + 2 - 3) // 1 + 1, (6 + 0 - 2) // 2 + 1, (3 + 2 * 2 + 2 - 2) + 1, 4)
    c1 = ConvRecord(**{**vars(c1), "weights": rng_w(rng, param_shapes(c1, in_dims)["weights"])})
    recs.append(c1)
    # norm with set_off (ceil(4/3) = 2 groups)
    n1 = NormRecord("GN", 3, 1, "LIN", rng_w(rng, 2), rng_w(rng, 2))
    recs.append(n1)
    # LRN
    recs.append(LRNRecord(5, 2.0, 1e-4, 0.75, "LIN"))
    # pool, non-global, with padding
    p1 = PoolRecord((2, 2, 2), (2, 2, 1), (1, 0, 0), 0, 0.0, "MAX", "LIN")
    recs.append(p1)
    s = output_shape(p1, output_shape(c1, in_dims))
    # dense after pool
    d1 = DenseRecord(12, 0.25, -1.0, "LOGI_S6.00_B1.00", rng_w(rng, (int(np.prod(s)) + 1, 13)))
    recs.append(d1)
    # conv after dense: reads its saved in_dims (12 values = 2x3x1x2)
    c2 = ConvRecord(3, (2, 2, 1), (1, 1, 1), (0, 1, 0), (0, 0, 0), (2, 3, 1, 2), 0.0, 0.5,
                    "RELU_S800.00_L0.05", None, rng_w(rng, (3, 2 * 2 * 1 * 2 + 1)))
    recs.append(c2)
    # global pool with SMAX
    recs.append(PoolRecord((2, 4, 1), (2, 4, 1), (0, 0, 0), 1, 0.0, "AVG", "SMAX"))
    # YOLO conv (1x1)
    yolo = YoloRecord(2, 1, 1, 2, 1, np.array([[8, 16.5], [8, 12.25], [0, 0]], np.float32),
                      np.array([[1, 6, -6], [1, 1.6, -1.6], [1, 6, -6], [1, 6, -6], [1, 6, -6],
                                [1, 1.2, -0.2]], np.float32))
    recs.append(ConvRecord(20, (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1, 3), 0.0,
                           0.5, "YOLO", yolo, rng_w(rng, (20, 4))))
    # dense at the end
    recs.append(DenseRecord(3, 0.0, 0.1, "SMAX", rng_w(rng, (21, 4))))
    return in_dims, tuple(recs)


def ascii_rounded(recs):
    """What an ASCII save keeps of the weights: C's %g (6 significant digits)."""
    def r(a):
        return None if a is None else np.array(
            [float("%g" % v) for v in a.ravel().tolist()], np.float32).reshape(a.shape)
    out = []
    for rec in recs:
        kw = dict(vars(rec))
        for k in ("weights", "gamma", "beta"):
            if isinstance(kw.get(k), np.ndarray):
                kw[k] = r(kw[k])
        out.append(type(rec)(**kw))
    return tuple(out)


@pytest.mark.parametrize("binary", [False, True])
def test_synthetic_round_trip(binary, tmp_path):
    in_dims, recs = synthetic_network()
    p = tmp_path / "net.dat"
    write_network(p, in_dims, recs, binary)
    cf = read_network(p, binary=binary)
    assert cf.in_dims == in_dims
    assert cf.in_shapes == propagate_shapes(in_dims, recs)[0]
    assert cf.in_shapes[5] == (2, 3, 1, 2)  # conv after dense uses its saved in_dims
    expected = recs if binary else ascii_rounded(recs)
    assert cf.records == expected
    # writing again what was read gives the same bytes
    p2 = tmp_path / "net2.dat"
    write_network(p2, cf, binary)
    assert p2.read_bytes() == p.read_bytes()


def test_synthetic_ascii_layout(tmp_path):
    in_dims, recs = synthetic_network()
    p = tmp_path / "net.dat"
    write_network(p, in_dims, recs, False)
    lines = p.read_text().split("\n")
    assert lines[0] == "5x6x3x2"
    assert lines[1] == "C4f3x2x2.1x2x1s1x0x1p1x0x2ip5x6x3x2idim0.000000d0.100000bRELU_S800.00_L0.05 "
    i = lines.index("N GN S3_O1LIN ")
    assert lines[i - 1] == ""
    assert len(lines[i + 1].split()) == 2 and lines[i + 1].endswith(" ")
    assert lines[i + 3] == ""
    assert lines[i + 4] == "L 5 2.000000 0.000100 0.750000 LIN "
    assert lines[i + 5] == "P2x2x2.2x2x1s1x0x0p0g_0.000000dMAX LIN "
    assert lines[i + 6] == ""
    assert lines[i + 7].startswith("D12n0.250000d-1.000000bLOGI_S6.00_B1.00 ")
    j = lines.index("C20f1x1x1.1x1x1s0x0x0p0x0x0ip1x1x1x3idim0.000000d0.500000bYOLO ")
    assert lines[j + 1:j + 11] == ["2 1 1 2 1", "8 16.5 ", "8 12.25 ", "0 0 ", "1 6 -6 ",
                                   "1 1.6 -1.6 ", "1 6 -6 ", "1 6 -6 ", "1 6 -6 ", "1 1.2 -0.2 "]
    assert len(lines[j + 11].split(" ")) == 5  # 4 values + trailing space
    assert p.read_text().endswith(" \n\n")


def test_synthetic_binary_layout(tmp_path):
    in_dims, recs = synthetic_network()
    p = tmp_path / "net.bin"
    write_network(p, in_dims, recs, True)
    data = p.read_bytes()
    assert struct.unpack("<4i", data[:16]) == in_dims
    assert data[16:17] == b"C"
    assert struct.unpack("<17i", data[17:85]) == (4, 3, 2, 2, 1, 2, 1, 1, 0, 1, 1, 0, 2, 5, 6, 3, 2)
    assert data[93:133] == b"RELU_S800.00_L0.05".ljust(40, b"\x00")
    cf = read_network(p, binary=True)
    string_field_spans(data, cf)  # the documented layout accounts for every byte


def test_ascii_values_lossy_but_stable(tmp_path):
    """%g keeps 6 digits; a second ASCII round trip is a fixed point. Special values survive."""
    vals = np.array([[1 / 3, -2.5e-7, 123456.789, 1e-40, 3.4e38, 0.0, -0.0, np.inf, -np.inf,
                      np.nan, 1e-45, np.copysign(np.nan, -1)]], np.float32)
    vals = np.vstack([vals, vals[:, ::-1]])
    rec = DenseRecord(11, 0.0, 0.1, "LIN", vals)
    p = tmp_path / "a.dat"
    write_network(p, (1, 1, 1, 1), [rec], False)
    back = read_network(p, binary=False).records[0].weights
    expected = np.array([[float("%g" % v) for v in row] for row in vals.tolist()], np.float32)
    np.testing.assert_array_equal(back, expected)
    assert np.signbit(back[0, 6]) and np.isnan(back[0, 9])
    assert np.isnan(back[0, 11]) and np.signbit(back[0, 11])  # C prints "-nan"
    assert "-nan" in p.read_text()
    p2 = tmp_path / "b.dat"
    write_network(p2, (1, 1, 1, 1), read_network(p, binary=False).records, False)
    assert p2.read_bytes() == p.read_bytes()
    # binary keeps every bit
    write_network(p, (1, 1, 1, 1), [rec], True)
    back = read_network(p, binary=True).records[0].weights
    np.testing.assert_array_equal(back.view(np.uint32), vals.view(np.uint32))


def test_ascii_decimal_to_float32_is_correctly_rounded(tmp_path):
    """Going through float64 would round these decimals wrongly (double rounding)."""
    mid = "1.000000059604644775390625"  # exactly halfway between float32 1 and 1+2^-23
    above = mid + "00000000001"
    below = "1.00000005960464477539062499999"
    text = "2x1x1x1\nD1n0.000000d0.000000bLIN \n%s %s \n%s 0 \n0 0 \n\n" % (above, below, mid)
    p = tmp_path / "r.dat"
    p.write_text(text)
    w = read_network(p, binary=False).records[0].weights
    up = np.nextafter(np.float32(1), np.float32(2))
    assert w[0, 0] == up  # true value above the midpoint
    assert w[0, 1] == np.float32(1)
    assert w[1, 0] == np.float32(1)  # exact tie -> even


# --------------------------------------------------------------------------------------------
# nb_layers / nb_skip_layers / input_shape
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("binary", [False, True])
def test_skip_and_limit(case, binary):
    path = GOLDEN / case / ("net_bin.dat" if binary else "net_ascii.dat")
    full = read_network(path, binary)
    n = len(full.records)
    for k in range(n + 1):
        cf = read_network(path, binary, nb_skip_layers=k)
        assert cf.nb_skipped == k
        assert cf.records == full.records[k:]
        assert cf.in_shapes == full.in_shapes[k:]
        assert cf.in_dims == full.in_dims
        for m in range(1, n - k + 1):
            cf = read_network(path, binary, nb_skip_layers=k, nb_layers=m)
            assert cf.records == full.records[k:k + m]
        # asking for more records than the file holds is refused (truncated file?)
        with pytest.raises(CiannaFormatError, match=f"nb_layers={n - k + 1} .*only {n} records"):
            read_network(path, binary, nb_skip_layers=k, nb_layers=n - k + 1)
    with pytest.raises(CiannaFormatError, match=f"nb_skip_layers={n + 1} .*only {n} records"):
        read_network(path, binary, nb_skip_layers=n + 1)
    assert read_network(path, binary, nb_skip_layers=-3) == full
    assert read_network(path, binary, nb_layers=0) == full
    with pytest.raises(ValueError, match="nb_layers"):
        read_network(path, binary, nb_layers=-1)


def test_skip_then_write_and_reload(tmp_path):
    path = GOLDEN / "norm_gn" / "net_bin.dat"
    full = read_network(path, True)
    for k in range(1, len(full.records)):
        head = read_network(path, True, nb_skip_layers=k)
        out = tmp_path / f"head{k}.bin"
        write_network(out, head, True)  # header = shape the first kept record connects to
        back = read_network(out, True)
        assert back.in_dims == full.in_shapes[k]
        assert back.records == full.records[k:]


def test_input_shape_checks():
    dense = GOLDEN / "dense_only" / "net_ascii.dat"
    full = read_network(dense, False)
    # same number of values, other layout: accepted for a dense record
    cf = read_network(dense, False, input_shape=(64, 1, 1, 1))
    assert cf.records == full.records and cf.in_shapes[0] == (64, 1, 1, 1)
    with pytest.raises(CiannaFormatError) as e:
        read_network(dense, False, input_shape=(9, 9, 1, 1))
    msg = str(e.value)
    assert "8x8x1x1" in msg and "9x9x1x1" in msg and "record 1" in msg and str(dense) in msg
    # skipping: the third dense expects 16 inputs
    cf = read_network(dense, False, nb_skip_layers=2, input_shape=(4, 4, 1, 1))
    assert cf.records == full.records[2:]
    with pytest.raises(CiannaFormatError, match="record 3"):
        read_network(dense, False, nb_skip_layers=2, input_shape=(4, 5, 1, 1))

    conv = GOLDEN / "conv_pad_stride" / "net_bin.dat"
    with pytest.raises(CiannaFormatError) as e:
        read_network(conv, True, input_shape=(20, 12, 1, 1))
    assert "depth" in str(e.value) and "20x12x1x3" in str(e.value) and "20x12x1x1" in str(e.value)
    with pytest.raises(CiannaFormatError, match="depth"):
        read_network(conv, True, nb_skip_layers=1, input_shape=(20, 12, 1, 5))
    with pytest.raises(ValueError, match="input_shape"):
        read_network(conv, True, input_shape=(20, 12, 3))


@pytest.mark.parametrize("binary", [False, True])
def test_resolution_change_fully_convolutional(binary):
    path = GOLDEN / "global_pool_smax" / ("net_bin.dat" if binary else "net_ascii.dat")
    full = read_network(path, binary)
    cf = read_network(path, binary, input_shape=(24, 16, 1, 1))
    assert cf.in_shapes == ((24, 16, 1, 1), (24, 16, 1, 8), (24, 16, 1, 5))
    assert cf.records == full.records  # stored values do not depend on the resolution
    assert output_shape(cf.records[2], cf.in_shapes[2]) == (1, 1, 1, 5)
    # a head loaded onto a 7x7 feature map with 8 channels
    head = read_network(path, binary, nb_skip_layers=1, input_shape=(7, 7, 1, 8))
    assert head.in_shapes == ((7, 7, 1, 8), (7, 7, 1, 5)) and head.nb_skipped == 1


def test_resolution_change_before_dense_is_reported():
    """A dense record after a resolution change would be misread by the original: we fail."""
    path = GOLDEN / "pool_avg" / "net_ascii.dat"
    with pytest.raises(CiannaFormatError, match="saved with"):
        read_network(path, False, input_shape=(20, 20, 1, 2))
    with pytest.raises(CiannaFormatError):
        read_network(GOLDEN / "pool_avg" / "net_bin.dat", True, input_shape=(20, 20, 1, 2))


@pytest.mark.parametrize("binary", [False, True])
def test_head_starting_with_conv_after_dense(binary, tmp_path):
    in_dims, recs = synthetic_network()
    p = tmp_path / "net.dat"
    write_network(p, in_dims, recs, binary)
    full = read_network(p, binary)
    # record 6 is a conv that followed a dense layer of 12 neurons (saved in_dims 2x3x1x2)
    head = read_network(p, binary, nb_skip_layers=5)
    assert head.in_shapes[0] == (2, 3, 1, 2) and head.records == full.records[5:]
    # attached to a flat vector of 12 values: still read as 2x3x1x2
    head = read_network(p, binary, nb_skip_layers=5, input_shape=(12, 1, 1, 1))
    assert head.in_shapes[0] == (2, 3, 1, 2)
    # attached to a 2-channel feature map of another size
    head = read_network(p, binary, nb_skip_layers=5, input_shape=(4, 6, 1, 2))
    assert head.in_shapes[:2] == ((4, 6, 1, 2), (3, 7, 1, 3))
    with pytest.raises(CiannaFormatError, match="record 6 \\(conv\\).*depth"):
        read_network(p, binary, nb_skip_layers=5, input_shape=(4, 6, 1, 3))


def test_conv_channel_mismatch_in_file(tmp_path):
    # conv record saved for 3 input channels placed after a 2-channel input
    rec = ConvRecord(2, (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (4, 4, 1, 3), 0.0, 0.1, "LIN",
                     None, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="channels"):
        write_network(tmp_path / "x.dat", (4, 4, 1, 2), [rec], False)
    p = tmp_path / "bad.dat"
    p.write_text("4x4x1x2\nC2f1x1x1.1x1x1s0x0x0p0x0x0ip4x4x1x3idim0.000000d0.100000bLIN \n"
                 "0 0 0 0 \n0 0 0 0 \n\n")
    with pytest.raises(CiannaFormatError, match="record 1 \\(conv\\).*channels"):
        read_network(p, False)


# --------------------------------------------------------------------------------------------
# corrupt inputs
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    p = tmp_path / "nope.dat"
    for binary in (False, True):
        with pytest.raises(FileNotFoundError) as e:
            read_network(p, binary)
        assert str(p) in str(e.value)


@pytest.mark.parametrize("case", ["norm_gn", "yolo_a3_2d_c3_p0_diou_sigmoid", "dense_only"])
def test_truncated_binary(case, tmp_path):
    src = GOLDEN / case / "net_bin.dat"
    data = src.read_bytes()
    cf = read_network(src, True)
    bounds = boundaries(tmp_path, cf.in_dims, cf.records, True)
    assert bounds[-1] == len(data)
    cuts = sorted(set(list(range(0, 40)) + list(range(0, len(data), 97))
                      + [b + d for b in bounds for d in (-1, 1, 2, 30, 60)]))
    p = tmp_path / "cut.bin"
    for cut in cuts:
        if cut >= len(data) or cut < 0:
            continue
        p.write_bytes(data[:cut])
        if cut in bounds and loads_when_cut_after(cf.records, bounds.index(cut)):
            got = read_network(p, True)
            assert got.records == cf.records[:bounds.index(cut)]
            continue
        with pytest.raises(CiannaFormatError) as e:
            read_network(p, True)
        msg = str(e.value)
        assert str(p) in msg
        if cut >= 16:
            assert "truncated" in msg and ("record" in msg or "file" in msg)


def test_truncated_ascii(tmp_path):
    src = GOLDEN / "norm_gn" / "net_ascii.dat"
    text = src.read_text()
    cf = read_network(src, False)
    p = tmp_path / "cut.dat"
    # cut in the middle of the weight lines of each record (not inside the very last number)
    for rec_line in ("C8f3x3x1", "N GN S2", "C6f3x3x1", "N GN S3", "D4n"):
        start = text.index(rec_line)
        cut = text.index("\n", text.index("\n", start) + 1) + 3
        p.write_text(text[:cut] + "\n")
        with pytest.raises(CiannaFormatError) as e:
            read_network(p, False)
        assert "ends after" in str(e.value) or "record" in str(e.value)
    # cut exactly between records: a valid shorter network when it ends with an output
    # record (conv, pool, dense), refused after a norm record
    cut = text.index("P2x2x1")
    p.write_text(text[:cut])
    with pytest.raises(CiannaFormatError, match="record 2 \\(norm\\).*truncated"):
        read_network(p, False)
    cut = text.index("C6f3x3x1")
    p.write_text(text[:cut])
    assert read_network(p, False).records == cf.records[:3]


@pytest.mark.parametrize("case", ["dense_only", "norm_gn"])
def test_crlf_line_endings(case, tmp_path):
    text = (GOLDEN / case / "net_ascii.dat").read_text()
    p = tmp_path / "crlf.dat"
    p.write_bytes(text.replace("\n", "\r\n").encode())
    with pytest.raises(CiannaFormatError, match="CRLF") as e:
        read_network(p, False)
    assert str(p) in str(e.value)
    # a single stray \r at the end of a weight line
    lines = text.split("\n")
    lines[3] = lines[3] + "\r"
    p.write_text("\n".join(lines))
    with pytest.raises(CiannaFormatError, match="CRLF"):
        read_network(p, False)
    # a \r between records
    i = text.index("\n\n") + 1
    p.write_text(text[:i] + "\r" + text[i:])
    with pytest.raises(CiannaFormatError, match="record 2.*CRLF"):
        read_network(p, False)


def test_garbage_record_char(tmp_path):
    text = (GOLDEN / "norm_gn" / "net_ascii.dat").read_text()
    i = text.index("P2x2x1")
    p = tmp_path / "g.dat"
    p.write_text(text[:i] + "X" + text[i:])
    with pytest.raises(CiannaFormatError) as e:
        read_network(p, False)
    assert "record 3" in str(e.value) and "'X'" in str(e.value)

    data = (GOLDEN / "norm_gn" / "net_bin.dat").read_bytes()
    for tail in (b"X", b"\x00\x01", b"\t"):
        p.write_bytes(data + tail)
        with pytest.raises(CiannaFormatError, match="record 7"):
            read_network(p, True)
    # spaces and newlines between records are skipped, as by the original
    p.write_bytes(data + b" \n")
    assert read_network(p, True).records == read_network(GOLDEN / "norm_gn" / "net_bin.dat",
                                                         True).records


def test_bad_numbers_in_ascii(tmp_path):
    text = (GOLDEN / "dense_only" / "net_ascii.dat").read_text()
    lines = text.split("\n")
    p = tmp_path / "n.dat"
    # non-numeric token
    bad = lines.copy()
    bad[5] = bad[5].replace(bad[5].split(" ")[3], "abc", 1)
    p.write_text("\n".join(bad))
    with pytest.raises(CiannaFormatError, match="record 1.*'abc'"):
        read_network(p, False)
    # one missing number in the middle of a record
    bad = lines.copy()
    bad[5] = " ".join(bad[5].split(" ")[1:])
    p.write_text("\n".join(bad))
    with pytest.raises(CiannaFormatError, match="record 1"):
        read_network(p, False)
    # one missing number in the last record
    bad = lines.copy()
    j = max(i for i, line in enumerate(bad) if line.strip())
    bad[j] = " ".join(bad[j].split(" ")[1:])
    p.write_text("\n".join(bad))
    with pytest.raises(CiannaFormatError, match="record 3.*ends after"):
        read_network(p, False)
    # malformed record header
    p.write_text(text.replace("D16n0.000000d", "D16n0.0x0000d"))
    with pytest.raises(CiannaFormatError, match="record 2 \\(dense\\)"):
        read_network(p, False)
    # header
    p.write_text("8x8x1\n" + text.split("\n", 1)[1])
    with pytest.raises(CiannaFormatError, match="header"):
        read_network(p, False)
    p.write_text("")
    with pytest.raises(CiannaFormatError, match="empty"):
        read_network(p, False)


def test_wrong_format_flag():
    with pytest.raises(CiannaFormatError, match="binary"):
        read_network(GOLDEN / "dense_only" / "net_bin.dat", False)
    with pytest.raises(CiannaFormatError, match="ASCII"):
        read_network(GOLDEN / "dense_only" / "net_ascii.dat", True)


# --------------------------------------------------------------------------------------------
# writer validation and atomicity
# --------------------------------------------------------------------------------------------


def test_writer_validation(tmp_path):
    in_dims, recs = synthetic_network()
    p = tmp_path / "v.dat"
    bad = list(recs)
    bad[4] = DenseRecord(12, 0.0, 0.1, "LIN", np.zeros((5, 13), np.float32))
    with pytest.raises(ValueError) as e:
        write_network(p, in_dims, bad, True)
    assert "record 5 (dense)" in str(e.value) and "(5, 13)" in str(e.value)
    assert not p.exists()
    bad = list(recs)
    bad[1] = NormRecord("GN", 3, 1, "LIN", np.zeros(3, np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="record 2 \\(norm\\): gamma has shape \\(3,\\), expected \\(2,\\)"):
        write_network(p, in_dims, bad, False)
    bad = list(recs)
    bad[0] = ConvRecord(**{**vars(recs[0]), "weights": None})
    with pytest.raises(ValueError, match="record 1 \\(conv\\): weights is missing"):
        write_network(p, in_dims, bad, False)
    bad = list(recs)
    bad[3] = PoolRecord((2, 2, 2), (2, 2, 1), (1, 0, 0), 0, 0.0, "MAX", "L IN")
    with pytest.raises(ValueError, match="record 4 \\(pool\\)"):
        write_network(p, in_dims, bad, False)
    bad = list(recs)
    y = recs[7].yolo
    bad[7] = ConvRecord(**{**vars(recs[7]), "yolo": YoloRecord(3, 1, 1, 2, 1, y.priors, y.slopes)})
    with pytest.raises(ValueError, match="record 8 \\(conv\\): YOLO priors"):
        write_network(p, in_dims, bad, True)
    with pytest.raises(TypeError):
        write_network(p, in_dims, recs)
    assert not p.exists()
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_existing_file(tmp_path, monkeypatch):
    in_dims, recs = synthetic_network()
    p = tmp_path / "keep.bin"
    write_network(p, in_dims, recs, True)
    before = p.read_bytes()

    def exploding(in_dims, records):
        yield b"\x00" * 10
        raise OSError("disk full")

    monkeypatch.setattr(binary_format, "binary_chunks", exploding)
    with pytest.raises(OSError, match="disk full"):
        write_network(p, in_dims, recs, True)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.bin"]
    with pytest.raises(FileNotFoundError):
        write_network(tmp_path / "no_dir" / "x.bin", in_dims, recs, False)


def test_output_shape_rules():
    conv = ConvRecord(3, (2, 1, 1), (1, 1, 1), (0, 0, 0), (1, 0, 0), (4, 4, 1, 1), 0, 0, "LIN",
                      None, None)
    assert output_shape(conv, (4, 4, 1, 1)) == (6, 4, 1, 3)  # spec example: 4, f 2, ip 1 -> 6
    pool = PoolRecord((4, 4, 1), (2, 2, 1), (1, 1, 0), 0, 0, "AVG", "LIN")
    assert output_shape(pool, (8, 8, 1, 8)) == (4, 4, 1, 8)
    gpool = PoolRecord((2, 2, 1), (2, 2, 1), (0, 0, 0), 1, 0, "AVG", "SMAX")
    assert output_shape(gpool, (13, 7, 3, 5)) == (1, 1, 1, 5)
    norm = NormRecord("GN", 3, 0, "LIN", None, None)
    assert output_shape(norm, (5, 5, 1, 8)) == (5, 5, 1, 8)
    assert param_shapes(norm, (5, 5, 1, 8)) == {"gamma": (3,), "beta": (3,)}
    dense = DenseRecord(7, 0, 0, "LIN", None)
    assert output_shape(dense, (5, 5, 1, 8)) == (7, 1, 1, 1)
    assert param_shapes(dense, (5, 5, 1, 8)) == {"weights": (201, 8)}
    with pytest.raises(ValueError):
        output_shape(ConvRecord(3, (9, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (4, 4, 1, 1), 0, 0,
                                "LIN", None, None), (4, 4, 1, 1))
