"""Winograd F(4x4, 3x3) (the reduced-precision modes' tile on CPU): its transforms are
an exact Toom-Cook algorithm, the flipped filters' transform is a scaled permutation,
and layers, training steps and laid-out inference weights take it only where the
policy allows, with the numbers of XLA's convolution to the tile's rounding (its
convolutions and gradients against XLA's: ``test_winograd.py``, cases with m = 4)."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cianna_jax import nn
from cianna_jax.layers import conv as conv_mod
from cianna_jax.layers import conv_forms, winograd
from cianna_jax.layers.common import Ctx
from cianna_jax.network import apply, inference_params, init_params
from cianna_jax.precision import FP32, get_policy

TF32 = get_policy("TF32C_FP32A")


def _xla(x, k, padding):
    return lax.conv_general_dilated(x, k, (1, 1), padding, precision="highest",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _rel(a, b):  # in numpy: eager jnp ops compile a program per shape
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _exact(v):
    return Fraction(v).limit_denominator(1000)


@pytest.mark.parametrize("tile", [winograd.F2, winograd.F4], ids=["F2", "F4"])
def test_tile_is_an_exact_minimal_filtering_algorithm(tile):
    """In rational arithmetic ``A^T [(G g) * (B^T d)]`` is the correlation of ``d``
    (m + 2 inputs) with ``g`` (3 taps) for every unit ``d`` and ``g``, and the
    flipped filter's transform is ``diag(scale) P G`` with ``P`` the involution
    ``flip`` and the scales powers of two."""
    n = tile.m + 2
    bt = [[_exact(v) for v in row] for row in tile.bt]
    g = [[_exact(v) for v in row] for row in tile.g]
    at = [[_exact(v) for v in row] for row in tile.at]
    assert len(bt) == n and len(g) == n and len(at) == tile.m
    for i in range(n):
        for j in range(3):
            d_vec = [Fraction(int(q == i)) for q in range(n)]
            g_vec = [Fraction(int(q == j)) for q in range(3)]
            v = [sum(r[q] * d_vec[q] for q in range(n)) for r in bt]
            u = [sum(r[q] * g_vec[q] for q in range(3)) for r in g]
            y = [sum(r[q] * u[q] * v[q] for q in range(n)) for r in at]
            want = [sum(d_vec[o + t] * g_vec[t] for t in range(3)) for o in range(tile.m)]
            assert y == want, (i, j)
    assert sorted(tile.flip) == list(range(n))
    assert all(tile.flip[tile.flip[q]] == q for q in range(n))
    for q in range(n):
        s = _exact(tile.scale[q])
        assert s.numerator & (s.numerator - 1) == 0 and s.denominator & (s.denominator - 1) == 0
        assert [r for r in reversed(g[q])] == [s * v for v in g[tile.flip[q]]], q


def test_f4_filter_transform_is_g_k_gt_and_2d_only():
    k = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    g = np.asarray(winograd.F4.g)
    want = np.einsum("ai,ijcf,bj->abcf", g, k.astype(np.float64), g).reshape(36, 4, 5)
    got = winograd.filter_transform(k, m=4)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    assert winograd.tile_of(36, 2) is winograd.F4 and winograd.tile_of(16, 2) is winograd.F2
    with pytest.raises(ValueError, match="m = 2 or 4"):
        winograd.filter_transform(np.zeros((3, 3, 3, 2, 2), np.float32), m=4)
    with pytest.raises(ValueError, match="m = 2 or 4"):
        winograd.filter_transform(k, m=3)
    with pytest.raises(ValueError, match=r"P = 16 or 36"):
        winograd.winograd_conv(jnp.zeros((1, 8, 8, 4)), jnp.zeros((25, 4, 5)), ((1, 1), (1, 1)))


def test_f4_rotated_filters_are_the_input_gradients():
    """``rotated=True`` with F(4x4, 3x3) filters: the flipped position order and the
    power-of-two scales give the rotated kernel's correlation."""
    rng = np.random.default_rng(2)
    c, f = 5, 7
    k = jnp.asarray(rng.normal(size=(3, 3, c, f)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, 10, 9, f)), jnp.float32)
    k_rot = jnp.swapaxes(jnp.flip(k, (0, 1)), 2, 3)
    pads = ((2, 1), (1, 1))
    got = winograd.winograd_conv(g, winograd.filter_transform(k, m=4), pads, rotated=True)
    want = _xla(g, k_rot, pads)
    assert got.shape == want.shape == (2, 11, 9, c)
    assert _rel(got, want) < 2e-5


def test_tile_size_follows_the_policy_and_the_map():
    """FP32 (CIANNA's pedantic default) keeps F(2x2, 3x3) everywhere; the TF32, FP16 and
    BF16 modes take F(4x4, 3x3) on maps of 16 or more; 3D layers keep F(2x2x2, 3x3x3)."""
    assert winograd.tile_size((64, 64), FP32) == 2
    for mode in ("TF32C_FP32A", "FP16C_FP32A", "BF16C_FP32A"):
        pol = get_policy(mode)
        assert winograd.tile_size((16, 16), pol) == 4
        assert winograd.tile_size((16, 15), pol) == 2
        assert winograd.tile_size((16, 16, 16), pol) == 2


