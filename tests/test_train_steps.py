"""Several training steps per compiled call (``training.train_steps``, ``train_epoch``'s
``steps_per_call``): the numbers of one call per step, and only where XLA keeps the speed."""

import re
from functools import partial

import jax
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import driver, nn, parallel, training
from cianna_jax.layers import fused
from cianna_jax.layers.common import Ctx

#: the test reads XLA's CPU program (other backends compile convolutions their own way)
cpu_programs = pytest.mark.skipif(jax.default_backend() != "cpu",
                                  reason="inspects XLA's CPU programs")


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


@pytest.mark.parametrize("k, sizes", [(4, [4, 2]), (1, [1] * 6)])
def test_epoch_calls_are_train_epoch_one_call_at_a_time(setup, k, sizes):
    """What ``cianna-jax train`` runs: each call says how many real batches it trained
    (21 rows in batches of 4: 6 batches), sums of the calls' losses and the last call's
    weights are ``train_epoch``'s."""
    net, opt, x, t = setup
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    key = jax.random.key(4)
    calls = list(training.epoch_calls(net, opt, params, state, x, t, 4, key,
                                      steps_per_call=k))
    assert [c.batches for c in calls] == sizes
    assert all(np.shape(c.sums) == ((k,) if k > 1 else ()) for c in calls)
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    p, s, total = training.train_epoch(net, opt, params, state, x, t, 4, key, steps_per_call=k)
    assert sum(float(np.sum(c.sums)) for c in calls) == pytest.approx(float(total), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves((calls[-1].params, calls[-1].opt_state)),
                    jax.tree_util.tree_leaves((p, s))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="x: no images"):
        training.train_epoch(net, opt, p, s, x[:0], t[:0], 4, key, steps_per_call=k)


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


def _sdc1_like(nd=2, yolo=False):
    """SDC1's kinds of layers, tiny: a one-channel 5x5 conv, a 2x2 stride-2 conv, 3x3 and
    1x1 convs (XLA's convolution on CPU), a group norm, an average pool, a linear head
    (or a 2D YOLO head)."""
    sp = [12] * nd
    layers = [nn.conv([5] * nd, 4, padding=[2] * nd, activation="RELU"),
              nn.conv([2] * nd, 6, stride=[2] * nd, activation="RELU"),
              nn.conv([3] * nd, 8, padding=[1] * nd, activation="LIN"),
              nn.norm(group_size=4, activation="RELU"),
              nn.conv([1] * nd, 8, activation="RELU"),
              nn.pool([2] * nd, p_type="AVG")]
    if not yolo:
        return nn.network(sp, 1, layers + [nn.conv([1] * nd, 5, activation="LIN")], bias=0.1)
    from cianna_jax import yolo as y

    cfg = y.make_config((12, 12, 1), (3, 3, 1), nb_box=1, nb_class=1, nb_param=0,
                        max_nb_obj_per_image=2, prior_size=np.array([[4.0], [4.0]]))
    return cj.make_network(nn.in_dims_from(sp, 1),
                           layers + [nn.conv([1, 1], cfg.nb_filters, activation="YOLO")],
                           0.1, cfg)


def _one_conv(**kw):
    """A conv layer after another (so its input gradient is computed), then a dense."""
    return nn.network([8, 8], 4, [nn.conv([3, 3], 4, padding=[1, 1]),
                                  nn.conv([3, 3], 4, padding=[1, 1], **kw),
                                  nn.dense(3, activation="LIN")], bias=0.1)


def test_every_layer_kind_is_loop_safe():
    dense_only = nn.network([5], 1, [nn.dense(3, activation="LIN")], bias=0.1)
    for net in (dense_only, _mnist_like(), _mnist_like(pool="AVG"), _one_conv(),
                _one_conv(int_padding=[1, 1]), _one_conv(nb_groups=2), _one_conv(nb_groups=4),
                _sdc1_like(), _sdc1_like(3), _sdc1_like(yolo=True)):
        assert training.loop_safe(net), net
        assert training.loop_safe(net, exact=True), net


def _loop_conv_labels(net, xs, ts, exact=False):
    """The dimension numbers of every convolution in the compiled loop of 2 training steps
    of ``net`` on ``xs``, ``ts`` ``(2, B, ...)``."""
    opt = cj.make_optimizer(0.05, 0.9, masks=partial(cj.cianna_masks, net))
    params = cj.init_params(jax.random.key(0), net)
    text = training.train_steps.lower(net, opt, params, opt.init(params), xs, ts,
                                      np.array([2, 2], np.int32), jax.random.key(0),
                                      first_step=np.int32(0), exact=exact).compile().as_text()
    return re.findall(r"convolution\(.*?dim_labels=(\S+?),", text)


