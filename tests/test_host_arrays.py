"""Keys, masks and copies made outside a trace compile nothing (cianna_jax.host_keys,
cianna_jax.host_arrays): the same values as jax.random and jax.numpy, and a CIANNA
script's first cnn.train compiles only its step programs."""

import collections
import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cnn
from cianna_jax import host_arrays, host_keys, nn, training
from cianna_jax.optim import transform


class _Compiled:
    """Names of the programs XLA compiles inside the block (``jax.log_compiles``)."""

    def __enter__(self):
        self.names = []
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record):
                m = re.search(r"Finished XLA compilation of jit\((\S+)\)", record.getMessage())
                if m:
                    outer.names.append(m.group(1))

        self._handler = _Handler()
        self._logger = logging.getLogger("jax._src.dispatch")
        self._logger.addHandler(self._handler)
        self._ctx = jax.log_compiles()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        self._logger.removeHandler(self._handler)


def _data(k):
    return np.asarray(jax.random.key_data(k))


@pytest.mark.parametrize("seed", [0, 5, -5, 2**31 - 1, -2**31, 2**32 - 1, np.int64(7),
                                  np.uint32(9)])
def test_keys_are_jax_randoms_bit_for_bit(seed):
    k, ref = host_keys.key(seed), jax.random.key(seed)
    assert k.dtype == ref.dtype and k.shape == () and np.array_equal(_data(k), _data(ref))
    for d in (0, 1, 7919, 2**31 - 1, 2**32 - 1, np.int32(3), np.uint32(4_000_000_000)):
        assert np.array_equal(_data(host_keys.fold_in(k, d)), _data(jax.random.fold_in(ref, d)))
    for n in (0, 1, 2, 17):
        got, want = host_keys.split(k, n), jax.random.split(ref, n)
        assert got.shape == want.shape == (n,) and np.array_equal(_data(got), _data(want))
        listed = host_keys.split_list(k, n)
        assert len(listed) == n and all(np.array_equal(_data(a), _data(b))
                                        for a, b in zip(listed, want))


def test_keys_compile_nothing_and_fall_back_to_jax_random():
    host_keys.key(1)  # the numpy threefry's first use
    with _Compiled() as c:
        k = host_keys.fold_in(host_keys.fold_in(host_keys.key(11), 1), 3)
        a, b = host_keys.split_list(k)
        host_keys.split(b, 4)
    assert c.names == []
    # traced keys, other PRNGs, the non-partitionable threefry, values jax refuses: jax.random
    f = jax.jit(lambda k: jax.random.key_data(host_keys.fold_in(host_keys.split(k, 3)[1], 2)))
    ref = jax.random.fold_in(jax.random.split(jax.random.key(4), 3)[1], 2)
    assert np.array_equal(np.asarray(f(host_keys.key(4))), _data(ref))
    with jax.threefry_partitionable(False):
        k = jax.random.key(3)
        assert not host_keys.on_host(k)
        assert np.array_equal(_data(host_keys.split(k, 3)), _data(jax.random.split(k, 3)))
    rbg = jax.random.key(3, impl="rbg")
    assert not host_keys.on_host(rbg)
    assert np.array_equal(_data(host_keys.fold_in(rbg, 2)), _data(jax.random.fold_in(rbg, 2)))
    with pytest.raises(OverflowError):
        host_keys.fold_in(host_keys.key(0), -1)  # as jax.random.fold_in
    with jax.enable_x64(True):  # a negative seed's high word is then 0xffffffff
        for seed in (-5, -2**31, 7, 2**32 - 1):
            assert np.array_equal(_data(host_keys.key(seed)), _data(jax.random.key(seed)))


def test_masks_and_copies_compile_nothing_and_match_jax_numpy():
    net = nn.network([6, 6], 1, [nn.conv([3, 3], 3), nn.norm(group_size=3),
                                 nn.dense(7), nn.dense(2, strict_size=1)], bias=0.1)
    params = cnn.init_params(jax.random.key(0), net)
    training.cianna_masks(net, params, frozen=(1,))  # the one-time numpy paths warm
    with _Compiled() as c:
        upd, dec = training.cianna_masks(net, params, frozen=(1,))
        v11_upd, v11_dec = transform.v11_masks(net, params, frozen=(0,))
        copied = host_arrays.copy_tree(params)
    assert c.names == []
    traced = jax.jit(lambda p: training.cianna_masks(net, p, frozen=(1,)))(params)
    v11_traced = jax.jit(lambda p: transform.v11_masks(net, p, frozen=(0,)))(params)
    for got, want in ((upd, traced[0]), (dec, traced[1]), (v11_upd, v11_traced[0]),
                      (v11_dec, v11_traced[1])):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            assert isinstance(a, jax.Array) and a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    w_mask = np.asarray(upd[2]["w"])  # the dense pivot: neither updated nor decayed
    assert w_mask[-1, -1] == 0 and w_mask.sum() == w_mask.size - 1
    assert upd[1] and all(float(np.max(np.asarray(m))) == 0 for m in upd[1].values())  # frozen
    for a, b in zip(jax.tree_util.tree_leaves(copied), jax.tree_util.tree_leaves(params)):
        assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()  # own buffers: donation
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(host_arrays.full((2,), 1.5, jnp.bfloat16), jax.Array)


