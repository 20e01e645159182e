"""CIANNA's YOLO rules, written once for the jax.numpy reference and the Pallas kernel.

cianna_yolo.md section 4 (GPU semantics): the constants of the loss, the parsing of
CIANNA's target rows, the per-target prior rules (best theoretical prior, strict size
eligibility, forced smallest prior), the predicted boxes, the sequential per-cell
association loop and the per-channel delta / displayed values.

Layout convention.  The per-cell functions work on arrays of one common rank whose
axes are the targets (``m_axis``), the boxes (``b_axis``) and any number of cell axes;
an array has size 1 along the axes it does not vary on: "per target" arrays along the
box axis, "per box" arrays along the target axis, "per cell" arrays along both.  The
reference (:mod:`cianna_jax.yolo.loss`) uses ``(N, G, M, B)``; the kernel
(:mod:`pallas_kernels.yolo_loss`) ``(M, B, cells)``.  Everything here only uses what
the Pallas Triton lowering accepts: no gathers (selections are one-hot masks), no
boolean ``any`` (reduced through int32), no value slicing, no concatenation.
Per-channel values are lists of arrays, one per channel of a box.

Per-target quantities of a whole batch (:func:`parse_targets`, :func:`prior_rules`,
:func:`target_cells`) are plain jax.numpy on ``(N, M, ...)`` arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .config import YoloConfig
from .iou import iou

__all__ = [
    "PROB_TARGET", "NOOBJ_TARGET", "IOU_CAP", "TIE", "CE_CLAMP", "IOU_FLOOR",
    "Targets", "PriorRules", "Association",
    "floored_priors", "smallest_prior", "same_prior_mask", "cell_coords",
    "parse_targets", "target_cells", "prior_distance", "strict_eligibility", "prior_rules",
    "predicted_corners", "in_cell", "good_locks", "iou_star", "associate",
    "reduce_any", "pick", "first_best",
    "part_fns", "presence", "box_values",
]

PROB_TARGET = 0.98
"""Probability target of an associated box, class target of the true class (sigmoid)."""
NOOBJ_TARGET = 0.02
"""Probability / objectness target of a free box, class target of the other classes."""
IOU_CAP = 0.98
"""IoU* (the objectness target's IoU) is capped here."""
TIE = 0.001
"""Prior distances closer than this to the smallest one tie (best / strict priors)."""
CE_CLAMP = 1e-7
"""Softmax class outputs are clamped here in the displayed cross-entropy."""
IOU_FLOOR = -2.0
"""Below every IoU of the family: ``tab > IOU_FLOOR`` is False only for NaN."""

_BIG = 2 ** 30   # larger than any flat (target, box) index


# --------------------------------------------------------------------------- statics


def floored_priors(cfg: YoloConfig) -> np.ndarray:
    """Priors ``(B, 3)`` float32 as the loss uses them (extents floored at 1 pixel)."""
    return np.asarray(cfg.priors_floored, np.float32).reshape(cfg.nb_box, 3)


def smallest_prior(cfg: YoloConfig) -> int:
    """Index of the smallest floored prior (by Euclidean norm), the forced-smallest rule's."""
    pri = floored_priors(cfg)
    return int(np.argmin(np.sqrt(np.sum(pri * pri, axis=1))))


def same_prior_mask(cfg: YoloConfig) -> np.ndarray:
    """Boxes ``(B,)`` recognised as "same prior as the smallest" by the forced-smallest rule.

    Reproduces the indexing bug of both CIANNA paths: box ``k``'s prior is read at flat
    offset ``4k`` of the (w, h, d) table instead of ``3k``; reads past the table never
    match here.
    """
    flat = floored_priors(cfg).reshape(-1)
    smallest = smallest_prior(cfg)
    ref = flat[3 * smallest:3 * smallest + 3]
    mask = np.zeros(cfg.nb_box, dtype=bool)
    for k in range(cfg.nb_box):
        if 4 * k + 3 <= flat.shape[0]:
            mask[k] = bool(np.all(flat[4 * k:4 * k + 3] == ref))
    return mask


def cell_coords(g, grid: Sequence[int]):
    """Cell indices (x, y, z), float32, of flat cells ``g = z*G1*G0 + y*G0 + x``.

    ``g`` is an integer numpy or jax array (any shape); ``grid`` is (G0, G1, G2).
    """
    G0, G1 = int(grid[0]), int(grid[1])
    return [(g % G0).astype(np.float32), ((g // G0) % G1).astype(np.float32),
            (g // (G0 * G1)).astype(np.float32)]


# --------------------------------------------------------------------------- targets


class Targets(NamedTuple):
    """CIANNA target rows parsed for a batch (``M = max(max_nb_obj_per_image, 1)``)."""

    valid: jax.Array        # (N, M) bool: slot holds a target
    class_only: jax.Array   # (N,) bool: the row's count was -1 (class-only image)
    cls: jax.Array          # (N, M) int32, 0-based class
    box: jax.Array          # (N, M, 6) corners (xmin, ymin, zmin, xmax, ymax, zmax)
    params: jax.Array       # (N, M, P)
    diff: jax.Array         # (N, M) int32 difficulty (0 without diff_flag)


def parse_targets(targets, cfg: YoloConfig, dtype=jnp.float32) -> Targets:
    """Parse CIANNA target rows ``(N, target_len)``.

    A row is ``[count, (class, xmin, ymin, zmin, xmax, ymax, zmax, params..., [diff]) * M]``;
    ``count`` -1 marks a class-only image (one target, IoU* fixed at good_IoU_lim).
    """
    N = targets.shape[0]
    M0 = cfg.max_nb_obj_per_image
    M = max(M0, 1)
    L = cfg.target_box_len
    targets = jnp.asarray(targets).astype(dtype)
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
    return Targets(valid, class_only, cls, boxes[..., 1:7], boxes[..., 7:7 + P], diff)


def target_cells(box, cfg: YoloConfig):
    """Cell indices ``(..., 3)`` (float, truncated) holding the centre of corner boxes."""
    cell = jnp.asarray(np.asarray(cfg.cell, np.float32), box.dtype)
    return jnp.trunc((0.5 * (box[..., :3] + box[..., 3:])) / cell)


class PriorRules(NamedTuple):
    """The association rules that depend on the target only (section 4.6).

    ``best_prior`` ``(N, M, B)``: the priors closest to the target (ties within
    :data:`TIE`); ``eligible`` ``(N, M, B)``: the ``strict_box_size`` closest distinct
    distances (None when the restriction is off); ``small`` ``(N, M)``: every extent is
    below ``min_prior_forced_scaling`` times the smallest prior (None when off).
    """

    best_prior: jax.Array
    eligible: jax.Array | None
    small: jax.Array | None


def prior_distance(ext, pri, cfg: YoloConfig):
    """Prior distance ``D [..., B]`` of target extents ``ext [..., 3]`` to priors ``[B, 3]``."""
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


def strict_eligibility(D, n: int):
    """Strict prior restriction on distances ``D [..., B]``: the ``n`` smallest positive
    distinct distances (ties within :data:`TIE`) are eligible."""
    used = jnp.zeros(D.shape, bool)
    for _ in range(n):
        cand = (D > 0) & ~used
        best = jnp.min(jnp.where(cand, D, jnp.inf), axis=-1, keepdims=True)
        sel = jnp.isfinite(best) & (jnp.abs(D - best) < TIE) & ~used
        used = used | sel
    return used


def prior_rules(tg: Targets, cfg: YoloConfig) -> PriorRules:
    """:class:`PriorRules` of parsed targets."""
    text = tg.box[..., 3:] - tg.box[..., :3]
    pri = jnp.asarray(floored_priors(cfg), text.dtype)
    D = prior_distance(text, pri, cfg)
    best_prior = jnp.abs(D - jnp.min(D, axis=-1, keepdims=True)) < TIE
    elig = strict_eligibility(D, cfg.strict_box_size) if cfg.strict_box_size > 0 else None
    small = None
    if cfg.min_prior_forced_scaling > 0:
        small = jnp.all(text < cfg.min_prior_forced_scaling * pri[smallest_prior(cfg)], axis=-1)
    return PriorRules(best_prior, elig, small)


# --------------------------------------------------------------------------- helpers


def reduce_any(x, axis: int):
    """``any`` along ``axis`` (kept, size 1), through an int32 max (Triton has no reduce_or)."""
    return jnp.max(x.astype(jnp.int32), axis=axis, keepdims=True) > 0


def pick(onehot, values, axis: int):
    """Entry of ``values`` selected by a one-hot mask along ``axis`` (kept, size 1)."""
    return jnp.sum(jnp.where(onehot, values, jnp.zeros((), values.dtype)), axis=axis,
                   keepdims=True)


def first_best(cand, values, index, axis: int):
    """One-hot along ``axis`` of the first largest ``values`` among ``cand``, and whether
    there is a candidate.  ``index`` holds the positions along ``axis``."""
    score = jnp.where(cand, values, -jnp.inf)
    best = jnp.max(score, axis=axis, keepdims=True)
    first = jnp.min(jnp.where(score == best, index, _BIG), axis=axis, keepdims=True)
    return index == first, reduce_any(cand, axis)


def _iota(shape, axis: int):
    return jax.lax.broadcasted_iota(jnp.int32, shape, axis)


# --------------------------------------------------------------------------- cells


def predicted_corners(cfg: YoloConfig, o: Sequence, cc: Sequence, pri: Sequence) -> list:
    """Corners (6 arrays) of the predicted boxes from the activated channels ``o``
    (position 0-2, size 3-5), the cell coordinates ``cc`` and the floored priors ``pri``
    (3 arrays each, broadcastable)."""
    lo, hi = [], []
    for d in range(3):
        ctr = (o[d] + cc[d]) * float(cfg.cell[d])
        ext = pri[d] * jnp.exp(o[3 + d])
        lo.append(ctr - 0.5 * ext)
        hi.append(ctr + 0.5 * ext)
    return lo + hi


def in_cell(valid, tcell: Sequence, cc: Sequence):
    """Targets whose centre lies in the cell: ``valid`` and ``tcell[d] == cc[d]`` for every d."""
    out = valid
    for d in range(3):
        out = out & (tcell[d] == cc[d])
    return out


def good_locks(cfg: YoloConfig, tab, valid, m_axis: int):
    """Initial box state, int32 per box: 1 ("good but not best" lock) where the box's IoU
    with any valid target of the image exceeds good_IoU_lim, else 0."""
    return reduce_any(valid & (tab > cfg.IoU_limits[0]), m_axis).astype(jnp.int32)


def iou_star(cfg: YoloConfig, iou_value, class_only):
    """IoU* of an associated (box, target) pair: the IoU capped at :data:`IOU_CAP`, or
    good_IoU_lim for a class-only image."""
    return jnp.where(class_only, jnp.asarray(cfg.IoU_limits[0], iou_value.dtype),
                     jnp.minimum(iou_value, IOU_CAP))


class Association(NamedTuple):
    """Result of :func:`associate`, per box: ``lock`` int32 (0 free, 1 good-but-not-best
    lock, 2 associated), ``target`` int32 (the associated target's slot where lock is
    2, else 0) and ``iou_star`` (IoU* of associated boxes, else -1)."""

    lock: jax.Array
    target: jax.Array
    iou_star: jax.Array


def associate(cfg: YoloConfig, mode: str, tab, *, m_axis: int, b_axis: int, incell, lock0,
              col_free, best_prior=None, eligible=None, small=None, same_prior=None,
              difficult=None, class_only, o_obj, startup=None,
              draws: Callable | None = None) -> Association:
    """The sequential per-cell association loop (section 4.7), batched over the cells.

    ``mode``: "grad" (gradient routine), "complete" or "natural" (display routine: no
    forced smallest prior, no best-prior re-association, no strict eligibility, and a
    difficult target is always skipped).  Arrays follow the module's layout convention:

    * ``tab`` per (target, box): IoU of every target with every predicted box;
      ``best_prior``, ``eligible`` (None: no strict restriction) per (target, box);
    * ``incell`` per target: the slot holds a target centred in the cell; ``small``
      (forced-smallest condition, None: rule off), ``difficult`` (None: no diff_flag)
      per target;
    * ``lock0`` (:func:`good_locks`), ``col_free`` (the boxes that exist; padding boxes
      False), ``same_prior`` (None: rule off), ``o_obj`` (objectness output) per box;
    * ``class_only``, ``startup`` (None: no random start-up; else a bool, run-time
      start-up switch) per cell or scalar;
    * ``draws``: None (nothing random) or ``draws(step)`` -> ``u(r)``, the ``r``-th
      uniform draw of the step per cell (0: rand_prob, 1: best-box association,
      ``2 + j``: the ``j``-th of the 2B random box draws).  ``u`` may also have a
      ``boxes()`` method giving the 2B box draws at once, per cell along a new last
      axis: the random box is then chosen in a few vectorised operations instead of
      2B unrolled steps (same result; the reference does, the Pallas kernel does not).

    Each step takes, in every cell with targets left, the best remaining (target, box)
    pair by IoU (first in (target, box) order on ties), then in order: a random free
    box (rand_prob), the best free box of the smallest prior's kind (forced smallest
    prior), the best free box among the best theoretical priors (IoU below
    low_IoU_best_box_assoc, or by chance); in the random start-up phase targets are
    taken in slot order with a random free box.  Difficult targets may be skipped.
    """
    theta = cfg.IoU_limits
    rank_ = tab.ndim
    m, b = m_axis % rank_, b_axis % rank_
    M, B = tab.shape[m], tab.shape[b]
    dtype = tab.dtype
    shape_t = tuple(1 if a == b else s for a, s in enumerate(tab.shape))   # per target
    shape_b = tuple(1 if a == m else s for a, s in enumerate(tab.shape))   # per box
    mi = _iota(tuple(M if a == m else 1 for a in range(rank_)), m)
    bi = _iota(tuple(B if a == b else 1 for a in range(rank_)), b)
    incell = jnp.broadcast_to(incell, shape_t)
    inc32 = incell.astype(jnp.int32)
    n_in = jnp.sum(inc32, axis=m, keepdims=True)
    n_iter = jnp.max(n_in)
    rank = jnp.cumsum(inc32, axis=m) - 1
    natural = mode == "natural"
    tab_ok = tab > IOU_FLOOR   # False for NaN
    elig = None if natural else eligible
    if elig is not None:
        tab_ok = tab_ok & elig
    randomised = draws is not None
    use_rand_prob = randomised and cfg.rand_prob > 0
    use_rand_best = randomised and cfg.rand_prob_best_box_assoc > 0
    use_forced = not natural and small is not None
    use_best_prior = not natural
    nb = cfg.nb_box   # the real boxes (``B`` may include padding)

    def random_box(u, col_free):
        """One-hot of the first of 2B draws ``floor(U*B)`` hitting a free box (the first
        draw when none does), and whether one did."""
        if hasattr(u, "boxes"):
            bb = jnp.clip(jnp.floor(u.boxes() * nb).astype(jnp.int32), 0, nb - 1)  # (..., 2B)
            ok = reduce_any((bi[..., None] == bb) & col_free[..., None], b)
            j = _iota(bb.shape, bb.ndim - 1)
            first = jnp.min(jnp.where(ok, j, _BIG), axis=-1)
            found = first < _BIG
            pos = jnp.where(found, first, 0)[..., None]
            chosen = pick(j == pos, bb, -1)[..., 0]
            return bi == chosen, found
        chosen = found = None
        for j in range(2 * nb):
            bb = jnp.clip(jnp.floor(u(2 + j) * nb).astype(jnp.int32), 0, nb - 1)
            ok = reduce_any((bi == bb) & col_free, b)
            if found is None:
                chosen, found = bb, ok
            else:
                chosen = jnp.where(ok & ~found, bb, chosen)
                found = found | ok
        return bi == chosen, found

    def body(state):
        i, row_free, col_free, lock, tgt, istar = state
        active = i < n_in
        u = draws(i) if randomised else None

        # greedy max IoU over the remaining (target, box) pairs, first in (target, box)
        # order on ties: the first target whose best available IoU is the largest, then
        # its first available box with that IoU (available entries are finite)
        avail = row_free & col_free & tab_ok
        row_best = jnp.max(jnp.where(avail, tab, -jnp.inf), axis=b, keepdims=True)
        best = jnp.max(row_best, axis=m, keepdims=True)
        has = best > -jnp.inf
        t_hot = mi == jnp.min(jnp.where(row_best == best, mi, _BIG), axis=m, keepdims=True)
        tab_t = pick(t_hot, tab, m)                     # the chosen target's IoU, per box
        free_t = col_free & (tab_t > IOU_FLOOR)
        avail_t = free_t if elig is None else free_t & reduce_any(t_hot & elig, m)
        b_hot = bi == jnp.min(jnp.where(avail_t & (tab_t == best), bi, _BIG), axis=b,
                              keepdims=True)
        iou_g = pick(b_hot, tab_t, b)
        decided = jnp.zeros(has.shape, bool)
        drawn = []   # the step's random box, drawn once for rand_prob and the start-up

        def step_box():
            if not drawn:
                drawn.append(random_box(u, col_free))
            return drawn[0]

        if use_rand_prob:
            fire = u(0) < cfg.rand_prob
            rb, found = step_box()
            b_hot = jnp.where(fire & found, rb, b_hot)
            decided = fire
        if use_forced:
            cond = ~decided & reduce_any(t_hot & small, m)
            fb, found = first_best(free_t & same_prior, tab_t, bi, b)
            b_hot = jnp.where(cond & found, fb, b_hot)
            decided = decided | cond
        if use_best_prior:
            low = iou_g < theta[1]
            if use_rand_best:
                low = low | (u(1) < cfg.rand_prob_best_box_assoc)
            cond = ~decided & low
            bp_row = reduce_any(t_hot & best_prior, m)
            pb, found = first_best(free_t & bp_row, tab_t, bi, b)
            b_hot = jnp.where(cond & found, pb, b_hot)
        if startup is not None:   # random start-up: targets in slot order, random box
            bs_hot, found_s = step_box()
            t_hot = jnp.where(startup, incell & (rank == i), t_hot)
            b_hot = jnp.where(startup, bs_hot, b_hot)
            has = jnp.where(startup, found_s, has)
            tab_t = pick(t_hot, tab, m)

        go = active & has
        iou_b = pick(b_hot, tab_t, b)
        i_star = iou_star(cfg, iou_b, class_only)
        skip = jnp.zeros(has.shape, bool)
        if difficult is not None:
            dif = reduce_any(t_hot & difficult, m)
            if natural:
                skip = dif
            else:
                o_b = pick(b_hot, o_obj, b)
                skip = dif & ((i_star < theta[6]) | (o_b < theta[7]))
        row_free = row_free & ~(go & t_hot)
        hit = (go & ~skip) & b_hot
        col_free = col_free & ~hit
        lock = jnp.where(hit, 2, lock)
        t_first = jnp.min(jnp.where(t_hot, mi, _BIG), axis=m, keepdims=True)
        t_first = jnp.where(t_first == _BIG, 0, t_first)
        tgt = jnp.where(hit, t_first, tgt)
        istar = jnp.where(hit, i_star, istar)
        return i + 1, row_free, col_free, lock, tgt, istar

    lock0 = jnp.broadcast_to(lock0, shape_b)
    state = (jnp.asarray(0, jnp.int32), incell, jnp.broadcast_to(col_free, shape_b), lock0,
             jnp.zeros(shape_b, jnp.int32), jnp.full(shape_b, -1.0, dtype))
    state = jax.lax.while_loop(lambda s: s[0] < n_iter, body, state)
    return Association(state[3], state[4], state[5])


# --------------------------------------------------------------------------- values


def part_fns(cfg: YoloConfig, grad: bool):
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


def presence(cfg: YoloConfig, p: int, x, target, *, i_star, lam, assoc, free, grad: bool,
             thresholds: bool):
    """Probability (``p`` 2) or objectness (3) value of every box; None if not fitted.

    Associated boxes aim at ``target`` (gated by the part's IoU limit when
    ``thresholds``), free boxes at :data:`NOOBJ_TARGET` scaled by ``lam`` (the box's
    ``prior_noobj_prob``); with fit 0 both aim at 0.5.
    """
    fit, w = cfg.fit_parts[p], cfg.error_scales[p]
    if fit == -1:
        return None
    sig, _, sq = part_fns(cfg, grad)
    if fit == 1:
        v_assoc = sq(x - target, w * sig(p, x))
        if thresholds:
            v_assoc = jnp.where(i_star > cfg.IoU_limits[p], v_assoc, 0.0)
        v_free = sq(x - NOOBJ_TARGET, lam * w * sig(p, x))
    else:
        v_assoc = sq(x - 0.5, w * sig(p, x))
        v_free = sq(x - 0.5, lam * w * sig(p, x))
    return jnp.where(assoc, v_assoc, jnp.where(free, v_free, 0.0))


def box_values(cfg: YoloConfig, mode: str, o: Sequence, assoc: Association,
               field: Callable, *, cc: Sequence, pri: Sequence, lam, class_only) -> list:
    """Per-channel delta (``mode`` "grad") or displayed values ("complete", "natural").

    ``o``: the K activated channels of a box (per box arrays); ``assoc``: the result of
    :func:`associate`; ``field(name, i)``: value, per box, of the associated target's
    ``"box"`` corner ``i`` (0-5), ``"cls"`` (0-based), ``"param"`` ``i`` or ``"diff"``
    (anything where the box is not associated); ``cc``, ``pri``: cell coordinates and
    floored priors (3 arrays each); ``lam``: per-box ``prior_noobj_prob``;
    ``class_only``: per cell or scalar.  Returns K arrays, zero where nothing applies.
    The delta includes CIANNA's activation derivative (it is dL/d(raw)).
    """
    C, P = cfg.nb_class, cfg.nb_param
    theta, w, sm, fit = cfg.IoU_limits, cfg.error_scales, cfg.slopes_and_maxes, cfg.fit_parts
    grad = mode == "grad"
    thresholds = mode != "natural"
    i_star = assoc.iou_star
    is_assoc = assoc.lock == 2
    free = assoc.lock == 0
    co = class_only
    diff = field("diff") if cfg.diff_flag else None
    ok3 = diff < 3 if cfg.diff_flag else True
    ok2 = diff < 2 if cfg.diff_flag else True
    zero = jnp.zeros(jnp.shape(is_assoc), o[0].dtype)
    sig, lin, sq = part_fns(cfg, grad)

    vals = []
    lo1, hi1 = np.exp(np.float32(sm[1][2])), np.exp(np.float32(sm[1][1]))
    for d in range(3):  # position
        op = o[d]
        if fit[0] == 1 and d < cfg.fit_dim:
            cell = float(cfg.cell[d])
            ctr = 0.5 * (field("box", d) + field("box", 3 + d))
            t_pos = (ctr - cc[d] * cell) / cell
            vals.append(jnp.where(is_assoc & ~co & ok3, sq(op - t_pos, w[0] * sig(0, op)), 0.0))
        elif fit[0] == 0 and d < cfg.fit_dim:
            v = sq(op - 0.5, w[0] * sig(0, op)) if grad else 0.5 * w[0] * op * op
            vals.append(jnp.where(is_assoc, v, 0.0))
        else:
            vals.append(zero)
    for d in range(3):  # size
        osz = o[3 + d]
        if fit[1] == 1 and d < cfg.fit_dim:
            ext = field("box", 3 + d) - field("box", d)
            t_size = jnp.log(jnp.clip(ext / pri[d], lo1, hi1))
            vals.append(jnp.where(is_assoc & ~co & ok3, sq(osz - t_size, w[1] * lin(1)), 0.0))
        elif fit[1] == 0 and d < cfg.fit_dim:
            vals.append(jnp.where(is_assoc, sq(osz, w[1] * lin(1)), 0.0))
        else:
            vals.append(zero)

    for p, target in ((2, PROB_TARGET), (3, 0.5 * (1.0 + i_star))):  # probability, objectness
        v = presence(cfg, p, o[4 + p], target, i_star=i_star, lam=lam, assoc=is_assoc,
                     free=free, grad=grad, thresholds=thresholds)
        vals.append(zero if v is None else v)

    tcls = field("cls") if C and fit[4] == 1 else None
    # the class term's weight by the associated target's class (1 without class_weights)
    cw = (1.0 + sum(jnp.where(tcls == c, w_c - 1.0, 0.0) for c, w_c in
                    enumerate(cfg.class_weights))) if cfg.class_weights and tcls is not None \
        else None
    for c in range(C):  # classes
        oc = o[8 + c]
        if fit[4] == 1:
            onehot = tcls == c
            msk = is_assoc & ok2
            if cfg.unclassified_targets:   # class 0 (-1 here): no class to learn
                msk = msk & (tcls >= 0)
            if thresholds:
                msk = msk & (i_star > theta[4])
            if cfg.class_softmax:
                if grad:
                    v = w[4] * (oc - jnp.where(onehot, 1.0, 0.0))
                else:
                    v = jnp.where(onehot, w[4] * -jnp.log(jnp.maximum(oc, CE_CLAMP)), 0.0)
            else:
                v = sq(oc - jnp.where(onehot, PROB_TARGET, NOOBJ_TARGET), w[4] * sig(4, oc))
            vals.append(jnp.where(msk, v if cw is None else cw * v, 0.0))
        elif fit[4] == 0 and not cfg.class_softmax:
            vals.append(jnp.where(is_assoc, sq(oc - 0.5, w[4] * sig(4, oc)), 0.0))
        else:
            vals.append(zero)
    for q in range(P):  # parameters
        opar = o[8 + C + q]
        rho = float(cfg.param_ind_scales[q])
        if fit[5] == 1:
            msk = is_assoc & ok2
            if thresholds:
                msk = msk & (i_star > theta[5])
            vals.append(jnp.where(msk, rho * sq(opar - field("param", q), w[5] * lin(5)), 0.0))
        elif fit[5] == 0:
            vals.append(jnp.where(is_assoc, rho * sq(opar - 0.5, w[5] * lin(5)), 0.0))
        else:
            vals.append(zero)
    return vals
