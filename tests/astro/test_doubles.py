"""Double sources (astro.doubles, ``cianna-jax doubles``): a hand-made pair and what breaks
it, simulated doubles among single sources found with the chance pairs foreseen, the
command line and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import CatalogueError, make_table  # noqa: E402
from cianna_jax.astro.doubles import find_doubles, format_doubles  # noqa: E402


def _table(east, north, flux):
    """Sources at offsets (arcsec) from (150, 2) deg."""
    east, north = np.asarray(east, float), np.asarray(north, float)
    return make_table({"ra": 150.0 + east / 3600 / math.cos(math.radians(2.0)),
                       "dec": 2.0 + north / 3600, "flux": np.asarray(flux, float)})


def test_a_pair_and_what_breaks_it():
    # two 50 mJy lobes 40" apart (at 100 mJy in all: up to 100"), a far single source
    t = _table([0, 40, 2000], [0, 0, 0], [0.06, 0.04, 0.01])
    d = find_doubles(t, chance_draws=0)
    assert len(d.pairs) == 1
    p = d.pairs[0]
    assert (p["row_1"], p["row_2"]) == (0, 1) and p["flux"] == pytest.approx(0.1)
    assert p["sep"] == pytest.approx(40.0, rel=1e-4) and p["ratio"] == pytest.approx(2 / 3)
    assert p["pa"] == pytest.approx(90.0, abs=0.01)  # (east of north: along east)
    # the flux-weighted centre: 16" east of the brighter
    assert (p["ra"] - 150.0) * 3600 * math.cos(math.radians(2.0)) == pytest.approx(16.0,
                                                                                  rel=1e-4)
    assert list(d.table["double"]) == [1, 1, 0] and list(d.table["double_partner"]) == [1, 0, -1]
    assert np.isnan(d.chance)
    for east, north, flux, why in (([0, 40], [0, 0], [0.09, 0.01], "fluxes 9x apart"),
                                   ([0, 120], [0, 0], [0.05, 0.05], "beyond 100 arcsec"),
                                   ([0, 40, 30], [0, 0, 5], [0.05, 0.05, 0.001],
                                    "a third source nearer to one"),
                                   ([0, 0], [0, 0], [0.05, 0.05], "one source listed twice")):
        assert len(find_doubles(_table(east, north, flux), chance_draws=0).pairs) == 0, why
    assert len(find_doubles(_table([0, 120], [0, 0], [0.05, 0.05]), scale=150.0,
                            chance_draws=0).pairs) == 1


def test_simulated_doubles_and_the_chance_pairs():
    """1 deg2 of 1500 single sources (S^-1.7 from 1 mJy) and 100 doubles (separations 0.2-0.8
    of the largest allowed, flux ratios 1-3): most doubles are found, and the pairs beyond
    them are as many as the chance estimate foresees."""
    rng = np.random.default_rng(0)

    def fluxes(n):
        return 1e-3 * (1 - rng.random(n)) ** (-1 / 0.7)

    n1, n2 = 1500, 100
    e1, n_1 = rng.uniform(-1800, 1800, n1), rng.uniform(-1800, 1800, n1)
    S = fluxes(n2)
    sep = 100 * np.sqrt(S / 0.1) * rng.uniform(0.2, 0.8, n2)
    ang, q = rng.uniform(0, np.pi, n2), rng.uniform(1, 3, n2)
    ce, cn = rng.uniform(-1700, 1700, n2), rng.uniform(-1700, 1700, n2)
    de, dn = sep / 2 * np.sin(ang), sep / 2 * np.cos(ang)
    t = _table(np.concatenate([e1, ce + de, ce - de]), np.concatenate([n_1, cn + dn, cn - dn]),
               np.concatenate([fluxes(n1), S * q / (1 + q), S / (1 + q)]))
    d = find_doubles(t, chance_draws=20)
    a, b = np.asarray(d.pairs["row_1"]), np.asarray(d.pairs["row_2"])
    true = (np.minimum(a, b) >= n1) & (np.abs(a - b) == n2)
    assert true.sum() >= 75
    false = int((~true).sum())
    assert abs(false - d.chance) < 3 * max(d.chance_std, math.sqrt(max(d.chance, 1.0)))
    assert "expected by chance" in format_doubles(d)


def test_the_command_line_and_bad_inputs(tmp_path, capsys):
    from astropy.table import Table

    from cianna_jax.cli import main

    _table([0, 40, 2000], [0, 0, 0], [0.06, 0.04, 0.01]).write(tmp_path / "c.ecsv")
    assert main(["doubles", "--catalogue", str(tmp_path / "c.ecsv"), "--out",
                 str(tmp_path / "pairs.ecsv"), "--flagged", str(tmp_path / "f.fits")]) == 0
    assert "1 double sources" in capsys.readouterr().out
    assert len(Table.read(tmp_path / "pairs.ecsv")) == 1
    assert list(Table.read(tmp_path / "f.fits")["double"]) == [1, 1, 0]
    assert main(["doubles", "--catalogue", str(tmp_path / "c.ecsv"), "--out",
                 str(tmp_path / "pairs.xlsx")]) == 2
    no_flux = make_table({"ra": [1.0, 2.0], "dec": [0.0, 0.0]})
    with pytest.raises(CatalogueError, match="needs ra, dec and flux"):
        find_doubles(no_flux)
    with pytest.raises(CatalogueError, match="pairs need two"):
        find_doubles(_table([0], [0], [0.01]))
    with pytest.raises(ValueError, match="max_ratio"):
        find_doubles(_table([0, 1], [0, 0], [0.01, 0.01]), max_ratio=0.5)


def test_confirmed_pairs_merged_into_one_source_each():
    # two lobes of one radio galaxy and a chance pair: only the pair of a confirmed class is
    # merged (summed flux, flux-weighted centre, the separation as its size, the pair's axis)
    from cianna_jax.astro.association import associated

    t = make_table({"id": [1, 2, 3, 4, 5], "ra": [10.0, 10.01, 11.0, 11.01, 12.0],
                    "dec": [0.0, 0.0, 0.0, 0.0, 0.0], "flux": [1e-3, 3e-3, 2e-3, 2e-3, 1e-3],
                    "bmaj": [5.0, 6.0, 5.0, 5.0, 5.0], "bmin": [4.0, 3.0, 4.0, 4.0, 4.0],
                    "pa": [0.0, 0.0, 0.0, 0.0, 0.0]},
                   units={"ra": "deg", "dec": "deg", "flux": "Jy", "bmaj": "arcsec",
                          "bmin": "arcsec", "pa": "deg"})
    pairs = make_table({"number": [1, 2], "row_1": [0, 2], "row_2": [1, 3],
                        "ra": [10.0075, 11.005], "dec": [0.0, 0.0], "flux": [4e-3, 4e-3],
                        "sep": [36.0, 36.0], "pa": [90.0, 90.0],
                        "morph_class": ["fr2", "pair"]})
    m = associated(t, pairs, ["fr1", "fr2"])
    assert len(m) == 4 and list(m["id"]) == [1, 3, 4, 5]
    row = m[0]
    assert row["flux"] == pytest.approx(4e-3) and row["ra"] == pytest.approx(10.0075)
    assert row["bmaj"] == pytest.approx(36.0) and row["bmin"] == pytest.approx(4.0)
    assert row["pa"] == pytest.approx(90.0)
    assert list(m["n_components"]) == [2, 1, 1, 1] and list(m["associated"]) == [1, 0, 0, 0]
    # fluxes in mJy keep their unit
    t["flux"] = t["flux"].to("mJy")
    assert associated(t, pairs, ["fr2"])["flux"][0] == pytest.approx(4.0)
    with pytest.raises(CatalogueError, match="classify them first"):
        associated(t, pairs[["number", "row_1", "row_2", "ra", "dec", "flux", "sep", "pa"]],
                   ["fr2"])
