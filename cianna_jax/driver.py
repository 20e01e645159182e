"""CIANNA's drivers: ``train`` and ``forward`` over the imperative state (``perf_eval``,
which replays their last step, is in :mod:`cianna_jax.layer_timing`).

The loops call the jitted steps of :mod:`cianna_jax.training` once per batch, keep
losses on the device (the progress bar shows the newest batch loss that is
already computed, so no batch forces a host sync) and write CIANNA's files:
``net_save/net<id>_s<iter>.dat``, ``fwd_res/net<id>_<iter>.dat`` and ``error.txt``.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import console, host_arrays, metrics, optim, parallel, training
from .api import (
    Dataset,
    NetState,
    check_dataset_targets,
    get_dataset,
    get_state,
    v11_transform,
    warn_once,
)
from .checks import as_flag
from .checks import as_float as _float
from .checks import as_int as _int
from .checks import as_str as _str
from .layers.common import DROP_MODES
from .network import output_rows
from .saving import save_optimizer_state, save_state
from .yolo import decode as yolo_decode

__all__ = ["train", "forward"]


def _batch(state: NetState, ds: Dataset, j: int):
    """Batch ``j`` of ``ds`` padded to B rows: (x, t, n_valid), on the network's
    device(s) (rows split over the mesh when data parallel)."""
    b = state.b_size
    nv = min(b, ds.size - j * b)
    if ds.device is not None:
        return ds.device[0][j], ds.device[1][j], nv
    xb = training.pad_batch(ds.x[j * b:(j + 1) * b], b)
    tb = training.pad_batch(ds.t[j * b:(j + 1) * b], b)
    if state.mesh is None and state.device == jax.devices()[0]:
        return xb, tb, nv  # the jitted step's own transfer is cheaper than device_put
    return state.put_batch(xb), state.put_batch(tb), nv


def _nb_batch(state: NetState, ds: Dataset) -> int:
    return (ds.size - 1) // state.b_size + 1


def _shuffle(state: NetState, ds: Dataset) -> Dataset:
    """Permute the real examples in place (CIANNA's permanent shuffle)."""
    seed = np.asarray(jax.random.key_data(state.epoch_key(1))).ravel()
    perm = np.random.default_rng(seed).permutation(ds.size)
    ds.x[:] = ds.x[perm]
    ds.t[:] = ds.t[perm]
    if ds.device is not None:
        nb, b = ds.device[0].shape[:2]
        idx = np.concatenate([perm, np.arange(ds.size, nb * b)]).astype(np.int32)
        ds.device = tuple(_permute_rows(a, idx) for a in ds.device)
    return ds


def _take_rows(a: jax.Array, idx: jax.Array) -> jax.Array:
    return jnp.take(a.reshape((-1,) + a.shape[2:]), idx, axis=0).reshape(a.shape)


def _permute_rows(a: jax.Array, idx: np.ndarray) -> jax.Array:
    """Rows of a device dataset (nb_batch, B, ...) in the order ``idx``, on the
    device(s) and with the sharding they had."""
    return jax.jit(_take_rows, out_shardings=a.sharding)(a, idx)


def _place_params(state: NetState) -> None:
    """Put params (and optimizer state) on the network's device(s): replicated on the
    mesh when data parallel.  A no-op when they are there already."""
    state.params = tuple(state.put_params(state.params))
    if state.opt_state is not None:
        state.opt_state = state.put_params(state.opt_state)


def _ensure_optimizer(state: NetState) -> None:
    _place_params(state)
    if state.optimizer is not None:
        return
    params = state.params
    if state.optim_config is None:  # CIANNA V-1.0's SGD
        state.optimizer = training.CIANNA_SGD
        opt_state = training.set_masks(training.init_state(state.optimizer, params),
                                       training.cianna_masks(state.net, params, state.frozen))
    else:
        state.optimizer = v11_transform(state.optim_config, bool(state.decoupled),
                                        bool(state.wema))
        opt_state = optim.set_v11_masks(training.init_state(state.optimizer, params),
                                        optim.v11_masks(state.net, params, state.frozen))
    state.opt_state = state.put_params(opt_state)


def _copy(tree):
    return host_arrays.copy_tree(tree)


class _RateMeter:
    """``B.perf.``: images per second of *completed* work.

    Steps are dispatched asynchronously, so the time at which the Python loop hands a
    batch over says nothing about the work done (timing dispatch showed 50x the real
    rate).  The meter counts the images of batches whose result is ready
    (:meth:`poll`, in order: each step needs the previous one's weights) and divides
    the images completed within the last ``window`` seconds by the time they took;
    before two observations it is the completed images since the start over the time
    since the start.  ``clock`` is injectable for tests.
    """

    def __init__(self, window: float = 2.0, clock=time.perf_counter):
        self.clock = clock
        self.window = window
        self.t0 = clock()
        self.done = 0
        self.samples = [(self.t0, 0)]

    def poll(self, pending: list) -> float | None:
        """Pop the finished entries at the head of ``pending``: ``(loss, rows)`` or
        ``(loss, rows, images)`` (images computed for that entry, default ``rows``);
        returns the newest finished loss per row (None when none finished)."""
        shown = None
        while pending and pending[0][0].is_ready():
            value, nv, *images = pending.pop(0)
            self.done += int(images[0] if images else nv)
            shown = float(value) / max(int(nv), 1)
        return shown

    def rate(self) -> float:
        """Images per second of completed work (see the class docstring)."""
        now = self.clock()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.pop(0)
        t_old, d_old = self.samples[0]
        if self.done > d_old and now > t_old:
            return (self.done - d_old) / (now - t_old)
        return self.done / max(now - self.t0, 1e-9)


def _progress(state, prefix, j, nb, pending, shown, meter, silent):
    value = meter.poll(pending)
    if value is not None:
        shown = value
    if not silent:
        console.write(console.progress_line(prefix, state.iteration, j + 1, nb, state.adv_size,
                                            shown, meter.rate()))
    return shown


#: passes of fewer batches keep one compiled call per batch (see :func:`_chunk_steps`)
CHUNK_MIN_BATCHES = 16


def _chunk_steps(state: NetState, one: bool, nb: int) -> int:
    """Batches per compiled call in a pass of ``nb`` batches: ``training.train_epoch``'s
    "auto" rule (several on CPU for networks that keep their speed in a loop) from
    :data:`CHUNK_MIN_BATCHES` batches on; one when ``one`` (SGD batches, repeated
    forward passes) or with a mesh.  A chunked pass compiles only the chunked program;
    ``perf_eval`` compiles the one-batch program when it is first called after it."""
    if one or state.mesh is not None or nb < CHUNK_MIN_BATCHES:
        return 1
    return training.resolve_steps_per_call("auto", state.net, state.policy, False, None,
                                           state.params)


def _chunk(state: NetState, ds: Dataset, j: int, k: int):
    """Batches ``j .. j + k - 1`` stacked ``(k, B, ...)``, those past the dataset's end
    zero-filled: (xs, ts, real rows per batch ``(k,)``)."""
    b = state.b_size
    nv = training.chunk_rows(ds.size, j, k, b)
    if ds.device is not None:
        n = min(k, ds.device[0].shape[0] - j)
        xs, ts = (jax.lax.dynamic_slice_in_dim(a, j, n) for a in ds.device)
        if n < k:
            xs, ts = (jnp.concatenate([a, jnp.zeros((k - n,) + a.shape[1:], a.dtype)])
                      for a in (xs, ts))
        return xs, ts, nv
    xs, ts = (training.pad_batch(a[j * b:(j + k) * b], k * b).reshape((k, b) + a.shape[1:])
              for a in (ds.x, ds.t))
    if state.device == jax.devices()[0]:
        return xs, ts, nv
    return state.put_batch(xs, axis=1), state.put_batch(ts, axis=1), nv


def _last_of_chunk(xs, ts, nv):
    """(x, t, n_valid) of the last batch with rows in a chunk (what perf_eval replays)."""
    r = int(np.flatnonzero(nv)[-1])
    return xs[r], ts[r], int(nv[r])


def _train_epoch(state: NetState, ds: Dataset, loss_scale: float, silent: int) -> np.ndarray:
    """One pass over ``ds``; returns the loss sum of each batch (host array).

    Where the network allows it (:func:`_chunk_steps`), the batches run several per
    compiled call (``training.train_steps``, the same numbers)."""
    net = state.net
    params, opt_state = state.params, state.opt_state
    key = state.epoch_key(0)
    t0 = time.perf_counter()
    meter = _RateMeter()
    chunk_sums, sums, pending, shown = [], [], [], None
    sgd = state.batch_mode == "SGD"
    nb = ds.size if sgd else _nb_batch(state, ds)
    picks = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()).integers(
        0, ds.size, ds.size) if sgd else None
    if not silent:
        console.write("\x1b[?25l")
    common = dict(key=key, loss_scale=loss_scale, policy=state.policy,
                  nb_im_iter=np.int32(state.iteration * ds.size),
                  divisor="batch" if state.optim_config is None else "length")
    k = _chunk_steps(state, sgd, nb)
    chunked = nb if k > 1 else 0
    for j in range(0, chunked, k):
        xs, ts, nvs = _chunk(state, ds, j, k)
        params, opt_state, s = training.train_steps(
            net, state.optimizer, params, opt_state, xs, ts, nvs, first_step=np.int32(j),
            **common)
        real = int(np.count_nonzero(nvs))
        chunk_sums.append(s[:real] if real < k else s)
        pending.append((s[real - 1], nvs[real - 1], int(nvs.sum())))
        shown = _progress(state, "Iter:", j + real - 1, nb, pending, shown, meter, silent)
    if chunked:
        xb, tb, nv = _last_of_chunk(xs, ts, nvs)
        call = dict(common, step=np.int32(nb - 1))
    for j in range(chunked, nb):
        xb, tb, nv = _batch(state, ds, int(picks[j]) if sgd else j)
        if sgd:
            nv = 1
        call = dict(common, step=np.int32(j))
        params, opt_state, s = training.train_step(
            net, state.optimizer, params, opt_state, xb, tb, np.int32(nv), **call)
        sums.append(s)
        pending.append((s, nv))
        shown = _progress(state, "Iter:", j, nb, pending, shown, meter, silent)
    state.perf["batch"] = (xb, tb)
    state.perf["last"] = (xb, tb, np.int32(nv))
    state.perf["train_call"] = (xb, tb, np.int32(nv), call)  # perf_eval replays this step
    # read to the host one by one: an eager jnp.concatenate or stack compiles a program
    losses = np.concatenate([np.ravel(np.asarray(s)) for s in chunk_sums + sums] or
                            [np.zeros(0)]).astype(np.float64)
    if not silent:
        for value, nv, *_ in pending:
            shown = float(value) / nv
        console.write(console.progress_line("Iter:", state.iteration, nb, nb, state.adv_size,
                                            shown, ds.size / (time.perf_counter() - t0)))
        console.write("\x1b[?25h")
    state.perf["train_rate"] = ds.size / (time.perf_counter() - t0)
    state.params, state.opt_state = tuple(params), opt_state
    return losses


