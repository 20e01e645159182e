"""``cianna-jax demo``: detect radio sources in a synthetic SDC1-like field, end to end.

1. draw a training field and a held-out field (point and extended sources, power-law
   fluxes, beam-correlated noise; :mod:`cianna_jax.datasets.radio_sky`);
2. cut training patches and CIANNA YOLO targets for the sources above 5 sigma;
3. train a small CIANNA YOLO network (functional core, CIANNA's update rule);
4. run tiled inference over the held-out field and merge tiles with NMS;
5. report precision, recall, F1, AP and position/flux errors of matched sources, and
   write ``field.png``, ``training.png``, ``detections.csv`` and the network file.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass

import jax
import numpy as np

from . import nn, training
from .astro.model_card import ModelCard, Normalisation, save_model_card
from .datasets import radio_sky as rs
from .io.network_file import save_network
from .network import apply, init_params, make_network, rows_to_images
from .yolo import layout as yolo_layout
from .yolo import postprocess as pp
from .yolo.config import make_config

__all__ = ["DemoSettings", "run_demo", "demo_model_card"]

PATCH, CELL, NOISE, PSF = 64, 8, 0.01, 3.0
PRIORS = np.array([[8.0, 20.0], [8.0, 20.0]], np.float32)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of a demo run (``quick`` is meant to finish within a minute on 2 CPU cores)."""

    train_field: int
    test_field: int
    n_patches: int
    epochs: int
    batch: int = 16
    max_obj: int = 24
    learning_rate: float = 0.01

    @classmethod
    def get(cls, quick: bool) -> "DemoSettings":
        if quick:
            return cls(train_field=512, test_field=256, n_patches=512, epochs=30)
        return cls(train_field=1024, test_field=512, n_patches=2048, epochs=30)


def _field(size: int, seed: int):
    return rs.make_field(size, seed=seed, noise_rms=NOISE, psf_fwhm=PSF, density=0.003,
                         flux_range=(0.3, 30.0), extended_size_range=(3.0, 10.0))


def _boxes(cat):
    return rs.boxes_from_catalogue(cat, min_size=6.0, max_size=32.0)


def _detectable(cat):
    return cat[cat.peak > 5 * NOISE]


def _network(max_obj: int):
    cfg = make_config((PATCH, PATCH, 1), (PATCH // CELL, PATCH // CELL, 1), nb_box=2,
                      nb_class=0, max_nb_obj_per_image=max_obj, prior_size=PRIORS,
                      IoU_type="DIoU", prior_dist_type="SIZE", rand_startup=0,
                      error_scales=np.array([2, 2, 1, 2, 1, 1], np.float32))
    layers = [nn.conv([3, 3], 8, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 16, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 32, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 32, padding=[1, 1]),
              nn.conv([1, 1], cfg.nb_filters, activation="YOLO")]
    return make_network((PATCH, PATCH, 1, 1), layers, 0.1, cfg)


def _progress(iterable, desc: str):
    try:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, leave=False)
    except ImportError:
        return iterable


def _train(s: DemoSettings, seed: int, log):
    image, cat = _field(s.train_field, seed)
    norm = rs.normalize(image, noise_rms=NOISE)
    p = rs.patches(norm, cat, PATCH, n=s.n_patches, seed=seed + 1, min_flux_sigma=5.0,
                   noise_rms=NOISE)
    x = p.images.reshape(len(p.images), -1).astype(np.float32)
    t = np.stack([rs.cianna_targets(_boxes(c), s.max_obj, priority=c.flux)
                  for c in p.catalogues]).astype(np.float32)
    net = _network(s.max_obj)
    key = jax.random.key(seed)
    params = init_params(key, net)
    opt = training.make_optimizer(s.learning_rate, 0.9,
                                  masks=lambda prm: training.cianna_masks(net, prm))
    state = opt.init(params)
    losses = []
    for epoch in _progress(range(1, s.epochs + 1), "training"):
        params, state, total = training.train_epoch(
            net, opt, params, state, rows_to_images(net, x), t, s.batch,
            jax.random.fold_in(key, epoch),
            nb_im_iter=epoch * len(x))
        losses.append(float(total) / len(x))
        log(f"  epoch {epoch:3d}/{s.epochs}  mean loss {losses[-1]:.4f}")
    return net, params, losses, len(x), int(sum(len(c) for c in p.catalogues))


