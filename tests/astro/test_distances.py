"""Distances of many redshifts through a spline agree with astropy's own, per redshift."""

import numpy as np
import pytest

pytest.importorskip("astropy")
from astropy.cosmology import FlatLambdaCDM, Planck18  # noqa: E402

from cianna_jax.astro.distances import DISTANCES, EXACT_MAX, distance  # noqa: E402


@pytest.mark.parametrize("cosmo", [Planck18, FlatLambdaCDM(H0=70, Om0=0.3)], ids=["planck18", "flat"])
def test_the_spline_is_astropys_distance_at_every_redshift(cosmo):
    rng = np.random.default_rng(0)
    z = np.concatenate([[0.0, 1e-6, 20.0], 10 ** rng.uniform(-5, 1.3, EXACT_MAX + 500)])
    some = z[:400]
    for kind in DISTANCES:
        many = distance(cosmo, z, kind)
        exact = getattr(cosmo, kind)(some).to_value("Mpc")
        assert many[0] == 0.0 == exact[0]
        np.testing.assert_allclose(many[:400], exact, rtol=1e-7, atol=0)
        # few redshifts: astropy's values as they are
        np.testing.assert_array_equal(distance(cosmo, some[:10], kind), exact[:10])
    np.testing.assert_allclose(distance(cosmo, z, unit="m")[:400],
                               cosmo.luminosity_distance(some).to_value("m"), rtol=1e-7)


def test_repeated_redshifts_are_computed_once_each():
    """A cluster's catalogue: thousands of sources at a few redshifts (no spline through
    one value), each given astropy's distance exactly."""
    z = np.repeat([0.0, 0.3, 0.5], 3 * EXACT_MAX)
    np.testing.assert_array_equal(distance(Planck18, z),
                                  Planck18.luminosity_distance(z).to_value("Mpc"))


def test_bad_redshifts_are_nan_and_the_shape_is_kept():
    z = np.array([[0.5, np.nan], [-1.0, np.inf]])
    d = distance(Planck18, np.tile(z, (1, EXACT_MAX)))
    assert d.shape == (2, 2 * EXACT_MAX)
    assert np.isfinite(d[0, 0]) and np.isnan(d[0, 1]) and np.isnan(d[1]).all()
    assert np.isnan(distance(Planck18, [np.nan])).all()
    with pytest.raises(ValueError, match="kind: expected one of luminosity_distance"):
        distance(Planck18, [1.0], "proper_distance")
