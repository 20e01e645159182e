"""Alternated timing of training and inference closures, for speed ratios measured on a
shared machine: load that comes and goes hits every run alike, and a ratio is taken per
round before the median."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from core_latency import state

#: kind of timing -> the closure of a run that does it (``steady`` is optional: every
#: run must have it)
CLOSURES = {"train": "epoch", "infer": "inference", "steady": "steady"}


def alternate(runs: dict, n_items: int, rounds: int, reference: str | None,
              probe: Callable[[], float | None] | None = None) -> dict:
    """Time each run's ``epoch`` and ``inference`` closures (and ``steady`` when every
    run has one) in alternated rounds.

    Returns per run: ``train`` / ``infer`` / ``steady`` (median items per second),
    ``train_spread`` ... (slowest / fastest round, the machine's noise) and, against
    ``reference``, ``train_ratio`` ... (the median over rounds of the per-round speed
    ratio).

    ``probe`` (e.g. :func:`core_latency.round_trip_ns`) is called before each kind of
    every round (just before its runs): each run then also has ``train_round_trip_ns``
    ... (the lists, None where it could not measure) and, against ``reference``,
    ``train_ratio_near`` / ``train_ratio_far`` ... (the median of the ratios of the
    rounds in that state, where there were any)."""
    kinds = [k for k in CLOSURES if all(CLOSURES[k] in r for r in runs.values())]
    times = {k: {kind: [] for kind in kinds} for k in runs}
    probes = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            if probe is not None:
                probes[kind].append(probe())
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
                for where in ("near", "far"):
                    chosen = [r for r, ns in zip(ratios, probes[kind]) if state(ns) == where]
                    if chosen:
                        res[f"{kind}_ratio_{where}"] = float(np.median(chosen))
            if probe is not None:
                res[kind + "_round_trip_ns"] = list(probes[kind])
        out[name] = res
    return out


def ratio_cell(res: dict, kind: str) -> str:
    """``res[kind + "_ratio"]`` as a table cell ("" without a reference run)."""
    key = kind + "_ratio"
    return f"{res[key]:.2f}" if key in res else ""
