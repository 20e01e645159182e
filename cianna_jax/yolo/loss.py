"""CIANNA's YOLO loss: association, gradient ("delta") and displayed loss.

Implements cianna_yolo.md section 4 with the GPU semantics (float absolute values,
0.001 strict-tie tolerance, display target 0 for fit-0 positions, display "difficult"
cut at 2) and *without* the display's x/y swap on non-square grids.

Every (image, cell) is processed independently, as one CUDA thread does: predicted
boxes, "good but not best" locks against every target of the image, the IoU table of
the in-cell targets, optional strict prior restriction, then a sequential association
loop (greedy max IoU, random draws, forced smallest prior, best theoretical prior),
and finally the per-channel deltas and displayed values.  All of it is vectorised over
images and cells with static shapes (targets padded to ``max_nb_obj_per_image``); the
association loop is a ``lax.while_loop`` that runs as many steps as the most crowded
cell has targets.

Randomness (random start-up, ``rand_prob``, ``rand_prob_best_box_assoc``) only comes
from the ``key`` argument; the displayed loss is never random.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .activation import activation, channel_kinds
from .config import KERNELS, YoloConfig
from .iou import iou, iou_corners

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

_PROB_TARGET = 0.98
_NOOBJ_TARGET = 0.02
_IOU_CAP = 0.98
_TIE = 0.001
_CE_CLAMP = 1e-7


class YoloTerms(NamedTuple):
    """Per-element results of the gradient and display routines.

    ``delta`` and ``display``: ``[N, F, G2, G1, G0]``.  ``iou_monitor``
    ``[N, G2, G1, G0, B, 2]`` holds (objectness output, IoU*) of the boxes associated
    by the display routine, (-1, -1) elsewhere.  ``box_locked`` ``[N, G2, G1, G0, B]``
    int32 is the gradient routine's final state (0 free, 1 good-but-not-best lock,
    2 associated).
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
    want = cfg.output_shape
    if output.ndim != 5 or tuple(output.shape[1:]) != want:
        raise ValueError(f"output must have shape [N, {', '.join(map(str, want))}] "
                         f"([N, F, G2, G1, G0]), received {tuple(output.shape)}")
    if targets.ndim != 2 or targets.shape != (output.shape[0], cfg.target_len):
        raise ValueError(f"targets must have shape [N, target_len] = "
                         f"[{output.shape[0]}, {cfg.target_len}], received {tuple(targets.shape)}")
    if cfg.nb_box < 1:
        raise ValueError("the YOLO loss needs nb_box >= 1")
    return output, targets


