"""The input-gradient product in the form XLA's CPU runs fast (``layers/products.py``):
the numbers of the plain product and of autodiff, the canonical product in the compiled
program where the rule takes it, and every layer that is a matrix product uses it."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cianna_jax.layers import products

HIGHEST = lax.Precision.HIGHEST


def _dots(text: str) -> list[tuple[str, str]]:
    """(lhs, rhs) contracting dimensions of every product in a compiled module's text."""
    return re.findall(r" dot\(.*?lhs_contracting_dims=\{(\d+)\}, "
                      r"rhs_contracting_dims=\{(\d+)\}", text)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_the_rule_on_measured_shapes():
    pays = products.transposed_form_pays  # (rows of g, its columns, kernel rows)
    assert pays(512, 2048, 1024)       # SDC1's 1x1 1024 -> 2048 on 8x8 maps, batch 8
    assert pays(144, 1024, 4608)       # a 3x3 512 -> 1024 im2col on 3x3 maps, batch 16
    assert pays(512, 1024, 768)
    assert not pays(2048, 2048, 1024)  # too many rows: the two copies cost more
    assert not pays(256, 768, 512)     # a kernel the caches hold
    assert not pays(8192, 128, 192)


@pytest.mark.parametrize("m,n,k,canonical", [(16, 96, 80, True), (300, 40, 50, False)])
def test_times_transposed_is_g_times_k_transposed(monkeypatch, m, n, k, canonical):
    monkeypatch.setattr(products, "TRANSPOSED_MIN_VALUES", 1000)
    assert products.transposed_form_pays(m, n, k) == canonical
    rng = np.random.default_rng(0)
    g = rng.normal(size=(m, n)).astype(np.float32)
    kk = rng.normal(size=(k, n)).astype(np.float32)
    fn = jax.jit(lambda g, kk: products.times_transposed(g, kk, HIGHEST))
    got = fn(g, kk)
    assert got.shape == (m, k)
    assert _rel(got, g.astype(np.float64) @ kk.T.astype(np.float64)) < 1e-6
    # the compiled CPU program: the kernel read as it lies, (k, n) @ (n, m), or transposed
    dots = _dots(fn.lower(g, kk).compile().as_text())
    assert dots == ([("1", "0")] if canonical else [("1", "1")]), dots


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize("threshold", [1, 1 << 60])
def test_product_gradients_are_autodiffs(monkeypatch, dtype, tol, threshold):
    monkeypatch.setattr(products, "TRANSPOSED_MIN_VALUES", threshold)
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(2, 3, 5, 64)), dtype)  # leading axes flattened
    k = jnp.asarray(rng.normal(size=(64, 7)), dtype)

    def loss(fn):
        return jax.jit(jax.value_and_grad(
            lambda a, k: jnp.sum(jnp.sin(fn(a, k).astype(jnp.float32))), argnums=(0, 1)))

    v, (ga, gk) = loss(lambda a, k: products.product(a, k, HIGHEST, jnp.float32))(a, k)
    rv, (ra, rk) = loss(lambda a, k: jnp.dot(a, k, precision=HIGHEST,
                                             preferred_element_type=jnp.float32))(a, k)
    assert ga.dtype == a.dtype and gk.dtype == k.dtype
    assert ga.shape == a.shape and gk.shape == k.shape
    assert float(v) == float(rv)
    assert _rel(ga, ra) < tol and _rel(gk, rk) < tol


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_one_row_weight_gradient_is_the_outer_product_in_place(dtype):
    """One row (a dense layer at batch 1, a conv on one window): the weight gradient is
    the outer product, equal to autodiff's, written in the kernel's layout: no copy of a
    transposed kernel-sized array (XLA wrote (g^T a) then copied it transposed, 8 ms
    against 0.6 for a 4608 x 1024 kernel)."""
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.normal(size=(1, 300)), dtype)
    k = jnp.asarray(rng.normal(size=(300, 70)), dtype)
    r = jnp.asarray(rng.normal(size=(1, 70)), jnp.float32)

    def grads(fn):
        return jax.jit(jax.grad(lambda a, k: jnp.sum(fn(a, k) * r), argnums=(0, 1)))

    ours = grads(lambda a, k: products.product(a, k, HIGHEST, jnp.float32))
    ga, gk = ours(a, k)
    ra, rk = grads(lambda a, k: jnp.dot(a, k, precision=HIGHEST,
                                        preferred_element_type=jnp.float32))(a, k)
    assert gk.dtype == k.dtype and gk.shape == k.shape
    np.testing.assert_array_equal(np.asarray(gk, np.float32), np.asarray(rk, np.float32))
    assert _rel(ga, ra) < 1e-6
    if jax.default_backend() == "cpu":
        text = ours.lower(a, k).compile().as_text()
        assert not re.search(r"\[300,70\]\{0,1\}", text), "a transposed kernel-sized array"


def test_layers_that_are_products_take_it(monkeypatch):
    """A training step of a network whose layers are all matrix products on CPU (a 1x1
    conv, a 3x3 conv on 2x2 maps (the small-map product), a 2x2 stride-2 conv (windows
    tiling the input), a dense layer reading a map and a flat one): with the rule on
    every shape, no product reads its right operand transposed, and the gradients are
    those of the plain products."""
    from cianna_jax import nn
    from cianna_jax.network import init_params
    from cianna_jax.training import batch_loss

    net = nn.network([2, 2], 32, [
        nn.conv([1, 1], 64, activation="RELU"),
        nn.conv([3, 3], 64, padding=[1, 1], activation="RELU"),
        nn.conv([2, 2], 32, stride=[2, 2], activation="RELU"),
        nn.dense(48, activation="RELU"),
        nn.dense(10, activation="LIN"),
    ])
    params = init_params(jax.random.key(0), net)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 2, 2, 32)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(2, 10)), jnp.float32)
    results = {}
    for threshold in (1, 1 << 60):
        monkeypatch.setattr(products, "TRANSPOSED_MIN_VALUES", threshold)
        jax.clear_caches()  # inner jitted functions are traced again under the rule
        step = jax.jit(jax.grad(lambda p: batch_loss(p, net, x, t, 2, None)[0]))
        results[threshold] = (step(params), _dots(step.lower(params).compile().as_text()))
    (got, dots_on), (want, dots_off) = results[1], results[1 << 60]
    assert ("1", "1") not in dots_on, dots_on
    assert dots_off.count(("1", "1")) >= 4, dots_off  # four input gradients, read transposed
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert _rel(a, b) < 1e-5
