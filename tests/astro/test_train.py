"""``cianna-jax train``: architectures, schedule, checkpoints, results files, validation
scores, a run end to end on a small FITS field, bit-identical resume and the command line."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from cianna_jax import cli
from cianna_jax.astro.architectures import build_detector, fit_priors, get_architecture
from cianna_jax.astro.best_epoch import best_epoch
from cianna_jax.astro.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cianna_jax.astro.run_log import COLUMNS, FigureSchedule, read_results_csv, write_results_csv
from cianna_jax.astro.train_validation import (
    average_precision,
    f1_standard_error,
    tune_threshold,
)
from cianna_jax.astro.trainer import TrainSettings, learning_rate_at_epoch, train_detector

# cli.main tunes XLA flags, which warns in a process where JAX already started
pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")

# --------------------------------------------------------------------------- pieces


def test_fit_priors_takes_sizes_at_area_quantiles():
    sizes = np.array([2, 4, 6, 8, 10, 12, 14, 16], float)
    boxes = np.zeros((8, 6))
    boxes[:, 3], boxes[:, 4] = sizes, sizes / 2
    pri = fit_priors(boxes[::-1], 2)  # order of the boxes does not matter
    assert pri.shape == (2, 2)
    np.testing.assert_allclose(pri, [[6, 14], [3, 7]])  # quantiles 0.25 and 0.75 of 8 boxes
    with pytest.raises(ValueError, match="no training box"):
        fit_priors(np.zeros((0, 6)), 2)


def test_build_detector_checks_patch_and_priors():
    pri = np.array([[6.0, 12.0], [6.0, 12.0]], np.float32)
    net = build_detector("default", 32, pri, 8)
    assert tuple(net.yolo.grid[:2]) == (4, 4) and net.yolo.nb_box == 2
    with pytest.raises(ValueError, match="--patch: 36 is not a positive multiple"):
        build_detector("default", 36, pri, 8)
    with pytest.raises(ValueError, match="2 boxes per cell, got 3 priors"):
        build_detector("default", 32, np.ones((2, 3), np.float32), 8)
    with pytest.raises(ValueError, match="--arch: unknown architecture 'yolo9'"):
        get_architecture("yolo9")
    sdc1 = build_detector("sdc1", 64, None, 8)  # CIANNA's SDC1 network: 17 convolutions + norm
    kinds = [type(layer).__name__ for layer in sdc1.layers]
    assert kinds.count("Conv") == 17 and kinds.count("Norm") == 1
    assert sdc1.yolo.nb_box == 9 and tuple(sdc1.yolo.grid[:2]) == (4, 4)


def test_learning_rate_warms_up_then_decays_independently_of_the_total():
    s = TrainSettings(image="a", catalogue="b", out="c", learning_rate=0.01, warmup_epochs=2,
                      lr_decay=0.1)
    lrs = [learning_rate_at_epoch(s, e) for e in range(1, 6)]
    np.testing.assert_allclose(lrs[:2], [0.01 * 0.51, 0.01])
    np.testing.assert_allclose(lrs[2:], 0.01 * np.exp(-0.1 * np.arange(1, 4)))
    s2 = TrainSettings(image="a", catalogue="b", out="c", epochs=3, learning_rate=0.01,
                       warmup_epochs=2, lr_decay=0.1)
    assert [learning_rate_at_epoch(s2, e) for e in (1, 2, 3)] == lrs[:3]


@pytest.mark.parametrize("field,value,match", [
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("valid_fraction", 0.7, r"valid_fraction must be in \(0, 0.5\]"),
    ("learning_rate", float("nan"), "learning_rate must be finite"),
    ("normalisation", "zscore", "normalisation must be 'snr' or 'minmax_tanh'"),
    ("arch", "resnet", "unknown architecture"),
    ("mixed_precision", "FP16C_FP32A", "float16 training needs loss scaling"),
    ("mixed_precision", "FP8", "unknown mode 'FP8'"),
])
def test_settings_are_checked(field, value, match):
    s = TrainSettings(image="a", catalogue="b", out="c", **{field: value})
    with pytest.raises(ValueError, match=match):
        s.check()


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    params = ({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, np.ones(2, np.float32))
    state = (np.full(3, 0.5, np.float32), np.int32(7))
    save_checkpoint(tmp_path / "c.npz", params, state, {"epoch": 3, "history": [{"f1": 0.5}]})
    p2, s2, meta = load_checkpoint(tmp_path / "c.npz", params, state)
    np.testing.assert_array_equal(p2[0]["w"], params[0]["w"])
    assert int(s2[1]) == 7 and meta == {"epoch": 3, "history": [{"f1": 0.5}]}
    with pytest.raises(CheckpointError, match="expected float32\\[2, 4\\]"):
        load_checkpoint(tmp_path / "c.npz", ({"w": np.zeros((2, 4), np.float32)},
                                             np.ones(2, np.float32)), state)
    with pytest.raises(CheckpointError, match="arrays for"):
        load_checkpoint(tmp_path / "c.npz", params, (np.zeros(3, np.float32),))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "bad.npz", params, state)
    for size in (500, 30, 4):  # cut short (a full disk, a copy interrupted): a zip's start
        (tmp_path / "cut.npz").write_bytes((tmp_path / "c.npz").read_bytes()[:size])
        with pytest.raises(CheckpointError, match="cut.npz: cannot read the checkpoint"):
            load_checkpoint(tmp_path / "cut.npz", params, state)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.npz", params, state)
    # a checkpoint of the earlier format (conv weights as CIANNA's rows) is named as such
    with np.load(tmp_path / "c.npz") as data:
        old = {k: data[k] for k in data.files}
    old["format"] = np.array("cianna_jax.train_checkpoint/1")
    np.savez(tmp_path / "old.npz", **old)
    with pytest.raises(CheckpointError, match="earlier cianna_jax .* cannot be resumed"):
        load_checkpoint(tmp_path / "old.npz", params, state)


def test_results_csv_round_trip(tmp_path):
    rows = [{c: float(i + k) for k, c in enumerate(COLUMNS)} | {"epoch": i} for i in (1, 2)]
    write_results_csv(tmp_path / "r.csv", rows)
    back = read_results_csv(tmp_path / "r.csv")
    assert [r["epoch"] for r in back] == [1, 2]
    assert back[1]["f1"] == pytest.approx(rows[1]["f1"])
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == ",".join(COLUMNS)


def test_figure_schedule_redraws_at_most_every_interval_and_always_at_the_end():
    now, drawn = [0.0], []

    def draw(history):  # a drawing that takes 2 s of the fake clock
        drawn.append(len(history))
        now[0] += 2.0
        return True

    fig = FigureSchedule(draw, interval=30.0, share_cost=10.0, clock=lambda: now[0])
    history = []
    for _ in range(12):  # epochs of 5 s
        history.append({})
        fig.epoch_done(history)
        now[0] += 5.0
    # drawn after epoch 1 (t = 0), then after the first epoch ending 30 s after that
    # drawing started (epoch 7, t = 32); not again by epoch 12 (t = 59 < 32 + 30)
    assert drawn == [1, 7]
    assert fig.flush(history) and drawn == [1, 7, 12]
    assert fig.flush(history) and drawn == [1, 7, 12]  # nothing new: no redraw
    slow = FigureSchedule(lambda h: (drawn.append(-1), now.__setitem__(0, now[0] + 10.0))[0]
                          is None, interval=1.0, share_cost=3.0, clock=lambda: now[0])
    slow.epoch_done(history)
    now[0] += 15.0  # 25 s after the 10 s drawing started: under 3 x its cost
    slow.epoch_done(history)
    assert drawn.count(-1) == 1
    assert not FigureSchedule(lambda h: False).flush([{}])  # no matplotlib: nothing written


def test_an_interrupted_run_still_draws_its_finished_epochs():
    from cianna_jax.astro.trainer import _drawn_if_interrupted

    drawn = []
    fig = FigureSchedule(lambda h: drawn.append(len(h)) is None, interval=1e9)
    history = [{}]
    with pytest.raises(KeyboardInterrupt), _drawn_if_interrupted(fig, history):
        fig.epoch_done(history)
        history.append({})  # epoch 2 finished, not drawn yet (interval)
        raise KeyboardInterrupt
    assert drawn == [1, 2]
    broken = FigureSchedule(lambda h: 1 / 0)
    with pytest.raises(FloatingPointError), _drawn_if_interrupted(broken, history):
        raise FloatingPointError("diverged")  # a failing drawing does not hide it


def test_average_precision_and_threshold_tuning():
    # recall 0.5 at precision 1, recall 1 at precision 0.5: VOC area = 0.5*1 + 0.5*0.5
    assert average_precision(np.array([1.0, 0.5]), np.array([0.5, 1.0])) == pytest.approx(0.75)
    # a dip in precision is lifted by the envelope of the higher-recall point
    assert average_precision(np.array([0.5, 0.8]), np.array([0.5, 1.0])) == pytest.approx(0.8)
    assert average_precision(np.array([np.nan]), np.array([np.nan])) == 0.0
    curve = {"precision": np.array([0.5, 0.8, 0.6, np.nan]), "recall": np.array([1.0, 0.9, 0.8, 0.0])}
    assert tune_threshold(curve) == 1  # F1 0.667, 0.847, 0.686, NaN
    tie = {"precision": np.array([0.5, 0.5, 0.2]), "recall": np.array([0.5, 0.5, 0.1])}
    assert tune_threshold(tie) == 1  # equal F1: the higher threshold (fewer detections)


def test_threshold_one_standard_error_rule():
    assert f1_standard_error(0.5, 50, 50) == pytest.approx(0.05)  # sqrt(0.25 / 100)
    assert f1_standard_error(0.8, 0, 0) == 0.0
    # F1 0.8347, 0.8324, 0.8265, 0.6644: a plateau over the first three thresholds
    curve = {"precision": np.array([0.85, 0.92, 0.97, 0.99]),
             "recall": np.array([0.82, 0.76, 0.72, 0.50]),
             "n_det": np.array([480, 410, 370, 250])}
    assert tune_threshold(curve) == 0  # the best F1 alone
    # SE at the best: sqrt(0.8347 * 0.1653 / (480 + 500)) = 0.0119 -> F1 >= 0.8228
    assert tune_threshold(curve, n_true=500) == 2
    assert tune_threshold(curve, n_true=10**6) == 0  # a precise F1: no plateau
    no_counts = {k: v for k, v in curve.items() if k != "n_det"}
    assert tune_threshold(no_counts, n_true=500) == 0


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def train_field(tmp_path_factory):
    """A 256x256 synthetic field (Jy/beam, WCS, beam, rising noise, blends, NaN border)
    and its catalogue (ECSV), plus a 192x192 test field."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    d = tmp_path_factory.mktemp("trainfield")
    out = {}
    for name, size, seed in (("train", 256, 11), ("test", 192, 12)):
        f = synthetic_field(size, seed=seed, density=0.004, snr_range=(15.0, 3000.0),
                            noise_edge=1.5, blend_fraction=0.1, nan_border=6)
        write_fits(d / f"{name}.fits", f)
        write_catalogue(truth_table(f), d / f"{name}.ecsv")
        out[name] = (str(d / f"{name}.fits"), str(d / f"{name}.ecsv"))
    return out


