"""The primary beam: its models and images, catalogues' fluxes corrected for it (predict,
val), training labels seen through it, the simulator's attenuated fields and the
refusals."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro import primary_beam as pbm  # noqa: E402
from cianna_jax.astro.catalogue import make_table, read_catalogue, write_catalogue  # noqa: E402
from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.astro.pipeline import find_sources  # noqa: E402
from cianna_jax.astro.primary_beam import (  # noqa: E402
    BeamModel,
    finding_beam,
    pb_response,
    primary_beam,
)
from cianna_jax.astro.synthetic import (  # noqa: E402
    primary_beam_map,
    synthetic_field,
    truth_table,
    write_fits,
    write_primary_beam,
)
from cianna_jax.cli import main  # noqa: E402

from .conftest import make_peak_detector  # noqa: E402

FWHM_ARCMIN = 1.6  # a 128-pixel field of 0.6" pixels reaches responses of ~0.4 at its corners


@pytest.fixture(scope="module")
def beamed(tmp_path_factory):
    """A field seen through a Gaussian primary beam (bright point sources), its beam image,
    truth and a peak detector; returns a dict of paths and objects."""
    d = tmp_path_factory.mktemp("pb")
    f = synthetic_field(128, seed=4, density=0.003, snr_range=(300.0, 3000.0),
                        extended_fraction=0.0, pb_fwhm=FWHM_ARCMIN)
    write_fits(d / "f.fits", f)
    write_primary_beam(d / "pb.fits", f)
    t = truth_table(f)
    write_catalogue(t, d / "truth.ecsv")
    return {"image": str(d / "f.fits"), "pb": str(d / "pb.fits"), "truth": t,
            "truth_path": str(d / "truth.ecsv"), "field": f, "dir": d,
            "model": make_peak_detector(d, 8.0)}


def test_models_reach_half_power_at_half_their_width():
    for kind in ("gaussian", "cosine"):
        m = BeamModel(kind, 10.0)
        np.testing.assert_allclose(m.at_radius(np.array([0.0, 5.0]), 10.0), [1.0, 0.5],
                                   atol=2e-3)
    cos = BeamModel("cosine", 10.0)  # its removable singularity (1.189 r / FWHM = 1/2)
    r = 10.0 / (2 * 1.189)
    near = cos.at_radius(np.array([r - 1e-6, r, r + 1e-6]), 10.0)
    np.testing.assert_allclose(near, (math.pi / 4) ** 2, rtol=1e-5)
    assert np.all(np.diff(cos.at_radius(np.linspace(0, 12.5, 50), 10.0)) < 0)
    assert np.isnan(cos.at_radius(np.array([12.7, 30.0]), 10.0)).all()  # beyond its first null


def test_meerkat_scales_with_the_image_frequency(beamed):
    with open_image(beamed["image"]) as img:  # 560 MHz
        assert BeamModel("cosine").fwhm_for(img) == pytest.approx(57.5 * 1.5e9 / 560e6)
        h = img.header.copy()
    for key in ("RESTFREQ", "RESTFRQ", "FREQ", "OBSFREQ"):
        h.remove(key, ignore_missing=True)
    from astropy.io import fits

    path = beamed["dir"] / "nofreq.fits"
    fits.PrimaryHDU(np.zeros((16, 16), np.float32), h).writeto(path, overwrite=True)
    with open_image(path) as img, pytest.raises(ImageError, match="frequency"):
        pb_response(primary_beam("meerkat"), img, np.zeros(1), np.zeros(1))


def test_the_beam_image_and_the_model_agree_with_the_simulator(beamed):
    t = beamed["truth"]
    x, y = np.asarray(t["x"]), np.asarray(t["y"])
    with open_image(beamed["image"]) as img:
        from_image = pb_response(primary_beam(beamed["pb"]), img, x, y)
        from_model = pb_response(primary_beam(f"gaussian:{FWHM_ARCMIN}"), img, x, y)
    np.testing.assert_allclose(from_image, t["pb"], atol=1e-4)  # bilinear on a smooth beam
    np.testing.assert_allclose(from_model, t["pb"], atol=1e-4)  # sky vs pixel distances
    assert t["pb"].min() < 0.6
    np.testing.assert_allclose(primary_beam_map(beamed["field"])[64, 64], 1.0, atol=1e-3)


def test_bilinear_sampling_through_another_grid(tmp_path, beamed, monkeypatch):
    """A beam on a coarser grid of its own WCS: a plane in its pixels is sampled exactly;
    outside it, and next to a blank pixel, the response is not known (NaN)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with open_image(beamed["image"]) as img:
        w = img.wcs.deepcopy()
    w.wcs.cdelt = w.wcs.cdelt * 2
    w.wcs.crpix = [20.5, 20.5]
    jj, ii = np.mgrid[0:40, 0:40]
    plane = (0.3 + 0.01 * ii + 0.005 * jj).astype(np.float32)
    plane[30, 30] = np.nan
    fits.PrimaryHDU(plane, w.to_header()).writeto(tmp_path / "pb.fits")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(30, 98, 300), rng.uniform(30, 98, 300)  # on the beam's grid
    beam = primary_beam(str(tmp_path / "pb.fits"))
    with open_image(beamed["image"]) as img:
        got = pb_response(beam, img, x, y)
        px, py = WCS(w.to_header()).celestial.world_to_pixel_values(
            *img.wcs.pixel_to_world_values(x, y))
        monkeypatch.setattr(pbm, "WINDOW_PIXELS", 1)  # each source's 2x2 pixels read alone
        one_by_one = pb_response(beam, img, x, y)
        off = pb_response(beam, img, np.array([-500.0]), np.array([0.0]))
    near_blank = (np.abs(px - 30) < 1) & (np.abs(py - 30) < 1)
    np.testing.assert_allclose(got[~near_blank], (0.3 + 0.01 * px + 0.005 * py)[~near_blank],
                               rtol=1e-6)
    assert np.all(np.isnan(got[near_blank])) and near_blank.any()
    np.testing.assert_array_equal(one_by_one, got)
    assert np.isnan(off[0])


