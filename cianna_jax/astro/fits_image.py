"""Open a FITS image or cube for source finding: memory-mapped pixels, WCS, beam, units.

:func:`open_image` picks the image HDU, drops degenerate non-spatial axes (the SDC1
layout ``(Stokes, Freq, Y, X)`` with both of length 1 becomes ``(Y, X)``), keeps the
pixels memory-mapped and reads them a window at a time (:meth:`FitsImage.read`), with
BSCALE/BZERO applied and BLANK or non-finite pixels returned as NaN.  The celestial WCS
gives sky positions; BMAJ/BMIN/BPA (or an AIPS ``CLEAN BMAJ=`` history card) give the
restoring beam; BUNIT tells whether pixels are per beam (Jy/beam) or per pixel.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._deps import require
from .spectral import SpectralAxis, spectral_axis

__all__ = ["ImageError", "Beam", "FitsImage", "open_image", "parse_bunit", "continuum_frequency",
           "positive_number", "channel_beams"]

FWHM_AREA = math.pi / (4.0 * math.log(2.0))
"""Area of a Gaussian of FWHMs (a, b) is ``FWHM_AREA * a * b``."""


class ImageError(ValueError):
    """A FITS file that cannot be used as an image (the message names the problem)."""


@dataclass(frozen=True)
class Beam:
    """Restoring beam: FWHMs ``bmaj``, ``bmin`` (arcsec), ``bpa`` (deg, east of north)."""

    bmaj: float
    bmin: float
    bpa: float = 0.0

    def area_pixels(self, pixel_scale: float) -> float:
        """Beam solid angle in pixels (``pixel_scale`` arcsec per pixel)."""
        return FWHM_AREA * self.bmaj * self.bmin / pixel_scale**2

    def fwhm_pixels(self, pixel_scale: float) -> float:
        """Geometric-mean FWHM in pixels."""
        return math.sqrt(self.bmaj * self.bmin) / pixel_scale


_BUNIT_SCALE = {"jy": 1.0, "mjy": 1e-3, "ujy": 1e-6, "µjy": 1e-6, "microjy": 1e-6, "njy": 1e-9}


def parse_bunit(bunit: str) -> tuple[float | None, str | None]:
    """``(scale to Jy, "beam" | "pixel")`` of a BUNIT string such as ``"JY/BEAM"``, ``"mJy/beam"``
    or ``"Jy/pixel"``; ``(None, None)`` when it is not a flux density per beam or pixel."""
    s = bunit.strip().lower().replace(" ", "")
    m = re.fullmatch(r"([a-zµ]+)/(beam|pixel|pix)", s)
    if not m or m.group(1) not in _BUNIT_SCALE:
        return None, None
    return _BUNIT_SCALE[m.group(1)], "beam" if m.group(2) == "beam" else "pixel"


def _history_beam(header: Any) -> Beam | None:
    """The last AIPS ``CLEAN BMAJ= ... BMIN= ... BPA= ...`` history card (degrees), if any."""
    pat = re.compile(r"BMAJ\s*=\s*([-+0-9.EeDd]+)\s+BMIN\s*=\s*([-+0-9.EeDd]+)\s+BPA\s*=\s*([-+0-9.EeDd]+)")
    found = None
    for card in header.get("HISTORY", []):
        m = pat.search(str(card))
        if m:
            found = [float(v.replace("D", "E").replace("d", "e")) for v in m.groups()]
    if found is None:
        return None
    return Beam(found[0] * 3600.0, found[1] * 3600.0, found[2])


def _beam(header: Any) -> Beam | None:
    if "BMAJ" in header and "BMIN" in header:
        try:
            bmaj, bmin = float(header["BMAJ"]) * 3600.0, float(header["BMIN"]) * 3600.0
            bpa = float(header.get("BPA", 0.0))
        except (TypeError, ValueError):
            return None
        if bmaj > 0 and bmin > 0 and math.isfinite(bmaj * bmin * bpa):
            return Beam(bmaj, bmin, bpa)
        return None
    return _history_beam(header)


_ARCSEC = {"DEG": 3600.0, "DEGREE": 3600.0, "DEGREES": 3600.0, "ARCSEC": 1.0,
           "ARCMIN": 60.0, "RAD": 180.0 / math.pi * 3600.0}


def channel_beams(hdul: Any) -> dict[int, Beam]:
    """A cube's per-channel restoring beams from its CASA ``BEAMS`` table (columns BMAJ,
    BMIN, BPA, CHAN and POL; the first polarisation's), by channel; empty without one."""
    for h in list(hdul)[1:]:
        if str(getattr(h, "name", "")).upper() != "BEAMS" or not hasattr(h, "columns"):
            continue
        cols = {c.name.upper(): c for c in h.columns}
        if not {"BMAJ", "BMIN", "BPA", "CHAN"} <= set(cols):
            return {}
        scale = _ARCSEC.get(str(cols["BMAJ"].unit or "arcsec").strip().upper())
        if scale is None:
            return {}
        d = h.data
        chan = np.asarray(d[cols["CHAN"].name]).astype(np.int64)
        pol = np.asarray(d[cols["POL"].name]) if "POL" in cols else np.zeros(len(chan))
        keep = pol == pol.min() if len(pol) else np.zeros(0, bool)
        out = {}
        for c, a, b, p in zip(chan[keep], np.asarray(d[cols["BMAJ"].name])[keep],
                              np.asarray(d[cols["BMIN"].name])[keep],
                              np.asarray(d[cols["BPA"].name])[keep]):
            a, b, p = float(a) * scale, float(b) * scale, float(p)
            if a > 0 and b > 0 and math.isfinite(a * b * p):
                out[int(c)] = Beam(a, b, p)
        return out
    return {}


