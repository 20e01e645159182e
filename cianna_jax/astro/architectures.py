"""Detector networks for ``cianna-jax train``: a small default one for CPUs and CIANNA's
SDC1 network for GPUs, with YOLO size priors fitted to the training boxes.

* ``"default"``: four 3x3 convolutions (16, 32, 64, 64 filters) with three 2x2 max pools,
  cells of 8 pixels, 2 boxes per cell; about 0.1 GFLOP per 64x64 training patch, so an
  epoch of 1024 patches takes seconds on 2 CPU cores.
* ``"sdc1"``: the backbone of CIANNA's ``examples/SKAO_SDC1/train_network.py`` (17
  convolutions, strided 2x2 downsampling to cells of 16 pixels, one group norm, a
  2048-filter 1x1 layer with dropout, the YOLO head) with its 9 priors and loss settings
  (error scales, IoU limits, slopes, ``OFFSET`` prior distance); ``nb_param`` is 0 here:
  fluxes and shapes come from the Gaussian fit of ``predict``.  Made for GPUs.
* ``"cube"``: for spectral-line cubes, four 3x3x3 convolutions (8, 16, 32, 32 filters) with
  three 2x2x2 max pools, cells of 8 pixels and 8 channels, 2 boxes per cell
  (:func:`build_cube_detector`); the default for a cube.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..network import Network, make_network
from ..yolo.config import (
    make_config,
    set_error_scales,
    set_IoU_limits,
    set_slopes_and_maxes,
    set_sm_single,
)

__all__ = ["Architecture", "ARCHITECTURES", "get_architecture", "fit_priors", "build_detector",
           "build_cube_detector"]


@dataclass(frozen=True)
class Architecture:
    """A detector family: ``cell`` (pixels per output cell), ``default_patch``, the number
    of boxes per cell and the builder ``layers(nb_filters) -> list of layer specs``."""

    name: str
    cell: int
    default_patch: int
    nb_box: int
    description: str
    layers: Callable[[int], list]
    fixed_priors: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    ndim: int = 2


def _default_layers(nb_filters: int) -> list:
    return [nn.conv([3, 3], 16, padding=[1, 1]), nn.pool([2, 2]),
            nn.conv([3, 3], 32, padding=[1, 1]), nn.pool([2, 2]),
            nn.conv([3, 3], 64, padding=[1, 1]), nn.pool([2, 2]),
            nn.conv([3, 3], 64, padding=[1, 1]),
            nn.conv([1, 1], nb_filters, activation="YOLO")]


def _sdc1_layers(nb_filters: int) -> list:
    def c(f, n, s=1):
        return nn.conv([f, f], n, stride=[s, s], padding=[f // 2 if s == 1 else 0] * 2)

    return [c(5, 32),
            c(2, 16, 2), c(3, 24), c(3, 32),
            c(2, 64, 2), c(1, 128), c(3, 192),
            c(2, 128, 2), c(1, 192), c(3, 384), c(1, 256), c(3, 384),
            c(2, 512, 2), c(1, 768), c(3, 1024),
            nn.norm(group_size=4),
            nn.conv([1, 1], 2048, drop_rate=0.25),
            nn.conv([1, 1], nb_filters, activation="YOLO")]


def _cube_layers(nb_filters: int) -> list:
    return [nn.conv([3, 3, 3], 8, padding=[1, 1, 1]), nn.pool([2, 2, 2]),
            nn.conv([3, 3, 3], 16, padding=[1, 1, 1]), nn.pool([2, 2, 2]),
            nn.conv([3, 3, 3], 32, padding=[1, 1, 1]), nn.pool([2, 2, 2]),
            nn.conv([3, 3, 3], 32, padding=[1, 1, 1]),
            nn.conv([1, 1, 1], nb_filters, activation="YOLO")]


ARCHITECTURES: dict[str, Architecture] = {
    "default": Architecture("default", cell=8, default_patch=64, nb_box=2,
                            description="4 convolutions, cells of 8 px: minutes on a CPU",
                            layers=_default_layers),
    "sdc1": Architecture("sdc1", cell=16, default_patch=256, nb_box=9,
                         description="CIANNA's SDC1 network (17 convolutions): for GPUs",
                         layers=_sdc1_layers,
                         fixed_priors=((6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 12.0, 9.0, 24.0),
                                       (6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 9.0, 12.0, 24.0))),
    "cube": Architecture("cube", cell=8, default_patch=32, nb_box=2,
                         description="4 3D convolutions, cells of 8 pixels and channels: "
                                     "spectral-line cubes", layers=_cube_layers, ndim=3),
}


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name`` (ValueError listing the known ones)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"--arch: unknown architecture {name!r}; known: "
                         f"{', '.join(ARCHITECTURES)}") from None


def fit_priors(boxes: np.ndarray, nb_box: int, ndim: int = 2) -> np.ndarray:
    """YOLO size priors ``[ndim, nb_box]`` (widths, heights and, in 3D, depths in pixels)
    from training boxes ``[n, 6]``: the box sizes at evenly spaced quantiles of their area
    (volume), so that each prior covers a similar share of the sources (the median size
    for one prior)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    if b.shape[0] == 0:
        raise ValueError("no training box: cannot fit the YOLO size priors")
    sides = [b[:, 3 + k] - b[:, k] for k in range(ndim)]
    order = np.argsort(np.prod(sides, axis=0), kind="stable")
    q = (np.arange(nb_box) + 0.5) / nb_box
    idx = order[np.minimum((q * len(order)).astype(int), len(order) - 1)]
    return np.stack([v[idx] for v in sides]).astype(np.float32)


