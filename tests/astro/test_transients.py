"""Transients by image subtraction (astro.transients, ``cianna-jax transients``): a source
that appeared and one that vanished found with their signs and changes, constant sources
cancelling between images of different beams, the common beam, the command line and the
refusals."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")

from cianna_jax.astro.beam_matching import common_beam  # noqa: E402
from cianna_jax.astro.fits_image import Beam, ImageError, open_image  # noqa: E402
from cianna_jax.astro.synthetic import synthetic_field, write_fits  # noqa: E402
from cianna_jax.astro.transients import difference_image, find_transients  # noqa: E402

NEW, GONE = (150.3, 200.7), (350.2, 100.5)


def _blob(f, x, y, amp):
    a = f.image.astype(np.float64)
    s = 3.0 / (2 * math.sqrt(2 * math.log(2)))
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    a += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return replace(f, image=a.astype(np.float32))


@pytest.fixture(scope="module")
def epochs(tmp_path_factory):
    """Two epochs of one 512x512 sky (independent noise of 10 uJy/beam); a 200 uJy source
    appears in the second at NEW, one at GONE is in the first only."""
    d = tmp_path_factory.mktemp("transients")
    ref = _blob(synthetic_field(512, seed=7, epoch=0), *GONE, 2e-4)
    new = _blob(synthetic_field(512, seed=7, epoch=1), *NEW, 2e-4)
    write_fits(d / "ref.fits", ref)
    write_fits(d / "new.fits", new)
    return d, str(d / "new.fits"), str(d / "ref.fits")


def test_what_appeared_and_what_vanished_come_first(epochs, tmp_path):
    from .conftest import make_peak_detector

    d, new, ref = epochs
    model = make_peak_detector(tmp_path, 5.0)
    c = find_transients(new, ref, model, difference=tmp_path / "diff.fits")
    top = c[:2]
    xy = {int(s): (float(x), float(y)) for s, x, y in zip(top["sign"], top["x"], top["y"])}
    assert set(xy) == {1, -1}
    assert math.hypot(xy[1][0] - NEW[0], xy[1][1] - NEW[1]) < 1.5
    assert math.hypot(xy[-1][0] - GONE[0], xy[-1][1] - GONE[1]) < 1.5
    # a 20-sigma source against noise of both epochs: about 14 sigma of change
    assert np.all((np.abs(top["change_snr"]) > 9) & (np.abs(top["change_snr"]) < 20))
    assert np.sign(top["change_snr"]).tolist() == top["sign"].tolist()
    row = top[top["sign"] == 1][0]
    assert row["flux_epoch"] == pytest.approx(2e-4, abs=3 * row["flux_epoch_err"])
    assert abs(row["flux_reference"]) < 3 * row["flux_reference_err"]
    assert c.meta["n_brighter"] >= 1 and c.meta["n_fainter"] >= 1
    # the rest: noise, no change of 9 sigma
    assert np.all(np.abs(np.nan_to_num(np.asarray(c["change_snr"][2:]))) < 9)
    assert fits.getheader(tmp_path / "diff.fits")["BMAJ"] * 3600 == pytest.approx(1.8)


def test_constant_sources_cancel_between_two_resolutions(epochs, tmp_path):
    """The reference seen through a 4-pixel beam (blurred, per new beam, fresh noise)
    against itself at 3 pixels: the difference at the common beam holds noise only."""
    from scipy.ndimage import gaussian_filter

    d, _, ref = epochs
    f = synthetic_field(512, seed=7, epoch=0)
    s0, s1 = 3.0 / 2.3548, 4.0 / 2.3548
    wide = gaussian_filter(f.image.astype(np.float64), math.sqrt(s1 ** 2 - s0 ** 2)) * (16 / 9)
    wide += np.random.default_rng(1).normal(0.0, 1e-5, wide.shape)
    hdr = fits.getheader(ref)
    hdr["BMAJ"] = hdr["BMIN"] = 4 * abs(hdr["CDELT2"])
    fits.PrimaryHDU(wide.astype(np.float32), header=hdr).writeto(tmp_path / "wide.fits")
    with open_image(tmp_path / "wide.fits") as w, open_image(ref) as r:
        beam = difference_image(w, r, tmp_path / "d.fits")
    assert beam.bmaj == pytest.approx(2.4)
    diff = fits.getdata(tmp_path / "d.fits")
    peak = np.unravel_index(np.nanargmax(wide), wide.shape)
    assert wide[peak] > 30e-5 and abs(diff[peak]) < 0.05 * wide[peak]
    assert np.nanstd(diff) < 3e-5


def test_a_reference_on_another_grid_is_regridded(epochs, tmp_path):
    """The reference written on a grid moved by (3.4, -2.2) pixels (its pixels shifted and
    CRPIX with them: the same sky): refused as it is, resampled with regrid=True, the
    difference of the same sky then noise only, and the new source found."""
    from scipy.ndimage import shift

    d, new, ref = epochs
    data, hdr = fits.getdata(ref).astype(np.float64), fits.getheader(ref)
    moved = shift(np.nan_to_num(data), (-2.2, 3.4), order=3, mode="nearest")
    hdr["CRPIX1"] += 3.4
    hdr["CRPIX2"] -= 2.2
    fits.PrimaryHDU(moved.astype(np.float32), header=hdr).writeto(tmp_path / "moved.fits")
    with open_image(ref) as r, open_image(tmp_path / "moved.fits") as m:
        with pytest.raises(ImageError, match="grids differ"):
            difference_image(r, m, tmp_path / "x.fits")
        difference_image(r, m, tmp_path / "same.fits", regrid=True)
    diff = fits.getdata(tmp_path / "same.fits")[20:-20, 20:-20]  # (the moved edge aside)
    peak = float(np.nanmax(data))
    assert np.nanmax(np.abs(diff)) < 0.05 * peak and np.nanstd(diff) < 1e-5
    from .conftest import make_peak_detector

    c = find_transients(new, str(tmp_path / "moved.fits"), make_peak_detector(tmp_path, 5.0),
                        regrid=True)
    top = {int(r["sign"]): (float(r["x"]), float(r["y"])) for r in c[:2]}
    assert math.hypot(top[1][0] - NEW[0], top[1][1] - NEW[1]) < 1.5
    assert math.hypot(top[-1][0] - GONE[0], top[-1][1] - GONE[1]) < 1.5


def test_the_common_beam():
    a, b = Beam(4.0, 2.0, 0.0), Beam(3.0, 1.5, 0.0)
    assert common_beam(a, b) == a and common_beam(b, a) == a
    crossed = common_beam(Beam(4.0, 2.0, 0.0), Beam(4.0, 2.0, 90.0))
    assert crossed.bmaj == crossed.bmin == pytest.approx(4.04)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_command_line_and_refusals(epochs, tmp_path, capsys):
    from cianna_jax.cli import main

    from .conftest import make_peak_detector

    d, new, ref = epochs
    model = make_peak_detector(tmp_path, 5.0)
    assert main(["transients", "--image", new, "--reference", ref, "--model", model, "--out",
                 str(tmp_path / "c.ecsv"), "--difference", str(tmp_path / "d.fits"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "brighter and" in out and "change by 5 sigma or more" in out
    assert (tmp_path / "d.fits").stat().st_size > 512 * 512 * 4
    small = fits.getdata(ref)[:256, :256]
    fits.PrimaryHDU(small, header=fits.getheader(ref)).writeto(tmp_path / "small.fits")
    hdr = fits.getheader(ref)
    hdr["CRPIX1"] += 3.0
    fits.PrimaryHDU(fits.getdata(ref), header=hdr).writeto(tmp_path / "moved.fits")
    with open_image(new) as e:
        with open_image(tmp_path / "small.fits") as s, pytest.raises(ImageError,
                                                                      match="one pixel grid"):
            difference_image(e, s, tmp_path / "x.fits")
        with open_image(tmp_path / "moved.fits") as m, pytest.raises(ImageError,
                                                                      match="grids differ"):
            difference_image(e, m, tmp_path / "x.fits")
        with open_image(ref) as r, pytest.raises(ValueError, match="scale"):
            difference_image(e, r, tmp_path / "x.fits", scale=0.0)
    assert main(["transients", "--image", new, "--reference", str(tmp_path / "moved.fits"),
                 "--model", model, "--out", str(tmp_path / "c2.ecsv"), "--quiet"]) == 2
    assert "regrid" in capsys.readouterr().err