def test_catalogue_fluxes_are_corrected(beamed):
    plain = find_sources(beamed["image"], beamed["model"], progress=False).table
    res = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=beamed["pb"])
    cut = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=f"gaussian:{FWHM_ARCMIN}", pb_min=0.7)
    c, t = res.table, beamed["truth"]
    assert len(c) == len(plain) >= 8
    d = np.hypot(np.asarray(c["x"])[:, None] - t["x"], np.asarray(c["y"])[:, None] - t["y"])
    j = d.argmin(1)
    good = (d[np.arange(len(c)), j] < 1.0) & (np.asarray(c["snr"]) > 20) & c["fit_ok"]
    assert good.sum() >= 20  # (fainter detections: the peak detector's fragments)
    ratio = np.asarray(c["flux"])[good] / np.asarray(t["flux"])[j[good]]
    assert abs(np.median(ratio) - 1) < 0.03  # true fluxes back
    np.testing.assert_allclose(c["pb"][good], t["pb"][j[good]], atol=0.01)
    assert np.ptp(t["pb"][j[good]]) > 0.3
    by_row = {(round(a, 6), round(b, 6)): k for k, (a, b) in enumerate(zip(plain["x"],
                                                                          plain["y"]))}
    k = [by_row[(round(a, 6), round(b, 6))] for a, b in zip(c["x"], c["y"])]
    for col in ("flux", "flux_err", "peak", "peak_err", "rms"):
        np.testing.assert_allclose(c[col], np.asarray(plain[col])[k] / c["pb"], rtol=1e-6)
    np.testing.assert_array_equal(c["snr"], np.asarray(plain["snr"])[k])
    assert np.all(np.diff(c["flux"]) <= 0)  # ordered by the true flux
    assert c.meta["primary_beam"] == "image pb.fits" and c.meta["pb_left_out"] == 0
    assert 0 < len(cut.table) < len(c) and np.all(cut.table["pb"] >= 0.7)
    assert cut.table.meta["pb_left_out"] == len(c) - len(cut.table)


