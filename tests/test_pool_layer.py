"""The pooling layer against NumPy references (layer_refs.py): max and average, padding,
strides, global pools, CIANNA's gradient routing.
"""

from __future__ import annotations

import itertools

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
    np_pool,
    rev,
    rows_to_5d,
    to_internal,
)

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import Ctx

# ----------------------------------------------------------------------------- 4. pooling


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
