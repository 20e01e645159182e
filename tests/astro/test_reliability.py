"""The inverted-image test of a catalogue's reliability (astro/reliability.py): the
estimator's pooling and counts, the inverted image's run, the column, predict and val."""

import json

import numpy as np
import pytest

from cianna_jax.astro.reliability import (
    SNR_EDGES,
    estimate_reliability,
    format_reliability,
    measured_reliability,
    summed_estimate,
)

from .conftest import make_peak_detector

EDGES = (0.0, 3.0, 4.0, 5.0, 10.0, np.inf)


def _snr(counts):
    """SNRs inside EDGES' bins, ``counts[b]`` of them in bin b."""
    mids = (1.5, 3.5, 4.5, 7.0, 20.0)
    return np.concatenate([np.full(n, m) for n, m in zip(counts, mids)])


def test_false_fractions_are_pooled_to_fall_with_snr():
    # bin 2 has more false detections than bin 1: the two are pooled
    est = estimate_reliability(_snr([10, 20, 10, 5, 40]), _snr([8, 5, 5, 0, 0]), EDGES)
    assert est.n_image.tolist() == [10, 20, 10, 5, 40]
    assert est.n_inverted.tolist() == [8, 5, 5, 0, 0]
    np.testing.assert_allclose(est.false_fraction, [0.8, 10 / 30, 10 / 30, 0.0, 0.0])
    assert np.all(np.diff(est.false_fraction) <= 0)
    np.testing.assert_allclose(est.false_fraction_err[:3], [np.sqrt(8) / 10] + [np.sqrt(10) / 30] * 2)
    # none there (equal fractions are not pooled): Gehrels' 1-sigma limit of each bin
    np.testing.assert_allclose(est.false_fraction_err[3:], [1.84 / 5, 1.84 / 40])
    np.testing.assert_allclose(est.reliability, 1 - est.false_fraction)
    assert est.n_false == pytest.approx(8 + 10)
    np.testing.assert_allclose(est.at([0.5, 3.9, 4.1, 100.0, np.nan]),
                               [0.2, 2 / 3, 2 / 3, 1.0, np.nan])


def test_bins_without_detections_on_the_image():
    # bin 1: none anywhere (NaN, no pool); bin 3: inverted ones only, an infinite
    # fraction pooled with bin 2 (3/6); more inverted than image detections (bin 0): a
    # false fraction of 1, not more
    est = estimate_reliability(_snr([4, 0, 6, 0, 10]), _snr([9, 0, 1, 2, 0]), EDGES)
    assert np.isnan(est.false_fraction[1])
    np.testing.assert_allclose(est.false_fraction[[0, 2, 3, 4]], [1.0, 0.5, 0.5, 0.0])
    assert est.reliability[0] == 0.0
    text = format_reliability(est)
    assert "[3, 4)" not in text  # empty on both sides: no row
    assert "expected false" in text and ">= 10" in text


def test_estimate_refuses_bad_edges_and_ignores_nan():
    with pytest.raises(ValueError, match="edges"):
        estimate_reliability([1.0], [1.0], (0.0, 5.0, 3.0))
    with pytest.raises(ValueError, match="edges"):
        estimate_reliability([1.0], [1.0], (1.0,))
    est = estimate_reliability([np.nan, 4.2, -1.0], [np.nan], EDGES)
    assert est.n_image.sum() == 1 and est.n_inverted.sum() == 0  # NaN and off-bin SNRs
    # the default bins take every SNR: a fit gone negative is in the first
    assert estimate_reliability([-1.0, 2.0], []).n_image[0] == 2
    assert est.edges.tolist() == list(EDGES)
    assert estimate_reliability([], []).edges.tolist() == list(SNR_EDGES)


