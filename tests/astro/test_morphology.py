"""Source morphology (astro.morphology_sim, morphology_cutouts, morphology,
morphology_training; ``cianna-jax classify``): the simulated sources keep their flux and
their classes' signatures (FR II's brightest pixel out in a lobe, FR I's at the core), the
cutouts' turns and mirrors are the window's, the inputs do not depend on the flux, the
scores, the card's round trip and errors, and a classifier trained on one simulated field
that classifies another."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")
pytest.importorskip("scipy")

from cianna_jax.astro import morphology_sim as ms  # noqa: E402
from cianna_jax.astro.catalogue import write_catalogue  # noqa: E402
from cianna_jax.astro.model_card import ModelError  # noqa: E402
from cianna_jax.astro.morphology import (  # noqa: E402
    ClassifierCard,
    class_scores,
    confusion_matrix,
    load_classifier_card,
    save_classifier_card,
)
from cianna_jax.astro.morphology_cutouts import (  # noqa: E402
    CutoutSpec,
    Stamps,
    dihedral_inputs,
    network_inputs,
)

# cli.main tunes XLA flags, which warns in a process where JAX already started
pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")

BEAM = 4.0
SIG = BEAM / (2 * math.sqrt(2 * math.log(2)))


@pytest.mark.parametrize("kind", ms.MORPHOLOGIES)
def test_simulated_sources_keep_their_flux(kind):
    # Jy/beam summed over the pixels, divided by the beam's area in pixels: the flux
    rng = np.random.default_rng(3)
    for _ in range(3):
        comps, las = ms.source_components(kind, rng)
        assert comps.weight.sum() == pytest.approx(1.0)
        img = np.zeros((256, 256))
        ms.render_components(img, comps, 127.3, 128.6, 2e-3, BEAM)
        assert img.sum() / (2 * math.pi * SIG ** 2) == pytest.approx(2e-3, rel=2e-3)
        if kind == "compact":
            assert img.max() == pytest.approx(2e-3 * math.exp(-0.5 * (0.3 ** 2 + 0.4 ** 2)
                                                              / SIG ** 2), rel=1e-6)
            assert las == 0.0


def test_fr2_bright_at_its_ends_fr1_at_its_core():
    # the Fanaroff-Riley signature: the brightest pixel's distance from the core over half
    # the largest size, over 20 sources of each
    rng = np.random.default_rng(5)
    ratio = {}
    for kind in ("fr1", "fr2"):
        r = []
        for _ in range(20):
            comps, las = ms.source_components(kind, rng, las_beams=(5.0, 10.0))
            img = np.zeros((192, 192))
            ms.render_components(img, comps, 96.0, 96.0, 1.0, BEAM)
            y, x = np.unravel_index(np.argmax(img), img.shape)
            r.append(math.hypot(x - 96.0, y - 96.0) / (0.5 * las * BEAM))
        ratio[kind] = np.array(r)
    assert np.median(ratio["fr1"]) < 0.2 and np.median(ratio["fr2"]) > 0.7
    assert np.mean(ratio["fr2"] > 0.5) >= 0.9 and np.mean(ratio["fr1"] < 0.5) >= 0.9


def _stamp(seed=0, size=41, scale=1.0):
    rng = np.random.default_rng(seed)
    snr = rng.normal(0, 1, (1, size, size)) + 0.0
    comps, _ = ms.source_components("fr2", rng, las_beams=(4.0, 5.0))
    img = np.zeros((size, size))
    ms.render_components(img, comps, size // 2, size // 2, 200.0, 3.0)
    snr[0] += img
    return Stamps((scale * snr).astype(np.float32), np.zeros(1), np.zeros(1), 20.0)


def test_quarter_turns_and_mirrors_are_the_windows():
    spec = CutoutSpec(beams=5.0, pixels=20, clip=3.0)
    st = _stamp()
    base = network_inputs(st, spec)[0, ..., 0]
    turned = network_inputs(st, spec, angles=np.array([math.pi / 2]))[0, ..., 0]
    # the grid turned a quarter counter-clockwise on the image (x along columns, y along
    # rows): the view is the base view's array turned by numpy's rot90
    np.testing.assert_allclose(turned, np.rot90(base), atol=1e-5)
    mirrored = network_inputs(st, spec, flips=np.array([True]))[0, ..., 0]
    np.testing.assert_allclose(mirrored, base[:, ::-1], atol=1e-6)
    views = dihedral_inputs(st, spec)
    assert views.shape == (8, 1, 20, 20, 1)
    assert 0.0 <= views.min() and views.max() == pytest.approx(1.0)
    # the eight views hold the same pixel values
    ref = np.sort(base.ravel())
    for v in views[:, 0, ..., 0]:
        np.testing.assert_allclose(np.sort(v.ravel()), ref, atol=1e-5)


def test_inputs_scaled_to_their_brightest_pixel_and_the_noise_clipped():
    # asinh of the SNR over asinh of the brightest: 1 at the peak whatever the flux, the
    # pixels' order kept, the faint emission raised against the peak as the flux grows
    spec = CutoutSpec(beams=5.0, pixels=20, clip=0.0)
    a = network_inputs(_stamp(scale=1.0), spec)[0, ..., 0]
    b = network_inputs(_stamp(scale=7.0), spec)[0, ..., 0]
    assert a.max() == pytest.approx(1.0) and b.max() == pytest.approx(1.0)
    on = a > 0
    np.testing.assert_array_equal(np.argsort(a[on]), np.argsort(b[on]))
    assert np.all(b[on] >= a[on] - 1e-6)
    noise_only = Stamps(np.random.default_rng(1).normal(0, 1, (1, 41, 41)).astype(np.float32),
                        np.zeros(1), np.zeros(1), 20.0)
    clipped = network_inputs(noise_only, CutoutSpec(beams=5.0, pixels=20, clip=5.0))
    assert np.all(clipped == 0.0)


def test_scores_of_a_confusion_matrix():
    cm = confusion_matrix(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 1, 0]), 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
    s = class_scores(cm)
    assert s["accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(s["recall"], [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(s["precision"], [2 / 3, 2 / 3, np.nan])
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_temperature_scaling_recovers_an_over_confident_softmax():
    from cianna_jax.astro.probability_calibration import (
        expected_calibration_error,
        fit_temperature,
        tempered,
    )

    rng = np.random.default_rng(4)
    z = rng.normal(0, 1.5, (6000, 4))
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in p_true])
    over = np.exp(3 * z) / np.exp(3 * z).sum(axis=1, keepdims=True)  # as if T = 1/3
    t = fit_temperature(over, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    fixed = tempered(over, t)
    np.testing.assert_array_equal(fixed.argmax(axis=1), over.argmax(axis=1))
    np.testing.assert_allclose(fixed, p_true, atol=0.05)
    assert expected_calibration_error(fixed, labels) < 0.02 < expected_calibration_error(
        over, labels)
    # priors: equal-prior probabilities times the population's frequencies (Bayes)
    np.testing.assert_allclose(tempered(np.array([[0.5, 0.5], [0.8, 0.2]]), 1.0, [0.9, 0.1]),
                               [[0.9, 0.1], [0.72 / 0.74, 0.02 / 0.74]], rtol=1e-6)
    # one bin by hand: probabilities 0.9 and 0.7, one right: |0.8 - 0.5| in a bin of two
    probs = np.array([[0.9, 0.1], [0.7, 0.3]])
    assert expected_calibration_error(probs, np.array([0, 1]), bins=2) == pytest.approx(0.3)


def test_card_round_trip_and_errors(tmp_path):
    card = ClassifierCard("best.dat", ("a", "b"), CutoutSpec(12.0, 24, 2.5), {"epoch": 3},
                          1.7, (0.25, 0.75))
    save_classifier_card(tmp_path / "best.json", card)
    back = load_classifier_card(tmp_path / "best.json")
    assert back == card and back.notes == {"epoch": 3}
    with pytest.raises(ModelError, match="at least 2"):
        save_classifier_card(tmp_path / "x.json", ClassifierCard("x.dat", ("a",)))
    (tmp_path / "det.json").write_text('{"format": "cianna_jax.model", "version": 1}')
    with pytest.raises(ModelError, match="a detector"):
        load_classifier_card(tmp_path / "det.json")
    (tmp_path / "bad.json").write_text('{"format": "cianna_jax.classifier", "version": 1, '
                                       '"network": "x.dat", "classes": ["a", "a"], '
                                       '"cutout": {"beams": 8, "pixels": 24, "clip": 3}}')
    with pytest.raises(ModelError, match="must differ"):
        load_classifier_card(tmp_path / "bad.json")
    (tmp_path / "str.json").write_text('{"format": "cianna_jax.classifier", "version": 1, '
                                       '"network": "x.dat", "classes": "ab"}')
    with pytest.raises(ModelError, match="a list of names"):
        load_classifier_card(tmp_path / "str.json")
    (tmp_path / "neg.json").write_text('{"format": "cianna_jax.classifier", "version": 1, '
                                       '"network": "x.dat", "classes": ["a", "b"], '
                                       '"cutout": {"beams": -8, "pixels": 24, "clip": 3}}')
    with pytest.raises(ModelError, match="beams"):
        load_classifier_card(tmp_path / "neg.json")
    with pytest.raises(FileNotFoundError):
        load_classifier_card(tmp_path / "none.json")
    # a detector's network under a classifier's card: refused by its outputs
    from cianna_jax.astro.morphology import load_classifier

    from .conftest import make_tiny_2d

    make_tiny_2d(tmp_path, tile=32)
    save_classifier_card(tmp_path / "wrong.json", ClassifierCard("tiny.dat", ("a", "b"),
                                                                 CutoutSpec(8.0, 32, 3.0)))
    with pytest.raises(ModelError, match="outputs, the card names 2 classes"):
        load_classifier(tmp_path / "wrong.json")
    save_classifier_card(tmp_path / "gone.json", ClassifierCard("gone.dat", ("a", "b")))
    with pytest.raises(FileNotFoundError, match="gone.dat"):
        load_classifier(tmp_path / "gone.json")
    with pytest.raises(ModelError, match="temperature"):
        save_classifier_card(tmp_path / "t.json", ClassifierCard("x.dat", ("a", "b"),
                                                                 temperature=0.0))
    with pytest.raises(ModelError, match="priors"):
        save_classifier_card(tmp_path / "t.json", ClassifierCard("x.dat", ("a", "b"),
                                                                 priors=(1.0, 0.0)))
    with pytest.raises(ValueError, match="pixels"):
        CutoutSpec(8.0, 4, 3.0)


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Two small simulated fields of compact sources and FR II radio galaxies."""
    from cianna_jax.astro.catalogue import write_catalogue

    d = tmp_path_factory.mktemp("morph")
    out = []
    for seed in (1, 2):
        f = ms.morphology_field(768, n_sources=90, seed=seed, noise=1e-4, beam_pixels=3.0,
                                snr_range=(30.0, 300.0), las_beams=(4.0, 6.0),
                                fractions=(0.5, 0.0, 0.0, 0.5))
        ms.write_morphology_field(str(d / f"f{seed}.fits"), f)
        write_catalogue(f.truth_table(), str(d / f"f{seed}.ecsv"))
        out.append((str(d / f"f{seed}.fits"), str(d / f"f{seed}.ecsv")))
    return d, out


