"""``cianna-jax demo``: the astronomer's path end to end, on synthetic data.

1. write a synthetic SDC1-like training field and a test field as FITS images (WCS,
   Jy/beam, restoring beam, noise rising to the edges as after a primary-beam correction,
   blended sources, a NaN border) with their true catalogues as ECSV;
2. ``cianna-jax train`` on the training field and its catalogue;
3. ``cianna-jax predict`` on the test field with the best model;
4. ``cianna-jax val`` on the test field against its catalogue (with the share of its
   point-like and extended sources detected).

Steps 2-4 call the same functions as the commands, with the arguments the printed
commands give, so a user can rerun them (or run them on real data) by copying the lines.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

import jax
import numpy as np

from .io.atomic import make_folder

__all__ = ["DemoSettings", "run_demo", "write_demo_fields"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of a demo run (``quick`` is meant to finish within a minute on 2 CPU cores)."""

    train_field: int
    test_field: int
    epochs: int
    patches_per_epoch: int
    injected: int = 300  # sources injected into the test field

    @classmethod
    def get(cls, quick: bool) -> "DemoSettings":
        if quick:
            return cls(train_field=512, test_field=512, epochs=10, patches_per_epoch=512,
                       injected=300)
        return cls(train_field=1024, test_field=1024, epochs=25, patches_per_epoch=1024,
                   injected=1000)


#: Field parameters shared by the training and test fields (SDC1-like 560 MHz band:
#: 0.6 arcsec pixels, 1.8 arcsec beam; noise 10 uJy/beam at the centre, twice at the corners).
FIELD = dict(pixel_scale=0.6, psf_fwhm=3.0, noise=1e-5, density=0.002, snr_range=(15.0, 3000.0),
             noise_edge=2.0, blend_fraction=0.1, nan_border=12)


def write_demo_fields(out: str, s: DemoSettings, seed: int) -> dict[str, str]:
    """Write ``train.fits``/``train.ecsv`` and ``test.fits``/``test.ecsv`` in ``out``;
    returns their paths by name."""
    from .astro.catalogue import write_catalogue
    from .astro.synthetic import synthetic_field, truth_table, write_fits

    paths = {}
    for name, size, sd in (("train", s.train_field, seed), ("test", s.test_field, seed + 1000)):
        f = synthetic_field(size, seed=sd, sdc1_layout=name == "test",
                            centre=(0.0, -30.0) if name == "train" else (1.0, -30.0), **FIELD)
        paths[f"{name}_image"] = os.path.join(out, f"{name}.fits")
        paths[f"{name}_catalogue"] = os.path.join(out, f"{name}.ecsv")
        write_fits(paths[f"{name}_image"], f)
        write_catalogue(truth_table(f), paths[f"{name}_catalogue"])
    return paths


def _look(table, catalogue: str, image: str, out: str, log) -> str:
    """The catalogue's quality figure and a gallery of its flagged sources (the brightest
    when none is), when matplotlib is there; returns the files' names for the summary."""
    from .astro import MissingExtraError
    from .astro.catalogue_qa import qa_plot
    from .astro.completeness import require_plotting
    from .astro.cutouts import beam_ellipse, catalogue_pixels, cut_stamps, select_rows
    from .astro.fits_image import open_image
    from .astro.plots import gallery_plot, save_figure

    try:
        require_plotting()
    except MissingExtraError:
        return ""
    qa, gallery = os.path.join(out, "qa.png"), os.path.join(out, "gallery.png")
    log(_command("qa", "--catalogue", catalogue, "--out", qa))
    save_figure(qa_plot(table, title="Quality of the test field's catalogue"), qa)
    rows = select_rows(table, "flagged", 16)
    how = "flagged" if rows.size else "brightest"
    rows = rows if rows.size else select_rows(table, "brightest", 16)
    log(_command("cutouts", "--catalogue", catalogue, "--image", image, "--out", gallery,
                 "--select", how, "--n", 16))
    with open_image(image) as img:
        save_figure(gallery_plot(cut_stamps(img, table, rows), table,
                                 catalogue_pixels(table, img), beam=beam_ellipse(img),
                                 title=f"The test field's {how} sources"), gallery)
    return "qa.png, gallery.png, "


