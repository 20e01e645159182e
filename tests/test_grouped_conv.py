"""Grouped convolutions on CPU (layers/grouped.py): depth-wise and (at inference) small
groups as per-tap products, others as one XLA convolution per group; the same sums as XLA's grouped convolution, forward and
both gradients, with strides, asymmetric padding and 3D."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax.layers import conv as conv_mod
from cianna_jax.layers.grouped import grouped_conv
from cianna_jax.layers.xla_conv import lax_conv
from cianna_jax.precision import get_policy

#: the test reads XLA's CPU program (GPUs keep XLA's grouped convolution)
cpu_programs = pytest.mark.skipif(jax.default_backend() != "cpu",
                                  reason="inspects XLA's CPU programs")


def _rel(a, b):  # in numpy: eager jnp ops compile a program per shape
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# (input shape, filter, groups, filters, strides, padding pairs)
CASES = {
    "depthwise": ((2, 9, 8, 6), (3, 3), 6, 6, (1, 1), ((1, 1), (1, 1))),
    "depthwise_x2_strided": ((2, 9, 8, 4), (3, 2), 4, 8, (2, 2), ((0, 2), (1, 0))),
    "groups2": ((2, 8, 8, 4), (3, 3), 2, 6, (2, 1), ((1, 1), (1, 1))),
    "groups3_3d": ((1, 5, 6, 4, 6), (3, 3, 3), 3, 3, (1, 2, 1), ((1, 1), (0, 0), (1, 1))),
}


@pytest.mark.parametrize("max_tap_channels", [1, 4], ids=["per_group", "taps"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_grouped_forms_are_xlas_grouped_convolution_with_gradients(case, max_tap_channels):
    """Both forms (groups of 2 channels: per-tap products, or one convolution per group
    with ``max_tap_channels=1``)."""
    shape, f, groups, n_f, strides, pads = CASES[case]
    rng = np.random.default_rng(0)
    nd = len(f)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=f + (shape[-1] // groups, n_f)), jnp.float32)

    def ref(x, k):
        return lax_conv(x, k, strides, pads, (1,) * nd, groups=groups)

    def ours(x, k):
        return grouped_conv(x, k, strides, pads, groups, max_tap_channels=max_tap_channels)

    want = jax.jit(ref)(x, k)  # jitted: eagerly each operation compiles on its own
    got, vjp = jax.jit(lambda x, k: jax.vjp(ours, x, k))(x, k)
    assert got.shape == want.shape and _rel(got, want) < 2e-6
    g = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
    ref_grads = jax.jit(lambda x, k, g: jax.vjp(ref, x, k)[1](g))(x, k, g)
    for a, b in zip(vjp(g), ref_grads):
        assert a.shape == b.shape and _rel(a, b) < 2e-6


@cpu_programs
def test_conv_layer_takes_the_grouped_form_on_cpu_only():
    """``conv_nd`` on CPU runs no grouped XLA convolution (its forward and both gradients
    go through the grouped forms), the same numbers as the other backends' form, also
    in bfloat16."""
    shape, f, groups, n_f = (2, 8, 7, 4), (3, 3), 2, 6
    strides, pads = (1, 1), ((1, 1), (1, 1))  # CIANNA's input gradient is the exact one here
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=f + (shape[-1] // groups, n_f)), jnp.float32)
    geo = (strides, tuple(p for p, _ in pads), (1, 1))
    for mode, tol in (("off", 2e-6), ("BF16C_FP32A", 2e-2)):
        policy = get_policy(mode)

        def loss(x, k, policy=policy):
            return jnp.sum(jnp.sin(conv_mod.conv_nd(x, k, *geo, policy, groups)))

        step = jax.jit(jax.value_and_grad(loss, (0, 1)))
        text = step.lower(x, k).compile().as_text()
        assert "feature_group_count" not in text and "batch_group_count" not in text
        val, grads = step(x, k)
        lowered = jax.jit(jax.value_and_grad(loss, (0, 1))).trace(x, k).lower(
            lowering_platforms=("cuda",))
        assert "feature_group_count = 2" in lowered.as_text()  # XLA's grouped conv there
        want_val, want = jax.value_and_grad(
            lambda x, k, policy=policy: jnp.sum(jnp.sin(lax_conv(
                x, k, strides, pads, (1, 1), policy, groups).astype(x.dtype))), (0, 1))(x, k)
        assert abs(float(val) - float(want_val)) <= tol * abs(float(want_val)) + tol
        for a, b in zip(grads, want):
            assert _rel(a.astype(jnp.float32), b.astype(jnp.float32)) < tol


def test_grouped_conv_checks_its_channels():
    x, k = jnp.zeros((1, 5, 5, 6)), jnp.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match=r"grouped_conv: 2 groups need C = 2 x 2 input"):
        grouped_conv(x, k, (1, 1), ((1, 1), (1, 1)), 2)
