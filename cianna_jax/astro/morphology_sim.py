"""Synthetic radio morphologies with known classes: training and test data for a
morphology classifier (:mod:`.morphology`).

Each source is a sum of elliptical Gaussian components on the sky, drawn in units of
the restoring beam's FWHM and convolved with the beam analytically (covariances add),
so the image is exact in Jy/beam at any sampling:

- ``compact``: unresolved, one point component;
- ``sfg``: a resolved star-forming galaxy, one elliptical Gaussian of 1-3 beams;
- ``fr1``: Fanaroff-Riley class I, edge-darkened: a bright core and two jets of ten
  components each, fading outwards and widening, possibly bent;
- ``fr2``: Fanaroff-Riley class II, edge-brightened: a faint core and two lobes, each a
  compact hotspot at its outer end and a diffuse body behind it.

The radio galaxies' largest angular sizes are drawn in ``las_beams`` (3-10 beams by
default), their position angles uniformly. :func:`morphology_field` places sources of
all classes on an image with correlated noise and returns its truth table
(``morphology``, ``las`` in arcsec, ``flux`` in Jy, ...); :func:`morphology_cutouts`
draws single sources on small windows for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from ..datasets.radio_sky import correlated_noise
from ._deps import require
from .fits_image import Beam
from .sky import pixel_angle_to_pa, pixel_to_sky
from .synthetic import field_header

__all__ = ["MORPHOLOGIES", "PAIR", "LABELS", "Components", "source_components", "render_components",
           "moment_shape",
           "MorphologyField", "morphology_field", "morphology_cutouts", "write_morphology_field"]

#: the classes this simulator draws, in the order of their integer codes
MORPHOLOGIES = ("compact", "sfg", "fr1", "fr2")
#: the label of a chance pair's midpoint (two unrelated sources: :func:`morphology_field`'s
#: ``pair_fraction``), code 4
PAIR = "pair"
LABELS = MORPHOLOGIES + (PAIR,)

_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))  # sigma per unit FWHM


@dataclass(frozen=True)
class Components:
    """One source's Gaussians on the sky, in beam FWHMs from its centre: offsets ``dx``,
    ``dy``, intrinsic FWHMs ``major``, ``minor`` (0: a point), ``theta`` (radians, from +x
    towards +y) and ``weight`` (fractions of the source's flux, summing to 1)."""

    dx: np.ndarray
    dy: np.ndarray
    major: np.ndarray
    minor: np.ndarray
    theta: np.ndarray
    weight: np.ndarray

    def rotated(self, angle: float) -> Components:
        """The source turned by ``angle`` radians about its centre."""
        c, s = math.cos(angle), math.sin(angle)
        return Components(c * self.dx - s * self.dy, s * self.dx + c * self.dy, self.major,
                          self.minor, self.theta + angle, self.weight)


def _single(major: float, minor: float, theta: float) -> Components:
    z = np.zeros(1)
    return Components(z, z.copy(), np.array([major]), np.array([minor]), np.array([theta]),
                      np.ones(1))


def _path(length: float, n: int, direction: float,
          bend: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points along a jet of ``length`` beams leaving the centre towards
    ``direction``, its direction turning steadily by ``bend`` radians: x, y and the
    fractional distance along it (0-1) of each point's middle."""
    t = (np.arange(n) + 0.5) / n
    ang = direction + bend * t
    step = length / n
    x = np.cumsum(step * np.cos(ang)) - 0.5 * step * np.cos(ang)
    y = np.cumsum(step * np.sin(ang)) - 0.5 * step * np.sin(ang)
    return x, y, t


def _fr1(rng: np.random.Generator, las: float) -> Components:
    core = rng.uniform(0.15, 0.5)
    parts = [(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1),
              np.array([core]))]
    share = rng.uniform(0.4, 0.6)  # of the jets' flux in the first jet
    for side, frac in ((0.0, share), (math.pi, 1.0 - share)):
        length = 0.5 * las * (1.0 if side == 0.0 else rng.uniform(0.7, 1.0))
        x, y, t = _path(length, 10, side + rng.normal(0.0, 0.15), rng.normal(0.0, 0.35))
        w = np.exp(-t / 0.5)  # fading outwards: edge-darkened
        width = 0.25 + 0.6 * t * length / (0.5 * las)  # FWHM (beams), widening outwards
        parts.append((x, y, width, 0.6 * width, np.arctan2(y, x),
                      (1.0 - core) * frac * w / w.sum()))
    return _joined(parts)


def _fr2(rng: np.random.Generator, las: float) -> Components:
    core = rng.uniform(0.0, 0.08)
    parts = [(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1),
              np.array([core]))]
    share = rng.uniform(0.35, 0.65)
    for side, frac in ((0.0, share), (math.pi, 1.0 - share)):
        r = 0.5 * las * (1.0 if side == 0.0 else rng.uniform(0.8, 1.0))
        d = side + rng.normal(0.0, 0.1)
        hot = rng.uniform(0.3, 0.5)
        rb = r * np.array([0.55, 0.7, 0.85])  # the lobe's body, behind its hotspot
        bw = np.array([0.45, 0.4, 0.35]) * r
        x = np.concatenate([[r * math.cos(d)], rb * math.cos(d)])
        y = np.concatenate([[r * math.sin(d)], rb * math.sin(d)])
        major = np.concatenate([[rng.uniform(0.1, 0.4)], bw])
        minor = np.concatenate([[major[0]], bw * rng.uniform(0.5, 0.9)])
        body = np.array([0.25, 0.35, 0.4]) * (1.0 - hot)
        parts.append((x, y, major, minor, np.full(4, d),
                      (1.0 - core) * frac * np.concatenate([[hot], body])))
    return _joined(parts)


