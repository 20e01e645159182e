"""Sky models in the makesourcedb (BBS) text format: PyBDSF's read as it wrote them, ours
written and read back (points and Gaussians, patches, spectral indices), the command line
and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import (  # noqa: E402
    CatalogueError,
    make_table,
    read_catalogue,
    to_bbs,
    write_catalogue,
)
from cianna_jax.cli import main  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "pybdsf_bbs"


def test_pybdsf_own_sky_model_reads_as_its_gaussian_list():
    sky = read_catalogue(DATA / "f_patch.sky_in")
    gaul = read_catalogue(DATA / "f.gaul.ecsv")
    assert len(sky) == len(gaul) > 50 and sky.meta["frequency_hz"] == 1.4e9
    order = np.argsort([int(n.split("_g")[-1]) for n in sky["name"]])
    s, g = sky[order], gaul[np.argsort(np.asarray(gaul["Gaus_id"]))]
    np.testing.assert_allclose(s["ra"], g["RA"], atol=1e-7)
    np.testing.assert_allclose(s["dec"], g["DEC"], atol=1e-7)
    np.testing.assert_allclose(s["flux"], g["Total_flux"], rtol=2e-3)
    gauss = np.asarray(s["type"]) == "GAUSSIAN"
    assert 0 < gauss.sum() < len(s)
    np.testing.assert_allclose(s["bmaj_deconv"][gauss], np.asarray(g["DC_Maj"])[gauss] * 3600,
                               rtol=1e-4)
    np.testing.assert_allclose(s["pa_deconv"][gauss], np.asarray(g["DC_PA"])[gauss], atol=1e-3)
    assert np.all(s["bmaj_deconv"][~gauss] == 0) and np.all(s["alpha"] == -0.8)
    assert all(p.startswith("f_patch_s") for p in s["patch"])


def test_ours_written_and_read_back(tmp_path):
    """Resolved rows as Gaussians of their deconvolved size, the others points; the
    spectral index where known, else the default; patches per source; positions to 1e-7
    degrees."""
    rng = np.random.default_rng(0)
    n = 12
    t = make_table({"id": np.arange(1, n + 1), "ra": rng.uniform(359.9, 360.1, n) % 360,
                    "dec": rng.uniform(-30.1, -29.9, n), "flux": 10 ** rng.uniform(-4, -1, n),
                    "bmaj_deconv": np.full(n, 4.0), "bmin_deconv": np.full(n, 2.5),
                    "pa_deconv": np.full(n, 30.0), "resolved": np.arange(n) % 3 == 0,
                    "source_id": np.arange(n) // 2 + 1, "island_id": np.arange(n) // 4 + 1,
                    "alpha": np.where(np.arange(n) < 6, -0.5, np.nan)},
                   meta={"frequency_hz": 1.28e9, "image": "my field.fits"})
    text = to_bbs(t, patches="source")
    assert text.splitlines()[0].startswith("format = Name, Type, Patch, Ra, Dec, I")
    assert text.count(", , source_") == 6 and "my_field_i1_s1_g1" in text
    (tmp_path / "f.skymodel").write_text(text)
    back = read_catalogue(tmp_path / "f.skymodel")
    np.testing.assert_allclose(back["ra"], t["ra"], atol=1e-7)
    np.testing.assert_allclose(back["dec"], t["dec"], atol=1e-7)
    np.testing.assert_allclose(back["flux"], t["flux"], rtol=1e-6)
    res = np.asarray(t["resolved"])
    assert list(back["type"]) == ["GAUSSIAN" if r else "POINT" for r in res]
    np.testing.assert_allclose(back["bmaj_deconv"], np.where(res, 4.0, 0.0))
    np.testing.assert_allclose(back["pa_deconv"], np.where(res, 30.0, 0.0))
    np.testing.assert_allclose(back["alpha"], np.where(np.arange(n) < 6, -0.5, -0.8))
    assert back.meta["frequency_hz"] == pytest.approx(1.28e9)
    write_catalogue(t, tmp_path / "g.sky")  # by extension, no patches
    assert "Patch" not in (tmp_path / "g.sky").read_text().splitlines()[0]
    flat = to_bbs(t, default_alpha=None, min_flux=1e-2)
    assert "[]" in flat and flat.count("\n") - 2 == int(np.sum(np.asarray(t["flux"]) >= 1e-2))


def test_the_command_line_and_refusals(tmp_path, capsys):
    t = make_table({"id": [1, 2, 3], "ra": [10.0, 10.001, 10.002], "dec": [-30.0] * 3,
                    "flux": [1e-3, 2e-3, np.nan]}, meta={"frequency_hz": 1.4e9})
    write_catalogue(t, tmp_path / "c.ecsv")
    alpha = make_table({"id": [1, 2], "ra": [10.0, 10.001], "dec": [-30.0] * 2,
                        "alpha": [-1.1, 0.3], "alpha_err": [0.05, 0.9]})
    write_catalogue(alpha, tmp_path / "a.ecsv")
    with pytest.warns(UserWarning, match="1 rows without a finite position or flux"):
        code = main(["skymodel", "--catalogue", str(tmp_path / "c.ecsv"), "--alpha",
                     str(tmp_path / "a.ecsv"), "--out", str(tmp_path / "s.skymodel")])
    assert code == 0 and "2 components (0 Gaussians, 2 points)" in capsys.readouterr().out
    back = read_catalogue(tmp_path / "s.skymodel")
    np.testing.assert_allclose(back["alpha"], [-1.1, -0.8])  # (0.3 +- 0.9: not used)
    assert main(["skymodel", "--catalogue", str(tmp_path / "c.ecsv"), "--patches", "source",
                 "--out", str(tmp_path / "s.skymodel")]) == 2
    assert "patches by source need its source_id" in capsys.readouterr().err
    assert main(["skymodel", "--catalogue", str(tmp_path / "c.ecsv"), "--apparent",
                 "--out", str(tmp_path / "s.skymodel")]) == 2
    assert "no pb column" in capsys.readouterr().err
    t["pb"] = [0.5, 0.25, 1.0]
    write_catalogue(t, tmp_path / "pb.ecsv")
    with pytest.warns(UserWarning):
        assert main(["skymodel", "--catalogue", str(tmp_path / "pb.ecsv"), "--apparent",
                     "--out", str(tmp_path / "a.skymodel")]) == 0
    np.testing.assert_allclose(read_catalogue(tmp_path / "a.skymodel")["flux"], [5e-4, 5e-4])
    del t.meta["frequency_hz"]
    with pytest.raises(CatalogueError, match="reference frequency"):
        to_bbs(t)
    with pytest.raises(ValueError, match="patches"):
        to_bbs(t, freq_hz=1e9, patches="cluster")
    (tmp_path / "bad.skymodel").write_text("just text\n")
    with pytest.raises(CatalogueError, match="format"):
        read_catalogue(tmp_path / "bad.skymodel")
    (tmp_path / "bad2.skymodel").write_text("format = Name, Type, Ra, Dec, I\n\n"
                                            "a, POINT, 12:00:00, +10.00.00, lots\n")
    with pytest.raises(CatalogueError, match="line 3: i 'lots' is not a number"):
        read_catalogue(tmp_path / "bad2.skymodel")


def test_mutated_sky_models_read_or_are_refused(tmp_path):
    """300 deterministic mutations of PyBDSF's sky model (bytes flipped, lines cut, doubled
    or dropped, fields emptied): each reads as a table or raises CatalogueError."""
    import warnings

    base = (DATA / "f_patch.sky_in").read_bytes()
    lines = base.split(b"\n")
    rng = np.random.default_rng(7)
    path = tmp_path / "m.skymodel"
    outcomes = {"read": 0, "refused": 0}
    for k in range(300):
        kind = k % 4
        if kind == 0:
            data = bytearray(base)
            for i in rng.integers(0, len(data), 8):
                data[i] = int(rng.integers(0, 256))
            data = bytes(data)
        elif kind == 1:
            data = base[: int(rng.integers(0, len(base)))]
        elif kind == 2:
            pick = rng.integers(0, len(lines), len(lines))
            data = b"\n".join(lines[i] for i in sorted(pick))
        else:
            row = lines[int(rng.integers(2, len(lines) - 1))].split(b", ")
            row[int(rng.integers(0, len(row)))] = b""
            data = b"\n".join(lines[:2] + [b", ".join(row)] + lines[2:])
        path.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = read_catalogue(path)
            outcomes["read"] += 1
            dec, ra = np.asarray(t["dec"]), np.asarray(t["ra"])
            assert np.all(np.abs(dec) <= 90) and np.all((ra >= 0) & (ra < 360)), k
        except CatalogueError:
            outcomes["refused"] += 1
    assert outcomes["read"] > 50 and outcomes["refused"] > 20, outcomes
