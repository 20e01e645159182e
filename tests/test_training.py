"""CIANNA's output deltas, update rule (optax transformation) and the batch driver."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cianna_jax as cj
from cianna_jax import nn, training


def _one_dense(act, n_in=5, n_out=3, bias=0.7):
    net = nn.network([n_in], 1, [nn.dense(n_out, activation=act, strict_size=1)], bias=bias)
    params = cj.init_params(jax.random.key(0), net)
    return net, params


@pytest.mark.parametrize("act", ["LIN", "RELU_S0.5_L0.1", "LOGI_S1_B2", "SMAX"])
def test_gradient_is_cianna_delta(act):
    """grad of the batch loss = X~^T delta / B with CIANNA's delta (surrogates included)."""
    net, params = _one_dense(act)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32) * 3
    t = rng.uniform(size=(4, 3)).astype(np.float32)  # SMAX target not summing to 1 on purpose
    n_valid = 3
    grads = jax.grad(lambda p: training.batch_loss(p, net, x, t, n_valid, None)[0])(params)
    w = np.asarray(params[0]["w"])
    xt = np.concatenate([x, np.full((4, 1), 0.7, np.float32)], axis=1)
    z = xt @ w
    a = cj.parse_activation(act)
    body = z[:, :3]
    if a.kind == "LIN":
        y, mult = body, 1.0
    elif a.kind == "RELU":
        y = np.where(body <= 0, 0.1 * body, np.where(body <= 0.5, body, 0.5 + 0.1 * (body - 0.5)))
        mult = np.where((y <= 0) | (y > 0.5), 0.1, 1.0)
    elif a.kind == "LOGI":
        y = 1 / (1 + np.exp(np.minimum(-2 * body, 1.0)))
        mult = 2 * y * (1 - y)  # surrogate, also in the clamped region
    else:
        e = np.exp(body - body.max(1, keepdims=True))
        y, mult = e / e.sum(1, keepdims=True), 1.0
    delta = (y - t) * mult
    delta[n_valid:] = 0
    want = np.zeros_like(w)
    want[:, :3] = xt.T @ delta / 4  # divided by the allocated batch size, not n_valid
    np.testing.assert_allclose(np.asarray(grads[0]["w"]), want, rtol=1e-5, atol=1e-6)
    if a.kind == "LOGI":
        assert (np.minimum(-2 * body, 1.0) == 1.0).any(), "test must reach the clamped region"


def test_displayed_loss_values():
    net, params = _one_dense("SMAX")
    x = np.eye(5, dtype=np.float32)[:2]
    t = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    _, total = training.batch_loss(params, net, x, t, 2, None)
    y = np.asarray(cj.apply(net, params, cj.rows_to_images(net, x)))
    want = -np.sum(t * np.log(np.maximum(y, 1e-6)))
    assert float(total) == pytest.approx(want, rel=1e-5)


def test_update_rule_two_steps_partial_batch_and_pivot():
    """V = mu V + lr G/B + lr wd W; W -= V; pivot frozen; partial batch divided by B."""
    net = nn.network([5], 1, [nn.dense(4, activation="LIN"), nn.dense(3, activation="LIN",
                                                                        strict_size=1)], bias=0.7)
    params = cj.init_params(jax.random.key(1), net)
    lr, mu, wd, b = 0.3, 0.7, 0.05, 4
    opt = cj.make_optimizer(lr, mu, wd, masks=partial(cj.cianna_masks, net))
    state = opt.init(params)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    t = rng.normal(size=(6, 3)).astype(np.float32)

    ws = [np.asarray(p["w"], np.float64) for p in params]
    vs = [np.zeros_like(w) for w in ws]
    pivot_before = ws[0][-1, -1]
    for start in (0, 4):  # batches of 4 and 2 (padded)
        xb, tb = x[start:start + b], t[start:start + b]
        n = xb.shape[0]
        x0 = np.concatenate([xb, np.full((n, 1), 0.7)], 1)
        h = x0 @ ws[0]
        z = h @ ws[1]
        d1 = z[:, :3] - tb
        g1 = np.zeros_like(ws[1])
        g1[:, :3] = h.T @ d1
        dh = d1 @ ws[1][:, :3].T  # LIN: slot gradient is kept
        g0 = x0.T @ dh
        for i, g in enumerate((g0, g1)):
            vs[i] = mu * vs[i] + lr * g / b
            mask = np.ones_like(ws[i])
            mask[-1, -1] = 0
            vs[i] = vs[i] + lr * wd * ws[i] * mask
            ws[i] = ws[i] - vs[i] * mask
        xb_p, tb_p = training.pad_batch(xb, b), training.pad_batch(tb, b)
        params, state, _ = training.train_step(net, opt, params, state, xb_p, tb_p, np.int32(n),
                                               jax.random.key(0))
    for mine, want in zip(params, ws):
        np.testing.assert_allclose(np.asarray(mine["w"]), want, rtol=2e-5, atol=2e-6)
    assert float(params[0]["w"][-1, -1]) == pytest.approx(pivot_before)