@dataclass
class FitsImage:
    """A FITS image (``ndim`` 2: ``(H, W)``) or cube (3: ``(D, H, W)``) opened for reading.

    ``data`` is a memory-mapped view in the file's dtype (scaling not applied; use
    :meth:`read`); ``wcs`` the celestial WCS (``None`` without one), ``spectral_wcs`` the
    third axis of a cube; ``beam`` the restoring beam; ``unit_scale`` converts pixel values
    to Jy (per beam or per pixel, as ``per``); ``pixel_scale`` arcsec per pixel (``None``
    without WCS); ``plane`` the cube's plane taken as this 2D image, if one was;
    ``negated``: pixels read with their sign flipped (:meth:`inverted`); ``added``: sources
    drawn on the pixels as they are read (:meth:`with_sources`).  Close it (or use
    it in a ``with`` block) to release the file.
    """

    path: str
    hdu_index: int
    data: np.ndarray
    header: Any
    wcs: Any
    spectral_wcs: Any
    beam: Beam | None
    bunit: str
    unit_scale: float
    per: str | None
    pixel_scale: float | None
    bscale: float = 1.0
    bzero: float = 0.0
    blank: int | None = None
    plane: int | None = None
    negated: bool = False
    added: Any = None
    #: a cube's per-channel beams (its BEAMS table), by channel; empty with one beam
    channel_beams: dict = field(default_factory=dict, repr=False)
    _hdul: Any = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @functools.cached_property
    def frequency_axis(self) -> SpectralAxis | None:
        """The cube's third axis as frequencies (:func:`.spectral.spectral_axis`), read once
        per opened image: a cube whose axis gives none is warned about once."""
        return spectral_axis(self.spectral_wcs, self.path)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def read(self, window: tuple[slice, ...] | None = None) -> np.ndarray:
        """Pixels of ``window`` (slices in array order; ``None``: all) as native float32 in
        the file's unit (BSCALE/BZERO applied), NaN where blank or not finite."""
        raw = self.data if window is None else self.data[window]
        out = np.asarray(raw, dtype=np.float32)
        if self.blank is not None and np.issubdtype(raw.dtype, np.integer):
            out[np.asarray(raw) == self.blank] = np.nan
        if self.bscale != 1.0 or self.bzero != 0.0:
            out *= np.float32(self.bscale)
            out += np.float32(self.bzero)
        if self.negated:
            np.negative(out, out=out)
        if self.added is not None:
            out += self.added.render(window, self.shape)
        return out

    def inverted(self) -> FitsImage:
        """The same image with every pixel's sign flipped (the same open file: close this
        one, not the view), for the inverted-image test of a catalogue's reliability
        (:mod:`.reliability`): real sources turn negative, noise stays noise."""
        view = dataclasses.replace(self, negated=not self.negated)
        if "frequency_axis" in self.__dict__:  # read once per opened file
            view.__dict__["frequency_axis"] = self.__dict__["frequency_axis"]
        return view

    def with_sources(self, sources: Any) -> FitsImage:
        """The same image with ``sources`` (e.g. :class:`.injection.InjectedSources`: a
        ``render(window, shape)`` giving their pixels in the file's unit, and ``ndim``)
        added to the pixels as they are read, for source injection; the file is not touched
        (the same open file: close this one, not the view).  Sources on the sky go into a
        2D image, lines (``ndim`` 3) into a cube."""
        nd = int(getattr(sources, "ndim", 2))
        if self.ndim != nd:
            raise ImageError(f"{self.path}: {'lines' if nd == 3 else 'sources on the sky'} "
                             f"are injected into {nd}D images; this one has {self.ndim} axes"
                             + (" (plane= takes one plane of a cube)" if nd == 2 else ""))
        view = dataclasses.replace(self, added=sources)
        if "frequency_axis" in self.__dict__:  # read once per opened file
            view.__dict__["frequency_axis"] = self.__dict__["frequency_axis"]
        return view

    def beam_area_pixels(self) -> float | None:
        """Pixels per beam when the image is per beam and the beam and scale are known; 1 for a
        per-pixel image; ``None`` when unknown."""
        if self.per == "pixel":
            return 1.0
        if self.beam is None or self.pixel_scale is None:
            return None
        return self.beam.area_pixels(self.pixel_scale)

    def beam_fwhm_pixels(self) -> tuple[float, float] | None:
        """The beam's FWHM axes (major, minor) in pixels, or ``None`` without a beam or a
        pixel scale: how the detector, which sees pixels, sees the resolution."""
        if self.beam is None or not self.pixel_scale:
            return None
        return self.beam.bmaj / self.pixel_scale, self.beam.bmin / self.pixel_scale

    def close(self) -> None:
        """Release the file (the memory map goes with it)."""
        if self._hdul is not None:
            self.data = np.zeros((0,) * self.data.ndim, np.float32)
            self._hdul.close()
            self._hdul = None

    def __enter__(self) -> FitsImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_image_hdu(hdu: Any, fits: Any) -> bool:
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and \
        int(hdu.header.get("NAXIS", 0)) > 0


