"""The luminosity function's parametric fit against populations of known evolution.

    python benchmarks/lumfunc_fit_check.py [--area 30] [--seed 1]

Three simulated populations (the double power law of ``tests/astro/test_lumfunc_fit.py``:
log Phi* -5, log L* 24 W/Hz, slopes 0.4 and 1.6) over ``--area`` deg^2, found above 0.1
mJy: without evolution, with pure luminosity evolution k_L = 2.5, with pure density
evolution k_D = 2. Each one's 1/Vmax luminosity function (z bins 0.1, 0.5, 1, 1.5, 2.2;
half-dex bins) is fitted with no evolution, "ple" and "pde": printed, each fit's parameters,
errors and chi^2.
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
    args = ap.parse_args(argv)
    from cianna_jax.astro.lumfunc_fit import double_power_law, fit_luminosity_function
    from cianna_jax.astro.luminosity_function import (
        Coverage,
        luminosity_function,
        simulate_population,
    )

    area = args.area * (math.pi / 180) ** 2
    for name, evolution in POPULATIONS:
        t0 = time.perf_counter()
        z, flux = simulate_population(lambda lg: double_power_law(lg, 0.0, -5.0, 24.0, 0.4, 1.6),
                                      area, np.random.default_rng(args.seed),
                                      evolution=evolution)
        keep = flux >= 1e-4
        lf = luminosity_function(flux[keep], z[keep], Coverage.flux_limit(area, 1e-4),
                                 z_edges=[0.1, 0.5, 1.0, 1.5, 2.2],
                                 logl_edges=np.arange(21, 28.01, 0.5))
        print(f"{name}: {int(keep.sum())} sources ({time.perf_counter() - t0:.1f} s)")
        for model in ("none", "ple", "pde"):
            print("  " + fit_luminosity_function(lf, model).summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
