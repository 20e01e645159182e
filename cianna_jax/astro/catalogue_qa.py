"""A catalogue's quality at a glance, with no truth: the figure survey papers show.

Four panels from the catalogue alone: the integrated over peak flux against SNR (near 1 for
unresolved sources, widening at low SNR as the errors do; resolved sources above; the
catalogue's ``resolved`` flag beside the LoTSS envelope, :func:`envelope`), the position errors against SNR with the expectation for a
point source (Condon 1997: about FWHM / (2 SNR) per axis for a beam-sized source fit), the
distribution of fluxes, and the sources on the sky coloured by the local rms (flagged ones
marked): where the noise rises, where the edges and blends are.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .catalogue import CatalogueError, column_values

__all__ = ["qa_plot", "qa_numbers", "envelope"]


def _col(t: Any, name: str) -> np.ndarray | None:
    v = column_values(t, name)
    return None if v is None else np.asarray(v, np.float64)


def qa_numbers(table: Any, what: str = "catalogue") -> dict[str, Any]:
    """The figure's numbers: per SNR bin (edges 3, 5, 10, 20, 50, 100, 1000) the median and
    robust scatter of S_int / S_peak of the unresolved sources and the median position error;
    the fraction resolved; the median rms."""
    flux, peak, snr = _col(table, "flux"), _col(table, "peak"), _col(table, "snr")
    if flux is None or peak is None or snr is None:
        raise CatalogueError(f"{what}: the quality figure needs flux, peak and snr columns")
    if not len(table):
        raise CatalogueError(f"{what}: no sources: nothing to draw")
    resolved = (np.asarray(table["resolved"], bool) if "resolved" in table.colnames
                else np.zeros(len(table), bool))
    err = _col(table, "ra_err")
    edges = np.array([3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux / peak
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = (snr >= lo) & (snr < hi) & np.isfinite(ratio)
        u = s & ~resolved
        q = np.percentile(ratio[u], [16, 50, 84]) if u.sum() >= 3 else [math.nan] * 3
        e = float(np.nanmedian(err[s])) if err is not None and s.any() else math.nan
        rows.append({"snr": (float(lo), float(hi)), "n": int(s.sum()),
                     "ratio_median": float(q[1]), "ratio_scatter": float((q[2] - q[0]) / 2),
                     "pos_err_median": e, "resolved": int((s & resolved).sum())})
    rms = _col(table, "rms")
    env_snr, env = envelope(snr, ratio)
    above = _above_envelope(snr, ratio, env_snr, env)
    return {"bins": rows, "n": len(table),
            "resolved_fraction": float(resolved.mean()) if len(table) else math.nan,
            "median_rms": float(np.nanmedian(rms)) if rms is not None and len(table) else math.nan,
            "envelope": {"snr": env_snr.tolist(), "ln_ratio": env.tolist()},
            "above_envelope_fraction": float(np.mean(above)),
            "agree_with_resolved": float(np.mean(above == resolved))}


def envelope(snr: np.ndarray, ratio: np.ndarray, level: float = 99.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """The envelope of unresolved sources in ln(S_int / S_peak) against SNR, as LoTSS draws
    it (Shimwell et al. 2019): the sources below ratio 1 are unresolved ones scattered down by
    the noise; mirrored, their ``level`` percentile per SNR bin (bins of 30 such sources
    at least, by SNR rank) bounds where unresolved sources scatter up to. Returns the bins'
    median SNR and that bound (ln ratio), monotonic (never rising with SNR)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lr = np.log(ratio)
    low = np.isfinite(lr) & (lr < 0) & np.isfinite(snr) & (snr > 0)
    s, v = snr[low], -lr[low]
    if s.size < 30:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(s)
    groups = np.array_split(order, max(1, s.size // 30))
    xs = np.array([np.median(s[g]) for g in groups])
    ys = np.array([np.percentile(v[g], level) for g in groups])
    return xs, np.maximum.accumulate(ys[::-1])[::-1]


def _above_envelope(snr, ratio, env_snr, env) -> np.ndarray:
    """Sources above the envelope (``ln ratio`` over it at their SNR, interpolated in log
    SNR, the ends held): resolved by the LoTSS criterion; none without an envelope."""
    if not env_snr.size:
        return np.zeros(len(snr), bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.interp(np.log(np.clip(snr, 1e-9, None)), np.log(env_snr), env)
        return np.nan_to_num(np.log(ratio) > bound, nan=False)


def qa_plot(table: Any, *, title: str = "Catalogue quality", what: str = "catalogue",
            numbers: dict[str, Any] | None = None) -> Any:
    """The four panels of the module docstring (matplotlib figure); ``numbers``: the
    table's :func:`qa_numbers` when already computed."""
    from .injection import flux_unit
    from .plots import finish_panels, pyplot

    q = numbers if numbers is not None else qa_numbers(table, what)  # (refuses a catalogue
    # without the columns, by name)
    plt = pyplot()
    flux, peak, snr = _col(table, "flux"), _col(table, "peak"), _col(table, "snr")
    resolved = (np.asarray(table["resolved"], bool) if "resolved" in table.colnames
                else np.zeros(len(table), bool))
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    (a1, a2), (a3, a4) = axes
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux / peak
    for sel, colour, label in ((~resolved, "C0", "unresolved"), (resolved, "C3", "resolved")):
        ok = sel & np.isfinite(ratio) & (snr > 0)
        a1.scatter(snr[ok], ratio[ok], s=6, alpha=0.6, color=colour, label=f"{label} ({ok.sum()})")
    a1.axhline(1.0, color="k", lw=0.8)
    env_snr, env = (np.asarray(q["envelope"][k], np.float64) for k in ("snr", "ln_ratio"))
    if env_snr.size:
        a1.plot(env_snr, np.exp(env), "k--", lw=1, label="unresolved envelope (99%, mirrored)")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("SNR (peak / local rms)")
    a1.set_ylabel("integrated / peak flux (beam)")
    a1.legend(fontsize=8)
    err = _col(table, "ra_err")
    bmaj = table.meta.get("beam_bmaj_arcsec") if hasattr(table, "meta") else None
    if err is not None:
        ok = np.isfinite(err) & (err > 0) & (snr > 0)
        a2.scatter(snr[ok], err[ok], s=6, alpha=0.6, color="C0", label="ra_err")
        if bmaj and math.isfinite(float(bmaj)) and ok.any():
            x = np.logspace(np.log10(snr[ok].min()), np.log10(snr[ok].max()), 50)
            a2.plot(x, float(bmaj) / (2 * x), "k--", lw=1, label="FWHM / (2 SNR)")
        a2.set_xscale("log")
        a2.set_yscale("log")
        a2.legend(fontsize=8)
    a2.set_xlabel("SNR (peak / local rms)")
    a2.set_ylabel("position error (arcsec)")
    good = np.isfinite(flux) & (flux > 0)
    if good.any():
        scale, unit = flux_unit(np.array([flux[good].min(), flux[good].max()]))
        bins = np.logspace(np.log10(flux[good].min()), np.log10(flux[good].max()), 30)
        a3.hist(flux[good] * scale, bins=bins * scale, color="C0")
        a3.set_xscale("log")
        a3.set_xlabel(f"integrated flux density ({unit})")
    a3.set_ylabel("sources")
    ra, dec, rms = _col(table, "ra"), _col(table, "dec"), _col(table, "rms")
    x, y, names = (ra, dec, ("RA (deg)", "Dec (deg)")) if ra is not None else (
        _col(table, "x"), _col(table, "y"), ("x (pixel)", "y (pixel)"))
    if x is not None and y is not None:
        if ra is not None:  # RA across 0: continuous
            x = np.where(x > 180.0, x - 360.0, x) if np.ptp(x) > 180 else x
        sc = a4.scatter(x, y, s=5, c=rms if rms is not None else "C0", cmap="viridis")
        if rms is not None:
            fig.colorbar(sc, ax=a4, label="local rms (Jy/beam)")
        flagged = np.zeros(len(table), bool)
        for name in ("edge", "blended", "deblended"):
            if name in table.colnames:
                flagged |= np.asarray(table[name], bool)
        if flagged.any():
            a4.scatter(x[flagged], y[flagged], s=25, facecolors="none", edgecolors="C3",
                       label=f"flagged ({flagged.sum()})")
            a4.legend(fontsize=8)
        if ra is not None:
            a4.invert_xaxis()  # east to the left
        a4.set_xlabel(names[0])
        a4.set_ylabel(names[1])
    return finish_panels(fig, axes.ravel(), f"{title} ({len(table)} sources)")
