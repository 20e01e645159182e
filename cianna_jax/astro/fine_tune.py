"""A trained detector as the start of another training (``cianna-jax train --init``).

A detector trained on one survey (or on simulations) is fine-tuned on another's image and a
small catalogue: the run keeps the model's architecture, tile, normalisation, box priors
and noise box, and starts from its weights instead of random ones; the rest (targets,
validation, threshold, schedule) is the run's own.  Only detectors written by
``cianna-jax train`` (or the demo) record their architecture in the card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .architectures import get_architecture
from .model_card import ModelError, Normalisation, load_model

__all__ = ["FineTuneBase", "fine_tune_base", "start_params", "fine_tuned_settings"]


@dataclass(frozen=True)
class FineTuneBase:
    """What a fine-tuning run takes from its model: ``arch`` (name), ``patch`` (the tile
    side), ``normalisation``, ``priors`` ``[2, nb_box]`` (pixels), ``noise_box``, the
    weights ``params`` and the card's ``path``."""

    arch: str
    patch: int
    normalisation: Normalisation
    priors: np.ndarray
    noise_box: int
    params: Any
    path: str


def fine_tune_base(model: str | os.PathLike) -> FineTuneBase:
    """Load the model card ``model`` (or its ``.dat`` with the card beside it) as the start
    of a 2D run.  ModelError for a card without a recorded architecture (not written by
    ``cianna-jax train``) or a cube's detector."""
    m = load_model(model)
    card = m.card
    arch = (card.notes or {}).get("arch")
    if not isinstance(arch, str):
        raise ModelError(f"{card.path}: the card does not record its architecture (notes.arch: "
                         "written by 'cianna-jax train' and the demo); --init takes such "
                         "a detector")
    a = get_architecture(arch)
    if a.ndim != 2 or len(card.tile) != 2:
        raise ModelError(f"{card.path}: a cube's detector; --init fine-tunes 2D detectors")
    side = int(card.tile[0])
    if card.tile[1] != side:
        raise ModelError(f"{card.path}: a tile of {tuple(card.tile)}; the trainer's patches "
                         "are square")
    pri = np.asarray(m.net.yolo.prior_size, np.float32)[:, :2].T  # [2, nb_box]
    return FineTuneBase(arch=arch, patch=side, normalisation=card.normalisation,
                        priors=pri, noise_box=int(card.noise_box), params=m.params,
                        path=os.path.abspath(card.path))


def start_params(base: FineTuneBase, net: Any) -> Any:
    """``base.params`` checked against the run's network ``net`` (the same layers and
    shapes) and cast to its dtypes, as its starting weights; ModelError naming the first
    difference."""
    import jax

    from ..network import init_params

    fresh = jax.eval_shape(lambda: init_params(jax.random.key(0), net))
    if jax.tree_util.tree_structure(fresh) != jax.tree_util.tree_structure(base.params):
        raise ModelError(f"{base.path}: its network's layers differ from the {base.arch} "
                         "architecture's")
    have = jax.tree_util.tree_leaves_with_path(base.params)
    for (path, leaf), new in zip(have, jax.tree_util.tree_leaves(fresh), strict=True):
        if tuple(np.shape(leaf)) != tuple(new.shape):
            raise ModelError(f"{base.path}: weights {jax.tree_util.keystr(path)} of shape "
                             f"{tuple(np.shape(leaf))}; the {base.arch} network has "
                             f"{tuple(new.shape)}")
    return jax.tree_util.tree_map(lambda p, n: jax.numpy.asarray(p, n.dtype), base.params,
                                  fresh)


def fine_tuned_settings(s: Any, base: FineTuneBase) -> Any:
    """The run's :class:`.trainer.TrainSettings` with the model's architecture, patch and
    noise box (ValueError where the run asked for others: ``arch`` other than the default
    or the model's, ``patch`` other than its tile)."""
    from dataclasses import replace

    if s.arch not in ("default", base.arch):
        raise ValueError(f"--arch: {s.arch}, but the model of --init is a {base.arch} "
                         "network (leave --arch out)")
    if s.patch is not None and s.patch != base.patch:
        raise ValueError(f"--patch: {s.patch}, but the model of --init takes {base.patch}-pixel "
                         "tiles (leave --patch out)")
    return replace(s, arch=base.arch, patch=base.patch, noise_box=base.noise_box,
                   normalisation=base.normalisation.kind)
