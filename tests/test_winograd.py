"""Winograd F(2x2, 3x3) convolutions (wide 3x3 stride-1 layers on CPU): the same
outputs and gradients as XLA's convolution, through the layer, its CIANNA backward
pass and the laid-out inference weights."""

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cianna_jax import nn
from cianna_jax.activations import parse_activation
from cianna_jax.layers import conv as conv_mod
from cianna_jax.layers import conv_forms, fused, winograd
from cianna_jax.layers.common import Ctx, Shape, conv_dimension_numbers
from cianna_jax.network import apply, inference_params, init_params
from cianna_jax.precision import get_policy


def _xla(x, k, padding):
    return lax.conv_general_dilated(x, k, (1, 1), padding, precision="highest",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _rel(a, b):  # in numpy: eager jnp ops compile a program per shape
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_filter_transform_is_g_k_gt():
    k = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    want = np.einsum("ai,ijcf,bj->abcf", g, k.astype(np.float64), g).reshape(16, 4, 5)
    np.testing.assert_allclose(np.asarray(winograd.filter_transform(k)), want, rtol=1e-6,
                               atol=1e-6)


# (batch, H, W, C, F, padding, chunk_tiles): odd sizes (a last tile half outside),
# asymmetric and no padding, bands of tile rows and uneven chunks of images, for
# F(2x2, 3x3) then F(4x4, 3x3) (m = 4: the tiles of the reduced-precision modes)
CASES = [
    (2, 7, 9, 3, 5, ((1, 1), (1, 1)), None, 2),
    (2, 7, 9, 3, 5, ((0, 2), (2, 0)), 4, 2),        # bands of 1 tile row, 3 images / chunk
    (3, 10, 6, 4, 6, ((1, 1), (0, 0)), 3, 2),       # 3 tiles per band, one image per chunk
    (5, 4, 4, 2, 3, ((1, 1), (1, 1)), 8, 2),        # 2 images per chunk, the last one alone
    (1, 3, 3, 2, 2, ((0, 0), (0, 0)), None, 2),     # map = filter: one output
    (2, 9, 11, 3, 5, ((1, 1), (1, 1)), None, 4),
    (2, 13, 9, 3, 4, ((0, 2), (2, 0)), 2, 4),       # bands of 1 tile row, several per chunk
    (3, 6, 6, 4, 6, ((1, 1), (0, 0)), 1, 4),        # one tile per chunk
]


@pytest.mark.parametrize("case", CASES)
def test_winograd_equals_xla_conv_with_gradients(case):
    b, h, w, c, f, pad, chunk, m = case
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(b, h, w, c)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, c, f)), jnp.float32)

    def ours(x, k):
        return winograd.winograd_conv(x, winograd.filter_transform(k, m), pad,
                                      chunk_tiles=chunk)

    y, ref = jax.jit(ours)(x, k), _xla(x, k, pad)
    assert y.shape == ref.shape
    assert _rel(y, ref) < (2e-6 if m == 2 else 2e-5)
    # gradients: autodiff of the Winograd sums, bands and chunks included
    wts = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
    got = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(ours(x, k)) * wts), (0, 1)))(x, k)
    want = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(_xla(x, k, pad)) * wts), (0, 1)))(x, k)
    for a, r in zip(got, want):
        assert _rel(a, r) < (1e-5 if m == 2 else 5e-5)


CASES_3D = [
    (2, 5, 6, 7, 3, 4, ((1, 1),) * 3, None),
    (2, 6, 5, 4, 3, 2, ((0, 2), (1, 1), (2, 0)), 3),   # bands of 1 tile plane
    (3, 4, 4, 4, 2, 3, ((1, 1),) * 3, 16),             # 2 images per chunk, one alone
]


@pytest.mark.parametrize("case", CASES_3D)
def test_winograd_3d_equals_xla_conv_with_gradients(case):
    b, d, h, w, c, f, pad, chunk = case
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(b, d, h, w, c)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, c, f)), jnp.float32)

    def ref(x, k):
        return lax.conv_general_dilated(x, k, (1, 1, 1), pad, precision="highest",
                                        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))

    def ours(x, k):
        return winograd.winograd_conv(x, winograd.filter_transform(k), pad, chunk_tiles=chunk)

    y, want = jax.jit(ours)(x, k), ref(x, k)
    assert y.shape == want.shape and winograd.filter_transform(k).shape == (64, c, f)
    assert _rel(y, want) < 2e-6
    wts = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
    got = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(ours(x, k)) * wts), (0, 1)))(x, k)
    exp = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(ref(x, k)) * wts), (0, 1)))(x, k)
    for a, r in zip(got, exp):
        assert _rel(a, r) < 1e-5


