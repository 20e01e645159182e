"""The imperative API: CIANNA scripts run with only the import changed."""

import inspect
import threading

import numpy as np
import pytest
from conftest import DENSE_CASES, TRAINED_CASES

import cianna_jax as cnn
from cianna_jax import training

# CIANNA's functions write net_save/, fwd_res/ and error.txt in the current folder
pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def _init_from_meta(case, **extra):
    ini = dict(case.meta["init"])
    ini["in_dim"] = np.array(ini["in_dim"])
    cnn.init(**ini, comp_meth="C_BLAS", no_logo=1, seed=0, **extra)
    return cnn.api._SESSION["last"]


@pytest.mark.parametrize("binary", [1, 0])
@pytest.mark.parametrize("case_name", DENSE_CASES)
def test_golden_case_as_a_cianna_script(golden_case, case_name, binary):
    case = golden_case(case_name)
    net_id = _init_from_meta(case)
    x, t = case.npy("input"), case.npy("target")
    cnn.create_dataset("TEST", x.shape[0], x, t)
    cnn.load(str(case.path("net_bin.dat" if binary else "net_ascii.dat")), 0, bin=binary)
    rows = cnn.forward(saving=2, no_error=case.meta.get("no_error", 0))
    written = np.fromfile(f"fwd_res/net{net_id}_0000.dat", np.float32).reshape(rows.shape)
    assert np.abs(written - case.npy("output")).max() <= 1e-5
    np.testing.assert_array_equal(written, rows)
    if binary and case_name in TRAINED_CASES:
        tr = dict(case.meta["train"])
        n = tr.pop("n_train")
        tr.pop("b_size"), tr.pop("note")
        cnn.create_dataset("TRAIN", n, case.npy("train_input"), case.npy("train_target"))
        cnn.train(**tr)
        after = cnn.forward(saving=1)
        assert np.abs(after - case.npy("trained_output")).max() <= 1e-4
        text = np.loadtxt(f"fwd_res/net{net_id}_0002.dat", ndmin=2)
        np.testing.assert_allclose(text, after, rtol=1e-5, atol=1e-6)


def _blobs(n, rng, side=12):
    x = rng.normal(0, 0.3, (n, side, side)).astype(np.float32)
    cls = rng.integers(0, 4, n)
    h = side // 2
    for i, c in enumerate(cls):
        r, q = divmod(int(c), 2)
        x[i, h * r + 1:h * r + 5, h * q + 1:h * q + 5] += 2.0
    return x.reshape(n, -1), np.eye(4, dtype=np.float32)[cls]


def _mnist_like_script(capsys, mixed_precision="FP32C_FP32A", nb_iter=3):
    """examples/MNIST/mnist_train.py with only the import changed (smaller sizes)."""
    rng = np.random.default_rng(0)
    data, target = _blobs(700, rng)
    cnn.init(in_dim=np.array([12, 12], dtype="int"), in_nb_ch=1, out_dim=4, bias=0.1,
             b_size=16, comp_meth="C_CUDA", dynamic_load=1, mixed_precision=mixed_precision,
             seed=3)
    cnn.create_dataset("TRAIN", size=500, input=data[:500], target=target[:500])
    cnn.create_dataset("VALID", size=100, input=data[500:600], target=target[500:600])
    cnn.create_dataset("TEST", size=100, input=data[600:], target=target[600:])
    cnn.conv(f_size=np.array([5, 5]), nb_filters=8, padding=np.array([2, 2]), activation="RELU")
    cnn.pool(p_size=np.array([2, 2]), p_type="MAX")
    cnn.conv(f_size=np.array([5, 5]), nb_filters=16, padding=np.array([2, 2]),
             activation="RELU")
    cnn.pool(p_size=np.array([2, 2]), p_type="MAX")
    cnn.dense(nb_neurons=64, activation="RELU", drop_rate=0.5)
    cnn.dense(nb_neurons=32, activation="RELU", drop_rate=0.2)
    cnn.dense(nb_neurons=4, strict_size=1, activation="SMAX")
    cnn.train(nb_iter=nb_iter, learning_rate=0.004, momentum=0.8, confmat=1, save_every=2)
    pred = cnn.forward(repeat=1, drop_mode="AVG_MODEL")
    acc = np.mean(np.argmax(pred[:, :4], 1) == np.argmax(target[600:], 1))
    return acc, capsys.readouterr().out


