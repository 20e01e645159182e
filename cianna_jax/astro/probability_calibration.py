"""Calibrated class probabilities: temperature scaling, class priors and the expected
calibration error.

A network's softmax is often over-confident (or, averaged over a window's symmetries,
under-confident). Temperature scaling (Guo et al. 2017) divides the log-probabilities by one
number ``T`` fitted on held-out sources for the lowest log-loss: the classes' order and so
the predicted class never change, only how sure the probabilities say it is. A classifier
trained on balanced classes gives probabilities for equal priors; multiplied by the
population's class frequencies (and normalised) they become its posteriors. The expected
calibration error is the mean gap between the predicted class's probability and the
fraction of right answers, over bins of that probability, weighted by their sources.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tempered", "fit_temperature", "log_loss", "expected_calibration_error"]


def tempered(probs: np.ndarray, temperature: float,
             priors: np.ndarray | None = None) -> np.ndarray:
    """``softmax(log(probs) / temperature + log(priors))`` along the last axis (float32):
    ``priors`` (the classes' frequencies where the probabilities will be used) turn
    probabilities made under equal priors (a classifier trained on balanced classes) into
    the posteriors of that population."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / float(temperature)
    if priors is not None:
        logp = logp + np.log(np.clip(np.asarray(priors, np.float64), 1e-12, None))
    logp -= logp.max(axis=-1, keepdims=True)
    e = np.exp(logp)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """The mean of ``-log p(true class)`` (probabilities floored at 1e-7)."""
    labels = np.asarray(labels, np.int64)
    p = np.clip(np.asarray(probs, np.float64)[np.arange(labels.size), labels], 1e-7, 1.0)
    return float(-np.mean(np.log(p)))


def fit_temperature(probs: np.ndarray, labels: np.ndarray,
                    priors: np.ndarray | None = None) -> float:
    """The temperature of the lowest log-loss of ``labels`` under :func:`tempered` probs
    (with ``priors``), searched in 0.05-20 (log grid, then refined around its best); 1
    with no sources."""
    if np.asarray(labels).size == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    losses = [log_loss(tempered(probs, t, priors), labels) for t in grid]
    i = int(np.argmin(losses))
    fine = np.exp(np.linspace(np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, 120)]), 41))
    losses = [log_loss(tempered(probs, t, priors), labels) for t in fine]
    return float(fine[int(np.argmin(losses))])


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """The sources-weighted mean, over ``bins`` equal bins of the predicted class's
    probability, of |mean probability - fraction right|; NaN with no sources."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if labels.size == 0:
        return float("nan")
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    idx = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(conf[m].mean() - right[m].mean())
    return float(total / labels.size)
