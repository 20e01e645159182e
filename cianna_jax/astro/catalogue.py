"""Source catalogues as astropy tables: building, writing by extension, reading back,
and the SKA Data Challenges' submission text formats (SDC1 for images, SDC2 for HI cubes).

Formats by extension: ``.ecsv``, ``.csv`` (comma-separated ECSV: units in the ``#``
header), ``.fits``/``.fit``, ``.xml``/``.vot`` (VOTable), ``.sdc1``/``.txt`` (SDC1
text, whitespace-separated, one header line) and ``.sdc2`` (SDC2 text, the same; a
``.txt`` file whose header names SDC2's columns is read as SDC2).  Every write is atomic:
a failed write leaves no partial file and keeps any previous one.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from ._deps import require
from .ds9_regions import to_ds9
from .hi_mass import hi_diameter_arcsec, hi_mass
from .pybdsf_text import is_pybdsf_text, read_pybdsf_text
from .skymodel import (
    DEFAULT_ALPHA,
    PATCHES,
    Components,
    bbs_text,
    component_names,
    is_bbs,
    parse_bbs,
)

__all__ = ["CatalogueError", "FORMATS", "catalogue_shapes", "to_bbs", "SDC1_COLUMNS", "catalogue_format", "make_table",
           "write_catalogue", "read_catalogue", "find_column", "require_columns", "angle_column", "column_values",
           "warn_unitless_sizes", "selected_rows", "column_text",
           "to_sdc1", "write_sdc1", "sdc1_classes", "read_sdc1", "PA_CONVENTION", "SDC2_COLUMNS", "SDC2_Q0",
           "to_sdc2", "read_sdc2", "sdc2_columns", "disc_inclination", "W20_FRAME"]

PA_CONVENTION = "degrees east of north (counter-clockwise from north towards east), in [0, 180)"

FORMATS = {".ecsv": "ascii.ecsv", ".csv": "csv", ".fits": "fits", ".fit": "fits",
           ".xml": "votable", ".vot": "votable", ".sdc1": "sdc1", ".txt": "sdc1", ".sdc2": "sdc2",
           ".reg": "ds9", ".skymodel": "bbs", ".sky": "bbs", ".sky_in": "bbs", ".bbs": "bbs"}

#: Columns of an SDC1 submission / truth file, in order (what the official scorer reads).
SDC1_COLUMNS = ("id", "ra_core", "dec_core", "ra_cent", "dec_cent", "flux", "core_frac",
                "b_maj", "b_min", "pa", "size", "class")

#: Columns of an SDC2 submission / truth file, in order (what the official scorer reads).
SDC2_COLUMNS = ("id", "ra", "dec", "hi_size", "line_flux_integral", "central_freq", "pa", "i",
                "w20")
_SDC2_UNITS = {"ra": "deg", "dec": "deg", "hi_size": "arcsec", "line_flux_integral": "Jy Hz",
               "central_freq": "Hz", "pa": "deg", "i": "deg", "w20": "km/s"}
#: intrinsic axis ratio of an edge-on HI disc (Holmberg's 0.2), for inclinations
SDC2_Q0 = 0.2
#: the table metadata key of a w20 measured in the observed frame (SDC2's c dz), not ours
W20_FRAME = "w20_frame"

# name -> (unit string, description)
_COLUMNS: dict[str, tuple[str | None, str]] = {
    "id": (None, "source number (1-based, brightest first)"),
    "ra": ("deg", "right ascension: ICRS, or the image's equatorial J2000 WCS (meta radec_frame)"),
    "dec": ("deg", "declination: ICRS, or the image's equatorial J2000 WCS (meta radec_frame)"),
    "glon": ("deg", "galactic longitude (galactic images)"),
    "glat": ("deg", "galactic latitude (galactic images)"),
    "x": ("pix", "x pixel, 0-based (FITS pixel 1 is 0)"),
    "y": ("pix", "y pixel, 0-based"),
    "z": ("pix", "channel, 0-based (cubes: the middle of the line's 50% crossings)"),
    "flux": ("Jy", "integrated flux density (beam-corrected)"),
    "ra_err": ("arcsec", "1-sigma error of ra, as an angle on the sky (east-west)"),
    "dec_err": ("arcsec", "1-sigma error of dec"),
    "x_err": ("pix", "1-sigma error of x"),
    "y_err": ("pix", "1-sigma error of y"),
    "z_err": ("pix", "1-sigma error of z (cubes: as freq_err)"),
    "flux_err": ("Jy", "1-sigma error of flux from the local noise (fit errors, see meta)"),
    "peak": ("Jy/beam", "peak brightness of the fitted Gaussian"),
    "peak_err": ("Jy/beam", "1-sigma error of peak"),
    "rms": ("Jy/beam", "local noise rms at the source"),
    "snr": (None, "peak / local rms"),
    "pb": (None, "primary beam's response at the source: flux, peak, their errors and rms "
                 "divided by it (the image's are pb times them)"),
    "bmaj": ("arcsec", "FWHM major axis of the fitted (beam-convolved) Gaussian"),
    "bmin": ("arcsec", "FWHM minor axis of the fitted (beam-convolved) Gaussian"),
    "pa": ("deg", "position angle of the major axis, " + PA_CONVENTION),
    "bmaj_err": ("arcsec", "1-sigma error of bmaj"),
    "bmin_err": ("arcsec", "1-sigma error of bmin"),
    "pa_err": ("deg", "1-sigma error of pa (90: unconstrained, a nearly round source)"),
    "bmaj_deconv": ("arcsec", "FWHM major axis deconvolved from the beam (0: unresolved)"),
    "bmin_deconv": ("arcsec", "FWHM minor axis deconvolved from the beam (0: unresolved)"),
    "pa_deconv": ("deg", "position angle of the deconvolved major axis, " + PA_CONVENTION),
    "resolved": (None, "True when the fitted area exceeds the beam's by over 3 sigma "
                       "(False: unresolved, or not fitted)"),
    "freq": ("Hz", "line centre frequency (cubes with a spectral WCS)"),
    "line_flux": ("Jy Hz", "integrated line flux: the whole line's flux (fitted on its "
                           "moment-0 map) times the channel width (cubes)"),
    "line_flux_err": ("Jy Hz", "1-sigma error of line_flux"),
    "w50": ("km/s", "line width at 50% of the spectrum's peak, rest frame (c dnu / nu)"),
    "w20": ("km/s", "line width at 20% of the spectrum's peak, rest frame (c dnu / nu)"),
    "freq_err": ("Hz", "1-sigma error of freq (the spectrum measured again with its noise "
                       "added, 200 times)"),
    "w50_err": ("km/s", "1-sigma error of w50 (as freq_err)"),
    "w20_err": ("km/s", "1-sigma error of w20 (as freq_err)"),
    "log_mhi_err": (None, "1-sigma error of log_mhi from line_flux_err (distance exact)"),
    "d_hi_err": ("arcsec", "1-sigma error of d_hi for one galaxy: log_mhi_err through the "
                           "relation and its 0.06 dex scatter"),
    "redshift": (None, "redshift of the line (rest frequency in the metadata)"),
    "log_mhi": (None, "log10 of the HI mass in solar masses, 49.7 D_L^2 line_flux (D_L in "
                      "Mpc, Planck 2018 cosmology; HI lines only)"),
    "d_hi": ("arcsec", "HI diameter at 1 Msun/pc^2 predicted from log_mhi by the HI size-mass "
                       "relation (Wang et al. 2016; 0.06 dex scatter; HI lines only)"),
    "w50_chan": ("pix", "line width at 50% of the spectrum's peak, in channels (cubes)"),
    "w20_chan": ("pix", "line width at 20% of the spectrum's peak, in channels (cubes)"),
    "pa_kin": ("deg", "position angle of the receding half of the major axis, east of north "
                      "in [0, 360) (cubes; NaN where the velocity gradient is under 3 sigma)"),
    "pa_kin_snr": (None, "significance of the velocity gradient along the major axis"),
    "hi_size": ("arcsec", "HI size: SDC2's, the major axis diameter at 1 Msun/pc^2 (face-on "
                          "surface density)"),
    "i": ("deg", "inclination of the HI disc (0: face-on)"),
    "incl": ("deg", "inclination of a thin disc of intrinsic axis ratio 0.2 seen with the "
                    "deconvolved axes (0: face-on; cubes, NaN where unresolved)"),
    "objectness": (None, "detector objectness score"),
    "reliability": (None, "estimated probability that the source is real: 1 - the fraction of "
                          "false detections at its SNR, from the detector run on the inverted "
                          "image (meta: reliability)"),
    "prior": (None, "YOLO prior (box) index that made the detection"),
    "det_class": (None, "the detector's most probable class (a detector trained with "
                        "--class-column)"),
    "det_prob": (None, "the detector's probability of det_class (softmax over its classes)"),
    "fit_ok": (None, "True when the Gaussian fit converged (else box measurements)"),
    "edge": (None, "True when the source's extent reaches a pixel off the image or without "
                   "data: flux and size may be short"),
    "blended": (None, "True when another source's half-maximum extent overlaps this one's: "
                      "the fits share flux"),
    "blend_group": (None, "number shared by the sources linked by overlapping half-maximum "
                          "extents (1 for the brightest's; 0: not blended)"),
    "island_id": (None, "the Gaussians whose centres lie in one island of pixels 3 local rms "
                        "above the background (8-connected, PyBDSF's Isl_id) share it"),
    "source_id": (None, "the Gaussians of one source share it, 1, 2, ... from the brightest's "
                        "(PyBDSF's grouping rule, meta sources)"),
    "s_code": (None, "S: one Gaussian alone in its island; C: one Gaussian in an island with "
                     "other sources; M: several Gaussians (PyBDSF's S_Code)"),
    "n_components": (None, "number of Gaussians of the source"),
    "component_ids": (None, "the catalogue ids of the source's Gaussians"),
    "deblended": (None, "True when the detector boxed this source with close neighbours, "
                        "once: the box's separate peaks were split into one source each, "
                        "fitted together"),
}

#: UCD1+ words of the standard columns (IVOA), written into VOTables' FIELDs (TOPCAT, Aladin
#: and VizieR read positions, fluxes and errors by them) and kept in the other formats' column
#: metadata
_UCDS: dict[str, str] = {
    "id": "meta.id;meta.main", "ra": "pos.eq.ra;meta.main", "dec": "pos.eq.dec;meta.main",
    "glon": "pos.galactic.lon", "glat": "pos.galactic.lat",
    "x": "pos.cartesian.x;instr.det", "y": "pos.cartesian.y;instr.det",
    "z": "pos.cartesian.z;instr.det",
    "flux": "phot.flux.density;em.radio", "flux_err": "stat.error;phot.flux.density",
    "ra_err": "stat.error;pos.eq.ra", "dec_err": "stat.error;pos.eq.dec",
    "x_err": "stat.error;pos.cartesian.x", "y_err": "stat.error;pos.cartesian.y",
    "peak": "phot.flux.density;stat.max;em.radio", "peak_err": "stat.error;phot.flux.density",
    "rms": "stat.stdev;phot.flux.density", "snr": "stat.snr",
    "bmaj": "phys.angSize.smajAxis", "bmin": "phys.angSize.sminAxis", "pa": "pos.posAng",
    "bmaj_err": "stat.error;phys.angSize.smajAxis",
    "bmin_err": "stat.error;phys.angSize.sminAxis", "pa_err": "stat.error;pos.posAng",
    "bmaj_deconv": "phys.angSize.smajAxis", "bmin_deconv": "phys.angSize.sminAxis",
    "pa_deconv": "pos.posAng", "freq": "em.freq", "freq_err": "stat.error;em.freq",
    "line_flux": "phot.flux;spect.line", "line_flux_err": "stat.error;phot.flux",
    "w50": "spect.line.width", "w20": "spect.line.width", "redshift": "src.redshift",
    "log_mhi": "phys.mass", "d_hi": "phys.size.diameter", "hi_size": "phys.size.diameter",
    "reliability": "stat.probability", "objectness": "stat.likelihood",
    "fit_ok": "meta.code.qual", "edge": "meta.code.qual", "blended": "meta.code.qual",
    "resolved": "meta.code.class", "s_code": "meta.code.class", "island_id": "meta.id",
    "source_id": "meta.id", "blend_group": "meta.id", "n_components": "meta.number",
}

_ALIASES: dict[str, tuple[str, ...]] = {
    "ra": ("ra", "ra_deg", "raj2000", "ra_core", "ra_cent", "alpha"),
    "dec": ("dec", "dec_deg", "dej2000", "decj2000", "dec_core", "dec_cent", "delta"),
    "island_id": ("island_id", "isl_id", "island"),
    "x": ("x", "xpos", "x_pix", "xposn"),
    "y": ("y", "ypos", "y_pix", "yposn"),
    "flux": ("flux", "total_flux", "flux_jy", "s_int", "int_flux", "flux_int"),
    "flux_err": ("flux_err", "e_total_flux", "e_flux", "e_s_int", "err_int_flux"),
    "ra_err": ("ra_err", "e_ra", "e_raj2000", "err_ra"),
    "dec_err": ("dec_err", "e_dec", "e_dej2000", "err_dec"),
    "snr": ("snr", "sn", "s/n"),
    "bmaj": ("bmaj", "b_maj", "maj", "major"),
    "bmin": ("bmin", "b_min", "min", "minor"),
    "pa": ("pa", "position_angle"),
    "objectness": ("objectness", "score", "confidence"),
    "peak": ("peak", "peak_flux", "s_peak", "flux_peak"),
    "rms": ("rms", "isl_rms", "local_rms", "rms_noise"),
    "bmaj_deconv": ("bmaj_deconv", "dc_maj", "deconv_maj"),
    "bmin_deconv": ("bmin_deconv", "dc_min", "deconv_min"),
    "pa_deconv": ("pa_deconv", "dc_pa", "deconv_pa"),
    "freq": ("freq", "central_freq", "freq_hz", "nu", "frequency"),
    "line_flux": ("line_flux", "line_flux_integral"),
    "z": ("z", "channel", "chan"),
}


class CatalogueError(ValueError):
    """A catalogue that cannot be written or used (the message names the problem)."""


def catalogue_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The writer/reader format of ``path`` (by extension unless ``fmt`` is given); raises
    CatalogueError naming the known extensions."""
    if fmt is not None:
        if fmt not in set(FORMATS.values()):
            raise CatalogueError(f"unknown catalogue format {fmt!r} (known: "
                                 f"{sorted(set(FORMATS.values()))})")
        return fmt
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise CatalogueError(f"{os.fspath(path)}: unknown catalogue extension {ext or '(none)'!r}; "
                             f"use one of {', '.join(FORMATS)}")
    return FORMATS[ext]


