"""CIANNA V-1.1 save files (``version="1.1"``): golden parity, dialect rules, hostile files.

Golden cases (tests/data/golden_v11, copied from the V-1.1 CPU reconstruction): a residual
network with a merge and the V-1.1 norm, a GRN network and a norm with gamma_init=0.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.io import CiannaFormatError, read_network, write_network
from cianna_jax.io.network_file import load_network, save_network
from cianna_jax.layers import merge_sources

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_v11"
CASES = ("merge_add_residual", "grn_residual", "norm_gamma0_residual")
FILES = (("net_bin.dat", True), ("net_ascii.dat", False))
apply = jax.jit(cj.apply, static_argnums=0)


def _v11_string_spans(data: bytes):
    """Offsets of the 40-byte string fields of a V-1.1 binary file, from the documented
    layout (spec cianna_v11.md section 1), written independently of the reader."""
    dims = np.frombuffer(data[:16], "<i4")
    pos, spans, channels = 16, [], int(dims[3])
    while pos < len(data):
        while data[pos] in b" \n":
            pos += 1
        t = chr(data[pos])
        pos += 1
        if t == "C":
            head = np.frombuffer(data[pos:pos + 72], "<i4")
            n_f, groups, f = int(head[0]), int(head[1]), head[2:5]
            spans.append(pos + 80)
            pos += 120 + 4 * n_f * (int(np.prod(f)) * channels // groups + 1)
            channels = n_f
        elif t == "N":
            spans += [pos, pos + 48]
            pos += 88 + 8 * channels
        elif t == "G":
            spans.append(pos + 4)
            pos += 44 + 8 * channels
        elif t == "M":
            odim = np.frombuffer(data[pos + 8:pos + 24], "<i4")
            spans += [pos + 24, pos + 64]
            pos += 104
            channels = int(odim[3])
        elif t == "D":  # the output layer, last in these files: (in + 1) x (n + 1) weights
            n = int(np.frombuffer(data[pos:pos + 4], "<i4")[0])
            spans.append(pos + 12)
            rows = (len(data) - pos - 52) // (4 * (n + 1))
            pos += 52 + 4 * rows * (n + 1)
        else:
            raise AssertionError(f"unexpected record {t!r} at {pos - 1}")
    assert pos == len(data)
    return spans


def _masked_equal(ours: bytes, golden: bytes):
    """Equal except after the NUL of 40-byte string fields (uninitialised memory in the
    original; our writer zero-fills)."""
    assert len(ours) == len(golden)
    a, b = bytearray(ours), bytearray(golden)
    for s in _v11_string_spans(golden):
        nul = golden.index(b"\x00", s)
        assert nul < s + 40 and ours[s:nul + 1] == golden[s:nul + 1]
        assert not any(ours[nul + 1:s + 40]), "the writer must zero-fill string fields"
        a[nul + 1:s + 40] = bytes(s + 40 - nul - 1)
        b[nul + 1:s + 40] = bytes(s + 40 - nul - 1)
    assert a == b


@pytest.mark.parametrize("fname,binary", FILES)
@pytest.mark.parametrize("case", CASES)
def test_golden_v11_forward_and_resave(case, fname, binary, tmp_path):
    d = GOLDEN / case
    meta = json.loads((d / "meta.json").read_text())
    loaded = load_network(d / fname, binary=binary, version="1.1")
    net = loaded.net
    assert [layer.kind for layer in net.layers] == [f for f, _ in meta["layers"]]
    # V-1.1 has no input bias: the first layer keeps its saved bias (RELU default 0.1)
    assert net.layers[0].bias == pytest.approx(0.1) and net.input_bias == net.layers[0].bias
    x = cj.rows_to_images(net, np.load(d / "input.npy"))
    got = cj.output_rows(net, np.asarray(apply(net, loaded.params, x)))
    want = np.load(d / "output.npy")  # V-1.1: no bias column for a dense output
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5
    out = tmp_path / "resave.dat"
    save_network(out, net, loaded.params, binary=binary, version="1.1")
    if binary:
        _masked_equal(out.read_bytes(), (d / fname).read_bytes())
    else:  # net_ascii_resave.dat (CIANNA's own re-save) is byte-identical to net_ascii.dat
        assert out.read_bytes() == (d / fname).read_bytes()


def test_merge_records_link_the_right_layers():
    cf = read_network(GOLDEN / "merge_add_residual" / "net_ascii.dat", False, version="1.1")
    merge = cf.records[3]
    assert (merge.prev_a, merge.prev_b, merge.out_dims) == (-1, -3, (6, 6, 1, 4))
    assert merge.sources(3) == merge_sources(-1, -3, 3) == (2, 0)
    net = load_network(GOLDEN / "merge_add_residual" / "net_bin.dat", binary=True,
                       version="1.1").net
    assert [net.sources(i) for i in range(5)] == [(-1,), (0,), (1,), (2, 0), (3,)]
    assert net.layers[1].per_channel and net.layers[1].eps == 1e-6


@pytest.mark.parametrize("fname,binary", FILES)
def test_v10_dialect_refuses_v11_files(fname, binary):
    with pytest.raises(CiannaFormatError) as err:
        load_network(GOLDEN / "grn_residual" / fname, binary=binary)
    assert "version='1.1'" in str(err.value) or "expected a conv line" in str(err.value)
    with pytest.raises(ValueError, match="version: expected one of"):
        read_network(GOLDEN / "grn_residual" / fname, binary, version="1.2")


def _v11_net():
    layers = [nn.conv([3, 3], 4, padding=[1, 1]),                       # 0
              nn.conv([3, 3], 4, padding=[1, 1], nb_groups=2),          # 1
              nn.norm(group_size=2, per_channel=True, activation="RELU"),  # 2
              nn.merge("ADD"),                                          # 3: 2 + 0
              nn.grn(residual=0),                                       # 4
              nn.conv([1, 1], 4, nb_groups=4, activation="LIN"),        # 5: depth-wise
              nn.merge("CONCAT", activation="RELU"),                    # 6: 5 + 3
              nn.pool([2, 2]),                                          # 7
              nn.dense(3, activation="SMAX")]
    inputs = [(-1,), (0,), (1,), merge_sources(-1, -3, 3), (3,), (4,),
              merge_sources(-1, 3, 6), (6,), (7,)]
    return cj.make_network((6, 4, 1, 2), layers, 0.1, inputs=inputs)


def _params(net, seed=0):
    rng = np.random.default_rng(seed)
    return tuple({k: jnp.asarray(rng.standard_normal(s).astype(np.float32))
                  for k, s in layer.param_shapes(sin).items()}
                 for layer, (sin, _) in zip(net.layers, net.shapes))


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_every_v11_layer(binary, tmp_path):
    net = _v11_net()
    params = _params(net)
    path = tmp_path / "net.dat"
    save_network(path, net, params, binary=binary, version="1.1")
    loaded = load_network(path, binary=binary, bias=net.input_bias, version="1.1")
    assert loaded.net == net
    x = np.random.default_rng(1).standard_normal((2, 4, 6, 2)).astype(np.float32)
    tol = 0 if binary else 1e-4  # ASCII keeps 6 significant digits
    np.testing.assert_allclose(apply(loaded.net, loaded.params, x), apply(net, params, x),
                               rtol=tol, atol=tol)
    text = path.read_bytes()
    if not binary:
        assert b"C4f2g3x3x1" in text and b"M-1pa-3pb odim6x4x1x4 ADD LIN \n\n" in text
        assert b"M-1pa-3pb odim6x4x1x8 CONCAT RELU_S800.00_L0.05 \n\n" in text
        assert b"G res_0 LIN \n" in text


def test_dialect_rules_on_save(tmp_path):
    net = _v11_net()
    params = _params(net)
    with pytest.raises(ValueError, match=r"record 2 \(conv\): a grouped conv .* use version='1.1'"):
        save_network(tmp_path / "a.dat", net, params)
    plain = nn.network([6, 4], 2, [nn.conv([3, 3], 4), nn.norm(group_size=2), nn.dense(2)])
    with pytest.raises(ValueError, match=r"record 2 \(norm\): a V-1.0 norm .* use version='1.0'"):
        save_network(tmp_path / "b.dat", plain, _params(plain), version="1.1")
    grn = nn.network([6, 4], 2, [nn.conv([3, 3], 4), nn.grn(), nn.dense(2)])
    with pytest.raises(ValueError, match=r"record 2 \(grn\): grn records exist in CIANNA V-1.1"):
        save_network(tmp_path / "c.dat", grn, _params(grn))
    # branches that do not go through a merge cannot be stored (prev_layer is not saved)
    branch = cj.make_network((6, 4, 1, 2), [nn.conv([3, 3], 4, padding=[1, 1]),
                                            nn.conv([3, 3], 4, padding=[1, 1]),
                                            nn.conv([3, 3], 4, padding=[1, 1]),
                                            nn.merge(), nn.dense(2)], 0.1,
                             inputs=[(-1,), (0,), (0,), (2, 1), (3,)])
    with pytest.raises(ValueError, match=r"layer 3 \(conv\) reads layer\(s\) \(0,\).* does not "
                                         "store prev_layer"):
        save_network(tmp_path / "d.dat", branch, _params(branch), version="1.1")
    assert not list(tmp_path.iterdir())


def test_partial_loads_follow_merge_ids():
    """nb_layers loads a backbone; the rest appended with nb_skip_layers onto it links the
    merge to the same layers (ids are relative to the merge)."""
    path = GOLDEN / "merge_add_residual" / "net_bin.dat"
    full = load_network(path, binary=True, version="1.1")
    head = load_network(path, binary=True, nb_layers=3, version="1.1")
    assert [layer.kind for layer in head.net.layers] == ["conv", "norm", "conv"]
    rest = load_network(path, binary=True, nb_skip_layers=3, base=head.net,
                        base_params=head.params, bias=head.net.input_bias, version="1.1")
    assert rest.net == full.net
    with pytest.raises(CiannaFormatError, match=r"network: inputs: layer 1 \(merge\) can "
                                                r"only read the network input \(-1\) or"):
        load_network(path, binary=True, nb_skip_layers=3, version="1.1")


def _edited(tmp_path, case, old: str, new: str) -> Path:
    text = (GOLDEN / case / "net_ascii.dat").read_text()
    assert text.count(old) == 1
    p = tmp_path / f"{case}.dat"
    p.write_text(text.replace(old, new))
    return p


@pytest.mark.parametrize("case,old,new,msg", [
    ("merge_add_residual", "M-1pa-3pb", "M-1pa-4pb",
     r"record 4 \(merge\).*previous B id -4 points to record 0"),
    ("merge_add_residual", "M-1pa-3pb", "M-1pa3pb", "previous B id 3 points to record 4"),
    ("merge_add_residual", "odim6x6x1x4", "odim6x6x1x8", "saved output shape 6x6x1x8 differs"),
    ("merge_add_residual", " ADD ", " SUB ", "merge_type: expected one of"),
    ("grn_residual", "G res_1", "G res_2", r"residual: expected values in 0\.\.1"),
    ("norm_gamma0_residual", "S2_O0", "S2_O1", r"set_off: expected values in 0\.\.0"),
    ("grn_residual", "C4f1g", "C4f3g", r"nb_groups: must divide the input channels \(2\)"),
    ("grn_residual", "C4f1g", "C4f", "expected a conv line 'C<nf>f<groups>g"),
])
def test_hostile_v11_records_are_refused(tmp_path, case, old, new, msg):
    with pytest.raises(CiannaFormatError, match=msg):
        load_network(_edited(tmp_path, case, old, new), version="1.1")


def test_merge_cannot_start_or_end_a_file(tmp_path):
    text = (GOLDEN / "merge_add_residual" / "net_ascii.dat").read_text()
    start = text.index("M-1pa")
    p = tmp_path / "first.dat"
    p.write_text("6x6x1x4\n" + text[start:])
    with pytest.raises(CiannaFormatError, match="a merge record cannot be the first record"):
        read_network(p, False, version="1.1")
    p.write_text(text[:text.index("D3n")])
    with pytest.raises(CiannaFormatError, match=r"record 4 \(merge\).*the last record is a "
                                                "merge record"):
        read_network(p, False, version="1.1")


@pytest.mark.parametrize("fname,binary", FILES)
def test_mutated_v11_files_load_or_raise_cianna_format_error(fname, binary, tmp_path):
    """A short deterministic fuzz of the V-1.1 golden files: byte edits, bit flips, cuts."""
    rng = np.random.default_rng(11 if binary else 12)
    p = tmp_path / "case.dat"
    outcomes = {"loaded": 0, "error": 0}
    for case in CASES:
        data = (GOLDEN / case / fname).read_bytes()
        for _ in range(40):
            buf = bytearray(data)
            op = rng.integers(4)
            if op == 0:
                buf = buf[:int(rng.integers(len(buf)))]
            else:
                for _ in range(int(rng.integers(1, 4))):
                    i = int(rng.integers(len(buf)))
                    buf[i] = (buf[i] ^ (1 << int(rng.integers(8)))) if op == 1 else \
                        int(rng.choice(list(b"0123456789-x. \nCGMND\x00\xff")))
            p.write_bytes(bytes(buf))
            try:
                loaded = load_network(p, binary=binary, version="1.1")
            except CiannaFormatError:
                outcomes["error"] += 1
                continue
            assert sum(int(np.size(a)) for d in loaded.params for a in d.values()) < 10 ** 6
            outcomes["loaded"] += 1
    assert outcomes["loaded"] and outcomes["error"]


def test_v11_records_refuse_the_v10_writer(tmp_path):
    cf = read_network(GOLDEN / "grn_residual" / "net_bin.dat", True, version="1.1")
    assert cf.version == "1.1"
    write_network(tmp_path / "same.dat", cf, True)  # keeps the file's dialect
    assert read_network(tmp_path / "same.dat", True, version="1.1") == cf
    with pytest.raises(ValueError, match="grn records exist in CIANNA V-1.1 files only"):
        write_network(tmp_path / "v10.dat", cf, True, version="1.0")
