"""CIANNA's YOLO delta and displayed loss as one Pallas kernel.

Same rules as the jax.numpy reference :mod:`cianna_jax.yolo.loss` (GPU semantics of
CIANNA, cianna_yolo.md section 4): both run the functions of
:mod:`cianna_jax.yolo.rules` (association loop, predicted boxes, per-channel values),
the kernel on ``(targets, boxes, cells)`` arrays.  It is laid out for a GPU: one
program per (image, block of ``block_cells`` grid cells), cells on the fast (last)
axis, boxes and targets on the slow axes.  Each program reads its block of the
activated output and the image's padded target table, builds the IoU table of its
cells against every target, runs the sequential association loop (``while`` over the
block's most crowded cell) and writes the delta, the displayed values, the IoU monitor,
the box locks and the per-block, per-channel sums of the displayed values.  Those
partial sums are added up outside the kernel: no float atomics, results are
deterministic.

Everything per target only (parsing, prior distances, strict eligibility, forced
smallest-prior condition) is computed once outside the kernel by the same rules.
Random association draws (start-up phase, ``rand_prob``, ``rand_prob_best_box_assoc``)
are the reference's own numbers: the kernel hashes them from the key with jax's
threefry (:mod:`pallas_kernels.threefry`), so no table of draws is read.  For keys it
cannot reproduce (other PRNG implementations, non-partitionable threefry) they are drawn
outside, one ``[G, 2 + 2B]`` slab per loop step, and read from a table.

Inputs and outputs are in the core's channel-last YOLO layout ``(N, [G2,] G1, G0, B,
K)`` (:mod:`cianna_jax.yolo.layout`); the kernel's own ``(N, K, B, cells)`` operands are
transposed and padded around the call.

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

from cianna_jax.yolo import layout, rules
from cianna_jax.yolo.config import YoloConfig
from cianna_jax.yolo.iou import iou_corners

from . import _compat, threefry

__all__ = ["KernelTerms", "Plan", "make_plan", "block_shapes", "check_block_shapes",
           "yolo_terms_kernel", "yolo_terms_sharded", "runs_compiled", "keeps_default_block",
           "DEFAULT_BLOCK_CELLS", "TABLE_BUDGET"]

DEFAULT_BLOCK_CELLS = 16
#: most elements of one (targets, boxes, cells) table per program: the body holds several
#: such tables at once, and on an H200 (jax 0.11.2, Triton lowering, 4 warps) a block of
#: 128 x 16 x 16 did not compile within a minute while 64 x 8 x 16 compiled and ran, so
#: the default block narrows its cells for crowded images and many boxes
TABLE_BUDGET = 8192

# rows of the per-image target table ``[Lp, Mp, 1]``
_VALID, _CLASS_ONLY, _CLS, _BOX, _TCELL, _DIFF, _SMALL, _STARTUP, _PARAMS = (
    0, 1, 2, 3, 9, 12, 13, 14, 16)
# rows of the per-box table ``[8, Bp, 1]``
_PRI, _LAMBDA, _SAME_PRIOR, _BOX_OK = 0, 3, 4, 5


def runs_compiled(device=None) -> bool:
    """Whether the kernel runs compiled on ``device`` (default: jax's first device): a
    GPU whose jax has the Pallas Triton lowering.  Elsewhere it is only interpreted."""
    return _compat.on_gpu(device) and _compat.triton_available()


def keeps_default_block(cfg: YoloConfig) -> bool:
    """Whether a block of :data:`DEFAULT_BLOCK_CELLS` cells fits :data:`TABLE_BUDGET`
    (at most 512 padded targets x boxes).  Only there did the kernel beat the jax.numpy
    reference on an H200 (loss and gradient, jax 0.11.2: 1.16-1.37x at 64 targets x 8
    boxes); with narrower blocks (128 x 8 and 128 x 16) it ran at 0.70-0.72x, and each
    problem shape took about 25-30 s to compile and time, so "auto" leaves those to XLA."""
    tables = _pow2(max(cfg.max_nb_obj_per_image, 1)) * _pow2(cfg.nb_box)
    return tables * DEFAULT_BLOCK_CELLS <= TABLE_BUDGET


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
    """Sizes for ``n_images`` images; ``block_cells`` must be a power of two.  By
    default it is :data:`DEFAULT_BLOCK_CELLS`, or fewer where a block's (targets, boxes,
    cells) tables would pass :data:`TABLE_BUDGET` elements.

    ``draw_table``: the random draws are read from a precomputed table (keys that the
    in-kernel threefry cannot reproduce) instead of being computed in the kernel.
    """
    G = cfg.nb_cells
    M = max(cfg.max_nb_obj_per_image, 1)
    if block_cells is None:
        fit = max(1, TABLE_BUDGET // (_pow2(M) * _pow2(cfg.nb_box)))
        gb = min(DEFAULT_BLOCK_CELLS, _pow2(G), 1 << (fit.bit_length() - 1))
    else:
        gb = int(block_cells)
    if gb < 1 or gb & (gb - 1):
        raise ValueError(f"block_cells must be a power of two, received {block_cells!r}")
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
              "locks": (1, plan.Bp, plan.Gb), "monitor": (2, plan.Bp, plan.Gb),
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
    """Kernel results in the layout of the output (see :class:`cianna_jax.yolo.YoloTerms`).

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
# The rules run on (targets, boxes, cells) = (Mp, Bp, Gb) arrays (rules' layout
# convention: m_axis 0, b_axis 1).  What is restated here is only how this layout reads
# its inputs: target rows and box constants from the tables built outside (per target
# (Mp, 1, 1), per box (1, Bp, 1)), cell coordinates from the program id, the associated
# target's fields as one-hot sums over the targets (Triton has no gather; the
# reference gathers), the draws hashed from the key words (the reference calls
# jax.random, same numbers), and the stores into the channel-major blocks.


