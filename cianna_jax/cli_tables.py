"""The ``cianna-jax`` commands that work on catalogues already written: ``sources``,
``spectral-index``, ``variability``, ``polarisation``, ``rm-synthesis``, ``counts`` and
``reference-check`` (their options here, but ``sources``' and ``counts``' in
:mod:`cianna_jax.cli`)."""

from __future__ import annotations

import argparse
import math
import os

__all__ = ["add_parsers", "sources", "spectral_index", "variability", "polarisation",
           "rm_synthesis", "counts", "reference", "cutouts", "qa", "stack", "transients",
           "alpha_map",
           "write_with_figure", "select_option"]


def sources(args) -> int:
    """``cianna-jax sources``: a source list from a catalogue of Gaussians."""
    from .astro.catalogue import catalogue_format, read_catalogue, write_catalogue
    from .astro.pybdsf_columns import TABLE_FORMATS, with_pybdsf_names
    from .astro.source_list import source_list
    from .astro.sources import GROUP_TOL, format_grouping, with_sources

    t = read_catalogue(args.catalogue)
    if args.group_tol is not None or "source_id" not in t.colnames:
        with_sources(t, GROUP_TOL if args.group_tol is None else args.group_tol,
                     what=args.catalogue)
    out = source_list(t, sizes=args.sizes)
    if args.names == "pybdsf" and catalogue_format(args.out) in TABLE_FORMATS:
        out = with_pybdsf_names(out)
    write_catalogue(out, args.out)
    print(f"{format_grouping(t)} -> {args.out}")
    return 0


def spectral_index(args) -> int:
    """``cianna-jax spectral-index``: spectral indices from catalogues at several
    frequencies."""
    from .astro.catalogue import read_catalogue
    from .astro.forced import catalogue_shapes
    from .astro.spectral_index import flux_limits, format_spectral_summary, spectral_indices

    if args.cube is not None:
        return _inband_spectral_index(args)
    for name in ("pb", "pb_min", "curvature"):
        if getattr(args, name) not in (None, False):
            raise ValueError(f"--{name.replace('_', '-')}: an option of --cube")
    if len(args.catalogue) < 2:
        raise ValueError(f"--catalogue: two or more, one per frequency; received "
                         f"{len(args.catalogue)}")
    if args.freq_mhz is not None and len(args.freq_mhz) != len(args.catalogue):
        raise ValueError(f"--freq-mhz: one per --catalogue ({len(args.catalogue)}), received "
                         f"{len(args.freq_mhz)}")
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    if args.limits_pb is not None and args.limits_from is None:
        raise ValueError("--limits-pb: the beam of the --limits-from image; give that too")
    if args.limits_from is not None and len(args.catalogue) != 2:
        raise ValueError("--limits-from: the second catalogue's image, with two catalogues; "
                         f"received {len(args.catalogue)}")
    tables = [read_catalogue(c) for c in args.catalogue]
    limits = None
    if args.limits_from is not None:
        from .astro.catalogue import column_values

        limits = flux_limits(args.limits_from, column_values(tables[0], "ra", args.catalogue[0]),
                             column_values(tables[0], "dec", args.catalogue[0]),
                             primary_beam=args.limits_pb,
                             noise_box=tables[1].meta.get("noise_box", 128),
                             shapes=None if args.as_points else catalogue_shapes(tables[0]))
    t = spectral_indices(tables, None if args.freq_mhz is None else
                         [f * 1e6 for f in args.freq_mhz], radius_arcsec=args.radius,
                         names=args.catalogue, limits=limits)
    from .astro.plots import spectral_index_plot

    return write_with_figure(t, args, format_spectral_summary(t), spectral_index_plot)


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
                         images=args.image, force_all=args.forced_all,
                         as_points=args.as_points)
    from .astro.plots import variability_plot

    return write_with_figure(t, args, format_variability_summary(t), variability_plot)


def _inband_spectral_index(args) -> int:
    """``cianna-jax spectral-index --cube``: in-band spectral indices from a sub-band cube."""
    from .astro.catalogue import read_catalogue
    from .astro.inband_alpha import format_inband_summary, inband_spectral_indices

    if len(args.catalogue) != 1:
        raise ValueError(f"--cube: one --catalogue (made on the full-band image); received "
                         f"{len(args.catalogue)}")
    for name in ("freq_mhz", "limits_from", "limits_pb", "radius"):
        if getattr(args, name) is not None:
            raise ValueError(f"--{name.replace('_', '-')}: not an option of --cube (the "
                             "cube's planes are measured at each source's position)")
    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    cube = args.cube[0] if len(args.cube) == 1 else args.cube
    t = inband_spectral_indices(read_catalogue(args.catalogue[0]), cube,
                                primary_beam=args.pb, pb_min=args.pb_min,
                                curvature=args.curvature, as_points=args.as_points,
                                what=args.catalogue[0])
    from .astro.plots import spectral_index_plot

    return write_with_figure(t, args, format_inband_summary(t), spectral_index_plot)


