"""Spectral indices from catalogues of one sky at several frequencies.

A source's spectral index ``alpha`` (S ~ nu^alpha) compares its flux density at two
frequencies or more: the catalogues (one per image, e.g. LOFAR at 144 MHz and MeerKAT at
1.28 GHz) are cross-matched to the first one (one-to-one, nearest first, within a radius),
and ``alpha`` is the slope of log S against log nu, weighted by the fluxes' errors
(``alpha_err`` from those errors: for two frequencies
``sqrt((dS1/S1)^2 + (dS2/S2)^2) / |ln(nu2/nu1)|``). Fluxes compare well between images
of similar resolution: at different ones, give the source lists (:mod:`.source_list`), whose
fluxes sum a source's Gaussians. Each image's frequency comes from its header
(:func:`continuum_frequency`: a FREQ axis, else RESTFRQ / RESTFREQ / FREQ / OBSFREQ),
recorded by ``predict`` as the catalogue's ``frequency_hz``, or is given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalogue import CatalogueError, make_table
from .fits_image import continuum_frequency, positive_number
from .multi_match import catalogue_columns, match_catalogues, matching_radius
from .primary_beam import pb_response
from .primary_beam import primary_beam as make_primary_beam

__all__ = ["continuum_frequency", "catalogue_frequency", "spectral_indices", "flux_limits",
           "format_spectral_summary", "SPECTRAL_INDEX_NOTE", "LIMIT_SIGMAS"]

#: a source not found in an image is taken as fainter there than this many local rms (the
#: flux of an unresolved source whose peak would be that)
LIMIT_SIGMAS = 5.0

SPECTRAL_INDEX_NOTE = ("alpha: the slope of log flux against log frequency (S ~ nu^alpha), "
                       "weighted least squares on the fluxes' errors; the catalogues matched "
                       "to the first one (one-to-one, nearest first) within radius_arcsec")


def catalogue_frequency(table: Any, what: str = "catalogue") -> float:
    """The frequency (Hz) a catalogue's metadata records (``frequency_hz``, ``predict``
    writes it from the image's header); CatalogueError saying how to give it otherwise."""
    for key in ("frequency_hz", "FREQUENC", "FREQ_HZ"):  # (FITS headers: 8 characters)
        v = positive_number(table.meta.get(key)) if hasattr(table, "meta") else None
        if v is not None:
            return v
    raise CatalogueError(f"{what}: no frequency in its metadata (frequency_hz): give the "
                         "frequencies (--freq-mhz, one per catalogue)")


def flux_limits(image: str, ra: np.ndarray, dec: np.ndarray,
                sigmas: float = LIMIT_SIGMAS, primary_beam: Any = None,
                noise_box: int = 128, shapes: Any = None) -> np.ndarray:
    """``sigmas`` x the local rms of a 2D ``image`` (its noise map, as ``predict``'s) at
    sky positions, in Jy (the noise map in boxes of ``noise_box`` pixels, as that image's
    catalogue had it): the flux an unresolved source there would need to be found (a
    resolved one of intrinsic ``shapes``, :func:`.catalogue.catalogue_shapes`: that times its
    area over the beam's there, its peak reaching the limit); NaN off the image or its
    data. ``primary_beam`` (a beam image or model, :mod:`.primary_beam`): the image is not
    primary-beam corrected, the limits are true fluxes (divided by its response; NaN where
    it is not known)."""
    from .fits_image import ImageError, open_image
    from .forced import area_ratios
    from .noise import estimate_noise_map
    from .sky import beam_in_pixels, sky_to_pixel

    with open_image(image) as img:
        if img.ndim != 2 or img.wcs is None:
            raise ImageError(f"{img.path}: flux limits need a 2D image with a celestial WCS")
        noise = estimate_noise_map(img.read, img.shape, box=noise_box)
        x, y = sky_to_pixel(img.wcs, np.asarray(ra, np.float64), np.asarray(dec, np.float64))
        H, W = img.shape
        ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
        inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (iy >= 0) & (ix < W) & (iy < H)
        out = np.full(np.shape(x), np.nan)
        if not inside.any():
            return out
        k = np.flatnonzero(inside)
        pix = np.array([img.read((slice(int(iy[j]), int(iy[j]) + 1),
                                  slice(int(ix[j]), int(ix[j]) + 1)))[0, 0] for j in k])
        k = k[np.isfinite(pix)]
        rms = noise.at(y[k], x[k]) * img.unit_scale
        if img.per == "pixel":  # Jy/pixel: a beam's worth of pixels
            rms = rms * img.beam_area_pixels()
        if primary_beam is not None:
            a = pb_response(make_primary_beam(primary_beam), img, x[k], y[k])
            rms = np.where(a > 0, rms / np.where(a > 0, a, 1.0), np.nan)
        if shapes is not None and beam_in_pixels(img) is None:
            warnings.warn(f"{img.path}: no beam in the header: every limit is an unresolved "
                          "source's", UserWarning, stacklevel=2)
            shapes = None
        ratio = area_ratios(img, x[k], y[k], None if shapes is None else
                            tuple(np.asarray(v, np.float64)[k] for v in shapes))
        out[k] = sigmas * rms * ratio
    return out


