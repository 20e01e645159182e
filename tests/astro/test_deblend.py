"""Close sources boxed once are split into one box per peak (astro/deblend.py) and fitted
together; single sources, faint pairs, pairs already boxed twice and touching peaks are left
alone."""

import numpy as np
import pytest

from cianna_jax.astro.deblend import local_maxima, split_blends
from cianna_jax.astro.measure import FWHM
from cianna_jax.astro.noise import NoiseMap
from cianna_jax.datasets.radio_sky import correlated_noise

N, RMS, BEAM = 64, 0.01, 3.0   # image side, noise rms, beam FWHM (pixels)


def _gauss(x0, y0, amp, smaj, smin=None, theta=0.0):
    smin = smaj if smin is None else smin
    gy, gx = np.mgrid[0:N, 0:N].astype(float)
    dx, dy = gx - x0, gy - y0
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return amp * np.exp(-0.5 * (u**2 / smaj**2 + v**2 / smin**2))


def _noise():
    return NoiseMap(rms=np.full((2, 2), RMS), background=np.zeros((2, 2)),
                    cy=np.array([16.0, 48.0]), cx=np.array([16.0, 48.0]), shape=(N, N), box=32)


def _split(img, boxes, **kw):
    read = lambda w: img[w].astype(np.float32)  # noqa: E731
    return split_blends(read, img.shape, np.asarray(boxes, float), _noise(), BEAM, **kw)


def _noisy(img, seed=0):
    """``img`` plus noise of rms RMS correlated as the beam, as a radio image's."""
    return img + correlated_noise((N, N), RMS, BEAM, np.random.default_rng(seed))


S = BEAM / FWHM


def test_local_maxima_skip_the_border_and_nan():
    a = np.add.outer(np.arange(6.0), np.arange(6.0)) * 0.01   # a slope: no flat plateau
    a[2, 2], a[3, 4], a[0, 3] = 5.0, 4.0, 9.0   # the border's 9 is no maximum
    a[4, 1] = np.nan
    assert sorted(map(tuple, local_maxima(a))) == [(2, 2), (3, 4)]
    assert local_maxima(np.ones((2, 5))).shape == (0, 2)


def test_a_close_pair_boxed_once_becomes_two_boxes_on_its_peaks():
    # two SNR-25 point sources 1.1 beam FWHM apart, one box around both (pixel-edge frame)
    x1, y1, x2, y2 = 30.0, 30.0, 32.3, 32.4
    img = _noisy(_gauss(x1, y1, 25 * RMS, S) + _gauss(x2, y2, 25 * RMS, S))
    box = [[25.0, 25.0, 0, 38.0, 38.0, 1]]
    parent, out = _split(img, box)
    np.testing.assert_array_equal(parent, [0, 0])
    centres = 0.5 * (out[:, :2] + out[:, 3:5]) - 0.5   # back to pixel-centre coordinates
    near = [np.min(np.hypot(centres[:, 0] - x, centres[:, 1] - y)) for x, y in ((x1, y1), (x2, y2))]
    assert max(near) < 1.0
    sides = out[:, 3:5] - out[:, :2]
    assert np.all(sides >= 2 * BEAM - 1e-9) and np.all(sides < 13.0)  # less the offset
    np.testing.assert_array_equal(out[:, [2, 5]], [[0, 1], [0, 1]])


def test_a_triple_boxed_once_becomes_three_boxes_brightest_first():
    # SNR 35 / 30 / 25 point sources on a triangle of side 1.25 beam FWHM, one box
    truth = [(30.0 + dx * BEAM, 30.0 + dy * BEAM) for dx, dy in BLENDS["triple"]]
    img = _noisy(sum(_gauss(x, y, snr * RMS, S) for (x, y), snr in zip(truth, (35, 30, 25))))
    box = [[25.0, 25.0, 0, 38.0, 37.0, 1]]
    parent, out = _split(img, box)
    np.testing.assert_array_equal(parent, [0, 0, 0])
    centres = 0.5 * (out[:, :2] + out[:, 3:5]) - 0.5
    # brightest first, each box on its own source's peak pixel
    np.testing.assert_allclose(centres, truth, atol=1.0)
    assert np.all(out[:, 3:5] - out[:, :2] >= 2 * BEAM - 1e-9)
    parent, out = _split(img, box, max_peaks=2)   # the two brightest
    np.testing.assert_array_equal(parent, [0, 0])
    np.testing.assert_allclose(0.5 * (out[:, :2] + out[:, 3:5]) - 0.5, truth[:2], atol=1.0)
    parent, out = _split(img, box, max_peaks=1)   # no split
    np.testing.assert_array_equal(out, box)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="max_peaks"):
            _split(img, box, max_peaks=bad)