def _joined(parts: list[tuple]) -> Components:
    cols = [np.concatenate([np.asarray(p[i], np.float64) for p in parts]) for i in range(6)]
    cols[5] = cols[5] / cols[5].sum()
    return Components(*cols)


def source_components(kind: str, rng: np.random.Generator, *,
                      las_beams: tuple[float, float] = (3.0, 10.0)) -> tuple[Components, float]:
    """One source of morphology ``kind`` (:data:`MORPHOLOGIES`) at a random position angle:
    its components and its largest angular size in beams (the radio galaxies' drawn
    log-uniformly in ``las_beams``; an SFG's major FWHM, 0 for a compact source)."""
    if kind not in MORPHOLOGIES:
        raise ValueError(f"kind: expected one of {', '.join(MORPHOLOGIES)}, received {kind!r}")
    angle = rng.uniform(0.0, math.pi)
    if kind == "compact":
        return _single(0.0, 0.0, 0.0), 0.0
    if kind == "sfg":
        major = rng.uniform(1.0, 3.0)
        return _single(major, major * rng.uniform(0.3, 1.0), angle), major
    las = math.exp(rng.uniform(math.log(las_beams[0]), math.log(las_beams[1])))
    comps = _fr1(rng, las) if kind == "fr1" else _fr2(rng, las)
    return comps.rotated(angle), las


