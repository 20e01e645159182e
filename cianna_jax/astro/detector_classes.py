"""The classes of a classifying detector (``cianna-jax train --class-column``), or of a
morphology classifier applied to its catalogue (``val --classifier``), scored against a
truth catalogue's: ``cianna-jax val``'s confusion matrix, accuracy, balanced accuracy and
per-class precision and recall over the matched sources.

Only matched pairs count (a detection without a true source has no true class; a missed
source no predicted one): the detection scores say how many were found, these how well
the found ones were classified.  Classes compare as text (``column_text``: a truth's
``class`` 3 is the detector's class "3").  Beside them, per true class, the share of its
true sources detected at all; for a detector that does not classify, that share alone
(:class:`DetectionByClass`, ``val --class-column``: SDC1's completeness per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import column_text, find_column
from .catalogue_table import DET_CLASS_COLUMN
from .crossmatch import Match
from .labels import class_order
from .morphology import class_scores, confusion_matrix

__all__ = ["ClassReport", "class_report", "truth_class_column", "format_class_report",
           "class_figure", "DetectionByClass", "detection_by_class",
           "format_detection_by_class", "detection_by_class_figure"]


def _detected_shares(n_true: np.ndarray, n_found: np.ndarray) -> np.ndarray:
    """``n_found / n_true`` per class (NaN where a class has no true source)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_true > 0, n_found / np.maximum(n_true, 1), np.nan)


