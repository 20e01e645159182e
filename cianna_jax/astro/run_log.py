"""What ``cianna-jax train`` records per epoch: ``results.csv``, ``training.png`` and the
one-line summary printed after each epoch.

A row is a dict with the keys of :data:`COLUMNS` (losses are means per patch; the
validation scores are those of the detections over the validation area at the row's
objectness ``threshold``; ``ap`` is threshold-free; of ``epoch_seconds``,
``train_seconds`` went to the training steps, ``patches_per_second`` is their rate, and
``validation_seconds`` to the validation losses and detections; the rest waited for the
prefetched patches; the files are written after an epoch's time is taken).  A detector
that classifies adds :data:`CLASS_COLUMNS`: its validation class loss and the class
accuracy of its matched detections.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..io.atomic import atomic_write
from ..progress import format_seconds

__all__ = ["COLUMNS", "CLASS_COLUMNS", "write_results_csv", "read_results_csv", "training_figure", "epoch_line",
           "FigureSchedule"]

COLUMNS = ("epoch", "learning_rate", "train_loss", "val_loss", "val_position", "val_size",
           "val_probability", "val_objectness", "threshold", "precision", "recall", "f1", "ap",
           "n_detections", "n_true", "epoch_seconds", "elapsed_seconds", "train_seconds",
           "patches_per_second", "validation_seconds")
#: the columns a classifying detector's rows add (written when a row has them)
CLASS_COLUMNS = ("val_classes", "class_accuracy", "f1_class", "class_temperature", "class_ece")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def write_results_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """Write every row (atomically: the file always holds whole epochs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    columns = COLUMNS + tuple(c for c in CLASS_COLUMNS if any(c in r for r in rows))
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, float("nan"))) for c in columns])
    with atomic_write(path) as fh:
        fh.write(buf.getvalue().encode())


def read_results_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``results.csv`` (numbers as floats, ``epoch`` as int)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        d: dict[str, float] = {k: float(v) for k, v in r.items()}
        d["epoch"] = int(d["epoch"])
        out.append(d)
    return out


def training_figure(rows: Sequence[dict[str, Any]], title: str = "") -> Any:
    """Two panels: training and validation loss per patch (log scale) and validation
    precision / recall / F1 / AP per epoch (and a classifying detector's class accuracy
    and F1 x class accuracy), with the best epoch by F1 (F1 x class accuracy) marked."""
    from .plots import pyplot as _plt

    plt = _plt()
    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [r["train_loss"] for r in rows], marker="o", ms=3, label="training")
    a.plot(ep, [r["val_loss"] for r in rows], marker="o", ms=3, label="validation")
    a.set_yscale("log")
    a.set_xlabel("epoch")
    a.set_ylabel("YOLO loss per patch")
    a.set_title("loss")
    a.legend()
    curves = [("precision", "precision"), ("recall", "recall (SNR >= min)"), ("f1", "F1"),
              ("ap", "AP")]
    classified = bool(rows) and all("class_accuracy" in r for r in rows)
    if classified:  # a detector that classifies: its classes, and the epochs' ranking
        curves += [("class_accuracy", "class accuracy"), ("f1_class", "F1 x class accuracy")]
    for key, label in curves:
        b.plot(ep, [r[key] for r in rows], marker="o", ms=3, label=label)
    best, name = ("f1_class", "F1 x class accuracy") if classified else ("f1", "F1")
    f1 = [r[best] if not math.isnan(r[best]) else -1.0 for r in rows]
    if rows and max(f1) >= 0:
        k = f1.index(max(f1))
        b.axvline(ep[k], color="0.6", ls=":", lw=1, label=f"best {name} (epoch {ep[k]})")
    b.set_ylim(0, 1.02)
    b.set_xlabel("epoch")
    b.set_ylabel("score on the validation area")
    b.set_title("validation (at the tuned objectness threshold)")
    b.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def epoch_line(r: dict[str, Any], epochs: int, eta: float | None) -> str:
    """``epoch 3/20  loss 1.234 (val 1.456: ...)  P 0.91 R 0.85 F1 0.88 AP 0.86 @0.35  12.3 s
    (93.1 patches/s)  ETA 3:41`` (the rate of the training steps alone)."""
    s = (f"epoch {r['epoch']:>{len(str(epochs))}d}/{epochs}  loss {r['train_loss']:.4g} "
         f"(val {r['val_loss']:.4g}: pos {r['val_position']:.3g} size {r['val_size']:.3g} "
         f"obj {r['val_objectness']:.3g})  P {r['precision']:.3f} R {r['recall']:.3f} "
         f"F1 {r['f1']:.3f} AP {r['ap']:.3f} @{r['threshold']:.2f}")
    if math.isfinite(r.get("class_accuracy", math.nan)):
        s += f" class {r['class_accuracy']:.3f}"
    s += f"  {r['epoch_seconds']:.1f} s"
    if math.isfinite(r.get("patches_per_second", math.nan)):
        s += f" ({r['patches_per_second']:.3g} patches/s)"
    if eta is not None:
        s += f"  ETA {format_seconds(eta)}"
    return s


class FigureSchedule:
    """When to redraw ``training.png``: after an epoch when at least ``interval`` seconds
    passed since the last drawing started (and at least ``share_cost`` times what that
    drawing took), and always at the end of a run (:meth:`flush`).

    Drawing the two panels takes about a second on 2 CPU cores, as long as a short epoch
    (the quick demo's 10 epochs spent 10-17 s in it); a long run still gets its figure
    after every epoch.  ``draw(history) -> bool`` draws and writes the file (False: no
    matplotlib); ``clock`` is for tests.
    """

    def __init__(self, draw: Callable[[list], bool], interval: float = 30.0,
                 share_cost: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.draw, self.interval, self.share_cost, self.clock = draw, interval, share_cost, clock
        self.next_at = -math.inf
        self.drawn = 0  # rows in the last figure written
        self.written = False

    def epoch_done(self, history: list) -> None:
        """Redraw if it is time (call after each epoch's row is appended)."""
        if self.clock() >= self.next_at:
            self._draw(history)

    def flush(self, history: list) -> bool:
        """Draw the rows not drawn yet (end of a run, or an interrupted one); whether a
        figure was written in this run."""
        if history and self.drawn != len(history):
            self._draw(history)
        return self.written

    def _draw(self, history: list) -> None:
        t0 = self.clock()
        self.written = self.draw(history) or self.written
        self.drawn = len(history)
        cost = self.clock() - t0
        self.next_at = t0 + max(self.interval, self.share_cost * cost)