@pytest.mark.parametrize("case", ["point", "extended", "faint pair", "touching", "boxed twice"])
def test_what_is_not_split(case):
    box = [[22.0, 22.0, 0, 42.0, 42.0, 1]]
    if case == "point":
        img = _noisy(_gauss(32.0, 32.0, 50 * RMS, S))
    elif case == "extended":  # a bright elongated source: noise on its top makes no dip
        img = _noisy(_gauss(32.0, 32.0, 100 * RMS, 4 * S, 2 * S, 0.5), seed=3)
    elif case == "faint pair":
        img = _noisy(_gauss(30.0, 30.0, 4 * RMS, S) + _gauss(33.3, 32.0, 4 * RMS, S))
    elif case == "touching":  # 0.6 FWHM apart: one peak
        img = _noisy(_gauss(31.0, 31.0, 25 * RMS, S) + _gauss(32.3, 32.3, 25 * RMS, S))
    else:  # the detector already found the second source: its own box
        img = _noisy(_gauss(30.0, 30.0, 25 * RMS, S) + _gauss(32.3, 32.4, 25 * RMS, S))
        box = [[25.0, 25.0, 0, 38.0, 38.0, 1], [29.8, 29.9, 0, 35.8, 35.9, 1]]
    parent, out = _split(img, box)
    np.testing.assert_array_equal(parent, np.arange(len(box)))
    np.testing.assert_array_equal(out, box)


def test_stricter_settings_and_bad_arguments():
    img = _noisy(_gauss(30.0, 30.0, 25 * RMS, S) + _gauss(32.3, 32.4, 25 * RMS, S))
    box = [[25.0, 25.0, 0, 38.0, 38.0, 1]]
    assert len(_split(img, box)[0]) == 2
    assert len(_split(img, box, min_snr=30.0)[0]) == 1        # the peaks are ~25 rms
    assert len(_split(img, box, min_separation=2.0)[0]) == 1  # they are 1.1 FWHM apart
    assert len(_split(img, np.zeros((0, 6)))[0]) == 0
    with pytest.raises(ValueError, match="beam_fwhm"):
        split_blends(lambda w: img[w], img.shape, np.asarray(box), _noise(), 0.0)


# a pair 1.1 beam FWHM apart, a triple on a triangle of side 1.25 FWHM (offsets in FWHM)
BLENDS = {"pair": [(0.0, 0.0), (0.78, 0.78)],
          "triple": [(0.0, 0.0), (1.25, 0.0), (0.625, 1.083)]}


@pytest.mark.parametrize("blend", sorted(BLENDS))
def test_measure_detections_splits_the_blend_and_fits_it(tmp_path, loaded_tiny, blend):
    """The pipeline's measurement: one detection box over a close pair (triple) of a FITS
    image gives two (three) catalogue rows, fitted together: positions, fluxes and sizes of
    each; split=False (and merge=False) keep one row."""
    from dataclasses import replace

    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.flags import flag_counts
    from cianna_jax.astro.pipeline import measure_detections
    from cianna_jax.astro.predict import Detections
    from cianna_jax.astro.synthetic import synthetic_field, write_fits
    from cianna_jax.yolo.decode import DecodedBoxes

    f = synthetic_field(64, seed=3, density=0.0)
    beam_px = f.beam.fwhm_pixels(f.pixel_scale)
    s = beam_px / FWHM
    truth = [(30.0 + dx * beam_px, 30.0 + dy * beam_px) for dx, dy in BLENDS[blend]]
    blended = sum(_gauss(x, y, 30 * f.noise, s) for x, y in truth)
    write_fits(tmp_path / "blend.fits", replace(f, image=(f.image + blended).astype(np.float32)))
    one = replace(DecodedBoxes.empty(), boxes=np.array([[25.0, 25.0, 0.0, 38.0, 38.0, 1.0]]),
                  image=np.zeros(1, np.int64), prior=np.zeros(1, np.int64),
                  cell=np.zeros((1, 3), np.int64), probability=np.ones(1),
                  objectness=np.full(1, 0.9), class_scores=np.zeros((1, 0)),
                  params=np.zeros((1, 0)))
    det = Detections(boxes=one, n_tiles=1, seconds=1.0, obj_threshold=0.5)
    with open_image(tmp_path / "blend.fits") as img:
        from cianna_jax.astro.noise import estimate_noise_map

        noise = estimate_noise_map(img.read, img.shape, box=32)
        t = measure_detections(img, loaded_tiny, det, noise).table
        kept = measure_detections(img, loaded_tiny, det, noise, split=False).table
        raw = measure_detections(img, loaded_tiny, det, noise, merge=False).table
        # at most one box per detection (the command line's --max-peaks 1), or two
        one = measure_detections(img, loaded_tiny, det, noise, max_peaks=1).table
        two = measure_detections(img, loaded_tiny, det, noise, max_peaks=2).table
    assert len(t) == len(truth) and len(kept) == 1 and len(raw) == 1
    assert len(one) == 1 and len(two) == 2
    np.testing.assert_array_equal(one["flux"], kept["flux"])
    # the catalogue says which sources came out of one box (and the report line counts them)
    assert np.all(t["deblended"]) and not np.any(kept["deblended"]) and not one["deblended"][0]
    assert f"{len(truth)} deblended" in flag_counts(t)
    # fitted together (Gaussians summed): each where it is, with its own flux and the
    # beam's size (a pair's each alone, the other's pixels masked: 0.3-0.6 px off, +34-44%
    # flux)
    found = np.stack([np.asarray(t["x"]), np.asarray(t["y"])], 1)
    for x, y in truth:
        assert np.min(np.hypot(found[:, 0] - x, found[:, 1] - y)) < 0.3
    np.testing.assert_allclose(np.asarray(t["flux"]), 30 * f.noise, rtol=0.1)  # point sources
    np.testing.assert_allclose(np.asarray(t["bmaj"]), f.beam.bmaj, rtol=0.15)
    assert np.all(np.asarray(t["fit_ok"]))
    np.testing.assert_allclose(np.asarray(t["objectness"]), 0.9)
    one_fit = np.asarray(kept["flux"])[0]  # one Gaussian over them: about their sum
    n = len(truth)
    assert 0.8 * n * 30 * f.noise < one_fit < 1.2 * n * 30 * f.noise


