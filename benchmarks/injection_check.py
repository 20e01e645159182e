"""Source injection (``cianna-jax inject``) checked against a truth: on a field whose true
sources are known, the completeness measured by injecting sources is set beside the truth's
completeness in the same bins of peak SNR, and the detector's new detections around
injected sources beside the catalogue's false detections near true sources.

    python benchmarks/injection_check.py --image /tmp/pybdsf_cmp/heldout_field.fits \\
        --truth /tmp/pybdsf_cmp/heldout_truth.ecsv --model /tmp/pybdsf_cmp/model_0/best.json

Prints one table (per SNR bin: injected completeness with its Wilson 1-sigma interval; the
truth's for all true sources and for its point sources) and the totals; ``--out`` also
writes the injection's report folder, its figure with the truth's curve drawn in.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cianna_jax import xla_cpu  # noqa: E402


def truth_completeness(snr: np.ndarray, found: np.ndarray, edges: np.ndarray):
    """Found / all true sources per bin of true peak SNR, with Wilson 1-sigma intervals."""
    from cianna_jax.astro.injection import wilson_interval

    b = np.digitize(snr, edges) - 1
    n = np.array([np.count_nonzero(b == i) for i in range(edges.size - 1)])
    k = np.array([np.count_nonzero((b == i) & found) for i in range(edges.size - 1)])
    lo, hi = wilson_interval(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return n, k / n, lo, hi


def near_true(det_x, det_y, tr_x, tr_y, radius: float) -> np.ndarray:
    """Whether each detection has a true source within ``radius`` pixels."""
    from scipy.spatial import cKDTree

    if len(tr_x) == 0 or len(det_x) == 0:
        return np.zeros(len(det_x), bool)
    d, _ = cKDTree(np.stack([tr_x, tr_y], 1)).query(np.stack([det_x, det_y], 1))
    return d <= radius


def pybdsf_positions(fits_path: str, thresh_pix: float) -> np.ndarray:
    """PyBDSF's sources (thresh_isl 3, ``thresh_pix``) as pixel positions ``[n, 2]``."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pybdsf_compare import pybdsf_table

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.sky import sky_to_pixel

    t, _ = pybdsf_table(fits_path, 3.0, thresh_pix)
    with open_image(fits_path) as img:
        x, y = sky_to_pixel(img.wcs, np.asarray(t["ra"]), np.asarray(t["dec"]))
    return np.stack([x, y], 1)


