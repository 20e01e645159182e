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
from collections.abc import Iterator
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from . import host_arrays, host_keys, initializers, parallel
from .checks import as_int
from .layers.common import Ctx
from .layers.dense import dense_activation
from .losses import elementwise_loss, output_activation, output_loss
from .network import (
    Network,
    Params,
    check_targets,
    drop_bias_slot,
    forward_internal,
    inference_params,
    targets_to_internal,
)
from .precision import FP32, Policy
from .yolo.activation import activation as yolo_activation
from .yolo.loss import display_stats, yolo_loss

__all__ = [
    "CiannaTraceState",
    "MaskState",
    "cianna_trace",
    "mask_updates",
    "cianna_masks",
    "set_masks",
    "CIANNA_SGD",
    "cianna_sgd",
    "make_optimizer",
    "init_state",
    "set_learning_rate",
    "learning_rate_at",
    "batch_loss",
    "divide_by_length",
    "state_is_finite",
    "train_step",
    "eval_step",
    "eval_steps",
    "pad_batch",
    "iterate_batches",
    "loop_safe",
    "train_steps",
    "resolve_steps_per_call",
    "chunk_rows",
    "EpochCall",
    "epoch_calls",
    "train_epoch",
    "predict",
]


class MaskState(NamedTuple):
    """A mask pytree kept in the optimizer state, so that changing it (freezing a
    layer, new parameters) needs no new transformation and no recompilation."""

    mask: Any


def _ones_like_tree(params):
    return jax.tree_util.tree_map(lambda p: host_arrays.full((), 1, p.dtype, like=p), params)


def _mask_state(masks, params, which: int) -> MaskState:
    if masks is None:
        return MaskState(_ones_like_tree(params))
    m = masks(params) if callable(masks) else masks
    return MaskState(host_arrays.copy_tree(m[which]))  # own buffers (donation)


class CiannaTraceState(NamedTuple):
    """Momentum buffers ``V`` (zero at start) and the decay mask."""

    trace: Any
    mask: Any


def cianna_trace(learning_rate, momentum, weight_decay,
                 masks=None) -> optax.GradientTransformation:
    """CIANNA's momentum buffer, weight decay inside it (cianna_layers.md section 11)::

        V <- momentum * V + lr * g + lr * wd * decay_mask * W

    evaluated in CIANNA's order; the update is ``V``.  ``masks``: an ``(update, decay)``
    pair of pytrees (arrays broadcastable to each parameter), a function
    ``params -> (update, decay)`` evaluated at ``init`` (e.g.
    ``functools.partial(cianna_masks, net)``), or None (decay everything).
    """

    def init_fn(params):
        return CiannaTraceState(jax.tree_util.tree_map(host_arrays.zeros_like, params),
                                _mask_state(masks, params, 1).mask)

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("cianna_trace needs params (weight decay)")
        trace = jax.tree_util.tree_map(
            lambda v, g, p, dm: momentum * v + learning_rate * g
            + learning_rate * weight_decay * dm * p, state.trace, grads, params, state.mask)
        return trace, CiannaTraceState(trace, state.mask)

    return optax.GradientTransformation(init_fn, update_fn)


def mask_updates(masks=None) -> optax.GradientTransformation:
    """Multiply updates by the update mask (0: frozen layer or CIANNA's dense pivot)."""

    def init_fn(params):
        return _mask_state(masks, params, 0)

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, m: u * m, updates, state.mask), state

    return optax.GradientTransformation(init_fn, update_fn)


def cianna_sgd(learning_rate: float, momentum: float = 0.0, weight_decay: float = 0.0,
               masks=None) -> optax.GradientTransformation:
    """CIANNA's momentum SGD with the weight decay inside the momentum buffer::

        V <- momentum * V + lr * G + lr * wd * decay_mask * W;   W <- W - update_mask * V

    as a chain of small optax transformations: :func:`cianna_trace`,
    ``optax.scale(-1)`` and :func:`mask_updates`.  ``masks`` as in :func:`cianna_trace`; use
    :func:`cianna_masks` for CIANNA's rules (dense pivots neither decayed nor updated,
    norm parameters not decayed, frozen layers not updated).  Expects gradients of
    the batch-mean loss (``G / B``).
    """
    return optax.chain(cianna_trace(learning_rate, momentum, weight_decay, masks),
                       optax.scale(-1.0), mask_updates(masks))


