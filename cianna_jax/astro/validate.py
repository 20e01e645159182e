"""``cianna-jax val``: detect on an image (or several overlapping ones), cross-match with a
truth catalogue, score, plot.

The truth is read by :mod:`.truth` (positions on the image, true SNR from the local noise
when the catalogue has none).  :func:`validate` runs the detector once at a low objectness
threshold (for the precision-recall curve), keeps the model's threshold for the catalogue,
and writes the report folder: ``catalogue.ecsv``, ``truth_matched.ecsv``, ``scores.json``,
``scores_by_snr.ecsv``, ``scores_by_flux.ecsv``, ``report.txt`` and the PNG plots.  Several
overlapping images are scored as one field, their catalogue merged as ``predict`` merges it
(:mod:`.mosaic`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from ..io.atomic import atomic_write, check_folder
from ._deps import MissingExtraError
from .adaptive_noise import AdaptiveRms, adaptive_beam, adaptive_noise_map
from .bright_zones import box_thresholds, format_zones, zone_thresholds
from .catalogue import (
    CatalogueError,
    column_values,
    find_column,
    make_table,
    read_catalogue,
    sdc1_classes,
    sdc2_columns,
    write_catalogue,
)
from .catalogue_table import DET_CLASS_COLUMN
from .crossmatch import Match, crossmatch_pixels, crossmatch_sky, match_radius
from .deblend import MAX_PEAKS
from .detector_classes import (
    class_figure,
    class_report,
    detection_by_class,
    detection_by_class_figure,
    format_class_report,
    format_detection_by_class,
    truth_class_column,
)
from .finding_checks import checked_target_reliability
from .fits_image import FitsImage, open_image
from .flags import BrightRule, flag_counts
from .hi_mass import hi_mass
from .line_scores import line_summary, same_line
from .model_card import LoadedModel, load_model
from .morphology import CLASS_COLUMN as MORPH_CLASS
from .mosaic import (
    check_images,
    image_names,
    keep_nearest_centre,
    largest_beam,
    merge_tables,
    split_catalogue,
    summed_timings,
)
from .other_finder import load_detections, merge_detections, through_beam
from .pipeline import (
    attach_reliability,
    inverted_finding,
    measure_detections,
    warn_if_other_scale,
)
from .predict import checked_threshold, detect, make_predict_fn
from .primary_beam import finding_beam, pb_response
from .reliability import (
    ReliabilityEstimate,
    ThresholdScan,
    format_reliability,
    format_scan,
    measured_reliability,
    summed_estimate,
)
from .scores import SNR_BINS, BinnedScores, Scores, pr_curve, score_catalogue
from .sdc1 import Sdc1Score, sdc1_score
from .sdc2 import BAND_HZ, Sdc2Score, sdc2_score, sdc2_summary
from .spectral import is_hi
from .truth import Truth, load_truth, merge_truths, sdc1_columns, seen_through_beam, truth_ids
from .val_text import format_scores, format_sdc2, format_side_by_side

__all__ = ["Truth", "load_truth", "match_catalogues", "scores_for", "sdc1_columns", "validate",
           "format_scores", "format_side_by_side", "ValReport"]


def match_catalogues(det: Any, truth: Truth, beam_fwhm: float, *, factor: float = 1.0,
                     pixel_scale: float | None = None, select: np.ndarray | None = None) -> Match:
    """One-to-one match of detection table ``det`` (rows ``select``) with ``truth``: on the
    sky when both have positions there (``beam_fwhm`` arcsec), else in pixels (``beam_fwhm``
    converted with ``pixel_scale``).  Radius: ``factor * max(beam, true bmaj)``."""
    idx = np.arange(len(det)) if select is None else np.asarray(select)
    size = truth.bmaj
    pair_ok = None if truth.z is None else same_line(det, truth, idx)
    if truth.ra is not None and "ra" in det.colnames:
        r = match_radius(beam_fwhm, size, factor=factor)
        m = crossmatch_sky(np.asarray(det["ra"])[idx], np.asarray(det["dec"])[idx], truth.ra,
                           truth.dec, np.broadcast_to(r, truth.ra.shape), pair_ok=pair_ok)
    else:
        ps = pixel_scale or 1.0
        r = match_radius(beam_fwhm / ps, None if size is None else size / ps, factor=factor)
        m = crossmatch_pixels(np.asarray(det["x"])[idx], np.asarray(det["y"])[idx], truth.x,
                              truth.y, np.broadcast_to(r, truth.x.shape), pair_ok=pair_ok)
    if select is None:
        return m
    n = len(det)
    d2t = np.full(n, -1, np.int64)
    d2t[idx] = m.det_to_truth
    t2d = np.full(m.truth_to_det.shape, -1, np.int64)
    hit = m.truth_to_det >= 0
    t2d[hit] = idx[m.truth_to_det[hit]]
    return Match(det=idx[m.det], truth=m.truth, separation=m.separation, det_to_truth=d2t,
                 truth_to_det=t2d)


def flux_column(det: Any, truth: Truth) -> str:
    """The detections' column compared with the true fluxes: ``line_flux`` (Jy Hz) in a
    cube, else ``flux`` (Jy)."""
    return "flux" if truth.z is None else "line_flux"


def scores_for(det: Any, truth: Truth, match: Match, *, snr_bins=SNR_BINS,
               min_truth_snr: float = 0.0, flux_bins=None) -> Scores:
    """:func:`score_catalogue` for a detection table and a :class:`Truth`."""
    sky = truth.ra is not None and "ra" in det.colnames
    pos = (np.asarray(det["ra"]), np.asarray(det["dec"])) if sky else (np.asarray(det["x"]),
                                                                      np.asarray(det["y"]))
    tpos = (truth.ra, truth.dec) if sky else (truth.x, truth.y)
    names = ("ra_err", "dec_err") if sky else ("x_err", "y_err")
    pos_err = (tuple(column_values(det, n) for n in names)
               if all(n in det.colnames for n in names) else None)
    if pos_err is not None and not any(np.isfinite(e).any() for e in pos_err):
        pos_err = None  # no position errors (a cube's box measurements): no pulls for them
    flux_col = flux_column(det, truth)
    err_col = f"{flux_col}_err"
    flux_err = column_values(det, err_col) if err_col in det.colnames else None
    det_flux = (np.asarray(det[flux_col], np.float64) if flux_col in det.colnames
                else np.full(len(det), np.nan))
    sizes = None
    if truth.bmaj is not None and "bmaj" in det.colnames:
        sizes = ((np.asarray(det["bmaj"]), np.asarray(det["bmin"])), (truth.bmaj, truth.bmin))
    return score_catalogue(
        match, truth_snr=truth.snr, det_snr=np.asarray(det["snr"]), truth_flux=truth.flux,
        det_flux=det_flux, det_pos=pos, truth_pos=tpos, sky=sky,
        det_size=sizes[0] if sizes else None, truth_size=sizes[1] if sizes else None,
        det_pa=np.asarray(det["pa"]) if "pa" in det.colnames else None,
        truth_pa=truth.pa,
        snr_bins=snr_bins, flux_bins=flux_bins, min_truth_snr=min_truth_snr,
        det_pos_err=pos_err, det_flux_err=flux_err)


def _bins_table(b: BinnedScores, unit: str | None) -> Any:
    return make_table({f"{b.quantity}_min": b.edges[:-1], f"{b.quantity}_max": b.edges[1:],
                       "n_true": b.n_truth, "n_true_matched": b.n_truth_matched,
                       "n_det": b.n_det, "n_det_matched": b.n_det_matched,
                       "recall": b.recall, "precision": b.precision, "f1": b.f1},
                      units={f"{b.quantity}_min": unit, f"{b.quantity}_max": unit})


@dataclass
class ValReport:
    """What :func:`validate` computed: the detection table, truth, match, scores, PR curve,
    SDC1 score, the report text and the files written."""

    table: Any
    truth: Truth
    match: Match
    scores: Scores
    pr: dict[str, np.ndarray]
    sdc1: Sdc1Score | None
    text: str
    files: list[str]


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


@dataclass
class _ImageRun:
    """One image's part of a ``val`` run: its noise map, truth rows, other finders' rows,
    every detection down to the low threshold (``full``, measured together, for the
    precision-recall curve) and the detections at the threshold (``res``: the catalogue's
    rows, measured as ``predict`` measures them, with the reliability test's estimate when
    asked for) at the objectness threshold ``thr``, and the threshold ``scan`` that chose
    ``thr`` for a target."""

    img: FitsImage
    truth: Truth
    others: dict[str, Any]
    full: Any
    res: Any
    thr: float
    scan: ThresholdScan | None = None


def _run_image(img: FitsImage, mdl: LoadedModel, truth: Any, others: Mapping[str, Any], *,
               thr: float, low: float, predict_fn, progress: bool, names: Mapping[str, str],
               reliability: bool = False, target: float | None = None,
               max_peaks: int = MAX_PEAKS, pb: dict[str, Any] | None = None,
               compare_apparent: bool = False, bright: BrightRule | None = None,
               adaptive_rms: AdaptiveRms | None = None, classifier: Any = None,
               class_column: str | None = None) -> _ImageRun:
    """Noise map, truth and comparison rows on ``img`` (checked before the detector runs),
    then detection and measurement (``names``: the catalogues' names for messages); with
    ``reliability``, the inverted image's too, and the catalogue's ``reliability`` column;
    with a ``target`` reliability, the threshold chosen for it replaces ``thr``; with a
    primary beam ``pb``, the comparison rows through it (:func:`.other_finder.through_beam`,
    ``compare_apparent``: measured on the image as it is); with ``adaptive_rms``, the
    detection and measurement's noise map raised around bright sources (the truth's SNRs
    from the map without it, so that runs with and without compare); with a morphology
    ``classifier``, the catalogue's rows classified; the truth's ``class_column`` checked."""
    from .noise import estimate_noise_map

    warn_if_other_scale(mdl.card, img)
    tn = time.perf_counter()
    noise = estimate_noise_map(img.read, img.shape, box=mdl.card.noise_box, progress=progress)
    tr = load_truth(truth, img, noise, name=names.get("truth"))
    if class_column is not None:  # (before the detector runs)
        truth_class_column(tr.table, class_column)
    if adaptive_rms is not None:
        noise = adaptive_noise_map(img.read, img.shape, noise, adaptive_rms,
                                   adaptive_beam(adaptive_rms, img), progress=progress)
    noise_s = time.perf_counter() - tn
    pb = pb or {}
    if pb:
        tr = seen_through_beam(tr, pb_response(pb["primary_beam"], img, tr.x, tr.y, tr.z),
                               pb["pb_min"])
    oth = {k: load_detections(v, img, noise, name=names.get(k)) for k, v in others.items()}
    if pb:
        oth = {k: through_beam(d, pb_response(pb["primary_beam"], img, np.asarray(d["x"]),
                                              np.asarray(d["y"]), np.asarray(d["z"])
                                              if "z" in d.colnames else None),
                               pb["pb_min"], apparent=compare_apparent)
               for k, d in oth.items()}
    t0 = time.perf_counter()
    found = detect(img.read, img.shape, mdl, noise=noise, obj_threshold=low,
                   progress=progress, predict_fn=predict_fn)
    t1 = time.perf_counter()
    # the greedy NMS keeps the same boxes above the threshold whatever lower ones it saw
    with warnings.catch_warnings():  # (said once, for the catalogue)
        warnings.filterwarnings("ignore", message=".*primary beam is not known")
        full = measure_detections(img, mdl, found, noise, progress=progress,
                                  max_peaks=max_peaks, bright=bright, **pb).table
    t2 = time.perf_counter()
    neg = scan = chosen = None
    if reliability or target is not None:  # (a target: from the card's threshold, thr)
        neg = inverted_finding(img, mdl, noise, obj_threshold=thr, predict_fn=predict_fn,
                               progress=progress, max_peaks=max_peaks, **pb)
    cut = np.full(len(found.boxes.objectness), thr)
    if target is not None:  # (per zone where there are sources near bright ones)
        chosen = zone_thresholds(full, neg.table, thr, target)
        scan, thr = chosen.scan, chosen.threshold
        cut = box_thresholds(found.boxes, full, chosen)
    t3 = time.perf_counter()
    above = replace(found, boxes=found.boxes.take(found.boxes.objectness >= cut),
                    obj_threshold=thr)
    res = measure_detections(img, mdl, above, noise, progress=progress, max_peaks=max_peaks,
                             bright=bright, **pb)
    res.timings = {"noise_s": noise_s, "detect_s": t1 - t0, **res.timings,
                   "measure_s": time.perf_counter() - t3 + t2 - t1}
    if classifier is not None:
        from .morphology_apply import classify_sources

        res.table = classify_sources(classifier, img, res.table, noise=noise)
    run = _ImageRun(img, tr, oth, full, res, thr, scan=scan)
    if neg is not None:
        attach_reliability(res, neg, thr, near_threshold=None if chosen is None or
                           chosen.near is None else chosen.near[1])
        res.timings["reliability_s"] = t3 - t2
    return run


def _split_inputs(truth: str | os.PathLike, compare: Mapping[str, str | os.PathLike],
                  imgs: list[FitsImage]) -> tuple[list, dict[str, list], dict[str, int]]:
    """Several images: the truth's and each comparison catalogue's rows of each image
    (:func:`.mosaic.split_catalogue`; a true source on no image's data is not in the field,
    another finder's row off every image still counts, from the nearest image), and how
    many comparison rows had no sky position."""
    tparts, _ = split_catalogue(read_catalogue(truth), imgs,
                                f"truth catalogue {os.fspath(truth)}")
    oparts, unassigned = {}, {}
    for k, path in compare.items():
        oparts[k], unassigned[k] = split_catalogue(
            read_catalogue(path), imgs, f"comparison catalogue {os.fspath(path)}",
            data_only=False)
    return tparts, oparts, unassigned


def _merge_runs(runs: list[_ImageRun], names: list[str], beam: float,
                unassigned: Mapping[str, int]) -> tuple[Any, Any, Truth, dict[str, Any]]:
    """Several images' runs as one: the catalogue and the low-threshold detections each
    kept once (:func:`.mosaic.keep_nearest_centre`, as ``predict`` merges them), the truth
    and comparison rows joined."""
    def merged(tables):
        keep = keep_nearest_centre([(np.asarray(t["ra"]), np.asarray(t["dec"]))
                                    for t in tables], [r.img for r in runs], beam)
        return merge_tables(tables, keep, names)

    det, full = merged([r.res.table for r in runs]), merged([r.full for r in runs])
    truth = merge_truths([r.truth for r in runs], names)
    others = {k: merge_detections([r.others[k] for r in runs], names, n)
              for k, n in unassigned.items()}
    return det, full, truth, others


def _scored_column(truth_table: Any, class_column: str | None, recorded: Any) -> str | None:
    """The truth's column a model's classes are scored against: ``class_column`` when
    given (ValueError when the truth lacks it), else the column the model recorded
    (``recorded``, its training's), when the truth has it; None otherwise."""
    if class_column:
        return truth_class_column(truth_table, class_column)
    return find_column(truth_table, recorded) if isinstance(recorded, str) else None


def validate(
    image: str | os.PathLike | Sequence[str | os.PathLike],
    model: str | os.PathLike | LoadedModel,
    truth: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    obj_threshold: float | None = None,
    match_factor: float = 1.0,
    min_truth_snr: float = 5.0,
    snr_bins=SNR_BINS,
    sdc1_freq: int = 560,
    sdc1_area: str = "all",
    plots: bool = True,
    progress: bool = True,
    hdu: int | str | None = None,
    plane: int | None = None,
    log=print,
    mixed_precision: str = "off",
    compare: Mapping[str, str | os.PathLike] | None = None,
    reliability: bool = False,
    target_reliability: float | None = None,
    max_peaks: int = MAX_PEAKS,
    primary_beam: Any = None,
    pb_min: float | None = None,
    compare_apparent: bool = False,
    bright: BrightRule | None = None,
    adaptive_rms: AdaptiveRms | None = None,
    class_column: str | None = None,
    classifier: Any = None,
) -> ValReport:
    """Detect, cross-match with ``truth``, score and write the report folder ``out_dir``
    (created if needed).  Inputs are checked before the detector runs; the folder and its
    files are written only once everything is computed, each file atomically.
    ``mixed_precision``: CIANNA's mode for the detector's passes and ``plane`` a cube's
    plane taken as the image (see :func:`.pipeline.find_sources`).  ``compare``: name ->
    catalogue of another finder (PyBDSF...), scored beside the detector with the same truth
    and rules (:mod:`.other_finder`): a side-by-side table in the report, ``compare`` in
    ``scores.json``, a line each in the completeness figure.  ``reliability``: the
    inverted-image test of :func:`.pipeline.find_sources` too (the catalogue's
    ``reliability`` column), its estimate checked against the truth per SNR bin (the
    report's table, ``reliability`` in ``scores.json``, ``reliability.png``; several
    images: their counts summed).  ``target_reliability``: each image's objectness
    threshold chosen by that test, as :func:`.pipeline.find_sources` chooses it, and the
    scan's estimates beside the truth's precision at each threshold (one image).
    ``max_peaks``: close sources boxed once split into that many at most (1: none), as
    :func:`.pipeline.find_sources`; ``primary_beam`` and ``pb_min`` too (an image that is
    not primary-beam corrected, a truth of true fluxes: its SNRs from the fluxes seen
    through the beam, its rows below ``pb_min`` left out as the catalogue's; the
    ``compare`` catalogues' too, their fluxes divided by the beam's response with
    ``compare_apparent``, measured on the image as it is: :func:`.other_finder.through_beam`).
    ``bright``: the rule of the ``near_bright`` flag, ``adaptive_rms`` the noise map's
    rule around bright sources, as :func:`.pipeline.find_sources`.  A detector that
    classifies (``det_class``) is scored against the truth's ``class_column`` (default: the
    column it was trained with, when the truth has it; :mod:`.detector_classes`): a
    confusion matrix in the report, ``classes`` in ``scores.json``, ``classes.png``; a
    detector that does not classify, with ``class_column`` (and no ``classifier``), the
    share of each true class's sources it detected (``detected_by_class``).
    ``classifier``: a morphology classifier (its card's path or loaded) that classifies the
    catalogue's rows (``morph_class``, as ``predict --classifier``), scored against the
    truth's ``class_column`` the same way (default: its card's label column, when the
    truth has it; ``morph_classes``, ``morph_classes.png``).

    Several images (a survey's overlapping mosaics, 2D with a WCS): the catalogue is
    ``predict``'s merged one (:mod:`.mosaic`: each source from the image whose centre is
    nearest), each true source (and each row of a ``compare`` catalogue) belongs to the
    image whose centre is nearest among those with data at its position, and everything
    is matched on the sky; the truth and other catalogues need ``ra`` and ``dec``.  One
    field overlay (and residual overlay) per image."""
    paths = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    if not paths:
        raise ValueError("image: give at least one image")
    as_bounded_float(match_factor, "match_factor")
    as_bounded_float(min_truth_snr, "min_truth_snr", strict=False)
    target = checked_target_reliability(target_reliability, obj_threshold)
    as_int(max_peaks, "max_peaks", minimum=1)
    pb = finding_beam(primary_beam, pb_min)
    if compare_apparent and not (pb and compare):
        raise ValueError("compare_apparent: for compare catalogues scored through a "
                         "primary_beam")
    mdl = model if isinstance(model, LoadedModel) else load_model(model)
    predict_fn = make_predict_fn(mdl, mixed_precision)  # an unknown mode fails here
    thr = float(np.max(mdl.card.obj_threshold if obj_threshold is None else checked_threshold(
        obj_threshold, int(mdl.net.yolo.nb_box))))
    if isinstance(classifier, (str, os.PathLike)):
        from .morphology import load_classifier

        classifier = load_classifier(classifier)
    trained_column = (mdl.card.notes or {}).get("class_column")
    check_folder(out_dir)
    compare = {str(k): v for k, v in (compare or {}).items()}
    names = {"truth": os.fspath(truth), **{k: os.fspath(v) for k, v in compare.items()}}
    low = min(0.05, thr)
    with ExitStack() as stack:
        imgs = [stack.enter_context(open_image(p, hdu, plane=plane)) for p in paths]
        several = len(imgs) > 1
        for im in imgs if pb else []:  # a cube, a model without WCS: refused before the work
            pb_response(pb["primary_beam"], im, np.zeros(1), np.zeros(1),
                        np.zeros(1) if im.ndim == 3 else None)
        for im in imgs if adaptive_rms is not None else []:  # refused before the work
            adaptive_beam(adaptive_rms, im)
        if several and any(im.ndim == 3 for im in imgs):
            raise ValueError("image: several cubes: val scores one cube at a time")
        if classifier is not None and any(im.ndim == 3 for im in imgs):
            raise ValueError("classifier: the morphology classifier reads 2D images")
        if several:
            check_images(imgs)
            tparts, oparts, unassigned = _split_inputs(truth, compare, imgs)
        inames = image_names(paths)
        runs = []
        for i, img in enumerate(imgs):
            if progress and several:
                print(f"image {i + 1}/{len(imgs)}: {img.path}", file=sys.stderr)
            runs.append(_run_image(
                img, mdl, tparts[i] if several else truth,
                {k: oparts[k][i] for k in compare} if several else compare, thr=thr, low=low,
                predict_fn=predict_fn, progress=progress, names=names,
                reliability=reliability, target=target, max_peaks=max_peaks, pb=pb,
                compare_apparent=compare_apparent, bright=bright, adaptive_rms=adaptive_rms,
                classifier=classifier, class_column=class_column))
        if target is not None:  # the operating point: the lowest chosen threshold
            thr = min(r.thr for r in runs)
        beam = largest_beam(imgs)
        pixel_scale = None if several else imgs[0].pixel_scale
        if several:
            det, full, tr, others = _merge_runs(runs, inames, beam, unassigned)
        else:
            det, full, tr, others = runs[0].res.table, runs[0].full, runs[0].truth, \
                runs[0].others
        timings = summed_timings([r.res.timings for r in runs])
        obj = np.asarray(full["objectness"])
        m = match_catalogues(det, tr, beam, factor=match_factor, pixel_scale=pixel_scale)
        sc = scores_for(det, tr, m, snr_bins=snr_bins, min_truth_snr=min_truth_snr)
        counted = tr.snr >= min_truth_snr
        reports = []  # the detector's classes, a classifier's
        if mdl.class_names and DET_CLASS_COLUMN in det.colnames:
            column = _scored_column(tr.table, class_column, trained_column)
            if column is not None:
                reports.append(class_report(det, tr.table, m, column, mdl.class_names,
                                            counted=counted))
        morph_column = None  # the classifier's: --class-column, else its label column
        if classifier is not None:
            morph_column = _scored_column(tr.table, class_column,
                                          classifier.card.notes.get("label_column"))
        if morph_column is not None:
            reports.append(class_report(det, tr.table, m, morph_column,
                                        classifier.card.classes, predicted=MORPH_CLASS,
                                        counted=counted))
        by_class = None  # nothing classifies: the detection's completeness per true class
        if class_column and not mdl.class_names and classifier is None:
            by_class = detection_by_class(tr.table, m, truth_class_column(tr.table, class_column),
                                          counted)
        thresholds = np.round(np.arange(low, 0.951, 0.05), 3)
        pr = pr_curve(obj, thresholds, lambda sel: match_catalogues(
            full, tr, beam, factor=match_factor, pixel_scale=pixel_scale, select=sel),
            int(counted.sum()), counted)
        rel = _reliability(runs, det, m) if reliability or target is not None else None
        sdc1 = _sdc1_for(det, tr, sdc1_freq, sdc1_area)  # None for a cube (no SDC1 truth)
        sdc2 = None
        if tr.z is not None:
            sc.extra["lines"] = line_summary(det, tr, m)
            sdc2 = _sdc2_for(det, tr)
        where = f"image {os.fspath(paths[0])}" if not several else (
            f"{len(paths)} images {', '.join(map(os.fspath, paths))} scored as one field "
            "(each source, detected or true, from the image whose centre is nearest among "
            "those with data at its position)")
        chosen = "" if target is None else (
            f" (chosen for an estimated reliability >= {target:g})" if not several else
            " (the lowest chosen; each image's for an estimated reliability >= "
            f"{target:g}: {', '.join(f'{r.thr:g}' for r in runs)})")
        text = (f"{where}, model {mdl.card.path}, objectness >= {thr:g}{chosen}\n"
                + ("".join(f"  {n}: {d['n_detected']} detected, {d['n_kept']} kept; "
                           f"{int(np.count_nonzero(tr.image == i))} true sources\n"
                           for i, (n, d) in enumerate(zip(inames, det.meta["images"])))
                   if several else "")
                + f"{timings['tiles']} tiles at {timings['tiles_per_s']:.1f} tiles/s; "
                f"noise {timings['noise_s']:.1f} s, detection {timings['detect_s']:.1f} s,"
                f" measurement {timings['measure_s']:.1f} s\n"
                f"overall recall counts the {sc.n_truth} true sources of SNR >= {min_truth_snr:g} "
                f"(of {len(tr.x)} in the {'images' if several else 'image'}; true SNR from "
                f"{tr.snr_from}); precision counts every detection\n"
                + flag_counts(det) + format_scores(sc, sdc1) + format_sdc2(sdc2)
                + "".join("\n" + format_class_report(r) for r in reports)
                + ("" if by_class is None else "\n" + format_detection_by_class(by_class))
                + ("\nmorph_class not scored: give --class-column, the truth's column of "
                   "the classes\n" if classifier is not None and morph_column is None else "")
                + ("" if rel is None else "\n" + format_reliability(*rel)
                   + "".join(format_zones(r.res.table) for r in runs))
                + "".join("\n" + (f"{n}: " if several else "")
                          + format_scan(r.scan, r.thr, target, None if several else
                                        _scan_precision(r.scan, pr))
                          for n, r in zip(inames, runs) if r.scan is not None))
        ids = np.asarray(truth_ids(tr))
        det["match_id"] = (np.where(m.det_to_truth >= 0, ids[np.maximum(m.det_to_truth, 0)], -1)
                           if ids.size else np.full(len(det), -1))  # an empty truth: no match
        tt = tr.table.copy()
        tt["snr_used"] = tr.snr
        tt["det_id"] = np.where(m.truth_to_det >= 0, m.truth_to_det + 1, -1)
        files: dict[str, bytes | Any] = {}
        summary = {"scores": sc.summary(), "obj_threshold": thr, "truth_snr_from": tr.snr_from,
                   "by_snr": {"edges": sc.by_snr.edges, "recall": sc.by_snr.recall,
                              "precision": sc.by_snr.precision, "f1": sc.by_snr.f1,
                              "n_true": sc.by_snr.n_truth, "n_det": sc.by_snr.n_det},
                   "pr_curve": pr, "timings": timings,
                   "sdc1": _sdc1_summary(sdc1, sdc1_freq, sdc1_area),
                   "sdc2": None if sdc2 is None else dict(sdc2_summary(sdc2))}
        for r in (*reports, *([by_class] if by_class is not None else [])):
            summary[r.key] = r.summary()
        if rel is not None:
            summary["reliability"] = {**rel[0].summary(), "measured": rel[1]}
        if target is not None:
            summary["reliability"].update(target=target, thresholds=[r.thr for r in runs],
                                          threshold_scans=[r.scan.summary() for r in runs])
        if several:
            summary["images"] = [{**d, "n_truth": int(np.count_nonzero(tr.image == i))}
                                 for i, d in enumerate(det.meta["images"])]
        curves = {"cianna_jax": sc.by_snr}
        if others:
            extra, summary["compare"], curves = _compared(
                others, tr, beam, pixel_scale, ours=(f"cianna_jax {thr:g}", sc, sdc1, sdc2),
                match_factor=match_factor, min_truth_snr=min_truth_snr, snr_bins=snr_bins,
                sdc1_freq=sdc1_freq, sdc1_area=sdc1_area)
            text += extra
        files["scores.json"] = (json.dumps(_jsonable(summary), indent=1) + "\n").encode()
        files["report.txt"] = (text + "\n").encode()
        figs = {}
        if plots:
            try:
                figs = _figures(runs, inames, det, tr, m, curves, pr, thr, rel, target)
                figs.update({f"{r.key}.png": class_figure(r) for r in reports})
                if by_class is not None:
                    figs[f"{by_class.key}.png"] = detection_by_class_figure(by_class)
            except MissingExtraError as err:
                log(f"no plots: {err}")
    written = []
    os.makedirs(out_dir, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        write_catalogue(det, os.path.join(out_dir, "catalogue.ecsv"))
        write_catalogue(tt, os.path.join(out_dir, "truth_matched.ecsv"))
        write_catalogue(_bins_table(sc.by_snr, None), os.path.join(out_dir, "scores_by_snr.ecsv"))
        written += ["catalogue.ecsv", "truth_matched.ecsv", "scores_by_snr.ecsv"]
        if sc.by_flux is not None:
            write_catalogue(_bins_table(sc.by_flux, "Jy" if tr.z is None else "Jy Hz"),
                            os.path.join(out_dir, "scores_by_flux.ecsv"))
            written.append("scores_by_flux.ecsv")
    for name, data in files.items():
        with atomic_write(os.path.join(out_dir, name)) as fh:
            fh.write(data)
        written.append(name)
    from .plots import save_figure

    for name, fig in figs.items():
        save_figure(fig, os.path.join(out_dir, name))
        written.append(name)
    return ValReport(det, tr, m, sc, pr, sdc1, text, written)


def _reliability(runs: list[_ImageRun], det: Any, m: Match
                 ) -> tuple[ReliabilityEstimate, np.ndarray]:
    """The inverted-image estimate of the catalogue ``det`` (its images' counts summed)
    and the reliability measured with the truth (matched detections), per SNR bin."""
    est = summed_estimate([r.res.reliability for r in runs])
    return est, measured_reliability(np.asarray(det["snr"]), m.det_to_truth >= 0, est.edges)


def _scan_precision(scan: ThresholdScan, pr: dict) -> np.ndarray:
    """The truth's precision (``pr``, :func:`.scores.pr_curve`) at each threshold of
    ``scan`` (NaN where the curve has none)."""
    at = {round(float(t), 6): p for t, p in zip(pr["threshold"], pr["precision"])}
    return np.array([at.get(round(float(t), 6), np.nan) for t in scan.thresholds])


def _sdc1_for(det: Any, tr: Truth, freq: int, area: str) -> Sdc1Score | None:
    """The SDC1 score of a detection table (deconvolved sizes where it has them), or None
    when the truth or the detections lack what it needs (sky positions, sizes)."""
    if tr.sdc1 is None or "ra" not in det.colnames or "bmaj" not in det.colnames or not len(det):
        return None
    cols = det.colnames
    sub = sdc1_columns(np.asarray(det["id"]), np.asarray(det["ra"]), np.asarray(det["dec"]),
                       np.asarray(det["flux"]),
                       np.asarray(det["bmaj_deconv" if "bmaj_deconv" in cols else "bmaj"]),
                       np.asarray(det["bmin_deconv" if "bmin_deconv" in cols else "bmin"]),
                       np.asarray(det["pa"]) if "pa" in cols else np.zeros(len(det)),
                       cls=sdc1_classes(det))
    good = np.all([np.isfinite(v) for v in sub.values()], axis=0)
    return sdc1_score({k: v[good] for k, v in sub.items()}, tr.sdc1, freq, area=area)


def _sdc2_for(det: Any, tr: Truth, *, other: bool = False) -> Sdc2Score | None:
    """The SDC2 score of a cube's detection table against its truth, or None where either
    cannot give SDC2's columns (no frequencies, no beam; a truth without line fluxes or
    widths; a truth without SDC2's hi_size and i: its sizes would be the convolved ones; a
    cube outside SDC2's band)."""
    if not all(c in [n.lower() for n in tr.table.colnames] for c in ("hi_size", "i")):
        return None
    try:
        truth = sdc2_columns(tr.table)
        sub = _other_sdc2(det) if other else sdc2_columns(det)
    except CatalogueError:
        return None
    f = truth["central_freq"]
    if not np.any((f > BAND_HZ[0]) & (f < BAND_HZ[1])):
        return None  # not SDC2's band: its scorer would match nothing
    return sdc2_score(sub, truth)


def _other_sdc2(det: Any) -> dict[str, np.ndarray]:
    """Another finder's SDC2 columns, as :func:`.other_finder.load_detections` keeps them."""
    if "sdc2_ra" not in det.colnames:
        raise CatalogueError("no SDC2 columns")
    return {"id": np.asarray(det["id"], np.float64),
            **{c[5:]: np.asarray(det[c], np.float64) for c in det.colnames
               if c.startswith("sdc2_")}}


def _sdc1_summary(sdc1: Sdc1Score | None, freq: int, area: str) -> dict | None:
    return None if sdc1 is None else {
        "value": sdc1.value, "n_det": sdc1.n_det, "n_match": sdc1.n_match, "n_bad": sdc1.n_bad,
        "n_false": sdc1.n_false, "acc_pc": sdc1.acc_pc, "freq": freq, "area": area}


def _compared(others: dict[str, Any], tr: Truth, beam: float, pixel_scale: float | None, *,
              ours: tuple[str, Scores, Sdc1Score | None, Sdc2Score | None],
              match_factor: float,
              min_truth_snr: float, snr_bins, sdc1_freq: int, sdc1_area: str
              ) -> tuple[str, dict, dict[str, BinnedScores]]:
    """Score the other finders' detection tables like ours: (report text, scores.json
    entry, SNR curves for the figure)."""
    name, sc, sdc1, sdc2 = ours
    scores, sdc1s, sdc2s, entry = {name: sc}, {name: sdc1}, {name: sdc2}, {}
    for other, det in others.items():
        m = match_catalogues(det, tr, beam, factor=match_factor, pixel_scale=pixel_scale)
        scores[other] = scores_for(det, tr, m, snr_bins=snr_bins, min_truth_snr=min_truth_snr)
        if tr.z is not None:
            scores[other].extra["lines"] = line_summary(det, tr, m)
        sdc1s[other] = _sdc1_for(det, tr, sdc1_freq, sdc1_area)
        sdc2s[other] = _sdc2_for(det, tr, other=True) if tr.z is not None else None
        entry[other] = {"catalogue": det.meta["source"], "snr_from": det.meta["snr_from"],
                        "n_unplaced": det.meta["n_unplaced"],
                        **{k: det.meta[k] for k in ("beam", "n_outside_beam") if k in det.meta}, "scores": scores[other].summary(),
                        "sdc1": _sdc1_summary(sdc1s[other], sdc1_freq, sdc1_area),
                        "sdc2": None if sdc2s[other] is None
                        else dict(sdc2_summary(sdc2s[other]))}
    notes = "".join(f"\n{o}: {d.meta['source']} ({len(d)} detections; SNR from "
                    f"{d.meta['snr_from']}"
                    + (f"; {d.meta['n_unplaced']} rows without a position left out"
                       if d.meta["n_unplaced"] else "")
                    + (f"; {d.meta['beam']}, {d.meta['n_outside_beam']} rows outside the "
                       "beam's cut left out" if "beam" in d.meta else "") + ")"
                    for o, d in others.items())
    text = ("\n\nThe same truth, matcher and scores for the other catalogues:" + notes + "\n\n"
            + format_side_by_side(scores, sdc1s if any(sdc1s.values()) else None,
                                  sdc2=sdc2s if any(sdc2s.values()) else None))
    return text, entry, {k: v.by_snr for k, v in scores.items()}


def _figure_suffixes(names: list[str]) -> list[str]:
    """'' for one image; else each image's file stem (made unique), for its overlays."""
    if len(names) == 1:
        return [""]
    stems = [os.path.splitext(os.path.basename(n))[0] for n in names]
    return [f"_{s}" if stems.count(s) == 1 else f"_{s}_{i + 1}" for i, s in enumerate(stems)]


def _figures(runs: list[_ImageRun], names: list[str], det: Any, tr: Truth, m: Match,
             curves: dict[str, BinnedScores], pr: dict, thr: float,
             rel: tuple[ReliabilityEstimate, np.ndarray] | None = None,
             target: float | None = None) -> dict[str, Any]:
    """The report's figures: per image, its field and residual overlays with the
    detections and true sources it holds (all of them for one image), then the scores'
    (``rel``: the reliability test's estimate and the truth's reliability per bin; with a
    ``target`` reliability and one image, its threshold scan beside the truth's precision)."""
    from .plots import (
        completeness_reliability,
        field_overlay,
        flux_recovery,
        hi_mass_redshift,
        line_recovery,
        pr_curve_plot,
        reliability_plot,
    )
    from .residual import residual_view

    figs = {}
    several = len(runs) > 1
    for i, (run, suffix) in enumerate(zip(runs, _figure_suffixes(names))):
        img, res = run.img, run.res
        drows = np.asarray(det["image"]) == names[i] if several else np.ones(len(det), bool)
        trows = tr.image == i if several else np.ones(len(tr.x), bool)
        H, W = img.shape[-2:]
        step = max(1, int(math.ceil(max(H, W) / 2048)))
        shown = trows & (tr.snr >= 3.0)  # fainter true sources are not expected to be found
        view = img.read((slice(None, None, step), slice(None, None, step))) if img.ndim == 2 \
            else np.nanmax(img.read((slice(None), slice(None, None, step),
                                     slice(None, None, step))), axis=0)
        unit = img.bunit or "Jy/beam"
        truth_xy = (tr.x[shown], tr.y[shown])
        truth_matched = (m.truth_to_det >= 0)[shown]
        held = f"{os.path.basename(img.path)}{'' if img.ndim == 2 else ' (maximum over the channels)'}: {int(drows.sum())} detections"
        if several:
            held += " of the merged catalogue"
        figs[f"field_overlay{suffix}.png"] = field_overlay(
            view, wcs=img.wcs, step=step, unit=unit, rms=res.noise.median_rms,
            truth_xy=truth_xy, truth_matched=truth_matched,
            det_xy=(np.asarray(det["x"])[drows], np.asarray(det["y"])[drows]),
            det_matched=(m.det_to_truth >= 0)[drows],
            title=f"{held} (objectness >= {thr:g}), {int(shown.sum())} true sources of "
                  "SNR >= 3 (circles)")
        if img.ndim == 2:
            fitted = res.measurements
            figs[f"residual_overlay{suffix}.png"] = field_overlay(
                residual_view(img, fitted, step), wcs=img.wcs, step=step, unit=unit,
                rms=res.noise.median_rms, truth_xy=truth_xy, truth_matched=truth_matched,
                title=f"residual: {os.path.basename(img.path)} minus the "
                      f"{int(np.count_nonzero(fitted.fit_ok))} fitted Gaussians; circles: true "
                      "sources of SNR >= 3")
    figs["completeness_reliability.png"] = completeness_reliability(curves)
    figs["pr_curve.png"] = pr_curve_plot(pr, operating=thr)
    if rel is not None:
        scan = runs[0].scan if len(runs) == 1 else None
        figs["reliability.png"] = reliability_plot(
            *rel, scan=scan, chosen=runs[0].thr if scan else None, target=target,
            scan_measured=None if scan is None else _scan_precision(scan, pr))
    if m.n:
        figs["flux_recovery.png"] = flux_recovery(
            tr.flux[m.truth], np.asarray(det[flux_column(det, tr)])[m.det],
            unit="Jy" if tr.z is None else "Jy Hz")
        if tr.z is not None:
            figs["line_recovery.png"] = line_recovery(
                tr.w20[m.truth], np.asarray(det["w20_chan"], np.float64)[m.det],
                np.asarray(det["z"], np.float64)[m.det] - tr.z[m.truth], tr.snr[m.truth])
    axis = runs[0].img.frequency_axis if tr.z is not None else None
    if axis is not None and is_hi(axis) and "log_mhi" in det.colnames:
        true_z = axis.rest_hz / axis.frequency(tr.z) - 1.0
        false = m.det_to_truth < 0
        figs["hi_mass_redshift.png"] = hi_mass_redshift(
            true_z, hi_mass(tr.flux, true_z), m.truth_to_det >= 0,
            np.asarray(det["redshift"], np.float64)[false],
            np.asarray(det["log_mhi"], np.float64)[false],
            title=f"HI mass against redshift: {int(np.count_nonzero(m.truth_to_det >= 0))} of "
                  f"{len(true_z)} true lines found (objectness >= {thr:g})")
    return figs
