"""A catalogue's sources placed on an image: pixel and sky positions, fluxes.

The one reading of positions that ``val``'s truth and the catalogues it compares share:
``ra``/``dec`` (degrees or sexagesimal) or ``x``/``y`` (pixels), the other computed
through the image's WCS (:mod:`.sky`: RA/Dec whatever the image's frame), and ``flux``
in Jy.  Missing columns are named with what the catalogue has.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .catalogue import CatalogueError, column_values
from .fits_image import FitsImage
from .sky import pixel_to_sky, sky_to_pixel

__all__ = ["Placed", "place_catalogue"]


class Placed(NamedTuple):
    """Per row: ``x, y`` pixels, ``ra, dec`` degrees (None without a WCS and sky
    columns), ``flux`` Jy; NaN where the catalogue has no value."""

    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray | None
    dec: np.ndarray | None
    flux: np.ndarray


def place_catalogue(t: Any, image: FitsImage, what: str, *, need_flux: bool = True) -> Placed:
    """Positions and fluxes of table ``t`` on ``image``; CatalogueError (naming ``what``)
    for missing position or flux columns (the flux NaN when not ``need_flux``), or sky
    positions on an image without a WCS."""
    ra, dec = column_values(t, "ra", what), column_values(t, "dec", what)
    x, y = column_values(t, "x", what), column_values(t, "y", what)
    have_sky, have_pix = ra is not None and dec is not None, x is not None and y is not None
    if not have_sky and not have_pix:
        raise CatalogueError(f"{what}: missing position columns: need 'ra' and 'dec' (deg) or "
                             f"'x' and 'y' (pixels); it has {t.colnames}")
    if not have_pix and image.wcs is None:
        raise CatalogueError(f"{what}: missing columns 'x' and 'y': the image has no WCS, so sky "
                             "positions cannot be placed on it")
    flux = column_values(t, "flux", what)
    if flux is None and not need_flux:
        flux = np.full(len(t), np.nan)
    if flux is None:
        raise CatalogueError(f"{what}: missing column 'flux' (accepted: flux, total_flux, "
                             f"flux_jy, s_int, int_flux, flux_int); it has {t.colnames}")
    if have_sky and image.wcs is not None:
        x, y = sky_to_pixel(image.wcs, ra, dec)
    elif not have_sky and image.wcs is not None:
        ra, dec = pixel_to_sky(image.wcs, x, y)
    return Placed(x, y, ra, dec, flux)