def cianna_masks(net: Network, params: Params, frozen: tuple[int, ...] = ()):
    """CIANNA's (update mask, decay mask) pytrees for ``params`` of ``net``: each
    layer's :meth:`update_masks`, with the layers listed in ``frozen`` not updated."""
    n = len(net.layers)
    for i in frozen:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) \
                or not 0 <= i < n:
            raise ValueError(f"frozen: expected layer indices from 0 to {n - 1}, received {i!r}")
    upd, dec = [], []
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        hook = getattr(layer, "update_masks", None)
        if hook is None:
            u = {k: host_arrays.full((), 1, v.dtype, like=v) for k, v in p.items()}
            d = dict(u)
        else:
            u, d = hook(p)
        if i in frozen:  # same shapes as unfrozen: freezing never recompiles
            u = {k: host_arrays.full(v.shape, 0, v.dtype, like=v) for k, v in u.items()}
        upd.append(u)
        dec.append(host_arrays.copy_tree(d))  # distinct buffers: steps donate
    return tuple(upd), tuple(dec)


def set_masks(opt_state, masks):
    """``opt_state`` of :func:`make_optimizer` or :func:`cianna_sgd` with new
    ``(update, decay)`` masks (e.g. after freezing layers): no recompilation."""
    upd, dec = masks
    injected = hasattr(opt_state, "inner_state")
    chain = opt_state.inner_state if injected else opt_state
    if not (isinstance(chain, tuple) and isinstance(chain[0], CiannaTraceState)
            and isinstance(chain[-1], MaskState)):
        raise TypeError("opt_state: expected the state of cianna_sgd or make_optimizer")
    chain = (chain[0]._replace(mask=dec),) + tuple(chain[1:-1]) + (MaskState(upd),)
    return opt_state._replace(inner_state=chain) if injected else chain


def _check_hyperparameter(name: str, value) -> None:
    """ValueError for a NaN or infinite hyper-parameter given as a number (it would make
    every weight NaN at the first update); traced values are left to the caller."""
    if initializers.is_concrete(value):
        v = np.asarray(value)
        if v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: expected a finite value, received {value!r}")


def make_optimizer(learning_rate: float = 0.0, momentum: float = 0.0,
                   weight_decay: float = 0.0, masks=None):
    """:func:`cianna_sgd` with injectable hyper-parameters.

    Learning rate, momentum and weight decay live in the optimizer state
    (``opt_state.hyperparams``), so changing them between epochs (CIANNA's decay
    schedule, a new ``train`` call) does not recompile the jitted step; neither does
    a change of masks (:func:`set_masks`).  The result does not depend on the network,
    so one instance serves every network of the same parameter structure.
    """
    for name, value in dict(learning_rate=learning_rate, momentum=momentum,
                            weight_decay=weight_decay).items():
        _check_hyperparameter(name, value)
    factory = optax.inject_hyperparams(cianna_sgd, static_args=("masks",))
    return factory(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                   masks=masks)


#: The optimizer the imperative API uses (masks set with :func:`set_masks`).
CIANNA_SGD = make_optimizer()


def init_state(optimizer: optax.GradientTransformation, params: Params):
    """``optimizer.init(params)``.  This package's optimizers build their zero buffers,
    masks and copies on the host (:mod:`.host_arrays`), so nothing is compiled for them:
    CIANNA's SDC1 detector 0.05-0.07 s on 2 CPU cores, against 0.47 s to compile the same
    as one program (and 0.9 s for the 31 small programs of eager jax.numpy calls)."""
    return optimizer.init(params)


def set_learning_rate(opt_state, learning_rate: float, **others: float):
    """Return ``opt_state`` with new injected hyper-parameters (learning_rate, momentum...)."""
    hp = dict(opt_state.hyperparams)
    for name, value in dict(learning_rate=learning_rate, **others).items():
        if name not in hp:
            raise KeyError(f"optimizer has no hyper-parameter {name!r}; it has {sorted(hp)}")
        _check_hyperparameter(name, value)
        old = hp[name]
        new = np.asarray(value, dtype=np.dtype(getattr(old, "dtype", np.float32)))
        if initializers.is_concrete(old) and getattr(old, "committed", False):
            # placed as the old value: a step compiled for arrays placed on devices is
            # not compiled a second time for an unplaced value
            hp[name] = jax.device_put(new, old.sharding)
        else:
            hp[name] = jnp.asarray(new, new.dtype)
    return opt_state._replace(hyperparams=hp)


def learning_rate_at(iteration: int, learning_rate: float, end_learning_rate: float = 0.0,
                     lr_decay: float = 0.0) -> float:
    """CIANNA's per-epoch rate ``end + (lr0 - end) * exp(-lr_decay * iteration)``.

    ``iteration`` is the global count of completed epochs before this one.
    """
    return end_learning_rate + (learning_rate - end_learning_rate) * math.exp(-lr_decay * iteration)


def _yolo_view(spec: Network, z: jax.Array) -> jax.Array:
    """Internal YOLO conv output ``(B, *grid, F)`` -> ``(B, *grid, boxes, values)``."""
    cfg = spec.yolo
    return z.reshape(z.shape[:-1] + (cfg.nb_box, cfg.channels_per_box))