def test_train_and_apply_on_another_field(fields):
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.morphology import load_classifier
    from cianna_jax.astro.morphology_apply import classify_sources
    from cianna_jax.astro.morphology_training import ClassifierSettings, train_classifier

    d, ((img1, cat1), (img2, cat2)) = fields
    s = ClassifierSettings(epochs=4, batch_size=16, width=4, samples_per_epoch=256,
                           learning_rate=3e-3, cutout=CutoutSpec(10.0, 20, 3.0))
    res = train_classifier([img1], [cat1], "morphology", str(d / "run"), settings=s,
                           log=lambda m: None, progress=False, figure=False)
    assert res.classes == ("compact", "fr2") and len(res.history) == 4
    assert (d / "run" / "best.json").is_file() and (d / "run" / "history.csv").is_file()
    model = load_classifier(d / "run")
    truth = read_catalogue(cat2)
    out = classify_sources(model, img2, truth)
    got = np.asarray(out["morph_class"]).astype(str)
    want = np.asarray(truth["morphology"]).astype(str)
    assert np.mean(got == want) >= 0.9
    p = np.stack([np.asarray(out["p_compact"]), np.asarray(out["p_fr2"])], axis=1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["morph_prob"]), p.max(axis=1), atol=1e-6)
    # fine-tuning: the same classes start from every weight (right from the first epoch),
    # other classes from all but the last layer's
    tiny = ClassifierSettings(epochs=1, batch_size=16, samples_per_epoch=32,
                              learning_rate=1e-12, cutout=CutoutSpec(4.0, 8, 1.0))
    lines: list[str] = []
    tuned = train_classifier([img2], [cat2], "morphology", str(d / "tuned"), settings=tiny,
                             log=lines.append, progress=False, figure=False,
                             init_from=str(d / "run"))
    assert tuned.history[0]["val_accuracy"] >= 0.9
    assert any(m == "its weights taken, all" for m in lines)
    t2 = truth.copy()
    t2["shape"] = np.where(want == "fr2", "double", "single")
    t2.write(d / "relabelled.ecsv", overwrite=True)
    train_classifier([img2], [str(d / "relabelled.ecsv")], "shape", str(d / "new_head"),
                     settings=tiny, log=lines.append, progress=False, figure=False,
                     init_from=str(d / "run"))
    assert any("all but the last layer's" in m for m in lines)
    new = load_classifier(d / "new_head" / "last.json")
    assert new.card.cutout == model.card.cutout and new.card.classes == ("double", "single")
    for a, b in zip(new.params[:-1], model.params[:-1]):
        for name in a:
            np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), atol=1e-6)