@pytest.mark.parametrize("nd", [2, 3])
def test_rotated_filters_are_the_input_gradients_without_a_rotated_kernel(nd):
    """``rotated=True`` with a layer's transformed filters ``(4^nd, C, F)`` correlates
    with its rotated kernel (taps flipped, channels swapped), as the input gradient
    needs: the same numbers as transforming that rotated kernel."""
    rng = np.random.default_rng(nd)
    c, f = 5, 7
    k = jnp.asarray(rng.normal(size=(3,) * nd + (c, f)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2,) + (6,) * nd + (f,)), jnp.float32)
    k_rot = jnp.swapaxes(jnp.flip(k, tuple(range(nd))), nd, nd + 1)
    pads = ((2, 1),) + ((1, 1),) * (nd - 1)
    want = jax.jit(lambda g, k: winograd.winograd_conv(g, winograd.filter_transform(k), pads))(
        g, k_rot)
    u = winograd.filter_transform(k)
    got = jax.jit(lambda g, u: winograd.winograd_conv(g, u, pads, rotated=True))(g, u)
    assert got.shape == want.shape == (2, 7) + (6,) * (nd - 1) + (c,)
    assert _rel(got, want) < 1e-6
    # few channels per tile: the product takes the filters transposed, (P, F, C), and
    # contracts their middle axis, as the forward does (the faster form on XLA's CPU)
    dots = _dots(jax.make_jaxpr(
        lambda g, u: winograd.winograd_conv(g, u, pads, rotated=True))(g, u).jaxpr)
    assert [(rhs, d[0]) for _, rhs, d in dots] == [((u.shape[0], f, c), ((2,), (1,)))], dots
    with pytest.raises(ValueError, match=r"u \(P, F, C\)"):
        winograd.winograd_conv(g[..., :3], winograd.filter_transform(k), pads, rotated=True)


def _dots(jaxpr) -> list:
    """``(lhs shape, rhs shape, dimension_numbers)`` of every ``dot_general`` in
    ``jaxpr`` and the jaxprs it calls (a ``lax.map`` body included)."""
    out = []
    for e in jaxpr.eqns:
        if e.primitive.name == "dot_general":
            out.append((tuple(e.invars[0].aval.shape), tuple(e.invars[1].aval.shape),
                        e.params["dimension_numbers"]))
        for sub in jax.extend.core.jaxprs_in_params(e.params):
            out += _dots(sub)
    return out


def _dot_lhs_shapes(jaxpr) -> list:
    """Shapes of the first operand of every ``dot_general`` (see :func:`_dots`)."""
    return [lhs for lhs, _, _ in _dots(jaxpr)]


@pytest.mark.parametrize("nd,m,chunk", [(2, 2, None), (2, 2, 4), (2, 4, None), (3, 2, None)])
def test_rotated_product_with_the_filters_first_when_they_outnumber_the_tiles(nd, m, chunk):
    """With twice as many input channels as tiles per pass, the rotated product runs as
    ``u . v`` (the faster operand order for XLA's CPU product) and the output transform
    takes its channel-first result: the same numbers as the rotated kernel's
    correlation, in one pass or in chunks."""
    rng = np.random.default_rng(10 + nd + m)
    c, f = 40, 6  # tiles per pass: 2 images x 2^nd (F(2x2)), x 1 (F(4x4)); 4 chunked
    k = jnp.asarray(rng.normal(size=(3,) * nd + (c, f)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2,) + (4,) * nd + (f,)), jnp.float32)
    k_rot = jnp.swapaxes(jnp.flip(k, tuple(range(nd))), nd, nd + 1)
    pads = ((1, 1),) * nd
    u = winograd.filter_transform(k, m=m) if nd == 2 else winograd.filter_transform(k)

    def rotated(g, u):
        return winograd.winograd_conv(g, u, pads, chunk_tiles=chunk, rotated=True)

    lhs = _dot_lhs_shapes(jax.make_jaxpr(rotated)(g, u).jaxpr)
    assert lhs == [u.shape], lhs  # the filters first, in one product (chunked: in the map)
    got = jax.jit(rotated)(g, u)
    want = lax.conv_general_dilated(g, k_rot, (1,) * nd, pads, precision="highest",
                                    dimension_numbers=conv_dimension_numbers(nd))
    assert got.shape == want.shape == (2,) + (4,) * nd + (c,)
    assert _rel(got, want) < (2e-5 if m == 4 else 1e-6)