class _Diverged(Exception):
    """Raised inside an iteration; ``train`` restores the last good state."""


def _divergence(state: NetState, losses: np.ndarray) -> str | None:
    """Why the state after this epoch must not be kept, or None.  A batch's loss is
    computed before its update, so the final state is also checked on its own:
    finite parameters and optimizer state, and a finite forward of the last batch."""
    bad = np.flatnonzero(~np.isfinite(losses))
    nb = losses.size
    if bad.size:
        j = int(bad[0])
        return f"batch {j + 1}/{nb}: loss {losses[j]:g}"
    xb, tb, nv = state.perf["last"]
    if not bool(training.state_is_finite(state.net, state.params, state.opt_state, xb, tb, nv,
                                         state.policy)):
        return (f"batch {nb}/{nb} (after the last update): non-finite weights, optimizer "
                "state or outputs")
    return None


def _evaluate(state: NetState, ds: Dataset, *, drop_mode: str, repeat: int, no_error: int,
              silent: int, confmat: int = 0):
    """Forward over ``ds``: (CIANNA output rows in file order, loss sum, confusion
    matrix, rate, YOLO loss parts or None)."""
    net = state.net
    _place_params(state)
    params = state.inference_weights()  # laid out once per set of weights
    with_loss = no_error != 1
    key = state.next_key()
    t0 = time.perf_counter()
    meter = _RateMeter()
    outs, losses, pending, shown = [], [], [], None
    parts = [] if (net.yolo is not None and with_loss) else None
    nb = _nb_batch(state, ds)
    # one batch per call for repeated passes and YOLO's part statistics (per batch)
    k = _chunk_steps(state, repeat > 1 or parts is not None, nb)
    chunked = nb if k > 1 else 0
    for j in range(0, chunked, k):
        xs, ts, nvs = _chunk(state, ds, j, k)
        out, loss = training.eval_steps(net, params, xs, ts, nvs, key, drop_mode, with_loss,
                                        state.policy, first_step=np.int32(j))
        real = int(np.count_nonzero(nvs))
        outs.append((out.reshape((k * out.shape[1],) + out.shape[2:]), int(nvs.sum())))
        losses.append(loss[:real] if real < k else loss)
        pending.append((loss[real - 1], nvs[real - 1], int(nvs.sum())))
        shown = _progress(state, "Fwd :", j + real - 1, nb, pending, shown, meter, silent == 1)
    if chunked:
        xb, tb, nv = _last_of_chunk(xs, ts, nvs)
        call = (key, drop_mode, with_loss, state.policy)
        kw = dict(step=np.int32(nb - 1), yolo_stats=False)
    for j in range(chunked, nb):
        xb, tb, nv = _batch(state, ds, j)
        for r in range(repeat):
            call = (key, drop_mode, with_loss, state.policy)
            kw = dict(step=np.int32(j * repeat + r), yolo_stats=parts is not None)
            out, loss = training.eval_step(net, params, xb, tb, np.int32(nv), *call, **kw)
            outs.append((out, nv))
            if parts is not None:
                parts.append(loss)
                loss = jnp.sum(loss[:6])
            losses.append(loss)
        pending.append((loss, nv, nv * repeat))
        shown = _progress(state, "Fwd :", j, nb, pending, shown, meter, silent == 1)
    rows = output_rows(net, np.concatenate([parallel.to_host(o)[:nv] for o, nv in outs], axis=0))
    loss_sum = float(sum(float(v) for a in losses for v in np.asarray(a).reshape(-1))) \
        if with_loss else 0.0
    rate = ds.size / (time.perf_counter() - t0)
    state.perf["batch"] = (xb, tb)
    state.perf["eval_call"] = (xb, tb, np.int32(nv), call, kw)  # perf_eval replays this step
    mat = None  # rows hold `repeat` passes per batch: a matrix only for one pass
    if with_loss and repeat == 1 and (confmat > 0 or net.layers[-1].activation.kind == "SMAX"):
        mat = _confusion(net, rows, ds.t, state.out_dim)
    if parts is not None:
        parts = np.sum([parallel.to_host(p) for p in parts], axis=0)
    return rows, loss_sum, mat, rate, parts


