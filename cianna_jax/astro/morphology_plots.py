"""Figures of a morphology classifier: its training curves and confusion matrix, and the
classified sources' gallery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .plots import finish_panels, pyplot

__all__ = ["classifier_figure", "confusion_panel", "gallery_figure"]


def confusion_panel(ax: Any, cm: np.ndarray, classes: Sequence[str], title: str) -> None:
    """The confusion matrix on ``ax`` as fractions of each true class (row), with counts."""
    cm = np.asarray(cm, np.float64)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    k = len(classes)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{frac[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), classes, rotation=30)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)


def classifier_figure(history: list[dict[str, Any]], cm: np.ndarray, classes: Sequence[str],
                      best_epoch: int) -> Any:
    """Three panels: training and validation loss per epoch, validation accuracy
    (plain and balanced) per epoch, and the best epoch's validation confusion matrix."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ep = [r["epoch"] for r in history]
    ax = axes[0]
    ax.plot(ep, [r["train_loss"] for r in history], label="training (augmented)")
    ax.plot(ep, [r["val_loss"] for r in history], label="validation (8 symmetries)")
    ax.axvline(best_epoch, color="grey", ls=":", label=f"best epoch ({best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy per source")
    ax.set_title("Loss")
    ax.legend()
    ax = axes[1]
    ax.plot(ep, [r["val_accuracy"] for r in history], label="accuracy")
    ax.plot(ep, [r["val_balanced_accuracy"] for r in history], label="balanced accuracy")
    ax.axvline(best_epoch, color="grey", ls=":")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction of validation sources")
    ax.set_title("Validation accuracy")
    ax.legend()
    finish_panels(fig, axes[:2], "Morphology classifier training")
    confusion_panel(axes[2], cm, classes, f"Validation, epoch {best_epoch}")
    axes[2].grid(False)
    fig.tight_layout()
    return fig


def gallery_figure(classes: Sequence[str], views: list[np.ndarray], labels: list[list[str]],
                   title: str = "Classified sources") -> Any:
    """One row per class: the network's views ``views[k]`` ``[n, p, p, 1]`` of its sources,
    each titled by ``labels[k][i]`` (e.g. the id and probability)."""
    plt = pyplot()
    cols = max(1, max((v.shape[0] for v in views), default=1))
    fig, axes = plt.subplots(len(classes), cols, figsize=(1.6 * cols + 0.6, 1.75 * len(classes)),
                             squeeze=False)
    for r, (name, v, lab) in enumerate(zip(classes, views, labels)):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < v.shape[0]:
                ax.imshow(v[c, ..., 0], origin="lower", cmap="inferno", vmin=0, vmax=1)
                ax.set_title(lab[c], fontsize=7)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(title + " (the network's input: asinh of the SNR, 0 under the clip)")
    fig.tight_layout()
    return fig
