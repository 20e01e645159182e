"""The ``cianna-jax simulate`` command: synthetic SDC1-like fields and HI-like cubes with
their truth, for training, scoring and the checks in ``benchmarks/``."""

from __future__ import annotations

import argparse

__all__ = ["simulate", "add_parser", "pair"]


def pair(text: str) -> tuple[float, float]:
    """``"A,B"`` -> (A, B) for an option."""
    a, sep, b = text.partition(",")
    try:
        if not sep:
            raise ValueError(text)
        return float(a), float(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers as A,B (MEAN,STD such as -0.7,0.2; RA,DEC); received "
                                         f"{text!r}") from None


def simulate(args) -> int:
    """``cianna-jax simulate``: a synthetic field (or cube) and its truth."""
    from .astro.catalogue import catalogue_format
    from .astro.synthetic import synthetic_field, truth_table, write_fits, write_primary_beam

    if args.truth:
        catalogue_format(args.truth)
    if args.pb_out and args.pb_fwhm is None:
        raise ValueError("--pb-out: the beam of --pb-fwhm; give --pb-fwhm too")
    if args.morphologies:
        return _simulate_morphologies(args)
    if args.cube:
        if args.pb_fwhm is not None:
            raise ValueError("--pb-fwhm: for continuum fields (a cube's beam changes with "
                             "frequency)")
        return _simulate_cube(args)
    if args.discs:
        raise ValueError("--discs: an option of --cube (rotating discs are spectral lines)")
    size = 1024 if args.size is None else args.size
    density = 0.003 if args.density is None else args.density
    if not 0.0 <= args.blend_fraction <= 1.0:
        raise ValueError(f"--blend-fraction must be in [0, 1], got {args.blend_fraction}")
    if args.blend_members != 1 and not args.blend_fraction:
        raise ValueError("--blend-members: companions of the sources --blend-fraction picks; "
                         "give --blend-fraction too")
    field = synthetic_field(size, seed=args.seed, noise=args.noise, density=density,
                            nan_border=args.nan_border, sdc1_layout=args.sdc1_layout,
                            blend_fraction=args.blend_fraction,
                            blend_members=args.blend_members, freq_hz=args.freq_mhz * 1e6,
                            spectral_index=args.spectral_index, epoch=args.epoch,
                            variable_fraction=args.variable_fraction,
                            variability=args.variability, stokes=args.stokes,
                            pol_fraction=args.pol_fraction, pb_fwhm=args.pb_fwhm)
    write_fits(args.out, field)
    if args.pb_out:
        write_primary_beam(args.pb_out, field)
    msg = (f"{size}x{size} field at {args.freq_mhz:g} MHz, noise {args.noise:g} Jy/beam -> "
           f"{args.out}")
    if args.truth:
        msg += _truth_written(truth_table(field), args.truth, "sources", "SNR")
    if args.pb_out:
        msg += f"; primary beam (FWHM {args.pb_fwhm:g} arcmin) -> {args.pb_out}"
    print(msg)
    return 0


def _truth_written(t, path: str, what: str, snr: str) -> str:
    """Write the truth ``t`` to ``path``; the report's words for it."""
    from .astro.catalogue import write_catalogue

    write_catalogue(t, path)
    return f"; {len(t)} true {what} ({int((t['snr'] >= 5).sum())} of {snr} >= 5) -> {path}"


def _simulate_morphologies(args) -> int:
    import numpy as np

    from .astro.morphology_sim import LABELS, morphology_field, write_morphology_field

    for name in ("cube", "discs", "nan_border", "sdc1_layout", "blend_fraction", "pb_fwhm",
                 "epoch", "spectral_index", "density"):
        if getattr(args, name) not in (None, False, 0, 0.0):
            raise ValueError(f"--{name.replace('_', '-')}: not an option of --morphologies")
    size = 2048 if args.size is None else args.size
    f = morphology_field(size, n_sources=args.sources, seed=args.seed, noise=args.noise,
                         beam_pixels=args.beam_pixels, snr_range=args.snr_range,
                         las_beams=args.las_beams, pair_fraction=args.pair_fraction)
    write_morphology_field(args.out, f)
    n = np.bincount(f.kind, minlength=len(LABELS))
    msg = (f"{size}x{size} field of sources " + ", ".join(f"{c} {k}" for k, c in
                                                         zip(n, LABELS) if k or c != "pair")
           + f", noise {args.noise:g} Jy/beam -> {args.out}")
    if args.truth:
        from .astro.catalogue import write_catalogue

        write_catalogue(f.truth_table(), args.truth)
        msg += f"; truth (a morphology column) -> {args.truth}"
    print(msg)
    return 0


def _simulate_cube(args) -> int:
    import numpy as np

    from .astro.synthetic_cube import cube_truth_table, synthetic_cube, write_cube_fits

    for name in ("nan_border", "sdc1_layout", "blend_fraction"):
        if getattr(args, name):
            raise ValueError(f"--{name.replace('_', '-')}: not an option of --cube")
    if args.blend_members != 1:
        raise ValueError("--blend-members: not an option of --cube")
    size = 192 if args.size is None else args.size
    kw = {} if args.density is None else {"density": args.density}
    sc = synthetic_cube((args.channels, size, size), seed=args.seed, noise=args.noise,
                        discs=args.discs, **kw)
    write_cube_fits(args.out, sc)
    msg = (f"{args.channels} channels of {sc.dfreq / 1e3:g} kHz from {sc.freq0 / 1e6:g} MHz, "
           f"{size}x{size} pixels, noise {args.noise:g} Jy/beam -> {args.out}")
    if args.truth:
        t = cube_truth_table(sc)
        msg += _truth_written(t, args.truth, "lines", "peak SNR")
        if sc.discs is not None and len(t):  # what the fluxes made of them
            m, w = np.asarray(t["log_mhi"]), np.asarray(t["fwhm"]) / sc.pixel_scale
            msg += (f"; HI masses 10^{np.nanmin(m):.1f}-10^{np.nanmax(m):.1f} Msun, FWHM "
                    f"{np.nanmin(w):.1f}-{np.nanmax(w):.1f} pixels")
    print(msg)
    return 0