def _flat(z: jax.Array) -> jax.Array:
    """Pre-activation of the output layer as rows: dense without its bias slot, maps
    flattened channel-last (the layout of :func:`~cianna_jax.network.targets_to_internal`)."""
    return z[:, :-1] if z.ndim == 2 else z.reshape(z.shape[0], -1)


def divide_by_length(grads: Any, length: int | jax.Array) -> Any:
    """CIANNA's ``gradient / net->length`` (the real rows of the batch): give the gradient
    of the *summed* loss; the V-1.1 optimizers expect the result.  A true float32
    division as in the kernels (XLA turns a division by a scalar into a multiplication
    by its reciprocal, which rounds differently; the per-element select prevents it)."""
    n = jnp.asarray(length, jnp.float32)
    return jax.tree_util.tree_map(lambda g: g / jnp.where(g != g, jnp.float32(1), n), grads)


# one jitted program (inlined inside the training step): ``jax.grad(batch_loss)`` called
# eagerly would otherwise run, and compile, every operation of the forward and backward
# passes one by one (a small conv net on 2 CPU cores: 11 s against 0.7 s)
@partial(jax.jit, static_argnames=("spec", "train", "loss_scale", "policy", "exact", "divisor"))
def batch_loss(params: Params, spec: Network, x: jax.Array, t: jax.Array, n_valid,
               key: jax.Array | None, *, train: bool = True, loss_scale: float = 1.0,
               policy: Policy = FP32, nb_im_iter=0, exact: bool = False,
               divisor: str = "batch"):
    """(loss for gradients, summed displayed loss) of one padded batch.

    ``x (B, [D,] H, W, C)`` images; ``t`` targets: dense ``(B, n)``, YOLO target rows,
    maps ``(B, [D,] H, W, C)`` or CIANNA's channel-major rows (converted inside, see
    :func:`~cianna_jax.network.targets_to_internal`); rows ``>= n_valid`` are padding.
    The first value is the displayed loss summed over real rows divided by ``B`` (the
    allocated batch size); its gradient is CIANNA's ``G / B`` (or, with ``exact``,
    the autodiff gradient of that loss).  ``divisor="length"`` (CIANNA V-1.1) leaves
    it undivided: the caller divides the gradient by the real rows
    (:func:`divide_by_length`).

    For a YOLO network (``spec.yolo``) the loss is CIANNA's YOLO loss, whose gradient
    is the YOLO delta on every row (padding rows included, as CIANNA computes it);
    ``nb_im_iter`` (images seen, CIANNA's ``iter * train_size``) drives its random
    start-up phase and ``key`` its random associations.
    """
    check_targets(spec, t)
    b = x.shape[0]
    norm = b if divisor == "batch" else 1
    ctx = Ctx(train=train, drop_mode="AVG_MODEL", nd=spec.nd, policy=policy, exact=exact)
    z = forward_internal(spec, params, x, ctx, key, activate_last=False)
    z = z.astype(jnp.float32)  # the loss and delta are computed in float32
    mask = (jnp.arange(b) < n_valid).astype(z.dtype)
    if spec.yolo is not None:
        sub = None if key is None else jax.random.fold_in(key, 7919)
        per_image = yolo_loss(_yolo_view(spec, z), t.astype(z.dtype), spec.yolo,
                              nb_im_iter=nb_im_iter, key=sub, loss_scale=loss_scale,
                              grads="exact" if exact else "cianna")
        return jnp.sum(per_image) / norm, jnp.sum(per_image * mask)
    t = targets_to_internal(spec, t).reshape(b, -1)
    per_row = output_loss(spec.layers[-1].activation, _flat(z), t.astype(z.dtype), mask,
                          loss_scale, exact=exact)
    total = jnp.sum(per_row)
    return total / norm, total


@partial(jax.jit, static_argnames=("spec", "optimizer", "loss_scale", "policy", "exact",
                                   "divisor"), donate_argnums=(2, 3))
