"""Differential source counts from a catalogue: the first science plot of a continuum survey.

Per bin of integrated flux ``S`` (Jy), ``dN/dS = sum(w) / (dS * area)`` sources per Jy per
steradian, and the Euclidean-normalised ``S^2.5 dN/dS`` (Jy^1.5 sr^-1, at the bin's
geometric middle), flat for a static Euclidean universe.  Each catalogued source counts
``w = reliability / completeness``: its ``reliability`` column (the inverted-image test,
with or without source injection's errors around sources; 1 without one) over the
completeness at its flux that source injection measured (:mod:`.completeness`,
``completeness_by_flux.ecsv``).  Errors are Poisson, ``sqrt(sum(w^2))``.

Caveats, as survey papers state them: the completeness is read at each source's measured
flux, so near the detection limit the counts keep the flux boosting of faint detections
(Eddington bias; ``measured / injected`` flux in the injection's report shows how much);
bins whose completeness is below ``min_completeness`` are marked unreliable
(``complete`` False); the area is that of the image's data (finite pixels), with the same
sensitivity everywhere unless the completeness says otherwise; or, without an injection,
each source counts over its visibility area (:mod:`.visibility`: where its peak reaches a
few times the local rms, through the primary beam when given).

A mosaic's catalogue (several overlapping images, as ``cianna-jax predict`` merges them:
each source from the image whose centre is nearest among those with data at its place) is
counted over the union of the images' data, each image contributing the part it owns by
the same rule (:func:`owned_areas_sr`), and each source corrected by the completeness of
the image that owns it (one injection report per image).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import (
    CatalogueError,
    column_values,
    make_table,
    read_catalogue,
    selected_rows,
)
from .fits_image import FitsImage, open_image
from .hi_mass import ARCSEC_PER_RAD
from .injection import flux_edges
from .mosaic import check_images, image_names, nearest_centre_image
from .primary_beam import finding_beam
from .sky import pixel_to_sky
from .visibility import mosaic_visibility

__all__ = ["SourceCounts", "source_counts", "image_area_sr", "owned_areas_sr", "completeness_at",
           "count_edges", "read_completeness", "count_catalogue", "ARCSEC_PER_RAD"]



def image_area_sr(image: FitsImage, rows: int = 1024) -> float:
    """The solid angle (sr) of a 2D image's data: its finite pixels times a pixel's solid
    angle (the pixel scale at the reference point; read a strip of ``rows`` at a time)."""
    if image.pixel_scale is None:
        raise ValueError(f"{image.path}: no celestial WCS, so no pixel scale: give the area "
                         "(area_sr=, --area-deg2)")
    if image.ndim != 2:
        raise ValueError(f"{image.path}: source counts are made from a 2D image's catalogue; "
                         f"this one has {image.ndim} axes")
    H, W = image.shape
    n = 0
    for r0 in range(0, H, max(1, int(rows))):
        n += int(np.count_nonzero(np.isfinite(image.read((slice(r0, min(r0 + rows, H)),
                                                          slice(0, W))))))
    return n * (image.pixel_scale / ARCSEC_PER_RAD) ** 2


def owned_areas_sr(images: Sequence[FitsImage], max_samples: int = 1_000_000,
                   rows: int = 256) -> np.ndarray:
    """Per image of a mosaic, the solid angle (sr) of the data it owns: its finite pixels
    whose nearest image centre, among the images with data there, is its own
    (:func:`.mosaic.nearest_centre_image`, the rule that keeps each source of a merged
    catalogue once); the sum is the union of the images' data.  An image of more than
    ``max_samples`` pixels is sampled on a regular grid (each sample standing for its
    ``step x step`` pixels); ``rows`` sampled rows at a time."""
    check_images(images)
    out = np.zeros(len(images))
    for i, im in enumerate(images):
        if im.pixel_scale is None:
            raise ValueError(f"{im.path}: no celestial WCS, so no pixel scale")
        H, W = im.shape
        step = max(1, math.ceil(math.sqrt(H * W / max(int(max_samples), 1))))
        ys, xs = np.arange(step // 2, H, step), np.arange(step // 2, W, step)
        owned = 0
        for r0 in range(0, ys.size, max(1, int(rows))):
            gy, gx = np.meshgrid(ys[r0:r0 + rows].astype(np.float64), xs.astype(np.float64),
                                 indexing="ij")
            ra, dec = pixel_to_sky(im.wcs, gx.ravel(), gy.ravel())
            owned += int(np.count_nonzero(nearest_centre_image(ra, dec, images) == i))
        out[i] = owned * step * step * (im.pixel_scale / ARCSEC_PER_RAD) ** 2
    return out


def completeness_at(flux: np.ndarray, edges: np.ndarray, completeness: np.ndarray) -> np.ndarray:
    """The completeness at each ``flux`` (Jy) from per-bin values on ``edges``: linear in log
    flux between the bins' geometric middles, the nearest bin's beyond them; bins without a
    value (NaN) are skipped; NaN for a non-positive flux."""
    e = np.asarray(edges, np.float64)
    c = np.asarray(completeness, np.float64)
    if e.ndim != 1 or e.size != c.size + 1 or np.any(e <= 0) or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges: increasing positive bin edges, one more than the "
                         f"completeness values ({c.size}); received {e.size}")
    ok = np.isfinite(c)
    if not ok.any():
        raise ValueError("completeness: no bin has a value")
    mid = np.log(np.sqrt(e[:-1] * e[1:]))[ok]
    f = np.asarray(flux, np.float64)
    out = np.full(f.shape, np.nan)
    pos = np.isfinite(f) & (f > 0)
    out[pos] = np.interp(np.log(f[pos]), mid, c[ok])
    return out


def count_edges(flux: np.ndarray, per_decade: int = 5) -> np.ndarray:
    """Bins of flux for counts: ``per_decade`` a decade on round values (1, 1.6, 2.5, 4, 6.3
    x 10^k) covering every positive ``flux``."""
    f = np.asarray(flux, np.float64)
    if not np.any(np.isfinite(f) & (f > 0)):
        raise ValueError("flux: no positive, finite flux to count")
    return flux_edges(f, per_decade)


@dataclass(frozen=True)
class SourceCounts:
    """Counts per flux bin (``edges``, Jy): ``n`` sources catalogued, ``n_corrected`` (the sum
    of their weights), ``completeness`` (mean of the bin's sources'; NaN without a
    correction), ``complete`` (at least ``min_completeness``), over ``area_sr``;
    ``image_areas_sr``: a mosaic's images (file names) and the area each owns."""

    edges: np.ndarray
    n: np.ndarray
    n_corrected: np.ndarray
    n_corrected_err: np.ndarray
    completeness: np.ndarray
    complete: np.ndarray
    area_sr: float
    image_areas_sr: dict[str, float] | None = None
    #: how ``n_corrected`` was made when not by each source's weight (e.g. unfolding)
    correction: str | None = None

    @property
    def middle(self) -> np.ndarray:
        return np.sqrt(self.edges[:-1] * self.edges[1:])

    @property
    def dnds(self) -> np.ndarray:
        """dN/dS (sr^-1 Jy^-1) of the corrected counts."""
        return self.n_corrected / (np.diff(self.edges) * self.area_sr)

    @property
    def euclidean(self) -> tuple[np.ndarray, np.ndarray]:
        """S^2.5 dN/dS (Jy^1.5 sr^-1) at the bins' middles, and its 1-sigma error."""
        scale = self.middle**2.5 / (np.diff(self.edges) * self.area_sr)
        return self.n_corrected * scale, self.n_corrected_err * scale

    @property
    def euclidean_raw(self) -> np.ndarray:
        """S^2.5 dN/dS of the catalogued sources, uncorrected."""
        return self.n * self.middle**2.5 / (np.diff(self.edges) * self.area_sr)

    def table(self) -> Any:
        """The counts as an astropy table (fluxes in Jy, counts in Jy^1.5 sr^-1)."""
        eu, err = self.euclidean
        parts = {} if self.image_areas_sr is None else {"image_areas_deg2": {
            k: v * (180.0 / math.pi) ** 2 for k, v in self.image_areas_sr.items()}}
        return make_table({"flux_min": self.edges[:-1], "flux_max": self.edges[1:],
                           "flux_mid": self.middle, "n": self.n,
                           "n_corrected": self.n_corrected, "completeness": self.completeness,
                           "complete": self.complete, "counts": eu, "counts_err": err,
                           "counts_raw": self.euclidean_raw},
                          meta={"area_sr": self.area_sr,
                                "area_deg2": self.area_sr * (180.0 / math.pi) ** 2,
                                "counts": "Euclidean-normalised S^2.5 dN/dS", **parts,
                                **({"correction": self.correction} if self.correction
                                   else {})},
                          units={"flux_min": "Jy", "flux_max": "Jy", "flux_mid": "Jy",
                                 "counts": "Jy(3/2) / sr", "counts_err": "Jy(3/2) / sr",
                                 "counts_raw": "Jy(3/2) / sr"})