def _stamp_list(folder, img, cat):
    """FITS stamps of a field's sources (cianna-jax cutouts' writer) and their list."""
    from astropy.table import Table

    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.cutouts import cut_stamps, write_stamps
    from cianna_jax.astro.fits_image import open_image

    t = read_catalogue(cat)
    image = open_image(img)
    names = write_stamps(image, t, cut_stamps(image, t, np.arange(len(t)), size_arcsec=80.0),
                         folder)
    Table({"file": names, "morphology": t["morphology"]}).write(folder / "list.csv")
    return str(folder / "list.csv")


def test_training_and_applying_on_postage_stamps(fields, tmp_path, capsys):
    # a labelled set of cutouts, one source at each one's centre (as MiraBest or Radio Galaxy
    # Zoo distribute theirs): trained on one field's stamps, the other's classified
    from astropy.table import Table

    from cianna_jax.cli import main

    _, ((img1, cat1), (img2, cat2)) = fields
    train_list = _stamp_list(tmp_path / "a", img1, cat1)
    test_list = _stamp_list(tmp_path / "b", img2, cat2)
    run, out = str(tmp_path / "run"), str(tmp_path / "classes.csv")
    assert main(["classify", "train", "--stamps", train_list, "--label-column", "morphology",
                 "--out", run, "--epochs", "4", "--width", "4", "--pixels", "20",
                 "--cutout-beams", "10", "--samples-per-epoch", "256", "--learning-rate",
                 "3e-3", "--quiet", "--no-figure"]) == 0
    assert "best epoch" in capsys.readouterr().out
    assert main(["classify", "apply", "--model", run, "--stamps", test_list, "--out", out]) == 0
    from cianna_jax.astro.catalogue import read_catalogue

    t = read_catalogue(out)
    got = np.asarray(t["morph_class"]).astype(str)
    assert np.mean(got == np.asarray(t["morphology"]).astype(str)) >= 0.85
    # Monte Carlo dropout: the probabilities' scatter over the draws, the same draws again
    # for the same seed
    for name in ("mc1.csv", "mc2.csv"):
        assert main(["classify", "apply", "--model", run, "--stamps", test_list, "--out",
                     str(tmp_path / name), "--mc", "6"]) == 0
    a, b = (read_catalogue(tmp_path / n) for n in ("mc1.csv", "mc2.csv"))
    std = np.asarray(a["morph_prob_std"], np.float64)
    assert np.all(std >= 0) and np.any(std > 0) and "morph_prob_std" not in t.colnames
    np.testing.assert_array_equal(std, np.asarray(b["morph_prob_std"], np.float64))
    capsys.readouterr()
    # refusals: a single draw, both inputs, a missing file, no file column
    assert main(["classify", "apply", "--model", run, "--stamps", test_list, "--out", out,
                 "--mc", "1"]) == 2
    assert "2 draws or more" in capsys.readouterr().err
    assert main(["classify", "apply", "--model", run, "--stamps", test_list, "--image", img2,
                 "--catalogue", cat2, "--out", out]) == 2
    assert "one of them" in capsys.readouterr().err
    Table({"file": ["gone.fits"]}).write(tmp_path / "gone.csv")
    assert main(["classify", "apply", "--model", run, "--stamps", str(tmp_path / "gone.csv"),
                 "--out", out]) == 2
    assert "not found" in capsys.readouterr().err
    Table({"name": ["x.fits"]}).write(tmp_path / "nofile.csv")
    assert main(["classify", "apply", "--model", run, "--stamps",
                 str(tmp_path / "nofile.csv"), "--out", out]) == 2
    assert "no column 'file'" in capsys.readouterr().err