def test_val_scores_true_fluxes_on_the_beam_area(beamed, tmp_path):
    from cianna_jax.astro.validate import validate

    rep = validate(beamed["image"], beamed["model"], beamed["truth_path"], tmp_path / "v",
                   plots=False, progress=False, primary_beam=beamed["pb"], pb_min=0.5)
    truth = read_catalogue(tmp_path / "v" / "truth_matched.ecsv")
    assert len(truth) == int(np.sum(beamed["truth"]["pb"] >= 0.5))
    ratio = float(re.search(r"flux ratio \(measured/true\) median ([0-9.]+)", rep.text)[1])
    assert 0.95 < ratio < 1.05


def test_val_puts_compared_catalogues_through_the_beam(beamed, tmp_path):
    """Another finder's catalogue scored against true fluxes: left out where the truth is
    (below pb_min), its fluxes divided by the response when measured on the image as it
    is; predict --pb's own catalogue (its pb column) taken as it is."""
    import json

    from cianna_jax.astro.validate import validate

    found = find_sources(beamed["image"], beamed["model"], progress=False).table
    write_catalogue(found, tmp_path / "apparent.ecsv")
    corrected = find_sources(beamed["image"], beamed["model"], progress=False,
                             primary_beam=beamed["pb"]).table
    write_catalogue(corrected, tmp_path / "corrected.ecsv")
    cats = {"apparent": tmp_path / "apparent.ecsv", "ours": tmp_path / "corrected.ecsv"}
    ratios = {}
    for divide in (False, True):
        validate(beamed["image"], beamed["model"], beamed["truth_path"], tmp_path / "v",
                 plots=False, progress=False, primary_beam=beamed["pb"], pb_min=0.5,
                 compare=cats, compare_apparent=divide)
        scores = json.loads((tmp_path / "v" / "scores.json").read_text())
        entry = scores["compare"]
        ratios[divide] = {k: entry[k]["scores"]["flux_ratio"] for k in cats}
        outside = np.asarray(corrected["pb"]) < 0.5
        assert entry["ours"]["n_outside_beam"] == int(outside.sum()) > 0
        for k in ("n_det", "n_tp", "n_fp", "flux_ratio"):  # scored as the detector's own
            assert entry["ours"]["scores"][k] == pytest.approx(scores["scores"][k])
        assert scores["scores"]["n_det"] == int((~outside).sum())
    assert ratios[False]["apparent"] < 0.9  # apparent fluxes against true ones
    for divide in (False, True):
        assert ratios[divide]["ours"] == pytest.approx(1.0, abs=0.05)
    assert ratios[True]["apparent"] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="compare_apparent"):
        validate(beamed["image"], beamed["model"], beamed["truth_path"], tmp_path / "w",
                 compare=cats, compare_apparent=True, plots=False, progress=False)


def test_training_labels_see_the_beam(beamed):
    from cianna_jax.astro.labels import read_training_catalogue
    from cianna_jax.astro.trainer import TrainSettings, _seen_through_beam

    with open_image(beamed["image"]) as img:
        labels = read_training_catalogue(beamed["truth_path"], img)
        seen = _seen_through_beam(labels, img, beamed["pb"])
        model = pb_response(BeamModel("gaussian", FWHM_ARCMIN), img, labels.x, labels.y)
    assert len(seen) == len(labels) > 5 and model.min() < 0.7
    np.testing.assert_allclose(seen.flux, labels.flux * model, rtol=1e-3)
    with pytest.raises(FileNotFoundError, match="pb"):
        TrainSettings(image="a", catalogue="b", out="c", primary_beam="nope.fits").check()


