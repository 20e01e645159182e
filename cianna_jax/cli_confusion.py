"""The ``cianna-jax confusion`` command: the confusion noise of a survey's source counts for a
beam, and the thermal noise under an image's measured rms (:mod:`.astro.confusion`)."""

from __future__ import annotations

__all__ = ["confusion", "add_parser"]


def _beam(text: str) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if len(v) not in (2, 3):
        raise ValueError(f"--beam: BMAJ,BMIN[,BPA] (arcsec, deg), received {text!r}")
    return v


def _image_beam(path: str, hdu) -> tuple[tuple[float, float, float], float, float]:
    """An image's beam (arcsec, deg), pixel scale (arcsec) and median local rms (Jy/beam)."""
    import numpy as np

    from .astro.fits_image import ImageError, open_image
    from .astro.noise import estimate_noise_map

    with open_image(path, hdu) as img:
        if img.beam is None or not img.pixel_scale or img.ndim != 2:
            raise ImageError(f"{path}: a 2D image with a beam and a celestial WCS is needed")
        noise = estimate_noise_map(img.read, img.shape)
        return ((img.beam.bmaj, img.beam.bmin, img.beam.bpa), float(img.pixel_scale),
                float(np.median(noise.rms)) * img.unit_scale)


def confusion(args) -> int:
    """``cianna-jax confusion``: the estimates printed, P(D) written (and drawn)."""
    from .astro.catalogue import catalogue_format, make_table
    from .astro.confusion import CountsModel, estimate_confusion, pd_figure
    from .cli_tables import write_with_figure

    catalogue_format(args.out)  # refused before the work
    if (args.beam is None) == (args.image is None):
        raise ValueError("--beam BMAJ,BMIN or --image (its beam and rms): one of them")
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    measured = None
    if args.image is not None:
        beam, pixel, measured = _image_beam(args.image, args.hdu)
    else:
        beam, pixel = _beam(args.beam), None
    model = CountsModel.from_counts(args.counts, gamma_below=args.gamma_below)
    est = estimate_confusion(model, beam, pixel_arcsec=pixel, measured_rms=measured, q=args.q,
                             size=args.size, seed=args.seed)
    print(f"counts: {model.source}")
    print(f"beam {beam[0]:.3g}\" x {beam[1]:.3g}\": confusion noise {est.sigma * 1e6:.4g} "
          f"uJy/beam (3-sigma clipped as a noise map; {est.sigma_raw * 1e6:.4g} over every "
          f"pixel); Condon's estimate with S^-{model.gamma_below:.2f} {est.condon_sigma * 1e6:.4g}"
          f" uJy/beam; {est.beams_per_source:.3g} beams per source at {est.q:g} times the "
          + ("image's rms" if measured is not None else "confusion noise"))
    if measured is not None:
        print(f"{args.image}: median rms {measured * 1e6:.4g} uJy/beam, so thermal "
              f"{est.thermal_rms * 1e6:.4g} uJy/beam under the confusion, which adds "
              f"{est.confusion_at_measured * 1e6:.4g} uJy/beam in quadrature at this noise"
              + (" (confusion-limited: the counts alone reach the rms)"
                 if est.thermal_rms == 0 else ""))
    edges, counts = est.histogram
    t = make_table({"d_min": edges[:-1], "d_max": edges[1:], "n": counts},
                   meta={"confusion": est.as_dict()})
    t["d_min"].unit = t["d_max"].unit = "Jy/beam"

    write_with_figure(t, args, "P(D)", lambda _: pd_figure(est))
    return 0


def add_parser(sub) -> None:
    """The ``confusion`` subcommand's options, on the command line's subparsers ``sub``."""
    p = sub.add_parser("confusion", help="the confusion noise of source counts for a beam "
                                         "(and the thermal noise under an image's rms)")
    p.add_argument("--counts", required=True,
                   help="differential source counts (cianna-jax counts' table: flux_mid, "
                        "counts S^2.5 dN/dS; its complete bins)")
    p.add_argument("--out", required=True, help="the simulated P(D) (.ecsv, .csv, .fits)")
    p.add_argument("--beam", default=None, metavar="BMAJ,BMIN[,BPA]",
                   help="the beam (arcsec, deg)")
    p.add_argument("--image", default=None,
                   help="instead of --beam: an image's beam, pixels and median rms (the "
                        "thermal noise under it is given too)")
    p.add_argument("--hdu", default=None, help="HDU index or name")
    p.add_argument("--gamma-below", type=float, default=None, metavar="G",
                   help="the counts' slope dN/dS ~ S^-G below their faintest bin (default: "
                        "fitted to the three faintest)")
    p.add_argument("--q", type=float, default=5.0,
                   help="the detection threshold of Condon's estimate and of the beams per "
                        "source (default 5)")
    p.add_argument("--size", type=int, default=1024, help="the simulated map's side (pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, metavar="PNG", help="also draw P(D)")
