"""YOLO through the imperative API: CIANNA's end-to-end golden cases (yolo_a*).

Compiling the networks' training and forward steps, not running them, is what these
tests cost on CPU (compiled with fewer XLA optimisations there, as the whole suite is: see
tests/conftest.py).
"""

import json

import numpy as np
import pytest
from conftest import GOLDEN

import cianna_jax as cnn

A_CASES = ("yolo_a1_2d_c0_p0_giou", "yolo_a3_2d_c3_p0_diou_sigmoid")


# CIANNA's functions write net_save/, fwd_res/ and error.txt in the current folder
pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def _meta(case):
    return json.loads((GOLDEN / case / "meta.json").read_text())


def _yolo_kwargs(meta, **extra):
    kw = {k: v for k, v in meta["set_yolo_params_kwargs"].items() if k != "network"}
    kw["prior_size"] = eval(kw["prior_size"], {"np": np})  # stored as a numpy expression
    kw.update(extra)
    return kw


def _setup(case, raw_output=0, yolo_kernel="auto"):
    meta = _meta(case)
    ini = dict(meta["init"])
    ini["in_dim"] = np.array(ini["in_dim"])
    cnn.init(**ini, no_logo=1, seed=0)
    nb = cnn.set_yolo_params(**_yolo_kwargs(meta, raw_output=raw_output,
                                            yolo_kernel=yolo_kernel))
    assert nb == meta["set_yolo_params_return_nb_filters"]
    d = GOLDEN / case
    x, t = np.load(d / "input.npy"), np.load(d / "target.npy")
    cnn.create_dataset("TEST", x.shape[0], x, t)
    cnn.load(str(d / "net_bin.dat"), 0, bin=1)
    return meta, d


@pytest.mark.parametrize("case", A_CASES)
def test_forward_files_and_error_txt_match_cianna(case, in_tmp_dir):
    meta, d = _setup(case)
    net_id = cnn.api._SESSION["last"]
    rows = cnn.forward(saving=2)
    written = np.fromfile(f"fwd_res/net{net_id}_0000.dat", np.float32).reshape(rows.shape)
    assert np.abs(written - np.load(d / "output_raw.npy")).max() <= 1e-5
    cnn.forward(saving=1)
    text = (in_tmp_dir / f"fwd_res/net{net_id}_0000.dat").read_text()
    assert "\n" not in text  # CIANNA writes YOLO predictions on one line
    np.testing.assert_allclose(np.array(text.split(), np.float32), written.ravel(), rtol=2e-6,
                               atol=1e-6)
    want = [float(v) for v in (d / "error.txt").read_text().split("\n")[0].split()]
    got = [float(v) for v in (in_tmp_dir / "error.txt").read_text().split("\n")[0].split()]
    assert len(got) == 8 and got[0] == want[0]
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-4, atol=1e-6)

    _setup(case, raw_output=1)
    act = cnn.forward(saving=0, no_error=1)
    assert np.abs(act - np.load(d / "output_activated.npy")).max() <= 1e-5


@pytest.mark.parametrize("case,kernel", [(c, "auto") for c in A_CASES]
                         + [(A_CASES[0], "pallas")])
def test_training_step_matches_cianna(case, kernel):
    """``yolo_kernel="pallas"`` (interpreted on CPU) trains exactly like the reference."""
    meta, d = _setup(case, yolo_kernel=kernel)
    tr = {k: v for k, v in meta["training"].items() if k not in ("n_train", "b_size", "note")}
    xt, tt = np.load(d / "train_input.npy"), np.load(d / "train_target.npy")
    cnn.create_dataset("TRAIN", xt.shape[0], xt, tt)
    tr["nb_iter"] = 1  # the first step is exact under CUDA semantics in both cases
    cnn.train(**tr)
    net, params = cnn.get_network()
    ref_file = "trained_step1_net_bin.dat" if meta["training"]["nb_iter"] == 2 else \
        "trained_net_bin.dat"
    ref = cnn.load_network(d / ref_file, binary=True, bias=0.1)
    for mine, theirs in zip(params, ref.params):
        for k in mine:
            np.testing.assert_allclose(np.asarray(mine[k]), np.asarray(theirs[k]), atol=1e-5)
    if meta["training"]["nb_iter"] == 1:
        rows = cnn.forward(saving=0)
        assert np.abs(rows - np.load(d / "trained_output.npy")).max() <= 1e-4


