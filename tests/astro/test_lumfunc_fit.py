"""A double power law fitted to the luminosity function (astro.lumfunc_fit, ``lumfunc
--fit``), to its bins and by the maximum likelihood on its sources: the model's form and
evolution, the evolution of a simulated population recovered and told from none, the
likelihood's selection integral, the command line and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")
pytest.importorskip("scipy")

from cianna_jax.astro.lumfunc_fit import double_power_law, fit_luminosity_function  # noqa: E402
from cianna_jax.astro.luminosity_function import (  # noqa: E402
    Coverage,
    luminosity_function,
    simulate_population,
)

LOG_PHI, LOG_L, ALPHA, BETA = -5.0, 24.0, 0.4, 1.6
AREA = 30.0 * (math.pi / 180) ** 2
Z_EDGES = [0.1, 0.5, 1.0, 1.5, 2.2]


def _phi(logl):
    return double_power_law(logl, 0.0, LOG_PHI, LOG_L, ALPHA, BETA)


def test_the_model_and_its_evolution():
    assert double_power_law(LOG_L, 0.0, LOG_PHI, LOG_L, ALPHA, BETA) == pytest.approx(5e-6)
    logl = np.linspace(21, 27, 7)
    # pure luminosity evolution moves the function along L, density evolution scales it
    np.testing.assert_allclose(double_power_law(logl + 2.5 * math.log10(2.0), 1.0, LOG_PHI,
                                                LOG_L, ALPHA, BETA, k_l=2.5), _phi(logl))
    np.testing.assert_allclose(double_power_law(logl, 1.0, LOG_PHI, LOG_L, ALPHA, BETA,
                                                k_d=1.5), _phi(logl) * 2 ** 1.5)
    # the slopes: alpha well below L*, beta well above (dex per dex)
    lo, hi = double_power_law(np.array([20.0, 20.1, 28.0, 28.1]), 0.0, LOG_PHI, LOG_L, ALPHA,
                              BETA).reshape(2, 2)
    assert np.log10(lo[1] / lo[0]) / 0.1 == pytest.approx(-ALPHA, abs=0.01)
    assert np.log10(hi[1] / hi[0]) / 0.1 == pytest.approx(-BETA, abs=0.01)


def _measured(evolution, seed=1, area=AREA):
    z, flux = simulate_population(_phi, area, np.random.default_rng(seed), evolution=evolution)
    keep = flux >= 1e-4
    return luminosity_function(flux[keep], z[keep], Coverage.flux_limit(area, 1e-4),
                               z_edges=Z_EDGES, logl_edges=np.arange(21, 28.01, 0.5)), z, flux


def test_luminosity_evolution_recovered_and_told_from_none():
    lf, _, _ = _measured((2.5, 0.0))
    ple = fit_luminosity_function(lf, "ple")
    none = fit_luminosity_function(lf, "none")
    assert abs(ple.params["k_l"] - 2.5) < 3 * ple.errors["k_l"] and ple.errors["k_l"] < 0.3
    assert ple.chi2 / ple.dof < 2.0 < 10.0 < none.chi2 / none.dof
    for k, want in (("log_phi_star", LOG_PHI), ("log_l_star", LOG_L), ("alpha", ALPHA),
                    ("beta", BETA)):
        assert abs(ple.params[k] - want) < 3 * ple.errors[k], k
    # the bins' mean redshifts lie within their bins
    zm = lf.z_mean[lf.n > 0]
    zb = np.broadcast_to(np.arange(len(Z_EDGES) - 1)[:, None], lf.n.shape)[lf.n > 0]
    assert np.all((zm >= np.array(Z_EDGES)[zb]) & (zm < np.array(Z_EDGES)[zb + 1]))
    t = ple.table()
    assert list(t["parameter"]) == ["log_phi_star", "log_l_star", "alpha", "beta", "k_l"]
    assert "k_l 2.5" in ple.summary()
    with pytest.raises(ValueError, match="evolution: expected one of none, ple, pde, both"):
        fit_luminosity_function(lf, "ple+pde")
    with pytest.raises(ValueError, match="bins of 400 sources or more"):
        fit_luminosity_function(lf, "ple", min_n=400)


def test_maximum_likelihood_recovers_the_evolution_more_tightly():
    """On the sources themselves: the simulated density evolution and the function's shape
    recovered within 3 sigma, with errors 2x or more smaller than the bins' fit; the
    likelihood prefers the right evolution; its chi^2 against the bins stays modest."""
    lf, _, _ = _measured((0.0, 2.0))
    ml = fit_luminosity_function(lf, "pde", method="ml")
    binned = fit_luminosity_function(lf, "pde")
    assert ml.method == "ml" and ml.n_sources == lf.sample.logl.size > 1000
    for k, want in (("log_phi_star", LOG_PHI), ("log_l_star", LOG_L), ("alpha", ALPHA),
                    ("beta", BETA), ("k_d", 2.0)):
        assert abs(ml.params[k] - want) < 3 * ml.errors[k], k
        assert ml.errors[k] < 0.6 * binned.errors[k], k
    ple = fit_luminosity_function(lf, "ple", method="ml")
    assert ml.log_likelihood > ple.log_likelihood + 20
    both = fit_luminosity_function(lf, "both", method="ml")  # the two evolutions free
    assert abs(both.params["k_d"] - 2.0) < 3 * both.errors["k_d"]
    assert abs(both.params["k_l"]) < 3 * both.errors["k_l"]
    assert both.log_likelihood >= ml.log_likelihood - 1e-3
    assert ml.chi2 / ml.dof < 3.0 < ple.chi2 / ple.dof
    assert "maximum likelihood on" in ml.summary()
    # where too few bins are complete, the likelihood still fits (from its own start)
    few = fit_luminosity_function(lf, "pde", method="ml", min_n=400)
    assert few.n_bins == 0 and math.isnan(few.chi2) and "too few complete bins" in few.summary()
    for k in ml.params:
        assert few.params[k] == pytest.approx(ml.params[k], abs=0.05 * ml.errors[k] + 1e-3), k
    with pytest.raises(ValueError, match="method: expected one of binned, ml"):
        fit_luminosity_function(lf, "pde", method="mle")
    from dataclasses import replace

    with pytest.raises(ValueError, match="needs the sources"):
        fit_luminosity_function(replace(lf, sample=None), "pde", method="ml")


def test_the_likelihood_is_not_led_astray_by_the_bins_fit():
    """A draw whose bins' fit wanders to a faint slope of -9 (few complete faint bins):
    the likelihood, also started from the sources' median luminosity, keeps the better
    optimum, near the truth; wild trial values overflow nothing."""
    area = AREA / 3
    z, flux = simulate_population(_phi, area, np.random.default_rng(2), evolution=(0.0, 2.0),
                                  z_range=(0.02, 3.5))
    keep = flux >= 1e-4
    lf = luminosity_function(flux[keep], z[keep], Coverage.flux_limit(area, 1e-4),
                             z_edges=[0.3, 1.0, 1.6, 2.2], logl_edges=np.arange(21, 28.01, 0.5))
    assert fit_luminosity_function(lf, "pde").params["alpha"] < -5  # the bins' fit astray
    ml = fit_luminosity_function(lf, "pde", method="ml")
    for k, want in (("alpha", ALPHA), ("k_d", 2.0), ("log_l_star", LOG_L)):
        assert abs(ml.params[k] - want) < 3 * ml.errors[k], k
    assert np.isfinite(double_power_law(25.0, 1.0, 400.0, 24.0, -300.0, 900.0))


def test_the_likelihood_expects_the_surveys_sources():
    """The selection integral: the true function over the coverage expects as many sources
    as the survey found (Poisson), the check of the flux a luminosity makes at a redshift."""
    from cianna_jax.astro.luminosity import radio_luminosity

    lf, _, _ = _measured((0.0, 0.0), seed=3)
    s = lf.sample
    z = np.array([0.3, 1.2])
    np.testing.assert_allclose(s.flux(np.log10(radio_luminosity(np.array([1e-3, 2e-4]), z)),
                               z), [1e-3, 2e-4], rtol=1e-10)
    from cianna_jax.astro import lumfunc_fit as lff

    truth = lff.fit_luminosity_function(lf, "none", method="ml")
    n_found = float(np.sum(s.weights))
    # at the maximum the expected number equals the (weighted) count: d lnL / d ln Phi* = 0
    p = truth.params
    zg = np.linspace(s.z_range[0], s.z_range[1], lff.ML_Z_SAMPLES)
    lg = np.arange(s.logl_range[0], s.logl_range[1] + lff.ML_DEX / 2, lff.ML_DEX)
    from cianna_jax.astro.luminosity import cosmology_by_name

    dvdz = cosmology_by_name(s.cosmology).differential_comoving_volume(zg).to_value("Mpc3/sr")
    sel = s.coverage.area((s.flux(lg[None], zg[:, None]) * s.peak_ratio).ravel()).reshape(
        zg.size, lg.size) * dvdz[:, None]
    expected = np.trapezoid(np.trapezoid(double_power_law(lg[None], zg[:, None], **p) * sel,
                                         lg, axis=1), zg)
    assert expected == pytest.approx(n_found, rel=2e-3)


def test_command_line_fit_and_figure(tmp_path, capsys):
    from cianna_jax.astro.catalogue import make_table, read_catalogue, write_catalogue
    from cianna_jax.cli import main

    _, z, flux = _measured((0.0, 2.0), seed=2, area=AREA / 3)
    keep = flux >= 1e-4
    write_catalogue(make_table({"flux": flux[keep], "z": z[keep]}), tmp_path / "c.ecsv")
    out, fig = tmp_path / "lf.ecsv", tmp_path / "lf.png"
    assert main(["lumfunc", "--catalogue", str(tmp_path / "c.ecsv"), "--z-column", "z",
                 "--area-deg2", "10", "--flux-limit", "1e-4", "--z-bins", "0.1,0.5,1,1.5,2.2",
                 "--dex", "0.5", "--fit", "pde", "--figure", str(fig), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "double power law, pde evolution (maximum likelihood on" in text
    assert fig.stat().st_size > 10_000
    meta = read_catalogue(out).meta["luminosity_function"]["fit"]
    k_d, err = meta["k_d"]
    assert abs(k_d - 2.0) < 3 * err and meta["method"] == "ml"
    assert main(["lumfunc", "--catalogue", str(tmp_path / "c.ecsv"), "--z-column", "z",
                 "--area-deg2", "10", "--flux-limit", "1e-4", "--z-bins", "0.1,0.5,1,1.5,2.2",
                 "--dex", "0.5", "--fit", "pde", "--fit-method", "binned", "--out",
                 str(tmp_path / "b.ecsv")]) == 0
    assert "double power law, pde evolution: " in capsys.readouterr().out
    assert main(["lumfunc", "--catalogue", str(tmp_path / "c.ecsv"), "--z-column", "z",
                 "--area-deg2", "10", "--flux-limit", "1e-4", "--z-bins", "0.1,0.5,1,1.5,2.2",
                 "--dex", "0.5", "--fit", "compare", "--out", str(tmp_path / "k.ecsv")]) == 0
    assert "evolution models by AIC (2k - 2 ln L" in capsys.readouterr().out
    meta = read_catalogue(tmp_path / "k.ecsv").meta["luminosity_function"]
    aic = meta["compare"]
    assert set(aic) == {"none", "ple", "pde", "both"} and meta["fit"]["evolution"] in ("pde", "both")
    assert min(aic["none"], aic["ple"]) > min(aic["pde"], aic["both"]) + 10
    assert main(["lumfunc", "--catalogue", str(tmp_path / "c.ecsv"), "--z-column", "z",
                 "--area-deg2", "10", "--flux-limit", "1e-4", "--fit-method", "ml", "--out",
                 str(tmp_path / "x.ecsv")]) == 2
    assert "--fit-method: with --fit" in capsys.readouterr().err
