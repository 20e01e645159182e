"""A noise map that rises around bright sources, where calibration artefacts are.

The residual sidelobes of calibration errors around bright sources (spokes and rings of
either sign) are sparse: a sigma-clipped rms over the usual large boxes (:mod:`.noise`)
clips them away, so the detector sees them as significant and finds false sources there.
PyBDSF's answer is ``adaptive_rms_box``: a smaller box near bright sources.  Ours, with
the same names for the knobs:

* bright sources: the islands (pixels above ``island_snr`` times the local rms, connected)
  whose peak reaches ``thresh`` times it (PyBDSF's ``adaptive_thresh``);
* within ``reach`` beam FWHMs of each, the rms on a finer grid (every ``step`` pixels) of
  the pixels of a ``box``-pixel box around each grid point (PyBDSF's ``rms_box_bright``),
  bright islands left out and **not** clipped, so that the artefacts count as noise;
* the map there is the larger of that and the large-box map (it only ever rises); elsewhere
  the large-box map as it was, on the finer grid.

Sources near bright ones are then found and measured against the noise they sit in (their
``snr`` falls, and the detector, which sees the image in units of this rms, finds fewer
artefacts).  On an image without artefacts the raised rms near bright sources costs a few
faint real sources there, as PyBDSF's does: the option is off by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from ..progress import Progress
from .flags import BRIGHT_RADIUS, BRIGHT_SNR
from .noise import NoiseMap, box_edges

__all__ = ["AdaptiveRms", "adaptive_beam", "adaptive_noise_map", "bright_peaks", "ISLAND_SNR", "BOX_BEAMS",
           "MAX_CELLS"]

#: a bright source's island: its pixels above this many times the local rms, connected
ISLAND_SNR = 5.0
#: the small box's default size in beam FWHMs (PyBDSF's LoTSS settings: 40 px of a 4 px beam)
BOX_BEAMS = 10.0
#: the finer grid has at most this many cells along an axis (its step grows on huge images)
MAX_CELLS = 4096
#: pixels read at a time while looking for bright sources
_BLOCK = 2048


@dataclass(frozen=True)
class AdaptiveRms:
    """How the noise map rises around bright sources (PyBDSF's ``adaptive_rms_box``).

    ``thresh``: a bright source's peak SNR against the large-box map (PyBDSF's
    ``adaptive_thresh``); ``box``/``step``: the small box and the finer grid's spacing in
    pixels (PyBDSF's ``rms_box_bright``; default ``BOX_BEAMS`` beam FWHMs and a third of the
    box); ``reach``: how far from a bright source, in beam FWHMs, the small boxes are used.
    """

    thresh: float = BRIGHT_SNR
    box: float | None = None
    step: float | None = None
    reach: float = BRIGHT_RADIUS

    def __post_init__(self) -> None:
        for name in ("thresh", "reach", "box", "step"):
            v = getattr(self, name)
            if v is not None or name in ("thresh", "reach"):
                as_bounded_float(v, f"adaptive_rms: {name}")
        if self.thresh <= ISLAND_SNR:
            raise ValueError(f"adaptive_rms: thresh must exceed the islands' {ISLAND_SNR:g} "
                             f"sigma; received {self.thresh!r}")

    def sizes(self, beam_fwhm: float, shape: tuple[int, int]) -> tuple[int, int, float]:
        """(box, step, reach) in pixels for a beam of ``beam_fwhm`` pixels on an image of
        ``shape``: the step at least ``max(shape) / MAX_CELLS``, the box at least the
        step."""
        box = self.box if self.box is not None else BOX_BEAMS * beam_fwhm
        step = self.step if self.step is not None else box / 3.0
        step = max(1, round(step), math.ceil(max(shape) / MAX_CELLS))
        box = max(3, round(box), step)
        return int(box), int(step), float(self.reach * beam_fwhm)

    def summary(self, beam_fwhm: float, shape: tuple[int, int], n_bright: int) -> dict:
        """The settings as a catalogue's metadata records them (``adaptive_rms``)."""
        box, step, reach = self.sizes(beam_fwhm, shape)
        return {"thresh": float(self.thresh), "box_pixels": box, "step_pixels": step,
                "reach_beams": float(self.reach), "reach_pixels": round(reach, 3),
                "bright_sources": int(n_bright)}


