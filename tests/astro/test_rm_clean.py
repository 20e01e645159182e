"""RM-CLEAN: one Faraday component kept as RM synthesis gives it, two components (far and
closer than the RMSF's sidelobes allow) found at their depths and amplitudes, the clean
FDF and its components (the table's columns and the command line: test_rm_synthesis.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cianna_jax.astro.rm_clean import faraday_components, rm_clean, rmsf
from cianna_jax.astro.rm_synthesis import C_M_S, rm_synthesis

FREQS = np.linspace(800e6, 1088e6, 48)
LAM2 = (C_M_S / FREQS) ** 2
FWHM = 2 * np.sqrt(3) / (LAM2.max() - LAM2.min())
NOISE = 1e-3


def _spectra(components, n=40, seed=1):
    rng = np.random.default_rng(seed)
    p = np.zeros((n, FREQS.size), complex)
    for amp, depth, chi in components:
        p += amp * np.exp(2j * (chi + depth * LAM2))[None, :]
    err = np.full(p.shape, NOISE)
    return p.real + rng.normal(0, NOISE, p.shape), p.imag + rng.normal(0, NOISE, p.shape), err


def test_one_component_is_what_rm_synthesis_gives():
    q, u, err = _spectra([(0.01, 30.0, 0.3)])
    dirty = rm_synthesis(q, u, err, err, FREQS)
    clean = rm_synthesis(q, u, err, err, FREQS, clean=True)
    np.testing.assert_allclose(clean["rm"], dirty["rm"], atol=0.1 * FWHM)
    np.testing.assert_allclose(clean["pol_flux"], dirty["pol_flux"], rtol=0.05)
    dchi = (clean["chi0"] - np.degrees(0.3) + 90) % 180 - 90
    ddirty = (dirty["chi0"] - np.degrees(0.3) + 90) % 180 - 90
    assert abs(np.median(dchi)) < 1.5 and np.std(dchi) < 1.3 * np.std(ddirty) + 0.5
    assert np.all(clean["n_faraday"] == 1) and np.all(np.isnan(clean["rm_second"]))


@pytest.mark.parametrize("separation", [3.0, 1.5])
def test_two_components_are_found(separation):
    second = 30.0 - separation * FWHM
    q, u, err = _spectra([(0.01, 30.0, 0.3), (0.006, second, 1.0)])
    dirty = rm_synthesis(q, u, err, err, FREQS)
    clean = rm_synthesis(q, u, err, err, FREQS, clean=True)
    assert np.all(clean["n_faraday"] == 2)
    assert abs(np.median(clean["rm_second"]) - second) < 0.1 * FWHM
    assert np.median(clean["pol_flux_second"]) == pytest.approx(0.006, rel=0.1)
    assert abs(np.median(clean["rm"]) - 30.0) < abs(np.median(dirty["rm"]) - 30.0) + 0.05 * FWHM
    assert np.median(clean["pol_flux"]) == pytest.approx(0.01, rel=0.03)


def test_the_clean_fdf_and_its_components():
    """A noiseless point component: all the flux in components at its depth, the residual
    under the cutoff, the restored peak its amplitude."""
    m, dphi = 201, FWHM / 10
    phi = dphi * (np.arange(m) - m // 2)
    w = np.ones((1, FREQS.size))
    lam0 = np.array([LAM2.mean()])
    r = rmsf(w, LAM2, lam0, dphi, m)
    assert r.shape == (1, 2 * m - 1) and r[0, m - 1] == pytest.approx(1.0)
    at = 120
    fdf = 0.5 * r[:, m - 1 - at:2 * m - 1 - at]  # the RMSF centred on phi[at]
    restored, comps = rm_clean(fdf, r, np.array([1e-3]), FWHM, dphi, cutoff=3.0)
    assert abs(comps[0].sum() - 0.5) < 3e-3 and np.argmax(np.abs(comps[0])) == at
    assert abs(restored[0, at]) == pytest.approx(0.5, rel=0.01)
    n, second, _ = faraday_components(comps, phi, FWHM, np.array([1e-3]))
    assert n[0] == 1 and np.isnan(second[0])
