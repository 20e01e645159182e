"""Initialisers: CIANNA's distributions and scalings, drawn from explicit keys."""

import math

import jax
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import initializers, nn


@pytest.mark.parametrize("fct,scaling,want_std", [
    ("xavier", 1.0, math.sqrt(2 / (30 + 70))),
    ("xavier_U", 1.0, math.sqrt(12 / (30 + 70)) / math.sqrt(3)),
    ("lecun", 2.0, 2 * math.sqrt(1 / 30)),
    ("lecun_U", 1.0, math.sqrt(3 / 30) / math.sqrt(3)),
    ("normal", 0.5, 0.5),
    ("uniform", 0.5, 0.5 / math.sqrt(3)),
])
def test_distribution_std(fct, scaling, want_std):
    w = np.asarray(initializers.draw(jax.random.key(0), fct, (200, 300), 30, 70, scaling))
    assert abs(w.mean()) < 0.02 * want_std * 10
    assert w.std() == pytest.approx(want_std, rel=0.02)
    if fct.endswith("_U") or fct == "uniform":
        assert np.abs(w).max() <= want_std * math.sqrt(3) * 1.0001


def test_draws_are_reproducible_from_keys():
    a = initializers.draw(jax.random.key(7), "xavier", (3, 4), 4, 3, 1.0)
    b = initializers.draw(jax.random.key(7), "xavier", (3, 4), 4, 3, 1.0)
    c = initializers.draw(jax.random.key(8), "xavier", (3, 4), 4, 3, 1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_layer_fans_follow_cianna():
    net = nn.network([10, 10], 3, [nn.conv([3, 3], 40, init_fct="lecun"),
                                   nn.dense(500, init_fct="lecun")], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    conv_w = np.asarray(cj.params_to_rows(net, params)[0]["w"])
    assert conv_w.std() == pytest.approx(math.sqrt(1 / 28), rel=0.05)  # fan-in K*C + 1
    dense_w = np.asarray(params[1]["w"])
    assert np.all(dense_w[:, -1] == 0)  # bias-propagation column (no next dense: no pivot)
    assert dense_w[:, :-1].std() == pytest.approx(math.sqrt(1 / 500), rel=0.05)  # fan-out quirk


def test_scaling_is_mandatory_for_normal_and_uniform():
    with pytest.raises(ValueError, match="init_scaling"):
        nn.dense(4, init_fct="normal")
    with pytest.raises(ValueError, match="init_scaling"):
        nn.conv([3, 3], 4, init_fct="uniform", init_scaling=-1)
    with pytest.raises(ValueError, match="init_fct"):
        nn.dense(4, init_fct="he")


@pytest.mark.parametrize("fct", ["xavier", "lecun_U"])
def test_host_draws_are_bit_identical_to_jax_random(fct):
    """Concrete keys draw through one chunked program per distribution: the values are
    those of jax.random on the requested shape, bit for bit where both are compiled with
    XLA's optimisations, as users compile (the sampler keeps them in the test suite too;
    an unoptimised ``jax.random.normal`` differs in the last bit now and then), and under
    jit, where the key is traced and the direct draw runs."""
    key = jax.random.key(11)
    chunk = initializers.CHUNK
    scale = math.sqrt(2 / 13) * 1.5 if fct == "xavier" else math.sqrt(3 / 9) * 1.5

    def sample(k, shape):  # jax.random's draw; scaled outside its program, as draw() does
        if fct == "xavier":
            return jax.random.normal(k, shape)
        return jax.random.uniform(k, shape, minval=-1.0, maxval=1.0)

    def reference(k, shape):
        return sample(k, shape) * scale

    assert np.asarray(initializers.draw(key, fct, (0, 4), 9, 4, 1.5)).shape == (0, 4)
    for shape in [(1, 1), (5, 30), (3, 4, 5), (700, 3), (chunk,), (2, chunk + 3)]:
        got = np.asarray(initializers.draw(key, fct, shape, 9, 4, 1.5))
        # the suite's unoptimised programs: within 2 units in the last place
        np.testing.assert_allclose(got, np.asarray(reference(key, shape)), rtol=5e-7, atol=0)
        traced = jax.jit(lambda k, s=shape: initializers.draw(k, fct, s, 9, 4, 1.5))(key)
        np.testing.assert_allclose(np.asarray(traced), got, rtol=5e-7, atol=0)
        if shape in ((5, 30), (2, chunk + 3)):  # within a chunk, across two
            optimised = jax.jit(sample, static_argnums=1).lower(key, shape).compile(
                initializers.SAMPLER_OPTIONS)
            np.testing.assert_array_equal(got, np.asarray(optimised(key) * scale))
    keys = initializers.split(key, 5)
    np.testing.assert_array_equal(
        np.stack([np.asarray(jax.random.key_data(k)) for k in keys]),
        np.asarray(jax.random.key_data(jax.random.split(key, 5))))


def test_network_init_compiles_no_program_per_layer_shape():
    """A second network of new layer shapes (same size class) reuses the sampling
    programs: init costs no XLA compilation per shape, and the samplers, compiled once
    ahead of time, survive ``jax.clear_caches()``."""
    def net(f):
        return nn.network([6, 5], 2, [nn.conv([3, 3], f, padding=[1, 1]), nn.pool([2, 2]),
                                      nn.dense(7 + f, drop_rate=0.3),
                                      nn.dense(3, activation="SMAX")])
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _d, **_k: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    cj.init_params(jax.random.key(0), net(4))
    samplers = [initializers._chunk_sample(normal) for normal in (True, False)]
    jax.clear_caches()
    key = jax.random.key(0)
    before = len(compiles)
    params = cj.init_params(key, net(5))
    assert len(compiles) == before
    assert [initializers._chunk_sample(normal) for normal in (True, False)] == samplers
    assert params[0]["kernel"].shape == (1, 3, 3, 2, 5) and params[0]["bias_weight"].shape == (5,)
    assert [p["w"].shape for p in params[2:]] == [(31, 13), (13, 4)]


def test_an_xla_without_the_sampler_options_compiles_with_its_defaults(monkeypatch):
    """A backend that does not know an option of SAMPLER_OPTIONS (JAX: "No such compile
    option") still draws, with the same values."""
    want = np.asarray(initializers.draw(jax.random.key(3), "lecun_U", (40, 7), 9, 4, 1.0))
    monkeypatch.setattr(initializers, "SAMPLER_OPTIONS",
                        dict(initializers.SAMPLER_OPTIONS, xla_no_such_option_here=1))
    initializers._chunk_sample.cache_clear()
    try:
        got = np.asarray(initializers.draw(jax.random.key(3), "lecun_U", (40, 7), 9, 4, 1.0))
    finally:
        initializers._chunk_sample.cache_clear()  # the next tests compile with the real options
    np.testing.assert_array_equal(got, want)
