"""In-band spectral indices recovered against the truth on a simulated wide-band pointing.

    python benchmarks/inband_alpha_check.py --model M [--size 2048] [--planes 8]

One sky (each source its own alpha from N(-0.7, 0.3), 30% extended) seen through a
Gaussian primary beam of FWHM ``--pb-fwhm`` arcmin at the band's centre (1.28 GHz, MeerKAT's
L band), narrowing as 1 / frequency, not corrected: its full-band image at 1.28 GHz, on
which the model finds the sources (``predict --pb``, responses down to 0.2), and a cube of
``--planes`` sub-bands over 900-1670 MHz, each with sqrt(planes) times the full band's
noise. The catalogue's in-band spectral indices
(:func:`cianna_jax.astro.inband_alpha.inband_spectral_indices`) are compared with the true
ones per bin of the beam's response and of the sources' SNR: the median of alpha - true and
the scatter of the pulls (16-84% half-width), with the beam (``--pb``), without it, and
with every source forced as a point (``--as-points``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CENTRE_HZ = 1.28e9
RESPONSE_BINS = ((0.8, 1.01), (0.6, 0.8), (0.4, 0.6), (0.2, 0.4))
SNR_BINS = ((5.0, 20.0), (20.0, 100.0), (100.0, np.inf))


def simulate(folder: str, size: int, seed: int, planes: int, pb_fwhm: float,
             peaked: float = 0.0):
    """(full-band image, sub-band cube, truth at the band's centre, the cube's first
    frequency); ``peaked``: that fraction of the sources with spectra turning over."""
    from cianna_jax.astro.synthetic import (
        synthetic_field,
        truth_table,
        write_fits,
        write_stokes_cube,
    )

    sky = dict(seed=seed, spectral_index=(-0.7, 0.3), ref_freq_hz=CENTRE_HZ,
               peaked_fraction=peaked)
    mfs = synthetic_field(size, freq_hz=CENTRE_HZ, pb_fwhm=pb_fwhm, **sky)
    image = os.path.join(folder, "mfs.fits")
    write_fits(image, mfs)
    freqs = np.linspace(0.9e9, 1.67e9, planes)
    cube = os.path.join(folder, "subbands.fits")
    write_stokes_cube(cube, size, freqs, stokes="I", pb_fwhm=pb_fwhm * CENTRE_HZ / freqs[0],
                      noise=1e-5 * np.sqrt(planes), **sky)
    return image, cube, truth_table(mfs), freqs[0]


def compare(table, truth, key: str, bins) -> list[str]:
    """Per bin of the truth's ``key``: sources, median alpha - true, pull scatter."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth["ra"]), np.asarray(truth["dec"]), 2.0)
    got, true = table[m.det], truth[m.truth]
    d = np.asarray(got["alpha"], np.float64) - np.asarray(true["alpha"], np.float64)
    pull = d / np.asarray(got["alpha_err"], np.float64)
    v = np.asarray(true[key], np.float64)
    out = []
    for lo, hi in bins:
        s = (v >= lo) & (v < hi) & np.isfinite(pull)
        if s.sum() >= 3:
            q = np.percentile(pull[s], [16, 84])
            out.append(f"{lo:g}-{hi:g}: {s.sum()} sources, alpha - true {np.median(d[s]):+.3f}, "
                       f"pulls {(q[1] - q[0]) / 2:.2f}, alpha_err "
                       f"{np.median(np.asarray(got['alpha_err'])[s]):.3f}")
    return out


def peaked_report(table, truth, lo: float, hi: float) -> str:
    """Of the true sources whose spectrum peaks within the band (and of the power laws):
    how many the curvature fit calls peaked, by SNR in the full band."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth["ra"]), np.asarray(truth["dec"]), 2.0)
    got, true = table[m.det], truth[m.truth]
    b = np.asarray(true["beta"], np.float64) if "beta" in true.colnames else np.zeros(len(true))
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = CENTRE_HZ * np.exp(-np.asarray(true["alpha"]) / (2 * b))
    inside = (b < 0) & (nu > lo) & (nu < hi)
    called, snr = np.asarray(got["peaked"], bool), np.asarray(true["snr"], np.float64)
    out = []
    for a, z in SNR_BINS:
        s = (snr >= a) & (snr < z)
        out.append(f"SNR {a:g}-{z:g}: {int((called & inside & s).sum())} of "
                   f"{int((inside & s).sum())} peaked in the band called peaked, "
                   f"{int((called & (b == 0) & s).sum())} of {int(((b == 0) & s).sum())} "
                   "power laws")
    return "; ".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--planes", type=int, default=8)
    ap.add_argument("--pb-fwhm", type=float, default=19.0,
                    help="the primary beam's FWHM at 1.28 GHz (arcmin)")
    ap.add_argument("--peaked", type=float, default=0.0, metavar="FRACTION",
                    help="that fraction of the sources with spectra turning over (the "
                         "curvature fit's peaked calls are then counted)")
    args = ap.parse_args(argv)
    from cianna_jax.astro.inband_alpha import format_inband_summary, inband_spectral_indices
    from cianna_jax.astro.pipeline import find_sources

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        image, cube, truth, first = simulate(folder, args.size, args.seed, args.planes,
                                             args.pb_fwhm, args.peaked)
        cat = find_sources(image, args.model, progress=False,
                           primary_beam=f"gaussian:{args.pb_fwhm:g}", pb_min=0.2).table
        print(f"{args.size}x{args.size} pointing, beam FWHM {args.pb_fwhm:g}' at 1.28 GHz, "
              f"{len(truth)} true sources, {len(cat)} found (--pb --pb-min 0.2); "
              f"{time.perf_counter() - t0:.0f} s")
        beam = f"gaussian:{args.pb_fwhm * CENTRE_HZ / first:g}"  # (the cube's first plane's)
        for what, kw in ((f"--pb {beam}", dict(primary_beam=beam)),
                         ("not corrected", {}),
                         (f"--pb {beam} --as-points", dict(primary_beam=beam, as_points=True))):
            t1 = time.perf_counter()
            t = inband_spectral_indices(cat, cube, **kw)
            print(f"\n{what}: {format_inband_summary(t)} ({time.perf_counter() - t1:.1f} s)")
            print("  by response at 1.28 GHz:")
            for line in compare(t, truth, "pb", RESPONSE_BINS):
                print("    " + line)
            print("  by SNR in the full band:")
            for line in compare(t, truth, "snr", SNR_BINS):
                print("    " + line)
        if args.peaked:
            t = inband_spectral_indices(cat, cube, primary_beam=beam, curvature=True)
            freqs = t.meta["frequencies_hz"]
            print(f"\n--pb {beam} --curvature: {format_inband_summary(t)}\n  "
                  + peaked_report(t, truth, freqs[0], freqs[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
