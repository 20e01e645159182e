"""CPU forms of convolution gradients: windows that tile the input (2x2 stride 2) take
both gradients as matrix products, and the bias gradient is a product of its own; the
numbers are XLA's convolution gradients and plain autodiff's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax.activations import parse_activation
from cianna_jax.layers import common
from cianna_jax.layers import conv as conv_mod
from cianna_jax.layers import xla_conv as xla_conv_mod
from cianna_jax.layers.common import Ctx, Shape, add_bias


def _rel(a, b):  # in numpy: eager jnp ops compile a program per shape
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _xla(x, k, strides):  # XLA's convolution, differentiated by plain autodiff
    nd = x.ndim - 2
    return xla_conv_mod.lax_conv(x, k, strides, [(0, 0)] * nd, (1,) * nd)


# (input shape, filter = stride): ragged edges (rows no window covers), 3x3 stride 3, 3D
TILED = [((2, 8, 8, 3), (2, 2)), ((2, 9, 7, 5), (2, 2)), ((2, 9, 10, 4), (3, 3)),
         ((1, 6, 5, 6, 2), (2, 2, 2))]


@pytest.mark.parametrize("shape,f", TILED)
def test_tiled_gradients_equal_xla_convolution_gradients(shape, f):
    rng = np.random.default_rng(0)
    nd = len(f)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=f + (shape[-1], 7)), jnp.float32)
    pads, dil = (0,) * nd, (1,) * nd
    assert conv_mod.tiles_input(f, f, pads, dil)

    def ours(x, k):
        return jnp.sum(jnp.sin(conv_mod.conv_nd(x, k, f, pads, dil)))

    def ref(x, k):
        return jnp.sum(jnp.sin(_xla(x, k, f)))

    got, want = jax.jit(jax.grad(ours, (0, 1)))(x, k), jax.jit(jax.grad(ref, (0, 1)))(x, k)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert _rel(a, b) < 2e-6
    # the pieces alone, outside the custom VJP
    g = jnp.cos(_xla(x, k, f))
    assert _rel(conv_mod._tiled_weight_grad(x, g, f), want[1]) < 2e-6
    assert _rel(conv_mod._tiled_input_grad(g, k, shape[1:-1]), want[0]) < 2e-6


def test_which_geometries_tile_the_input():
    assert conv_mod.tiles_input((2, 2), (2, 2), (0, 0), (1, 1))
    assert not conv_mod.tiles_input((2, 2), (2, 2), (1, 1), (1, 1))   # padding
    assert not conv_mod.tiles_input((3, 3), (2, 2), (0, 0), (1, 1))   # overlapping windows
    assert not conv_mod.tiles_input((2, 2), (2, 2), (0, 0), (2, 2))   # int_padding
    assert not conv_mod.tiles_input((2, 2), (2, 2), (0, 0), (1, 1), groups=2)


def test_strided_layer_trains_without_a_convolution_in_its_backward(monkeypatch):
    """A 2x2 stride-2 layer through ``Conv.apply`` (CIANNA's backward pass): on CPU no convolution is left in the compiled backward, and the loss and
    gradients are those of XLA's convolution gradients (the flag off)."""
    layer = conv_mod.Conv((2, 2, 1), 6, parse_activation("RELU"), 0.1, stride=(2, 2, 1))
    shape = Shape(10, 11, 1, 4)  # 11 rows: the last one under no window
    params, _ = layer.init(jax.random.key(0), shape)
    h = jnp.asarray(np.random.default_rng(1).normal(size=(3, 11, 10, 4)), jnp.float32)

    def loss(p, h):
        return jnp.sum(jnp.sin(layer.apply(p, h, Ctx(train=True))))

    step = jax.jit(jax.value_and_grad(loss, (0, 1)))
    val, grads = step(params, h)
    hlo = step.lower(params, h).compile().as_text()
    assert hlo.count("convolution(") == 1, hlo.count("convolution(")  # the forward only
    monkeypatch.setattr(conv_mod, "TILED_WEIGHT_GRAD", False)
    val0, grads0 = jax.jit(jax.value_and_grad(lambda *a: loss(*a) * 1.0, (0, 1)))(params, h)
    assert abs(float(val) - float(val0)) < 1e-5 * abs(float(val0))
    for name in ("kernel", "bias_weight"):
        assert _rel(grads[0][name], grads0[0][name]) < 1e-5, name
    assert _rel(grads[1], grads0[1]) < 1e-5


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_add_bias_gradient_is_the_sum_as_a_product(dtype):
    z = jax.random.normal(jax.random.key(0), (2, 5, 3, 7)).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (7,))

    def ours(z, b):
        return jnp.sum(jnp.sin(add_bias(z, b).astype(jnp.float32)))

    def ref(z, b):
        return jnp.sum(jnp.sin((z + b.astype(dtype)).astype(jnp.float32)))

    assert add_bias(z, b).dtype == dtype
    np.testing.assert_array_equal(np.asarray(add_bias(z, b), np.float32),
                                  np.asarray(z + b.astype(dtype), np.float32))
    (gz, gb), (rz, rb) = jax.grad(ours, (0, 1))(z, b), jax.grad(ref, (0, 1))(z, b)
    assert gb.dtype == b.dtype and gz.dtype == z.dtype
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    assert _rel(gb, rb) < tol and _rel(gz.astype(jnp.float32), rz.astype(jnp.float32)) < tol
    # the bias gradient is a product (XLA does not fuse it into the weights' update)
    jaxpr = str(jax.make_jaxpr(jax.grad(ours, 1))(z, b))
    assert "dot_general" in jaxpr and "axes=(0, 1, 2)" not in jaxpr  # no sum over the map


