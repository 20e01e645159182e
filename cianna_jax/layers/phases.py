"""The space-to-depth ("phase") form of a stride-1 convolution read by blocks.

A stride-1 conv whose output is read in ``s``-blocks that tile it (a max pool of size
and stride ``s``, :mod:`.fused`; a convolution whose filters are its strides,
:mod:`.fused_tiles`) equals one convolution on the space-to-depth input: the padded
input cut into ``s``-blocks stacked on the channels, and a kernel of ``q`` blocks that
produces the ``prod(s)`` cells ("phases") of every block at once.  With few inputs per
output it runs as the input's gathered windows times one matrix.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["IM2COL_MAX_K", "phase_kernel", "windows", "uses_windows", "window_order",
           "phase_order"]


def phase_kernel(k, s, q):
    """(*f, C, F) kernel -> (*q, prod(s)*C, prod(s)*F): one block of filters per phase."""
    nd = len(s)
    c, f = k.shape[-2], k.shape[-1]
    blocks = []
    for d in itertools.product(*[range(v) for v in s]):
        cfg = [(o, qq * v - o - kk) for o, qq, v, kk in zip(d, q, s, k.shape[:nd])]
        kp = jnp.pad(k, cfg + [(0, 0), (0, 0)])
        split = tuple(v for qq, ss in zip(q, s) for v in (qq, ss)) + (c, f)
        perm = tuple(2 * a for a in range(nd)) + tuple(1 + 2 * a for a in range(nd)) + \
            (2 * nd, 2 * nd + 1)
        blocks.append(jnp.transpose(kp.reshape(split), perm).reshape(q + (-1, f)))
    return jnp.concatenate(blocks, axis=-1)


#: below this many inputs per output (kernel cells x channels), the forward conv runs
#: as gathered windows + one matmul, which XLA's CPU conv does about 2x slower
IM2COL_MAX_K = 64


def windows(xp, q, s):
    """The im2col rows of the phase form, read from the padded input ``xp (B, *L, C)``
    with ``L = s * (out + q - 1)``: ``(B, *out, *(q*s), C)``, the window offset ``a*s + p``
    (kernel block ``a``, phase ``p``) on each axis.  Built one axis at a time by ``q``
    slices of the ``s``-blocks concatenated along the window axis: 1.2-1.27x faster than
    the 9 slices of the space-to-depth input MNIST's first layer took before (4-value
    chunks; benchmarks/README.md)."""
    nd = len(s)
    out = [n // ss - qq + 1 for n, ss, qq in zip(xp.shape[1:-1], s, q)]
    y = xp
    for ax in range(nd):
        pos = 1 + 2 * ax
        y = y.reshape(y.shape[:pos] + (y.shape[pos] // s[ax], s[ax]) + y.shape[pos + 1:])
        y = jnp.concatenate([lax.slice_in_dim(y, a, a + out[ax], axis=pos)
                             for a in range(q[ax])], axis=pos + 1)
    perm = (0,) + tuple(1 + 2 * a for a in range(nd)) + tuple(2 + 2 * a for a in range(nd)) + \
        (2 * nd + 1,)
    return jnp.transpose(y, perm)


def uses_windows(k2) -> bool:
    """Whether the phase form runs as gathered windows times one matrix (few inputs per
    output, :data:`IM2COL_MAX_K`)."""
    return int(np.prod(k2.shape[:-1])) <= IM2COL_MAX_K


def window_order(k2, s):
    """``k2 (*q, prod(s)*C, F)``, rows ordered (a..., p..., C) -> ``(*(q*s), C, F)``,
    the windows' order (a_1 p_1, a_2 p_2, ..., C)."""
    nd = len(s)
    q, c, f = k2.shape[:nd], k2.shape[-2] // int(np.prod(s)), k2.shape[-1]
    perm = tuple(v for a in range(nd) for v in (a, nd + a)) + (2 * nd, 2 * nd + 1)
    return jnp.transpose(k2.reshape(tuple(q) + tuple(s) + (c, f)), perm).reshape(
        tuple(qq * ss for qq, ss in zip(q, s)) + (c, f))


def phase_order(kw, s):
    """Inverse of :func:`window_order`."""
    nd = len(s)
    qs, c, f = kw.shape[:nd], kw.shape[-2], kw.shape[-1]
    q = tuple(v // ss for v, ss in zip(qs, s))
    split = tuple(v for qq, ss in zip(q, s) for v in (qq, ss)) + (c, f)
    perm = tuple(2 * a for a in range(nd)) + tuple(1 + 2 * a for a in range(nd)) + \
        (2 * nd, 2 * nd + 1)
    return jnp.transpose(kw.reshape(split), perm).reshape(q + (-1, f))
