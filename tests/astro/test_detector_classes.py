"""A detector that classifies (``cianna-jax train --class-column``): class labels read from
the catalogue, class targets in the patches, the network's class outputs, the card's class
names, the catalogue's class columns, the validation's class accuracy, ``val``'s confusion
matrix, fine-tuning into other classes, and a run end to end through the command line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cianna_jax import cli
from cianna_jax.astro.architectures import build_detector
from cianna_jax.astro.catalogue import make_table, to_sdc1
from cianna_jax.astro.catalogue_table import class_columns
from cianna_jax.astro.crossmatch import crossmatch_pixels
from cianna_jax.astro.detector_classes import (
    class_report,
    format_class_report,
    truth_class_column,
)
from cianna_jax.astro.labels import SourceLabels, class_names
from cianna_jax.astro.model_card import ModelCard, ModelError, load_model_card, save_model_card
from cianna_jax.astro.run_log import epoch_line, read_results_csv, write_results_csv
from cianna_jax.astro.sampler import PatchSampler, balanced_weights
from cianna_jax.datasets import radio_sky as rs

pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")


def _labels(classes, x=(10.0, 30.0, 50.0), source="cat"):
    x = np.asarray(x, float)
    y = np.full_like(x, 12.0)
    cat = rs.Catalogue.create(x, y, np.arange(1.0, x.size + 1), 3.0, 3.0)
    return SourceLabels(x=x, y=y, flux=cat.flux, bmaj=cat.bmaj, bmin=cat.bmin, theta=cat.pa,
                        snr=None, boxes=rs.boxes_from_catalogue(cat), image_shape=(24, 64),
                        source=source, classes=None if classes is None
                        else np.array(classes, dtype=str))


def test_class_names_order_codes_and_errors():
    a, b = _labels(["sfg", "agn", "sfg"]), _labels(["10", "2", "3"])
    assert class_names([a]) == ("agn", "sfg")
    assert class_names([b]) == ("2", "3", "10")  # codes in numeric order
    np.testing.assert_array_equal(a.class_codes(("agn", "sfg")), [1, 0, 1])
    kept = a.select(np.array([False, True, True]))
    np.testing.assert_array_equal(kept.classes, ["agn", "sfg"])
    with pytest.raises(ValueError, match=r"classes \['sfg'\] are not among \['agn'\]"):
        a.class_codes(("agn",))
    with pytest.raises(ValueError, match="at least two classes"):
        class_names([_labels(["sfg"] * 3)])
    with pytest.raises(ValueError, match="cat: the labels have no classes"):
        class_names([a, _labels(None)])
    # sources without a class ("") are no class: their code is -1
    part = _labels(["sfg", "", "agn"])
    assert class_names([part]) == ("agn", "sfg")
    np.testing.assert_array_equal(part.class_codes(("agn", "sfg")), [1, -1, 0])
    with pytest.raises(ValueError, match=r"hold \['sfg'\] \(2 sources without a class\)"):
        class_names([_labels(["sfg", "", ""])])
    many = _labels([str(k) for k in range(65)], x=np.linspace(5.0, 60.0, 65))
    with pytest.raises(ValueError, match="65 distinct values .* more than the 64 classes"):
        class_names([many])


def test_class_codes_read_as_floats_are_the_same_classes():
    from cianna_jax.astro.catalogue import column_text, selected_rows

    codes = np.ma.masked_array([1.0, 3.0, 2.5, 3.0, np.nan], [False, False, False, True, False])
    assert column_text(codes) == ["1", "3", "2.5", "", ""]
    assert column_text(np.array([" sfg", "fr2 "])) == ["sfg", "fr2"]
    t = make_table({"x": np.arange(3.0), "class": np.array([1.0, 3.0, 3.0])})
    assert len(selected_rows(t, "class=3")) == 2  # as SDC1's codes are written


def test_training_catalogue_class_column(tmp_path):
    from cianna_jax.astro.catalogue import CatalogueError, write_catalogue
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.labels import read_training_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    f = synthetic_field(64, seed=3, density=0.004, snr_range=(20.0, 200.0))
    write_fits(tmp_path / "f.fits", f)
    t = truth_table(f)
    t["Kind"] = np.where(np.arange(len(t)) % 2, "fr2", "sfg")
    write_catalogue(t, tmp_path / "c.ecsv")
    with open_image(tmp_path / "f.fits") as img:
        lb = read_training_catalogue(tmp_path / "c.ecsv", img, class_column="kind")
        assert lb.classes.tolist() == list(np.asarray(t["Kind"])[: len(lb)])
        assert read_training_catalogue(tmp_path / "c.ecsv", img).classes is None
        with pytest.raises(CatalogueError, match="no class column 'type'"):
            read_training_catalogue(tmp_path / "c.ecsv", img, class_column="type")
        t["Kind"][1] = ""   # a source without a class: kept, its class ""
        write_catalogue(t, tmp_path / "blank.ecsv")
        part = read_training_catalogue(tmp_path / "blank.ecsv", img, class_column="Kind")
        assert len(part) == len(lb) and part.classes[1] == "" and part.classes[0] == "sfg"


def test_patch_targets_carry_the_classes():
    lb = _labels(["a", "b", "a"], x=(10.0, 30.0, 38.0))
    image = np.zeros((24, 64), np.float32)
    s = PatchSampler(image, (0, 0), lb, (0, 24, 0, 64), 24, 4, negative_fraction=0.0,
                     augment=False, classes=lb.class_codes(("a", "b")))
    _, row = s.cut(0, 20)  # the sources at x 30 and 38: classes b and a, brightest first
    assert row[0] == 2
    assert [row[1 + 7 * k] for k in range(2)] == [1.0, 2.0]  # CIANNA's 1-based classes
    part = _labels(["a", "", "a"], x=(10.0, 30.0, 38.0))   # no class: CIANNA's class 0
    _, row = PatchSampler(image, (0, 0), part, (0, 24, 0, 64), 24, 4, negative_fraction=0.0,
                          augment=False, classes=part.class_codes(("a", "b"))).cut(0, 20)
    assert [row[1 + 7 * k] for k in range(2)] == [1.0, 0.0]
    _, plain = PatchSampler(image, (0, 0), lb, (0, 24, 0, 64), 24, 4, negative_fraction=0.0,
                            augment=False).cut(0, 20)
    assert [plain[1 + 7 * k] for k in range(2)] == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"classes: one per source \(3\)"):
        PatchSampler(image, (0, 0), lb, (0, 24, 0, 64), 24, 4, classes=np.zeros(2))


def test_balanced_positives_see_every_class_alike():
    """Nine sources of one class, one of another: positives placed around sources drawn
    uniformly see the rare one a tenth of the time, balanced ones half of the time."""
    x = np.linspace(6.0, 90.0, 10)
    lb = _labels(["a"] * 9 + ["b"], x=x)
    codes = lb.class_codes(("a", "b"))
    image = np.zeros((24, 96), np.float32)
    kw = dict(negative_fraction=0.0, positive_fraction=1.0, classes=codes)
    plain = PatchSampler(image, (0, 0), lb, (0, 24, 0, 96), 16, 4, **kw).plan(1, 1, 4000)
    even = PatchSampler(image, (0, 0), lb, (0, 24, 0, 96), 16, 4, balance_classes=True,
                        **kw).plan(1, 1, 4000)
    assert np.mean(codes[plain.source] == 1) == pytest.approx(0.1, abs=0.02)
    assert np.mean(codes[even.source] == 1) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="balance_classes: needs the sources' classes"):
        PatchSampler(image, (0, 0), lb, (0, 24, 0, 96), 16, 4, balance_classes=True)
    # sources without a class keep their share; the classified ones' is split evenly
    w = balanced_weights(np.array([0, 0, 0, 1, -1, -1]))
    np.testing.assert_allclose(w, np.array([2 / 3, 2 / 3, 2 / 3, 2, 1, 1]) / 6)
    np.testing.assert_allclose(balanced_weights(np.array([-1, -1])), [0.5, 0.5])
    from cianna_jax.astro.trainer import TrainSettings

    with pytest.raises(ValueError, match="balance_classes: with class_column"):
        TrainSettings(image="i", catalogue="c", out="o", balance_classes=True).check()


def test_detector_class_outputs():
    net = build_detector("default", 32, np.full((2, 2), 6.0, np.float32), 5, nb_class=3)
    assert net.yolo.nb_class == 3 and net.yolo.class_softmax
    assert net.yolo.nb_filters == 2 * (8 + 3)
    sdc1 = build_detector("sdc1", 32, None, 5, nb_class=2)
    assert sdc1.yolo.nb_filters == 9 * (8 + 2)


def test_boxes_given_other_classes_suppress_each_other():
    """One source, one class: two boxes of one cell on the same source, the network giving
    them different classes, leave one detection (the higher objectness's, its class)."""
    import jax

    from cianna_jax.astro.model_card import LoadedModel, Normalisation
    from cianna_jax.astro.predict import detect
    from cianna_jax.network import init_params

    net = build_detector("default", 32, np.full((2, 2), 6.0, np.float32), 5, nb_class=2)
    card = ModelCard(network="x.dat", tile=(32, 32), overlap=(0, 0), classes=("a", "b"),
                     obj_threshold=0.5, normalisation=Normalisation(noise_rms=1.0))
    model = LoadedModel(card=card, net=net, params=init_params(jax.random.key(0), net))
    out = np.zeros((1, 4, 4, 2, 10), np.float32)  # (N, G1, G0, B, 8 + 2 classes)
    out[0, 1, 1, :, 0:3] = 0.5
    out[0, 1, 1, :, 7] = (0.9, 0.8)
    out[0, 1, 1, :, 8:] = ((0.3, 0.7), (0.8, 0.2))
    det = detect(lambda w: np.zeros((32, 32), np.float32)[w], (32, 32), model,
                 predict_fn=lambda b: np.repeat(out, len(b), axis=0), progress=False)
    assert len(det.boxes) == 1 and det.boxes.objectness[0] == pytest.approx(0.9)
    assert det.boxes.class_id.tolist() == [1]
    # the card's class temperature calibrates the probabilities, never the class
    from dataclasses import replace

    warm = replace(model, card=replace(card, class_temperature=2.0))
    det = detect(lambda w: np.zeros((32, 32), np.float32)[w], (32, 32), warm,
                 predict_fn=lambda b: np.repeat(out, len(b), axis=0), progress=False)
    q = np.sqrt([0.3, 0.7])
    np.testing.assert_allclose(det.boxes.class_scores[0], q / q.sum(), rtol=1e-5)


def test_card_classes_round_trip_and_checks(tmp_path):
    card = ModelCard(network="m.dat", tile=(32, 32), overlap=(8, 8), classes=("sfg", "agn"))
    save_model_card(tmp_path / "m.json", card)
    assert load_model_card(tmp_path / "m.json").classes == ("sfg", "agn")
    from dataclasses import replace

    save_model_card(tmp_path / "t.json", replace(card, class_temperature=1.7))
    assert load_model_card(tmp_path / "t.json").class_temperature == 1.7
    with pytest.raises(ModelError, match="class_temperature must be a positive number"):
        save_model_card(tmp_path / "bad.json", replace(card, class_temperature=0.0))
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["detection"]["classes"] == ["sfg", "agn"]
    with pytest.raises(ModelError, match="distinct non-empty names"):
        save_model_card(tmp_path / "bad.json", ModelCard(network="m.dat", tile=(32, 32),
                                                        overlap=(8, 8), classes=("a", "a")))
    d["detection"]["classes"] = "sfg"
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="wrong type"):
        load_model_card(tmp_path / "bad.json")