def source_counts(flux: np.ndarray, area_sr: float, *, edges: np.ndarray | None = None,
                  reliability: np.ndarray | None = None,
                  completeness: tuple[np.ndarray, np.ndarray] | None = None,
                  min_completeness: float = 0.5,
                  per_source: np.ndarray | None = None) -> SourceCounts:
    """The counts of sources of integrated ``flux`` (Jy) over ``area_sr`` steradians, each
    weighted by its ``reliability`` (default 1) over the ``completeness`` at its flux
    (``(edges, values)`` per flux bin, e.g. source injection's ``completeness_by_flux``;
    default none).  ``per_source``: each source's own completeness instead (e.g. that of
    the mosaic image that owns it), ``completeness`` then giving empty bins theirs.
    ``edges``: the count bins (default :func:`count_edges`).  Sources of non-positive or
    NaN flux are left out; a source whose completeness is 0 counts once, uncorrected, in a
    bin marked incomplete."""
    f = np.asarray(flux, np.float64)
    area = as_bounded_float(area_sr, "area_sr")
    as_bounded_float(min_completeness, "min_completeness", strict=False)
    ok = np.isfinite(f) & (f > 0)
    e = count_edges(f) if edges is None else np.asarray(edges, np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0) or e[0] <= 0:
        raise ValueError(f"edges: increasing positive flux bin edges; received {edges!r}")
    r = np.ones_like(f) if reliability is None else np.nan_to_num(
        np.asarray(reliability, np.float64), nan=1.0)
    if r.shape != f.shape:
        raise ValueError(f"reliability: one per source ({f.shape}); received {r.shape}")
    if per_source is not None and completeness is None:
        raise ValueError("per_source: give completeness too (the empty bins' values)")
    if per_source is not None:
        c = np.asarray(per_source, np.float64)
        if c.shape != f.shape:
            raise ValueError(f"per_source: one per source ({f.shape}); received {c.shape}")
    else:
        c = np.ones_like(f) if completeness is None else completeness_at(f, *completeness)
    c = np.where(ok, c, np.nan)
    w = np.where(np.nan_to_num(c) > 0, r / np.where(np.nan_to_num(c) > 0, c, 1.0), r)
    b = np.digitize(f, e) - 1
    inside = ok & (b >= 0) & (b < e.size - 1)
    nb = e.size - 1
    n = np.bincount(b[inside], minlength=nb)
    n_corr = np.bincount(b[inside], weights=w[inside], minlength=nb)
    err = np.sqrt(np.bincount(b[inside], weights=w[inside] ** 2, minlength=nb))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = (np.bincount(b[inside], weights=c[inside], minlength=nb) / n
                  if completeness is not None else np.full(nb, np.nan))
    if completeness is not None:  # an empty bin: the completeness at its middle
        empty = n == 0
        mean_c[empty] = completeness_at(np.sqrt(e[:-1] * e[1:])[empty], *completeness)
    complete = np.ones(nb, bool) if completeness is None else np.nan_to_num(
        mean_c) >= min_completeness
    return SourceCounts(e, n, n_corr, err, mean_c, complete, area)


