"""Training a detector on a spectral-line cube: labels from the line catalogue, 3D patches
and targets, the cube network, and ``cianna-jax train`` end to end."""

import json
import re

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.architectures import build_cube_detector, build_detector, fit_priors  # noqa: E402
from cianna_jax.astro.catalogue import CatalogueError, read_catalogue, write_catalogue  # noqa: E402
from cianna_jax.astro.cube_sampler import CubePatchSampler, cube_grid_patches  # noqa: E402
from cianna_jax.astro.cube_training import cube_labels  # noqa: E402
from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.line_truth import W20_PER_W50  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402
from cianna_jax.astro.synthetic_cube import (  # noqa: E402
    cube_truth_table,
)
from cianna_jax.cli import main  # noqa: E402

from .conftest import write_line_cube  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    d = tmp_path_factory.mktemp("cube_train")
    path, sc = write_line_cube(d, seed=5, density=3e-3)
    write_catalogue(cube_truth_table(sc), d / "t.ecsv")
    return path, d / "t.ecsv", sc


def _labels(path, truth):
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        return cube_labels(str(truth), img, noise, 2.0)


def test_labels_box_each_line_by_its_size_and_width(field):
    path, truth, sc = field
    labels, snr, w20 = _labels(path, truth)
    t = read_catalogue(truth)
    b = labels.boxes
    assert len(labels) == len(t)
    # along the channels: twice the line's w50 (the simulated FWHM) about its centre
    assert b[:, 5] - b[:, 2] == pytest.approx(2 * sc.catalogue.dz, rel=1e-3)
    assert 0.5 * (b[:, 2] + b[:, 5]) - 0.5 == pytest.approx(sc.catalogue.z, abs=1e-3)
    assert w20 / W20_PER_W50 == pytest.approx(sc.catalogue.dz, rel=1e-3)
    # on the sky: twice the source's FWHM, at least twice the beam
    assert b[:, 3] - b[:, 0] == pytest.approx(2 * np.maximum(sc.catalogue.bmaj, 2.5), rel=1e-3)
    assert snr == pytest.approx(np.asarray(t["snr"]))
    with pytest.raises(CatalogueError, match="w20 or w50"):
        t2 = t[[c for c in t.colnames if c not in ("w20", "w50")]]
        write_catalogue(t2, truth.parent / "no_width.ecsv")
        _labels(path, truth.parent / "no_width.ecsv")


def test_cube_patches_carry_their_lines(field):
    """Bright lines: every target box of a patch holds its line's bright voxels, after the
    sky rotations and flips; the same seed and epoch give the same patches."""
    path, truth, sc = field
    labels, _, _ = _labels(path, truth)
    cube = sc.cube - np.median(sc.cube)
    s = CubePatchSampler(cube / cube.max(), (0, 0), labels, (0, 64, 0, 64), 32, 16, 8,
                         negative_fraction=0.2)
    x, t = s.epoch(1, 2, 24)
    assert x.shape == (24, 16, 32, 32, 1) and t.shape == (24, 1 + 8 * 7)
    x2, t2 = s.epoch(1, 2, 24)
    assert np.array_equal(x, x2) and np.array_equal(t, t2)
    n_boxes = 0
    for xi, ti in zip(x[..., 0], t):
        for k in range(int(ti[0])):
            x0, y0, z0, x1, y1, z1 = ti[2 + 7 * k:8 + 7 * k]
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32 and 0 <= z0 < z1 <= 16
            inside = xi[int(z0):int(np.ceil(z1)), int(y0):int(np.ceil(y1)),
                        int(x0):int(np.ceil(x1))]
            assert inside.max() > 0.5 * xi.max() or inside.max() > 1e-3
            n_boxes += 1
    assert n_boxes >= 10
    plan = s.plan_cube(1, 2, 24)
    pos = np.flatnonzero(plan.sky.kind == 1)
    assert pos.size >= 6
    for i in pos:  # each positive holds the line it was placed around, channels included
        k = plan.sky.source[i]
        zc = 0.5 * (labels.boxes[k, 2] + labels.boxes[k, 5])
        assert plan.z0[i] <= zc < plan.z0[i] + 16
        assert plan.sky.y0[i] <= labels.y[k] < plan.sky.y0[i] + 32
        assert plan.sky.x0[i] <= labels.x[k] < plan.sky.x0[i] + 32
    assert (plan.sky.source[plan.sky.kind != 1] == -1).all()
    vx, vt = cube_grid_patches(cube, (0, 0), labels, (0, 64, 32, 64), 32, 16, 8)
    assert vx.shape == (2 * 2, 16, 32, 32, 1) and vt.shape == (4, 57)