def _settings(field, out, epochs):
    img, cat = field["train"]
    return TrainSettings(image=img, catalogue=cat, out=str(out), epochs=epochs, patch=32,
                         patches_per_epoch=64, batch_size=16, seed=5, valid_fraction=0.25)


@pytest.fixture(scope="module")
def straight_run(train_field, tmp_path_factory):
    out = tmp_path_factory.mktemp("run4")
    lines: list[str] = []
    res = train_detector(_settings(train_field, out, 4), log=lines.append, progress=False)
    return out, res, lines


def test_a_run_writes_models_results_and_curves(straight_run):
    out, res, lines = straight_run
    for name in ("args.json", "results.csv", "last.dat", "last.json", "best.dat", "best.json",
                 "checkpoint.npz", "training.png"):
        assert (out / name).stat().st_size > 0, name
    rows = read_results_csv(out / "results.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert res.best["epoch"] == best_epoch(rows)["epoch"]  # (the rule replayed on the file)
    card = json.loads((out / "best.json").read_text())
    assert card["notes"]["epoch"] == res.best["epoch"]
    assert card["network"]["file"] == "best.dat"
    assert card["detection"]["obj_threshold"] == pytest.approx(res.best["threshold"])
    assert card["input"]["normalisation"]["kind"] == "snr"
    assert card["notes"]["validation"]["f1"] == pytest.approx(res.best["f1"])
    # the training images' scale, which predict compares an image with
    from astropy.io import fits

    hdr = fits.getheader(json.loads((out / "args.json").read_text())["settings"]["image"])
    scale = abs(hdr["CDELT2"]) * 3600
    assert card["notes"]["pixel_scale_arcsec"] == [pytest.approx(scale)]
    np.testing.assert_allclose(card["notes"]["beam_fwhm_pixels"],
                               [[hdr["BMAJ"] * 3600 / scale, hdr["BMIN"] * 3600 / scale]])
    assert sum(line.startswith("epoch ") for line in lines) == 4
    assert "ETA" in lines[-3] and "best epoch" in lines[-1]
    for r in rows:  # where an epoch's time went: training steps, validation, the rest
        assert 0 < r["train_seconds"] and 0 < r["validation_seconds"]
        assert r["train_seconds"] + r["validation_seconds"] < r["epoch_seconds"]
        assert r["patches_per_second"] == pytest.approx(64 / r["train_seconds"], rel=1e-5)
    assert "patches/s)" in lines[-3]


def test_fine_tuning_starts_from_a_trained_detector(straight_run, train_field, tmp_path,
                                                   capsys):
    """--init: a run on another field starts from the 4-epoch detector's weights (its first
    epoch's loss below a fresh run's), keeping its architecture, tile, normalisation and
    priors; its card records where it came from."""
    out4, _, _ = straight_run
    img, cat = train_field["test"]
    base = str(out4 / "best.json")
    common = dict(image=img, catalogue=cat, epochs=1, patches_per_epoch=64, batch_size=16,
                  seed=5, valid_fraction=0.25)
    fresh = train_detector(TrainSettings(out=str(tmp_path / "fresh"), patch=32, **common),
                           log=lambda *a: None, progress=False)
    lines: list[str] = []
    tuned = train_detector(TrainSettings(out=str(tmp_path / "tuned"), init=base, **common),
                           log=lines.append, progress=False)
    assert tuned.history[0]["train_loss"] < 0.9 * fresh.history[0]["train_loss"]
    assert any(line.startswith("starting from") for line in lines)
    card, old = (json.loads(p.read_text()) for p in (tmp_path / "tuned" / "best.json",
                                                    out4 / "best.json"))
    assert card["notes"]["fine_tuned_from"] == os.path.abspath(base)
    assert card["input"]["normalisation"] == old["input"]["normalisation"]
    assert card["input"]["tile"] == old["input"]["tile"] and card["notes"]["arch"] == "default"
    args = json.loads((tmp_path / "tuned" / "args.json").read_text())
    assert args["run"]["priors"] == json.loads((out4 / "args.json").read_text())["run"]["priors"]
    with pytest.raises(ValueError, match="--patch: 64, but the model of --init takes 32"):
        train_detector(TrainSettings(out=str(tmp_path / "x"), init=base, **{**common,
                                                                            "patch": 64}))
    with pytest.raises(ValueError, match="--arch: sdc1, but the model of --init"):
        train_detector(TrainSettings(out=str(tmp_path / "x"), init=base, arch="sdc1", **common))
    from cianna_jax.astro.model_card import ModelError

    from .conftest import make_tiny_2d

    with pytest.raises(ModelError, match="does not record its architecture"):
        train_detector(TrainSettings(out=str(tmp_path / "x"), init=make_tiny_2d(tmp_path),
                                     **common))
    assert cli.main(["train", "--image", img, "--catalogue", cat, "--out",
                     str(tmp_path / "y"), "--init", base, "--normalisation", "minmax_tanh",
                     "--quiet"]) == 2
    assert "brings its own" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_bfloat16_run_trains_as_the_float32_one(straight_run, train_field, tmp_path):
    """``mixed_precision="BF16C_FP32A"``: the first epoch's training loss is the float32
    run's to bfloat16 rounding (it differs, so the mode ran, by under 5%); the model card
    records the mode."""
    _, res32, _ = straight_run
    s = dataclasses.replace(_settings(train_field, tmp_path / "bf16", 1),
                            mixed_precision="BF16C_FP32A")
    res = train_detector(s, log=lambda *_: None, progress=False)
    a, b = res32.history[0]["train_loss"], res.history[0]["train_loss"]
    assert np.isfinite(b) and a != b and abs(b - a) < 0.05 * abs(a)
    card = json.loads((tmp_path / "bf16" / "last.json").read_text())
    assert card["notes"]["mixed_precision"] == "BF16C_FP32A"


def test_resume_is_bit_identical(straight_run, train_field, tmp_path, monkeypatch):
    """2 + 2 epochs as 4 straight, the run started with relative paths, its folder copied
    elsewhere and resumed from another working folder: it continues in the copy (args.json
    keeps absolute inputs), the original untouched."""
    import shutil

    from cianna_jax.io.network_file import load_network

    out4, _, _ = straight_run
    first = tmp_path / "run2"
    monkeypatch.chdir(os.path.dirname(train_field["train"][0]))
    s = dataclasses.replace(_settings(train_field, first, 2), image="train.fits",
                            catalogue="train.ecsv")
    train_detector(s, log=lambda *_: None, progress=False)
    saved = json.loads((first / "args.json").read_text())["settings"]
    assert saved["image"] == train_field["train"][0] and os.path.isabs(saved["catalogue"])
    out = tmp_path / "run2+2"
    shutil.copytree(first, out)
    # a run saved with relative inputs (before they were made absolute): found beside it
    for f in train_field["train"]:
        shutil.copy(f, tmp_path)
    args = json.loads((out / "args.json").read_text())
    args["settings"].update(image="train.fits", catalogue="train.ecsv")
    (out / "args.json").write_text(json.dumps(args))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    lines: list[str] = []
    train_detector(resume_from=str(out), epochs=4, log=lines.append, progress=False)
    assert any(line.startswith(f"resuming {out} at epoch 3 of 4") for line in lines)
    assert len(read_results_csv(first / "results.csv")) == 2
    a = load_network(out4 / "last.dat", binary=True)
    b = load_network(out / "last.dat", binary=True)
    import jax

    la, lb = jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    ca, cb = np.load(out4 / "checkpoint.npz"), np.load(out / "checkpoint.npz")
    assert sorted(ca.files) == sorted(cb.files)
    for k in ca.files:
        if k != "meta":
            np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    ra, rb = read_results_csv(out4 / "results.csv"), read_results_csv(out / "results.csv")
    for x, y in zip(ra, rb):
        for c in COLUMNS:
            if "second" not in c:  # times and rates
                assert x[c] == y[c] or (np.isnan(x[c]) and np.isnan(y[c])), c
    with pytest.raises(ValueError, match="already has 4 epochs"):
        train_detector(resume_from=str(out), log=lambda *_: None, progress=False)


def test_divergence_stops_the_run_and_keeps_only_good_epochs(train_field, tmp_path,
                                                             monkeypatch):
    """A non-finite training loss, or finite weights whose validation outputs overflow,
    stops the run before anything of that epoch is saved (an epoch with a NaN validation
    loss used to be kept, as best model too)."""
    from cianna_jax.astro import trainer

    out = tmp_path / "lr"
    s = dataclasses.replace(_settings(train_field, out, 2), learning_rate=1e6)
    with pytest.raises(FloatingPointError,
                       match=r"training diverged at epoch 1 \(loss -?(nan|inf)\); "
                             r"no epoch finished before it, so .* holds no model"):
        train_detector(s, log=lambda _: None, progress=False)
    assert sorted(os.listdir(out)) == ["args.json"]

    val_losses = trainer._val_losses
    calls = []

    def overflowing(*args, **kw):  # the second epoch's validation overflows
        calls.append(1)
        v = val_losses(*args, **kw)
        return v if len(calls) == 1 else v * np.nan

    monkeypatch.setattr(trainer, "_val_losses", overflowing)
    out = tmp_path / "val"
    s = dataclasses.replace(_settings(train_field, out, 2), patches_per_epoch=16)
    with pytest.raises(FloatingPointError, match=r"training diverged at epoch 2 \(validation "
                                                 r"loss nan\); the last good epoch \(1\) is kept"):
        train_detector(s, log=lambda _: None, progress=False)
    assert [r["epoch"] for r in read_results_csv(out / "results.csv")] == [1]
    assert json.loads((out / "best.json").read_text())["notes"]["epoch"] == 1
    assert json.loads((out / "last.json").read_text())["notes"]["epoch"] == 1


def test_resume_refuses_changed_inputs(straight_run, train_field, tmp_path):
    import shutil

    out4, _, _ = straight_run
    copy = tmp_path / "copy"
    shutil.copytree(out4, copy)
    cat = tmp_path / "cat.ecsv"
    shutil.copy(train_field["train"][1], cat)
    with open(cat, "a") as fh:
        fh.write("\n")
    args = json.loads((copy / "args.json").read_text())
    args["settings"]["catalogue"], args["settings"]["out"] = str(cat), str(copy)
    (copy / "args.json").write_text(json.dumps(args))
    with pytest.raises(ValueError, match="image or catalogue changed"):
        train_detector(resume_from=str(copy), epochs=5, log=lambda *_: None, progress=False)
    with pytest.raises(FileNotFoundError, match="not a cianna-jax train run"):
        train_detector(resume_from=str(tmp_path), epochs=5, log=lambda *_: None, progress=False)


def test_predict_warns_on_an_image_of_another_beam_in_pixels(straight_run, train_field,
                                                            tmp_path):
    """An image whose beam spans 3x the training images' pixels (its pixel scale a third):
    predict and val warn, naming both widths and the pixel scale to regrid to; the training
    scale itself, a card without the training scale, or an image without a beam: silent."""
    import warnings

    from astropy.io import fits

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.model_card import load_model
    from cianna_jax.astro.pipeline import find_sources, warn_if_other_scale

    out4, _, _ = straight_run
    img, cat = train_field["test"]
    mdl = load_model(out4 / "best.json")
    with fits.open(img) as hdul:
        data, hdr = hdul[0].data, hdul[0].header.copy()
    for k in ("CDELT1", "CDELT2"):
        hdr[k] /= 3.0
    fits.writeto(tmp_path / "fine.fits", data, hdr)
    with pytest.warns(UserWarning, match=r"its beam is .* pixels wide .* look 3x larger") as rec:
        find_sources(str(tmp_path / "fine.fits"), mdl, progress=False, fit=False)
    scale = abs(hdr["CDELT2"]) * 3600 * 3
    assert f"about {scale:.3g} arcsec per pixel" in str(rec[0].message)
    from cianna_jax.astro.validate import validate

    with pytest.warns(UserWarning, match="pixels wide"):
        validate(str(tmp_path / "fine.fits"), mdl, cat, tmp_path / "rep", plots=False,
                 progress=False)
    hdr["CDELT1"], hdr["CDELT2"] = hdr["CDELT1"] * 6, hdr["CDELT2"] * 6
    fits.writeto(tmp_path / "coarse.fits", data, hdr)
    with open_image(str(tmp_path / "coarse.fits")) as im:
        with pytest.warns(UserWarning, match="look 0.5x smaller"):
            warn_if_other_scale(mdl.card, im)
    del hdr["BMAJ"], hdr["BMIN"]
    fits.writeto(tmp_path / "nobeam.fits", data, hdr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_image(img) as im:
            assert warn_if_other_scale(mdl.card, im) is None
            notes = {k: v for k, v in mdl.card.notes.items() if k != "beam_fwhm_pixels"}
            assert warn_if_other_scale(dataclasses.replace(mdl.card, notes=notes), im) is None
        warnings.simplefilter("ignore")  # the missing beam's own warnings
        with open_image(str(tmp_path / "nobeam.fits")) as im:
            warnings.simplefilter("error")
            assert warn_if_other_scale(mdl.card, im) is None


def test_cli_train_predict_val(straight_run, train_field, tmp_path, capsys):
    out4, _, _ = straight_run
    img, cat = train_field["test"]
    model = str(out4 / "best.json")
    assert cli.main(["predict", "--model", model, "--image", img, "--out",
                     str(tmp_path / "s.ecsv"), "--quiet"]) == 0
    # the run folder itself stands for its best model
    assert cli.main(["predict", "--model", str(out4), "--image", img, "--out",
                     str(tmp_path / "s2.ecsv"), "--quiet"]) == 0
    assert (tmp_path / "s2.ecsv").read_bytes() == (tmp_path / "s.ecsv").read_bytes()
    # a truth with classes: a detector that does not classify gets its completeness per class
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue

    truth = read_catalogue(cat)
    truth["kind"] = np.where(np.asarray(truth["flux"]) > np.median(truth["flux"]), "bright", "")
    write_catalogue(truth, tmp_path / "kinds.ecsv")
    assert cli.main(["val", "--model", model, "--image", img, "--catalogue",
                     str(tmp_path / "kinds.ecsv"), "--out", str(tmp_path / "rep"), "--quiet",
                     "--no-plots", "--class-column", "kind"]) == 0
    text = capsys.readouterr().out
    assert "precision (reliability)" in text and os.path.isfile(tmp_path / "rep" / "scores.json")
    assert "detection by true class (the truth's kind" in text
    by_class = json.loads((tmp_path / "rep" / "scores.json").read_text())["detected_by_class"]
    assert by_class["classes"] == ["bright"] and by_class["per_class"]["bright"]["n_true"] > 0
    # the command itself: errors are one line on stderr, exit status 2
    assert cli.main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--image and --catalogue required" in capsys.readouterr().err
    assert cli.main(["train", "--image", img, "--catalogue", str(tmp_path / "none.ecsv"),
                     "--out", str(tmp_path / "x")]) == 2
    assert "none.ecsv not found" in capsys.readouterr().err
    timg, tcat = train_field["train"]
    (tmp_path / "noflux.csv").write_text("ra,dec\n0.0,-30.0\n")  # refused: no run folder made
    assert cli.main(["train", "--image", timg, "--catalogue", str(tmp_path / "noflux.csv"),
                     "--out", str(tmp_path / "norun"), "--quiet"]) == 2
    assert "flux" in capsys.readouterr().err and not (tmp_path / "norun").exists()
    (tmp_path / "file").write_text("")  # a file where the run folder should go
    assert cli.main(["train", "--image", timg, "--catalogue", tcat, "--out",
                     str(tmp_path / "file"), "--quiet"]) == 2
    assert "file: exists and is not a folder" in capsys.readouterr().err
    # --epochs 0 is refused, not taken for the default 30
    assert cli.main(["train", "--image", timg, "--catalogue", tcat, "--out",
                     str(tmp_path / "zero"), "--epochs", "0", "--quiet"]) == 2
    assert "epochs must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()
    run = tmp_path / "clirun"
    assert cli.main(["train", "--image", timg, "--catalogue", tcat, "--out", str(run),
                     "--epochs", "1", "--patch", "32", "--patches-per-epoch", "32",
                     "--quiet"]) == 0
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "0", "--quiet"]) == 2
    assert "epochs must be an integer >= 1, got 0" in capsys.readouterr().err
    # a run's own settings are not silently replaced (nor ignored) on --resume
    for extra, named in ((["--lr", "0.5"], "--lr"),
                         (["--lr=0.5", "--image", timg], "--lr, --image"),
                         (["--min", "3"], "--min-snr"),
                         (["--mixed-precision", "off"], "--mixed-precision")):
        assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "2", *extra]) == 2
        assert (f"--resume continues {run} with the settings it was started with "
                f"({run / 'args.json'}): {named} cannot be given with it (--epochs can)"
                in capsys.readouterr().err)
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert f"resuming {run} at epoch 2 of 2" in text and "next: cianna-jax predict" in text
    assert [r["epoch"] for r in read_results_csv(run / "results.csv")] == [1, 2]


