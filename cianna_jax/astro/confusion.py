"""Confusion noise: the rms that the sky's faint sources add to an image, from its counts.

Every beam holds the sum of the sources too faint to be found one by one; below some depth
that sum, not the receivers, sets an image's noise. From differential counts ``n(S)``
(``cianna-jax counts``' table, extended below its faintest complete bins by a power law
fitted to them, or given), a sky of point sources (Poisson positions, down to a flux that
adds nothing measurable) is drawn and convolved with the beam; its rms measured as this
package measures an image's noise (3-sigma clipped, :func:`.noise.clipped_stats`) is the
confusion noise a noise map sees. Beside it: Condon's (1974) classical estimate for a power
law, ``sigma_c = (q^(3-g) / (3-g))^(1/(g-1)) (k Omega_e)^(1/(g-1))`` with ``n = k S^-g`` and
``Omega_e = Omega_b / (g - 1)``, which cuts each source's response at ``q sigma_c`` instead
of clipping pixels (so it differs from the measured one), and the beams per source at ``q``
times the image's rms (the confusion noise's without an image). Given the image's measured
rms, the thermal noise that, with the confusion, gives it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .beam_matching import gaussian_fft_kernel
from .catalogue import CatalogueError, read_catalogue
from .noise import clipped_stats

__all__ = ["CountsModel", "condon_sigma", "confusion_map", "ConfusionEstimate",
           "estimate_confusion", "thermal_noise", "pd_figure"]

@dataclass(frozen=True)
class CountsModel:
    """Differential counts ``dN/dS`` (sr^-1 Jy^-1): log-linear between points ``s`` (Jy)
    and ``n``, a power law ``S^-gamma_below`` below the faintest and the Euclidean
    ``S^-2.5`` above the brightest."""

    s: np.ndarray
    n: np.ndarray
    gamma_below: float
    source: str = ""

    @classmethod
    def power_law(cls, k: float, gamma: float, s_ref: float = 1e-3) -> CountsModel:
        """``n = k S^-gamma`` (the same law above ``s_ref`` too)."""
        g = as_bounded_float(gamma, "gamma", low=1.0)
        s = np.array([s_ref / 10.0, s_ref])
        return cls(s, as_bounded_float(k, "k") * s ** -g, g, f"power law k {k:.3g}, gamma {g:g}")

    @classmethod
    def from_counts(cls, counts: Any, gamma_below: float | None = None,
                    fit_bins: int = 3) -> CountsModel:
        """From ``cianna-jax counts``' table (a path or a Table: ``flux_mid`` and ``counts``,
        S^2.5 dN/dS in Jy^1.5/sr; the ``complete`` bins when it says): ``gamma_below`` fitted
        to the faintest ``fit_bins`` bins unless given."""
        t = read_catalogue(counts) if isinstance(counts, (str, os.PathLike)) else counts
        name = os.fspath(counts) if isinstance(counts, (str, os.PathLike)) else "counts"
        if not {"flux_mid", "counts"} <= set(t.colnames):
            raise CatalogueError(f"{name}: not a source counts table (flux_mid, counts; "
                                 "cianna-jax counts writes one)")
        s = np.asarray(t["flux_mid"], np.float64)
        if t["flux_mid"].unit is not None:
            s = np.asarray(t["flux_mid"].quantity.to_value("Jy"))
        c = np.asarray(t["counts"], np.float64)
        ok = np.isfinite(s) & (s > 0) & np.isfinite(c) & (c > 0)
        if "complete" in t.colnames:
            ok &= np.asarray(t["complete"], bool)
        if ok.sum() < 2:
            raise CatalogueError(f"{name}: fewer than two complete bins with counts")
        s, n = s[ok], c[ok] / s[ok] ** 2.5
        order = np.argsort(s)
        s, n = s[order], n[order]
        if gamma_below is None:
            m = min(max(2, int(fit_bins)), s.size)
            gamma_below = -float(np.polyfit(np.log(s[:m]), np.log(n[:m]), 1)[0])
            how = f"fitted to the {m} faintest bins"
            if not 1.0 < gamma_below < 3.0:
                raise ValueError(
                    f"{name}: its {m} faintest complete bins give dN/dS ~ S^{-gamma_below:.2f}, "
                    "no physical extension below them (bins still incomplete there, or a "
                    "sample without fainter sources): give gamma_below (deep radio counts: "
                    "1.5-1.9)")
        else:
            how = "given"
        g = as_bounded_float(gamma_below, "gamma_below", low=1.0)
        if g >= 3.0:
            raise ValueError(f"gamma_below: {g:.2f}; counts this steep below the faintest bin "
                             "give an infinite confusion noise (give gamma_below < 3)")
        return cls(s, n, g, f"{name}: {s.size} bins, S^-{g:.2f} below {s[0]:.3g} Jy ({how})")

    def dnds(self, flux: np.ndarray) -> np.ndarray:
        f = np.asarray(flux, np.float64)
        lo, hi = self.s[0], self.s[-1]
        mid = np.exp(np.interp(np.log(f), np.log(self.s), np.log(self.n)))
        below = self.n[0] * (f / lo) ** -self.gamma_below
        above = self.n[-1] * (f / hi) ** -2.5
        return np.where(f < lo, below, np.where(f > hi, above, mid))


def condon_sigma(k: float, gamma: float, beam_sr: float, q: float = 5.0) -> float:
    """Condon's (1974) confusion rms (Jy/beam) of counts ``n = k S^-gamma`` (k in
    Jy^(gamma-1)/sr) with a Gaussian beam of solid angle ``beam_sr``, responses cut at ``q``
    sigma."""
    g = as_bounded_float(gamma, "gamma", low=1.0)
    if g >= 3.0:
        raise ValueError(f"gamma: {g:g}; Condon's estimate needs 1 < gamma < 3")
    omega_e = beam_sr / (g - 1.0)
    return float((q ** (3.0 - g) / (3.0 - g)) ** (1.0 / (g - 1.0))
                 * (k * omega_e) ** (1.0 / (g - 1.0)))


def confusion_map(model: CountsModel, fwhm_px: tuple[float, float, float],
                  pixel_arcsec: float, rng: np.random.Generator, *, size: int = 1024,
                  s_min: float, s_max: float, max_sources: int = 20_000_000) -> np.ndarray:
    """A ``size`` x ``size`` map (Jy/beam) of Poisson point sources with fluxes
    ``s_min``-``s_max`` drawn from ``model``, each at a pixel, convolved with the beam
    (``fwhm_px``: major and minor FWHM in pixels, PA in degrees), its mean taken off as an
    interferometer's image has it."""
    size = as_int(size, "size", minimum=16)
    lo, hi = as_bounded_float(s_min, "s_min"), as_bounded_float(s_max, "s_max")
    if hi <= lo:
        raise ValueError(f"s_max: above s_min ({lo:g}); received {hi:g}")
    ls = np.linspace(math.log(lo), math.log(hi), 4000)
    dens = model.dnds(np.exp(ls)) * np.exp(ls)  # dN / d ln S
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(ls))])
    area = (size * pixel_arcsec / 3600.0 * math.pi / 180.0) ** 2
    mean = cum[-1] * area
    if mean > max_sources:
        raise ValueError(f"s_min: {mean:.3g} sources expected above {lo:.3g} Jy on the map; "
                         f"raise s_min (at most {max_sources:g})")
    n = int(rng.poisson(mean))
    flux = np.exp(np.interp(rng.uniform(0.0, cum[-1], n), cum, ls))
    sky = np.zeros((size, size))
    np.add.at(sky, (rng.integers(0, size, n), rng.integers(0, size, n)), flux)
    beam = gaussian_fft_kernel((size, size), fwhm_px[:2], fwhm_px[2], unit_sum=False)
    out = np.real(np.fft.ifft2(np.fft.fft2(sky) * np.fft.fft2(beam)))
    return out - out.mean()  # (an interferometer's image has no zero spacing: mean 0)


