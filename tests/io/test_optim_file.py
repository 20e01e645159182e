"""CIANNA V-1.1 optimizer-state files (``save(save_optim=1)``, ``save_optim_every``): golden
files of the original (every optimizer kind, EMA, GRN/norm/merge networks, ASCII and
binary), byte-exact re-writes, round trips and hostile files."""

import json
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

from cianna_jax import nn, optim
from cianna_jax.io import CiannaFormatError
from cianna_jax.io.network_file import load_network
from cianna_jax.io.optim_file import (
    OptimFile,
    is_optimizer_file,
    read_optimizer_file,
    write_optimizer_file,
)
from cianna_jax.network import init_params

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_v11"
FILES = sorted(str(p.relative_to(GOLDEN)) for pattern in
               ("*/optim_save/*.dat", "*/optim_state_*.dat", "*/trained_optim_*.dat")
               for p in GOLDEN.glob(pattern))


def _binary(rel: str) -> bool:
    return (GOLDEN / rel).read_bytes()[9:10] != b"\n"


def _meta(rel: str) -> dict:
    return json.loads((GOLDEN / rel.split("/")[0] / "meta.json").read_text())


def _expected_step(rel: str) -> int:
    """ADAM's per-layer opt_step: 3 batches per iteration (10 examples, batch 4)."""
    name = rel.split("/")[-1]
    if "s0001" in name:
        return 3
    if name.endswith("_resumed.dat") and not rel.startswith("optim_resume_adam_ascii/"):
        return 3  # resumed from a binary file by the original: its step restarted (defect 2)
    return 6