def add_parser(sub) -> None:
    """The ``simulate`` subcommand's options."""
    sim = sub.add_parser("simulate", help="write a synthetic SDC1-like FITS field and its truth")
    sim.add_argument("--out", required=True, help="FITS image to write")
    sim.add_argument("--truth", default=None, help="true catalogue to write (.ecsv, ...)")
    sim.add_argument("--size", type=int, default=None,
                     help="image side in pixels (default 1024; with --cube 192)")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--noise", type=float, default=1e-5, help="noise rms (Jy/beam)")
    sim.add_argument("--density", type=float, default=None,
                     help="sources per (sky) pixel (default 0.003; with --cube 0.0002)")
    sim.add_argument("--nan-border", type=int, default=0, help="blanked border width (pixels)")
    sim.add_argument("--sdc1-layout", action="store_true",
                     help="4D (Stokes, Freq, Y, X) array as the SDC1 images")
    sim.add_argument("--blend-fraction", type=float, default=0.0,
                     help="share of the sources given a fainter point-like companion 1 to "
                          "2.5 beams away (close pairs, for training and scoring deblending)")
    sim.add_argument("--blend-members", type=int, default=1,
                     help="companions of each source --blend-fraction picks, each at its own "
                          "angle (2: groups of three)")
    sim.add_argument("--freq-mhz", type=float, default=560.0,
                     help="observing frequency written to the header (MHz; default 560)")
    sim.add_argument("--spectral-index", type=pair, default=None, metavar="MEAN,STD",
                     help="each source's own spectral index drawn from this normal law, its "
                          "560 MHz flux scaled to --freq-mhz (a seed's sources at several "
                          "frequencies, each with its own noise); the truth gets alpha")
    sim.add_argument("--epoch", type=int, default=None,
                     help="one observation of the sky (0, 1, ...): its own noise, the "
                          "--variable-fraction's sources at their flux of that epoch")
    sim.add_argument("--variable-fraction", type=float, default=0.1,
                     help="with --epoch: the sources that vary (the same at every epoch)")
    sim.add_argument("--variability", type=float, default=0.3,
                     help="with --epoch: a variable source's flux times exp(N(0, this))")
    sim.add_argument("--stokes", default="I", choices=("I", "Q", "U", "V"),
                     help="the Stokes image of the sky to write (Q, U: each source polarised "
                          "by --pol-fraction at its own angle; the truth gets pol_frac, evpa)")
    sim.add_argument("--pol-fraction", type=pair, default=(0.05, 0.03), metavar="MEAN,STD",
                     help="with --stokes: the polarised fractions' normal law (0.05,0.03)")
    sim.add_argument("--pb-fwhm", type=float, default=None, metavar="ARCMIN",
                     help="an image that is not primary-beam corrected: each source seen "
                          "through a Gaussian primary beam of this FWHM centred on the field "
                          "(uniform noise); the truth keeps true fluxes and gets pb")
    sim.add_argument("--pb-out", default=None, metavar="FITS",
                     help="with --pb-fwhm: write the primary beam as a FITS image")
    sim.add_argument("--cube", action="store_true",
                     help="an HI-like spectral-line cube (RA, Dec, frequency; 30 kHz channels "
                          "from 950 MHz) and its line catalogue instead of a continuum field")
    sim.add_argument("--channels", type=int, default=96, help="channels of a --cube")
    sim.add_argument("--morphologies", action="store_true",
                     help="a field of compact sources, star-forming galaxies and FR I / FR II "
                          "radio galaxies, placed apart, with a morphology column in the "
                          "truth: training and test data for cianna-jax classify")
    sim.add_argument("--sources", type=int, default=400,
                     help="with --morphologies: the number of sources (fewer where they do "
                          "not fit apart)")
    sim.add_argument("--pair-fraction", type=float, default=0.0,
                     help="with --morphologies: this fraction of the placements two unrelated "
                          "compact or star-forming sources 3-10 beams apart, with a row of "
                          "class 'pair' at their midpoint (what double-source criteria pair "
                          "by chance: a classifier learns to tell them from FR IIs)")
    sim.add_argument("--beam-pixels", type=float, default=4.0,
                     help="with --morphologies: the beam's FWHM in pixels (1.5 arcsec each)")
    sim.add_argument("--snr-range", type=pair, default=(10.0, 300.0), metavar="LOW,HIGH",
                     help="with --morphologies: the sources' fluxes over the noise (log-"
                          "uniform)")
    sim.add_argument("--las-beams", type=pair, default=(3.0, 10.0), metavar="LOW,HIGH",
                     help="with --morphologies: the radio galaxies' largest angular sizes in "
                          "beams (log-uniform)")
    sim.add_argument("--discs", action="store_true",
                     help="with --cube: rotating HI discs (double-horned lines, emission moving "
                          "across the sky with the channel) instead of Gaussian lines")
