"""Cubelets of a cube's detections, as HI source finders write them: for each line, its
cut of the cube, its moment maps and its spectrum, with the parent cube's WCS.

For the catalogue's source ``id``, in the output folder:

* ``<id>_cube.fits``: the cube around the detection's box, grown by ``margin`` of the box's
  size on each side (and along the channels to hold the line's, when given), clipped to the
  cube, in the cube's unit, with its WCS shifted;
* ``<id>_mom0.fits``: moment 0 over the line's channels (those of its flux,
  :func:`.measure.line_window`, when given; else the box's), the pixels summed times the
  channel width (image unit x Hz; x channels without a frequency axis);
* ``<id>_mom1.fits``: moment 1, the intensity-weighted frequency (Hz; channel without a
  frequency axis) where moment 0 exceeds 3 times its noise (the local rms times the
  square root of the channels summed, times the channel width), NaN elsewhere;
* ``<id>_spec.ecsv``: the spectrum over the cubelet's channels: the box's pixels summed
  per channel and divided by the beam area (Jy; image unit without a beam), with its
  1-sigma noise (noise correlated as the beam within a channel), channel and frequency.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from ._deps import require
from .catalogue import make_table, write_catalogue
from .fits_image import FitsImage, ImageError
from .measure import box_channels
from .noise import NoiseMap
from .spectral import SpectralAxis

__all__ = ["cube_wcs", "cubelet_window", "write_cubelets"]


def cube_wcs(image: FitsImage) -> Any:
    """The cube's 3D WCS (x, y, spectral) from its celestial and spectral axes, or None
    when it lacks either."""
    if image.wcs is None or image.spectral_wcs is None:
        return None
    wcs_mod = require("astropy.wcs")
    cel, spec = image.wcs.wcs, image.spectral_wcs.wcs
    w = wcs_mod.WCS(naxis=3)
    w.wcs.ctype = [*cel.ctype, spec.ctype[0]]
    w.wcs.cunit = [*cel.cunit, spec.cunit[0]]
    w.wcs.crval = [*cel.crval, spec.crval[0]]
    w.wcs.crpix = [*cel.crpix, spec.crpix[0]]
    w.wcs.cdelt = [*np.asarray(cel.get_cdelt()), spec.get_cdelt()[0]]
    pc = np.eye(3)
    pc[:2, :2] = cel.get_pc()
    w.wcs.pc = pc
    for name in ("lonpole", "latpole", "equinox", "radesys", "restfrq", "restwav", "specsys"):
        value = getattr(spec if name in ("restfrq", "restwav", "specsys") else cel, name)
        if value not in ("", None) and not (isinstance(value, float) and math.isnan(value)):
            setattr(w.wcs, name, value)
    w.wcs.set()
    return w


def cubelet_window(box: np.ndarray, shape: tuple[int, int, int], margin: float
                   ) -> tuple[slice, slice, slice]:
    """The cube window ``(z, y, x)`` of a box ``(xmin, ymin, zmin, xmax, ymax, zmax)``
    (pixel-edge frame) grown by ``margin`` of its size each side, clipped to ``shape``."""
    b = np.asarray(box, np.float64)
    size = b[3:] - b[:3]
    lo = np.floor(b[:3] - margin * size).astype(int)
    hi = np.ceil(b[3:] + margin * size).astype(int)
    D, H, W = shape
    lo = np.clip(lo, 0, [W, H, D])
    hi = np.clip(hi, 0, [W, H, D])
    return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])


def _header(wcs: Any, bunit: str, image: FitsImage) -> Any:
    fits = require("astropy.io.fits")
    h = wcs.to_header() if wcs is not None else fits.Header()
    h["BUNIT"] = bunit
    if image.beam is not None:
        h["BMAJ"], h["BMIN"] = image.beam.bmaj / 3600.0, image.beam.bmin / 3600.0
        h["BPA"] = image.beam.bpa
    return h


def _write_fits(path: str, data: np.ndarray, header: Any, dtype=np.float32) -> None:
    fits = require("astropy.io.fits")
    with atomic_write(path) as fh:
        fits.PrimaryHDU(np.asarray(data, dtype), header).writeto(fh)


def write_cubelets(image: FitsImage, table: Any, boxes: np.ndarray, noise: NoiseMap,
                   out_dir: str | os.PathLike, *, margin: float = 0.5,
                   channels: tuple[np.ndarray, np.ndarray] | None = None) -> list[str]:
    """Write the cubelets (module doc) of the catalogue ``table``'s rows, whose detection
    boxes are ``boxes`` [n, 6] in the same order, and whose lines span the channels
    ``[z0, z1)`` of ``channels`` (the box's where not given); returns the files written."""
    if image.ndim != 3:
        raise ImageError(f"{image.path}: cubelets are cut from cubes; this image has shape "
                         f"{image.shape}")
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    axis: SpectralAxis | None = image.frequency_axis
    w3 = cube_wcs(image)
    area = image.beam_area_pixels()
    scale = image.unit_scale
    unit = image.bunit or "JY/BEAM"
    written = []
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    D = image.shape[0]
    if channels is None:
        channels = box_channels(b[:, 2], b[:, 5], D)
    for row, box, c0, c1 in zip(table, b, *channels):
        sid = int(row["id"])
        zs, ys, xs = cubelet_window(box, image.shape, margin)
        zs = slice(min(zs.start, int(c0)), max(zs.stop, int(c1)))  # the whole line
        sub = image.read((zs, ys, xs))
        # the box inside the cubelet, and the line's channels
        bz = slice(int(c0) - zs.start, int(c1) - zs.start)
        by = slice(max(int(np.floor(box[1])) - ys.start, 0), int(np.ceil(box[4])) - ys.start)
        bx = slice(max(int(np.floor(box[0])) - xs.start, 0), int(np.ceil(box[3])) - xs.start)
        chans = np.arange(zs.start, zs.stop, dtype=np.float64)
        zc = 0.5 * (box[2] + box[5]) - 0.5
        dnu = float(axis.channel_width(np.array([zc]))[0]) if axis is not None else 1.0
        rms = noise.at(np.array([0.5 * (box[1] + box[4]) - 0.5]),
                       np.array([0.5 * (box[0] + box[3]) - 0.5]), np.array([zc]))[0]
        line = sub[bz]
        n_chan = line.shape[0]
        mom0 = np.nansum(line, axis=0) * dnu
        mom0[~np.isfinite(line).any(axis=0)] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            where = chans[bz]
            coord = axis.frequency(where) if axis is not None else where
            mom1 = np.nansum(line * coord[:, None, None], axis=0) / np.nansum(line, axis=0)
        mom1[~(mom0 > 3.0 * rms * math.sqrt(max(n_chan, 1)) * dnu)] = np.nan
        per = "Hz" if axis is not None else "channel"
        stem = os.path.join(out, f"{sid}")
        _write_fits(f"{stem}_cube.fits", sub,
                    _header(w3.slice((zs, ys, xs)) if w3 is not None else None, unit, image))
        cel = image.wcs.slice((ys, xs)) if image.wcs is not None else None
        _write_fits(f"{stem}_mom0.fits", mom0, _header(cel, f"{unit} {per}", image))
        # frequencies in float64: float32 keeps only about 60 Hz at 1 GHz
        _write_fits(f"{stem}_mom1.fits", mom1, _header(cel, per, image), np.float64)
        npix = np.isfinite(sub[:, by, bx]).sum(axis=(1, 2))
        spec = np.nansum(sub[:, by, bx], axis=(1, 2))
        rms_ch = noise.at(np.full(chans.size, 0.5 * (box[1] + box[4]) - 0.5),
                          np.full(chans.size, 0.5 * (box[0] + box[3]) - 0.5), chans)
        cols = {"channel": chans}
        if axis is not None:
            cols["freq"] = axis.frequency(chans)
        if area is not None:
            cols["flux"] = spec / area * scale
            cols["flux_err"] = rms_ch * np.sqrt(npix / area) * scale
            units = {"flux": "Jy", "flux_err": "Jy"}
        else:
            cols["sum"] = spec
            units = {}
        t = make_table(cols, meta={"id": sid, "image": os.path.basename(image.path),
                                   "spectrum": "the detection box's pixels summed per channel "
                                               "/ beam area"}, units={"channel": "pix",
                                                                      **units})
        write_catalogue(t, f"{stem}_spec.ecsv")
        written += [f"{sid}_cube.fits", f"{sid}_mom0.fits", f"{sid}_mom1.fits",
                    f"{sid}_spec.ecsv"]
    return written