def _without_truth(image: str, model: str, s: DemoSettings, out: str, log, verbose: bool):
    """The demo's last steps, what a survey without a truth catalogue does: source injection
    (completeness, the detector's errors around sources, the catalogue's reliability) and
    the source counts corrected by both; returns the injection's result."""
    from .astro import MissingExtraError
    from .astro.catalogue import write_catalogue
    from .astro.completeness import (
        format_completeness,
        measure_completeness,
        require_plotting,
        write_injection_report,
    )
    from .astro.source_counts import count_catalogue

    try:
        require_plotting()
        plots = True
    except MissingExtraError:
        plots = False
    inj_dir, counts = os.path.join(out, "injection"), os.path.join(out, "counts.ecsv")
    log(_command("inject", "--model", model, "--image", image, "--out", inj_dir, "--sources",
                 s.injected, "--reliability"))
    inj = measure_completeness(image, model, n_sources=s.injected, reliability=True,
                               progress=verbose)
    write_injection_report(inj, inj_dir, plots=plots)
    log(format_completeness(inj))
    catalogue = os.path.join(inj_dir, "catalogue.ecsv")
    log(_command("counts", "--catalogue", catalogue, "--image", image, "--completeness",
                 inj_dir, "--out", counts) + (" --figure " + counts[:-5] + ".png" if plots else ""))
    c = count_catalogue(catalogue, image=image, completeness=inj_dir)
    write_catalogue(c.table(), counts)
    if plots:
        from .astro.plots import counts_plot, save_figure

        save_figure(counts_plot(c, title="Source counts of the test field"), counts[:-5] + ".png")
    log(f"{int(c.n.sum())} sources counted over {c.table().meta['area_deg2']:.4g} deg^2 -> "
        f"{counts}")
    return inj


def _command(*words: object) -> str:
    return "$ cianna-jax " + " ".join(shlex.quote(str(w)) for w in words)


def run_demo(out: str = "cianna_demo", quick: bool = False, seed: int = 0,
             verbose: bool = True) -> dict:
    """Run the demo; write its files into ``out``; return the test-field scores (and the
    source injection's: completeness and expected false detections, no truth needed)."""
    from .astro.pipeline import predict_file
    from .astro.train_validation import average_precision
    from .astro.trainer import TrainSettings, train_detector
    from .astro.validate import validate

    log = print if verbose else (lambda *_: None)
    s = DemoSettings.get(quick)
    make_folder(out)
    t0 = time.perf_counter()
    log(f"cianna_jax demo ({'quick' if quick else 'full'}), backend {jax.default_backend()}, "
        f"seed {seed}")
    p = write_demo_fields(out, s, seed)
    log(f"- wrote {p['train_image']} ({s.train_field}x{s.train_field}) and {p['test_image']} "
        f"({s.test_field}x{s.test_field}, SDC1 4D layout), Jy/beam with WCS and beam, and "
        f"their catalogues {p['train_catalogue']}, {p['test_catalogue']}")
    run, model = os.path.join(out, "run"), os.path.join(out, "run", "best.json")
    sources, report = os.path.join(out, "test_sources.ecsv"), os.path.join(out, "report")
    log(_command("train", "--image", p["train_image"], "--catalogue", p["train_catalogue"],
                 "--out", run, "--epochs", s.epochs, "--patches-per-epoch",
                 s.patches_per_epoch, "--seed", seed))
    train_detector(TrainSettings(image=p["train_image"], catalogue=p["train_catalogue"],
                                 out=run, epochs=s.epochs, patches_per_epoch=s.patches_per_epoch,
                                 seed=seed), log=log, progress=verbose)
    t_train = time.perf_counter() - t0
    log(_command("predict", "--model", model, "--image", p["test_image"], "--out", sources))
    res = predict_file(p["test_image"], model, sources, progress=verbose)
    log(f"{len(res.table)} sources -> {sources}")
    looked = _look(res.table, sources, p["test_image"], out, log)
    log(_command("val", "--model", model, "--image", p["test_image"], "--catalogue",
                 p["test_catalogue"], "--out", report, "--class-column", "kind"))
    log("(the truth's kind: 0 point-like, 1 extended; the report gives the share of each "
        "detected)")
    rep = validate(p["test_image"], model, p["test_catalogue"], report, progress=verbose,
                   log=log, class_column="kind")
    log(rep.text)
    inj = _without_truth(p["test_image"], model, s, out, log, verbose)
    sc = rep.scores
    metrics = dict(precision=float(sc.precision), recall=float(sc.recall), f1=float(sc.f1),
                   ap=average_precision(rep.pr["precision"], rep.pr["recall"]),
                   n_true=int(sc.n_truth), n_detected=int(sc.n_det),
                   median_separation_arcsec=float(sc.median_separation),
                   flux_ratio=float(sc.flux_ratio), flux_ratio_scatter=float(sc.flux_ratio_scatter),
                   sdc1_score=None if rep.sdc1 is None else float(rep.sdc1.value),
                   completeness_snr50=inj.scores.at_completeness(0.5),
                   completeness_snr90=inj.scores.at_completeness(0.9),
                   expected_false=float(inj.own.reliability.n_false),
                   train_seconds=t_train, seconds=time.perf_counter() - t0)
    log(f"- demo done in {metrics['seconds']:.1f} s (training {t_train:.1f} s); files in {out}/: "
        f"train.fits, train.ecsv, test.fits, test.ecsv, run/ (models, results.csv, "
        f"training.png), test_sources.ecsv, {looked}report/, injection/, counts.ecsv")
    if not np.isfinite(metrics["f1"]):
        metrics["f1"] = 0.0
    return metrics