def test_norm_parameters_are_not_decayed():
    net = nn.network([4, 4], 1, [nn.conv([3, 3], 4, padding=[1, 1]), nn.norm(group_size=2),
                                 nn.dense(2, activation="LIN")], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(0.5, 0.0, 10.0, masks=partial(cj.cianna_masks, net))
    state = opt.init(params)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = opt.update(zero, state, params)
    np.testing.assert_array_equal(np.asarray(updates[1]["gamma"]), 0.0)
    for name in ("kernel", "bias_weight"):  # conv: the bias weights decay too
        np.testing.assert_allclose(np.asarray(updates[0][name]),
                                   -5.0 * np.asarray(params[0][name]), rtol=1e-6)


def test_frozen_layers_are_not_updated():
    net, params = _one_dense("LIN")
    opt = training.cianna_sgd(0.1, masks=lambda p: cj.cianna_masks(net, p, frozen=(0,)))
    state = opt.init(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = opt.update(grads, state, params)
    assert not np.asarray(updates[0]["w"]).any()
    # unfreezing through the state: same transformation, updates flow again
    state = training.set_masks(state, cj.cianna_masks(net, params))
    updates, _ = opt.update(grads, state, params)
    assert np.asarray(updates[0]["w"])[:-1].all()


def test_freezing_through_set_masks_does_not_recompile():
    net, params = _one_dense("LIN")
    opt = training.CIANNA_SGD
    x, t = np.ones((4, 5), np.float32), np.zeros((4, 3), np.float32)
    state = training.set_masks(opt.init(params), cj.cianna_masks(net, params))
    state = training.set_learning_rate(state, 0.1)
    params, state, _ = training.train_step(net, opt, params, state, x, t, np.int32(4),
                                           jax.random.key(0))
    size = training.train_step._cache_size()
    frozen = training.set_masks(state, cj.cianna_masks(net, params, frozen=(0,)))
    before = np.asarray(params[0]["w"]).copy()
    params, state, _ = training.train_step(net, opt, params, frozen, x, t, np.int32(4),
                                           jax.random.key(0))
    assert training.train_step._cache_size() == size
    np.testing.assert_array_equal(np.asarray(params[0]["w"]), before)


def test_init_state_is_the_optimizer_init_traced():
    """``init_state`` builds on the host the state ``optimizer.init`` gives under ``jit``
    (structure, dtypes, values, masks included), for CIANNA's SGD and a V-1.1 Adam with
    weight EMA."""
    from cianna_jax import optim

    net = nn.network([6, 6], 1, [nn.conv([3, 3], 4), nn.norm(group_size=2),
                                 nn.dense(5), nn.dense(3, activation="SMAX")], bias=0.5)
    params = cj.init_params(jax.random.key(0), net)
    for opt in (training.make_optimizer(0.01, 0.9, masks=partial(training.cianna_masks, net)),
                optim.make_v11_optimizer(optim.parse_optimizer(optim.adam()), learning_rate=1e-3,
                                         use_wema=True, wema_rate=0.99,
                                         masks=partial(optim.v11_masks, net))):
        want, got = jax.jit(opt.init)(params), training.init_state(opt, params)
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    sgd = training.init_state(training.make_optimizer(
        0.01, 0.9, masks=partial(training.cianna_masks, net)), params)
    assert float(np.asarray(sgd.inner_state[2].mask[2]["w"])[-1, -1]) == 0.0  # the pivot


def test_any_optax_optimizer_can_replace_cianna_sgd():
    net, params = _one_dense("LIN")
    opt = optax.adam(1e-2)
    state = opt.init(params)
    x = np.ones((4, 5), np.float32)
    t = np.zeros((4, 3), np.float32)
    losses = []
    for _ in range(3):
        params, state, total = training.train_step(net, opt, params, state, x, t, np.int32(4),
                                                   jax.random.key(0))
        losses.append(float(total))
    assert losses[2] < losses[0]


def test_learning_rate_schedule_and_injection():
    assert training.learning_rate_at(0, 0.1, 0.01, 0.5) == pytest.approx(0.1)
    assert training.learning_rate_at(1, 0.1, 0.01, 0.5) == pytest.approx(0.064588, abs=1e-6)
    assert training.learning_rate_at(2, 0.1, 0.01, 0.5) == pytest.approx(0.043109, abs=1e-6)
    net, params = _one_dense("LIN")
    opt = cj.make_optimizer(0.1, 0.9, masks=partial(cj.cianna_masks, net))
    state = training.set_learning_rate(opt.init(params), 0.05)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.05)
    with pytest.raises(KeyError, match="nope"):
        training.set_learning_rate(state, 0.1, nope=1.0)


def test_epochs_do_not_recompile_after_the_first():
    net = nn.network([3], 1, [nn.dense(2, activation="LIN")], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(0.1, 0.5, masks=partial(cj.cianna_masks, net))
    state = opt.init(params)
    x = np.ones((10, 3), np.float32)  # 10 examples, batch 4: last batch is partial
    t = np.zeros((10, 2), np.float32)
    key = jax.random.key(0)
    for k in (1, "auto"):  # one call per step, or several (training.train_steps)
        params, state, _ = training.train_epoch(net, opt, params, state, x, t, 4, key,
                                                steps_per_call=k)
    sizes = training.train_step._cache_size(), training.train_steps._cache_size()
    state = training.set_learning_rate(state, 0.01)
    for k in (1, "auto", 1):
        params, state, total = training.train_epoch(net, opt, params, state, x, t, 4, key,
                                                    steps_per_call=k)
    assert (training.train_step._cache_size(), training.train_steps._cache_size()) == sizes
    assert np.isfinite(float(total))


def test_train_epoch_names_bad_data_before_compiling():
    """Targets of another count or width, CIANNA rows for images, a zero batch size or
    no key: named errors (fewer targets than images used to train on padding rows)."""
    net = nn.network([4, 3], 2, [nn.dense(2, activation="LIN")], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(0.1)
    state = training.init_state(opt, params)
    x, t, key = np.ones((6, 3, 4, 2), np.float32), np.zeros((6, 2), np.float32), jax.random.key(0)

    def epoch(x=x, t=t, b=4, key=key):
        return training.train_epoch(net, opt, params, state, x, t, b, key)

    with pytest.raises(ValueError, match="t: expected one target per image, 6 rows, received 3"):
        epoch(t=t[:3])
    with pytest.raises(ValueError, match=r"t: expected targets of shape \(N, 2\) \(one value "
                                         r"per output neuron\), received \(6, 3\)"):
        epoch(t=np.zeros((6, 3), np.float32))
    with pytest.raises(ValueError, match=r"x: expected images of shape \(N, 3, 4, 2\).*"
                                         r"rows_to_images"):
        epoch(x=x.reshape(6, -1))
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, received 0"):
        epoch(b=0)
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        epoch(key=None)
    with pytest.raises(ValueError, match=r"t: expected targets of shape"):
        training.eval_step(net, params, x[:4], t[:4, :1], 4)
    params, state, total = epoch()  # nothing above consumed the donated buffers
    assert np.isfinite(float(total))


def test_non_finite_hyper_parameters_and_frozen_indices_are_refused():
    with pytest.raises(ValueError, match="momentum: expected a finite value, received nan"):
        cj.make_optimizer(0.1, momentum=float("nan"))
    state = training.init_state(cj.make_optimizer(0.1), ({"w": jnp.ones((2, 2))},))
    with pytest.raises(ValueError, match="learning_rate: expected a finite value, received inf"):
        training.set_learning_rate(state, float("inf"))
    with pytest.raises(ValueError, match="weight_decay: expected a finite value"):
        training.set_learning_rate(state, 0.1, weight_decay=np.float32("nan"))
    net, params = _one_dense("LIN")
    with pytest.raises(ValueError, match=r"frozen: expected layer indices from 0 to 0, "
                                         r"received 1"):
        cj.cianna_masks(net, params, (1,))


def test_eval_step_rows_and_loss_match_apply_and_batch_loss():
    net = nn.network([4, 4], 1, [nn.conv([3, 3], 2, padding=[1, 1]),
                                 nn.dense(3, activation="SMAX", drop_rate=0.3)], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    x = cj.rows_to_images(net, x)
    rows, loss = training.eval_step(net, params, x, t, 3)
    np.testing.assert_allclose(rows, cj.apply(net, params, x, bias_slot=True), atol=1e-6)
    y = np.asarray(rows)[:3, :3]
    assert float(loss) == pytest.approx(-np.sum(t[:3] * np.log(y)), rel=1e-5)
    _, no_loss = training.eval_step(net, params, x, t, 3, with_loss=False)
    assert float(no_loss) == 0.0


def test_step_index_folds_the_key_inside_the_step():
    """``step=j`` gives the same dropout draws as folding the key eagerly with ``j``."""
    net = nn.network([6], 1, [nn.dense(8, activation="RELU", drop_rate=0.5),
                              nn.dense(2, activation="SMAX", strict_size=1)], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(0.1, 0.5, masks=partial(cj.cianna_masks, net))
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    t = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    key = jax.random.key(5)
    copy = jax.tree.map(jnp.copy, (params, opt.init(params)))
    eager = training.train_step(net, opt, *copy, x, t, 4, jax.random.fold_in(key, 3))
    copy = jax.tree.map(jnp.copy, (params, opt.init(params)))
    folded = training.train_step(net, opt, *copy, x, t, 4, key, step=np.int32(3))
    other = training.train_step(net, opt, params, opt.init(params), x, t, 4, key,
                                step=np.int32(4))
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(folded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(eager[0][0]["w"]), np.asarray(other[0][0]["w"]))
    rows_eager, _ = training.eval_step(net, eager[0], x, t, 4, jax.random.fold_in(key, 2),
                                       "MC_MODEL")
    rows_folded, _ = training.eval_step(net, eager[0], x, t, 4, key, "MC_MODEL",
                                        step=np.int32(2))
    np.testing.assert_array_equal(np.asarray(rows_eager), np.asarray(rows_folded))


def test_eager_grad_of_batch_loss_compiles_one_program_per_pass():
    """``jax.grad(batch_loss)`` called eagerly runs the whole forward and backward passes
    as compiled programs, not operation by operation (hundreds of compilations, 11 s for
    a small conv net on 2 CPU cores before batch_loss was jitted)."""
    net = nn.network([6, 6], 1, [nn.conv([3, 3], 4, padding=[1, 1]), nn.pool([2, 2]),
                                 nn.dense(3, activation="SMAX", strict_size=1)], bias=0.1)
    params = cj.init_params(jax.random.key(0), net)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 1)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _d, **_k: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    before = len(compiles)
    g = jax.grad(lambda p: training.batch_loss(p, net, x, t, 3, jax.random.key(1))[0])(params)
    jax.block_until_ready(g)
    assert len(compiles) - before <= 6, len(compiles) - before
    want = jax.jit(jax.grad(lambda p: training.batch_loss(p, net, x, t, 3,
                                                           jax.random.key(1))[0]))(params)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
