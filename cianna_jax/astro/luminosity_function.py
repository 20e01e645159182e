"""The radio luminosity function by the 1/Vmax method, with the survey's sky coverage.

``Phi(L, z)``, sources per Mpc^3 per dex of spectral luminosity, in bins of redshift and
luminosity: each source counts ``1 / V_max``, the comoving volume within its redshift bin
where it would still be in the catalogue (Schmidt 1968), here weighted by the sky area where
its flux at each redshift would be detected (the area-weighted form of radio surveys,
e.g. Novak et al. 2017, Smolcic et al. 2017):

    V_max = int_{z1}^{min(z2, ...)} Omega(S(z)) dV/dz/dOmega dz,
    S(z) = S (D_L(z_s) / D_L(z))^2 ((1 + z) / (1 + z_s))^(1 + alpha),

``Omega(S)`` the coverage: a flux limit over an area, the visibility area of an image's noise
map (:mod:`.visibility`) or source injection's completeness. Sources without a redshift are
made up for by weighting those with one in their flux bin (``n / n_with_z``). Errors: Poisson
(``sqrt(sum 1/V_max^2)``). Luminosities as :mod:`.luminosity` makes them (K-corrected with a
spectral index).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import CatalogueError, column_values, make_table, read_catalogue, selected_rows
from .distances import distance
from .fits_image import open_image
from .luminosity import cosmology_by_name, radio_luminosity
from .primary_beam import finding_beam
from .source_counts import completeness_at, image_area_sr, read_completeness
from .visibility import mosaic_visibility

__all__ = ["Coverage", "LFSample", "LuminosityFunction", "luminosity_function", "z_completeness_weights",
           "luminosity_function_figure", "catalogue_luminosity_function",
           "simulate_population"]


@dataclass(frozen=True)
class Coverage:
    """The sky area (sr) where a source of a given true peak (Jy/beam) is detected:
    ``fraction(peak)`` times ``area_sr``. ``min_fraction``: the fraction from which a
    luminosity bin counts as complete (0: seen anywhere, as a flux limit or an image's
    visibility areas; a completeness that never falls to 0 takes more, e.g. 0.5)."""

    area_sr: float
    fraction: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    description: str = ""
    min_fraction: float = 0.0

    @classmethod
    def flux_limit(cls, area_sr: float, limit_jy: float) -> Coverage:
        """Every source at or above ``limit_jy`` over ``area_sr``, none below."""
        lim = as_bounded_float(limit_jy, "flux_limit")

        def frac(p):
            return np.where(np.asarray(p, np.float64) >= lim, 1.0, 0.0)

        return cls(as_bounded_float(area_sr, "area_sr"), frac,
                   f"flux limit {lim:.3g} Jy over {area_sr * (180 / math.pi) ** 2:.4g} deg^2")

    def area(self, peak: np.ndarray) -> np.ndarray:
        return self.area_sr * np.nan_to_num(np.asarray(self.fraction(peak), np.float64))


def z_completeness_weights(flux: np.ndarray, has_z: np.ndarray, per_decade: int = 5
                           ) -> np.ndarray:
    """Per source, the number of sources over those with a redshift in its flux bin
    (``per_decade`` bins per decade): the weight that makes up for the missing redshifts
    (NaN for a source in a bin with no redshift)."""
    f = np.asarray(flux, np.float64)
    good = np.isfinite(f) & (f > 0)
    w = np.full(f.shape, np.nan)
    if not good.any():
        return w
    lo, hi = np.log10(f[good].min()), np.log10(f[good].max())
    edges = np.linspace(lo, hi + 1e-9, max(1, int(math.ceil((hi - lo) * per_decade))) + 1)
    k = np.clip(np.searchsorted(edges, np.log10(np.where(good, f, 1.0)), side="right") - 1,
                0, edges.size - 2)
    n_all = np.bincount(k[good], minlength=edges.size - 1).astype(np.float64)
    n_z = np.bincount(k[good & has_z], minlength=edges.size - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = n_all / n_z
    w[good] = ratio[k[good]]
    return np.where(np.isfinite(w), w, np.nan)


@dataclass(frozen=True)
class LFSample:
    """The sources a luminosity function counted and their selection, for a fit on the
    sources themselves (:func:`.lumfunc_fit.fit_luminosity_function`'s maximum
    likelihood): ``logl`` (log10 W/Hz), ``z`` and ``weights`` [n]; the ``coverage`` and the
    ranges counted (``z_range``, ``logl_range``); ``peak_ratio``, the sources' median
    peak over flux (the coverage is by peak); ``alpha``, their median spectral index, and
    the frequencies and cosmology that turn a luminosity at a redshift into a flux."""

    logl: np.ndarray
    z: np.ndarray
    weights: np.ndarray
    coverage: Coverage
    z_range: tuple[float, float]
    logl_range: tuple[float, float]
    peak_ratio: float = 1.0
    alpha: float = -0.7
    freq_hz: float | None = None
    rest_freq_hz: float | None = None
    cosmology: str = "Planck18"

    def flux(self, logl: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The flux (Jy) of luminosity ``10^logl`` at redshift ``z`` (broadcast)."""
        logl, z = np.broadcast_arrays(np.asarray(logl, np.float64), np.asarray(z, np.float64))
        one = radio_luminosity(np.ones(z.shape), z, alpha=self.alpha, freq_hz=self.freq_hz,
                               rest_freq_hz=self.rest_freq_hz, cosmology=self.cosmology)
        return 10.0 ** logl / one


