"""``cianna-jax train`` on a spectral-line cube: the cube's lines as 3D targets, patches
along the channels too, a 3D detector, and validation in a sky strip of every channel.

The line catalogue is read as ``val`` reads a cube's truth (:mod:`.line_truth`: sky or
pixel positions, ``freq`` or ``z``, widths, SNR); every line needs ``w20`` or ``w50``. A
line's box spans ``box_scale`` FWHMs (its size on the sky, at least the beam, and its
w50 along the channels, at least one channel) each way about its centre, as an image
source's box does. The training area is the catalogue's footprint on the sky with every
channel; the validation strip is cut from it as for an image (:func:`.labels.split_area`).
The cube's training region is read into memory (float32) when it takes at most half of
the machine's memory while it is prepared (:func:`region_fits`); a larger one is read patch
by patch from the (memory-mapped) file, its normalisation fitted on a sample of its
channels, and only the validation strip is held (refused by name if that does not fit,
:func:`check_region_fits`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .architectures import build_cube_detector, fit_priors, get_architecture
from .catalogue import CatalogueError
from .cube_sampler import CubePatchSampler, CubeWindows, cube_grid_patches
from .fits_image import FitsImage, ImageError
from .labels import SourceLabels, default_max_obj, split_area, training_area
from .line_scores import channel_tolerance
from .line_truth import W20_PER_W50
from .measure import FWHM
from .model_card import ModelCard, fit_normalisation
from .noise import NoiseMap, estimate_noise_map
from .predict import normalise_window
from .primary_beam import pb_response, primary_beam
from .run_parts import RunParts
from .train_validation import ValidationArea
from .truth import load_truth, seen_through_beam

__all__ = ["cube_labels", "prepare_cube", "check_region_fits", "region_fits",
           "DEFAULT_DEPTH"]

#: channels of a training patch when the settings give none
DEFAULT_DEPTH = 32
#: bytes per voxel of the training region at the peak of its preparation (the raw float32
#: values, the noise map's float64 planes, the normalisation's float64 work, the float32
#: input kept): 53 measured with tracemalloc on a 96 x 251 x 242 region
BYTES_PER_VOXEL = 56
#: voxels of the training region that a streamed run's normalisation is fitted on (at most)
NORM_SAMPLE = 2**24


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def region_fits(shape: tuple[int, ...], memory: int | None = None) -> bool:
    """Whether a region of ``shape`` (channels, y, x) takes at most half of the machine's
    memory (``memory`` bytes; the physical memory by default) while it is prepared."""
    memory = physical_memory() if memory is None else memory
    return not memory or BYTES_PER_VOXEL * math.prod(shape) <= memory // 2


def check_region_fits(shape: tuple[int, ...], path: str, memory: int | None = None,
                      what: str = "validation strip") -> None:
    """ValueError, before reading, when the ``what`` region ``shape`` (channels, y, x)
    would take more than half of the machine's memory."""
    memory = physical_memory() if memory is None else memory
    if not region_fits(shape, memory):
        need = BYTES_PER_VOXEL * math.prod(shape)
        raise ValueError(f"{path}: the {what} ({' x '.join(map(str, shape))} voxels) needs "
                         f"about {need / 2**30:.1f} GiB of memory while it is prepared, more "
                         f"than half of this machine's {memory / 2**30:.1f} GiB: give a "
                         "smaller --valid-fraction, or train on a sub-cube")


