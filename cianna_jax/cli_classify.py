"""The ``cianna-jax classify`` command: a convolutional classifier of source morphology
(:mod:`.astro.morphology`), trained on images with a labelled catalogue (``classify
train``) and applied to a catalogue's sources (``classify apply``)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["classify", "add_parser"]


def classify(args) -> int:
    """``cianna-jax classify train|apply``."""
    return _train(args) if args.classify_command == "train" else _apply(args)


def _stamp_list(path: str, label_column: str | None = None) -> tuple[Any, list[str]]:
    """A list of FITS stamps (a table with a ``file`` column, paths relative to the list's
    folder): the table and the stamps' paths; ValueError naming a missing column or file."""
    from .astro.catalogue import find_column, read_catalogue

    table = read_catalogue(path)
    for col in ("file",) + ((label_column,) if label_column else ()):
        if find_column(table, col) is None:
            raise ValueError(f"--stamps: {path} has no column {col!r} (its columns: "
                             f"{', '.join(table.colnames)})")
    folder = os.path.dirname(os.path.abspath(path))
    files = [os.path.join(folder, str(f).strip())
             for f in table[find_column(table, "file")]]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"--stamps: {len(missing)} of its files not found, e.g. "
                                f"{missing[0]}")
    return table, files


def _inputs(args) -> None:
    """--stamps, or --image with --catalogue: one of them."""
    if bool(args.stamps) == bool(args.image or args.catalogue):
        raise ValueError("--stamps, or --image and --catalogue: one of them")
    if not args.stamps and not (args.image and args.catalogue):
        raise ValueError("--image, --catalogue: give both (or --stamps)")


def _train(args) -> int:
    from .astro.morphology_cutouts import CutoutSpec
    from .astro.morphology_training import (
        ClassifierSettings,
        train_classifier,
        train_classifier_on_stamps,
    )

    _inputs(args)
    images, cats = args.image or [], args.catalogue or []
    if len(images) != len(cats):
        raise ValueError(f"--image, --catalogue: one catalogue per image, in the same order "
                         f"(received {len(images)} images, {len(cats)} catalogues)")
    classes = None
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    settings = ClassifierSettings(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        val_fraction=args.val_fraction, samples_per_epoch=args.samples_per_epoch,
        width=args.width, seed=args.seed, shift_beams=args.shift_beams, folds=args.folds,
        cutout=CutoutSpec(args.cutout_beams, args.pixels, args.clip))
    common = dict(classes=classes, settings=settings, progress=not args.quiet,
                  figure=not args.no_figure, init_from=args.init_from)
    if args.stamps:
        from .astro.catalogue import column_text, find_column

        table, files = _stamp_list(args.stamps, args.label_column)
        res = train_classifier_on_stamps(
            files, column_text(table[find_column(table, args.label_column)]), args.out,
            **common)
    else:
        res = train_classifier(images, cats, args.label_column, args.out, **common)
    sc = res.scores
    per = ", ".join(f"{c} {r:.2f}" for c, r in zip(res.classes, sc["recall"]))
    cv = res.cross_validation
    if cv is not None:
        print(f"cross-validation ({cv['folds']} folds): accuracy {cv['accuracy_mean']:.3f} +- "
              f"{cv['accuracy_std']:.3f}, balanced {cv['balanced_accuracy_mean']:.3f} +- "
              f"{cv['balanced_accuracy_std']:.3f} -> {args.out}/cross_validation.json")
    print(f"best epoch {res.best_epoch}: validation accuracy {sc['accuracy']:.3f}, balanced "
          f"{sc['balanced_accuracy']:.3f} (recall: {per}) -> {args.out}/best.json")
    return 0


def _apply(args) -> int:
    import numpy as np

    from .astro.catalogue import catalogue_format, read_catalogue, write_catalogue
    from .astro.morphology import CLASS_COLUMN, PROB_COLUMN, load_classifier
    from .astro.morphology_apply import class_examples, classify_sources, source_images

    catalogue_format(args.out)  # refused before the work
    _inputs(args)
    if args.mc < 0 or args.mc == 1:
        raise ValueError(f"--mc: 0 (off) or 2 draws or more, received {args.mc}")
    model = load_classifier(args.model)
    priors = _priors(args.priors, model.card.classes)
    if args.stamps:
        if args.figure:
            raise ValueError("--figure: a gallery of a catalogue's sources on an image, not of "
                             "stamps")
        from .astro.morphology_apply import classify_stamps

        table, files = _stamp_list(args.stamps)
        out = classify_stamps(model, files, table, priors=priors, draws=args.mc)
    else:
        table = read_catalogue(args.catalogue)
        where = source_images(args.image if len(args.image) > 1 else args.image[0], table,
                              progress=not args.quiet, what=args.catalogue)
        out = classify_sources(model, None, table, where=where, priors=priors,
                               progress=not args.quiet, what=args.catalogue, draws=args.mc)
    names = np.asarray(out[CLASS_COLUMN]).astype(str)
    prob = np.asarray(out[PROB_COLUMN], np.float64)
    counts = ", ".join(f"{c} {int(np.sum(names == c))}" for c in model.card.classes)
    sure = int(np.sum(prob >= args.confident))
    off = int(np.sum(names == ""))
    write_catalogue(out, args.out)
    print(f"{len(out)} sources: {counts}" + (f", {off} off the images" if off else "")
          + f"; {sure} with probability >= {args.confident:g} -> {args.out}")
    if args.figure:
        from .astro.morphology_plots import gallery_figure
        from .astro.plots import save_figure

        views, labels = class_examples(model, where, out, args.examples)
        save_figure(gallery_figure(model.card.classes, views, labels,
                                   "The most probable sources of each class: "
                                   + ", ".join(os.path.basename(i) for i in args.image)),
                    args.figure)
        print(f"gallery -> {args.figure}")
    return 0


