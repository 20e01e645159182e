"""Transients by image subtraction: what appeared, brightened, faded or vanished between a
reference image and a new epoch of the same pointing.

The two images (the same pixel grid: one pointing imaged twice, or regridded first) are
brought to one resolution, each convolved with the Gaussian that turns its beam into their
common one (the broader's, made round when neither beam contains the other; its flux per
beam kept), and subtracted. The detector then runs on the difference and on its inversion:
sources found in the difference became brighter, in the inversion fainter. Each candidate's
flux is measured in both images as they are (forced photometry at its position, each with
its own beam), and its change's significance is that difference over their errors in
quadrature. Constant sources cancel, except for calibration errors between the epochs (a
flux scale, which ``scale`` divides the epoch by).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from .beam_matching import at_beam, check_same_grid, common_beam, regridded
from .fits_image import Beam, FitsImage, ImageError, open_image

__all__ = ["difference_image", "find_transients", "TRANSIENTS_NOTE"]

TRANSIENTS_NOTE = ("sign +1: found in epoch - reference (brighter), -1: in reference - epoch "
                   "(fainter); flux_epoch, flux_reference: forced photometry in each image; "
                   "change_snr: their difference over the errors in quadrature")

def difference_image(epoch: FitsImage, reference: FitsImage, path: str | os.PathLike, *,
                     scale: float = 1.0, regrid: bool = False) -> Beam:
    """Write ``epoch / scale - reference``, both at their common beam (see the module's note),
    as a FITS image at ``path`` (the epoch's header, the common beam); returns that beam.
    ``regrid``: a reference on another pixel grid is resampled onto the epoch's
    (:func:`.beam_matching.regridded`), else refused.  The images are read whole."""
    from ..io.atomic import atomic_write
    from ._deps import require
    from .residual import image_header

    same = check_same_grid(epoch, reference, regrid=regrid)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: a number > 0, received {scale!r}")
    if epoch.beam is None or reference.beam is None:
        raise ImageError("images: both need a beam (BMAJ, BMIN) to be matched")
    beam = common_beam(epoch.beam, reference.beam)
    ref = at_beam(reference, beam)
    if not same:
        ref = regridded(ref, reference, epoch)
    diff = at_beam(epoch, beam) / scale - ref
    fits = require("astropy.io.fits")
    hdr = image_header(epoch, "difference")
    hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = beam.bmaj / 3600.0, beam.bmin / 3600.0, beam.bpa
    hdr["BUNIT"] = "Jy/beam"
    with atomic_write(path) as fh:
        fits.PrimaryHDU(diff.astype(np.float32), header=hdr).writeto(fh)
    return beam


def find_transients(epoch: str | os.PathLike, reference: str | os.PathLike, model: Any, *,
                    difference: str | os.PathLike | None = None, scale: float = 1.0,
                    obj_threshold: float | None = None, hdu: int | str | None = None,
                    plane: int | None = None, progress: bool = False,
                    regrid: bool = False) -> Any:
    """The candidates (a table) of what changed between ``reference`` and ``epoch`` (FITS
    paths), found by ``model`` on their difference (written to ``difference``, else a
    temporary file) and its inversion: ``sign``, positions, the detection's ``snr`` in the
    difference, ``flux_epoch`` and ``flux_reference`` with errors (forced photometry in
    each image) and ``change_snr``; most significant change first.  ``regrid``: a
    reference on another pixel grid resampled onto the epoch's."""
    import tempfile

    from astropy.table import vstack

    from .forced import forced_fluxes
    from .model_card import LoadedModel, load_model
    from .pipeline import find_sources

    with open_image(epoch, hdu, plane=plane) as ep, open_image(reference, hdu, plane=plane) as rf:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.fspath(difference) if difference else os.path.join(tmp, "diff.fits")
            beam = difference_image(ep, rf, path, scale=scale, regrid=regrid)
            parts = []
            mdl = model if isinstance(model, LoadedModel) else load_model(model)
            with open_image(path) as diff:
                up = find_sources(diff, mdl, obj_threshold=obj_threshold, progress=progress)
                # the inversion with the same noise map (its background negated)
                flipped = replace(up.noise, background=-up.noise.background)
                down = find_sources(diff.inverted(), mdl, obj_threshold=obj_threshold,
                                    progress=progress, noise=flipped)
                for sign, res in ((1, up), (-1, down)):
                    t = res.table
                    t = t[[c for c in ("ra", "dec", "x", "y", "snr", "objectness")
                           if c in t.colnames]]
                    t["sign"] = np.full(len(t), sign, np.int64)
                    parts.append(t)
        cand = vstack(parts, metadata_conflicts="silent")
        ra, dec = np.asarray(cand["ra"], np.float64), np.asarray(cand["dec"], np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fe, ee = forced_fluxes(ep, ra, dec)
            fr, er = forced_fluxes(rf, ra, dec)
    fe = fe / scale
    ee = ee / scale
    cand["flux_epoch"], cand["flux_epoch_err"] = fe, ee
    cand["flux_reference"], cand["flux_reference_err"] = fr, er
    with np.errstate(invalid="ignore", divide="ignore"):
        cand["change_snr"] = (fe - fr) / np.hypot(ee, er)
    for c in ("flux_epoch", "flux_epoch_err", "flux_reference", "flux_reference_err"):
        cand[c].unit = "Jy"
    cand = cand[np.argsort(-np.abs(np.nan_to_num(np.asarray(cand["change_snr"]))))]
    cand.meta = {"transients": TRANSIENTS_NOTE, "epoch": os.fspath(epoch),
                 "reference": os.fspath(reference), "scale": float(scale),
                 "common_beam_arcsec": [beam.bmaj, beam.bmin, beam.bpa],
                 "n_brighter": int(np.sum(np.asarray(cand["sign"]) > 0)),
                 "n_fainter": int(np.sum(np.asarray(cand["sign"]) < 0))}
    return cand
