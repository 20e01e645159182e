"""From a FITS image to a source catalogue: open, noise map, detect, measure, tabulate.

:func:`find_sources` is the Python form of ``cianna-jax predict``; :func:`predict_file`
also writes the catalogue (format by extension, atomically).  Memory stays bounded:
the image is read a box or a tile batch at a time from its memory map.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..checks import as_int
from ..io.atomic import check_folder
from .adaptive_noise import AdaptiveRms, adaptive_beam, adaptive_noise_map
from .bright_zones import ZONES_NOTE, box_thresholds, bright_zones, zone_thresholds
from .catalogue import (
    catalogue_format,
    write_catalogue,
)
from .catalogue_table import build_table, catalogue_order
from .cubelets import write_cubelets
from .deblend import MAX_PEAKS, split_blends
from .duplicates import line_owners, merge_parts, unique_sources
from .finding_checks import (
    check_model_image,
    checked_astrometric_error,
    checked_figure_path,
    checked_scale_error,
    checked_target_reliability,
)
from .fits_image import Beam, FitsImage, ImageError, open_image
from .flags import DEFAULT_BRIGHT, BrightRule
from .kinematics import velocity_gradient
from .line_table import check_sdc2_cube
from .measure import (
    FWHM,
    Measurements,
    fit_moment0,
    line_window,
    measure_boxes_3d,
    measure_sources,
)
from .model_card import LoadedModel, ModelCard, load_model
from .mosaic import (
    MosaicFinding,
    check_images,
    image_names,
    keep_nearest_centre,
    largest_beam,
    merge_tables,
)
from .noise import NoiseMap, estimate_noise_map
from .predict import Detections, checked_threshold, detect, make_predict_fn
from .primary_beam import PrimaryBeam, finding_beam, pb_response
from .pybdsf_columns import NAMES, TABLE_FORMATS, with_pybdsf_names
from .reliability import (
    ReliabilityEstimate,
    ThresholdScan,
    add_reliability_column,
    estimate_reliability,
    with_fragments,
)
from .residual import write_noise_map, write_residual
from .sky import (
    beam_in_pixels,
)
from .source_list import source_list as make_source_list
from .sources import GROUP_TOL, THRESH_ISL, checked_group_tol, with_sources

__all__ = ["SourceFinding", "find_sources", "find_sources_in_images", "measure_detections",
           "inverted_finding", "attach_reliability", "predict_file", "build_table",
           "beam_in_pixels", "warn_if_other_scale"]


@dataclass
class SourceFinding:
    """Result of :func:`find_sources`: the catalogue ``table`` (astropy), the raw
    ``detections``, their ``measurements`` (both in the table's row order), the ``noise`` map,
    ``timings`` (seconds) and, when asked for, the inverted-image test's ``reliability``
    estimate (:mod:`.reliability`) and its ``threshold_scan`` (with a target reliability)."""

    table: Any
    detections: Detections
    measurements: Measurements
    noise: NoiseMap
    timings: dict[str, float] = field(default_factory=dict)
    reliability: ReliabilityEstimate | None = None
    threshold_scan: ThresholdScan | None = None


def _as_model(model: str | os.PathLike | LoadedModel, tile: Any = None) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model, tile=tile)


#: how far (a factor either way) an image's beam, in pixels, may lie outside the training
#: images' before :func:`warn_if_other_scale` warns
SCALE_TOLERANCE = 1.25


def warn_if_other_scale(card: ModelCard, image: FitsImage) -> str | None:
    """Warn (UserWarning, also returned) when the image's beam FWHM in pixels lies more
    than :data:`SCALE_TOLERANCE` outside the range of the images the model was trained on
    (the card's ``notes["beam_fwhm_pixels"]``, written by ``cianna-jax train``): the
    detector sees pixels, so its sources look larger or smaller than any it learned."""
    trained = card.notes.get("beam_fwhm_pixels") if isinstance(card.notes, dict) else None
    beam = image.beam_fwhm_pixels()
    if not trained or beam is None:
        return None
    try:
        lo, hi = min(float(b[0]) for b in trained), max(float(b[0]) for b in trained)
    except (TypeError, ValueError, IndexError):
        return None  # a hand-edited card: nothing to compare with
    here = beam[0]
    if not (lo > 0 and hi > 0) or lo / SCALE_TOLERANCE <= here <= hi * SCALE_TOLERANCE:
        return None
    factor = here / hi if here > hi else here / lo
    target = math.sqrt(lo * hi)
    span = f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f}"
    msg = (f"{image.path}: its beam is {here:.1f} pixels wide (FWHM, major axis), but the model "
           f"{card.path or ''} was trained on images whose beam is {span} pixels: sources look "
           f"{factor:.2g}x {'larger' if factor > 1 else 'smaller'} to the detector than any it "
           f"learned, so expect missed and mis-sized detections; regrid the image to about "
           f"{image.beam.bmaj / target:.3g} arcsec per pixel (e.g. with reproject) or train on "
           "images like it")
    warnings.warn(msg, UserWarning, stacklevel=3)
    return msg


def find_sources(
    image: str | os.PathLike | FitsImage,
    model: str | os.PathLike | LoadedModel,
    *,
    obj_threshold: float | None = None,
    hdu: int | str | None = None,
    plane: int | None = None,
    beam: Beam | None = None,
    tile: int | tuple[int, ...] | None = None,
    batch_size: int | None = None,
    fit: bool = True,
    progress: bool = True,
    predict_fn: Any = None,
    noise: NoiseMap | None = None,
    merge: bool = True,
    mixed_precision: str = "off",
    flux_scale_error: float = 0.0,
    astrometric_error: float = 0.0,
    reliability: bool = False,
    target_reliability: float | None = None,
    keep_raw: bool = False,
    fragments: Any = None,
    max_peaks: int = MAX_PEAKS,
    primary_beam: str | os.PathLike | PrimaryBeam | None = None,
    pb_min: float | None = None,
    bright: BrightRule | None = None,
    adaptive_rms: AdaptiveRms | None = None,
) -> SourceFinding:
    """Detect and measure the sources of a FITS image (path or opened image) with a model
    (card path, ``.dat`` with its card, or a loaded model).  ``obj_threshold`` overrides
    the card's threshold; ``plane`` takes that plane of a cube as the image (see
    :func:`.fits_image.open_image`); ``beam`` the header's beam; ``tile`` the card's tile size;
    ``noise`` a noise map already computed for this image.  With ``merge``, of two detections
    whose fitted centres lie within half a FWHM (of the beam or of the kept source, the larger)
    only the one with the higher score is kept: the detector boxed one source twice (in a
    cube: centres closer than the sum of their FWHMs and lines overlapping in channel, the
    larger line flux kept, measured again over the envelope of the merged boxes:
    :func:`.duplicates.line_owners`, :func:`.duplicates.union_boxes`); and, in
    a 2D image with a beam, a box whose pixels hold two to four separate significant peaks
    becomes one box per peak before the fits, and those sources are fitted together: the
    detector boxed close sources once (:func:`.deblend.split_blends`; ``max_peaks``: the most
    boxes one splits into, 1: none).  ``merge=False`` keeps the detector's boxes as they are.
    ``mixed_precision``: CIANNA's mode for the detector's passes (e.g. "BF16C_FP32A",
    faster on CPU, see :func:`.predict.make_predict_fn`); ignored with ``predict_fn``.
    ``flux_scale_error``: the fractional uncertainty of the image's flux scale (calibration,
    e.g. 0.1), added in quadrature to ``flux_err`` and ``peak_err``; ``astrometric_error``:
    the positions' systematic 1-sigma uncertainty in arcsec (e.g. against a reference
    catalogue), added in quadrature to the position errors.  ``reliability``: also
    find the sources of the inverted image, estimate from them the fraction of false
    detections per SNR bin (:mod:`.reliability`) and give each source its ``reliability``
    (a column; the estimate in ``SourceFinding.reliability`` and the table's metadata).
    ``target_reliability`` (e.g. 0.9; implies ``reliability``, excludes ``obj_threshold``):
    the objectness threshold is the lowest of the model card's and 0.05, 0.1, ... 0.95
    above it whose catalogue the same test estimates at least that reliable
    (``SourceFinding.threshold_scan``; the most reliable one, with a warning, when none is;
    several images: each its own).  ``fragments``: rates of the detector's errors around
    sources measured by a source injection on an image like this one
    (:func:`.completeness.read_fragment_rates`; implies ``reliability``), added to the
    estimate.  ``keep_raw``: every tile's boxes before merging in ``res.detections.raw``
    (:func:`.predict.detect`), for runs that change a few tiles.  ``primary_beam`` (a beam
    FITS image's path, a model such as "gaussian:60" or "meerkat", or a
    :class:`.primary_beam.PrimaryBeam`): the image is not primary-beam corrected; the
    catalogue's fluxes are divided by the beam's response at each source (column ``pb``),
    sources where it is below ``pb_min`` (or not known) left out (:mod:`.primary_beam`).
    ``bright`` (:class:`.flags.BrightRule`): which sources are flagged ``near_bright``,
    where the reliability test and the target's threshold are made apart
    (:mod:`.bright_zones`; default: within 30 beams of a source of SNR >= 100 at least 10
    times brighter).  ``adaptive_rms`` (:class:`.adaptive_noise.AdaptiveRms`, PyBDSF's
    ``adaptive_rms_box``): the noise map (computed, or ``noise``) rises around bright
    sources to the rms of small boxes there, artefacts counted as noise
    (:mod:`.adaptive_noise`; a 2D image with a beam; recorded as ``adaptive_rms`` in the
    catalogue's metadata)."""
    target = checked_target_reliability(target_reliability, obj_threshold)
    if batch_size is not None:  # refused before the noise map's work (detect checks it too)
        as_int(batch_size, "batch_size", minimum=1)
    checked_scale_error(flux_scale_error)
    as_int(max_peaks, "max_peaks", minimum=1)  # refused before the work
    pb = finding_beam(primary_beam, pb_min)
    own = not isinstance(image, FitsImage)
    img = open_image(image, hdu, beam=beam, plane=plane) if own else image
    try:
        checked_astrometric_error(astrometric_error, img)  # refused before the work
        if pb:  # (a cube, a model without WCS or frequency: refused before the work)
            pb_response(pb["primary_beam"], img, np.zeros(1), np.zeros(1),
                        np.zeros(1) if img.ndim == 3 else None)
        mdl = _as_model(model, tile)
        if obj_threshold is not None:  # refused before the noise map's work
            checked_threshold(obj_threshold, int(mdl.net.yolo.nb_box))
        if predict_fn is None:
            predict_fn = make_predict_fn(mdl, mixed_precision)
        check_model_image(img, mdl)
        warn_if_other_scale(mdl.card, img)
        t0 = time.perf_counter()
        if adaptive_rms is not None:  # (a cube, no beam: refused before the noise map's work)
            fwhm = adaptive_beam(adaptive_rms, img)
        if noise is None:
            noise = estimate_noise_map(img.read, img.shape, box=mdl.card.noise_box,
                                       progress=progress)
        if adaptive_rms is not None and noise.adaptive is None:
            noise = adaptive_noise_map(img.read, img.shape, noise, adaptive_rms, fwhm,
                                       progress=progress)
        t1 = time.perf_counter()
        kw = dict(batch_size=batch_size, progress=progress, predict_fn=predict_fn)
        if target is not None:
            res = _at_target_reliability(img, mdl, noise, target, fit=fit, merge=merge,
                                         flux_scale_error=flux_scale_error,
                                         astrometric_error=astrometric_error,
                                         fragments=fragments, max_peaks=max_peaks, pb=pb,
                                         bright=bright, **kw)
            res.timings = {"noise_s": t1 - t0, **res.timings}
            return res
        det = detect(img.read, img.shape, mdl, noise=noise, obj_threshold=obj_threshold,
                     keep_raw=keep_raw, **kw)
        t2 = time.perf_counter()
        res = measure_detections(img, mdl, det, noise, fit=fit, merge=merge,
                                 flux_scale_error=flux_scale_error, progress=progress,
                                 max_peaks=max_peaks, astrometric_error=astrometric_error,
                                 bright=bright, **pb)
        res.timings = {"noise_s": t1 - t0, "detect_s": t2 - t1, **res.timings}
        if reliability or fragments is not None:
            t3 = time.perf_counter()
            attach_reliability(res, inverted_finding(img, mdl, noise, obj_threshold=obj_threshold,
                                                     fit=fit, merge=merge, max_peaks=max_peaks,
                                                     **pb, **kw),
                               fragments=fragments)
            res.timings["reliability_s"] = time.perf_counter() - t3
        return res
    finally:
        if own:
            img.close()


def inverted_finding(image: FitsImage, model: LoadedModel, noise: NoiseMap, *,
                     obj_threshold: Any = None, predict_fn: Any = None,
                     batch_size: int | None = None, fit: bool = True, merge: bool = True,
                     progress: bool = False, max_peaks: int = MAX_PEAKS,
                     primary_beam: PrimaryBeam | None = None,
                     pb_min: float | None = None) -> SourceFinding:
    """The sources found on ``image`` inverted (:meth:`.FitsImage.inverted`) with the same
    model, threshold and ``noise`` map (its background negated, its rms the same): false
    detections only, as many as the noise gives on the image itself (:mod:`.reliability`);
    with ``primary_beam`` and ``pb_min``, on the same area as the catalogue."""
    if progress:
        print("inverted image (the reliability test):", file=sys.stderr)
    neg = image.inverted()
    flipped = replace(noise, background=-noise.background)
    det = detect(neg.read, neg.shape, model, noise=flipped, obj_threshold=obj_threshold,
                 batch_size=batch_size, progress=progress, predict_fn=predict_fn)
    with warnings.catch_warnings():  # (said once, for the image itself)
        warnings.filterwarnings("ignore", message=".*primary beam is not known")
        return measure_detections(neg, model, det, flipped, fit=fit, merge=merge,
                                  progress=progress, max_peaks=max_peaks,
                                  primary_beam=primary_beam, pb_min=pb_min)


def attach_reliability(res: SourceFinding, inverted: SourceFinding,
                       threshold: float | None = None, fragments: Any = None,
                       near_threshold: float | None = None) -> None:
    """Give the catalogue of ``res`` its reliability: the estimate from the detections of
    the ``inverted`` image (those of objectness >= ``threshold`` when given, as the
    catalogue's were chosen; ``near_threshold`` for those near bright sources, when that
    zone had its own) in ``res.reliability`` and the table's ``reliability`` column, each
    source's its zone's (:mod:`.bright_zones`); ``fragments``
    (:class:`.injection.FragmentRates`): the detector's errors around sources that a source
    injection measured, added (:func:`.reliability.with_fragments`)."""
    inv = inverted.table
    zones = bright_zones(res.table, inv)
    if threshold is not None:
        cut = np.full(len(inv), float(threshold))
        if zones is not None and near_threshold is not None:
            cut = np.where(zones[1], near_threshold, cut)
        keep = np.asarray(inv["objectness"]) >= cut
        inv = inv[keep]
        zones = None if zones is None else (zones[0], zones[1][keep])
    snr_img, snr = np.asarray(res.table["snr"], np.float64), np.asarray(inv["snr"], np.float64)

    def estimate(a, b):
        est = estimate_reliability(snr_img[a], snr[b])
        return est if fragments is None else with_fragments(est,
                                                            *fragments.expected(snr_img[a]))

    everywhere = np.ones(snr_img.shape, bool)
    res.reliability = estimate(everywhere, np.ones(snr.shape, bool))
    add_reliability_column(res.table, res.reliability)
    if zones is not None:  # each zone's own test: artefacts around bright sources apart
        near, near_inv = zones
        ests = {"near_bright": estimate(near, near_inv), "elsewhere": estimate(~near, ~near_inv)}
        res.table["reliability"][:] = np.where(near, ests["near_bright"].at(snr_img),
                                               ests["elsewhere"].at(snr_img))
        res.table.meta["reliability_zones"] = {"note": ZONES_NOTE,
                                               **{k: v.summary() for k, v in ests.items()}}


def _at_target_reliability(img: FitsImage, mdl: LoadedModel, noise: NoiseMap, target: float,
                           *, fit: bool, merge: bool, flux_scale_error: float,
                           fragments: Any = None, max_peaks: int = MAX_PEAKS,
                           astrometric_error: float = 0.0, pb: dict[str, Any] | None = None,
                           bright: BrightRule | None = None, **kw: Any) -> SourceFinding:
    """:func:`find_sources` at the threshold chosen for a ``target`` reliability: both the
    image and the inverted image detected and measured down to the model card's threshold,
    counted at it and at each of :data:`.reliability.THRESHOLDS` above it, then the image's
    detections above the chosen one measured as the catalogue (the greedy NMS keeps the
    same boxes above a threshold whatever lower ones it saw)."""
    floor = float(np.max(mdl.card.obj_threshold))
    t0 = time.perf_counter()
    det = detect(img.read, img.shape, mdl, noise=noise, obj_threshold=floor, **kw)
    t1 = time.perf_counter()
    pb = pb or {}
    with warnings.catch_warnings():  # (said once, for the catalogue)
        warnings.filterwarnings("ignore", message=".*primary beam is not known")
        full = measure_detections(img, mdl, det, noise, fit=fit, merge=merge,
                                  max_peaks=max_peaks, bright=bright, **pb)
    neg = inverted_finding(img, mdl, noise, obj_threshold=floor, fit=fit, merge=merge,
                           max_peaks=max_peaks, **pb, **kw)
    chosen = zone_thresholds(full.table, neg.table, floor, target)  # (per zone, when
    thr = chosen.threshold  # there are sources near bright ones: artefacts apart)
    t2 = time.perf_counter()
    keep = det.boxes.objectness >= box_thresholds(det.boxes, full.table, chosen)
    above = replace(det, boxes=det.boxes.take(keep), obj_threshold=thr)
    res = measure_detections(img, mdl, above, noise, fit=fit, merge=merge,
                             flux_scale_error=flux_scale_error, progress=kw["progress"],
                             max_peaks=max_peaks, astrometric_error=astrometric_error,
                             bright=bright, **pb)
    res.threshold_scan = chosen.scan
    attach_reliability(res, neg, thr, fragments,  # (the scan counts noise detections only)
                       near_threshold=None if chosen.near is None else chosen.near[1])
    res.table.meta["reliability"].update(target=target, threshold_scan=chosen.scan.summary(),
                                         **chosen.summary())
    res.timings = {"detect_s": t1 - t0, **res.timings, "reliability_s": t2 - t1}
    return res


def _channel_beam_fluxes(img: FitsImage, m: Measurements, area: float | None) -> Measurements:
    """A cube with per-channel beams (:attr:`.FitsImage.channel_beams`): each line's flux
    (summed in Jy/beam over the cube's one beam ``area``, pixels) rescaled to the beam of
    its central channel."""
    if not img.channel_beams or area is None or m.z is None or not img.pixel_scale:
        return m
    chans = np.array(sorted(img.channel_beams))
    areas = np.array([img.channel_beams[c].area_pixels(img.pixel_scale) for c in chans])
    z = np.nan_to_num(np.asarray(m.z, np.float64))
    own = areas[np.abs(np.rint(z)[:, None] - chans[None, :]).argmin(1)]  # (nearest channel)
    return replace(m, flux=m.flux * area / own, flux_err=m.flux_err * area / own)


def _measure_lines(img: FitsImage, mdl: LoadedModel, boxes: np.ndarray, noise: NoiseMap,
                   fit: bool, bs: float | None) -> Measurements:
    """A cube's detections ``boxes`` measured: the boxes' sums and lines, with ``fit`` each
    line's moment-0 map fitted (position, size, orientation; ``bs`` the beam's sigma in
    pixels) and its velocity gradient; fluxes at the central channel's beam."""
    area = img.beam_area_pixels()
    m = measure_boxes_3d(img.read, img.shape, boxes, noise, beam_area=area,
                         unit_scale=img.unit_scale, box_scale=mdl.card.box_scale)
    if fit:
        m = fit_moment0(img.read, img.shape, boxes, noise, m, beam_area=area,
                        unit_scale=img.unit_scale, beam_sigma=bs,
                        box_scale=mdl.card.box_scale, noise_beam=beam_in_pixels(img))
        high, snr = velocity_gradient(img.read, img.shape, boxes, noise, m,
                                      noise_beam=beam_in_pixels(img))
        m = replace(m, theta_high=high, gradient_snr=snr)
    return _channel_beam_fluxes(img, m, area)


def measure_detections(image: FitsImage, model: LoadedModel, det: Detections, noise: NoiseMap,
                       *, fit: bool = True, merge: bool = True, flux_scale_error: float = 0.0,
                       progress: bool = False, split: bool | None = None,
                       max_peaks: int = MAX_PEAKS,
                       astrometric_error: float = 0.0, primary_beam: PrimaryBeam | None = None,
                       pb_min: float | None = None,
                       bright: BrightRule | None = None) -> SourceFinding:
    """Measure the detections ``det`` of ``image`` (as :func:`.predict.detect` gives them)
    and tabulate them: the second half of :func:`find_sources` (its ``fit``, ``merge`` and
    ``flux_scale_error``); ``timings`` holds ``measure_s`` and the detection's tiles.
    ``split``: whether close sources boxed once are split (:func:`.deblend.split_blends`,
    into ``max_peaks`` boxes at most; None: as ``merge``); ``astrometric_error`` (arcsec),
    ``primary_beam``, ``pb_min`` and ``bright`` as :func:`find_sources`."""
    f = checked_scale_error(flux_scale_error)
    a = checked_astrometric_error(astrometric_error, image)
    img, mdl = image, model
    t2 = time.perf_counter()
    area = img.beam_area_pixels()
    bs = (img.beam.fwhm_pixels(img.pixel_scale) / FWHM
          if img.beam is not None and img.pixel_scale else None)
    if split is None:
        split = merge
    blends, deblended = None, None
    if img.ndim == 2 and split and bs is not None:  # close sources boxed once: one box each
        parent, boxes = split_blends(img.read, img.shape, det.boxes.boxes, noise, bs * FWHM,
                                     max_peaks=max_peaks)
        if len(parent) != len(det.boxes):
            det = replace(det, boxes=replace(det.boxes.take(parent), boxes=boxes))
            # a split box's rows lie side by side
            starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
            blends = [g for g in np.split(np.arange(len(parent)), starts[1:]) if len(g) > 1]
        deblended = np.bincount(parent)[parent] > 1
    if img.ndim == 2:
        m = measure_sources(img.read, img.shape, det.boxes.boxes, noise, beam_area=area,
                            unit_scale=img.unit_scale, beam_sigma=bs,
                            box_scale=mdl.card.box_scale, noise_beam=beam_in_pixels(img),
                            fit=fit, progress=progress, blends=blends)
        if deblended is not None:
            m = replace(m, deblended=deblended)
    else:
        m = _measure_lines(img, mdl, det.boxes.boxes, noise, fit, bs)
    # two detections whose measurements converged on one source: the less confident one
    # dropped; in a cube the parts of one galaxy: the largest kept, measured whole
    ok = np.ones(len(m.x), bool)
    if merge and img.ndim == 2:
        ok = unique_sources(m, det.boxes.score(mdl.card.score), bs or 1.0)
    elif merge:
        owner = line_owners(m, det.boxes.score(mdl.card.score), bs or 1.0)
        ok, wide, m = merge_parts(det.boxes.boxes, m, owner,
                                  lambda b: _measure_lines(img, mdl, b, noise, fit, bs))
        det = replace(det, boxes=replace(det.boxes, boxes=wide))
    t3 = time.perf_counter()
    ok &= np.isfinite(m.peak)  # a detection on blank pixels has no data to measure
    pb, pb_meta = None, {}
    if primary_beam is not None:  # true fluxes: sources where the beam is known and high
        pb = pb_response(primary_beam, img, m.x, m.y, m.z)
        with np.errstate(invalid="ignore"):
            low = ok & ~(pb >= (pb_min or np.finfo(np.float64).tiny))
        unknown = int(np.sum(low & ~np.isfinite(pb)))
        if unknown:
            warnings.warn(f"{img.path}: {unknown} sources where the primary beam is not known "
                          f"({primary_beam.description}: outside it or blank) left out",
                          stacklevel=2)
        ok &= ~low
        pb_meta = {"primary_beam": primary_beam.description, "pb_min": pb_min or 0.0,
                   "pb_left_out": int(np.sum(low))}
    # the catalogue's order for the detections and measurements too: row k is source k
    keep = np.flatnonzero(ok)
    keep = keep[catalogue_order(m.take(keep), None if pb is None else pb[keep])]
    pb = None if pb is None else pb[keep]
    det = replace(det, boxes=det.boxes.take(keep))
    m = m.take(keep)
    if f > 0:  # the flux scale's own uncertainty, in quadrature with the noise's
        m = replace(m, flux_err=np.hypot(m.flux_err, f * np.abs(m.flux)),
                    peak_err=np.hypot(m.peak_err, f * np.abs(m.peak)))
    if a > 0 and m.xy_cov is not None:  # the astrometry's own, isotropic, in quadrature
        m = replace(m, xy_cov=m.xy_cov + (a / img.pixel_scale) ** 2 * np.eye(2))
    thr = det.obj_threshold
    meta = {"model": os.path.basename(mdl.card.path or ""),
            "obj_threshold": list(thr) if isinstance(thr, tuple) else float(thr),
            "tile": list(mdl.card.tile), "overlap": list(mdl.card.overlap),
            "noise_box": mdl.card.noise_box, "median_rms": noise.median_rms * img.unit_scale, "flux_scale_error": f,
            "astrometric_error_arcsec": a, **pb_meta}
    if noise.adaptive is not None:
        meta["adaptive_rms"] = dict(noise.adaptive)
    if mdl.class_names:
        meta["classes"] = list(mdl.class_names)
    table = build_table(img, det, m, meta, noise, pb, bright or DEFAULT_BRIGHT,
                        class_names=mdl.class_names)
    timings = {"measure_s": t3 - t2, "tiles": det.n_tiles, "tiles_per_s": det.tiles_per_second}
    return SourceFinding(table, det, m, noise, timings)


def find_sources_in_images(
    images: Sequence[str | os.PathLike],
    model: str | os.PathLike | LoadedModel,
    *,
    hdu: int | str | None = None,
    plane: int | None = None,
    beam: Beam | None = None,
    tile: int | tuple[int, ...] | None = None,
    mixed_precision: str = "off",
    progress: bool = True,
    **kw: Any,
) -> MosaicFinding:
    """:func:`find_sources` on each of several overlapping 2D images with a WCS (a survey's
    mosaics or pointings; one loaded, compiled detector), merged into one catalogue that
    keeps each source once (:mod:`.mosaic`: from the image whose centre is nearest).
    ``hdu``, ``plane`` and ``beam`` apply to every image; ``primary_beam`` too, or one per
    image in a list (a model is centred on each image's reference position); other keywords
    as :func:`find_sources`."""
    paths = [os.fspath(p) for p in images]
    if len(paths) < 2:
        raise ValueError(f"images: give two or more images to merge; received {paths!r}")
    beams = kw.pop("primary_beam", None)
    if not isinstance(beams, (list, tuple)):
        beams = [beams] * len(paths)
    elif len(beams) != len(paths):
        raise ValueError(f"primary_beam: one per image ({len(paths)}); received {len(beams)}")
    mdl = _as_model(model, tile)
    with ExitStack() as stack:
        imgs = [stack.enter_context(open_image(p, hdu, beam=beam, plane=plane)) for p in paths]
        check_images(imgs)
        predict_fn = kw.pop("predict_fn", None) or make_predict_fn(mdl, mixed_precision)
        parts = []
        for k, im in enumerate(imgs):
            if progress:
                print(f"image {k + 1}/{len(imgs)}: {im.path}", file=sys.stderr)
            parts.append(find_sources(im, mdl, predict_fn=predict_fn, progress=progress,
                                      primary_beam=beams[k], **kw))
        keep = keep_nearest_centre([(np.asarray(p.table["ra"]), np.asarray(p.table["dec"]))
                                    for p in parts], imgs, largest_beam(imgs))
        table = merge_tables([p.table for p in parts], keep, image_names(paths))
    return MosaicFinding(table, parts, keep)


#: predict's image outputs: keyword -> kind (:mod:`.residual`)
IMAGE_OUTPUTS = {"residual": "residual", "model_image": "model", "rms_map": "rms",
                 "background_map": "background"}


def _image_outputs(images: list, requested: dict[str, Any]) -> dict[str, str]:
    """The image paths asked for (keyword of :data:`IMAGE_OUTPUTS` -> path or None), checked
    before any work: FITS names in an existing folder, not a folder, not an input image, no
    file twice, one image only.  Returns kind -> path."""
    wanted = {k: os.fspath(v) for k, v in requested.items() if v is not None}
    if wanted and len(images) > 1:
        raise ValueError(f"{'/'.join(wanted)}: written for one image at a time; run predict on "
                         "each image for its own")
    inputs = {os.path.realpath(os.fspath(i)) for i in images}
    for name, p in wanted.items():
        if not p.lower().endswith((".fits", ".fit")):
            raise ValueError(f"{name}: a FITS file name (.fits) expected; received {p!r}")
        folder = check_folder(os.path.dirname(os.path.abspath(p)))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: output folder does not exist")
        if os.path.isdir(p):
            raise IsADirectoryError(f"{name}: {p} is a folder")
        if os.path.realpath(p) in inputs:
            raise ValueError(f"{name}: {p} is the input image; give another file name")
    if len(set(map(os.path.realpath, wanted.values()))) < len(wanted):
        both = "both" if len(wanted) == 2 else "two of them"
        raise ValueError(f"{' and '.join(wanted)}: the same file given for {both}")
    return {IMAGE_OUTPUTS[k]: p for k, p in wanted.items()}


def predict_file(
    image: str | os.PathLike | Sequence[str | os.PathLike],
    model: str | os.PathLike | LoadedModel,
    out: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    fmt: str | None = None,
    residual: str | os.PathLike | None = None,
    model_image: str | os.PathLike | None = None,
    rms_map: str | os.PathLike | None = None,
    background_map: str | os.PathLike | None = None,
    cubelets: str | os.PathLike | None = None,
    reliability_figure: str | os.PathLike | None = None,
    source_list: str | os.PathLike | None = None,
    group_tol: float = GROUP_TOL,
    names: str = "cianna",
    classifier: Any = None,
    **kw: Any,
) -> SourceFinding | MosaicFinding:
    """:func:`find_sources`, then write the catalogue to ``out`` (format by extension or
    ``fmt``), or to each of several paths (e.g. an ``.ecsv`` and a DS9 ``.reg``: one
    detection run).  Several images (overlapping mosaics) give one merged catalogue
    (:func:`find_sources_in_images`).  ``residual``/``model_image``: FITS files of the image
    minus the fitted Gaussians / the Gaussians alone; ``rms_map``/``background_map``: the
    noise map the sources were found and measured with, at every pixel (:mod:`.residual`;
    one 2D image); ``cubelets``: a folder for each line's cubelet, moment maps and spectrum
    (:mod:`.cubelets`; one cube); ``reliability_figure``: a PNG (or PDF...) of the
    inverted-image test (:func:`.plots.reliability_plot`; implies ``reliability``, needs
    matplotlib); ``source_list``: a table of the sources the catalogue's Gaussians make
    (:mod:`.source_list`; 2D images), grouped with PyBDSF's ``group_tol`` (:mod:`.sources`,
    also the catalogue's ``source_id`` and ``s_code``); ``names`` "pybdsf": the tables
    (not SDC or DS9 files) with PyBDSF's column names and units (:mod:`.pybdsf_columns`);
    ``classifier``: a morphology classifier (its card's path or loaded, :mod:`.morphology`)
    whose classes the catalogue's rows and the source list's get (2D images).
    The outputs are checked before any work; nothing is written if anything fails."""
    images = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    outs = [out] if isinstance(out, (str, os.PathLike)) else list(out)
    if not outs or (fmt is not None and len(outs) > 1):
        raise ValueError("out: give one path, or several without fmt (each its extension's "
                         f"format); received {outs!r} with fmt={fmt!r}")
    formats = [catalogue_format(o, fmt) for o in outs]
    for o in outs:
        folder = check_folder(os.path.dirname(os.path.abspath(os.fspath(o))))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: output folder does not exist")
    if not images:
        raise ValueError("image: give at least one image")
    group_tol = checked_group_tol(group_tol)
    if names not in NAMES:
        raise ValueError(f"names: one of {', '.join(NAMES)}; received {names!r}")
    if source_list is not None:
        sl_format = catalogue_format(source_list)
        if sl_format == "sdc2":
            raise ValueError(f"source_list: {source_list}: SDC2 text is for a cube's lines")
        check_folder(os.path.dirname(os.path.abspath(os.fspath(source_list))))
    if reliability_figure is not None:
        checked_figure_path(reliability_figure)
        if kw.get("target_reliability") is None:
            kw["reliability"] = True
    drawn = _image_outputs(images, {"residual": residual, "model_image": model_image,
                                    "rms_map": rms_map, "background_map": background_map})
    if cubelets is not None:
        if len(images) > 1:
            raise ValueError("cubelets: cut from one cube; several images were given")
        if os.path.exists(cubelets) and not os.path.isdir(cubelets):
            raise NotADirectoryError(f"cubelets: {cubelets} exists and is not a folder")
        parent = os.path.dirname(os.path.abspath(os.fspath(cubelets)))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"cubelets: {parent}: folder does not exist")
    if classifier is not None:
        from .morphology import load_classifier

        if isinstance(classifier, (str, os.PathLike)):
            classifier = load_classifier(classifier)
    if len(images) > 1:
        res: SourceFinding | MosaicFinding = find_sources_in_images(images, model, **kw)
        _write_catalogues(_grouped(res.table, group_tol), outs, formats, source_list, names,
                          _classes(classifier, images, None))
        if reliability_figure is not None:
            _reliability_figure(res, reliability_figure, kw.get("target_reliability"))
        return res
    with open_image(images[0], kw.pop("hdu", None), beam=kw.pop("beam", None),
                    plane=kw.pop("plane", None)) as img:
        if "sdc1" in formats and img.wcs is None:
            raise ImageError(f"{img.path}: SDC1 output needs sky positions, but the image "
                             "has no celestial WCS")
        if "sdc1" in formats and img.ndim == 3:
            raise ImageError(f"{img.path}: SDC1 output is for continuum images; a cube's lines "
                             "go to a table (.ecsv, .fits, .csv, .xml)")
        if "sdc2" in formats:
            check_sdc2_cube(img)
        if drawn and img.ndim != 2:
            raise ImageError(f"{img.path}: {' and '.join(drawn)} images are drawn for 2D "
                             f"images; this one has shape {img.shape}")
        if cubelets is not None and img.ndim != 3:
            raise ImageError(f"{img.path}: cubelets are cut from cubes; this image has shape "
                             f"{img.shape}")
        if source_list is not None and img.ndim != 2:
            raise ImageError(f"{img.path}: a source list groups a 2D image's Gaussians; this "
                             f"image has shape {img.shape}")
        if classifier is not None and img.ndim != 2:
            raise ImageError(f"{img.path}: the morphology classifier reads 2D images; this "
                             f"image has shape {img.shape}")
        res = find_sources(img, model, **kw)
        _write_catalogues(_grouped(res.table, group_tol), outs, formats, source_list, names,
                          _classes(classifier, img, res.noise))
        if cubelets is not None:
            boxes = res.detections.boxes.boxes
            write_cubelets(img, res.table, boxes, res.noise, cubelets,
                           channels=line_window(res.measurements, boxes, img.shape[0]))
        for kind, p in drawn.items():
            if kind in ("rms", "background"):
                write_noise_map(img, res.noise, p, which=kind)
            else:
                write_residual(img, res.measurements, p, kind=kind)
        if reliability_figure is not None:
            _reliability_figure(res, reliability_figure, kw.get("target_reliability"))
    return res


def _reliability_figure(res: SourceFinding | MosaicFinding, path: str | os.PathLike,
                        target: float | None) -> None:
    """The inverted-image test's figure of a finding (several images: their summed counts,
    no threshold scan)."""
    from .plots import reliability_plot, save_figure
    from .reliability import summed_estimate

    parts = res.parts if isinstance(res, MosaicFinding) else [res]
    one = parts[0] if len(parts) == 1 else None
    scan = None if one is None else one.threshold_scan
    save_figure(reliability_plot(summed_estimate([p.reliability for p in parts]), scan=scan,
                                 chosen=None if scan is None else one.detections.obj_threshold,
                                 target=target), path)


def _grouped(table: Any, group_tol: float) -> Any:
    """``table`` with its Gaussians grouped with ``group_tol`` (2D catalogues are made with
    PyBDSF's default)."""
    if "source_id" in table.colnames and group_tol != GROUP_TOL:
        settings = table.meta.get("sources", {})
        with_sources(table, group_tol, settings.get("thresh_isl", THRESH_ISL))
    return table


def _classes(classifier: Any, image: Any, noise: NoiseMap | None) -> Any:
    """A table's rows classified by ``classifier`` on ``image`` (or a mosaic's images);
    None without a classifier."""
    if classifier is None:
        return None
    from .morphology_apply import classify_sources

    return lambda t: classify_sources(classifier, image, t, noise=noise)


def _write_catalogues(table: Any, outs: list, formats: list[str],
                      sources: str | os.PathLike | None = None, names: str = "cianna",
                      classify: Any = None) -> None:
    """The catalogue to each of ``outs``; its source list (:mod:`.source_list`) to
    ``sources`` when given; tables with PyBDSF's names when ``names`` says so; both with
    their rows' classes when ``classify`` (a function of a table) is given."""
    def named(t: Any, fmt: str) -> Any:
        return with_pybdsf_names(t) if names == "pybdsf" and fmt in TABLE_FORMATS else t

    def classed(t: Any) -> Any:
        return t if classify is None else classify(t)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        out = classed(table)
        for o, f in zip(outs, formats):
            write_catalogue(named(out, f), o, f)
        if sources is not None:
            write_catalogue(named(classed(make_source_list(table)), catalogue_format(sources)),
                            sources)
