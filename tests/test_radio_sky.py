"""Synthetic radio-sky generator: catalogue/image consistency, statistics, CIANNA targets."""

import numpy as np
import pytest

from cianna_jax.datasets import radio_sky as rs
from cianna_jax.datasets.radio_sky import (
    FWHM_TO_SIGMA,
    Catalogue,
    boxes_from_catalogue,
    cianna_target_rows,
    cianna_targets,
    make_cube,
    make_field,
    normalize,
    patches,
    power_law_fluxes,
)


def _isolated(cat: Catalogue, radius: np.ndarray, shape) -> np.ndarray:
    """Indices of sources whose ``radius`` box overlaps no other's and is inside the image."""
    H, W = shape[-2:]
    d = np.maximum(np.abs(cat.x[:, None] - cat.x[None]), np.abs(cat.y[:, None] - cat.y[None]))
    np.fill_diagonal(d, np.inf)
    clear = np.all(d > radius[:, None] + radius[None] + 1, axis=1)
    inside = ((cat.x - radius > 0) & (cat.x + radius < W - 1)
              & (cat.y - radius > 0) & (cat.y + radius < H - 1))
    return np.nonzero(clear & inside)[0]


def _radius(cat: Catalogue, nsig: float = 5.0) -> np.ndarray:
    return np.ceil(nsig * cat.sigma_major) + 1


# --------------------------------------------------------------------------- field / catalogue


@pytest.fixture(scope="module")
def clean_field():
    return make_field((300, 400), n_sources=150, seed=3, noise_rms=0.0, border=25)


def test_field_shapes_and_catalogue(clean_field):
    img, cat = clean_field
    assert img.shape == (300, 400) and img.dtype == np.float32
    assert len(cat) == 150 and cat.ndim == 2
    assert set(np.unique(cat.kind)) <= {0, 1} and 0 < cat.kind.sum() < len(cat)
    assert np.all((cat.flux >= 0.05) & (cat.flux <= 50.0))
    pt = cat.kind == 0
    np.testing.assert_allclose(cat.bmaj[pt], 3.0)
    np.testing.assert_allclose(cat.bmin[pt], 3.0)
    assert np.all(cat.bmaj >= cat.bmin) and np.all(cat.bmin >= 3.0)
    assert np.all((cat.x >= 24.5) & (cat.x <= 400 - 25.5))
    assert np.all((cat.y >= 24.5) & (cat.y <= 300 - 25.5))
    assert np.all(cat.z == 0) and np.all(cat.dz == 0)


def test_total_flux_matches_catalogue(clean_field):
    img, cat = clean_field
    assert img.sum(dtype=np.float64) == pytest.approx(cat.flux.sum(), rel=0.01)


def test_isolated_sources_local_flux_and_peak():
    img, cat = make_field(512, n_sources=60, seed=3, noise_rms=0.0, border=35)
    r = _radius(cat)
    iso = _isolated(cat, r, img.shape)
    assert iso.size >= 20
    n_pt = 0
    for i in iso:
        cx, cy, h = int(round(cat.x[i])), int(round(cat.y[i])), int(r[i])
        stamp = img[cy - h:cy + h + 1, cx - h:cx + h + 1].astype(np.float64)
        assert stamp.sum() == pytest.approx(cat.flux[i], rel=0.03)
        # peak brightness close to S / (2 pi sx sy) (pixel sampling, off-centre < 0.5 px)
        assert stamp.max() <= cat.peak[i] * 1.0001
        if cat.kind[i] == 0:
            n_pt += 1
            yy, xx = np.unravel_index(np.argmax(stamp), stamp.shape)
            assert (xx - h + cx, yy - h + cy) == (int(np.floor(cat.x[i] + 0.5)),
                                                 int(np.floor(cat.y[i] + 0.5)))
            assert stamp.max() > 0.7 * cat.peak[i]
    assert n_pt >= 5


def test_edge_sources_are_clipped_not_wrapped():
    sig = 3.0 * FWHM_TO_SIGMA
    # centre off the image (x = -2): only its right wing enters, nothing wraps around
    cat = Catalogue.create(x=-2.0, y=32.0, flux=1.0, bmaj=3.0, bmin=3.0)
    img = rs.render_sources((64, 64), cat)
    assert np.all(img[:, 10:] == 0)
    assert 0.0 < img.sum() < 0.2
    # centre on the last column: about half the flux is drawn, left side empty
    cat = Catalogue.create(x=63.0, y=32.0, flux=1.0, bmaj=3.0, bmin=3.0)
    img = rs.render_sources((64, 64), cat)
    assert np.all(img[:, :50] == 0)
    col = np.exp(-0.5 * (np.arange(-10, 1) / sig) ** 2)      # columns 53..63 of the profile
    assert img.sum() == pytest.approx(col.sum() / (np.sqrt(2 * np.pi) * sig), rel=1e-3)