def make_table(columns: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None,
               units: Mapping[str, str | None] | None = None) -> Any:
    """An astropy Table of ``columns`` (in the given order) with units, descriptions and
    UCDs of the standard columns (``units`` overrides, e.g. pixel sizes without a WCS)."""
    table_mod = require("astropy.table")
    u = require("astropy.units")
    t = table_mod.Table(meta=dict(meta or {}))
    for name, values in columns.items():
        unit, desc = _COLUMNS.get(name, (None, ""))
        if units and name in units:
            unit = units[name]
        t[name] = table_mod.Column(np.asarray(values), name=name, description=desc or None,
                                   unit=u.Unit(unit, parse_strict="silent") if unit else None,
                                   meta={"ucd": _UCDS[name]} if name in _UCDS else None)
    return t


def _serialise(table: Any, fmt: str) -> bytes:
    if fmt == "sdc1":
        return to_sdc1(table).encode()
    if fmt == "sdc2":
        return to_sdc2(table).encode()
    if fmt == "ds9":
        try:
            return to_ds9(table).encode()
        except ValueError as err:
            raise CatalogueError(str(err)) from None
    if fmt == "bbs":
        return to_bbs(table).encode()
    if fmt in ("ascii.ecsv", "csv"):
        buf = io.StringIO()
        table.write(buf, format="ascii.ecsv", delimiter="," if fmt == "csv" else " ")
        return buf.getvalue().encode()
    buf = io.BytesIO()
    if fmt == "votable":
        vt = table.copy(copy_data=False)
        vt.meta = {k: v for k, v in vt.meta.items() if isinstance(v, (str, int, float))}
        vt.write(buf, format="votable")
    else:
        ft = table.copy(copy_data=False)
        ft.meta = {k[:8].upper(): v for k, v in ft.meta.items()
                   if isinstance(v, (str, int, float, bool)) and len(str(v)) < 68}
        for name in ft.colnames:
            if ft[name].dtype == bool:
                ft[name] = ft[name].astype(np.uint8)
        ft.write(buf, format="fits")
    return buf.getvalue()