@cpu_programs
@pytest.mark.parametrize("nd,exact", [(2, False), (3, False), (2, True)])
def test_a_loop_of_training_steps_uses_convolutions_in_xla_layouts(nd, exact, monkeypatch):
    """Every convolution of a compiled loop of SDC1-like training steps is in XLA's own
    dimension numbers, with CIANNA's gradients or plain autodiff's: autodiff's weight
    gradients (batch as the feature) ran there on XLA's generic code, SDC1's training
    step at 128x128 33x slower, and its input gradients (the kernel's features swapped)
    3.3x slower (benchmarks/README.md).  In 3D these small layers run as the windows'
    product (``conv_forms.matmul_form``'s "3d": no convolution at all); XLA's convolutions,
    which larger cubes keep, are checked with the product forms off."""
    from cianna_jax.layers import conv_forms

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2, 2) + (12,) * nd + (1,)).astype(np.float32)
    ts = rng.normal(size=(2, 2) + (3,) * nd + (5,)).astype(np.float32)
    net = _sdc1_like(nd)
    if nd == 3:
        assert _loop_conv_labels(net, xs, ts, exact) == []
        monkeypatch.setattr(conv_forms, "SMALL_MAP_IM2COL", False)
        jax.clear_caches()  # traced again with the switch off, and again after
        try:
            labels = _loop_conv_labels(net, xs, ts, exact)
        finally:
            monkeypatch.undo()
            jax.clear_caches()
    else:
        labels = _loop_conv_labels(net, xs, ts, exact)
    own = "b012f_012io->b012f" if nd == 3 else "b01f_01io->b01f"
    # in 2D the first two layers run fused as products (layers.fused_tiles): the 3x3
    # conv's forward and two gradients remain
    fused = net.tiled_pairs(Ctx(nd=nd, exact=exact))
    assert fused == (frozenset({0}) if nd == 2 else frozenset())
    assert len(labels) >= (3 if fused else 4) and set(labels) == {own}, labels


@cpu_programs
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("kw", [dict(int_padding=[1, 1]), dict(nb_groups=2),
                                dict(nb_groups=4)], ids=["int_padding", "groups", "depthwise"])
def test_a_loop_with_dilated_or_grouped_convs_uses_convolutions_in_xla_layouts(kw, exact):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2, 2, 8, 8, 4)).astype(np.float32)
    ts = rng.normal(size=(2, 2, 3)).astype(np.float32)
    labels = _loop_conv_labels(_one_conv(**kw), xs, ts, exact)
    # forwards, weight gradients, the second layer's input gradient; grouped layers of
    # <= 4 channels a group are products but for their weight gradient (per group)
    assert len(labels) >= (5 if "int_padding" in kw else 2)
    assert set(labels) == {"b01f_01io->b01f"}, labels


@pytest.mark.parametrize("case", ["sdc1", "sdc1_exact", "grouped"])
def test_a_loop_gives_the_numbers_of_one_call_per_step(case):
    net, x_shape, t_shape = ((_one_conv(nb_groups=2), (8, 8, 4), (3,)) if case == "grouped"
                             else (_sdc1_like(), (12, 12, 1), (3, 3, 5)))
    opt = cj.make_optimizer(0.01, 0.9, masks=partial(cj.cianna_masks, net))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7,) + x_shape).astype(np.float32)  # batches of 2, the last of 1
    t = rng.normal(size=(7,) + t_shape).astype(np.float32)
    got = []
    for k in (1, 4):
        params = cj.init_params(jax.random.key(0), net)
        got.append(training.train_epoch(net, opt, params, opt.init(params), x, t, 2,
                                        jax.random.key(1), steps_per_call=k,
                                        exact=case == "sdc1_exact"))
    assert float(got[0][2]) == pytest.approx(float(got[1][2]), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(got[0][:2]), jax.tree_util.tree_leaves(got[1][:2])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


@cpu_programs
def test_a_loop_of_fused_steps_uses_convolutions_in_xla_layouts():
    """Inside a loop XLA's CPU runs a convolution in any other layout on generic code
    (the fused weight gradient with batch-as-feature dimension numbers took 20-40 ms per
    MNIST step there, against < 1 ms in XLA's own layouts).  Five input channels, so the
    fused conv is a convolution (one channel runs as windows and matrix products)."""
    net = nn.network([8, 8], 5, [
        nn.conv([3, 3], 4, padding=[1, 1], activation="RELU"),
        nn.pool([2, 2]),
        nn.dense(3, activation="SMAX", strict_size=1),
    ], bias=0.1)
    opt = cj.make_optimizer(0.05, 0.9, masks=partial(cj.cianna_masks, net))
    params = cj.init_params(jax.random.key(0), net)
    state = opt.init(params)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2, 4, 8, 8, 5)).astype(np.float32)
    ts = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (2, 4))]
    assert training.loop_safe(net) and net.fused_pairs(Ctx()) == frozenset({0})
    text = training.train_steps.lower(net, opt, params, state, xs, ts,
                                      np.array([4, 4], np.int32), jax.random.key(0),
                                      first_step=np.int32(0)).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=(\S+?),", text)
    assert len(labels) == 2, text  # forward and weight gradient (no input gradient)
    assert set(labels) == {"b01f_01io->b01f"}, labels
    assert fused.FUSE_MAX_CHANNEL_PRODUCT >= 20  # the conv above runs fused


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


