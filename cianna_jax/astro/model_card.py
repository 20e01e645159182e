"""The settings stored beside a network file, so that ``predict`` needs no other option.

A model is a CIANNA ``.dat`` file (architecture, weights, YOLO geometry and priors)
plus a small JSON *model card* beside it (``net.dat`` -> ``net.json``) holding what
the ``.dat`` cannot: the input normalisation, tile size and overlap, the detection
thresholds and how boxes relate to source sizes.  Example::

    {"format": "cianna_jax.model", "version": 1,
     "network": {"file": "net.dat", "binary": true, "input_bias": 0.1},
     "input": {"tile": [64, 64], "overlap": [16, 16], "batch_size": 64, "noise_box": 128,
               "normalisation": {"kind": "snr", "mode": "tanh", "low": -5.0, "high": 50.0,
                                 "tanh_scale": 3.0}},
     "detection": {"obj_threshold": 0.3, "nms_threshold": 0.1, "iou_type": "DIoU",
                   "score": "objectness", "box_scale": 2.0}}

Normalisations: ``"snr"`` divides the pixels by the local noise rms (or by a fixed
``noise_rms``) and applies :func:`cianna_jax.datasets.radio_sky.normalize` with ``mode``,
``low``, ``high``, ``tanh_scale`` (noise units); ``"minmax_tanh"`` is CIANNA's SDC1
scaling: clip to ``[min, max]`` (image units), map to [0, 1], then ``tanh(tanh_scale * v)``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..datasets import radio_sky as rs
from ..io.atomic import atomic_write

__all__ = ["CARD_FORMAT", "CARD_VERSION", "ModelError", "Normalisation", "fit_normalisation",
           "ModelCard", "LoadedModel",
           "card_path", "save_model_card", "load_model_card", "load_model", "checked_card"]

CARD_FORMAT = "cianna_jax.model"
CARD_VERSION = 1


class ModelError(ValueError):
    """A model card or network that cannot be used (the message names the file and field)."""


@dataclass(frozen=True)
class Normalisation:
    """How image pixels become network inputs (see the module docstring)."""

    kind: str = "snr"
    mode: str = "tanh"
    low: float = -5.0
    high: float = 50.0
    tanh_scale: float = 3.0
    noise_rms: float | None = None
    min: float | None = None
    max: float | None = None

    def check(self) -> None:
        """Raise ModelError on an inconsistent setting."""
        if self.kind == "snr":
            if self.mode not in ("tanh", "clip"):
                raise ModelError(f"normalisation.mode must be 'tanh' or 'clip', got {self.mode!r}")
            if not self.low < self.high:
                raise ModelError(f"normalisation needs low < high, got {self.low}, {self.high}")
            if self.noise_rms is not None and not self.noise_rms > 0:
                raise ModelError(f"normalisation.noise_rms must be > 0, got {self.noise_rms}")
        elif self.kind == "minmax_tanh":
            if self.min is None or self.max is None or not self.min < self.max:
                raise ModelError("normalisation 'minmax_tanh' needs min < max "
                                 f"(got {self.min}, {self.max})")
        else:
            raise ModelError(f"normalisation.kind must be 'snr' or 'minmax_tanh', got {self.kind!r}")

    @property
    def uses_local_noise(self) -> bool:
        return self.kind == "snr" and self.noise_rms is None

    def apply(self, pixels: np.ndarray, rms: np.ndarray | float | None = None) -> np.ndarray:
        """Network input (float32) for ``pixels`` (NaN-free, image unit) with noise ``rms``."""
        if self.kind == "minmax_tanh":
            v = (np.clip(pixels, self.min, self.max) - self.min) / (self.max - self.min)
            return np.tanh(self.tanh_scale * v).astype(np.float32)
        scale = self.noise_rms if self.noise_rms is not None else rms
        if scale is None:
            raise ValueError("the 'snr' normalisation needs the local noise rms")
        return rs.normalize(np.asarray(pixels, np.float64) / scale, mode=self.mode, noise_rms=1.0,
                            low=self.low, high=self.high, tanh_scale=self.tanh_scale)


def fit_normalisation(kind: str, raw: np.ndarray, rms: np.ndarray) -> Normalisation:
    """The input normalisation fitted on the training pixels ``raw`` (image unit, NaN
    allowed) with local noise ``rms``: ``"snr"`` keeps pixels in noise units, clipped at
    -5 sigma and at the 99.99th percentile of the SNR (at least 20, at most 1000), then
    tanh-compressed; ``"minmax_tanh"`` (CIANNA's SDC1 rule) clips to [-3 rms, 99.99th
    percentile] in image units."""
    ok = np.isfinite(raw)
    if not ok.any():
        raise ValueError("the training area has no finite pixel")
    if kind == "snr":
        top = float(np.percentile(raw[ok] / rms[ok], 99.99))
        return Normalisation(kind="snr", mode="tanh", low=-5.0,
                             high=float(np.clip(round(top, 1), 20.0, 1000.0)), tanh_scale=3.0)
    lo = float(-3.0 * np.median(rms[ok]))
    hi = float(np.percentile(raw[ok], 99.99))
    return Normalisation(kind="minmax_tanh", min=lo, max=max(hi, lo + abs(lo) + 1e-30),
                         tanh_scale=3.0)


@dataclass(frozen=True)
class ModelCard:
    """Everything ``predict`` needs besides the network file.

    ``tile``/``overlap`` are per spatial axis in array order ((H, W) or (D, H, W));
    ``obj_threshold`` one value or one per box/prior; ``nms_threshold`` the DIoU (``iou_type``)
    above which the lower-scored of two boxes is dropped; ``box_scale`` the ratio of a
    target box side to the source's FWHM extent used at training (``radio_sky`` boxes: 2);
    ``classes`` the names of a classifying detector's classes, in the network's order, and
    ``class_temperature`` the temperature that calibrates their probabilities
    (:mod:`.probability_calibration`, fitted on the validation area's matches).
    ``path`` is where the card was read from (network paths are relative to it).
    """

    network: str
    tile: tuple[int, ...]
    overlap: tuple[int, ...]
    binary: bool = True
    input_bias: float = 0.1
    batch_size: int = 32
    noise_box: int = 128
    normalisation: Normalisation = field(default_factory=Normalisation)
    obj_threshold: float | tuple[float, ...] = 0.3
    nms_threshold: float = 0.1
    iou_type: str = "DIoU"
    score: str = "objectness"
    box_scale: float = 2.0
    classes: tuple[str, ...] = ()
    class_temperature: float = 1.0
    notes: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.tile)

    @property
    def network_path(self) -> str:
        """The network file, resolved against the card's folder."""
        if self.path is None or os.path.isabs(self.network):
            return self.network
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), self.network)

    def check(self) -> None:
        """Raise ModelError naming the first invalid field."""
        if len(self.tile) not in (2, 3) or len(self.overlap) != len(self.tile):
            raise ModelError(f"input.tile/overlap must both have 2 or 3 values, got {self.tile}, "
                             f"{self.overlap}")
        for t, o in zip(self.tile, self.overlap):
            if t <= 0 or not 0 <= o < t:
                raise ModelError(f"input: need tile > 0 and 0 <= overlap < tile, got tile "
                                 f"{self.tile}, overlap {self.overlap}")
        if self.batch_size < 1 or self.noise_box < 8:
            raise ModelError("input.batch_size must be >= 1 and input.noise_box >= 8")
        thr = np.atleast_1d(np.asarray(self.obj_threshold, np.float64))
        if not np.all((thr >= 0) & (thr <= 1)):
            raise ModelError(f"detection.obj_threshold must be in [0, 1], got {self.obj_threshold}")
        if self.iou_type not in ("IoU", "GIoU", "DIoU", "DIoU2"):
            raise ModelError(f"detection.iou_type: unknown {self.iou_type!r}")
        if self.score not in ("objectness", "obj*class", "probability"):
            raise ModelError(f"detection.score: unknown {self.score!r}")
        if not (self.box_scale > 0 and math.isfinite(self.nms_threshold)):
            raise ModelError("detection.box_scale must be > 0 and nms_threshold finite")
        t = self.class_temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
            raise ModelError(f"detection.class_temperature must be a positive number, got {t!r}")
        if len(set(self.classes)) != len(self.classes) or not all(
                isinstance(c, str) and c.strip() for c in self.classes):
            raise ModelError(f"detection.classes must be distinct non-empty names, got "
                             f"{list(self.classes)}")
        self.normalisation.check()

    def to_json(self) -> dict[str, Any]:
        """The card as a JSON-ready dict (the file layout)."""
        norm = {k: v for k, v in asdict(self.normalisation).items() if v is not None}
        thr = self.obj_threshold
        return {
            "format": CARD_FORMAT, "version": CARD_VERSION,
            "network": {"file": self.network, "binary": self.binary, "input_bias": self.input_bias},
            "input": {"tile": list(self.tile), "overlap": list(self.overlap),
                      "batch_size": self.batch_size, "noise_box": self.noise_box,
                      "normalisation": norm},
            "detection": {"obj_threshold": list(thr) if isinstance(thr, tuple) else thr,
                          "nms_threshold": self.nms_threshold, "iou_type": self.iou_type,
                          "score": self.score, "box_scale": self.box_scale,
                          **({"classes": list(self.classes),
                              "class_temperature": self.class_temperature}
                             if self.classes else {})},
            "notes": self.notes,
        }


