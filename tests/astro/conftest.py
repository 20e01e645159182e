"""Shared fixtures of the astro tests: tiny YOLO models (random weights) with their model
cards, and small synthetic FITS fields written by the tests."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")


def _save_model(folder, name: str, net, params, card_kw: dict) -> str:
    from cianna_jax.astro.model_card import ModelCard, save_model_card
    from cianna_jax.io.network_file import save_network

    save_network(folder / f"{name}.dat", net, params, binary=True)
    card = ModelCard(network=f"{name}.dat", **card_kw)
    save_model_card(folder / f"{name}.json", card)
    return str(folder / f"{name}.json")


def make_tiny_2d(folder, *, tile: int = 32, threshold: float = 0.5) -> str:
    """A 2-box YOLO network (cells of 8 pixels) with random weights; returns its card path."""
    import jax

    from cianna_jax import nn
    from cianna_jax.network import init_params, make_network
    from cianna_jax.yolo.config import make_config

    cfg = make_config((tile, tile, 1), (tile // 8, tile // 8, 1), nb_box=2, nb_class=0,
                      max_nb_obj_per_image=8, prior_size=np.array([[8.0, 16.0], [8.0, 16.0]],
                                                                  np.float32),
                      IoU_type="DIoU", rand_startup=0)
    layers = [nn.conv([3, 3], 4, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([3, 3], 4, padding=[1, 1]), nn.pool([2, 2]),
              nn.conv([2, 2], 4, stride=[2, 2]),
              nn.conv([1, 1], cfg.nb_filters, activation="YOLO")]
    net = make_network((tile, tile, 1, 1), layers, 0.1, cfg)
    params = init_params(jax.random.key(3), net)
    return _save_model(folder, "tiny", net, params,
                       dict(tile=(tile, tile), overlap=(8, 8), batch_size=16, noise_box=32,
                            obj_threshold=threshold, nms_threshold=0.1))


def make_peak_detector(folder, snr: float, *, tile: int = 32, steep: float = 2000.0) -> str:
    """A YOLO network with set weights that detects, in each 8x8 cell, a peak above ``snr``
    times the local rms (objectness a sigmoid of ``steep`` times the cell's largest
    normalised pixel less the threshold's; one 16-pixel box at the cell's centre): a
    classical threshold finder whose false detections are noise peaks, to check statistics
    on (a low ``steep``, e.g. 35, grades the objectness over a few sigma around ``snr``).
    Returns its card path."""
    import jax.numpy as jnp

    from cianna_jax import nn
    from cianna_jax.astro.model_card import Normalisation
    from cianna_jax.network import make_network
    from cianna_jax.yolo.config import make_config

    cfg = make_config((tile, tile, 1), (tile // 8, tile // 8, 1), nb_box=1, nb_class=0,
                      max_nb_obj_per_image=16, prior_size=np.array([[16.0], [16.0]], np.float32),
                      IoU_type="DIoU", rand_startup=0)
    net = make_network((tile, tile, 1, 1), [nn.pool([8, 8]), nn.conv([1, 1], cfg.nb_filters,
                                                                     activation="YOLO")],
                       0.1, cfg)
    norm = Normalisation(kind="snr", mode="tanh", low=-5.0, high=50.0, tanh_scale=3.0)
    x0 = float(norm.apply(np.array([snr]), 1.0)[0])  # the threshold as a network input
    kernel = np.zeros((1, 1, 1, 1, cfg.nb_filters), np.float32)
    bias = np.zeros(cfg.nb_filters, np.float32)
    kernel[..., 6:8] = steep  # probability and objectness: sigmoid(steep * (x - x0))
    bias[6:8] = -steep * x0 / net.layers[1].bias  # CIANNA's bias: a weight on the value 0.5
    params = ({}, {"bias_weight": jnp.asarray(bias), "kernel": jnp.asarray(kernel)})
    return _save_model(folder, f"peaks_{snr:g}_{steep:g}", net, params,
                       dict(tile=(tile, tile), overlap=(8, 8), batch_size=64, noise_box=32,
                            normalisation=norm, obj_threshold=0.5, nms_threshold=0.1))


def make_peak_detector_3d(folder, snr: float, *, steep: float = 2000.0) -> str:
    """:func:`make_peak_detector` for cubes: in each 8x8-pixel, 4-channel cell of a
    16-channel, 32x32 tile, a peak voxel above ``snr`` times the channel's rms (one 16x16
    pixel, 8-channel box at the cell's centre).  Returns its card path."""
    import jax.numpy as jnp

    from cianna_jax import nn
    from cianna_jax.astro.model_card import Normalisation
    from cianna_jax.network import make_network
    from cianna_jax.yolo.config import make_config

    cfg = make_config((32, 32, 16), (4, 4, 4), nb_box=1, nb_class=0, max_nb_obj_per_image=16,
                      prior_size=np.array([[16.0], [16.0], [8.0]], np.float32),
                      IoU_type="DIoU", rand_startup=0)
    net = make_network((32, 32, 16, 1), [nn.pool([8, 8, 4]),
                                         nn.conv([1, 1, 1], cfg.nb_filters, activation="YOLO")],
                       0.1, cfg)
    norm = Normalisation(kind="snr", mode="tanh", low=-5.0, high=50.0, tanh_scale=3.0)
    x0 = float(norm.apply(np.array([snr]), 1.0)[0])
    kernel = np.zeros((1, 1, 1, 1, cfg.nb_filters), np.float32)
    bias = np.zeros(cfg.nb_filters, np.float32)
    kernel[..., 6:8] = steep
    bias[6:8] = -steep * x0 / net.layers[1].bias
    params = ({}, {"bias_weight": jnp.asarray(bias), "kernel": jnp.asarray(kernel)})
    return _save_model(folder, f"peaks3d_{snr:g}", net, params,
                       dict(tile=(16, 32, 32), overlap=(4, 8, 8), batch_size=16, noise_box=32,
                            normalisation=norm, obj_threshold=0.5, nms_threshold=0.1))


