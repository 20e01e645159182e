"""Training a morphology classifier on images and catalogues with a class column.

Each labelled source's window is read once (:func:`.morphology_cutouts.read_stamps`);
a fraction of each class is held out for validation (stratified, by the seed). An
epoch draws the same number of training sources from every class (with replacement:
rare classes are not drowned by common ones), each at a random angle, mirror and
sub-beam shift, and trains the network (:func:`.morphology.build_classifier`) with
CIANNA V-1.1's AdamW through the functional core (:func:`cianna_jax.training.train_epoch`),
the learning rate on a cosine from ``learning_rate`` to a twentieth of it. After each
epoch the validation sources are classified over their eight symmetries; the epoch of
the lowest validation log-loss is kept as ``best`` (``last`` beside it), with a figure
of the curves and the confusion matrix. Each saved card holds the labelled sources' class
frequencies as the priors of its probabilities and the temperature that calibrates them on
the validation sources (:mod:`.probability_calibration`).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import jax
import numpy as np

from .. import optim, training
from ..checks import as_bounded_float, as_int
from ..io.atomic import atomic_write
from ..io.network_file import save_network
from ..network import init_params
from ..progress import Progress
from .catalogue import column_text, find_column, read_catalogue
from .cutouts import catalogue_pixels
from .fits_image import open_image
from .morphology import (
    ClassifierCard,
    build_classifier,
    class_scores,
    confusion_matrix,
    load_classifier,
    predict_stamps,
    save_classifier_card,
)
from .morphology_cutouts import (
    CutoutSpec,
    Stamps,
    centred_stamps,
    on_image,
    random_views,
    read_stamps,
)
from .noise import estimate_noise_map
from .probability_calibration import (
    expected_calibration_error,
    fit_temperature,
    log_loss,
    tempered,
)

__all__ = ["ClassifierSettings", "LabelledField", "labelled_field", "split_validation",
           "ClassifierResult", "train_classifier", "train_classifier_on_stamps", "fold_splits",
           "stamp_fields", "HISTORY_FILE"]

HISTORY_FILE = "history.csv"


@dataclass(frozen=True)
class ClassifierSettings:
    """``epochs``, ``batch_size``, ``learning_rate`` (AdamW, cosine to 1/20),
    ``weight_decay``, ``val_fraction`` of each class held out, ``samples_per_epoch``
    (0: the number of classes times the largest class's training sources, within
    256-8192), ``width`` (the first conv's filters), ``seed``, ``shift_beams`` (the
    training windows moved by up to this many beams: a catalogue's positions are not
    exactly the cores'), ``folds`` (2 or more: first a k-fold cross-validation, each fold
    held out once, for the accuracy's spread on a small labelled set), the cutouts'
    geometry."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    samples_per_epoch: int = 0
    width: int = 16
    seed: int = 0
    shift_beams: float = 0.5
    folds: int = 0
    cutout: CutoutSpec = CutoutSpec()

    def __post_init__(self) -> None:
        as_int(self.epochs, "epochs", minimum=1)
        as_int(self.batch_size, "batch_size", minimum=1)
        as_int(self.samples_per_epoch, "samples_per_epoch", minimum=0)
        as_int(self.width, "width", minimum=1)
        as_int(self.seed, "seed", minimum=0)
        if as_int(self.folds, "folds", minimum=0) == 1:
            raise ValueError("folds: 0 (no cross-validation) or 2 or more")
        as_bounded_float(self.learning_rate, "learning_rate")
        as_bounded_float(self.weight_decay, "weight_decay", strict=False)
        as_bounded_float(self.shift_beams, "shift_beams", strict=False)
        if not 0.0 < as_bounded_float(self.val_fraction, "val_fraction") < 1.0:
            raise ValueError(f"val_fraction: expected a fraction in (0, 1), received "
                             f"{self.val_fraction!r}")


@dataclass(frozen=True)
class LabelledField:
    """One image's labelled sources: ``stamps``, ``labels`` [N] (class indices), ``rows``
    [N] (their rows in the catalogue), ``path`` and ``catalogue``."""

    path: str
    catalogue: str
    stamps: Stamps
    labels: np.ndarray
    rows: np.ndarray


def labelled_field(image: str, catalogue: str, label_column: str, classes: Sequence[str],
                   spec: CutoutSpec, log: Callable[[str], None] = print) -> LabelledField:
    """The sources of ``catalogue`` on ``image`` whose ``label_column`` is one of
    ``classes`` (text; other labels and sources off the image are left out and counted
    in the log). ValueError names a missing column."""
    table = read_catalogue(catalogue)
    col = find_column(table, label_column)
    if col is None:
        raise ValueError(f"--label-column: {catalogue} has no column {label_column!r} (its "
                         f"columns: {', '.join(table.colnames)})")
    labels = column_text(table[col])
    img = open_image(image)
    x, y, *_ = catalogue_pixels(table, img, catalogue)
    on = on_image(x, y, img.shape)
    index = {c: i for i, c in enumerate(classes)}
    known = np.array([lab in index for lab in labels], bool)
    keep = np.flatnonzero(on & known)
    if (~on).any() or (~known).any():
        log(f"{catalogue}: {int((~on).sum())} sources off {image}, {int((on & ~known).sum())} "
            f"with a label not among the classes: left out")
    noise = estimate_noise_map(img.read, img.shape)
    stamps = read_stamps(img, noise, x[keep], y[keep], spec)
    lab = np.array([index[labels[r]] for r in keep], np.int64)
    return LabelledField(image, catalogue, stamps, lab, keep)


def split_validation(labels: np.ndarray, n_classes: int, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices: ``fraction`` of each class (rounded, at least one
    where a class has two sources or more) held out at random by ``seed``."""
    rng = np.random.default_rng([seed, 7])
    train, val = [], []
    for k in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == k))
        m = 0 if idx.size < 2 else max(1, int(round(fraction * idx.size)))
        val.append(idx[:m])
        train.append(idx[m:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def fold_splits(labels: np.ndarray, n_classes: int, folds: int,
                seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (training, validation) index pairs: each class's sources dealt at random
    (by ``seed``) into the folds, each fold the validation once."""
    rng = np.random.default_rng([seed, 13])
    fold = np.empty(labels.size, np.int64)
    for k in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == k))
        fold[idx] = (np.arange(idx.size) + rng.integers(folds)) % folds
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(folds)]


