"""``training.predict`` (``cj.predict``): a whole dataset's outputs in batches, the
numbers of ``apply``, several batches per compiled call where that is safe."""

import jax
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn, training
from cianna_jax.network import make_network
from cianna_jax.yolo.config import make_config


def _mnist_like():
    """Conv + max pool (run fused) and dense layers with dropout: loop-safe."""
    return nn.network([8, 8], 1, [
        nn.conv([3, 3], 4, padding=[1, 1], activation="RELU"),
        nn.pool([2, 2], p_type="MAX"),
        nn.dense(6, activation="RELU", drop_rate=0.5),
        nn.dense(3, activation="SMAX", strict_size=1),
    ], bias=0.1)


@pytest.fixture(scope="module")
def setup():
    net = _mnist_like()
    params = cj.init_params(jax.random.key(0), net)
    x = np.random.default_rng(0).normal(size=(21, 8, 8, 1)).astype(np.float32)
    return net, params, x


def test_outputs_are_those_of_apply_for_any_steps_per_call(setup):
    net, params, x = setup
    ref = np.asarray(jax.jit(cj.apply, static_argnums=0)(net, params, x))
    assert training.resolve_steps_per_call("auto", net, params=params) == training.STEPS_PER_CALL
    for k in ("auto", 1, 4):  # 21 images in batches of 4: a ragged last batch
        y = np.asarray(cj.predict(net, params, x, 4, steps_per_call=k))
        assert y.shape == (21, 3)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    slot = np.asarray(training.predict(net, params, x, 8, bias_slot=True))
    np.testing.assert_allclose(slot, np.asarray(cj.apply(net, params, x, bias_slot=True)),
                               rtol=1e-5, atol=1e-6)


def test_laid_out_weights_are_taken_as_they_are(setup):
    net, params, x = setup
    laid = cj.inference_params(net, params)
    again = cj.inference_params(net, laid)  # laying out twice changes nothing
    assert jax.tree_util.tree_structure(again) == jax.tree_util.tree_structure(laid)
    for a, b in zip(jax.tree_util.tree_leaves(laid), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(cj.predict(net, laid, x, 4)),
                                  np.asarray(cj.predict(net, params, x, 4)))


def test_one_program_for_any_number_of_images(setup):
    net, params, x = setup
    cj.predict(net, params, x, 4)
    size = training.eval_steps._cache_size()
    assert cj.predict(net, params, x[:13], 4).shape == (13, 3)
    assert cj.predict(net, params, x[:1], 4).shape == (1, 3)
    assert training.eval_steps._cache_size() == size


def test_mc_dropout_draws_per_batch_the_same_masks_however_batches_are_grouped(setup):
    net, params, x = setup
    key = jax.random.key(3)
    one = np.asarray(cj.predict(net, params, x, 4, key=key, drop_mode="MC_MODEL",
                                steps_per_call=1))
    four = np.asarray(cj.predict(net, params, x, 4, key=key, drop_mode="MC_MODEL",
                                 steps_per_call=4))
    np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-6)
    avg = np.asarray(cj.predict(net, params, x, 4))
    assert np.abs(one - avg).max() > 1e-3  # dropout was on
    with pytest.raises(ValueError, match="key"):
        cj.predict(net, params, x, 4, drop_mode="MC_MODEL")


def test_map_output_network_runs_several_batches_per_call():
    net = nn.network([6, 6], 2, [nn.conv([3, 3], 3, padding=[1, 1], activation="RELU"),
                                 nn.conv([1, 1], 2, activation="LIN")], bias=0.1)
    params = cj.init_params(jax.random.key(1), net)
    x = np.random.default_rng(1).normal(size=(5, 6, 6, 2)).astype(np.float32)
    assert training.resolve_steps_per_call("auto", net, params=params) == \
        training.STEPS_PER_CALL
    y = np.asarray(cj.predict(net, params, x, 2))
    np.testing.assert_array_equal(y, np.asarray(cj.predict(net, params, x, 2, steps_per_call=1)))
    assert y.shape == (5, 6, 6, 2)
    np.testing.assert_allclose(y, np.asarray(cj.apply(net, params, x)), rtol=1e-5, atol=1e-6)


def test_yolo_network_gives_activated_boxes_as_apply():
    cfg = make_config([8, 8, 1], [4, 4, 1], nb_box=2, max_nb_obj_per_image=2,
                      prior_size=[[2, 4], [2, 4], [1, 1]])
    net = make_network(nn.in_dims_from([8, 8], 1), [
        nn.conv([3, 3], 4, padding=[1, 1], activation="RELU"),
        nn.conv([2, 2], cfg.nb_box * cfg.channels_per_box, stride=[2, 2], activation="YOLO"),
    ], 0.1, yolo=cfg)
    params = cj.init_params(jax.random.key(2), net)
    x = np.random.default_rng(2).normal(size=(5, 8, 8, 1)).astype(np.float32)
    y = np.asarray(cj.predict(net, params, x, 2))
    assert y.shape == (5, 4, 4, 2, cfg.channels_per_box)
    np.testing.assert_allclose(y, np.asarray(cj.apply(net, params, x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args, err, match", [
    (dict(x=np.zeros((3, 8, 8, 2), np.float32)), ValueError, "x: expected images"),
    (dict(x=np.zeros((0, 8, 8, 1), np.float32)), ValueError, "x: expected images"),
    (dict(x=np.float32(1)), ValueError, "x: expected images"),
    (dict(x="images"), TypeError, "x: expected an array of images, received str"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(steps_per_call="many"), ValueError, "steps_per_call"),
])
def test_bad_arguments_are_refused(setup, args, err, match):
    net, params, x = setup
    call = dict(x=x, batch_size=4) | args
    with pytest.raises(err, match=match):
        cj.predict(net, params, call.pop("x"), call.pop("batch_size"), **call)