def make_tiny_3d(folder) -> str:
    """A 3D YOLO network (tiles of 8x16x16, cells of 4x8x8), random weights."""
    import jax

    from cianna_jax import nn
    from cianna_jax.network import init_params, make_network
    from cianna_jax.yolo.config import make_config

    cfg = make_config((16, 16, 8), (2, 2, 2), nb_box=1, nb_class=0, max_nb_obj_per_image=4,
                      prior_size=np.array([[8.0], [8.0], [4.0]], np.float32), rand_startup=0)
    layers = [nn.conv([3, 3, 3], 2, padding=[1, 1, 1]), nn.pool([2, 2, 2]),
              nn.conv([4, 4, 2], 2, stride=[4, 4, 2]),
              nn.conv([1, 1, 1], cfg.nb_filters, activation="YOLO")]
    net = make_network((16, 16, 8, 1), layers, 0.1, cfg)
    params = init_params(jax.random.key(4), net)
    return _save_model(folder, "tiny3d", net, params,
                       dict(tile=(8, 16, 16), overlap=(2, 4, 4), batch_size=4, noise_box=16,
                            obj_threshold=0.5, nms_threshold=0.1))


def truth_boxes(cat) -> np.ndarray:
    """The true boxes ``[n, 6]`` of a radio_sky cube catalogue: twice each line's FWHM on
    every axis (its ``bmaj`` on the sky, ``dz`` along the channels), pixel-edge frame."""
    half = np.stack([cat.bmaj, cat.bmaj, cat.dz], 1)
    centre = np.stack([cat.x, cat.y, cat.z], 1) + 0.5
    return np.concatenate([centre - half, centre + half], 1)


def write_line_cube(folder, seed: int, density: float):
    """A bright synthetic 40 x 64 x 64 line cube written as ``folder/c.fits``; returns the
    path and the :class:`~cianna_jax.astro.synthetic_cube.SyntheticCube`."""
    from cianna_jax.astro.synthetic_cube import synthetic_cube, write_cube_fits

    sc = synthetic_cube((40, 64, 64), seed=seed, density=density, snr_range=(3000.0, 30000.0))
    write_cube_fits(folder / "c.fits", sc)
    return folder / "c.fits", sc


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return make_tiny_2d(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def loaded_tiny(tiny_model):
    from cianna_jax.astro.model_card import load_model

    return load_model(tiny_model)


@pytest.fixture(scope="session")
def field(tmp_path_factory):
    """A 96x96 synthetic field (Jy/beam, WCS, beam, NaN border of 6 px) written as FITS,
    with its truth catalogue (ECSV); returns (fits path, truth path, SyntheticField)."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    d = tmp_path_factory.mktemp("field")
    f = synthetic_field(96, seed=7, nan_border=6, density=0.004, snr_range=(20.0, 3000.0))
    write_fits(d / "field.fits", f)
    write_catalogue(truth_table(f), d / "truth.ecsv")
    return str(d / "field.fits"), str(d / "truth.ecsv"), f
