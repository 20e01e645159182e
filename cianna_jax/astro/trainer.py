"""Train a YOLO source detector on a labelled FITS image: the ``cianna-jax train`` command.

1. the image (memory-mapped) and its local noise map; the catalogue placed on it
   (:mod:`.labels`), sources of SNR >= ``min_snr`` become target boxes;
2. the training area is the catalogue's footprint; a strip of ``valid_fraction`` of it is
   kept apart for validation; the normalisation is fitted on the training area and the
   pixels are normalised by the same rule as ``predict`` (:func:`.predict.normalise_window`);
3. every epoch draws new random patches (sources, random positions, source-free
   negatives, flips and 90-degree rotations; :mod:`.sampler`) in a background thread
   while the previous epoch trains, with CIANNA's SGD update (warm-up, then CIANNA's
   exponential decay);
4. after every epoch the detector runs over the validation area as ``predict`` would;
   precision / recall / F1 / AP and the objectness threshold (the highest within one
   standard error of the best F1: :func:`.train_validation.tune_threshold`) are recorded
   (:mod:`.train_validation`), with the training and validation losses, in
   ``results.csv`` and ``training.png`` (redrawn at most every 30 s, and at the end:
   :class:`.run_log.FigureSchedule`); ``last.dat`` and ``best.dat`` (CIANNA format)
   with their model cards (``.json``: normalisation, tile, tuned threshold) are kept
   (the best: the lowest validation loss within one standard error of the best score,
   :mod:`.best_epoch`);
5. ``checkpoint.npz`` holds parameters, momentum buffers, hyper-parameters and the run's
   position: ``resume=True`` continues bit-identically (the patches of epoch ``e`` are a
   function of (seed, e) only; the training randomness of epoch ``e`` is
   ``fold_in(key(seed), e)``; the learning rate a function of ``e``).

Several fields (``more_fields``: more image and catalogue pairs, beams of as many pixels) train one
detector: each is read and split as above, the normalisation is the first's, each epoch's
patches come from every field in proportion to its training area
(:class:`.sampler.FieldsSampler`), and the validation counts every field's strip together
(:func:`.train_validation.validate_areas`).

With ``class_column`` the detector also classifies what it finds (CIANNA's YOLO classes,
a softmax per box over the catalogues' classes): the targets carry each source's class,
the validation adds the class accuracy of the matched detections, the card names the
classes and ``predict`` writes ``det_class``, ``det_prob`` and ``det_p_<class>``.

A spectral-line cube trains alone, with its own targets, patches and network
(:mod:`.cube_training`); the loop, files and resume are the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import host_keys, training
from ..io.atomic import atomic_write, check_folder, make_folder
from ..io.network_file import save_network
from ..network import inference_params, init_params
from ..precision import FP32, Policy, get_policy
from ..progress import Progress, format_seconds
from .architectures import build_detector, fit_priors, get_architecture
from .best_epoch import best_epoch, resumed_best
from .checkpoint import load_checkpoint, save_checkpoint
from .cube_training import prepare_cube
from .fine_tune import FineTuneBase, fine_tune_base, fine_tuned_settings, start_params
from .fits_image import FitsImage, ImageError, open_image
from .labels import (
    SourceLabels,
    class_names,
    default_max_obj,
    read_training_catalogue,
    split_area,
    training_area,
)
from .model_card import LoadedModel, ModelCard, fit_normalisation, save_model_card
from .noise import NoiseMap, estimate_noise_map
from .pipeline import SCALE_TOLERANCE
from .predict import network_fn, normalise_window
from .primary_beam import pb_response, primary_beam
from .run_log import FigureSchedule, epoch_line, training_figure, write_results_csv
from .run_parts import RunParts
from .sampler import FieldsSampler, PatchSampler, Prefetcher, grid_patches
from .sky import pixel_to_sky, sky_to_pixel
from .train_validation import ValidationArea, validate_areas

__all__ = ["TrainSettings", "TrainResult", "train_detector", "fit_normalisation", "source_snr",
           "learning_rate_at_epoch"]

SETTINGS_FILE = "args.json"
CHECKPOINT = "checkpoint.npz"


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run depends on (saved as ``args.json`` in the run folder).

    ``patch`` defaults to the architecture's; ``max_obj`` (targets per patch) to a value
    from the source density; ``learning_rate`` follows a linear warm-up over
    ``warmup_epochs`` then ``lr * exp(-lr_decay * epochs after warm-up)``.
    ``mixed_precision``: CIANNA's mode of the training and validation passes ("off":
    float32; "BF16C_FP32A" or "TF32C_FP32A": faster on GPUs' tensor cores, and on CPU for
    networks with wide 3x3 layers such as the ``sdc1`` architecture; float16 modes are
    refused, they need loss scaling).  ``select``: the validation score that chooses the
    best epoch (:mod:`.best_epoch`), "f1" (for a detector that classifies, F1 x class
    accuracy: ``f1_class``) or "ap".
    """

    image: str
    catalogue: str
    out: str
    epochs: int = 30
    arch: str = "default"
    patch: int | None = None
    valid_fraction: float = 0.2
    seed: int = 0
    batch_size: int = 16
    patches_per_epoch: int = 1024
    learning_rate: float = 0.01
    momentum: float = 0.9
    warmup_epochs: int = 2
    lr_decay: float = 0.02
    min_snr: float = 5.0
    box_scale: float = 2.0
    max_obj: int | None = None
    negative_fraction: float = 0.1
    normalisation: str = "snr"
    noise_box: int = 128
    hdu: int | str | None = None
    select: str = "f1"
    mixed_precision: str = "off"
    plane: int | None = None
    #: more (image, catalogue) pairs trained on with the first (same HDU, plane and pixel
    #: scale); each keeps its own validation strip.  Last: earlier fields keep positions.
    more_fields: tuple[tuple[str, str], ...] = ()
    #: a cube's patch depth in channels (default :data:`.cube_training.DEFAULT_DEPTH`)
    patch_channels: int | None = None
    #: the images are not primary-beam corrected and the catalogues give true fluxes: a
    #: beam FITS image or model (:func:`.primary_beam.primary_beam`; a model centred on
    #: each image) whose response times each true flux is the flux the detector learns
    primary_beam: str | None = None
    #: a trained detector's model card to start from (fine-tuning, :mod:`.fine_tune`): its
    #: architecture, tile, normalisation, priors, noise box and weights
    init: str | None = None
    #: the catalogues' column of each source's class (names or codes): the detector learns
    #: to classify what it finds (CIANNA's YOLO classes, one softmax per box); None: it
    #: only finds sources
    class_column: str | None = None
    #: with ``class_column``: the patches around sources drawn with equal chances for every
    #: class (a rare class seen as often as a common one)
    balance_classes: bool = False

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every (image, catalogue) pair of the run, the first one first."""
        return ((self.image, self.catalogue),) + tuple(tuple(f) for f in self.more_fields)

    def check(self) -> None:
        """ValueError naming the first bad setting."""
        get_architecture(self.arch)
        ints = {"epochs": 1, "batch_size": 1, "patches_per_epoch": 1, "warmup_epochs": 0,
                "noise_box": 8}
        for name, lo in ints.items():
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not 0 < self.valid_fraction <= 0.5:
            raise ValueError(f"valid_fraction must be in (0, 0.5], got {self.valid_fraction}")
        if not 0 <= self.negative_fraction < 1:
            raise ValueError(f"negative_fraction must be in [0, 1), got {self.negative_fraction}")
        for name in ("learning_rate", "box_scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        for name in ("momentum", "lr_decay", "min_snr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if self.normalisation not in ("snr", "minmax_tanh"):
            raise ValueError(f"normalisation must be 'snr' or 'minmax_tanh', got "
                             f"{self.normalisation!r}")
        if self.select not in ("f1", "ap"):
            raise ValueError(f"select must be 'f1' or 'ap', got {self.select!r}")
        if self.patch is not None and (not isinstance(self.patch, int) or self.patch < 8):
            raise ValueError(f"patch must be an integer >= 8, got {self.patch!r}")
        if self.patch_channels is not None and (not isinstance(self.patch_channels, int)
                                                or self.patch_channels < 8):
            raise ValueError(f"patch_channels must be an integer >= 8, got "
                             f"{self.patch_channels!r}")
        if self.plane is not None and (not isinstance(self.plane, int) or self.plane < 0):
            raise ValueError(f"plane must be an integer >= 0, got {self.plane!r}")
        for f in self.more_fields:
            if not (isinstance(f, (tuple, list)) and len(f) == 2
                    and all(isinstance(v, str) for v in f)):
                raise ValueError(f"more_fields must hold (image, catalogue) path pairs, got {f!r}")
        images = [os.path.abspath(i) for i, _ in self.fields]
        if len(set(images)) != len(images):
            twice = next(i for i in images if images.count(i) > 1)
            raise ValueError(f"image {twice} is given twice: each field once")
        if self.primary_beam is not None:
            if not isinstance(self.primary_beam, str):
                raise ValueError(f"primary_beam must be a beam image's path or a model name, "
                                 f"got {self.primary_beam!r}")
            primary_beam(self.primary_beam)
        if self.class_column is not None and not (isinstance(self.class_column, str)
                                                  and self.class_column.strip()):
            raise ValueError(f"class_column must be a column name, got {self.class_column!r}")
        if self.balance_classes and self.class_column is None:
            raise ValueError("balance_classes: with class_column (the classes to balance)")
        if self.init is not None and not isinstance(self.init, str):
            raise ValueError(f"init must be a model card's path, got {self.init!r}")
        if self.max_obj is not None and (not isinstance(self.max_obj, int) or self.max_obj < 1):
            raise ValueError(f"max_obj must be an integer >= 1, got {self.max_obj!r}")
        if get_policy(self.mixed_precision).compute_dtype == np.float16:
            raise ValueError(f"mixed_precision {self.mixed_precision!r}: float16 training needs "
                             "loss scaling, which this trainer does not do; use BF16C_FP32A "
                             "(16-bit activations with float32's range) or TF32C_FP32A")


@dataclass
class TrainResult:
    """What a run produced: its folder, the per-epoch ``history`` rows, the ``best`` row,
    the files written and the wall time of this call."""

    out: str
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def learning_rate_at_epoch(s: TrainSettings, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (1-based): from 2% to 100% of ``learning_rate``
    over the warm-up (as CIANNA's SDC1 script), then exponential decay; independent of
    the total number of epochs, so that a run can be extended."""
    if epoch <= s.warmup_epochs:
        return s.learning_rate * (0.02 + 0.98 * epoch / s.warmup_epochs)
    return s.learning_rate * math.exp(-s.lr_decay * (epoch - s.warmup_epochs))


