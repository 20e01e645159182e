"""A double power law fitted to the binned luminosity function (astro.lumfunc_fit,
``lumfunc --fit``): the model's form and evolution, the evolution of a simulated
population recovered and told from none, the command line and the refusals."""

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
    with pytest.raises(ValueError, match="evolution"):
        fit_luminosity_function(lf, "both")
    with pytest.raises(ValueError, match="bins of 400 sources or more"):
        fit_luminosity_function(lf, "ple", min_n=400)


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
    assert "double power law, pde evolution" in text and fig.stat().st_size > 10_000
    k_d, err = read_catalogue(out).meta["luminosity_function"]["fit"]["k_d"]
    assert abs(k_d - 2.0) < 3 * err
