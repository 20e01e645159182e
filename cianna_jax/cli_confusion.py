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
    import numpy as np

    from .astro.catalogue import catalogue_format, make_table
    from .astro.confusion import CountsModel, estimate_confusion
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
          f" uJy/beam; {est.beams_per_source:.3g} beams per source at {est.q:g} sigma")
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

    def figure(_):
        from .astro._deps import require

        plt = require("matplotlib.pyplot")
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        mid = 0.5 * (edges[:-1] + edges[1:]) * 1e6
        frac = counts / max(counts.sum(), 1)
        ax.step(mid, frac, where="mid", label="P(D) of the counts")
        g = np.exp(-0.5 * ((mid - est.median * 1e6) / (est.sigma * 1e6)) ** 2)
        ax.plot(mid, g * frac.max() / g.max(), "k:",
                label=f"Gaussian of {est.sigma * 1e6:.3g} uJy/beam (the clipped rms)")
        ax.set_yscale("log")
        ax.set_ylim(max(frac[frac > 0].min() / 2, frac.max() * 1e-6), frac.max() * 2)
        ax.set_xlabel("D (uJy/beam)")
        ax.set_ylabel("fraction of pixels")
        ax.set_title("Confusion: the sky's faint sources per beam")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    write_with_figure(t, args, "P(D)", figure)
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