def source_snr(labels: SourceLabels, image: FitsImage, noise: NoiseMap) -> np.ndarray:
    """Peak SNR of each source: the catalogue's own when it has one, else the peak
    brightness from flux and apparent size (flux x beam area / source area) over the
    local noise."""
    if labels.snr is not None:
        return np.asarray(labels.snr, np.float64)
    rms = noise.at(labels.y, labels.x) * image.unit_scale
    peak = np.asarray(labels.flux, np.float64)
    if image.beam is not None and image.pixel_scale is not None:
        bmaj, bmin = image.beam.bmaj / image.pixel_scale, image.beam.bmin / image.pixel_scale
        peak = peak * (bmaj * bmin) / np.maximum(labels.bmaj * labels.bmin, bmaj * bmin)
    return peak / rms


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(s: TrainSettings) -> dict[str, Any]:
    fp: dict[str, Any] = {"image_bytes": os.path.getsize(s.image),
                          "catalogue_sha256": _sha256(s.catalogue)}
    if s.more_fields:  # a one-field run keeps the fingerprint it always had
        fp["more_fields"] = [[os.path.getsize(i), _sha256(c)] for i, c in s.more_fields]
    return fp


@dataclass
class _Run(RunParts):
    """The prepared pieces of a run (built identically for a new run and a resume): its
    settings and first image besides the loop's :class:`.run_parts.RunParts`."""

    s: TrainSettings
    image: FitsImage
    base: FineTuneBase | None = None