def test_class_columns_and_sdc1_classes():
    cols = class_columns(np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]]), ("1", "2", "3"))
    assert list(cols) == ["det_class", "det_prob", "det_p_1", "det_p_2", "det_p_3"]
    assert cols["det_class"].tolist() == ["2", "1"]
    np.testing.assert_allclose(cols["det_prob"], [0.7, 0.6])
    assert class_columns(np.zeros((0, 2)), ("a", "b"))["det_class"].shape == (0,)
    base = {"ra": np.array([1.0, 2.0]), "dec": np.array([-3.0, -4.0]), "flux": np.ones(2),
            "bmaj": np.ones(2), "bmin": np.ones(2), "pa": np.zeros(2)}
    t = make_table({**base, **cols})

    def classes(table):
        return [int(line.split()[-1]) for line in to_sdc1(table).splitlines()[1:]]

    assert classes(t) == [2, 1]
    t["morph_class"] = np.array(["3", "fr2"])  # the morphology classifier's call wins
    assert classes(t) == [3, 1]
    assert classes(make_table(base)) == [3, 3]
    from cianna_jax.astro.catalogue import sdc1_classes
    from cianna_jax.astro.truth import sdc1_columns

    truth = make_table({**base, "class": np.array([1.0, 2.0])})  # a truth's codes, as floats
    assert sdc1_classes(truth).tolist() == [1, 2]
    # val's SDC1 score takes the detector's classes (not 3 for every source)
    cols = sdc1_columns([1, 2], base["ra"], base["dec"], base["flux"], base["bmaj"],
                        base["bmin"], base["pa"], cls=sdc1_classes(t))
    assert cols["class"].tolist() == [3.0, 1.0]