def write_catalogue(table: Any, path: str | os.PathLike, fmt: str | None = None) -> str:
    """Write ``table`` to ``path`` in the format of its extension (or ``fmt``); returns the
    format.  Atomic: on any error no file (or the previous one) is left."""
    f = catalogue_format(path, fmt)
    data = _serialise(table, f)
    with atomic_write(path) as fh:
        fh.write(data)
    return f


def read_catalogue(path: str | os.PathLike, fmt: str | None = None) -> Any:
    """Read a catalogue (any format above; SDC1 text files get the SDC1 column names,
    PyBDSF's text catalogues their names and units, :mod:`.pybdsf_text`).  Files without a
    known extension are tried as ECSV/ASCII."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no such catalogue file")
    table_mod = require("astropy.table")
    try:
        f = catalogue_format(p, fmt)
    except CatalogueError:
        f = "ascii"
    if f == "ds9":
        raise CatalogueError(f"{p}: DS9 region files are written for viewing, not read as "
                             "catalogues; give the catalogue itself (.ecsv, .fits, ...)")
    try:
        if f == "bbs" or (f in ("ascii", "sdc1") and is_bbs(p)):
            cols, meta = parse_bbs(p)
            return make_table(cols, meta=meta, units={"q_flux": "Jy", "u_flux": "Jy",
                                                      "v_flux": "Jy", "ref_freq": "Hz"})
        if f in ("ascii", "csv", "sdc1") and is_pybdsf_text(p):  # names in a comment line
            return read_pybdsf_text(p)
        if f == "sdc2" or (f == "sdc1" and _header(p) == list(SDC2_COLUMNS)):
            return read_sdc2(p)
        if f == "sdc1":
            return read_sdc1(p)
        if f == "csv":
            return table_mod.Table.read(p, format="ascii.ecsv" if _is_ecsv(p) else "ascii.csv")
        return table_mod.Table.read(p, format=f)
    except CatalogueError:
        raise
    except Exception as err:  # astropy raises many kinds
        raise CatalogueError(f"{p}: cannot read the catalogue ({type(err).__name__}: {err})") from None


def catalogue_shapes(table: Any, what: str = "catalogue"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The intrinsic shapes of a catalogue's sources (for forced photometry,
    :func:`.forced.forced_fluxes`, and sky models, :func:`to_bbs`): the
    deconvolved FWHM axes (``bmaj_deconv``, ``bmin_deconv`` or another finder's names for
    them, e.g. PyBDSF's ``DC_Maj``) and position angle (``pa_deconv``, else ``pa``) of the
    rows its ``resolved`` column marks (without one, those of a deconvolved major axis
    above 0), 0 for the others; None without deconvolved sizes."""
    dmaj, dmin = column_values(table, "bmaj_deconv", what), column_values(table, "bmin_deconv",
                                                                            what)
    if dmaj is None or dmin is None:
        return None
    pa = column_values(table, "pa_deconv", what)
    pa = column_values(table, "pa", what) if pa is None else pa
    pa = np.zeros(len(dmaj)) if pa is None else pa
    with np.errstate(invalid="ignore"):
        res = (np.asarray(table["resolved"], bool) if "resolved" in table.colnames
               else dmaj > 0) & np.isfinite(dmaj) & (dmaj > 0) & np.isfinite(pa)
    return (np.where(res, dmaj, 0.0), np.where(res, np.nan_to_num(np.maximum(dmin, 0.0)), 0.0),
            np.where(res, pa, 0.0))


