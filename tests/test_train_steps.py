"""Several training steps per compiled call (``training.train_steps``, ``train_epoch``'s
``steps_per_call``): the numbers of one call per step, and only where XLA keeps the speed."""

import re
from functools import partial

import jax
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn, parallel, training
from cianna_jax.layers import fused


def _mnist_like(bias=0.1, pool="MAX"):
    """A tiny version of CIANNA's MNIST network (conv + max pool run fused, dropout)."""
    return nn.network([8, 8], 1, [
        nn.conv([3, 3], 4, padding=[1, 1], activation="RELU"),
        nn.pool([2, 2], p_type=pool),
        nn.dense(6, activation="RELU", drop_rate=0.5),
        nn.dense(3, activation="SMAX", strict_size=1),
    ], bias=bias)


@pytest.fixture(scope="module")
def setup():
    net = _mnist_like()
    opt = cj.make_optimizer(0.05, 0.9, masks=partial(cj.cianna_masks, net))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(21, 8, 8, 1)).astype(np.float32)  # 6 batches of 4, the last of 1
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 21)]
    return net, opt, x, t


def _epochs(net, opt, x, t, steps_per_call, n=2):
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    totals = []
    for e in range(n):
        params, state, total = training.train_epoch(net, opt, params, state, x, t, 4,
                                                    jax.random.key(e),
                                                    steps_per_call=steps_per_call)
        totals.append(float(total))
    return params, state, totals


def test_several_steps_per_call_give_the_numbers_of_one_call_per_step(setup):
    net, opt, x, t = setup
    assert training.loop_safe(net)
    ref = _epochs(net, opt, x, t, 1)
    for k in ("auto", 4):  # auto: 8 steps per call on CPU (one call, 2 steps skipped)
        got = _epochs(net, opt, x, t, k)
        assert got[2] == ref[2]  # the loss sums
        for a, b in zip(jax.tree_util.tree_leaves(got[:2]), jax.tree_util.tree_leaves(ref[:2])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    size = training.train_steps._cache_size()
    _epochs(net, opt, x, t, 4, n=1)  # new weights, same shapes: no new program
    assert training.train_steps._cache_size() == size


def test_a_step_without_rows_changes_nothing(setup):
    net, opt, x, t = setup
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    key = jax.random.key(3)
    p1, s1, loss1 = training.train_step(net, opt, params, state, x[:4], t[:4], np.int32(4),
                                        key, step=np.int32(5))
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    xs, ts = np.stack([x[:4], x[4:8]]), np.stack([t[:4], t[4:8]])
    p2, s2, losses = training.train_steps(net, opt, params, state, xs, ts,
                                          np.array([4, 0], np.int32), key,
                                          first_step=np.int32(5))
    assert float(losses[0]) == float(loss1) and float(losses[1]) == 0.0
    for a, b in zip(jax.tree_util.tree_leaves((p1, s1)), jax.tree_util.tree_leaves((p2, s2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_loop_safe_only_for_fused_convs_and_dense_layers():
    dense_only = nn.network([5], 1, [nn.dense(3, activation="LIN")], bias=0.1)
    conv_alone = nn.network([8, 8], 1, [nn.conv([3, 3], 4, padding=[1, 1]),
                                        nn.dense(3, activation="LIN")], bias=0.1)
    with_norm = nn.network([8, 8], 1, [nn.conv([3, 3], 4, padding=[1, 1]),
                                       nn.norm(group_size=2), nn.pool([2, 2]),
                                       nn.dense(3, activation="LIN")], bias=0.1)
    assert training.loop_safe(dense_only)
    assert training.loop_safe(_mnist_like())
    assert not training.loop_safe(_mnist_like(), exact=True)  # autodiff: nothing fused
    assert not training.loop_safe(_mnist_like(pool="AVG"))
    assert not training.loop_safe(conv_alone)
    assert not training.loop_safe(with_norm)


def test_a_loop_of_fused_steps_uses_convolutions_in_xla_layouts(setup):
    """Inside a loop XLA's CPU runs a convolution in any other layout on generic code
    (the fused weight gradient with batch-as-feature dimension numbers took 20-40 ms per
    MNIST step there, against < 1 ms in XLA's own layouts)."""
    net, opt, x, t = setup
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    xs, ts = x[:8].reshape(2, 4, 8, 8, 1), t[:8].reshape(2, 4, 3)
    text = training.train_steps.lower(net, opt, params, state, xs, ts,
                                      np.array([4, 4], np.int32), jax.random.key(0),
                                      first_step=np.int32(0)).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=(\S+?),", text)
    assert labels, text  # the weight gradient (the forward is a matrix product here)
    assert set(labels) == {"b01f_01io->b01f"}, labels
    assert fused.FUSE_MAX_CHANNEL_PRODUCT >= 4  # the conv above runs fused


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "fast", None])
def test_steps_per_call_is_checked(setup, bad):
    net, opt, x, t = setup
    params = cj.init_params(jax.random.key(0), net)
    with pytest.raises(ValueError, match="steps_per_call"):
        training.train_epoch(net, opt, params, opt.init(params), x, t, 4, jax.random.key(0),
                             steps_per_call=bad)


def test_several_steps_per_call_are_refused_with_a_mesh(setup):
    net, opt, x, t = setup
    params = cj.init_params(jax.random.key(0), net)
    with pytest.raises(ValueError, match="steps_per_call.*mesh"):
        training.train_epoch(net, opt, params, opt.init(params), x, t, 4, jax.random.key(0),
                             mesh=parallel.make_mesh(), steps_per_call=2)
