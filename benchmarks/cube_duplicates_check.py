"""A cube's duplicate detections merged by the product's rule against the previous one, on
held-out simulated cubes: the same detections, measured once, kept by either rule.

    python benchmarks/cube_duplicates_check.py [--epochs 60] [--patches 512] [--quick]

The rule (:func:`cianna_jax.astro.duplicates.line_owners`, since 2026-12-07): two
detections are one galaxy when their sky centres are closer than the sum of their FWHMs
and their lines overlap in channel; the one of larger line flux is kept, and since the
fifty-sixth session measured again over the envelope of the merged boxes
(:func:`~cianna_jax.astro.duplicates.union_boxes`). The previous rule: the same merge, the
kept part measured alone (its own box). A detector boxes the parts of a rotating disc
several beams wide that emit at different velocities, and each horn of a double-horned
line; a part alone measures part of the galaxy's flux.

Two detectors are trained (``cianna-jax train``'s ``train_detector``) on 96 x 256 x 256
cubes of ``simulate --cube``: rotating discs and Gaussian lines (seed 4, density 0.001,
the README's cube example); each is scored (``validate``, lines of SNR >= 5) on three
held-out cubes of its kind, the discs' model also on three cubes of large discs (FWHM 3-20
pixels, brighter: the kind a nearby survey holds). ``--quick``: 48 x 64 x 64 cubes, 16-pixel patches, two
epochs, one cube of discs and one of large discs (the test suite's smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: the discs' beam-convolved FWHM (pixels) counted as wide: boxes of 25 pixels and more
WIDE = 12.0

#: (name, disc kind of the held-out cubes, their seeds)
SETS = (("discs", "discs", (5, 16, 17)), ("large discs", "large", (7, 8, 9)),
        ("Gaussian lines", "lines", (5, 6, 7)))


def previous_rule(m, score: np.ndarray, beam_sigma: float) -> np.ndarray:
    """The merge before the fifty-sixth session: the product's (:func:`line_owners`), the
    kept part measured alone (its own box, as the detections were measured)."""
    from cianna_jax.astro.duplicates import unique_lines

    return unique_lines(m, score, beam_sigma)


def write_cube(folder: str, name: str, kind: str, seed: int, size: tuple[int, int, int]):
    """A simulated cube and its truth (``simulate --cube``'s, or large bright discs)."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic_cube import cube_truth_table, synthetic_cube, write_cube_fits

    kw = {"discs": kind != "lines"}
    if kind == "large":
        kw.update(disc_size_range=(3.0, 20.0), snr_range=(3000.0, 60000.0), density=0.0004)
    else:
        kw["density"] = 0.001
    sc = synthetic_cube(size, seed=seed, noise=1e-5, **kw)
    path = os.path.join(folder, f"{name}.fits")
    write_cube_fits(path, sc)
    write_catalogue(cube_truth_table(sc), os.path.join(folder, f"{name}.ecsv"))
    return path, os.path.join(folder, f"{name}.ecsv")


def previous_catalogue(path: str, model: str, out: str) -> int:
    """The product's catalogue of ``path`` with the previous merge instead; its length."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.measure import FWHM
    from cianna_jax.astro.model_card import load_model
    from cianna_jax.astro.pipeline import find_sources

    res = find_sources(path, model, merge=False, progress=False)
    with open_image(path) as img:
        bs = img.beam.fwhm_pixels(img.pixel_scale) / FWHM
    keep = previous_rule(res.measurements,
                         res.detections.boxes.score(load_model(model).card.score), bs)
    table = res.table[keep]
    table["id"] = np.arange(1, len(table) + 1)
    write_catalogue(table, out)
    return len(table)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--patches", type=int, default=512)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from cianna_jax.astro.trainer import TrainSettings, train_detector
    from cianna_jax.astro.validate import validate

    warnings.simplefilter("ignore")
    size = (48, 64, 64) if args.quick else (96, 256, 256)
    small = dict(patch=16, patch_channels=16, noise_box=32) if args.quick else {}
    sets = tuple((n, k, s[:1]) for n, k, s in SETS[:2]) if args.quick else SETS
    epochs, patches = (2, 32) if args.quick else (args.epochs, args.patches)
    rows, large = [], []
    with tempfile.TemporaryDirectory() as d:
        models = {}
        for kind in {"lines" if k == "lines" else "discs": None for _, k, _ in sets}:
            img, cat = write_cube(d, f"train_{kind}", kind, 4, size)
            out = os.path.join(d, f"run_{kind}")
            train_detector(TrainSettings(image=img, catalogue=cat, out=out, epochs=epochs,
                                         patches_per_epoch=patches, batch_size=8, seed=1,
                                         **small),
                           log=lambda *a: None, progress=False)
            models[kind] = os.path.join(out, "best.json")
        for name, kind, seeds in sets:
            model = models["lines" if kind == "lines" else "discs"]
            for seed in seeds:
                img, cat = write_cube(d, f"{kind}{seed}", kind, seed, size)
                prev = os.path.join(d, f"{kind}{seed}_previous.ecsv")
                previous_catalogue(img, model, prev)
                rep = validate(img, model, cat, os.path.join(d, "rep"), plots=False,
                               progress=False, log=lambda *a: None,
                               compare={"previous": prev})
                with open(os.path.join(d, "rep", "scores.json")) as fh:
                    other = json.load(fh)["compare"]["previous"]["scores"]
                rows.append((name, seed, rep.scores.summary(), other))
                if kind == "large":
                    large.append(wide_discs(os.path.join(d, "rep"), prev, pixel_scale=2.8))
    print(f"{'':<22}{'this rule':^41}  {'previous rule':^41}")
    print(f"{'cubes':<16}{'seed':>6}"
          + f"{'n_det':>6}{'P':>7}{'R':>7}{'F1':>7}{'flux':>7}{'scat':>7}  " * 2)
    for name, seed, s, o in rows:
        print(f"{name:<16}{seed:>6}" + "".join(
            f"{r['n_det']:>6}{r['precision'] or 0:>7.3f}{r['recall'] or 0:>7.3f}"
            f"{r['f1'] or 0:>7.3f}{_num(r['flux_ratio']):>7.3f}"
            f"{_num(r['flux_ratio_scatter']):>7.3f}  " for r in (s, o)))
    for name, _, _ in sets:
        f1 = [s["f1"] for n, _, s, _ in rows if n == name]
        f0 = [o["f1"] for n, _, _, o in rows if n == name]
        print(f"{name}: mean F1 {np.nanmean(f1):.3f} (previous rule {np.nanmean(f0):.3f})")
    print("flux: median line flux ratio (measured / true) of the matched lines; scat: its "
          "scatter (validate's flux_ratio_scatter)")
    if large:
        n, found, ratio, before, snr, fwhm = (np.concatenate(v) for v in zip(*large))
        bright = snr >= 20
        if not found.any():
            print(f"discs of FWHM >= {WIDE} pixels (SNR >= 5) in the large discs' cubes: "
                  f"{n.size}, none found")
            return 0
        print(f"discs of FWHM >= {WIDE} pixels (SNR >= 5) in the large discs' cubes: "
              f"{int(found.sum())} of {n.size} found; line flux ratio median "
              f"{np.nanmedian(ratio):.2f} ({np.nanmedian(ratio[bright]):.2f} over the "
              f"{int((bright & found).sum())} of SNR >= 20), range {np.nanmin(ratio):.2f}-"
              f"{np.nanmax(ratio):.2f}; the previous rule on the same detections: median "
              f"{np.nanmedian(before):.2f}, range {np.nanmin(before):.2f}-"
              f"{np.nanmax(before):.2f}")
        print(f"{'FWHM px':>8}{'SNR':>8}{'this':>7}{'previous':>9}")
        for i in np.argsort(snr):
            if found[i]:
                print(f"{fwhm[i]:>8.1f}{snr[i]:>8.1f}{ratio[i]:>7.2f}{before[i]:>9.2f}")
    return 0


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def wide_discs(rep: str, previous: str, pixel_scale: float):
    """From a ``validate`` report folder: for the true discs of FWHM >= :data:`WIDE`
    pixels and SNR >= 5, their ids, whether found, the found ones' line flux ratios
    (measured / true) by this rule and by the previous one (the ``previous`` catalogue's
    row nearest on the sky to this rule's detection, within the disc's FWHM, whose line
    centre lies within 10 channels; NaN without one), the true SNRs and FWHMs (pixels)."""
    from cianna_jax.astro.catalogue import read_catalogue

    t = read_catalogue(os.path.join(rep, "truth_matched.ecsv"))
    det = read_catalogue(os.path.join(rep, "catalogue.ecsv"))
    old = read_catalogue(previous)
    fwhm = np.asarray(t["bmaj"], np.float64) / pixel_scale
    wide = (fwhm >= WIDE) & (np.asarray(t["snr"], np.float64) >= 5)
    t, fwhm = t[wide], fwhm[wide]
    did = np.asarray(t["det_id"], np.int64)
    found = did > 0
    row = {int(i): k for k, i in enumerate(np.asarray(det["id"], np.int64))}
    true_flux = np.asarray(t["line_flux"], np.float64)
    ratio, before = np.full(len(t), np.nan), np.full(len(t), np.nan)
    ox, oy, oz = (np.asarray(old[c], np.float64) for c in ("x", "y", "z"))
    for n, (i, w) in enumerate(zip(did, fwhm)):
        if i <= 0:
            continue
        k = row[int(i)]
        ratio[n] = float(det["line_flux"][k]) / true_flux[n]
        sep = np.hypot(ox - float(det["x"][k]), oy - float(det["y"][k]))
        sep[np.abs(oz - float(det["z"][k])) > 10] = np.inf
        if sep.size and sep.min() <= w:
            before[n] = float(old["line_flux"][int(sep.argmin())]) / true_flux[n]
    return (np.asarray(t["id"]), found, ratio, before, np.asarray(t["snr"], np.float64),
            fwhm)

if __name__ == "__main__":
    sys.exit(main())
