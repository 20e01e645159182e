"""The noise map raised around bright sources (PyBDSF's adaptive_rms_box): where it rises
and where not, the bright sources' own pixels left out, the detector finding fewer
artefacts with it, its settings in the catalogue, and its errors."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro import adaptive_noise as an  # noqa: E402
from cianna_jax.astro.adaptive_noise import (  # noqa: E402
    AdaptiveRms,
    adaptive_beam,
    adaptive_noise_map,
    bright_peaks,
)
from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402

FWHM = 3.0


def _blob(a: np.ndarray, y: float, x: float, amp: float) -> None:
    s = FWHM / (2 * math.sqrt(2 * math.log(2)))
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    a += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))


def _image(artefacts: bool, seed: int = 0) -> np.ndarray:
    """256x256 unit noise, a source of peak 2000 at (128, 128) and, with ``artefacts``, 12
    beam-shaped blobs of +-40 on a ring 15 pixels out."""
    a = np.random.default_rng(seed).normal(0.0, 1.0, (256, 256))
    _blob(a, 128, 128, 2000.0)
    for k, t in enumerate(np.linspace(0, 2 * np.pi, 12, endpoint=False)):
        if artefacts:
            _blob(a, 128 + 15 * np.sin(t), 128 + 15 * np.cos(t), 40.0 * (-1) ** k)
    return a


def _maps(a: np.ndarray, rule: AdaptiveRms | None = None):
    def read(w):
        return a[w]
    base = estimate_noise_map(read, a.shape, box=64)
    return base, adaptive_noise_map(read, a.shape, base, rule or AdaptiveRms(), FWHM)


def test_the_map_rises_where_the_artefacts_are_and_nowhere_else():
    base, ad = _maps(_image(True))
    assert ad.adaptive == {"thresh": 100.0, "box_pixels": 30, "step_pixels": 10,
                           "reach_beams": 30.0, "reach_pixels": 90.0, "bright_sources": 1}
    assert ad.cy[1] - ad.cy[0] == pytest.approx(10.0, abs=0.1) and ad.box == base.box
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ring = ad.at(128 + 15 * np.sin(t), 128 + 15 * np.cos(t))
    assert np.all(ring > 3.0 * base.at(128 + 15 * np.sin(t), 128 + 15 * np.cos(t)))
    # it only rises, and beyond the reach (90 px) and the box's half (15 px) it is the
    # large-box map (on the finer grid)
    fine = base.resampled(ad.cy, ad.cx)
    assert np.all(ad.rms >= fine.rms) and np.array_equal(ad.background, fine.background)
    far = np.hypot(*np.meshgrid(ad.cy - 128, ad.cx - 128, indexing="ij")) > 90 + 16
    assert far.any() and np.array_equal(ad.rms[far], fine.rms[far])
    # the grid's own nodes: the large-box map's values there
    gy, gx = np.meshgrid(ad.cy, ad.cx, indexing="ij")
    np.testing.assert_allclose(fine.rms.ravel(), base.at(gy.ravel(), gx.ravel()), rtol=1e-12)


def test_the_bright_source_itself_is_left_out_of_its_boxes():
    """Without artefacts, the boxes around the source (peak 2000 sigma) stay near the noise:
    its island's pixels are not counted."""
    base, ad = _maps(_image(False))
    near = np.hypot(*np.meshgrid(ad.cy - 128, ad.cx - 128, indexing="ij")) < 40
    ratio = ad.rms[near] / base.resampled(ad.cy, ad.cx).rms[near]
    assert ad.adaptive["bright_sources"] == 1 and ratio.max() < 1.25


def test_no_bright_source_no_change_and_the_settings_in_pixels():
    a = _image(True)
    base, ad = _maps(a, AdaptiveRms(thresh=5000.0))
    assert ad.adaptive["bright_sources"] == 0
    assert np.array_equal(ad.rms, base.resampled(ad.cy, ad.cx).rms)
    _, small = _maps(a, AdaptiveRms(box=12, step=4, reach=10.0))
    assert small.adaptive["box_pixels"] == 12 and small.adaptive["step_pixels"] == 4
    assert small.adaptive["reach_pixels"] == 30.0
    # a huge image's grid is coarser: at most MAX_CELLS cells an axis
    assert AdaptiveRms(step=1).sizes(3.0, (100_000, 10))[1] == math.ceil(100_000 / an.MAX_CELLS)


