"""Alternated timing of training and inference closures, for speed ratios measured on a
shared machine: load that comes and goes hits every run alike, and a ratio is taken per
round before the median."""

from __future__ import annotations

import time

import numpy as np


def alternate(runs: dict, n_items: int, rounds: int, reference: str | None) -> dict:
    """Time each run's ``epoch`` and ``inference`` closures in alternated rounds.

    Returns per run: ``train`` / ``infer`` (median items per second), ``train_spread`` /
    ``infer_spread`` (slowest / fastest round, the machine's noise) and, against
    ``reference``, ``train_ratio`` / ``infer_ratio`` (the median over rounds of the
    per-round speed ratio)."""
    times = {k: {"train": [], "infer": []} for k in runs}
    for _ in range(rounds):
        for kind in ("train", "infer"):
            for name, r in runs.items():
                fn = r["epoch"] if kind == "train" else r["inference"]
                t0 = time.perf_counter()
                fn()
                times[name][kind].append(time.perf_counter() - t0)
    out = {}
    for name in runs:
        res = {}
        for kind in ("train", "infer"):
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
