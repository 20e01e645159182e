"""predict / val / simulate end to end on small FITS files, bad input, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.catalogue import read_catalogue  # noqa: E402
from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402
from cianna_jax.astro.pipeline import find_sources, predict_file  # noqa: E402
from cianna_jax.astro.predict import batch_for, checked_threshold, detect, make_predict_fn  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

# cli.main tunes XLA flags, which warns in a process where JAX already started
pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")


def test_cli_predict_then_val(tmp_path, field, tiny_model, capsys):
    image, truth, _ = field
    out = tmp_path / "cat.ecsv"
    assert main(["predict", "--model", tiny_model, "--image", image, "--out", str(out),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "sources ->" in printed
    t = read_catalogue(out)
    assert f"quality flags: {int(np.count_nonzero(t['edge']))} edge, " in printed
    assert len(t) > 0
    for c in ("id", "ra", "dec", "x", "y", "flux", "flux_err", "snr", "bmaj", "bmin", "pa",
              "objectness", "prior"):
        assert c in t.colnames
    assert str(t["ra"].unit) == "deg" and str(t["flux"].unit) == "Jy"
    assert str(t["bmaj"].unit) == "arcsec" and str(t["pa"].unit) == "deg"
    assert np.isfinite(np.asarray(t["ra"])).all() and np.isfinite(np.asarray(t["snr"])).all()
    assert "east of north" in t.meta["pa_convention"]
    # 1-sigma errors: the sky errors are the pixel errors at the pixel scale (north-up image)
    for c, unit in (("ra_err", "arcsec"), ("dec_err", "arcsec"), ("x_err", "pix"),
                    ("flux_err", "Jy"), ("peak_err", "Jy / beam"), ("bmaj_err", "arcsec"),
                    ("pa_err", "deg")):
        assert str(t[c].unit) == unit, c
    fitted = np.asarray(t["fit_ok"], bool)
    assert fitted.any() and np.all(np.asarray(t["ra_err"])[fitted] > 0)
    scale = abs(float(fits.getheader(image)["CDELT2"])) * 3600
    np.testing.assert_allclose(t["dec_err"][fitted], t["y_err"][fitted] * scale, rtol=1e-3)
    assert "1-sigma" in t.meta["errors"]
    assert t["resolved"].dtype == bool and not np.any(np.asarray(t["resolved"])[~fitted])
    np.testing.assert_array_equal(t["id"], np.arange(1, len(t) + 1))
    assert min(np.asarray(t["objectness"])) >= 0.5
    rep = tmp_path / "report"
    assert main(["val", "--model", tiny_model, "--image", image, "--catalogue", truth,
                 "--out", str(rep), "--quiet", "--reliability"]) == 0
    text = capsys.readouterr().out
    assert "precision (reliability)" in text and "SDC1 score" in text
    assert "true SNR from the catalogue's snr column" in text
    n_edge = int(np.count_nonzero(np.asarray(t["edge"])))
    assert f"quality flags: {n_edge} edge, " in text and n_edge > 0  # the field's blank border
    assert "matched elongated sources, axis ratio > 1.3)" in text  # the PA error's count
    assert "errors: robust scatter of (measured - true) / error ra " in text
    files = set(os.listdir(rep))
    assert {"catalogue.ecsv", "truth_matched.ecsv", "scores.json", "scores_by_snr.ecsv",
            "report.txt"} <= files
    assert {"field_overlay.png", "completeness_reliability.png", "pr_curve.png",
            "residual_overlay.png", "reliability.png"} <= files
    s = json.loads((rep / "scores.json").read_text())
    assert s["scores"]["n_det"] == len(t) and len(s["pr_curve"]["threshold"]) > 5
    scored = read_catalogue(rep / "catalogue.ecsv")          # predict's catalogue, exactly
    np.testing.assert_array_equal(scored["x"], t["x"])
    np.testing.assert_array_equal(scored["flux"], t["flux"])
    assert "reliability" in scored.colnames and len(s["reliability"]["measured"]) > 1
    assert 0 <= s["scores"]["n_elongated"] <= s["scores"]["n_tp"]
    pulls = s["scores"]["error_pulls"]
    assert set(pulls) == {"ra", "dec", "flux", "n"} and 0 < pulls["n"] <= s["scores"]["n_tp"]


def test_val_against_an_empty_truth_counts_every_detection_false(tmp_path, field, tiny_model,
                                                                 capsys):
    """A field with no true source (noise alone, say): every detection is false, recall has
    nothing to count; the report is written, plots included (it crashed on the first
    detection's match)."""
    image, truth, _ = field
    read_catalogue(truth)[:0].write(tmp_path / "empty.ecsv")
    rep = tmp_path / "report"
    assert main(["val", "--model", tiny_model, "--image", image, "--catalogue",
                 str(tmp_path / "empty.ecsv"), "--out", str(rep), "--quiet"]) == 0
    assert "0 matched to a true source" in capsys.readouterr().out
    s = json.loads((rep / "scores.json").read_text())["scores"]
    assert s["n_truth"] == 0 and s["n_tp"] == 0 and s["n_det"] == s["n_fp"] > 0
    assert s["precision"] == 0.0 and s["recall"] is None
    assert (read_catalogue(rep / "catalogue.ecsv")["match_id"] == -1).all()
    assert "pr_curve.png" in os.listdir(rep)


@pytest.mark.parametrize("ext", [".fits", ".xml", ".sdc1"])
def test_predict_other_formats(tmp_path, field, tiny_model, ext):
    image = field[0]
    assert main(["predict", "--model", tiny_model, "--image", image, "--out",
                 str(tmp_path / f"c{ext}"), "--quiet", "--no-fit"]) == 0
    t = read_catalogue(tmp_path / f"c{ext}")
    assert len(t) > 0 and ("ra" in t.colnames or "ra_core" in t.colnames)
    if ext == ".xml":  # the VOTable's FIELDs carry UCDs that VO tools read (valid UCD1+)
        from astropy.io.votable import parse
        from astropy.io.votable.ucd import check_ucd

        fields = {f.name: f.ucd for f in parse(tmp_path / "c.xml").get_first_table().fields}
        assert fields["ra"] == "pos.eq.ra;meta.main" and fields["dec"] == "pos.eq.dec;meta.main"
        assert fields["flux"] == "phot.flux.density;em.radio"
        assert fields["flux_err"] == "stat.error;phot.flux.density" and fields["snr"] == "stat.snr"
        assert all(check_ucd(u, check_controlled_vocabulary=True) for u in fields.values() if u)


def test_reduced_precision_mode_finds_the_same_sources(tmp_path, field, tiny_model, capsys):
    """``mixed_precision`` (``--mixed-precision``): the detector's passes in a 16-bit mode
    find the float32 run's sources, at the same places; an unknown mode is refused before
    any output."""
    image = field[0]
    ref = find_sources(image, tiny_model, progress=False, fit=False).table
    half = find_sources(image, tiny_model, progress=False, fit=False,
                        mixed_precision="BF16C_FP32A").table
    assert len(ref) > 0
    ra, rb = np.asarray(ref["objectness"]), np.asarray(half["objectness"])
    # the untrained tiny model scores 0.50-0.54 (threshold 0.5); bfloat16 moves scores by
    # about 1e-4: those 0.005 clear of the threshold are found again, same place and score
    strong = ra > 0.505
    assert strong.sum() >= 3 and abs(len(half) - len(ref)) <= (~strong).sum()
    xy = np.stack([np.asarray(half["x"]), np.asarray(half["y"])], axis=1)
    for x, y, o in zip(np.asarray(ref["x"])[strong], np.asarray(ref["y"])[strong], ra[strong]):
        d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
        assert d.min() < 0.05 and abs(rb[d.argmin()] - o) < 0.003
    out = tmp_path / "c.ecsv"
    assert main(["predict", "--model", tiny_model, "--image", image, "--out", str(out),
                 "--quiet", "--mixed-precision", "FP8"]) == 2
    assert "mixed_precision: unknown mode 'FP8'" in capsys.readouterr().err
    assert not out.exists()


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_bad_input_clear_errors_no_output(tmp_path, field, tiny_model, capsys):
    image, truth, _ = field
    args = ["--model", tiny_model, "--quiet"]
    # unknown output extension: refused before any work
    assert main(["predict", *args, "--image", image, "--out", str(tmp_path / "c.xlsx")]) == 2
    assert "unknown catalogue extension '.xlsx'" in _err(capsys)
    # a file where the output folder should be
    (tmp_path / "file").write_text("")
    assert main(["predict", *args, "--image", image,
                 "--out", str(tmp_path / "file" / "c.ecsv")]) == 2
    assert "file: exists and is not a folder" in _err(capsys)
    (tmp_path / "file").unlink()
    # all-NaN image
    fits.PrimaryHDU(np.full((40, 40), np.nan, np.float32)).writeto(tmp_path / "nan.fits")
    with pytest.warns(UserWarning):
        assert main(["predict", *args, "--image", str(tmp_path / "nan.fits"),
                     "--out", str(tmp_path / "n.ecsv")]) == 2
    assert "blank" in _err(capsys)
    # 1-D data
    fits.PrimaryHDU(np.ones(40, np.float32)).writeto(tmp_path / "one.fits")
    assert main(["predict", *args, "--image", str(tmp_path / "one.fits"),
                 "--out", str(tmp_path / "o.ecsv")]) == 2
    assert "need a 2D image or a 3D cube" in _err(capsys)
    # a tile size the network cannot take
    assert main(["predict", *args, "--image", image, "--tile", "36",
                 "--out", str(tmp_path / "t.ecsv")]) == 2
    assert "cannot take" in _err(capsys)
    assert main(["predict", *args, "--image", image, "--tile", "0",
                 "--out", str(tmp_path / "t.ecsv")]) == 2
    assert "(tile/overlap given): input: need tile > 0" in _err(capsys)
    # no tiles per batch
    assert main(["predict", *args, "--image", image, "--batch", "0",
                 "--out", str(tmp_path / "b.ecsv")]) == 2
    assert "batch_size: expected an int >= 1, received 0" in _err(capsys)
    # no box at all per detection
    assert main(["predict", *args, "--image", image, "--max-peaks", "0",
                 "--out", str(tmp_path / "p.ecsv")]) == 2
    assert "max_peaks: expected an int >= 1, received 0" in _err(capsys)
    # a model without its card
    assert main(["predict", "--model", str(tmp_path / "none.dat"), "--image", image,
                 "--out", str(tmp_path / "m.ecsv")]) == 2
    assert "no model card" in _err(capsys)
    # a truth catalogue without flux: the column is named, no report folder is made
    (tmp_path / "bad_truth.csv").write_text("ra,dec\n0.0,-30.0\n")
    assert main(["val", *args, "--image", image, "--catalogue", str(tmp_path / "bad_truth.csv"),
                 "--out", str(tmp_path / "rep")]) == 2
    assert "missing column 'flux'" in _err(capsys)
    # thresholds outside [0, 1], a beam that is not finite, a match radius of 0, a negative
    # SNR floor: each named, refused before the noise map and the detector run
    for value in ("1.5", "-0.1", "nan"):
        assert main(["predict", *args, "--image", image, "--threshold", value,
                     "--out", str(tmp_path / "thr.ecsv")]) == 2
        assert "obj_threshold: expected a number in [0, 1]" in _err(capsys)
    assert main(["predict", *args, "--image", image, "--beam", "nan,2",
                 "--out", str(tmp_path / "beam.ecsv")]) == 2
    assert "--beam: expected BMAJ,BMIN[,BPA] with positive sizes" in _err(capsys)
    for flag, value, name in (("--threshold", "2", "obj_threshold"),
                              ("--match-radius", "0", "match_factor"),
                              ("--min-snr", "-1", "min_truth_snr"),
                              ("--max-peaks", "0", "max_peaks")):
        assert main(["val", *args, "--image", image, "--catalogue", truth, flag, value,
                     "--out", str(tmp_path / "rep")]) == 2
        assert f"{name}: expected" in _err(capsys)
    assert sorted(os.listdir(tmp_path)) == ["bad_truth.csv", "nan.fits", "one.fits"]


def test_plane_of_a_cube_for_the_2d_detector(tmp_path, field, tiny_model, capsys):
    """A multi-frequency image (RA, Dec, FREQ): refused with a hint, then one plane given
    with --plane finds what the same 2D image finds; the catalogue notes the plane."""
    image, _, _ = field
    data, h = fits.getdata(image, header=True)
    data = np.squeeze(data)
    h = fits.PrimaryHDU(data, h).header  # the field's 2D header
    h["NAXIS"] = 3
    for k, v in (("CTYPE3", "FREQ"), ("CRVAL3", 1.3e9), ("CDELT3", 1e8), ("CRPIX3", 1.0)):
        h[k] = v
    fits.PrimaryHDU(np.stack([data * 0.5, data]), h).writeto(tmp_path / "cube.fits")
    args = ["predict", "--model", tiny_model, "--quiet"]
    assert main([*args, "--image", str(tmp_path / "cube.fits"),
                 "--out", str(tmp_path / "a.ecsv")]) == 2
    assert "plane (--plane N) takes one plane of it" in _err(capsys)
    assert main([*args, "--image", str(tmp_path / "cube.fits"), "--plane", "1",
                 "--out", str(tmp_path / "p.ecsv")]) == 0
    assert main([*args, "--image", image, "--out", str(tmp_path / "i.ecsv")]) == 0
    p, i = read_catalogue(tmp_path / "p.ecsv"), read_catalogue(tmp_path / "i.ecsv")
    assert len(p) == len(i) > 0 and p.meta["plane"] == 1
    np.testing.assert_allclose(np.asarray(p["flux"]), np.asarray(i["flux"]), rtol=1e-6)


def test_nan_border_and_no_wcs(tmp_path, field, loaded_tiny):
    image, _, f = field
    res = find_sources(image, loaded_tiny, obj_threshold=0.45, progress=False)
    assert np.isfinite(res.noise.rms).all()
    for c in ("x", "y", "ra", "dec", "flux", "snr"):
        assert np.isfinite(np.asarray(res.table[c])).all()
    h = fits.Header()
    h["BUNIT"] = "JY/BEAM"
    fits.PrimaryHDU(np.nan_to_num(f.image), h).writeto(tmp_path / "nowcs.fits")
    with pytest.warns(UserWarning, match="no celestial WCS"):
        res = find_sources(tmp_path / "nowcs.fits", loaded_tiny, progress=False)
    assert "ra" not in res.table.colnames and "x" in res.table.colnames
    with pytest.warns(UserWarning), pytest.raises(ImageError, match="SDC1 output needs sky"):
        predict_file(tmp_path / "nowcs.fits", loaded_tiny, tmp_path / "c.sdc1", progress=False)
    assert not (tmp_path / "c.sdc1").exists()


def test_cube_with_the_3d_detector(tmp_path):
    from .conftest import make_tiny_3d

    card = make_tiny_3d(tmp_path)
    rng = np.random.default_rng(0)
    cube = rng.normal(0, 1e-3, (1, 12, 24, 24)).astype(np.float32)
    cube[0, 5:8, 10:14, 10:14] += 0.05
    h = fits.Header()
    for k, (t, v, d) in enumerate([("RA---SIN", 0.0, -1e-4), ("DEC--SIN", -30.0, 1e-4),
                                   ("FREQ", 1.4e9, 1e5), ("STOKES", 1.0, 1.0)], 1):
        h[f"CTYPE{k}"], h[f"CRVAL{k}"], h[f"CDELT{k}"], h[f"CRPIX{k}"] = t, v, d, 1.0
    h["BUNIT"], h["BMAJ"], h["BMIN"] = "JY/BEAM", 3e-4, 3e-4
    fits.PrimaryHDU(cube, h).writeto(tmp_path / "cube.fits")
    res = find_sources(tmp_path / "cube.fits", card, obj_threshold=0.0, progress=False,
                       reliability=True)
    assert len(res.table) > 0 and "z" in res.table.colnames and "ra" in res.table.colnames
    # the inverted cube's run: its lines' counts beside the cube's (astro/reliability.py)
    assert res.reliability.n_image.sum() == len(res.table) and "reliability" in res.table.colnames
    assert (np.asarray(res.table["z"]) < 12).all()
    # the line in physical units from the FREQ axis (tests/astro/test_spectral.py)
    t = res.table
    assert np.asarray(t["freq"]) == pytest.approx(1.4e9 + 1e5 * np.asarray(t["z"]))
    assert np.asarray(t["line_flux"]) == pytest.approx(np.asarray(t["flux"]) * 1e5)


def test_streaming_bounded_memory(tmp_path, loaded_tiny):
    """A 2048x2048 memory-mapped image: the noise map and the detector read it a box or a
    tile at a time; no image-sized float array is ever allocated."""
    n = 2048
    hdu = fits.PrimaryHDU(np.zeros((n, n), np.float32))
    hdu.header["BUNIT"] = "JY/BEAM"
    hdu.writeto(tmp_path / "big.fits")
    with fits.open(tmp_path / "big.fits", mode="update", memmap=True) as hl:  # noise, in place
        rng = np.random.default_rng(0)
        for r in range(0, n, 256):
            hl[0].data[r:r + 256] = rng.normal(0, 1e-5, (256, n)).astype(np.float32)
    biggest = []
    with pytest.warns(UserWarning), open_image(tmp_path / "big.fits") as img:
        def read(w):
            a = img.read(w)
            biggest.append(a.size)
            return a

        tracemalloc.start()
        noise = estimate_noise_map(read, img.shape, box=128)
        det = detect(read, img.shape, loaded_tiny, noise=noise, obj_threshold=0.9,
                     progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    image_bytes = n * n * 4
    assert det.n_tiles > 1000
    assert max(biggest) <= 128 * 128
    assert peak < image_bytes / 8, f"peak traced allocation {peak / 2**20:.1f} MiB"


def test_threshold_override_is_one_value_or_one_per_prior_in_0_1():
    assert checked_threshold(0.4, 3) == 0.4 and checked_threshold(np.float32(1), 3) == 1.0
    assert checked_threshold([0.2, 0.3, 0.4], 3) == (0.2, 0.3, 0.4)
    for bad in (1.01, -1e-9, float("nan"), "high", [], [[0.5]], None, [0.2, 2.0, 0.3]):
        with pytest.raises(ValueError, match=r"obj_threshold: expected a number in \[0, 1\]"):
            checked_threshold(bad, 3)
    with pytest.raises(ValueError, match=r"one value or one per prior \(3\), received 2 values"):
        checked_threshold((0.2, 0.3), 3)


def test_batch_for_an_image_of_few_tiles():
    assert [batch_for(n, 64) for n in (1, 2, 3, 6, 8, 9, 63, 64, 1000)] == \
        [1, 2, 4, 8, 8, 16, 64, 64, 64]
    assert batch_for(5, 6) == 6 and batch_for(3, 1) == 1


def test_few_tiles_run_in_a_small_batch_with_the_same_detections(loaded_tiny):
    """A 56x56 image is 4 tiles of 32 (overlap 8): one batch of 4, not the card's 16 (a
    training run's validation strip spent 90% of its time on padding tiles); the
    detections are those of one tile per batch.  A bad batch size is refused."""
    rng = np.random.default_rng(2)
    img = rng.normal(0, 1.0, (56, 56)).astype(np.float32)
    img[20:26, 30:36] += 8.0
    noise = estimate_noise_map(lambda w: img[w], img.shape, box=32)
    fn = make_predict_fn(loaded_tiny)
    seen = []

    def spy(tiles):
        seen.append(tiles.shape)
        return fn(tiles)

    got = detect(lambda w: img[w], img.shape, loaded_tiny, noise=noise, obj_threshold=0.3,
                 progress=False, predict_fn=spy)
    assert seen == [(4, 32, 32)] and got.n_tiles == 4
    one = detect(lambda w: img[w], img.shape, loaded_tiny, noise=noise, obj_threshold=0.3,
                 progress=False, batch_size=1)
    assert len(got.boxes) == len(one.boxes) > 0
    np.testing.assert_allclose(got.boxes.boxes, one.boxes.boxes, rtol=1e-5, atol=1e-4)
    for bad in (0, -2, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="batch_size"):
            detect(lambda w: img[w], img.shape, loaded_tiny, noise=noise, batch_size=bad,
                   progress=False)


def test_import_pulls_no_optional_dependency():
    code = ("import sys, cianna_jax, cianna_jax.astro, cianna_jax.cli, cianna_jax.demo; "
            "bad = [m for m in ('astropy', 'matplotlib', 'tqdm') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_simulate_and_info(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s.fits"), "--truth",
                 str(tmp_path / "s.ecsv"), "--size", "64", "--sdc1-layout"]) == 0
    with open_image(tmp_path / "s.fits") as img:
        assert img.shape == (64, 64) and img.data.ndim == 2
    assert len(read_catalogue(tmp_path / "s.ecsv")) > 0
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "optional extras:" in out and "astro" in out and "progress" in out
    # settings that cannot make a field: named, nothing written
    for flags, message in ((["--size", "0"], "size: expected an int >= 8"),
                           (["--noise=-1e-5"], "noise: expected a finite number > 0"),
                           (["--noise", "nan"], "noise: expected a finite number > 0"),
                           (["--density=-0.1"], "density: expected a finite number >= 0"),
                           (["--size", "64", "--nan-border", "32"], "nan_border: expected"),
                           (["--blend-fraction", "1.5"], "--blend-fraction must be in [0, 1]"),
                           (["--cube", "--blend-fraction", "0.3"],
                            "--blend-fraction: not an option of --cube"),
                           (["--blend-members", "2"], "give --blend-fraction too"),
                           (["--blend-fraction", "0.3", "--blend-members", "0"],
                            "blend_members: companions per blended source"),
                           (["--cube", "--blend-members", "2"],
                            "--blend-members: not an option of --cube")):
        assert main(["simulate", "--out", str(tmp_path / "bad.fits"), *flags]) == 2
        assert message in _err(capsys)
    assert not (tmp_path / "bad.fits").exists()
    # close pairs: the same field with a fainter companion beside some of its sources
    assert main(["simulate", "--out", str(tmp_path / "p.fits"), "--truth",
                 str(tmp_path / "p.ecsv"), "--size", "64", "--blend-fraction", "1"]) == 0
    n_single, n_pairs = (len(read_catalogue(tmp_path / f)) for f in ("s.ecsv", "p.ecsv"))
    assert n_pairs > n_single
    # two companions each: groups of three
    assert main(["simulate", "--out", str(tmp_path / "t.fits"), "--truth",
                 str(tmp_path / "t.ecsv"), "--size", "64", "--blend-fraction", "1",
                 "--blend-members", "2"]) == 0
    triples = read_catalogue(tmp_path / "t.ecsv")
    assert len(triples) == n_single + 2 * (n_pairs - n_single)


