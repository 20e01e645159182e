"""What the SKA Data Challenges' scores share (:mod:`.sdc1` for images, :mod:`.sdc2` for HI
cubes): the score's record and the reading of a catalogue's challenge columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ChallengeScore", "challenge_columns"]


@dataclass(frozen=True)
class ChallengeScore:
    """``value`` the score; ``n_det`` submitted sources scored; ``n_match`` matches
    accepted; ``n_bad`` candidate matches rejected (multi-dimensional error >= 5);
    ``n_false`` = n_det - n_match; ``score_det`` sum of per-match scores; ``acc_pc`` mean
    per-match score in %; ``per_source`` per-match scores by property and
    ``match_sub``/``match_truth`` the matched ids."""

    value: float
    n_det: int
    n_match: int
    n_bad: int
    n_false: int
    score_det: float
    acc_pc: float
    per_source: dict[str, np.ndarray]
    match_sub: np.ndarray
    match_truth: np.ndarray

    @classmethod
    def of(cls, score_sum: float, n_det: int, n_match: int, n_bad: int,
           per_source: dict[str, np.ndarray], match_sub: np.ndarray,
           match_truth: np.ndarray) -> ChallengeScore:
        """The score of ``n_match`` matches scoring ``score_sum`` together: their sum less
        one per unmatched submitted source."""
        return cls(value=score_sum - float(n_det - n_match), n_det=n_det, n_match=n_match,
                   n_bad=n_bad, n_false=n_det - n_match, score_det=score_sum,
                   acc_pc=score_sum / n_match * 100.0 if n_match else 0.0,
                   per_source=per_source, match_sub=match_sub, match_truth=match_truth)

    def summary(self, name: str) -> dict[str, float]:
        """The score's numbers as a flat dict, the value under ``name`` (for reports)."""
        return {name: self.value, "n_det": self.n_det, "n_match": self.n_match,
                "n_bad": self.n_bad, "n_false": self.n_false, "score_det": self.score_det,
                "acc_pc": self.acc_pc if math.isfinite(self.acc_pc) else float("nan")}


def challenge_columns(cat: Any, names: Sequence[str], what: str,
                      challenge: str) -> dict[str, np.ndarray]:
    """The columns ``names`` (any case) of a table or mapping as float64 arrays; ValueError
    naming the missing ones."""
    have = list(cat.colnames) if hasattr(cat, "colnames") else list(cat.keys())
    lower = {n.lower(): n for n in have}
    missing = [c for c in names if c not in lower]
    if missing:
        raise ValueError(f"{what} catalogue: missing {challenge} column(s) {missing} (needs "
                         f"{list(names)})")
    return {c: np.asarray(cat[lower[c]], np.float64).reshape(-1) for c in names}
