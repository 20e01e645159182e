"""Radio luminosities and physical sizes (astro.luminosity, ``cianna-jax luminosity``)
against astropy's distances, the K-correction and rest frequency, errors, the command line
and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError, make_table  # noqa: E402
from cianna_jax.astro.luminosity import luminosity_table, radio_luminosity  # noqa: E402


def test_luminosity_against_astropy_and_the_k_correction():
    from astropy import units as u
    from astropy.cosmology import Planck18

    z = np.array([0.1, 0.5, 2.0])
    s = 1e-3  # 1 mJy
    d = Planck18.luminosity_distance(z).to(u.m).value
    flat = radio_luminosity(np.full(3, s), z, alpha=-1.0)  # alpha -1: no K-correction
    np.testing.assert_allclose(flat, 4 * math.pi * d ** 2 * s * 1e-26, rtol=1e-10)
    steep = radio_luminosity(np.full(3, s), z, alpha=-0.7)
    np.testing.assert_allclose(steep / flat, (1 + z) ** -0.3, rtol=1e-10)
    # another rest frequency: 1400 MHz from 144 MHz, alpha -0.7
    at = radio_luminosity(np.full(3, s), z, alpha=-0.7, freq_hz=144e6, rest_freq_hz=1.4e9)
    np.testing.assert_allclose(at / steep, (1.4e9 / 144e6) ** -0.7, rtol=1e-10)
    assert np.isnan(radio_luminosity(np.ones(3), np.array([0.0, -1.0, np.nan]))).all()
    with pytest.raises(ValueError, match="give the observed freq_hz"):
        radio_luminosity(np.ones(1), np.ones(1), rest_freq_hz=1.4e9)
    with pytest.raises(ValueError, match="not one of astropy's"):
        radio_luminosity(np.ones(1), np.ones(1), cosmology="Planck99")
    wmap = radio_luminosity(np.ones(1), np.ones(1), cosmology="WMAP9")
    assert wmap != radio_luminosity(np.ones(1), np.ones(1))


def test_a_catalogue_gets_luminosities_sizes_and_errors(tmp_path, capsys):
    from astropy import units as u
    from astropy.cosmology import Planck18

    t = make_table({"flux": [1e-3, 2e-3, 5e-3], "flux_err": [1e-4, 1e-4, 5e-4],
                    "z": [0.5, np.nan, 1.0], "z_err": [0.05, 0.1, 0.0],
                    "alpha": [np.nan, -0.7, -1.2], "sep": [30.0, 10.0, 60.0]},
                   meta={"frequency_hz": 144e6})
    out = luminosity_table(t, z_column="z", alpha_column="alpha", z_err_column="z_err",
                           rest_freq_hz=1.4e9, size_column="sep")
    lum = np.asarray(out["luminosity"])
    expect = radio_luminosity(np.array([1e-3, 5e-3]), np.array([0.5, 1.0]),
                              alpha=np.array([-0.7, -1.2]), freq_hz=144e6, rest_freq_hz=1.4e9)
    np.testing.assert_allclose(lum[[0, 2]], expect, rtol=1e-10)
    assert np.isnan(lum[1]) and out.meta["luminosity"]["n_with_z"] == 2
    err = np.asarray(out["luminosity_err"])
    assert err[2] == pytest.approx(0.1 * lum[2], rel=1e-6)  # (no z error there)
    assert err[0] > 0.1 * lum[0]  # the flux's 10% and the redshift's
    kpc = Planck18.kpc_proper_per_arcmin(0.5).to(u.kpc / u.arcsec).value * 30.0
    assert out["size_kpc"][0] == pytest.approx(kpc, rel=1e-6)
    assert out["d_l"][2] == pytest.approx(Planck18.luminosity_distance(1.0).value, rel=1e-9)
    from cianna_jax.cli import main

    t.write(tmp_path / "ids.ecsv")
    assert main(["luminosity", "--catalogue", str(tmp_path / "ids.ecsv"), "--z-column", "z",
                 "--rest-freq-mhz", "1400", "--out", str(tmp_path / "lum.ecsv")]) == 0
    assert "2 of 3 sources with a redshift" in capsys.readouterr().out
    assert main(["luminosity", "--catalogue", str(tmp_path / "ids.ecsv"), "--z-column",
                 "zz", "--out", str(tmp_path / "x.ecsv")]) == 2
    assert "no column 'zz'" in capsys.readouterr().err
    bare = make_table({"flux": [1e-3], "z": [0.5]})
    with pytest.raises(ValueError, match="its frequency is not known"):
        luminosity_table(bare, z_column="z", rest_freq_hz=1.4e9)
    with pytest.raises(CatalogueError, match="no flux column"):
        luminosity_table(make_table({"z": [0.5]}), z_column="z")
