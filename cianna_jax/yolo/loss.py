"""CIANNA's YOLO loss: association, gradient ("delta") and displayed loss.

Implements cianna_yolo.md section 4 with the GPU semantics (float absolute values,
0.001 strict-tie tolerance, display target 0 for fit-0 positions, display "difficult"
cut at 2) and *without* the display's x/y swap on non-square grids.  The rules
themselves (target parsing, prior rules, association loop, per-channel values) are in
:mod:`cianna_jax.yolo.rules`, shared with the Pallas kernel
(:mod:`pallas_kernels.yolo_loss`); this module is the jax.numpy reference driving
them, and the public entry points, which dispatch to either implementation.

Arrays are in the core's channel-last YOLO layout ``(N, [G2,] G1, G0, B, K)`` (see
:mod:`cianna_jax.yolo.layout`); per-cell results come back in the layout of the input.
Every (image, cell) is processed independently, as one CUDA thread does: predicted
boxes, "good but not best" locks against every target of the image, the IoU table of
the in-cell targets, then the sequential association loop and the per-channel deltas
and displayed values.  The reference vectorises it over ``(N, G)`` with static shapes
(targets padded to ``max_nb_obj_per_image``); the association loop is a
``lax.while_loop`` that runs as many steps as the most crowded cell has targets.

Randomness (random start-up, ``rand_prob``, ``rand_prob_best_box_assoc``) only comes
from the ``key`` argument; the displayed loss is never random.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels.yolo_loss as kyl

from ..parallel import AXIS
from . import layout, rules
from .activation import GRADS, activation, channel_kinds, check_output
from .config import KERNELS, YoloConfig
from .iou import iou_corners

__all__ = [
    "YoloTerms",
    "DisplayStats",
    "yolo_terms",
    "delta_and_display",
    "display_stats",
    "stats_from_display",
    "yolo_loss",
    "random_can_fire",
    "resolve_kernel",
]


class YoloTerms(NamedTuple):
    """Per-element results of the gradient and display routines, in the input's layout.

    For an output ``(N, *grid, B, K)`` (``grid`` = ``([G2,] G1, G0)``): ``delta`` and
    ``display`` ``(N, *grid, B, K)``; ``iou_monitor`` ``(N, *grid, B, 2)`` holds
    (objectness output, IoU*) of the boxes associated by the display routine, (-1, -1)
    elsewhere; ``box_locked`` ``(N, *grid, B)`` int32 is the gradient routine's final
    state (0 free, 1 good-but-not-best lock, 2 associated).
    """

    delta: jax.Array
    display: jax.Array
    iou_monitor: jax.Array
    box_locked: jax.Array


class DisplayStats(NamedTuple):
    """What CIANNA's console "Loss dist." line and ``error.txt`` are made of.

    ``parts`` (6,): sums of the displayed values per part (position, size,
    probability, objectness, classes, parameters) over the counted images; ``total``
    their sum.  ``M_IoU``, ``M_Obj``: means of IoU* and objectness output over the
    monitor entries (all images); ``P_Good``: fraction of them with IoU* >= good_IoU_lim;
    NaN when there is no entry.  ``n_monitor``: number of entries.
    """

    parts: jax.Array
    total: jax.Array
    iou_monitor: jax.Array
    M_IoU: jax.Array
    M_Obj: jax.Array
    P_Good: jax.Array
    n_monitor: jax.Array


# --------------------------------------------------------------------------- statics


def _is_concrete_int(v) -> bool:
    try:
        int(v)
    except Exception:  # tracers refuse the conversion
        return False
    return True


def random_can_fire(cfg: YoloConfig, nb_im_iter=0) -> bool:
    """Whether the gradient routine may draw random numbers for this call.

    True when the random start-up phase is (or, for a traced ``nb_im_iter``, may be)
    active (``nb_im_iter <= rand_startup``), or ``rand_prob`` or
    ``rand_prob_best_box_assoc`` is positive.
    """
    if cfg.rand_prob > 0 or cfg.rand_prob_best_box_assoc > 0:
        return True
    if not _is_concrete_int(nb_im_iter):
        return True
    return int(nb_im_iter) <= cfg.rand_startup


def _startup_mode(cfg: YoloConfig, nb_im_iter, key) -> str:
    """'off', 'on' or 'traced' (decided at run time); validates ``key``."""
    if random_can_fire(cfg, nb_im_iter) and key is None:
        raise ValueError(
            "key: a jax.random key is required because the YOLO association can be random "
            f"(nb_im_iter={nb_im_iter!r} <= rand_startup={cfg.rand_startup} or traced, "
            f"rand_prob={cfg.rand_prob}, rand_prob_best_box_assoc="
            f"{cfg.rand_prob_best_box_assoc})")
    if not _is_concrete_int(nb_im_iter):
        return "traced"
    return "on" if int(nb_im_iter) <= cfg.rand_startup else "off"


def _check_inputs(output, targets, cfg: YoloConfig):
    output = jnp.asarray(output)
    targets = jnp.asarray(targets)
    check_output(output, cfg)
    if targets.ndim != 2 or targets.shape != (output.shape[0], cfg.target_len):
        raise ValueError(f"targets must have shape [N, target_len] = "
                         f"[{output.shape[0]}, {cfg.target_len}], received {tuple(targets.shape)}")
    if cfg.nb_box < 1:
        raise ValueError("the YOLO loss needs nb_box >= 1")
    return output, targets


# --------------------------------------------------------------------------- reference


class _StepDraws:
    """One association step's draws ``u (N, G, 2 + 2B)``: draw ``r`` per cell as ``(N, G,
    1, 1)``; the 2B random box draws at once as ``(N, G, 1, 1, 2B)`` (see
    :func:`rules.associate`)."""

    def __init__(self, u):
        self.u = u

    def __call__(self, r: int):
        return self.u[:, :, r, None, None]

    def boxes(self):
        return self.u[:, :, None, None, 2:]


def _draws(key, shape, dtype):
    """The reference's random draws: step ``i`` draws ``uniform(fold_in(key, i), (N, G,
    2 + 2B))``, read through :class:`_StepDraws`."""
    def draws(i):
        return _StepDraws(jax.random.uniform(jax.random.fold_in(key, i), shape, dtype))
    return draws


@partial(jax.jit, static_argnames=("cfg", "startup_mode", "want_delta", "want_display",
                                   "exact"))
def _terms(output, targets, nb_im_iter, key, *, cfg: YoloConfig, startup_mode: str,
           want_delta: bool = True, want_display: bool = True, exact: bool = False):
    """The jax.numpy reference on ``(N, G, M, B)`` tables (targets on axis 2, boxes on 3).

    ``exact``: differentiable in ``output`` by reverse-mode autodiff.  The association
    (a ``while_loop``, piecewise constant anyway) then sees stopped gradients, and IoU*
    is recomputed outside it from the associated pairs (same values).
    """
    dtype = jnp.result_type(output.dtype, jnp.float32)
    lead = tuple(output.shape[:-2])                                     # (N, *grid)
    x = layout.cells(output).astype(dtype)                              # (N, G, B, K)
    N, G, B, K = x.shape
    o = [x[:, :, None, :, k] for k in range(K)]                         # per box (N, G, 1, B)
    tg = rules.parse_targets(targets, cfg, dtype)
    cc = [jnp.asarray(c, dtype)[None, :, None, None]
          for c in rules.cell_coords(np.arange(G), cfg.grid)]           # per cell (1, G, 1, 1)
    pri_np = rules.floored_priors(cfg)
    pri = [jnp.asarray(pri_np[:, d], dtype)[None, None, None, :] for d in range(3)]
    lam = jnp.asarray(np.asarray(cfg.prior_noobj_prob, np.float32), dtype)[None, None, None, :]

    # IoU of every target with every predicted box (N, G, M, B), cell membership, locks
    pred = rules.predicted_corners(cfg, o, cc, pri)
    tab = iou_corners(pred, [tg.box[:, None, :, None, i] for i in range(6)], cfg.IoU_type)
    valid = tg.valid[:, None, :, None]
    tcell = rules.target_cells(tg.box, cfg)
    incell = rules.in_cell(valid, [tcell[:, None, :, None, d] for d in range(3)], cc)
    lock0 = rules.good_locks(cfg, tab, valid, m_axis=2)

    pr = rules.prior_rules(tg, cfg)
    class_only = tg.class_only[:, None, None, None]
    common = dict(
        m_axis=2, b_axis=3, incell=incell, lock0=lock0, col_free=jnp.ones((N, G, 1, B), bool),
        best_prior=pr.best_prior[:, None],
        eligible=None if pr.eligible is None else pr.eligible[:, None],
        small=None if pr.small is None else pr.small[:, None, :, None],
        same_prior=(None if pr.small is None
                    else jnp.asarray(rules.same_prior_mask(cfg))[None, None, None, :]),
        difficult=(tg.diff > 0)[:, None, :, None] if cfg.diff_flag else None,
        class_only=class_only, o_obj=jax.lax.stop_gradient(o[7]) if exact else o[7])
    tab_assoc = jax.lax.stop_gradient(tab) if exact else tab

    if startup_mode == "on":
        startup = jnp.asarray(True)
    elif startup_mode == "traced":
        startup = jnp.asarray(nb_im_iter) <= cfg.rand_startup
    else:
        startup = None
    random_used = key is not None
    n_idx = jnp.arange(N)[:, None, None, None]

    floats = jnp.concatenate([tg.box, tg.params], axis=-1)            # (N, M, 6 + P)
    ints = jnp.stack([tg.cls, tg.diff], axis=-1)                       # (N, M, 2)

    def values(assoc: rules.Association, mode: str):
        j = jnp.where(assoc.lock == 2, assoc.target, 0)                # (N, G, 1, B)
        rows = {}

        def field(name, i=0):   # one gather per table (cheaper than one-hot sums here)
            kind = "int" if name in ("cls", "diff") else "float"
            if kind not in rows:
                rows[kind] = (ints if kind == "int" else floats)[n_idx, j]  # (N, G, 1, B, F)
            col = {"box": i, "param": 6 + i, "cls": 0, "diff": 1}[name]
            return rows[kind][..., col]

        if exact:   # IoU* of the associated pairs, differentiable
            iou_a = iou_corners(pred, [field("box", i) for i in range(6)], cfg.IoU_type)
            assoc = assoc._replace(iou_star=jnp.where(
                assoc.lock == 2, rules.iou_star(cfg, iou_a, class_only), -1.0))
        vals = rules.box_values(cfg, mode, o, assoc, field, cc=cc, pri=pri, lam=lam,
                                class_only=class_only)
        return jnp.stack(vals, axis=-1).astype(dtype).reshape(lead + (B, K))

    g_assoc = None
    if want_delta or (want_display and cfg.error_type == "complete" and not random_used):
        draws = _draws(key, (N, G, 2 + 2 * B), dtype) if random_used else None
        g_assoc = rules.associate(cfg, "grad", tab_assoc, startup=startup, draws=draws,
                                  **common)
    delta = box_locked = None
    if want_delta:
        delta = values(g_assoc, "grad")
        box_locked = g_assoc.lock.reshape(lead + (B,))
    display = monitor = None
    if want_display:
        if cfg.error_type == "complete" and not random_used:
            d_assoc = g_assoc
        else:
            d_assoc = rules.associate(cfg, cfg.error_type, tab_assoc, **common)
        display = values(d_assoc, cfg.error_type)
        m = d_assoc.lock == 2
        monitor = jnp.stack([jnp.where(m, o[7], -1.0), jnp.where(m, d_assoc.iou_star, -1.0)],
                            axis=-1).reshape(lead + (B, 2))
    return delta, display, monitor, box_locked


def _prepare(output, targets, cfg, nb_im_iter, key):
    output, targets = _check_inputs(output, targets, cfg)
    mode = _startup_mode(cfg, nb_im_iter, key)
    if key is not None and not random_can_fire(cfg, nb_im_iter):
        key = None  # nothing random: keep one compiled variant
    nb = jnp.asarray(nb_im_iter, jnp.int32) if mode == "traced" else jnp.asarray(0, jnp.int32)
    return output, targets, mode, nb, key


# --------------------------------------------------------------------------- public


def resolve_kernel(cfg: YoloConfig, kernel: str | None = None) -> str:
    """"pallas" or "xla": the implementation a call with ``kernel`` runs.

    ``kernel`` None means ``cfg.kernel``.  "auto" picks the Pallas kernel on a GPU whose
    jax has the Pallas Triton lowering, for configurations where it was measured faster
    (:func:`pallas_kernels.yolo_loss.keeps_default_block`: at most 512 padded targets x
    boxes), the jax.numpy reference elsewhere; "pallas" forces the kernel (interpreted
    off GPU: slow, for tests and debugging).
    """
    kernel = cfg.kernel if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, received {kernel!r}")
    if kernel != "auto":
        return kernel
    return "pallas" if kyl.runs_compiled() and kyl.keeps_default_block(cfg) else "xla"


def _run(output, targets, nb, key, cfg: YoloConfig, mode: str, kernel, *, want_delta=True,
         want_display=True):
    """(delta, display, monitor, locks, per-image displayed loss) by the chosen kernel."""
    if resolve_kernel(cfg, kernel) == "pallas":
        t = kyl.yolo_terms_sharded(output, targets, nb, key, cfg=cfg, startup_mode=mode,
                                   want_delta=want_delta, want_display=want_display,
                                   axis_name=AXIS)
        per_image = None if t.channel_sums is None else jnp.sum(t.channel_sums, axis=1)
        return t.delta, t.display, t.iou_monitor, t.box_locked, per_image
    d, disp, mon, locked = _terms(output, targets, nb, key, cfg=cfg, startup_mode=mode,
                                  want_delta=want_delta, want_display=want_display)
    per_image = None if disp is None else jnp.sum(disp.reshape(disp.shape[0], -1), axis=1)
    return d, disp, mon, locked, per_image


def yolo_terms(output: jax.Array, targets: jax.Array, cfg: YoloConfig, *, nb_im_iter=0,
               key: jax.Array | None = None, kernel: str | None = None) -> YoloTerms:
    """Delta, displayed values, IoU monitor and box locks for an ACTIVATED output.

    ``output`` ``(N, [G2,] G1, G0, B, K)`` (from :func:`activation`), ``targets``
    ``[N, target_len]`` CIANNA target rows; results in the layout of ``output`` (see
    :class:`YoloTerms`).  ``nb_im_iter`` is CIANNA's ``epoch * train_size`` (random
    start-up while ``nb_im_iter <= rand_startup``; it may be traced).  ``key`` is
    required whenever an association can be random.  ``kernel``: "auto", "pallas" or
    "xla" (default ``cfg.kernel``; see :func:`resolve_kernel`).
    """
    output, targets, mode, nb, key = _prepare(output, targets, cfg, nb_im_iter, key)
    d, disp, mon, locked, _ = _run(output, targets, nb, key, cfg, mode, kernel)
    return YoloTerms(d, disp, mon, locked)


def delta_and_display(output: jax.Array, targets: jax.Array, cfg: YoloConfig, *,
                      nb_im_iter=0, key: jax.Array | None = None, kernel: str | None = None
                      ) -> tuple[jax.Array, jax.Array]:
    """``(delta, display)``, both in the layout of ``output``, for an ACTIVATED output.

    ``delta`` is CIANNA's dL/dx (no TC scaling); ``display`` the per-element displayed
    loss (x/y swap of non-square grids fixed).  ``kernel`` "auto" | "pallas" | "xla"
    forces an implementation (same results).  See :func:`yolo_terms`.
    """
    t = yolo_terms(output, targets, cfg, nb_im_iter=nb_im_iter, key=key, kernel=kernel)
    return t.delta, t.display


def display_stats(output: jax.Array, targets: jax.Array, cfg: YoloConfig, *,
                  n_valid=None, kernel: str | None = None) -> DisplayStats:
    """Per-part display sums and IoU-monitor statistics for an ACTIVATED output
    ``(N, [G2,] G1, G0, B, K)``.

    ``parts`` sum over the first ``n_valid`` images (all by default), as CIANNA sums
    the real images of a batch; the monitor statistics use every image (CIANNA counts
    padding slots too).  The display is never random, so no key is needed.
    """
    output, targets = _check_inputs(output, targets, cfg)
    _, disp, mon, _, _ = _run(output, targets, jnp.asarray(0, jnp.int32), None, cfg, "off",
                              kernel, want_delta=False)
    return stats_from_display(disp, mon, cfg, n_valid=n_valid)


def stats_from_display(display: jax.Array, iou_monitor: jax.Array, cfg: YoloConfig, *,
                       n_valid=None) -> DisplayStats:
    """:class:`DisplayStats` from per-element displayed values and the IoU monitor.

    ``display`` ``(N, *grid, B, K)`` and ``iou_monitor`` ``(N, *grid, B, 2)`` as
    returned by :func:`yolo_terms`; see :func:`display_stats` for ``n_valid``.
    """
    n_valid = display.shape[0] if n_valid is None else n_valid
    return _stats(display, iou_monitor, jnp.asarray(n_valid, jnp.int32), cfg=cfg)


@partial(jax.jit, static_argnames=("cfg",))
def _stats(disp, mon, n_valid, *, cfg: YoloConfig):
    N = disp.shape[0]
    rows = (jnp.arange(N) < n_valid).astype(disp.dtype)
    per_channel = jnp.sum(disp.reshape(N, -1, cfg.channels_per_box) * rows[:, None, None],
                          axis=(0, 1))
    _, parts_of = channel_kinds(cfg)
    onehot = jnp.asarray(parts_of[:, None] == np.arange(6)[None, :], disp.dtype)
    parts = per_channel @ onehot
    obj, ious = mon[..., 0], mon[..., 1]
    entry = obj > -0.98
    n = jnp.sum(entry)
    nf = n.astype(disp.dtype)
    m_iou = jnp.sum(jnp.where(entry, ious, 0.0)) / nf
    m_obj = jnp.sum(jnp.where(entry, obj, 0.0)) / nf
    p_good = jnp.sum(entry & (ious >= cfg.IoU_limits[0])) / nf
    return DisplayStats(parts, jnp.sum(parts), mon, m_iou, m_obj, p_good, n)


@jax.custom_vjp
def _with_gradient(raw, value, grad):
    """``value`` in the forward pass; d(value[n])/d(raw) = ``grad[n]`` in the backward."""
    return value


def _wg_fwd(raw, value, grad):
    return value, grad


def _wg_bwd(grad, g):
    g = g.reshape(g.shape + (1,) * (grad.ndim - g.ndim))
    return (g * grad, None, None)


_with_gradient.defvjp(_wg_fwd, _wg_bwd)


def _scaled(v, scale):
    """``v`` whose gradient is multiplied by ``scale`` (the value is ``v`` up to rounding)."""
    if isinstance(scale, (int, float)) and scale == 1.0:
        return v
    return v * scale - jax.lax.stop_gradient(v * (scale - 1.0))


def yolo_loss(raw: jax.Array, targets: jax.Array, cfg: YoloConfig, *, nb_im_iter=0,
              key: jax.Array | None = None, loss_scale=1.0, kernel: str | None = None,
              grads: str = "cianna") -> jax.Array:
    """Per-image displayed loss ``(N,)`` of the RAW YOLO conv output ``(N, [G2,] G1, G0, B, K)``.

    ``grads`` chooses the gradient with respect to ``raw``:

    * ``"cianna"`` (default): ``loss_scale * delta``, CIANNA's YOLO delta
      (straight-through activation derivative, association held constant, objectness
      target ``(1 + IoU*)/2`` held constant), through a custom VJP; use it as the
      training objective to train as CIANNA does.
    * ``"exact"``: plain autodiff (times ``loss_scale``) of the same displayed loss as a
      function of ``raw``: the activation's true derivative (zero where it clips), the
      display association held constant (it is piecewise constant), the IoU* inside the
      objectness target differentiated.  The display is never random, so ``key`` and
      ``nb_im_iter`` are not used; it always runs the jax.numpy reference (the Pallas
      kernel has no autodiff): ``kernel`` (or ``cfg.kernel``) "pallas" is an error.

    Every row is treated alike (zero target rows of batch padding get background
    gradient, as in CIANNA); mask rows outside if needed.
    """
    raw = jnp.asarray(raw)
    if grads not in GRADS:
        raise ValueError(f"grads must be one of {GRADS}, received {grads!r}")
    if grads == "exact":
        if (cfg.kernel if kernel is None else kernel) == "pallas":
            raise ValueError('kernel: grads="exact" differentiates the jax.numpy reference; '
                             'the Pallas kernel has no autodiff (use kernel="xla" or "auto")')
        resolve_kernel(cfg, kernel)   # validates the name
        out = activation(raw, cfg, grads="exact")
        out, targets = _check_inputs(out, targets, cfg)
        _, disp, _, _ = _terms(out, jax.lax.stop_gradient(targets), jnp.asarray(0, jnp.int32),
                               None, cfg=cfg, startup_mode="off", want_delta=False,
                               exact=True)
        return _scaled(jnp.sum(disp.reshape(disp.shape[0], -1), axis=1), loss_scale)
    out = activation(jax.lax.stop_gradient(raw), cfg)
    out, targets, mode, nb, key = _prepare(out, targets, cfg, nb_im_iter, key)
    delta, _, _, _, per_image = _run(out, jax.lax.stop_gradient(targets), nb, key, cfg, mode,
                                     kernel)
    grad = (delta * jnp.asarray(loss_scale, delta.dtype)).astype(raw.dtype)
    return _with_gradient(raw, jax.lax.stop_gradient(per_image), jax.lax.stop_gradient(grad))