def test_rotated_extended_source_orientation():
    # pa measured from +y towards -x: pa = 0 -> elongated along y, pa = pi/2 -> along x
    for pa, axis in ((0.0, 0), (np.pi / 2, 1)):
        cat = Catalogue.create(x=32, y=32, flux=1.0, bmaj=12.0, bmin=3.0, pa=pa, kind=1)
        img = rs.render_sources((64, 64), cat)
        prof = img.sum(axis=1 - axis)                 # profile along `axis`
        var = np.sum(prof * (np.arange(64) - 32.0) ** 2) / prof.sum()
        assert np.sqrt(var) == pytest.approx(12.0 * FWHM_TO_SIGMA, rel=0.02)
        assert img.sum() == pytest.approx(1.0, rel=1e-4)


def test_power_law_slope():
    for alpha in (1.0, 1.8, 2.5):
        f = power_law_fluxes(np.random.default_rng(0), 400_000, (0.1, 100.0), alpha)
        assert f.min() >= 0.1 and f.max() <= 100.0
        edges = np.logspace(-1, 2, 16)
        counts, _ = np.histogram(f, edges)
        dnds = counts / np.diff(edges)
        centres = np.sqrt(edges[:-1] * edges[1:])
        ok = counts > 50
        slope = np.polyfit(np.log(centres[ok]), np.log(dnds[ok]), 1)[0]
        assert slope == pytest.approx(-alpha, abs=0.05)


def test_field_flux_distribution_follows_power_law():
    _, cat = make_field(200, n_sources=30_000, seed=5, noise_rms=0.0,
                        flux_range=(1.0, 1000.0), power_law_index=2.0)
    edges = np.logspace(0, 3, 10)
    counts, _ = np.histogram(cat.flux, edges)
    ok = counts > 30
    slope = np.polyfit(np.log(np.sqrt(edges[:-1] * edges[1:]))[ok],
                       np.log(counts / np.diff(edges))[ok], 1)[0]
    assert slope == pytest.approx(-2.0, abs=0.1)


@pytest.mark.parametrize("correlated", [True, False])
def test_noise_rms_and_correlation(correlated):
    img, _ = make_field(512, n_sources=0, seed=7, noise_rms=0.02, psf_fwhm=3.0,
                        correlated_noise=correlated)
    a = img.astype(np.float64)
    assert a.std() == pytest.approx(0.02, rel=0.03)
    assert abs(a.mean()) < 0.002
    cx = np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]
    cy = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
    if correlated:
        # correlated as the beam (an interferometric image's noise): the beam at lag 1
        expect = np.exp(-1.0 / (2 * (3.0 * FWHM_TO_SIGMA) ** 2))
        assert cx > 0.5 and cy > 0.5
        assert cx == pytest.approx(expect, abs=0.02)
    else:
        assert abs(cx) < 0.02 and abs(cy) < 0.02
    assert rs.estimate_noise_rms(a) == pytest.approx(0.02, rel=0.05)


def test_determinism():
    a1, c1 = make_field(128, seed=11)
    a2, c2 = make_field(128, seed=11)
    a3, c3 = make_field(128, seed=12)
    np.testing.assert_array_equal(a1, a2)
    for col in ("x", "y", "flux", "bmaj", "bmin", "pa", "kind"):
        np.testing.assert_array_equal(getattr(c1, col), getattr(c2, col))
    assert not np.array_equal(a1, a3)
    k1, q1 = make_cube((16, 48, 48), n_sources=3, seed=4)
    k2, q2 = make_cube((16, 48, 48), n_sources=3, seed=4)
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(q1.dz, q2.dz)
    p1 = patches(a1, c1, 32, n=5, seed=1)
    p2 = patches(a1, c1, 32, n=5, seed=1)
    np.testing.assert_array_equal(p1.images, p2.images)
    np.testing.assert_array_equal(p1.origins, p2.origins)


def test_catalogue_helpers():
    _, cat = make_field(64, n_sources=10, seed=0, noise_rms=0.0)
    rec = cat.to_records()
    back = Catalogue.from_records(rec, ndim=2)
    np.testing.assert_array_equal(back.flux, cat.flux)
    s = cat.sorted_by_flux()
    assert np.all(np.diff(s.flux) <= 0)
    sub = cat[cat.flux > np.median(cat.flux)]
    assert len(sub) == 5
    both = Catalogue.concatenate([sub, cat.shifted(dx=1.0)])
    assert len(both) == 15 and both.x[5] == cat.x[0] + 1.0
    assert len(Catalogue.empty()) == 0


