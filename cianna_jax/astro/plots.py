"""Validation figures (matplotlib, optional extra ``plot``): field overlay, completeness and
reliability vs SNR, flux recovery, precision-recall over the objectness threshold.

Each function returns a matplotlib Figure; :func:`save_figure` writes it atomically.
Matplotlib is imported when a function is called, with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from ._deps import require
from .injection import InjectionScores, flux_unit
from .reliability import ReliabilityEstimate, ThresholdScan
from .scores import BinnedScores
from .source_counts import SourceCounts

__all__ = ["field_overlay", "spectral_index_plot", "variability_plot", "polarisation_plot",
           "rm_plot", "completeness_reliability", "flux_recovery", "pr_curve_plot",
           "reliability_plot", "injection_plot", "counts_plot", "save_figure"]


def _plt() -> Any:
    mpl = require("matplotlib")
    mpl.use("Agg", force=False)
    return require("matplotlib.pyplot")


def _finish_panels(fig: Any, axes: Any, title: str) -> Any:
    """A figure of several panels finished alike: a light grid on each, ``title`` above
    them all, a tight layout; returns the figure."""
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: matplotlib's pyplot (Agg unless a backend is chosen) and the panels' finish, for the
#: figures of other modules
pyplot = _plt
finish_panels = _finish_panels


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
    """Save a figure (format by extension) atomically and close it."""
    plt = _plt()
    buf = io.BytesIO()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def _axis_names(wcs: Any) -> tuple[str, str]:
    """Axis labels of a celestial WCS's longitude and latitude."""
    kind = str(wcs.wcs.ctype[0]).upper()[:4]
    return {"GLON": ("Galactic longitude", "Galactic latitude"),
            "ELON": ("Ecliptic longitude", "Ecliptic latitude"),
            "SLON": ("Supergalactic longitude", "Supergalactic latitude")}.get(
        kind, ("Right ascension", "Declination"))


def field_overlay(
    image: np.ndarray,
    *,
    wcs: Any = None,
    step: int = 1,
    unit: str = "Jy/beam",
    rms: float | None = None,
    truth_xy: tuple[np.ndarray, np.ndarray] | None = None,
    truth_matched: np.ndarray | None = None,
    det_xy: tuple[np.ndarray, np.ndarray] | None = None,
    det_matched: np.ndarray | None = None,
    title: str = "Detections over the field",
    max_markers: int = 20000,
) -> Any:
    """The image (``step``-decimated view of the full image, asinh stretch in units of ``rms``)
    with WCS axes when ``wcs`` is given, a colour bar, and markers: matched true sources
    (green circles), missed true sources (red circles), matched detections (cyan +) and false
    detections (orange x).  Positions are full-image pixels."""
    plt = _plt()
    img = np.asarray(image, np.float64)
    finite = img[np.isfinite(img)]
    s = rms if rms else (1.4826 * np.median(np.abs(finite - np.median(finite))) if finite.size else 1.0)
    view_wcs = None if wcs is None else (wcs[::step, ::step] if step > 1 else wcs)
    kw = {"projection": view_wcs} if view_wcs is not None else {}
    fig = plt.figure(figsize=(9, 8))
    ax = fig.add_subplot(1, 1, 1, **kw)
    scale = max(s, 1e-30)
    disp = np.arcsinh(img / (3 * scale))
    vmin, vmax = (np.nanpercentile(disp, [1, 99.7]) if finite.size else (0, 1))
    extent = (-0.5, img.shape[1] * step - 0.5, -0.5, img.shape[0] * step - 0.5)
    im = ax.imshow(disp, origin="lower", cmap="gray_r", vmin=vmin, vmax=vmax,
                   extent=extent if view_wcs is None else None)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(f"asinh(I / 3 rms), rms = {s:.3g} {unit}")

    def draw(xy, mask, **style):
        if xy is None:
            return
        x, y = np.asarray(xy[0], np.float64), np.asarray(xy[1], np.float64)
        if view_wcs is not None and step > 1:  # full-image pixels -> decimated pixels
            x, y = (x + 0.5) / step - 0.5, (y + 0.5) / step - 0.5
        sel = np.ones(x.size, bool) if mask is None else np.asarray(mask, bool)
        idx = np.flatnonzero(sel)[:max_markers]
        ax.scatter(x[idx], y[idx], **style)

    tm = truth_matched
    draw(truth_xy, tm, s=60, facecolors="none", edgecolors="limegreen", linewidths=1.0,
         label="true, matched")
    draw(truth_xy, None if tm is None else ~np.asarray(tm, bool), s=60, facecolors="none",
         edgecolors="red", linewidths=1.0, label="true, missed")
    dm = det_matched
    draw(det_xy, dm, s=25, marker="+", c="deepskyblue", linewidths=1.0, label="detected, matched")
    draw(det_xy, None if dm is None else ~np.asarray(dm, bool), s=25, marker="x", c="orange",
         linewidths=1.0, label="detected, false")
    if wcs is not None:  # the image's own sky axes (galactic for a Galactic-plane image)
        lon, lat = _axis_names(wcs)
        ax.coords[0].set_axislabel(lon)
        ax.coords[1].set_axislabel(lat)
    else:
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    return fig