def _confusion(net, rows, targets, out_dim):
    """Classification confusion matrix of ``rows`` (see :func:`metrics.confusion_matrix`),
    or None when the output is not one class-score vector per image."""
    if net.output_shape.flat or (rows.shape[1] == out_dim
                                             and net.output_shape.spatial == (1, 1, 1)):
        return metrics.confusion_matrix(rows, targets, out_dim)
    return None


def _append_error(iteration: int, value: float, parts=None, n: int = 1) -> None:
    """One ``error.txt`` line: iteration, mean loss and, for YOLO, the six part means."""
    extra = "" if parts is None else "".join(f" {v:g}" for v in np.asarray(parts)[:6] / n)
    with open("error.txt", "a") as fh:
        fh.write(f"{iteration} {value:g}{extra}\n")


def _loss_dist(stats, n: int) -> str:
    """CIANNA's YOLO ``Loss dist.`` line from summed part losses and monitor sums."""
    names = ("Pos", "Size", "Prob", "Obj", "Class", "Param")
    line = " |".join(f"{k}: {v / n:.5f}" for k, v in zip(names, stats[:6]))
    count = max(stats[9], 1.0)
    return (f"Loss dist. ||{line} ||M IoU = {stats[6] / count:.4f} |M Obj = "
            f"{stats[7] / count:.4f} |P Good = {stats[8] / count:.4f}\n")


