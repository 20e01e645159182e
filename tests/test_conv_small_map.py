"""Small-map convolutions (no spatial dimension larger than the filter) run on CPU as
im2col + one matmul: same outputs and gradients as the XLA convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import conv as conv_mod
from cianna_jax.layers import conv_forms
from cianna_jax.layers.common import Ctx
from cianna_jax.network import forward_internal
from cianna_jax.precision import get_policy


def test_small_map_rule():
    assert conv_forms.small_map((2, 2), (3, 3))
    assert conv_forms.small_map((1, 1), (3, 3))
    assert conv_forms.small_map((1, 1), (2, 2))
    assert not conv_forms.small_map((3, 3), (3, 3))
    assert not conv_forms.small_map((1, 1), (1, 1))
    assert not conv_forms.small_map((4, 4), (3, 3))
    assert not conv_forms.small_map((2, 4), (3, 3))
    assert not conv_forms.small_map((2, 2), (1, 1))
    # 3D: also maps at most one larger than the filter (XLA's 3D convolution is slow)
    assert conv_forms.small_map((3, 3, 3), (3, 3, 3))
    assert conv_forms.small_map((4, 3, 2), (3, 3, 3))
    assert conv_forms.small_map((6, 6, 6), (5, 5, 5))
    assert conv_forms.small_map((4, 3, 3), (3, 3, 3)) and conv_forms.small_map((4, 4, 3), (3, 3, 2))
    assert not conv_forms.small_map((5, 4, 4), (3, 3, 3))
    assert not conv_forms.small_map((2, 2, 2), (1, 1, 1))


def test_whole_map_and_product_gradient_rules():
    none, one = [(0, 0)] * 2, [(1, 1)] * 2
    assert conv_forms.whole_map((3, 3), (3, 3), none) and conv_forms.whole_map((1, 1), (1, 1), none)
    assert not conv_forms.whole_map((3, 3), (3, 3), one)
    assert not conv_forms.whole_map((4, 3), (3, 3), none)
    assert conv_forms.product_gradients((2, 2), (3, 3), one, batch=64, filters=8)  # small map
    assert conv_forms.product_gradients((3, 3), (3, 3), none, batch=256, filters=8)  # whole map
    # a padded 3x3 map: 9 output positions per image, FILTERS_PER_ROW (3) filters per row
    assert conv_forms.FILTERS_PER_ROW == 3
    assert conv_forms.product_gradients((3, 3), (3, 3), one, batch=16, filters=1024)
    assert conv_forms.product_gradients((3, 3), (3, 3), one, batch=8, filters=216)
    assert not conv_forms.product_gradients((3, 3), (3, 3), one, batch=8, filters=215)
    # larger maps alike: 7x7 outputs, or 6x6 without padding
    assert conv_forms.product_gradients((7, 7), (3, 3), one, batch=1, filters=1024)
    assert not conv_forms.product_gradients((7, 7), (3, 3), one, batch=8, filters=1024)
    assert conv_forms.product_gradients((8, 8), (3, 3), none, batch=2, filters=216)
    assert not conv_forms.product_gradients((8, 8), (3, 3), none, batch=2, filters=215)
    # one input channel, whatever the map, unless activations are rounded to 16 bits
    assert conv_forms.product_gradients((64, 64), (3, 3), one, 16, 16, channels=1)
    assert not conv_forms.product_gradients((64, 64), (3, 3), one, 16, 16, channels=1,
                                          rounded=True)
    assert not conv_forms.product_gradients((64, 64), (3, 3), one, 16, 16, channels=2)
    # every 3D layer (stride 1 too) while its windows are bounded; strided 2D up to 9 taps
    # on 16 channels or more
    assert conv_forms.product_gradients((16,) * 3, (3,) * 3, [(1, 1)] * 3, 8, 4, channels=2)
    big = conv_forms.MAX_WINDOW_VALUES // (27 * 64 ** 3) + 1  # 64^3 images: windows too large
    assert not conv_forms.product_gradients((64,) * 3, (3,) * 3, [(1, 1)] * 3, big, 4,
                                          channels=2)
    assert conv_forms.matmul_form((16,) * 3, (3,) * 3, (1,) * 3, [(1, 1)] * 3, 2) == "3d"
    assert conv_forms.matmul_form((64,) * 3, (3,) * 3, (1,) * 3, [(1, 1)] * 3, 2,
                                batch=big) is None
    # the bound holds for every rule past small and whole maps: a one-channel 2D layer
    rows = conv_forms.MAX_WINDOW_VALUES // 25 + 1  # output positions x batch, 25 taps
    assert not conv_forms.product_gradients((rows, 1), (5, 5), [(2, 2)] * 2, 1, 32, channels=1)
    assert conv_forms.product_gradients((rows - 1, 1), (5, 5), [(2, 2)] * 2, 1, 32, channels=1)
    two = (2, 2)
    assert conv_forms.product_gradients((32,) * 3, (5,) * 3, [(2, 2)] * 3, 8, 16,
                                      (2, 2, 2), channels=4)
    assert conv_forms.product_gradients((64, 64), (3, 3), one, 16, 64, two, channels=16)
    assert not conv_forms.product_gradients((64, 64), (3, 3), one, 16, 64, two, channels=15)
    assert not conv_forms.product_gradients((64, 64), (4, 4), one, 16, 64, two, channels=64)
    # strided: 4x4 outputs of an 8x8 map
    assert conv_forms.product_gradients((8, 8), (3, 3), one, 1, 48, strides=(2, 2))
    assert not conv_forms.product_gradients((8, 8), (3, 3), one, 1, 47, strides=(2, 2))
    assert conv_forms.product_gradients((2, 3), (3, 3), [(0, 0), (1, 1)], batch=1, filters=6)
    # the CASES below train these through the product (their gradients' text is checked)
    assert conv_forms.trains_as_product((8, 8), (3, 3), (2, 2), (1, 1), (1, 1), 1, 3, 160)
    assert conv_forms.trains_as_product((9, 9), (5, 5), (2, 2), (2, 2), (1, 1), 1, 3, 240)
    assert not conv_forms.trains_as_product((8, 8), (3, 3), (2, 2), (1, 1), (1, 1), 1, 3, 143)
    assert conv_forms.trains_as_product((8, 7), (3, 3), (2, 2), (1, 1), (1, 1), 1, 3, 8, 16)
    assert conv_forms.trains_as_product((6, 5, 6), (3,) * 3, (2,) * 3, (1,) * 3, (1,) * 3, 1, 3,
                                       3, 2)
    assert conv_forms.trains_as_product((9, 8), (5, 5), (1, 1), (2, 2), (1, 1), 1, 3, 5, 1)
    assert conv_forms.trains_as_product((6, 5, 5), (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3, 1, 3,
                                       3, 2)
    assert conv_forms.trains_as_product((3, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1, 3, 96)
    assert conv_forms.trains_as_product((5, 4), (3, 3), (1, 1), (0, 0), (1, 1), 1, 3, 64)
    assert conv_forms.trains_as_product((3, 3), (3, 3), (1, 1), (0, 0), (1, 1), 1, 3, 6)


# (spatial, channels, filters, f_size, strides, pads, int_padding + 1)
CASES = [
    ((2, 2), 6, 5, (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 1), 4, 3, (3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 3), 3, 4, (3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 2), 3, 4, (3, 3), (1, 1), (0, 1), (1, 1)),
    ((2, 2), 4, 6, (2, 2), (2, 2), (0, 0), (1, 1)),  # SDC1's strided 2x2 conv
    ((1, 1), 8, 5, (2, 2), (1, 1), (1, 1), (1, 1)),  # 2x2 filter on a 1x1 map
    ((1, 1), 3, 2, (3, 3), (1, 1), (1, 1), (2, 2)),  # int_padding (a 1x1 map stays 1x1)
    ((2, 2), 3, 2, (3, 3), (1, 1), (1, 1), (2, 2)),  # int_padding: 5x5 once padded
    ((2, 2, 2), 3, 4, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),  # 3D
    ((4, 3, 3), 5, 4, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),  # 3D, filter-sized
    ((4, 4, 3), 3, 2, (3, 3, 2), (2, 1, 1), (1, 1, 0), (1, 1, 1)),  # 3D, strided
    ((3, 3), 4, 96, (3, 3), (1, 1), (1, 1), (1, 1)),  # filter-sized, many filters per row
    ((5, 4), 3, 64, (3, 3), (1, 1), (0, 0), (1, 1)),  # larger, unpadded, many filters per row
    ((3, 3), 5, 6, (3, 3), (1, 1), (0, 0), (1, 1)),  # the filter covers the whole map
    ((2, 3), 3, 4, (2, 3), (2, 2), (0, 0), (1, 1)),  # whole map, strided
    ((8, 8), 4, 160, (3, 3), (2, 2), (1, 1), (1, 1)),  # strided: CIANNA's cut at the 8th row
    ((9, 9), 2, 240, (5, 5), (2, 2), (2, 2), (1, 1)),  # strided 5x5
    ((9, 8), 1, 5, (5, 5), (1, 1), (2, 2), (1, 1)),  # one input channel (a radio image)
    ((7, 6), 1, 3, (3, 3), (2, 2), (1, 1), (1, 1)),  # one channel, strided
    ((4, 5, 3), 1, 2, (3, 3, 2), (1, 2, 1), (1, 0, 1), (1, 1, 1)),  # one channel, 3D
    ((8, 7), 16, 8, (3, 3), (2, 2), (1, 1), (1, 1)),  # strided 3x3 on 16 channels
    ((6, 5, 6), 2, 3, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)),  # strided 3D
    ((6, 5, 5), 2, 3, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),  # 3D, too narrow for Winograd
]


def _run(case, flag, monkeypatch, switch="SMALL_MAP_IM2COL"):
    sp, c, nf, f, st, pd, dil = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3,) + sp + (c,)), jnp.float32)
    k = jnp.asarray(rng.normal(size=f + (c, nf)) * 0.3, jnp.float32)
    monkeypatch.setattr(conv_forms, switch, flag)

    def out(x, k):
        return conv_mod.conv_nd(x, k, st, pd, dil)

    def loss(x, k):  # a non-linear loss: gradients depend on every output
        return jnp.sum(jnp.sin(out(x, k)) * jnp.arange(out(x, k).size).reshape(
            out(x, k).shape) / out(x, k).size)

    y = jax.jit(out)(x, k)
    gx, gk = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
    exact = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(conv_mod._forward(x, k, st, pd, dil))),
                             argnums=(0, 1)))(x, k)
    text = jax.jit(out).lower(x, k).compile().as_text()
    grad_text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, k).compile().as_text()
    return y, gx, gk, exact, text, grad_text


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[3]}-{c[2]}-{c[5]}-{c[6]}"
                                              for c in CASES])
def test_im2col_matches_the_xla_convolution(case, monkeypatch):
    ref = _run(case, False, monkeypatch)
    new = _run(case, True, monkeypatch)
    for a, b in zip(ref[:3], new[:3]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-5)
    for a, b in zip(ref[3], new[3]):  # plain autodiff (grads="exact") as well
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-5)
    sp, f, dil = case[0], case[3], case[6]
    padded = [n + (n - 1) * (d - 1) + (2 * p if d > 1 else 0) for n, d, p in zip(sp, dil, case[5])]
    if jax.default_backend() != "cpu":
        return
    if conv_forms.small_map(padded, f) or (len(f) == 3 and case[1] > 1):  # 3D: Winograd, product
        assert "convolution(" not in new[4] and "dot(" in new[4]
    if conv_forms.trains_as_product(sp, f, case[4], case[5], dil, 1, 3, case[2], case[1]):
        # both gradients from the windows' product: no convolution but the forward's
        # (XLA's on maps the filter's size), no rotated kernel
        assert new[5].count("convolution(") == new[4].count("convolution(")
        assert "reverse(" not in new[5]


ONE_CHANNEL = [
    ((9, 8), 1, 5, (5, 5), (1, 1), (2, 2), (1, 1)),  # SDC1's first layer, small
    ((7, 6), 1, 3, (3, 3), (2, 2), (1, 1), (1, 1)),  # strided
    ((5, 5), 1, 2, (3, 3), (1, 1), (0, 0), (2, 2)),  # int_padding: interior-padded input
    ((4, 5, 3), 1, 2, (3, 3, 2), (1, 2, 1), (1, 0, 1), (1, 1, 1)),  # 3D
]


@pytest.mark.parametrize("case", ONE_CHANNEL, ids=["5x5", "strided", "int_padding", "3d"])
def test_one_channel_sum_matches_the_xla_convolution(case, monkeypatch):
    """One input channel: a sum of shifted slices on CPU, the windows' product's
    gradients, the same numbers as XLA's convolution and its gradients (the product
    forms off), CIANNA's input gradient and plain autodiff included."""
    monkeypatch.setattr(conv_forms, "SMALL_MAP_IM2COL", False)  # XLA's throughout
    ref = _run(case, False, monkeypatch, "ONE_CHANNEL_SUM")
    monkeypatch.setattr(conv_forms, "SMALL_MAP_IM2COL", True)
    new = _run(case, True, monkeypatch, "ONE_CHANNEL_SUM")
    for a, b in zip(ref[:3] + ref[3], new[:3] + new[3]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-5)
    if jax.default_backend() == "cpu":
        assert "convolution(" in ref[4] and "convolution(" not in new[4]


