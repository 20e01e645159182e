"""The radio luminosity function (astro.luminosity_function, ``cianna-jax lumfunc``): V_max
against the comoving volume, a simulated population of known luminosity function recovered
over a two-depth coverage and with half its redshifts missing, the command line and its
errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import write_catalogue  # noqa: E402
from cianna_jax.astro.luminosity_function import (  # noqa: E402
    Coverage,
    luminosity_function,
    simulate_population,
    z_completeness_weights,
)

OMEGA = 10.0 * (math.pi / 180) ** 2  # 10 deg^2
PHI_STAR, L_STAR, A1, A2 = 1e-5, 1e24, 0.4, 1.6


def _phi(logl):
    x = 10 ** (np.asarray(logl) - math.log10(L_STAR))
    return PHI_STAR / (x ** A1 + x ** A2)


def _population(seed):
    """A non-evolving double power law (Mpc^-3 dex^-1) over 10 deg^2, z 0.02-2.2: fluxes at
    the observed frequency with alpha -0.7."""
    rng = np.random.default_rng(seed)
    z, flux = simulate_population(_phi, OMEGA, rng, samples=2000)
    return flux, z, rng


def _pulls(lf, min_n=10):
    out = []
    for b in range(lf.z_edges.size - 1):
        for j in range(lf.logl_edges.size - 1):
            if lf.n[b, j] >= min_n and lf.complete[b, j]:
                g = np.linspace(*lf.logl_edges[j:j + 2], 50)
                want = np.trapezoid(_phi(g), g) / np.diff(lf.logl_edges[j:j + 2])[0]
                out.append((lf.phi[b, j] - want) / lf.phi_err[b, j])
    return np.array(out)


def test_vmax_is_the_volume_where_the_source_stays_above_the_limit():
    from astropy.cosmology import Planck18

    # one source of 1 mJy at z = 0.3 with a 0.25 mJy limit: seen out to where its flux falls
    # to the limit, within its bin 0.2-1.0
    cov = Coverage.flux_limit(OMEGA, 2.5e-4)
    lf = luminosity_function(np.array([1e-3]), np.array([0.3]), cov, z_edges=[0.2, 1.0],
                             logl_edges=[20.0, 30.0], samples=4000)
    zg = np.linspace(0.3, 1.0, 20001)
    flux = 1e-3 * (Planck18.luminosity_distance(0.3) / Planck18.luminosity_distance(zg)) ** 2
    z_max = float(zg[np.argmin(np.abs(flux.value * ((1 + zg) / 1.3) ** 0.3 - 2.5e-4))])
    assert 0.5 < z_max < 0.7
    want = (Planck18.comoving_volume(z_max) - Planck18.comoving_volume(0.2)).to_value(
        "Mpc3") * OMEGA / (4 * math.pi)
    assert lf.vmax[0] == pytest.approx(want, rel=2e-3)
    assert lf.phi[0, 0] == pytest.approx(1 / want / 10.0, rel=2e-3)  # per dex (10 dex wide)


def test_a_known_population_over_two_depths():
    flux, z, rng = _population(2)
    deep = rng.uniform(size=flux.size) < 0.5  # half the area 4x deeper
    keep = flux >= np.where(deep, 5e-5, 2e-4)
    cov = Coverage(OMEGA, lambda p: 0.5 * (np.asarray(p) >= 5e-5) + 0.5 * (np.asarray(p) >= 2e-4),
                   "two depths")
    lf = luminosity_function(flux[keep], z[keep], cov, z_edges=[0.1, 0.5, 1.0, 2.0],
                             logl_edges=np.arange(21, 27.01, 0.5))
    pulls = _pulls(lf)
    assert pulls.size >= 5 and np.all(np.abs(pulls) < 3.5), pulls
    # the shallow half alone (as if the deep half were not there) biases the faint bins low
    naive = luminosity_function(flux[keep], z[keep], Coverage.flux_limit(OMEGA, 5e-5),
                                z_edges=[0.1, 0.5, 1.0, 2.0], logl_edges=lf.logl_edges)
    assert np.nanmedian(naive.phi[lf.n >= 10] / lf.phi[lf.n >= 10]) < 0.8
    # half the redshifts missing, weighted by flux bin: the same function within errors
    has = rng.uniform(size=keep.sum()) < 0.5
    w = z_completeness_weights(flux[keep], has)
    half = luminosity_function(flux[keep], np.where(has, z[keep], np.nan), cov,
                               z_edges=[0.1, 0.5, 1.0, 2.0], logl_edges=lf.logl_edges,
                               weights=w)
    assert np.all(np.abs(_pulls(half, 6)) < 3.5)
    t = lf.table()
    assert t["phi"].unit == "Mpc-3" and np.all(t["n"] > 0) and "log_phi_err" in t.colnames


def test_z_completeness_weights():
    flux = np.array([1e-4, 1.1e-4, 1.2e-4, 1e-2, 1.1e-2, np.nan])
    has = np.array([True, False, True, True, False, False])
    w = z_completeness_weights(flux, has, per_decade=1)
    np.testing.assert_allclose(w[:5], [1.5, 1.5, 1.5, 2.0, 2.0])
    assert np.isnan(w[5])


def test_command_line_and_errors(tmp_path, capsys):
    from cianna_jax.cli import main

    from .test_clustering import _field

    img_p, _, cat_p = _field(tmp_path, 11, hole=False)
    from cianna_jax.astro.catalogue import read_catalogue

    t = read_catalogue(cat_p)
    rng = np.random.default_rng(0)
    t["z_phot"] = np.where(rng.uniform(size=len(t)) < 0.8, rng.uniform(0.1, 2.0, len(t)), np.nan)
    t["snr"] = 10.0
    write_catalogue(t, tmp_path / "z.ecsv")
    out = tmp_path / "lf.ecsv"
    base = ["lumfunc", "--catalogue", str(tmp_path / "z.ecsv"), "--z-column", "z_phot",
            "--out", str(out)]
    assert main(base + ["--image", str(img_p), "--figure", str(tmp_path / "lf.png"),
                        "--rest-freq-mhz", "1400", "--freq-mhz", "150"]) == 0
    text = capsys.readouterr().out
    assert "visibility areas at 5 sigma" in text and "weighted for those without" in text
    lf = read_catalogue(out)
    m = lf.meta["luminosity_function"]
    assert m["n_with_z"] == int(np.isfinite(t["z_phot"]).sum()) and m["rest_freq_hz"] == 1.4e9
    assert m["area_deg2"] == pytest.approx((400 * 3.0 / 3600) ** 2, rel=0.01)
    assert np.all(lf["phi"] > 0) and (tmp_path / "lf.png").stat().st_size > 10000
    assert main(base + ["--area-deg2", "0.1", "--flux-limit", "1e-4", "--z-bins",
                        "0.1,1,2"]) == 0
    capsys.readouterr()
    assert set(np.round(read_catalogue(out)["z_max"], 3)) <= {1.0, 2.0}
    for extra, msg in ((["--image", str(img_p), "--flux-limit", "1e-4"], "one of them"),
                       (["--area-deg2", "1"], "one of them"),
                       (["--area-deg2", "1", "--flux-limit", "1e-4", "--z-bins", "a,b"],
                        "--z-bins"),
                       (["--area-deg2", "1", "--flux-limit", "1e-4", "--alpha-column", "sp"],
                        "no column 'sp'")):
        assert main(base + extra) == 2
        assert msg in capsys.readouterr().err
    assert main(["lumfunc", "--catalogue", str(tmp_path / "z.ecsv"), "--z-column", "zz",
                 "--out", str(out), "--area-deg2", "1", "--flux-limit", "1e-4"]) == 2
    assert "no column 'zz'" in capsys.readouterr().err


def test_bins_complete_by_the_injections_completeness(tmp_path):
    # a completeness that never reaches 0 (1% at the faintest injected fluxes): a bin is
    # complete where the completeness at its faintest luminosity at its far redshift
    # reaches min_completeness (0.5), not wherever it is above 0
    from cianna_jax.astro.catalogue import make_table
    from cianna_jax.astro.luminosity import radio_luminosity
    from cianna_jax.astro.luminosity_function import catalogue_luminosity_function

    flux, z, _ = _population(3)
    keep = flux >= 1e-4
    write_catalogue(make_table({"flux": flux[keep], "z": z[keep]}), tmp_path / "c.ecsv")
    edges = 10 ** np.arange(-5.5, -0.99, 0.5)
    comp = np.where(edges[:-1] >= 1e-4, 1.0, 0.01)
    folder = tmp_path / "inj"
    folder.mkdir()
    write_catalogue(make_table({"flux_min": edges[:-1], "flux_max": edges[1:],
                                "completeness": comp}), folder / "completeness_by_flux.ecsv")
    kw = dict(z_column="z", completeness=str(folder), area_deg2=10.0, z_edges=(0.1, 0.5, 1.0),
              dex=0.5)
    strict = catalogue_luminosity_function(tmp_path / "c.ecsv", **kw)
    loose = catalogue_luminosity_function(tmp_path / "c.ecsv", min_completeness=0.0, **kw)
    # the faintest luminosity a bin needs at z = 1: that of the flux where the completeness
    # is half (linear in log flux between the bins' middles 10^-4.25 and 10^-3.75 Jy)
    f_half = 10 ** (-4.25 + 0.5 * (0.5 - 0.01) / 0.99)
    l_half = np.log10(radio_luminosity(np.array([f_half]), np.array([1.0]))[0])
    le = strict.logl_edges[:-1]
    np.testing.assert_array_equal(strict.complete[1], le >= l_half - 0.02)
    assert loose.complete[1].sum() > strict.complete[1].sum()


def test_photometric_redshift_errors_propagated(tmp_path, capsys):
    # redshifts scattered by 0.1 (1 + z): the function from them differs from the true
    # redshifts' by more than the Poisson errors in some bins; with the redshift errors
    # drawn 20 times the combined errors hold the difference
    from cianna_jax.astro.catalogue import make_table
    from cianna_jax.astro.luminosity_function import catalogue_luminosity_function
    from cianna_jax.cli import main

    flux, z, rng = _population(5)
    keep = flux >= 1e-4
    flux, z = flux[keep], z[keep]
    err = 0.1 * (1 + z)
    zp = np.abs(z + rng.normal(0, 1, z.size) * err)
    write_catalogue(make_table({"flux": flux, "z": z, "z_phot": zp, "z_err": err}),
                    tmp_path / "c.ecsv")
    kw = dict(area_deg2=10.0, flux_limit=1e-4, z_edges=(0.1, 0.5, 1.0, 2.0), dex=0.5)
    true = catalogue_luminosity_function(tmp_path / "c.ecsv", z_column="z", **kw)
    phot = catalogue_luminosity_function(tmp_path / "c.ecsv", z_column="z_phot", **kw,
                                         z_err_column="z_err", z_draws=20)
    assert true.phi_err_z is None and np.all(phot.phi_err_z >= 0)
    # the luminosity bins both have (each on the dex grid, over its own range)
    lo_t, lo_p = np.round(true.logl_edges[:-1], 6), np.round(phot.logl_edges[:-1], 6)
    common = np.intersect1d(lo_t, lo_p)
    jt, jp = np.searchsorted(lo_t, common), np.searchsorted(lo_p, common)
    t_phi, p_phi = true.phi[:, jt], phot.phi[:, jp]
    both = (true.n[:, jt] >= 10) & (phot.n[:, jp] >= 10)
    tot, z_part = phot.phi_err[:, jp], phot.phi_err_z[:, jp]
    poisson = np.sqrt(tot ** 2 - z_part ** 2)
    diff = np.abs(p_phi - t_phi)[both]
    assert np.sum(diff > 2 * poisson[both]) >= 1  # the redshift errors matter
    assert np.mean(diff < 2 * tot[both]) >= 0.9
    assert main(["lumfunc", "--catalogue", str(tmp_path / "c.ecsv"), "--z-column", "z_phot",
                 "--z-err-column", "z_err", "--z-draws", "5", "--area-deg2", "10",
                 "--flux-limit", "1e-4", "--out", str(tmp_path / "lf.ecsv")]) == 0
    assert "their errors propagated by 5 draws" in capsys.readouterr().out
    assert "phi_err_z" in read_catalogue_cols(tmp_path / "lf.ecsv")


def read_catalogue_cols(path):
    from cianna_jax.astro.catalogue import read_catalogue

    return read_catalogue(path).colnames


def test_a_subpopulations_function_over_the_same_coverage(tmp_path):
    from cianna_jax.astro.catalogue import make_table
    from cianna_jax.astro.luminosity_function import catalogue_luminosity_function

    flux, z, rng = _population(6)
    keep = flux >= 1e-4
    kind = np.where(rng.uniform(size=int(keep.sum())) < 0.4, "agn", "sfg")
    write_catalogue(make_table({"flux": flux[keep], "z": z[keep], "kind": kind}),
                    tmp_path / "c.ecsv")
    kw = dict(z_column="z", area_deg2=10.0, flux_limit=1e-4, z_edges=(0.1, 0.5, 1.0, 2.0),
              dex=0.5)
    both = catalogue_luminosity_function(tmp_path / "c.ecsv", **kw)
    agn = catalogue_luminosity_function(tmp_path / "c.ecsv", select="kind=agn", **kw)
    sfg = catalogue_luminosity_function(tmp_path / "c.ecsv", select="kind=sfg", **kw)
    assert agn.meta["n_sources"] == int(np.sum(kind == "agn"))
    assert "kind in agn" in agn.meta["selected"]
    # the subpopulations' functions add up to the whole's, bin by bin (each on the dex
    # grid over its own range: compared on the whole's bins)
    def on(lf):
        out = np.zeros_like(both.phi)
        j = np.searchsorted(np.round(both.logl_edges, 6), np.round(lf.logl_edges[:-1], 6))
        out[:, j] = lf.phi
        return out

    np.testing.assert_allclose(on(agn) + on(sfg), both.phi, rtol=1e-9, atol=1e-30)
    assert agn.n.sum() + sfg.n.sum() == both.n.sum()