def test_mnist_example_script(capsys, in_tmp_dir):
    acc, out = _mnist_like_script(capsys)
    assert acc >= 0.9
    assert "CREATING CONVOLUTIONAL LAYER" in out and "Average Training perf" in out
    assert "ConfMat" in out and "Recall" in out
    assert (in_tmp_dir / "net_save" / f"net{cnn.api._SESSION['last']}_s0002.dat").exists()
    lines = (in_tmp_dir / "error.txt").read_text().split("\n")
    assert [line.split()[0] for line in lines if line] == ["1", "2", "3", "3"]
    cnn.perf_eval()
    assert "Backprop" in capsys.readouterr().out
    tex = cnn.print_arch_tex("./arch/", "arch", activation=1)
    assert "Conv\\_1" in open(tex).read()


@pytest.mark.parametrize("mode", ["BF16C_FP32A", "FP16C_FP32A"])
def test_mixed_precision_trains(capsys, mode):
    acc, _ = _mnist_like_script(capsys, mixed_precision=mode)
    assert acc >= 0.85
    net, params = cnn.get_network()
    x = np.zeros((2,) + net.input_shape, np.float32)
    y = cnn.apply(net, params, x, mixed_precision=mode)
    assert y.dtype == np.dtype(cnn.precision.get_policy(mode).compute)
    assert all(a.dtype == np.float32 for p in params for a in p.values())  # fp32 masters


def test_threaded_buffer_swap_pattern(capsys):
    """mnist_train_dyn_load.py: a thread refills TRAIN_buf while train runs, then swap."""
    rng = np.random.default_rng(1)
    data, target = _blobs(300, rng, side=8)
    cnn.init(in_dim=np.array([8, 8]), in_nb_ch=1, out_dim=4, b_size=24, seed=0,
             comp_meth="C_BLAS")
    cnn.create_dataset("TRAIN", 200, data[:200], target[:200])
    cnn.create_dataset("VALID", 100, data[200:], target[200:])
    cnn.dense(16)
    cnn.dense(4, activation="SMAX")
    seen = []

    def refill(k):
        cnn.delete_dataset("TRAIN_buf", silent=1)
        new = np.roll(data[:200], k, axis=0)
        cnn.create_dataset("TRAIN_buf", 200, new, np.roll(target[:200], k, axis=0), silent=1)
        seen.append(k)

    for k in range(3):
        th = threading.Thread(target=refill, args=(k + 1,))
        th.start()
        cnn.train(nb_iter=1, learning_rate=0.01, momentum=0.8, control_interv=2,
                  shuffle_every=0, save_every=0)
        th.join()
        cnn.swap_data_buffers("TRAIN")
        state = cnn.api.get_state()
        # stored once as channel-last images (N, D, H, W, C); one channel: same order as rows
        np.testing.assert_array_equal(state.datasets["TRAIN"].x.reshape(200, -1),
                                      np.roll(data[:200], k + 1, 0))
    assert seen == [1, 2, 3]
    assert cnn.api.get_state().iteration == 3