def render_components(image: np.ndarray, comps: Components, x0: float, y0: float,
                      flux: float, beam_pixels: float, beam_minor_pixels: float | None = None,
                      beam_angle: float = 0.0) -> None:
    """Add a source of total ``flux`` (Jy) centred on pixel ``(x0, y0)`` to ``image``
    [H, W] (Jy/beam, in place): each component convolved with the beam (FWHM
    ``beam_pixels`` x ``beam_minor_pixels``, major axis at ``beam_angle`` radians from +x
    towards +y), drawn within 5 sigma of its centre."""
    bmin = beam_pixels if beam_minor_pixels is None else beam_minor_pixels
    sb = _covariance(beam_pixels * _SIGMA, bmin * _SIGMA, beam_angle)
    beam_area = 2.0 * math.pi * math.sqrt(np.linalg.det(sb))
    H, W = image.shape
    for k in range(comps.dx.size):
        cov = sb + _covariance(comps.major[k] * beam_pixels * _SIGMA,
                               comps.minor[k] * beam_pixels * _SIGMA, comps.theta[k])
        inv = np.linalg.inv(cov)
        norm = flux * comps.weight[k] * beam_area / (2.0 * math.pi * math.sqrt(np.linalg.det(cov)))
        cx, cy = x0 + comps.dx[k] * beam_pixels, y0 + comps.dy[k] * beam_pixels
        r = 5.0 * math.sqrt(max(cov[0, 0], cov[1, 1]))
        xa, xb = max(int(math.floor(cx - r)), 0), min(int(math.ceil(cx + r)) + 1, W)
        ya, yb = max(int(math.floor(cy - r)), 0), min(int(math.ceil(cy + r)) + 1, H)
        if xa >= xb or ya >= yb:
            continue
        dx = np.arange(xa, xb) - cx
        dy = (np.arange(ya, yb) - cy)[:, None]
        q = inv[0, 0] * dx * dx + 2.0 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy
        image[ya:yb, xa:xb] += norm * np.exp(-0.5 * q)


def moment_shape(parts: list[tuple[Components, float, float, float]]) -> tuple[float, float, float]:
    """The FWHM major and minor axes (beams) and the major axis' angle (radians from +x
    towards +y) of the second moments of a model seen through the beam: ``parts`` of
    (components, centre offset x, y in beams, flux weight), the components' own weights
    scaled by it (a source's: one part at 0, 0; a chance pair's: two)."""
    w, mu, cov = [], [], []
    for comps, ox, oy, fw in parts:
        for k in range(comps.dx.size):
            w.append(fw * comps.weight[k])
            mu.append((ox + comps.dx[k], oy + comps.dy[k]))
            cov.append(_covariance(comps.major[k] * _SIGMA, comps.minor[k] * _SIGMA,
                                   comps.theta[k]) + np.eye(2) * _SIGMA ** 2)
    wk = np.asarray(w, np.float64) / np.sum(w)
    m = np.asarray(mu, np.float64)
    centre = wk @ m
    d = m - centre
    total = np.einsum("k,kij->ij", wk, np.asarray(cov)) + np.einsum("k,ki,kj->ij", wk, d, d)
    vals, vecs = np.linalg.eigh(total)
    angle = math.atan2(vecs[1, 1], vecs[0, 1]) % math.pi
    return (math.sqrt(vals[1]) / _SIGMA, math.sqrt(max(vals[0], 0.0)) / _SIGMA, angle)


