"""Synthetic radio-sky images and cubes with exact catalogues, for YOLO training and tests.

The generator mimics, in miniature, what the SKA Science Data Challenge 1 (SDC1) images
look like to a detector: unresolved sources (beam-sized Gaussians) and extended
elliptical Gaussians with a power-law flux distribution, over Gaussian noise correlated
by the synthesised beam.  Everything is numpy only, vectorised, and deterministic given
a seed (one :class:`numpy.random.Generator` per call).

Conventions
-----------
* Arrays are indexed ``image[y, x]`` (``cube[z, y, x]``); ``x`` is the column.
* Catalogue positions are in *pixel-centre* coordinates: pixel ``i`` is centred at ``i``
  (so a source at ``x = 3.0`` peaks on column 3).
* CIANNA boxes (:func:`boxes_from_catalogue`) are in *pixel-edge* coordinates, where
  pixel ``i`` spans ``[i, i + 1)``: box centre = catalogue position + ``origin`` (0.5).
  This is the frame CIANNA's YOLO uses to assign a target to the grid cell
  ``trunc(centre / cell_size)``.
* Sizes (``bmaj``, ``bmin``, ``dz``) are FWHM in pixels/channels; ``pa`` (radians) is
  measured from the +y axis (north, increasing rows) towards -x (east), so the major axis
  points along ``(-sin pa, cos pa)`` in (x, y).
* ``flux`` is the integrated flux: the noise-free rendered image (or cube) sums to the
  catalogue fluxes.  A 2D Gaussian of flux ``S`` has peak ``S / (2 pi sx sy)``; in a cube
  the peak is further divided by ``sqrt(2 pi) sz``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from ..checks import as_bounded_float, as_int

__all__ = [
    "FWHM_TO_SIGMA",
    "Catalogue",
    "Patches",
    "power_law_fluxes",
    "render_sources",
    "correlated_noise",
    "make_field",
    "make_cube",
    "boxes_from_catalogue",
    "cianna_targets",
    "cianna_target_rows",
    "patches",
    "estimate_noise_rms",
    "normalize",
]

FWHM_TO_SIGMA: float = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
"""Multiply a Gaussian FWHM by this to get its standard deviation (1 / 2.3548...)."""

SeedLike = int | np.random.Generator | None


def _rng(seed: SeedLike) -> np.random.Generator:
    """One Generator per call: an int seeds a fresh one, a Generator is used as is."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Source list of a synthetic field or cube (one float/int array per column).

    Columns: ``x, y`` pixel centre, ``z`` centre channel (0 for images), ``flux``
    integrated flux, ``bmaj, bmin`` FWHM (pixels) of the *rendered* (beam-convolved)
    ellipse, ``pa`` radians, ``kind`` (0 point/unresolved, 1 extended), ``dz`` spectral
    line FWHM in channels (0 for images).  ``ndim`` is 2 for images, 3 for cubes.
    Index it with an int array, slice or boolean mask to get a sub-catalogue.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    bmaj: np.ndarray
    bmin: np.ndarray
    pa: np.ndarray
    kind: np.ndarray
    z: np.ndarray
    dz: np.ndarray
    ndim: int = 2

    def __post_init__(self) -> None:
        n = None
        for f in fields(self):
            if f.name == "ndim":
                continue
            dt = np.int32 if f.name == "kind" else np.float64
            a = np.atleast_1d(np.asarray(getattr(self, f.name), dtype=dt))
            if a.ndim != 1:
                raise ValueError(f"catalogue column {f.name!r} must be 1D, got {a.shape}")
            n = a.shape[0] if n is None else n
            if a.shape[0] != n:
                raise ValueError(f"catalogue column {f.name!r} has {a.shape[0]} rows, expected {n}")
            object.__setattr__(self, f.name, a)
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim}")

    @classmethod
    def empty(cls, ndim: int = 2) -> Catalogue:
        """A catalogue with no sources."""
        e = np.zeros(0)
        return cls(e, e, e, e, e, e, np.zeros(0, np.int32), e, e, ndim=ndim)

    @classmethod
    def create(cls, x, y, flux, bmaj, bmin, pa=0.0, kind=0, z=0.0, dz=0.0,
               ndim: int | None = None) -> Catalogue:
        """Build from columns, broadcasting scalars; ``ndim`` defaults to 3 if any dz > 0."""
        cols = np.broadcast_arrays(*(np.atleast_1d(np.asarray(c, dtype=np.float64))
                                     for c in (x, y, flux, bmaj, bmin, pa, kind, z, dz)))
        x, y, flux, bmaj, bmin, pa, kind, z, dz = (np.array(c) for c in cols)
        if ndim is None:
            ndim = 3 if np.any(dz > 0) else 2
        return cls(x, y, flux, bmaj, bmin, pa, kind.astype(np.int32), z, dz, ndim=ndim)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, idx) -> Catalogue:
        if isinstance(idx, (int, np.integer)):
            idx = [idx]
        return Catalogue(**{f.name: getattr(self, f.name)[idx] for f in fields(self)
                            if f.name != "ndim"}, ndim=self.ndim)

    def __repr__(self) -> str:
        return f"Catalogue(n={len(self)}, ndim={self.ndim})"

    @property
    def sigma_major(self) -> np.ndarray:
        """Gaussian sigma along the major axis (pixels)."""
        return self.bmaj * FWHM_TO_SIGMA

    @property
    def sigma_minor(self) -> np.ndarray:
        """Gaussian sigma along the minor axis (pixels)."""
        return self.bmin * FWHM_TO_SIGMA

    @property
    def sigma_z(self) -> np.ndarray:
        """Gaussian sigma of the spectral line (channels); 0 for images."""
        return self.dz * FWHM_TO_SIGMA

    @property
    def peak(self) -> np.ndarray:
        """Peak brightness of each (continuous) Gaussian, in image units per pixel/voxel."""
        p = self.flux / (2.0 * np.pi * self.sigma_major * self.sigma_minor)
        if self.ndim == 3:
            p = p / (math.sqrt(2.0 * np.pi) * self.sigma_z)
        return p

    def shifted(self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> Catalogue:
        """Copy with positions moved by (dx, dy, dz) (e.g. to patch coordinates)."""
        d = {f.name: getattr(self, f.name).copy() for f in fields(self) if f.name != "ndim"}
        d["x"] += dx
        d["y"] += dy
        d["z"] += dz
        return Catalogue(**d, ndim=self.ndim)

    def sorted_by_flux(self, descending: bool = True) -> Catalogue:
        """Copy sorted by flux (brightest first by default; stable)."""
        order = np.argsort(-self.flux if descending else self.flux, kind="stable")
        return self[order]

    def to_records(self) -> np.ndarray:
        """Structured numpy array with one named field per column."""
        names = [f.name for f in fields(self) if f.name != "ndim"]
        rec = np.zeros(len(self), dtype=[(n, np.int32 if n == "kind" else np.float64)
                                         for n in names])
        for n in names:
            rec[n] = getattr(self, n)
        return rec

    @classmethod
    def from_records(cls, rec: np.ndarray, ndim: int | None = None) -> Catalogue:
        """Inverse of :meth:`to_records`."""
        return cls.create(**{n: rec[n] for n in rec.dtype.names}, ndim=ndim)

    @staticmethod
    def concatenate(cats: Sequence[Catalogue]) -> Catalogue:
        """Stack several catalogues (all with the same ndim)."""
        if not cats:
            return Catalogue.empty()
        nd = {c.ndim for c in cats}
        if len(nd) != 1:
            raise ValueError(f"cannot concatenate catalogues of ndim {sorted(nd)}")
        return Catalogue(**{f.name: np.concatenate([getattr(c, f.name) for c in cats])
                            for f in fields(Catalogue) if f.name != "ndim"}, ndim=nd.pop())


# --------------------------------------------------------------------------- drawing


def power_law_fluxes(rng: SeedLike, n: int, flux_range: tuple[float, float] = (0.05, 50.0),
                     power_law_index: float = 1.8) -> np.ndarray:
    """Draw ``n`` fluxes with dN/dS ∝ S^-alpha on [fmin, fmax] by inverse-CDF sampling.

    Radio source counts are close to a power law; alpha = 1 is log-uniform.
    """
    fmin, fmax = (float(v) for v in flux_range)
    if not 0.0 < fmin <= fmax:
        raise ValueError(f"flux_range must satisfy 0 < fmin <= fmax, got {flux_range}")
    u = _rng(rng).random(int(n))
    a = float(power_law_index)
    if fmin == fmax:
        return np.full(int(n), fmin)
    if abs(a - 1.0) < 1e-12:
        return fmin * (fmax / fmin) ** u
    g = 1.0 - a
    lo, hi = fmin ** g, fmax ** g
    return np.clip((lo + u * (hi - lo)) ** (1.0 / g), fmin, fmax)


def _axis_sigmas(cat: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations of each rotated ellipse projected on x and y."""
    sa, sb = cat.sigma_major, cat.sigma_minor
    s, c = np.sin(cat.pa), np.cos(cat.pa)
    return np.sqrt((sa * s) ** 2 + (sb * c) ** 2), np.sqrt((sa * c) ** 2 + (sb * s) ** 2)


def render_sources(shape: Sequence[int], cat: Catalogue, *, nsigma: float = 5.0,
                   out: np.ndarray | None = None, chunk_voxels: int = 1 << 22) -> np.ndarray:
    """Add the catalogue's Gaussians to a noise-free image (H, W) or cube (D, H, W).

    Each source is evaluated at pixel centres on a local stamp of half-size
    ``ceil(nsigma * sigma)`` (per axis) around its nearest pixel, clipped at the edges;
    sources whose centre is off the image still contribute their wings.  Sources are
    grouped by stamp size and scattered in chunks (vectorised; float64 accumulation).
    Returns ``out`` (a new float64 array if None).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (H, W) or (D, H, W), got {shape}")
    cube = len(shape) == 3
    if cube and cat.ndim != 3:
        raise ValueError("rendering a cube needs a 3D catalogue (ndim=3, dz > 0)")
    if out is None:
        out = np.zeros(shape, np.float64)
    if len(cat) == 0:
        return out
    D, H, W = (shape if cube else (1,) + shape)
    flat = out.reshape(-1)
    sx, sy = _axis_sigmas(cat)
    hs = np.ceil(nsigma * np.maximum(sx, sy)).astype(np.int64)
    hz = np.ceil(nsigma * cat.sigma_z).astype(np.int64) if cube else np.zeros(len(cat), np.int64)
    # inverse covariance of each ellipse: exp(-0.5 (A dx^2 + 2 B dx dy + C dy^2))
    ia, ib = 1.0 / cat.sigma_major ** 2, 1.0 / cat.sigma_minor ** 2
    s, c = np.sin(cat.pa), np.cos(cat.pa)
    A, B, C = s * s * ia + c * c * ib, s * c * (ib - ia), c * c * ia + s * s * ib
    peak = cat.peak
    ix = np.floor(cat.x + 0.5).astype(np.int64)
    iy = np.floor(cat.y + 0.5).astype(np.int64)
    iz = np.floor(cat.z + 0.5).astype(np.int64)
    keys = hs * (1 << 20) + hz
    for key in np.unique(keys):
        members = np.nonzero(keys == key)[0]
        h, hzk = int(key >> 20), int(key & ((1 << 20) - 1))
        L, Lz = 2 * h + 1, 2 * hzk + 1
        step = max(1, chunk_voxels // (L * L * Lz))
        o = np.arange(-h, h + 1)
        oz = np.arange(-hzk, hzk + 1)
        for start in range(0, members.size, step):
            m = members[start:start + step]
            px = ix[m, None] + o                     # (n, L)
            py = iy[m, None] + o
            dx = px - cat.x[m, None]
            dy = py - cat.y[m, None]
            q = (A[m, None, None] * dx[:, None, :] ** 2
                 + 2.0 * B[m, None, None] * dx[:, None, :] * dy[:, :, None]
                 + C[m, None, None] * dy[:, :, None] ** 2)
            val = peak[m, None, None] * np.exp(-0.5 * q)               # (n, Ly, Lx)
            ok = ((px >= 0) & (px < W))[:, None, :] & ((py >= 0) & (py < H))[:, :, None]
            idx = py[:, :, None] * W + px[:, None, :]
            if cube:
                pz = iz[m, None] + oz                                   # (n, Lz)
                dzv = (pz - cat.z[m, None]) / cat.sigma_z[m, None]
                val = val[:, None] * np.exp(-0.5 * dzv ** 2)[:, :, None, None]
                ok = ok[:, None] & ((pz >= 0) & (pz < D))[:, :, None, None]
                idx = idx[:, None] + (pz * (H * W))[:, :, None, None]
            np.add.at(flat, idx[ok], val[ok])
    return out


def correlated_noise(shape: Sequence[int], noise_rms: float, psf_fwhm: float,
                     rng: SeedLike = 0, *, correlated: bool = True) -> np.ndarray:
    """Gaussian noise of rms ``noise_rms``, optionally correlated as the beam (float64).

    The noise of an interferometric image is correlated as its (dirty) beam: its
    autocorrelation is the beam, of FWHM ``psf_fwhm``.  White noise is convolved
    (circularly, via numpy FFT over the last two axes) with a Gaussian of FWHM
    ``psf_fwhm / sqrt(2)``, whose autocorrelation has FWHM ``psf_fwhm``, and divided by the
    kernel's L2 norm, so the expected rms is exactly ``noise_rms``.  (Before 2026-12-06 the
    kernel was the beam itself, which correlated the noise over sqrt(2) beams.)  Channels of a
    cube get independent realisations.
    """
    rng = _rng(rng)
    shape = tuple(int(s) for s in shape)
    white = rng.standard_normal(shape)
    if noise_rms == 0:
        return np.zeros(shape)
    if not correlated or psf_fwhm <= 0:
        return noise_rms * white
    H, W = shape[-2:]
    sig = psf_fwhm * FWHM_TO_SIGMA / np.sqrt(2.0)    # autocorrelation: the beam
    oy = np.fft.fftfreq(H) * H                       # signed periodic offsets
    ox = np.fft.fftfreq(W) * W
    k = np.exp(-0.5 * (oy[:, None] ** 2 + ox[None, :] ** 2) / sig ** 2)
    k /= np.sqrt(np.sum(k * k))
    conv = np.fft.irfft2(np.fft.rfft2(white, axes=(-2, -1)) * np.fft.rfft2(k),
                         s=(H, W), axes=(-2, -1))
    return noise_rms * conv


_noise = correlated_noise  # make_field's ``correlated_noise`` keyword shadows the function


def _size(size, n: int, name: str) -> tuple[int, ...]:
    t = (size,) * n if isinstance(size, (int, np.integer)) else tuple(size)
    if len(t) != n or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0
                          for v in t):
        raise ValueError(f"{name} must be a positive int or a {n}-tuple, got {size!r}")
    return tuple(int(v) for v in t)


def _range(r, name: str, low: float = 0.0, high: float = math.inf) -> tuple[float, float]:
    """``(lo, hi)`` with ``low < lo <= hi <= high`` (finite), else ValueError naming it."""
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a (min, max) pair of numbers, got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and low < lo <= hi <= high):
        raise ValueError(f"{name}: expected {low:g} < min <= max <= {high:g}, got {r!r}")
    return lo, hi


def _count(n_sources, density: float, rng: np.random.Generator, area: int) -> int:
    """``n_sources``, or a Poisson draw of ``density * area`` when it is None."""
    if n_sources is not None:
        return as_int(n_sources, "n_sources", minimum=0)
    return int(rng.poisson(as_bounded_float(density, "density", strict=False) * area))


def _check_sky(shape: tuple[int, ...], *, noise_rms, psf_fwhm, extended_fraction,
               extended_size_range, axis_ratio_range, border, nsigma) -> None:
    """The settings :func:`make_field` and :func:`make_cube` share, named when wrong
    (a NaN noise or a negative one used to give a noise-free image silently)."""
    as_bounded_float(noise_rms, "noise_rms", strict=False)
    as_bounded_float(psf_fwhm, "psf_fwhm")
    as_bounded_float(nsigma, "nsigma")
    f = as_bounded_float(extended_fraction, "extended_fraction", strict=False)
    if f > 1:
        raise ValueError(f"extended_fraction: expected a fraction in [0, 1], received {f}")
    _range(extended_size_range, "extended_size_range")
    _range(axis_ratio_range, "axis_ratio_range", high=1.0)
    b = float(border)
    if not math.isfinite(b) or 2 * b >= min(shape[-2:]):
        raise ValueError(f"border: centres must keep room inside the {shape[-1]}x{shape[-2]} "
                         f"image (2 * border < its smaller side), received {border!r}")


def _shapes(rng: np.random.Generator, n: int, psf_fwhm: float, extended_fraction: float,
            extended_size_range: tuple[float, float], axis_ratio_range: tuple[float, float]):
    """Kind, rendered bmaj/bmin (intrinsic ⊗ beam) and pa of ``n`` sources."""
    ext = rng.random(n) < extended_fraction
    lo, hi = (float(v) for v in extended_size_range)
    theta = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    ratio = rng.uniform(*axis_ratio_range, n)
    pa = rng.uniform(0.0, np.pi, n)
    # a Gaussian convolved with a circular Gaussian beam: FWHM^2 adds on both axes, pa kept
    bmaj = np.where(ext, np.sqrt(theta ** 2 + psf_fwhm ** 2), psf_fwhm)
    bmin = np.where(ext, np.sqrt((ratio * theta) ** 2 + psf_fwhm ** 2), psf_fwhm)
    return ext.astype(np.int32), bmaj, bmin, np.where(ext, pa, 0.0)


def make_field(
    size: int | tuple[int, int] = 256,
    *,
    n_sources: int | None = None,
    density: float = 2e-3,
    seed: SeedLike = 0,
    noise_rms: float = 0.01,
    psf_fwhm: float = 3.0,
    flux_range: tuple[float, float] = (0.05, 50.0),
    power_law_index: float = 1.8,
    extended_fraction: float = 0.3,
    extended_size_range: tuple[float, float] = (3.0, 15.0),
    axis_ratio_range: tuple[float, float] = (0.3, 1.0),
    correlated_noise: bool = True,
    border: float = 0.0,
    nsigma: float = 5.0,
) -> tuple[np.ndarray, Catalogue]:
    """Synthetic continuum field: (image float32 [H, W], catalogue).

    ``n_sources`` (default Poisson(density * H * W)) sources are placed uniformly with
    centres at least ``border`` pixels inside the image footprint ``[-0.5, W - 0.5)``
    (negative: centres may lie outside, only their wings enter).  Fluxes follow
    dN/dS ∝ S^-power_law_index on ``flux_range``.  A fraction ``extended_fraction`` are
    extended: intrinsic FWHM log-uniform in ``extended_size_range`` (pixels), axis ratio
    uniform in ``axis_ratio_range``, pa uniform in [0, pi), convolved with the beam; the
    rest are beam-sized (``psf_fwhm``) points.  Noise of rms ``noise_rms`` (0: none) is
    beam-correlated when ``correlated_noise``.  The catalogue stores rendered sizes.
    """
    H, W = _size(size, 2, "size")
    _check_sky((H, W), noise_rms=noise_rms, psf_fwhm=psf_fwhm,
               extended_fraction=extended_fraction, extended_size_range=extended_size_range,
               axis_ratio_range=axis_ratio_range, border=border, nsigma=nsigma)
    rng = _rng(seed)
    n = _count(n_sources, density, rng, H * W)
    x = rng.uniform(border - 0.5, W - 0.5 - border, n)
    y = rng.uniform(border - 0.5, H - 0.5 - border, n)
    flux = power_law_fluxes(rng, n, flux_range, power_law_index)
    kind, bmaj, bmin, pa = _shapes(rng, n, psf_fwhm, extended_fraction,
                                   extended_size_range, axis_ratio_range)
    cat = Catalogue(x, y, flux, bmaj, bmin, pa, kind, np.zeros(n), np.zeros(n), ndim=2)
    img = render_sources((H, W), cat, nsigma=nsigma)
    if noise_rms > 0:
        img += _noise((H, W), noise_rms, psf_fwhm, rng, correlated=correlated_noise)
    return img.astype(np.float32), cat


def make_cube(
    size: tuple[int, int, int] = (64, 128, 128),
    *,
    n_sources: int | None = None,
    density: float = 5e-4,
    seed: SeedLike = 0,
    noise_rms: float = 0.01,
    psf_fwhm: float = 3.0,
    flux_range: tuple[float, float] = (0.5, 50.0),
    power_law_index: float = 1.8,
    extended_fraction: float = 0.5,
    extended_size_range: tuple[float, float] = (3.0, 12.0),
    axis_ratio_range: tuple[float, float] = (0.3, 1.0),
    line_width_range: tuple[float, float] = (2.0, 8.0),
    correlated_noise: bool = True,
    border: float = 0.0,
    z_border: float = 0.0,
    nsigma: float = 5.0,
) -> tuple[np.ndarray, Catalogue]:
    """Synthetic spectral-line cube: (cube float32 [D, H, W], catalogue with z and dz).

    Each source is a spatial ellipse (as in :func:`make_field`) times a Gaussian line
    centred on channel ``z`` (uniform, ``z_border`` channels from the ends) with FWHM
    ``dz`` uniform in ``line_width_range`` channels; ``flux`` is the total over voxels.
    ``n_sources`` defaults to Poisson(density * H * W) (a few per cube).  Noise is
    beam-correlated within each channel and independent between channels.
    """
    D, H, W = _size(size, 3, "size")
    _check_sky((D, H, W), noise_rms=noise_rms, psf_fwhm=psf_fwhm,
               extended_fraction=extended_fraction, extended_size_range=extended_size_range,
               axis_ratio_range=axis_ratio_range, border=border, nsigma=nsigma)
    _range(line_width_range, "line_width_range")
    zb = float(z_border)
    if not math.isfinite(zb) or 2 * zb >= D:
        raise ValueError(f"z_border: centres must keep room inside the {D} channels "
                         f"(2 * z_border < {D}), received {z_border!r}")
    rng = _rng(seed)
    n = _count(n_sources, density, rng, H * W)
    x = rng.uniform(border - 0.5, W - 0.5 - border, n)
    y = rng.uniform(border - 0.5, H - 0.5 - border, n)
    z = rng.uniform(z_border - 0.5, D - 0.5 - z_border, n)
    flux = power_law_fluxes(rng, n, flux_range, power_law_index)
    kind, bmaj, bmin, pa = _shapes(rng, n, psf_fwhm, extended_fraction,
                                   extended_size_range, axis_ratio_range)
    dz = rng.uniform(*line_width_range, n)
    cat = Catalogue(x, y, flux, bmaj, bmin, pa, kind, z, dz, ndim=3)
    cube = render_sources((D, H, W), cat, nsigma=nsigma)
    if noise_rms > 0:
        cube += _noise((D, H, W), noise_rms, psf_fwhm, rng, correlated=correlated_noise)
    return cube.astype(np.float32), cat


# --------------------------------------------------------------------------- CIANNA targets


def _triple(v, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 3)
    if a.size == 2:
        a = np.append(a, a[0])
    if a.size != 3:
        raise ValueError(f"{name} must be a scalar or (x, y[, z]), got {v!r}")
    return a


def boxes_from_catalogue(
    cat: Catalogue,
    *,
    min_size: float | Sequence[float] = 2.0,
    max_size: float | Sequence[float] = 64.0,
    scale: float = 2.0,
    origin: float = 0.5,
    image_size: Sequence[int] | None = None,
) -> np.ndarray:
    """CIANNA box corners ``[n, 6]`` = (xmin, ymin, zmin, xmax, ymax, zmax), float32.

    As in the SDC1 CIANNA pipeline, the box is the axis-aligned extent of the rotated
    FWHM ellipse times ``scale``: width ``scale*sqrt((bmaj sin pa)^2 + (bmin cos pa)^2)``,
    height ``scale*sqrt((bmaj cos pa)^2 + (bmin sin pa)^2)``, depth ``scale*dz`` (cubes),
    each clipped to ``[min_size, max_size]`` (scalars or per-axis (x, y[, z])).  Boxes
    are centred on the position + ``origin`` (pixel-edge frame, see module docstring).
    Images get zmin = 0, zmax = 1.  ``image_size`` ((H, W) or (D, H, W)) clips corners
    to the image.
    """
    lo, hi = _triple(min_size, "min_size"), _triple(max_size, "max_size")
    s, c = np.sin(cat.pa), np.cos(cat.pa)
    w = np.clip(scale * np.sqrt((cat.bmaj * s) ** 2 + (cat.bmin * c) ** 2), lo[0], hi[0])
    h = np.clip(scale * np.sqrt((cat.bmaj * c) ** 2 + (cat.bmin * s) ** 2), lo[1], hi[1])
    cx, cy = cat.x + origin, cat.y + origin
    boxes = np.empty((len(cat), 6), np.float64)
    boxes[:, 0], boxes[:, 3] = cx - 0.5 * w, cx + 0.5 * w
    boxes[:, 1], boxes[:, 4] = cy - 0.5 * h, cy + 0.5 * h
    if cat.ndim == 3:
        d = np.clip(scale * cat.dz, lo[2], hi[2])
        cz = cat.z + origin
        boxes[:, 2], boxes[:, 5] = cz - 0.5 * d, cz + 0.5 * d
    else:
        boxes[:, 2], boxes[:, 5] = 0.0, 1.0
    if image_size is not None:
        sz = tuple(int(v) for v in image_size)
        D, H, W = sz if len(sz) == 3 else (1,) + sz
        for k, lim in ((0, W), (1, H), (2, D)):
            boxes[:, k] = np.clip(boxes[:, k], 0, lim)
            boxes[:, k + 3] = np.clip(boxes[:, k + 3], 0, lim)
    return boxes.astype(np.float32)


def cianna_targets(
    boxes: np.ndarray,
    max_nb_obj: int,
    *,
    classes: np.ndarray | Sequence[int] | None = None,
    params: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    difficult: np.ndarray | None = None,
) -> np.ndarray:
    """One CIANNA YOLO target row (float32).

    Layout: ``[n_obj, (class, xmin, ymin, zmin, xmax, ymax, zmax, params...[, diff])
    * max_nb_obj]`` zero-padded, length ``1 + max_nb_obj * (7 + P [+ 1])`` where P is
    ``params.shape[1]`` and the last column is present only when ``difficult`` is given
    (CIANNA's ``diff_flag``).  ``classes`` are 1-based (default all 1; 0: no class known,
    for a network with ``unclassified_targets``).  With more than
    ``max_nb_obj`` boxes: if ``priority`` (e.g. flux) is given, the ``max_nb_obj`` highest
    are kept and written in decreasing priority (stable); otherwise the first
    ``max_nb_obj`` are kept in input order.  With ``priority`` given, boxes are always
    written in decreasing priority.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    n = b.shape[0]
    cls = np.ones(n) if classes is None else np.asarray(classes, np.float64).reshape(-1)
    if cls.shape[0] != n:
        raise ValueError(f"classes has {cls.shape[0]} entries for {n} boxes")
    if n and cls.min() < 0:
        raise ValueError("classes are 1-based (CIANNA convention; 0: no class known)")
    par = np.zeros((n, 0)) if params is None else np.asarray(params, np.float64).reshape(n, -1)
    cols = [cls[:, None], b, par]
    if difficult is not None:
        cols.append(np.asarray(difficult, np.float64).reshape(n, 1))
    rows = np.concatenate(cols, axis=1)
    order = (np.argsort(-np.asarray(priority, np.float64).reshape(n), kind="stable")
             if priority is not None else np.arange(n))
    keep = order[:int(max_nb_obj)]
    L = rows.shape[1]
    out = np.zeros(1 + int(max_nb_obj) * L, np.float32)
    out[0] = keep.size
    out[1:1 + keep.size * L] = rows[keep].reshape(-1)
    return out


def cianna_target_rows(
    catalogues: Sequence[Catalogue],
    max_nb_obj: int,
    *,
    class_from_kind: bool = True,
    keep_brightest: bool = True,
    **box_kwargs,
) -> np.ndarray:
    """Target rows ``[len(catalogues), target_len]`` for a stack of patches.

    Classes are ``kind + 1`` (1 point, 2 extended) when ``class_from_kind`` else all 1;
    when a patch has more than ``max_nb_obj`` sources the brightest are kept (by
    flux) when ``keep_brightest``.  ``box_kwargs`` go to :func:`boxes_from_catalogue`.
    """
    out = []
    for cat in catalogues:
        out.append(cianna_targets(
            boxes_from_catalogue(cat, **box_kwargs), max_nb_obj,
            classes=(cat.kind + 1) if class_from_kind else None,
            priority=cat.flux if keep_brightest else None))
    if not out:
        return np.zeros((0, 1 + int(max_nb_obj) * 7), np.float32)
    return np.stack(out)


# --------------------------------------------------------------------------- patches


class Patches(NamedTuple):
    """Training patches cut from a field (see :func:`patches`)."""

    images: np.ndarray             # [n, ph, pw] (or [n, D, ph, pw] for cubes), float32
    catalogues: list[Catalogue]    # per patch, positions in patch pixels
    origins: np.ndarray            # [n, 2] int (y0, x0): top-left pixel of each patch


def estimate_noise_rms(image: np.ndarray) -> float:
    """Robust noise rms: 1.4826 * median absolute deviation (little biased by sources)."""
    a = np.asarray(image, np.float64).reshape(-1)
    a = a[np.isfinite(a)]  # blanked (NaN) pixels, as radio images have outside the field
    if not a.size:
        raise ValueError("image: no finite pixel to estimate the noise from")
    med = np.median(a)
    return float(1.4826 * np.median(np.abs(a - med)))


def patches(
    image: np.ndarray,
    catalogue: Catalogue,
    patch: int | tuple[int, int],
    *,
    n: int | None = None,
    stride: int | tuple[int, int] | None = None,
    seed: SeedLike = 0,
    min_flux_sigma: float | None = None,
    noise_rms: float | None = None,
) -> Patches:
    """Cut training patches from a field (or spatial patches, all channels, of a cube).

    Positions: ``n`` uniformly random top-left corners (seeded), or a regular grid with
    ``stride`` (default, when neither is given: ``stride = patch``, a tiling).  Each
    patch's catalogue holds the sources whose centre pixel ``floor(x + 0.5)`` lies
    inside it, shifted to patch pixels.  With ``min_flux_sigma = k`` only sources of
    peak > k * noise_rms are kept (``noise_rms`` estimated by MAD when None), so targets
    are detectable.  Returns :class:`Patches` (images, catalogues, origins).
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be 2D or 3D, got shape {img.shape}")
    H, W = img.shape[-2:]
    ph, pw = _size(patch, 2, "patch")
    if ph > H or pw > W:
        raise ValueError(f"patch {(ph, pw)} larger than the image {(H, W)}")
    if n is not None and stride is not None:
        raise ValueError("give either n (random patches) or stride (regular grid), not both")
    if n is not None:
        rng = _rng(seed)
        n = as_int(n, "n", minimum=0)
        y0 = rng.integers(0, H - ph + 1, n)
        x0 = rng.integers(0, W - pw + 1, n)
    else:
        sy, sx = _size(stride if stride is not None else (ph, pw), 2, "stride")
        gy, gx = np.meshgrid(np.arange(0, H - ph + 1, sy), np.arange(0, W - pw + 1, sx),
                             indexing="ij")
        y0, x0 = gy.reshape(-1), gx.reshape(-1)
    view = np.lib.stride_tricks.sliding_window_view(img, (ph, pw), axis=(-2, -1))
    stack = view[..., y0, x0, :, :]
    if img.ndim == 3:
        stack = np.moveaxis(stack, 0, 1)
    stack = np.ascontiguousarray(stack, dtype=np.float32)

    cat = catalogue
    if min_flux_sigma is not None:
        rms = estimate_noise_rms(img) if noise_rms is None else float(noise_rms)
        cat = cat[cat.peak > min_flux_sigma * rms]
    px = np.floor(cat.x + 0.5).astype(np.int64)
    py = np.floor(cat.y + 0.5).astype(np.int64)
    order = np.argsort(py, kind="stable")
    spy = py[order]
    lo = np.searchsorted(spy, y0, side="left")
    hi = np.searchsorted(spy, y0 + ph, side="left")
    cats = []
    for k in range(y0.size):
        cand = order[lo[k]:hi[k]]
        cand = np.sort(cand[(px[cand] >= x0[k]) & (px[cand] < x0[k] + pw)])
        cats.append(cat[cand].shifted(-float(x0[k]), -float(y0[k])))
    return Patches(stack, cats, np.stack([y0, x0], axis=1).astype(np.int64))


# --------------------------------------------------------------------------- normalisation


def normalize(
    image: np.ndarray,
    *,
    mode: str = "tanh",
    noise_rms: float | None = None,
    low: float = -5.0,
    high: float = 50.0,
    tanh_scale: float = 3.0,
) -> np.ndarray:
    """Map image values to roughly [-1, 1] for the network input (float32).

    Like the SDC1 CIANNA preprocessing, values are clipped to ``[low, high] * noise_rms``
    (``noise_rms`` estimated by MAD when None; pass ``noise_rms=1`` to give absolute
    ``low``/``high``), then
    * ``"tanh"``: ``tanh(tanh_scale * v / (high * noise_rms))``: near-linear on the noise,
      bright sources compressed towards 1 (a 50-sigma pixel -> tanh(3) = 0.995);
    * ``"clip"``: linear map of ``[low, high] * noise_rms`` onto [-1, 1].
    A fixed ``noise_rms`` keeps training and inference normalisations identical.
    Blanked pixels (NaN or inf, as outside a mosaic's footprint) take the value of an
    empty pixel (0 in the image unit), as in ``cianna-jax predict``.
    """
    a = np.asarray(image, np.float64)
    rms = estimate_noise_rms(a) if noise_rms is None else float(noise_rms)
    if not (math.isfinite(rms) and rms > 0):
        raise ValueError("noise_rms must be > 0 (give it explicitly for noise-free images)")
    a = np.where(np.isfinite(a), a, 0.0)
    if not low < high:
        raise ValueError(f"need low < high, got {low}, {high}")
    lo, hi = low * rms, high * rms
    v = np.clip(a, lo, hi)
    if mode == "tanh":
        out = np.tanh(tanh_scale * v / abs(hi))
    elif mode == "clip":
        out = 2.0 * (v - lo) / (hi - lo) - 1.0
    else:
        raise ValueError(f"mode must be 'tanh' or 'clip', got {mode!r}")
    return out.astype(np.float32)
