"""Layer-level tests of cianna_jax against independent NumPy references.

References follow /work/shared/spec/cianna_layers.md sections 1-8, 13 and 14
(including CIANNA's deliberate defects B5, B6 and B7).  Geometry tuples are in
CIANNA (W, H, D) order; the package's internal map layout is (B, *spatial, C)
with spatial (D, H, W) trimmed to ``nd`` axes.  NumPy references work on
(B, C, D, H, W) arrays in float64.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import Ctx
from cianna_jax.layers.conv import conv_nd

RTOL = 1e-5
ATOL = 2e-5


# ----------------------------------------------------------------------------- helpers

@partial(jax.jit, static_argnums=0)
def apply_jit(net, params, rows):
    """cj.apply on CIANNA input rows, returning CIANNA output rows (the layout of the
    NumPy references): ``rows_to_images`` in, ``output_rows`` out.  Under jit (the
    Network is static and hashable): one compilation per network instead of one per
    eager primitive keeps the file fast."""
    return cj.output_rows(net, cj.apply(net, params, cj.rows_to_images(net, rows)))


def ctrunc(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def conv_n(s, f, st, p, ip):
    return ctrunc(s + (s - 1) * ip + 2 * p - f, st) + 1


def pool_n(s, P, st, p):
    return ctrunc(s + 2 * p - P, st) + 1


def rev(t):
    """(W, H, D) -> (D, H, W)."""
    return tuple(reversed(tuple(t)))


def rows_to_5d(rows, c, d, h, w):
    """CIANNA flat rows (B, C*D*H*W) -> (B, C, D, H, W)."""
    return np.asarray(rows, np.float64).reshape(-1, c, d, h, w)


def to_internal(x5, nd):
    """(B, C, D, H, W) -> internal (B, [D,] H, W, C)."""
    x = np.moveaxis(np.asarray(x5), 1, -1)
    if nd == 2:
        assert x.shape[1] == 1
        x = x[:, 0]
    return jnp.asarray(x, jnp.float32)


def from_internal(y, nd):
    """internal (B, [D,] H, W, C) -> (B, C, D, H, W) float64."""
    y = np.asarray(y, np.float64)
    if nd == 2:
        y = y[:, None]
    return np.moveaxis(y, -1, 1)


def np_conv(x, wm, f, s, p, ip, bias):
    """Direct cross-correlation of the dilated + zero-padded input.

    x (B, C, D, H, W); wm (F, K*C + 1) in CIANNA order; geometry in (W, H, D).
    """
    x = np.asarray(x, np.float64)
    wm = np.asarray(wm, np.float64)
    b, c = x.shape[:2]
    S = x.shape[2:]
    fD, sD, pD, ipD = rev(f), rev(s), rev(p), rev(ip)
    dil = [n + (n - 1) * i for n, i in zip(S, ipD)]
    xd = np.zeros((b, c, *dil))
    xd[:, :, :: 1 + ipD[0], :: 1 + ipD[1], :: 1 + ipD[2]] = x
    xp = np.pad(xd, [(0, 0), (0, 0)] + [(q, q) for q in pD])
    N = [conv_n(n, ff, st, q, i) for n, ff, st, q, i in zip(S, fD, sD, pD, ipD)]
    F = wm.shape[0]
    k = wm[:, :-1].reshape(F, c, *fD)
    out = np.zeros((b, F, *N))
    for kd, kh, kw in itertools.product(*[range(v) for v in fD]):
        patch = xp[:, :,
                   kd: kd + (N[0] - 1) * sD[0] + 1: sD[0],
                   kh: kh + (N[1] - 1) * sD[1] + 1: sD[1],
                   kw: kw + (N[2] - 1) * sD[2] + 1: sD[2]]
        out += np.einsum("fc,bcxyz->bfxyz", k[:, :, kd, kh, kw], patch)
    return out + bias * wm[:, -1][None, :, None, None, None]


def axis_map(S, N, f, s, p, ip):
    """CIANNA's closed-form backward (section 4.3) along one axis: A[w, x, k] = 1
    when x*s + k = w*(1+ip) + p_eff and w <= trunc(((N-1)*s + f - 1 - 2*p_eff)/(1+ip))."""
    pe = min(p, f - 1)
    lim = ctrunc((N - 1) * s + f - 1 - 2 * pe, 1 + ip)
    A = np.zeros((S, N, f))
    for w in range(S):
        if w > lim:
            continue
        for x in range(N):
            k = w * (1 + ip) + pe - x * s
            if 0 <= k < f:
                A[w, x, k] = 1.0
    return A


def np_conv_input_grad_cianna(g, wm, c, S, f, s, p, ip):
    """g (B, F, Nd, Nh, Nw) -> CIANNA's delta_in (B, C, D, H, W); S in (D, H, W)."""
    g = np.asarray(g, np.float64)
    wm = np.asarray(wm, np.float64)
    F = wm.shape[0]
    fD, sD, pD, ipD = rev(f), rev(s), rev(p), rev(ip)
    k = wm[:, :-1].reshape(F, c, *fD)
    N = g.shape[2:]
    A = [axis_map(S[a], N[a], fD[a], sD[a], pD[a], ipD[a]) for a in range(3)]
    return np.einsum("fcijk,bfxyz,uxi,vyj,wzk->bcuvw", k, g, A[0], A[1], A[2])