# --------------------------------------------------------------------------- cube


def test_cube_sources_at_their_channel():
    cube, cat = make_cube((40, 64, 64), n_sources=4, seed=2, noise_rms=0.0,
                          border=15, z_border=10)
    assert cube.shape == (40, 64, 64) and cat.ndim == 3 and len(cat) == 4
    assert np.all(cat.dz >= 2.0) and np.all(cat.dz <= 8.0)
    assert cube.sum(dtype=np.float64) == pytest.approx(cat.flux.sum(), rel=0.01)
    for i in range(len(cat)):
        cx, cy = int(round(cat.x[i])), int(round(cat.y[i]))
        spec = cube[:, cy, cx]
        assert abs(int(np.argmax(spec)) - cat.z[i]) <= 1.0
    # a lone, noisy line is still found at its channel
    cube, cat = make_cube((32, 48, 48), n_sources=1, seed=9, noise_rms=0.01,
                          flux_range=(200.0, 200.0), border=10, z_border=8)
    spec = cube[:, int(round(cat.y[0])), int(round(cat.x[0]))]
    assert abs(int(np.argmax(spec)) - cat.z[0]) <= 1.0
    assert cat.peak[0] > 20 * 0.01


def test_cube_noise_independent_between_channels():
    cube, _ = make_cube((8, 256, 256), n_sources=0, seed=1, noise_rms=0.05)
    a = cube.astype(np.float64)
    assert a.std() == pytest.approx(0.05, rel=0.03)
    cz = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
    cx = np.corrcoef(a[:, :, :-1].ravel(), a[:, :, 1:].ravel())[0, 1]
    assert abs(cz) < 0.02 and cx > 0.5


# --------------------------------------------------------------------------- boxes and targets


def test_boxes_contain_centres_and_respect_sizes():
    _, cat = make_field(256, n_sources=300, seed=1, noise_rms=0.0)
    b = boxes_from_catalogue(cat, min_size=4.0, max_size=20.0, scale=2.0)
    assert b.shape == (300, 6) and b.dtype == np.float32
    w, h = b[:, 3] - b[:, 0], b[:, 4] - b[:, 1]
    tol = 1e-3
    assert np.all(w >= 4.0 - tol) and np.all(w <= 20.0 + tol)
    assert np.all(h >= 4.0 - tol) and np.all(h <= 20.0 + tol)
    assert np.all(b[:, 2] == 0.0) and np.all(b[:, 5] == 1.0)
    cx, cy = cat.x + 0.5, cat.y + 0.5
    assert np.all((b[:, 0] < cx) & (cx < b[:, 3]) & (b[:, 1] < cy) & (cy < b[:, 4]))
    np.testing.assert_allclose(0.5 * (b[:, 0] + b[:, 3]), cx, atol=1e-3)
    # unclipped: axis-aligned extent of the rotated ellipse
    b2 = boxes_from_catalogue(cat, min_size=0.0, max_size=1e9, scale=1.0)
    s, c = np.sin(cat.pa), np.cos(cat.pa)
    np.testing.assert_allclose(b2[:, 3] - b2[:, 0],
                               np.hypot(cat.bmaj * s, cat.bmin * c), rtol=1e-5)
    np.testing.assert_allclose(b2[:, 4] - b2[:, 1],
                               np.hypot(cat.bmaj * c, cat.bmin * s), rtol=1e-5)
    # clipping to the image keeps boxes inside and non-inverted
    b3 = boxes_from_catalogue(cat, image_size=(256, 256))
    assert b3[:, :3].min() >= 0 and b3[:, 3].max() <= 256 and b3[:, 4].max() <= 256
    assert np.all(b3[:, 3:] >= b3[:, :3])


def test_cube_boxes_spectral_extent():
    _, cat = make_cube((32, 64, 64), n_sources=5, seed=0, noise_rms=0.0)
    b = boxes_from_catalogue(cat, min_size=(3, 3, 2), max_size=(40, 40, 30), scale=2.0)
    np.testing.assert_allclose(b[:, 5] - b[:, 2], np.clip(2.0 * cat.dz, 2, 30), rtol=1e-5)
    assert np.all((b[:, 2] < cat.z + 0.5) & (cat.z + 0.5 < b[:, 5]))


