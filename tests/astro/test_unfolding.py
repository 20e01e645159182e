"""Source counts unfolded from measured to true fluxes (astro.unfolding, ``counts
--unfold``): the response matrix, the unfolding of known counts, and a population measured
with a constant flux error and detected at 5 sigma, where the counts corrected at each
source's measured flux come out high near the limit (flux boosting) and the unfolded ones
do not."""

from __future__ import annotations

import numpy as np
import pytest

from cianna_jax.astro.catalogue import make_table, write_catalogue
from cianna_jax.astro.source_counts import count_catalogue, count_edges, source_counts
from cianna_jax.astro.unfolding import response_matrix, unfold


def test_the_response_matrix_counts_where_injected_sources_were_found():
    edges = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fin = np.array([1.5, 1.5, 1.5, 1.5, 3.0, 3.0, 0.5])
    fout = np.array([1.6, 2.5, np.nan, 20.0, 3.1, 3.0, 1.2])
    found = np.array([True, True, False, True, True, True, True])
    R, n = response_matrix(fin, fout, found, edges)
    np.testing.assert_array_equal(n, [4, 2, 0, 0])  # (0.5: below the bins)
    np.testing.assert_allclose(R[0], [0.25, 0.25, 0, 0])  # (20: found beyond the bins)
    np.testing.assert_allclose(R[1], [0, 1, 0, 0])
    np.testing.assert_allclose(R[2:], [[0, 0, 1, 0], [0, 0, 0, 1]])  # brighter: as measured


def test_known_counts_come_back():
    T = np.array([400.0, 250.0, 150.0, 80.0, 40.0])
    R = np.array([[0.2, 0.2, 0.0, 0.0, 0.0],
                  [0.0, 0.5, 0.3, 0.0, 0.0],
                  [0.0, 0.0, 0.8, 0.15, 0.0],
                  [0.0, 0.0, 0.0, 0.95, 0.05],
                  [0.0, 0.0, 0.0, 0.0, 1.0]])
    got, err = unfold(R.T @ T, R, iterations=200)
    np.testing.assert_allclose(got, T, rtol=0.02)
    assert np.all(err > 0)
    same, _ = unfold(T, np.eye(5))
    np.testing.assert_allclose(same, T)
    dead = R.copy()
    dead[0] = 0.0
    assert np.isnan(unfold(R.T @ T, dead)[0][0])
    with pytest.raises(ValueError, match="5x5 response"):
        unfold(T, np.eye(4))
    with pytest.raises(TypeError, match="iterations"):
        unfold(T, R, iterations=2.5)


def _measure(flux, rng, sigma):
    """Measured fluxes (a constant error ``sigma``) and detection at 5 sigma."""
    out = flux + rng.normal(0.0, sigma, flux.size)
    return out, out >= 5.0 * sigma


def test_unfolding_takes_out_the_flux_boosting(tmp_path):
    """dN/dS ~ S^-1.8 measured with an error of 20 uJy, detected at 100 uJy: near the limit
    the completeness at each measured flux overcorrects (the boosted faint sources fill the
    bins above the limit); the unfolded counts agree with the truth there."""
    rng = np.random.default_rng(3)
    sigma, area = 2e-5, 1e-4
    u = rng.random(200_000)
    lo, hi, a = 2e-5, 1e-2, 1.8
    true = (lo ** (1 - a) + u * (hi ** (1 - a) - lo ** (1 - a))) ** (1 / (1 - a))
    meas, det = _measure(true, rng, sigma)
    inj_true = 10 ** rng.uniform(np.log10(3e-5), np.log10(3e-3), 20_000)
    inj_meas, inj_found = _measure(inj_true, rng, sigma)
    edges = count_edges(np.array([1e-5, 1e-2]), 5)
    folder = tmp_path / "inj"
    folder.mkdir()
    write_catalogue(make_table({"flux_in": inj_true, "flux_out": inj_meas, "found": inj_found,
                                "near_source": np.zeros(inj_true.size, bool)}),
                    folder / "injected.ecsv")
    bins = np.digitize(inj_true, edges) - 1
    comp = np.array([inj_found[bins == i].mean() if np.any(bins == i) else 1.0
                     for i in range(edges.size - 1)])
    write_catalogue(make_table({"flux_min": edges[:-1], "flux_max": edges[1:],
                                "completeness": comp}), folder / "completeness_by_flux.ecsv")
    cat = tmp_path / "cat.ecsv"
    write_catalogue(make_table({"flux": meas[det]}), cat)
    area_deg2 = area * (180 / np.pi) ** 2
    corrected = count_catalogue(cat, area_deg2=area_deg2, completeness=folder, per_decade=5)
    unfolded = count_catalogue(cat, area_deg2=area_deg2, completeness=folder, per_decade=5,
                               unfold=True)
    # the unfolded counts' bins reach the faintest injected source (the boosted sources
    # come from below the catalogue's faintest measured flux), flagged incomplete there
    assert unfolded.edges[0] < corrected.edges[0] and np.all(
        np.isin(np.round(corrected.edges, 12), np.round(unfolded.edges, 12)))
    ratios = {}
    for name, c in (("corrected", corrected), ("unfolded", unfolded)):
        truth = source_counts(true, area, edges=c.edges).n_corrected
        near = (c.middle > 1.1e-4) & (c.middle < 2.5e-4)  # 1-2.5 times the limit
        ratios[name] = c.n_corrected[near] / truth[near]
        bright = (c.middle > 1e-3) & (c.middle < 5e-3)
        pull = (c.n_corrected[bright] - truth[bright]) / c.n_corrected_err[bright]
        assert np.all(np.abs(pull) < 4), name  # bright bins: as counted, within errors
    assert ratios["corrected"][0] > 1.3  # the flux boosting, just above the limit
    assert np.all(np.abs(ratios["unfolded"] - 1) < 0.04)
    assert not unfolded.complete[0] and unfolded.complete[-1]
    from astropy.table import Table

    from cianna_jax.cli import main

    assert main(["counts", "--catalogue", str(cat), "--area-deg2", str(area_deg2),
                 "--completeness", str(folder), "--unfold", "--out",
                 str(tmp_path / "counts.ecsv")]) == 0
    t = Table.read(tmp_path / "counts.ecsv")
    assert len(t) == unfolded.edges.size - 1 and "unfolded" in t.meta["correction"]
    with pytest.raises(ValueError, match="one injection report"):
        count_catalogue(cat, area_deg2=area_deg2, completeness=[folder, folder], unfold=True)
    (folder / "injected.ecsv").unlink()
    with pytest.raises(FileNotFoundError, match="injected.ecsv"):
        count_catalogue(cat, area_deg2=area_deg2, completeness=folder, unfold=True)