def test_truth_without_snr_in_sdc1_format(tmp_path, field):
    from cianna_jax.astro.catalogue import read_catalogue as read
    from cianna_jax.astro.catalogue import write_sdc1
    from cianna_jax.astro.validate import load_truth

    image, truth, f = field
    t = read(truth)
    write_sdc1(t, tmp_path / "truth.sdc1", header=False)  # intrinsic sizes, no snr column
    with open_image(image) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        tr = load_truth(tmp_path / "truth.sdc1", img, noise)
        ref = load_truth(truth, img, noise)
    assert tr.sdc1 is not None and len(tr.x) == len(ref.x)
    np.testing.assert_allclose(tr.x, ref.x, atol=1e-3)
    point = np.asarray(t["kind"]) == 0
    # from flux, size and the local rms (estimated on 32-pixel boxes): close to the true SNR
    np.testing.assert_allclose(tr.snr[point], ref.snr[point], rtol=0.25)
    np.testing.assert_allclose(tr.bmaj, ref.bmaj, rtol=1e-3)  # intrinsic (+) beam = convolved
    assert ref.snr_from == "the catalogue's snr column"
    assert tr.snr_from == "flux, sizes and the local noise"
    t["ra", "dec", "flux"].write(tmp_path / "points.csv")  # no sizes: point sources
    with open_image(image) as img:
        pts = load_truth(tmp_path / "points.csv", img, noise)
    assert pts.snr_from.startswith("flux and the local noise, as point sources")
    np.testing.assert_allclose(pts.snr[point], ref.snr[point], rtol=0.25)
    assert (pts.snr[~point] >= tr.snr[~point] * 0.99).all()  # extended: their peak overrated


