"""Layers with 2048 or 4096 filters computed with zero filters more on CPU
(``layers/widths.py``): which layers, the laid-out inference arrays, the same outputs,
the wider layer in the compiled inference and training programs with the same updates
(dropout included), the widened dropout draws, and the layers left as they are."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax import host_arrays, nn
from cianna_jax.layers import conv as conv_mod
from cianna_jax.layers import widths
from cianna_jax.layers.common import Shape
from cianna_jax.network import apply, inference_params, init_params
from cianna_jax.training import eval_step

F = widths.SLOW_MULTIPLE  # 2048 filters
WIDE = F + widths.EXTRA
#: widening is CPU-only (other backends keep every layer at its width)
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU layouts and programs")


def test_which_widths_are_slow():
    assert [n for n in (2048, 4096, 6144) if widths.slow(n)] == [2048, 4096, 6144]
    # measured at full speed (1536, 2560, 3072 columns), or never seen as rows (0)
    assert not any(widths.slow(n) for n in (0, 16, 1024, 1536, 2047, 2049, 2560, 3072))


def test_widen_appends_zero_filters():
    k = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))
    b = jnp.arange(5.0)
    wk, wb = widths.widen(k, b)
    assert wk.shape == (3, 3, 4, 5 + widths.EXTRA) and wb.shape == (5 + widths.EXTRA,)
    np.testing.assert_array_equal(wk[..., :5], k)
    np.testing.assert_array_equal(wb[:5], b)
    assert not np.any(np.asarray(wk[..., 5:])) and not np.any(np.asarray(wb[5:]))
    assert widths.widen(k).shape == wk.shape


@pytest.fixture(scope="module")
def wide_net():
    """A 1x1 and a 3x3 layer of 2048 filters (the 3x3 one Winograd on CPU), a grouped
    1x1 one of 2048 and a 3-filter head, on 4x4 maps."""
    net = nn.network([4, 4], 8, [
        nn.conv([1, 1], F, activation="RELU"),
        nn.conv([1, 1], 64, activation="RELU"),
        nn.conv([3, 3], F, padding=[1, 1], activation="RELU"),
        nn.conv([1, 1], F, activation="LIN", nb_groups=2),
        nn.conv([1, 1], 3, activation="LIN"),
    ])
    params = init_params(jax.random.key(1), net)
    x = jax.random.normal(jax.random.key(2), (2, 4, 4, 8))
    return net, params, x


@cpu_only
def test_inference_layout_widens_the_slow_layers(wide_net):
    net, params, x = wide_net
    laid = inference_params(net, params)
    # 1x1, 2048 filters: the kernel and bias term with 16 zero filters more
    assert set(laid[0]) == {"wide_kernel", "bias"}
    assert laid[0]["wide_kernel"].shape == (1, 1, 8, WIDE)
    np.testing.assert_array_equal(laid[0]["wide_kernel"][..., :F], params[0]["kernel"][0])
    np.testing.assert_allclose(laid[0]["bias"][:F],
                               net.layers[0].bias * params[0]["bias_weight"])
    assert not np.any(np.asarray(laid[0]["wide_kernel"][..., F:]))
    # 3x3, 2048 filters as Winograd: the transformed filters are widened
    assert set(laid[2]) == {"winograd", "bias"} and laid[2]["winograd"].shape == (16, 64, WIDE)
    assert not np.any(np.asarray(laid[2]["winograd"][..., F:]))
    # 64 filters, a grouped layer (its groups split the filters) and the head keep theirs
    assert laid[1] is params[1] and laid[3] is params[3] and laid[4] is params[4]
    assert inference_params(net, laid) == laid  # laying out twice changes nothing


def test_widened_layers_give_the_same_outputs(wide_net):
    net, params, x = wide_net
    laid = inference_params(net, params)
    ref = apply(net, params, x)
    out = apply(net, laid, x)
    assert out.shape == ref.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5 * float(jnp.max(jnp.abs(ref))))
    # and layer by layer: each widened layer's own output has its 2048 filters only
    h = x
    for layer, p, q in zip(net.layers[:3], params, laid):
        from cianna_jax.layers.common import Ctx

        a, b = layer.apply(p, h, Ctx()), layer.apply(q, h, Ctx())
        assert b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))))
        h = a


@cpu_only
def test_the_compiled_inference_computes_the_wider_layer(wide_net):
    """The laid-out program's 1x1 layer (a convolution or a product, by XLA's choice)
    writes rows of 2064 values, not 2048."""
    net, params, x = wide_net
    laid = inference_params(net, params)
    t = jnp.zeros((2, 4, 4, 3))
    text = eval_step.lower(net, laid, x, t, jnp.int32(2), with_loss=False).compile().as_text()
    assert re.search(rf"= f32\[[0-9,]*,{WIDE}\]\S* (convolution|dot|fusion)\(", text), \
        "no layer of the widened width"


def test_weights_off_the_cpu_are_not_widened(wide_net, monkeypatch):
    net, params, _ = wide_net
    monkeypatch.setattr(conv_mod, "_on_cpu", lambda a: False)
    assert net.layers[0].inference_params(params[0], Shape(4, 4, 1, 8), 2) is params[0]


def _train_text_and_grads(net, params, x, t):
    from cianna_jax import training

    opt = training.make_optimizer(0.01, 0.8, masks=lambda p: training.cianna_masks(net, p))
    def args():  # fresh copies: the step donates its params and state
        p = host_arrays.copy_tree(params)
        return (net, opt, p, opt.init(p), x, t, jnp.int32(x.shape[0]), jax.random.key(5))

    text = training.train_step.lower(*args()).compile().as_text()
    new_params, _, loss = training.train_step(*args())
    return text, new_params, loss


@cpu_only
@pytest.mark.parametrize("drop", [0.0, 0.25])
def test_training_widens_the_layer_with_the_same_update(drop, monkeypatch):
    """A training step runs a 2048-filter layer at 2064 filters (its gradient padded, the
    kernel's cut back), with the same update, dropout mask included (drawn for the real
    filters' places)."""
    net = nn.network([4, 4], 8, [nn.conv([1, 1], F, activation="RELU", drop_rate=drop),
                                  nn.conv([1, 1], 3, activation="LIN")])
    params = init_params(jax.random.key(1), net)
    x = jax.random.normal(jax.random.key(2), (2, 4, 4, 8))
    t = jax.random.normal(jax.random.key(3), (2, 4, 4, 3))
    text, new, loss = _train_text_and_grads(net, params, x, t)
    assert f",{WIDE}]" in text
    monkeypatch.setattr(widths, "slow", lambda n: False)
    jax.clear_caches()
    plain_text, plain, plain_loss = _train_text_and_grads(net, params, x, t)
    jax.clear_caches()
    assert f",{WIDE}]" not in plain_text
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(plain)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_widened_draws_give_the_real_places_their_values():
    from cianna_jax.layers.common import uniform, widened_draws

    key = jax.random.key(7)
    narrow = uniform(key, (2, 3, 5, 6))
    wide = uniform(key, (2, 3, 5, 6 + widths.EXTRA), width=6)
    np.testing.assert_array_equal(wide[..., :6], narrow)
    np.testing.assert_array_equal(narrow, jax.random.uniform(key, (2, 3, 5, 6)))
    assert widened_draws(key, jnp.float32) and not widened_draws(key, jnp.bfloat16)
    with pytest.raises(ValueError, match="width"):
        uniform(key, (2, 22), jnp.bfloat16, width=6)
    with pytest.raises(ValueError, match="width"):
        uniform(key, (2, 22), width=30)