def test_bright_peaks_one_per_source_brightest_first(monkeypatch):
    a = np.random.default_rng(1).normal(0.0, 1.0, (128, 128))
    _blob(a, 31.6, 40.0, 500.0)  # cut by the 32-pixel blocks below
    _blob(a, 90.0, 100.0, 900.0)
    _blob(a, 60.0, 20.0, 50.0)  # not bright

    def read(w):
        return a[w]
    noise = estimate_noise_map(read, a.shape, box=64)
    monkeypatch.setattr(an, "_BLOCK", 32)
    p = bright_peaks(read, a.shape, noise, 100.0, merge_radius=3.0)
    np.testing.assert_allclose(p[:, :2], [[90, 100], [32, 40]], atol=1)
    assert p[0, 2] > p[1, 2] > 100


@pytest.mark.filterwarnings("ignore::UserWarning")  # (headers without WCS, unit, beam)
def test_bad_settings_and_images_are_refused(tmp_path):
    for kw, what in (({"thresh": 3.0}, "thresh"), ({"thresh": True}, "thresh"),
                     ({"box": 0}, "box"), ({"step": float("nan")}, "step"),
                     ({"reach": -1.0}, "reach")):
        with pytest.raises(ValueError, match=what):
            AdaptiveRms(**kw)
    a = _image(True)
    base, ad = _maps(a)
    with pytest.raises(ValueError, match="already"):
        adaptive_noise_map(lambda w: a[w], a.shape, ad, AdaptiveRms(), FWHM)
    with pytest.raises(ValueError, match="shape"):
        adaptive_noise_map(lambda w: a[w], (128, 256), base, AdaptiveRms(), FWHM)
    with pytest.raises(ValueError, match="no beam"):
        adaptive_noise_map(lambda w: a[w], a.shape, base, AdaptiveRms(), None)
    with pytest.raises(ValueError, match="2D"):
        adaptive_noise_map(lambda w: a[w], (2,) + a.shape, base, AdaptiveRms(), FWHM)
    fits.PrimaryHDU(a.astype(np.float32)).writeto(tmp_path / "nobeam.fits")
    fits.PrimaryHDU(np.zeros((2, 8, 8), np.float32)).writeto(tmp_path / "cube.fits")
    with open_image(tmp_path / "nobeam.fits") as img, pytest.raises(ValueError, match="no beam"):
        adaptive_beam(AdaptiveRms(), img)
    with open_image(tmp_path / "cube.fits") as img, pytest.raises(ValueError, match="2D"):
        adaptive_beam(AdaptiveRms(), img)
    with open_image(tmp_path / "cube.fits") as img, pytest.raises(TypeError, match="Adaptive"):
        adaptive_beam(True, img)


@pytest.fixture(scope="module")
def artefact_field(tmp_path_factory):
    """A 256x256 field whose two sources of SNR >= 300 carry 1% sidelobes, its truth and a
    5-sigma peak finder."""
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, with_artefacts, write_fits

    from .conftest import make_peak_detector

    folder = tmp_path_factory.mktemp("adaptive")
    f = with_artefacts(synthetic_field(256, seed=5, density=0.002, snr_range=(3.0, 1e5)),
                       level=0.01, min_snr=300, seed=1)
    write_fits(folder / "a.fits", f)
    truth = truth_table(f)
    truth.write(folder / "truth.ecsv")
    return folder, str(folder / "a.fits"), truth, make_peak_detector(folder, 5.0)


def _false_and_real(t, truth):
    from cianna_jax.astro.crossmatch import crossmatch_pixels

    m = crossmatch_pixels(np.asarray(t["x"]), np.asarray(t["y"]), np.asarray(truth["x"]),
                          np.asarray(truth["y"]), 3.0)
    real = np.zeros(len(t), bool)
    real[m.det] = True
    near = np.asarray(t["near_bright"], bool)
    return int(np.sum(~real & near)), int(np.sum(real))


