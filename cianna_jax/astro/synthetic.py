"""Synthetic SDC1-like fields written as FITS images (WCS, Jy/beam, beam) with their
true source catalogues: test data, benchmarks and the README example.

The sources and noise come from :func:`cianna_jax.datasets.radio_sky.make_field`
(whose image is in flux per pixel); the image is converted to Jy/beam (times the beam
area in pixels) and scaled so that the noise rms is ``noise`` Jy/beam.  The WCS is a
SIN projection centred on ``centre`` (default the SDC1 field centre, RA 0, Dec -30),
east to the left; ``sdc1_layout`` writes SDC1's 4D ``(Stokes, Freq, Y, X)`` array.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from ..datasets import radio_sky as rs
from ..io.atomic import atomic_write
from ._deps import require
from .catalogue import make_table
from .fits_image import FWHM_AREA, Beam
from .sky import pixel_angle_to_pa, pixel_to_sky

__all__ = ["SyntheticField", "synthetic_field", "primary_beam_noise", "field_header", "truth_table",
           "write_fits", "write_stokes_cube", "primary_beam_map", "write_primary_beam",
           "with_artefacts"]


@dataclass(frozen=True)
class SyntheticField:
    """``image`` [H, W] float32 in Jy/beam (NaN where blanked), its ``catalogue``
    (radio_sky, positions in pixels, fluxes in Jy), ``header`` (astropy), ``noise`` rms
    (Jy/beam, at the centre), ``beam``, ``pixel_scale`` (arcsec) and ``noise_factor``
    ([H, W] local rms / ``noise``; None when the noise is uniform); ``pb_fwhm`` (arcmin) and
    ``pb`` (each source's response) when the image is not primary-beam corrected;
    ``artefacts`` ``[N, 3]`` (x, y, peak in Jy/beam) of the calibration artefacts
    :func:`with_artefacts` added, not sources; ``beta`` each source's spectral curvature
    (0: a power law)."""

    image: np.ndarray
    catalogue: rs.Catalogue
    header: Any
    noise: float
    beam: Beam
    pixel_scale: float
    noise_factor: np.ndarray | None = None
    alpha: np.ndarray | None = None
    variable: np.ndarray | None = None
    pol: tuple[np.ndarray, ...] | None = None
    pb_fwhm: float | None = None
    pb: np.ndarray | None = None
    artefacts: np.ndarray | None = None
    beta: np.ndarray | None = None

    def noise_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The noise rms (Jy/beam) at pixel positions."""
        if self.noise_factor is None:
            return np.full(np.shape(x), self.noise)
        H, W = self.noise_factor.shape
        iy = np.clip(np.floor(np.asarray(y) + 0.5).astype(int), 0, H - 1)
        ix = np.clip(np.floor(np.asarray(x) + 0.5).astype(int), 0, W - 1)
        return self.noise * self.noise_factor[iy, ix]


def primary_beam_noise(shape: tuple[int, int], edge: float) -> np.ndarray:
    """Noise rms relative to the centre, rising as a primary-beam correction does
    (``exp(r^2 / 2 s^2)``, Gaussian primary beam) to ``edge`` at the corners."""
    H, W = shape
    y, x = np.mgrid[0:H, 0:W]
    r2 = ((y - (H - 1) / 2) ** 2 + (x - (W - 1) / 2) ** 2) / (((H - 1) / 2) ** 2 + ((W - 1) / 2) ** 2)
    return np.exp(np.log(edge) * r2)


def _companions(cat: rs.Catalogue, fraction: float, psf_fwhm: float, flux_range, rng,
                shape: tuple[int, int], members: int = 1) -> rs.Catalogue:
    """Point-like companions for a ``fraction`` of the sources, ``members`` each, 1 to 2.5
    beams away (each at its own angle), with fluxes 0.2 to 1 times their neighbour's: blends
    a detector must separate."""
    pick = np.flatnonzero(rng.random(len(cat)) < fraction)
    shape_k = (members, pick.size)  # one companion: the same draws as before members
    r = (rng.uniform(1.0, 2.5, shape_k) * psf_fwhm).ravel()
    a = rng.uniform(0, 2 * np.pi, shape_k).ravel()
    H, W = shape
    pick = np.tile(pick, members)
    x = np.clip(cat.x[pick] + r * np.cos(a), -0.5, W - 0.51)
    y = np.clip(cat.y[pick] + r * np.sin(a), -0.5, H - 0.51)
    flux = np.clip(cat.flux[pick] * rng.uniform(0.2, 1.0, shape_k).ravel(), *flux_range)
    n = pick.size
    return rs.Catalogue(x, y, flux, np.full(n, psf_fwhm), np.full(n, psf_fwhm), np.zeros(n),
                        np.zeros(n, np.int32), np.zeros(n), np.zeros(n), ndim=2)


def field_header(shape: tuple[int, int], *, pixel_scale: float, beam: Beam,
                 centre: tuple[float, float] = (0.0, -30.0), sdc1_layout: bool = False,
                 freq_hz: float = 560e6, wcs: bool = True, bunit: str = "JY/BEAM") -> Any:
    """A FITS header for an image of ``shape`` (H, W): SIN projection, pixel scale (arcsec),
    BUNIT and beam; optionally SDC1's FREQ and STOKES axes, or no WCS at all."""
    fits = require("astropy.io.fits")
    H, W = shape
    h = fits.Header()
    if wcs:
        h["CTYPE1"], h["CRVAL1"], h["CDELT1"], h["CRPIX1"], h["CUNIT1"] = (
            "RA---SIN", centre[0], -pixel_scale / 3600.0, (W + 1) / 2.0, "deg")
        h["CTYPE2"], h["CRVAL2"], h["CDELT2"], h["CRPIX2"], h["CUNIT2"] = (
            "DEC--SIN", centre[1], pixel_scale / 3600.0, (H + 1) / 2.0, "deg")
        if sdc1_layout:
            h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = (
                "FREQ", freq_hz, 1e7, 1.0, "Hz")
            h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = ("STOKES", 1.0, 1.0, 1.0)
        h["RADESYS"], h["EQUINOX"] = "FK5", 2000.0
    if not sdc1_layout:
        h["RESTFREQ"] = freq_hz  # the observing frequency, where there is no FREQ axis
    h["BUNIT"] = bunit
    h["BMAJ"], h["BMIN"], h["BPA"] = beam.bmaj / 3600.0, beam.bmin / 3600.0, beam.bpa
    return h


def _check_field_settings(size, noise, density, nan_border, pixel_scale, psf_fwhm,
                          snr_range) -> tuple[int, int]:
    """``(H, W)``, or a ValueError naming the first setting that cannot make a field."""
    shape = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(shape) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 8 for v in shape):
        raise ValueError(f"size: expected an int >= 8 or two of them, received {size!r}")
    for name, v, positive in (("noise", noise, True), ("pixel_scale", pixel_scale, True),
                              ("psf_fwhm", psf_fwhm, True), ("density", density, False)):
        as_bounded_float(v, name, strict=positive)
    if not (isinstance(nan_border, (int, np.integer)) and 0 <= 2 * nan_border < min(shape)):
        raise ValueError(f"nan_border: expected an int >= 0 leaving pixels inside a "
                         f"{shape[0]}x{shape[1]} field, received {nan_border!r}")
    lo, hi = snr_range
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"snr_range: expected 0 < low <= high, received {snr_range!r}")
    return int(shape[0]), int(shape[1])


