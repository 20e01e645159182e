"""Source morphology by a convolutional classifier: its network, model card, predictions
and scores.

A classifier is a CIANNA ``.dat`` network (a small CNN ending in a softmax over the
classes) and a JSON card beside it (``net.dat`` -> ``net.json``) holding the class
names, the cutouts' geometry (:class:`.morphology_cutouts.CutoutSpec`) and the
training's notes::

    {"format": "cianna_jax.classifier", "version": 1, "network": "best.dat",
     "classes": ["compact", "sfg", "fr1", "fr2"],
     "cutout": {"beams": 16.0, "pixels": 48, "clip": 3.0},
     "calibration": {"temperature": 1.3, "priors": [0.4, 0.3, 0.2, 0.1]}, "notes": {...}}

:func:`predict_stamps` gives sources' class probabilities, averaged over the eight
quarter-turns and mirrors of their windows (a radio source has no preferred orientation).
Training is :mod:`.morphology_training`; a catalogue's classification on an image or a
mosaic :mod:`.morphology_apply`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import nn
from ..io.atomic import atomic_write
from .model_card import ModelError, card_path, checked_card
from .morphology_cutouts import CutoutSpec, Stamps, dihedral_inputs
from .probability_calibration import tempered

__all__ = ["CLASSIFIER_FORMAT", "ClassifierCard", "build_classifier", "save_classifier_card",
           "load_classifier_card", "LoadedClassifier", "load_classifier", "predict_stamps",
           "confusion_matrix", "class_scores", "CLASS_COLUMN", "PROB_COLUMN"]

CLASSIFIER_FORMAT = "cianna_jax.classifier"
CLASSIFIER_VERSION = 1
#: the columns a catalogue's classification adds (:mod:`.morphology_apply`): the most
#: probable class, its probability (and ``p_<class>`` for each class)
CLASS_COLUMN, PROB_COLUMN = "morph_class", "morph_prob"


@dataclass(frozen=True)
class ClassifierCard:
    """The network file (relative to the card), the class names in the network's output
    order, the cutouts' geometry, free-form notes (training settings, scores) and the
    probabilities' temperature and the classes' ``priors`` (their frequencies among the
    labelled sources, the population the probabilities are for; None: equal), both used by
    :mod:`.probability_calibration` (the temperature fitted on the validation sources)."""

    network: str
    classes: tuple[str, ...]
    cutout: CutoutSpec = CutoutSpec()
    notes: dict = field(default_factory=dict, compare=False)
    temperature: float = 1.0
    priors: tuple[float, ...] | None = None

    def check(self) -> None:
        if len(self.classes) < 2:
            raise ModelError(f"classes: expected at least 2 class names, received "
                             f"{list(self.classes)}")
        if len(set(self.classes)) != len(self.classes):
            raise ModelError(f"classes: names must differ, received {list(self.classes)}")
        if any(not isinstance(c, str) or not c for c in self.classes):
            raise ModelError(f"classes: expected non-empty strings, received "
                             f"{list(self.classes)}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < np.inf:
            raise ModelError(f"calibration.temperature: expected a positive number, received "
                             f"{t!r}")
        if self.priors is not None:
            pr = np.asarray(self.priors, np.float64)
            if pr.shape != (len(self.classes),) or not np.all(np.isfinite(pr)) or \
                    np.any(pr <= 0):
                raise ModelError(f"calibration.priors: expected {len(self.classes)} positive "
                                 f"numbers (one per class), received {list(self.priors)}")


def build_classifier(spec: CutoutSpec, n_classes: int, width: int = 16,
                     drop_rate: float = 0.3) -> Any:
    """The classifier's network for ``spec``'s input and ``n_classes`` outputs: four 3x3
    conv + 2x2 max-pool stages of ``width``, 2x, 4x, 4x filters (the map halves at each
    while it is at least 4 pixels), a dense layer of 4 ``width`` neurons with dropout
    ``drop_rate`` and a softmax."""
    n = int(spec.pixels)
    layers: list[Any] = []
    for k, mult in enumerate((1, 2, 4, 4)):
        layers.append(nn.conv([3, 3], width * mult, padding=[1, 1], activation="RELU"))
        if n >= 4 or k == 0:
            layers.append(nn.pool([2, 2]))
            n //= 2
    layers.append(nn.dense(4 * width, activation="RELU", drop_rate=drop_rate))
    layers.append(nn.dense(int(n_classes), activation="SMAX", strict_size=1))
    return nn.network([int(spec.pixels), int(spec.pixels)], 1, layers, bias=0.1)


def save_classifier_card(path: str | os.PathLike, card: ClassifierCard) -> None:
    """Write the card as JSON (atomically)."""
    card.check()
    doc = {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION,
           "network": card.network, "classes": list(card.classes),
           "cutout": asdict(card.cutout),
           "calibration": {"temperature": card.temperature,
                           "priors": None if card.priors is None else list(card.priors)},
           "notes": card.notes}
    with atomic_write(path) as fh:
        fh.write(json.dumps(doc, indent=1).encode() + b"\n")


def load_classifier_card(path: str | os.PathLike) -> ClassifierCard:
    """Read a card written by :func:`save_classifier_card`; ModelError naming the file and
    the field otherwise (a detector's card included: it is not a classifier)."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: classifier card not found")
    try:
        with open(p) as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{p}: not a JSON classifier card ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != CLASSIFIER_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ModelError(f"{p}: format: expected {CLASSIFIER_FORMAT!r}, received {got!r}"
                         + (" (a detector: cianna-jax predict reads it)"
                            if got == "cianna_jax.model" else ""))
    if doc.get("version") != CLASSIFIER_VERSION:
        raise ModelError(f"{p}: version: expected {CLASSIFIER_VERSION}, received "
                         f"{doc.get('version')!r}")
    if not isinstance(doc.get("classes"), list) or not isinstance(doc.get("network"), str):
        raise ModelError(f"{p}: network (a file name) and classes (a list of names) are "
                         "required")
    try:
        cut = doc.get("cutout", {})
        cal = doc.get("calibration", {})
        pr = cal.get("priors")
        card = ClassifierCard(str(doc["network"]), tuple(doc["classes"]),
                              CutoutSpec(float(cut["beams"]), int(cut["pixels"]),
                                         float(cut["clip"])), dict(doc.get("notes", {})),
                              cal.get("temperature", 1.0),
                              None if pr is None else tuple(float(v) for v in pr))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelError(f"{p}: {err}") from None
    return checked_card(card, p)


@dataclass(frozen=True)
class LoadedClassifier:
    """A card with its network and parameters."""

    card: ClassifierCard
    net: Any
    params: Any


def load_classifier(model: str | os.PathLike) -> LoadedClassifier:
    """The classifier of a card (``best.json``) or its network file (``best.dat``);
    ModelError when the network does not take the card's cutouts or give its classes."""
    from ..io.cianna_format import CiannaFormatError
    from ..io.network_file import load_network

    path = card_path(model)
    card = load_classifier_card(path)
    net_path = os.path.join(os.path.dirname(os.path.abspath(path)), card.network)
    if not os.path.isfile(net_path):
        raise FileNotFoundError(f"{path}: network file {net_path} not found")
    try:
        loaded = load_network(net_path, binary=True)
    except CiannaFormatError as err:
        raise ModelError(f"{net_path}: {err}") from None
    n = int(card.cutout.pixels)
    if tuple(loaded.net.input_shape) != (n, n, 1):
        raise ModelError(f"{net_path}: the network takes inputs {tuple(loaded.net.input_shape)}"
                         f", the card's cutouts are ({n}, {n}, 1)")
    out = loaded.net.out_dim
    if out != len(card.classes):
        raise ModelError(f"{net_path}: the network gives {out} outputs, the card names "
                         f"{len(card.classes)} classes")
    return LoadedClassifier(card, loaded.net, loaded.params)


def predict_stamps(model: LoadedClassifier | tuple[Any, Any], stamps: Stamps,
                   spec: CutoutSpec, batch_size: int = 256,
                   priors: np.ndarray | None | str = "card", *, draws: int = 0,
                   seed: int = 0) -> np.ndarray:
    """Class probabilities ``[N, K]`` of the stamps: the network's softmax averaged over
    the eight symmetries of each window (:func:`.morphology_cutouts.dihedral_inputs`); for
    a :class:`LoadedClassifier`, at the card's temperature and for ``priors`` ("card": the
    card's; None: equal; else one frequency per class). A bare ``(net, params)``: the
    average as it comes. ``draws`` > 0: Monte Carlo dropout (CIANNA's ``MC_MODEL``), that
    many passes with the dropout on (keys from ``seed``), ``[draws, N, K]`` (their mean is
    the prediction, their scatter its uncertainty)."""
    from ..training import predict

    temperature = 1.0
    if isinstance(model, LoadedClassifier):
        net, params, temperature = model.net, model.params, model.card.temperature
        priors = model.card.priors if isinstance(priors, str) else priors
    else:
        net, params = model
        priors = None
    N, K = len(stamps), int(net.out_dim)
    if N == 0:
        return np.zeros(((draws,) if draws else ()) + (0, K), np.float32)
    views = dihedral_inputs(stamps, spec)
    flat = views.reshape((-1,) + views.shape[2:])

    def calibrated(out: Any) -> np.ndarray:
        mean = np.asarray(out, np.float64).reshape(8, N, -1).mean(axis=0)
        if temperature == 1.0 and priors is None:
            return mean.astype(np.float32)
        return tempered(mean, temperature, priors)

    # one batch size whatever the number of sources (the last batch padded): one compiled
    # program per network, not one per catalogue's length
    if not draws:
        return calibrated(predict(net, params, flat, int(batch_size)))
    import jax

    key = jax.random.key(int(seed))
    return np.stack([calibrated(predict(net, params, flat, int(batch_size),
                                        key=jax.random.fold_in(key, d), drop_mode="MC_MODEL"))
                     for d in range(int(draws))])


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[K, K]`` counts: row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def class_scores(cm: np.ndarray) -> dict[str, Any]:
    """From a confusion matrix: accuracy, balanced accuracy (mean recall over the classes
    present) and per class precision, recall, F1 and support (NaN where undefined)."""
    cm = np.asarray(cm, np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1 = 2 * precision * recall / (precision + recall)
    total = cm.sum()
    return {"accuracy": float(tp.sum() / total) if total else float("nan"),
            "balanced_accuracy": float(np.nanmean(recall)) if np.any(support > 0)
            else float("nan"),
            "precision": precision, "recall": recall, "f1": f1,
            "support": support.astype(np.int64)}