def train_step(spec: Network, optimizer: optax.GradientTransformation, params: Params,
               opt_state, x: jax.Array, t: jax.Array, n_valid, key: jax.Array,
               loss_scale: float = 1.0, policy: Policy = FP32, nb_im_iter=0, step=None,
               exact: bool = False, divisor: str = "batch"):
    """One CIANNA training step on a padded batch; returns (params, opt_state, loss sum).

    ``x`` images ``(B, [D,] H, W, C)``, ``t`` targets in the core's layout.  ``step``
    (an int, traced): when given, the step's randomness uses ``fold_in(key, step)``,
    folded inside the compiled step; loops pass the epoch key and the batch index
    instead of folding eagerly (an eager ``fold_in`` costs about as much as a small
    training step on CPU).

    The loss sum is over the real rows (divide by ``n_valid`` for CIANNA's B.Loss).
    ``loss_scale`` > 1 multiplies the delta and is divided out of the gradient
    before the update, as CIANNA's ``TC_scale_factor``.  ``policy`` is the
    mixed-precision policy (parameters and optimizer state stay float32).  ``exact``
    trains with autodiff gradients instead of CIANNA's.  ``divisor``: "batch" gives
    the optimizer ``G / B`` (CIANNA V-1.0, the allocated batch size), "length" gives
    ``G / n_valid`` (V-1.1: the real rows of a partial last batch).
    """
    if step is not None:
        key = jax.random.fold_in(key, step)
    (_, total), grads = jax.value_and_grad(batch_loss, has_aux=True)(
        params, spec, x, t, n_valid, key, train=True, loss_scale=loss_scale, policy=policy,
        nb_im_iter=nb_im_iter, exact=exact, divisor=divisor)
    if divisor == "length":
        grads = divide_by_length(grads, n_valid)
    if loss_scale != 1.0:
        grads = jax.tree_util.tree_map(lambda g: g / loss_scale, grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, total


@partial(jax.jit, static_argnames=("spec", "drop_mode", "with_loss", "policy", "yolo_stats"))
def eval_step(spec: Network, params: Params, x: jax.Array, t: jax.Array, n_valid,
              key: jax.Array | None = None, drop_mode: str = "AVG_MODEL",
              with_loss: bool = True, policy: Policy = FP32, step=None,
              yolo_stats: bool = False):
    """Inference on a padded batch: (outputs, displayed loss sum over real rows).

    Outputs are in the core's layout with CIANNA's bias-slot column kept on dense
    outputs (as its prediction files have it); YOLO outputs are activated
    ``(B, *grid, boxes, values)``.  ``step``: as in :func:`train_step`.  With
    ``yolo_stats`` (YOLO only) the second value is instead CIANNA's per-part
    displayed loss and IoU-monitor sums (:func:`yolo_parts`), from one association.
    """
    if with_loss:
        check_targets(spec, t)
    if step is not None and key is not None:
        key = jax.random.fold_in(key, step)
    ctx = Ctx(train=False, drop_mode=drop_mode, nd=spec.nd, policy=policy)
    z = forward_internal(spec, params, x, ctx, key, activate_last=False).astype(jnp.float32)
    act = spec.layers[-1].activation
    if spec.yolo is not None:
        out = yolo_activation(_yolo_view(spec, z), spec.yolo)
        if not with_loss:
            return out, jnp.zeros((), jnp.float32)
        parts = yolo_parts(spec, out, t, n_valid)
        return out, (parts if yolo_stats else jnp.sum(parts[:6]))
    if z.ndim == 2:
        out = dense_activation(act, z)
        y = out[:, :-1]
    else:
        y = output_activation(act, z.reshape(z.shape[0], -1))
        out = y.reshape(z.shape)
    if not with_loss:
        return out, jnp.zeros((), jnp.float32)
    t = targets_to_internal(spec, t).reshape(t.shape[0], -1)
    mask = (jnp.arange(x.shape[0]) < n_valid).astype(y.dtype)
    loss = jnp.sum(jnp.sum(elementwise_loss(act, y, t.astype(y.dtype)), axis=1) * mask)
    return out, loss


@partial(jax.jit, static_argnames=("spec", "drop_mode", "with_loss", "policy"))
def eval_steps(spec: Network, params: Params, xs: jax.Array, ts: jax.Array, n_valid: jax.Array,
               key: jax.Array | None = None, drop_mode: str = "AVG_MODEL",
               with_loss: bool = True, policy: Policy = FP32, first_step=0):
    """:func:`eval_step` on ``K`` batches ``xs (K, B, ...)`` in one compiled call (a
    ``lax.scan``), batch ``i`` with ``step=first_step + i``: (outputs ``(K, B, ...)``,
    losses ``(K,)``), the numbers of ``K`` calls; a batch with ``n_valid[i] == 0`` is
    skipped (zeros).  Not for YOLO's part statistics."""
    def step(carry, xb, tb, nv, j):
        return carry, eval_step(spec, params, xb, tb, nv, key, drop_mode, with_loss, policy,
                                step=j)

    return _scan_batches(step, None, xs, ts, n_valid, first_step)[1]


def _scan_batches(step, carry, xs, ts, n_valid, first_step):
    """``lax.scan`` of ``step(carry, x, t, n_valid, j) -> (carry, out)`` over the batches
    ``xs[i]``, ``ts[i]`` with ``j = first_step + i``; a batch with ``n_valid[i] == 0``
    is skipped (carry unchanged, out zeros).  Returns (carry, stacked outs)."""
    steps = first_step + jnp.arange(n_valid.shape[0], dtype=jnp.int32)

    def body(c, inputs):
        xb, tb, nv, j = inputs

        def run(c):
            return step(c, xb, tb, nv, j)

        out_type = jax.eval_shape(run, c)[1]
        return jax.lax.cond(nv > 0, run, lambda c: (c, jax.tree_util.tree_map(
            lambda a: jnp.zeros(a.shape, a.dtype), out_type)), c)

    return jax.lax.scan(body, carry, (xs, ts, n_valid, steps))


def chunk_rows(n: int, first_batch: int, k: int, batch_size: int) -> np.ndarray:
    """Real rows ``(k,)`` int32 of batches ``first_batch .. first_batch + k - 1`` of ``n``
    examples (0 for batches past the end): the ``n_valid`` of :func:`train_steps`."""
    return np.clip(n - (first_batch + np.arange(k)) * batch_size, 0,
                   batch_size).astype(np.int32)


def state_is_finite(spec: Network, params: Params, opt_state, x: jax.Array, t: jax.Array,
                    n_valid, policy: Policy = FP32) -> bool:
    """True when every float of ``params`` and ``opt_state`` is finite and a forward of
    the batch ``x`` (outputs and loss against ``t``) is finite too: the test a training
    loop applies before it keeps a state (a finite loss before an update says nothing
    about the weights after it).  The forward is :func:`eval_step` called as a
    validation pass calls it (weights laid out by :func:`inference_params`, a key, a
    step, AVG_MODEL, with the loss), so the check compiles no forward program of its own."""
    if not bool(all_finite((params, opt_state))):
        return False
    out, loss = eval_step(spec, inference_params(spec, params, policy), x, t, n_valid,
                          host_keys.key(0), "AVG_MODEL", True,
                          policy, step=np.int32(0), yolo_stats=spec.yolo is not None)
    return bool(np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(loss)).all())


