"""A cube catalogue's line columns (widths, frequencies, fluxes, HI masses, the receding
half's position angle) and the checks SDC2's output needs, for :func:`.pipeline.build_table`
and :func:`.pipeline.predict_file`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .fits_image import FitsImage, ImageError
from .hi_mass import SIZE_MASS_NOTE
from .kinematics import GRADIENT_SNR
from .measure import Measurements
from .sky import pixel_angle_to_pa
from .spectral import LINE_NOTE, SpectralAxis, line_columns

__all__ = ["line_table_columns", "check_sdc2_cube", "receding_side"]


def line_table_columns(image: FitsImage, m: Measurements, order: np.ndarray,
                  cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """Add a cube's line columns to ``cols`` (in catalogue ``order``): the widths in
    channels, and where the third axis gives frequencies the centre frequency, velocity
    widths, line flux and redshift (:mod:`.spectral`); returns the metadata they need."""
    line = m.line[order]
    axis = image.frequency_axis
    if axis is not None:
        cols.update(line_columns(axis, m.z[order], line[:, 0], line[:, 1], line[:, 2],
                                 line[:, 3], m.flux[order], m.flux_err[order],
                                 None if m.line_err is None else m.line_err[order]))
    cols["w50_chan"], cols["w20_chan"] = line[:, 3] - line[:, 2], line[:, 1] - line[:, 0]
    if m.line_err is not None:
        cols["z_err"] = m.line_err[order, 0]
    if axis is not None and m.theta_high is not None and image.wcs is not None:
        cols.update(receding_side(image, axis, m.take(order)))
    meta = {"line": LINE_NOTE}
    if axis is not None:
        meta.update(rest_frequency_hz=axis.rest_hz, rest_frequency=axis.rest_source)
        if "log_mhi" in cols:
            meta["hi_mass"] = ("log_mhi = log10(49.7 (D_L/Mpc)^2 line_flux/(Jy Hz)) solar "
                               "masses, D_L from the redshift in astropy's Planck18 cosmology "
                               "(Meyer et al. 2017, PASA 34, e052)")
            meta["hi_size"] = SIZE_MASS_NOTE
    return meta


def check_sdc2_cube(img: FitsImage) -> None:
    """SDC2 output needs what its columns are made of: a cube with sky positions,
    frequencies and a beam (line fluxes in Jy Hz)."""
    missing = [what for what, ok in (("a cube", img.ndim == 3), ("a celestial WCS",
                                     img.wcs is not None), ("a beam", img.beam is not None))
               if not ok]
    if not missing and img.frequency_axis is None:
        missing.append("a frequency axis")
    if missing:
        raise ImageError(f"{img.path}: SDC2 output is for HI cubes' lines (sky positions, "
                         f"frequencies, fluxes in Jy Hz); this image lacks {', '.join(missing)}")


def receding_side(image: FitsImage, axis: SpectralAxis, m: Measurements) -> dict[str, Any]:
    """``pa_kin``: the sky position angle of each line's receding half (its lower frequencies)
    where the velocity gradient's significance reaches :data:`.kinematics.GRADIENT_SNR`."""
    rising = axis.frequency(m.z + 0.5) > axis.frequency(m.z - 0.5)  # frequency up the channels
    theta = np.where(rising, m.theta_high + np.pi, m.theta_high)
    ok = np.isfinite(theta) & (np.nan_to_num(m.gradient_snr) >= GRADIENT_SNR)
    pa = np.full(len(theta), np.nan)
    if ok.any():
        pa[ok] = pixel_angle_to_pa(image.wcs, m.x[ok], m.y[ok], theta[ok], directed=True)
    return {"pa_kin": pa, "pa_kin_snr": m.gradient_snr}
