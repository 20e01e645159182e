"""Close sources boxed once (``astro/deblend.py``): the catalogue with and without the
split, scored against a truth.

    python benchmarks/deblend_check.py --image /tmp/pybdsf_cmp/heldout_field.fits \\
        --truth /tmp/pybdsf_cmp/heldout_truth.ecsv --model /tmp/pybdsf_cmp/model_0/best.json

The detector runs once; its boxes are measured without the split
(``measure_detections(split=False)``) and with it, into at most each of ``--max-peaks``
boxes (default 2 and 4), and each catalogue scored with the same matcher as
``pybdsf_compare.py`` (radius max(beam, true FWHM); recall counts true SNR >= 3) and the
SDC1 rules (560 MHz, whole field).  Prints the sources the split adds, precision, recall,
F1, SDC1 score and the recall per bin of true SNR for each.  ``--blend-field SEED`` first
writes a 2048x2048 (``--size``) held-out field of that seed where 30% of the sources have
a fainter companion 1 to 2.5 beams away (``synthetic_field(blend_fraction=0.3)``;
``--blend-members 2``: two companions each) and scores on it instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # pybdsf_compare

from cianna_jax import xla_cpu  # noqa: E402

SNR_BINS = ((3, 5), (5, 10), (10, 20), (20, 50), (50, np.inf))


def score(table, truth, beam_arcsec: float, pixel_scale: float) -> dict:
    """Precision, recall, F1 (true SNR >= 3), SDC1 score and recall per SNR bin
    (``pybdsf_compare.score_table``'s rules)."""
    from pybdsf_compare import score_table

    s, sc, m = score_table(table, truth, beam_arcsec, pixel_scale)
    snr, hit = np.asarray(truth.snr), m.truth_to_det >= 0
    return dict(n=len(table), precision=s.precision, recall=s.recall, f1=s.f1, sdc1=sc.value,
                recall_by_snr=[float(hit[(snr >= lo) & (snr < hi)].mean()) for lo, hi in SNR_BINS])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="FITS image (not with --blend-field)")
    ap.add_argument("--truth", help="its true catalogue (not with --blend-field)")
    ap.add_argument("--model", required=True, help="model card")
    ap.add_argument("--blend-field", type=int, default=None, metavar="SEED",
                    help="score on a simulated field with 30%% of its sources in pairs")
    ap.add_argument("--size", type=int, default=2048, help="side of a --blend-field field")
    ap.add_argument("--blend-members", type=int, default=1,
                    help="companions per blended source of a --blend-field field")
    ap.add_argument("--max-peaks", type=int, nargs="+", default=[2, 4],
                    help="split boxes into at most this many (one catalogue each)")
    ap.add_argument("--out", default="deblend_check", help="folder for a --blend-field field")
    args = ap.parse_args(argv)
    if args.blend_field is None and not (args.image and args.truth):
        ap.error("give --image and --truth, or --blend-field SEED")
    xla_cpu.tune()
    warnings.simplefilter("ignore")
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.model_card import load_model
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.pipeline import measure_detections
    from cianna_jax.astro.predict import detect
    from cianna_jax.astro.validate import load_truth

    image, truth = args.image, args.truth
    if args.blend_field is not None:
        from cianna_jax.astro.catalogue import write_catalogue
        from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

        os.makedirs(args.out, exist_ok=True)
        f = synthetic_field(args.size, seed=args.blend_field, sdc1_layout=True, noise=1e-5,
                            density=0.003, blend_fraction=0.3, blend_members=args.blend_members)
        tag = f"{args.blend_field}" + (f"_k{args.blend_members}" if args.blend_members > 1 else "")
        image = os.path.join(args.out, f"blend_field_{tag}.fits")
        truth = os.path.join(args.out, f"blend_truth_{tag}.ecsv")
        write_fits(image, f)
        write_catalogue(truth_table(f), truth)
    model = load_model(args.model)
    with open_image(image) as img:
        noise = estimate_noise_map(img.read, img.shape)
        tr = load_truth(truth, img, noise)
        det = detect(img.read, img.shape, model, noise=noise, progress=False)
        beam = img.beam.bmaj if img.beam is not None else 1.0
        runs = {"without split": measure_detections(img, model, det, noise, split=False)}
        for k in args.max_peaks:
            runs[f"split <= {k}"] = measure_detections(img, model, det, noise, split=True,
                                                       max_peaks=k)
        rows = {name: score(r.table, tr, beam, img.pixel_scale) for name, r in runs.items()}
    more = ", ".join(f"{name}: {r['n'] - rows['without split']['n']:+d}"
                     for name, r in rows.items() if name != "without split")
    print(f"{image}: {len(det.boxes)} boxes; sources against no split: {more}")
    head = " ".join(f"R{lo:g}-{hi:g}" for lo, hi in SNR_BINS)
    print(f"{'':15s} {'n':>5s} {'P':>6s} {'R':>6s} {'F1':>6s} {'SDC1':>7s}  {head}")
    for name, r in rows.items():
        rec = " ".join(f"{v:.3f}" for v in r["recall_by_snr"])
        print(f"{name:15s} {r['n']:5d} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
              f"{r['sdc1']:7.1f}  {rec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