def test_cube_network_and_its_priors():
    boxes = np.array([[0, 0, 0, 4, 6, 10], [0, 0, 0, 8, 8, 20], [0, 0, 0, 2, 2, 4]], float)
    pri = fit_priors(boxes, 2, ndim=3)
    assert pri.shape == (3, 2) and pri[:, 1].tolist() == [8, 8, 20]
    net = build_cube_detector("cube", 32, 16, pri, 8)
    assert net.yolo.grid[:3] == (4, 4, 2) or tuple(net.yolo.grid) == (4, 4, 2)
    with pytest.raises(ValueError, match="--patch-channels: 12"):
        build_cube_detector("cube", 32, 12, pri, 8)
    with pytest.raises(ValueError, match="2D network"):
        build_cube_detector("default", 32, 16, pri, 8)
    with pytest.raises(ValueError, match="for cubes"):
        build_detector("cube", 32, pri[:2], 8)


def test_train_on_a_cube_then_predict_with_the_model(field, tmp_path, capsys):
    path, truth, _ = field
    out = tmp_path / "run"
    assert main(["train", "--image", str(path), "--catalogue", str(truth), "--out", str(out),
                 "--epochs", "2", "--patches-per-epoch", "16", "--batch", "8",
                 "--patch", "16", "--patch-channels", "16", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "patches 16 channels x 16x16 pixels" in text and "epoch 2/2" in text
    card = json.loads((out / "best.json").read_text())
    assert card["input"]["tile"] == [16, 16, 16]
    args = json.loads((out / "args.json").read_text())
    assert args["settings"]["patch_channels"] == 16 and args["run"]["patch_channels"] == 16
    # --resume continues the cube's run with its settings
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert "epoch 3/3" in capsys.readouterr().out
    assert len((out / "results.csv").read_text().strip().splitlines()) == 1 + 3
    # the model predicts on the cube, lines in physical units
    assert main(["predict", "--model", str(out / "best.json"), "--image", str(path), "--out",
                 str(tmp_path / "found.ecsv"), "--threshold", "0.0", "--quiet"]) == 0
    found = read_catalogue(tmp_path / "found.ecsv")
    assert {"z", "freq", "w20", "line_flux"} <= set(found.colnames)
    # a 2D option of a cube, and a cube option of an image, are refused by name
    err = main(["train", "--image", str(path), "--catalogue", str(truth), "--out",
                str(tmp_path / "r2"), "--arch", "sdc1", "--quiet"])
    assert err == 2 and "2D network" in capsys.readouterr().err
    image2d = tmp_path / "field.fits"
    assert main(["simulate", "--out", str(image2d), "--truth", str(tmp_path / "f.ecsv"),
                 "--size", "64"]) == 0
    for opt in (["--arch", "cube"], ["--patch-channels", "16"]):
        err = main(["train", "--image", str(image2d), "--catalogue", str(tmp_path / "f.ecsv"),
                    "--out", str(tmp_path / "r3"), "--quiet", *opt])
        assert err == 2 and opt[0] in capsys.readouterr().err
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_a_region_too_large_for_memory_is_streamed_or_refused_by_name():
    from cianna_jax.astro.cube_training import check_region_fits, physical_memory, region_fits

    assert region_fits((64, 256, 256), memory=16 * 2**30)   # 0.1 GiB of 16: held
    assert not region_fits((6668, 2048, 2048), memory=64 * 2**30)
    check_region_fits((64, 256, 256), "c.fits", memory=16 * 2**30)
    with pytest.raises(ValueError, match=r"c.fits: the validation strip \(6668 x 2048 x 2048"):
        check_region_fits((6668, 2048, 2048), "c.fits", memory=64 * 2**30)
    assert physical_memory() is None or physical_memory() > 2**28


def test_a_streamed_region_gives_the_patches_of_a_held_one(field, monkeypatch, tmp_path):
    """A training region over half of the memory is read patch by patch from the file: the
    same epochs and validation patches (here the memory is made small; the normalisation's
    sample then holds every channel, as the region is small)."""
    from cianna_jax.astro import cube_training
    from cianna_jax.astro.cube_sampler import CubeWindows
    from cianna_jax.astro.trainer import TrainSettings

    path, truth, _ = field
    s = TrainSettings(image=str(path), catalogue=str(truth), out=str(tmp_path / "r"),
                      patch=16, patch_channels=16, noise_box=32, patches_per_epoch=8)
    logs = []
    with open_image(path) as img, pytest.warns(UserWarning, match=r"target lines have boxes "
                                               r"larger than the patches \(16 channels x "
                                               r"16x16 pixels; the largest \d+ channels"):
        held = cube_training.prepare_cube(s, img, logs.append)
        (y0, y1, x0, x1), (v0, v1, u0, u1) = held.info["area"], held.info["valid_area"]
        region, strip = (y1 - y0) * (x1 - x0), (v1 - v0) * (u1 - u0)  # per channel
        memory = 2 * cube_training.BYTES_PER_VOXEL * img.shape[0] * (region + strip) // 2
        monkeypatch.setattr(cube_training, "physical_memory", lambda: memory)
        streamed = cube_training.prepare_cube(s, img, logs.append)
        assert isinstance(streamed.sampler.cube, CubeWindows)
        assert not isinstance(held.sampler.cube, CubeWindows)
        assert held.info["region_in_memory"] and not streamed.info["region_in_memory"]
        assert any("patches are read from the file" in m for m in logs)
        for a, b in zip(held.sampler.epoch(0, 1, 8), streamed.sampler.epoch(0, 1, 8)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(held.val_x, streamed.val_x)
        np.testing.assert_array_equal(held.val_areas[0].pixels, streamed.val_areas[0].pixels)
        assert held.card.normalisation == streamed.card.normalisation
        # a larger region: its normalisation fitted on a sample of its channels
        monkeypatch.setattr(cube_training, "NORM_SAMPLE", 20_000)
        sampled = cube_training.prepare_cube(s, img, logs.append)
        assert any(re.search(r"normalisation fitted on every [2-9] channels", m) for m in logs[-3:])
        x, t = sampled.sampler.epoch(0, 1, 8)
        assert x.shape == (8, 16, 16, 16, 1) and np.isfinite(x).all()


def test_validation_keeps_one_of_a_lines_two_boxes_as_predict_does(field, monkeypatch):
    """Each line boxed twice (its low and its high half in channel, as a detector boxes
    each horn of a double-horned line): the per-epoch validation merges them as predict
    does, so the tuned threshold sees no false detection (without the merge, half)."""
    from types import SimpleNamespace

    from cianna_jax.astro import train_validation
    from cianna_jax.astro.predict import Detections
    from cianna_jax.yolo.decode import DecodedBoxes

    path, truth, sc = field
    t = read_catalogue(truth)
    labels, snr, w20 = _labels(path, truth)
    x, y, z = (np.asarray(t[c], np.float64) for c in ("x", "y", "z"))
    half = np.maximum(np.asarray(t["bmaj"]) / sc.pixel_scale, 2.5)
    lo = np.stack([x - half, y - half, z - 0.5 * w20, x + half, y + half, z], 1) + 0.5
    hi = np.stack([x - half, y - half, z, x + half, y + half, z + 0.5 * w20], 1) + 0.5
    boxes = np.concatenate([lo, hi])
    n = len(boxes)
    obj = np.concatenate([np.full(len(t), 0.9), np.full(len(t), 0.8)])
    found = Detections(DecodedBoxes(boxes=boxes, image=np.zeros(n, int),
                                    prior=np.zeros(n, int), cell=np.zeros((n, 3), int),
                                    probability=obj, objectness=obj,
                                    class_scores=np.zeros((n, 0)), params=np.zeros((n, 0))),
                       1, 1.0, 0.05)
    monkeypatch.setattr(train_validation, "detect", lambda *a, **k: found)
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        pixels = img.read((slice(None), slice(None), slice(None)))
    area = train_validation.ValidationArea(
        pixels=pixels, origin=(0, 0), noise=noise, x=x, y=y, radius=np.maximum(half, 2.5),
        counted=np.ones(len(t), bool), z=z, z_tolerance=np.maximum(0.5 * w20, 1.0),
        beam_sigma=2.5 / 2.3548)
    model = SimpleNamespace(card=SimpleNamespace(score="objectness", box_scale=2.0))
    v = train_validation.validate_areas(model, [area], None)
    # (three pairs of these bright lines, 15 times the simulator's default density, lie
    # within the sum of their sizes on the sky and overlap in channel: one of each kept)
    assert len(t) >= 5 and v.precision == 1.0 and v.recall >= 0.75
    assert len(t) - 3 <= v.n_detections <= len(t)
    monkeypatch.setattr(train_validation, "line_owners", lambda m, *a: np.arange(len(m.x)))
    unmerged = train_validation.validate_areas(model, [area], None)
    assert unmerged.curve["precision"][0] < 0.55 and unmerged.curve["n_det"][0] == n


def test_labels_see_a_primary_beam_at_each_line_s_channel(field):
    """A cube that is not primary-beam corrected, a catalogue of true line fluxes (no snr
    column): each line's SNR (which decides the targets) and priority flux are scaled by the
    beam's response at its position and channel; lines beyond the model's main lobe are left
    out with a warning."""
    from cianna_jax.astro.primary_beam import BeamModel, pb_response

    path, truth, _ = field
    t = read_catalogue(truth)
    del t["snr"]
    write_catalogue(t, truth.parent / "no_snr.ecsv")
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        beam = BeamModel("cosine", 0.45 * img.shape[-1] * img.pixel_scale / 60)
        plain, snr, _ = cube_labels(str(truth.parent / "no_snr.ecsv"), img, noise, 2.0)
        a = pb_response(beam, img, plain.x, plain.y, 0.5 * (plain.boxes[:, 2]
                                                            + plain.boxes[:, 5]) - 0.5)
        with pytest.warns(UserWarning, match="primary beam .* not known"):
            seen, seen_snr, _ = cube_labels(str(truth.parent / "no_snr.ecsv"), img, noise, 2.0,
                                            beam)
    known = np.isfinite(a)
    assert 0 < known.sum() == len(seen) < len(plain)
    np.testing.assert_allclose(seen_snr, snr[known] * a[known], rtol=1e-6)  # (boxes: f32)
    np.testing.assert_allclose(seen.flux, plain.flux[known] * a[known], rtol=1e-6)
    assert a[known].min() < 0.5
