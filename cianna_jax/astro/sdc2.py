"""The SKA Science Data Challenge 2 (HI cubes) score, by the rules of the official scorer.

A re-implementation of ``ska_sdc.Sdc2Scorer`` (package ``ska-sdc`` 2.0.0, its default
configuration; checked against it by ``tests/astro/test_sdc2.py``). Steps, as there:

1. drop rows with NaN; ``n_det`` counts every submitted row left;
2. keep lines whose ``central_freq`` lies within SDC2's band (0.95-1.15 GHz) and place each
   in 3D: its angular diameter distance ``d_a`` (HI's redshift, flat LambdaCDM with H0 67,
   Om 0.32) and its sky offsets from the field centre (RA 180, Dec -30) times ``d_a``;
3. convolved size ``sqrt(hi_size^2 + beam^2)`` (beam 7 arcsec) and spectral size, the
   observed-frame ``w20`` in Hz; each submitted line's search radius is the larger of the
   two as distances (Mpc);
4. candidate matches: true lines within that radius (Euclidean, as the scorer's KD-tree),
   then within the true line's convolved size on the sky and its spectral size in
   frequency;
5. multi-dimensional error: the quadrature sum of position, frequency, flux, size and w20
   errors; the best candidate per submitted line is kept, and true lines matched several
   times share their score (``n_dup``);
6. matches with error < 5 count: per match, the position, frequency, flux, HI size, PA,
   w20 and inclination scores (each at most 1, NaN counting 0) averaged and divided by
   ``n_dup``; the score is their sum minus the number of unmatched submitted lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._deps import require
from .catalogue import SDC2_COLUMNS
from .challenge import ChallengeScore, challenge_columns
from .sky import angular_separation

__all__ = ["Sdc2Score", "sdc2_score", "sdc2_summary", "BAND_HZ", "BEAM_ARCSEC"]

BEAM_ARCSEC = 7.0
BAND_HZ = (0.95e9, 1.15e9)  # lines outside are not matched (they count as false)
_REST_HZ = 1.420405752e9  # the scorer's HI rest frequency (its configuration's value)
_CENTRE = (180.0, -30.0)  # the configuration's field centre, for the physical offsets
_H0, _OM, _OL = 67.0, 0.32, 0.68
_C_MS = 299792458.0
_MULTID_THR = 5.0
_THR = {"position": 0.3, "central_freq": 0.3, "flux": 0.1, "hi_size": 0.3, "pa": 10.0,
        "w20": 0.3, "i": 10.0}


#: the SDC2 score (per-match properties: position, central_freq, flux, hi_size, pa, w20, i)
Sdc2Score = ChallengeScore


def _columns(cat: Any, what: str) -> dict[str, np.ndarray]:
    d = challenge_columns(cat, SDC2_COLUMNS, what, "SDC2")
    keep = np.all([np.isfinite(v) for v in d.values()], axis=0) if d["id"].size else \
        np.zeros(0, bool)
    return {k: v[keep] for k, v in d.items()}


def _placed(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The lines in the band, with their distances, physical offsets and sizes (step 2-3)."""
    f = d["central_freq"]
    inband = (f > BAND_HZ[0]) & (f < BAND_HZ[1])
    d = {k: v[inband] for k, v in d.items()}
    cosmology = require("astropy.cosmology")
    coords = require("astropy.coordinates")
    u = require("astropy.units")
    cosmo = cosmology.LambdaCDM(H0=_H0, Om0=_OM, Ode0=_OL)
    f = d["central_freq"]
    d_a = np.asarray(cosmo.angular_diameter_distance(_REST_HZ / f - 1).value, np.float64)
    centre = coords.SkyCoord(ra=_CENTRE[0] * u.deg, dec=_CENTRE[1] * u.deg, frame="fk5")
    sky = coords.SkyCoord(ra=d["ra"] * u.deg, dec=d["dec"] * u.deg, frame="fk5")
    dra, ddec = centre.spherical_offsets_to(sky)
    d["d_a"] = d_a
    d["x_phys"] = d_a * dra.to_value(u.radian)
    d["y_phys"] = d_a * ddec.to_value(u.radian)
    d["conv_size"] = np.sqrt(d["hi_size"] ** 2 + BEAM_ARCSEC**2)
    d["spectral_size"] = d["w20"] * 1000.0 / ((_C_MS * _REST_HZ) / f**2)
    d_a_df = np.asarray(cosmo.angular_diameter_distance(
        _REST_HZ / (f + d["spectral_size"]) - 1).value, np.float64)
    d["largest"] = np.maximum(d["conv_size"] / 206265 * d_a, d_a - d_a_df)
    return d