def _snr(a: np.ndarray, noise: NoiseMap, ys: slice, xs: slice) -> np.ndarray:
    return (a - noise.window(ys, xs, "background")) / noise.window(ys, xs, "rms")


def bright_peaks(read: Callable[[tuple[slice, ...]], np.ndarray], shape: tuple[int, int],
                 noise: NoiseMap, thresh: float, *, merge_radius: float = 2.0
                 ) -> np.ndarray:
    """``[n, 3]`` (y, x, snr) of the peaks of the image's pixels above ``thresh`` times the
    local rms (one per connected group, brightest first; peaks within ``merge_radius``
    pixels of a brighter one, a group cut by the blocks the image is read in, dropped)."""
    from scipy import ndimage

    H, W = shape
    out = []
    for y0 in range(0, H, _BLOCK):
        for x0 in range(0, W, _BLOCK):
            ys, xs = slice(y0, min(y0 + _BLOCK, H)), slice(x0, min(x0 + _BLOCK, W))
            s = _snr(np.asarray(read((ys, xs)), np.float64), noise, ys, xs)
            s = np.where(np.isfinite(s), s, -np.inf)  # (a blank or infinite pixel: none)
            hot = s >= thresh
            if not hot.any():
                continue
            lab, n = ndimage.label(hot)
            idx = np.arange(1, n + 1)
            for (py, px), v in zip(ndimage.maximum_position(s, lab, idx),
                                   ndimage.maximum(s, lab, idx), strict=True):
                out.append((py + y0, px + x0, float(v)))
    if not out:
        return np.zeros((0, 3))
    p = np.array(sorted(out, key=lambda r: -r[2]), np.float64)
    keep = []
    for k in range(len(p)):
        if not keep or np.min(np.hypot(*(p[keep, :2] - p[k, :2]).T)) > merge_radius:
            keep.append(k)
    return p[keep]


def _box_sums(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, half: int) -> np.ndarray:
    """Sums of ``values`` over the boxes ``[y - half, y + half] x [x - half, x + half]``
    (clipped to the array) around the points ``(ys, xs)`` (integers), by an integral
    image."""
    c = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    c[1:, 1:] = values.cumsum(0).cumsum(1)
    h, w = values.shape
    y0, y1 = np.clip(ys - half, 0, h), np.clip(ys + half + 1, 0, h)
    x0, x1 = np.clip(xs - half, 0, w), np.clip(xs + half + 1, 0, w)
    return c[y1, x1] - c[y0, x1] - c[y1, x0] + c[y0, x0]