def test_the_detector_finds_fewer_artefacts_with_it(artefact_field):
    from cianna_jax.astro.pipeline import find_sources

    folder, path, truth, model = artefact_field
    plain = find_sources(path, model, progress=False).table
    t = find_sources(path, model, progress=False, adaptive_rms=AdaptiveRms()).table
    (f0, r0), (f1, r1) = _false_and_real(plain, truth), _false_and_real(t, truth)
    assert f0 >= 10 and f1 <= 0.7 * f0 and r1 >= r0 - 2
    assert t.meta["adaptive_rms"]["bright_sources"] == 2 and "adaptive_rms" not in plain.meta
    # the sources' SNRs are against the raised map: lower near bright sources only
    assert t.meta["adaptive_rms"]["reach_pixels"] == 90.0
    with pytest.raises(TypeError, match="AdaptiveRms"):
        find_sources(path, model, progress=False, adaptive_rms=True)


def test_predict_and_val_take_it_from_the_command_line(artefact_field, capsys):
    from astropy.table import Table

    from cianna_jax.cli import main

    folder, path, truth, model = artefact_field
    out, rms = folder / "c.ecsv", folder / "rms.fits"
    assert main(["predict", "--model", model, "--image", path, "--out", str(out), "--quiet",
                 "--rms-box-bright", "20,5", "--bright-radius", "20", "--rms-map",
                 str(rms)]) == 0
    meta = Table.read(out).meta["adaptive_rms"]
    assert (meta["box_pixels"], meta["step_pixels"], meta["reach_beams"]) == (20, 5, 20.0)
    assert meta["thresh"] == 100.0
    # the rms map written is the one the sources were found with: it rises near the
    # artefacts (the brightest source's surroundings) and not far from them
    r = fits.getdata(rms)
    t = Table.read(out)
    b = int(np.argmax(t["snr"]))
    y, x = int(round(t["y"][b])), int(round(t["x"][b]))
    assert r[max(0, y - 10):y + 11, max(0, x - 10):x + 11].max() > 2 * np.median(r)
    assert main(["predict", "--model", model, "--image", path, "--out", str(out), "--quiet",
                 "--rms-box-bright", "20,5,1"]) == 2
    assert "--rms-box-bright" in capsys.readouterr().err
    assert main(["predict", "--model", model, "--image", path, "--out", str(out), "--quiet",
                 "--adaptive-thresh", "2"]) == 2
    assert "thresh" in capsys.readouterr().err
    assert main(["val", "--model", model, "--image", path, "--catalogue",
                 str(folder / "truth.ecsv"), "--out", str(folder / "val"), "--quiet",
                 "--no-plots", "--adaptive-rms"]) == 0
    assert Table.read(folder / "val" / "catalogue.ecsv").meta["adaptive_rms"][
        "bright_sources"] == 2
    # source injection measures the completeness of such a catalogue with the same map
    assert main(["inject", "--model", model, "--image", path, "--out", str(folder / "inj"),
                 "--quiet", "--no-plots", "--sources", "12", "--adaptive-rms"]) == 0
    assert Table.read(folder / "inj" / "catalogue.ecsv").meta["adaptive_rms"][
        "bright_sources"] == 2
    inj = json.loads((folder / "inj" / "injection.json").read_text())
    assert inj["adaptive_rms"]["bright_sources"] == 2
    # counts warn when the catalogue and the injection differ in it
    from cianna_jax.astro.source_counts import count_catalogue

    assert main(["predict", "--model", model, "--image", path, "--out", str(out),
                 "--quiet"]) == 0
    with pytest.warns(UserWarning, match="without --adaptive-rms"):
        count_catalogue(out, image=path, completeness=folder / "inj")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        count_catalogue(folder / "inj" / "catalogue.ecsv", image=path,
                        completeness=folder / "inj")
