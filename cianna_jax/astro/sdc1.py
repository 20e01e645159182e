"""The SKA Science Data Challenge 1 score, by the rules of the official scorer.

A numpy re-implementation of ``ska_sdc.Sdc1Scorer`` (package ``ska-sdc`` 2.0.0; checked
against it to 1e-6 relative by ``tools/check_sdc1_scorer.py``).  Steps, as there:

1. clean both catalogues: drop rows with NaN; for each of flux, core_frac, b_min, b_maj,
   if any value is negative keep only rows where it is > 0; RA > 180 deg -> RA - 360;
2. keep the sources outside the training area (or only inside it: ``area="train"``);
   ``area="all"`` (not in the official scorer) keeps everything, for other fields;
3. convolved size: ``sqrt(s^2 + beam^2)`` with ``s = max(b_maj, b_min)`` (times
   ``las_to_gauss`` for size class 1, ``sqrt(2)`` for class 3), beam ``0.25 * 1400 / freq``
   arcsec;
4. candidate matches: truth sources within the submitted source's convolved size
   (Euclidean distance in (RA, Dec) degrees, as the scorer's KD-tree);
5. multi-dimensional error of each candidate from the position, flux and size errors;
   keep the best candidate per submitted source, then per truth source;
6. matches with error < 5 count; per match, position, flux, b_maj, b_min, PA, core
   fraction and class scores (each at most 1) averaged; the score is their sum minus
   the number of unmatched submitted sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .challenge import ChallengeScore, challenge_columns
from .sky import angular_separation

__all__ = ["Sdc1Score", "sdc1_score", "sdc1_summary", "TRAIN_AREA", "FREQS"]

FREQS = (560, 1400, 9200)
TRAIN_AREA = {
    9200: (-0.04092, 0.0, -29.9400, -29.9074),
    1400: (-0.2688, 0.0, -29.9400, -29.7265),
    560: (-0.6723, 0.0, -29.9400, -29.4061),
}  # ra_min, ra_max, dec_min, dec_max (deg)
_COLS = ("id", "ra_core", "dec_core", "ra_cent", "dec_cent", "flux", "core_frac", "b_maj",
         "b_min", "pa", "size", "class")
_GAUSS_TO_LAS = 5.0 / 2.355
_LAS_TO_GAUSS = 1.0 / _GAUSS_TO_LAS
_EXPO_TO_GAUSS = 2**0.5
_GAUSS_TO_EXPO = 1.0 / _EXPO_TO_GAUSS
_LAS_TO_EXPO = _LAS_TO_GAUSS * _GAUSS_TO_EXPO
_EXPO_TO_LAS = 1.0 / _LAS_TO_EXPO
_MULTID_THR, _POS_THR, _FLUX_THR, _SIZE_THR, _PA_THR, _CORE_THR = 5.0, 0.3, 0.1, 0.3, 10.0, 0.05


#: the SDC1 score (per-match properties: position, flux, b_maj, b_min, pa, core_frac, class)
Sdc1Score = ChallengeScore


def _columns(cat: Any, what: str) -> dict[str, np.ndarray]:
    return challenge_columns(cat, _COLS, what, "SDC1")


def _clean(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keep = np.all([np.isfinite(v) for v in d.values()], axis=0) if d["id"].size else \
        np.zeros(0, bool)
    d = {k: v[keep] for k, v in d.items()}
    for col in ("flux", "core_frac", "b_min", "b_maj"):
        if np.any(d[col] < 0):
            ok = d[col] > 0
            d = {k: v[ok] for k, v in d.items()}
    for col in ("ra_core", "ra_cent"):
        d[col] = np.where(d[col] > 180.0, d[col] - 360.0, d[col])
    return d


def _area(d: dict[str, np.ndarray], freq: int, area: str) -> dict[str, np.ndarray]:
    if area == "all":
        return d
    ra_min, ra_max, dec_min, dec_max = TRAIN_AREA[freq]
    ra, dec = d["ra_core"], d["dec_core"]
    inside = (ra > ra_min) & (ra < ra_max) & (dec > dec_min) & (dec < dec_max)
    outside = (ra < ra_min) | (ra > ra_max) | (dec < dec_min) | (dec > dec_max)
    sel = inside if area == "train" else outside
    return {k: v[sel] for k, v in d.items()}


def _conv_size(d: dict[str, np.ndarray], beam: float) -> np.ndarray:
    s = np.maximum(d["b_maj"], d["b_min"])
    s = np.where(d["size"] == 1, s * _LAS_TO_GAUSS, np.where(d["size"] == 3, s * _EXPO_TO_GAUSS, s))
    return np.sqrt(s**2 + beam**2)


def _size_factor(size_id: np.ndarray) -> np.ndarray:
    table = {1: _LAS_TO_GAUSS, 2: 1.0, 3: _EXPO_TO_GAUSS}
    return np.array([table.get(int(v), np.nan) if np.isfinite(v) else np.nan for v in size_id])


def _candidates(sub: dict, truth: dict, radius_deg: np.ndarray, mode: str) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
    from scipy.spatial import cKDTree

    key = "core" if mode == "core" else "cent"
    if sub["id"].size == 0 or truth["id"].size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tree = cKDTree(np.stack([truth[f"ra_{key}"], truth[f"dec_{key}"]], 1))
    groups = tree.query_ball_point(np.stack([sub[f"ra_{key}"], sub[f"dec_{key}"]], 1),
                                   r=radius_deg)
    si = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    ti = np.concatenate([np.asarray(g, np.int64) for g in groups]) if len(groups) else \
        np.zeros(0, np.int64)
    return si.astype(np.int64), ti


def _correct_size(size: np.ndarray, sid: np.ndarray, sid_t: np.ndarray) -> np.ndarray:
    f = np.ones_like(size)
    for a, b, k in ((1, 2, _LAS_TO_GAUSS), (1, 3, _LAS_TO_EXPO), (2, 1, _GAUSS_TO_LAS),
                    (2, 3, _GAUSS_TO_EXPO), (3, 1, _EXPO_TO_LAS), (3, 2, _EXPO_TO_GAUSS)):
        f = np.where((sid == a) & (sid_t == b), k, f)
    return size * f


def _pa_fold(pa: np.ndarray) -> np.ndarray:
    pa = np.where(pa > 180, pa - 180, pa)
    pa = np.where(pa > 90, pa - 90, pa)
    pa = np.where(pa > 45, pa - 45, pa)
    return np.where(pa < -45, pa + 45, pa)


def _cap(acc: np.ndarray, thr: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(1.0, (1.0 / acc) * thr)


def sdc1_score(submission: Any, truth: Any, freq: int = 1400, *, mode: str = "core",
               area: str = "exclude_train") -> Sdc1Score:
    """SDC1 score of a ``submission`` against ``truth`` (tables or mappings with the 12 SDC1
    columns: id, ra_core, dec_core, ra_cent, dec_cent (deg), flux (Jy), core_frac, b_maj,
    b_min (arcsec), pa (deg), size, class).  ``freq`` 560/1400/9200 MHz; ``mode`` "core" or
    "centroid" positions for matching; ``area`` "exclude_train" (the challenge's score),
    "train" (training area only) or "all"."""
    if int(freq) not in FREQS:
        raise ValueError(f"freq must be one of {FREQS} (MHz), got {freq}")
    if mode not in ("core", "centroid"):
        raise ValueError(f"mode must be 'core' or 'centroid', got {mode!r}")
    if area not in ("exclude_train", "train", "all"):
        raise ValueError(f"area must be 'exclude_train', 'train' or 'all', got {area!r}")
    freq = int(freq)
    beam = 0.25 / freq * 1400.0
    sub = _area(_clean(_columns(submission, "submission")), freq, area)
    tru = _area(_clean(_columns(truth, "truth")), freq, area)
    sub["conv_size"] = _conv_size(sub, beam)
    tru["conv_size"] = _conv_size(tru, beam)
    n_det = int(sub["id"].size)
    si, ti = _candidates(sub, tru, sub["conv_size"] / 3600.0, mode)
    S = {k: v[si] for k, v in sub.items()}
    T = {k: v[ti] for k, v in tru.items()}
    key = "core" if mode == "core" else "cent"
    with np.errstate(divide="ignore", invalid="ignore"):
        sep = angular_separation(T[f"ra_{key}"], T[f"dec_{key}"], S[f"ra_{key}"],
                                 S[f"dec_{key}"]) * 3600.0
        pos_err = sep / T["conv_size"]
        flux_err = np.abs(S["flux"] - T["flux"]) / T["flux"]
        size_err = np.abs((T["b_maj"] + T["b_min"]) / 2 * _size_factor(T["size"])
                          - (S["b_maj"] + S["b_min"]) / 2 * _size_factor(S["size"])) / T["conv_size"]
        multid = np.sqrt((pos_err / (0.31 * 3.0)) ** 2 + (flux_err / (0.12 * 3.0)) ** 2
                         + (size_err / (1.46 * 3.0)) ** 2)
    # best candidate per submitted id, then per truth id (NaN errors sort last)
    order = np.lexsort((multid, S["id"]))
    first = np.ones(order.size, bool)
    first[1:] = S["id"][order][1:] != S["id"][order][:-1]
    best = order[first]
    order2 = best[np.lexsort((multid[best], T["id"][best]))]
    first2 = np.ones(order2.size, bool)
    first2[1:] = T["id"][order2][1:] != T["id"][order2][:-1]
    sieved = order2[first2]
    sieved = sieved[np.argsort(S["id"][sieved], kind="stable")]
    n_bad = int(np.count_nonzero(multid[sieved] >= _MULTID_THR))
    m = sieved[multid[sieved] < _MULTID_THR]
    n_match = int(m.size)
    if n_match == 0:
        return Sdc1Score(0.0, n_det, 0, n_bad, n_det, 0.0, 0.0, {}, np.zeros(0), np.zeros(0))
    Sm = {k: v[m] for k, v in S.items()}
    Tm = {k: v[m] for k, v in T.items()}
    src_size = (Tm["b_maj"] + Tm["b_min"]) / 2.0
    denom = np.sqrt(4 * beam**2 + src_size**2)
    core_acc = angular_separation(Tm["ra_core"], Tm["dec_core"], Sm["ra_core"],
                                  Sm["dec_core"]) * 3600.0 / denom
    cent_acc = angular_separation(Tm["ra_cent"], Tm["dec_cent"], Sm["ra_cent"],
                                  Sm["dec_cent"]) * 3600.0 / denom
    with np.errstate(divide="ignore", invalid="ignore"):
        flux_acc = np.abs(Sm["flux"] - Tm["flux"]) / Tm["flux"]
        bmaj_acc = np.abs(_correct_size(Sm["b_maj"], Sm["size"], Tm["size"]) - Tm["b_maj"]) / Tm["b_maj"]
        bmin_acc = np.abs(_correct_size(Sm["b_min"], Sm["size"], Tm["size"]) - Tm["b_min"]) / Tm["b_min"]
        core_frac_acc = np.abs(Sm["core_frac"] - Tm["core_frac"]) / 0.75
    pa_acc = np.abs(_pa_fold(Sm["pa"]) - _pa_fold(Tm["pa"]))
    ssagn = Tm["size"] == 1
    scores = {
        "position": _cap(np.fmin(cent_acc, core_acc), _POS_THR),
        "flux": _cap(flux_acc, _FLUX_THR),
        "b_maj": _cap(bmaj_acc, _SIZE_THR),
        "b_min": np.where(ssagn, 1.0, _cap(bmin_acc, _SIZE_THR)),
        "pa": np.where(ssagn, 1.0, _cap(pa_acc, _PA_THR)),
        "core_frac": _cap(core_frac_acc, _CORE_THR),
        "class": np.where(Sm["class"] == Tm["class"], 1.0, 0.0),
    }
    weight = 1.0 / len(scores)
    score_sum = float(sum(np.nansum(v * weight) for v in scores.values()))
    return Sdc1Score.of(score_sum, n_det, n_match, n_bad, scores, Sm["id"], Tm["id"])


def sdc1_summary(score: Sdc1Score) -> Mapping[str, float]:
    """The score's numbers as a flat dict (for reports)."""
    return score.summary("sdc1_score")
