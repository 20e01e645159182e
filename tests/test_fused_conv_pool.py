"""The fused conv + max-pool path gives the numbers of the layer-by-layer path.

Forward outputs, training losses and the gradients of every parameter and of the
input are compared on tiny networks; geometries that cannot be fused must fall back.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_refs import compare_unfused

import cianna_jax as cj
from cianna_jax import nn, training
from cianna_jax.layers.common import Ctx

TOL = dict(rtol=1e-5, atol=1e-5)


def _compare(net, monkeypatch, *, fused, x=None, batch=3, seed=0):
    """Run ``net`` fused and unfused; check the fused pairs and that both agree."""
    assert net.fused_pairs(Ctx()) == frozenset(fused)
    return compare_unfused(net, monkeypatch, "fusible", lambda: net.fused_pairs(Ctx()),
                           x=x, batch=batch, seed=seed, **TOL)


def test_2d_mnist_like_network(monkeypatch):
    net = nn.network([12, 12], 2, [
        nn.conv([5, 5], 3, padding=[2, 2], activation="RELU"),
        nn.pool([2, 2]),
        nn.conv([3, 3], 4, padding=[1, 1], activation="LOGI"),
        nn.pool([2, 2], activation="RELU_L0.1", drop_rate=0.3),
        nn.dense(6, activation="RELU", drop_rate=0.5),
        nn.dense(5, activation="SMAX"),
    ], bias=0.1)
    _compare(net, monkeypatch, fused={0, 2})


def test_ties_route_to_the_first_maximum(monkeypatch):
    """A zero input makes the four cells of every window equal (bias only)."""
    net = nn.network([8, 8], 1, [
        nn.conv([3, 3], 2, padding=[1, 1], activation="RELU"),
        nn.pool([2, 2]),
        nn.dense(3, activation="SMAX"),
    ], bias=0.5)
    _, _, grads, _, _ = _compare(net, monkeypatch, fused={0}, x=jnp.zeros((2, 64)))
    assert np.abs(np.asarray(grads[0][0]["bias_weight"])).sum() > 0


def test_even_filter_odd_pool_and_lin_last_pool(monkeypatch):
    """Even filter sizes, 3x3 pool windows, and a conv + pool that ends the network."""
    net = nn.network([8, 8], 2, [
        nn.conv([4, 4], 3, padding=[2, 2], activation="RELU"),
        nn.pool([3, 3]),
        nn.conv([2, 2], 2, padding=[1, 1], activation="LIN"),
        nn.pool([2, 2], activation="LIN"),
    ], bias=0.2)
    _compare(net, monkeypatch, fused={0, 2})


def test_conv_after_dense_with_input_shape(monkeypatch):
    net = nn.network([6, 6], 1, [
        nn.dense(32, activation="RELU"),
        nn.conv([3, 3], 2, padding=[1, 1], input_shape=[4, 4, 1, 2], activation="RELU"),
        nn.pool([2, 2]),
        nn.dense(3, activation="SMAX"),
    ], bias=0.1)
    _compare(net, monkeypatch, fused={1})


def _conv_pool_dense(size, channels, filters):
    """A 5x5 conv (padding 2) + 2x2 max pool + dense network, two inputs, targets and
    parameters."""
    net = nn.network([size, size], channels, [
        nn.conv([5, 5], filters, padding=[2, 2], activation="RELU"),
        nn.pool([2, 2]),
        nn.dense(3, activation="SMAX"),
    ], bias=0.1)
    x = cj.rows_to_images(net, jax.random.normal(jax.random.key(0), (2, net.input_dim)))
    t = jax.random.uniform(jax.random.key(1), (2, net.out_dim))
    return net, x, t, cj.init_params(jax.random.key(2), net)


def test_input_gradient_skips_the_blocks_of_padding(monkeypatch):
    """MNIST's second layer (5x5, padding 2, 2x2 pool on 14x14 maps): the space-to-depth
    input has 9x9 blocks of which the outer ring is only padding; the input gradient is
    computed on the 7x7 inner blocks (no 9x9 gradient convolution) and is still the
    unfused path's."""
    net, x, t, params = _conv_pool_dense(14, 8, 4)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda xv: training.batch_loss(
        params, net, xv, t, 2, None)[0]))(x))
    convs = [line.split("=")[0].split(":")[-1].strip() for line in jaxpr.splitlines()
             if "conv_general_dilated[" in line]
    assert "f32[2,7,7,32]" in convs and "f32[2,9,9,32]" not in convs, convs
    _compare(net, monkeypatch, fused={0}, batch=2)


def test_one_channel_layer_runs_as_windows_and_products(monkeypatch):
    """MNIST's first layer (one channel, 5x5, 2x2 pool): the forward is the padded
    input's windows times the phase kernel and the weight gradient is those windows
    against the output gradient, so a training step has no convolution at all (the
    input gradient of the first layer is not needed); still the unfused path's numbers."""
    net, x, t, params = _conv_pool_dense(12, 1, 3)
    grad = jax.jit(jax.grad(lambda p: training.batch_loss(p, net, x, t, 2, None)[0]))
    jaxpr = str(jax.make_jaxpr(grad)(params))
    # windows: (2 images, 6x6 pooled outputs, 6x6 window cells, 1 channel), against the
    # 4 phases x 3 filters
    assert "f32[2,6,6,6,6,1]" in jaxpr and "f32[36,12]" in jaxpr
    # the only convolution traced is the unused input gradient, which XLA drops
    assert "convolution(" not in grad.lower(params).compile().as_text()
    _compare(net, monkeypatch, fused={0}, batch=2)


