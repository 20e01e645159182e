"""The ``cianna-jax classify`` command: a convolutional classifier of source morphology
(:mod:`.astro.morphology`), trained on images with a labelled catalogue (``classify
train``) and applied to a catalogue's sources (``classify apply``)."""

from __future__ import annotations

import os

__all__ = ["classify", "add_parser"]


def classify(args) -> int:
    """``cianna-jax classify train|apply``."""
    return _train(args) if args.classify_command == "train" else _apply(args)


def _train(args) -> int:
    from .astro.morphology_cutouts import CutoutSpec
    from .astro.morphology_training import ClassifierSettings, train_classifier

    images, cats = args.image, args.catalogue
    if len(images) != len(cats):
        raise ValueError(f"--image, --catalogue: one catalogue per image, in the same order "
                         f"(received {len(images)} images, {len(cats)} catalogues)")
    classes = None
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    settings = ClassifierSettings(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        val_fraction=args.val_fraction, samples_per_epoch=args.samples_per_epoch,
        width=args.width, seed=args.seed, shift_beams=args.shift_beams,
        cutout=CutoutSpec(args.cutout_beams, args.pixels, args.clip))
    res = train_classifier(images, cats, args.label_column, args.out, classes=classes,
                           settings=settings, progress=not args.quiet,
                           figure=not args.no_figure, init_from=args.init_from)
    sc = res.scores
    per = ", ".join(f"{c} {r:.2f}" for c, r in zip(res.classes, sc["recall"]))
    print(f"best epoch {res.best_epoch}: validation accuracy {sc['accuracy']:.3f}, balanced "
          f"{sc['balanced_accuracy']:.3f} (recall: {per}) -> {args.out}/best.json")
    return 0


def _apply(args) -> int:
    import numpy as np

    from .astro.catalogue import catalogue_format, read_catalogue, write_catalogue
    from .astro.morphology import CLASS_COLUMN, PROB_COLUMN, load_classifier
    from .astro.morphology_apply import class_examples, classify_sources, source_images

    catalogue_format(args.out)  # refused before the work
    model = load_classifier(args.model)
    table = read_catalogue(args.catalogue)
    where = source_images(args.image if len(args.image) > 1 else args.image[0], table,
                          progress=not args.quiet, what=args.catalogue)
    out = classify_sources(model, None, table, where=where,
                           priors=_priors(args.priors, model.card.classes),
                           progress=not args.quiet, what=args.catalogue)
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
    t.add_argument("--image", action="append", required=True,
                   help="FITS image (2D, with a beam); repeatable, with one --catalogue each")
    t.add_argument("--catalogue", action="append", required=True,
                   help="the image's catalogue: ra/dec (or x/y) and the class column")
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
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-figure", action="store_true", help="no training.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    a = acts.add_parser("apply", help="classify a catalogue's sources: p_<class>, "
                                      "morph_class and morph_prob columns added")
    a.add_argument("--model", required=True, help="the classifier (its best.json or run "
                                                  "folder's best.json)")
    a.add_argument("--image", action="append", required=True,
                   help="the FITS image of the sources; repeatable: a mosaic's images (each "
                        "source read from the one whose centre is nearest)")
    a.add_argument("--catalogue", required=True, help="the sources (ra/dec or x/y)")
    a.add_argument("--out", required=True, help="the catalogue with the classes (.ecsv, "
                                                ".csv, .fits, .xml)")
    a.add_argument("--priors", default="card",
                   help="the classes' frequencies the probabilities are for: 'card' (the "
                        "labelled sources', default), 'equal', or class=frequency by commas "
                        "(e.g. compact=0.8,sfg=0.15,fr1=0.03,fr2=0.02)")
    a.add_argument("--confident", type=float, default=0.8,
                   help="the probability counted as confident in the summary (0.8)")
    a.add_argument("--figure", default=None, metavar="PNG",
                   help="a gallery: for each class, its most probable sources as the network "
                        "sees them")
    a.add_argument("--examples", type=int, default=8,
                   help="with --figure: sources per class (8)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