def test_class_report_counts_matched_pairs_only():
    det = make_table({"x": np.array([0.0, 10.0, 20.0, 40.0]),
                      "det_class": np.array(["a", "b", "b", "a"])})
    truth = make_table({"x": np.array([0.2, 10.1, 20.3, 30.0]),
                        "Type": np.array(["a", "a", "b", "b"])})
    m = crossmatch_pixels(np.asarray(det["x"]), np.zeros(4), np.asarray(truth["x"]),
                          np.zeros(4), 1.0)
    col = truth_class_column(truth, "type")
    r = class_report(det, truth, m, col, ("a", "b"))
    np.testing.assert_array_equal(r.confusion, [[1, 1], [0, 1]])  # the 4th pair is no match
    assert r.scores["accuracy"] == pytest.approx(2 / 3) and r.n_matched == 3
    assert r.summary()["per_class"]["a"]["recall"] == pytest.approx(0.5)
    text = format_class_report(r)
    assert "3 matched sources): accuracy 0.667, balanced accuracy 0.750" in text
    # the detection's completeness per true class: both a found, one b of two
    np.testing.assert_array_equal(r.n_true, [2, 2])
    np.testing.assert_array_equal(r.detected(), [1.0, 0.5])
    assert r.summary()["per_class"]["b"] | {"detected": 0.5, "n_true": 2, "n_found": 1} == \
        r.summary()["per_class"]["b"]
    assert "detected    of" in text and text.splitlines()[3].endswith("0.500     2")
    bright = class_report(det, truth, m, col, ("a", "b"), counted=np.array([1, 1, 1, 0], bool))
    np.testing.assert_array_equal(bright.detected(), [1.0, 1.0])
    with pytest.raises(ValueError, match="the truth catalogue has no column 'morph'"):
        truth_class_column(truth, "morph")
    other = class_report(det, truth, m, col, ("b", "c"))  # true class "a" unknown to it
    assert other.n_other == 2 and other.confusion.sum() == 1
    assert "2 matched sources have no true class, one the model does not know" in \
        format_class_report(other)


