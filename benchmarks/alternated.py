"""Alternated timing of training and inference closures, for speed ratios measured on a
shared machine: load that comes and goes hits every run alike, and a ratio is taken per
round before the median."""

from __future__ import annotations

import time

import numpy as np

#: kind of timing -> the closure of a run that does it (``steady`` is optional: every
#: run must have it)
CLOSURES = {"train": "epoch", "infer": "inference", "steady": "steady"}


def alternate(runs: dict, n_items: int, rounds: int, reference: str | None) -> dict:
    """Time each run's ``epoch`` and ``inference`` closures (and ``steady`` when every
    run has one) in alternated rounds.

    Returns per run: ``train`` / ``infer`` / ``steady`` (median items per second),
    ``train_spread`` ... (slowest / fastest round, the machine's noise) and, against
    ``reference``, ``train_ratio`` ... (the median over rounds of the per-round speed
    ratio)."""
    kinds = [k for k in CLOSURES if all(CLOSURES[k] in r for r in runs.values())]
    times = {k: {kind: [] for kind in kinds} for k in runs}
    for _ in range(rounds):
        for kind in kinds:
            for name, r in runs.items():
                fn = r[CLOSURES[kind]]
                t0 = time.perf_counter()
                fn()
                times[name][kind].append(time.perf_counter() - t0)
    out = {}
    for name in runs:
        res = {}
        for kind in kinds:
            ts = np.asarray(times[name][kind])
            res[kind] = n_items / float(np.median(ts))
            res[kind + "_spread"] = float(ts.max() / ts.min())
            if reference is not None and name != reference:
                ratios = np.asarray(times[reference][kind]) / ts
                res[kind + "_ratio"] = float(np.median(ratios))
        out[name] = res
    return out


def ratio_cell(res: dict, kind: str) -> str:
    """``res[kind + "_ratio"]`` as a table cell ("" without a reference run)."""
    key = kind + "_ratio"
    return f"{res[key]:.2f}" if key in res else ""
