"""cianna_jax against PyBDSF on the same held-out synthetic SDC1-like field.

    nice python benchmarks/pybdsf_compare.py --out /tmp/pybdsf_cmp          # train, then compare
    nice python benchmarks/pybdsf_compare.py --out /tmp/pybdsf_cmp --train-seed 1   # another run
    nice python benchmarks/pybdsf_compare.py --out /tmp/pybdsf_cmp --model /tmp/pybdsf_cmp/model_0/best.json
    nice python benchmarks/pybdsf_compare.py --out /tmp/pybdsf_pb --model M --pb-fwhm 19   # a pointing

1. trains a cianna_jax YOLO detector as ``cianna-jax train`` does (default architecture)
   on ``--fields`` synthetic training fields (targets: sources of true SNR >= ``--target-snr``;
   each field's validation strip chooses the best epoch and the objectness threshold: the
   highest within one standard error of the best F1), or loads ``--model``;
2. writes a held-out field (other seed) as a FITS image in Jy/beam with WCS and beam;
3. runs ``cianna-jax predict``'s pipeline (at the card's threshold, at ``--strict``, and at
   the threshold the inverted-image test chooses for ``--target-reliability``) and PyBDSF
   (``process_image`` with its usual thresh_isl=3, thresh_pix=5, and a lower thresh_pix=4
   variant), timing each;
4. scores all with the same one-to-one matcher (radius max(beam, true size)), per SNR bin,
   and with the SDC1 scoring rules (560 MHz, whole field), and prints a side-by-side table.
Needs ``astropy`` and ``bdsf`` (pip install astropy bdsf).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cianna_jax import xla_cpu  # noqa: E402

FIELD_KW = dict(noise=1e-5, density=0.003)
#: the training fields' seeds are the run's seed plus these (the held-out field: seed + 2)
FIELD_SEED_STEP = 10


def train(out: str, *, seed: int, size: int, n_fields: int, n_patches: int, epochs: int,
          target_snr: float, train_seed: int = 0, blend_fraction: float = 0.0,
          log=print) -> str:
    """Train with ``cianna-jax train``'s trainer (the default architecture) on ``n_fields``
    synthetic fields (seeds ``seed``, ``seed + 10``, ...), each with its own validation
    strip; the card's threshold is the trainer's.  ``blend_fraction``: that share of the
    fields' sources gets a fainter companion (close pairs).  Returns the best model's card
    path."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.astro.trainer import TrainSettings, train_detector

    os.makedirs(os.path.join(out, "fields"), exist_ok=True)
    fields = []
    for k in range(n_fields):
        fs = seed + FIELD_SEED_STEP * k
        tag = f"{fs}" + (f"_pairs{blend_fraction:g}" if blend_fraction else "")
        image = os.path.join(out, "fields", f"field_{tag}.fits")
        truth = os.path.join(out, "fields", f"truth_{tag}.ecsv")
        if not (os.path.isfile(image) and os.path.isfile(truth)):
            f = synthetic_field(size, seed=fs, blend_fraction=blend_fraction, **FIELD_KW)
            write_fits(image, f)
            write_catalogue(truth_table(f), truth)
        fields.append((image, truth))
    run = os.path.join(out, f"model_{train_seed}" + (f"_pairs{blend_fraction:g}"
                                                     if blend_fraction else ""))
    settings = TrainSettings(image=fields[0][0], catalogue=fields[0][1], out=run,
                             more_fields=tuple(fields[1:]), min_snr=target_snr, epochs=epochs,
                             patches_per_epoch=n_patches, seed=train_seed)
    res = train_detector(settings, log=log, progress=False)
    log(f"trained in {res.seconds:.0f} s")
    return os.path.join(run, "best.json")


def score_table(table, truth, beam_arcsec: float, pixel_scale: float):
    """``(scores, sdc1, match)`` of a catalogue against a truth: the comparison's one-to-one
    matcher (radius max(beam, true FWHM); recall counts true SNR >= 3) and the SDC1 score
    (560 MHz, whole field; rows with a non-finite SDC1 column left out)."""
    from cianna_jax.astro.sdc1 import sdc1_score
    from cianna_jax.astro.truth import sdc1_columns
    from cianna_jax.astro.validate import match_catalogues, scores_for

    m = match_catalogues(table, truth, beam_arcsec, pixel_scale=pixel_scale)
    scores = scores_for(table, truth, m, min_truth_snr=3.0)
    sub = sdc1_columns(*(np.asarray(table[c]) for c in ("id", "ra", "dec", "flux",
                                                          "bmaj_deconv", "bmin_deconv", "pa")))
    ok = np.all([np.isfinite(v) for v in sub.values()], axis=0)
    return scores, sdc1_score({k: v[ok] for k, v in sub.items()}, truth.sdc1, 560,
                              area="all"), m


