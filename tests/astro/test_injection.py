"""Source injection (astro.injection, astro.completeness, ``cianna-jax inject``): the
injected pixels, their placement, the matching and scores, and a run with a threshold
finder whose completeness is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cianna_jax.astro.fits_image import ImageError, open_image
from cianna_jax.astro.injection import (
    ATTRIBUTION_BEAMS,
    InjectedSources,
    checked_settings,
    draw_shapes,
    fragment_rates,
    match_round,
    place_sources,
    score_injection,
    wilson_interval,
)
from cianna_jax.astro.measure import FWHM
from cianna_jax.astro.reliability import format_reliability
from cianna_jax.astro.synthetic import synthetic_field, write_fits

from .conftest import make_peak_detector, make_peak_detector_3d


def _sources() -> InjectedSources:
    return InjectedSources(x=np.array([10.3, 40.0, -2.0]), y=np.array([12.7, 30.5, 20.0]),
                           peak=np.array([2.0, -1.0, 5.0]), sigma_major=np.array([2.0, 3.0, 1.5]),
                           sigma_minor=np.array([1.0, 2.0, 1.5]), theta=np.array([0.3, 1.2, 0.0]))


def _direct(src: InjectedSources, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The sources evaluated everywhere, with no reach cut (float64)."""
    out = np.zeros(np.broadcast(yy, xx).shape)
    for k in range(len(src)):
        c, s = np.cos(src.theta[k]), np.sin(src.theta[k])
        dx, dy = xx - src.x[k], yy - src.y[k]
        u, v = dx * c + dy * s, -dx * s + dy * c
        out += src.peak[k] * np.exp(-0.5 * ((u / src.sigma_major[k]) ** 2
                                            + (v / src.sigma_minor[k]) ** 2))
    return out


def test_render_whole_window_and_points_agree_with_the_gaussians():
    src, shape = _sources(), (48, 56)
    yy, xx = np.mgrid[0:48, 0:56].astype(np.float64)
    full = src.render(None, shape)
    assert full.shape == shape and full.dtype == np.float32
    np.testing.assert_allclose(full, _direct(src, yy, xx), atol=2e-5)  # cut at 5 sigma
    for window in [(slice(5, 30), slice(20, 50)), (slice(0, 48, 3), slice(1, 56, 4)),
                   (slice(40, 48), slice(0, 5)), (slice(10, 10), slice(0, 5))]:
        np.testing.assert_array_equal(src.render(window, shape), full[window])
    iy, ix = np.array([12, 30, 0, 47]), np.array([10, 40, 0, 55])
    np.testing.assert_allclose(src.render((iy, ix), shape), full[iy, ix], atol=1e-6)
    with pytest.raises(ValueError, match="2D"):
        src.render((slice(None),) * 3, (4,) + shape)


def test_render_keeps_the_integrated_flux():
    src = InjectedSources(np.array([30.2]), np.array([29.6]), np.array([3.0]), np.array([2.5]),
                          np.array([1.2]), np.array([0.7]))
    total = src.render(None, (60, 60)).sum()
    assert total == pytest.approx(2 * np.pi * 3.0 * 2.5 * 1.2, rel=1e-4)


@pytest.fixture(scope="module")
def field_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inject")
    f = synthetic_field(160, seed=5, density=0.0004, nan_border=6, psf_fwhm=5.0)
    write_fits(folder / "field.fits", f)
    return folder / "field.fits"


def test_with_sources_adds_to_the_pixels_and_leaves_the_file(field_file):
    src = _sources()
    with open_image(field_file) as img:
        before = img.read()
        view = img.with_sources(src)
        np.testing.assert_array_equal(view.read(), before + src.render(None, img.shape))
        win = (slice(3, 40, 2), slice(5, 60))
        np.testing.assert_array_equal(view.read(win), before[win] + src.render(win, img.shape))
        neg = view.inverted()  # negation applies to the file's pixels, not the sources
        np.testing.assert_array_equal(neg.read(), -before + src.render(None, img.shape))
        np.testing.assert_array_equal(img.read(), before)
    with open_image(field_file) as again:
        np.testing.assert_array_equal(again.read(), before)


def test_write_injected_writes_the_view_and_refuses_a_plain_image(field_file, tmp_path):
    from cianna_jax.astro.residual import write_injected

    with open_image(field_file) as img:
        with pytest.raises(ValueError, match="no injected sources"):
            write_injected(img, tmp_path / "x.fits")
        view = img.with_sources(_sources())
        write_injected(view, tmp_path / "x.fits", rows=7)  # strips of 7 rows
        want = view.read()
    with open_image(tmp_path / "x.fits") as back:
        np.testing.assert_array_equal(back.read(), want)