@jax.jit
def all_finite(tree) -> jax.Array:
    """Whether every float in ``tree`` is finite (one small program per tree structure)."""
    leaves = [a for a in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))


def yolo_parts(spec: Network, out: jax.Array, t: jax.Array, n_valid) -> jax.Array:
    """CIANNA's displayed YOLO loss of the real rows, summed per part: position, size,
    probability, objectness, classes, parameters; then the IoU-monitor sums (IoU*,
    objectness, good count, count) from which CIANNA prints M IoU, M Obj and P Good.
    ``out``: activated YOLO outputs ``(B, *grid, boxes, values)``."""
    st = display_stats(out, t.astype(jnp.float32), spec.yolo, n_valid=n_valid)
    n = st.n_monitor.astype(jnp.float32)
    mon = jnp.stack([st.M_IoU * n, st.M_Obj * n, st.P_Good * n, n])
    return jnp.concatenate([st.parts, jnp.where(n > 0, mon, 0.0)])


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


#: training steps per compiled call in :func:`train_epoch` (``steps_per_call="auto"``)
STEPS_PER_CALL = 8


def loop_safe(spec: Network, policy: Policy = FP32, exact: bool = False) -> bool:
    """Whether ``spec``'s training step keeps its speed inside a compiled loop on CPU
    (:func:`train_steps`): every layer says so (``trains_in_loops``, the layer protocol).
    Inside a loop XLA's CPU runs autodiff's weight-gradient convolutions on generic code
    (a scan of MNIST steps ran 13x slower, SDC1's 33x, before the layers wrote them in
    XLA's own layouts, benchmarks/README.md); a layer type that has not been checked
    there keeps one call per step."""
    ctx = Ctx(train=True, nd=spec.nd, policy=policy, exact=exact)
    return all(getattr(layer, "trains_in_loops", lambda ctx: False)(ctx)
               for layer in spec.layers)


@partial(jax.jit, static_argnames=("spec", "optimizer", "loss_scale", "policy", "exact",
                                   "divisor"), donate_argnums=(2, 3))
def train_steps(spec: Network, optimizer: optax.GradientTransformation, params: Params,
                opt_state, xs: jax.Array, ts: jax.Array, n_valid: jax.Array, key: jax.Array,
                loss_scale: float = 1.0, policy: Policy = FP32, nb_im_iter=0, first_step=0,
                exact: bool = False, divisor: str = "batch"):
    """``K`` training steps in one compiled call (a ``lax.scan`` of :func:`train_step`);
    returns (params, opt_state, loss sums ``(K,)``).

    Step ``i`` trains on ``xs[i]`` ``(K, B, ...)``, ``ts[i]`` with ``n_valid[i]`` real
    rows and the randomness of ``step=first_step + i``: the same numbers as ``K`` calls of
    :func:`train_step` (to float rounding).  A step with ``n_valid[i] == 0`` is skipped
    (weights and optimizer state unchanged, loss 0): it pads the last call of an epoch.
    One call instead of ``K`` saves the per-call cost of dispatching a program with
    dozens of buffers (about 0.7 ms per MNIST step on 2 CPU cores, benchmarks/README.md);
    check :func:`loop_safe` first on CPU.
    """
    def step(c, xb, tb, nv, j):
        p, s, loss = train_step(spec, optimizer, c[0], c[1], xb, tb, nv, key,
                                loss_scale=loss_scale, policy=policy, nb_im_iter=nb_im_iter,
                                step=j, exact=exact, divisor=divisor)
        return (p, s), loss

    (params, opt_state), sums = _scan_batches(step, (params, opt_state), xs, ts, n_valid,
                                              first_step)
    return params, opt_state, sums


