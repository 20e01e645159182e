"""The linear bias (astro.galaxy_bias): the growth factor of an Einstein-de Sitter universe
and Planck18's, the linear power spectrum against CAMB's, the Fourier-space Limber projection
of a power law against the real-space one (astro.limber), the bias fitted back from a model,
and ``clustering --bias``."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.galaxy_bias import (  # noqa: E402
    fit_bias,
    growth_factor,
    linear_power,
    matter_w,
)

Z = np.linspace(0.01, 3.0, 120)
NZ = np.exp(-0.5 * ((Z - 1.0) / 0.3) ** 2)


def test_growth_factor():
    from astropy.cosmology import FlatLambdaCDM

    eds = FlatLambdaCDM(H0=70, Om0=1.0)
    np.testing.assert_allclose(growth_factor(np.array([0.0, 0.5, 2.0]), eds),
                               [1.0, 1 / 1.5, 1 / 3.0], rtol=1e-4)
    # CAMB 2.0.5 for Planck18 (this cosmology, 2026-12-07): sigma8(z=1) / sigma8(0) = 0.6093
    assert growth_factor(1.0) == pytest.approx(0.6093, rel=5e-3)


def test_linear_power_against_camb():
    # CAMB 2.0.5's linear P(k) at z = 0 for Planck18 (H0 67.66, Ob0 0.04897, Om0 0.30966,
    # n_s 0.9665, one massive neutrino of 0.06 eV) normalised to sigma8 0.8102, (Mpc/h)^3 at
    # k = 0.0101, 0.102, 0.496, 2.99 h/Mpc (measured on 2026-12-07): Eisenstein & Hu's
    # no-wiggle form is within the baryon wiggles' 6% of it
    h = 0.6766
    kh = np.array([0.0101, 0.102, 0.496, 2.99])
    camb = np.array([22500.0, 5279.1, 316.3, 4.8])
    ours = linear_power(kh * h) * h ** 3
    np.testing.assert_allclose(ours / camb, 1.0, atol=0.07)
    # sigma8 of the normalised spectrum: 8 Mpc/h top hat
    k = np.geomspace(1e-5, 1e2, 20000)
    x = k * 8.0 / h
    win = 3 * (np.sin(x) - x * np.cos(x)) / x ** 3
    s8 = math.sqrt(np.trapezoid(k ** 3 * linear_power(k) * win ** 2, np.log(k))
                   / (2 * math.pi ** 2))
    assert s8 == pytest.approx(0.8102, rel=1e-3)
    assert linear_power(np.array([0.1]), 1.0)[0] == pytest.approx(
        linear_power(np.array([0.1]))[0] * growth_factor(1.0) ** 2)


def test_fourier_limber_of_a_power_law_equals_the_real_space_one():
    # xi = (r / 6 Mpc)^-1.8 <-> P(k) = 4 pi r0^g Gamma(2 - g) sin(pi (2 - g) / 2) k^(g - 3),
    # smoothed below 0.05 Mpc; comoving clustering (no evolution)
    from cianna_jax.astro.limber import amplitude_from_r0, limber_kernel

    g, r0 = 1.8, 6.0
    amp = 4 * math.pi * r0 ** g * math.gamma(2 - g) * math.sin(math.pi * (2 - g) / 2)

    def power(k, z):
        return amp * k ** (g - 3) * np.exp(-(k / 20.0) ** 2)

    theta = np.array([0.03, 0.1, 0.3])
    w = matter_w(theta, Z, NZ, power=power)
    want = amplitude_from_r0(r0, g, limber_kernel(Z, NZ, g)) * theta ** (1 - g)
    np.testing.assert_allclose(w, want, rtol=0.02)


def test_the_bias_is_fitted_back_with_the_scale_cut():
    from dataclasses import replace

    from cianna_jax.astro.clustering import angular_correlation, log_edges

    rng = np.random.default_rng(0)
    ra, dec = 150 + rng.uniform(-1, 1, 300), 2 + rng.uniform(-1, 1, 300)
    rra, rdec = 150 + rng.uniform(-1, 1, 3000), 2 + rng.uniform(-1, 1, 3000)
    c = angular_correlation(ra, dec, rra, rdec, log_edges(0.01, 1.0, 8), jackknife=4)
    mid = np.sqrt(c.ic_edges[:-1] * c.ic_edges[1:])
    ic = np.sum(c.ic_rr * matter_w(mid, Z, NZ)) / np.sum(c.ic_rr)
    truth = 2.2 ** 2 * (matter_w(c.theta, Z, NZ) - ic)
    small = c.theta < 0.05  # non-linear scales: a model this fit must leave out
    fake = replace(c, w=np.where(small, 10 * truth, truth), w_err=0.05 * np.abs(truth) + 1e-6)
    fit = fit_bias(fake, Z, NZ, scale_mpc_h=5.0)
    # 5 Mpc/h at z 1 (3,400 Mpc comoving) is 0.12 deg: the small bins are left out
    assert 0.1 < fit.theta_min < 0.14 and fit.n_bins == int(np.sum(c.theta >= fit.theta_min))
    assert fit.bias == pytest.approx(2.2, rel=1e-3) and fit.chi2 < 1e-6
    assert fit.as_dict()["z_median"] == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="no bin beyond 500"):
        fit_bias(fake, Z, NZ, scale_mpc_h=500.0)


def test_command_line_bias(tmp_path, capsys):
    from cianna_jax.astro.catalogue import make_table, read_catalogue, write_catalogue
    from cianna_jax.cli import main

    from .test_clustering import _field

    img_p, rms_p, cat_p = _field(tmp_path, 12, hole=False)
    write_catalogue(make_table({"z": Z, "n": NZ}), tmp_path / "nz.ecsv")
    out = tmp_path / "w.ecsv"
    argv = ["clustering", "--catalogue", str(cat_p), "--image", str(img_p), "--rms-map",
            str(rms_p), "--out", str(out), "--bins", "5", "--jackknife", "4", "--nz",
            str(tmp_path / "nz.ecsv"), "--bias", "--bias-scale", "0.5"]
    assert main(argv) == 0
    assert ("linear bias against the matter (linear spectrum; bins beyond 0.5 Mpc/h"
            in capsys.readouterr().out)
    b = read_catalogue(out).meta["clustering"]["bias"]
    assert b["scale_mpc_h"] == 0.5 and b["dof"] >= 1 and b["power_model"] == "linear"
    assert main(argv + ["--nonlinear"]) == 0
    assert "(halofit spectrum;" in capsys.readouterr().out
    assert read_catalogue(out).meta["clustering"]["bias"]["power_model"] == "halofit"
    assert main(argv[:-3] + ["--cross", str(cat_p), "--bias"]) == 2
    assert "--nz, --redshifts" in capsys.readouterr().err