def test_fold_splits_are_stratified_and_cover_every_source():
    from cianna_jax.astro.morphology_training import fold_splits

    labels = np.repeat([0, 1, 2], [10, 7, 3])
    splits = fold_splits(labels, 3, 4, seed=2)
    val = np.concatenate([v for _, v in splits])
    np.testing.assert_array_equal(np.sort(val), np.arange(labels.size))  # each once
    for train, v in splits:
        assert np.intersect1d(train, v).size == 0 and train.size + v.size == labels.size
    per = np.array([np.bincount(labels[v], minlength=3) for _, v in splits])
    assert np.all(per.max(axis=0) - per.min(axis=0) <= 1)  # each class dealt evenly


def test_cross_validation_holds_every_source_out_once(fields, tmp_path):
    from cianna_jax.astro.morphology_training import ClassifierSettings, train_classifier

    _, ((img1, cat1), _) = fields
    s = ClassifierSettings(epochs=1, batch_size=16, width=4, samples_per_epoch=32, folds=3,
                           cutout=CutoutSpec(8.0, 16, 3.0))
    lines: list[str] = []
    res = train_classifier([img1], [cat1], "morphology", str(tmp_path / "cv"), settings=s,
                           log=lines.append, progress=False, figure=False)
    cv = res.cross_validation
    from cianna_jax.astro.catalogue import read_catalogue

    assert cv["folds"] == 3 and len(cv["accuracy"]) == 3
    assert int(np.sum(cv["confusion"])) == len(read_catalogue(cat1))  # every source once
    assert (tmp_path / "cv" / "cross_validation.json").is_file()
    assert (tmp_path / "cv" / "fold_3" / "best.json").is_file()
    assert any(m.startswith("cross-validation (3 folds): accuracy") for m in lines)
    with pytest.raises(ValueError, match="folds"):
        ClassifierSettings(folds=1)