def test_fit_gaussian_blends_recovers_both_components_of_a_pair():
    """Two overlapping elliptical Gaussians in beam-correlated noise fitted together from
    rough starts: amplitudes, centres and sizes of both; a start off the stamp is not ok."""
    from cianna_jax.astro.gaussfit import fit_gaussian_blends

    rng = np.random.default_rng(5)
    truth = [(20.0, 21.0, 1.0, 1.6, 1.2, 0.3), (23.5, 23.0, 0.6, 1.3, 1.3, 0.0)]
    S = 41
    img = sum(_gauss(x, y, a, sa, sb, th)[:S, :S] for x, y, a, sa, sb, th in truth)
    st = img[None] + 0.02 * correlated_noise((4, 64, 64), 1.0, 3.0, rng)[:, :S, :S]
    w = np.ones_like(st)
    starts = (np.tile([0.8, 19.5, 21.5, 1.3, 1.3], (4, 1)), np.tile([0.5, 24.0, 23.5, 1.3, 1.3], (4, 1)))
    a, b = fit_gaussian_blends(st, w, starts)
    assert a.ok.all() and b.ok.all()
    for g, (x, y, amp, sa, sb, _) in zip((a, b), truth):
        np.testing.assert_allclose(g.x0, x, atol=0.2)
        np.testing.assert_allclose(g.y0, y, atol=0.2)
        np.testing.assert_allclose(g.amplitude, amp, rtol=0.08)
        np.testing.assert_allclose(g.sigma_major, sa, rtol=0.1)
        np.testing.assert_allclose(g.sigma_minor, sb, rtol=0.1)
    bad = (starts[0], np.tile([0.5, 60.0, 23.5, 1.3, 1.3], (4, 1)))   # off the stamp
    a, b = fit_gaussian_blends(st, w, bad)
    assert not a.ok.any() and not b.ok.any()


def test_fit_gaussian_blends_fits_three_together():
    """Three overlapping Gaussians of different sizes in beam-correlated noise, fitted
    together from rough starts over 100 noise draws: every fit valid, each component's
    centre, amplitude and sizes unbiased (means), its scatter that of its SNR; no start
    at all is refused."""
    from cianna_jax.astro.gaussfit import fit_gaussian_blends

    rng = np.random.default_rng(6)
    truth = [(18.0, 20.0, 1.0, 1.5, 1.2, 0.3), (22.0, 19.5, 0.7, 1.3, 1.3, 0.0),
             (20.5, 23.5, 0.5, 1.8, 1.3, 1.2)]
    S, n = 41, 100
    img = sum(_gauss(x, y, a, sa, sb, th)[:S, :S] for x, y, a, sa, sb, th in truth)
    st = img[None] + 0.02 * correlated_noise((n, 64, 64), 1.0, 3.0, rng)[:, :S, :S]
    w = np.ones_like(st)
    starts = [np.tile([0.8 * a, x + 0.5, y - 0.4, 1.3, 1.3], (n, 1))
              for x, y, a, *_ in truth]
    fits = fit_gaussian_blends(st, w, starts)
    assert len(fits) == 3 and all(g.ok.all() for g in fits)
    for g, (x, y, amp, sa, sb, _) in zip(fits, truth):
        np.testing.assert_allclose([g.x0.mean(), g.y0.mean()], [x, y], atol=0.03)
        assert max(g.x0.std(), g.y0.std()) < 0.15
        np.testing.assert_allclose(g.amplitude.mean(), amp, rtol=0.02)
        # a round source's major axis is the larger of two noisy ones: 3% high at most
        np.testing.assert_allclose([g.sigma_major.mean(), g.sigma_minor.mean()], [sa, sb],
                                   rtol=0.04)
    with pytest.raises(ValueError, match="init"):
        fit_gaussian_blends(st, w, [])