def test_refusals(beamed, tmp_path):
    img, mdl = beamed["image"], beamed["model"]
    for spec, err in (("gaussian:-1", ValueError), ("gaussian:0", ValueError),
                      ("gauss:3", FileNotFoundError), (3.0, TypeError)):
        with pytest.raises(err, match="pb"):
            primary_beam(spec)
    with pytest.raises(ValueError, match="pb_centre"):
        primary_beam(beamed["pb"], centre=(1.0, 2.0))
    with pytest.raises(ValueError, match="pb_centre"):
        primary_beam("meerkat", centre=(0.0, 95.0))
    for bad in (0.0, 1.5, "x", True):
        with pytest.raises(ValueError, match="pb_min"):
            finding_beam("meerkat", bad)
    with pytest.raises(ValueError, match="needs primary_beam"):
        find_sources(img, mdl, progress=False, pb_min=0.2)
    from cianna_jax.astro.synthetic import synthetic_field as sf

    nowcs = tmp_path / "nowcs.fits"
    write_fits(nowcs, sf(64, seed=1, wcs=False))
    with pytest.raises(ImageError, match="WCS"):
        find_sources(str(nowcs), mdl, progress=False, primary_beam="gaussian:5")
    with pytest.raises(ImageError, match="shape"):
        find_sources(str(nowcs), mdl, progress=False, primary_beam=beamed["pb"])
    from astropy.io import fits

    with fits.open(beamed["pb"]) as h:
        fits.PrimaryHDU(h[0].data * 100, h[0].header).writeto(tmp_path / "percent.fits")
    with pytest.raises(ImageError, match="percent"):
        find_sources(img, mdl, progress=False, primary_beam=str(tmp_path / "percent.fits"))