def test_divergence_and_a_classifier_at_chance_are_said(fields, tmp_path, monkeypatch):
    from cianna_jax.astro import morphology_training as mt

    _, ((img1, cat1), _) = fields
    tiny = mt.ClassifierSettings(epochs=1, batch_size=16, width=4, samples_per_epoch=32,
                                 learning_rate=1e4, cutout=CutoutSpec(8.0, 16, 3.0))
    lines: list[str] = []
    mt.train_classifier([img1], [cat1], "morphology", str(tmp_path / "hot"), settings=tiny,
                        log=lines.append, progress=False, figure=False)
    assert any("near chance" in m for m in lines)
    real = mt.training.train_epoch

    def diverging(*args, **kw):
        params, opt_state, _ = real(*args, **kw)
        return params, opt_state, float("nan")

    monkeypatch.setattr(mt.training, "train_epoch", diverging)
    with pytest.raises(FloatingPointError, match="diverged at epoch 1"):
        mt.train_classifier([img1], [cat1], "morphology", str(tmp_path / "nan"), settings=tiny,
                            log=lambda m: None, progress=False, figure=False)


def test_command_line_and_its_errors(fields, tmp_path, capsys):
    from cianna_jax.cli import main

    d, ((img1, cat1), (img2, cat2)) = fields
    run = str(tmp_path / "run")
    assert main(["classify", "train", "--image", img1, "--catalogue", cat1, "--label-column",
                 "morphology", "--out", run, "--epochs", "1", "--width", "4", "--pixels", "16",
                 "--samples-per-epoch", "64", "--quiet", "--no-figure"]) == 0
    assert "best epoch 1" in capsys.readouterr().out
    out = str(tmp_path / "classes.ecsv")
    from astropy.table import Table

    fig = tmp_path / "gallery.png"
    assert main(["classify", "apply", "--model", run, "--image", img2, "--catalogue", cat2,
                 "--out", out, "--figure", str(fig), "--examples", "3", "--quiet"]) == 0
    assert "sources: compact" in capsys.readouterr().out
    assert fig.stat().st_size > 10_000
    # a mosaic: the field cut into two overlapping halves, each source read from the half
    # whose centre is nearest
    from astropy.io import fits

    data, hdr = fits.getdata(img2), fits.getheader(img2)
    halves = []
    for k, (a, b) in enumerate(((0, 448), (320, 768))):
        h = hdr.copy()
        h["CRPIX1"] = hdr["CRPIX1"] - a
        halves.append(str(tmp_path / f"half{k}.fits"))
        fits.writeto(halves[-1], data[:, a:b], h)
    mos = str(tmp_path / "mosaic.ecsv")
    assert main(["classify", "apply", "--model", run, "--image", halves[0], "--image",
                 halves[1], "--catalogue", cat2, "--out", mos, "--quiet"]) == 0
    assert "off the images" not in capsys.readouterr().out
    whole, parts = Table.read(out), Table.read(mos)
    same = np.mean(np.asarray(whole["morph_class"]) == np.asarray(parts["morph_class"]))
    assert same >= 0.9 and np.all(np.isfinite(parts["morph_prob"]))
    # predict with the classifier: the catalogue's and the source list's rows classified
    from .conftest import make_peak_detector

    det = make_peak_detector(tmp_path, 5.0)
    gaul, srl = str(tmp_path / "gaul.ecsv"), str(tmp_path / "srl.ecsv")
    assert main(["predict", "--model", det, "--image", img2, "--out", gaul, "--source-list",
                 srl, "--classifier", run, "--quiet"]) == 0
    assert "rows classified by" in capsys.readouterr().out
    for path in (gaul, srl):
        t = Table.read(path)
        assert {"morph_class", "morph_prob", "p_compact", "p_fr2"} <= set(t.colnames)
        assert np.all(np.isfinite(t["morph_prob"]))
    # the double sources' pairs classified at their centres (one command)
    pairs = str(tmp_path / "pairs.ecsv")
    assert main(["doubles", "--catalogue", cat2, "--out", pairs, "--scale", "300",
                 "--chance-draws", "2", "--classifier", run, "--image", img2]) == 0
    assert "the pairs' centres classified" in capsys.readouterr().out
    assert "morph_class" in Table.read(pairs).colnames
    merged = str(tmp_path / "merged.ecsv")
    assert main(["doubles", "--catalogue", cat2, "--out", pairs, "--scale", "300",
                 "--chance-draws", "2", "--classifier", run, "--image", img2, "--associate",
                 "fr2", "--merged", merged]) == 0
    assert "merged into one source each" in capsys.readouterr().out
    m = Table.read(merged)
    assert len(m) == len(Table.read(cat2)) - int(np.sum(m["n_components"] == 2))
    assert main(["doubles", "--catalogue", cat2, "--out", pairs, "--merged", merged]) == 2
    assert "give them together" in capsys.readouterr().err
    assert main(["doubles", "--catalogue", cat2, "--out", pairs, "--classifier", run]) == 2
    assert "give both" in capsys.readouterr().err
    # priors: the classes' frequencies the probabilities are for

    n_compact = {}
    for priors in ("equal", "compact=0.999,fr2=0.001"):
        assert main(["classify", "apply", "--model", run, "--image", img2, "--catalogue", cat2,
                     "--out", out, "--priors", priors, "--quiet"]) == 0
        n_compact[priors] = int(np.sum(np.asarray(Table.read(out)["morph_class"]).astype(str)
                                       == "compact"))
    assert n_compact["compact=0.999,fr2=0.001"] > n_compact["equal"]
    capsys.readouterr()
    assert main(["classify", "apply", "--model", run, "--image", img2, "--catalogue", cat2,
                 "--out", out, "--priors", "compact=1"]) == 2
    assert "one positive frequency for each class" in capsys.readouterr().err
    # errors: no such column, a detector's card, images and catalogues unpaired, a class of
    # one source
    assert main(["classify", "train", "--image", img1, "--catalogue", cat1, "--label-column",
                 "kind", "--out", run]) == 2
    assert "no column 'kind'" in capsys.readouterr().err
    (tmp_path / "det.json").write_text('{"format": "cianna_jax.model", "version": 1}')
    assert main(["classify", "apply", "--model", str(tmp_path / "det.json"), "--image", img2,
                 "--catalogue", cat2, "--out", out]) == 2
    assert "a detector" in capsys.readouterr().err
    assert main(["classify", "train", "--image", img1, "--image", img2, "--catalogue", cat1,
                 "--label-column", "morphology", "--out", run]) == 2
    assert "one catalogue per image" in capsys.readouterr().err
    from astropy.table import Table

    t = Table.read(cat1)
    t["morphology"][0] = "odd"
    t.write(tmp_path / "one.ecsv")
    assert main(["classify", "train", "--image", img1, "--catalogue", str(tmp_path / "one.ecsv"),
                 "--label-column", "morphology", "--out", run]) == 2
    assert "too few labelled sources" in capsys.readouterr().err


