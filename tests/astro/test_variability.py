"""Variability between epochs: the metrics against their formulas, sources first found
later, the flux-scale error, the simulator's epochs and the command line end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")
from astropy.table import Table  # noqa: E402

from cianna_jax.astro.catalogue import read_catalogue  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, truth_table  # noqa: E402
from cianna_jax.astro.variability import variability  # noqa: E402
from cianna_jax.cli import main  # noqa: E402


def _cat(flux, err, ra):
    return Table({"ra": np.asarray(ra, float), "dec": np.zeros(len(ra)),
                  "flux": np.asarray(flux, float), "flux_err": np.asarray(err, float)})


EPOCHS = [_cat([1.0, 2.0, 0.5], [0.05, 0.05, 0.05], [10.0, 10.01, 10.02]),
          _cat([1.02, 1.0, 0.3], [0.05, 0.04, 0.05], [10.0, 10.01, 10.03]),
          _cat([0.98, 1.9], [0.05, 0.05], [10.0, 10.01])]


def test_the_metrics_are_their_formulas():
    t = variability(EPOCHS, radius_arcsec=2.0)
    assert list(t["ra"]) == [10.01, 10.0, 10.02, 10.03]  # by decreasing |vs|
    assert list(t["first_epoch"]) == [1, 1, 1, 2] and list(t["n_epochs"]) == [3, 3, 1, 1]
    r = t[0]
    s, e = np.array([2.0, 1.0, 1.9]), np.array([0.05, 0.04, 0.05])
    w = 1 / e**2
    eta = 3 / 2 * (np.mean(w * s * s) - np.mean(w * s) ** 2 / np.mean(w))
    assert r["eta"] == pytest.approx(eta) and r["v"] == pytest.approx(np.std(s, ddof=1) / s.mean())
    assert r["flux_mean"] == pytest.approx(np.sum(w * s) / np.sum(w))
    assert r["vs_pair"] == "1-2" and r["vs"] == pytest.approx(1.0 / math.hypot(0.05, 0.04))
    assert r["m"] == pytest.approx(2 / 3) and r["variable"]
    assert not t["variable"][1] and t["vs_pair"][1] == "2-3"  # 0.04 / 0.0707: the largest
    assert np.isnan(t["eta"][2]) and t["vs_pair"][2] == "" and not t["variable"][2]
    assert t.meta["n_variable"] == 1 and t["flux_1"].unit == "Jy"


def test_a_flux_scale_error_widens_the_errors():
    t = variability(EPOCHS[:2], radius_arcsec=2.0, flux_scale_error=0.1)
    r = t[t["ra"] == 10.01][0]
    assert r["flux_err_1"] == pytest.approx(math.hypot(0.05, 0.2))
    assert r["vs"] == pytest.approx(1.0 / math.hypot(math.hypot(0.05, 0.2), math.hypot(0.04, 0.1)))


def test_refusals():
    with pytest.raises(ValueError, match="two epochs"):
        variability(EPOCHS[:1], radius_arcsec=1.0)
    with pytest.raises(ValueError, match="flux_scale_error"):
        variability(EPOCHS, radius_arcsec=1.0, flux_scale_error=1.5)
    with pytest.raises(ValueError, match="radius_arcsec"):
        variability(EPOCHS)


def test_the_simulator_epochs():
    kw = dict(seed=3, density=0.003, variable_fraction=0.3, variability=0.5)
    a, b = synthetic_field(64, epoch=0, **kw), synthetic_field(64, epoch=1, **kw)
    ta, tb = truth_table(a), truth_table(b)
    np.testing.assert_array_equal(ta["x"], tb["x"])
    np.testing.assert_array_equal(ta["variable"], tb["variable"])
    var = np.asarray(ta["variable"])
    assert var.any() and (~var).any()
    np.testing.assert_array_equal(ta["flux"][~var], tb["flux"][~var])
    assert np.all(ta["flux"][var] != tb["flux"][var])
    assert not np.allclose(a.image, b.image)
    for bad in (dict(epoch=-1), dict(epoch=0, variable_fraction=2.0), dict(epoch=True)):
        with pytest.raises(ValueError):
            synthetic_field(64, seed=3, **bad)


def test_the_command_line_end_to_end(tmp_path, tiny_model, capsys):
    pytest.importorskip("matplotlib")
    from cianna_jax.astro.synthetic import write_fits

    cats = []
    for e in (0, 1):  # bright sources, as the tiny model finds them (conftest's field)
        img, cat = tmp_path / f"e{e}.fits", tmp_path / f"c{e}.ecsv"
        write_fits(img, synthetic_field(96, seed=7, nan_border=6, density=0.004,
                                        snr_range=(20.0, 3000.0), epoch=e,
                                        variable_fraction=0.5, variability=0.5))
        assert main(["predict", "--model", tiny_model, "--image", str(img), "--out", str(cat),
                     "--quiet"]) == 0
        cats.append(str(cat))
    out, fig = tmp_path / "var.ecsv", tmp_path / "var.png"
    assert main(["variability", "--catalogue", cats[0], "--catalogue", cats[1],
                 "--flux-scale-error", "0.02", "--out", str(out), "--figure", str(fig)]) == 0
    assert "with a flux at two or more" in capsys.readouterr().out
    assert fig.stat().st_size > 10_000
    t = read_catalogue(str(out))
    assert t.meta["flux_scale_error"] == 0.02 and np.any(t["n_epochs"] == 2)
    # with the epochs' images every source has a flux at both: found or forced
    assert main(["variability", "--catalogue", cats[0], "--catalogue", cats[1], "--image",
                 str(tmp_path / "e0.fits"), "--image", str(tmp_path / "e1.fits"),
                 "--out", str(out)]) == 0
    t = read_catalogue(str(out))
    one = np.asarray(t["n_epochs"])
    assert np.all(one == 2) and "fluxes forced" in capsys.readouterr().out
    assert np.all(np.asarray(t["forced_1"]) | np.asarray(t["forced_2"]) | (one == 2))
    assert main(["variability", "--catalogue", cats[0], "--catalogue", cats[1], "--image",
                 str(tmp_path / "e0.fits"), "--out", str(out)]) == 2
    assert main(["variability", "--catalogue", cats[0], "--out", str(out)]) == 2
    assert main(["simulate", "--out", str(tmp_path / "s.fits"), "--size", "64", "--epoch",
                 "1"]) == 0


def test_forced_fluxes_are_unbiased_with_the_right_errors(tmp_path):
    """Forced photometry on a field of noise correlated as the beam (pulls scatter as 1,
    centred on 0), on the true point sources of a field (their fluxes within the errors),
    and NaN off the image."""
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.forced import forced_fluxes
    from cianna_jax.astro.sky import pixel_to_sky
    from cianna_jax.astro.synthetic import write_fits

    write_fits(tmp_path / "n.fits", synthetic_field(256, seed=4, density=0.0))
    rng = np.random.default_rng(0)
    with open_image(str(tmp_path / "n.fits")) as img:
        ra, dec = pixel_to_sky(img.wcs, rng.uniform(10, 245, 300), rng.uniform(10, 245, 300))
        fl, er = forced_fluxes(img, ra, dec)
    pull = fl / er
    assert abs(pull.mean()) < 0.2 and 0.85 < pull.std() < 1.15
    assert np.median(er) == pytest.approx(1e-5, rel=0.3)
    f = synthetic_field(256, seed=5, density=0.002, snr_range=(30.0, 300.0))
    write_fits(tmp_path / "s.fits", f)
    t = truth_table(f)
    pts = t[np.asarray(t["kind"]) == 0]
    fl, er = forced_fluxes(str(tmp_path / "s.fits"), np.asarray(pts["ra"]),
                           np.asarray(pts["dec"]))
    pull = (fl - np.asarray(pts["flux"])) / er
    assert len(pts) >= 5 and np.median(np.abs(pull)) < 1.5
    off = forced_fluxes(str(tmp_path / "s.fits"), np.array([120.0]), np.array([10.0]))
    assert np.isnan(off[0][0]) and np.isnan(off[1][0])


def test_forced_at_every_epoch(tmp_path):
    """force_all: each source's flux at every epoch is the forced photometry at its
    position, detected or not; every image is needed."""
    from cianna_jax.astro.forced import catalogue_shapes, forced_fluxes
    from cianna_jax.astro.synthetic import write_fits

    kw = dict(seed=6, density=0.002, snr_range=(30.0, 300.0), variable_fraction=0.3,
              variability=0.5)
    paths, cats = [], []
    for e in range(2):
        f = synthetic_field(128, epoch=e, **kw)
        paths.append(str(tmp_path / f"e{e}.fits"))
        write_fits(paths[-1], f)
        t = truth_table(f)
        t["flux_err"] = 0.05 * np.asarray(t["flux"])
        cats.append(t[: len(t) - e])  # the second epoch misses the faintest-listed source
    v = variability(cats, images=paths, force_all=True, radius_arcsec=1.0, as_points=True)
    assert np.all(v["forced_1"]) and np.all(v["forced_2"]) and v.meta["forced_everywhere"]
    for k, p in enumerate(paths, start=1):
        fl, er = forced_fluxes(p, np.asarray(v["ra"]), np.asarray(v["dec"]))
        np.testing.assert_allclose(v[f"flux_{k}"], fl)
        np.testing.assert_allclose(v[f"flux_err_{k}"], er)
    # by default, the sources resolved in their first catalogue forced with their shapes
    shaped = variability(cats, images=paths, force_all=True, radius_arcsec=1.0)
    row = np.hypot(np.asarray(shaped["ra"])[:, None] - np.asarray(cats[0]["ra"]),
                   np.asarray(shaped["dec"])[:, None] - np.asarray(cats[0]["dec"])).argmin(1)
    shapes = tuple(a[row] for a in catalogue_shapes(cats[0]))
    assert np.count_nonzero(shapes[0]) >= 3 and "deconvolved" in shaped.meta["forced_shapes"]
    for k, p in enumerate(paths, start=1):
        fl, _ = forced_fluxes(p, np.asarray(shaped["ra"]), np.asarray(shaped["dec"]),
                              shapes=shapes)
        np.testing.assert_allclose(shaped[f"flux_{k}"], fl)
    some = variability(cats, images=paths, radius_arcsec=1.0)
    assert np.count_nonzero(some["forced_2"]) == 1 and not np.any(some["forced_1"])
    with pytest.raises(ValueError, match="every epoch's image"):
        variability(cats, images=[paths[0], None], force_all=True, radius_arcsec=1.0)


def test_forced_fluxes_of_resolved_sources_take_their_shape(tmp_path):
    """Extended sources forced with their intrinsic (deconvolved) Gaussians seen through
    the image's beam: fluxes whole, where the beam alone misses part of each; points
    unchanged by it."""
    from cianna_jax.astro.forced import catalogue_shapes, forced_fluxes
    from cianna_jax.astro.synthetic import write_fits

    f = synthetic_field(192, psf_fwhm=5.0, seed=8, density=0.0008,
                        snr_range=(3000.0, 30000.0), extended_fraction=0.5,
                        extended_size_range=(4.0, 8.0))  # (peak SNR ~50-400)
    write_fits(tmp_path / "b.fits", f)
    cat = truth_table(f)
    shapes = catalogue_shapes(cat)
    ext = np.asarray(cat["kind"]) == 1
    assert np.all(shapes[0][ext] > 0) and np.all(shapes[0][~ext] == 0) and ext.sum() >= 5
    ra, dec, true = np.asarray(cat["ra"]), np.asarray(cat["dec"]), np.asarray(cat["flux"])
    point, perr = forced_fluxes(str(tmp_path / "b.fits"), ra, dec)
    whole, werr = forced_fluxes(str(tmp_path / "b.fits"), ra, dec, shapes=shapes)
    assert np.median(point[ext] / true[ext]) < 0.8
    assert np.median(whole[ext] / true[ext]) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_array_equal(whole[~ext], point[~ext])
    assert np.all(werr[ext] > perr[ext])  # a wider template gathers more noise
    with pytest.raises(ValueError, match="shapes"):
        forced_fluxes(str(tmp_path / "b.fits"), ra, dec, shapes=(shapes[0][:2],) * 3)