@dataclass
class _Field:
    """One labelled image of a run, read and split (full-image pixel frames)."""

    path: str
    catalogue: str
    image: FitsImage
    noise: NoiseMap
    labels: SourceLabels
    snr: np.ndarray
    area: tuple[int, int, int, int]
    train_area: tuple[int, int, int, int]
    valid_area: tuple[int, int, int, int]
    raw: np.ndarray

    def window(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.area
        return slice(y0, y1), slice(x0, x1)

    def train_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Raw pixels and local rms of the training area."""
        y0, _, x0, _ = self.area
        ty0, ty1, tx0, tx1 = self.train_area
        raw = self.raw[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]
        return raw, self.noise.window(slice(ty0, ty1), slice(tx0, tx1))


def _read_field(s: TrainSettings, path: str, catalogue: str, patch: int) -> _Field:
    image = open_image(path, s.hdu, plane=s.plane)
    if image.ndim != 2:
        raise ImageError(f"{path}: several fields train on 2D images; this one is "
                         f"{image.ndim}D (a cube trains alone; --plane N takes one plane)")
    noise = estimate_noise_map(image.read, image.shape, box=s.noise_box)
    labels = read_training_catalogue(catalogue, image, box_scale=s.box_scale,
                                     class_column=s.class_column)
    if s.primary_beam is not None:  # true fluxes -> the fluxes the image shows
        labels = _seen_through_beam(labels, image, s.primary_beam)
    if len(labels) == 0:
        raise ValueError(f"{catalogue}: no catalogue source falls on finite pixels of {path}")
    area = training_area(labels, image)
    train_area, valid_area = split_area(area, s.valid_fraction, patch)
    y0, y1, x0, x1 = area
    raw = np.asarray(image.read((slice(y0, y1), slice(x0, x1))), np.float32)
    return _Field(path, catalogue, image, noise, labels, source_snr(labels, image, noise),
                  area, train_area, valid_area, raw)


def _seen_through_beam(labels: SourceLabels, image: FitsImage, beam: str) -> SourceLabels:
    """``labels`` with their fluxes times the primary beam's response at each (CIANNA's SDC1
    training does the same); sources where it is not known are left out, with a warning."""
    response = pb_response(primary_beam(beam), image, labels.x, labels.y)
    known = np.isfinite(response) & (response > 0)
    if not known.all():
        warnings.warn(f"{labels.source}: {int((~known).sum())} sources where the primary beam "
                      f"({beam}) is not known left out of the training labels", stacklevel=3)
    return dataclasses.replace(labels.select(known), flux=labels.flux[known] * response[known])


def _same_sampling(fields: list[_Field]) -> None:
    """ValueError unless the fields sample the sky alike for the detector, which sees
    pixels: each field's beam FWHM in pixels within a factor :data:`.pipeline.SCALE_TOLERANCE`
    of the first one's (their pixel scales may differ: a 6" beam on 1.5" pixels trains with a
    7" beam on 1.75" pixels); without a beam in both headers, the first one's pixel scale
    (within 1%)."""
    first = fields[0].image
    b0 = first.beam_fwhm_pixels()
    for f in fields[1:]:
        b = f.image.beam_fwhm_pixels()
        if b0 is not None and b is not None:
            if not b0[0] / SCALE_TOLERANCE <= b[0] <= b0[0] * SCALE_TOLERANCE:
                raise ValueError(
                    f"{f.path}: its beam spans {b[0]:.2f} pixels (FWHM, major axis), the first "
                    f"image's {b0[0]:.2f}: the detector sees pixels, so train on images whose "
                    f"beams span about as many pixels (within a factor {SCALE_TOLERANCE:g}); "
                    f"regrid it to about {f.image.beam.bmaj / b0[0]:.3g} arcsec per pixel (e.g. "
                    "with reproject)")
            continue
        a, other = first.pixel_scale, f.image.pixel_scale
        same = (a is None and other is None) or (
            a is not None and other is not None and abs(other / a - 1) <= 0.01)
        if not same:
            raise ValueError(f"{f.path}: pixel scale {other} arcsec differs from the first "
                             f"image's ({a}); without a beam in both headers (BMAJ, BMIN) to "
                             "compare, train on images of one pixel scale")


def _validation_leaks(fields: list[_Field], grid: int = 24) -> list[tuple[int, int, float]]:
    """(i, j, share) for each field ``j`` whose validation strip lies, by the share
    ``share`` of a grid of points over it, in field ``i``'s training area on the sky: the
    sources there are trained on, and the validation scores of the run come out optimistic.
    Fields without a WCS are not compared."""
    out = []
    for j, fj in enumerate(fields):
        if fj.image.wcs is None:
            continue
        vy0, vy1, vx0, vx1 = fj.valid_area
        gy, gx = np.meshgrid(np.linspace(vy0, vy1 - 1, grid), np.linspace(vx0, vx1 - 1, grid),
                             indexing="ij")
        ra, dec = pixel_to_sky(fj.image.wcs, gx.ravel(), gy.ravel())
        for i, fi in enumerate(fields):
            if i == j or fi.image.wcs is None:
                continue
            x, y = sky_to_pixel(fi.image.wcs, ra, dec)
            ty0, ty1, tx0, tx1 = fi.train_area
            inside = (x >= tx0 - 0.5) & (x < tx1 - 0.5) & (y >= ty0 - 0.5) & (y < ty1 - 0.5)
            if inside.any():
                out.append((i, j, float(np.mean(inside))))
    return out


def _prepare(s: TrainSettings, log: Callable[[str], None],
             base: FineTuneBase | None = None) -> _Run:
    first = open_image(s.image, s.hdu, plane=s.plane)
    if first.ndim == 3 and base is not None:
        first.close()
        raise ValueError("--init: fine-tuning takes 2D images (a cube's detector trains anew)")
    if first.ndim == 3:  # a spectral-line cube: its own targets, patches and network
        if s.class_column is not None:
            first.close()
            raise ValueError("--class-column: a detector that classifies trains on 2D images; "
                             "a cube's detector does not classify")
        try:
            return _Run(**vars(prepare_cube(s, first, log)), s=s, image=first)
        except BaseException:
            first.close()
            raise
    first.close()
    if s.patch_channels is not None:
        raise ValueError("patch_channels (--patch-channels): for cubes; this image is 2D")
    arch = get_architecture(s.arch)
    if arch.ndim != 2:
        raise ValueError(f"--arch: {arch.name} is for cubes; a 2D image trains default or sdc1")
    patch = s.patch or arch.default_patch
    t0 = time.perf_counter()
    fields = [_read_field(s, image, catalogue, patch) for image, catalogue in s.fields]
    _same_sampling(fields)
    leaks = _validation_leaks(fields) if len(fields) > 1 else []
    for i, j, share in leaks:
        warnings.warn(f"{fields[j].path}: {share:.0%} of its validation strip lies on the sky in "
                      f"the training area of {fields[i].path}: its sources there are trained on, "
                      "so the validation scores (best epoch, threshold) come out optimistic; "
                      "give fields that do not overlap", UserWarning, stacklevel=3)
    norm = (base.normalisation if base is not None
            else fit_normalisation(s.normalisation, *fields[0].train_pixels()))
    targets, in_train, max_obj = [], [], s.max_obj
    for f in fields:
        tg = f.labels.select(f.snr >= s.min_snr)
        ty0, ty1, tx0, tx1 = f.train_area
        inside = (tg.x >= tx0) & (tg.x < tx1) & (tg.y >= ty0) & (tg.y < ty1)
        targets.append(tg)
        in_train.append(inside)
        if s.max_obj is None:
            max_obj = max(max_obj or 0, default_max_obj(tg, f.train_area, patch * patch))
    if not any(m.any() for m in in_train):
        where = " or ".join(f"{tuple(f.train_area)} of {f.path}" for f in fields)
        raise ValueError(f"{s.catalogue}: no source of SNR >= {s.min_snr:g} in the training area "
                         f"{where} (y0, y1, x0, x1): nothing to learn; lower --min-snr?")
    priors = base.priors if base is not None else fit_priors(
        np.concatenate([tg.boxes[m] for tg, m in zip(targets, in_train)]), arch.nb_box)
    names = class_names([f.labels for f in fields]) if s.class_column is not None else ()
    net = build_detector(arch, patch, priors, max_obj, nb_class=len(names))
    samplers, val_x, val_t, areas = [], [], [], []
    target_codes = [tg.class_codes(names) if names else None for tg in targets]
    for f, tg, codes in zip(fields, targets, target_codes):
        y0, _, x0, _ = f.area
        inputs = normalise_window(f.raw, f.window(), norm, f.noise)
        samplers.append(PatchSampler(inputs, (y0, x0), tg, f.train_area, patch, max_obj,
                                     negative_fraction=s.negative_fraction, augment=True,
                                     classes=codes, balance_classes=s.balance_classes))
        vx, vt = grid_patches(inputs, (y0, x0), tg, f.valid_area, patch, max_obj,
                              classes=codes)
        val_x.append(vx)
        val_t.append(vt)
        areas.append(_validation_area(f, s.min_snr, names))
    image = fields[0].image
    card = ModelCard(network="last.dat", tile=(patch, patch), overlap=(patch // 4, patch // 4),
                     batch_size=64, noise_box=s.noise_box, normalisation=norm, obj_threshold=0.3,
                     nms_threshold=0.1, iou_type="DIoU", score="objectness",
                     box_scale=s.box_scale, classes=names)
    first = fields[0]
    info = {"patch": patch, "max_obj": max_obj, "area": list(first.area),
            "train_area": list(first.train_area), "valid_area": list(first.valid_area),
            "n_sources": sum(len(f.labels) for f in fields),
            "n_targets": int(sum(len(tg) for tg in targets)),
            "n_train_targets": int(sum(np.count_nonzero(m) for m in in_train)),
            "n_valid_counted": int(sum(a.n_counted for a in areas)), "priors": priors.tolist(),
            "normalisation": dataclasses.asdict(norm),
            "pixel_scale_arcsec": [f.image.pixel_scale for f in fields]}
    beams = [b for b in (f.image.beam_fwhm_pixels() for f in fields) if b is not None]
    if beams:  # what predict compares an image with (pipeline.warn_if_other_scale)
        info["beam_fwhm_pixels"] = [list(b) for b in beams]
    if base is not None:
        info["fine_tuned_from"] = base.path
    if names:
        counts = [int(sum(np.count_nonzero(c[m] == k) for c, m in zip(target_codes, in_train)))
                  for k in range(len(names))]
        unclassified = int(sum(np.count_nonzero(c[m] < 0)
                               for c, m in zip(target_codes, in_train)))
        info["classes"] = {"column": s.class_column, "names": list(names),
                           "n_train_targets": counts, "n_unclassified_targets": unclassified}
        log(f"classes from column {s.class_column!r}: "
            + ", ".join(f"{n} ({c} training targets)" for n, c in zip(names, counts))
            + (f"; {unclassified} training targets without a class" if unclassified else ""))
        if unclassified:
            warnings.warn(f"--class-column {s.class_column}: {unclassified} of "
                          f"{unclassified + sum(counts)} training targets have no class (a "
                          "blank, masked or NaN entry): their boxes train the detector, their "
                          "classes do not", UserWarning, stacklevel=3)
        if not all(counts):
            empty = [n for n, c in zip(names, counts) if not c]
            warnings.warn(f"--class-column {s.class_column}: classes {empty} have no training "
                          f"target (their sources are all below --min-snr {s.min_snr:g} or in "
                          "the validation strip): the detector cannot learn them",
                          UserWarning, stacklevel=3)
        if base is not None and base.classes != names:
            log(f"the classes of {base.path} were {list(base.classes) or 'none'}: its class "
                "outputs start afresh")
    if leaks:
        info["validation_overlaps"] = [{"training_image": fields[i].path,
                                        "validation_image": fields[j].path, "share": share}
                                       for i, j, share in leaks]
    if len(fields) > 1:
        info["fields"] = [{"image": f.path, "catalogue": f.catalogue, "area": list(f.area),
                           "train_area": list(f.train_area), "valid_area": list(f.valid_area),
                           "n_train_targets": int(np.count_nonzero(m)),
                           "n_valid_counted": a.n_counted}
                          for f, m, a in zip(fields, in_train, areas)]
    for f, tg, m, a in zip(fields, targets, in_train, areas):
        log(f"{f.path}: {f.image.shape[1]}x{f.image.shape[0]} pixels; {f.catalogue}: "
            f"{len(f.labels)} sources on the image, {len(tg)} of SNR >= {s.min_snr:g} as "
            f"targets; training area (y0, y1, x0, x1) {tuple(f.train_area)} with "
            f"{int(np.count_nonzero(m))} targets; validation area {tuple(f.valid_area)} with "
            f"{a.n_counted} sources counted for recall")
    log(f"patches {patch}x{patch}, {s.patches_per_epoch} per epoch, up to {max_obj} boxes "
        f"each ({time.perf_counter() - t0:.1f} s)")
    sampler = samplers[0] if len(samplers) == 1 else FieldsSampler(samplers)
    return _Run(net=net, card=card, sampler=sampler, val_x=np.concatenate(val_x),
                val_t=np.concatenate(val_t), val_areas=tuple(areas), info=info, s=s,
                image=image, base=base)


def _validation_area(f: _Field, min_snr: float, names: tuple[str, ...] = ()) -> ValidationArea:
    """The validation strip of a field with its sources (full-image frame) and, for a
    detector that classifies into ``names``, their classes."""
    y0, _, x0, _ = f.area
    vy0, vy1, vx0, vx1 = f.valid_area
    lb = f.labels
    vin = (lb.x >= vx0) & (lb.x < vx1) & (lb.y >= vy0) & (lb.y < vy1)
    beam_px = (f.image.beam.bmaj / f.image.pixel_scale
               if f.image.beam is not None and f.image.pixel_scale else 2.0)
    return ValidationArea(pixels=f.raw[vy0 - y0:vy1 - y0, vx0 - x0:vx1 - x0],
                          origin=(vy0, vx0), noise=f.noise, x=lb.x[vin], y=lb.y[vin],
                          radius=np.maximum(beam_px, lb.bmaj[vin]),
                          counted=f.snr[vin] >= min_snr,
                          classes=lb.class_codes(names)[vin] if names else None)


@functools.lru_cache(maxsize=8)
def _optimizer(net: Any, learning_rate: float, momentum: float) -> Any:
    """CIANNA's SGD for ``net``, one object per network and settings, so the compiled
    training step is reused by later runs in the same process (a resume, a notebook)."""
    return training.make_optimizer(learning_rate, momentum,
                                   masks=lambda prm: training.cianna_masks(net, prm))


def _val_losses(run: _Run, params: Any, batch: int, policy: Policy = FP32) -> np.ndarray:
    parts = None
    for xb, tb, nv in training.iterate_batches(run.val_x, run.val_t, batch):
        _, p = training.eval_step(run.net, params, xb, tb, np.int32(nv), yolo_stats=True,
                                  policy=policy)
        parts = p if parts is None else parts + p
    return np.asarray(parts, np.float64)[:6] / max(1, len(run.val_x))


def _save_model(out: str, name: str, run: _Run, params: Any, threshold: float,
                row: dict[str, Any]) -> None:
    save_network(os.path.join(out, f"{name}.dat"), run.net, params, binary=True)
    notes = {"trained_by": "cianna-jax train", "image": os.path.abspath(run.s.image),
             "catalogue": os.path.abspath(run.s.catalogue), "arch": run.s.arch,
             "epoch": row["epoch"], "min_snr": run.s.min_snr,
             "mixed_precision": get_policy(run.s.mixed_precision).name,
             "validation": {k: row[k] for k in ("precision", "recall", "f1", "ap", "threshold",
                                                "class_accuracy", "f1_class", "class_ece")
                            if k in row},
             "threshold_rule": "highest within one standard error of the best F1 on the "
                               "validation area",
             "epoch_rule": "lowest validation loss within one standard error of the best "
                           "score so far",
             **{k: run.info[k] for k in ("pixel_scale_arcsec", "beam_fwhm_pixels",
                                         "fine_tuned_from")
                if run.info.get(k) is not None}}
    if run.card.classes:
        notes["class_column"] = run.s.class_column
    if run.s.more_fields:
        notes["more_fields"] = [[os.path.abspath(i), os.path.abspath(c)]
                                for i, c in run.s.more_fields]
    card = dataclasses.replace(run.card, network=f"{name}.dat", obj_threshold=threshold,
                               notes=notes, class_temperature=float(
                                   row.get("class_temperature", 1.0)))
    save_model_card(os.path.join(out, f"{name}.json"), card)


def _settings_from_run(out: str, epochs: int | None) -> TrainSettings:
    path = os.path.join(out, SETTINGS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: {path} not found: {out} is not a cianna-jax train run")
    with open(path) as fh:
        saved = json.load(fh)
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    values = {k: v for k, v in saved["settings"].items() if k in known}
    values["more_fields"] = tuple(tuple(f) for f in values.get("more_fields", ()))
    s = TrainSettings(**values)
    # the run continues in the folder given, wherever it was started (or moved from);
    # relative inputs (runs saved before paths were made absolute) are found from the
    # current folder, else beside the run's folder
    beside = os.path.dirname(os.path.abspath(out))

    def found(p: str) -> str:
        near = os.path.join(beside, p)
        return near if not os.path.exists(p) and os.path.exists(near) else p

    s = _input_paths(dataclasses.replace(s, out=out), found)
    return dataclasses.replace(s, epochs=epochs) if epochs is not None else s


def _input_paths(s: TrainSettings, fix: Callable[[str], str]) -> TrainSettings:
    """``s`` with ``fix`` applied to its input files' paths (a model or beam named by a
    path that exists; ``primary_beam`` and ``init`` may name a model instead)."""
    def f(p: str | None) -> str | None:
        return p if p is None or not (os.path.exists(p) or os.path.exists(fix(p))) else fix(p)

    return dataclasses.replace(s, image=f(s.image), catalogue=f(s.catalogue),
                               more_fields=tuple((f(i), f(c)) for i, c in s.more_fields),
                               init=f(s.init), primary_beam=f(s.primary_beam))


def train_detector(settings: TrainSettings | None = None, *, resume_from: str | None = None,
                   epochs: int | None = None, log: Callable[[str], None] = print,
                   progress: bool = True) -> TrainResult:
    """Run (or, with ``resume_from`` = a run folder, continue) a training; see the module
    docstring.  ``epochs`` overrides the total when resuming.  Returns the history."""
    start = time.perf_counter()
    if resume_from is not None:
        s = _settings_from_run(resume_from, epochs)
    elif settings is None:
        raise TypeError("train_detector needs settings or resume_from")
    else:  # args.json keeps absolute paths: a resume works from any folder
        s = _input_paths(settings, os.path.abspath)
    s.check()
    for image, catalogue in s.fields:
        for path, what in ((image, "image"), (catalogue, "catalogue")):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{what} {path} not found")
    check_folder(s.out)
    base = None
    if s.init is not None:  # fine-tuning: the model's architecture, tile, noise box
        base = fine_tune_base(s.init)
        s = fine_tuned_settings(s, base)
    run = _prepare(s, log, base)  # reads and checks the image and catalogue: no folder before
    out = make_folder(s.out)
    key = host_keys.key(s.seed)
    params = (init_params(key, run.net) if base is None
              else start_params(base, run.net, host_keys.fold_in(key, 0),
                                classes=run.card.classes))
    if base is not None:
        log(f"starting from {base.path} ({base.arch}, {base.patch}-pixel tiles, its "
            f"normalisation and priors)")
    opt = _optimizer(run.net, s.learning_rate, s.momentum)
    opt_state = training.init_state(opt, params)
    history: list[dict[str, Any]] = []
    first = 1
    fp = _fingerprint(s)
    if resume_from is not None:
        params, opt_state, meta = load_checkpoint(os.path.join(out, CHECKPOINT), params,
                                                  opt_state)
        if meta.get("fingerprint") != fp:
            raise ValueError(f"--resume: the image or catalogue changed since {out} was "
                             "started (size or checksum differ); start a new run")
        history = meta["history"]
        first = int(meta["epoch"]) + 1
        if first > s.epochs:
            raise ValueError(f"--resume: {out} already has {first - 1} epochs; give --epochs "
                             f"greater than {first - 1} to continue")
        log(f"resuming {out} at epoch {first} of {s.epochs}")
    with atomic_write(os.path.join(out, SETTINGS_FILE)) as fh:
        fh.write(json.dumps({"settings": dataclasses.asdict(s), "run": run.info,
                             "fingerprint": fp}, indent=1).encode())
    policy = get_policy(s.mixed_precision)
    predict = network_fn(run.net, len(run.card.tile), policy.name)
    n = s.patches_per_epoch
    chosen_by = _selection(s, bool(run.card.classes))
    best = resumed_best(history, chosen_by, _saved_epoch(out)) if history else None
    if best is not None and best is not best_epoch(history, chosen_by):
        log(f"best.dat holds epoch {best['epoch']}, kept by an earlier version's rule; a "
            "later epoch replaces it as this version's keeps the best")
    files = ["args.json", "results.csv", "last.dat", "last.json", "best.dat", "best.json",
             CHECKPOINT]
    times: list[float] = []
    figure = FigureSchedule(functools.partial(_write_figure, out, s=s))
    per_epoch = -(-n // s.batch_size)
    with Prefetcher(run.sampler, s.seed, n, first) as data, \
            Progress((s.epochs - first + 1) * per_epoch, "training", unit="batch",
                     enabled=progress) as bar, _drawn_if_interrupted(figure, history):
        say = bar.write if log is print else log
        for epoch in range(first, s.epochs + 1):
            t0 = time.perf_counter()
            x, t = data.get(epoch)
            lr = learning_rate_at_epoch(s, epoch)
            opt_state = training.set_learning_rate(opt_state, lr)
            ekey = host_keys.fold_in(key, epoch)
            sums = []
            bar.set_postfix(epoch=f"{epoch}/{s.epochs}")
            # several batches per compiled call where the network allows it (SDC1 at
            # 256x256 on 2 CPU cores: 1.13-1.16x the img/s of one call per batch)
            t_train = time.perf_counter()
            for call in training.epoch_calls(run.net, opt, params, opt_state, x, t,
                                             s.batch_size, ekey, nb_im_iter=epoch * n,
                                             policy=policy):
                params, opt_state = call.params, call.opt_state
                sums.append(call.sums)
                call.sums.block_until_ready()  # the bar shows finished work, not dispatches
                bar.update(call.batches)
            t_train = time.perf_counter() - t_train
            train_loss = float(sum(np.asarray(v, np.float64).sum() for v in sums)) / n
            if not math.isfinite(train_loss):
                raise FloatingPointError(_diverged(epoch, f"loss {train_loss}", history, out))
            t_val = time.perf_counter()
            # laid out once for the epoch's validation
            laid_out = inference_params(run.net, params, policy)
            vparts = _val_losses(run, laid_out, s.batch_size, policy)
            if not np.isfinite(vparts).all():  # finite weights whose outputs overflow
                raise FloatingPointError(_diverged(
                    epoch, f"validation loss {float(vparts.sum())}", history, out))
            model = LoadedModel(card=run.card, net=run.net, params=params)
            sc = validate_areas(model, run.val_areas, lambda b, p=laid_out: predict(p, b))
            t_val = time.perf_counter() - t_val
            dt = time.perf_counter() - t0
            times.append(dt)
            row = {"epoch": epoch, "learning_rate": lr, "train_loss": train_loss,
                   "val_loss": float(vparts.sum()), "val_position": float(vparts[0]),
                   "val_size": float(vparts[1]), "val_probability": float(vparts[2]),
                   "val_objectness": float(vparts[3]), "threshold": sc.threshold,
                   "precision": sc.precision, "recall": sc.recall, "f1": sc.f1, "ap": sc.ap,
                   "n_detections": sc.n_detections, "n_true": sc.n_true, "epoch_seconds": dt,
                   "elapsed_seconds": (history[-1]["elapsed_seconds"] if history else 0.0) + dt,
                   "train_seconds": t_train, "patches_per_second": n / t_train,
                   "validation_seconds": t_val}
            if run.card.classes:  # f1_class: F1 counting the rightly classified only
                row.update(val_classes=float(vparts[4]), class_accuracy=sc.class_accuracy,
                           f1_class=sc.f1 * float(np.nan_to_num(sc.class_accuracy)),
                           class_temperature=sc.class_temperature, class_ece=sc.class_ece)
            history.append(row)
            _save_model(out, "last", run, params, sc.threshold, row)
            if best_epoch(history, chosen_by) is row:
                best = row
                _save_model(out, "best", run, params, sc.threshold, row)
            write_results_csv(os.path.join(out, "results.csv"), history)
            figure.epoch_done(history)
            save_checkpoint(os.path.join(out, CHECKPOINT), params, opt_state,
                            {"epoch": epoch, "history": history, "fingerprint": fp})
            eta = float(np.median(times)) * (s.epochs - epoch)
            say(epoch_line(row, s.epochs, eta if epoch < s.epochs else None))
    if figure.flush(history):
        files.append("training.png")
    if best is not None:
        log(f"best epoch {best['epoch']}: precision {best['precision']:.3f} recall "
            f"{best['recall']:.3f} F1 {best['f1']:.3f} AP {best['ap']:.3f} at objectness >= "
            f"{best['threshold']:.2f}"
            + (f", class accuracy {best['class_accuracy']:.3f}" if "class_accuracy" in best
               else "")
            + f"; {format_seconds(time.perf_counter() - start)} in this run")
    return TrainResult(out=out, history=history, best=best, files=files,
                       seconds=time.perf_counter() - start)


def _saved_epoch(out: str) -> int | None:
    """The epoch ``best.json`` of a run folder records (None without a readable one)."""
    try:
        with open(os.path.join(out, "best.json")) as fh:
            return int(json.load(fh)["notes"]["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _selection(s: TrainSettings, classifies: bool) -> str:
    """The history column that chooses the best epoch: ``s.select``, or for a detector that
    classifies with ``select`` "f1", ``f1_class`` (F1 x class accuracy: the F1 of the
    detections that are matched and rightly classified; on the benchmark's simulated
    morphologies the F1 alone chose epoch 10 of 30 with 0.55 class accuracy, the classes
    still improving to 0.80 by epoch 25)."""
    return "f1_class" if classifies and s.select == "f1" else s.select


def _diverged(epoch: int, what: str, history: list[dict[str, Any]], out: str) -> str:
    """The message of a run stopped by a non-finite loss at ``epoch``."""
    kept = (f"the last good epoch ({history[-1]['epoch']}) is kept in {out}" if history else
            f"no epoch finished before it, so {out} holds no model")
    return f"training diverged at epoch {epoch} ({what}); {kept}; lower the learning rate"


@contextlib.contextmanager
def _drawn_if_interrupted(figure: FigureSchedule, history: list):
    """A run ended by an error (divergence, Ctrl-C) still writes the figure of every
    finished epoch (a finished run flushes it itself)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the run's own error is the one to see
            figure.flush(history)
        raise


def _write_figure(out: str, history: list[dict[str, Any]], s: TrainSettings) -> bool:
    try:
        from .plots import save_figure
        fig = training_figure(history, title=f"cianna-jax train: {os.path.basename(s.image)} "
                                             f"({s.arch} network)")
    except ImportError:
        return False
    save_figure(fig, os.path.join(out, "training.png"))
    return True
