"""Sky models in the BBS / makesourcedb text format, written and read.

Calibration works from a model of the sky: DP3 (LOFAR, and MeerKAT or uGMRT pipelines that
use it), BBS and WSClean's component lists read the ``makesourcedb`` text format, which
PyBDSF writes with ``write_catalog(format="bbs")`` and sky-model services (the LOFAR Global
Sky Model) serve. One line per component after a ``format = ...`` header naming the
columns and their defaults::

    format = Name, Type, Patch, Ra, Dec, I, Q, U, V, MajorAxis, MinorAxis, Orientation, \
ReferenceFrequency='1.28e+09', SpectralIndex='[]'
    , , P1, 00:00:00, +00.00.00
    field_i1_s1_g1, GAUSSIAN, P1, 12:30:45.123456, -30.12.34.567890, 1.234e-02, 0.0, 0.0, \
0.0, 5.12e+00, 3.01e+00, 4.5e+01, 1.28e+09, [-0.71]

``Ra`` in hours (``hh:mm:ss.s``), ``Dec`` in degrees (``+dd.mm.ss.s``), ``I`` (and Q, U, V)
the integrated flux density in Jy at ``ReferenceFrequency`` (Hz), the Gaussian's intrinsic
(deconvolved) FWHM axes in arcsec and its orientation in degrees east of north (``POINT``
components have none), ``SpectralIndex`` the terms of ``log S`` against ``log(nu /
ReferenceFrequency)`` (``LogarithmicSI``, true by default; the first term is alpha).

:func:`.catalogue.to_bbs` writes a catalogue (this package's, or another finder's, e.g.
PyBDSF's Gaussian list; ``.skymodel``, ``.sky``, ``.sky_in`` or ``.bbs`` files): a source
``resolved`` in it (else one whose deconvolved size is above 0) is a ``GAUSSIAN`` of its
deconvolved size, the others ``POINT``; the spectral index from its ``alpha`` column where
known, else ``default_alpha``; optionally grouped into patches per source or island
(directions for direction-dependent calibration). :func:`.catalogue.read_catalogue` reads
such a file back (:func:`parse_bbs`: ``ra``, ``dec``, ``flux``, ``bmaj_deconv``,
``bmin_deconv``, ``pa_deconv``, ``alpha``, ...), e.g. as ``val``'s truth or a reference for
``reference-check``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Components", "bbs_text", "component_names", "parse_bbs", "is_bbs", "BbsError",
           "PATCHES", "DEFAULT_ALPHA", "BBS_EXTENSIONS"]

#: how :func:`to_bbs` can group components into patches
PATCHES = ("none", "source", "island")
#: the spectral index written where a source has none (PyBDSF's sky models' too)
DEFAULT_ALPHA = -0.8
BBS_EXTENSIONS = (".skymodel", ".sky", ".sky_in", ".bbs")
_HEAD = "format = "


def _sexagesimal(value: float) -> tuple[int, int, float]:
    """A non-negative value as (units, minutes, seconds), the seconds' rounding to 6 decimals
    carried into the minutes and units."""
    units = int(value)
    m = (value - units) * 60.0
    minutes = int(m)
    seconds = (m - minutes) * 60.0
    if round(seconds, 6) >= 60.0:
        seconds, minutes = 0.0, minutes + 1
    if minutes >= 60:
        minutes, units = minutes - 60, units + 1
    return units, minutes, seconds


def _hms(ra_deg: float) -> str:
    hh, mm, ss = _sexagesimal((ra_deg % 360.0) / 15.0)
    return f"{hh % 24:02d}:{mm:02d}:{ss:09.6f}"


def _dms(dec_deg: float) -> str:
    dd, mm, ss = _sexagesimal(abs(dec_deg))
    return f"{'-' if dec_deg < 0 else '+'}{dd:02d}.{mm:02d}.{ss:09.6f}"


class BbsError(ValueError):
    """A makesourcedb file that cannot be read (the message names the line)."""


@dataclass
class Components:
    """A sky model's components as arrays (one value each): positions (deg), Stokes I flux
    (Jy), whether each is a Gaussian (``shaped``) of intrinsic FWHM ``bmaj``, ``bmin``
    (arcsec) at ``pa`` (deg east of north), its spectral index ``alpha`` (NaN: none), its
    ``names`` and ``patches`` (None: no patches)."""

    names: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray
    shaped: np.ndarray
    bmaj: np.ndarray
    bmin: np.ndarray
    pa: np.ndarray
    alpha: np.ndarray
    patches: np.ndarray | None = None


def component_names(prefix: str, ids: np.ndarray, islands: np.ndarray | None,
                    sources: np.ndarray | None) -> np.ndarray:
    """``<prefix>_i<island>_s<source>_g<id>`` (the parts known), PyBDSF's pattern; the
    prefix made of letters, digits and underscores (an image's file stem)."""
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.splitext(os.path.basename(prefix))[0])
    stem = stem.strip("_") or "cianna"
    out = []
    for k in range(len(ids)):
        name = stem + (f"_i{int(islands[k])}" if islands is not None else "")
        name += f"_s{int(sources[k])}" if sources is not None else ""
        out.append(f"{name}_g{int(ids[k])}")
    return np.asarray(out)