def completeness_reliability(curves: Mapping[str, BinnedScores], *,
                             title: str = "Completeness and reliability vs SNR") -> Any:
    """Completeness (recall) and reliability (precision) per SNR bin, one line per finder."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True)
    for name, b in curves.items():
        for ax, v, lab in zip(axes, (b.recall, b.precision, b.f1),
                              ("completeness (recall)", "reliability (precision)", "F1")):
            ax.plot(_bin_middles(b.edges), v, marker="o", label=name)
            ax.set_ylabel(lab)
    edges = next(iter(curves.values())).edges if curves else np.array([1.0, 10.0])
    for ax in axes:
        _snr_axis(ax, edges, "SNR bin (true peak / local rms; false detections: measured)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(loc="lower right")
    return _finish_panels(fig, axes, title)


def _bin_middles(edges: np.ndarray) -> np.ndarray:
    """Geometric middles of SNR bins (an open last bin drawn at twice its lower edge, a
    first bin from 0 or -inf at half its upper edge), for a log axis."""
    e = np.asarray(edges, np.float64)
    hi = np.where(np.isfinite(e[1:]), e[1:], e[:-1] * 2)
    lo = np.where(e[:-1] > 0, e[:-1], hi / 2)
    return np.sqrt(lo * hi)


def _snr_axis(ax: Any, edges: np.ndarray, label: str) -> None:
    """A log SNR axis ticked at the bins' finite edges (those closer than 15% to the
    previous tick left out: their labels would overlap)."""
    ticks: list[float] = []
    for e in (float(e) for e in edges if 0 < e < np.inf):
        if not ticks or e >= 1.15 * ticks[-1]:
            ticks.append(e)
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(_plt().NullFormatter())
    ax.set_xlabel(label)


def reliability_plot(estimate: ReliabilityEstimate, measured: np.ndarray | None = None, *,
                     scan: ThresholdScan | None = None, chosen: float | None = None,
                     target: float | None = None, scan_measured: np.ndarray | None = None,
                     title: str = "Reliability from the inverted image") -> Any:
    """The inverted-image test (:mod:`.reliability`): the estimated reliability per bin of
    measured SNR with its 1-sigma errors (and ``measured``, a truth's, when known), and
    the detections counted on the image and on the inverted image; with a threshold
    ``scan``, a third panel: the catalogue's estimated reliability at each objectness
    threshold, the ``target`` and the ``chosen`` threshold (``scan_measured``: a truth's
    precision at each)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if scan is None else 3,
                             figsize=(11, 4.2) if scan is None else (16, 4.2))
    a1, a2 = axes[:2]
    mid = _bin_middles(estimate.edges)
    seen = (estimate.n_image > 0) | (estimate.n_inverted > 0)
    r, err = estimate.reliability, estimate.false_fraction_err
    yerr = np.stack([np.minimum(err, r), np.minimum(err, 1.0 - r)])[:, seen]  # within [0, 1]
    a1.errorbar(mid[seen], r[seen], yerr=yerr, marker="o", capsize=3,
                label="estimated: 1 - n(inverted) / n(image), pooled")
    if measured is not None:
        a1.plot(mid[seen], np.asarray(measured)[seen], marker="s", ls="--",
                label="measured: detections matched to the truth")
    a1.set_ylabel("reliability (fraction of real detections)")
    a1.set_ylim(-0.02, 1.05)
    a1.legend(loc="lower right", fontsize=8)
    a2.plot(mid, estimate.n_image, marker="o",
            label=f"on the image ({int(estimate.n_image.sum())})")
    a2.plot(mid, estimate.n_inverted, marker="v",
            label=f"on the inverted image ({int(estimate.n_inverted.sum())})")
    a2.set_yscale("symlog", linthresh=1.0)
    a2.set_ylabel("detections per SNR bin")
    a2.legend(loc="upper right", fontsize=8)
    for ax in (a1, a2):
        _snr_axis(ax, estimate.edges, "measured SNR (fitted peak / local rms)")
    if scan is not None:
        a3 = axes[2]
        a3.plot(scan.thresholds, scan.reliability, marker="o",
                label="estimated: 1 - n(inverted) / n(image)")
        if scan_measured is not None:
            a3.plot(scan.thresholds, scan_measured, marker="s", ls="--",
                    label="measured: precision against the truth")
        if target is not None:
            a3.axhline(target, color="k", ls=":", lw=1, label=f"target {target:g}")
        if chosen is not None:
            a3.axvline(chosen, color="C3", lw=1, label=f"chosen threshold {chosen:g}")
        a3.set_xlabel("objectness threshold")
        a3.set_ylabel("catalogue reliability above the threshold")
        a3.set_ylim(-0.02, 1.05)
        a3.legend(loc="lower right", fontsize=8)
    return _finish_panels(fig, axes, title)


