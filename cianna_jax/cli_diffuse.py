"""The ``cianna-jax diffuse`` command: extended, diffuse emission that the compact-source pass
leaves in its residual, found at coarser resolution (:mod:`.astro.multiscale`)."""

from __future__ import annotations

__all__ = ["diffuse", "add_parser"]


def diffuse(args) -> int:
    """``cianna-jax diffuse``: the diffuse components (and the merged catalogue)."""
    import numpy as np

    from .astro.catalogue import catalogue_format, write_catalogue
    from .astro.multiscale import find_diffuse

    for path in (args.out, args.merged):  # refused before the work
        if path:
            catalogue_format(path)
    try:
        scales = [int(v) for v in args.scales.split(",")]
    except ValueError:
        raise ValueError(f"--scales: factors separated by commas, received {args.scales!r}"
                         ) from None
    res = find_diffuse(args.image, args.model, scales=scales, min_snr=args.min_snr,
                       hdu=args.hdu, progress=not args.quiet)
    t = res.table
    per = ", ".join(f"{int(np.sum(np.asarray(t['scale']) == k))} at {k}x the beam"
                    for k in res.scales)
    print(f"{len(res.compact.table)} compact sources; {len(t)} diffuse components of SNR >= "
          f"{args.min_snr:g} in their residual ({per}; {int(np.sum(t['near_compact']))} with a "
          "compact source within their half-power ellipse)")
    write_catalogue(t, args.out)
    print(f"diffuse components -> {args.out}")
    if args.merged:
        write_catalogue(res.merged, args.merged)
        print(f"compact and diffuse, with their scale -> {args.merged}")
    return 0


def add_parser(sub) -> None:
    """The ``diffuse`` subcommand's options, on the command line's subparsers ``sub``."""
    p = sub.add_parser("diffuse", help="extended, diffuse emission the compact pass misses: "
                                       "its residual searched at coarser resolution")
    p.add_argument("--image", required=True, help="the FITS image (2D, with a beam)")
    p.add_argument("--model", required=True, help="the detector's model card (.json)")
    p.add_argument("--out", required=True,
                   help="the diffuse components (a scale column: the beam's factor)")
    p.add_argument("--merged", default=None, metavar="PATH",
                   help="also the compact sources and the diffuse components in one "
                        "catalogue (scale 1 for the compact)")
    p.add_argument("--scales", default="4,8",
                   help="the beam's factors searched, by commas (default 4,8)")
    p.add_argument("--min-snr", type=float, default=5.0,
                   help="the components' peak SNR at their scale (default 5)")
    p.add_argument("--hdu", default=None, help="HDU index or name")
    p.add_argument("--quiet", action="store_true", help="no progress")
