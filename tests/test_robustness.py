"""The README's robustness promises on the imperative API: divergence, bad data, bad calls.

Every failed call raises a clear exception and changes nothing; a diverged training
keeps exactly the last state whose losses, weights and outputs were all finite.
"""

import contextlib
from pathlib import Path

import jax
import numpy as np
import pytest

import cianna_jax as cnn

# CIANNA's functions write net_save/, fwd_res/ and error.txt in the current folder
pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def _state():
    st = cnn.api.get_state()
    host = jax.tree_util.tree_map(np.asarray, (st.params, st.opt_state))
    return host, st.iteration


def _assert_same_state(before, after):
    (tree_a, it_a), (tree_b, it_b) = before, after
    assert it_a == it_b
    leaves_a, def_a = jax.tree_util.tree_flatten(tree_a)
    leaves_b, def_b = jax.tree_util.tree_flatten(tree_b)
    assert def_a == def_b
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(a, b)


def _assert_healthy(n_rows=8):
    """The kept weights are finite and a forward with them gives finite outputs."""
    net, params = cnn.get_network()
    for p in params:
        for v in p.values():
            assert np.isfinite(np.asarray(v)).all()
    x = np.random.default_rng(1).normal(size=(n_rows, 4)).astype(np.float32)
    cnn.create_dataset("TEST", n_rows, x, np.zeros((n_rows, 2), np.float32), silent=1)
    out = cnn.forward(saving=0, silent=1)
    assert np.isfinite(out).all()


def _regression(x=None, t=None, seed=0, n=32, **dataset_kw):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32) if x is None else x
    t = rng.normal(size=(n, 2)).astype(np.float32) if t is None else t
    cnn.init([4], 1, 2, b_size=8, seed=seed, comp_meth="C_BLAS", no_logo=1)
    cnn.dense(8, activation="LIN", silent=1)
    cnn.dense(2, activation="LIN", silent=1)
    cnn.create_dataset("TRAIN", n, x, t, silent=1, **dataset_kw)
    cnn.create_dataset("VALID", 8, x[:8], t[:8], silent=1, **dataset_kw)
    return x, t


# ----------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("name", ["learning_rate", "momentum", "weight_decay", "lr_decay",
                                  "end_learning_rate", "TC_scale_factor"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_hyper_parameters_are_refused_up_front(name, value):
    _regression()
    before = _state()
    kw = {"learning_rate": 0.01, name: value}
    with pytest.raises(ValueError, match=name):
        cnn.train(1, **kw, control_interv=0, silent=1)
    _assert_same_state(before, _state())


def test_huge_learning_rate_over_many_iterations_keeps_the_last_finite_iteration():
    _regression(seed=3)
    cnn.train(1, 1e-3, control_interv=0, momentum=0.9, silent=1)  # optimizer state exists
    with pytest.raises(FloatingPointError, match=r"iteration (\d+), on TRAIN, batch \d+/4") as e:
        cnn.train(30, 0.3, control_interv=1, momentum=0.9, save_every=1, silent=1)
    net_id = cnn.api._SESSION["last"]
    failed = int(e.value.args[0].split("iteration ")[1].split(",")[0])
    kept = _state()
    assert kept[1] == failed - 1 >= 3
    _assert_healthy()
    # exactly the state of the same run stopped one iteration before the failure
    _regression(seed=3)
    cnn.train(1, 1e-3, control_interv=0, momentum=0.9, silent=1)
    if failed - 2 > 0:
        cnn.train(failed - 2, 0.3, control_interv=1, momentum=0.9, silent=1)
    _assert_same_state(_state(), kept)
    saved = sorted(p.name for p in Path("net_save").glob("*.dat"))
    assert saved == [f"net{net_id}_s{i:04d}.dat" for i in range(2, failed)]


def test_overflow_in_the_last_update_of_an_epoch_is_caught():
    # the last batch has finite loss but its update makes the outputs overflow:
    # a check of the batch losses alone never sees it
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    x[24:] *= 1e15
    _regression(x=x)
    before = _state()
    with pytest.raises(FloatingPointError, match=r"iteration 1, on TRAIN, batch 4/4 \(after the "
                                                 r"last update\)"):
        cnn.train(1, 1e-3, control_interv=0, shuffle_every=0, silent=1)
    after = _state()
    assert after[1] == 0
    _assert_same_state(before, after)
    _assert_healthy()


def test_nan_input_row_names_the_batch_and_keeps_the_state():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    x[13, 2] = np.nan
    _regression(x=x, allow_nonfinite=1)
    before = _state()
    with pytest.raises(FloatingPointError, match=r"iteration 1, on TRAIN, batch 2/4: loss nan"):
        cnn.train(2, 1e-3, control_interv=0, shuffle_every=0, silent=1)
    _assert_same_state(before, _state())
    _assert_healthy()