def test_winograd_refuses_wrong_shapes():
    x = jnp.zeros((1, 6, 6, 4))
    with pytest.raises(ValueError, match=r"u \(P, C, F\)"):
        winograd.winograd_conv(x, jnp.zeros((16, 3, 2)), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="no output"):
        winograd.winograd_conv(jnp.zeros((1, 1, 1, 4)), jnp.zeros((16, 4, 2)), ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match=r"\(3, 3, C, F\)"):
        winograd.filter_transform(jnp.zeros((5, 5, 2, 2)))


def test_which_convolutions_run_as_winograd(monkeypatch):
    """The rule measured on AVX-512 processors (also used where the unit is unknown)."""
    monkeypatch.setattr(winograd, "vector_unit", lambda: "AVX-512")
    wide = (3, 3, 128, 128)
    assert conv_forms.winograd_form((8, 8), wide, (1, 1))
    assert conv_forms.winograd_form((4, 4), wide, (1, 1))
    assert not conv_forms.winograd_form((3, 3), wide, (1, 1))       # 16 outputs for 9
    assert not conv_forms.winograd_form((2, 2), wide, (1, 1))       # small map: im2col
    # filters transformed in the program: one 2x2 output tile per 1024 filter weights
    deep = (3, 3, 768, 1024)
    assert conv_forms.winograd_form((8, 8), deep, (1, 1))            # pre-transformed
    assert not conv_forms.winograd_form((8, 8), deep, (1, 1), batch=8)   # 128 tiles
    assert conv_forms.winograd_form((8, 8), deep, (1, 1), batch=48)      # 768 tiles
    # in a training step (forward and input gradient): one tile per 6144 filter weights
    assert conv_forms.winograd_form((8, 8), deep, (1, 1), batch=8, training=True)   # 128
    assert not conv_forms.winograd_form((4, 4), deep, (1, 1), batch=8, training=True)  # 32
    assert conv_forms.winograd_form((16, 16), deep, (1, 1), batch=8, training=True)  # 512
    assert not conv_forms.winograd_form((16, 16), deep, (1, 1), batch=8)
    assert not conv_forms.winograd_form((8, 8), wide, (2, 2))       # strided
    # F(2x2, 3x3) on maps larger than 16x16: C F / (C + F) >= 100 (SDC1's 128 -> 192 on
    # 32x32 and 64x64 maps runs as XLA's convolution, its 192 -> 384 as Winograd);
    # F(4x4, 3x3), in the reduced-precision modes, everywhere
    assert conv_forms.winograd_form((16, 16), wide, (1, 1))
    assert not conv_forms.winograd_form((32, 32), wide, (1, 1))
    assert not conv_forms.winograd_form((17, 16), (3, 3, 128, 192), (1, 1))
    assert not conv_forms.winograd_form((64, 64), (3, 3, 128, 192), (1, 1), batch=8,
                                      training=True)
    assert conv_forms.winograd_form((64, 64), (3, 3, 128, 192), (1, 1), get_policy("TF32C_FP32A"))
    assert conv_forms.winograd_form((32, 32), (3, 3, 192, 384), (1, 1), batch=8, training=True)
    assert conv_forms.winograd_form((64, 64), (3, 3, 200, 200), (1, 1))
    assert not conv_forms.winograd_form((64, 64), (3, 3, 199, 199), (1, 1))
    # 3D: XLA's 3D convolution is slow at every width
    assert conv_forms.winograd_form((16, 16, 16), (3, 3, 3, 4, 8), (1, 1, 1))
    assert not conv_forms.winograd_form((16, 16, 16), (3, 3, 3, 1, 8), (1, 1, 1))  # 1 channel
    assert not conv_forms.winograd_form((16, 16, 3), (3, 3, 3, 4, 8), (1, 1, 1))
    assert not conv_forms.winograd_form((16, 16, 16), (3, 3, 1, 4, 8), (1, 1, 1))
    assert not conv_forms.winograd_form((8, 8, 8), (3, 3, 3, 4, 8), (1, 1, 1))  # little work
    assert not conv_forms.winograd_form((8, 8), (5, 5, 128, 128), (1, 1))
    assert not conv_forms.winograd_form((8, 8), (3, 3, 24, 32), (1, 1))  # narrow: XLA faster
    assert not conv_forms.winograd_form((8, 8), (3, 3, 32, 1024), (1, 1))
    assert conv_forms.winograd_form((8, 8), (3, 3, 64, 256), (1, 1))
    assert not conv_forms.winograd_form((8, 8), wide, (1, 1), groups=2)
    # 16-bit activations with float32 accumulation: transformed and multiplied in float32
    assert conv_forms.winograd_form((8, 8), wide, (1, 1), get_policy("FP16C_FP32A"))
    assert conv_forms.winograd_form((8, 8), wide, (1, 1), get_policy("BF16C_FP32A"))
    assert not conv_forms.winograd_form((8, 8), wide, (1, 1), get_policy("FP16C_FP16A"))
    # a fused conv + max pool (few channels) never qualifies: it reads the kernel form
    assert fused.FUSE_MAX_CHANNEL_PRODUCT < winograd.MIN_CHANNEL_PRODUCT