def yolo_file_rows(rows: np.ndarray, cfg) -> np.ndarray:
    """CIANNA's decoded YOLO prediction rows (``raw_output=0``): channels 0-2 become box
    minima and 3-5 maxima in pixels, with the unfloored priors (cianna_yolo.md 2.3)."""
    return yolo_decode.raw_to_decoded(rows, **yolo_decode.decode_kwargs(cfg)).astype(np.float32)


def _check_output_size(state: NetState) -> None:
    if not state.layers:
        raise RuntimeError("the network has no layer: add layers or load a file first")
    out = state.net.output_shape
    if out.flat and out.size != state.out_dim:
        raise ValueError(f"out_dim: the last layer has {out.size} neurons but init "
                         f"declared out_dim={state.out_dim}")


def train(nb_iter: int, learning_rate: float, end_learning_rate: float = 0.0,
          control_interv: int = 1, momentum: float = 0.0, lr_decay: float = 0.0,
          weight_decay: float = 0.0, confmat: int = 0, save_every: int = 0, save_bin: int = 0,
          network: int = -1, shuffle_gpu: int = 0, shuffle_every: int = 1,
          TC_scale_factor: float = 1.0, silent: int = 0,  # noqa: N803
          decoupled_wdecay: int = 0, wema_rate: float = -1.0, wema_replace_every: int = 0,
          save_optim_every: int = 0) -> None:
    """Train on TRAIN for ``nb_iter`` iterations (epochs), CIANNA's way.

    The global iteration counter, the learning-rate schedule
    ``end + (lr - end) * exp(-lr_decay * iter)`` and the momentum buffers persist across
    calls.  Every ``control_interv`` iterations VALID is evaluated (loss, accuracy,
    ``confmat``, ``error.txt``); every ``save_every`` iterations the network is saved to
    ``net_save/net<id>_s<iter>.dat``.  A NaN loss raises FloatingPointError and keeps
    the weights of the last good iteration.

    With a V-1.1 optimizer (``init(optimizer=...)``), CIANNA V-1.1's keywords apply:
    ``weight_decay`` inside the gradient or, with ``decoupled_wdecay=1``, applied to the
    weights first (AdamW); ``momentum`` belongs to the optimizer string (a value here is
    ignored with a warning); ``wema_rate`` (0.01 to 1, with ``init(wema=1)``) sets the rate
    of the weight EMA (a negative value keeps the current one), ``wema_replace_every``
    copies the EMA into the weights every that many iterations, ``save_optim_every``
    writes the optimizer state to ``optim_save/net_optim<id>_s<iter>.dat``.

    Divergence: after each iteration the batch losses, the new weights and optimizer
    state, a forward with them and (when evaluated) the VALID loss must all be finite.
    Otherwise FloatingPointError names the iteration and batch, and the weights,
    optimizer state and iteration counter are those before the failed iteration (no
    save file is written from it).  Non-finite hyper-parameters are refused up front.
    """
    state = get_state(network)
    nb_iter = _int(nb_iter, "nb_iter", minimum=0)
    lr0 = _float(learning_rate, "learning_rate", finite=True)
    lr_end = _float(end_learning_rate, "end_learning_rate", finite=True)
    control_interv = _int(control_interv, "control_interv")
    mu = _float(momentum, "momentum", finite=True)
    lr_decay = _float(lr_decay, "lr_decay", finite=True)
    wd = _float(weight_decay, "weight_decay", finite=True)
    confmat = _int(confmat, "confmat")
    save_every = _int(save_every, "save_every")
    save_bin = _int(save_bin, "save_bin")
    _int(shuffle_gpu, "shuffle_gpu")  # accepted; JAX shuffles where the data live
    shuffle_every = _int(shuffle_every, "shuffle_every")
    scale = _float(TC_scale_factor, "TC_scale_factor", finite=True)
    silent = _int(silent, "silent")
    decoupled = bool(as_flag(decoupled_wdecay, "decoupled_wdecay"))
    wema_rate = _float(wema_rate, "wema_rate", finite=True)
    if wema_rate > 1:  # e = rate*e + (1 - rate)*w grows without bound
        raise ValueError(f"wema_rate: expected a rate <= 1 (0.999 keeps a long average; a "
                         f"negative value keeps the current rate), received {wema_rate}")
    wema_replace_every = _int(wema_replace_every, "wema_replace_every", minimum=0)
    save_optim_every = _int(save_optim_every, "save_optim_every", minimum=0)
    if scale <= 0:
        raise ValueError(f"TC_scale_factor: expected > 0, received {scale}")
    if state.inference_only:
        raise RuntimeError("train: the network was created with inference_only=1")
    _check_output_size(state)
    check_dataset_targets(state, "TRAIN", get_dataset(state, "TRAIN"))
    if control_interv > 0:
        check_dataset_targets(state, "VALID", get_dataset(state, "VALID"))
    if scale != 1.0 and not state.policy.loss_scaling:
        warn_once("tc", f"TC_scale_factor is only used by the FP16 mixed-precision modes; "
                  f"with {state.policy.name} the scale is kept to 1", UserWarning)
        scale = 1.0
    if state.iteration == 0 and os.path.exists("error.txt"):
        os.remove("error.txt")
    _v11_settings(state, mu, decoupled, wema_rate, wema_replace_every, save_optim_every)
    fresh_optimizer = state.opt_state is None  # a first iteration that fails resets it
    start = state.iteration
    _ensure_optimizer(state)
    for _ in range(nb_iter):
        if silent < 1:
            console.write("\n")
        # train_step donates its buffers: keep copies of the last good state
        good = (_copy(state.params), _copy(state.opt_state), state.iteration)
        try:
            _iteration(state, lr0, lr_end, lr_decay, mu, wd, shuffle_every, scale, silent,
                       control_interv, confmat, wema_replace_every)
        except BaseException as err:  # divergence, Ctrl-C, ...: back to the last good state
            state.params, state.opt_state, state.iteration = tuple(good[0]), good[1], good[2]
            if fresh_optimizer and state.iteration == start:
                state.reset_optimizer()
            if not isinstance(err, _Diverged):
                raise
            raise FloatingPointError(
                f"training diverged at iteration {good[2] + 1}, {err}; the weights, optimizer "
                f"state and iteration counter of iteration {good[2]} are kept (lower the "
                "learning rate?)") from None
        if save_every > 0 and state.iteration % save_every == 0:
            path = f"net_save/net{state.id}_s{state.iteration:04d}.dat"
            console.write(f"Saving network for iteration: {state.iteration} (mode: {save_bin})\n")
            save_state(state, path, bool(save_bin))
        if save_optim_every > 0 and state.iteration % save_optim_every == 0:
            path = f"optim_save/net_optim{state.id}_s{state.iteration:04d}.dat"
            os.makedirs("optim_save", exist_ok=True)
            save_optimizer_state(state, path, bool(save_bin))


