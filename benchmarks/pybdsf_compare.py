"""cianna_jax against PyBDSF on the same held-out synthetic SDC1-like field.

    nice python benchmarks/pybdsf_compare.py --out /tmp/pybdsf_cmp          # train, then compare
    nice python benchmarks/pybdsf_compare.py --out /tmp/pybdsf_cmp --model /tmp/pybdsf_cmp/model/yolo_net.json

1. trains a small cianna_jax YOLO detector (or loads ``--model``) on a synthetic training
   field (targets: sources of true peak SNR >= ``--target-snr``), picks its objectness
   threshold on a separate validation field (best F1 counting true sources of SNR >= 3);
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

PATCH, CELL = 64, 8
PRIORS = np.array([[8.0, 20.0], [8.0, 20.0]], np.float32)
FIELD_KW = dict(noise=1e-5, density=0.003)


def build_network(max_obj: int):
    from cianna_jax import nn
    from cianna_jax.network import make_network
    from cianna_jax.yolo.config import make_config

    cfg = make_config((PATCH, PATCH, 1), (PATCH // CELL, PATCH // CELL, 1), nb_box=2, nb_class=0,
                      max_nb_obj_per_image=max_obj, prior_size=PRIORS, IoU_type="DIoU",
                      prior_dist_type="SIZE", rand_startup=0,
                      error_scales=np.array([2, 2, 1, 2, 1, 1], np.float32))
    layers = [nn.conv([3, 3], 16, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 32, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 48, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 48, padding=[1, 1]),
              nn.conv([1, 1], cfg.nb_filters, activation="YOLO")]
    return make_network((PATCH, PATCH, 1, 1), layers, 0.1, cfg)


def train(out: str, *, seed: int, size: int, n_patches: int, epochs: int, target_snr: float,
          log=print) -> str:
    """Train on a synthetic field; write ``out/yolo_net.dat`` and its card; return the card path."""
    import jax

    from cianna_jax import training
    from cianna_jax.astro.model_card import ModelCard, Normalisation, save_model_card
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.synthetic import synthetic_field
    from cianna_jax.datasets import radio_sky as rs
    from cianna_jax.io.network_file import save_network
    from cianna_jax.network import init_params, rows_to_images

    f = synthetic_field(size, seed=seed, **FIELD_KW)
    img = f.image
    noise = estimate_noise_map(lambda w: img[w], img.shape, box=128)
    norm = Normalisation(kind="snr", mode="tanh")
    x_all = norm.apply(img, noise.window(slice(None), slice(None)))
    # catalogue peaks are per pixel of the flux-per-pixel field: noise per pixel is noise / beam
    beam_pix = f.beam.area_pixels(f.pixel_scale)
    p = rs.patches(x_all, f.catalogue, PATCH, n=n_patches, seed=seed + 1,
                   min_flux_sigma=target_snr, noise_rms=f.noise / beam_pix)
    max_obj = 32
    x = p.images.reshape(len(p.images), -1).astype(np.float32)
    t = np.stack([rs.cianna_targets(rs.boxes_from_catalogue(c, min_size=6.0, max_size=32.0),
                                    max_obj, priority=c.flux) for c in p.catalogues])
    net = build_network(max_obj)
    key = jax.random.key(seed)
    params = init_params(key, net)
    opt = training.make_optimizer(0.01, 0.9, masks=lambda prm: training.cianna_masks(net, prm))
    state = opt.init(params)
    xi = rows_to_images(net, x)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        params, state, total = training.train_epoch(net, opt, params, state, xi, t.astype(np.float32),
                                                    16, jax.random.fold_in(key, epoch),
                                                    nb_im_iter=epoch * len(x))
        if epoch % 5 == 0 or epoch == 1:
            log(f"  epoch {epoch}/{epochs}: mean loss {float(total) / len(x):.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
    os.makedirs(out, exist_ok=True)
    save_network(os.path.join(out, "yolo_net.dat"), net, params, binary=True)
    card = ModelCard(network="yolo_net.dat", tile=(PATCH, PATCH), overlap=(PATCH // 4, PATCH // 4),
                     batch_size=64, normalisation=norm, obj_threshold=0.3, nms_threshold=0.1,
                     box_scale=2.0, notes={"trained_by": "benchmarks/pybdsf_compare.py",
                                           "targets": f"true peak SNR >= {target_snr}",
                                           "field": f"{size}x{size} seed {seed}",
                                           "patches": n_patches, "epochs": epochs})
    path = os.path.join(out, "yolo_net.json")
    save_model_card(path, card)
    return path


def pybdsf_table(fits_path: str, thresh_isl: float, thresh_pix: float):
    """Run PyBDSF; return (table in cianna_jax column names, seconds)."""
    import bdsf
    from astropy.table import Table

    t0 = time.perf_counter()
    img = bdsf.process_image(fits_path, thresh_isl=thresh_isl, thresh_pix=thresh_pix, quiet=True)
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


def choose_threshold(card_path: str, out: str, seed: int, size: int, log=print) -> float:
    """Objectness threshold with the best F1 (true sources of SNR >= 3) on a validation field."""
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.pipeline import find_sources
    from cianna_jax.astro.synthetic import synthetic_field, write_fits
    from cianna_jax.astro.validate import load_truth, match_catalogues, scores_for

    f = synthetic_field(size, seed=seed, **FIELD_KW)
    path = os.path.join(out, "validation_field.fits")
    write_fits(path, f)
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape)
        from cianna_jax.astro.catalogue import write_catalogue
        from cianna_jax.astro.synthetic import truth_table

        tp = os.path.join(out, "validation_truth.ecsv")
        write_catalogue(truth_table(f), tp)
        tr = load_truth(tp, img, noise)
        res = find_sources(img, card_path, obj_threshold=0.05, progress=False, noise=noise)
    best = (-1.0, 0.3)
    for thr in np.arange(0.1, 0.91, 0.05):
        det = res.table[np.asarray(res.table["objectness"]) >= thr]
        m = match_catalogues(det, tr, f.beam.bmaj, pixel_scale=f.pixel_scale)
        s = scores_for(det, tr, m, min_truth_snr=3.0)
        log(f"  threshold {thr:.2f}: precision {s.precision:.3f} recall {s.recall:.3f} F1 {s.f1:.3f}")
        if s.f1 > best[0]:
            best = (s.f1, float(round(thr, 2)))
    return best[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="pybdsf_compare")
    ap.add_argument("--model", default=None, help="model card to use instead of training")
    ap.add_argument("--size", type=int, default=2048, help="held-out field side (pixels)")
    ap.add_argument("--train-size", type=int, default=2048)
    ap.add_argument("--patches", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--target-snr", type=float, default=3.0)
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
    from cianna_jax.astro.sdc1 import sdc1_score
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.astro.validate import (
        format_side_by_side,
        load_truth,
        match_catalogues,
        scores_for,
        sdc1_columns,
    )

    os.makedirs(args.out, exist_ok=True)
    card = args.model
    if card is None:
        print(f"training on a {args.train_size}^2 field (seed {args.seed}), {args.patches} patches, "
              f"{args.epochs} epochs, targets SNR >= {args.target_snr}")
        card = train(os.path.join(args.out, "model"), seed=args.seed, size=args.train_size,
                     n_patches=args.patches, epochs=args.epochs, target_snr=args.target_snr)
        thr = choose_threshold(card, args.out, args.seed + 1, 1024)
        from dataclasses import replace

        from cianna_jax.astro.model_card import save_model_card

        save_model_card(card, replace(load_model_card(card), obj_threshold=thr))
        print(f"objectness threshold chosen on the validation field: {thr}")
    model = load_model(card)
    f = synthetic_field(args.size, seed=args.seed + 2, sdc1_layout=True, **FIELD_KW)
    fits_path = os.path.join(args.out, "heldout_field.fits")
    write_fits(fits_path, f)
    truth_path = os.path.join(args.out, "heldout_truth.ecsv")
    write_catalogue(truth_table(f), truth_path)
    print(f"held-out field {args.size}x{args.size} (seed {args.seed + 2}) -> {fits_path}")

    tables, seconds = {}, {}
    find_sources(fits_path, model, progress=False)  # compile once, not timed
    t0 = time.perf_counter()
    res = find_sources(fits_path, model, progress=False)
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
                           target_reliability=args.target_reliability)
        name = (f"cianna_jax R{args.target_reliability:g} "
                f"({rel.detections.obj_threshold:g})")
        seconds[name] = time.perf_counter() - t0
        tables[name] = rel.table
        print(f"{name}: {len(rel.table)} sources in {seconds[name]:.1f} s (threshold "
              f"{rel.detections.obj_threshold:g} chosen by the inverted-image test)")
    runs = [(3.0, 5.0)] + ([] if args.no_low else [(3.0, 4.0)])
    for isl, pix in runs:
        name = f"PyBDSF {pix:g}/{isl:g}"
        tables[name], seconds[name] = pybdsf_table(fits_path, isl, pix)
        print(f"{name}: {len(tables[name])} sources in {seconds[name]:.1f} s")

    results, sdc1 = {}, {}
    with open_image(fits_path) as img:
        tr = load_truth(truth_path, img, estimate_noise_map(img.read, img.shape))
        for name, t in tables.items():
            m = match_catalogues(t, tr, f.beam.bmaj, pixel_scale=f.pixel_scale)
            results[name] = scores_for(t, tr, m, min_truth_snr=3.0)
            sub = sdc1_columns(np.asarray(t["id"]), np.asarray(t["ra"]), np.asarray(t["dec"]),
                               np.asarray(t["flux"]), np.asarray(t["bmaj_deconv"]),
                               np.asarray(t["bmin_deconv"]), np.asarray(t["pa"]))
            ok = np.all([np.isfinite(v) for v in sub.values()], axis=0)
            sdc1[name] = sdc1_score({k: v[ok] for k, v in sub.items()}, tr.sdc1, 560, area="all")
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