def test_the_command_lines(tmp_path, beamed, capsys):
    f, pb, t = tmp_path / "f.fits", tmp_path / "pb.fits", tmp_path / "t.ecsv"
    assert main(["simulate", "--out", str(f), "--truth", str(t), "--size", "128", "--seed",
                 "4", "--pb-fwhm", "1.6", "--pb-out", str(pb), "--sdc1-layout"]) == 0
    assert "primary beam (FWHM 1.6 arcmin)" in capsys.readouterr().out
    assert "pb" in read_catalogue(t).colnames
    from astropy.io import fits

    assert fits.getdata(pb).shape == (1, 1, 128, 128)  # SDC1's 4D layout, as its beam files
    assert fits.getdata(pb).max() == pytest.approx(1.0, abs=1e-3)
    with open_image(f) as img:  # the 4D beam read through its WCS
        np.testing.assert_allclose(pb_response(primary_beam(str(pb)), img, read_catalogue(t)["x"],
                                               read_catalogue(t)["y"]),
                                   read_catalogue(t)["pb"], atol=1e-4)
    out = tmp_path / "c.ecsv"
    assert main(["predict", "--model", beamed["model"], "--image", beamed["image"], "--out",
                 str(out), "--pb", "gaussian:1.6", "--pb-min", "0.6", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "primary beam: gaussian model, FWHM 1.6 arcmin" in said and "below 0.6" in said
    assert np.all(read_catalogue(out)["pb"] >= 0.6)
    for argv, what in ((["predict", "--model", beamed["model"], "--image", beamed["image"],
                         "--out", str(out), "--pb-min", "0.3"], "options of --pb"),
                       (["simulate", "--out", str(f), "--pb-out", str(pb)], "--pb-fwhm"),
                       (["simulate", "--out", str(f), "--cube", "--pb-fwhm", "3"], "cube")):
        assert main(argv) == 2
        assert what in capsys.readouterr().err


def test_injection_completeness_is_by_true_flux(beamed):
    """Injected sources drawn as the image shows them, their fluxes then the true ones:
    found ones measure them back; the same draws without the beam differ by its response;
    with pb_min, those injected below it are not found (the area the catalogue covers)."""
    from cianna_jax.astro.completeness import measure_completeness

    kw = dict(n_sources=30, separation=5.0, snr_range=(30.0, 60.0), seed=2, progress=False)
    plain = measure_completeness(beamed["image"], beamed["model"], **kw).table
    res = measure_completeness(beamed["image"], beamed["model"], primary_beam=beamed["pb"],
                               pb_min=0.6, **kw)
    t = res.table
    np.testing.assert_allclose(t["flux_in"] * t["pb"], plain["flux_in"], rtol=1e-9)
    assert np.ptp(t["pb"]) > 0.3
    found = np.asarray(t["found"], bool) & ~np.asarray(t["near_source"], bool)
    high = found & (np.asarray(t["pb"]) >= 0.6)
    assert high.sum() >= 10
    ratio = np.asarray(t["flux_out"])[high] / np.asarray(t["flux_in"])[high]
    assert abs(np.median(ratio) - 1) < 0.05
    assert not np.any(found & (np.asarray(t["pb"]) < 0.58))  # (measured vs drawn position)
    assert res.settings["pb_min"] == 0.6 and "pb.fits" in res.settings["primary_beam"]


def test_forced_measurements_follow_a_corrected_catalogue(beamed, tmp_path):
    """Stokes Q, U images of the same pointing, seen through the same beam: a corrected
    catalogue's Q fluxes and fractions come out true (its pb column divides them too)."""
    from cianna_jax.astro.crossmatch import crossmatch_pixels
    from cianna_jax.astro.polarisation import polarisation

    kw = dict(seed=4, density=0.003, snr_range=(300.0, 3000.0), extended_fraction=0.0,
              pb_fwhm=FWHM_ARCMIN, pol_fraction=(0.3, 0.02))
    paths = {}
    for s in ("Q", "U"):
        f = synthetic_field(128, stokes=s, **kw)
        paths[s] = str(tmp_path / f"{s}.fits")
        write_fits(paths[s], f)
    tq = truth_table(synthetic_field(128, stokes="Q", **kw))
    cat = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=beamed["pb"]).table
    cat = cat[(np.asarray(cat["snr"]) > 50) & cat["fit_ok"]]
    pol = polarisation(cat, paths["Q"], paths["U"])
    m = crossmatch_pixels(np.asarray(cat["x"]), np.asarray(cat["y"]), np.asarray(tq["x"]),
                          np.asarray(tq["y"]), 1.0)
    low = np.asarray(cat["pb"])[m.det] < 0.8
    assert low.sum() >= 5
    q_ratio = np.asarray(pol["q_flux"])[m.det] / np.asarray(tq["flux"])[m.truth]
    assert abs(np.median(q_ratio[low]) - 1) < 0.05
    np.testing.assert_allclose(np.median(np.asarray(pol["pol_frac"])[m.det][low]), 0.3,
                               atol=0.03)
    assert "primary beam" in pol.meta["primary_beam"]


def test_variability_forces_true_fluxes(beamed):
    """A source missing from a corrected epoch's catalogue is measured on that epoch's image
    and divided by the response found at the other epoch."""
    from cianna_jax.astro.variability import variability

    cat = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=beamed["pb"]).table
    cat = cat[(np.asarray(cat["snr"]) > 50) & cat["fit_ok"]]
    k = int(np.argmin(cat["pb"]))  # the faintest response's source, missing at epoch 2
    assert cat["pb"][k] < 0.7
    second = cat[np.arange(len(cat)) != k]
    t = variability([cat, second], images=[None, beamed["image"]])
    row = np.flatnonzero(np.asarray(t["forced_2"], bool))
    assert row.size == 1
    assert t["flux_2"][row[0]] == pytest.approx(cat["flux"][k], rel=0.05)
    assert "primary beam" in t.meta["primary_beam"]


def test_counts_ask_for_the_beam_s_completeness(beamed, tmp_path):
    from cianna_jax.astro.source_counts import count_catalogue

    cat = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=beamed["pb"]).table
    write_catalogue(cat, tmp_path / "c.ecsv")
    with pytest.warns(UserWarning, match="inject --pb"):
        counts = count_catalogue(tmp_path / "c.ecsv", image=beamed["image"])
    assert counts.n.sum() == np.count_nonzero(np.asarray(cat["flux"]) > 0)