def test_windows_at_the_edges_blanks_and_errors(tmp_path):
    # a window over the image's edge or blanked pixels reads 0 there; an image without a
    # beam, a cube and a catalogue without positions are refused by name
    from astropy.io import fits

    from cianna_jax.astro.catalogue import CatalogueError, make_table
    from cianna_jax.astro.fits_image import ImageError, open_image
    from cianna_jax.astro.morphology_cutouts import read_stamps
    from cianna_jax.astro.noise import estimate_noise_map

    f = ms.morphology_field(256, n_sources=3, seed=1, noise=1e-4, beam_pixels=3.0)
    f.image[:, :40] = np.nan
    path = str(tmp_path / "m.fits")
    ms.write_morphology_field(path, f)
    img = open_image(path)
    noise = estimate_noise_map(img.read, img.shape)
    st = read_stamps(img, noise, np.array([2.0, 250.0, 128.0]), np.array([128.0, 3.0, 128.0]),
                     CutoutSpec(10.0, 16, 3.0))
    assert np.all(np.isfinite(st.snr))
    half = st.snr.shape[-1] // 2
    assert np.all(st.snr[0][:, : half - 2 + 40 - 2] == 0.0)  # blank and off the image
    assert np.all(st.snr[1][: half - 4] == 0.0)  # below the image's first row
    assert np.std(st.snr[2]) > 0.5  # noise in rms units
    hdr = fits.getheader(path)
    for k in ("BMAJ", "BMIN", "BPA"):
        del hdr[k]
    fits.writeto(tmp_path / "nobeam.fits", fits.getdata(path), hdr)
    with pytest.raises(ImageError, match="no beam"):
        read_stamps(open_image(tmp_path / "nobeam.fits"), noise, np.array([128.0]),
                    np.array([128.0]), CutoutSpec())
    fits.writeto(tmp_path / "cube.fits", np.stack([fits.getdata(path)] * 3),
                 fits.getheader(path))
    with pytest.raises(ImageError, match="2D images"):
        read_stamps(open_image(tmp_path / "cube.fits"), noise, np.array([1.0]),
                    np.array([1.0]), CutoutSpec())
    from cianna_jax.astro.morphology_training import labelled_field

    write_catalogue(make_table({"flux": np.ones(2), "morphology": ["a", "b"]}),
                    str(tmp_path / "nopos.ecsv"))
    with pytest.raises(CatalogueError, match="no ra/dec"):
        labelled_field(path, str(tmp_path / "nopos.ecsv"), "morphology", ("a", "b"),
                       CutoutSpec(), log=lambda m: None)


