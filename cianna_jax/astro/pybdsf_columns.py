"""Catalogues written with PyBDSF's column names and units, for tools made for PyBDSF.

Survey pipelines read PyBDSF's Gaussian lists (``gaul``) and source lists (``srl``) by
its names: ``Total_flux``, ``E_Total_flux``, ``Peak_flux``, ``Maj``, ``DC_Maj``,
``Isl_rms``, ``S_Code``... A catalogue of this package renamed here says the same things
in those words: ids from 0 as PyBDSF counts them (``Gaus_id``, ``Isl_id``,
``Source_id``), sizes and position errors in degrees, fluxes in Jy, peaks and rms in
Jy/beam. Columns PyBDSF has no name for (``snr``, ``objectness``, the flags,
``reliability``, ``pb``...) follow under their own names; PyBDSF's columns this package
does not measure (``Wave_id``, ``RA_max``, the image-plane sizes, ``DC_PA``,
``Isl_mean``...) are absent. Reading such a file back (``read_catalogue`` and the
commands) finds every column by its PyBDSF name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .catalogue import make_table

__all__ = ["with_pybdsf_names", "NAMES", "GAUL", "SRL", "TABLE_FORMATS"]

#: PyBDSF's name, ours, and how ours converts: "id" (1-based -> 0-based) or a factor
GAUL = (("Gaus_id", "id", "id"), ("Isl_id", "island_id", "id"), ("Source_id", "source_id", "id"),
        ("RA", "ra", 1.0), ("E_RA", "ra_err", 1 / 3600), ("DEC", "dec", 1.0),
        ("E_DEC", "dec_err", 1 / 3600), ("Total_flux", "flux", 1.0),
        ("E_Total_flux", "flux_err", 1.0), ("Peak_flux", "peak", 1.0),
        ("E_Peak_flux", "peak_err", 1.0), ("Xposn", "x", 1.0), ("E_Xposn", "x_err", 1.0),
        ("Yposn", "y", 1.0), ("E_Yposn", "y_err", 1.0), ("Maj", "bmaj", 1 / 3600),
        ("E_Maj", "bmaj_err", 1 / 3600), ("Min", "bmin", 1 / 3600),
        ("E_Min", "bmin_err", 1 / 3600), ("PA", "pa", 1.0), ("E_PA", "pa_err", 1.0),
        ("DC_Maj", "bmaj_deconv", 1 / 3600), ("DC_Min", "bmin_deconv", 1 / 3600),
        ("DC_PA", "pa_deconv", 1.0),
        ("Isl_rms", "rms", 1.0), ("S_Code", "s_code", 1.0))
#: a source list's (``source_id`` is its id)
SRL = tuple(r for r in GAUL if r[0] != "Gaus_id")
NAMES = ("cianna", "pybdsf")
#: the writers' formats whose columns are named (SDC text and DS9 regions have their own)
TABLE_FORMATS = ("ascii.ecsv", "csv", "fits", "votable")
_UNITS = {"RA": "deg", "DEC": "deg", "E_RA": "deg", "E_DEC": "deg", "Total_flux": "Jy",
          "E_Total_flux": "Jy", "Peak_flux": "Jy/beam", "E_Peak_flux": "Jy/beam",
          "Xposn": "pix", "E_Xposn": "pix", "Yposn": "pix", "E_Yposn": "pix", "Maj": "deg",
          "E_Maj": "deg", "Min": "deg", "E_Min": "deg", "PA": "deg", "E_PA": "deg",
          "DC_Maj": "deg", "DC_Min": "deg", "DC_PA": "deg", "Isl_rms": "Jy/beam"}


def with_pybdsf_names(table: Any) -> Any:
    """``table`` (a catalogue of Gaussians, or a source list: one with ``n_components``)
    with PyBDSF's names, units and 0-based ids, as the module docstring says; its metadata
    kept. Sizes in pixels (an image without a WCS) stay in pixels."""
    srl = "n_components" in table.colnames
    mapping = SRL if srl else GAUL
    cols: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    used = set()
    for theirs, ours, how in mapping:
        if ours not in table.colnames:
            continue
        used.add(ours)
        v = np.asarray(table[ours])
        if how == "id":
            cols[theirs] = v.astype(np.int64) - 1
        elif isinstance(how, float) and how != 1.0:
            in_pix = str(getattr(table[ours], "unit", "") or "") == "pix"
            cols[theirs] = v.astype(np.float64) * (1.0 if in_pix else how)
            units[theirs] = "pix" if in_pix else _UNITS[theirs]
        else:
            cols[theirs] = v
            if theirs in _UNITS:
                units[theirs] = _UNITS[theirs]
    if "Total_flux" in cols and str(getattr(table["flux"], "unit", "") or "") not in ("", "Jy"):
        units["Total_flux"] = units["E_Total_flux"] = str(table["flux"].unit)  # a cube's
    for name in table.colnames:  # ours that PyBDSF has no name for, as they are
        if name not in used:
            cols[name] = np.asarray(table[name])
            if getattr(table[name], "unit", None) is not None:
                units[name] = str(table[name].unit)
    out = make_table(cols, meta=dict(table.meta), units=units)
    for name in table.colnames:
        if name not in used and table[name].description:
            out[name].description = table[name].description
    out.meta["column_names"] = ("PyBDSF's (ids from 0; sizes and position errors in deg); "
                                "others as cianna_jax names them")
    return out