def polarisation(args) -> int:
    """``cianna-jax polarisation``: the sources' polarisation from Stokes Q, U (V) images."""
    from .astro.catalogue import read_catalogue
    from .astro.polarisation import format_polarisation_summary
    from .astro.polarisation import polarisation as measure

    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    t = measure(read_catalogue(args.catalogue), args.q, args.u, args.v,
                detect_sigma=args.detect_sigma, what=args.catalogue, as_points=args.as_points)
    from .astro.plots import polarisation_plot

    return write_with_figure(t, args, format_polarisation_summary(t), polarisation_plot)


def rm_synthesis(args) -> int:
    """``cianna-jax rm-synthesis``: the sources' rotation measures from Q and U cubes."""
    from .astro.catalogue import read_catalogue
    from .astro.rm_synthesis import format_rm_summary, rm_table

    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    q, u = (v[0] if len(v) == 1 else v for v in (args.q, args.u))
    t = rm_table(read_catalogue(args.catalogue), q, u, detect_sigma=args.detect_sigma,
                 phi_max=args.phi_max, clean=args.clean, clean_cutoff=args.clean_cutoff,
                 what=args.catalogue, as_points=args.as_points)
    from .astro.plots import rm_plot

    return write_with_figure(t, args, format_rm_summary(t), rm_plot)


def reference(args) -> int:
    """``cianna-jax reference-check``: a catalogue's astrometry and flux scale against a
    reference survey's catalogue (and the catalogue corrected by them)."""
    from .astro.catalogue import read_catalogue, write_catalogue
    from .astro.reference_check import apply_reference, format_reference_check, reference_check

    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    ours, ref = read_catalogue(args.catalogue), read_catalogue(args.reference)
    check = reference_check(ours, ref, alpha=args.alpha, our_freq_hz=_hz(args.freq_mhz),
                            ref_freq_hz=_hz(args.ref_freq_mhz), our_beam_arcsec=args.beam,
                            ref_beam_arcsec=args.ref_beam, radius_arcsec=args.radius,
                            isolation_arcsec=args.isolation, min_snr=args.min_snr,
                            summed={"auto": None, "isolated": False,
                                    "summed": True}[args.pairs],
                            what=args.catalogue, ref_what=args.reference)
    if args.corrected:  # refused (another frequency's fluxes, too few pairs) before writing
        corrected = apply_reference(ours, check, positions=args.correct != "fluxes",
                                    fluxes=args.correct != "positions")
    from .astro.plots import reference_plot

    write_with_figure(check.pairs, args, format_reference_check(check), reference_plot)
    if args.corrected:
        write_catalogue(corrected, args.corrected)
        print(f"catalogue corrected ({args.correct}) -> {args.corrected}")
    return 0


def stack(args) -> int:
    """``cianna-jax stack``: the image stacked at a catalogue's positions."""
    from .astro.catalogue import column_values, read_catalogue
    from .astro.stacking import format_stack, stack_figure, stack_positions, write_stack

    if args.figure:
        from .astro.completeness import require_plotting

        require_plotting()
    _fits_outputs(("--out", args.out))
    pos = read_catalogue(args.positions)
    ra, dec = (column_values(pos, c, args.positions) for c in ("ra", "dec"))
    if ra is None or dec is None:
        raise ValueError(f"--positions: {args.positions} has no ra and dec columns")
    exclude = None
    if args.exclude:
        ex = read_catalogue(args.exclude)
        exclude = tuple(column_values(ex, c, args.exclude) for c in ("ra", "dec"))
        if exclude[0] is None or exclude[1] is None:
            raise ValueError(f"--exclude: {args.exclude} has no ra and dec columns")
    st = stack_positions(args.image, ra, dec, half=args.half, exclude=exclude,
                         exclude_radius=args.exclude_radius, max_positions=args.max_positions,
                         bootstrap=args.bootstrap, seed=args.seed, hdu=args.hdu,
                         plane=args.plane)
    write_stack(st, args.out)
    print(format_stack(st))
    print(f"mean and median stacks -> {args.out}")
    _figure(args.figure, lambda: stack_figure(
        st, title=f"Stack at {os.path.basename(args.positions)}"))
    return 0