def _walk_binary(data: bytes):
    """Independent walk of a binary optimizer-state file from the spec (cianna_v11.md
    section 2), written without the reader: (offsets of the 40-byte string fields, the
    uint64 steps in file order)."""
    assert data[:9] == b"OptimSave"
    use_wema = struct.unpack_from("<i", data, 9)[0]
    pos = 17
    if data[pos:pos + 7] == b"RMSprop":
        _, mom, _, cent = struct.unpack_from("<fffi", data, pos + 7)
        nb, step, pos = 1 + (mom >= np.float32(0.01)) + (cent > 0), False, pos + 23
    elif data[pos:pos + 4] == b"ADAM":
        ams = struct.unpack_from("<fffi", data, pos + 4)[3]
        nb, step, pos = 2 + (ams > 0), True, pos + 20
    else:
        assert data[pos:pos + 3] == b"SGD"
        mom = struct.unpack_from("<f", data, pos + 3)[0]
        nb, step, pos = int(mom >= np.float32(0.01)), False, pos + 7
    blocks = 1 + use_wema + nb
    channels = struct.unpack_from("<4i", data, pos)[3]
    pos += 16
    spans, steps = [], []

    def state(n):  # FP32 weights, EMA, [uint64 step], optimizer buffers
        nonlocal pos
        pos += 4 * n * (1 + use_wema)
        if step:
            steps.append(struct.unpack_from("<Q", data, pos)[0])
            pos += 8
        pos += 4 * n * nb

    while pos < len(data):
        t = chr(data[pos])
        pos += 1
        if t == "C":
            head = struct.unpack_from("<5i", data, pos)
            n_f, groups, f = head[0], head[1], head[2:5]
            spans.append(pos + 80)
            pos += 120
            state(n_f * (int(np.prod(f)) * channels // groups + 1))
            channels = n_f
        elif t == "N":
            spans += [pos, pos + 48]
            pos += 88
            state(2 * channels)
        elif t == "G":
            spans.append(pos + 4)
            pos += 44
            state(2 * channels)
        elif t == "M":
            channels = struct.unpack_from("<4i", data, pos + 8)[3]
            spans += [pos + 24, pos + 64]
            pos += 104
        elif t == "D":  # the output layer, last in these files
            n = struct.unpack_from("<i", data, pos)[0]
            spans.append(pos + 12)
            pos += 52
            rest = len(data) - pos - 8 * step
            assert rest % (4 * (n + 1) * blocks) == 0
            state(rest // (4 * (n + 1) * blocks) * (n + 1))
        else:
            raise AssertionError(f"unexpected record {t!r} at {pos - 1}")
    assert pos == len(data)
    return spans, steps


def _masked_equal(ours: bytes, golden: bytes):
    """Equal except after the NUL of the 40-byte string fields (uninitialised memory in
    the original; our writer zero-fills)."""
    assert len(ours) == len(golden)
    a, b = bytearray(ours), bytearray(golden)
    for s in _walk_binary(golden)[0]:
        nul = golden.index(b"\x00", s)
        assert nul < s + 40 and ours[s:nul + 1] == golden[s:nul + 1]
        assert not any(ours[nul + 1:s + 40]), "the writer must zero-fill string fields"
        a[nul + 1:s + 40] = b[nul + 1:s + 40] = bytes(s + 40 - nul - 1)
    assert a == b


def _state(o: OptimFile):
    """The lead's resume path: optimizer for the file's config, init, buffers set."""
    tx = optim.make_v11_optimizer(o.config, use_wema=o.use_wema, wema_rate=o.wema_rate)
    return optim.set_optimizer_buffers(o.config, tx.init(o.params), o.buffers)


def _write(path, o: OptimFile, binary: bool):
    write_optimizer_file(path, o.net, o.params, o.config, _state(o), use_wema=o.use_wema,
                         wema_rate=o.wema_rate, binary=binary)


def _same_tree(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, int):
        return a == b
    return np.array_equal(np.asarray(a), np.asarray(b))


def _same(o1: OptimFile, o2: OptimFile) -> bool:
    return (o1.use_wema == o2.use_wema and o1.wema_rate == o2.wema_rate
            and o1.config == o2.config and o1.net == o2.net
            and all(_same_tree(a, b) for a, b in zip(o1.params, o2.params))
            and len(o1.buffers) == len(o2.buffers)
            and all(_same_tree(a, b) for a, b in zip(o1.buffers, o2.buffers)))


# --------------------------------------------------------------------------------------------
# Golden files
# --------------------------------------------------------------------------------------------


def test_golden_set_covers_every_kind():
    kinds = {read_optimizer_file(GOLDEN / f, _binary(f)).config.kind for f in FILES}
    assert kinds == {"SGD", "ADAM", "RMSprop"}
    assert sum(_binary(f) for f in FILES) and sum(not _binary(f) for f in FILES)


@pytest.mark.parametrize("rel", FILES)
def test_golden_read(rel):
    binary = _binary(rel)
    o = read_optimizer_file(GOLDEN / rel, binary)
    meta = _meta(rel)
    assert o.config == optim.parse_optimizer(meta["init"]["optimizer"])
    assert o.use_wema == bool(meta["init"]["wema"])
    assert o.wema_rate == (np.float32(meta["train"]["wema_rate"]) if o.use_wema else 0.0)
    assert [layer.kind for layer in o.net.layers] == [k for k, _ in meta["layers"]]
    assert o.net.in_dims == (6, 6, 1, 2) and o.net.input_bias == pytest.approx(0.1)
    names = (("ema",) if o.use_wema else ()) + o.config.buffer_names
    for p, b in zip(o.params, o.buffers):
        assert set(b) == (set(names) if p else set())
        for name in names:
            if name == "opt_step":
                assert b[name] == _expected_step(rel)
            elif p:
                assert {k: v.shape for k, v in b[name].items()} == \
                    {k: np.shape(v) for k, v in p.items()}
                assert all(v.dtype == np.float32 for v in b[name].values())
    if binary and o.config.kind == "ADAM":  # the uint64 steps, found independently
        steps = _walk_binary((GOLDEN / rel).read_bytes())[1]
        assert steps == [_expected_step(rel)] * sum(bool(p) for p in o.params)


@pytest.mark.parametrize("rel", [f for f in FILES if "trained_optim" in f])
def test_golden_weights_match_regular_saves(rel):
    """A regular save holds the EMA when wema=1, else the FP32 weights: the optimizer file's
    FP32 block (or its EMA block) equals the regular save made at the same point."""
    binary = _binary(rel)
    o = read_optimizer_file(GOLDEN / rel, binary)
    net_file = GOLDEN / rel.replace("trained_optim", "trained_net")
    saved = load_network(net_file, binary=binary, version="1.1")
    assert saved.net == o.net
    want = [b["ema"] if o.use_wema and p else p for b, p in zip(o.buffers, o.params)]
    assert all(_same_tree(w, s) for w, s in zip(want, saved.params))
    if o.use_wema:  # the EMA differs from the training weights
        assert not _same_tree(o.params[0], saved.params[0])


def test_golden_sizes_and_resume_files():
    d = GOLDEN / "optim_resume_adam_bin"
    data = (d / "optim_save" / "net_optim0_s0001.dat").read_bytes()
    # spec: 9+4+4 + 4+16 (ADAM) + 16 (dims) + conv [1+4*14+40 + 76*4 + 8 + 2*76*4]
    # + dense [1+12+40 + 580*4 + 8 + 2*580*4]  (the V-1.1 conv header has 18 ints)
    assert len(data) == 8115
    assert data[:17] == b"OptimSave" + struct.pack("<if", 0, 0.0)
    assert data[17:21] == b"ADAM"
    assert struct.unpack_from("<fffi", data, 21) == struct.unpack(
        "<fffi", struct.pack("<fffi", 0.9, 0.999, 1e-8, 0))
    assert (d / "optim_state_s0001_bin.dat").read_bytes() == data
    s1 = read_optimizer_file(d / "optim_save" / "net_optim0_s0001.dat", True)
    s2 = read_optimizer_file(d / "optim_save" / "net_optim0_s0002.dat", True)
    assert [b["opt_step"] for b in s1.buffers] == [3, 3]
    assert [b["opt_step"] for b in s2.buffers] == [6, 6]
    # the same training saved in ASCII by the ASCII case holds the same state
    a1 = read_optimizer_file(GOLDEN / "optim_resume_adam_ascii" / "optim_state_s0001_ascii.dat",
                             False)
    for pa, pb in zip(a1.params, s1.params):
        for k in pa:
            np.testing.assert_allclose(pa[k], pb[k], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("rel", FILES)
def test_golden_rewrite_is_exact(rel, tmp_path):
    """Writing what was read gives the original's file: byte for byte in binary (string
    fields masked after their NUL), and in ASCII byte for byte but for the newline we add
    after the SGD line."""
    binary = _binary(rel)
    golden = (GOLDEN / rel).read_bytes()
    o = read_optimizer_file(GOLDEN / rel, binary)
    out = tmp_path / "out.dat"
    _write(out, o, binary)
    ours = out.read_bytes()
    if binary:
        _masked_equal(ours, golden)
    else:
        if o.config.kind == "SGD":
            line = o.config.header_string().encode()
            assert ours.split(b"\n")[2] == line and golden.split(b"\n")[2].startswith(line)
            assert golden.split(b"\n")[2] == line + ours.split(b"\n")[3]  # the glued dims
            ours = ours.replace(line + b"\n", line, 1)
        assert ours == golden
    assert _same(read_optimizer_file(out, binary), o)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("case", ["wema_adam_grn", "wema_sgd_norm_0999", "opt_adam_amsgrad",
                                  "merge_add_residual", "opt_rmsprop"])
def test_round_trip(case, binary, tmp_path):
    """write -> read -> write: identical files and identical contents (also across
    formats: what a binary file holds, written in ASCII, reads back to %g precision)."""
    o = read_optimizer_file(GOLDEN / case / "trained_optim_bin.dat", True)
    f1, f2 = tmp_path / "a.dat", tmp_path / "b.dat"
    _write(f1, o, binary)
    assert is_optimizer_file(f1, binary)
    back = read_optimizer_file(f1, binary)
    _write(f2, back, binary)
    assert f1.read_bytes() == f2.read_bytes()
    if binary:
        assert _same(back, o)
    else:
        assert back.config == o.config and back.net == o.net
        for b1, b2 in zip(back.buffers, o.buffers):
            for name, v in b1.items():
                if name == "opt_step":
                    assert v == b2[name]
                else:
                    for k in v:
                        np.testing.assert_allclose(v[k], b2[name][k], rtol=1e-5, atol=0)
    # the lead's resume path gives back the buffers read
    again = optim.optimizer_buffers(back.config, _state(back))
    assert all(_same_tree(a, b) for a, b in zip(again, back.buffers))


def test_sgd_line_written_with_newline(tmp_path):
    o = read_optimizer_file(GOLDEN / "optim_resume_sgd_mom_bin" / "optim_state_s0001_bin.dat",
                            True)
    _write(tmp_path / "s.dat", o, False)
    lines = (tmp_path / "s.dat").read_text().split("\n")
    assert lines[:4] == ["OptimSave", "use_wema 0 wema_rate 0", "SGD_mom0.9", "6x6x1x2"]


def test_is_optimizer_file(tmp_path):
    assert is_optimizer_file(GOLDEN / "opt_adamw" / "trained_optim_bin.dat", True)
    assert is_optimizer_file(GOLDEN / "opt_adamw" / "trained_optim_ascii.dat", False)
    assert not is_optimizer_file(GOLDEN / "opt_adamw" / "trained_net_bin.dat", True)
    assert not is_optimizer_file(GOLDEN / "opt_adamw" / "trained_net_ascii.dat", False)
    assert not is_optimizer_file(tmp_path / "missing.dat", True)
    with pytest.raises(FileNotFoundError):
        read_optimizer_file(tmp_path / "missing.dat", True)
    with pytest.raises(CiannaFormatError, match="not an optimizer-state file"):
        read_optimizer_file(GOLDEN / "opt_adamw" / "trained_net_bin.dat", True)


# --------------------------------------------------------------------------------------------
# The original's ASCII SGD line (no newline: the dims are glued to the momentum)
# --------------------------------------------------------------------------------------------


def _sgd_file(tmp_path, layers, in_dim, in_ch, momentum, name="g.dat"):
    """An ASCII SGD optimizer file of a fresh network, glued as the original writes it."""
    net = nn.network(in_dim, in_ch, layers)
    params = init_params(jax.random.key(0), net)
    config = optim.parse_optimizer(optim.sgd(momentum))
    state = optim.make_v11_optimizer(config).init(params)
    path = tmp_path / name
    write_optimizer_file(path, net, params, config, state, use_wema=False, wema_rate=0,
                         binary=False)
    text = path.read_text()
    line = config.header_string()
    path.write_text(text.replace(line + "\n", line, 1))
    return path, net


@pytest.mark.parametrize("case", ["opt_sgd_nomom_decoupled", "wema_sgd_norm_0999"])
def test_glued_sgd_line_from_the_original(case):
    first = (GOLDEN / case / "trained_optim_ascii.dat").read_text().split("\n")[2]
    assert first in ("SGD_mom06x6x1x2", "SGD_mom0.96x6x1x2")
    o = read_optimizer_file(GOLDEN / case / "trained_optim_ascii.dat", False)
    assert o.net.in_dims == (6, 6, 1, 2)
    assert o.config.momentum == pytest.approx(0.9 if "0.9" in first else 0.0)


def test_glued_sgd_ambiguity(tmp_path):
    # "SGD_mom0.512x12x1x1": 0.5 + 12x12x1x1 or 0.51 + 2x12x1x1; the dense layer's
    # weight count only fits the first
    path, net = _sgd_file(tmp_path, [nn.conv(3, 2, padding=1), nn.dense(3, "LIN")], (12, 12), 1, 0.5)
    assert path.read_text().split("\n")[2] == "SGD_mom0.512x12x1x1"
    o = read_optimizer_file(path, False)
    assert o.config.momentum == np.float32(0.5) and o.net.in_dims == (12, 12, 1, 1)
    # convolutions only: both splits parse; the conv's saved input dims settle it
    path, net = _sgd_file(tmp_path, [nn.conv(3, 2, padding=1)], (12, 12), 1, 0.5, "c.dat")
    o = read_optimizer_file(path, False)
    assert o.config.momentum == np.float32(0.5) and o.net.in_dims == (12, 12, 1, 1)
    # the caller's in_dims decide first
    o = read_optimizer_file(path, False, in_dims=(2, 12, 1, 1))
    assert o.config.momentum == np.float32(0.51) and o.net.in_dims == (2, 12, 1, 1)
    # a pool first: nothing settles it
    path, net = _sgd_file(tmp_path, [nn.pool(2)], (12, 12), 1, 0.5, "p.dat")
    with pytest.raises(CiannaFormatError, match="in_dims"):
        read_optimizer_file(path, False)
    o = read_optimizer_file(path, False, in_dims=(12, 12, 1, 1))
    assert o.config.momentum == np.float32(0.5) and o.buffers == [{}]


# --------------------------------------------------------------------------------------------
# Writer errors
# --------------------------------------------------------------------------------------------


def test_writer_refuses_mismatched_state(tmp_path):
    o = read_optimizer_file(GOLDEN / "wema_adam_grn" / "trained_optim_bin.dat", True)
    st = _state(o)
    out = tmp_path / "x.dat"
    with pytest.raises(ValueError, match="EMA"):
        write_optimizer_file(out, o.net, o.params, o.config, st, use_wema=False,
                             wema_rate=0.9, binary=True)
    with pytest.raises(ValueError, match="lacks|velocity"):
        write_optimizer_file(out, o.net, o.params, optim.parse_optimizer("SGD_mom0.9"), st,
                             use_wema=True, wema_rate=0.9, binary=True)
    with pytest.raises(ValueError, match="wema_rate"):
        write_optimizer_file(out, o.net, o.params, o.config, st, use_wema=True,
                             wema_rate=float("nan"), binary=True)
    with pytest.raises(ValueError, match="wema_rate: expected a finite number <= 1"):
        write_optimizer_file(out, o.net, o.params, o.config, st, use_wema=True,
                             wema_rate=1.01, binary=True)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Hostile files
# --------------------------------------------------------------------------------------------


def _bad(tmp_path, data, binary, match=None):
    path = tmp_path / "bad.dat"
    path.write_bytes(data)
    with pytest.raises(CiannaFormatError, match=match) as err:
        read_optimizer_file(path, binary)
    assert str(path) in str(err.value)
    return err.value


@pytest.mark.parametrize("binary", [True, False])
def test_truncations(binary, tmp_path):
    """Every cut raises CiannaFormatError, except a cut exactly after a whole record, which
    reads as a shorter network (a file has no end marker)."""
    name = "trained_optim_bin.dat" if binary else "trained_optim_ascii.dat"
    data = (GOLDEN / "wema_adam_grn" / name).read_bytes()
    if binary:
        cuts = set(range(0, 300)) | set(range(300, len(data), 97))
    else:
        starts = [0] + [i + 1 for i, c in enumerate(data) if c == ord("\n")]
        cuts = {s for s in starts if s < len(data)} | {s + 3 for s in starts[:-1]}
    cuts = sorted(c for c in cuts if c < len(data))
    shorter = 0
    for cut in cuts:
        path = tmp_path / "cut.dat"
        path.write_bytes(data[:cut])
        try:
            o = read_optimizer_file(path, binary)
        except CiannaFormatError:
            continue
        assert len(o.net.layers) < 3
        shorter += 1
    assert shorter <= 1


def test_binary_hostile_counts_and_steps(tmp_path):
    data = (GOLDEN / "opt_adam_default" / "trained_optim_bin.dat").read_bytes()
    conv = 17 + 4 + 16 + 16 + 1  # after the optimizer header, the dims and the type byte
    for value in (1 << 20, (1 << 31) - 1, -1, 0):
        bad = bytearray(data)
        struct.pack_into("<i", bad, conv, value)
        _bad(tmp_path, bytes(bad), True)
    bad = bytearray(data)
    struct.pack_into("<4i", bad, 37, 1 << 20, 1 << 20, 1, 2)  # huge input dims
    _bad(tmp_path, bytes(bad), True)
    step_at = conv + 120 + 76 * 4
    assert struct.unpack_from("<Q", data, step_at)[0] == 6
    for value in (1 << 31, 1 << 63):
        bad = bytearray(data)
        struct.pack_into("<Q", bad, step_at, value)
        err = _bad(tmp_path, bytes(bad), True, "opt_step")
        assert err.record == 1
    bad = bytearray(data)
    struct.pack_into("<Q", bad, step_at, (1 << 31) - 1)
    path = tmp_path / "max.dat"
    path.write_bytes(bytes(bad))
    assert read_optimizer_file(path, True).buffers[0]["opt_step"] == (1 << 31) - 1


def test_binary_hostile_headers(tmp_path):
    data = (GOLDEN / "opt_adam_default" / "trained_optim_bin.dat").read_bytes()
    _bad(tmp_path, b"OptimSavX" + data[9:], True, "not an optimizer-state file")
    _bad(tmp_path, data[:9], True, "truncated")
    _bad(tmp_path, data[:19], True, "optimizer type")
    _bad(tmp_path, data[:23], True, "truncated")
    _bad(tmp_path, data[:9] + struct.pack("<i", 2) + data[13:], True, "use_wema")
    _bad(tmp_path, data[:13] + struct.pack("<f", float("nan")) + data[17:], True, "wema_rate")
    _bad(tmp_path, data[:13] + struct.pack("<f", 1.5) + data[17:], True, "wema_rate: expected "
         "a finite number <= 1, found 1.5")  # the EMA would grow without bound
    _bad(tmp_path, data[:17] + b"ADAX" + data[21:], True, "optimizer type")
    _bad(tmp_path, data[:17] + b"SGDX" + data[21:], True)
    bad = bytearray(data)
    struct.pack_into("<f", bad, 21, 1.5)  # beta1 >= 1
    _bad(tmp_path, bytes(bad), True, "beta1")
    bad = bytearray(data)
    struct.pack_into("<i", bad, 33, 1)  # ams_grad: a third buffer the file does not hold
    _bad(tmp_path, bytes(bad), True)
    rms = (GOLDEN / "opt_rmsprop" / "trained_optim_bin.dat").read_bytes()
    _bad(tmp_path, rms[:17] + b"RMSprob" + rms[24:], True, "optimizer type")
    ascii_file = (GOLDEN / "opt_adam_default" / "trained_optim_ascii.dat").read_bytes()
    _bad(tmp_path, ascii_file, True, "binary=False")
    _bad(tmp_path, data, False, "binary=True")


def test_ascii_hostile(tmp_path):
    text = (GOLDEN / "opt_adam_default" / "trained_optim_ascii.dat").read_text()

    def bad(new, match=None):
        return _bad(tmp_path, new.encode("latin-1"), False, match)

    bad(text.replace("OptimSave", "OptimSav", 1), "OptimSave")
    bad("OptimSave", "truncated")
    bad(text.replace("use_wema 0", "use_wema 2", 1), "use_wema")
    bad(text.replace("wema_rate 0", "wema_rate nan", 1), "wema_rate")
    bad(text.replace("wema_rate 0", "wema_rate 2", 1), "wema_rate")
    bad(text.replace("wema_rate 0", "wema_rate x", 1), "wema_rate")
    bad(text.replace("use_wema 0 wema_rate 0", "use_wema", 1), "use_wema")
    bad(text.replace("ADAM_", "ADAX_", 1), "unknown type")
    bad(text.replace("ADAM_", "NADAM_", 1), "unknown type")
    bad(text.replace("_b10.9_", "_b11.5_", 1), "beta1")
    bad(text.replace("ADAM_b10.9_b20.999_eps1e-08_ams0", "SGD_mom0.9", 1))
    bad(text.replace("_ams0", "_ams1", 1))  # a third buffer the file does not hold
    bad(text.replace("ADAM_b10.9", "ADAM_b1" + "9" * 5000, 1), "longer than")
    bad(text.replace("\n", "\r\n"), "carriage return")
    bad(text.replace("6x6x1x2\n", "6x6x1x2", 1))
    bad(text.replace("6x6x1x2\n", "1048576x1048576x1x2\n", 1))
    bad(text.replace("C4f1g", "C1048576f1g", 1), "characters are left|values")
    bad(text.replace("D3n", "D1048576n", 1), "characters are left|values")
    bad(text.replace("OptStep 6", "OptStep 99999999999", 1), "opt_step")
    bad(text.replace("OptStep 6", "OptStep -1", 1), "opt_step")
    bad(text.replace("OptStep 6", "OptStep x", 1), "OptStep")
    bad(text.replace("OptStep 6", "OptStep 6" + " " * 5000, 1), "longer than")
    err = bad(text.replace("OptStep 6\n", "", 1), "OptStep")
    assert err.record == 1
    two = text.split("OptStep 6\n")
    err = bad(two[0] + "OptStep 6\n" + two[1] + two[2], "OptStep")
    assert err.record == 2
    glued = (GOLDEN / "wema_sgd_norm_0999" / "trained_optim_ascii.dat").read_text()
    bad(glued.replace("SGD_mom0.96x6x1x2", "SGD_mom0.9x6x1x2", 1), "split")
    bad(glued.replace("SGD_mom0.96x6x1x2", "SGD_mom0.96x6x1x3", 1))


@pytest.mark.parametrize("binary", [True, False])
def test_state_after_an_update(binary, tmp_path):
    """The buffers of a live optimizer state after one more update are written and read
    back (opt_step counts that update)."""
    o = read_optimizer_file(GOLDEN / "optim_resume_adam_wema_bin" / "optim_state_s0001_bin.dat",
                            True)
    tx = optim.make_v11_optimizer(o.config, learning_rate=0.01, use_wema=True,
                                  wema_rate=o.wema_rate)
    st = optim.set_optimizer_buffers(o.config, tx.init(o.params), o.buffers)
    grads = jax.tree_util.tree_map(lambda p: 0.01 * jax.numpy.ones_like(p), o.params)
    updates, st = tx.update(grads, st, o.params)
    params = tuple(jax.tree_util.tree_map(lambda p, u: p + u, o.params, updates))
    out = tmp_path / "u.dat"
    write_optimizer_file(out, o.net, params, o.config, st, use_wema=True,
                         wema_rate=o.wema_rate, binary=binary)
    back = read_optimizer_file(out, binary)
    assert [b["opt_step"] for b in back.buffers] == [4, 4]
    want = optim.optimizer_buffers(o.config, st)
    for b, w in zip(back.buffers, want):
        for name, v in w.items():
            if name == "opt_step":
                continue
            for k in v:
                np.testing.assert_allclose(b[name][k], v[k], rtol=0 if binary else 1e-5)
    assert not _same_tree(back.buffers[0]["first_mom"], o.buffers[0]["first_mom"])