def _priors(text: str, classes: tuple[str, ...]):
    """``--priors``: "card" (the labelled sources' frequencies), "equal" (None) or
    ``name=value`` per class (normalised)."""
    if text == "card":
        return "card"
    if text == "equal":
        return None
    values = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError(part)
            values[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--priors: 'card', 'equal' or class=frequency by commas, "
                             f"received {text!r}") from None
    if set(values) != set(classes) or any(not v > 0 for v in values.values()):
        raise ValueError(f"--priors: one positive frequency for each class "
                         f"({', '.join(classes)}), received {text!r}")
    total = sum(values.values())
    return [values[c] / total for c in classes]


def add_parser(sub) -> None:
    """The ``classify`` subcommand and its two actions, on the command line's subparsers."""
    p = sub.add_parser("classify", help="source morphology by a convolutional classifier: "
                                        "train it on labelled sources, apply it to a "
                                        "catalogue")
    acts = p.add_subparsers(dest="classify_command", required=True, metavar="{train,apply}")
    t = acts.add_parser("train", help="train a classifier on images and catalogues with a "
                                      "class column")
    t.add_argument("--image", action="append", default=None,
                   help="FITS image (2D, with a beam); repeatable, with one --catalogue each")
    t.add_argument("--catalogue", action="append", default=None,
                   help="the image's catalogue: ra/dec (or x/y) and the class column")
    t.add_argument("--stamps", default=None, metavar="LIST",
                   help="instead of --image/--catalogue: a table of FITS postage stamps (a "
                        "file column, relative to the list's folder, and the class column), "
                        "one source at each stamp's centre: a labelled set of cutouts")
    t.add_argument("--label-column", required=True,
                   help="the column of class labels (text or integers), e.g. morphology")
    t.add_argument("--classes", default=None,
                   help="the labels to learn, by commas, in this order (default: every "
                        "label present, sorted; sources of other labels are left out)")
    t.add_argument("--out", required=True, help="run folder: best/last .dat + .json, "
                                                "history.csv, training.png")
    t.add_argument("--init-from", default=None, metavar="MODEL",
                   help="start from this classifier (fine-tuning, e.g. one trained on "
                        "simulations): its cutouts and width, its weights (a new last layer "
                        "for other classes); a lower --learning-rate suits")
    t.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=2e-3,
                   help="AdamW's rate at the start, on a cosine to 1/20 (default 2e-3)")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of each class held out to pick the best epoch (0.2)")
    t.add_argument("--samples-per-epoch", type=int, default=0,
                   help="augmented sources per epoch, the same number per class (default: "
                        "classes x the largest class, within 256-8192)")
    t.add_argument("--cutout-beams", type=float, default=16.0,
                   help="the window's side in beam FWHMs (default 16; larger than the "
                        "largest sources)")
    t.add_argument("--pixels", type=int, default=48,
                   help="the network's input side: the window resampled to it (48)")
    t.add_argument("--clip", type=float, default=3.0,
                   help="pixels under this many times the local rms set to 0 (3)")
    t.add_argument("--shift-beams", type=float, default=0.5,
                   help="training windows moved at random by up to this many beams along "
                        "each axis, for catalogue positions off the cores (0.5)")
    t.add_argument("--width", type=int, default=16, help="the first conv's filters (16)")
    t.add_argument("--folds", type=int, default=0, metavar="K",
                   help="first a K-fold cross-validation (each fold's sources held out "
                        "once; their accuracies' mean and spread, cross_validation.json), "
                        "then the model as without: for small labelled sets")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-figure", action="store_true", help="no training.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    a = acts.add_parser("apply", help="classify a catalogue's sources: p_<class>, "
                                      "morph_class and morph_prob columns added")
    a.add_argument("--model", required=True, help="the classifier (its best.json or run "
                                                  "folder's best.json)")
    a.add_argument("--image", action="append", default=None,
                   help="the FITS image of the sources; repeatable: a mosaic's images (each "
                        "source read from the one whose centre is nearest)")
    a.add_argument("--catalogue", default=None, help="the sources (ra/dec or x/y)")
    a.add_argument("--stamps", default=None, metavar="LIST",
                   help="instead of --image/--catalogue: a table of FITS postage stamps (a "
                        "file column), each stamp's central source classified")
    a.add_argument("--out", required=True, help="the catalogue with the classes (.ecsv, "
                                                ".csv, .fits, .xml)")
    a.add_argument("--priors", default="card",
                   help="the classes' frequencies the probabilities are for: 'card' (the "
                        "labelled sources', default), 'equal', or class=frequency by commas "
                        "(e.g. compact=0.8,sfg=0.15,fr1=0.03,fr2=0.02)")
    a.add_argument("--mc", type=int, default=0, metavar="DRAWS",
                   help="Monte Carlo dropout (CIANNA's MC_MODEL): this many passes with the "
                        "dropout on, the probabilities their mean and morph_prob_std the "
                        "chosen class's scatter over them (default 0: off)")
    a.add_argument("--confident", type=float, default=0.8,
                   help="the probability counted as confident in the summary (0.8)")
    a.add_argument("--figure", default=None, metavar="PNG",
                   help="a gallery: for each class, its most probable sources as the network "
                        "sees them")
    a.add_argument("--examples", type=int, default=8,
                   help="with --figure: sources per class (8)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