def test_divergence_first_seen_on_valid_keeps_the_previous_state_and_writes_nothing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    _regression(x=x)
    vx = x[:8].copy()
    vx[5, 0] = np.inf
    cnn.create_dataset("VALID", 8, vx, x[:8, :2], allow_nonfinite=1, silent=1)
    before = _state()
    with pytest.raises(FloatingPointError, match=r"iteration 1, on VALID \(first seen there\)"):
        cnn.train(3, 1e-3, control_interv=1, save_every=1, silent=1)
    _assert_same_state(before, _state())
    assert not list(Path(".").glob("net_save/*.dat"))
    assert not Path("error.txt").exists() or not Path("error.txt").read_text().strip()
    _assert_healthy()


def test_interrupted_training_keeps_a_usable_state(monkeypatch):
    _regression()
    before = _state()
    calls = {"n": 0}
    real = cnn.training.train_step

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cnn.training, "train_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        cnn.train(1, 1e-3, control_interv=0, silent=1)
    monkeypatch.setattr(cnn.training, "train_step", real)
    _assert_same_state(before, _state())  # donated buffers were not left behind
    _assert_healthy()


# ----------------------------------------------------------------------------- datasets


def test_dataset_widths_must_match_exactly():
    x, t = _regression()
    wide_x = np.concatenate([x, x[:, :1]], axis=1)
    with pytest.raises(ValueError, match=r"input: expected shape \(32, 4\).*\(32, 5\)"):
        cnn.create_dataset("TRAIN", 32, wide_x, t)
    with pytest.raises(ValueError, match=r"target: expected shape \(32, 2\).*\(32, 3\)"):
        cnn.create_dataset("TRAIN", 32, x, np.concatenate([t, t[:, :1]], axis=1))
    cnn.create_dataset("TRAIN", 16, x, t, silent=1)  # more rows than size: the first ones
    assert cnn.api.get_state().datasets["TRAIN"].size == 16


