"""The ``cianna-jax clustering`` command: a catalogue's angular two-point correlation
function against randoms that share its selection (:mod:`.astro.catalogue_clustering`)."""

from __future__ import annotations

import os

from .cli_tables import select_option

__all__ = ["clustering", "add_parser"]


def _gamma(text: str) -> float | None:
    """``--gamma``: a number, or "free"."""
    if text.strip().lower() == "free":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--gamma: a number or 'free', received {text!r}") from None


def clustering(args) -> int:
    """``cianna-jax clustering``: w(theta) table, the randoms and a figure."""
    from .astro.catalogue import catalogue_format, write_catalogue
    from .astro.catalogue_clustering import format_clustering, measure_clustering
    from .astro.clustering import correlation_figure
    from .cli_tables import write_with_figure

    gamma = _gamma(args.gamma)
    for path in (args.out, args.randoms_out):  # refused before the work
        if path:
            catalogue_format(path)
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    nz = None
    if args.cross and (args.nz or args.redshifts):
        raise ValueError("--nz, --redshifts: the clustering length is for a catalogue's own "
                         "correlation, not a cross-correlation (--cross)")
    if args.nz is not None or args.redshifts is not None:
        from .astro.limber import read_nz

        if (args.nz is None) == (args.redshifts is None) or (args.redshifts is None) != (
                args.z_column is None):
            raise ValueError("--nz TABLE (columns z, n), or --redshifts CATALOGUE with "
                             "--z-column NAME: one of them")
        nz = read_nz(args.nz or args.redshifts, args.z_column)
    res = measure_clustering(
        args.catalogue, args.image, rms_map=args.rms_map, injection=args.injection,
        snr=args.snr, flux_min=args.flux_min, primary_beam=args.pb, pb_min=args.pb_min,
        max_rms=args.max_rms,
        noise_box=args.noise_box, hdu=args.hdu, bins=args.bins,
        theta_min=None if args.theta_min is None else args.theta_min / 60.0,
        theta_max=None if args.theta_max is None else args.theta_max / 60.0,
        estimator=args.estimator, jackknife=args.jackknife, gamma=gamma, fit=not args.no_fit,
        randoms_per_source=args.randoms_per_source, naive=args.uniform_too, nz=nz,
        epsilon=args.epsilon, cosmology=args.cosmology, cross=args.cross,
        cross_randoms=args.cross_randoms, bias=args.bias, bias_scale=args.bias_scale,
        nonlinear=args.nonlinear, seed=args.seed, select=args.select)
    print(format_clustering(res))
    if args.randoms_out:
        write_catalogue(res.randoms.table(meta={"clustering": res.correlation.meta}),
                        args.randoms_out)
        print(f"{res.randoms.ra.size} randoms -> {args.randoms_out}")
    write_with_figure(res.table(), args, "w(theta)", lambda _: correlation_figure(
        res.correlation, naive=res.naive,
        title=f"Angular correlation: {os.path.basename(args.catalogue)}" + (
            f" x {os.path.basename(args.cross)}" if args.cross else "")))
    return 0


