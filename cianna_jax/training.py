"""Training: CIANNA's update rule as an optax transformation, loss and jitted steps.

CIANNA's rule (cianna_layers.md section 11, cianna_api.md 8.5), per weight array::

    V <- momentum * V + lr * G / B + lr * wd * W      (decay inside the momentum buffer)
    W <- W - V

with ``G`` the gradient of the *summed* loss over the real rows of the batch and
``B`` the allocated batch size (also for a partial last batch).  The dense pivot
``w[-1, -1]`` is neither decayed nor updated; group-norm parameters are not decayed.
The loss returned by :func:`batch_loss` is already divided by ``B``, so its gradient
is ``G / B`` and any optax optimizer can replace :func:`cianna_sgd`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import parallel
from .layers import Dense, Norm
from .layers.common import Ctx
from .layers.dense import dense_activation
from .losses import elementwise_loss, output_activation, output_loss
from .network import Network, Params, forward_internal, to_rows, yolo_grid_shape, yolo_rows
from .precision import FP32, Policy

__all__ = [
    "CiannaSGDState",
    "cianna_sgd",
    "make_optimizer",
    "set_learning_rate",
    "learning_rate_at",
    "batch_loss",
    "train_step",
    "eval_step",
    "pad_batch",
    "iterate_batches",
    "train_epoch",
]


class CiannaSGDState(NamedTuple):
    """Momentum buffers ``V`` (one per parameter array, zero at start)."""

    trace: Any


def _masks(spec: Network | None, params, frozen: tuple[int, ...]):
    """(update mask, decay mask) pytrees for ``params`` of ``spec``."""
    if spec is None:
        ones = jax.tree_util.tree_map(lambda p: jnp.ones((), p.dtype), params)
        return ones, ones
    upd, dec = [], []
    for i, (layer, p) in enumerate(zip(spec.layers, params)):
        u, d = {}, {}
        for name, arr in p.items():
            if isinstance(layer, Dense):
                m = jnp.ones(arr.shape, arr.dtype).at[-1, -1].set(0.0)
                u[name], d[name] = m, m
            else:
                u[name] = jnp.ones((), arr.dtype)
                d[name] = jnp.zeros((), arr.dtype) if isinstance(layer, Norm) else u[name]
            if i in frozen:
                u[name] = jnp.zeros((), arr.dtype)
        upd.append(u)
        dec.append(d)
    return tuple(upd), tuple(dec)


def cianna_sgd(learning_rate: float, momentum: float = 0.0, weight_decay: float = 0.0,
               spec: Network | None = None,
               frozen: tuple[int, ...] = ()) -> optax.GradientTransformation:
    """CIANNA's momentum SGD with weight decay inside the momentum buffer.

    ``spec`` (the network) enables the CIANNA masks: dense pivots are neither
    decayed nor updated, norm parameters are not decayed, layers listed in
    ``frozen`` are not updated.  Without ``spec`` every array is decayed and updated.
    Expects gradients of the batch-mean loss (``G / B``).
    """

    def init_fn(params):
        return CiannaSGDState(jax.tree_util.tree_map(jnp.zeros_like, params))

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("cianna_sgd needs params (weight decay and masks)")
        upd_mask, dec_mask = _masks(spec, params, frozen)
        trace = jax.tree_util.tree_map(
            lambda v, g, p, dm: momentum * v + learning_rate * g
            + learning_rate * weight_decay * dm * p,
            state.trace, grads, params, dec_mask)
        updates = jax.tree_util.tree_map(lambda v, um: -v * um, trace, upd_mask)
        return updates, CiannaSGDState(trace)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(spec: Network, learning_rate: float = 0.0, momentum: float = 0.0,
                   weight_decay: float = 0.0, frozen: tuple[int, ...] = ()):
    """:func:`cianna_sgd` with injectable hyper-parameters.

    Learning rate, momentum and weight decay live in the optimizer state
    (``opt_state.hyperparams``), so changing them between epochs (CIANNA's decay
    schedule, a new ``train`` call) does not recompile the jitted step.
    """
    factory = optax.inject_hyperparams(cianna_sgd, static_args=("spec", "frozen"))
    return factory(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                   spec=spec, frozen=tuple(frozen))


def set_learning_rate(opt_state, learning_rate: float, **others: float):
    """Return ``opt_state`` with new injected hyper-parameters (learning_rate, momentum...)."""
    hp = dict(opt_state.hyperparams)
    for name, value in dict(learning_rate=learning_rate, **others).items():
        if name not in hp:
            raise KeyError(f"optimizer has no hyper-parameter {name!r}; it has {sorted(hp)}")
        hp[name] = jnp.asarray(value, dtype=jnp.asarray(hp[name]).dtype)
    return opt_state._replace(hyperparams=hp)


def learning_rate_at(iteration: int, learning_rate: float, end_learning_rate: float = 0.0,
                     lr_decay: float = 0.0) -> float:
    """CIANNA's per-epoch rate ``end + (lr0 - end) * exp(-lr_decay * iteration)``.

    ``iteration`` is the global count of completed epochs before this one.
    """
    return end_learning_rate + (learning_rate - end_learning_rate) * math.exp(-lr_decay * iteration)


def batch_loss(params: Params, spec: Network, x: jax.Array, t: jax.Array, n_valid,
               key: jax.Array | None, *, train: bool = True, loss_scale: float = 1.0,
               policy: Policy = FP32, nb_im_iter=0):
    """(loss for gradients, summed displayed loss) of one padded batch.

    ``x (B, C*D*H*W)``, ``t (B, out_dim)``; rows ``>= n_valid`` are padding.  The
    first value is the displayed loss summed over real rows divided by ``B`` (the
    allocated batch size); its gradient is CIANNA's ``G / B``.

    For a YOLO network (``spec.yolo``) the loss is CIANNA's YOLO loss, whose gradient
    is the YOLO delta on every row (padding rows included, as CIANNA computes it);
    ``nb_im_iter`` (images seen, CIANNA's ``iter * train_size``) drives its random
    start-up phase and ``key`` its random associations.
    """
    b = x.shape[0]
    ctx = Ctx(train=train, drop_mode="AVG_MODEL", nd=spec.nd, policy=policy)
    z = to_rows(forward_internal(spec, params, x, ctx, key, activate_last=False))
    z = z.astype(jnp.float32)  # the loss and delta are computed in float32
    mask = (jnp.arange(b) < n_valid).astype(z.dtype)
    if spec.yolo is not None:
        from .yolo.loss import yolo_loss

        raw = z.reshape((b,) + yolo_grid_shape(spec))
        sub = None if key is None else jax.random.fold_in(key, 7919)
        per_image = yolo_loss(raw, t.astype(z.dtype), spec.yolo, nb_im_iter=nb_im_iter, key=sub,
                              loss_scale=loss_scale)
        return jnp.sum(per_image) / b, jnp.sum(per_image * mask)
    per_row = output_loss(spec.layers[-1].activation, z, t.astype(z.dtype), mask, loss_scale)
    total = jnp.sum(per_row)
    return total / b, total


@partial(jax.jit, static_argnames=("spec", "optimizer", "loss_scale", "policy"),
         donate_argnums=(2, 3))
def train_step(spec: Network, optimizer: optax.GradientTransformation, params: Params,
               opt_state, x: jax.Array, t: jax.Array, n_valid, key: jax.Array,
               loss_scale: float = 1.0, policy: Policy = FP32, nb_im_iter=0, step=None):
    """One CIANNA training step on a padded batch; returns (params, opt_state, loss sum).

    ``step`` (an int, traced): when given, the step's randomness uses
    ``fold_in(key, step)``, folded inside the compiled step; loops pass the epoch key
    and the batch index instead of folding eagerly (an eager ``fold_in`` costs about
    as much as a small training step on CPU).

    The loss sum is over the real rows (divide by ``n_valid`` for CIANNA's B.Loss).
    ``loss_scale`` > 1 multiplies the delta and is divided out of the gradient
    before the update, as CIANNA's ``TC_scale_factor``.  ``policy`` is the
    mixed-precision policy (parameters and optimizer state stay float32).
    """
    if step is not None:
        key = jax.random.fold_in(key, step)
    (_, total), grads = jax.value_and_grad(batch_loss, has_aux=True)(
        params, spec, x, t, n_valid, key, train=True, loss_scale=loss_scale, policy=policy,
        nb_im_iter=nb_im_iter)
    if loss_scale != 1.0:
        grads = jax.tree_util.tree_map(lambda g: g / loss_scale, grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, total


@partial(jax.jit, static_argnames=("spec", "drop_mode", "with_loss", "policy"))
def eval_step(spec: Network, params: Params, x: jax.Array, t: jax.Array, n_valid,
              key: jax.Array | None = None, drop_mode: str = "AVG_MODEL",
              with_loss: bool = True, policy: Policy = FP32, step=None):
    """Inference on a padded batch: (output rows, displayed loss sum over real rows).

    Rows are CIANNA's prediction-file rows (dense outputs keep the bias-slot column).
    ``step``: as in :func:`train_step` (``key`` is folded with it inside the step).
    """
    if step is not None and key is not None:
        key = jax.random.fold_in(key, step)
    ctx = Ctx(train=False, drop_mode=drop_mode, nd=spec.nd, policy=policy)
    z = forward_internal(spec, params, x, ctx, key, activate_last=False).astype(jnp.float32)
    act = spec.layers[-1].activation
    if z.ndim == 2:
        rows = dense_activation(act, z)
        y = rows[:, :-1]
    elif spec.yolo is not None:
        rows = yolo_rows(spec, to_rows(z))
        if not with_loss:
            return rows, jnp.zeros((), jnp.float32)
        return rows, jnp.sum(_yolo_parts(spec, rows, t, n_valid)[:6])
    else:
        zr = to_rows(z)
        y = output_activation(act, zr) if act.kind != "YOLO" else zr
        rows = y
    if not with_loss:
        return rows, jnp.zeros((), jnp.float32)
    mask = (jnp.arange(x.shape[0]) < n_valid).astype(y.dtype)
    loss = jnp.sum(jnp.sum(elementwise_loss(act, y, t.astype(y.dtype)), axis=1) * mask)
    return rows, loss


def _yolo_parts(spec: Network, rows, t, n_valid):
    """CIANNA's displayed YOLO loss of the real rows, summed per part: position, size,
    probability, objectness, classes, parameters; then the IoU-monitor sums (IoU*,
    objectness, good count, count) from which CIANNA prints M IoU, M Obj and P Good."""
    from .yolo.loss import display_stats

    out = rows.reshape((rows.shape[0],) + yolo_grid_shape(spec))
    st = display_stats(out, t.astype(jnp.float32), spec.yolo, n_valid=n_valid)
    n = st.n_monitor.astype(jnp.float32)
    mon = jnp.stack([st.M_IoU * n, st.M_Obj * n, st.P_Good * n, n])
    return jnp.concatenate([st.parts, jnp.where(n > 0, mon, 0.0)])


@partial(jax.jit, static_argnames=("spec",))
def yolo_display_parts(spec: Network, rows: jax.Array, t: jax.Array, n_valid) -> jax.Array:
    """Jitted :func:`_yolo_parts` on activated YOLO rows (the "Loss dist." of CIANNA)."""
    return _yolo_parts(spec, rows, t, n_valid)


def pad_batch(x: np.ndarray, b: int) -> np.ndarray:
    """Pad rows with zeros up to ``b`` (CIANNA's partial last batch)."""
    n = x.shape[0]
    if n == b:
        return x
    out = np.zeros((b,) + x.shape[1:], dtype=x.dtype)
    out[:n] = x
    return out


def iterate_batches(x, t, batch_size: int):
    """Yield (x_batch, t_batch, n_valid) with the last batch padded to ``batch_size``."""
    n = x.shape[0]
    for start in range(0, n, batch_size):
        xb = np.asarray(x[start:start + batch_size], dtype=np.float32)
        tb = np.asarray(t[start:start + batch_size], dtype=np.float32)
        nv = xb.shape[0]
        yield pad_batch(xb, batch_size), pad_batch(tb, batch_size), nv


def train_epoch(spec: Network, optimizer, params: Params, opt_state, x, t, batch_size: int,
                key: jax.Array, *, loss_scale: float = 1.0, policy: Policy = FP32,
                nb_im_iter: int = 0, mesh: jax.sharding.Mesh | None = None):
    """One pass over ``(x, t)`` in storage order; returns (params, opt_state, loss sum).

    The loss sum stays on the device (no per-batch host sync); divide it by the
    number of examples for CIANNA's epoch ``Mean Loss``.  ``nb_im_iter`` (YOLO only) is
    CIANNA's ``epoch * train_size`` counter of its random start-up phase.  With a
    ``mesh`` (:func:`cianna_jax.parallel.make_mesh`) every batch is split over its
    devices and params/opt_state are replicated (data parallel, same results).
    """
    if mesh is not None:
        parallel.check_batch_size(batch_size, mesh, "batch_size")
        params, opt_state = parallel.replicate((params, opt_state), mesh)
    sums = []
    with parallel.context(mesh):
        for j, (xb, tb, nv) in enumerate(iterate_batches(x, t, batch_size)):
            if mesh is not None:
                xb, tb = parallel.shard_batch(xb, mesh), parallel.shard_batch(tb, mesh)
            params, opt_state, s = train_step(spec, optimizer, params, opt_state, xb, tb,
                                              np.int32(nv), key, loss_scale=loss_scale,
                                              policy=policy, nb_im_iter=np.int32(nb_im_iter),
                                              step=np.int32(j))
            sums.append(s)
    return params, opt_state, jnp.sum(jnp.stack(sums))
