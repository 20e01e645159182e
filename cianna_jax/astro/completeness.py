"""A detector's completeness on the user's own image or cube, by source injection
(:mod:`.injection`): the image's catalogue, then rounds of artificial sources (lines in a
cube) added to its pixels and found again with the same model, threshold and noise map;
the injected sources' table, the new detections around them, the per-bin scores, the
catalogue's reliability with both tests (inverted image and injection), the report files
and text."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from ..io.atomic import atomic_write, make_folder
from ..yolo.tiling import tile_origins, tiles_touching
from ._deps import require
from .catalogue import make_table
from .deblend import MAX_PEAKS
from .finding_checks import check_model_image
from .fits_image import Beam, FitsImage, open_image
from .injection import (
    REACH_SIGMAS,
    FragmentRates,
    InjectedSources,
    InjectionScores,
    RoundMatch,
    checked_line_widths,
    checked_settings,
    draw_shapes,
    flux_edges,
    flux_unit,
    match_round,
    place_sources,
    score_injection,
)
from .measure import FWHM
from .model_card import LoadedModel, load_model
from .pipeline import (
    SourceFinding,
    find_sources,
    inverted_finding,
    measure_detections,
)
from .predict import detect, make_predict_fn
from .primary_beam import finding_beam, pb_response
from .reliability import SNR_EDGES as REL_SNR_EDGES
from .reliability import (
    add_reliability_column,
    estimate_reliability,
    format_reliability,
    with_fragments,
)
from .sky import beam_in_pixels, pixel_to_sky

__all__ = ["InjectionResult", "measure_completeness", "write_injection_report",
           "format_completeness", "bins_table", "require_plotting", "read_fragment_rates",
           "check_injection_image"]


#: more rounds than this are warned about (each one is a detection run over the image)
MANY_ROUNDS = 50


@dataclass
class InjectionResult:
    """Result of :func:`measure_completeness`.

    ``table``: one row per injected source (``round``, ``x``/``y`` and ``ra``/``dec``,
    ``peak_in`` (the image's unit per beam), ``flux_in`` (Jy), ``snr_in`` (peak / local
    rms), ``size_in`` (intrinsic FWHM, arcsec), ``near_source``, ``found``, the found
    detection's ``flux_out``, ``snr_out``, ``objectness``, ``offset_beams``, and the
    ``n_spurious`` new detections given to it; ``id`` from 1); ``spurious``: the new
    detections (the ``source`` id they are given to, -1 when further than
    :data:`.injection.ATTRIBUTION_BEAMS` FWHM from all); ``scores`` per bin of injected
    SNR and ``by_flux`` per bin of injected flux (Jy; five bins a decade); ``own``: the
    image's own catalogue (the run without injected sources); ``lost``: the rows of
    ``own.table`` not found again, once per round that lost them; ``sources``: each
    round's injected sources (:meth:`.FitsImage.with_sources` draws them again);
    ``timings`` in seconds."""

    table: Any
    spurious: Any
    scores: InjectionScores
    by_flux: InjectionScores
    own: SourceFinding
    n_rounds: int
    lost: np.ndarray
    settings: dict[str, Any]
    sources: list[InjectedSources] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_lost(self) -> int:
        return int(self.lost.size)

    @property
    def n_unattributed(self) -> int:
        return int(np.count_nonzero(np.asarray(self.spurious["source"]) < 0))

    def fragments_by_snr(self, snr: np.ndarray | None = None,
                         edges: Any = REL_SNR_EDGES) -> tuple[np.ndarray, np.ndarray]:
        """The detector's own false detections expected around the sources of a catalogue,
        per bin of their measured SNR (``edges``, those of :mod:`.reliability`), with 1-sigma
        Poisson errors: each source (``snr``: the catalogue's measured SNRs; default the
        image's own catalogue) brings the new detections seen per injected source of its
        SNR bin, where they fell in SNR (sources below the injected range bring none; a
        bin without injected sources takes its nearest neighbour's)."""
        s = np.asarray(self.own.table["snr"] if snr is None else snr, np.float64)
        return self.fragment_rates(edges).expected(s)

    def fragment_rates(self, edges: Any = REL_SNR_EDGES) -> FragmentRates:
        """The new detections around the injected sources as rates (:class:`.injection.
        FragmentRates`), to apply to catalogues of images like this one."""
        return FragmentRates.from_injection(
            np.asarray(self.table["snr_in"]), ~np.asarray(self.table["near_source"]),
            np.asarray(self.spurious["source"]) - 1, np.asarray(self.spurious["snr"]),
            self.scores.edges, edges)

    def expected_spurious(self, snr: np.ndarray | None = None) -> float:
        """The number of the detector's own false detections expected around the sources of
        a catalogue (:meth:`fragments_by_snr`, summed)."""
        return float(self.fragments_by_snr(snr)[0].sum())

    def summary(self) -> dict[str, Any]:
        """Settings, per-bin scores and totals as plain values (``injection.json``)."""
        found = np.asarray(self.table["found"])
        scored = ~np.asarray(self.table["near_source"])
        return {"method": "source injection: sources added to the image's pixels, found "
                          "again with the same model, threshold and noise map",
                **self.settings, "n_rounds": self.n_rounds, "n_injected": len(self.table),
                "n_scored": int(scored.sum()), "n_found": int((found & scored).sum()),
                "n_spurious": len(self.spurious), "n_unattributed": self.n_unattributed,
                "n_lost": self.n_lost, "catalogue_sources": len(self.own.table),
                "expected_spurious_in_catalogue": self.expected_spurious(),
                "bins": self.scores.summary(), "flux_bins_jy": self.by_flux.summary(),
                "reliability": (None if self.own.reliability is None
                                else self.own.reliability.summary()),
                "timings": dict(self.timings)}


def check_injection_image(img: FitsImage, mdl: LoadedModel) -> None:
    """Whether ``mdl`` can inject into and detect on ``img`` (its dimension, its beam):
    ImageError or ValueError naming the image, before any work."""
    check_model_image(img, mdl)
    _checked_beam(img)


def _checked_beam(img: FitsImage) -> tuple[float, float, float]:
    beam = beam_in_pixels(img)
    if beam is None or img.beam_area_pixels() is None:
        raise ValueError(f"{img.path}: source injection draws sources with the restoring "
                         "beam: the image needs BMAJ/BMIN and a celestial WCS (a pixel "
                         "scale), or give beam=Beam(bmaj, bmin, bpa) (--beam)")
    return beam


@dataclass
class _Rows:
    """The injected sources' columns, gathered round by round."""

    cols: dict[str, list] = field(default_factory=dict)

    def add(self, **kw: np.ndarray) -> None:
        for k, v in kw.items():
            self.cols.setdefault(k, []).append(np.asarray(v))

    def joined(self, name: str, dtype: Any = None) -> np.ndarray:
        parts = self.cols.get(name, [])
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype or float)


#: the injected peaks' SNR range, and through a primary beam (apparent SNRs)
SNR_RANGE = (2.0, 50.0)
PB_SNR_RANGE = (0.5, 50.0)


def measure_completeness(
    image: str | os.PathLike | FitsImage,
    model: str | os.PathLike | LoadedModel,
    *,
    n_sources: int = 500,
    snr_range: tuple[float, float] | None = None,
    size_range: tuple[float, float] | None = None,
    separation: float = 10.0,
    obj_threshold: float | None = None,
    seed: int = 0,
    hdu: int | str | None = None,
    plane: int | None = None,
    beam: Beam | None = None,
    tile: int | None = None,
    batch_size: int | None = None,
    fit: bool = True,
    progress: bool = True,
    mixed_precision: str = "off",
    reliability: bool = False,
    line_width_range: tuple[float, float] = (3.0, 12.0),
    extended_fraction: float = 1.0,
    max_peaks: int = MAX_PEAKS,
    primary_beam: Any = None,
    pb_min: float | None = None,
    adaptive_rms: Any = None,
) -> InjectionResult:
    """Inject ``n_sources`` artificial sources into a FITS image (path or opened image), or
    lines into a cube, and find them again with ``model`` (as
    :func:`.pipeline.find_sources`): completeness, flux recovery and the detector's false
    detections around sources, with no truth.

    Peaks are drawn log-uniform in ``snr_range`` times the local rms (default 2-50, or
    0.5-50 through a ``primary_beam``: at a faint true flux the places where the beam is low
    must be drawn too, or the completeness there comes out high); intrinsic sizes
    uniform in ``size_range`` (FWHM major, arcsec; default point sources) for a random
    ``extended_fraction`` of the sources (the others point sources), convolved with the
    beam: the completeness holds for that population of shapes (a point-source
    completeness overstates it for a population with extended sources).  Sources of one
    round lie ``separation`` FWHM (of the beam, or of the largest source) apart and one
    FWHM inside the image's edges and blanks; as many rounds as it takes.  In a cube each
    source is a Gaussian line of FWHM uniform in ``line_width_range`` channels, its peak
    voxel the SNR times the channel's rms, at least the widest FWHM inside the cube's ends;
    it is found by a detection within one FWHM on the sky and one line FWHM along the
    channels.  ``seed`` draws the places, peaks and shapes (numpy).  ``reliability``: also
    the inverted-image test (:mod:`.reliability`), with the detector's false detections
    around sources that the injection expects added per SNR bin
    (:meth:`InjectionResult.fragments_by_snr`, :func:`.reliability.with_fragments`): the
    image's catalogue (``result.own``) gets that ``reliability`` column.  Other arguments
    (``max_peaks``: close sources boxed once split into that many at most, in the image's
    own run and in each round) as :func:`.pipeline.find_sources`; ``primary_beam`` and
    ``pb_min`` too (an image that is not primary-beam corrected): the sources are drawn as
    the image shows them (SNRs over the uniform noise), their injected fluxes then divided by
    the beam's response where they lie, like the catalogue's, so that the completeness by
    flux is by true flux over the whole image, the beam's falling sensitivity (and the
    ``pb_min`` cut) included, as source counts need it.  ``adaptive_rms``
    (:class:`.adaptive_noise.AdaptiveRms`): the noise map raised around bright sources, in
    the image's own run and every round (the injected peaks are SNRs over it), as a
    catalogue made with it needs its completeness measured."""
    pb = finding_beam(primary_beam, pb_min)
    if snr_range is None:
        snr_range = PB_SNR_RANGE if pb else SNR_RANGE
    n, snr, size, sep_beams = checked_settings(n_sources, snr_range, size_range, separation)
    seed = as_int(seed, "seed", minimum=0)
    ext = as_bounded_float(extended_fraction, "extended_fraction", strict=False)
    if ext > 1.0:
        raise ValueError(f"extended_fraction: a fraction in [0, 1]; received "
                         f"{extended_fraction!r}")
    lines = checked_line_widths(line_width_range)
    own_file = not isinstance(image, FitsImage)
    img = open_image(image, hdu, beam=beam, plane=plane) if own_file else image
    try:
        bpix = _checked_beam(img)
        mdl = model if isinstance(model, LoadedModel) else load_model(model, tile=tile)
        predict_fn = make_predict_fn(mdl, mixed_precision)
        kw = dict(batch_size=batch_size, predict_fn=predict_fn)
        t0 = time.perf_counter()
        own = find_sources(img, mdl, obj_threshold=obj_threshold, fit=fit, progress=progress,
                           keep_raw=True, max_peaks=max_peaks, adaptive_rms=adaptive_rms,
                           **pb, **kw)
        t1 = time.perf_counter()
        result = _inject_rounds(img, mdl, own, n, snr, size, sep_beams, bpix, seed, lines,
                                extended_fraction=ext, max_peaks=max_peaks,
                                obj_threshold=obj_threshold, fit=fit, progress=progress,
                                pb=pb, **kw)
        t2 = time.perf_counter()
        result.timings = {"own_s": t1 - t0, "rounds_s": t2 - t1}
        if reliability:
            inv = inverted_finding(img, mdl, own.noise, obj_threshold=obj_threshold, fit=fit,
                                   progress=progress, max_peaks=max_peaks, **pb, **kw)
            est = estimate_reliability(own.table["snr"], inv.table["snr"])
            own.reliability = with_fragments(est, *result.fragments_by_snr())
            add_reliability_column(own.table, own.reliability)
            result.timings["reliability_s"] = time.perf_counter() - t2
        return result
    finally:
        if own_file:
            img.close()


def _inject_rounds(img: FitsImage, mdl: LoadedModel, own: SourceFinding, n: int,
                   snr: tuple[float, float], size: tuple[float, float], sep_beams: float,
                   bpix: tuple[float, float, float], seed: int, lines: tuple[float, float],
                   *, obj_threshold: Any, fit: bool, progress: bool,
                   extended_fraction: float = 1.0, max_peaks: int = MAX_PEAKS,
                   pb: dict[str, Any] | None = None, **kw: Any) -> InjectionResult:
    rng = np.random.default_rng(seed)
    cube = img.ndim == 3
    noise = own.noise
    fwhm = bpix[0] * FWHM  # the beam's major FWHM, pixels
    largest = max(fwhm, size[1] / img.pixel_scale)
    separation, margin = sep_beams * largest, largest
    own_xy = _positions(own.table, cube)
    area = img.beam_area_pixels()
    rows, spur = _Rows(), _Rows()
    rounds = tiles_run = 0
    lost: list[np.ndarray] = []
    drawn: list[InjectedSources] = []
    while (done := sum(len(p) for p in rows.cols.get("x", []))) < n:
        xy = place_sources(img, n - done, separation, margin, rng,
                           z_margin=lines[1] if cube else 0.0)
        if len(xy) == 0:
            raise ValueError(f"{img.path}: no room for injected sources {separation:.1f} "
                             "pixels apart away from the edges and blanks (a smaller "
                             "separation, or a larger image)")
        rounds += 1
        m = len(xy)
        if rounds == 1 and (need := math.ceil(n / m)) > MANY_ROUNDS:
            warnings.warn(f"{n} injected sources take about {need} rounds of {m} on this "
                          "image, each a detection run over the whole image: fewer "
                          "sources or a smaller separation take less", UserWarning,
                          stacklevel=3)
        snr_in = np.exp(rng.uniform(math.log(snr[0]), math.log(snr[1]), m))
        smaj, smin, theta, size_in = draw_shapes(m, bpix, size, img.pixel_scale or 1.0, rng,
                                                 extended_fraction)
        rms = noise.at(xy[:, 1], xy[:, 0], xy[:, 2] if cube else None)
        wz = rng.uniform(*lines, m) if cube else None  # line FWHM, channels
        src = InjectedSources(xy[:, 0], xy[:, 1], snr_in * rms, smaj, smin, theta,
                              *((xy[:, 2], wz / FWHM) if cube else ()))
        if progress:
            print(f"injection round {rounds}: {m} sources", file=sys.stderr)
        drawn.append(src)
        view = img.with_sources(src)
        # only the tiles the sources reach run again: the others' boxes are the image's own
        tiles = _touched_tiles(img, mdl, src)
        det = detect(view.read, view.shape, mdl, noise=noise, obj_threshold=obj_threshold,
                     progress=progress, tiles=tiles, reuse=own.detections.raw, **kw)
        tiles_run += len(tiles)
        with warnings.catch_warnings():  # (said once, for the image's own catalogue)
            warnings.filterwarnings("ignore", message=".*primary beam is not known")
            run = measure_detections(view, mdl, det, noise, fit=fit, max_peaks=max_peaks,
                                     **(pb or {}))
        t = run.table
        run_xy = _positions(t, cube)
        radius = np.maximum(fwhm, smaj * FWHM)
        rm = match_round(xy, radius, own_xy, run_xy, fwhm,
                         np.maximum(wz, 1.0) if cube else None)
        lost.append(rm.lost)
        cols = _source_columns(img, src, snr_in, size_in, t, rm, fwhm, area)
        if pb:  # true fluxes, as the catalogue's
            cols["pb"] = pb_response(pb["primary_beam"], img, src.x, src.y, src.z)
            cols["peak_in"], cols["flux_in"] = (cols["peak_in"] / cols["pb"],
                                                cols["flux_in"] / cols["pb"])
        rows.add(round=np.full(m, rounds), **cols)
        spur.add(round=np.full(rm.spurious_rows.size, rounds),
                 **_new_columns(t, run_xy, xy, rm, first_id=done + 1, fwhm=fwhm))
    table = _table(img, rows)
    spurious = _spurious_table(img, spur)
    flux_in = np.asarray(table["flux_in"])
    per_source = (~np.asarray(table["near_source"]), np.asarray(table["found"], bool),
                  np.asarray(table["flux_out"]) / flux_in, np.asarray(table["offset_beams"]),
                  np.asarray(table["n_spurious"]))
    scores = score_injection(np.asarray(table["snr_in"]), *per_source)
    by_flux = score_injection(flux_in, *per_source, edges=flux_edges(flux_in))
    settings = {"n_sources": n, "snr_range": list(snr), "size_range_arcsec": list(size),
                **({"primary_beam": pb["primary_beam"].description,
                    "pb_min": pb["pb_min"] or 0.0} if pb else {}),
                "extended_fraction": extended_fraction,
                "separation_beams": sep_beams, "seed": seed,
                "line_width_range_channels": list(lines) if cube else None,
                "tiles_run": tiles_run,
                "obj_threshold": own.table.meta.get("obj_threshold"),
                "beam_fwhm_pixels": fwhm,
                **({"adaptive_rms": own.table.meta["adaptive_rms"]}
                   if "adaptive_rms" in own.table.meta else {})}
    return InjectionResult(table, spurious, scores, by_flux, own, rounds,
                           np.concatenate(lost).astype(np.int64), settings, drawn)


def _touched_tiles(img: FitsImage, mdl: LoadedModel, src: InjectedSources) -> np.ndarray:
    """The tiles of the model's tiling of ``img`` that hold pixels of the sources (out to
    :data:`.injection.REACH_SIGMAS`, as drawn)."""
    card = mdl.card
    reach = REACH_SIGMAS * np.asarray(src.sigma_major)
    lo = [np.floor(src.y - reach), np.floor(src.x - reach)]
    hi = [np.ceil(src.y + reach), np.ceil(src.x + reach)]
    if src.ndim == 3:
        zr = REACH_SIGMAS * np.asarray(src.sigma_z)
        lo.insert(0, np.floor(src.z - zr))
        hi.insert(0, np.ceil(src.z + zr))
    origins = tile_origins(img.shape, tuple(card.tile), card.overlap)
    return tiles_touching(origins, tuple(card.tile), np.stack(lo, 1).astype(np.int64),
                          np.stack(hi, 1).astype(np.int64))


def _positions(t: Any, cube: bool) -> np.ndarray:
    """A catalogue's pixel positions ``[n, 2]`` (x, y), or ``[n, 3]`` with z for a cube's."""
    names = ("x", "y", "z") if cube else ("x", "y")
    return np.stack([np.asarray(t[k], np.float64) for k in names], 1) if len(t) else \
        np.zeros((0, len(names)))


def _source_columns(img: FitsImage, src: InjectedSources, snr_in: np.ndarray,
                    size_in: np.ndarray, t: Any, rm: RoundMatch, fwhm: float,
                    area: float) -> dict[str, np.ndarray]:
    """The injected table's columns for one round: the sources as drawn (peaks in Jy/beam,
    fluxes in Jy, or Jy x channels for a cube's lines) and what their detections in the
    run's catalogue ``t`` measured."""
    row, cube = rm.found_row, src.ndim == 3

    def taken(name):
        return _taken(t, row, name)
    flux_in = src.peak * img.unit_scale * 2 * np.pi * src.sigma_major * src.sigma_minor / area
    if cube:  # summed over the channels too, as the catalogue's
        flux_in = flux_in * math.sqrt(2 * math.pi) * src.sigma_z
    cols = dict(x=src.x, y=src.y, peak_in=src.peak * img.unit_scale, flux_in=flux_in,
                snr_in=snr_in, size_in=size_in,
                bmaj_in=src.sigma_major * FWHM * (img.pixel_scale or 1.0),
                near_source=rm.near_source, found=row >= 0, flux_out=taken("flux"),
                snr_out=taken("snr"), objectness=taken("objectness"),
                offset_beams=np.hypot(taken("x") - src.x, taken("y") - src.y) / fwhm,
                n_spurious=np.bincount(rm.spurious_source[rm.spurious_source >= 0],
                                       minlength=len(src)))
    if cube:
        cols.update(z=src.z, line_fwhm_in=src.sigma_z * FWHM, dz=taken("z") - src.z)
    return cols


def _new_columns(t: Any, run_xy: np.ndarray, xy: np.ndarray, rm: RoundMatch, *,
                 first_id: int, fwhm: float) -> dict[str, np.ndarray]:
    """The spurious table's columns for one round's new detections (rows of the run's
    catalogue ``t``), each with the id of the source it is given to (ids of the round from
    ``first_id``; -1: none) and its distance to it in FWHM."""
    sr, owner = rm.spurious_rows, rm.spurious_source
    cols = dict(x=run_xy[sr, 0], y=run_xy[sr, 1])
    if run_xy.shape[1] == 3:
        cols["z"] = run_xy[sr, 2]
    cols.update(snr=_column(t, "snr", sr), objectness=_column(t, "objectness", sr),
                source=np.where(owner >= 0, owner + first_id, -1),
                distance_beams=_distance(run_xy[sr], xy, owner, fwhm))
    return cols


def _column(t: Any, name: str, rows: np.ndarray) -> np.ndarray:
    return np.asarray(t[name], np.float64)[rows] if rows.size else np.zeros(0)


def _taken(t: Any, row: np.ndarray, name: str) -> np.ndarray:
    """Column ``name`` of the rows ``row`` of table ``t`` (NaN where row is -1)."""
    got = row >= 0
    if not len(t):
        return np.full(row.shape, np.nan)
    return np.where(got, np.asarray(t[name], np.float64)[np.where(got, row, 0)], np.nan)


def _distance(pts: np.ndarray, xy: np.ndarray, owner: np.ndarray, fwhm: float) -> np.ndarray:
    """Each new detection's distance to the source it is given to, in FWHM (NaN: none)."""
    if pts.size == 0:
        return np.zeros(0)
    k = np.where(owner >= 0, owner, 0)
    d = np.hypot(pts[:, 0] - xy[k, 0], pts[:, 1] - xy[k, 1]) / fwhm
    return np.where(owner >= 0, d, np.nan)


def _with_sky(img: FitsImage, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if img.wcs is None:
        return cols
    ra, dec = pixel_to_sky(img.wcs, cols["x"], cols["y"])
    out = {"ra": ra, "dec": dec}
    out.update(cols)
    return out


def _table(img: FitsImage, rows: _Rows) -> Any:
    cube = "z" in rows.cols
    names = (("round", "x", "y") + (("z",) if cube else ())
             + ("peak_in", "flux_in", "snr_in", "size_in", "bmaj_in")
             + (("line_fwhm_in",) if cube else ())
             + ("near_source", "found", "flux_out", "snr_out", "objectness", "offset_beams")
             + (("dz",) if cube else ()) + ("n_spurious",)
             + (("pb",) if "pb" in rows.cols else ()))
    cols = {k: rows.joined(k) for k in names}
    for k in ("round", "n_spurious"):
        cols[k] = cols[k].astype(np.int64)
    for k in ("near_source", "found"):
        cols[k] = cols[k].astype(bool)
    cols = {"id": np.arange(1, len(cols["x"]) + 1, dtype=np.int64), **_with_sky(img, cols)}
    units = {"ra": "deg", "dec": "deg", "x": "pix", "y": "pix", "peak_in": "Jy/beam",
             "flux_in": "Jy", "flux_out": "Jy", "size_in": "arcsec", "bmaj_in": "arcsec"}
    if img.per == "pixel":
        units["peak_in"] = "Jy/pix"
    if cube:  # as the catalogue's: summed over the channels
        units.update(flux_in="Jy pix", flux_out="Jy pix", z="pix", dz="pix")
    return make_table(cols, units={k: v for k, v in units.items() if k in cols})


def _spurious_table(img: FitsImage, spur: _Rows) -> Any:
    names = ("round", "x", "y") + (("z",) if "z" in spur.cols else ()) + (
        "snr", "objectness", "source", "distance_beams")
    cols = {k: spur.joined(k) for k in names}
    cols["round"] = cols["round"].astype(np.int64)
    cols["source"] = cols["source"].astype(np.int64)
    return make_table(_with_sky(img, cols),
                      units={"x": "pix", "y": "pix", "z": "pix", "ra": "deg", "dec": "deg"})


def read_fragment_rates(folder: str | os.PathLike) -> FragmentRates:
    """The fragment rates (:class:`.injection.FragmentRates`) of an injection's report
    folder (its ``injected.ecsv`` and ``spurious.ecsv``), to apply to catalogues of images
    like the one it measured (``cianna-jax predict --fragments-from``)."""
    from .catalogue import CatalogueError, read_catalogue

    f = os.fspath(folder)
    inj = read_catalogue(os.path.join(f, "injected.ecsv"))
    spur = read_catalogue(os.path.join(f, "spurious.ecsv"))
    for t, need, name in ((inj, ("id", "snr_in", "near_source"), "injected.ecsv"),
                          (spur, ("source", "snr"), "spurious.ecsv")):
        if not set(need) <= set(t.colnames):
            raise CatalogueError(f"{os.path.join(f, name)}: not an injection's table (needs "
                                 f"{list(need)}; cianna-jax inject writes it)")
    ids = np.asarray(inj["id"], np.int64)
    row = {int(i): k for k, i in enumerate(ids)}
    parent = np.array([row.get(int(i), -1) for i in np.asarray(spur["source"])], np.int64)
    return FragmentRates.from_injection(np.asarray(inj["snr_in"], np.float64),
                                        ~np.asarray(inj["near_source"], bool), parent,
                                        np.asarray(spur["snr"], np.float64))


def require_plotting() -> None:
    """Raise :class:`.MissingExtraError` when matplotlib is missing: checked before an
    injection's work whose report draws ``completeness.png``."""
    require("matplotlib")


def bins_table(sc: InjectionScores, quantity: str, unit: str | None = None) -> Any:
    """Per-bin scores as a table: ``{quantity}_min``/``_max`` (in ``unit``), ``n``,
    ``n_found``, ``completeness`` with ``completeness_lo``/``_hi`` (Wilson, 1 sigma), the
    flux ratio's median and 16th/84th percentiles, ``offset_beams``, ``n_spurious`` and
    ``spurious_rate``: what a source count's correction reads."""
    lo, hi = sc.interval
    return make_table({f"{quantity}_min": sc.edges[:-1], f"{quantity}_max": sc.edges[1:],
                       "n": sc.n, "n_found": sc.n_found, "completeness": sc.completeness,
                       "completeness_lo": lo, "completeness_hi": hi,
                       "flux_ratio": sc.flux_ratio, "flux_ratio_lo": sc.flux_ratio_lo,
                       "flux_ratio_hi": sc.flux_ratio_hi, "offset_beams": sc.offset_beams,
                       "n_spurious": sc.n_spurious, "spurious_rate": sc.spurious_rate},
                      units={f"{quantity}_min": unit, f"{quantity}_max": unit})


def write_injection_report(result: InjectionResult, out_dir: str | os.PathLike, *,
                           plots: bool = True) -> list[str]:
    """Write ``catalogue.ecsv`` (the image's own catalogue, its ``reliability`` column
    when measured), ``injected.ecsv`` (one row per injected source), ``spurious.ecsv``
    (the new detections), ``completeness_by_snr.ecsv`` and ``completeness_by_flux.ecsv``
    (:func:`bins_table`), ``injection.json`` (settings, per-bin scores, totals) and, with
    ``plots``, ``completeness.png`` into ``out_dir`` (created if missing), each
    atomically; returns the file names."""
    from .catalogue import write_catalogue

    folder = make_folder(out_dir)
    if plots:
        from .plots import injection_plot, save_figure

        fig = injection_plot(result.scores, result.by_flux, title=f"Source injection: "
                             f"{os.path.basename(result.own.table.meta.get('image', ''))}")
    tables = {"catalogue.ecsv": result.own.table, "injected.ecsv": result.table,
              "spurious.ecsv": result.spurious,
              "completeness_by_snr.ecsv": bins_table(result.scores, "snr"),
              "completeness_by_flux.ecsv": bins_table(result.by_flux, "flux", "Jy")}
    for name, table in tables.items():
        write_catalogue(table, os.path.join(folder, name), fmt="ascii.ecsv")
    names = [*tables, "injection.json"]
    with atomic_write(os.path.join(folder, "injection.json")) as fh:
        fh.write((json.dumps(result.summary(), indent=1) + "\n").encode())
    if plots:
        save_figure(fig, os.path.join(folder, "completeness.png"))
        names.append("completeness.png")
    return names


def _flux_lines(sc: InjectionScores) -> list[str]:
    scale, unit = flux_unit(sc.edges)
    lo, hi = sc.interval
    lines = [f"injected flux ({unit})   sources  found  completeness (1-sigma)"]
    for i in np.flatnonzero(sc.n > 0):
        a, b = sc.edges[i] * scale, sc.edges[i + 1] * scale
        lines.append(f"{a:>8.3g} - {b:<8.3g}{sc.n[i]:>8d}{sc.n_found[i]:>7d}  "
                     f"{sc.completeness[i]:>6.3f} ({lo[i]:.3f}-{hi[i]:.3f})")
    f50, f90 = sc.at_completeness(0.5) * scale, sc.at_completeness(0.9) * scale
    lines.append(f"50% complete at {f50:.3g} {unit}, 90% at {f90:.3g} {unit} (integrated flux)"
                 .replace("nan " + unit, "-"))
    return lines


def format_completeness(result: InjectionResult) -> str:
    """The injection's per-bin table and totals as text (what ``cianna-jax inject`` prints)."""
    sc = result.scores
    lo, hi = sc.interval
    lines = ["injected SNR   sources  found  completeness (1-sigma)  flux out/in (16-84%)  "
             "offset  new detections per source"]
    for i in range(sc.n.size):
        if sc.n[i] == 0:
            continue
        a, b = sc.edges[i], sc.edges[i + 1]
        flux = (f"{sc.flux_ratio[i]:.2f} ({sc.flux_ratio_lo[i]:.2f}-{sc.flux_ratio_hi[i]:.2f})"
                if sc.n_found[i] else "-")
        off = f"{sc.offset_beams[i]:.2f}" if sc.n_found[i] else "-"
        lines.append(f"{a:>5g} - {b:<6g}{sc.n[i]:>7d}{sc.n_found[i]:>7d}  "
                     f"{sc.completeness[i]:>6.3f} ({lo[i]:.3f}-{hi[i]:.3f})      "
                     f"{flux:<22}{off:>6}  {sc.spurious_rate[i]:.3f}")
    lines += _flux_lines(result.by_flux)
    s = result.summary()
    c50, c90 = sc.at_completeness(0.5), sc.at_completeness(0.9)
    lines.append(f"{s['n_injected']} sources in {s['n_rounds']} round(s), {s['n_scored']} "
                 f"scored ({s['n_injected'] - s['n_scored']} within a match radius of the "
                 f"image's own detections), {s['n_found']} found")
    lines.append("50% complete at SNR " + ("-" if math.isnan(c50) else f"{c50:.2f}")
                 + ", 90% at SNR " + ("-" if math.isnan(c90) else f"{c90:.2f}")
                 + " (offsets in beam FWHM)")
    lines.append(f"new detections around injected sources: {s['n_spurious']} "
                 f"({s['n_unattributed']} further than 3 FWHM from any); the image's own "
                 f"detections lost: {s['n_lost']}")
    lines.append(f"expected among the catalogue's {s['catalogue_sources']} sources: "
                 f"{s['expected_spurious_in_catalogue']:.1f} false detections of this kind "
                 "(the detector's errors around sources; the inverted-image test counts those "
                 "made of noise)")
    if result.own.reliability is not None:
        lines.append(format_reliability(result.own.reliability).rstrip("\n"))
    return "\n".join(lines)