def add_parser(sub) -> None:
    """The ``clustering`` subcommand's options, on the command line's subparsers ``sub``."""
    p = sub.add_parser("clustering", help="a catalogue's angular two-point correlation "
                                          "function, against randoms with its selection "
                                          "(the noise map's pattern taken out)")
    p.add_argument("--catalogue", required=True,
                   help="the catalogue (ra, dec, flux; peak when it has one): a source list "
                        "(predict --source-list, cianna-jax sources), not Gaussians")
    p.add_argument("--image", required=True, action="append",
                   help="the catalogue's image: where the randoms go, and its noise; "
                        "repeatable: a mosaic's images (predict's merged catalogue), each "
                        "position on the image whose centre is nearest")
    p.add_argument("--out", required=True,
                   help="w(theta) per bin with jackknife and Poisson errors and the pair "
                        "counts (.ecsv, .csv, .fits, .xml)")
    p.add_argument("--rms-map", default=None, metavar="FITS", action="append",
                   help="the rms image the catalogue was found against (predict --rms-map; "
                        "needed after --adaptive-rms); default: the image's noise map; one "
                        "per --image, in their order")
    p.add_argument("--injection", default=None, metavar="FOLDER",
                   help="cianna-jax inject's report: randoms kept by its completeness by "
                        "SNR instead of a hard --snr threshold")
    p.add_argument("--snr", type=float, default=5.0,
                   help="without --injection: sources and randoms kept at peak >= SNR x "
                        "local rms (default 5)")
    p.add_argument("--flux-min", type=float, default=None, metavar="JY",
                   help="the flux cut (default: the peak found over half the area)")
    p.add_argument("--max-rms", type=float, default=None, metavar="JY",
                   help="only where the local rms (through --pb) is at most this, Jy/beam: "
                        "the noisiest parts masked for sources and randoms alike")
    p.add_argument("--bins", type=int, default=10, help="separation bins (default 10)")
    p.add_argument("--theta-min", type=float, default=None, metavar="ARCMIN",
                   help="the smallest separation (default 4 beams, or 1 arcmin)")
    p.add_argument("--theta-max", type=float, default=None, metavar="ARCMIN",
                   help="the largest (default the footprint's radius)")
    p.add_argument("--estimator", default="landy-szalay",
                   choices=["landy-szalay", "hamilton", "natural"])
    p.add_argument("--jackknife", type=int, default=16, metavar="N",
                   help="jackknife regions of equal area for the errors (default 16)")
    p.add_argument("--gamma", default="1.8",
                   help="the power law's slope, fixed (default 1.8) or 'free'")
    p.add_argument("--no-fit", action="store_true", help="no power-law fit")
    p.add_argument("--cross", default=None, metavar="CATALOGUE",
                   help="instead: the cross-correlation with another population (ra, dec: "
                        "galaxies, quasars, clusters) on the image's data")
    p.add_argument("--cross-randoms", default=None, metavar="CATALOGUE",
                   help="with --cross: its randoms (ra, dec), for Landy & Szalay's cross "
                        "estimator (without: D1D2 / R1D2 - 1, with ours only)")
    p.add_argument("--nz", default=None, metavar="TABLE",
                   help="the sources' redshift distribution (columns z, n; e.g. from SKADS "
                        "or T-RECS): the clustering length r0 by Limber's equation")
    p.add_argument("--redshifts", default=None, metavar="CATALOGUE",
                   help="instead of --nz: a catalogue of (a sample of) the sources' "
                        "redshifts, e.g. crossid --keep z_phot's, with --z-column")
    p.add_argument("--z-column", default=None, metavar="NAME",
                   help="with --redshifts: its redshift column (e.g. lr_z_phot)")
    p.add_argument("--bias", action="store_true",
                   help="with --nz or --redshifts: also the linear bias against the matter's "
                        "correlation (linear power spectrum, Limber)")
    p.add_argument("--bias-scale", type=float, default=5.0, metavar="MPC_H",
                   help="with --bias: the bins beyond this comoving scale at the median "
                        "redshift (default 5 h^-1 Mpc; smaller ones are non-linear)")
    select_option(p, "morph_class=fr1,fr2", "clustering (its randoms from its own fluxes)")
    p.add_argument("--nonlinear", action="store_true",
                   help="with --bias: against the matter's non-linear spectrum (halofit, "
                        "Takahashi et al. 2012), which holds to smaller --bias-scale "
                        "(e.g. 1 h^-1 Mpc)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="the clustering's evolution, (1+z)^-(3+epsilon) in proper units "
                        "(default gamma - 3: constant in comoving coordinates; 0: stable)")
    p.add_argument("--cosmology", default="Planck18",
                   help="one of astropy's, for r0's distances (default Planck18)")
    p.add_argument("--randoms-per-source", type=float, default=10.0, metavar="N",
                   help="randoms per selected source (default 10)")
    p.add_argument("--randoms-out", default=None, metavar="PATH",
                   help="also write the randoms (ra, dec, flux, peak, local_rms) for other "
                        "codes")
    p.add_argument("--uniform-too", action="store_true",
                   help="also measure against uniform randoms (no selection), to see what "
                        "the noise pattern alone adds (w_uniform columns, in the figure)")
    p.add_argument("--pb", default=None, metavar="FITS|MODEL", action="append",
                   help="a catalogue corrected for this primary beam (as predict --pb): the "
                        "randoms see the rms divided by its response; one for all --image "
                        "or one per --image")
    p.add_argument("--pb-min", type=float, default=None, metavar="A",
                   help="with --pb: the catalogue's cut on the beam's response")
    p.add_argument("--noise-box", type=int, default=None, metavar="PIXELS",
                   help="the noise map's box (default: predict's, from the catalogue's "
                        "metadata; else 128)")
    p.add_argument("--hdu", default=None, help="HDU index or name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw w(theta) with its errors and the fit")
