"""Layer-level tests: network shapes, activations on conv and pool outputs, argument
errors, dropout draws, dense layers reading maps.  NumPy references: layer_refs.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_refs import ATOL, RTOL, apply_jit, conv_n, np_conv, np_pool, np_relu, pool_n, rows_to_5d

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import Ctx

# ----------------------------------------------------------------------------- 1. shapes


def test_network_shapes_follow_cianna_formulas():
    # Non-square 2D input, stride, padding, int_padding, asymmetric per-axis values.
    net = nn.network([11, 7], 2, [
        nn.conv([3, 2], 4, stride=[2, 1], padding=[1, 0], int_padding=[0, 1], activation="RELU"),
        nn.pool([3, 2], stride=[2, 1], padding=[1, 1], p_type="AVG"),
        nn.conv([2, 3], 3, stride=[2, 3], padding=[0, 2], activation="LIN"),
        nn.pool(p_global=1),
    ])
    W, H = 11, 7
    cw, ch = conv_n(W, 3, 2, 1, 0), conv_n(H, 2, 1, 0, 1)
    pw, ph = pool_n(cw, 3, 2, 1), pool_n(ch, 2, 1, 1)
    c2w, c2h = conv_n(pw, 2, 2, 0, 0), conv_n(ph, 3, 3, 2, 0)
    expected = [(W, H, 1, 2), (cw, ch, 1, 4), (pw, ph, 1, 4), (c2w, c2h, 1, 3), (1, 1, 1, 3)]
    got = [tuple(net.shapes[0][0][:4])] + [tuple(o[:4]) for _, o in net.shapes]
    assert got == expected
    assert (cw, ch, pw, ph, c2w, c2h) == (6, 12, 3, 13, 1, 5)
    assert net.nd == 2
    assert net.out_dim == 3


def test_network_shapes_3d_and_truncation():
    net = nn.network([5, 4, 6], 1, [
        nn.conv([3, 2, 3], 2, stride=[2, 2, 3], padding=[1, 0, 2], int_padding=[1, 0, 1],
                activation="LIN"),
        nn.pool([2, 3, 2], stride=[1, 2, 2], padding=[1, 1, 0], p_type="MAX"),
        nn.conv([1, 1, 2], 3, stride=[1, 1, 2], activation="LIN"),
    ])
    S = (5, 4, 6)
    c1 = tuple(conv_n(n, f, s, p, i) for n, f, s, p, i in
               zip(S, (3, 2, 3), (2, 2, 3), (1, 0, 2), (1, 0, 1)))
    p1 = tuple(pool_n(n, P, s, p) for n, P, s, p in zip(c1, (2, 3, 2), (1, 2, 2), (1, 1, 0)))
    c2 = tuple(conv_n(n, f, s, 0, 0) for n, f, s in zip(p1, (1, 1, 2), (1, 1, 2)))
    assert tuple(net.shapes[0][1][:4]) == c1 + (2,)
    assert tuple(net.shapes[1][1][:4]) == p1 + (2,)
    assert tuple(net.shapes[2][1][:4]) == c2 + (3,)
    assert c1 == (5, 2, 5) and p1 == (6, 1, 2) and c2 == (6, 1, 1)
    assert net.nd == 3


@pytest.mark.parametrize("S,f,s,p,ip", [
    (7, 3, 2, 0, 0), (6, 3, 2, 1, 0), (6, 2, 2, 0, 1), (5, 4, 3, 2, 2), (9, 5, 4, 1, 0),
    (3, 1, 1, 2, 3),
])
def test_conv_output_size_per_axis(S, f, s, p, ip):
    net = nn.network([S, 4], 1, [nn.conv([f, 1], 1, stride=[s, 1], padding=[p, 0],
                                         int_padding=[ip, 0], activation="LIN")])
    assert net.shapes[0][1].w == math.trunc((S + (S - 1) * ip + 2 * p - f) / s) + 1
    assert net.shapes[0][1].h == 4


@pytest.mark.parametrize("S,P,s,p", [(7, 3, 2, 0), (6, 3, 2, 1), (5, 2, 1, 2), (4, 4, 3, 4)])
def test_pool_output_size_per_axis(S, P, s, p):
    net = nn.network([6, 6], 1, [nn.conv([1, 1], 1, activation="LIN"),
                                 nn.pool([P, 1], stride=[s, 1], padding=[p, 0])])
    # the pool input is the 6x6 conv output
    assert net.shapes[1][1].w == math.trunc((6 + 2 * p - P) / s) + 1
    net2 = nn.network([S, 3], 1, [nn.conv([1, 1], 1, activation="LIN"),
                                  nn.pool([P, 1], stride=[s, 1], padding=[p, 0])])
    assert net2.shapes[1][1].w == math.trunc((S + 2 * p - P) / s) + 1
    assert net2.shapes[1][1].h == 3


def test_pool_default_size_and_global():
    net = nn.network([6, 5, 1], 3, [nn.conv([1, 1], 2, activation="LIN"), nn.pool()])
    assert tuple(net.shapes[1][1][:4]) == (3, 2, 1, 2)
    net3 = nn.network([4, 1, 6], 1, [nn.conv([1, 1, 1], 2, activation="LIN"), nn.pool()])
    # default p_size is 2 only where the network input is > 1
    assert tuple(net3.shapes[1][1][:4]) == (2, 1, 3, 2)
    netg = nn.network([5, 3, 4], 1, [nn.conv([2, 1, 2], 3, activation="LIN"),
                                      nn.pool(p_global=1, p_type="AVG")])
    assert tuple(netg.shapes[1][1][:4]) == (1, 1, 1, 3)


# ----------------------------------------------------------------------------- 7. activations


def _single_conv_net(act, C=2, F=3, in_wh=(4, 3), bias=0.1):
    net = nn.network(list(in_wh), C, [nn.conv([2, 2], F, padding=[1, 0], activation=act)],
                     bias=bias)
    return net


def _run_single_conv(net, wm, x):
    return np.asarray(apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(wm)},)), jnp.asarray(x)), np.float64)


def _conv_pre(net, wm, x, C=2, in_wh=(4, 3)):
    h = np_conv(rows_to_5d(x, C, 1, in_wh[1], in_wh[0]), wm, (2, 2, 1), (1, 1, 1), (1, 0, 0),
                (0, 0, 0), net.input_bias)
    return h.reshape(x.shape[0], -1)


def test_relu_saturation_and_leak_on_conv():
    rng = np.random.default_rng(50)
    net = _single_conv_net("RELU_S1_L0.1")
    act = net.layers[0].activation
    assert (act.kind, act.saturation, act.param) == ("RELU", 1.0, 0.1)
    wm = rng.normal(size=(3, 9)).astype(np.float32)
    x = (1.5 * rng.normal(size=(3, net.input_dim))).astype(np.float32)
    y = _run_single_conv(net, wm, x)
    z = _conv_pre(net, wm, x)
    assert (z < 0).any() and ((z > 0) & (z < 1)).any() and (z > 1).any()
    np.testing.assert_allclose(y, np_relu(z, 1.0, 0.1), rtol=RTOL, atol=ATOL)
    # default RELU: sat 800, leak 0.05
    net_d = _single_conv_net("RELU")
    np.testing.assert_allclose(_run_single_conv(net_d, wm, x), np_relu(z, 800.0, 0.05),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("act,sat,beta", [("LOGI", 6.0, 1.0), ("LOGI_S3_B2", 3.0, 2.0)])
def test_logistic_one_sided_clamp_on_conv(act, sat, beta):
    rng = np.random.default_rng(51)
    net = _single_conv_net(act)
    wm = (10 * rng.normal(size=(3, 9))).astype(np.float32)
    x = rng.normal(size=(4, net.input_dim)).astype(np.float32)
    y = _run_single_conv(net, wm, x)
    z = _conv_pre(net, wm, x)
    ref = 1.0 / (1.0 + np.exp(np.minimum(-beta * z, sat)))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    low = 1.0 / (1.0 + math.exp(sat))
    assert y.min() >= low - 1e-7
    np.testing.assert_allclose(y[(-beta * z) > sat + 0.1], low, rtol=1e-5)
    assert (y[(-beta * z) > sat + 0.1]).size > 0
    assert y.max() == 1.0  # no upper clamp


def test_softmax_on_conv_output_is_per_image():
    rng = np.random.default_rng(52)
    net = _single_conv_net("SMAX")
    wm = rng.normal(size=(3, 9)).astype(np.float32)
    x = rng.normal(size=(3, net.input_dim)).astype(np.float32)
    y = _run_single_conv(net, wm, x)
    z = _conv_pre(net, wm, x)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    # not a per-pixel softmax over channels
    per_pixel = y.reshape(3, 3, -1).sum(axis=1)
    assert np.abs(per_pixel - 1.0).max() > 0.1


def test_softmax_on_pool_output():
    rng = np.random.default_rng(53)
    net = nn.network([4, 4], 1, [nn.conv([1, 1], 3, activation="LIN"),
                                 nn.pool([2, 2], activation="SMAX")], bias=0.0)
    wm = rng.normal(size=(3, 2)).astype(np.float32)
    x = rng.normal(size=(2, 16)).astype(np.float32)
    y = np.asarray(apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(wm)}, {})), jnp.asarray(x)), np.float64)
    h = np_conv(rows_to_5d(x, 1, 1, 4, 4), wm, (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), 0.0)
    z, _ = np_pool(h, (2, 2, 1), (2, 2, 1), (0, 0, 0), "MAX")
    z = z.reshape(2, -1)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    assert y.shape == (2, 12)
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- 8. errors


ERROR_CASES = [
    ("stride>f_size", lambda: nn.conv([3, 3], 4, stride=[4, 1]), ValueError, "stride"),
    ("pool padding>p_size", lambda: nn.network([8, 8], 1, [
        nn.conv([1, 1], 2), nn.pool([2, 2], padding=[3, 0])]), ValueError, "padding"),
    ("pool stride>p_size", lambda: nn.network([8, 8], 1, [
        nn.conv([1, 1], 2), nn.pool([2, 2], stride=[3, 1])]), ValueError, "stride"),
    ("negative f_size", lambda: nn.conv([-3, 3], 4), ValueError, "f_size"),
    ("negative padding", lambda: nn.conv([3, 3], 4, padding=[-1, 0]), ValueError, "padding"),
    ("negative int_padding", lambda: nn.conv([3, 3], 4, int_padding=[0, -1]), ValueError,
     "int_padding"),
    ("zero stride", lambda: nn.conv([3, 3], 4, stride=[0, 1]), ValueError, "stride"),
    ("negative p_size", lambda: nn.pool([2, -2]), ValueError, "p_size"),
    ("zero nb_filters", lambda: nn.conv([3, 3], 0), ValueError, "nb_filters"),
    ("float f_size", lambda: nn.conv([2.5, 3], 4), TypeError, "f_size"),
    ("float nb_filters", lambda: nn.conv([3, 3], 4.0), TypeError, "nb_filters"),
    ("float p_size", lambda: nn.pool([1.5, 2]), TypeError, "p_size"),
    ("float nb_neurons", lambda: nn.dense(10.5), TypeError, "nb_neurons"),
    ("group_size", lambda: nn.network([6, 6], 1, [
        nn.conv([1, 1], 6), nn.norm(group_size=4)]), ValueError, "group_size"),
    ("set_off", lambda: nn.network([6, 6], 1, [
        nn.conv([1, 1], 6), nn.norm(group_size=2, set_off=4)]), ValueError, "set_off"),
    ("norm first", lambda: nn.network([6, 6], 4, [nn.norm(group_size=2)]), ValueError,
     "first"),
    ("lrn first", lambda: nn.network([6, 6], 4, [nn.lrn()]), ValueError, "first"),
    ("norm after dense", lambda: nn.network([6, 6], 1, [
        nn.dense(8), nn.norm(group_size=2)]), ValueError, "dense"),
    ("two pools", lambda: nn.network([8, 8], 1, [
        nn.conv([1, 1], 2), nn.pool([2, 2]), nn.pool([2, 2])]), ValueError, "pool"),
    ("pool after dropout", lambda: nn.network([8, 8], 1, [
        nn.conv([1, 1], 2, drop_rate=0.3), nn.pool([2, 2])]), ValueError, "dropout"),
    ("SMAX hidden", lambda: nn.network([8, 8], 1, [
        nn.conv([3, 3], 2, activation="SMAX"), nn.pool([2, 2])]), ValueError, "SMAX"),
    ("unknown activation", lambda: nn.conv([3, 3], 2, activation="TANH"), ValueError,
     "activation"),
    ("lower-case activation", lambda: nn.dense(3, activation="relu"), ValueError,
     "activation"),
    ("unknown p_type", lambda: nn.pool([2, 2], p_type="MIN"), ValueError, "p_type"),
    ("normal init no scaling (conv)", lambda: nn.conv([3, 3], 2, init_fct="normal"),
     ValueError, "init_scaling"),
    ("normal init no scaling (dense)", lambda: nn.dense(3, init_fct="normal"), ValueError,
     "init_scaling"),
    ("unknown init", lambda: nn.dense(3, init_fct="he"), ValueError, "init_fct"),
    ("conv output < 1", lambda: nn.network([3, 3], 1, [nn.conv([5, 5], 2)]), ValueError,
     "f_size"),
    ("drop_rate", lambda: nn.conv([3, 3], 2, drop_rate=1.5), ValueError, "drop_rate"),
    ("normalization name", lambda: nn.norm("BN"), ValueError, "normalization"),
]


@pytest.mark.parametrize("name,build,exc,pattern", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_arguments_raise(name, build, exc, pattern):
    with pytest.raises(exc, match=pattern):
        build()


def test_valid_edge_arguments_are_accepted():
    # stride == f_size and padding == p_size are allowed (only '>' is rejected)
    net = nn.network([6, 6], 1, [nn.conv([2, 2], 2, stride=[2, 2]),
                                 nn.pool([2, 2], padding=[2, 2])])
    assert tuple(net.shapes[1][1][:4]) == (3, 3, 1, 2)
    # normal init with an explicit scaling is fine
    assert nn.conv([3, 3], 2, init_fct="normal", init_scaling=0.1).init_scaling == 0.1


def test_dropout_uniform_is_jax_random_uniform():
    """The fused threefry draw of dropout gives jax.random.uniform's numbers, bit for
    bit (typed and raw keys, folded keys, any shape, under jit); other dtypes fall back
    to jax.random.uniform itself."""
    from cianna_jax.layers.common import uniform

    typed = jax.random.fold_in(jax.random.key(7), 3)
    raw = jax.random.PRNGKey(11)
    for key in (typed, raw):
        for shape in ((5,), (3, 7), (2, 4, 4, 9)):
            want = np.asarray(jax.random.uniform(key, shape, jnp.float32))
            got = np.asarray(jax.jit(uniform, static_argnums=(1, 2))(key, shape, jnp.float32))
            np.testing.assert_array_equal(got, want)
    half = uniform(typed, (4, 6), jnp.bfloat16)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(half, np.float32), np.asarray(
        jax.random.uniform(typed, (4, 6), jnp.bfloat16), np.float32))


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 3, 4, 5, 3)])
def test_dense_on_a_map_is_cianna_channel_major_flatten_with_slot(shape):
    """A dense layer reading a map (2D or 3D, channel-last inside) gives the product of
    CIANNA's channel-major flattened row, bias slot appended, with its (I, N + 1) weights:
    outputs, input gradient and weight gradient (slot row included)."""
    from cianna_jax.layers.common import map_to_flat_cmajor
    from cianna_jax.layers.dense import Dense

    layer = Dense(7, cj.activations.parse_activation("LIN"), bias=0.3)
    x = jax.random.normal(jax.random.key(0), shape)
    n_in = int(np.prod(shape[1:])) + 1
    w = jax.random.normal(jax.random.key(1), (n_in, 8))
    ctx = Ctx(nd=len(shape) - 2)

    def ours(x, w):
        return layer.apply({"w": w}, x, ctx)

    def cianna(x, w):
        flat = map_to_flat_cmajor(x)
        row = jnp.concatenate([flat, jnp.full((flat.shape[0], 1), 0.3)], axis=1)
        return jnp.dot(row, w, precision="highest")

    r = jax.random.normal(jax.random.key(2), (shape[0], 8))

    @jax.jit  # one program (eager autodiff compiles one per operation)
    def both(x, w):
        return [(f(x, w), jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) * r), argnums=(0, 1))(x, w))
                for f in (ours, cianna)]

    (y, (gx, gw)), (y_ref, (gx_ref, gw_ref)) = both(x, w)
    for a, b in ((y, y_ref), (gx, gx_ref), (gw, gw_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected input width"):
        layer.apply({"w": w[1:]}, x, ctx)


def test_dense_on_a_map_in_bfloat16_keeps_the_policy_dtypes():
    """Under a 16-bit policy the map product (a whole-map convolution without a gradient,
    products on the flattened map with one) gives the 16-bit output of the f32-accumulated
    sum, and gradients in the dtypes of the map (bfloat16) and of the weights (float32)."""
    from cianna_jax.layers.dense import Dense

    policy = cj.precision.get_policy("BF16C_FP32A")
    layer = Dense(5, cj.activations.parse_activation("LIN"), bias=0.5)
    x = jax.random.normal(jax.random.key(0), (3, 4, 4, 6)).astype(jnp.bfloat16)
    w = jax.random.normal(jax.random.key(1), (4 * 4 * 6 + 1, 6))
    ctx = Ctx(nd=2, policy=policy)
    rows = jnp.moveaxis(w[:-1].reshape(6, 16, 6), 0, 1).reshape(96, 6).astype(jnp.bfloat16)
    want = (jnp.dot(x.reshape(3, -1), rows, preferred_element_type=jnp.float32)
            + 0.5 * w[-1]).astype(jnp.bfloat16)

    @jax.jit
    def run(x, w):
        y = layer.apply({"w": w}, x, ctx)
        g = jax.grad(lambda x, w: jnp.sum(layer.apply({"w": w}, x, ctx).astype(jnp.float32)),
                     argnums=(0, 1))(x, w)
        return y, g

    y, (gx, gw) = run(x, w)
    assert y.dtype == jnp.bfloat16 and gx.dtype == jnp.bfloat16 and gw.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want, np.float32),
                               rtol=1e-2, atol=1e-2)
    # d(sum)/dx = the row sums of the (bfloat16) weights; d/dw: the flattened map's column
    # sums on the weight rows, the batch size times the bias on the slot row
    np.testing.assert_allclose(np.asarray(gx, np.float32).reshape(3, 96),
                               np.broadcast_to(np.asarray(rows, np.float32).sum(1), (3, 96)),
                               rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(gw[-1], np.full(6, 1.5), rtol=1e-6)
