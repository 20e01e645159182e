"""Where a ``cianna-jax train`` epoch's time goes, on a synthetic field written for the run.

Trains a detector (``--arch default`` or ``sdc1``) on a synthetic SDC1-like field (the
demo's settings: 0.6 arcsec pixels, 1.8 arcsec beam, noise rising towards the corners)
and prints, per epoch, the seconds spent in the training steps, their rate, the
validation (losses and the detector over the validation area) and the rest (waiting for
the prefetched patches, laying the weights out for the validation), as the run's
``results.csv`` records them (the models, checkpoint and figure are written after an
epoch's time is taken); then medians over the epochs after the first, whose time is
mostly compilation.

    python benchmarks/bench_train_detector.py [--arch sdc1] [--epochs 4] [--patches 64]
        [--batch 8] [--field 1024] [--mixed-precision off] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))  # the source tree, when not installed

import numpy as np  # noqa: E402

#: per-architecture defaults: (patches per epoch, batch)
DEFAULTS = {"default": (1024, 16), "sdc1": (64, 8)}


def run(arch: str, epochs: int, patches: int, batch: int, field: int,
        mixed_precision: str = "off", workdir: str | None = None) -> dict:
    """Train for ``epochs`` and return the rows of the run's history with a summary."""
    import cianna_jax.xla_cpu

    cianna_jax.xla_cpu.tune(warn=False)
    from cianna_jax.astro.trainer import TrainSettings, train_detector
    from cianna_jax.demo import DemoSettings, write_demo_fields

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        paths = write_demo_fields(tmp, DemoSettings(field, 64, 1, 1), seed=0)
        s = TrainSettings(image=paths["train_image"], catalogue=paths["train_catalogue"],
                          out=os.path.join(tmp, "run"), arch=arch, epochs=epochs,
                          patches_per_epoch=patches, batch_size=batch,
                          mixed_precision=mixed_precision)
        t0 = time.perf_counter()
        res = train_detector(s, log=lambda *_: None, progress=False)
        total = time.perf_counter() - t0
    keys = ("epoch_seconds", "train_seconds", "patches_per_second", "validation_seconds")
    rows = [{k: float(r[k]) for k in ("epoch",) + keys} for r in res.history]
    for r in rows:
        r["other_seconds"] = r["epoch_seconds"] - r["train_seconds"] - r["validation_seconds"]
    later = rows[1:] or rows
    summary = {k: float(np.median([r[k] for r in later])) for k in keys + ("other_seconds",)}
    return {"arch": arch, "patches_per_epoch": patches, "batch": batch, "field": field,
            "mixed_precision": mixed_precision, "rows": rows, "median_after_first": summary,
            "first_epoch_seconds": rows[0]["epoch_seconds"], "run_seconds": total}


def table(result: dict) -> str:
    head = (f"cianna-jax train --arch {result['arch']}, {result['patches_per_epoch']} patches "
            f"per epoch, batch {result['batch']}, {result['field']}x{result['field']} field, "
            f"mixed precision {result['mixed_precision']}")
    lines = [head, f"{'epoch':>5} {'epoch s':>8} {'train s':>8} {'patches/s':>10} "
                   f"{'valid. s':>8} {'other s':>8}"]
    fmt = "{:>5} {:8.2f} {:8.2f} {:10.1f} {:8.2f} {:8.2f}"
    for r in result["rows"]:
        lines.append(fmt.format(int(r["epoch"]), r["epoch_seconds"], r["train_seconds"],
                                r["patches_per_second"], r["validation_seconds"],
                                r["other_seconds"]))
    m = result["median_after_first"]
    lines.append(fmt.format("med.", m["epoch_seconds"], m["train_seconds"],
                            m["patches_per_second"], m["validation_seconds"],
                            m["other_seconds"]).replace("med. ", " med."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sdc1", choices=sorted(DEFAULTS))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--patches", type=int, default=None, help="patches per epoch")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--field", type=int, default=1024, help="synthetic field side, pixels")
    ap.add_argument("--mixed-precision", default="off")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    a = ap.parse_args(argv)
    patches, batch = DEFAULTS[a.arch]
    result = run(a.arch, a.epochs, a.patches or patches, a.batch or batch, a.field,
                 a.mixed_precision)
    print(table(result))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