def test_add_bias_flag_off_is_the_plain_sum(monkeypatch):
    monkeypatch.setattr(common, "BIAS_GRAD_DOT", False)
    z, b = jnp.ones((2, 3, 4)), jnp.arange(4.0)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda b: jnp.sum(add_bias(z, b) ** 2)))(b))
    assert "dot_general" not in jaxpr and "reduce_sum[axes=(0, 1)" in jaxpr


def test_conv_layer_bias_gradient_matches_exact_autodiff():
    """A LIN 3x3 stride-1 conv through XLA's convolution: CIANNA's gradient rule equals plain
    autodiff there, so the bias weights' gradients agree."""
    layer = conv_mod.Conv((3, 3, 1), 5, parse_activation("LIN"), 0.3, padding=(1, 1, 0))
    shape = Shape(6, 6, 1, 3)
    params, _ = layer.init(jax.random.key(2), shape)
    h = jax.random.normal(jax.random.key(3), (2, 6, 6, 3))

    def grad_w(exact):
        return jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply(
            p, h, Ctx(train=True, exact=exact))))))(params)

    grads = [grad_w(False), grad_w(True)]
    assert _rel(grads[0]["bias_weight"], grads[1]["bias_weight"]) < 1e-5
    assert _rel(grads[0]["kernel"], grads[1]["kernel"]) < 1e-5


def test_bias_gradient_program_has_no_reduction_of_the_map():
    """The compiled gradient of ``add_bias`` reduces the map in a dot, not a reduce."""
    z = jnp.ones((4, 8, 8, 16))
    fn = jax.jit(jax.grad(lambda b: jnp.sum(add_bias(z, b) * z), 0))
    hlo = fn.lower(jnp.zeros(16)).compile().as_text()
    assert "dot(" in hlo


