"""What a ``cianna-jax train`` run prepares for its loop, whatever it trains on (2D fields
or a spectral-line cube, :mod:`.cube_training`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .model_card import ModelCard
from .train_validation import ValidationArea

__all__ = ["RunParts"]


@dataclass
class RunParts:
    """The detector ``net``, the model card to save with it (``card``), the patch
    ``sampler`` (``epoch(seed, e, n)``), the validation patches (``val_x``, ``val_t``) and
    areas (``val_areas``), and the run's ``info`` for ``args.json``."""

    net: Any
    card: ModelCard
    sampler: Any
    val_x: np.ndarray
    val_t: np.ndarray
    val_areas: tuple[ValidationArea, ...]
    info: dict[str, Any]
