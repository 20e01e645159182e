"""YOLO detector configuration: CIANNA's ``set_yolo_params`` and its helpers.

``make_config`` resolves every default and sentinel of ``set_yolo_params``
(cianna_yolo.md section 1.2) into a frozen, hashable :class:`YoloConfig` that can be
a static ``jax.jit`` argument.  The helper functions build the same numpy arrays as
CIANNA's ``set_fit_parts``, ``set_error_scales``, ``set_IoU_limits``,
``set_sm_single`` and ``set_slopes_and_maxes`` (section 1.1), sentinels included.
Unlike CIANNA, invalid settings raise instead of warning, falling back or exiting.
Argument types follow :mod:`cianna_jax.checks` (ints refuse floats, flags take bools).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..checks import (
    as_choice,
    as_flag,
    as_float,
    as_float_array,
    as_int,
    as_int_array,
    as_triple,
)

__all__ = [
    "YoloConfig",
    "make_config",
    "set_fit_parts",
    "set_error_scales",
    "set_IoU_limits",
    "set_sm_single",
    "set_slopes_and_maxes",
    "summary",
    "check_targets",
    "PARTS",
    "IOU_TYPES",
    "PRIOR_DIST_TYPES",
    "ERROR_TYPES",
    "KERNELS",
    "DEFAULT_ERROR_SCALES",
    "DEFAULT_SLOPES_AND_MAXES",
    "DEFAULT_IOU_LIMITS",
]

#: Loss parts, in the order used by every per-part array.
PARTS = ("position", "size", "probability", "objectness", "classes", "parameters")
IOU_TYPES = ("IoU", "GIoU", "DIoU", "DIoU2")
#: Accepted prior distance names; "IOU" is an alias of "IoU".
PRIOR_DIST_TYPES = ("IoU", "IOU", "SIZE", "OFFSET")
ERROR_TYPES = ("natural", "complete")
#: Implementations of the loss: "auto" (Pallas kernel on a GPU where it was measured
#: faster, jax.numpy elsewhere: ``yolo.resolve_kernel``), "pallas" (forced; interpreted
#: off GPU) or "xla" (the jax.numpy reference).
KERNELS = ("auto", "pallas", "xla")

DEFAULT_ERROR_SCALES = (2.0, 2.0, 1.0, 2.0, 1.0, 1.0)
#: Rows (slope, max, min) per part.
DEFAULT_SLOPES_AND_MAXES = (
    (1.0, 6.0, -6.0),
    (1.0, 1.6, -1.6),
    (1.0, 6.0, -6.0),
    (1.0, 6.0, -6.0),
    (1.0, 6.0, -6.0),
    (1.0, 1.2, -0.2),
)
#: IoU_limits defaults (good, low_best, prob, obj, class, param, diff_IoU, diff_obj).
DEFAULT_IOU_LIMITS = MappingProxyType({
    "IoU": (0.5, 0.1, 0.0, 0.0, 0.2, 0.2, 0.5, 0.3),
    "GIoU": (0.4, -0.5, -1.0, -1.0, -0.3, -0.3, 0.4, 0.2),
    "DIoU": (0.3, -0.6, -1.0, -1.0, -0.5, -0.5, 0.3, 0.1),
    "DIoU2": (0.3, -0.5, -1.0, -1.0, -0.4, -0.4, 0.3, 0.1),
})
_IOU_LIMIT_NAMES = (
    "good_IoU_lim", "low_IoU_best_box_assoc", "min_prob_IoU_lim", "min_obj_IoU_lim",
    "min_class_IoU_lim", "min_param_IoU_lim", "diff_IoU_lim", "diff_obj_lim",
)
_SM_SENTINEL = (-1.0, 100000.0, -100000.0)
_DEFAULT_RAND_STARTUP = 64000
_IOU_DISPLAY = MappingProxyType({"IoU": "Classical IoU", "GIoU": "Generalized GIoU",
                                 "DIoU": "Distance DIoU", "DIoU2": "Distance DIoU2"})


def _f32(v) -> float:
    """Python float holding the float32 value CIANNA would store."""
    return float(np.float32(v))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class YoloConfig:
    """Resolved YOLO settings of one output layer (hashable, jit-static).

    Geometry: ``in_dim`` (W, H, D) input pixels and ``grid`` (G0, G1, G2) cells along
    x, y, z.  Per-part tuples follow :data:`PARTS`.  ``prior_size`` is per box
    (w, h, d) as given (unfloored), dims ``>= fit_dim`` set to 0; the loss uses
    :attr:`priors_floored`.  ``slopes_and_maxes`` rows are (slope, max, min).
    ``prior_dist_type`` is canonical: "IoU", "SIZE" or "OFFSET".  ``kernel`` picks the
    loss implementation (:data:`KERNELS`); it changes speed, not results.
    ``unclassified_targets`` (not CIANNA's: 0 keeps its maths): a target of class 0 has
    no known class; its box is fitted as any other, its class outputs get no delta (a
    catalogue where only some sources are classified).  ``class_weights`` (not CIANNA's:
    empty keeps its maths): per class, a factor on the class term of the boxes associated
    with targets of that class (a rare class's errors weighted up).
    """

    in_dim: tuple[int, int, int]
    grid: tuple[int, int, int]
    nb_box: int = 0
    nb_class: int = 0
    nb_param: int = 0
    max_nb_obj_per_image: int = 0
    prior_size: tuple[tuple[float, float, float], ...] = ()
    prior_noobj_prob: tuple[float, ...] = ()
    error_scales: tuple[float, ...] = DEFAULT_ERROR_SCALES
    slopes_and_maxes: tuple[tuple[float, float, float], ...] = DEFAULT_SLOPES_AND_MAXES
    param_ind_scales: tuple[float, ...] = ()
    IoU_limits: tuple[float, ...] = DEFAULT_IOU_LIMITS["GIoU"]
    fit_parts: tuple[int, ...] = (1, 1, 1, 1, -1, -1)
    IoU_type: str = "GIoU"
    prior_dist_type: str = "SIZE"
    strict_box_size: int = 0
    fit_dim: int = 0
    rand_startup: int = _DEFAULT_RAND_STARTUP
    rand_prob_best_box_assoc: float = 0.0
    rand_prob: float = 0.0
    min_prior_forced_scaling: float = 0.0
    class_softmax: int = 0
    diff_flag: int = 0
    error_type: str = "natural"
    no_override: int = 0
    raw_output: int = 0
    kernel: str = "auto"
    unclassified_targets: int = 0
    class_weights: tuple[float, ...] = ()

    @property
    def cell(self) -> tuple[int, int, int]:
        """Cell size in pixels per dim: ``in_dim // grid`` (integer division)."""
        return tuple(int(i) // int(g) for i, g in zip(self.in_dim, self.grid))

    @property
    def priors_floored(self) -> tuple[tuple[float, float, float], ...]:
        """Priors used by the loss: every extent floored at 1 pixel."""
        return tuple(tuple(max(1.0, v) for v in p) for p in self.prior_size)

    @property
    def channels_per_box(self) -> int:
        return 8 + self.nb_class + self.nb_param

    @property
    def nb_filters(self) -> int:
        """Filters the YOLO conv layer must have: ``B*(8+C+P)``."""
        return self.nb_box * self.channels_per_box

    @property
    def target_box_len(self) -> int:
        return 7 + self.nb_param + (1 if self.diff_flag else 0)

    @property
    def target_len(self) -> int:
        """Target row length ``1 + max_obj*(7+P+diff_flag)``."""
        return 1 + self.max_nb_obj_per_image * self.target_box_len

    @property
    def nb_cells(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """Per-image output shape ``(F, G2, G1, G0)``."""
        return (self.nb_filters, self.grid[2], self.grid[1], self.grid[0])


def _as_float(value, name: str) -> float:
    """A finite scalar as the float32 value CIANNA stores."""
    return _f32(as_float(value, name, finite=True))


def make_config(
    in_dim,
    grid,
    *,
    nb_box: int = 0,
    nb_class: int = 0,
    nb_param: int = 0,
    max_nb_obj_per_image: int = 0,
    prior_size=None,
    prior_noobj_prob=None,
    error_scales=None,
    slopes_and_maxes=None,
    param_ind_scales=None,
    IoU_limits=None,
    fit_parts=None,
    IoU_type: str = "GIoU",
    strict_box_size: int = 0,
    prior_dist_type: str = "SIZE",
    fit_dim: int = 0,
    rand_startup: int = _DEFAULT_RAND_STARTUP,
    rand_prob_best_box_assoc: float = 0.0,
    rand_prob: float = 0.0,
    min_prior_forced_scaling: float = 0.0,
    class_softmax: int = 0,
    diff_flag: int = 0,
    error_type: str = "natural",
    no_override: int = 0,
    raw_output: int = 0,
    kernel: str = "auto",
    unclassified_targets: int = 0,
    class_weights=None,
) -> YoloConfig:
    """Resolve ``set_yolo_params`` keywords for an output grid into a :class:`YoloConfig`.

    ``in_dim`` is the network input (W[, H[, D]]) in pixels, ``grid`` the YOLO layer's
    spatial size (G0[, G1[, G2]]); missing trailing dims are 1.  Arrays may be lists,
    tuples or numpy arrays: ``in_dim``, ``grid`` and ``fit_parts`` of integers, the others
    of any integer or float dtype; int keywords refuse floats (:mod:`cianna_jax.checks`).
    Raises ``ValueError``/``TypeError`` naming the keyword at fault.
    """
    in_dim3 = as_triple(in_dim, "in_dim", minimum=1, required=True)
    grid3 = as_triple(grid, "grid", minimum=1, required=True)
    B = as_int(nb_box, "nb_box", minimum=0)
    C = as_int(nb_class, "nb_class", minimum=0)
    P = as_int(nb_param, "nb_param", minimum=0)
    max_obj = as_int(max_nb_obj_per_image, "max_nb_obj_per_image", minimum=0)
    fit_dim = as_int(fit_dim, "fit_dim")
    if fit_dim < 0:
        fit_dim = 0

    IoU_type = as_choice(IoU_type, "IoU_type", IOU_TYPES)
    prior_dist_type = as_choice(prior_dist_type, "prior_dist_type", PRIOR_DIST_TYPES)
    if prior_dist_type == "IOU":
        prior_dist_type = "IoU"
    error_type = as_choice(error_type, "error_type", ERROR_TYPES)
    kernel = as_choice(kernel, "kernel (yolo_kernel)", KERNELS)

    # priors: (n_dim, B) -> per box (w, h, d), dims >= fit_dim zeroed
    priors = np.zeros((B, 3), dtype=np.float32)
    if prior_size is not None:
        ps = as_float_array(prior_size, "prior_size")
        if ps.ndim != 2 or not 1 <= ps.shape[0] <= 3:
            raise ValueError(
                f"prior_size must have shape (n_dim, nb_box) with n_dim in 1..3, "
                f"received {ps.shape}")
        if ps.shape[1] != B:
            raise ValueError(
                f"prior_size has {ps.shape[1]} boxes (shape[1]) but nb_box = {B}")
        n_dim = ps.shape[0]
        if fit_dim <= 0:
            fit_dim = n_dim
        if fit_dim > n_dim:
            raise ValueError(
                f"fit_dim = {fit_dim} exceeds the {n_dim} dims given in prior_size")
        priors[:, :n_dim] = ps.T
    elif fit_dim > 3:
        raise ValueError(f"fit_dim must be <= 3, received {fit_dim}")
    priors[:, fit_dim:] = 0.0

    if prior_noobj_prob is None:
        noobj = np.full(B, 0.2, dtype=np.float32)
    else:
        noobj = as_float_array(prior_noobj_prob, "prior_noobj_prob")
        if noobj.ndim != 1 or noobj.shape[0] != B:
            raise ValueError(
                f"prior_noobj_prob must have shape ({B},) (nb_box), received {noobj.shape}")

    scales = list(DEFAULT_ERROR_SCALES)
    if error_scales is not None:
        es = as_float_array(error_scales, "error_scales", shape=(6,))
        scales = [float(v) if v > 0 else d for v, d in zip(es, scales)]

    sm = [list(r) for r in DEFAULT_SLOPES_AND_MAXES]
    if slopes_and_maxes is not None:
        arr = as_float_array(slopes_and_maxes, "slopes_and_maxes", shape=(6, 3))
        for p in range(6):
            slope, hi, lo = (float(v) for v in arr[p])
            if slope > 0:
                sm[p][0] = slope
            if hi < 100000.0:
                sm[p][1] = hi
            if lo > -100000.0:
                sm[p][2] = lo

    weights = ()
    if class_weights is not None:
        cw = as_float_array(class_weights, "class_weights")
        if cw.shape != (C,) or not np.all(np.isfinite(cw) & (cw > 0)):
            raise ValueError(f"class_weights must be {C} (nb_class) finite values > 0, "
                             f"received {cw.tolist()}")
        weights = tuple(_f32(v) for v in cw)

    if param_ind_scales is None:
        pis = np.ones(P, dtype=np.float32)
    else:
        pis = as_float_array(param_ind_scales, "param_ind_scales")
        if pis.ndim != 1 or pis.shape[0] != P:
            raise ValueError(
                f"param_ind_scales must have shape ({P},) (nb_param), received {pis.shape}")

    limits = list(DEFAULT_IOU_LIMITS[IoU_type])
    if IoU_limits is not None:
        lim = as_float_array(IoU_limits, "IoU_limits", shape=(8,))
        limits = [float(v) if v > -1.99 else d for v, d in zip(lim, limits)]

    fits = [1, 1, 1, 1, 1 if C > 0 else -1, 1 if P > 0 else -1]
    if fit_parts is not None:
        fp = as_int_array(fit_parts, "fit_parts", shape=(6,))
        for p in range(6):
            if fp[p] > -2:
                v = int(fp[p])
                if v not in (1, 0, -1):
                    raise ValueError(
                        f"fit_parts[{p}] ({PARTS[p]}) must be 1, 0 or -1 (or the -2 sentinel), "
                        f"received {v}")
                fits[p] = v

    strict = as_int(strict_box_size, "strict_box_size")
    rs = as_int(rand_startup, "rand_startup")
    if rs < 0:
        rs = _DEFAULT_RAND_STARTUP
    rpb = max(0.0, _as_float(rand_prob_best_box_assoc, "rand_prob_best_box_assoc"))
    rp = max(0.0, _as_float(rand_prob, "rand_prob"))
    mpfs = max(0.0, _as_float(min_prior_forced_scaling, "min_prior_forced_scaling"))

    return YoloConfig(
        in_dim=in_dim3,
        grid=grid3,
        nb_box=B,
        nb_class=C,
        nb_param=P,
        max_nb_obj_per_image=max_obj,
        prior_size=tuple(tuple(_f32(v) for v in row) for row in priors),
        prior_noobj_prob=tuple(_f32(v) for v in noobj),
        error_scales=tuple(_f32(v) for v in scales),
        slopes_and_maxes=tuple(tuple(_f32(v) for v in row) for row in sm),
        param_ind_scales=tuple(_f32(v) for v in pis),
        IoU_limits=tuple(_f32(v) for v in limits),
        fit_parts=tuple(fits),
        IoU_type=IoU_type,
        prior_dist_type=prior_dist_type,
        strict_box_size=max(0, strict),
        fit_dim=fit_dim,
        rand_startup=rs,
        rand_prob_best_box_assoc=rpb,
        rand_prob=rp,
        min_prior_forced_scaling=mpfs,
        class_softmax=1 if as_flag(class_softmax, "class_softmax") else 0,
        diff_flag=1 if as_flag(diff_flag, "diff_flag") else 0,
        error_type=error_type,
        no_override=as_flag(no_override, "no_override"),
        raw_output=as_flag(raw_output, "raw_output"),
        kernel=kernel,
        unclassified_targets=1 if as_flag(unclassified_targets, "unclassified_targets") else 0,
        class_weights=weights,
    )


# --------------------------------------------------------------------------- helpers


def set_fit_parts(position=-2, size=-2, probability=-2, objectness=-2, classes=-2,
                  parameters=-2) -> np.ndarray:
    """Fit flags in part order (int32, shape (6,)); -2 marks "use the default"."""
    vals = (position, size, probability, objectness, classes, parameters)
    return np.array([as_int(v, n) for v, n in zip(vals, PARTS)], dtype=np.int32)


def set_error_scales(position=-1.0, size=-1.0, probability=-1.0, objectness=-1.0,
                     classes=-1.0, parameters=-1.0) -> np.ndarray:
    """Error scales in part order (float32, shape (6,)); -1 marks "use the default"."""
    vals = (position, size, probability, objectness, classes, parameters)
    return np.array([as_float(v, n) for v, n in zip(vals, PARTS)], dtype=np.float32)


def set_IoU_limits(good_IoU_lim=-2.0, low_IoU_best_box_assoc=-2.0, min_prob_IoU_lim=-2.0,
                   min_obj_IoU_lim=-2.0, min_class_IoU_lim=-2.0, min_param_IoU_lim=-2.0,
                   diff_IoU_lim=-2.0, diff_obj_lim=-2.0) -> np.ndarray:
    """The 8 IoU limits (float32); -2 marks "use the IoU-type default"."""
    vals = (good_IoU_lim, low_IoU_best_box_assoc, min_prob_IoU_lim, min_obj_IoU_lim,
            min_class_IoU_lim, min_param_IoU_lim, diff_IoU_lim, diff_obj_lim)
    return np.array([as_float(v, n) for v, n in zip(vals, _IOU_LIMIT_NAMES)], dtype=np.float32)


def set_sm_single(slope=-1.0, fmin=-100000.0, fmax=100000.0) -> np.ndarray:
    """One slopes row, stored as ``[slope, fmax, fmin]`` (max before min, as CIANNA)."""
    vals = (as_float(slope, "slope"), as_float(fmax, "fmax"), as_float(fmin, "fmin"))
    return np.array(vals, dtype=np.float32)


def set_slopes_and_maxes(position=None, size=None, probability=None, objectness=None,
                         classes=None, parameters=None) -> np.ndarray:
    """Rows (slope, max, min) per part (float32, (6, 3)); missing rows are sentinels."""
    out = np.empty((6, 3), dtype=np.float32)
    for p, row in enumerate((position, size, probability, objectness, classes, parameters)):
        if row is None:
            out[p] = _SM_SENTINEL
        else:
            vals = as_float_array(row, PARTS[p]).reshape(-1)
            if vals.shape[0] < 3:
                raise ValueError(f"{PARTS[p]} must hold 3 values (slope, max, min)")
            out[p] = vals[:3]
    return out


# --------------------------------------------------------------------------- printout


def summary(cfg: YoloConfig) -> str:
    """The ``set_yolo_params`` printout (cianna_yolo.md section 1.3)."""
    rule = " " + "-" * 67
    lines = ["", " YOLO layer setup ", rule]
    lines += [f" Nboxes = {cfg.nb_box}", f" Nclasses = {cfg.nb_class}",
              f" Nparams = {cfg.nb_param}", f" IoU type = {_IOU_DISPLAY[cfg.IoU_type]}"]
    cls_type = "softmax-CrossEntropy" if cfg.class_softmax else "sigmoid-MSE"
    lines += [f" Classification type: {cls_type}", f" Nb dim fitted : {cfg.fit_dim}", ""]
    for d, name in enumerate("WHD"):
        vals = "".join(f"{p[d]:.4f} " for p in cfg.prior_size)
        lines.append(f" {name} priors = [{vals}]")
    lines.append(" No obj. prob. priors")
    lines.append("          = [" + "".join(f"{v:.4f} " for v in cfg.prior_noobj_prob) + "]")
    lines.append(" Fit parts: (Pos., Size, Prob., Obj., Class., Param.)")
    lines.append("   = [" + "".join(f" {v} " for v in cfg.fit_parts) + "]")
    lines.append(" Error scales: (Pos., Size, Prob., Obj., Class., Param.)")
    lines.append("   = [" + "".join(f" {v:.3f} " for v in cfg.error_scales) + "]")
    lines.append(" IoU lim.: (GdNotBest, LowBest, Prob., Obj., Class., Param., "
                 "diffIoUlim, diffObjlim)")
    lines.append("   = [" + "".join(f" {v:6.3f} " for v in cfg.IoU_limits) + "]")
    if cfg.nb_param > 0:
        lines.append(" Individual param. error scaling: ")
        lines.append("   = [" + "".join(f" {v:6.3f} " for v in cfg.param_ind_scales) + "]")
    lines += ["", " Activation slopes and limits: "]
    for p, row in enumerate(cfg.slopes_and_maxes):
        head = "   = " if p == 0 else "     "
        lines.append(head + "[{:6.2f} {:6.2f} {:6.2f}]".format(*row))
    lines += ["     ", " *** Other training hyper-parameters *** "]
    if cfg.strict_box_size > 0:
        lines.append("  Strict box size association is ENABLED")
        lines.append(f"  Strict association Nb. good priors = {cfg.strict_box_size}")
    else:
        lines.append("  Strict box size association is DISABLED")
    lines.append(f"  Startup random association Nb. item : {cfg.rand_startup}")
    lines.append(f"  Proportion of forced best prior assoc.: {cfg.rand_prob_best_box_assoc:.3f}")
    lines.append(f"  Proportion of forced random prior assoc.: {cfg.rand_prob:.3f}")
    lines.append(f"  Forced smallest prior association scaling : "
                 f"{cfg.min_prior_forced_scaling:6.3f}")
    lines.append(f"  Closest prior association type : Prior dist. {cfg.prior_dist_type}")
    lines.append(f"  Difficult flag in use: {'True' if cfg.diff_flag else 'False'}")
    lines.append(f"  Display error type : {cfg.error_type.upper()}")
    if cfg.unclassified_targets:
        lines.append("  Targets of class 0: boxes fitted, classes not")
    if cfg.class_weights:
        lines.append("  Class loss weights : [" + "".join(f" {v:.3f} " for v in cfg.class_weights)
                     + "]")
    lines += ["", rule, "", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets


def check_targets(targets, cfg: YoloConfig) -> np.ndarray:
    """Validate CIANNA YOLO target rows (section 2.4); return them as float32 (N, len).

    Checks the row length, ``-1 <= n_obj <= max_nb_obj_per_image``, classes in
    ``1..max(C, 1)`` (``0..C`` with ``unclassified_targets``), ``max >= min`` for each used
    box, and that a class-only row (``n_obj = -1``) holds a box.  Raises ``ValueError`` naming the row and box.
    """
    t = np.asarray(targets, dtype=np.float32)
    if t.ndim == 1:
        t = t[None, :]
    if t.ndim != 2:
        raise ValueError(f"targets must be 2D (N, {cfg.target_len}), received shape {t.shape}")
    if t.shape[1] != cfg.target_len:
        raise ValueError(
            f"targets rows have length {t.shape[1]}, expected target_len = {cfg.target_len} "
            f"(1 + max_nb_obj_per_image*(7 + nb_param + diff_flag))")
    if not np.all(np.isfinite(t)):
        raise ValueError("targets contain NaN or infinite values")
    L = cfg.target_box_len
    max_cls = max(cfg.nb_class, 1)
    min_cls = 0 if cfg.unclassified_targets else 1
    for r, row in enumerate(t):
        if row[0] != np.round(row[0]):
            raise ValueError(f"targets row {r}: the object count n_obj = {row[0]:g} is not an "
                             "integer")
        n = int(row[0])
        if n > cfg.max_nb_obj_per_image:
            raise ValueError(
                f"targets row {r}: n_obj = {n} exceeds max_nb_obj_per_image = "
                f"{cfg.max_nb_obj_per_image}")
        if n < -1:
            raise ValueError(f"targets row {r}: n_obj = {n} is below -1")
        n_used = 1 if n == -1 else n
        if n == -1 and cfg.max_nb_obj_per_image < 1:
            raise ValueError(f"targets row {r}: n_obj = -1 (class-only) but no box slot")
        boxes = row[1:].reshape(cfg.max_nb_obj_per_image, L)[:n_used]
        if n == -1 and np.all(boxes[0] == 0):
            raise ValueError(f"targets row {r}: n_obj = -1 (class-only) with no box")
        for j, box in enumerate(boxes):
            if box[0] != np.round(box[0]):
                raise ValueError(f"targets row {r}, box {j}: class {box[0]:g} is not an integer")
            cls = int(box[0])
            if not min_cls <= cls <= max_cls:
                raise ValueError(
                    f"targets row {r}, box {j}: class {box[0]:g} outside {min_cls}..{max_cls}")
            if np.any(box[4:7] < box[1:4]):
                raise ValueError(
                    f"targets row {r}, box {j}: inverted box (max < min): {box[1:7].tolist()}")
    return t