def test_cianna_targets_layout():
    boxes = np.array([[1, 2, 0, 5, 6, 1], [10, 10, 0, 14, 15, 1], [20, 21, 0, 25, 26, 1]],
                     np.float32)
    t = cianna_targets(boxes, 5, classes=[2, 1, 1])
    assert t.shape == (1 + 5 * 7,) and t.dtype == np.float32
    assert t[0] == 3
    np.testing.assert_array_equal(t[1:22].reshape(3, 7)[:, 1:], boxes)
    np.testing.assert_array_equal(t[1:22].reshape(3, 7)[:, 0], [2, 1, 1])
    assert np.all(t[22:] == 0)
    # params, difficult flag
    p = np.arange(6, dtype=np.float32).reshape(3, 2)
    t = cianna_targets(boxes, 4, params=p, difficult=[0, 1, 0])
    assert t.shape == (1 + 4 * 10,)
    np.testing.assert_array_equal(t[1:31].reshape(3, 10)[:, 7:9], p)
    np.testing.assert_array_equal(t[1:31].reshape(3, 10)[:, 9], [0, 1, 0])
    # more boxes than slots: first ones (no priority) or highest priority, in that order
    t = cianna_targets(boxes, 2)
    assert t[0] == 2 and t.shape == (15,)
    np.testing.assert_array_equal(t[1:].reshape(2, 7)[:, 1:], boxes[:2])
    t = cianna_targets(boxes, 2, priority=[1.0, 5.0, 3.0])
    np.testing.assert_array_equal(t[1:].reshape(2, 7)[:, 1:], boxes[[1, 2]])
    # empty
    t = cianna_targets(np.zeros((0, 6)), 3)
    assert t.shape == (22,) and np.all(t == 0)


def test_target_rows_validate_with_yolo_config():
    from cianna_jax import yolo

    img, cat = make_field(256, seed=2)
    P = patches(img, cat, 64, stride=64, min_flux_sigma=5.0, noise_rms=0.01)
    rows = cianna_target_rows(P.catalogues, 8, image_size=(64, 64))
    assert rows.shape == (16, 1 + 8 * 7)
    for row, c in zip(rows, P.catalogues):
        n = min(len(c), 8)
        assert row[0] == n
        recs = row[1:].reshape(8, 7)
        order = np.argsort(-c.flux, kind="stable")[:n]           # brightest first
        np.testing.assert_array_equal(recs[:n, 0], c.kind[order] + 1)
        np.testing.assert_allclose(recs[:n, 1], np.clip(
            boxes_from_catalogue(c[order])[:, 0], 0, 64), atol=1e-5)
        assert np.all(recs[n:] == 0)
    cfg = yolo.make_config([64, 64], [4, 4], nb_box=2, nb_class=2, max_nb_obj_per_image=8,
                           prior_size=[[6.0, 6.0], [16.0, 16.0]])
    yolo.check_targets(rows, cfg)


# --------------------------------------------------------------------------- patches


def test_patches_consistent_with_field():
    img, cat = make_field(256, seed=4, noise_rms=0.01)
    P = patches(img, cat, 48, n=12, seed=3)
    assert P.images.shape == (12, 48, 48) and P.images.dtype == np.float32
    assert P.origins.shape == (12, 2) and len(P.catalogues) == 12
    px, py = np.floor(cat.x + 0.5), np.floor(cat.y + 0.5)
    for im, pc, (y0, x0) in zip(P.images, P.catalogues, P.origins):
        np.testing.assert_array_equal(im, img[y0:y0 + 48, x0:x0 + 48])
        inside = (px >= x0) & (px < x0 + 48) & (py >= y0) & (py < y0 + 48)
        assert len(pc) == inside.sum()
        np.testing.assert_allclose(np.sort(pc.x), np.sort(cat.x[inside] - x0))
        np.testing.assert_allclose(np.sort(pc.flux), np.sort(cat.flux[inside]))
        assert np.all((pc.x >= -0.5) & (pc.x < 47.5) & (pc.y >= -0.5) & (pc.y < 47.5))