def _covariance(s_major: float, s_minor: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return rot @ np.diag([s_major ** 2, s_minor ** 2]) @ rot.T


@dataclass(frozen=True)
class MorphologyField:
    """``image`` [H, W] in Jy/beam with noise ``noise`` (Jy/beam), its astropy ``header``,
    and per source: pixel ``x``, ``y``, ``flux`` (Jy), ``las`` (beams; a pair's
    separation), ``kind`` (index into :data:`LABELS`); ``major``, ``minor`` (beams) and
    ``angle`` (radians from +x towards +y): the FWHM axes of its model's second moments
    through the beam (:func:`moment_shape`)."""

    image: np.ndarray
    header: Any
    noise: float
    beam_pixels: float
    pixel_scale: float
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    las: np.ndarray
    kind: np.ndarray
    major: np.ndarray | None = None
    minor: np.ndarray | None = None
    angle: np.ndarray | None = None

    def truth_table(self) -> Any:
        """The sources as an astropy Table: ``id``, ``ra``, ``dec`` (deg), ``x``, ``y``
        (pixels), ``flux`` (Jy), ``las`` (arcsec), ``bmaj``, ``bmin`` (arcsec, apparent:
        the second moments' FWHM axes through the beam, as a source finder measures an
        extended source) and ``pa`` (deg east of north), ``snr`` (flux / noise: a point
        source's peak SNR) and ``morphology``."""
        table_cls = require("astropy.table").Table
        wcs = _wcs(self.header)
        ra, dec = pixel_to_sky(wcs, self.x, self.y)
        names = np.array(LABELS)[self.kind]
        arcsec = self.beam_pixels * self.pixel_scale
        cols = {"id": np.arange(1, self.x.size + 1), "ra": ra, "dec": dec, "x": self.x,
                "y": self.y, "flux": self.flux, "las": self.las * arcsec}
        if self.major is not None:
            cols.update(bmaj=self.major * arcsec, bmin=self.minor * arcsec,
                        pa=pixel_angle_to_pa(wcs, self.x, self.y, self.angle))
        t = table_cls({**cols, "snr": self.flux / self.noise, "morphology": names})
        for name, unit in (("las", "arcsec"), ("bmaj", "arcsec"), ("bmin", "arcsec"),
                           ("pa", "deg"), ("flux", "Jy")):
            if name in t.colnames:
                t[name].unit = unit
        return t


def _wcs(header: Any) -> Any:
    return require("astropy.wcs").WCS(header)


def morphology_field(size: int = 1024, *, n_sources: int = 200, seed: int = 0,
                     noise: float = 1e-4, beam_pixels: float = 4.0, pixel_scale: float = 1.5,
                     snr_range: tuple[float, float] = (10.0, 300.0),
                     las_beams: tuple[float, float] = (3.0, 10.0),
                     fractions: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25),
                     pair_fraction: float = 0.0) -> MorphologyField:
    """A square field of ``size`` pixels holding about ``n_sources`` sources of the four
    :data:`MORPHOLOGIES` in ``fractions``, placed apart (no two sources' extents within a
    beam of each other; fewer where they do not fit), with fluxes log-uniform in
    ``snr_range`` times the ``noise`` (a point source's peak SNR) and noise correlated as
    the beam. ``pair_fraction`` of the placements are instead two unrelated compact or
    star-forming sources 3-10 beams apart, of fluxes within a factor 4 (what a double
    source's criterion pairs by chance): their rows, and one at their midpoint of class
    :data:`PAIR`. ValueError names a setting that cannot make a field."""
    size = as_int(size, "size", minimum=32)
    n_sources = as_int(n_sources, "n_sources", minimum=1)
    for name, v in (("noise", noise), ("beam_pixels", beam_pixels),
                    ("pixel_scale", pixel_scale)):
        as_bounded_float(v, name)
    lo, hi = (float(v) for v in snr_range)
    if not 0 < lo <= hi:
        raise ValueError(f"snr_range: expected 0 < low <= high, received {snr_range!r}")
    la, lb = (float(v) for v in las_beams)
    if not 0 < la <= lb:
        raise ValueError(f"las_beams: expected 0 < low <= high, received {las_beams!r}")
    p = np.asarray(fractions, np.float64)
    if p.shape != (len(MORPHOLOGIES),) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"fractions: expected {len(MORPHOLOGIES)} non-negative numbers "
                         f"(compact, sfg, fr1, fr2), received {fractions!r}")
    if not 0.0 <= as_bounded_float(pair_fraction, "pair_fraction", strict=False) <= 1.0:
        raise ValueError(f"pair_fraction: expected a fraction in [0, 1], received "
                         f"{pair_fraction!r}")
    rng = np.random.default_rng(seed)
    image = correlated_noise((size, size), noise, beam_pixels, rng)
    rows: list[tuple[float, ...]] = []  # x, y, flux, las, kind, major, minor, angle
    placed: list[tuple[float, float, float]] = []  # x, y, reach of each placement
    margin = 2.0 * beam_pixels

    def flux_draw() -> float:
        return math.exp(rng.uniform(math.log(lo), math.log(hi))) * noise

    for _ in range(20 * n_sources):
        if len(placed) == n_sources:
            break
        pair = pair_fraction > 0 and rng.random() < pair_fraction  # (no draw without)
        if pair:
            sep = rng.uniform(3.0, 10.0)
            members = [source_components(MORPHOLOGIES[int(rng.integers(2))], rng) for _ in "ab"]
            reach = (0.5 * sep + max(m[1] for m in members) / 2 + 1.5) * beam_pixels
        else:
            k = int(rng.choice(len(MORPHOLOGIES), p=p / p.sum()))
            comps, las = source_components(MORPHOLOGIES[k], rng, las_beams=(la, lb))
            reach = (0.5 * las + 1.5) * beam_pixels
        if 2 * (reach + margin) >= size:
            continue
        x = rng.uniform(reach + margin, size - 1 - reach - margin)
        y = rng.uniform(reach + margin, size - 1 - reach - margin)
        if placed and np.any(np.hypot(np.array([q[0] for q in placed]) - x,
                                      np.array([q[1] for q in placed]) - y)
                             < np.array([q[2] for q in placed]) + reach + beam_pixels):
            continue
        placed.append((x, y, reach))
        if not pair:
            flux = flux_draw()
            render_components(image, comps, x, y, flux, beam_pixels)
            rows.append((x, y, flux, las, k, *moment_shape([(comps, 0.0, 0.0, 1.0)])))
            continue
        ang = rng.uniform(0.0, math.pi)
        f1 = flux_draw()
        fluxes = (f1, f1 * 10 ** rng.uniform(-0.6, 0.6))
        total, parts = 0.0, []
        for sign, (comps_m, las_m), f in zip((-1.0, 1.0), members, fluxes):
            mx = x + sign * 0.5 * sep * beam_pixels * math.cos(ang)
            my = y + sign * 0.5 * sep * beam_pixels * math.sin(ang)
            render_components(image, comps_m, mx, my, f, beam_pixels)
            rows.append((mx, my, f, las_m, 0 if las_m == 0.0 else 1,
                         *moment_shape([(comps_m, 0.0, 0.0, 1.0)])))
            parts.append((comps_m, (mx - x) / beam_pixels, (my - y) / beam_pixels, f))
            total += f
        rows.append((x, y, total, sep, len(MORPHOLOGIES), *moment_shape(parts)))
    beam = Beam(beam_pixels * pixel_scale, beam_pixels * pixel_scale, 0.0)
    header = field_header((size, size), pixel_scale=pixel_scale, beam=beam)
    header["HISTORY"] = f"cianna_jax morphology_field seed={seed} noise={noise}"
    cols = np.array(rows, np.float64).reshape(-1, 8)
    return MorphologyField(image.astype(np.float32), header, float(noise), float(beam_pixels),
                           float(pixel_scale), cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3],
                           cols[:, 4].astype(np.int64), cols[:, 5], cols[:, 6], cols[:, 7])


