"""NumPy references and helpers shared by the layer tests (test_layers, test_conv_layer,
test_pool_layer, test_norm_layers).

References follow /work/shared/spec/cianna_layers.md sections 1-8, 13 and 14
(including CIANNA's deliberate defects B5, B6 and B7).  Geometry tuples are in
CIANNA (W, H, D) order; the package's internal map layout is (B, *spatial, C)
with spatial (D, H, W) trimmed to ``nd`` axes.  NumPy references work on
(B, C, D, H, W) arrays in float64.
"""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import cianna_jax as cj
from cianna_jax import nn
from cianna_jax.layers import Ctx

RTOL = 1e-5
ATOL = 2e-5


# ----------------------------------------------------------------------------- helpers

@partial(jax.jit, static_argnums=0)
def apply_jit(net, params, rows):
    """cj.apply on CIANNA input rows, returning CIANNA output rows (the layout of the
    NumPy references): ``rows_to_images`` in, ``output_rows`` out.  Under jit (the
    Network is static and hashable): one compilation per network instead of one per
    eager primitive keeps the file fast."""
    return cj.output_rows(net, cj.apply(net, params, cj.rows_to_images(net, rows)))


def loss_and_grads(net, params, x, t, key):
    """(loss, displayed loss, gradients of the params and the input, training output,
    inference output) of images ``x`` against rows ``t``, one jit."""
    from cianna_jax import training

    def run(p, xx):
        def loss(pp, xv):
            return training.batch_loss(pp, net, xv, t, x.shape[0] - 1, key)

        (value, shown), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(p, xx)
        return value, shown, grads, cj.apply(net, p, xx, train=True, key=key), \
            cj.apply(net, p, xx)

    return jax.jit(run)(params, x)


def compare_unfused(net, monkeypatch, rule: str, pairs, *, x=None, batch=3, seed=0,
                    **tol):
    """:func:`loss_and_grads` of ``net`` as it runs and with the fusion rule
    ``cianna_jax.network.<rule>`` refusing every pair (``pairs()`` then empty); asserts
    both agree to ``tol`` and returns the first."""
    import cianna_jax.network as network

    params = cj.init_params(jax.random.key(seed), net)
    if x is None:
        x = jax.random.normal(jax.random.key(seed + 1), (batch, net.input_dim))
    t = jax.random.uniform(jax.random.key(seed + 2), (x.shape[0], net.out_dim))
    x = cj.rows_to_images(net, x)  # CIANNA rows -> the core's channel-last images
    key = jax.random.key(seed + 3)
    got = loss_and_grads(net, params, x, t, key)
    with monkeypatch.context() as m:
        m.setattr(network, rule, lambda *a: False)
        assert pairs() == frozenset()
        # the jitted functions inside (training.batch_loss) keep their traces per network:
        # without this the "unfused" run would reuse the fused trace and compare it with
        # itself
        jax.clear_caches()
        want = loss_and_grads(net, params, x, t, key)
    jax.clear_caches()  # no unfused trace left for the tests after this one
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **tol)
    return got