def card_path(model: str | os.PathLike) -> str:
    """The card of ``model``: a ``.json`` file itself, ``X.dat`` -> ``X.json``, a folder ->
    ``model.json`` in it, or, in a ``cianna-jax train`` run folder, ``best.json``."""
    p = os.fspath(model)
    if os.path.isdir(p):
        best = os.path.join(p, "best.json")
        plain = os.path.join(p, "model.json")
        return best if os.path.isfile(best) and not os.path.isfile(plain) else plain
    if p.endswith(".json"):
        return p
    return os.path.splitext(p)[0] + ".json"


def save_model_card(path: str | os.PathLike, card: ModelCard) -> None:
    """Write ``card`` as JSON (atomically: the old file stays if anything fails)."""
    card.check()
    text = json.dumps(card.to_json(), indent=2) + "\n"
    with atomic_write(path) as fh:
        fh.write(text.encode())


def _get(d: dict, key: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise ModelError(f"{where}: missing field {key!r}")
        return default
    v = d[key]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise ModelError(f"{where}: field {key!r} has the wrong type ({type(v).__name__})")
    return v


def _ints(v: Any, n: int | None, where: str) -> tuple[int, ...]:
    vals = [v] * (n or 2) if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(vals, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                             for x in vals):
        raise ModelError(f"{where}: expected an int or a list of ints, got {v!r}")
    return tuple(int(x) for x in vals)


def load_model_card(path: str | os.PathLike) -> ModelCard:
    """Read and validate a model card (ModelError naming the file and the field)."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ModelError(f"{p}: no model card (the JSON settings written beside the network "
                         "file by 'cianna-jax train', the demo or save_model_card)")
    try:
        with open(p, encoding="utf-8") as fh:
            d = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{p}: not a readable JSON model card ({err})") from None
    if not isinstance(d, dict) or d.get("format") != CARD_FORMAT:
        raise ModelError(f"{p}: not a cianna_jax model card (format must be {CARD_FORMAT!r})")
    if d.get("version") != CARD_VERSION:
        raise ModelError(f"{p}: unsupported model card version {d.get('version')!r}")
    net = _get(d, "network", dict, p)
    inp = _get(d, "input", dict, p)
    det = _get(d, "detection", dict, p, {})
    tile = _ints(_get(inp, "tile", (int, list), f"{p} input"), None, f"{p} input.tile")
    overlap = _ints(_get(inp, "overlap", (int, list), f"{p} input"), len(tile), f"{p} input.overlap")
    nd = _get(inp, "normalisation", dict, f"{p} input", {})
    known = set(Normalisation.__dataclass_fields__)
    if set(nd) - known:
        raise ModelError(f"{p} input.normalisation: unknown field(s) {sorted(set(nd) - known)}")
    try:
        norm = Normalisation(**{k: (float(v) if k not in ("kind", "mode") else v) for k, v in nd.items()})
    except (TypeError, ValueError) as err:
        raise ModelError(f"{p} input.normalisation: {err}") from None
    thr = det.get("obj_threshold", 0.3)
    if isinstance(thr, list):
        thr = tuple(float(t) for t in thr)
    elif isinstance(thr, (int, float)) and not isinstance(thr, bool):
        thr = float(thr)
    else:
        raise ModelError(f"{p} detection.obj_threshold: expected a number or a list")
    classes = _get(det, "classes", list, f"{p} detection", [])
    if not all(isinstance(c, str) for c in classes):
        raise ModelError(f"{p} detection.classes: expected a list of names, got {classes!r}")
    card = ModelCard(
        network=_get(net, "file", str, f"{p} network"),
        binary=_get(net, "binary", bool, f"{p} network", True),
        input_bias=_get(net, "input_bias", float, f"{p} network", 0.1),
        tile=tile, overlap=overlap,
        batch_size=_get(inp, "batch_size", int, f"{p} input", 32),
        noise_box=_get(inp, "noise_box", int, f"{p} input", 128),
        normalisation=norm, obj_threshold=thr,
        nms_threshold=_get(det, "nms_threshold", float, f"{p} detection", 0.1),
        iou_type=_get(det, "iou_type", str, f"{p} detection", "DIoU"),
        score=_get(det, "score", str, f"{p} detection", "objectness"),
        box_scale=_get(det, "box_scale", float, f"{p} detection", 2.0),
        classes=tuple(classes),
        class_temperature=_get(det, "class_temperature", float, f"{p} detection", 1.0),
        notes=_get(d, "notes", dict, p, {}), path=p,
    )
    return checked_card(card, p)


def checked_card(card: Any, path: str) -> Any:
    """``card`` once its ``check()`` passes; its ModelError prefixed with ``path``
    otherwise (the cards of detectors and classifiers alike)."""
    try:
        card.check()
    except ModelError as err:
        raise ModelError(f"{path}: {err}") from None
    return card


@dataclass(frozen=True)
class LoadedModel:
    """A card with its network loaded at the card's tile size (``net``, ``params``); ``cache``
    keeps the compiled prediction function between runs."""

    card: ModelCard
    net: Any
    params: Any
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def yolo(self) -> Any:
        return self.net.yolo

    @property
    def class_names(self) -> tuple[str, ...]:
        """The detector's classes: the card's names, else "1", "2"... (CIANNA's 1-based
        classes); () for a detector that does not classify."""
        nc = int(self.net.yolo.nb_class)
        return self.card.classes or tuple(str(k + 1) for k in range(nc))


def load_model(model: str | os.PathLike, *, tile: tuple[int, ...] | int | None = None,
               overlap: tuple[int, ...] | int | None = None) -> LoadedModel:
    """Load a model card and its network, with the network input set to the tile size
    (``tile``/``overlap`` override the card).  ModelError when the network is not a
    single-channel YOLO detector of the card's dimensionality or cannot take the tile."""
    from ..io.cianna_format import CiannaFormatError
    from ..io.network_file import load_network

    card = load_model_card(card_path(model))
    nd = card.ndim
    if tile is not None:
        t = (int(tile),) * nd if np.isscalar(tile) else tuple(int(v) for v in tile)  # type: ignore[arg-type]
        o = card.overlap if overlap is None else (
            (int(overlap),) * nd if np.isscalar(overlap) else tuple(int(v) for v in overlap))  # type: ignore[arg-type]
        card = replace(card, tile=t, overlap=o)
    elif overlap is not None:
        card = replace(card, overlap=(int(overlap),) * nd if np.isscalar(overlap)
                       else tuple(int(v) for v in overlap))  # type: ignore[arg-type]
    try:
        card.check()
    except ModelError as err:
        given = "" if tile is None and overlap is None else " (tile/overlap given)"
        raise ModelError(f"{card.path}{given}: {err}") from None
    path = card.network_path
    if not os.path.isfile(path):
        raise ModelError(f"{card.path}: network file {path} not found")
    spatial = card.tile[::-1] + (1,) * (3 - nd)  # (W, H, D)
    try:
        probe = load_network(path, binary=card.binary, bias=card.input_bias)
    except (CiannaFormatError, OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot read the network ({err})") from None
    if probe.net.yolo is None:
        raise ModelError(f"{path}: the network has no YOLO output layer: not a detector")
    nc = int(probe.net.yolo.nb_class)
    if card.classes and len(card.classes) != nc:
        raise ModelError(f"{card.path}: detection.classes names {len(card.classes)} classes, "
                         f"the network {path} has {nc}")
    if probe.net.in_dims[3] != 1:
        raise ModelError(f"{path}: the network takes {probe.net.in_dims[3]} channels; images "
                         "have 1")
    if (probe.net.in_dims[2] > 1) != (nd == 3):
        raise ModelError(f"{card.path}: a {nd}D tile for a network of input "
                         f"{probe.net.in_dims[:3]} (W, H, D)")
    cell = [w // g for w, g in zip(probe.net.yolo.in_dim, probe.net.yolo.grid)]
    for t, c, name in zip(spatial, cell, "xyz"):
        if t % c:
            raise ModelError(f"tile {card.tile}: the network cannot take it: each side must be a "
                             f"multiple of the network's grid cell ({tuple(cell[:nd][::-1])} "
                             f"pixels, array order), {name} is {t}")
    if tuple(spatial) == tuple(probe.net.in_dims[:3]):
        loaded = probe
    else:
        try:
            loaded = load_network(path, binary=card.binary, bias=card.input_bias,
                                  in_dims=tuple(spatial) + (1,))
        except (CiannaFormatError, ValueError) as err:
            raise ModelError(f"tile {card.tile}: the network cannot take it ({err})") from None
    g = loaded.net.yolo.grid
    if any(s // c != gg for s, c, gg in zip(spatial, cell, g)):
        raise ModelError(f"tile {card.tile}: the network's output grid {tuple(g)} does not match "
                         "tile / cell: the network cannot take this tile")
    return LoadedModel(card=card, net=loaded.net, params=loaded.params)