def _pick_hdu(hdul: Any, hdu: int | str | None, path: str, fits: Any) -> int:
    names = ", ".join(f"{i}:{h.name or '?'}({type(h).__name__})" for i, h in enumerate(hdul))
    if hdu is None:
        for i, h in enumerate(hdul):
            if _is_image_hdu(h, fits):
                return i
        raise ImageError(f"{path}: no image HDU with data (HDUs: {names})")
    try:
        idx = hdul.index_of(hdu)
        hdul[idx]
    except (KeyError, IndexError):
        raise ImageError(f"{path}: no HDU {hdu!r} (HDUs: {names})") from None
    if not _is_image_hdu(hdul[idx], fits):
        raise ImageError(f"{path}: HDU {hdu!r} is not an image with data (HDUs: {names})")
    return idx


#: FITS STOKES axis codes of the four Stokes parameters
STOKES_CODES = {"I": 1, "Q": 2, "U": 3, "V": 4}


def _stokes_plane(data: np.ndarray, header: Any, path: str, stokes: str = "I") -> np.ndarray:
    """``data`` with a STOKES axis of several planes cut to its ``stokes`` plane (length 1,
    which :func:`_squeeze` then drops): the detectors take total intensity (I), the
    polarisation Q, U and V; ImageError when the axis has no such plane.  A single-plane
    axis and other data unchanged."""
    want = STOKES_CODES[stokes]
    nd = data.ndim
    for n in range(3, nd + 1):  # FITS axis n is numpy axis nd - n
        if str(header.get(f"CTYPE{n}", "")).strip().upper() != "STOKES":
            continue
        size = data.shape[nd - n]
        if size == 1:
            return data
        crval, cdelt = float(header.get(f"CRVAL{n}", 1.0)), float(header.get(f"CDELT{n}", 1.0))
        crpix = float(header.get(f"CRPIX{n}", 1.0))
        codes = [crval + (k + 1 - crpix) * cdelt for k in range(size)]
        found = [k for k, c in enumerate(codes) if abs(c - want) < 1e-6]
        if not found:
            names = {1: "I", 2: "Q", 3: "U", 4: "V", -1: "RR", -2: "LL", -3: "RL", -4: "LR",
                     -5: "XX", -6: "YY", -7: "XY", -8: "YX"}
            have = ", ".join(names.get(round(c), f"{c:g}") for c in codes)
            need = ("the detectors need total intensity" if stokes == "I"
                    else f"Stokes {stokes} was asked for")
            raise ImageError(f"{path}: its STOKES axis (FITS axis {n}) holds {have}, no Stokes "
                             f"{stokes} plane: {need}")
        k = found[0]
        if stokes == "I":
            warnings.warn(f"{path}: Stokes I, plane {k + 1} of the {size} of its STOKES axis, "
                          "is the image used", stacklevel=3)
        return data[tuple(slice(k, k + 1) if a == nd - n else slice(None) for a in range(nd))]
    return data