def write_morphology_field(path: str, field: MorphologyField) -> None:
    """The field's image as a FITS file (its WCS and beam), written atomically."""
    from ..io.atomic import atomic_write

    fits = require("astropy.io.fits")
    with atomic_write(path) as fh:
        fits.PrimaryHDU(data=field.image, header=field.header).writeto(fh)


def morphology_cutouts(kinds: np.ndarray, *, size: int = 48, beam_pixels: float = 3.0,
                       snr: np.ndarray | float = 50.0, seed: int = 0,
                       las_beams: tuple[float, float] = (3.0, 10.0)) -> np.ndarray:
    """One centred source per entry of ``kinds`` (indices into :data:`MORPHOLOGIES`) on a
    ``size`` x ``size`` window of unit-rms correlated noise, its flux ``snr`` times the
    noise: [N, size, size] float32, in units of the noise."""
    kinds = np.asarray(kinds, np.int64)
    rng = np.random.default_rng(seed)
    snr = np.broadcast_to(np.asarray(snr, np.float64), kinds.shape)
    out = np.empty((kinds.size, size, size), np.float32)
    c = 0.5 * (size - 1)
    for i, k in enumerate(kinds):
        img = correlated_noise((size, size), 1.0, beam_pixels, rng)
        comps, _ = source_components(MORPHOLOGIES[int(k)], rng, las_beams=las_beams)
        render_components(img, comps, c, c, float(snr[i]), beam_pixels)
        out[i] = img
    return out