@pytest.mark.parametrize("unit", ["AVX2", "AVX-512", None, "NEON"])
def test_large_maps_follow_the_vector_unit(monkeypatch, unit):
    """On AVX2 only, F(2x2, 3x3) also takes maps up to 32x32 at any width that pays on
    small maps, and larger maps from ``C F / (C + F)`` >= 70 (SDC1's 128 -> 192 at 256
    and 512 pixels input); AVX-512 and unknown units keep the limits 16x16 and 100."""
    monkeypatch.setattr(winograd, "vector_unit", lambda: unit)
    avx2 = unit == "AVX2"
    form = conv_forms.winograd_form
    assert form((32, 32), (3, 3, 128, 128), (1, 1)) == avx2
    assert form((32, 32), (3, 3, 128, 192), (1, 1), batch=8, training=True) == avx2
    assert form((64, 64), (3, 3, 128, 192), (1, 1)) == avx2
    assert form((128, 128), (3, 3, 128, 192), (1, 1), batch=8) == avx2
    assert form((64, 64), (3, 3, 128, 256), (1, 1)) == avx2
    assert not form((64, 64), (3, 3, 128, 128), (1, 1))      # C F / (C + F) = 64
    assert not form((32, 32), (3, 3, 64, 128), (1, 1))       # narrow on any map
    assert form((64, 64), (3, 3, 200, 200), (1, 1))          # wide enough everywhere
    assert form((16, 16), (3, 3, 128, 128), (1, 1))
    # an explicit unit overrides the host's
    assert winograd.pays(128, 192, pixels=4096, unit="AVX2")
    assert not winograd.pays(128, 192, pixels=4096, unit="AVX-512")


def _same_as_xla_path(monkeypatch, calls, loss, args, val, grads):
    """The loss and its gradients (weights, input) with Winograd turned off: no
    Winograd call, same numbers to float32 rounding."""
    monkeypatch.setattr(conv_forms, "WINOGRAD", False)
    calls.clear()
    val0, grads0 = jax.jit(jax.value_and_grad(lambda *a: loss(*a) * 1.0, (0, 1)))(*args)
    assert calls == []
    assert abs(float(val) - float(val0)) < 1e-5 * abs(float(val0))
    for name in ("kernel", "bias_weight"):
        assert _rel(grads[0][name], grads0[0][name]) < 1e-5, name
    assert _rel(grads[1], grads0[1]) < 1e-5


def _count_winograd_calls(monkeypatch) -> list:
    """The input shapes of the layer module's ``winograd_conv`` calls (at trace time)."""
    calls = []
    real = conv_mod.winograd_conv

    def counted(*a, **kw):
        calls.append(a[0].shape)
        return real(*a, **kw)

    monkeypatch.setattr(conv_mod, "winograd_conv", counted)
    return calls


@pytest.fixture(scope="module")
def wide_net():
    """A 3x3, 128 -> 160 conv (Winograd on CPU) between two 1x1 ones; 16x16 maps."""
    net = nn.network([16, 16], 2, [
        nn.conv([1, 1], 128, activation="RELU"),
        nn.conv([3, 3], 160, padding=[1, 1], activation="RELU"),
        nn.conv([1, 1], 3, activation="LIN"),
    ])
    params = init_params(jax.random.key(3), net)
    x = jax.random.normal(jax.random.key(4), (4, 16, 16, 2))
    return net, params, x


