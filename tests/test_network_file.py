"""Save/load of (Network, params) in CIANNA's ASCII and binary formats."""

import jax
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.io import CiannaFormatError


def _every_layer_type_2d():
    return nn.network([9, 7], 2, [
        nn.conv([3, 3], 4, padding=[1, 1], activation="RELU_S6_L0.1"),
        nn.norm(group_size=2, set_off=1, activation="RELU"),
        nn.pool([3, 2], stride=[2, 2], padding=[1, 0], p_type="AVG"),
        nn.conv([2, 2], 4, stride=[2, 1], int_padding=[1, 0], activation="LIN", bias=0.3),
        nn.lrn(range=3, k=2.0, alpha=0.5, beta=0.75),
        nn.dense(6, activation="LIN", bias=0.4),
        nn.conv([2, 2], 3, input_shape=[3, 2, 1, 1], activation="LOGI_S4_B2"),
        nn.dense(5, activation="LOGI", drop_rate=0.2),
        nn.dense(3, activation="SMAX"),
    ], bias=0.25)


def _network_3d():
    return nn.network([6, 5, 4], 1, [
        nn.conv([3, 3, 3], 2, padding=[1, 1, 1], int_padding=[0, 1, 1]),
        nn.pool([2, 2, 2], p_type="MAX"),
        nn.conv([1, 1, 1], 3, activation="LIN"),
        nn.pool(p_global=1, p_type="AVG", activation="SMAX"),
    ], bias=0.1)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("make", [_every_layer_type_2d, _network_3d])
def test_round_trip_every_layer_type(tmp_path, make, binary):
    net = make()
    params = cj.init_params(jax.random.key(0), net)
    if binary:
        want = params
    else:  # ASCII keeps 6 significant digits: compare against rounded weights
        want = jax.tree_util.tree_map(lambda a: np.asarray([float(f"{v:g}") for v in
                                                            np.asarray(a).ravel()],
                                                           np.float32).reshape(a.shape), params)
    path = tmp_path / ("net.bin" if binary else "net.txt")
    cj.save_network(path, net, params, binary=binary)
    loaded = cj.load_network(path, binary=binary, bias=net.input_bias)
    assert loaded.net == net
    for a, b in zip(loaded.params, want):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    x = cj.rows_to_images(net, np.asarray(jax.random.normal(jax.random.key(1),
                                                            (3, net.input_dim)), np.float32))
    np.testing.assert_allclose(cj.apply(loaded.net, loaded.params, x), cj.apply(net, want, x),
                               rtol=1e-6, atol=1e-6)


def test_first_layer_bias_comes_from_init(golden_case, tmp_path):
    case = golden_case("dense_only")
    a = cj.load_network(case.path("net_bin.dat"), binary=True, bias=0.1)
    b = cj.load_network(case.path("net_bin.dat"), binary=True, bias=0.5)
    assert a.net.layers[0].bias == pytest.approx(0.1) and b.net.layers[0].bias == 0.5
    assert a.net.layers[1:] == b.net.layers[1:]
    x = case.npy("input")
    assert not np.allclose(cj.apply(a.net, a.params, cj.rows_to_images(a.net, x)),
                           cj.apply(b.net, b.params, cj.rows_to_images(b.net, x)))


def test_resave_of_cianna_files_is_identical(golden_case, tmp_path):
    case = golden_case("norm_gn")
    loaded = cj.load_network(case.path("net_ascii.dat"), bias=case.bias)
    out = tmp_path / "resaved.dat"
    cj.save_network(out, loaded.net, loaded.params)
    assert out.read_bytes() == case.path("net_ascii.dat").read_bytes()


def test_backbone_and_head_loading(golden_case):
    """V-1.0.1 load: nb_layers loads a backbone, nb_skip_layers + base appends the head."""
    case = golden_case("conv_pad_stride")
    full = cj.load_network(case.path("net_bin.dat"), binary=True, bias=case.bias)
    backbone = cj.load_network(case.path("net_bin.dat"), binary=True, bias=case.bias,
                               nb_layers=3)
    assert backbone.net.layers == full.net.layers[:3]
    whole = cj.load_network(case.path("net_ascii.dat"), bias=case.bias, nb_skip_layers=3,
                            base=backbone.net, base_params=backbone.params)
    assert whole.net == full.net
    x = cj.rows_to_images(whole.net, case.npy("input"))
    y = cj.apply(whole.net, whole.params, x, bias_slot=True)
    np.testing.assert_allclose(cj.output_rows(whole.net, y), case.npy("output"), atol=1e-5)
    # a head whose first record does not fit the base is refused, nothing is returned
    with pytest.raises(CiannaFormatError):
        cj.load_network(case.path("net_bin.dat"), binary=True, nb_skip_layers=1,
                        base=backbone.net, base_params=backbone.params)