def synthetic_field(
    size: int | tuple[int, int] = 512,
    *,
    seed: int = 0,
    pixel_scale: float = 0.6,
    psf_fwhm: float = 3.0,
    noise: float = 1e-5,
    density: float = 0.003,
    snr_range: tuple[float, float] = (1.0, 3000.0),
    extended_fraction: float = 0.3,
    extended_size_range: tuple[float, float] = (3.0, 10.0),
    nan_border: int = 0,
    centre: tuple[float, float] = (0.0, -30.0),
    sdc1_layout: bool = False,
    wcs: bool = True,
    noise_edge: float = 1.0,
    blend_fraction: float = 0.0,
    blend_members: int = 1,
    freq_hz: float = 560e6,
    spectral_index: tuple[float, float] | None = None,
    ref_freq_hz: float = 560e6,
    epoch: int | None = None,
    variable_fraction: float = 0.0,
    variability: float = 0.3,
    stokes: str = "I",
    pol_fraction: tuple[float, float] = (0.05, 0.03),
    rm: tuple[float, float] | None = None,
    pb_fwhm: float | None = None,
    peaked_fraction: float = 0.0,
) -> SyntheticField:
    """A synthetic field in Jy/beam with its catalogue.

    ``snr_range`` bounds the integrated flux in units of the noise per pixel of the
    flux-per-pixel image (the radio_sky demo's 0.3-30 for noise 0.01 is (30, 3000));
    ``nan_border`` blanks that many pixels on each side (NaN), like a mosaic edge;
    ``noise_edge`` > 1 makes the noise rise to that factor at the corners, as after a
    primary-beam correction; ``blend_fraction`` gives that share of the sources a fainter
    point-like companion 1 to 2.5 beams away (``blend_members`` companions each, at their own
    angles: groups of three or more).  ``freq_hz``: the observing frequency written to the
    header; ``spectral_index`` (mean, std): each source gets its own spectral index
    (``alpha``, S ~ nu^alpha) and its flux drawn at ``ref_freq_hz`` is scaled to ``freq_hz``
    (``peaked_fraction`` of them with spectra that turn over: ``S ~ nu^(alpha + beta ln(nu /
    ref))``, beta in [-1.5, -0.5] and the peak within a factor e of ``ref_freq_hz``, the
    truth's ``beta``),
    with the noise drawn for that frequency (the same seed at two frequencies: the same
    sources, independent noise).  ``epoch`` (0, 1, ...): one observation of the sky, with
    its own noise; ``variable_fraction`` of the sources (the same ones at every epoch)
    ``variable``, their flux times exp(N(0, ``variability``)) drawn anew at each epoch.
    ``stokes`` "Q", "U" or "V": that Stokes image of the same sky (its own noise): each
    source linearly polarised by a fraction drawn from N(``pol_fraction``) (clipped to [0,
    1]) at an angle uniform in [0, 180) deg (the truth's ``pol_frac``, ``evpa``, the same
    for every Stokes), no circular polarisation (V: noise only); ``rm`` (mean, std): each
    source's rotation measure (rad/m^2), its angle turned by ``rm lambda^2`` at ``freq_hz``
    (the truth's ``evpa`` is then the angle at ``lambda^2 = 0``, ``rm`` the measure).
    ``pb_fwhm`` (arcmin): an image that is not primary-beam corrected, as an interferometer's
    pointing gives it: each source's flux times a Gaussian primary beam of that half-power
    width centred on the field (at the source's centre), the noise uniform; the truth keeps
    the true fluxes and gets ``pb``, the response at each (:func:`primary_beam_map`).
    With the defaults the field is the same as in earlier versions for a given seed.
    """
    H, W = _check_field_settings(size, noise, density, nan_border, pixel_scale, psf_fwhm,
                                 snr_range)
    if not noise_edge >= 1.0 or not 0.0 <= blend_fraction <= 1.0:
        raise ValueError(f"need noise_edge >= 1 and 0 <= blend_fraction <= 1, got {noise_edge}, "
                         f"{blend_fraction}")
    if isinstance(blend_members, bool) or int(blend_members) != blend_members or blend_members < 1:
        raise ValueError(f"blend_members: companions per blended source, an integer >= 1; "
                         f"got {blend_members!r}")
    freq_hz = as_bounded_float(freq_hz, "freq_hz")
    if spectral_index is not None:
        spectral_index = _checked_spectral_index(spectral_index)
        ref_freq_hz = as_bounded_float(ref_freq_hz, "ref_freq_hz")
    if not 0.0 <= float(peaked_fraction) <= 1.0 or (peaked_fraction and spectral_index is None):
        raise ValueError(f"peaked_fraction: a fraction in [0, 1], with spectral_index; received "
                         f"{peaked_fraction!r}")
    if epoch is not None:
        _check_epoch(epoch, variable_fraction, variability)
    if stokes not in ("I", "Q", "U", "V"):
        raise ValueError(f"stokes: one of I, Q, U, V; received {stokes!r}")
    if pb_fwhm is not None:
        pb_fwhm = as_bounded_float(pb_fwhm, "pb_fwhm")
    px_noise = 0.01
    flux_range = (snr_range[0] * px_noise, snr_range[1] * px_noise)
    factor, alpha, variable, pol, pb, beta = None, None, None, None, None, None
    if (noise_edge == 1.0 and blend_fraction == 0.0 and spectral_index is None
            and epoch is None and stokes == "I" and pb_fwhm is None):
        img, cat = rs.make_field((H, W), seed=seed, noise_rms=px_noise, psf_fwhm=psf_fwhm,
                                 density=density, extended_fraction=extended_fraction,
                                 flux_range=flux_range, extended_size_range=extended_size_range)
    else:
        img, cat = rs.make_field((H, W), seed=seed, noise_rms=0.0, psf_fwhm=psf_fwhm,
                                 density=density, extended_fraction=extended_fraction,
                                 flux_range=flux_range, extended_size_range=extended_size_range)
        rng = np.random.default_rng([seed, 7])
        if blend_fraction > 0:
            comp = _companions(cat, blend_fraction, psf_fwhm, flux_range, rng, (H, W),
                               int(blend_members))
            img = img + rs.render_sources((H, W), comp)
            cat = rs.Catalogue(*(np.concatenate([getattr(cat, f), getattr(comp, f)]) for f in
                                 ("x", "y", "flux", "bmaj", "bmin", "pa", "kind", "z", "dz")),
                               ndim=2)
        scale = np.ones(len(cat))
        if spectral_index is not None:  # each source's flux at this frequency
            alpha = np.random.default_rng([seed, 11]).normal(*spectral_index, len(cat))
            beta = np.zeros(len(cat))
            if peaked_fraction > 0:  # spectra that turn over: their peak, their curvature
                prng = np.random.default_rng([seed, 31])
                peaked = prng.random(len(cat)) < peaked_fraction
                beta[peaked] = prng.uniform(-1.5, -0.5, int(peaked.sum()))
                nu_peak = ref_freq_hz * np.exp(prng.uniform(-1.0, 1.0, int(peaked.sum())))
                alpha[peaked] = -2.0 * beta[peaked] * np.log(nu_peak / ref_freq_hz)
            x = math.log(freq_hz / ref_freq_hz)
            scale = scale * np.exp(alpha * x + beta * x * x)
        if epoch is not None:  # and at this epoch
            variable = np.random.default_rng([seed, 13]).random(len(cat)) < variable_fraction
            jump = np.exp(np.random.default_rng([seed, 17, int(epoch)]).normal(
                0.0, variability, len(cat)))
            scale = scale * np.where(variable, jump, 1.0)
        if stokes != "I":  # this Stokes parameter of each source's polarised flux
            prng = np.random.default_rng([seed, 19])
            frac = np.clip(prng.normal(*pol_fraction, len(cat)), 0.0, 1.0)
            angle = prng.uniform(0.0, np.pi, len(cat))
            pol = (frac, np.degrees(angle))
            if rm is not None:
                measure = np.random.default_rng([seed, 23]).normal(*rm, len(cat))
                pol = pol + (measure,)
                angle = angle + measure * (299_792_458.0 / freq_hz) ** 2
            scale = scale * {"Q": frac * np.cos(2 * angle), "U": frac * np.sin(2 * angle),
                             "V": np.zeros(len(cat))}[stokes]
        if spectral_index is not None or epoch is not None or stokes != "I":  # redrawn,
            # with this one's noise
            cat = rs.Catalogue(cat.x, cat.y, cat.flux * scale, cat.bmaj, cat.bmin, cat.pa,
                               cat.kind, cat.z, cat.dz, ndim=2)
            img = rs.render_sources((H, W), cat)
            key = [seed, 7, int(round(freq_hz))] + ([] if epoch is None else [int(epoch) + 1])
            key += [] if stokes == "I" else [100 + "QUV".index(stokes)]
            rng = np.random.default_rng(key)
        if pb_fwhm is not None:  # the sky as the antennas see it
            pb = _gaussian_beam(cat.x, cat.y, (H, W), pb_fwhm * 60.0 / pixel_scale)
            img = rs.render_sources((H, W), rs.Catalogue(
                cat.x, cat.y, cat.flux * pb, cat.bmaj, cat.bmin, cat.pa, cat.kind, cat.z,
                cat.dz, ndim=2))
        factor = primary_beam_noise((H, W), noise_edge) if noise_edge > 1.0 else None
        noise_img = rs.correlated_noise((H, W), px_noise, psf_fwhm, rng)
        img = (img + (noise_img if factor is None else noise_img * factor)).astype(np.float32)
    beam_pix = FWHM_AREA * psf_fwhm**2
    to_jyb = noise / (px_noise * beam_pix)  # flux/pixel -> Jy/beam, noise -> ``noise``
    image = (img.astype(np.float64) * beam_pix * to_jyb).astype(np.float32)
    if nan_border > 0:
        image[:nan_border] = image[-nan_border:] = np.nan
        image[:, :nan_border] = image[:, -nan_border:] = np.nan
    scaled = rs.Catalogue(cat.x, cat.y, cat.flux * beam_pix * to_jyb / beam_pix, cat.bmaj,
                          cat.bmin, cat.pa, cat.kind, cat.z, cat.dz, ndim=2)
    beam = Beam(psf_fwhm * pixel_scale, psf_fwhm * pixel_scale, 0.0)
    header = field_header((H, W), pixel_scale=pixel_scale, beam=beam, centre=centre,
                          sdc1_layout=sdc1_layout, wcs=wcs, freq_hz=freq_hz)
    return SyntheticField(image=image, catalogue=scaled, header=header, noise=float(noise),
                          beam=beam, pixel_scale=float(pixel_scale), noise_factor=factor,
                          alpha=alpha, variable=variable, pol=pol, pb_fwhm=pb_fwhm, pb=pb,
                          beta=beta)