def test_chance_pairs_in_a_simulated_field():
    # a pair: two compact or star-forming sources sep beams apart, fluxes within 4 of each
    # other, their midpoint a row of class "pair" with the summed flux
    f = ms.morphology_field(768, n_sources=40, seed=3, beam_pixels=3.0, pair_fraction=0.5)
    t = f.truth_table()
    names = np.asarray(t["morphology"]).astype(str)
    mid = np.flatnonzero(names == ms.PAIR)
    assert 10 <= mid.size <= 30 and len(t) == 40 + 2 * mid.size
    for i in mid:
        d = np.hypot(f.x - f.x[i], f.y - f.y[i])
        members = np.flatnonzero(np.isclose(d, 0.5 * f.las[i] * 3.0, rtol=1e-9))
        assert members.size == 2 and set(names[members]) <= {"compact", "sfg"}
        a, b = f.flux[members]
        assert a + b == pytest.approx(f.flux[i]) and max(a, b) / min(a, b) <= 10 ** 0.6 + 1e-9
        assert 3.0 <= f.las[i] <= 10.0
    with pytest.raises(ValueError, match="pair_fraction"):
        ms.morphology_field(256, pair_fraction=1.5)


def test_simulated_sources_sizes_are_their_models_second_moments(tmp_path):
    """The truth's bmaj, bmin, pa: the FWHM axes of each model's second moments through
    the beam: a point is the beam, an elliptical Gaussian its axes in quadrature with it,
    two points their spread; the sky position angle is the pixel angle's, and a training
    catalogue read from the truth gets boxes that span the FR II radio galaxies."""
    one = ms.Components(*(np.zeros(1) for _ in range(5)), weight=np.ones(1))
    assert ms.moment_shape([(one, 0.0, 0.0, 1.0)])[:2] == pytest.approx((1.0, 1.0))  # any angle
    sfg = ms.Components(np.zeros(1), np.zeros(1), np.array([2.0]), np.array([1.0]),
                        np.array([math.radians(30)]), np.ones(1))
    maj, mnr, ang = ms.moment_shape([(sfg, 0.0, 0.0, 1.0)])
    assert (maj, mnr, math.degrees(ang)) == pytest.approx((math.sqrt(5), math.sqrt(2), 30.0))
    sigma = 1 / math.sqrt(8 * math.log(2))
    maj, mnr, ang = ms.moment_shape([(one, -1.5, 0.0, 1.0), (one, 1.5, 0.0, 1.0)])
    assert maj == pytest.approx(math.sqrt(sigma ** 2 + 1.5 ** 2) / sigma) and mnr == 1.0
    f = ms.morphology_field(512, n_sources=20, seed=4, beam_pixels=4.0)
    t = f.truth_table()
    from cianna_jax.astro.sky import pa_to_pixel_angle

    wcs = ms._wcs(f.header)
    back = pa_to_pixel_angle(wcs, f.x, f.y, np.asarray(t["pa"]))
    turn = np.abs((back - f.angle + math.pi / 2) % math.pi - math.pi / 2)
    elongated = f.major > 1.05 * f.minor
    assert elongated.sum() >= 5 and np.all(turn[elongated] < 1e-3)
    names = np.asarray(t["morphology"]).astype(str)
    beam = 4.0 * 1.5  # arcsec
    np.testing.assert_allclose(np.asarray(t["bmaj"])[names == "compact"], beam)
    galaxy = np.isin(names, ("fr1", "fr2"))  # resolved; an FR I's flux near its core
    assert np.all(np.asarray(t["bmaj"])[galaxy] > 1.2 * beam)
    fr2 = names == "fr2"  # the lobes at its ends: its moments span most of it
    assert fr2.sum() >= 3 and np.all(np.asarray(t["bmaj"])[fr2] > 0.6 * np.asarray(t["las"])[fr2])
    write_catalogue(t, str(tmp_path / "t.ecsv"))
    ms.write_morphology_field(str(tmp_path / "t.fits"), f)
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.labels import read_training_catalogue

    with open_image(tmp_path / "t.fits") as img:
        lab = read_training_catalogue(tmp_path / "t.ecsv", img, max_box=200.0)
    side = np.maximum(lab.boxes[:, 3] - lab.boxes[:, 0], lab.boxes[:, 4] - lab.boxes[:, 1])
    las_px = np.asarray(t["las"]) / 1.5
    assert np.all(side[fr2] >= las_px[fr2])


