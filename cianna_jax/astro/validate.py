"""``cianna-jax val``: detect on an image, cross-match with a truth catalogue, score, plot.

:func:`load_truth` reads a truth catalogue (any format of :mod:`.catalogue`, SDC1 text
included) and computes what it lacks: pixel or sky positions through the image WCS and,
without an ``snr`` column, the true peak SNR from the flux, size and local noise.
:func:`validate` runs the detector once at a low objectness threshold (for the
precision-recall curve), keeps the model's threshold for the catalogue, and writes the
report folder: ``catalogue.ecsv``, ``truth_matched.ecsv``, ``scores.json``,
``scores_by_snr.ecsv``, ``scores_by_flux.ecsv``, ``report.txt`` and the PNG plots.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from ..io.atomic import atomic_write, check_folder
from ._deps import MissingExtraError
from .catalogue import (
    SDC1_COLUMNS,
    column_values,
    find_column,
    make_table,
    read_catalogue,
    warn_unitless_sizes,
    write_catalogue,
)
from .crossmatch import Match, crossmatch_pixels, crossmatch_sky, match_radius
from .fits_image import FitsImage, open_image
from .model_card import LoadedModel, load_model
from .noise import NoiseMap
from .other_finder import load_detections
from .pipeline import measure_detections
from .placement import place_catalogue
from .predict import checked_threshold, detect, make_predict_fn
from .scores import SNR_BINS, BinnedScores, Scores, pr_curve, score_catalogue
from .sdc1 import Sdc1Score, sdc1_score

__all__ = ["Truth", "load_truth", "match_catalogues", "scores_for", "sdc1_columns", "validate",
           "format_scores", "format_side_by_side", "ValReport"]


@dataclass(frozen=True)
class Truth:
    """A truth catalogue in the image frame: ``x, y`` pixels, ``ra, dec`` (None without a
    WCS), ``flux`` (Jy), ``snr``, sizes ``bmaj, bmin`` (arcsec, beam-convolved; None if
    absent), ``pa`` (deg or None), ``table`` (the rows kept: inside the image, on finite
    pixels), ``sdc1`` (SDC1 columns when the catalogue could give them) and ``snr_from``
    (where ``snr`` comes from, for the report)."""

    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray | None
    dec: np.ndarray | None
    flux: np.ndarray
    snr: np.ndarray
    bmaj: np.ndarray | None
    bmin: np.ndarray | None
    pa: np.ndarray | None
    table: Any
    sdc1: dict[str, np.ndarray] | None
    snr_from: str = "the catalogue's snr column"


def load_truth(path: str | os.PathLike, image: FitsImage, noise: NoiseMap) -> Truth:
    """Read a truth catalogue and put it in the frame of ``image`` (see the module
    docstring).  CatalogueError names any missing column."""
    t = read_catalogue(path)
    what = f"truth catalogue {os.fspath(path)}"
    x, y, ra, dec, flux = place_catalogue(t, image, what)
    H, W = image.shape[-2:]
    placed = np.isfinite(x) & np.isfinite(y)  # a row without a position cannot be matched
    ix, iy = (np.floor(np.where(placed, v, -1.0) + 0.5).astype(np.int64) for v in (x, y))
    inside = placed & (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    ok = inside.copy()
    if inside.any() and image.ndim == 2:
        ok[inside] = np.isfinite(image.read((iy[inside], ix[inside])))
    sdc1_like = "b_maj" in [c.lower() for c in t.colnames]
    bmaj, bmin, pa = (column_values(t, c, what) for c in ("bmaj", "bmin", "pa"))
    if bmaj is not None:  # the major axis tells (one warning, not one per axis)
        warn_unitless_sizes(t[find_column(t, "bmaj")], bmaj, what)
    beam = image.beam.bmaj if image.beam is not None else None
    if bmaj is not None and bmin is not None and beam is not None:
        if sdc1_like:  # SDC1 sizes are intrinsic: add the restoring beam
            bmaj, bmin = np.hypot(bmaj, beam), np.hypot(bmin, image.beam.bmin)
        else:
            bmaj, bmin = np.maximum(bmaj, beam), np.maximum(bmin, image.beam.bmin)
    snr = column_values(t, "snr", what)
    snr_from = "the catalogue's snr column"
    if snr is None:
        rms = noise.at(y, x) * image.unit_scale
        if bmaj is not None and bmin is not None and beam is not None:
            peak = flux * (image.beam.bmaj * image.beam.bmin) / (bmaj * bmin)
            snr_from = "flux, sizes and the local noise"
        else:
            peak = flux  # point sources: peak (Jy/beam) = flux (Jy)
            snr_from = ("flux and the local noise, as point sources (no sizes"
                        f"{'' if beam is not None else ' and no beam'}: extended ones too high)")
        snr = peak / rms
    sdc1 = None
    names = {c.lower(): c for c in t.colnames}
    if all(c in names for c in SDC1_COLUMNS):
        sdc1 = {c: np.asarray(t[names[c]], np.float64)[ok] for c in SDC1_COLUMNS}
    elif ra is not None:
        zero = np.zeros(len(t))

        def first(*cols):
            return next((c for c in cols if c is not None), zero)[ok]

        sdc1 = sdc1_columns(np.arange(1, ok.sum() + 1), ra[ok], dec[ok], flux[ok],
                            first(column_values(t, "bmaj_deconv", what), bmaj),
                            first(column_values(t, "bmin_deconv", what), bmin),
                            first(pa))

    def sel(v):
        return None if v is None else v[ok]

    return Truth(x=x[ok], y=y[ok], ra=sel(ra), dec=sel(dec), flux=flux[ok], snr=snr[ok],
                 bmaj=sel(bmaj), bmin=sel(bmin), pa=sel(pa), table=t[ok], sdc1=sdc1,
                 snr_from=snr_from)


def sdc1_columns(ids, ra, dec, flux, bmaj, bmin, pa, size: int = 2, cls: int = 3) -> dict:
    """SDC1 columns (core = centroid = the position, core_frac 0) from plain arrays."""
    n = len(ra)
    return {"id": np.asarray(ids, np.float64), "ra_core": np.asarray(ra), "dec_core": np.asarray(dec),
            "ra_cent": np.asarray(ra), "dec_cent": np.asarray(dec), "flux": np.asarray(flux),
            "core_frac": np.zeros(n), "b_maj": np.asarray(bmaj), "b_min": np.asarray(bmin),
            "pa": np.asarray(pa), "size": np.full(n, float(size)), "class": np.full(n, float(cls))}


def match_catalogues(det: Any, truth: Truth, beam_fwhm: float, *, factor: float = 1.0,
                     pixel_scale: float | None = None, select: np.ndarray | None = None) -> Match:
    """One-to-one match of detection table ``det`` (rows ``select``) with ``truth``: on the
    sky when both have positions there (``beam_fwhm`` arcsec), else in pixels (``beam_fwhm``
    converted with ``pixel_scale``).  Radius: ``factor * max(beam, true bmaj)``."""
    idx = np.arange(len(det)) if select is None else np.asarray(select)
    size = truth.bmaj
    if truth.ra is not None and "ra" in det.colnames:
        r = match_radius(beam_fwhm, size, factor=factor)
        m = crossmatch_sky(np.asarray(det["ra"])[idx], np.asarray(det["dec"])[idx], truth.ra,
                           truth.dec, np.broadcast_to(r, truth.ra.shape))
    else:
        ps = pixel_scale or 1.0
        r = match_radius(beam_fwhm / ps, None if size is None else size / ps, factor=factor)
        m = crossmatch_pixels(np.asarray(det["x"])[idx], np.asarray(det["y"])[idx], truth.x,
                              truth.y, np.broadcast_to(r, truth.x.shape))
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
    flux_err = column_values(det, "flux_err") if "flux_err" in det.colnames else None
    sizes = None
    if truth.bmaj is not None and "bmaj" in det.colnames:
        sizes = ((np.asarray(det["bmaj"]), np.asarray(det["bmin"])), (truth.bmaj, truth.bmin))
    return score_catalogue(
        match, truth_snr=truth.snr, det_snr=np.asarray(det["snr"]), truth_flux=truth.flux,
        det_flux=np.asarray(det["flux"]), det_pos=pos, truth_pos=tpos, sky=sky,
        det_size=sizes[0] if sizes else None, truth_size=sizes[1] if sizes else None,
        det_pa=np.asarray(det["pa"]) if "pa" in det.colnames else None, truth_pa=truth.pa,
        snr_bins=snr_bins, flux_bins=flux_bins, min_truth_snr=min_truth_snr,
        det_pos_err=pos_err, det_flux_err=flux_err)


def _fmt(v: float, spec: str = ".3f") -> str:
    return "  nan" if v is None or not math.isfinite(v) else format(v, spec)


def _pull_text(pulls: dict) -> str:
    """The pull scatters as 'ra/dec/flux' (or 'x/y/flux'); '-' without errors."""
    if not pulls:
        return "-"
    keys = [k for k in pulls if k not in ("n", "flux")] + ["flux"]
    return "/".join(_fmt(pulls.get(k, float("nan")), ".2f") for k in keys)


def format_side_by_side(results: dict[str, Scores], sdc1: dict[str, Sdc1Score | None] | None = None,
                        seconds: dict[str, float] | None = None) -> str:
    """A text table comparing several finders: overall precision/recall/F1, the same per
    SNR bin, SDC1 score and run time."""
    names = list(results)
    w = max(12, *(len(n) + 2 for n in names))
    head = f"{'':<24}" + "".join(f"{n:>{w}}" for n in names)
    lines = [head, "-" * len(head)]

    def row(label, vals):
        lines.append(f"{label:<24}" + "".join(f"{v:>{w}}" for v in vals))

    row("detections", [str(results[n].n_det) for n in names])
    row("true sources (scored)", [str(results[n].n_truth) for n in names])
    for k in ("precision", "recall", "f1"):
        row(f"{k} (overall)", [_fmt(getattr(results[n], k)) for n in names])
    first = results[names[0]].by_snr
    for i, lab in enumerate(first.labels()):
        row(f"SNR {lab}: n_true", [str(int(results[n].by_snr.n_truth[i])) for n in names])
        row("   precision/recall",
            [f"{_fmt(results[n].by_snr.precision[i], '.2f')}/{_fmt(results[n].by_snr.recall[i], '.2f')}"
             for n in names])
        row("   F1", [_fmt(results[n].by_snr.f1[i]) for n in names])
    row("median flux ratio", [_fmt(results[n].flux_ratio) for n in names])
    row(f"median separation ({results[names[0]].unit})",
        [_fmt(results[n].median_separation) for n in names])
    pulls = {n: results[n].extra.get("error_pulls") or {} for n in names}
    if any(pulls.values()):
        row("error pulls (pos/flux)", [_pull_text(p) for p in pulls.values()])
    if sdc1:
        row("SDC1 score", [_fmt(sdc1[n].value, ".1f") if sdc1.get(n) else "-" for n in names])
        row("SDC1 n_match", [str(sdc1[n].n_match) if sdc1.get(n) else "-" for n in names])
    if seconds:
        row("run time (s)", [_fmt(seconds.get(n, float("nan")), ".1f") for n in names])
    return "\n".join(lines)


def format_scores(s: Scores, sdc1: Sdc1Score | None = None) -> str:
    """A readable multi-line report of one finder's scores."""
    u = s.unit
    out = [f"detections {s.n_det}: {s.n_tp} matched to a true source, {s.n_fp} false; "
           f"{s.n_truth} true sources scored, {s.n_fn} of them missed",
           f"precision (reliability) {_fmt(s.precision)}  recall (completeness) {_fmt(s.recall)}  "
           f"F1 {_fmt(s.f1)}",
           f"matched: median separation {_fmt(s.median_separation)} {u}, median offset "
           f"({_fmt(s.median_offset[0])}, {_fmt(s.median_offset[1])}) {u}",
           f"         flux ratio (measured/true) median {_fmt(s.flux_ratio)}, robust scatter "
           f"{_fmt(s.flux_ratio_scatter)}",
           f"         size ratio bmaj {_fmt(s.bmaj_ratio)}, bmin {_fmt(s.bmin_ratio)}; median PA "
           f"error {_fmt(s.pa_error, '.1f')} deg (over the {s.extra.get('n_elongated', 0)} "
           "matched elongated sources, axis ratio > 1.3)"]
    pulls = s.extra.get("error_pulls")
    if pulls:
        parts = ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in pulls.items() if k != "n")
        out.append(f"         errors: robust scatter of (measured - true) / error {parts} "
                   f"(over {pulls.get('n', s.n_tp)} matched; 1: honest errors, if the truth is "
                   "exact)")
    out += ["", f"{'SNR bin':<16}{'n_true':>8}{'n_det':>8}{'recall':>9}{'precision':>11}{'F1':>8}"]
    b = s.by_snr
    for i, lab in enumerate(b.labels()):
        out.append(f"{lab:<16}{int(b.n_truth[i]):>8}{int(b.n_det[i]):>8}{_fmt(b.recall[i]):>9}"
                   f"{_fmt(b.precision[i]):>11}{_fmt(b.f1[i]):>8}")
    if sdc1 is not None:
        out += ["", f"SDC1 score {sdc1.value:.3f} (n_det {sdc1.n_det}, n_match {sdc1.n_match}, "
                    f"n_false {sdc1.n_false}, mean per-match {_fmt(sdc1.acc_pc, '.1f')} %)"]
    return "\n".join(out)


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


