"""A source list from a catalogue of Gaussian components (PyBDSF's ``srl`` beside its
``gaul``): one row per source of :mod:`.sources`, the Gaussians summed.

Per source: ``flux`` the sum of its Gaussians' (``flux_err`` in quadrature); ``ra``,
``dec`` (and ``x``, ``y``) the flux-weighted mean of their centres, which is the centroid
of their summed model (errors: the members' weighted in quadrature); ``bmaj``, ``bmin``,
``pa`` the FWHM axes and orientation of the summed model's second moments over its island,
the pixels where the island's Gaussians sum to at least ``thresh_isl`` times the rms, as
PyBDSF measures them (``sizes="model"``: over the whole model, larger: the faint wings
count); a single Gaussian's own; ``bmaj_deconv``, ``bmin_deconv``, ``pa_deconv`` those moments less the
beam's (0 where the beam is as wide); ``resolved`` (where the catalogue has that column)
for a source of several Gaussians or of a resolved one; ``peak`` the summed model's maximum, ``rms``, ``peak_err`` and
``reliability`` the brightest Gaussian's; ``edge`` and ``deblended`` when any member has
them; ``n_components`` and ``component_ids`` (the catalogue's ``id`` of each member); a
classifying detector's ``det_class``, ``det_prob`` and ``det_p_<class>`` the brightest
Gaussian's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .catalogue import column_values, find_column, make_table, require_columns
from .sources import (
    FWHM,
    GROUP_TOL,
    SOURCES_NOTE,
    THRESH_ISL,
    Gaussians,
    covariances,
    group_components,
    s_codes,
    table_gaussians,
)

__all__ = ["source_list", "SOURCE_LIST_NOTE"]

SOURCE_LIST_NOTE = ("one row per source: flux the sum of its Gaussians' (errors in "
                    "quadrature), position the flux-weighted mean of their centres, "
                    "bmaj/bmin/pa the second moments of their summed model over its island "
                    "(where the island's Gaussians reach thresh_isl x rms, as PyBDSF), peak "
                    "its maximum, rms/peak_err/reliability the brightest Gaussian's")

#: meta of the component catalogue carried to its source list
_KEPT_META = ("creator", "image", "hdu", "plane", "bunit", "beam_bmaj_arcsec",
              "beam_bmin_arcsec", "beam_bpa_deg", "pixel_scale_arcsec", "radec_frame",
              "pa_convention", "flux", "errors", "classes")


def _moments(g: Gaussians, members: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centroid, covariance) of the members' summed model, weighted by flux ``w``."""
    mu = np.sum(w[:, None] * g.pos[members], axis=0)
    second = np.sum(w[:, None, None] * (g.cov[members]
                                        + g.pos[members][:, :, None] * g.pos[members][:, None, :]),
                    axis=0)
    return mu, second - np.outer(mu, mu)


def _island_moments(g: Gaussians, members: np.ndarray, island: np.ndarray,
                    thresh: float) -> np.ndarray | None:
    """The covariance of the ``members``' summed model over its island, the points where
    the ``island``'s Gaussians sum to at least ``thresh`` (a grid of a third of the
    narrowest sigma, 4 sigma beyond the centres); None where too few points are in."""
    sig = np.sqrt(np.linalg.eigvalsh(g.cov[island]))
    reach = 4.0 * float(sig.max())
    lo, hi = g.pos[members].min(axis=0) - reach, g.pos[members].max(axis=0) + reach
    step = max(float(sig.min()) / 3.0, float(np.max(hi - lo)) / 300.0)
    xs, ys = np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step)
    pts = np.stack([a.ravel() for a in np.meshgrid(xs, ys)], axis=1)
    w = g.model(members, pts) * (g.model(island, pts) >= thresh)
    if np.count_nonzero(w > 0) < 5 or w.sum() <= 0:
        return None
    mu = w @ pts / w.sum()
    d = pts - mu
    return np.einsum("k,ki,kj->ij", w, d, d) / w.sum()


def _axes(cov: np.ndarray) -> tuple[float, float, float]:
    """(FWHM major, FWHM minor, pa east of north in [0, 180)) of a covariance in (east,
    north); NaN for one that is not finite."""
    if not np.all(np.isfinite(cov)):
        return math.nan, math.nan, math.nan
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    vals = np.clip(vals, 0.0, None)
    e, n = vecs[:, 1]
    return (FWHM * math.sqrt(vals[1]), FWHM * math.sqrt(vals[0]),
            math.degrees(math.atan2(e, n)) % 180.0)


