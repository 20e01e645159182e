"""A training catalogue placed on an image: source positions, sizes and CIANNA YOLO boxes.

:func:`read_training_catalogue` reads the catalogue a user trains a detector with: any table
:func:`.catalogue.read_catalogue` reads (ECSV, CSV, FITS, VOTable; columns by name,
case-insensitive, with the aliases of :func:`.catalogue.find_column`), the SDC1 submission /
truth text (12 columns) and the SDC1 *training-set* text (``TrainingSet_B*.txt``, 15
columns, see :data:`SDC1_TRAINING_COLUMNS`).  It puts every source in the image frame
(0-based pixels, array index ``[y, x]``), drops those outside the image or on blank pixels,
and builds the boxes the detector learns: the axis-aligned extent of the rotated FWHM
ellipse times ``box_scale`` (:func:`cianna_jax.datasets.radio_sky.boxes_from_catalogue`), each
side between a beam-tied minimum and ``max_box``.  Boxes are in CIANNA's pixel-edge frame:
pixel ``i`` spans ``[i, i + 1)``, so a source at pixel ``x`` has its box centred on
``x + 0.5``.

:func:`training_area` is the catalogue's footprint (where it is complete, so where
source-free negatives may be drawn) and :func:`split_area` cuts it into a training and a
validation part that never overlap.

Facts taken from CIANNA's SDC1 example (``examples/SKAO_SDC1/data_gen.py``): positions from
the core RA/Dec through the image WCS; only rows with ``SELECTION == 1`` (sources actually
injected in the image); boxes from the intrinsic BMAJ/BMIN (arcsec) times 2, major axis
along x at PA 0, sides clipped to [5, 64] pixels (5 px = 2 x the 1.5" beam at 0.6"/px); the
training area is the bounding box of the catalogue shrunk by 10 pixels (here
``margin=-10``).  Two choices differ on purpose: sizes are convolved with the beam before
the factor 2 (CIANNA takes the larger of 2 x intrinsic and the 5 px floor: the same for
point and large sources, CIANNA's a little smaller for sizes near the beam), and the extent is that of the rotated ellipse
(:func:`radio_sky.boxes_from_catalogue`), where CIANNA takes that of the rotated rectangle
(up to sqrt(2) larger at 45 degrees).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..datasets import radio_sky as rs
from .catalogue import (
    CatalogueError,
    angle_column,
    column_text,
    find_column,
    make_table,
    read_catalogue,
    require_columns,
    warn_unitless_sizes,
)
from .fits_image import FitsImage
from .sky import pa_to_pixel_angle, sky_to_pixel

__all__ = ["SourceLabels", "class_names", "class_order", "SDC1_TRAINING_COLUMNS",
           "FALLBACK_BEAM_PIXELS", "read_sdc1_training", "read_training_catalogue",
           "training_area", "split_area", "default_max_obj"]

#: Columns of the SDC1 training-set text files (``TrainingSet_B1_v2.txt``...), in order, as
#: documented in their header: ID, RA/Dec of the core and of the centroid (deg), FLUX (Jy,
#: integrated), core fraction, BMAJ/BMIN (arcsec, intrinsic FWHM, before the restoring beam),
#: PA (deg, "measured clockwise from the longitude-wise direction"), SIZE (1 LAS,
#: 2 Gaussian, 3 exponential), CLASS (1 SS-AGN, 2 FS-AGN, 3 SFG), SELECTION (1: injected in
#: the image), x, y (pixels of the centroid, 0-based).
SDC1_TRAINING_COLUMNS = ("id", "ra_core", "dec_core", "ra_cent", "dec_cent", "flux", "core_frac",
                         "b_maj", "b_min", "pa", "size", "class", "selection", "x", "y")

FALLBACK_BEAM_PIXELS = 3.0
"""Beam FWHM (pixels) assumed when neither the header nor the catalogue's sizes give one
(the same guess as :func:`.validate.validate`)."""

_TABLE_EXT = {".ecsv", ".csv", ".fits", ".fit", ".xml", ".vot"}


@dataclass(frozen=True, eq=False)
class SourceLabels:
    """Training sources in the image frame (n sources).

    ``x, y`` float64 [n]: 0-based pixel positions (pixel centres); ``flux`` [n] Jy;
    ``bmaj, bmin`` [n]: apparent (beam-convolved) FWHM in pixels; ``theta`` [n] radians: the
    major axis in the pixel frame, measured from +y towards -x (the ``pa`` of
    :class:`cianna_jax.datasets.radio_sky.Catalogue`); ``snr`` [n] or None; ``boxes`` [n, 6]
    float32 CIANNA corners (xmin, ymin, zmin, xmax, ymax, zmax) in image pixels, pixel-edge
    frame, z from 0 to 1; ``image_shape`` (H, W); ``source`` the catalogue path;
    ``classes`` [n] str or None: each source's class as text (the catalogue's class column,
    :func:`class_names` orders them for a detector that classifies; "" where a source has
    none: its box trains, its class does not).
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    bmaj: np.ndarray
    bmin: np.ndarray
    theta: np.ndarray
    snr: np.ndarray | None
    boxes: np.ndarray
    image_shape: tuple[int, int]
    source: str
    classes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, mask: np.ndarray) -> SourceLabels:
        """The sources of ``mask`` (boolean [n] or integer indices), same image and file."""
        idx = np.asarray(mask)
        if idx.dtype == bool and idx.shape != self.x.shape:
            raise ValueError(f"mask has shape {idx.shape}, expected {self.x.shape}")
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("x", "y", "flux", "bmaj", "bmin", "theta", "boxes"):
            kw[name] = kw[name][idx]
        kw["snr"] = None if self.snr is None else self.snr[idx]
        kw["classes"] = None if self.classes is None else self.classes[idx]
        return SourceLabels(**kw)

    def class_codes(self, names: Sequence[str]) -> np.ndarray:
        """Each source's class as its 0-based index in ``names`` (int64 [n]; -1 for a
        source without a class); ValueError when the labels have no classes or hold one
        that ``names`` lacks."""
        if self.classes is None:
            raise ValueError(f"{self.source}: the labels have no classes (give a class column)")
        index = {str(v): k for k, v in enumerate(names)}
        index[""] = -1
        unknown = sorted(set(self.classes.tolist()) - set(index))
        if unknown:
            raise ValueError(f"{self.source}: classes {unknown} are not among {list(names)}")
        return np.array([index[v] for v in self.classes.tolist()], np.int64)


