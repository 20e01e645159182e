"""A catalogue's sources classified by a morphology classifier (:mod:`.morphology`) on an
image or a mosaic's images: the class columns, and a gallery's examples.

With several images each source is read from the image whose centre is nearest among
those with data at its position (:func:`.mosaic.nearest_centre_image`, the rule of the
mosaic's catalogue); a source on none gets NaN probabilities and an empty class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import CatalogueError, column_values
from .cutouts import catalogue_pixels
from .fits_image import FitsImage, open_image
from .morphology import CLASS_COLUMN, PROB_COLUMN, LoadedClassifier, predict_stamps
from .morphology_cutouts import centred_stamps, network_inputs, on_image, read_stamps
from .mosaic import nearest_centre_image
from .noise import NoiseMap, estimate_noise_map

__all__ = ["SourceImages", "source_images", "classify_sources", "class_examples",
           "classify_stamps", "PROB_STD_COLUMN"]

#: with Monte Carlo dropout, the scatter of the chosen class's probability over the draws
PROB_STD_COLUMN = "morph_prob_std"


@dataclass(frozen=True)
class SourceImages:
    """The images, their noise maps, and per source its image's index (-1: none) and pixel
    position on it."""

    images: list[FitsImage]
    noises: list[NoiseMap]
    owner: np.ndarray
    x: np.ndarray
    y: np.ndarray


def source_images(image: str | FitsImage | Sequence[str | FitsImage], table: Any, *,
                  noise: NoiseMap | Sequence[NoiseMap] | None = None, progress: bool = False,
                  what: str = "catalogue") -> SourceImages:
    """Each source of ``table`` on its image (one image, or a mosaic's list: the nearest
    centre among those with data there), with the images' noise maps (``noise``, else
    estimated)."""
    many = isinstance(image, (list, tuple))
    imgs = [open_image(i) if isinstance(i, (str, os.PathLike)) else i
            for i in (image if many else [image])]
    if noise is None:
        noises = [estimate_noise_map(im.read, im.shape, progress=progress) for im in imgs]
    else:
        noises = list(noise) if isinstance(noise, (list, tuple)) else [noise]
    n = len(table)
    if len(imgs) == 1:
        owner = np.zeros(n, np.int64)
    else:
        ra, dec = column_values(table, "ra", what), column_values(table, "dec", what)
        if ra is None or dec is None:
            raise CatalogueError(f"{what}: ra and dec are needed to find each source's image "
                                 "among several")
        owner = nearest_centre_image(ra, dec, imgs)
    x, y = np.full(n, np.nan), np.full(n, np.nan)
    for k, im in enumerate(imgs):
        xs, ys, *_ = catalogue_pixels(table, im, what)
        mine = (owner == k) & on_image(xs, ys, im.shape)
        x[mine], y[mine] = xs[mine], ys[mine]
    owner = np.where(np.isfinite(x), owner, -1)
    return SourceImages(imgs, noises, owner, x, y)


def classify_sources(model: LoadedClassifier, image: Any, table: Any, *,
                     batch_size: int = 256, chunk: int = 1024,
                     noise: NoiseMap | Sequence[NoiseMap] | None = None,
                     priors: np.ndarray | None | str = "card", progress: bool = False,
                     what: str = "catalogue", where: SourceImages | None = None,
                     draws: int = 0, seed: int = 0) -> Any:
    """``table`` (astropy) with the sources' classes added: ``p_<class>`` for each of the
    model's classes, :data:`.morphology.CLASS_COLUMN` (the most probable) and
    :data:`.morphology.PROB_COLUMN` (its probability); sources off the images get NaN and
    an empty class. ``image``: a path or :class:`.fits_image.FitsImage`, or a mosaic's list
    of them (``where``: :func:`source_images` already made); ``noise`` their noise maps
    (estimated when None); ``priors`` as :func:`.morphology.predict_stamps`; the windows
    read ``chunk`` sources at a time (memory bounded on large catalogues), with a progress
    bar when ``progress``. ``draws`` > 0: Monte Carlo dropout (:func:`.morphology.
    predict_stamps`): the probabilities their mean, and :data:`PROB_STD_COLUMN` the scatter
    of the chosen class's probability over them."""
    from ..progress import Progress

    w = where or source_images(image, table, noise=noise, progress=progress, what=what)
    spec = model.card.cutout
    k = len(model.card.classes)
    probs = np.full((max(draws, 1), len(table), k), np.nan, np.float32)
    bar = Progress(int(np.sum(w.owner >= 0)), "classify", enabled=progress, unit="source")
    for i, (img, nm) in enumerate(zip(w.images, w.noises)):
        mine = np.flatnonzero(w.owner == i)
        for start in range(0, mine.size, int(chunk)):
            rows = mine[start:start + int(chunk)]
            st = read_stamps(img, nm, w.x[rows], w.y[rows], spec)
            probs[:, rows] = predict_stamps(model, st, spec, batch_size, priors, draws=draws,
                                            seed=seed + start)
            bar.update(rows.size)
    bar.close()
    return _with_classes(model, table, probs)


