"""A catalogue's angular clustering, measured as a survey paper measures it.

The sources of a catalogue above a flux cut, inside its image's data, against randoms with
the same selection (:mod:`.randoms`): ``w(theta)`` with jackknife errors and a power-law fit
(:mod:`.clustering`), the randoms kept for other codes, and optionally the same measurement
against uniform randoms, to show what the noise pattern alone would add.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import CatalogueError, column_values, read_catalogue, selected_rows
from .clustering import (
    Correlation,
    angular_correlation,
    fit_power_law,
    footprint_radius,
    log_edges,
)
from .cross_clustering import angular_cross_correlation
from .fits_image import open_image
from .footprint import Footprint, MosaicFootprint
from .galaxy_bias import fit_bias
from .halofit import power_function
from .limber import ClusteringLength
from .primary_beam import finding_beam
from .randoms import (
    Detection,
    Randoms,
    draw_randoms,
    intrinsic_weights,
    visible_fraction,
)

__all__ = ["ClusteringResult", "measure_clustering", "half_area_flux", "format_clustering"]


@dataclass(frozen=True)
class ClusteringResult:
    """``correlation`` (its ``table()`` the output), the ``randoms`` used, ``naive``: the
    same sources against uniform randoms (when asked), ``selected``: the catalogue's rows
    measured (a boolean mask)."""

    correlation: Correlation
    randoms: Randoms
    naive: Correlation | None
    selected: np.ndarray

    def table(self) -> Any:
        t = self.correlation.table()
        if self.naive is not None:
            t["w_uniform"] = self.naive.w
            t["w_uniform_err"] = self.naive.w_err
        return t


def half_area_flux(footprint: Footprint | MosaicFootprint, detection: Detection,
                   rng: np.random.Generator, lo: float, hi: float) -> float:
    """The peak (Jy/beam) a source needs to be found over half the data's area."""
    grid = np.geomspace(lo, hi, 256)
    frac = visible_fraction(footprint, detection, grid, rng)
    if frac.max() < 0.5:
        raise ValueError("flux_min: no flux in the catalogue is found over half the area; "
                         "give flux_min")
    return float(grid[np.argmax(frac >= 0.5)])