def test_layer_runs_winograd_forward_and_input_gradient(wide_net, monkeypatch):
    """Through ``Conv.apply`` with CIANNA's backward pass: the forward
    and the input gradient take the Winograd form, the weight gradient XLA's
    convolution; all equal the XLA path's numbers."""
    net, params, x = wide_net
    calls = _count_winograd_calls(monkeypatch)
    layer, p = net.layers[1], params[1]
    h = jnp.asarray(np.random.default_rng(5).uniform(size=(4, 16, 16, 128)), jnp.float32)
    ctx = Ctx(train=True)

    def loss(p, h):
        return jnp.sum(jnp.sin(layer.apply(p, h, ctx)))

    step = jax.jit(jax.value_and_grad(loss, (0, 1)))
    val, grads = step(p, h)
    assert set(calls) == {(4, 16, 16, 128), (4, 16, 16, 160)}  # forward, input gradient
    hlo = step.lower(p, h).compile().as_text()
    assert hlo.count("convolution(") == 1, hlo.count("convolution(")  # the weight gradient
    assert "reverse(" not in hlo  # the input gradient rotates the filters in its products
    _same_as_xla_path(monkeypatch, calls, loss, (p, h), val, grads)


def test_inference_weights_are_pre_transformed_on_cpu(wide_net):
    net, params, x = wide_net
    laid = inference_params(net, params)
    assert set(laid[1]) == {"winograd", "bias"} and laid[1]["winograd"].shape == (16, 128, 160)
    assert laid[0] is params[0]  # 1x1: the params, already channel-last
    want = laid[1]["winograd"]
    k = params[1]["kernel"][0]
    assert k.shape == (3, 3, 128, 160)
    np.testing.assert_allclose(laid[1]["bias"], net.layers[1].bias * params[1]["bias_weight"])
    np.testing.assert_allclose(want, winograd.filter_transform(k), rtol=1e-6)
    out, ref = apply(net, laid, x), apply(net, params, x)
    assert _rel(out, ref) < 2e-6


def test_inference_weights_are_laid_out_by_one_program(wide_net):
    """The whole network is laid out by one compiled program, with the values of the
    layers' own methods called one by one (which compile a small program per new
    shape), and the layers that keep their params keep the same arrays."""
    from cianna_jax import network

    net, params, _ = wide_net
    network._laid_out.clear_cache()
    laid = inference_params(net, params)
    assert network._laid_out._cache_size() == 1
    eager = [net.layers[i].inference_params(params[i], net.shapes[i][0], 2) for i in (0, 1)]
    assert laid[0] is params[0] and eager[0] is params[0]
    for a, b in zip(jax.tree_util.tree_leaves(laid[1]), jax.tree_util.tree_leaves(eager[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert inference_params(net, params)[1]["winograd"].shape == (16, 128, 160)
    assert network._laid_out._cache_size() == 1


def test_weights_off_the_default_backend_are_laid_out_where_they_are(wide_net, monkeypatch):
    """Weights on another platform than JAX's default backend (CPU weights while a GPU
    is the default) are laid out layer by layer, each layer testing where its weights
    are (inside one program it could only test the default backend)."""
    from cianna_jax import network

    net, params, _ = wide_net
    network._laid_out.clear_cache()
    monkeypatch.setattr(network.jax, "default_backend", lambda: "gpu")
    laid = inference_params(net, params)
    assert network._laid_out._cache_size() == 0
    assert set(laid[1]) == {"winograd", "bias"} and laid[0] is params[0]


def test_inference_weights_for_another_platform_keep_the_kernel(wide_net, monkeypatch):
    """Weights that do not live on the CPU (a GPU) keep XLA's kernel form."""
    net, params, _ = wide_net
    monkeypatch.setattr(conv_mod, "_on_cpu", lambda a: False)
    laid = net.layers[1].inference_params(params[1], Shape(16, 16, 1, 128), 2)
    assert laid is params[1]


def test_mixed_precision_forward_takes_the_winograd_weights(wide_net):
    """Under a half-precision policy the pre-transformed filters still apply (the
    transform and products in the policy's float32 accumulation), close to the
    half-precision direct path."""
    net, params, x = wide_net
    laid = inference_params(net, params)
    assert "winograd" in laid[1]
    out = apply(net, laid, x, mixed_precision="FP16C_FP32A")
    ref = apply(net, params, x, mixed_precision="FP16C_FP32A")
    full = apply(net, params, x)
    assert out.dtype == ref.dtype
    assert _rel(out.astype(jnp.float32), full) < 5e-3
    assert _rel(ref.astype(jnp.float32), full) < 5e-3


def test_3d_layer_forward_and_both_gradients_take_winograd(monkeypatch):
    """A 3x3x3 layer (Winograd in 3D at every width above one channel): forward, input
    gradient and, with enough tiles for its weights, the weight gradient run through
    the Winograd sums; all equal XLA's 3D convolution path; its inference weights are
    the (64, C, F) transformed filters."""
    net = nn.network([8, 8, 8], 8, [nn.conv([3, 3, 3], 16, padding=[1, 1, 1])])
    params = init_params(jax.random.key(6), net)
    layer, p = net.layers[0], params[0]
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 8, 8, 8, 8)), jnp.float32)
    ctx = Ctx(train=True, nd=3)
    calls = []
    real = conv_mod.winograd_conv
    monkeypatch.setattr(conv_mod, "winograd_conv",
                        lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))

    def loss(p, x):
        return jnp.sum(jnp.sin(layer.apply(p, x, ctx)))

    step = jax.jit(jax.value_and_grad(loss, (0, 1)))
    val, grads = step(p, x)
    assert set(calls) == {(2, 8, 8, 8, 8), (2, 8, 8, 8, 16)}  # forward, input gradient
    assert "convolution(" not in step.lower(p, x).compile().as_text()  # weight gradient too
    assert winograd.weight_gradient_pays(8, 16, 2 * 64, 3)
    laid = inference_params(net, params)
    assert laid[0]["winograd"].shape == (64, 8, 16)
    out = apply(net, laid, x)
    _same_as_xla_path(monkeypatch, calls, loss, (p, x), val, grads)
    assert _rel(out, apply(net, params, x)) < 2e-6