@dataclass(frozen=True)
class ClassifierResult:
    """The run's folder, ``history`` (one dict per epoch), the best epoch, its validation
    confusion matrix and scores (:func:`.morphology.class_scores`), and the class names;
    ``cross_validation``: with ``folds``, each fold's best scores, their mean and spread and
    the folds' summed confusion matrix (also ``cross_validation.json`` in the run)."""

    out: str
    history: list[dict[str, Any]]
    best_epoch: int
    confusion: np.ndarray
    scores: dict[str, Any]
    classes: tuple[str, ...]
    cross_validation: dict[str, Any] | None = None


class _Pool:
    """The labelled fields' sources as one list: stamps per field, global indices."""

    def __init__(self, fields: list[LabelledField]):
        self.fields = fields
        self.field_of = np.concatenate([np.full(len(f.labels), i) for i, f in
                                        enumerate(fields)])
        self.local = np.concatenate([np.arange(len(f.labels)) for f in fields])
        self.labels = np.concatenate([f.labels for f in fields])

    def views(self, rows: np.ndarray, spec: CutoutSpec, rng: np.random.Generator,
              shift_beams: float) -> np.ndarray:
        n = int(spec.pixels)
        out = np.empty((rows.size, n, n, 1), np.float32)
        for i, f in enumerate(self.fields):
            sel = np.flatnonzero(self.field_of[rows] == i)
            if sel.size:
                out[sel] = random_views(f.stamps, spec, self.local[rows[sel]], rng, shift_beams)
        return out

    def probabilities(self, model: tuple[Any, Any], rows: np.ndarray,
                      spec: CutoutSpec) -> np.ndarray:
        probs = np.empty((rows.size, int(model[0].out_dim)), np.float32)
        for i, f in enumerate(self.fields):
            sel = np.flatnonzero(self.field_of[rows] == i)
            if sel.size:
                loc = self.local[rows[sel]]
                sub = Stamps(f.stamps.snr[loc], f.stamps.fx[loc], f.stamps.fy[loc],
                             f.stamps.side)
                probs[sel] = predict_stamps(model, sub, spec)
        return probs