def transients(args) -> int:
    """``cianna-jax transients``: what changed between a reference image and an epoch."""
    from .astro.catalogue import catalogue_format, write_catalogue
    from .astro.transients import find_transients

    catalogue_format(args.out)  # refused before the work
    t = find_transients(args.image, args.reference, args.model, difference=args.difference,
                        scale=args.scale, obj_threshold=args.threshold, hdu=args.hdu,
                        plane=args.plane, progress=not args.quiet, regrid=args.regrid)
    write_catalogue(t, args.out)
    m = t.meta
    strong = sum(abs(float(v)) >= args.min_change for v in t["change_snr"] if math.isfinite(v))
    print(f"{m['n_brighter']} brighter and {m['n_fainter']} fainter found in the difference "
          f"(common beam {m['common_beam_arcsec'][0]:.3g} x {m['common_beam_arcsec'][1]:.3g}"
          f" arcsec); {strong} of them change by {args.min_change:g} sigma or more -> "
          f"{args.out}" + (f"; the difference -> {args.difference}" if args.difference else ""))
    return 0


def alpha_map(args) -> int:
    """``cianna-jax alpha-map``: a spectral-index map from images at several frequencies."""
    from .astro.alpha_map import spectral_index_map, write_alpha_map

    _fits_outputs(("--out", args.out), ("--error-out", args.error_out))
    m = spectral_index_map(args.image, min_snr=args.min_snr,
                           freqs_hz=None if not args.freq_mhz else
                           [f * 1e6 for f in args.freq_mhz], noise_box=args.noise_box,
                           hdu=args.hdu, plane=args.plane, regrid=args.regrid)
    write_alpha_map(m, args.image[0], args.out, args.error_out)
    freqs = ", ".join(f"{f / 1e6:g}" for f in m.freqs_hz)
    print(f"{m.n_pixels} pixels above {m.min_snr:g} sigma in all {len(m.freqs_hz)} images "
          f"({freqs} MHz, at their common beam {m.beam.bmaj:.3g} x {m.beam.bmin:.3g} "
          f"arcsec): median spectral index {m.median:.2f} -> {args.out}"
          + (f"; its error -> {args.error_out}" if args.error_out else ""))
    return 0


def cutouts(args) -> int:
    """``cianna-jax cutouts``: a gallery of a catalogue's sources over the image (and their
    FITS stamps)."""
    from .astro.catalogue import read_catalogue
    from .astro.completeness import require_plotting
    from .astro.cutouts import (
        beam_ellipse,
        catalogue_pixels,
        cut_stamps,
        select_rows,
        write_stamps,
    )
    from .astro.fits_image import open_image
    from .astro.plots import gallery_plot, save_figure
    from .io.atomic import check_folder

    require_plotting()
    if args.fits_dir:
        check_folder(args.fits_dir)
    ids = None if args.ids is None else [int(v) for v in args.ids.split(",") if v.strip()]
    t = read_catalogue(args.catalogue)
    rows = select_rows(t, args.select, args.n, ids=ids, seed=args.seed, what=args.catalogue)
    if not rows.size:
        raise ValueError(f"--select {args.select}: no such source in {args.catalogue}")
    with open_image(args.image, args.hdu, plane=args.plane) as img:
        stamps = cut_stamps(img, t, rows, size_arcsec=args.size, what=args.catalogue)
        what = f"ids {args.ids}" if ids is not None else f"the {args.select}"
        fig = gallery_plot(stamps, t, catalogue_pixels(t, img, args.catalogue),
                           title=f"{os.path.basename(args.catalogue)} on "
                                 f"{os.path.basename(args.image)}: {len(rows)} sources, {what}",
                           beam=beam_ellipse(img))
        save_figure(fig, args.out)
        print(f"{len(rows)} sources ({what}) -> {args.out}")
        if args.fits_dir:
            names = write_stamps(img, t, stamps, args.fits_dir)
            print(f"{len(names)} FITS stamps -> {args.fits_dir}/")
    return 0


def qa(args) -> int:
    """``cianna-jax qa``: a catalogue's quality figure, and its numbers."""
    from .astro.catalogue import read_catalogue
    from .astro.catalogue_qa import qa_numbers, qa_plot
    from .astro.completeness import require_plotting
    from .astro.plots import save_figure

    require_plotting()
    t = read_catalogue(args.catalogue)
    q = qa_numbers(t, args.catalogue)
    print(f"{q['n']} sources, {q['resolved_fraction']:.1%} resolved (the fits' sizes), "
          f"{q['above_envelope_fraction']:.1%} above the unresolved envelope (LoTSS's rule; "
          f"the two agree on {q['agree_with_resolved']:.1%}), median rms "
          f"{q['median_rms']:.3g} Jy/beam")
    print(f"{'SNR':>12}{'n':>7}{'S_int/S_peak':>14}{'scatter':>9}{'pos. err':>10}")
    for b in q["bins"]:
        lo, hi = b["snr"]
        print(f"{lo:>5g} - {hi:<5g}{b['n']:>7d}{b['ratio_median']:>14.3f}"
              f"{b['ratio_scatter']:>9.3f}{b['pos_err_median']:>9.3f}\"")
    save_figure(qa_plot(t, title=f"Quality of {os.path.basename(args.catalogue)}",
                        what=args.catalogue, numbers=q), args.out)
    print(f"figure -> {args.out}")
    return 0