def test_summed_estimate_adds_the_counts_and_pools_again():
    a = estimate_reliability(_snr([10, 0, 0, 0, 5]), _snr([2, 0, 0, 0, 0]), EDGES)
    b = estimate_reliability(_snr([10, 4, 0, 0, 5]), _snr([4, 2, 0, 0, 0]), EDGES)
    s = summed_estimate([a, b])
    assert s.n_image.tolist() == [20, 4, 0, 0, 10] and s.n_inverted.tolist() == [6, 2, 0, 0, 0]
    # 6/20 then 2/4: pooled to 8/24
    np.testing.assert_allclose(s.false_fraction[[0, 1, 4]], [8 / 24, 8 / 24, 0.0])
    with pytest.raises(ValueError, match="bins differ"):
        summed_estimate([a, estimate_reliability([], [])])


def test_measured_reliability_per_bin():
    got = measured_reliability([1.0, 1.5, 3.5, 30.0, np.nan], [False, True, True, True, True],
                               EDGES)
    np.testing.assert_allclose(got, [0.5, 1.0, np.nan, np.nan, 1.0])


@pytest.fixture(scope="module")
def peaks_3(tmp_path_factory):
    """A finder of peaks above 3 sigma (set weights, conftest.make_peak_detector)."""
    return make_peak_detector(tmp_path_factory.mktemp("peaks"), 3.0)


def _write_field(path, seed, **kw):
    from cianna_jax.astro.catalogue import write_catalogue
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    f = synthetic_field(256, seed=seed, extended_fraction=0.0, **kw)
    write_fits(path / f"f{seed}.fits", f)
    write_catalogue(truth_table(f), path / f"t{seed}.ecsv")
    return str(path / f"f{seed}.fits"), str(path / f"t{seed}.ecsv")


def test_the_inverted_run_is_the_run_on_the_negated_file(tmp_path, peaks_3):
    from astropy.io import fits

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.model_card import load_model
    from cianna_jax.astro.pipeline import find_sources, inverted_finding

    image, _ = _write_field(tmp_path, 5, density=0.002, snr_range=(100.0, 3000.0))
    with fits.open(image) as h:
        fits.writeto(tmp_path / "neg.fits", -h[0].data, h[0].header)
    with open_image(image) as img:
        res = find_sources(img, peaks_3, progress=False, reliability=True)
        neg = inverted_finding(img, load_model(peaks_3), res.noise)
        assert not img.negated and not img.inverted().inverted().negated
        np.testing.assert_array_equal(img.inverted().read(), -img.read())
    on_file = find_sources(str(tmp_path / "neg.fits"), peaks_3, progress=False)
    assert len(neg.table) == len(on_file.table) > 10
    assert on_file.reliability is None and "reliability" not in on_file.table.colnames
    for c in ("x", "y", "flux", "snr"):
        np.testing.assert_allclose(neg.table[c], on_file.table[c], rtol=1e-4, atol=1e-6)
    # the inverted image's count is the estimate's, and the column follows objectness
    assert res.reliability.n_inverted.sum() == len(neg.table)
    names = res.table.colnames
    assert names[names.index("objectness") + 1] == "reliability"
    assert "probability that the source is real" in res.table["reliability"].description
    assert res.table.meta["reliability"]["n_inverted"] == res.reliability.n_inverted.tolist()
    # the bright sources (SNR >= 20) are reliable: no inverted detection comes near them
    bright = np.asarray(res.table["snr"]) >= 20
    assert bright.sum() >= 5 and np.all(np.asarray(res.table["reliability"])[bright] == 1.0)


def test_on_pure_noise_as_many_detections_are_found_inverted(tmp_path, peaks_3):
    from cianna_jax.astro.pipeline import find_sources

    est = summed_estimate([
        find_sources(_write_field(tmp_path, seed, density=1e-9)[0], peaks_3, progress=False,
                     reliability=True).reliability for seed in (1, 2, 3)])
    n_img, n_inv = int(est.n_image.sum()), int(est.n_inverted.sum())
    # measured 184 and 184: the two counts of one noise agree within their Poisson errors
    assert n_img > 100 and abs(n_img - n_inv) < 3 * np.sqrt(n_img + n_inv)
    assert est.n_false > 0.8 * n_img  # nothing here is real


