"""Synthetic data sets (numpy only): radio-sky fields and cubes with exact catalogues.

See :mod:`cianna_jax.datasets.radio_sky`.
"""

from .radio_sky import (
    FWHM_TO_SIGMA,
    Catalogue,
    Patches,
    boxes_from_catalogue,
    cianna_target_rows,
    cianna_targets,
    correlated_noise,
    estimate_noise_rms,
    make_cube,
    make_field,
    normalize,
    patches,
    power_law_fluxes,
    render_sources,
)

__all__ = [
    "FWHM_TO_SIGMA",
    "Catalogue",
    "Patches",
    "boxes_from_catalogue",
    "cianna_target_rows",
    "cianna_targets",
    "correlated_noise",
    "estimate_noise_rms",
    "make_cube",
    "make_field",
    "normalize",
    "patches",
    "power_law_fluxes",
    "render_sources",
]