def test_visibility_areas(beamed, tmp_path):
    """The fraction of the image a true peak would be seen on: through the beam, the pixels
    where peak x A reaches 5 local rms (a step without a beam); counts over it."""
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.source_counts import count_catalogue
    from cianna_jax.astro.visibility import visibility

    with open_image(beamed["image"]) as img:
        noise = estimate_noise_map(img.read, img.shape)
        flat = visibility(img, snr=5.0, noise=noise)
        seen = visibility(img, snr=5.0, noise=noise, primary_beam=primary_beam(beamed["pb"]),
                          pb_min=0.5, max_samples=4096)
        rms = float(np.median(noise.rms)) * img.unit_scale
    np.testing.assert_allclose(flat.fraction(np.array([3 * rms, 8 * rms])), [0.0, 1.0])
    a = primary_beam_map(beamed["field"])[1::2, 1::2]  # (the sampled grid: step 2, from 1)
    for peak in (6 * rms, 8 * rms, 20 * rms):
        expected = np.mean((a >= 0.5) & (peak * a >= 5 * rms))
        assert float(seen.fraction(np.array([peak]))[0]) == pytest.approx(expected, abs=0.08)
    assert seen.fraction(np.array([1e3]))[0] == pytest.approx(np.mean(a >= 0.5), abs=0.05)
    cat = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=beamed["pb"], pb_min=0.5).table
    write_catalogue(cat, tmp_path / "c.ecsv")
    c = count_catalogue(tmp_path / "c.ecsv", image=beamed["image"], visibility_snr=5.0,
                        primary_beam=beamed["pb"], pb_min=0.5)
    assert c.n.sum() == np.count_nonzero(np.asarray(cat["snr"]) >= 5)
    assert np.all(c.n_corrected[c.n > 0] >= c.n[c.n > 0])
    with pytest.raises(ValueError, match="visibility_snr"):
        count_catalogue(tmp_path / "c.ecsv", image=beamed["image"], visibility_snr=5.0,
                        completeness=tmp_path)
    with pytest.raises(ValueError, match="for the visibility area"):
        count_catalogue(tmp_path / "c.ecsv", image=beamed["image"], primary_beam=beamed["pb"])


def test_spectral_index_limits_through_the_beam(beamed):
    from cianna_jax.astro.spectral_index import flux_limits

    t = beamed["truth"]
    ra, dec = np.asarray(t["ra"]), np.asarray(t["dec"])
    plain = flux_limits(beamed["image"], ra, dec)
    true = flux_limits(beamed["image"], ra, dec, primary_beam=f"gaussian:{FWHM_ARCMIN}")
    ok = np.isfinite(plain)
    assert ok.sum() > 10
    np.testing.assert_allclose(true[ok], plain[ok] / np.asarray(t["pb"])[ok], rtol=1e-3)


def test_counts_warn_of_an_injection_made_without_the_beam(beamed, tmp_path):
    import json

    from cianna_jax.astro.source_counts import count_catalogue

    cat = find_sources(beamed["image"], beamed["model"], progress=False,
                       primary_beam=beamed["pb"]).table
    write_catalogue(cat, tmp_path / "c.ecsv")
    inj = tmp_path / "inj"
    inj.mkdir()
    write_catalogue(make_table({"flux_min": [1e-5, 1e-4], "flux_max": [1e-4, 1e-2],
                                "completeness": [0.5, 1.0]}), inj / "completeness_by_flux.ecsv")
    (inj / "injection.json").write_text(json.dumps({"n_sources": 10}))
    with pytest.warns(UserWarning, match="without 'inject --pb'"):
        count_catalogue(tmp_path / "c.ecsv", image=beamed["image"], completeness=inj)
    (inj / "injection.json").write_text(json.dumps({"primary_beam": "image pb.fits"}))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        count_catalogue(tmp_path / "c.ecsv", image=beamed["image"], completeness=inj)


