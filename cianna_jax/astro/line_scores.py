"""Scoring a cube's line catalogue against its truth: which pairs may match, and how well
the matched lines' centres, widths and fluxes are recovered.

A detection and a true line match when they are within the sky radius of images
(:mod:`.crossmatch`) and their channels within half the line's w20 (the true w20 where
the truth gives it, else the detected one), at least :data:`LINE_TOLERANCE_MIN` channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .catalogue import CatalogueError
from .crossmatch import Match
from .truth import Truth

__all__ = ["LINE_TOLERANCE_MIN", "channel_tolerance", "same_line", "line_summary", "format_line_summary"]

#: smallest channel tolerance of a match (channels)
LINE_TOLERANCE_MIN = 1.0


def _column(det: Any, name: str, idx: np.ndarray | None = None) -> np.ndarray:
    v = (np.asarray(det[name], np.float64) if name in det.colnames
         else np.full(len(det), np.nan))
    return v if idx is None else v[idx]


def channel_tolerance(w20: np.ndarray) -> np.ndarray:
    """The channel tolerance of a match for lines of width ``w20`` (channels): half the
    width, at least :data:`LINE_TOLERANCE_MIN` (NaN widths: the minimum)."""
    return np.maximum(0.5 * np.nan_to_num(np.asarray(w20, np.float64)), LINE_TOLERANCE_MIN)


def same_line(det: Any, truth: Truth, idx: np.ndarray):
    """The pair filter (:func:`.crossmatch.crossmatch_sky`'s ``pair_ok``) of detections
    ``det`` rows ``idx`` against the lines of ``truth`` (module doc)."""
    if "z" not in det.colnames:
        raise CatalogueError("detections: matching a cube's lines needs their channels "
                             "(a z column)")
    dz, dw = _column(det, "z", idx), _column(det, "w20_chan", idx)

    def ok(di: np.ndarray, ti: np.ndarray) -> np.ndarray:
        w = np.where(np.isfinite(truth.w20[ti]), truth.w20[ti], dw[di])
        return np.abs(dz[di] - truth.z[ti]) <= channel_tolerance(w)

    return ok


def _robust(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def line_summary(det: Any, truth: Truth, match: Match) -> dict[str, float]:
    """The matched lines' centre offsets (channels: median and robust scatter of detected -
    true), w20 ratio (median detected / true, where the truth gives w20) and HI size ratio
    (the detections' ``d_hi`` over SDC2's true ``hi_size``, where both are given and the
    truth's is positive; NaN otherwise), and the robust scatter of the centres' and w20s'
    pulls, (detected - true) / error, where the detections have errors (``z_err``,
    ``w20_err``)."""
    d, t = match.det, match.truth
    dz = _column(det, "z")[d] - truth.z[t]
    dz_med, dz_scatter = _robust(dz)
    dw = _column(det, "w20_chan")[d] - truth.w20[t]
    true_size = _column(truth.table, "hi_size", t)
    with np.errstate(invalid="ignore", divide="ignore"):
        w20_ratio, w20_scatter = _robust(_column(det, "w20_chan")[d] / truth.w20[t])
        size_ratio, size_scatter = _robust(np.where(true_size > 0, _column(det, "d_hi", d)
                                                    / true_size, np.nan))
        w20_err = _column(det, "w20_err", d) * _column(det, "w20_chan", d) / _column(det, "w20", d)
        centre_pull = _robust(dz / _column(det, "z_err", d))[1]
        w20_pull = _robust(dw / w20_err)[1]
    return {"channel_offset": dz_med, "channel_scatter": dz_scatter,
            "w20_ratio": w20_ratio, "w20_ratio_scatter": w20_scatter,
            "hi_size_ratio": size_ratio, "hi_size_ratio_scatter": size_scatter,
            "centre_pull_scatter": centre_pull, "w20_pull_scatter": w20_pull}


def format_line_summary(s: dict[str, float]) -> str:
    """The report's line about :func:`line_summary`."""
    text = (f"         line centre offset (detected - true) median {s['channel_offset']:.2f} "
            f"channels, robust scatter {s['channel_scatter']:.2f}; w20 ratio median "
            f"{s['w20_ratio']:.3f}, robust scatter {s['w20_ratio_scatter']:.3f}")
    if np.isfinite(s.get("centre_pull_scatter", np.nan)):
        text += (f"; pulls' robust scatter (1: honest errors) centre "
                 f"{s['centre_pull_scatter']:.2f}, w20 {s['w20_pull_scatter']:.2f}")
    if np.isfinite(s.get("hi_size_ratio", np.nan)):
        text += (f"\n         HI size (d_hi, from the mass) / true hi_size median "
                 f"{s['hi_size_ratio']:.3f}, robust scatter {s['hi_size_ratio_scatter']:.3f}")
    return text