def cube_labels(catalogue: str, image: FitsImage, noise: NoiseMap, box_scale: float,
                beam: Any = None) -> tuple[SourceLabels, np.ndarray, np.ndarray]:
    """The catalogue's lines on ``image`` as training labels (3D boxes), with their peak
    SNR and w20 (channels); CatalogueError naming what is missing. ``beam`` (a primary
    beam: the cube is not corrected for it, the catalogue's fluxes are true ones): each
    line seen at the beam's response at its position and channel, as the cube shows it
    (SNRs from fluxes scaled by it, lines where it is not known left out with a warning)."""
    tr = load_truth(catalogue, image, noise, name=catalogue)
    what = f"training catalogue {catalogue}"
    response = None
    if beam is not None and len(tr.x):
        n = len(tr.x)
        response = pb_response(primary_beam(beam), image, tr.x, tr.y, tr.z)
        tr = seen_through_beam(tr, response)
        response = response[np.isfinite(response) & (response > 0)]
        if len(tr.x) < n:
            warnings.warn(f"{catalogue}: {n - len(tr.x)} lines where the primary beam ({beam}) "
                          "is not known left out of the training labels", stacklevel=3)
    if len(tr.x) == 0:
        raise ValueError(f"{catalogue}: no line falls on finite voxels of {image.path}")
    if not np.isfinite(tr.w20).all():
        raise CatalogueError(f"{what}: training on a cube needs every line's width: a w20 or "
                             f"w50 column (km/s or a frequency unit); it has "
                             f"{tr.table.colnames}")
    beam_px = image.beam_fwhm_pixels()
    beam = max(beam_px) if beam_px else 2.0
    scale = image.pixel_scale or 1.0
    bmaj = (np.full(len(tr.x), beam) if tr.bmaj is None
            else np.maximum(np.nan_to_num(tr.bmaj / scale), beam))
    bmin = bmaj if tr.bmin is None else np.maximum(np.nan_to_num(tr.bmin / scale), beam)
    half_sky = 0.5 * box_scale * bmaj
    half_z = np.maximum(0.5 * box_scale * tr.w20 / W20_PER_W50, 1.0)
    cx, cy, cz = tr.x + 0.5, tr.y + 0.5, tr.z + 0.5  # pixel-edge frame
    boxes = np.stack([cx - half_sky, cy - half_sky, cz - half_z,
                      cx + half_sky, cy + half_sky, cz + half_z], 1).astype(np.float32)
    flux = np.nan_to_num(tr.flux, nan=1.0)  # priority of the brightest in a crowded patch
    if response is not None:  # (as the cube shows them)
        flux = flux * response
    labels = SourceLabels(x=tr.x, y=tr.y, flux=flux, bmaj=bmaj, bmin=bmin,
                          theta=np.zeros(len(tr.x)), snr=tr.snr, boxes=boxes,
                          image_shape=tuple(image.shape[-2:]), source=catalogue)
    return labels, np.asarray(tr.snr, np.float64), np.asarray(tr.w20, np.float64)


def _warn_if_larger_than_patches(boxes: np.ndarray, patch: int, depth: int,
                                 catalogue: str) -> None:
    """Warn when target boxes ``[N, 6]`` are wider than the ``patch`` or deeper than its
    ``depth`` channels: a patch never holds them whole, so the detector cannot learn them
    (large nearby galaxies, broad lines)."""
    side = np.maximum(boxes[:, 3] - boxes[:, 0], boxes[:, 4] - boxes[:, 1])
    deep = boxes[:, 5] - boxes[:, 2]
    big = (side > patch) | (deep > depth)
    if big.any():
        warnings.warn(
            f"{catalogue}: {int(big.sum())} of {len(big)} target lines have boxes larger than "
            f"the patches ({depth} channels x {patch}x{patch} pixels; the largest "
            f"{deep.max():.0f} channels, {side.max():.0f} pixels wide): no patch holds them "
            "whole, so the detector cannot learn them; give a larger --patch-channels or "
            "--patch", UserWarning, stacklevel=3)


