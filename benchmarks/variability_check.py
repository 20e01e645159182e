"""Variable sources found against the truth on simulated epochs of one field.

    python benchmarks/variability_check.py --model M [--size 2048] [--seed 102] [--epochs 2]

Simulates ``--epochs`` observations of one sky (``--variable-fraction`` of the sources vary,
their flux times exp(N(0, --variability)) at each epoch; each epoch its own noise), finds
the sources of each image with the model (as ``cianna-jax predict``), runs
:func:`cianna_jax.astro.variability.variability` (``--forced``: with each epoch's image,
the fluxes of sources an epoch missed measured there; ``--forced-all``: every flux forced,
at every epoch) and compares with the truth: the
constant sources' vs (its scatter should be 1 when the flux errors are right; how many
cross the threshold: false variables) and, per bin of S/N, how many of the true variables
whose true modulation reaches the threshold are found.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SNR_BINS = ((0.0, 10.0), (10.0, 30.0), (30.0, np.inf))


def run(model: str, size: int, seed: int, epochs: int, fraction: float, spread: float,
        folder: str, forced: bool = False, forced_all: bool = False):
    """(variability table, the truth tables of the epochs)."""
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.pipeline import predict_file
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.astro.variability import variability

    cats, truths, images = [], [], []
    for e in range(epochs):
        f = synthetic_field(size, seed=seed, epoch=e, variable_fraction=fraction,
                            variability=spread)
        path = os.path.join(folder, f"e{e}.fits")
        write_fits(path, f)
        images.append(path)
        truths.append(truth_table(f))
        out = os.path.join(folder, f"c{e}.ecsv")
        predict_file(path, model, out, progress=False)
        cats.append(read_catalogue(out))
    return variability(cats, images=images if forced or forced_all else None,
                       force_all=forced_all), truths


def compare(table, truths) -> dict:
    """Constant sources: vs scatter and false variables; true variables whose true |m|
    reaches the threshold: found, per S/N bin of the mean flux over its smallest error."""
    from cianna_jax.astro.crossmatch import crossmatch_sky
    from cianna_jax.astro.variability import M_THRESHOLD

    k = len(truths)
    both = table[np.asarray(table["n_epochs"]) >= 2]
    m = crossmatch_sky(np.asarray(both["ra"]), np.asarray(both["dec"]),
                       np.asarray(truths[0]["ra"]), np.asarray(truths[0]["dec"]),
                       2 * float(table.meta["radius_arcsec"]))
    got = both[m.det]
    var = np.asarray(truths[0]["variable"])[m.truth]
    fl = np.stack([np.asarray(t["flux"], np.float64)[m.truth] for t in truths], 1)
    true_m = np.max(np.abs(2 * (fl[:, :, None] - fl[:, None, :])
                           / (fl[:, :, None] + fl[:, None, :])), axis=(1, 2))
    flag = np.asarray(got["variable"], bool)
    vs = np.asarray(got["vs"], np.float64)[~var]
    q = np.percentile(vs, [16, 84]) if vs.size else [np.nan, np.nan]
    errs = np.stack([np.asarray(got[f"flux_err_{j + 1}"], np.float64) for j in range(k)], 1)
    snr = np.asarray(got["flux_mean"], np.float64) / np.nanmin(errs, axis=1)
    big = var & (true_m >= M_THRESHOLD)
    bins = []
    for lo, hi in SNR_BINS:
        s = (snr >= lo) & (snr < hi)
        bins.append(dict(bin=(lo, hi), variables=int((s & big).sum()),
                         found=int((s & big & flag).sum()), constant=int((s & ~var).sum()),
                         false=int((s & ~var & flag).sum())))
    return dict(matched=int(len(got)), constant=int((~var).sum()),
                false=int((flag & ~var).sum()), vs_scatter=float((q[1] - q[0]) / 2),
                flagged=int(flag.sum()), bins=bins)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variable-fraction", type=float, default=0.1)
    ap.add_argument("--variability", type=float, default=0.3)
    ap.add_argument("--forced", action="store_true",
                    help="each epoch's flux measured where it found no source")
    ap.add_argument("--forced-all", action="store_true",
                    help="every flux measured by forced photometry, at every epoch")
    args = ap.parse_args(argv)
    from cianna_jax.astro.variability import format_variability_summary

    with tempfile.TemporaryDirectory() as folder:
        table, truths = run(args.model, args.size, args.seed, args.epochs,
                            args.variable_fraction, args.variability, folder, args.forced,
                            args.forced_all)
    print(format_variability_summary(table))
    print(format_report(compare(table, truths)))
    return 0


def format_report(c: dict) -> str:
    """:func:`compare`'s result as text, one line per S/N bin."""
    head = (f"matched to the truth: {c['matched']}; constant sources {c['constant']}, their vs "
            f"scatter {c['vs_scatter']:.2f}, flagged variable {c['false']}; flagged in all "
            f"{c['flagged']}\n  S/N          true variables (|m| >= 0.26)  found   constant  "
            "flagged")
    rows = [f"  {b['bin'][0]:4g} - {b['bin'][1]:<6g} {b['variables']:29d}  {b['found']:5d}  "
            f"{b['constant']:9d}  {b['false']:7d}" for b in c["bins"]]
    return "\n".join([head] + rows)


if __name__ == "__main__":
    sys.exit(main())