def bbs_text(c: Components, freq_hz: float, *, default_alpha: float | None = DEFAULT_ALPHA
             ) -> str:
    """The makesourcedb text of components ``c`` at reference frequency ``freq_hz`` (Hz),
    in their order (grouped by patch, in order of first appearance, when ``c.patches``);
    ``default_alpha``: the spectral index of those without one (None: an empty list, a
    flat spectrum)."""
    freq = float(freq_hz)
    cols = ["Name", "Type"] + (["Patch"] if c.patches is not None else []) + [
        "Ra", "Dec", "I", "Q", "U", "V", "MajorAxis", "MinorAxis", "Orientation",
        f"ReferenceFrequency='{freq:.6e}'", "SpectralIndex='[]'"]
    lines = [_HEAD + ", ".join(cols), ""]
    order = np.arange(len(c.ra))
    if c.patches is not None:
        first = {p: k for k, p in reversed(list(enumerate(c.patches)))}
        order = sorted(order, key=lambda k: (first[c.patches[k]], k))
    last = None
    for i in order:
        patch = []
        if c.patches is not None:
            if c.patches[i] != last:
                lines.append(f", , {c.patches[i]}, 00:00:00, +00.00.00")
                last = c.patches[i]
            patch = [str(c.patches[i])]
        if c.shaped[i]:
            kind = "GAUSSIAN"
            size = [f"{c.bmaj[i]:.5e}", f"{max(float(np.nan_to_num(c.bmin[i])), 0.0):.5e}",
                    f"{float(np.nan_to_num(c.pa[i])):.5e}"]
        else:
            kind, size = "POINT", ["0.0", "0.0", "0.0"]
        a = c.alpha[i] if math.isfinite(c.alpha[i]) else default_alpha
        spec = "[]" if a is None else f"[{a:.4f}]"
        lines.append(", ".join([str(c.names[i]), kind] + patch + [
            _hms(c.ra[i]), _dms(c.dec[i]), f"{c.flux[i]:.6e}", "0.0", "0.0", "0.0"]
            + size + [f"{freq:.6e}", spec]))
    return "\n".join(lines) + "\n"