def exact_conv_grads(x5, wm, g5, f, s, p, ip, bias):
    """Autodiff of a plain lax.conv_general_dilated forward (NCDHW / OIDHW)."""
    c = x5.shape[1]
    F = wm.shape[0]
    fD, sD, pD, ipD = rev(f), rev(s), rev(p), rev(ip)
    xj = jnp.asarray(x5, jnp.float32)
    kj = jnp.asarray(np.asarray(wm)[:, :-1].reshape(F, c, *fD), jnp.float32)

    def fwd(xx, kk):
        return lax.conv_general_dilated(
            xx, kk, window_strides=sD, padding=[(q, q) for q in pD],
            lhs_dilation=tuple(1 + i for i in ipD),
            dimension_numbers=("NCDHW", "OIDHW", "NCDHW"),
            precision=lax.Precision.HIGHEST)

    @jax.jit
    def run(xx, kk, gg):
        y, vjp = jax.vjp(fwd, xx, kk)
        return (y,) + vjp(gg)

    y, dx, dk = run(xj, kj, jnp.asarray(g5, jnp.float32))
    assert y.shape == g5.shape
    dw = np.concatenate(
        [np.asarray(dk, np.float64).reshape(F, -1),
         bias * np.asarray(g5, np.float64).sum(axis=(0, 2, 3, 4))[:, None]], axis=1)
    return np.asarray(dx, np.float64), dw


def conv_layer_vjp(layer, wm, x5, g5, nd):
    """Package conv layer (LIN) forward + vjp in internal layout; returns
    (y5, dx5, dw) in (B, C, D, H, W) / CIANNA weight layout."""
    xi = to_internal(x5, nd)
    w = jnp.asarray(wm, jnp.float32)
    gi = to_internal(g5, nd)

    @jax.jit  # one compilation per geometry instead of many eager op compilations
    def run(xx, ww, gg):
        y, vjp = jax.vjp(lambda a, b: layer.apply(layer.from_rows(b), a, Ctx(nd=nd)),
                        xx, ww)
        return (y,) + vjp(gg)

    y, dx, dw = run(xi, w, gi)
    assert y.shape == gi.shape
    return from_internal(y, nd), from_internal(dx, nd), np.asarray(dw, np.float64)


def build_conv(in_whd, c, f, s, p, ip, F=2, bias=0.1):
    net = nn.network(list(in_whd), c, [nn.conv(list(f), F, stride=list(s), padding=list(p),
                                               int_padding=list(ip), activation="LIN")],
                     bias=bias)
    return net


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


# ----------------------------------------------------------------------------- 4. pooling


