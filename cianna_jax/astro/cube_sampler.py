"""Training patches of a spectral-line cube: :class:`.sampler.PatchSampler`'s rules on the
sky, with a window along the channels too.

A cube patch is ``depth`` channels of a ``patch x patch`` window. Its sky position is
drawn as an image patch's (positives around a line's source, uniform positions,
source-free negatives, rotations and flips on the sky); its first channel is drawn around
the line for positives (within a quarter of the depth), uniformly otherwise. A box cut by
the patch's faces is kept, clipped, when at least ``min_visible`` of its area on the sky
and of its extent along the channels is inside.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..datasets.radio_sky import cianna_targets
from .labels import SourceLabels
from .sampler import POSITIVE, Cancelled, PatchPlan, PatchSampler, transform_boxes

__all__ = ["CubePlan", "CubeWindows", "CubePatchSampler", "cube_grid_patches"]


class CubeWindows:
    """A region of a cube read window by window, for a region too large to hold: ``read``
    gives the normalised network input (float32, NaN-free) of a window of slices
    ``(z, y, x)`` relative to the region, of ``shape`` (d, h, w)."""

    def __init__(self, read: Callable[[tuple[slice, ...]], np.ndarray],
                 shape: tuple[int, int, int]) -> None:
        self.read = read
        self.shape = tuple(int(v) for v in shape)
        self.ndim = 3

    def __getitem__(self, window: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.read(tuple(window)), np.float32)


class CubePlan(NamedTuple):
    """A :class:`.sampler.PatchPlan` and each patch's first channel ``z0`` [n]."""

    sky: PatchPlan
    z0: np.ndarray