def test_a_galactic_image_gives_icrs_ra_dec(tmp_path, field, loaded_tiny):
    """A Galactic-plane image (GLON/GLAT axes): the catalogue's ra/dec held l and b."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    image, _, _ = field
    with fits.open(image) as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    header["CTYPE1"], header["CTYPE2"] = "GLON-SIN", "GLAT-SIN"
    header["CRVAL1"], header["CRVAL2"] = 30.0, 0.5
    for key in ("RADESYS", "EQUINOX"):
        header.pop(key, None)
    fits.PrimaryHDU(data, header).writeto(tmp_path / "gal.fits")
    eq = find_sources(image, loaded_tiny, obj_threshold=0.45, progress=False).table
    gal = find_sources(tmp_path / "gal.fits", loaded_tiny, obj_threshold=0.45,
                       progress=False).table
    assert len(gal) == len(eq) > 0
    np.testing.assert_array_equal(gal["x"], eq["x"])  # the same pixels, another sky
    lon, lat = open_image(tmp_path / "gal.fits").wcs.pixel_to_world_values(gal["x"], gal["y"])
    icrs = SkyCoord(l=lon * u.deg, b=lat * u.deg, frame="galactic").icrs
    np.testing.assert_allclose(gal["ra"], icrs.ra.deg, atol=1e-9)
    np.testing.assert_allclose(gal["dec"], icrs.dec.deg, atol=1e-9)
    assert abs(float(np.median(gal["ra"])) - 281.08) < 0.1  # not l = 30
    assert gal.meta["radec_frame"] == "ICRS, converted from the image's galactic WCS"
    np.testing.assert_allclose(gal["glon"], np.mod(lon, 360.0), atol=1e-9)  # its own l, b too
    np.testing.assert_allclose(gal["glat"], lat, atol=1e-9)
    assert str(gal["glon"].unit) == "deg" and "glon" not in eq.colnames
    assert eq.meta["radec_frame"].endswith("(the image's WCS, equatorial J2000)")


def test_truth_in_sexagesimal_text_and_with_masked_values(tmp_path, field):
    """Catalogues with RA/Dec as '00:00:04.2' text (CSV from many tools) stopped with numpy's
    'could not convert string to float'; a masked (empty) RA read as 0 and put a fake true
    source on the image, a masked flux read as 0."""
    import warnings

    from astropy import units as u
    from astropy.coordinates import Angle
    from astropy.table import MaskedColumn, Table

    from cianna_jax.astro.catalogue import read_catalogue as read
    from cianna_jax.astro.labels import read_training_catalogue
    from cianna_jax.astro.validate import load_truth

    image, truth, _ = field
    t = read(truth)
    sex = Table()
    sex["RA"] = [Angle(v, u.deg).to_string(unit=u.hour, sep=":", precision=6) for v in t["ra"]]
    sex["DEC"] = [Angle(v, u.deg).to_string(unit=u.deg, sep="dms", precision=5)
                  for v in t["dec"]]
    sex["flux"] = t["flux"]
    sex.write(tmp_path / "sex.csv")
    masked = t.copy()
    masked["ra"] = MaskedColumn(t["ra"], mask=np.arange(len(t)) == 0)
    masked["flux"] = MaskedColumn(t["flux"], mask=np.arange(len(t)) == 1)
    masked.write(tmp_path / "masked.ecsv")
    with open_image(image) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        ref = load_truth(truth, img, noise)
        got = load_truth(tmp_path / "sex.csv", img, noise)
        np.testing.assert_allclose(got.x, ref.x, atol=1e-3)
        np.testing.assert_allclose(got.y, ref.y, atol=1e-3)
        labels = read_training_catalogue(tmp_path / "sex.csv", img)
        np.testing.assert_allclose(labels.x, read_training_catalogue(truth, img).x, atol=1e-3)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no NaN cast warnings either
            m = load_truth(tmp_path / "masked.ecsv", img, noise)
        kept = list(ref.table["id"])
        assert t["id"][0] in kept and t["id"][1] in kept  # both on the image
        assert len(m.x) == len(ref.x) - 1 and t["id"][0] not in list(m.table["id"])  # no position
        row = list(m.table["id"]).index(t["id"][1])
        assert np.isnan(m.flux[row])  # missing, not 0
        bad = sex.copy()
        bad["RA"][2] = "noon"
        bad.write(tmp_path / "bad.csv")
        with pytest.raises(ValueError, match=r"column 'RA', row 2: 'noon' is not an angle"):
            load_truth(tmp_path / "bad.csv", img, noise)


def test_unitless_sizes_in_degrees_are_warned_about(tmp_path, field):
    """PyBDSF writes Maj/Min in degrees; without the unit (a plain CSV) they read as arcsec,
    3600 times too small, silently."""
    from cianna_jax.astro.catalogue import read_catalogue as read
    from cianna_jax.astro.labels import read_training_catalogue
    from cianna_jax.astro.validate import load_truth

    image, truth, _ = field
    t = read(truth)["ra", "dec", "flux", "bmaj", "bmin", "pa"]
    deg = t.copy()
    for c in ("bmaj", "bmin"):
        deg[c] = np.asarray(t[c].quantity.to_value("deg"))  # numbers, no unit
    deg.rename_columns(["bmaj", "bmin"], ["Maj", "Min"])
    deg.write(tmp_path / "pybdsf_like.csv")
    t.write(tmp_path / "arcsec.ecsv")
    with open_image(image) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        with pytest.warns(UserWarning, match=r"'Maj' has no unit and is read as arcsec.*"
                                             r"PyBDSF's Maj, Min") as caught:
            load_truth(tmp_path / "pybdsf_like.csv", img, noise)
        with pytest.warns(UserWarning, match="'Maj' has no unit") as caught2:
            read_training_catalogue(tmp_path / "pybdsf_like.csv", img)
        assert len(caught) == len(caught2) == 1  # one warning, not one per axis
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            load_truth(tmp_path / "arcsec.ecsv", img, noise)  # sizes with units: no warning


def test_val_compares_other_finders_catalogues(tmp_path, field, tiny_model, capsys):
    """--compare scores other catalogues with the same truth, matcher and rules: the truth
    itself (a perfect finder, its SNR from flux over the local noise: no snr column), half
    of it in pixels only, a PyBDSF text list; names from NAME= or the file name."""
    image, truth, _ = field
    t = read_catalogue(truth)
    t["ra", "dec", "flux", "bmaj", "bmin", "pa"].write(tmp_path / "perfect.ecsv")
    half = t[::2]["x", "y", "flux"]
    half.write(tmp_path / "half.csv")
    rep = tmp_path / "report"
    assert main(["val", "--model", tiny_model, "--image", image, "--catalogue", truth,
                 "--out", str(rep), "--quiet", "--no-plots", "--compare",
                 f"best={tmp_path / 'perfect.ecsv'}", "--compare", str(tmp_path / "half.csv")
                 ]) == 0
    text = capsys.readouterr().out
    assert "The same truth, matcher and scores for the other catalogues:" in text
    assert "SNR from its flux over the local noise, as point sources" in text
    s = json.loads((rep / "scores.json").read_text())["compare"]
    assert set(s) == {"best", "half"}
    best, half_s = s["best"]["scores"], s["half"]["scores"]
    assert best["precision"] == best["recall"] == 1.0 and best["n_det"] == len(t)
    assert half_s["precision"] == 1.0 and 0.3 < half_s["recall"] < 0.7
    assert s["best"]["sdc1"]["n_match"] == len(t) and s["half"]["sdc1"] is None  # no sky
    # a missing catalogue or a repeated name: stopped before the detector runs
    for extra, match in ((["--compare", str(tmp_path / "nope.csv")], "nope.csv"),
                         (["--compare", f"a={truth}", "--compare", f"a={truth}"],
                          "the name 'a' is taken")):
        assert main(["val", "--model", tiny_model, "--image", image, "--catalogue", truth,
                     "--out", str(tmp_path / "r2"), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "r2").exists()


def test_predict_writes_several_files_from_one_run(tmp_path, field, tiny_model, capsys):
    """--out repeated: the catalogue and a DS9 region file from one detection run; every
    output checked before the run (a bad second one leaves no first one)."""
    image = field[0]
    cat, reg = tmp_path / "c.ecsv", tmp_path / "c.reg"
    assert main(["predict", "--model", tiny_model, "--image", image, "--out", str(cat),
                 "--out", str(reg), "--quiet"]) == 0
    assert f"-> {cat}, {reg} (ra/dec from the WCS)" in capsys.readouterr().out
    t = read_catalogue(cat)
    body = [line for line in reg.read_text().splitlines() if line.startswith(("ellipse", "point"))]
    assert len(body) == len(t) > 0 and body[0].endswith("# text={1}")
    for extra, match in ((["--out", str(tmp_path / "d.ecsv"), "--out", str(tmp_path / "d.xlsx")],
                          "unknown catalogue extension '.xlsx'"),
                         (["--out", str(tmp_path / "d.ecsv"), "--out", str(tmp_path / "d.csv"),
                           "--format", "csv"], "several without fmt")):
        assert main(["predict", "--model", tiny_model, "--image", image, "--quiet", *extra]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "d.ecsv").exists()


def test_field_overlay_names_a_galactic_image_s_axes():
    """The overlay's WCS axes are the image's own: a galactic image's were labelled RA/Dec."""
    pytest.importorskip("matplotlib")
    from astropy.wcs import WCS

    from cianna_jax.astro.plots import field_overlay

    labels = {}
    for ctype in (("GLON-SIN", "GLAT-SIN"), ("RA---SIN", "DEC--SIN")):
        w = WCS(naxis=2)
        w.wcs.ctype, w.wcs.crval = list(ctype), [30.0, 0.5]
        w.wcs.crpix, w.wcs.cdelt = [8.0, 8.0], [-1 / 3600, 1 / 3600]
        fig = field_overlay(np.random.default_rng(0).normal(size=(16, 16)), wcs=w)
        ax = fig.axes[0]
        labels[ctype[0][:4]] = (ax.coords[0].get_axislabel(), ax.coords[1].get_axislabel())
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert labels == {"GLON": ("Galactic longitude", "Galactic latitude"),
                      "RA--": ("Right ascension", "Declination")}