def validate(
    image: str | os.PathLike,
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
) -> ValReport:
    """Detect, cross-match with ``truth``, score and write the report folder ``out_dir``
    (created if needed).  Inputs are checked before the detector runs; the folder and its
    files are written only once everything is computed, each file atomically.
    ``mixed_precision``: CIANNA's mode for the detector's passes and ``plane`` a cube's
    plane taken as the image (see :func:`.pipeline.find_sources`).  ``compare``: name ->
    catalogue of another finder (PyBDSF...), scored beside the detector with the same truth
    and rules (:mod:`.other_finder`): a side-by-side table in the report, ``compare`` in
    ``scores.json``, a line each in the completeness figure."""
    as_bounded_float(match_factor, "match_factor")
    as_bounded_float(min_truth_snr, "min_truth_snr", strict=False)
    mdl = model if isinstance(model, LoadedModel) else load_model(model)
    predict_fn = make_predict_fn(mdl, mixed_precision)  # an unknown mode fails here
    thr = float(np.max(mdl.card.obj_threshold if obj_threshold is None else checked_threshold(
        obj_threshold, int(mdl.net.yolo.nb_box))))
    check_folder(out_dir)
    with open_image(image, hdu, plane=plane) as img:
        from .noise import estimate_noise_map

        tn = time.perf_counter()
        noise = estimate_noise_map(img.read, img.shape, box=mdl.card.noise_box, progress=progress)
        noise_s = time.perf_counter() - tn
        tr = load_truth(truth, img, noise)  # checks columns before the long part
        others = {str(k): load_detections(v, img, noise) for k, v in (compare or {}).items()}
        low = min(0.05, thr)
        t0 = time.perf_counter()
        found = detect(img.read, img.shape, mdl, noise=noise, obj_threshold=low,
                       progress=progress, predict_fn=predict_fn)
        t1 = time.perf_counter()
        # every detection down to ``low``, measured together, for the precision-recall curve;
        # the catalogue: the detections at the threshold measured as ``predict`` measures them
        # (greedy NMS keeps the same boxes above the threshold whatever lower ones it saw)
        full = measure_detections(img, mdl, found, noise, progress=progress).table
        above = replace(found, boxes=found.boxes.take(found.boxes.objectness >= thr),
                        obj_threshold=thr)
        res = measure_detections(img, mdl, above, noise, progress=progress)
        res.timings = {"noise_s": noise_s, "detect_s": t1 - t0, **res.timings,
                       "measure_s": time.perf_counter() - t1}
        beam = img.beam.bmaj if img.beam is not None else (img.pixel_scale or 1.0) * 3.0
        obj = np.asarray(full["objectness"])
        det = res.table
        m = match_catalogues(det, tr, beam, factor=match_factor, pixel_scale=img.pixel_scale)
        sc = scores_for(det, tr, m, snr_bins=snr_bins, min_truth_snr=min_truth_snr)
        counted = tr.snr >= min_truth_snr
        thresholds = np.round(np.arange(low, 0.951, 0.05), 3)
        pr = pr_curve(obj, thresholds, lambda sel: match_catalogues(
            full, tr, beam, factor=match_factor, pixel_scale=img.pixel_scale, select=sel),
            int(counted.sum()), counted)
        sdc1 = _sdc1_for(det, tr, sdc1_freq, sdc1_area)
        text = (f"image {os.fspath(image)}, model {mdl.card.path}, objectness >= {thr:g}\n"
                f"{res.timings['tiles']} tiles at {res.timings['tiles_per_s']:.1f} tiles/s; "
                f"noise {res.timings['noise_s']:.1f} s, detection {res.timings['detect_s']:.1f} s,"
                f" measurement {res.timings['measure_s']:.1f} s\n"
                f"overall recall counts the {sc.n_truth} true sources of SNR >= {min_truth_snr:g} "
                f"(of {len(tr.x)} in the image; true SNR from {tr.snr_from}); precision "
                "counts every detection\n"
                + format_scores(sc, sdc1))
        ids = np.asarray(_truth_ids(tr))
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
                   "pr_curve": pr, "timings": res.timings,
                   "sdc1": _sdc1_summary(sdc1, sdc1_freq, sdc1_area)}
        curves = {"cianna_jax": sc.by_snr}
        if others:
            extra, summary["compare"], curves = _compared(
                others, tr, beam, img.pixel_scale, ours=(f"cianna_jax {thr:g}", sc, sdc1),
                match_factor=match_factor, min_truth_snr=min_truth_snr, snr_bins=snr_bins,
                sdc1_freq=sdc1_freq, sdc1_area=sdc1_area)
            text += extra
        files["scores.json"] = (json.dumps(_jsonable(summary), indent=1) + "\n").encode()
        files["report.txt"] = (text + "\n").encode()
        figs = {}
        if plots:
            try:
                figs = _figures(img, res, det, tr, m, curves, pr, thr)
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
            write_catalogue(_bins_table(sc.by_flux, "Jy"), os.path.join(out_dir, "scores_by_flux.ecsv"))
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
                       np.asarray(det["pa"]) if "pa" in cols else np.zeros(len(det)))
    good = np.all([np.isfinite(v) for v in sub.values()], axis=0)
    return sdc1_score({k: v[good] for k, v in sub.items()}, tr.sdc1, freq, area=area)


