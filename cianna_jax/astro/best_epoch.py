"""Which epoch of a ``cianna-jax train`` run is kept as ``best``.

A validation area holds few sources in many runs (a cube's strip, tens of lines; a 1024x1024
field's, about twenty sources above SNR 5): its F1 moves by one detection's worth from epoch
to epoch, and the first epoch to reach the highest F1 is often an early one, chosen by luck.
The rule here is the one-standard-error rule of the threshold
(:func:`.train_validation.tune_threshold`) applied to epochs: the epochs whose score is
within one standard error of the best score so far are equally good by it, and of those the
one of lowest validation loss (every validation pixel's fit, a less noisy measure) is kept.

It runs as the epochs come, since only the current epoch's weights can be saved: the kept
epoch changes to the current one when the current one is in the band with a lower loss, or
when a new best score moves the band past the kept one. (An earlier epoch of lower loss
that stays in a band moved up is not recalled.) The standard error is the binomial one of
the score read as a proportion of the detections plus the true sources, with one success
and one failure added (at a perfect score on ten sources the band is 0.05 wide, not 0).

Measured on held-out data against the previous rule (the first epoch of the highest score):
``benchmarks/README.md``, fifty-fifth session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .train_validation import f1_standard_error

__all__ = ["score_band", "best_epoch", "resumed_best"]


def score_band(score: float, n_det: int, n_true: int) -> float:
    """One standard error of a score (F1, or F1 times the class accuracy, or AP) measured
    on ``n_det`` detections and ``n_true`` true sources: the binomial error of a proportion
    of ``n = n_det + n_true`` trials (:func:`.train_validation.f1_standard_error`) with one
    success and one failure added; 0 without trials or without a finite score."""
    n = int(n_det) + int(n_true)
    if n <= 0 or not math.isfinite(score):
        return 0.0
    return f1_standard_error((score * n + 1.0) / (n + 2.0), n_det, n_true)


def best_epoch(history: Sequence[dict[str, Any]], key: str = "f1") -> dict[str, Any] | None:
    """The row of ``history`` (per-epoch rows in order, with ``key``, ``val_loss``,
    ``n_detections`` and ``n_true``) kept as the best by the rule of this module, replayed
    over the rows as the run met them; None for no rows. The last row is the kept one
    exactly when the run saves that epoch as ``best``."""
    kept: dict[str, Any] | None = None
    top: dict[str, Any] | None = None
    for row in history:
        if top is None or _score(row, key) > _score(top, key):
            top = row
        floor = _score(top, key) - score_band(_score(top, key), top["n_detections"],
                                               top["n_true"])
        if (kept is None or _score(kept, key) < floor
                or (_score(row, key) >= floor and _loss(row) < _loss(kept))):
            kept = row
    return kept


def resumed_best(history: Sequence[dict[str, Any]], key: str,
                 saved_epoch: int | None) -> dict[str, Any] | None:
    """The best row of a resumed run: :func:`best_epoch`'s, unless ``best.dat`` holds
    another of the rows (``saved_epoch``, its card's ``notes.epoch``: a run started by a
    version with another rule), whose weights are then the ones kept until an epoch
    replaces them."""
    rule = best_epoch(history, key)
    held = next((r for r in history if r["epoch"] == saved_epoch), None)
    return held if held is not None else rule


def _score(row: dict[str, Any], key: str) -> float:
    v = float(row[key])
    return v if math.isfinite(v) else -1.0


def _loss(row: dict[str, Any]) -> float:
    v = float(row["val_loss"])
    return v if math.isfinite(v) else math.inf