def test_predict_over_cpu_devices_finds_the_same_sources(tmp_path, field, tiny_model, capsys):
    """``--cpu-devices 2`` (a process of its own): the detector runs each device's tiles as
    its own program, and the catalogue is the one-device catalogue, to float rounding."""
    image, _, _ = field
    one, two = tmp_path / "one.ecsv", tmp_path / "two.ecsv"
    assert main(["predict", "--model", tiny_model, "--image", image, "--out", str(one),
                 "--quiet"]) == 0
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "cianna_jax.cli", "predict", "--model",
                           tiny_model, "--image", image, "--out", str(two), "--quiet",
                           "--cpu-devices", "2"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_catalogue(one), read_catalogue(two)
    assert len(a) == len(b) > 0
    for c in ("x", "y", "flux", "objectness"):
        np.testing.assert_allclose(np.asarray(b[c]), np.asarray(a[c]), rtol=1e-4, atol=1e-6)
    # here JAX already runs: the option cannot take effect, and says so; 0 is refused
    for n, needle in (("2", "JAX already started"), ("0", "at least 1")):
        with pytest.raises(SystemExit, match=needle):
            main(["predict", "--model", tiny_model, "--image", image, "--out",
                  str(tmp_path / "x.ecsv"), "--quiet", "--cpu-devices", n])
    assert not (tmp_path / "x.ecsv").exists()


def test_the_cpu_mesh_needs_several_cpu_devices():
    from cianna_jax import parallel

    assert (parallel.cpu_mesh() is None) == (len(jax_devices()) < 2)


def jax_devices():
    import jax

    return jax.devices("cpu")