def _sdc1_summary(sdc1: Sdc1Score | None, freq: int, area: str) -> dict | None:
    return None if sdc1 is None else {
        "value": sdc1.value, "n_det": sdc1.n_det, "n_match": sdc1.n_match, "n_bad": sdc1.n_bad,
        "n_false": sdc1.n_false, "acc_pc": sdc1.acc_pc, "freq": freq, "area": area}


def _compared(others: dict[str, Any], tr: Truth, beam: float, pixel_scale: float | None, *,
              ours: tuple[str, Scores, Sdc1Score | None], match_factor: float,
              min_truth_snr: float, snr_bins, sdc1_freq: int, sdc1_area: str
              ) -> tuple[str, dict, dict[str, BinnedScores]]:
    """Score the other finders' detection tables like ours: (report text, scores.json
    entry, SNR curves for the figure)."""
    name, sc, sdc1 = ours
    scores, sdc1s, entry = {name: sc}, {name: sdc1}, {}
    for other, det in others.items():
        m = match_catalogues(det, tr, beam, factor=match_factor, pixel_scale=pixel_scale)
        scores[other] = scores_for(det, tr, m, snr_bins=snr_bins, min_truth_snr=min_truth_snr)
        sdc1s[other] = _sdc1_for(det, tr, sdc1_freq, sdc1_area)
        entry[other] = {"catalogue": det.meta["source"], "snr_from": det.meta["snr_from"],
                        "n_unplaced": det.meta["n_unplaced"], "scores": scores[other].summary(),
                        "sdc1": _sdc1_summary(sdc1s[other], sdc1_freq, sdc1_area)}
    notes = "".join(f"\n{o}: {d.meta['source']} ({len(d)} detections; SNR from "
                    f"{d.meta['snr_from']}"
                    + (f"; {d.meta['n_unplaced']} rows without a position left out"
                       if d.meta["n_unplaced"] else "") + ")" for o, d in others.items())
    text = ("\n\nThe same truth, matcher and scores for the other catalogues:" + notes + "\n\n"
            + format_side_by_side(scores, sdc1s if any(sdc1s.values()) else None))
    return text, entry, {k: v.by_snr for k, v in scores.items()}