def test_optimizer_states_and_norm_parameters_compile_nothing():
    """Every optimizer's initial state (zero buffers, step counters, masks, EMA copies) and
    the norm and GRN layers' parameters are built on the host: a network of new shapes
    compiles nothing for them (a first state may compile optax's two scalar conversions,
    once per process).  Their values: ``test_training``'s traced comparison."""
    from functools import partial

    from cianna_jax import optim

    def make(width):
        net = nn.network([6, 6], 1, [nn.conv([3, 3], width), nn.norm(group_size=2),
                                     nn.grn(), nn.dense(width + 1), nn.dense(3)], bias=0.5)
        sgd = training.make_optimizer(0.01, 0.9, masks=partial(training.cianna_masks, net))
        adam = optim.make_v11_optimizer(optim.parse_optimizer(optim.adam()), learning_rate=1e-3,
                                        use_wema=True, wema_rate=0.99,
                                        masks=partial(optim.v11_masks, net))
        return net, (sgd, adam)

    net, opts = make(4)
    for opt in opts:  # warm: optax's scalar hyper-parameters
        training.init_state(opt, cnn.init_params(jax.random.key(0), net))
    net, opts = make(6)
    key = host_keys.key(1)
    with _Compiled() as c:
        params = cnn.init_params(key, net)
    assert set(c.names) <= {"sample", "stage"}, c.names  # the weights' one sampler
    assert float(np.asarray(params[1]["gamma"])[0]) == 1.0 and not np.asarray(params[2]["beta"]).any()
    with _Compiled() as c:
        states = [training.init_state(opt, params) for opt in opts]
    assert c.names == []
    assert all(isinstance(a, jax.Array) for a in jax.tree_util.tree_leaves(states))
    # placed as the parameter: committed to its device, or left for the step to place
    dev = jax.devices()[0]
    for x in (jax.device_put(np.ones((2, 3), np.float32), dev), jax.device_put(np.ones(3))):
        z = host_arrays.zeros_like(x)
        assert z.committed == x.committed and z.sharding == x.sharding and not np.asarray(z).any()
    assert host_arrays.zeros_like(jnp.ones(2, jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("optimizer", [None, "adam"])
def test_a_scripts_first_train_compiles_only_its_step_programs(optimizer, in_tmp_dir):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 64)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    extra, momentum = ({}, {"momentum": 0.9}) if optimizer is None else ({"optimizer": cnn.adam()}, {})
    with _Compiled() as c:
        cnn.init(in_dim=[8, 8], in_nb_ch=1, out_dim=3, bias=0.1, b_size=8, comp_meth="C_BLAS",
                 dynamic_load=1, seed=3, no_logo=1, **extra)
        cnn.create_dataset("TRAIN", size=32, input=x[:32], target=t[:32], silent=1)
        cnn.create_dataset("VALID", size=8, input=x[32:], target=t[32:], silent=1)
        cnn.conv(f_size=[3, 3], nb_filters=4, padding=[1, 1], activation="RELU", silent=1)
        cnn.pool(p_size=[2, 2], silent=1)
        cnn.dense(nb_neurons=16, activation="RELU", drop_rate=0.2, silent=1)
        cnn.dense(nb_neurons=3, strict_size=1, activation="SMAX", silent=1)
        cnn.train(nb_iter=2, learning_rate=0.01, control_interv=1, **momentum, silent=2)
    steps = {"sample", "train_step", "train_steps", "all_finite", "_lay_out",
             "eval_step", "eval_steps"}
    # and optax's two scalar conversions (inject_hyperparams), once per process
    other = collections.Counter(n for n in c.names if n not in steps)
    assert other <= collections.Counter({"convert_element_type": 2}), c.names