def test_simulate_morphologies_command(tmp_path, capsys):
    from astropy.table import Table

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.cli import main

    out, truth = str(tmp_path / "m.fits"), str(tmp_path / "m.ecsv")
    assert main(["simulate", "--morphologies", "--out", out, "--truth", truth, "--size", "256",
                 "--sources", "12", "--noise", "1e-4", "--seed", "2"]) == 0
    assert "field of sources compact" in capsys.readouterr().out
    t = Table.read(truth)
    assert set(np.asarray(t["morphology"]).astype(str)) <= set(ms.MORPHOLOGIES)
    with open_image(out) as img:
        assert img.shape == (256, 256) and img.beam.bmaj == pytest.approx(6.0)
    assert main(["simulate", "--morphologies", "--cube", "--out", out]) == 2
    assert "not an option of --morphologies" in capsys.readouterr().err
    for kw, msg in (({"fractions": (1.0, 0.0)}, "fractions"), ({"noise": 0.0}, "noise"),
                    ({"snr_range": (5.0, 1.0)}, "snr_range"), ({"size": 16}, "size")):
        with pytest.raises((ValueError, TypeError), match=msg):
            ms.morphology_field(**{"size": 64, **kw})
    with pytest.raises(ValueError, match="kind"):
        ms.source_components("fr3", np.random.default_rng(0))