@dataclass(frozen=True)
class LuminosityFunction:
    """``phi`` and ``phi_err`` (Mpc^-3 dex^-1), ``n`` sources and ``n_weighted`` (with the
    redshift weights) per ``[z bin, log L bin]``; ``complete``: the bin's faintest
    luminosity is seen out to the bin's far redshift (over some of the area, or the
    coverage's ``min_fraction`` of it); ``vmax`` per
    source (Mpc^3, NaN outside the bins); ``z_mean`` per bin, its sources' redshifts
    weighted as they count (``w / V_max``: where a model is compared with the bin);
    ``phi_err_z`` the part of ``phi_err`` the redshifts' errors make (None: none given);
    ``sample`` the counted sources and their selection (:class:`LFSample`)."""

    z_edges: np.ndarray
    logl_edges: np.ndarray
    n: np.ndarray
    n_weighted: np.ndarray
    phi: np.ndarray
    phi_err: np.ndarray
    complete: np.ndarray
    vmax: np.ndarray
    z_mean: np.ndarray | None = None
    phi_err_z: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    sample: LFSample | None = field(default=None, repr=False)

    def table(self) -> Any:
        """One row per (z bin, L bin) with sources: bins, counts, phi, its error, log phi."""
        iz, il = np.nonzero(self.n > 0)
        phi = self.phi[iz, il]
        with np.errstate(divide="ignore", invalid="ignore"):
            cols = {"z_min": self.z_edges[iz], "z_max": self.z_edges[iz + 1],
                    "log_l_min": self.logl_edges[il], "log_l_max": self.logl_edges[il + 1],
                    "log_l": 0.5 * (self.logl_edges[il] + self.logl_edges[il + 1]),
                    "n": self.n[iz, il], "n_weighted": self.n_weighted[iz, il],
                    "phi": phi, "phi_err": self.phi_err[iz, il], "log_phi": np.log10(phi),
                    "log_phi_err": self.phi_err[iz, il] / (phi * math.log(10.0)),
                    "complete": self.complete[iz, il]}
            if self.z_mean is not None:
                cols["z_mean"] = self.z_mean[iz, il]
            if self.phi_err_z is not None:
                cols["phi_err_z"] = self.phi_err_z[iz, il]
        t = make_table(cols, meta={"luminosity_function": dict(self.meta)})
        t["phi"].unit = t["phi_err"].unit = "Mpc-3"
        t["phi"].description = "sources per Mpc^3 per dex of luminosity (1/Vmax)"
        t["log_l"].description = "log10 of the bin's middle spectral luminosity (W/Hz)"
        return t


