"""HI masses and sizes (``cianna_jax.astro.hi_mass``): the size-mass relation, Gaussian
discs' diameters at 1 Msun/pc^2, and the simulator's discs sized by their masses."""

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from astropy.cosmology import Planck18  # noqa: E402

from cianna_jax.astro.hi_mass import (  # noqa: E402
    gaussian_disc_diameter,
    gaussian_disc_fwhm,
    hi_diameter_arcsec,
    hi_diameter_kpc,
    hi_mass,
)
from cianna_jax.astro.synthetic_cube import disc_sizes  # noqa: E402

HI_HZ = 1420405751.768


def test_mass_and_size_mass_relation():
    z = np.array([0.25, 0.4])
    d_l = Planck18.luminosity_distance(z).to_value("Mpc")
    np.testing.assert_allclose(hi_mass(np.array([20.0, 40.0]), z),
                               np.log10(49.7 * d_l**2 * [20.0, 40.0]))
    # Wang et al. (2016): 10^9 Msun -> 10^(0.506 * 9 - 3.293) = 18.24 kpc
    assert hi_diameter_kpc(9.0) == pytest.approx(18.239, rel=1e-4)
    d_a = Planck18.angular_diameter_distance(0.3).to_value("kpc")
    assert hi_diameter_arcsec(10.0, 0.3) == pytest.approx(
        10 ** (0.506 * 10 - 3.293) / d_a * 180 * 3600 / math.pi, rel=1e-9)
    # no Hubble-flow distance at z <= 0, no mass of a non-positive flux: NaN, no warning
    with np.errstate(all="raise"):
        out = hi_mass(np.array([1.0, 1.0, 0.0, -2.0]), np.array([0.0, -0.01, 0.3, 0.3]))
        assert np.isnan(out).all()
        assert np.isnan(hi_diameter_arcsec(9.0, np.array([0.0, np.nan]))).all()


def test_gaussian_discs_reach_one_solar_mass_per_square_parsec_at_their_diameter():
    log_m = np.array([7.0, 8.5, 10.0, 11.0])
    d_kpc = hi_diameter_kpc(log_m)
    fwhm = gaussian_disc_fwhm(log_m, d_kpc)
    sigma_pc = 1e3 * fwhm / (2 * math.sqrt(2 * math.log(2)))
    centre = 10.0**log_m / (2 * math.pi * sigma_pc**2)            # Msun/pc^2
    at_edge = centre * np.exp(-0.5 * (500.0 * d_kpc / sigma_pc) ** 2)
    np.testing.assert_allclose(at_edge, 1.0, rtol=1e-9)
    # the compact Gaussian of the two: its centre above e Msun/pc^2 (galaxies': 7-9 here)
    assert np.all(centre > math.e) and np.all((centre > 6) & (centre < 10))
    assert np.all((fwhm / d_kpc > 0.55) & (fwhm / d_kpc < 0.6))
    np.testing.assert_allclose(gaussian_disc_diameter(log_m, fwhm), d_kpc, rtol=1e-9)
    # a Gaussian whose centre is below 1 Msun/pc^2 has no such diameter; nor can any
    # Gaussian of a mass reach beyond sqrt(4 M / (pi e))
    assert gaussian_disc_diameter(6.0, 100.0) == 0.0
    farthest = 1e-3 * math.sqrt(4 * 10.0**9 / (math.pi * math.e))  # kpc
    assert np.isnan(gaussian_disc_fwhm(9.0, 1.01 * farthest))
    assert np.isfinite(gaussian_disc_fwhm(9.0, 0.99 * farthest))


def test_simulated_discs_follow_the_relation_with_its_scatter():
    """Disc sizes drawn from their masses: the diameter at 1 Msun/pc^2 of each rendered
    Gaussian scatters about the relation's by its 0.06 dex, cut where no Gaussian of the
    mass reaches that far (sqrt(4 M / (pi e)): 0.07 dex above the relation at 10^10 Msun),
    so by 0.054 dex here."""
    rng = np.random.default_rng(0)
    n = 4000
    flux = 10 ** rng.uniform(0.5, 2.5, n)                       # Jy Hz
    freq = rng.uniform(0.95e9, 1.15e9, n)
    fwhm_pix = disc_sizes(rng, flux, freq, 2.8)
    z = HI_HZ / freq - 1
    log_m = hi_mass(flux, z)
    kpc_per_pix = Planck18.angular_diameter_distance(z).to_value("kpc") * 2.8 / 206264.806
    d_true = gaussian_disc_diameter(log_m, fwhm_pix * kpc_per_pix)
    dex = np.log10(d_true / hi_diameter_kpc(log_m))
    cut = np.log10(np.sqrt(4e-6 * 10**log_m / (math.pi * math.e)) / hi_diameter_kpc(log_m))
    assert np.all(dex <= cut)
    assert abs(np.median(dex)) < 0.005 and 0.045 < np.std(dex) < 0.06
    below = dex < cut - 1e-3  # the draws that were not cut: the relation's lower half as drawn
    assert np.std(dex[dex < 0]) == pytest.approx(0.06 * math.sqrt(1 - 2 / math.pi), abs=0.004)
    assert below.mean() > 0.8
    with pytest.raises(ValueError, match="freq0: discs sized by their HI masses"):
        disc_sizes(rng, flux[:2], np.array([1.0e9, 1.5e9]), 2.8)
