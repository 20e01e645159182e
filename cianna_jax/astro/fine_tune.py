"""A trained detector as the start of another training (``cianna-jax train --init``).

A detector trained on one survey (or on simulations) is fine-tuned on another's image and a
small catalogue: the run keeps the model's architecture, tile, normalisation, box priors
and noise box, and starts from its weights instead of random ones; the rest (targets,
validation, threshold, schedule) is the run's own.  Only detectors written by
``cianna-jax train`` (or the demo) record their architecture in the card.  A detector
can be fine-tuned to classify (``--class-column``): its box outputs are kept and the new
class outputs start afresh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .architectures import get_architecture
from .model_card import ModelError, Normalisation, load_model

__all__ = ["FineTuneBase", "fine_tune_base", "start_params", "fine_tuned_settings"]


@dataclass(frozen=True)
class FineTuneBase:
    """What a fine-tuning run takes from its model: ``arch`` (name), ``patch`` (the tile
    side), ``normalisation``, ``priors`` ``[2, nb_box]`` (pixels), ``noise_box``, the
    weights ``params``, the card's ``path`` and the detector's ``classes`` (its names; ()
    when it does not classify)."""

    arch: str
    patch: int
    normalisation: Normalisation
    priors: np.ndarray
    noise_box: int
    params: Any
    path: str
    classes: tuple[str, ...] = ()


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
                        path=os.path.abspath(card.path), classes=m.class_names)


def start_params(base: FineTuneBase, net: Any, key: Any = None,
                 classes: tuple[str, ...] | None = None) -> Any:
    """``base.params`` checked against the run's network ``net`` (the same layers and
    shapes) and cast to its dtypes, as its starting weights; ModelError naming the first
    difference.  Where the run's ``classes`` (names, in its order; None: the base's when
    their counts agree) differ from the base's (a detector fine-tuned to classify, or into
    other classes), the head keeps the base's box outputs and takes its class outputs
    from ``net``'s initialisation with ``key`` (:func:`adapted_head`)."""
    import jax

    from ..network import init_params

    fresh = jax.eval_shape(lambda: init_params(jax.random.key(0), net))
    base_nc = len(base.classes)
    if classes is not None and len(classes) != int(net.yolo.nb_class):
        raise ValueError(f"classes: {len(classes)} names for a network of "
                         f"{int(net.yolo.nb_class)} classes")
    same = (tuple(classes) == base.classes if classes is not None
            else int(net.yolo.nb_class) == base_nc)
    if not same:
        if key is None:
            raise ModelError(f"{base.path}: the model has {base_nc} classes, the run "
                             f"{int(net.yolo.nb_class)}: a key is needed for the new class "
                             "outputs")
        new = init_params(key, net)
        params = list(base.params)
        params[-1] = adapted_head(params[-1], new[-1], net.yolo, base_nc, base.path)
        base = replace(base, params=type(base.params)(params))
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


def adapted_head(old: dict, new: dict, cfg: Any, old_classes: int, where: str) -> dict:
    """The YOLO head's weights ``old`` (a 1x1 conv with ``B * (8 + old_classes + P)``
    filters, box-major) given the run's ``new`` layout (``cfg.nb_class`` classes): per box,
    the old position, size, probability and objectness outputs and parameters, the new
    class outputs.  ModelError when anything but the classes differs."""
    B, P, C = int(cfg.nb_box), int(cfg.nb_param), int(cfg.nb_class)
    k_old, k_new = 8 + old_classes + P, 8 + C + P
    out = {}
    for name, w_new in new.items():
        w_old = np.asarray(old.get(name))
        w_new = np.asarray(w_new)
        if (w_old.shape[:-1] != w_new.shape[:-1] or w_old.shape[-1] != B * k_old
                or w_new.shape[-1] != B * k_new):
            raise ModelError(f"{where}: its YOLO head's {name} has shape {w_old.shape}; a head "
                             f"of {B} boxes with {old_classes} classes and {P} parameters "
                             f"cannot become the run's {w_new.shape}")
        a = w_old.reshape(w_old.shape[:-1] + (B, k_old))
        b = w_new.reshape(w_new.shape[:-1] + (B, k_new)).astype(w_old.dtype, copy=True)
        b[..., :8] = a[..., :8]
        b[..., 8 + C:] = a[..., 8 + old_classes:]
        out[name] = b.reshape(w_new.shape)
    return out


def fine_tuned_settings(s: Any, base: FineTuneBase) -> Any:
    """The run's :class:`.trainer.TrainSettings` with the model's architecture, patch and
    noise box (ValueError where the run asked for others: ``arch`` other than the default
    or the model's, ``patch`` other than its tile)."""
    if s.arch not in ("default", base.arch):
        raise ValueError(f"--arch: {s.arch}, but the model of --init is a {base.arch} "
                         "network (leave --arch out)")
    if s.patch is not None and s.patch != base.patch:
        raise ValueError(f"--patch: {s.patch}, but the model of --init takes {base.patch}-pixel "
                         "tiles (leave --patch out)")
    return replace(s, arch=base.arch, patch=base.patch, noise_box=base.noise_box,
                   normalisation=base.normalisation.kind)