def _evaluate(net, params, s: DemoSettings, seed: int):
    image, cat = _field(s.test_field, seed + 1000)
    norm = rs.normalize(image, noise_rms=NOISE)
    predict = jax.jit(lambda tiles: apply(net, params,
                                          rows_to_images(net, tiles.reshape(tiles.shape[0], -1))))
    cfg = net.yolo

    def predict_fn(tiles):
        out = np.asarray(predict(np.asarray(tiles, np.float32)))
        if out.ndim == 2:  # CIANNA rows -> the core's channel-last YOLO layout
            out = yolo_layout.from_cianna_rows(out, cfg.grid, cfg.nb_box, nd=3)
        return out

    det = pp.predict_tiled(predict_fn, norm[None], PATCH, PATCH // 4, layout="channels_last",
                           nb_box=cfg.nb_box, priors=PRIORS, obj_threshold=0.3, margin="auto",
                           same_class_threshold=0.1, score="objectness", batch_size=64)
    truth = _detectable(cat)
    gt = _boxes(truth)
    m = pp.match_detections(det.boxes, det.objectness, None, None, gt, None, None,
                            iou_threshold=0.4)
    pr = pp.precision_recall(det.boxes, det.objectness, None, None, gt, None, None,
                             score_threshold=0.5, iou_threshold=0.4)
    ap = pp.average_precision(det.boxes, det.objectness, None, None, gt, None, None,
                              iou_threshold=0.4)
    matched = np.flatnonzero(m.status == 1)
    centres = 0.5 * (det.boxes[:, :2] + det.boxes[:, 3:5])
    true_c = np.stack([truth.x, truth.y], 1) + 0.5
    pos_err = np.hypot(*(centres[matched] - true_c[m.gt_index[matched]]).T)
    flux = _box_flux(image, det.boxes)
    flux_err = np.abs(flux[matched] / truth.flux[m.gt_index[matched]] - 1.0)
    f1 = 2 * pr.precision * pr.recall / max(pr.precision + pr.recall, 1e-12)
    metrics = dict(precision=float(pr.precision), recall=float(pr.recall), f1=float(f1),
                   ap=float(ap.map), n_true=int(len(truth)), n_detected=int(len(det)),
                   median_position_error_px=float(np.median(pos_err)) if len(pos_err) else
                   float("nan"),
                   median_flux_error=float(np.median(flux_err)) if len(flux_err) else
                   float("nan"))
    return image, truth, gt, det, flux, metrics


def _box_flux(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sum of the pixels inside each box (integrated flux of the noise-free model)."""
    cs = np.pad(image.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    h, w = image.shape
    x0 = np.clip(np.floor(boxes[:, 0]), 0, w).astype(int)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, h).astype(int)
    x1 = np.clip(np.ceil(boxes[:, 3]), 0, w).astype(int)
    y1 = np.clip(np.ceil(boxes[:, 4]), 0, h).astype(int)
    return cs[y1, x1] - cs[y0, x1] - cs[y1, x0] + cs[y0, x0]


def _plots(out: str, image, gt, det, losses, log) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        log("  matplotlib is not installed: no PNG (pip install 'cianna-jax[plot]')")
        return
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(np.arcsinh(image / NOISE), origin="lower", cmap="inferno")
    for b, colour in [(gt, "lime"), (det.boxes, "cyan")]:
        for x0, y0, _, x1, y1, _ in b:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   lw=0.8, ec=colour))
    ax.set_title("held-out field: true sources > 5 sigma (green), detections (cyan)")
    fig.savefig(os.path.join(out, "field.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean YOLO loss per patch")
    fig.savefig(os.path.join(out, "training.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)


def _write_catalogue(path: str, det, flux) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x", "y", "width", "height", "objectness", "box_flux"])
        for b, obj, f in zip(det.boxes, det.objectness, flux):
            w.writerow([f"{(b[0] + b[3]) / 2 - 0.5:.2f}", f"{(b[1] + b[4]) / 2 - 0.5:.2f}",
                        f"{b[3] - b[0]:.2f}", f"{b[4] - b[1]:.2f}", f"{obj:.4f}", f"{f:.5g}"])


def demo_model_card(network: str) -> ModelCard:
    """The settings ``cianna-jax predict`` needs to run the demo network on a FITS image
    (inputs in units of the local noise, as the demo's fixed-noise normalisation)."""
    return ModelCard(network=network, tile=(PATCH, PATCH), overlap=(PATCH // 4, PATCH // 4),
                     batch_size=64, normalisation=Normalisation(kind="snr", mode="tanh"),
                     obj_threshold=0.3, nms_threshold=0.1, iou_type="DIoU", score="objectness",
                     box_scale=2.0, notes={"trained_by": "cianna-jax demo", "patch": PATCH,
                                           "targets": "sources of peak > 5 sigma"})


def run_demo(out: str = "cianna_demo", quick: bool = False, seed: int = 0,
             verbose: bool = True) -> dict:
    """Run the demo; write its files into ``out``; return the metrics as a dict."""
    log = print if verbose else (lambda *_: None)
    s = DemoSettings.get(quick)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    log(f"cianna_jax demo ({'quick' if quick else 'full'}), backend {jax.default_backend()}, "
        f"seed {seed}")
    log(f"- training field {s.train_field}x{s.train_field}: {s.n_patches} patches of "
        f"{PATCH}x{PATCH}, {s.epochs} epochs")
    net, params, losses, n_patch, n_targets = _train(s, seed, log)
    log(f"  {n_targets} target boxes, trained in {time.perf_counter() - t0:.1f} s")
    save_network(os.path.join(out, "yolo_net.dat"), net, params, binary=True)
    save_model_card(os.path.join(out, "yolo_net.json"), demo_model_card("yolo_net.dat"))
    log(f"- tiled inference on a held-out {s.test_field}x{s.test_field} field")
    image, truth, gt, det, flux, metrics = _evaluate(net, params, s, seed)
    _write_catalogue(os.path.join(out, "detections.csv"), det, flux)
    _plots(out, image, gt, det, losses, log)
    metrics["seconds"] = time.perf_counter() - t0
    log(f"- {metrics['n_detected']} detections for {metrics['n_true']} sources above 5 sigma")
    log(f"  precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f}  "
        f"F1 {metrics['f1']:.3f}  AP(IoU 0.4) {metrics['ap']:.3f}")
    log(f"  matched sources: median position error {metrics['median_position_error_px']:.2f} "
        f"px, median |flux ratio - 1| {metrics['median_flux_error']:.3f}")
    log(f"- files in {out}/: field.png, training.png, detections.csv, yolo_net.dat, yolo_net.json "
        f"({metrics['seconds']:.1f} s in all)")
    return metrics
