"""The non-linear matter power spectrum (astro.halofit): Takahashi et al.'s halofit against
CAMB's on CAMB's own linear spectrum, the linear limit, the bias fitted back on non-linear
scales, and ``clustering --bias --nonlinear``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.halofit import (  # noqa: E402
    halofit,
    nonlinear_power,
    power_function,
    spectral_parameters,
)

DATA = Path(__file__).parent.parent / "data" / "camb_halofit.json"


@pytest.mark.parametrize("z", [0.0, 1.0])
def test_halofit_equals_cambs_on_its_linear_spectrum(z):
    # CAMB 2.0.5's linear and halofit (Takahashi) spectra, 241 points over 1e-4-100 Mpc^-1
    d = json.loads(DATA.read_text())
    k, lin, nl = (np.array(d[f]) for f in ("k", f"lin_z{z:g}", f"nl_z{z:g}"))
    om0 = d["om0"]
    e2 = om0 * (1 + z) ** 3 + 1 - om0
    ours = halofit(k, lin, om0 * (1 + z) ** 3 / e2, (1 - om0) / e2)
    use = (k > 1e-3) & (k < 30)
    np.testing.assert_allclose(ours[use] / nl[use], 1.0, atol=5e-3)
    assert nl[np.argmin(np.abs(k - 1.0))] / lin[np.argmin(np.abs(k - 1.0))] > 5  # non-linear


def test_spectral_parameters_of_a_power_law():
    # Delta^2 = (k / k0)^(n + 3): sigma^2(R) = Gamma((n+3)/2) / 2 (k0 R)^-(n+3), so
    # n_eff = n and C = 0; sigma^2 = 1 at k_sigma = k0 (Gamma((n+3)/2) / 2)^(-1/(n+3))
    k = np.geomspace(1e-4, 1e4, 8000)
    n = -1.5
    ks, neff, c = spectral_parameters(k, (k / 0.3) ** (n + 3))
    assert neff == pytest.approx(n, abs=1e-3) and c == pytest.approx(0.0, abs=1e-3)
    assert ks == pytest.approx(0.3 * (math.gamma((n + 3) / 2) / 2) ** (-1 / (n + 3)), rel=1e-3)
    with pytest.raises(ValueError, match="does not cross 1"):
        spectral_parameters(k, 1e-12 * (k / 0.3) ** (n + 3))


def test_nonlinear_power_of_a_cosmology():
    k = np.array([1e-3, 0.01, 1.0])
    from cianna_jax.astro.galaxy_bias import linear_power

    ratio = nonlinear_power(k, 0.5) / linear_power(k, 0.5)
    assert abs(ratio[0] - 1) < 0.01 and abs(ratio[1] - 1) < 0.02 and ratio[2] > 3
    np.testing.assert_allclose(power_function()(k, 0.5), nonlinear_power(k, 0.5), rtol=2e-3)


def test_the_bias_on_non_linear_scales_needs_the_non_linear_spectrum():
    from dataclasses import replace

    from cianna_jax.astro.clustering import angular_correlation, log_edges
    from cianna_jax.astro.galaxy_bias import fit_bias, matter_w

    z = np.linspace(0.01, 3.0, 120)
    nz = np.exp(-0.5 * ((z - 1.0) / 0.3) ** 2)
    rng = np.random.default_rng(0)
    ra, dec = 150 + rng.uniform(-1, 1, 300), 2 + rng.uniform(-1, 1, 300)
    rra, rdec = 150 + rng.uniform(-1, 1, 3000), 2 + rng.uniform(-1, 1, 3000)
    c = angular_correlation(ra, dec, rra, rdec, log_edges(0.005, 1.0, 8), jackknife=4)
    power = power_function()
    mid = np.sqrt(c.ic_edges[:-1] * c.ic_edges[1:])
    ic = np.sum(c.ic_rr * matter_w(mid, z, nz, power=power)) / np.sum(c.ic_rr)
    truth = 1.8 ** 2 * (matter_w(c.theta, z, nz, power=power) - ic)
    fake = replace(c, w=truth, w_err=0.03 * np.abs(truth) + 1e-6)
    nl = fit_bias(fake, z, nz, scale_mpc_h=0.5, power=power, power_model="halofit")
    lin = fit_bias(fake, z, nz, scale_mpc_h=0.5)
    assert nl.bias == pytest.approx(1.8, rel=1e-3) and nl.as_dict()["power_model"] == "halofit"
    assert lin.bias > 1.9 and lin.chi2 > 100 * max(nl.chi2, 1e-3)