def test_with_sources_refuses_a_cube(tmp_path):
    fits = pytest.importorskip("astropy.io.fits")
    fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)).writeto(tmp_path / "c.fits")
    with open_image(tmp_path / "c.fits") as img, pytest.raises(ImageError, match="2D"):
        img.with_sources(_sources())


def test_place_sources_keeps_separation_margin_and_data(field_file):
    rng = np.random.default_rng(1)
    with open_image(field_file) as img:
        xy = place_sources(img, 40, separation=20.0, margin=4.0, rng=rng)
        data = img.read()
    assert 10 <= len(xy) <= 40
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(xy), 1)].min() >= 20.0
    assert xy.min() >= 4.0 and xy.max() <= 160 - 1 - 4.0
    for x, y in xy:  # every pixel within the margin is data, not the blanked border
        iy, ix = int(round(y)), int(round(x))
        assert np.isfinite(data[iy - 4:iy + 5, ix - 4:ix + 5]).all()
    with open_image(field_file) as img, pytest.raises(ValueError, match="no room"):
        place_sources(img, 5, separation=3.0, margin=80.0, rng=rng)


def test_wilson_interval():
    lo, hi = wilson_interval(np.array([0, 10, 5, 0]), np.array([10, 10, 10, 0]))
    assert lo[0] == pytest.approx(0.0, abs=1e-12) and hi[0] == pytest.approx(1 / 11)
    assert lo[1] == pytest.approx(10 / 11) and hi[1] == pytest.approx(1.0)
    assert lo[2] < 0.5 < hi[2] and 0.5 - lo[2] == pytest.approx(hi[2] - 0.5)
    assert math.isnan(lo[3]) and math.isnan(hi[3])


def test_match_round_sorts_found_new_and_lost():
    fwhm = 4.0
    src = np.array([[50.0, 50.0], [150.0, 50.0], [50.0, 150.0]])
    radius = np.full(3, fwhm)
    own = np.array([[52.0, 151.0],  # the third source lands on a real one
                    [120.0, 130.0],  # found again
                    [180.0, 180.0]])  # lost
    run = np.array([[51.0, 49.0],  # the first source, found
                    [50.0 + 2.0 * fwhm, 50.0],  # a fragment of it, 2 FWHM away
                    [120.5, 130.0],  # the real source again
                    [52.0, 151.0],  # the real one under the third source
                    [150.0, 50.0 + 5 * fwhm]])  # new, further than 3 FWHM from all
    m = match_round(src, radius, own, run, fwhm)
    assert m.found_row.tolist() == [0, -1, 3]
    assert m.near_source.tolist() == [False, False, True]
    assert m.spurious_rows.tolist() == [1, 4]
    assert m.spurious_source.tolist() == [0, -1]
    assert m.lost.tolist() == [2] and m.n_lost == 1
    assert ATTRIBUTION_BEAMS < 5


def test_score_injection_bins():
    snr = np.array([2.5, 2.6, 4.1, 4.2, 4.3, 60.0, 60.0, 1.0])
    scored = np.array([True, True, True, True, False, True, True, True])
    found = np.array([False, True, True, True, True, True, True, True])
    ratio = np.array([np.nan, 1.5, 1.2, 1.0, 9.0, 1.0, 0.98, 1.0])
    sc = score_injection(snr, scored, found, ratio, np.full(8, 0.1),
                         np.array([0, 0, 1, 0, 5, 2, 1, 0]))
    b = {float(e): i for i, e in enumerate(sc.edges[:-1])}
    assert sc.n.sum() == 6  # the unscored one and the one below the first edge left out
    assert (sc.n[b[2.0]], sc.n_found[b[2.0]]) == (2, 1)
    assert (sc.n[b[4.0]], sc.n_found[b[4.0]], sc.n_spurious[b[4.0]]) == (2, 2, 1)
    assert sc.flux_ratio[b[4.0]] == pytest.approx(1.1)
    assert sc.spurious_rate[b[50.0]] == pytest.approx(1.5)
    assert np.isnan(sc.completeness[b[3.0]])
    assert sc.at_completeness(0.5) == pytest.approx(math.sqrt(2 * 3))  # the first bin's middle
    assert sc.at_completeness(1.0) == pytest.approx(math.sqrt(4 * 4.5))  # NaN bins skipped
    assert math.isnan(score_injection(snr[:1], scored[:1], found[:1], ratio[:1],
                                      np.zeros(1), np.zeros(1, int)).at_completeness(0.5))
    assert json.loads(json.dumps(sc.summary()))["n_found"][b[4.0]] == 2


