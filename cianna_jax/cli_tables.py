"""The ``cianna-jax`` commands that work on catalogues already written: ``sources``,
``spectral-index`` and ``counts`` (their options are in :mod:`cianna_jax.cli`)."""

from __future__ import annotations

import math
import os

__all__ = ["sources", "spectral_index", "variability", "polarisation", "counts"]


def sources(args) -> int:
    """``cianna-jax sources``: a source list from a catalogue of Gaussians."""
    from .astro.catalogue import read_catalogue, write_catalogue
    from .astro.source_list import source_list
    from .astro.sources import GROUP_TOL, format_grouping, with_sources

    t = read_catalogue(args.catalogue)
    if args.group_tol is not None or "source_id" not in t.colnames:
        with_sources(t, GROUP_TOL if args.group_tol is None else args.group_tol,
                     what=args.catalogue)
    write_catalogue(source_list(t), args.out)
    print(f"{format_grouping(t)} -> {args.out}")
    return 0


def spectral_index(args) -> int:
    """``cianna-jax spectral-index``: spectral indices from catalogues at several
    frequencies."""
    from .astro.catalogue import read_catalogue
    from .astro.spectral_index import flux_limits, format_spectral_summary, spectral_indices

    if len(args.catalogue) < 2:
        raise ValueError(f"--catalogue: two or more, one per frequency; received "
                         f"{len(args.catalogue)}")
    if args.freq_mhz is not None and len(args.freq_mhz) != len(args.catalogue):
        raise ValueError(f"--freq-mhz: one per --catalogue ({len(args.catalogue)}), received "
                         f"{len(args.freq_mhz)}")
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    if args.limits_from is not None and len(args.catalogue) != 2:
        raise ValueError("--limits-from: the second catalogue's image, with two catalogues; "
                         f"received {len(args.catalogue)}")
    tables = [read_catalogue(c) for c in args.catalogue]
    limits = None
    if args.limits_from is not None:
        from .astro.catalogue import column_values

        limits = flux_limits(args.limits_from, column_values(tables[0], "ra", args.catalogue[0]),
                             column_values(tables[0], "dec", args.catalogue[0]))
    t = spectral_indices(tables, None if args.freq_mhz is None else
                         [f * 1e6 for f in args.freq_mhz], radius_arcsec=args.radius,
                         names=args.catalogue, limits=limits)
    from .astro.plots import spectral_index_plot

    return _write_with_figure(t, args, format_spectral_summary(t), spectral_index_plot)


def variability(args) -> int:
    """``cianna-jax variability``: sources whose flux varies between epochs."""
    from .astro.catalogue import read_catalogue
    from .astro.variability import format_variability_summary
    from .astro.variability import variability as find_variability

    if len(args.catalogue) < 2:
        raise ValueError(f"--catalogue: two or more, one per epoch; received "
                         f"{len(args.catalogue)}")
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    if args.image is not None and len(args.image) != len(args.catalogue):
        raise ValueError(f"--image: one per --catalogue ({len(args.catalogue)}), received "
                         f"{len(args.image)}")
    t = find_variability([read_catalogue(c) for c in args.catalogue], radius_arcsec=args.radius,
                         flux_scale_error=args.flux_scale_error, names=args.catalogue,
                         images=args.image)
    from .astro.plots import variability_plot

    return _write_with_figure(t, args, format_variability_summary(t), variability_plot)


def polarisation(args) -> int:
    """``cianna-jax polarisation``: the sources' polarisation from Stokes Q, U (V) images."""
    from .astro.catalogue import read_catalogue
    from .astro.polarisation import format_polarisation_summary
    from .astro.polarisation import polarisation as measure

    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    t = measure(read_catalogue(args.catalogue), args.q, args.u, args.v,
                detect_sigma=args.detect_sigma, what=args.catalogue)
    from .astro.plots import polarisation_plot

    return _write_with_figure(t, args, format_polarisation_summary(t), polarisation_plot)


def _write_with_figure(t, args, summary: str, plot) -> int:
    """Write ``t`` to ``args.out`` and, with ``args.figure``, ``plot(t)`` there."""
    from .astro.catalogue import write_catalogue

    write_catalogue(t, args.out)
    print(f"{summary} -> {args.out}")
    if args.figure:
        from .astro.plots import save_figure

        save_figure(plot(t), args.figure)
        print(f"figure -> {args.figure}")
    return 0


def counts(args) -> int:
    """``cianna-jax counts``: a catalogue's differential source counts."""
    from .astro.catalogue import write_catalogue
    from .astro.injection import flux_unit
    from .astro.source_counts import count_catalogue

    if args.figure:  # refused before the work
        from .astro.completeness import require_plotting

        require_plotting()
    c = count_catalogue(args.catalogue, image=args.image, area_deg2=args.area_deg2,
                        completeness=args.completeness, per_decade=args.per_decade,
                        min_completeness=args.min_completeness, hdu=args.hdu)
    t = c.table()
    write_catalogue(t, args.out)
    scale, unit = flux_unit(c.edges)
    union = "" if c.image_areas_sr is None else f" (the union of {len(args.image)} images' data)"
    print(f"{int(c.n.sum())} sources over {t.meta['area_deg2']:.4g} deg^2{union}"
          + ("" if args.completeness is None else ", corrected by the injection's completeness"))
    print(f"{'S (' + unit + ')':>12}{'n':>7}{'n_corr':>9}{'compl.':>8}  S^2.5 dN/dS (Jy^1.5/sr)")
    for r in t:
        mark = "" if r["complete"] else "  (below the completeness limit)"
        comp = "-" if not math.isfinite(float(r["completeness"])) else f"{r['completeness']:.2f}"
        print(f"{r['flux_mid'] * scale:>12.4g}{r['n']:>7d}{r['n_corrected']:>9.1f}{comp:>8}  "
              f"{r['counts']:.4g} +- {r['counts_err']:.2g}{mark}")
    print(f"-> {args.out}")
    if args.figure:
        from .astro.plots import counts_plot, save_figure

        save_figure(counts_plot(c, title=f"Source counts: {os.path.basename(args.catalogue)}"),
                    args.figure)
        print(f"figure -> {args.figure}")
    return 0
