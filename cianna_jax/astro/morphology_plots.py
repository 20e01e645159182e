"""Figures of a morphology classifier: its training curves and confusion matrix, and the
classified sources' gallery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .plots import finish_panels, pyplot

__all__ = ["classifier_figure", "confusion_panel"]


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
