"""The YOLO output activation (cianna_yolo.md sections 3 and 4.11).

Works on raw conv outputs in the core's channel-last YOLO layout
``(N, [G2,] G1, G0, B, K)`` with ``K = 8 + nb_class + nb_param`` values per box (see
:mod:`cianna_jax.yolo.layout`).  The forward pass clips as CIANNA does (the sigmoid
parts clip the *negated* scaled input, so "max" bounds the low end).  With
``grads="cianna"`` the backward pass is CIANNA's straight-through derivative evaluated
at the clipped output: ``a*o*(1-o)`` for sigmoid parts, ``a`` for linear parts, 0 for
forced channels, the softmax Jacobian for softmax classes; with ``grads="exact"`` it
is plain autodiff of the forward pass (zero in the clipped regions).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .config import YoloConfig

__all__ = ["activation", "channel_kinds", "check_output", "GRADS"]

GRADS = ("cianna", "exact")
"""Gradient choices of :func:`activation` and :func:`cianna_jax.yolo.yolo_loss`."""

# channel kinds
_SIG, _LIN, _HALF, _ZERO, _SOFT = 0, 1, 2, 3, 4


def channel_kinds(cfg: YoloConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of one box: (kind code, part index) as numpy int arrays of length K."""
    C, P = cfg.nb_class, cfg.nb_param
    kinds, parts = [], []
    for d in range(3):
        kinds.append(_SIG if d < cfg.fit_dim else _HALF)
        parts.append(0)
    for d in range(3):
        kinds.append(_LIN if d < cfg.fit_dim else _ZERO)
        parts.append(1)
    kinds += [_SIG, _SIG]
    parts += [2, 3]
    kinds += [_SOFT if cfg.class_softmax else _SIG] * C
    parts += [4] * C
    kinds += [_LIN] * P
    parts += [5] * P
    return np.array(kinds, dtype=np.int32), np.array(parts, dtype=np.int32)


def check_output(x, cfg: YoloConfig, name: str = "output") -> None:
    """Raise ValueError unless ``x`` is ``(N, G1, G0, B, K)`` (only when ``G2 == 1``) or
    ``(N, G2, G1, G0, B, K)`` for ``cfg``."""
    G0, G1, G2 = cfg.grid
    tail = (cfg.nb_box, cfg.channels_per_box)
    ok = ((x.ndim == 6 and tuple(x.shape[1:]) == (G2, G1, G0) + tail)
          or (x.ndim == 5 and G2 == 1 and tuple(x.shape[1:]) == (G1, G0) + tail))
    if not ok:
        want = f"(N, {G2}, {G1}, {G0}, {tail[0]}, {tail[1]})"
        if G2 == 1:
            want += f" or (N, {G1}, {G0}, {tail[0]}, {tail[1]})"
        raise ValueError(f"{name}: expected the channel-last YOLO layout (N, [G2,] G1, G0, "
                         f"B, K) = {want}, received shape {tuple(x.shape)}")


def _per_channel(cfg: YoloConfig, dtype):
    """Per-channel constants, broadcastable against ``(..., B, K)``."""
    kinds, parts = channel_kinds(cfg)
    sm = np.asarray(cfg.slopes_and_maxes, dtype=np.float32)
    slope, hi, lo = sm[parts, 0], sm[parts, 1], sm[parts, 2]

    def as_arr(v):
        return jnp.asarray(v, dtype=dtype)

    return jnp.asarray(kinds), as_arr(slope), as_arr(hi), as_arr(lo)


def _forward(cfg: YoloConfig, x: jax.Array) -> jax.Array:
    k, slope, hi, lo = _per_channel(cfg, x.dtype)
    # sigmoid parts: u = -a*x clipped to [lo, hi], o = 1/(1+e^u)
    u = jnp.clip(-slope * x, lo, hi)
    sig = 1.0 / (1.0 + jnp.exp(u))
    lin = jnp.clip(slope * x, lo, hi)
    out = jnp.where(k == _SIG, sig, lin)
    out = jnp.where(k == _HALF, jnp.asarray(0.5, x.dtype), out)
    out = jnp.where(k == _ZERO, jnp.asarray(0.0, x.dtype), out)
    if cfg.class_softmax and cfg.nb_class > 0:
        c0 = 8
        z = x[..., c0:c0 + cfg.nb_class]
        z = z - jnp.max(z, axis=-1, keepdims=True)
        e = jnp.exp(z)
        sm = e / jnp.sum(e, axis=-1, keepdims=True)
        out = out.at[..., c0:c0 + cfg.nb_class].set(sm)
    return out


def _backward(cfg: YoloConfig, o: jax.Array, g: jax.Array) -> jax.Array:
    k, slope, _, _ = _per_channel(cfg, o.dtype)
    dx = jnp.where(k == _SIG, g * slope * o * (1.0 - o), g * slope)
    dx = jnp.where((k == _HALF) | (k == _ZERO), jnp.zeros_like(dx), dx)
    if cfg.class_softmax and cfg.nb_class > 0:
        c0 = 8
        oc = o[..., c0:c0 + cfg.nb_class]
        gc = g[..., c0:c0 + cfg.nb_class]
        dsm = oc * (gc - jnp.sum(gc * oc, axis=-1, keepdims=True))
        dx = dx.at[..., c0:c0 + cfg.nb_class].set(dsm)
    return dx


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _activation(raw: jax.Array, cfg: YoloConfig) -> jax.Array:
    return _forward(cfg, raw)


def _act_fwd(raw, cfg):
    out = _forward(cfg, raw)
    return out, out


def _act_bwd(cfg, out, g):
    return (_backward(cfg, out, g),)


_activation.defvjp(_act_fwd, _act_bwd)
_activation_jit = jax.jit(_activation, static_argnums=(1,))
_exact_jit = jax.jit(lambda raw, cfg: _forward(cfg, raw), static_argnums=(1,))


def activation(raw: jax.Array, cfg: YoloConfig, *, grads: str = "cianna") -> jax.Array:
    """Activated YOLO output ``o`` from the raw conv output, both ``(N, [G2,] G1, G0, B, K)``.

    ``grads="cianna"`` (default): differentiable with CIANNA's straight-through derivative
    (no zero gradient in the clipped region); ``"exact"``: plain autodiff of the forward
    pass (same values).
    """
    raw = jnp.asarray(raw)
    check_output(raw, cfg, "raw")
    if grads not in GRADS:
        raise ValueError(f"grads must be one of {GRADS}, received {grads!r}")
    return (_activation_jit if grads == "cianna" else _exact_jit)(raw, cfg)
