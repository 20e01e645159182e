"""A catalogue against a reference survey: offsets, flux scale and their systematic parts
recovered from tables with known ones, isolation, other frequencies, the correction, the
command line and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import (  # noqa: E402
    CatalogueError,
    make_table,
    read_catalogue,
    write_catalogue,
)
from cianna_jax.astro.reference_check import (  # noqa: E402
    apply_reference,
    format_reference_check,
    reference_check,
)
from cianna_jax.cli import main  # noqa: E402

N = 2500
D_RA, D_DEC, RATIO = 0.4, -0.25, 1.1  # ours - reference (arcsec), ours / reference


def _tables(seed: int = 0, ref_freq: float = 560e6, extra_pos: float = 0.2,
            extra_flux: float = 0.05):
    """Ours and a reference of the same sources: the reference moved by -(D_RA, D_DEC),
    its fluxes over RATIO, each with noise its errors give plus ``extra_*`` beyond them."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(-0.5, 0.5, N) % 360.0
    dec = rng.uniform(-30.5, -29.5, N)
    cosd = np.cos(np.radians(dec))
    flux = 10 ** rng.uniform(-4, -2, N)
    rms = np.full(N, 1e-5)
    ours = make_table({"id": np.arange(1, N + 1),
                       "ra": (ra + rng.normal(0, 0.1, N) / 3600 / cosd) % 360.0,
                       "dec": dec + rng.normal(0, 0.1, N) / 3600, "ra_err": np.full(N, 0.1),
                       "dec_err": np.full(N, 0.1), "flux": flux * (1 + rng.normal(0, 0.02, N)),
                       "flux_err": 0.02 * flux, "rms": rms, "snr": flux / rms},
                      meta={"beam_bmaj_arcsec": 5.0, "frequency_hz": 560e6})
    pos = np.hypot(0.3, extra_pos)
    scale = (ref_freq / 560e6) ** -0.7
    ref = make_table({"ra": (ra - (D_RA + rng.normal(0, pos, N)) / 3600 / cosd) % 360.0,
                      "dec": dec - (D_DEC + rng.normal(0, pos, N)) / 3600,
                      "ra_err": np.full(N, 0.3), "dec_err": np.full(N, 0.3),
                      "flux": flux / RATIO * scale * (1 + rng.normal(0, np.hypot(0.03, extra_flux),
                                                                     N)),
                      "flux_err": 0.03 * flux / RATIO * scale},
                     meta={"frequency_hz": ref_freq})
    return ours, ref


def test_offsets_flux_scale_and_their_systematic_parts():
    ours, ref = _tables()
    c = reference_check(ours, ref)
    assert len(c.pairs) > 0.8 * N
    assert abs(c.d_ra - D_RA) < 3 * c.d_ra_err and abs(c.d_dec - D_DEC) < 3 * c.d_dec_err
    assert 0.005 < c.d_ra_err < 0.02
    assert c.astrometric_error == pytest.approx(0.2, abs=0.04)
    assert abs(c.flux_ratio - RATIO) < 3 * c.flux_ratio_err
    assert c.flux_scale_error == pytest.approx(0.05, abs=0.015)
    text = format_reference_check(c)
    assert "--astrometric-error" in text and "--flux-scale-error" in text
    exact = reference_check(*_tables(seed=1, extra_pos=0.0, extra_flux=0.0))
    assert exact.astrometric_error < 0.08 and exact.flux_scale_error < 0.015


def test_close_neighbours_and_blends_are_left_out():
    ours, ref = _tables()
    ours, ref = ours[:50], ref[:50]
    # a companion of ours 2" from source 1 (one reference source for both: a blend) and a
    # reference source 3" from ours' source 2 (two reference sources for one of ours)
    ours.add_row({"id": 51, "ra": ours["ra"][0], "dec": ours["dec"][0] + 2 / 3600,
                  "ra_err": 0.1, "dec_err": 0.1, "flux": 1e-3, "flux_err": 2e-5,
                  "rms": 1e-5, "snr": 100.0})
    ref.add_row({"ra": ref["ra"][1], "dec": ref["dec"][1] + 3 / 3600, "ra_err": 0.3,
                 "dec_err": 0.3, "flux": 1e-3, "flux_err": 3e-5})
    c = reference_check(ours, ref)
    ids = set(np.asarray(c.pairs["id"]).tolist())
    assert not ids & {1, 2, 51} and len(ids) >= 40