def test_deep_2d_layer_on_few_tiles_takes_the_winograd_weight_gradient(monkeypatch):
    """A 3x3, 128 -> 512 layer on 8x8 maps, batch 2 (32 tiles, one per 2048 filter
    weights): forward, input gradient and weight gradient all through the Winograd sums
    (no convolution in the step), the numbers of XLA's path; on 16x16 maps (128 tiles)
    the weight gradient is XLA's convolution again."""
    layer = conv_mod.Conv((3, 3, 1), 512, parse_activation("RELU"), 0.1, padding=(1, 1, 0))
    assert winograd.weight_gradient_pays(128, 512, 32, 2)
    assert not winograd.weight_gradient_pays(128, 512, 128, 2)
    ctx = Ctx(train=True)

    def loss(p, h):
        return jnp.sum(jnp.sin(layer.apply(p, h, ctx)))

    calls = _count_winograd_calls(monkeypatch)
    for side, convs, traced in ((16, 1, 2), (8, 0, 3)):
        params, _ = layer.init(jax.random.key(0), Shape(side, side, 1, 128))
        h = jax.random.normal(jax.random.key(1), (2, side, side, 128))
        calls.clear()
        step = jax.jit(jax.value_and_grad(loss, (0, 1)))
        assert step.lower(params, h).compile().as_text().count("convolution(") == convs
        # forward, input gradient (and the forward again, differentiated for the weights)
        assert len(calls) == traced
    val, grads = step(params, h)  # 8x8
    _same_as_xla_path(monkeypatch, calls, loss, (params, h), val, grads)


def test_weight_gradient_pass_size():
    """The weight gradient's passes through the Winograd sums: all the tiles in one pass
    where their transformed values are few next to the gradient's (deep 2D layers; SDC1's
    768 -> 1024 on 16x16 maps, batch 8), bounded by WGRAD_PASS_VALUES, never below the
    default pass; the default passes for 3D layers with few channels on many tiles."""
    wc = winograd.weight_gradient_chunk
    assert wc(16, 768, 1024, 512) == 512
    assert wc(16, 768, 1024, 128) == winograd.CHUNK_TILES
    assert wc(36, 768, 1024, 100) == winograd.CHUNK_TILES_4X4
    assert winograd.batch_tiles(8, (16, 16)) == 512 and winograd.batch_tiles(8, (16, 16), 4) == 128
    assert wc(36, 768, 1024, 1000) == 1000  # 4x4 tiles, one pass
    assert wc(16, 2048, 2048, 4096) == winograd.WGRAD_PASS_VALUES // (16 * 4096) == 1024
    assert wc(64, 32, 64, 8192) is None
    assert wc(64, 128, 128, 1024) is None