def _plane(view: np.ndarray, axes: list[int], plane: Any, path: str):
    """``(view[plane], axes[:2])`` for a cube; ImageError naming ``plane`` otherwise."""
    if view.ndim != 3:
        raise ImageError(f"{path}: plane {plane!r} given, but the image is 2D (shape "
                         f"{view.shape}): no third axis to take a plane of")
    n = view.shape[0]
    if isinstance(plane, bool) or not isinstance(plane, (int, np.integer)) or not 0 <= plane < n:
        raise ImageError(f"{path}: plane: expected an int in [0, {n - 1}] (the {n} planes of "
                         f"FITS axis {axes[2]}), received {plane!r}")
    return view[int(plane)], axes[:2]


def _squeeze(data: np.ndarray, path: str) -> tuple[np.ndarray, list[int]]:
    """Drop length-1 axes before the last two (numpy order); returns the view and the kept
    FITS axis numbers (1-based, x first)."""
    nd = data.ndim
    keep = [a for a in range(nd) if a >= nd - 2 or data.shape[a] != 1]
    index = tuple(slice(None) if a in keep else 0 for a in range(nd))
    view = data[index]
    if view.ndim not in (2, 3):
        raise ImageError(f"{path}: data of shape {data.shape} has {view.ndim} non-degenerate "
                         "axes: need a 2D image or a 3D cube")
    return view, [nd - a for a in keep][::-1]