def test_another_frequency_scales_by_alpha_and_corrects_positions_only():
    ours, ref = _tables(ref_freq=1400e6, extra_flux=0.0)
    c = reference_check(ours, ref, alpha=-0.7)
    assert abs(c.flux_ratio - RATIO) < 3 * c.flux_ratio_err
    assert math.isnan(c.flux_scale_error) and not c.settings["same_frequency"]
    assert "frequencies differ" in format_reference_check(c)
    with pytest.raises(ValueError, match="another frequency"):
        apply_reference(ours, c)
    moved = apply_reference(ours, c, fluxes=False)
    again = reference_check(moved, ref)
    assert abs(again.d_ra) < 3 * again.d_ra_err and abs(again.d_dec) < 3 * again.d_dec_err
    np.testing.assert_array_equal(moved["flux"], ours["flux"])
    assert np.all(np.asarray(moved["ra_err"]) > 0.1)


def test_a_reference_with_each_source_s_own_spectral_index():
    """A reference (a sky model, say) whose sources have their own spectral indices (its
    alpha column, as at 1400 MHz): each pair scaled by its own; with one alpha for all the
    ratio is off by the indices' spread."""
    ours, ref = _tables(ref_freq=1400e6, extra_flux=0.0)
    rng = np.random.default_rng(3)
    own = rng.normal(-0.3, 0.2, len(ref))  # steeper than -0.7: fluxes at 1400 MHz higher
    ref["flux"] = np.asarray(ref["flux"]) * (1400 / 560) ** (own + 0.7)
    ref["flux_err"] = np.asarray(ref["flux_err"]) * (1400 / 560) ** (own + 0.7)
    ref["alpha"] = own
    c = reference_check(ours, ref)
    assert abs(c.flux_ratio - RATIO) < 3 * c.flux_ratio_err
    assert c.settings["n_own_alpha"] == len(c.pairs) and "by their own" in \
        format_reference_check(c)
    del ref["alpha"]
    one = reference_check(ours, ref, alpha=-0.7)
    assert one.flux_ratio < 0.8 * RATIO and one.settings["n_own_alpha"] == 0


def test_the_correction_removes_what_it_measured():
    ours, ref = _tables()
    c = reference_check(ours, ref)
    fixed = apply_reference(ours, c)
    again = reference_check(fixed, ref)
    assert abs(again.d_ra) < 3 * again.d_ra_err and abs(again.flux_ratio - 1) < 0.01
    np.testing.assert_allclose(fixed["flux_err"], np.hypot(
        np.asarray(ours["flux_err"]) / c.flux_ratio,
        c.flux_scale_error * np.asarray(fixed["flux"])))
    assert fixed.meta["reference_correction"]["n_pairs"] == len(c.pairs)


def test_refusals():
    ours, ref = _tables()
    with pytest.raises(CatalogueError, match="flux"):
        reference_check(ours, ref[["ra", "dec"]])
    bare = ref.copy()
    bare.meta.clear()
    with pytest.raises(CatalogueError, match="reference: no frequency"):
        reference_check(ours, bare)
    assert reference_check(ours, bare, ref_freq_hz=560e6).settings["same_frequency"]
    no_beam = ours.copy()
    no_beam.meta.pop("beam_bmaj_arcsec")
    with pytest.raises(ValueError, match="beam"):
        reference_check(no_beam, ref)
    with pytest.raises(ValueError, match="alpha"):
        reference_check(ours, ref, alpha=float("nan"))
    elsewhere = ref.copy()
    elsewhere["dec"] = np.asarray(elsewhere["dec"]) + 5.0
    with pytest.raises(ValueError, match="same sky"):
        reference_check(ours, elsewhere)
    few = reference_check(ours[:1], ref[:1])
    with pytest.raises(ValueError, match="too few"):
        apply_reference(ours, few)