def _kernel(*refs, cfg: YoloConfig, plan: Plan, flags: _Flags):
    pl = _compat.pallas()
    refs = list(refs)
    o_ref, tf_ref, bm_ref, bt_ref = refs[:4]
    r_ref = refs[4] if flags.random else None   # draw table or key words
    outs = refs[4 + int(flags.random):]
    delta_ref, lock_ref = (outs[0], outs[1]) if flags.want_delta else (None, None)
    outs = outs[2:] if flags.want_delta else outs
    disp_ref, mon_ref, sums_ref = outs if flags.want_display else (None, None, None)

    Bp, Gb, Mp, K, Kp = plan.Bp, plan.Gb, plan.Mp, plan.K, plan.Kp
    g = pl.program_id(1) * Gb + jax.lax.broadcasted_iota(jnp.int32, (1, 1, Gb), 2)
    cc = rules.cell_coords(g, cfg.grid)                                 # per cell
    cell_ok = g < plan.G
    mi = jax.lax.broadcasted_iota(jnp.int32, (Mp, 1, 1), 0)
    o = [o_ref[k][None] for k in range(K)]                              # per box

    def row(r):   # target table row, per target
        return tf_ref[r][:, :, None]

    def box(r):   # box table row, per box
        return bt_ref[r][None]

    draws = None
    if flags.random and flags.table:
        def draws(i):
            return lambda r: r_ref[i, pl.ds(r, 1), :][None]
    elif flags.random:
        # flat index of each cell's first draw in the whole batch's draws
        image = r_ref[2].astype(jnp.int32) + pl.program_id(0)
        flat = ((image * plan.G + g) * plan.R).astype(jnp.uint32)

        def draws(i):
            k0, k1 = threefry.fold_in(r_ref[0], r_ref[1], i)
            return lambda r: threefry.uniform(k0, k1, flat + np.uint32(r))

    pri = [box(_PRI + d) for d in range(3)]
    pred = rules.predicted_corners(cfg, o, cc, pri)
    tab = iou_corners(pred, [row(_BOX + i) for i in range(6)], cfg.IoU_type)   # (Mp, Bp, Gb)
    valid = row(_VALID) > 0.5
    incell = rules.in_cell(valid & cell_ok, [row(_TCELL + d) for d in range(3)], cc)
    forced = cfg.min_prior_forced_scaling > 0
    class_only = jnp.max(row(_CLASS_ONLY)) > 0.5
    common = dict(
        m_axis=0, b_axis=1, incell=incell, lock0=rules.good_locks(cfg, tab, valid, 0),
        col_free=box(_BOX_OK) > 0.5, best_prior=bm_ref[0] > 0.5,
        eligible=bm_ref[1] > 0.5 if cfg.strict_box_size > 0 else None,
        small=row(_SMALL) > 0.5 if forced else None,
        same_prior=box(_SAME_PRIOR) > 0.5 if forced else None,
        difficult=row(_DIFF) > 0.5 if cfg.diff_flag else None,
        class_only=class_only, o_obj=o[7])

    def values(assoc: rules.Association, mode: str):
        hot = mi == jnp.where(assoc.lock == 2, assoc.target, 0)       # (Mp, Bp, Gb)

        def field(name, i=0):   # the associated target's field: a one-hot sum (no gather)
            r = {"box": _BOX + i, "param": _PARAMS + i, "cls": _CLS, "diff": _DIFF}[name]
            return jnp.sum(jnp.where(hot, row(r), 0.0), axis=0, keepdims=True)

        return rules.box_values(cfg, mode, o, assoc, field, cc=cc, pri=pri, lam=box(_LAMBDA),
                                class_only=class_only)

    zeros = jnp.zeros((1, Bp, Gb), jnp.float32)
    startup = (jnp.max(row(_STARTUP)) > 0.5) if flags.startup else None
    g_assoc = None
    if flags.want_delta or flags.share:
        g_assoc = rules.associate(cfg, "grad", tab, startup=startup, draws=draws, **common)
    if flags.want_delta:
        vals = values(g_assoc, "grad")
        for k in range(Kp):
            delta_ref[pl.ds(k, 1)] = vals[k] if k < K else zeros
        lock_ref[...] = g_assoc.lock
    if flags.want_display:
        d_assoc = g_assoc if flags.share else rules.associate(cfg, cfg.error_type, tab,
                                                              **common)
        vals = values(d_assoc, cfg.error_type)
        for k in range(Kp):
            v = vals[k] if k < K else zeros
            disp_ref[pl.ds(k, 1)] = v
            sums_ref[pl.ds(k, 1)] = jnp.sum(jnp.where(cell_ok, v, 0.0), axis=2)
        assoc = d_assoc.lock == 2
        mon_ref[pl.ds(0, 1)] = jnp.where(assoc, o[7], -1.0)
        mon_ref[pl.ds(1, 1)] = jnp.where(assoc, d_assoc.iou_star, -1.0)