def _model_peak(g: Gaussians, members: np.ndarray) -> float:
    """The maximum of the members' summed model: fixed-point (mean-shift) climbs from each
    centre."""
    if members.size == 1:
        return float(g.peak[members[0]])
    inv = np.linalg.inv(g.cov[members])
    best = -math.inf
    for start in g.pos[members]:
        p = start.copy()
        for _ in range(100):
            d = p[None, :] - g.pos[members]
            wk = g.peak[members] * np.exp(-0.5 * np.einsum("ki,kij,kj->k", d, inv, d))
            a = np.einsum("k,kij->ij", wk, inv)
            if not np.all(np.isfinite(a)) or abs(np.linalg.det(a)) == 0:
                break
            new = np.linalg.solve(a, np.einsum("k,kij,kj->i", wk, inv, g.pos[members]))
            done = np.hypot(*(new - p)) < 1e-6 * math.sqrt(float(np.trace(g.cov[members[0]])))
            p = new
            if done:
                break
        best = max(best, float(g.model(members, p[None, :])[0]))
    return best


def _optional(table: Any, name: str) -> np.ndarray:
    v = column_values(table, name) if name in table.colnames else None
    return np.full(len(table), np.nan) if v is None else v


def source_list(table: Any, group_tol: float | None = None, thresh_isl: float = THRESH_ISL,
                what: str = "catalogue", sizes: str = "island") -> Any:
    """The source list of a catalogue of Gaussians (see the module docstring), one row per
    source in ``source_id`` order. ``group_tol`` None: the catalogue's own ``source_id``
    and ``s_code`` columns where it has them, else PyBDSF's default grouping; a number:
    grouped again with it.  ``sizes``: "island" (PyBDSF's: a source of several Gaussians
    measured over its island) or "model" (its whole summed model)."""
    if sizes not in ("island", "model"):
        raise ValueError(f"sizes: 'island' or 'model', received {sizes!r}")
    g, ref = table_gaussians(table, what)
    flux = column_values(table, "flux", what)
    if flux is None:
        require_columns(table, ("flux",), what)
    if group_tol is None and {"source_id", "s_code"} <= set(table.colnames):
        source = np.asarray(table["source_id"], np.int64)
        codes = np.asarray(table["s_code"]).astype(str)
        tol = table.meta.get("sources", {}).get("group_tol", GROUP_TOL)
        thresh_isl = table.meta.get("sources", {}).get("thresh_isl", thresh_isl)
    else:
        tol = GROUP_TOL if group_tol is None else group_tol
        source, island = group_components(g, tol, thresh_isl)
        codes = s_codes(source, island)
    own_island = (g.island if g.island is not None else
                  island if group_tol is not None or not {"source_id", "s_code"} <= set(
                      table.colnames) else None)
    flux_err = _optional(table, "flux_err")
    ids = (np.asarray(table["id"]) if "id" in table.colnames
           else np.arange(1, len(table) + 1))
    xy = "x" in table.colnames and "y" in table.colnames
    x, y = (_optional(table, "x"), _optional(table, "y")) if xy else (None, None)
    errs = {k: _optional(table, k) for k in ("ra_err", "dec_err", "x_err", "y_err")}
    peak_err = _optional(table, "peak_err")
    reliability = _optional(table, "reliability")  # (masked entries: NaN)
    isl = find_column(table, "island_id")  # (PyBDSF's Isl_id too)
    beam = _beam_cov(table.meta) if g.unit == "arcsec" else None
    rows: dict[str, list] = {k: [] for k in (
        "source_id", "island_id", "n_components", "s_code", "ra", "dec", "ra_err", "dec_err", "x", "y",
        "x_err", "y_err", "flux", "flux_err", "peak", "peak_err", "rms", "snr", "bmaj", "bmin",
        "pa", "bmaj_deconv", "bmin_deconv", "pa_deconv", "resolved", "edge", "deblended",
        "reliability", "component_ids")}
    # each source's rows, in table order, by one sort (not a scan of the table per source)
    by_source = np.argsort(source, kind="stable")
    ids_sorted = source[by_source]
    cuts = np.flatnonzero(np.diff(ids_sorted)) + 1
    groups = dict(zip(ids_sorted[np.r_[0, cuts]].tolist(), np.split(by_source, cuts))) \
        if len(source) else {}
    tops = []  # each source's brightest Gaussian
    for s in range(1, int(source.max(initial=0)) + 1):
        members = groups.get(s, np.zeros(0, np.int64))
        if not members.size:
            continue
        top = members[int(np.nanargmax(np.where(np.isfinite(g.peak[members]),
                                                g.peak[members], -np.inf)))] \
            if np.any(np.isfinite(g.peak[members])) else members[0]
        f = flux[members]
        w = f / f.sum() if np.all(np.isfinite(f)) and f.sum() > 0 else \
            np.full(members.size, 1.0 / members.size)
        mu, cov = _moments(g, members, w) if members.size > 1 else (g.pos[top], g.cov[top])
        if sizes == "island" and members.size > 1 and g.ok[members].all():
            isl_rows = (members if own_island is None
                        else np.flatnonzero(own_island == own_island[top]))
            isl_rows = isl_rows[g.ok[isl_rows]]
            limited = _island_moments(g, members, isl_rows, thresh_isl * float(g.rms[top]))
            cov = cov if limited is None else limited
        bmaj, bmin, pa = _axes(cov)
        tops.append(top)
        rows["source_id"].append(s)
        rows["island_id"].append(int(np.asarray(table[isl])[top]) if isl else 0)
        rows["n_components"].append(members.size)
        rows["s_code"].append("M" if members.size > 1 else str(codes[members[0]]))
        if ref is not None:
            dec = ref[1] + mu[1] / 3600.0
            rows["ra"].append((ref[0] + mu[0] / 3600.0 / math.cos(math.radians(dec))) % 360.0)
            rows["dec"].append(dec)
        if xy:
            rows["x"].append(float(np.sum(w * x[members])))
            rows["y"].append(float(np.sum(w * y[members])))
        for k, v in errs.items():
            rows[k].append(float(np.sqrt(np.sum((w * v[members]) ** 2))))
        rows["flux"].append(float(f.sum()))
        rows["flux_err"].append(float(np.sqrt(np.sum(flux_err[members] ** 2))))
        peak = _model_peak(g, members) if g.ok[members].all() else float(g.peak[top])
        rows["peak"].append(peak)
        rows["peak_err"].append(float(peak_err[top]))
        rows["rms"].append(float(g.rms[top]))
        rows["snr"].append(peak / float(g.rms[top]) if g.rms[top] > 0 else math.nan)
        rows["bmaj"].append(bmaj)
        rows["bmin"].append(bmin)
        rows["pa"].append(pa)
        dmaj, dmin, dpa = (_axes(cov - beam) if beam is not None
                           else (math.nan, math.nan, math.nan))
        rows["bmaj_deconv"].append(dmaj)
        rows["bmin_deconv"].append(dmin)
        rows["pa_deconv"].append(dpa)
        for k in ("edge", "deblended", "resolved"):
            rows[k].append(bool(np.any(np.asarray(table[k])[members]))
                           if k in table.colnames else False)
        rows["resolved"][-1] |= members.size > 1
        rows["reliability"].append(float(reliability[top]))
        rows["component_ids"].append(",".join(str(int(i)) for i in ids[members]))
    drop = set()
    if ref is None:
        drop |= {"ra", "dec", "ra_err", "dec_err"}
    if not xy:
        drop |= {"x", "y", "x_err", "y_err"}
    if beam is None:
        drop |= {"bmaj_deconv", "bmin_deconv", "pa_deconv"}
    for k in ("edge", "deblended", "reliability", "resolved"):
        if k not in table.colnames:
            drop.add(k)
    if not isl:
        drop.add("island_id")
    cols = {k: np.asarray(v) for k, v in rows.items() if k not in drop}
    if not len(rows["source_id"]):  # typed empty columns
        cols = {k: np.zeros(0, np.int64 if k in ("source_id", "island_id", "n_components") else
                            (str if k in ("s_code", "component_ids") else np.float64))
                for k in cols}
    top_rows = np.asarray(tops, np.int64)
    for k in (c for c in table.colnames if c.startswith("det_")):  # the detector's classes
        cols[k] = np.asarray(table[k])[top_rows]
    units = {k: str(table[k].unit) for k in ("bmaj", "bmin", "peak", "peak_err", "rms", "flux",
                                             "flux_err")
             if k in table.colnames and getattr(table[k], "unit", None) is not None and k in cols}
    if g.unit == "pix":  # sizes in pixels, as the catalogue's without a WCS
        units.update(bmaj="pix", bmin="pix")
    meta = {k: table.meta[k] for k in _KEPT_META if k in table.meta}
    meta["sources"] = {"note": SOURCES_NOTE, "group_tol": float(tol),
                       "thresh_isl": float(thresh_isl), "list": SOURCE_LIST_NOTE,
                       "sizes": sizes}
    return make_table(cols, meta, units)


def _beam_cov(meta: dict) -> np.ndarray | None:
    """The restoring beam's covariance in (east, north) arcsec from a catalogue's
    metadata, or None."""
    try:
        bmaj, bmin = float(meta["beam_bmaj_arcsec"]), float(meta["beam_bmin_arcsec"])
        bpa = float(meta.get("beam_bpa_deg", 0.0))
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(bmaj) and math.isfinite(bmin) and bmaj > 0 and bmin > 0):
        return None
    return covariances([bmaj], [bmin], [bpa if math.isfinite(bpa) else 0.0])[0]