def resolve_steps_per_call(value, spec: Network, policy: Policy = FP32, exact: bool = False,
                           mesh=None, params=None) -> int:
    """``train_epoch``'s ``steps_per_call`` resolved to an int: "auto" gives
    :data:`STEPS_PER_CALL` when ``params`` (or the default device) are on the CPU, without
    a mesh, for a :func:`loop_safe` network, else 1; an int >= 1 is kept (ValueError
    otherwise, or for several steps with a mesh)."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"steps_per_call: expected 'auto' or an int >= 1, received "
                             f"{value!r}")
        leaf = jax.tree_util.tree_leaves(params)[:1]
        devices = leaf[0].devices() if leaf and isinstance(leaf[0], jax.Array) else \
            jax.local_devices()[:1]
        on_cpu = all(d.platform == "cpu" for d in devices)
        return STEPS_PER_CALL if (mesh is None and on_cpu
                                  and loop_safe(spec, policy, exact)) else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"steps_per_call: expected 'auto' or an int >= 1, received "
                         f"{value!r}")
    if mesh is not None and value > 1:
        raise ValueError("steps_per_call: several steps per call are not available with a "
                         "mesh (data parallel); use 1 or 'auto'")
    return int(value)


class EpochCall(NamedTuple):
    """What one compiled call of :func:`epoch_calls` leaves: the new ``params`` and
    ``opt_state``, the loss ``sums`` of its batches (a scalar for one step per call, a
    ``(K,)`` vector for several, padding steps 0) and ``batches``, how many real batches
    it trained."""

    params: Params
    opt_state: Any
    sums: jax.Array
    batches: int


def _check_dataset_shape(spec: Network, shape: tuple[int, ...], *, squeezed: bool = False,
                         nonempty: bool = False) -> None:
    """ValueError unless ``shape`` is that of images ``(N, *spec.input_shape)``: with
    ``squeezed`` also without the input's 1-sized axes (``(N, W)`` for one-channel 1D
    inputs), with ``nonempty`` only for ``N >= 1``."""
    want = tuple(spec.input_shape)
    shapes = (want, tuple(v for v in want if v != 1)) if squeezed else (want,)
    shape = tuple(shape)
    if len(shape) < 1 or shape[1:] not in shapes or (nonempty and shape[0] < 1):
        raise ValueError(f"x: expected images of shape (N{' >= 1' if nonempty else ''}, "
                         f"{', '.join(map(str, want))}) (channel-last; CIANNA rows go through "
                         f"rows_to_images), received {shape}")


def _check_epoch(spec: Network, x, t, batch_size: int, key) -> None:
    """Early, named errors for :func:`epoch_calls`' data (before anything is compiled)."""
    as_int(batch_size, "batch_size", minimum=1)
    _check_dataset_shape(spec, np.shape(x), squeezed=True)
    check_targets(spec, t)
    if np.shape(t)[0] != np.shape(x)[0]:
        raise ValueError(f"t: expected one target per image, {np.shape(x)[0]} rows, received "
                         f"{np.shape(t)[0]}")
    if key is None:
        raise TypeError("key: expected a jax.random key (dropout masks and YOLO "
                        "associations draw from it), received None")


