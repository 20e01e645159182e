"""Another source finder's catalogue as detections, to score it beside the detector.

``cianna-jax val --compare`` scores the catalogue of another finder (PyBDSF, Aegean, a
previous run...) against the same truth, with the same matcher and rules, and shows it
beside the detector's scores.  :func:`load_detections` reads that catalogue (any format of
:mod:`.catalogue`, PyBDSF's text lists included) into this package's columns: positions
(sky or pixels, the other computed through the image's WCS), ``flux`` (Jy), ``snr``,
sizes and position angles where given, deconvolved sizes (PyBDSF's ``DC_Maj``) for the
SDC1 score.  On a cube, each row also needs its line's ``freq`` (or channel ``z``), read as
``val`` reads a cube's truth (:mod:`.line_truth`): ``z``, ``w20_chan`` and ``line_flux``
(Jy Hz) join the columns.

Scored against a primary-beam corrected truth (``val --pb``), :func:`through_beam` puts the
other catalogue on the same footing: its rows where the beam's response is below ``pb_min``
(or not known) are left out as the truth's, and its fluxes divided by the response when it
was measured on the image as it is (``val --compare-apparent``); a catalogue of ``predict
--pb`` (its ``pb`` column) is corrected already.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalogue import (
    CatalogueError,
    column_values,
    find_column,
    make_table,
    read_catalogue,
    sdc2_columns,
    warn_unitless_sizes,
)
from .fits_image import FitsImage
from .line_truth import place_lines
from .mosaic import with_image_column
from .noise import NoiseMap
from .placement import place_catalogue

__all__ = ["load_detections", "merge_detections", "snr_source", "through_beam"]


def snr_source(t: Any) -> str:
    """Where :func:`load_detections` takes a catalogue's SNR from (for the report)."""
    if find_column(t, "snr") is not None:
        return "its snr column"
    if find_column(t, "peak") is not None:
        return ("its peak over its rms column" if find_column(t, "rms") is not None
                else "its peak over the local noise")
    return "its flux over the local noise, as point sources"


def load_detections(path: str | os.PathLike | Any, image: FitsImage, noise: NoiseMap, *,
                    name: str | None = None) -> Any:
    """The catalogue ``path`` (a file, or a table already read, called ``name`` in messages
    and ``meta["source"]``) as a detection table for ``image`` (a cube: see the module
    doc): columns ``id``,
    ``x``, ``y``, ``ra``/``dec`` (with a WCS), ``flux``, ``snr`` and, when the catalogue has
    them, ``bmaj``, ``bmin``, ``pa``, ``bmaj_deconv``, ``bmin_deconv``; for a cube, the
    lines' SDC2 columns as ``sdc2_<name>`` where the catalogue gives them
    (:func:`.catalogue.sdc2_columns`).  Rows without a
    finite position are left out (counted in ``meta["n_unplaced"]``).  CatalogueError for
    a missing position or flux column."""
    table_given = hasattr(path, "colnames")
    p = name or ("(a table)" if table_given else os.fspath(path))
    what = f"comparison catalogue {p}"
    t = path if table_given else read_catalogue(path)
    cube = image.ndim == 3
    x, y, ra, dec, flux = place_catalogue(t, image, what, need_flux=not cube)
    placed = np.isfinite(x) & np.isfinite(y)
    if ra is not None:
        placed &= np.isfinite(ra) & np.isfinite(dec)
    lines = None
    if cube:
        lines = place_lines(t, image, noise, x, y, what, column_values(t, "bmaj", what),
                            column_values(t, "bmin", what))
        placed &= np.isfinite(lines.z)
    cols: dict[str, np.ndarray] = {"id": np.arange(1, int(placed.sum()) + 1)}
    if ra is not None and image.wcs is not None:
        cols["ra"], cols["dec"] = ra[placed], dec[placed]
    cols["x"], cols["y"] = x[placed], y[placed]
    snr_from = snr_source(t)
    if lines is not None:
        cols["z"], cols["w20_chan"] = lines.z[placed], lines.w20[placed]
        cols["line_flux"] = lines.line_flux[placed]
        snr = lines.snr if lines.snr is not None else np.full(len(t), np.nan)
        cols["snr"] = snr[placed]
        snr_from = lines.snr_from or "nowhere (no snr column, nor line_flux with a width)"
    else:
        cols["flux"] = flux[placed]
        cols["snr"] = _snr(t, what, image, noise, flux, x, y)[placed]
    bmaj = column_values(t, "bmaj", what)
    if bmaj is not None:
        warn_unitless_sizes(t[find_column(t, "bmaj")], bmaj, what)
    for name, values in (("bmaj", bmaj), ("bmin", column_values(t, "bmin", what)),
                         ("pa", column_values(t, "pa", what)),
                         ("bmaj_deconv", column_values(t, "bmaj_deconv", what)),
                         ("bmin_deconv", column_values(t, "bmin_deconv", what))):
        if values is not None:
            cols[name] = values[placed]
    if "pb" in t.colnames:  # predict --pb's catalogue: its fluxes are corrected already
        cols["pb"] = np.asarray(t["pb"], np.float64)[placed]
    if "bmaj" in cols and "bmin" not in cols:  # sizes come in pairs: one alone is not used
        del cols["bmaj"]
    if cube:  # its lines in SDC2's terms, where the catalogue gives them, for SDC2's score
        try:
            sdc2 = sdc2_columns(t)
        except CatalogueError:
            sdc2 = {}
        cols.update({f"sdc2_{c}": v[placed] for c, v in sdc2.items() if c != "id"})
    return make_table(cols, meta={"source": p, "n_unplaced": int((~placed).sum()),
                                  "snr_from": snr_from})