def pybdsf_table(fits_path: str, thresh_isl: float, thresh_pix: float,
                 detection_image: str | None = None):
    """Run PyBDSF (islands found on ``detection_image`` when given, as on an image that is
    not primary-beam corrected while ``fits_path`` is the corrected one); return (table in
    cianna_jax column names, seconds)."""
    import bdsf
    from astropy.table import Table

    t0 = time.perf_counter()
    kw = {"detection_image": detection_image} if detection_image else {}
    img = bdsf.process_image(fits_path, thresh_isl=thresh_isl, thresh_pix=thresh_pix, quiet=True,
                             **kw)
    seconds = time.perf_counter() - t0
    out = fits_path.replace(".fits", f"_bdsf_{thresh_pix:g}.srl.fits")
    img.write_catalog(outfile=out, format="fits", catalog_type="srl", clobber=True)
    s = Table.read(out)
    deg = 3600.0
    t = Table({"id": np.arange(1, len(s) + 1), "ra": np.mod(np.asarray(s["RA"]), 360.0),
               "dec": np.asarray(s["DEC"]), "flux": np.asarray(s["Total_flux"]),
               "snr": np.asarray(s["Peak_flux"]) / np.asarray(s["Isl_rms"]),
               "bmaj": np.asarray(s["Maj"]) * deg, "bmin": np.asarray(s["Min"]) * deg,
               "pa": np.mod(np.asarray(s["PA"]), 180.0),
               "bmaj_deconv": np.asarray(s["DC_Maj"]) * deg,
               "bmin_deconv": np.asarray(s["DC_Min"]) * deg})
    return t, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="pybdsf_compare")
    ap.add_argument("--model", default=None, help="model card to use instead of training")
    ap.add_argument("--size", type=int, default=2048, help="held-out field side (pixels)")
    ap.add_argument("--train-size", type=int, default=2048)
    ap.add_argument("--fields", type=int, default=4, help="training fields")
    ap.add_argument("--patches", type=int, default=4096, help="training patches per epoch")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--train-seed", type=int, default=0, help="the trainer's seed (weights, "
                    "patches)")
    ap.add_argument("--blend-fraction", type=float, default=0.0,
                    help="share of the sources of every field (training and held-out) with a "
                         "fainter companion 1-2.5 beams away")
    ap.add_argument("--target-snr", type=float, default=3.0)
    ap.add_argument("--pb-fwhm", type=float, default=None, metavar="ARCMIN",
                    help="the held-out field seen through a Gaussian primary beam of this FWHM "
                         "(not corrected): cianna_jax with predict --pb, PyBDSF on the "
                         "corrected image with the uncorrected one as its detection image")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--no-low", action="store_true", help="skip the thresh_pix=4 PyBDSF run")
    ap.add_argument("--strict", type=float, default=0.5,
                    help="also score cianna_jax at this stricter objectness threshold")
    ap.add_argument("--target-reliability", type=float, default=0.9,
                    help="also score cianna_jax at the threshold the inverted-image test "
                         "chooses for this reliability on the held-out field (0: not)")
    args = ap.parse_args(argv)
    xla_cpu.tune()
    warnings.simplefilter("ignore")
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.model_card import load_model, load_model_card
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.pipeline import find_sources
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.astro.validate import (
        format_side_by_side,
        load_truth,
    )

    os.makedirs(args.out, exist_ok=True)
    card = args.model
    if card is None:
        print(f"training on {args.fields} {args.train_size}^2 fields (seeds {args.seed}, "
              f"{args.seed + FIELD_SEED_STEP}, ...), {args.patches} patches per epoch, "
              f"{args.epochs} epochs, targets SNR >= {args.target_snr}, seed {args.train_seed}")
        card = train(args.out, seed=args.seed, size=args.train_size, n_fields=args.fields,
                     n_patches=args.patches, epochs=args.epochs, target_snr=args.target_snr,
                     train_seed=args.train_seed, blend_fraction=args.blend_fraction)
        print(f"objectness threshold chosen by the trainer: "
              f"{float(np.max(load_model_card(card).obj_threshold)):g}")
    model = load_model(card)
    f = synthetic_field(args.size, seed=args.seed + 2, sdc1_layout=True,
                        blend_fraction=args.blend_fraction, pb_fwhm=args.pb_fwhm, **FIELD_KW)
    fits_path = os.path.join(args.out, "heldout_field.fits")
    write_fits(fits_path, f)
    pb, corrected = None, None
    if args.pb_fwhm:  # the beam, and the corrected image PyBDSF measures on
        from dataclasses import replace

        from cianna_jax.astro.synthetic import primary_beam_map, write_primary_beam

        pb = os.path.join(args.out, "heldout_pb.fits")
        write_primary_beam(pb, f)
        corrected = os.path.join(args.out, "heldout_field_pbcor.fits")
        write_fits(corrected, replace(f, image=f.image / primary_beam_map(f)))
    truth_path = os.path.join(args.out, "heldout_truth.ecsv")
    write_catalogue(truth_table(f), truth_path)
    print(f"held-out field {args.size}x{args.size} (seed {args.seed + 2}) -> {fits_path}")

    tables, seconds = {}, {}
    find_sources(fits_path, model, progress=False)  # compile once, not timed
    t0 = time.perf_counter()
    res = find_sources(fits_path, model, progress=False, primary_beam=pb)
    thr = float(np.max(model.card.obj_threshold))
    name = f"cianna_jax {thr:g}"
    seconds[name] = time.perf_counter() - t0
    tables[name] = res.table
    print(f"{name}: {len(res.table)} sources in {seconds[name]:.1f} s "
          f"({res.timings['tiles_per_s']:.0f} tiles/s)")
    if args.strict > thr:  # the same run at a stricter threshold (same detections, filtered)
        strict = f"cianna_jax {args.strict:g}"
        tables[strict] = res.table[np.asarray(res.table["objectness"]) >= args.strict]
        seconds[strict] = seconds[name]
    if args.target_reliability > 0:  # the threshold chosen on the image itself
        t0 = time.perf_counter()
        rel = find_sources(fits_path, model, progress=False, obj_threshold=None,
                           target_reliability=args.target_reliability, primary_beam=pb)
        name = (f"cianna_jax R{args.target_reliability:g} "
                f"({rel.detections.obj_threshold:g})")
        seconds[name] = time.perf_counter() - t0
        tables[name] = rel.table
        print(f"{name}: {len(rel.table)} sources in {seconds[name]:.1f} s (threshold "
              f"{rel.detections.obj_threshold:g} chosen by the inverted-image test)")
    runs = [(3.0, 5.0)] + ([] if args.no_low else [(3.0, 4.0)])
    for isl, pix in runs:
        name = f"PyBDSF {pix:g}/{isl:g}"
        tables[name], seconds[name] = (pybdsf_table(corrected, isl, pix, fits_path)
                                       if corrected else pybdsf_table(fits_path, isl, pix))
        print(f"{name}: {len(tables[name])} sources in {seconds[name]:.1f} s")

    results, sdc1 = {}, {}
    with open_image(fits_path) as img:
        tr = load_truth(truth_path, img, estimate_noise_map(img.read, img.shape))
        for name, t in tables.items():
            results[name], sdc1[name], _ = score_table(t, tr, f.beam.bmaj, f.pixel_scale)
    text = format_side_by_side(results, sdc1, seconds)
    print("\nSame matcher for all (radius max(beam, true FWHM)); overall recall: true SNR >= 3; "
          "SDC1 score at 560 MHz over the whole field\n")
    print(text)
    with open(os.path.join(args.out, "comparison.txt"), "w") as fh:
        fh.write(text + "\n")
    try:
        from cianna_jax.astro.plots import completeness_reliability, save_figure

        save_figure(completeness_reliability({n: r.by_snr for n, r in results.items()},
                                             title="Held-out field: cianna_jax vs PyBDSF"),
                    os.path.join(args.out, "comparison.png"))
    except ImportError:
        pass
    with open(os.path.join(args.out, "comparison.json"), "w") as fh:
        json.dump({n: {**r.summary(), "seconds": seconds[n], "sdc1": sdc1[n].value,
                       "by_snr": {"edges": [float(e) for e in r.by_snr.edges],
                                  "f1": [None if np.isnan(v) else float(v) for v in r.by_snr.f1]}}
                   for n, r in results.items()}, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