def measure_clustering(catalogue: str | os.PathLike, image: Any, *, rms_map: Any = None,
                       injection: str | os.PathLike | None = None, snr: float = 5.0,
                       flux_min: float | None = None, primary_beam: Any = None,
                       pb_min: float | None = None, max_rms: float | None = None,
                       noise_box: int | None = None,
                       hdu: int | str | None = None, bins: int = 10,
                       theta_min: float | None = None, theta_max: float | None = None,
                       estimator: str = "landy-szalay", jackknife: int = 16,
                       gamma: float | None = 1.8, fit: bool = True,
                       randoms_per_source: float = 10.0, naive: bool = False,
                       nz: tuple[np.ndarray, np.ndarray] | None = None,
                       epsilon: float | None = None, cosmology: str = "Planck18",
                       cross: str | os.PathLike | None = None,
                       cross_randoms: str | os.PathLike | None = None,
                       bias: bool = False, bias_scale: float = 5.0,
                       nonlinear: bool = False, seed: int = 0,
                       select: str | None = None) -> ClusteringResult:
    """``w(theta)`` of a catalogue's sources (its ``ra``, ``dec``, ``flux``; ``peak`` for
    the detection, else the flux: point sources) found on ``image`` (a source list rather
    than Gaussians: a source's components would add pairs at small separations); several
    images (a mosaic's catalogue, as ``predict`` merges them): each position belongs to the
    image whose centre is nearest among those with data there, with that image's rms
    (``rms_map`` and ``primary_beam``: one for all, or one per image).

    Selection, shared by the randoms: inside the image's data, ``flux`` >= ``flux_min`` (Jy;
    default: the peak found over half the area), found by ``injection``'s completeness by
    SNR (``cianna-jax inject``'s report) or, without one, ``peak >= snr`` x the local rms
    (the sources below it left out). The rms: ``rms_map`` (``predict --rms-map``'s: needed
    for a catalogue made with ``--adaptive-rms``) or the image's noise map in boxes of
    ``noise_box`` (default: the catalogue's, from its metadata); ``primary_beam`` /
    ``pb_min``: those of a catalogue corrected for the beam (``predict --pb``); ``max_rms``
    (Jy/beam): only where that rms is at most this (sources and randoms).

    ``bins`` logarithmic bins from ``theta_min`` (degrees; default 4 beams, or 1 arcmin
    without a beam) to ``theta_max`` (default the footprint's radius); ``estimator`` (see
    :data:`.clustering.ESTIMATORS`), ``jackknife`` regions; a power law fitted (``fit``)
    with ``gamma`` fixed or free (``None``); ``randoms_per_source`` randoms per selected
    source; ``naive``: also against uniform randoms. ``nz``: the sources' redshift
    distribution ``(z, N)``, for the comoving clustering length ``r0`` of the fitted power law
    by Limber's equation (:mod:`.limber`: ``epsilon`` the clustering's evolution, default
    constant in comoving coordinates; distances in ``cosmology``), in the metadata; with
    ``bias``, also the sources' linear bias against the matter's correlation for that
    ``N(z)`` over the bins beyond ``bias_scale`` h^-1 Mpc (:mod:`.galaxy_bias`; with
    ``nonlinear``, against halofit's non-linear matter spectrum, :mod:`.halofit`).

    ``select`` (``"COLUMN=V1,V2"``, :func:`.catalogue.selected_rows`): the clustering of
    that subpopulation only, its randoms drawn from its own fluxes.

    ``cross``: another catalogue (``ra``, ``dec``: galaxies, quasars, clusters): instead,
    the cross-correlation of the selected sources with its objects on the image's data
    (:mod:`.cross_clustering`), by Landy & Szalay's cross estimator with its randoms
    (``cross_randoms``, a catalogue of ``ra``, ``dec``), else by ``D1D2 / R1D2 - 1``."""
    rate = as_bounded_float(randoms_per_source, "randoms_per_source")
    seed = as_int(seed, "seed")
    rng = np.random.default_rng(seed)
    detection = (Detection.from_injection(injection) if injection is not None
                 else Detection.threshold(snr))
    if nz is not None and not fit and not bias:
        raise ValueError("nz: the clustering length comes from the power-law fit (fit=True)")
    if bias and (nz is None or cross is not None):
        raise ValueError("bias: the sources' own correlation and their redshift distribution "
                         "(nz), not a cross-correlation")
    if theta_min is not None and theta_max is not None:  # refused before the work
        log_edges(theta_min, theta_max, bins)
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    maps = _per_image(rms_map, len(images), "rms_map")
    beams = [finding_beam(b, pb_min) for b in _per_image(primary_beam, len(images),
                                                         "primary_beam")]
    if cross is None and cross_randoms is not None:
        raise ValueError("cross_randoms: the randoms of the cross catalogue (cross)")
    if cross is not None and nz is not None:
        raise ValueError("nz: the clustering length is for a catalogue's own correlation, "
                         "not a cross-correlation")
    src = _read_sources(catalogue, rms_map, primary_beam, select)
    t, ra, dec, flux, peak = src.table, src.ra, src.dec, src.flux, src.peak
    box = noise_box if noise_box is not None else t.meta.get("noise_box", 128)
    with ExitStack() as stack:
        imgs = [stack.enter_context(open_image(p, hdu)) for p in images]
        parts = [Footprint(im, rms_map=None if m is None else stack.enter_context(
            open_image(m)), noise_box=box, max_rms=max_rms, **b)
            for im, m, b in zip(imgs, maps, beams)]
        fp = parts[0] if len(parts) == 1 else MosaicFootprint(parts)
        sel, inside, fmin = _select(fp, detection, src, flux_min, rng, images)
        n_sel = int(sel.sum())
        vis = visible_fraction(fp, detection, peak[sel], rng)
        weights = intrinsic_weights(vis)
        rnd = draw_randoms(fp, detection, flux[sel], peak[sel], weights,
                           max(int(math.ceil(rate * n_sel)), 100), rng)
        if theta_min is None:
            beam_sizes = [im.beam.bmaj for im in imgs if im.beam is not None]
            theta_min = 4.0 * max(beam_sizes) / 3600.0 if beam_sizes else 1.0 / 60.0
        if theta_max is None:
            theta_max = footprint_radius(rnd.ra, rnd.dec)
        edges = log_edges(theta_min, theta_max, bins)
        measure = _correlator(ra[sel], dec[sel], edges, fp, estimator, jackknife, cross,
                              cross_randoms)
        corr = measure(rnd.ra, rnd.dec)
        flat = None
        if naive:
            flat = measure(*fp.sample(rnd.ra.size, rng))
        area = fp.area_deg2(rng)
        meta = {"catalogue": src.name, "image": ", ".join(map(os.fspath, images)),
                "flux_min_jy": fmin,
                "detection": detection.describe(), "rms": fp.rms_source,
                "peak_from": "flux (no peak column: point sources)" if src.point else "peak",
                "n_catalogue": len(t), "n_on_data": int(inside.sum()), "n_selected": n_sel,
                "randoms_drawn": rnd.drawn, "randoms_kept": int(rnd.ra.size),
                "weights_floored": int(np.sum(vis < 0.02)), "area_deg2": area,
                "density_per_deg2": n_sel / area, "seed": seed,
                "jackknife_regions": corr.meta["jackknife_regions"]}
        if any(beams):
            meta["primary_beam"] = ", ".join(b["primary_beam"].description for b in beams if b)
        if max_rms is not None:
            meta["max_rms"] = float(max_rms)
        if cross is not None:
            meta.update(cross=os.fspath(cross), n_cross=corr.meta["n_second"],
                        cross_randoms=None if cross_randoms is None else os.fspath(cross_randoms),
                        n_cross_randoms=corr.meta["n_second_randoms"])
    if fit:
        corr = _with_fit(corr, gamma)
    if nz is not None and corr.fit is not None:  # (no fit: warned by _with_fit)
        f = corr.fit
        meta["clustering_length"] = ClusteringLength.from_fit(
            f.amplitude, f.amplitude_err, f.gamma, *nz, epsilon=epsilon,
            cosmology=cosmology).as_dict()
    if bias:
        power = power_function(cosmology) if nonlinear else None
        meta["bias"] = fit_bias(corr, *nz, cosmology=cosmology, scale_mpc_h=bias_scale,
                                power=power,
                                power_model="halofit" if nonlinear else "linear").as_dict()
    corr = replace(corr, meta=meta)
    return ClusteringResult(correlation=corr, randoms=rnd, naive=flat, selected=sel)