def ctrunc(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def conv_n(s, f, st, p, ip):
    return ctrunc(s + (s - 1) * ip + 2 * p - f, st) + 1


def pool_n(s, P, st, p):
    return ctrunc(s + 2 * p - P, st) + 1


def rev(t):
    """(W, H, D) -> (D, H, W)."""
    return tuple(reversed(tuple(t)))


def rows_to_5d(rows, c, d, h, w):
    """CIANNA flat rows (B, C*D*H*W) -> (B, C, D, H, W)."""
    return np.asarray(rows, np.float64).reshape(-1, c, d, h, w)


def to_internal(x5, nd):
    """(B, C, D, H, W) -> internal (B, [D,] H, W, C)."""
    x = np.moveaxis(np.asarray(x5), 1, -1)
    if nd == 2:
        assert x.shape[1] == 1
        x = x[:, 0]
    return jnp.asarray(x, jnp.float32)


def from_internal(y, nd):
    """internal (B, [D,] H, W, C) -> (B, C, D, H, W) float64."""
    y = np.asarray(y, np.float64)
    if nd == 2:
        y = y[:, None]
    return np.moveaxis(y, -1, 1)


def np_conv(x, wm, f, s, p, ip, bias):
    """Direct cross-correlation of the dilated + zero-padded input.

    x (B, C, D, H, W); wm (F, K*C + 1) in CIANNA order; geometry in (W, H, D).
    """
    x = np.asarray(x, np.float64)
    wm = np.asarray(wm, np.float64)
    b, c = x.shape[:2]
    S = x.shape[2:]
    fD, sD, pD, ipD = rev(f), rev(s), rev(p), rev(ip)
    dil = [n + (n - 1) * i for n, i in zip(S, ipD)]
    xd = np.zeros((b, c, *dil))
    xd[:, :, :: 1 + ipD[0], :: 1 + ipD[1], :: 1 + ipD[2]] = x
    xp = np.pad(xd, [(0, 0), (0, 0)] + [(q, q) for q in pD])
    N = [conv_n(n, ff, st, q, i) for n, ff, st, q, i in zip(S, fD, sD, pD, ipD)]
    F = wm.shape[0]
    k = wm[:, :-1].reshape(F, c, *fD)
    out = np.zeros((b, F, *N))
    for kd, kh, kw in itertools.product(*[range(v) for v in fD]):
        patch = xp[:, :,
                   kd: kd + (N[0] - 1) * sD[0] + 1: sD[0],
                   kh: kh + (N[1] - 1) * sD[1] + 1: sD[1],
                   kw: kw + (N[2] - 1) * sD[2] + 1: sD[2]]
        out += np.einsum("fc,bcxyz->bfxyz", k[:, :, kd, kh, kw], patch)
    return out + bias * wm[:, -1][None, :, None, None, None]


def axis_map(S, N, f, s, p, ip):
    """CIANNA's closed-form backward (section 4.3) along one axis: A[w, x, k] = 1
    when x*s + k = w*(1+ip) + p_eff and w <= trunc(((N-1)*s + f - 1 - 2*p_eff)/(1+ip))."""
    pe = min(p, f - 1)
    lim = ctrunc((N - 1) * s + f - 1 - 2 * pe, 1 + ip)
    A = np.zeros((S, N, f))
    for w in range(S):
        if w > lim:
            continue
        for x in range(N):
            k = w * (1 + ip) + pe - x * s
            if 0 <= k < f:
                A[w, x, k] = 1.0
    return A


def np_conv_input_grad_cianna(g, wm, c, S, f, s, p, ip):
    """g (B, F, Nd, Nh, Nw) -> CIANNA's delta_in (B, C, D, H, W); S in (D, H, W)."""
    g = np.asarray(g, np.float64)
    wm = np.asarray(wm, np.float64)
    F = wm.shape[0]
    fD, sD, pD, ipD = rev(f), rev(s), rev(p), rev(ip)
    k = wm[:, :-1].reshape(F, c, *fD)
    N = g.shape[2:]
    A = [axis_map(S[a], N[a], fD[a], sD[a], pD[a], ipD[a]) for a in range(3)]
    return np.einsum("fcijk,bfxyz,uxi,vyj,wzk->bcuvw", k, g, A[0], A[1], A[2])


def exact_conv_grads(x5, wm, g5, f, s, p, ip, bias):
    """Autodiff of a plain lax.conv_general_dilated forward (NCDHW / OIDHW)."""
    c = x5.shape[1]
    F = wm.shape[0]
    fD, sD, pD, ipD = rev(f), rev(s), rev(p), rev(ip)
    xj = jnp.asarray(x5, jnp.float32)
    kj = jnp.asarray(np.asarray(wm)[:, :-1].reshape(F, c, *fD), jnp.float32)

    def fwd(xx, kk):
        return lax.conv_general_dilated(
            xx, kk, window_strides=sD, padding=[(q, q) for q in pD],
            lhs_dilation=tuple(1 + i for i in ipD),
            dimension_numbers=("NCDHW", "OIDHW", "NCDHW"),
            precision=lax.Precision.HIGHEST)

    @jax.jit
    def run(xx, kk, gg):
        y, vjp = jax.vjp(fwd, xx, kk)
        return (y,) + vjp(gg)

    y, dx, dk = run(xj, kj, jnp.asarray(g5, jnp.float32))
    assert y.shape == g5.shape
    dw = np.concatenate(
        [np.asarray(dk, np.float64).reshape(F, -1),
         bias * np.asarray(g5, np.float64).sum(axis=(0, 2, 3, 4))[:, None]], axis=1)
    return np.asarray(dx, np.float64), dw


def conv_layer_vjp(layer, wm, x5, g5, nd):
    """Package conv layer (LIN) forward + vjp in internal layout; returns
    (y5, dx5, dw) in (B, C, D, H, W) / CIANNA weight layout."""
    xi = to_internal(x5, nd)
    w = jnp.asarray(wm, jnp.float32)
    gi = to_internal(g5, nd)

    @jax.jit  # one compilation per geometry instead of many eager op compilations
    def run(xx, ww, gg):
        y, vjp = jax.vjp(lambda a, b: layer.apply(layer.from_rows(b), a, Ctx(nd=nd)),
                        xx, ww)
        return (y,) + vjp(gg)

    y, dx, dw = run(xi, w, gi)
    assert y.shape == gi.shape
    return from_internal(y, nd), from_internal(dx, nd), np.asarray(dw, np.float64)


def build_conv(in_whd, c, f, s, p, ip, F=2, bias=0.1):
    net = nn.network(list(in_whd), c, [nn.conv(list(f), F, stride=list(s), padding=list(p),
                                               int_padding=list(ip), activation="LIN")],
                     bias=bias)
    return net



def np_pool(x5, P, s, p, p_type, g5=None):
    """Pool forward (and backward when g5 is given); geometry (W, H, D).

    MAX keeps the first maximum in (d, h, w) scan order with strict '>'; an all-padding
    window gives 0.  AVG divides by the number of real cells forward and by the full
    window volume backward (B7)."""
    x5 = np.asarray(x5, np.float64)
    B, C = x5.shape[:2]
    S = x5.shape[2:]
    PD, sD, pD = rev(P), rev(s), rev(p)
    N = [pool_n(n, q, st, pp) for n, q, st, pp in zip(S, PD, sD, pD)]
    y = np.zeros((B, C, *N))
    dx = np.zeros_like(x5)
    vol = PD[0] * PD[1] * PD[2]
    for b, c in itertools.product(range(B), range(C)):
        for o in itertools.product(*[range(n) for n in N]):
            cells = []
            for q in itertools.product(*[range(v) for v in PD]):
                i = tuple(o[a] * sD[a] - pD[a] + q[a] for a in range(3))
                if all(0 <= i[a] < S[a] for a in range(3)):
                    cells.append(i)
            if p_type == "MAX":
                best, arg = None, None
                for i in cells:
                    v = x5[(b, c) + i]
                    if best is None or v > best:
                        best, arg = v, i
                y[(b, c) + o] = 0.0 if best is None else best
                if g5 is not None and arg is not None:
                    dx[(b, c) + arg] += g5[(b, c) + o]
            else:
                vals = [x5[(b, c) + i] for i in cells]
                y[(b, c) + o] = np.sum(vals) / len(vals) if vals else np.nan
                if g5 is not None:
                    for i in cells:
                        dx[(b, c) + i] += g5[(b, c) + o] / vol
    return y, dx


def np_relu(z, sat, leak):
    return np.where(z <= 0, leak * z, np.where(z <= sat, z, sat + leak * (z - sat)))
