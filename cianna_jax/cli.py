"""The ``cianna-jax`` console command: ``train``, ``predict``, ``val``, ``simulate``, ``demo``,
``info`` and ``--version``.

Before a command does any JAX work, :func:`cianna_jax.xla_cpu.tune` sets the XLA CPU
flags measured best for these networks (``CIANNA_JAX_KEEP_XLA_FLAGS=1``: leave them), and
the command restarts itself once with glibc's huge-page tunable for XLA's step buffers
(:mod:`cianna_jax.host_memory`; ``CIANNA_JAX_KEEP_MALLOC=1``: leave the allocator alone).
Errors in the inputs (files, columns, settings) end the command with one line naming
the problem on stderr and exit status 2; no partial output file is left behind.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys

from . import (
    cli_classify,
    cli_clustering,
    cli_confusion,
    cli_crossid,
    cli_diffuse,
    cli_lumfunc,
    cli_simulate,
    cli_tables,
    cli_train,
    host_cpu,
    host_memory,
    xla_cpu,
)
from ._version import __version__
from .cli_simulate import pair

__all__ = ["main"]

#: Optional extras: (extra name, distribution, what it adds).
EXTRAS = (("astro", "astropy", "FITS images, WCS and catalogues: predict, val, simulate"),
          ("plot", "matplotlib", "PNG plots of demo and val"),
          ("progress", "tqdm", "progress bars"))


def _extras() -> list[tuple[str, str, str | None, str]]:
    """(extra, distribution, installed version or None, purpose) of each optional extra."""
    from importlib import metadata

    out = []
    for extra, dist, what in EXTRAS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
        out.append((extra, dist, version, what))
    return out


def _info() -> int:
    import jax
    import numpy as np
    import optax

    print(f"cianna_jax {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}, "
          f"numpy {np.__version__}, optax {optax.__version__}")
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")
    print(f"host memory: {'huge pages asked for' if host_memory.started_with_hugepages() else 'glibc defaults'} "
          f"(GLIBC_TUNABLES at start; see cianna_jax.host_memory)")
    cpu = host_cpu.cpu_info()
    print(f"cpu: {cpu['model'] or '?'}, {os.cpu_count()} CPUs, vector unit "
          f"{cpu['vector_isa'] or '?'}, bfloat16 units: {', '.join(cpu['bf16']) or 'none'}")
    print(f"default backend: {jax.default_backend()}")
    for d in jax.devices():
        print(f"  device {d.id}: {d.platform} {getattr(d, 'device_kind', '')}")
    try:
        import pallas_kernels  # noqa: F401

        print("pallas_kernels: importable")
    except ImportError as err:  # pragma: no cover - packaging problem
        print(f"pallas_kernels: not importable ({err})")
    print("optional extras:")
    for extra, dist, version, what in _extras():
        state = f"{dist} {version}" if version else f"missing (pip install 'cianna-jax[{extra}]')"
        print(f"  {extra:<9} {state:<44} {what}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    metrics = run_demo(out=args.out, quick=args.quick, seed=args.seed)
    return 0 if metrics["recall"] > 0 else 1


def _beam(text: str | None):
    if text is None:
        return None
    from .astro.fits_image import Beam

    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--beam: expected BMAJ,BMIN[,BPA] in arcsec/deg, got {text!r}") from None
    if len(vals) not in (2, 3) or not all(map(math.isfinite, vals)) or min(vals[:2]) <= 0:
        raise ValueError(f"--beam: expected BMAJ,BMIN[,BPA] with positive sizes, got {text!r}")
    return Beam(*vals)


def _predict(args) -> int:
    from .astro.flags import flag_counts
    from .astro.pipeline import predict_file

    fragments = None
    if args.fragments_from is not None:  # read (and refused) before the work
        from .astro.completeness import read_fragment_rates

        fragments = read_fragment_rates(args.fragments_from)
        args.reliability = True
    res = predict_file(args.image, args.model, args.out, fmt=args.format,
                       obj_threshold=args.threshold, hdu=args.hdu, plane=args.plane,
                       beam=_beam(args.beam),
                       tile=args.tile, batch_size=args.batch, fit=not args.no_fit,
                       progress=not args.quiet, mixed_precision=args.mixed_precision,
                       residual=args.residual, model_image=args.model_image,
                       rms_map=args.rms_map, background_map=args.background_map,
                       cubelets=args.cubelets, flux_scale_error=args.flux_scale_error,
                       astrometric_error=args.astrometric_error,
                       reliability=args.reliability,
                       target_reliability=args.target_reliability,
                       reliability_figure=args.reliability_figure, fragments=fragments,
                       max_peaks=args.max_peaks, source_list=args.source_list,
                       group_tol=args.group_tol, names=args.names,
                       primary_beam=_primary_beams(args),
                       pb_min=args.pb_min, bright=_bright_rule(args),
                       adaptive_rms=_adaptive_rms(args), classifier=args.classifier)
    t = res.timings
    n = len(res.table)
    sky = "ra/dec from the WCS" if "ra" in res.table.colnames else "pixel positions only (no WCS)"
    if len(args.image) > 1:
        found = sum(len(p.table) for p in res.parts)
        sky = (f"from {len(args.image)} images: {found} detected, each kept once from the "
               "image whose centre is nearest")
    print(f"{n} sources -> {', '.join(args.out)} ({sky})")
    print(flag_counts(res.table), end="")
    if args.pb:
        from .astro.primary_beam import format_correction

        print(format_correction(res.parts if len(args.image) > 1 else [res]))
    if args.source_list:
        from .astro.sources import format_grouping

        print(f"{format_grouping(res.table)} -> {args.source_list}")
    if "det_class" in res.table.colnames:
        from .astro.catalogue import column_text

        names = res.table.meta.get("classes") or sorted(set(column_text(res.table["det_class"])))
        found = column_text(res.table["det_class"])
        print("classified by the detector (det_class, det_prob, det_p_<class>): "
              + ", ".join(f"{found.count(c)} {c}" for c in names))
    if args.classifier:
        print(f"rows classified by {args.classifier} (morph_class, morph_prob, p_<class>)")
    for what, path in (("residual image", args.residual), ("model image", args.model_image),
                       ("rms map", args.rms_map), ("background map", args.background_map),
                       ("cubelets, moment maps and spectra", args.cubelets),
                       ("reliability figure", args.reliability_figure)):
        if path:
            print(f"{what} -> {path}")
    if args.reliability or args.target_reliability is not None or args.reliability_figure:
        from .astro.reliability import format_reliability, format_scan, summed_estimate

        parts = res.parts if len(args.image) > 1 else [res]
        for path, p in zip(args.image, parts) if args.target_reliability is not None else []:
            print((f"{path}: " if len(parts) > 1 else "")
                  + format_scan(p.threshold_scan, p.detections.obj_threshold,
                                args.target_reliability), end="")
        print(format_reliability(summed_estimate([p.reliability for p in parts])), end="")
        from .astro.bright_zones import format_zones

        for path, p in zip(args.image, parts):
            line = format_zones(p.table)
            print((f"{path}: " if line and len(parts) > 1 else "") + line, end="")
    print(f"{t['tiles']} tiles, {t['tiles_per_s']:.1f} tiles/s; noise map {t['noise_s']:.1f} s, "
          f"detection {t['detect_s']:.1f} s, measurement {t['measure_s']:.1f} s"
          + (f", reliability test {t['reliability_s']:.1f} s" if "reliability_s" in t else ""))
    return 0


def _val(args) -> int:
    from .astro.validate import validate

    rep = validate(args.image, args.model, args.catalogue, args.out,
                   obj_threshold=args.threshold, match_factor=args.match_radius,
                   min_truth_snr=args.min_snr, sdc1_freq=args.sdc1_freq,
                   sdc1_area=args.sdc1_area, plots=not args.no_plots, progress=not args.quiet,
                   hdu=args.hdu, plane=args.plane, mixed_precision=args.mixed_precision,
                   compare=_compare_names(args.compare), reliability=args.reliability,
                   target_reliability=args.target_reliability, max_peaks=args.max_peaks,
                   primary_beam=_primary_beams(args), pb_min=args.pb_min,
                   compare_apparent=args.compare_apparent, bright=_bright_rule(args),
                   adaptive_rms=_adaptive_rms(args), class_column=args.class_column,
                   classifier=args.classifier)
    print(rep.text)
    print(f"files in {args.out}/: {', '.join(rep.files)}")
    return 0


def _inject(args) -> int:
    from .astro.completeness import require_plotting
    from .io.atomic import check_folder

    check_folder(args.out)  # refused before the work
    if args.write_image and len(args.image) > 1:
        raise ValueError("--write-image: one image at a time (it writes that image with its "
                         "first round's sources)")
    if args.write_image and not os.path.isdir(os.path.dirname(os.path.abspath(args.write_image))):
        raise FileNotFoundError(f"--write-image: no folder for {args.write_image}")
    if not args.no_plots:
        require_plotting()
    beams = _primary_beams(args)
    args.beams = beams if isinstance(beams, list) else [beams] * len(args.image)
    if len(args.image) > 1:  # a mosaic's images: each injected on its own, a folder each
        from .astro.completeness import check_injection_image
        from .astro.fits_image import open_image
        from .astro.model_card import load_model

        model = load_model(args.model, tile=args.tile)
        for path in args.image:  # every image fit for the model before the first one's work
            with open_image(path, args.hdu, beam=_beam(args.beam), plane=args.plane) as img:
                check_injection_image(img, model)
        for k, (path, folder) in enumerate(zip(args.image, _report_folders(args.image))):
            if not args.quiet:
                print(f"{path}:", file=sys.stderr)
            _inject_one(args, path, model, os.path.join(args.out, folder), args.beams[k])
        return 0
    _inject_one(args, args.image[0], args.model, args.out, args.beams[0])
    return 0


def _report_folders(paths: list[str]) -> list[str]:
    """One report folder name per image: its file name without the FITS extension, or its
    whole path's (separators as "_") when two share a file name; numbered from 1 when two
    would still be the same."""
    from .astro.mosaic import image_names

    out = []
    for stem in image_names(paths):
        for ext in (".gz", ".fz", ".fits", ".fit", ".fts"):
            stem = stem[:-len(ext)] if stem.lower().endswith(ext) else stem
        out.append(stem.strip(os.sep).replace(os.sep, "_"))
    return out if len(set(out)) == len(out) else [f"{i + 1}_{n}" for i, n in enumerate(out)]


def _inject_one(args, image: str, model, out: str, beam=None) -> None:
    from .astro.completeness import (
        format_completeness,
        measure_completeness,
        write_injection_report,
    )

    res = measure_completeness(image, model, n_sources=args.sources,
                               snr_range=args.snr_range, size_range=args.size_range,
                               separation=args.separation, obj_threshold=args.threshold,
                               seed=args.seed, hdu=args.hdu, plane=args.plane,
                               beam=_beam(args.beam), tile=args.tile, batch_size=args.batch,
                               fit=not args.no_fit, progress=not args.quiet,
                               mixed_precision=args.mixed_precision,
                               reliability=args.reliability,
                               line_width_range=args.line_width_range,
                               extended_fraction=args.extended_fraction,
                               max_peaks=args.max_peaks, primary_beam=beam,
                               pb_min=args.pb_min, adaptive_rms=_adaptive_rms(args))
    files = write_injection_report(res, out, plots=not args.no_plots)
    print(format_completeness(res))
    print(f"files in {out}/: {', '.join(files)}")
    if args.write_image:
        from .astro.fits_image import open_image
        from .astro.residual import write_injected

        with open_image(image, args.hdu, beam=_beam(args.beam), plane=args.plane) as img:
            write_injected(img.with_sources(res.sources[0]), args.write_image)
        what = "cube with the {} lines" if res.sources[0].ndim == 3 else "image with the {} sources"
        print(f"{what.format(len(res.sources[0]))} of round 1 -> {args.write_image}")


def _bright_rule(args):
    """``--bright-snr`` and ``--bright-radius`` as a rule of the near_bright flag (None: the
    default rule)."""
    given = {k: v for k, v in (("snr", args.bright_snr), ("radius", args.bright_radius))
             if v is not None}
    if not given:
        return None
    from .astro.flags import BrightRule

    return BrightRule(**given)


def _adaptive_rms(args):
    """``--adaptive-rms`` (implied by ``--rms-box-bright`` and ``--adaptive-thresh``) as the
    noise map's rule around bright sources, None without it; its reach and threshold are the
    near_bright rule's unless ``--adaptive-thresh`` is given."""
    if not (args.adaptive_rms or args.rms_box_bright or args.adaptive_thresh is not None):
        return None
    from .astro.adaptive_noise import AdaptiveRms

    kw = {"thresh": args.adaptive_thresh if args.adaptive_thresh is not None
          else getattr(args, "bright_snr", None), "reach": getattr(args, "bright_radius", None)}
    if args.rms_box_bright:
        try:
            sizes = [float(v) for v in args.rms_box_bright.split(",")]
        except ValueError:
            sizes = []
        if len(sizes) not in (1, 2):
            raise ValueError(f"--rms-box-bright: BOX or BOX,STEP in pixels, received "
                             f"{args.rms_box_bright!r}")
        kw.update(zip(("box", "step"), sizes))
    return AdaptiveRms(**{k: v for k, v in kw.items() if v is not None})