def test_resolution_change_for_fully_convolutional_network(golden_case):
    case = golden_case("global_pool_smax")
    loaded = cj.load_network(case.path("net_bin.dat"), binary=True, in_dims=(16, 12, 1, 1))
    assert loaded.net.in_dims == (16, 12, 1, 1)
    x = cj.rows_to_images(loaded.net, np.ones((2, 16 * 12), np.float32))
    y = cj.output_rows(loaded.net, cj.apply(loaded.net, loaded.params, x))
    np.testing.assert_allclose(np.asarray(y).sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(CiannaFormatError, match="channel"):
        cj.load_network(case.path("net_bin.dat"), binary=True, in_dims=(10, 10, 1, 2))


def test_bad_files_raise_clear_errors(golden_case, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.dat"):
        cj.load_network(tmp_path / "missing.dat")
    data = golden_case("pool_avg").path("net_bin.dat").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) - 10])
    with pytest.raises(CiannaFormatError):
        cj.load_network(cut, binary=True)
    with pytest.raises(CiannaFormatError):  # binary file read as ASCII
        cj.load_network(golden_case("pool_avg").path("net_bin.dat"), binary=False)
    with pytest.raises(CiannaFormatError, match="is this a binary file"):
        cj.load_network(golden_case("pool_avg").path("net_bin.dat"), binary=False)
    bias_error = pytest.raises(ValueError, match="bias: expected a finite float")
    with bias_error as caught:  # the argument, not the file: was blamed on the file
        cj.load_network(golden_case("pool_avg").path("net_bin.dat"), binary=True, bias=np.inf)
    assert not isinstance(caught.value, CiannaFormatError)


def test_failed_save_keeps_existing_file(tmp_path):
    net = nn.network([4], 1, [nn.dense(3, activation="LIN")], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    path = tmp_path / "keep.dat"
    cj.save_network(path, net, params)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"params\[0\]"):
        cj.save_network(path, net, ({"w": params[0]["w"][:-1]},))
    assert path.read_bytes() == before


def test_a_failed_load_changes_nothing(golden_case, tmp_path, monkeypatch):
    """cianna_jax.load of a hostile file raises CiannaFormatError and keeps the network,
    its parameters and the iteration counter."""
    import struct

    from cianna_jax.api import get_state

    monkeypatch.chdir(tmp_path)
    src = golden_case("dense_only").path("net_bin.dat")
    data = bytearray(src.read_bytes())
    last = data.rindex(b"D" + struct.pack("<i", 5))  # third dense record: 5 neurons
    struct.pack_into("<f", data, last + 5, 7.0)  # dropout 7.0: refused by dense()
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(data))
    cj.init([8, 8], 1, 5, b_size=2, comp_meth="C_BLAS", no_logo=1, seed=0)
    state = get_state()
    try:
        cj.load(str(src), 3, nb_layers=2, bin=1, silent=1)
        net, params = cj.get_network()
        with pytest.raises(CiannaFormatError, match="record 3.*drop_rate"):
            cj.load(str(bad), 9, nb_skip_layers=2, bin=1, silent=1)
        with pytest.raises(CiannaFormatError, match="nb_layers=2 .*only 3 records"):
            cj.load(str(src), 9, nb_skip_layers=2, nb_layers=2, bin=1, silent=1)
        assert cj.get_network()[0] is net and cj.get_network()[1] is params
        assert state.iteration == 3 and len(state.layers) == 2
        cj.load(str(src), 9, nb_skip_layers=2, bin=1, silent=1)
        assert len(state.layers) == 3 and state.iteration == 9
    finally:
        cj.free_network(state.id)


def test_a_load_into_a_network_with_layers_says_the_records_are_appended(tmp_path, monkeypatch):
    """Loading a save into the network it came from appends its records after the
    layers already there (CIANNA's rule); when they then do not fit, the error says so."""
    from cianna_jax.api import get_state

    monkeypatch.chdir(tmp_path)
    cj.init([8, 8], 1, 3, b_size=2, comp_meth="C_BLAS", no_logo=1, seed=0)
    state = get_state()
    try:
        cj.conv(f_size=[3, 3], nb_filters=4, padding=[1, 1], silent=1)
        cj.pool(p_size=[2, 2], silent=1)
        cj.dense(nb_neurons=3, strict_size=1, activation="SMAX", silent=1)
        cj.save("s.dat", bin=1)
        with pytest.raises(CiannaFormatError, match="pool: empty output") as info:
            cj.load("s.dat", 0, bin=1, silent=1)
        assert any("appended after the network's 3 existing layers" in n
                   for n in info.value.__notes__)
        assert len(state.layers) == 3  # nothing changed
    finally:
        cj.free_network(state.id)