def _cnn_mnist_like(n, b, dynamic_load=1, v11=False):
    import cianna_jax as cnn

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, 64)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    extra = dict(optimizer=cnn.adam(), wema=1) if v11 else dict(bias=0.1)
    cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=3, b_size=b, comp_meth="C_BLAS",
             no_logo=1, seed=0, dynamic_load=dynamic_load, **extra)
    cnn.create_dataset("TRAIN", n, x, t, silent=1)
    cnn.create_dataset("TEST", n, x[::-1], t[::-1], silent=1)
    cnn.conv(f_size=[3, 3], nb_filters=4, padding=[1, 1], activation="RELU", silent=1)
    cnn.pool(p_size=[2, 2], silent=1)
    cnn.dense(nb_neurons=6, activation="RELU", drop_rate=0.5, silent=1)
    cnn.dense(nb_neurons=3, strict_size=1, activation="SMAX", silent=1)
    return cnn.api._SESSION["last"]


@pytest.mark.parametrize("dynamic_load, v11", [(1, False), (0, False), (1, True)],
                         ids=["host_data", "device_data", "adam_wema"])
def test_cnn_train_runs_its_batches_several_per_call(monkeypatch, capsys, dynamic_load, v11):
    """``cnn.train``: 11 batches of 4 (the last of 2), chunked from 8 batches on: two
    calls of 8 steps (the last 5 skipped); the weights, optimizer state, the epoch's
    loss line and what perf_eval replays are those of one call per batch."""
    import cianna_jax as cnn
    from cianna_jax.api import get_state

    real, calls, runs = training.train_steps, [], []
    monkeypatch.setattr(training, "train_steps",
                        lambda *a, **kw: calls.append(len(a[6])) or real(*a, **kw))
    mom = {} if v11 else dict(momentum=0.8)  # a V-1.1 optimizer holds its own
    _cnn_mnist_like(42, 4, dynamic_load, v11)
    cnn.train(nb_iter=1, learning_rate=0.02, control_interv=0, silent=1, **mom)
    assert calls == []  # 11 batches: below driver.CHUNK_MIN_BATCHES
    monkeypatch.setattr(driver, "CHUNK_MIN_BATCHES", 8)
    for k in (1, 8):
        monkeypatch.setattr(training, "STEPS_PER_CALL", k)
        calls.clear()
        net = _cnn_mnist_like(42, 4, dynamic_load, v11)
        capsys.readouterr()
        cnn.train(nb_iter=2, learning_rate=0.02, control_interv=0, silent=0, **mom)
        lines = [ln for ln in capsys.readouterr().out.split("\r") + [""] if "Loss" in ln]
        state = get_state(net)
        runs.append((list(calls), jax.tree_util.tree_leaves((state.params, state.opt_state)),
                     re.sub(r"B\.perf\.: \S+", "", lines[-1] if lines else ""),
                     [*state.perf["train_call"][:3], state.perf["train_call"][3]["step"]]))
    assert runs[0][0] == [] and runs[1][0] == [8, 8, 8, 8]  # two calls of 8 per epoch
    cnn.perf_eval()  # after a chunked pass: compiles the one-batch step and replays it
    rep = get_state(net).perf["report"]
    assert rep["kind"] == "train" and rep["batch"] == 4 and np.asarray(rep["forward"])[0] > 0
    for a, b in zip(runs[0][3], runs[1][3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert runs[0][2] == runs[1][2] and "Loss" in runs[1][2]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cnn_forward_runs_its_batches_several_per_call(monkeypatch, tmp_path):
    """``cnn.forward`` on 11 batches: two calls of ``training.eval_steps`` (the last 5
    batches skipped): the predictions of one call per batch; MC repeats keep one."""
    import cianna_jax as cnn

    monkeypatch.chdir(tmp_path)
    real, calls, runs = training.eval_steps, [], []
    monkeypatch.setattr(training, "eval_steps",
                        lambda *a, **kw: calls.append(len(a[4])) or real(*a, **kw))
    monkeypatch.setattr(driver, "CHUNK_MIN_BATCHES", 8)
    for k in (1, 8):
        monkeypatch.setattr(training, "STEPS_PER_CALL", k)
        calls.clear()
        _cnn_mnist_like(42, 4)
        rows = cnn.forward(saving=0, silent=1)
        mc = cnn.forward(saving=0, silent=1, drop_mode="MC_MODEL", repeat=2)
        runs.append((list(calls), rows, mc))
    assert runs[0][0] == [] and runs[1][0] == [8, 8]  # two calls, none for the MC pass
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    assert runs[1][1].shape == (42, 4)  # 3 outputs and CIANNA's bias slot
    assert runs[1][2].shape == (84, 4)  # 2 passes per batch (this raised before: the
    # classification matrix was computed on 84 rows against 42 targets)