def test_gpu_lowering_keeps_xla_convolutions_only():
    """The CPU forms (one-channel sum, tiling products, Winograd, weight-layout product)
    are CPU branches: a training step lowered for CUDA has XLA's convolution for every
    forward and gradient (3 per layer, 2 for the first: its input is not
    differentiated) and no Winograd loop; lowered for CPU it has fewer."""
    from cianna_jax import nn
    from cianna_jax.network import init_params
    from cianna_jax.training import batch_loss

    net = nn.network([16, 16], 1, [
        nn.conv([5, 5], 8, padding=[2, 2], activation="RELU"),
        nn.conv([2, 2], 128, stride=[2, 2], activation="RELU"),
        nn.conv([3, 3], 128, padding=[1, 1], activation="RELU"),
        nn.conv([1, 1], 4, activation="LIN"),
    ])
    params = init_params(jax.random.key(0), net)
    x = jnp.zeros((2, 16, 16, 1))
    t = jnp.zeros((2, 8, 8, 4))
    step = jax.jit(jax.grad(lambda p: batch_loss(p, net, x, t, 2, None)[0]))
    counts = {}
    for platform in ("cuda", "cpu"):
        text = step.trace(params).lower(lowering_platforms=(platform,)).as_text()
        counts[platform] = text.count("stablehlo.convolution")
        if platform == "cuda":
            assert "stablehlo.while" not in text
    assert counts["cuda"] == 2 + 3 + 3 + 3, counts
    assert counts["cpu"] < counts["cuda"], counts


@pytest.mark.parametrize("mode,tol", [("off", 2e-5), ("BF16C_FP32A", 3e-2)])
def test_gpu_branches_give_the_cpu_forms_numbers(monkeypatch, mode, tol):
    """What a GPU runs (``lax.platform_dependent``'s default branches: XLA's convolutions,
    input dilation for strided input gradients), computed on this CPU: a training step's
    loss and every gradient equal those of the CPU forms (one-channel sum, tiling
    products, Winograd forward, input and weight gradients, strided conv, small-map
    product) to float32 rounding, so the GPU path's numbers are checked without a GPU;
    in bfloat16 (CPU: Winograd with float32 transforms) to bfloat16's rounding."""
    from cianna_jax import nn
    from cianna_jax.network import init_params
    from cianna_jax.precision import get_policy
    from cianna_jax.training import batch_loss

    net = nn.network([16, 16], 1, [
        nn.conv([5, 5], 8, padding=[2, 2], activation="RELU"),  # one input channel
        nn.conv([2, 2], 128, stride=[2, 2], activation="RELU"),  # windows tile the input
        nn.conv([3, 3], 128, padding=[1, 1], activation="RELU"),  # Winograd, 8x8
        nn.conv([2, 2], 128, stride=[2, 2], activation="RELU"),
        nn.conv([3, 3], 128, padding=[1, 1], activation="RELU"),  # Winograd weights too, 4x4
        nn.conv([3, 3], 16, stride=[2, 2], padding=[1, 1], activation="RELU"),  # strided
        nn.conv([3, 3], 16, padding=[1, 1], activation="RELU"),  # small map: 2x2
        nn.conv([1, 1], 4, activation="LIN"),
    ])
    cpu_device = jax.devices("cpu")[0]  # the CPU forms, also where a GPU is the default
    params = jax.device_put(init_params(jax.random.key(0), net), cpu_device)
    rng = np.random.default_rng(1)
    x = jax.device_put(rng.normal(size=(2, 16, 16, 1)).astype(np.float32), cpu_device)
    t = jax.device_put(rng.normal(size=(2, 2, 2, 4)).astype(np.float32), cpu_device)

    def step():  # a new function each time: traced again
        return jax.jit(jax.value_and_grad(
            lambda p: batch_loss(p, net, x, t, 2, None, policy=get_policy(mode))[0]))

    assert conv_mod.weight_gradient_pays(128, 128, 2 * 2 * 2, 2)  # the 4x4 layer's
    cpu = step()
    n_cpu = cpu.lower(params).as_text().count("stablehlo.convolution")
    val, grads = cpu(params)
    monkeypatch.setattr(jax.lax, "platform_dependent",
                        lambda *args, default=None, **per_platform: default(*args))
    jax.clear_caches()  # jax keeps the traced custom-VJP rules, CPU branches in them
    try:
        gpu = step()
        n_gpu = gpu.lower(params).as_text().count("stablehlo.convolution")
        val_g, grads_g = gpu(params)
    finally:  # nothing traced with the default branches outlives the test
        monkeypatch.undo()
        jax.clear_caches()
    assert n_gpu > n_cpu + 8, (n_gpu, n_cpu)  # the CPU forms were replaced
    assert abs(float(val) - float(val_g)) <= tol / 2 * abs(float(val_g))
    for i, (a, b) in enumerate(zip(grads, grads_g)):
        for name in b:
            assert _rel(a[name], b[name]) < tol, (i, name, _rel(a[name], b[name]))


