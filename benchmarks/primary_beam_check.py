"""Fluxes corrected for the primary beam, against the truth, on simulated pointings.

    python benchmarks/primary_beam_check.py --model M [--size 2048] [--pb-fwhm 20]
    python benchmarks/primary_beam_check.py --train [--epochs 12]

A field seen through a Gaussian primary beam (an image that is not primary-beam
corrected: uniform noise, sources attenuated towards the edge; ``simulate --pb-fwhm``)
is searched with the model three ways: as it is, with the beam's FITS image (``predict
--pb``) and with the beam's model (``--pb gaussian:FWHM``). For the matched sources of
true (apparent) SNR >= 10, the median measured / true flux and the flux pulls' robust
scatter are given per bin of the beam's response.

``--train``: detectors trained on an attenuated field with its catalogue of true fluxes
and no SNRs (as SDC1's truth), told the beam (``train --pb``: the labels are the fluxes
the image shows) or not, each then scored on another attenuated field with ``val --pb``.
The detectors regress no flux (``predict`` fits it): the beam sets which sources are
targets (SNR >= ``--min-snr`` from the flux) and counted in the validation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BINS = ((0.8, 1.01), (0.6, 0.8), (0.4, 0.6), (0.2, 0.4))


def field(folder: str, name: str, size: int, seed: int, pb_fwhm: float,
          snr: bool = True) -> tuple[str, str, str]:
    """Write an attenuated field, its beam and truth (without its snr column unless
    ``snr``, as SDC1's truth: fluxes only); returns their paths."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import (
        synthetic_field,
        truth_table,
        write_fits,
        write_primary_beam,
    )

    f = synthetic_field(size, seed=seed, pb_fwhm=pb_fwhm, pixel_scale=0.6, psf_fwhm=3.0,
                        noise=1e-5, density=0.002, snr_range=(15.0, 3000.0),
                        blend_fraction=0.1)
    paths = tuple(os.path.join(folder, f"{name}{s}") for s in (".fits", "_pb.fits", ".ecsv"))
    write_fits(paths[0], f)
    write_primary_beam(paths[1], f)
    t = truth_table(f)
    write_catalogue(t if snr else t[[c for c in t.colnames if c != "snr"]], paths[2])
    return paths


def by_response(table, truth) -> list[str]:
    """Per bin of the true response: matched sources, median flux ratio, pulls' scatter."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth["ra"]), np.asarray(truth["dec"]), 1.8)
    got, tr = table[m.det], truth[m.truth]
    keep = np.asarray(tr["snr"]) >= 10
    got, tr = got[keep], tr[keep]
    ratio = np.asarray(got["flux"]) / np.asarray(tr["flux"])
    pull = (np.asarray(got["flux"]) - np.asarray(tr["flux"])) / np.asarray(got["flux_err"])
    out = []
    for lo, hi in BINS:
        s = (np.asarray(tr["pb"]) >= lo) & (np.asarray(tr["pb"]) < hi)
        if not s.any():
            out.append(f"{lo:.1f}-{min(hi, 1):.1f}: none")
            continue
        q = np.percentile(pull[s], [16, 84])
        out.append(f"{lo:.1f}-{min(hi, 1):.1f}: n={int(s.sum()):4d} flux ratio "
                   f"{np.median(ratio[s]):.3f} pulls' scatter {(q[1] - q[0]) / 2:.2f}")
    return out


def check_predict(model: str, size: int, seed: int, pb_fwhm: float, folder: str) -> None:
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.pipeline import find_sources

    image, beam, truth_path = field(folder, "field", size, seed, pb_fwhm)
    truth = read_catalogue(truth_path)
    print(f"{size}x{size} field, Gaussian primary beam FWHM {pb_fwhm:g} arcmin (responses "
          f"{truth['pb'].min():.2f}-{truth['pb'].max():.2f}), {len(truth)} true sources")
    for what, pb in (("not corrected", None), ("--pb beam image", beam),
                     (f"--pb gaussian:{pb_fwhm:g}", f"gaussian:{pb_fwhm:g}")):
        t0 = time.perf_counter()
        res = find_sources(image, model, progress=False, primary_beam=pb)
        dt = time.perf_counter() - t0
        print(f"{what} ({len(res.table)} sources, {dt:.1f} s); by true response, SNR >= 10:")
        for line in by_response(res.table, truth):
            print("   ", line)


def check_training(epochs: int, folder: str, pb_fwhm: float, seeds: int) -> None:
    from cianna_jax.astro.trainer import TrainSettings, train_detector
    from cianna_jax.astro.validate import validate

    train = field(folder, "train", 1024, 21, pb_fwhm, snr=False)
    test = field(folder, "test", 1024, 22, pb_fwhm, snr=False)
    for seed, told in ((s, t) for s in range(seeds) for t in (True, False)):
        out = os.path.join(folder, f"{'told' if told else 'untold'}{seed}")
        t0 = time.perf_counter()
        train_detector(TrainSettings(image=train[0], catalogue=train[2], out=out, epochs=epochs,
                                     patches_per_epoch=512, seed=seed,
                                     primary_beam=train[1] if told else None),
                       progress=False, log=lambda s: None)
        rep = validate(test[0], os.path.join(out, "best.json"), test[2],
                       os.path.join(out, "val"), plots=False, progress=False,
                       primary_beam=test[1], log=lambda s: None)
        lines = [ln.strip() for ln in rep.text.splitlines()
                 if ln.strip().startswith(("precision (", "flux ratio", "SDC1 score"))]
        print(f"seed {seed}, trained {'with' if told else 'without'} --pb "
              f"({time.perf_counter() - t0:.0f} s "
              "with val --pb on another field): " + "; ".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model card of a 2D detector")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--pb-fwhm", type=float, default=None,
                    help="arcmin (default: a response of about 0.2 at the corners)")
    ap.add_argument("--train", action="store_true", help="the training comparison instead")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3, help="training runs of each kind")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if a.train:
            check_training(a.epochs, d, a.pb_fwhm or 10.0, a.seeds)
            return
        if a.model is None:
            ap.error("--model (or --train)")
        size_arcmin = a.size * 0.6 / 60
        check_predict(a.model, a.size, a.seed, a.pb_fwhm or round(0.93 * size_arcmin, 1), d)


if __name__ == "__main__":
    main()