def np_pool(x5, P, s, p, p_type, g5=None):
    """Pool forward (and backward when g5 is given); geometry (W, H, D).

    MAX keeps the first maximum in (d, h, w) scan order with strict '>'; an all-padding
    window gives 0.  AVG divides by the number of real cells forward and by the full
    window volume backward (B7)."""
    x5 = np.asarray(x5, np.float64)
    B, C = x5.shape[:2]
    S = x5.shape[2:]
    PD, sD, pD = rev(P), rev(s), rev(p)
    N = [pool_n(n, q, st, pp) for n, q, st, pp in zip(S, PD, sD, pD)]
    y = np.zeros((B, C, *N))
    dx = np.zeros_like(x5)
    vol = PD[0] * PD[1] * PD[2]
    for b, c in itertools.product(range(B), range(C)):
        for o in itertools.product(*[range(n) for n in N]):
            cells = []
            for q in itertools.product(*[range(v) for v in PD]):
                i = tuple(o[a] * sD[a] - pD[a] + q[a] for a in range(3))
                if all(0 <= i[a] < S[a] for a in range(3)):
                    cells.append(i)
            if p_type == "MAX":
                best, arg = None, None
                for i in cells:
                    v = x5[(b, c) + i]
                    if best is None or v > best:
                        best, arg = v, i
                y[(b, c) + o] = 0.0 if best is None else best
                if g5 is not None and arg is not None:
                    dx[(b, c) + arg] += g5[(b, c) + o]
            else:
                vals = [x5[(b, c) + i] for i in cells]
                y[(b, c) + o] = np.sum(vals) / len(vals) if vals else np.nan
                if g5 is not None:
                    for i in cells:
                        dx[(b, c) + i] += g5[(b, c) + o] / vol
    return y, dx


def pool_layer_vjp(layer, x5, g5, nd):
    @jax.jit
    def run(xx, gg):
        y, vjp = jax.vjp(lambda v: layer.apply({}, v, Ctx(nd=nd)), xx)
        return (y,) + vjp(gg)

    y, dx = run(to_internal(x5, nd), to_internal(g5, nd))
    return from_internal(y, nd), from_internal(dx, nd)


def _pool_net(in_whd, c, **kw):
    net = nn.network(list(in_whd), c, [nn.conv([1, 1, 1], c, activation="LIN"), nn.pool(**kw)])
    return net, net.layers[1], net.shapes[1][1]


POOL_CASES = [
    pytest.param((5, 4, 1), (3, 2, 1), (2, 1, 1), (1, 1, 0), id="2d-overlap-pad"),
    pytest.param((6, 5, 1), (2, 3, 1), (2, 2, 1), (0, 1, 0), id="2d-nonsquare"),
    pytest.param((4, 3, 5), (2, 2, 3), (2, 1, 2), (1, 0, 1), id="3d"),
]


@pytest.mark.parametrize("p_type", ["MAX", "AVG"])
@pytest.mark.parametrize("in_whd,P,s,p", POOL_CASES)
def test_pool_forward_and_backward(in_whd, P, s, p, p_type):
    rng = np.random.default_rng(20)
    c = 3
    net, layer, out = _pool_net(in_whd, c, p_size=list(P), stride=list(s), padding=list(p),
                                p_type=p_type)
    W, H, D = in_whd
    if p_type == "MAX":   # small integers: many ties inside windows
        x5 = rng.integers(-1, 2, size=(2, c, D, H, W)).astype(np.float32)
    else:
        x5 = rng.normal(size=(2, c, D, H, W)).astype(np.float32)
    g5 = rng.normal(size=(2, c, out.d, out.h, out.w)).astype(np.float32)
    y, dx = pool_layer_vjp(layer, x5, g5, net.nd)
    y_ref, dx_ref = np_pool(x5, P, s, p, p_type, g5)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=ATOL)
    if p_type == "MAX":
        # the tie-breaking rule matters for this input: the LAST maximum would differ
        assert np.abs(_last_max_grad(x5, P, s, p, g5) - dx_ref).max() > 1e-3
    else:
        # B7: the exact gradient (valid-count divisor) differs at the padded border
        if any(v > 0 for v in p):
            assert np.abs(_avg_exact_grad(x5, P, s, p, g5) - dx).max() > 1e-3