def test_one_channel_sum_is_float32_only():
    """Under a 16-bit mode the one-channel layer keeps XLA's convolution: behind the
    rounding to 16 bits XLA would fuse the shifted-slice sum into every consumer of the
    output (recomputed four times in an SDC1 training step)."""
    x = jnp.ones((2, 16, 16, 1))
    k = jnp.ones((5, 5, 1, 8))

    def text(mode):
        pol = get_policy(mode)
        fn = jax.jit(lambda x, k: conv_mod.conv_nd(x.astype(pol.compute_dtype),
                                                   k.astype(pol.compute_dtype), (1, 1),
                                                   (2, 2), (1, 1), pol))
        return fn.lower(x, k).compile().as_text()

    if jax.default_backend() == "cpu":
        assert "convolution(" not in text("off")
        assert "convolution(" in text("FP16C_FP32A") and "convolution(" in text("BF16C_FP32A")


def test_large_maps_keep_the_xla_convolution():
    x = jnp.ones((2, 5, 5, 3))
    k = jnp.ones((3, 3, 3, 4))
    text = jax.jit(lambda x, k: conv_mod.conv_nd(x, k, (1, 1), (1, 1), (1, 1))).lower(
        x, k).compile().as_text()
    assert "convolution(" in text


def test_network_on_small_maps_trains_the_same(monkeypatch):
    """A deep stack reaching 2x2 and 1x1 maps: loss gradients agree with the formulation
    switched off (the custom VJPs, CIANNA's input gradient included)."""
    net = nn.network([8, 8], 2, [
        nn.conv([3, 3], 8, padding=[1, 1], activation="RELU"),
        nn.conv([2, 2], 12, stride=[2, 2], activation="RELU"),  # 4x4
        nn.conv([2, 2], 16, stride=[2, 2], activation="RELU"),  # 2x2: small map
        nn.conv([3, 3], 16, padding=[1, 1], activation="RELU"),  # 2x2 map, 3x3 filter
        nn.norm(group_size=4),
        nn.conv([2, 2], 8, stride=[2, 2], activation="LOGI"),  # 1x1
        nn.dense(3, activation="LIN"),
    ], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 2))
    t = jax.random.normal(jax.random.key(2), (4, 3))
    ctx = Ctx(train=True, nd=2)

    def loss(p):
        z = forward_internal(net, p, x, ctx, None)
        return jnp.sum((z[:, :-1] - t) ** 2)

    grads = {}
    for flag in (False, True):
        monkeypatch.setattr(conv_forms, "SMALL_MAP_IM2COL", flag)
        grads[flag] = jax.jit(jax.grad(loss))(params)
    for a, b in zip(jax.tree_util.tree_leaves(grads[False]),
                    jax.tree_util.tree_leaves(grads[True])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)

