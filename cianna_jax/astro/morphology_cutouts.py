"""A morphology classifier's inputs: one window per source, in units of the local noise,
turned, flipped and shifted for training, resampled to the network's fixed size.

A source's window spans :attr:`CutoutSpec.beams` restoring-beam FWHMs whatever the
image's pixel size, so a classifier trained on one survey's sampling reads another's.
:func:`read_stamps` reads each window once (a little larger, so that any rotation stays
inside), background subtracted and divided by the local rms (:class:`.noise.NoiseMap`);
:func:`network_inputs` samples them (bilinear) on a ``pixels`` x ``pixels`` grid at
given angles, flips and offsets, sets pixels under ``clip`` times the rms to zero and
scales by ``asinh`` of the brightest pixel, so that faint jets and lobes keep weight
beside a bright core and the brightest pixel is 1 whatever the flux: ``[N, n, n, 1]`` in
[0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..checks import as_bounded_float, as_int
from .fits_image import FitsImage, ImageError, open_image
from .noise import NoiseMap, estimate_noise_map

__all__ = ["CutoutSpec", "Stamps", "on_image", "read_stamps", "centred_stamps",
           "network_inputs", "dihedral_inputs", "random_views"]


@dataclass(frozen=True)
class CutoutSpec:
    """A window of ``beams`` beam FWHMs a side, sampled on ``pixels`` x ``pixels``; pixels
    under ``clip`` times the local rms set to zero."""

    beams: float = 16.0
    pixels: int = 48
    clip: float = 3.0

    def __post_init__(self) -> None:
        as_bounded_float(self.beams, "beams")
        as_int(self.pixels, "pixels", minimum=8)
        as_bounded_float(self.clip, "clip", strict=False)

    def side_pixels(self, beam_pixels: float) -> float:
        """The window's side in image pixels for a beam of FWHM ``beam_pixels``."""
        return float(self.beams) * float(beam_pixels)


@dataclass(frozen=True)
class Stamps:
    """``snr`` [N, S, S] (pixels in units of the local rms, background subtracted; 0
    off the image and where blank), centred on the pixel nearest each source, ``fx``,
    ``fy`` [N] the sources' offsets from that centre (pixels), ``side`` the window's side
    in image pixels."""

    snr: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    side: float

    def __len__(self) -> int:
        return int(self.snr.shape[0])