def test_results_csv_and_epoch_line_with_classes(tmp_path):
    row = {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_position": 0.1,
           "val_size": 0.1, "val_objectness": 0.1, "precision": 0.9, "recall": 0.8,
           "f1": 0.85, "ap": 0.8, "threshold": 0.3, "epoch_seconds": 1.0}
    write_results_csv(tmp_path / "plain.csv", [row])
    assert "class_accuracy" not in (tmp_path / "plain.csv").read_text()
    assert " class " not in epoch_line(row, 3, None)
    row.update(val_classes=0.25, class_accuracy=0.875)
    write_results_csv(tmp_path / "r.csv", [row])
    assert read_results_csv(tmp_path / "r.csv")[0]["class_accuracy"] == 0.875
    assert "@0.30 class 0.875  1.0 s" in epoch_line(row, 3, None)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def class_field(tmp_path_factory):
    """A 192x192 synthetic field whose catalogue classes its sources by size, and the same
    catalogue with every third source's class unknown (blank)."""
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    d = tmp_path_factory.mktemp("classfield")
    f = synthetic_field(192, seed=11, density=0.004, snr_range=(15.0, 3000.0))
    write_fits(d / "f.fits", f)
    t = truth_table(f)
    t["kind"] = np.where(np.asarray(t["bmaj"]) > 1.9, "extended", "compact")
    write_catalogue(t, d / "f.ecsv")
    t["kind"][::3] = ""
    write_catalogue(t, d / "part.ecsv")
    return str(d / "f.fits"), str(d / "f.ecsv"), d