def _zone_rms(read, noise: NoiseMap, peak: np.ndarray, thresh: float, box: int,
              reach: float, cy: np.ndarray, cx: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, rms) of the finer grid's cells within ``reach`` of one bright peak:
    the unclipped rms about the background of the pixels of each cell's box, the bright
    islands of the window left out (NaN where fewer than a fifth of a box's pixels are
    left)."""
    from scipy import ndimage

    H, W = noise.shape[-2:]
    py, px = peak[0], peak[1]
    rows = np.flatnonzero(np.abs(cy - py) <= reach)
    cols = np.flatnonzero(np.abs(cx - px) <= reach)
    gi, gj = np.meshgrid(rows, cols, indexing="ij")
    inside = (cy[gi] - py) ** 2 + (cx[gj] - px) ** 2 <= reach ** 2
    gi, gj = gi[inside], gj[inside]
    half = box // 2
    m = int(math.ceil(reach)) + half + 1
    ys = slice(max(0, int(py) - m), min(H, int(py) + m + 1))
    xs = slice(max(0, int(px) - m), min(W, int(px) + m + 1))
    a = np.asarray(read((ys, xs)), np.float64)
    s = _snr(a, noise, ys, xs)
    lab, n = ndimage.label(np.nan_to_num(s, nan=-np.inf) > ISLAND_SNR)
    if n:
        top = ndimage.maximum(s, lab, np.arange(1, n + 1))
        bright = np.concatenate([[False], np.asarray(top) >= thresh])
        use = np.isfinite(s) & ~bright[lab]
    else:
        use = np.isfinite(s)
    v = np.where(use, a - noise.window(ys, xs, "background"), 0.0)
    iy = np.rint(cy[gi]).astype(np.int64) - ys.start
    ix = np.rint(cx[gj]).astype(np.int64) - xs.start
    count = _box_sums(use.astype(np.float64), iy, ix, half)
    sq = _box_sums(v * v, iy, ix, half)
    enough = count >= max(16.0, 0.2 * (2 * half + 1) ** 2)
    rms = np.where(enough, np.sqrt(sq / np.maximum(count, 1.0)), np.nan)
    return gi, gj, rms


def adaptive_beam(rule: object, image: Any) -> float:
    """The beam's major-axis FWHM in pixels of a :class:`.fits_image.FitsImage` that an
    adaptive map can be made for (checked before any work): ``rule`` an
    :class:`AdaptiveRms`, the image 2D with a beam, else TypeError / ValueError."""
    if not isinstance(rule, AdaptiveRms):
        raise TypeError(f"adaptive_rms: expected an AdaptiveRms (or None), received "
                        f"{type(rule).__name__}")
    if image.ndim != 2:
        raise ValueError(f"adaptive_rms: 2D images only (a cube's detection uses one noise "
                         f"map per channel), received shape {tuple(image.shape)}")
    fwhm = image.beam_fwhm_pixels()
    if fwhm is None:
        raise ValueError(f"adaptive_rms: {image.path} has no beam (BMAJ, BMIN and a pixel "
                         f"scale), which sets the reach around bright sources and the small "
                         f"box; give the beam")
    return float(fwhm[0])


def adaptive_noise_map(read: Callable[[tuple[slice, ...]], np.ndarray],
                       shape: tuple[int, ...], noise: NoiseMap, rule: AdaptiveRms,
                       beam_fwhm: float | None, *, progress: bool = False) -> NoiseMap:
    """``noise`` (the large-box map of the 2D image ``shape`` that ``read`` reads) on a finer
    grid, raised within ``rule.reach`` beams of the image's bright sources to the rms of the
    small boxes there (see the module's note); ``beam_fwhm`` the beam's major-axis FWHM in
    pixels.  The result records its settings and the bright sources' count in
    ``adaptive``.  Raises ValueError for a cube, an image without a beam, or a map of
    another shape."""
    if len(shape) != 2:
        raise ValueError(f"adaptive_rms: 2D images only (the detection image of a cube is "
                         f"its channels), received shape {tuple(shape)}")
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise: a map of shape {tuple(noise.shape)} for an image of "
                         f"shape {tuple(shape)}")
    if beam_fwhm is None or not (math.isfinite(beam_fwhm) and beam_fwhm > 0):
        raise ValueError("adaptive_rms: the image has no beam (BMAJ, BMIN and a pixel "
                         "scale), which sets the reach around bright sources; give the "
                         "beam")
    if noise.adaptive is not None:
        raise ValueError("noise: already an adaptive map")
    H, W = (int(s) for s in shape)
    box, step, reach = rule.sizes(float(beam_fwhm), (H, W))
    ey, ex = box_edges(H, step), box_edges(W, step)
    cy = 0.5 * (ey[:-1] + ey[1:]) - 0.5
    cx = 0.5 * (ex[:-1] + ex[1:]) - 0.5
    fine = noise.resampled(cy, cx)
    peaks = bright_peaks(read, (H, W), noise, float(rule.thresh),
                         merge_radius=max(2.0, float(beam_fwhm)))
    rms = fine.rms.copy()
    bar = Progress(len(peaks), "adaptive rms", enabled=progress, unit="source")
    for p in peaks:
        gi, gj, local = _zone_rms(read, noise, p, float(rule.thresh), box, reach, cy, cx)
        ok = np.isfinite(local)
        rms[gi[ok], gj[ok]] = np.maximum(rms[gi[ok], gj[ok]], local[ok])
        bar.update(1)
    bar.close()
    return replace(fine, rms=rms, adaptive=rule.summary(float(beam_fwhm), (H, W), len(peaks)))
