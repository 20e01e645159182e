"""CIANNA's YOLO delta and displayed loss as one Pallas kernel.

Same maths as the jax.numpy reference :mod:`cianna_jax.yolo.loss` (GPU semantics of
CIANNA, cianna_yolo.md section 4), laid out for a GPU: one program per (image, block of
``block_cells`` grid cells), cells on the fast (last) axis, boxes and targets on the
slow axes.  Each program reads its block of the activated output and the image's padded
target table, builds the IoU table of its cells against every target, runs the
sequential association loop (``while`` over the block's most crowded cell) and writes
the delta, the displayed values, the IoU monitor, the box locks and the per-block,
per-channel sums of the displayed values.  Those partial sums are added up outside the
kernel: no float atomics, results are deterministic.

Everything per target only (parsing, prior distances, strict eligibility, forced
smallest-prior condition) is computed once outside with the reference's own helpers.
Random association draws (start-up phase, ``rand_prob``, ``rand_prob_best_box_assoc``)
are the reference's own numbers: the kernel hashes them from the key with jax's
threefry (:mod:`pallas_kernels.threefry`), so no table of draws is read.  For keys it
cannot reproduce (other PRNG implementations, non-partitionable threefry) they are drawn
outside, one ``[G, 2 + 2B]`` slab per loop step, and read from a table.

Lowering: the body only uses operations the Pallas Triton lowering accepts (no value
slicing, no boolean ``any`` reductions, no concatenation, no gathers: selections are
one-hot masks) and every block dimension is a power of two.  The Mosaic GPU lowering
of jax 0.10 cannot express this kernel (no sqrt, floor, reductions along an axis or
concatenation in its lane semantics), so on Hopper as on Ampere the Triton lowering is
used.  Off GPU the kernel runs with ``interpret=True`` (slow; for tests and debugging).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cianna_jax.yolo.config import YoloConfig
from cianna_jax.yolo.iou import iou_corners
from cianna_jax.yolo.loss import (
    _IOU_CAP,
    _NOOBJ_TARGET,
    _PROB_TARGET,
    _part_fns,
    _presence,
    _same_prior_mask,
)

from . import threefry
from ._compat import on_gpu, pallas, triton_params

__all__ = ["KernelTerms", "Plan", "make_plan", "block_shapes", "check_block_shapes",
           "yolo_terms_kernel", "yolo_terms_sharded", "DEFAULT_BLOCK_CELLS"]

DEFAULT_BLOCK_CELLS = 16
_BIG = 2 ** 30

# rows of the per-image target table ``[Lp, Mp, 1]``
_VALID, _CLASS_ONLY, _CLS, _BOX, _TCELL, _DIFF, _SMALL, _STARTUP, _PARAMS = (
    0, 1, 2, 3, 9, 12, 13, 14, 16)
# rows of the per-box table ``[8, Bp, 1]``
_PRI, _LAMBDA, _SAME_PRIOR, _BOX_OK = 0, 3, 4, 5


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class Plan(NamedTuple):
    """Static sizes of one kernel launch; every ``*p`` size is a power of two."""

    N: int      # images
    G: int      # grid cells
    Gb: int     # cells per program
    Gp: int     # cells padded to a multiple of Gb
    B: int      # boxes
    Bp: int
    K: int      # channels per box
    Kp: int
    M: int      # target slots per image
    Mp: int
    Lp: int     # target table rows
    S: int      # association steps with random draws (0: none)
    Sp: int
    R: int      # random draws per step and cell
    Rp: int


def make_plan(cfg: YoloConfig, n_images: int, *, block_cells: int | None = None,
              draw_table: bool = False) -> Plan:
    """Sizes for ``n_images`` images; ``block_cells`` must be a power of two.

    ``draw_table``: the random draws are read from a precomputed table (keys that the
    in-kernel threefry cannot reproduce) instead of being computed in the kernel.
    """
    G = cfg.nb_cells
    gb = min(DEFAULT_BLOCK_CELLS, _pow2(G)) if block_cells is None else int(block_cells)
    if gb < 1 or gb & (gb - 1):
        raise ValueError(f"block_cells must be a power of two, received {block_cells!r}")
    M = max(cfg.max_nb_obj_per_image, 1)
    R = 2 + 2 * cfg.nb_box
    S = M if draw_table else 0
    return Plan(N=int(n_images), G=G, Gb=gb, Gp=-(-G // gb) * gb, B=cfg.nb_box,
                Bp=_pow2(cfg.nb_box), K=cfg.channels_per_box, Kp=_pow2(cfg.channels_per_box),
                M=M, Mp=_pow2(M), Lp=_pow2(_PARAMS + cfg.nb_param), S=S, Sp=_pow2(S) if S else 0,
                R=R, Rp=_pow2(R))


def block_shapes(plan: Plan) -> dict[str, tuple[int, ...]]:
    """The block shape of every kernel operand (squeezed dims left out)."""
    shapes = {"output": (plan.Kp, plan.Bp, plan.Gb), "targets": (plan.Lp, plan.Mp, 1),
              "box_masks": (2, plan.Mp, plan.Bp, 1), "boxes": (8, plan.Bp, 1),
              "delta": (plan.Kp, plan.Bp, plan.Gb), "display": (plan.Kp, plan.Bp, plan.Gb),
              "locks": (plan.Bp, plan.Gb), "monitor": (2, plan.Bp, plan.Gb),
              "sums": (plan.Kp, plan.Bp)}
    if plan.S:
        shapes["draw table"] = (plan.Sp, plan.Rp, plan.Gb)
    return shapes


def check_block_shapes(plan: Plan) -> None:
    """Raise ValueError unless every block dimension is a power of two (Triton's rule)."""
    for name, shape in block_shapes(plan).items():
        bad = [d for d in shape if d < 1 or d & (d - 1)]
        if bad:
            raise ValueError(f"block shape of {name} {shape} has non power-of-two dims {bad}")


class KernelTerms(NamedTuple):
    """Kernel results in the reference's layouts (see :class:`cianna_jax.yolo.YoloTerms`).

    ``channel_sums`` ``[N, K]``: displayed values per image and box channel, summed over
    cells and boxes from the per-block partial sums.  Missing parts are None.
    """

    delta: jax.Array | None
    display: jax.Array | None
    iou_monitor: jax.Array | None
    box_locked: jax.Array | None
    channel_sums: jax.Array | None


class _Flags(NamedTuple):
    want_delta: bool
    want_display: bool
    startup: bool        # start-up branch compiled in (flag read at run time)
    random: bool         # the association draws random numbers
    table: bool          # ... read from a precomputed table (else hashed in the kernel)
    share: bool          # the display reuses the gradient's association


# --------------------------------------------------------------------------- kernel body
# Helpers on [rows, cells] values; booleans reduced through int32 (Triton has no reduce_or).


def _any(x, axis):
    return jnp.max(x.astype(jnp.int32), axis=axis, keepdims=True) > 0


def _sum_where(mask, values, axis):
    return jnp.sum(jnp.where(mask, values, 0.0), axis=axis, keepdims=True)


def _first_best(cand, values, index, axis):
    """One-hot (along ``axis``) of the first largest ``values`` among ``cand``, and any."""
    score = jnp.where(cand, values, -jnp.inf)
    best = jnp.max(score, axis=axis, keepdims=True)
    first = jnp.min(jnp.where(score == best, index, _BIG), axis=axis, keepdims=True)
    return index == first, _any(cand, axis)


class _Block(NamedTuple):
    """Everything the association and value routines read, for one program."""

    o: list               # K x [Bp, Gb]
    cc: list              # 3 x [1, Gb] cell coordinates
    cell_ok: jax.Array    # [1, Gb]
    bi: jax.Array         # [Bp, 1] box index
    mi: jax.Array         # [Mp, 1] target index
    row: callable         # target table row -> [Mp, 1]
    box: callable         # box table row -> [Bp, 1]
    tab: jax.Array        # [Mp, Bp, Gb] IoU of every target with every predicted box
    incell: jax.Array     # [Mp, Gb]
    lock0: jax.Array      # [Bp, Gb] int32
    best_prior: jax.Array  # [Mp, Bp, 1]
    elig: jax.Array       # [Mp, Bp, 1]
    step_key: callable    # loop step -> what ``uniform`` needs for that step
    uniform: callable     # (step key, draw) -> [1, Gb]


def _associate(cfg: YoloConfig, plan: Plan, blk: _Block, mode: str, randomised: bool,
               startup):
    """The per-cell association loop (reference ``_associate``) on one block.

    Returns (lock, target index, IoU*) ``[Bp, Gb]``.
    """
    Bp, Gb, B = plan.Bp, plan.Gb, plan.B
    theta = cfg.IoU_limits
    tab = blk.tab
    bi, mi = blk.bi, blk.mi
    flat = mi[:, :, None] * Bp + bi[None]                               # [Mp, Bp, 1]
    incell = blk.incell
    n_in = jnp.sum(incell.astype(jnp.int32), axis=0, keepdims=True)     # [1, Gb]
    n_iter = jnp.max(n_in)
    rank = jnp.cumsum(incell.astype(jnp.int32), axis=0) - 1
    tab_ok = (tab > -2.0) & (blk.box(_BOX_OK) > 0.5)[None]
    if mode != "natural" and cfg.strict_box_size > 0:
        tab_ok = tab_ok & (blk.elig > 0.5)
    use_rand_prob = randomised and cfg.rand_prob > 0
    use_rand_best = randomised and cfg.rand_prob_best_box_assoc > 0
    use_forced = mode != "natural" and cfg.min_prior_forced_scaling > 0
    use_best_prior = mode != "natural"
    class_only = jnp.max(blk.row(_CLASS_ONLY)) > 0.5
    small = blk.row(_SMALL) > 0.5
    difficult_row = blk.row(_DIFF) > 0.5
    same_prior = blk.box(_SAME_PRIOR) > 0.5
    o_obj = blk.o[7]

    def random_box(sk, col_free):
        """First of 2B draws floor(U*B) that hits a free box (reference ``random_box``)."""
        chosen = jnp.zeros((1, Gb), jnp.int32)
        found = jnp.zeros((1, Gb), bool)
        first = None
        for j in range(2 * B):
            bb = jnp.clip(jnp.floor(blk.uniform(sk, 2 + j) * B).astype(jnp.int32), 0, B - 1)
            ok = _any((bi == bb) & col_free, 0)
            chosen = jnp.where(ok & ~found, bb, chosen)
            found = found | ok
            first = bb if first is None else first
        return bi == jnp.where(found, chosen, first), found

    def body(state):
        i, row_free, col_free, lock, tgt, istar = state
        active = i < n_in
        sk = blk.step_key(i) if randomised else None
        avail = row_free[:, None, :] & col_free[None] & tab_ok
        score = jnp.where(avail, tab, -jnp.inf)
        best = jnp.max(jnp.max(score, axis=0), axis=0, keepdims=True)   # [1, Gb]
        pick = jnp.min(jnp.min(jnp.where(score == best[None], flat, _BIG), axis=0), axis=0,
                       keepdims=True)
        has = jnp.max(jnp.max(avail.astype(jnp.int32), axis=0), axis=0, keepdims=True) > 0
        t_hot = mi == pick // Bp                                           # [Mp, Gb]
        b_hot = bi == pick % Bp                                            # [Bp, Gb]
        tab_t = jnp.sum(jnp.where(t_hot[:, None, :], tab, 0.0), axis=0)    # [Bp, Gb]
        iou_g = _sum_where(b_hot, tab_t, 0)
        free_t = col_free & (tab_t > -2.0)
        decided = jnp.zeros((1, Gb), bool)
        if use_rand_prob:
            fire = blk.uniform(sk, 0) < cfg.rand_prob
            rb, found = random_box(sk, col_free)
            b_hot = jnp.where(fire & found, rb, b_hot)
            decided = fire
        if use_forced:
            cond = ~decided & _any(t_hot & small, 0)
            fb, found = _first_best(free_t & same_prior, tab_t, bi, 0)
            b_hot = jnp.where(cond & found, fb, b_hot)
            decided = decided | cond
        if use_best_prior:
            low = iou_g < theta[1]
            if use_rand_best:
                low = low | (blk.uniform(sk, 1) < cfg.rand_prob_best_box_assoc)
            cond = ~decided & low
            bp_row = jnp.max(jnp.where(t_hot[:, None, :] & (blk.best_prior > 0.5), 1, 0),
                             axis=0) > 0
            pb, found = _first_best(free_t & bp_row, tab_t, bi, 0)
            b_hot = jnp.where(cond & found, pb, b_hot)
        if startup is not None:
            bs_hot, found_s = random_box(sk, col_free)
            t_hot = jnp.where(startup, incell & (rank == i), t_hot)
            b_hot = jnp.where(startup, bs_hot, b_hot)
            has = jnp.where(startup, found_s, has)
            tab_t = jnp.sum(jnp.where(t_hot[:, None, :], tab, 0.0), axis=0)

        go = active & has
        iou_b = _sum_where(b_hot, tab_t, 0)
        i_star = jnp.where(class_only, jnp.float32(theta[0]), jnp.minimum(iou_b, _IOU_CAP))
        skip = jnp.zeros((1, Gb), bool)
        if cfg.diff_flag:
            difficult = _any(t_hot & difficult_row, 0)
            if mode == "natural":
                skip = difficult
            else:
                o_b = _sum_where(b_hot, o_obj, 0)
                skip = difficult & ((i_star < theta[6]) | (o_b < theta[7]))
        row_free = row_free & ~(go & t_hot)
        hit = (go & ~skip) & b_hot
        col_free = col_free & ~hit
        lock = jnp.where(hit, 2, lock)
        t_first = jnp.min(jnp.where(t_hot, mi, _BIG), axis=0, keepdims=True)
        t_first = jnp.where(t_first == _BIG, 0, t_first)
        tgt = jnp.where(hit, t_first, tgt)
        istar = jnp.where(hit, i_star, istar)
        return i + 1, row_free, col_free, lock, tgt, istar

    col_free0 = (blk.box(_BOX_OK) > 0.5) & jnp.ones((1, Gb), bool)
    state = (jnp.int32(0), incell, col_free0, blk.lock0, jnp.zeros((Bp, Gb), jnp.int32),
             jnp.full((Bp, Gb), -1.0, jnp.float32))
    state = jax.lax.while_loop(lambda s: s[0] < n_iter, body, state)
    return state[3], state[4], state[5]


def _values(cfg: YoloConfig, plan: Plan, blk: _Block, lock, tgt, i_star, mode: str):
    """Per-channel delta (mode "grad") or displayed values: K arrays ``[Bp, Gb]``."""
    Bp, Gb = plan.Bp, plan.Gb
    C, P = cfg.nb_class, cfg.nb_param
    theta, w, sm, fit = cfg.IoU_limits, cfg.error_scales, cfg.slopes_and_maxes, cfg.fit_parts
    grad = mode == "grad"
    thresholds = mode != "natural"
    o = blk.o
    assoc = lock == 2
    free = lock == 0
    hot = blk.mi[:, :, None] == jnp.where(assoc, tgt, 0)[None]         # [Mp, Bp, Gb]

    def field(r):
        return jnp.sum(jnp.where(hot, blk.row(r)[:, :, None], 0.0), axis=0)

    co = jnp.max(blk.row(_CLASS_ONLY)) > 0.5
    diff = field(_DIFF) if cfg.diff_flag else None
    ok3 = diff < 3 if cfg.diff_flag else True
    ok2 = diff < 2 if cfg.diff_flag else True
    zero = jnp.zeros((Bp, Gb), jnp.float32)
    lam = blk.box(_LAMBDA)

    sig, lin, sq = _part_fns(cfg, grad)

    vals = []
    lo1, hi1 = np.exp(np.float32(sm[1][2])), np.exp(np.float32(sm[1][1]))
    for d in range(3):  # position
        op = o[d]
        if fit[0] == 1 and d < cfg.fit_dim:
            cell = float(cfg.cell[d])
            ctr = 0.5 * (field(_BOX + d) + field(_BOX + 3 + d))
            t_pos = (ctr - blk.cc[d] * cell) / cell
            vals.append(jnp.where(assoc & ~co & ok3, sq(op - t_pos, w[0] * sig(0, op)), 0.0))
        elif fit[0] == 0 and d < cfg.fit_dim:
            v = sq(op - 0.5, w[0] * sig(0, op)) if grad else 0.5 * w[0] * op * op
            vals.append(jnp.where(assoc, v, 0.0))
        else:
            vals.append(zero)
    for d in range(3):  # size
        osz = o[3 + d]
        if fit[1] == 1 and d < cfg.fit_dim:
            ext = field(_BOX + 3 + d) - field(_BOX + d)
            t_size = jnp.log(jnp.clip(ext / blk.box(_PRI + d), lo1, hi1))
            vals.append(jnp.where(assoc & ~co & ok3, sq(osz - t_size, w[1] * lin(1)), 0.0))
        elif fit[1] == 0 and d < cfg.fit_dim:
            vals.append(jnp.where(assoc, sq(osz, w[1] * lin(1)), 0.0))
        else:
            vals.append(zero)

    for p, target in ((2, _PROB_TARGET), (3, 0.5 * (1.0 + i_star))):
        v = _presence(cfg, p, o[4 + p], target, i_star=i_star, lam=lam, assoc=assoc, free=free,
                      grad=grad, thresholds=thresholds)
        vals.append(zero if v is None else v)

    tcls = field(_CLS) if C else None
    for c in range(C):  # classes
        oc = o[8 + c]
        onehot = tcls == c
        if fit[4] == 1:
            m = assoc & ok2
            if thresholds:
                m = m & (i_star > theta[4])
            if cfg.class_softmax:
                if grad:
                    v = w[4] * (oc - jnp.where(onehot, 1.0, 0.0))
                else:
                    v = jnp.where(onehot, w[4] * -jnp.log(jnp.maximum(oc, 1e-7)), 0.0)
            else:
                v = sq(oc - jnp.where(onehot, _PROB_TARGET, _NOOBJ_TARGET), w[4] * sig(4, oc))
            vals.append(jnp.where(m, v, 0.0))
        elif fit[4] == 0 and not cfg.class_softmax:
            vals.append(jnp.where(assoc, sq(oc - 0.5, w[4] * sig(4, oc)), 0.0))
        else:
            vals.append(zero)
    for q in range(P):  # parameters
        opar = o[8 + C + q]
        rho = float(cfg.param_ind_scales[q])
        if fit[5] == 1:
            m = assoc & ok2
            if thresholds:
                m = m & (i_star > theta[5])
            vals.append(jnp.where(m, rho * sq(opar - field(_PARAMS + q), w[5] * lin(5)), 0.0))
        elif fit[5] == 0:
            vals.append(jnp.where(assoc, rho * sq(opar - 0.5, w[5] * lin(5)), 0.0))
        else:
            vals.append(zero)
    return vals


def _kernel(*refs, cfg: YoloConfig, plan: Plan, flags: _Flags):
    pl = pallas()
    refs = list(refs)
    o_ref, tf_ref, bm_ref, bt_ref = refs[:4]
    r_ref = refs[4] if flags.random else None   # draw table or key words
    outs = refs[4 + int(flags.random):]
    delta_ref, lock_ref = (outs[0], outs[1]) if flags.want_delta else (None, None)
    outs = outs[2:] if flags.want_delta else outs
    disp_ref, mon_ref, sums_ref = outs if flags.want_display else (None, None, None)

    Bp, Gb, Mp, K, Kp = plan.Bp, plan.Gb, plan.Mp, plan.K, plan.Kp
    G0, G1, _ = cfg.grid
    g = pl.program_id(1) * Gb + jax.lax.broadcasted_iota(jnp.int32, (1, Gb), 1)
    cc = [(g % G0).astype(jnp.float32), ((g // G0) % G1).astype(jnp.float32),
          (g // (G0 * G1)).astype(jnp.float32)]
    cell_ok = g < plan.G
    bi = jax.lax.broadcasted_iota(jnp.int32, (Bp, 1), 0)
    mi = jax.lax.broadcasted_iota(jnp.int32, (Mp, 1), 0)
    o = [o_ref[k] for k in range(K)]

    def row(r):
        return tf_ref[r]

    def box(r):
        return bt_ref[r]

    if flags.table:
        def step_key(i):
            return i

        def uniform(i, r):
            return r_ref[i, pl.ds(r, 1), :]
    else:
        flat = None
        if flags.random:  # flat index of each cell's first draw in the whole batch's draws
            image = r_ref[2].astype(jnp.int32) + pl.program_id(0)
            flat = ((image * plan.G + g) * plan.R).astype(jnp.uint32)

        def step_key(i):
            return threefry.fold_in(r_ref[0], r_ref[1], i)

        def uniform(words, r):
            return threefry.uniform(words[0], words[1], flat + np.uint32(r))

    lo, hi = [], []
    for d in range(3):
        ctr = (o[d] + cc[d]) * float(cfg.cell[d])
        ext = box(_PRI + d) * jnp.exp(o[3 + d])
        lo.append(ctr - 0.5 * ext)
        hi.append(ctr + 0.5 * ext)
    pred = [x[None] for x in lo + hi]                                   # [1, Bp, Gb]
    tbox = [row(_BOX + i)[:, :, None] for i in range(6)]                # [Mp, 1, 1]
    tab = iou_corners(pred, tbox, cfg.IoU_type)                         # [Mp, Bp, Gb]
    valid = row(_VALID) > 0.5                                           # [Mp, 1]
    lock0 = jnp.max(jnp.where(valid[:, :, None] & (tab > cfg.IoU_limits[0]), 1, 0), axis=0)
    incell = valid & cell_ok
    for d in range(3):
        incell = incell & (row(_TCELL + d) == cc[d])
    blk = _Block(o=o, cc=cc, cell_ok=cell_ok, bi=bi, mi=mi, row=row, box=box, tab=tab,
                 incell=incell, lock0=lock0.astype(jnp.int32), best_prior=bm_ref[0],
                 elig=bm_ref[1], step_key=step_key, uniform=uniform)

    startup = (jnp.max(row(_STARTUP)) > 0.5) if flags.startup else None
    g_assoc = None
    if flags.want_delta or flags.share:
        g_assoc = _associate(cfg, plan, blk, "grad", flags.random, startup)
    if flags.want_delta:
        for k, v in enumerate(_values(cfg, plan, blk, *g_assoc, "grad")):
            delta_ref[k] = v
        for k in range(K, Kp):
            delta_ref[k] = jnp.zeros((Bp, Gb), jnp.float32)
        lock_ref[...] = g_assoc[0]
    if flags.want_display:
        d_assoc = g_assoc if flags.share else _associate(cfg, plan, blk, cfg.error_type,
                                                         False, None)
        vals = _values(cfg, plan, blk, *d_assoc, cfg.error_type)
        for k, v in enumerate(vals):
            disp_ref[k] = v
            sums_ref[k] = jnp.sum(jnp.where(cell_ok, v, 0.0), axis=1)
        for k in range(K, Kp):
            disp_ref[k] = jnp.zeros((Bp, Gb), jnp.float32)
            sums_ref[k] = jnp.zeros((Bp,), jnp.float32)
        assoc = d_assoc[0] == 2
        mon_ref[0] = jnp.where(assoc, o[7], -1.0)
        mon_ref[1] = jnp.where(assoc, d_assoc[2], -1.0)


# --------------------------------------------------------------------------- wrapper


def _target_tables(targets, cfg: YoloConfig, plan: Plan, startup):
    """Per-image target table ``[N, Lp, Mp, 1]`` and box masks ``[N, 2, Mp, Bp, 1]``."""
    from cianna_jax.yolo.loss import _parse_targets, _prior_rules

    N, M, Mp, Bp = plan.N, plan.M, plan.Mp, plan.Bp
    tg = _parse_targets(targets, cfg, jnp.float32)
    cell = jnp.asarray(np.asarray(cfg.cell, np.float32))
    tcell = jnp.trunc((0.5 * (tg.box[..., :3] + tg.box[..., 3:])) / cell)
    best_prior, elig, small = _prior_rules(tg, cfg)
    elig = jnp.ones(best_prior.shape, bool) if elig is None else elig
    small = jnp.zeros((N, M), bool) if small is None else small
    f32 = jnp.float32
    rows = [tg.valid.astype(f32), jnp.broadcast_to(tg.class_only[:, None], (N, M)).astype(f32),
            tg.cls.astype(f32)] + [tg.box[..., i] for i in range(6)] + [
        tcell[..., d] for d in range(3)] + [
        tg.diff.astype(f32), small.astype(f32),
        jnp.broadcast_to(jnp.asarray(startup, f32), (N, M)), jnp.zeros((N, M), f32)] + [
        tg.params[..., q] for q in range(cfg.nb_param)]
    table = jnp.stack(rows, axis=1)                                      # [N, L, M]
    table = jnp.pad(table, ((0, 0), (0, plan.Lp - table.shape[1]), (0, Mp - M)))
    masks = jnp.stack([best_prior, elig], axis=1).astype(f32)           # [N, 2, M, B]
    masks = jnp.pad(masks, ((0, 0), (0, 0), (0, Mp - M), (0, Bp - plan.B)))
    return table[..., None], masks[..., None]


def _box_table(cfg: YoloConfig, plan: Plan) -> jax.Array:
    """Per-box constants ``[8, Bp, 1]``: floored priors, no-object scale, same-prior, valid."""
    B, Bp = plan.B, plan.Bp
    t = np.zeros((8, Bp), np.float32)
    t[_PRI:_PRI + 3] = 1.0
    t[_PRI:_PRI + 3, :B] = np.asarray(cfg.priors_floored, np.float32).T
    t[_LAMBDA, :B] = np.asarray(cfg.prior_noobj_prob, np.float32)
    if cfg.min_prior_forced_scaling > 0:
        t[_SAME_PRIOR, :B] = _same_prior_mask(cfg)
    t[_BOX_OK, :B] = 1.0
    return jnp.asarray(t[..., None])


def _uniforms(key, plan: Plan) -> jax.Array:
    """The reference's per-step draws ``uniform(fold_in(key, i), (N, G, R))`` as
    ``[N, Sp, Rp, Gp]``."""
    # one call per step, not vmap: vmapped draws of some PRNGs (rbg) differ from unbatched ones
    u = jnp.stack([jax.random.uniform(jax.random.fold_in(key, i), (plan.N, plan.G, plan.R),
                                      jnp.float32) for i in range(plan.S)])
    u = jnp.transpose(u, (1, 0, 3, 2))                                  # [N, S, R, G]
    return jnp.pad(u, ((0, 0), (0, plan.Sp - plan.S), (0, plan.Rp - plan.R),
                       (0, plan.Gp - plan.G)))


@partial(jax.jit, static_argnames=("cfg", "startup_mode", "want_delta", "want_display",
                                   "block_cells", "interpret", "num_warps"))
def yolo_terms_kernel(output, targets, nb_im_iter, key, *, cfg: YoloConfig, startup_mode: str,
                      want_delta: bool = True, want_display: bool = True,
                      block_cells: int | None = None, interpret: bool | None = None,
                      num_warps: int = 4, image_offset=0) -> KernelTerms:
    """Kernel version of the reference's ``_terms`` on an ACTIVATED output.

    ``output`` ``[N, F, G2, G1, G0]``, ``targets`` ``[N, target_len]`` (validated by the
    caller), ``startup_mode`` "off", "on" or "traced" (then ``nb_im_iter`` decides),
    ``key`` None when nothing is random.  ``interpret`` defaults to "not on a GPU".
    ``image_offset``: index of ``output[0]`` in the whole batch (a shard's first image),
    so that random draws are those of the whole batch.
    """
    pl = pallas()
    N = output.shape[0]
    random = key is not None
    draw_table = random and not threefry.supported(key)
    plan = make_plan(cfg, N, block_cells=block_cells, draw_table=draw_table)
    check_block_shapes(plan)
    if interpret is None:
        interpret = not on_gpu()
    B, K, G = plan.B, plan.K, plan.G
    o = output.astype(jnp.float32).reshape(N, B, K, G).transpose(0, 2, 1, 3)
    o = jnp.pad(o, ((0, 0), (0, plan.Kp - K), (0, plan.Bp - B), (0, plan.Gp - G)))
    if startup_mode == "traced":
        startup = jnp.asarray(nb_im_iter) <= cfg.rand_startup
    else:
        startup = startup_mode == "on"
    table, masks = _target_tables(targets, cfg, plan, startup)
    flags = _Flags(want_delta=want_delta, want_display=want_display,
                   startup=startup_mode != "off", random=random, table=draw_table,
                   share=want_display and cfg.error_type == "complete" and not random)

    nblk = plan.Gp // plan.Gb
    cells = pl.BlockSpec((None, plan.Kp, plan.Bp, plan.Gb), lambda n, j: (n, 0, 0, j))
    in_specs = [cells,
                pl.BlockSpec((None, plan.Lp, plan.Mp, 1), lambda n, j: (n, 0, 0, 0)),
                pl.BlockSpec((None, 2, plan.Mp, plan.Bp, 1), lambda n, j: (n, 0, 0, 0, 0)),
                pl.BlockSpec((8, plan.Bp, 1), lambda n, j: (0, 0, 0))]
    args = [o, table, masks, _box_table(cfg, plan)]
    if draw_table:
        in_specs.append(pl.BlockSpec((None, plan.Sp, plan.Rp, plan.Gb),
                                     lambda n, j: (n, 0, 0, j)))
        args.append(_uniforms(key, plan))
    elif random:  # key words and the index of this call's first image in the whole batch
        in_specs.append(pl.BlockSpec((4,), lambda n, j: (0,)))
        args.append(jnp.concatenate([threefry.key_words(key),
                                     jnp.asarray(image_offset, jnp.uint32).reshape(1),
                                     jnp.zeros((1,), jnp.uint32)]))
    per_cell = (N, plan.Kp, plan.Bp, plan.Gp)
    out_shape, out_specs = [], []
    if want_delta:
        out_shape += [jax.ShapeDtypeStruct(per_cell, jnp.float32),
                      jax.ShapeDtypeStruct((N, plan.Bp, plan.Gp), jnp.int32)]
        out_specs += [cells, pl.BlockSpec((None, plan.Bp, plan.Gb), lambda n, j: (n, 0, j))]
    if want_display:
        out_shape += [jax.ShapeDtypeStruct(per_cell, jnp.float32),
                      jax.ShapeDtypeStruct((N, 2, plan.Bp, plan.Gp), jnp.float32),
                      jax.ShapeDtypeStruct((N, nblk, plan.Kp, plan.Bp), jnp.float32)]
        out_specs += [cells,
                      pl.BlockSpec((None, 2, plan.Bp, plan.Gb), lambda n, j: (n, 0, 0, j)),
                      pl.BlockSpec((None, None, plan.Kp, plan.Bp), lambda n, j: (n, j, 0, 0))]
    extra = {} if interpret else {"compiler_params": triton_params(num_warps, 1)}
    res = list(pl.pallas_call(
        partial(_kernel, cfg=cfg, plan=plan, flags=flags), out_shape=out_shape,
        grid=(N, nblk), in_specs=in_specs, out_specs=out_specs, interpret=interpret,
        **extra)(*args))

    G0, G1, G2 = cfg.grid

    def per_channel(x):  # [N, Kp, Bp, Gp] -> [N, F, G2, G1, G0]
        x = x[:, :K, :B, :G].transpose(0, 2, 1, 3)
        return x.reshape(N, B * K, G2, G1, G0)

    def per_box(x):      # [N, ..., Bp, Gp] -> [N, G2, G1, G0, B, ...]
        x = jnp.moveaxis(x[..., :B, :G], (-2, -1), (-1, 1))             # [N, G, ..., B]
        x = jnp.moveaxis(x, -1, 2) if x.ndim == 4 else x                 # [N, G, B, ...]
        return x.reshape((N, G2, G1, G0) + x.shape[2:])

    delta = locks = display = monitor = sums = None
    if want_delta:
        delta, locks = per_channel(res[0]), per_box(res[1])
        res = res[2:]
    if want_display:
        display, monitor = per_channel(res[0]), per_box(res[1])
        sums = jnp.sum(res[2][:, :, :K, :B], axis=(1, 3))
    return KernelTerms(delta, display, monitor, locks, sums)


def yolo_terms_sharded(output, targets, nb_im_iter, key, **kw) -> KernelTerms:
    """:func:`yolo_terms_kernel`, split over the devices of the current mesh's batch axis.

    Under ``jax.set_mesh(mesh)`` with a ``"batch"`` axis (:mod:`cianna_jax.parallel`),
    each device runs the kernel on its own images (``jax.shard_map``); XLA cannot
    partition a kernel by itself and would gather the batch on every device.  Elsewhere,
    or when the batch does not split evenly, one kernel call covers the batch.  Results
    are the same either way, random draws included.
    """
    from cianna_jax.parallel import AXIS

    mesh = jax.sharding.get_abstract_mesh()
    n_dev = 1 if mesh.empty or AXIS not in mesh.axis_names else mesh.shape[AXIS]
    hashed = key is None or threefry.supported(key)
    if n_dev == 1 or output.shape[0] % n_dev or not hashed:
        return yolo_terms_kernel(output, targets, nb_im_iter, key, **kw)
    P = jax.sharding.PartitionSpec

    def local(o, t, nb, k):
        offset = jax.lax.axis_index(AXIS) * o.shape[0]
        return yolo_terms_kernel(o, t, nb, k, image_offset=offset, **kw)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(), P()),
                         out_specs=P(AXIS), check_vma=False)(output, targets, nb_im_iter, key)
