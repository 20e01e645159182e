"""Fine-tuning a trained detector on another kind of image (``train --init``) against
training from scratch with the same small budget, and against the model as it is.

    python benchmarks/fine_tune_check.py --model M [--epochs 3] [--patches 256]

The new kind: SDC1-like 1024x1024 fields whose beam spans 1.5 times the model's pixels
(4.5 pixels; the model was trained on 3), one field with its truth to train on, another held
out. Each detector is scored on the held-out field (``validate``, sources of SNR >= 5):
the model as it is, fine-tuned for ``--epochs`` epochs of ``--patches`` patches (learning
rate 0.002, no warm-up), trained from scratch for the same, and from scratch for five
times as long.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--patches", type=int, default=256)
    args = ap.parse_args(argv)
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.astro.trainer import TrainSettings, train_detector
    from cianna_jax.astro.validate import validate

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, seed in (("train", 301), ("test", 302)):
            f = synthetic_field(1024, seed=seed, psf_fwhm=4.5)
            write_fits(os.path.join(d, f"{name}.fits"), f)
            write_catalogue(truth_table(f), os.path.join(d, f"{name}.ecsv"))
            paths[name] = (os.path.join(d, f"{name}.fits"), os.path.join(d, f"{name}.ecsv"))

        def score(model: str) -> str:
            rep = validate(paths["test"][0], model, paths["test"][1], os.path.join(d, "rep"),
                           plots=False, progress=False, log=lambda *a: None)
            s = rep.scores
            return f"precision {s.precision:.3f}, recall {s.recall:.3f}, F1 {s.f1:.3f}"

        def train(out: str, epochs: int, **kw) -> str:
            t0 = time.perf_counter()
            img, cat = paths["train"]
            train_detector(TrainSettings(image=img, catalogue=cat, out=os.path.join(d, out),
                                         epochs=epochs, patches_per_epoch=args.patches,
                                         seed=1, **kw), log=lambda *a: None, progress=False)
            return (f"{score(os.path.join(d, out, 'best.json'))} "
                    f"({time.perf_counter() - t0:.0f} s)")

        print(f"the model as it is: {score(args.model)}")
        print(f"fine-tuned, {args.epochs} epochs: "
              f"{train('tuned', args.epochs, init=args.model, learning_rate=0.002, warmup_epochs=0)}")
        print(f"from scratch, {args.epochs} epochs: {train('fresh', args.epochs, patch=64)}")
        print(f"from scratch, {5 * args.epochs} epochs: "
              f"{train('long', 5 * args.epochs, patch=64)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
