"""Activation strings, forward formulas and CIANNA's (surrogate) derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax.activations import Activation, activate, parse_activation


@pytest.mark.parametrize("text,kind,sat,param,name", [
    ("RELU", "RELU", 800.0, 0.05, "RELU_S800.00_L0.05"),
    ("RELU_S10_L0.3", "RELU", 10.0, 0.3, "RELU_S10.00_L0.30"),
    ("RELU_L0.1_S10", "RELU", 10.0, 0.1, "RELU_S10.00_L0.10"),
    ("RELU_S123.456_L0.001", "RELU", 123.46, 0.0, "RELU_S123.46_L0.00"),
    ("LOGI", "LOGI", 6.0, 1.0, "LOGI_S6.00_B1.00"),
    ("LOGI_B2", "LOGI", 6.0, 2.0, "LOGI_S6.00_B2.00"),
    ("LOGISTIC", "LOGI", 6.0, 1.0, "LOGI_S6.00_B1.00"),
    ("LIN", "LIN", 0.0, 0.0, "LIN"),
    ("LINEAR", "LIN", 0.0, 0.0, "LIN"),
    ("SMAX", "SMAX", 0.0, 0.0, "SMAX"),
    ("YOLO", "YOLO", 0.0, 0.0, "YOLO"),
])
def test_parse_activation(text, kind, sat, param, name):
    act = parse_activation(text)
    assert (act.kind, act.saturation, act.param, act.name) == (kind, sat, param, name)
    assert parse_activation(act.name) == act


@pytest.mark.parametrize("text", ["", "relu", "SOFTMAX", "TANH"])
def test_unknown_activation_is_an_error(text):
    with pytest.raises(ValueError, match="activation"):
        parse_activation(text)
    with pytest.raises(TypeError, match="activation"):
        parse_activation(3)


def test_default_bias_per_activation():
    assert [parse_activation(a).default_bias for a in ("LIN", "RELU", "LOGI", "SMAX", "YOLO")] \
        == [0.5, 0.1, -1.0, 0.1, 0.5]


def test_relu_forward_and_exact_gradient_with_leak():
    act = parse_activation("RELU_S1_L0.1")
    z = jnp.array([-2.0, -0.5, 0.0, 0.3, 1.0, 1.5, 4.0])
    y = activate(act, z)
    np.testing.assert_allclose(y, [-0.2, -0.05, 0.0, 0.3, 1.0, 1.05, 1.3], rtol=1e-6)
    g = jax.grad(lambda v: jnp.sum(activate(act, v)))(z)
    np.testing.assert_allclose(g, [0.1, 0.1, 0.1, 1.0, 1.0, 0.1, 0.1], rtol=1e-6)


def test_relu_without_leak_uses_cianna_surrogate_at_saturation():
    act = Activation("RELU", 1.0, 0.0)
    z = jnp.array([-1.0, 0.5, 3.0])
    np.testing.assert_allclose(activate(act, z), [0.0, 0.5, 1.0])
    g = jax.grad(lambda v: jnp.sum(activate(act, v)))(z)
    # y = sat is not > sat: CIANNA's multiplier is 1 there (exact derivative would be 0)
    np.testing.assert_allclose(g, [0.0, 1.0, 1.0])


def test_logistic_one_sided_clamp_and_surrogate():
    act = parse_activation("LOGI_S6_B1")
    z = jnp.array([-50.0, -6.0, 0.0, 50.0])
    y = np.asarray(activate(act, z))
    lower = 1 / (1 + np.exp(6.0))
    assert y[0] == pytest.approx(lower, rel=1e-5) and y[1] == pytest.approx(lower, rel=1e-5)
    assert y[2] == pytest.approx(0.5) and y[3] == pytest.approx(1.0)  # no upper clamp
    g = np.asarray(jax.grad(lambda v: jnp.sum(activate(act, v)))(z))
    np.testing.assert_allclose(g, y * (1 - y), rtol=1e-5)
    assert g[0] > 0  # surrogate in the clamped region, where the exact derivative is 0
    exact = jax.grad(lambda v: jnp.sum(1 / (1 + jnp.exp(jnp.minimum(-v, 6.0)))))(z)
    assert float(exact[0]) == 0.0
    # away from the clamp the surrogate is the exact derivative
    np.testing.assert_allclose(g[2:], np.asarray(exact)[2:], rtol=1e-6, atol=1e-12)
