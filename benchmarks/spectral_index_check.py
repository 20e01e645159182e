"""Spectral indices recovered against the truth on simulated fields at two frequencies.

    python benchmarks/spectral_index_check.py --model M [--size 2048] [--seed 102]

Simulates one sky at ``--freqs`` (MHz; each source its own alpha from N(--alpha-mean,
--alpha-std), each frequency its own noise), finds the sources of each image with the
model (as ``cianna-jax predict``), computes the spectral indices
(:func:`cianna_jax.astro.spectral_index.spectral_indices`) and compares each matched
source's alpha with its true one, per bin of the higher frequency's flux S/N: the median
offset and the scatter of the pulls (alpha - true) / alpha_err (16-84% half-width).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: S/N bins of the last frequency's flux
SNR_BINS = ((0.0, 10.0), (10.0, 30.0), (30.0, np.inf))


def run(model: str, size: int, seed: int, freqs_mhz: list[float], mean: float, std: float,
        folder: str) -> tuple[object, object]:
    """(spectral-index table, the first frequency's truth)."""
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.pipeline import predict_file
    from cianna_jax.astro.spectral_index import spectral_indices
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    cats, truth = [], None
    for mhz in freqs_mhz:
        f = synthetic_field(size, seed=seed, freq_hz=mhz * 1e6, spectral_index=(mean, std))
        path = os.path.join(folder, f"f{mhz:g}.fits")
        write_fits(path, f)
        truth = truth if truth is not None else truth_table(f)
        out = os.path.join(folder, f"c{mhz:g}.ecsv")
        predict_file(path, model, out, progress=False)
        cats.append(read_catalogue(out))
    return spectral_indices(cats), truth


def compare(table, truth) -> list[dict]:
    """Per S/N bin of the last frequency: sources, median offset, pull scatter."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    radius = float(table.meta["radius_arcsec"])
    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth["ra"]), np.asarray(truth["dec"]), 2 * radius)
    got, true = table[m.det], truth[m.truth]
    last = len(table.meta["frequencies_hz"])
    snr = np.asarray(got[f"flux_{last}"] / got[f"flux_err_{last}"], np.float64)
    d = np.asarray(got["alpha"] - true["alpha"], np.float64)
    pull = d / np.asarray(got["alpha_err"], np.float64)
    rows = []
    for lo, hi in SNR_BINS:
        s = (snr >= lo) & (snr < hi) & np.isfinite(pull)
        if s.sum() >= 3:
            q = np.percentile(pull[s], [16, 84])
            rows.append(dict(bin=(lo, hi), n=int(s.sum()), offset=float(np.median(d[s])),
                             pull=float((q[1] - q[0]) / 2),
                             err=float(np.median(np.asarray(got["alpha_err"])[s]))))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--freqs", type=float, nargs="+", default=[144.0, 1400.0])
    ap.add_argument("--alpha-mean", type=float, default=-0.7)
    ap.add_argument("--alpha-std", type=float, default=0.3)
    args = ap.parse_args(argv)
    from cianna_jax.astro.spectral_index import format_spectral_summary

    with tempfile.TemporaryDirectory() as folder:
        table, truth = run(args.model, args.size, args.seed, args.freqs, args.alpha_mean,
                           args.alpha_std, folder)
    print(format_spectral_summary(table))
    print("  S/N (last freq.)   sources  median alpha - true  pull scatter  median alpha_err")
    for r in compare(table, truth):
        lo, hi = r["bin"]
        print(f"  {lo:5g} - {hi:<8g}  {r['n']:8d}  {r['offset']:+19.3f}  {r['pull']:12.2f}  "
              f"{r['err']:16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