def is_bbs(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a makesourcedb text file (its first non-comment line a ``format =``
    header, or PyBDSF's ``# (Name, ...) = format``)."""
    try:
        with open(os.fspath(path), encoding="utf-8", errors="replace") as fh:
            for _ in range(64):
                line = fh.readline()
                if not line:
                    return False
                s = line.strip()
                if re.match(r"^#?\s*\(.*\)\s*=\s*format", s, re.I) or s.lower().startswith(
                        "format"):
                    return "=" in s
                if s and not s.startswith("#"):
                    return False
    except OSError:
        return False
    return False


def _split(line: str) -> list[str]:
    """A line's comma-separated fields, commas inside brackets or quotes kept."""
    out, cur, depth, quote = [], [], 0, None
    for ch in line:
        if quote:
            cur.append(ch)
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch == "[":
            depth += 1
            cur.append(ch)
        elif ch == "]":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _header(line: str) -> tuple[list[str], dict[str, str]]:
    """The columns and their defaults of a ``format =`` line."""
    s = line.strip()
    m = re.match(r"^#?\s*\((.*)\)\s*=\s*format", s, re.I)
    body = m.group(1) if m else s.split("=", 1)[1]
    names, defaults = [], {}
    for field in _split(body):
        if "=" in field:
            k, v = field.split("=", 1)
            k, v = k.strip(), v.strip().strip("'\"")
            defaults[k.lower()] = v
        else:
            k = field.strip()
        names.append(k)
    return names, defaults


def _angle(text: str, hours: bool) -> float:
    """Degrees of a makesourcedb RA (``hh:mm:ss``, ``12h30m45s``, ``187.5deg``) or Dec
    (``+dd.mm.ss.s``, ``-30d12m34s``, ``-30.2deg``)."""
    t = text.strip()
    if t.lower().endswith(("deg", "d")) and re.fullmatch(r"[+-]?[0-9.eE+-]+\s*(deg|d)", t, re.I):
        return float(re.sub(r"(deg|d)$", "", t, flags=re.I))
    if t.lower().endswith("rad"):
        return math.degrees(float(t[:-3]))
    sign = -1.0 if t.startswith("-") else 1.0
    body = t.lstrip("+-")
    parts = re.split(r"[:hmsd]", body) if re.search(r"[:hmsd]", body) else body.split(".")
    if not hours and ":" not in body and not re.search(r"[hmsd]", body) and len(parts) >= 3:
        parts = [parts[0], parts[1], ".".join(parts[2:])]  # +dd.mm.ss.sss
    vals = [float(p) for p in parts if p != ""]
    value = sum(v / 60.0 ** k for k, v in enumerate(vals))
    return sign * value * (15.0 if hours else 1.0)


def parse_bbs(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A makesourcedb text file's components as columns: ``name``, ``type``, ``patch`` (when
    given), ``ra``, ``dec`` (deg), ``flux`` (Stokes I, Jy at ``ref_freq``), ``q_flux``,
    ``u_flux``, ``v_flux``, ``bmaj_deconv``, ``bmin_deconv`` (arcsec), ``pa_deconv`` (deg),
    ``ref_freq`` (Hz), ``alpha`` (the first spectral term where logarithmic, else NaN); and
    metadata (``frequency_hz``: the header's reference frequency). BbsError naming the line
    for a field that cannot be read; SHAPELET components left out with a warning."""
    p = os.fspath(path)
    names: list[str] | None = None
    defaults: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    skipped = 0
    with open(p, encoding="utf-8", errors="replace") as fh:
        for num, raw in enumerate(fh, start=1):
            s = raw.strip()
            if names is None:
                if re.match(r"^#?\s*\(.*\)\s*=\s*format", s, re.I) or (
                        s.lower().startswith("format") and "=" in s):
                    names, defaults = _header(s)
                continue
            if not s or s.startswith("#"):
                continue
            vals = _split(s)
            row = {names[k].lower(): v for k, v in enumerate(vals) if k < len(names)}
            if not row.get("name") and not row.get("type"):
                continue  # a patch's line
            if row.get("type", "").upper() == "SHAPELET":
                skipped += 1
                continue
            row["_line"] = str(num)
            rows.append(row)
    if names is None:
        raise BbsError(f"{p}: no 'format = ...' header line: not a makesourcedb sky model")
    if skipped:
        warnings.warn(f"{p}: {skipped} SHAPELET components left out (not read)", UserWarning,
                      stacklevel=2)

    def field(row: dict[str, str], key: str) -> str:
        v = row.get(key, "")
        return v if v != "" else defaults.get(key, "")

    def number(row, key, default=math.nan) -> float:
        v = field(row, key)
        if v == "":
            return default
        try:
            return float(v)
        except ValueError:
            raise BbsError(f"{p}: line {row['_line']}: {key} {v!r} is not a number") from None

    cols: dict[str, list] = {k: [] for k in (
        "name", "type", "patch", "ra", "dec", "flux", "q_flux", "u_flux", "v_flux",
        "bmaj_deconv", "bmin_deconv", "pa_deconv", "ref_freq", "alpha")}
    for row in rows:
        try:
            ra, dec = _angle(field(row, "ra"), True), _angle(field(row, "dec"), False)
        except ValueError:
            raise BbsError(f"{p}: line {row['_line']}: cannot read the position "
                                 f"{field(row, 'ra')!r}, {field(row, 'dec')!r}") from None
        if not (math.isfinite(ra) and math.isfinite(dec) and abs(dec) <= 90.0):
            raise BbsError(f"{p}: line {row['_line']}: the position {field(row, 'ra')!r}, "
                           f"{field(row, 'dec')!r} is not on the sky")
        kind = field(row, "type").upper() or "POINT"
        cols["name"].append(field(row, "name"))
        cols["type"].append(kind)
        cols["patch"].append(field(row, "patch"))
        cols["ra"].append(ra % 360.0)
        cols["dec"].append(dec)
        for k, c in (("i", "flux"), ("q", "q_flux"), ("u", "u_flux"), ("v", "v_flux")):
            cols[c].append(number(row, k, 0.0 if k != "i" else math.nan))
        gauss = kind == "GAUSSIAN"
        cols["bmaj_deconv"].append(number(row, "majoraxis", 0.0) if gauss else 0.0)
        cols["bmin_deconv"].append(number(row, "minoraxis", 0.0) if gauss else 0.0)
        cols["pa_deconv"].append(number(row, "orientation", 0.0) if gauss else 0.0)
        cols["ref_freq"].append(number(row, "referencefrequency"))
        terms = field(row, "spectralindex").strip("[] ")
        log = field(row, "logarithmicsi").lower() not in ("false", "0")
        try:
            first = float(terms.split(",")[0]) if terms else math.nan
        except ValueError:
            raise BbsError(f"{p}: line {row['_line']}: SpectralIndex "
                                 f"{field(row, 'spectralindex')!r} is not a list of numbers"
                                 ) from None
        cols["alpha"].append(first if log else math.nan)
    if not any(cols["patch"]):
        del cols["patch"]
    meta: dict[str, Any] = {"sky_model": os.path.basename(p)}
    try:
        ref = float(defaults.get("referencefrequency", "nan"))
    except ValueError:
        ref = math.nan
    if math.isfinite(ref) and ref > 0:
        meta["frequency_hz"] = ref
    return {k: np.asarray(v) for k, v in cols.items()}, meta