def luminosity_function(flux: np.ndarray, z: np.ndarray, coverage: Coverage, *,
                        z_edges: np.ndarray, logl_edges: np.ndarray | None = None,
                        dex: float = 0.4, alpha: np.ndarray | float = -0.7,
                        peak: np.ndarray | None = None, weights: np.ndarray | None = None,
                        freq_hz: float | None = None, rest_freq_hz: float | None = None,
                        cosmology: str = "Planck18", samples: int = 128
                        ) -> LuminosityFunction:
    """``Phi`` of sources of ``flux`` (Jy; ``peak`` Jy/beam for the coverage, else the
    flux) at redshifts ``z`` with spectral indices ``alpha``, over ``coverage``, in redshift
    bins ``z_edges`` and luminosity bins ``logl_edges`` (log10 W/Hz; default ``dex`` wide
    over the sources' range); ``weights`` per source (default 1: e.g.
    :func:`z_completeness_weights`); luminosities at ``rest_freq_hz`` (default the observed
    frequency); ``samples`` redshifts per bin for the V_max integrals."""
    f = np.asarray(flux, np.float64)
    zz = np.asarray(z, np.float64)
    a = np.broadcast_to(np.asarray(alpha, np.float64), f.shape).astype(np.float64)
    pk = f if peak is None else np.asarray(peak, np.float64)
    w = np.ones(f.shape) if weights is None else np.asarray(weights, np.float64)
    ze = np.asarray(z_edges, np.float64)
    if ze.ndim != 1 or ze.size < 2 or ze[0] < 0 or np.any(np.diff(ze) <= 0):
        raise ValueError(f"z_edges: increasing redshifts from 0 or above; received {ze!r}")
    if not (f.shape == zz.shape == pk.shape == w.shape):
        raise ValueError("flux, z, peak and weights: one value per source")
    lum = radio_luminosity(f, zz, alpha=a, freq_hz=freq_hz, rest_freq_hz=rest_freq_hz,
                           cosmology=cosmology)
    with np.errstate(divide="ignore", invalid="ignore"):
        logl = np.log10(lum)
    use = (np.isfinite(logl) & np.isfinite(w) & (w > 0) & (zz >= ze[0]) & (zz < ze[-1])
           & np.isfinite(pk) & (pk > 0))
    if not use.any():
        raise ValueError("no source with a flux, a redshift within the bins and a weight")
    if logl_edges is None:
        step = as_bounded_float(dex, "dex")
        lo = math.floor(logl[use].min() / step) * step
        hi = math.ceil(logl[use].max() / step + 1e-9) * step
        logl_edges = np.arange(lo, hi + step / 2, step)
    le = np.asarray(logl_edges, np.float64)
    cosmo = cosmology_by_name(cosmology)
    d_l = np.full(f.shape, np.nan)
    d_l[use] = distance(cosmo, zz[use])
    vmax = np.full(f.shape, np.nan)
    iz = np.searchsorted(ze, zz, side="right") - 1
    for b in range(ze.size - 1):
        k = np.flatnonzero(use & (iz == b))
        if not k.size:
            continue
        grid = np.linspace(max(ze[b], 1e-4), ze[b + 1], int(samples))
        dvdz = cosmo.differential_comoving_volume(grid).to_value("Mpc3 / sr")
        dl = cosmo.luminosity_distance(grid).to_value("Mpc")
        # each source's peak at each redshift of the bin: [sources, samples]
        scale = ((d_l[k, None] / dl[None]) ** 2
                 * ((1 + grid[None]) / (1 + zz[k, None])) ** (1 + a[k, None]))
        area = coverage.area((pk[k, None] * scale).ravel()).reshape(scale.shape)
        vmax[k] = np.trapezoid(area * dvdz[None], grid, axis=1)
    il = np.searchsorted(le, logl, side="right") - 1
    inside = use & (il >= 0) & (il < le.size - 1) & (vmax > 0)
    shape = (ze.size - 1, le.size - 1)
    n, nw = np.zeros(shape, np.int64), np.zeros(shape)
    s1, s2 = np.zeros(shape), np.zeros(shape)
    np.add.at(n, (iz[inside], il[inside]), 1)
    np.add.at(nw, (iz[inside], il[inside]), w[inside])
    np.add.at(s1, (iz[inside], il[inside]), w[inside] / vmax[inside])
    np.add.at(s2, (iz[inside], il[inside]), (w[inside] / vmax[inside]) ** 2)
    sz = np.zeros(shape)
    np.add.at(sz, (iz[inside], il[inside]), zz[inside] * w[inside] / vmax[inside])
    width = np.diff(le)[None]
    # complete: the bin's faintest luminosity is seen at the bin's far redshift (over more
    # than the coverage's min_fraction)
    deepest = _deepest_flux(coverage, pk[use] if use.any() else f)
    l_lim = np.log10(radio_luminosity(np.full(ze.size - 1, deepest), ze[1:],
                                      alpha=float(np.median(a[use])), freq_hz=freq_hz,
                                      rest_freq_hz=rest_freq_hz, cosmology=cosmology))
    complete = le[:-1][None] >= l_lim[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        z_mean = np.where(s1 > 0, sz / s1, np.nan)
        ratio = float(np.nanmedian(pk[inside] / f[inside])) if inside.any() else 1.0
    sample = LFSample(logl=logl[inside], z=zz[inside], weights=w[inside], coverage=coverage,
                      z_range=(float(ze[0]), float(ze[-1])),
                      logl_range=(float(le[0]), float(le[-1])),
                      peak_ratio=ratio if math.isfinite(ratio) and ratio > 0 else 1.0,
                      alpha=float(np.median(a[inside])) if inside.any() else -0.7,
                      freq_hz=freq_hz, rest_freq_hz=rest_freq_hz, cosmology=cosmology)
    return LuminosityFunction(z_edges=ze, logl_edges=le, n=n, n_weighted=nw, phi=s1 / width,
                              phi_err=np.sqrt(s2) / width, complete=complete, vmax=vmax,
                              z_mean=z_mean,
                              meta={"coverage": coverage.description,
                                    "area_deg2": coverage.area_sr * (180 / math.pi) ** 2,
                                    "cosmology": str(cosmology), "n_used": int(inside.sum()),
                                    "deepest_flux_jy": deepest,
                                    "rest_freq_hz": rest_freq_hz or freq_hz},
                              sample=sample)


def simulate_population(phi: Callable[[np.ndarray], np.ndarray], area_sr: float,
                        rng: np.random.Generator, *, z_range: tuple[float, float] = (0.02, 2.2),
                        logl_range: tuple[float, float] = (20.5, 27.5), alpha: float = -0.7,
                        cosmology: str = "Planck18", samples: int = 3000,
                        evolution: tuple[float, float] = (0.0, 0.0)
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``(z, flux in Jy)`` of a population of luminosity function ``phi`` (a function of
    log10 L in W/Hz, Mpc^-3 dex^-1, at z = 0, over ``logl_range``) over ``area_sr``: a
    Poisson number of sources, redshifts by comoving volume, luminosities by ``phi``,
    fluxes K-corrected with ``alpha`` (as :func:`.luminosity.radio_luminosity` inverts
    them): for testing a survey's selection against a known function. ``evolution``
    ``(k_L, k_D)``: luminosities times ``(1 + z)^k_L`` and densities times
    ``(1 + z)^k_D`` (pure luminosity and density evolution; 0, 0: none)."""
    cosmo = cosmology_by_name(cosmology)
    k_l, k_d = (float(v) for v in evolution)
    lg = np.linspace(*logl_range, samples)
    zg = np.linspace(*z_range, samples)
    dv = np.asarray(cosmo.differential_comoving_volume(zg).to_value("Mpc3/sr")) \
        * (1 + zg) ** k_d
    p = np.asarray(phi(lg), np.float64)
    n = rng.poisson(as_bounded_float(area_sr, "area_sr") * np.trapezoid(dv, zg)
                    * np.trapezoid(p, lg))
    cz, cl = np.cumsum(dv), np.cumsum(p)
    z = np.interp(rng.uniform(size=n), cz / cz[-1], zg)
    logl = np.interp(rng.uniform(size=n), cl / cl[-1], lg) + k_l * np.log10(1 + z)
    d_l = distance(cosmo, z, unit="m")
    return z, 10 ** logl * (1 + z) ** (1 + alpha) / (4 * math.pi * d_l ** 2) / 1e-26


def _deepest_flux(coverage: Coverage, peaks: np.ndarray) -> float:
    """The faintest peak (Jy/beam) the coverage sees over some of its area and at least
    its ``min_fraction`` of it, searched from a thousandth of the sources' faintest to 100
    times it."""
    lo = float(np.nanmin(peaks))
    grid = lo * np.logspace(-3, 2, 501)
    area = coverage.area(grid)
    seen = (area > 0) & (area >= coverage.min_fraction * coverage.area_sr)
    return float(grid[np.argmax(seen)]) if seen.any() else lo


def luminosity_function_figure(lf: LuminosityFunction, *, title: str = "Luminosity function",
                               model: Callable[[np.ndarray, float], np.ndarray] | None = None,
                               model_label: str = "model") -> Any:
    """log Phi against log L per redshift bin with Poisson errors (hollow: incomplete bins);
    ``model``: a function of log L (W/Hz) and z giving Phi (e.g. a
    :class:`.lumfunc_fit.LumFuncFit`), drawn per redshift bin at its sources' mean
    redshift in the bin's colour."""
    from ._deps import require

    plt = require("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    mid = 0.5 * (lf.logl_edges[:-1] + lf.logl_edges[1:])
    for b in range(lf.z_edges.size - 1):
        has = lf.n[b] > 0
        label = f"{lf.z_edges[b]:g} <= z < {lf.z_edges[b + 1]:g} ({int(lf.n[b].sum())})"
        for comp, kw in ((True, {"label": label}), (False, {"mfc": "none"})):
            k = has & (lf.complete[b] == comp)
            if k.any():
                ax.errorbar(mid[k], lf.phi[b, k], yerr=lf.phi_err[b, k], fmt="o",
                            color=f"C{b}", capsize=2, **kw)
    if model is not None:
        fine = np.linspace(lf.logl_edges[0], lf.logl_edges[-1], 200)
        for b in range(lf.z_edges.size - 1):
            zb = (lf.z_mean[b][lf.n[b] > 0] if lf.z_mean is not None else np.array([]))
            z = float(np.nanmedian(zb)) if zb.size and np.isfinite(zb).any() else \
                0.5 * float(lf.z_edges[b] + lf.z_edges[b + 1])
            ax.plot(fine, model(fine, z), "-", color=f"C{b}", lw=1,
                    label=model_label if b == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("log10 L (W/Hz)")
    ax.set_ylabel("Phi (Mpc^-3 dex^-1)")
    ax.set_title(title)
    ax.legend(fontsize=8, title="hollow: incomplete", title_fontsize=8)
    fig.tight_layout()
    return fig


def catalogue_luminosity_function(
        catalogue: Any, *, z_column: str, image: Any = None, area_deg2: float | None = None,
        flux_limit: float | None = None, completeness: Any = None, snr: float = 5.0,
        primary_beam: Any = None, pb_min: float | None = None, noise_box: int | None = None,
        hdu: int | str | None = None, alpha: float = -0.7, alpha_column: str | None = None,
        freq_hz: float | None = None, rest_freq_hz: float | None = None,
        z_edges: Any = (0.1, 0.5, 1.0, 2.0, 3.0), dex: float = 0.4,
        cosmology: str = "Planck18", z_weights: bool = True,
        min_completeness: float = 0.5, z_err_column: str | None = None, z_draws: int = 50,
        seed: int = 0, select: str | None = None) -> LuminosityFunction:
    """The luminosity function of a catalogue file's sources with a redshift (``z_column``;
    ``flux`` in Jy, ``peak`` for the coverage when it has one) over one of three coverages:
    ``area_deg2`` with a ``flux_limit`` (Jy); ``image`` (one, or a mosaic's list) with its
    visibility areas at ``snr`` times the local rms (:mod:`.visibility`; ``primary_beam``,
    ``pb_min`` for a corrected catalogue; the noise map's box ``noise_box``, by default the
    catalogue's); or ``completeness``, source injection's report (by flux), over the image's
    data or ``area_deg2``. ``z_weights``: sources with a redshift weighted for those without
    in their flux bin. Spectral indices: ``alpha_column`` where finite, else ``alpha``.
    With ``completeness``, a bin is complete where the completeness at its faintest
    luminosity at its far redshift reaches ``min_completeness``. ``z_err_column``: the
    redshifts' 1-sigma errors (photometric redshifts), propagated by ``z_draws`` draws of
    every redshift (Gaussian, kept above 0; ``seed``): ``phi_err_z`` the draws' scatter per
    bin, added in quadrature to the Poisson error in ``phi_err``. ``select``
    (``"COLUMN=V1,V2"``, :func:`.catalogue.selected_rows`): the function of that
    subpopulation only (star-forming galaxies, AGN), over the same coverage."""
    name = os.fspath(catalogue)
    t = selected_rows(read_catalogue(catalogue), select, name)
    images = [] if image is None else (list(image) if isinstance(image, (list, tuple))
                                       else [image])
    if (flux_limit is not None) + bool(images and completeness is None) + (
            completeness is not None) != 1:
        raise ValueError("coverage: area_deg2 with flux_limit, or image (visibility areas), or "
                         "completeness (with image or area_deg2): one of them")
    if flux_limit is not None and (area_deg2 is None or images):
        raise ValueError("flux_limit: with area_deg2 (and no image)")
    if completeness is not None and bool(images) == (area_deg2 is not None):
        raise ValueError("completeness: over image's data or area_deg2, one of them")
    for col in (z_column, alpha_column, z_err_column):
        if col is not None and col not in t.colnames:
            raise CatalogueError(f"{name}: no column {col!r}")
    flux = column_values(t, "flux", name)
    if flux is None:
        raise CatalogueError(f"{name}: no flux column (flux, or an alias such as Total_flux)")
    z = column_values(t, z_column, name)
    a = np.full(len(t), float(alpha))
    if alpha_column is not None:
        own = column_values(t, alpha_column, name)
        a = np.where(np.isfinite(own), own, a)
    if freq_hz is None:
        freq_hz = t.meta.get("frequency_hz")
    if rest_freq_hz is not None and not freq_hz:
        raise ValueError(f"{name}: its frequency is not known (metadata frequency_hz): give "
                         "freq_hz (--freq-mhz) with rest_freq_hz")
    has_z = np.isfinite(z) & (z > 0)
    w = z_completeness_weights(flux, has_z) if z_weights else np.ones(len(t))
    peak = column_values(t, "peak", name)
    if flux_limit is not None:
        cov = Coverage.flux_limit(as_bounded_float(area_deg2, "area_deg2")
                                  * (math.pi / 180) ** 2, flux_limit)
        peak = None  # (a limit on the flux)
    else:
        with ExitStack() as stack:
            imgs = [stack.enter_context(open_image(p, hdu)) for p in images]
            if completeness is None:
                beams = [finding_beam(primary_beam, pb_min)] * len(imgs)
                box = noise_box if noise_box is not None else t.meta.get("noise_box", 128)
                vis = mosaic_visibility(imgs, snr=snr, beams=beams, noise_box=int(box))
                cov = Coverage(float(vis.weights.sum()), vis.fraction,
                               f"visibility areas at {snr:g} sigma of "
                               + ', '.join(map(os.fspath, images)))
                snr_col = column_values(t, "snr", name)
                if snr_col is not None:  # the sample the areas hold for
                    has_z &= snr_col >= snr
            else:
                edges, comp = read_completeness(completeness)
                area = (sum(image_area_sr(im) for im in imgs) if imgs
                        else as_bounded_float(area_deg2, "area_deg2") * (math.pi / 180) ** 2)
                cov = Coverage(area, lambda p: np.nan_to_num(completeness_at(p, edges, comp)),
                               f"injection's completeness by flux ({completeness})",
                               as_bounded_float(min_completeness, "min_completeness",
                                                strict=False))
                peak = None  # (the completeness is by flux)
    zz = np.where(has_z, z, np.nan)
    kw = dict(alpha=a, peak=peak, weights=w, freq_hz=freq_hz, rest_freq_hz=rest_freq_hz,
              cosmology=cosmology)
    lf = luminosity_function(flux, zz, cov, z_edges=np.asarray(z_edges, np.float64), dex=dex,
                             **kw)
    lf.meta.update(catalogue=name, z_column=z_column, n_sources=len(t),
                   n_with_z=int(has_z.sum()), z_weights=bool(z_weights), alpha=float(alpha),
                   alpha_column=alpha_column, selected=t.meta.get("selected"))
    if z_err_column is not None:
        z_err = np.abs(np.nan_to_num(column_values(t, z_err_column, name), nan=0.0))
        lf = _with_z_errors(lf, flux, zz, z_err, cov, as_int(z_draws, "z_draws", minimum=2),
                            np.random.default_rng(as_int(seed, "seed", minimum=0)), kw)
        lf.meta.update(z_err_column=z_err_column, z_draws=int(z_draws))
    return lf


def _with_z_errors(lf: LuminosityFunction, flux: np.ndarray, z: np.ndarray, z_err: np.ndarray,
                   cov: Coverage, draws: int, rng: np.random.Generator,
                   kw: dict[str, Any]) -> LuminosityFunction:
    """``lf`` with ``phi_err_z``, the scatter of Phi over ``draws`` redshifts drawn for every
    source (Gaussian of ``z_err``, redrawn below 0), in ``phi_err`` too (in quadrature)."""
    phis = []
    for _ in range(draws):
        zd = z + rng.normal(0.0, 1.0, z.shape) * z_err
        for _ in range(20):
            low = np.isfinite(zd) & (zd <= 0)
            if not low.any():
                break
            zd[low] = z[low] + rng.normal(0.0, 1.0, int(low.sum())) * z_err[low]
        zd = np.where(zd > 0, zd, z)
        phis.append(luminosity_function(flux, zd, cov, z_edges=lf.z_edges,
                                        logl_edges=lf.logl_edges, **kw).phi)
    phi_z = np.std(np.stack(phis), axis=0, ddof=1)
    return replace(lf, phi_err=np.sqrt(lf.phi_err ** 2 + phi_z ** 2), phi_err_z=phi_z)
