"""Rotating HI discs for synthetic cubes: double-horned lines whose emission moves across
the sky with the channel, as real galaxies' do.

Each disc is thin and inclined: its surface brightness a Gaussian of FWHM ``fwhm``
along the major axis and ``fwhm * q`` along the minor one, ``q = sqrt(cos^2 i + q0^2
sin^2 i)`` (intrinsic axis ratio ``q0`` =
:data:`.catalogue.SDC2_Q0`, so that :func:`.catalogue.disc_inclination` inverts it). Its
rotation curve rises as ``v_flat (1 - exp(-R / r_t))`` (``r_t`` a tenth of ``fwhm``);
each point of the disc emits a Gaussian line of dispersion ``sigma_v`` at its line-of-sight
velocity ``v(R) sin i cos(phi)``, positive (receding, lower frequencies) towards the
receding half of the major axis. The sky is sampled 3x finer than the pixels, each channel
then convolved with the beam, and the disc scaled to its total flux.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .catalogue import SDC2_Q0
from .spectral import line_widths

__all__ = ["Discs", "draw_discs", "render_discs"]

_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
_OVERSAMPLE = 3


@dataclass(frozen=True)
class Discs:
    """Per disc: centre ``x, y`` (pixels), systemic channel ``z``, ``flux`` (sum over
    voxels, cube units x channels), ``fwhm`` (FWHM major axis, pixels), inclination
    ``incl`` (radians), ``theta_rec`` (direction of the receding half, radians from +x
    towards +y), ``v_flat`` and ``sigma_v`` (km/s). After :func:`render_discs`: ``w50``,
    ``w20`` (channels, the noise-free spectrum's widths as :func:`.spectral.line_widths`
    measures them), ``z_mid`` (the middle of its 50% crossings) and ``peak`` (the brightest
    voxel, cube units)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    flux: np.ndarray
    fwhm: np.ndarray
    incl: np.ndarray
    theta_rec: np.ndarray
    v_flat: np.ndarray
    sigma_v: np.ndarray
    w50: np.ndarray | None = None
    w20: np.ndarray | None = None
    z_mid: np.ndarray | None = None
    peak: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def axis_ratio(self) -> np.ndarray:
        """Observed (unconvolved) minor / major axis ratio."""
        return np.sqrt(np.cos(self.incl) ** 2 + (SDC2_Q0 * np.sin(self.incl)) ** 2)


def draw_discs(rng: np.random.Generator, n: int, shape: tuple[int, int, int], *,
               flux: np.ndarray, size_range: tuple[float, float],
               rotation_range: tuple[float, float], sigma_v: float, channel_kms: float,
               border: float) -> Discs:
    """``n`` discs in a cube of ``shape``: positions ``border`` pixels from the sky's edges,
    systemic channels leaving room for the widest line (``channel_kms`` km/s per channel),
    ``fwhm`` log-uniform in ``size_range`` pixels, random orientations (``cos i``
    uniform), ``v_flat`` uniform in ``rotation_range`` km/s."""
    D, H, W = shape
    if min(H, W) <= 2 * border:
        raise ValueError(f"size: discs keep {border:g} pixels from the sky's edges; a "
                         f"{H}x{W} sky leaves no room (give more than {2 * border:g} pixels)")
    half = (rotation_range[1] + 3.0 * sigma_v) / channel_kms + 1.0
    if 2 * half >= D:
        raise ValueError(f"rotation_range: lines up to {2 * half:.0f} channels wide do not fit "
                         f"in {D} channels; give more channels or slower discs")
    lo, hi = (math.log(v) for v in size_range)
    return Discs(x=rng.uniform(border - 0.5, W - 0.5 - border, n),
                 y=rng.uniform(border - 0.5, H - 0.5 - border, n),
                 z=rng.uniform(half - 0.5, D - 0.5 - half, n), flux=np.asarray(flux, float),
                 fwhm=np.exp(rng.uniform(lo, hi, n)), incl=np.arccos(rng.uniform(0, 1, n)),
                 theta_rec=rng.uniform(0, 2 * math.pi, n),
                 v_flat=rng.uniform(*rotation_range, n), sigma_v=np.full(n, float(sigma_v)))


