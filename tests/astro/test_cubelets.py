"""Cubelets of a cube's lines: the cut with its WCS, moment maps and spectrum agree with
the catalogue's measurements and the parent cube."""

import numpy as np
import pytest

pytest.importorskip("astropy")

from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from cianna_jax.astro.catalogue import read_catalogue  # noqa: E402
from cianna_jax.astro.cubelets import cubelet_window, write_cubelets  # noqa: E402
from cianna_jax.astro.fits_image import ImageError, open_image  # noqa: E402
from cianna_jax.astro.measure import measure_boxes_3d  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402

from .conftest import truth_boxes, write_line_cube  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:cianna_jax.xla_cpu.tune:RuntimeWarning")


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    path, sc = write_line_cube(tmp_path_factory.mktemp("cubelets"), seed=7, density=2e-3)
    return path, sc, truth_boxes(sc.catalogue)


def test_cubelets_agree_with_the_catalogue_and_the_cube(cube, tmp_path):
    path, sc, boxes = cube
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        m = measure_boxes_3d(img.read, img.shape, boxes, noise, beam_area=img.beam_area_pixels())
        table = Table({"id": np.arange(1, len(boxes) + 1)})
        files = write_cubelets(img, table, boxes, noise, tmp_path / "cl")
        area, dnu = img.beam_area_pixels(), abs(sc.dfreq)
    assert len(files) == 4 * len(boxes)
    parent = WCS(sc.header)
    n_isolated = 0
    for k, box in enumerate(boxes):
        sid = k + 1
        zs, ys, xs = cubelet_window(box, sc.cube.shape, 0.5)
        with fits.open(tmp_path / "cl" / f"{sid}_cube.fits") as h:
            data, w = h[0].data, WCS(h[0].header)
        assert np.array_equal(data, sc.cube[zs, ys, xs])
        # the cubelet's first voxel is the parent's window origin on the sky and in frequency
        got = w.pixel_to_world_values(0, 0, 0)
        want = parent.pixel_to_world_values(xs.start, ys.start, zs.start)
        assert np.allclose(got, want, rtol=1e-12, atol=1e-9)
        # moment 0 over the box's pixels, per beam: the box's sum (measure_boxes_3d's flux)
        mom0 = fits.getdata(tmp_path / "cl" / f"{sid}_mom0.fits")
        by = slice(int(np.floor(box[1])) - ys.start, int(np.ceil(box[4])) - ys.start)
        bx = slice(int(np.floor(box[0])) - xs.start, int(np.ceil(box[3])) - xs.start)
        assert mom0[by, bx].sum() / area == pytest.approx(m.flux[k] * dnu, rel=1e-5)
        # moment 1 at the brightest pixel of an isolated source: the line's frequency
        mom1 = fits.getdata(tmp_path / "cl" / f"{sid}_mom1.fits")
        c = sc.catalogue
        overlaps = np.all((boxes[:, :3] < box[3:]) & (boxes[:, 3:] > box[:3]), axis=1)
        if overlaps.sum() == 1:  # only its own box
            iy, ix = np.unravel_index(np.nanargmax(mom0), mom0.shape)
            assert mom1[iy, ix] == pytest.approx(sc.frequency(c.z[k]), abs=0.5 * dnu)
            n_isolated += 1
        # the spectrum over the box's channels sums to the same flux
        spec = read_catalogue(tmp_path / "cl" / f"{sid}_spec.ecsv")
        inbox = (spec["channel"] >= np.floor(box[2])) & (spec["channel"] < np.ceil(box[5]))
        assert np.sum(spec["flux"][inbox]) * dnu == pytest.approx(m.flux[k] * dnu, rel=1e-5)
        assert np.all(np.asarray(spec["flux_err"]) > 0)
    assert n_isolated >= 2


def test_cubelets_are_for_one_cube(cube, tmp_path, capsys):
    from cianna_jax.cli import main

    from .conftest import make_tiny_3d

    path, _, _ = cube
    card = make_tiny_3d(tmp_path)
    args = ["predict", "--model", card, "--image", str(path), "--out",
            str(tmp_path / "l.ecsv"), "--threshold", "0.5", "--quiet"]
    assert main([*args, "--cubelets", str(tmp_path / "cl")]) == 0
    n = len(read_catalogue(tmp_path / "l.ecsv"))
    assert len(list((tmp_path / "cl").iterdir())) == 4 * n
    (tmp_path / "afile").write_text("x")
    assert main([*args, "--cubelets", str(tmp_path / "afile")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    image2d = tmp_path / "f.fits"
    assert main(["simulate", "--out", str(image2d), "--size", "64"]) == 0
    with open_image(image2d) as img, pytest.raises(ImageError, match="cut from cubes"):
        write_cubelets(img, Table({"id": [1]}), np.zeros((1, 6)), None, tmp_path / "c2")


def test_moment0_over_the_line_holds_the_catalogue_flux(tmp_path):
    """With the lines' own channels (those of their flux), each isolated line's moment-0
    map sums to its fitted line flux: the cubelet holds the whole line even where the
    detector's box is tight (here 30% tighter than the truth's)."""
    from cianna_jax.astro.measure import FWHM, fit_moment0, line_window

    path, sc = write_line_cube(tmp_path, seed=2, density=2e-3)
    boxes = truth_boxes(sc.catalogue)
    centre, half = 0.5 * (boxes[:, :3] + boxes[:, 3:]), 0.5 * (boxes[:, 3:] - boxes[:, :3])
    tight = np.concatenate([centre - 0.7 * half, centre + 0.7 * half], 1)
    with open_image(path) as img:
        noise = estimate_noise_map(img.read, img.shape, box=32)
        area = img.beam_area_pixels()
        m = measure_boxes_3d(img.read, img.shape, tight, noise, beam_area=area)
        f = fit_moment0(img.read, img.shape, tight, noise, m, beam_area=area,
                        beam_sigma=2.5 / FWHM, noise_beam=(2.5 / FWHM, 2.5 / FWHM, 0.0))
        win = line_window(f, tight, img.shape[0])
        write_cubelets(img, Table({"id": np.arange(1, len(tight) + 1)}), tight, noise,
                       tmp_path / "cl", channels=win)
    # lines alone in their cubelet (no other true box reaches into it), not cut by the edges
    size = tight[:, 3:] - tight[:, :3]
    lo, hi = tight[:, :3] - 0.5 * size, tight[:, 3:] + 0.5 * size
    reach = np.all((lo[:, None] < boxes[None, :, 3:]) & (hi[:, None] > boxes[None, :, :3]), axis=2)
    inside = np.all((lo >= 0) & (hi <= np.array(sc.cube.shape[::-1])), axis=1)
    alone = np.flatnonzero((reach.sum(1) == 1) & inside)
    assert alone.size >= 5  # 6 of 7 when written
    for k in alone:
        mom0 = fits.getdata(tmp_path / "cl" / f"{k + 1}_mom0.fits")
        total = np.nansum(mom0) / area / abs(sc.dfreq)  # Jy x channels
        assert total == pytest.approx(f.flux[k], rel=0.05)
        assert f.fit_ok[k] and m.flux[k] < 0.95 * f.flux[k]  # the tight box's sum falls short