def test_a_classifying_run_predict_val_and_fine_tuning(class_field, tmp_path, capsys):
    import jax

    from cianna_jax.astro.fine_tune import fine_tune_base, start_params
    from cianna_jax.astro.model_card import load_model

    img, cat, folder = class_field
    run = tmp_path / "run"   # trained on the catalogue where a third have no class
    with pytest.warns(UserWarning, match=r"training targets have no class .* their boxes "
                      "train the detector, their classes do not"):
        assert cli.main(["train", "--image", img, "--catalogue", str(folder / "part.ecsv"),
                         "--out", str(run), "--epochs", "2", "--patch", "32",
                         "--patches-per-epoch", "64", "--class-column", "kind",
                         "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "classes from column 'kind': compact (" in text and " class " in text
    assert re.search(r"; \d+ training targets without a class", text)
    card = json.loads((run / "best.json").read_text())
    assert card["detection"]["classes"] == ["compact", "extended"]
    assert card["notes"]["class_column"] == "kind"
    assert 0 <= card["notes"]["validation"]["class_accuracy"] <= 1
    assert card["detection"]["class_temperature"] > 0
    rows = read_results_csv(run / "results.csv")
    assert all(np.isfinite(r["val_classes"]) and r["class_temperature"] > 0 for r in rows)
    model = load_model(run / "best.json")
    assert model.class_names == ("compact", "extended") and model.net.yolo.nb_class == 2

    out = tmp_path / "cat.ecsv"
    srl = tmp_path / "srl.ecsv"
    assert cli.main(["predict", "--model", str(run), "--image", img, "--out", str(out),
                     "--threshold", "0.05", "--source-list", str(srl), "--quiet"]) == 0
    assert "classified by the detector (det_class, det_prob, det_p_<class>)" in \
        capsys.readouterr().out
    from cianna_jax.astro.catalogue import read_catalogue

    t = read_catalogue(out)
    assert len(t) and set(t["det_class"]) <= {"compact", "extended"}
    np.testing.assert_allclose(t["det_p_compact"] + t["det_p_extended"], 1.0, atol=1e-5)
    np.testing.assert_allclose(t["det_prob"], np.maximum(t["det_p_compact"],
                                                         t["det_p_extended"]))
    assert t.meta["classes"] == ["compact", "extended"]
    sources = read_catalogue(srl)  # each source the class of its brightest Gaussian
    by_id = {int(i): k for k, i in enumerate(t["id"])}
    for row in sources:
        members = [by_id[int(i)] for i in str(row["component_ids"]).split(",")]
        top = members[int(np.argmax(np.asarray(t["peak"])[members]))]
        assert row["det_class"] == t["det_class"][top]
        assert row["det_prob"] == pytest.approx(t["det_prob"][top])

    rep = tmp_path / "rep"  # the column it was trained with, found in the truth
    assert cli.main(["val", "--model", str(run), "--image", img, "--catalogue", cat, "--out",
                     str(rep), "--threshold", "0.05", "--quiet", "--no-plots"]) == 0
    assert "classes (det_class against the truth's kind" in capsys.readouterr().out
    scores = json.loads((rep / "scores.json").read_text())["classes"]
    assert np.sum(scores["confusion"]) == scores["n_matched"] > 0
    assert cli.main(["val", "--model", str(run), "--image", img, "--catalogue", cat, "--out",
                     str(tmp_path / "x"), "--class-column", "type", "--quiet"]) == 2
    assert "the truth catalogue has no column 'type'" in capsys.readouterr().err
    # a morphology classifier on the same catalogue's rows, scored beside the detector
    from cianna_jax.astro.morphology_cutouts import CutoutSpec
    from cianna_jax.astro.morphology_training import ClassifierSettings, train_classifier

    train_classifier([img], [cat], "kind", str(tmp_path / "clf"), progress=False,
                     figure=False, log=lambda m: None,
                     settings=ClassifierSettings(epochs=1, batch_size=16, samples_per_epoch=32,
                                                 cutout=CutoutSpec(4.0, 8, 1.0)))
    assert cli.main(["val", "--model", str(run), "--image", img, "--catalogue", cat, "--out",
                     str(tmp_path / "both"), "--threshold", "0.05", "--classifier",
                     str(tmp_path / "clf"), "--class-column", "kind", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "classes (det_class against the truth's kind" in text
    assert "classes (morph_class against the truth's kind" in text
    both = json.loads((tmp_path / "both" / "scores.json").read_text())
    assert both["morph_classes"]["n_matched"] == both["classes"]["n_matched"] > 0
    assert (tmp_path / "both" / "morph_classes.png").stat().st_size > 5000
    # without --class-column: the columns each was trained with (the classifier's card
    # keeps its label column), where the truth has them
    assert json.loads((tmp_path / "clf" / "best.json").read_text())["notes"][
        "label_column"] == "kind"
    assert cli.main(["val", "--model", str(run), "--image", img, "--catalogue", cat, "--out",
                     str(tmp_path / "default"), "--threshold", "0.05", "--classifier",
                     str(tmp_path / "clf"), "--quiet", "--no-plots"]) == 0
    assert "classes (morph_class against the truth's kind" in capsys.readouterr().out
    from cianna_jax.astro.catalogue import write_catalogue

    other = read_catalogue(cat)
    other.rename_column("kind", "sort")
    write_catalogue(other, tmp_path / "other.ecsv")
    assert cli.main(["val", "--model", str(run), "--image", img, "--catalogue",
                     str(tmp_path / "other.ecsv"), "--out", str(tmp_path / "unscored"),
                     "--threshold", "0.05", "--classifier", str(tmp_path / "clf"), "--quiet",
                     "--no-plots"]) == 0
    assert "morph_class not scored: give --class-column" in capsys.readouterr().out

    # fine-tuned into three classes: the head keeps its box outputs, new class outputs
    base = fine_tune_base(run / "best.json")
    assert base.classes == ("compact", "extended")
    net = build_detector("default", 32, base.priors, 5, nb_class=3)
    start = start_params(base, net, jax.random.key(3))
    old = np.asarray(base.params[-1]["kernel"]).reshape(64, 2, 10)
    new = np.asarray(start[-1]["kernel"]).reshape(64, 2, 11)
    np.testing.assert_array_equal(new[..., :8], old[..., :8])
    assert not np.allclose(new[..., 8:10], old[..., 8:10])  # fresh class outputs
    np.testing.assert_array_equal(np.asarray(start[0]["kernel"]), base.params[0]["kernel"])
    with pytest.raises(ModelError, match="a key is needed"):
        start_params(base, net)
    plain = build_detector("default", 32, base.priors, 5)
    assert np.asarray(start_params(base, plain, jax.random.key(0))[-1]["kernel"]).shape[-1] == 16
    two = build_detector("default", 32, base.priors, 5, nb_class=2)
    kept = start_params(base, two, jax.random.key(3), classes=("compact", "extended"))
    np.testing.assert_array_equal(kept[-1]["kernel"], base.params[-1]["kernel"])
    renamed = start_params(base, two, jax.random.key(3), classes=("agn", "sfg"))
    r = np.asarray(renamed[-1]["kernel"]).reshape(64, 2, 10)
    np.testing.assert_array_equal(r[..., :8], old[..., :8])  # other names: fresh classes
    assert not np.allclose(r[..., 8:], old[..., 8:])
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic_cube import synthetic_cube, write_cube_fits
    from cianna_jax.astro.trainer import TrainSettings, train_detector

    # a class with no training target (its one source below --min-snr or in the
    # validation strip): said, not learnt
    t = read_catalogue(cat)
    t["kind"][np.argmin(np.asarray(t["snr"]))] = "faint"
    write_catalogue(t, tmp_path / "faint.ecsv")
    with pytest.warns(UserWarning, match=r"classes \['faint'\] have no training target"):
        train_detector(TrainSettings(image=img, catalogue=str(tmp_path / "faint.ecsv"),
                                     out=str(tmp_path / "faint"), epochs=1, patch=32,
                                     patches_per_epoch=16, min_snr=5.0, class_column="kind"),
                       log=lambda *_: None, progress=False)
    write_cube_fits(tmp_path / "cube.fits", synthetic_cube((32, 32, 32), seed=1))
    with pytest.raises(ValueError, match="a cube's detector does not classify"):
        train_detector(TrainSettings(image=str(tmp_path / "cube.fits"), catalogue=cat,
                                     out=str(tmp_path / "c"), class_column="kind"))
    assert not (tmp_path / "c").exists()


def test_validation_scores_the_classes_of_classified_sources_only(monkeypatch):
    """The per-epoch class accuracy and temperature count the matched sources whose class
    is known; a source without one (-1) is still found (recall) but not classified."""
    from types import SimpleNamespace

    from cianna_jax.astro import train_validation
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.predict import Detections
    from cianna_jax.yolo.decode import DecodedBoxes

    x = np.array([10.0, 30.0, 50.0, 20.0])
    y = np.array([10.0, 30.0, 50.0, 50.0])
    n = x.size
    boxes = np.stack([x - 2, y - 2, np.zeros(n), x + 3, y + 3, np.ones(n)], 1)
    # predicted classes: right, right, wrong for the classified ones; any for the last
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    found = Detections(DecodedBoxes(boxes=boxes, image=np.zeros(n, int), prior=np.zeros(n, int),
                                    cell=np.zeros((n, 3), int), probability=np.full(n, 0.9),
                                    objectness=np.full(n, 0.9), class_scores=scores,
                                    params=np.zeros((n, 0))), 1, 1.0, 0.05)
    monkeypatch.setattr(train_validation, "detect", lambda *a, **k: found)
    pixels = np.random.default_rng(0).normal(0, 1, (64, 64)).astype(np.float32)
    noise = estimate_noise_map(lambda w: pixels[w], pixels.shape, box=32)
    model = SimpleNamespace(card=SimpleNamespace(score="objectness"))

    def scores_with(classes):
        area = train_validation.ValidationArea(
            pixels=pixels, origin=(0, 0), noise=noise, x=x, y=y, radius=np.full(n, 3.0),
            counted=np.ones(n, bool), classes=np.array(classes))
        return train_validation.validate_areas(model, [area], None)

    part = scores_with([0, 1, 1, -1])
    assert part.recall == 1.0 and part.n_classified == 3
    assert part.class_accuracy == pytest.approx(2 / 3)
    full = scores_with([0, 1, 1, 1])
    assert full.n_classified == 4 and full.class_accuracy == pytest.approx(2 / 4)


def test_detection_by_class_for_a_detector_that_does_not_classify(tmp_path):
    """The share of each true class's counted sources that were matched, classes in
    numeric order (SDC1's codes), sources without a class left out; report, JSON, figure."""
    from cianna_jax.astro.detector_classes import (
        detection_by_class,
        detection_by_class_figure,
        format_detection_by_class,
    )

    truth = make_table({"x": np.arange(6.0) * 10, "class": np.array([3.0, 1.0, 3.0, 10.0, 1.0,
                                                                       np.nan])})
    det = make_table({"x": np.array([0.1, 10.2, 40.1, 50.3])})   # sources 0, 1, 4, 5 found
    m = crossmatch_pixels(np.asarray(det["x"]), np.zeros(4), np.asarray(truth["x"]),
                          np.zeros(6), 1.0)
    r = detection_by_class(truth, m, "class")
    assert r.classes == ("1", "3", "10")
    np.testing.assert_array_equal(r.n_true, [2, 2, 1])
    np.testing.assert_array_equal(r.n_found, [2, 1, 0])
    np.testing.assert_allclose(r.detected(), [1.0, 0.5, 0.0])
    assert r.summary()["per_class"]["3"] == {"detected": 0.5, "n_true": 2, "n_found": 1}
    text = format_detection_by_class(r)
    assert "detection by true class (the truth's class" in text
    assert text.splitlines()[3].split() == ["3", "0.500", "1", "2"]
    counted = detection_by_class(truth, m, "class", counted=np.array([1, 0, 1, 1, 1, 1], bool))
    np.testing.assert_array_equal(counted.n_true, [1, 2, 1])
    detection_by_class_figure(r).savefig(tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 5000