def _samples(s: ClassifierSettings, train_labels: np.ndarray, k: int) -> int:
    if s.samples_per_epoch:
        n = s.samples_per_epoch
    else:
        n = min(max(k * int(np.bincount(train_labels, minlength=k).max()), 256), 8192)
    return int(math.ceil(n / s.batch_size) * s.batch_size)


def _epoch_rows(pool: _Pool, train: np.ndarray, k: int, n: int,
                rng: np.random.Generator) -> np.ndarray:
    per = [train[pool.labels[train] == c] for c in range(k)]
    per = [p for p in per if p.size]
    draws = [rng.choice(p, size=n // len(per) + (1 if j < n % len(per) else 0))
             for j, p in enumerate(per)]
    return rng.permutation(np.concatenate(draws))


def train_classifier(images: Sequence[str], catalogues: Sequence[str], label_column: str,
                     out: str, *, classes: Sequence[str] | None = None,
                     settings: ClassifierSettings | None = None,
                     log: Callable[[str], None] = print, progress: bool = True,
                     figure: bool = True, init_from: str | None = None) -> ClassifierResult:
    """Train a classifier on the labelled sources of ``images`` (each with the catalogue
    of the same position) and write ``best``/``last`` (``.dat`` + ``.json``),
    ``history.csv`` and ``training.png`` (with ``figure``) in ``out``. ``classes``: the
    labels to learn, in this order (default: every label present, sorted). ValueError
    when a class has fewer than two sources or there are fewer than two classes.

    ``init_from``: a classifier to start from (fine-tuning, e.g. one trained on
    simulations, on a few real labelled sources): its cutouts and width are taken, all its
    weights when its classes are these, else all but the last layer's (a new head)."""
    s, start = _settings(settings, init_from, log)
    if len(images) != len(catalogues) or not images:
        raise ValueError(f"images, catalogues: expected one catalogue per image, received "
                         f"{len(images)} images and {len(catalogues)} catalogues")
    if classes is None:
        found: set[str] = set()
        for cat in catalogues:
            table = read_catalogue(cat)
            col = find_column(table, label_column)
            if col is None:
                raise ValueError(f"--label-column: {cat} has no column {label_column!r} (its "
                                 f"columns: {', '.join(table.colnames)})")
            found.update(v for v in column_text(table[col]) if v)
        classes = sorted(found)
    classes = _checked_classes(classes)
    fields = [labelled_field(i, c, label_column, classes, s.cutout, log)
              for i, c in zip(images, catalogues)]
    return _train(fields, classes, out, s, start, log, progress, figure, label_column)


def train_classifier_on_stamps(stamps: Sequence[str], labels: Sequence[str], out: str, *,
                               classes: Sequence[str] | None = None,
                               settings: ClassifierSettings | None = None,
                               log: Callable[[str], None] = print, progress: bool = True,
                               figure: bool = True,
                               init_from: str | None = None) -> ClassifierResult:
    """:func:`train_classifier` on a set of labelled cutouts, one source at the centre of
    each FITS file of ``stamps`` (with a beam; a survey's postage stamps, as the labelled
    sets of radio galaxies are distributed), ``labels`` one per file."""
    s, start = _settings(settings, init_from, log)
    labels = [str(v).strip() for v in labels]
    if len(stamps) != len(labels) or not stamps:
        raise ValueError(f"stamps, labels: one label per stamp, received {len(stamps)} stamps "
                         f"and {len(labels)} labels")
    classes = _checked_classes(sorted({v for v in labels if v}) if classes is None else classes)
    keep = [k for k, v in enumerate(labels) if v in classes]
    if len(keep) < len(labels):
        log(f"{len(labels) - len(keep)} stamps with a label not among the classes: left out")
    index = {c: i for i, c in enumerate(classes)}
    fields = stamp_fields([stamps[k] for k in keep], s.cutout,
                          np.array([index[labels[k]] for k in keep], np.int64))
    return _train(fields, classes, out, s, start, log, progress, figure)


def stamp_fields(paths: Sequence[str], spec: CutoutSpec, labels: np.ndarray | None = None
                 ) -> list[LabelledField]:
    """The stamps' windows (:func:`.morphology_cutouts.centred_stamps`) as labelled fields,
    one per window size (``rows``: the stamps' indices in ``paths``; ``labels`` theirs, -1
    without)."""
    lab = np.full(len(paths), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    return [LabelledField(str(paths[rows[0]]), "", st, lab[rows], rows)
            for rows, st in centred_stamps(paths, spec)]


def _settings(settings: ClassifierSettings | None, init_from: str | None,
              log: Callable[[str], None]) -> tuple[ClassifierSettings, Any]:
    """The run's settings and the classifier it starts from (None): with ``init_from``, its
    cutouts and width."""
    s = settings or ClassifierSettings()
    if init_from is None:
        return s, None
    start = load_classifier(init_from)
    s = replace(s, cutout=start.card.cutout, width=int(start.net.layers[0].nb_filters))
    log(f"starting from {init_from}: its cutouts ({s.cutout.beams:g} beams, "
        f"{s.cutout.pixels} pixels, clip {s.cutout.clip:g}) and width {s.width}")
    return s, start


def _checked_classes(classes: Sequence[str]) -> tuple[str, ...]:
    out = tuple(str(c) for c in classes)
    if len(out) < 2:
        raise ValueError(f"classes: a classifier needs two classes or more, found {list(out)}")
    return out


def _train(fields: list[LabelledField], classes: tuple[str, ...], out: str,
           s: ClassifierSettings, start: Any, log: Callable[[str], None], progress: bool,
           figure: bool, label_column: str | None = None) -> ClassifierResult:
    """:func:`_train_split` on the settings' validation split, after a cross-validation
    over ``s.folds`` folds when asked; ``label_column``, the catalogues' column of the
    classes, is kept in the cards' notes (``val --classifier`` scores against it)."""
    os.makedirs(out, exist_ok=True)
    cv = None
    if s.folds:
        labels = np.concatenate([f.labels for f in fields])
        runs = []
        for f, split in enumerate(fold_splits(labels, len(classes), s.folds, s.seed)):
            log(f"cross-validation, fold {f + 1}/{s.folds}")
            runs.append(_train_split(fields, classes, os.path.join(out, f"fold_{f + 1}"), s,
                                     start, lambda m: None, progress, False, split,
                                     label_column))
        cv = _cross_validation(runs, classes)
        with atomic_write(os.path.join(out, "cross_validation.json")) as fh:
            fh.write(json.dumps(cv, indent=1).encode() + b"\n")
        log(f"cross-validation ({s.folds} folds): accuracy {cv['accuracy_mean']:.3f} +- "
            f"{cv['accuracy_std']:.3f}, balanced {cv['balanced_accuracy_mean']:.3f} +- "
            f"{cv['balanced_accuracy_std']:.3f}")
    res = _train_split(fields, classes, out, s, start, log, progress, figure,
                       label_column=label_column)
    return res if cv is None else replace(res, cross_validation=cv)


def _cross_validation(runs: list[ClassifierResult], classes: tuple[str, ...]) -> dict[str, Any]:
    acc = np.array([r.scores["accuracy"] for r in runs])
    bal = np.array([r.scores["balanced_accuracy"] for r in runs])
    return {"folds": len(runs), "accuracy": acc.tolist(), "balanced_accuracy": bal.tolist(),
            "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)),
            "balanced_accuracy_mean": float(bal.mean()),
            "balanced_accuracy_std": float(bal.std(ddof=1)), "classes": list(classes),
            "confusion": sum(r.confusion for r in runs).tolist()}


def _train_split(fields: list[LabelledField], classes: tuple[str, ...], out: str,
                 s: ClassifierSettings, start: Any, log: Callable[[str], None],
                 progress: bool, figure: bool,
                 split: tuple[np.ndarray, np.ndarray] | None = None,
                 label_column: str | None = None) -> ClassifierResult:
    """The training loop of :func:`train_classifier` on labelled fields, the validation
    sources those of ``split`` (else the settings' stratified fraction)."""
    os.makedirs(out, exist_ok=True)
    pool = _Pool(fields)
    k = len(classes)
    counts = np.bincount(pool.labels, minlength=k)
    if np.any(counts < 2):
        few = [f"{classes[j]} ({counts[j]})" for j in np.flatnonzero(counts < 2)]
        raise ValueError(f"classes: too few labelled sources on the images for {', '.join(few)}"
                         ": two or more each (one to train on, one to check)")
    train, val = split if split is not None else split_validation(pool.labels, k,
                                                                  s.val_fraction, s.seed)
    priors = counts / counts.sum()  # the labelled population's; training draws them equal
    log("labelled sources: " + ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
        + f"; {train.size} to train on, {val.size} held out")
    net = build_classifier(s.cutout, k, s.width)
    key = jax.random.key(s.seed)
    params = init_params(jax.random.fold_in(key, 0), net)
    if start is not None:
        params = _transferred(start, net, params, classes, log)
    opt = _adamw()
    opt_state = training.set_learning_rate(
        optim.set_v11_masks(training.init_state(opt, params), optim.v11_masks(net, params)),
        s.learning_rate, weight_decay=s.weight_decay)
    rng = np.random.default_rng([s.seed, 11])
    n = _samples(s, pool.labels[train], k)
    history: list[dict[str, Any]] = []
    best = (math.inf, 0)
    best_cm = np.zeros((k, k), np.int64)
    bar = Progress(s.epochs, "classifier", enabled=progress, unit="epoch")
    for epoch in range(1, s.epochs + 1):
        lr = s.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (epoch - 1)
                                                                    / s.epochs)))
        opt_state = training.set_learning_rate(opt_state, lr)
        rows = _epoch_rows(pool, train, k, n, rng)
        x = pool.views(rows, s.cutout, rng, s.shift_beams)
        t = np.eye(k, dtype=np.float32)[pool.labels[rows]]
        params, opt_state, total = training.train_epoch(
            net, opt, params, opt_state, x, t, s.batch_size, jax.random.fold_in(key, epoch))
        if not (math.isfinite(float(total)) and bool(training.all_finite(params))):
            raise FloatingPointError(
                f"classify: the training diverged at epoch {epoch} (non-finite loss or "
                f"weights): a lower --learning-rate than {s.learning_rate:g}"
                + (f"; {out}/best.json holds epoch {best[1]}" if best[1] else ""))
        checked, cm = _validated(pool, (net, params), val, s.cutout, priors)
        row = {"epoch": epoch, "learning_rate": lr, "train_loss": float(total) / rows.size,
               **checked}
        history.append(row)
        _save(out, "last", net, params, classes, s, row, cm, priors, label_column)
        if row["val_loss"] < best[0]:
            best, best_cm = (row["val_loss"], epoch), cm
            _save(out, "best", net, params, classes, s, row, cm, priors, label_column)
        log(f"epoch {epoch}/{s.epochs}: train loss {row['train_loss']:.3f}, validation loss "
            f"{row['val_loss']:.3f}, accuracy {row['val_accuracy']:.3f} (balanced "
            f"{row['val_balanced_accuracy']:.3f}), temperature {row['temperature']:.2f}"
            + (" *" if best[1] == epoch else ""))
        bar.update(1)
        _write_history(out, history)
    bar.close()
    chance = 1.0 / k
    best_sc = class_scores(best_cm)
    if best_sc["balanced_accuracy"] < chance + 0.5 * (1.0 - chance) * 0.2:
        log(f"warning: the best epoch's balanced accuracy {best_sc['balanced_accuracy']:.2f} "
            f"is near chance ({chance:.2f}): the classifier learned little (a lower "
            "--learning-rate, more epochs or more labelled sources)")
    if figure:
        from .morphology_plots import classifier_figure
        from .plots import save_figure

        save_figure(classifier_figure(history, best_cm, classes, best[1]),
                    os.path.join(out, "training.png"))
    return ClassifierResult(out, history, best[1], best_cm, best_sc, classes)


