"""A catalogue whose double sources are one source each: the lobes of a radio galaxy merged.

A finder lists a radio galaxy's two lobes apart; :mod:`.doubles` pairs them (and chance
neighbours alike); a morphology classifier (:mod:`.morphology_apply`) tells the pairs that
look like one radio galaxy at their centres from those that do not. :func:`associated`
writes the catalogue a survey's value-added release gives: each confirmed pair one row at
its flux-weighted centre with the summed flux, the pair's separation as its largest size
(``bmaj``, arcsec), its axis as ``pa``, the larger of the lobes' minor axes as ``bmin`` and
the brighter lobe's peak; every other source as it was. ``n_components`` (2 or 1) and
``associated`` (the pair's number, 0) say which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalogue import CatalogueError, column_values, find_column
from .morphology import CLASS_COLUMN

__all__ = ["associated"]


def associated(table: Any, pairs: Any, classes: Sequence[str],
               what: str = "catalogue") -> Any:
    """``table`` with the pairs of ``pairs`` (:func:`.doubles.find_doubles`' pairs, with
    the classifier's :data:`.morphology.CLASS_COLUMN`) whose class is one of ``classes``
    merged into one row each (see the module); CatalogueError without the class column."""
    if CLASS_COLUMN not in pairs.colnames:
        raise CatalogueError(f"{what}: the pairs have no {CLASS_COLUMN} column: classify them "
                             "first (doubles --classifier)")
    names = np.asarray(pairs[CLASS_COLUMN]).astype(str)
    confirmed = np.flatnonzero(np.isin(names, list(classes)))
    a = np.asarray(pairs["row_1"], np.int64)[confirmed]
    b = np.asarray(pairs["row_2"], np.int64)[confirmed]
    out = table.copy(copy_data=True)
    out["n_components"] = np.ones(len(out), np.int64)
    out["associated"] = np.zeros(len(out), np.int64)
    if not confirmed.size:
        return out
    cols = {c: find_column(out, c) for c in ("ra", "dec", "flux", "bmaj", "bmin", "pa", "peak")}
    for c in ("ra", "dec", "flux"):
        if cols[c] is None or out[cols[c]].dtype.kind != "f":
            raise CatalogueError(f"{what}: no numeric {c} column (in degrees or with a unit) "
                                 "to merge the pairs into")
    sep = np.asarray(pairs["sep"], np.float64)[confirmed]
    minor = column_values(out, "bmin", what)
    peak = column_values(out, "peak", what)
    for k, (i, j) in enumerate(zip(a, b)):
        p = confirmed[k]
        out[cols["ra"]][i] = _in_unit(out[cols["ra"]], float(pairs["ra"][p]), "deg")
        out[cols["dec"]][i] = _in_unit(out[cols["dec"]], float(pairs["dec"][p]), "deg")
        out[cols["flux"]][i] = _in_unit(out[cols["flux"]], float(pairs["flux"][p]), "Jy")
        if cols["bmaj"] is not None:
            out[cols["bmaj"]][i] = _in_unit(out[cols["bmaj"]], sep[k])
        if cols["bmin"] is not None and minor is not None:
            out[cols["bmin"]][i] = _in_unit(out[cols["bmin"]], float(np.nanmax(minor[[i, j]])))
        if cols["pa"] is not None:
            out[cols["pa"]][i] = _in_unit(out[cols["pa"]], float(pairs["pa"][p]), "deg")
        if cols["peak"] is not None and peak is not None:
            out[cols["peak"]][i] = _in_unit(out[cols["peak"]], float(np.nanmax(peak[[i, j]])),
                                            "Jy/beam")
        out["n_components"][i] = 2
        out["associated"][i] = int(pairs["number"][p])
    keep = np.ones(len(out), bool)
    keep[b] = False
    return out[keep]


def _in_unit(col: Any, value: float, unit: str = "arcsec") -> float:
    """``value`` (in ``unit``) in the column's own unit, where it has one."""
    if getattr(col, "unit", None) is None:
        return value
    from astropy import units as u

    return float((value * u.Unit(unit)).to_value(col.unit))