def _log_flux_axis(ax: Any, label: str) -> None:
    """A log flux axis ticked at 1, 2, 5 x 10^k with plain labels."""
    plt = _plt()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(require("matplotlib.ticker").LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(label)


def injection_plot(scores: InjectionScores, by_flux: InjectionScores | None = None, *,
                   truth: tuple[np.ndarray, np.ndarray] | None = None,
                   title: str = "Source injection") -> Any:
    """Source injection (:mod:`.injection`) per bin of injected SNR: the completeness with
    its Wilson 1-sigma interval (``truth``: a truth's completeness, (bin edges, values), to
    compare), the measured / injected flux (median, 16th-84th percentiles) and the
    detector's new detections per injected source; ``by_flux``: a fourth panel, the
    completeness per bin of injected flux (Jy edges)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3 if by_flux is None else 4,
                             figsize=(16, 4.2) if by_flux is None else (20, 4.2))
    a1, a2, a3 = axes[:3]
    e = scores.edges
    mid = _bin_middles(e)
    seen = scores.n > 0
    c = scores.completeness
    lo, hi = scores.interval
    a1.errorbar(mid[seen], c[seen], yerr=np.maximum(np.stack([c - lo, hi - c]), 0)[:, seen],
                marker="o",
                capsize=3, label=f"injected sources ({int(scores.n.sum())})")
    if truth is not None:
        tm = _bin_middles(np.asarray(truth[0]))
        a1.plot(tm, truth[1], marker="s", ls="--", label="true sources (a truth catalogue)")
    for level in (0.5, 0.9):
        a1.axhline(level, color="k", ls=":", lw=0.8)
    a1.set_ylabel("completeness (fraction found)")
    a1.set_ylim(-0.02, 1.05)
    a1.legend(loc="lower right", fontsize=8)
    got = scores.n_found > 0
    r = scores.flux_ratio
    a2.errorbar(mid[got], r[got], yerr=np.maximum(np.stack([r - scores.flux_ratio_lo,
                                                            scores.flux_ratio_hi - r]), 0)[:, got],
                marker="o", capsize=3, label="median, 16th-84th percentiles")
    a2.axhline(1.0, color="k", ls=":", lw=0.8)
    a2.set_ylabel("measured / injected integrated flux")
    a2.legend(loc="upper right", fontsize=8)
    a3.plot(mid[seen], scores.spurious_rate[seen], marker="o", color="C3",
            label=f"new detections ({int(scores.n_spurious.sum())})")
    a3.set_ylim(bottom=0)
    a3.set_ylabel("new detections per injected source")
    a3.legend(loc="upper left", fontsize=8)
    used = np.flatnonzero(seen)
    span = (e[used[0]], e[used[-1] + 1]) if used.size else (e[0], e[-1])
    ticks = [t for t in (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if span[0] <= t <= span[1]]
    for ax in axes[:3]:
        _snr_axis(ax, np.array(ticks, float), "injected SNR (peak / local rms)")
        ax.set_xlim(*span)
    if by_flux is not None:
        a4 = axes[3]
        scale, unit = flux_unit(by_flux.edges)
        fe = by_flux.edges * scale
        fm = np.sqrt(fe[:-1] * fe[1:])
        fs = by_flux.n > 0
        fc = by_flux.completeness
        flo, fhi = by_flux.interval
        a4.errorbar(fm[fs], fc[fs], yerr=np.maximum(np.stack([fc - flo, fhi - fc]), 0)[:, fs],
                    marker="o", capsize=3, color="C2", label="injected sources")
        for level in (0.5, 0.9):
            a4.axhline(level, color="k", ls=":", lw=0.8)
        _log_flux_axis(a4, f"injected integrated flux ({unit})")
        a4.set_ylabel("completeness (fraction found)")
        a4.set_ylim(-0.02, 1.05)
        a4.legend(loc="lower right", fontsize=8)
    return _finish_panels(fig, axes, title)


def counts_plot(counts: SourceCounts, *, truth: SourceCounts | None = None,
                title: str = "Source counts") -> Any:
    """Euclidean-normalised differential source counts (:mod:`.source_counts`): the
    catalogue's as counted and corrected (reliability over completeness, 1-sigma Poisson
    errors; bins below the completeness limit hollow), and a ``truth``'s when known."""
    plt = _plt()
    fig, ax = plt.subplots(1, 1, figsize=(7, 5))
    scale, unit = flux_unit(counts.edges)
    mid = counts.middle * scale
    eu, err = counts.euclidean
    have = counts.n > 0
    ax.plot(mid[have], counts.euclidean_raw[have], ls=":", marker=".", color="0.5",
            label="catalogue, as counted")
    for sel, face, label in ((have & counts.complete, "C0", "corrected: reliability / "
                              "completeness"), (have & ~counts.complete, "none",
                                                "corrected, completeness below the limit")):
        if sel.any():
            ax.errorbar(mid[sel], eu[sel], yerr=np.minimum(err[sel], eu[sel] * 0.999),
                        marker="o", ls="", capsize=3, color="C0", mfc=face, label=label)
    if truth is not None:
        th = truth.n > 0
        ax.plot(truth.middle[th] * scale, truth.euclidean[0][th], marker="s", ls="--",
                color="C1", label="truth")
    _log_flux_axis(ax, f"integrated flux density S ({unit})")
    ax.set_yscale("log")
    ax.set_ylabel("S^2.5 dN/dS (Jy^1.5 sr^-1)")
    ax.legend(loc="lower right", fontsize=8)
    return _finish_panels(fig, [ax], f"{title} ({counts.area_sr * (180 / np.pi) ** 2:.3g} deg^2)")


