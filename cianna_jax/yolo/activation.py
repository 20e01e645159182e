"""The YOLO output activation (cianna_yolo.md sections 3 and 4.11).

Works on raw conv outputs ``[N, F, G2, G1, G0]`` with ``F = B*(8+C+P)``.  The forward
pass clips as CIANNA does (the sigmoid parts clip the *negated* scaled input, so
"max" bounds the low end); the backward pass is CIANNA's straight-through derivative
evaluated at the clipped output: ``a*o*(1-o)`` for sigmoid parts, ``a`` for linear
parts, 0 for forced channels, the softmax Jacobian for softmax classes.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .config import YoloConfig

__all__ = ["activation", "channel_kinds", "split_boxes", "merge_boxes"]

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


def split_boxes(x: jax.Array, cfg: YoloConfig) -> jax.Array:
    """``[N, F, G2, G1, G0]`` -> ``[N, B, K, G2, G1, G0]``."""
    N = x.shape[0]
    return x.reshape((N, cfg.nb_box, cfg.channels_per_box) + tuple(x.shape[2:]))


def merge_boxes(x: jax.Array) -> jax.Array:
    """``[N, B, K, G2, G1, G0]`` -> ``[N, F, G2, G1, G0]``."""
    return x.reshape((x.shape[0], x.shape[1] * x.shape[2]) + tuple(x.shape[3:]))


def _per_channel(cfg: YoloConfig, dtype):
    """Per-channel constants broadcastable against ``[N, B, K, G2, G1, G0]``."""
    kinds, parts = channel_kinds(cfg)
    sm = np.asarray(cfg.slopes_and_maxes, dtype=np.float32)
    slope, hi, lo = sm[parts, 0], sm[parts, 1], sm[parts, 2]
    shape = (1, 1, len(kinds), 1, 1, 1)

    def as_arr(v):
        return jnp.asarray(v.reshape(shape), dtype=dtype)

    return kinds, as_arr(slope), as_arr(hi), as_arr(lo)


def _forward(cfg: YoloConfig, raw: jax.Array) -> jax.Array:
    x = split_boxes(raw, cfg)
    kinds, slope, hi, lo = _per_channel(cfg, x.dtype)
    kshape = (1, 1, len(kinds), 1, 1, 1)
    k = jnp.asarray(kinds.reshape(kshape))
    # sigmoid parts: u = -a*x clipped to [lo, hi], o = 1/(1+e^u)
    u = jnp.clip(-slope * x, lo, hi)
    sig = 1.0 / (1.0 + jnp.exp(u))
    lin = jnp.clip(slope * x, lo, hi)
    out = jnp.where(k == _SIG, sig, lin)
    out = jnp.where(k == _HALF, jnp.asarray(0.5, x.dtype), out)
    out = jnp.where(k == _ZERO, jnp.asarray(0.0, x.dtype), out)
    if cfg.class_softmax and cfg.nb_class > 0:
        c0 = 8
        z = x[:, :, c0:c0 + cfg.nb_class]
        z = z - jnp.max(z, axis=2, keepdims=True)
        e = jnp.exp(z)
        sm = e / jnp.sum(e, axis=2, keepdims=True)
        out = out.at[:, :, c0:c0 + cfg.nb_class].set(sm)
    return merge_boxes(out)


def _backward(cfg: YoloConfig, out: jax.Array, g: jax.Array) -> jax.Array:
    o = split_boxes(out, cfg)
    gb = split_boxes(g, cfg)
    kinds, slope, _, _ = _per_channel(cfg, o.dtype)
    k = jnp.asarray(kinds.reshape((1, 1, len(kinds), 1, 1, 1)))
    dx = jnp.where(k == _SIG, gb * slope * o * (1.0 - o), gb * slope)
    dx = jnp.where((k == _HALF) | (k == _ZERO), jnp.zeros_like(dx), dx)
    if cfg.class_softmax and cfg.nb_class > 0:
        c0 = 8
        oc = o[:, :, c0:c0 + cfg.nb_class]
        gc = gb[:, :, c0:c0 + cfg.nb_class]
        dsm = oc * (gc - jnp.sum(gc * oc, axis=2, keepdims=True))
        dx = dx.at[:, :, c0:c0 + cfg.nb_class].set(dsm)
    return merge_boxes(dx)


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


def _check_shape(raw, cfg: YoloConfig) -> None:
    want = cfg.output_shape
    if raw.ndim != 5 or tuple(raw.shape[1:]) != want:
        raise ValueError(f"YOLO output must have shape [N, {', '.join(map(str, want))}] "
                         f"([N, F, G2, G1, G0]), received {tuple(raw.shape)}")


def activation(raw: jax.Array, cfg: YoloConfig) -> jax.Array:
    """Activated YOLO output ``o`` from the raw conv output, both ``[N, F, G2, G1, G0]``.

    Differentiable with CIANNA's straight-through derivative (no zero gradient in the
    clipped region).
    """
    raw = jnp.asarray(raw)
    _check_shape(raw, cfg)
    return _activation_jit(raw, cfg)
