"""Sources whose flux varies between epochs (catalogues of one field at one frequency).

The catalogues are matched into one list of sources (:mod:`.multi_match`: the first
epoch's sources, then those first found later, each epoch matched one-to-one within a
radius), and each source found at two epochs or more gets the variability metrics of radio
transient surveys (Mooley et al. 2016, ApJ 818, 105; VAST, Murphy et al. 2021):

* ``eta``: the weighted reduced chi-square of its fluxes about their weighted mean,
  ``N / (N - 1) * (mean(w S^2) - mean(w S)^2 / mean(w))``, ``w = 1 / sigma^2``;
* ``v``: their coefficient of variation, std / mean;
* over each pair of epochs a, b, ``vs = (S_a - S_b) / sqrt(sigma_a^2 + sigma_b^2)`` and the
  modulation index ``m = 2 (S_a - S_b) / (S_a + S_b)``: the pair of largest ``|vs|`` is
  reported, and ``variable`` is ``|vs| >= 4.3`` and ``|m| >= 0.26`` there (Mooley et al.'s
  thresholds).

``flux_scale_error``: a fraction of each flux added in quadrature to its error (the flux
scales of different epochs' calibrations differ by a few percent). A source missing at an
epoch has no flux there (below that image's limit, or off it), unless that epoch's image is
given: then its flux is measured at the source's position (:mod:`.forced`, ``forced_<k>``),
as transient surveys do. ``n_epochs`` counts the epochs with a flux, found or forced.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checks import as_bounded_float
from .catalogue import make_table
from .multi_match import catalogue_columns, match_catalogues, matching_radius
from .primary_beam import FORCED_NOTE

__all__ = ["variability", "VS_THRESHOLD", "M_THRESHOLD", "VARIABILITY_NOTE",
           "format_variability_summary"]

#: Mooley et al. (2016)'s two-epoch thresholds for a variable source
VS_THRESHOLD = 4.3
M_THRESHOLD = 0.26

VARIABILITY_NOTE = ("eta: weighted reduced chi-square of the fluxes; v: their coefficient of "
                    "variation; vs, m: the two-epoch statistic and modulation index of the "
                    "epoch pair of largest |vs| (vs_pair); variable: |vs| >= 4.3 and |m| >= "
                    "0.26 (Mooley et al. 2016)")


def _metrics(flux: np.ndarray, err: np.ndarray):
    """(n, weighted mean, eta, v, vs, m, pair index a, b) per row of ``(M, K)`` fluxes."""
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    n = ok.sum(1)
    w = np.where(ok, 1.0 / np.where(ok, err, 1.0) ** 2, 0.0)
    s = np.where(ok, flux, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sw, sws, sws2 = w.sum(1), (w * s).sum(1), (w * s * s).sum(1)
        mean = sws / sw
        eta = n / (n - 1.0) * (sws2 / n - (sws / n) ** 2 / (sw / n))
        plain = np.where(ok, s, np.nan)
        with warnings.catch_warnings():  # rows of one flux: NaN, set below
            warnings.simplefilter("ignore", RuntimeWarning)
            v = np.nanstd(plain, axis=1, ddof=1) / np.nanmean(plain, axis=1)
    vs = np.full(len(flux), np.nan)
    m = np.full(len(flux), np.nan)
    pa = np.full(len(flux), -1, np.int64)
    pb = np.full(len(flux), -1, np.int64)
    k = flux.shape[1]
    for a in range(k):
        for b in range(a + 1, k):
            both = ok[:, a] & ok[:, b]
            d = flux[:, a] - flux[:, b]
            with np.errstate(invalid="ignore", divide="ignore"):
                z = d / np.hypot(err[:, a], err[:, b])
                mm = 2.0 * d / (flux[:, a] + flux[:, b])
            better = both & ~(np.abs(z) <= np.abs(vs))  # (NaN so far: take it)
            vs[better], m[better], pa[better], pb[better] = z[better], mm[better], a, b
    few = n < 2
    eta[few], v[few] = np.nan, np.nan
    return n, mean, eta, v, vs, m, pa, pb


def variability(tables: Sequence[Any], *, radius_arcsec: float | None = None,
                flux_scale_error: float = 0.0, names: Sequence[str] | None = None,
                images: Sequence[str | None] | None = None, force_all: bool = False,
                as_points: bool = False) -> Any:
    """One row per source found at any epoch (see the module docstring): ``ra``, ``dec``,
    ``first_epoch`` (1-based), ``n_epochs``, each epoch's ``flux_<k>`` and ``flux_err_<k>``
    (NaN where not found), ``flux_mean`` (weighted), ``eta``, ``v``, ``vs``, ``m``,
    ``vs_pair`` ("1-2", ...), ``variable``; sorted by decreasing ``|vs|``. ``images``: one
    per epoch (None: none), whose fluxes are forced where that epoch found no source
    (``forced_<k>``); ``force_all``: forced at every epoch, at each source's position (its
    first catalogue's), detections' fitted fluxes set aside: the same measure everywhere,
    not boosted where a faint source was detected on a noise peak (Eddington bias). A
    source resolved in its first catalogue is forced with its deconvolved shape seen
    through each image's beam (:func:`.catalogue.catalogue_shapes`), so that its forced flux
    is whole, as its fitted one; ``as_points``: every source as unresolved (the beam)."""
    if len(tables) < 2:
        raise ValueError(f"tables: two epochs or more, received {len(tables)}")
    f = as_bounded_float(flux_scale_error, "flux_scale_error", strict=False)
    if f >= 1.0:
        raise ValueError(f"flux_scale_error: a fraction in [0, 1), received {flux_scale_error!r}")
    names = list(names) if names is not None else [f"epoch {k + 1}" for k in range(len(tables))]
    radius = matching_radius(tables, radius_arcsec)
    cols = [catalogue_columns(t, n, ("flux", "flux_err", "pb")) for t, n in zip(tables, names)]
    mt = match_catalogues([(c["ra"], c["dec"]) for c in cols], radius, keep_new=True)
    flux = mt.take([c["flux"] for c in cols])
    err = mt.take([c["flux_err"] for c in cols])
    with warnings.catch_warnings():  # primary-beam corrected catalogues: the response at
        warnings.simplefilter("ignore", RuntimeWarning)  # each source, where it was found
        response = np.nanmean(mt.take([c["pb"] for c in cols]), axis=1)
    forced = np.zeros(flux.shape, bool)
    if force_all and (images is None or any(i is None for i in images)):
        raise ValueError("force_all: every epoch's image is needed (images)")
    if images is not None:
        if len(images) != len(tables):
            raise ValueError(f"images: one per epoch ({len(tables)}), received {len(images)}")
        from .forced import SHAPES_NOTE, first_shapes, forced_fluxes

        shapes_note = "unresolved (the beam) for all" if as_points else SHAPES_NOTE
        shapes = None if as_points else first_shapes(tables, mt.index, mt.first)
        for k, image in enumerate(images):
            missing = np.flatnonzero(mt.index[:, k] < 0 if not force_all
                                     else np.ones(len(mt.ra), bool))
            if image is None or not missing.size:
                continue
            fl, er = forced_fluxes(image, mt.ra[missing], mt.dec[missing],
                                   shapes=None if shapes is None
                                   else tuple(v[missing] for v in shapes))
            r = response[missing]  # seen through the same beam as where it was found
            fl, er = (np.where(np.isfinite(r), v / r, v) for v in (fl, er))
            got = np.isfinite(fl) & np.isfinite(er)
            if force_all:  # (a position without data there: no flux at that epoch)
                flux[missing[~got], k] = err[missing[~got], k] = np.nan
            flux[missing[got], k], err[missing[got], k] = fl[got], er[got]
            forced[missing[got], k] = True
    err = np.hypot(err, f * flux)
    n, mean, eta, v, vs, m, pa, pb = _metrics(flux, err)
    variable = (np.abs(np.nan_to_num(vs)) >= VS_THRESHOLD) & (np.abs(np.nan_to_num(m))
                                                               >= M_THRESHOLD)
    order = np.argsort(-np.nan_to_num(np.abs(vs), nan=-1.0), kind="stable")
    out: dict[str, np.ndarray] = {"ra": mt.ra, "dec": mt.dec, "first_epoch": mt.first + 1,
                                  "n_epochs": n}
    units = {}
    for k in range(len(tables)):
        out[f"flux_{k + 1}"], out[f"flux_err_{k + 1}"] = flux[:, k], err[:, k]
        units[f"flux_{k + 1}"] = units[f"flux_err_{k + 1}"] = "Jy"
        if images is not None:
            out[f"forced_{k + 1}"] = forced[:, k]
    out.update(flux_mean=mean, eta=eta, v=v, vs=vs, m=m,
               vs_pair=np.where(pa >= 0, np.char.add(np.char.add((pa + 1).astype(str), "-"),
                                                     (pb + 1).astype(str)), ""),
               variable=variable)
    units["flux_mean"] = "Jy"
    meta = {"variability": VARIABILITY_NOTE, "catalogues": [str(x) for x in names],
            "radius_arcsec": float(radius), "flux_scale_error": f,
            "vs_threshold": VS_THRESHOLD, "m_threshold": M_THRESHOLD,
            "n_sources": int(len(mt.ra)), "n_variable": int(variable.sum()),
            "n_forced": int(forced.sum()), "forced_everywhere": bool(force_all),
            **({"forced_shapes": shapes_note} if images is not None else {}),
            **({"primary_beam": FORCED_NOTE} if np.isfinite(response).any() else {})}
    t = make_table({k: np.asarray(val)[order] for k, val in out.items()}, meta=meta, units=units)
    for name, desc in (("first_epoch", "the epoch the source was first found at (1-based)"),
                       ("n_epochs", "epochs with a flux"),
                       ("flux_mean", "inverse-variance weighted mean flux"),
                       ("eta", "weighted reduced chi-square of the fluxes"),
                       ("v", "coefficient of variation of the fluxes"),
                       ("vs", "two-epoch statistic of the pair vs_pair"),
                       ("m", "modulation index of the pair vs_pair"),
                       ("variable", "|vs| >= 4.3 and |m| >= 0.26")):
        t[name].description = desc
    return t


def format_variability_summary(table: Any) -> str:
    """A report line: sources, how many at two epochs or more, how many variable."""
    m = table.meta
    several = int(np.count_nonzero(np.asarray(table["n_epochs"]) >= 2))
    forced = f" ({m['n_forced']} fluxes forced)" if m.get("n_forced") else ""
    return (f"{m.get('n_sources', len(table))} sources over {len(m.get('catalogues', []))} "
            f"epochs, {several} with a flux at two or more{forced}, {m.get('n_variable', 0)} "
            "variable "
            f"(|vs| >= {VS_THRESHOLD:g}, |m| >= {M_THRESHOLD:g}; radius "
            f"{m.get('radius_arcsec', float('nan')):.2g} arcsec)")
