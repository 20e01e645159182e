"""A catalogue table from measured detections: the columns :mod:`.catalogue` describes,
in the catalogue's order (decreasing flux), with their errors, sizes deconvolved from the
beam, quality flags, islands and sources (PyBDSF's grouping), and the primary beam's
correction when one is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .. import __version__
from .catalogue import PA_CONVENTION, disc_inclination, make_table
from .fits_image import FitsImage, continuum_frequency
from .flags import DEFAULT_BRIGHT, FLAG_NOTE, BrightRule, quality_flags, renumbered
from .islands import pixel_islands
from .line_table import line_table_columns
from .measure import FWHM, Measurements
from .noise import NoiseMap
from .predict import Detections
from .sky import (
    beam_in_pixels,
    deconvolve,
    foreign_frame,
    frame_note,
    pixel_angle_to_pa,
    pixel_to_sky,
    sky_offsets_per_pixel,
)
from .sources import with_sources

__all__ = ["build_table", "catalogue_order", "class_columns", "DET_CLASS_COLUMN", "DET_PROB_COLUMN",
           "RESOLVED_SIGMAS"]


def _error_columns(image: FitsImage, m: Measurements) -> dict[str, np.ndarray]:
    """1-sigma errors in the catalogue's units: x/y (and ra/dec on the sky), peak, sizes, pa."""
    n = len(m.x)
    nan = np.full(n, np.nan)
    cov = m.xy_cov if m.xy_cov is not None else np.full((n, 2, 2), np.nan)
    cols = {"x_err": np.sqrt(cov[:, 0, 0]), "y_err": np.sqrt(cov[:, 1, 1])}
    if image.wcs is not None:
        J = sky_offsets_per_pixel(image.wcs, m.x, m.y) if n else np.zeros((0, 2, 2))
        sky = J @ cov @ np.swapaxes(J, 1, 2)
        cols["ra_err"], cols["dec_err"] = np.sqrt(sky[:, 0, 0]), np.sqrt(sky[:, 1, 1])
    size_scale = image.pixel_scale if image.pixel_scale is not None else 1.0
    for name, v in (("peak_err", m.peak_err), ("bmaj_err", m.sigma_major_err),
                    ("bmin_err", m.sigma_minor_err), ("pa_err", m.theta_err)):
        cols[name] = nan if v is None else np.asarray(v, np.float64)
    cols["peak_err"] = cols["peak_err"] * image.unit_scale
    cols["bmaj_err"] = cols["bmaj_err"] * FWHM * size_scale
    cols["bmin_err"] = cols["bmin_err"] * FWHM * size_scale
    cols["pa_err"] = np.degrees(cols["pa_err"])
    return cols


def catalogue_order(m: Measurements, pb: np.ndarray | None = None) -> np.ndarray:
    """The catalogue's row order of measured sources: decreasing flux, then peak (stable);
    with ``pb``, the primary beam's response at each, of the fluxes corrected for it."""
    gain = 1.0 if pb is None else 1.0 / pb
    return np.lexsort((-np.nan_to_num(m.peak * gain, nan=-np.inf),
                       -np.nan_to_num(m.flux * gain, nan=-np.inf)))


RESOLVED_SIGMAS = 3.0