@functools.lru_cache(maxsize=1)
def _adamw() -> Any:
    """CIANNA V-1.1's AdamW, its rate and decay injected (set per run): one object, so the
    compiled training step of a network is reused by later runs in the same process
    (benchmarks, notebooks, fine-tuning after training)."""
    return optim.make_v11_optimizer(optim.parse_optimizer(optim.adam()), decoupled=True)


def _validated(pool: _Pool, model: tuple[Any, Any], val: np.ndarray, spec: CutoutSpec,
               priors: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The validation sources classified as the saved card will (the temperature fitted on
    them, the labelled sources' priors): the history's validation entries and the
    confusion matrix."""
    labels = pool.labels[val]
    equal = pool.probabilities(model, val, spec)  # under equal priors
    temperature = fit_temperature(equal, labels, priors)
    probs = tempered(equal, temperature, priors)
    cm = confusion_matrix(labels, probs.argmax(axis=1), priors.size)
    sc = class_scores(cm)
    return {"val_loss": log_loss(probs, labels), "val_accuracy": sc["accuracy"],
            "val_balanced_accuracy": sc["balanced_accuracy"], "temperature": temperature,
            "val_ece": expected_calibration_error(probs, labels)}, cm


def _transferred(start: Any, net: Any, params: Any, classes: tuple[str, ...],
                 log: Callable[[str], None]) -> Any:
    """``params`` with the starting classifier's weights: all of them for the same classes
    in the same order, else all but the last layer's."""
    same = tuple(start.card.classes) == tuple(classes)
    keep = len(net.layers) if same else len(net.layers) - 1
    if len(start.net.layers) != len(net.layers) or any(
            jax.tree.map(np.shape, start.params[i]) != jax.tree.map(np.shape, params[i])
            for i in range(keep)):
        raise ValueError("--init-from: its network is not this classifier's (another "
                         "architecture)")
    log("its weights taken, " + ("all" if same else f"all but the last layer's (its classes "
                                                    f"{', '.join(start.card.classes)})"))
    return tuple(start.params[i] if i < keep else params[i] for i in range(len(params)))


def _save(out: str, name: str, net: Any, params: Any, classes: tuple[str, ...],
          s: ClassifierSettings, row: dict[str, Any], cm: np.ndarray,
          priors: np.ndarray, label_column: str | None) -> None:
    save_network(os.path.join(out, f"{name}.dat"), net, params, binary=True)
    notes = {"trained_by": "cianna-jax classify train", "epoch": row["epoch"],
             **({} if label_column is None else {"label_column": str(label_column)}),
             "validation": {"loss": row["val_loss"], "accuracy": row["val_accuracy"],
                            "balanced_accuracy": row["val_balanced_accuracy"],
                            "calibration_error": row["val_ece"], "confusion": cm.tolist()},
             "settings": {k: v for k, v in asdict(s).items() if k != "cutout"}}
    save_classifier_card(os.path.join(out, f"{name}.json"),
                         ClassifierCard(f"{name}.dat", classes, s.cutout, notes,
                                        row["temperature"], tuple(float(v) for v in priors)))


def _write_history(out: str, history: list[dict[str, Any]]) -> None:
    with atomic_write(os.path.join(out, HISTORY_FILE)) as fh:
        lines = [",".join(history[0])] + [",".join(f"{v:.6g}" if isinstance(v, float) else
                                                   str(v) for v in r.values()) for r in history]
        fh.write(("\n".join(lines) + "\n").encode())
