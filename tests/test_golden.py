"""Parity with the original CIANNA: forward and two training iterations from its save files."""

from functools import partial

import jax
import numpy as np
import pytest
from conftest import DENSE_CASES, TRAINED_CASES

import cianna_jax as cj
from cianna_jax import training


@pytest.mark.parametrize("fname,binary", [("net_bin.dat", True), ("net_ascii.dat", False)])
@pytest.mark.parametrize("case_name", DENSE_CASES)
def test_forward_matches_cianna(golden_case, case_name, fname, binary):
    case = golden_case(case_name)
    loaded = cj.load_network(case.path(fname), binary=binary, bias=case.bias)
    x = cj.rows_to_images(loaded.net, case.npy("input"))
    want = case.npy("output")
    got = cj.output_rows(loaded.net,
                         np.asarray(cj.apply(loaded.net, loaded.params, x, bias_slot=True)))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5
    # the researcher-facing output drops only the dense bias slot
    plain = cj.output_rows(loaded.net, np.asarray(cj.apply(loaded.net, loaded.params, x)))
    assert plain.shape == (x.shape[0], loaded.net.out_dim)
    assert loaded.net.out_dim == case.meta["init"]["out_dim"]


@pytest.mark.parametrize("case_name", TRAINED_CASES)
def test_two_training_iterations_match_cianna(golden_case, case_name):
    case = golden_case(case_name)
    tr = case.meta["train"]
    loaded = cj.load_network(case.path("net_bin.dat"), binary=True, bias=case.bias)
    net, params = loaded.net, loaded.params
    opt = cj.make_optimizer(tr["learning_rate"], tr["momentum"], 0.0,
                            masks=partial(cj.cianna_masks, net))
    state = opt.init(params)
    xt, tt = cj.rows_to_images(net, case.npy("train_input")), case.npy("train_target")
    assert xt.shape[0] == tr["n_train"]
    key = jax.random.key(0)  # these cases have no dropout: the key is not used
    for _ in range(tr["nb_iter"]):
        params, state, _ = training.train_epoch(net, opt, params, state, xt, tt, tr["b_size"], key)
    x = cj.rows_to_images(net, case.npy("input"))
    got = cj.output_rows(net, np.asarray(cj.apply(net, params, x, bias_slot=True)))
    assert np.abs(got - case.npy("trained_output")).max() <= 1e-4

    ref = cj.load_network(case.path("trained_net_bin.dat"), binary=True, bias=case.bias)
    for mine, theirs in zip(params, ref.params):
        assert mine.keys() == theirs.keys()
        for name in mine:
            np.testing.assert_allclose(np.asarray(mine[name]), np.asarray(theirs[name]),
                                       atol=2e-6, rtol=0)