def with_artefacts(field: SyntheticField, *, level: float = 0.01, min_snr: float = 300.0,
                   spokes: int = 6, per_spoke: int = 5, reach: float = 25.0,
                   seed: int = 0) -> SyntheticField:
    """``field`` with the residual sidelobes of calibration errors around its bright
    sources (those whose peak reaches ``min_snr`` times the noise): along ``spokes`` radial
    lines at random angles, ``per_spoke`` beam-shaped blobs each, 2 to ``reach`` beam FWHMs
    out, of either sign at random, their peaks ``level`` times the source's over the square
    root of their distance in beams (as the errors' sidelobes of real images, brightest near
    the source). Not in the truth; their positions and peaks in ``artefacts``."""
    if not (0.0 < float(level) < 1.0) or min_snr <= 0 or spokes < 1 or per_spoke < 1 \
            or reach <= 2.0:
        raise ValueError(f"with_artefacts: 0 < level < 1, min_snr > 0, spokes and per_spoke "
                         f">= 1, reach > 2 beams; received {level!r}, {min_snr!r}, "
                         f"{spokes!r}, {per_spoke!r}, {reach!r}")
    H, W = field.image.shape
    fwhm = field.beam.bmaj / field.pixel_scale  # pixels
    c = field.catalogue
    peak = c.peak * FWHM_AREA * fwhm**2 * (1.0 if field.pb is None else field.pb)  # Jy/beam
    bright = np.flatnonzero(peak >= min_snr * field.noise_at(c.x, c.y))
    rng = np.random.default_rng([int(seed), 29])
    blobs = []
    for k in bright:
        angles = rng.uniform(0.0, 2.0 * np.pi, spokes)
        for a in angles:
            r = rng.uniform(2.0, reach, per_spoke) * fwhm
            t = a + rng.normal(0.0, 0.05, per_spoke)
            amp = level * peak[k] / np.sqrt(r / fwhm) * rng.choice([-1.0, 1.0], per_spoke)
            blobs.append(np.stack([c.x[k] + r * np.cos(t), c.y[k] + r * np.sin(t), amp], 1))
    art = np.concatenate(blobs) if blobs else np.zeros((0, 3))
    art = art[(art[:, 0] > -0.5) & (art[:, 0] < W - 0.5) & (art[:, 1] > -0.5)
              & (art[:, 1] < H - 0.5)]
    image = field.image.astype(np.float64)
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    half = int(math.ceil(4 * sigma))
    for x0, y0, amp in art:
        cx, cy = int(round(x0)), int(round(y0))
        ys, xs = slice(max(cy - half, 0), min(cy + half + 1, H)), slice(max(cx - half, 0),
                                                                        min(cx + half + 1, W))
        yy, xx = np.mgrid[ys, xs]
        image[ys, xs] += amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    return replace(field, image=image.astype(np.float32), artefacts=art)


