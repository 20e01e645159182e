"""The luminosity function near the flux limit by coverage: source injection's completeness
against a flux limit on the measured fluxes, for a population whose fluxes scatter.

    python benchmarks/lumfunc_coverages.py [--area 100] [--sigma 2e-5] [--seed 5]

A non-evolving double power law (as ``tests/astro/test_luminosity_function.py``) over
``--area`` deg^2; each flux measured with a Gaussian error ``--sigma`` (Jy) and found at 5
sigma, so that sources just under the limit scatter above it (flux boosting). An injection of
40,000 sources measured the same way gives the completeness by true flux. Printed, per
redshift bin and luminosity bin of 10 sources or more, Phi over the truth for: the
injection's completeness as coverage (``lumfunc --completeness``), a 5-sigma flux limit on
the measured fluxes (what the visibility areas do: the scatter not modelled), and the true
fluxes over the same limit (no scatter: the estimator's own behaviour); ``i`` marks the bins
the estimator calls incomplete.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PHI_STAR, L_STAR, SLOPES = 1e-5, 1e24, (0.4, 1.6)
Z_EDGES = (0.1, 0.5, 1.0, 2.0)


def phi(logl: np.ndarray) -> np.ndarray:
    x = 10 ** (np.asarray(logl) - math.log10(L_STAR))
    return PHI_STAR / (x ** SLOPES[0] + x ** SLOPES[1])


def _injection(folder: str, rng: np.random.Generator, sigma: float) -> None:
    """An injection report's completeness by true flux (completeness_by_flux.ecsv) of the
    measurement."""
    from cianna_jax.astro.catalogue import make_table, write_catalogue
    from cianna_jax.astro.source_counts import count_edges

    inj = 10 ** rng.uniform(np.log10(1.5 * sigma), np.log10(150 * sigma), 40_000)
    found = inj + rng.normal(0, sigma, inj.size) >= 5 * sigma
    edges = count_edges(np.array([0.5 * sigma, 5e4 * sigma]), 5)
    b = np.digitize(inj, edges) - 1
    comp = np.array([np.mean(found[b == i]) if np.any(b == i) else
                     (1.0 if edges[i] > inj.max() else 0.0) for i in range(edges.size - 1)])
    write_catalogue(make_table({"flux_min": edges[:-1], "flux_max": edges[1:],
                                "completeness": comp}),
                    os.path.join(folder, "completeness_by_flux.ecsv"))


def _rows(lf) -> list[str]:
    out = []
    for zb in range(lf.z_edges.size - 1):
        row = []
        for j in range(lf.logl_edges.size - 1):
            if lf.n[zb, j] < 10:
                continue
            g = np.linspace(*lf.logl_edges[j:j + 2], 50)
            want = np.trapezoid(phi(g), g) / np.diff(lf.logl_edges[j:j + 2])[0]
            row.append(f"{lf.logl_edges[j]:.1f} {lf.phi[zb, j] / want:.2f}"
                       f"{'' if lf.complete[zb, j] else 'i'} ({lf.n[zb, j]})")
        out.append(f"  z {lf.z_edges[zb]:.1f}-{lf.z_edges[zb + 1]:.1f}: " + ", ".join(row))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--area", type=float, default=100.0, help="deg^2")
    ap.add_argument("--sigma", type=float, default=2e-5, help="the flux error (Jy)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    from cianna_jax.astro.catalogue import make_table, write_catalogue
    from cianna_jax.astro.luminosity_function import (
        catalogue_luminosity_function,
        simulate_population,
    )

    rng = np.random.default_rng(args.seed)
    z, flux = simulate_population(phi, args.area * (math.pi / 180) ** 2, rng, samples=2000)
    meas = flux + rng.normal(0, args.sigma, flux.size)
    limit = 5 * args.sigma
    det = meas >= limit
    kw = dict(z_column="z", area_deg2=args.area, z_edges=Z_EDGES, dex=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        _injection(tmp, rng, args.sigma)
        found = os.path.join(tmp, "found.ecsv")
        write_catalogue(make_table({"flux": meas[det], "z": z[det]}), found)
        true = os.path.join(tmp, "true.ecsv")
        write_catalogue(make_table({"flux": flux[flux >= limit], "z": z[flux >= limit]}), true)
        runs = (("injection's completeness (measured fluxes)",
                 catalogue_luminosity_function(found, completeness=tmp, **kw)),
                (f"flux limit {limit:.3g} Jy on the measured fluxes",
                 catalogue_luminosity_function(found, flux_limit=limit, **kw)),
                ("true fluxes over the same limit (no scatter)",
                 catalogue_luminosity_function(true, flux_limit=limit, **kw)))
    print(f"{flux.size} sources over {args.area:g} deg^2, {int(det.sum())} found at "
          f"{limit:.3g} Jy (error {args.sigma:.3g} Jy); Phi / truth (sources):")
    for name, lf in runs:
        print(name)
        print("\n".join(_rows(lf)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
