"""Sums over a map's positions in fused passes (``layers/sums.py``): their values, the
chunked last axis, bad shapes, and the group norm's compiled gradient that writes no
map-sized intermediate (XLA's CPU tree-reduction rewrite wrote five)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax import nn
from cianna_jax.layers import norm as norm_mod
from cianna_jax.layers import sums
from cianna_jax.layers.common import Ctx


def _ref(a):
    a = np.asarray(a, np.float64)
    return a.sum(axis=tuple(range(1, a.ndim - 1)))


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (2, 3, 4, 6, 2), (1, 9, 1)])
def test_position_sums_are_the_sums_over_positions(shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape) + 2.0, jnp.float32)
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    s1, s2, s3 = jax.jit(lambda x, g: sums.position_sums(g, g * x, x * x))(x, g)
    assert s1.shape == s2.shape == s3.shape == (shape[0], shape[-1])
    np.testing.assert_allclose(s3, _ref(np.asarray(x, np.float64) ** 2), rtol=1e-5)
    np.testing.assert_allclose(s1, _ref(g), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s2, _ref(np.asarray(g, np.float64) * np.asarray(x)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("w,chunk", [(24, 12), (23, 23), (10, 10), (96, 48)])
def test_a_long_last_axis_is_summed_in_chunks(w, chunk, monkeypatch):
    monkeypatch.setattr(sums, "ROW_CHUNK", 12 if w != 96 else 50)
    monkeypatch.setattr(sums, "MIN_CHUNK", 4)
    assert sums._chunk(w) == chunk
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, w, 4)), jnp.float32)
    s1, s2 = sums.position_sums(x, x * x)
    np.testing.assert_allclose(s1, _ref(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s2, _ref(np.asarray(x, np.float64) ** 2), rtol=1e-5)


def test_position_sums_reject_maps_of_other_shapes_or_one_map():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(2, 3, 5\)"):
        sums.position_sums(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="maps"):
        sums.position_sums(jnp.zeros((2, 3)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="two or more"):
        sums.position_sums(jnp.zeros((2, 3, 4)))


def _map_sized_outputs(text: str, shape) -> int:
    """Instructions of the compiled entry computation that write a whole map ``shape``
    (fusions and copies; bitcasts and parameters write nothing)."""
    entry = text[text.index("ENTRY"):]
    dims = ",".join(map(str, shape))
    return sum(1 for line in entry.splitlines()
               if re.search(rf"= f32\[{dims}\]\{{[\d,]+\}} (fusion|copy)\(", line))


@pytest.mark.parametrize("fused,most", [(True, 1), (False, None)])
def test_norm_gradient_writes_only_the_input_gradient(fused, most, monkeypatch):
    """The group norm's input gradient program (forward statistics included) writes one
    map: the gradient itself.  Autodiff of the plain formulation writes the summed
    expressions out first (the check fails there)."""
    if jax.default_backend() != "cpu":
        pytest.skip("XLA's CPU pipeline")
    monkeypatch.setattr(norm_mod, "FUSED_PASSES", fused)
    shape = (2, 64, 64, 8)
    layer = nn.network([64, 64], 8, [nn.conv([1, 1], 8), nn.norm(group_size=4)]).layers[1]
    params = {"gamma": jnp.ones(2), "beta": jnp.zeros(2)}
    x, g = jnp.ones(shape), jnp.ones(shape)
    fn = jax.jit(lambda p, x, g: jax.vjp(lambda x: layer.apply(p, x, Ctx(train=True)), x)[1](g))
    n = _map_sized_outputs(fn.lower(params, x, g).compile().as_text(), shape)
    if most is None:
        assert n > 1
    else:
        assert 1 <= n <= most
