"""Fluxes corrected for the primary beam, against the truth, on simulated pointings.

    python benchmarks/primary_beam_check.py --model M [--size 2048] [--pb-fwhm 20]
    python benchmarks/primary_beam_check.py --train [--epochs 12]
    python benchmarks/primary_beam_check.py --model M --counts [--sources 2000]

A field seen through a Gaussian primary beam (an image that is not primary-beam
corrected: uniform noise, sources attenuated towards the edge; ``simulate --pb-fwhm``)
is searched with the model four ways: as it is, with the beam's FITS image (``predict
--pb``), with the beam's model (``--pb gaussian:FWHM``) and with a model of another shape
and the same half-power width (``--pb cosine:FWHM``: what a wrong beam model costs). For the matched sources of
true (apparent) SNR >= 10, the median measured / true flux and the flux pulls' robust
scatter are given per bin of the beam's response.

``--train``: detectors trained on an attenuated field with its catalogue of true fluxes
and no SNRs (as SDC1's truth), told the beam (``train --pb``: the labels are the fluxes
the image shows) or not, each then scored on another attenuated field with ``val --pb``.
The detectors regress no flux (``predict`` fits it): the beam sets which sources are
targets (SNR >= ``--min-snr`` from the flux) and counted in the validation.

``--counts``: the Euclidean-normalised source counts of an attenuated field of point
sources against the true fluxes' over the same area: the catalogue not corrected, corrected
(``--pb``, cut at a response of 0.2) as counted, corrected by the completeness of
``inject --pb`` (point sources, apparent SNR 0.5-100) on it, and by the visibility areas of
5 and 4 sigma (``counts --visibility-snr``).
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
          snr: bool = True, **kw) -> tuple[str, str, str]:
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
                        blend_fraction=0.1, **kw)
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
                     (f"--pb gaussian:{pb_fwhm:g}", f"gaussian:{pb_fwhm:g}"),
                     (f"--pb cosine:{pb_fwhm:g} (another shape, the same FWHM)",
                      f"cosine:{pb_fwhm:g}")):
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


def _at(counts, edges: np.ndarray) -> np.ndarray:
    """``counts``' Euclidean values in the bins of ``edges`` (its own reach further: the
    unfolded counts' start at the faintest injected source)."""
    k = np.searchsorted(np.round(counts.edges, 12), np.round(edges[:-1], 12))
    return counts.euclidean[0][k]


def check_counts(model: str, size: int, seed: int, pb_fwhm: float, folder: str,
                 sources: int, pb_min: float) -> None:
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue
    from cianna_jax.astro.completeness import measure_completeness, write_injection_report
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.pipeline import find_sources
    from cianna_jax.astro.source_counts import count_catalogue, image_area_sr, source_counts

    # point sources only, injected as such: the completeness depends on the sources' shapes
    # (README, "Source counts"); here the beam's part alone is checked
    image, beam, truth_path = field(folder, "field", size, seed, pb_fwhm, extended_fraction=0.0)
    truth = read_catalogue(truth_path)
    # apparent SNRs from 0.5: at a faint true flux, the injections where the beam is low
    # must be drawn too, or the completeness there comes out high
    res = measure_completeness(image, model, n_sources=sources, snr_range=(0.5, 100.0),
                               primary_beam=beam, pb_min=pb_min, progress=False, seed=1)
    inj = os.path.join(folder, "inj")
    write_injection_report(res, inj, plots=False)
    plain = os.path.join(folder, "plain.ecsv")
    write_catalogue(find_sources(image, model, progress=False).table, plain)
    cat = os.path.join(inj, "catalogue.ecsv")
    corrected = count_catalogue(cat, image=image, completeness=inj)
    edges = corrected.edges
    with open_image(image) as img:
        area = image_area_sr(img)
    true = source_counts(np.asarray(truth["flux"]), area, edges=edges)
    rows = {"truth (the true fluxes)": true.euclidean[0],
            "not corrected, as counted": source_counts(
                np.asarray(read_catalogue(plain)["flux"]), area, edges=edges).euclidean_raw,
            f"--pb --pb-min {pb_min:g}, as counted": corrected.euclidean_raw,
            "--pb, inject --pb's completeness": corrected.euclidean[0],
            "--pb, unfolded (counts --unfold)": _at(count_catalogue(
                cat, image=image, completeness=inj, unfold=True), edges)}
    for k in (5.0, 4.0):
        v = count_catalogue(cat, image=image, visibility_snr=k, primary_beam=beam,
                            pb_min=pb_min, per_decade=5)
        assert np.allclose(v.edges, edges)
        rows[f"--pb, visibility area ({k:g} sigma)"] = v.euclidean[0]
    mid = corrected.middle
    sel = (mid > 3e-5) & (mid < 3e-3)
    print(f"{size}x{size} field, beam FWHM {pb_fwhm:g} arcmin, {len(truth)} true sources, "
          f"{len(read_catalogue(cat))} catalogued (--pb-min {pb_min:g}), {sources} injected; "
          "S^2.5 dN/dS (Jy^1.5/sr) at (uJy):")
    print(f"{'':36}" + "".join(f"{m * 1e6:>9.0f}" for m in mid[sel]))
    for name, v in rows.items():
        print(f"{name:36}" + "".join(f"{x:>9.3g}" for x in np.asarray(v)[sel]))
    err = corrected.euclidean[1][sel]
    print(f"{'(its error)':36}" + "".join(f"{x:>9.2g}" for x in err))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model card of a 2D detector")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--pb-fwhm", type=float, default=None,
                    help="arcmin (default: a response of about 0.2 at the corners)")
    ap.add_argument("--train", action="store_true", help="the training comparison instead")
    ap.add_argument("--counts", action="store_true", help="the source counts instead")
    ap.add_argument("--sources", type=int, default=2000, help="injected, with --counts")
    ap.add_argument("--pb-min", type=float, default=0.2, help="with --counts (0.2)")
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
        if a.counts:
            check_counts(a.model, a.size, a.seed, a.pb_fwhm or round(0.93 * size_arcmin, 1),
                         d, a.sources, a.pb_min)
            return
        check_predict(a.model, a.size, a.seed, a.pb_fwhm or round(0.93 * size_arcmin, 1), d)


if __name__ == "__main__":
    main()
