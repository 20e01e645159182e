"""Spectral lines in cubes: each detection's line measured from its spectrum, and the
channel axis in physical units.

A cube detection's spectrum is its box's pixels summed per channel over the box's
channels (the detector's boxes span twice the line's FWHM, so the profile falls to about
6% of a Gaussian line's peak at their ends). :func:`line_widths` gives the widths at 50%
and 20% of the spectrum's peak, found from the outside in (a double-horned HI profile is
measured across both horns, as SoFiA and the SKA Data Challenge 2 truth define ``w20``),
with the line's centre the middle of the 50% crossings (as HI surveys take the systemic
velocity), less noisy than the 20% ones. Linear interpolation between sampled channels
reads narrow lines a little wide: a Gaussian of FWHM 3 channels 3% (up to 7%), of 5.5
channels 1% (up to 2.4%). :func:`spectral_axis` reads the
cube's third axis (a frequency, or a velocity or wavelength with the header's rest
frequency) so that the table gives the centre as a frequency (Hz), the widths as
rest-frame velocity widths (``c |dnu| / nu``, km/s: the galaxy's own, (1 + z) times
narrower than the observed frame's ``c dz``), the integrated line flux in
Jy Hz and the redshift of the line (the header's rest frequency, or HI's 21 cm line), and
for HI the mass and the size-mass relation's diameter (:mod:`.hi_mass`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._deps import require
from .hi_mass import hi_diameter_arcsec, hi_diameter_error, hi_mass

__all__ = ["C_KMS", "HI_REST_HZ", "SpectralAxis", "spectral_axis", "line_widths",
           "line_errors", "line_columns", "is_hi", "hi_mass", "LINE_NOTE", "LINE_ERROR_DRAWS"]

#: speed of light, km/s
C_KMS = 299792.458
#: rest frequency of neutral hydrogen's 21 cm line, Hz
HI_REST_HZ = 1420405751.768

#: noisy copies of a spectrum that :func:`line_errors` measures
LINE_ERROR_DRAWS = 200

LINE_NOTE = ("line: the box's pixels summed per channel; w50/w20 the widths at 50%/20% of "
             "that spectrum's peak, the 50% crossings from the outside in, the 20% ones from "
             "there outwards (linear between channels), as "
             "rest-frame velocity widths c |dnu| / nu (the observed frame's c dz is (1 + z) "
             "times them); z and freq the middle of the 50% crossings; line_flux the "
             "integral of an elliptical Gaussian fitted on the moment-0 map of the line's "
             "channels (its 20% crossings widened by a quarter of the width between them "
             "each side) / beam area, times the channel width, its error the fit's (where "
             "that fit fails: the box's sum and its noise); z_err, freq_err, w50_err, w20_err "
             "the scatter of the same measurements on 200 copies of the spectrum with its "
             "noise added")


@dataclass(frozen=True)
class SpectralAxis:
    """A cube's third axis as frequencies: ``wcs`` the one-axis astropy WCS, ``rest_hz``
    the line's rest frequency and ``rest_source`` where it came from (for the table's
    metadata)."""

    wcs: Any
    rest_hz: float
    rest_source: str

    def frequency(self, z: np.ndarray) -> np.ndarray:
        """Frequency (Hz) at 0-based fractional channels ``z``."""
        u = require("astropy.units")
        z = np.asarray(z, np.float64)
        coord = self.wcs.pixel_to_world(np.nan_to_num(z).ravel())
        hz = np.asarray(coord.to_value(u.Hz), np.float64).reshape(z.shape)
        return np.where(np.isfinite(z), hz, np.nan)

    def channel_width(self, z: np.ndarray) -> np.ndarray:
        """Width (Hz, positive) of the channel at fractional channel ``z``."""
        z = np.asarray(z, np.float64)
        return np.abs(self.frequency(z + 0.5) - self.frequency(z - 0.5))


def spectral_axis(spectral_wcs: Any, path: str = "image") -> SpectralAxis | None:
    """The cube's third axis as a :class:`SpectralAxis`, or ``None`` (with a warning naming
    what is missing) when it cannot give frequencies: no spectral WCS, or a velocity or
    wavelength axis without a rest frequency in the header."""
    if spectral_wcs is None:
        return None
    u = require("astropy.units")
    w = spectral_wcs.wcs
    rest = float(w.restfrq or 0.0)
    source = "header RESTFRQ"
    if rest <= 0 and float(w.restwav or 0.0) > 0:
        rest, source = C_KMS * 1e3 / float(w.restwav), "header RESTWAV"
    ctype = str(w.ctype[0]).strip() or "(none)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coord = spectral_wcs.pixel_to_world(np.array([0.0, 1.0]))
            hz = np.asarray(coord.to_value(u.Hz), np.float64)
        if not np.all(np.isfinite(hz)) or hz[0] == hz[1] or np.any(hz <= 0):
            raise ValueError(f"frequencies {hz}")
    except Exception as err:  # no spectral type, a velocity without rest frequency, ...
        warnings.warn(f"{path}: the third axis ({ctype}) gives no frequency "
                      f"({type(err).__name__}; a velocity or wavelength axis needs RESTFRQ "
                      "in the header): line centres and widths in channels only", stacklevel=2)
        return None
    if rest <= 0:
        rest, source = HI_REST_HZ, "HI 21 cm (no RESTFRQ in the header)"
    return SpectralAxis(spectral_wcs, rest, source)


def line_widths(spectrum: np.ndarray, fractions=(0.5, 0.2)) -> tuple[np.ndarray, np.ndarray]:
    """Crossings of ``spectrum`` ``[..., n]`` at each of ``fractions`` of its peak:
    ``(low, high)`` arrays ``[..., len(fractions)]`` of fractional channel positions (0 is
    the first channel's centre), linear between the channels either side. The highest
    level is found from the outside in (a double-horned line is measured across both
    horns); each lower one from the next higher one's crossing outwards, so that a noise
    bump beyond the line's edge does not widen a faint line's w20. A profile still above
    the level at an end crosses at that end's outer edge (-0.5 or n - 0.5: the width is a
    lower bound). NaN where the spectrum has no positive peak."""
    s = np.nan_to_num(np.asarray(spectrum, np.float64))
    n = s.shape[-1]
    peak = s.max(axis=-1, initial=0.0)                              # [...]
    fr = np.asarray(fractions, np.float64)
    lo = np.empty(s.shape[:-1] + (fr.size,))
    hi = np.empty_like(lo)
    inner_lo = inner_hi = None
    for f in np.argsort(-fr, kind="stable"):
        level = peak * fr[f]
        lo[..., f], inner_lo = _crossing(s, level, inner_lo)
        rev, inner_hi = _crossing(s[..., ::-1], level, inner_hi)
        hi[..., f] = (n - 1) - rev
    bad = ~(peak > 0)[..., None]
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def line_errors(spectrum: np.ndarray, sigma: float, rng: np.random.Generator,
                n: int = LINE_ERROR_DRAWS) -> np.ndarray:
    """1-sigma errors (channels) of :func:`line_widths`' line from ``spectrum [c]`` whose
    channels have independent noise ``sigma``: ``(centre, w20, w50)``, the centre the
    middle of the 50% crossings. The line is measured again on ``n`` copies of the spectrum
    with noise ``sigma`` added (``rng``), each error half the 16-84% range of those
    measurements: no model of the line's shape (Gaussian or double-horned), and a noise
    peak taken for the line's or a crossing found on a noise bump counted as they happen.
    On the simulator's lines from their true boxes the pulls' robust scatter is 0.45-1.1
    (honest to 2x conservative, most so for faint lines; ``tests/astro/test_spectral.py``). NaN where fewer than half the copies give the quantity, or the
    spectrum has no positive peak or no finite noise."""
    s = np.nan_to_num(np.asarray(spectrum, np.float64))
    out = np.full(3, np.nan)
    if not (s.max(initial=0.0) > 0 and np.isfinite(sigma) and sigma > 0):
        return out
    low, high = line_widths(s + sigma * rng.standard_normal((n, s.size)), (0.2, 0.5))
    for j, v in enumerate((0.5 * (low[:, 1] + high[:, 1]), high[:, 0] - low[:, 0],
                           high[:, 1] - low[:, 1])):
        v = v[np.isfinite(v)]
        if 2 * v.size >= n:
            q16, q84 = np.percentile(v, [15.87, 84.13])
            out[j] = 0.5 * (q84 - q16)
    return out


def _crossing(s: np.ndarray, level: np.ndarray, inner: np.ndarray | None):
    """Where ``s [..., n]`` rises to ``level [...]`` from the left: from the outside in
    (``inner`` None), or walking left from channel ``inner [...]`` (a channel at or above a
    higher level): the last channel below the level before it. Returns the fractional
    position and the first channel at or above the level."""
    n = s.shape[-1]
    k_all = np.arange(n)
    above = s >= level[..., None]
    if inner is None:
        k = np.argmax(above, axis=-1)                               # first channel above
    else:  # one after the last channel below the level, left of inner
        below = ~above & (k_all < inner[..., None])
        k = np.where(below.any(axis=-1), n - 1 - np.argmax(below[..., ::-1], axis=-1), -1) + 1
    sk = np.take_along_axis(s, k[..., None], -1)[..., 0]
    prev = np.take_along_axis(s, np.maximum(k - 1, 0)[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (level - prev) / (sk - prev)
    return np.where(k == 0, -0.5, k - 1 + np.clip(t, 0.0, 1.0)), k


def line_columns(axis: SpectralAxis, z: np.ndarray, z_lo20: np.ndarray, z_hi20: np.ndarray,
                 z_lo50: np.ndarray, z_hi50: np.ndarray, flux_ch: np.ndarray,
                 flux_ch_err: np.ndarray, errors: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """The table's line columns from channel quantities: ``freq`` (Hz) at ``z``, ``w50``
    and ``w20`` (km/s) between the crossings, ``line_flux`` and ``line_flux_err`` (Jy Hz)
    from the per-channel sums (Jy x channels) and ``redshift`` of the line; for HI also
    ``log_mhi`` and ``d_hi`` (:mod:`.hi_mass`) and their errors. ``errors [M, 3]``: the
    1-sigma errors (channels) of the centre, w20 and w50 (:func:`line_errors`), giving
    ``freq_err``, ``w20_err`` and ``w50_err``."""
    nu = axis.frequency(z)
    dnu = axis.channel_width(z)
    with np.errstate(invalid="ignore", divide="ignore"):
        def velocity_width(a, b):
            return C_KMS * np.abs(axis.frequency(b) - axis.frequency(a)) / nu

        err = np.full((len(nu), 3), np.nan) if errors is None else errors
        kms = C_KMS * np.abs(dnu) / nu  # km/s per channel
        cols = {"freq": nu, "freq_err": np.abs(dnu) * err[:, 0], "line_flux": flux_ch * dnu,
                "line_flux_err": flux_ch_err * dnu, "w50": velocity_width(z_lo50, z_hi50),
                "w50_err": kms * err[:, 2], "w20": velocity_width(z_lo20, z_hi20),
                "w20_err": kms * err[:, 1], "redshift": axis.rest_hz / nu - 1.0}
        if errors is None:
            for name in ("freq_err", "w50_err", "w20_err"):
                del cols[name]
        if is_hi(axis):
            cols["log_mhi"] = hi_mass(cols["line_flux"], cols["redshift"])
            cols["log_mhi_err"] = cols["line_flux_err"] / (np.log(10.0) * cols["line_flux"])
            cols["d_hi"] = hi_diameter_arcsec(cols["log_mhi"], cols["redshift"])
            cols["d_hi_err"] = hi_diameter_error(cols["d_hi"], cols["log_mhi_err"])
        return cols


def is_hi(axis: SpectralAxis) -> bool:
    """Whether the axis's rest frequency is neutral hydrogen's 21 cm line (within 1 kHz)."""
    return abs(axis.rest_hz - HI_REST_HZ) < 1e3
