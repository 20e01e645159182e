"""The ``cianna-jax crossid``, ``doubles`` and ``luminosity`` commands: optical / infrared
counterparts of a catalogue's radio sources by the likelihood ratio (:mod:`.astro.crossid`),
its double sources, the two lobes of one radio galaxy (:mod:`.astro.doubles`), and the
luminosities and sizes of those with redshifts (:mod:`.astro.luminosity`)."""

from __future__ import annotations

import numpy as np

from .cli_simulate import pair

__all__ = ["crossid", "doubles", "luminosity", "add_parser", "format_crossid",
           "luminosity_options"]


def format_crossid(meta: dict) -> str:
    """The cross-identification's numbers in a few lines."""
    colour = (f" and {len(meta['colour_edges']) + 2} {meta['colour_column']} bins"
              if meta.get("colour_column") else "")
    return (f"{meta['n_matched']} of {meta['n_radio']} radio sources matched "
            f"(LR >= {meta['lr_threshold']:.3g}, {meta['threshold_rule']}); Q0 "
            f"{meta['q0']:.3f} of them have a counterpart among the {meta['n_optical']} "
            f"objects with a {meta['mag_column']} magnitude{colour}; expected completeness "
            f"{meta['completeness']:.3f}, reliability {meta['reliability']:.3f}; search "
            f"radius {meta['radius_arcsec']:.3g} arcsec, background from "
            f"{meta['background']}" + _offsets_text(meta))


def _offsets_text(meta: dict) -> str:
    if "offsets_n" not in meta:
        return ""
    parts = []
    for name, label in (("ra", "RA"), ("dec", "Dec")):
        v, e = meta[f"offset_{name}_arcsec"], meta[f"offset_{name}_err_arcsec"]
        parts.append(f"{label} {v:+.3f} +- {e:.3f}" + (" (significant)" if abs(v) > 3 * e
                                                        else ""))
    return (f"\noptical - radio median offsets of the {meta['offsets_n']} counterparts of "
            f"reliability >= 0.9: {', '.join(parts)} arcsec")


def crossid(args) -> int:
    """``cianna-jax crossid``: the catalogue with its counterparts' columns, the candidate
    pairs and a figure."""
    from .astro.catalogue import catalogue_format, read_catalogue, write_catalogue
    from .astro.crossid import crossid_figure, likelihood_ratio
    from .cli_tables import write_with_figure

    for path in (args.out, args.pairs):  # refused before the work
        if path:
            catalogue_format(path)
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    radio, optical = read_catalogue(args.catalogue), read_catalogue(args.optical)
    res = likelihood_ratio(radio, optical, mag_column=args.mag_column,
                           optical_error=args.optical_error,
                           astrometric_error=args.astrometric_error,
                           radio_error=args.radio_error, radius=args.radius,
                           area_deg2=args.area, mag_step=args.mag_step,
                           lr_threshold=args.lr_threshold,
                           optical_columns=tuple(args.keep),
                           colour_column=args.colour_column, colour_bins=args.colour_bins,
                           optical_shift=args.shift)
    print(format_crossid(res.table.meta["crossid"]))
    if args.pairs:
        write_catalogue(res.pairs, args.pairs)
        print(f"{len(res.pairs)} candidate pairs -> {args.pairs}")
    write_with_figure(res.table, args, "catalogue with lr, lr_reliability, lr_match and the "
                      "counterparts' lr_* columns", lambda _: crossid_figure(res))
    return 0


def doubles(args) -> int:
    """``cianna-jax doubles``: the pairs (their centres, where a host is looked for) and,
    with ``--flagged``, the catalogue with its ``double`` columns."""
    import numpy as np

    from .astro.catalogue import catalogue_format, read_catalogue, write_catalogue
    from .astro.doubles import find_doubles, format_doubles

    for path in (args.out, args.flagged, args.merged):  # refused before the work
        if path:
            catalogue_format(path)
    if bool(args.classifier) != bool(args.image):
        raise ValueError("--classifier, --image: the pairs are classified at their centres "
                         "on the image: give both")
    if bool(args.merged) != bool(args.associate) or (args.merged and not args.classifier):
        raise ValueError("--merged, --associate: the catalogue with the pairs of these classes "
                         "merged (e.g. --associate fr1,fr2), after --classifier: give them "
                         "together")
    d = find_doubles(read_catalogue(args.catalogue), scale=args.scale,
                     max_ratio=args.max_ratio, chance_draws=args.chance_draws,
                     seed=args.seed, what=args.catalogue)
    pairs = d.pairs
    print(format_doubles(d))
    if args.classifier:
        from .astro.morphology import CLASS_COLUMN, load_classifier
        from .astro.morphology_apply import classify_sources

        pairs = classify_sources(load_classifier(args.classifier), args.image, pairs,
                                 what=args.out)
        names, counts = np.unique(np.asarray(pairs[CLASS_COLUMN]).astype(str),
                                  return_counts=True)
        print("the pairs' centres classified: " + ", ".join(
            f"{c or 'off the image'} {n}" for c, n in zip(names, counts)))
    write_catalogue(pairs, args.out)
    print(f"the pairs (their flux-weighted centres, where a host is looked for: crossid "
          f"--catalogue {args.out} --radio-error ARCSEC) -> {args.out}")
    if args.flagged:
        write_catalogue(d.table, args.flagged)
        print(f"the catalogue with its double and double_partner columns -> {args.flagged}")
    if args.merged:
        from .astro.association import associated

        classes = [c.strip() for c in args.associate.split(",") if c.strip()]
        merged = associated(read_catalogue(args.catalogue), pairs, classes, what=args.catalogue)
        n = int(np.sum(np.asarray(merged["n_components"]) == 2))
        write_catalogue(merged, args.merged)
        print(f"{n} pairs classified {', '.join(classes)} merged into one source each: "
              f"{len(merged)} sources -> {args.merged}")
    return 0


