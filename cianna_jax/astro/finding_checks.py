"""Argument checks of the source finding, made before any work: each names the argument
and says what it expects (:mod:`.pipeline`, :mod:`.completeness`, :mod:`.validate`)."""

from __future__ import annotations

import os
from typing import Any

from ..checks import as_bounded_float
from ._deps import require
from .fits_image import FitsImage, ImageError
from .model_card import LoadedModel

__all__ = ["check_model_image", "checked_target_reliability", "checked_scale_error",
           "checked_astrometric_error", "checked_figure_path"]


def check_model_image(img: FitsImage, mdl: LoadedModel) -> None:
    """ImageError unless the model detects in images of ``img``'s dimension."""
    if len(img.shape) != mdl.card.ndim:
        hint = "; plane (--plane N) takes one plane of it" if img.ndim == 3 else ""
        raise ImageError(f"{img.path}: a {img.ndim}D image, but the model detects in "
                         f"{mdl.card.ndim}D tiles{hint}")


def checked_target_reliability(value: Any, obj_threshold: Any) -> float | None:
    """``value`` as a target reliability in (0, 1), or None; ValueError naming it when it
    is not one, or when an objectness threshold is given too."""
    if value is None:
        return None
    if obj_threshold is not None:
        raise ValueError("target_reliability chooses the objectness threshold: give it or "
                         f"obj_threshold, not both (received {value!r} and {obj_threshold!r})")
    t = as_bounded_float(value, "target_reliability")
    if t >= 1.0:
        raise ValueError(f"target_reliability: a fraction in (0, 1), e.g. 0.9; received {value!r}")
    return t


def checked_scale_error(value: Any) -> float:
    """``value`` as a fractional flux-scale error in [0, 1); ValueError naming it."""
    f = as_bounded_float(value, "flux_scale_error", strict=False)
    if f >= 1.0:
        raise ValueError(f"flux_scale_error: a fraction of the flux in [0, 1), e.g. 0.1 for "
                         f"10%; received {value!r}")
    return f


def checked_astrometric_error(value: Any, image: FitsImage) -> float:
    """``value`` (arcsec) as a systematic position error >= 0 for ``image``; ValueError
    naming it, or when the image has no celestial WCS to put arcsec on."""
    a = as_bounded_float(value, "astrometric_error", strict=False)
    if a > 0 and image.pixel_scale is None:
        raise ValueError(f"astrometric_error: {image.path} has no celestial WCS, so no pixel "
                         "scale to put arcsec on its positions")
    return a


def checked_figure_path(path: str | os.PathLike) -> None:
    """A figure can be written at ``path`` (its folder exists, matplotlib is installed)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"reliability_figure: {folder}: folder does not exist")
    require("matplotlib")