def _gaussian_beam(x: np.ndarray, y: np.ndarray, shape: tuple[int, int],
                   fwhm_pix: float) -> np.ndarray:
    """A Gaussian primary beam's response at pixel positions, centred on the image."""
    H, W = shape
    r2 = (np.asarray(x) - (W - 1) / 2) ** 2 + (np.asarray(y) - (H - 1) / 2) ** 2
    return np.exp(-4.0 * math.log(2.0) * r2 / fwhm_pix**2)


def primary_beam_map(field: SyntheticField) -> np.ndarray:
    """[H, W] float32: the primary beam a ``pb_fwhm`` field was made with, at every pixel."""
    if field.pb_fwhm is None:
        raise ValueError("field: made without pb_fwhm, it has no primary beam")
    H, W = field.image.shape
    y, x = np.mgrid[0:H, 0:W]
    return _gaussian_beam(x, y, (H, W), field.pb_fwhm * 60.0 / field.pixel_scale
                          ).astype(np.float32)


def _check_epoch(epoch: Any, fraction: Any, variability: Any) -> None:
    """ValueError naming the first of the epoch settings that cannot be used."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch: an integer >= 0, received {epoch!r}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"variable_fraction: a fraction in [0, 1], received {fraction!r}")
    as_bounded_float(variability, "variability", strict=False)


def _checked_spectral_index(value: Any) -> tuple[float, float]:
    """``(mean, std)`` of the sources' spectral indices; ValueError naming it otherwise."""
    try:
        mean, std = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"spectral_index: (mean, std), e.g. (-0.7, 0.2); received {value!r}") \
            from None
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ValueError(f"spectral_index: a finite mean and a std >= 0; received {value!r}")
    return mean, std


