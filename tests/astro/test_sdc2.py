"""The SKA Data Challenge 2 (HI cubes): its catalogue text format, the conversion of a
cube's line catalogue, and its score against the official scorer's value."""

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import (  # noqa: E402
    SDC2_COLUMNS,
    SDC2_Q0,
    CatalogueError,
    make_table,
    read_catalogue,
    sdc2_columns,
    to_sdc2,
    write_catalogue,
)
from cianna_jax.astro.sdc2 import sdc2_score  # noqa: E402

# a truth of 14 lines (one below the band) and a submission of 16: 10 perturbed matches, an
# exact one, a duplicate, a flux 9x off (multi-d error >= 5), two false (sky, frequency) and
# one above the band
TRUTH = """id ra dec hi_size line_flux_integral central_freq pa i w20
1 179.9046449 -30.03088613 5.894597328 169.2841026 1066571162 181.4452137 10.96233201 142.1444097
2 179.9193965 -29.94672624 5.822676078 109.6500899 1097858997 337.4435317 32.24697472 168.1523408
3 180.1256903 -29.81302562 8.451501083 144.6532637 1033294985 270.142774 10.73540118 265.0118979
4 179.8367664 -29.92677407 26.88014119 81.02456744 995310584.2 206.8079392 72.06002072 206.9674139
5 180.0400402 -30.04335007 21.35490946 114.1091307 990919862.7 222.2179692 18.27756942 337.5976241
6 180.0914242 -30.12509897 25.92938074 58.92021038 992617120.7 182.358537 14.30913841 199.8816943
7 179.8751604 -30.06161573 20.39977927 38.12664836 1068684993 347.3142512 83.64125074 462.0458642
8 179.8220587 -29.99557361 13.97664474 26.94874339 980273913.9 81.58538281 43.44024096 483.9853824
9 179.9099877 -29.84351624 16.94761124 146.3509057 963583934.8 248.0497694 33.87947493 104.9626435
10 180.0629732 -29.88977442 19.02297498 102.1575118 1109939454 199.8348044 13.67600422 167.805082
11 180.0249063 -30.07274136 26.27718559 181.5921465 977894001.2 15.12424406 39.21964632 316.469737
12 179.8600249 -29.83031324 14.83102649 170.3329768 1041105216 106.6139999 37.45292929 403.6772964
13 179.9730523 -30.01163605 27.09048297 89.31712421 940000000 333.7800967 49.2610591 106.8901772
14 180.0677189 -29.92249646 19.57035734 195.2621785 1071649034 282.4433487 10.50890999 157.6171275
"""
SUB = """id ra dec hi_size line_flux_integral central_freq pa i w20
1 179.9050484 -30.03128411 7.321070761 194.1331782 1066589147 178.2802614 3.220880241 148.6618986
2 179.9197154 -29.94670715 6.244543229 104.6342613 1097855718 351.9390616 38.63157617 171.2992769
3 180.1254614 -29.81324731 10.85755134 150.7379103 1033323962 258.3112763 9.996136657 271.3061623
4 179.8373165 -29.92711088 27.66543983 74.19510142 995352087.9 205.8334683 76.07703649 221.1160635
5 180.0397024 -30.04326603 20.91407124 128.6369234 990888626.2 235.4580686 11.08172656 303.1167661
6 180.091304 -30.12464178 28.99926401 49.18461427 992599360.1 172.6207556 14.50590947 215.2962087
7 179.8752705 -30.06130421 16.15492364 36.45833203 1068657724 331.2213291 82.07520107 506.114422
8 179.822372 -29.99567346 11.95949309 26.11377255 980287272.1 86.00540214 35.42957226 416.9072333
9 179.910132 -29.84388489 16.87823789 170.5716201 963544542.3 250.4887584 23.76189098 92.18925672
10 180.0633095 -29.89023425 24.30548767 82.29772457 1109934677 230.338866 19.60379475 152.3928882
11 180.0249063 -30.07274136 26.27718559 181.5921465 977894001.2 15.12424406 39.21964632 316.469737
12 179.9052004 -30.03088613 5.894597328 220.0693334 1066571162 181.4452137 10.96233201 142.1444097
13 179.8600249 -29.83031324 14.83102649 1532.996792 1041105216 106.6139999 37.45292929 403.6772964
14 181 -29.5 5.894597328 169.2841026 1066571162 181.4452137 10.96233201 142.1444097
15 179.9193965 -29.94672624 5.822676078 109.6500899 1102858997 337.4435317 32.24697472 168.1523408
16 180.1256903 -29.81302562 8.451501083 144.6532637 1160000000 270.142774 10.73540118 265.0118979
"""


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "truth.txt").write_text(TRUTH)
    (tmp_path / "sub.sdc2").write_text(SUB)
    return tmp_path / "sub.sdc2", tmp_path / "truth.txt"


