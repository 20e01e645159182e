"""Synthetic HI-like spectral-line cubes written as FITS (RA, Dec, frequency WCS, Jy/beam,
beam, HI rest frequency) with their true line catalogues: test data for 3D detectors and
the cube path of ``predict`` and ``val``.

The sources and noise come from :func:`cianna_jax.datasets.radio_sky.make_cube`: each
source a 2D Gaussian on the sky times a Gaussian line, noise correlated as the beam within
a channel and independent between channels. The cube is converted to Jy/beam and scaled so
that the noise rms is ``noise`` Jy/beam. The frequency axis defaults to SDC2's sampling
(30 kHz channels from 950 MHz).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from ..datasets import radio_sky as rs
from ..io.atomic import atomic_write
from ._deps import require
from .catalogue import disc_inclination, make_table
from .fits_image import FWHM_AREA, Beam
from .hi_discs import Discs, draw_discs, render_discs
from .hi_mass import (
    ARCSEC_PER_RAD,
    SIZE_MASS_SCATTER_DEX,
    angular_diameter_distance,
    gaussian_disc_diameter,
    gaussian_disc_fwhm,
    gaussian_disc_max_diameter,
    hi_diameter_kpc,
    hi_mass,
)
from .sky import pixel_angle_to_pa, pixel_to_sky
from .spectral import C_KMS, HI_REST_HZ

__all__ = ["SyntheticCube", "synthetic_cube", "cube_header", "cube_truth_table",
           "write_cube_fits", "disc_sizes"]

#: width of a Gaussian line at 20% of its peak, in FWHMs
W20_PER_FWHM = math.sqrt(math.log(5.0) / math.log(2.0))


@dataclass(frozen=True)
class SyntheticCube:
    """``cube`` [D, H, W] float32 in Jy/beam, its ``catalogue`` (radio_sky, positions and
    line centres in pixels and channels, ``flux`` in Jy x channels), ``header`` (astropy),
    ``noise`` rms (Jy/beam), ``beam``, ``pixel_scale`` (arcsec), ``freq0`` (Hz, channel
    0) and ``dfreq`` (Hz per channel); a cube of rotating discs has ``discs``
    (:class:`.hi_discs.Discs`, fluxes in Jy/beam x channels) and no ``catalogue``."""

    cube: np.ndarray
    catalogue: rs.Catalogue | None
    header: Any
    noise: float
    beam: Beam
    pixel_scale: float
    freq0: float
    dfreq: float
    discs: Discs | None = None

    def frequency(self, z: np.ndarray) -> np.ndarray:
        """Frequency (Hz) at 0-based fractional channels."""
        return self.freq0 + self.dfreq * np.asarray(z, np.float64)


def cube_header(shape: tuple[int, int, int], *, pixel_scale: float, beam: Beam,
                freq0: float, dfreq: float, centre: tuple[float, float] = (0.0, -30.0),
                rest_hz: float = HI_REST_HZ) -> Any:
    """A FITS header for a cube of ``shape`` (D, H, W): SIN projection, FREQ axis (channel
    0 at ``freq0``, ``dfreq`` Hz per channel), Jy/beam, beam and rest frequency."""
    fits = require("astropy.io.fits")
    D, H, W = shape
    h = fits.Header()
    h["CTYPE1"], h["CRVAL1"], h["CDELT1"], h["CRPIX1"], h["CUNIT1"] = (
        "RA---SIN", centre[0], -pixel_scale / 3600.0, (W + 1) / 2.0, "deg")
    h["CTYPE2"], h["CRVAL2"], h["CDELT2"], h["CRPIX2"], h["CUNIT2"] = (
        "DEC--SIN", centre[1], pixel_scale / 3600.0, (H + 1) / 2.0, "deg")
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = (
        "FREQ", float(freq0), float(dfreq), 1.0, "Hz")
    h["SPECSYS"], h["RESTFRQ"] = "BARYCENT", float(rest_hz)
    h["RADESYS"], h["EQUINOX"] = "FK5", 2000.0
    h["BUNIT"] = "JY/BEAM"
    h["BMAJ"], h["BMIN"], h["BPA"] = beam.bmaj / 3600.0, beam.bmin / 3600.0, beam.bpa
    return h


def synthetic_cube(
    size: tuple[int, int, int] = (96, 192, 192),
    *,
    seed: int = 0,
    pixel_scale: float = 2.8,
    psf_fwhm: float = 2.5,
    noise: float = 1e-4,
    density: float = 2e-4,
    snr_range: tuple[float, float] = (300.0, 30000.0),
    line_width_range: tuple[float, float] = (3.0, 12.0),
    extended_fraction: float = 0.5,
    extended_size_range: tuple[float, float] = (3.0, 8.0),
    freq0: float = 950e6,
    dfreq: float = 30e3,
    centre: tuple[float, float] = (0.0, -30.0),
    discs: bool = False,
    disc_size_range: tuple[float, float] | None = None,
    rotation_range: tuple[float, float] = (40.0, 120.0),
    sigma_v: float = 10.0,
) -> SyntheticCube:
    """A synthetic line cube in Jy/beam with its catalogue.

    ``psf_fwhm`` and ``extended_size_range`` in pixels, ``line_width_range`` the lines'
    FWHM in channels; ``snr_range`` bounds the sources' voxel sums in units of the noise per
    voxel of the flux-per-pixel cube (as :func:`.synthetic.synthetic_field`); ``density``
    sources per sky pixel. Line centres keep one FWHM of the widest line from the ends.
    ``discs``: rotating HI discs instead (:mod:`.hi_discs`: double-horned lines, emission
    moving across the sky with the channel), rotation ``rotation_range`` km/s and dispersion
    ``sigma_v`` km/s, sized by their HI masses as galaxies are (:func:`disc_sizes`), or
    of FWHM log-uniform in ``disc_size_range`` pixels where given."""
    if len(size) != 3 or not all(isinstance(v, (int, np.integer)) and v >= 8 for v in size):
        raise ValueError(f"size: expected three ints >= 8 (channels, height, width), received "
                         f"{size!r}")
    for name, v in (("noise", noise), ("pixel_scale", pixel_scale), ("psf_fwhm", psf_fwhm),
                    ("freq0", freq0)):
        as_bounded_float(v, name)
    if not (math.isfinite(dfreq) and dfreq != 0):
        raise ValueError(f"dfreq: expected a finite, non-zero channel width (Hz), received "
                         f"{dfreq!r}")
    if freq0 + dfreq * (size[0] - 1) <= 0:
        raise ValueError(f"dfreq: the last channel's frequency, {freq0 + dfreq * (size[0] - 1)}"
                         " Hz, must stay positive")
    lo, hi = snr_range
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"snr_range: expected 0 < low <= high, received {snr_range!r}")
    if size[0] <= 2 * line_width_range[1]:
        raise ValueError(f"size: {size[0]} channels leave no room for lines of up to "
                         f"{line_width_range[1]:g} channels FWHM (one FWHM from each end): "
                         f"give more than {2 * line_width_range[1]:g} channels")
    px_noise = 0.01
    if discs:
        return _disc_cube(tuple(int(v) for v in size), seed=seed, density=density,
                          flux_range=(lo * px_noise, hi * px_noise), px_noise=px_noise,
                          noise=noise, psf_fwhm=psf_fwhm, pixel_scale=pixel_scale, freq0=freq0,
                          dfreq=dfreq, centre=centre, size_range=disc_size_range,
                          rotation_range=rotation_range, sigma_v=sigma_v)
    cube, cat = rs.make_cube(tuple(int(v) for v in size), seed=seed, density=density,
                             noise_rms=px_noise, psf_fwhm=psf_fwhm,
                             flux_range=(lo * px_noise, hi * px_noise),
                             extended_fraction=extended_fraction,
                             extended_size_range=extended_size_range,
                             line_width_range=line_width_range,
                             z_border=float(line_width_range[1]))
    beam_pix = FWHM_AREA * psf_fwhm**2
    to_jyb = noise / px_noise  # the noise becomes ``noise`` Jy/beam
    scaled = rs.Catalogue(cat.x, cat.y, cat.flux * to_jyb / beam_pix, cat.bmaj, cat.bmin,
                          cat.pa, cat.kind, cat.z, cat.dz, ndim=3)
    beam = Beam(psf_fwhm * pixel_scale, psf_fwhm * pixel_scale, 0.0)
    header = cube_header(cube.shape, pixel_scale=pixel_scale, beam=beam, freq0=freq0,
                         dfreq=dfreq, centre=centre)
    return SyntheticCube(cube=(cube * to_jyb).astype(np.float32), catalogue=scaled,
                         header=header, noise=float(noise), beam=beam,
                         pixel_scale=float(pixel_scale), freq0=float(freq0),
                         dfreq=float(dfreq))


def disc_sizes(rng: np.random.Generator, line_flux: np.ndarray, freq: np.ndarray,
               pixel_scale: float) -> np.ndarray:
    """FWHM (pixels of ``pixel_scale`` arcsec) of Gaussian HI discs of integrated flux
    ``line_flux`` (Jy Hz) at ``freq`` (Hz) sized by their HI masses: the HI diameter at 1
    Msun/pc^2 from their HI masses by the size-mass relation with its 0.06 dex scatter
    (:mod:`.hi_mass`), the compact Gaussian of that mass reaching it (its FWHM 0.56-0.59 of
    it)."""
    redshift = HI_REST_HZ / np.asarray(freq, np.float64) - 1.0
    if not np.all(redshift > 0):
        raise ValueError(f"freq0: discs sized by their HI masses need HI redshifts above 0 "
                         f"(frequencies below {HI_REST_HZ / 1e6:.1f} MHz), received lines at "
                         f"up to {np.max(freq) / 1e6:.1f} MHz; give disc_size_range instead")
    log_m = hi_mass(line_flux, redshift)
    d_hi = hi_diameter_kpc(log_m) * 10.0 ** rng.normal(0.0, SIZE_MASS_SCATTER_DEX, len(log_m))
    # no Gaussian of the mass reaches farther (the scatter asks for more in about one draw
    # in eight at 10^10 Msun): the widest one does
    d_hi = np.minimum(d_hi, 0.999 * gaussian_disc_max_diameter(log_m))
    arcsec = gaussian_disc_fwhm(log_m, d_hi) / angular_diameter_distance(redshift) * ARCSEC_PER_RAD
    return arcsec / pixel_scale


def _disc_cube(size, *, seed, density, flux_range, px_noise, noise, psf_fwhm, pixel_scale,
               freq0, dfreq, centre, size_range, rotation_range, sigma_v) -> SyntheticCube:
    rng = np.random.default_rng(seed)
    D, H, W = size
    cube = rs.make_cube(size, n_sources=0, seed=rng, noise_rms=px_noise,
                        psf_fwhm=psf_fwhm)[0].astype(np.float64)
    n = int(rng.poisson(density * H * W))
    mid = freq0 + dfreq * 0.5 * (D - 1)
    channel_kms = C_KMS * abs(dfreq) / mid
    d = draw_discs(rng, n, size, flux=rs.power_law_fluxes(rng, n, flux_range, 1.8),
                   size_range=size_range or (1.0, 1.0), rotation_range=rotation_range,
                   sigma_v=sigma_v, channel_kms=channel_kms, border=2.0 * psf_fwhm)
    beam_pix = FWHM_AREA * psf_fwhm**2
    to_jyb = noise / px_noise
    if size_range is None:
        d = replace(d, fwhm=disc_sizes(rng, d.flux * to_jyb / beam_pix * abs(dfreq),
                                          freq0 + dfreq * d.z, pixel_scale))
    d = render_discs(cube, d, psf_fwhm=psf_fwhm, channel_kms=channel_kms, rising=dfreq > 0)
    d = replace(d, flux=d.flux * to_jyb / beam_pix, peak=d.peak * to_jyb)
    beam = Beam(psf_fwhm * pixel_scale, psf_fwhm * pixel_scale, 0.0)
    header = cube_header(size, pixel_scale=pixel_scale, beam=beam, freq0=freq0, dfreq=dfreq,
                         centre=centre)
    return SyntheticCube(cube=(cube * to_jyb).astype(np.float32), catalogue=None, header=header,
                         noise=float(noise), beam=beam, pixel_scale=float(pixel_scale),
                         freq0=float(freq0), dfreq=float(dfreq), discs=d)


def _hi_size(fwhm: np.ndarray, line_flux: np.ndarray, freq: np.ndarray):
    """log10 HI mass and SDC2's ``hi_size`` (arcsec: the diameter at 1 Msun/pc^2) of
    Gaussian sources of face-on FWHM ``fwhm`` (arcsec), ``line_flux`` (Jy Hz) and ``freq``
    (Hz); 0 for point sources, NaN off HI redshifts above 0."""
    redshift = HI_REST_HZ / np.asarray(freq, np.float64) - 1.0
    log_m = hi_mass(line_flux, redshift)
    with np.errstate(invalid="ignore", divide="ignore"):
        kpc_per_arcsec = angular_diameter_distance(redshift) / ARCSEC_PER_RAD
        d_hi = gaussian_disc_diameter(log_m, fwhm * kpc_per_arcsec) / kpc_per_arcsec
    return log_m, np.where((fwhm == 0) & (redshift > 0), 0.0, d_hi)


def _disc_truth(sc: SyntheticCube, w: Any) -> dict[str, np.ndarray]:
    """The truth columns of a cube of rotating discs."""
    d, s = sc.discs, sc.pixel_scale
    psf = sc.beam.bmaj / s
    nu = sc.frequency(d.z_mid)
    kms = C_KMS * abs(sc.dfreq) / nu  # km/s per channel at each line
    ra, dec = pixel_to_sky(w, d.x, d.y)
    major, minor = d.fwhm, d.fwhm * d.axis_ratio()
    line_flux = d.flux * abs(sc.dfreq)
    log_m, d_hi = _hi_size(major * s, line_flux, nu)
    return {"id": np.arange(1, len(d) + 1), "ra": ra, "dec": dec, "x": d.x, "y": d.y,
            "z": d.z_mid, "freq": nu, "line_flux": line_flux,
            "w50": d.w50 * kms, "w20": d.w20 * kms, "peak": d.peak,
            "snr": d.peak / sc.noise, "bmaj": np.hypot(major, psf) * s,
            "bmin": np.hypot(minor, psf) * s,
            "pa": pixel_angle_to_pa(w, d.x, d.y, d.theta_rec),
            "pa_kin": pixel_angle_to_pa(w, d.x, d.y, d.theta_rec, directed=True),
            "kind": np.full(len(d), 2), "hi_size": d_hi, "i": np.degrees(d.incl),
            "v_flat": d.v_flat, "log_mhi": log_m, "fwhm": major * s}


def cube_truth_table(sc: SyntheticCube) -> Any:
    """The true line catalogue as an astropy Table: id, ra, dec, x, y, z (channel), freq
    (Hz), line_flux (Jy Hz), w50 and w20 (rest-frame km/s, c dnu / nu), peak (Jy/beam)
    and snr (true peak voxel / noise), bmaj, bmin (beam-convolved FWHM, arcsec), pa (deg
    east of north), kind (0 point, 1 extended, 2 rotating disc), hi_size (arcsec) and i
    (deg) for SDC2 scores; for discs also pa_kin (the receding half, deg in [0, 360)),
    v_flat (km/s), log_mhi (HI mass from the line flux) and fwhm (the face-on Gaussian's,
    arcsec). A disc's hi_size is SDC2's, its face-on surface density's diameter at 1
    Msun/pc^2 (:func:`.hi_mass.gaussian_disc_diameter`), its i its own, its z and widths its
    noise-free spectrum's. Gaussian lines' hi_size is the same diameter for their intrinsic
    FWHM major axis (0 for point sources), their i :func:`.catalogue.disc_inclination` of
    the intrinsic axes (60 for point sources); they have log_mhi too."""
    wcs_mod = require("astropy.wcs")
    meta = {"noise_jy_beam": sc.noise, "pixel_scale_arcsec": sc.pixel_scale,
            "beam_arcsec": sc.beam.bmaj, "channel_width_hz": sc.dfreq,
            "rest_frequency_hz": float(sc.header["RESTFRQ"])}
    if sc.discs is not None:
        t = make_table(_disc_truth(sc, wcs_mod.WCS(sc.header).celestial), meta=meta)
        t["v_flat"].unit, t["v_flat"].description = "km/s", "flat rotation velocity"
        t["fwhm"].unit = "arcsec"
        t["fwhm"].description = "FWHM of the disc's face-on Gaussian surface density"
        t["snr"].description = "true peak voxel / noise rms"
        return t
    c = sc.catalogue
    s = sc.pixel_scale
    beam_pix = FWHM_AREA * (sc.beam.bmaj / s) ** 2
    w = wcs_mod.WCS(sc.header).celestial
    ra, dec = pixel_to_sky(w, c.x, c.y)
    nu = sc.frequency(c.z)
    w50 = C_KMS * c.dz * abs(sc.dfreq) / nu
    peak = c.peak * beam_pix  # per pixel -> per beam
    cols = {"id": np.arange(1, len(c) + 1), "ra": ra, "dec": dec, "x": c.x, "y": c.y,
            "z": c.z, "freq": nu, "line_flux": c.flux * abs(sc.dfreq), "w50": w50,
            "w20": W20_PER_FWHM * w50, "peak": peak, "snr": peak / sc.noise,
            "bmaj": c.bmaj * s, "bmin": c.bmin * s,
            "pa": pixel_angle_to_pa(w, c.x, c.y, c.pa + 0.5 * math.pi), "kind": c.kind}
    # SDC2's hi_size from the intrinsic (beam-deconvolved) major axis and the mass, the
    # inclination of the intrinsic axes
    psf = sc.beam.bmaj / s
    major = np.sqrt(np.maximum(c.bmaj**2 - psf**2, 0.0)) * s
    minor = np.sqrt(np.maximum(c.bmin**2 - psf**2, 0.0)) * s
    major = np.where(c.kind == 0, 0.0, major)
    cols["log_mhi"], cols["hi_size"] = _hi_size(major, cols["line_flux"], nu)
    cols["i"] = disc_inclination(major, minor)
    t = make_table(cols, meta=meta)
    t["peak"].description = "peak brightness of the true line (beam-convolved), Jy/beam"
    t["snr"].description = "true peak voxel / noise rms"
    return t


def write_cube_fits(path: str | os.PathLike, sc: SyntheticCube) -> None:
    """Write the cube as a 3D FITS image, atomically."""
    fits = require("astropy.io.fits")
    hdu = fits.PrimaryHDU(data=sc.cube, header=sc.header)
    with atomic_write(path) as fh:
        hdu.writeto(fh)