def on_image(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which pixel positions fall on an image of ``shape`` (its last two axes)."""
    H, W = shape[-2:]
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < W - 0.5) & (y >= -0.5) & \
        (y < H - 0.5)


def read_stamps(image: FitsImage, noise: NoiseMap, x: np.ndarray, y: np.ndarray,
                spec: CutoutSpec) -> Stamps:
    """The windows of ``spec`` around pixel positions ``x``, ``y`` of a 2D ``image`` with
    a beam (its major-axis FWHM sets the window's size), read once each."""
    if image.ndim != 2:
        raise ImageError(f"{image.path}: a morphology classifier reads 2D images")
    fwhm = image.beam_fwhm_pixels()
    if fwhm is None:
        raise ImageError(f"{image.path}: no beam (BMAJ) or pixel scale: the cutouts' size is "
                         "set in beams")
    side = spec.side_pixels(float(fwhm[0]))
    half = int(math.ceil(0.5 * side * math.sqrt(2.0))) + 2  # room for any rotation
    S = 2 * half + 1
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    H, W = image.shape
    out = np.zeros((x.size, S, S), np.float32)
    cx = np.floor(x + 0.5).astype(np.int64)
    cy = np.floor(y + 0.5).astype(np.int64)
    for i in range(x.size):
        ya, yb = max(cy[i] - half, 0), min(cy[i] + half + 1, H)
        xa, xb = max(cx[i] - half, 0), min(cx[i] + half + 1, W)
        if ya >= yb or xa >= xb:
            continue
        ys, xs = slice(int(ya), int(yb)), slice(int(xa), int(xb))
        pix = image.read((ys, xs)).astype(np.float64) * image.unit_scale
        snr = (pix - noise.window(ys, xs, "background")) / noise.window(ys, xs)
        oy, ox = int(ya - (cy[i] - half)), int(xa - (cx[i] - half))
        out[i, oy:oy + snr.shape[0], ox:ox + snr.shape[1]] = np.nan_to_num(
            snr, nan=0.0, posinf=0.0, neginf=0.0)
    return Stamps(out, x - cx, y - cy, side)


def centred_stamps(paths: Sequence[str], spec: CutoutSpec) -> list[tuple[np.ndarray, Stamps]]:
    """The window of ``spec`` around the central pixel of each FITS file of ``paths`` (a
    survey's postage stamps, one source each; the noise map one box of the whole stamp),
    the stamps of one window size together: ``(their indices in paths, their Stamps)``."""
    groups: dict[tuple, list[tuple[int, Stamps]]] = {}
    for k, path in enumerate(paths):
        img = open_image(path)
        H, W = img.shape[-2:]
        noise = estimate_noise_map(img.read, img.shape, box=max(H, W))
        st = read_stamps(img, noise, np.array([0.5 * (W - 1)]), np.array([0.5 * (H - 1)]), spec)
        groups.setdefault((st.snr.shape, round(st.side, 6)), []).append((k, st))
    out = []
    for members in groups.values():
        rows = np.array([k for k, _ in members], np.int64)
        out.append((rows, Stamps(np.concatenate([m.snr for _, m in members]),
                                 np.concatenate([m.fx for _, m in members]),
                                 np.concatenate([m.fy for _, m in members]),
                                 members[0][1].side)))
    return out


def network_inputs(stamps: Stamps, spec: CutoutSpec, angles: np.ndarray | None = None,
                   flips: np.ndarray | None = None,
                   shifts: np.ndarray | None = None) -> np.ndarray:
    """The stamps on the network's grid: ``[N, n, n, 1]`` float32 in [0, 1], each sampled on
    the grid turned by ``angles`` [N] radians (counter-clockwise on the image: a quarter
    turn gives ``np.rot90`` of the view), mirrored where ``flips`` [N] and moved by
    ``shifts`` [N, 2] (x, y) image pixels."""
    from scipy.ndimage import map_coordinates

    n = int(spec.pixels)
    N = len(stamps)
    angles = np.zeros(N) if angles is None else np.asarray(angles, np.float64)
    flips = np.zeros(N, bool) if flips is None else np.asarray(flips, bool)
    shifts = np.zeros((N, 2)) if shifts is None else np.asarray(shifts, np.float64)
    grid = ((np.arange(n) + 0.5) / n - 0.5) * stamps.side
    u, v = np.meshgrid(grid, grid)  # u along x, v along y
    c = 0.5 * (stamps.snr.shape[-1] - 1)
    out = np.empty((N, n, n, 1), np.float32)
    clip = float(spec.clip)
    for i in range(N):
        uu = -u if flips[i] else u
        ca, sa = math.cos(angles[i]), math.sin(angles[i])
        px = c + stamps.fx[i] + shifts[i, 0] + ca * uu - sa * v
        py = c + stamps.fy[i] + shifts[i, 1] + sa * uu + ca * v
        img = map_coordinates(stamps.snr[i], [py, px], order=1, mode="constant", cval=0.0)
        out[i, ..., 0] = _scaled(img, clip)
    return out


def _scaled(snr: np.ndarray, clip: float) -> np.ndarray:
    """Pixels under ``clip`` to 0, the rest ``asinh(s / c) / asinh(max / c)`` with
    ``c = max(clip, 1)``: [0, 1] whatever the source's flux."""
    s = np.where(snr >= clip, snr, 0.0)
    top = float(s.max()) if s.size else 0.0
    if top <= 0.0:
        return np.zeros_like(s, dtype=np.float32)
    c = max(clip, 1.0)
    return (np.arcsinh(s / c) / np.arcsinh(top / c)).astype(np.float32)


def dihedral_inputs(stamps: Stamps, spec: CutoutSpec) -> np.ndarray:
    """The eight turns by quarter turns and mirrors of every stamp (the symmetries of a
    square window): ``[8, N, n, n, 1]``, for predictions averaged over them."""
    N = len(stamps)
    views = []
    for flip in (False, True):
        for k in range(4):
            views.append(network_inputs(stamps, spec, np.full(N, 0.5 * math.pi * k),
                                        np.full(N, flip)))
    return np.stack(views)


def random_views(stamps: Stamps, spec: CutoutSpec, rows: np.ndarray,
                 rng: np.random.Generator, shift_beams: float = 0.5) -> np.ndarray:
    """Training inputs of stamps ``rows``: each turned by a uniform random angle, mirrored
    half of the time and moved by up to ``shift_beams`` beam FWHMs along each axis (a
    catalogue's position need not be the core's: a centroid, a fit's error)."""
    rows = np.asarray(rows, np.int64)
    sub = Stamps(stamps.snr[rows], stamps.fx[rows], stamps.fy[rows], stamps.side)
    m = rows.size
    beam = stamps.side / float(spec.beams)
    return network_inputs(sub, spec, rng.uniform(0.0, 2.0 * math.pi, m),
                          rng.random(m) < 0.5, rng.uniform(-1.0, 1.0, (m, 2)) * shift_beams * beam)
