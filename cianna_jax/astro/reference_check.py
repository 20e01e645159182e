"""A catalogue checked against a reference survey: its astrometry and its flux scale.

Every survey paper compares its catalogue with an established one (NVSS, FIRST, LoTSS,
RACS...) before trusting positions and fluxes. Here: compact, isolated sources matched
one-to-one, the median offsets in RA and Dec, the median ratio of our fluxes to the
reference's (scaled to our frequency by a spectral index ``alpha`` when the two differ),
and the systematic errors the scatter leaves once the catalogues' own errors are taken out
(which ``predict --astrometric-error`` and ``--flux-scale-error`` take). The corrections can
then be applied to the catalogue (:func:`apply_reference`).

The pairs: our sources of SNR >= ``min_snr``, unresolved and single-Gaussian where the
catalogue says so (``resolved``, ``s_code``), with no other source of either catalogue
within ``isolation`` (default twice the larger beam FWHM: a reference of lower resolution
blends what ours separates), matched within ``radius`` (default the larger beam FWHM: wide
enough not to clip the offsets' distribution, which would pull their median to zero; the
isolation keeps it unambiguous).
Errors of a median: 1.2533 x robust scatter / sqrt(n); robust scatter: half the 16-84
percentile range. A reference of much lower resolution (its beam over :data:`SUM_BEAMS`
times ours: NVSS, 45 arcsec, against an image of a few arcsec) blends what ours separates:
then each of its sources isolated within twice its beam is compared with the sum of ours
within its beam FWHM (fluxes summed, errors in quadrature, the flux-weighted centroid), as
ours would be seen at its resolution. The flux ratio counts the pairs whose reference flux (at our frequency)
is at least ``min_snr`` times our local rms (``for_flux``): chosen by our own SNR, the
faintest would be those our noise pushed up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .catalogue import CatalogueError, column_values, find_column, make_table, require_columns
from .crossmatch import crossmatch_sky, sky_neighbours
from .spectral_index import catalogue_frequency

__all__ = ["ReferenceCheck", "reference_check", "apply_reference", "format_reference_check",
           "SAME_FREQUENCY", "SUM_BEAMS"]

#: frequencies within this log ratio count as one: the flux scale is compared directly
SAME_FREQUENCY = 0.1
#: a reference whose beam is over this many times ours is compared with our sums
SUM_BEAMS = 2.0
_MEDIAN_ERR = 1.2533  # a median's error over the mean's, for a normal law


@dataclass(frozen=True)
class ReferenceCheck:
    """The comparison (arcsec for positions, ratios for fluxes): ``pairs`` (a table, one row
    per matched pair), the median offsets ``d_ra`` (ours - reference, times cos Dec), ``d_dec``
    and their errors, the offsets' robust scatter ``scatter_ra``, ``scatter_dec``,
    ``astrometric_error`` (the scatter beyond both catalogues' position errors, per axis),
    ``flux_ratio`` (ours / reference at our frequency), its error and robust relative
    scatter, ``flux_scale_error`` (that scatter beyond both catalogues' flux errors; NaN when
    the frequencies differ, where spectral indices spread it), and the settings."""

    pairs: Any
    d_ra: float
    d_ra_err: float
    d_dec: float
    d_dec_err: float
    scatter_ra: float
    scatter_dec: float
    astrometric_error: float
    flux_ratio: float
    flux_ratio_err: float
    flux_scatter: float
    flux_scale_error: float
    settings: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The numbers, for a table's metadata or JSON."""
        keys = ("d_ra", "d_ra_err", "d_dec", "d_dec_err", "scatter_ra", "scatter_dec",
                "astrometric_error", "flux_ratio", "flux_ratio_err", "flux_scatter",
                "flux_scale_error")
        return {"n_pairs": len(self.pairs), **{k: float(getattr(self, k)) for k in keys},
                **self.settings}


def _spread(x: np.ndarray) -> tuple[float, float, float]:
    """(median, its error, robust scatter) of the finite values; NaN for fewer than 2."""
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (float(np.median(x)) if x.size else math.nan), math.nan, math.nan
    q16, q50, q84 = np.percentile(x, [16, 50, 84])
    s = 0.5 * (q84 - q16)
    return float(q50), float(_MEDIAN_ERR * s / math.sqrt(x.size)), float(s)


def _beyond(scatter: float, errors: np.ndarray) -> float:
    """The part of ``scatter`` the per-pair ``errors`` (1 sigma, combined) leave: in
    quadrature, 0 when they explain it all; NaN without errors."""
    e = errors[np.isfinite(errors)]
    if not e.size or not math.isfinite(scatter):
        return math.nan
    return math.sqrt(max(scatter**2 - float(np.median(e)) ** 2, 0.0))


def _beam(table: Any, given: float | None, name: str) -> float | None:
    if given is not None:
        return as_bounded_float(given, name)
    try:
        b = float(getattr(table, "meta", {}).get("beam_bmaj_arcsec"))
    except (TypeError, ValueError):
        return None
    return b if math.isfinite(b) and b > 0 else None


def _values(table: Any, name: str, what: str) -> np.ndarray:
    v = column_values(table, name, what)
    return np.full(len(table), np.nan) if v is None else np.asarray(v, np.float64)


def _neighbours(ra: np.ndarray, dec: np.ndarray, ra_o: np.ndarray, dec_o: np.ndarray,
                radius: float) -> np.ndarray:
    """How many of the sources (``ra_o``, ``dec_o``) lie within ``radius`` arcsec of each
    source (``ra``, ``dec``)."""
    return np.array([len(p) for p in sky_neighbours(ra, dec, ra_o, dec_o, radius)], np.int64)


def _frequencies(table: Any, reference: Any, ours: float | None, ref: float | None,
                 what: str, ref_what: str) -> tuple[float | None, float | None]:
    """Both catalogues' frequencies (Hz): given, else their metadata's; both unknown: None
    (taken as the same); one unknown: CatalogueError naming it."""
    def known(t, given, name):
        if given is not None:
            return as_bounded_float(given, name)
        try:
            return catalogue_frequency(t)
        except CatalogueError:
            return None

    f1, f2 = known(table, ours, "our_freq_hz"), known(reference, ref, "ref_freq_hz")
    if (f1 is None) != (f2 is None):
        missing = what if f1 is None else ref_what
        raise CatalogueError(f"{missing}: no frequency recorded (frequency_hz): give it (the "
                             "other catalogue's is known, the fluxes are scaled between them)")
    return f1, f2


def _isolated(table: Any, ra, dec, rra, rdec, cols: dict, ids, radius: float, iso: float,
              snr_min: float):
    """Our compact isolated sources matched one-to-one to isolated reference sources:
    (their per-pair columns, the reference rows, our kept mask, the reference's)."""
    keep = np.isfinite(ra) & np.isfinite(dec) & ~(cols["snr"] < snr_min)  # (no snr: all)
    if "resolved" in table.colnames:
        keep &= ~np.asarray(table["resolved"], bool)
    if "s_code" in table.colnames:
        keep &= np.asarray(table["s_code"]).astype(str) == "S"
    keep &= _neighbours(ra, dec, ra, dec, iso) == 1
    keep &= _neighbours(ra, dec, rra, rdec, iso) <= 1
    rkeep = np.isfinite(rra) & np.isfinite(rdec)
    rkeep &= (_neighbours(rra, rdec, rra, rdec, iso) == 1) & (
        _neighbours(rra, rdec, ra, dec, iso) <= 1)
    i1, i2 = np.flatnonzero(keep), np.flatnonzero(rkeep)
    m = crossmatch_sky(ra[i1], dec[i1], rra[i2], rdec[i2], radius)
    i1, i2 = i1[m.det], i2[m.truth]
    out = {c: v[i1] for c, v in cols.items()}
    out.update(ra=ra[i1], dec=dec[i1], id=ids[i1], n=np.ones(i1.size, np.int64))
    return out, i2, keep, rkeep


def _summed(ra, dec, rra, rdec, cols: dict, ids, radius: float, iso: float, snr_min: float):
    """Each isolated reference source against the sum of our sources within ``radius``:
    (per-pair columns: fluxes summed, errors in quadrature, the flux-weighted centroid and
    its error, the brightest's id, rms and SNR...; the reference rows, our sources in a
    pair, the reference's kept)."""
    good = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(cols["flux"])
    rkeep = np.isfinite(rra) & np.isfinite(rdec) & (_neighbours(rra, rdec, rra, rdec, iso) == 1)
    keep = np.zeros(ra.size, bool)
    rows: dict[str, list] = {k: [] for k in ("ra", "dec", "flux", "flux_err", "snr", "rms",
                                             "ra_err", "dec_err", "id", "n", "ref")}
    if good.any() and rkeep.any():
        g = np.flatnonzero(good)
        found = sky_neighbours(rra[rkeep], rdec[rkeep], ra[g], dec[g], radius)
        for r, members in zip(np.flatnonzero(rkeep), found):
            k = g[np.asarray(members, np.int64)]
            f = cols["flux"][k]
            if not k.size or f.sum() <= 0:
                continue
            e = np.sqrt(np.nansum(cols["flux_err"][k] ** 2)) if np.isfinite(
                cols["flux_err"][k]).any() else math.nan
            top = k[int(np.argmax(f))]
            # the sum's SNR from each member's own (its noise: flux / snr), not from flux_err,
            # which a flux scale error widens (a catalogue corrected by apply_reference)
            own = cols["snr"][k]
            if np.all(np.isfinite(own) & (own > 0)):
                snr = f.sum() / float(np.sqrt(np.sum((f / own) ** 2)))
            else:
                snr = f.sum() / e if math.isfinite(e) and e > 0 else cols["snr"][top]
            if snr < snr_min:
                continue
            w = np.clip(f, 0.0, None) / np.clip(f, 0.0, None).sum()
            ra0 = rra[r]
            dra = np.mod(ra[k] - ra0 + 180.0, 360.0) - 180.0
            keep[k] = True
            rows["ra"].append((ra0 + float(np.sum(w * dra))) % 360.0)
            rows["dec"].append(float(np.sum(w * dec[k])))
            rows["flux"].append(float(f.sum()))
            rows["flux_err"].append(e)
            rows["snr"].append(float(snr))
            rows["rms"].append(float(cols["rms"][top]))
            for c in ("ra_err", "dec_err"):
                rows[c].append(float(np.sqrt(np.sum((w * cols[c][k]) ** 2))))
            rows["id"].append(ids[top])
            rows["n"].append(int(k.size))
            rows["ref"].append(int(r))
    out = {c: np.asarray(v, np.int64 if c in ("n", "ref") else None) for c, v in rows.items()}
    if not out["ref"].size:
        out = {c: np.zeros(0, np.int64 if c in ("n", "ref") else np.float64) for c in rows}
        out["id"] = np.zeros(0, np.asarray(ids).dtype)
    return out, out.pop("ref"), keep, rkeep


def _source_scales(reference: Any, rows: np.ndarray, f1: float | None, f2: float | None,
                   alpha: float, scale: float) -> tuple[np.ndarray | float, int]:
    """The factors taking the reference's fluxes (its ``rows``) to our frequency ``f1``:
    each source's own ``alpha`` (and ``ref_freq``) where the reference gives them, else
    ``scale`` (``alpha`` from ``f2``); and how many rows used their own."""
    if f1 is None or "alpha" not in reference.colnames or find_column(reference,
                                                                         "ra") == "alpha":
        return scale, 0
    own = np.asarray(reference["alpha"], np.float64)[rows]
    nu = (np.asarray(reference["ref_freq"], np.float64)[rows] if "ref_freq" in
          reference.colnames else np.full(rows.size, f2))
    nu = np.where(np.isfinite(nu) & (nu > 0), nu, f2)
    ok = np.isfinite(own)
    return np.where(ok, (f1 / nu) ** np.where(ok, own, alpha), scale), int(ok.sum())


def reference_check(table: Any, reference: Any, *, alpha: float = -0.7,
                    our_freq_hz: float | None = None, ref_freq_hz: float | None = None,
                    our_beam_arcsec: float | None = None, ref_beam_arcsec: float | None = None,
                    radius_arcsec: float | None = None, isolation_arcsec: float | None = None,
                    min_snr: float = 10.0, summed: bool | None = None,
                    what: str = "catalogue", ref_what: str = "reference") -> ReferenceCheck:
    """Compare ``table`` (ours) with ``reference`` as the module docstring says. The beams
    (FWHM, arcsec) default to the catalogues' ``beam_bmaj_arcsec`` (the reference's to
    ours), the frequencies to their ``frequency_hz`` (both unknown: taken as the same);
    ``alpha`` scales the reference's fluxes to our frequency (S ~ nu^alpha), unless the
    reference gives each source's own (an ``alpha`` column, as sky models and spectral-index
    tables have; its ``ref_freq`` column too, each source's reference frequency). ``summed``
    (default: when the reference's beam is over :data:`SUM_BEAMS` times ours): each isolated
    reference source against the sum of our sources within its beam FWHM (our flux-weighted
    centroid, fluxes summed), as ours would be seen at its resolution."""
    for t, w in ((table, what), (reference, ref_what)):
        require_columns(t, ("ra", "dec", "flux"), w)
    a = float(alpha)
    if not math.isfinite(a):
        raise ValueError(f"alpha: a finite spectral index, received {alpha!r}")
    snr_min = as_bounded_float(min_snr, "min_snr", strict=False)
    b1 = _beam(table, our_beam_arcsec, "our_beam_arcsec")
    b2 = _beam(reference, ref_beam_arcsec, "ref_beam_arcsec") or b1
    big = max(b1 or 0.0, b2 or 0.0)
    if not big and (radius_arcsec is None or isolation_arcsec is None):
        raise ValueError("our_beam_arcsec: neither catalogue records its beam "
                         "(beam_bmaj_arcsec): give the beams, or radius and isolation")
    radius = (as_bounded_float(radius_arcsec, "radius_arcsec") if radius_arcsec is not None
              else big)
    iso = (as_bounded_float(isolation_arcsec, "isolation_arcsec") if isolation_arcsec
           is not None else 2.0 * big)
    f1, f2 = _frequencies(table, reference, our_freq_hz, ref_freq_hz, what, ref_what)
    scale = 1.0 if f1 is None else (f1 / f2) ** a
    same = f1 is None or abs(math.log(f1 / f2)) < SAME_FREQUENCY
    ra, dec = _values(table, "ra", what), _values(table, "dec", what)
    rra, rdec = _values(reference, "ra", ref_what), _values(reference, "dec", ref_what)
    cols_ours = {c: _values(table, c, what) for c in ("snr", "flux", "flux_err", "rms",
                                                       "ra_err", "dec_err")}
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, len(table) + 1)
    if summed is None:  # a reference of much lower resolution blends what ours separates
        summed = bool(b1 and b2 and b2 > SUM_BEAMS * b1)
    if summed:
        if radius_arcsec is None:
            radius = b2
        pairs_ours, i2, keep, rkeep = _summed(ra, dec, rra, rdec, cols_ours, ids, radius, iso,
                                               snr_min)
    else:
        pairs_ours, i2, keep, rkeep = _isolated(table, ra, dec, rra, rdec, cols_ours, ids,
                                                radius, iso, snr_min)
    if not i2.size:
        raise ValueError(f"{what}: none of its {int(keep.sum())} "
                         + ("sources" if summed else "compact isolated sources")
                         + f" has a counterpart among the {int(rkeep.sum())} of {ref_what} "
                         f"within {radius:.3g} arcsec: do they cover the same sky?")
    o = pairs_ours
    cosd = np.cos(np.radians(rdec[i2]))
    d_ra = (np.mod(o["ra"] - rra[i2] + 180.0, 360.0) - 180.0) * cosd * 3600.0
    d_dec = (o["dec"] - rdec[i2]) * 3600.0
    flux, ferr = o["flux"], o["flux_err"]
    fref = _values(reference, "flux", ref_what)[i2]
    scale, own_alpha = _source_scales(reference, i2, f1, f2, a, scale)
    rerr = _values(reference, "flux_err", ref_what)[i2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux / (fref * scale)
        rel_err = np.hypot(ferr / flux, rerr / fref)
        # the flux scale from pairs chosen by the reference's flux over our noise: chosen by
        # our own SNR, the faint ones would be those our noise pushed up (boosted)
        for_flux = ~(fref * scale / o["rms"] < snr_min)
    pos_err = [np.hypot(o[c], _values(reference, c, ref_what)[i2])
               for c in ("ra_err", "dec_err")]
    mra, era, sra = _spread(d_ra)
    mdec, edec, sdec = _spread(d_dec)
    mr, er, sr = _spread(ratio[for_flux])
    beyond = [_beyond(s_, e) for s_, e in ((sra, pos_err[0]), (sdec, pos_err[1]))]
    astro_err = (math.sqrt(0.5 * (beyond[0] ** 2 + beyond[1] ** 2))
                 if all(math.isfinite(b) for b in beyond) else math.nan)
    rel_scatter = sr / mr if mr > 0 else math.nan
    rel_err = rel_err[for_flux]
    cols = {"id": o["id"], "n_ours": o["n"], "ref_row": i2 + 1, "ra": o["ra"],
            "dec": o["dec"], "ra_ref": rra[i2], "dec_ref": rdec[i2], "d_ra": d_ra,
            "d_dec": d_dec, "snr": o["snr"], "flux": flux, "flux_err": ferr, "flux_ref": fref,
            "flux_ref_err": rerr, "flux_ref_scaled": fref * scale, "flux_ratio": ratio,
            "for_flux": for_flux}
    pairs = make_table(cols, units={"d_ra": "arcsec", "d_dec": "arcsec", "flux_ref": "Jy",
                                    "flux_ref_err": "Jy", "flux_ref_scaled": "Jy",
                                    "ra_ref": "deg", "dec_ref": "deg"})
    settings = {"radius_arcsec": radius, "isolation_arcsec": iso, "min_snr": snr_min,
                "summed": summed,
                "alpha": a, "our_freq_hz": f1, "ref_freq_hz": f2, "same_frequency": same,
                "n_own_alpha": own_alpha,
                "n_ours": len(table), "n_reference": len(reference),
                "n_ours_kept": int(keep.sum()), "n_reference_kept": int(rkeep.sum()),
                "n_flux_pairs": int(for_flux.sum())}
    check = ReferenceCheck(pairs, mra, era, mdec, edec, sra, sdec, astro_err, mr, er,
                           rel_scatter, _beyond(rel_scatter, rel_err) if same else math.nan,
                           settings)
    pairs.meta["reference_check"] = check.summary()  # (the figure reads it)
    return check


def apply_reference(table: Any, check: ReferenceCheck, *, positions: bool = True,
                    fluxes: bool = True) -> Any:
    """A copy of ``table`` corrected by ``check``: positions moved by the median offsets and
    their errors widened by ``astrometric_error`` in quadrature; fluxes, peaks, their errors
    and rms divided by ``flux_ratio``, the flux errors widened by ``flux_scale_error``
    (refused when the reference is at another frequency: the ratio there rests on the
    assumed spectral index)."""
    out = table.copy()
    if fluxes and not check.settings["same_frequency"]:
        raise ValueError("fluxes: the reference is at another frequency, where its flux ratio "
                         "rests on the assumed spectral index: not applied (positions only)")
    if len(check.pairs) < 2:
        raise ValueError(f"check: {len(check.pairs)} matched pairs, too few to correct by")
    if positions:
        dec = np.asarray(out["dec"], np.float64)
        out["ra"] = np.mod(np.asarray(out["ra"], np.float64)
                           - check.d_ra / 3600.0 / np.cos(np.radians(dec)), 360.0)
        out["dec"] = dec - check.d_dec / 3600.0
        extra = check.astrometric_error if math.isfinite(check.astrometric_error) else 0.0
        for c in ("ra_err", "dec_err"):
            if c in out.colnames:
                out[c] = np.hypot(np.asarray(out[c], np.float64), extra)
    if fluxes:
        r = check.flux_ratio
        f = check.flux_scale_error if math.isfinite(check.flux_scale_error) else 0.0
        for c in ("flux", "flux_err", "peak", "peak_err", "rms"):
            if c in out.colnames:
                out[c] = np.asarray(out[c], np.float64) / r
        for c, base in (("flux_err", "flux"), ("peak_err", "peak")):
            if c in out.colnames:
                out[c] = np.hypot(np.asarray(out[c], np.float64),
                                  f * np.abs(np.asarray(out[base], np.float64)))
    out.meta["reference_correction"] = {"positions": positions, "fluxes": fluxes,
                                        **check.summary()}
    return out


def format_reference_check(check: ReferenceCheck, names: tuple[str, str] = ("ours", "reference")
                           ) -> str:
    """The report's lines."""
    s = check.settings
    freq = ("" if s["our_freq_hz"] is None else
            f"; fluxes at {s['our_freq_hz'] / 1e6:g} and {s['ref_freq_hz'] / 1e6:g} MHz"
            + ("" if s["same_frequency"] else f", the reference's scaled by alpha {s['alpha']:g}"
               + (f" ({s['n_own_alpha']} pairs by their own)" if s.get("n_own_alpha") else "")))
    how = (f"isolated {names[1]} sources, each against the sum of {s['n_ours_kept']} "
           f"of the {s['n_ours']} {names[0]} within its beam" if s.get("summed") else
           f"compact isolated pairs ({s['n_ours_kept']} of {s['n_ours']} {names[0]}")
    lines = [f"{len(check.pairs)} {how}, {s['n_reference_kept']} of {s['n_reference']} "
             f"{names[1]} kept; radius {s['radius_arcsec']:.3g}\", isolation "
             f"{s['isolation_arcsec']:.3g}\"{freq}" + ("" if s.get("summed") else ")"),
             f"offsets ({names[0]} - {names[1]}): RA {check.d_ra:+.3f} +- {check.d_ra_err:.3f}\", "
             f"Dec {check.d_dec:+.3f} +- {check.d_dec_err:.3f}\"; scatter {check.scatter_ra:.3f}\", "
             f"{check.scatter_dec:.3f}\"; " + (
                 f"beyond the position errors {check.astrometric_error:.3f}\" (predict "
                 "--astrometric-error)" if math.isfinite(check.astrometric_error) else
                 "no position errors to compare it with"),
             f"flux ratio ({names[0]} / {names[1]}, {s['n_flux_pairs']} pairs of reference "
             f"flux >= {s['min_snr']:g} our rms): {check.flux_ratio:.4f} +- "
             f"{check.flux_ratio_err:.4f}; relative scatter {check.flux_scatter:.3f}"
             + (f"; beyond the flux errors {check.flux_scale_error:.3f} (predict "
                "--flux-scale-error)" if math.isfinite(check.flux_scale_error) else
                "; the frequencies differ: spectral indices spread it" if not s["same_frequency"]
                else "; no flux errors to compare it with")]
    return "\n".join(lines)