def read_completeness(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Completeness per flux bin, ``(edges in Jy, values)``, from source injection's report:
    its folder or its ``completeness_by_flux.ecsv``."""
    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "completeness_by_flux.ecsv")
    t = read_catalogue(p)
    need = {"flux_min", "flux_max", "completeness"}
    if not need <= set(t.colnames):
        raise CatalogueError(f"{p}: not a completeness table (needs {sorted(need)}; "
                             "cianna-jax inject writes completeness_by_flux.ecsv)")
    lo, hi = np.asarray(t["flux_min"], np.float64), np.asarray(t["flux_max"], np.float64)
    if t["flux_min"].unit is not None:  # in Jy whatever the file's unit
        lo = np.asarray(t["flux_min"].quantity.to_value("Jy"))
        hi = np.asarray(t["flux_max"].quantity.to_value("Jy"))
    if lo.size == 0 or np.any(lo[1:] != hi[:-1]):
        raise CatalogueError(f"{p}: the flux bins must be adjacent (flux_max of one the "
                             "flux_min of the next)")
    return np.append(lo, hi[-1]), np.asarray(t["completeness"], np.float64)


def count_catalogue(catalogue: str | os.PathLike, *,
                    image: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                    area_deg2: float | None = None,
                    completeness: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                    per_decade: int = 5, min_completeness: float = 0.5,
                    hdu: int | str | None = None, visibility_snr: float | None = None,
                    primary_beam: Any = None, pb_min: float | None = None,
                    noise_box: int | None = None, unfold: bool = False,
                    select: str | None = None) -> SourceCounts:
    """The source counts of a catalogue file (its ``flux`` column, or another finder's
    name for it such as PyBDSF's ``Total_flux``, in Jy whatever its unit, and its
    ``reliability`` column when it has one) over the area of ``image``'s data or
    ``area_deg2``, corrected by the ``completeness`` of source injection's report (folder or
    ``completeness_by_flux.ecsv``) when given.  Several images (a mosaic's catalogue, as
    ``predict`` merges them): the union of their data (:func:`owned_areas_sr`); with one
    report per image, each source is corrected by that of the image that owns it (its
    ``ra``/``dec``), the empty bins by the images' completeness weighted by their areas.
    ``visibility_snr`` (instead of ``completeness``): the sources of at least that SNR
    (``snr`` column), each counted over the visibility area of its peak (:mod:`.visibility`:
    where it reaches that many times the local rms, through ``primary_beam`` above
    ``pb_min`` when given, for a catalogue corrected for it; a mosaic's images each over
    the part of the sky it owns, one beam each or one for all; the images' noise maps in
    boxes of ``noise_box`` pixels, by default the catalogue's own (``predict`` records its
    model's in the metadata), else 128).  ``unfold``: instead of each source over the
    completeness at its measured flux, the counts unfolded from measured to true fluxes
    with the injection's whole response (its ``injected.ecsv``: which sources were found,
    at what flux; :mod:`.unfolding`), which takes out the flux boosting near the detection
    limit too (one injection report; ``completeness`` then the bins' efficiencies).
    ``select`` (``"COLUMN=V1,V2"``, :func:`.catalogue.selected_rows`): the counts of that
    subpopulation only, over the same area and corrections."""
    images = _paths(image)
    reports = _paths(completeness)
    if (not images) == (area_deg2 is None):
        raise ValueError("give the area: image= (its data's area) or area_deg2=, one of them")
    if len(reports) > 1 and len(reports) != len(images):
        raise ValueError(f"completeness: one injection report, or one per image ({len(images)} "
                         f"images); received {len(reports)}")
    if visibility_snr is not None and (reports or not images):
        raise ValueError("visibility_snr: the images, and no completeness (the visibility "
                         "area replaces source injection's)")
    if visibility_snr is None and (primary_beam is not None or pb_min is not None):
        raise ValueError("primary_beam, pb_min: for the visibility area (visibility_snr)")
    if unfold and len(reports) != 1:
        raise ValueError("unfold: one injection report (its injected.ecsv holds the "
                         "response); received "
                         f"{len(reports)}")
    if visibility_snr is None and noise_box is not None:
        raise ValueError("noise_box: for the visibility area (visibility_snr)")
    beams = list(primary_beam) if isinstance(primary_beam, (list, tuple)) else [primary_beam]
    beams = beams * max(len(images), 1) if len(beams) == 1 else beams
    if len(beams) != max(len(images), 1):
        raise ValueError(f"primary_beam: one, or one per image ({len(images)}); received "
                         f"{len(beams)}")
    pbs = [finding_beam(b, pb_min) for b in beams]
    t = selected_rows(read_catalogue(catalogue), select, os.fspath(catalogue))
    name = os.fspath(catalogue)
    box = as_int(noise_box if noise_box is not None else t.meta.get("noise_box", 128),
                 "noise_box" if noise_box is not None else f"{name}: meta noise_box", minimum=8)
    flux = column_values(t, "flux", name)  # its aliases and units, in Jy
    if flux is None:
        raise CatalogueError(f"{name}: no flux column to count (flux, or another finder's "
                             "name for it such as Total_flux)")
    rel = np.asarray(t["reliability"], np.float64) if "reliability" in t.colnames else None
    comps = [read_completeness(r) for r in reports]
    if "pb" in t.colnames and any(not _through_beam(r) for r in reports):
        warnings.warn(f"{name}: its fluxes were corrected for the primary beam, but the "
                      "injection's completeness is by apparent flux (made without "
                      "'inject --pb'): the faint bins are corrected with the wrong curve",
                      UserWarning, stacklevel=2)
    if any(not _same_noise_rule(r, t.meta) for r in reports):
        ours = "adaptive_rms" in t.meta
        warnings.warn(f"{name}: made {'with' if ours else 'without'} --adaptive-rms (the noise "
                      f"map raised around bright sources), its completeness by an injection "
                      f"{'without' if ours else 'with'} it: near bright sources they differ; "
                      "inject with the same option", UserWarning, stacklevel=2)
    if "pb" in t.colnames and not comps and visibility_snr is None:
        warnings.warn(f"{name}: its fluxes were corrected for the primary beam, whose falling "
                      "sensitivity hides faint sources away from the centre: counted over the "
                      "whole area without a completeness, the faint bins come out low; give "
                      "the completeness of 'cianna-jax inject --pb' on this image",
                      UserWarning, stacklevel=2)
    injected = _injected(reports[0]) if unfold else None
    # unfolding: the true fluxes' bins reach the faintest injected (the sources boosted
    # into the catalogue's faintest bins come from below them)
    edges = count_edges(flux if injected is None else np.concatenate(
        [flux, np.asarray(injected["flux_in"], np.float64)]), per_decade)
    comp, own, parts = (comps[0] if comps else None), None, None
    if not images:
        area = as_bounded_float(area_deg2, "area_deg2") * (math.pi / 180.0) ** 2
    with ExitStack() as stack:
        imgs = [stack.enter_context(open_image(p, hdu)) for p in images]
        if visibility_snr is not None:  # (one image, or a mosaic's: each on what it owns)
            vis = mosaic_visibility(imgs, snr=visibility_snr, beams=pbs, noise_box=box)
            peak = column_values(t, "peak", name)
            own = vis.fraction(flux if peak is None else peak)  # (a point: peak = flux)
            comp = (edges, vis.fraction(np.sqrt(edges[:-1] * edges[1:])))
            snr = column_values(t, "snr", name)
            if snr is not None:  # the sample the areas hold for: those above the cut
                flux = np.where(snr >= visibility_snr, flux, np.nan)
        if len(imgs) == 1:
            area = image_area_sr(imgs[0])
        elif imgs:
            owned = owned_areas_sr(imgs)
            area = float(owned.sum())
            parts = dict(zip(image_names(images), map(float, owned)))
            if len(comps) > 1:
                ra, dec = column_values(t, "ra", name), column_values(t, "dec", name)
                if ra is None or dec is None:
                    raise CatalogueError(f"{name}: ra and dec are needed to give each source "
                                         "the completeness of its own image")
                owner = nearest_centre_image(ra, dec, imgs, data_only=False)
                own = np.full(flux.shape, np.nan)
                for i, cmp in enumerate(comps):
                    own[owner == i] = completeness_at(flux[owner == i], *cmp)
                mid = np.sqrt(edges[:-1] * edges[1:])  # the areas' mean, for empty bins
                comp = (edges, sum(a * completeness_at(mid, *cmp) for a, cmp in
                                   zip(owned, comps)) / max(area, 1e-300))
    c = source_counts(flux, area, edges=edges, reliability=rel, completeness=comp,
                      min_completeness=min_completeness, per_source=own)
    if injected is not None:
        c = _unfolded(c, flux, rel, injected, min_completeness)
    return c if parts is None else replace(c, image_areas_sr=parts)


def _injected(report: str | os.PathLike) -> Any:
    """An injection report's ``injected.ecsv`` (checked for the columns unfolding needs)."""
    p = os.fspath(report)
    path = os.path.join(p if os.path.isdir(p) else os.path.dirname(p), "injected.ecsv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"unfold: {path} not found (the injection's sources, which "
                                "'cianna-jax inject' writes beside completeness_by_flux.ecsv)")
    inj = read_catalogue(path)
    need = ("flux_in", "flux_out", "found", "near_source")
    if not set(need) <= set(inj.colnames):
        raise CatalogueError(f"{path}: needs the columns {', '.join(need)}")
    return inj


def _unfolded(c: SourceCounts, flux: np.ndarray, rel: np.ndarray | None, inj: Any,
              min_completeness: float) -> SourceCounts:
    """``c`` with its corrected counts, errors and completeness those of the counts
    unfolded through the injection ``inj``'s response (:mod:`.unfolding`)."""
    from .unfolding import UNFOLD_NOTE, response_matrix, unfold

    scored = ~np.asarray(inj["near_source"], bool)  # (as the completeness counts them)
    R, _ = response_matrix(*(np.asarray(inj[k])[scored] for k in ("flux_in", "flux_out",
                                                                  "found")), c.edges)
    f = np.asarray(flux, np.float64)
    r = np.ones_like(f) if rel is None else np.nan_to_num(rel, nan=1.0)
    b = np.digitize(f, c.edges) - 1
    k = np.isfinite(f) & (f > 0) & (b >= 0) & (b < c.edges.size - 1)
    nb = c.edges.size - 1
    obs = np.bincount(b[k], weights=r[k], minlength=nb)
    var = np.bincount(b[k], weights=r[k] ** 2, minlength=nb)
    t, err = unfold(obs, R, variance=var)
    eps = R.sum(axis=1)
    return replace(c, n_corrected=np.nan_to_num(t), n_corrected_err=np.nan_to_num(err),
                   completeness=eps, complete=eps >= min_completeness, correction=UNFOLD_NOTE)


def _injection_settings(report: str | os.PathLike) -> dict | None:
    """An injection report's settings (its folder's ``injection.json``), None when they
    cannot be read (a lone table)."""
    import json

    p = os.fspath(report)
    settings = os.path.join(p if os.path.isdir(p) else os.path.dirname(p), "injection.json")
    try:
        with open(settings) as fh:
            got = json.load(fh)
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) else None


def _through_beam(report: str | os.PathLike) -> bool:
    """Whether an injection report was made through a primary beam (``inject --pb``); True
    when that cannot be told (a lone table)."""
    s = _injection_settings(report)
    return s is None or "primary_beam" in s


def _same_noise_rule(report: str | os.PathLike, meta: Any) -> bool:
    """Whether an injection report's noise map was raised around bright sources as the
    catalogue's was (``adaptive_rms`` in both or in neither); True when that cannot be
    told."""
    s = _injection_settings(report)
    return s is None or ("adaptive_rms" in s) == ("adaptive_rms" in meta)


def _paths(value: Any) -> list:
    """None, one path or several -> a list of paths."""
    if value is None:
        return []
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)
