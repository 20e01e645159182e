"""Data parallel over several devices: same results as one device.

The multi-device checks run in ONE child process that sees 4 CPU devices
(``--xla_force_host_platform_device_count=4``) and prints its results as JSON.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cnn
from cianna_jax import parallel

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, os
    import jax, jax.numpy as jnp, numpy as np
    import cianna_jax as cnn
    from cianna_jax import driver, nn, parallel, training
    from cianna_jax.api import get_state

    out = {"nb_devices": jax.device_count()}
    layers = [nn.conv([3, 3], 4), nn.pool([2, 2]), nn.dense(16, drop_rate=0.5),
              nn.dense(10, activation="SMAX", strict_size=1)]
    net = nn.network([8, 8], 1, layers, bias=0.1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 64)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 20)]
    opt = cnn.make_optimizer(learning_rate=0.05, momentum=0.9,
                             masks=lambda p: cnn.cianna_masks(net, p))
    xi = cnn.rows_to_images(net, x)  # the functional core takes images
    mesh = parallel.make_mesh()

    def leaves(tree):
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]

    def max_diff(a, b):
        return max(float(np.abs(u - v).max()) for u, v in zip(leaves(a), leaves(b)))

    # (1) functional: train_step on a sharded batch, and train_epoch(mesh=...)
    def steps(m):
        params = cnn.init_params(jax.random.key(0), net)
        st = opt.init(params)
        if m is not None:
            params, st = parallel.replicate((params, st), m)
        for j in range(3):
            xb, tb = xi[8 * j:8 * j + 8], t[8 * j:8 * j + 8]
            nv = np.int32(len(xb))
            xb, tb = training.pad_batch(xb, 8), training.pad_batch(tb, 8)
            if m is not None:
                xb, tb = parallel.shard_batch(xb, m), parallel.shard_batch(tb, m)
            params, st, loss = training.train_step(net, opt, params, st, xb, tb, nv,
                                                   jax.random.key(j))
        return params, float(loss)

    def epochs(m):
        params = cnn.init_params(jax.random.key(0), net)
        st = opt.init(params)
        for e in range(2):
            params, st, loss = training.train_epoch(net, opt, params, st, xi, t, 8,
                                                    jax.random.key(e), mesh=m)
        return params, float(loss)

    (p1, l1), (p4, l4) = steps(None), steps(mesh)
    out["step_diff"], out["step_loss"] = max_diff(p1, p4), [l1, l4]
    out["step_param_devices"] = len(jax.tree.leaves(p4[0])[0].devices())
    out["step_param_replicated"] = bool(jax.tree.leaves(p4[0])[0].sharding.is_fully_replicated)
    (e1, _), (e4, _) = epochs(None), epochs(mesh)
    out["epoch_diff"] = max_diff(e1, e4)
    # init from a key on another device, and with another default device: the samplers,
    # compiled once for the first device, read the key's data from the host
    p0 = cnn.init_params(jax.random.key(0), net)
    p_key = cnn.init_params(jax.device_put(jax.random.key(0), jax.devices()[2]), net)
    with jax.default_device(jax.devices()[3]):
        p_dev = cnn.init_params(jax.random.key(0), net)
    out["init_other_device_diff"] = [max_diff(p0, p_key), max_diff(p0, p_dev)]

    # (2) imperative: auto-on, explicit off, explicit 4 with datasets on the devices
    def script(tag, **init_kw):
        cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=10, b_size=8, comp_meth="C_BLAS",
                 no_logo=1, seed=0, **init_kw)
        state = get_state()
        cnn.create_dataset("TRAIN", 20, x, t, silent=1)
        cnn.create_dataset("VALID", 12, x[:12], t[:12], silent=1)
        cnn.create_dataset("TEST", 12, x[8:], t[8:], silent=1)
        cnn.conv(f_size=[3, 3], nb_filters=4, silent=1)
        cnn.pool(p_size=[2, 2], silent=1)
        cnn.dense(nb_neurons=16, drop_rate=0.5, silent=1)
        cnn.dense(nb_neurons=10, strict_size=1, activation="SMAX", silent=1)
        cnn.train(nb_iter=2, learning_rate=0.05, momentum=0.9, silent=1)
        pred = cnn.forward(saving=2, silent=1)
        written = np.fromfile(f"fwd_res/net{state.id}_0002.dat", np.float32)
        cnn.save(f"{tag}.dat", bin=1)
        xb, _, _ = driver._batch(state, state.datasets["TRAIN"], 0)
        res = {"mesh": None if state.mesh is None else parallel.nb_devices(state.mesh),
               # one device: host batches go to the jitted step as they are
               "batch_devices": len(xb.devices()) if hasattr(xb, "devices") else 1,
               "batch_shard_rows": (xb.addressable_shards[0].data.shape[0]
                                    if hasattr(xb, "addressable_shards") else len(xb)),
               "param_devices": len(jax.tree.leaves(state.params[0])[0].devices()),
               "file_equal": bool(np.array_equal(written, pred.ravel()))}
        if state.datasets["TRAIN"].device is not None:
            res["dataset_devices"] = len(state.datasets["TRAIN"].device[0].devices())
        return res, pred, cnn.get_network()[1]

    auto, pred_a, par_a = script("auto")
    off, pred_o, par_o = script("off", data_parallel=False)
    four, pred_4, par_4 = script("four", data_parallel=4, dynamic_load=0)
    out["imperative"] = {"auto": auto, "off": off, "four": four}
    out["pred_diff"] = [float(np.abs(pred_a - pred_o).max()), float(np.abs(pred_4 - pred_o).max())]
    out["param_diff"] = [max_diff(par_a, par_o), max_diff(par_4, par_o)]
    cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=10, b_size=8, comp_meth="C_BLAS", no_logo=1)
    cnn.load("auto.dat", 2, bin=1, silent=1)
    cnn.create_dataset("TEST", 12, x[8:], t[8:], silent=1)
    out["reload_diff"] = float(np.abs(cnn.forward(saving=0, silent=1) - pred_a).max())
    cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=10, b_size=6, comp_meth="C_BLAS", no_logo=1)
    out["auto_b6"] = parallel.nb_devices(get_state().mesh)

    # (3) the Pallas YOLO loss (interpreted) per device under the mesh, random draws included
    from cianna_jax import yolo
    cfg = yolo.make_config([32, 32], [4, 4], nb_box=2, max_nb_obj_per_image=3, rand_prob=0.5,
                           prior_size=np.array([[8.0, 16.0], [8.0, 12.0]]))
    raw = yolo.layout.from_cianna(
        jnp.asarray(rng.normal(size=(8,) + cfg.output_shape), jnp.float32), cfg.nb_box)
    tgt = np.zeros((8, cfg.target_len), np.float32)
    tgt[:, 0] = 3
    boxes = [[1, 4, 4, 0, 12, 14, 1], [1, 5, 3, 0, 13, 11, 1], [1, 20, 18, 0, 30, 29, 1]]
    tgt[:, 1:] = np.ravel(boxes)
    key = jax.random.key(3)

    def total(r, tg, kernel):
        return jnp.sum(yolo.yolo_loss(r, tg, cfg, nb_im_iter=10 ** 9, key=key, kernel=kernel))

    grad = jax.jit(jax.value_and_grad(total), static_argnums=2)
    v1, g1 = grad(raw, jnp.asarray(tgt), "xla")
    rs, ts = parallel.shard_batch(raw, mesh), parallel.shard_batch(tgt, mesh)
    with parallel.context(mesh):
        v4, g4 = grad(rs, ts, "pallas")
        text = grad.trace(rs, ts, "pallas").lower().as_text()
    out["yolo"] = {"loss": [float(v1), float(v4)], "grad_diff": float(jnp.abs(g1 - g4).max()),
                   "grad_devices": len(g4.devices()),
                   "per_device": "manual_computation" in text or "shard_map" in text}

    # (4) bad settings
    def error(fn):
        try:
            fn()
        except ValueError as err:
            return str(err)
        return None

    # (5) predict split over the devices, each on its own rows: the same outputs, with 8
    # batches per call and with one; 21 images: the last call padded
    cnet = nn.network([12, 12], 1, [nn.conv([3, 3], 6), nn.pool([2, 2]), nn.conv([3, 3], 8),
                                    nn.dense(10, activation="SMAX", strict_size=1)], bias=0.1)
    cp = cnn.init_params(jax.random.key(3), cnet)
    cx = rng.normal(size=(21, 12, 12, 1)).astype(np.float32)
    out["predict"] = {}
    for spc in ("auto", 1):
        one = np.asarray(training.predict(cnet, cp, cx, 8, steps_per_call=spc))
        split = training.predict(cnet, cp, cx, 8, steps_per_call=spc, mesh=mesh)
        out["predict"][str(spc)] = [float(np.abs(one - np.asarray(split)).max()),
                                    len(split.sharding.device_set), list(split.shape)]

    out["errors"] = {
        "predict_rows": error(lambda: training.predict(cnet, cp, cx, 6, mesh=mesh)),
        "predict_mc": error(lambda: training.predict(cnet, cp, cx, 8, mesh=mesh,
                                                     drop_mode="MC_MODEL",
                                                     key=jax.random.key(0))),
        "indivisible": error(lambda: cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=10, b_size=6,
                                              comp_meth="C_BLAS", data_parallel=4, no_logo=1)),
        "too_many": error(lambda: cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=10, b_size=8,
                                           comp_meth="C_BLAS", data_parallel=8, no_logo=1)),
        "epoch": error(lambda: training.train_epoch(net, opt, e4, opt.init(e4), xi, t, 6,
                                                    jax.random.key(0), mesh=mesh)),
    }
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
                        ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path_factory.mktemp("dp"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_functional_step_and_epoch_match_one_device(child):
    assert child["nb_devices"] == 4
    assert child["step_diff"] <= 1e-5
    assert child["epoch_diff"] <= 1e-5
    assert np.allclose(*child["step_loss"], rtol=1e-6)
    assert child["step_param_devices"] == 4 and child["step_param_replicated"]
    assert child["init_other_device_diff"] == [0.0, 0.0]


def test_imperative_train_forward_match_one_device(child):
    imp = child["imperative"]
    assert imp["auto"]["mesh"] == 4 and imp["four"]["mesh"] == 4 and imp["off"]["mesh"] is None
    for run in ("auto", "four"):
        assert imp[run]["batch_devices"] == 4 and imp[run]["batch_shard_rows"] == 2
        assert imp[run]["param_devices"] == 4
        assert imp[run]["file_equal"]
    assert imp["four"]["dataset_devices"] == 4
    assert imp["off"]["batch_devices"] == 1 and imp["off"]["param_devices"] == 1
    assert max(child["pred_diff"]) <= 1e-5
    assert max(child["param_diff"]) <= 1e-5
    assert child["reload_diff"] <= 1e-6
    assert child["auto_b6"] == 3  # the largest device count dividing b_size


def test_yolo_kernel_runs_per_device_with_the_same_results(child):
    yolo = child["yolo"]
    assert yolo["per_device"] and yolo["grad_devices"] == 4
    assert np.isclose(*yolo["loss"], rtol=1e-5)
    assert yolo["grad_diff"] <= 1e-6


def test_bad_settings_raise_clear_errors(child):
    errors = child["errors"]
    assert "b_size" in errors["indivisible"] and "4 devices" in errors["indivisible"]
    assert "data_parallel" in errors["too_many"] and "8 devices" in errors["too_many"]
    assert "batch_size" in errors["epoch"]
    assert "batch_size" in errors["predict_rows"] and "4 devices" in errors["predict_rows"]
    assert "drop_mode" in errors["predict_mc"] and "mesh=None" in errors["predict_mc"]


def test_predict_split_over_devices_gives_the_same_outputs(child):
    """Each device runs its rows of every batch alone (shard_map), 8 batches per call or
    one: outputs equal to one device's to float rounding (products over fewer rows may
    take other kernels), split over the 4 devices."""
    for spc in ("auto", "1"):
        diff, devices, shape = child["predict"][spc]
        assert diff <= 1e-6 and devices == 4 and shape == [21, 10]


def test_single_device_rules():
    n = len(jax.devices("cpu"))
    assert parallel.select_mesh(False, 8, "cpu") is None
    assert parallel.select_mesh(1, 8, "cpu") is None
    if n == 1:
        assert parallel.select_mesh(None, 8, "cpu") is None
    with pytest.raises(ValueError, match="data_parallel"):
        parallel.select_mesh(n + 1, 8, "cpu")
    with pytest.raises(ValueError, match="data_parallel"):
        parallel.select_mesh(-1, 8, "cpu")
    with pytest.raises(TypeError, match="data_parallel"):
        parallel.select_mesh("yes", 8, "cpu")
    with pytest.raises(ValueError, match="devices"):
        parallel.make_mesh(n + 1)
    # a platform name or a float is not a device list (a string made a mesh of 3 letters)
    for bad in ("cpu", 1.5, [0]):
        with pytest.raises(TypeError, match="devices: expected"):
            parallel.make_mesh(bad)
    with pytest.raises(ValueError, match="devices: a device is listed twice"):
        parallel.make_mesh(jax.devices()[:1] * 2)
    assert parallel.nb_devices(parallel.make_mesh(tuple(jax.devices()[:1]))) == 1
    mesh = parallel.make_mesh(1)
    x = parallel.shard_batch(np.ones((4, 3), np.float32), mesh)
    np.testing.assert_array_equal(parallel.to_host(x), np.ones((4, 3)))


def test_place_keeps_arrays_already_placed():
    """``place`` / ``replicate`` return arrays already on the target as the same objects
    (how ``cnn.forward`` recognises unchanged weights) and place the others."""
    mesh = parallel.make_mesh(1)
    tree = {"a": np.ones((2, 3), np.float32), "b": jnp.zeros(4)}
    once = parallel.replicate(tree, mesh)
    again = parallel.replicate(once, mesh)
    assert again["a"] is once["a"] and again["b"] is once["b"]
    assert isinstance(once["a"], jax.Array)  # the numpy leaf placed
    one = parallel.single_device(jax.devices("cpu")[0])
    assert one.device_set == {jax.devices("cpu")[0]}
    placed = parallel.place(tree, one)
    assert parallel.place(placed, one)["a"] is placed["a"]
    placed["b"].delete()  # a donated buffer is not taken for a placed one
    with pytest.raises(RuntimeError, match="deleted"):
        parallel.place(placed, one)


def test_init_rejects_bad_data_parallel_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = dict(cnn.api._NETS)
    with pytest.raises(ValueError, match="data_parallel"):
        cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=10, b_size=8, comp_meth="C_BLAS",
                 no_logo=1, data_parallel=len(jax.devices("cpu")) + 1)
    assert cnn.api._NETS == before
