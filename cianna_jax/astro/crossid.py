"""Optical / infrared counterparts of radio sources by the likelihood ratio.

A radio source's counterpart (its host galaxy) in a deeper optical or infrared catalogue
lies within its position errors, but so do unrelated background objects.  The likelihood
ratio (Sutherland & Saunders 1992; as LoTSS, EMU and MIGHTEE identify their hosts) weighs
each candidate ``j`` of radio source ``i`` by how likely its offset and magnitude are for
a true counterpart against a background object::

    LR_ij = q(m_j) f(r_ij) / n(m_j)

* ``f(r)``: the offset's distribution, a Gaussian of the radio and optical position errors
  (and a systematic astrometric error) in quadrature, in RA and Dec, per square arcsec;
* ``n(m)``: the background objects' surface density per magnitude, from annuli around the
  radio sources (local, no footprint needed) or the whole catalogue over its area;
* ``q(m)``: the true counterparts' magnitude distribution, normalised to ``Q0``, the
  fraction of radio sources whose counterpart is in the catalogue: first the excess of
  candidates within the search radius over the background (Q0 that excess over the number
  of radio sources), then refined by expectation-maximisation (Q0 the mean probability
  of a counterpart among a source's candidates, q(m) the candidates' magnitudes weighted
  by their reliabilities, until both settle): on simulated catalogues Q0's scatter falls
  from 0.037 to 0.003 (1500 radio sources).

The estimates use only the radio sources far enough inside the optical catalogue's
(convex) coverage that their search circles and annuli are not cut by its edge.

Each candidate's reliability is ``LR_ij / (sum_k LR_ik + 1 - Q0)``; a radio source's best
candidate is accepted when its LR reaches the threshold where the expected completeness
(true counterparts accepted over all there are, ``Q0`` times the radio sources) and
reliability (the accepted's mean reliability) are equal, as LoTSS chose it, unless one is
given.  Large or multi-component radio sources (lobes far from their host) need more than
positions: the method suits compact sources.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float, as_int
from .catalogue import CatalogueError, column_values, make_table
from .crossmatch import sky_chord, tangent_plane, unit_vectors
from .scores import robust_scatter
from .sky import angular_separation

__all__ = ["CrossId", "likelihood_ratio", "crossid_figure", "CROSSID_NOTE"]

CROSSID_NOTE = ("lr: the likelihood ratio q(m) f(r) / n(m) of the radio source's best "
                "candidate (0: none within the radius); lr_reliability: that candidate's "
                "LR / (sum of the source's candidates' LR + 1 - Q0); lr_match: lr at least "
                "the threshold; lr_index: the candidate's row in the optical catalogue "
                "(-1: none); lr_ra, lr_dec, lr_mag, lr_sep (arcsec): its position, "
                "magnitude and offset; lr_shared: how many matched sources share that "
                "counterpart (0: not matched; 2 or more: a radio galaxy's components, or "
                "confusion)")

_OWN_COLUMNS = ("lr", "lr_reliability", "lr_match", "lr_index", "lr_ra", "lr_dec", "lr_mag",
                "lr_sep", "lr_shared")


@dataclass(frozen=True)
class CrossId:
    """The cross-identification: ``table`` the radio catalogue with the columns of
    ``CROSSID_NOTE`` (and ``crossid`` in its metadata), ``pairs`` every candidate (radio
    row, optical row, separation, magnitude, LR, reliability); ``q0``; ``threshold``
    and the expected ``completeness`` and ``reliability`` there; the magnitude bins'
    ``mag_edges`` with ``q`` (per magnitude) and ``n`` (per magnitude per square arcsec),
    ``[colour rows, magnitude bins]`` (one row without colours; with them, the rows of
    ``colour_edges``' bins and a last one for objects without a colour);
    ``curve``: thresholds and the expected completeness and reliability at each."""

    table: Any
    pairs: Any
    q0: float
    threshold: float
    completeness: float
    reliability: float
    mag_edges: np.ndarray
    q: np.ndarray
    n: np.ndarray
    curve: dict[str, np.ndarray]
    colour_edges: np.ndarray | None = None


def _positions(t: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    ra, dec = column_values(t, "ra", what), column_values(t, "dec", what)
    if ra is None or dec is None:
        raise CatalogueError(f"{what}: needs ra and dec columns (degrees, or an alias such "
                             f"as RAJ2000/DEJ2000)")
    bad = np.flatnonzero(np.abs(dec) > 90.0)
    if bad.size:
        raise CatalogueError(f"{what}: Dec outside [-90, 90] degrees at rows "
                             f"{', '.join(map(str, bad[:5]))}{' ...' if bad.size > 5 else ''}")
    return ra, dec


def _interior(ora: np.ndarray, odec: np.ndarray, rra: np.ndarray, rdec: np.ndarray,
              margin: float) -> np.ndarray:
    """Which radio positions lie at least ``margin`` arcsec inside the optical objects'
    convex hull (on the tangent plane at their centre): where circles of that radius hold
    only covered sky, so counts in them are not cut by the catalogue's edge.  All of them
    for a catalogue wider than 60 degrees (no edge handling)."""
    from scipy.spatial import ConvexHull, QhullError

    ox, oy, cz, centre = tangent_plane(ora, odec)
    if np.min(cz) < math.cos(math.radians(60.0)):
        return np.ones(rra.size, bool)
    try:
        hull = ConvexHull(np.stack([ox, oy], axis=1))
    except (QhullError, ValueError):
        return np.ones(rra.size, bool)
    rx, ry, _, _ = tangent_plane(rra, rdec, centre)
    pr = np.stack([rx, ry], axis=1)
    inside = -np.max(pr @ hull.equations[:, :2].T + hull.equations[:, 2], axis=1)
    return inside >= margin


def _radio_sigma(t: Any, radio_error: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each radio source's 1-sigma position errors in RA (on the sky) and Dec (arcsec): its
    ``ra_err`` and ``dec_err``, else (missing or NaN) ``radio_error`` for both, or, for a
    few sources among others with errors (failed fits), the others' 90th percentile, with a
    warning."""
    n = len(t)
    ra_e, dec_e = (column_values(t, c) for c in ("ra_err", "dec_err"))
    if ra_e is None or dec_e is None:
        ra_e = dec_e = np.full(n, np.nan)
    missing = ~(np.isfinite(ra_e) & (ra_e >= 0) & np.isfinite(dec_e) & (dec_e >= 0))
    if missing.any():
        if radio_error is None and missing.all():
            raise CatalogueError(
                f"catalogue: {int(missing.sum())} of {n} sources without position errors "
                "(ra_err, dec_err in arcsec): give radio_error (--radio-error ARCSEC)")
        if radio_error is None:
            fill = [float(np.percentile(e[~missing], 90)) for e in (ra_e, dec_e)]
            warnings.warn(f"catalogue: {int(missing.sum())} of {n} sources without position "
                          f"errors take the others' 90th percentile ({fill[0]:.3g}, "
                          f"{fill[1]:.3g} arcsec); radio_error (--radio-error) to choose",
                          UserWarning, stacklevel=3)
        else:
            fill = [radio_error, radio_error]
        ra_e, dec_e = np.where(missing, fill[0], ra_e), np.where(missing, fill[1], dec_e)
    return ra_e, dec_e


def _magnitudes(t: Any, column: str) -> np.ndarray:
    m = column_values(t, column, "optical catalogue")  # (masked: NaN; not numeric: refused)
    if m is None:
        raise CatalogueError(f"optical catalogue: no magnitude column {column!r} (columns: "
                             f"{', '.join(t.colnames[:20])})")
    return m


def _bins(mag: np.ndarray, colour: np.ndarray | None, mag_step: float,
          colour_edges: np.ndarray | None, colour_bins: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Each object's bin (flat index, colour row major), the magnitude edges, the colour
    edges (None without colours) and the bins' shape ``(colour rows, magnitude bins)``.
    With colours: ``colour_edges`` or ``colour_bins`` quantile bins of the finite colours,
    and one last row for the objects without a colour."""
    lo = math.floor(np.min(mag) / mag_step) * mag_step
    edges = lo + mag_step * np.arange(int(math.ceil((np.max(mag) - lo) / mag_step)) + 2)
    edges = edges[: np.searchsorted(edges, np.max(mag), side="right") + 1]
    nb = edges.size - 1
    kb = np.clip(np.searchsorted(edges, mag, side="right") - 1, 0, nb - 1)
    if colour is None:
        return kb, edges, None, (1, nb)
    ok = np.isfinite(colour)
    if colour_edges is None:
        if ok.sum() < 10 * colour_bins:
            raise CatalogueError(f"optical catalogue: {int(ok.sum())} objects with a colour, "
                                 f"too few for {colour_bins} colour bins")
        colour_edges = np.quantile(colour[ok], np.linspace(0.0, 1.0, colour_bins + 1))
        colour_edges[0], colour_edges[-1] = -np.inf, np.inf
    nc = colour_edges.size - 1
    kc = np.where(ok, np.clip(np.searchsorted(colour_edges, np.where(ok, colour, 0.0),
                                              side="right") - 1, 0, nc - 1), nc)
    return kc * nb + kb, edges, colour_edges, (nc + 1, nb)


def _smooth(v: np.ndarray) -> np.ndarray:
    """A 1-2-1 running mean (ends reflected), keeping the sum."""
    if v.size < 3:
        return v.copy()
    p = np.concatenate([v[:1], v, v[-1:]])
    return 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]


def _offsets(d_ra: np.ndarray, d_dec: np.ndarray, best: np.ndarray, sure: np.ndarray
             ) -> dict[str, float]:
    """The median offsets (optical - radio, arcsec, east and north) of the counterparts of
    the ``sure`` sources (accepted, reliability >= 0.9) with the errors of the medians: a
    systematic offset between the catalogues' frames shows there (``astrometric_error``
    or a shift of one catalogue)."""
    k = best[sure]
    if k.size < 5:
        return {}
    out = {"offsets_n": int(k.size)}
    for name, v in (("ra", d_ra[k]), ("dec", d_dec[k])):
        out[f"offset_{name}_arcsec"] = float(np.median(v))
        out[f"offset_{name}_err_arcsec"] = 1.2533 * robust_scatter(v) / math.sqrt(k.size)
    return out


def _smooth_rows(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`_smooth` along the magnitudes of each colour row of the flat bins ``v``."""
    return np.concatenate([_smooth(r) for r in v.reshape(shape)])


def _threshold_curve(best_lr: np.ndarray, best_rel: np.ndarray, q0: float
                     ) -> dict[str, np.ndarray]:
    """Expected completeness and reliability of accepting every radio source's best
    candidate of LR >= each threshold (the distinct LRs, highest last)."""
    lr = np.unique(best_lr[best_lr > 0])
    order = np.argsort(-best_lr)
    cum_rel = np.cumsum(best_rel[order])  # the accepted when the threshold is lr[order][k]
    sorted_lr = best_lr[order]
    n_acc = np.searchsorted(-sorted_lr, -lr, side="right")  # LR >= each threshold
    got = np.where(n_acc > 0, cum_rel[np.maximum(n_acc - 1, 0)], 0.0)
    total = q0 * best_lr.size
    completeness = got / total if total > 0 else np.zeros_like(got)
    reliability = np.where(n_acc > 0, got / np.maximum(n_acc, 1), np.nan)
    return {"threshold": lr, "completeness": completeness, "reliability": reliability,
            "n_accepted": n_acc}


def likelihood_ratio(radio: Any, optical: Any, *, mag_column: str,
                     optical_error: float = 0.3, astrometric_error: float = 0.0,
                     radio_error: float | None = None, radius: float | None = None,
                     area_deg2: float | None = None, mag_step: float = 0.5,
                     lr_threshold: float | None = None, iterations: int = 100,
                     optical_columns: tuple[str, ...] = (), colour_column: str | None = None,
                     colour_bins: int = 4, colour_edges: Any = None,
                     optical_shift: tuple[float, float] = (0.0, 0.0)) -> CrossId:
    """Counterparts of the ``radio`` catalogue's sources in the ``optical`` one (astropy
    tables with ``ra``/``dec`` in degrees or their aliases; the radio positions' errors
    ``ra_err``/``dec_err`` in arcsec, ``radio_error`` for sources without; the optical
    magnitudes in ``mag_column``, objects without one left out).  ``optical_error`` and
    ``astrometric_error``: 1-sigma per axis in arcsec, in quadrature with the radio
    errors.  ``radius`` (arcsec): the candidates' search radius (default five times the
    90th percentile of the combined errors, at least 3); ``area_deg2``: the optical
    catalogue's area, for a background density over the whole catalogue (default: from
    annuli 3 to 6 radii around the radio sources); ``mag_step``: the magnitude bins'
    width; ``lr_threshold``: accept at this LR instead of where the expected completeness
    and reliability are equal; ``iterations``: at most this many EM steps refining Q0 and
    q(m) (0: the excess's estimates as they are); ``optical_columns``: the optical
    catalogue's columns copied for each source's best candidate as ``lr_<name>`` (e.g. a
    photometric redshift; masked without one).  ``colour_column``: q(m) and n(m) per bin
    of that column (a colour such as r - W1: radio hosts are redder than the background),
    ``colour_bins`` quantile bins of it or ``colour_edges``, and a bin of the objects
    without a colour.  ``optical_shift``: (east, north) arcsec added to the optical
    positions first (a frame offset between the catalogues, as the result's median offsets
    show it: ``offset_ra_arcsec``, ``offset_dec_arcsec`` in its metadata).  See the
    module's note."""
    from scipy.spatial import cKDTree

    as_bounded_float(optical_error, "optical_error", strict=False)
    as_bounded_float(astrometric_error, "astrometric_error", strict=False)
    as_bounded_float(mag_step, "mag_step")
    if radio_error is not None:
        as_bounded_float(radio_error, "radio_error", strict=False)
    if radius is not None:
        as_bounded_float(radius, "radius")
    if area_deg2 is not None:
        as_bounded_float(area_deg2, "area_deg2")
    if lr_threshold is not None:
        as_bounded_float(lr_threshold, "lr_threshold", strict=False)
    iterations = as_int(iterations, "iterations", minimum=0)
    optical_columns = tuple(optical_columns)
    for name in optical_columns:
        if name not in optical.colnames:
            raise CatalogueError(f"optical catalogue: no column {name!r} to copy (columns: "
                                 f"{', '.join(optical.colnames[:20])})")
        if f"lr_{name}" in _OWN_COLUMNS:
            raise ValueError(f"optical_columns: {name!r} would be copied as lr_{name}, "
                             f"one of the cross-identification's own columns")
    if colour_edges is not None:
        colour_edges = np.asarray(colour_edges, np.float64)
        if colour_edges.ndim != 1 or colour_edges.size < 2 or not np.all(
                np.diff(colour_edges) > 0) or np.isnan(colour_edges).any():
            raise ValueError(f"colour_edges: at least two increasing numbers; received "
                             f"{colour_edges.tolist()}")
    colour_bins = as_int(colour_bins, "colour_bins", minimum=1)
    if len(radio) == 0:
        raise CatalogueError("catalogue: no radio sources")
    rra, rdec = _positions(radio, "catalogue")
    ora, odec = _positions(optical, "optical catalogue")
    shift = [float(v) for v in optical_shift]
    if len(shift) != 2 or not all(math.isfinite(v) for v in shift):
        raise ValueError(f"optical_shift: (east, north) in arcsec; received {optical_shift!r}")
    if any(shift):
        odec = odec + shift[1] / 3600.0
        ora = np.mod(ora + shift[0] / 3600.0 / np.cos(np.radians(odec)), 360.0)
    mag = _magnitudes(optical, mag_column)
    colour = None if colour_column is None else _magnitudes(optical, colour_column)
    extra = optical_error ** 2 + astrometric_error ** 2
    s_ra, s_dec = (np.sqrt(e ** 2 + extra) for e in _radio_sigma(radio, radio_error))
    sigma = np.maximum(s_ra, s_dec)  # (the search radius's and the annuli's scale)
    if np.any(np.minimum(s_ra, s_dec) <= 0):
        raise ValueError("position errors: zero for some sources; give optical_error > 0")
    keep = np.isfinite(mag) & np.isfinite(ora) & np.isfinite(odec)
    oidx = np.flatnonzero(keep)
    if oidx.size < 10:
        raise CatalogueError(f"optical catalogue: {oidx.size} objects with a position and a "
                             f"{mag_column!r} magnitude; too few for the background")
    ok_r = np.isfinite(rra) & np.isfinite(rdec)
    r_max = float(radius) if radius is not None else max(
        3.0, 5.0 * float(np.percentile(sigma[ok_r], 90)))
    bins, edges, colour_edges, shape = _bins(
        mag[oidx], None if colour is None else colour[oidx], mag_step, colour_edges,
        colour_bins)
    nb = shape[0] * shape[1]
    otree = cKDTree(unit_vectors(ora[oidx], odec[oidx]))
    rxyz = unit_vectors(rra[ok_r], rdec[ok_r])
    inner, outer = 3.0 * r_max, 6.0 * r_max
    # q(m), n(m) and Q0 from the radio sources whose circles the catalogue's edge cuts not
    margin = outer if area_deg2 is None else r_max
    est = _interior(ora[oidx], odec[oidx], rra[ok_r], rdec[ok_r], margin)
    if est.sum() < min(20, est.size):
        warnings.warn(f"only {int(est.sum())} radio sources lie {margin:.3g} arcsec inside "
                      "the optical catalogue's edge: the background and Q0 are estimated "
                      "from all of them, cut by the edge", UserWarning, stacklevel=2)
        est[:] = True
    rtree = cKDTree(rxyz[est])
    n_radio = int(est.sum())
    # background per magnitude per square arcsec
    if area_deg2 is None:
        w = (rtree.query_ball_point(otree.data, sky_chord(outer), return_length=True)
             - rtree.query_ball_point(otree.data, sky_chord(inner), return_length=True))
        area = n_radio * math.pi * (outer ** 2 - inner ** 2)
        background = f"annuli {inner:.3g}-{outer:.3g} arcsec around the radio sources"
    else:
        w = np.ones(oidx.size)
        area = float(area_deg2) * 3600.0 ** 2
        background = f"the whole catalogue over {float(area_deg2):g} deg2"
    counts = np.bincount(bins, weights=w, minlength=nb)
    n_m = np.maximum(counts, 0.5) / (area * mag_step)
    # candidates within r_max: the excess over the background gives q(m) and Q0
    within = rtree.query_ball_point(otree.data, sky_chord(r_max), return_length=True)
    total = np.bincount(bins, weights=within, minlength=nb)
    expected = n_m * mag_step * n_radio * math.pi * r_max ** 2
    excess = total - np.where(counts > 0, expected, 0.0)
    frac_in = float(np.mean(1.0 - np.exp(-0.5 * r_max ** 2 / (s_ra * s_dec)[ok_r][est])))
    q0_excess = float(np.sum(excess)) / (n_radio * frac_in)
    q0 = float(np.clip(q0_excess, 0.01, 1.0))
    if q0 != q0_excess:
        warnings.warn(f"Q0, the fraction of radio sources with a counterpart, came out "
                      f"{q0_excess:.3g} (the candidates' excess over the background), taken as "
                      f"{q0:g}: the background may be wrong (a clustered field, a wrong "
                      f"area_deg2) or the catalogues may not overlap", UserWarning,
                      stacklevel=2)
    real = _smooth_rows(np.clip(excess, 0.0, None), shape)
    q_m = (q0 * real / (real.sum() * mag_step) if real.sum() > 0
           else np.full(nb, q0 / (nb * mag_step)))
    # every candidate's LR and reliability
    lists = otree.query_ball_point(rxyz, sky_chord(r_max))
    rrow = np.flatnonzero(ok_r)
    pr = np.repeat(rrow, [len(v) for v in lists])
    po = np.asarray([j for v in lists for j in v], np.int64)
    sep = angular_separation(rra[pr], rdec[pr], ora[oidx][po], odec[oidx][po]) * 3600.0
    # the offsets east and north (arcsec) and their Gaussian, per square arcsec
    d_ra = (np.mod(ora[oidx][po] - rra[pr] + 180.0, 360.0) - 180.0) * np.cos(
        np.radians(rdec[pr])) * 3600.0
    d_dec = (odec[oidx][po] - rdec[pr]) * 3600.0
    f_r = np.exp(-0.5 * ((d_ra / s_ra[pr]) ** 2 + (d_dec / s_dec[pr]) ** 2)) / (
        2.0 * math.pi * s_ra[pr] * s_dec[pr])
    ratio = f_r / n_m[bins[po]]
    in_est = np.zeros(len(radio), bool)
    in_est[np.flatnonzero(ok_r)[est]] = True
    steps, settled = 0, False
    while True:
        lr = q_m[bins[po]] * ratio
        sum_lr = np.bincount(pr, weights=lr, minlength=len(radio))
        den = sum_lr[pr] + 1.0 - q0  # (0 only for a source whose every LR underflows, Q0 1)
        rel = np.divide(lr, den, out=np.zeros_like(lr), where=den > 0)
        if settled or steps == iterations:
            break
        # EM: Q0 the mean probability of a counterpart among a source's candidates, q(m)
        # the candidates' magnitudes weighted by their reliabilities
        post = np.bincount(pr, weights=rel, minlength=len(radio))
        q0_new = float(np.clip(post[in_est].mean() / frac_in, 0.01, 1.0))
        hist = _smooth_rows(np.bincount(bins[po][in_est[pr]], weights=rel[in_est[pr]],
                                        minlength=nb), shape)
        if hist.sum() <= 0:
            break
        q_new = q0_new * hist / (hist.sum() * mag_step)
        settled = abs(q0_new - q0) < 1e-6 and np.allclose(q_new, q_m, rtol=1e-5, atol=0.0)
        q0, q_m, steps = q0_new, q_new, steps + 1
    best = np.full(len(radio), -1, np.int64)
    if po.size:
        order = np.lexsort((-lr, pr))
        first = np.r_[True, pr[order][1:] != pr[order][:-1]]
        best[pr[order][first]] = order[first]
    has = best >= 0
    best_lr = np.where(has, lr[np.maximum(best, 0)] if po.size else 0.0, 0.0)
    best_rel = np.where(has, rel[np.maximum(best, 0)] if po.size else 0.0, 0.0)
    curve = _threshold_curve(best_lr, best_rel, q0)
    if lr_threshold is not None:
        thr = float(lr_threshold)
    elif curve["threshold"].size:
        k = int(np.nanargmax(np.minimum(curve["completeness"], curve["reliability"])))
        thr = float(curve["threshold"][k])
    else:
        thr = math.inf
    acc = has & (best_lr >= thr)
    completeness = float(np.sum(best_rel[acc]) / (q0 * best_lr.size))
    reliability = float(np.mean(best_rel[acc])) if acc.any() else float("nan")
    pick = np.maximum(best, 0)
    offsets = _offsets(d_ra, d_dec, best, has & acc & (best_rel >= 0.9)) if po.size else {}

    def chosen(values: np.ndarray, fill: float) -> np.ndarray:
        return np.where(has, values[pick] if po.size else fill, fill)

    table = radio.copy(copy_data=True)
    opt_row = oidx[po] if po.size else np.zeros(0, np.int64)
    table["lr"] = best_lr
    table["lr_reliability"] = best_rel
    table["lr_match"] = acc
    table["lr_index"] = np.where(has, opt_row[pick] if po.size else -1, -1)
    table["lr_ra"] = chosen(ora[opt_row] if po.size else np.zeros(0), np.nan)
    table["lr_dec"] = chosen(odec[opt_row] if po.size else np.zeros(0), np.nan)
    table["lr_mag"] = chosen(mag[opt_row] if po.size else np.zeros(0), np.nan)
    table["lr_sep"] = chosen(sep, np.nan)
    # accepted sources sharing one counterpart: a radio galaxy's components (lobes), or
    # confusion
    host = np.where(acc, np.asarray(table["lr_index"]), -1)
    _, inv, cnt = np.unique(host, return_inverse=True, return_counts=True)
    table["lr_shared"] = np.where(acc, cnt[inv], 0)
    if optical_columns:
        from astropy.table import MaskedColumn

        at = np.where(has, np.asarray(table["lr_index"]), 0)
        for name in optical_columns:
            vals = optical[name][at]
            table[f"lr_{name}"] = MaskedColumn(vals, mask=~has | np.ma.getmaskarray(vals),
                                               unit=getattr(optical[name], "unit", None))
    table.meta["crossid"] = {
        "method": "likelihood ratio (Sutherland & Saunders 1992)", "q0": q0,
        "q0_excess": q0_excess, "em_steps": steps, "lr_threshold": thr,
        "completeness": completeness,
        "reliability": reliability, "radius_arcsec": r_max, "background": background,
        "optical_error_arcsec": float(optical_error), "optical_shift_arcsec": shift,
        "colour_column": colour_column,
        "colour_edges": None if colour_edges is None else [  # (the outer ones open)
            float(e) for e in colour_edges if np.isfinite(e)],
        "astrometric_error_arcsec": float(astrometric_error), "mag_column": mag_column,
        **offsets, "n_radio": len(radio), "n_optical": int(oidx.size), "n_matched": int(acc.sum()),
        "threshold_rule": "given" if lr_threshold is not None else
        "expected completeness = reliability", "note": CROSSID_NOTE}
    pairs = make_table({"radio_row": pr, "optical_row": opt_row, "sep": sep,
                        "mag": mag[opt_row] if po.size else np.zeros(0), "lr": lr,
                        "reliability": rel}, units={"sep": "arcsec"})
    return CrossId(table, pairs, q0, thr, completeness, reliability, edges,
                   q_m.reshape(shape), n_m.reshape(shape), curve, colour_edges)


def _colour_labels(res: CrossId) -> list[str]:
    """A legend suffix per colour row of ``res.q`` ("" without colours)."""
    if res.colour_edges is None:
        return [""]
    e = res.colour_edges
    name = res.table.meta["crossid"]["colour_column"]
    out = []
    for lo, hi in zip(e[:-1], e[1:], strict=True):
        out.append(f", {name} < {hi:.2g}" if not np.isfinite(lo) else
                   f", {name} >= {lo:.2g}" if not np.isfinite(hi) else
                   f", {name} {lo:.2g}-{hi:.2g}")
    return out + [f", no {name}"]


def crossid_figure(res: CrossId, *, title: str = "Likelihood-ratio counterparts") -> Any:
    """Three panels: q(m) (true counterparts) and n(m) (background) against magnitude (per
    colour bin with colours), the expected completeness and
    reliability against the LR threshold (the chosen one marked), and the accepted
    counterparts' offsets."""
    from .plots import finish_panels, pyplot

    plt = pyplot()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.5))
    mid = 0.5 * (res.mag_edges[:-1] + res.mag_edges[1:])
    rows = _colour_labels(res)
    for k, label in enumerate(rows):
        if not res.q[k].any():  # (a row without objects: no objects without a colour)
            continue
        a1.semilogy(mid, res.q[k], "o-", color=f"C{k}", ms=4,
                    label=f"q(m){label}" + (f" (Q0 = {res.q0:.2f})" if k == 0 else ""))
        a1.semilogy(mid, res.n[k] * 3600.0, "s--", color=f"C{k}", ms=3, alpha=0.7,
                    label=f"n(m){label}, per arcmin²")
    top = max(float(res.q.max()), float(res.n.max()) * 3600.0)
    a1.set_ylim(1e-4 * top, 3.0 * top)  # (q's far tails are of no weight)
    a1.set_xlabel(f"magnitude ({res.table.meta['crossid']['mag_column']})")
    a1.set_ylabel("per magnitude")
    a1.legend(fontsize=7 if len(rows) > 1 else 8)
    c = res.curve
    if c["threshold"].size:
        a2.semilogx(c["threshold"], c["completeness"], label="completeness (expected)")
        a2.semilogx(c["threshold"], c["reliability"], label="reliability (expected)")
        if np.isfinite(res.threshold) and res.threshold > 0:
            a2.axvline(res.threshold, color="k", ls="--",
                       label=f"threshold {res.threshold:.3g}")
            # (LRs span tens of decades: four below the threshold to the highest)
            a2.set_xlim(max(float(c["threshold"][0]), 1e-4 * res.threshold),
                        float(c["threshold"][-1]) * 2.0)
    a2.set_xlabel("LR threshold")
    a2.set_ylabel("fraction")
    a2.set_ylim(0, 1.02)
    a2.legend(fontsize=8)
    t = res.table
    ok = np.asarray(t["lr_match"], bool)
    a3.hist(np.asarray(t["lr_sep"])[ok], bins=30, color="C2")
    a3.set_xlabel("offset of the accepted counterparts (arcsec)")
    a3.set_ylabel("radio sources")
    return finish_panels(fig, (a1, a2, a3), f"{title}: {int(ok.sum())} of {len(t)} radio "
                         f"sources matched")