# --------------------------------------------------------------------------- wrapper


def _target_tables(targets, cfg: YoloConfig, plan: Plan, startup):
    """Per-image target table ``[N, Lp, Mp, 1]`` and box masks ``[N, 2, Mp, Bp, 1]``."""
    N, M, Mp, Bp = plan.N, plan.M, plan.Mp, plan.Bp
    tg = rules.parse_targets(targets, cfg, jnp.float32)
    tcell = rules.target_cells(tg.box, cfg)
    best_prior, elig, small = rules.prior_rules(tg, cfg)
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
    t[_PRI:_PRI + 3, :B] = rules.floored_priors(cfg).T
    t[_LAMBDA, :B] = np.asarray(cfg.prior_noobj_prob, np.float32)
    if cfg.min_prior_forced_scaling > 0:
        t[_SAME_PRIOR, :B] = rules.same_prior_mask(cfg)
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
    """Kernel version of the reference's terms on an ACTIVATED output.

    ``output`` ``(N, [G2,] G1, G0, B, K)``, ``targets`` ``[N, target_len]`` (validated by
    the caller), ``startup_mode`` "off", "on" or "traced" (then ``nb_im_iter`` decides),
    ``key`` None when nothing is random.  ``interpret`` defaults to "not on a GPU".
    ``image_offset``: index of ``output[0]`` in the whole batch (a shard's first image),
    so that random draws are those of the whole batch.  Per-cell results come back in
    the layout of ``output``.
    """
    pl = _compat.pallas()
    N = output.shape[0]
    lead = tuple(output.shape[:-2])
    random = key is not None
    draw_table = random and not threefry.supported(key)
    plan = make_plan(cfg, N, block_cells=block_cells, draw_table=draw_table)
    check_block_shapes(plan)
    if interpret is None:
        interpret = not _compat.on_gpu()
    B, K, G = plan.B, plan.K, plan.G
    o = jnp.transpose(layout.cells(output).astype(jnp.float32), (0, 3, 2, 1))   # (N, K, B, G)
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
                      jax.ShapeDtypeStruct((N, 1, plan.Bp, plan.Gp), jnp.int32)]
        out_specs += [cells, pl.BlockSpec((None, 1, plan.Bp, plan.Gb), lambda n, j: (n, 0, 0, j))]
    if want_display:
        out_shape += [jax.ShapeDtypeStruct(per_cell, jnp.float32),
                      jax.ShapeDtypeStruct((N, 2, plan.Bp, plan.Gp), jnp.float32),
                      jax.ShapeDtypeStruct((N, nblk, plan.Kp, plan.Bp), jnp.float32)]
        out_specs += [cells,
                      pl.BlockSpec((None, 2, plan.Bp, plan.Gb), lambda n, j: (n, 0, 0, j)),
                      pl.BlockSpec((None, None, plan.Kp, plan.Bp), lambda n, j: (n, j, 0, 0))]
    extra = {} if interpret else {"compiler_params": _compat.triton_params(num_warps, 1)}
    res = list(pl.pallas_call(
        partial(_kernel, cfg=cfg, plan=plan, flags=flags), out_shape=out_shape,
        grid=(N, nblk), in_specs=in_specs, out_specs=out_specs, interpret=interpret,
        **extra)(*args))

    def channel_last(x):   # (N, k, Bp, Gp) -> (N, *grid, B, k)
        k = x.shape[1]
        return jnp.transpose(x[:, :, :B, :G], (0, 3, 2, 1)).reshape(lead + (B, k))

    delta = locks = display = monitor = sums = None
    if want_delta:
        delta = channel_last(res[0][:, :K])
        locks = channel_last(res[1]).reshape(lead + (B,))
        res = res[2:]
    if want_display:
        display, monitor = channel_last(res[0][:, :K]), channel_last(res[1])
        sums = jnp.sum(res[2][:, :, :K, :B], axis=(1, 3))
    return KernelTerms(delta, display, monitor, locks, sums)