def prepare_cube(s: Any, image: FitsImage, log: Callable[[str], None]) -> RunParts:
    """The run pieces of settings ``s`` (a :class:`.trainer.TrainSettings`) on the cube
    ``image``."""
    t0 = time.perf_counter()
    if s.more_fields:
        raise ValueError("more_fields: a cube trains alone (one cube and its catalogue)")
    arch = get_architecture("cube" if s.arch == "default" else s.arch)
    if arch.ndim != 3:
        raise ValueError(f"--arch: {arch.name} is a 2D network; a cube trains the cube network")
    patch = s.patch or arch.default_patch
    depth = s.patch_channels or DEFAULT_DEPTH
    D = image.shape[0]
    if depth > D:
        raise ImageError(f"{image.path}: {D} channels, fewer than the patch's {depth} "
                         "(--patch-channels)")
    noise = estimate_noise_map(image.read, image.shape, box=s.noise_box)
    labels, snr, w20 = cube_labels(s.catalogue, image, noise, s.box_scale, s.primary_beam)
    area = training_area(labels)
    train_area, valid_area = split_area(area, s.valid_fraction, patch)
    y0, y1, x0, x1 = area
    ty0, ty1, tx0, tx1 = train_area
    vy0, vy1, vx0, vx1 = valid_area
    window = (slice(None), slice(y0, y1), slice(x0, x1))
    held = region_fits((D, y1 - y0, x1 - x0))
    if held:
        raw = np.asarray(image.read(window), np.float32)
        sample = (slice(None), slice(ty0 - y0, ty1 - y0), slice(tx0 - x0, tx1 - x0))
        norm = fit_normalisation(s.normalisation, raw[sample],
                                 noise.window(slice(ty0, ty1), slice(tx0, tx1)))
        val_raw = raw[:, vy0 - y0:vy1 - y0, vx0 - x0:vx1 - x0]
        inputs: np.ndarray | CubeWindows = normalise_window(raw, window, norm, noise)
    else:
        check_region_fits((D, vy1 - vy0, vx1 - vx0), image.path)
        step = max(1, math.ceil(D * (ty1 - ty0) * (tx1 - tx0) / NORM_SAMPLE))
        chans = slice(0, D, step)
        norm = fit_normalisation(
            s.normalisation, image.read((chans, slice(ty0, ty1), slice(tx0, tx1))),
            noise.window(slice(ty0, ty1), slice(tx0, tx1), zs=chans))
        val_raw = image.read((slice(None), slice(vy0, vy1), slice(vx0, vx1)))
        inputs = CubeWindows(functools.partial(_normalised, image, (y0, x0), norm, noise),
                             (D, y1 - y0, x1 - x0))
        log(f"{image.path}: the training region ({D} x {y1 - y0} x {x1 - x0} voxels) would take "
            "more than half of this machine's memory: its patches are read from the file "
            "(normalisation fitted on "
            + (f"every {step} channels)" if step > 1 else "every channel)"))
    keep = snr >= s.min_snr
    targets = labels.select(keep)
    inside = ((targets.x >= tx0) & (targets.x < tx1) & (targets.y >= ty0)
              & (targets.y < ty1))
    if not inside.any():
        raise ValueError(f"{s.catalogue}: no line of SNR >= {s.min_snr:g} in the training area "
                         f"{tuple(train_area)} (y0, y1, x0, x1): nothing to learn; lower "
                         "--min-snr?")
    _warn_if_larger_than_patches(targets.boxes, patch, depth, s.catalogue)
    max_obj = s.max_obj or default_max_obj(targets, train_area, patch * patch * depth, D)
    priors = fit_priors(targets.boxes[inside], arch.nb_box, ndim=3)
    net = build_cube_detector(arch, patch, depth, priors, max_obj)
    sampler = CubePatchSampler(inputs, (y0, x0), targets, train_area, patch, depth, max_obj,
                               negative_fraction=s.negative_fraction, augment=True)
    val_x, val_t = cube_grid_patches(inputs, (y0, x0), targets, valid_area, patch, depth,
                                     max_obj)
    vin = (labels.x >= vx0) & (labels.x < vx1) & (labels.y >= vy0) & (labels.y < vy1)
    beam_px = image.beam_fwhm_pixels()
    area_v = ValidationArea(
        pixels=val_raw, origin=(vy0, vx0), noise=noise,
        x=labels.x[vin], y=labels.y[vin],
        radius=np.maximum(max(beam_px) if beam_px else 2.0, labels.bmaj[vin]),
        counted=snr[vin] >= s.min_snr, z=0.5 * (labels.boxes[vin, 2] + labels.boxes[vin, 5]) - 0.5,
        z_tolerance=channel_tolerance(w20[vin]),
        beam_sigma=(max(beam_px) if beam_px else 1.0) / FWHM)
    card = ModelCard(network="last.dat", tile=(depth, patch, patch),
                     overlap=(depth // 4, patch // 4, patch // 4), batch_size=16,
                     noise_box=s.noise_box, normalisation=norm, obj_threshold=0.3,
                     nms_threshold=0.1, iou_type="DIoU", score="objectness",
                     box_scale=s.box_scale)
    info = {"patch": patch, "patch_channels": depth, "max_obj": max_obj, "area": list(area),
            "train_area": list(train_area), "valid_area": list(valid_area),
            "n_sources": len(labels), "n_targets": len(targets),
            "n_train_targets": int(np.count_nonzero(inside)),
            "n_valid_counted": area_v.n_counted, "priors": priors.tolist(),
            "normalisation": dataclasses.asdict(norm), "region_in_memory": held,
            "pixel_scale_arcsec": [image.pixel_scale]}
    if beam_px is not None:
        info["beam_fwhm_pixels"] = [list(beam_px)]
    log(f"{image.path}: {D} channels of {image.shape[1]}x{image.shape[2]} pixels; "
        f"{s.catalogue}: {len(labels)} lines in the cube, {len(targets)} of SNR >= "
        f"{s.min_snr:g} as targets; training area (y0, y1, x0, x1) {tuple(train_area)} with "
        f"{int(np.count_nonzero(inside))} targets; validation area {tuple(valid_area)} with "
        f"{area_v.n_counted} lines counted for recall")
    log(f"patches {depth} channels x {patch}x{patch} pixels, {s.patches_per_epoch} per epoch, "
        f"up to {max_obj} boxes each ({time.perf_counter() - t0:.1f} s)")
    return RunParts(net=net, card=card, sampler=sampler, val_x=val_x, val_t=val_t,
                    val_areas=(area_v,), info=info)


def _normalised(image: FitsImage, origin: tuple[int, int], norm: Any, noise: NoiseMap,
                window: tuple[slice, ...]) -> np.ndarray:
    """The network input of a window of the training region (slices relative to its
    top-left sky pixel ``origin``), read from the file."""
    z, y, x = window
    win = (z, slice(y.start + origin[0], y.stop + origin[0]),
           slice(x.start + origin[1], x.stop + origin[1]))
    return normalise_window(image.read(win), win, norm, noise)
