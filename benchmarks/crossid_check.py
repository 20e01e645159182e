"""Likelihood-ratio counterparts against the truth, beside the nearest-neighbour match.

    python benchmarks/crossid_check.py [--n 3000] [--seeds 3]

Simulated optical catalogues with known hosts (:mod:`cianna_jax.astro.synthetic_optical`)
around 1 deg2 of radio sources, in several regimes (background density, host fraction,
hosts' magnitudes, radio position errors). For each: Q0 estimated against the true
fraction of radio sources whose host is in the catalogue, the expected completeness and
reliability at the chosen threshold against the true ones, the same with q(m) and n(m) per
colour bin (``colour_column``: hosts redder than the background), and the nearest optical
object within 2 arcsec (and within 3 sigma of the combined errors) scored the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REGIMES = {
    "default (20 arcmin-2, 90% hosts ~ 20 mag)": {},
    "dense background (60 arcmin-2)": {"density_arcmin2": 60.0},
    "half the sources with hosts": {"host_fraction": 0.5},
    "faint hosts (22.5 +- 1.5 mag, limit 24)": {"host_mag": (22.5, 1.5)},
    "large radio errors (1-4 arcsec)": {"radio_error": (1.0, 4.0)},
}


def scores(index: np.ndarray, accepted: np.ndarray, host: np.ndarray) -> tuple[float, float]:
    right = accepted & (index == host) & (host >= 0)
    return right.sum() / max((host >= 0).sum(), 1), right.sum() / max(accepted.sum(), 1)


def nearest(sim, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest optical object within ``radius`` (arcsec, per radio source)."""
    from scipy.spatial import cKDTree

    def xyz(t):
        a, d = np.radians(np.asarray(t["ra"])), np.radians(np.asarray(t["dec"]))
        return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], 1)

    dist, idx = cKDTree(xyz(sim.optical)).query(xyz(sim.radio))
    sep = np.degrees(dist) * 3600.0
    return idx, sep <= radius


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="radio sources per field")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    from cianna_jax.astro.crossid import likelihood_ratio
    from cianna_jax.astro.synthetic_optical import simulate_counterparts

    for name, kw in REGIMES.items():
        rows = []
        for seed in range(args.seeds):
            sim = simulate_counterparts(args.n, seed=seed, **kw)
            t0 = time.perf_counter()
            res = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2)
            dt = time.perf_counter() - t0
            t = res.table
            c, r = scores(np.asarray(t["lr_index"]), np.asarray(t["lr_match"]), sim.host)
            sig = np.hypot(np.asarray(sim.radio["ra_err"]), 0.2)
            nn2 = scores(*nearest(sim, np.full(len(sim.radio), 2.0)), sim.host)
            nn3 = scores(*nearest(sim, 3.0 * sig), sim.host)
            col = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2,
                                   colour_column="colour")
            cc, rc = scores(np.asarray(col.table["lr_index"]),
                            np.asarray(col.table["lr_match"]), sim.host)
            rows.append([sim.q0, res.q0, res.completeness, c, res.reliability, r, *nn2, *nn3,
                         dt, col.completeness, cc, col.reliability, rc])
        m = np.mean(rows, axis=0)
        print(f"{name}: Q0 {m[1]:.3f} (true {m[0]:.3f}); LR completeness {m[2]:.3f} expected"
              f" / {m[3]:.3f} true, reliability {m[4]:.3f} / {m[5]:.3f}; nearest within 2\" "
              f"{m[6]:.3f} / {m[7]:.3f}, within 3 sigma {m[8]:.3f} / {m[9]:.3f} "
              f"(completeness / reliability; {m[10]:.2f} s; mean of {args.seeds}); with "
              f"colours: completeness {m[11]:.3f} / {m[12]:.3f}, reliability {m[13]:.3f} / "
              f"{m[14]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
