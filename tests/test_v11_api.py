"""CIANNA V-1.1 scripts through ``cianna_jax.v11``: every whole-network golden case of the
original V-1.1 (tests/data/golden_v11) replayed with only the import changed."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cianna_jax.v11 as cnn
from cianna_jax import api
from cianna_jax.io.cianna_format import read_network

GOLDEN = Path(__file__).parent / "data" / "golden_v11"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "meta.json").exists())
RESUME = [c for c in CASES if c.startswith("optim_resume")]


# CIANNA's functions write net_save/, fwd_res/ and error.txt in the current folder
pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def _meta(case):
    return json.loads((GOLDEN / case / "meta.json").read_text())


def _init(meta):
    ini = dict(meta["init"])
    ini["in_dim"] = np.array(ini["in_dim"])
    cnn.init(**ini, comp_meth="C_BLAS", no_logo=1, seed=0)


def _train_kwargs(meta):
    return {k: v for k, v in meta["train"].items() if k not in ("n_train", "b_size", "note")}


def _datasets(case, meta):
    d = GOLDEN / case
    x, t = np.load(d / "input.npy"), np.load(d / "target.npy")
    cnn.create_dataset("TEST", x.shape[0], x, t, silent=1)
    tx, tt = np.load(d / "train_input.npy"), np.load(d / "train_target.npy")
    cnn.create_dataset("TRAIN", meta["train"]["n_train"], tx, tt, silent=1)


@pytest.mark.parametrize("case", CASES)
def test_v11_case_forward_train_and_files(case, in_tmp_dir):
    meta, d = _meta(case), GOLDEN / case
    _init(meta)
    _datasets(case, meta)
    cnn.load(str(d / "net_bin.dat"), 0, bin=1, silent=1)
    out = cnn.forward(saving=2, no_error=0, return_output=1, silent=1)
    want = np.load(d / "output.npy")
    assert out.shape == want.shape
    assert np.abs(out - want).max() <= 1e-5
    written = np.fromfile("fwd_res/net0_0000.dat", np.float32).reshape(want.shape)
    np.testing.assert_array_equal(written, out)
    cnn.save("resaved.dat", bin=0)  # CIANNA's own ASCII re-save, byte for byte
    assert Path("resaved.dat").read_bytes() == (d / "net_ascii_resave.dat").read_bytes()
    cnn.save("resaved_bin.dat", bin=1)  # same records (CIANNA leaves garbage after NULs)
    assert (read_network("resaved_bin.dat", True, version="1.1").records
            == read_network(d / "net_bin.dat", True, version="1.1").records)

    cnn.train(**_train_kwargs(meta))
    after = cnn.forward(saving=0, return_output=1, silent=1)
    assert np.abs(after - np.load(d / "trained_output.npy")).max() <= 1e-4
    cnn.save("trained.dat", bin=1)  # EMA weights when wema=1, as the original
    ours = read_network("trained.dat", True, version="1.1").records
    theirs = read_network(d / "trained_net_bin.dat", True, version="1.1").records
    for a, b in zip(ours, theirs, strict=True):
        for name in ("weights", "gamma", "beta"):
            if getattr(a, name, None) is not None:
                np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-4)


@pytest.mark.parametrize("case", RESUME)
def test_optimizer_state_resume_equals_uninterrupted(case, in_tmp_dir):
    meta, d = _meta(case), GOLDEN / case
    kw = _train_kwargs(meta)
    _init(meta)
    _datasets(case, meta)
    cnn.load(str(d / "net_bin.dat"), 0, bin=1, silent=1)
    cnn.train(**kw)
    straight = cnn.forward(saving=0, return_output=1, silent=1)
    assert Path("optim_save/net_optim0_s0001.dat").exists()
    shutil.copy("optim_save/net_optim0_s0001.dat", "state1.dat")
    binary = kw.get("save_bin", 0)

    # a fresh network (no layer calls) resumes from the iteration-1 optimizer state
    _init(meta)
    _datasets(case, meta)
    cnn.load("state1.dat", 1, bin=binary, silent=1)
    assert api.get_state(0).iteration == 1
    kw.update(nb_iter=1, save_optim_every=0)
    cnn.train(**kw)
    resumed = cnn.forward(saving=0, return_output=1, silent=1)
    if binary:
        np.testing.assert_array_equal(resumed, straight)  # bit-identical on CPU
    else:  # ASCII files hold CIANNA's %g, 6 significant digits
        assert np.abs(resumed - straight).max() <= 1e-5
    # ... and so does the original's own state file (its binary ADAM step count too)
    assert np.abs(straight - np.load(d / "trained_output.npy")).max() <= 1e-4
    _init(meta)
    _datasets(case, meta)
    name = "optim_state_s0001_bin.dat" if binary else "optim_state_s0001_ascii.dat"
    if (d / name).exists():
        cnn.load(str(d / name), 1, bin=binary, silent=1)
        cnn.train(**kw)
        theirs = cnn.forward(saving=0, return_output=1, silent=1)
        assert np.abs(theirs - straight).max() <= 1e-5


def test_v11_train_keywords_are_checked_and_a_refusal_changes_nothing():
    """V-1.1's train keywords: a weight EMA rate above 1 (the EMA would grow without
    bound), EMA keywords without wema=1, V-1.1 keywords without a V-1.1 optimizer."""
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(8, 16)).astype(np.float32), np.eye(2, dtype=np.float32)[[0, 1] * 4]
    for wema in (1, 0):
        cnn.init(in_dim=np.array([4, 4]), in_nb_ch=1, out_dim=2, b_size=4, optimizer=cnn.adam(),
                 wema=wema, comp_meth="C_BLAS", no_logo=1, seed=0)
        cnn.create_dataset("TRAIN", 8, x, t, silent=1)
        cnn.create_dataset("VALID", 8, x, t, silent=1)
        cnn.dense(nb_neurons=2, strict_size=1, activation="SMAX", silent=1)
        state = api.get_state(0)
        rate, iteration = state.wema_rate, state.iteration
        bad = (dict(wema_rate=1.5, match="wema_rate: expected a rate <= 1") if wema else
               dict(wema_rate=0.9, match="the network was created without wema=1"))
        with pytest.raises(ValueError, match=bad.pop("match")):
            cnn.train(nb_iter=1, learning_rate=0.01, silent=1, **bad)
        assert (state.wema_rate, state.iteration) == (rate, iteration)
    import cianna_jax as v10
    v10.init([4, 4], 1, 2, b_size=4, comp_meth="C_BLAS", seed=0, network=1)
    v10.create_dataset("TRAIN", 8, x, t, network=1, silent=1)
    v10.create_dataset("VALID", 8, x, t, network=1, silent=1)
    v10.dense(2, strict_size=1, activation="SMAX", network=1, silent=1)
    with pytest.raises(ValueError, match="need a V-1.1 optimizer"):
        v10.train(1, 0.01, decoupled_wdecay=1, network=1, silent=1)


def test_print_arch_tex_and_perf_eval_on_v11_layers(capsys):
    """GRN and merge layers in the LaTeX table (print_arch_tex raised KeyError: 'grn')."""
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(8, 64)).astype(np.float32), np.eye(4, dtype=np.float32)[[0, 1] * 4]
    cnn.init(in_dim=np.array([8, 8]), in_nb_ch=1, out_dim=4, b_size=4, optimizer=cnn.adam(),
             comp_meth="C_BLAS", no_logo=1, seed=0)
    cnn.create_dataset("TEST", 8, x, t, silent=1)
    cnn.conv(f_size=np.array([3, 3]), nb_filters=4, padding=np.array([1, 1]), silent=1)
    cnn.conv(f_size=np.array([3, 3]), nb_filters=4, nb_groups=2, padding=np.array([1, 1]),
             silent=1)
    cnn.grn(silent=1)
    cnn.merge(-1, -3, "ADD", silent=1)
    cnn.dense(nb_neurons=4, strict_size=1, activation="SMAX", silent=1)
    tex = Path(cnn.print_arch_tex("./", "arch", param_count=1))
    rows = [r for r in tex.read_text().splitlines() if r[:1].isdigit()]
    assert [r.split(" & ")[1] for r in rows] == ["Conv\\_1", "Conv\\_2", "GRN\\_1", "Merge\\_1",
                                                 "Dense\\_1"]
    assert rows[1].endswith("& 76 \\\\")  # 4 filters x (2 channels per group x 9 + bias)
    cnn.forward(silent=1)
    capsys.readouterr()
    cnn.perf_eval()
    table = capsys.readouterr().out
    types = [r.split()[1] for r in table.splitlines() if r.split()[:1] in (["3"], ["4"])]
    assert types == ["G", "M"]  # CIANNA's one-letter types