def spectral_indices(tables: Sequence[Any], freqs_hz: Sequence[float] | None = None, *,
                     radius_arcsec: float | None = None,
                     names: Sequence[str] | None = None,
                     limits: np.ndarray | None = None) -> Any:
    """One row per source of the first catalogue matched in at least one other: its
    position, each catalogue's flux, error and separation (``flux_<k>``, ``flux_err_<k>``,
    ``sep_<k>`` for catalogue k = 1, 2, ...; NaN where not matched), ``alpha``,
    ``alpha_err``, ``n_freq``. ``freqs_hz``: one per catalogue (None: each catalogue's
    ``frequency_hz``); ``radius_arcsec``: the matching radius (None: half the largest
    beam FWHM of the catalogues' metadata). ``limits`` (two catalogues): the second
    image's flux limit at each of the first catalogue's sources (:func:`flux_limits`):
    those not found in the second get a row too, with ``alpha_limit`` and ``limit`` ("<" an
    upper limit on alpha, ">" a lower one)."""
    if len(tables) < 2:
        raise ValueError(f"tables: two catalogues or more (two frequencies), received "
                         f"{len(tables)}")
    names = list(names) if names is not None else [f"catalogue {k + 1}"
                                                   for k in range(len(tables))]
    if freqs_hz is None:
        freqs = [catalogue_frequency(t, n) for t, n in zip(tables, names)]
    else:
        if len(freqs_hz) != len(tables):
            raise ValueError(f"freqs_hz: one per catalogue ({len(tables)}), received "
                             f"{len(freqs_hz)}")
        freqs = []
        for f in freqs_hz:
            v = positive_number(f)
            if v is None:
                raise ValueError(f"freqs_hz: positive frequencies in Hz, received {f!r}")
            freqs.append(v)
    if len(set(freqs)) < 2:
        raise ValueError(f"freqs_hz: the catalogues must be at two frequencies or more, "
                         f"received {freqs}")
    radius = matching_radius(tables, radius_arcsec)
    cols = [catalogue_columns(t, n) for t, n in zip(tables, names)]
    m = match_catalogues([(c["ra"], c["dec"]) for c in cols], radius)
    ra0, dec0 = m.ra, m.dec
    n0, k = len(ra0), len(tables)
    flux, ferr, sep = (m.take([c["flux"] for c in cols]), m.take([c["flux_err"] for c in cols]),
                       m.sep)
    alpha, alpha_err, n_freq = _fit(flux, ferr, np.asarray(freqs))
    keep = n_freq >= 2
    bound = np.full(n0, np.nan)
    if limits is not None:
        if k != 2:
            raise ValueError(f"limits: for two catalogues, received {k}")
        lim = np.asarray(limits, np.float64)
        if lim.shape != (n0,):
            raise ValueError(f"limits: one per source of the first catalogue ({n0}), "
                             f"received shape {lim.shape}")
        open_ = (~keep & np.isfinite(lim) & (lim > 0) & np.isfinite(flux[:, 0])
                 & (flux[:, 0] > 0))
        bound[open_] = np.log(lim[open_] / flux[open_, 0]) / math.log(freqs[1] / freqs[0])
        keep = keep | open_
    out: dict[str, np.ndarray] = {}
    if "id" in tables[0].colnames:
        out["id"] = np.asarray(tables[0]["id"])[keep]
    out["ra"], out["dec"] = ra0[keep], dec0[keep]
    units = {}
    for j in range(k):
        out[f"flux_{j + 1}"], out[f"flux_err_{j + 1}"] = flux[keep, j], ferr[keep, j]
        units[f"flux_{j + 1}"] = units[f"flux_err_{j + 1}"] = "Jy"
        if j:
            out[f"sep_{j + 1}"] = sep[keep, j]
            units[f"sep_{j + 1}"] = "arcsec"
    out["alpha"], out["alpha_err"], out["n_freq"] = alpha[keep], alpha_err[keep], n_freq[keep]
    if limits is not None:
        out["alpha_limit"] = bound[keep]
        sign = "<" if freqs[1] > freqs[0] else ">"
        out["limit"] = np.where(np.isfinite(bound[keep]), sign, "")
    meta = {"spectral_index": SPECTRAL_INDEX_NOTE, "frequencies_hz": [float(f) for f in freqs],
            "catalogues": [str(n) for n in names], "radius_arcsec": float(radius),
            "n_first": int(n0), "n_matched": int(np.count_nonzero(n_freq >= 2)),
            "n_limits": int(np.count_nonzero(np.isfinite(bound)))}
    if limits is not None:
        meta["limit_sigmas"] = LIMIT_SIGMAS
    t = make_table(out, meta=meta, units=units)
    t["alpha"].description = "spectral index, S ~ nu^alpha"
    t["alpha_err"].description = "1-sigma error of alpha from the fluxes' errors"
    t["n_freq"].description = "frequencies with a flux in the fit"
    if limits is not None:
        t["alpha_limit"].description = ("limit on alpha of a source not found in the second "
                                        "image: its flux there below the limit (meta "
                                        "limit_sigmas x the local rms)")
        t["limit"].description = "<: alpha below alpha_limit, >: above it"
    return t