@pytest.mark.slow
def test_sdc1_network_trains_and_its_model_loads(train_field, tmp_path):
    """CIANNA's SDC1 network (17 convolutions, 9 priors) through the whole train path; its
    model card loads for predict."""
    from cianna_jax.astro.model_card import load_model

    img, cat = train_field["train"]
    res = train_detector(TrainSettings(image=img, catalogue=cat, out=str(tmp_path), arch="sdc1",
                                       patch=32, epochs=1, patches_per_epoch=16, batch_size=8,
                                       learning_rate=2e-4, momentum=0.8, valid_fraction=0.25),
                         log=lambda *_: None, progress=False)
    row = res.history[-1]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    model = load_model(tmp_path / "best.json")
    assert model.net.yolo.nb_box == 9 and model.card.tile == (32, 32)


def test_training_on_several_fields(train_field, tmp_path, capsys):
    """--image/--catalogue repeated: one detector trained on two fields, patches drawn from
    both in proportion to their training areas, every field's validation strip counted, the
    run resumable; unpaired or differently scaled fields are refused before any folder."""
    (img1, cat1), (img2, cat2) = train_field["train"], train_field["test"]
    out = tmp_path / "two"
    common = ["--patch", "32", "--patches-per-epoch", "48", "--batch", "16", "--seed", "5",
              "--valid-fraction", "0.25", "--quiet"]
    # both synthetic fields are centred on one sky position: the smaller one's validation
    # strip lies in the larger one's training area, which the run says
    with pytest.warns(UserWarning, match="of its validation strip lies on the sky in the training"):
        assert cli.main(["train", "--image", img1, "--catalogue", cat1, "--image", img2,
                         "--catalogue", cat2, "--out", str(out), "--epochs", "1", *common]) == 0
    args = json.loads((out / "args.json").read_text())
    assert {o["validation_image"] for o in args["run"]["validation_overlaps"]} <= {img1, img2}
    assert args["settings"]["more_fields"] == [[img2, cat2]]
    fields = args["run"]["fields"]
    assert [f["image"] for f in fields] == [img1, img2]
    assert args["run"]["n_valid_counted"] == sum(f["n_valid_counted"] for f in fields)
    assert all(f["n_valid_counted"] > 0 for f in fields)
    rows = read_results_csv(out / "results.csv")
    assert rows[0]["n_true"] == args["run"]["n_valid_counted"]  # both strips scored
    assert "fingerprint" in args and len(args["fingerprint"]["more_fields"]) == 1
    notes = json.loads((out / "best.json").read_text())["notes"]
    assert notes["more_fields"] == [[os.path.abspath(img2), os.path.abspath(cat2)]]
    with pytest.warns(UserWarning, match="of its validation strip"):  # said again on resume
        assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2",
                         "--quiet"]) == 0
    assert [r["epoch"] for r in read_results_csv(out / "results.csv")] == [1, 2]
    capsys.readouterr()
    assert cli.main(["train", "--image", img1, "--catalogue", cat1, "--image", img2,
                     "--out", str(tmp_path / "bad"), *common]) == 2
    assert "--image and --catalogue go in pairs: 2 images, 1 catalogues" in capsys.readouterr().err
    assert cli.main(["train", "--image", img1, "--catalogue", cat1, "--image", img1,
                     "--catalogue", cat2, "--out", str(tmp_path / "bad"), *common]) == 2
    assert "is given twice: each field once" in capsys.readouterr().err
    from astropy.io import fits

    with fits.open(img2) as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    header["CDELT1"], header["CDELT2"] = header["CDELT1"] * 2, header["CDELT2"] * 2
    fits.PrimaryHDU(data, header).writeto(tmp_path / "coarse.fits")
    assert cli.main(["train", "--image", img1, "--catalogue", cat1, "--image",
                     str(tmp_path / "coarse.fits"), "--catalogue", cat2,
                     "--out", str(tmp_path / "bad"), *common]) == 2
    err = capsys.readouterr().err
    assert "its beam spans 1.50 pixels (FWHM, major axis), the first image's 3.00" in err
    assert not (tmp_path / "bad").exists()