def flux_recovery(true_flux: np.ndarray, det_flux: np.ndarray, *, unit: str = "Jy",
                  title: str = "Flux recovery of matched sources") -> Any:
    """Measured vs true integrated flux (log-log) with the 1:1 line, and their ratio."""
    plt = _plt()
    t, d = np.asarray(true_flux, np.float64), np.asarray(det_flux, np.float64)
    ok = (t > 0) & (d > 0) & np.isfinite(t) & np.isfinite(d)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    a1.scatter(t[ok], d[ok], s=6, alpha=0.6)
    if ok.any():
        lim = [min(t[ok].min(), d[ok].min()) * 0.8, max(t[ok].max(), d[ok].max()) * 1.25]
        a1.plot(lim, lim, "k--", lw=1, label="1:1")
        a1.legend()
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel(f"true flux ({unit})")
    a1.set_ylabel(f"measured flux ({unit})")
    a2.scatter(t[ok], d[ok] / t[ok], s=6, alpha=0.6)
    a2.axhline(1.0, color="k", ls="--", lw=1)
    a2.set_xscale("log")
    a2.set_xlabel(f"true flux ({unit})")
    a2.set_ylabel("measured / true flux")
    a2.set_ylim(0, 2.5)
    return _finish_panels(fig, (a1, a2), title)


