"""The primary beam: an interferometer's sensitivity across its field, and the correction
of a catalogue's fluxes for it.

An image that is not primary-beam corrected (flat noise, as SDC1's images and most
imagers' default output) shows each source at its *apparent* flux: its true flux times the
antennas' power response ``A`` (1 at the pointing centre, falling towards the edge) at its
position. The detector finds and measures sources there, where the noise is uniform; the
catalogue's fluxes, peaks, their errors and the local rms are then divided by ``A`` at each
source (CIANNA's SDC1 pipeline does the same: one response per source, at its centre), and
a source where ``A`` is below ``pb_min`` is left out (surveys cut at 0.1-0.3). Training on
such an image with a catalogue of true fluxes multiplies them by ``A`` instead, so that
the detector learns the fluxes it sees.

A beam is read from a FITS image of ``A`` (its own WCS and grid, e.g. SDC1's
``PrimaryBeam_B1.fits``; sampled bilinearly at each source's sky position) or described
by a model centred on the pointing (the image's reference position unless given):

* ``gaussian:FWHM``: ``A = exp(-4 ln 2 r^2 / FWHM^2)``, FWHM in arcmin;
* ``cosine:FWHM``: the power pattern of a cosine-tapered aperture (Condon & Ransom 2016),
  ``A = [cos(1.189 pi r / FWHM) / (1 - 4 (1.189 r / FWHM)^2)]^2``, its half-power width
  FWHM arcmin; its main lobe only (to the first null, 1.26 FWHM from the centre: beyond,
  in the sidelobes, the response is not known and sources there are left out);
* ``meerkat``: that pattern with FWHM 57.5 arcmin x (1.5 GHz / frequency), MeerKAT's
  L-band beam (Mauch et al. 2020), at the image's frequency.

In a cube each line is corrected at its channel's frequency: a model's width scales as
1 / frequency (a given FWHM is the cube's reference frequency's); a beam image of one plane
serves every channel, a beam cube (a frequency axis, e.g. one plane per channel or per
sub-band, on its own grid) is interpolated linearly in frequency between its two planes
nearest each line's (and a 2D image's frequency read in its own header).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fits_image import FitsImage, ImageError, continuum_frequency, open_image
from .sky import angular_separation, pixel_to_sky, sky_to_pixel

__all__ = ["PrimaryBeam", "BeamModel", "BeamImage", "primary_beam", "pb_response",
           "checked_pb_min", "finding_beam", "format_correction", "catalogue_response",
           "FORCED_NOTE", "MODELS", "MEERKAT_FWHM_ARCMIN"]

#: the model names ``primary_beam`` takes, with ``:FWHM`` (arcmin) for the first two
MODELS = ("gaussian", "cosine", "meerkat")
#: MeerKAT L-band: the beam's half-power width at 1.5 GHz, in arcmin (Mauch et al. 2020)
MEERKAT_FWHM_ARCMIN = 57.5
_COSINE = 1.189  # a cosine-tapered aperture's pattern reaches half power at r = FWHM / 2
#: a beam image's largest accepted value (a little above 1: interpolation, normalisation)
MAX_RESPONSE = 1.1
#: a beam image is read in one window up to this many pixels, else 2x2 pixels per source
WINDOW_PIXELS = 1 << 24


class PrimaryBeam:
    """A primary beam's power response at an image's pixels."""

    description: str

    def response(self, image: FitsImage, x: np.ndarray, y: np.ndarray,
                 freq_hz: np.ndarray | None = None) -> np.ndarray:
        """The response (1 at the pointing centre) at 0-based pixel positions of ``image``
        (and, in a cube, at each position's frequency); NaN where the beam is not known
        (outside a beam image, or blank there)."""
        raise NotImplementedError


@dataclass(frozen=True)
class BeamModel(PrimaryBeam):
    """A circular beam model: ``kind`` "gaussian" or "cosine", half-power width
    ``fwhm_arcmin`` (None for "meerkat": from the image's frequency), centred at ``centre``
    (RA, Dec in degrees; None: the image's reference position CRVAL)."""

    kind: str
    fwhm_arcmin: float | None = None
    centre: tuple[float, float] | None = None

    @property
    def description(self) -> str:  # type: ignore[override]
        width = ("57.5 arcmin x 1.5 GHz / frequency" if self.fwhm_arcmin is None
                 else f"FWHM {self.fwhm_arcmin:g} arcmin")
        at = ("the image's reference position" if self.centre is None
              else f"RA {self.centre[0]:.6f}, Dec {self.centre[1]:.6f} deg")
        return f"{self.kind} model, {width}, centred at {at}"

    def fwhm_for(self, image: FitsImage, freq_hz: np.ndarray | None = None
                 ) -> float | np.ndarray:
        """The half-power width in arcmin for ``image`` (MeerKAT's at its frequency); in a
        cube, at each of ``freq_hz``, the width scaling as 1 / frequency (a given width is
        the cube's reference frequency's)."""
        ref = continuum_frequency(image.header)
        if self.fwhm_arcmin is not None:
            if freq_hz is None or ref is None:
                return self.fwhm_arcmin
            return self.fwhm_arcmin * ref / np.asarray(freq_hz, np.float64)
        freq = np.asarray(freq_hz, np.float64) if freq_hz is not None else ref
        if freq is None:
            raise ImageError(f"{image.path}: the 'meerkat' beam scales with frequency, but "
                             "the header gives none (a FREQ axis or RESTFRQ/FREQ/OBSFREQ); "
                             "give the width instead, e.g. 'cosine:67.4'")
        return MEERKAT_FWHM_ARCMIN * 1.5e9 / freq

    def centre_for(self, image: FitsImage) -> tuple[float, float]:
        """(RA, Dec) in degrees of the pointing centre for ``image``."""
        if self.centre is not None:
            return self.centre
        ra, dec = pixel_to_sky(image.wcs, *(np.asarray([v - 1.0]) for v in image.wcs.wcs.crpix))
        return float(ra[0]), float(dec[0])

    def at_radius(self, r_arcmin: np.ndarray, fwhm_arcmin: float) -> np.ndarray:
        """The response at ``r_arcmin`` from the centre."""
        u = np.asarray(r_arcmin, np.float64) / fwhm_arcmin
        if self.kind == "gaussian":
            return np.exp(-4.0 * math.log(2.0) * u**2)
        t = _COSINE * u
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.cos(math.pi * t) / (1.0 - 4.0 * t**2)
        v = np.where(np.abs(1.0 - 4.0 * t**2) < 1e-9, math.pi / 4.0, v) ** 2
        return np.where(t < 1.5, v, np.nan)  # the main lobe only: its first null at t = 3/2

    def response(self, image: FitsImage, x: np.ndarray, y: np.ndarray,
                 freq_hz: np.ndarray | None = None) -> np.ndarray:
        if image.wcs is None:
            raise ImageError(f"{image.path}: a primary-beam model needs the image's celestial "
                             "WCS (distances on the sky); give a beam image of the same grid")
        fwhm = self.fwhm_for(image, freq_hz)
        ra0, dec0 = self.centre_for(image)
        ra, dec = pixel_to_sky(image.wcs, x, y)
        return self.at_radius(angular_separation(ra, dec, ra0, dec0) * 60.0, fwhm)


@dataclass(frozen=True)
class BeamImage(PrimaryBeam):
    """A beam read from the FITS image ``path``: its pixels are the response, sampled
    bilinearly at sky positions through its own WCS (or, without one, at the same pixels of
    an image of the same shape); a beam cube with a frequency axis, between its planes
    too (linearly in frequency; half a channel beyond its first and last planes at most)."""

    path: str

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"image {os.path.basename(self.path)}"

    def response(self, image: FitsImage, x: np.ndarray, y: np.ndarray,
                 freq_hz: np.ndarray | None = None) -> np.ndarray:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        with warnings.catch_warnings():  # a beam has no BUNIT of flux, no restoring beam
            warnings.filterwarnings("ignore", message=".*(BUNIT|BMAJ|Stokes I).*")
            pb = open_image(self.path)
        with pb:
            if pb.wcs is not None and image.wcs is not None:
                px, py = sky_to_pixel(pb.wcs, *pixel_to_sky(image.wcs, x, y))
            elif pb.shape[-2:] == tuple(image.shape[-2:]):
                px, py = x, y
            else:
                raise ImageError(f"{self.path}: without celestial WCS in both, the beam image "
                                 f"must have the image's shape {tuple(image.shape[-2:])}; it "
                                 f"has {pb.shape[-2:]}")
            if pb.ndim == 2:  # one plane: every channel of a cube alike
                out = _bilinear(pb, px, py)
            else:
                out = _between_planes(pb, px, py, _frequencies(image, freq_hz, x.shape))
        if np.any(out > MAX_RESPONSE):  # (a beam in percent, or another image given)
            raise ImageError(f"{self.path}: responses up to {np.nanmax(out):.4g}, but a "
                             "primary beam's power response is at most 1 (at the pointing "
                             "centre): is it in percent, or another image?")
        return out


def _frequencies(image: FitsImage, freq_hz: np.ndarray | None, shape: tuple[int, ...]
                 ) -> np.ndarray:
    """Each position's frequency (Hz) for a beam cube: a cube's line channels', else the 2D
    image's own (its header), refused without one."""
    if freq_hz is not None:
        return np.broadcast_to(np.asarray(freq_hz, np.float64), shape)
    ref = continuum_frequency(image.header)
    if ref is None:
        raise ImageError(f"{image.path}: a beam cube is read at the image's frequency, but "
                         "its header gives none (a FREQ axis or RESTFRQ/FREQ/OBSFREQ)")
    return np.full(shape, ref)


def _between_planes(pb: FitsImage, x: np.ndarray, y: np.ndarray, freq: np.ndarray
                    ) -> np.ndarray:
    """A beam cube's response at pixel positions ``(x, y)`` of its planes and frequencies
    ``freq``: bilinear in each plane, linear in frequency between the two nearest planes;
    NaN beyond half a channel outside its first and last (or without a frequency)."""
    axis = pb.frequency_axis
    if axis is None:
        raise ImageError(f"{pb.path}: a beam of shape {pb.shape} needs a frequency axis "
                         "(FREQ, or velocity with a rest frequency) to be read at the image's "
                         "frequencies; or give one 2D plane")
    D = pb.shape[0]
    hz = axis.frequency(np.arange(D, dtype=np.float64))
    order = np.argsort(hz)
    with np.errstate(invalid="ignore"):  # fractional channel of each frequency
        z = np.interp(freq, hz[order], order.astype(np.float64), left=np.nan, right=np.nan)
    if D > 1:  # half a channel beyond the ends: the end plane's value
        half = 0.5 * np.abs(hz[-1] - hz[0]) / (D - 1)
        lo, hi = hz[order[0]], hz[order[-1]]
        z = np.where(np.isnan(z) & (freq >= lo - half) & (freq < lo), order[0], z)
        z = np.where(np.isnan(z) & (freq <= hi + half) & (freq > hi), order[-1], z)
    else:
        z = np.where(np.isfinite(freq), 0.0, np.nan)
    out = np.full(x.shape, np.nan)
    z0 = np.floor(np.where(np.isfinite(z), z, -1.0)).astype(np.int64)
    z0 = np.minimum(z0, D - 2) if D > 1 else z0
    for c in np.unique(z0[z0 >= 0]):
        k = z0 == c
        lower = _bilinear(_Plane(pb, int(c)), x[k], y[k])
        if D == 1:
            out[k] = lower
            continue
        f = z[k] - c
        upper = _bilinear(_Plane(pb, int(c) + 1), x[k], y[k])
        out[k] = np.where(f > 0, (1 - f) * lower + f * upper, lower)
    return out


@dataclass(frozen=True)
class _Plane:
    """One plane of a cube, read as a 2D image (what :func:`_bilinear` reads)."""

    cube: FitsImage
    z: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.cube.shape[-2:])

    def read(self, window: tuple[slice, slice]) -> np.ndarray:
        return self.cube.read((slice(self.z, self.z + 1), *window))[0]


def _bilinear(pb: FitsImage | _Plane, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``pb``'s pixels interpolated at 0-based positions (pixel centres; the outer half
    pixels take their edge's values); NaN off its pixels or next to a blank one. Reads the positions' bounding window (one pixel's neighbours at a time when
    that window is large)."""
    H, W = pb.shape
    out = np.full(x.shape, np.nan)
    inside = (np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x <= W - 0.5) & (y >= -0.5)
              & (y <= H - 0.5))  # on the image's pixels: the edge pixels' halves held level
    k = np.flatnonzero(inside)
    if not k.size:
        return out
    x, y = np.clip(x, 0, W - 1), np.clip(y, 0, H - 1)
    x0 = np.minimum(np.floor(x[k]).astype(np.int64), W - 2) if W > 1 else np.zeros(k.size, int)
    y0 = np.minimum(np.floor(y[k]).astype(np.int64), H - 2) if H > 1 else np.zeros(k.size, int)
    fx, fy = x[k] - x0, y[k] - y0
    ya, yb, xa, xb = y0.min(), min(y0.max() + 2, H), x0.min(), min(x0.max() + 2, W)
    if (yb - ya) * (xb - xa) <= WINDOW_PIXELS:
        win = pb.read((slice(ya, yb), slice(xa, xb))).astype(np.float64)

        def px(dy: int, dx: int) -> np.ndarray:
            return win[np.minimum(y0 + dy, H - 1) - ya, np.minimum(x0 + dx, W - 1) - xa]
    else:  # sources across a large beam image: each one's 2x2 pixels
        quads = np.stack([_quad(pb, j, i) for j, i in zip(y0, x0)])

        def px(dy: int, dx: int) -> np.ndarray:
            return quads[:, 2 * dy + dx]
    out[k] = ((1 - fy) * ((1 - fx) * px(0, 0) + fx * px(0, 1))
              + fy * ((1 - fx) * px(1, 0) + fx * px(1, 1)))
    return out


def _quad(pb: FitsImage | _Plane, j: int, i: int) -> np.ndarray:
    """The 2x2 pixels from (j, i), edges repeated: [p00, p01, p10, p11]."""
    H, W = pb.shape
    w = pb.read((slice(j, min(j + 2, H)), slice(i, min(i + 2, W)))).astype(np.float64)
    w = np.pad(w, ((0, 2 - w.shape[0]), (0, 2 - w.shape[1])), mode="edge")
    return w.reshape(-1)


_MODEL = re.compile(r"^(gaussian|cosine):\s*([0-9.eE+-]+)$")


def primary_beam(spec: str | os.PathLike | PrimaryBeam,
                 centre: tuple[float, float] | None = None) -> PrimaryBeam:
    """A primary beam from ``spec``: a FITS image's path, a model ("gaussian:FWHM",
    "cosine:FWHM" with FWHM in arcmin, or "meerkat"), or a beam already made. ``centre``
    (RA, Dec in degrees) places a model (default: the image's reference position)."""
    if isinstance(spec, PrimaryBeam):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"pb: a beam image's path, a model name or a PrimaryBeam; received "
                        f"{type(spec).__name__}")
    text = os.fspath(spec)
    if centre is not None:
        try:
            ra, dec = (float(v) for v in centre)
        except (TypeError, ValueError):
            raise ValueError(f"pb_centre: (RA, Dec) in degrees; received {centre!r}") from None
        if not (math.isfinite(ra) and -90.0 <= dec <= 90.0):
            raise ValueError(f"pb_centre: RA finite, Dec in [-90, 90]; received {centre!r}")
        centre = (ra % 360.0, dec)
    if text == "meerkat":
        return BeamModel("cosine", None, centre)
    if (m := _MODEL.match(text)) is not None:
        try:
            fwhm = float(m.group(2))
        except ValueError:
            fwhm = float("nan")
        if not (math.isfinite(fwhm) and fwhm > 0):
            raise ValueError(f"pb: the width of {m.group(1)}:FWHM is in arcmin, > 0; received "
                             f"{text!r}")
        return BeamModel(m.group(1), fwhm, centre)
    if os.path.isfile(text):
        if centre is not None:
            raise ValueError("pb_centre places a beam model; a beam image has its own WCS")
        return BeamImage(text)
    raise FileNotFoundError(f"pb: {text}: neither a FITS file nor a beam model (gaussian:FWHM, "
                            "cosine:FWHM in arcmin, meerkat)")


def checked_pb_min(value: Any) -> float:
    """``pb_min``, the lowest response a catalogued source may have: in (0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not 0.0 < v <= 1.0:
        raise ValueError(f"pb_min: the lowest primary-beam response kept, in (0, 1]; "
                         f"received {value!r}")
    return v


def pb_response(beam: PrimaryBeam, image: FitsImage, x: np.ndarray, y: np.ndarray,
                z: np.ndarray | None = None) -> np.ndarray:
    """``beam``'s response at pixel positions of ``image``; in a cube, at channels ``z``
    too: a model's width scales as 1 / frequency (a beam image serves every channel)."""
    freq = None
    if image.ndim == 3:
        axis = image.frequency_axis
        if axis is None or z is None:
            raise ImageError(f"{image.path}: a cube's primary beam needs its frequency axis "
                             "and each position's channel")
        freq = axis.frequency(np.asarray(z, np.float64))
    return np.asarray(beam.response(image, np.asarray(x, np.float64),
                                    np.asarray(y, np.float64), freq), np.float64)


def finding_beam(beam: str | os.PathLike | PrimaryBeam | None, pb_min: Any = None
                 ) -> dict[str, Any]:
    """The keywords ``primary_beam`` and ``pb_min`` of a source finding, checked (empty
    without a beam; ``pb_min`` alone is refused)."""
    if beam is None:
        if pb_min is not None:
            raise ValueError("pb_min: a cut on the primary beam's response needs primary_beam")
        return {}
    return {"primary_beam": primary_beam(beam),
            "pb_min": None if pb_min is None else checked_pb_min(pb_min)}


def format_correction(parts: list[Any]) -> str:
    """A report line of the primary-beam correction of source findings (their tables'
    ``pb`` column and metadata)."""
    tables = [p.table for p in parts]
    meta = tables[0].meta
    pb = np.concatenate([np.asarray(t["pb"], np.float64) for t in tables if "pb" in t.colnames])
    out = sum(int(t.meta.get("pb_left_out", 0)) for t in tables)
    cut = meta.get("pb_min") or 0.0
    span = f"responses {pb.min():.3f}-{pb.max():.3f}" if pb.size else "no sources"
    return (f"primary beam: {meta.get('primary_beam')}; fluxes divided by its response "
            f"({span}); {out} sources "
            + (f"below {cut:g} or " if cut else "") + "where it is not known left out")


#: how forced measurements on images of a corrected catalogue's pointing are corrected
FORCED_NOTE = ("forced fluxes divided by the catalogue's pb column: the other images (Stokes, "
               "channels, epochs) taken as seen through the same primary beam, at the "
               "catalogue image's frequency")


def catalogue_response(table: Any) -> np.ndarray | None:
    """The primary beam's response at each source of a corrected catalogue (its ``pb``
    column, float64), or None for a catalogue that was not corrected."""
    if "pb" not in getattr(table, "colnames", ()):
        return None
    return np.asarray(np.ma.filled(np.ma.asarray(table["pb"], np.float64), np.nan), np.float64)