def _last_max_grad(x5, P, s, p, g5):
    """MAX backward routing to the LAST maximum (used to show ties matter)."""
    x5 = np.asarray(x5, np.float64)
    S = x5.shape[2:]
    PD, sD, pD = rev(P), rev(s), rev(p)
    dx = np.zeros_like(x5)
    for b, c in itertools.product(range(x5.shape[0]), range(x5.shape[1])):
        for o in itertools.product(*[range(n) for n in g5.shape[2:]]):
            best, arg = None, None
            for q in itertools.product(*[range(v) for v in PD]):
                i = tuple(o[a] * sD[a] - pD[a] + q[a] for a in range(3))
                if all(0 <= i[a] < S[a] for a in range(3)):
                    v = x5[(b, c) + i]
                    if best is None or v >= best:
                        best, arg = v, i
            if arg is not None:
                dx[(b, c) + arg] += g5[(b, c) + o]
    return dx


def _avg_exact_grad(x5, P, s, p, g5):
    S = x5.shape[2:]
    PD, sD, pD = rev(P), rev(s), rev(p)
    dx = np.zeros(x5.shape)
    for b, c in itertools.product(range(x5.shape[0]), range(x5.shape[1])):
        for o in itertools.product(*[range(n) for n in g5.shape[2:]]):
            cells = [i for i in (tuple(o[a] * sD[a] - pD[a] + q[a] for a in range(3))
                                 for q in itertools.product(*[range(v) for v in PD]))
                     if all(0 <= i[a] < S[a] for a in range(3))]
            for i in cells:
                dx[(b, c) + i] += g5[(b, c) + o] / len(cells)
    return dx


def test_pool_all_padding_window():
    """padding == p_size is allowed: MAX gives 0 there, AVG gives NaN (B8)."""
    rng = np.random.default_rng(21)
    x5 = (rng.normal(size=(1, 2, 1, 2, 2)) + 5.0).astype(np.float32)  # all positive
    for p_type in ("MAX", "AVG"):
        net, layer, out = _pool_net((2, 2, 1), 2, p_size=[2, 2], stride=[2, 2],
                                    padding=[2, 2], p_type=p_type)
        assert (out.w, out.h) == (3, 3)
        g5 = np.ones((1, 2, 1, 3, 3), np.float32)
        y, dx = pool_layer_vjp(layer, x5, g5, 2)
        y_ref, dx_ref = np_pool(x5, (2, 2, 1), (2, 2, 1), (2, 2, 0), p_type, g5)
        np.testing.assert_allclose(y[..., 1, 1], y_ref[..., 1, 1], rtol=RTOL)
        if p_type == "MAX":
            assert np.all(y[..., 0, :] == 0) and np.all(y[..., :, 2] == 0)
            np.testing.assert_allclose(y, y_ref, rtol=RTOL)
            np.testing.assert_allclose(dx, dx_ref, rtol=RTOL)
            assert np.all(np.isfinite(dx))
        else:
            assert np.all(np.isnan(y[..., 0, :])) and np.all(np.isnan(y[..., :, 2]))
            np.testing.assert_allclose(y[:, :, 0, 1, 1], x5.mean(axis=(2, 3, 4)), rtol=RTOL)



def test_max_pool_gradient_is_a_select_not_a_scatter(monkeypatch):
    """The max cell is picked by a mask of the first argmax: the same outputs and
    gradients, bit for bit, as picking it with a gather, whose gradient compiled to a
    scatter-add into a zero-filled array of all the window cells (2-3x slower on CPU at
    detector sizes)."""
    from cianna_jax.layers import pool as pool_mod

    x = jnp.asarray(np.random.default_rng(3).integers(-1, 2, size=(2, 6, 7, 3)), jnp.float32)

    def grad_of(masked):
        monkeypatch.setattr(pool_mod, "MASKED_MAX", masked)
        fn = jax.value_and_grad(lambda x: jnp.sum(jnp.cos(
            pool_mod._max_pool(x, (3, 2), (2, 2), (1, 0), (3, 3)))))
        return jax.jit(fn)(x), str(jax.make_jaxpr(fn)(x))

    (val, grad), jaxpr = grad_of(True)
    (val0, grad0), jaxpr0 = grad_of(False)
    assert float(val) == float(val0)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(grad0))
    assert "scatter" not in jaxpr and "scatter" in jaxpr0