def classify_stamps(model: LoadedClassifier, paths: Sequence[str], table: Any, *,
                    priors: np.ndarray | None | str = "card", batch_size: int = 256,
                    draws: int = 0, seed: int = 0) -> Any:
    """``table`` (one row per FITS stamp of ``paths``, e.g. the list that names them) with
    the class columns of :func:`classify_sources` (``draws``, ``seed`` as there), each
    stamp's source at its centre."""
    spec = model.card.cutout
    probs = np.full((max(draws, 1), len(paths), len(model.card.classes)), np.nan, np.float32)
    for rows, st in centred_stamps(paths, spec):
        probs[:, rows] = predict_stamps(model, st, spec, batch_size, priors, draws=draws,
                                        seed=seed + int(rows[0]))
    return _with_classes(model, table, probs)


def _with_classes(model: LoadedClassifier, table: Any, draws: np.ndarray) -> Any:
    """``table`` with ``p_<class>``, the most probable class and its probability (NaN and
    an empty class where the row has none), from ``draws`` ``[D, N, K]`` (their mean; with
    several, the chosen class's scatter over them in :data:`PROB_STD_COLUMN`)."""
    k = len(model.card.classes)
    probs = draws.mean(axis=0)
    out = table.copy(copy_data=True)
    for j, name in enumerate(model.card.classes):
        out[f"p_{name}"] = probs[:, j]
    names = np.array(model.card.classes + ("",))
    best = np.where(np.isfinite(probs[:, 0]), np.nan_to_num(probs).argmax(axis=1), k)
    out[CLASS_COLUMN] = names[best]
    out[PROB_COLUMN] = np.where(best < k, np.nanmax(np.nan_to_num(probs, nan=-1.0), axis=1),
                                np.nan).astype(np.float32)
    if draws.shape[0] > 1:
        rows = np.arange(probs.shape[0])
        std = draws.std(axis=0, ddof=1)[rows, np.minimum(best, k - 1)]
        out[PROB_STD_COLUMN] = np.where(best < k, std, np.nan).astype(np.float32)
    return out


def class_examples(model: LoadedClassifier, where: SourceImages, table: Any,
                   n: int = 8) -> tuple[list[np.ndarray], list[list[str]]]:
    """For each class of ``model``, the network's views ``[m, p, p, 1]`` (m <= ``n``) of
    the ``n`` sources of ``table`` (classified by :func:`classify_sources`, their images
    ``where``) given that class with the highest probability, and their titles (id and
    probability): a gallery's content (:func:`.morphology_plots.gallery_figure`)."""
    names = np.asarray(table[CLASS_COLUMN]).astype(str)
    prob = np.nan_to_num(np.asarray(table[PROB_COLUMN], np.float64), nan=-1.0)
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, len(table) + 1)
    spec = model.card.cutout
    views, labels = [], []
    for c in model.card.classes:
        rows = np.flatnonzero((names == c) & (where.owner >= 0))
        rows = rows[np.argsort(-prob[rows], kind="stable")][:n]
        v = np.zeros((rows.size, spec.pixels, spec.pixels, 1), np.float32)
        for i, (img, nm) in enumerate(zip(where.images, where.noises)):
            sel = np.flatnonzero(where.owner[rows] == i)
            if sel.size:
                r = rows[sel]
                v[sel] = network_inputs(read_stamps(img, nm, where.x[r], where.y[r], spec),
                                        spec)
        views.append(v)
        labels.append([f"{ids[r]} p={prob[r]:.2f}" for r in rows])
    return views, labels