def skymodel(args) -> int:
    """``cianna-jax skymodel``: a catalogue as a makesourcedb (BBS) sky model, with the
    spectral indices of another table where given."""
    from .astro.catalogue import read_catalogue, to_bbs

    t = read_catalogue(args.catalogue)
    if args.apparent:  # a primary-beam corrected catalogue back to what the antennas see
        if "pb" not in t.colnames:
            raise ValueError(f"--apparent: {args.catalogue} has no pb column (predict --pb "
                             "writes the beam's response at each source)")
        import numpy as np

        t = t.copy()
        t["flux"] = np.asarray(t["flux"], np.float64) * np.asarray(t["pb"], np.float64)
    if args.alpha is not None:
        t = _with_alpha(t, read_catalogue(args.alpha), args.catalogue, args.alpha,
                        args.max_alpha_err)
    try:
        default = (None if str(args.default_alpha).lower() == "none"
                   else float(args.default_alpha))
    except ValueError:
        raise ValueError(f"--default-alpha: a number or 'none', received "
                         f"{args.default_alpha!r}") from None
    text = to_bbs(t, freq_hz=_hz(args.freq_mhz), patches=args.patches, default_alpha=default,
                  min_flux=args.min_flux, what=args.catalogue)
    from .io.atomic import atomic_write

    with atomic_write(args.out) as fh:
        fh.write(text.encode())
    n = sum(1 for line in text.splitlines()[2:] if line and not line.startswith(", ,"))
    kinds = text.count(", GAUSSIAN, ")
    print(f"{n} components ({kinds} Gaussians, {n - kinds} points)"
          + (f" in {text.count(chr(10) + ', , ')} patches" if args.patches != "none" else "")
          + f" -> {args.out}")
    return 0


def _with_alpha(t, a, name: str, alpha_name: str, max_err: float):
    """Catalogue ``t`` with an ``alpha`` column from the spectral-index table ``a`` (its
    ``alpha`` where ``alpha_err`` <= ``max_err``): rows matched by ``id`` when both have
    ids, else by position within 1 arcsec."""
    import numpy as np

    from .astro.catalogue import CatalogueError, column_values
    from .astro.crossmatch import crossmatch_sky

    if "alpha" not in a.colnames:
        raise CatalogueError(f"{alpha_name}: no alpha column (a spectral-index table)")
    val = np.asarray(a["alpha"], np.float64)
    if "alpha_err" in a.colnames:
        with np.errstate(invalid="ignore"):
            val = np.where(np.asarray(a["alpha_err"], np.float64) <= max_err, val, np.nan)
    out = np.full(len(t), np.nan)
    if "id" in t.colnames and "id" in a.colnames:
        where = {int(i): k for k, i in enumerate(np.asarray(t["id"]))}
        for k, i in enumerate(np.asarray(a["id"])):
            if int(i) in where:
                out[where[int(i)]] = val[k]
    else:
        m = crossmatch_sky(column_values(a, "ra", alpha_name), column_values(a, "dec", alpha_name),
                           column_values(t, "ra", name), column_values(t, "dec", name), 1.0)
        out[m.truth] = val[m.det]
    t = t.copy()
    t["alpha"] = out
    return t


def _hz(mhz: float | None) -> float | None:
    return None if mhz is None else mhz * 1e6


def select_option(p, example: str, what: str) -> None:
    """The ``--select COLUMN=VALUES`` option of the survey statistics (counts, lumfunc,
    clustering): a subpopulation of the catalogue (:func:`.astro.catalogue.selected_rows`),
    ``example`` a value such as ``morph_class=sfg``, ``what`` the result (its ``counts``...)."""
    p.add_argument("--select", default=None, metavar="COLUMN=VALUES",
                   help=f"only the rows whose column is one of these values (by commas), "
                        f"e.g. {example}: a subpopulation's {what}")


def write_with_figure(t, args, summary: str, plot) -> int:
    """Write ``t`` to ``args.out`` and, with ``args.figure``, ``plot(t)`` there."""
    from .astro.catalogue import write_catalogue

    write_catalogue(t, args.out)
    print(f"{summary} -> {args.out}")
    _figure(args.figure, lambda: plot(t))
    return 0


