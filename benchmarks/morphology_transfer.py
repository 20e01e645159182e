"""A morphology classifier trained on simulations, applied to another survey's sampling and
sizes, and fine-tuned there with a few labelled sources.

    python benchmarks/morphology_transfer.py [--labels 15] [--seed 30] [--epochs 30]

Source domain: two simulated 2048x2048 fields (``cianna-jax simulate --morphologies``: 4
pixels per beam, radio galaxies of 3-10 beams), a classifier trained on them (30 epochs).
Target domain: fields of 2.5 pixels per beam, radio galaxies of 5-15 beams, fluxes 10-100
times the noise. Printed, the accuracy on a target test field of: the source classifier as
it is; the same fine-tuned (``classify train --init-from``, 10 epochs at a quarter of the
learning rate) on ``--labels`` sources per class of another target field; a classifier trained
from scratch on those labelled sources alone (30 epochs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGET = dict(beam_pixels=2.5, las_beams=(5.0, 15.0), snr_range=(10.0, 100.0))


def field(folder: str, name: str, seed: int, size: int = 2048, sources: int = 500,
          **kw) -> tuple[str, str]:
    """Write one simulated field and its truth; their paths."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.morphology_sim import morphology_field, write_morphology_field

    f = morphology_field(size, n_sources=sources, seed=seed, noise=1e-4, **kw)
    img, cat = os.path.join(folder, f"{name}.fits"), os.path.join(folder, f"{name}.ecsv")
    write_morphology_field(img, f)
    write_catalogue(f.truth_table(), cat)
    return img, cat


def few_labels(cat: str, per_class: int, seed: int, out: str) -> str:
    """``per_class`` rows of each class of ``cat``, written to ``out``."""
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue

    t = read_catalogue(cat)
    names = np.asarray(t["morphology"]).astype(str)
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.permutation(np.flatnonzero(names == c))[:per_class]
                           for c in np.unique(names)])
    write_catalogue(t[np.sort(rows)], out)
    return out


def accuracy(model_dir: str, img: str, cat: str) -> float:
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.morphology import load_classifier
    from cianna_jax.astro.morphology_apply import classify_sources

    truth = read_catalogue(cat)
    out = classify_sources(load_classifier(model_dir), img, truth, priors=None)
    return float(np.mean(np.asarray(out["morph_class"]).astype(str)
                         == np.asarray(truth["morphology"]).astype(str)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=15, help="labelled target sources per class")
    ap.add_argument("--seed", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=30,
                    help="the source and from-scratch classifiers' epochs (the fine-tuning "
                         "a third of them)")
    ap.add_argument("--folds", type=int, default=0,
                    help="also a cross-validation of the classifier trained on the labels "
                         "alone: how well it foretells the test field's accuracy")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sources", type=int, default=500)
    args = ap.parse_args(argv)
    geo = dict(size=args.size, sources=args.sources)
    from cianna_jax.astro.morphology_training import ClassifierSettings, train_classifier

    quiet = dict(progress=False, figure=False, log=lambda m: None)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        src = [field(tmp, f"src{k}", args.seed + k, **geo) for k in range(2)]
        tgt_train = field(tmp, "tgt_train", args.seed + 10, **geo, **TARGET)
        tgt_test = field(tmp, "tgt_test", args.seed + 11, **geo, **TARGET)
        base = os.path.join(tmp, "base")
        train_classifier([s[0] for s in src], [s[1] for s in src], "morphology", base,
                         settings=ClassifierSettings(epochs=args.epochs, seed=args.seed),
                         **quiet)
        labelled = few_labels(tgt_train[1], args.labels, args.seed,
                              os.path.join(tmp, "labelled.ecsv"))
        tuned, scratch = os.path.join(tmp, "tuned"), os.path.join(tmp, "scratch")
        train_classifier([tgt_train[0]], [labelled], "morphology", tuned, init_from=base,
                         settings=ClassifierSettings(epochs=max(1, args.epochs // 3),
                                                     learning_rate=5e-4,
                                                     seed=args.seed), **quiet)
        res = train_classifier([tgt_train[0]], [labelled], "morphology", scratch,
                               settings=ClassifierSettings(epochs=args.epochs, seed=args.seed,
                                                           folds=args.folds), **quiet)
        acc = {name: accuracy(d, *tgt_test) for name, d in
               (("source classifier as it is", base), ("fine-tuned", tuned),
                ("from scratch on the labels", scratch))}
        acc_src = accuracy(base, *field(tmp, "src_test", args.seed + 5, **geo))
    print(f"target: {TARGET['beam_pixels']:g} pixels a beam, radio galaxies of "
          f"{TARGET['las_beams'][0]:g}-{TARGET['las_beams'][1]:g} beams, SNR "
          f"{TARGET['snr_range'][0]:g}-{TARGET['snr_range'][1]:g}; {args.labels} labelled "
          f"sources a class ({time.time() - t0:.0f} s)")
    print(f"  source classifier on a source-domain test field: {acc_src:.3f}")
    for name, a in acc.items():
        print(f"  {name:<28} {a:.3f}")
    cv = res.cross_validation
    if cv is not None:
        print(f"  the labels' own {cv['folds']}-fold cross-validation of the last: accuracy "
              f"{cv['accuracy_mean']:.3f} +- {cv['accuracy_std']:.3f} (folds "
              + ", ".join(f"{a:.2f}" for a in cv["accuracy"]) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