def luminosity(args) -> int:
    """``cianna-jax luminosity``: the catalogue with luminosities (and sizes)."""
    from .astro.catalogue import catalogue_format, read_catalogue, write_catalogue
    from .astro.luminosity import luminosity_table

    catalogue_format(args.out)  # refused before the work
    t = luminosity_table(read_catalogue(args.catalogue), z_column=args.z_column,
                         alpha=args.alpha, alpha_column=args.alpha_column,
                         z_err_column=args.z_err_column,
                         freq_hz=None if args.freq_mhz is None else args.freq_mhz * 1e6,
                         rest_freq_hz=None if args.rest_freq_mhz is None
                         else args.rest_freq_mhz * 1e6,
                         size_column=args.size_column, cosmology=args.cosmology,
                         what=args.catalogue)
    write_catalogue(t, args.out)
    meta = t.meta["luminosity"]
    logl = np.asarray(t["log_luminosity"], np.float64)
    logl = logl[np.isfinite(logl)]
    span = (f"; log10 L/(W/Hz) {np.min(logl):.2f} to {np.max(logl):.2f}, median "
            f"{np.median(logl):.2f}" if logl.size else "")
    rest = meta["rest_freq_hz"]
    print(f"{meta['n_with_z']} of {len(t)} sources with a redshift{span} "
          f"(rest frame{f' at {rest / 1e6:g} MHz' if rest else ''}, {meta['cosmology']}) "
          f"-> {args.out}")
    return 0


def luminosity_options(p) -> None:
    """The options that make luminosities (``luminosity``, ``lumfunc``): the K-correction's
    spectral index, the frequencies and the cosmology."""
    p.add_argument("--alpha", type=float, default=-0.7,
                   help="spectral index for the K-correction (S ~ nu^alpha; default -0.7)")
    p.add_argument("--alpha-column", default=None, metavar="NAME",
                   help="each source's own spectral index where finite")
    p.add_argument("--freq-mhz", type=float, default=None,
                   help="the catalogue's frequency (default: the one predict recorded)")
    p.add_argument("--rest-freq-mhz", type=float, default=None,
                   help="the rest frequency of the luminosities (default: the observed)")
    p.add_argument("--cosmology", default="Planck18",
                   help="one of astropy's (Planck18, Planck15, WMAP9...)")