def test_draw_shapes_convolves_with_the_beam():
    rng = np.random.default_rng(0)
    beam = (2.0, 1.5, 0.4)
    smaj, smin, theta, size = draw_shapes(50, beam, (0.0, 0.0), 0.6, rng)
    np.testing.assert_allclose(smaj, 2.0)
    np.testing.assert_allclose(smin, 1.5)
    np.testing.assert_allclose(np.mod(theta, np.pi), 0.4)
    assert not size.any()
    smaj, smin, theta, size = draw_shapes(50, beam, (2.0, 6.0), 0.6, rng)
    assert ((size >= 2.0) & (size <= 6.0)).all()
    s1 = size / 0.6 / FWHM  # traces add: sigma_maj^2 + sigma_min^2 of each part
    assert np.all(smaj**2 + smin**2 >= s1**2 + 2.0**2 + 1.5**2 - 1e-9)
    assert np.all(smaj**2 + smin**2 <= s1**2 * 2 + 2.0**2 + 1.5**2 + 1e-9)
    assert np.all(smaj >= smin)
    _, _, _, size = draw_shapes(2000, beam, (2.0, 6.0), 0.6, rng, extended_fraction=0.3)
    assert 0.25 < np.mean(size > 0) < 0.35 and (size[size > 0] >= 2.0).all()
    _, _, _, size = draw_shapes(50, beam, (2.0, 6.0), 0.6, rng, extended_fraction=0.0)
    assert not size.any()


@pytest.mark.parametrize("kw, match", [
    (dict(n_sources=0), "n_sources"),
    (dict(snr_range=(5, 2)), "snr_range"),
    (dict(snr_range=(0, 5)), "snr_range"),
    (dict(snr_range="3"), "snr_range"),
    (dict(size_range=(-1, 2)), "size_range"),
    (dict(separation=0), "separation"),
])
def test_checked_settings_name_the_bad_one(kw, match):
    args = dict(n_sources=10, snr_range=(2, 50), size_range=None, separation=10.0) | kw
    with pytest.raises(ValueError, match=match):
        checked_settings(**args)


@pytest.fixture(scope="module")
def peak_run(field_file, tmp_path_factory):
    """A threshold finder (a peak above 5 sigma) and an injection run on the field."""
    from cianna_jax.astro.completeness import measure_completeness

    card = make_peak_detector(tmp_path_factory.mktemp("peaks"), 5.0)
    res = measure_completeness(field_file, card, n_sources=120, separation=6.0,
                               snr_range=(2.0, 60.0), seed=3, progress=False)
    return card, res


def test_injection_run_finds_what_a_threshold_finder_finds(peak_run):
    _, res = peak_run
    t = res.table
    assert len(t) == 120 and res.n_rounds >= 2
    assert t["id"].tolist() == list(range(1, 121))
    assert str(t["flux_in"].unit) == "Jy" and str(t["x"].unit) == "pix" and not t.meta
    snr, found = np.asarray(t["snr_in"]), np.asarray(t["found"])
    assert ((snr >= 2.0) & (snr <= 60.0)).all()
    scored = ~np.asarray(t["near_source"])
    assert found[scored & (snr < 3.0)].mean() < 0.25  # far below the 5-sigma threshold
    # (its boxes sit at cell centres: a source near a cell's corner can lose its fit)
    assert found[scored & (snr > 15.0)].mean() >= 0.95
    assert 3.5 < res.scores.at_completeness(0.5) < 8.0
    assert (np.asarray(t["offset_beams"])[found] <= 1.0 + 1e-9).all()
    assert np.isnan(np.asarray(t["flux_out"])[~found]).all()
    ratio = np.asarray(t["flux_out"])[found & (snr > 20)] / np.asarray(t["flux_in"])[
        found & (snr > 20)]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1)
    # each new detection is given to an injected source of the table, or to none
    src = np.asarray(res.spurious["source"])
    assert set(src[src > 0]) <= set(t["id"])
    assert np.bincount(src[src > 0], minlength=121)[1:].tolist() == t["n_spurious"].tolist()
    assert res.scores.n_spurious.sum() == t["n_spurious"][scored].sum()