def _cap(acc: np.ndarray, thr: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(1.0, (1.0 / acc) * thr)


def sdc2_score(submission: Any, truth: Any) -> Sdc2Score:
    """SDC2 score of a ``submission`` against ``truth`` (tables or mappings with the nine
    SDC2 columns: id, ra, dec (deg), hi_size (arcsec), line_flux_integral (Jy Hz),
    central_freq (Hz), pa (deg, the receding half, 0-360), i (deg), w20 (km/s, observed
    frame)), as the official scorer computes it with its default configuration."""
    from scipy.spatial import cKDTree

    sub0 = _columns(submission, "submission")
    n_det = int(sub0["id"].size)
    sub, tru = _placed(sub0), _placed(_columns(truth, "truth"))
    if sub["id"].size and tru["id"].size:
        tree = cKDTree(np.stack([tru["x_phys"], tru["y_phys"], tru["d_a"]], 1))
        groups = tree.query_ball_point(np.stack([sub["x_phys"], sub["y_phys"], sub["d_a"]], 1),
                                       r=sub["largest"])
        si = np.repeat(np.arange(len(groups)), [len(g) for g in groups]).astype(np.int64)
        ti = np.concatenate([np.sort(np.asarray(g, np.int64)) for g in groups])
    else:
        si = ti = np.zeros(0, np.int64)
    S = {k: v[si] for k, v in sub.items()}
    T = {k: v[ti] for k, v in tru.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        sep = angular_separation(T["ra"], T["dec"], S["ra"], S["dec"]) * 3600.0
        pos_err = sep / T["conv_size"]
        freq_err = np.abs(S["central_freq"] - T["central_freq"]) / T["spectral_size"]
        keep = (pos_err < 1) & (freq_err < 1)
        multid = np.sqrt(pos_err**2 + freq_err**2
                         + (np.abs(S["line_flux_integral"] - T["line_flux_integral"])
                            / T["line_flux_integral"]) ** 2
                         + (np.abs(S["hi_size"] - T["hi_size"]) / T["conv_size"]) ** 2
                         + (np.abs(S["w20"] - T["w20"]) / T["w20"]) ** 2)
    cand = np.flatnonzero(keep)
    # the best candidate per submitted id (NaN errors last), ordered by the true id
    order = cand[np.lexsort((multid[cand], S["id"][cand]))]
    first = np.ones(order.size, bool)
    first[1:] = S["id"][order][1:] != S["id"][order][:-1]
    best = order[first]
    best = best[np.argsort(T["id"][best], kind="stable")]
    # true lines matched several times share their score (counted before the threshold)
    _, inverse, counts = np.unique(T["id"][best], return_inverse=True, return_counts=True)
    dup = counts[inverse]
    n_bad = int(np.count_nonzero(multid[best] >= _MULTID_THR))
    accepted = multid[best] < _MULTID_THR
    m, n_dup = best[accepted], dup[accepted]
    n_match = int(m.size)
    if n_match == 0:
        return Sdc2Score.of(0.0, n_det, 0, n_bad, {}, np.zeros(0), np.zeros(0))
    Sm = {k: v[m] for k, v in S.items()}
    Tm = {k: v[m] for k, v in T.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        sep = angular_separation(Tm["ra"], Tm["dec"], Sm["ra"], Sm["dec"]) * 3600.0
        dpa = np.radians(Sm["pa"] - Tm["pa"])
        acc = {
            "position": sep / np.sqrt(4 * BEAM_ARCSEC**2 + Tm["hi_size"] ** 2),
            "central_freq": np.abs(Sm["central_freq"] - Tm["central_freq"])
            / Tm["spectral_size"],
            "flux": np.abs(Sm["line_flux_integral"] - Tm["line_flux_integral"])
            / Tm["line_flux_integral"],
            "hi_size": np.abs(Sm["hi_size"] - Tm["hi_size"]) / Tm["hi_size"],
            "pa": np.abs(np.degrees(np.arctan2(np.sin(dpa), np.cos(dpa)))),
            "w20": np.abs(Sm["w20"] - Tm["w20"]) / Tm["w20"],
            "i": np.abs(Sm["i"] - Tm["i"]),
        }
    scores = {k: _cap(v, _THR[k]) for k, v in acc.items()}
    weight = 1.0 / len(scores)
    per_line = np.nansum(np.stack([v * weight for v in scores.values()]), axis=0)
    score_sum = float(np.sum(per_line / n_dup))
    return Sdc2Score.of(score_sum, n_det, n_match, n_bad, scores, Sm["id"], Tm["id"])


def sdc2_summary(score: Sdc2Score) -> Mapping[str, float]:
    """The score's numbers as a flat dict (for reports)."""
    return score.summary("sdc2_score")
