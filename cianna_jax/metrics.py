"""Classification metrics: confusion matrix and accuracy (numpy, host side).

Outputs and targets are given per sample either as score / one-hot rows ``[N, C]`` or as
integer class ids ``[N]``.  The predicted (and true) class of a score row is its arg-max;
ties go to the *last* maximal index, as in CIANNA.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["class_ids", "confusion_matrix", "accuracy"]


def class_ids(values: ArrayLike, nb_class: int) -> np.ndarray:
    """Class id per sample, ``[N]`` int64.

    ``values``: scores / one-hot ``[N, C']`` with ``C' >= nb_class`` (only the first
    ``nb_class`` columns are used; arg-max, ties to the last maximal index) or ids ``[N]``.
    """
    v = np.asarray(values)
    if v.ndim == 1:
        ids = v.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= nb_class):
            raise ValueError(f"class ids must lie in [0, {nb_class}), got [{ids.min()}, {ids.max()}]")
        return ids
    if v.ndim != 2 or v.shape[1] < nb_class:
        raise ValueError(f"expected [N, >= {nb_class}] scores or [N] ids, got shape {v.shape}")
    v = v[:, :nb_class]
    return (nb_class - 1 - np.argmax(v[:, ::-1], axis=1)).astype(np.int64)


def confusion_matrix(outputs: ArrayLike, targets: ArrayLike, nb_class: int) -> np.ndarray:
    """Confusion matrix ``[nb_class, nb_class]`` int64: ``mat[t, p]`` counts the samples of
    true class ``t`` predicted as ``p`` (rows: targets, columns: predictions, CIANNA's
    ``confmat`` display).

    ``outputs``: network outputs ``[N, C']`` (``C' >= nb_class``) or predicted ids ``[N]``;
    ``targets``: one-hot / scores ``[M, C']`` or ids ``[M]`` with ``M >= N`` (only the
    first ``N`` targets are used, e.g. a dataset padded to whole batches).
    """
    p = class_ids(outputs, nb_class)
    t = class_ids(np.asarray(targets)[: p.shape[0]], nb_class)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"{p.shape[0]} outputs but only {t.shape[0]} targets")
    mat = np.zeros((nb_class, nb_class), np.int64)
    np.add.at(mat, (t, p), 1)
    return mat


def accuracy(outputs: ArrayLike, targets: ArrayLike, nb_class: int) -> float:
    """Fraction of samples whose predicted class is the true one (NaN when there is no
    sample); same arguments as :func:`confusion_matrix`."""
    mat = confusion_matrix(outputs, targets, nb_class)
    total = int(mat.sum())
    return float(np.trace(mat)) / total if total else float("nan")