@pytest.mark.parametrize("p_type", ["MAX", "AVG"])
@pytest.mark.parametrize("in_whd", [(4, 3, 1), (3, 2, 4)])
def test_global_pool(in_whd, p_type):
    rng = np.random.default_rng(22)
    c = 2
    net, layer, out = _pool_net(in_whd, c, p_global=1, p_type=p_type)
    assert (out.w, out.h, out.d, out.c) == (1, 1, 1, c)
    W, H, D = in_whd
    x5 = rng.integers(-2, 3, size=(2, c, D, H, W)).astype(np.float32)
    g5 = rng.normal(size=(2, c, 1, 1, 1)).astype(np.float32)
    y, dx = pool_layer_vjp(layer, x5, g5, net.nd)
    y_ref, dx_ref = np_pool(x5, in_whd, in_whd, (0, 0, 0), p_type, g5)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=ATOL)


def test_conv_then_pool_through_apply():
    rng = np.random.default_rng(23)
    net = nn.network([6, 5], 2, [
        nn.conv([2, 2], 3, padding=[1, 0], activation="LIN"),
        nn.pool([3, 2], stride=[2, 2], padding=[1, 1], p_type="AVG"),
    ], bias=0.2)
    p = cj.init_params(jax.random.key(0), net)
    wm = rng.normal(size=cj.params_to_rows(net, p)[0]["w"].shape).astype(np.float32)
    x = rng.normal(size=(3, net.input_dim)).astype(np.float32)
    y = apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(wm)}, {})), jnp.asarray(x))
    h = np_conv(rows_to_5d(x, 2, 1, 5, 6), wm, (2, 2, 1), (1, 1, 1), (1, 0, 0), (0, 0, 0), 0.2)
    ref, _ = np_pool(h, (3, 2, 1), (2, 2, 1), (1, 1, 0), "AVG")
    assert y.shape == (3, net.out_dim)
    np.testing.assert_allclose(np.asarray(y), ref.reshape(3, -1), rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- 5. group norm

GN_EPS = 1e-3


def np_gn(x5, gamma, beta, G, set_off):
    x5 = np.asarray(x5, np.float64)
    C = x5.shape[1]
    ng = C // G
    y = x5.copy()
    for b in range(x5.shape[0]):
        for g in range(ng - set_off):
            v = x5[b, g * G:(g + 1) * G]
            m = v.mean()
            var = ((v - m) ** 2).mean()
            y[b, g * G:(g + 1) * G] = gamma[g] * (v - m) / np.sqrt(var + GN_EPS) + beta[g]
    return y


def np_gn_backward(x5, gamma, G, set_off, d5):
    """Section 6 closed form: returns (dx, dgamma, dbeta) summed over the batch."""
    x5 = np.asarray(x5, np.float64)
    d5 = np.asarray(d5, np.float64)
    C = x5.shape[1]
    ng = C // G
    dx = d5.copy()
    dg = np.zeros(ng)
    db = np.zeros(ng)
    for b in range(x5.shape[0]):
        for g in range(ng - set_off):
            sl = (b, slice(g * G, (g + 1) * G))
            v, d = x5[sl], d5[sl]
            n = v.size
            m = v.mean()
            var = ((v - m) ** 2).mean()
            xh = (v - m) / np.sqrt(var + GN_EPS)
            dbeta, dgamma = d.sum(), (d * xh).sum()
            dx[sl] = gamma[g] / (n * np.sqrt(var + GN_EPS)) * (n * d - dbeta - xh * dgamma)
            dg[g] += dgamma
            db[g] += dbeta
    return dx, dg, db


def _gn_setup(seed=30, in_whd=(4, 3, 1), C=6, G=2, set_off=1):
    rng = np.random.default_rng(seed)
    net = nn.network(list(in_whd), 1, [nn.conv([1, 1, 1], C, activation="LIN"),
                                       nn.norm(group_size=G, set_off=set_off)])
    layer = net.layers[1]
    W, H, D = in_whd
    # different per-channel scales and offsets so the groups really differ
    x5 = (rng.normal(size=(2, C, D, H, W)) * rng.uniform(0.5, 3, size=(1, C, 1, 1, 1))
          + rng.normal(size=(1, C, 1, 1, 1))).astype(np.float32)
    ng = C // G
    gamma = rng.uniform(0.5, 2.0, size=ng).astype(np.float32)
    beta = rng.normal(size=ng).astype(np.float32)
    d5 = rng.normal(size=x5.shape).astype(np.float32)
    return net, layer, x5, gamma, beta, d5


@pytest.mark.parametrize("in_whd,C,G,set_off", [((4, 3, 1), 6, 2, 1), ((3, 2, 2), 4, 4, 0),
                                                 ((4, 3, 1), 6, 1, 2)])
def test_group_norm_forward(in_whd, C, G, set_off):
    net, layer, x5, gamma, beta, _ = _gn_setup(31, in_whd, C, G, set_off)
    assert layer.param_shapes(net.shapes[1][0]) == {"gamma": (C // G,), "beta": (C // G,)}
    y = layer.apply({"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)},
                    to_internal(x5, net.nd), Ctx(nd=net.nd))
    ref = np_gn(x5, gamma, beta, G, set_off)
    np.testing.assert_allclose(from_internal(y, net.nd), ref, rtol=RTOL, atol=ATOL)
    if set_off:
        np.testing.assert_array_equal(from_internal(y, net.nd)[:, C - set_off * G:],
                                      x5[:, C - set_off * G:])


def test_group_norm_forward_through_apply_with_default_params():
    rng = np.random.default_rng(32)
    net = nn.network([3, 4], 2, [nn.conv([2, 2], 4, activation="LIN"),
                                 nn.norm(group_size=2), ], bias=0.1)
    p = cj.init_params(jax.random.key(0), net)
    np.testing.assert_array_equal(np.asarray(p[1]["gamma"]), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(p[1]["beta"]), [0.0, 0.0])
    wm = rng.normal(size=cj.params_to_rows(net, p)[0]["w"].shape).astype(np.float32)
    x = rng.normal(size=(2, net.input_dim)).astype(np.float32)
    y = apply_jit(net, cj.rows_to_params(net, ({"w": jnp.asarray(wm)}, p[1])), jnp.asarray(x))
    h = np_conv(rows_to_5d(x, 2, 1, 4, 3), wm, (2, 2, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), 0.1)
    ref = np_gn(h, [1.0, 1.0], [0.0, 0.0], 2, 0)
    np.testing.assert_allclose(np.asarray(y), ref.reshape(2, -1), rtol=1e-4, atol=1e-4)


def test_group_norm_gradients_match_finite_differences():
    net, layer, x5, gamma, beta, d5 = _gn_setup(33)
    G, set_off = 2, 1
    nd = net.nd

    def f(xi, ga, be):
        return layer.apply({"gamma": ga, "beta": be}, xi, Ctx(nd=nd))

    xi = to_internal(x5, nd)
    y, vjp = jax.vjp(f, xi, jnp.asarray(gamma), jnp.asarray(beta))
    dx, dg, db = vjp(to_internal(d5, nd))
    dx = from_internal(dx, nd)

    # central finite differences of the float64 NumPy forward
    x64, g64, b64, d64 = (np.asarray(a, np.float64) for a in (x5, gamma, beta, d5))

    def loss(xx, gg, bb):
        return float(np.sum(d64 * np_gn(xx, gg, bb, G, set_off)))

    h = 1e-5

    def fd(arr, which):
        out = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += h
            minus[idx] -= h
            args_p = [x64, g64, b64]
            args_m = [x64, g64, b64]
            args_p[which], args_m[which] = plus, minus
            out[idx] = (loss(*args_p) - loss(*args_m)) / (2 * h)
        return out

    fd_x, fd_g, fd_b = fd(x64, 0), fd(g64, 1), fd(b64, 2)
    np.testing.assert_allclose(dx, fd_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dg), fd_g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(db), fd_b, rtol=1e-4, atol=1e-4)
    # pass-through group: identity gradient and untouched parameters
    assert dg[-1] == 0 and db[-1] == 0
    np.testing.assert_allclose(dx[:, 4:], d5[:, 4:], rtol=1e-6)
    # and the closed form of section 6
    cx, cg, cb = np_gn_backward(x5, gamma, G, set_off, d5)
    np.testing.assert_allclose(dx, cx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dg), cg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(db), cb, rtol=1e-4, atol=1e-4)
    assert np.abs(fd_x[:, :4]).max() > 0.1  # non-trivial gradient


def test_group_norm_activation_is_applied():
    """CUDA behaviour: the norm layer's activation is applied (B2 is a CPU-only bug)."""
    net, _, x5, gamma, beta, _ = _gn_setup(34, set_off=0)
    net = nn.network([4, 3], 1, [nn.conv([1, 1], 6, activation="LIN"),
                                 nn.norm(group_size=2, activation="RELU_L0.1")])
    layer = net.layers[1]
    y = layer.apply({"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)},
                    to_internal(x5, 2), Ctx(nd=2))
    ref = np_gn(x5, gamma, beta, 2, 0)
    ref = np.where(ref <= 0, 0.1 * ref, ref)
    assert (ref < 0).any()
    np.testing.assert_allclose(from_internal(y, 2), ref, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- 6. LRN


def np_lrn(x5, R, k, alpha, beta):
    """x5 (B, C, ...) -> (y, s)."""
    x5 = np.asarray(x5, np.float64)
    C = x5.shape[1]
    half = R // 2
    s = np.zeros_like(x5)
    for c in range(C):
        lo, hi = max(0, c - half), min(C - 1, c + half)
        s[:, c] = k + alpha / R * np.sum(x5[:, lo:hi + 1] ** 2, axis=1)
    return x5 / s ** beta, s


def np_relu(z, sat, leak):
    return np.where(z <= 0, leak * z, np.where(z <= sat, z, sat + leak * (z - sat)))


def _lrn_layer(C, activation, R, k, alpha, beta):
    net = nn.network([3, 2], 1, [nn.conv([1, 1], C, activation="LIN"),
                                 nn.lrn(activation=activation, range=R, k=k, alpha=alpha,
                                        beta=beta)])
    return net.layers[1]


@pytest.mark.parametrize("R", [3, 4])
def test_lrn_forward(R):
    rng = np.random.default_rng(40)
    C = 7
    layer = _lrn_layer(C, "LIN", R, 2.0, 0.7, 0.75)
    x5 = (2 * rng.normal(size=(2, C, 1, 2, 3))).astype(np.float32)
    y = layer.apply({}, to_internal(x5, 2), Ctx(nd=2))
    ref, _ = np_lrn(x5, R, 2.0, 0.7, 0.75)
    np.testing.assert_allclose(from_internal(y, 2), ref, rtol=RTOL, atol=ATOL)


def test_lrn_defaults():
    rng = np.random.default_rng(41)
    net = nn.network([3, 2], 1, [nn.conv([1, 1], 6, activation="LIN"), nn.lrn()])
    layer = net.layers[1]
    assert (layer.range, layer.k, layer.alpha, layer.beta) == (5, 1.0, 1.0, 0.5)
    x5 = rng.normal(size=(1, 6, 1, 2, 3)).astype(np.float32)
    y = layer.apply({}, to_internal(x5, 2), Ctx(nd=2))
    np.testing.assert_allclose(from_internal(y, 2), np_lrn(x5, 5, 1.0, 1.0, 0.5)[0],
                               rtol=RTOL, atol=ATOL)


def _plain_lrn_jnp(x, R, k, alpha, beta):
    """Plain differentiable LRN on (..., C) with an explicit per-channel loop."""
    C = x.shape[-1]
    half = R // 2
    cols = []
    for c in range(C):
        lo, hi = max(0, c - half), min(C - 1, c + half)
        s = k + alpha / R * jnp.sum(x[..., lo:hi + 1] ** 2, axis=-1)
        cols.append(x[..., c] * s ** (-beta))
    return jnp.stack(cols, axis=-1)


@pytest.mark.parametrize("R", [3, 4])
def test_lrn_lin_backward_is_exact(R):
    rng = np.random.default_rng(42)
    C = 6
    layer = _lrn_layer(C, "LIN", R, 1.5, 0.8, 0.75)
    x = to_internal(2 * rng.normal(size=(2, C, 1, 2, 3)), 2)
    g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    got = jax.jit(lambda v, gg: jax.vjp(lambda a: layer.apply({}, a, Ctx(nd=2)), v)[1](gg))(x, g)
    ref = jax.jit(lambda v, gg: jax.vjp(lambda a: _plain_lrn_jnp(a, R, 1.5, 0.8, 0.75),
                                        v)[1](gg))(x, g)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(ref[0]), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(got[0])).max() > 0.1


def test_lrn_relu_backward_uses_post_activation_output():
    rng = np.random.default_rng(43)
    C, R, k, alpha, beta = 6, 3, 1.5, 0.8, 0.75
    sat, leak = 0.5, 0.1
    layer = _lrn_layer(C, "RELU_S0.5_L0.1", R, k, alpha, beta)
    x5 = (2 * rng.normal(size=(2, C, 1, 2, 3))).astype(np.float32)
    g5 = rng.normal(size=x5.shape).astype(np.float32)
    y, vjp = jax.vjp(lambda v: layer.apply({}, v, Ctx(nd=2)), to_internal(x5, 2))
    (dx,) = vjp(to_internal(g5, 2))
    dx = from_internal(dx, 2)
    ypre, s = np_lrn(x5, R, k, alpha, beta)
    ypost = np_relu(ypre, sat, leak)
    np.testing.assert_allclose(from_internal(y, 2), ypost, rtol=RTOL, atol=ATOL)
    assert (ypre < 0).any() and (ypre > sat).any()
    mult = np.where((ypost <= 0) | (ypost > sat), leak, 1.0)
    delta = g5 * mult
    cross = np.zeros_like(delta)
    half = R // 2
    for c in range(C):
        lo, hi = max(0, c - half), min(C - 1, c + half)
        cross[:, c] = np.sum((delta * ypost / s)[:, lo:hi + 1], axis=1)
    ref = delta * s ** (-beta) - (2 * alpha * beta / R) * x5 * cross
    np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=1e-5)
    # the exact gradient (pre-activation output in the sum) is different
    cross_ex = np.zeros_like(delta)
    for c in range(C):
        lo, hi = max(0, c - half), min(C - 1, c + half)
        cross_ex[:, c] = np.sum((delta * ypre / s)[:, lo:hi + 1], axis=1)
    exact = delta * s ** (-beta) - (2 * alpha * beta / R) * x5 * cross_ex
    assert np.abs(exact - ref).max() > 1e-3


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


@pytest.mark.parametrize("kw,dims,dtype", [
    (dict(group_size=4), (6, 5), jnp.float32),
    (dict(group_size=2, set_off=1), (6, 5), jnp.float32),
    (dict(group_size=4, per_channel=True), (6, 5), jnp.float32),
    (dict(group_size=2), (4, 3, 5), jnp.float32),
    (dict(group_size=4), (6, 5), jnp.bfloat16)],
    ids=["groups", "set_off", "per_channel", "3d", "bf16"])
def test_norm_fused_passes_match_autodiff(kw, dims, dtype, monkeypatch):
    """The norm's custom VJP (sums in fused passes, ``layers/sums.py``) gives the values
    and gradients of autodiff of the plain formulation (summation order aside): per-group
    and per-channel scales, pass-through groups, 3D maps, 16-bit maps."""
    from cianna_jax.layers import norm as norm_mod

    net = nn.network(list(dims[::-1]), 8, [nn.conv([1] * len(dims), 8, activation="LIN"),
                                           nn.norm(activation="RELU", **kw)])
    layer = net.layers[1]
    params, _ = layer.init(jax.random.key(0), net.shapes[1][0])
    params = jax.tree.map(lambda p: p + jnp.linspace(0.5, 1.5, p.size).reshape(p.shape), params)
    x = (jax.random.normal(jax.random.key(1), (3,) + dims + (8,)) * 2.0 + 1.0).astype(dtype)

    def run(flag):
        monkeypatch.setattr(norm_mod, "FUSED_PASSES", flag)
        return jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(
            layer.apply(p, x, Ctx(train=True, nd=len(dims))).astype(jnp.float32))),
            (0, 1))(params, x)

    (v1, g1), (v0, g0) = run(True), run(False)
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(float(v1), float(v0), rtol=tol)
    assert g1[1].dtype == dtype
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