def test_injection_run_is_reproducible_and_expected_spurious(peak_run, field_file):
    from cianna_jax.astro.completeness import measure_completeness

    card, res = peak_run
    again = measure_completeness(field_file, card, n_sources=120, separation=6.0,
                                 snr_range=(2.0, 60.0), seed=3, progress=False)
    for name in ("x", "y", "snr_in", "found", "n_spurious"):
        np.testing.assert_array_equal(again.table[name], res.table[name])
    sc = res.scores
    snr = np.array([1.0, 4.2, 25.0, 5000.0])
    rate = sc.spurious_rate
    ok = np.isfinite(rate)
    mid = np.sqrt(sc.edges[:-1] * sc.edges[1:])
    filled = np.interp(np.log(mid), np.log(mid[ok]), rate[ok])
    want = sum(filled[min(np.digitize(s, sc.edges) - 1, mid.size - 1)] for s in snr[1:])
    assert res.expected_spurious(snr) == pytest.approx(want)
    # the new detections given to sources of 20-30 land, per source, in bins of their SNR
    edges = np.array([-np.inf, 3.0, 10.0, np.inf])
    got, err = res.fragments_by_snr(np.array([25.0, 26.0]), edges)
    t, sp = res.table, res.spurious
    parents = (np.asarray(t["snr_in"]) >= 20) & (np.asarray(t["snr_in"]) < 30) & ~np.asarray(
        t["near_source"])
    mine = np.isin(np.asarray(sp["source"]), np.asarray(t["id"])[parents])
    per_bin = np.histogram(np.asarray(sp["snr"])[mine], bins=edges)[0]
    np.testing.assert_allclose(got, 2 * per_bin / parents.sum())
    np.testing.assert_allclose(err, 2 * np.sqrt(per_bin) / parents.sum())
    assert res.fragments_by_snr(np.zeros(0))[0].sum() == 0.0


def test_fragment_rates_count_by_parent_and_own_snr():
    counts, n = fragment_rates(parent_snr=np.array([2.5, 2.6, 12.0, 12.0, 40.0]),
                               scored=np.array([True, True, True, False, True]),
                               spurious_parent=np.array([2, 2, 3, -1, 0, 4]),
                               spurious_snr=np.array([4.0, 11.0, 50.0, 3.0, np.nan, 6.0]),
                               parent_edges=np.array([2.0, 10.0, 100.0]),
                               out_edges=np.array([-np.inf, 5.0, np.inf]))
    assert n.tolist() == [2, 2]  # the unscored source left out
    # parent 2 (SNR 12): two, at 4 and 11; parent 3 unscored; parent 4 (40): one, at 6
    assert counts.tolist() == [[0.0, 0.0], [1.0, 2.0]]


def test_with_fragments_adds_the_expected_errors():
    from cianna_jax.astro.reliability import estimate_reliability, with_fragments

    est = estimate_reliability(np.array([3.2, 3.3, 3.4, 3.6, 12.0, 15.0, 30.0, 40.0]),
                               np.array([3.1]), edges=(-np.inf, 3.0, 4.0, 20.0, np.inf))
    both = with_fragments(est, np.array([0.0, 0.5, 1.0, 5.0]), np.array([0.0, 0.5, 1.0, 2.0]))
    np.testing.assert_allclose(both.false_fraction[1:], [0.25 + 0.5 / 4, 0.5, 1.0])
    assert both.n_false == pytest.approx(1.0 + 0.5 + 1.0 + 2.0)  # capped at the bin's 2
    assert both.false_fraction_err[1] == pytest.approx(np.hypot(est.false_fraction_err[1],
                                                                0.5 / 4))
    assert both.summary()["n_fragments_expected"] == [0.0, 0.5, 1.0, 5.0]
    assert "n_frag" in format_reliability(both)
    with pytest.raises(ValueError, match="per SNR bin"):
        with_fragments(est, np.zeros(3), np.zeros(3))
    from cianna_jax.astro.reliability import summed_estimate

    two = summed_estimate([both, both])  # several images: their errors around sources add
    np.testing.assert_allclose(two.n_fragments, 2 * both.n_fragments)
    np.testing.assert_allclose(two.n_fragments_err, np.sqrt(2) * both.n_fragments_err)
    assert summed_estimate([both, est]).n_fragments is None