def _v11_settings(state: NetState, mu, decoupled, wema_rate, wema_replace_every,
                  save_optim_every) -> None:
    """Apply ``train``'s V-1.1 keywords to the state; refuse them without a V-1.1
    optimizer (nothing is changed when one is refused)."""
    if state.optim_config is None:
        if decoupled or wema_replace_every or save_optim_every or wema_rate > -0.01:
            raise ValueError("decoupled_wdecay, wema_rate, wema_replace_every and "
                             "save_optim_every need a V-1.1 optimizer: init(optimizer=...)")
        return
    if (wema_rate > -0.01 or wema_replace_every) and not state.wema:
        raise ValueError("wema_rate, wema_replace_every: the network was created without "
                         "wema=1")
    if mu > 0:
        warn_once("momentum", "train(momentum=...) is ignored with a V-1.1 optimizer: the "
                  "momentum belongs to the optimizer string (sgd(momentum=...))", UserWarning)
    if wema_rate > -0.01:
        state.wema_rate = wema_rate
    if decoupled != state.decoupled:
        state.decoupled = decoupled
        if state.optimizer is not None:  # the same state, another static rule
            state.optimizer = v11_transform(state.optim_config, decoupled, bool(state.wema))


def _iteration(state: NetState, lr0, lr_end, lr_decay, mu, wd, shuffle_every, scale, silent,
               control_interv, confmat, wema_replace_every=0) -> None:
    """One training iteration (epoch) and its VALID control; raises _Diverged."""
    lr = training.learning_rate_at(state.iteration, lr0, lr_end, lr_decay)
    if state.optim_config is None:
        state.opt_state = training.set_learning_rate(state.opt_state, lr, momentum=mu,
                                                     weight_decay=wd)
    else:
        state.opt_state = training.set_learning_rate(state.opt_state, lr, weight_decay=wd,
                                                     wema_rate=state.wema_rate)
    state.iteration += 1
    ds = get_dataset(state, "TRAIN")
    if shuffle_every > 0 and (state.iteration + 1) % shuffle_every == 0 \
            and state.batch_mode != "SGD":
        ds = _shuffle(state, ds)
    with parallel.context(state.mesh):
        losses = _train_epoch(state, ds, scale, silent >= 1)
        problem = _divergence(state, losses)
    if problem is not None:
        raise _Diverged(f"on TRAIN, {problem}")
    if wema_replace_every > 0 and state.iteration % wema_replace_every == 0:
        state.params = tuple(optim.replace_with_ema(state.params, state.opt_state))
    if control_interv > 0 and state.iteration % control_interv == 0:
        if silent < 1:
            console.write(f"\n{' ' * 14}Average Training perf: {state.perf['train_rate']:.2f}"
                          f" it/s | Mean Loss: {losses.sum() / ds.size:.5g} | Learning rate: "
                          f"{lr:.5g} | Momentum: {mu:.5g} | Weight decay: {wd:.5g}\n")
        state.no_error = 0
        _control_step(state, confmat, silent)