DOCUMENTED = {
    "init": "in_dim in_nb_ch out_dim bias=0.1 b_size=8 comp_meth='C_CUDA' network "
            "dynamic_load=1 mixed_precision='off' inference_only=0 no_logo=0 adv_size=30",
    "free_network": "network=0",
    "create_dataset": "dataset size input target network silent=0",
    "delete_dataset": "dataset network silent=0",
    "swap_data_buffers": "dataset network",
    "dense": "nb_neurons activation='RELU' bias=None prev_layer drop_rate=0.0 strict_size=0 "
             "init_fct='xavier' init_scaling=None network",
    "conv": "f_size nb_filters stride padding int_padding activation='RELU' bias=None prev_layer "
            "input_shape drop_rate=0.0 init_fct='xavier' init_scaling=None network",
    "pool": "p_size stride padding prev_layer drop_rate=0.0 p_type='MAX' activation='LIN' "
            "p_global=0 network",
    "norm": "normalization='GN' activation='LIN' prev_layer group_size=8 set_off=0 network",
    "save": "file network bin=0",
    "load": "file iteration network nb_layers=0 nb_skip_layers=0 bin=0",
    "print_arch_tex": "path file_name size=1 in_size=1 f_size=1 out_size=1 stride=1 padding=1 "
                      "in_padding=0 activation=0 bias=0 dropout=0 param_count=0 network",
    "train": "nb_iter learning_rate end_learning_rate=0.0 control_interv=1 momentum=0.0 "
             "lr_decay=0.0 weight_decay=0.0 confmat=0 save_every=0 save_bin=0 network "
             "shuffle_gpu=0 shuffle_every=1 TC_scale_factor=1.0 silent=0",
    "forward": "saving=1 drop_mode='AVG_MODEL' no_error=0 repeat=1 network silent=0",
    "perf_eval": "network",
    "relu": "saturation=800.0 leaking=0.05",
    "logistic": "saturation=6.0 beta=1.0",
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_keywords_and_defaults(name):
    params = list(inspect.signature(getattr(cnn, name)).parameters.values())
    documented = DOCUMENTED[name].split()
    for i, item in enumerate(documented):
        key, _, default = item.partition("=")
        assert params[i].name == key, f"{name}: parameter {i} is {params[i].name}, not {key}"
        if default:
            assert params[i].default == eval(default), f"{name}({key}) default"


def test_activation_helpers_return_documented_strings():
    assert cnn.linear() == "LIN" and cnn.softmax() == "SMAX" and cnn.YOLO() == "YOLO"
    assert cnn.relu() == "RELU_S800.00_L0.05" and cnn.relu(6, 0.1) == "RELU_S6.00_L0.10"
    assert cnn.logistic(beta=2) == "LOGI_S6.00_B2.00"


def _bad_calls(tmp):
    a = np.zeros((10, 36), np.float32)
    t = np.zeros((10, 3), np.float32)
    return [
        (lambda: cnn.init([6, 6], 1.5, 3), TypeError, "in_nb_ch"),
        (lambda: cnn.init([6, 6], 1, 3, comp_meth="C_GPU"), ValueError, "comp_meth"),
        (lambda: cnn.init([6, 6], 1, 3, mixed_precision="FP8"), ValueError, "mixed_precision"),
        (lambda: cnn.init([6, 6, 1, 1], 1, 3), ValueError, "in_dim"),
        (lambda: cnn.init([6, 0], 1, 3), ValueError, "in_dim"),
        (lambda: cnn.init([6, 6], 1, 3, bias=float("nan")), ValueError, "bias: expected a finite"),
        (lambda: cnn.dense(3, bias=float("inf")), ValueError, "bias: expected a finite"),
        (lambda: cnn.create_dataset("TRAINING", 10, a, t), ValueError, "dataset"),
        (lambda: cnn.create_dataset("TRAIN", 11, a, t), ValueError, "input"),
        (lambda: cnn.create_dataset("TRAIN", 10, a[:, :30], t), ValueError, "input"),
        (lambda: cnn.create_dataset("TRAIN", 10, a, t[:, :2]), ValueError, "target"),
        (lambda: cnn.create_dataset("TRAIN", 10, a.ravel(), t), ValueError, "input"),
        (lambda: cnn.create_dataset("TRAIN", 10, a.astype(str), t), TypeError, "input"),
        (lambda: cnn.dense(0), ValueError, "nb_neurons"),
        (lambda: cnn.dense(3, activation="relu"), ValueError, "activation"),
        (lambda: cnn.dense(3, activation="YOLO"), ValueError, "activation"),
        (lambda: cnn.dense(3, init_fct="normal"), ValueError, "init_scaling"),
        (lambda: cnn.dense(3, prev_layer=5), ValueError, "prev_layer"),
        (lambda: cnn.conv([3, 3], 2, stride=[4, 1]), ValueError, "stride"),
        (lambda: cnn.conv([3.5, 3], 2), TypeError, "f_size"),
        (lambda: cnn.conv([3, 3], 2, input_shape=[1, 2, 3]), ValueError, "input_shape"),
        (lambda: cnn.pool(p_type="MIN"), ValueError, "p_type"),
        (lambda: cnn.pool([2, 2], padding=[3, 0]), ValueError, "padding"),
        (lambda: cnn.norm("BN"), ValueError, "normalization"),
        (lambda: cnn.norm(group_size=0), ValueError, "group_size"),
        (lambda: cnn.train(1, 0.1), RuntimeError, "TRAIN"),
        (lambda: cnn.forward(drop_mode="MC"), ValueError, "drop_mode"),
        (lambda: cnn.forward(saving=3), ValueError, "saving"),
        (lambda: cnn.forward(), RuntimeError, "TEST"),
        (lambda: cnn.load(str(tmp / "nope.dat"), 0), FileNotFoundError, "nope.dat"),
        (lambda: cnn.load(str(tmp / "garbage.dat"), 0), ValueError, "garbage.dat"),
        (lambda: cnn.save(str(tmp / "no_dir" / "x.dat")), FileNotFoundError, "no_dir"),
        (lambda: cnn.train(1, "0.1"), TypeError, "learning_rate"),
        (lambda: cnn.swap_data_buffers("TRAIN_buf"), ValueError, "dataset"),
        (lambda: cnn.dense(3, network=999), ValueError, "network"),
        (lambda: cnn.set_params(({"w": np.zeros((2, 2))},)), ValueError, "params"),
    ]


def test_bad_calls_raise_and_keep_existing_state(in_tmp_dir, capsys):
    cnn.init([6, 6], 1, 3, b_size=4, seed=0, comp_meth="C_BLAS")
    cnn.conv([3, 3], 2, padding=[1, 1])
    cnn.pool([2, 2])
    cnn.conv([3, 3], 3, activation="LIN")
    net_id = cnn.api._SESSION["last"]
    net, params = cnn.get_network()
    x = cnn.rows_to_images(net, np.random.default_rng(0).normal(size=(5, 36)).astype(np.float32))
    before = np.asarray(cnn.apply(net, params, x))
    cnn.save("kept.dat")
    kept = (in_tmp_dir / "kept.dat").read_bytes()
    (in_tmp_dir / "garbage.dat").write_text("6x6x1x1\nQ oops\n")
    calls = _bad_calls(in_tmp_dir)
    assert len(calls) >= 25
    for call, exc, word in calls:
        cnn.api._SESSION["last"] = net_id
        with pytest.raises(exc, match=word):
            call()
    cnn.api._SESSION["last"] = net_id
    net2, params2 = cnn.get_network(net_id)
    assert net2 == net and len(net2.layers) == 3
    np.testing.assert_array_equal(np.asarray(cnn.apply(net2, params2, x)), before)
    assert (in_tmp_dir / "kept.dat").read_bytes() == kept


def test_load_appends_with_skip_and_get_set_params(golden_case, capsys):
    case = golden_case("conv_pad_stride")
    _init_from_meta(case)
    cnn.load(str(case.path("net_bin.dat")), 5, nb_layers=3, bin=1)
    assert len(cnn.get_network()[0].layers) == 3
    cnn.load(str(case.path("net_ascii.dat")), 7, nb_skip_layers=3, bin=0)
    net, params = cnn.get_network()
    assert len(net.layers) == 5 and cnn.api.get_state().iteration == 7
    x = cnn.rows_to_images(net, case.npy("input"))
    np.testing.assert_allclose(cnn.output_rows(net, cnn.apply(net, params, x, bias_slot=True)),
                               case.npy("output"), atol=1e-5)
    zeroed = tuple({k: np.zeros_like(v) for k, v in p.items()} for p in params)
    cnn.set_params(zeroed)
    assert not any(np.asarray(v).any() for v in cnn.get_network()[1][0].values())


def test_nan_loss_stops_training_and_keeps_last_good_weights(capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32) * 1e3
    t = rng.normal(size=(32, 2)).astype(np.float32) * 1e3
    cnn.init([4], 1, 2, b_size=8, seed=0, comp_meth="C_BLAS")
    cnn.create_dataset("TRAIN", 32, x, t)
    cnn.dense(8, activation="LIN")
    cnn.dense(2, activation="LIN")
    good = None
    with pytest.raises(FloatingPointError, match="diverged"):
        for _ in range(50):
            good = cnn.get_network()[1]
            good = [{k: np.asarray(v) for k, v in p.items()} for p in good]
            cnn.train(1, 1e3, control_interv=0, momentum=0.9)
    now = cnn.get_network()[1]
    for a, b in zip(now, good):
        for k in a:
            assert np.isfinite(np.asarray(a[k])).all()
            np.testing.assert_array_equal(np.asarray(a[k]), b[k])


def test_networks_are_independent_and_free_network(capsys):
    cnn.init([4], 1, 2, seed=0, comp_meth="C_BLAS")
    first = cnn.api._SESSION["last"]
    cnn.dense(2)
    cnn.init([5], 1, 3, seed=0, comp_meth="C_BLAS")
    second = cnn.api._SESSION["last"]
    cnn.dense(3)
    assert cnn.get_network(first)[0].in_dims == (4, 1, 1, 1)
    assert cnn.get_network()[0].in_dims == (5, 1, 1, 1)
    cnn.free_network(second)
    with pytest.raises(ValueError, match="network"):
        cnn.get_network(second)
    cnn.init([3], 1, 1, network=first, seed=0, comp_meth="C_BLAS")  # replaces network `first`
    with pytest.raises(RuntimeError, match="no layer"):
        cnn.get_network(first)


def test_seed_makes_runs_reproducible(capsys):
    outs = []
    for _ in range(2):
        cnn.init([6], 1, 2, seed=42, comp_meth="C_BLAS", b_size=4)
        cnn.dense(5, drop_rate=0.3)
        cnn.dense(2, activation="LIN")
        x = np.arange(48, dtype=np.float32).reshape(8, 6) / 48
        cnn.create_dataset("TRAIN", 8, x, x[:, :2])
        cnn.train(2, 0.05, control_interv=0)
        outs.append(np.asarray(cnn.get_network()[1][0]["w"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def _tiny_classifier(dynamic_load=1, b_size=8, seed=5):
    rng = np.random.default_rng(2)
    data, target = _blobs(120, rng, side=8)
    cnn.init([8, 8], 1, 4, b_size=b_size, seed=seed, comp_meth="C_BLAS",
             dynamic_load=dynamic_load)
    cnn.create_dataset("TRAIN", 100, data[:100], target[:100])
    cnn.create_dataset("VALID", 20, data[100:], target[100:])
    cnn.conv([3, 3], 4, padding=[1, 1])
    cnn.pool([2, 2])
    cnn.dense(4, activation="SMAX")
    return data, target


def test_dynamic_load_0_gives_the_same_training(capsys):
    results = []
    for dl in (1, 0):
        _tiny_classifier(dynamic_load=dl)
        cnn.train(3, 0.01, momentum=0.9, shuffle_every=2, lr_decay=0.3, end_learning_rate=0.001)
        results.append([np.asarray(v) for p in cnn.get_network()[1] for v in p.values()])
        state = cnn.api.get_state()
        assert (state.datasets["TRAIN"].device is not None) == (dl == 0)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    out = capsys.readouterr().out
    # CIANNA's schedule: lr = end + (lr0 - end) * exp(-decay * iter), iter before the increment
    for it in range(3):
        lr = 0.001 + 0.009 * np.exp(-0.3 * it)
        assert f"Learning rate: {lr:.5g}" in out
    assert "Accuracy:" in out


def test_shuffle_is_permanent_and_follows_cianna_off_by_one(capsys):
    data, _ = _tiny_classifier()
    state = cnn.api.get_state()
    cnn.train(1, 0.01, shuffle_every=2, control_interv=0)  # (1 + 1) % 2 == 0: shuffled
    first = state.datasets["TRAIN"].x.copy()
    assert not np.array_equal(first, data[:100])
    assert sorted(map(bytes, first)) == sorted(map(bytes, data[:100]))
    cnn.train(1, 0.01, shuffle_every=2, control_interv=0)  # (2 + 1) % 2 != 0: not shuffled
    np.testing.assert_array_equal(state.datasets["TRAIN"].x, first)


def test_sgd_mode_batch_size_one(capsys):
    cnn.init([3], 1, 1, b_size=1, seed=0, comp_meth="C_BLAS")
    assert "SGD" in capsys.readouterr().out
    x = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
    cnn.create_dataset("TRAIN", 10, x, x[:, :1] * 2)
    cnn.dense(1, activation="LIN")
    before = np.asarray(cnn.get_network()[1][0]["w"]).copy()
    cnn.train(2, 0.05, control_interv=0)
    assert not np.allclose(np.asarray(cnn.get_network()[1][0]["w"]), before)


def test_training_compiles_one_step_and_one_forward(capsys):
    """Two epochs with a validation pass and the divergence check compile one training
    step and one forward: the learning rate set before each epoch keeps its placement
    (an unplaced value would compile the step again) and the check after each epoch
    runs the validation's forward program."""
    rng = np.random.default_rng(3)
    data, target = _blobs(60, rng, side=6)
    cnn.init([6, 6], 1, 4, b_size=10, seed=1, comp_meth="C_BLAS")  # shapes no other test uses
    cnn.create_dataset("TRAIN", 40, data[:40], target[:40])
    cnn.create_dataset("VALID", 20, data[40:], target[40:])
    cnn.conv([3, 3], 3, padding=[1, 1])
    cnn.dense(4, activation="SMAX")
    steps, forwards = training.train_step._cache_size(), training.eval_step._cache_size()
    cnn.train(nb_iter=2, learning_rate=0.01, momentum=0.8, control_interv=1)
    assert training.train_step._cache_size() == steps + 1
    assert training.eval_step._cache_size() == forwards + 1
    assert "Iter:" in capsys.readouterr().out


def test_forward_lays_the_weights_out_once_per_set_of_weights(monkeypatch):
    """Repeated ``forward`` calls reuse the laid-out inference weights; training (new
    weight arrays) or loading a network lays them out again."""
    from cianna_jax import api

    calls = []
    real = api.inference_params
    monkeypatch.setattr(api, "inference_params", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(4)
    data, target = _blobs(20, rng, side=6)
    cnn.init([6, 6], 1, 4, b_size=10, seed=1, comp_meth="C_BLAS")
    cnn.create_dataset("TRAIN", 20, data, target)
    cnn.create_dataset("TEST", 20, data, target)
    cnn.conv([3, 3], 3, padding=[1, 1])
    cnn.dense(4, activation="SMAX")
    first = cnn.forward(saving=2)
    again = cnn.forward(saving=2)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    cnn.train(nb_iter=1, learning_rate=0.05, control_interv=0)
    after = cnn.forward(saving=2)
    assert len(calls) == 2 and not np.array_equal(first, after)
