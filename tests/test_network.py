"""The functional forward: jit/vmap/grad, CIANNA's bias mechanism, dropout modes, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import Ctx


@pytest.fixture(scope="module")
def small_cnn():
    net = nn.network([6, 5], 2, [
        nn.conv([3, 3], 4, padding=[1, 1]),
        nn.pool([2, 2]),
        nn.dense(7, activation="LOGI", drop_rate=0.3),
        nn.dense(3, activation="SMAX"),
    ], bias=0.2)
    params = cj.init_params(jax.random.key(1), net)
    rows = np.asarray(jax.random.normal(jax.random.key(2), (5, net.input_dim)), np.float32)
    return net, params, cj.rows_to_images(net, rows)


def test_apply_under_jit_vmap_and_grad(small_cnn):
    net, params, x = small_cnn
    y = cj.apply(net, params, x)
    assert y.shape == (5, 3)
    np.testing.assert_allclose(np.asarray(y).sum(axis=1), 1.0, rtol=1e-5)

    jitted = jax.jit(cj.apply, static_argnums=0)
    np.testing.assert_allclose(jitted(net, params, x), y, atol=1e-6)

    per_example = jax.vmap(lambda row: cj.apply(net, params, row))(x)
    np.testing.assert_allclose(per_example, y, atol=1e-6)

    def loss(p):
        return jnp.sum(cj.apply(net, p, x)[:, 0])

    grads = jax.grad(loss)(params)
    flat = jax.tree_util.tree_leaves(grads)
    assert all(np.isfinite(np.asarray(g)).all() for g in flat)
    # finite-difference check on one conv weight (LOGI surrogate is exact away from the clamp)
    eps, tap = 1e-2, (0, 1, 0, 0, 1)  # (f_d, f_h, f_w, channel, filter): row 1, entry 3
    k = params[0]["kernel"]
    bump = np.zeros(k.shape, np.float32)
    bump[tap] = eps
    p_plus = ({**params[0], "kernel": k + bump},) + params[1:]
    p_minus = ({**params[0], "kernel": k - bump},) + params[1:]
    fd = (loss(p_plus) - loss(p_minus)) / (2 * eps)
    np.testing.assert_allclose(grads[0]["kernel"][tap], fd, rtol=2e-2, atol=1e-4)


def test_bias_mechanism_pivots_and_slot():
    net = nn.network([4], 1, [
        nn.dense(3, activation="LIN", bias=0.7),
        nn.dense(2, activation="RELU", bias=0.2),
        nn.dense(2, activation="LIN"),
    ], bias=0.4)
    # first layer takes init's bias whatever its own keyword says; others keep theirs/defaults
    assert [layer.bias for layer in net.layers] == pytest.approx([0.4, 0.2, 0.5])
    params = cj.init_params(jax.random.key(0), net)
    w0, w1 = np.asarray(params[0]["w"]), np.asarray(params[1]["w"])
    assert w0.shape == (5, 4) and w1.shape == (4, 3)
    assert w0[-1, -1] == pytest.approx(0.2 / 0.4) and w1[-1, -1] == pytest.approx(0.5 / 0.2)
    assert np.all(w0[:-1, -1] == 0) and np.all(w1[:-1, -1] == 0)
    x = np.ones((3, 4), np.float32)
    rows = np.asarray(cj.apply(net, params, cj.rows_to_images(net, x), bias_slot=True))
    assert rows.shape == (3, 3)
    # after the LIN layer the slot carries the next bias; RELU zeroes it; last LIN slot stays 0
    h0 = np.concatenate([x, np.full((3, 1), 0.4, np.float32)], axis=1) @ w0
    np.testing.assert_allclose(h0[:, -1], 0.2, rtol=1e-6)
    z1 = h0 @ w1
    y1 = np.where(z1 <= 0, 0.05 * z1, z1)
    y1[:, -1] = 0.0
    want = y1 @ np.asarray(params[2]["w"])
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-6)


def test_zero_bias_before_dense_is_an_error():
    net = nn.network([4], 1, [nn.dense(3, activation="LIN"), nn.dense(2, bias=0.0),
                              nn.dense(2)], bias=0.1)
    with pytest.raises(ValueError, match="bias"):
        cj.init_params(jax.random.key(0), net)


def test_dropout_modes(small_cnn):
    net, params, x = small_cnn
    key = jax.random.key(3)
    avg = cj.apply(net, params, x)
    mc1 = cj.apply(net, params, x, drop_mode="MC_MODEL", key=key)
    mc2 = cj.apply(net, params, x, drop_mode="MC_MODEL", key=jax.random.key(4))
    assert not np.allclose(mc1, mc2)
    assert not np.allclose(mc1, avg)
    with pytest.raises(ValueError, match="key"):
        cj.apply(net, params, x, drop_mode="MC_MODEL")
    with pytest.raises(ValueError, match="drop_mode"):
        cj.apply(net, params, x, drop_mode="MC")


def test_dropout_is_not_inverted_and_spares_the_bias_slot():
    net = nn.network([50], 1, [nn.dense(400, activation="LIN", drop_rate=0.25),
                               nn.dense(1, activation="LIN")], bias=1.0)
    params = cj.init_params(jax.random.key(0), net)
    params = ({"w": jnp.ones_like(params[0]["w"])}, params[1])
    x = np.ones((2, 50), np.float32)
    hidden = net.layers[0]
    xin = np.concatenate([x, np.ones((2, 1), np.float32)], axis=1)
    z_avg = np.asarray(hidden.apply(params[0], xin, Ctx(False, "AVG_MODEL", 2)))
    np.testing.assert_allclose(z_avg[:, :-1], 51 * 0.75, rtol=1e-6)
    assert z_avg[0, -1] == pytest.approx(51.0)  # bias column (pivot 1/1) never scaled
    z_tr = np.asarray(hidden.apply(params[0], xin, Ctx(True, "AVG_MODEL", 2), jax.random.key(5)))
    kept = z_tr[:, :-1] != 0
    np.testing.assert_allclose(z_tr[:, :-1][kept], 51.0, rtol=1e-6)  # kept units are not rescaled
    assert 0.65 < kept.mean() < 0.85
    assert np.all(z_tr[:, -1] == 51.0)


def test_apply_rejects_bad_input_shape(small_cnn):
    net, params, x = small_cnn
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 5, 6, 2\).*received "
                                         r"\(5, 5, 5, 2\)"):
        cj.apply(net, params, x[:, :, :-1])
    with pytest.raises(ValueError, match="rows_to_images"):
        cj.apply(net, params, cj.images_to_rows(net, x))


def test_check_params_names_layer_and_shapes(small_cnn):
    net, params, _ = small_cnn
    bad = (params[0], params[1], {"w": params[2]["w"][:-1]}, params[3])
    with pytest.raises(ValueError, match=r"params\[2\] \(dense\): expected shapes"):
        cj.network.check_params(net, bad)


def test_apply_names_wrong_params_before_running(small_cnn):
    """Wrong parameter trees are named errors at trace time, not broadcasting or index
    errors from inside the program; laid-out params still pass."""
    net, params, x = small_cnn
    with pytest.raises(ValueError, match="params: expected 4 layer entries, received 3"):
        cj.apply(net, params[:-1], x)
    kernel = params[0]["kernel"]
    bad = ({**params[0], "kernel": kernel[..., :2]},) + params[1:]
    with pytest.raises(ValueError, match=r"params\[0\] \(conv\): expected shapes .*"
                                         r"'kernel': \(1, 3, 3, 2, 4\)"):
        cj.apply(net, bad, x)
    with pytest.raises(ValueError, match=r"params\[0\] \(conv\)"):
        jax.jit(cj.apply, static_argnums=0)(net, bad, x)
    with pytest.raises(TypeError, match="params: expected a tuple of 4 per-layer dicts"):
        cj.apply(net, {"w": 1}, x)
    with pytest.raises(ValueError, match=r"params\[2\] \(dense\)"):
        cj.apply_layers(net, params[:2] + ({"w": params[2]["w"][:-1]},) + params[3:], x, [0])
    laid = cj.inference_params(net, params)
    np.testing.assert_allclose(cj.apply(net, laid, x), cj.apply(net, params, x), rtol=1e-5,
                               atol=1e-6)


def test_apply_layers_refuses_indices_out_of_range(small_cnn):
    net, params, x = small_cnn
    last, first = cj.apply_layers(net, params, x, [-1, -4])  # Python's negative indices
    np.testing.assert_allclose(last, cj.apply_layers(net, params, x, [3])[0])
    assert first.shape == (5, 5, 6, 4)
    with pytest.raises(ValueError, match="index 4 is out of range for a network of 4 layers"):
        cj.apply_layers(net, params, x, [0, 4])  # was taken modulo 4: layer 0
    with pytest.raises(ValueError, match="index -5 is out of range"):
        cj.apply_layers(net, params, x, -5)
    with pytest.raises(TypeError, match="layers: expected layer indices"):
        cj.apply_layers(net, params, x, [1.0])
    with pytest.raises(ValueError, match="at least one layer"):
        cj.apply_layers(net, params, x, [])


def test_output_rows_checks_the_outputs_shape(small_cnn):
    net, params, x = small_cnn
    y = cj.apply(net, params, x)
    np.testing.assert_array_equal(cj.output_rows(net, y), y)
    assert cj.output_rows(net, cj.apply(net, params, x, bias_slot=True)).shape == (5, 4)
    with pytest.raises(ValueError, match=r"y: expected outputs of apply, shape \(N, 3\), "
                                         r"received \(5, 2\)"):
        cj.output_rows(net, y[:, :2])
    conv = nn.network([6, 5], 2, [nn.conv([3, 3], 4, padding=[1, 1])])
    with pytest.raises(ValueError, match=r"shape \(N, 5, 6, 4\), received \(5, 120\)"):
        cj.output_rows(conv, np.zeros((5, 120), np.float32))  # rows already


def test_non_finite_biases_are_refused():
    for bias in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bias: expected a finite input bias"):
            nn.network([4], 1, [nn.dense(2)], bias=bias)
    with pytest.raises(ValueError, match="bias: expected a finite float"):
        nn.dense(2, bias=float("-inf"))
    assert nn.dense(2, bias=float("nan")).bias is None  # CIANNA's "not given"


def test_conv_after_dense_reads_input_shape():
    net = nn.network([5], 1, [
        nn.dense(12, activation="LIN"),
        nn.conv([3, 3], 2, input_shape=[3, 2, 1, 2], padding=[1, 1], activation="LIN"),
    ], bias=0.5)
    assert net.shapes[1][1][:4] == (3, 2, 1, 2)
    params = cj.init_params(jax.random.key(0), net)
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 5)), np.float32)
    y = cj.output_rows(net, np.asarray(cj.apply(net, params, cj.rows_to_images(net, x))))
    # reference: dense output read as [C][H][W] image, conv with padding 1, own bias 0.5
    h = np.concatenate([x, np.full((2, 1), 0.5, np.float32)], 1) @ np.asarray(params[0]["w"])
    img = h[:, :12].reshape(2, 2, 2, 3)
    w = np.asarray(cj.params_to_rows(net, params)[1]["w"])  # CIANNA's rows
    k = w[:, :-1].reshape(2, 2, 3, 3)
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((2, 2, 2, 3), np.float32)
    for f in range(2):
        for i in range(2):
            for j in range(3):
                ref[:, f, i, j] = np.sum(pad[:, :, i:i + 3, j:j + 3] * k[f], axis=(1, 2, 3)) \
                    + 0.5 * w[f, -1]
    np.testing.assert_allclose(y, ref.reshape(2, -1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="input_shape"):
        nn.network([5], 1, [nn.dense(12, activation="LIN"), nn.conv([3, 3], 2)])
    with pytest.raises(ValueError, match="input_shape"):
        nn.network([5], 1, [nn.dense(12, activation="LIN"),
                            nn.conv([3, 3], 2, input_shape=[3, 3, 1, 2])])
    with pytest.raises(ValueError, match="dropout"):
        nn.network([5], 1, [nn.dense(12, drop_rate=0.5),
                            nn.conv([1, 1], 2, input_shape=[3, 2, 1, 2])])


def test_eager_apply_is_one_program():
    """Called outside jit, apply runs one compiled program (not one per operation), and
    a second call with host arrays of the same shapes reuses it."""
    from cianna_jax import network

    net = nn.network([5, 3], 2, [nn.conv([3, 3], 3, padding=[1, 1]),  # shapes no other
                                 nn.dense(5, drop_rate=0.4)], bias=0.3)  # test uses
    params = cj.init_params(jax.random.key(1), net)
    x = np.ones((4, 3, 5, 2), np.float32)
    before = network._apply_program._cache_size()
    y = cj.apply(net, params, x, drop_mode="MC_MODEL", key=jax.random.key(3))
    assert network._apply_program._cache_size() == before + 1
    y2 = cj.apply(net, params, np.asarray(x), drop_mode="MC_MODEL", key=jax.random.key(3))
    assert network._apply_program._cache_size() == before + 1
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))


def test_inference_params_give_the_same_outputs():
    """Layers that do not run as Winograd keep their params as they are (the same
    arrays: the kernels are channel-last already) through every conv path: fused with a
    max pool, XLA's convolution (strided), a deep layer on a small map, a conv after a
    dense layer; dense layers that read a map get their rows in the map's channel-last
    order (``map_kernel[h, w, c]`` is CIANNA's row ``c*H*W + h*W + w``) and ``bias``
    times the bias row; the outputs are the same."""
    from cianna_jax import network, training

    net = nn.network([8, 8], 2, [
        nn.conv([3, 3], 4, padding=[1, 1]), nn.pool([2, 2]),          # fused pair
        nn.conv([2, 2], 6, stride=[2, 2]),                            # XLA conv
        nn.conv([3, 3], 16, padding=[1, 1]),                          # small map
        nn.dense(12), nn.conv([1, 1], 3, input_shape=[2, 2, 1, 3]),   # conv after dense
        nn.dense(4, activation="SMAX")], bias=0.3)
    params = cj.init_params(jax.random.key(4), net)
    prep = network.inference_params(net, params)
    assert all(a is b for i, (a, b) in enumerate(zip(prep, params)) if i not in (4, 6))
    assert prep[0]["kernel"].shape == (1, 3, 3, 2, 4) and prep[3]["bias_weight"].shape == (16,)
    assert prep[5]["kernel"].shape == (1, 1, 1, 3, 3)
    for i, (h, w, c) in ((4, (2, 2, 16)), (6, (2, 2, 3))):
        k, rows = np.asarray(prep[i]["map_kernel"]), np.asarray(params[i]["w"])
        assert set(prep[i]) == {"map_kernel", "bias_row"} and k.shape == (h, w, c, rows.shape[1])
        hh, ww, cc = np.meshgrid(range(h), range(w), range(c), indexing="ij")
        np.testing.assert_array_equal(k, rows[cc * h * w + hh * w + ww])
        np.testing.assert_allclose(prep[i]["bias_row"], net.layers[i].bias * rows[-1], rtol=1e-6)
    x = np.asarray(jax.random.normal(jax.random.key(5), (2, 8, 8, 2)), np.float32)
    t = np.eye(4, dtype=np.float32)[[1, 3]]
    want, want_loss = training.eval_step(net, params, x, t, np.int32(2))
    got, got_loss = training.eval_step(net, prep, x, t, np.int32(2))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got_loss, want_loss, rtol=2e-5)
    assert not np.allclose(want[:, :-1], 0.25, atol=1e-3)  # the outputs depend on x


def test_laid_out_dense_weights_refuse_another_map():
    """A dense layer's laid-out weights name the map they read: another map is a
    ValueError giving both shapes, before any computation."""
    from cianna_jax.layers.common import Shape

    net = nn.network([4, 4], 3, [nn.dense(5)], bias=0.5)
    params = cj.init_params(jax.random.key(1), net)
    layer = net.layers[0]
    laid = layer.inference_params(params[0], Shape(4, 4, 1, 3), 2)
    assert laid["map_kernel"].shape == (4, 4, 3, 6)
    with pytest.raises(ValueError, match=r"\(4, 4, 3\).*\(4, 3, 4\)"):
        layer.apply(laid, np.zeros((2, 4, 3, 4), np.float32), Ctx(nd=2))


def test_inference_params_3d_groups_int_padding_and_bf16():
    """The laid-out kernels of a 3D network with a grouped and an input-dilated conv give
    the same outputs, in float32 and in bfloat16 compute."""
    from cianna_jax import network

    net = nn.network([5, 5, 4], 4, [nn.conv([3, 3, 3], 6, padding=[1, 1, 1], nb_groups=2),
                                    nn.conv([3, 3, 3], 3, int_padding=[1, 1, 1], padding=[1, 1, 1]),
                                    nn.dense(3, activation="SMAX")], bias=0.2)
    params = cj.init_params(jax.random.key(6), net)
    prep = network.inference_params(net, params)
    assert prep[0]["kernel"].shape == (3, 3, 3, 2, 6)
    x = np.asarray(jax.random.uniform(jax.random.key(7), (2,) + net.input_shape), np.float32)
    for mode in ("off", "BF16C_FP32A"):
        want = np.asarray(cj.apply(net, params, x, mixed_precision=mode), np.float32)
        got = np.asarray(cj.apply(net, prep, x, mixed_precision=mode), np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_conv_params_are_channel_last_and_convert_to_cianna_rows():
    """Conv params are ``{"kernel": (f_d, f_h, f_w, C/G, F), "bias_weight": (F,)}``;
    ``params_to_rows`` gives CIANNA's rows (``[C/G][f_d][f_h][f_w]``, bias weight last),
    ``rows_to_params`` takes them back exactly, also traced (gradients with respect to
    the rows are the kernel's, rearranged)."""
    net = nn.network([5, 4], 4, [nn.conv([3, 2], 6, nb_groups=2, activation="LIN"),
                                 nn.dense(3, activation="LIN")], bias=0.4)
    params = cj.init_params(jax.random.key(9), net)
    k, b = np.asarray(params[0]["kernel"]), np.asarray(params[0]["bias_weight"])
    assert k.shape == (1, 2, 3, 2, 6) and b.shape == (6,)
    rows = cj.params_to_rows(net, params)
    w = rows[0]["w"]
    assert isinstance(w, np.ndarray) and w.shape == (6, 2 * 2 * 3 + 1)
    for f, c, h, x in itertools.product(range(6), range(2), range(2), range(3)):
        assert w[f, (c * 2 + h) * 3 + x] == k[0, h, x, c, f]
    np.testing.assert_array_equal(w[:, -1], b)
    assert rows[1] is params[1]  # dense: CIANNA's layout already
    back = cj.rows_to_params(net, rows)
    for name in ("kernel", "bias_weight"):
        np.testing.assert_array_equal(np.asarray(back[0][name]), np.asarray(params[0][name]))
    # traced: the gradient with respect to the rows is the kernel's gradient, rearranged
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 4, 5, 4)), np.float32)

    def loss(p):
        return jnp.sum(jnp.sin(cj.apply(net, p, x)))

    g_rows = jax.jit(jax.grad(lambda r: loss(cj.rows_to_params(net, r))))(rows)
    g = jax.jit(jax.grad(loss))(params)
    np.testing.assert_allclose(g_rows[0]["w"], cj.params_to_rows(net, g)[0]["w"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"w: expected CIANNA's conv weights \(6, "):
        cj.rows_to_params(net, ({"w": w[:, 1:]}, params[1]))
    with pytest.raises(ValueError, match="params: expected 2 per-layer dicts"):
        cj.rows_to_params(net, rows[:1])
    # CIANNA's rows given where the core's params are expected: the error says what to do
    with pytest.raises(ValueError, match="CIANNA's weight rows, convert them with rows_to_params"):
        cj.apply(net, rows, x)
    from cianna_jax.network import check_params
    with pytest.raises(ValueError, match=r"params\[0\] \(conv\).*rows_to_params"):
        check_params(net, rows)