#: the most classes :func:`class_names` takes (each class is a YOLO output per box)
MAX_CLASSES = 64


def class_names(labels: Sequence[SourceLabels]) -> tuple[str, ...]:
    """The classes of one or more fields' labels, in a fixed order: numerically when every
    class is an integer (SDC1's 1 SS-AGN, 2 FS-AGN, 3 SFG), else alphabetically (sources
    without a class, "", are not a class).
    ValueError when a field has no classes, or there are fewer than two in all or more
    than :data:`MAX_CLASSES`."""
    found: set[str] = set()
    blank = 0
    for lb in labels:
        if lb.classes is None:
            raise ValueError(f"{lb.source}: the labels have no classes (give a class column)")
        found.update(lb.classes.tolist())
        blank += int(np.count_nonzero(lb.classes == ""))
    found.discard("")
    if len(found) < 2:
        raise ValueError(f"class column: a detector that classifies needs at least two "
                         f"classes; the catalogue(s) hold {sorted(found)}"
                         + (f" ({blank} sources without a class)" if blank else ""))
    if len(found) > MAX_CLASSES:
        raise ValueError(f"class column: {len(found)} distinct values (e.g. "
                         f"{sorted(found)[:3]}), more than the {MAX_CLASSES} classes a detector "
                         "learns: is it an identifier or a measurement rather than a class?")
    return class_order(found)