def test_deep_layer_weight_gradient_in_one_pass(monkeypatch):
    """With 8-tile passes, a 3x3 128 -> 512 layer on 8x8 maps, batch 2 (32 tiles): the
    forward and the input gradient run in 4 passes, the weight gradient in one (no sum
    of passes), with the numbers of XLA's path."""
    monkeypatch.setattr(winograd, "CHUNK_TILES", 8)
    layer = conv_mod.Conv((3, 3, 1), 512, parse_activation("RELU"), 0.1, padding=(1, 1, 0))
    params, _ = layer.init(jax.random.key(0), Shape(8, 8, 1, 128))
    h = jax.random.normal(jax.random.key(1), (2, 8, 8, 128))
    passes = []
    real = conv_mod.winograd_conv
    monkeypatch.setattr(conv_mod, "winograd_conv",
                        lambda *a, **kw: passes.append(kw.get("chunk_tiles")) or real(*a, **kw))

    def loss(p, h):
        return jnp.sum(jnp.sin(layer.apply(p, h, Ctx(train=True))))

    val, grads = jax.jit(jax.value_and_grad(loss, (0, 1)))(params, h)
    assert sorted(passes, key=str) == [32, None, None]  # weight pass; forward, input gradient
    _same_as_xla_path(monkeypatch, passes, loss, (params, h), val, grads)


def test_training_step_takes_winograd_where_a_forward_alone_does_not(monkeypatch):
    """A 3x3 128 -> 128 layer on 6x6 maps, one image (9 output tiles): its forward alone
    takes XLA's convolution (too few tiles to transform the filters in the program), its
    training step Winograd for the forward, the input gradient (the training rule, one
    tile per 6144 filter weights) and the weight gradient (deep filters on few tiles); the
    numbers are the XLA path's."""
    layer = conv_mod.Conv((3, 3, 1), 128, parse_activation("RELU"), 0.1, padding=(1, 1, 0))
    params, _ = layer.init(jax.random.key(0), Shape(6, 6, 1, 128))
    h = jax.random.normal(jax.random.key(1), (1, 6, 6, 128))
    assert not conv_forms.winograd_form((6, 6), (3, 3, 128, 128), (1, 1), batch=1)
    assert conv_forms.winograd_form((6, 6), (3, 3, 128, 128), (1, 1), batch=1, training=True)
    calls = _count_winograd_calls(monkeypatch)

    def loss(p, h):
        return jnp.sum(jnp.sin(layer.apply(p, h, Ctx(train=True))))

    jax.jit(layer.apply, static_argnums=2)(params, h, Ctx())
    assert calls == []
    val, grads = jax.jit(jax.value_and_grad(loss, (0, 1)))(params, h)
    # forward, input gradient and, few tiles for deep filters (one per 1820 weights), the
    # forward again, differentiated for the weight gradient
    assert len(calls) == 3
    _same_as_xla_path(monkeypatch, calls, loss, (params, h), val, grads)


@pytest.mark.parametrize("nd,m,rotated", [(2, 2, False), (2, 2, True), (2, 4, True), (3, 2, False)])
def test_hand_written_output_transform_gradient_is_autodiffs(nd, m, rotated, monkeypatch):
    # the output transform's gradient (the weight gradient's dM) written by hand equals
    # autodiff's, in every tile, dimensionality and position order (rotated: the flipped
    # order; and the channel-first products when the filters outnumber the tiles)
    rng = np.random.default_rng(5)
    b, c, f = 2, 3, 80 if rotated else 4
    x = jnp.asarray(rng.normal(size=(b,) + (5,) * nd + (f if rotated else c,)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3,) * nd + (c, f)), jnp.float32)
    u = winograd.filter_transform(k, m)
    pad = ((1, 1),) * nd
    grads = {}
    for hand in (True, False):
        monkeypatch.setattr(winograd, "HAND_OUTPUT_VJP", hand)

        def loss(x, u):
            y = winograd.winograd_conv(x, u, pad, rotated=rotated)
            return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))

        grads[hand] = jax.jit(jax.grad(loss, (0, 1)))(x, u)
    for a, r in zip(grads[True], grads[False]):  # the same sums in another order
        assert _rel(a, r) < (1e-6 if m == 2 else 1e-5)