def epoch_calls(spec: Network, optimizer, params: Params, opt_state, x, t, batch_size: int,
                key: jax.Array, *, loss_scale: float = 1.0, policy: Policy = FP32,
                nb_im_iter: int = 0, mesh: jax.sharding.Mesh | None = None,
                exact: bool = False, steps_per_call: int | str = "auto"
                ) -> Iterator[EpochCall]:
    """:func:`train_epoch` one compiled call at a time: a generator of
    :class:`EpochCall`, for loops that show progress or stop between calls (the
    ``cianna-jax train`` command).  Nothing waits for the device: block on
    ``sums`` to see a call's work done.  The same calls, numbers and randomness as
    :func:`train_epoch`."""
    _check_epoch(spec, x, t, batch_size, key)
    k = resolve_steps_per_call(steps_per_call, spec, policy, exact, mesh, params)
    if mesh is not None:
        parallel.check_batch_size(batch_size, mesh, "batch_size")
        params, opt_state = parallel.replicate((params, opt_state), mesh)
    call = dict(loss_scale=loss_scale, policy=policy, nb_im_iter=np.int32(nb_im_iter),
                exact=exact)
    n = x.shape[0]
    if k > 1:
        rows = k * batch_size
        for c, start in enumerate(range(0, n, rows)):
            xs, ts = (pad_batch(np.asarray(a[start:start + rows], dtype=np.float32), rows)
                      for a in (x, t))
            nv = chunk_rows(n, c * k, k, batch_size)
            params, opt_state, s = train_steps(
                spec, optimizer, params, opt_state, xs.reshape((k, batch_size) + x.shape[1:]),
                ts.reshape((k, batch_size) + t.shape[1:]), nv, key,
                first_step=np.int32(c * k), **call)
            yield EpochCall(params, opt_state, s, int(np.count_nonzero(nv)))
        return
    for j, (xb, tb, nv) in enumerate(iterate_batches(x, t, batch_size)):
        if mesh is not None:
            xb, tb = parallel.shard_batch(xb, mesh), parallel.shard_batch(tb, mesh)
        with parallel.context(mesh):  # not held across the yield: the caller's code runs there
            params, opt_state, s = train_step(spec, optimizer, params, opt_state, xb, tb,
                                              np.int32(nv), key, step=np.int32(j), **call)
        yield EpochCall(params, opt_state, s, 1)


def train_epoch(spec: Network, optimizer, params: Params, opt_state, x, t, batch_size: int,
                key: jax.Array, *, loss_scale: float = 1.0, policy: Policy = FP32,
                nb_im_iter: int = 0, mesh: jax.sharding.Mesh | None = None,
                exact: bool = False, steps_per_call: int | str = "auto"):
    """One pass over images ``x (N, [D,] H, W, C)`` and targets ``t`` (core layout) in
    storage order; returns (params, opt_state, loss sum).

    The loss sum stays on the device (no per-batch host sync); divide it by the
    number of examples for CIANNA's epoch ``Mean Loss``.  ``nb_im_iter`` (YOLO only) is
    CIANNA's ``epoch * train_size`` counter of its random start-up phase.  With a
    ``mesh`` (:func:`cianna_jax.parallel.make_mesh`) every batch is split over its
    devices and params/opt_state are replicated (data parallel, same results).
    ``steps_per_call``: batches trained per compiled call (:func:`train_steps`), same
    numbers; "auto" takes :data:`STEPS_PER_CALL` on CPU for networks that stay fast
    inside a loop (:func:`loop_safe`; CIANNA's MNIST network trains 1.07-1.09x faster at
    batch 64, 1.16x at 16, its SDC1 backbone at 256x256, batch 8, 1.26x in a process of
    its own: the step's buffers are allocated once per call), else 1.
    :func:`epoch_calls` gives the same pass one call at a time.
    """
    sums = []
    for c in epoch_calls(spec, optimizer, params, opt_state, x, t, batch_size, key,
                         loss_scale=loss_scale, policy=policy, nb_im_iter=nb_im_iter,
                         mesh=mesh, exact=exact, steps_per_call=steps_per_call):
        params, opt_state = c.params, c.opt_state
        sums.append(c.sums)
    if not sums:
        raise ValueError("x: no images to train on (an epoch needs at least one)")
    total = jnp.concatenate(sums) if sums[0].ndim else jnp.stack(sums)
    return params, opt_state, jnp.sum(total)


@partial(jax.jit, static_argnames=("spec", "drop_mode", "policy", "mesh", "steps"))
def _eval_per_device(spec: Network, params: Params, xs, ts, n_valid, first, *, drop_mode: str,
                     policy: Policy, mesh: jax.sharding.Mesh, steps: bool):
    """:func:`eval_steps` (``steps``: ``xs (K, B, ...)``) or :func:`eval_step` (``xs (B,
    ...)``) without a loss, each device of ``mesh`` on its own rows of every batch: one
    program per device (``shard_map``), nothing exchanged.  XLA's SPMD partitioner, given
    the whole program, split SDC1's chunked CPU convolutions badly (SDC1 128 inference on
    2 CPU devices: 109 img/s against 169 on one and 208 per device; benchmarks/README.md,
    fifty-ninth session).  Outputs ``(K, B, ...)`` / ``(B, ...)``, split over ``mesh``."""
    rows = P(None, parallel.AXIS) if steps else P(parallel.AXIS)

    def local(params, xs, ts, n_valid, first):
        if steps:
            return eval_steps(spec, params, xs, ts, n_valid, None, drop_mode, False, policy,
                              first_step=first)[0]
        return eval_step(spec, params, xs, ts, n_valid, None, drop_mode, False, policy,
                         step=first)[0]

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), rows, rows, P(), P()), out_specs=rows,
                         check_vma=False)(params, xs, ts, n_valid, first)