def test_validation_strips_on_another_fields_training_area_are_found():
    """A field whose validation strip lies in another field's training area on the sky is
    reported with the share of the strip that does; fields apart on the sky are not."""
    from types import SimpleNamespace

    from astropy.wcs import WCS

    from cianna_jax.astro.trainer import _validation_leaks

    def field(name, ra, valid, train):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [ra, -30.0], [50.0, 50.0], [-1e-4, 1e-4]
        return SimpleNamespace(path=name, image=SimpleNamespace(wcs=w), valid_area=valid,
                               train_area=train)

    a = field("a", 10.0, (75, 100, 0, 100), (0, 75, 0, 100))
    b = field("b", 10.0, (50, 75, 0, 100), (0, 50, 0, 100))    # b's strip: inside a's training
    c = field("c", 11.0, (75, 100, 0, 100), (0, 75, 0, 100))   # a degree away
    leaks = _validation_leaks([a, b, c])
    assert [(i, j) for i, j, _ in leaks] == [(0, 1)]
    assert leaks[0][2] == pytest.approx(1.0)
    half = field("h", 10.0, (60, 90, 0, 100), (0, 60, 0, 100))  # rows 60-74 of 60-89 in a's
    (i, j, share), = _validation_leaks([a, half])                 # training area, 75-89 not
    assert (i, j) == (0, 1) and share == pytest.approx(0.5, abs=0.05)