def truth_table(field: SyntheticField) -> Any:
    """The true catalogue as an astropy Table: id, ra, dec (when the header has a WCS), x, y,
    flux (Jy), peak (Jy/beam), snr (peak / noise), bmaj, bmin (beam-convolved FWHM, arcsec),
    pa (deg east of north), bmaj_deconv, bmin_deconv (intrinsic FWHM), kind (0 point,
    1 extended).  Sources whose centre lies in a blanked border are left out."""
    wcs_mod = require("astropy.wcs")
    c = field.catalogue
    s = field.pixel_scale
    beam_pix = field.beam.bmaj / s
    peak = c.peak * FWHM_AREA * beam_pix**2  # per pixel -> per beam
    iy = np.clip(np.floor(c.y + 0.5).astype(int), 0, field.image.shape[0] - 1)
    ix = np.clip(np.floor(c.x + 0.5).astype(int), 0, field.image.shape[1] - 1)
    keep = np.isfinite(field.image[iy, ix])
    theta = c.pa + 0.5 * math.pi  # radio_sky pa: from +y towards -x
    cols: dict[str, np.ndarray] = {"id": np.arange(1, len(c) + 1)}
    if "CTYPE1" in field.header:
        w = wcs_mod.WCS(field.header).celestial
        cols["ra"], cols["dec"] = pixel_to_sky(w, c.x, c.y)
        pa = pixel_angle_to_pa(w, c.x, c.y, theta)
    else:
        pa = np.mod(np.degrees(c.pa), 180.0)
    seen = 1.0 if field.pb is None else field.pb  # the image's apparent peaks
    cols.update(x=c.x, y=c.y, flux=c.flux, peak=peak, snr=peak * seen / field.noise_at(c.x, c.y),
                bmaj=c.bmaj * s, bmin=c.bmin * s, pa=pa,
                bmaj_deconv=np.sqrt(np.maximum(c.bmaj**2 - beam_pix**2, 0)) * s,
                bmin_deconv=np.sqrt(np.maximum(c.bmin**2 - beam_pix**2, 0)) * s,
                kind=c.kind)
    if field.alpha is not None:
        cols["alpha"] = field.alpha
    if field.beta is not None and np.any(field.beta):  # (curved spectra: at ref_freq_hz)
        cols["beta"] = field.beta
    if field.variable is not None:
        cols["variable"] = field.variable
    if field.pol is not None:
        cols["pol_frac"], cols["evpa"] = field.pol[:2]
        if len(field.pol) > 2:
            cols["rm"] = field.pol[2]
    if field.pb is not None:
        cols["pb"] = field.pb
    t = make_table(cols, meta={"noise_jy_beam": field.noise, "pixel_scale_arcsec": s,
                               "beam_arcsec": field.beam.bmaj})
    t["peak"].description = "peak brightness of the true (beam-convolved) Gaussian"
    t["snr"].description = "true peak / local noise rms"
    if "pb" in t.colnames:
        t["pb"].description = "primary beam's response at the source: the image shows pb x flux"
    return t[keep]