def _snr(t: Any, what: str, image: FitsImage, noise: NoiseMap, flux: np.ndarray,
         x: np.ndarray, y: np.ndarray) -> np.ndarray:
    snr = column_values(t, "snr", what)
    if snr is not None:
        return snr
    peak, rms = column_values(t, "peak", what), column_values(t, "rms", what)
    if peak is not None and rms is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            return peak / rms
    local = noise.at(y, x) * image.unit_scale  # rows without a position are dropped later
    with np.errstate(divide="ignore", invalid="ignore"):
        return (peak if peak is not None else flux) / local


def merge_detections(parts: Sequence[Any], names: Sequence[str], n_unassigned: int) -> Any:
    """One detection table of the parts of a catalogue loaded on several images (part ``i``
    by :func:`load_detections` on image ``names[i]``): an ``image`` column, ids 1..N, and
    ``n_unassigned`` rows that belong to no image (no sky position) counted unplaced."""
    from astropy.table import vstack

    width = max(map(len, names))
    t = vstack([with_image_column(p, n, width) for p, n in zip(parts, names)],
               join_type="exact", metadata_conflicts="silent")
    t["id"] = np.arange(1, len(t) + 1)
    first = parts[0].meta
    t.meta = {"source": first["source"], "snr_from": first["snr_from"],
              "n_unplaced": n_unassigned + sum(p.meta["n_unplaced"] for p in parts)}
    if "beam" in first:  # (each image's rows through its own beam, alike)
        t.meta.update(beam=first["beam"],
                      n_outside_beam=sum(p.meta["n_outside_beam"] for p in parts))
    return t


def through_beam(det: Any, response: np.ndarray, pb_min: float | None = None, *,
                 apparent: bool = False) -> Any:
    """A detection table of :func:`load_detections` scored against a truth of true fluxes
    (``val --pb``): the rows where the beam's ``response`` (at each row) is below ``pb_min``
    or not known left out, as the truth's; with ``apparent`` (the catalogue was measured on
    the image as it is), ``flux`` / ``line_flux`` divided by the response, unless the table
    has its own ``pb`` column (corrected already); a corrected catalogue's SNRs computed
    from its fluxes over the image's local noise scaled back by the response.  The rows
    left out are counted in ``meta["n_outside_beam"]``, the fluxes' treatment is said in
    ``meta["beam"]``."""
    a = np.asarray(response, np.float64)
    if a.shape != (len(det),):
        raise ValueError(f"response: one per row ({len(det)}), received shape {a.shape}")
    with np.errstate(invalid="ignore"):
        ok = a >= (pb_min or np.finfo(np.float64).tiny)
    out = det[ok]
    a = a[ok]
    own = "pb" in out.colnames
    divide = apparent and not own
    if divide:
        for c in ("flux", "line_flux"):
            if c in out.colnames:
                out[c] = np.asarray(out[c], np.float64) / a
    elif "local noise" in str(det.meta.get("snr_from", "")):  # a corrected flux over the
        out["snr"] = np.asarray(out["snr"], np.float64) * a  # apparent image's rms
    out["id"] = np.arange(1, len(out) + 1)
    out.meta = {**det.meta, "n_outside_beam": int((~ok).sum()),
                "beam": ("fluxes divided by the beam's response (measured on the image as "
                         "it is)" if divide else "its pb column: corrected already" if own
                         else "fluxes taken as primary-beam corrected")}
    return out