def _cell_coords(cfg: YoloConfig) -> np.ndarray:
    """Cell indices (x, y, z) for flat cell ``g = z*G1*G0 + y*G0 + x``: (G, 3)."""
    G0, G1, G2 = cfg.grid
    g = np.arange(G0 * G1 * G2)
    return np.stack([g % G0, (g // G0) % G1, g // (G0 * G1)], axis=1).astype(np.float32)


def _smallest_prior(cfg: YoloConfig) -> int:
    """Index of the smallest floored prior (by Euclidean norm), the forced-smallest rule's."""
    pri = np.asarray(cfg.priors_floored, dtype=np.float32)
    return int(np.argmin(np.sqrt(np.sum(pri * pri, axis=1))))


def _same_prior_mask(cfg: YoloConfig) -> np.ndarray:
    """Boxes recognised as "same prior as the smallest" by the forced-smallest rule.

    Reproduces the indexing bug of both CIANNA paths: box ``k``'s prior is read at flat
    offset ``4k`` of the (w, h, d) table instead of ``3k``; reads past the table never
    match here.
    """
    flat = np.asarray(cfg.priors_floored, dtype=np.float32).reshape(-1)
    smallest = _smallest_prior(cfg)
    ref = flat[3 * smallest:3 * smallest + 3]
    mask = np.zeros(cfg.nb_box, dtype=bool)
    for k in range(cfg.nb_box):
        if 4 * k + 3 <= flat.shape[0]:
            mask[k] = bool(np.all(flat[4 * k:4 * k + 3] == ref))
    return mask


# --------------------------------------------------------------------------- pieces


class _Targets(NamedTuple):
    valid: jax.Array        # [N, M] bool
    class_only: jax.Array   # [N] bool
    cls: jax.Array          # [N, M] int32 (0-based)
    box: jax.Array          # [N, M, 6]
    params: jax.Array       # [N, M, P]
    diff: jax.Array         # [N, M] int32


def _parse_targets(targets, cfg: YoloConfig, dtype) -> _Targets:
    N = targets.shape[0]
    M0 = cfg.max_nb_obj_per_image
    M = max(M0, 1)
    L = cfg.target_box_len
    targets = targets.astype(dtype)
    n_raw = jnp.trunc(targets[:, 0]).astype(jnp.int32)
    class_only = n_raw == -1
    n_obj = jnp.where(class_only, min(1, M0), jnp.clip(n_raw, 0, M0))
    boxes = targets[:, 1:1 + M0 * L].reshape(N, M0, L)
    if M0 == 0:
        boxes = jnp.zeros((N, 1, L), dtype)
    valid = jnp.arange(M)[None, :] < n_obj[:, None]
    P = cfg.nb_param
    cls = jnp.trunc(boxes[..., 0]).astype(jnp.int32) - 1
    diff = (jnp.trunc(boxes[..., 7 + P]).astype(jnp.int32) if cfg.diff_flag
            else jnp.zeros((N, M), jnp.int32))
    return _Targets(valid, class_only, cls, boxes[..., 1:7], boxes[..., 7:7 + P], diff)


def _prior_distance(ext, pri, cfg: YoloConfig):
    """Prior distance D between target extents ``ext [..., 3]`` and priors ``[B, 3]``."""
    e = ext[..., None, :]
    if cfg.prior_dist_type == "SIZE":
        return jnp.sqrt(jnp.sum(jnp.square(e - pri), axis=-1))
    if cfg.prior_dist_type == "OFFSET":
        lo, hi = cfg.slopes_and_maxes[1][2], cfg.slopes_and_maxes[1][1]
        ratio = jnp.clip(e / pri, np.exp(np.float32(lo)), np.exp(np.float32(hi)))
        return jnp.sum(jnp.abs(jnp.log(ratio)), axis=-1)
    # "IoU": 1 - IoU of the two boxes centred on the origin
    pb = jnp.concatenate([-0.5 * pri, 0.5 * pri], axis=-1)
    tb = jnp.concatenate([-0.5 * e, 0.5 * e], axis=-1)
    return 1.0 - iou(pb, tb, cfg.IoU_type)


def _prior_rules(tg: _Targets, cfg: YoloConfig):
    """The rules that depend on the target only, ``[N, M, B]`` / ``[N, M]``:
    (best theoretical prior mask, strict-size eligibility or None, forced-smallest
    condition or None)."""
    text = tg.box[..., 3:] - tg.box[..., :3]
    pri = jnp.asarray(np.asarray(cfg.priors_floored, np.float32), text.dtype)
    D = _prior_distance(text, pri, cfg)
    best_prior = jnp.abs(D - jnp.min(D, axis=-1, keepdims=True)) < _TIE
    elig = _strict_eligibility(D, cfg.strict_box_size) if cfg.strict_box_size > 0 else None
    small = None
    if cfg.min_prior_forced_scaling > 0:
        small = jnp.all(text < cfg.min_prior_forced_scaling * pri[_smallest_prior(cfg)], axis=-1)
    return best_prior, elig, small


def _strict_eligibility(D, n: int):
    """Strict prior restriction (section 4.6) on distances ``D [..., B]``."""
    used = jnp.zeros(D.shape, bool)
    for _ in range(n):
        cand = (D > 0) & ~used
        best = jnp.min(jnp.where(cand, D, jnp.inf), axis=-1, keepdims=True)
        sel = jnp.isfinite(best) & (jnp.abs(D - best) < _TIE) & ~used
        used = used | sel
    return used


def _pick(onehot, values, axis=-1):
    """Entry of ``values`` selected by a one-hot mask along ``axis`` (NaN kept)."""
    zero = jnp.zeros((), values.dtype)
    return jnp.sum(jnp.where(onehot, values, zero), axis=axis)


def _onehot(idx, n):
    return idx[..., None] == jnp.arange(n)


def _first_true(mask):
    """One-hot of the first True along the last axis, and whether there is one."""
    return _onehot(jnp.argmax(mask, axis=-1), mask.shape[-1]), jnp.any(mask, axis=-1)


def _best_among(cand, values):
    """One-hot of the largest ``values`` among ``cand`` (first on ties), and whether any."""
    score = jnp.where(cand, values, -jnp.inf)
    return _onehot(jnp.argmax(score, axis=-1), cand.shape[-1]), jnp.any(cand, axis=-1)


class _Assoc(NamedTuple):
    lock: jax.Array     # [N, G, B] int32 0/1/2
    tgt: jax.Array      # [N, G, B] int32 associated target row (valid where lock == 2)
    iou_star: jax.Array  # [N, G, B]


def _associate(cfg, mode, tab, incell, lock0, elig, best_prior, small, tg, o_obj,
               startup, key):
    """Sequential per-cell association loop (section 4.7), batched over (N, G).

    ``mode``: "grad" (gradient routine), "complete" or "natural" (display routine).
    ``tab [N, G, M, B]`` IoU of every target with every predicted box; ``incell
    [N, G, M]``; ``lock0 [N, G, B]`` good-but-not-best locks; ``elig [N, M, B]`` strict
    eligibility or None; ``best_prior [N, M, B]``; ``small [N, M]`` forced-smallest
    condition or None; ``startup``: None or a bool scalar (random start-up active).
    Selections are one-hot masks (cheaper to compile than gathers).
    """
    N, G, M, B = tab.shape
    theta = cfg.IoU_limits
    dtype = tab.dtype
    n_in = jnp.sum(incell, axis=-1)
    n_iter = jnp.max(n_in)
    rank = jnp.cumsum(incell, axis=-1) - 1
    randomised = mode == "grad" and key is not None
    use_rand_prob = randomised and cfg.rand_prob > 0
    use_rand_best = randomised and cfg.rand_prob_best_box_assoc > 0
    use_forced = mode != "natural" and small is not None
    use_best_prior = mode != "natural"
    if mode == "natural":
        elig = None
    same_prior = None
    if use_forced:
        same_prior = jnp.asarray(_same_prior_mask(cfg))
    tab_ok = tab > -2.0  # False for NaN
    if elig is not None:
        tab_ok = tab_ok & elig[:, None]
    co = tg.class_only[:, None]
    n_rand = 2 + 2 * B
    diff_t = tg.diff[:, None, :]
    small_t = small[:, None, :] if use_forced else None
    bp_t = best_prior[:, None, :, :] if use_best_prior else None

    def random_box(u, col_free):
        """One-hot of the first of up to 2B draws ``floor(U*B)`` hitting a free box."""
        bb = jnp.clip(jnp.floor(u[..., 2:2 + 2 * B] * B).astype(jnp.int32), 0, B - 1)
        bb_hot = _onehot(bb, B)                                   # [N, G, 2B, B]
        ok = jnp.any(bb_hot & col_free[..., None, :], axis=-1)
        first, found = _first_true(ok)
        return jnp.any(bb_hot & first[..., None], axis=-2), found

    def body(state):
        i, row_free, col_free, lock, tgt, istar = state
        active = i < n_in
        u = (jax.random.uniform(jax.random.fold_in(key, i), (N, G, n_rand), dtype)
             if randomised else None)

        # B1: greedy max IoU over the remaining (target, box) pairs
        avail = row_free[..., :, None] & col_free[..., None, :] & tab_ok
        hot, has = _best_among(avail.reshape(N, G, M * B), tab.reshape(N, G, M * B))
        hot = hot.reshape(N, G, M, B)
        t_hot = jnp.any(hot, axis=-1)                             # [N, G, M]
        b_hot = jnp.any(hot, axis=-2)                             # [N, G, B]
        tab_t = _pick(t_hot[..., None], tab, axis=-2)             # [N, G, B]
        iou_g = _pick(b_hot, tab_t)
        free_t = col_free & (tab_t > -2.0)
        decided = jnp.zeros((N, G), bool)
        if use_rand_prob:  # B2
            fire = u[..., 0] < cfg.rand_prob
            rb, found = random_box(u, col_free)
            b_hot = jnp.where((fire & found)[..., None], rb, b_hot)
            decided = fire
        if use_forced:  # B3
            cond = ~decided & jnp.any(t_hot & small_t, axis=-1)
            fb, found = _best_among(free_t & same_prior, tab_t)
            b_hot = jnp.where((cond & found)[..., None], fb, b_hot)
            decided = decided | cond
        if use_best_prior:  # B4
            low = iou_g < theta[1]
            if use_rand_best:
                low = low | (u[..., 1] < cfg.rand_prob_best_box_assoc)
            cond = ~decided & low
            bp_row = jnp.any(t_hot[..., None] & bp_t, axis=-2)
            pb, found = _best_among(free_t & bp_row, tab_t)
            b_hot = jnp.where((cond & found)[..., None], pb, b_hot)

        if startup is not None:  # A: random start-up, targets in row order
            ts_hot = incell & (rank == i)
            bs_hot, found_s = random_box(u, col_free)
            t_hot = jnp.where(startup, ts_hot, t_hot)
            b_hot = jnp.where(startup, bs_hot, b_hot)
            has = jnp.where(startup, found_s, has)
            tab_t = _pick(t_hot[..., None], tab, axis=-2)

        go = active & has
        iou_b = _pick(b_hot, tab_t)
        i_star = jnp.where(co, jnp.asarray(theta[0], dtype), jnp.minimum(iou_b, _IOU_CAP))
        skip = jnp.zeros((N, G), bool)
        if cfg.diff_flag:
            difficult = jnp.any(t_hot & (diff_t > 0), axis=-1)
            if mode == "natural":
                skip = difficult
            else:
                o_b = _pick(b_hot, o_obj)
                skip = difficult & ((i_star < theta[6]) | (o_b < theta[7]))
        row_free = row_free & ~(go[..., None] & t_hot)
        hit = (go & ~skip)[..., None] & b_hot
        col_free = col_free & ~hit
        lock = jnp.where(hit, 2, lock)
        t_idx = jnp.argmax(t_hot, axis=-1).astype(jnp.int32)
        tgt = jnp.where(hit, t_idx[..., None], tgt)
        istar = jnp.where(hit, i_star[..., None], istar)
        return i + 1, row_free, col_free, lock, tgt, istar

    state = (jnp.asarray(0, jnp.int32), incell, jnp.ones((N, G, B), bool), lock0,
             jnp.zeros((N, G, B), jnp.int32), jnp.full((N, G, B), -1.0, dtype))
    state = jax.lax.while_loop(lambda s: s[0] < n_iter, body, state)
    return _Assoc(state[3], state[4], state[5])


def _part_fns(cfg: YoloConfig, grad: bool):
    """(sig, lin, sq) of a part: the delta's activation factors and error, or the display's.

    ``sig(p, x)``: a*x*(1-x) (delta) or 1; ``lin(p)``: a or 1; ``sq(err, x)``: x*err for
    the delta, x*err^2/2 for the display.
    """
    sm = cfg.slopes_and_maxes

    def sig(p, x):
        return sm[p][0] * x * (1.0 - x) if grad else 1.0

    def lin(p):
        return sm[p][0] if grad else 1.0

    def sq(err, x):
        return x * err if grad else 0.5 * x * jnp.square(err)

    return sig, lin, sq


def _presence(cfg: YoloConfig, p: int, x, target, *, i_star, lam, assoc, free, grad: bool,
              thresholds: bool):
    """Probability (``p`` 2) or objectness (3) value of every box; None if not fitted.

    Associated boxes aim at ``target`` (gated by the part's IoU limit when
    ``thresholds``), free boxes at the no-object value scaled by ``lam``.
    """
    fit, w = cfg.fit_parts[p], cfg.error_scales[p]
    if fit == -1:
        return None
    sig, _, sq = _part_fns(cfg, grad)
    if fit == 1:
        v_assoc = sq(x - target, w * sig(p, x))
        if thresholds:
            v_assoc = jnp.where(i_star > cfg.IoU_limits[p], v_assoc, 0.0)
        v_free = sq(x - _NOOBJ_TARGET, lam * w * sig(p, x))
    else:
        v_assoc = sq(x - 0.5, w * sig(p, x))
        v_free = sq(x - 0.5, lam * w * sig(p, x))
    return jnp.where(assoc, v_assoc, jnp.where(free, v_free, 0.0))


def _box_values(cfg, o, assoc: _Assoc, tg: _Targets, cc, mode):
    """Per-element delta (mode "grad") or displayed value, ``[N, G, B, K]``."""
    N, G, B, K = o.shape
    dtype = o.dtype
    C, P = cfg.nb_class, cfg.nb_param
    theta = cfg.IoU_limits
    w = cfg.error_scales
    sm = cfg.slopes_and_maxes
    fit = cfg.fit_parts
    grad = mode == "grad"
    thresholds = mode != "natural"
    cell = jnp.asarray(np.asarray(cfg.cell, np.float32), dtype)
    pri = jnp.asarray(np.asarray(cfg.priors_floored, np.float32), dtype)
    lam = jnp.asarray(np.asarray(cfg.prior_noobj_prob, np.float32), dtype)[None, None, :]
    rho = jnp.asarray(np.asarray(cfg.param_ind_scales, np.float32), dtype)

    assoc_m = assoc.lock == 2
    free_m = assoc.lock == 0
    j = jnp.where(assoc_m, assoc.tgt, 0)
    n_idx = jnp.arange(N)[:, None, None]
    tbox = tg.box[n_idx, j]                       # [N, G, B, 6]
    tcls = tg.cls[n_idx, j]                       # [N, G, B]
    tpar = tg.params[n_idx, j]                    # [N, G, B, P]
    tdiff = tg.diff[n_idx, j]
    co = tg.class_only[:, None, None]
    i_star = assoc.iou_star
    diff_ok3 = (tdiff < 3) if cfg.diff_flag else jnp.ones_like(assoc_m)
    diff_ok2 = (tdiff < 2) if cfg.diff_flag else jnp.ones_like(assoc_m)

    tmin, tmax = tbox[..., :3], tbox[..., 3:]
    tctr = 0.5 * (tmin + tmax)
    ext = tmax - tmin
    t_pos = (tctr - cc[None, :, None, :] * cell) / cell
    lo1, hi1 = sm[1][2], sm[1][1]
    t_size = jnp.log(jnp.clip(ext / pri, np.exp(np.float32(lo1)), np.exp(np.float32(hi1))))
    dim_m = jnp.asarray(np.arange(3) < cfg.fit_dim)

    sig, lin, sq = _part_fns(cfg, grad)

    zeros3 = jnp.zeros((N, G, B, 3), dtype)
    # position
    op = o[..., 0:3]
    if fit[0] == 1:
        m = assoc_m[..., None] & dim_m & ~co[..., None] & diff_ok3[..., None]
        pos = jnp.where(m, sq(op - t_pos, w[0] * sig(0, op)), 0.0)
    elif fit[0] == 0:
        m = assoc_m[..., None] & dim_m
        pos = jnp.where(m, sq(op - 0.5, w[0] * sig(0, op)) if grad else 0.5 * w[0] * op * op, 0.0)
    else:
        pos = zeros3
    # size
    osz = o[..., 3:6]
    if fit[1] == 1:
        m = assoc_m[..., None] & dim_m & ~co[..., None] & diff_ok3[..., None]
        size = jnp.where(m, sq(osz - t_size, w[1] * lin(1)), 0.0)
    elif fit[1] == 0:
        m = assoc_m[..., None] & dim_m
        size = jnp.where(m, sq(osz, w[1] * lin(1)), 0.0)
    else:
        size = zeros3

    # probability and objectness
    def presence(p, x, target):
        v = _presence(cfg, p, x, target, i_star=i_star, lam=lam, assoc=assoc_m, free=free_m,
                      grad=grad, thresholds=thresholds)
        return jnp.zeros((N, G, B), dtype) if v is None else v

    prob = presence(2, o[..., 6], _PROB_TARGET)
    obj = presence(3, o[..., 7], 0.5 * (1.0 + i_star))

    # classes
    oc = o[..., 8:8 + C]
    onehot = tcls[..., None] == jnp.arange(C)
    if fit[4] == 1 and C > 0:
        m = assoc_m & diff_ok2
        if thresholds:
            m = m & (i_star > theta[4])
        if cfg.class_softmax:
            if grad:
                vc = w[4] * (oc - onehot.astype(dtype))
            else:
                ce = -jnp.log(jnp.maximum(oc, _CE_CLAMP))
                vc = jnp.where(onehot, w[4] * ce, 0.0)
        else:
            tc = jnp.where(onehot, _PROB_TARGET, _NOOBJ_TARGET)
            vc = sq(oc - tc, w[4] * sig(4, oc))
        cls = jnp.where(m[..., None], vc, 0.0)
    elif fit[4] == 0 and C > 0 and not cfg.class_softmax:
        cls = jnp.where(assoc_m[..., None], sq(oc - 0.5, w[4] * sig(4, oc)), 0.0)
    else:
        cls = jnp.zeros((N, G, B, C), dtype)

    # parameters
    opar = o[..., 8 + C:8 + C + P]
    if fit[5] == 1 and P > 0:
        m = assoc_m & diff_ok2
        if thresholds:
            m = m & (i_star > theta[5])
        par = jnp.where(m[..., None], rho * sq(opar - tpar, w[5] * lin(5)), 0.0)
    elif fit[5] == 0 and P > 0:
        par = jnp.where(assoc_m[..., None], rho * sq(opar - 0.5, w[5] * lin(5)), 0.0)
    else:
        par = jnp.zeros((N, G, B, P), dtype)

    return jnp.concatenate(
        [pos, size, prob[..., None], obj[..., None], cls, par], axis=-1).astype(dtype)


def _to_layout(v, cfg: YoloConfig):
    """``[N, G, B, K]`` -> ``[N, F, G2, G1, G0]``."""
    N = v.shape[0]
    G0, G1, G2 = cfg.grid
    v = jnp.transpose(v, (0, 2, 3, 1))
    return v.reshape(N, cfg.nb_filters, G2, G1, G0)


def _monitor_layout(assoc: _Assoc, o_obj, cfg: YoloConfig):
    N, G, B = o_obj.shape
    G0, G1, G2 = cfg.grid
    m = assoc.lock == 2
    mon = jnp.stack([jnp.where(m, o_obj, -1.0), jnp.where(m, assoc.iou_star, -1.0)], axis=-1)
    return mon.reshape(N, G2, G1, G0, B, 2)


@partial(jax.jit, static_argnames=("cfg", "startup_mode", "want_delta", "want_display"))
def _terms(output, targets, nb_im_iter, key, *, cfg: YoloConfig, startup_mode: str,
           want_delta: bool = True, want_display: bool = True):
    dtype = jnp.result_type(output.dtype, jnp.float32)
    N = output.shape[0]
    B, K, G = cfg.nb_box, cfg.channels_per_box, cfg.nb_cells
    o = output.astype(dtype).reshape(N, B, K, G).transpose(0, 3, 1, 2)  # [N, G, B, K]
    tg = _parse_targets(targets, cfg, dtype)
    cc = jnp.asarray(_cell_coords(cfg), dtype)                           # [G, 3]
    cell = jnp.asarray(np.asarray(cfg.cell, np.float32), dtype)
    pri = jnp.asarray(np.asarray(cfg.priors_floored, np.float32), dtype)  # [B, 3]

    # predicted boxes [N, G, B, 6]
    ctr = (o[..., 0:3] + cc[None, :, None, :]) * cell
    ext = pri * jnp.exp(o[..., 3:6])
    pred = jnp.concatenate([ctr - 0.5 * ext, ctr + 0.5 * ext], axis=-1)
    o_obj = o[..., 7]

    # targets: cell membership, IoU with every predicted box, locks
    tmin, tmax = tg.box[..., :3], tg.box[..., 3:]
    tcell = jnp.trunc((0.5 * (tmin + tmax)) / cell)                        # [N, M, 3]
    incell = tg.valid[:, None, :] & jnp.all(tcell[:, None, :, :] == cc[None, :, None, :],
                                            axis=-1)                      # [N, G, M]
    tab = iou_corners([pred[:, :, None, :, i] for i in range(6)],
                      [tg.box[:, None, :, None, i] for i in range(6)], cfg.IoU_type)  # [N,G,M,B]
    lock0 = jnp.any(tg.valid[:, None, :, None] & (tab > cfg.IoU_limits[0]), axis=2)
    lock0 = lock0.astype(jnp.int32)

    best_prior, elig, small = _prior_rules(tg, cfg)

    if startup_mode == "on":
        startup = jnp.asarray(True)
    elif startup_mode == "traced":
        startup = jnp.asarray(nb_im_iter) <= cfg.rand_startup
    else:
        startup = None
    random_used = key is not None
    common = dict(tab=tab, incell=incell, lock0=lock0, elig=elig, best_prior=best_prior,
                  small=small, tg=tg, o_obj=o_obj)

    g_assoc = None
    if want_delta or (want_display and cfg.error_type == "complete" and not random_used):
        g_assoc = _associate(cfg, "grad", startup=startup, key=key, **common)
    delta = box_locked = None
    G0, G1, G2 = cfg.grid
    if want_delta:
        delta = _to_layout(_box_values(cfg, o, g_assoc, tg, cc, "grad"), cfg)
        box_locked = g_assoc.lock.reshape(N, G2, G1, G0, B)
    display = monitor = None
    if want_display:
        if cfg.error_type == "complete" and not random_used:
            d_assoc = g_assoc
        else:
            d_assoc = _associate(cfg, cfg.error_type, startup=None, key=None, **common)
        display = _to_layout(_box_values(cfg, o, d_assoc, tg, cc, cfg.error_type), cfg)
        monitor = _monitor_layout(d_assoc, o_obj, cfg)
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
    jax has the Pallas Triton lowering, the jax.numpy reference elsewhere; "pallas"
    forces the kernel (interpreted off GPU: slow, for tests and debugging).
    """
    kernel = cfg.kernel if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, received {kernel!r}")
    if kernel != "auto":
        return kernel
    from pallas_kernels._compat import on_gpu, triton_available

    return "pallas" if on_gpu() and triton_available() else "xla"


def _run(output, targets, nb, key, cfg: YoloConfig, mode: str, kernel, *, want_delta=True,
         want_display=True):
    """(delta, display, monitor, locks, per-image displayed loss) by the chosen kernel."""
    if resolve_kernel(cfg, kernel) == "pallas":
        from pallas_kernels.yolo_loss import yolo_terms_sharded

        t = yolo_terms_sharded(output, targets, nb, key, cfg=cfg, startup_mode=mode,
                               want_delta=want_delta, want_display=want_display)
        per_image = None if t.channel_sums is None else jnp.sum(t.channel_sums, axis=1)
        return t.delta, t.display, t.iou_monitor, t.box_locked, per_image
    d, disp, mon, locked = _terms(output, targets, nb, key, cfg=cfg, startup_mode=mode,
                                  want_delta=want_delta, want_display=want_display)
    per_image = None if disp is None else jnp.sum(disp.reshape(disp.shape[0], -1), axis=1)
    return d, disp, mon, locked, per_image


def yolo_terms(output: jax.Array, targets: jax.Array, cfg: YoloConfig, *, nb_im_iter=0,
               key: jax.Array | None = None, kernel: str | None = None) -> YoloTerms:
    """Delta, displayed values, IoU monitor and box locks for an ACTIVATED output.

    ``output`` ``[N, F, G2, G1, G0]`` (from :func:`activation`), ``targets``
    ``[N, target_len]`` CIANNA target rows.  ``nb_im_iter`` is CIANNA's
    ``epoch * train_size`` (random start-up while ``nb_im_iter <= rand_startup``; it may
    be traced).  ``key`` is required whenever an association can be random.
    ``kernel``: "auto", "pallas" or "xla" (default ``cfg.kernel``; see
    :func:`resolve_kernel`).
    """
    output, targets, mode, nb, key = _prepare(output, targets, cfg, nb_im_iter, key)
    d, disp, mon, locked, _ = _run(output, targets, nb, key, cfg, mode, kernel)
    return YoloTerms(d, disp, mon, locked)


def delta_and_display(output: jax.Array, targets: jax.Array, cfg: YoloConfig, *,
                      nb_im_iter=0, key: jax.Array | None = None, kernel: str | None = None
                      ) -> tuple[jax.Array, jax.Array]:
    """``(delta, display)``, both ``[N, F, G2, G1, G0]``, for an ACTIVATED output.

    ``delta`` is CIANNA's dL/dx (no TC scaling); ``display`` the per-element displayed
    loss (x/y swap of non-square grids fixed).  ``kernel`` "auto" | "pallas" | "xla"
    forces an implementation (same results).  See :func:`yolo_terms`.
    """
    t = yolo_terms(output, targets, cfg, nb_im_iter=nb_im_iter, key=key, kernel=kernel)
    return t.delta, t.display


def display_stats(output: jax.Array, targets: jax.Array, cfg: YoloConfig, *,
                  n_valid=None, kernel: str | None = None) -> DisplayStats:
    """Per-part display sums and IoU-monitor statistics for an ACTIVATED output.

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

    ``display`` ``[N, F, G2, G1, G0]`` and ``iou_monitor`` ``[N, G2, G1, G0, B, 2]`` as
    returned by :func:`yolo_terms`; see :func:`display_stats` for ``n_valid``.
    """
    n_valid = display.shape[0] if n_valid is None else n_valid
    return _stats(display, iou_monitor, jnp.asarray(n_valid, jnp.int32), cfg=cfg)


@partial(jax.jit, static_argnames=("cfg",))
def _stats(disp, mon, n_valid, *, cfg: YoloConfig):
    N = disp.shape[0]
    rows = (jnp.arange(N) < n_valid).astype(disp.dtype)
    per_channel = jnp.sum(
        (disp * rows[:, None, None, None, None]).reshape(N, cfg.nb_box, cfg.channels_per_box, -1),
        axis=(0, 1, 3))
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


def yolo_loss(raw: jax.Array, targets: jax.Array, cfg: YoloConfig, *, nb_im_iter=0,
              key: jax.Array | None = None, loss_scale=1.0, kernel: str | None = None
              ) -> jax.Array:
    """Per-image displayed loss ``(N,)`` of the RAW YOLO conv output.

    Its gradient with respect to ``raw`` is ``loss_scale * delta`` (CIANNA's YOLO
    delta, straight-through activation derivative, association held constant): use it
    as the training objective.  Every row is treated alike (zero target rows of batch
    padding get background gradient, as in CIANNA); mask rows outside if needed.
    """
    raw = jnp.asarray(raw)
    out = activation(jax.lax.stop_gradient(raw), cfg)
    out, targets, mode, nb, key = _prepare(out, targets, cfg, nb_im_iter, key)
    delta, _, _, _, per_image = _run(out, jax.lax.stop_gradient(targets), nb, key, cfg, mode,
                                     kernel)
    grad = (delta * jnp.asarray(loss_scale, delta.dtype)).astype(raw.dtype)
    return _with_gradient(raw, jax.lax.stop_gradient(per_image), jax.lax.stop_gradient(grad))