def pybdsf_injection(res, image: str, tmp: str, thresh_pix: float):
    """PyBDSF's completeness on the first round's injected sources: PyBDSF run on the
    image and on the injected image, matched as the detector's runs are."""
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.injection import match_round, score_injection
    from cianna_jax.astro.residual import write_injected

    path = os.path.join(tmp, "injected.fits")
    with open_image(image) as img:
        write_injected(img.with_sources(res.sources[0]), path)
    first = np.asarray(res.table["round"]) == 1
    t = res.table[first]
    xy = np.stack([np.asarray(t["x"]), np.asarray(t["y"])], 1)
    fwhm = res.settings["beam_fwhm_pixels"]
    own, run = pybdsf_positions(image, thresh_pix), pybdsf_positions(path, thresh_pix)
    rm = match_round(xy, np.full(len(xy), fwhm), own, run, fwhm)
    n_sp = np.bincount(rm.spurious_source[rm.spurious_source >= 0], minlength=len(xy))
    return score_injection(np.asarray(t["snr_in"]), ~rm.near_source, rm.found_row >= 0,
                           np.ones(len(xy)), np.zeros(len(xy)), n_sp), len(own)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--snr-range", type=float, nargs=2, default=(2.0, 50.0))
    p.add_argument("--size-range", type=float, nargs=2, default=None,
                   help="intrinsic FWHM sizes (arcsec) of the injected sources")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="the injection's report folder (and figure)")
    p.add_argument("--pybdsf", action="store_true",
                   help="also PyBDSF (thresh_pix 5 and 4) on the first round's injected image")
    a = p.parse_args()
    xla_cpu.tune()
    from cianna_jax.astro.completeness import (
        format_completeness,
        measure_completeness,
        write_injection_report,
    )
    from cianna_jax.astro.injection import score_injection
    from cianna_jax.astro.validate import validate

    t0 = time.perf_counter()
    res = measure_completeness(a.image, a.model, n_sources=a.sources, snr_range=a.snr_range,
                               size_range=a.size_range, seed=a.seed, progress=False)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rep = validate(a.image, a.model, a.truth, tmp, plots=False, progress=False,
                       log=lambda *_: None)
    tr, m = rep.truth, rep.match
    sc = res.scores
    found = m.truth_to_det >= 0
    point = np.asarray(tr.table["kind"]) == 0 if "kind" in tr.table.colnames else None
    n_all, c_all, lo_all, hi_all = truth_completeness(tr.snr, found, sc.edges)
    lo, hi = sc.interval
    print(format_completeness(res))
    print(f"\ninjection {t1 - t0:.1f} s ({res.timings}); truth: {len(tr.x)} true sources, "
          f"{len(rep.table)} detections")
    head = "SNR bin        injected: n  complete [1-sigma]    truth, all: n  complete [1-sigma]"
    if point is not None:
        n_pt, c_pt, lo_pt, hi_pt = truth_completeness(tr.snr[point], found[point], sc.edges)
        head += "    truth, point: n  complete [1-sigma]"
    print(head)
    for i in range(sc.n.size):
        row = (f"{sc.edges[i]:>5g} - {sc.edges[i + 1]:<6g} {sc.n[i]:>6d}  {sc.completeness[i]:.3f} "
               f"[{lo[i]:.3f}, {hi[i]:.3f}]     {n_all[i]:>6d}  {c_all[i]:.3f} [{lo_all[i]:.3f}, "
               f"{hi_all[i]:.3f}]")
        if point is not None:
            row += f"     {n_pt[i]:>6d}  {c_pt[i]:.3f} [{lo_pt[i]:.3f}, {hi_pt[i]:.3f}]"
        print(row)
    fwhm = res.settings["beam_fwhm_pixels"]
    det = rep.table
    unmatched = m.det_to_truth < 0
    bright = tr.snr >= 5.0
    close = near_true(np.asarray(det["x"]), np.asarray(det["y"]), tr.x[bright], tr.y[bright],
                      3 * fwhm)
    print(f"false detections (no true match): {int(unmatched.sum())}, of which "
          f"{int((unmatched & close).sum())} within 3 FWHM of a true source of SNR >= 5; the "
          f"injection expects {res.expected_spurious():.1f} of the detector's own errors "
          "around sources")
    if a.pybdsf:
        with tempfile.TemporaryDirectory() as tmp:
            bd = {tp: pybdsf_injection(res, a.image, tmp, tp) for tp in (5.0, 4.0)}
        first = np.asarray(res.table["round"]) == 1
        ours = score_injection(np.asarray(res.table["snr_in"])[first],
                               ~np.asarray(res.table["near_source"])[first],
                               np.asarray(res.table["found"])[first], np.ones(first.sum()),
                               np.zeros(first.sum()), np.asarray(res.table["n_spurious"])[first])
        print("\nround 1's injected sources, completeness: cianna_jax / PyBDSF thresh_pix 5 / 4")
        for i in range(sc.n.size):
            if ours.n[i]:
                print(f"{sc.edges[i]:>5g} - {sc.edges[i + 1]:<6g} {ours.n[i]:>6d}  "
                      f"{ours.completeness[i]:.3f}  {bd[5.0][0].completeness[i]:.3f}  "
                      f"{bd[4.0][0].completeness[i]:.3f}")
        for name, s_ in (("cianna_jax", ours), ("PyBDSF 5", bd[5.0][0]), ("PyBDSF 4", bd[4.0][0])):
            print(f"{name}: 50% at SNR {s_.at_completeness(0.5):.2f}, 90% at "
                  f"{s_.at_completeness(0.9):.2f}; new detections around the sources "
                  f"{int(s_.n_spurious.sum())}")
        print(f"PyBDSF's own sources on the image: {bd[5.0][1]} (5), {bd[4.0][1]} (4)")
    if a.out:
        from cianna_jax.astro.plots import injection_plot, save_figure

        write_injection_report(res, a.out)
        fig = injection_plot(sc, res.by_flux, truth=(sc.edges, c_all if point is None else c_pt),
                             title="Source injection against the truth")
        save_figure(fig, os.path.join(a.out, "completeness_truth.png"))
        print(f"figures in {a.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