def test_a_cube_seen_through_a_beam_that_narrows_with_frequency(tmp_path):
    """A line cube attenuated by a Gaussian beam whose width scales as 1 / frequency: its
    lines' fluxes come back with --pb (the response at each line's position and channel),
    and fall short by it without."""
    from astropy.io import fits

    from cianna_jax.astro.synthetic_cube import cube_truth_table

    from .conftest import make_peak_detector_3d, write_line_cube

    path, sc = write_line_cube(tmp_path, seed=5, density=0.0008)
    with open_image(path) as img:
        beam = BeamModel("gaussian", 1.2 * img.shape[-1] * img.pixel_scale / 60)
        k, yy, xx = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in img.shape),
                                indexing="ij")
        a = pb_response(beam, img, xx.ravel(), yy.ravel(), k.ravel()).reshape(img.shape)
        ends = beam.fwhm_for(img, img.frequency_axis.frequency(np.array([0.0, 39.0])))
    assert ends[0] / ends[1] == pytest.approx(img.frequency_axis.frequency(np.array([39.0]))[0]
                                              / img.frequency_axis.frequency(np.array([0.0]))[0])
    with fits.open(path) as h:
        fits.PrimaryHDU((h[0].data * a.reshape(h[0].data.shape)).astype(np.float32),
                        h[0].header).writeto(tmp_path / "a.fits")
    model = make_peak_detector_3d(tmp_path, 8.0)
    plain = find_sources(str(tmp_path / "a.fits"), model, progress=False).table
    t = find_sources(str(tmp_path / "a.fits"), model, progress=False, primary_beam=beam).table
    truth = cube_truth_table(sc)
    assert len(t) == len(plain) >= 3 and np.all((t["pb"] > 0.3) & (t["pb"] < 1.0))
    near = np.hypot(np.asarray(t["x"])[:, None] - truth["x"], np.asarray(t["y"])[:, None]
                    - truth["y"]).argmin(1)
    ratio = np.asarray(t["line_flux"]) / np.asarray(truth["line_flux"])[near]
    seen = np.asarray(plain["line_flux"]) / np.asarray(truth["line_flux"])[np.hypot(
        np.asarray(plain["x"])[:, None] - truth["x"],
        np.asarray(plain["y"])[:, None] - truth["y"]).argmin(1)]
    assert abs(np.median(ratio) - 1) < 0.1  # true line fluxes back
    assert np.median(seen) < np.median(ratio) - 0.1  # (attenuated without)
    from cianna_jax.astro.validate import validate

    write_catalogue(truth, tmp_path / "truth.ecsv")
    rep = validate(str(tmp_path / "a.fits"), model, tmp_path / "truth.ecsv", tmp_path / "v",
                   plots=False, progress=False, primary_beam=beam, log=lambda *a: None)
    assert rep.scores.n_truth >= 3 and rep.scores.recall > 0.5


def test_visibility_uses_the_noise_box_predict_used(tmp_path):
    """Noise of rms 1 on the left half, 3 on the right: in 16-pixel boxes a peak of 8 is
    seen on the left half (less the 5 columns where the map blends the halves); one box over
    the whole image blends them (rms ~2, threshold ~10: seen nowhere). counts takes the catalogue's recorded box (``predict`` writes its
    model's) unless told another."""
    from astropy.io import fits

    from cianna_jax.astro.source_counts import count_catalogue
    from cianna_jax.astro.visibility import visibility

    rng = np.random.default_rng(0)
    data = rng.normal(size=(128, 128)).astype(np.float32)
    data[:, 64:] *= 3.0
    path = tmp_path / "halves.fits"
    h = fits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "CRVAL1": 150.0,
                     "CRVAL2": 2.0, "CRPIX1": 64.5, "CRPIX2": 64.5, "CDELT1": -1 / 3600,
                     "CDELT2": 1 / 3600, "CUNIT1": "deg", "CUNIT2": "deg", "BUNIT": "Jy/beam",
                     "BMAJ": 4 / 3600, "BMIN": 4 / 3600, "BPA": 0.0})
    fits.PrimaryHDU(data, h).writeto(path)
    with open_image(path) as img:
        local = visibility(img, snr=5.0, noise_box=16)
        whole = visibility(img, snr=5.0, noise_box=128)
    assert 0.43 < float(local.fraction(np.array([8.0]))[0]) <= 0.5
    assert float(whole.fraction(np.array([8.0]))[0]) < 0.05
    cat = make_table({"flux": [8.0, 8.0, 30.0], "snr": [8.0, 8.0, 10.0]},
                     meta={"noise_box": 16})
    write_catalogue(cat, tmp_path / "c.ecsv")
    counts = [count_catalogue(tmp_path / "c.ecsv", image=path, area_deg2=None,
                              visibility_snr=5.0, noise_box=box).n_corrected
              for box in (None, 16, 128)]
    np.testing.assert_array_equal(counts[0], counts[1])
    seen = float(local.fraction(np.array([8.0]))[0])
    assert counts[0][0] == pytest.approx(2 / seen, rel=0.02)  # the faint two over half
    assert counts[2][0] != pytest.approx(counts[0][0], rel=0.1)
    with pytest.raises(ValueError, match="noise_box: for the visibility area"):
        count_catalogue(tmp_path / "c.ecsv", image=path, noise_box=16)