def predict(spec: Network, params: Params, x, batch_size: int, *, key: jax.Array | None = None,
            drop_mode: str = "AVG_MODEL", policy: Policy = FP32, bias_slot: bool = False,
            steps_per_call: int | str = "auto",
            mesh: jax.sharding.Mesh | None = None) -> jax.Array:
    """Outputs of ``spec`` for all images ``x (N, [D,] H, W, C)`` (core layout), in
    batches of ``batch_size``: what :func:`cianna_jax.apply` gives for them (same
    layout: dense outputs without CIANNA's bias-slot column unless ``bias_slot``, maps,
    activated YOLO boxes), to float rounding, as one ``(N, ...)`` array.

    The inference counterpart of :func:`train_epoch`: the weights are laid out once
    (:func:`cianna_jax.inference_params`; laid-out params are taken as they are), the
    last batch is zero-padded (one compiled program for any ``N``), and
    ``steps_per_call`` batches run per compiled call (:func:`eval_steps`; "auto" as in
    :func:`resolve_steps_per_call`: 8 on CPU for :func:`loop_safe` networks, else 1;
    CIANNA's MNIST network at batch 64 on 2 CPU cores runs as fast as a loop of jitted
    ``apply`` calls, x1.04 within the noise, benchmarks/README.md).
    ``drop_mode="MC_MODEL"`` keeps dropout on
    and needs ``key``; batch ``j`` uses ``fold_in(key, j)`` (as :func:`eval_step`'s
    ``step``).

    With a ``mesh`` (:func:`cianna_jax.parallel.make_mesh`) every batch is split over its
    devices, each running its rows alone: the same outputs to float rounding (no layer
    mixes images; products over fewer rows may take other kernels).  Pass ``params``
    laid out and replicated (:func:`cianna_jax.parallel.replicate`) to call it often:
    otherwise every call copies them to each device.  On a multi-core CPU whose process
    has one JAX device per core (``jax.config.update("jax_num_cpu_devices", n)`` before
    any computation) that is faster than one device on all cores while the host keeps
    the cores far apart, slower while they are close: SDC1 inference on 2 cores
    x1.15-1.20 and x0.88-0.98 (benchmarks/README.md, fifty-ninth session).

    ValueError for images of another shape, a ``batch_size`` the mesh's devices do not
    divide or ``drop_mode="MC_MODEL"`` with a mesh (its masks are drawn for whole
    batches); TypeError or ValueError for a ``batch_size`` that is not an int >= 1."""
    want = tuple(spec.input_shape)
    if getattr(x, "ndim", None) is None:
        try:
            x = np.asarray(x, np.float32)
        except (TypeError, ValueError) as err:
            raise TypeError(f"x: expected an array of images, received {type(x).__name__} "
                            f"({err})") from None
    _check_dataset_shape(spec, x.shape, nonempty=True)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    if drop_mode == "MC_MODEL" and key is None:
        raise ValueError("key: drop_mode='MC_MODEL' draws dropout masks and needs a "
                         "jax.random key")
    if mesh is not None:
        parallel.check_batch_size(batch_size, mesh, "batch_size")
        if drop_mode == "MC_MODEL":
            raise ValueError("drop_mode: 'MC_MODEL' draws its dropout masks for whole batches, "
                             "which a mesh would split over its devices: use mesh=None")
    k = resolve_steps_per_call(steps_per_call, spec, policy, params=params)
    laid = inference_params(spec, params, policy)
    if mesh is not None:
        laid = parallel.replicate(laid, mesh)
    n, rows = x.shape[0], k * batch_size
    t = np.zeros((k, batch_size, 1), np.float32)  # no loss: targets are not read
    outs = []
    for c, start in enumerate(range(0, n, rows)):
        xs = pad_batch(np.asarray(x[start:start + rows], dtype=np.float32), rows)
        if k > 1:  # (k, B, ...) batches; the first batch's number
            xs, ts, nv = xs.reshape((k, batch_size) + want), t, chunk_rows(n, c * k, k,
                                                                           batch_size)
        else:
            ts, nv = t[0], np.int32(min(batch_size, n - start))
        first = np.int32(c * k)
        if mesh is not None:
            axis = 1 if k > 1 else 0
            out = _eval_per_device(spec, laid, parallel.shard_batch(xs, mesh, axis),
                                   parallel.shard_batch(ts, mesh, axis), nv, first,
                                   drop_mode=drop_mode, policy=policy, mesh=mesh, steps=k > 1)
        elif k > 1:
            out, _ = eval_steps(spec, laid, xs, ts, nv, key, drop_mode, False, policy,
                                first_step=first)
        else:
            out, _ = eval_step(spec, laid, xs, ts, nv, key, drop_mode, False, policy,
                               step=first)
        if k > 1:
            out = out.reshape((rows,) + out.shape[2:])
        outs.append(out)
    y = outs[0] if len(outs) == 1 else jnp.concatenate(outs)
    return drop_bias_slot(spec, y[:n], bias_slot)
