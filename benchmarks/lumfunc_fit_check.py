"""The luminosity function's parametric fit against populations of known evolution.

    python benchmarks/lumfunc_fit_check.py [--area 30] [--seed 1] [--seeds 12]

Three simulated populations (the double power law of ``tests/astro/test_lumfunc_fit.py``:
log Phi* -5, log L* 24 W/Hz, slopes 0.4 and 1.6) over ``--area`` deg^2, found above 0.1
mJy: without evolution, with pure luminosity evolution k_L = 2.5, with pure density
evolution k_D = 2. Each one's 1/Vmax luminosity function (z bins 0.1, 0.5, 1, 1.5, 2.2;
half-dex bins) is fitted with no evolution, "ple" and "pde", by both methods (least squares
on the bins, maximum likelihood on the sources): printed, each fit's parameters, errors and
chi^2 (the maximum likelihood's log-likelihood too). ``--seeds N``: the evolving
populations drawn N times (seeds 1..N), each fitted with its own evolution by both
methods: per parameter the mean offset from the truth, the scatter and the median error.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

POPULATIONS = (("no evolution", (0.0, 0.0)), ("luminosity evolution k_L = 2.5", (2.5, 0.0)),
               ("density evolution k_D = 2", (0.0, 2.0)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--area", type=float, default=30.0, help="deg^2")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=0,
                    help="also the fits' bias, scatter and errors over this many draws")
    args = ap.parse_args(argv)
    from cianna_jax.astro.lumfunc_fit import double_power_law, fit_luminosity_function
    from cianna_jax.astro.luminosity_function import (
        Coverage,
        luminosity_function,
        simulate_population,
    )

    area = args.area * (math.pi / 180) ** 2

    def measured(evolution, seed):
        z, flux = simulate_population(lambda lg: double_power_law(lg, 0.0, -5.0, 24.0, 0.4, 1.6),
                                      area, np.random.default_rng(seed), evolution=evolution)
        keep = flux >= 1e-4
        return luminosity_function(flux[keep], z[keep], Coverage.flux_limit(area, 1e-4),
                                   z_edges=[0.1, 0.5, 1.0, 1.5, 2.2],
                                   logl_edges=np.arange(21, 28.01, 0.5)), int(keep.sum())

    for name, evolution in POPULATIONS:
        t0 = time.perf_counter()
        lf, n = measured(evolution, args.seed)
        print(f"{name}: {n} sources ({time.perf_counter() - t0:.1f} s)")
        for model in ("none", "ple", "pde"):
            for method in ("binned", "ml"):
                f = fit_luminosity_function(lf, model, method=method)
                print("  " + f.summary() + (f"; log-likelihood {f.log_likelihood:.1f}"
                                            if method == "ml" else ""))
    truth = {"log_phi_star": -5.0, "log_l_star": 24.0, "alpha": 0.4, "beta": 1.6}
    for name, evolution in POPULATIONS[1:] if args.seeds else ():
        model, key, value = (("ple", "k_l", evolution[0]) if evolution[0] else
                             ("pde", "k_d", evolution[1]))
        offsets = {m: {k: [] for k in (*truth, key)} for m in ("binned", "ml")}
        for seed in range(1, args.seeds + 1):
            lf, _ = measured(evolution, seed)
            for method, rows in offsets.items():
                f = fit_luminosity_function(lf, model, method=method)
                for k, v in rows.items():
                    v.append((f.params[k] - truth.get(k, value), f.errors[k]))
        print(f"{name}, {args.seeds} draws ({model} fitted): offset from the truth (mean), "
              "its scatter, the median error")
        for method, rows in offsets.items():
            print(f"  {method:>6}: " + "; ".join(
                f"{k} {np.mean([d for d, _ in v]):+.3f} / {np.std([d for d, _ in v], ddof=1):.3f}"
                f" / {np.median([e for _, e in v]):.3f}" for k, v in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
