"""The classes of a classifying detector (``cianna-jax train --class-column``), or of a
morphology classifier applied to its catalogue (``val --classifier``), scored against a
truth catalogue's: ``cianna-jax val``'s confusion matrix, accuracy, balanced accuracy and
per-class precision and recall over the matched sources.

Only matched pairs count (a detection without a true source has no true class; a missed
source no predicted one): the detection scores say how many were found, these how well
the found ones were classified.  Classes compare as text (``column_text``: a truth's
``class`` 3 is the detector's class "3").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import column_text, find_column
from .catalogue_table import DET_CLASS_COLUMN
from .crossmatch import Match
from .morphology import class_scores, confusion_matrix

__all__ = ["ClassReport", "class_report", "truth_class_column", "format_class_report",
           "class_figure"]


@dataclass(frozen=True)
class ClassReport:
    """The ``predicted`` column's classes (``classes``, the detector's or classifier's
    order) against the truth's ``column``: ``confusion`` ``[K, K]`` (row: true class,
    column: the predicted one), ``scores`` (:func:`.morphology.class_scores`),
    ``n_matched`` pairs of which ``n_other`` had a true class the model does not know
    (left out of the matrix)."""

    column: str
    classes: tuple[str, ...]
    confusion: np.ndarray
    scores: dict[str, Any]
    n_matched: int
    n_other: int
    predicted: str = DET_CLASS_COLUMN

    @property
    def key(self) -> str:
        """Its name in ``scores.json`` and its figure's: ``classes`` for the detector's,
        ``morph_classes`` for a morphology classifier's."""
        return "classes" if self.predicted == DET_CLASS_COLUMN else \
            self.predicted.replace("_class", "_classes")

    def summary(self) -> dict[str, Any]:
        """JSON-ready: column, classes, the matrix, accuracy, balanced accuracy, per class
        precision / recall / F1 / support."""
        per = {name: {k: float(self.scores[k][i]) if k != "support" else int(self.scores[k][i])
                      for k in ("precision", "recall", "f1", "support")}
               for i, name in enumerate(self.classes)}
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
                 classes: Sequence[str], predicted: str = DET_CLASS_COLUMN) -> ClassReport:
    """Score ``det``'s ``predicted`` column (the detector's
    :data:`.catalogue_table.DET_CLASS_COLUMN`, or a classifier's ``morph_class``) against
    ``truth_table``'s ``column`` over the pairs of ``match`` (detection row -> truth row),
    in the model's ``classes`` order."""
    names = tuple(str(c) for c in classes)
    index = {c: k for k, c in enumerate(names)}
    pred = column_text(det[predicted])
    true = column_text(truth_table[column])
    d, t = np.asarray(match.det, np.int64), np.asarray(match.truth, np.int64)
    pairs = [(index[true[j]], index[pred[i]]) for i, j in zip(d, t) if true[j] in index
             and pred[i] in index]
    cm = confusion_matrix(np.array([p[0] for p in pairs], np.int64),
                          np.array([p[1] for p in pairs], np.int64), len(names))
    return ClassReport(column=column, classes=names, confusion=cm, scores=class_scores(cm),
                       n_matched=int(d.size), n_other=int(d.size) - len(pairs),
                       predicted=predicted)


def format_class_report(r: ClassReport) -> str:
    """The report's lines: accuracy, balanced accuracy, then per true class its recall,
    precision and support, and the matrix."""
    s = r.scores
    lines = [f"classes ({r.predicted} against the truth's {r.column}, {r.n_matched} matched "
             f"sources): accuracy {s['accuracy']:.3f}, balanced accuracy "
             f"{s['balanced_accuracy']:.3f}"]
    if r.n_other:
        lines.append(f"  {r.n_other} matched sources have no true class, one the model does "
                     "not know, or no predicted class (left out)")
    width = max(8, *(len(c) for c in r.classes))
    lines.append(f"  {'true':<{width}} {'recall':>7} {'precision':>9} {'support':>7}   "
                 + " ".join(f"{c:>{width}}" for c in r.classes))
    for i, c in enumerate(r.classes):
        lines.append(f"  {c:<{width}} {s['recall'][i]:7.3f} {s['precision'][i]:9.3f} "
                     f"{int(s['support'][i]):7d}   "
                     + " ".join(f"{int(v):>{width}d}" for v in r.confusion[i]))
    return "\n".join(lines) + "\n"


def class_figure(r: ClassReport) -> Any:
    """The confusion matrix as a figure (fractions of each true class, with counts)."""
    from .morphology_plots import confusion_panel
    from .plots import pyplot

    plt = pyplot()
    k = len(r.classes)
    fig, ax = plt.subplots(figsize=(2.2 + 1.1 * k, 1.8 + 1.0 * k))
    who = "Detector" if r.predicted == DET_CLASS_COLUMN else "Classifier"
    confusion_panel(ax, r.confusion, r.classes,
                    f"{who} classes against the truth's {r.column}\n"
                    f"accuracy {r.scores['accuracy']:.3f} over {r.n_matched - r.n_other} "
                    "matched sources")
    fig.tight_layout()
    return fig