def line_recovery(true_w20: np.ndarray, det_w20: np.ndarray, offset: np.ndarray,
                  snr: np.ndarray, *, title: str = "Line recovery of matched lines") -> Any:
    """A cube's matched lines: measured vs true w20 (channels) with the 1:1 line, and the
    centre offset (detected - true, channels) against the true peak SNR."""
    plt = _plt()
    t, d = np.asarray(true_w20, np.float64), np.asarray(det_w20, np.float64)
    dz, q = np.asarray(offset, np.float64), np.asarray(snr, np.float64)
    ok = np.isfinite(t) & np.isfinite(d) & (t > 0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    a1.scatter(t[ok], d[ok], s=8, alpha=0.7)
    if ok.any():
        lim = [0.0, 1.1 * max(t[ok].max(), d[ok].max())]
        a1.plot(lim, lim, "k--", lw=1, label="1:1")
        a1.legend(loc="upper left")
    a1.set_xlabel("true w20 (channels)")
    a1.set_ylabel("measured w20 (channels)")
    a1.set_title("line width at 20% of the peak")
    sel = np.isfinite(dz) & np.isfinite(q) & (q > 0)
    a2.scatter(q[sel], dz[sel], s=8, alpha=0.7)
    a2.axhline(0.0, color="k", ls="--", lw=1)
    a2.set_xscale("log")
    a2.set_xlabel("true peak SNR")
    a2.set_ylabel("centre offset, detected - true (channels)")
    a2.set_title("line centre")
    return _finish_panels(fig, (a1, a2), title)


def hi_mass_redshift(true_z: np.ndarray, true_logm: np.ndarray, found: np.ndarray,
                     false_z: np.ndarray, false_logm: np.ndarray, *,
                     title: str = "HI mass against redshift") -> Any:
    """An HI survey's selection: the true lines' HI mass (log10 Msun) against their
    redshift, those the catalogue found filled and those it missed open, and its false
    detections (their measured masses) as crosses."""
    plt = _plt()
    z, lm = np.asarray(true_z, np.float64), np.asarray(true_logm, np.float64)
    hit = np.asarray(found, bool)
    fig, ax = plt.subplots(figsize=(7, 5))
    ok = np.isfinite(z) & np.isfinite(lm)
    ax.scatter(z[ok & hit], lm[ok & hit], s=14, color="C0", label=f"found ({int((ok & hit).sum())})")
    ax.scatter(z[ok & ~hit], lm[ok & ~hit], s=14, facecolors="none", edgecolors="0.4",
               label=f"missed ({int((ok & ~hit).sum())})")
    fz, fl = np.asarray(false_z, np.float64), np.asarray(false_logm, np.float64)
    bad = np.isfinite(fz) & np.isfinite(fl)
    if bad.any():
        ax.scatter(fz[bad], fl[bad], s=30, marker="x", color="C3",
                   label=f"false detections ({int(bad.sum())})")
    ax.set_xlabel("redshift")
    ax.set_ylabel("log10 HI mass (Msun)")
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def pr_curve_plot(curve: Mapping[str, np.ndarray], *, operating: float | None = None,
                  label_every: int = 1, title: str = "Precision-recall over the objectness "
                                                       "threshold") -> Any:
    """Precision vs recall as the objectness threshold varies (thresholds written beside
    points; the operating threshold marked)."""
    plt = _plt()
    thr, p, r = (np.asarray(curve[k], np.float64) for k in ("threshold", "precision", "recall"))
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(r, p, marker="o", ms=3)
    last = None
    for i in range(0, thr.size, max(1, label_every)):
        if not (np.isfinite(r[i]) and np.isfinite(p[i])):
            continue
        if last is not None and np.hypot(r[i] - last[0], p[i] - last[1]) < 0.04:
            continue  # keep the labels apart
        ax.annotate(f"{thr[i]:.2f}", (r[i], p[i]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
        last = (r[i], p[i])
    if operating is not None and thr.size:
        k = int(np.argmin(np.abs(thr - operating)))
        ax.scatter([r[k]], [p[k]], s=80, facecolors="none", edgecolors="red",
                   label=f"operating threshold {operating:g}")
        ax.legend(loc="lower left")
    ax.set_xlabel("recall (completeness)")
    ax.set_ylabel("precision (reliability)")
    fig.text(0.5, -0.02, "numbers: objectness threshold", ha="center", fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig




def spectral_index_plot(table: Any, *, title: str = "Spectral indices") -> Any:
    """A :func:`.spectral_index.spectral_indices` table (or an
    :func:`.inband_alpha.inband_spectral_indices` one): alpha against the first
    catalogue's flux (the catalogue's; 1-sigma errors; the median and its 16-84% band), and
    alpha's histogram."""
    plt = _plt()
    inband = "flux_1" not in table.colnames
    flux = np.asarray(table["flux" if inband and "flux" in table.colnames else
                            "flux_ref" if inband else "flux_1"], np.float64)
    a = np.asarray(table["alpha"], np.float64)
    e = np.asarray(table["alpha_err"], np.float64)
    ok = np.isfinite(a) & np.isfinite(flux) & (flux > 0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    freqs = table.meta.get("frequencies_hz", [])
    first = f" at {freqs[0] / 1e6:g} MHz" if freqs and not inband else ""
    if ok.any():
        scale, unit = flux_unit(np.array([flux[ok].min(), flux[ok].max()]))
        a1.errorbar(flux[ok] * scale, a[ok], yerr=np.where(np.isfinite(e[ok]), e[ok], 0.0),
                    marker=".", ls="", alpha=0.6, elinewidth=0.6,
                    label="the catalogue's sources" if inband else "matched sources")
        lo, med, hi = np.percentile(a[ok], [16, 50, 84])
        if "alpha_limit" in table.colnames:
            lim = np.asarray(table["alpha_limit"], np.float64)
            sel = np.isfinite(lim) & np.isfinite(flux) & (flux > 0)
            upper = str(table["limit"][np.flatnonzero(sel)[0]]) == "<" if sel.any() else True
            a1.scatter(flux[sel] * scale, lim[sel], marker="v" if upper else "^", s=14,
                       color="0.5", label=f"not found at the second frequency ({sel.sum()})")
        a1.axhline(med, color="C1", label=f"median {med:.2f}")
        a1.axhspan(lo, hi, color="C1", alpha=0.15, label="16-84%")
        a2.hist(a[ok], bins=max(5, min(40, int(np.sqrt(ok.sum())) + 1)), color="C0")
        a2.axvline(med, color="C1", label=f"median {med:.2f}")
        _log_flux_axis(a1, f"integrated flux density{first} ({unit})")
        a1.legend(fontsize=8)
        a2.legend(fontsize=8)
    a1.set_ylabel("spectral index alpha (S ~ nu^alpha)")
    a2.set_xlabel("spectral index alpha (S ~ nu^alpha)")
    a2.set_ylabel("sources")
    span = (", ".join(f"{f / 1e6:g}" for f in freqs) if not inband or len(freqs) < 3 else
            f"{len(freqs)} planes, {freqs[0] / 1e6:.0f}-{freqs[-1] / 1e6:.0f}")
    if inband and title == "Spectral indices":
        title = "In-band spectral indices"
    return _finish_panels(fig, [a1, a2], f"{title} ({span} MHz; {int(ok.sum())} sources)")


def variability_plot(table: Any, *, title: str = "Variability", curves: int = 8) -> Any:
    """A :func:`.variability.variability` table: eta against v for the sources found at two
    epochs or more, |vs| against |m| with Mooley et al.'s thresholds (the variable sources
    marked), and the light curves (flux over the weighted mean, 1-sigma errors, forced
    fluxes hollow) of the ``curves`` variable sources of largest |vs|."""
    from .variability import M_THRESHOLD, VS_THRESHOLD

    plt = _plt()
    eta, v = np.asarray(table["eta"], np.float64), np.asarray(table["v"], np.float64)
    vs, m = np.abs(np.asarray(table["vs"], np.float64)), np.abs(np.asarray(table["m"], np.float64))
    var = np.asarray(table["variable"], bool)
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.5))
    _light_curves(a3, table, np.flatnonzero(var)[:curves])
    for sel, colour, label in ((~var, "C0", "not variable"), (var, "C3", "variable")):
        ok = sel & np.isfinite(eta) & np.isfinite(v) & (eta > 0) & (v > 0)
        a1.scatter(v[ok], eta[ok], s=8, color=colour, alpha=0.7, label=f"{label} ({ok.sum()})")
        ok2 = sel & np.isfinite(vs) & np.isfinite(m)
        a2.scatter(m[ok2], vs[ok2], s=8, color=colour, alpha=0.7, label=label)
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("v (coefficient of variation of the fluxes)")
    a1.set_ylabel("eta (weighted reduced chi-square)")
    a2.axhline(VS_THRESHOLD, color="k", ls="--", lw=1, label=f"|vs| = {VS_THRESHOLD:g}")
    a2.axvline(M_THRESHOLD, color="k", ls=":", lw=1, label=f"|m| = {M_THRESHOLD:g}")
    a2.set_yscale("symlog", linthresh=1.0)
    a2.set_ylim(bottom=0.0)
    a2.set_xlabel("|m| (modulation index)")
    a2.set_ylabel("|vs| (two-epoch statistic)")
    for ax in (a1, a2):
        ax.legend(fontsize=8)
    n_ep = len(table.meta.get("catalogues", []))
    return _finish_panels(fig, [a1, a2, a3],
                          f"{title} ({n_ep} epochs; {int(var.sum())} variable)")


def _light_curves(ax: Any, table: Any, rows: np.ndarray) -> None:
    """Flux over the weighted mean against epoch for the table's ``rows`` (forced fluxes
    hollow), on ``ax``."""
    k = len(table.meta.get("catalogues", []))
    epochs = np.arange(1, k + 1)
    for n, r in enumerate(rows):
        mean = float(table["flux_mean"][r])
        f = np.array([float(table[f"flux_{j}"][r]) for j in epochs]) / mean
        e = np.array([float(table[f"flux_err_{j}"][r]) for j in epochs]) / abs(mean)
        forced = np.array([bool(table[f"forced_{j}"][r]) if f"forced_{j}" in table.colnames
                           else False for j in epochs])
        colour = f"C{n % 10}"
        ax.errorbar(epochs + 0.04 * n, f, yerr=e, color=colour, marker="", ls="-", lw=1,
                    label=f"{table['ra'][r]:.4f} {table['dec'][r]:+.4f}")
        ax.scatter((epochs + 0.04 * n)[~forced], f[~forced], color=colour, s=18)
        ax.scatter((epochs + 0.04 * n)[forced], f[forced], facecolor="none", edgecolor=colour,
                   s=18)
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_xticks(epochs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("flux / weighted mean flux")
    ax.set_title("light curves of the variable sources (hollow: forced)", fontsize=9)
    if len(rows):
        ax.legend(fontsize=7, title="RA, Dec (deg)", title_fontsize=7)


def polarisation_plot(table: Any, *, title: str = "Polarisation") -> Any:
    """A :func:`.polarisation.polarisation` table: the polarised fraction against flux (the
    polarised sources with their errors, the others' upper limits), and the polarised
    sources' angles."""
    plt = _plt()
    flux = np.asarray(table["flux"], np.float64)
    frac = np.asarray(table["pol_frac"], np.float64)
    err = np.asarray(table["pol_frac_err"], np.float64)
    lim = np.asarray(table["pol_frac_limit"], np.float64)
    pol = np.asarray(table["polarised"], bool)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    good = np.isfinite(flux) & (flux > 0)
    if good.any():
        scale, unit = flux_unit(np.array([flux[good].min(), flux[good].max()]))
        up = good & ~pol & np.isfinite(lim) & (lim > 0)
        a1.scatter(flux[up] * scale, lim[up], marker="v", s=10, color="0.6",
                   label=f"upper limits ({up.sum()})")
        sel = good & pol
        a1.errorbar(flux[sel] * scale, frac[sel], yerr=np.nan_to_num(err[sel]), marker="o",
                    ls="", ms=3, color="C0", label=f"polarised ({sel.sum()})")
        _log_flux_axis(a1, f"integrated flux density, Stokes I ({unit})")
        a1.set_yscale("log")
        a1.legend(fontsize=8)
    a1.set_ylabel("polarised fraction")
    a2.hist(np.asarray(table["evpa"], np.float64)[pol], bins=18, range=(0, 180), color="C0")
    a2.set_xlabel("EVPA (deg, north through east)")
    a2.set_ylabel("polarised sources")
    return _finish_panels(fig, [a1, a2], f"{title} ({int(pol.sum())} of {len(table)} polarised)")


def rm_plot(table: Any, *, title: str = "Rotation measures") -> Any:
    """A :func:`.rm_synthesis.rm_table` table: the detected rotation measures against flux
    (1-sigma errors) and their histogram."""
    plt = _plt()
    det = np.asarray(table["rm_detected"], bool)
    flux = np.asarray(table["flux"], np.float64)
    rm = np.asarray(table["rm"], np.float64)
    err = np.asarray(table["rm_err"], np.float64)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    sel = det & np.isfinite(flux) & (flux > 0) & np.isfinite(rm)
    if sel.any():
        scale, unit = flux_unit(np.array([flux[sel].min(), flux[sel].max()]))
        a1.errorbar(flux[sel] * scale, rm[sel], yerr=np.nan_to_num(err[sel]), marker="o", ls="",
                    ms=3, label=f"detected ({sel.sum()})")
        _log_flux_axis(a1, f"integrated flux density, Stokes I ({unit})")
        a1.legend(fontsize=8)
        a2.hist(rm[sel], bins=max(5, min(30, int(np.sqrt(sel.sum())) + 1)), color="C0")
    a1.set_ylabel("rotation measure (rad m^-2)")
    a2.set_xlabel("rotation measure (rad m^-2)")
    a2.set_ylabel("sources")
    fwhm = table.meta.get("rmsf_fwhm_rad_m2", float("nan"))
    return _finish_panels(fig, [a1, a2], f"{title} ({int(det.sum())} of {len(table)}; RMSF "
                                         f"FWHM {fwhm:.3g} rad m^-2)")


def reference_plot(pairs: Any, *, title: str = "Against the reference catalogue") -> Any:
    """The pairs of :func:`.reference_check.reference_check` (its table, whose metadata
    holds the summary): the position offsets with their medians and robust scatter, and the
    flux ratio against the reference's flux with its median and scatter."""
    plt = _plt()
    s = pairs.meta["reference_check"]
    d_ra, d_dec = (np.asarray(pairs[c], np.float64) for c in ("d_ra", "d_dec"))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8))
    a1.scatter(d_ra, d_dec, s=8, alpha=0.6, color="C0", label=f"pairs ({len(pairs)})")
    a1.errorbar([s["d_ra"]], [s["d_dec"]], xerr=[s["d_ra_err"]], yerr=[s["d_dec_err"]],
                marker="+", ms=14, color="C3", ls="",
                label=f"median ({s['d_ra']:+.3f}\", {s['d_dec']:+.3f}\")")
    t = np.linspace(0, 2 * np.pi, 200)
    a1.plot(s["d_ra"] + s["scatter_ra"] * np.cos(t), s["d_dec"] + s["scatter_dec"] * np.sin(t),
            color="C3", lw=1, ls="--", label="robust scatter")
    a1.axhline(0, color="k", lw=0.8)
    a1.axvline(0, color="k", lw=0.8)
    a1.set_xlabel("RA offset x cos(Dec), ours - reference (arcsec)")
    a1.set_ylabel("Dec offset, ours - reference (arcsec)")
    a1.set_aspect("equal", adjustable="datalim")
    a1.legend(fontsize=8)
    ref = np.asarray(pairs["flux_ref_scaled"], np.float64)
    ratio = np.asarray(pairs["flux_ratio"], np.float64)
    good = np.isfinite(ref) & (ref > 0) & np.isfinite(ratio)
    used = np.asarray(pairs["for_flux"], bool)
    if good.any():
        scale, unit = flux_unit(np.array([ref[good].min(), ref[good].max()]))
        for sel, colour, label in ((good & used, "C0", "pairs"),
                                   (good & ~used, "0.6", "reference below min_snr x our rms")):
            if sel.any():
                a2.scatter(ref[sel] * scale, ratio[sel], s=8, alpha=0.6, color=colour,
                           label=f"{label} ({sel.sum()})")
        r, sc = s["flux_ratio"], s["flux_scatter"] * s["flux_ratio"]
        a2.axhline(r, color="C3", label=f"median {r:.3f} +- {s['flux_ratio_err']:.3f}")
        a2.axhspan(r - sc, r + sc, color="C3", alpha=0.15, label="robust scatter")
        a2.axhline(1.0, color="k", lw=0.8)
        _log_flux_axis(a2, f"reference flux density at our frequency ({unit})")
        a2.legend(fontsize=8)
    a2.set_ylabel("flux ratio, ours / reference")
    return _finish_panels(fig, [a1, a2], f"{title} ({len(pairs)} compact isolated pairs)")


def gallery_plot(stamps: list, table: Any, pixels: tuple, *, unit: str = "Jy/beam",
                 title: str = "Sources", per_row: int | None = None,
                 beam: tuple[float, float, float] | None = None) -> Any:
    """Cutouts side by side (:func:`.cutouts.cut_stamps`), each in an asinh stretch of its
    own noise, with the FWHM ellipses of every catalogue Gaussian in it (``pixels``:
    :func:`.cutouts.catalogue_pixels`; the source's own in red), its id, flux and SNR, and
    the restoring ``beam`` (FWHM major, minor in pixels, angle from +x in degrees) filled
    in a corner."""
    from matplotlib.patches import Ellipse

    plt = _plt()
    n = len(stamps)
    cols = per_row or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.75 * rows + 0.6), squeeze=False)
    x, y, major, minor, angle = pixels
    flux = np.asarray(table["flux"], np.float64) if "flux" in table.colnames else None
    snr = np.asarray(table["snr"], np.float64) if "snr" in table.colnames else None
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, len(table) + 1)
    codes = np.asarray(table["s_code"]).astype(str) if "s_code" in table.colnames else None
    fscale, funit = flux_unit(np.array([np.nanmin(flux), np.nanmax(flux)])) \
        if flux is not None and np.isfinite(flux).any() else (1.0, "Jy")
    for ax, s in zip(axes.ravel(), stamps):
        d = np.asarray(s.data, np.float64)
        finite = d[np.isfinite(d)]
        rms = 1.4826 * np.median(np.abs(finite - np.median(finite))) if finite.size else 1.0
        disp = np.arcsinh(d / (3 * max(rms, 1e-30)))
        lo, hi = np.nanpercentile(disp, [1, 99.8]) if finite.size else (0, 1)
        h, w = d.shape
        ax.imshow(disp, origin="lower", cmap="gray_r", vmin=lo, vmax=hi,
                  extent=(s.x0 - 0.5, s.x0 + w - 0.5, s.y0 - 0.5, s.y0 + h - 0.5))
        inside = (x >= s.x0 - 0.5) & (x < s.x0 + w - 0.5) & (y >= s.y0 - 0.5) & (
            y < s.y0 + h - 0.5)
        for k in np.flatnonzero(inside):
            if not np.isfinite(major[k]):
                ax.plot(x[k], y[k], "+", color="C3" if k == s.row else "C0", ms=8)
                continue
            ax.add_patch(Ellipse((x[k], y[k]), major[k], minor[k], angle=angle[k], fill=False,
                                 lw=1.2 if k == s.row else 0.8,
                                 color="C3" if k == s.row else "C0"))
        label = f"{ids[s.row]}"
        if flux is not None:
            label += f": {flux[s.row] * fscale:.3g} {funit}"
        if snr is not None:
            label += f", SNR {snr[s.row]:.0f}"
        if codes is not None:
            label += f" ({codes[s.row]})"
        ax.set_title(label, fontsize=8)
        if beam is not None:
            ax.add_patch(Ellipse((s.x0 + 0.1 * w + beam[0] / 2, s.y0 + 0.1 * h + beam[0] / 2),
                                 beam[0], beam[1], angle=beam[2], color="0.5", alpha=0.8))
        ax.set_xlim(s.x0 - 0.5, s.x0 + w - 0.5)
        ax.set_ylim(s.y0 - 0.5, s.y0 + h - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"{title}\n(asinh(I / 3 rms) of each stamp, {unit}; FWHM ellipses: the "
                 "source red, other catalogue Gaussians blue"
                 + ("; the beam grey, lower left" if beam is not None else "") + ")",
                 fontsize=10)
    fig.tight_layout()
    return fig
