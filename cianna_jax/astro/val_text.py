"""The text of ``cianna-jax val``'s report: one finder's scores, several side by side, the
SDC2 score's line."""

from __future__ import annotations

import math

import numpy as np

from .line_scores import format_line_summary
from .scores import Scores
from .sdc1 import Sdc1Score
from .sdc2 import BAND_HZ, BEAM_ARCSEC, Sdc2Score

__all__ = ["format_scores", "format_side_by_side", "format_sdc2"]


def _fmt(v: float, spec: str = ".3f") -> str:
    return "  nan" if v is None or not math.isfinite(v) else format(v, spec)


def _pull_text(pulls: dict) -> str:
    """The pull scatters as 'ra/dec/flux' (or 'x/y/flux'); '-' without errors."""
    if not pulls:
        return "-"
    keys = [k for k in pulls if k not in ("n", "flux")] + ["flux"]
    return "/".join(_fmt(pulls.get(k, float("nan")), ".2f") for k in keys)


def format_side_by_side(results: dict[str, Scores], sdc1: dict[str, Sdc1Score | None] | None = None,
                        seconds: dict[str, float] | None = None, *,
                        sdc2: dict[str, Sdc2Score | None] | None = None) -> str:
    """A text table comparing several finders: overall precision/recall/F1, the same per
    SNR bin, SDC1 or SDC2 score and run time."""
    names = list(results)
    w = max(12, *(len(n) + 2 for n in names))
    head = f"{'':<24}" + "".join(f"{n:>{w}}" for n in names)
    lines = [head, "-" * len(head)]

    def row(label, vals):
        lines.append(f"{label:<24}" + "".join(f"{v:>{w}}" for v in vals))

    row("detections", [str(results[n].n_det) for n in names])
    row("true sources (scored)", [str(results[n].n_truth) for n in names])
    for k in ("precision", "recall", "f1"):
        row(f"{k} (overall)", [_fmt(getattr(results[n], k)) for n in names])
    first = results[names[0]].by_snr
    for i, lab in enumerate(first.labels()):
        row(f"SNR {lab}: n_true", [str(int(results[n].by_snr.n_truth[i])) for n in names])
        row("   precision/recall",
            [f"{_fmt(results[n].by_snr.precision[i], '.2f')}/{_fmt(results[n].by_snr.recall[i], '.2f')}"
             for n in names])
        row("   F1", [_fmt(results[n].by_snr.f1[i]) for n in names])
    row("median flux ratio", [_fmt(results[n].flux_ratio) for n in names])
    row(f"median separation ({results[names[0]].unit})",
        [_fmt(results[n].median_separation) for n in names])
    if all("lines" in results[n].extra for n in names):  # a cube's lines
        row("line centre offset (ch)",
            [_fmt(results[n].extra["lines"]["channel_offset"], ".2f") for n in names])
        row("median w20 ratio", [_fmt(results[n].extra["lines"]["w20_ratio"]) for n in names])
    pulls = {n: results[n].extra.get("error_pulls") or {} for n in names}
    if any(pulls.values()):
        row("error pulls (pos/flux)", [_pull_text(p) for p in pulls.values()])
    if sdc1:
        row("SDC1 score", [_fmt(sdc1[n].value, ".1f") if sdc1.get(n) else "-" for n in names])
        row("SDC1 n_match", [str(sdc1[n].n_match) if sdc1.get(n) else "-" for n in names])
    if sdc2:
        row("SDC2 score", [_fmt(sdc2[n].value, ".1f") if sdc2.get(n) else "-" for n in names])
        row("SDC2 n_match", [str(sdc2[n].n_match) if sdc2.get(n) else "-" for n in names])
    if seconds:
        row("run time (s)", [_fmt(seconds.get(n, float("nan")), ".1f") for n in names])
    return "\n".join(lines)


def format_scores(s: Scores, sdc1: Sdc1Score | None = None) -> str:
    """A readable multi-line report of one finder's scores."""
    u = s.unit
    out = [f"detections {s.n_det}: {s.n_tp} matched to a true source, {s.n_fp} false; "
           f"{s.n_truth} true sources scored, {s.n_fn} of them missed",
           f"precision (reliability) {_fmt(s.precision)}  recall (completeness) {_fmt(s.recall)}  "
           f"F1 {_fmt(s.f1)}",
           f"matched: median separation {_fmt(s.median_separation)} {u}, median offset "
           f"({_fmt(s.median_offset[0])}, {_fmt(s.median_offset[1])}) {u}",
           f"         flux ratio (measured/true) median {_fmt(s.flux_ratio)}, robust scatter "
           f"{_fmt(s.flux_ratio_scatter)}"]
    out.append(f"         size ratio bmaj {_fmt(s.bmaj_ratio)}, bmin {_fmt(s.bmin_ratio)}; "
               f"median PA error {_fmt(s.pa_error, '.1f')} deg (over the "
               f"{s.extra.get('n_elongated', 0)} matched elongated sources, axis ratio > 1.3)")
    if "lines" in s.extra:  # a cube's lines: centres and widths
        out.append(format_line_summary(s.extra["lines"]))
    pulls = s.extra.get("error_pulls")
    if pulls:
        parts = ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in pulls.items() if k != "n")
        out.append(f"         errors: robust scatter of (measured - true) / error {parts} "
                   f"(over {pulls.get('n', s.n_tp)} matched; 1: honest errors, if the truth is "
                   "exact)")
    out += ["", f"{'SNR bin':<16}{'n_true':>8}{'n_det':>8}{'recall':>9}{'precision':>11}{'F1':>8}"]
    b = s.by_snr
    for i, lab in enumerate(b.labels()):
        out.append(f"{lab:<16}{int(b.n_truth[i]):>8}{int(b.n_det[i]):>8}{_fmt(b.recall[i]):>9}"
                   f"{_fmt(b.precision[i]):>11}{_fmt(b.f1[i]):>8}")
    if sdc1 is not None:
        out += ["", f"SDC1 score {sdc1.value:.3f} (n_det {sdc1.n_det}, n_match {sdc1.n_match}, "
                    f"n_false {sdc1.n_false}, mean per-match {_fmt(sdc1.acc_pc, '.1f')} %)"]
    return "\n".join(out)


def format_sdc2(s: Sdc2Score | None) -> str:
    if s is None:
        return ""
    acc = " ".join(f"{k} {100 * np.nanmean(np.nan_to_num(v)):.0f}%"
                   for k, v in s.per_source.items())
    return (f"\nSDC2 score {s.value:.3f} (n_det {s.n_det}, n_match {s.n_match}, n_false "
            f"{s.n_false}, mean per-match {_fmt(s.acc_pc, '.1f')} %: {acc or 'no match'}; the "
            f"official scorer's rules, SDC2's band {BAND_HZ[0] / 1e9:g}-{BAND_HZ[1] / 1e9:g} GHz"
            f" and beam {BEAM_ARCSEC:g} arcsec)\n")
