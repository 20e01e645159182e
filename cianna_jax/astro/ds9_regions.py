"""Catalogues as DS9 region files (``.reg``), to look at the sources over the image in
DS9 or CARTA.

One region per source: an ellipse whose axes are the source's FWHM (``bmaj``, ``bmin``:
semi-axes of half the FWHM) at its position angle, labelled with its ``id``; a point where
the size is missing.  Sky positions are written in the catalogue's RA/Dec frame (ICRS, or
the image's FK5 J2000, its ``radec_frame``); without them, image pixels (1-based, as DS9
counts).  DS9 measures an ellipse's angle from the image's x axis (west for a north-up
image), so a position angle east of north is written as PA + 90 deg.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["to_ds9"]


def _unit_factor(col: Any, to: str) -> float | None:
    """The factor converting column ``col`` to unit ``to``; 1 without a unit, None when its
    unit is not convertible."""
    unit = getattr(col, "unit", None)
    if unit is None or str(unit) == "":
        return 1.0
    try:
        return float(unit.to(to))
    except Exception:  # astropy UnitConversionError and friends
        return None


def _frame(table: Any) -> str:
    note = str(table.meta.get("radec_frame", "")).upper()
    return "fk5" if note.startswith("FK5") else "icrs"


def to_ds9(table: Any) -> str:
    """The DS9 region text of ``table`` (columns ``ra``/``dec`` or ``x``/``y``, optionally
    ``bmaj``, ``bmin``, ``pa``, ``id``).  ValueError without positions."""
    names = set(table.colnames)
    sky = {"ra", "dec"} <= names
    if not sky and not {"x", "y"} <= names:
        raise ValueError("DS9 regions need positions: columns 'ra' and 'dec' or 'x' and 'y'")
    n = len(table)
    ids = np.asarray(table["id"]) if "id" in names else np.arange(1, n + 1)
    if sky:
        pos = np.asarray(table["ra"], np.float64), np.asarray(table["dec"], np.float64)
        size_unit, suffix, system = "arcsec", '"', _frame(table)
    else:
        pos = np.asarray(table["x"], np.float64) + 1.0, np.asarray(table["y"], np.float64) + 1.0
        size_unit, suffix, system = "pix", "", "image"
    sizes = None
    if {"bmaj", "bmin"} <= names:
        fa = _unit_factor(table["bmaj"], size_unit)
        fb = _unit_factor(table["bmin"], size_unit)
        if fa is not None and fb is not None:
            sizes = (np.asarray(table["bmaj"], np.float64) * fa,
                     np.asarray(table["bmin"], np.float64) * fb)
    pa = np.asarray(table["pa"], np.float64) if "pa" in names else np.zeros(n)
    lines = ["# Region file format: DS9 version 4.1",
             f"# cianna_jax catalogue, {n} sources: ellipses of FWHM axes at their position "
             "angle (PA east of north + 90 deg, DS9's angle)",
             'global color=green font="helvetica 10 normal" select=1 edit=1 move=1 delete=1 '
             "include=1 source=1", system]
    fmt = "{:.8f}" if sky else "{:.3f}"
    for i in range(n):
        a, b = (float(sizes[0][i]), float(sizes[1][i])) if sizes is not None else (math.nan,) * 2
        x, y = fmt.format(pos[0][i]), fmt.format(pos[1][i])
        label = f"text={{{ids[i]}}}"
        if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0:
            angle = float(pa[i]) + 90.0 if math.isfinite(float(pa[i])) else 90.0
            lines.append(f"ellipse({x},{y},{a / 2:.4g}{suffix},{b / 2:.4g}{suffix},"
                         f"{angle:.3f}) # {label}")
        else:
            lines.append(f"point({x},{y}) # point=cross {label}")
    return "\n".join(lines) + "\n"
