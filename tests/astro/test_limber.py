"""Limber's equation (astro.limber): the amplitude against the exact projection of a power
law through a narrow shell, the round trip r0 -> A -> r0, the clustering's evolution, the
redshift distributions from tables and catalogues, and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError, make_table, write_catalogue  # noqa: E402
from cianna_jax.astro.limber import (  # noqa: E402
    ClusteringLength,
    H_gamma,
    amplitude_from_r0,
    limber_kernel,
    r0_from_amplitude,
    read_nz,
    redshift_distribution,
)


def test_limber_against_the_exact_projection():
    # xi = (r / 8 Mpc)^-1.8 through a Gaussian shell in comoving distance (2000 +- 150 Mpc):
    # Limber's w at 0.03 deg against the double integral over both sources' distances
    from astropy.cosmology import Planck18
    from scipy.integrate import quad

    g, r0, c0, s = 1.8, 8.0, 2000.0, 150.0
    z = np.linspace(0.05, 1.5, 3000)
    chi = Planck18.comoving_transverse_distance(z).to_value("Mpc")

    def p(x):
        return np.exp(-0.5 * ((x - c0) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    k = limber_kernel(z, p(chi) * np.gradient(chi, z), g, samples=6000)
    theta_deg = 0.03
    t = math.radians(theta_deg)

    def along(cb):
        def f(d):
            a, b = cb + d / 2, cb - d / 2
            return p(a) * p(b) * (math.sqrt(a * a + b * b - 2 * a * b * math.cos(t)) / r0) ** -g
        return sum(quad(f, lo, hi, limit=400)[0]
                   for lo, hi in ((-6 * s, -20.0), (-20.0, 20.0), (20.0, 6 * s)))

    cbs = np.linspace(c0 - 5 * s, c0 + 5 * s, 101)
    exact = np.trapezoid([along(cb) for cb in cbs], cbs)
    limber = amplitude_from_r0(r0, g, k) * theta_deg ** (1 - g)
    assert exact == pytest.approx(limber, rel=0.015)
    assert H_gamma(1.8) == pytest.approx(3.6791, abs=1e-4)


def test_round_trip_and_evolution():
    z = np.linspace(0.0, 3.0, 61)
    nz = np.exp(-0.5 * ((z - 1.0) / 0.4) ** 2)
    k = limber_kernel(z, nz, 1.8)
    a = amplitude_from_r0(10.0, 1.8, k)
    assert 1e-3 < a < 1e-2  # radio surveys' amplitudes (theta in degrees)
    assert r0_from_amplitude(a, 1.8, k) == pytest.approx(10.0, rel=1e-12)
    assert math.isnan(r0_from_amplitude(-a, 1.8, k))
    assert limber_kernel(z, 7.0 * nz, 1.8) == pytest.approx(k, rel=1e-12)  # any normalisation
    # stable clustering (epsilon 0) weights z ~ 1 by (1+z)^-1.2 against comoving clustering
    stable = limber_kernel(z, nz, 1.8, epsilon=0.0)
    assert stable / k == pytest.approx(2.0 ** -1.2, rel=0.05)
    r = ClusteringLength.from_fit(a, 0.1 * a, 1.8, z, nz)
    d = r.as_dict()
    assert d["r0_mpc"] == pytest.approx(10.0) and d["r0_err_mpc"] == pytest.approx(10.0 / 18)
    assert d["r0_h_mpc"] == pytest.approx(10.0 * 0.6766, rel=1e-3)
    assert d["z_median"] == pytest.approx(1.0, abs=0.03) and d["epsilon"] == pytest.approx(-1.2)
    for bad, msg in (((z, nz[:-1]), "as many values"), ((z[::-1], nz), "increasing"),
                     ((z, -nz), "non-negative")):
        with pytest.raises(ValueError, match=msg):
            limber_kernel(*bad, 1.8)
    with pytest.raises(ValueError, match="gamma"):
        limber_kernel(z, nz, 0.9)
    with pytest.raises(ValueError, match="cosmology"):
        limber_kernel(z, nz, 1.8, cosmology="Planck99")


def test_redshift_distributions(tmp_path):
    zc, n = redshift_distribution([0.01, 0.02, 0.07, np.nan, -1.0, 0.5], step=0.05)
    assert zc[0] == pytest.approx(0.025) and n[0] == 2 and n[1] == 1 and n.sum() == 4
    with pytest.raises(ValueError, match="two finite"):
        redshift_distribution([np.nan, 1.0])
    write_catalogue(make_table({"z": [0.1, 0.5, 1.0], "n": [1.0, 3.0, 1.0]}), tmp_path / "nz.ecsv")
    z, nz = read_nz(tmp_path / "nz.ecsv")
    np.testing.assert_array_equal(nz, [1.0, 3.0, 1.0])
    write_catalogue(make_table({"ra": [1.0, 2.0, 3.0], "lr_z_phot": [0.33, 0.34, 0.9]}),
                    tmp_path / "hosts.ecsv")
    z, nz = read_nz(tmp_path / "hosts.ecsv", "lr_z_phot", step=0.1)
    assert nz.sum() == 3 and z[np.argmax(nz)] == pytest.approx(0.35)
    with pytest.raises(CatalogueError, match="no column 'z_spec'"):
        read_nz(tmp_path / "hosts.ecsv", "z_spec")
    with pytest.raises(CatalogueError, match="columns z and n"):
        read_nz(tmp_path / "hosts.ecsv")