def _fit(flux: np.ndarray, ferr: np.ndarray, freqs: np.ndarray):
    """Weighted least-squares slopes of ln S against ln nu per row (positive fluxes only; a
    row with a flux error missing is fitted unweighted, its alpha_err NaN): (alpha,
    alpha_err, points used)."""
    ok = np.isfinite(flux) & (flux > 0)
    ls = np.log(np.where(ok, flux, 1.0))
    rel = np.where(np.isfinite(ferr) & (ferr > 0), ferr / np.where(ok, flux, 1.0), np.nan)
    known = np.all(np.isfinite(rel) | ~ok, axis=1)
    inv_var = 1.0 / np.where(np.isfinite(rel), rel, 1.0) ** 2
    w = np.where(ok, np.where(known[:, None], inv_var, 1.0), 0.0)
    lf = np.log(freqs)[None, :]
    sw = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * lf).sum(1) / sw
        my = (w * ls).sum(1) / sw
        sxx = (w * (lf - mx[:, None]) ** 2).sum(1)
        alpha = (w * (lf - mx[:, None]) * (ls - my[:, None])).sum(1) / sxx
        err = np.where(known, 1.0 / np.sqrt(sxx), np.nan)
    n = ok.sum(1)
    single = n < 2
    alpha[single], err[single] = np.nan, np.nan
    return alpha, err, n


def format_spectral_summary(table: Any) -> str:
    """A report line: how many matched, the median alpha and its spread."""
    a = np.asarray(table["alpha"], np.float64)
    a = a[np.isfinite(a)]
    m = table.meta
    freqs = ", ".join(f"{f / 1e6:g}" for f in m.get("frequencies_hz", []))
    head = (f"{m.get('n_matched', len(table))} of {m.get('n_first', '?')} sources matched "
            f"(radius {m.get('radius_arcsec', float('nan')):.2g} arcsec; {freqs} MHz)"
            + (f", {m['n_limits']} limits" if m.get("n_limits") else ""))
    if not a.size:
        return head
    lo, med, hi = np.percentile(a, [16, 50, 84])
    return f"{head}: median alpha {med:.2f} (16-84%: {lo:.2f} to {hi:.2f})"
