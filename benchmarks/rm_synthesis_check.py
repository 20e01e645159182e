"""Rotation measures recovered against the truth on a simulated polarised sky.

    python benchmarks/rm_synthesis_check.py --model M [--size 1024] [--channels 32] [--clean]

Simulates a Stokes I image at the band's middle and Q and U cubes over 800-1088 MHz
(``--channels``; each source polarised by N(0.1, 0.03) at its own angle and rotation
measure N(20, 40) rad/m^2, each channel its own noise), finds the sources in I with the
model (as ``cianna-jax predict``), runs RM synthesis on the cubes
(:func:`cianna_jax.astro.rm_synthesis.rm_table`) and compares the detected rotation
measures and angles with the truth: the pulls (rm - true) / rm_err and the angles' offsets.
``--clean``: RM-CLEAN first (:mod:`cianna_jax.astro.rm_clean`); every simulated source has one
Faraday component, so the ones it calls Faraday complex are false.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(model: str, size: int, channels: int, seed: int, folder: str, clean: bool = False):
    """(RM table, the Q cube's truth)."""
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.pipeline import predict_file
    from cianna_jax.astro.rm_synthesis import rm_table
    from cianna_jax.astro.synthetic import synthetic_field, write_fits, write_stokes_cube

    freqs = np.linspace(800e6, 1088e6, channels)
    kw = dict(seed=seed, pol_fraction=(0.1, 0.03), rm=(20.0, 40.0))
    write_fits(os.path.join(folder, "i.fits"), synthetic_field(size, seed=seed, freq_hz=944e6))
    truth = write_stokes_cube(os.path.join(folder, "q.fits"), size, freqs, stokes="Q", **kw)
    write_stokes_cube(os.path.join(folder, "u.fits"), size, freqs, stokes="U", **kw)
    out = os.path.join(folder, "cat.ecsv")
    predict_file(os.path.join(folder, "i.fits"), model, out, progress=False)
    return rm_table(read_catalogue(out), os.path.join(folder, "q.fits"),
                    os.path.join(folder, "u.fits"), clean=clean), truth


def compare(table, truth) -> dict:
    """Detected sources matched to the truth: RM pulls and angle offsets."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth["ra"]), np.asarray(truth["dec"]), 1.8)
    got, true = table[m.det], truth[m.truth]
    det = np.asarray(got["rm_detected"], bool)
    pull = np.asarray((got["rm"] - true["rm"]) / got["rm_err"], np.float64)[det]
    dchi = ((np.asarray(got["chi0"]) - np.asarray(true["evpa"]) + 90.0) % 180.0 - 90.0)[det]
    q = np.percentile(pull, [16, 50, 84]) if pull.size else [np.nan] * 3
    c = np.percentile(dchi, [16, 50, 84]) if dchi.size else [np.nan] * 3
    return dict(matched=int(len(got)), detected=int(det.sum()), pull_median=float(q[1]),
                pull_scatter=float((q[2] - q[0]) / 2),
                pull_max=float(np.max(np.abs(pull))) if pull.size else float("nan"),
                chi_median=float(c[1]), chi_scatter=float((c[2] - c[0]) / 2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--clean", action="store_true", help="RM-CLEAN the spectra first")
    args = ap.parse_args(argv)
    from cianna_jax.astro.rm_synthesis import format_rm_summary

    with tempfile.TemporaryDirectory() as folder:
        table, truth = run(args.model, args.size, args.channels, args.seed, folder, args.clean)
    c = compare(table, truth)
    print(format_rm_summary(table))
    print(f"{c['detected']} detected of {c['matched']} matched to the truth: RM pulls median "
          f"{c['pull_median']:+.2f}, scatter {c['pull_scatter']:.2f}, largest |pull| "
          f"{c['pull_max']:.1f}; chi0 offsets median {c['chi_median']:+.1f} deg, scatter "
          f"{c['chi_scatter']:.1f} deg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