def yolo_terms_sharded(output, targets, nb_im_iter, key, *, axis_name: str | None = None,
                       **kw) -> KernelTerms:
    """:func:`yolo_terms_kernel`, split over the devices of the current mesh's
    ``axis_name`` axis (the batch axis).

    Under ``jax.set_mesh(mesh)`` with an ``axis_name`` axis, each device runs the kernel
    on its own images (``jax.shard_map``); XLA cannot partition a kernel by itself and
    would gather the batch on every device.  Elsewhere, with ``axis_name`` None, or when
    the batch does not split evenly, one kernel call covers the batch.  Results are the
    same either way, random draws included.
    """
    mesh = jax.sharding.get_abstract_mesh()
    n_dev = (1 if axis_name is None or mesh.empty or axis_name not in mesh.axis_names
             else mesh.shape[axis_name])
    hashed = key is None or threefry.supported(key)
    if n_dev == 1 or output.shape[0] % n_dev or not hashed:
        return yolo_terms_kernel(output, targets, nb_im_iter, key, **kw)
    P = jax.sharding.PartitionSpec

    def local(o, t, nb, k):
        offset = jax.lax.axis_index(axis_name) * o.shape[0]
        return yolo_terms_kernel(o, t, nb, k, image_offset=offset, **kw)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(axis_name), P(axis_name), P(), P()),
                         out_specs=P(axis_name), check_vma=False)(output, targets, nb_im_iter,
                                                                  key)