def _fits_outputs(*named: tuple[str, str | None]) -> None:
    """ValueError (before any work) for an output option given a path that is not FITS."""
    for option, path in named:
        if path and not path.lower().endswith((".fits", ".fit", ".fts")):
            raise ValueError(f"{option}: a FITS file (.fits), received {path}")


def _image_plane_options(p) -> None:
    """``--hdu`` and ``--plane`` of the commands that read whole images."""
    p.add_argument("--hdu", default=None, help="HDU index or name")
    p.add_argument("--plane", type=int, default=None, help="a cube's plane (0-based)")


def _figure(path: str | None, make) -> None:
    """With a ``path`` (``--figure``), the figure ``make()`` saved there."""
    if path:
        from .astro.plots import save_figure

        save_figure(make(), path)
        print(f"figure -> {path}")


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
                        min_completeness=args.min_completeness, hdu=args.hdu,
                        visibility_snr=args.visibility_snr, primary_beam=args.pb,
                        pb_min=args.pb_min, noise_box=args.noise_box, unfold=args.unfold,
                        select=args.select)
    t = c.table()
    write_catalogue(t, args.out)
    scale, unit = flux_unit(c.edges)
    union = "" if c.image_areas_sr is None else f" (the union of {len(args.image)} images' data)"
    print(f"{int(c.n.sum())} sources over {t.meta['area_deg2']:.4g} deg^2{union}"
          + ("" if args.completeness is None else ", corrected by the injection's completeness")
          + ("" if args.visibility_snr is None else
             f", each over its visibility area ({args.visibility_snr:g} sigma)"))
    print(f"{'S (' + unit + ')':>12}{'n':>7}{'n_corr':>9}{'compl.':>8}  S^2.5 dN/dS (Jy^1.5/sr)")
    for r in t:
        mark = "" if r["complete"] else "  (below the completeness limit)"
        comp = "-" if not math.isfinite(float(r["completeness"])) else f"{r['completeness']:.2f}"
        print(f"{r['flux_mid'] * scale:>12.4g}{r['n']:>7d}{r['n_corrected']:>9.1f}{comp:>8}  "
              f"{r['counts']:.4g} +- {r['counts_err']:.2g}{mark}")
    print(f"-> {args.out}")
    from .astro.plots import counts_plot

    _figure(args.figure, lambda: counts_plot(
        c, title=f"Source counts: {os.path.basename(args.catalogue)}"))
    return 0


def _as_points_option(parser) -> None:
    parser.add_argument("--as-points", action="store_true",
                        help="force every source as unresolved (the beam), not a resolved "
                             "source with its deconvolved shape")


