"""A detector that classifies (``cianna-jax train --class-column``) against the morphology
classifier (``cianna-jax classify``) on the same detections.

    python benchmarks/detector_classes_check.py [--size 2048] [--sources 600] [--epochs 60]
                                                [--classifier-epochs 30] [--seed 10]
                                                [--fractions C S F1 F2] [--balance]
                                                [--unclassified F [--drop-unclassified]]

Simulated fields (``cianna-jax simulate --morphologies``: compact sources, star-forming
galaxies, FR I and FR II radio galaxies of 3-10 beams, fluxes 10-300 times the noise):
two to train on, a third to test.  The detector (default architecture, 64-pixel patches)
learns each source's box (its largest angular size plus a beam, square: the simulation
keeps no orientation) and class; on the test field it runs as ``predict`` with close
sources left whole (``--max-peaks 1``: an FR II's lobes are one source) and ``val``
scores its classes over the matched sources.  The classifier, trained on the same
fields, classifies the same detections at their measured positions.  Printed: detection
precision and recall, then for each the accuracy, balanced accuracy and recall per class
over the same matched sources, and the wall times.  ``--fractions``: the classes' shares
in every field (a population where radio galaxies are rare); ``--balance``: the detector
trained with ``--balance-classes``; ``--unclassified F``: a fraction F of the training
catalogues' sources without a class (blank: their boxes train, their classes do not; with
``--drop-unclassified`` they are left out of the catalogues instead, as a catalogue of the
classified sources only), for both the detector and the classifier.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from morphology_check import simulate  # noqa: E402

BEAM_ARCSEC = 6.0  # the simulated fields' beam (4 pixels of 1.5 arcsec)


def with_sizes(path: str) -> str:
    """The truth with ``bmaj = bmin`` half its LAS plus half a beam (so that a box, twice
    the size, spans the source and a beam), written beside it."""
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue

    t = read_catalogue(path)
    size = 0.5 * (np.asarray(t["las"], np.float64) + BEAM_ARCSEC)
    t["bmaj"], t["bmin"], t["pa"] = size, size, np.zeros(len(t))
    t["bmaj"].unit = t["bmin"].unit = "arcsec"
    t["pa"].unit = "deg"
    out = path.replace(".ecsv", "_sized.ecsv")
    write_catalogue(t, out)
    return out


def unclassify(path: str, fraction: float, drop: bool, seed: int) -> str:
    """The catalogue with a random ``fraction`` of its sources' classes blanked (or, with
    ``drop``, those sources left out), written beside it."""
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue

    t = read_catalogue(path)
    hit = np.random.default_rng(seed).random(len(t)) < fraction
    if drop:
        t = t[~hit]
    else:
        t["morphology"] = np.where(hit, "", np.asarray(t["morphology"]).astype(str))
    out = path.replace(".ecsv", "_part.ecsv")
    write_catalogue(t, out)
    return out


def num(v) -> float:
    """A score from scores.json (NaN written as null)."""
    return float("nan") if v is None else float(v)


def recall_text(cm: np.ndarray, names: list[str]) -> str:
    cm = np.asarray(cm, np.float64)
    rec = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    return ", ".join(f"{n} {r:.2f} ({int(cm[i].sum())})" for i, (n, r) in enumerate(zip(names, rec)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sources", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=60, help="the detector's")
    ap.add_argument("--patches", type=int, default=1024, help="the detector's per epoch")
    ap.add_argument("--classifier-epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--fractions", type=float, nargs=4, default=[0.25] * 4,
                    metavar=("COMPACT", "SFG", "FR1", "FR2"))
    ap.add_argument("--balance", action="store_true",
                    help="the detector's positives balanced over the classes")
    ap.add_argument("--unclassified", type=float, default=0.0,
                    help="the training sources' fraction without a class")
    ap.add_argument("--drop-unclassified", action="store_true",
                    help="those sources left out of the training catalogues")
    args = ap.parse_args(argv)
    if not 0.0 <= args.unclassified < 1.0:
        ap.error("--unclassified: a fraction in [0, 1)")
    from cianna_jax.astro.morphology import class_scores, confusion_matrix, load_classifier
    from cianna_jax.astro.morphology_apply import classify_sources
    from cianna_jax.astro.morphology_training import ClassifierSettings, train_classifier
    from cianna_jax.astro.probability_calibration import expected_calibration_error
    from cianna_jax.astro.trainer import TrainSettings, train_detector
    from cianna_jax.astro.validate import validate

    # the simulated fields lie on the same sky (one WCS): the trainer's warning that one
    # field's validation strip is another's training area on the sky does not apply
    warnings.filterwarnings("ignore", message=".*of its validation strip lies on the sky")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = [args.seed, args.seed + 1, args.seed + 2]
        fields = simulate(tmp, args.size, args.sources, seeds, tuple(args.fractions))
        sized = [(img, with_sizes(cat)) for img, cat in fields]
        (img1, cat1), (img2, cat2), (test_img, test_cat) = sized
        if args.unclassified > 0:
            cat1, cat2 = (unclassify(c, args.unclassified, args.drop_unclassified, args.seed + k)
                          for k, c in enumerate((cat1, cat2)))
        t1 = time.time()
        res = train_detector(TrainSettings(
            image=img1, catalogue=cat1, more_fields=((img2, cat2),), out=os.path.join(tmp, "det"),
            epochs=args.epochs, patches_per_epoch=args.patches, seed=args.seed,
            class_column="morphology", balance_classes=args.balance), log=lambda m: None,
            progress=False)
        t2 = time.time()
        rep = validate(test_img, os.path.join(tmp, "det", "best.json"), test_cat,
                       os.path.join(tmp, "val"), plots=False, progress=False, max_peaks=1,
                       log=lambda m: None)
        t3 = time.time()
        summary = json.load(open(os.path.join(tmp, "val", "scores.json")))
        cls = summary["classes"]
        names = cls["classes"]
        det = rep.table
        pairs = np.flatnonzero(rep.match.det_to_truth >= 0)
        want = np.asarray(rep.truth.table["morphology"]).astype(str)
        card = json.load(open(os.path.join(tmp, "det", "best.json")))
        temperature = card["detection"]["class_temperature"]
        tempered_p = np.stack([np.asarray(det[f"det_p_{n}"], np.float64)[pairs] for n in names],
                              axis=1)
        raw = tempered_p ** temperature  # the network's own probabilities
        raw /= raw.sum(axis=1, keepdims=True)
        truth_k = np.array([names.index(v) for v in want[rep.match.det_to_truth[pairs]]])
        ece = (expected_calibration_error(tempered_p, truth_k),
               expected_calibration_error(raw, truth_k))

        cres = train_classifier([img1, img2], [cat1, cat2], "morphology",
                                os.path.join(tmp, "clf"), progress=False, figure=False,
                                settings=ClassifierSettings(epochs=args.classifier_epochs),
                                log=lambda m: None)
        t4 = time.time()
        model = load_classifier(os.path.join(tmp, "clf"))
        found = det[pairs]
        out = classify_sources(model, test_img, found)
        true_k = np.array([names.index(v) for v in want[rep.match.det_to_truth[pairs]]])
        got = np.asarray(out["morph_class"]).astype(str)
        ok = np.isin(got, names)
        cm_clf = confusion_matrix(true_k[ok], np.array([names.index(v) for v in got[ok]]),
                                  len(names))
        sc_clf = class_scores(cm_clf)
        t5 = time.time()
    s = rep.scores
    print(f"fields {args.size}x{args.size}, ~{args.sources} sources each (seeds {seeds}; "
          f"shares {' '.join(f'{v:g}' for v in args.fractions)}"
          + (", balanced positives" if args.balance else "")
          + (f", {args.unclassified:.0%} of the training sources "
             + ("left out" if args.drop_unclassified else "without a class")
             if args.unclassified > 0 else "") + "); "
          f"detector {args.epochs} epochs of {args.patches} patches, best epoch "
          f"{res.best['epoch']} (validation class accuracy {res.best['class_accuracy']:.3f})")
    print("validation class accuracy by epoch: "
          + " ".join(f"{r['class_accuracy']:.2f}" for r in res.history))
    print(f"detection on the test field: precision {s.precision:.3f}, recall {s.recall:.3f} "
          f"({s.n_truth} true sources of SNR >= 5), {len(pairs)} matched")
    print(f"detector's classes:  accuracy {num(cls['accuracy']):.3f}, balanced "
          f"{num(cls['balanced_accuracy']):.3f}; recall {recall_text(np.array(cls['confusion']), names)}")
    per = cls["per_class"]
    print("detected by true class: " + ", ".join(
        f"{n} {num(per[n]['detected']):.2f} ({per[n]['n_found']}/{per[n]['n_true']})"
        for n in names))
    print(f"the detector's class probabilities: calibration error {ece[0]:.3f} at the card's "
          f"temperature {temperature:.2f} (fitted on the validation strips), {ece[1]:.3f} "
          "untempered")
    print(f"classifier (classify, best epoch {cres.best_epoch}) on the same detections: accuracy {sc_clf['accuracy']:.3f}, balanced "
          f"{sc_clf['balanced_accuracy']:.3f}; recall {recall_text(cm_clf, names)}"
          + ("" if ok.all() else f" ({int((~ok).sum())} unclassified)"))
    print(f"times: simulate {t1 - t0:.0f} s, detector training {t2 - t1:.0f} s, val "
          f"{t3 - t2:.0f} s, classifier training {t4 - t3:.0f} s, classify {t5 - t4:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