def build_detector(arch: str | Architecture, patch: int, priors: np.ndarray, max_obj: int,
                   *, bias: float = 0.1, nb_class: int = 0) -> Network:
    """The YOLO network of ``arch`` for ``patch x patch`` single-channel inputs.
    ``priors`` ``[2, nb_box]`` (ignored by architectures with fixed priors); ``nb_class``
    classes learnt with each box (CIANNA's class outputs, as a softmax over the classes:
    one class per source; targets of class 0, sources without one, train their boxes
    only), 0 for a detector that only finds sources."""
    a = arch if isinstance(arch, Architecture) else get_architecture(arch)
    if a.ndim != 2:
        raise ValueError(f"--arch: {a.name} is for cubes; a 2D image trains default or sdc1")
    if patch < a.cell or patch % a.cell:
        raise ValueError(f"--patch: {patch} is not a positive multiple of the {a.name} "
                         f"network's cell ({a.cell} pixels)")
    g = patch // a.cell
    classes = {"nb_class": int(nb_class), "class_softmax": int(nb_class > 0),
               "unclassified_targets": int(nb_class > 0)}
    if a.name == "sdc1":
        pri = np.array(a.fixed_priors, np.float32)
        cfg = make_config(
            (patch, patch, 1), (g, g, 1), nb_box=a.nb_box, **classes, max_nb_obj_per_image=max_obj,
            prior_size=pri, prior_noobj_prob=np.array([0.15] * 6 + [0.01] * 3, np.float32),
            error_scales=set_error_scales(position=36.0, size=0.2, probability=0.5,
                                          objectness=2.0, parameters=5.0),
            IoU_limits=set_IoU_limits(good_IoU_lim=0.5, low_IoU_best_box_assoc=-0.1,
                                      min_prob_IoU_lim=-0.3, min_obj_IoU_lim=-0.3,
                                      min_param_IoU_lim=-0.1),
            slopes_and_maxes=set_slopes_and_maxes(
                position=set_sm_single(slope=0.5, fmax=6.0, fmin=-6.0),
                size=set_sm_single(slope=0.5, fmax=1.2, fmin=-1.2),
                probability=set_sm_single(slope=0.2, fmax=6.0, fmin=-6.0),
                objectness=set_sm_single(slope=0.5, fmax=6.0, fmin=-6.0),
                parameters=set_sm_single(slope=0.5, fmax=1.5, fmin=-0.2)),
            IoU_type="DIoU", prior_dist_type="OFFSET", rand_startup=0,
            rand_prob_best_box_assoc=0.9, rand_prob=0.02, no_override=1)
    else:
        pri = np.asarray(priors, np.float32).reshape(2, -1)
        if pri.shape[1] != a.nb_box:
            raise ValueError(f"priors: the {a.name} network has {a.nb_box} boxes per cell, "
                             f"got {pri.shape[1]} priors")
        cfg = make_config((patch, patch, 1), (g, g, 1), nb_box=a.nb_box, **classes,
                          max_nb_obj_per_image=max_obj, prior_size=pri, IoU_type="DIoU",
                          prior_dist_type="SIZE", rand_startup=0,
                          error_scales=np.array([2, 2, 1, 2, 1, 1], np.float32))
    return make_network((patch, patch, 1, 1), a.layers(cfg.nb_filters), bias, cfg)


def build_cube_detector(arch: str | Architecture, patch: int, depth: int, priors: np.ndarray,
                        max_obj: int, *, bias: float = 0.1) -> Network:
    """The 3D YOLO network of ``arch`` for ``depth x patch x patch`` single-channel
    inputs (channels, pixels); ``priors`` ``[3, nb_box]`` (width, height, depth)."""
    a = arch if isinstance(arch, Architecture) else get_architecture(arch)
    if a.ndim != 3:
        raise ValueError(f"--arch: {a.name} is a 2D network; a cube trains the cube network")
    for name, v in (("--patch", patch), ("--patch-channels", depth)):
        if v < a.cell or v % a.cell:
            raise ValueError(f"{name}: {v} is not a positive multiple of the {a.name} "
                             f"network's cell ({a.cell})")
    pri = np.asarray(priors, np.float32).reshape(3, -1)
    if pri.shape[1] != a.nb_box:
        raise ValueError(f"priors: the {a.name} network has {a.nb_box} boxes per cell, got "
                         f"{pri.shape[1]} priors")
    g, gz = patch // a.cell, depth // a.cell
    cfg = make_config((patch, patch, depth), (g, g, gz), nb_box=a.nb_box, nb_class=0,
                      max_nb_obj_per_image=max_obj, prior_size=pri, IoU_type="DIoU",
                      prior_dist_type="SIZE", rand_startup=0,
                      error_scales=np.array([2, 2, 1, 2, 1, 1], np.float32))
    return make_network((patch, patch, depth, 1), a.layers(cfg.nb_filters), bias, cfg)