def test_cli_predict_and_val_with_the_reliability_test(tmp_path, peaks_3, capsys):
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.cli import main

    image, truth = _write_field(tmp_path, 6, density=0.002, snr_range=(30.0, 3000.0))
    out, fig = tmp_path / "c.ecsv", tmp_path / "reliability.png"
    # a figure's folder that does not exist: refused before any work, nothing written
    assert main(["predict", "--model", peaks_3, "--image", image, "--out", str(out),
                 "--quiet", "--reliability-figure", str(tmp_path / "no" / "r.png")]) == 2
    assert "folder does not exist" in capsys.readouterr().err and not out.exists()
    # the figure implies the test
    assert main(["predict", "--model", peaks_3, "--image", image, "--out", str(out),
                 "--quiet", "--reliability-figure", str(fig)]) == 0
    text = capsys.readouterr().out
    assert "reliability from the inverted image:" in text and "reliability test " in text
    assert f"reliability figure -> {fig}" in text and fig.stat().st_size > 0
    cat = read_catalogue(out)
    rel = np.asarray(cat["reliability"])
    assert np.all((rel >= 0) & (rel <= 1)) and rel.min() < 0.9 and rel.max() == 1.0
    assert cat.meta["reliability"]["snr_edges"][-1] == float("inf")
    rep = tmp_path / "rep"
    assert main(["val", "--model", peaks_3, "--image", image, "--catalogue", truth,
                 "--out", str(rep), "--quiet", "--reliability", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "measured" in text.split("reliability from the inverted image")[1]
    scores = json.loads((rep / "scores.json").read_text())["reliability"]
    assert len(scores["measured"]) == len(scores["n_image"]) == len(SNR_EDGES) - 1
    assert "reliability" in read_catalogue(rep / "catalogue.ecsv").colnames  # (its figure:
    # tests/astro/test_predict_cli.py)


def test_the_figure_shows_both_reliabilities_and_both_counts():
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.plots import reliability_plot

    est = estimate_reliability(_snr([10, 20, 10, 5, 40]), _snr([8, 5, 5, 0, 0]), EDGES)
    fig = reliability_plot(est, measured=np.array([0.1, 0.7, 0.6, 1.0, 1.0]))
    left, right = fig.axes
    assert fig._suptitle.get_text() == "Reliability from the inverted image"
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "measured: detections matched to the truth",
        "estimated: 1 - n(inverted) / n(image), pooled"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "on the image (85)", "on the inverted image (18)"]
    assert "SNR" in left.get_xlabel() and "reliability" in left.get_ylabel()
    assert right.get_yscale() == "symlog"
    # with a threshold scan: a third panel, the target and the chosen threshold marked
    from cianna_jax.astro.reliability import threshold_scan

    scan = threshold_scan([0.95, 0.8, 0.6, 0.4, 0.2], [0.5, 0.3, 0.15], (0.1, 0.3, 0.5, 0.7))
    fig = reliability_plot(est, scan=scan, chosen=0.5, target=0.6,
                           scan_measured=np.array([0.5, 0.6, 0.8, 1.0]))
    third = fig.axes[2]
    assert third.get_xlabel() == "objectness threshold"
    assert [t.get_text() for t in third.get_legend().get_texts()] == [
        "estimated: 1 - n(inverted) / n(image)", "measured: precision against the truth",
        "target 0.6", "chosen threshold 0.5"]


def test_threshold_scan_counts_and_chooses_the_lowest_reaching_the_target():
    from cianna_jax.astro.reliability import THRESHOLDS, scan_thresholds, threshold_scan

    scan = threshold_scan([0.95, 0.8, 0.6, 0.4, 0.2], [0.5, 0.3, 0.15], (0.1, 0.3, 0.5, 0.7))
    assert scan.n_image.tolist() == [5, 4, 3, 2] and scan.n_inverted.tolist() == [3, 2, 1, 0]
    np.testing.assert_allclose(scan.reliability, [0.4, 0.5, 2 / 3, 1.0])
    assert scan.choose(0.5) == 0.3 and scan.choose(0.6) == 0.5 and scan.choose(0.1) == 0.1
    # more inverted than image detections reads as 0, not less; none at all: NaN
    low = threshold_scan([0.9], [0.9, 0.8, 0.7], (0.5, 0.95))
    assert low.reliability[0] == 0.0 and np.isnan(low.reliability[1])
    with pytest.warns(UserWarning, match="no objectness threshold reaches it"):
        assert low.choose(0.5) == 0.5  # the most reliable one
    with pytest.warns(UserWarning, match="no detection at any objectness threshold"):
        assert threshold_scan([], [0.2], (0.3, 0.5)).choose(0.9) == 0.3
    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 19
    # the scan starts at the model card's threshold, never below it
    assert scan_thresholds(0.42)[:3] == (0.42, 0.45, 0.5)
    assert scan_thresholds(0.5)[:2] == (0.5, 0.55) and scan_thresholds(0.97) == (0.97,)
    assert scan.summary()["reliability"][-1] == 1.0


def test_a_target_reliability_chooses_the_threshold_in_predict_and_val(tmp_path):
    from cianna_jax.astro.pipeline import find_sources
    from cianna_jax.astro.validate import validate

    # objectness graded over a few sigma: a threshold scan with something to choose
    card = make_peak_detector(tmp_path, 3.5, steep=35.0)
    image, truth = _write_field(tmp_path, 6, density=0.001, snr_range=(30.0, 3000.0))
    res = find_sources(image, card, progress=False, target_reliability=0.9)
    scan, thr = res.threshold_scan, res.detections.obj_threshold
    # measured: 0.55, the lowest of the scan estimated >= 0.9 (0.906; 0.891 at 0.5, the
    # card's threshold, where the scan starts)
    assert scan.thresholds[0] == 0.5 and thr == scan.choose(0.9) and 0.5 < thr < 0.95
    k = list(scan.thresholds).index(thr)
    assert scan.reliability[k] >= 0.9 > scan.reliability[k - 1]
    # the scan counts the detections measured together down to the card's threshold (a
    # source's fit can see fainter neighbours)
    assert abs(scan.n_image[k] - len(res.table)) <= 0.1 * len(res.table)
    assert res.reliability.n_inverted.sum() == scan.n_inverted[k]
    meta = res.table.meta["reliability"]
    assert meta["target"] == 0.9 and meta["threshold_scan"]["n_image"] == scan.n_image.tolist()
    # the catalogue is the one found at that threshold
    plain = find_sources(image, card, progress=False, obj_threshold=thr)
    for c in ("x", "y", "flux"):
        np.testing.assert_allclose(res.table[c], plain.table[c])
    # val chooses the same threshold, and puts the truth's precision beside each estimate
    rep = validate(image, card, truth, tmp_path / "rep", progress=False, plots=False,
                   target_reliability=0.9)
    assert len(rep.table) == len(res.table)
    assert f"objectness >= {thr:g} (chosen for an estimated reliability >= 0.9)" in rep.text
    assert f"{thr:>10.2f}" in rep.text and "<- chosen" in rep.text
    summary = json.loads((tmp_path / "rep" / "scores.json").read_text())["reliability"]
    assert summary["thresholds"] == [thr] and summary["target"] == 0.9
    for bad, match in ((dict(target_reliability=1.0), "in \\(0, 1\\)"),
                       (dict(target_reliability=0.0), "target_reliability"),
                       (dict(target_reliability=0.9, obj_threshold=0.5), "not both")):
        with pytest.raises(ValueError, match=match):
            find_sources(image, card, progress=False, **bad)


def test_cli_refuses_a_target_with_a_threshold(tmp_path, peaks_3, capsys):
    from cianna_jax.cli import main

    image, _ = _write_field(tmp_path, 8, density=1e-9)
    out = tmp_path / "c.ecsv"
    for extra in (["--threshold", "0.5", "--target-reliability", "0.9"],
                  ["--target-reliability", "1.5"]):
        assert main(["predict", "--model", peaks_3, "--image", image, "--out", str(out),
                     "--quiet", *extra]) == 2
        assert "target_reliability" in capsys.readouterr().err
        assert not out.exists()
