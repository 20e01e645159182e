"""Cubes end to end: ``simulate --cube`` (an HI-like cube and its line catalogue), the
truth placed in channels, matching in frequency as well as on the sky, and ``val``."""

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("astropy")

from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402

from cianna_jax.astro.catalogue import CatalogueError, read_catalogue  # noqa: E402
from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402
from cianna_jax.astro.truth import load_truth  # noqa: E402
from cianna_jax.astro.validate import match_catalogues  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A small synthetic cube and its truth, written by the command."""
    d = tmp_path_factory.mktemp("cube")
    assert main(["simulate", "--cube", "--out", str(d / "c.fits"), "--truth",
                 str(d / "t.ecsv"), "--size", "48", "--channels", "32", "--density", "0.003",
                 "--noise", "2e-5", "--seed", "2"]) == 0
    return d / "c.fits", d / "t.ecsv"


def test_simulate_writes_a_frequency_cube_and_its_line_catalogue(cube, capsys):
    path, truth = cube
    with fits.open(path) as h:
        data, hd = h[0].data, h[0].header
    assert data.shape == (32, 48, 48) and hd["CTYPE3"] == "FREQ" and hd["BUNIT"] == "JY/BEAM"
    t = read_catalogue(truth)
    assert len(t) >= 3
    assert str(t["freq"].unit) == "Hz" and str(t["w20"].unit) == "km / s"
    assert str(t["line_flux"].unit) == "Hz Jy"
    # the header's frequency axis gives the lines' frequencies
    assert np.asarray(t["freq"]) == pytest.approx(hd["CRVAL3"] + hd["CDELT3"] * np.asarray(t["z"]))
    # the noise is what was asked (most voxels are empty)
    assert np.median(np.abs(data)) / 0.6745 == pytest.approx(2e-5, rel=0.1)
    err = main(["simulate", "--cube", "--out", str(path.parent / "x.fits"), "--nan-border", "2"])
    assert err == 2 and "--nan-border: not an option of --cube" in capsys.readouterr().err
    err = main(["simulate", "--cube", "--out", str(path.parent / "x.fits"), "--channels", "16"])
    assert err == 2 and "16 channels leave no room" in capsys.readouterr().err
    assert not (path.parent / "x.fits").exists()


def _truth(path, table):
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape, box=48)
        return load_truth(table, img, noise, name="t")


def test_truth_in_channels_from_freq_or_z_and_its_snr(cube):
    path, truth = cube
    t = read_catalogue(truth)
    full = _truth(path, t)
    assert full.z == pytest.approx(np.asarray(t["z"]), abs=1e-6)
    assert full.flux == pytest.approx(np.asarray(t["line_flux"]))   # line flux, Jy Hz
    by_freq = _truth(path, t[[c for c in t.colnames if c != "z"]])
    assert by_freq.z == pytest.approx(full.z, abs=1e-6)
    # without an snr column: the true peak from the line flux, w50 and sizes
    computed = _truth(path, t[[c for c in t.colnames if c != "snr"]])
    assert computed.snr / full.snr == pytest.approx(np.ones(len(t)), rel=0.1)
    assert "w50" in computed.snr_from
    mhz = t[[c for c in t.colnames if c != "z"]]
    mhz["freq"] = np.asarray(t["freq"]) / 1e6  # MHz without a unit: no line placed, named
    with pytest.warns(UserWarning, match="fits the band as MHz: give it its unit"):
        assert len(_truth(path, mhz).x) == 0
    with pytest.raises(CatalogueError, match="frequency or channel"):
        _truth(path, t[["ra", "dec", "line_flux", "snr"]])
    with pytest.raises(CatalogueError, match="SNR cannot be known"):
        _truth(path, t[["ra", "dec", "freq"]])


def test_an_sdc2_truth_file_places_the_same_lines(cube, tmp_path):
    """The simulator's truth written as SDC2 text (observed-frame w20, (1 + z) wider in km/s)
    and read back: the same channels and widths in channels as from its ECSV."""
    from cianna_jax.astro.catalogue import write_catalogue

    path, truth = cube
    t = read_catalogue(truth)
    write_catalogue(t, tmp_path / "t.sdc2")
    text = read_catalogue(tmp_path / "t.sdc2")
    z = np.asarray(t["freq"])
    assert np.asarray(text["w20"]) == pytest.approx(
        np.asarray(t["w20"]) * 1420405751.768 / z, rel=1e-6)
    a, b = _truth(path, t), _truth(path, text[[c for c in text.colnames]])
    assert b.z == pytest.approx(a.z, abs=1e-6)
    assert b.w20 == pytest.approx(a.w20, rel=1e-6)
    assert b.flux == pytest.approx(a.flux, rel=1e-6)


def test_lines_match_on_the_sky_and_in_frequency(cube):
    path, truth = cube
    t = read_catalogue(truth)
    tr = _truth(path, t)
    w20 = tr.w20

    def det(shift):  # the truth itself as detections, moved along the spectral axis
        return Table({"ra": t["ra"], "dec": t["dec"], "x": t["x"], "y": t["y"],
                      "z": np.asarray(t["z"]) + shift, "snr": t["snr"]})

    assert match_catalogues(det(0.0), tr, 7.0).n == len(t)
    assert match_catalogues(det(0.4 * w20), tr, 7.0).n == len(t)
    assert match_catalogues(det(0.6 * w20), tr, 7.0).n == 0
    with pytest.raises(CatalogueError, match="channels"):
        match_catalogues(Table({"ra": t["ra"], "dec": t["dec"], "snr": t["snr"]}), tr, 7.0)
    # detections without position errors (lines whose moment-0 fit failed): flux pulls only
    from cianna_jax.astro.validate import scores_for

    d = det(0.0)
    nan = np.full(len(t), np.nan)
    d["ra_err"], d["dec_err"] = nan, nan
    d["line_flux"], d["line_flux_err"] = t["line_flux"], 0.1 * np.asarray(t["line_flux"])
    sc = scores_for(d, tr, match_catalogues(d, tr, 7.0))
    assert set(sc.extra["error_pulls"]) == {"flux"} and sc.flux_ratio == pytest.approx(1.0)
    # the HI sizes from the masses against SDC2's true ones, where the truth's are positive
    from cianna_jax.astro.line_scores import format_line_summary, line_summary

    size = np.asarray(t["hi_size"])
    d["d_hi"] = np.where(size > 0, 1.1 * size, 99.0)
    s = line_summary(d, tr, match_catalogues(d, tr, 7.0))
    assert (size == 0).any() and s["hi_size_ratio"] == pytest.approx(1.1)
    assert s["hi_size_ratio_scatter"] == pytest.approx(0.0, abs=1e-9)
    assert "HI size (d_hi, from the mass) / true hi_size median 1.100" in format_line_summary(s)
    del d["d_hi"]
    s = line_summary(d, tr, match_catalogues(d, tr, 7.0))
    assert np.isnan(s["hi_size_ratio"]) and "HI size" not in format_line_summary(s)
    # the centres' and widths' pulls where the detections have errors: here offsets of
    # +-0.2 channel with errors of 0.1 (and w20s 10% off with errors of 5%): pulls +-2
    sign = np.where(np.arange(len(t)) % 2, 1.0, -1.0)
    d["z"] = np.asarray(t["z"]) + 0.2 * sign
    d["z_err"] = np.full(len(t), 0.1)
    d["w20_chan"] = tr.w20 * (1 + 0.1 * sign)
    d["w20"] = 3.0 * d["w20_chan"]  # km/s: 3 km/s per channel
    d["w20_err"] = 3.0 * 0.05 * tr.w20
    s = line_summary(d, tr, match_catalogues(d, tr, 7.0))
    assert s["centre_pull_scatter"] == pytest.approx(1.4826 * 2.0, rel=1e-6)
    assert s["w20_pull_scatter"] == pytest.approx(1.4826 * 2.0, rel=1e-6)
    assert "pulls' robust scatter (1: honest errors) centre 2.97, w20 2.97" in \
        format_line_summary(s)


def test_val_on_a_cube(cube, tmp_path):
    """A random-weight 3D detector at objectness 0: the report scores its lines."""
    from cianna_jax.astro.validate import validate

    from .conftest import make_tiny_3d

    path, truth = cube
    card = make_tiny_3d(tmp_path)
    plots = importlib.util.find_spec("matplotlib") is not None
    r = validate(path, card, truth, tmp_path / "rep", obj_threshold=0.0, progress=False,
                 plots=plots, compare={"perfect": truth})
    assert "line centre offset" in r.text and "size ratio" in r.text
    if plots:  # an HI cube's figures: its lines' recovery, the survey's mass-redshift plane
        for name in ("line_recovery.png", "hi_mass_redshift.png"):
            assert (tmp_path / "rep" / name).stat().st_size > 10_000, name
    scores = json.loads((tmp_path / "rep" / "scores.json").read_text())
    assert set(scores["scores"]["lines"]) == {"channel_offset", "channel_scatter", "w20_ratio",
                                              "w20_ratio_scatter", "hi_size_ratio",
                                              "hi_size_ratio_scatter", "centre_pull_scatter",
                                              "w20_pull_scatter"}
    assert scores["sdc1"] is None
    # the SDC2 score by the official rules: the truth has SDC2's hi_size and inclination
    from cianna_jax.astro.catalogue import sdc2_columns
    from cianna_jax.astro.sdc2 import sdc2_score

    t = read_catalogue(truth)
    want = sdc2_score(sdc2_columns(r.table), sdc2_columns(t))
    assert scores["sdc2"]["sdc2_score"] == pytest.approx(want.value)
    # the comparison catalogue (the truth itself) gets its SDC2 score beside ours
    itself = sdc2_score(sdc2_columns(t), sdc2_columns(t))
    assert scores["compare"]["perfect"]["sdc2"]["sdc2_score"] == pytest.approx(itself.value)
    assert itself.n_match == len(t) and "SDC2 score" in r.text.split("other catalogues")[1]
    # lines without a w20 (no positive peak) are dropped, as the official scorer drops them
    assert scores["sdc2"]["n_det"] == want.n_det > 0.9 * len(r.table) and "SDC2 score" in r.text
    assert str(read_catalogue(tmp_path / "rep" / "scores_by_flux.ecsv")["flux_min"].unit) == \
        "Hz Jy"
    # matched pairs are close in channel: within half the true w20, at least one channel
    m = r.match
    assert m.n > 0
    dz = np.abs(np.asarray(r.table["z"])[m.det] - r.truth.z[m.truth])
    assert np.all(dz <= np.maximum(0.5 * r.truth.w20[m.truth], 1.0) + 1e-9)
    # another finder's line catalogue, scored beside: here the truth itself, a perfect one
    perfect = scores["compare"]["perfect"]["scores"]
    assert perfect["precision"] == perfect["recall"] == 1.0
    assert perfect["lines"]["channel_offset"] == pytest.approx(0.0, abs=1e-6)
    assert "line centre offset (ch)" in r.text
    with pytest.raises(ValueError, match="one cube at a time"):
        validate([path, path], card, truth, tmp_path / "no", progress=False)
    assert not (tmp_path / "no").exists()


def test_predict_refuses_sdc1_output_for_a_cube(cube, tmp_path, capsys):
    from .conftest import make_tiny_3d

    path, _ = cube
    card = make_tiny_3d(tmp_path)
    out = tmp_path / "lines.sdc1"
    assert main(["predict", "--model", card, "--image", str(path), "--out", str(out),
                 "--quiet"]) == 2
    assert "SDC1 output is for continuum images" in capsys.readouterr().err
    # SDC2's text, for the cube; refused for an image
    assert main(["predict", "--model", card, "--image", str(path), "--out",
                 str(tmp_path / "lines.sdc2"), "--threshold", "0", "--quiet"]) == 0
    t = read_catalogue(tmp_path / "lines.sdc2")
    assert t.colnames[:3] == ["id", "ra", "dec"] and len(t) > 0
    with fits.open(path) as h:
        fits.PrimaryHDU(h[0].data[0], h[0].header).writeto(tmp_path / "plane.fits")
    assert main(["predict", "--model", card, "--image", str(tmp_path / "plane.fits"), "--out",
                 str(tmp_path / "p.sdc2"), "--quiet"]) == 2
    assert "this image lacks a cube" in capsys.readouterr().err
    assert not out.exists()


def test_the_hi_mass_redshift_figure(tmp_path):
    """val's figure of an HI survey's selection: true lines found and missed, false
    detections, HI mass against redshift (titles, labels with units, a legend counting)."""
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.plots import hi_mass_redshift, save_figure

    rng = np.random.default_rng(0)
    z, lm = rng.uniform(0.25, 0.5, 40), rng.uniform(8.5, 10.5, 40)
    fig = hi_mass_redshift(z, lm, lm > 9.2, rng.uniform(0.25, 0.5, 3), np.full(3, 9.0))
    (ax,) = fig.axes
    assert ax.get_xlabel() == "redshift" and ax.get_ylabel() == "log10 HI mass (Msun)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"found ({int((lm > 9.2).sum())})", f"missed ({int((lm <= 9.2).sum())})",
                      "false detections (3)"]
    save_figure(fig, tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 10_000


def test_the_line_recovery_figure(tmp_path):
    """val's figure of a cube's matched lines: widths against the truth, centre offsets
    against the SNR (titles, axis labels with units, the 1:1 line)."""
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.plots import line_recovery, save_figure

    rng = np.random.default_rng(0)
    w = rng.uniform(4, 20, 30)
    fig = line_recovery(w, w * rng.normal(1, 0.1, 30), rng.normal(0, 0.3, 30),
                        rng.uniform(5, 100, 30))
    a1, a2 = fig.axes
    assert a1.get_xlabel() == "true w20 (channels)" and "channels" in a2.get_ylabel()
    assert a2.get_xscale() == "log" and a1.get_legend() is not None
    save_figure(fig, tmp_path / "l.png")
    assert (tmp_path / "l.png").stat().st_size > 10_000


def test_lines_take_their_channel_beam(tmp_path):
    """A cube with per-channel beams (CASA's BEAMS table, widening towards the last
    channel): each line's flux, summed over the cube's one beam, is rescaled to its own
    channel's beam area."""
    from astropy.io import fits

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.pipeline import find_sources

    from .conftest import make_peak_detector_3d, write_line_cube

    path, _ = write_line_cube(tmp_path, seed=5, density=0.0008)
    with fits.open(path) as h:
        data, header = h[0].data, h[0].header
        b0 = header["BMAJ"] * 3600
        D = data.shape[0]
        scale = 1.0 + 0.5 * np.arange(D) / (D - 1)  # widths 1 to 1.5 times the header's
        beams = fits.BinTableHDU.from_columns(
            [fits.Column("BMAJ", "E", "arcsec", array=b0 * scale),
             fits.Column("BMIN", "E", "arcsec", array=b0 * scale),
             fits.Column("BPA", "E", "deg", array=np.zeros(D)),
             fits.Column("CHAN", "J", array=np.arange(D)),
             fits.Column("POL", "J", array=np.zeros(D))], name="BEAMS")
        fits.HDUList([fits.PrimaryHDU(data, header), beams]).writeto(tmp_path / "b.fits")
    model = make_peak_detector_3d(tmp_path, 8.0)
    one = find_sources(str(path), model, progress=False).table
    with pytest.warns(UserWarning, match="BEAMS table"):
        own = find_sources(str(tmp_path / "b.fits"), model, progress=False).table
    assert len(one) == len(own) >= 3
    with pytest.warns(UserWarning), open_image(tmp_path / "b.fits") as img:
        used = img.beam.bmaj  # (the header's)
    pos = [np.stack([np.asarray(t[c]) for c in ("x", "y", "z")], 1) for t in (one, own)]
    same = np.argmin(np.linalg.norm(pos[1][:, None] - pos[0][None], axis=2), axis=1)
    np.testing.assert_allclose(pos[0][same], pos[1], atol=1e-6)  # (rows re-ordered by flux)
    z = np.clip(np.rint(np.asarray(own["z"])), 0, D - 1).astype(int)
    expected = np.asarray(one["line_flux"])[same] * (used / (b0 * scale[z])) ** 2
    np.testing.assert_allclose(own["line_flux"], expected, rtol=1e-4)