def test_inference_params_leave_fused_convs_their_kernel():
    """A 3x3x3 conv wide enough for Winograd that runs fused with its max pool keeps its
    kernel in ``inference_params`` (the Winograd layout crashed ``cj.predict`` in the
    fused path), and the laid-out passes give ``cj.apply``'s numbers."""
    net = nn.network([16, 16, 16], 1, [
        nn.conv([3, 3, 3], 8, padding=[1, 1, 1], activation="RELU"),
        nn.pool([2, 2, 2]),
        nn.conv([3, 3, 3], 16, padding=[1, 1, 1], activation="RELU"),
        nn.pool([2, 2, 2]),
        nn.dense(3, activation="SMAX"),
    ], bias=0.1)
    assert net.fused_pairs(Ctx(nd=3)) == frozenset({0, 2})
    params = cj.init_params(jax.random.key(0), net)
    laid = cj.inference_params(net, params)
    assert set(laid[2]) == {"kernel", "bias_weight"}
    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 16, 1))
    want = np.asarray(cj.apply(net, params, x))
    np.testing.assert_allclose(np.asarray(cj.predict(net, params, x, 2)), want, **TOL)
    # laid out under a policy that does not fuse (Winograd layout, on the CPU only), run
    # under one that does: that conv runs unfused
    laid16 = cj.inference_params(net, params, "BF16C_FP32A")
    cpu = jax.default_backend() == "cpu"
    assert set(laid16[2]) == ({"winograd", "bias"} if cpu else {"kernel", "bias_weight"})
    np.testing.assert_allclose(np.asarray(cj.predict(net, laid16, x, 2)), want, **TOL)


def test_3d(monkeypatch):
    net = nn.network([6, 6, 4], 1, [
        nn.conv([3, 3, 3], 2, padding=[1, 1, 1], activation="RELU"),
        nn.pool([2, 2, 2]),
        nn.conv([3, 3, 1], 2, padding=[1, 1, 0], activation="RELU"),
        nn.pool([3, 3, 2]),
        nn.dense(3, activation="SMAX"),
    ], bias=0.1)
    _compare(net, monkeypatch, fused={0, 2})


@pytest.mark.parametrize("conv_kw, pool_kw", [
    (dict(padding=[1, 1]), dict(p_size=[2, 2], p_type="AVG")),         # not a max pool
    (dict(padding=[0, 0]), dict(p_size=[4, 4])),                       # 6 % 4 != 0
    (dict(padding=[3, 3]), dict(p_size=[2, 2])),                       # padding >= f_size (B5)
    (dict(padding=[1, 1], stride=[2, 2]), dict(p_size=[2, 2])),        # strided conv
    (dict(padding=[1, 1], int_padding=[1, 1]), dict(p_size=[2, 2])),   # dilated input
    (dict(padding=[1, 1]), dict(p_size=[2, 2], stride=[1, 1])),        # overlapping windows
    (dict(padding=[1, 1]), dict(p_size=[2, 2], padding=[1, 1])),       # padded pool
    (dict(padding=[1, 1]), dict(p_size=[3, 3])),                       # 8 % 3 != 0
    (dict(padding=[1, 1]), dict(p_global=1)),                          # global pool
    (dict(padding=[1, 1]), dict(p_size=[1, 1])),                       # nothing to pool
])
def test_non_fusible_geometries_fall_back(conv_kw, pool_kw):
    net = nn.network([8, 8], 1, [
        nn.conv([3, 3], 2, activation="RELU", **conv_kw),
        nn.pool(**pool_kw),
        nn.dense(3, activation="SMAX"),
    ], bias=0.1)
    assert net.fused_pairs(Ctx()) == frozenset()
    params = cj.init_params(jax.random.key(0), net)
    x = cj.rows_to_images(net, jax.random.normal(jax.random.key(1), (2, net.input_dim)))
    assert np.isfinite(np.asarray(jax.jit(cj.apply, static_argnums=0)(net, params, x))).all()


def test_mixed_precision_falls_back():
    net = nn.network([8, 8], 1, [
        nn.conv([3, 3], 2, padding=[1, 1]), nn.pool([2, 2]), nn.dense(3, activation="SMAX"),
    ], bias=0.1)
    assert net.fused_pairs(Ctx()) == frozenset({0})
    assert net.fused_pairs(Ctx(policy=cj.precision.get_policy("BF16C_FP32A"))) == frozenset()


@pytest.mark.parametrize("shape,s", [((2, 6, 3), (3,)), ((2, 4, 6, 5), (2, 3)),
                                     ((1, 4, 2, 6, 2), (2, 1, 3))])
def test_space_to_depth_by_slices_equals_the_transpose_form(shape, s):
    """The fused layer's space-to-depth (strided slices, the fast form inside XLA's CPU
    fusions) lays the blocks out exactly as :func:`space_to_depth` (offsets, then C)."""
    from cianna_jax.layers.common import space_to_depth, space_to_depth_by_slices

    x = jnp.arange(int(np.prod(shape)), dtype=jnp.float32).reshape(shape)
    np.testing.assert_array_equal(space_to_depth_by_slices(x, s), space_to_depth(x, s))
