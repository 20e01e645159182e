"""The ``cianna-jax lumfunc`` command: a catalogue's radio luminosity function by the 1/Vmax
method over the survey's coverage (:mod:`.astro.luminosity_function`)."""

from __future__ import annotations

import math
import os

from .cli_crossid import luminosity_options
from .cli_tables import select_option

__all__ = ["lumfunc", "add_parser"]


def _bins(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--z-bins: redshifts separated by commas, received {text!r}") from None


def lumfunc(args) -> int:
    """``cianna-jax lumfunc``: the table per redshift and luminosity bin, and a figure."""
    from .astro.catalogue import catalogue_format
    from .astro.luminosity_function import (
        catalogue_luminosity_function,
        luminosity_function_figure,
    )
    from .cli_tables import write_with_figure

    catalogue_format(args.out)  # refused before the work
    if args.fit_method is not None and args.fit is None:
        raise ValueError("--fit-method: with --fit (the evolution to fit)")
    method = args.fit_method or "ml"
    z_edges = _bins(args.z_bins)
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    lf = catalogue_luminosity_function(
        args.catalogue, z_column=args.z_column, image=args.image, area_deg2=args.area_deg2,
        flux_limit=args.flux_limit, completeness=args.completeness, snr=args.snr,
        primary_beam=args.pb, pb_min=args.pb_min, noise_box=args.noise_box, hdu=args.hdu,
        alpha=args.alpha, alpha_column=args.alpha_column,
        freq_hz=None if args.freq_mhz is None else args.freq_mhz * 1e6,
        rest_freq_hz=None if args.rest_freq_mhz is None else args.rest_freq_mhz * 1e6,
        z_edges=z_edges, dex=args.dex, cosmology=args.cosmology,
        z_weights=not args.no_z_weights, min_completeness=args.min_completeness,
        z_err_column=args.z_err_column, z_draws=args.z_draws, select=args.select)
    m = lf.meta
    print((f"selected: {m['selected']}; " if m.get("selected") else "")
          + f"{m['n_used']} of {m['n_sources']} sources ({m['n_with_z']} with a redshift"
          + (", weighted for those without in their flux bin" if m["z_weights"] else "")
          + (f"; their errors propagated by {m['z_draws']} draws" if "z_draws" in m else "")
          + f"); coverage: {m['coverage']}; {m['cosmology']}")
    print(f"{'z':>12}{'log L':>8}{'n':>6}  Phi (Mpc^-3 dex^-1)")
    t = lf.table()
    for r in t:
        mark = "" if r["complete"] else "  (incomplete)"
        print(f"{r['z_min']:>5.2f}-{r['z_max']:<6.2f}{r['log_l']:>8.2f}{r['n']:>6d}  "
              f"{r['phi']:.3e} +- {r['phi_err']:.1e}{mark}")
    fit = None
    if args.fit:
        from .astro.lumfunc_fit import compare_evolutions, fit_luminosity_function

        if args.fit == "compare":  # every evolution, the lowest AIC's kept
            fits = compare_evolutions(lf, method=method)
            print(f"evolution models by AIC ({'2k - 2 ln L' if method == 'ml' else 'chi2 + 2k'}"
                  "; the lowest preferred):")
            for f in fits:
                print(f"  {f.evolution:>5}: AIC {f.aic:.1f} (+{f.aic - fits[0].aic:.1f})")
            t.meta["luminosity_function"]["compare"] = {f.evolution: f.aic for f in fits}
            fit = fits[0]
        else:
            fit = fit_luminosity_function(lf, args.fit, method=method)
        print(f"double power law, {fit.summary()}")
        t.meta["luminosity_function"]["fit"] = {
            "evolution": fit.evolution, "method": fit.method, "chi2": fit.chi2, "dof": fit.dof,
            **({"log_likelihood": fit.log_likelihood, "n_sources": fit.n_sources}
               if fit.method == "ml" else {}),
            **{k: [v, fit.errors.get(k, float("nan"))] for k, v in fit.params.items()}}
    rest = m["rest_freq_hz"]
    write_with_figure(t, args, "luminosity function", lambda _: luminosity_function_figure(
        lf, title=f"Luminosity function: {os.path.basename(args.catalogue)}"
        + (f" at {rest / 1e6:g} MHz" if rest and math.isfinite(rest) else ""),
        model=fit, model_label=f"double power law ({fit.evolution if fit else ''} evolution, "
                               f"{'maximum likelihood' if method == 'ml' else 'binned'})"))
    return 0


def add_parser(sub) -> None:
    """The ``lumfunc`` subcommand's options, on the command line's subparsers ``sub``."""
    p = sub.add_parser("lumfunc", help="a catalogue's radio luminosity function (1/Vmax over "
                                       "the survey's coverage) from its sources' redshifts")
    p.add_argument("--catalogue", required=True,
                   help="the catalogue (flux; peak; a redshift column: e.g. crossid --keep)")
    p.add_argument("--z-column", required=True, metavar="NAME", help="the redshifts")
    select_option(p, "morph_class=fr1,fr2 or class=3", "function over the same coverage")
    p.add_argument("--z-err-column", default=None, metavar="NAME",
                   help="the redshifts' 1-sigma errors (photometric redshifts): propagated "
                        "by --z-draws draws of every redshift into the errors (phi_err_z)")
    p.add_argument("--z-draws", type=int, default=50,
                   help="with --z-err-column: the redshifts' draws (50)")
    p.add_argument("--out", required=True, help="Phi per redshift and luminosity bin")
    p.add_argument("--image", action="append", default=None,
                   help="the catalogue's image: the coverage is its visibility area at --snr "
                        "times the local rms; repeatable: a mosaic's images")
    p.add_argument("--snr", type=float, default=5.0,
                   help="with --image: the detection threshold of the visibility areas "
                        "(default 5; sources below it are left out)")
    p.add_argument("--area-deg2", type=float, default=None,
                   help="the survey's area (deg^2), with --flux-limit or --completeness")
    p.add_argument("--flux-limit", type=float, default=None, metavar="JY",
                   help="with --area-deg2: every source at or above it, none below")
    p.add_argument("--completeness", default=None, metavar="FOLDER",
                   help="cianna-jax inject's report: the coverage by its completeness by "
                        "flux, over --image's data or --area-deg2")
    p.add_argument("--min-completeness", type=float, default=0.5,
                   help="with --completeness: a bin is complete where the completeness at "
                        "its faintest luminosity at its far redshift reaches this (0.5)")
    p.add_argument("--pb", default=None, metavar="FITS|MODEL",
                   help="with --image: a catalogue corrected for this primary beam")
    p.add_argument("--pb-min", type=float, default=None, metavar="A")
    p.add_argument("--noise-box", type=int, default=None, metavar="PIXELS",
                   help="with --image: the noise map's box (default: the catalogue's)")
    p.add_argument("--hdu", default=None, help="HDU index or name")
    luminosity_options(p)
    p.add_argument("--z-bins", default="0.1,0.5,1,2,3",
                   help="redshift bin edges (default 0.1,0.5,1,2,3)")
    p.add_argument("--dex", type=float, default=0.4,
                   help="luminosity bins' width in dex (default 0.4)")
    p.add_argument("--no-z-weights", action="store_true",
                   help="no weights for the sources without a redshift")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw log Phi against log L per redshift bin")
    p.add_argument("--fit", default=None, choices=("none", "ple", "pde", "both", "compare"),
                   help="fit a double power law: with no evolution, pure luminosity "
                        "evolution L* (1+z)^k_L, pure density evolution Phi* (1+z)^k_D, or "
                        "both (parameters printed and in the table's metadata; drawn on "
                        "--figure); compare: all four, ranked by AIC, the best kept")
    p.add_argument("--fit-method", default=None, choices=("ml", "binned"),
                   help="ml (default): the maximum likelihood on the sources over the "
                        "coverage, no bins (Marshall et al. 1983); binned: least squares on "
                        "the complete bins of 5 sources or more")