def render_discs(cube: np.ndarray, discs: Discs, *, psf_fwhm: float, channel_kms: float,
                 rising: bool = True) -> Discs:
    """Add ``discs`` to ``cube`` [D, H, W] (in place); returns them with their spectra's
    widths and peaks. ``channel_kms``: km/s per channel (rest frame, ``c dnu / nu``);
    ``rising``: frequency rises with the channel (receding emission then sits at lower
    channels)."""
    from scipy.ndimage import gaussian_filter

    D, H, W = cube.shape
    n = len(discs)
    w50, w20, z_mid, peak = (np.full(n, np.nan) for _ in range(4))
    psf_sigma = psf_fwhm / _FWHM
    sign = -1.0 if rising else 1.0
    chans = np.arange(D, dtype=np.float64)
    for k in range(n):
        hs, inc, th = discs.fwhm[k], discs.incl[k], discs.theta_rec[k]
        q = float(discs.axis_ratio()[k])
        r = int(math.ceil(1.5 * hs + 4.0 * psf_sigma)) + 1
        xc, yc = int(round(discs.x[k])), int(round(discs.y[k]))
        f = (np.arange(-r * _OVERSAMPLE, (r + 1) * _OVERSAMPLE) + 0.5) / _OVERSAMPLE - 0.5
        gy, gx = np.meshgrid(f + yc - discs.y[k], f + xc - discs.x[k], indexing="ij")
        u = gx * math.cos(th) + gy * math.sin(th)
        v = -gx * math.sin(th) + gy * math.cos(th)
        sig = hs / _FWHM
        sky = np.exp(-0.5 * (u**2 + (v / q) ** 2) / sig**2)
        radius = np.hypot(u, v / q)
        rot = discs.v_flat[k] * (1.0 - np.exp(-radius / (0.1 * hs)))
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_phi = np.where(radius > 0, u / radius, 0.0)
        v_los = rot * math.sin(inc) * cos_phi
        centre = discs.z[k] + sign * v_los / channel_kms
        s = discs.sigma_v[k] / channel_kms
        lo = max(int(math.floor(np.min(centre) - 5 * s)) - 1, 0)
        hi = min(int(math.ceil(np.max(centre) + 5 * s)) + 2, D)
        zz = chans[lo:hi, None, None]
        fine = sky[None] * np.exp(-0.5 * ((zz - centre[None]) / s) ** 2) / s
        side = 2 * r + 1
        stamp = fine.reshape(hi - lo, side, _OVERSAMPLE, side, _OVERSAMPLE).sum(axis=(2, 4))
        stamp = gaussian_filter(stamp, (0, psf_sigma, psf_sigma), mode="constant")
        stamp *= discs.flux[k] / stamp.sum()
        spec = stamp.sum(axis=(1, 2))
        (l20, l50), (h20, h50) = line_widths(spec, (0.2, 0.5))
        w20[k], w50[k], z_mid[k] = h20 - l20, h50 - l50, lo + 0.5 * (l50 + h50)
        peak[k] = float(stamp.max())
        ys, xs = slice(yc - r, yc + r + 1), slice(xc - r, xc + r + 1)
        y0, x0 = max(ys.start, 0), max(xs.start, 0)
        y1, x1 = min(ys.stop, H), min(xs.stop, W)
        cube[lo:hi, y0:y1, x0:x1] += stamp[:, y0 - ys.start:y1 - ys.start,
                                           x0 - xs.start:x1 - xs.start].astype(cube.dtype)
    return replace(discs, w50=w50, w20=w20, z_mid=z_mid, peak=peak)