def class_order(classes: Any) -> tuple[str, ...]:
    """Class names in a fixed order: numerically when every one is an integer (SDC1's 1, 2,
    3; 10 after 2), else alphabetically."""
    found = {str(v) for v in classes}
    numeric = bool(found) and all(re.fullmatch(r"[+-]?\d+", v) for v in found)
    return tuple(sorted(found, key=int) if numeric else sorted(found))


# --------------------------------------------------------------------------- SDC1 training text


def _numeric(parts: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in parts]
    except ValueError:
        return None


def _first_row_width(path: str, max_lines: int = 200) -> int | None:
    """Number of values on the first all-numeric line of a text file (None if none soon)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for k, line in enumerate(fh):
            if k >= max_lines:
                return None
            parts = line.split()
            if parts and not parts[0].startswith("#") and _numeric(parts) is not None:
                return len(parts)
    return None


def read_sdc1_training(path: str | os.PathLike) -> Any:
    """Read an SDC1 training-set text file (15 whitespace-separated numeric columns,
    :data:`SDC1_TRAINING_COLUMNS`), with or without header lines (the official files start
    with 18 lines of column descriptions; lines before the first numeric row are skipped,
    ``#`` lines anywhere).  Returns an astropy Table with units; CatalogueError names the
    line of a short or non-numeric row."""
    p = os.fspath(path)
    rows: list[list[float]] = []
    with open(p, encoding="utf-8", errors="replace") as fh:
        for k, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            vals = _numeric(parts)
            if vals is None:
                if not rows:  # header lines
                    continue
                raise CatalogueError(f"{p}, line {k}: non-numeric value in {line.strip()!r}")
            if len(vals) < len(SDC1_TRAINING_COLUMNS):
                raise CatalogueError(
                    f"{p}, line {k}: {len(vals)} columns, an SDC1 training-set file has "
                    f"{len(SDC1_TRAINING_COLUMNS)} ({' '.join(SDC1_TRAINING_COLUMNS)})")
            rows.append(vals[:len(SDC1_TRAINING_COLUMNS)])
    a = np.array(rows, np.float64).reshape(-1, len(SDC1_TRAINING_COLUMNS))
    cols = {c: a[:, i] for i, c in enumerate(SDC1_TRAINING_COLUMNS)}
    for c in ("id", "size", "class", "selection"):
        cols[c] = cols[c].astype(np.int64)
    units = {c: "deg" for c in ("ra_core", "dec_core", "ra_cent", "dec_cent", "pa")}
    units.update(flux="Jy", b_maj="arcsec", b_min="arcsec", x="pix", y="pix")
    return make_table(cols, units=units)


def _read_any(path: str) -> tuple[Any, bool]:
    """(table, is the SDC1 training-set text) of ``path``: tables by extension, text files
    sniffed by their column count (15: training set, else the SDC1 12-column text)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such catalogue file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _TABLE_EXT and (_first_row_width(path) or 0) >= len(SDC1_TRAINING_COLUMNS):
        return read_sdc1_training(path), True
    return read_catalogue(path), False


# --------------------------------------------------------------------------- columns


def _float_column(t: Any, name: str, what: str, unit: str | None) -> np.ndarray:
    """Column ``name`` as float64 (masked -> NaN), converted to ``unit`` when it has one;
    CatalogueError when its unit cannot be converted."""
    col = t[name]
    try:
        vals = np.array(np.ma.getdata(col), np.float64)
    except (TypeError, ValueError):
        raise CatalogueError(f"{what}: column {name!r} is not numeric ({col.dtype})") from None
    mask = np.ma.getmaskarray(col)
    if mask.any():
        vals[mask] = np.nan
    cu = getattr(col, "unit", None)
    if unit is not None and cu is not None and str(cu) not in ("", "pix"):
        try:
            vals *= float(cu.to(unit))
        except Exception as err:  # astropy UnitConversionError and friends
            raise CatalogueError(f"{what}: column {name!r} has unit {cu}, which cannot be "
                                 f"converted to {unit} ({err})") from None
    return vals


def _size_pixels(t: Any, name: str, what: str, pixel_scale: float | None, *,
                 check_unit: bool = False) -> np.ndarray:
    """A size column in pixels: angular units converted through ``pixel_scale``, ``pix``
    taken as pixels, no unit read as arcsec (as pixels when the image has no pixel scale);
    ``check_unit``: warn when unitless values look like degrees."""
    col = t[name]
    cu = str(getattr(col, "unit", None) or "")
    if cu in ("pix", "pixel"):
        return _float_column(t, name, what, None)
    if pixel_scale is None:
        if cu:
            raise CatalogueError(f"{what}: column {name!r} is in {cu} but the image has no WCS "
                                 "pixel scale to convert it to pixels; give sizes in pixels")
        return _float_column(t, name, what, None)
    arcsec = _float_column(t, name, what, "arcsec")
    if check_unit:
        warn_unitless_sizes(col, arcsec, what)
    return arcsec / pixel_scale


def _theta(image: FitsImage, x: np.ndarray, y: np.ndarray, pa_deg: np.ndarray, *,
           image_frame: bool = False) -> np.ndarray:
    """radio_sky angle (from +y towards -x, radians, [0, pi)) of sky position angles (deg east
    of north: of ICRS north, or with ``image_frame`` of the image's own sky frame); without a
    WCS north is +y and east -x, so the angle is the PA itself."""
    if image.wcs is None or len(x) == 0:
        return np.mod(np.radians(pa_deg), np.pi)
    a = pa_to_pixel_angle(image.wcs, x, y, pa_deg, image_frame=image_frame)  # +x towards +y
    theta = np.mod(a - 0.5 * np.pi, np.pi)
    return np.where(np.pi - theta < 1e-9, 0.0, theta)  # pi (rounding) is 0


# --------------------------------------------------------------------------- reader


def _shapes(t: Any, ok: np.ndarray, image: FitsImage, x: np.ndarray, y: np.ndarray, what: str,
            training_text: bool, pa_convention: str | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Apparent ``bmaj, bmin`` (pixels), radio_sky ``theta`` (radians) of the rows ``ok`` and
    the beam FWHM (pixels) the minimum box is tied to (see :func:`read_training_catalogue`)."""
    scale = image.pixel_scale
    n = len(x)
    beam = image.beam if (image.beam is not None and scale) else None
    bmaj_name, bmin_name, pa_name = (find_column(t, c) for c in ("bmaj", "bmin", "pa"))
    have_sizes = bmaj_name is not None and bmin_name is not None
    bmaj = _size_pixels(t, bmaj_name, what, scale, check_unit=True)[ok] if have_sizes else None
    bmin = _size_pixels(t, bmin_name, what, scale)[ok] if have_sizes else None
    if beam is not None:
        beam_maj, beam_min = beam.bmaj / scale, beam.bmin / scale
        beam_fwhm = beam.fwhm_pixels(scale)
    else:
        pos = bmin[np.isfinite(bmin) & (bmin > 0)] if have_sizes else np.zeros(0)
        beam_fwhm = float(pos.min()) if pos.size else FALLBACK_BEAM_PIXELS
        beam_maj = beam_min = beam_fwhm
    if not have_sizes:
        bmaj, bmin = np.full(n, beam_maj), np.full(n, beam_min)
    else:
        bmaj, bmin = np.nan_to_num(bmaj, nan=0.0), np.nan_to_num(bmin, nan=0.0)
        if beam is not None and bmaj_name.lower() == "b_maj":  # SDC1: intrinsic sizes
            bmaj, bmin = np.hypot(bmaj, beam_maj), np.hypot(bmin, beam_min)
        elif beam is not None:  # apparent sizes: at least the beam
            bmaj, bmin = np.fmax(bmaj, beam_maj), np.fmax(bmin, beam_min)
        else:  # no beam: a missing size becomes the catalogue's smallest
            bmaj = np.where(bmaj > 0, bmaj, beam_fwhm)
            bmin = np.where(bmin > 0, bmin, beam_fwhm)
    beam_pa = pa_name is None and beam is not None and not have_sizes
    if pa_name is None:  # beam-sized points lie along the beam
        pa = np.full(n, beam.bpa if beam_pa else 0.0)
    else:
        pa = np.nan_to_num(_float_column(t, pa_name, what, "deg")[ok], nan=0.0)
        if (pa_convention or ("sdc1" if training_text else "east_of_north")) == "sdc1":
            pa = np.mod(90.0 - pa, 180.0)
    theta = _theta(image, x, y, pa, image_frame=beam_pa)  # a BPA is in the image's frame
    swap = bmin > bmaj  # keep bmaj the major axis
    bmaj, bmin = np.where(swap, bmin, bmaj), np.where(swap, bmaj, bmin)
    theta = np.where(swap, np.mod(theta + 0.5 * np.pi, np.pi), theta)
    return bmaj, bmin, theta, beam_fwhm


def read_training_catalogue(
    path: str | os.PathLike,
    image: FitsImage,
    *,
    box_scale: float = 2.0,
    min_box: float | None = None,
    max_box: float = 64.0,
    pa_convention: str | None = None,
    class_column: str | None = None,
) -> SourceLabels:
    """Read a training catalogue and put it on ``image`` (a 2D :class:`FitsImage`).

    Columns (case-insensitive, :func:`.catalogue.find_column` aliases): positions ``ra, dec``
    (deg; need the image WCS) or ``x, y`` (0-based pixels) and ``flux`` are required;
    ``bmaj, bmin`` (FWHM) and ``pa`` are optional (missing sizes: point sources the shape of
    the beam, along its BPA; missing pa otherwise: 0).  Columns with units are converted
    (deg/arcsec/rad, Jy/mJy/uJy); sizes without a unit are arcsec, or pixels when the image
    has no WCS.

    Sizes: SDC1 catalogues (a ``b_maj`` column: the 12-column text and the 15-column
    training set) hold intrinsic sizes, convolved here with the restoring beam in quadrature
    (as :func:`.validate.load_truth` does); other tables hold apparent sizes, floored at the
    beam.  Position angles are degrees east of north, except in the SDC1 training-set text,
    whose documented convention (clockwise from the longitude-wise direction, as CIANNA's
    SDC1 example reads it) is ``90 - PA`` east of north; ``pa_convention`` ("east_of_north"
    or "sdc1") overrides the choice.

    ``class_column``: the column holding each source's class (names or codes, e.g. SDC1's
    ``class`` 1-3 or a classifier's ``morph_class``), kept as text in
    :attr:`SourceLabels.classes`; CatalogueError when the column is missing; sources with
    none (a blank, masked or NaN entry) are kept without a class (warned about): their boxes
    train a detector, their classes do not.

    Boxes: ``box_scale`` times the axis-aligned extent of the rotated FWHM ellipse, each side
    clipped to ``[min_box, max_box]`` pixels.  ``min_box`` defaults to ``box_scale`` times the
    beam FWHM in pixels (geometric mean), never below 2 pixels.  Without a beam (no
    BMAJ/BMIN or no WCS pixel scale) the beam is taken as the smallest positive minor axis of
    the catalogue, else :data:`FALLBACK_BEAM_PIXELS`; no convolution or floor is applied then.

    Sources outside the image, on blank (NaN) pixels or with non-finite position or flux are
    dropped.  Raises CatalogueError naming the file, the missing column(s), their accepted
    names and the columns present; CatalogueError when sky positions meet an image without
    WCS; ValueError for bad box settings or a cube.
    """
    p = os.fspath(path)
    what = f"training catalogue {p}"
    if image.ndim != 2:
        raise ValueError(f"{image.path}: training needs a 2D image, this one has shape {image.shape}")
    if not box_scale > 0 or not max_box > 0:
        raise ValueError(f"box_scale and max_box must be > 0, got {box_scale}, {max_box}")
    if min_box is not None and not 0 < min_box <= max_box:
        raise ValueError(f"need 0 < min_box <= max_box, got min_box {min_box}, max_box {max_box}")
    if pa_convention not in (None, "east_of_north", "sdc1"):
        raise ValueError(f"pa_convention must be 'east_of_north', 'sdc1' or None, got {pa_convention!r}")
    t, training_text = _read_any(p)
    if training_text and len(t):
        t = t[np.asarray(t["selection"]) == 1]  # only the sources injected in the image

    names = {n: find_column(t, n) for n in ("ra", "dec", "x", "y", "flux")}
    have_sky = names["ra"] is not None and names["dec"] is not None
    have_pix = names["x"] is not None and names["y"] is not None
    missing = [] if have_sky or have_pix else [n for n in ("ra", "dec", "x", "y") if names[n] is None]
    if names["flux"] is None:
        missing.append("flux")
    if missing:
        require_columns(t, missing, f"{what} (positions: 'ra' and 'dec', or 'x' and 'y'; 'flux' "
                                    "required)")  # raises, naming each missing column
    use_sky = have_sky and (image.wcs is not None or not have_pix)
    if use_sky and image.wcs is None:
        raise CatalogueError(f"{what}: sky positions ({names['ra']}, {names['dec']}) but the image "
                             f"{image.path} has no celestial WCS to place them; give 'x' and 'y' "
                             "pixel columns or an image with a WCS")
    if use_sky:
        ra = angle_column(t[names["ra"]], "ra", what)  # numbers or sexagesimal text
        dec = angle_column(t[names["dec"]], "dec", what)
        x, y = sky_to_pixel(image.wcs, ra, dec)
    else:
        x = _float_column(t, names["x"], what, None)
        y = _float_column(t, names["y"], what, None)
    flux = _float_column(t, names["flux"], what, "Jy")
    snr_name = find_column(t, "snr")
    snr = None if snr_name is None else _float_column(t, snr_name, what, None)

    H, W = image.shape
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    ix = np.floor(np.where(ok, x, -1.0) + 0.5).astype(np.int64)
    iy = np.floor(np.where(ok, y, -1.0) + 0.5).astype(np.int64)
    ok &= (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    if ok.any():
        ok[ok] = np.isfinite(image.read((iy[ok], ix[ok])))
    x, y, flux = x[ok], y[ok], flux[ok]
    snr = None if snr is None else snr[ok]
    classes = None if class_column is None else _class_column(t, class_column, what)[ok]

    bmaj, bmin, theta, beam_fwhm = _shapes(t, ok, image, x, y, what, training_text, pa_convention)
    n = len(x)
    lo = max(2.0, box_scale * beam_fwhm) if min_box is None else float(min_box)
    if lo > max_box:
        raise ValueError(f"the beam-tied minimum box {lo:g} px (box_scale x beam FWHM "
                         f"{beam_fwhm:g} px) exceeds max_box {max_box:g}: raise max_box or give "
                         "min_box")
    cat = rs.Catalogue.create(x, y, flux, bmaj, bmin, theta) if n else rs.Catalogue.empty()
    boxes = rs.boxes_from_catalogue(cat, min_size=lo, max_size=max_box, scale=box_scale,
                                    origin=0.5)
    return SourceLabels(x=np.asarray(x, np.float64), y=np.asarray(y, np.float64),
                        flux=np.asarray(flux, np.float64), bmaj=np.asarray(bmaj, np.float64),
                        bmin=np.asarray(bmin, np.float64), theta=np.asarray(theta, np.float64),
                        snr=snr, boxes=boxes.reshape(-1, 6), image_shape=(int(H), int(W)),
                        source=p, classes=classes)


def _class_column(t: Any, name: str, what: str) -> np.ndarray:
    """Each row's class as text, from the column ``name`` (case-insensitive)."""
    col = find_column(t, str(name))
    if col is None:
        raise CatalogueError(f"{what}: no class column {name!r} (its columns: "
                             f"{', '.join(t.colnames)})")
    return np.array(column_text(t[col]), dtype=str)


# --------------------------------------------------------------------------- areas


def training_area(labels: SourceLabels, image: FitsImage | None = None, *,
                  margin: int = 0) -> tuple[int, int, int, int]:
    """The catalogue's footprint ``(y0, y1, x0, x1)`` (half-open pixel ranges): the bounding
    box of the source pixels, grown by ``margin`` pixels on each side (negative: shrunk, as
    CIANNA's SDC1 example does by 10 pixels so that unlabelled sources just outside the
    catalogue stay out) and clipped to the image (``image`` or ``labels.image_shape``).
    This is where the catalogue is complete, hence where negatives may be drawn."""
    shape = labels.image_shape if image is None else tuple(image.shape[-2:])
    if image is not None and tuple(shape) != tuple(labels.image_shape):
        raise ValueError(f"image {image.path} has shape {shape}, the labels were placed on "
                         f"{labels.image_shape}")
    if len(labels) == 0:
        raise ValueError(f"{labels.source}: no source on the image, so no training area")
    m = int(margin)
    ix = np.floor(labels.x + 0.5).astype(np.int64)
    iy = np.floor(labels.y + 0.5).astype(np.int64)
    H, W = shape
    y0, y1 = max(0, int(iy.min()) - m), min(H, int(iy.max()) + 1 + m)
    x0, x1 = max(0, int(ix.min()) - m), min(W, int(ix.max()) + 1 + m)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"{labels.source}: the training area is empty with margin {m} "
                         f"(sources span y {iy.min()}..{iy.max()}, x {ix.min()}..{ix.max()})")
    return y0, y1, x0, x1


def split_area(area: tuple[int, int, int, int], valid_fraction: float,
               patch: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Cut ``area`` (y0, y1, x0, x1) into ``(train, valid)``: the validation part is a strip
    of about ``valid_fraction`` of the area across its longer side, at its high end
    (largest x, or largest y for a tall area); the two never overlap and each is at least
    ``patch`` pixels wide both ways.  ValueError when ``valid_fraction`` is not in (0, 0.5]
    or the area is too small for that patch and fraction."""
    if not 0.0 < valid_fraction <= 0.5:
        raise ValueError(f"valid_fraction must be in (0, 0.5], got {valid_fraction}")
    if int(patch) < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    y0, y1, x0, x1 = (int(v) for v in area)
    P = int(patch)
    H, W = y1 - y0, x1 - x0
    along_x = W >= H
    length, across = (W, H) if along_x else (H, W)
    nv = max(P, int(math.floor(length * valid_fraction + 0.5)))
    nt = length - nv
    if across < P or nt < P:
        raise ValueError(f"area {(y0, y1, x0, x1)} ({H}x{W} pixels) is too small for patch {P} "
                         f"and valid_fraction {valid_fraction}: each part needs at least "
                         f"{P}x{P} pixels")
    if along_x:
        return (y0, y1, x0, x0 + nt), (y0, y1, x0 + nt, x1)
    return (y0, y0 + nt, x0, x1), (y0 + nt, y1, x0, x1)


def default_max_obj(labels: SourceLabels, area: tuple[int, int, int, int], patch_size: int,
                    depth: int = 1) -> int:
    """Targets per training patch when the settings give none: four times the mean number
    of sources of ``area`` (y0, y1, x0, x1; ``depth`` channels of a cube) in a patch of
    ``patch_size`` pixels (voxels), plus 4, within [8, 200]."""
    y0, y1, x0, x1 = area
    inside = (labels.x >= x0) & (labels.x < x1) & (labels.y >= y0) & (labels.y < y1)
    mean = np.count_nonzero(inside) / max(1, (y1 - y0) * (x1 - x0) * depth) * patch_size
    return int(np.clip(math.ceil(4 * mean + 4), 8, 200))