def to_bbs(table: Any, *, freq_hz: float | None = None, patches: str = "none",
           default_alpha: float | None = DEFAULT_ALPHA, min_flux: float = 0.0,
           what: str = "catalogue") -> str:
    """The catalogue's components as a makesourcedb sky model (:mod:`.skymodel`).
    ``freq_hz``: the reference frequency (default: the catalogue's ``frequency_hz``, which
    ``predict`` records from the image's header); ``patches``: "none", "source" (its
    ``source_id``) or "island" (``island_id``); ``default_alpha``: the spectral index of
    components without an ``alpha`` (None: none, a flat spectrum); ``min_flux`` (Jy):
    fainter components left out. Rows without a finite position or flux are left out with a
    warning."""
    if patches not in PATCHES:
        raise ValueError(f"patches: one of {PATCHES}, received {patches!r}")
    require_columns(table, ("ra", "dec", "flux"), what)
    try:
        freq = float(freq_hz if freq_hz is not None else table.meta.get("frequency_hz"))
    except (TypeError, ValueError):
        freq = float("nan")
    if not (np.isfinite(freq) and freq > 0):
        raise CatalogueError(f"{what}: a sky model needs the reference frequency: its metadata "
                             "has no frequency_hz (predict records the image's); give it "
                             "(freq_hz, --freq-mhz)")
    ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
    flux = column_values(table, "flux", what)
    n = len(table)
    zero = np.zeros(n)
    dmaj, dmin, dpa = catalogue_shapes(table, what) or (zero, zero, zero)
    shaped = dmaj > 0
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(flux)
        keep = ok & (flux >= float(min_flux))
    if (~ok).any():
        warnings.warn(f"{what}: {int((~ok).sum())} rows without a finite position or flux "
                      "left out of the sky model", UserWarning, stacklevel=2)
    src = "source_id" if "source_id" in table.colnames else find_column(table, "source_id")
    isl = find_column(table, "island_id")
    key = {"source": src, "island": isl}.get(patches)
    if patches != "none" and key is None:
        raise CatalogueError(f"{what}: patches by {patches} need its {patches}_id column")
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, n + 1)
    alpha = (np.asarray(table["alpha"], np.float64) if "alpha" in table.colnames
             and find_column(table, "ra") != "alpha" else np.full(n, np.nan))
    names = component_names(str(table.meta.get("image", "") or ""), ids,
                            None if isl is None else np.asarray(table[isl]),
                            None if src is None else np.asarray(table[src]))
    c = Components(names[keep], ra[keep], dec[keep], flux[keep], shaped[keep], dmaj[keep],
                   dmin[keep], dpa[keep], alpha[keep],
                   None if key is None else np.char.add(f"{patches}_", np.asarray(
                       table[key]).astype(np.int64).astype(str))[keep])
    return bbs_text(c, freq, default_alpha=default_alpha)


