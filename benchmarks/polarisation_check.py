"""Polarisation recovered against the truth on a simulated polarised sky.

    python benchmarks/polarisation_check.py --model M [--size 2048] [--seed 102]

Simulates one sky in Stokes I, Q and U (``--pol-fraction`` MEAN STD; each source at its own
angle; each image its own noise), finds the sources in I with the model (as ``cianna-jax
predict``), measures their polarisation (:func:`cianna_jax.astro.polarisation.polarisation`)
and compares with the truth: the Q fluxes' pulls on the point sources, the angles' and
fractions' pulls on the polarised sources, and how many sources of true P/sigma >= 7 are
found polarised and how many of true P/sigma < 3 are called so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(model: str, size: int, seed: int, pol: tuple[float, float], folder: str):
    """(polarisation table, I truth, Q truth)."""
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.pipeline import predict_file
    from cianna_jax.astro.polarisation import polarisation
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    paths, truths = {}, {}
    for s in ("I", "Q", "U"):
        f = synthetic_field(size, seed=seed, stokes=s, pol_fraction=pol)
        paths[s] = os.path.join(folder, f"{s}.fits")
        write_fits(paths[s], f)
        truths[s] = truth_table(f)
    out = os.path.join(folder, "cat.ecsv")
    predict_file(paths["I"], model, out, progress=False)
    return polarisation(read_catalogue(out), paths["Q"], paths["U"]), truths["I"], truths["Q"]


def compare(table, truth_i, truth_q) -> dict:
    """Pulls and counts of the module docstring."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth_i["ra"]), np.asarray(truth_i["dec"]), 1.8)
    got, ti, tq = table[m.det], truth_i[m.truth], truth_q[m.truth]

    def spread(x):
        x = np.asarray(x, np.float64)
        x = x[np.isfinite(x)]
        if not x.size:
            return float("nan"), float("nan")
        q = np.percentile(x, [16, 50, 84])
        return float(q[1]), float((q[2] - q[0]) / 2)

    point = np.asarray(ti["kind"]) == 0
    pol = np.asarray(got["polarised"], bool)
    d_ang = (np.asarray(got["evpa"]) - np.asarray(tq["evpa"]) + 90.0) % 180.0 - 90.0
    true_snr = (np.asarray(tq["pol_frac"]) * np.asarray(ti["flux"])
                / np.asarray(got["pol_flux_err"], np.float64))
    return dict(matched=int(len(got)), polarised=int(pol.sum()),
                q_pull=spread(((got["q_flux"] - tq["flux"]) / got["q_flux_err"])[point]),
                evpa_pull=spread(d_ang[pol] / np.asarray(got["evpa_err"])[pol]),
                frac_pull=spread(((got["pol_frac"] - tq["pol_frac"]) / got["pol_frac_err"])[pol]),
                bright=int((true_snr >= 7).sum()), bright_found=int((pol & (true_snr >= 7)).sum()),
                faint=int((true_snr < 3).sum()), faint_called=int((pol & (true_snr < 3)).sum()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--pol-fraction", type=float, nargs=2, default=[0.05, 0.03])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        table, ti, tq = run(args.model, args.size, args.seed, tuple(args.pol_fraction), folder)
    c = compare(table, ti, tq)
    print(f"{c['matched']} sources matched to the truth, {c['polarised']} polarised; pulls "
          f"(median, scatter): Q fluxes of point sources {c['q_pull'][0]:+.2f} "
          f"{c['q_pull'][1]:.2f}, EVPA {c['evpa_pull'][0]:+.2f} {c['evpa_pull'][1]:.2f}, "
          f"fraction {c['frac_pull'][0]:+.2f} {c['frac_pull'][1]:.2f}; true P/sigma >= 7: "
          f"{c['bright_found']} of {c['bright']} found; true P/sigma < 3: {c['faint_called']} "
          f"of {c['faint']} called polarised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