def _control_step(state: NetState, confmat: int, silent: int) -> None:
    ds = get_dataset(state, "VALID")
    with parallel.context(state.mesh):
        rows, loss, mat, rate, parts = _evaluate(state, ds, drop_mode="AVG_MODEL", repeat=1,
                                                 no_error=0, silent=1 if silent == 1 else 0,
                                                 confmat=confmat)
    if silent != 1:
        console.write(f"\n{' ' * 14}Average forward perf : {rate:.2f} it/s | Mean Loss: "
                      f"{loss / ds.size:.5g}\n")
        if parts is not None:
            console.write(_loss_dist(parts, ds.size))
        if mat is not None:
            # classification: CIANNA's confusion matrix display, at least the accuracy
            console.write(console.confusion_matrix_text(mat, confmat if confmat in (1, 2) else 3))
    if not np.isfinite(loss):
        raise _Diverged(f"on VALID (first seen there): loss {loss:g}")
    if silent != 1:
        _append_error(state.iteration, loss / ds.size)


def forward(saving: int = 1, drop_mode: str = "AVG_MODEL", no_error: int = 0, repeat: int = 1,
            network: int = -1, silent: int = 0, return_output: int = 1) -> np.ndarray | None:
    """Run the network on TEST; write ``fwd_res/net<id>_<iter>.dat`` (``saving`` 1: text,
    2: binary float32) and return the predictions as an array (rows in file order).

    ``drop_mode`` "AVG_MODEL" scales dropout layers, "MC_MODEL" samples masks; with
    ``repeat`` > 1 every batch is run ``repeat`` times (rows: batch 0 repeat 0, batch 0
    repeat 1, ...).  ``no_error=1`` skips the loss (unlabelled data).
    ``return_output=0`` returns None (CIANNA V-1.1's default; V-1.0 always returns).
    A V-1.1 network (``cianna_jax.v11``) drops the bias column of dense outputs in the
    files and the array, as V-1.1 does.
    """
    state = get_state(network)
    saving = _int(saving, "saving")
    drop_mode = _str(drop_mode, "drop_mode")
    if drop_mode not in DROP_MODES:
        raise ValueError(f"drop_mode: expected one of {DROP_MODES}, received {drop_mode!r}")
    no_error = _int(no_error, "no_error")
    repeat = _int(repeat, "repeat", minimum=1)
    silent = _int(silent, "silent")
    return_output = as_flag(return_output, "return_output")
    if saving not in (0, 1, 2) and saving > 0:
        raise ValueError(f"saving: expected 0 (no file), 1 (text) or 2 (binary), received {saving}")
    if not state.layers:
        raise RuntimeError("forward: the network has no layer: add layers or load a file first")
    ds = get_dataset(state, "TEST")
    if no_error != 1:
        check_dataset_targets(state, "TEST", ds)
    if repeat > 1 and silent != 1:
        console.write(f"Forwarding with repeat = {repeat}\n")
    state.no_error = no_error
    with parallel.context(state.mesh):
        rows, loss, _, rate, parts = _evaluate(state, ds, drop_mode=drop_mode, repeat=repeat,
                                               no_error=no_error, silent=silent)
    cfg = state.yolo_cfg
    if cfg is not None and not cfg.raw_output:
        rows = yolo_file_rows(rows, cfg)
    if state.dialect == "1.1" and state.net.output_shape.flat:
        rows = rows[:, :-1]  # V-1.1 writes nb_neurons values (no bias-propagation slot)
    if saving > 0:
        os.makedirs("fwd_res", exist_ok=True)
        path = f"fwd_res/net{state.id}_{state.iteration:04d}.dat"
        if saving == 2:
            rows.astype(np.float32).tofile(path)
        else:
            end = "" if cfg is not None else "\n"  # CIANNA writes YOLO rows on one line
            with open(path, "w") as fh:
                fh.writelines("".join(f"{v:g} " for v in row) + end for row in rows.tolist())
    if silent != 1:
        text = f"\n{' ' * 14}Average forward perf : {rate:.2f} it/s "
        if no_error != 1:
            text += f"| Mean Loss: {loss / (ds.size * repeat):.5g}"
        console.write(text + "\n")
        if parts is not None:
            console.write(_loss_dist(parts, ds.size * repeat))
        if no_error == 0:
            if not np.isfinite(loss):
                raise FloatingPointError("ERROR: Network divergence detected (NaN) on TEST")
            _append_error(state.iteration, loss / ds.size, parts, ds.size)
    return rows if return_output else None