@pytest.mark.parametrize("where", ["input", "target"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_data_are_refused_with_row_and_column(where, bad):
    x, t = _regression()
    arrays = {"input": x.astype(np.float64), "target": t.astype(np.float64)}
    arrays[where][7, 1] = bad
    before = cnn.api.get_state().datasets["TRAIN"]
    with pytest.raises(ValueError, match=rf"{where}: non-finite value .* at row 7, column 1"):
        cnn.create_dataset("TRAIN", 32, arrays["input"], arrays["target"])
    assert cnn.api.get_state().datasets["TRAIN"] is before
    cnn.create_dataset("TRAIN", 32, arrays["input"], arrays["target"], allow_nonfinite=1,
                       silent=1)


def _yolo_network(targets=None):
    """A 2-D YOLO network on 16x16 images: 1 box, 2 classes, up to 3 objects per image."""
    cnn.init([16, 16], 1, 1 + 3 * 7, b_size=4, seed=0, comp_meth="C_BLAS", no_logo=1)
    if targets is not None:
        x = np.zeros((4, 256), np.float32)
        cnn.create_dataset("TRAIN", 4, x, targets, silent=1)
        cnn.create_dataset("VALID", 4, x, targets, silent=1)
    bad = targets is not None and targets[0, 0] > 3
    with pytest.warns(UserWarning, match="dataset (TRAIN|VALID)") if bad else contextlib.nullcontext():
        nb = cnn.set_yolo_params(nb_box=1, nb_class=2, max_nb_obj_per_image=3,
                                 prior_size=np.array([[4.0], [4.0]]), silent=1)
    cnn.conv(f_size=[3, 3], nb_filters=nb, stride=[2, 2], padding=[1, 1], activation="YOLO",
             silent=1)


def _targets(n_obj=1.0, cls=1.0):
    t = np.zeros((4, 22), np.float32)
    t[:, 0] = n_obj
    t[:, 1:8] = [cls, 2, 2, 0, 8, 8, 1]
    return t


def test_yolo_targets_created_before_the_settings_are_checked_before_training():
    _yolo_network(targets=_targets(n_obj=9.0, cls=7.0))
    with pytest.raises(ValueError, match=r"dataset TRAIN: target: targets row 0: n_obj = 9"):
        cnn.train(1, 1e-3, control_interv=0, silent=1)
    assert cnn.api.get_state().iteration == 0
    cnn.create_dataset("TRAIN", 4, np.zeros((4, 256), np.float32), _targets(), silent=1)
    with pytest.raises(ValueError, match="dataset VALID"):  # VALID is still the bad one
        cnn.train(1, 1e-3, control_interv=1, silent=1)
    cnn.train(1, 1e-3, control_interv=0, silent=1)


@pytest.mark.parametrize("bad, message", [(1.5, "n_obj = 1.5 is not an integer"),
                                          (-2.0, "below -1")])
def test_yolo_object_counts_must_be_integers(bad, message):
    _yolo_network()
    with pytest.raises(ValueError, match=message):
        cnn.create_dataset("TRAIN", 4, np.zeros((4, 256), np.float32), _targets(n_obj=bad))
    with pytest.raises(ValueError, match="class 1.5 is not an integer"):
        cnn.create_dataset("TRAIN", 4, np.zeros((4, 256), np.float32), _targets(cls=1.5))


# ----------------------------------------------------------------------------- calls


def test_swap_with_an_empty_buffer_is_refused():
    _regression()
    train = cnn.api.get_state().datasets["TRAIN"]
    with pytest.raises(RuntimeError, match="TRAIN_buf is empty"):
        cnn.swap_data_buffers("TRAIN")
    assert cnn.api.get_state().datasets["TRAIN"] is train
    cnn.create_dataset("TRAIN_buf", 8, train.x.reshape(32, -1), train.t, silent=1)
    cnn.swap_data_buffers("TRAIN")
    assert cnn.api.get_state().datasets["TRAIN_buf"] is train


@pytest.mark.parametrize("activation", ["RELUU", "RELU_garbage", "SMAXX", "RELU_S", "LIN_S2",
                                        "LOGI_L0.1", "RELU_S1_S2", "relu", "LINEARX",
                                        "SOFTMAX"])
def test_activation_strings_are_parsed_whole(activation):
    _regression()
    n = len(cnn.get_network()[0].layers)
    with pytest.raises(ValueError, match="activation"):
        cnn.dense(3, activation=activation)
    assert len(cnn.get_network()[0].layers) == n


@pytest.mark.parametrize("activation, kind, sat, param", [
    ("RELU", "RELU", 800.0, 0.05), ("RELU_S6", "RELU", 6.0, 0.05),
    ("RELU_L0.1", "RELU", 800.0, 0.1), ("RELU_S800.00_L0.05", "RELU", 800.0, 0.05),
    ("LOGI_S6.00_B1.00", "LOGI", 6.0, 1.0), ("LOGI_B2", "LOGI", 6.0, 2.0),
    ("LIN", "LIN", 0.0, 0.0), ("SMAX", "SMAX", 0.0, 0.0), ("YOLO", "YOLO", 0.0, 0.0)])
def test_documented_activation_forms_parse(activation, kind, sat, param):
    assert cnn.parse_activation(activation) == cnn.Activation(kind, sat, param)


@pytest.mark.parametrize("flags", ["abc", "1", [0.5], [[1, 0]], None])
def test_set_frozen_layers_refuses_non_flags(flags):
    _regression()
    with pytest.raises(TypeError, match="froz_array"):
        cnn.set_frozen_layers(flags)
    assert cnn.api.get_state().frozen == ()
    cnn.set_frozen_layers([True, 0])
    assert cnn.api.get_state().frozen == (0,)


def test_freeing_the_default_network_leaves_no_silent_default():
    cnn.init([4], 1, 2, seed=0, comp_meth="C_BLAS", no_logo=1)
    first = cnn.api._SESSION["last"]
    cnn.init([5], 1, 3, seed=0, comp_meth="C_BLAS", no_logo=1)
    second = cnn.api._SESSION["last"]
    cnn.free_network(second)
    with pytest.raises(RuntimeError, match=rf"default network \(id {second}.*freed.*network="):
        cnn.dense(2)
    assert not cnn.api.get_state(first).layers
    cnn.dense(2, network=first, silent=1)
    cnn.init([6], 1, 2, seed=0, comp_meth="C_BLAS", no_logo=1)
    cnn.dense(2, silent=1)  # a new init gives a default again


@pytest.mark.parametrize("then", ["save", "load"])
def test_temporary_files_of_killed_saves_are_cleaned_up(then, tmp_path):
    import subprocess
    import sys

    from cianna_jax.io import atomic

    _regression()
    cnn.save("net.dat")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a process id that no longer runs: the writer was killed
    stale = tmp_path / f".net.dat.{atomic._HOST}-{proc.pid}-{'a' * 12}.tmp"
    stale.write_bytes(b"\0" * 4_000_000)
    if then == "save":
        cnn.save("net.dat")
    else:
        cnn.init([4], 1, 2, b_size=8, seed=0, comp_meth="C_BLAS", no_logo=1)
        cnn.load("net.dat", 0)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