def _primary_beams(args):
    """``--pb`` (one, or one per ``--image``) and ``--pb-centre`` as beams; None without."""
    if not args.pb:
        if args.pb_min is not None or args.pb_centre is not None:
            raise ValueError("--pb-min, --pb-centre: options of --pb")
        return None
    from .astro.primary_beam import primary_beam

    specs = args.pb if isinstance(args.pb, list) else [args.pb]
    beams = [primary_beam(s, args.pb_centre) for s in specs]
    if len(beams) == 1:
        return beams[0]
    if len(beams) != len(args.image):
        raise ValueError(f"--pb: one, or one per --image ({len(args.image)}); received "
                         f"{len(beams)}")
    return beams


def _names_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--names", default="cianna", choices=("cianna", "pybdsf"),
                   help="column names of the tables written: this package's (default) or "
                        "PyBDSF's gaul/srl names and units (Total_flux, E_Total_flux, Maj in "
                        "deg, S_Code, ids from 0...), for tools made for PyBDSF")


def _group_tol_option(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--group-tol", type=float, default=default, metavar="TOL",
                   help="PyBDSF's grouping tolerance: larger values make larger sources "
                        "(default 1, PyBDSF's" + (", or the catalogue's own source_id"
                                                  if default is None else "") + ")")


def _compare_names(values: list[str]) -> dict[str, str]:
    """``--compare [NAME=]CATALOGUE`` values as name -> path (default name: the file's
    name without its extensions); a name given twice is an error."""
    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or os.path.exists(v):  # a path that holds "=" is a path
            name, path = os.path.basename(v).split(".")[0] or v, v
        if not name or not path:
            raise ValueError(f"--compare: expected [NAME=]CATALOGUE, received {v!r}")
        if name in out or name.startswith("cianna_jax"):
            raise ValueError(f"--compare: the name {name!r} is taken; give another as NAME=path")
        out[name] = path
    return out