def add_parser(sub) -> None:
    """The ``crossid`` and ``doubles`` subcommands' options, on the command line's
    subparsers ``sub``."""
    d = sub.add_parser("doubles", help="a catalogue's double sources: pairs of similar "
                                       "fluxes that are each other's nearest neighbour, the "
                                       "lobes of one radio galaxy")
    d.add_argument("--catalogue", required=True, help="the catalogue (ra, dec, flux)")
    d.add_argument("--out", required=True,
                   help="the pairs: rows, flux-weighted centre, summed flux, separation, "
                        "axis, flux ratio (.ecsv, .csv, .fits, .xml)")
    d.add_argument("--flagged", default=None, metavar="PATH",
                   help="also the catalogue with double (the pair's number) and "
                        "double_partner (the other's row)")
    d.add_argument("--scale", type=float, default=100.0, metavar="ARCSEC",
                   help="the largest separation at a total flux of 100 mJy, growing as its "
                        "square root (default 100, Magliocchetti et al. 1998 for FIRST's "
                        "5-arcsec beam; scale it with your beam)")
    d.add_argument("--max-ratio", type=float, default=4.0,
                   help="the pair's fluxes within this factor (default 4)")
    d.add_argument("--chance-draws", type=int, default=20,
                   help="catalogues with the sources moved at random, for the pairs "
                        "expected by chance (default 20)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--classifier", default=None, metavar="MODEL",
                   help="with --image: classify the pairs at their centres (cianna-jax "
                        "classify's model; one trained with chance pairs, simulate "
                        "--pair-fraction, tells radio galaxies from chance pairs)")
    d.add_argument("--image", default=None, help="with --classifier: the catalogue's image")
    d.add_argument("--associate", default=None, metavar="CLASSES",
                   help="with --classifier and --merged: the classes (by commas, e.g. "
                        "fr1,fr2) whose pairs are one radio galaxy")
    d.add_argument("--merged", default=None, metavar="PATH",
                   help="the catalogue with those pairs merged into one source each (summed "
                        "flux, centre, separation as the size, n_components, associated)")

    lum = sub.add_parser("luminosity", help="radio luminosities (and physical sizes) of a "
                                            "catalogue's sources with redshifts")
    lum.add_argument("--catalogue", required=True,
                     help="the catalogue (flux, and a redshift column: e.g. crossid --keep)")
    lum.add_argument("--z-column", required=True, metavar="NAME", help="the redshifts")
    lum.add_argument("--out", required=True, help="the catalogue with luminosity, "
                     "luminosity_err, log_luminosity, d_l (and size_kpc)")
    luminosity_options(lum)
    lum.add_argument("--z-err-column", default=None, metavar="NAME",
                     help="the redshifts' errors, in the luminosity's error")
    lum.add_argument("--size-column", default=None, metavar="NAME",
                     help="an angular size in arcsec (bmaj_deconv, a double's sep) as "
                          "size_kpc")
    p = sub.add_parser("crossid", help="optical/infrared counterparts of a catalogue's radio "
                                       "sources by the likelihood ratio (host galaxies)")
    p.add_argument("--catalogue", required=True,
                   help="the radio catalogue (ra, dec; ra_err, dec_err in arcsec)")
    p.add_argument("--optical", required=True,
                   help="the optical/infrared catalogue (ra, dec and a magnitude column)")
    p.add_argument("--mag-column", required=True, metavar="NAME",
                   help="the optical catalogue's magnitude column (objects without one are "
                        "left out)")
    p.add_argument("--out", required=True,
                   help="the radio catalogue with its counterparts' columns (.ecsv, .csv, "
                        ".fits, .xml)")
    p.add_argument("--optical-error", type=float, default=0.3, metavar="ARCSEC",
                   help="the optical positions' 1-sigma error per axis (default 0.3)")
    p.add_argument("--astrometric-error", type=float, default=0.0, metavar="ARCSEC",
                   help="a systematic 1-sigma error per axis between the catalogues, in "
                        "quadrature (e.g. from reference-check; default 0)")
    p.add_argument("--shift", type=pair, default=(0.0, 0.0), metavar="EAST,NORTH",
                   help="arcsec added to the optical positions first: a frame offset between "
                        "the catalogues, as the median offsets printed show it")
    p.add_argument("--radio-error", type=float, default=None, metavar="ARCSEC",
                   help="for radio sources without ra_err/dec_err")
    p.add_argument("--radius", type=float, default=None, metavar="ARCSEC",
                   help="the candidates' search radius (default five times the 90th "
                        "percentile of the combined errors, at least 3)")
    p.add_argument("--area", type=float, default=None, metavar="DEG2",
                   help="the optical catalogue's area: the background density over all of "
                        "it (default: from annuli 3-6 radii around the radio sources)")
    p.add_argument("--mag-step", type=float, default=0.5, metavar="MAG",
                   help="the magnitude bins of q(m) and n(m) (default 0.5)")
    p.add_argument("--lr-threshold", type=float, default=None, metavar="LR",
                   help="accept at this LR (default: where the expected completeness and "
                        "reliability are equal)")
    p.add_argument("--colour-column", default=None, metavar="NAME",
                   help="a colour column (e.g. r - W1): q(m) and n(m) per colour bin, as "
                        "radio hosts are redder than the background (objects without one "
                        "in a bin of their own)")
    p.add_argument("--colour-bins", type=int, default=4, metavar="N",
                   help="with --colour-column: N bins of equal counts (default 4)")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="an optical column copied for each source's counterpart as "
                        "lr_COLUMN (e.g. a photometric redshift or the survey's id); "
                        "repeatable")
    p.add_argument("--pairs", default=None, metavar="PATH",
                   help="also write every candidate pair (rows, offset, magnitude, LR, "
                        "reliability)")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw q(m) and n(m), completeness and reliability against the "
                        "threshold, and the offsets")