def _class_counts(true: Sequence[str], index: dict[str, int], match: Match,
                  counted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(n_true, n_found)`` per class of ``index``: the true sources of each class that
    ``counted`` keeps (default all), and those ``match`` paired with a detection."""
    keep = np.ones(len(true), bool) if counted is None else np.asarray(counted, bool)
    found = np.zeros(len(true), bool)
    found[np.asarray(match.truth, np.int64)] = True
    codes = np.array([index.get(v, -1) for v in true], np.int64)
    known = keep & (codes >= 0)
    return (np.bincount(codes[known], minlength=len(index)),
            np.bincount(codes[known & found], minlength=len(index)))


def _per_class_detected(classes: Sequence[str], n_true: np.ndarray,
                        n_found: np.ndarray) -> dict[str, dict[str, Any]]:
    """JSON-ready ``{class: {detected, n_true, n_found}}`` (detected None without sources)."""
    share = _detected_shares(n_true, n_found)
    return {name: {"detected": None if share[i] != share[i] else float(share[i]),
                   "n_true": int(n_true[i]), "n_found": int(n_found[i])}
            for i, name in enumerate(classes)}


def _detected_panel(ax: Any, classes: Sequence[str], n_true: np.ndarray,
                    n_found: np.ndarray, title: str) -> None:
    """The detected share of each class's true sources as horizontal bars, with counts."""
    k = len(classes)
    frac = np.nan_to_num(_detected_shares(n_true, n_found))
    ax.barh(range(k), frac, color="tab:blue")
    for i in range(k):
        ax.text(min(frac[i], 1.0) + 0.02, i, f"{int(n_found[i])}/{int(n_true[i])}",
                va="center", fontsize=8)
    ax.set_yticks(range(k), classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.3)
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    ax.set_xlabel("detected fraction of the true sources")
    ax.set_title(title)


@dataclass(frozen=True)
class ClassReport:
    """The ``predicted`` column's classes (``classes``, the detector's or classifier's
    order) against the truth's ``column``: ``confusion`` ``[K, K]`` (row: true class,
    column: the predicted one), ``scores`` (:func:`.morphology.class_scores`),
    ``n_matched`` pairs of which ``n_other`` had a true class the model does not know
    (left out of the matrix); ``n_true`` ``[K]`` the true sources of each class that recall
    counts and ``n_found`` ``[K]`` those detected (matched), whatever class they were
    given: the detection's completeness per class (radio galaxies missed more often than
    compact sources, say)."""

    column: str
    classes: tuple[str, ...]
    confusion: np.ndarray
    scores: dict[str, Any]
    n_matched: int
    n_other: int
    predicted: str = DET_CLASS_COLUMN
    n_true: np.ndarray | None = None
    n_found: np.ndarray | None = None

    def detected(self) -> np.ndarray:
        """The detected fraction of each class's true sources ``[K]`` (NaN without any)."""
        if self.n_true is None:
            return np.full(len(self.classes), np.nan)
        return _detected_shares(self.n_true, self.n_found)

    @property
    def key(self) -> str:
        """Its name in ``scores.json`` and its figure's: ``classes`` for the detector's,
        ``morph_classes`` for a morphology classifier's."""
        return "classes" if self.predicted == DET_CLASS_COLUMN else \
            self.predicted.replace("_class", "_classes")

    def summary(self) -> dict[str, Any]:
        """JSON-ready: column, classes, the matrix, accuracy, balanced accuracy, per class
        precision / recall / F1 / support and the detected fraction of its true sources
        (``detected``, ``n_true``)."""
        per = {name: {k: float(self.scores[k][i]) if k != "support" else int(self.scores[k][i])
                      for k in ("precision", "recall", "f1", "support")}
               for i, name in enumerate(self.classes)}
        if self.n_true is not None:
            for name, d in _per_class_detected(self.classes, self.n_true, self.n_found).items():
                per[name].update(d)
        return {"predicted": self.predicted, "column": self.column,
                "classes": list(self.classes),
                "confusion": self.confusion.tolist(), "accuracy": self.scores["accuracy"],
                "balanced_accuracy": self.scores["balanced_accuracy"], "per_class": per,
                "n_matched": self.n_matched, "n_other_class": self.n_other}


def truth_class_column(truth_table: Any, column: str | None) -> str | None:
    """The truth's column of the classes (``column``, case-insensitive), or None when it has
    none; ValueError when ``column`` was asked for by name and is missing."""
    if column is None:
        return None
    found = find_column(truth_table, str(column))
    if found is None:
        raise ValueError(f"class_column: the truth catalogue has no column {column!r} (its "
                         f"columns: {', '.join(truth_table.colnames)})")
    return found


def class_report(det: Any, truth_table: Any, match: Match, column: str,
                 classes: Sequence[str], predicted: str = DET_CLASS_COLUMN,
                 counted: np.ndarray | None = None) -> ClassReport:
    """Score ``det``'s ``predicted`` column (the detector's
    :data:`.catalogue_table.DET_CLASS_COLUMN`, or a classifier's ``morph_class``) against
    ``truth_table``'s ``column`` over the pairs of ``match`` (detection row -> truth row),
    in the model's ``classes`` order; ``counted`` (bool per truth row, default all): the
    true sources the per-class completeness counts (``val``'s recall: SNR above its
    minimum)."""
    names = tuple(str(c) for c in classes)
    index = {c: k for k, c in enumerate(names)}
    pred = column_text(det[predicted])
    true = column_text(truth_table[column])
    d, t = np.asarray(match.det, np.int64), np.asarray(match.truth, np.int64)
    pairs = [(index[true[j]], index[pred[i]]) for i, j in zip(d, t) if true[j] in index
             and pred[i] in index]
    cm = confusion_matrix(np.array([p[0] for p in pairs], np.int64),
                          np.array([p[1] for p in pairs], np.int64), len(names))
    n_true, n_found = _class_counts(true, index, match, counted)
    return ClassReport(column=column, classes=names, confusion=cm, scores=class_scores(cm),
                       n_matched=int(d.size), n_other=int(d.size) - len(pairs),
                       predicted=predicted, n_true=n_true, n_found=n_found)


def format_class_report(r: ClassReport) -> str:
    """The report's lines: accuracy, balanced accuracy, then per true class its recall,
    precision and support, the matrix, and the detected fraction of its true sources."""
    s = r.scores
    lines = [f"classes ({r.predicted} against the truth's {r.column}, {r.n_matched} matched "
             f"sources): accuracy {s['accuracy']:.3f}, balanced accuracy "
             f"{s['balanced_accuracy']:.3f}"]
    if r.n_other:
        lines.append(f"  {r.n_other} matched sources have no true class, one the model does "
                     "not know, or no predicted class (left out)")
    width = max(8, *(len(c) for c in r.classes))
    detected = r.detected()
    lines.append(f"  {'true':<{width}} {'recall':>7} {'precision':>9} {'support':>7}   "
                 + " ".join(f"{c:>{width}}" for c in r.classes)
                 + ("" if r.n_true is None else f"   {'detected':>8} {'of':>5}"))
    for i, c in enumerate(r.classes):
        lines.append(f"  {c:<{width}} {s['recall'][i]:7.3f} {s['precision'][i]:9.3f} "
                     f"{int(s['support'][i]):7d}   "
                     + " ".join(f"{int(v):>{width}d}" for v in r.confusion[i])
                     + ("" if r.n_true is None else
                        f"   {detected[i]:8.3f} {int(r.n_true[i]):5d}"))
    if r.n_true is not None:
        lines.append("  (detected: the share of the class's true sources that recall counts "
                     "found, in any class)")
    return "\n".join(lines) + "\n"


def class_figure(r: ClassReport) -> Any:
    """The confusion matrix as a figure (fractions of each true class, with counts) and,
    beside it, the detected fraction of each class's true sources."""
    from .morphology_plots import confusion_panel
    from .plots import pyplot

    plt = pyplot()
    k = len(r.classes)
    side = 1.8 + 1.0 * k
    panels = 1 if r.n_true is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(2.2 + 1.1 * k + (3.2 + 0.4 * k) * (panels - 1),
                                                 side), squeeze=False,
                             gridspec_kw={"width_ratios": [1.1 * k + 2.2, 0.4 * k + 3.2][:panels]})
    who = "Detector" if r.predicted == DET_CLASS_COLUMN else "Classifier"
    confusion_panel(axes[0, 0], r.confusion, r.classes,
                    f"{who} classes against the truth's {r.column}\n"
                    f"accuracy {r.scores['accuracy']:.3f} over {r.n_matched - r.n_other} "
                    "matched sources")
    if r.n_true is not None:
        _detected_panel(axes[0, 1], r.classes, r.n_true, r.n_found,
                        "Detection by true class\n(the sources recall counts)")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class DetectionByClass:
    """The detection's completeness per true class of a truth's ``column``, for a detector
    that does not classify: ``n_true`` ``[K]`` true sources of each of ``classes`` that
    recall counts, ``n_found`` those detected."""

    column: str
    classes: tuple[str, ...]
    n_true: np.ndarray
    n_found: np.ndarray

    @property
    def key(self) -> str:
        """Its name in ``scores.json`` and its figure's."""
        return "detected_by_class"

    def detected(self) -> np.ndarray:
        """The detected fraction of each class's true sources ``[K]`` (NaN without any)."""
        return _detected_shares(self.n_true, self.n_found)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: column, classes, per class its detected share and counts."""
        return {"column": self.column, "classes": list(self.classes),
                "per_class": _per_class_detected(self.classes, self.n_true, self.n_found)}


def detection_by_class(truth_table: Any, match: Match, column: str,
                       counted: np.ndarray | None = None) -> DetectionByClass:
    """The share of each true class's sources (``truth_table``'s ``column``, those
    ``counted`` keeps) that ``match`` paired with a detection; classes in numeric order when
    all are integers (SDC1's 1, 2, 3), else alphabetical; sources without a class left out."""
    true = column_text(truth_table[column])
    classes = class_order(v for v in true if v)
    n_true, n_found = _class_counts(true, {c: k for k, c in enumerate(classes)}, match, counted)
    return DetectionByClass(column=column, classes=classes, n_true=n_true, n_found=n_found)


def format_detection_by_class(r: DetectionByClass) -> str:
    """The report's lines: per true class, its detected share and counts."""
    width = max(8, *(len(c) for c in r.classes)) if r.classes else 8
    share = r.detected()
    lines = [f"detection by true class (the truth's {r.column}; the sources recall counts):",
             f"  {'class':<{width}} {'detected':>8} {'found':>6} {'of':>6}"]
    lines += [f"  {c:<{width}} {share[i]:8.3f} {int(r.n_found[i]):6d} {int(r.n_true[i]):6d}"
              for i, c in enumerate(r.classes)]
    return "\n".join(lines) + "\n"


def detection_by_class_figure(r: DetectionByClass) -> Any:
    """The detected share of each true class's sources as a figure."""
    from .plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 1.6 + 0.45 * max(len(r.classes), 1)))
    _detected_panel(ax, r.classes, r.n_true, r.n_found,
                    f"Detection by true class (the truth's {r.column})")
    fig.tight_layout()
    return fig