def open_image(path: str | os.PathLike, hdu: int | str | None = None, *,
               beam: Beam | None = None, plane: int | None = None,
               stokes: str = "I") -> FitsImage:
    """Open the image in ``hdu`` (default: the first HDU holding an image) of a FITS file.
    ``stokes`` ("I", "Q", "U", "V") picks that plane of a STOKES axis of several (I, with a
    warning, by default).

    ``plane`` (0-based) takes that plane of a cube's third axis as a 2D image: e.g. the
    MFS plane of a multi-frequency continuum image, for a 2D detector.

    ``beam`` replaces the header's beam (for images without BMAJ/BMIN). A cube whose
    channels have their own beams (CASA's ``BEAMS`` table, as sub-band and spectral cubes
    often have) gives each plane taken alone (``plane``) its channel's beam, and the whole
    cube the header's (else their median), with a warning when they differ.
    Raises :class:`ImageError` for a file that is not FITS, has no image HDU, or whose
    data is not 2D/3D once degenerate axes are dropped; warns (no error) when there is
    no celestial WCS (pixel coordinates only), no beam or an unknown BUNIT.
    """
    fits = require("astropy.io.fits")
    wcs_mod = require("astropy.wcs")
    fspath = os.fspath(path)
    if not os.path.isfile(fspath):
        raise FileNotFoundError(f"{fspath}: no such image file")
    try:
        hdul = fits.open(fspath, memmap=True, do_not_scale_image_data=True, mode="readonly")
        hdul.verify("silentfix")
    except (OSError, ValueError) as err:
        raise ImageError(f"{fspath}: not a readable FITS file ({err})") from None
    try:
        idx = _pick_hdu(hdul, hdu, fspath, fits)
        h = hdul[idx]
        header = h.header
        try:
            data = h.data
        except (TypeError, ValueError, OSError) as err:  # numpy: "buffer is too small ..."
            raise ImageError(f"{fspath}: HDU {idx}: its data cannot be read ({err}): a "
                             "truncated or damaged file") from None
        if data is None:
            raise ImageError(f"{fspath}: HDU {idx} has no data")
        if data.dtype.kind not in "iuf":
            raise ImageError(f"{fspath}: HDU {idx} holds {data.dtype} data, not numbers")
        if stokes not in STOKES_CODES:
            raise ValueError(f"stokes: one of {tuple(STOKES_CODES)}, received {stokes!r}")
        view, axes = _squeeze(_stokes_plane(data, header, fspath, stokes), fspath)
        if plane is not None:
            view, axes = _plane(view, axes, plane, fspath)
        unusable = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = wcs_mod.WCS(header)
        except Exception as err:  # wcslib: singular CD/PC matrix, bad projection, ...
            warnings.warn(f"{fspath}: the header's WCS cannot be used ({type(err).__name__}: "
                          f"{str(err).strip().splitlines()[-1]}): positions in pixels only",
                          stacklevel=2)
            full, unusable = wcs_mod.WCS(naxis=len(axes)), True
        celestial = full.celestial if full.has_celestial else None
        if celestial is not None and celestial.naxis != 2:
            celestial = None
        if celestial is not None and sorted([full.wcs.lng, full.wcs.lat]) != [0, 1]:
            celestial = None  # sky axes must be the image's x and y
        spectral = None
        if view.ndim == 3 and len(axes) == 3:
            spectral = full.sub([axes[2]])
        if celestial is None:
            if not unusable:
                warnings.warn(f"{fspath}: no celestial WCS: positions in pixels only",
                              stacklevel=2)
            scale = None
        else:
            utils = require("astropy.wcs.utils")
            scales = np.abs(np.asarray(utils.proj_plane_pixel_scales(celestial), np.float64))
            scale = float(np.sqrt(np.prod(scales))) * 3600.0  # celestial axes are in degrees
        bunit = str(header.get("BUNIT", "")).strip()
        unit_scale, per = parse_bunit(bunit)
        given, beam = beam, beam if beam is not None else _beam(header)
        chans = channel_beams(hdul) if given is None else {}
        if chans and plane is not None and int(plane) in chans:
            beam = chans[int(plane)]  # that channel's own
        elif chans:
            areas = sorted(chans.values(), key=lambda b: b.bmaj * b.bmin)
            beam = beam if beam is not None else areas[len(areas) // 2]
            if view.ndim == 3 and areas[-1].bmaj * areas[-1].bmin > 1.02 * (
                    areas[0].bmaj * areas[0].bmin):
                warnings.warn(f"{fspath}: its channels' beams (BEAMS table) vary from "
                              f"{areas[0].bmaj:.3g}x{areas[0].bmin:.3g} to "
                              f"{areas[-1].bmaj:.3g}x{areas[-1].bmin:.3g} arcsec: one beam "
                              f"({beam.bmaj:.3g}x{beam.bmin:.3g}) serves the whole cube; a plane "
                              "taken alone (plane=) has its own", stacklevel=2)
        if per is None:
            warnings.warn(f"{fspath}: BUNIT {bunit!r} is not Jy/beam or Jy/pixel: values taken as "
                          "Jy/beam", stacklevel=2)
            unit_scale, per = 1.0, "beam"
        if per == "beam" and beam is None:
            warnings.warn(f"{fspath}: no BMAJ/BMIN in the header: integrated fluxes cannot be "
                          "beam-corrected (flux is NaN; give the beam explicitly)", stacklevel=2)
        blank = header.get("BLANK") if data.dtype.kind in "iu" else None
        return FitsImage(
            path=fspath, hdu_index=idx, data=view, header=header, wcs=celestial,
            spectral_wcs=spectral, beam=beam, bunit=bunit, unit_scale=float(unit_scale),
            per=per, pixel_scale=scale, bscale=float(header.get("BSCALE", 1.0)),
            bzero=float(header.get("BZERO", 0.0)), blank=None if blank is None else int(blank),
            plane=None if plane is None else int(plane),
            channel_beams=chans if view.ndim == 3 and plane is None else {}, _hdul=hdul)
    except BaseException:
        hdul.close()
        raise


_HZ = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}


def continuum_frequency(header: Any) -> float | None:
    """An image's observing frequency (Hz) from its FITS header: the reference value of a
    FREQ axis (a continuum image's degenerate third or fourth axis), else the RESTFRQ,
    RESTFREQ, FREQ or OBSFREQ keyword; None without one."""
    if header is None:
        return None
    for n in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{n}", "")).strip().upper().startswith("FREQ"):
            unit = str(header.get(f"CUNIT{n}", "Hz")).strip().upper() or "HZ"
            value = positive_number(header.get(f"CRVAL{n}"))
            if value is not None and unit in _HZ:
                return value * _HZ[unit]
    for key in ("RESTFRQ", "RESTFREQ", "FREQ", "OBSFREQ"):
        value = positive_number(header.get(key))
        if value is not None:
            return value
    return None


def positive_number(value: Any) -> float | None:
    """``value`` as a finite positive float, or None (a header's or a table's number)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None