def test_sdc2_score_matches_official_scorer(files):
    """Value computed by ska-sdc 2.0.0 (Sdc2Scorer.from_txt(sub, truth).run(), pandas 2.3)
    on these files: 6.4635038441640695; 16 submitted, 12 matches, 1 rejected."""
    sub, truth = (read_catalogue(p) for p in files)  # .txt with SDC2's header: SDC2
    s = sdc2_score(sub, truth)
    assert s.value == pytest.approx(6.4635038441640695, rel=1e-12)
    assert (s.n_det, s.n_match, s.n_bad, s.n_false) == (16, 12, 1, 4)
    assert s.acc_pc == pytest.approx(87.1958653680339, rel=1e-12)
    np.testing.assert_allclose(s.per_source["pa"][[2, 10]], [0.689868, 0.327825], atol=1e-6)
    assert s.match_sub.tolist() == [1, 12, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_sdc2_score_rules(files):
    truth = read_catalogue(files[1])
    perfect = sdc2_score(truth, truth)
    # 13 lines in the band score 1 each; the 14th counts as false (the official scorer: 12)
    assert perfect.value == pytest.approx(12.0) and perfect.n_match == 13
    assert perfect.n_det == 14 and perfect.n_false == 1
    with pytest.raises(ValueError, match="missing SDC2 column"):
        sdc2_score({"id": [1]}, truth)


def test_the_text_format_round_trips(files, tmp_path):
    t = read_catalogue(files[0])
    assert t.colnames == list(SDC2_COLUMNS) and len(t) == 16
    assert str(t["central_freq"].unit) == "Hz" and t.meta["w20_frame"] == "observed"
    write_catalogue(t, tmp_path / "again.sdc2")
    back = read_catalogue(tmp_path / "again.sdc2")
    for c in SDC2_COLUMNS:
        np.testing.assert_allclose(np.asarray(back[c]), np.asarray(t[c]), rtol=1e-8)
    (tmp_path / "short.sdc2").write_text("id ra dec\n1 2 3\n")
    with pytest.raises(CatalogueError, match="9"):
        read_catalogue(tmp_path / "short.sdc2")


def _cube_catalogue(**over):
    cols = {"id": np.array([1, 2, 3]), "ra": np.array([-0.5, 0.1, 0.2]),
            "dec": np.array([-30.0, -30.1, -29.9]), "freq": np.array([1.0e9, 1.05e9, 1.1e9]),
            "line_flux": np.array([50.0, 60.0, 70.0]), "w20": np.array([200.0, 300.0, 150.0]),
            "redshift": 1420405751.768 / np.array([1.0e9, 1.05e9, 1.1e9]) - 1,
            "bmaj": np.array([9.0, 12.0, 7.0]), "pa": np.array([30.0, 100.0, 170.0]),
            "bmaj_deconv": np.array([6.0, 10.0, 0.0]), "bmin_deconv": np.array([3.0, 1.0, 0.0]),
            "pa_kin": np.array([210.0, np.nan, np.nan])}
    cols.update(over)
    return make_table(cols)


def test_a_cube_catalogue_in_sdc2_terms(tmp_path):
    t = _cube_catalogue()
    write_catalogue(t, tmp_path / "c.sdc2")
    s = read_catalogue(tmp_path / "c.sdc2")
    z = np.asarray(t["redshift"])
    np.testing.assert_allclose(np.asarray(s["w20"]), np.asarray(t["w20"]) * (1 + z), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s["ra"]), [359.5, 0.1, 0.2])
    np.testing.assert_allclose(np.asarray(s["line_flux_integral"]), [50.0, 60.0, 70.0])
    np.testing.assert_allclose(np.asarray(s["central_freq"]), [1.0e9, 1.05e9, 1.1e9])
    # hi_size: SDC2's diameter at 1 Msun/pc^2 from the HI mass, M = 49.7 D_L^2 S, by the
    # size-mass relation log D/kpc = 0.506 log M - 3.293 (Wang et al. 2016), seen at D_A
    from astropy.cosmology import Planck18

    mass = 49.7 * Planck18.luminosity_distance(z).to_value("Mpc") ** 2 * np.array([50, 60, 70])
    d_kpc = 10 ** (0.506 * np.log10(mass) - 3.293)
    want_size = d_kpc / Planck18.angular_diameter_distance(z).to_value("kpc") * 206264.806
    np.testing.assert_allclose(np.asarray(s["hi_size"]), want_size, rtol=1e-6)
    assert 10 < want_size.min() and want_size.max() < 15  # ~2 beams at z 0.3-0.4
    # the catalogue's d_hi where it has one; the deconvolved FWHM for a line without a mass
    given = sdc2_columns(_cube_catalogue(d_hi=np.array([1.0, 2.0, 3.0])))["hi_size"]
    np.testing.assert_allclose(given, [1.0, 2.0, 3.0])
    no_mass = sdc2_columns(_cube_catalogue(line_flux=np.array([50.0, 60.0, -1.0])))["hi_size"]
    np.testing.assert_allclose(no_mass, [*want_size[:2], 0.0], rtol=1e-6)
    # the receding half where measured, else the axis
    np.testing.assert_allclose(np.asarray(s["pa"]), [210.0, 100.0, 170.0])
    # inclination of a thick disc: q = 0.5 -> cos^2 i = (0.25 - q0^2) / (1 - q0^2); q under
    # q0: edge-on; unresolved: 60 degrees
    want = math.degrees(math.acos(math.sqrt((0.25 - SDC2_Q0**2) / (1 - SDC2_Q0**2))))
    np.testing.assert_allclose(np.asarray(s["i"]), [want, 90.0, 60.0], rtol=1e-5)
    with pytest.warns(UserWarning, match=r"1 of 3 lines left out.*line_flux_integral"):
        text = to_sdc2(_cube_catalogue(line_flux=np.array([1.0, np.nan, 2.0])))
    assert [r.split()[0] for r in text.splitlines()[1:]] == ["1", "3"]
    with pytest.raises(CatalogueError, match="freq"):
        to_sdc2(make_table({"ra": [1.0], "dec": [2.0], "flux": [1.0]}))


def test_val_scores_sdc2_only_in_sdc2s_band():
    """A cube outside SDC2's 0.95-1.15 GHz: its scorer would match nothing (every line a
    false one), so val gives no SDC2 score; inside, it does."""
    from types import SimpleNamespace

    from cianna_jax.astro.validate import _sdc2_for

    t = _cube_catalogue()
    t["hi_size"], t["i"] = [6.0, 10.0, 1.0], [40.0, 80.0, 60.0]
    inside = _sdc2_for(t, SimpleNamespace(table=t))
    assert inside is not None and inside.n_match == 3
    far = _cube_catalogue(freq=np.array([1.40e9, 1.41e9, 1.42e9]))
    far["hi_size"], far["i"] = t["hi_size"], t["i"]
    assert _sdc2_for(far, SimpleNamespace(table=far)) is None
    # a truth without SDC2's hi_size and i: no score
    assert _sdc2_for(t, SimpleNamespace(table=_cube_catalogue())) is None
