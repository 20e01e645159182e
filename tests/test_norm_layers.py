"""Group normalization and LRN against NumPy references (layer_refs.py) and finite
differences, and the group norm's fused passes against autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_refs import (
    ATOL,
    RTOL,
    apply_jit,
    from_internal,
    np_conv,
    np_relu,
    rows_to_5d,
    to_internal,
)

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import Ctx

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
        return jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(
            layer.apply(p, x, Ctx(train=True, nd=len(dims))).astype(jnp.float32))),
            (0, 1)))(params, x)

    (v1, g1), (v0, g0) = run(True), run(False)
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(float(v1), float(v0), rtol=tol)
    assert g1[1].dtype == dtype
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