def test_the_command_line(tmp_path, capsys):
    ours, ref = _tables()
    write_catalogue(ours, tmp_path / "ours.ecsv")
    write_catalogue(ref, tmp_path / "ref.ecsv")
    args = ["reference-check", "--catalogue", str(tmp_path / "ours.ecsv"), "--reference",
            str(tmp_path / "ref.ecsv"), "--out", str(tmp_path / "pairs.ecsv"), "--figure",
            str(tmp_path / "ref.png"), "--corrected", str(tmp_path / "fixed.ecsv")]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "compact isolated pairs" in said and "corrected (both)" in said
    assert (tmp_path / "ref.png").stat().st_size > 10_000
    pairs = read_catalogue(tmp_path / "pairs.ecsv")
    assert pairs.meta["reference_check"]["n_pairs"] == len(pairs)
    assert "reference_correction" in read_catalogue(tmp_path / "fixed.ecsv").meta
    assert main(args[:-2] + ["--corrected", str(tmp_path / "f2.ecsv"), "--ref-freq-mhz",
                             "1400"]) == 2
    assert "another frequency" in capsys.readouterr().err


def test_a_reference_of_lower_resolution_is_compared_with_our_sums():
    """NVSS-like: a 45" reference of sources that ours (5") resolves into two components;
    each is compared with the sum of ours within its beam (chosen automatically)."""
    rng = np.random.default_rng(3)
    n = 300
    ra0, dec0 = rng.uniform(0, 2.0, n), rng.uniform(-31, -29, n)
    total = 10 ** rng.uniform(-3, -2, n)
    cosd = np.cos(np.radians(dec0))
    # two components 10" apart east-west, 60% and 40% of the flux: centroid at ra0
    ra = np.concatenate([ra0 - 4 / 3600 / cosd, ra0 + 6 / 3600 / cosd]) % 360.0
    dec = np.concatenate([dec0, dec0])
    flux = np.concatenate([0.6 * total, 0.4 * total])
    ours = make_table({"id": np.arange(1, 2 * n + 1), "ra": ra, "dec": dec, "flux": flux,
                       "flux_err": 0.01 * flux, "rms": np.full(2 * n, 1e-5),
                       "snr": flux / 1e-5, "ra_err": np.full(2 * n, 0.2),
                       "dec_err": np.full(2 * n, 0.2)},
                      meta={"beam_bmaj_arcsec": 5.0, "frequency_hz": 1.4e9})
    ref = make_table({"ra": (ra0 - D_RA / 3600 / cosd) % 360.0, "dec": dec0 - D_DEC / 3600,
                      "flux": total / RATIO, "flux_err": 0.02 * total / RATIO},
                     meta={"beam_bmaj_arcsec": 45.0, "frequency_hz": 1.4e9})
    c = reference_check(ours, ref)
    assert c.settings["summed"] and len(c.pairs) > 0.8 * n
    assert np.all(np.asarray(c.pairs["n_ours"]) == 2)
    assert c.flux_ratio == pytest.approx(RATIO, rel=1e-6)
    assert c.d_ra == pytest.approx(D_RA, abs=1e-6) and c.d_dec == pytest.approx(D_DEC, abs=1e-6)
    assert "against the sum of" in format_reference_check(c)
    # corrected by it (errors widened by a flux scale error of 20%, beyond 1 / min_snr):
    # the same sums are compared again, and agree
    from cianna_jax.astro.reference_check import apply_reference

    noisy = ours.copy()
    noisy["flux"] = flux * rng.normal(1.0, 0.2, 2 * n)
    c1 = reference_check(noisy, ref)
    assert c1.flux_scale_error > 0.1
    again = reference_check(apply_reference(noisy, c1), ref)
    assert len(again.pairs) == len(c1.pairs)
    assert again.flux_ratio == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="same sky"):  # the components alone: none isolated
        reference_check(ours, ref, summed=False)