def write_fits(path: str | os.PathLike, field: SyntheticField) -> None:
    """Write the field as a FITS image (SDC1 4D layout when its header has 4 axes), atomically."""
    fits = require("astropy.io.fits")
    data = field.image
    if "CTYPE4" in field.header:
        data = data[None, None]
    hdu = fits.PrimaryHDU(data=data, header=field.header)
    with atomic_write(path) as fh:
        hdu.writeto(fh)


def write_primary_beam(path: str | os.PathLike, field: SyntheticField) -> None:
    """Write the primary beam of a ``pb_fwhm`` field as a FITS image on the field's grid (its
    WCS and layout; no flux unit, no restoring beam), atomically."""
    fits = require("astropy.io.fits")
    data = primary_beam_map(field)
    header = field.header.copy()
    for key in ("BUNIT", "BMAJ", "BMIN", "BPA"):
        header.remove(key, ignore_missing=True)
    if "CTYPE4" in header:
        data = data[None, None]
    with atomic_write(path) as fh:
        fits.PrimaryHDU(data=data, header=header).writeto(fh)


def write_stokes_cube(path: str | os.PathLike, size: int, freqs_hz: Sequence[float], *,
                      stokes: str = "Q", seed: int = 0, pb_fwhm: float | None = None,
                      **kw: Any) -> Any:
    """A continuum cube of one Stokes parameter over the channels ``freqs_hz`` (uniformly
    spaced; each channel :func:`synthetic_field` at its frequency with its own noise, the
    same sources; e.g. Stokes I sub-band planes with ``spectral_index``), written as FITS
    with a FREQ axis; returns the truth table of the first channel (with ``rm`` and ``evpa``
    at lambda^2 = 0 when ``rm`` is given). ``pb_fwhm``: the sky seen through a Gaussian
    primary beam of that FWHM (arcmin) at the first channel, narrowing as 1 / frequency (a
    dish's), not corrected."""
    fits = require("astropy.io.fits")
    freqs = np.asarray(freqs_hz, np.float64)
    if freqs.ndim != 1 or freqs.size < 2 or not np.all(np.diff(freqs) > 0):
        raise ValueError(f"freqs_hz: two or more increasing frequencies, received {freqs_hz!r}")
    if not np.allclose(np.diff(freqs), freqs[1] - freqs[0], rtol=1e-6):
        raise ValueError("freqs_hz: uniformly spaced channels (one FREQ axis)")
    fields = [synthetic_field(size, seed=seed, stokes=stokes, freq_hz=float(f),
                              pb_fwhm=None if pb_fwhm is None else pb_fwhm * freqs[0] / f, **kw)
              for f in freqs]
    header = fields[0].header.copy()
    header.pop("RESTFREQ", None)
    header["CTYPE3"], header["CRVAL3"], header["CDELT3"], header["CRPIX3"], header["CUNIT3"] = (
        "FREQ", float(freqs[0]), float(freqs[1] - freqs[0]), 1.0, "Hz")
    cube = np.stack([f.image for f in fields]).astype(np.float32)
    with atomic_write(path) as fh:
        fits.PrimaryHDU(data=cube, header=header).writeto(fh)
    return truth_table(fields[0])