def test_a_beam_cube_is_read_between_its_planes(tmp_path):
    """A beam cube on every fourth channel of a line cube (a Gaussian narrowing as
    1 / frequency): read at the lines' channels by linear interpolation in frequency, it
    agrees with the model; a 2D image reads it at its own frequency; a frequency beyond its
    planes (more than half a channel) is not known; a cube of planes without a frequency
    axis is refused."""
    from astropy.io import fits

    from .conftest import write_line_cube

    path, _ = write_line_cube(tmp_path, seed=5, density=0.0008)
    with open_image(path) as img:
        beam = BeamModel("gaussian", 1.2 * img.shape[-1] * img.pixel_scale / 60)
        D, H, W = img.shape
        kk = np.arange(0, D, 4)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        planes = np.stack([pb_response(beam, img, xx.ravel(), yy.ravel(),
                                       np.full(H * W, float(k))).reshape(H, W) for k in kk])
        rng = np.random.default_rng(1)
        x, y = rng.uniform(0, W - 1, 200), rng.uniform(0, H - 1, 200)
        z = rng.uniform(0, kk[-1], 200)
        expected = pb_response(beam, img, x, y, z)
        hz = img.frequency_axis.frequency(np.array([10.0, kk[-1] + 3.0]))
    h = fits.getheader(path)
    h["CDELT3"], h["CRPIX3"] = 4 * h["CDELT3"], 1 - (1 - h["CRPIX3"]) / 4
    fits.PrimaryHDU(planes.astype(np.float32), h).writeto(tmp_path / "pbcube.fits")
    cube_beam = primary_beam(str(tmp_path / "pbcube.fits"))
    with open_image(path) as img:
        got = pb_response(cube_beam, img, x, y, z)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert np.ptp(expected) > 0.3
    flat = fits.Header({k: h[k] for k in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1",
                                          "CRPIX2", "CDELT1", "CDELT2", "BUNIT", "BMAJ", "BMIN")})
    for f, known in ((hz[0], True), (hz[1], False)):
        flat["RESTFRQ"] = f
        fits.PrimaryHDU(np.zeros((H, W), np.float32), flat).writeto(tmp_path / "im.fits",
                                                                    overwrite=True)
        with open_image(tmp_path / "im.fits") as im:
            at = pb_response(cube_beam, im, x[:5], y[:5])
            with open_image(path) as img:
                ref = pb_response(beam, img, x[:5], y[:5], np.full(5, 10.0))
        if known:
            np.testing.assert_allclose(at, ref, atol=2e-3)
        else:
            assert np.isnan(at).all()
    h["CTYPE3"], h["CUNIT3"] = "VRAD", "m/s"  # a velocity without a rest frequency
    for key in ("RESTFRQ", "RESTFREQ"):
        h.remove(key, ignore_missing=True)
    fits.PrimaryHDU(planes.astype(np.float32), h).writeto(tmp_path / "nofreq.fits")
    with open_image(path) as img, pytest.warns(UserWarning, match="no frequency"), \
            pytest.raises(ImageError, match="frequency axis"):
        pb_response(primary_beam(str(tmp_path / "nofreq.fits")), img, x, y, z)