class CubePatchSampler(PatchSampler):
    """Random training patches ``[depth, patch, patch]`` of ``cube`` ``[d, h, w]`` (the
    normalised network input of a region holding every channel; ``origin`` its top-left
    sky pixel), with CIANNA's 3D YOLO targets; ``labels`` boxes span channels in their
    ``zmin``, ``zmax`` columns.  Other arguments as :class:`.sampler.PatchSampler`."""

    def __init__(self, cube: np.ndarray | CubeWindows, origin: tuple[int, int],
                 labels: SourceLabels, area: tuple[int, int, int, int], patch: int, depth: int,
                 max_obj: int, *, negative_fraction: float = 0.1, augment: bool = True,
                 positive_fraction: float = 0.5, min_visible: float = 0.5) -> None:
        c = cube if isinstance(cube, CubeWindows) else np.asarray(cube, dtype=np.float32)
        if c.ndim != 3:
            raise ValueError(f"cube must be 3D [d, h, w], got shape {c.shape}")
        if not 1 <= int(depth) <= c.shape[0]:
            raise ValueError(f"depth {depth}: the cube has {c.shape[0]} channels")
        if not isinstance(c, CubeWindows) and not np.isfinite(c).all():
            raise ValueError("cube has NaN or infinite voxels: give the normalised input with "
                             "blank voxels filled")
        # the sky rules (areas, positives, negatives) from the sky's shape (a plane of zeros
        # where the cube is read window by window: only its shape counts)
        plane = np.zeros(c.shape[1:], np.float32) if isinstance(c, CubeWindows) else c[0]
        super().__init__(plane, origin, labels, area, patch, max_obj,
                         negative_fraction=negative_fraction, augment=augment,
                         positive_fraction=positive_fraction, min_visible=min_visible)
        self.cube = c
        self.depth = int(depth)
        b = np.asarray(labels.boxes, np.float64).reshape(-1, 6)
        self._zc = np.floor(0.5 * (b[:, 2] + b[:, 5]))  # channel holding each box's centre

    def plan_cube(self, seed: int, epoch: int, n: int) -> CubePlan:
        """The patches of ``epoch``: their sky plan and first channels (pure in its
        arguments)."""
        sky = self.plan(seed, epoch, n)
        rng = np.random.default_rng([int(seed), int(epoch), 3])
        D, Pz = self.cube.shape[0], self.depth
        z0 = rng.integers(0, D - Pz + 1, sky.y0.size)
        pos = sky.kind == POSITIVE
        if pos.any():  # around the channel of the line the positive was placed around
            off = rng.integers(-(Pz // 4), Pz // 4 + 1, int(pos.sum()))
            z0[pos] = np.clip(self._zc[sky.source[pos]].astype(np.int64) - Pz // 2 + off, 0,
                              D - Pz)
        return CubePlan(sky, z0.astype(np.int64))

    def cube_boxes(self, z0: int, y0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes [m, 6] in the patch's pixel-edge frame, clipped to it; their fluxes [m])
        of the window at ``(z0, y0, x0)``, before augmentation."""
        b, f = self.patch_boxes(y0, x0)
        lo, hi = np.maximum(b[:, 2], z0), np.minimum(b[:, 5], z0 + self.depth)
        extent = b[:, 5] - b[:, 2]
        keep = (hi > lo) & (hi - lo >= self.min_visible * extent)
        b = b[keep]
        b[:, 2], b[:, 5] = lo[keep] - z0, hi[keep] - z0
        return b, f[keep]

    def cut_cube(self, z0: int, y0: int, x0: int, rot: int = 0, flip_x: bool = False,
                 flip_y: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One patch [depth, P, P] float32 and its target row, the window turned by ``rot``
        quarter turns on the sky, then flipped."""
        P, Pz = self.patch, self.depth
        oy, ox = self.origin
        pix = self.cube[z0:z0 + Pz, y0 - oy:y0 - oy + P, x0 - ox:x0 - ox + P]
        if pix.shape != (Pz, P, P):
            raise ValueError(f"window ({z0}, {y0}, {x0}) of size {Pz}x{P}x{P} leaves the cube")
        pix = np.rot90(pix, int(rot) % 4, axes=(1, 2))
        if flip_x:
            pix = pix[:, :, ::-1]
        if flip_y:
            pix = pix[:, ::-1]
        boxes, flux = self.cube_boxes(z0, y0, x0)
        boxes = transform_boxes(boxes, P, rot, flip_x, flip_y)
        return pix, cianna_targets(boxes, self.max_obj, priority=flux)

    def epoch(self, seed: int, epoch: int, n: int, *,
              cancel: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` patches of ``epoch``: inputs [n, depth, P, P, 1] float32 and targets
        [n, 1 + max_obj * 7]; pure in its arguments (see :meth:`.PatchSampler.epoch`)."""
        plan = self.plan_cube(seed, epoch, n)
        s = plan.sky
        P, Pz = self.patch, self.depth
        inputs = np.empty((s.y0.size, Pz, P, P, 1), np.float32)
        targets = np.empty((s.y0.size, 1 + self.max_obj * 7), np.float32)
        for i in range(s.y0.size):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"epoch {epoch} cancelled at patch {i}")
            inputs[i, ..., 0], targets[i] = self.cut_cube(
                int(plan.z0[i]), int(s.y0[i]), int(s.x0[i]), int(s.rot[i]),
                bool(s.flip_x[i]), bool(s.flip_y[i]))
        return inputs, targets


def cube_grid_patches(cube: np.ndarray | CubeWindows, origin: tuple[int, int],
                      labels: SourceLabels,
                      area: tuple[int, int, int, int], patch: int, depth: int,
                      max_obj: int) -> tuple[np.ndarray, np.ndarray]:
    """The non-overlapping tiling of ``area`` and of the channels (no augmentation):
    inputs [m, depth, P, P, 1] and targets, float32; for validation losses."""
    s = CubePatchSampler(cube, origin, labels, area, patch, depth, max_obj,
                         negative_fraction=0.0, augment=False)
    ys, xs = s.grid()
    zs = np.arange(0, cube.shape[0] - depth + 1, depth)
    inputs = np.empty((ys.size * zs.size, depth, patch, patch, 1), np.float32)
    targets = np.empty((ys.size * zs.size, 1 + max_obj * 7), np.float32)
    k = 0
    for z0 in zs:
        for y0, x0 in zip(ys, xs):
            inputs[k, ..., 0], targets[k] = s.cut_cube(int(z0), int(y0), int(x0))
            k += 1
    return inputs, targets
