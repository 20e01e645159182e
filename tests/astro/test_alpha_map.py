"""Spectral-index maps (astro.alpha_map, ``cianna-jax alpha-map``): one sky at two and three
frequencies with a known spectral index, at one beam and at two, the masks, the files, the
command line and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.alpha_map import spectral_index_map, write_alpha_map  # noqa: E402
from cianna_jax.astro.fits_image import ImageError  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, write_fits  # noqa: E402

FREQS = (900e6, 1400e6, 1670e6)


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """One 256x256 sky (every source alpha -0.7) at three frequencies, independent noise."""
    d = tmp_path_factory.mktemp("alpha")
    paths = []
    for f in FREQS:
        field = synthetic_field(256, seed=21, density=0.004, snr_range=(50.0, 5000.0),
                                spectral_index=(-0.7, 0.0), ref_freq_hz=1e9, freq_hz=f)
        p = d / f"f{int(f / 1e6)}.fits"
        write_fits(p, field)
        paths.append(str(p))
    return d, paths


def test_a_known_spectral_index_comes_back(sky):
    d, paths = sky
    m = spectral_index_map(paths[:2])
    assert m.n_pixels > 200 and m.freqs_hz == FREQS[:2]
    ok = np.isfinite(m.alpha)
    pulls = (m.alpha[ok] + 0.7) / m.alpha_err[ok]
    assert abs(m.median + 0.7) < 0.05
    assert 0.7 < np.std(pulls) < 1.5  # (neighbouring pixels correlated: a loose bound)
    three = spectral_index_map(paths)
    assert abs(three.median + 0.7) < 0.05
    both = np.isfinite(three.alpha) & ok
    assert np.median(three.alpha_err[both]) < np.median(m.alpha_err[both])
    strict = spectral_index_map(paths[:2], min_snr=20.0)
    assert 0 < strict.n_pixels < m.n_pixels


def test_two_beams_are_matched_first(sky, tmp_path):
    """The 1400 MHz image blurred to a beam of 4 pixels: at the common beam the index is
    the same; compared pixel for pixel without the matching it would not be."""
    from scipy.ndimage import gaussian_filter

    d, paths = sky
    data, hdr = fits.getdata(paths[1]), fits.getheader(paths[1])
    s0, s1 = 3.0 / 2.3548, 4.0 / 2.3548
    wide = gaussian_filter(data.astype(np.float64), math.sqrt(s1 ** 2 - s0 ** 2)) * 16 / 9
    hdr["BMAJ"] = hdr["BMIN"] = 4 * abs(hdr["CDELT2"])
    fits.PrimaryHDU(wide.astype(np.float32), header=hdr).writeto(tmp_path / "wide.fits")
    m = spectral_index_map([paths[0], str(tmp_path / "wide.fits")])
    assert m.beam.bmaj == pytest.approx(2.4) and abs(m.median + 0.7) < 0.05
    write_alpha_map(m, paths[0], tmp_path / "a.fits", tmp_path / "e.fits")
    h = fits.getheader(tmp_path / "a.fits")
    assert h["BMAJ"] * 3600 == pytest.approx(2.4) and h["FREQ2"] == pytest.approx(1.4e9)
    np.testing.assert_allclose(fits.getdata(tmp_path / "e.fits"), m.alpha_err, rtol=1e-6,
                               equal_nan=True)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_command_line_and_refusals(sky, tmp_path, capsys):
    from cianna_jax.cli import main

    d, paths = sky
    assert main(["alpha-map", "--image", paths[0], "--image", paths[1], "--out",
                 str(tmp_path / "a.fits"), "--error-out", str(tmp_path / "e.fits")]) == 0
    import re

    med = re.search(r"median spectral index (-?[0-9.]+)", capsys.readouterr().out)
    assert med and abs(float(med.group(1)) + 0.7) < 0.05
    assert main(["alpha-map", "--image", paths[0], "--out", str(tmp_path / "b.fits")]) == 2
    assert "two or more" in capsys.readouterr().err
    assert main(["alpha-map", "--image", paths[0], "--image", paths[1], "--out",
                 str(tmp_path / "b.ecsv")]) == 2
    with pytest.raises(ValueError, match="two different frequencies"):
        spectral_index_map(paths[:2], freqs_hz=[1e9, 1e9])
    small = fits.getdata(paths[0])[:128, :128]
    fits.PrimaryHDU(small, header=fits.getheader(paths[0])).writeto(tmp_path / "s.fits")
    with pytest.raises(ImageError, match="one pixel grid"):
        spectral_index_map([paths[0], str(tmp_path / "s.fits")])
    # another grid (moved by 2.5, -1.5 pixels): refused, or regridded
    from scipy.ndimage import shift

    hdr = fits.getheader(paths[1])
    hdr["CRPIX1"] += 2.5
    hdr["CRPIX2"] -= 1.5
    moved = shift(fits.getdata(paths[1]).astype(np.float64), (-1.5, 2.5), order=3)
    fits.PrimaryHDU(moved.astype(np.float32), header=hdr).writeto(tmp_path / "m.fits")
    with pytest.raises(ImageError, match="grids differ"):
        spectral_index_map([paths[0], str(tmp_path / "m.fits")])
    m = spectral_index_map([paths[0], str(tmp_path / "m.fits")], regrid=True)
    assert abs(m.median + 0.7) < 0.05 and m.n_pixels > 2000
