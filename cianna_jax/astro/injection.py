"""Source injection: a detector's completeness, flux recovery and its own false detections
around sources, measured on the user's image with no truth.

Artificial sources (Gaussians: the restoring beam for point sources, or the beam convolved
with a size) are added to the image's pixels (:meth:`.FitsImage.with_sources`; the file is
not touched) at random places, far from each other, and the detector runs again with the
same model, threshold and noise map.  What comes back answers what survey papers measure
this way (e.g. LoTSS, Shimwell et al. 2019; Hale et al. 2021, for PyBDSF):

* completeness per bin of injected SNR (peak / local rms): the fraction found within one
  FWHM of where a source was put (Wilson's 1-sigma interval);
* flux and position recovery: measured / injected flux (flux boosting near the detection
  limit) and the offset;
* the detector's own errors around sources: detections of the injected run that are
  neither an injected source nor one of the image's own detections, each given to the
  nearest injected source within :data:`ATTRIBUTION_BEAMS` FWHM.  The inverted-image test
  (:mod:`.reliability`) cannot see these (a source boxed twice, a fragment); here they
  are counted per injected source, and :meth:`InjectionResult.expected_spurious` turns the
  rate into the number expected among a catalogue's sources.

Sources put within one match radius of the image's own detections are kept in the table
(``near_source``) but not scored: there a detection cannot be told from the real one.
The injected sources are isolated point-like or Gaussian sources; real complex sources
fragment more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .crossmatch import crossmatch_pixels
from .fits_image import FitsImage
from .measure import FWHM
from .reliability import SNR_EDGES as RELIABILITY_EDGES
from .sky import convolve

__all__ = ["SNR_EDGES", "ATTRIBUTION_BEAMS", "InjectedSources", "InjectionScores",
           "place_sources", "wilson_interval", "score_injection", "flux_edges",
           "flux_unit", "fragment_rates", "FragmentRates", "checked_line_widths",
           "RoundMatch", "match_round"]

#: bins of injected SNR (peak / local rms) the completeness is given in
SNR_EDGES = (2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0,
             100.0, 1000.0)
#: a spurious detection further than this many FWHM from every injected source is counted
#: as ``unattributed``
ATTRIBUTION_BEAMS = 3.0
#: a Gaussian's pixels are drawn out to this many sigmas of its major axis
REACH_SIGMAS = 5.0


@dataclass(frozen=True)
class InjectedSources:
    """Elliptical Gaussians to add to an image: centres ``x``, ``y`` (pixels, 0-based pixel
    centres), ``peak`` in the image file's unit (what :meth:`.FitsImage.read` gives),
    ``sigma_major``/``sigma_minor`` (pixels) and ``theta`` (radians, major axis from +x
    towards +y).  For a cube, ``z`` (channel) and ``sigma_z`` (channels) give each a
    Gaussian line: the voxels are the sky Gaussian times the line's profile.  Pixels are
    the Gaussian at their centres."""

    x: np.ndarray
    y: np.ndarray
    peak: np.ndarray
    sigma_major: np.ndarray
    sigma_minor: np.ndarray
    theta: np.ndarray
    z: np.ndarray | None = None
    sigma_z: np.ndarray | None = None

    def __len__(self) -> int:
        return int(np.size(self.x))

    @property
    def ndim(self) -> int:
        """2 for sources on an image, 3 for lines in a cube."""
        return 2 if self.z is None else 3

    def _values(self, k: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.theta[k]), math.sin(self.theta[k])
        dx, dy = xx - self.x[k], yy - self.y[k]
        u, v = dx * c + dy * s, -dx * s + dy * c
        return self.peak[k] * np.exp(-0.5 * ((u / self.sigma_major[k]) ** 2
                                             + (v / self.sigma_minor[k]) ** 2))

    def _profile(self, k: int, zz: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((zz - self.z[k]) / self.sigma_z[k]) ** 2)

    def render(self, window: tuple | None, shape: tuple[int, ...]) -> np.ndarray:
        """The sources' pixels on ``window`` of an image of ``shape`` ``(H, W)`` (or voxels of
        a cube ``(D, H, W)``, for lines): a tuple of slices (any step; ``None``: everything)
        gives ``[ny, nx]`` (``[nz, ny, nx]``); a tuple of integer index arrays (points) gives
        their broadcast shape."""
        nd = self.ndim
        window = (slice(None),) * nd if window is None else tuple(window)
        if len(window) != nd or len(shape) < nd:
            raise ValueError(f"window: these sources are drawn on {nd}D images, received "
                             f"{len(window)} axes")
        reach = REACH_SIGMAS * np.asarray(self.sigma_major, np.float64)
        zreach = None if nd == 2 else REACH_SIGMAS * np.asarray(self.sigma_z, np.float64)
        if all(isinstance(w, slice) for w in window):
            axes = [np.arange(*w.indices(int(n)), dtype=np.float64)
                    for w, n in zip(window, shape[-nd:])]
            out = np.zeros(tuple(a.size for a in axes), np.float32)
            if out.size == 0:
                return out
            ys, xs = axes[-2], axes[-1]
            near = ((self.y + reach >= ys.min()) & (self.y - reach <= ys.max())
                    & (self.x + reach >= xs.min()) & (self.x - reach <= xs.max()))
            if nd == 3:
                zs = axes[0]
                near &= (self.z + zreach >= zs.min()) & (self.z - zreach <= zs.max())
            for k in np.flatnonzero(near):
                iy = np.flatnonzero(np.abs(ys - self.y[k]) <= reach[k])
                ix = np.flatnonzero(np.abs(xs - self.x[k]) <= reach[k])
                if not (iy.size and ix.size):
                    continue
                sky = self._values(k, ys[iy][:, None], xs[ix][None, :])
                if nd == 2:
                    out[iy[:, None], ix[None, :]] += sky.astype(np.float32)
                    continue
                iz = np.flatnonzero(np.abs(zs - self.z[k]) <= zreach[k])
                if iz.size:
                    out[iz[:, None, None], iy[None, :, None], ix[None, None, :]] += (
                        self._profile(k, zs[iz])[:, None, None] * sky[None]).astype(np.float32)
            return out
        pts = np.broadcast_arrays(*(np.asarray(w, np.float64) for w in window))
        yy, xx = pts[-2], pts[-1]
        out = np.zeros(yy.shape, np.float32)
        for k in range(len(self)):
            m = (np.abs(yy - self.y[k]) <= reach[k]) & (np.abs(xx - self.x[k]) <= reach[k])
            if nd == 3:
                m &= np.abs(pts[0] - self.z[k]) <= zreach[k]
            if m.any():
                v = self._values(k, yy[m], xx[m])
                if nd == 3:
                    v = v * self._profile(k, pts[0][m])
                out[m] += v.astype(np.float32)
        return out


def _spaced(cand: np.ndarray, taken: np.ndarray, separation: float, want: int) -> np.ndarray:
    """Of the candidate points ``[n, 2]`` in order, those at least ``separation`` from the
    ``taken`` ones and from each other (at most ``want``): a k-d tree drops those too close
    to ``taken``, a grid of ``separation``-wide cells checks the rest against each other."""
    from scipy.spatial import cKDTree

    if len(taken) and len(cand):
        d, _ = cKDTree(taken).query(cand, distance_upper_bound=separation)
        idx = np.flatnonzero(d >= separation)
    else:
        idx = np.arange(len(cand))
    keep: list[int] = []
    grid: dict[tuple[int, int], list[int]] = {}
    s2 = separation * separation
    for i in idx:
        if len(keep) >= want:
            break
        x, y = cand[i]
        cx, cy = int(x // separation), int(y // separation)
        if any((cand[j, 0] - x) ** 2 + (cand[j, 1] - y) ** 2 < s2
               for gx in (cx - 1, cx, cx + 1) for gy in (cy - 1, cy, cy + 1)
               for j in grid.get((gx, gy), ())):
            continue
        keep.append(int(i))
        grid.setdefault((cx, cy), []).append(int(i))
    return np.asarray(keep, np.int64)


def place_sources(image: FitsImage, n: int, separation: float, margin: float,
                  rng: np.random.Generator, *, z_margin: float = 0.0,
                  max_tries: int = 50) -> np.ndarray:
    """At most ``n`` positions ``[m, 2]`` (x, y in pixels) drawn uniformly over the image,
    at least ``margin`` pixels inside its edges, at least ``separation`` pixels apart on
    the sky, with every pixel within ``margin`` finite (not blank): one round of
    injection.  A cube's positions are ``[m, 3]`` (x, y, z), the channel ``z`` drawn
    uniformly at least ``z_margin`` channels inside its ends, the voxels within the
    margins finite."""
    H, W = image.shape[-2:]
    if W - 1 - 2 * margin <= 0 or H - 1 - 2 * margin <= 0:
        raise ValueError(f"image: {W}x{H} pixels leave no room for sources {margin:.1f} "
                         "pixels inside its edges")
    cube = image.ndim == 3
    D = image.shape[0] if cube else 1
    if cube and D - 1 - 2 * z_margin < 0:
        raise ValueError(f"image: {D} channels leave no room for lines {z_margin:.1f} "
                         "channels inside its ends")
    rz = int(math.ceil(z_margin))
    out = np.zeros((0, 2))
    r = int(math.ceil(margin))
    # candidates per try: a few per source wanted, and no more than a few per place the
    # area has room for (a huge ``n`` fills rounds, not memory)
    room = int((W - 1 - 2 * margin) * (H - 1 - 2 * margin) / separation**2) + 16
    for _ in range(max_tries):
        if len(out) >= n:
            break
        m = 4 * min(n - len(out), room)
        cand = np.stack([rng.uniform(margin, W - 1 - margin, m),
                         rng.uniform(margin, H - 1 - margin, m)], 1)
        pick = cand[_spaced(cand, out[:, :2], separation, n - len(out))]
        if len(pick) == 0:  # the round is full
            break
        if cube:
            pick = np.concatenate([pick, rng.uniform(z_margin, D - 1 - z_margin,
                                                     (len(pick), 1))], 1)
        ok = np.ones(len(pick), bool)
        for i, p in enumerate(pick):
            ix, iy = int(round(p[0])), int(round(p[1]))
            win = (slice(max(iy - r, 0), iy + r + 1), slice(max(ix - r, 0), ix + r + 1))
            if cube:
                iz = int(round(p[2]))
                win = (slice(max(iz - rz, 0), iz + rz + 1),) + win
            ok[i] = bool(np.isfinite(image.read(win)).all())
        out = np.concatenate([out, pick[ok]]) if len(out) else pick[ok]
    return out[:n]


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval (``z`` sigmas) of the fractions ``k / n`` (NaN where n = 0)."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        d = 1 + z * z / n
        c = (p + z * z / (2 * n)) / d
        h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


@dataclass(frozen=True)
class InjectionScores:
    """Per bin of injected SNR or flux (``edges``): ``n`` scored sources (not ``near_source``),
    ``n_found``, ``completeness`` with its Wilson interval (``lo``, ``hi``), the measured /
    injected flux ratio's median and 16th/84th percentiles (found sources), the median
    offset in FWHM, and ``n_spurious`` (the detector's new detections given to the bin's
    sources) with ``spurious_rate`` = n_spurious / n."""

    edges: np.ndarray
    n: np.ndarray
    n_found: np.ndarray
    flux_ratio: np.ndarray
    flux_ratio_lo: np.ndarray
    flux_ratio_hi: np.ndarray
    offset_beams: np.ndarray
    n_spurious: np.ndarray

    @property
    def completeness(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.n_found / self.n

    @property
    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        return wilson_interval(self.n_found, self.n)

    @property
    def spurious_rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.n_spurious / self.n

    def at_completeness(self, completeness: float) -> float:
        """The injected SNR (or flux) where the completeness first reaches
        ``completeness`` (linear between bin middles, geometric in the quantity); NaN when
        it never does."""
        c = self.completeness
        mid = np.sqrt(self.edges[:-1] * self.edges[1:])
        ok = np.isfinite(c)
        c, mid = c[ok], mid[ok]
        above = np.flatnonzero(c >= completeness)
        if above.size == 0:
            return float("nan")
        i = int(above[0])
        if i == 0:
            return float(mid[0])
        t = (completeness - c[i - 1]) / (c[i] - c[i - 1])
        return float(np.exp(np.log(mid[i - 1]) + t * (np.log(mid[i]) - np.log(mid[i - 1]))))

    def summary(self) -> dict[str, Any]:
        """Plain lists (JSON reports, the table's metadata)."""
        lo, hi = self.interval

        def fl(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]
        return {"snr_edges": [float(e) for e in self.edges], "n": [int(v) for v in self.n],
                "n_found": [int(v) for v in self.n_found], "completeness": fl(self.completeness),
                "completeness_lo": fl(lo), "completeness_hi": fl(hi),
                "flux_ratio": fl(self.flux_ratio), "flux_ratio_lo": fl(self.flux_ratio_lo),
                "flux_ratio_hi": fl(self.flux_ratio_hi), "offset_beams": fl(self.offset_beams),
                "n_spurious": [int(v) for v in self.n_spurious],
                "at_50": self.at_completeness(0.5), "at_90": self.at_completeness(0.9)}


@dataclass(frozen=True)
class RoundMatch:
    """One round's outcome: per injected source, its detection's row in the injected run's
    catalogue (-1: none) and ``near_source``; per new detection (neither injected nor the
    image's own), its row and the injected source it is given to (-1: none within
    :data:`ATTRIBUTION_BEAMS` FWHM); ``lost``: the rows of the image's own detections
    not found again."""

    found_row: np.ndarray
    near_source: np.ndarray
    spurious_rows: np.ndarray
    spurious_source: np.ndarray
    lost: np.ndarray

    @property
    def n_lost(self) -> int:
        return int(self.lost.size)


def _pixels_match(det: np.ndarray, ref: np.ndarray, radius: np.ndarray | float,
                  z_radius: np.ndarray | None):
    """One-to-one match of positions ``[n, 2]`` (or ``[n, 3]`` with channels, pairs then
    also within ``z_radius`` channels of the reference) on the sky within ``radius``."""
    ok = None
    if z_radius is not None and det.shape[1] == 3 and len(ref):
        zr = np.broadcast_to(np.asarray(z_radius, np.float64), (len(ref),))

        def ok(di, ti):
            return np.abs(det[di, 2] - ref[ti, 2]) <= zr[ti]
    return crossmatch_pixels(det[:, 0], det[:, 1], ref[:, 0], ref[:, 1], radius, pair_ok=ok)


def match_round(src_xy: np.ndarray, radius: np.ndarray, own_xy: np.ndarray,
                run_xy: np.ndarray, beam_fwhm: float,
                z_radius: np.ndarray | None = None) -> RoundMatch:
    """Match an injected run's detections (``run_xy`` ``[m, 2]`` pixels) to the injected
    sources (``src_xy``, match ``radius`` each) first, then to the image's own detections
    (``own_xy``, within one ``beam_fwhm``); what is left is new.  In a cube the positions
    hold a third column, the channel, and ``z_radius`` (channels, one per injected source)
    bounds a pair's distance along it (the largest for the image's own detections); a new
    detection goes to the nearest source within :data:`ATTRIBUTION_BEAMS` FWHM and as many
    ``z_radius``."""
    from scipy.spatial import cKDTree

    n_src = len(src_xy)
    zr = None if z_radius is None else np.asarray(z_radius, np.float64)
    z_own = None if zr is None or zr.size == 0 else float(np.max(zr))
    near = np.zeros(n_src, bool)
    if len(own_xy) and n_src:  # any own detection within the source's radius (and channels)
        tree = cKDTree(own_xy[:, :2])
        if zr is None:
            d, _ = tree.query(src_xy[:, :2])
            near = d <= radius
        else:
            found = tree.query_ball_point(src_xy[:, :2], r=np.asarray(radius, np.float64))
            near = np.array([bool(np.any(np.abs(own_xy[j, 2] - src_xy[i, 2]) <= zr[i]))
                             if j else False for i, j in enumerate(map(list, found))])
    m1 = _pixels_match(run_xy, src_xy, radius, zr)
    rest = np.flatnonzero(m1.det_to_truth < 0)
    m2 = _pixels_match(run_xy[rest], own_xy, beam_fwhm, z_own)
    new = rest[m2.det_to_truth < 0]
    # lost: an own detection with no detection of the run left near it (one that went to
    # an injected source on top of it counts as still there)
    lost = np.flatnonzero(_pixels_match(run_xy, own_xy, beam_fwhm, z_own).truth_to_det < 0)
    owner = np.full(new.size, -1, np.int64)
    if new.size and n_src and zr is None:
        d, k = cKDTree(src_xy).query(run_xy[new])
        owner = np.where(d <= ATTRIBUTION_BEAMS * beam_fwhm, k, -1)
    elif new.size and n_src:  # in FWHM on the sky and z_radius along the channels
        d = np.hypot(np.hypot(run_xy[new, None, 0] - src_xy[None, :, 0],
                              run_xy[new, None, 1] - src_xy[None, :, 1]) / beam_fwhm,
                     (run_xy[new, None, 2] - src_xy[None, :, 2]) / zr[None, :])
        k = np.argmin(d, 1)
        owner = np.where(d[np.arange(new.size), k] <= ATTRIBUTION_BEAMS, k, -1)
    return RoundMatch(m1.truth_to_det, near, new, owner, lost)


def flux_edges(flux: np.ndarray, per_decade: int = 5) -> np.ndarray:
    """Bins of injected flux: ``per_decade`` per decade on round values (1, 1.6, 2.5, 4,
    6.3 x 10^k), covering every positive ``flux``."""
    f = np.asarray(flux, np.float64)
    f = f[np.isfinite(f) & (f > 0)]
    if f.size == 0:
        return np.array([1.0, 10.0])
    lo = math.floor(np.log10(f.min()) * per_decade)
    hi = math.floor(np.log10(f.max()) * per_decade) + 1
    return 10.0 ** (np.arange(lo, hi + 1) / per_decade)


def flux_unit(edges: np.ndarray) -> tuple[float, str]:
    """The scale and name of the unit (uJy, mJy or Jy) that shows fluxes of ``edges`` (Jy)
    with few digits."""
    top = float(np.max(edges)) if np.size(edges) else 1.0
    return (1e6, "uJy") if top < 1e-3 else (1e3, "mJy") if top < 1.0 else (1.0, "Jy")


def fragment_rates(parent_snr: np.ndarray, scored: np.ndarray, spurious_parent: np.ndarray,
                   spurious_snr: np.ndarray, parent_edges: np.ndarray,
                   out_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detector's new detections around injected sources as rates: ``counts[s, b]``,
    those given to a scored source of injected SNR bin ``s`` (``parent_edges``) whose own
    measured SNR falls in bin ``b`` (``out_edges``), and ``n[s]``, the scored sources of
    bin ``s``.  ``spurious_parent``: each new detection's source row (-1: none, not
    counted)."""
    pe, oe = np.asarray(parent_edges, np.float64), np.asarray(out_edges, np.float64)
    bs = np.digitize(np.asarray(parent_snr, np.float64), pe) - 1
    ok = np.asarray(scored, bool) & (bs >= 0) & (bs < pe.size - 1)
    n = np.bincount(bs[ok], minlength=pe.size - 1)
    counts = np.zeros((pe.size - 1, oe.size - 1))
    par = np.asarray(spurious_parent, np.int64)
    snr = np.asarray(spurious_snr, np.float64)
    keep = (par >= 0) & np.isfinite(snr)
    keep[keep] = ok[par[keep]]
    bo = np.clip(np.digitize(snr[keep], oe) - 1, 0, oe.size - 2)
    np.add.at(counts, (bs[par[keep]], bo), 1.0)
    return counts, n


@dataclass(frozen=True)
class FragmentRates:
    """The detector's new detections around injected sources as rates (:func:`fragment_rates`):
    ``counts[s, b]`` given to scored sources of injected SNR bin ``s`` (``parent_edges``)
    and measured in SNR bin ``b`` (``out_edges``), ``n[s]`` the scored sources of bin ``s``;
    measured once on an image, they apply to the catalogues of images like it."""

    parent_edges: np.ndarray
    out_edges: np.ndarray
    counts: np.ndarray
    n: np.ndarray

    @classmethod
    def from_injection(cls, snr_in: np.ndarray, scored: np.ndarray,
                       spurious_parent: np.ndarray, spurious_snr: np.ndarray,
                       parent_edges: Any = SNR_EDGES, out_edges: Any = None) -> FragmentRates:
        """From an injection's sources (``snr_in``, ``scored``) and new detections (their
        source rows, -1: none, and measured SNRs); ``out_edges``: the bins of the
        reliability estimate they go to (default :data:`.reliability.SNR_EDGES`'s)."""
        pe = np.asarray(parent_edges, np.float64)
        oe = np.asarray(RELIABILITY_EDGES if out_edges is None else out_edges, np.float64)
        counts, n = fragment_rates(snr_in, scored, spurious_parent, spurious_snr, pe, oe)
        return cls(pe, oe, counts, n)

    def expected(self, snr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The new detections expected around a catalogue's sources of measured ``snr``, per
        bin of ``out_edges``, with 1-sigma Poisson errors: each source brings those seen per
        injected source of its SNR bin, where they fell in SNR (sources below the injected
        range bring none, those above it the last bin's; a bin without injected sources
        takes its nearest neighbour's)."""
        s = np.asarray(snr, np.float64)
        pe, nb = self.parent_edges, self.out_edges.size - 1
        has = np.flatnonzero(self.n > 0)
        if has.size == 0 or s.size == 0:
            return np.zeros(nb), np.zeros(nb)
        b = np.digitize(s[np.isfinite(s)], pe) - 1
        b = np.clip(b[b >= 0], 0, pe.size - 2)
        parents = np.bincount(b, minlength=pe.size - 1).astype(np.float64)
        near = has[np.argmin(np.abs(np.arange(pe.size - 1)[:, None] - has[None, :]), 1)]
        w = parents / self.n[near]  # catalogue sources per injected source, bin by bin
        return w @ self.counts[near], np.sqrt((w**2) @ self.counts[near])


def score_injection(values: np.ndarray, scored: np.ndarray, found: np.ndarray,
                    flux_ratio: np.ndarray, offset_beams: np.ndarray, n_spurious: np.ndarray,
                    edges: tuple[float, ...] | np.ndarray = SNR_EDGES) -> InjectionScores:
    """Per-bin scores of injected sources, binned by ``values`` (their injected SNR, or
    flux) on ``edges``: whether ``scored`` (not near a source of the image) and ``found``,
    the found ones' flux ratio and offset, and the spurious detections given to each."""
    e = np.asarray(edges, np.float64)
    b = np.digitize(np.asarray(values, np.float64), e) - 1
    nb = e.size - 1
    inside = scored & (b >= 0) & (b < nb)
    stats = np.full((4, nb), np.nan)
    n = np.zeros(nb, np.int64)
    nf = np.zeros(nb, np.int64)
    ns = np.zeros(nb, np.int64)
    for i in range(nb):
        sel = inside & (b == i)
        n[i], ns[i] = np.count_nonzero(sel), int(np.sum(n_spurious[sel]))
        got = sel & found
        nf[i] = np.count_nonzero(got)
        if nf[i]:
            stats[:3, i] = np.percentile(flux_ratio[got], [50, 16, 84])
            stats[3, i] = np.median(offset_beams[got])
    return InjectionScores(e, n, nf, stats[0], stats[1], stats[2], stats[3], ns)


def _check_range(value: Any, name: str, *, low: float, example: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: two numbers (low, high), e.g. {example}; received "
                         f"{value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and low <= a <= b):
        raise ValueError(f"{name}: finite, {low:g} <= low <= high, e.g. {example}; received "
                         f"{value!r}")
    return a, b


def checked_settings(n_sources: Any, snr_range: Any, size_range: Any,
                     separation: Any) -> tuple[int, tuple[float, float], tuple[float, float], float]:
    """The injection's settings checked (ValueError/TypeError naming the bad one)."""
    n = as_int(n_sources, "n_sources", minimum=1)
    snr = _check_range(snr_range, "snr_range", low=0.0, example="(2, 50)")
    if snr[0] <= 0:
        raise ValueError(f"snr_range: SNRs above 0, e.g. (2, 50); received {snr_range!r}")
    size = _check_range((0.0, 0.0) if size_range is None else size_range, "size_range",
                        low=0.0, example="(0, 10) arcsec")
    sep = as_bounded_float(separation, "separation")
    return n, snr, size, sep


def checked_line_widths(value: Any) -> tuple[float, float]:
    """A line width range (FWHM, channels) checked: two numbers, 0 < low <= high."""
    lo, hi = _check_range(value, "line_width_range", low=0.0, example="(3, 12) channels")
    if lo <= 0:
        raise ValueError(f"line_width_range: widths above 0 channels, e.g. (3, 12); received "
                         f"{value!r}")
    return lo, hi


def draw_shapes(n: int, beam: tuple[float, float, float], size_range: tuple[float, float],
                pixel_scale: float, rng: np.random.Generator,
                extended_fraction: float = 1.0) -> tuple[np.ndarray, ...]:
    """Shapes of ``n`` sources on the image: for a random ``extended_fraction`` of them
    intrinsic FWHM majors uniform in ``size_range`` (arcsec; (0, 0): point sources), the
    others point sources; axis ratios uniform in [0.5, 1], random orientations; each
    convolved with the ``beam`` (sigma_major, sigma_minor, theta in pixels and radians).
    Returns sigma_major, sigma_minor, theta of the observed Gaussians and the intrinsic
    FWHM majors (arcsec)."""
    bmaj, bmin, bth = beam
    size = rng.uniform(*size_range, n) if size_range[1] > 0 else np.zeros(n)
    if extended_fraction < 1.0:  # (drawn only then: the default keeps its random stream)
        size = np.where(rng.random(n) < extended_fraction, size, 0.0)
    ratio = rng.uniform(0.5, 1.0, n)
    th = rng.uniform(0.0, np.pi, n)
    s1 = size / pixel_scale / FWHM
    smaj, smin, theta = convolve(s1, s1 * ratio, th, bmaj, bmin, bth)
    return smaj, smin, theta, size