def test_patches_grid_and_detection_limit():
    img, cat = make_field(200, seed=6, noise_rms=0.01)
    P = patches(img, cat, 64, stride=32)
    assert P.images.shape == (25, 64, 64)
    assert {tuple(o) for o in P.origins} == {(y, x) for y in range(0, 137, 32)
                                             for x in range(0, 137, 32)}
    D = patches(img, cat, 64, stride=32, min_flux_sigma=5.0, noise_rms=0.01)
    n_all = sum(len(c) for c in P.catalogues)
    n_det = sum(len(c) for c in D.catalogues)
    assert 0 < n_det < n_all
    for c in D.catalogues:
        assert np.all(c.peak > 5.0 * 0.01)
    # default: non-overlapping tiling
    T = patches(img, cat, 50)
    assert T.images.shape == (16, 50, 50)
    assert sum(len(c) for c in T.catalogues) == len(cat)   # every centre lies in one tile
    with pytest.raises(ValueError):
        patches(img, cat, 64, n=3, stride=8)


def test_cube_patches_keep_channels():
    cube, cat = make_cube((16, 64, 64), n_sources=3, seed=1)
    P = patches(cube, cat, 32, stride=32)
    assert P.images.shape == (4, 16, 32, 32)
    np.testing.assert_array_equal(P.images[3], cube[:, 32:, 32:])
    assert all(c.ndim == 3 for c in P.catalogues)


# --------------------------------------------------------------------------- normalisation


def test_normalize():
    img, _ = make_field(256, seed=8, noise_rms=0.01, flux_range=(1.0, 100.0))
    for mode in ("tanh", "clip"):
        x = normalize(img, mode=mode, noise_rms=0.01)
        assert x.dtype == np.float32 and x.shape == img.shape
        assert x.min() >= -1.0 and x.max() <= 1.0
        # monotone in the input
        o = np.argsort(img.ravel())
        assert np.all(np.diff(x.ravel()[o]) >= -1e-7)
    x = normalize(img, noise_rms=0.01)
    assert x.max() > 0.99                          # bright sources saturate towards 1
    assert np.std(x[img < 3 * 0.01]) < 0.2         # noise stays small and near-linear
    est = normalize(img)                           # rms estimated by MAD
    assert np.allclose(est, x, atol=0.05)
    with pytest.raises(ValueError):
        normalize(img, mode="nope", noise_rms=0.01)


def test_blanked_pixels_are_empty_sky_for_the_noise_and_the_normalisation():
    """Radio images are NaN outside their footprint: one NaN pixel made the MAD noise NaN
    and so every normalised pixel NaN."""
    img, _ = make_field(64, seed=3, noise_rms=0.01)
    blanked = img.copy()
    blanked[:, :8] = np.nan
    rms = rs.estimate_noise_rms(blanked)
    assert rms == pytest.approx(rs.estimate_noise_rms(img[:, 8:]))
    x = normalize(blanked)
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(x[:, :8], normalize(np.zeros((1, 1)), noise_rms=rms)[0, 0])
    np.testing.assert_array_equal(x[:, 8:], normalize(img, noise_rms=rms)[:, 8:])
    with pytest.raises(ValueError, match="no finite pixel"):
        rs.estimate_noise_rms(np.full((4, 4), np.nan))


@pytest.mark.parametrize("kwargs, match", [
    (dict(noise_rms=float("nan")), "noise_rms: expected a finite number >= 0"),
    (dict(noise_rms=-0.01), "noise_rms"),
    (dict(psf_fwhm=0), "psf_fwhm: expected a finite number > 0"),
    (dict(n_sources=-1), "n_sources: expected an int >= 0"),
    (dict(density=-1e-3), "density"),
    (dict(extended_fraction=1.5), r"extended_fraction: expected a fraction in \[0, 1\]"),
    (dict(axis_ratio_range=(0.5, 2.0)), "axis_ratio_range"),
    (dict(extended_size_range=(5.0, 1.0)), "extended_size_range"),
    (dict(border=40), "border: centres must keep room"),
    (dict(nsigma=0), "nsigma"),
    (dict(size=0), "size must be a positive int"),
])
def test_field_settings_are_named_when_wrong(kwargs, match):
    """These used to give a noise-free field silently (NaN or negative noise), an image of
    NaN (zero beam) or numpy's errors (negative counts, a border wider than the field)."""
    with pytest.raises(ValueError, match=match):
        make_field(**{"size": 64, **kwargs})


def test_cube_and_patch_settings_are_named_when_wrong():
    with pytest.raises(ValueError, match="z_border: centres must keep room inside the 8"):
        rs.make_cube((8, 32, 32), z_border=4)
    with pytest.raises(ValueError, match="line_width_range"):
        rs.make_cube((8, 32, 32), line_width_range=(0, 2))
    img, cat = make_field(32, seed=1)
    with pytest.raises(ValueError, match="n: expected an int >= 0"):
        rs.patches(img, cat, 16, n=-2)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        rs.patches(img, cat, 16, stride=0)