@dataclass(frozen=True)
class _Sources:
    """A catalogue's positions, fluxes and peaks (the flux where it has none: ``point``)."""

    table: Any
    name: str
    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    point: bool


def _read_sources(catalogue: str | os.PathLike, rms_map: Any, primary_beam: Any,
                  select: str | None = None) -> _Sources:
    """The catalogue's columns (its ``select`` rows), with warnings where the randoms would
    miss how it was made (an adaptive noise map, a primary beam not given)."""
    name = os.fspath(catalogue)
    t = selected_rows(read_catalogue(catalogue), select, name)
    ra, dec = column_values(t, "ra", name), column_values(t, "dec", name)
    flux = column_values(t, "flux", name)
    if ra is None or dec is None or flux is None:
        raise CatalogueError(f"{name}: ra, dec and flux are needed (or another finder's names "
                             "for them, such as RA, DEC, Total_flux)")
    peak = column_values(t, "peak", name)
    if "adaptive_rms" in t.meta and rms_map is None:
        warnings.warn(f"{name}: made with --adaptive-rms (the noise map raised around bright "
                      "sources) but no rms_map given: the randoms see the plain noise map; "
                      "give predict --rms-map's image", UserWarning, stacklevel=3)
    if "pb" in t.colnames and primary_beam is None:
        warnings.warn(f"{name}: its fluxes were corrected for a primary beam, which is not "
                      "given: the randoms do not see the sensitivity fall away from the "
                      "centre; give the beam (as predict --pb)", UserWarning, stacklevel=3)
    return _Sources(t, name, ra, dec, flux, flux.copy() if peak is None else peak, peak is None)