@pytest.fixture(scope="module")
def wide16():
    """A 3x3, 128 -> 128 conv on 16x16 maps after a 1x1 one (Winograd on CPU)."""
    net = nn.network([16, 16], 2, [
        nn.conv([1, 1], 128, activation="RELU"),
        nn.conv([3, 3], 128, padding=[1, 1], activation="RELU"),
    ])
    params = init_params(jax.random.key(3), net)
    h = jax.random.uniform(jax.random.key(4), (2, 16, 16, 128))
    return net, params, h


def _positions(monkeypatch) -> list:
    """The filter positions of the layer module's ``winograd_conv`` calls (trace time)."""
    calls = []
    real = conv_mod.winograd_conv

    def counted(x, u, *a, **kw):
        calls.append(u.shape[0])
        return real(x, u, *a, **kw)

    monkeypatch.setattr(conv_mod, "winograd_conv", counted)
    return calls


@pytest.mark.parametrize("mode, positions, tol", [
    ("TF32C_FP32A", 36, 1e-4), ("FP32C_FP32A", 16, 1e-5), ("BF16C_FP32A", 36, None)])
def test_training_step_tile_follows_the_policy(wide16, monkeypatch, mode, positions, tol):
    """A layer's training step (forward and input gradient as Winograd) under each
    policy: F(4x4, 3x3) filters for TF32 and BF16, F(2x2, 3x3) for FP32; loss and
    gradients as with XLA's convolution under the same policy (BF16: to its rounding)."""
    net, params, h = wide16
    layer, p = net.layers[1], params[1]
    ctx = Ctx(train=True, policy=get_policy(mode))
    calls = _positions(monkeypatch)

    def loss(p, h):
        z = layer.apply(p, h.astype(ctx.policy.compute_dtype), ctx)
        return jnp.sum(jnp.sin(z.astype(jnp.float32)))

    step = jax.jit(jax.value_and_grad(loss, (0, 1)))
    val, grads = step(p, h)
    assert calls == [positions, positions]  # forward, input gradient
    monkeypatch.setattr(conv_forms, "WINOGRAD", False)
    val0, grads0 = jax.jit(jax.value_and_grad(lambda *a: loss(*a) * 1.0, (0, 1)))(p, h)
    if tol is None:  # bfloat16 activations: both paths round to 8 bits
        assert abs(float(val) - float(val0)) < 2e-2 * abs(float(val0))
        assert _rel(grads[0]["kernel"], grads0[0]["kernel"]) < 5e-2
        return
    assert abs(float(val) - float(val0)) < tol * abs(float(val0))
    for a, b in ((grads[0]["kernel"], grads0[0]["kernel"]),
                 (grads[0]["bias_weight"], grads0[0]["bias_weight"]), (grads[1], grads0[1])):
        assert _rel(a, b) < tol


def test_inference_weights_follow_the_policy(wide16):
    """``inference_params(..., policy)``: F(4x4, 3x3) filters for a reduced-precision
    mode, F(2x2, 3x3) by default; both forms run under either policy."""
    net, params, h = wide16
    x = jax.random.normal(jax.random.key(5), (2, 16, 16, 2))
    laid4 = inference_params(net, params, "TF32C_FP32A")
    laid2 = inference_params(net, params)
    assert laid4[1]["winograd"].shape == (36, 128, 128)
    assert laid2[1]["winograd"].shape == (16, 128, 128)
    ref = apply(net, params, x)
    assert _rel(apply(net, laid4, x, mixed_precision="TF32C_FP32A"), ref) < 1e-4
    assert _rel(apply(net, laid4, x), ref) < 1e-4
    assert _rel(apply(net, laid2, x), ref) < 2e-6
    half = apply(net, inference_params(net, params, "FP16C_FP32A"), x,
                 mixed_precision="FP16C_FP32A")
    assert half.dtype == jnp.float16 and _rel(half.astype(jnp.float32), ref) < 5e-3


@pytest.mark.usefixtures("in_tmp_dir")
@pytest.mark.parametrize("mode, positions", [("TF32C_FP32A", 36), ("off", 16)])
def test_imperative_forward_lays_out_the_mode_s_tile(mode, positions):
    """``cnn.init(mixed_precision=...)``: ``cnn.forward`` lays the wide 3x3 filters out with
    the mode's tile, and its outputs match float32's (TF32 on CPU: the tile only)."""
    import cianna_jax as cnn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16 * 16 * 2)).astype(np.float32)
    t = np.zeros((4, 3), np.float32)
    outs = []
    for m in (mode, "off"):
        cnn.init(in_dim=np.array([16, 16]), in_nb_ch=2, out_dim=3, b_size=2, no_logo=1, seed=0,
                 comp_meth="C_BLAS", mixed_precision=m)
        cnn.create_dataset("TEST", 4, x, t, silent=1)
        cnn.conv(f_size=np.array([1, 1]), nb_filters=128, activation="RELU", silent=1)
        cnn.conv(f_size=np.array([3, 3]), nb_filters=128, padding=np.array([1, 1]),
                 activation="RELU", silent=1)
        cnn.dense(nb_neurons=3, activation="LIN", silent=1)
        outs.append(cnn.forward(silent=1))
        if m == mode:
            laid = cnn.api._NETS[cnn.api._SESSION["last"]].inference_weights()
            assert laid[1]["winograd"].shape == (positions, 128, 128)
    assert _rel(jnp.asarray(outs[0]), jnp.asarray(outs[1])) < 1e-4
