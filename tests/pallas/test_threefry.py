"""The in-kernel threefry reproduces jax.random bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import threefry


@pytest.mark.parametrize("seed", [0, 7, 2 ** 31 - 1])
def test_fold_in_and_uniform_match_jax_random(seed):
    key = jax.random.key(seed)
    w = threefry.key_words(key)
    for i in (0, 1, 99, 2 ** 20 + 3):
        folded = jax.random.fold_in(key, i)
        np.testing.assert_array_equal(np.asarray(jnp.stack(threefry.fold_in(w[0], w[1], i))),
                                      np.asarray(jax.random.key_data(folded)))
        kw = jax.random.key_data(folded)
        shape = (2, 9, 14)
        counter = jnp.arange(np.prod(shape), dtype=jnp.uint32).reshape(shape)
        np.testing.assert_array_equal(np.asarray(threefry.uniform(kw[0], kw[1], counter)),
                                      np.asarray(jax.random.uniform(folded, shape)))


def test_supported_keys():
    assert threefry.supported(jax.random.key(0))
    assert threefry.supported(jax.random.PRNGKey(0))
    assert not threefry.supported(jax.random.key(0, impl="rbg"))