def _select(fp: Footprint | MosaicFootprint, detection: Detection, src: _Sources,
            flux_min: float | None, rng: np.random.Generator, images: list
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(selected, on the footprint, flux cut)``: the sources on the footprint at or above
    the flux cut (default: the peak found over half the area) and, with a hard threshold,
    at or above it at their place."""
    with np.errstate(invalid="ignore"):
        inside = fp.contains(src.ra, src.dec)
    sigma = np.where(inside, fp.sigma(src.ra, src.dec), np.nan)
    flux, peak = src.flux, src.peak
    good = inside & np.isfinite(flux) & (flux > 0) & np.isfinite(peak) & (peak > 0)
    if not good.any():
        raise CatalogueError(f"{src.name}: none of its sources lies on the data of "
                             f"{', '.join(map(os.fspath, images))} with a positive flux")
    if flux_min is None:
        flux_min = half_area_flux(fp, detection, rng, peak[good].min(), peak[good].max())
    fmin = as_bounded_float(flux_min, "flux_min")
    sel = good & (flux >= fmin)
    if detection.completeness is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            sel &= peak / sigma >= detection.snr
    if sel.sum() < 10:
        raise CatalogueError(f"{src.name}: {int(sel.sum())} sources pass the selection (flux "
                             f">= {fmin:.3g} Jy, {detection.describe()}); too few to count "
                             "pairs")
    return sel, inside, fmin


def _correlator(ra: np.ndarray, dec: np.ndarray, edges: np.ndarray,
                fp: Footprint | MosaicFootprint, estimator: str, jackknife: int,
                cross: Any, cross_randoms: Any):
    """``(ra_r, dec_r) -> Correlation``: the sources' correlation against given randoms, or
    their cross-correlation with ``cross``'s objects on the footprint."""
    if cross is None:
        return lambda r_ra, r_dec: angular_correlation(ra, dec, r_ra, r_dec, edges,
                                                       estimator=estimator,
                                                       jackknife=jackknife)
    other = _on_data(fp, cross, "cross")
    kw = {} if cross_randoms is None else dict(
        zip(("ra_r2", "dec_r2"), _on_data(fp, cross_randoms, "cross_randoms")))
    return lambda r_ra, r_dec: angular_cross_correlation(ra, dec, r_ra, r_dec, *other, edges,
                                                         jackknife=jackknife, **kw)


def _per_image(value: Any, n: int, name: str) -> list:
    """One value per image: a list of ``n``, or one value (or None) for all."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return list(value) * n
        if len(value) != n:
            raise ValueError(f"{name}: one, or one per image ({n}); received {len(value)}")
        return list(value)
    return [value] * n


def _on_data(fp: Footprint | MosaicFootprint, path: str | os.PathLike, what: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec of a catalogue's objects on the footprint's data."""
    t = read_catalogue(path)
    name = os.fspath(path)
    ra, dec = column_values(t, "ra", name), column_values(t, "dec", name)
    if ra is None or dec is None:
        raise CatalogueError(f"{what}: {name} has no ra and dec (or another name for them)")
    ok = np.isfinite(ra) & np.isfinite(dec)
    ra, dec = ra[ok], dec[ok]
    inside = fp.contains(ra, dec)
    if inside.sum() < 2:
        raise CatalogueError(f"{what}: {int(inside.sum())} of {name}'s {ra.size} objects lie "
                             "on the image's data")
    return ra[inside], dec[inside]


def _with_fit(corr: Correlation, gamma: float | None) -> Correlation:
    try:
        return replace(corr, fit=fit_power_law(corr, gamma))
    except ValueError as err:
        warnings.warn(f"no power law fitted: {err}", UserWarning, stacklevel=3)
        return corr


def format_clustering(res: ClusteringResult) -> str:
    """The measurement in a few lines and one per bin."""
    c = res.correlation
    m = c.meta
    lines = [f"{m['n_selected']} of {m['n_catalogue']} sources (flux >= "
             f"{m['flux_min_jy'] * 1e6:.4g} uJy, {m['detection']}; {m['rms']}) over "
             f"{m['area_deg2']:.4g} deg^2 ({m['density_per_deg2']:.4g} per deg^2); "
             f"{c.n_random} randoms with their selection ({m['randoms_drawn']} drawn), "
             f"{c.estimator}, {m['jackknife_regions']} jackknife regions"]
    if "cross" in m:
        lines.append(f"cross-correlated with the {m['n_cross']} objects of {m['cross']} on the "
                     "image's data" + (f" ({m['n_cross_randoms']} randoms)"
                                       if m["cross_randoms"] else " (no randoms: D1D2/R1D2 - 1)"))
    if c.fit is not None:
        f = c.fit
        lines.append(f"w(theta) = A (theta/deg)^(1-gamma): A = {f.amplitude:.3e} +- "
                     f"{f.amplitude_err:.2e}, gamma = {f.gamma:.2f}"
                     + (" (fixed)" if f.gamma_fixed else f" +- {f.gamma_err:.2f}")
                     + f", integral constraint {f.integral_constraint:.2e}, chi2 "
                     f"{f.chi2:.1f} for {f.as_dict()['dof']} dof")
    r0 = m.get("clustering_length")
    if r0 is not None:
        value = (f"r0 = {r0['r0_mpc']:.2f} +- {r0['r0_err_mpc']:.2f} Mpc ({r0['r0_h_mpc']:.2f} "
                 f"+- {r0['r0_err_h_mpc']:.2f} Mpc/h)" if math.isfinite(r0["r0_mpc"])
                 else "no r0 (the amplitude is not positive)")
        lines.append(f"clustering length (Limber, N(z) median z {r0['z_median']:.2f}, epsilon "
                     f"{r0['epsilon']:g}, {r0['cosmology']}): {value}")
    b = m.get("bias")
    if b is not None:
        lines.append(f"linear bias against the matter ({b.get('power_model', 'linear')} "
                     f"spectrum; bins beyond {b['scale_mpc_h']:g} Mpc/h, "
                     f"{b['theta_min_deg'] * 60:.3g} arcmin at z {b['z_median']:.2f}): b = "
                     f"{b['bias']:.2f} +- {b['bias_err']:.2f}, chi2 {b['chi2']:.1f} for "
                     f"{b['dof']} dof")
    head = f"{'theta (arcmin)':>15}{'D1D2' if 'cross' in m else 'DD':>10}{'w':>11}{'+-':>10}"
    if res.naive is not None:
        head += f"{'w uniform':>12}{'+-':>10}"
    lines.append(head)
    for i in range(c.w.size):
        pairs = c.dd[i] / (1 if "cross" in m else 2)  # (DD counts ordered pairs)
        row = (f"{c.edges[i] * 60:7.3g}-{c.edges[i + 1] * 60:<7.3g}{pairs:>10.0f}"
               f"{c.w[i]:>11.4f}{c.w_err[i]:>10.4f}")
        if res.naive is not None:
            row += f"{res.naive.w[i]:>12.4f}{res.naive.w_err[i]:>10.4f}"
        lines.append(row)
    return "\n".join(lines)