def _is_ecsv(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline().startswith("# %ECSV")


def angle_column(col: Any, which: str, what: str) -> np.ndarray:
    """An RA (``which="ra"``) or Dec column in degrees, float64, masked entries NaN.

    Numbers are degrees, or converted from the column's angular unit (hourangle, rad...);
    strings are sexagesimal, as many catalogues and CSV files give them ('12:30:45.1' or
    '12h30m45.1s' for RA, in hours; '-45:12:03' or '-45d12m03s' for Dec, in degrees).
    CatalogueError (naming ``what`` and the column) for anything else."""
    name = getattr(col, "name", which)
    mask = np.ma.getmaskarray(col)
    data = np.ma.getdata(col)
    if data.dtype.kind in "USO":  # text: sexagesimal (or decimal) angles
        import astropy.units as u
        from astropy.coordinates import Angle

        unit = u.hourangle if which == "ra" else u.deg
        text = [str(v).strip() for v in data]
        vals = np.full(len(text), np.nan)
        for i, v in enumerate(text):
            if mask[i] or not v:
                continue
            try:
                a = Angle(v, unit=unit) if any(c in v for c in ":hdms ") else Angle(float(v), u.deg)
            except (ValueError, TypeError):
                raise CatalogueError(f"{what}: column {name!r}, row {i}: {v!r} is not an angle "
                                     f"(degrees, or sexagesimal such as "
                                     f"{'12:30:45.1' if which == 'ra' else '-45:12:03'})") from None
            vals[i] = a.deg
        return vals
    try:
        vals = np.array(data, np.float64)
    except (TypeError, ValueError):
        raise CatalogueError(f"{what}: column {name!r} is not numeric ({data.dtype})") from None
    cu = getattr(col, "unit", None)
    if cu is not None and str(cu) not in ("", "deg"):
        try:
            vals *= float(cu.to("deg"))
        except Exception as err:  # astropy UnitConversionError and friends
            raise CatalogueError(f"{what}: column {name!r} has unit {cu}, which is not an "
                                 f"angle ({err})") from None
    vals[mask] = np.nan
    return vals


#: the unit each standard column is read in
STANDARD_UNITS = {"ra": "deg", "dec": "deg", "flux": "Jy", "peak": "Jy/beam", "rms": "Jy/beam",
                  "ra_err": "arcsec", "dec_err": "arcsec", "flux_err": "Jy",
                  "bmaj": "arcsec", "bmin": "arcsec", "bmaj_deconv": "arcsec",
                  "bmin_deconv": "arcsec", "pa": "deg", "pa_deconv": "deg"}


def column_values(t: Any, name: str, what: str = "catalogue") -> np.ndarray | None:
    """Column ``name`` (or an alias) as float64, masked entries NaN, converted to the
    standard unit when the column has a unit (e.g. PyBDSF's sizes in degrees -> arcsec);
    RA and Dec may also be sexagesimal text (:func:`.catalogue.angle_column`)."""
    c = find_column(t, name)
    if c is None:
        return None
    col = t[c]
    if name in ("ra", "dec"):
        return angle_column(col, name, what)
    try:
        vals = np.array(np.ma.getdata(col), np.float64)
    except (TypeError, ValueError):
        raise CatalogueError(f"{what}: column {c!r} is not numeric ({col.dtype})") from None
    unit = STANDARD_UNITS.get(name)
    if unit is not None and getattr(col, "unit", None) is not None:
        try:
            vals *= float(col.unit.to(unit))
        except Exception:  # an unrelated unit: keep the numbers
            pass
    vals[np.ma.getmaskarray(col)] = np.nan  # a masked value is missing, not its fill
    return vals


def warn_unitless_sizes(col: Any, arcsec: np.ndarray, what: str) -> None:
    """Warn when a size column without a unit, read as arcsec (``arcsec``), holds sizes no
    radio image resolves (median below 0.01 arcsec): most likely degrees, as PyBDSF writes
    its Maj and Min, read 3600 times too small."""
    if str(getattr(col, "unit", None) or ""):
        return
    v = np.asarray(arcsec, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and float(np.median(v)) < 0.01:
        import warnings

        warnings.warn(f"{what}: column {getattr(col, 'name', '?')!r} has no unit and is read "
                      f"as arcsec, but its median, {float(np.median(v)):.3g} arcsec, is below "
                      "any radio resolution: if it is in degrees (PyBDSF's Maj, Min), give the "
                      "column its unit", UserWarning, stacklevel=3)


#: Aegean's component lists (Hancock et al. 2012, 2018) name the FWHM axes of their fitted
#: Gaussians ``a`` and ``b`` (arcsec); a table is read that way only when it has Aegean's
#: other columns, as elsewhere ``a`` and ``b`` mean other things (SExtractor: rms axes)
_AEGEAN_SIGNATURE = frozenset({"island", "source", "local_rms", "int_flux", "peak_flux"})
_AEGEAN_SIZES = {"bmaj": "a", "bmin": "b"}


def column_text(column: Any) -> list[str]:
    """A column's values as stripped text (numbers as written: 1 -> "1", and a float
    column's whole numbers as integers: 3.0 -> "3", so that a class code read as a float
    is the same class; masked and NaN entries as ""): class labels, selections."""
    data = np.ma.asarray(column)
    if data.dtype.kind == "f":
        flat = np.ma.filled(data.astype(np.float64), np.nan).ravel()
        whole = np.isfinite(flat) & (flat == np.round(flat)) & (np.abs(flat) < 2 ** 53)
        text = np.ma.filled(data.astype(str), "").ravel()
        masked = np.ma.getmaskarray(data).ravel() | np.isnan(flat)
        return ["" if m else (str(int(v)) if w else str(t).strip())
                for v, w, t, m in zip(flat, whole, text, masked)]
    values = np.ma.filled(data.astype(str), "")
    return [str(v).strip() for v in np.asarray(values).ravel()]


def selected_rows(table: Any, select: str | None, what: str = "catalogue") -> Any:
    """The rows of ``table`` whose column is one of the values of ``select``,
    ``"COLUMN=V1,V2"`` (compared as text: ``morph_class=fr1,fr2``, ``class=3``): a
    subpopulation (star-forming galaxies, AGN) counted over the whole survey's coverage.
    ``select`` None: the table as it is. ValueError naming a malformed selection, a missing
    column or an empty result."""
    if select is None:
        return table
    name, sep, values = str(select).partition("=")
    wanted = {v.strip() for v in values.split(",") if v.strip()}
    if not sep or not name.strip() or not wanted:
        raise ValueError(f"--select: COLUMN=VALUE[,VALUE...], received {select!r}")
    col = find_column(table, name.strip())
    if col is None:
        raise ValueError(f"--select: {what} has no column {name.strip()!r} (its columns: "
                         f"{', '.join(table.colnames)})")
    keep = np.array([v in wanted for v in column_text(table[col])], bool)
    if not keep.any():
        raise ValueError(f"--select: no row of {what} has {col} in {sorted(wanted)}")
    out = table[keep]
    out.meta = dict(table.meta)
    out.meta["selected"] = f"{col} in {', '.join(sorted(wanted))} ({int(keep.sum())} of "
    out.meta["selected"] += f"{len(table)} rows)"
    return out


def find_column(table: Any, name: str) -> str | None:
    """The column of ``table`` standing for ``name`` (case-insensitive, known aliases such as
    ``Total_flux`` for ``flux``; Aegean's ``a``, ``b`` for ``bmaj``, ``bmin`` in an Aegean
    component list), or None."""
    lower = {c.lower(): c for c in table.colnames}
    for alias in _ALIASES.get(name, (name,)):
        if alias.lower() in lower:
            return lower[alias.lower()]
    if name in _AEGEAN_SIZES and _AEGEAN_SIGNATURE <= set(lower):
        return lower.get(_AEGEAN_SIZES[name])
    return None


def require_columns(table: Any, names: Sequence[str], what: str) -> dict[str, str]:
    """``{name: column}`` for each of ``names``; CatalogueError naming every missing one (and
    the accepted spellings)."""
    found = {n: find_column(table, n) for n in names}
    missing = [n for n, c in found.items() if c is None]
    if missing:
        detail = "; ".join(f"{n!r} (accepted: {', '.join(_ALIASES.get(n, (n,)))})"
                           for n in missing)
        raise CatalogueError(f"{what}: missing column(s) {detail}; it has {table.colnames}")
    return {n: str(c) for n, c in found.items()}


def _values(table: Any, name: str, unit: str | None = None) -> np.ndarray:
    col = table[name]
    if unit is not None and getattr(col, "unit", None) is not None:
        try:
            return np.asarray(col.quantity.to_value(unit), np.float64)
        except Exception:  # incompatible unit: take the numbers
            pass
    return np.asarray(col, np.float64)


def to_sdc1(table: Any, *, size_class: int = 2, source_class: int = 3, header: bool = True) -> str:
    """SDC1 submission text of a catalogue with ra, dec, flux, bmaj/bmin (deconvolved ones when
    present), pa: header line then one row per source.  Positions are used for both core and
    centroid, ``core_frac`` is 0, ``size`` is ``size_class`` (2: Gaussian FWHM) and ``class``
    ``source_class`` (3: SFG), or the row's ``morph_class`` where it is an SDC1 class code
    (1 SS-AGN, 2 FS-AGN, 3 SFG: ``cianna-jax classify`` with a classifier trained on SDC1's
    truth ``class``), else its ``det_class`` (a detector trained with ``--class-column
    class``).  ``header=False`` leaves out the header line
    (the official truth files have none; submissions have one)."""
    names = {c.lower() for c in table.colnames}
    if set(SDC1_COLUMNS) <= names:
        cols = {c: _values(table, find_column(table, c) or c) for c in SDC1_COLUMNS}
    else:
        req = require_columns(table, ["ra", "dec", "flux", "bmaj", "bmin", "pa"],
                              "SDC1 output needs sky positions")
        ra = np.mod(_values(table, req["ra"], "deg"), 360.0)
        dec = _values(table, req["dec"], "deg")
        bmaj_name = "bmaj_deconv" if "bmaj_deconv" in table.colnames else req["bmaj"]
        bmin_name = "bmin_deconv" if "bmin_deconv" in table.colnames else req["bmin"]
        n = len(ra)
        cols = {"id": np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, n + 1),
                "ra_core": ra, "dec_core": dec, "ra_cent": ra, "dec_cent": dec,
                "flux": _values(table, req["flux"], "Jy"), "core_frac": np.zeros(n),
                "b_maj": _values(table, bmaj_name, "arcsec"),
                "b_min": _values(table, bmin_name, "arcsec"),
                "pa": _values(table, req["pa"], "deg"), "size": np.full(n, size_class),
                "class": sdc1_classes(table, source_class)}
    bad = [c for c in ("ra_core", "dec_core", "flux", "b_maj", "b_min", "pa")
           if not np.all(np.isfinite(cols[c]))]
    if bad:
        raise CatalogueError(f"SDC1 output: non-finite values in {bad} (the scorer drops such rows; "
                             "fix them first)")
    return _challenge_text(cols, SDC1_COLUMNS, header, {
        "id": "d", "ra_core": ".9f", "dec_core": ".9f", "ra_cent": ".9f", "dec_cent": ".9f",
        "flux": ".9g", "core_frac": ".6g", "b_maj": ".6g", "b_min": ".6g", "pa": ".6g",
        "size": "d", "class": "d"})


def sdc1_classes(table: Any, default: int = 3) -> np.ndarray:
    """SDC1 class codes (1 SS-AGN, 2 FS-AGN, 3 SFG) per row: a ``morph_class`` column's
    values that are codes, else a ``det_class`` column's, else a ``class`` column's (a
    truth's), else ``default``."""
    out = np.full(len(table), default, np.int64)
    for name in ("class", "det_class", "morph_class"):  # the classifier's call wins
        if name in table.colnames:
            text = column_text(table[name])
            out = np.array([int(v) if v in ("1", "2", "3") else o for v, o in zip(text, out)],
                           np.int64)
    return out


def _challenge_text(cols: Mapping[str, np.ndarray], names: Sequence[str], header: bool,
                    formats: Mapping[str, str]) -> str:
    """A challenge's whitespace-separated text: the header line (``header``), then one row
    per source, each column in its ``formats`` spec ("d": an integer)."""
    lines = [" ".join(names)] if header else []
    for i in range(len(cols[names[0]])):
        lines.append(" ".join(format(int(cols[c][i]), "d") if formats[c] == "d"
                              else format(float(cols[c][i]), formats[c]) for c in names))
    return "\n".join(lines) + "\n"


def write_sdc1(table: Any, path: str | os.PathLike, **kw: Any) -> None:
    """Write the SDC1 text of ``table`` (see :func:`to_sdc1`) atomically."""
    text = to_sdc1(table, **kw)
    with atomic_write(path) as fh:
        fh.write(text.encode())


def _header(path: str) -> list[str]:
    """The first non-comment line's words, lower-case."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                return line.lower().split()
    return []


def _numeric_rows(path: str, names: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The whitespace-separated numeric columns ``names`` of a challenge text catalogue
    (a header line is skipped; extra columns are ignored)."""
    n, rows = len(names), []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for k, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                vals = [float(v) for v in parts[:n]]
            except ValueError:
                if not rows:  # a header line
                    continue
                raise CatalogueError(f"{path}, line {k}: non-numeric value in {line.strip()!r}") from None
            if len(vals) < n:
                raise CatalogueError(f"{path}, line {k}: {len(vals)} columns, an {what} catalogue "
                                     f"has {n} ({' '.join(names)})")
            rows.append(vals)
    a = np.array(rows, np.float64).reshape(-1, n)
    return {c: a[:, i] for i, c in enumerate(names)}


def read_sdc1(path: str | os.PathLike) -> Any:
    """Read an SDC1 text catalogue (submission with a header line, or truth without):
    12 whitespace-separated numeric columns; extra columns are ignored.  Returns a Table
    with :data:`SDC1_COLUMNS`."""
    cols = _numeric_rows(os.fspath(path), SDC1_COLUMNS, "SDC1")
    for c in ("id", "size", "class"):
        cols[c] = cols[c].astype(np.int64)
    t = make_table({c: cols[c] for c in SDC1_COLUMNS},
                   units={"ra_core": "deg", "dec_core": "deg", "ra_cent": "deg",
                          "dec_cent": "deg", "flux": "Jy", "b_maj": "arcsec", "b_min": "arcsec",
                          "pa": "deg"})
    return t


def read_sdc2(path: str | os.PathLike) -> Any:
    """Read an SDC2 text catalogue (submission or truth, with or without its header line):
    9 whitespace-separated numeric columns, :data:`SDC2_COLUMNS`.  Its ``w20`` is SDC2's,
    in the observed frame (``c dz``; the table's metadata says so, and ``val`` reads it
    so)."""
    cols = _numeric_rows(os.fspath(path), SDC2_COLUMNS, "SDC2")
    cols["id"] = cols["id"].astype(np.int64)
    return make_table(cols, meta={W20_FRAME: "observed"}, units=_SDC2_UNITS)


def to_sdc2(table: Any, *, header: bool = True) -> str:
    """SDC2 submission text of a cube's line catalogue (:func:`sdc2_columns`): header line,
    then one row per line. Lines with a non-finite value (e.g. no w20: a spectrum without a
    positive peak) are left out, with a warning: the official scorer drops them before
    counting (the score is the same)."""
    cols = sdc2_columns(table)
    finite = np.all([np.isfinite(cols[c]) for c in SDC2_COLUMNS], axis=0)
    if not finite.all():
        import warnings

        bad = [c for c in SDC2_COLUMNS if not np.all(np.isfinite(cols[c]))]
        warnings.warn(f"SDC2 output: {int(np.count_nonzero(~finite))} of {finite.size} lines "
                      f"left out, with non-finite values in {bad} (the scorer drops them)",
                      UserWarning, stacklevel=2)
        cols = {c: v[finite] for c, v in cols.items()}
    return _challenge_text(cols, SDC2_COLUMNS, header, {
        "id": "d", "ra": ".9f", "dec": ".9f", "hi_size": ".9g", "line_flux_integral": ".9g",
        "central_freq": ".12g", "pa": ".9g", "i": ".9g", "w20": ".9g"})


def sdc2_columns(table: Any) -> dict[str, np.ndarray]:
    """The SDC2 columns (:data:`SDC2_COLUMNS`) of a cube's line catalogue.

    A table with SDC2's columns gives them as they are. From this package's catalogue:
    ``ra``, ``dec``; ``line_flux_integral`` the ``line_flux`` (Jy Hz); ``central_freq``
    the ``freq`` (Hz); ``w20`` in SDC2's observed frame, ``(1 + redshift)`` times the
    catalogue's rest-frame one (the ``redshift`` column, else HI's from ``freq``);
    ``hi_size`` SDC2's HI diameter at 1 Msun/pc^2 from the HI mass by the size-mass relation
    (the ``d_hi`` column, else computed from ``line_flux`` and the redshift:
    :mod:`.hi_mass`), where the line has a positive flux, else the deconvolved FWHM major
    axis (``bmaj_deconv``, arcsec); ``i`` from the deconvolved
    axis ratio ``q`` of a disc of intrinsic ratio :data:`SDC2_Q0`,
    ``cos^2 i = (q^2 - q0^2) / (1 - q0^2)`` (60 degrees, the median of random orientations,
    for an unresolved line); ``pa`` the receding half's ``pa_kin`` where measured, else the
    axis' ``pa``. ``hi_size`` and ``i`` columns, where the table has them (a simulated
    truth), are taken as they are. Raises CatalogueError for missing columns."""
    from .spectral import HI_REST_HZ

    if all(find_column(table, c) for c in SDC2_COLUMNS):
        cols = {c: _values(table, find_column(table, c)) for c in SDC2_COLUMNS}
    else:
        req = require_columns(table, ["ra", "dec", "line_flux", "freq", "w20", "bmaj", "pa"],
                              "SDC2 output needs a cube's line catalogue with frequencies")
        n = len(table)
        freq = _values(table, req["freq"], "Hz")
        z = (_values(table, "redshift") if "redshift" in table.colnames
             else HI_REST_HZ / freq - 1.0)
        dmaj = _values(table, "bmaj_deconv", "arcsec") if "bmaj_deconv" in table.colnames \
            else _values(table, req["bmaj"], "arcsec")
        dmin = _values(table, "bmin_deconv", "arcsec") if "bmin_deconv" in table.colnames \
            else np.zeros(n)
        incl = disc_inclination(dmaj, dmin)
        if "hi_size" in table.colnames and "i" in table.colnames:
            size, incl = _values(table, "hi_size", "arcsec"), _values(table, "i", "deg")
        else:
            size = _values(table, "d_hi", "arcsec") if "d_hi" in table.colnames else \
                hi_diameter_arcsec(hi_mass(_values(table, req["line_flux"], "Hz Jy"), z), z)
            size = np.where(np.isfinite(size), size, dmaj)
        pa = _values(table, req["pa"], "deg")
        if "pa_kin" in table.colnames:
            kin = _values(table, "pa_kin", "deg")
            pa = np.where(np.isfinite(kin), kin, pa)
        cols = {"id": np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, n + 1),
                "ra": np.mod(_values(table, req["ra"], "deg"), 360.0),
                "dec": _values(table, req["dec"], "deg"), "hi_size": size,
                "line_flux_integral": _values(table, req["line_flux"], "Hz Jy"),
                "central_freq": freq, "pa": pa, "i": incl,
                "w20": _values(table, req["w20"], "km/s") * (1.0 + z)}
    return cols


def disc_inclination(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Inclination (deg) of a disc of intrinsic axis ratio :data:`SDC2_Q0` seen with axes
    ``major``, ``minor`` (deconvolved): ``cos^2 i = (q^2 - q0^2) / (1 - q0^2)``, 90 for
    ``q <= q0``, 60 (the median of random orientations) where ``major`` is 0 or NaN."""
    major, minor = np.asarray(major, np.float64), np.asarray(minor, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(major > 0, minor / major, np.nan)
        cos2 = (np.clip(q, SDC2_Q0, 1.0) ** 2 - SDC2_Q0**2) / (1.0 - SDC2_Q0**2)
    return np.where(np.isfinite(q), np.degrees(np.arccos(np.sqrt(cos2))), 60.0)
