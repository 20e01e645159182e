"""A line catalogue placed in a cube's channels, for ``val`` on cubes.

Each true line needs a position on the sky or in pixels (as in images, :mod:`.placement`)
and along the spectral axis: a ``freq`` column (Hz, or any frequency unit; aliases
``central_freq``, as in SKA Data Challenge 2 truths, ``freq_hz``, ``nu``) converted through
the cube's spectral WCS, or a ``z`` column (0-based channel). ``line_flux`` (Jy Hz; alias
``line_flux_integral``) and the widths ``w50``/``w20`` (km/s, rest frame ``c dnu / nu``
unless the table's metadata says observed, as SDC2's files read by
:func:`.catalogue.read_sdc2`; or a frequency unit) are read when present. The true peak SNR is the ``snr`` column, or computed from the line
flux, a width and the local noise for a Gaussian line (sizes from ``bmaj``/``bmin`` when
given, else a point source).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._deps import require
from .catalogue import W20_FRAME, CatalogueError, column_values, find_column
from .fits_image import FitsImage
from .noise import NoiseMap
from .spectral import C_KMS, SpectralAxis

__all__ = ["PlacedLines", "place_lines", "W20_PER_W50"]

#: w20 / w50 of a Gaussian line
W20_PER_W50 = math.sqrt(math.log(5.0) / math.log(2.0))
#: the peak channel of a Gaussian line holds 1 / (this x FWHM in channels) of its sum
_GAUSS_PEAK = math.sqrt(math.pi / (4.0 * math.log(2.0)))


class PlacedLines(NamedTuple):
    """Per row: ``z`` channel, ``line_flux`` Jy Hz, ``w20`` channels (NaN where unknown),
    ``snr`` (None when it cannot be known: no snr column, nor line_flux with w50 or w20)
    and ``snr_from`` (for the report)."""

    z: np.ndarray
    line_flux: np.ndarray
    w20: np.ndarray
    snr: np.ndarray | None
    snr_from: str


def _channels_of(axis: SpectralAxis, n: int, freq: np.ndarray) -> np.ndarray:
    """Fractional channels of frequencies ``freq`` (Hz) on a monotonic axis of ``n``
    channels (linear between channel centres, extrapolated half a channel each side)."""
    z = np.arange(-1, n + 1, dtype=np.float64)
    nu = axis.frequency(z)
    if nu[-1] < nu[0]:
        z, nu = z[::-1], nu[::-1]
    return np.interp(freq, nu, z, left=np.nan, right=np.nan)


def _width_channels(t: Any, name: str, axis: SpectralAxis | None, z: np.ndarray, what: str
                    ) -> np.ndarray | None:
    """Column ``name`` (a line width) in channels: km/s (or no unit) or a frequency unit."""
    c = find_column(t, name)
    if c is None:
        return None
    u = require("astropy.units")
    vals = column_values(t, name, what)
    if axis is None:
        return None
    nu, dnu = axis.frequency(z), axis.channel_width(z)
    unit = getattr(t[c], "unit", None)
    if unit is not None and unit.is_equivalent(u.Hz):
        return vals * float(unit.to(u.Hz)) / dnu
    if unit is not None and unit.is_equivalent(u.km / u.s):
        vals = vals * float(unit.to(u.km / u.s))
    if t.meta.get(W20_FRAME) == "observed":  # SDC2's c dz: (1 + z) x the rest frame's
        vals = vals * nu / axis.rest_hz
    return vals * nu / C_KMS / dnu


def _warn_off_band(axis: SpectralAxis, n: int, freq: np.ndarray, what: str, *,
                   unitless: bool) -> None:
    """Warn that no line's frequency falls in the cube's band (with a hint when the
    column has no unit and its values would fit as MHz or GHz)."""
    import warnings

    band = axis.frequency(np.array([-0.5, n - 0.5]))
    lo, hi = float(band.min()), float(band.max())
    f = freq[np.isfinite(freq)]
    hint = ""
    if unitless and f.size:
        for name, factor in (("MHz", 1e6), ("GHz", 1e9), ("kHz", 1e3)):
            if np.any((f * factor >= lo) & (f * factor <= hi)):
                hint = f"; the column has no unit and fits the band as {name}: give it its unit"
                break
    span = f"{f.min():.6g}-{f.max():.6g}" if f.size else "none finite"
    warnings.warn(f"{what}: no line's freq falls in the cube's band {lo:.6g}-{hi:.6g} Hz "
                  f"(the column spans {span}){hint}", UserWarning, stacklevel=3)


def place_lines(t: Any, image: FitsImage, noise: NoiseMap, x: np.ndarray, y: np.ndarray,
                what: str, bmaj: np.ndarray | None, bmin: np.ndarray | None) -> PlacedLines:
    """The rows of ``t`` (at pixels ``x, y`` of cube ``image``) along its channels, with
    their line flux, w20 and true SNR; CatalogueError naming what is missing."""
    axis = image.frequency_axis
    D = image.shape[0]
    freq = column_values(t, "freq", what)
    if freq is not None:
        if axis is None:
            raise CatalogueError(f"{what}: a freq column, but the cube's third axis gives no "
                                 "frequency: give the lines' channels as a z column")
        c = t[find_column(t, "freq")]
        if getattr(c, "unit", None) is not None:
            freq = freq * float(c.unit.to(require("astropy.units").Hz))
        z = _channels_of(axis, D, freq)
        if len(z) and not np.isfinite(z).any():
            _warn_off_band(axis, D, freq, what, unitless=getattr(c, "unit", None) is None)
    else:
        z = column_values(t, "z", what)
        if z is None:
            raise CatalogueError(f"{what}: a cube's truth needs each line's frequency or "
                                 f"channel: a 'freq' column (Hz; also central_freq) or a 'z' "
                                 f"column (0-based channel); it has {t.colnames}")
    n = len(z)
    lf = column_values(t, "line_flux", what)
    lf = np.full(n, np.nan) if lf is None else lf
    w20 = _width_channels(t, "w20", axis, z, what)
    w50 = _width_channels(t, "w50", axis, z, what)
    if w20 is None and w50 is not None:
        w20 = w50 * W20_PER_W50
    if w50 is None and w20 is not None:
        w50 = w20 / W20_PER_W50
    snr = column_values(t, "snr", what)
    snr_from = "the catalogue's snr column" if snr is not None else ""
    if snr is None and w50 is not None and axis is not None and np.isfinite(lf).any():
        dnu = axis.channel_width(z)
        ok = np.isfinite(z) & np.isfinite(x) & np.isfinite(y)
        rms = np.full(n, np.nan)
        rms[ok] = noise.at(y[ok], x[ok], z[ok]) * image.unit_scale
        peak = lf / dnu / (_GAUSS_PEAK * w50)  # Jy in the peak channel
        beam = image.beam
        if beam is not None and bmaj is not None and bmin is not None:
            peak = peak * (beam.bmaj * beam.bmin) / (bmaj * bmin)  # Jy -> Jy/beam
            snr_from = "line flux, w50, sizes and the local noise (Gaussian lines)"
        else:
            snr_from = "line flux, w50 and the local noise (Gaussian lines, point sources)"
        snr = peak / rms
    return PlacedLines(z, lf, np.full(n, np.nan) if w20 is None else w20, snr, snr_from)