def test_yolo_save_load_round_trip_and_no_override(in_tmp_dir):
    meta, d = _setup(A_CASES[1])
    before = cnn.forward(saving=0, no_error=1)
    cnn.save("yolo.dat", bin=1)
    cnn.save("yolo_ascii.dat", bin=0)  # unlike CIANNA, ASCII YOLO files reload too
    for fname, binary in (("yolo.dat", 1), ("yolo_ascii.dat", 0)):
        ini = dict(meta["init"])
        ini["in_dim"] = np.array(ini["in_dim"])
        cnn.init(**ini, no_logo=1)
        cnn.set_yolo_params()  # geometry comes from the file, as in CIANNA's inference scripts
        x, t = np.load(d / "input.npy"), np.load(d / "target.npy")
        cnn.create_dataset("TEST", x.shape[0], x, t)
        cnn.load(fname, 0, bin=binary)
        after = cnn.forward(saving=0, no_error=1)
        np.testing.assert_allclose(after, before, atol=1e-5 if binary else 1e-3)
    # no_override: the settings given to set_yolo_params are kept, the file's are ignored
    ini = dict(meta["init"])
    ini["in_dim"] = np.array(ini["in_dim"])
    cnn.init(**ini, no_logo=1)
    kw = _yolo_kwargs(meta, no_override=1)
    kw["prior_size"] = kw["prior_size"] * 2
    cnn.set_yolo_params(**kw)
    cnn.load("yolo.dat", 0, bin=1)
    assert cnn.get_network()[0].yolo.prior_size[0][:2] == (16.0, 16.0)


def test_yolo_configuration_errors():
    cnn.init([32, 32], 1, 29, b_size=4, no_logo=1)
    with pytest.raises(ValueError, match="max_nb_obj_per_image"):
        cnn.set_yolo_params(nb_box=2, max_nb_obj_per_image=5,
                            prior_size=np.array([[8.0, 16.0], [8.0, 12.0]]))
    with pytest.raises(RuntimeError, match="set_yolo_params"):
        cnn.conv([1, 1], 16, activation="YOLO")
    with pytest.raises(ValueError, match="yolo_kernel"):
        cnn.set_yolo_params(nb_box=1, yolo_kernel="cuda")
    nb = cnn.set_yolo_params(nb_box=2, max_nb_obj_per_image=4,
                             prior_size=np.array([[8.0, 16.0], [8.0, 12.0]]))
    assert nb == 16
    cnn.conv([4, 4], 8, stride=[4, 4])
    with pytest.raises(ValueError, match="nb_filters"):
        cnn.conv([1, 1], 15, activation="YOLO")
    assert cnn.conv([1, 1], 16, activation="YOLO") == 1
    with pytest.raises(RuntimeError, match="existing YOLO"):
        cnn.set_yolo_params(nb_box=1)


def test_yolo_targets_are_validated_at_create_dataset():
    cnn.init([32, 32], 1, 15, b_size=4, no_logo=1)
    cnn.set_yolo_params(nb_box=1, nb_class=2, max_nb_obj_per_image=2,
                        prior_size=np.array([[8.0], [8.0]]))
    x = np.zeros((2, 1024), np.float32)
    good = np.zeros((2, 15), np.float32)
    good[0, :8] = [1, 2, 4, 4, 0, 12, 12, 1]
    cnn.create_dataset("TRAIN", 2, x, good)
    for row, word in (([3], "exceeds"), ([1, 3, 4, 4, 0, 12, 12, 1], "class"),
                      ([1, 1, 12, 4, 0, 4, 12, 1], "inverted")):
        bad = good.copy()
        bad[0, :len(row)] = row
        with pytest.raises(ValueError, match=word):
            cnn.create_dataset("VALID", 2, x, bad)
