"""Networks as graphs, the layer protocol (user-defined layers), exact vs CIANNA gradients."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.activations import parse_activation
from cianna_jax.layers import Layer, LayerBase, Shape, layer_type


@dataclasses.dataclass(frozen=True)
class Scale(LayerBase):
    """A user-defined layer: one learned scale per channel, no CIANNA record."""

    activation: object = parse_activation("LIN")
    kind: ClassVar[str] = "scale"

    def output_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def param_shapes(self, in_shape: Shape):
        return {"s": (in_shape.c,)}

    def init(self, key, in_shape: Shape):
        return {"s": jnp.full((in_shape.c,), 2.0, jnp.float32)}, in_shape

    def apply(self, params, x, ctx, key=None, *, activate_output=True):
        return x * params["s"].astype(x.dtype)


def test_user_layer_meets_the_protocol_and_works_in_the_core():
    layer = Scale()
    assert isinstance(layer, Layer)
    net = nn.network([4, 4], 3, [nn.conv([3, 3], 2, padding=[1, 1], activation="LIN"), layer,
                                 nn.dense(2, activation="LIN")], bias=0.5)
    params = cj.init_params(jax.random.key(0), net)
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 4, 4, 3)), np.float32)
    y = cj.apply(net, params, x)
    assert y.shape == (2, 2)
    grads = jax.grad(lambda p: jnp.sum(cj.apply(net, p, x)))(params)
    assert np.abs(np.asarray(grads[1]["s"])).sum() > 0
    # halving the scale of the user layer is the same as halving the conv output
    half = (params[0], {"s": params[1]["s"] / 2}, params[2])
    conv_half = ({k: v / 2 for k, v in params[0].items()},) + params[1:]
    np.testing.assert_allclose(cj.apply(net, half, x), cj.apply(net, conv_half, x), atol=1e-5)
    with pytest.raises(TypeError, match="no CIANNA save-file record"):
        cj.save_network("unused.dat", net, params)


def test_cianna_types_are_registered_for_files():
    assert layer_type("conv") is cj.layers.Conv
    with pytest.raises(ValueError, match="unknown layer kind 'scale'"):
        layer_type("scale")


def _branching_net():
    # 0: conv on the input; 1: conv on the input too (prev_layer <= -2); 2: pool of 0
    return cj.make_network((6, 6, 1, 2), [nn.conv([3, 3], 3, padding=[1, 1]),
                                          nn.conv([1, 1], 4, activation="LIN"),
                                          nn.pool([2, 2])], 0.1, inputs=[(-1,), (-1,), (0,)])


def test_a_graph_reads_earlier_outputs_and_reports_any_layer():
    net = _branching_net()
    assert net.sources(1) == (-1,) and net.sources(2) == (0,)
    assert net.consumers == ((2,), (), ())
    params = cj.init_params(jax.random.key(0), net)
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 6, 6, 2)), np.float32)
    a, b, c = cj.apply_layers(net, params, x, [0, 1, 2])
    assert a.shape == (2, 6, 6, 3) and b.shape == (2, 6, 6, 4) and c.shape == (2, 3, 3, 3)
    # the branch equals the same conv run as a one-layer network (same bias: only layer 0
    # takes init's bias, a later layer reading the input keeps its own)
    assert net.layers[1].bias == pytest.approx(0.5)
    alone = cj.make_network((6, 6, 1, 2), [net.layers[1]], net.layers[1].bias)
    np.testing.assert_allclose(b, cj.apply(alone, (params[1],), x), atol=1e-6)
    np.testing.assert_allclose(c, cj.apply(net, params, x), atol=1e-6)
    # the output does not depend on the dead branch: zero gradient there
    g = jax.grad(lambda p: jnp.sum(cj.apply(net, p, x)))(params)
    assert not np.asarray(g[1]["kernel"]).any() and not np.asarray(g[1]["bias_weight"]).any()
    assert np.asarray(g[0]["kernel"]).any()


def test_wiring_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"inputs: layer 2 \(conv\) can only read"):
        cj.make_network((6, 6, 1, 2), [nn.conv([3, 3], 3), nn.conv([1, 1], 2)], 0.1,
                        inputs=[(-1,), (1,)])
    with pytest.raises(ValueError, match="one entry per layer"):
        cj.make_network((6, 6, 1, 2), [nn.conv([3, 3], 3)], 0.1, inputs=[])
    # stacking rules follow the real source: a norm reading the input is a first layer
    with pytest.raises(ValueError, match=r"layer 2 \(norm\): a normalisation layer cannot be "
                                         r"the first layer"):
        cj.make_network((6, 6, 1, 8), [nn.conv([3, 3], 8), nn.norm()], 0.1,
                        inputs=[(-1,), (-1,)])


def test_a_saved_graph_is_refused_by_the_cianna_format(tmp_path):
    net = _branching_net()
    params = cj.init_params(jax.random.key(0), net)
    with pytest.raises(ValueError, match="only holds sequential networks"):
        cj.save_network(tmp_path / "g.dat", net, params)
    assert not (tmp_path / "g.dat").exists()


def test_imperative_prev_layer_builds_the_graph(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cj.init(in_dim=[6, 6], in_nb_ch=2, out_dim=2, b_size=4, seed=0, no_logo=1)
    cj.conv([3, 3], 3, padding=[1, 1], silent=1)
    cj.conv([1, 1], 4, prev_layer=-2, silent=1)       # reads the network input
    cj.pool([2, 2], prev_layer=0, silent=1)
    net, _ = cj.get_network()
    assert [net.sources(i) for i in range(3)] == [(-1,), (-1,), (0,)]
    with pytest.raises(ValueError, match="prev_layer: the network has 3 layers"):
        cj.dense(2, prev_layer=7)
    assert len(cj.get_network()[0].layers) == 3


@pytest.mark.parametrize("case", ["logistic_clamp", "avg_pool_border"])
def test_exact_gradients_match_finite_differences_where_cianna_differs(case):
    """CIANNA's backward rules differ from the true gradient (LOGI's surrogate derivative in
    its clamped region; AVG pooling divided by the full window at padded borders);
    grads="exact" is plain autodiff and agrees with finite differences."""
    if case == "logistic_clamp":
        layers = [nn.conv([3, 3], 3, activation="LOGI_S1_B2"), nn.dense(2, activation="LIN")]
    else:
        layers = [nn.conv([3, 3], 3, activation="LIN"),
                  nn.pool([2, 2], padding=[1, 1], p_type="AVG"), nn.dense(2, activation="LIN")]
    net = nn.network([5, 5], 1, layers, bias=0.3)
    params = cj.init_params(jax.random.key(2), net)
    x = 3 * np.asarray(jax.random.normal(jax.random.key(3), (4, 5, 5, 1)), np.float32)

    def loss(p, grads):
        return jnp.sum(jnp.square(cj.apply(net, p, x, grads=grads)))

    exact = jax.grad(lambda p: loss(p, "exact"))(params)
    cianna = jax.grad(lambda p: loss(p, "cianna"))(params)
    assert not all(np.allclose(np.asarray(exact[0][k]), np.asarray(cianna[0][k]), atol=1e-3)
                   for k in ("kernel", "bias_weight"))
    np.testing.assert_allclose(loss(params, "exact"), loss(params, "cianna"), rtol=1e-6)
    # central finite differences agree with "exact" on every first-layer weight
    eps = 1e-2
    for name, w in params[0].items():  # kernel and bias weights
        first = jax.jit(lambda w0, name=name: loss(({**params[0], name: w0},) + params[1:],
                                                   "exact"))
        fd = np.zeros(w.shape, np.float32)
        for idx in np.ndindex(*w.shape):
            bump = jnp.zeros_like(w).at[idx].set(eps)
            fd[idx] = (first(w + bump) - first(w - bump)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(exact[0][name]), fd, rtol=3e-2, atol=3e-2)
    with pytest.raises(ValueError, match="grads"):
        cj.apply(net, params, x, grads="autodiff")


def test_deep_networks_are_validated_without_recursion():
    # the stacking checks see each layer's sources: built once, shared, no recursion
    net = nn.network([4], 1, [nn.dense(4, activation="LIN") for _ in range(1500)])
    assert len(net.layers) == 1500 and net.output_shape.size == 4
