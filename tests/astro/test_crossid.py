"""Likelihood-ratio counterparts (:mod:`cianna_jax.astro.crossid`) on simulated optical
catalogues whose hosts are known: Q0, the expected completeness and reliability against
the truth, calibrated reliabilities, the LR's formula, the command line and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError  # noqa: E402
from cianna_jax.astro.crossid import likelihood_ratio  # noqa: E402
from cianna_jax.astro.synthetic_optical import simulate_counterparts  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    return simulate_counterparts(1500, seed=3, host_fraction=0.8)


@pytest.fixture(scope="module")
def res(sim):
    return likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2)


def _truth(res, sim):
    t = res.table
    acc, idx = np.asarray(t["lr_match"]), np.asarray(t["lr_index"])
    right = acc & (idx == sim.host) & (sim.host >= 0)
    return right.sum() / (sim.host >= 0).sum(), right.sum() / acc.sum()


def test_q0_completeness_and_reliability_match_the_truth(sim, res):
    assert abs(res.q0 - sim.q0) < 0.01
    completeness, reliability = _truth(res, sim)
    assert completeness > 0.95 and reliability > 0.95
    assert abs(res.completeness - completeness) < 0.01
    assert abs(res.reliability - reliability) < 0.01
    meta = res.table.meta["crossid"]
    assert meta["threshold_rule"] == "expected completeness = reliability"
    # EM's Q0 (its scatter over seeds 0.003) against the excess count's alone (0.037 here)
    assert 2 <= meta["em_steps"] < 100 and abs(meta["q0_excess"] - sim.q0) > 0.03
    first = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2,
                             iterations=0)
    assert first.q0 == pytest.approx(meta["q0_excess"]) and \
        first.table.meta["crossid"]["em_steps"] == 0
    assert meta["n_matched"] == int(np.sum(res.table["lr_match"]))
    assert abs(res.completeness - res.reliability) < 0.01  # (where they cross)
    # a background over the catalogue's whole area instead of annuli: the same answer
    whole = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2,
                             area_deg2=1.0)
    assert abs(whole.q0 - sim.q0) < 0.02 and "whole catalogue" in \
        whole.table.meta["crossid"]["background"]
    assert min(_truth(whole, sim)) > 0.94


def test_reliabilities_are_calibrated(sim, res):
    t = res.table
    idx, rel = np.asarray(t["lr_index"]), np.asarray(t["lr_reliability"])
    has = idx >= 0
    correct = idx == sim.host
    for lo, hi in ((0.0, 0.5), (0.5, 0.9), (0.9, 1.01)):
        k = has & (rel >= lo) & (rel < hi)
        assert k.sum() >= 30
        assert abs(correct[k].mean() - rel[k].mean()) < 0.1, (lo, hi)


def test_the_lr_is_q_f_over_n_and_each_source_keeps_its_best(sim, res):
    p, t = res.pairs, res.table
    rr, lr, rel = np.asarray(p["radio_row"]), np.asarray(p["lr"]), np.asarray(p["reliability"])
    k = int(np.argmax(np.bincount(rr)))  # a source with several candidates
    mine = np.flatnonzero(rr == k)
    assert mine.size >= 2
    s2 = float(sim.radio["ra_err"][k]) ** 2 + 0.2 ** 2
    ra0, dec0 = float(sim.radio["ra"][k]), float(sim.radio["dec"][k])
    for j in mine:
        b = np.searchsorted(res.mag_edges, p["mag"][j], side="right") - 1
        o = int(p["optical_row"][j])
        east = (float(sim.optical["ra"][o]) - ra0) * math.cos(math.radians(dec0)) * 3600
        north = (float(sim.optical["dec"][o]) - dec0) * 3600
        assert math.hypot(east, north) == pytest.approx(float(p["sep"][j]), rel=1e-6)
        f = math.exp(-0.5 * (east ** 2 + north ** 2) / s2) / (2 * math.pi * s2)
        assert lr[j] == pytest.approx(res.q[0, b] * f / res.n[0, b], rel=1e-9)
    assert rel[mine].sum() < 1.0 and np.all(rel[mine] == pytest.approx(
        lr[mine] / (lr[mine].sum() + 1 - res.q0)))
    best = mine[np.argmax(lr[mine])]
    assert float(t["lr"][k]) == lr[best] and int(t["lr_index"][k]) == int(p["optical_row"][best])
    assert float(t["lr_sep"][k]) == pytest.approx(float(p["sep"][best]))
    # an optical column copied for each source's counterpart (masked without one)
    opt = sim.optical.copy()
    opt["z_phot"] = np.arange(len(opt)) * 1e-4
    kept = likelihood_ratio(sim.radio, opt, mag_column="mag", optical_error=0.2,
                            optical_columns=("z_phot",)).table
    idx = np.asarray(kept["lr_index"])
    has = idx >= 0
    np.testing.assert_allclose(np.asarray(kept["lr_z_phot"][has]), idx[has] * 1e-4)
    assert (~has).any() and np.all(kept["lr_z_phot"].mask == ~has)
    with pytest.raises(CatalogueError, match="no column 'z'"):
        likelihood_ratio(sim.radio, opt, mag_column="mag", optical_columns=("z",))
    with pytest.raises(ValueError, match="lr_mag"):
        likelihood_ratio(sim.radio, opt, mag_column="mag", optical_columns=("mag",))


@pytest.mark.filterwarnings("ignore:Q0")  # (one radio source: Q0 is not what is tested)
def test_errors_in_ra_and_dec_apart(sim):
    """A source whose RA error is four times its Dec error: a candidate offset in RA is far
    likelier than one as far off in Dec."""
    radio = sim.radio[:1].copy()
    radio["ra_err"], radio["dec_err"] = [2.0], [0.5]
    ra0, dec0 = float(radio["ra"][0]), float(radio["dec"][0])
    shift = 1.5 / 3600
    extra = sim.optical[:2].copy()
    extra["ra"] = [ra0 + shift / math.cos(math.radians(dec0)), ra0]
    extra["dec"] = [dec0, dec0 + shift]
    extra["mag"] = [19.0, 19.0]
    from astropy.table import vstack

    r = likelihood_ratio(radio, vstack([sim.optical, extra]), mag_column="mag",
                         optical_error=0.0, iterations=0, area_deg2=1.0)
    p = r.pairs
    rows = np.asarray(p["optical_row"])
    east, north = (np.asarray(p["lr"])[rows == len(sim.optical) + i][0] for i in (0, 1))
    ratio = math.exp(-0.5 * (1.5 / 2.0) ** 2) / math.exp(-0.5 * (1.5 / 0.5) ** 2)
    assert east / north == pytest.approx(ratio, rel=1e-3)


def test_colours_find_more_hosts_and_more_reliably():
    """Hosts redder than the background (colours 2.0 against 1.0, sd 0.5) on a dense
    background: with q(m) and n(m) per colour bin the true completeness and reliability
    rise, and the expected ones still match them."""
    sim = simulate_counterparts(1500, seed=5, density_arcmin2=60.0)
    plain = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2)
    col = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2,
                           colour_column="colour")
    (c0, r0), (c1, r1) = _truth(plain, sim), _truth(col, sim)
    assert c1 > c0 + 0.01 and r1 > r0 + 0.01
    assert abs(col.completeness - c1) < 0.01 and abs(col.reliability - r1) < 0.01
    assert col.q.shape == (5, plain.q.shape[1]) and col.colour_edges.size == 5
    assert np.argmax(col.q.sum(axis=1)[:4]) == 3  # the hosts in the reddest quarter
    meta = col.table.meta["crossid"]
    assert meta["colour_column"] == "colour" and len(meta["colour_edges"]) == 3
    # objects without a colour: a row of their own; given edges
    opt = sim.optical.copy()
    opt["colour"][::3] = np.nan
    part = likelihood_ratio(sim.radio, opt, mag_column="mag", optical_error=0.2,
                            colour_column="colour", colour_edges=[-9.0, 1.5, 9.0])
    assert part.q.shape[0] == 3 and part.q[2].sum() > 0
    assert min(_truth(part, sim)) > min(c0, r0)
    for kw, what in (({"colour_edges": [1.0, 0.5]}, "colour_edges"),
                     ({"colour_bins": 0}, "colour_bins"),
                     ({"colour_bins": 100_000}, "too few")):
        with pytest.raises(ValueError, match=what):
            likelihood_ratio(sim.radio, sim.optical, mag_column="mag",
                             colour_column="colour", **kw)


def test_two_radio_components_of_one_host_share_it(sim):
    """A source split into two components 1 arcsec either side of its host: both match it,
    lr_shared 2; everyone else 1 (or 0 unmatched)."""
    from astropy.table import vstack

    k = int(np.flatnonzero(sim.host >= 0)[0])
    h = int(sim.host[k])
    lobes = sim.radio[[k, k]].copy()
    cosd = math.cos(math.radians(float(sim.optical["dec"][h])))
    lobes["ra"] = float(sim.optical["ra"][h]) + np.array([-1.0, 1.0]) * 1.0 / 3600 / cosd
    lobes["dec"] = float(sim.optical["dec"][h])
    radio = vstack([sim.radio[:k], sim.radio[k + 1:], lobes])
    t = likelihood_ratio(radio, sim.optical, mag_column="mag", optical_error=0.2).table
    shared = np.asarray(t["lr_shared"])
    assert list(shared[-2:]) == [2, 2] and list(t["lr_index"][-2:]) == [h, h]
    matched = np.asarray(t["lr_match"])
    assert np.all(shared[~matched] == 0) and np.sum(shared[:-2] >= 2) <= 0.01 * len(t)


def test_a_frame_offset_between_the_catalogues_is_measured(sim):
    from cianna_jax.cli_crossid import format_crossid

    meta = likelihood_ratio(sim.radio, sim.optical, mag_column="mag",
                            optical_error=0.2).table.meta["crossid"]
    assert abs(meta["offset_ra_arcsec"]) < 3 * meta["offset_ra_err_arcsec"]
    assert "significant" not in format_crossid(meta)
    opt = sim.optical.copy()
    dec0 = math.radians(float(np.mean(opt["dec"])))
    opt["ra"] = opt["ra"] + 0.5 / 3600 / math.cos(dec0)
    opt["dec"] = opt["dec"] - 0.3 / 3600
    shifted = likelihood_ratio(sim.radio, opt, mag_column="mag", optical_error=0.2)
    meta = shifted.table.meta["crossid"]
    assert meta["offsets_n"] > 1000
    assert meta["offset_ra_arcsec"] == pytest.approx(0.5, abs=3 * meta["offset_ra_err_arcsec"])
    assert meta["offset_dec_arcsec"] == pytest.approx(-0.3,
                                                      abs=3 * meta["offset_dec_err_arcsec"])
    assert "(significant)" in format_crossid(meta)  # (0.43, -0.32: the choice of the
    # closest candidates pulls the median in; then the shift taken out finds the rest)
    back = likelihood_ratio(sim.radio, opt, mag_column="mag", optical_error=0.2,
                            optical_shift=(-0.5, 0.3))
    bm = back.table.meta["crossid"]
    assert abs(bm["offset_ra_arcsec"]) < 3 * bm["offset_ra_err_arcsec"]
    assert bm["optical_shift_arcsec"] == [-0.5, 0.3]
    c0, (c1, r1) = _truth(shifted, sim)[0], _truth(back, sim)
    assert c1 > c0 + 0.01 and min(c1, r1) > 0.96


def test_a_given_threshold_and_sources_without_candidates(sim):
    radio = sim.radio.copy()
    radio["ra"][0] = float(radio["ra"][0]) + 5.0  # far from every optical object
    r = likelihood_ratio(radio, sim.optical, mag_column="mag", optical_error=0.2,
                         lr_threshold=2.0)
    t = r.table
    assert t.meta["crossid"]["threshold_rule"] == "given" and r.threshold == 2.0
    np.testing.assert_array_equal(np.asarray(t["lr_match"]), np.asarray(t["lr"]) >= 2.0)
    assert t["lr"][0] == 0 and t["lr_index"][0] == -1 and not t["lr_match"][0]
    assert np.isnan(t["lr_sep"][0]) and np.isnan(t["lr_mag"][0])


def test_bad_inputs_are_refused_by_name(sim):
    radio = sim.radio.copy()
    radio.remove_columns(["ra_err", "dec_err"])
    with pytest.raises(CatalogueError, match="radio_error"):
        likelihood_ratio(radio, sim.optical, mag_column="mag")
    ok = likelihood_ratio(radio, sim.optical, mag_column="mag", radio_error=1.0)
    assert ok.q0 > 0.5
    some = sim.radio.copy()  # a few failed fits among the others: their 90th percentile
    some["ra_err"][:20] = np.nan
    with pytest.warns(UserWarning, match="20 of 1500 sources without position errors"):
        likelihood_ratio(some, sim.optical, mag_column="mag")
    with pytest.raises(CatalogueError, match="no magnitude column 'r_mag'"):
        likelihood_ratio(sim.radio, sim.optical, mag_column="r_mag")
    with pytest.raises(CatalogueError, match="too few"):
        likelihood_ratio(sim.radio, sim.optical[:5], mag_column="mag")
    for kw, name in (({"optical_error": -1.0}, "optical_error"), ({"radius": 0.0}, "radius"),
                     ({"mag_step": float("nan")}, "mag_step"), ({"area_deg2": -2}, "area_deg2")):
        with pytest.raises(ValueError, match=name):
            likelihood_ratio(sim.radio, sim.optical, mag_column="mag", **kw)
    far = sim.radio.copy()
    far["dec"][3] = 95.0
    with pytest.raises(CatalogueError, match="Dec outside .* rows 3"):
        likelihood_ratio(far, sim.optical, mag_column="mag")
    no_pos = sim.optical.copy()
    no_pos.remove_column("dec")
    with pytest.raises(CatalogueError, match="optical catalogue: needs ra and dec"):
        likelihood_ratio(sim.radio, no_pos, mag_column="mag")
    with pytest.warns(UserWarning, match="Q0"):  # a background far too low: a wrong area
        likelihood_ratio(sim.radio, sim.optical, mag_column="mag", area_deg2=100.0)


def test_the_command_line_writes_the_catalogue_pairs_and_figure(sim, tmp_path, capsys):
    from astropy.table import Table

    from cianna_jax.cli import main

    sim.radio.write(tmp_path / "radio.ecsv")
    opt = sim.optical.copy()
    opt["objid"] = np.arange(len(opt)) + 1000
    opt.write(tmp_path / "opt.fits")
    args = ["crossid", "--catalogue", str(tmp_path / "radio.ecsv"), "--optical",
            str(tmp_path / "opt.fits"), "--mag-column", "mag", "--optical-error", "0.2"]
    pytest.importorskip("matplotlib")
    assert main([*args, "--keep", "objid", "--colour-column", "colour", "--out",
                 str(tmp_path / "ids.fits"), "--pairs",
                 str(tmp_path / "pairs.ecsv"), "--figure", str(tmp_path / "lr.png")]) == 0
    out = capsys.readouterr().out
    assert "radio sources matched" in out and "and 5 colour bins" in out
    t = Table.read(tmp_path / "ids.fits")
    assert {"lr", "lr_reliability", "lr_match", "lr_ra", "lr_dec", "lr_mag", "lr_sep",
            "lr_index"} <= set(t.colnames) and len(t) == len(sim.radio)
    assert len(Table.read(tmp_path / "pairs.ecsv")) > len(t)
    m = np.asarray(t["lr_match"])
    np.testing.assert_array_equal(np.asarray(t["lr_objid"])[m], np.asarray(t["lr_index"])[m] + 1000)
    assert (tmp_path / "lr.png").stat().st_size > 10_000
    assert main([*args, "--out", str(tmp_path / "ids.xlsx")]) == 2
    assert "unknown catalogue extension" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "x.ecsv"), "--mag-column", "nope"]) == 2


def test_the_catalogues_edge_does_not_cut_the_background():
    """Large radio errors (1-4 arcsec): a search radius of ~18 arcsec, annuli to ~110; the
    sources near the field's edge (whose annuli the optical catalogue covers only in part)
    are left out of the estimates, or Q0 comes out above 1 (the background too low)."""
    import warnings

    from cianna_jax.astro.crossid import _interior

    sim = simulate_counterparts(3000, seed=0, radio_error=(1.0, 4.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        r = likelihood_ratio(sim.radio, sim.optical, mag_column="mag", optical_error=0.2)
    assert abs(r.q0 - sim.q0) < 0.02
    completeness, reliability = _truth(r, sim)
    assert abs(r.reliability - reliability) < 0.02 and completeness > 0.85
    # the interior: 100 arcsec inside a 1 deg field's hull, not 100 arcsec from its edge
    ra, dec = np.array([150.0, 150.0, 150.0]), np.array([2.0, 2.0 + 0.5 - 150 / 3600,
                                                         2.0 + 0.5 - 50 / 3600])
    got = _interior(np.asarray(sim.optical["ra"]), np.asarray(sim.optical["dec"]), ra, dec,
                    100.0)
    np.testing.assert_array_equal(got, [True, True, False])