def test_injection_with_the_reliability_test(peak_run, field_file, tmp_path):
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.completeness import (
        format_completeness,
        measure_completeness,
        write_injection_report,
    )

    card, _ = peak_run
    res = measure_completeness(field_file, card, n_sources=60, separation=6.0, seed=4,
                               progress=False, reliability=True)
    est = res.own.reliability
    frag, _ = res.fragments_by_snr()
    np.testing.assert_allclose(est.n_fragments, frag)
    assert est.n_false == pytest.approx(np.nansum(np.minimum(
        est.n_image * np.nan_to_num(est.false_fraction), est.n_image)))
    t = res.own.table
    np.testing.assert_allclose(t["reliability"], est.at(np.asarray(t["snr"])))
    write_injection_report(res, tmp_path / "rep", plots=False)
    back = read_catalogue(tmp_path / "rep" / "catalogue.ecsv")
    np.testing.assert_allclose(back["reliability"], t["reliability"])
    assert "reliability_s" in res.timings and "n_frag" in format_completeness(res)
    # the report's rates, read back, are the run's; predict applies them to a catalogue
    from cianna_jax.astro.completeness import read_fragment_rates
    from cianna_jax.cli import main

    rates, mine = read_fragment_rates(tmp_path / "rep"), res.fragment_rates()
    np.testing.assert_array_equal(rates.counts, mine.counts)
    np.testing.assert_array_equal(rates.n, mine.n)
    assert main(["predict", "--image", str(field_file), "--model", card, "--out",
                 str(tmp_path / "p.ecsv"), "--fragments-from", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    pred = read_catalogue(tmp_path / "p.ecsv")
    np.testing.assert_allclose(np.sort(pred["reliability"]), np.sort(t["reliability"]))
    assert main(["predict", "--image", str(field_file), "--model", card, "--out",
                 str(tmp_path / "q.ecsv"), "--fragments-from", str(tmp_path)]) == 2


def test_injection_report_files(peak_run, tmp_path):
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.astro.completeness import format_completeness, write_injection_report

    _, res = peak_run
    pytest.importorskip("matplotlib")
    names = write_injection_report(res, tmp_path / "rep")
    assert names == ["catalogue.ecsv", "injected.ecsv", "spurious.ecsv", "completeness_by_snr.ecsv",
                     "completeness_by_flux.ecsv", "injection.json", "completeness.png"]
    back = read_catalogue(tmp_path / "rep" / "injected.ecsv")
    np.testing.assert_allclose(back["snr_in"], res.table["snr_in"])
    by_flux = read_catalogue(tmp_path / "rep" / "completeness_by_flux.ecsv")
    assert str(by_flux["flux_min"].unit) == "Jy"
    assert by_flux["n"].sum() == res.by_flux.n.sum() == (~res.table["near_source"]).sum()
    np.testing.assert_allclose(by_flux["completeness"], res.by_flux.completeness)
    by_snr = read_catalogue(tmp_path / "rep" / "completeness_by_snr.ecsv")
    assert by_snr["n_found"].tolist() == res.scores.n_found.tolist()
    s = json.loads((tmp_path / "rep" / "injection.json").read_text())
    assert s["n_injected"] == 120 and s["bins"]["n_found"] == res.scores.n_found.tolist()
    assert (tmp_path / "rep" / "completeness.png").stat().st_size > 10_000
    text = format_completeness(res)
    assert "50% complete at SNR" in text and "expected among the catalogue's" in text


def test_inject_cli(peak_run, field_file, tmp_path, capsys):
    from cianna_jax.cli import main

    card, _ = peak_run
    from cianna_jax.astro.catalogue import read_catalogue

    out = tmp_path / "cli"
    assert main(["inject", "--image", str(field_file), "--model", card, "--out", str(out),
                 "--sources", "30", "--separation", "6", "--quiet", "--no-plots",
                 "--write-image", str(tmp_path / "injected.fits")]) == 0
    text = capsys.readouterr().out
    assert "30 sources in" in text and "injection.json" in text and "round 1 ->" in text
    assert not (out / "completeness.png").exists()
    t = read_catalogue(out / "injected.ecsv")
    first = t[t["round"] == 1]
    with open_image(field_file) as img, open_image(tmp_path / "injected.fits") as inj:
        src = InjectedSources(np.asarray(first["x"]), np.asarray(first["y"]),
                              np.asarray(first["peak_in"]) / img.unit_scale,
                              np.full(len(first), np.nan), np.full(len(first), np.nan),
                              np.zeros(len(first)))
        added = inj.read() - img.read()
        assert inj.wcs is not None and inj.beam == img.beam
    finite = np.isfinite(added)
    iy, ix = np.round(src.y).astype(int), np.round(src.x).astype(int)
    assert np.all(added[iy, ix] > 0.5 * src.peak)  # each source of round 1 is there
    assert np.abs(added[finite]).max() <= src.peak.max() * 1.0001
    assert main(["inject", "--image", str(field_file), "--model", card, "--out", str(out),
                 "--write-image", str(tmp_path / "no" / "x.fits")]) == 2
    assert "--write-image" in capsys.readouterr().err
    assert main(["inject", "--image", str(field_file), "--model", card, "--out", str(out),
                 "--snr-range", "5", "2"]) == 2
    assert "snr_range" in capsys.readouterr().err
    assert main(["inject", "--image", str(field_file), "--model", card, "--out", str(out),
                 "--max-peaks", "0"]) == 2
    assert "max_peaks: expected an int >= 1" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["inject", "--image", str(field_file), "--model", card, "--out",
                 str(blocker)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_tiles_touching_a_box():
    from cianna_jax.yolo.tiling import tile_origins, tiles_touching

    origins = tile_origins((100, 120), (32, 32), (8, 8))  # strides of 24, last flush
    got = tiles_touching(origins, (32, 32), np.array([[30, 50]]), np.array([[33, 52]]))
    want = [i for i, (y, x) in enumerate(origins)
            if y <= 33 and y + 31 >= 30 and x <= 52 and x + 31 >= 50]
    assert got.tolist() == want and len(want) == 4
    assert tiles_touching(origins, (32, 32), np.zeros((0, 2)), np.zeros((0, 2))).size == 0


def test_a_run_of_the_touched_tiles_is_the_whole_run(peak_run, field_file):
    """Detections of an injected image from the tiles its sources reach, the others' boxes
    taken from the image's own run, are those of a run over every tile."""
    from cianna_jax.astro.completeness import _touched_tiles
    from cianna_jax.astro.model_card import load_model
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.predict import detect

    card, res = peak_run
    mdl = load_model(card)
    with open_image(field_file) as img:
        noise = estimate_noise_map(img.read, img.shape, box=mdl.card.noise_box)
        own = detect(img.read, img.shape, mdl, noise=noise, progress=False, keep_raw=True)
        view = img.with_sources(res.sources[0])
        tiles = _touched_tiles(img, mdl, res.sources[0])
        part = detect(view.read, view.shape, mdl, noise=noise, progress=False, tiles=tiles,
                      reuse=own.raw)
        full = detect(view.read, view.shape, mdl, noise=noise, progress=False)
    assert 0 < len(tiles) and part.n_tiles == len(tiles)
    np.testing.assert_array_equal(part.boxes.boxes, full.boxes.boxes)
    np.testing.assert_array_equal(part.boxes.objectness, full.boxes.objectness)
    with pytest.raises(ValueError, match="reuse"):
        detect(view.read, view.shape, mdl, noise=noise, progress=False, tiles=tiles)


def test_inject_cli_on_several_images_writes_a_report_each(peak_run, field_file, tmp_path,
                                                           capsys):
    """A mosaic's images: each injected on its own, one report folder each, named after
    the image (paths when two share a file name); --write-image is for one image."""
    import os
    import shutil

    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.cli import _report_folders, main

    card, _ = peak_run
    other = tmp_path / "b" / "second.fits"
    other.parent.mkdir()
    shutil.copy(field_file, other)
    out = tmp_path / "inj"
    assert main(["inject", "--image", str(field_file), "--image", str(other), "--model", card,
                 "--out", str(out), "--sources", "20", "--separation", "6", "--quiet",
                 "--no-plots"]) == 0
    stem = os.path.basename(str(field_file)).rsplit(".", 1)[0]
    assert sorted(os.listdir(out)) == sorted([stem, "second"])
    for name in (stem, "second"):
        assert len(read_catalogue(out / name / "injected.ecsv")) == 20
        assert (out / name / "completeness_by_flux.ecsv").exists()
    assert capsys.readouterr().out.count("20 sources in") == 2
    assert _report_folders(["/x/a/p.fits.gz", "/x/b/p.fits.gz", "q.fits"]) == [
        "x_a_p", "x_b_p", "q"]
    assert _report_folders(["a.fits", "a.fit"]) == ["1_a", "2_a"]
    assert main(["inject", "--image", str(field_file), "--image", str(tmp_path / "none.fits"),
                 "--model", card, "--out", str(tmp_path / "n")]) == 2
    assert "none.fits: no such image file" in capsys.readouterr().err
    # an image without a beam among them: refused before the first image's work
    from astropy.io import fits

    with fits.open(field_file) as hdul:
        hdr = hdul[0].header.copy()
        for key in ("BMAJ", "BMIN", "BPA"):
            hdr.remove(key, ignore_missing=True)
        fits.writeto(tmp_path / "nobeam.fits", hdul[0].data, hdr)
    assert main(["inject", "--image", str(field_file), "--image", str(tmp_path / "nobeam.fits"),
                 "--model", card, "--out", str(tmp_path / "nb")]) == 2
    assert "nobeam.fits: source injection draws sources with the restoring beam" in \
        capsys.readouterr().err
    assert not (tmp_path / "nb").exists()
    assert main(["inject", "--image", str(field_file), "--image", str(other), "--model", card,
                 "--out", str(tmp_path / "w"), "--write-image", str(tmp_path / "i.fits")]) == 2
    assert "--write-image: one image at a time" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_injection_refuses_a_bad_seed_before_the_work(field_file):
    from cianna_jax.astro.completeness import measure_completeness

    with pytest.raises((TypeError, ValueError), match="seed"):
        measure_completeness(field_file, "no-such-model.json", seed=-1, progress=False)


def test_many_rounds_are_warned_about(peak_run, field_file, monkeypatch):
    from cianna_jax.astro import completeness

    card, _ = peak_run
    monkeypatch.setattr(completeness, "MANY_ROUNDS", 1)
    with pytest.warns(UserWarning, match="rounds"):
        res = completeness.measure_completeness(field_file, card, n_sources=60,
                                                separation=6.0, progress=False)
    assert res.n_rounds >= 2 and len(res.table) == 60


def test_render_draws_lines_in_a_cube():
    src = InjectedSources(np.array([10.2]), np.array([12.7]), np.array([3.0]),
                          np.array([2.0]), np.array([1.5]), np.array([0.4]),
                          z=np.array([7.3]), sigma_z=np.array([1.8]))
    assert src.ndim == 3
    full = src.render(None, (16, 24, 20))
    zz, yy, xx = np.mgrid[0:16, 0:24, 0:20].astype(np.float64)
    sky = _direct(InjectedSources(src.x, src.y, src.peak, src.sigma_major, src.sigma_minor,
                                  src.theta), yy[0], xx[0])
    want = sky[None] * np.exp(-0.5 * ((zz[:, :1, :1] - 7.3) / 1.8) ** 2)
    np.testing.assert_allclose(full, want, atol=2e-5)
    win = (slice(2, 14, 3), slice(5, 20), slice(0, 20, 2))
    np.testing.assert_array_equal(src.render(win, (16, 24, 20)), full[win])
    iz, iy, ix = np.array([7, 0]), np.array([13, 0]), np.array([10, 0])
    np.testing.assert_allclose(src.render((iz, iy, ix), (16, 24, 20)), full[iz, iy, ix],
                               atol=1e-6)
    total = full.sum()
    assert total == pytest.approx(3.0 * 2 * np.pi * 2.0 * 1.5 * np.sqrt(2 * np.pi) * 1.8,
                                  rel=1e-3)


def test_match_round_in_a_cube_needs_the_channels_too():
    src = np.array([[20.0, 20.0, 10.0], [60.0, 20.0, 30.0]])
    run = np.array([[20.5, 20.0, 11.0],   # the first line, one channel off
                    [60.0, 20.0, 10.0],   # the second's place, 20 channels off: new
                    [21.0, 21.0, 14.0]])  # beside the first, 4 channels off: new, its
    m = match_round(src, np.full(2, 3.0), np.zeros((0, 3)), run, 3.0,  # fragment
                    z_radius=np.array([2.0, 2.0]))
    assert m.found_row.tolist() == [0, -1]
    assert m.spurious_rows.tolist() == [1, 2]
    assert m.spurious_source.tolist() == [-1, 0]  # 10 z_radius away: nobody's; 2: the first's


@pytest.fixture(scope="module")
def cube_run(tmp_path_factory):
    """A 3D threshold finder (a voxel above 5 sigma) and an injection run on a line cube."""
    from cianna_jax.astro.completeness import measure_completeness
    from cianna_jax.astro.synthetic_cube import synthetic_cube, write_cube_fits

    folder = tmp_path_factory.mktemp("inject_cube")
    write_cube_fits(folder / "c.fits", synthetic_cube((40, 80, 80), seed=2, density=1e-4))
    card = make_peak_detector_3d(folder, 5.0)
    res = measure_completeness(folder / "c.fits", card, n_sources=60, separation=4.0,
                               snr_range=(2.0, 60.0), line_width_range=(3.0, 8.0), seed=1,
                               progress=False)
    return folder / "c.fits", res


def test_injection_into_a_cube(cube_run):
    path, res = cube_run
    t = res.table
    assert len(t) == 60 and {"z", "line_fwhm_in", "dz"} <= set(t.colnames)
    assert str(t["flux_in"].unit) == "Jy pix"
    z, w = np.asarray(t["z"]), np.asarray(t["line_fwhm_in"])
    assert ((w >= 3.0) & (w <= 8.0)).all() and (z >= 8.0).all() and (z <= 40 - 1 - 8.0).all()
    snr, found = np.asarray(t["snr_in"]), np.asarray(t["found"])
    assert found[snr < 3.0].mean() < 0.25
    assert found[snr > 20.0].mean() >= 0.75  # its boxes sit at cell centres
    assert (np.abs(np.asarray(t["dz"])[found]) <= np.maximum(w[found], 1.0)).all()
    bright = found & (snr > 20.0)
    ratio = np.asarray(t["flux_out"])[bright] / np.asarray(t["flux_in"])[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1)
    assert "z" in res.spurious.colnames
    with open_image(path) as img:
        view = img.with_sources(res.sources[0])
        np.testing.assert_allclose(view.read() - img.read(),
                                   res.sources[0].render(None, img.shape), atol=1e-6)
        with pytest.raises(ImageError, match="2D"):
            img.with_sources(_sources())


def test_inject_cli_on_a_cube(cube_run, tmp_path, capsys):
    from cianna_jax.cli import main

    path, res = cube_run
    card = str(path.parent / "peaks3d_5.json")
    assert main(["inject", "--image", str(path), "--model", card, "--out", str(tmp_path / "r"),
                 "--sources", "20", "--separation", "4", "--line-width-range", "3", "5",
                 "--quiet", "--no-plots"]) == 0
    assert "20 sources in" in capsys.readouterr().out
    from cianna_jax.astro.catalogue import read_catalogue

    t = read_catalogue(tmp_path / "r" / "injected.ecsv")
    assert ((t["line_fwhm_in"] >= 3) & (t["line_fwhm_in"] <= 5)).all()
    assert main(["inject", "--image", str(path), "--model", card, "--out", str(tmp_path / "s"),
                 "--sources", "10", "--separation", "4", "--quiet", "--no-plots",
                 "--write-image", str(tmp_path / "x.fits")]) == 0
    assert "cube with the" in capsys.readouterr().out
    first = read_catalogue(tmp_path / "s" / "injected.ecsv")
    first = first[first["round"] == 1]
    with open_image(path) as img, open_image(tmp_path / "x.fits") as inj:
        assert inj.shape == img.shape and inj.beam == img.beam and inj.unit_scale == 1.0
        np.testing.assert_allclose(inj.frequency_axis.frequency(np.arange(3.0)),
                                   img.frequency_axis.frequency(np.arange(3.0)))
        added = inj.read() - img.read()
    iz, iy, ix = (np.round(np.asarray(first[k])).astype(int) for k in ("z", "y", "x"))
    assert np.all(added[iz, iy, ix] > 0.5 * np.asarray(first["peak_in"]))


def test_line_width_range_and_extended_fraction_are_checked():
    from cianna_jax.astro.completeness import measure_completeness

    with pytest.raises(ValueError, match="line_width_range"):
        measure_completeness("no-such.fits", "no-such.json", line_width_range=(0, 3))
    with pytest.raises(ValueError, match="extended_fraction"):
        measure_completeness("no-such.fits", "no-such.json", extended_fraction=1.5)


def test_injection_needs_a_beam(peak_run, tmp_path):
    fits = pytest.importorskip("astropy.io.fits")
    from cianna_jax.astro.completeness import measure_completeness

    card, _ = peak_run
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
                    ).writeto(tmp_path / "nobeam.fits")
    with pytest.raises(ValueError, match="beam"):
        measure_completeness(tmp_path / "nobeam.fits", card, n_sources=5, progress=False)
