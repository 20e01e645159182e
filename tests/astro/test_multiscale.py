"""Diffuse emission at coarser scales (astro.multiscale, ``cianna-jax diffuse``): the coarse
image keeps a point source's flux per beam and the sky's positions, a faint blob of 12 beams
under the compact pass's reach is found at a coarse scale with its flux, the command line and
its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.fits_image import open_image  # noqa: E402
from cianna_jax.astro.multiscale import coarse_image, find_diffuse  # noqa: E402

N, PX, BEAM_PX = 768, 2.0, 3.0
SIG = BEAM_PX / (2 * math.sqrt(2 * math.log(2)))


def _write(path, img):
    from astropy.io import fits
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [N / 2 + 0.5] * 2
    w.wcs.cdelt = [-PX / 3600, PX / 3600]
    hdr = w.to_header()
    hdr.update(BMAJ=BEAM_PX * PX / 3600, BMIN=BEAM_PX * PX / 3600, BPA=0.0, BUNIT="Jy/beam",
               RESTFRQ=1.4e9)
    fits.PrimaryHDU(img.astype(np.float32), hdr).writeto(path)
    return path


def _gauss(x0, y0, amp, sig):
    yy, xx = np.mgrid[0:N, 0:N]
    return amp * np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / sig ** 2)


def test_the_coarse_image_keeps_flux_per_beam_and_positions(tmp_path):
    # a point source of 1 mJy: 1 mJy/beam at every scale where a sample falls on it (a
    # block's centre), 1 mJy in all; the blocks' centres on the sky
    for k, (x0, y0) in ((2, (200.5, 150.5)), (4, (201.5, 149.5))):
        path = _write(tmp_path / f"p{k}.fits", _gauss(x0, y0, 1e-3, SIG))
        with open_image(path) as img:
            out = coarse_image(img, k, tmp_path / f"c{k}.fits")
            with open_image(out) as c:
                assert c.shape == (N // k, N // k) and c.beam.bmaj == pytest.approx(
                    k * BEAM_PX * PX)
                data = c.read()
                assert float(np.nanmax(data)) == pytest.approx(1e-3, rel=1e-3)
                beam_px2 = 2 * math.pi * (BEAM_PX / (2 * math.sqrt(2 * math.log(2)))) ** 2
                assert float(np.nansum(data)) / beam_px2 == pytest.approx(1e-3, rel=1e-3)
                ra, dec = c.wcs.wcs_pix2world([[3.0, 5.0]], 0)[0]
                ra0, dec0 = img.wcs.wcs_pix2world([[3 * k + (k - 1) / 2, 5 * k + (k - 1) / 2]],
                                                  0)[0]
                assert abs(ra - ra0) < 1e-9 and abs(dec - dec0) < 1e-9
                assert c.header["RESTFRQ"] == 1.4e9


def _field(tmp_path):
    """Correlated noise of 10 uJy/beam, three point sources, and a 3 mJy blob of FWHM 36
    pixels (12 beams: 2.1 sigma per beam at its peak) at (430, 420)."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(0).normal(size=(N, N)), SIG)
    img = noise * 1e-5 / noise.std()
    for x0, y0, f in ((80, 90, 2e-3), (600, 60, 1e-3), (90, 600, 5e-4)):
        img += _gauss(x0, y0, f, SIG)
    bs = 36.0 / (2 * math.sqrt(2 * math.log(2)))
    img += _gauss(430, 420, 3e-3 * SIG ** 2 / bs ** 2, bs)
    return _write(tmp_path / "f.fits", img)


def test_a_faint_blob_is_found_at_a_coarse_scale(tmp_path):
    from .conftest import make_peak_detector

    model = make_peak_detector(tmp_path, 5.0)
    res = find_diffuse(_field(tmp_path), model, scales=(4, 8))
    c = res.compact.table
    strong = c[np.asarray(c["snr"]) >= 5]
    assert len(strong) == 3  # the point sources, not the blob
    t = res.table
    d = np.hypot(np.asarray(t["x"]) - 430, np.asarray(t["y"]) - 420)
    blob = t[d < 10]
    assert len(blob) == 1 and blob["scale"][0] >= 4 and not blob["near_compact"][0]
    assert abs(float(blob["flux"][0]) - 3e-3) < 3 * float(blob["flux_err"][0])
    assert float(blob["flux"][0]) == pytest.approx(3e-3, rel=0.3)
    assert set(np.asarray(res.merged["scale"])) <= {1, 4, 8}
    assert len(res.merged) == len(c) + len(t) and res.merged.meta["scales"] == [1, 4, 8]
    # the same structure at two scales is kept once (its best SNR)
    assert np.sum(d < 30) == 1


def test_command_line(tmp_path, capsys):
    from cianna_jax.astro.catalogue import read_catalogue
    from cianna_jax.cli import main

    from .conftest import make_peak_detector

    model = make_peak_detector(tmp_path, 5.0)
    image = _field(tmp_path)
    argv = ["diffuse", "--image", str(image), "--model", model, "--out",
            str(tmp_path / "d.ecsv"), "--quiet"]
    assert main(argv + ["--merged", str(tmp_path / "all.ecsv"), "--scales", "8"]) == 0
    text = capsys.readouterr().out
    assert "diffuse components of SNR >= 5" in text and "at 8x the beam" in text
    t = read_catalogue(tmp_path / "d.ecsv")
    assert set(np.asarray(t["scale"])) == {8} and "near_compact" in t.colnames
    assert "scale" in read_catalogue(tmp_path / "all.ecsv").colnames
    for extra, msg in ((["--scales", "four"], "--scales"), (["--scales", "1"], "scales"),
                       (["--out", str(tmp_path / "d.xyz")], "d.xyz")):
        assert main(argv + extra) == 2
        assert msg in capsys.readouterr().err