def _resolved(m: Measurements, beam_area: float) -> np.ndarray:
    """Fitted sources whose area (sigma_major * sigma_minor) exceeds the beam's by more than
    :data:`RESOLVED_SIGMAS` times its error (in log, the axes' covariance included)."""
    if m.area_err_rel is None:
        return np.zeros(len(m.x), bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.log(m.sigma_major * m.sigma_minor / beam_area) / m.area_err_rel
    return np.asarray(m.fit_ok, bool) & (z > RESOLVED_SIGMAS)


def build_table(image: FitsImage, det: Detections, m: Measurements, meta: dict[str, Any],
                noise: NoiseMap | None = None, pb: np.ndarray | None = None,
                bright: BrightRule = DEFAULT_BRIGHT, class_names: Sequence[str] = ()) -> Any:
    """The catalogue table of measured detections (columns as :mod:`.catalogue` describes),
    sorted by decreasing flux (then peak) with ids 1..N; with the ``noise`` map, a 2D
    image's Gaussians get their islands of pixels (:mod:`.islands`); with ``pb`` (the
    primary beam's response at each), fluxes, peaks, their errors and the rms divided by
    it (:mod:`.primary_beam`) and the response as the column ``pb``; ``bright``: the rule
    of the ``near_bright`` flag (:mod:`.flags`); ``class_names``: a classifying detector's
    classes, whose columns :func:`class_columns` adds."""
    boxes = det.boxes
    n = len(m.x)
    scale = image.pixel_scale
    cols: dict[str, np.ndarray] = {}
    units: dict[str, str | None] = {}
    if image.wcs is not None:
        ra, dec = pixel_to_sky(image.wcs, m.x, m.y)
        pa = pixel_angle_to_pa(image.wcs, m.x, m.y, m.theta) if n else np.zeros(0)
    else:
        ra = dec = None
        pa = np.mod(np.degrees(m.theta) - 90.0, 180.0)
    size_scale = scale if scale is not None else 1.0
    bmaj = m.sigma_major * FWHM * size_scale
    bmin = m.sigma_minor * FWHM * size_scale
    dmaj = dmin = dpa = resolved = None
    beam = beam_in_pixels(image)
    if beam is not None:
        smaj, smin, dtheta = deconvolve(m.sigma_major, m.sigma_minor, m.theta, *beam)
        dmaj, dmin = smaj * FWHM * scale, smin * FWHM * scale
        dpa = (pixel_angle_to_pa(image.wcs, m.x, m.y, dtheta) if image.wcs is not None and n
               else np.mod(np.degrees(dtheta) - 90.0, 180.0))
        resolved = _resolved(m, beam[0] * beam[1])
    err = _error_columns(image, m)
    gain = 1.0 if pb is None else 1.0 / pb  # apparent -> true fluxes
    peak = m.peak * image.unit_scale * gain
    rms = m.rms * image.unit_scale * gain
    err["peak_err"] = err["peak_err"] * gain
    order = catalogue_order(m, pb)
    cols["id"] = np.arange(1, n + 1, dtype=np.int64)
    if ra is not None:
        cols["ra"], cols["dec"] = ra[order], dec[order]
        if type(foreign_frame(image.wcs)).__name__ == "Galactic":  # the image's own l, b too
            lon, lat = image.wcs.pixel_to_world_values(m.x[order], m.y[order])
            cols["glon"] = np.mod(np.asarray(lon, np.float64), 360.0)
            cols["glat"] = np.asarray(lat, np.float64)
    if ra is not None:
        cols["ra_err"], cols["dec_err"] = err["ra_err"][order], err["dec_err"][order]
    cols["x"], cols["y"] = m.x[order], m.y[order]
    if m.z is not None:
        cols["z"] = m.z[order]
    cols["x_err"], cols["y_err"] = err["x_err"][order], err["y_err"][order]
    cols["flux"], cols["flux_err"] = (m.flux * gain)[order], (m.flux_err * gain)[order]
    cols["peak"], cols["peak_err"] = peak[order], err["peak_err"][order]
    cols["rms"], cols["snr"] = rms[order], m.snr[order]
    if pb is not None:
        cols["pb"] = pb[order]
    line_meta = (line_table_columns(image, m if pb is None else replace(
        m, flux=m.flux * gain, flux_err=m.flux_err * gain), order, cols)
                 if m.line is not None else {})
    cols["bmaj"], cols["bmin"], cols["pa"] = bmaj[order], bmin[order], pa[order]
    for name in ("bmaj_err", "bmin_err", "pa_err"):
        cols[name] = err[name][order]
    if dmaj is not None:
        cols["bmaj_deconv"], cols["bmin_deconv"] = dmaj[order], dmin[order]
        cols["pa_deconv"] = dpa[order]
        cols["resolved"] = resolved[order]
        if m.line is not None:  # a line's disc: its inclination where it is resolved
            incl = np.where(resolved, disc_inclination(dmaj, dmin), np.nan)
            cols["incl"] = incl[order]
    cols["objectness"] = np.asarray(boxes.objectness, np.float64)[order]
    cols["prior"] = np.asarray(boxes.prior, np.int64)[order]
    if class_names:
        cols.update(class_columns(np.asarray(boxes.class_scores)[order], class_names))
    cols["fit_ok"] = m.fit_ok[order]
    flagged = image.ndim == 2 and m.z is None
    if flagged:
        for name, values in quality_flags(image, m, beam[0] if beam else None,
                                          bright).items():
            cols[name] = values[order]
        cols["blend_group"] = renumbered(cols["blend_group"])  # 1: the brightest's blend
        cols["deblended"] = (np.zeros(n, bool) if m.deblended is None else m.deblended)[order]
        if noise is not None:
            smaj = np.fmax(m.sigma_major, beam[0]) if beam else m.sigma_major
            cols["island_id"] = renumbered(pixel_islands(image, noise, m.x, m.y,
                                                         smaj * FWHM)[order])
    if image.per == "pixel":
        units.update(peak="Jy/pix", peak_err="Jy/pix", rms="Jy/pix")
    if scale is None:
        units.update(bmaj="pix", bmin="pix", bmaj_deconv="pix", bmin_deconv="pix",
                     bmaj_err="pix", bmin_err="pix")
    if m.z is not None:  # summed over the box's channels
        units.update(flux="Jy pix", flux_err="Jy pix")
    full_meta = {
        "creator": f"cianna_jax {__version__}", "image": os.path.basename(image.path),
        "hdu": image.hdu_index, "plane": image.plane, "bunit": image.bunit,
        "beam_bmaj_arcsec": image.beam.bmaj if image.beam else float("nan"),
        "beam_bmin_arcsec": image.beam.bmin if image.beam else float("nan"),
        "beam_bpa_deg": image.beam.bpa if image.beam else float("nan"),
        **({"frequency_hz": freq} if (freq := continuum_frequency(image.header))
           and image.ndim == 2 else {}),
        "pixel_scale_arcsec": scale if scale is not None else float("nan"),
        "radec_frame": frame_note(image.wcs) if image.wcs is not None else "none (no WCS)",
        "pa_convention": PA_CONVENTION if image.wcs is not None else
        "degrees from +y towards -x (no WCS: north up, east left assumed)",
        "flux": "integrated flux density of a fitted Gaussian: 2 pi A sigma_maj sigma_min / "
                "beam area; snr = fitted peak / local rms",
        "errors": "1-sigma, from the local noise (and flux_scale_error, astrometric_error "
                  "when given): the fit's "
                  "linearised covariance in noise correlated as the beam (white without "
                  "one); box-measured sources (fit_ok False): peak and flux from the rms, "
                  "others NaN",
        **({"flags": FLAG_NOTE, "near_bright_rule": bright.summary()} if flagged else {}),
        **line_meta,
        **meta,
    }
    table = make_table(cols, meta=full_meta, units=units)
    # Gaussians grouped into sources (PyBDSF's rule and defaults)
    return with_sources(table) if flagged else table


#: a classifying detector's columns: the most probable class and its probability
DET_CLASS_COLUMN, DET_PROB_COLUMN = "det_class", "det_prob"


def class_columns(scores: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The class columns of a classifying detector's boxes (``scores`` [n, C], the
    softmax over ``names``): ``det_p_<name>`` per class, :data:`DET_CLASS_COLUMN` (the
    most probable) and :data:`DET_PROB_COLUMN` (its probability)."""
    p = np.asarray(scores, np.float64).reshape(-1, len(names))
    best = p.argmax(axis=1)
    cols = {DET_CLASS_COLUMN: np.array([names[k] for k in best], dtype=str).reshape(-1),
            DET_PROB_COLUMN: p[np.arange(len(p)), best] if len(p) else np.zeros(0)}
    cols.update({f"det_p_{name}": p[:, k] for k, name in enumerate(names)})
    return cols

