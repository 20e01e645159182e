"""Lazy imports of the optional dependencies (astropy, matplotlib, tqdm).

``cianna_jax`` never imports them at import time; the functions that need them call
these helpers, which raise an ImportError telling which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]

_EXTRA = {"astropy": "astro", "matplotlib": "plot", "tqdm": "progress"}


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``"astropy.io.fits"``) or raise :class:`MissingExtraError`."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = _EXTRA.get(top, top)
        raise MissingExtraError(
            f"{top} is needed here but is not installed: pip install 'cianna-jax[{extra}]'"
        ) from err