def add_parsers(sub) -> None:
    """The ``spectral-index``, ``variability``, ``polarisation``, ``rm-synthesis`` and
    ``reference-check`` subcommands' options, on the command line's subparsers ``sub``."""
    spx = sub.add_parser("spectral-index", help="spectral indices of the sources of "
                                                "catalogues of one sky at several frequencies")
    spx.add_argument("--catalogue", action="append", required=True,
                     help="a catalogue (or source list) per frequency; the first one's sources "
                          "are kept, the others matched to them")
    spx.add_argument("--freq-mhz", type=float, action="append", default=None,
                     help="each catalogue's frequency (MHz), in their order (default: the "
                          "frequency predict recorded from each image's header)")
    spx.add_argument("--limits-from", default=None, metavar="FITS",
                     help="the second catalogue's image: each source of the first not found "
                          "in it gets a limit on alpha from 5 local rms there")
    spx.add_argument("--limits-pb", default=None, metavar="FITS|MODEL",
                     help="with --limits-from, that image is not primary-beam corrected: its "
                          "limits divided by this beam's response (a beam image, or "
                          "gaussian:FWHM, cosine:FWHM, meerkat at that image's frequency)")
    spx.add_argument("--cube", default=None, action="append", metavar="FITS",
                     help="instead of catalogues at other frequencies: a cube of sub-band "
                          "planes (a FREQ axis), or repeated: sub-band images at their own "
                          "frequencies; each source's flux forced at each plane and a power "
                          "law fitted (in-band spectral indices; one --catalogue)")
    spx.add_argument("--pb", default=None, metavar="FITS|MODEL",
                     help="with --cube: the cube is not primary-beam corrected: each plane "
                          "divided by this beam's response at its frequency (a model scales "
                          "as 1 / frequency: gaussian:FWHM, cosine:FWHM at the cube's "
                          "reference frequency, meerkat; or a beam cube)")
    spx.add_argument("--pb-min", type=float, default=None, metavar="A",
                     help="with --pb: planes where the response is below A left out")
    spx.add_argument("--curvature", action="store_true",
                     help="with --cube: fit a curvature beta too")
    _as_points_option(spx)
    _matched_table_options(spx, "alpha against flux and its histogram")

    var = sub.add_parser("variability", help="sources whose flux varies between epochs "
                                             "(catalogues of one field at one frequency)")
    var.add_argument("--catalogue", action="append", required=True,
                     help="a catalogue per epoch, in time order")
    var.add_argument("--image", action="append", default=None, metavar="FITS",
                     help="each epoch's image, in the catalogues' order: a source not found "
                          "at an epoch gets its flux measured there (forced photometry)")
    var.add_argument("--forced-all", action="store_true",
                     help="with --image: every source's flux measured by forced photometry "
                          "at every epoch (not the detections' fits: no flux boosting of faint "
                          "detections)")
    _as_points_option(var)
    var.add_argument("--flux-scale-error", type=float, default=0.0, metavar="FRACTION",
                     help="the epochs' flux-scale uncertainty, added in quadrature to each "
                          "flux error (e.g. 0.05)")
    _matched_table_options(var, "eta against v and |vs| against |m|")

    pol = sub.add_parser("polarisation", help="the polarisation of a catalogue's sources "
                                              "from Stokes Q, U (and V) images")
    pol.add_argument("--catalogue", required=True, help="the catalogue (Stokes I)")
    pol.add_argument("--q", required=True, metavar="FITS",
                     help="the Stokes Q image (or an IQUV cube: its Q plane)")
    pol.add_argument("--u", required=True, metavar="FITS",
                     help="the Stokes U image (or the cube again)")
    pol.add_argument("--v", default=None, metavar="FITS",
                     help="the Stokes V image (or the cube again)")
    pol.add_argument("--detect-sigma", type=float, default=5.0,
                     help="polarised flux over its error to call a source polarised (5)")
    _as_points_option(pol)
    pol.add_argument("--out", required=True, help="table (.ecsv, .csv, .fits, .xml)")
    pol.add_argument("--figure", default=None, metavar="PNG",
                     help="also draw the fraction against flux and the angles")

    rms = sub.add_parser("rm-synthesis", help="Faraday rotation measures of a catalogue's "
                                              "sources from Stokes Q and U cubes")
    rms.add_argument("--catalogue", required=True, help="the catalogue (Stokes I)")
    rms.add_argument("--q", required=True, action="append", metavar="FITS",
                     help="the Stokes Q cube (a frequency axis; or an IQUV cube); or repeated: "
                          "one Q image per channel, each at its header's frequency")
    rms.add_argument("--u", required=True, action="append", metavar="FITS",
                     help="the Stokes U cube (or its channels' images, as --q)")
    rms.add_argument("--detect-sigma", type=float, default=8.0,
                     help="peak of |F| over its noise to report a rotation measure (8)")
    rms.add_argument("--phi-max", type=float, default=None, metavar="RAD_M2",
                     help="the largest Faraday depth searched (default: the channels' limit)")
    rms.add_argument("--clean", action="store_true",
                     help="RM-CLEAN each Faraday spectrum first: the clean peak, the number "
                          "of Faraday components (n_faraday, faraday_complex) and the second")
    rms.add_argument("--clean-cutoff", type=float, default=3.0, metavar="SIGMA",
                     help="with --clean: clean down to this many times the FDF's noise (3)")
    _as_points_option(rms)
    rms.add_argument("--out", required=True, help="table (.ecsv, .csv, .fits, .xml)")
    rms.add_argument("--figure", default=None, metavar="PNG",
                     help="also draw the rotation measures against flux and their histogram")

    qa_ = sub.add_parser("qa", help="a catalogue's quality at a glance (integrated / peak "
                                    "flux and position errors against SNR, fluxes, the sky "
                                    "by local rms), with no truth")
    qa_.add_argument("--catalogue", required=True, help="the catalogue")
    qa_.add_argument("--out", required=True, help="the figure (.png, .pdf)")

    cut = sub.add_parser("cutouts", help="a gallery of a catalogue's sources over the image "
                                         "(and their FITS stamps), to look at them")
    cut.add_argument("--catalogue", required=True, help="the catalogue")
    cut.add_argument("--image", required=True, help="its 2D FITS image")
    cut.add_argument("--out", required=True, help="the gallery (.png, .pdf)")
    cut.add_argument("--select", default="brightest",
                     choices=("brightest", "faintest", "flagged", "resolved", "multiple",
                              "near_bright", "random"),
                     help="which sources: brightest (default), faintest, flagged (edge, "
                          "blended, deblended or several Gaussians), resolved, multiple (S_Code "
                          "M), near_bright (around bright sources, where artefacts are: least "
                          "reliable first), random")
    cut.add_argument("--n", type=int, default=25, help="how many (25)")
    cut.add_argument("--ids", default=None, metavar="ID,ID,...",
                     help="these catalogue ids instead of --select")
    cut.add_argument("--size", type=float, default=None, metavar="ARCSEC",
                     help="the stamps' side (default: 10 beams, at least 2.5 source sizes)")
    cut.add_argument("--fits-dir", default=None, metavar="FOLDER",
                     help="also write each stamp as FITS (its WCS, beam, the source's id)")
    cut.add_argument("--seed", type=int, default=0, help="for --select random")
    cut.add_argument("--hdu", default=None, help="HDU index or name (default: first image)")
    cut.add_argument("--plane", type=int, default=None, help="a cube's plane as the image")

    sky = sub.add_parser("skymodel", help="a catalogue as a sky model for calibration "
                                          "(makesourcedb / BBS text: DP3, WSClean)")
    sky.add_argument("--catalogue", required=True,
                     help="the catalogue (this package's, PyBDSF's Gaussian list, ...)")
    sky.add_argument("--alpha", default=None, metavar="TABLE",
                     help="a spectral-index table (spectral-index, with or without --cube): "
                          "each component's alpha, matched by id (else by position)")
    sky.add_argument("--max-alpha-err", type=float, default=0.3,
                     help="with --alpha: indices less certain than this are not used (0.3)")
    sky.add_argument("--default-alpha", default=str(-0.8), metavar="ALPHA|none",
                     help="the spectral index of components without one (-0.8, PyBDSF's; "
                          "none: a flat spectrum)")
    sky.add_argument("--patches", default="none", choices=("none", "source", "island"),
                     help="group the components into patches (directions) per source or "
                          "island")
    sky.add_argument("--min-flux", type=float, default=0.0, metavar="JY",
                     help="leave out components fainter than this")
    sky.add_argument("--freq-mhz", type=float, default=None,
                     help="the reference frequency (default: the catalogue's, from its image)")
    sky.add_argument("--apparent", action="store_true",
                     help="a primary-beam corrected catalogue (predict --pb): the fluxes as "
                          "the image shows them (times its pb column), for a calibration "
                          "that applies no beam model")
    sky.add_argument("--out", required=True, help="sky model text file (e.g. field.skymodel)")

    trn = sub.add_parser("transients", help="what appeared, brightened, faded or vanished "
                                            "between a reference image and an epoch (image "
                                            "subtraction at a common beam)")
    trn.add_argument("--image", required=True, help="the new epoch (FITS)")
    trn.add_argument("--reference", required=True,
                     help="the reference image, on the same pixel grid (or --regrid)")
    trn.add_argument("--regrid", action="store_true",
                     help="a reference on another pixel grid is resampled onto the epoch's "
                          "(bicubic, at the common beam)")
    trn.add_argument("--model", required=True, help="the detector's model card")
    trn.add_argument("--out", required=True, help="the candidates (.ecsv, .csv, .fits, .xml)")
    trn.add_argument("--difference", default=None, metavar="FITS",
                     help="also write the difference image (epoch - reference)")
    trn.add_argument("--scale", type=float, default=1.0,
                     help="the epoch's flux scale over the reference's: the epoch divided by "
                          "it first (e.g. from reference-check; default 1)")
    trn.add_argument("--threshold", type=float, default=None,
                     help="the detector's objectness threshold (default: the card's)")
    trn.add_argument("--min-change", type=float, default=5.0, metavar="SIGMA",
                     help="counted as a change from this significance in the summary (5)")
    _image_plane_options(trn)
    trn.add_argument("--quiet", action="store_true", help="no progress")

    amp = sub.add_parser("alpha-map", help="a spectral-index map from images of one field at "
                                           "several frequencies (at their common beam)")
    amp.add_argument("--image", action="append", required=True,
                     help="an image (FITS) per frequency, one pixel grid; repeat, two or more")
    amp.add_argument("--out", required=True, help="the spectral-index map (FITS)")
    amp.add_argument("--error-out", default=None, metavar="FITS", help="also its error map")
    amp.add_argument("--regrid", action="store_true",
                     help="images on other pixel grids are resampled onto the first's "
                          "(bicubic, at the common beam)")
    amp.add_argument("--min-snr", type=float, default=5.0,
                     help="pixels above this many local rms in every image (5)")
    amp.add_argument("--freq-mhz", type=float, action="append", default=None,
                     help="each image's frequency, in order (default: from the headers)")
    amp.add_argument("--noise-box", type=int, default=128, metavar="PIXELS",
                     help="the noise maps' box (128)")
    _image_plane_options(amp)

    stk = sub.add_parser("stack", help="the image stacked at a catalogue's positions: the "
                                       "mean emission of a population below the detection "
                                       "limit")
    stk.add_argument("--image", required=True, help="the radio image (2D, or --plane)")
    stk.add_argument("--positions", required=True,
                     help="the catalogue whose positions are stacked (ra, dec)")
    stk.add_argument("--out", required=True,
                     help="the mean (primary HDU) and median (MEDIAN) stacks, FITS")
    stk.add_argument("--exclude", default=None, metavar="CATALOGUE",
                     help="the image's detections: positions with one within "
                          "--exclude-radius are left out (the undetected members only)")
    stk.add_argument("--exclude-radius", type=float, default=2.0, metavar="BEAMS",
                     help="in beam FWHMs (default 2)")
    stk.add_argument("--half", type=int, default=20, metavar="PIXELS",
                     help="the cutouts' half-size (default 20: 41x41 pixels)")
    stk.add_argument("--max-positions", type=int, default=20000,
                     help="at most this many positions, chosen at random beyond (20000)")
    stk.add_argument("--bootstrap", type=int, default=200,
                     help="resamplings of the positions for the errors (200)")
    stk.add_argument("--seed", type=int, default=0)
    _image_plane_options(stk)
    stk.add_argument("--figure", default=None, metavar="PNG",
                     help="also draw the stacks and their radial profiles")

    ref = sub.add_parser("reference-check", help="a catalogue's astrometry and flux scale "
                                                 "against a reference survey's catalogue")
    ref.add_argument("--catalogue", required=True, help="the catalogue to check")
    ref.add_argument("--reference", required=True,
                     help="the reference catalogue (ra, dec, flux in any catalogue format; "
                          "ra_err, dec_err, flux_err when it has them)")
    ref.add_argument("--freq-mhz", type=float, default=None,
                     help="the catalogue's frequency (default: the one predict recorded)")
    ref.add_argument("--ref-freq-mhz", type=float, default=None,
                     help="the reference's frequency (needed when the catalogue's is known)")
    ref.add_argument("--alpha", type=float, default=-0.7,
                     help="spectral index scaling the reference's fluxes to ours (-0.7)")
    ref.add_argument("--beam", type=float, default=None, metavar="ARCSEC",
                     help="the catalogue's beam FWHM (default: the one predict recorded)")
    ref.add_argument("--ref-beam", type=float, default=None, metavar="ARCSEC",
                     help="the reference's beam FWHM, e.g. 45 for NVSS (default: ours)")
    ref.add_argument("--min-snr", type=float, default=10.0,
                     help="our sources compared: SNR at least this (10)")
    ref.add_argument("--radius", type=float, default=None, metavar="ARCSEC",
                     help="matching radius (default: the larger beam FWHM)")
    ref.add_argument("--isolation", type=float, default=None, metavar="ARCSEC",
                     help="no other source of either catalogue within this (default: twice "
                          "the larger beam)")
    ref.add_argument("--pairs", default="auto", choices=("auto", "isolated", "summed"),
                     help="isolated: compact isolated sources one-to-one; summed: each "
                          "isolated reference source against the sum of ours within its beam "
                          "(a reference of lower resolution); auto (default): summed when the "
                          "reference's beam is over twice ours")
    ref.add_argument("--out", required=True, help="the pairs' table (.ecsv, .csv, .fits, .xml)")
    ref.add_argument("--figure", default=None, metavar="PNG",
                     help="also draw the offsets and the flux ratio against flux")
    ref.add_argument("--corrected", default=None, metavar="PATH",
                     help="also write the catalogue corrected: positions moved by the median "
                          "offsets, fluxes divided by the median ratio, errors widened by "
                          "the systematic parts")
    ref.add_argument("--correct", default="both", choices=("both", "positions", "fluxes"),
                     help="what --corrected corrects (fluxes only at the same frequency)")


def _matched_table_options(p: argparse.ArgumentParser, figure: str) -> None:
    """``--radius``, ``--out`` and ``--figure`` of the commands that match catalogues."""
    p.add_argument("--radius", type=float, default=None, metavar="ARCSEC",
                   help="matching radius (default: half the largest beam FWHM)")
    p.add_argument("--out", required=True, help="table (.ecsv, .csv, .fits, .xml)")
    p.add_argument("--figure", default=None, metavar="PNG", help=f"also draw {figure}")