#: astro.deblend.MAX_PEAKS (not imported here: the parser stays light)
_DEFAULT_MAX_PEAKS = 4


def _max_peaks_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-peaks", type=int, default=_DEFAULT_MAX_PEAKS, metavar="N",
                   help="a detection box holding separate significant peaks (close sources "
                        "boxed once) splits into one source per peak, at most N "
                        f"(default {_DEFAULT_MAX_PEAKS}; 1: never, e.g. to keep a radio "
                        "galaxy's lobes in one box); 2D images with a beam")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cianna-jax", description="CIANNA in JAX: radio-source detection in FITS images, "
                                       "demo and tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a YOLO detector on a synthetic radio field and "
                                       "evaluate it on a held-out field")
    demo.add_argument("--quick", action="store_true", help="a run of under a minute")
    demo.add_argument("--seed", type=int, default=0, help="random seed (data and training)")
    demo.add_argument("--out", default="cianna_demo", help="output folder (PNG, CSV, network)")
    sub.add_parser("info", help="versions, devices, default backend and optional extras")

    def common(p, several: str | None = None, image_help: str | None = None):
        p.add_argument("--model", required=True,
                       help="model card (.json), network (.dat with its .json beside it) "
                            "or a 'cianna-jax train' run folder (its best model)")
        if image_help is not None:
            p.add_argument("--image", required=True, action="append", help=image_help)
        elif several is not None:
            p.add_argument("--image", required=True, action="append",
                           help="FITS image (2D, SDC1 4D) or cube; repeatable: overlapping "
                                "images (mosaics) give one catalogue, each source from the "
                                f"image whose centre is nearest{several}")
        else:
            p.add_argument("--image", required=True, help="FITS image (2D, SDC1 4D) or cube")
        p.add_argument("--threshold", type=float, default=None,
                       help="objectness threshold (default: the model card's)")
        p.add_argument("--hdu", default=None, help="HDU index or name (default: first image)")
        p.add_argument("--plane", type=int, default=None,
                       help="plane of a cube's third axis (0-based) taken as the 2D image, e.g. "
                            "the MFS plane of a multi-frequency image")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.add_argument("--mixed-precision", default="off", metavar="MODE",
                       help="CIANNA mixed_precision mode of the detector's passes: off "
                            "(float32, default), TF32C_FP32A, BF16C_FP32A or FP16C_FP32A "
                            "(faster on CPU, outputs within 1e-3)")

    def pb_options(p, several: bool):
        p.add_argument("--pb", default=None, action="append" if several else None,
                       metavar="FITS|MODEL",
                       help="the image is not primary-beam corrected: divide the sources' "
                            "fluxes by this primary beam's response at each (a FITS image of "
                            "the beam, or a model: gaussian:FWHM, cosine:FWHM in arcmin, "
                            "meerkat; a model is centred on the image's reference position)"
                            + ("; repeatable: one per --image" if several else ""))
        p.add_argument("--pb-min", type=float, default=None, metavar="A",
                       help="with --pb: leave out sources where the beam's response is below "
                            "A (e.g. 0.2)")
        p.add_argument("--pb-centre", type=pair, default=None, metavar="RA,DEC",
                       help="with a --pb model: its centre in degrees (default: the image's "
                            "reference position)")

    def reliability_options(p):
        p.add_argument("--reliability", action="store_true",
                       help="also run the detector on the inverted image: the fraction of "
                            "false detections per SNR bin, each source's reliability column "
                            "(about twice the run time)")
        p.add_argument("--target-reliability", type=float, default=None, metavar="R",
                       help="choose the objectness threshold as the lowest, of the model "
                            "card's and 0.05, 0.1, ... 0.95 above it, whose catalogue the "
                            "inverted-image test estimates at least R reliable, e.g. 0.9 "
                            "(implies --reliability; not with --threshold)")
        p.add_argument("--bright-snr", type=float, default=None, metavar="SNR",
                       help="sources this bright (peak SNR, default 100) may have artefacts "
                            "around them: the fainter sources there are flagged near_bright "
                            "and the reliability test is made for them apart")
        p.add_argument("--bright-radius", type=float, default=None, metavar="BEAMS",
                       help="how far artefacts reach around bright sources, in beam FWHMs "
                            "(default 30)")
        adaptive_options(p)

    def adaptive_options(p):
        p.add_argument("--adaptive-rms", action="store_true",
                       help="raise the noise map around bright sources (within 30 beam "
                            "FWHMs, or --bright-radius) to the rms of small boxes there, "
                            "artefacts counted as noise (PyBDSF's adaptive_rms_box): fewer "
                            "false sources near bright ones, a few faint real ones lost there")
        p.add_argument("--rms-box-bright", default=None, metavar="BOX[,STEP]",
                       help="the small box and its grid's step in pixels (PyBDSF's "
                            "rms_box_bright; default 10 beam FWHMs and a third of it; "
                            "implies --adaptive-rms)")
        p.add_argument("--adaptive-thresh", type=float, default=None, metavar="SNR",
                       help="the peak SNR of a bright source for --adaptive-rms (PyBDSF's "
                            "adaptive_thresh; default 100, or --bright-snr's; implies "
                            "--adaptive-rms)")

    pred = sub.add_parser("predict", help="detect sources in a FITS image and write a catalogue")
    common(pred, several="")
    reliability_options(pred)
    pb_options(pred, several=True)
    pred.add_argument("--out", required=True, action="append",
                      help="catalogue: .ecsv, .csv, .fits, .xml (VOTable), .sdc1/.txt (SDC1 "
                           "text), .sdc2 (SDC2 text, a cube's lines), .reg (DS9 regions) or "
                           ".skymodel (a BBS / makesourcedb sky model); repeatable: several "
                           "files, one run")
    pred.add_argument("--format", default=None, help="output format, overriding the extension "
                                                     "(ascii.ecsv, csv, fits, votable, sdc1, "
                                                     "sdc2, bbs)")
    pred.add_argument("--cpu-devices", type=int, default=1, metavar="N",
                      help="run the detector as N JAX CPU devices, each on its own tiles "
                           "(e.g. one per core; default 1: one device on all cores). "
                           "Measure it on your machine: on a 2-core cloud machine the "
                           "SDC1 detector ran about 6%% slower with 2 while the host kept the "
                           "cores close, and batch prediction 15-20%% faster while it kept "
                           "them far apart (benchmarks/README.md)")
    pred.add_argument("--tile", type=int, default=None, help="tile size (default: the card's)")
    pred.add_argument("--batch", type=int, default=None,
                      help="tiles per batch (default: the card's; an image of fewer tiles "
                           "runs in the next power of two)")
    pred.add_argument("--beam", default=None,
                      help="BMAJ,BMIN[,BPA] (arcsec, deg) when the header has no beam")
    pred.add_argument("--no-fit", action="store_true", help="measure from boxes, no Gaussian fit")
    _max_peaks_option(pred)
    pred.add_argument("--flux-scale-error", type=float, default=0.0, metavar="FRACTION",
                      help="the flux scale's fractional uncertainty (calibration, e.g. 0.1), "
                           "added in quadrature to flux_err and peak_err (default 0)")
    pred.add_argument("--astrometric-error", type=float, default=0.0, metavar="ARCSEC",
                      help="the positions' systematic 1-sigma uncertainty (e.g. 0.2 arcsec "
                           "against a reference catalogue), added in quadrature to ra_err, "
                           "dec_err, x_err and y_err (default 0)")
    pred.add_argument("--residual", default=None, metavar="FITS",
                      help="also write the image minus the fitted Gaussians (one image)")
    pred.add_argument("--model-image", default=None, metavar="FITS",
                      help="also write the fitted Gaussians as an image (one image)")
    pred.add_argument("--rms-map", default=None, metavar="FITS",
                      help="also write the local noise rms the sources were found with, at "
                           "every pixel (one image)")
    pred.add_argument("--background-map", default=None, metavar="FITS",
                      help="also write the local background, at every pixel (one image)")
    pred.add_argument("--reliability-figure", default=None, metavar="PNG",
                      help="also draw the inverted-image test: reliability and counts per "
                           "SNR bin, and the threshold scan with --target-reliability "
                           "(implies --reliability; needs matplotlib)")
    pred.add_argument("--fragments-from", default=None, metavar="FOLDER",
                      help="a 'cianna-jax inject' report folder of an image like this one: "
                           "its measured rates of the detector's errors around sources are "
                           "added to the reliability (implies --reliability)")
    pred.add_argument("--source-list", default=None, metavar="PATH",
                      help="also write the sources the catalogue's Gaussians make (PyBDSF's "
                           "srl beside its gaul: flux summed, centroid, moments' size, S_Code)")
    _group_tol_option(pred, 1.0)
    _names_option(pred)
    pred.add_argument("--classifier", default=None, metavar="MODEL",
                      help="a morphology classifier (cianna-jax classify train's best.json): "
                           "the catalogue's and the source list's rows get its classes "
                           "(p_<class>, morph_class, morph_prob)")
    pred.add_argument("--cubelets", default=None, metavar="FOLDER",
                      help="a cube's lines: write each one's cubelet, moment-0 and moment-1 "
                           "maps and spectrum in this folder (one cube)")

    val = sub.add_parser("val", help="predict, cross-match with a truth catalogue, score, plot")
    common(val, several=" (and each true source, matched on the sky)")
    reliability_options(val)
    pb_options(val, several=False)
    val.add_argument("--catalogue", required=True, help="truth catalogue (any catalogue format)")
    val.add_argument("--out", required=True, help="report folder (created if missing)")
    _max_peaks_option(val)
    val.add_argument("--match-radius", type=float, default=1.0,
                     help="match radius in units of max(beam, true size) FWHM (default 1)")
    val.add_argument("--min-snr", type=float, default=5.0,
                     help="overall recall counts true sources of SNR >= this (default 5)")
    val.add_argument("--sdc1-freq", type=int, default=560, choices=(560, 1400, 9200),
                     help="SDC1 band for the SDC1 score (default 560 MHz)")
    val.add_argument("--sdc1-area", default="all", choices=("all", "exclude_train", "train"),
                     help="SDC1 training-area rule (the challenge: exclude_train)")
    val.add_argument("--no-plots", action="store_true", help="no PNG files")
    val.add_argument("--compare", action="append", default=[], metavar="[NAME=]CATALOGUE",
                     help="another finder's catalogue (PyBDSF's source list, ...) scored beside "
                          "the detector with the same truth and rules; repeatable")
    val.add_argument("--compare-apparent", action="store_true",
                     help="with --pb: the --compare catalogues were measured on the image as "
                          "it is (not primary-beam corrected): their fluxes are divided by "
                          "the beam's response (default: taken as corrected; predict --pb's "
                          "own catalogues, with their pb column, always are)")
    val.add_argument("--class-column", default=None, metavar="COLUMN",
                     help="the truth's column of the classes a detector that classifies and "
                          "a --classifier are scored against (by default the column each was "
                          "trained with, when the truth has it): confusion matrix, accuracy, "
                          "the share of each class detected, classes.png, morph_classes.png; "
                          "for a detector that does not classify, the share of each true "
                          "class detected (detected_by_class.png)")
    val.add_argument("--classifier", default=None, metavar="MODEL",
                     help="a morphology classifier (cianna-jax classify train) that classifies "
                          "the catalogue's rows (morph_class), scored against --class-column "
                          "or its own label column")

    inj = sub.add_parser("inject", help="add artificial sources to a FITS image (lines to a "
                                        "cube) and find them again: completeness, flux "
                                        "recovery and the detector's false detections "
                                        "around sources, with no truth")
    common(inj, image_help="FITS image (2D, SDC1 4D) or cube; repeatable: a mosaic's images, "
                           "each injected and measured on its own, its report in a folder "
                           "of --out named after it (counts --completeness takes them, one "
                           "per image)")
    pb_options(inj, several=True)
    inj.add_argument("--out", required=True,
                     help="report folder (catalogue.ecsv, injected.ecsv, spurious.ecsv, "
                          "completeness_by_snr.ecsv, completeness_by_flux.ecsv, "
                          "injection.json, completeness.png); several images: one folder "
                          "in it per image")
    inj.add_argument("--sources", type=int, default=500,
                     help="sources injected in all (several rounds when they do not fit "
                          "in one; default 500)")
    inj.add_argument("--snr-range", type=float, nargs=2, default=None,
                     metavar=("LOW", "HIGH"),
                     help="peak SNRs (peak / local rms), drawn log-uniform (default 2 50; "
                          "with --pb 0.5 50: the faint true fluxes' places of low response)")
    inj.add_argument("--size-range", type=float, nargs=2, default=None,
                     metavar=("LOW", "HIGH"),
                     help="intrinsic FWHM sizes (arcsec), drawn uniform and convolved with "
                          "the beam (default: point sources)")
    inj.add_argument("--extended-fraction", type=float, default=1.0, metavar="F",
                     help="with --size-range: the fraction of sources given a size, the "
                          "others point sources (default 1), e.g. 0.3 as in many survey "
                          "populations")
    inj.add_argument("--line-width-range", type=float, nargs=2, default=(3.0, 12.0),
                     metavar=("LOW", "HIGH"),
                     help="a cube's injected lines: FWHM in channels, drawn uniform "
                          "(default 3 12)")
    inj.add_argument("--separation", type=float, default=10.0,
                     help="injected sources of one round at least this many FWHM apart "
                          "(default 10)")
    inj.add_argument("--seed", type=int, default=0, help="random seed (places, peaks, shapes)")
    inj.add_argument("--beam", default=None,
                     help="BMAJ,BMIN[,BPA] (arcsec, deg) when the header has no beam")
    inj.add_argument("--tile", type=int, default=None, help="tile size (default: the card's)")
    inj.add_argument("--batch", type=int, default=None, help="tiles per batch")
    inj.add_argument("--no-fit", action="store_true", help="measure from boxes, no Gaussian fit")
    _max_peaks_option(inj)
    inj.add_argument("--no-plots", action="store_true", help="no completeness.png")
    inj.add_argument("--write-image", default=None, metavar="FITS",
                     help="also write the image (or cube) with the first round's injected "
                          "sources (those of round 1 in injected.ecsv), to look at or to "
                          "give another finder")
    inj.add_argument("--reliability", action="store_true",
                     help="also the inverted-image test: the catalogue.ecsv written gets a "
                          "reliability column counting both the detections made of noise "
                          "and the detector's errors around sources that the injection "
                          "measured")
    adaptive_options(inj)

    srl = sub.add_parser("sources", help="a source list from a catalogue of Gaussians "
                                         "(this package's, or PyBDSF's gaul): Gaussians "
                                         "grouped by PyBDSF's rule, fluxes summed")
    srl.add_argument("--catalogue", required=True, help="catalogue of Gaussians (peak, rms, "
                     "bmaj, bmin, pa, flux and ra/dec or x/y)")
    srl.add_argument("--out", required=True, help="source list (.ecsv, .csv, .fits, .xml, .reg)")
    srl.add_argument("--sizes", default="island", choices=("island", "model"),
                     help="a source of several Gaussians measured over its island (PyBDSF's "
                          "sizes, default) or over its whole summed model (larger)")
    _group_tol_option(srl, None)
    _names_option(srl)

    cli_tables.add_parsers(sub)
    cli_simulate.add_parser(sub)
    cli_crossid.add_parser(sub)
    cli_clustering.add_parser(sub)
    cli_lumfunc.add_parser(sub)
    cli_confusion.add_parser(sub)
    cli_diffuse.add_parser(sub)
    cli_classify.add_parser(sub)

    cnt = sub.add_parser("counts", help="differential source counts of a catalogue "
                                        "(Euclidean-normalised), corrected by its reliability "
                                        "and source injection's completeness")
    cnt.add_argument("--catalogue", required=True,
                     help="catalogue with flux (Jy) and, when it has one, reliability "
                          "(e.g. inject --reliability's catalogue.ecsv)")
    cnt.add_argument("--image", action="append", default=None,
                     help="the catalogue's image: the area counted is that of its data; "
                          "repeatable: a mosaic's images (predict's merged catalogue), the "
                          "union of their data")
    cnt.add_argument("--area-deg2", type=float, default=None,
                     help="the area counted (deg^2), instead of --image")
    cnt.add_argument("--completeness", action="append", default=None, metavar="FOLDER",
                     help="cianna-jax inject's report folder (or its "
                          "completeness_by_flux.ecsv): each source counts 1 / completeness "
                          "at its flux; one per --image, in their order: each source "
                          "corrected by its own image's")
    cnt.add_argument("--out", required=True, help="counts table (.ecsv, .csv, .fits, .xml)")
    cnt.add_argument("--figure", default=None, metavar="PNG", help="also draw the counts")
    cnt.add_argument("--per-decade", type=int, default=5, help="flux bins per decade (5)")
    cli_tables.select_option(cnt, "morph_class=sfg", "counts over the same area and "
                                                     "corrections")
    cnt.add_argument("--unfold", action="store_true",
                     help="with --completeness: unfold the counts from measured to true "
                          "fluxes with the injection's whole response (its injected.ecsv), "
                          "which takes out the flux boosting near the detection limit "
                          "(Eddington bias) too")
    cnt.add_argument("--min-completeness", type=float, default=0.5,
                     help="bins less complete than this are marked (complete False)")
    cnt.add_argument("--hdu", default=None, help="HDU index or name (default: first image)")
    cnt.add_argument("--visibility-snr", type=float, default=None, metavar="SNR",
                     help="instead of --completeness: each source counted over "
                          "the area where its peak would reach SNR times the local rms "
                          "(the visibility area, e.g. 5)")
    cnt.add_argument("--pb", default=None, action="append", metavar="FITS|MODEL",
                     help="with --visibility-snr, a catalogue corrected for this primary "
                          "beam (as predict --pb): the area where the peak seen through it "
                          "reaches the threshold; repeatable: one per --image")
    cnt.add_argument("--pb-min", type=float, default=None, metavar="A",
                     help="with --pb: the catalogue's cut on the beam's response")
    cnt.add_argument("--noise-box", type=int, default=None, metavar="PIXELS",
                     help="with --visibility-snr: the noise map's box (default: the one "
                          "predict used, from the catalogue's metadata; else 128)")

    cli_train.add_parser(sub)

    return parser