def thermal_noise(confusion: np.ndarray, measured_rms: float, rng: np.random.Generator
                  ) -> float:
    """The white noise rms that, added to a ``confusion`` map, gives a clipped rms of
    ``measured_rms`` (0 when the confusion alone reaches it)."""
    target = as_bounded_float(measured_rms, "measured_rms")
    white = rng.standard_normal(confusion.shape)

    def rms(s: float) -> float:
        return clipped_stats(confusion + s * white)[1]

    if rms(0.0) >= target:
        return 0.0
    lo, hi = 0.0, target
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rms(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class ConfusionEstimate:
    """The confusion noise (Jy/beam) measured on a simulated map (``sigma``: 3-sigma clipped
    as a noise map; ``sigma_raw``: every pixel), Condon's estimate with the counts' slope
    below their faintest bin, the beams per source at ``q`` times the measured rms (else
    ``sigma``), and, with a measured rms, the thermal noise that goes with it; ``histogram``: P(D) from 8 sigma below
    the median to 24 above, ``median`` its median."""

    sigma: float
    sigma_raw: float
    condon_sigma: float
    beams_per_source: float
    q: float
    beam_sr: float
    measured_rms: float | None
    thermal_rms: float | None
    model: CountsModel
    histogram: tuple[np.ndarray, np.ndarray]
    median: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {"sigma_jy": self.sigma, "sigma_raw_jy": self.sigma_raw,
               "condon_sigma_jy": self.condon_sigma, "beams_per_source": self.beams_per_source,
               "q": self.q, "beam_sr": self.beam_sr, "counts": self.model.source,
               "gamma_below": self.model.gamma_below}
        if self.measured_rms is not None:
            out.update(measured_rms_jy=self.measured_rms, thermal_rms_jy=self.thermal_rms,
                       confusion_at_measured_jy=self.confusion_at_measured)
        return out

    @property
    def confusion_at_measured(self) -> float | None:
        """What the confusion adds in quadrature to the thermal noise in the measured rms
        (more than :attr:`sigma` alone: at that noise the clipping spares brighter
        sources)."""
        if self.measured_rms is None or self.thermal_rms is None:
            return None
        return math.sqrt(max(self.measured_rms ** 2 - self.thermal_rms ** 2, 0.0))


def estimate_confusion(model: CountsModel, beam_arcsec: tuple[float, float, float], *,
                       pixel_arcsec: float | None = None, measured_rms: float | None = None,
                       q: float = 5.0, size: int = 1024, seed: int = 0) -> ConfusionEstimate:
    """The confusion noise of ``model``'s counts for a beam (FWHM major, minor in arcsec, PA
    in degrees), on a map of ``pixel_arcsec`` pixels (default a fifth of the minor axis):
    sources from 1e-4 of Condon's estimate (their share of the variance below 1e-3 for any
    slope under 2.5) to 1000 times it; ``measured_rms``: an image's, for the thermal noise
    that goes with the confusion."""
    bmaj, bmin = (as_bounded_float(v, n) for v, n in zip(beam_arcsec[:2], ("bmaj", "bmin")))
    pa = float(beam_arcsec[2]) if len(beam_arcsec) > 2 else 0.0
    px = as_bounded_float(pixel_arcsec if pixel_arcsec is not None else bmin / 5.0,
                          "pixel_arcsec")
    q = as_bounded_float(q, "q")
    beam_sr = math.pi * bmaj * bmin / (4.0 * math.log(2.0)) * (math.pi / 648000.0) ** 2
    g = model.gamma_below
    k = float(model.n[0] * model.s[0] ** g)
    guess = condon_sigma(k, g, beam_sr, q) if g < 3.0 else float(model.s[0])
    rng = np.random.default_rng(seed)
    cmap = confusion_map(model, (bmaj / px, bmin / px, pa), px, rng, size=size,
                         s_min=1e-4 * guess, s_max=1e3 * guess)
    med, sigma = clipped_stats(cmap)
    limit = q * (measured_rms if measured_rms is not None else sigma)
    ls = np.linspace(math.log(limit), math.log(1e6 * limit), 2000)
    n_above = np.trapezoid(model.dnds(np.exp(ls)) * np.exp(ls), ls)
    thermal = None if measured_rms is None else thermal_noise(cmap, measured_rms, rng)
    counts, edges = np.histogram(cmap, bins=200, range=(med - 8 * sigma, med + 24 * sigma))
    return ConfusionEstimate(sigma=sigma, sigma_raw=float(np.std(cmap)), condon_sigma=guess,
                             beams_per_source=float(1.0 / (n_above * beam_sr)), q=q,
                             beam_sr=beam_sr, measured_rms=measured_rms, thermal_rms=thermal,
                             model=model, histogram=(edges, counts), median=med)


def pd_figure(est: ConfusionEstimate, *, title: str = "Confusion: the sky's faint sources "
              "per beam") -> Any:
    """The simulated P(D) (fraction of pixels per bin, log scale) with the Gaussian of its
    clipped rms."""
    from ._deps import require

    plt = require("matplotlib.pyplot")
    edges, counts = est.histogram
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    mid = 0.5 * (edges[:-1] + edges[1:]) * 1e6
    frac = counts / max(counts.sum(), 1)
    ax.step(mid, frac, where="mid", label="P(D) of the counts")
    g = np.exp(-0.5 * ((mid - est.median * 1e6) / (est.sigma * 1e6)) ** 2)
    ax.plot(mid, g * frac.max() / g.max(), "k:",
            label=f"Gaussian of {est.sigma * 1e6:.3g} uJy/beam (the clipped rms)")
    ax.set_yscale("log")
    ax.set_ylim(max(frac[frac > 0].min() / 2, frac.max() * 1e-6), frac.max() * 2)
    ax.set_xlabel("D (uJy/beam)")
    ax.set_ylabel("fraction of pixels")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