def test_a_pairs_errors_come_from_its_joint_covariance():
    """300 realisations of two SNR-20 point sources 1.1 beams apart in beam-correlated
    noise, fitted together: each component's predicted errors (its block of the pair's
    12x12 covariance) match the scatter of its fitted centre and amplitude (to 20%), and
    exceed what the component's covariance alone would say."""
    from cianna_jax.astro.fit_errors import correlation_kernel, fit_covariance, fit_errors
    from cianna_jax.astro.gaussfit import fit_gaussian_blends

    rng = np.random.default_rng(9)
    S, n, amp = 25, 300, 20.0
    d = 0.78 * BEAM
    truth = [(12.0, 12.0), (12.0 + d, 12.0 + d)]
    img = sum(_gauss(x, y, amp, BEAM / FWHM) for x, y in truth)[:S, :S]
    st = img[None] + correlated_noise((n, 48, 48), 1.0, BEAM, rng)[:, :S, :S]
    w = np.ones_like(st)
    s = BEAM / FWHM
    starts = tuple(np.tile([amp, x, y, s, s], (n, 1)) for x, y in truth)
    a, b = fit_gaussian_blends(st, w, starts)
    assert a.ok.mean() > 0.95
    ok = a.ok
    kernel = correlation_kernel(S, s, s, 0.0)
    joint = fit_covariance(np.concatenate([a.params[ok], b.params[ok]], axis=1), w[ok], kernel)
    assert joint.shape == (int(ok.sum()), 12, 12)
    e = fit_errors(a.params[ok], joint[:, :6, :6], np.ones(int(ok.sum())))
    alone = fit_errors(a.params[ok], fit_covariance(a.params[ok], w[ok], kernel),
                       np.ones(int(ok.sum())))
    emp = np.array([a.x0[ok].std(), a.y0[ok].std(), a.amplitude[ok].std()])
    pred = np.array([np.median(e.x0), np.median(e.y0), np.median(e.amplitude)])
    np.testing.assert_allclose(emp / pred, 1.0, atol=0.2)
    assert np.median(e.x0) > 1.1 * np.median(alone.x0)   # alone: the overlap ignored
    assert np.median(e.amplitude) > 1.05 * np.median(alone.amplitude)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune")  # JAX started by earlier tests
def test_deblend_check_scores_each_split_on_a_blend_field(tmp_path, tiny_model, capsys):
    """benchmarks/deblend_check.py on a small field of groups of three: one scored row
    without the split and one per --max-peaks."""
    import importlib
    import sys
    from pathlib import Path

    bench_dir = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, bench_dir)
    try:
        check = importlib.import_module("deblend_check")
    finally:
        sys.path.remove(bench_dir)
    assert check.main(["--model", tiny_model, "--blend-field", "3", "--blend-members", "2",
                       "--size", "128", "--max-peaks", "2", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "blend_field_3_k2.fits").exists()
    rows = [line.split() for line in out.splitlines()]
    names = [" ".join(r[:3]) if r[0] == "split" else " ".join(r[:2]) for r in rows[2:]]
    assert names == ["without split", "split <= 2", "split <= 3"]
    for r in rows[2:]:
        p, rec, f1 = (float(v) for v in r[-9:-6])
        assert 0.0 <= p <= 1.0 and 0.0 <= rec <= 1.0 and 0.0 <= f1 <= 1.0


def test_the_command_line_default_is_the_library_s():
    from cianna_jax.astro.deblend import MAX_PEAKS
    from cianna_jax.cli import _parser

    p = _parser()
    for cmd in (["predict", "--model", "m", "--image", "i", "--out", "o"],
                ["inject", "--model", "m", "--image", "i", "--out", "o"],
                ["val", "--model", "m", "--image", "i", "--catalogue", "c", "--out", "o"]):
        assert p.parse_args(cmd).max_peaks == MAX_PEAKS
