"""CIANNA V-1.1 layers: GRN, merge, grouped conv and the per-channel norm.

Kernel-level parity with the original (tests/data/golden_v11/kernels: arrays laid out
[feature][batch_slot][spatial], see their meta.json) and the layer rules.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import GRN, Merge, Shape, merge_sources
from cianna_jax.layers.common import Ctx
from cianna_jax.layers.conv import _forward, conv_nd
from cianna_jax.layers.grn import grn_forward

KERNELS = Path(__file__).parent / "data" / "golden_v11" / "kernels"
CIANNA, EXACT = Ctx(), Ctx(exact=True)
# one compilation per computation: op-by-op dispatch is slow on small CI machines
apply = jax.jit(cj.apply, static_argnums=0, static_argnames="grads")
apply_layers = jax.jit(cj.apply_layers, static_argnums=(0, 3))


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _params(net, seed=0):
    """Random parameters of ``net`` (numpy: jax.random compiles per shape, slow here)."""
    return tuple({k: jnp.asarray(0.3 * _normal(seed + i, shape))
                  for k, shape in layer.param_shapes(sin).items()}
                 for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)))


def _vjp(fn, *args):
    """(fn(*args), cotangent -> gradients), both jitted."""
    y = jax.jit(fn)(*args)
    return y, jax.jit(lambda ct: jax.vjp(fn, *args)[1](ct))


def _kernel(name):
    d = KERNELS / name
    meta = json.loads((d / "meta.json").read_text())
    return meta, {p.stem: np.load(p) for p in d.glob("*.npy")}


def _to_maps(a):
    """[feature][batch][spatial] -> (batch, 1, spatial, feature)."""
    return np.ascontiguousarray(np.transpose(a, (1, 2, 0))[:, None])


def _from_maps(m):
    return np.transpose(np.asarray(m)[:, 0], (2, 0, 1))


# ------------------------------------------------------------------------------------ GRN


@pytest.mark.parametrize("case", ["grn_res0", "grn_res1"])
def test_grn_kernels_match_cianna(case):
    meta, k = _kernel(case)
    n = meta["length"]  # real examples; the other batch slots are padding (output 0)
    layer = nn.grn(residual=meta["residual"], activation="LIN")
    params = {"gamma": jnp.asarray(k["gamma"]), "beta": jnp.asarray(k["beta"])}
    x = jnp.asarray(_to_maps(k["input"])[:n])
    delta = jnp.asarray(_to_maps(k["delta_o"])[:n])
    y, vjp = _vjp(lambda p, v: layer.apply(p, v, CIANNA), params, x)
    np.testing.assert_allclose(_from_maps(y), k["output"][:, :n], rtol=0, atol=2e-6)
    g_params, g_x = vjp(delta)
    np.testing.assert_allclose(_from_maps(g_x), k["prev_delta_o"][:, :n], rtol=0, atol=2e-6)
    np.testing.assert_allclose(np.concatenate([g_params["gamma"], g_params["beta"]]),
                               k["gamma_beta_grad"], rtol=0, atol=2e-6)
    assert not k["output"][:, n:].any() and not k["prev_delta_o"][:, n:].any()


def test_grn_exact_mode_is_autodiff_and_differs_from_cianna():
    """Defect 10: CIANNA's input gradient drops the cross-channel term; grads="exact" is
    the true derivative (finite differences), the parameter gradients agree."""
    _, k = _kernel("grn_res1")
    layer = nn.grn(residual=1)
    params = {"gamma": jnp.asarray(k["gamma"]), "beta": jnp.asarray(k["beta"])}
    x = jnp.asarray(_to_maps(k["input"])[:3], jnp.float32)
    delta = jnp.asarray(_to_maps(k["delta_o"])[:3])
    grads = {}
    for name, ctx in (("cianna", CIANNA), ("exact", EXACT)):
        _, vjp = _vjp(lambda p, v, c=ctx: layer.apply(p, v, c), params, x)
        grads[name] = vjp(delta)
    (pc, xc), (pe, xe) = grads["cianna"], grads["exact"]
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(pc[key], pe[key], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(xc - xe)).max() > 1e-3
    # finite differences of <delta, y> along a random direction
    x64 = np.asarray(x, np.float64)
    u = _normal(0, x.shape).astype(np.float64)

    def f(v):
        n = np.sqrt((v ** 2).sum(axis=(1, 2), keepdims=True) + 1e-6)
        y = k["gamma"] * v * n / (n.mean(-1, keepdims=True) + 1e-6) + k["beta"] + v
        return float((y * np.asarray(delta)).sum())

    eps = 1e-4
    fd = (f(x64 + eps * u) - f(x64 - eps * u)) / (2 * eps)
    assert float(jnp.sum(xe * u)) == pytest.approx(fd, rel=1e-3, abs=1e-3)
    assert abs(float(jnp.sum(xc * u)) - fd) > 1e-2


def test_grn_layer_rules_and_parameters():
    net = nn.network([5, 4], 2, [nn.conv([3, 3], 6, padding=[1, 1]),
                                 nn.grn(residual=0, gamma_init=0.5),
                                 nn.dense(3, activation="LIN")], bias=0.1)
    fresh, _ = net.layers[1].init(None, net.shapes[1][0])
    np.testing.assert_array_equal(fresh["gamma"], np.full(6, 0.5, np.float32))
    np.testing.assert_array_equal(fresh["beta"], np.zeros(6, np.float32))
    upd, dec = net.layers[1].update_masks(fresh)
    assert all(float(v) == 1 for v in upd.values()) and all(float(v) == 0 for v in dec.values())
    params = _params(net)
    x = _normal(1, (2, 4, 5, 2))
    h = apply_layers(net, params, x, (0, 1))
    want = grn_forward(h[0], params[1]["gamma"], params[1]["beta"], False)
    np.testing.assert_allclose(h[1], want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"layer 1 \(grn\): a GRN layer cannot be the first"):
        nn.network([5, 4], 2, [nn.grn(), nn.conv([3, 3], 2)])
    with pytest.raises(ValueError, match=r"layer 2 \(grn\): grn: a GRN layer reads a map"):
        nn.network([5, 4], 2, [nn.dense(4), nn.grn(), nn.dense(2)])
    with pytest.raises(ValueError, match="residual: expected 0 or 1"):
        nn.grn(residual=2)
    with pytest.raises(ValueError, match="SMAX is not allowed on a grn layer"):
        nn.grn(activation="SMAX")
    assert GRN(cj.activations.parse_activation("LIN")).kind == "grn"


# ---------------------------------------------------------------------------------- merge


def test_merge_kernels_match_cianna():
    z = np.load(KERNELS / "merge" / "merge.npz")
    batch, spatial = 2, 3  # a: 5 channels, cat_b: 3 channels, [channel][batch][spatial]

    def maps(a):
        return jnp.asarray(_to_maps(a.reshape(-1, batch, spatial)))

    def flat(m):
        return _from_maps(m).ravel()

    add, cat = nn.merge("ADD"), nn.merge("CONCAT")
    y, vjp = _vjp(lambda a, b: add.apply({}, (a, b), CIANNA), maps(z["a"]), maps(z["b"]))
    np.testing.assert_array_equal(flat(y), z["add_out"])
    da, db = vjp(maps(z["add_delta"]))
    np.testing.assert_array_equal(flat(da), z["add_da"])
    np.testing.assert_array_equal(flat(db), z["add_db"])
    y, vjp = _vjp(lambda a, b: cat.apply({}, (a, b), CIANNA), maps(z["a"]), maps(z["cat_b"]))
    np.testing.assert_array_equal(flat(y), z["cat_out"])
    da, db = vjp(maps(z["cat_delta"]))
    np.testing.assert_array_equal(flat(da), z["cat_da"])
    np.testing.assert_array_equal(flat(db), z["cat_db"])


def test_merge_sources_validates_ids_exactly():
    assert merge_sources(-1, -3, 3) == (2, 0)
    assert merge_sources(0, 2, 3) == (0, 2)
    assert merge_sources(-3, -3, 3) == (0, 0)
    # the original accepts -(index + 1) (defect 8): refused here, naming the layer
    with pytest.raises(ValueError, match=r"prev_layer_b: the merge \(layer 3\) reads an earlier "
                                         r"layer: ids -1..-3 .* or 0..2 .*received -4"):
        merge_sources(-1, -4, 3)
    with pytest.raises(ValueError, match="prev_layer_a: .*received 3"):
        merge_sources(3, -1, 3)
    with pytest.raises(ValueError, match="cannot be the first layer"):
        merge_sources(-1, -1, 0)
    with pytest.raises(TypeError, match="prev_layer_a: expected an int"):
        merge_sources(1.0, -1, 3)
    assert merge_sources(np.int64(-2), 1, 2) == (0, 1)


def _residual(merge_type="ADD", act="LIN"):
    layers = [nn.conv([3, 3], 4, padding=[1, 1], activation=act),
              nn.conv([3, 3], 4, padding=[1, 1], activation=act),
              nn.merge(merge_type), nn.dense(3, activation="LIN")]
    inputs = [(-1,), (0,), merge_sources(-1, -2, 2), (2,)]
    return cj.make_network((6, 5, 1, 2), layers, 0.1, inputs=inputs)


@pytest.mark.parametrize("merge_type", ["ADD", "CONCAT"])
def test_merge_in_a_network_sums_gradients_of_both_branches(merge_type):
    net = _residual(merge_type)
    assert net.shapes[2][1] == Shape(6, 5, 1, 8 if merge_type == "CONCAT" else 4)
    params = _params(net)
    x = _normal(1, (3, 5, 6, 2))
    a, b, m = apply_layers(net, params, x, (0, 1, 2))
    want = a + b if merge_type == "ADD" else np.concatenate([b, a], axis=-1)
    np.testing.assert_allclose(m, want, rtol=1e-6, atol=1e-6)

    def loss(p, grads):
        return jnp.sum(jnp.square(cj.apply(net, p, x, grads=grads)))

    ge, gc = jax.jit(lambda p: (jax.grad(loss)(p, "exact"), jax.grad(loss)(p, "cianna")))(params)
    for a_, b_ in zip(jax.tree_util.tree_leaves(ge), jax.tree_util.tree_leaves(gc)):
        np.testing.assert_allclose(a_, b_, rtol=1e-4, atol=1e-5)


def test_merge_layer_rules():
    conv = nn.conv([3, 3], 4, padding=[1, 1])
    with pytest.raises(ValueError, match=r"layer 3 \(merge\): merge ADD needs two inputs of the "
                                         r"same shape, received 6x5x1x3 and 6x5x1x4"):
        cj.make_network((6, 5, 1, 2), [conv, nn.conv([3, 3], 3, padding=[1, 1]),
                                       nn.merge(), nn.dense(2)], 0.1,
                        inputs=[(-1,), (0,), (1, 0), (2,)])
    with pytest.raises(ValueError, match="merge CONCAT needs two inputs of the same spatial"):
        cj.make_network((6, 5, 1, 2), [conv, nn.conv([3, 3], 4), nn.merge("CONCAT"),
                                       nn.dense(2)], 0.1, inputs=[(-1,), (0,), (1, 0), (2,)])
    with pytest.raises(ValueError, match="not dense outputs"):
        cj.make_network((6, 5, 1, 2), [nn.dense(4), nn.dense(4), nn.merge(), nn.dense(2)], 0.1,
                        inputs=[(-1,), (0,), (1, 0), (2,)])
    with pytest.raises(ValueError, match=r"layer 2 \(merge\): a merge reads two earlier layers, "
                                         "not the network input"):
        cj.make_network((6, 5, 1, 4), [conv, nn.merge(), nn.dense(2)], 0.1,
                        inputs=[(-1,), (0, -1), (1,)])
    with pytest.raises(ValueError, match=r"layer 2 \(merge\): a merge reads two earlier "
                                         r"layers, received 1 source"):
        cj.make_network((6, 5, 1, 2), [conv, nn.merge(), nn.dense(2)], 0.1)
    with pytest.raises(ValueError, match="merge_type: expected one of"):
        nn.merge("SUB")
    with pytest.raises(ValueError, match="YOLO is not allowed on a merge layer"):
        nn.merge(activation="YOLO")
    assert isinstance(nn.merge(), Merge) and Merge.nb_inputs == 2


# ----------------------------------------------------------------------------- grouped conv


def _group_slices(layer, w, c_in):
    """Each group as an ungrouped conv: (filters rows, input channel slice)."""
    g = layer.nb_groups
    fg, cg = layer.nb_filters // g, c_in // g
    return [(w[j * fg:(j + 1) * fg], slice(j * cg, (j + 1) * cg)) for j in range(g)]


@pytest.mark.parametrize("groups,c_in,n_f", [(2, 4, 6), (4, 4, 4), (3, 6, 3)])
def test_grouped_conv_is_one_conv_per_group(groups, c_in, n_f):
    layer = nn.conv([3, 3], n_f, stride=[2, 2], padding=[1, 1], activation="LIN", bias=0.3,
                    nb_groups=groups)
    net = nn.network([7, 6], c_in, [layer], bias=0.3)
    (p,) = _params(net)
    assert p["kernel"].shape == (1, 3, 3, c_in // groups, n_f)
    w = net.layers[0].to_rows(p)  # CIANNA's rows: one per filter, the group's channels
    assert w.shape == (n_f, 9 * c_in // groups + 1)
    x = _normal(1, (2, 6, 7, c_in))
    y = apply(net, (p,), x)
    parts = []
    for rows, sl in _group_slices(net.layers[0], w, c_in):
        sub = nn.network([7, 6], sl.stop - sl.start,
                         [nn.conv([3, 3], rows.shape[0], stride=[2, 2], padding=[1, 1],
                                  activation="LIN", bias=0.3)], bias=0.3)
        parts.append(apply(sub, cj.rows_to_params(sub, ({"w": rows},)), x[..., sl]))
    np.testing.assert_allclose(y, np.concatenate(parts, axis=-1), rtol=1e-5, atol=1e-5)


def test_grouped_conv_input_gradient_follows_cianna_per_group():
    """Non-divisible strided geometry: CIANNA's closed-form input gradient (which differs
    from the exact one there) is applied group by group."""
    groups, c_in, n_f = 2, 4, 4
    x, k = _normal(0, (2, 8, 8, c_in)), _normal(1, (3, 3, c_in // groups, n_f))
    g = _normal(2, (2, 4, 4, n_f))
    geo = ((2, 2), (1, 1), (1, 1))

    @jax.jit
    def grads(x, k, g):
        gx = jax.vjp(lambda v: conv_nd(v, k, *geo, groups=groups), x)[1](g)[0]
        per_group = [jax.vjp(lambda v, j=j: conv_nd(v, k[..., 2 * j:2 * j + 2], *geo),
                             x[..., 2 * j:2 * j + 2])[1](g[..., 2 * j:2 * j + 2])[0]
                     for j in range(groups)]
        exact = jax.vjp(lambda v: _forward(v, k, *geo, groups=groups), x)[1](g)[0]
        return gx, jnp.concatenate(per_group, axis=-1), exact

    gx, per_group, exact = grads(x, k, g)
    np.testing.assert_allclose(gx, per_group, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(gx - exact)).max() > 1e-3


def test_grouped_conv_validation():
    with pytest.raises(ValueError, match=r"nb_groups: must divide nb_filters \(6\)"):
        nn.conv([3, 3], 6, nb_groups=4)
    with pytest.raises(ValueError, match=r"layer 1 \(conv\): nb_groups: must divide the input "
                                         r"channels \(3\)"):
        nn.network([5, 5], 3, [nn.conv([3, 3], 4, nb_groups=2)])
    with pytest.raises(ValueError, match="nb_groups: expected an int >= 1"):
        nn.conv([3, 3], 4, nb_groups=0)
    assert nn.conv([3, 3], 4) == nn.conv([3, 3], 4, nb_groups=1)


# ------------------------------------------------------------------------- per-channel norm


def test_per_channel_norm_forward_and_options():
    layer = nn.norm(group_size=2, gamma_init=0.0, per_channel=True)
    assert layer.eps == 1e-6 and nn.norm().eps == 1e-3
    net = nn.network([4, 3], 4, [nn.conv([3, 3], 4, padding=[1, 1]), layer, nn.dense(2)])
    fresh, _ = layer.init(None, net.shapes[1][0])
    assert fresh["gamma"].shape == (4,) and not np.asarray(fresh["gamma"]).any()
    p = {"gamma": jnp.asarray([0.5, 1.5, -1.0, 2.0]), "beta": jnp.asarray([0.1, 0.2, 0.3, 0.4])}
    x = _normal(1, (2, 3, 4, 4)).astype(np.float64)
    y = jax.jit(lambda p, v: layer.apply(p, v, CIANNA))(p, jnp.asarray(x, jnp.float32))
    xg = x.reshape(2, 3, 4, 2, 2)
    mean = xg.mean(axis=(1, 2, 4), keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
    want = ((xg - mean) / np.sqrt(var + 1e-6)).reshape(x.shape) * np.asarray(p["gamma"]) \
        + np.asarray(p["beta"])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="per-channel .* norm has no set_off"):
        nn.norm(set_off=1, per_channel=True)
    # V-1.0's norm is unchanged: per-group parameters, gamma 1
    old = nn.network([4, 3], 4, [nn.conv([3, 3], 4, padding=[1, 1]), nn.norm(group_size=2),
                                 nn.dense(2)])
    op, _ = old.layers[1].init(None, old.shapes[1][0])
    np.testing.assert_array_equal(op["gamma"], np.ones(2, np.float32))


def test_own_bias_is_the_first_layer_bias_of_v11_networks():
    """V-1.1 has no input bias: the first layer keeps its keyword or activation default."""
    assert nn.own_bias(nn.conv([3, 3], 4)) == pytest.approx(0.1)
    assert nn.own_bias(nn.conv([3, 3], 4, activation="LIN")) == 0.5
    assert nn.own_bias(nn.dense(3, bias=0.3)) == 0.3
    layer = nn.conv([3, 3], 4, activation="LOGI")
    net = nn.network([5, 5], 1, [layer], bias=nn.own_bias(layer))
    assert net.layers[0].bias == -1.0
