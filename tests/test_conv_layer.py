"""The conv layer against NumPy references (layer_refs.py): forward in 2D and 3D, and
CIANNA's input gradient, its exact cases and its deliberate deviations (B5, B6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_refs import (
    RTOL,
    apply_jit,
    build_conv,
    conv_layer_vjp,
    exact_conv_grads,
    np_conv,
    np_conv_input_grad_cianna,
    rev,
    rows_to_5d,
)

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers.conv import conv_nd

# ----------------------------------------------------------------------------- 2. conv forward


def test_conv_forward_2d_two_layers_through_apply():
    rng = np.random.default_rng(0)
    c = 3
    g1 = dict(f=(3, 2, 1), s=(2, 1, 1), p=(1, 1, 0), ip=(0, 1, 0))
    g2 = dict(f=(2, 3, 1), s=(1, 2, 1), p=(0, 2, 0), ip=(1, 0, 0))
    net = nn.network([7, 5], c, [
        nn.conv([3, 2], 4, stride=[2, 1], padding=[1, 1], int_padding=[0, 1],
                activation="LIN", bias=123.0),  # first layer: bias overridden by init bias
        nn.conv([2, 3], 2, stride=[1, 2], padding=[0, 2], int_padding=[1, 0],
                activation="LIN"),              # LIN default bias 0.5
    ], bias=0.7)
    assert net.layers[0].bias == pytest.approx(0.7)
    assert net.layers[1].bias == pytest.approx(0.5)
    params = cj.init_params(jax.random.key(0), net)
    w1 = rng.normal(size=cj.params_to_rows(net, params)[0]["w"].shape).astype(np.float32)
    w2 = rng.normal(size=cj.params_to_rows(net, params)[1]["w"].shape).astype(np.float32)
    assert w1.shape == (4, 3 * 2 * 3 + 1) and w2.shape == (2, 2 * 3 * 4 + 1)
    x = rng.normal(size=(2, net.input_dim)).astype(np.float32)
    y = apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(w1)}, {"w": jnp.asarray(w2)})), jnp.asarray(x))
    x5 = rows_to_5d(x, c, 1, 5, 7)
    h1 = np_conv(x5, w1, bias=0.7, **g1)
    h2 = np_conv(h1, w2, bias=0.5, **g2)
    out = net.output_shape
    assert h2.shape[1:] == (out.c, out.d, out.h, out.w)
    assert y.shape == (2, net.out_dim)
    np.testing.assert_allclose(np.asarray(y), h2.reshape(2, -1), rtol=RTOL, atol=1e-4)


def test_conv_forward_3d_through_apply():
    rng = np.random.default_rng(1)
    W, H, D, c = 5, 4, 3, 2
    geo = dict(f=(3, 2, 2), s=(2, 1, 1), p=(1, 0, 1), ip=(0, 1, 1))
    net = nn.network([W, H, D], c, [nn.conv(list(geo["f"]), 3, stride=list(geo["s"]),
                                            padding=list(geo["p"]),
                                            int_padding=list(geo["ip"]), activation="LIN")],
                     bias=-0.4)
    assert net.nd == 3
    params = cj.init_params(jax.random.key(1), net)
    wm = rng.normal(size=cj.params_to_rows(net, params)[0]["w"].shape).astype(np.float32)
    assert wm.shape == (3, 3 * 2 * 2 * 2 + 1)
    x = rng.normal(size=(2, net.input_dim)).astype(np.float32)
    y = apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(wm)},)), jnp.asarray(x))
    ref = np_conv(rows_to_5d(x, c, D, H, W), wm, bias=-0.4, **geo)
    out = net.output_shape
    assert ref.shape[1:] == (out.c, out.d, out.h, out.w)
    np.testing.assert_allclose(np.asarray(y), ref.reshape(2, -1), rtol=RTOL, atol=1e-4)


def test_conv_bias_weight_only():
    """With zero filter taps, the output is exactly w[:, -1] * bias everywhere."""
    net = nn.network([4, 3], 2, [nn.conv([2, 2], 3, activation="LIN"),
                                 nn.conv([1, 1], 2, activation="LIN", bias=-2.5)], bias=0.3)
    p = cj.init_params(jax.random.key(0), net)
    w1 = np.zeros(cj.params_to_rows(net, p)[0]["w"].shape, np.float32)
    w1[:, -1] = [1.0, -2.0, 4.0]
    w2 = np.zeros(cj.params_to_rows(net, p)[1]["w"].shape, np.float32)
    w2[:, 0] = 1.0          # copies channel 0
    w2[:, -1] = [0.0, 1.0]  # plus 1 * (-2.5) for filter 1
    y = np.asarray(apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(w1)}, {"w": jnp.asarray(w2)})),
                            jnp.ones((1, 24)))).reshape(2, -1)
    np.testing.assert_allclose(y[0], 0.3, rtol=1e-6)
    np.testing.assert_allclose(y[1], 0.3 - 2.5, rtol=1e-6)


def test_filter_larger_than_padded_input_is_rejected():
    # C truncation would declare N = 1 where no filter position fits: a clear error instead
    with pytest.raises(ValueError, match=r"f_size: the filter \(2\) is larger"):
        nn.network([1, 4], 1, [nn.conv([2, 1], 1, stride=[2, 1], activation="LIN")])
    with pytest.raises(ValueError, match=r"p_size: the window \(3\) is larger"):
        nn.network([2, 4], 1, [nn.conv([1, 1], 1), nn.pool([3, 1], stride=[1, 1])])


# ----------------------------------------------------------------------------- 3. conv backward

EXACT_CASES = [
    # (in (W,H,D), C, f, s, p, ip, F): p <= f-1 and divisible geometry
    ((7, 5, 1), 2, (3, 3, 1), (2, 2, 1), (1, 1, 0), (0, 0, 0), 3),
    ((4, 5, 1), 3, (3, 2, 1), (2, 1, 1), (1, 1, 0), (1, 0, 0), 2),
    ((5, 3, 1), 1, (3, 3, 1), (2, 1, 1), (0, 2, 0), (1, 1, 0), 2),
    ((5, 4, 3), 2, (3, 2, 3), (2, 2, 1), (1, 0, 2), (0, 0, 1), 2),
    ((3, 4, 4), 1, (3, 3, 2), (1, 1, 2), (2, 1, 0), (1, 0, 0), 3),
]


def _random_case(rng, in_whd, c, f, s, p, ip, F):
    net = build_conv(in_whd, c, f, s, p, ip, F=F, bias=0.3)
    layer = net.layers[0]
    wm = rng.normal(size=(F, f[0] * f[1] * f[2] * c + 1)).astype(np.float32)
    W, H, D = in_whd
    x5 = rng.normal(size=(2, c, D, H, W)).astype(np.float32)
    o = net.shapes[0][1]
    g5 = rng.normal(size=(2, F, o.d, o.h, o.w)).astype(np.float32)
    return net, layer, wm, x5, g5


@pytest.mark.parametrize("case", EXACT_CASES)
def test_conv_input_grad_exact_when_divisible(case):
    in_whd, c, f, s, p, ip, F = case
    for a in range(3):
        S = in_whd[a]
        assert p[a] <= f[a] - 1 and (S + (S - 1) * ip[a] + 2 * p[a] - f[a]) % s[a] == 0
    rng = np.random.default_rng(10)
    net, layer, wm, x5, g5 = _random_case(rng, *case)
    y5, dx, dw = conv_layer_vjp(layer, wm, x5, g5, net.nd)
    np.testing.assert_allclose(y5, np_conv(x5, wm, f, s, p, ip, 0.3), rtol=RTOL, atol=1e-4)
    dx_ex, dw_ex = exact_conv_grads(x5, wm, g5, f, s, p, ip, 0.3)
    np.testing.assert_allclose(dx, dx_ex, rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ex, rtol=RTOL, atol=1e-4)
    # and the closed form of section 4.3 agrees as well in this regime
    cf = np_conv_input_grad_cianna(g5, wm, c, rev(in_whd), f, s, p, ip)
    np.testing.assert_allclose(dx, cf, rtol=RTOL, atol=1e-4)


DEVIATING_CASES = [
    # B5: padding >= f_size (f=1, p=1 along W)
    pytest.param(((4, 3, 1), 2, (1, 3, 1), (1, 1, 1), (1, 1, 0), (0, 0, 0), 2), id="B5-f1p1"),
    pytest.param(((5, 4, 1), 1, (2, 1, 1), (1, 1, 1), (3, 2, 0), (1, 0, 0), 2), id="B5-f2p3-ip"),
    pytest.param(((3, 4, 3), 1, (2, 2, 1), (2, 1, 1), (1, 0, 2), (0, 0, 0), 2), id="B5-3d"),
    # B6: S=6, f=3, p=1, s=2 -> last row and column receive 0
    pytest.param(((6, 6, 1), 2, (3, 3, 1), (2, 2, 1), (1, 1, 0), (0, 0, 0), 2), id="B6-S6f3p1s2"),
    pytest.param(((4, 5, 1), 1, (2, 3, 1), (2, 2, 1), (1, 1, 0), (1, 0, 0), 3), id="B6-ip"),
    pytest.param(((6, 3, 4), 1, (3, 2, 3), (2, 1, 2), (1, 1, 1), (0, 0, 0), 2), id="B6-3d"),
]


@pytest.mark.parametrize("case", DEVIATING_CASES)
def test_conv_input_grad_reproduces_cianna_deviations(case):
    in_whd, c, f, s, p, ip, F = case
    rng = np.random.default_rng(11)
    net, layer, wm, x5, g5 = _random_case(rng, *case)
    _, dx, dw = conv_layer_vjp(layer, wm, x5, g5, net.nd)
    cf = np_conv_input_grad_cianna(g5, wm, c, rev(in_whd), f, s, p, ip)
    np.testing.assert_allclose(dx, cf, rtol=RTOL, atol=1e-4)
    dx_ex, dw_ex = exact_conv_grads(x5, wm, g5, f, s, p, ip, 0.3)
    # CIANNA's input gradient really differs from the exact one here ...
    assert np.abs(dx - dx_ex).max() > 1e-2
    # ... but the weight gradient is always exact.
    np.testing.assert_allclose(dw, dw_ex, rtol=RTOL, atol=1e-4)


def test_conv_b6_last_row_and_column_get_zero():
    rng = np.random.default_rng(12)
    case = ((6, 6, 1), 1, (3, 3, 1), (2, 2, 1), (1, 1, 0), (0, 0, 0), 2)
    net, layer, wm, x5, g5 = _random_case(rng, *case)
    _, dx, _ = conv_layer_vjp(layer, wm, x5, g5, 2)
    dx_ex, _ = exact_conv_grads(x5, wm, g5, *case[2:6], 0.3)
    assert np.all(dx[..., 5, :] == 0) and np.all(dx[..., :, 5] == 0)
    assert np.abs(dx_ex[..., 5, :]).max() > 1e-2  # exact gradient is not zero there
    np.testing.assert_allclose(dx[..., :5, :5], dx_ex[..., :5, :5], rtol=RTOL, atol=1e-4)


def test_conv_b5_gradient_is_shifted():
    """f=1, p=1 (1D along W): delta_in[w] = W * delta[w] instead of W * delta[w+1]."""
    net = build_conv((4, 1, 1), 1, (1, 1, 1), (1, 1, 1), (1, 0, 0), (0, 0, 0), F=1)
    wm = np.array([[2.0, 0.0]], np.float32)
    x5 = np.zeros((1, 1, 1, 1, 4), np.float32)
    g5 = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 1, 1, 6)  # N = 6
    _, dx, _ = conv_layer_vjp(net.layers[0], wm, x5, g5, 2)
    np.testing.assert_allclose(dx.ravel(), [2.0, 4.0, 6.0, 8.0])  # exact would be 4,6,8,10


def _sweep_cases():
    rng = np.random.default_rng(123)
    cases = []
    while len(cases) < 14:
        axes = []
        for _ in range(2):
            while True:
                f = int(rng.integers(1, 5))
                s = int(rng.integers(1, f + 1))
                p = int(rng.integers(0, f + 2))
                ip = int(rng.integers(0, 3))
                S = int(rng.integers(1, 7))
                dil = S + (S - 1) * ip
                if dil + 2 * p < f:   # filter larger than padded input: rejected at build
                    continue
                axes.append((S, f, s, p, ip))
                break
        (Sw, fw, sw, pw, ipw), (Sh, fh, sh, ph, iph) = axes
        cases.append(((Sw, Sh, 1), 2, (fw, fh, 1), (sw, sh, 1), (pw, ph, 0), (ipw, iph, 0), 2))
    return cases


def test_conv_input_grad_closed_form_sweep():
    rng = np.random.default_rng(13)
    for case in _sweep_cases():
        in_whd, c, f, s, p, ip, F = case
        net, layer, wm, x5, g5 = _random_case(rng, *case)
        _, dx, dw = conv_layer_vjp(layer, wm, x5, g5, 2)
        cf = np_conv_input_grad_cianna(g5, wm, c, rev(in_whd), f, s, p, ip)
        np.testing.assert_allclose(dx, cf, rtol=RTOL, atol=1e-4, err_msg=str(case))
        _, dw_ex = exact_conv_grads(x5, wm, g5, f, s, p, ip, 0.3)
        np.testing.assert_allclose(dw, dw_ex, rtol=RTOL, atol=1e-4, err_msg=str(case))


def test_conv_input_grad_limit_uses_c_truncation():
    x = jnp.asarray([1.0, 2.0], jnp.float32).reshape(1, 1, 2, 1)      # (B, H, W, C)
    k = jnp.asarray([1.0, 2.0, 3.0, 4.0], jnp.float32).reshape(1, 4, 1, 1)  # (fh, fw, C, F)
    y, vjp = jax.vjp(lambda v: conv_nd(v, k, (1, 4), (0, 2), (1, 2)), x)
    assert np.asarray(y).ravel().tolist() == [3.0]  # padded [0,0,x0,0,x1,0,0], taps 0..3
    (dx,) = vjp(jnp.ones_like(y))
    # closed form of section 4.3 (trunc) == exact gradient here: [k[2], 0]
    expected = np_conv_input_grad_cianna(np.ones((1, 1, 1, 1, 1)), np.array([[1, 2, 3, 4, 0.0]]),
                                         1, (1, 1, 2), (4, 1, 1), (4, 1, 1), (2, 0, 0),
                                         (1, 0, 0))
    assert expected.ravel().tolist() == [3.0, 0.0]
    np.testing.assert_allclose(np.asarray(dx).ravel(), [3.0, 0.0])
