"""A conv fused with the tiling conv after it gives the numbers of the two layers.

Forward outputs, training losses and the gradients of every parameter and of the input
are compared (CIANNA's gradients and exact autodiff) on tiny networks shaped like the
first layers of CIANNA's SDC1 detector; geometries the fusion does not cover keep the
layer-by-layer path.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_refs import compare_unfused

import cianna_jax as cj
import cianna_jax.layers.fused_tiles as fused_tiles
from cianna_jax import nn
from cianna_jax.layers.common import Ctx
from cianna_jax.precision import get_policy

TOL = dict(rtol=2e-5, atol=2e-5)


def _net(size=(12, 12), channels=1, first=None, second=None, tail=True, bias=0.1):
    first = first or nn.conv([5, 5], 6, padding=[2, 2], activation="RELU")
    second = second or nn.conv([2, 2], 4, stride=[2, 2], activation="RELU")
    layers = [first, second]
    if tail:
        layers += [nn.conv([3, 3], 3, padding=[1, 1], activation="RELU"),
                   nn.dense(5, activation="SMAX")]
    return nn.network(list(size), channels, layers, bias=bias)


def _compare(net, monkeypatch, *, tiled, exact=False, **kw):
    ctx = Ctx(exact=exact)
    assert net.tiled_pairs(ctx) == frozenset(tiled)
    if exact:
        monkeypatch.setattr(cj.training, "batch_loss", _exact(cj.training.batch_loss))
    return compare_unfused(net, monkeypatch, "tiles_fusible", lambda: net.tiled_pairs(ctx),
                           **kw, **TOL)


def _exact(batch_loss):
    def run(*a, **k):
        return batch_loss(*a, **k, exact=True)
    return run


def test_sdc1_like_first_layers(monkeypatch):
    """SDC1's 5x5 one-channel conv and 2x2 stride-2 conv, then more layers."""
    _compare(_net(), monkeypatch, tiled={0})


def test_exact_gradients(monkeypatch):
    _compare(_net(first=nn.conv([5, 5], 6, padding=[2, 2], activation="LOGI")),
             monkeypatch, tiled={0}, exact=True)


def test_odd_map_and_other_activations(monkeypatch):
    """An odd, non-square map (the second conv skips the last row and column), a
    3x3 stride-3 tiling, LOGI then LIN, the pair at the network's end."""
    net = _net(size=(13, 11), first=nn.conv([3, 3], 5, padding=[1, 1], activation="LOGI"),
               second=nn.conv([3, 3], 4, stride=[3, 3], activation="LIN"), tail=False)
    assert net.layers[1].output_shape(net.shapes[1][0])[:2] == (4, 3)
    _compare(net, monkeypatch, tiled={0})


def test_chunks_with_rows_added(monkeypatch):
    """Chunks of 256 rows (the least) over 3 x 9 x 10 = 270 rows: two chunks of 135."""
    monkeypatch.setattr(fused_tiles, "CHUNK_BYTES", 1)
    net = _net(size=(20, 18), tail=False)
    _compare(net, monkeypatch, tiled={0}, batch=3)


def test_two_channels_and_padding_at_the_filter_size_are_left_apart():
    assert _net(channels=2).tiled_pairs(Ctx()) == frozenset()  # 72 inputs per output
    assert _net(first=nn.conv([3, 3], 4, padding=[1, 1], activation="RELU"),
                channels=4).tiled_pairs(Ctx()) == frozenset({0})  # 64: fused
    wide_pad = nn.conv([3, 3], 4, padding=[3, 3], activation="RELU")
    assert _net(first=wide_pad).tiled_pairs(Ctx()) == frozenset()


@pytest.mark.parametrize("second", [
    nn.conv([2, 2], 4, stride=[1, 1], activation="RELU"),  # overlapping windows
    nn.conv([3, 3], 4, stride=[2, 2], activation="RELU"),
    nn.conv([2, 2], 4, stride=[2, 2], padding=[1, 1], activation="RELU"),
    nn.conv([2, 2], 4, stride=[2, 2], activation="RELU", drop_rate=0.5),
    nn.pool([2, 2]),
])
def test_geometries_left_apart(second):
    assert _net(second=second).tiled_pairs(Ctx()) == frozenset()


def test_other_cases_left_apart():
    drop = nn.conv([5, 5], 6, padding=[2, 2], activation="RELU", drop_rate=0.2)
    assert _net(first=drop).tiled_pairs(Ctx()) == frozenset()
    assert _net().tiled_pairs(Ctx(policy=get_policy("FP16C_FP32A"))) == frozenset()
    net = _net()
    assert net.tiled_pairs(Ctx()) == frozenset({0})
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fused_tiles, "FUSE", False)
        assert net.tiled_pairs(Ctx()) == frozenset()
    # the first conv's output read by another layer too (a residual merge)
    graph = nn.network([8, 8], 1, [
        nn.conv([3, 3], 4, padding=[1, 1], activation="RELU"),
        nn.conv([2, 2], 4, stride=[2, 2], activation="RELU"),
        nn.pool([2, 2]),
        nn.merge("ADD"),
    ], bias=0.1, inputs=[(-1,), (0,), (0,), (1, 2)])
    assert graph.tiled_pairs(Ctx()) == frozenset()


def test_laid_out_params_keep_the_kernels_and_the_numbers():
    net = _net()
    params = cj.init_params(jax.random.key(0), net)
    laid = cj.inference_params(net, params)
    assert "kernel" in laid[0] and "kernel" in laid[1]
    x = jax.random.normal(jax.random.key(1), (2,) + net.input_shape)
    hlo = jax.jit(lambda p, v: cj.apply(net, p, v)).lower(laid, x).compile().as_text()
    assert "L0_conv_tiles" in hlo and "L1_conv" not in hlo
    np.testing.assert_allclose(np.asarray(cj.apply(net, laid, x)),
                               np.asarray(cj.apply(net, params, x)), **TOL)


def test_chunked_rows_helper():
    rows = jnp.arange(7 * 3, dtype=jnp.float32).reshape(7, 3)
    out = fused_tiles._chunked(lambda r: r * 2.0, rows, 3)  # 3 chunks of 3, 2 rows added
    np.testing.assert_array_equal(np.asarray(out), np.asarray(rows) * 2.0)
