"""Cutouts: which sources, the windows around them, their FITS stamps, the gallery and
the refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import make_table, read_catalogue  # noqa: E402
from cianna_jax.astro.cutouts import (  # noqa: E402
    catalogue_pixels,
    cut_stamps,
    select_rows,
    write_stamps,
)
from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.cli import main  # noqa: E402


def _flagged_table():
    return make_table({"id": np.arange(1, 7), "flux": [5.0, 4.0, 3.0, 2.0, 1.0, np.nan],
                       "edge": [False, True, False, False, False, False],
                       "blended": [False, False, False, True, False, False],
                       "deblended": [False] * 6, "resolved": [True, False, True] + [False] * 3,
                       "s_code": ["S", "S", "S", "S", "M", "S"],
                       "near_bright": [False, True, True, True, False, False],
                       "reliability": [1.0, 0.9, 0.6, 0.6, 1.0, 1.0]})


def test_which_sources():
    t = _flagged_table()
    assert select_rows(t, "brightest", 3).tolist() == [0, 1, 2]
    assert select_rows(t, "faintest", 2).tolist() == [5, 4]  # (no flux: the faintest)
    assert select_rows(t, "flagged", 9).tolist() == [1, 3, 4]
    assert select_rows(t, "resolved", 9).tolist() == [0, 2]
    assert select_rows(t, "multiple", 9).tolist() == [4]
    assert select_rows(t, "near_bright", 9).tolist() == [2, 3, 1]  # least reliable first
    r = select_rows(t, "random", 3, seed=5)
    assert r.tolist() == select_rows(t, "random", 3, seed=5).tolist() and len(set(r)) == 3
    assert select_rows(t, ids=[4, 2]).tolist() == [3, 1]
    with pytest.raises(ValueError, match=r"not in catalogue: \[9\]"):
        select_rows(t, ids=[2, 9])
    with pytest.raises(ValueError, match="select"):
        select_rows(t, "loudest")
    with pytest.raises(ValueError, match="n:"):
        select_rows(t, "brightest", 0)


def test_windows_centred_on_the_sources(field, tmp_path):
    path, truth_path, _ = field
    t = read_catalogue(truth_path)
    rows = select_rows(t, "brightest", 4)
    with open_image(path) as img:
        x, y, major, _, _ = catalogue_pixels(t, img)
        stamps = cut_stamps(img, t, rows)
        wide = cut_stamps(img, t, rows[:1], size_arcsec=30.0)
        names = write_stamps(img, t, stamps, tmp_path / "st")
        whole = img.read()
        beam, scale = img.beam_fwhm_pixels()[0], img.pixel_scale
        with pytest.raises(ValueError, match="lies off"):
            far = t.copy()
            far["ra"][0] += 1.0
            cut_stamps(img, far, [0])
    np.testing.assert_allclose(x, t["x"], atol=1e-6)  # through the WCS
    for s in stamps:
        h, w = s.data.shape
        assert h == w and h >= 10 * beam and h % 2 == 1
        cx, cy = int(np.floor(s.x + 0.5)), int(np.floor(s.y + 0.5))
        assert (cy - s.y0, cx - s.x0) == (h // 2, w // 2)
        inside = s.data[max(-s.y0, 0):, max(-s.x0, 0):]
        got = whole[max(s.y0, 0):max(s.y0, 0) + inside.shape[0],
                    max(s.x0, 0):max(s.x0, 0) + inside.shape[1]]
        np.testing.assert_array_equal(inside[:got.shape[0], :got.shape[1]], got)
    assert wide[0].data.shape[0] == 2 * int(np.ceil(30.0 / scale / 2)) + 1
    from astropy.io import fits
    from astropy.wcs import WCS

    h = fits.getheader(tmp_path / "st" / names[0])
    sx, sy = WCS(h).celestial.world_to_pixel_values(t["ra"][rows[0]], t["dec"][rows[0]])
    assert (float(sx), float(sy)) == pytest.approx((h["SRC_X"], h["SRC_Y"]), abs=1e-6)
    assert h["SRC_ID"] == t["id"][rows[0]] and h["BMAJ"] > 0 and h["BUNIT"] == "Jy/beam"


def test_the_command_line_and_refusals(field, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, truth_path, _ = field
    out = tmp_path / "g.png"
    assert main(["cutouts", "--catalogue", truth_path, "--image", path, "--out", str(out),
                 "--n", "4", "--fits-dir", str(tmp_path / "fits")]) == 0
    said = capsys.readouterr().out
    assert "4 sources (the brightest)" in said and "4 FITS stamps" in said
    assert out.stat().st_size > 10_000 and len(list((tmp_path / "fits").iterdir())) == 4
    assert main(["cutouts", "--catalogue", truth_path, "--image", path, "--out", str(out),
                 "--ids", "1,2"]) == 0
    assert main(["cutouts", "--catalogue", truth_path, "--image", path, "--out", str(out),
                 "--select", "resolved"]) == 2  # a truth has no resolved column
    assert "resolved" in capsys.readouterr().err
    from cianna_jax.astro.synthetic_cube import synthetic_cube, write_cube_fits

    write_cube_fits(tmp_path / "c.fits", synthetic_cube((32, 32, 32), seed=1))
    with open_image(tmp_path / "c.fits") as cube, pytest.raises(ImageError, match="2D"):
        cut_stamps(cube, read_catalogue(truth_path), [0])
