"""A CIANNA V-1.1-style script (residual network, Adam, GRN, merge, weight EMA, optimizer
saves, resume, return_output) that differs from what the original needs only by its
import line, on small synthetic data."""

import numpy as np
import pytest

import cianna_jax.v11 as cnn  # the original: import CIANNA as cnn

# CIANNA's functions write net_save/, fwd_res/ and error.txt in the current folder
pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def _data(n, seed):
    """4 classes: a bright 4x4 square in one quadrant of a noisy 12x12 image."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 12, 12)).astype(np.float32)
    cls = rng.integers(0, 4, n)
    for i, c in enumerate(cls):
        r, q = divmod(int(c), 2)
        x[i, 6 * r + 1:6 * r + 5, 6 * q + 1:6 * q + 5] += 2.0
    return x.reshape(n, -1), np.eye(4, dtype=np.float32)[cls]


def _network():
    cnn.init(in_dim=np.array([12, 12]), in_nb_ch=1, out_dim=4, b_size=16,
             optimizer=cnn.adam(beta1=0.9, beta2=0.999), wema=1, comp_meth="C_BLAS",
             dynamic_load=1, mixed_precision="FP32C_FP32A", no_logo=1, seed=3)
    cnn.conv(f_size=np.array([3, 3]), nb_filters=8, padding=np.array([1, 1]),
             activation="RELU", silent=1)
    cnn.conv(f_size=np.array([3, 3]), nb_filters=8, nb_groups=2, padding=np.array([1, 1]),
             activation="LIN", silent=1)
    cnn.grn(activation="RELU", silent=1)
    cnn.merge(-1, -3, "ADD", silent=1)  # residual block: GRN output + first conv
    cnn.conv(f_size=np.array([1, 1]), nb_filters=8, activation="LIN", silent=1)
    cnn.norm(group_size=4, gamma_init=1.0, silent=1)
    cnn.pool(p_size=np.array([2, 2]), p_type="MAX", silent=1)
    cnn.dense(nb_neurons=32, activation="RELU", drop_rate=0.2, silent=1)
    cnn.dense(nb_neurons=4, strict_size=1, activation="SMAX", silent=1)


def test_v11_script_trains_saves_and_resumes_exactly(in_tmp_dir):
    x, t = _data(96, 0)
    vx, vt = _data(32, 1)
    _network()
    cnn.create_dataset("TRAIN", 96, x, t, silent=1)
    cnn.create_dataset("VALID", 32, vx, vt, silent=1)
    cnn.create_dataset("TEST", 32, vx, vt, silent=1)
    train_kw = dict(learning_rate=0.002, end_learning_rate=0.0005, lr_decay=0.1,
                    weight_decay=0.01, decoupled_wdecay=1, wema_rate=0.9, control_interv=2,
                    shuffle_every=0, save_optim_every=1, save_every=2, save_bin=1,
                    silent=1)
    cnn.train(nb_iter=4, **train_kw)
    assert cnn.forward(silent=1) is None  # V-1.1: no array unless return_output=1
    pred = cnn.forward(no_error=0, return_output=1, silent=1)
    assert pred.shape == (32, 4)  # no bias column in V-1.1
    assert (pred.argmax(1) == vt.argmax(1)).mean() >= 0.75
    for it in (1, 2, 3, 4):
        assert (in_tmp_dir / f"optim_save/net_optim0_s{it:04d}.dat").exists()
    assert (in_tmp_dir / "net_save/net0_s0004.dat").exists()

    # resume from the iteration-2 optimizer state in a fresh network: same weights
    cnn.init(in_dim=np.array([12, 12]), in_nb_ch=1, out_dim=4, b_size=16,
             optimizer=cnn.adam(), wema=1, comp_meth="C_BLAS", no_logo=1, seed=3)
    cnn.create_dataset("TRAIN", 96, x, t, silent=1)
    cnn.create_dataset("VALID", 32, vx, vt, silent=1)
    cnn.create_dataset("TEST", 32, vx, vt, silent=1)
    cnn.load("optim_save/net_optim0_s0002.dat", 2, bin=1, silent=1)
    cnn.train(nb_iter=2, **train_kw)
    np.testing.assert_array_equal(cnn.forward(return_output=1, silent=1), pred)


def test_v10_api_with_v11_layers_saves_and_reloads(in_tmp_dir):
    import cianna_jax as cj

    x = np.random.default_rng(0).normal(size=(4, 72)).astype(np.float32)
    outs = []
    for seed, action in ((0, "save"), (1, "load")):
        cj.init([6, 6], 2, 3, b_size=4, seed=seed, comp_meth="C_BLAS", no_logo=1)
        if action == "save":
            cj.conv([3, 3], 4, padding=[1, 1], silent=1)
            cj.grn(silent=1)
            cj.merge(-1, -2, "ADD", silent=1)
            cj.dense(3, activation="LIN", strict_size=1, silent=1)
            cj.save("net.dat", bin=1)  # a V-1.1 file: only it holds GRN and merge records
        else:
            cj.load("net.dat", 0, bin=1, silent=1)
        cj.create_dataset("TEST", 4, x, np.zeros((4, 3), np.float32), silent=1)
        outs.append(cj.forward(saving=0, silent=1))
    np.testing.assert_array_equal(outs[0], outs[1])
