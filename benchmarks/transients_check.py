"""Transients by image subtraction (``cianna-jax transients``) against a known truth.

    python benchmarks/transients_check.py --model M [--size 2048] [--seed 51]

Two epochs of one SDC1-like sky (independent noise; 5% of the sources variable, their
fluxes times exp(N(0, 0.5)) at each epoch), with ``--new`` point sources of peak SNR 8-40
appearing in the second and as many vanishing (in the first only). The candidates are
matched to the truth (within 2 pixels): the new and vanished sources found with the right
sign, the variable sources whose true change exceeds 5 times the two epochs' noise in
quadrature found, and the candidates of |change_snr| >= 5 that match no changed source.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def with_points(field, xy: np.ndarray, peaks: np.ndarray):
    """``field`` with beam-shaped point sources of ``peaks`` (Jy/beam) at ``xy``."""
    a = field.image.astype(np.float64)
    s = field.beam.bmaj / field.pixel_scale / (2 * math.sqrt(2 * math.log(2)))
    h = int(4 * s) + 1
    for (x, y), p in zip(xy, peaks):
        cx, cy = int(round(x)), int(round(y))
        yy, xx = np.mgrid[cy - h:cy + h + 1, cx - h:cx + h + 1]
        a[cy - h:cy + h + 1, cx - h:cx + h + 1] += p * np.exp(
            -((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return replace(field, image=a.astype(np.float32))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=51)
    ap.add_argument("--new", type=int, default=20, help="sources appearing (and vanishing)")
    args = ap.parse_args(argv)
    from scipy.spatial import cKDTree

    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.astro.transients import find_transients

    rng = np.random.default_rng(args.seed)
    kw = dict(seed=args.seed, variable_fraction=0.05, variability=0.5)
    f0, f1 = synthetic_field(args.size, epoch=0, **kw), synthetic_field(args.size, epoch=1, **kw)
    n, noise = args.new, 1e-5
    xy = rng.uniform(40, args.size - 40, (2 * n, 2))
    peaks = noise * 10 ** rng.uniform(np.log10(8), np.log10(40), 2 * n)
    f1 = with_points(f1, xy[:n], peaks[:n])  # appear
    f0 = with_points(f0, xy[n:], peaks[n:])  # vanish
    t0, t1 = truth_table(f0), truth_table(f1)
    change = (np.asarray(t1["peak"]) - np.asarray(t0["peak"])) / (noise * math.sqrt(2))
    var = np.asarray(t0["variable"], bool)
    with tempfile.TemporaryDirectory() as d:
        p0, p1 = os.path.join(d, "e0.fits"), os.path.join(d, "e1.fits")
        write_fits(p0, f0)
        write_fits(p1, f1)
        start = time.perf_counter()
        c = find_transients(p1, p0, args.model)
        took = time.perf_counter() - start
    cxy = np.stack([np.asarray(c["x"]), np.asarray(c["y"])], 1)
    sign, snr = np.asarray(c["sign"]), np.nan_to_num(np.asarray(c["change_snr"]))
    strong = np.abs(snr) >= 5
    tree = cKDTree(cxy)

    def found(points: np.ndarray, want: np.ndarray) -> np.ndarray:
        d, k = tree.query(points)
        return (d <= 2) & (sign[k] == want) & strong[k]

    new_found = found(xy[:n], np.ones(n))
    gone_found = found(xy[n:], -np.ones(n))
    txy = np.stack([np.asarray(t0["x"]), np.asarray(t0["y"])], 1)
    big = var & (np.abs(change) >= 5)
    var_found = found(txy[big], np.sign(change[big]))
    changed = np.concatenate([xy, txy[var]])
    d, _ = cKDTree(changed).query(cxy)
    false = strong & (d > 2)
    print(f"{args.size}x{args.size}, {len(t0)} true sources, {var.sum()} variable ({big.sum()} "
          f"changing by 5 sigma or more), {n} new and {n} vanishing (peak SNR 8-40); "
          f"{len(c)} candidates ({took:.0f} s), {strong.sum()} of |change_snr| >= 5")
    print(f"new found {new_found.sum()}/{n}, vanished found {gone_found.sum()}/{n}, variable "
          f"sources of true change >= 5 sigma found {var_found.sum()}/{big.sum()}; candidates of "
          f"|change_snr| >= 5 matching no changed source: {false.sum()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