def _use_cpu_devices(n: int) -> None:
    """``predict --cpu-devices N``: N JAX CPU devices in this process (before any JAX
    work), over which the detector splits its tiles (``parallel.cpu_mesh``)."""
    try:
        xla_cpu.use_cpu_devices(n, "--cpu-devices")
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"cianna-jax: error: {err}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cianna-jax`` command."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command in ("info", "demo", "predict", "val", "train", "inject", "classify"):
        if argv is None:  # the command itself (not a call from Python): huge pages for
            # XLA's step buffers, which glibc takes only from a process's start
            host_memory.restart_with_hugepages(["-m", "cianna_jax.cli", *sys.argv[1:]])
        xla_cpu.tune()  # before any JAX work; warns if a backend already started
    if getattr(args, "cpu_devices", 1) != 1:
        _use_cpu_devices(args.cpu_devices)
    if args.command == "info":
        return _info()
    if getattr(args, "hdu", None) is not None and str(args.hdu).isdigit():
        args.hdu = int(args.hdu)
    from . import cli_tables
    from .astro import MissingExtraError

    run = {"demo": _demo, "predict": _predict, "val": _val, "simulate": cli_simulate.simulate,
           "train": cli_train.train, "inject": _inject, "counts": cli_tables.counts,
           "sources": cli_tables.sources, "spectral-index": cli_tables.spectral_index,
           "variability": cli_tables.variability,
           "polarisation": cli_tables.polarisation,
           "rm-synthesis": cli_tables.rm_synthesis,
           "reference-check": cli_tables.reference,
           "cutouts": cli_tables.cutouts, "qa": cli_tables.qa, "stack": cli_tables.stack,
           "transients": cli_tables.transients, "alpha-map": cli_tables.alpha_map,
           "skymodel": cli_tables.skymodel, "crossid": cli_crossid.crossid,
           "doubles": cli_crossid.doubles,
           "luminosity": cli_crossid.luminosity,
           "clustering": cli_clustering.clustering,
           "lumfunc": cli_lumfunc.lumfunc,
           "confusion": cli_confusion.confusion,
           "diffuse": cli_diffuse.diffuse,
           "classify": cli_classify.classify}[args.command]
    try:
        return run(args)
    except (MissingExtraError, FileNotFoundError, ValueError, OSError, FloatingPointError) as err:
        print(f"cianna-jax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = (f"; the last finished epoch is kept: cianna-jax train --out {args.out} --resume"
                if args.command == "train" else "")
        print(f"cianna-jax {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