# (input shape, filter, strides, padding pairs): SDC1's one-channel 5x5, odd strides whose
# windows leave rows out, asymmetric padding, padding wider than the filter, 3D
GRAD_GEOMETRIES = [((2, 12, 12, 1), (5, 5), (1, 1), ((2, 2), (2, 2))),
                   ((2, 9, 8, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),
                   ((2, 10, 7, 4), (3, 2), (3, 2), ((0, 2), (1, 0))),
                   ((2, 3, 5, 3), (1, 3), (3, 2), ((1, 1), (5, 0))),
                   ((1, 6, 5, 7, 2), (3, 3, 3), (1, 2, 1), ((1, 1), (0, 0), (1, 1)))]


def _autodiff(shape, f, strides, pads):
    """``x``, ``k``, an output gradient ``g`` and autodiff's ``(gx, gk)`` of XLA's
    convolution (the reference of the forms in XLA's own layouts)."""
    rng = np.random.default_rng(1)
    nd = len(f)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=f + (shape[-1], 5)), jnp.float32)
    def conv(x, k):
        return xla_conv_mod.lax_conv(x, k, strides, pads, (1,) * nd)

    y = jax.eval_shape(conv, x, k)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    return x, k, g, jax.jit(lambda x, k, g: jax.vjp(conv, x, k)[1](g))(x, k, g)


@pytest.mark.parametrize("shape,f,strides,pads", GRAD_GEOMETRIES)
def test_weight_grad_conv_is_autodiffs_weight_gradient(shape, f, strides, pads):
    """The weight gradient written in XLA's own convolution layouts (what keeps a loop
    of training steps fast) is autodiff's, for any stride, padding and dimension."""
    x, k, g, (_, want) = _autodiff(shape, f, strides, pads)
    got = jax.jit(common.weight_grad_conv, static_argnums=(2, 3, 4))(x, g, f, strides, pads)
    assert got.shape == want.shape == k.shape
    assert _rel(got, want) < 2e-6


@pytest.mark.parametrize("shape,f,strides,pads", GRAD_GEOMETRIES)
def test_input_grad_conv_is_autodiffs_input_gradient(shape, f, strides, pads):
    """The input gradient in XLA's layouts, for strides whose windows leave rows out and
    padding wider than the filter (negative pads: cropped before the convolution, which
    XLA's CPU convolution gets wrong), equals autodiff's; so do ``xla_conv``'s two
    gradients, on CPU these forms."""
    x, k, g, (want, want_k) = _autodiff(shape, f, strides, pads)
    got = jax.jit(common.input_grad_conv, static_argnums=(2, 3, 4))(g, k, shape[1:-1],
                                                                    strides, pads)
    assert got.shape == want.shape == x.shape
    assert _rel(got, want) < 2e-6
    _, vjp = jax.vjp(lambda x, k: xla_conv_mod.xla_conv(x, k, strides, pads, (1,) * len(f)), x, k)
    got_x, got_k = jax.jit(vjp)(g)
    assert _rel(got_x, want) < 2e-6 and _rel(got_k, want_k) < 2e-6