def _truth_ids(tr: Truth) -> np.ndarray:
    c = find_column(tr.table, "id")
    return np.asarray(tr.table[c]) if c else np.arange(1, len(tr.x) + 1)


def _figures(img: FitsImage, res: Any, det: Any, tr: Truth, m: Match,
             curves: dict[str, BinnedScores], pr: dict, thr: float) -> dict[str, Any]:
    """The report's figures (``res``: the detections at the operating threshold)."""
    from .plots import completeness_reliability, field_overlay, flux_recovery, pr_curve_plot
    from .residual import residual_view

    H, W = img.shape[-2:]
    step = max(1, int(math.ceil(max(H, W) / 2048)))
    shown = tr.snr >= 3.0  # fainter true sources are not expected to be found
    view = img.read((slice(None, None, step), slice(None, None, step))) if img.ndim == 2 else \
        np.nanmax(img.read((slice(None), slice(None, None, step), slice(None, None, step))), axis=0)
    unit = img.bunit or "Jy/beam"
    figs = {
        "field_overlay.png": field_overlay(
            view, wcs=img.wcs, step=step, unit=unit, rms=res.noise.median_rms,
            truth_xy=(tr.x[shown], tr.y[shown]), truth_matched=(m.truth_to_det >= 0)[shown],
            det_xy=(np.asarray(det["x"]), np.asarray(det["y"])), det_matched=m.det_to_truth >= 0,
            title=f"{os.path.basename(img.path)}: {len(det)} detections (objectness >= {thr:g}), "
                  f"{int(shown.sum())} true sources of SNR >= 3 (circles)"),
        "completeness_reliability.png": completeness_reliability(curves),
        "pr_curve.png": pr_curve_plot(pr, operating=thr),
    }
    if img.ndim == 2:
        fitted = res.measurements
        figs["residual_overlay.png"] = field_overlay(
            residual_view(img, fitted, step), wcs=img.wcs, step=step, unit=unit,
            rms=res.noise.median_rms, truth_xy=(tr.x[shown], tr.y[shown]),
            truth_matched=(m.truth_to_det >= 0)[shown],
            title=f"residual: the image minus the {int(np.count_nonzero(fitted.fit_ok))} fitted "
                  "Gaussians; circles: true sources of SNR >= 3")
    if m.n:
        figs["flux_recovery.png"] = flux_recovery(tr.flux[m.truth], np.asarray(det["flux"])[m.det])
    return figs
