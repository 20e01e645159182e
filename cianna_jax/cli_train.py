"""The ``cianna-jax train`` command: a detector trained on FITS images and their catalogues
(:mod:`.astro.trainer`), resumed exactly, or fine-tuned from another (``--init``)."""

from __future__ import annotations

import os

__all__ = ["train", "add_parser", "RUN_SETTINGS_OPTIONS", "TRAIN_OPTIONS"]


#: ``train`` options that set a run up: ``--resume`` takes them from the run's args.json
RUN_SETTINGS_OPTIONS = ("--image", "--catalogue", "--arch", "--patch", "--patch-channels",
                        "--valid-fraction",
                        "--seed", "--batch", "--patches-per-epoch", "--lr", "--min-snr",
                        "--normalisation", "--hdu", "--plane", "--mixed-precision", "--pb",
                        "--init", "--class-column", "--balance-classes")
TRAIN_OPTIONS = RUN_SETTINGS_OPTIONS + ("--out", "--epochs", "--resume", "--quiet", "--help")


def _given(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """The ``options`` written in ``argv`` (``--name``, ``--name=value`` or an unambiguous
    prefix of the name, as argparse reads them)."""
    found = []
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        match = [o for o in TRAIN_OPTIONS if o == name] or [
            o for o in TRAIN_OPTIONS if o.startswith(name)]
        if len(match) == 1 and match[0] in options and match[0] not in found:
            found.append(match[0])
    return found


def train(args) -> int:
    """``cianna-jax train``: a new run, or ``--resume`` of one."""
    from .astro.trainer import SETTINGS_FILE, TrainSettings, train_detector

    if args.resume:
        if given := _given(args.argv, RUN_SETTINGS_OPTIONS):
            raise ValueError(f"--resume continues {args.out} with the settings it was started "
                             f"with ({os.path.join(args.out, SETTINGS_FILE)}): {', '.join(given)} "
                             "cannot be given with it (--epochs can)")
        res = train_detector(resume_from=args.out, epochs=args.epochs, progress=not args.quiet)
    else:
        missing = [f"--{n}" for n in ("image", "catalogue") if getattr(args, n) is None]
        if missing:
            raise ValueError(f"{' and '.join(missing)} required (except with --resume)")
        if len(args.image) != len(args.catalogue):
            raise ValueError(f"--image and --catalogue go in pairs: {len(args.image)} images, "
                             f"{len(args.catalogue)} catalogues")
        more = tuple(zip(args.image[1:], args.catalogue[1:]))
        if args.init and "--normalisation" in _given(args.argv, ("--normalisation",)):
            raise ValueError("--normalisation: the model of --init brings its own (the one "
                             "its weights were trained with)")
        s = TrainSettings(image=args.image[0], catalogue=args.catalogue[0], out=args.out,
                          epochs=30 if args.epochs is None else args.epochs, arch=args.arch,
                          patch=args.patch, patch_channels=args.patch_channels,
                          valid_fraction=args.valid_fraction, seed=args.seed,
                          batch_size=args.batch, patches_per_epoch=args.patches_per_epoch,
                          learning_rate=args.lr, min_snr=args.min_snr,
                          normalisation=args.normalisation, hdu=args.hdu, plane=args.plane,
                          mixed_precision=args.mixed_precision, more_fields=more,
                          primary_beam=args.pb, init=args.init, class_column=args.class_column,
                          balance_classes=args.balance_classes)
        res = train_detector(s, progress=not args.quiet)
    print(f"files in {res.out}/: {', '.join(res.files)}")
    print(f"next: cianna-jax predict --model {os.path.join(res.out, 'best.json')} --image IMAGE "
          f"--out catalogue.ecsv")
    return 0


def add_parser(sub) -> None:
    """The ``train`` subcommand's options, on the command line's subparsers ``sub``."""
    tr = sub.add_parser("train", help="train a detector on a FITS image and its source "
                                      "catalogue; keeps the best and last models")
    tr.add_argument("--image", action="append",
                    help="training FITS image (2D or SDC1 4D) or spectral-line cube; repeat "
                         "--image and --catalogue to train on several 2D fields (paired in "
                         "order)")
    tr.add_argument("--catalogue", action="append",
                    help="its source catalogue: .ecsv, .csv, .fits, .xml or SDC1 text (ra/dec "
                         "or x/y, flux, bmaj, bmin, pa); a cube's lines: ra/dec or x/y, freq "
                         "or z, w20 or w50, and snr or line_flux")
    tr.add_argument("--out", required=True, help="run folder (models, results.csv, training.png)")
    tr.add_argument("--epochs", type=int, default=None, help="total epochs (default 30; with "
                                                              "--resume: the run's, or more)")
    tr.add_argument("--arch", default="default", choices=("default", "sdc1", "cube"),
                    help="default: small network for CPUs (on a cube: cube); sdc1: CIANNA's "
                         "SDC1 network (GPU); cube: a small 3D network for line cubes")
    tr.add_argument("--patch", type=int, default=None,
                    help="training patch = detection tile side (default: the network's)")
    tr.add_argument("--patch-channels", type=int, default=None,
                    help="a cube's training patch and detection tile depth in channels "
                         "(default 32)")
    tr.add_argument("--valid-fraction", type=float, default=0.2,
                    help="share of the catalogue's area kept apart for validation")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    tr.add_argument("--seed", type=int, default=0, help="random seed (patches, weights)")
    tr.add_argument("--batch", type=int, default=16, help="patches per training step")
    tr.add_argument("--patches-per-epoch", type=int, default=1024)
    tr.add_argument("--lr", type=float, default=0.01, help="learning rate (CIANNA SGD)")
    tr.add_argument("--min-snr", type=float, default=5.0,
                    help="sources of at least this SNR are targets (and counted in recall)")
    tr.add_argument("--normalisation", default="snr", choices=("snr", "minmax_tanh"))
    tr.add_argument("--hdu", default=None, help="HDU index or name (default: first image)")
    tr.add_argument("--plane", type=int, default=None,
                    help="plane of a cube's third axis (0-based) taken as the training image")
    tr.add_argument("--mixed-precision", default="off", metavar="MODE",
                    help="CIANNA mixed_precision mode of the passes: off (float32, default), "
                         "BF16C_FP32A or TF32C_FP32A (faster on GPUs, and on CPU for the sdc1 "
                         "architecture)")
    tr.add_argument("--pb", default=None, metavar="FITS|MODEL",
                    help="the images are not primary-beam corrected and the catalogues give "
                         "true fluxes: the detector learns each flux times this beam's "
                         "response (a beam FITS image, or gaussian:FWHM, cosine:FWHM in "
                         "arcmin, meerkat, centred on each image; on a cube, at each "
                         "line's channel); predict with the same --pb")
    tr.add_argument("--init", default=None, metavar="MODEL",
                    help="start from this detector's weights (its model card, from 'cianna-jax "
                         "train'): fine-tune it on the image and catalogue, keeping its "
                         "architecture, tile, normalisation and priors (a lower --lr, e.g. "
                         "0.002, and few --epochs)")
    tr.add_argument("--class-column", default=None, metavar="COLUMN",
                    help="the catalogues' column of each source's class (e.g. SDC1's class, "
                         "1 SS-AGN, 2 FS-AGN, 3 SFG; or morph_class): the detector also "
                         "classifies what it finds; predict then writes det_class, det_prob "
                         "and det_p_<class> (2D images). Sources with a blank, masked or NaN "
                         "class train their boxes only")
    tr.add_argument("--balance-classes", action="store_true",
                    help="with --class-column: the patches around sources drawn with equal "
                         "chances for every class (a rare class seen as often as a common "
                         "one)")
    tr.add_argument("--quiet", action="store_true", help="no per-batch progress")