def test_fields_train_together_when_their_beams_span_as_many_pixels():
    """The detector sees pixels: fields of other pixel scales train together when their
    beams span about as many pixels (within 1.25x); without a beam in both headers the
    pixel scales must match (within 1%)."""
    from types import SimpleNamespace

    from cianna_jax.astro.fits_image import Beam, FitsImage
    from cianna_jax.astro.trainer import _same_sampling

    def field(scale, bmaj):
        beam = None if bmaj is None else Beam(bmaj, bmaj, 0.0)
        img = SimpleNamespace(pixel_scale=scale, beam=beam)
        img.beam_fwhm_pixels = lambda: FitsImage.beam_fwhm_pixels(img)
        return SimpleNamespace(path=f"{scale}/{bmaj}", image=img)

    lotss = field(1.5, 6.0)                                     # 4 pixels per beam
    _same_sampling([lotss, field(1.75, 7.0), field(1.5, 4.9)])  # 4.0 and 3.27 pixels
    for other, match in ((field(1.5, 4.7), "spans 3.13 pixels"),  # 4 / 3.13 > 1.25
                         (field(1.0, 6.0), r"regrid it to about 1.5 arcsec per pixel"),
                         (field(1.6, None), "pixel scale 1.6 arcsec differs")):
        with pytest.raises(ValueError, match=match):
            _same_sampling([lotss, other])
    _same_sampling([field(1.5, None), field(1.505, None)])
